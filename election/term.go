package election

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/lease"
	"github.com/baton-dev/baton/lock"
	"go.opentelemetry.io/otel/trace"
)

// term is one leadership term of an Elector, from the acquisition to the end
// of its step-down.
type term struct {
	cb     callbacks.Term
	lease  *lease.Lease
	parent trace.SpanContext // Run's ctx span context: the parent of the term's spans
	span   trace.SpanContext // the campaign span, which the term's later spans link to

	resign     chan struct{} // closed by the first Resign
	resignOnce sync.Once
	panic      chan struct{} // closed when OnElected panicked
	panicOnce  sync.Once
	stepping   chan struct{} // closed once OnElected's ctx is cancelled: the step-down has begun

	// reason and stepCtx are written by the campaign loop before it asks the
	// dispatcher to end the term, and read by finish after OnElected has
	// returned: the dispatcher orders them.
	reason  reason
	stepCtx context.Context

	// releaseErr is written by finish, before OnLost runs.
	releaseErr error

	mu        sync.Mutex              // guards the fields below
	leading   bool                    // from the election until the step-down begins
	lastRenew time.Time               // when the last successful renewal, or the acquisition, was sent
	cancel    context.CancelCauseFunc // cancels OnElected's ctx; nil until OnElected starts
	cause     error                   // why the term ended; nil while it lasts
}

// termKey marks the ctx given to OnElected.
type termKey struct{}

// begin turns an acquisition into a term: it starts the lease that renews
// it, records the campaign, and makes the term current.
func (e *Elector) begin(ctx context.Context, parent trace.SpanContext, h *lock.Held, start time.Time, attempts int) (*term, error) {
	rtt := time.Since(h.AcquiredAt())
	t := &term{
		cb: callbacks.Term{
			Name:     e.cfg.Name,
			Identity: e.cfg.Identity,
			Fence:    h.Fence(),
			Start:    h.AcquiredAt(),
		},
		parent:    parent,
		span:      e.tracer.campaign(parent, start, h, attempts),
		resign:    make(chan struct{}),
		panic:     make(chan struct{}),
		stepping:  make(chan struct{}),
		leading:   true,
		lastRenew: h.AcquiredAt(),
	}
	lc := e.cfg.LeaseConfig()
	lc.Logger = e.log
	lc.OnRenew = func(at time.Time) { e.renewed(t, at) }
	lc.RenewContext = func(ctx context.Context) (context.Context, func(error)) {
		return e.tracer.startRenew(ctx, t.parent, t.span, t.cb.Fence)
	}
	lc.OnRenewError = func(at time.Time, err error) {
		e.meters.renewFailures.Add(context.Background(), 1, e.meters.attrs)
		e.log.Debug("election: renewal failed", "fence", t.cb.Fence, "error", err)
	}
	ls, err := lease.New(h, lc)
	if err != nil {
		return nil, err
	}
	select {
	case <-ls.Done():
		// The acquisition's validity passed before its reply came: the key
		// is ours on the server but may not be for long enough to lead.
		err := ls.Err()
		_ = e.releaseKey(context.WithoutCancel(ctx), ls.Fence(), ls.Release)
		return nil, err
	default:
	}
	t.lease = ls
	e.meters.acquireDuration.Record(ctx, rtt.Seconds(), e.meters.attrs)
	e.meters.transition(ctx, true)
	e.mu.Lock()
	e.current = t
	e.mu.Unlock()
	e.log.Info("election: elected", "fence", t.cb.Fence, "campaign", time.Since(start).Round(time.Microsecond))
	return t, nil
}

// work returns OnElected's ctx: parent, cancelled with the term's cause
// when the step-down begins (at once if it already has).
func (t *term) work(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	t.mu.Lock()
	if t.cause != nil {
		cancel(t.cause)
	} else {
		t.cancel = cancel
	}
	t.mu.Unlock()
	return ctx, func() { cancel(context.Canceled) }
}

// end begins the step-down: the term stops leading and OnElected's ctx is
// cancelled with cause.
func (t *term) end(cause error) {
	t.mu.Lock()
	t.leading = false
	if t.cause == nil {
		t.cause = cause
		// stepping first: a Resign that sees OnElected's ctx end must find
		// the step-down begun, or it would report its own resignation as
		// its ctx ending.
		close(t.stepping)
		if t.cancel != nil {
			t.cancel(cause)
		}
	}
	t.mu.Unlock()
}

func (t *term) isLeading() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.leading
}

// renewed runs on the lease's goroutine after each successful renewal sent
// at at.
func (e *Elector) renewed(t *term, at time.Time) {
	end := time.Now()
	t.mu.Lock()
	if at.After(t.lastRenew) {
		t.lastRenew = at
	}
	t.mu.Unlock()
	e.meters.renewDuration.Record(context.Background(), end.Sub(at).Seconds(), e.meters.attrs)
	e.log.Debug("election: renewed", "fence", t.cb.Fence, "took", end.Sub(at))
	if e.cfg.OnRenew != nil {
		e.cfg.OnRenew(at)
	}
}

// causeOf is the cancel cause of OnElected's ctx for a term that ended for
// reason why.
func (e *Elector) causeOf(t *term, why reason) error {
	switch why {
	case reasonResigned:
		return ErrResigned
	case reasonPanicked:
		return ErrPanicked
	case reasonContextDone:
		return ErrStopped
	}
	return t.lease.Err() // lost: wraps lease.ErrLost and the reason
}

// stepDown ends term t for reason why. OnElected's ctx is cancelled; the
// dispatcher waits for OnElected to return, then settles the key (settle:
// released, left to expire, or found lost), so another candidate can only
// win once this one has stopped working, and then runs OnLost. stepDown
// returns once OnLost has returned.
func (e *Elector) stepDown(d *callbacks.Dispatcher, t *term, why reason, life context.Context, r *run) {
	ctx, span := e.tracer.startStepDown(t.parent, t.span, t.cb, why)
	t.reason, t.stepCtx = why, ctx
	t.end(e.causeOf(t, why))

	d.Lost()
	t.lease.Stop() // joins the last renewal: OnLost has returned already
	if why == reasonExpiredLocally || why == reasonRefused {
		// The key may still be ours on the server, and a renewal that was
		// sent but never answered may even run later and renew it. Delete
		// it by its token (sent as EVAL, which runs whatever the server's
		// script cache holds), retrying until the server answers, in the
		// background, so that the next leader need not wait for the TTL
		// and a server that still does not answer delays nothing.
		r.releases.Go(func() { e.releaseEnded(trace.ContextWithSpanContext(life, trace.SpanContextFromContext(ctx)), t.lease) })
	}

	if why == reasonExpiredLocally {
		// Failed renewals were counted as they came (OnRenewError); a
		// validity bound that passed with a renewal still unanswered (a
		// paused server) is one more.
		e.meters.renewFailures.Add(ctx, 1, e.meters.attrs)
	}
	e.meters.transition(ctx, false)
	span.End()
	e.mu.Lock()
	e.current = nil
	e.mu.Unlock()

	attrs := []any{"fence", t.cb.Fence, "reason", string(why), "term", time.Since(t.cb.Start).Round(time.Millisecond)}
	if why == reasonNotOwned || why == reasonExpiredLocally || why == reasonRefused {
		attrs = append(attrs, "error", t.lease.Err())
	}
	if t.releaseErr != nil {
		attrs = append(attrs, "release_error", t.releaseErr)
	}
	e.log.Info("election: stepped down", attrs...)
}

// finish settles the key of a term whose OnElected has returned: released
// after a resignation, a panic or, by default, when Run ends; left to expire
// with KeepOnCancel. A lost lease is left alone here: stepDown releases it
// after OnLost, since joining its last renewal, which may be stuck behind a
// connection attempt to a server that does not answer, would delay OnLost.
func (e *Elector) finish(t *term) {
	switch {
	case t.reason == reasonResigned, t.reason == reasonPanicked,
		t.reason == reasonContextDone && !e.cfg.KeepOnCancel:
		t.releaseErr = e.release(t)
	case t.reason == reasonContextDone:
		t.lease.Stop()
	}
}

// release gives the key back with a context bounded by RetryPeriod, so a
// server that cannot be reached delays the step-down by at most that.
func (e *Elector) release(t *term) error {
	err := e.releaseKey(t.stepCtx, t.cb.Fence, t.lease.Release)
	if err != nil && (errors.Is(err, lock.ErrNotOwned) || errors.Is(err, lease.ErrLost)) {
		return nil // gone already: the leadership is released all the same
	}
	return err
}

// releaseEnded deletes the key of a term that ended without the server's say
// (expired locally, refused), retrying until the server answers or life
// ends. Failing is not an error: the key expires by its TTL.
func (e *Elector) releaseEnded(life context.Context, ls *lease.Lease) {
	ctx, span := e.tracer.startRelease(life, ls.Fence())
	err := retryRelease(ctx, ls.Release, e.cfg.RetryPeriod)
	endRelease(span, err)
	if err != nil {
		e.log.Debug("election: release of an ended term failed; the key expires by its ttl", "fence", ls.Fence(), "error", err)
	}
}

// releaseKey runs release (a lease's or an acquisition's) in an
// election.release span, retrying transport failures for at most
// RetryPeriod.
func (e *Elector) releaseKey(ctx context.Context, fence int64, release func(context.Context) error) error {
	ctx, span := e.tracer.startRelease(ctx, fence)
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RetryPeriod)
	defer cancel()
	err := retryRelease(ctx, release, 50*time.Millisecond)
	endRelease(span, err)
	return err
}

// retryRelease calls release until the server gives an answer (released, not
// owned, or refused for good), or ctx ends, pausing between tries from 5ms
// up to limit. Both Lease.Release and Held.Release may be called again after
// a transport failure, which can be as fleeting as a connection that another
// caller was setting up when its context ended.
func retryRelease(ctx context.Context, release func(context.Context) error, limit time.Duration) error {
	pause := 5 * time.Millisecond
	for {
		err := release(ctx)
		if err == nil || errors.Is(err, lock.ErrNotOwned) || errors.Is(err, lock.ErrNotHeld) ||
			errors.Is(err, lock.ErrMisconfigured) || ctx.Err() != nil {
			return err
		}
		if !sleep(ctx, pause) {
			return err
		}
		pause = min(2*pause, limit)
	}
}
