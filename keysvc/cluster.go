package keysvc

import (
	"context"
	"time"

	"github.com/keyward/keyward/keysvc/wire"
)

// Several keysvc nodes on one shared store (issue 16, R-AV-1, R-AV-4).
//
// The embedded store (keysvc/boltstore) has one writer, the process that
// holds its file lock. A clustered store (keysvc/etcdstore) is shared by
// several keysvc nodes, and offers, beside Store, what a node needs to
// behave as one of several:
//
//   - KeyFeed: every key record committed by any node, so each node's key
//     cache follows the others' changes (a version disabled on node A is
//     refused on node B);
//   - Elector: one node at a time runs the scheduler (rotation,
//     destruction, checkpoints, the sweep of orphaned confirmations);
//   - ConfirmStore: pending confirmations every node can read and end, so a
//     holder's approval reaches whichever node holds the request.
//
// keysvc.New finds them by type assertion on Config.Store; the bbolt store
// implements none of them, and keysvc then keeps confirmations in memory
// (memConfirmStore) and runs the scheduler by itself.

// KeyFeed is implemented by a store that several keysvc nodes share.
type KeyFeed interface {
	// WatchKeys calls put with every key record committed after the call
	// (by any node, this one included), in commit order, until ctx ends.
	// It calls reset once its watch has started (before the first put:
	// the caller caches nothing until then), and again whenever it cannot
	// guarantee that nothing was missed (the watch was lost, or the
	// history it needs was compacted), before the next put: the caller
	// forgets what it cached. It returns when ctx ends; it never gives up
	// on its own.
	WatchKeys(ctx context.Context, put func(*Key), reset func())
}

// Elector is implemented by a store that elects one leader among the
// nodes that share it.
type Elector interface {
	// Lead blocks until this node leads (or ctx ends: ctx.Err()), and then
	// returns a context that ends when leadership is lost (its session
	// expired, or ctx ended) and a function that gives leadership up.
	Lead(ctx context.Context, node string) (leading context.Context, resign func(), err error)
}

// ConfirmRecord is one confirmation as a ConfirmStore keeps it.
type ConfirmRecord struct {
	View      wire.ConfirmationView `json:"view"`
	Requester string                `json:"requester"`
	// Holder is the hex SHA-256 of the holder token (the token itself is
	// never stored).
	Holder string `json:"holder"`
	Scheme string `json:"scheme,omitempty"`
	// Sealed is the transaction's bytes sealed by keysvc (AES-256-GCM under
	// the SM KEK, a token key, with the confirmation id as additional
	// data): a clustered store keeps history until compaction, so clear
	// transaction bytes are never written to it. Emptied when the
	// confirmation ends.
	Sealed []byte `json:"sealed,omitempty"`
	// Digest is the SHA-256 of the transaction bytes (what the holder
	// approves).
	Digest []byte `json:"digest"`
	// BusyUntil, when set and in the future, says an approval is being
	// checked or signed by the node named in BusyNode: no other approval,
	// rejection, cancellation or expiry may end it meanwhile. A node that
	// dies while busy leaves it to lapse.
	BusyUntil time.Time `json:"busy_until,omitempty"`
	BusyNode  string    `json:"busy_node,omitempty"`
}

// Pending reports whether the confirmation has not ended.
func (r *ConfirmRecord) Pending() bool { return r.View.Status == wire.ConfirmPending }

// Busy reports whether an approval holds the confirmation at now.
func (r *ConfirmRecord) Busy(now time.Time) bool {
	return !r.BusyUntil.IsZero() && now.Before(r.BusyUntil)
}

// ConfirmStore keeps confirmations. Every method is safe for concurrent
// use by several goroutines and, for a clustered store, several nodes.
type ConfirmStore interface {
	// Open stores rec, pending, unless its key has a pending confirmation:
	// then it stores nothing and returns that one (other) and no error.
	// A pending confirmation frees its key at View.ExpiresAt at the
	// latest, even if no node ends it (a clustered store uses a lease);
	// the record itself stays readable until keep after ExpiresAt.
	Open(ctx context.Context, rec *ConfirmRecord, keep time.Duration) (other *ConfirmRecord, err error)
	// Get returns the record of id (nil, nil when there is none).
	Get(ctx context.Context, id string) (*ConfirmRecord, error)
	// ByHolder returns the record whose Holder is holder (nil, nil when
	// there is none).
	ByHolder(ctx context.Context, holder string) (*ConfirmRecord, error)
	// Update runs fn on a copy of id's record and stores the result if the
	// record did not change meanwhile; otherwise it reads it again and
	// runs fn again. An error from fn stores nothing and is returned as
	// is. A record that leaves pending frees its key at once. Update on a
	// record that is gone returns (nil, nil) without calling fn.
	Update(ctx context.Context, id string, fn func(r *ConfirmRecord) error) (*ConfirmRecord, error)
	// Wait returns when id's record is no longer pending (or is gone), or
	// when ctx ends.
	Wait(ctx context.Context, id string) error
	// Pending lists the pending confirmations (the expiry sweep, shutdown).
	Pending(ctx context.Context) ([]*ConfirmRecord, error)
}

// ConfirmStorer is implemented by a store that keeps confirmations itself
// (a clustered store); keysvc keeps them in memory otherwise.
type ConfirmStorer interface {
	Confirmations() ConfirmStore
}
