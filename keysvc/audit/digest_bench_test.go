package audit_test

import (
	"crypto/sha256"
	"testing"

	"github.com/keyward/keyward/keysvc/audit"
)

// BenchmarkDigest: the keyed request digest every audit record carries.
func BenchmarkDigest(b *testing.B) {
	d, err := audit.NewDigester(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256([]byte(`{"message":"aGVsbG8gYmFuaw=="}`))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d.Digest(sum[:]) == "" {
				b.Fatal("empty digest")
			}
		}
	})
}
