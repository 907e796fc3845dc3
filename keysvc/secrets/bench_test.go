package secrets_test

import (
	"testing"

	"github.com/keyward/keyward/keysvc/secrets"
	"github.com/keyward/keyward/token/tpm"
	"github.com/keyward/keyward/token/tpm/tpmtest"
)

// What a start costs: opening the secrets file by its TPM slot (swtpm)
// and by its passphrase slot with the production Argon2id parameters.
func BenchmarkOpen(b *testing.B) {
	tp, err := tpm.Open(tpmtest.Start(b))
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Close()
	f, err := secrets.Seal(bundle(), secrets.Options{TPM: tp, PCRs: []int{16}, Passphrase: []byte(pass)})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("tpm", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := f.Open(secrets.Unlocker{TPM: tp}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("passphrase-argon2id-64MiB", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := f.Open(secrets.Unlocker{Passphrase: passphrase(pass)}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
