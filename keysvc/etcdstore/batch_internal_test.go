package etcdstore

import (
	"testing"

	"github.com/keyward/keyward/keysvc/audit"
)

// TestBatchEnd: a chaining batch takes whole revisions, up to maxChain
// records, and always at least one revision.
func TestBatchEnd(t *testing.T) {
	ev := func(rev int64, n int) inboxEvent { return inboxEvent{rev: rev, recs: make([]audit.Record, n)} }
	for _, tc := range []struct {
		name string
		evs  []inboxEvent
		want int
	}{
		{"one", []inboxEvent{ev(5, 3)}, 1},
		{"all fit", []inboxEvent{ev(5, 50), ev(6, 50), ev(9, 20)}, 3},
		{"stops before the revision that does not fit", []inboxEvent{ev(5, 60), ev(6, 50), ev(7, 11)}, 2},
		{"a revision's entries stay together", []inboxEvent{ev(5, 100), ev(6, 10), ev(6, 15)}, 1},
		{"an oversized first revision alone", []inboxEvent{ev(5, 100), ev(5, 100), ev(6, 1)}, 2},
	} {
		if got := batchEnd(tc.evs); got != tc.want {
			t.Errorf("%s: batchEnd = %d, want %d", tc.name, got, tc.want)
		}
	}
}
