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
	"github.com/cenkalti/backoff/v4"
	"github.com/valkey-io/valkey-go"
)

// DefaultFallbackInterval is how often Watch re-reads the leader when
// nothing else made it look: it only covers notifications lost while the
// subscription was down and changes made outside baton (an operator deleting
// the key).
const DefaultFallbackInterval = 5 * time.Second

// ObserveOption configures LeaderOf and Watch.
type ObserveOption func(*observeOptions)

type observeOptions struct {
	keyPrefix string
	fallback  time.Duration
	logger    *slog.Logger
}

// WithKeyPrefix sets the key prefix of the election, for electors configured
// with a Config.KeyPrefix other than DefaultKeyPrefix.
func WithKeyPrefix(prefix string) ObserveOption {
	return func(o *observeOptions) { o.keyPrefix = prefix }
}

// WithFallbackInterval sets how often Watch re-reads the leader when no
// event made it look; default DefaultFallbackInterval. Values <= 0 keep the
// default.
func WithFallbackInterval(d time.Duration) ObserveOption {
	return func(o *observeOptions) { o.fallback = d }
}

// WithLogger sets the logger to which Watch reports failed reads (at Warn);
// nil means slog.Default().
func WithLogger(l *slog.Logger) ObserveOption {
	return func(o *observeOptions) { o.logger = l }
}

func observeConfig(opts []ObserveOption) observeOptions {
	o := observeOptions{keyPrefix: DefaultKeyPrefix, fallback: DefaultFallbackInterval}
	for _, opt := range opts {
		opt(&o)
	}
	if o.keyPrefix == "" {
		o.keyPrefix = DefaultKeyPrefix
	}
	if o.fallback <= 0 {
		o.fallback = DefaultFallbackInterval
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return o
}

// observerLock returns the lock an observer inspects. Building a Lock makes
// no server call.
func observerLock(client valkey.Client, name, prefix string) (*lock.Lock, error) {
	if client == nil {
		return nil, errors.New("election: client must not be nil")
	}
	if name == "" {
		return nil, errors.New("election: name must not be empty")
	}
	l, err := lock.New(client, name, lock.Config{KeyPrefix: prefix})
	if err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	return l, nil
}

// LeaderOf reads the current leader of the election name in one round trip,
// without campaigning: its identity, the fencing token of its term and the
// remaining TTL of its leadership. The zero Leader means no leader.
func LeaderOf(ctx context.Context, client valkey.Client, name string, opts ...ObserveOption) (callbacks.Leader, error) {
	o := observeConfig(opts)
	l, err := observerLock(client, name, o.keyPrefix)
	if err != nil {
		return callbacks.Leader{}, err
	}
	return inspect(ctx, l)
}

func inspect(ctx context.Context, l *lock.Lock) (callbacks.Leader, error) {
	st, err := l.Inspect(ctx)
	if err != nil {
		return callbacks.Leader{}, fmt.Errorf("election: read leader of %q: %w", l.Name(), err)
	}
	return leaderFrom(st), nil
}

// leaderFrom turns what Inspect saw into a Leader.
func leaderFrom(st lock.State) callbacks.Leader {
	if !st.Held() {
		return callbacks.Leader{}
	}
	return callbacks.Leader{Identity: identityOf(st.Token), Fence: st.Fence, TTL: st.TTL}
}

// Watch follows the leader of the election name until ctx ends, calling fn
// with the current leader first (the zero Leader when there is none) and
// then on every change of leader (identity or term), including to no
// leader, in the order observed. fn runs on Watch's goroutine, one call at a
// time; a slow fn delays later observations but loses no change that is
// still visible when it returns. Transitions shorter than a round trip may
// be observed as one change.
//
// Watch does not poll. It subscribes to the election's channel, on which
// electors publish every acquisition and release (their locks announce: see
// lock.Config.Announce), and re-reads the leader on
// each message; it re-reads at the moment the leader's TTL runs out, since
// an expiry is not published; and it re-reads every fallback interval
// (WithFallbackInterval) for anything else. Transient read errors are logged
// and retried with backoff, the first at Warn and the rest at Debug until a
// read succeeds again (logged at Info: "read leader again"). A refused
// subscription is logged once and Watch goes on reading on its fallback pace
// and at the leader's TTL.
//
// A leader whose fence is lower than one Watch already reported is reported
// with Stale set and logged at Warn: the server went back in time (a
// failover that lost writes, a restart without data). See callbacks.Leader.
//
// Watch returns nil when ctx ends, after every goroutine it started has
// exited. It returns an error for invalid arguments, at once, and one
// wrapping lock.ErrMisconfigured when the server refuses to show the leader
// (a missing +multi, +get or key permission) several reads in a row.
func Watch(ctx context.Context, client valkey.Client, name string, fn func(callbacks.Leader), opts ...ObserveOption) error {
	if fn == nil {
		return errors.New("election: watch function must not be nil")
	}
	o := observeConfig(opts)
	l, err := observerLock(client, name, o.keyPrefix)
	if err != nil {
		return err
	}
	if err := newObserver(l, o.fallback, o.logger, fn).run(ctx); err != nil {
		return fmt.Errorf("election: watch %q: %w", name, err)
	}
	return nil
}

// observer follows the leader of one election for Watch and for a running
// Elector. run reads the server; learned may be called from any goroutine.
type observer struct {
	lock     *lock.Lock
	fallback time.Duration // re-read pace while the subscription is confirmed
	unheard  time.Duration // re-read pace while it is not: fallback, unless an elector shortens it
	log      *slog.Logger
	report   func(callbacks.Leader)
	pokes    chan struct{} // buffered 1: re-read soon

	// free, when set (by a running Elector, before run starts), is called
	// whenever the leadership may be free: a release was published, the
	// subscription was (re)established, or a read found no leader. It must
	// not block.
	free func()

	// reportMu serialises reports, so that a leader learned outside run (an
	// elector's own election) is never followed by the result of a read
	// that was sent before it.
	reportMu sync.Mutex
	seq      uint64           // guarded by reportMu: bumped by learned
	last     callbacks.Leader // guarded by reportMu: last reported
	have     bool             // guarded by reportMu: whether last is set
	highest  int64            // guarded by reportMu: highest fence reported

	subRefused atomic.Bool // a refused subscription was logged
	subbed     atomic.Bool // the subscription is confirmed and has not ended since
}

func newObserver(l *lock.Lock, fallback time.Duration, log *slog.Logger, report func(callbacks.Leader)) *observer {
	return &observer{lock: l, fallback: fallback, unheard: fallback, log: log, report: report, pokes: make(chan struct{}, 1)}
}

// pace is the time until the next fallback read: shorter while releases go
// unheard, if an elector asked for it.
func (o *observer) pace() time.Duration {
	if o.subbed.Load() {
		return o.fallback
	}
	return o.unheard
}

// mayBeFree tells the elector, if any, that the leadership may be free.
func (o *observer) mayBeFree() {
	if o.free != nil {
		o.free()
	}
}

// poke makes run re-read the leader. It never blocks.
func (o *observer) poke() {
	select {
	case o.pokes <- struct{}{}:
	default:
	}
}

// learned reports a leader known without reading the server, such as the
// elector's own election, and makes run discard the read in flight.
func (o *observer) learned(l callbacks.Leader) {
	o.reportMu.Lock()
	o.seq++
	o.consider(l)
	o.reportMu.Unlock()
	o.poke()
}

// consider reports l if it differs from the last leader reported; the first
// leader is always reported. A leader whose fence is below the highest one
// reported is marked stale. o.reportMu must be held.
func (o *observer) consider(l callbacks.Leader) {
	if o.have && o.last.Same(l) {
		return
	}
	if !l.None() {
		if l.Fence < o.highest {
			l.Stale = true
			o.log.Warn("election: the server names a leader older than one already seen: it went back in time (a failover that lost writes, or a restart without data); that term may have ended",
				"name", o.lock.Name(), "leader", l.Identity, "fence", l.Fence, "highest_fence_seen", o.highest)
		} else {
			o.highest = l.Fence
		}
	}
	o.last, o.have = l, true
	o.report(l)
}

// run reports the leader until ctx ends, then waits for its subscription
// goroutine. It returns nil then, or an error wrapping lock.ErrMisconfigured
// once maxRefusals reads in a row were refused for good.
func (o *observer) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, stop := context.WithCancel(ctx)
	defer stop() // before wg.Wait: the subscription must end too
	wg.Go(func() { o.subscribe(ctx) })

	bo := newBackoff(o.fallback)
	expiry := time.NewTimer(time.Hour)
	expiry.Stop()
	defer expiry.Stop()
	next := time.NewTimer(o.fallback)
	defer next.Stop()
	failures, refusals := 0, 0

	for {
		o.reportMu.Lock()
		seq := o.seq
		o.reportMu.Unlock()
		// A read is bounded so that a hung server delays it by at most one
		// fallback interval; the next one goes out then.
		rctx, cancel := context.WithTimeout(ctx, o.fallback)
		st, err := o.lock.Inspect(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			wait := bo.NextBackOff()
			failures++
			if errors.Is(err, lock.ErrMisconfigured) {
				if refusals++; refusals >= maxRefusals {
					o.log.Error("election: the server refuses to show the leader; giving up", "name", o.lock.Name(), "error", err)
					return err
				}
			} else {
				refusals = 0
			}
			level := slog.LevelDebug
			if failures == 1 {
				level = slog.LevelWarn
			}
			o.log.Log(ctx, level, "election: read leader failed; retrying", "name", o.lock.Name(), "error", err, "retry_in", wait)
			next.Reset(wait)
		default:
			if failures > 0 {
				o.log.Info("election: read leader again", "name", o.lock.Name(), "failed_reads", failures)
			}
			failures, refusals = 0, 0
			bo.Reset()
			l := leaderFrom(st)
			o.reportMu.Lock()
			stale := o.seq != seq
			if !stale {
				o.consider(l)
			}
			o.reportMu.Unlock()
			if stale {
				continue // a newer leader was learned while reading: read again
			}
			if l.None() {
				o.mayBeFree()
			}
			if l.None() || st.TTL <= 0 {
				expiry.Stop()
			} else {
				// A millisecond late, so the key has expired when we look.
				expiry.Reset(st.TTL + time.Millisecond)
			}
			next.Reset(o.pace())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-o.pokes:
		case <-expiry.C:
		case <-next.C:
		}
	}
}

// subscribe pokes the observer on every acquisition and release published
// on the election's channel, and each time the subscription is
// (re)established, since changes made while it was down went unheard. A
// release and a new subscription also tell a campaigning elector at once,
// without waiting for the read: a handoff costs the standby no extra round
// trip. It returns when ctx ends.
func (o *observer) subscribe(ctx context.Context) {
	o.lock.Follow(ctx, func(ev lock.Event) {
		if ev.Kind == lock.Unsubscribed {
			if o.subbed.Swap(false) {
				// From now on the reads are all there is: read at once,
				// and then at the pace for unheard releases.
				o.poke()
			}
			if errors.Is(ev.Err, lock.ErrMisconfigured) && o.subRefused.CompareAndSwap(false, true) {
				o.log.Warn("election: the server refuses the subscription; following the leader by reads only (at its TTL and every fallback interval)",
					"name", o.lock.Name(), "error", ev.Err)
			}
			return
		}
		if ev.Kind == lock.Subscribed {
			o.subbed.Store(true)
		}
		o.subRefused.Store(false)
		o.poke()
		if ev.Kind != lock.Acquired {
			o.mayBeFree()
		}
	})
}

// newBackoff returns an exponential backoff for retry loops that run until
// their ctx ends: it never gives up (backoff v4's default MaxElapsedTime of
// 15 minutes would) and never waits longer than limit.
func newBackoff(limit time.Duration) *cappedBackoff {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(min(50*time.Millisecond, limit)),
		backoff.WithMaxInterval(limit),
		backoff.WithMaxElapsedTime(0),
	)
	return &cappedBackoff{b: b, limit: limit}
}

// cappedBackoff caps the randomized intervals of an ExponentialBackOff, which
// may otherwise exceed MaxInterval by the randomization factor.
type cappedBackoff struct {
	b     *backoff.ExponentialBackOff
	limit time.Duration
}

func (c *cappedBackoff) NextBackOff() time.Duration {
	d := c.b.NextBackOff()
	if d == backoff.Stop || d > c.limit {
		return c.limit
	}
	return d
}

func (c *cappedBackoff) Reset() { c.b.Reset() }
