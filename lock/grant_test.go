package lock

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

// awaitIdleHead waits until l's queue has a head that is subscribed, not
// attempting and not about to: a release by l's holder then grants to it.
func awaitIdleHead(t *testing.T, l *Lock) {
	t.Helper()
	q := &l.queue
	deadline := time.Now().Add(10 * time.Second)
	for {
		q.mu.Lock()
		idle := len(q.waiters) > 0 && q.subbed && !q.waiters[0].attempt && !q.waiters[0].attempting
		q.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the queue's head never became idle")
		}
		time.Sleep(time.Millisecond)
	}
}

// messages subscribes to l's channel on a connection of its own and returns
// what is published there, from once the subscription is confirmed.
func messages(t *testing.T, e *env, l *Lock) <-chan string {
	t.Helper()
	c, err := valkey.NewClient(e.srv.ClientOption())
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan string, 16)
	subscribed := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		hooked := valkey.WithOnSubscriptionHook(ctx, func(valkey.PubSubSubscription) { close(subscribed) })
		_ = c.Receive(hooked, c.B().Subscribe().Channel(l.Channel()).Build(), func(m valkey.PubSubMessage) { msgs <- m.Message })
	}()
	t.Cleanup(func() { cancel(); <-done; c.Close() })
	select {
	case <-subscribed:
	case <-ctxT(t).Done():
		t.Fatal("subscription not confirmed")
	}
	return msgs
}

// nextMessage publishes a marker after whatever l's channel got so far and
// returns the first message: the marker itself when nothing else came.
func nextMessage(t *testing.T, e *env, l *Lock, msgs <-chan string) string {
	t.Helper()
	e.srv.Do(t, "PUBLISH", l.Channel(), "marker")
	select {
	case m := <-msgs:
		return m
	case <-ctxT(t).Done():
		t.Fatal("no message, not even the marker")
		return ""
	}
}

// acquireAsync runs l.Acquire(ctx) in a goroutine; its result comes on the
// returned channels.
func acquireAsync(ctx context.Context, l *Lock) (<-chan *Held, <-chan error) {
	got, errc := make(chan *Held, 1), make(chan error, 1)
	go func() {
		h, err := l.Acquire(ctx)
		got <- h
		errc <- err
	}()
	return got, errc
}

// awaitAcquired waits for the result of acquireAsync and fails the test on
// an error.
func awaitAcquired(t *testing.T, got <-chan *Held, errc <-chan error) *Held {
	t.Helper()
	select {
	case h := <-got:
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		return h
	case <-ctxT(t).Done():
		t.Fatal("Acquire did not return")
		return nil
	}
}

// TestReleaseGrantsToTheNextLocalWaiter: the holder's release hands the key
// to the idle head of its own Lock in the same script: one script from the
// release to the waiter holding, a fresh TTL (or none), a higher fence,
// nothing published.
func TestReleaseGrantsToTheNextLocalWaiter(t *testing.T) {
	for _, ttl := range []time.Duration{time.Minute, NoExpiry} {
		t.Run("ttl="+ttl.String(), func(t *testing.T) {
			e := newEnv(t)
			l := e.lock(t, "grant", Config{TTL: ttl, RetryInterval: time.Hour})
			msgs := messages(t, e, l)
			if err := mustAcquire(t, l).Release(ctxT(t)); err != nil { // the scripts are cached: EVALSHA runs them
				t.Fatal(err)
			}
			h := mustAcquire(t, l)
			got, errc := acquireAsync(ctxT(t), l)
			awaitIdleHead(t, l)
			before := e.srv.CommandCalls(t, "evalsha", "eval")
			released := time.Now()
			if err := h.Release(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			w := <-got
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if n := e.srv.CommandCalls(t, "evalsha", "eval") - before; n != 1 {
				t.Errorf("scripts from the release to the waiter holding = %d; want 1 (the release)", n)
			}
			if w.Fence() <= h.Fence() {
				t.Errorf("granted fence %d; want > %d", w.Fence(), h.Fence())
			}
			if got := e.srv.String(t, "GET", l.Key()); got != w.Token() {
				t.Errorf("GET = %q; want the waiter's token %q", got, w.Token())
			}
			if w.AcquiredAt().Before(released) {
				t.Errorf("AcquiredAt %v is before the release was sent (%v)", w.AcquiredAt(), released)
			}
			pttl := e.srv.Int(t, "PTTL", l.Key())
			if ttl == 0 && pttl != -1 || ttl > 0 && (pttl <= 0 || pttl > ttl.Milliseconds()) {
				t.Errorf("PTTL = %d; want the configured TTL %v", pttl, ttl)
			}
			if m := nextMessage(t, e, l, msgs); m != "marker" {
				t.Errorf("published %q; a grant publishes nothing without Announce", m)
			}
			if err := w.Release(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestProcessesTakeTurnsInArrivalOrder: a Lock (as another process) whose
// waiter joined the line before the holder's own next waiter gets the key
// first, handed over by the release; the holder's Lock goes to the back of
// the line and gets it at the next release. Nothing is published on the
// lock's channel: each handover goes to the grantee's own channel.
func TestProcessesTakeTurnsInArrivalOrder(t *testing.T) {
	e := newEnv(t)
	local := e.lock(t, "turns", Config{TTL: time.Minute, RetryInterval: time.Hour})
	other := e.lock(t, "turns", Config{TTL: time.Minute, RetryInterval: time.Hour})
	msgs := messages(t, e, local)
	h := mustAcquire(t, local)
	gotOther, errOther := acquireAsync(ctxT(t), other)
	awaitEntry(t, e, other)
	gotLocal, errLocal := acquireAsync(ctxT(t), local)
	awaitIdleHead(t, local)
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var w *Held
	select {
	case w = <-gotOther:
		if err := <-errOther; err != nil {
			t.Fatal(err)
		}
	case w = <-gotLocal:
		<-errLocal
		t.Fatalf("the holder's own waiter got the key first (fence %d); want the other Lock's, which joined the line first", w.Fence())
	}
	if w.Fence() <= h.Fence() {
		t.Fatalf("fence %d; want > %d", w.Fence(), h.Fence())
	}
	if entries, _ := e.srv.Do(t, "LRANGE", local.keys.queue, "0", "-1").AsStrSlice(); len(entries) != 1 || !strings.HasPrefix(entries[0], local.id+" ") {
		t.Fatalf("queue after the handover = %q; want the holder's Lock back in line", entries)
	}
	if err := w.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w2 := awaitAcquired(t, gotLocal, errLocal)
	if w2.Fence() <= w.Fence() {
		t.Fatalf("fence %d; want > %d", w2.Fence(), w.Fence())
	}
	if err := w2.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		t.Fatalf("published %q on the lock's channel; want nothing", m)
	default:
	}
}

// TestGrantToAWaiterThatGaveUpIsPassedOn: the head gives up while the
// release that grants to it is held back by the server (CLIENT PAUSE WRITE);
// the grant lands on nobody's waiter, and the releaser passes it on to the
// next waiter. The announced events show each step.
func TestGrantToAWaiterThatGaveUpIsPassedOn(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "gave-up", Config{TTL: time.Minute, RetryInterval: time.Hour, Announce: true})
	h := mustAcquire(t, l)
	msgs := messages(t, e, l) // from after the holder's acquisition
	ctx1, cancel1 := context.WithCancel(ctxT(t))
	got1, err1 := acquireAsync(ctx1, l)
	awaitIdleHead(t, l)
	got2, err2 := acquireAsync(ctxT(t), l)
	awaitQueued(t, l, 2)

	e.srv.Do(t, "CLIENT", "PAUSE", "10000", "WRITE")
	released := make(chan error, 1)
	go func() { released <- h.Release(ctxT(t)) }()
	awaitBlockedClient(t, e)
	cancel1()
	if w, err := <-got1, <-err1; w != nil || err == nil {
		t.Fatalf("cancelled head: Acquire = %v, %v; want an error", w, err)
	}
	e.srv.Do(t, "CLIENT", "UNPAUSE")
	if err := <-released; err != nil {
		t.Fatalf("Release = %v", err)
	}
	w2 := <-got2
	if err := <-err2; err != nil {
		t.Fatal(err)
	}
	if got := e.srv.String(t, "GET", l.Key()); got != w2.Token() {
		t.Fatalf("GET = %q; want the second waiter's token", got)
	}
	wantGrantTakenBack(t, msgs, h, w2, time.Minute, true, "grant to the first waiter, release, grant to the second, its release")
	if err := w2.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestLostGrantReplyIsTakenBack: the release that grants is held back until
// its caller's context has ended, so its outcome is unknown to the caller:
// the grant happens on the server, the caller's cleanup takes it back by the
// waiter's token, and the waiter then acquires by itself.
func TestLostGrantReplyIsTakenBack(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "lost-grant", Config{TTL: time.Minute, RetryInterval: time.Hour, Announce: true})
	if err := mustAcquire(t, l).Release(ctxT(t)); err != nil { // EVALSHA will run the release: no NOSCRIPT, no EVAL after the cancel
		t.Fatal(err)
	}
	h := mustAcquire(t, l)
	msgs := messages(t, e, l) // from after the holder's acquisition
	got, errc := acquireAsync(ctxT(t), l)
	awaitIdleHead(t, l)

	// Writes resume by themselves, well before the cleanup's one-second
	// bound: a cleanup that timed out would close the connection, and the
	// held-back script would never run.
	e.srv.Do(t, "CLIENT", "PAUSE", "500", "WRITE")
	// No deadline: valkey-go sends a call with a deadline synchronously,
	// and it would wait for the server instead of returning on cancel.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	released := make(chan error, 1)
	go func() { released <- h.Release(ctx) }()
	awaitBlockedClient(t, e)
	cancel() // the release script is at the server: its reply will be lost
	err := <-released
	wantErr(t, "Release cancelled in flight", err, context.Canceled)
	w := <-got
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := e.srv.String(t, "GET", l.Key()); got != w.Token() {
		t.Fatalf("GET = %q; want the waiter's token", got)
	}
	wantGrantTakenBack(t, msgs, h, w, time.Minute, false, "grant, release, its cleanup, the waiter's own acquisition")
	if err := w.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// wantGrantTakenBack checks the next four messages of an announcing lock
// whose TTL is ttl: h released with a grant (the grant announced first), the
// granted acquisition released again, and last acquired with a fence of its
// own: passed on by that release (announced before it), or acquired after.
func wantGrantTakenBack(t *testing.T, msgs <-chan string, h, last *Held, ttl time.Duration, passedOn bool, what string) {
	t.Helper()
	var got []string
	for len(got) < 4 {
		select {
		case m := <-msgs:
			got = append(got, m)
		case <-ctxT(t).Done():
			t.Fatalf("messages %q; want four", got)
		}
	}
	ev, ok := parseEvent(got[0])
	grant := releasedMessage(ev.Fence)
	want := []string{got[0], releasedMessage(h.Fence()), grant, acquiredMessage(last, ttl)}
	if passedOn {
		want[2], want[3] = want[3], want[2]
	}
	if !ok || ev.Kind != Acquired || ev.TTL != ttl || ev.Holder == "" || !slices.Equal(got, want) || ev.Fence == last.Fence() {
		t.Fatalf("published %q; want %s: %q", got, what, want)
	}
}

// awaitBlockedClient waits until the server holds back a client (CLIENT
// PAUSE): the call under test reached it.
func awaitBlockedClient(t *testing.T, e *env) {
	t.Helper()
	const n = 1
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := strconv.Atoi(e.srv.Info(t, "clients")["blocked_clients"])
		if err != nil {
			t.Fatal(err)
		}
		if b >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("blocked clients = %d; want %d", b, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTwoLocksContendFairly: two Locks on one name (as two processes), four
// workers each, loop acquire + release. Grants inside one Lock must not
// starve the other: both finish, and exclusion holds throughout.
func TestTwoLocksContendFairly(t *testing.T) {
	e := newEnv(t)
	other, err := New(e.srv.Client(t), "two", Config{TTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 25
	order := contend(t, []*Lock{e.lock(t, "two", Config{TTL: 10 * time.Second}), other}, 4, rounds)
	// A Lock granting among its own waiters while the other's wait would
	// switch holders only at the other's fallback attempts (a second apart).
	switches := 0
	for k := 1; k < len(order); k++ {
		if order[k] != order[k-1] {
			switches++
		}
	}
	t.Logf("holder switched between the Locks %d times in %d acquisitions", switches, len(order))
	if switches < rounds {
		t.Fatalf("holder switched between the Locks %d times in %d acquisitions; want at least %d", switches, len(order), rounds)
	}
}

// TestStaleGrantIsNotPassedOn: a grant message older than an acquisition
// this *Lock made itself (relayed late, as by a node demoted in a failover)
// is neither taken nor passed on. Passing it on releases by the grant's
// token, which, with one token for every acquisition (an identity), is the
// live acquisition's.
func TestStaleGrantIsNotPassedOn(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "stale", Config{TTL: time.Minute, RetryInterval: time.Hour})
	h := mustAcquire(t, l, WithUniqueToken("host-1"))
	// What the grant subscription does with the message.
	l.queue.grantHeard(h.Fence()-1, "host-1")
	l.queue.passing.Wait()
	if ok, err := h.Owned(ctxT(t)); err != nil || !ok {
		t.Fatalf("after a stale grant to its token, Owned() = %v, %v; want true", ok, err)
	}
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}
