// Package lease keeps a held lock alive: it renews the key's TTL on a fixed
// schedule and tells its holder, locally and without asking the server, how
// long it may still count itself as the holder.
//
// A Lease is built from a *lock.Held of a lock with a TTL. It ends in one of
// three ways, reported by Done, Err and a derived Context: the holder
// releases it (ErrReleased) or stops it (ErrStopped), or it is lost
// (ErrLost), either because the server refused a renewal (lock.ErrNotOwned:
// the key was deleted, overwritten or had expired; lock.ErrMisconfigured: it
// refuses renewals for good, such as a permission revoked) or because its
// validity bound passed without a successful renewal (ErrExpired).
//
// # Clock model
//
// Only the local monotonic clock is used. Wall clocks of different hosts are
// never compared, and no absolute expiry (PXAT) is ever computed from the
// local clock.
//
// Every acquire and renew request sets the key's TTL to the configured TTL
// when the server runs it, which is after the request was sent. So if the
// request was sent at local time s and succeeded, the key lives until at
// least s + TTL as measured by the server's clock. The lease therefore counts
// itself valid until
//
//	bound = s + Validity,  Validity <= TTL - DriftMargin
//
// where s is read before the request is sent (lock.Held.AcquiredAt for the
// acquisition, time.Now() before each renewal), and DriftMargin covers the
// server's clock running faster than ours over one TTL. Network and server
// latency only make the bound more conservative: they are spent inside the
// TTL, never added to it.
//
// A timer fires at the bound. If no renewal has succeeded by then, the lease
// ends with ErrExpired, whether the last renewal failed, is still waiting for
// a paused server, or could not even be sent: the verdict never waits for the
// network. Every renewal's context has the bound as its deadline, so no
// server call made while holding outlives the validity it is trying to
// extend.
//
// # Renewal
//
// A key handed over by another process's release lives only for the lock's
// claim window until it is claimed (lock.Held.ValidUntil): the first bound
// is then AcquiredAt plus that window, less a drift margin in proportion,
// and the first renewal, which claims it, comes half-way to that bound.
//
// Renewals reset the TTL (lock.Held.Reacquire) on absolute deadlines,
// AcquiredAt + k*RenewInterval, by default every TTL/3. They are not sleeps
// chained after each reply, so latency does not accumulate into the
// schedule. A refusal by the server is final: not owned, or a permanent error
// (lock.ErrMisconfigured: a permission revoked, a wrong server), and the lease
// is lost on the first one. Anything else (unreachable, timed out, a
// transient error reply such as READONLY or LOADING) is retried with
// exponential backoff until a renewal succeeds or the bound passes; the
// backoff itself never gives up.
//
// # What a lease guarantees, and what it cannot
//
// While Err() is nil and time.Now() is before ValidUntil(), no other
// acquisition of the lock can have succeeded, provided that the server keeps
// its data (no restart without persistence, no failover to a replica that
// missed the write), nobody deletes or overwrites the key (an operator's DEL
// is noticed at the next renewal, not before), and the clocks' rates differ
// by less than DriftMargin per TTL.
//
// It cannot protect against the holder itself being paused: a garbage
// collection, a SIGSTOP, a swapped-out or descheduled process, a virtual
// machine migration. A holder that checks Err or ValidUntil and then acts has
// a gap between the check and the action; if it is paused in that gap for
// longer than the remaining validity, it acts after another process may
// have acquired the lock. No local clock can close that gap, because the
// pause can happen after any reading of it. The fencing token does: send
// Fence() with every write, and have the protected resource refuse a write
// whose token is lower than the highest it has seen. See docs/safety.md.
//
// # Ending
//
// Done is closed, and the Context's are cancelled, the moment the lease ends,
// before Release sends the delete: work under the lease stops before a
// successor can acquire. Release and Stop are idempotent and join the
// renewal in flight; call one of them even after a loss. Release uses a
// fresh, bounded context, so releasing on the way out of a cancelled
// operation still works.
//
// # Scale
//
// A lease has no goroutine of its own while it waits. Each lease owns one
// runtime timer (time.AfterFunc), armed at its next renewal or retry, or at
// its bound while a renewal is in flight. The Go runtime keeps timers in
// per-processor heaps, so those heaps are the shared timer wheel a large
// number of leases needs, without a scheduler goroutine, a package-level
// registry or a lock shared between leases. When a timer fires, the runtime
// starts a goroutine that sends the renewal and returns, so goroutines exist
// only for renewals in flight; concurrent renewals from many leases are
// pipelined by valkey-go on the client's connection. At rest a lease costs
// a few hundred bytes (a timer, a context, a backoff and the Lease itself);
// BenchmarkLeases measures 1,000 and 10,000 leases on one connection and
// reports the CPU time per renewal, the heap per lease and the p99 renewal
// latency.
package lease
