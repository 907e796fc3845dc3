package tpm_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/token/tpm"
)

func TestDALockout(t *testing.T) {
	tp := newTPM(t)
	st, err := tp.DAState()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("swtpm DA defaults: %+v", st)

	if err := tp.SetDAParameters(3, time.Hour, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	st, err = tp.DAState()
	if err != nil {
		t.Fatal(err)
	}
	if st.MaxTries != 3 || st.RecoveryTime != time.Hour || st.LockoutRecovery != 10*time.Minute || st.LockedOut || st.FailedTries != 0 {
		t.Fatalf("DAState after SetDAParameters = %+v", st)
	}

	pass := []byte("pw")
	withAuth, err := tp.Seal(dek, tpm.SealOptions{Auth: pass})
	if err != nil {
		t.Fatal(err)
	}
	pcrOnly, err := tp.Seal(dek, tpm.SealOptions{PCRs: []int{7}})
	if err != nil {
		t.Fatal(err)
	}
	// A missing auth value is refused before the TPM sees it: it does not cost a try.
	if _, err := tp.Unseal(withAuth, nil); !errors.Is(err, tpm.ErrAuthFailed) {
		t.Fatalf("Unseal without auth = %v, want ErrAuthFailed", err)
	}
	if st, _ := tp.DAState(); st.FailedTries != 0 {
		t.Fatalf("Unseal without auth counted as a failure: %+v", st)
	}
	for i := 1; i <= 3; i++ {
		if _, err := tp.Unseal(withAuth, []byte("guess")); !errors.Is(err, tpm.ErrAuthFailed) {
			t.Fatalf("wrong guess %d = %v, want ErrAuthFailed", i, err)
		}
		st, _ := tp.DAState()
		t.Logf("after wrong guess %d: %+v", i, st)
	}
	// Now even the right value is refused.
	_, err = tp.Unseal(withAuth, pass)
	if !errors.Is(err, tpm.ErrLocked) {
		t.Fatalf("Unseal in lockout = %v, want ErrLocked", err)
	}
	t.Logf("operator sees: %v", err)
	if _, err := tp.Unseal(withAuth, []byte("guess")); !errors.Is(err, tpm.ErrLocked) {
		t.Fatalf("wrong guess in lockout = %v, want ErrLocked", err)
	}
	st, err = tp.DAState()
	if err != nil {
		t.Fatal(err)
	}
	if !st.LockedOut || st.FailedTries < 3 {
		t.Fatalf("DAState in lockout = %+v", st)
	}
	// Objects without an auth value (noDA) are not affected by the lockout; sealing neither.
	if got, err := tp.Unseal(pcrOnly, nil); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("PCR-only Unseal in lockout = %x, %v", got, err)
	}
	if _, err := tp.Seal(dek, tpm.SealOptions{Auth: pass}); err != nil {
		t.Fatalf("Seal in lockout: %v", err)
	}

	if err := tp.ClearDALockout(); err != nil {
		t.Fatal(err)
	}
	st, err = tp.DAState()
	if err != nil {
		t.Fatal(err)
	}
	if st.LockedOut || st.FailedTries != 0 {
		t.Fatalf("DAState after ClearDALockout = %+v", st)
	}
	if got, err := tp.Unseal(withAuth, pass); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unseal after ClearDALockout = %x, %v", got, err)
	}
}

// TestDASelfHealing: with a short recovery time, failures are forgotten one per interval and the
// lockout ends on its own.
func TestDASelfHealing(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the TPM's recovery time")
	}
	tp := newTPM(t)
	if err := tp.SetDAParameters(2, time.Second, time.Second); err != nil {
		t.Fatal(err)
	}
	s, err := tp.Seal(dek, tpm.SealOptions{Auth: []byte("pw")})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := tp.Unseal(s, []byte("guess")); !errors.Is(err, tpm.ErrAuthFailed) {
			t.Fatalf("wrong guess = %v", err)
		}
	}
	if _, err := tp.Unseal(s, []byte("pw")); !errors.Is(err, tpm.ErrLocked) {
		t.Fatalf("Unseal in lockout = %v, want ErrLocked", err)
	}
	start := time.Now()
	for {
		_, err := tp.Unseal(s, []byte("pw"))
		if err == nil {
			break
		}
		if !errors.Is(err, tpm.ErrLocked) || time.Since(start) > 10*time.Second {
			st, _ := tp.DAState()
			t.Fatalf("after %v: %v (DA state %+v)", time.Since(start), err, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("lockout with maxTries 2, recovery 1 s ended on its own after %v", time.Since(start).Round(100*time.Millisecond))
}

func TestSetDAParametersRefusesZeroTries(t *testing.T) {
	tp := newTPM(t)
	if err := tp.SetDAParameters(0, time.Hour, time.Hour); err == nil {
		t.Fatal("SetDAParameters(0, ...) accepted")
	}
}
