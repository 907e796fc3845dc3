package keysvc

import (
	"testing"

	"github.com/keyward/keyward/keysvc/wire"
)

// TestKeyCacheNeverGoesBack (issue 12 item 4): an older snapshot of a key
// never replaces a newer one, whatever the order the puts arrive in; an
// equal revision keeps the entry already there.
func TestKeyCacheNeverGoesBack(t *testing.T) {
	snap := func(rev uint64, st wire.State) *Key {
		return &Key{Name: "k", Primary: 1, Revision: rev, Versions: []Version{{Version: 1, State: st}}}
	}
	var c keyCache
	enabled, disabled := snap(4, wire.StateEnabled), snap(5, wire.StateDisabled)
	if got := c.put(disabled); got != disabled {
		t.Fatal("first put not installed")
	}
	if got := c.put(enabled); got != disabled {
		t.Fatalf("revision %d replaced revision %d", got.Revision, disabled.Revision)
	}
	if got := c.put(snap(5, wire.StateEnabled)); got != disabled {
		t.Fatal("an equal revision replaced the entry")
	}
	newer := snap(6, wire.StateEnabled)
	if got := c.put(newer); got != newer {
		t.Fatal("a newer revision was not installed")
	}
	if c.m["k"] != newer {
		t.Fatal("the cache does not hold the newest key")
	}
	// A record from before revisions (0) is replaced by its first update.
	var old keyCache
	old.put(snap(0, wire.StateEnabled))
	if got := old.put(snap(1, wire.StateDisabled)); got.Revision != 1 {
		t.Fatal("revision 1 did not replace a pre-revision record")
	}
}

// TestKeyCacheFeedGaps (issue 16): with a shared store, a record read
// before the feed watches, or before a feed reset, is never installed —
// it could predate a change the feed will not deliver; one read after the
// reset is.
func TestKeyCacheFeedGaps(t *testing.T) {
	k := func(rev uint64) *Key { return &Key{Name: "k", Primary: 1, Revision: rev} }
	c := keyCache{waitFeed: true}
	gen := c.at()
	if got := c.putAt(k(3), gen); got.Revision != 3 || c.m["k"] != nil {
		t.Fatal("a record was cached before the feed's watch started")
	}
	if c.put(k(3)); c.m["k"] != nil {
		t.Fatal("a feed put was cached before the feed's first reset")
	}
	c.clear() // the feed's watch has started
	readBefore := c.at()
	c.clear() // a gap: the feed lost its watch and restarted
	if c.putAt(k(7), readBefore); c.m["k"] != nil {
		t.Fatal("a record read before a feed reset was installed after it")
	}
	if got := c.putAt(k(7), c.at()); c.m["k"] != got || got.Revision != 7 {
		t.Fatal("a record read after the reset was not installed")
	}
	if c.put(k(8)); c.m["k"].Revision != 8 {
		t.Fatal("the feed's newer record was not installed")
	}
}
