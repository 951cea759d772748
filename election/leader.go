package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/lock"
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
	// It only reads: its TTL is never used.
	l, err := lock.New(client, name, lock.Config{KeyPrefix: prefix, TTL: lock.NoExpiry})
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
// lock.Config.Announce). An acquisition's message names the new leader and
// its TTL, and a handover announces the new leader before the old one's
// release, so a change of leader costs Watch no read when it happens (a
// handover between processes costs one, when its announced claim window
// ends: the claim is not announced); it reads the leader
// after a release with no successor announced, after each (re)established
// subscription, at the moment the leader's TTL runs out (an expiry is not
// published), and every fallback interval
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
	// The observer reports from its own goroutines, the subscription's
	// among them, which must never wait for fn: reports queue, and fn runs
	// here.
	var (
		mu      sync.Mutex
		pending []callbacks.Leader
		ready   = make(chan struct{}, 1)
	)
	report := func(l callbacks.Leader) {
		mu.Lock()
		pending = append(pending, l)
		mu.Unlock()
		select {
		case ready <- struct{}{}:
		default:
		}
	}
	deliver := func() {
		mu.Lock()
		batch := pending
		pending = nil
		mu.Unlock()
		for _, l := range batch {
			if ctx.Err() != nil {
				return
			}
			fn(l)
		}
	}
	done := make(chan error, 1)
	go func() { done <- newObserver(l, o.fallback, o.logger, report).run(ctx) }()
	for {
		select {
		case <-ready:
			deliver()
		case err := <-done:
			deliver()
			if err != nil {
				return fmt.Errorf("election: watch %q: %w", name, err)
			}
			return nil
		}
	}
}
