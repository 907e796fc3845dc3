package keysvc

// Display and confirm (R-DC-1..4, R-TOK-3, R-TOK-5).
//
// A key created with confirm "required" signs nothing on its client's word
// alone. Its sign request must carry the message itself, which must be a
// transaction keysvc recognises (package txformat: ISO 20022 pain.001 or
// Keyward's JSON transfer order). The request creates a pending
// confirmation and returns at once (HTTP 202) with the confirmation's id.
//
// The holder is reached on a second channel: keysvc hands a one-time
// holder token to the Notifier (the bank's push service; in dev mode, the
// console), never to the requesting client. With that token the holder
// reads the recognised fields on the confirmation endpoint (its own
// listener, see keysvc/api ConfirmServer) and approves with the key's
// holder PIN, or rejects. Only an approval that names the key and the
// SHA-256 of exactly the bytes displayed, with the right PIN, within the
// timeout, makes the signature, over exactly those bytes; the requester
// collects it by polling (or long-polling) the confirmation id.
//
// Rules a security officer can rely on:
//   - One pending confirmation per key: a second sign request for the same
//     key while one is pending is refused with ErrConfirmationPending (409),
//     like a card reader that shows one transaction at a time. The first
//     is not disturbed; its requester may cancel it.
//   - Timeout (default 60 s), rejection, cancellation or a mismatching
//     approval end the confirmation: the bytes are wiped and the key is free
//     for the next request.
//   - An approval is used once: approving again is ErrConfirmationClosed.
//   - Six consecutive wrong holder PINs lock the key's holder (persistently,
//     in the key record); only an admin client (the security officer)
//     unlocks or resets it.
//   - Every refusal is audited, with the confirmation id and the digest.
//   - A confirmed signature is released only once its "sign" record is
//     in the audit log: if the record cannot be written, the signature is
//     discarded and the confirmation ends "failed" (R-SRV-3).
//   - Pending confirmations live in memory: a restart ends them (the
//     requester's poll answers confirmation_not_found); nothing is signed.

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/txformat"

	"github.com/keyward/keyward/keysvc/wire"
)

// Display-and-confirm defaults.
const (
	// DefaultConfirmTimeout is how long a confirmation waits for its holder.
	DefaultConfirmTimeout = 60 * time.Second
	// DefaultConfirmResultTTL is how long an ended confirmation's outcome
	// (and signature) stays readable by its requester.
	DefaultConfirmResultTTL = 5 * time.Minute
	// HolderClient is the audit "client" of actions on the holder channel.
	HolderClient = "holder"
)

// HolderNotice is what the Notifier delivers to the holder's device: the
// token that opens the confirmation on the confirmation endpoint. It is a
// credential; the requesting client never sees it.
type HolderNotice struct {
	Key            string
	ConfirmationID string
	HolderToken    string
	Display        []string
	ExpiresAt      time.Time
}

// Notifier delivers holder notices. It must not block for long; an error
// refuses the sign request (nothing is left pending).
type Notifier func(ctx context.Context, n HolderNotice) error

// pendingConf is one confirmation. Fields after mu are guarded by
// confirmations.mu.
type pendingConf struct {
	view      wire.ConfirmationView
	requester string
	holder    string // hex SHA-256 of the holder token
	scheme    string
	message   []byte // the exact bytes; wiped when the confirmation ends
	digest    [32]byte
	busy      bool // an approval is being checked or signed
	done      chan struct{}
	timer     *time.Timer
}

type confirmations struct {
	mu       sync.Mutex
	byID     map[string]*pendingConf
	byHolder map[string]*pendingConf
	byKey    map[string]*pendingConf // pending ones only
}

func newConfirmations() *confirmations {
	return &confirmations{byID: map[string]*pendingConf{}, byHolder: map[string]*pendingConf{}, byKey: map[string]*pendingConf{}}
}

// randomText returns n random bytes as unpadded base64url.
func randomText(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func holderKey(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// requestConfirmation turns a sign request on a confirm-required key into
// a pending confirmation (R-DC-1, R-DC-2).
func (s *Service) requestConfirmation(ctx context.Context, c Caller, k *Key, req wire.SignRequest) (wire.ConfirmationView, int, error) {
	v, err := primary(k)
	if err != nil {
		return wire.ConfirmationView{}, 0, err
	}
	if req.Digest != nil || req.Message == nil {
		return wire.ConfirmationView{}, v.Version, fmt.Errorf("%w: key %q signs only transactions its holder confirms; send the transaction itself as message, not a digest", wire.ErrConfirmationRequired, k.Name)
	}
	if _, _, err := digestAndOpts(k, req.Message, nil, req.Scheme); err != nil {
		return wire.ConfirmationView{}, v.Version, err
	}
	h := k.Holder
	switch {
	case h == nil || len(h.PINHash) == 0:
		return wire.ConfirmationView{}, v.Version, fmt.Errorf("%w: the holder of %q has not set a PIN yet", wire.ErrHolderNotEnrolled, k.Name)
	case h.Locked:
		return wire.ConfirmationView{}, v.Version, fmt.Errorf("%w: the holder of %q is locked after %d wrong PINs; a security officer must unlock it", wire.ErrHolderLocked, k.Name, HolderPINLimit)
	}
	doc, err := txformat.Recognise(req.Message)
	if err != nil {
		return wire.ConfirmationView{}, v.Version, fmt.Errorf("%w: %v", wire.ErrTransactionNotRecognised, err)
	}
	if s.cfg.Notify == nil {
		return wire.ConfirmationView{}, v.Version, fmt.Errorf("%w: no holder notifier is configured", wire.ErrConfirmUnavailable)
	}
	id, err := randomText(16)
	if err != nil {
		return wire.ConfirmationView{}, v.Version, err
	}
	tok, err := randomText(32)
	if err != nil {
		return wire.ConfirmationView{}, v.Version, err
	}
	now := s.now()
	p := &pendingConf{
		view: wire.ConfirmationView{ID: "cf_" + id, Key: k.Name, Status: wire.ConfirmPending, Format: string(doc.Format),
			Display: doc.DisplayLines(), CreatedAt: now, ExpiresAt: now.Add(s.cfg.ConfirmTimeout)},
		requester: c.Name, holder: holderKey(tok), scheme: req.Scheme,
		message: append([]byte(nil), req.Message...), digest: sha256.Sum256(req.Message), done: make(chan struct{}),
	}
	p.view.Digest = hex.EncodeToString(p.digest[:])
	cs := s.confirms
	cs.mu.Lock()
	if other, ok := cs.byKey[k.Name]; ok {
		until := other.view.ExpiresAt
		cs.mu.Unlock()
		return wire.ConfirmationView{}, v.Version, fmt.Errorf("%w: key %q already has a confirmation waiting for its holder (until %s); wait for it to end or cancel it", wire.ErrConfirmationPending, k.Name, until.UTC().Format(time.RFC3339))
	}
	cs.byID[p.view.ID], cs.byHolder[p.holder], cs.byKey[k.Name] = p, p, p
	view := p.view
	cs.mu.Unlock()
	p.timer = time.AfterFunc(s.cfg.ConfirmTimeout, func() { s.expire(p) })
	if err := s.cfg.Notify(ctx, HolderNotice{Key: k.Name, ConfirmationID: view.ID, HolderToken: tok, Display: view.Display, ExpiresAt: view.ExpiresAt}); err != nil {
		s.end(p, wire.ConfirmFailed, "the holder could not be notified")
		return wire.ConfirmationView{}, v.Version, fmt.Errorf("%w: the holder could not be notified", wire.ErrConfirmUnavailable)
	}
	return view, v.Version, nil
}

// signRequest is Sign on a confirm-required key: it opens a pending
// confirmation and audits the request ("sign-request"). If the audit
// record can't be written the confirmation is ended at once.
func (s *Service) signRequest(ctx context.Context, c Caller, k *Key, req wire.SignRequest) (wire.SignResult, error) {
	view, version, err := s.requestConfirmation(ctx, c, k, req)
	rec := s.record(c, k.Name, version, "sign-request", err)
	if err == nil {
		rec.Detail = "confirmation=" + view.ID + " digest=" + view.Digest + " format=" + view.Format
	}
	if aerr := s.audit(rec); aerr != nil {
		if err == nil {
			s.confirms.mu.Lock()
			if p := s.confirms.byID[view.ID]; p != nil {
				s.endLocked(p, wire.ConfirmFailed, "audit unavailable")
			}
			s.confirms.mu.Unlock()
		}
		return wire.SignResult{}, aerr
	}
	if err != nil {
		return wire.SignResult{}, err
	}
	return wire.SignResult{Confirmation: &view}, nil
}

// end makes p final (if it is still pending), wipes its bytes and frees
// the key. It reports whether it changed p.
func (s *Service) end(p *pendingConf, st wire.ConfirmationStatus, reason string) bool {
	cs := s.confirms
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return s.endLocked(p, st, reason)
}

func (s *Service) endLocked(p *pendingConf, st wire.ConfirmationStatus, reason string) bool {
	cs := s.confirms
	if p.view.Status != wire.ConfirmPending {
		return false
	}
	p.view.Status, p.view.Reason = st, reason
	token.Wipe(p.message)
	p.message = nil
	if cs.byKey[p.view.Key] == p {
		delete(cs.byKey, p.view.Key)
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	close(p.done)
	time.AfterFunc(s.cfg.ConfirmResultTTL, func() {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		delete(cs.byID, p.view.ID)
		delete(cs.byHolder, p.holder)
	})
	return true
}

// expire ends p at its timeout, unless an approval is being checked (that
// approval arrived in time; it ends p itself).
func (s *Service) expire(p *pendingConf) {
	cs := s.confirms
	cs.mu.Lock()
	if p.busy || p.view.Status != wire.ConfirmPending {
		cs.mu.Unlock()
		return
	}
	s.endLocked(p, wire.ConfirmExpired, "the holder did not answer in time; nothing was signed")
	id, key := p.view.ID, p.view.Key
	cs.mu.Unlock()
	rec := &audit.Record{Time: s.now(), Client: HolderClient, Key: key, Op: "confirm-expire", Result: "ok", Detail: "confirmation=" + id}
	_ = s.audit(rec)
}

// confirmRecord is an audit record of the holder channel.
func (s *Service) confirmRecord(key string, op string, err error, p *pendingConf, extra string) *audit.Record {
	rec := s.record(Caller{Name: HolderClient}, key, 0, op, err)
	if p != nil {
		rec.Detail = "confirmation=" + p.view.ID + " digest=" + p.view.Digest
	}
	if extra != "" {
		if rec.Detail != "" {
			rec.Detail += " "
		}
		rec.Detail += extra
	}
	return rec
}

// byHolderToken finds a confirmation by its holder token.
func (s *Service) byHolderToken(tok string) *pendingConf {
	cs := s.confirms
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.byHolder[holderKey(tok)]
}

func (s *Service) viewOf(p *pendingConf) wire.ConfirmationView {
	s.confirms.mu.Lock()
	defer s.confirms.mu.Unlock()
	return p.view
}

// HolderConfirmation returns what the holder is asked to confirm.
func (s *Service) HolderConfirmation(_ context.Context, holderToken string) (wire.ConfirmationView, error) {
	p := s.byHolderToken(holderToken)
	if p == nil {
		err := fmt.Errorf("%w: no confirmation for this link; it may have expired", wire.ErrConfirmationNotFound)
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord("", "confirm-view", err, nil, ""), err)
	}
	v := s.viewOf(p)
	v.Signature = "" // the holder approves; the requester collects
	return v, nil
}

// audit2 audits rec and returns err (or the audit failure).
func (s *Service) audit2(rec *audit.Record, err error) error {
	if aerr := s.audit(rec); aerr != nil {
		return aerr
	}
	return err
}

// Approve is the holder's approval (R-DC-1, R-DC-3). It checks, in this
// order: the token opens a confirmation; it is still pending (an approval
// is used once); it is for the key the holder names; the digest the holder
// was shown is the digest of the bytes held; the holder PIN (counted, six
// wrong lock). Then it signs exactly the held bytes.
func (s *Service) Approve(ctx context.Context, holderToken string, req wire.ApproveRequest) (wire.ConfirmationView, error) {
	defer token.Wipe(req.PIN)
	p := s.byHolderToken(holderToken)
	if p == nil {
		err := fmt.Errorf("%w: no confirmation for this link; it may have expired", wire.ErrConfirmationNotFound)
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(req.Key, "confirm-approve", err, nil, ""), err)
	}
	cs := s.confirms
	cs.mu.Lock()
	key := p.view.Key
	switch {
	case p.view.Status != wire.ConfirmPending || p.busy:
		st := p.view.Status
		cs.mu.Unlock()
		err := fmt.Errorf("%w: this confirmation is %s; an approval is used once", wire.ErrConfirmationClosed, st)
		if st == wire.ConfirmPending {
			err = fmt.Errorf("%w: an approval of this confirmation is already being processed", wire.ErrConfirmationClosed)
		}
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(key, "confirm-approve", err, p, "replay"), err)
	case req.Key != key:
		cs.mu.Unlock()
		err := fmt.Errorf("%w: this confirmation is for another key than %q", wire.ErrConfirmationMismatch, req.Key)
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(key, "confirm-approve", err, p, "claimed-key="+quoteKey(req.Key)), err)
	case !hmac.Equal([]byte(req.Digest), []byte(p.view.Digest)):
		s.endLocked(p, wire.ConfirmRejected, "the approval was for other bytes than those displayed")
		cs.mu.Unlock()
		err := fmt.Errorf("%w: the approved digest is not the digest of the transaction held; the confirmation is cancelled", wire.ErrConfirmationMismatch)
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(key, "confirm-approve", err, p, "bytes-changed"), err)
	}
	p.busy = true
	cs.mu.Unlock()

	if err := s.checkHolderPIN(ctx, key, req.PIN, p); err != nil {
		cs.mu.Lock()
		p.busy = false
		if errors.Is(err, wire.ErrHolderLocked) {
			s.endLocked(p, wire.ConfirmRejected, "the holder is locked")
		} else if !s.now().Before(p.view.ExpiresAt) {
			s.endLocked(p, wire.ConfirmExpired, "the holder did not answer in time; nothing was signed")
		}
		cs.mu.Unlock()
		return wire.ConfirmationView{}, err
	}

	res, version, err := s.signConfirmed(ctx, p)
	// Audit first, release after (R-SRV-3): the requester can collect
	// only a signature whose "sign" record is in the log. The record
	// names the requester, for whom the signature is made. p stays busy
	// meanwhile, so the timeout cannot end it under the audit append.
	rec := s.record(Caller{Name: p.requester}, key, version, "sign", err)
	rec.Detail = "confirmation=" + p.view.ID + " digest=" + p.view.Digest + " confirmed-by=holder"
	aerr := s.audit(rec)
	cs.mu.Lock()
	p.busy = false
	switch {
	case aerr != nil:
		s.endLocked(p, wire.ConfirmFailed, "the signature could not be recorded in the audit log, so it was discarded")
	case err != nil:
		s.endLocked(p, wire.ConfirmFailed, "the key could not sign: "+ResultCode(err))
	default:
		p.view.Signature, p.view.Version = res.Signature, res.Version
		s.endLocked(p, wire.ConfirmApproved, "")
	}
	view := p.view
	cs.mu.Unlock()
	if aerr != nil {
		return wire.ConfirmationView{}, aerr
	}
	view.Signature = ""
	return view, err
}

func quoteKey(k string) string {
	if len(k) > 64 {
		k = k[:64]
	}
	return strconv.Quote(k)
}

// signConfirmed signs the held bytes with the key's primary version, after
// checking they still hash to the digest displayed (R-DC-3).
func (s *Service) signConfirmed(ctx context.Context, p *pendingConf) (wire.SignResult, int, error) {
	s.confirms.mu.Lock()
	msg := p.message
	s.confirms.mu.Unlock()
	if sha256.Sum256(msg) != p.digest {
		return wire.SignResult{}, 0, fmt.Errorf("%w: the held transaction no longer matches its digest", wire.ErrConfirmationMismatch)
	}
	k, err := s.cachedKey(p.view.Key)
	if err != nil {
		return wire.SignResult{}, 0, err
	}
	v, err := primary(k)
	if err != nil {
		return wire.SignResult{}, 0, err
	}
	out, err := s.signWith(ctx, k, v, []wire.SignRequest{{Message: msg, Scheme: p.scheme}})
	if err != nil {
		return wire.SignResult{}, v.Version, err
	}
	return out[0], v.Version, nil
}

// Reject is the holder's refusal; it needs no PIN (refusing is always
// safe), only the holder token.
func (s *Service) Reject(_ context.Context, holderToken, key string) (wire.ConfirmationView, error) {
	p := s.byHolderToken(holderToken)
	if p == nil {
		err := fmt.Errorf("%w: no confirmation for this link; it may have expired", wire.ErrConfirmationNotFound)
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(key, "confirm-reject", err, nil, ""), err)
	}
	cs := s.confirms
	cs.mu.Lock()
	if p.view.Key != key {
		cs.mu.Unlock()
		err := fmt.Errorf("%w: this confirmation is for another key than %q", wire.ErrConfirmationMismatch, key)
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(p.view.Key, "confirm-reject", err, p, "claimed-key="+quoteKey(key)), err)
	}
	if p.busy || !s.endLocked(p, wire.ConfirmRejected, "the holder rejected it") {
		st := p.view.Status
		cs.mu.Unlock()
		err := fmt.Errorf("%w: this confirmation is %s", wire.ErrConfirmationClosed, st)
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(key, "confirm-reject", err, p, ""), err)
	}
	view := p.view
	cs.mu.Unlock()
	return view, s.audit2(s.confirmRecord(key, "confirm-reject", nil, p, ""), nil)
}

// Confirmation returns a confirmation to its requester, waiting up to wait
// for it to end (long poll). Other clients get ErrConfirmationNotFound.
func (s *Service) Confirmation(ctx context.Context, c Caller, id string, wait time.Duration) (wire.ConfirmationView, error) {
	cs := s.confirms
	cs.mu.Lock()
	p, ok := cs.byID[id]
	cs.mu.Unlock()
	if !ok || p.requester != c.Name {
		err := fmt.Errorf("%w: %q", wire.ErrConfirmationNotFound, id)
		if ok { // somebody else's: worth a record
			return wire.ConfirmationView{}, s.audit2(s.record(c, p.view.Key, 0, "confirm-poll", err), err)
		}
		return wire.ConfirmationView{}, err
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return s.viewOf(p), nil
}

// CancelConfirmation lets the requester withdraw its pending request.
func (s *Service) CancelConfirmation(_ context.Context, c Caller, id string) (wire.ConfirmationView, error) {
	cs := s.confirms
	cs.mu.Lock()
	p, ok := cs.byID[id]
	if !ok || p.requester != c.Name {
		cs.mu.Unlock()
		return wire.ConfirmationView{}, fmt.Errorf("%w: %q", wire.ErrConfirmationNotFound, id)
	}
	if p.busy || !s.endLocked(p, wire.ConfirmCancelled, "the requester cancelled it") {
		st := p.view.Status
		cs.mu.Unlock()
		return wire.ConfirmationView{}, fmt.Errorf("%w: this confirmation is %s", wire.ErrConfirmationClosed, st)
	}
	view := p.view
	cs.mu.Unlock()
	rec := s.record(c, view.Key, 0, "confirm-cancel", nil)
	rec.Detail = "confirmation=" + view.ID
	return view, s.audit2(rec, nil)
}

// Close stops the KEK rotation worker, if one runs (a later start
// resumes it), and ends every pending confirmation that no approval is processing
// (nothing is signed; requesters see "expired"), for a clean shutdown
// before the store closes. Pending confirmations do not survive a restart.
func (s *Service) Close() {
	s.stopKEKRotation()
	cs := s.confirms
	cs.mu.Lock()
	var ended []*pendingConf
	for _, p := range cs.byKey {
		if !p.busy {
			ended = append(ended, p)
		}
	}
	for _, p := range ended {
		s.endLocked(p, wire.ConfirmExpired, "keysvc stopped; nothing was signed")
	}
	cs.mu.Unlock()
	for _, p := range ended {
		_ = s.audit(&audit.Record{Time: s.now(), Client: HolderClient, Key: p.view.Key, Op: "confirm-expire", Result: "ok", Detail: "confirmation=" + p.view.ID + " shutdown"})
	}
}
