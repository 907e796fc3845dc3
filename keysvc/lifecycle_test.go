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
	"reflect"
	"strings"
	"testing"
	"time"
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
		state  State
		before State
		at     *time.Time
	}
	cases := []struct {
		name    string
		version int // 2: not primary; 3: primary
		from    Version
		action  VersionAction
		want    *want  // nil: ErrIllegalTransition
		why     string // substring of the refusal
	}{
		{"enabled disable", 2, Version{State: StateEnabled}, ActionDisable, &want{state: StateDisabled}, ""},
		{"enabled enable", 2, Version{State: StateEnabled}, ActionEnable, nil, "it is enabled"},
		{"enabled schedule", 2, Version{State: StateEnabled}, ActionScheduleDestroy, &want{StateDestroyScheduled, StateEnabled, &at}, ""},
		{"enabled cancel", 2, Version{State: StateEnabled}, ActionCancelDestroy, nil, "it is enabled"},

		{"disabled disable", 2, Version{State: StateDisabled}, ActionDisable, nil, "it is disabled"},
		{"disabled enable", 2, Version{State: StateDisabled}, ActionEnable, &want{state: StateEnabled}, ""},
		{"disabled schedule", 2, Version{State: StateDisabled}, ActionScheduleDestroy, &want{StateDestroyScheduled, StateDisabled, &at}, ""},
		{"disabled cancel", 2, Version{State: StateDisabled}, ActionCancelDestroy, nil, "it is disabled"},

		{"scheduled disable", 2, Version{State: StateDestroyScheduled, StateBeforeDestroy: StateEnabled, DestroyAt: &at}, ActionDisable, nil, "it is destroy-scheduled"},
		{"scheduled enable", 2, Version{State: StateDestroyScheduled, StateBeforeDestroy: StateEnabled, DestroyAt: &at}, ActionEnable, nil, "it is destroy-scheduled"},
		{"scheduled schedule", 2, Version{State: StateDestroyScheduled, StateBeforeDestroy: StateEnabled, DestroyAt: &at}, ActionScheduleDestroy, nil, "it is destroy-scheduled"},
		{"scheduled cancel, was enabled", 2, Version{State: StateDestroyScheduled, StateBeforeDestroy: StateEnabled, DestroyAt: &at}, ActionCancelDestroy, &want{state: StateEnabled}, ""},
		{"scheduled cancel, was disabled", 2, Version{State: StateDestroyScheduled, StateBeforeDestroy: StateDisabled, DestroyAt: &at}, ActionCancelDestroy, &want{state: StateDisabled}, ""},
		{"scheduled cancel, no record of before", 2, Version{State: StateDestroyScheduled, DestroyAt: &at}, ActionCancelDestroy, &want{state: StateDisabled}, ""},

		{"destroyed disable", 2, Version{State: StateDestroyed}, ActionDisable, nil, "it is destroyed"},
		{"destroyed enable", 2, Version{State: StateDestroyed}, ActionEnable, nil, "it is destroyed"},
		{"destroyed schedule", 2, Version{State: StateDestroyed}, ActionScheduleDestroy, nil, "it is destroyed"},
		{"destroyed cancel", 2, Version{State: StateDestroyed}, ActionCancelDestroy, nil, "it is destroyed"},

		{"primary disable", 3, Version{State: StateEnabled}, ActionDisable, &want{state: StateDisabled}, ""},
		{"primary enable", 3, Version{State: StateDisabled}, ActionEnable, &want{state: StateEnabled}, ""},
		{"primary schedule (enabled)", 3, Version{State: StateEnabled}, ActionScheduleDestroy, nil, "it is enabled and the primary version; rotate the key first"},
		{"primary schedule (disabled)", 3, Version{State: StateDisabled}, ActionScheduleDestroy, nil, "it is disabled and the primary version; rotate the key first"},
		{"primary cancel", 3, Version{State: StateDestroyScheduled, StateBeforeDestroy: StateDisabled, DestroyAt: &at}, ActionCancelDestroy, &want{state: StateDisabled}, ""},
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
				if !errors.Is(err, ErrIllegalTransition) {
					t.Fatalf("err = %v, want ErrIllegalTransition", err)
				}
				prefix := fmt.Sprintf("%v: cannot %s version %d of %q: ", ErrIllegalTransition, c.action, c.version, "payments")
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
		v.State = StateEnabled
		if err := transition(k, v, ActionScheduleDestroy, lcNow, delay); err != nil {
			t.Fatal(err)
		}
		if v.DestroyAt == nil || !v.DestroyAt.Equal(lcNow.Add(delay)) {
			t.Errorf("delay %v: DestroyAt = %v, want %v", delay, v.DestroyAt, lcNow.Add(delay))
		}
	}
}

func TestTransitionUnknownAction(t *testing.T) {
	for _, action := range []VersionAction{"", "destroy", "Disable", "cancel"} {
		k := lcKey()
		v := k.Version(2)
		v.State = StateEnabled
		err := transition(k, v, action, lcNow, time.Hour)
		if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrIllegalTransition) {
			t.Errorf("action %q: err = %v, want ErrInvalidArgument only", action, err)
		}
		if v.State != StateEnabled {
			t.Errorf("action %q changed the state to %q", action, v.State)
		}
	}
}

// lcValidRequest is a request validate accepts; cases change one thing.
func lcValidRequest() CreateKeyRequest {
	return CreateKeyRequest{Name: "payments-sign", Purpose: PurposeSign, Algorithm: AlgECP256, Protection: ProtectionHSM,
		Policy: Policy{Grants: []Grant{{Client: "payments", Ops: []Op{OpSign, OpVerify}}}}}
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
			err := r.validate()
			if c.ok {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidArgument) {
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
	allowed := map[Purpose]map[Algorithm]bool{
		PurposeSign:    {AlgECP256: true, AlgECP384: true, AlgRSA2048: true, AlgRSA3072: true, AlgSM2: true},
		PurposeEncrypt: {AlgAES256: true, AlgRSA2048: true, AlgRSA3072: true, AlgSM2: true, AlgSM4: true},
		PurposeWrap:    {AlgAES256: true, AlgSM4: true},
		PurposeMAC:     {AlgHMACSM3: true},
	}
	purposes := []Purpose{PurposeSign, PurposeEncrypt, PurposeWrap, PurposeMAC, "", "verify", "Sign"}
	algs := []Algorithm{AlgECP256, AlgECP384, AlgRSA2048, AlgRSA3072, AlgAES256, AlgSM2, AlgSM4, AlgHMACSM3, "", "ec-p521", "rsa-1024", "AES-256"}
	for _, p := range purposes {
		for _, a := range algs {
			t.Run(string(p)+"+"+string(a), func(t *testing.T) {
				r := lcValidRequest()
				r.Purpose, r.Algorithm = p, a
				if isSM(a) {
					r.Protection = ProtectionWrapped // SM keys are always sealed under the token KEK
				}
				err := r.validate()
				_, knownPurpose := allowed[p]
				switch {
				case allowed[p][a]:
					if err != nil {
						t.Fatalf("validate: %v", err)
					}
				case !errors.Is(err, ErrInvalidArgument):
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
		mutate func(r *CreateKeyRequest)
		msg    string // "" means valid
	}{
		{"hsm", func(r *CreateKeyRequest) { r.Protection = ProtectionHSM }, ""},
		{"wrapped", func(r *CreateKeyRequest) { r.Protection = ProtectionWrapped }, ""},
		{"no protection", func(r *CreateKeyRequest) { r.Protection = "" }, "protection must be hsm, wrapped, external or tpm"},
		{"soft protection", func(r *CreateKeyRequest) { r.Protection = "software" }, "protection must be hsm, wrapped, external or tpm"},
		{"upper-case protection", func(r *CreateKeyRequest) { r.Protection = "HSM" }, "protection must be hsm, wrapped, external or tpm"},
		{"tpm protection", func(r *CreateKeyRequest) { r.Protection = ProtectionTPM }, ""},
		{"tpm protection rsa", func(r *CreateKeyRequest) { r.Protection, r.Algorithm = ProtectionTPM, AlgRSA2048 }, "tpm keys are ec-p256 keys for purpose sign"},

		{"no rotation", func(r *CreateKeyRequest) { r.RotationPeriod = 0 }, ""},
		{"rotation 1h", func(r *CreateKeyRequest) { r.RotationPeriod = Duration(time.Hour) }, ""},
		{"rotation 720h", func(r *CreateKeyRequest) { r.RotationPeriod = Duration(720 * time.Hour) }, ""},
		{"rotation 59m59s", func(r *CreateKeyRequest) { r.RotationPeriod = Duration(time.Hour - time.Second) }, "rotation_period must be at least 1h"},
		{"rotation 1ns", func(r *CreateKeyRequest) { r.RotationPeriod = 1 }, "rotation_period must be at least 1h"},
		{"rotation negative", func(r *CreateKeyRequest) { r.RotationPeriod = Duration(-time.Hour) }, "rotation_period must be at least 1h"},

		{"no grants", func(r *CreateKeyRequest) { r.Policy = Policy{} }, ""},
		{"grant without ops", func(r *CreateKeyRequest) { r.Policy.Grants = []Grant{{Client: "c"}} }, ""},
		{"every op", func(r *CreateKeyRequest) {
			r.Policy.Grants = []Grant{{Client: "c", Ops: []Op{OpSign, OpVerify, OpEncrypt, OpDecrypt, OpDataKey, OpPublic, OpRead, OpRotate, OpManage}}}
		}, ""},
		{"grant with empty client", func(r *CreateKeyRequest) {
			r.Policy.Grants = append(r.Policy.Grants, Grant{Client: "", Ops: []Op{OpSign}})
		}, "every policy grant needs a client"},
		{"unknown op", func(r *CreateKeyRequest) {
			r.Policy.Grants = append(r.Policy.Grants, Grant{Client: "ops", Ops: []Op{OpRead, "delete"}})
		}, `unknown operation "delete" in the policy for "ops"`},
		{"empty op", func(r *CreateKeyRequest) { r.Policy.Grants[0].Ops = []Op{""} }, `unknown operation "" in the policy for "payments"`},
		{"upper-case op", func(r *CreateKeyRequest) { r.Policy.Grants[0].Ops = []Op{"Sign"} }, `unknown operation "Sign"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := lcValidRequest()
			c.mutate(&r)
			err := r.validate()
			if c.msg == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %q, want %q", err, c.msg)
			}
		})
	}
}

func TestPolicyAllows(t *testing.T) {
	p := Policy{Grants: []Grant{
		{Client: "payments", Ops: []Op{OpSign, OpVerify}},
		{Client: "audit", Ops: []Op{OpRead}},
		{Client: "payments", Ops: []Op{OpPublic}}, // a second grant adds to the first
	}}
	cases := []struct {
		client string
		op     Op
		want   bool
	}{
		{"payments", OpSign, true},
		{"payments", OpVerify, true},
		{"payments", OpPublic, true},
		{"payments", OpRead, false},
		{"payments", OpManage, false},
		{"audit", OpRead, true},
		{"audit", OpSign, false},
		{"Payments", OpSign, false},
		{"", OpSign, false},
		{"stranger", OpRead, false},
	}
	for _, c := range cases {
		if got := p.Allows(c.client, c.op); got != c.want {
			t.Errorf("Allows(%q, %s) = %v, want %v", c.client, c.op, got, c.want)
		}
	}
	if (Policy{}).Allows("payments", OpSign) {
		t.Error("an empty policy allows something")
	}
}

func TestAuthorize(t *testing.T) {
	k := &Key{Name: "payments-sign", Policy: Policy{Grants: []Grant{
		{Client: "payments", Ops: []Op{OpSign, OpVerify}},
		{Client: "root", Ops: []Op{OpPublic}},
	}}}
	allOps := []Op{OpSign, OpVerify, OpEncrypt, OpDecrypt, OpDataKey, OpPublic, OpRead, OpRotate, OpManage}
	cases := []struct {
		caller  Caller
		allowed []Op
	}{
		{Caller{Name: "admin", Admin: true}, []Op{OpRead, OpManage, OpRotate}},
		{Caller{Name: "root", Admin: true}, []Op{OpRead, OpManage, OpRotate, OpPublic}},
		{Caller{Name: "payments"}, []Op{OpSign, OpVerify}},
		{Caller{Name: "payments", Admin: true}, []Op{OpSign, OpVerify, OpRead, OpManage, OpRotate}},
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
			case !want && !errors.Is(err, ErrForbidden):
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
		alg             Algorithm
		message, digest []byte
		scheme          string
		want            []byte
		opts            crypto.SignerOpts
		msg             string // non-empty: ErrInvalidArgument with this text
	}{
		{"p256 message", AlgECP256, msg, nil, "", s256[:], crypto.SHA256, ""},
		{"p384 message", AlgECP384, msg, nil, "", s384[:], crypto.SHA384, ""},
		{"rsa2048 message", AlgRSA2048, msg, nil, "", s256[:], crypto.SHA256, ""},
		{"rsa3072 message", AlgRSA3072, msg, nil, "pkcs1v15", s256[:], crypto.SHA256, ""},
		{"empty message", AlgECP256, []byte{}, nil, "", empty256[:], crypto.SHA256, ""},
		{"p256 digest", AlgECP256, nil, d32, "", d32, crypto.SHA256, ""},
		{"p384 digest", AlgECP384, nil, d48, "", d48, crypto.SHA384, ""},
		{"rsa digest", AlgRSA2048, nil, d32, "", d32, crypto.SHA256, ""},
		{"rsa pss message", AlgRSA2048, msg, nil, "pss", s256[:], pss, ""},
		{"rsa3072 pss digest", AlgRSA3072, nil, d32, "pss", d32, pss, ""},

		{"p256 digest too long", AlgECP256, nil, d48, "", nil, nil, "digest must be 32 bytes (SHA-256) for ec-p256 keys, got 48"},
		{"p384 digest too short", AlgECP384, nil, d32, "", nil, nil, "digest must be 48 bytes (SHA-384) for ec-p384 keys, got 32"},
		{"rsa digest short", AlgRSA2048, nil, d32[:20], "", nil, nil, "digest must be 32 bytes (SHA-256) for rsa-2048 keys, got 20"},
		{"empty digest", AlgECP256, nil, []byte{}, "", nil, nil, "got 0"},
		{"both", AlgECP256, msg, d32, "", nil, nil, "give exactly one of message and digest"},
		{"neither", AlgECP256, nil, nil, "", nil, nil, "give exactly one of message and digest"},
		{"pss on p256", AlgECP256, msg, nil, "pss", nil, nil, "scheme pss is for RSA keys"},
		{"pss on p384", AlgECP384, msg, nil, "pss", nil, nil, "scheme pss is for RSA keys"},
		{"pss on aes", AlgAES256, msg, nil, "pss", nil, nil, "scheme pss is for RSA keys"},
		{"unknown scheme", AlgRSA2048, msg, nil, "PSS", nil, nil, "scheme must be pkcs1v15 or pss"},
		{"unknown scheme pkcs1", AlgRSA2048, msg, nil, "pkcs1", nil, nil, "scheme must be pkcs1v15 or pss"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, opts, err := digestAndOpts(&Key{Algorithm: c.alg}, c.message, c.digest, c.scheme)
			if c.msg != "" {
				if !errors.Is(err, ErrInvalidArgument) {
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
	digest, _, err := digestAndOpts(&Key{Algorithm: AlgECP384}, []byte("m"), nil, "")
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
	digest, opts, err := digestAndOpts(&Key{Algorithm: AlgRSA2048}, []byte("m"), nil, "pss")
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
		{"ErrInvalidArgument", ErrInvalidArgument, "invalid_argument"},
		{"ErrKeyNotFound", ErrKeyNotFound, "key_not_found"},
		{"ErrKeyExists", ErrKeyExists, "key_exists"},
		{"ErrVersionNotFound", ErrVersionNotFound, "version_not_found"},
		{"ErrIllegalTransition", ErrIllegalTransition, "illegal_transition"},
		{"ErrVersionNotUsable", ErrVersionNotUsable, "version_not_usable"},
		{"ErrWrongPurpose", ErrWrongPurpose, "wrong_purpose"},
		{"ErrForbidden", ErrForbidden, "forbidden"},
		{"ErrUnauthenticated", ErrUnauthenticated, "unauthenticated"},
		{"ErrInvalidCiphertext", ErrInvalidCiphertext, "invalid_ciphertext"},
		{"ErrInvalidSignature", ErrInvalidSignature, "invalid_signature"},
		{"ErrDecrypt", ErrDecrypt, "decryption_failed"},
		{"ErrTokenUnavailable", ErrTokenUnavailable, "token_unavailable"},
		{"ErrTokenLocked", ErrTokenLocked, "token_locked"},
		{"ErrAuditUnavailable", ErrAuditUnavailable, "audit_unavailable"},
		{"ErrStore", ErrStore, "store_unavailable"},
		{"ErrConfirmationRequired", ErrConfirmationRequired, "confirmation_required"},
		{"ErrTransactionNotRecognised", ErrTransactionNotRecognised, "transaction_not_recognised"},
		{"ErrConfirmationPending", ErrConfirmationPending, "confirmation_pending"},
		{"ErrConfirmationNotFound", ErrConfirmationNotFound, "confirmation_not_found"},
		{"ErrConfirmationClosed", ErrConfirmationClosed, "confirmation_closed"},
		{"ErrConfirmationMismatch", ErrConfirmationMismatch, "confirmation_mismatch"},
		{"ErrHolderPIN", ErrHolderPIN, "holder_pin_incorrect"},
		{"ErrHolderLocked", ErrHolderLocked, "holder_locked"},
		{"ErrHolderNotEnrolled", ErrHolderNotEnrolled, "holder_not_enrolled"},
		{"ErrConfirmUnavailable", ErrConfirmUnavailable, "confirmation_unavailable"},
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
		{errors.New(ErrKeyNotFound.Error()), "internal"}, // same text, not the sentinel
	} {
		if got := ResultCode(c.err); got != c.want {
			t.Errorf("ResultCode(%v) = %q, want %q", c.err, got, c.want)
		}
	}

	// Every Err* variable declared in errors.go is in the table above.
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
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
