package callbacks

import (
	"context"
	"time"
)

// Term is one leadership term of this process. It is a plain value, safe to
// copy and to share between goroutines.
type Term struct {
	// Name is the election name.
	Name string
	// Identity is this candidate's identity.
	Identity string
	// Fence is the fencing token of the acquisition: strictly greater than
	// every earlier term's, of this process or any other.
	Fence int64
	// Start is when the term was acquired, on the local clock. It is for
	// display only: never compare it with another host's clock.
	Start time.Time
}

// Leader describes who leads, as observed. The zero Leader (Identity == "")
// means "no leader". It is a plain value, safe to copy and to share between
// goroutines.
type Leader struct {
	// Identity is the leader's identity; "" means no leader.
	Identity string
	// Fence is the fencing token of the leader's term; 0 when unknown or no
	// leader.
	Fence int64
	// TTL is the leadership's remaining time to live when it was observed; 0
	// when unknown or no leader.
	TTL time.Duration
	// Stale is set by an observer that had already reported a leader with a
	// higher Fence: the server went back in time (a failover to a replica
	// that missed the latest writes, a restart without data), and this
	// leadership may be a term that has already ended. It is reported, and
	// logged at Warn, because it is what the server holds, but should not be
	// trusted as the current leader: nobody may be acting on it, and it
	// blocks campaigns until its TTL runs out or a newer term replaces it.
	Stale bool
}

// None reports whether l means "no leader".
func (l Leader) None() bool { return l.Identity == "" }

// Same reports whether l and o describe the same leadership: the same
// identity in the same term. TTL and Stale are ignored, since they change
// with every observation; every "no leader" is the same, whatever its other
// fields.
func (l Leader) Same(o Leader) bool {
	if l.None() || o.None() {
		return l.None() == o.None()
	}
	return l.Identity == o.Identity && l.Fence == o.Fence
}

// Callbacks is the set of functions a user gives the elector. OnElected is
// required; OnLost and OnNewLeader are optional (nil means no-op). See the
// package documentation for the order in which they run.
//
// A Callbacks value is safe to copy and to use from several goroutines as long
// as the functions it holds are.
type Callbacks struct {
	// OnElected is the leader's work for one term. Its ctx is cancelled the
	// moment leadership is lost or the elector stops. It may run for the whole
	// term and should return when ctx is done: OnLost, and the next campaign,
	// wait for it. Returning early does not resign; the term goes on until it is
	// lost.
	OnElected func(ctx context.Context, term Term)
	// OnLost is called exactly once after each OnElected, after OnElected's ctx
	// was cancelled and OnElected returned. Keep it short: it delays every later
	// callback and the next campaign.
	OnLost func(term Term)
	// OnNewLeader is called for every observed change of leader, including a
	// change to no leader, in the order observed. Keep it short: it delays every
	// later OnNewLeader and OnLost.
	OnNewLeader func(leader Leader)
}

// Validate returns [ErrNoOnElected] when c.OnElected is nil, and nil otherwise.
func (c Callbacks) Validate() error {
	if c.OnElected == nil {
		return ErrNoOnElected
	}
	return nil
}
