// Package lock is a distributed lock on Valkey: valkey-py's Lock, made for Go,
// with fencing tokens and waiters that do not poll.
//
// # Model
//
// A *Lock names one lock; it is built once with New and shared. Acquire and
// TryAcquire return a *Held for each acquisition: it carries the random token
// stored at the key, the fencing token issued with it, and the name. Only the
// holder of the *Held can release, extend or reacquire it, which is what
// valkey-py's thread_local=True protects; handing the *Held to another goroutine
// is thread_local=False.
//
// On the server an acquisition is SET key token PX ttl on a free key, made in
// one script that also issues the fencing token; release is a
// compare-and-delete script that publishes on the lock's channel when a
// waiter has registered there. Acquire plus Release is two round trips and
// eight server commands.
//
// # Guarantees and limits
//
// While the key holds a Held's token, no other acquisition of the lock can
// succeed. When the TTL runs out before the holder releases or extends, the
// lock passes on while the old holder may still act: a lock with a TTL is a
// lease, not a mutex. Fencing tokens close that gap for resources that check
// them: every acquisition's Fence is strictly greater than every earlier one's,
// including across a restart of a server that kept no data (a missing counter
// restarts from the server's clock in microseconds). See docs/safety.md.
//
// # Failures
//
// Every failure has one decided outcome (see the sentinel errors):
//
//   - Held by someone else: ErrNotAcquired (TryAcquire; Acquire once its
//     blocking timeout passes or its ctx ends while it waits), ErrNotOwned
//     (Release, Extend, Reacquire). Outcomes, not errors, in traces.
//   - Transient (connection lost, timeout, LOADING, READONLY, BUSY,
//     TRYAGAIN, MASTERDOWN, CLUSTERDOWN, ...): ErrUnavailable. Single calls
//     return it; a blocked Acquire returns it at once rather than waiting
//     blind; loops (lease, election) retry it with backoff.
//   - Permanent (NOPERM, WRONGTYPE, NOAUTH, an unknown command, MOVED
//     without cluster mode, ...): ErrMisconfigured wrapping the server's
//     words. Loops give up on it. Check asks the server's ACL up front.
//   - The caller's ctx ending: the error wraps ctx's error and is never
//     ErrUnavailable. An Acquire or TryAcquire whose ctx has ended sends
//     nothing.
//
// No script writes before a step that can fail, so a refused call leaves the
// lock as it was: the acquire script checks the key and issues the fence
// first and sets the key last; a release whose PUBLISH is refused is still a
// release (logged once to Config.Logger). Only what a call itself may have
// written is ever cleaned up: a key is deleted by a token of this package's
// making, never by a caller's (WithToken), which another acquisition may
// share. Cleanups, and releases after a call on the acquisition went
// unanswered, are sent as EVAL, so they run even on a server that lost its
// script cache and after their caller has gone.
//
// # Waiting
//
// Blocked Acquire calls on one *Lock queue in FIFO order; only the first talks
// to the server, and its failed attempts register the *Lock as waiting, which
// makes releases publish. It attempts when a release is published, when the
// holder's TTL as reported by the last failed attempt runs out, when the
// subscription is (re)established, and otherwise on a fallback: every
// RetryInterval until releases can be heard (and always with PlainKey), ten
// times that once the subscription is confirmed. One release therefore wakes
// one attempt per process, and a crashed holder is replaced within a round
// trip of its TTL's end.
//
// A release by a holder of the same *Lock grants the key straight to the
// first waiter, in the release's own script, unless waiters of another *Lock
// (another process) are registered: goroutines of one process hand the lock
// on in one round trip, and never starve other processes' waiters.
//
// # Keys
//
// The lock key is KeyPrefix+name (or name itself with PlainKey, compatible with
// valkey-py's Lock). The fence counter, the waiters key and the channel derive
// from the key with a shared hash tag, so every script stays on one cluster
// slot.
package lock
