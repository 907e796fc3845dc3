package keysvc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
)

var lcNow = time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)

// lcKey is a key whose primary is version 3; versions 1 and 2 are older.
func lcKey() *Key {
	return &Key{Name: "payments", Primary: 3, Versions: []Version{{Version: 1}, {Version: 2}, {Version: 3}}}
}

func TestTransition(t *testing.T) {
	const delay = 36 * time.Hour
	at := lcNow.Add(delay)
	type want struct {
		state  wire.State
		before wire.State
		at     *time.Time
	}
	cases := []struct {
		name    string
		version int // 2: not primary; 3: primary
		from    Version
		action  wire.VersionAction
		want    *want  // nil: ErrIllegalTransition
		why     string // substring of the refusal
	}{
		{"enabled disable", 2, Version{State: wire.StateEnabled}, wire.ActionDisable, &want{state: wire.StateDisabled}, ""},
		{"enabled enable", 2, Version{State: wire.StateEnabled}, wire.ActionEnable, nil, "it is enabled"},
		{"enabled schedule", 2, Version{State: wire.StateEnabled}, wire.ActionScheduleDestroy, &want{wire.StateDestroyScheduled, wire.StateEnabled, &at}, ""},
		{"enabled cancel", 2, Version{State: wire.StateEnabled}, wire.ActionCancelDestroy, nil, "it is enabled"},

		{"disabled disable", 2, Version{State: wire.StateDisabled}, wire.ActionDisable, nil, "it is disabled"},
		{"disabled enable", 2, Version{State: wire.StateDisabled}, wire.ActionEnable, &want{state: wire.StateEnabled}, ""},
		{"disabled schedule", 2, Version{State: wire.StateDisabled}, wire.ActionScheduleDestroy, &want{wire.StateDestroyScheduled, wire.StateDisabled, &at}, ""},
		{"disabled cancel", 2, Version{State: wire.StateDisabled}, wire.ActionCancelDestroy, nil, "it is disabled"},

		{"scheduled disable", 2, Version{State: wire.StateDestroyScheduled, StateBeforeDestroy: wire.StateEnabled, DestroyAt: &at}, wire.ActionDisable, nil, "it is destroy-scheduled"},
		{"scheduled enable", 2, Version{State: wire.StateDestroyScheduled, StateBeforeDestroy: wire.StateEnabled, DestroyAt: &at}, wire.ActionEnable, nil, "it is destroy-scheduled"},
		{"scheduled schedule", 2, Version{State: wire.StateDestroyScheduled, StateBeforeDestroy: wire.StateEnabled, DestroyAt: &at}, wire.ActionScheduleDestroy, nil, "it is destroy-scheduled"},
		{"scheduled cancel, was enabled", 2, Version{State: wire.StateDestroyScheduled, StateBeforeDestroy: wire.StateEnabled, DestroyAt: &at}, wire.ActionCancelDestroy, &want{state: wire.StateEnabled}, ""},
		{"scheduled cancel, was disabled", 2, Version{State: wire.StateDestroyScheduled, StateBeforeDestroy: wire.StateDisabled, DestroyAt: &at}, wire.ActionCancelDestroy, &want{state: wire.StateDisabled}, ""},
		{"scheduled cancel, due", 2, Version{State: wire.StateDestroyScheduled, StateBeforeDestroy: wire.StateEnabled, DestroyAt: &lcNow}, wire.ActionCancelDestroy, nil, "a due destruction cannot be cancelled"},
		{"scheduled cancel, no record of before", 2, Version{State: wire.StateDestroyScheduled, DestroyAt: &at}, wire.ActionCancelDestroy, &want{state: wire.StateDisabled}, ""},

		{"destroyed disable", 2, Version{State: wire.StateDestroyed}, wire.ActionDisable, nil, "it is destroyed"},
		{"destroyed enable", 2, Version{State: wire.StateDestroyed}, wire.ActionEnable, nil, "it is destroyed"},
		{"destroyed schedule", 2, Version{State: wire.StateDestroyed}, wire.ActionScheduleDestroy, nil, "it is destroyed"},
		{"destroyed cancel", 2, Version{State: wire.StateDestroyed}, wire.ActionCancelDestroy, nil, "it is destroyed"},

		{"primary disable", 3, Version{State: wire.StateEnabled}, wire.ActionDisable, &want{state: wire.StateDisabled}, ""},
		{"primary enable", 3, Version{State: wire.StateDisabled}, wire.ActionEnable, &want{state: wire.StateEnabled}, ""},
		{"primary schedule (enabled)", 3, Version{State: wire.StateEnabled}, wire.ActionScheduleDestroy, nil, "it is enabled and the primary version; rotate the key first"},
		{"primary schedule (disabled)", 3, Version{State: wire.StateDisabled}, wire.ActionScheduleDestroy, nil, "it is disabled and the primary version; rotate the key first"},
		{"primary cancel", 3, Version{State: wire.StateDestroyScheduled, StateBeforeDestroy: wire.StateDisabled, DestroyAt: &at}, wire.ActionCancelDestroy, &want{state: wire.StateDisabled}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := lcKey()
			v := k.Version(c.version)
			from := c.from
			from.Version = c.version
			*v = from
			err := transition(k, v, c.action, lcNow, delay)
			if c.want == nil {
				if !errors.Is(err, wire.ErrIllegalTransition) {
					t.Fatalf("err = %v, want ErrIllegalTransition", err)
				}
				prefix := fmt.Sprintf("%v: cannot %s version %d of %q: ", wire.ErrIllegalTransition, c.action, c.version, "payments")
				if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.why) {
					t.Errorf("err = %q, want %q...%q", err, prefix, c.why)
				}
				if !reflect.DeepEqual(*v, from) {
					t.Errorf("a refused transition changed the version: %+v, was %+v", *v, from)
				}
				return
			}
			if err != nil {
				t.Fatalf("transition: %v", err)
			}
			if v.State != c.want.state || v.StateBeforeDestroy != c.want.before {
				t.Errorf("state = %q (before %q), want %q (before %q)", v.State, v.StateBeforeDestroy, c.want.state, c.want.before)
			}
			switch {
			case c.want.at == nil && v.DestroyAt != nil:
				t.Errorf("DestroyAt = %v, want nil", *v.DestroyAt)
			case c.want.at != nil && (v.DestroyAt == nil || !v.DestroyAt.Equal(*c.want.at)):
				t.Errorf("DestroyAt = %v, want %v", v.DestroyAt, *c.want.at)
			}
			if v.Version != c.version || k.Primary != 3 {
				t.Errorf("transition changed version number or primary: %d, %d", v.Version, k.Primary)
			}
		})
	}
}

func TestTransitionScheduleDelay(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Minute, 24 * time.Hour, 30 * 24 * time.Hour} {
		k := lcKey()
		v := k.Version(1)
		v.State = wire.StateEnabled
		if err := transition(k, v, wire.ActionScheduleDestroy, lcNow, delay); err != nil {
			t.Fatal(err)
		}
		if v.DestroyAt == nil || !v.DestroyAt.Equal(lcNow.Add(delay)) {
			t.Errorf("delay %v: DestroyAt = %v, want %v", delay, v.DestroyAt, lcNow.Add(delay))
		}
	}
}

func TestTransitionUnknownAction(t *testing.T) {
	for _, action := range []wire.VersionAction{"", "destroy", "Disable", "cancel"} {
		k := lcKey()
		v := k.Version(2)
		v.State = wire.StateEnabled
		err := transition(k, v, action, lcNow, time.Hour)
		if !errors.Is(err, wire.ErrInvalidArgument) || errors.Is(err, wire.ErrIllegalTransition) {
			t.Errorf("action %q: err = %v, want ErrInvalidArgument only", action, err)
		}
		if v.State != wire.StateEnabled {
			t.Errorf("action %q changed the state to %q", action, v.State)
		}
	}
}

// lcValidRequest is a request validate accepts; cases change one thing.
func lcValidRequest() wire.CreateKeyRequest {
	return wire.CreateKeyRequest{Name: "payments-sign", Purpose: wire.PurposeSign, Algorithm: wire.AlgECP256, Protection: wire.ProtectionHSM,
		Policy: wire.Policy{Grants: []wire.Grant{{Client: "payments", Ops: []wire.Op{wire.OpSign, wire.OpVerify}}}}}
}

func TestValidateNames(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"0", true},
		{"payments-sign", true},
		{"a.b_c-d9", true},
		{"a" + strings.Repeat("b", 63), true},
		{"", false},
		{"a" + strings.Repeat("b", 64), false},
		{"Payments", false},
		{"paymentS", false},
		{"-payments", false},
		{".payments", false},
		{"_payments", false},
		{"pay ments", false},
		{"pay/ments", false},
		{"pay:ments", false},
		{"payments\n", false},
		{"zahlungen-ä", false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%q", c.name), func(t *testing.T) {
			r := lcValidRequest()
			r.Name = c.name
			err := validateCreate(r)
			if c.ok {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if !errors.Is(err, wire.ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
			if want := fmt.Sprintf("key name %q must be", c.name); !strings.Contains(err.Error(), want) {
				t.Errorf("err = %q, want %q", err, want)
			}
		})
	}
}

func TestValidatePurposeAlgorithm(t *testing.T) {
	// Written out independently of purposeAlgorithms.
	allowed := map[wire.Purpose]map[wire.Algorithm]bool{
		wire.PurposeSign:    {wire.AlgECP256: true, wire.AlgECP384: true, wire.AlgRSA2048: true, wire.AlgRSA3072: true, wire.AlgSM2: true},
		wire.PurposeEncrypt: {wire.AlgAES256: true, wire.AlgRSA2048: true, wire.AlgRSA3072: true, wire.AlgSM2: true, wire.AlgSM4: true},
		wire.PurposeWrap:    {wire.AlgAES256: true, wire.AlgSM4: true},
		wire.PurposeMAC:     {wire.AlgHMACSM3: true},
	}
	purposes := []wire.Purpose{wire.PurposeSign, wire.PurposeEncrypt, wire.PurposeWrap, wire.PurposeMAC, "", "verify", "Sign"}
	algs := []wire.Algorithm{wire.AlgECP256, wire.AlgECP384, wire.AlgRSA2048, wire.AlgRSA3072, wire.AlgAES256, wire.AlgSM2, wire.AlgSM4, wire.AlgHMACSM3, "", "ec-p521", "rsa-1024", "AES-256"}
	for _, p := range purposes {
		for _, a := range algs {
			t.Run(string(p)+"+"+string(a), func(t *testing.T) {
				r := lcValidRequest()
				r.Purpose, r.Algorithm = p, a
				if isSM(a) {
					r.Protection = wire.ProtectionWrapped // SM keys are always sealed under the token KEK
				}
				err := validateCreate(r)
				_, knownPurpose := allowed[p]
				switch {
				case allowed[p][a]:
					if err != nil {
						t.Fatalf("validate: %v", err)
					}
				case !errors.Is(err, wire.ErrInvalidArgument):
					t.Fatalf("err = %v, want ErrInvalidArgument", err)
				case !knownPurpose && !strings.Contains(err.Error(), "purpose must be sign, encrypt, wrap or mac"):
					t.Errorf("err = %q, want the purpose named", err)
				case knownPurpose && !strings.Contains(err.Error(), fmt.Sprintf("algorithm %q is not available for purpose %s", a, p)):
					t.Errorf("err = %q, want the algorithm named", err)
				}
			})
		}
	}
}

func TestValidateOtherFields(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(r *wire.CreateKeyRequest)
		msg    string // "" means valid
	}{
		{"hsm", func(r *wire.CreateKeyRequest) { r.Protection = wire.ProtectionHSM }, ""},
		{"wrapped", func(r *wire.CreateKeyRequest) { r.Protection = wire.ProtectionWrapped }, ""},
		{"no protection", func(r *wire.CreateKeyRequest) { r.Protection = "" }, "protection must be hsm, wrapped, external or tpm"},
		{"soft protection", func(r *wire.CreateKeyRequest) { r.Protection = "software" }, "protection must be hsm, wrapped, external or tpm"},
		{"upper-case protection", func(r *wire.CreateKeyRequest) { r.Protection = "HSM" }, "protection must be hsm, wrapped, external or tpm"},
		{"tpm protection", func(r *wire.CreateKeyRequest) { r.Protection = wire.ProtectionTPM }, ""},
		{"tpm protection rsa", func(r *wire.CreateKeyRequest) { r.Protection, r.Algorithm = wire.ProtectionTPM, wire.AlgRSA2048 }, "tpm keys are ec-p256 keys for purpose sign"},

		{"no rotation", func(r *wire.CreateKeyRequest) { r.RotationPeriod = 0 }, ""},
		{"rotation 1h", func(r *wire.CreateKeyRequest) { r.RotationPeriod = wire.Duration(time.Hour) }, ""},
		{"rotation 720h", func(r *wire.CreateKeyRequest) { r.RotationPeriod = wire.Duration(720 * time.Hour) }, ""},
		{"rotation 59m59s", func(r *wire.CreateKeyRequest) { r.RotationPeriod = wire.Duration(time.Hour - time.Second) }, "rotation_period must be at least 1h"},
		{"rotation 1ns", func(r *wire.CreateKeyRequest) { r.RotationPeriod = 1 }, "rotation_period must be at least 1h"},
		{"rotation negative", func(r *wire.CreateKeyRequest) { r.RotationPeriod = wire.Duration(-time.Hour) }, "rotation_period must be at least 1h"},

		{"no grants", func(r *wire.CreateKeyRequest) { r.Policy = wire.Policy{} }, ""},
		{"grant without ops", func(r *wire.CreateKeyRequest) { r.Policy.Grants = []wire.Grant{{Client: "c"}} }, ""},
		{"every op", func(r *wire.CreateKeyRequest) {
			r.Policy.Grants = []wire.Grant{{Client: "c", Ops: []wire.Op{wire.OpSign, wire.OpVerify, wire.OpEncrypt, wire.OpDecrypt, wire.OpDataKey, wire.OpPublic, wire.OpRead, wire.OpRotate, wire.OpManage}}}
		}, ""},
		{"grant with empty client", func(r *wire.CreateKeyRequest) {
			r.Policy.Grants = append(r.Policy.Grants, wire.Grant{Client: "", Ops: []wire.Op{wire.OpSign}})
		}, "every policy grant needs a client"},
		{"unknown op", func(r *wire.CreateKeyRequest) {
			r.Policy.Grants = append(r.Policy.Grants, wire.Grant{Client: "ops", Ops: []wire.Op{wire.OpRead, "delete"}})
		}, `unknown operation "delete" in the policy for "ops"`},
		{"empty op", func(r *wire.CreateKeyRequest) { r.Policy.Grants[0].Ops = []wire.Op{""} }, `unknown operation "" in the policy for "payments"`},
		{"upper-case op", func(r *wire.CreateKeyRequest) { r.Policy.Grants[0].Ops = []wire.Op{"Sign"} }, `unknown operation "Sign"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := lcValidRequest()
			c.mutate(&r)
			err := validateCreate(r)
			if c.msg == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if !errors.Is(err, wire.ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %q, want %q", err, c.msg)
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	k := &Key{Name: "payments-sign", Policy: wire.Policy{Grants: []wire.Grant{
		{Client: "payments", Ops: []wire.Op{wire.OpSign, wire.OpVerify}},
		{Client: "root", Ops: []wire.Op{wire.OpPublic}},
	}}}
	allOps := []wire.Op{wire.OpSign, wire.OpVerify, wire.OpEncrypt, wire.OpDecrypt, wire.OpDataKey, wire.OpPublic, wire.OpRead, wire.OpRotate, wire.OpManage}
	cases := []struct {
		caller  Caller
		allowed []wire.Op
	}{
		{Caller{Name: "admin", Admin: true}, []wire.Op{wire.OpRead, wire.OpManage, wire.OpRotate}},
		{Caller{Name: "root", Admin: true}, []wire.Op{wire.OpRead, wire.OpManage, wire.OpRotate, wire.OpPublic}},
		{Caller{Name: "payments"}, []wire.Op{wire.OpSign, wire.OpVerify}},
		{Caller{Name: "payments", Admin: true}, []wire.Op{wire.OpSign, wire.OpVerify, wire.OpRead, wire.OpManage, wire.OpRotate}},
		{Caller{Name: "stranger"}, nil},
		{Caller{Name: ""}, nil},
	}
	for _, c := range cases {
		for _, op := range allOps {
			want := false
			for _, a := range c.allowed {
				want = want || a == op
			}
			err := authorize(c.caller, k, op)
			switch {
			case want && err != nil:
				t.Errorf("%+v %s: %v, want allowed", c.caller, op, err)
			case !want && !errors.Is(err, wire.ErrForbidden):
				t.Errorf("%+v %s: err = %v, want ErrForbidden", c.caller, op, err)
			case !want && !strings.Contains(err.Error(), fmt.Sprintf("client %q may not %s with key %q", c.caller.Name, op, k.Name)):
				t.Errorf("%+v %s: err = %q", c.caller, op, err)
			}
		}
	}
}

func TestDigestAndOpts(t *testing.T) {
	msg := []byte("hello")
	s256 := sha256.Sum256(msg)
	s384 := sha512.Sum384(msg)
	empty256 := sha256.Sum256(nil)
	d32 := make([]byte, 32)
	d48 := make([]byte, 48)
	for i := range d48 {
		d48[i] = byte(i)
	}
	copy(d32, d48)
	pss := &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}
	cases := []struct {
		name            string
		alg             wire.Algorithm
		message, digest []byte
		scheme          string
		want            []byte
		opts            crypto.SignerOpts
		msg             string // non-empty: ErrInvalidArgument with this text
	}{
		{"p256 message", wire.AlgECP256, msg, nil, "", s256[:], crypto.SHA256, ""},
		{"p384 message", wire.AlgECP384, msg, nil, "", s384[:], crypto.SHA384, ""},
		{"rsa2048 message", wire.AlgRSA2048, msg, nil, "", s256[:], crypto.SHA256, ""},
		{"rsa3072 message", wire.AlgRSA3072, msg, nil, "pkcs1v15", s256[:], crypto.SHA256, ""},
		{"empty message", wire.AlgECP256, []byte{}, nil, "", empty256[:], crypto.SHA256, ""},
		{"p256 digest", wire.AlgECP256, nil, d32, "", d32, crypto.SHA256, ""},
		{"p384 digest", wire.AlgECP384, nil, d48, "", d48, crypto.SHA384, ""},
		{"rsa digest", wire.AlgRSA2048, nil, d32, "", d32, crypto.SHA256, ""},
		{"rsa pss message", wire.AlgRSA2048, msg, nil, "pss", s256[:], pss, ""},
		{"rsa3072 pss digest", wire.AlgRSA3072, nil, d32, "pss", d32, pss, ""},

		{"p256 digest too long", wire.AlgECP256, nil, d48, "", nil, nil, "digest must be 32 bytes (SHA-256) for ec-p256 keys, got 48"},
		{"p384 digest too short", wire.AlgECP384, nil, d32, "", nil, nil, "digest must be 48 bytes (SHA-384) for ec-p384 keys, got 32"},
		{"rsa digest short", wire.AlgRSA2048, nil, d32[:20], "", nil, nil, "digest must be 32 bytes (SHA-256) for rsa-2048 keys, got 20"},
		{"empty digest", wire.AlgECP256, nil, []byte{}, "", nil, nil, "got 0"},
		{"both", wire.AlgECP256, msg, d32, "", nil, nil, "give exactly one of message and digest"},
		{"neither", wire.AlgECP256, nil, nil, "", nil, nil, "give exactly one of message and digest"},
		{"pss on p256", wire.AlgECP256, msg, nil, "pss", nil, nil, "scheme pss is for RSA keys"},
		{"pss on p384", wire.AlgECP384, msg, nil, "pss", nil, nil, "scheme pss is for RSA keys"},
		{"pss on aes", wire.AlgAES256, msg, nil, "pss", nil, nil, "scheme pss is for RSA keys"},
		{"unknown scheme", wire.AlgRSA2048, msg, nil, "PSS", nil, nil, "scheme must be pkcs1v15 or pss"},
		{"unknown scheme pkcs1", wire.AlgRSA2048, msg, nil, "pkcs1", nil, nil, "scheme must be pkcs1v15 or pss"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, opts, err := digestAndOpts(&Key{Algorithm: c.alg}, c.message, c.digest, c.scheme)
			if c.msg != "" {
				if !errors.Is(err, wire.ErrInvalidArgument) {
					t.Fatalf("err = %v, want ErrInvalidArgument", err)
				}
				if !strings.Contains(err.Error(), c.msg) {
					t.Errorf("err = %q, want %q", err, c.msg)
				}
				if got != nil || opts != nil {
					t.Errorf("returned %x, %v with the error", got, opts)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(c.want) {
				t.Errorf("digest = %x, want %x", got, c.want)
			}
			if !reflect.DeepEqual(opts, c.opts) {
				t.Errorf("opts = %#v, want %#v", opts, c.opts)
			}
		})
	}
}

// The digest and options digestAndOpts returns sign and verify with Go's
// own implementations, as Verify does.
func TestDigestAndOptsSignVerify(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	digest, _, err := digestAndOpts(&Key{Algorithm: wire.AlgECP384}, []byte("m"), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ecdsa.SignASN1(rand.Reader, p384, digest)
	if err != nil {
		t.Fatal(err)
	}
	h := sha512.Sum384([]byte("m"))
	if !ecdsa.VerifyASN1(&p384.PublicKey, h[:], sig) {
		t.Error("ec-p384 message signature does not verify over SHA-384 of the message")
	}

	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	digest, opts, err := digestAndOpts(&Key{Algorithm: wire.AlgRSA2048}, []byte("m"), nil, "pss")
	if err != nil {
		t.Fatal(err)
	}
	sig, err = rk.Sign(rand.Reader, digest, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPSS(&rk.PublicKey, crypto.SHA256, digest, sig, opts.(*rsa.PSSOptions)); err != nil {
		t.Errorf("pss: %v", err)
	}
	if err := rsa.VerifyPKCS1v15(&rk.PublicKey, crypto.SHA256, digest, sig); err == nil {
		t.Error("a PSS signature verified as PKCS#1 v1.5")
	}
}

func TestResultCode(t *testing.T) {
	codes := []struct {
		name     string
		sentinel error
		code     string
	}{
		{"ErrInvalidArgument", wire.ErrInvalidArgument, "invalid_argument"},
		{"ErrKeyNotFound", wire.ErrKeyNotFound, "key_not_found"},
		{"ErrKeyExists", wire.ErrKeyExists, "key_exists"},
		{"ErrVersionNotFound", wire.ErrVersionNotFound, "version_not_found"},
		{"ErrIllegalTransition", wire.ErrIllegalTransition, "illegal_transition"},
		{"ErrVersionNotUsable", wire.ErrVersionNotUsable, "version_not_usable"},
		{"ErrWrongPurpose", wire.ErrWrongPurpose, "wrong_purpose"},
		{"ErrForbidden", wire.ErrForbidden, "forbidden"},
		{"ErrUnauthenticated", wire.ErrUnauthenticated, "unauthenticated"},
		{"ErrInvalidCiphertext", wire.ErrInvalidCiphertext, "invalid_ciphertext"},
		{"ErrInvalidSignature", wire.ErrInvalidSignature, "invalid_signature"},
		{"ErrDecrypt", wire.ErrDecrypt, "decryption_failed"},
		{"ErrTokenUnavailable", wire.ErrTokenUnavailable, "token_unavailable"},
		{"ErrTokenLocked", wire.ErrTokenLocked, "token_locked"},
		{"ErrAuditUnavailable", wire.ErrAuditUnavailable, "audit_unavailable"},
		{"ErrStore", wire.ErrStore, "store_unavailable"},
		{"ErrConfirmationRequired", wire.ErrConfirmationRequired, "confirmation_required"},
		{"ErrTransactionNotRecognised", wire.ErrTransactionNotRecognised, "transaction_not_recognised"},
		{"ErrConfirmationPending", wire.ErrConfirmationPending, "confirmation_pending"},
		{"ErrConfirmationNotFound", wire.ErrConfirmationNotFound, "confirmation_not_found"},
		{"ErrConfirmationClosed", wire.ErrConfirmationClosed, "confirmation_closed"},
		{"ErrConfirmationMismatch", wire.ErrConfirmationMismatch, "confirmation_mismatch"},
		{"ErrHolderPIN", wire.ErrHolderPIN, "holder_pin_incorrect"},
		{"ErrHolderLocked", wire.ErrHolderLocked, "holder_locked"},
		{"ErrHolderNotEnrolled", wire.ErrHolderNotEnrolled, "holder_not_enrolled"},
		{"ErrConfirmUnavailable", wire.ErrConfirmUnavailable, "confirmation_unavailable"},
	}
	names := map[string]bool{}
	seen := map[string]bool{}
	for _, c := range codes {
		names[c.name] = true
		if seen[c.code] {
			t.Errorf("code %q used twice", c.code)
		}
		seen[c.code] = true
		for _, err := range []error{
			c.sentinel,
			fmt.Errorf("keysvc: doing something: %w", c.sentinel),
			fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", c.sentinel)),
			fmt.Errorf("%w: %w", c.sentinel, errors.New("cause")),
			errors.Join(errors.New("other"), c.sentinel),
		} {
			if got := ResultCode(err); got != c.code {
				t.Errorf("%s: ResultCode(%q) = %q, want %q", c.name, err, got, c.code)
			}
		}
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{errors.New("boom"), "internal"},
		{fmt.Errorf("wrapped: %w", errors.New("boom")), "internal"},
		{errors.New(wire.ErrKeyNotFound.Error()), "internal"}, // same text, not the sentinel
	} {
		if got := ResultCode(c.err); got != c.want {
			t.Errorf("ResultCode(%v) = %q, want %q", c.err, got, c.want)
		}
	}

	// Every Err* variable declared in wire/errors.go is in the table above.
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("wire", "errors.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.VAR {
			continue
		}
		for _, s := range g.Specs {
			for _, id := range s.(*ast.ValueSpec).Names {
				if strings.HasPrefix(id.Name, "Err") {
					declared++
					if !names[id.Name] {
						t.Errorf("%s is declared in errors.go but has no ResultCode case here", id.Name)
					}
				}
			}
		}
	}
	if declared != len(codes) {
		t.Errorf("errors.go declares %d sentinels; the table has %d", declared, len(codes))
	}
}
