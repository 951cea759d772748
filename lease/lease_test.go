package lease

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/baton-dev/baton/lock"
	"github.com/valkey-io/valkey-go"
)

func TestRenewalsKeepKeyAlive(t *testing.T) {
	e := newEnv(t)
	const ttl = 300 * time.Millisecond
	h := acquire(t, e.client, "alive", ttl)
	r := newRenewals()
	l := start(t, h, Config{OnRenew: r.onRenew}) // renews every ttl/3

	const n = 12 // four TTLs
	var pttls []time.Duration
	for range n {
		r.await(t, 1)
		if got := e.srv.String(t, "GET", h.Lock().Key()); got != h.Token() {
			t.Fatalf("GET %s = %q; want the lease's token %q", h.Lock().Key(), got, h.Token())
		}
		pttls = append(pttls, time.Duration(e.srv.Int(t, "PTTL", h.Lock().Key()))*time.Millisecond)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("Err() after %d renewals = %v; want nil", n, err)
	}
	if lived := time.Since(h.AcquiredAt()); lived < 3*ttl {
		t.Fatalf("key lived %v; want more than 3 TTLs (%v)", lived, 3*ttl)
	}
	for i, p := range pttls {
		if p <= 0 {
			t.Fatalf("PTTL after renewal %d = %v; want > 0 (all: %v)", i+1, p, pttls)
		}
	}
	if m := median(pttls); m < ttl/2 {
		t.Fatalf("median PTTL right after a renewal = %v; want >= %v (all: %v)", m, ttl/2, pttls)
	}
}

func TestDeletedKeyIsLostAtNextRenewal(t *testing.T) {
	e := newEnv(t)
	h := acquire(t, e.client, "deleted", 3*time.Second)
	var calls atomic.Int64
	r := newRenewals()
	logs := &syncBuffer{}
	l := startWith(t, h, Config{
		RenewInterval: 50 * time.Millisecond,
		OnRenew:       r.onRenew,
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, func(ctx context.Context) error {
		calls.Add(1)
		return h.Reacquire(ctx)
	})
	r.await(t, 1)

	bound := l.ValidUntil()
	before := calls.Load()
	e.srv.Do(t, "DEL", h.Lock().Key())
	awaitDone(t, l)

	err := l.Err()
	wantIs(t, "Err()", err, ErrLost, lock.ErrNotOwned)
	wantNotIs(t, "Err()", err, ErrExpired)
	if got := calls.Load() - before; got > 2 { // one renewal may have been in flight during the DEL
		t.Fatalf("renewals after DEL = %d; want the lease lost on the first refused one", got)
	}
	if end := l.ValidUntil(); !end.Before(bound) {
		t.Fatalf("ValidUntil() after the loss = %v; want before the bound %v it had", end, bound)
	}
	var lost *LostError
	if !errors.As(err, &lost) || lost.Name != "deleted" || lost.Fence != h.Fence() {
		t.Fatalf("Err() = %#v; want a *LostError for %q with fence %d", err, "deleted", h.Fence())
	}
	if msg := err.Error(); !strings.Contains(msg, `"deleted"`) || !strings.Contains(msg, "not owned") {
		t.Fatalf("Err().Error() = %q; want the name and \"not owned\"", msg)
	}
	l.Stop()
	out := logs.String()
	if !strings.Contains(out, "level=DEBUG msg=\"lease renewed\"") || !strings.Contains(out, "level=INFO msg=\"lease lost\"") {
		t.Fatalf("log = %q; want renewals at DEBUG and the loss at INFO", out)
	}
}

func TestOverwrittenKeyIsLostAndLeftAlone(t *testing.T) {
	e := newEnv(t)
	h := acquire(t, e.client, "overwritten", 3*time.Second)
	r := newRenewals()
	l := start(t, h, Config{RenewInterval: 50 * time.Millisecond, OnRenew: r.onRenew})
	r.await(t, 1)

	e.srv.Do(t, "SET", h.Lock().Key(), "foreign")
	awaitDone(t, l)
	wantIs(t, "Err()", l.Err(), ErrLost, lock.ErrNotOwned)
	l.Stop()
	if got := e.srv.String(t, "GET", h.Lock().Key()); got != "foreign" {
		t.Fatalf("GET after the loss = %q; want the foreign value untouched", got)
	}
	if got := e.srv.Int(t, "PTTL", h.Lock().Key()); got != -1 {
		t.Fatalf("PTTL of the foreign key = %d; want -1 (no TTL set on it)", got)
	}
	if err := l.Release(ctxT(t)); err != nil {
		t.Fatalf("Release after the loss = %v; want nil", err)
	}
	if got := e.srv.String(t, "GET", h.Lock().Key()); got != "foreign" {
		t.Fatalf("GET after Release = %q; want the foreign value untouched", got)
	}
}

func TestPausedServerExpiresBeforeTTL(t *testing.T) {
	e := newEnv(t)
	const (
		ttl      = time.Second
		validity = 400 * time.Millisecond
	)
	h := acquire(t, e.client, "paused", ttl)
	r := newRenewals()
	l := start(t, h, Config{RenewInterval: 100 * time.Millisecond, Validity: validity, OnRenew: r.onRenew})
	r.await(t, 2)

	e.srv.Pause(t)
	lostAt := awaitDone(t, l)
	l.Stop() // joins the renewal that was waiting, so no OnRenew is pending
	sent := r.all()
	last := sent[len(sent)-1]
	// Keep the server paused past the key's TTL: the subject is the lease
	// ending while the server cannot say anything.
	time.Sleep(time.Until(last.Add(ttl + 100*time.Millisecond)))
	e.srv.Resume(t)

	err := l.Err()
	wantIs(t, "Err()", err, ErrLost, ErrExpired)
	wantNotIs(t, "Err()", err, lock.ErrNotOwned, context.DeadlineExceeded)
	if !lostAt.Before(last.Add(ttl)) {
		t.Fatalf("lease lost at last renewal + %v; want before the key's TTL %v runs out", lostAt.Sub(last), ttl)
	}
	if lostAt.Before(last.Add(validity)) {
		t.Fatalf("lease lost at last renewal + %v; want not before its validity %v", lostAt.Sub(last), validity)
	}
	if got, want := l.ValidUntil(), last.Add(validity); !got.Equal(want) {
		t.Fatalf("ValidUntil() = last renewal + %v; want + %v", got.Sub(last), validity)
	}
	if n := e.srv.Int(t, "EXISTS", h.Lock().Key()); n != 0 {
		t.Fatalf("EXISTS after a pause longer than the TTL = %d; want 0 (expired on the server too)", n)
	}
}

func TestCutConnectionExpiresAndLockRecovers(t *testing.T) {
	s := valkeytest.Start(t)
	p := valkeytest.NewProxy(t, s.Addr())
	client, err := valkey.NewClient(s.ClientOptionVia(p.Addr()))
	if err != nil {
		t.Fatalf("valkey.NewClient via proxy = %v", err)
	}
	t.Cleanup(client.Close)
	e := &env{srv: s, client: client}

	const ttl = 3 * time.Second
	h := acquire(t, client, "cut", ttl)
	r := newRenewals()
	l := start(t, h, Config{RenewInterval: 100 * time.Millisecond, Validity: 600 * time.Millisecond, OnRenew: r.onRenew})
	r.await(t, 1)

	p.Cut()
	lostAt := awaitDone(t, l)
	err = l.Err()
	wantIs(t, "Err()", err, ErrLost, ErrExpired)
	var lost *LostError
	if !errors.As(err, &lost) || !errors.Is(lost.LastRenewErr, lock.ErrUnavailable) {
		t.Fatalf("Err() = %v; want a *LostError whose LastRenewErr matches lock.ErrUnavailable", err)
	}
	sent := r.all()
	if last := sent[len(sent)-1]; !lostAt.Before(last.Add(ttl)) {
		t.Fatalf("lease lost at last renewal + %v; want before the TTL %v", lostAt.Sub(last), ttl)
	}

	p.Restore()
	// The key is still ours on the server (its TTL has not run out):
	// Release deletes it by token. The first command after the cut may meet
	// a connection valkey-go has not replaced yet; Release may be retried.
	var rerr error
	for range 3 {
		if rerr = l.Release(ctxT(t)); rerr == nil {
			break
		}
		wantIs(t, "Release after Restore", rerr, lock.ErrUnavailable)
	}
	if rerr != nil {
		t.Fatalf("Release after Restore = %v; want nil", rerr)
	}
	wantIs(t, "Err() after Release", l.Err(), ErrExpired) // Release keeps the reason
	if n := e.srv.Int(t, "EXISTS", h.Lock().Key()); n != 0 {
		t.Fatalf("EXISTS after Release = %d; want 0", n)
	}
	var h2 *lock.Held
	for range 3 {
		if h2, err = h.Lock().TryAcquire(ctxT(t)); err == nil {
			break
		}
		wantIs(t, "TryAcquire after Restore", err, lock.ErrUnavailable)
	}
	if err != nil {
		t.Fatalf("TryAcquire after Restore = %v; want a new acquisition", err)
	}
	if h2.Fence() <= h.Fence() {
		t.Fatalf("new fence = %d; want > %d", h2.Fence(), h.Fence())
	}
	l2 := start(t, h2, Config{RenewInterval: 100 * time.Millisecond})
	if err := l2.Release(ctxT(t)); err != nil {
		t.Fatalf("Release of the new lease = %v", err)
	}
}

func TestRelease(t *testing.T) {
	e := newEnv(t)
	h := acquire(t, e.client, "release", 3*time.Second)
	r := newRenewals()
	l := start(t, h, Config{RenewInterval: 50 * time.Millisecond, OnRenew: r.onRenew})
	ctx, cancel := l.Context(context.Background())
	defer cancel()
	r.await(t, 1)

	if err := l.Release(ctxT(t)); err != nil {
		t.Fatalf("Release() = %v; want nil", err)
	}
	select {
	case <-l.Done():
	default:
		t.Fatal("Done() open after Release; want closed")
	}
	if err := l.Err(); err != ErrReleased {
		t.Fatalf("Err() = %v; want ErrReleased", err)
	}
	if cause := context.Cause(ctx); cause != ErrReleased {
		t.Fatalf("context.Cause(Context()) = %v; want ErrReleased", cause)
	}
	if n := e.srv.Int(t, "EXISTS", h.Lock().Key()); n != 0 {
		t.Fatalf("EXISTS after Release = %d; want 0", n)
	}
	if end := l.ValidUntil(); end.After(time.Now()) {
		t.Fatalf("ValidUntil() after Release is %v ahead; want not in the future", time.Until(end))
	}
	renewed := r.count()

	calls := e.srv.CommandCalls(t, "evalsha", "eval")
	if err := l.Release(ctxT(t)); err != nil {
		t.Fatalf("second Release() = %v; want nil", err)
	}
	l.Stop()
	if got := e.srv.CommandCalls(t, "evalsha", "eval"); got != calls {
		t.Fatalf("scripts run by a second Release and Stop = %d; want 0", got-calls)
	}
	if err := l.Err(); err != ErrReleased {
		t.Fatalf("Err() after a second Release and Stop = %v; want ErrReleased", err)
	}
	if got := r.count(); got != renewed {
		t.Fatalf("renewals after Release = %d; want 0", got-renewed)
	}
}

func TestReleaseWithCancelledContext(t *testing.T) {
	e := newEnv(t)
	h := acquire(t, e.client, "cancelled", 3*time.Second)
	l := start(t, h, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release(cancelled ctx) = %v; want nil", err)
	}
	if n := e.srv.Int(t, "EXISTS", h.Lock().Key()); n != 0 {
		t.Fatalf("EXISTS after Release(cancelled ctx) = %d; want 0", n)
	}
}

func TestReleaseAfterLossMakesNoServerCall(t *testing.T) {
	e := newEnv(t)
	h := acquire(t, e.client, "lost", 3*time.Second)
	l := start(t, h, Config{RenewInterval: 50 * time.Millisecond})
	e.srv.Do(t, "DEL", h.Lock().Key())
	awaitDone(t, l)

	calls := e.srv.CommandCalls(t, "evalsha", "eval")
	if err := l.Release(ctxT(t)); err != nil {
		t.Fatalf("Release after the loss = %v; want nil", err)
	}
	if got := e.srv.CommandCalls(t, "evalsha", "eval"); got != calls {
		t.Fatalf("scripts run by Release after the loss = %d; want 0", got-calls)
	}
	wantIs(t, "Err() after Release", l.Err(), ErrLost, lock.ErrNotOwned)
}

func TestReleaseReportsUnnoticedLoss(t *testing.T) {
	e := newEnv(t)
	h := acquire(t, e.client, "unnoticed", 3*time.Second)
	l := start(t, h, Config{RenewInterval: time.Second}) // no renewal before Release
	e.srv.Do(t, "DEL", h.Lock().Key())

	err := l.Release(ctxT(t))
	wantIs(t, "Release after an unnoticed DEL", err, lock.ErrNotOwned)
	if l.Err() != ErrReleased {
		t.Fatalf("Err() = %v; want ErrReleased", l.Err())
	}
	if err := l.Release(ctxT(t)); err != nil {
		t.Fatalf("second Release = %v; want nil", err)
	}
}

func TestStopLeavesKeyToExpire(t *testing.T) {
	e := newEnv(t)
	const ttl = 500 * time.Millisecond
	h := acquire(t, e.client, "stopped", ttl)
	r := newRenewals()
	l := start(t, h, Config{OnRenew: r.onRenew})
	r.await(t, 1)

	l.Stop()
	l.Stop()
	if err := l.Err(); err != ErrStopped {
		t.Fatalf("Err() after Stop = %v; want ErrStopped", err)
	}
	if got := e.srv.String(t, "GET", h.Lock().Key()); got != h.Token() {
		t.Fatalf("GET after Stop = %q; want the token %q left in place", got, h.Token())
	}
	sent := r.all()
	last := sent[len(sent)-1]

	// A blocked Acquire wakes when the key's TTL runs out: that is the
	// event that shows the key expired rather than being released.
	other, err := lock.New(e.client, "stopped", lock.Config{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	h2, err := other.Acquire(ctxT(t), lock.WithBlockingTimeout(waitLimit))
	if err != nil {
		t.Fatalf("Acquire after Stop = %v; want the key to expire", err)
	}
	defer h2.Release(context.Background())
	if since := time.Since(last); since < ttl-l.cfg.DriftMargin {
		t.Fatalf("acquired again %v after the last renewal; want no sooner than its TTL %v", since, ttl)
	}
	if got := r.count(); got != len(sent) {
		t.Fatalf("renewals after Stop = %d; want 0", got-len(sent))
	}
}

func TestReleaseAfterStopDeletesKey(t *testing.T) {
	e := newEnv(t)
	h := acquire(t, e.client, "stop-release", 3*time.Second)
	l := start(t, h, Config{})
	l.Stop()
	if err := l.Release(ctxT(t)); err != nil {
		t.Fatalf("Release after Stop = %v; want nil", err)
	}
	if n := e.srv.Int(t, "EXISTS", h.Lock().Key()); n != 0 {
		t.Fatalf("EXISTS after Stop and Release = %d; want 0", n)
	}
	if l.Err() != ErrStopped {
		t.Fatalf("Err() = %v; want ErrStopped kept", l.Err())
	}
}

// TestRenewalsFollowAbsoluteDeadlines slows every renewal down by half an
// interval. Sleeps chained after each reply would then fall behind by half an
// interval per renewal; absolute deadlines keep one renewal per interval.
func TestRenewalsFollowAbsoluteDeadlines(t *testing.T) {
	e := newEnv(t)
	const (
		interval = 200 * time.Millisecond
		delay    = interval / 2
		n        = 10
	)
	h := acquire(t, e.client, "schedule", 2*time.Second)
	var lease atomic.Pointer[Lease]
	var deadlines sync.Map // renewal number -> ctx deadline and bound at the time
	var calls atomic.Int64
	r := newRenewals()
	l := startWith(t, h, Config{RenewInterval: interval, OnRenew: r.onRenew}, func(ctx context.Context) error {
		k := calls.Add(1)
		d, ok := ctx.Deadline()
		l := lease.Load()
		deadlines.Store(k, [2]any{d, ok && l != nil && d.Equal(l.ValidUntil())})
		time.Sleep(delay) // a slow server
		return h.Reacquire(ctx)
	})
	lease.Store(l)
	r.await(t, n)
	l.Stop()

	acquired := h.AcquiredAt()
	prevSlot := int64(0)
	sent := r.all()
	for k, s := range sent {
		if due := acquired.Add(time.Duration(k+1) * interval); s.Before(due) {
			t.Fatalf("renewal %d sent at +%v; want no earlier than its deadline +%v", k+1, s.Sub(acquired), due.Sub(acquired))
		}
		slot := int64(s.Sub(acquired) / interval)
		if slot <= prevSlot {
			t.Fatalf("renewal %d in interval %d, after one in interval %d; want one renewal per interval", k+1, slot, prevSlot)
		}
		prevSlot = slot
	}
	// Chained sleeps would have skipped about n/2 intervals by now.
	if skipped := prevSlot - int64(len(sent)); skipped > 2 {
		t.Fatalf("%d renewals took %d intervals; want no more than 2 skipped", len(sent), prevSlot)
	}
	deadlines.Range(func(k, v any) bool {
		got := v.([2]any)
		if !got[1].(bool) {
			t.Errorf("renewal %d: ctx deadline %v; want the validity bound", k, got[0])
		}
		return true
	})
}

// TestExpiresWhileRenewalHangs has a renewal that ignores its context: the
// lease must still end at the bound, on its timer.
func TestExpiresWhileRenewalHangs(t *testing.T) {
	e := newEnv(t)
	const validity = 300 * time.Millisecond
	h := acquire(t, e.client, "hang", 3*time.Second)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	l := startWith(t, h, Config{RenewInterval: 50 * time.Millisecond, Validity: validity}, func(ctx context.Context) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release // deaf to ctx
		return nil
	})
	<-entered
	lostAt := awaitDone(t, l)
	close(release)
	l.Stop()
	wantIs(t, "Err()", l.Err(), ErrLost, ErrExpired)
	if lostAt.Before(h.AcquiredAt().Add(validity)) {
		t.Fatalf("lost %v after the acquisition; want not before the validity %v", lostAt.Sub(h.AcquiredAt()), validity)
	}
}

func TestTransientErrorsAreRetried(t *testing.T) {
	e := newEnv(t)
	const validity = time.Second
	h := acquire(t, e.client, "transient", 2*time.Second)
	var calls, reported, wrapped, wrappedErrs atomic.Int64
	r := newRenewals()
	type wrapKey struct{}
	renewCtx := func(ctx context.Context) (context.Context, func(error)) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("RenewContext got a context without the validity bound as deadline")
		}
		wrapped.Add(1)
		return context.WithValue(ctx, wrapKey{}, true), func(err error) {
			if err != nil {
				wrappedErrs.Add(1)
			}
		}
	}
	onErr := func(sent time.Time, err error) {
		if !errors.Is(err, lock.ErrUnavailable) || sent.IsZero() {
			t.Errorf("OnRenewError(%v, %v); want a send time and ErrUnavailable", sent, err)
		}
		reported.Add(1)
	}
	l := startWith(t, h, Config{RenewInterval: 100 * time.Millisecond, Validity: validity, OnRenew: r.onRenew, OnRenewError: onErr, RenewContext: renewCtx},
		func(ctx context.Context) error {
			if ctx.Value(wrapKey{}) == nil {
				t.Error("renewal sent without the context RenewContext returned")
			}
			if calls.Add(1) <= 3 {
				return &lock.Error{Op: "reacquire", Name: h.Name(), Kind: lock.ErrUnavailable}
			}
			return h.Reacquire(ctx)
		})
	r.await(t, 1)
	if err := l.Err(); err != nil {
		t.Fatalf("Err() after transient errors = %v; want nil", err)
	}
	if got := calls.Load(); got < 4 {
		t.Fatalf("renewal attempts = %d; want 3 failures and a success", got)
	}
	if got := reported.Load(); got != 3 {
		t.Fatalf("OnRenewError calls = %d; want 3, one per failed renewal", got)
	}
	if w, we := wrapped.Load(), wrappedErrs.Load(); w < 4 || we != 3 {
		t.Fatalf("RenewContext calls = %d with %d failed outcomes; want one per renewal (>= 4) and 3 failures", w, we)
	}
	if first := r.all()[0]; !first.Before(h.AcquiredAt().Add(validity)) {
		t.Fatalf("first successful renewal %v after the acquisition; want within the validity %v", first.Sub(h.AcquiredAt()), validity)
	}
}

func TestHeldReleasedBehindTheLeaseIsLost(t *testing.T) {
	e := newEnv(t)
	h := acquire(t, e.client, "behind", 3*time.Second)
	l := start(t, h, Config{RenewInterval: 50 * time.Millisecond})
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	awaitDone(t, l)
	wantIs(t, "Err()", l.Err(), ErrLost, lock.ErrNotHeld)
	if err := l.Release(ctxT(t)); err != nil {
		t.Fatalf("Release = %v; want nil", err)
	}
}

func TestNewAfterBoundHasExpired(t *testing.T) {
	e := newEnv(t)
	h := acquire(t, e.client, "late", 3*time.Second)
	const validity = 20 * time.Millisecond
	time.Sleep(validity + 10*time.Millisecond) // the subject: time passing before New
	l := start(t, h, Config{RenewInterval: 10 * time.Millisecond, Validity: validity})
	select {
	case <-l.Done():
	default:
		t.Fatal("Done() open for a lease built after its bound; want closed")
	}
	wantIs(t, "Err()", l.Err(), ErrLost, ErrExpired)
	if err := l.Release(ctxT(t)); err != nil {
		t.Fatalf("Release = %v; want nil", err)
	}
	if n := e.srv.Int(t, "EXISTS", h.Lock().Key()); n != 0 {
		t.Fatalf("EXISTS after Release = %d; want 0", n)
	}
}

func TestContext(t *testing.T) {
	e := newEnv(t)
	h := acquire(t, e.client, "ctx", 3*time.Second)
	l := start(t, h, Config{RenewInterval: 50 * time.Millisecond})

	parent, cancelParent := context.WithCancel(context.Background())
	fromParent, cancel1 := l.Context(parent)
	defer cancel1()
	cancelParent()
	<-fromParent.Done()
	if l.Err() != nil {
		t.Fatalf("Err() after the parent was cancelled = %v; want nil", l.Err())
	}

	own, cancel2 := l.Context(context.Background())
	cancel2()
	if err := own.Err(); err != context.Canceled {
		t.Fatalf("Context().Err() after its cancel = %v; want context.Canceled", err)
	}

	live, cancel3 := l.Context(context.Background())
	defer cancel3()
	e.srv.Do(t, "DEL", h.Lock().Key())
	<-live.Done()
	cause := context.Cause(live)
	wantIs(t, "context.Cause", cause, ErrLost, lock.ErrNotOwned)
	if cause != l.Err() {
		t.Fatalf("context.Cause = %v; want Err() = %v", cause, l.Err())
	}

	ended, cancel4 := l.Context(context.Background())
	defer cancel4()
	if ended.Err() == nil || context.Cause(ended) != l.Err() {
		t.Fatalf("Context of an ended lease: Err %v, cause %v; want cancelled with Err()", ended.Err(), context.Cause(ended))
	}
}

func TestAccessors(t *testing.T) {
	e := newEnv(t)
	h := acquire(t, e.client, "accessors", 3*time.Second)
	l := start(t, h, Config{})
	if l.Held() != h {
		t.Fatalf("Held() = %p; want %p", l.Held(), h)
	}
	if l.Fence() != h.Fence() {
		t.Fatalf("Fence() = %d; want %d", l.Fence(), h.Fence())
	}
	if got, want := l.ValidUntil(), h.AcquiredAt().Add(3*time.Second-30*time.Millisecond); !got.Equal(want) {
		t.Fatalf("ValidUntil() = acquired + %v; want + %v", got.Sub(h.AcquiredAt()), want.Sub(h.AcquiredAt()))
	}
	if err := l.Err(); err != nil {
		t.Fatalf("Err() = %v; want nil", err)
	}
}

func TestNewValidation(t *testing.T) {
	e := newEnv(t)
	noTTL, err := lock.New(e.client, "forever", lock.Config{TTL: lock.NoExpiry})
	if err != nil {
		t.Fatal(err)
	}
	h, err := noTTL.TryAcquire(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.Background())
	if _, err := New(h, Config{}); err == nil || err.Error() != `lease: lock "forever" has no ttl: a lease renews the TTL of a key that would otherwise expire` {
		t.Fatalf("New(lock without TTL) = %v; want an error naming the lock and the missing TTL", err)
	}
	if _, err := New(nil, Config{}); err == nil {
		t.Fatal("New(nil) = nil error; want an error")
	}
	h2 := acquire(t, e.client, "bad", time.Second)
	if _, err := New(h2, Config{RenewInterval: time.Second}); err == nil || !strings.Contains(err.Error(), "renew interval 1s") {
		t.Fatalf("New(renew interval = ttl) = %v; want an error naming the renew interval", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		cfg  Config
		want []string // substrings of the error
	}{
		{"no ttl", 0, Config{}, []string{`lock "name" has no ttl`}},
		{"interval equals validity", 3 * time.Second, Config{RenewInterval: time.Second, Validity: time.Second},
			[]string{"renew interval 1s", "validity 1s"}},
		{"interval above validity", 3 * time.Second, Config{RenewInterval: 2 * time.Second, Validity: 1500 * time.Millisecond},
			[]string{"renew interval 2s", "validity 1.5s"}},
		{"interval above default validity", time.Second, Config{RenewInterval: time.Second},
			[]string{"renew interval 1s", "validity 990ms"}},
		{"validity equals ttl", time.Second, Config{Validity: time.Second},
			[]string{"validity 1s", "ttl 1s", "drift margin 10ms", "990ms"}},
		{"validity above ttl minus drift", time.Second, Config{Validity: 950 * time.Millisecond, DriftMargin: 100 * time.Millisecond},
			[]string{"validity 950ms", "ttl 1s", "drift margin 100ms", "900ms"}},
		{"drift equals ttl", time.Second, Config{DriftMargin: time.Second}, []string{"drift margin 1s", "ttl 1s"}},
		{"negative interval", time.Second, Config{RenewInterval: -time.Second}, []string{"renew interval -1s is negative"}},
		{"negative validity", time.Second, Config{Validity: -time.Millisecond}, []string{"validity -1ms is negative"}},
		{"negative drift", time.Second, Config{DriftMargin: -time.Millisecond}, []string{"drift margin -1ms is negative"}},
		{"negative retry", time.Second, Config{RetryInitial: -1, RetryMax: -2},
			[]string{"retry initial -1ns is negative", "retry max -2ns is negative"}},
		{"retry initial above max", time.Second, Config{RetryInitial: 50 * time.Millisecond, RetryMax: 20 * time.Millisecond},
			[]string{"retry initial 50ms", "retry max 20ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.resolve("name", tc.ttl)
			if err == nil {
				t.Fatalf("resolve(%+v, ttl %v) = nil; want an error", tc.cfg, tc.ttl)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("resolve(%+v, ttl %v) = %q; want it to contain %q", tc.cfg, tc.ttl, err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "lease: ") {
				t.Fatalf("resolve(%+v) = %q; want the prefix \"lease: \"", tc.cfg, err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	ms := time.Millisecond
	type durations struct{ RenewInterval, Validity, DriftMargin, RetryInitial, RetryMax time.Duration }
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		cfg  Config
		want durations
	}{
		{"3s", 3 * time.Second, Config{},
			durations{RenewInterval: time.Second, Validity: 2970 * ms, DriftMargin: 30 * ms, RetryInitial: 10 * ms, RetryMax: 500 * ms}},
		{"10s", 10 * time.Second, Config{},
			durations{RenewInterval: 3333333333, Validity: 9900 * ms, DriftMargin: 100 * ms, RetryInitial: 10 * ms, RetryMax: 1666666666}},
		{"drift margin floor", 50 * ms, Config{},
			durations{RenewInterval: 16666666, Validity: 49 * ms, DriftMargin: ms, RetryInitial: 8333333, RetryMax: 8333333}},
		{"interval follows validity", 3 * time.Second, Config{Validity: 1500 * ms},
			durations{RenewInterval: 500 * ms, Validity: 1500 * ms, DriftMargin: 30 * ms, RetryInitial: 10 * ms, RetryMax: 250 * ms}},
		{"explicit", 3 * time.Second, Config{RenewInterval: 200 * ms, RetryMax: 40 * ms},
			durations{RenewInterval: 200 * ms, Validity: 2970 * ms, DriftMargin: 30 * ms, RetryInitial: 10 * ms, RetryMax: 40 * ms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.resolve("name", tc.ttl)
			if err != nil {
				t.Fatalf("resolve(%+v, ttl %v) = %v", tc.cfg, tc.ttl, err)
			}
			if got.Logger == nil {
				t.Fatal("resolve left Logger nil; want slog.Default()")
			}
			if d := (durations{got.RenewInterval, got.Validity, got.DriftMargin, got.RetryInitial, got.RetryMax}); d != tc.want {
				t.Fatalf("resolve(%+v, ttl %v) = %+v; want %+v", tc.cfg, tc.ttl, d, tc.want)
			}
		})
	}
}

func TestLostErrorMessage(t *testing.T) {
	cause := errors.New("dial tcp: connection refused")
	err := &LostError{Name: "jobs", Fence: 17, Reason: ErrExpired, LastRenewErr: cause}
	want := `lease "jobs" (fence 17): lost: expired: the validity bound passed without a successful renewal (last renewal error: dial tcp: connection refused)`
	if got := err.Error(); got != want {
		t.Fatalf("Error() = %q; want %q", got, want)
	}
	wantIs(t, "LostError", err, ErrLost, ErrExpired)
	wantNotIs(t, "LostError", err, cause)
}
