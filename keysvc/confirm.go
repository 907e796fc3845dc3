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
//   - Confirmations live in a ConfirmStore (cluster.go). Beside bbolt it
//     is in this process's memory: a restart ends them (the requester's
//     poll answers confirmation_not_found); nothing is signed. A clustered
//     store (etcd) shares them between nodes: a holder's approval and a
//     requester's poll reach whichever node holds the request, and a
//     confirmation frees its key cluster-wide at its timeout even if its
//     node died.
//   - The transaction bytes are kept only sealed (AES-256-GCM under the SM
//     KEK, a token key, the confirmation id as additional data), opened at
//     signing time; ending a confirmation drops them. A clustered store
//     keeps history until compaction, so clear bytes never reach it.
//   - The node that took the request ends it at its timeout ("expired",
//     audited); the scheduler's sweep (Tick, on the elected node) ends
//     those whose node is gone, and those whose approving node died while
//     busy ("failed": an approval holds a confirmation busy for at most
//     ConfirmBusyBound). Whichever update ends a confirmation audits it;
//     the others see it ended, so each end is recorded once.

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/keyward/keyward/keysvc/audit"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/l10n"
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

// ConfirmBusyBound is how long an approval may hold a confirmation busy
// (checking the holder PIN, signing, auditing) before the scheduler's sweep
// takes the node doing it for dead and ends the confirmation "failed".
const ConfirmBusyBound = 30 * time.Second

// Reasons a confirmation ends with, as its requester reads them.
const (
	reasonExpired    = "the holder did not answer in time; nothing was signed"
	reasonBusyLapsed = "the keysvc node processing the approval stopped answering; nothing was released"
)

// errConfEnded and errConfBusy abort an Update that would end a
// confirmation another request ended or holds.
var (
	errConfEnded = errors.New("confirmation ended")
	errConfBusy  = errors.New("confirmation busy")
)

// confirmState is the Service's view of its ConfirmStore.
type confirmState struct {
	store  ConfirmStore
	shared bool // the Store's own (clustered): other nodes serve its records too
	mu     sync.Mutex
	timers map[string]*time.Timer // this node's timeout timers, by confirmation id
}

func newConfirmState(st Store, now func() time.Time) *confirmState {
	cs := &confirmState{timers: map[string]*time.Timer{}}
	if cst, ok := st.(ConfirmStorer); ok {
		cs.store, cs.shared = cst.Confirmations(), true
	} else {
		cs.store = newMemConfirmStore(now)
	}
	return cs
}

// confirmAAD is the additional data sealing a confirmation's bytes: its id.
func confirmAAD(id string) []byte { return []byte(id) }

// sealConfirm seals a transaction's bytes under the SM KEK new blobs are
// sealed under, as epoch (4 bytes, big-endian) ‖ AES-GCM: a clustered store
// keeps history until compaction, so clear bytes are never written to it.
func (s *Service) sealConfirm(ctx context.Context, id string, msg []byte) ([]byte, error) {
	var out []byte
	err := s.sealKEK(true, func(epoch int, kek token.KeyRef) error {
		sealed, err := s.sealGCM(ctx, kek, msg, confirmAAD(id))
		if err != nil {
			return tokenErr(err)
		}
		out = binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(sealed)), uint32(epoch))
		out = append(out, sealed...)
		return nil
	})
	return out, err
}

// openConfirm opens what sealConfirm sealed.
func (s *Service) openConfirm(ctx context.Context, id string, sealed []byte) ([]byte, error) {
	if len(sealed) < 4 {
		return nil, fmt.Errorf("%w: the confirmation holds no transaction", wire.ErrConfirmationMismatch)
	}
	v := &Version{KEKEpoch: int(binary.BigEndian.Uint32(sealed))}
	var msg []byte
	err := s.withKEK(&Key{Name: "confirmation " + id}, v, true, func(kek token.KeyRef) error {
		var err error
		msg, err = s.openGCM(ctx, kek, sealed[4:], confirmAAD(id))
		return tokenErr(err)
	})
	return msg, err
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
	if (h == nil || len(h.PINHash) == 0 || h.Locked) && s.sharedStore() {
		// On a cluster the holder may have enrolled, or an officer
		// unlocked it, through another node a moment ago, before the feed
		// brought the record here (banking's client spreads a customer's
		// enrolment and first payment over the nodes): a refusal is
		// checked against the store first.
		if f := s.freshKey(k); f.Revision > k.Revision {
			if v, err = primary(f); err != nil {
				return wire.ConfirmationView{}, 0, err
			}
			k, h = f, f.Holder
		}
	}
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
	id = "cf_" + id
	tok, err := randomText(32)
	if err != nil {
		return wire.ConfirmationView{}, v.Version, err
	}
	sealed, err := s.sealConfirm(ctx, id, req.Message)
	if err != nil {
		return wire.ConfirmationView{}, v.Version, err
	}
	now := s.now().UTC()
	digest := sha256.Sum256(req.Message)
	rec := &ConfirmRecord{
		View: wire.ConfirmationView{ID: id, Key: k.Name, Status: wire.ConfirmPending, Format: string(doc.Format),
			Display: doc.DisplayLines(), DisplayZH: doc.DisplayLinesIn(l10n.Chinese), Digest: hex.EncodeToString(digest[:]), CreatedAt: now, ExpiresAt: now.Add(s.cfg.ConfirmTimeout)},
		Requester: c.Name, Holder: holderKey(tok), Scheme: req.Scheme, Sealed: sealed, Digest: digest[:],
	}
	other, err := s.confirms.store.Open(ctx, rec, s.cfg.ConfirmResultTTL)
	if err != nil {
		return wire.ConfirmationView{}, v.Version, storeErr(err)
	}
	if other != nil {
		return wire.ConfirmationView{}, v.Version, fmt.Errorf("%w: key %q already has a confirmation waiting for its holder (until %s); wait for it to end or cancel it", wire.ErrConfirmationPending, k.Name, other.View.ExpiresAt.UTC().Format(time.RFC3339))
	}
	s.armConfirmTimer(id, s.cfg.ConfirmTimeout)
	if err := s.cfg.Notify(ctx, HolderNotice{Key: k.Name, ConfirmationID: id, HolderToken: tok, Display: rec.View.Display, ExpiresAt: rec.View.ExpiresAt}); err != nil {
		_, _, _ = s.endConfirm(context.WithoutCancel(ctx), id, wire.ConfirmFailed, "the holder could not be notified", false)
		return wire.ConfirmationView{}, v.Version, fmt.Errorf("%w: the holder could not be notified", wire.ErrConfirmUnavailable)
	}
	return rec.View, v.Version, nil
}

// storeErr marks a ConfirmStore failure as a store failure (503).
func storeErr(err error) error {
	if err == nil || errors.Is(err, wire.ErrStore) {
		return err
	}
	return fmt.Errorf("%w: confirmations: %w", wire.ErrStore, err)
}

// armConfirmTimer ends confirmation id at its timeout, from this node (the
// one that holds the request). In a cluster the scheduler's sweep ends it
// too if this node is gone; whichever Update ends it audits it.
func (s *Service) armConfirmTimer(id string, after time.Duration) {
	cs := s.confirms
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if old := cs.timers[id]; old != nil {
		old.Stop()
	}
	cs.timers[id] = time.AfterFunc(after, func() {
		cs.mu.Lock()
		delete(cs.timers, id)
		cs.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := cs.store.Get(ctx, id)
		if err != nil || r == nil {
			return // the sweep ends it if this node could not
		}
		if r.Pending() && r.Busy(s.now()) { // an approval in time: it ends it, or the sweep after BusyUntil
			s.armConfirmTimer(id, r.BusyUntil.Sub(s.now())+time.Second)
			return
		}
		s.sweepOne(ctx, r, true)
	})
}

func (s *Service) stopConfirmTimer(id string) {
	cs := s.confirms
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if t := cs.timers[id]; t != nil {
		t.Stop()
		delete(cs.timers, id)
	}
}

// endConfirm ends confirmation id with st and reason, wiping its sealed
// bytes, unless it ended already (errConfEnded) or an approval holds it
// (errConfBusy; unless force). It returns the record as stored afterwards
// and whether this call ended it.
func (s *Service) endConfirm(ctx context.Context, id string, st wire.ConfirmationStatus, reason string, force bool) (*ConfirmRecord, bool, error) {
	r, err := s.confirms.store.Update(ctx, id, func(r *ConfirmRecord) error {
		switch {
		case !r.Pending():
			return errConfEnded
		case !force && r.Busy(s.now()):
			return errConfBusy
		}
		endRecord(r, st, reason)
		return nil
	})
	switch {
	case errors.Is(err, errConfEnded), errors.Is(err, errConfBusy):
		cur, gerr := s.confirms.store.Get(ctx, id)
		if gerr != nil {
			return nil, false, storeErr(gerr)
		}
		return cur, false, err
	case err != nil:
		return nil, false, storeErr(err)
	case r == nil:
		return nil, false, errConfEnded // gone
	}
	s.stopConfirmTimer(id)
	return r, true, nil
}

// endRecord makes r final: status, reason, no sealed bytes, not busy.
func endRecord(r *ConfirmRecord, st wire.ConfirmationStatus, reason string) {
	r.View.Status, r.View.Reason = st, reason
	r.Sealed = nil
	r.BusyUntil, r.BusyNode = time.Time{}, ""
}

// sweepOne ends r if its time is up: "expired" past ExpiresAt (or when
// timedOut: this node's timer for it fired) when no approval holds it,
// "failed" when the approval's BusyUntil lapsed (its node died). The call
// that ends it audits it; the others see it ended.
func (s *Service) sweepOne(ctx context.Context, r *ConfirmRecord, timedOut bool) {
	now := s.now()
	var st wire.ConfirmationStatus
	var reason, detail string
	switch {
	case !r.Pending():
		return
	case !r.BusyUntil.IsZero() && !now.Before(r.BusyUntil):
		st, reason, detail = wire.ConfirmFailed, reasonBusyLapsed, " busy-lapsed node="+quoteKey(r.BusyNode)
	case r.Busy(now) || (!timedOut && now.Before(r.View.ExpiresAt)):
		return
	default:
		st, reason = wire.ConfirmExpired, reasonExpired
	}
	busyUntil := r.BusyUntil
	ended, err := s.confirms.store.Update(ctx, r.View.ID, func(c *ConfirmRecord) error {
		now := s.now()
		switch {
		case !c.Pending():
			return errConfEnded
		case st == wire.ConfirmFailed && !c.BusyUntil.Equal(busyUntil): // another approval took it meanwhile
			return errConfBusy
		case st == wire.ConfirmExpired && (c.Busy(now) || (!timedOut && now.Before(c.View.ExpiresAt))):
			return errConfBusy
		}
		endRecord(c, st, reason)
		return nil
	})
	if err != nil || ended == nil {
		if err != nil && !errors.Is(err, errConfEnded) && !errors.Is(err, errConfBusy) {
			s.log.Error("confirmation sweep", "confirmation", r.View.ID, "err", err)
		}
		return
	}
	s.stopConfirmTimer(r.View.ID)
	op := "confirm-expire"
	if st == wire.ConfirmFailed {
		op = "confirm-fail"
	}
	_ = s.audit(&audit.Record{Time: s.now(), Client: HolderClient, Key: r.View.Key, Op: op, Result: "ok", Detail: "confirmation=" + r.View.ID + detail})
}

// sweepConfirmations ends the pending confirmations whose time is up
// (sweepOne). The scheduler runs it (Tick), on the leader in a cluster: it
// ends those whose requesting node died.
func (s *Service) sweepConfirmations(ctx context.Context) error {
	list, err := s.confirms.store.Pending(ctx)
	if err != nil {
		return storeErr(err)
	}
	for _, r := range list {
		s.sweepOne(ctx, r, false)
	}
	return nil
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
			_, _, _ = s.endConfirm(context.WithoutCancel(ctx), view.ID, wire.ConfirmFailed, "audit unavailable", false)
		}
		return wire.SignResult{}, aerr
	}
	if err != nil {
		return wire.SignResult{}, err
	}
	return wire.SignResult{Confirmation: &view}, nil
}

// confirmRecord is an audit record of the holder channel.
func (s *Service) confirmRecord(key string, op string, err error, r *ConfirmRecord, extra string) *audit.Record {
	rec := s.record(Caller{Name: HolderClient}, key, 0, op, err)
	if r != nil {
		rec.Detail = "confirmation=" + r.View.ID + " digest=" + r.View.Digest
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
func (s *Service) byHolderToken(ctx context.Context, tok string) (*ConfirmRecord, error) {
	r, err := s.confirms.store.ByHolder(ctx, holderKey(tok))
	return r, storeErr(err)
}

var errNoConfirmationLink = fmt.Errorf("%w: no confirmation for this link; it may have expired", wire.ErrConfirmationNotFound)

// HolderConfirmation returns what the holder is asked to confirm.
func (s *Service) HolderConfirmation(ctx context.Context, holderToken string) (wire.ConfirmationView, error) {
	r, err := s.byHolderToken(ctx, holderToken)
	if err == nil && r == nil {
		err = errNoConfirmationLink
	}
	if err != nil {
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord("", "confirm-view", err, nil, ""), err)
	}
	v := r.View
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
//
// The confirmation is marked busy (BusyUntil, BusyNode) in the store from
// the PIN check to the release, so no other node's approval, rejection,
// cancellation or expiry ends it meanwhile.
func (s *Service) Approve(ctx context.Context, holderToken string, req wire.ApproveRequest) (wire.ConfirmationView, error) {
	defer token.Wipe(req.PIN)
	found, err := s.byHolderToken(ctx, holderToken)
	if err == nil && found == nil {
		err = errNoConfirmationLink
	}
	if err != nil {
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(req.Key, "confirm-approve", err, nil, ""), err)
	}
	id, key := found.View.ID, found.View.Key
	var refusal error
	var extra string
	var expired bool
	busyUntil := s.now().Add(ConfirmBusyBound).UTC()
	r, err := s.confirms.store.Update(ctx, id, func(r *ConfirmRecord) error {
		refusal, extra, expired = nil, "", false
		now := s.now()
		switch {
		case !r.Pending() || r.Busy(now):
			refusal, extra = fmt.Errorf("%w: this confirmation is %s; an approval is used once", wire.ErrConfirmationClosed, r.View.Status), "replay"
			if r.Pending() {
				refusal = fmt.Errorf("%w: an approval of this confirmation is already being processed", wire.ErrConfirmationClosed)
			}
			return errConfEnded
		case req.Key != key:
			refusal, extra = fmt.Errorf("%w: this confirmation is for another key than %q", wire.ErrConfirmationMismatch, req.Key), "claimed-key="+quoteKey(req.Key)
			return errConfBusy
		case !hmac.Equal([]byte(req.Digest), []byte(r.View.Digest)):
			refusal, extra = fmt.Errorf("%w: the approved digest is not the digest of the transaction held; the confirmation is cancelled", wire.ErrConfirmationMismatch), "bytes-changed"
			endRecord(r, wire.ConfirmRejected, "the approval was for other bytes than those displayed")
			return nil
		case !now.Before(r.View.ExpiresAt):
			refusal, extra, expired = fmt.Errorf("%w: this confirmation is expired; an approval is used once", wire.ErrConfirmationClosed), "expired", true
			endRecord(r, wire.ConfirmExpired, reasonExpired)
			return nil
		}
		r.BusyUntil, r.BusyNode = busyUntil, s.node
		return nil
	})
	switch {
	case err != nil && !errors.Is(err, errConfEnded) && !errors.Is(err, errConfBusy): // the store failed
		err = storeErr(err)
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(key, "confirm-approve", err, found, ""), err)
	case r == nil && err == nil: // gone meanwhile
		err = errNoConfirmationLink
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(key, "confirm-approve", err, found, ""), err)
	case refusal != nil:
		if err == nil { // this refusal ended it
			s.stopConfirmTimer(id)
		}
		if expired {
			_ = s.audit(&audit.Record{Time: s.now(), Client: HolderClient, Key: key, Op: "confirm-expire", Result: "ok", Detail: "confirmation=" + id})
		}
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(key, "confirm-approve", refusal, found, extra), refusal)
	}
	mine := func(c *ConfirmRecord) bool {
		return c.Pending() && c.BusyNode == s.node && c.BusyUntil.Equal(busyUntil)
	}
	// From here, this approval holds r: it must end it (or leave it to
	// lapse, if this node dies).
	bg := context.WithoutCancel(ctx)
	if err := s.checkHolderPIN(ctx, key, req.PIN, r); err != nil {
		_, _ = s.confirms.store.Update(bg, id, func(c *ConfirmRecord) error {
			if !mine(c) {
				return errConfEnded
			}
			c.BusyUntil, c.BusyNode = time.Time{}, ""
			if errors.Is(err, wire.ErrHolderLocked) {
				endRecord(c, wire.ConfirmRejected, "the holder is locked")
			} else if !s.now().Before(c.View.ExpiresAt) {
				endRecord(c, wire.ConfirmExpired, reasonExpired)
			}
			return nil
		})
		return wire.ConfirmationView{}, err
	}

	res, version, err := s.signConfirmed(ctx, r)
	// Audit first, release after (R-SRV-3): the requester can collect
	// only a signature whose "sign" record is in the log. The record
	// names the requester, for whom the signature is made. r stays busy
	// meanwhile, so no timeout or sweep ends it under the audit append.
	rec := s.record(Caller{Name: r.Requester}, key, version, "sign", err)
	rec.Detail = "confirmation=" + id + " digest=" + r.View.Digest + " confirmed-by=holder"
	aerr := s.audit(rec)
	done, uerr := s.confirms.store.Update(bg, id, func(c *ConfirmRecord) error {
		if !mine(c) {
			return errConfEnded
		}
		switch {
		case aerr != nil:
			endRecord(c, wire.ConfirmFailed, "the signature could not be recorded in the audit log, so it was discarded")
		case err != nil:
			endRecord(c, wire.ConfirmFailed, "the key could not sign: "+ResultCode(err))
		default:
			endRecord(c, wire.ConfirmApproved, "")
			c.View.Signature, c.View.Version = res.Signature, res.Version
		}
		return nil
	})
	s.stopConfirmTimer(id)
	switch {
	case aerr != nil:
		return wire.ConfirmationView{}, aerr
	case uerr != nil || done == nil:
		// The busy bound lapsed and the sweep ended it "failed", or the
		// store is down: the signature is discarded, never released.
		s.log.Error("confirmed signature discarded: its confirmation could not be completed", "confirmation", id, "key", key, "err", uerr)
		if uerr == nil || errors.Is(uerr, errConfEnded) {
			return wire.ConfirmationView{}, fmt.Errorf("%w: the approval took longer than %v and was abandoned; the signature was discarded", wire.ErrConfirmationClosed, ConfirmBusyBound)
		}
		return wire.ConfirmationView{}, storeErr(uerr)
	}
	view := done.View
	view.Signature = ""
	return view, err
}

func quoteKey(k string) string {
	if len(k) > 64 {
		k = k[:64]
	}
	return strconv.Quote(k)
}

// signConfirmed opens the held bytes and signs them with the key's primary
// version, after checking they still hash to the digest displayed
// (R-DC-3).
func (s *Service) signConfirmed(ctx context.Context, r *ConfirmRecord) (wire.SignResult, int, error) {
	msg, err := s.openConfirm(ctx, r.View.ID, r.Sealed)
	if err != nil {
		return wire.SignResult{}, 0, err
	}
	defer token.Wipe(msg)
	if sum := sha256.Sum256(msg); !hmac.Equal(sum[:], r.Digest) || hex.EncodeToString(sum[:]) != r.View.Digest {
		return wire.SignResult{}, 0, fmt.Errorf("%w: the held transaction no longer matches its digest", wire.ErrConfirmationMismatch)
	}
	k, err := s.cachedKey(r.View.Key)
	if err != nil {
		return wire.SignResult{}, 0, err
	}
	v, err := primary(k)
	if err != nil {
		return wire.SignResult{}, 0, err
	}
	out, err := s.signWith(ctx, k, v, []wire.SignRequest{{Message: msg, Scheme: r.Scheme}})
	if err != nil {
		return wire.SignResult{}, v.Version, err
	}
	return out[0], v.Version, nil
}

// Reject is the holder's refusal; it needs no PIN (refusing is always
// safe), only the holder token.
func (s *Service) Reject(ctx context.Context, holderToken, key string) (wire.ConfirmationView, error) {
	r, err := s.byHolderToken(ctx, holderToken)
	if err == nil && r == nil {
		err = errNoConfirmationLink
	}
	if err != nil {
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(key, "confirm-reject", err, nil, ""), err)
	}
	if r.View.Key != key {
		err := fmt.Errorf("%w: this confirmation is for another key than %q", wire.ErrConfirmationMismatch, key)
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(r.View.Key, "confirm-reject", err, r, "claimed-key="+quoteKey(key)), err)
	}
	ended, ok, err := s.endConfirm(ctx, r.View.ID, wire.ConfirmRejected, "the holder rejected it", false)
	if !ok {
		if err == nil || errors.Is(err, errConfEnded) || errors.Is(err, errConfBusy) {
			st := wire.ConfirmationStatus("gone")
			if ended != nil {
				st = ended.View.Status
			}
			err = fmt.Errorf("%w: this confirmation is %s", wire.ErrConfirmationClosed, st)
		}
		return wire.ConfirmationView{}, s.audit2(s.confirmRecord(key, "confirm-reject", err, r, ""), err)
	}
	return ended.View, s.audit2(s.confirmRecord(key, "confirm-reject", nil, r, ""), nil)
}

// Confirmation returns a confirmation to its requester, waiting up to wait
// for it to end (long poll, ConfirmStore.Wait: the end may come from any
// node). Other clients get ErrConfirmationNotFound.
func (s *Service) Confirmation(ctx context.Context, c Caller, id string, wait time.Duration) (wire.ConfirmationView, error) {
	r, err := s.confirms.store.Get(ctx, id)
	if err != nil {
		return wire.ConfirmationView{}, storeErr(err)
	}
	if r == nil || r.Requester != c.Name {
		err := fmt.Errorf("%w: %q", wire.ErrConfirmationNotFound, id)
		if r != nil { // somebody else's: worth a record
			return wire.ConfirmationView{}, s.audit2(s.record(c, r.View.Key, 0, "confirm-poll", err), err)
		}
		return wire.ConfirmationView{}, err
	}
	if wait > 0 && r.Pending() {
		wctx, cancel := context.WithTimeout(ctx, wait)
		werr := s.confirms.store.Wait(wctx, id)
		cancel()
		if werr == nil || ctx.Err() == nil {
			if nr, err := s.confirms.store.Get(ctx, id); err == nil && nr != nil {
				r = nr
			}
		}
	}
	return r.View, nil
}

// CancelConfirmation lets the requester withdraw its pending request.
func (s *Service) CancelConfirmation(ctx context.Context, c Caller, id string) (wire.ConfirmationView, error) {
	r, err := s.confirms.store.Get(ctx, id)
	if err != nil {
		return wire.ConfirmationView{}, storeErr(err)
	}
	if r == nil || r.Requester != c.Name {
		return wire.ConfirmationView{}, fmt.Errorf("%w: %q", wire.ErrConfirmationNotFound, id)
	}
	ended, ok, err := s.endConfirm(ctx, id, wire.ConfirmCancelled, "the requester cancelled it", false)
	if !ok {
		if err == nil || errors.Is(err, errConfEnded) || errors.Is(err, errConfBusy) {
			st := r.View.Status
			if ended != nil {
				st = ended.View.Status
			}
			err = fmt.Errorf("%w: this confirmation is %s", wire.ErrConfirmationClosed, st)
		}
		return wire.ConfirmationView{}, err
	}
	rec := s.record(c, ended.View.Key, 0, "confirm-cancel", nil)
	rec.Detail = "confirmation=" + id
	return ended.View, s.audit2(rec, nil)
}

// Close stops the KEK rotation worker, if one runs (a later start resumes
// it), the key feed and the confirmation timers. With the in-memory
// ConfirmStore it also ends every pending confirmation that no approval is
// processing (nothing is signed; requesters see "expired"), for a clean
// shutdown before the store closes: they would not survive the restart.
// With a clustered store it leaves them: another node serves their
// approval and poll, and the leader's sweep ends them at their timeout.
func (s *Service) Close() {
	s.stopKEKRotation()
	s.stopCluster()
	cs := s.confirms
	cs.mu.Lock()
	for id, t := range cs.timers {
		t.Stop()
		delete(cs.timers, id)
	}
	cs.mu.Unlock()
	if cs.shared {
		return
	}
	ctx := context.Background()
	list, err := cs.store.Pending(ctx)
	if err != nil {
		return
	}
	for _, r := range list {
		ended, ok, _ := s.endConfirm(ctx, r.View.ID, wire.ConfirmExpired, "keysvc stopped; nothing was signed", false)
		if ok {
			_ = s.audit(&audit.Record{Time: s.now(), Client: HolderClient, Key: ended.View.Key, Op: "confirm-expire", Result: "ok", Detail: "confirmation=" + ended.View.ID + " shutdown"})
		}
	}
}
