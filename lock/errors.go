package lock

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package for a lock operation is
// an *Error that wraps one of them, so callers test with errors.Is and read the
// lock name with errors.As.
var (
	// ErrNotAcquired is returned when the lock is held by someone else: by
	// TryAcquire at once, by Acquire when its blocking timeout passes.
	ErrNotAcquired = errors.New("lock: not acquired")

	// ErrNotOwned is returned by Release, Extend, ExtendTo and Reacquire when
	// the server no longer stores this acquisition's token: the key expired,
	// was deleted, or now belongs to someone else. The key is left untouched.
	ErrNotOwned = errors.New("lock: not owned")

	// ErrNotHeld is returned, without a server call, when an acquisition that
	// was already released (or found not owned) is used again, or for a nil
	// *Held.
	ErrNotHeld = errors.New("lock: not held")

	// ErrNoTTL is returned by Extend, ExtendTo and Reacquire for a lock that
	// has no TTL: there is nothing to extend.
	ErrNoTTL = errors.New("lock: lock has no ttl")

	// ErrInvalidTTL is returned by Extend and ExtendTo when the resulting TTL
	// would be below one millisecond. Nothing is changed on the server: in
	// particular the key is never deleted by an extension.
	ErrInvalidTTL = errors.New("lock: invalid ttl")

	// ErrUnavailable is returned when the server could not be reached or did
	// not answer: the outcome of the operation is unknown. A renewal loop
	// retries on it, unlike on ErrNotOwned. The transport error is wrapped too.
	ErrUnavailable = errors.New("lock: server unavailable")
)

// Error is the error type of lock operations. It names the operation and the
// lock, and wraps a sentinel (Kind) and, when there is one, the cause.
type Error struct {
	Op   string // "acquire", "release", "extend", "reacquire", "owned", "locked"
	Name string // the lock's name as given to New
	Kind error  // one of the sentinels above, or nil when only Cause applies
	Err  error  // the underlying cause (transport error, ctx error), or nil
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("lock %q: %s", e.Name, e.Op)
	if e.Kind != nil {
		msg += ": " + trimPrefix(e.Kind.Error())
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the sentinel and the cause, so errors.Is matches both.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

func trimPrefix(s string) string {
	const p = "lock: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
