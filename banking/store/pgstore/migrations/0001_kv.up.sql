-- Version 1: banking's records as ordered key/value pairs in named buckets
-- (the banking/store contract). Keys and bucket names are bytea, so they sort
-- bytewise (memcmp), as bbolt sorts them, whatever the database's collation.

-- kw_buckets: one row per bucket. id is what kw_kv stores (4 bytes in every
-- index entry instead of the name); seq is the bucket's NextSequence counter.
CREATE TABLE kw_buckets (
    id   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name bytea   NOT NULL UNIQUE,
    seq  bigint  NOT NULL DEFAULT 0 CHECK (seq >= 0)
);

-- kw_kv: every pair of every bucket. No foreign key to kw_buckets: buckets are
-- never dropped, pgstore only writes ids it read from kw_buckets, and a foreign
-- key would take a KEY SHARE lock on the bucket row at every insert.
CREATE TABLE kw_kv (
    bucket integer NOT NULL,
    k      bytea   NOT NULL CHECK (length(k) > 0),
    v      bytea   NOT NULL,
    PRIMARY KEY (bucket, k)
);
