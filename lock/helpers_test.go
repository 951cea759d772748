package lock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/valkey-io/valkey-go"
)

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

func (e *env) lock(t *testing.T, name string, cfg Config) *Lock {
	t.Helper()
	l, err := New(e.client, name, cfg)
	if err != nil {
		t.Fatalf("New(%q, %+v) = %v", name, cfg, err)
	}
	return l
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAcquire(t *testing.T, l *Lock, opts ...AcquireOption) *Held {
	t.Helper()
	h, err := l.TryAcquire(ctxT(t), opts...)
	if err != nil {
		t.Fatalf("TryAcquire(%q) = %v", l.Name(), err)
	}
	return h
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s = %v; want %v", what, err, want)
	}
}

// queued reports how many Acquire calls are waiting on l.
func queued(l *Lock) int {
	l.queue.mu.Lock()
	defer l.queue.mu.Unlock()
	return len(l.queue.waiters)
}

// awaitQueued waits until n Acquire calls wait on l. It watches the queue
// itself (an event it owns) rather than sleeping a guessed time.
func awaitQueued(t *testing.T, l *Lock, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for queued(l) != n {
		if time.Now().After(deadline) {
			t.Fatalf("queued = %d; want %d", queued(l), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// retryUnavailable retries op while it fails with ErrUnavailable, as a caller
// would after a reconnect: a client learns of a broken connection from the
// first command sent on it.
func retryUnavailable(t *testing.T, op func() error) error {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := op()
		if !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// contend runs perLock goroutines on each of locks (the same name, as separate
// processes would hold it), each looping Acquire + Release rounds times. It
// fails the test if two ever hold at once or a worker falls short, and returns
// which Lock held, acquisition by acquisition.
func contend(t *testing.T, locks []*Lock, perLock, rounds int) (order []int) {
	t.Helper()
	var inside, maxInside atomic.Int32
	var mu sync.Mutex
	var wg sync.WaitGroup
	counts := make([]int, len(locks)*perLock)
	for i, l := range locks {
		for k := range perLock {
			w := i*perLock + k
			wg.Go(func() {
				for range rounds {
					h, err := l.Acquire(ctxT(t))
					if err != nil {
						t.Error(err)
						return
					}
					if n := inside.Add(1); n > maxInside.Load() {
						maxInside.Store(n)
					}
					mu.Lock()
					order = append(order, i)
					counts[w]++
					mu.Unlock()
					inside.Add(-1)
					if err := h.Release(ctxT(t)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if maxInside.Load() != 1 {
		t.Fatalf("max holders at once = %d; want 1", maxInside.Load())
	}
	for w, c := range counts {
		if c != rounds {
			t.Fatalf("worker %d acquired %d times; want %d", w, c, rounds)
		}
	}
	return order
}
