package lock

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestFencesStrictlyIncrease(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "fence", Config{TTL: time.Minute})
	var last int64
	for i := range 50 {
		h := mustAcquire(t, l)
		if h.Fence() <= last {
			t.Fatalf("acquisition %d: Fence() = %d; want > %d", i, h.Fence(), last)
		}
		last = h.Fence()
		if i%2 == 0 {
			if err := h.Release(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		} else {
			e.int(t, "DEL", l.Key()) // expired or deleted holders count too
		}
	}
}

// TestFencesSurviveARestartWithoutData restarts a server that keeps nothing:
// the counter is gone, and the next fence must still be higher.
func TestFencesSurviveARestartWithoutData(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "fence-restart", Config{TTL: time.Minute})
	var before int64
	for range 5 {
		h := mustAcquire(t, l)
		before = h.Fence()
		if err := h.Release(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.Restart(t)
	if n := e.int(t, "EXISTS", l.keys.fence); n != 0 {
		t.Fatal("the fence counter survived the restart; the test proves nothing")
	}
	var h *Held
	if err := retryUnavailable(t, func() (err error) { h, err = l.TryAcquire(ctxT(t)); return err }); err != nil {
		t.Fatal(err)
	}
	if h.Fence() <= before {
		t.Fatalf("Fence() after restart = %d; want > %d", h.Fence(), before)
	}
}

// fencedStore is a resource protected by fencing tokens: it refuses a write
// whose token is below the highest it has accepted.
type fencedStore struct {
	mu      sync.Mutex
	highest int64
	value   string
}

func (s *fencedStore) Write(fence int64, v string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fence < s.highest {
		return fmt.Errorf("stale fencing token %d < %d", fence, s.highest)
	}
	s.highest, s.value = fence, v
	return nil
}

// TestStaleHolderIsFencedOff: A's TTL runs out while it is paused (as in a GC
// pause), B acquires and writes; A wakes and writes with its old token: the
// store refuses it.
func TestStaleHolderIsFencedOff(t *testing.T) {
	e := newEnv(t)
	const ttl = 100 * time.Millisecond
	l := e.lock(t, "fenced", Config{TTL: ttl, RetryInterval: time.Hour})
	store := &fencedStore{}
	a := mustAcquire(t, l)
	if err := store.Write(a.Fence(), "a1"); err != nil {
		t.Fatal(err)
	}
	b, err := l.Acquire(ctxT(t)) // wakes when A's TTL runs out
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Write(b.Fence(), "b1"); err != nil {
		t.Fatalf("B's write = %v; want accepted", err)
	}
	if err := store.Write(a.Fence(), "a2"); err == nil {
		t.Fatal("A's write with a stale token was accepted")
	}
	if store.value != "b1" {
		t.Fatalf("store = %q; want b1", store.value)
	}
	wantErr(t, "A's Release after losing the lock", a.Release(ctxT(t)), ErrNotOwned)
}
