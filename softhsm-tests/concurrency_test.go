package softhsmtests

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/pkcs11shim"
	"github.com/keyward/keyward/token"
)

// TestConcurrentSigning: 64 goroutines share one pool (fewer sessions than
// goroutines) for several seconds, signing with an EC key and sealing with
// an AES key; every signature must verify and every error fails the test.
// Run it under -race (make test does).
func TestConcurrentSigning(t *testing.T) {
	env := mustNewToken(t, token.KindHSM)
	ctx := context.Background()
	ec, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyECP256, Label: "busy-ec"})
	if err != nil {
		t.Fatal(err)
	}
	aes, err := env.pool.GenerateKey(ctx, pkcs11shim.KeySpec{Type: pkcs11shim.KeyAES256, Label: "busy-aes"})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := env.pool.PublicKey(ctx, ec)
	if err != nil {
		t.Fatal(err)
	}
	dur := 3 * time.Second
	if testing.Short() {
		dur = time.Second
	}
	stop := time.Now().Add(dur)
	var ops, failures atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			msg := make([]byte, 16)
			for i := 0; time.Now().Before(stop); i++ {
				binary.BigEndian.PutUint64(msg, uint64(g))
				binary.BigEndian.PutUint64(msg[8:], uint64(i))
				digest := sha256.Sum256(msg)
				if i%4 == 3 {
					sealed, err := env.pool.EncryptGCM(ctx, aes, msg, digest[:])
					if err == nil {
						var pt []byte
						pt, err = env.pool.DecryptGCM(ctx, aes, sealed, digest[:])
						if err == nil && string(pt) != string(msg) {
							t.Errorf("goroutine %d: GCM round trip changed the data", g)
						}
					}
					if err != nil {
						failures.Add(1)
						t.Errorf("goroutine %d: GCM: %v", g, err)
						return
					}
				} else {
					sig, err := env.pool.Sign(ctx, ec, digest[:], crypto.SHA256, nil)
					if err != nil {
						failures.Add(1)
						t.Errorf("goroutine %d: sign: %v", g, err)
						return
					}
					if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
						failures.Add(1)
						t.Errorf("goroutine %d: signature %d does not verify", g, i)
						return
					}
				}
				ops.Add(1)
			}
		}(g)
	}
	wg.Wait()
	st := env.pool.Stats()
	t.Logf("%d operations in %v by 64 goroutines over %d sessions, %d failures", ops.Load(), dur, st.MaxSessions, failures.Load())
	if ops.Load() < 64 {
		t.Fatalf("only %d operations completed", ops.Load())
	}
	if st.Lent != 0 || st.Idle > st.MaxSessions {
		t.Fatalf("pool bookkeeping after the run: %+v", st)
	}
}
