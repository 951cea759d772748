package lock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/valkey-io/valkey-go"
)

func TestReleaseDeletesOnlyOurs(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "release", Config{TTL: time.Minute})
	h := mustAcquire(t, l)
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatalf("Release() = %v", err)
	}
	if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatalf("EXISTS after Release = %d; want 0", n)
	}

	// Overwritten by someone else: not owned, their value untouched.
	h = mustAcquire(t, l)
	e.srv.String(t, "SET", l.Key(), "foreign")
	wantErr(t, "Release of an overwritten lock", h.Release(ctxT(t)), ErrNotOwned)
	if got := e.srv.String(t, "GET", l.Key()); got != "foreign" {
		t.Fatalf("GET = %q; want the foreign value untouched", got)
	}
}

func TestReleaseTwiceMakesNoServerCall(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "twice", Config{TTL: time.Minute})
	h := mustAcquire(t, l)
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	before := e.srv.CommandsProcessed(t)
	wantErr(t, "second Release", h.Release(ctxT(t)), ErrNotHeld)
	var never *Held
	wantErr(t, "Release of nil *Held", never.Release(ctxT(t)), ErrNotHeld)
	wantErr(t, "Extend after Release", h.Extend(ctxT(t), time.Second), ErrNotHeld)
	wantErr(t, "Reacquire after Release", h.Reacquire(ctxT(t)), ErrNotHeld)
	// CommandsProcessed itself runs one INFO.
	if got := e.srv.CommandsProcessed(t) - before; got != 1 {
		t.Fatalf("server commands = %d; want only the INFO itself", got)
	}
}

func TestReleaseAfterExpiryIsNotOwned(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "expired", Config{TTL: time.Minute})
	h := mustAcquire(t, l)
	e.srv.Int(t, "DEL", l.Key())
	wantErr(t, "Release of a deleted lock", h.Release(ctxT(t)), ErrNotOwned)
	wantErr(t, "Release again", h.Release(ctxT(t)), ErrNotHeld)
}

// TestReleaseRetriesAfterNetworkError: valkey-py forgets the token before the
// release succeeds; here a release cut off by the network can be retried.
func TestReleaseRetriesAfterNetworkError(t *testing.T) {
	s := valkeytest.Start(t)
	p := valkeytest.NewProxy(t, s.Addr())
	c, err := valkey.NewClient(s.ClientOptionVia(p.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	l, err := New(c, "netfail", Config{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h := mustAcquire(t, l)
	p.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = h.Release(ctx)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Release through a cut connection = %v; want ErrUnavailable", err)
	}
	if errors.Is(err, ErrNotOwned) || errors.Is(err, ErrNotHeld) {
		t.Fatalf("Release = %v; must not claim the lock is gone", err)
	}
	p.Restore()
	if err := retryUnavailable(t, func() error { return h.Release(ctxT(t)) }); err != nil {
		t.Fatalf("Release retried after restore = %v; want nil", err)
	}
	e := &env{srv: s}
	if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatalf("EXISTS after retried Release = %d; want 0", n)
	}
}

func TestUnreachableServerIsNotHeldElsewhere(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "down", Config{TTL: time.Minute})
	mustAcquire(t, e.lock(t, "warm", Config{TTL: time.Minute}))
	e.srv.Kill(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := l.TryAcquire(ctx)
	wantErr(t, "TryAcquire on a killed server", err, ErrUnavailable)
	if errors.Is(err, ErrNotAcquired) {
		t.Fatalf("TryAcquire = %v; an unreachable server is not a held lock", err)
	}
}

func TestExtend(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	l := e.lock(t, "extend", Config{TTL: 10 * time.Second})
	h := mustAcquire(t, l)

	if err := h.Extend(ctx, 20*time.Second); err != nil {
		t.Fatalf("Extend(20s) = %v", err)
	}
	if got := e.srv.Int(t, "PTTL", l.Key()); got < 25000 || got > 30000 {
		t.Fatalf("PTTL after Extend(20s) = %d; want about 30000", got)
	}
	if err := h.ExtendTo(ctx, 5*time.Second); err != nil {
		t.Fatalf("ExtendTo(5s) = %v", err)
	}
	if got := e.srv.Int(t, "PTTL", l.Key()); got < 4000 || got > 5000 {
		t.Fatalf("PTTL after ExtendTo(5s) = %d; want about 5000", got)
	}
	// A shortening that would end the lock is refused and changes nothing.
	wantErr(t, "Extend(-1m)", h.Extend(ctx, -time.Minute), ErrInvalidTTL)
	wantErr(t, "ExtendTo(0)", h.ExtendTo(ctx, 0), ErrInvalidTTL)
	if got := e.srv.Int(t, "PTTL", l.Key()); got < 3000 {
		t.Fatalf("PTTL after refused extends = %d; want the key kept", got)
	}
	if ok, _ := h.Owned(ctx); !ok {
		t.Fatal("refused extend lost the lock")
	}
}

func TestExtendNeverTouchesWhatIsNotOurs(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	l := e.lock(t, "extend-foreign", Config{TTL: 10 * time.Second})
	for _, tt := range []struct {
		name string
		op   func(h *Held) error
	}{
		{"Extend", func(h *Held) error { return h.Extend(ctx, time.Minute) }},
		{"ExtendTo", func(h *Held) error { return h.ExtendTo(ctx, time.Minute) }},
		{"Reacquire", func(h *Held) error { return h.Reacquire(ctx) }},
	} {
		t.Run(tt.name+"/deleted", func(t *testing.T) {
			h := mustAcquire(t, l)
			e.srv.Int(t, "DEL", l.Key())
			wantErr(t, tt.name+" of a deleted lock", tt.op(h), ErrNotOwned)
			if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
				t.Fatalf("EXISTS = %d; the key was recreated", n)
			}
		})
		t.Run(tt.name+"/overwritten", func(t *testing.T) {
			h := mustAcquire(t, l)
			e.srv.String(t, "SET", l.Key(), "foreign", "PX", "5000")
			wantErr(t, tt.name+" of an overwritten lock", tt.op(h), ErrNotOwned)
			if got := e.srv.Int(t, "PTTL", l.Key()); got > 5000 {
				t.Fatalf("PTTL of the foreign key = %d; it was extended", got)
			}
			e.srv.Int(t, "DEL", l.Key())
		})
	}
}

func TestExtendWithoutTTLIsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	l := e.lock(t, "forever", Config{TTL: NoExpiry})
	h := mustAcquire(t, l)
	wantErr(t, "Extend of a lock without TTL", h.Extend(ctx, time.Second), ErrNoTTL)
	wantErr(t, "ExtendTo of a lock without TTL", h.ExtendTo(ctx, time.Second), ErrNoTTL)
	wantErr(t, "Reacquire of a lock without TTL", h.Reacquire(ctx), ErrNoTTL)
	if got := e.srv.Int(t, "PTTL", l.Key()); got != -1 {
		t.Fatalf("PTTL = %d; want -1 (still no expiry)", got)
	}
	// A key whose TTL was removed on the server is refused the same way.
	l2 := e.lock(t, "persisted", Config{TTL: time.Minute})
	h2 := mustAcquire(t, l2)
	e.srv.Int(t, "PERSIST", l2.Key())
	wantErr(t, "Extend of a persisted key", h2.Extend(ctx, time.Second), ErrNoTTL)
}

func TestReacquireResetsTheTTL(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "reacquire", Config{TTL: 10 * time.Second})
	h := mustAcquire(t, l)
	e.srv.Int(t, "PEXPIRE", l.Key(), "2000")
	if err := h.Reacquire(ctxT(t)); err != nil {
		t.Fatalf("Reacquire() = %v", err)
	}
	if got := e.srv.Int(t, "PTTL", l.Key()); got < 9000 {
		t.Fatalf("PTTL after Reacquire = %d; want about 10000", got)
	}
}

func TestDoAlwaysReleases(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "do", Config{TTL: time.Minute})
	boom := errors.New("boom")
	ctx := ctxT(t)

	err := l.Do(ctx, func(ctx context.Context, h *Held) error {
		if ok, _ := h.Owned(ctx); !ok {
			t.Error("not owned inside Do")
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Do() = %v; want the body's error", err)
	}
	if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatal("Do left the lock held")
	}

	// The body loses the lock: both errors come back.
	err = l.Do(ctx, func(ctx context.Context, h *Held) error {
		e.srv.Int(t, "DEL", l.Key())
		return boom
	})
	if !errors.Is(err, boom) || !errors.Is(err, ErrNotOwned) {
		t.Fatalf("Do() = %v; want boom joined with ErrNotOwned", err)
	}

	// A body that outlives its context still releases.
	cctx, cancel := context.WithCancel(ctx)
	err = l.Do(cctx, func(context.Context, *Held) error { cancel(); return nil })
	if err != nil {
		t.Fatalf("Do() with a cancelled context = %v; want nil", err)
	}
	if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatal("Do with a cancelled context left the lock held")
	}
}

func TestScriptsSurviveFlushAndRestart(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	l := e.lock(t, "flush", Config{TTL: time.Minute})
	cycle := func(what string) {
		t.Helper()
		var h *Held
		err := retryUnavailable(t, func() (err error) { h, err = l.TryAcquire(ctx); return err })
		if err != nil {
			t.Fatalf("TryAcquire after %s = %v", what, err)
		}
		e.srv.Do(t, "SCRIPT", "FLUSH")
		if err := retryUnavailable(t, func() error { return h.Reacquire(ctx) }); err != nil {
			t.Fatalf("Reacquire after %s = %v", what, err)
		}
		e.srv.Do(t, "SCRIPT", "FLUSH")
		if err := retryUnavailable(t, func() error { return h.Release(ctx) }); err != nil {
			t.Fatalf("Release after %s = %v", what, err)
		}
	}
	cycle("start")
	e.srv.Do(t, "SCRIPT", "FLUSH")
	cycle("SCRIPT FLUSH")
	e.srv.Restart(t)
	cycle("restart")
}
