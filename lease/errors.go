package lease

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors, returned by Lease.Err once the lease has ended and tested
// with errors.Is.
var (
	// ErrReleased is returned by Err after Release ended the lease.
	ErrReleased = errors.New("lease: released")

	// ErrStopped is returned by Err after Stop ended the lease without
	// releasing the lock: the key stays until its TTL runs out.
	ErrStopped = errors.New("lease: stopped")

	// ErrLost is wrapped by the *LostError that Err returns when the lease
	// ended on its own: the server no longer holds its token (the error also
	// wraps lock.ErrNotOwned), refuses renewals for good (it wraps
	// lock.ErrMisconfigured), or the validity bound passed without a
	// successful renewal (the error also wraps ErrExpired).
	ErrLost = errors.New("lease: lost")

	// ErrExpired is wrapped, with ErrLost, by the error Err returns when the
	// local validity bound passed without a successful renewal: the server
	// was unreachable, paused or too slow for long enough that the key may
	// have expired, so the lease stops counting itself as held.
	ErrExpired = errors.New("lease: expired: the validity bound passed without a successful renewal")
)

// LostError is how a lease that ended on its own reports why. It matches
// ErrLost and its Reason with errors.Is.
type LostError struct {
	// Name is the lock's name.
	Name string

	// Fence is the fencing token of the acquisition that was lost.
	Fence int64

	// Reason is why: an error from the lock that wraps lock.ErrNotOwned (the
	// key was deleted, overwritten or expired on the server),
	// lock.ErrNotHeld (the *lock.Held was released behind the lease's back)
	// or lock.ErrMisconfigured (the server refuses renewals for good), or
	// ErrExpired.
	Reason error

	// LastRenewErr is the last transient renewal error before an expiry, or
	// nil. It is context for people, not part of the error chain: errors.Is
	// does not look at it, so a lost lease never looks like, say, a context
	// deadline of the caller's own.
	LastRenewErr error
}

func (e *LostError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lease %q (fence %d): lost: %s", e.Name, e.Fence, strings.TrimPrefix(e.Reason.Error(), "lease: "))
	if e.LastRenewErr != nil {
		fmt.Fprintf(&b, " (last renewal error: %s)", e.LastRenewErr)
	}
	return b.String()
}

// Unwrap returns ErrLost and the reason, so errors.Is matches both.
func (e *LostError) Unwrap() []error { return []error{ErrLost, e.Reason} }
