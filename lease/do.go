package lease

import (
	"context"
	"errors"

	"github.com/baton-dev/baton/lock"
)

// Do acquires l (blocking, with opts), keeps the acquisition alive with a
// Lease configured by cfg, and runs fn with the lease and a context derived
// from ctx that is cancelled the moment the lease ends, with the lease's Err
// as its cause (context.Cause). Once fn returns, or panics, Do releases the
// lock; a panic goes on once the key is released.
//
// Do returns the acquisition's error if it could not acquire (fn does not
// run), and otherwise fn's error joined with the loss, when the lease was
// lost while fn ran (an error wrapping ErrLost and the reason: lock.ErrNotOwned,
// lock.ErrMisconfigured or ErrExpired), and with the release's error. So a
// nil error means fn succeeded while the lock was held throughout.
//
// This is lock.Do with renewals: use it for work that may outlast the TTL.
// It cannot stop fn from acting after the loss if fn ignores its context, or
// is paused between a check and a write: send ls.Fence() with every write to
// a protected resource (see the package documentation).
func Do(ctx context.Context, l *lock.Lock, cfg Config, fn func(ctx context.Context, ls *Lease) error, opts ...lock.AcquireOption) (err error) {
	if l == nil {
		return errors.New("lease: lock must not be nil")
	}
	if _, err := cfg.resolve(l.Name(), l.TTL()); err != nil {
		return err // before acquiring: nothing to release
	}
	h, err := l.Acquire(ctx, opts...)
	if err != nil {
		return err
	}
	ls, err := New(h, cfg)
	if err != nil {
		// cfg was valid for this lock a moment ago: New cannot refuse it.
		return errors.Join(err, h.Release(context.WithoutCancel(ctx)))
	}
	work, cancel := ls.Context(ctx)
	defer func() {
		cancel()
		lost := ls.Err() // nil while alive: Release below sets ErrReleased
		if lost != nil && errors.Is(lost, ErrLost) {
			err = errors.Join(err, lost)
		}
		err = errors.Join(err, ls.Release(ctx))
	}()
	return fn(work, ls)
}
