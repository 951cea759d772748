package lock

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestAcquireStoresTokenWithTTL(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		name    string
		ttl     time.Duration
		wantMin int64 // PTTL bounds in ms; -1 = no expiry
		wantMax int64
	}{
		{"with ttl", 10 * time.Second, 9000, 10000},
		{"no expiry", NoExpiry, -1, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := e.lock(t, "ttl-"+tt.name, Config{TTL: tt.ttl})
			h := mustAcquire(t, l)
			if got := e.srv.String(t, "GET", l.Key()); got != h.Token() {
				t.Fatalf("GET %s = %q; want the token %q", l.Key(), got, h.Token())
			}
			if got := e.srv.Int(t, "PTTL", l.Key()); got < tt.wantMin || got > tt.wantMax {
				t.Fatalf("PTTL = %d; want in [%d, %d]", got, tt.wantMin, tt.wantMax)
			}
			if h.Name() != l.Name() || h.Lock() != l {
				t.Fatalf("Held.Name() = %q; want %q", h.Name(), l.Name())
			}
		})
	}
}

func TestTokensAreFreshAndRandom(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "tokens", Config{TTL: time.Minute})
	seen := map[string]bool{}
	for range 100 {
		h := mustAcquire(t, l)
		if len(h.Token()) < 20 || seen[h.Token()] {
			t.Fatalf("token %q: too short or repeated", h.Token())
		}
		seen[h.Token()] = true
		if err := h.Release(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCustomTokenIsStoredByteExact(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "custom", Config{TTL: time.Minute})
	token := "worker-7\x00\xff\n end"
	h := mustAcquire(t, l, WithToken(token))
	if got := e.srv.String(t, "GET", l.Key()); got != token {
		t.Fatalf("GET = %q; want %q", got, token)
	}
	if ok, err := h.Owned(ctxT(t)); err != nil || !ok {
		t.Fatalf("Owned() = %v, %v; want true", ok, err)
	}
	if _, err := l.TryAcquire(ctxT(t), WithToken("")); err == nil {
		t.Fatal("TryAcquire(WithToken(\"\")) = nil error; want one")
	}
}

func TestTryAcquireWhenHeldElsewhere(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "busy", Config{TTL: time.Minute})
	h := mustAcquire(t, l)
	_, err := l.TryAcquire(ctxT(t))
	wantErr(t, "TryAcquire on a held lock", err, ErrNotAcquired)
	var le *Error
	if !errors.As(err, &le) || le.Name != "busy" || le.Op != "acquire" {
		t.Fatalf("errors.As(%v) = %+v; want Name busy, Op acquire", err, le)
	}
	if errors.Is(err, ErrUnavailable) {
		t.Fatalf("TryAcquire = %v; must not look like an unreachable server", err)
	}
	if got := e.srv.String(t, "GET", l.Key()); got != h.Token() {
		t.Fatalf("holder's token replaced by %q", got)
	}
}

func TestNotReentrant(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "reentrant", Config{TTL: time.Minute, BlockingTimeout: 300 * time.Millisecond, RetryInterval: 50 * time.Millisecond})
	h := mustAcquire(t, l)
	_, err := l.Acquire(ctxT(t))
	wantErr(t, "second Acquire by the holder", err, ErrNotAcquired)
	if ok, _ := h.Owned(ctxT(t)); !ok {
		t.Fatal("first acquisition lost its ownership")
	}
}

func TestShortBlockingTimeoutMakesOneAttempt(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "one-attempt", Config{TTL: time.Minute, RetryInterval: time.Second})
	mustAcquire(t, l)
	before := e.srv.CommandCalls(t, "evalsha", "eval")
	_, err := l.Acquire(ctxT(t), WithBlockingTimeout(200*time.Millisecond))
	wantErr(t, "Acquire with blocking timeout < retry interval", err, ErrNotAcquired)
	after := e.srv.CommandCalls(t, "evalsha", "eval")
	if after-before != 1 {
		t.Fatalf("scripts run = %d; want exactly 1 attempt", after-before)
	}
	if n := e.srv.CommandCalls(t, "subscribe"); n != 0 {
		t.Fatalf("SUBSCRIBE calls = %d; want 0 for a single attempt", n)
	}
}

func TestBlockingTimeoutReturnsNotAcquired(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "timeout", Config{TTL: time.Minute, RetryInterval: 20 * time.Millisecond})
	mustAcquire(t, l)
	_, err := l.Acquire(ctxT(t), WithBlockingTimeout(100*time.Millisecond))
	wantErr(t, "Acquire past its blocking timeout", err, ErrNotAcquired)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire = %v; a blocking timeout is not the caller's deadline", err)
	}
	if n := queued(l); n != 0 {
		t.Fatalf("waiters left = %d; want 0", n)
	}
}

// TestWaiterWakesOnRelease proves the wake-up is pushed: the fallback interval
// is an hour, so only the release's publish can wake the waiter.
func TestWaiterWakesOnRelease(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "wake", Config{TTL: time.Minute, RetryInterval: time.Hour})
	h := mustAcquire(t, l)
	got := make(chan *Held, 1)
	go func() {
		w, err := l.Acquire(ctxT(t))
		if err != nil {
			t.Error(err)
		}
		got <- w
	}()
	awaitQueued(t, l, 1)
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w := <-got
	if w == nil || w.Fence() <= h.Fence() {
		t.Fatalf("waiter = %v; want an acquisition with a fence above %d", w, h.Fence())
	}
	if err := w.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestWaiterTakesOverAtTTLEnd: the holder vanishes without releasing; the
// waiter (fallback interval an hour) wakes at the TTL's end, not before.
func TestWaiterTakesOverAtTTLEnd(t *testing.T) {
	e := newEnv(t)
	const ttl = 300 * time.Millisecond
	l := e.lock(t, "takeover", Config{TTL: ttl, RetryInterval: time.Hour})
	crashed := mustAcquire(t, l)
	w, err := l.Acquire(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if early := time.Until(crashed.AcquiredAt().Add(ttl)); early > 0 {
		t.Fatalf("took over %v before the holder's TTL ended", early)
	}
	if w.Fence() <= crashed.Fence() {
		t.Fatalf("Fence() = %d; want > %d", w.Fence(), crashed.Fence())
	}
}

func TestCancelledAcquireReturnsAndHoldsNothing(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "cancel", Config{TTL: time.Minute, RetryInterval: time.Hour})
	h := mustAcquire(t, l)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := l.Acquire(ctx)
		errc <- err
	}()
	awaitQueued(t, l, 1)
	cancel()
	err := <-errc
	wantErr(t, "Acquire after cancel", err, context.Canceled)
	if queued(l) != 0 {
		t.Fatal("cancelled waiter still queued")
	}
	if got := e.srv.String(t, "GET", l.Key()); got != h.Token() {
		t.Fatalf("GET = %q; want the holder's token", got)
	}
}

// TestCancelRacingTheSetLeavesNoKey cancels a TryAcquire whose script the
// server holds back (CLIENT PAUSE WRITE); when writes resume the SET runs,
// and the acquire's cleanup must delete the key by token.
func TestCancelRacingTheSetLeavesNoKey(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "race", Config{TTL: time.Minute})
	mustAcquire(t, e.lock(t, "warmup", Config{TTL: time.Minute})) // script cached: EVALSHA will run it
	e.srv.Do(t, "CLIENT", "PAUSE", "10000", "WRITE")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := l.TryAcquire(ctx)
		errc <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.Info(t, "clients")["blocked_clients"] == "0" { // the script reached the server
		if time.Now().After(deadline) {
			t.Fatal("the acquire script never reached the server")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	e.srv.Do(t, "CLIENT", "UNPAUSE")
	err := <-errc
	wantErr(t, "TryAcquire cancelled in flight", err, context.Canceled)
	if e.srv.String(t, "GET", l.keys.fence) == "" {
		t.Fatal("the acquire script never ran; the race was not exercised")
	}
	if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatalf("EXISTS %s = %d; want 0: the cancelled acquisition left a key", l.Key(), n)
	}
}

func TestContendedWaitersExcludeAndAllFinish(t *testing.T) {
	e := newEnv(t)
	contend(t, []*Lock{e.lock(t, "contended", Config{TTL: 10 * time.Second})}, 8, 25)
}

// TestLocalWaitersDoNotStampede: with many waiters in one process, each
// release costs no attempt at all: it grants the key to the next waiter.
func TestLocalWaitersDoNotStampede(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "stampede", Config{TTL: 10 * time.Second, RetryInterval: time.Hour})
	if err := mustAcquire(t, l).Release(ctxT(t)); err != nil { // scripts cached
		t.Fatal(err)
	}
	h := mustAcquire(t, l)
	const waiters = 10
	got := make(chan *Held, waiters)
	for range waiters {
		go func() {
			w, err := l.Acquire(ctxT(t))
			if err != nil {
				t.Error(err)
			}
			got <- w
		}()
	}
	awaitQueued(t, l, waiters)
	awaitIdleHead(t, l)
	before := e.srv.CommandCalls(t, "evalsha", "eval")
	for range waiters {
		if err := h.Release(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		h = <-got
	}
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if scripts := e.srv.CommandCalls(t, "evalsha", "eval") - before; scripts != waiters+1 {
		t.Fatalf("scripts for %d handoffs and a last release = %d; want %d (one per release)", waiters, scripts, waiters+1)
	}
}

func TestLockedSeesAnyValue(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "locked", Config{TTL: time.Minute})
	if ok, err := l.Locked(ctxT(t)); err != nil || ok {
		t.Fatalf("Locked() = %v, %v; want false", ok, err)
	}
	e.srv.String(t, "SET", l.Key(), "someone-else")
	if ok, err := l.Locked(ctxT(t)); err != nil || !ok {
		t.Fatalf("Locked() = %v, %v; want true for a foreign value", ok, err)
	}
}

func TestOwnedOnlyForTheStoredToken(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "owned", Config{TTL: time.Minute})
	h := mustAcquire(t, l)
	if ok, err := h.Owned(ctxT(t)); err != nil || !ok {
		t.Fatalf("Owned() = %v, %v; want true", ok, err)
	}
	e.srv.String(t, "SET", l.Key(), "other")
	if ok, err := h.Owned(ctxT(t)); err != nil || ok {
		t.Fatalf("Owned() after overwrite = %v, %v; want false", ok, err)
	}
	e.srv.Int(t, "DEL", l.Key())
	if ok, err := h.Owned(ctxT(t)); err != nil || ok {
		t.Fatalf("Owned() after delete = %v, %v; want false", ok, err)
	}
}

func TestInspect(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "inspect", Config{TTL: time.Minute})
	st, err := l.Inspect(ctxT(t))
	if err != nil || st.Held() {
		t.Fatalf("Inspect() = %+v, %v; want free", st, err)
	}
	h := mustAcquire(t, l)
	st, err = l.Inspect(ctxT(t))
	if err != nil || st.Token != h.Token() || st.Fence != h.Fence() || st.TTL <= 50*time.Second {
		t.Fatalf("Inspect() = %+v, %v; want token %q fence %d ttl ~1m", st, err, h.Token(), h.Fence())
	}
}

// TestWaitersShareConnections: waiters on many locks subscribe over the
// client's existing connections (RESP3 carries Pub/Sub on them), not one
// connection each.
func TestWaitersShareConnections(t *testing.T) {
	e := newEnv(t)
	const locks = 20
	ls := make([]*Lock, locks)
	for i := range ls {
		ls[i] = e.lock(t, "conn-"+strconv.Itoa(i), Config{TTL: time.Minute, RetryInterval: time.Hour})
		mustAcquire(t, ls[i])
	}
	before, _ := strconv.Atoi(e.srv.Info(t, "clients")["connected_clients"])
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = l.Acquire(ctx)
		}()
	}
	for _, l := range ls {
		awaitQueued(t, l, 1)
	}
	// Every lock's subscription is confirmed once the server counts its channel.
	deadline := time.Now().Add(10 * time.Second)
	for _, l := range ls {
		for e.srv.Subscribers(t, l.keys.grant+l.id) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("subscriptions never confirmed")
			}
			time.Sleep(time.Millisecond)
		}
	}
	after, _ := strconv.Atoi(e.srv.Info(t, "clients")["connected_clients"])
	t.Logf("connections: %d before, %d with %d locks waiting", before, after, locks)
	cancel()
	wg.Wait()
	if after-before > 1 {
		t.Fatalf("connections grew from %d to %d with %d waiting locks; want at most one more", before, after, locks)
	}
}
