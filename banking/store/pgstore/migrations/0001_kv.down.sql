DROP TABLE kw_kv;
DROP TABLE kw_buckets;
