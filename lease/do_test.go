package lease

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/baton-dev/baton/lock"
	"github.com/valkey-io/valkey-go"
)

func newLock(t *testing.T, client valkey.Client, name string, ttl time.Duration) *lock.Lock {
	t.Helper()
	l, err := lock.New(client, name, lock.Config{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestDoRenewsWhileFnRuns: fn outlives the TTL several times over and the
// lock stays its own; afterwards the key is gone.
func TestDoRenewsWhileFnRuns(t *testing.T) {
	e := newEnv(t)
	l := newLock(t, e.client, "do", 300*time.Millisecond)
	rs := newRenewals()
	err := Do(ctxT(t), l, Config{OnRenew: rs.onRenew}, func(ctx context.Context, ls *Lease) error {
		rs.await(t, 6) // 600 ms at TTL/3: twice the TTL
		if owned, err := ls.Held().Owned(ctx); err != nil || !owned {
			t.Errorf("Owned after 2 TTLs = %v, %v; want true", owned, err)
		}
		return ctx.Err()
	})
	if err != nil {
		t.Fatalf("Do = %v; want nil", err)
	}
	if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatalf("EXISTS after Do = %d; want 0", n)
	}
}

// TestDoEndsFnWhenLost: the key is deleted behind the holder's back; fn's
// ctx ends with the loss as its cause, and Do reports the loss.
func TestDoEndsFnWhenLost(t *testing.T) {
	e := newEnv(t)
	l := newLock(t, e.client, "do-lost", 300*time.Millisecond)
	var cause error
	err := Do(ctxT(t), l, Config{}, func(ctx context.Context, ls *Lease) error {
		e.srv.Do(t, "DEL", l.Key())
		<-ctx.Done()
		cause = context.Cause(ctx)
		return nil // fn claims success; Do must still report the loss
	})
	wantIs(t, "Do after the key was deleted", err, ErrLost, lock.ErrNotOwned)
	wantIs(t, "fn's ctx cause", cause, ErrLost, lock.ErrNotOwned)
}

// TestDoReleasesWhenFnPanics: the panic goes on, but only after the key is
// released.
func TestDoReleasesWhenFnPanics(t *testing.T) {
	e := newEnv(t)
	l := newLock(t, e.client, "do-panic", time.Minute)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recover() = %v; want the panic of fn", r)
			}
		}()
		_ = Do(ctxT(t), l, Config{}, func(context.Context, *Lease) error { panic("boom") })
		t.Fatal("Do returned after fn panicked")
	}()
	if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatalf("EXISTS after a panic in fn = %d; want 0: the lock was left held", n)
	}
}

func TestDoRefusesBadConfigBeforeAcquiring(t *testing.T) {
	e := newEnv(t)
	l := newLock(t, e.client, "do-bad", time.Second)
	called := false
	err := Do(ctxT(t), l, Config{RenewInterval: 2 * time.Second}, func(context.Context, *Lease) error {
		called = true
		return nil
	})
	if err == nil || called {
		t.Fatalf("Do with a renew interval above the TTL = %v (fn called: %v); want an error, fn not called", err, called)
	}
	if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatalf("EXISTS = %d; want 0", n)
	}
}

// TestRenewalRefusedForGoodIsLostAtOnce: a user whose permission to renew is
// revoked mid-lease loses the lease at the first refused renewal, not at the
// validity bound.
func TestRenewalRefusedForGoodIsLostAtOnce(t *testing.T) {
	e := newEnv(t)
	e.srv.Do(t, "ACL", "SETUSER", "renewer", "on", ">pw", "~*", "&*", "+@all")
	opt := e.srv.ClientOption()
	opt.Username, opt.Password = "renewer", "pw"
	c, err := valkey.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ttl := 3 * time.Second
	h := acquire(t, c, "revoked", ttl)
	failed := make(chan error, 8)
	ls := start(t, h, Config{RenewInterval: 100 * time.Millisecond, OnRenewError: func(_ time.Time, err error) { failed <- err }})
	e.srv.Do(t, "ACL", "SETUSER", "renewer", "-pexpire")
	awaitDone(t, ls)
	wantIs(t, "Err after the permission was revoked", ls.Err(), ErrLost, lock.ErrMisconfigured)
	if len(failed) != 1 {
		t.Fatalf("%d failed renewals reported; want 1: a permanent refusal is not retried", len(failed))
	}
	if errors.Is(ls.Err(), ErrExpired) {
		t.Fatalf("Err = %v; want a refusal, not an expiry", ls.Err())
	}
}
