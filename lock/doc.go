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
// compare-and-delete script that hands the key to the next waiter in line, if
// any. Acquire plus Release is two round trips and ten server commands.
//
// A Config must name a TTL: a holder that crashes keeps the lock at most that
// long. A lock held until released, whatever happens to its holder
// (valkey-py's timeout=None), is asked for with NoExpiry.
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
// Processes wait in line on the server: a blocked Acquire's *Lock puts one
// entry in the lock's queue (a list), and a release hands the key straight to
// the first entry whose process still listens, setting it to that waiter's
// token and telling it on its own grant channel. So one release wakes one
// waiter, in arrival order across processes, at a cost per acquisition that
// does not grow with the number of processes waiting; a standby of an
// election with ten rivals takes over as fast as with one. Goroutines of one
// *Lock wait behind its entry in a local FIFO queue, and a release by one of
// them hands the key to the next in the same round trip unless another
// process is first in line: processes take turns.
//
// A waiter whose process died is skipped at once (its grant channel has no
// subscriber). One that froze or was cut off is handed the key for the claim
// window only (Config.ClaimWindow, four RetryIntervals by default): a live
// grantee claims the key (resets its TTL) before half of it has passed, so a
// grant nobody claims expires and passes on, at the latest one fallback
// interval of the next waiter later. With Config.Replicas, and on a Valkey
// Cluster, a grant is claimed before Acquire returns: one more round trip,
// which on a Cluster tells a grant the server made from one relayed by a
// node demoted in a failover. A waiter whose Acquire gives up takes
// its entry out of line.
//
// A waiter attempts by itself only when it must: to take its place in line,
// when its subscription is (re)established (a grant may have gone unheard;
// the attempt finds it), when the holder's TTL as last observed runs out (an
// expiry is not announced; the attempt that finds the key free hands it to
// the first in line), and otherwise on a fallback: every RetryInterval until
// grants can be heard, ten times that once the subscription is confirmed.
// Callers that never join the line (TryAcquire, and every waiter of a
// PlainKey lock, whose valkey-py peers cannot) take the key only when it is
// free and nobody is in line: under continuous contention by waiters in
// line they get it only between waves, so do not poll with TryAcquire
// against Acquire callers. With PlainKey there is no line: baton's waiters
// poll every RetryInterval, as valkey-py's do, and all are served alike.
//
// # Keys
//
// The lock key is KeyPrefix+name (or name itself with PlainKey, compatible with
// valkey-py's Lock). The fence counter, the queue and the channels derive
// from the key with a shared hash tag, so every script stays on one cluster
// slot.
package lock
