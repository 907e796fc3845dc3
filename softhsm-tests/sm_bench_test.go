package softhsmtests

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/smcrypto"
)

// BenchmarkSM2Sign compares SM2 signing through keysvc (Service.Sign: key
// cache, unsealing the key material in the token with AES-GCM, parsing,
// signing with SM3(Z‖M), wiping, the audit record's durable group commit)
// with gmsm signing directly (smcrypto.SM2Sign on a key in memory), in
// interleaved rounds of the same run, at 1 and 64 goroutines.
func BenchmarkSM2Sign(b *testing.B) {
	env := mustNewToken(b, token.KindHSM)
	svc := benchService(b, env)
	ctx := context.Background()
	officer := keysvc.Caller{Name: "officer", Admin: true}
	app := keysvc.Caller{Name: "banking"}
	if _, err := svc.CreateKey(ctx, officer, wire.CreateKeyRequest{Name: "gm", Purpose: wire.PurposeSign, Algorithm: wire.AlgSM2,
		Protection: wire.ProtectionWrapped, Policy: wire.Policy{Grants: []wire.Grant{{Client: "banking", Ops: []wire.Op{wire.OpSign}}}}}); err != nil {
		b.Fatal(err)
	}
	priv, err := smcrypto.GenerateSM2()
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("transfer 100.00 CNY")
	for _, g := range []int{1, 64} {
		b.Run(fmt.Sprintf("g=%d", g), func(b *testing.B) {
			direct := func(int) func() error {
				return func() error { _, err := smcrypto.SM2Sign(priv, nil, msg); return err }
			}
			viaKeysvc := func(int) func() error {
				return func() error { _, err := svc.Sign(ctx, app, "gm", wire.SignRequest{Message: msg}); return err }
			}
			const rounds = 10
			chunk := max(b.N/rounds, g)
			var tDirect, tKeysvc time.Duration
			b.ResetTimer()
			for r := 0; r < rounds; r++ {
				tDirect += runParallel(b, chunk, g, direct)
				tKeysvc += runParallel(b, chunk, g, viaKeysvc)
			}
			b.StopTimer()
			d, k := float64(rounds*chunk)/tDirect.Seconds(), float64(rounds*chunk)/tKeysvc.Seconds()
			b.ReportMetric(d, "gmsm-ops/s")
			b.ReportMetric(k, "keysvc-ops/s")
			b.ReportMetric(k/d, "keysvc/gmsm")
		})
	}
}

// benchService is a keysvc.Service on env's token and a bbolt file.
func benchService(tb testing.TB, env *tokenEnv) *keysvc.Service {
	tb.Helper()
	store, err := boltstore.Open(filepath.Join(tb.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	svc, err := keysvc.New(context.Background(), keysvc.Config{Token: env.tok, Store: store})
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}
