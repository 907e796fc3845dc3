package tpm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/token/tpm"
	"github.com/keyward/keyward/token/tpm/tpmtest"
)

// mustOpen opens spec and closes it at cleanup.
func mustOpen(t testing.TB, spec string) *tpm.TPM {
	t.Helper()
	tp, err := tpm.Open(spec)
	if err != nil {
		t.Fatalf("Open(%s): %v", spec, err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}

func newTPM(t testing.TB) *tpm.TPM {
	t.Helper()
	return mustOpen(t, tpmtest.Start(t))
}

var dek = bytes.Repeat([]byte{0xA5}, 32)

func TestSealUnsealRoundTrip(t *testing.T) {
	tp := newTPM(t)
	for _, n := range []int{1, 32, tpm.MaxSecretSize} {
		secret := bytes.Repeat([]byte{byte(n)}, n)
		s, err := tp.Seal(secret, tpm.SealOptions{})
		if err != nil {
			t.Fatalf("Seal(%d bytes): %v", n, err)
		}
		if n >= 16 && (bytes.Contains(s.Private, secret) || bytes.Contains(s.Public, secret)) {
			t.Fatalf("sealed blob contains the secret in clear")
		}
		// The blob goes to disk as JSON.
		js, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back tpm.Sealed
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatal(err)
		}
		got, err := tp.Unseal(&back, nil)
		if err != nil {
			t.Fatalf("Unseal(%d bytes): %v", n, err)
		}
		if !bytes.Equal(got, secret) {
			t.Fatalf("Unseal = %x, want %x", got, secret)
		}
	}
}

func TestSealSizeLimits(t *testing.T) {
	tp := newTPM(t)
	for _, n := range []int{0, tpm.MaxSecretSize + 1, 4096} {
		if _, err := tp.Seal(make([]byte, n), tpm.SealOptions{}); !errors.Is(err, tpm.ErrSecretSize) {
			t.Errorf("Seal(%d bytes) = %v, want ErrSecretSize", n, err)
		}
	}
	for _, pcrs := range [][]int{{-1}, {24}, {16, 16}} {
		if _, err := tp.Seal(dek, tpm.SealOptions{PCRs: pcrs}); err == nil {
			t.Errorf("Seal(PCRs %v) succeeded", pcrs)
		}
	}
}

func TestSealPCRBound(t *testing.T) {
	tp := newTPM(t)
	s, err := tp.Seal(dek, tpm.SealOptions{PCRs: []int{23, 16, 0}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 16, 23}; !equalInts(s.PCRs, want) || len(s.PCRDigest) != 32 || len(s.PCRValues) != 3 {
		t.Fatalf("Sealed PCRs %v digest %x values %d; want %v, 32-byte digest, 3 values", s.PCRs, s.PCRDigest, len(s.PCRValues), want)
	}
	if got, err := tp.Unseal(s, nil); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unseal before extend = %x, %v", got, err)
	}
	if err := tp.ExtendPCR(16, []byte("kernel update")); err != nil {
		t.Fatal(err)
	}
	_, err = tp.Unseal(s, nil)
	if !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Fatalf("Unseal after extending PCR 16 = %v, want ErrPCRMismatch", err)
	}
	var pm *tpm.PCRMismatchError
	if !errors.As(err, &pm) || !equalInts(pm.PCRs, []int{16}) {
		t.Fatalf("error %v does not name PCR 16 alone", err)
	}
	t.Logf("operator sees: %v", err)

	// Without the recorded digest (an edited file) the TPM still refuses: the policy is in the object.
	s2 := *s
	s2.PCRDigest, s2.PCRValues = nil, nil
	if _, err := tp.Unseal(&s2, nil); !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Fatalf("Unseal without recorded digest = %v, want ErrPCRMismatch", err)
	}
	// Forging the recorded digest to the current values does not help either.
	now, err := tp.ReadPCRs([]int{0, 16, 23})
	if err != nil {
		t.Fatal(err)
	}
	s2.PCRValues = [][]byte{now[0], now[16], now[23]}
	s2.PCRDigest = sha256Concat(s2.PCRValues...)
	if _, err := tp.Unseal(&s2, nil); !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Fatalf("Unseal with forged digest = %v, want ErrPCRMismatch", err)
	}
	// Dropping the PCR list from the file does not bypass the policy.
	s3 := *s
	s3.PCRs, s3.PCRDigest, s3.PCRValues = nil, nil, nil
	if _, err := tp.Unseal(&s3, nil); err == nil {
		t.Fatal("Unseal with the PCR list removed succeeded")
	} else {
		t.Logf("PCR list removed: %v", err)
	}

	// Resealing on the new values works.
	s4, err := tp.Seal(dek, tpm.SealOptions{PCRs: []int{16}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tp.Unseal(s4, nil); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unseal after reseal = %x, %v", got, err)
	}
}

func TestSealAuth(t *testing.T) {
	tp := newTPM(t)
	pass := []byte("correct horse battery staple")
	s, err := tp.Seal(dek, tpm.SealOptions{Auth: pass, PCRs: []int{23}})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Auth {
		t.Fatal("Sealed.Auth false")
	}
	js, _ := json.Marshal(s)
	if bytes.Contains(js, pass) {
		t.Fatal("sealed blob contains the auth value")
	}
	if got, err := tp.Unseal(s, pass); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unseal with right auth = %x, %v", got, err)
	}
	for _, wrong := range [][]byte{nil, []byte("Correct horse battery staple")} {
		_, err := tp.Unseal(s, wrong)
		if !errors.Is(err, tpm.ErrAuthFailed) {
			t.Fatalf("Unseal with wrong auth = %v, want ErrAuthFailed", err)
		}
		if bytes.Contains([]byte(err.Error()), pass) {
			t.Fatal("error contains the auth value")
		}
	}
	// Auth only, no PCRs.
	s2, err := tp.Seal(dek, tpm.SealOptions{Auth: pass})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tp.Unseal(s2, pass); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unseal(auth only) = %x, %v", got, err)
	}
	if _, err := tp.Unseal(s2, []byte("x")); !errors.Is(err, tpm.ErrAuthFailed) {
		t.Fatalf("Unseal(auth only, wrong) = %v, want ErrAuthFailed", err)
	}
	// Claiming in the file that no auth is needed does not bypass it.
	s3 := *s2
	s3.Auth = false
	if _, err := tp.Unseal(&s3, nil); err == nil {
		t.Fatal("Unseal with Auth flag cleared succeeded")
	} else {
		t.Logf("auth flag cleared: %v", err)
	}
}

func TestSealedOnOtherTPM(t *testing.T) {
	a, b := newTPM(t), newTPM(t)
	s, err := a.Seal(dek, tpm.SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.SRKName) != 34 {
		t.Fatalf("SRKName %x, want a 34-byte SHA-256 name", s.SRKName)
	}
	_, err = b.Unseal(s, nil)
	if !errors.Is(err, tpm.ErrWrongTPM) {
		t.Fatalf("Unseal on TPM B = %v, want ErrWrongTPM", err)
	}
	t.Logf("operator sees: %v", err)
	// Without the recorded SRK name, the TPM itself refuses to load the blob.
	noName := *s
	noName.SRKName = nil
	if _, err := b.Unseal(&noName, nil); !errors.Is(err, tpm.ErrWrongTPM) {
		t.Fatalf("Unseal on TPM B without SRKName = %v, want ErrWrongTPM", err)
	}
	if got, err := a.Unseal(s, nil); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unseal on TPM A afterwards = %x, %v", got, err)
	}
}

func TestSealedTampered(t *testing.T) {
	tp := newTPM(t)
	s, err := tp.Seal(dek, tpm.SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range []int{0, 1, 2} {
		bad := *s
		bad.Private = bytes.Clone(s.Private)
		bad.Private[len(bad.Private)/2+i*7] ^= 0x01
		if _, err := tp.Unseal(&bad, nil); !errors.Is(err, tpm.ErrWrongTPM) {
			t.Errorf("Unseal with a flipped bit in Private = %v, want ErrWrongTPM", err)
		}
	}
	bad := *s
	bad.Public = bytes.Clone(s.Public)
	bad.Public[len(bad.Public)-3] ^= 0x01
	if _, err := tp.Unseal(&bad, nil); err == nil {
		t.Error("Unseal with a flipped bit in Public succeeded")
	}
	for _, bad := range []*tpm.Sealed{nil, {}, {Public: s.Public}, {Public: []byte{0, 9, 1}, Private: s.Private}} {
		if _, err := tp.Unseal(bad, nil); !errors.Is(err, tpm.ErrBadBlob) {
			t.Errorf("Unseal(%+v) = %v, want ErrBadBlob", bad, err)
		}
	}
}

func TestSealSurvivesRestart(t *testing.T) {
	sim := tpmtest.StartSim(t)
	tp, err := tpm.Open(sim.Spec)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := tp.Seal(dek, tpm.SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pass := []byte("pw")
	bound, err := tp.Seal(dek, tpm.SealOptions{PCRs: []int{0, 7}, Auth: pass})
	if err != nil {
		t.Fatal(err)
	}
	// Sealed to PCR 23 after extending it: a reboot resets PCR 23, so this one must fail after.
	if err := tp.ExtendPCR(23, []byte("boot stage")); err != nil {
		t.Fatal(err)
	}
	extended, err := tp.Seal(dek, tpm.SealOptions{PCRs: []int{23}})
	if err != nil {
		t.Fatal(err)
	}
	tp.Close()

	sim.Restart(t)
	tp = mustOpen(t, sim.Spec)
	for name, s := range map[string]*tpm.Sealed{"plain": plain, "pcr+auth": bound} {
		if got, err := tp.Unseal(s, pass); err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("%s after restart: %x, %v", name, got, err)
		}
	}
	if _, err := tp.Unseal(extended, nil); !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Fatalf("sealed to an extended PCR 23, after restart: %v, want ErrPCRMismatch", err)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, spec := range []string{"", "tpm", "tcp:nohost", "device:dev/tpm", "/nonexistent/tpmrm0", "tcp:127.0.0.1:1"} {
		if _, err := tpm.Open(spec); !errors.Is(err, tpm.ErrNoTPM) {
			t.Errorf("Open(%q) = %v, want ErrNoTPM", spec, err)
		} else {
			t.Logf("Open(%q): %v", spec, err)
		}
	}
}

func TestClosed(t *testing.T) {
	tp := newTPM(t)
	tp.Close()
	if _, err := tp.Seal(dek, tpm.SealOptions{}); !errors.Is(err, tpm.ErrClosed) {
		t.Fatalf("Seal after Close = %v, want ErrClosed", err)
	}
	if err := tp.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSimulatorGone(t *testing.T) {
	sim := tpmtest.StartSim(t)
	tp := mustOpen(t, sim.Spec)
	sim.Stop()
	if _, err := tp.Seal(dek, tpm.SealOptions{}); !errors.Is(err, tpm.ErrNoTPM) {
		t.Fatalf("Seal with swtpm stopped = %v, want ErrNoTPM", err)
	}
}

// TestNoHandleLeaks: every failure path flushes what it loaded. swtpm holds three transient
// objects and a few sessions, so a leak fails within a few rounds.
func TestNoHandleLeaks(t *testing.T) {
	a, b := newTPM(t), newTPM(t)
	pass := []byte("pw")
	withAuth, err := a.Seal(dek, tpm.SealOptions{Auth: pass, PCRs: []int{16}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetDAParameters(1000, time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	stale, err := a.Seal(dek, tpm.SealOptions{PCRs: []int{23}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ExtendPCR(23, []byte("x")); err != nil {
		t.Fatal(err)
	}
	blob, err := a.CreateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := a.Unseal(withAuth, []byte("wrong")); !errors.Is(err, tpm.ErrAuthFailed) {
			t.Fatalf("round %d: wrong auth: %v", i, err)
		}
		if _, err := a.Unseal(stale, nil); !errors.Is(err, tpm.ErrPCRMismatch) {
			t.Fatalf("round %d: stale PCR: %v", i, err)
		}
		if _, err := b.Unseal(withAuth, pass); !errors.Is(err, tpm.ErrWrongTPM) {
			t.Fatalf("round %d: other TPM: %v", i, err)
		}
		if _, err := b.LoadSigner(blob); !errors.Is(err, tpm.ErrWrongTPM) {
			t.Fatalf("round %d: other TPM signer: %v", i, err)
		}
		s, err := a.LoadSigner(blob)
		if err != nil {
			t.Fatalf("round %d: LoadSigner: %v", i, err)
		}
		s.Close()
	}
	if got, err := a.Unseal(withAuth, pass); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("after failures: %x, %v", got, err)
	}
}
