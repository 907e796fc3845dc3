package banking

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/keyward/keyward/banking/auth/session"
	"github.com/keyward/keyward/banking/bankwire"
	"github.com/keyward/keyward/banking/internal/kv"
	"github.com/keyward/keyward/banking/store"
)

// CorpOrder is a corporate transfer order on its way through the roles.
type CorpOrder struct {
	ID         string                   `json:"id"`
	Corporate  string                   `json:"corporate"`
	Order      []byte                   `json:"order"` // the exact bytes entered
	Digest     string                   `json:"digest"`
	State      string                   `json:"state"` // entered, reviewed, executed, rejected
	Maker      string                   `json:"maker"`
	Reviewer   string                   `json:"reviewer,omitempty"`
	Authoriser string                   `json:"authoriser,omitempty"`
	Rejecter   string                   `json:"rejecter,omitempty"`
	Created    time.Time                `json:"created"`
	Result     *bankwire.TransferResult `json:"result,omitempty"`
}

// corpOperator loads the session's customer and checks its role.
func (b *Bank) corpOperator(s session.Session, want bankwire.Role) (*Customer, error) {
	c, err := b.Customer(s.Customer)
	if err != nil {
		return nil, err
	}
	if c.Corporate == "" || c.Role != want {
		return nil, fmt.Errorf("%w: this needs a corporate %s", ErrForbidden, want)
	}
	return c, nil
}

// EnterCorpOrder is the maker's entry of an order (checked against the
// bank's data at once, and again when it executes).
func (b *Bank) EnterCorpOrder(ctx context.Context, s session.Session, order []byte) (o CorpOrder, err error) {
	defer func() { b.auditCorp(ctx, "corporate.enter", s, o.ID, "", err) }()
	c, err := b.corpOperator(s, bankwire.RoleMaker)
	if err != nil {
		return CorpOrder{}, err
	}
	if _, err := b.checkOrder(ctx, c, order); err != nil {
		return CorpOrder{}, err
	}
	raw := make([]byte, 12)
	if _, err := rand.Read(raw); err != nil {
		return CorpOrder{}, err
	}
	sum := sha256.Sum256(order)
	o = CorpOrder{ID: "co_" + base64.RawURLEncoding.EncodeToString(raw), Corporate: c.Corporate, Order: order, Digest: hex.EncodeToString(sum[:]),
		State: "entered", Maker: c.ID, Created: b.now().UTC()}
	return o, b.putCorp(&o)
}

// ReviewCorpOrder is the reviewer's approval (or rejection): never the
// maker.
func (b *Bank) ReviewCorpOrder(ctx context.Context, s session.Session, id string, approve bool) (_ CorpOrder, err error) {
	defer func() { b.auditCorp(ctx, "corporate.review", s, id, decision(approve), err) }()
	c, err := b.corpOperator(s, bankwire.RoleReviewer)
	if err != nil {
		return CorpOrder{}, err
	}
	var out CorpOrder
	err = b.updateCorp(id, c.Corporate, func(o *CorpOrder) error {
		switch {
		case o.State != "entered":
			return fmt.Errorf("%w: order %s is %s, not waiting for review", ErrForbidden, id, o.State)
		case o.Maker == c.ID:
			return fmt.Errorf("%w: the maker may not review their own order", ErrForbidden)
		}
		if approve {
			o.State, o.Reviewer = "reviewed", c.ID
		} else {
			o.State, o.Rejecter = "rejected", c.ID
		}
		out = *o
		return nil
	})
	return out, err
}

// AuthoriseCorpOrder is the third person's authorisation, after which the
// transfer executes. An authoriser with a USB key must sign the order
// bytes with it (verified by keysvc); one without needs a recent SMS
// step-up.
func (b *Bank) AuthoriseCorpOrder(ctx context.Context, s session.Session, id, signature string, approve bool) (_ CorpOrder, err error) {
	defer func() { b.auditCorp(ctx, "corporate.authorise", s, id, decision(approve), err) }()
	c, err := b.corpOperator(s, bankwire.RoleAuthoriser)
	if err != nil {
		return CorpOrder{}, err
	}
	o, err := b.corpOrder(id, c.Corporate)
	if err != nil {
		return CorpOrder{}, err
	}
	switch {
	case o.State != "reviewed":
		return CorpOrder{}, fmt.Errorf("%w: order %s is %s; it needs a review before authorisation", ErrForbidden, id, o.State)
	case o.Maker == c.ID || o.Reviewer == c.ID:
		return CorpOrder{}, fmt.Errorf("%w: entry, review and authorisation need three different people", ErrForbidden)
	}
	if !approve {
		err := b.updateCorp(id, c.Corporate, func(o *CorpOrder) error {
			if o.State != "reviewed" {
				return fmt.Errorf("%w: order %s is %s", ErrForbidden, id, o.State)
			}
			o.State, o.Rejecter = "rejected", c.ID
			return nil
		})
		o.State, o.Rejecter = "rejected", c.ID
		return o, err
	}
	defer func() { b.metrics.transfer(transferCorporate, err) }() // an approval moves money: counted
	if c.USBKey != "" {
		if err := b.verifyUSB(ctx, c, o.Order, signature); err != nil {
			return CorpOrder{}, err
		}
	} else if err := b.sessions.RequireStepUp(s, session.LevelOTP, b.cfg.StepUpFor); err != nil {
		return CorpOrder{}, err
	}
	maker, err := b.Customer(o.Maker)
	if err != nil {
		return CorpOrder{}, err
	}
	co, err := b.checkOrder(ctx, maker, o.Order)
	if err != nil {
		return CorpOrder{}, err
	}
	co.idemKey = "corp:" + o.Corporate + ":" + o.ID
	co.authorised = true // entered, reviewed and now authorised by three operators
	// Claim the order before moving money, so two authorisers can't both
	// execute; the ledger's idempotency key makes a retry after a crash safe.
	if err := b.updateCorp(id, c.Corporate, func(o *CorpOrder) error {
		if o.State != "reviewed" {
			return fmt.Errorf("%w: order %s is %s", ErrForbidden, id, o.State)
		}
		o.State, o.Authoriser = "authorised", c.ID
		return nil
	}); err != nil {
		return CorpOrder{}, err
	}
	res, err := b.execute(ctx, co)
	if err != nil {
		_ = b.updateCorp(id, c.Corporate, func(o *CorpOrder) error { o.State = "reviewed"; o.Authoriser = ""; return nil })
		return CorpOrder{}, err
	}
	err = b.updateCorp(id, c.Corporate, func(o *CorpOrder) error {
		o.State, o.Result = "executed", &res
		return nil
	})
	o.State, o.Authoriser, o.Result = "executed", c.ID, &res
	return o, err
}

// auditCorp records a corporate maker/checker/authoriser step.
func (b *Bank) auditCorp(ctx context.Context, op string, s session.Session, id, decision string, err error) {
	ev := Event{Op: op, Actor: "customer:" + s.Customer, Subject: id, Result: resultOf(err)}
	if len(id) > 64 {
		ev.Subject = id[:64]
	}
	if decision != "" {
		ev.Detail = "decision=" + decision
	}
	b.audit(ctx, ev)
}

func decision(approve bool) string {
	if approve {
		return "approve"
	}
	return "reject"
}

// CorpOrders lists a corporate's orders for any of its operators.
func (b *Bank) CorpOrders(s session.Session) ([]CorpOrder, error) {
	c, err := b.Customer(s.Customer)
	if err != nil || c.Corporate == "" {
		return nil, fmt.Errorf("%w: corporate operators only", ErrForbidden)
	}
	var out []CorpOrder
	err = b.db.View(func(tx store.Tx) error {
		return tx.Bucket(bucketCorp).ForEach(func(_, v []byte) error {
			var o CorpOrder
			if err := kv.Decode(v, &o); err != nil {
				return err
			}
			if o.Corporate == c.Corporate {
				out = append(out, o)
			}
			return nil
		})
	})
	return out, err
}

func (b *Bank) corpOrder(id, corp string) (CorpOrder, error) {
	var o CorpOrder
	err := b.db.View(func(tx store.Tx) error {
		v := tx.Bucket(bucketCorp).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w: order %s", ErrNotFound, id)
		}
		return kv.Decode(v, &o)
	})
	if err == nil && o.Corporate != corp {
		return CorpOrder{}, fmt.Errorf("%w: order %s", ErrNotFound, id)
	}
	return o, err
}

func (b *Bank) putCorp(o *CorpOrder) error {
	v, err := kv.Encode(o)
	if err != nil {
		return err
	}
	return b.db.Update(func(tx store.Tx) error { return tx.Bucket(bucketCorp).Put([]byte(o.ID), v) })
}

// updateCorp changes one order of corp in one transaction.
func (b *Bank) updateCorp(id, corp string, fn func(o *CorpOrder) error) error {
	return b.db.Update(func(tx store.Tx) error {
		bk := tx.Bucket(bucketCorp)
		v := bk.Get([]byte(id))
		var o CorpOrder
		if v == nil || kv.Decode(v, &o) != nil || o.Corporate != corp {
			return fmt.Errorf("%w: order %s", ErrNotFound, id)
		}
		if err := fn(&o); err != nil {
			return err
		}
		nv, err := kv.Encode(&o)
		if err != nil {
			return err
		}
		return bk.Put([]byte(id), nv)
	})
}
