// Package banking is the bank's internet-banking API: customers, login,
// one-time codes, accounts, transfers and receipts, and corporate
// maker-checker. It is keysvc's main user and holds no private key: every
// signature, verification, decryption and keyed hash it needs is a call to
// keysvc (KMS, implemented by keysvc/client over mutual TLS).
//
// # What goes through keysvc
//
//   - Login passwords arrive encrypted to the bank's SM2 login key together
//     with a single-use server challenge; keysvc decrypts, banking splits
//     off the challenge and asks keysvc to verify the password against the
//     stored HMAC-SM3 (mac-verify, with the key version that made it). A
//     right password stored under an older version is re-MACed with the
//     primary and stored in place, so rotating bank-pw-mac locks nobody
//     out. An unknown login costs keysvc the same decrypt and mac-verify
//     (against a decoy) and answers the same. No plaintext or unkeyed hash
//     is stored (R-AUTH-1, R-AUTH-4, R-TOK-8).
//   - ID-card and card numbers are sealed at enrolment with SM4-GCM under a
//     per-customer data key from keysvc (envelope encryption: only the
//     data key's keysvc ciphertext is stored beside the sealed numbers).
//     Banking shows only masks computed at enrolment and never decrypts
//     them (R-AUTH-7).
//   - A customer's USB key is registered as a keysvc "external" key: keysvc
//     verifies the customer's signed transfer orders with it. A customer's
//     cloud key is a keysvc confirm-required key: keysvc signs only after
//     the customer confirms the transfer on the second channel.
//   - Receipts are signed by the bank's receipt key in keysvc and verify
//     offline with openssl and the bank's public key.
//
// # Keys the bank provisions in keysvc (cmd/ceremony or the officer)
//
//	bank-login-sm2  purpose encrypt, sm2, wrapped      grants banking: decrypt, public
//	bank-pw-mac     purpose mac, hmac-sm3, wrapped      grants banking: mac
//	bank-pii-sm4    purpose encrypt, sm4, wrapped       grants banking: datakey
//	bank-receipt    purpose sign, ec-p256, hsm          grants banking: sign, verify, public
//	bank-audit      purpose sign, ec-p256, hsm          grants banking: sign, public
//
// bank-audit signs the checkpoints of banking's own audit trail
// (banking/bankaudit, Event in trail.go); its public key verifies the
// trail offline (`banking audit verify`).
//
// Banking also creates one or two keys per customer at enrolment (usb-<id>,
// cust-<id>). Its keysvc client needs no admin rights for that: keysvc's
// enrol_prefixes [usb-, cust-] let it create exactly such keys, granted to
// itself only (docs/ARCHITECTURE.md, "banking").
package banking

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/auth/bruteforce"
	"github.com/keyward/keyward/banking/auth/device"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/auth/password"
	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/bankaudit"
	"github.com/keyward/keyward/banking/captcha"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/payee"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// KMS is what banking asks of keysvc; *keysvc/client.Client implements it.
type KMS interface {
	CreateKey(ctx context.Context, req wire.CreateKeyRequest) (wire.KeyView, error)
	Sign(ctx context.Context, name string, req wire.SignRequest) (wire.SignResult, error)
	SignBatch(ctx context.Context, name string, reqs []wire.SignRequest) ([]wire.SignResult, error)
	Verify(ctx context.Context, name string, req wire.VerifyRequest) (bool, error)
	MAC(ctx context.Context, name string, message []byte) (string, error)
	VerifyMAC(ctx context.Context, name string, message []byte, mac string) (bool, error)
	Decrypt(ctx context.Context, name string, ciphertext string, aad []byte) ([]byte, error)
	DataKey(ctx context.Context, name string, size int, aad []byte) (wire.DataKey, error)
	PublicKey(ctx context.Context, name string, version int) (wire.PublicKeyResult, error)
	Confirmation(ctx context.Context, id string, wait time.Duration) (wire.ConfirmationView, error)
}

// Screen checks names and account numbers against the fraud and terror
// list (R-SRV-6); banking/blacklist.Watcher implements it.
type Screen interface {
	CheckAccount(account string) error
	CheckName(name string) error
}

// Names of the bank's keys in keysvc.
const (
	KeyLogin   = "bank-login-sm2"
	KeyPwMAC   = "bank-pw-mac"
	KeyPII     = "bank-pii-sm4"
	KeyReceipt = "bank-receipt"
	// KeyAudit (trail.go) signs the audit trail's checkpoints.
)

// Config configures a Bank.
type Config struct {
	DB     store.DB // one file: customers, ledger, sessions, codes, counters
	KMS    KMS
	Screen Screen // nil: nothing is screened (tests only)
	// SMS delivers one-time codes; otp.DevOutbox in dev mode.
	SMS    otp.Gateway
	Alerts auth.Alerts // nil: slog warnings
	Now    func() time.Time
	Logger *slog.Logger
	// Ledger options (batching, limits, location).
	Ledger ledger.Options
	// KMSName is the client name keysvc knows banking by, granted the
	// operations on customers' keys (default "banking").
	KMSName string
	// StepUpFor is how recent an SMS step-up must be for sensitive changes
	// (limits, password); default 5 min (R-AUTH-6).
	StepUpFor time.Duration
	// PublicKeyTTL is how long the login and receipt public keys are
	// served from memory (default DefaultPublicKeyTTL); a rotation seen in
	// use refreshes them sooner.
	PublicKeyTTL time.Duration
	// CaptchaAfter is how many recent failed logins of a login, or from a
	// source, make the next login need an image captcha (seed 6.2.3.2):
	// 0 is DefaultCaptchaAfter (3), a negative value turns the captcha
	// off (tests about something else whose failures all come from one
	// loopback address).
	CaptchaAfter int
	// OnAudit, when set, is called with every event Bank.audit records,
	// after it is recorded (tests assert attribution through it).
	OnAudit func(ctx context.Context, ev Event)
	// Trail configures banking's own audit trail (checkpoint cadence).
	Trail TrailConfig
	// Registry receives banking's metrics (metrics.go), which OpsHandler
	// serves; nil: a private registry with the Go runtime and process
	// collectors.
	Registry *prometheus.Registry
}

// Bank is the banking application.
type Bank struct {
	cfg        Config
	db         store.DB
	kms        KMS
	log        *slog.Logger
	now        func() time.Time
	Ledger     *ledger.Ledger
	challenges *password.Challenges
	guard      *bruteforce.Guard
	sessions   *session.Manager
	otps       *otp.Service
	devices    *device.Registry
	payees     *payee.Book
	captchas   *captcha.Service
	receipts   *receiptSigner
	pubKeys    *pubKeyCache
	decoy      atomic.Pointer[[]byte] // see decoyMAC
	// custMu guards customers, the cache of customer records: readers
	// hold it shared while they read the store and fill the cache, so a
	// putCustomer (exclusive) can never be overtaken by a stale fill. The
	// cache is not used on a shared store (see Customer).
	custMu    sync.RWMutex
	customers map[string]*Customer
	// trail is banking's own audit trail (Bank.audit); stopTrail ends its
	// checkpointer, which makes a last checkpoint (trailDone).
	trail     *bankaudit.Trail
	stopTrail context.CancelFunc
	trailDone chan struct{}
	metrics   *metrics             // metrics.go
	registry  *prometheus.Registry // what OpsHandler serves
	ready     readiness            // readyz.go
}

// New opens the bank on cfg.DB.
func New(cfg Config) (*Bank, error) {
	if cfg.DB == nil || cfg.KMS == nil || cfg.SMS == nil {
		return nil, errors.New("banking: Config needs DB, KMS and SMS")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Alerts == nil {
		cfg.Alerts = auth.LogAlerts{Logger: slog.New(httpedge.ContextHandler(cfg.Logger.Handler()))}
	}
	reg := cfg.Registry
	if reg == nil {
		reg = privateRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("banking: registering metrics: %w", err)
	}
	// Counted on their way (metrics.go): locks, SMS sends, keysvc calls.
	cfg.Alerts, cfg.SMS, cfg.KMS = countingAlerts{cfg.Alerts, m}, m.gateway(cfg.SMS), instrumentedKMS{cfg.KMS, m}
	if cfg.StepUpFor == 0 {
		cfg.StepUpFor = 5 * time.Minute
	}
	switch {
	case cfg.CaptchaAfter == 0:
		cfg.CaptchaAfter = DefaultCaptchaAfter
	case cfg.CaptchaAfter < 0:
		cfg.CaptchaAfter = 0 // the guard's "never"
	}
	if cfg.PublicKeyTTL <= 0 {
		cfg.PublicKeyTTL = DefaultPublicKeyTTL
	}
	b := &Bank{cfg: cfg, db: cfg.DB, kms: cfg.KMS, log: slog.New(httpedge.ContextHandler(cfg.Logger.Handler())), now: cfg.Now, customers: map[string]*Customer{},
		metrics: m, registry: reg}
	if err := cfg.DB.Ensure(bucketCustomers, bucketLogins, bucketCorp, bucketReceipts, bucketStepUp, bucketPending, bucketReady); err != nil {
		return nil, fmt.Errorf("banking: buckets: %w", err)
	}
	trail, err := bankaudit.Open(bankaudit.Config{DB: cfg.DB, Signer: bankaudit.KMSSigner{KMS: cfg.KMS, Key: KeyAudit},
		Every: cfg.Trail.CheckpointEvery, Interval: cfg.Trail.CheckpointInterval, Now: cfg.Now, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	b.trail = trail
	if err := registerTrailMetrics(reg, trail); err != nil {
		return nil, fmt.Errorf("banking: registering metrics: %w", err)
	}
	// The auth packages' security events go to the trail as well as to
	// the configured alerts (log, webhook).
	alerts := auth.AlertsFunc(func(ctx context.Context, ev auth.Event) {
		b.auditAlert(ctx, ev)
		cfg.Alerts.Alert(ctx, ev)
	})
	lopts := cfg.Ledger
	if cfg.Screen != nil && lopts.Screen == nil {
		lopts.Screen = cfg.Screen.CheckAccount
	}
	if next := lopts.OnPost; next != nil {
		lopts.OnPost = func(k ledger.Kind, d time.Duration, err error) { m.ledgerPost(k, d, err); next(k, d, err) }
	} else {
		lopts.OnPost = m.ledgerPost
	}
	if b.Ledger, err = ledger.New(cfg.DB, lopts); err != nil {
		return nil, err
	}
	if b.challenges, err = password.NewChallenges(password.ChallengeConfig{DB: cfg.DB, Now: cfg.Now}); err != nil {
		return nil, err
	}
	if b.guard, err = bruteforce.New(bruteforce.Config{DB: cfg.DB, Alerts: alerts, Now: cfg.Now, CaptchaAfter: cfg.CaptchaAfter}); err != nil {
		return nil, err
	}
	if b.captchas, err = captcha.New(captcha.Config{DB: cfg.DB, Hasher: captchaHasher{b}, Now: cfg.Now}); err != nil {
		return nil, err
	}
	if b.sessions, err = session.Open(session.Config{DB: cfg.DB, Now: cfg.Now}); err != nil {
		return nil, err
	}
	if b.devices, err = device.New(device.Config{DB: cfg.DB, Now: cfg.Now}); err != nil {
		return nil, err
	}
	if b.payees, err = payee.New(payee.Config{DB: cfg.DB, Now: cfg.Now}); err != nil {
		return nil, err
	}
	if b.otps, err = otp.New(otp.Config{DB: cfg.DB, Hasher: otpHasher{b}, Gateway: cfg.SMS, Alerts: alerts, Now: cfg.Now,
		Phone: b.phoneOf}); err != nil {
		return nil, err
	}
	b.pubKeys = newPubKeyCache(cfg.KMS, cfg.PublicKeyTTL, cfg.Now)
	b.receipts = newReceiptSigner(cfg.KMS, func(v int) { b.pubKeys.seen(KeyReceipt, v) })
	tctx, stop := context.WithCancel(context.Background())
	b.stopTrail, b.trailDone = stop, make(chan struct{})
	go func() { defer close(b.trailDone); trail.Run(tctx) }()
	return b, nil
}

// Sweep removes expired challenges, one-time codes, guard counters,
// sessions and pending cloud transfers; cmd/banking runs it every minute
// (RunSweeper). Every node may run it: each sweeper deletes in one
// transaction what is expired then.
func (b *Bank) Sweep(ctx context.Context) error {
	var errs []error
	for _, sw := range []func(context.Context) (int, error){b.challenges.Sweep, b.otps.Sweep, b.captchas.Sweep, b.guard.Sweep, b.sessions.Sweep, b.sweepPending} {
		if _, err := sw(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RunSweeper calls Sweep every interval until ctx ends.
func (b *Bank) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := b.Sweep(ctx); err != nil && ctx.Err() == nil {
				if errors.Is(err, store.ErrBackend) {
					b.metrics.storeFaults.WithLabelValues("sweep").Inc()
				}
				b.log.Error("sweep", "err", err)
			}
		}
	}
}

// Close stops the receipt signer, checkpoints the audit trail one last
// time and flushes sessions. The DB is the caller's.
func (b *Bank) Close() error {
	b.receipts.close()
	b.stopTrail()
	<-b.trailDone
	return b.sessions.Close()
}

// macInput is the domain-separated message banking MACs: domain ‖ 0x00 ‖ msg.
func macInput(domain string, msg []byte) []byte {
	in := make([]byte, 0, len(domain)+1+len(msg))
	return append(append(append(in, domain...), 0), msg...)
}

// mac is the keyed hash (HMAC-SM3 in keysvc, under the primary version of
// bank-pw-mac) of a domain-separated message: "kw:v<n>:…", the form stored.
func (b *Bank) mac(ctx context.Context, domain string, msg []byte) ([]byte, error) {
	in := macInput(domain, msg)
	defer clear(in)
	m, err := b.kms.MAC(ctx, KeyPwMAC, in)
	if err != nil {
		return nil, kmsErr(err)
	}
	return []byte(m), nil
}

// verifyMAC checks a stored keyed hash with keysvc's mac-verify, which
// uses the key version named in the stored value and compares in
// constant time: rotating bank-pw-mac leaves every stored value
// verifiable (R-TOK-8). A stored value keysvc can no longer check (its
// version retired below min_version, or malformed) is a mismatch, logged
// without the value; only keysvc being unreachable is an error.
func (b *Bank) verifyMAC(ctx context.Context, domain string, msg, stored []byte) (bool, error) {
	in := macInput(domain, msg)
	defer clear(in)
	ok, err := b.kms.VerifyMAC(ctx, KeyPwMAC, in, string(stored))
	switch {
	case err == nil:
		return ok, nil
	case isClientError(err), errors.Is(err, wire.ErrInvalidSignature):
		b.log.WarnContext(ctx, "a stored keyed hash cannot be verified (its key version is retired, or it is malformed): treated as a mismatch", "domain", domain, "err", err)
		return false, nil
	}
	return false, kmsErr(err)
}

// otpHasher stores one-time codes under bank-pw-mac and checks them with
// the version that hashed them (otp.Verifier), so codes issued just
// before a rotation still work.
type otpHasher struct{ b *Bank }

func (h otpHasher) MAC(ctx context.Context, msg []byte) ([]byte, error) {
	return h.b.mac(ctx, "otp", msg)
}

func (h otpHasher) VerifyMAC(ctx context.Context, msg, mac []byte) (bool, error) {
	return h.b.verifyMAC(ctx, "otp", msg, mac)
}

// captchaHasher keys captcha answers under bank-pw-mac (domain
// "captcha"), so the store never holds one a reader could look up.
type captchaHasher struct{ b *Bank }

func (h captchaHasher) MAC(ctx context.Context, msg []byte) ([]byte, error) {
	return h.b.mac(ctx, "captcha", msg)
}

func (h captchaHasher) VerifyMAC(ctx context.Context, msg, mac []byte) (bool, error) {
	return h.b.verifyMAC(ctx, "captcha", msg, mac)
}
