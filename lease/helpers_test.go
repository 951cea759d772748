package lease

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/baton-dev/baton/lock"
	"github.com/valkey-io/valkey-go"
)

// waitLimit bounds every wait for an event in these tests. Events are
// expected within a few hundred milliseconds; the limit only turns a hang
// into a failure.
const waitLimit = 10 * time.Second

// env is one real server and a client for a test.
type env struct {
	srv    *valkeytest.Server
	client valkey.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := valkeytest.Start(t)
	return &env{srv: s, client: s.Client(t)}
}

// acquire takes the lock name with the given TTL on client.
func acquire(t *testing.T, client valkey.Client, name string, ttl time.Duration) *lock.Held {
	t.Helper()
	l, err := lock.New(client, name, lock.Config{TTL: ttl})
	if err != nil {
		t.Fatalf("lock.New(%q, ttl %v) = %v", name, ttl, err)
	}
	h, err := l.TryAcquire(ctxT(t))
	if err != nil {
		t.Fatalf("TryAcquire(%q) = %v", name, err)
	}
	return h
}

// start builds a lease and stops it when the test ends, so that no renewal
// outlives the test.
func start(t *testing.T, h *lock.Held, cfg Config) *Lease {
	t.Helper()
	return startWith(t, h, cfg, nil)
}

func startWith(t *testing.T, h *lock.Held, cfg Config, reacquire func(context.Context) error) *Lease {
	t.Helper()
	l, err := newLease(h, cfg, reacquire)
	if err != nil {
		t.Fatalf("New(%q, %+v) = %v", h.Name(), cfg, err)
	}
	t.Cleanup(l.Stop)
	return l
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// renewals records the send times that OnRenew reports and lets a test wait
// for them as events.
type renewals struct {
	mu   sync.Mutex
	sent []time.Time
	ch   chan time.Time
}

func newRenewals() *renewals { return &renewals{ch: make(chan time.Time, 1024)} }

func (r *renewals) onRenew(sent time.Time) {
	r.mu.Lock()
	r.sent = append(r.sent, sent)
	r.mu.Unlock()
	select {
	case r.ch <- sent:
	default:
	}
}

// await waits for the next n renewals.
func (r *renewals) await(t *testing.T, n int) {
	t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for i := range n {
		select {
		case <-r.ch:
		case <-limit.C:
			t.Fatalf("renewal %d of %d did not come within %v", i+1, n, waitLimit)
		}
	}
}

func (r *renewals) all() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.sent...)
}

func (r *renewals) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sent)
}

// awaitDone waits for the lease to end and returns the local time at which
// the test saw it end.
func awaitDone(t *testing.T, l *Lease) time.Time {
	t.Helper()
	select {
	case <-l.Done():
		return time.Now()
	case <-time.After(waitLimit):
		t.Fatalf("lease did not end within %v (Err() = %v)", waitLimit, l.Err())
		return time.Time{}
	}
}

func wantIs(t *testing.T, what string, err error, want ...error) {
	t.Helper()
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Fatalf("%s = %v; want an error matching %v", what, err, w)
		}
	}
}

func wantNotIs(t *testing.T, what string, err error, unwanted ...error) {
	t.Helper()
	for _, w := range unwanted {
		if errors.Is(err, w) {
			t.Fatalf("%s = %v; want no match for %v", what, err, w)
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// syncBuffer is a bytes.Buffer for a slog handler written from renewal
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
