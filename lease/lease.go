package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/baton-dev/baton/lock"
	"github.com/cenkalti/backoff/v4"
)

// releaseTimeout bounds the release Release sends, whatever the caller's
// context: the lease has ended by then, and a server that does not answer
// within it will expire the key by its TTL anyway.
const releaseTimeout = time.Second

// Lease keeps a held lock alive by renewing its TTL on absolute deadlines,
// and ends, with a reason, when it is released, stopped, or lost. It is safe
// for concurrent use.
type Lease struct {
	h         *lock.Held
	cfg       Config                          // resolved: no zero fields but the hooks
	reacquire func(ctx context.Context) error // h.Reacquire; replaced in tests

	// ctx is cancelled, with the reason as its cause, the moment the lease
	// ends: its Done channel is the lease's, and Context derives from it.
	ctx context.Context
	end context.CancelCauseFunc

	// wg counts the renewal in flight, if any. Add is called only under mu
	// while the lease has not ended, so Wait after the end never races it.
	wg sync.WaitGroup

	mu          sync.Mutex                        // guards the fields below
	timer       *time.Timer                       // fires tick at the next renewal or retry, or at the bound
	bound       time.Time                         // validity bound: last successful send + Validity
	next        time.Time                         // when the next renewal or retry is due
	renewing    bool                              // a renewal is in flight
	cancelRenew context.CancelFunc                // cancels the renewal in flight
	retry       *backoff.ExponentialBackOff       // pauses between transient failures; reset on success
	lastErr     error                             // last transient renewal error since the last success
	endedAt     time.Time                         // when the lease ended; zero while alive
	derived     map[*byte]context.CancelCauseFunc // Context's contexts, cancelled in endLocked

	relMu    sync.Mutex // serialises Release; guards released
	released bool       // nothing (more) to release on the server
}

// New starts keeping h alive. It validates cfg against the lock's TTL
// (h.Lock().TTL() must be positive), fills in its defaults and schedules the
// first renewal at h.AcquiredAt() + RenewInterval. New makes no server call.
// For a key handed over by another process's release, which lives only for
// the claim window until claimed (h.ValidUntil), the bound counts from that
// instead when it is sooner, and the first renewal (which claims) comes by
// half-way to it.
//
// If h's validity bound, h.AcquiredAt() + Validity (or the sooner bound of a
// handed-over key), has already passed, the returned lease has already ended
// with an error wrapping ErrExpired.
//
// From now on the lease owns h: release it with Lease.Release, not with
// h.Release, which the lease would take for a loss.
//
// Call Release or Stop when done with the lease, also after it was lost:
// they join the renewal that may still be in flight.
func New(h *lock.Held, cfg Config) (*Lease, error) {
	return newLease(h, cfg, nil)
}

func newLease(h *lock.Held, cfg Config, reacquire func(context.Context) error) (*Lease, error) {
	if h == nil {
		return nil, errors.New("lease: held lock must not be nil")
	}
	cfg, err := cfg.resolve(h.Name(), h.Lock().TTL())
	if err != nil {
		return nil, err
	}
	if reacquire == nil {
		reacquire = h.Reacquire
	}
	l := &Lease{
		h:         h,
		cfg:       cfg,
		reacquire: reacquire,
		retry: backoff.NewExponentialBackOff(
			backoff.WithInitialInterval(cfg.RetryInitial),
			backoff.WithMaxInterval(cfg.RetryMax),
			backoff.WithMaxElapsedTime(0), // never give up on its own: the bound decides
		),
	}
	l.ctx, l.end = context.WithCancelCause(context.Background())

	acquired := h.AcquiredAt()
	l.bound = acquired.Add(cfg.Validity)
	l.next = acquired.Add(cfg.RenewInterval)
	if until := h.ValidUntil(); !until.IsZero() {
		// A key handed over by another process's release lives only for
		// the claim window until it is claimed (lock.Held.ValidUntil):
		// count validity from that, with a drift margin in proportion,
		// and renew (which claims it) half-way there.
		life := until.Sub(acquired)
		if b := acquired.Add(life - time.Duration(float64(cfg.DriftMargin)*float64(life)/float64(h.Lock().TTL()))); b.Before(l.bound) {
			l.bound = b
			l.next = acquired.Add(min(cfg.RenewInterval, b.Sub(acquired)/2))
		}
	}

	l.mu.Lock()
	now := time.Now()
	if !now.Before(l.bound) {
		lost := l.expireLocked(now)
		l.mu.Unlock()
		l.logLost(lost)
		return l, nil
	}
	// tick takes mu, so it cannot run before l.timer is set.
	l.timer = time.AfterFunc(l.wakeLocked(now), l.tick)
	l.mu.Unlock()
	return l, nil
}

// Done returns a channel that is closed when the lease ends: released,
// stopped or lost. It is never reopened.
func (l *Lease) Done() <-chan struct{} { return l.ctx.Done() }

// Err returns nil while the lease is alive. Once Done is closed it returns
// ErrReleased, ErrStopped, or a *LostError that wraps ErrLost and either an
// error wrapping lock.ErrNotOwned (lost at once on the first renewal the
// server refused: the token is gone) or lock.ErrMisconfigured (the server
// refuses renewals for good, such as a permission revoked), or ErrExpired
// (the validity bound passed without a successful renewal).
func (l *Lease) Err() error {
	if l.ctx.Err() == nil {
		return nil
	}
	return context.Cause(l.ctx)
}

// Fence returns the fencing token of the held lock. Send it with every write
// to a protected resource: it is what keeps a holder that was paused past
// its validity from doing harm.
func (l *Lease) Fence() int64 { return l.h.Fence() }

// Held returns the held lock the lease keeps alive.
func (l *Lease) Held() *lock.Held { return l.h }

// ValidUntil returns the current validity bound on the local monotonic clock:
// the moment before the last successful acquire or renew request was sent,
// plus Validity (for a handed-over key not yet claimed, the sooner bound New
// describes). Use it as the deadline of work that must finish while the
// lock is held. Once the lease has ended it returns the end, if that was
// earlier than the bound.
func (l *Lease) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.endedAt.IsZero() && l.endedAt.Before(l.bound) {
		return l.endedAt
	}
	return l.bound
}

// Context returns a copy of parent that is cancelled when the lease ends,
// with Err() as its cause (context.Cause), or when parent is done, or when
// the returned CancelFunc is called. Call the CancelFunc when the work is
// done, as with context.WithCancel. It starts no goroutine.
func (l *Lease) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.endedAt.IsZero() || l.ctx.Err() != nil {
		cancel(context.Cause(l.ctx))
		return ctx, func() { cancel(context.Canceled) }
	}
	// Cancelled synchronously by endLocked, not by context.AfterFunc, whose
	// goroutine could run after Release has sent the delete.
	id := new(byte)
	if l.derived == nil {
		l.derived = make(map[*byte]context.CancelCauseFunc)
	}
	l.derived[id] = cancel
	return ctx, func() {
		l.mu.Lock()
		delete(l.derived, id)
		l.mu.Unlock()
		cancel(context.Canceled)
	}
}

// Release ends the lease with ErrReleased, waits for the renewal in flight
// (cancelled, and bounded by the validity bound in any case) and then deletes
// the key if it still holds the lease's token. Done is closed before the
// delete is sent, so work under Context stops before anyone else can acquire.
//
// The delete uses a fresh context that keeps ctx's values but not its
// cancellation: it is bounded by one second, or by ctx's deadline when that
// is sooner and still ahead. An already cancelled ctx still releases.
//
// Release returns:
//   - nil once the key is deleted, or when there is nothing to delete: the
//     lease was lost because the server no longer held its token (no server
//     call is made), or it had expired, been refused or been stopped and the
//     key is gone or has passed on;
//   - an error wrapping lock.ErrNotOwned when the lease was alive but the
//     key no longer held its token: it had been lost before the lease
//     noticed;
//   - an error wrapping lock.ErrUnavailable when the server could not be
//     reached. The key then expires by its TTL; Release may be called again.
//
// After a lease that expired (ErrExpired), was refused (lock.ErrMisconfigured)
// or was stopped, Release still deletes the key by its token if the server
// has it, so a successor need not wait for the TTL; Err keeps its reason. Release is idempotent: once it has
// returned nil, later calls return nil without a server call.
func (l *Lease) Release(ctx context.Context) error {
	l.relMu.Lock()
	defer l.relMu.Unlock()
	l.stop(ErrReleased)
	if l.released {
		return nil
	}
	reason := context.Cause(l.ctx)
	if lost, ok := errors.AsType[*LostError](reason); ok &&
		(errors.Is(lost.Reason, lock.ErrNotOwned) || errors.Is(lost.Reason, lock.ErrNotHeld)) {
		l.released = true // the server said so: nothing of ours is there
		return nil
	}

	rctx, cancel := releaseContext(ctx)
	defer cancel()
	err := l.h.Release(rctx)
	switch {
	case err == nil, errors.Is(err, lock.ErrNotHeld):
		l.released = true
		l.cfg.Logger.LogAttrs(rctx, slog.LevelDebug, "lease released", l.attrs()...)
		return nil
	case errors.Is(err, lock.ErrNotOwned):
		l.released = true
		if reason == ErrReleased {
			return fmt.Errorf("lease %q: released after the key had been lost: %w", l.h.Name(), err)
		}
		return nil
	default:
		return fmt.Errorf("lease %q: release: %w", l.h.Name(), err)
	}
}

// releaseContext returns a context with ctx's values, not cancelled with ctx,
// bounded by releaseTimeout or by ctx's deadline if sooner and still ahead.
func releaseContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(releaseTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) && time.Until(d) > 0 {
		deadline = d
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}

// Stop ends the lease with ErrStopped, if it has not ended yet, and waits for
// the renewal in flight, without releasing: the key stays until its TTL runs
// out, as if the process had crashed. Stop is idempotent and safe to call
// after Release or a loss.
func (l *Lease) Stop() { l.stop(ErrStopped) }

// stop ends the lease with reason unless it has ended, then joins the
// renewal in flight.
func (l *Lease) stop(reason error) {
	l.mu.Lock()
	ending := l.endedAt.IsZero()
	if ending {
		l.endLocked(reason, time.Now())
	}
	l.mu.Unlock()
	if ending {
		l.cfg.Logger.LogAttrs(context.Background(), slog.LevelDebug, "lease ended", append(l.attrs(), slog.Any("reason", reason))...)
	}
	l.wg.Wait()
}

// tick runs on the timer: it starts a due renewal, declares the lease
// expired at the bound, or re-arms after an early or stale firing.
func (l *Lease) tick() {
	l.mu.Lock()
	if !l.endedAt.IsZero() {
		l.mu.Unlock()
		return
	}
	now := time.Now()
	if !now.Before(l.bound) {
		err := l.expireLocked(now)
		l.mu.Unlock()
		l.logLost(err)
		return
	}
	if l.renewing || now.Before(l.next) {
		l.timer.Reset(l.wakeLocked(now))
		l.mu.Unlock()
		return
	}
	// Every server call made while holding ends by the validity bound.
	ctx, cancel := context.WithDeadline(context.Background(), l.bound)
	l.renewing, l.cancelRenew = true, cancel
	l.wg.Add(1)
	l.timer.Reset(l.wakeLocked(now)) // the bound, while renewing
	l.mu.Unlock()
	l.renew(ctx, cancel)
}

// renew sends one renewal and applies its outcome.
func (l *Lease) renew(ctx context.Context, cancel context.CancelFunc) {
	defer l.wg.Done()
	sent := time.Now() // before the request: the key lives at least TTL from here
	var done func(error)
	if l.cfg.RenewContext != nil {
		ctx, done = l.cfg.RenewContext(ctx)
	}
	err := l.reacquire(ctx)
	if done != nil {
		done(err)
	}
	cancel()
	now := time.Now()

	l.mu.Lock()
	l.cancelRenew = nil
	if !l.endedAt.IsZero() {
		l.renewing = false
		l.mu.Unlock()
		return
	}
	if err == nil {
		l.renewed(sent, now)
		return
	}
	l.lastErr = err
	l.mu.Unlock()
	if l.cfg.OnRenewError != nil {
		l.cfg.OnRenewError(sent, err)
	}
	l.mu.Lock()
	l.renewing = false
	if !l.endedAt.IsZero() {
		l.mu.Unlock()
		return
	}
	switch {
	case errors.Is(err, lock.ErrNotOwned), errors.Is(err, lock.ErrNotHeld), errors.Is(err, lock.ErrNoTTL),
		errors.Is(err, lock.ErrMisconfigured):
		// Final: the token is not, or no longer, on the server, or the
		// server refuses renewals for good (a permission revoked, say):
		// retrying until the bound would only delay the verdict. ErrNoTTL
		// cannot come from Reacquire, which resets any TTL; it is here for
		// a reacquire function that would return it.
		lost := &LostError{Name: l.h.Name(), Fence: l.h.Fence(), Reason: err}
		l.endLocked(lost, now)
		l.mu.Unlock()
		l.logLost(lost)
	case !now.Before(l.bound):
		lost := l.expireLocked(now)
		l.mu.Unlock()
		l.logLost(lost)
	default:
		// Transient: unreachable, timed out, or an error reply. Retry with
		// backoff; the timer ends the lease at the bound if none succeeds.
		l.next = now.Add(l.retry.NextBackOff())
		l.timer.Reset(l.wakeLocked(now))
		retryIn := l.next.Sub(now)
		l.mu.Unlock()
		if l.cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
			l.cfg.Logger.LogAttrs(context.Background(), slog.LevelDebug, "lease renewal failed, retrying",
				append(l.attrs(), slog.Any("error", err), slog.Duration("retry_in", retryIn))...)
		}
	}
}

// renewed applies a successful renewal sent at sent. It is called with mu
// held and releases it. The lease stays marked as renewing until OnRenew has
// returned, so that OnRenew never runs concurrently with itself.
func (l *Lease) renewed(sent, now time.Time) {
	if b := sent.Add(l.cfg.Validity); b.After(l.bound) {
		l.bound = b
	}
	if l.lastErr != nil {
		l.lastErr = nil
		l.retry.Reset()
	}
	l.next = l.deadlineAfter(now)
	l.mu.Unlock()

	if l.cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		l.cfg.Logger.LogAttrs(context.Background(), slog.LevelDebug, "lease renewed",
			append(l.attrs(), slog.Duration("latency", now.Sub(sent)))...)
	}
	if l.cfg.OnRenew != nil {
		l.cfg.OnRenew(sent)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.renewing = false
	if l.endedAt.IsZero() {
		l.timer.Reset(l.wakeLocked(time.Now()))
	}
}

// deadlineAfter returns the first renewal deadline, AcquiredAt +
// k*RenewInterval, after now. Deadlines missed while retrying are skipped
// rather than caught up.
func (l *Lease) deadlineAfter(now time.Time) time.Time {
	acquired, every := l.h.AcquiredAt(), l.cfg.RenewInterval
	k := now.Sub(acquired)/every + 1
	return acquired.Add(k * every)
}

// wakeLocked returns how long the timer should wait from now: until the next
// renewal or retry, or until the bound if that comes first or a renewal is in
// flight.
func (l *Lease) wakeLocked(now time.Time) time.Duration {
	at := l.bound
	if !l.renewing && l.next.Before(at) {
		at = l.next
	}
	return at.Sub(now)
}

// expireLocked ends the lease because the validity bound passed.
func (l *Lease) expireLocked(now time.Time) *LostError {
	lost := &LostError{Name: l.h.Name(), Fence: l.h.Fence(), Reason: ErrExpired, LastRenewErr: l.lastErr}
	l.endLocked(lost, now)
	return lost
}

// endLocked ends the lease: it closes Done with reason as the cause, stops
// the timer and cancels the renewal in flight.
func (l *Lease) endLocked(reason error, now time.Time) {
	l.endedAt = now
	l.end(reason)
	for id, cancel := range l.derived {
		cancel(reason)
		delete(l.derived, id)
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.cancelRenew != nil {
		l.cancelRenew()
	}
}

func (l *Lease) logLost(err *LostError) {
	attrs := append(l.attrs(), slog.Any("reason", err.Reason))
	if err.LastRenewErr != nil {
		attrs = append(attrs, slog.Any("last_error", err.LastRenewErr))
	}
	l.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, "lease lost", attrs...)
}

func (l *Lease) attrs() []slog.Attr {
	return []slog.Attr{slog.String("lock", l.h.Name()), slog.Int64("fence", l.h.Fence())}
}
