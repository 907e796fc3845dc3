package keysvc

import "context"

// CheckManagedKeysAfterSync is the start-up check of hsm key versions
// (every version not destroyed must have its token object) for a keysvc
// on a token set started with Config.LevelledAfterStart: call it once the
// set has copied the hsm keys into the members that lacked them
// (token.Set.Sync). A version still missing then is on no token of the
// set: it is logged by name and counted in Stats.MissingTokenKeys
// (keyward_token_keys_missing), as New does for a single token. Without
// the deferral, a token that has just joined the set — it holds none of
// the hsm keys until the set copies them — made New report every hsm
// version as lost, in the log and in the metric, until the next restart.
func (s *Service) CheckManagedKeysAfterSync(ctx context.Context) error {
	s.levelled.Store(true)
	return s.checkManagedKeys(ctx)
}
