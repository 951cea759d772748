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
	"github.com/baton-dev/baton/lock"
	"github.com/valkey-io/valkey-go"
)

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
	l, err := lock.New(client, cfg.Name, cfg.LockConfig())
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
	obs := newObserver(e.lock, e.fallback, e.log, func(l callbacks.Leader) {
		e.observe(l, true) // for HealthHandler
		d.NewLeader(l)
	})
	defer e.observe(callbacks.Leader{}, false)
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

	e.campaignLoop(ctx, life, d, obs, r)

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
