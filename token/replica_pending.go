package token

import "crypto"

// TEMPORARY until helper replica's token/replica.go lands (branch
// h/replica): the same names and fields, so token.Set and memtoken compile
// and are unit-tested now. Deleted at the merge.

// ReplicationKeyLabel is the label of the replication key.
const ReplicationKeyLabel = "keysvc-replication"

// Replica is a key wrapped under the replication key, with what the
// importing token needs to rebuild it.
type Replica struct {
	Label  string
	ID     []byte
	Type   KeyType
	Usage  Usage
	Blob   []byte
	Public crypto.PublicKey
}
