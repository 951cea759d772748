package chaos

import "time"

// Timing is the election's timing in a run, given to every candidate.
type Timing struct {
	TTL           time.Duration // election.Config.TTL, baton run --ttl
	RenewDeadline time.Duration // election.Config.RenewDeadline, --renew-deadline
	RetryPeriod   time.Duration // election.Config.RetryPeriod, --retry-period
}

// DefaultTiming returns the election's defaults (15s / 10s / 2s) scaled down
// to a 2s TTL (2s / 1.333s / 266ms), so that a fault held longer than the
// TTL costs seconds, not minutes.
func DefaultTiming() Timing {
	return Timing{TTL: 2 * time.Second, RenewDeadline: 1333 * time.Millisecond, RetryPeriod: 266 * time.Millisecond}
}

// LeaderSlack is the part of LeaderBound that the timing model does not
// explain: scheduling of race-instrumented processes on a busy machine, a
// candidate's process start, one round trip.
const LeaderSlack = 500 * time.Millisecond

// LeaderBound is how long after a fault heals a leader must exist again:
// TTL + 2*RetryPeriod + LeaderSlack (3.03s with DefaultTiming).
//
// Why: once the fault has healed, every live candidate reaches the server.
// The worst legitimate case is a key whose TTL was reset by a term that no
// longer acts, just as the fault healed: renewals held by a blackhole and
// delivered on heal, or queued on a paused server and run on resume. That
// key expires at most TTL after the heal; a standby, whose timer is armed at
// the end of the TTL it last saw and which then reads the new one, acquires
// within a round trip of the expiry, or within RetryPeriod (its retry and
// backoff cap) if an attempt failed; the winner's OnElected runs after one
// more round trip or, for baton run, after its command started.
func (t Timing) LeaderBound() time.Duration {
	return t.TTL + 2*t.RetryPeriod + LeaderSlack
}
