package etcdstore

import (
	"context"
	"time"
)

// SetInboxKeep shortens how long chained inbox entries stay (tests).
func SetInboxKeep(s *Store, d time.Duration) { s.inboxKeep.Store(int64(d)) }

// InboxDeleted is how many chained inbox entries s's sequencer deleted.
func InboxDeleted(s *Store) int64 { return s.inboxDeleted.Load() }

// RunSequencer chains s's cluster inbox until ctx ends, without the
// election: a sequencer that lost its leadership and has not noticed yet.
func RunSequencer(s *Store, ctx context.Context) { s.sequence(ctx) }
