package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keyward/keyward/token"
)

// Unlock clears the lockout in keysvc's own PIN guard (issue 13 defect 3,
// R-TOK-5). A pin_guard that is not keysvc's store — a mistyped path that
// token init created fresh, or another program's bbolt file — would take
// the new user PIN and the cleared lockout while keysvc's real guard stayed
// locked, and the transcript would say the opposite. So unlock refuses a
// pin_guard without keysvc's buckets, unless the file says it is the
// officers' workstation guard of a token keysvc does not use
// (pin_guard_kind: workstation), and it shows the guard's real state of the
// token before and after.

// Values of unlock's pin_guard_kind.
const (
	guardKindKeysvc      = "keysvc"      // default: keysvc's <data_dir>/keysvc.db
	guardKindWorkstation = "workstation" // the officers' own file, for a token keysvc does not use
)

// keysvcBuckets are the buckets keysvc's store (keysvc/boltstore) creates
// in keysvc.db, beside the PIN guard's ("pin-guard", "pin-guard-events",
// from token.NewBoltStore on the same database).
var keysvcBuckets = []string{"keys", "audit", "audit-meta", "checkpoints"}

const keysvcGuardHelp = "keysvc keeps its PIN guard in <data_dir>/keysvc.db, data_dir as set in keysvc's configuration file (for example /var/lib/keyward/keysvc.db): point pin_guard there, with keysvc stopped. For a token keysvc does not use, whose lockouts are counted in the officers' workstation file, set pin_guard_kind: workstation"

// checkKeysvcStore refuses a pin_guard file that is not keysvc's store.
// It opens the file read-only and changes nothing. A file another process
// holds (keysvc running) is left for openGuard to report.
func checkKeysvcStore(path string) error {
	if st, err := os.Stat(path); err == nil && st.Size() == 0 {
		return cfgErr("pin_guard", "%s is an empty file, not keysvc's store. %s", path, keysvcGuardHelp)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil
	}
	if err != nil {
		return cfgErr("pin_guard", "%s is not keysvc's store (not a bbolt file: %v). %s", path, err, keysvcGuardHelp)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for _, b := range keysvcBuckets {
			if tx.Bucket([]byte(b)) == nil {
				return cfgErr("pin_guard", "%s is not keysvc's store: it has no %q bucket (a fresh file — token init creates one at a mistyped path — or another program's). Clearing the lockout there would leave keysvc's real guard locked. %s", path, b, keysvcGuardHelp)
			}
		}
		return nil
	})
}

// guardText describes the guard's state of one PIN for officers.
func guardText(st token.PINState, limit int) string {
	if st.Locked {
		at := ""
		if !st.LockedAt.IsZero() {
			at = " since " + st.LockedAt.UTC().Format(time.RFC3339)
		}
		return fmt.Sprintf("LOCKED%s, %d failed attempts counted (limit %d)", at, st.Failures, limit)
	}
	return fmt.Sprintf("not locked, %d failed attempts counted (limit %d)", st.Failures, limit)
}

func guardKindOf(c *unlockConfig) string {
	if c.PINGuardKind == guardKindWorkstation {
		return "officers' workstation"
	}
	return "keysvc's"
}
