package keysvc

import "github.com/keyward/keyward/token"

// Stats is a snapshot for metrics and health (R-AV-2).
type Stats struct {
	PoolInUse    int  // sessions lent right now
	PoolMax      int  // pool bound
	TokenHealthy bool // the pool is connected and logged in
	PINFailures  int  // consecutive failed user-PIN attempts (PIN guard)
	PINLocked    bool // the PIN guard has locked the token
	// MissingTokenKeys counts hsm key versions whose token object was
	// missing at start (each logged by name).
	MissingTokenKeys int
	// Tokens lists each token of a token set (token.Set): state, since
	// when, re-admissions. Nil with a single token.
	Tokens []token.MemberStats
	// KEKEpoch is the KEK epoch in service; KEKRotating is true while a
	// rotation re-wraps or retires; KEKRotationDone and KEKRotationTotal
	// are its progress in keys (kekrotation.go).
	KEKEpoch                          int
	KEKRotating                       bool
	KEKRotationDone, KEKRotationTotal int
	// SchedulerLeader is true while this node runs the scheduler (Run):
	// the elected node in a cluster, any node running Run otherwise.
	SchedulerLeader bool
}
