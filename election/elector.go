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

// maxRefusals is how many campaign attempts in a row the server may refuse
// for good (lock.ErrMisconfigured) before Run gives up and returns the error.
// More than one, so that a reply seen once during a reconfiguration (an ACL
// being rewritten, a node joining a cluster) does not end Run; few, so that
// a missing permission is reported within a few retry periods, not retried
// forever.
const maxRefusals = 3

// Elector campaigns for the leadership of one election and reports its
// transitions through the configured callbacks. Build it with New and call
// Run; every other method is safe to call concurrently with Run and with
// each other, from any goroutine, callbacks included.
type Elector struct {
	cfg      Config
	lock     *lock.Lock
	log      *slog.Logger
	tracer   tracer
	meters   *meters
	fallback time.Duration // the observer's fallback re-read interval

	running   atomic.Bool  // a Run is in progress
	campaigns atomic.Int64 // campaigns started, for tests and benchmarks

	mu           sync.Mutex       // guards the fields below
	current      *term            // the term led or being stepped down from; nil while campaigning
	observed     callbacks.Leader // the leader Run's observer last reported
	haveObserved bool             // observed is set: Run runs and has read
}

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
		// Every acquisition and release is published: watchers follow the
		// leader by these events, and standbys wake on the releases (they
		// never wait in lock.Acquire, so they never register as waiters).
		Announce:       true,
		TTL:            cfg.TTL,
		KeyPrefix:      cfg.KeyPrefix,
		TracerProvider: cfg.TracerProvider,
		Logger:         cfg.Logger,
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

// run is the state of one Run call that callbacks and the observer reach.
type run struct {
	stop context.CancelCauseFunc // ends the campaign loop, with why

	mu       sync.Mutex
	panicked *callbacks.Panic // the first callback panic, for CrashOnPanic
	failure  error            // a permanent error that ended Run

	releases sync.WaitGroup // releases of ended terms still being retried
}

// fail ends Run with err, a permanent failure, unless one came first.
func (r *run) fail(err error) {
	r.mu.Lock()
	if r.failure == nil {
		r.failure = err
	}
	r.mu.Unlock()
	r.stop(err)
}

// Run campaigns for leadership until ctx ends. When elected it starts
// OnElected and keeps the leadership alive; when the leadership is lost or
// resigned, or OnElected panics, it steps down (OnElected's ctx is cancelled
// with the reason as its cause, OnElected returns, the key is settled,
// OnLost runs) and campaigns again. Meanwhile it reports every change of
// leader to OnNewLeader.
//
// Before campaigning it asks the server whether this client has every
// permission the election needs (lock.Lock.Check). Run returns:
//   - ctx.Err() once ctx has ended: a leader steps down as above and
//     releases the leadership unless Config.KeepOnCancel is set;
//   - an error wrapping lock.ErrMisconfigured, after stepping down, when the
//     server refuses for good: at once for a missing permission found by
//     the check, after maxRefusals refused campaign attempts in a row, or
//     when it refuses to show the leader;
//   - ErrRunning at once if another Run of e has not returned yet.
//
// Transient failures (the server unreachable, READONLY or LOADING during a
// failover) never end Run: they are retried with backoff.
//
// With Config.CrashOnPanic, a panic in a callback ends Run as ctx would, and
// Run then panics with the same value once the leadership is released.
//
// Run returns once every goroutine it started has exited and every callback
// has returned. An Elector may Run again after Run returned.
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

	if err := e.lock.Check(ctx); err != nil {
		switch {
		case errors.Is(err, lock.ErrMisconfigured):
			e.log.Error("election: the server refuses what the election needs", "error", err)
			return fmt.Errorf("election %q: %w", e.cfg.Name, err)
		case ctx.Err() != nil:
			return ctx.Err()
		}
		e.log.Warn("election: could not check permissions; campaigning anyway", "error", err)
	}

	caller := ctx
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	r := &run{stop: stop}
	d := callbacks.NewDispatcher(e.dispatched(),
		callbacks.WithLogger(e.log),
		callbacks.WithPanicHandler(func(p callbacks.Panic) { e.panicked(r, p) }),
		callbacks.WithBeforeLost(e.settle),
	)
	// free wakes the campaign when the leadership may be free; the observer,
	// which follows the leader anyway, is what notices.
	free := make(chan struct{}, 1)
	obs := newObserver(e.lock, e.fallback, e.log, func(l callbacks.Leader) {
		e.observe(l, true) // for HealthHandler
		d.NewLeader(l)
	})
	defer e.observe(callbacks.Leader{}, false)
	// Without a subscription (refused, or down) a release goes unheard and
	// only a read finds the leadership free: read often enough that a
	// standby sees a resigned leader's release before the resigner's pause
	// of RetryPeriod ends and it competes again.
	obs.unheard = min(e.fallback, max(e.cfg.RetryPeriod/2, time.Millisecond))
	obs.free = func() {
		select {
		case free <- struct{}{}:
		default:
		}
	}
	// The observer and the releases of ended terms outlive ctx until the
	// last step-down is over: valkey-go shares a connection being set up
	// among its callers, so a read cancelled with ctx could fail the
	// release that follows.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := obs.run(life); err != nil {
			r.fail(fmt.Errorf("election %q: %w", e.cfg.Name, err))
		}
	})

	e.campaignLoop(ctx, life, d, obs, r, free)

	endLife()
	wg.Wait()
	r.releases.Wait()
	d.Close()

	if r.panicked != nil && e.cfg.CrashOnPanic {
		panic(r.panicked.Value)
	}
	if r.failure != nil {
		return r.failure
	}
	return caller.Err()
}

// panicked is the dispatcher's panic handler: a panic in OnElected ends its
// term at once (Run then backs off before campaigning again); with
// CrashOnPanic any callback's panic ends Run.
func (e *Elector) panicked(r *run, p callbacks.Panic) {
	r.mu.Lock()
	first := r.panicked == nil
	if first {
		r.panicked = &p
	}
	r.mu.Unlock()
	if p.Callback == "OnElected" {
		if t := e.termOf(p.Term); t != nil {
			t.panicOnce.Do(func() { close(t.panic) })
		}
	}
	if e.cfg.CrashOnPanic && first {
		r.stop(fmt.Errorf("election: %s panicked: %v", p.Callback, p.Value))
	}
}

// campaignLoop campaigns, leads, steps down and campaigns again until ctx
// ends or the server refuses for good. It returns with no term active.
// life outlives ctx until Run has stepped down: releases of ended terms that
// must be retried use it.
func (e *Elector) campaignLoop(ctx, life context.Context, d *callbacks.Dispatcher, obs *observer, r *run, free <-chan struct{}) {
	parent := trace.SpanContextFromContext(ctx)
	bo := newBackoff(e.cfg.RetryPeriod)
	panics := newPanicBackoff(e.cfg.RetryPeriod, e.cfg.TTL)
	for {
		h, start, attempts, err := e.campaign(ctx, bo, free)
		if err != nil {
			r.fail(fmt.Errorf("election %q: %w", e.cfg.Name, err))
			return
		}
		if h == nil { // ctx ended
			return
		}
		if ctx.Err() != nil { // acquired just as Run was told to stop
			_ = e.releaseKey(context.WithoutCancel(ctx), h.Fence(), h.Release)
			return
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
		why := e.await(ctx, t)
		e.stepDown(d, t, why, life, r)
		obs.poke()
		if ctx.Err() != nil {
			return
		}
		pause := time.Duration(0)
		switch why {
		case reasonResigned:
			// Let a standby win before competing again.
			pause = e.cfg.RetryPeriod
		case reasonPanicked:
			// A panic that happens every time must not turn into a
			// leadership that bounces as fast as candidates can win it.
			pause = panics.next()
			e.log.Warn("election: OnElected panicked; pausing before campaigning again", "pause", pause)
		default:
			panics.reset()
		}
		if pause > 0 && !sleep(ctx, pause) {
			return
		}
	}
}

// campaign blocks until it holds the lock or ctx ends. It attempts at once,
// and then each time free says the leadership may be free: a release was
// published, the observer found no leader (at the leader's TTL, or on its
// fallback read), or the subscription was re-established. While someone
// else leads it sends nothing and keeps no span open: each attempt is one
// lock.TryAcquire in its own election.acquire span. Transient errors (the
// server unreachable, mostly) are retried with a backoff capped at
// RetryPeriod, forever; errors the server will keep returning
// (lock.ErrMisconfigured) end the campaign after maxRefusals in a row. It
// returns when it started, and how many attempts it made. The error is nil
// when ctx ended.
func (e *Elector) campaign(ctx context.Context, bo *cappedBackoff, free <-chan struct{}) (*lock.Held, time.Time, int, error) {
	e.campaigns.Add(1)
	start := time.Now()
	refusals := 0
	for attempts := 1; ; attempts++ {
		// A wake-up that came before this attempt is answered by it.
		select {
		case <-free:
		default:
		}
		actx, span := e.tracer.startAcquire(ctx, attempts)
		h, err := e.lock.TryAcquire(actx, lock.WithToken(Token(e.cfg.Identity)))
		endAcquire(span, h, err)
		switch {
		case err == nil:
			bo.Reset()
			return h, start, attempts, nil
		case ctx.Err() != nil:
			return nil, start, attempts, nil
		case errors.Is(err, lock.ErrNotAcquired):
			// Someone else leads: wait, without a span, until the
			// leadership may be free.
			refusals = 0
			bo.Reset()
			select {
			case <-ctx.Done():
				return nil, start, attempts, nil
			case <-free:
			}
			continue
		}
		wait := bo.NextBackOff()
		if errors.Is(err, lock.ErrMisconfigured) {
			if refusals++; refusals >= maxRefusals {
				e.log.Error("election: the server refuses to let this candidate campaign; giving up", "error", err, "attempts", refusals)
				return nil, start, attempts, err
			}
			e.log.Error("election: the server refused the campaign; retrying a few times", "error", err, "retry_in", wait)
		} else {
			refusals = 0
			e.log.Warn("election: campaign failed; retrying", "error", err, "retry_in", wait)
		}
		if !sleep(ctx, wait) {
			return nil, start, attempts, nil
		}
	}
}

// await waits for the end of a term and says why it ended.
func (e *Elector) await(ctx context.Context, t *term) reason {
	var r reason
	select {
	case <-t.lease.Done():
	case <-t.resign:
		r = reasonResigned
	case <-t.panic:
		r = reasonPanicked
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

// dispatched wraps the user's OnElected so that it runs with the term's own
// context, which the elector cancels with the reason the term ended.
func (e *Elector) dispatched() callbacks.Callbacks {
	cb := e.cfg.Callbacks
	user := cb.OnElected
	cb.OnElected = func(ctx context.Context, tm callbacks.Term) {
		t := e.termOf(tm)
		if t == nil { // cannot happen: the loop makes the term current first
			user(ctx, tm)
			return
		}
		ctx, cancel := t.work(ctx)
		defer cancel()
		user(context.WithValue(ctx, termKey{}, t), tm)
	}
	return cb
}

// settle is the dispatcher's BeforeLost hook: the term's OnElected has
// returned, so its key can be settled before OnLost runs.
func (e *Elector) settle(tm callbacks.Term) {
	if t := e.termOf(tm); t != nil {
		e.finish(t)
	}
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

// Resign gives up the leadership, if this candidate leads, and returns once
// the step-down has begun: OnElected's ctx is cancelled (its cause is
// ErrResigned) and IsLeader reports false. It does not wait for OnElected to
// return, so any goroutine may call it with any ctx, OnElected itself and
// the goroutines OnElected waits for included. Once OnElected has returned,
// the key is released (a waiting standby wins about one round trip later)
// and OnLost runs; the elector then pauses for RetryPeriod before
// campaigning again, so that it does not win straight back.
//
// Resign returns nil, also when this candidate does not lead or is already
// stepping down, or ctx's error if ctx ends before the step-down begins.
// To wait for the release too, wait for OnLost, or end Run's ctx and wait
// for Run to return.
func (e *Elector) Resign(ctx context.Context) error {
	e.mu.Lock()
	t := e.current
	e.mu.Unlock()
	if t == nil || !t.isLeading() {
		return nil
	}
	t.resignOnce.Do(func() { close(t.resign) })
	select {
	case <-t.stepping:
		return nil
	case <-ctx.Done():
		select {
		case <-t.stepping: // OnElected's own ctx, cancelled by this very step-down
			return nil
		default:
			return fmt.Errorf("election: resign: %w", context.Cause(ctx))
		}
	}
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

// panicBackoff paces campaigns after terms that ended in a panic: the first
// pause is RetryPeriod, each further one in a row doubles, up to the larger
// of the TTL and 30 seconds.
type panicBackoff struct {
	first, limit, cur time.Duration
}

func newPanicBackoff(retry, ttl time.Duration) *panicBackoff {
	return &panicBackoff{first: retry, limit: max(ttl, 30*time.Second)}
}

func (p *panicBackoff) next() time.Duration {
	if p.cur == 0 {
		p.cur = p.first
	} else {
		p.cur = min(2*p.cur, p.limit)
	}
	return p.cur
}

func (p *panicBackoff) reset() { p.cur = 0 }
