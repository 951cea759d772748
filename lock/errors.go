package lock

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/valkey-io/valkey-go"
)

// Sentinel errors. Every error returned by this package for a lock operation is
// an *Error that wraps one of them (or, for a caller's context that ended, the
// context's error), so callers test with errors.Is and read the lock name with
// errors.As.
//
// Every failure falls in one of four classes, and each class has one decided
// outcome:
//
//   - someone else holds the lock: ErrNotAcquired, ErrNotOwned. An outcome,
//     not a fault: a renewal loop steps down, a campaign waits.
//   - transient: ErrUnavailable. The server could not be reached, timed out,
//     or answered LOADING, READONLY, BUSY, TRYAGAIN, MASTERDOWN, CLUSTERDOWN,
//     NOREPLICAS, MISCONF, OOM or "max number of clients". Loops retry it
//     with backoff; single calls report it.
//   - permanent: ErrMisconfigured. The server refused the call for a reason
//     that retrying cannot fix. Loops give up on it after a bounded number of
//     tries and return it.
//   - the caller's context ended: the error wraps ctx's error (and, for
//     Acquire and TryAcquire, ErrNotAcquired), never ErrUnavailable.
var (
	// ErrNotAcquired is returned when the lock is held by someone else: by
	// TryAcquire at once, by Acquire when its blocking timeout passes or its
	// context ends while it waits (the context's error is wrapped too).
	ErrNotAcquired = errors.New("lock: not acquired")

	// ErrNotOwned is returned by Release, Extend, ExtendTo and Reacquire when
	// the server no longer stores this acquisition's token: the key expired,
	// was deleted, or now belongs to someone else. The key is left untouched.
	ErrNotOwned = errors.New("lock: not owned")

	// ErrNotHeld is returned, without a server call, when an acquisition that
	// was already released (or found not owned) is used again, or for a nil
	// or zero *Held.
	ErrNotHeld = errors.New("lock: not held")

	// ErrNoTTL is returned by Extend and ExtendTo when the key has no expiry:
	// the Lock was configured without a TTL, or someone PERSISTed the key.
	// The key is still this acquisition's and nothing was changed; Reacquire
	// gives a PERSISTed key its configured TTL back.
	ErrNoTTL = errors.New("lock: lock has no ttl")

	// ErrInvalidTTL is returned by Extend and ExtendTo when the resulting TTL
	// would be below one millisecond, or when the duration asked for is below
	// one millisecond (others are rounded up to whole ms). Nothing is changed on the
	// server: in particular the key is never deleted by an extension.
	ErrInvalidTTL = errors.New("lock: invalid ttl")

	// ErrUnavailable is returned when the server could not be reached, did
	// not answer in time, or answered with a transient error reply (see the
	// classes above): the outcome of the operation is unknown. A renewal
	// loop retries on it, unlike on ErrNotOwned. The cause is wrapped too.
	ErrUnavailable = errors.New("lock: server unavailable")

	// ErrNotReplicated is returned, with Config.Replicas set, when a write
	// was done on the primary but not acknowledged by enough replicas within
	// Config.ReplicaTimeout: a failover could lose it. Acquire and
	// TryAcquire give such an acquisition back and return this; Extend,
	// ExtendTo and Reacquire return it for an extension that then does not
	// count (a lease treats it as a failed renewal). It is transient: loops
	// retry it.
	ErrNotReplicated = errors.New("lock: not acknowledged by enough replicas")

	// ErrMisconfigured is returned when the server refused the operation for
	// a reason that retrying will not fix: a missing ACL permission (NOPERM,
	// or "ACL failure in script"), refused credentials (NOAUTH, WRONGPASS), a
	// key of the wrong type (WRONGTYPE), an unknown command (the address is
	// a Sentinel, or a server without scripting), a MOVED, ASK or CROSSSLOT
	// reply (a Valkey Cluster used through a client not in cluster mode), or
	// any other error reply. The server's words are wrapped, so the message
	// names what to change.
	ErrMisconfigured = errors.New("lock: misconfigured")
)

// Error is the error type of lock operations. It names the operation and the
// lock, and wraps a sentinel (Kind) and, when there is one, the cause.
type Error struct {
	Op   string // "acquire", "release", "extend", "reacquire", "owned", "locked", "inspect", "check", "subscribe"
	Name string // the lock's name as given to New
	Kind error  // one of the sentinels above, or nil when only Err applies (a caller's context that ended)
	Err  error  // the underlying cause (transport error, error reply, ctx error), or nil
}

// Error returns `lock "<name>": <op>: <kind>: <cause>`, leaving out what is nil.
func (e *Error) Error() string {
	msg := fmt.Sprintf("lock %q: %s", e.Name, e.Op)
	if e.Kind != nil {
		msg += ": " + strings.TrimPrefix(e.Kind.Error(), "lock: ")
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

// transientReplies are the error-reply prefixes after which the same call
// may succeed later: a server starting, a replica being promoted, a script or
// a cluster slot busy, memory or clients full for the moment.
var transientReplies = []string{
	"LOADING", "READONLY", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN",
	"NOREPLICAS", "MISCONF", "OOM", "ERR max number of clients",
}

// transient reports whether err is a failure that retrying may cure: a
// transport failure, a timeout, or a transient error reply. A context that
// was cancelled is not transient: it is someone's decision. Error replies
// that are not transient are permanent (ErrMisconfigured).
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotReplicated) {
		return true
	}
	if errors.Is(err, ErrMisconfigured) {
		return false
	}
	if verr, ok := valkey.IsValkeyErr(err); ok {
		msg := verr.Error()
		for _, p := range transientReplies {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true
}

// classify returns the sentinel for the failure err of a call made with ctx:
// nil when it is ctx's own end, ErrUnavailable when transient,
// ErrMisconfigured when the server refused for good.
//
// A context error that is not ctx's own is the server being unavailable:
// valkey-go reports the cancellation of a connection attempt that another
// call started to every call waiting for that connection.
func classify(ctx context.Context, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return nil
	}
	if _, ok := valkey.IsValkeyErr(err); ok && !transient(err) {
		return ErrMisconfigured
	}
	return ErrUnavailable
}

// ambiguous reports whether a call that failed with err may still have been
// executed by the server: it was sent, or may have been, and no reply came.
// An error reply means the server ran it (or refused it) and said so.
func ambiguous(err error) bool {
	_, ok := valkey.IsValkeyErr(err)
	return !ok
}
