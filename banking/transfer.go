package banking

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/store"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token/txformat"
)

var bucketReceipts = []byte("bank-receipts") // transfer id → receipt signature

// receiptBody is what a receipt states; field order is the signed order.
type receiptBody struct {
	Type       string `json:"type"`
	TransferID string `json:"transfer_id"`
	Time       string `json:"time"`
	Payer      string `json:"payer_account"`
	Payee      string `json:"payee_account"`
	Amount     string `json:"amount"`
	Currency   string `json:"currency"`
	Reference  string `json:"reference"`
	Memo       string `json:"memo,omitempty"`
}

// checkedOrder is an order checked against the bank's own data.
type checkedOrder struct {
	doc      *txformat.Document
	tr       txformat.Transfer
	payer    ledger.Account
	payee    ledger.Account
	amount   int64
	idemKey  string
	customer *Customer
	// authorised is set only by AuthoriseCorpOrder, after entry, review
	// and authorisation by three operators: execute moves a corporate
	// account's money only then (R-AUTH-10).
	authorised bool
}

// checkOrder recognises the order and checks it against the bank's data:
// the payer account is the customer's, the payee account exists, is not
// screened and, for personal accounts, belongs to the named payee; amount
// and currency are exact (R-DC-3 on the bank's side: any mismatch aborts).
func (b *Bank) checkOrder(ctx context.Context, c *Customer, order []byte) (*checkedOrder, error) {
	doc, err := txformat.Recognise(order)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOrderMismatch, err)
	}
	if len(doc.Transfers) != 1 {
		return nil, fmt.Errorf("%w: an order carries exactly one transfer; this one has %d", ErrOrderMismatch, len(doc.Transfers))
	}
	tr := doc.Transfers[0]
	co := &checkedOrder{doc: doc, tr: tr, customer: c}
	// Payer, payee and the payee's customer record in one read of the
	// store (one snapshot; on PostgreSQL one transaction instead of three).
	var accs []ledger.Account
	var errs []error
	var payeeName string
	var payeeKnown bool
	err = b.db.View(func(tx store.Tx) error {
		accs, errs = ledger.ReadAccounts(tx, strings.ReplaceAll(tr.PayerAccount, " ", ""), strings.ReplaceAll(tr.PayeeAccount, " ", ""))
		payeeName, payeeKnown = "", false
		if errs[1] == nil && !isCorporate(accs[1].Owner) {
			var pc Customer
			if v := tx.Bucket(bucketCustomers).Get([]byte(accs[1].Owner)); v != nil && kv.Decode(v, &pc) == nil {
				payeeName, payeeKnown = pc.Name, true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("banking: read the order's accounts: %w", err) // the store, not the order: 503
	}
	if co.payer = accs[0]; errs[0] != nil || co.payer.Owner != owner(c) {
		return nil, fmt.Errorf("%w: the payer account is not one of yours", ErrOrderMismatch)
	}
	// A missing payee account and a wrong holder name are one answer, so
	// the check tells no one which accounts exist or whose they are.
	if co.payee = accs[1]; errs[1] != nil {
		return nil, errPayeeMismatch
	}
	if b.cfg.Screen != nil {
		if b.cfg.Screen.CheckAccount(co.payee.ID) != nil || b.cfg.Screen.CheckName(tr.PayeeName) != nil {
			return nil, fmt.Errorf("%w: the payee is on the screening list; the transfer is refused", ErrBlocked)
		}
	}
	if payeeKnown && payeeName != tr.PayeeName {
		return nil, errPayeeMismatch
	}
	if tr.Currency != co.payer.Currency || tr.Currency != co.payee.Currency {
		return nil, fmt.Errorf("%w: currency %s does not match the accounts", ErrOrderMismatch, tr.Currency)
	}
	if co.amount, err = ledger.ParseAmount(tr.Amount, tr.Currency); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOrderMismatch, err)
	}
	ref := tr.EndToEndID
	if ref == "" {
		ref = doc.MessageID
	}
	co.idemKey = c.ID + ":" + ref
	return co, nil
}

// errPayeeMismatch is the one answer for a payee account that is not this
// bank's and for a payee name that is not its holder's.
var errPayeeMismatch = fmt.Errorf("%w: the payee account and name do not match an account of this bank", ErrOrderMismatch)

// execute posts a checked order and returns its receipt. A corporate
// account's order executes only once authorised (R-AUTH-10), whichever
// route brought it here.
func (b *Bank) execute(ctx context.Context, co *checkedOrder) (bankwire.TransferResult, error) {
	if isCorporate(co.payer.Owner) && !co.authorised {
		return bankwire.TransferResult{}, errMakerChecker
	}
	memo := co.tr.Purpose
	if len([]rune(memo)) > 140 {
		memo = string([]rune(memo)[:140])
	}
	rc, err := b.Ledger.Transfer(ctx, ledger.TransferRequest{IdempotencyKey: co.idemKey, From: co.payer.ID, To: co.payee.ID,
		Amount: co.amount, Currency: co.tr.Currency, Memo: memo, Reference: asciiRef(co.tr.EndToEndID)})
	if err != nil {
		return bankwire.TransferResult{}, err
	}
	res := bankwire.TransferResult{TransferID: rc.TransferID, Replayed: rc.Replayed}
	if res.Receipt, err = b.receipt(ctx, rc, !rc.Replayed); err != nil {
		// The transfer is done; the receipt can be fetched again later.
		b.log.ErrorContext(ctx, "receipt not signed", "transfer", rc.TransferID, "err", err)
		return res, nil
	}
	return res, nil
}

func asciiRef(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return ""
		}
	}
	return s
}

// errMakerChecker is the answer to a corporate operator's direct transfer.
var errMakerChecker = fmt.Errorf("%w: a corporate account's transfers are entered, reviewed and authorised by three operators (POST /v1/corporate/orders)", ErrMakerChecker)

// isCorporate reports a ledger owner that is a company (see owner).
func isCorporate(owner string) bool { return strings.HasPrefix(owner, "corp:") }

// directTransfer refuses a customer who may not move money alone: every
// corporate operator, the administrator included, goes through
// maker-checker (R-AUTH-10).
func directTransfer(c *Customer) error {
	if c.Corporate != "" {
		return errMakerChecker
	}
	return nil
}

// TransferUSB executes an order the customer signed with their USB key:
// the signature verified by keysvc with the customer's registered public
// key first, so an unsigned request learns nothing of the bank's records;
// then checked against the bank's data and posted (once: a replayed order
// returns the first receipt).
func (b *Bank) TransferUSB(ctx context.Context, s session.Session, so bankwire.SignedOrder) (res bankwire.TransferResult, err error) {
	defer func() {
		if err != nil || !res.Replayed { // a replayed order moved nothing: not counted again
			b.metrics.transfer(transferUSB, err)
		}
	}()
	c, err := b.Customer(s.Customer)
	if err != nil {
		return bankwire.TransferResult{}, err
	}
	if err := directTransfer(c); err != nil {
		return bankwire.TransferResult{}, err
	}
	if err := b.verifyUSB(ctx, c, so.Order, so.Signature); err != nil {
		return bankwire.TransferResult{}, err
	}
	co, err := b.checkOrder(ctx, c, so.Order)
	if err != nil {
		return bankwire.TransferResult{}, err
	}
	return b.execute(ctx, co)
}

// verifyUSB checks, through keysvc, that signature (base64 DER) is c's
// USB-key signature over order.
func (b *Bank) verifyUSB(ctx context.Context, c *Customer, order []byte, signature string) error {
	if c.USBKey == "" {
		return fmt.Errorf("%w: no USB key is registered for you", ErrForbidden)
	}
	bad := fmt.Errorf("%w: the signature does not match the order and your USB key", ErrBadSignature)
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || len(sig) == 0 || len(sig) > 512 {
		return fmt.Errorf("%w: signature must be base64 DER", ErrBadSignature)
	}
	ok, err := b.kms.Verify(ctx, c.USBKey, wire.VerifyRequest{Message: order, Signature: "kw:v1:" + signature})
	switch {
	case errors.Is(err, wire.ErrInvalidSignature):
		return bad
	case err != nil:
		return kmsErr(err)
	case !ok:
		b.log.WarnContext(ctx, "order refused: bad USB-key signature", "customer", c.ID)
		return bad
	}
	return nil
}

// receipt returns the signed receipt of a posting, signing it through
// keysvc the first time (the signature is kept, so a receipt is stable).
//
// fresh says rc was posted by the caller's own request just now (not a
// replay, not a lookup): no receipt can exist yet, so none is looked for.
func (b *Bank) receipt(ctx context.Context, rc ledger.Receipt, fresh bool) (bankwire.Receipt, error) {
	body, err := json.Marshal(receiptBody{Type: "keyward.receipt.v1", TransferID: rc.TransferID, Time: rc.Time.UTC().Format(time.RFC3339Nano),
		Payer: rc.From, Payee: rc.To, Amount: ledger.FormatAmount(rc.Amount, rc.Currency), Currency: rc.Currency, Reference: rc.Reference, Memo: rc.Memo})
	if err != nil {
		return bankwire.Receipt{}, err
	}
	var sig []byte
	if !fresh { // a posting made by this very request has no receipt yet
		_ = b.db.View(func(tx store.Tx) error {
			if bk := tx.Bucket(bucketReceipts); bk != nil {
				sig = append(sig, bk.Get([]byte(rc.TransferID))...)
			}
			return nil
		})
	}
	if len(sig) == 0 {
		s, err := b.receipts.sign(ctx, body)
		if err != nil {
			return bankwire.Receipt{}, err // already mapped (kmsErr) by the signer
		}
		mine := []byte(stripVersion(s))
		// Batch: concurrent transfers share one commit. The function may
		// run more than once; it only assigns sig and stores the first
		// signature.
		if err := b.db.Batch(func(tx store.Tx) error {
			bk := tx.Bucket(bucketReceipts)
			if bk == nil {
				return fmt.Errorf("%w: receipts", store.ErrBucketMissing)
			}
			if old := bk.Get([]byte(rc.TransferID)); old != nil { // a concurrent request (maybe on another node) signed first
				sig = append([]byte(nil), old...)
				return nil
			}
			sig = mine
			return bk.Put([]byte(rc.TransferID), mine)
		}); err != nil {
			return bankwire.Receipt{}, err
		}
	}
	return bankwire.Receipt{Body: string(body), Signature: string(sig)}, nil
}

// stripVersion turns "kw:v1:<b64>" into "<b64>".
func stripVersion(s string) string {
	if i := strings.LastIndexByte(s, ':'); strings.HasPrefix(s, "kw:v") && i > 0 {
		return s[i+1:]
	}
	return s
}

// ReceiptOf returns the receipt of one of the customer's transfers.
func (b *Bank) ReceiptOf(ctx context.Context, s session.Session, transferID string) (bankwire.Receipt, error) {
	rc, err := b.Ledger.Posting(ctx, transferID)
	if err != nil {
		return bankwire.Receipt{}, fmt.Errorf("%w: transfer %s", ErrNotFound, transferID)
	}
	c, err := b.Customer(s.Customer)
	if err != nil {
		return bankwire.Receipt{}, err
	}
	mine := false
	for _, id := range []string{rc.From, rc.To} {
		if a, err := b.Ledger.Account(ctx, id); err == nil && a.Owner == owner(c) {
			mine = true
		}
	}
	if !mine {
		return bankwire.Receipt{}, fmt.Errorf("%w: transfer %s", ErrNotFound, transferID)
	}
	return b.receipt(ctx, rc, false)
}

// --- cloud key: signed in keysvc after the customer's confirmation -------

// bucketPending holds the cloud transfers banking sent to keysvc for the
// customer's confirmation (confirmation id → pendingRecord JSON), in the
// store rather than in memory, so that a transfer started on one banking
// node can be polled and executed on another (issue 17, stateless nodes).
var bucketPending = []byte("bank-cloud-pending")

// pendingRecord is what PollCloud needs to finish a cloud transfer: whose
// it is and the exact order bytes keysvc was asked to sign. The order is
// checked again (checkOrder) when it executes, against the bank's data as
// it is then.
type pendingRecord struct {
	Customer string    `json:"customer"`
	Order    []byte    `json:"order"`
	Expires  time.Time `json:"expires"`
}

// pendingKeep is how long banking remembers a cloud transfer it sent to
// keysvc (by its own clock): longer than any confirmation timeout.
const pendingKeep = 20 * time.Minute

// sweepPending deletes pending cloud transfers past their expiry; Sweep
// runs it with the other sweepers.
func (b *Bank) sweepPending(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := b.now()
	n := 0
	err := b.db.Update(func(tx store.Tx) error {
		n = 0
		bk := tx.Bucket(bucketPending)
		var dead [][]byte
		err := bk.ForEach(func(k, v []byte) error {
			var p pendingRecord
			if kv.Decode(v, &p) != nil || now.After(p.Expires) {
				dead = append(dead, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		n = len(dead)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("banking: sweep pending cloud transfers: %w", err)
	}
	return n, nil
}

// TransferCloud checks the order and asks keysvc to sign it with the
// customer's cloud key: keysvc shows it to the customer on the second
// channel and signs only what they confirm (R-DC-1). The answer is the
// pending confirmation; PollCloud executes the transfer once signed.
func (b *Bank) TransferCloud(ctx context.Context, s session.Session, order []byte) (_ bankwire.PendingTransfer, err error) {
	defer func() {
		if err != nil { // a refused order; the accepted one is counted when PollCloud executes it
			b.metrics.transfer(transferCloud, err)
		}
	}()
	c, err := b.Customer(s.Customer)
	if err != nil {
		return bankwire.PendingTransfer{}, err
	}
	if err := directTransfer(c); err != nil {
		return bankwire.PendingTransfer{}, err
	}
	if c.CloudKey == "" {
		return bankwire.PendingTransfer{}, fmt.Errorf("%w: you have no cloud signing key", ErrForbidden)
	}
	// Checked now, so that a wrong order is refused before keysvc shows it
	// to the customer, and again by PollCloud when it executes.
	if _, err := b.checkOrder(ctx, c, order); err != nil {
		return bankwire.PendingTransfer{}, err
	}
	res, err := b.kms.Sign(ctx, c.CloudKey, wire.SignRequest{Message: order})
	switch {
	case errors.Is(err, wire.ErrConfirmationPending):
		return bankwire.PendingTransfer{}, fmt.Errorf("%w: another transfer is waiting for your confirmation; confirm or reject it first", ErrExists)
	case errors.Is(err, wire.ErrHolderLocked), errors.Is(err, wire.ErrHolderNotEnrolled):
		return bankwire.PendingTransfer{}, fmt.Errorf("%w: your cloud key cannot sign: %v", ErrForbidden, err)
	case err != nil:
		return bankwire.PendingTransfer{}, kmsErr(err)
	case res.Confirmation == nil:
		return bankwire.PendingTransfer{}, fmt.Errorf("banking: cloud key %s signed without confirmation; refusing", c.CloudKey)
	}
	cv := res.Confirmation
	rec, err := kv.Encode(&pendingRecord{Customer: c.ID, Order: order, Expires: b.now().Add(pendingKeep)})
	if err != nil {
		return bankwire.PendingTransfer{}, err
	}
	if err := b.db.Update(func(tx store.Tx) error { return tx.Bucket(bucketPending).Put([]byte(cv.ID), rec) }); err != nil {
		// keysvc shows the customer a transfer no node can finish; it
		// expires there unconfirmed or, confirmed, is never executed.
		return bankwire.PendingTransfer{}, fmt.Errorf("banking: record pending cloud transfer %s: %w", cv.ID, err)
	}
	return bankwire.PendingTransfer{ID: cv.ID, Status: string(cv.Status), Digest: cv.Digest, ExpiresAt: cv.ExpiresAt}, nil
}

// PollCloud waits up to wait for the customer's decision; once keysvc has
// signed, the signature is checked against the order and the transfer
// executed (idempotently: polling again returns the same receipt).
func (b *Bank) PollCloud(ctx context.Context, s session.Session, id string, wait time.Duration) (_ bankwire.PendingTransfer, err error) {
	var p pendingRecord
	var found bool
	err = b.db.View(func(tx store.Tx) (err error) {
		found, err = kv.Get(tx.Bucket(bucketPending), []byte(id), &p)
		return err
	})
	if err != nil {
		return bankwire.PendingTransfer{}, fmt.Errorf("banking: pending cloud transfer: %w", err)
	}
	if !found || p.Customer != s.Customer || b.now().After(p.Expires) {
		return bankwire.PendingTransfer{}, fmt.Errorf("%w: pending transfer %q", ErrNotFound, id)
	}
	cv, err := b.kms.Confirmation(ctx, id, wait)
	if err != nil {
		return bankwire.PendingTransfer{}, kmsErr(err)
	}
	out := bankwire.PendingTransfer{ID: id, Status: string(cv.Status), Digest: cv.Digest, ExpiresAt: cv.ExpiresAt, Reason: cv.Reason}
	if cv.Status != wire.ConfirmApproved {
		if cv.Status != wire.ConfirmPending {
			b.audit(ctx, Event{Op: "transfer.cloud.confirm", Actor: "customer:" + s.Customer, Subject: id, Result: "ok", Detail: "status=" + string(cv.Status)})
		}
		return out, nil
	}
	defer func() { // the confirmed transfer's outcome, once (a poll after it executed replays it)
		if err != nil || !out.Result.Replayed {
			b.metrics.transfer(transferCloud, err)
		}
		b.audit(ctx, Event{Op: "transfer.cloud.confirm", Actor: "customer:" + s.Customer, Subject: id, Result: resultOf(err), Detail: "status=approved"})
	}()
	sum := sha256.Sum256(p.Order)
	if cv.Digest != hex.EncodeToString(sum[:]) {
		return bankwire.PendingTransfer{}, fmt.Errorf("%w: keysvc signed other bytes than the order", ErrOrderMismatch)
	}
	// This node may not be the one that started the transfer: the customer
	// and the order are read again and checked against the bank's data now.
	c, err := b.Customer(p.Customer)
	if err != nil {
		return bankwire.PendingTransfer{}, err
	}
	co, err := b.checkOrder(ctx, c, p.Order)
	if err != nil {
		return bankwire.PendingTransfer{}, err
	}
	ok, err := b.kms.Verify(ctx, c.CloudKey, wire.VerifyRequest{Message: p.Order, Signature: cv.Signature})
	if err != nil {
		return bankwire.PendingTransfer{}, kmsErr(err)
	}
	if !ok {
		return bankwire.PendingTransfer{}, fmt.Errorf("%w: the cloud signature does not verify", ErrBadSignature)
	}
	res, err := b.execute(ctx, co)
	if err != nil {
		return bankwire.PendingTransfer{}, err
	}
	out.Result = &res
	return out, nil
}
