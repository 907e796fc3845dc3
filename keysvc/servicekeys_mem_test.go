package keysvc_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/boltstore"
	"github.com/keyward/keyward/token/memtoken"
)

// With RequireServiceKeys (production) an empty token is refused, naming
// every missing key with its type and usage and the ceremony that makes it,
// and nothing is generated; once the keys are there (made as the ceremony
// preset makes them, from ServiceKeySpecs) keysvc starts.
func TestRequireServiceKeysMem(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tok := memtoken.New("prod", "0042")
	_, err = keysvc.New(ctx, keysvc.Config{Keys: tok, Store: st, RequireServiceKeys: true})
	if !errors.Is(err, keysvc.ErrServiceKeysMissing) {
		t.Fatalf("start on an empty token: %v, want ErrServiceKeysMissing", err)
	}
	msg := err.Error()
	for _, want := range []string{`token "prod" (serial 0042)`, "ceremony keygen", "service_keys: true", "ceremony backup", "ceremony restore",
		"keysvc-kek (aes-256, usage wrap, unwrap", "keysvc-sm-kek (aes-256, usage encrypt, decrypt", "keysvc-pin-mac (generic-secret, usage sign",
		"keysvc-audit-digest (generic-secret, usage sign", "keysvc-audit (ec-p256, usage sign"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal does not say %q:\n%s", want, msg)
		}
	}
	if labels, err := tok.KeyLabels(ctx); err != nil || len(labels) != 0 {
		t.Fatalf("the refused start left keys %v (%v)", labels, err)
	}
	if rec, err := st.ServiceKeys(); err != nil || rec != nil {
		t.Fatalf("the refused start recorded %+v (%v)", rec, err)
	}
	for _, ks := range keysvc.ServiceKeySpecs() {
		if _, err := tok.GenerateKey(ctx, ks.KeySpec()); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := keysvc.New(ctx, keysvc.Config{Keys: tok, Store: st, RequireServiceKeys: true})
	if err != nil {
		t.Fatalf("start with the service keys in place: %v", err)
	}
	svc.Close()
	if rec, err := st.ServiceKeys(); err != nil || rec == nil || len(rec.Keys) != len(keysvc.ServiceKeySpecs()) {
		t.Fatalf("record after the first start: %+v (%v)", rec, err)
	}
}

// CheckServiceKeysAgree on in-memory stores: independently made keys are
// refused naming the key and both tokens; a key missing from one member is
// named with that member.
func TestCheckServiceKeysAgreeMem(t *testing.T) {
	ctx := context.Background()
	a, b := memtoken.New("hsm-a", "A1"), memtoken.New("hsm-b", "B2")
	for _, tok := range []*memtoken.Token{a, b} {
		for _, ks := range keysvc.ServiceKeySpecs() {
			if ks.Label == keysvc.AuditKeyLabel && tok == b {
				continue
			}
			if _, err := tok.GenerateKey(ctx, ks.KeySpec()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := keysvc.CheckServiceKeysAgree(ctx, []keysvc.KeyStore{a}, keysvc.ServiceKeySpecs(), nil); err != nil {
		t.Fatalf("one token agrees with itself: %v", err)
	}
	err := keysvc.CheckServiceKeysAgree(ctx, []keysvc.KeyStore{a, b}, keysvc.ServiceKeySpecs(), nil)
	if !errors.Is(err, keysvc.ErrServiceKeysDiffer) {
		t.Fatalf("two independent tokens: %v, want ErrServiceKeysDiffer", err)
	}
	for _, want := range []string{`keysvc-kek on token "hsm-b" (serial B2): differs from token "hsm-a" (serial A1)'s`, `keysvc-pin-mac on token "hsm-b"`,
		`keysvc-audit: missing from token "hsm-b" (serial B2)`, "ceremony restore"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal does not say %q:\n%v", want, err)
		}
	}
}

// CheckMemberServiceKeys (a member re-admitted to a set, a token joining
// it) compares one store with the record New made: the token New started on
// passes, another with its own keys is refused naming it.
func TestCheckMemberServiceKeysMem(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "keysvc.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, b := memtoken.New("hsm-a", "A1"), memtoken.New("hsm-b", "B2")
	for _, tok := range []*memtoken.Token{a, b} {
		for _, ks := range keysvc.ServiceKeySpecs() {
			if _, err := tok.GenerateKey(ctx, ks.KeySpec()); err != nil {
				t.Fatal(err)
			}
		}
	}
	svc, err := keysvc.New(ctx, keysvc.Config{Keys: a, Store: st, RequireServiceKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := svc.CheckMemberServiceKeys(ctx, a); err != nil {
		t.Fatalf("the token keysvc started on: %v", err)
	}
	err = svc.CheckMemberServiceKeys(ctx, b)
	if !errors.Is(err, keysvc.ErrServiceKeysDiffer) || !strings.Contains(err.Error(), `keysvc-kek on token "hsm-b" (serial B2): differs from the store's record`) {
		t.Fatalf("another token: %v", err)
	}
}
