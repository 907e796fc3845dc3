package audit_test

import (
	"bytes"
	"testing"

	"github.com/keyward/keyward/keysvc/audit"
)

// FuzzUnmarshalRecord: stored record bytes (keysvc.db is outside input for
// `keysvc audit verify`) never panic the decoder or the checker, and a
// decoded record re-encodes to one with the same hash.
func FuzzUnmarshalRecord(f *testing.F) {
	r := baseRecord()
	good, _ := r.Marshal()
	f.Add(good)
	f.Add([]byte(`{"seq":1,"prev":null,"hash":"AAAA","request_digest":"hmac-sha256-v1:00"}`))
	f.Add([]byte(`{"seq":18446744073709551615,"time":"9999-12-31T23:59:59Z","version":-1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := audit.Unmarshal(b)
		if err != nil {
			return
		}
		_ = audit.NewChecker().Next(r)
		again, err := r.Marshal()
		if err != nil {
			return // e.g. a time JSON cannot hold
		}
		r2, err := audit.Unmarshal(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !bytes.Equal(r.ComputeHash(), r2.ComputeHash()) {
			t.Fatalf("hash changed across a round trip: %+v vs %+v", r, r2)
		}
	})
}

// FuzzUnmarshalCheckpoint: stored checkpoint bytes and anchors typed by
// officers never panic decoding, chaining or signature checks.
func FuzzUnmarshalCheckpoint(f *testing.F) {
	key := newKeyF(f)
	c, _ := audit.SignCheckpoint(key, nil, 3, bytes.Repeat([]byte{1}, 32), auditT0)
	good, _ := jsonOf(c)
	f.Add(good, "3:"+string(bytes.Repeat([]byte("01"), 32)))
	f.Add([]byte(`{"seq":0,"index":18446744073709551615,"prev":"AA=="}`), "0:")
	f.Add([]byte(`null`), "x")
	f.Fuzz(func(t *testing.T, b []byte, anchor string) {
		if a, err := audit.ParseAnchor(anchor); err == nil {
			if b, err := audit.ParseAnchor(a.String()); err != nil || b.Seq != a.Seq || !bytes.Equal(b.Hash, a.Hash) {
				t.Fatalf("anchor %q does not round-trip: %v", anchor, err)
			}
		}
		cp, err := audit.UnmarshalCheckpoint(b)
		if err != nil {
			return
		}
		_ = cp.VerifySignature(&key.PublicKey)
		_ = cp.Follows(nil)
		_ = cp.Follows(&c)
		_ = audit.VerifyChain([]audit.Checkpoint{c, cp}, &key.PublicKey)
	})
}
