package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/lease"
	"github.com/baton-dev/baton/lock"
	"github.com/valkey-io/valkey-go"
	"go.opentelemetry.io/otel/trace"
)

// Elector campaigns for the leadership of one election and reports its
// transitions through the configured callbacks. Build it with New and call
// Run; every other method is safe to call concurrently with Run and with
// each other, from any goroutine.
type Elector struct {
	cfg      Config
	lock     *lock.Lock
	log      *slog.Logger
	tracer   tracer
	meters   *meters
	fallback time.Duration // the observer's fallback re-read interval

	running   atomic.Bool  // a Run is in progress
	campaigns atomic.Int64 // campaigns started, for tests and benchmarks

	mu      sync.Mutex // guards current
	current *term      // the term led or being stepped down from; nil while campaigning
}

// term is one leadership term of an Elector, from the acquisition to the end
// of its step-down.
type term struct {
	cb     callbacks.Term
	lease  *lease.Lease
	parent trace.SpanContext // Run's ctx span context: the parent of the term's spans
	span   trace.SpanContext // the campaign span, which the term's later spans link to

	resign     chan struct{} // closed by the first Resign
	resignOnce sync.Once
	finished   chan struct{} // closed once the key was released, kept or found lost
	finishOnce sync.Once

	// reason and stepCtx are written by the campaign loop before it asks the
	// dispatcher to end the term, and read by finish after OnElected's ctx
	// was cancelled: the cancellation orders them.
	reason  reason
	stepCtx context.Context

	// releaseErr is written by finish before finished is closed.
	releaseErr error

	mu        sync.Mutex // guards the fields below
	leading   bool       // from the election until the step-down begins
	lastRenew time.Time  // when the last successful renewal, or the acquisition, was sent
}

// termKey marks the ctx given to OnElected, so that Resign called with it
// knows it must not wait for OnElected to return.
type termKey struct{}

// New returns an Elector for cfg on client, which the caller keeps owning
// (the Elector never closes it). New copies cfg, fills in the defaults and
// validates it: see Config for the rules. It makes no server call.
func New(client valkey.Client, cfg Config) (*Elector, error) {
	if client == nil {
		return nil, errors.New("election: client must not be nil")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l, err := lock.New(client, cfg.Name, lock.Config{
		Announce:       true, // watchers follow the leader through the lock's events
		TTL:            cfg.TTL,
		RetryInterval:  cfg.RetryPeriod,
		KeyPrefix:      cfg.KeyPrefix,
		TracerProvider: cfg.TracerProvider,
	})
	if err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	m, err := newMeters(cfg)
	if err != nil {
		return nil, err
	}
	return &Elector{
		cfg:      cfg,
		lock:     l,
		log:      cfg.Logger.With("election", cfg.Name, "identity", cfg.Identity),
		tracer:   newTracer(cfg),
		meters:   m,
		fallback: min(cfg.TTL, DefaultFallbackInterval),
	}, nil
}

// Name returns the election's name.
func (e *Elector) Name() string { return e.cfg.Name }

// Identity returns this candidate's identity, as configured or defaulted.
func (e *Elector) Identity() string { return e.cfg.Identity }

// Run campaigns for leadership until ctx ends. When elected it starts
// OnElected and keeps the leadership alive; when the leadership is lost or
// resigned it steps down (OnElected's ctx is cancelled, OnElected returns,
// OnLost runs) and campaigns again. Meanwhile it reports every change of
// leader to OnNewLeader.
//
// When ctx ends, a leader steps down as above and releases the leadership
// unless Config.KeepOnCancel is set. Run returns ctx.Err() once every
// goroutine it started has exited and every callback has returned. It
// returns ErrRunning at once if another Run of e has not returned yet. An
// Elector may Run again after Run returned.
func (e *Elector) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer e.running.Store(false)
	reg, err := e.meters.register(e)
	if err != nil {
		return err
	}
	defer func() { _ = reg.Unregister() }() // fails only if the SDK already shut down

	d := callbacks.NewDispatcher(e.dispatched(), callbacks.WithLogger(e.log))
	obs := newObserver(e.lock, e.fallback, e.log, d.NewLeader)
	// The observer outlives ctx until the last step-down is over: valkey-go
	// shares a connection being set up among its callers, so a read
	// cancelled with ctx could fail the release that follows.
	octx, stopObserving := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { obs.run(octx) })

	e.campaignLoop(ctx, d, obs)

	stopObserving()
	wg.Wait()
	d.Close()
	return ctx.Err()
}

// campaignLoop campaigns, leads, steps down and campaigns again until ctx
// ends. It returns with no term active.
func (e *Elector) campaignLoop(ctx context.Context, d *callbacks.Dispatcher, obs *observer) {
	parent := trace.SpanContextFromContext(ctx)
	bo := newBackoff(e.cfg.RetryPeriod)
	for {
		h, start, attempts, err := e.campaign(ctx, bo)
		if err != nil {
			return // ctx ended
		}
		t, err := e.begin(ctx, parent, h, start, attempts)
		if err != nil {
			// The acquisition cannot make a term: its reply came after its
			// validity had passed (a server that was paused or very slow),
			// or the lease refused it. Give the key back and campaign again.
			e.log.Warn("election: acquired the lock but cannot lead; released it", "fence", h.Fence(), "error", err)
			if !errors.Is(err, lease.ErrLost) { // begin released a lost lease itself
				_ = e.releaseKey(context.WithoutCancel(ctx), h.Fence(), h.Release)
			}
			if !sleep(ctx, bo.NextBackOff()) {
				return
			}
			continue
		}
		// Report the own election now, not when the observer next reads:
		// a short term could end before that.
		obs.learned(callbacks.Leader{Identity: t.cb.Identity, Fence: t.cb.Fence, TTL: e.cfg.TTL})
		d.Elected(t.cb)
		r := e.await(ctx, t)
		e.stepDown(d, t, r)
		obs.poke()
		if ctx.Err() != nil {
			return
		}
		// After resigning, let a standby win before competing again.
		if r == reasonResigned && !sleep(ctx, e.cfg.RetryPeriod) {
			return
		}
	}
}

// campaign blocks until it holds the lock or ctx ends. lock.Acquire waits
// without polling; errors (the server unreachable, mostly) are retried with a
// backoff capped at RetryPeriod. It returns when it started, and how many
// Acquire calls it made.
func (e *Elector) campaign(ctx context.Context, bo *cappedBackoff) (*lock.Held, time.Time, int, error) {
	e.campaigns.Add(1)
	start := time.Now()
	for attempts := 1; ; attempts++ {
		actx, span := e.tracer.startAcquire(ctx)
		h, err := e.lock.Acquire(actx, lock.WithToken(termToken(e.cfg.Identity)))
		endAcquire(span, h, err)
		if err == nil {
			bo.Reset()
			return h, start, attempts, nil
		}
		if ctx.Err() != nil {
			return nil, start, attempts, ctx.Err()
		}
		wait := bo.NextBackOff()
		e.log.Warn("election: campaign failed; retrying", "error", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return nil, start, attempts, ctx.Err()
		}
	}
}

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
		finished:  make(chan struct{}),
		leading:   true,
		lastRenew: h.AcquiredAt(),
	}
	ls, err := lease.New(h, lease.Config{
		RenewInterval: e.cfg.RetryPeriod,
		Validity:      e.cfg.RenewDeadline,
		// The gap between TTL and RenewDeadline is the election's margin
		// for clock-rate differences; New checked that it is positive.
		DriftMargin: e.cfg.TTL - e.cfg.RenewDeadline,
		OnRenew:     func(at time.Time) { e.renewed(t, at) },
		RenewContext: func(ctx context.Context) (context.Context, func(error)) {
			return e.tracer.startRenew(ctx, t.parent, t.span, t.cb.Fence)
		},
		OnRenewError: func(at time.Time, err error) {
			e.meters.renewFailures.Add(context.Background(), 1, e.meters.attrs)
			e.log.Debug("election: renewal failed", "fence", t.cb.Fence, "error", err)
		},
		Logger: e.log,
	})
	if err != nil {
		return nil, err
	}
	select {
	case <-ls.Done():
		// The acquisition's validity passed before its reply came: the key
		// is ours on the server but may not be for long enough to lead.
		err := ls.Err()
		e.releaseLease(ctx, ls)
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

// await waits for the end of a term and says why it ended.
func (e *Elector) await(ctx context.Context, t *term) reason {
	var r reason
	select {
	case <-t.lease.Done():
	case <-t.resign:
		r = reasonResigned
	case <-ctx.Done():
		r = reasonContextDone
	}
	// A lost lease wins a tie: there is nothing left to release.
	select {
	case <-t.lease.Done():
		r = reasonOf(t.lease.Err())
	default:
	}
	return r
}

// stepDown ends term t for reason r. The dispatcher cancels OnElected's ctx
// and waits for it to return; then, still inside the OnElected goroutine,
// finish releases the key (or lets it expire, or finds it lost), so another
// candidate can only win once this one has stopped working; then OnLost runs.
// stepDown returns once OnLost has returned.
func (e *Elector) stepDown(d *callbacks.Dispatcher, t *term, r reason) {
	t.mu.Lock()
	t.leading = false
	t.mu.Unlock()
	ctx, span := e.tracer.startStepDown(t.parent, t.span, t.cb, r)
	t.reason, t.stepCtx = r, ctx

	d.Lost()
	e.finish(t)    // in case OnElected never started
	t.lease.Stop() // joins the last renewal: OnLost has returned already
	if r == reasonExpiredLocally {
		// The key may still be ours on the server, if the server is
		// reachable again: delete it by its token so that the next leader
		// need not wait for the TTL. This waits until OnLost has returned, so
		// a server that still does not answer delays only the next campaign.
		e.releaseLease(t.stepCtx, t.lease)
	}

	if r == reasonExpiredLocally {
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

	attrs := []any{"fence", t.cb.Fence, "reason", string(r), "term", time.Since(t.cb.Start).Round(time.Millisecond)}
	if r == reasonNotOwned || r == reasonExpiredLocally {
		attrs = append(attrs, "error", t.lease.Err())
	}
	if t.releaseErr != nil {
		attrs = append(attrs, "release_error", t.releaseErr)
	}
	e.log.Info("election: stepped down", attrs...)
}

// finish settles the key of a term whose OnElected has returned: released
// after a resignation or, by default, when Run ends; left to expire with
// KeepOnCancel. A lost lease is left alone here: it renews no more, and
// joining its last renewal, which may be stuck behind a connection attempt
// to a server that does not answer, would delay OnLost; stepDown joins it
// after OnLost. It runs once per term.
func (e *Elector) finish(t *term) {
	t.finishOnce.Do(func() {
		defer close(t.finished)
		switch {
		case t.reason == reasonResigned, t.reason == reasonContextDone && !e.cfg.KeepOnCancel:
			t.releaseErr = e.release(t)
		case t.reason == reasonContextDone:
			t.lease.Stop()
		}
	})
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

// releaseLease releases a lease that has ended on its own: the key is deleted
// if the server still stores its token. Failing is not an error: the key
// expires by its TTL.
func (e *Elector) releaseLease(ctx context.Context, ls *lease.Lease) {
	if err := e.releaseKey(context.WithoutCancel(ctx), ls.Fence(), ls.Release); err != nil {
		e.log.Debug("election: release of a lost term failed; the key expires by its ttl", "fence", ls.Fence(), "error", err)
	}
}

// releaseKey runs release (a lease's or an acquisition's) in an
// election.release span, retrying transport failures for at most
// RetryPeriod.
func (e *Elector) releaseKey(ctx context.Context, fence int64, release func(context.Context) error) error {
	ctx, span := e.tracer.startRelease(ctx, fence)
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RetryPeriod)
	defer cancel()
	err := retryRelease(ctx, release)
	endRelease(span, err)
	return err
}

// retryRelease calls release until it succeeds, finds the key gone, or ctx
// ends. Both Lease.Release and Held.Release may be called again after a
// transport failure, which can be as fleeting as a connection that another
// caller was setting up when its context ended.
func retryRelease(ctx context.Context, release func(context.Context) error) error {
	pause := 5 * time.Millisecond
	for {
		err := release(ctx)
		if err == nil || errors.Is(err, lock.ErrNotOwned) || errors.Is(err, lock.ErrNotHeld) || ctx.Err() != nil {
			return err
		}
		if !sleep(ctx, pause) {
			return err
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// dispatched wraps the user's OnElected so that the term's key is settled
// right after it returns, before OnLost.
func (e *Elector) dispatched() callbacks.Callbacks {
	cb := e.cfg.Callbacks
	user := cb.OnElected
	cb.OnElected = func(ctx context.Context, tm callbacks.Term) {
		t := e.termOf(tm)
		if t == nil { // cannot happen: the loop makes the term current first
			user(ctx, tm)
			return
		}
		// Deferred so that it runs when OnElected panics too; the term's
		// work then ends, but the term goes on until the loop ends it.
		defer func() {
			<-ctx.Done()
			e.finish(t)
		}()
		user(context.WithValue(ctx, termKey{}, t), tm)
	}
	return cb
}

// termOf returns the current term if it is tm.
func (e *Elector) termOf(tm callbacks.Term) *term {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.current == nil || e.current.cb.Fence != tm.Fence {
		return nil
	}
	return e.current
}

// Resign gives up the leadership, if this candidate leads: OnElected's ctx
// is cancelled and, once OnElected has returned, the key is released (a
// blocked standby wins about one round trip later) and OnLost runs. The
// elector then pauses for RetryPeriod before campaigning again, so that it
// does not win straight back. Resign is a no-op, returning nil, when this
// candidate does not lead or is already stepping down.
//
// Resign returns once the key is released, with the release's error when it
// could not be (the key then expires at the end of its TTL), or ctx's error
// if ctx ends first. OnLost may still be running when it returns.
//
// Called with OnElected's ctx (or one derived from it), Resign only starts
// the step-down and returns nil at once: the release waits for OnElected to
// return. Resign must not be called from OnLost or OnNewLeader.
func (e *Elector) Resign(ctx context.Context) error {
	e.mu.Lock()
	t := e.current
	e.mu.Unlock()
	if t == nil || !t.isLeading() {
		return nil
	}
	t.resignOnce.Do(func() { close(t.resign) })
	if ctx.Value(termKey{}) == t {
		return nil
	}
	select {
	case <-t.finished:
		if t.reason != reasonResigned {
			return nil // lost or stopped meanwhile
		}
		if t.releaseErr != nil {
			return fmt.Errorf("election: resign: %w", t.releaseErr)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("election: resign: %w", context.Cause(ctx))
	}
}

func (t *term) isLeading() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.leading
}

// IsLeader reports whether this candidate leads: true from its election until
// its step-down begins. The server may already have moved on (see Healthy).
func (e *Elector) IsLeader() bool {
	leading, _ := e.leadership()
	return leading
}

// Term returns the current term and true while this candidate leads, or the
// zero Term and false.
func (e *Elector) Term() (callbacks.Term, bool) {
	e.mu.Lock()
	t := e.current
	e.mu.Unlock()
	if t == nil || !t.isLeading() {
		return callbacks.Term{}, false
	}
	return t.cb, true
}

// Healthy reports a leader that has stopped renewing: it returns an error
// wrapping ErrNotRenewing when this candidate leads and its last successful
// renewal (or its acquisition) was sent more than maxSilence ago, and nil
// otherwise, in particular when it does not lead. maxSilence <= 0 means
// RenewDeadline. A good value for liveness probes is a little more than
// RetryPeriod: a healthy leader renews every RetryPeriod.
func (e *Elector) Healthy(maxSilence time.Duration) error {
	leading, last := e.leadership()
	if !leading {
		return nil
	}
	if maxSilence <= 0 {
		maxSilence = e.cfg.RenewDeadline
	}
	if age := time.Since(last); age > maxSilence {
		return fmt.Errorf("%w: last renewal sent %v ago, more than %v", ErrNotRenewing, age.Round(time.Millisecond), maxSilence)
	}
	return nil
}

// leadership returns whether this candidate leads and, if so, when its last
// successful renewal was sent.
func (e *Elector) leadership() (bool, time.Time) {
	e.mu.Lock()
	t := e.current
	e.mu.Unlock()
	if t == nil {
		return false, time.Time{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.leading, t.lastRenew
}

// sleep waits for d or the end of ctx, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
