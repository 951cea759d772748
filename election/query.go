package election

import (
	"context"
	"fmt"
	"time"

	"github.com/baton-dev/baton/callbacks"
)

// The query API: what this candidate knows of its own leadership, and what
// the server says. None of it campaigns or blocks on the campaign loop.

// Leader reads the current leader of e's election from the server in one
// round trip, without campaigning. It may differ from what IsLeader says
// for a moment around a transition: the server is the reference.
func (e *Elector) Leader(ctx context.Context) (callbacks.Leader, error) {
	return inspect(ctx, e.lock)
}

// IsLeader reports whether this candidate leads: true from its election until
// its step-down begins. The server may already have moved on (see Healthy).
func (e *Elector) IsLeader() bool {
	_, leading, _ := e.snapshot()
	return leading
}

// Term returns the current term and true while this candidate leads, or the
// zero Term and false.
func (e *Elector) Term() (callbacks.Term, bool) {
	tm, leading, _ := e.snapshot()
	if !leading {
		return callbacks.Term{}, false
	}
	return tm, true
}

// Healthy reports a leader that has stopped renewing: it returns an error
// wrapping ErrNotRenewing when this candidate leads and its last successful
// renewal (or its acquisition) was sent more than maxSilence ago, and nil
// otherwise, in particular when it does not lead. It needs no wiring: the
// Elector knows its own renewals.
//
// maxSilence <= 0 means RenewDeadline, the threshold for a liveness probe
// that restarts the process. A leader renews every RetryPeriod and steps
// down on its own once RenewDeadline passes without a successful renewal,
// so a silent leader normally stops being one before this threshold; one
// that still leads after it is stuck, and a restart is the fix. A shorter
// maxSilence, such as 2*RetryPeriod, also reports a leader that is failing
// to renew but has not given up yet: a signal for an alert, or to take it
// out of rotation, not for a restart, since it steps down by itself.
func (e *Elector) Healthy(maxSilence time.Duration) error {
	_, leading, last := e.snapshot()
	return e.verdict(leading, last, maxSilence)
}

// verdict is Healthy's answer for a snapshot.
func (e *Elector) verdict(leading bool, last time.Time, maxSilence time.Duration) error {
	if !leading {
		return nil
	}
	if maxSilence <= 0 {
		maxSilence = e.cfg.RenewDeadline
	}
	if age := time.Since(last); age > maxSilence {
		return fmt.Errorf("%w: last renewal sent %v ago, more than %v", ErrNotRenewing, age.Round(time.Millisecond), maxSilence)
	}
	return nil
}

// snapshot returns the current term, whether this candidate leads and, if
// so, when its last successful renewal (or its acquisition) was sent, read
// together.
func (e *Elector) snapshot() (callbacks.Term, bool, time.Time) {
	e.mu.Lock()
	t := e.current
	e.mu.Unlock()
	if t == nil {
		return callbacks.Term{}, false, time.Time{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cb, t.leading, t.lastRenew
}

// leadership returns whether this candidate leads and, if so, when its last
// successful renewal was sent: what the metrics report.
func (e *Elector) leadership() (bool, time.Time) {
	_, leading, last := e.snapshot()
	return leading, last
}

// observedLeader returns the leader that Run's observer last reported (to
// OnNewLeader), and false when Run is not running or has not read yet.
func (e *Elector) observedLeader() (callbacks.Leader, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.observed, e.haveObserved
}

// observe records a leader reported by Run's observer; Run clears it with
// ok false when it returns.
func (e *Elector) observe(l callbacks.Leader, ok bool) {
	e.mu.Lock()
	e.observed, e.haveObserved = l, ok
	e.mu.Unlock()
}
