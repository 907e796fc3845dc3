package etcdstore

import "time"

// SetInboxKeep shortens how long chained inbox entries stay (tests).
func SetInboxKeep(s *Store, d time.Duration) { s.inboxKeep.Store(int64(d)) }

// InboxDeleted is how many chained inbox entries s's sequencer deleted.
func InboxDeleted(s *Store) int64 { return s.inboxDeleted.Load() }
