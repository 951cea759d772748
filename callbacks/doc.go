// Package callbacks defines what a baton elector tells its user, and the
// Dispatcher that delivers it in a guaranteed order.
//
// # The model
//
// A process campaigning for leadership lives through a sequence of terms.
// Each term begins when the elector acquires the lock and ends when it loses
// it (renewal refused, validity bound passed, resignation, or the elector
// stopping). The user sees three callbacks, gathered in [Callbacks]:
//
//   - OnElected(ctx, term) is the leader's work. It runs in its own goroutine
//     for as long as it likes; ctx is cancelled the moment the term ends, and
//     the function should return soon after. The [Term] carries the fencing
//     token that protected resources compare.
//   - OnLost(term) fires exactly once after each OnElected, never without one,
//     and only after OnElected's ctx was cancelled and OnElected returned. It is
//     where a program learns that its work has fully stopped.
//   - OnNewLeader(leader) reports every observed change of leader, including a
//     change to no leader, in the order observed.
//
// # The Dispatcher
//
// The elector does not call the user's functions itself; it hands its
// transitions to a [Dispatcher] (Elected, Lost, NewLeader, Close), which
// enforces the contract above whatever the timing:
//
//   - OnLost and OnNewLeader run one at a time, in order, on one goroutine
//     owned by the dispatcher. They never overlap each other.
//   - OnElected is the one exception to "one callback at a time": because it is
//     the long-running body of leadership, OnNewLeader may run while OnElected
//     is running. OnLost never overlaps OnElected, and the next term's
//     OnElected never starts before the previous term's OnLost returned.
//   - Lost blocks until OnLost has returned. The elector calls it from its
//     campaign loop, so the next campaign starts only after the user finished
//     stepping down.
//   - A panic in any callback is recovered and logged at once, with its stack,
//     through the dispatcher's *slog.Logger, and handed to the panic handler
//     ([WithPanicHandler]) on the goroutine that panicked; inside [Chain], as
//     soon as one function panics, not once its siblings return. The elector's
//     handler ends the term of an OnElected that panicked at once (it never
//     keeps a leadership whose work has stopped); OnLost still fires for it.
//   - Between OnElected's return and OnLost, [WithBeforeLost] runs: the
//     elector releases the leadership there.
//
// Because OnLost and OnNewLeader share one goroutine, a slow one delays every
// later callback, and a slow OnElected (one that ignores ctx) delays OnLost and
// with it the next campaign. Keep OnLost and OnNewLeader short, and make
// OnElected return when ctx is done.
//
// # Adapters
//
// [Chain] combines several sets of callbacks into one; [ExitOnLost] ends the
// process when leadership is lost, for programs that must never outlive it.
// (An HTTP health check is election.HealthHandler: it reads the elector's
// own state, renewals included, so it needs no callbacks.)
//
// This package is pure Go and knows nothing of Valkey; the election package
// drives it.
package callbacks
