// Package election elects one leader among the candidates of a named
// election on Valkey, keeps it elected while it renews, and tells every
// candidate what happens through the callbacks of package callbacks.
//
// # Model
//
// The leadership is a lock.Lock named after the election (key
// KeyPrefix+Name, default "baton:election:<name>"). A candidate that holds it
// leads for one term; the term's fencing token is the lock's, strictly
// greater than every earlier term's, so resources that compare it refuse a
// deposed leader's late writes. The value stored at the key is the leader's
// identity, '#' and a random suffix unique to the term: observers (LeaderOf,
// Watch, Elector.Leader) read the identity back as everything before the
// last '#'.
//
// Run first asks the server whether this client may do everything an
// elector does (lock.Lock.Check), then campaigns with a blocking
// lock.Acquire, which waits in line on the server and does not poll: a
// leader's release hands the leadership to the standby first in line (one
// wake-up, however many wait), a crashed leader's key is taken at the moment
// its TTL runs out, and a handover to a standby that froze passes on to the
// next after the lock's claim window (4 x RetryPeriod/10). The standby first
// in line in each process also attempts on its own, in case a release went
// unheard: every RetryPeriod while handovers are heard, every RetryPeriod/10
// while nothing is.
// A standby also follows the leader as Watch does, for OnNewLeader. Once
// elected, a lease.Lease renews the key every
// RetryPeriod. The term ends when
//
//   - a renewal finds the key deleted or someone else's (reason
//     lost_not_owned): at once;
//   - RenewDeadline passes without a successful renewal (expired_locally),
//     whatever the server's state: the server is unreachable, paused or too
//     slow. Once OnLost has returned, the elector still tries to delete the
//     key by its token, so that if the server answers again the next leader
//     need not wait for the TTL;
//   - a renewal is refused for good, e.g. a permission revoked (refused): at
//     once, as for expired_locally;
//   - Resign is called (resigned): the key is released, and the candidate
//     waits RetryPeriod before campaigning again so that a standby wins;
//   - OnElected panics (panicked): at once; the panic is logged with its
//     stack when it happens, the key is released, and the candidate waits
//     before campaigning again (RetryPeriod, doubling with each panicking
//     term in a row, up to max(TTL, 30s)); with CrashOnPanic, Run stops and
//     panics instead, once the key is released;
//   - Run's ctx ends (context_done): the key is released unless KeepOnCancel
//     is set, in which case it expires at the end of its TTL.
//
// OnElected's ctx is cancelled with the reason as its cause
// (context.Cause): ErrResigned, ErrPanicked, ErrStopped, or the lease's
// error, which wraps lease.ErrLost and lock.ErrNotOwned, lease.ErrExpired or
// lock.ErrMisconfigured.
//
// # Failures
//
// Each kind of failure has one outcome:
//
//   - transient (the server unreachable, timed out, READONLY, LOADING,
//     MASTERDOWN, CLUSTERDOWN, TRYAGAIN during a failover): retried with an
//     exponential backoff capped at RetryPeriod, forever; a leader steps down
//     at its renew deadline if renewals keep failing;
//   - permanent (lock.ErrMisconfigured: NOPERM, NOAUTH/WRONGPASS,
//     WRONGTYPE, an unknown command such as a Sentinel's, MOVED without
//     cluster mode): Run steps down and returns an error that wraps it and
//     quotes the server: at once when the startup check finds a permission
//     missing, after three refused campaign attempts in a row, or three
//     refused reads of the leader. A SUBSCRIBE refused while running (a
//     permission revoked) is logged once; standbys and watchers then rely on
//     reads at the leader's TTL and their fallback pace (every min(TTL, 5s)
//     for a running elector; standbys attempt every RetryPeriod/10).
//   - a panic in a callback: see above; a panic in OnLost or OnNewLeader is
//     logged at once and changes nothing else (with CrashOnPanic, it ends
//     Run and Run panics).
//   - a release that cannot be confirmed after a term ended on the
//     leader's own clock (the server paused or unreachable): retried in the
//     background until the server answers or Run returns, and sent as EVAL,
//     so that a server resuming without its script cache runs it and a
//     renewal it runs late cannot keep a dead term alive for a whole TTL.
//
// After a term that was lost or resigned, Run campaigns again; it stops only
// when its ctx ends. An acquisition whose reply arrives after its own
// RenewDeadline has passed (counted from when it was sent, as renewals are)
// never becomes a term: it is released and the campaign goes on.
//
// # Timing
//
// Three durations, validated as TTL > RenewDeadline > RetryPeriod*RetryMargin
// (1.2):
//
//   - TTL (default 15s) is the key's lifetime after each acquisition or
//     renewal, on the server's clock. A leader that crashes is replaced TTL
//     after its last renewal, within about one round trip.
//   - RenewDeadline (default 10s) bounds, on the leader's monotonic clock,
//     how long it acts without a successful renewal: it counts from the
//     moment before the last successful renewal was sent, which is no later
//     than the moment the server reset the TTL. The leader therefore stops
//     (OnElected's ctx is cancelled) at least TTL-RenewDeadline before the
//     server could give the key to anyone else, a margin that absorbs
//     differences between the two clocks' rates. Wall clocks of different
//     hosts are never compared.
//   - RetryPeriod (default 2s) is the renewal interval. The 1.2 factor
//     leaves room for a late renewal and a retry before RenewDeadline. It
//     is client-go's JitterFactor, but nothing is jittered: no candidate
//     acts on a fixed period that others could fall into step with
//     (standbys wake on events, retries after errors back off at random).
//
// What that means under faults:
//
//   - Leader process crashes or hangs: it stops renewing; the key expires
//     after TTL; a standby takes over about one round trip later.
//   - Leader partitioned from Valkey: renewals fail and are retried until
//     RenewDeadline, then it steps down locally; the standbys, which still
//     reach Valkey, take over when the key expires, TTL after its last
//     renewal. There is a gap of TTL-RenewDeadline without a leader, never
//     an overlap, as long as the leader's clock does not run slower than the
//     server's by that margin.
//   - Valkey paused (SIGSTOP) or unreachable for everyone: the leader steps
//     down after RenewDeadline; nobody can be elected until Valkey answers
//     again; then the first candidate to acquire wins. A renewal queued
//     during the pause runs on resume, but the leader's release, retried
//     until the server answers, runs too, so the dead term's key is gone
//     within a round trip of the resume (TestStalledServerDoesNotReviveADeadTerm).
//   - Valkey restarted without persistence: every key is gone; the leader
//     finds its key missing at its next renewal and steps down; a new leader
//     is elected with a fencing token greater than every earlier one (the
//     lock restarts its counter from the server's clock).
//   - Key deleted by an operator: the leader steps down at its next renewal
//     (at most RetryPeriod later) and campaigns again at once, so a new term
//     (the same leader's, most likely) begins then; a DEL is not published,
//     so standbys notice only at their next fallback read, at most
//     min(TTL, 5s) after it.
//
// # Callbacks
//
// Transitions go through a callbacks.Dispatcher, which enforces the callback
// contract: OnElected(ctx, term) runs in its own goroutine for the term, with
// a ctx cancelled the moment the term ends; OnLost(term) runs exactly once
// after each OnElected, after OnElected returned, never concurrently with
// another OnLost or OnNewLeader; the next term's OnElected starts only after
// the previous OnLost returned. OnNewLeader reports every change of leader
// observed on the server, this candidate's own election and "no leader"
// included; a leader whose fence is lower than one already reported (the
// server went back in time) comes with Leader.Stale set and a warning.
//
// The key is settled between OnElected's return and OnLost: released after
// Resign, a panic, or when Run ends, left to expire with KeepOnCancel, or
// already lost. So a standby can win only once the previous leader's
// OnElected has returned, unless the term was lost to the server (expiry,
// deletion, partition): then another candidate may lead while OnElected is
// still winding down, and only fencing tokens protect shared resources. Make
// OnElected return promptly when its ctx is done: OnLost, the release and
// the next campaign wait for it.
//
// Resign returns once the step-down has begun; it never waits for OnElected,
// so any goroutine may call it with any ctx, OnElected included.
//
// # Guarantees and limits
//
// Guaranteed: at most one candidate holds the key at any moment; fencing
// tokens increase with every term, across server restarts; a leader stops
// (its ctx is cancelled) no later than RenewDeadline after the moment before
// its last successful renewal; the callback order above; Run returns only
// after every goroutine it started has exited.
//
// Not guaranteed: that two candidates never act as leaders at the same
// moment. A leader that was paused (GC, SIGSTOP, a VM freeze) between a
// check of its ctx and a write, or whose clock runs slow by more than the
// TTL-RenewDeadline margin, may act after its successor was elected. Only a
// resource that checks fencing tokens is safe from that. Valkey replication
// is asynchronous: a failover to a replica that missed the last acquisition
// can elect a second leader and issue a fencing token twice, unless
// Config.Replicas makes every write wait for replicas (see docs/safety.md).
//
// # Observability
//
// Spans (scope ScopeName) cover work, not waiting: election.campaign
// (recorded only for campaigns that won, after the fact, from their start to
// the acquisition, with baton.election.attempts: the one span that shows the
// wait; the lock's own lock.acquire ends as a standby joins the line and its
// lock.wait is recorded when the wait is over, so a standby keeps no span
// open while it waits), election.renew
// (each renewal request, with lock.reacquire inside it and
// baton.election.renewed; a renewal the server refused is an outcome, one
// that could not reach it an error), election.step_down (with
// baton.election.reason) and
// election.release inside it. All carry
// baton.election.name and baton.election.identity, and baton.lock.fence once
// known. A lock held by someone else and a standby stopping are not errors.
//
// Metrics (same scope): baton.election.is_leader, baton.election.transitions
// (baton.election.direction = elected or lost),
// baton.election.acquire.duration (from lock.Held.AcquiredAt to taking
// office: the winning attempt's round trip, or, for a handover, the time
// since the standby's last attempt),
// baton.election.renew.duration, baton.election.renew.failures (every
// failed renewal, and a validity bound that passed with a renewal
// unanswered) and baton.election.since_last_renewal (only while leading).
// The observable ones are reported while Run runs. Data points carry
// baton.election.name, and baton.election.identity only with
// Config.MetricIdentity: a default identity is new at every restart, so the
// stable way to tell instances apart is service.instance.id on the
// MeterProvider's Resource.
//
// Logs go to Config.Logger: transitions at Info, renewals at Debug, retried
// errors at Warn, callback panics and permanent errors at Error.
package election
