package lock

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
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
			e.srv.Int(t, "DEL", l.Key()) // expired or deleted holders count too
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
	if n := e.srv.Int(t, "EXISTS", l.keys.fence); n != 0 {
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
	checkLeaks(t)
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

// TestFencesSurviveACounterThatFellBehind simulates a failover to a replica
// that missed the latest increments: the counter is older than the last
// token issued. The next token must still be higher.
func TestFencesSurviveACounterThatFellBehind(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "fence-behind", Config{TTL: time.Minute})
	h := mustAcquire(t, l)
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	e.srv.String(t, "SET", l.keys.fence, "5")
	h2 := mustAcquire(t, l)
	if h2.Fence() <= h.Fence() {
		t.Fatalf("Fence() after the counter fell behind = %d; want > %d", h2.Fence(), h.Fence())
	}
}

// TestFencesFollowACounterAheadOfTheClock: when the counter is ahead of the
// server's clock (more than a million acquisitions a second, or a clock that
// stepped back), the next fence is one more than the counter, and the counter
// keeps the fence issued.
func TestFencesFollowACounterAheadOfTheClock(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "fence-ahead", Config{TTL: time.Minute})
	h := mustAcquire(t, l)
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	ahead := h.Fence() + 1_000_000_000_000 // about 11 days of microseconds ahead
	e.srv.String(t, "SET", l.keys.fence, strconv.FormatInt(ahead, 10))
	for i := range int64(3) {
		h := mustAcquire(t, l)
		if want := ahead + 1 + i; h.Fence() != want {
			t.Fatalf("acquisition %d: Fence() = %d; want %d", i, h.Fence(), want)
		}
		if got := e.srv.String(t, "GET", l.keys.fence); got != strconv.FormatInt(h.Fence(), 10) {
			t.Fatalf("counter = %s; want the fence issued, %d", got, h.Fence())
		}
		if err := h.Release(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFencesReplaceACounterThatIsNotANumber: a counter overwritten with
// garbage does not block acquisitions; the clock takes over.
func TestFencesReplaceACounterThatIsNotANumber(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "fence-garbage", Config{TTL: time.Minute})
	before := mustAcquire(t, l)
	if err := before.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	e.srv.String(t, "SET", l.keys.fence, "not a number")
	h := mustAcquire(t, l)
	if h.Fence() <= before.Fence() {
		t.Fatalf("Fence() = %d; want > %d", h.Fence(), before.Fence())
	}
}

// TestEventsCarryTheExactFence subscribes as a watcher would and checks the
// messages name the fencing token digit for digit (it exceeds float64's
// 14-digit formatting in Lua), and the holder and TTL of each acquisition.
func TestEventsCarryTheExactFence(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t)
	const ttl = time.Minute
	l := e.lock(t, "events", Config{TTL: ttl, Announce: true})
	msgs := make(chan string, 8)
	ctx, cancel := context.WithCancel(context.Background())
	subscribed := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		hooked := valkey.WithOnSubscriptionHook(ctx, func(valkey.PubSubSubscription) { close(subscribed) })
		done <- e.client.Receive(hooked, e.client.B().Subscribe().Channel(l.Channel()).Build(),
			func(m valkey.PubSubMessage) { msgs <- m.Message })
	}()
	defer func() { cancel(); <-done }()
	<-subscribed
	h := mustAcquire(t, l)
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// A release publishes the releaser's own fence, even when the counter
	// has moved (here by hand; a lossy failover could do it).
	h2 := mustAcquire(t, l)
	e.srv.String(t, "SET", l.keys.fence, strconv.FormatInt(h2.Fence()+1000, 10))
	if err := h2.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// The cleanup of an acquisition whose reply was lost does not know its
	// fence: it publishes the counter's, which is that acquisition's.
	h3 := mustAcquire(t, l)
	l.cleanup(ctxT(t), h3.Token())
	if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatalf("EXISTS after cleanup = %d; want 0", n)
	}
	for _, want := range []string{
		acquiredMessage(h, ttl),
		releasedMessage(h.Fence()),
		acquiredMessage(h2, ttl),
		releasedMessage(h2.Fence()),
		acquiredMessage(h3, ttl),
		releasedMessage(h3.Fence()),
	} {
		select {
		case got := <-msgs:
			if got != want {
				t.Fatalf("message = %q; want %q", got, want)
			}
		case <-ctxT(t).Done():
			t.Fatalf("no message; want %q", want)
		}
	}
}

// acquiredMessage is what an announcing lock with ttl publishes when h
// acquires it.
func acquiredMessage(h *Held, ttl time.Duration) string {
	return fmt.Sprintf("acquired:%d:%d:%s", h.Fence(), ttl.Milliseconds(), h.Token())
}

// TestAttemptReportsTheHoldersTTL: a failed attempt returns the holder's
// remaining TTL, or a negative one for a key without TTL.
func TestAttemptReportsTheHoldersTTL(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t)
	l := e.lock(t, "held-elsewhere", Config{TTL: time.Minute})
	for _, c := range []struct {
		set      []string
		min, max time.Duration
	}{
		{[]string{"SET", l.Key(), "other", "PX", "5000"}, 4 * time.Second, 5 * time.Second},
		{[]string{"SET", l.Key(), "other"}, -1, -1},
	} {
		e.srv.String(t, c.set...)
		res, err := l.attempt(ctxT(t), attemptArgs{token: newToken(), own: true})
		pttl := res.pttl
		if err != nil || res.held != nil {
			t.Fatalf("%v: attempt = %v, %v; want held elsewhere", c.set, res.held, err)
		}
		if c.max < 0 && pttl >= 0 || c.max >= 0 && (pttl < c.min || pttl > c.max) {
			t.Fatalf("%v: pttl = %v; want in [%v, %v]", c.set, pttl, c.min, c.max)
		}
	}
	for reply, want := range map[int64]time.Duration{-1: -1, -2: 0, -3: time.Millisecond, -5002: 5 * time.Second} {
		if got := acquireHeldBy(reply); got != want {
			t.Errorf("acquireHeldBy(%d) = %v; want %v", reply, got, want)
		}
	}
}

// TestFollowReportsEventsWithTheirFence follows an announcing lock as
// election watchers do: subscription first, then each acquisition and release
// with its fence.
func TestFollowReportsEventsWithTheirFence(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t)
	l := e.lock(t, "follow", Config{TTL: time.Minute, Announce: true})
	events := follow(t, l)
	if ev := nextEvent(t, events); ev.Kind != Subscribed {
		t.Fatalf("first event = %+v; want Subscribed", ev)
	}
	h := mustAcquire(t, l)
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []Event{{Kind: Acquired, Fence: h.Fence(), Holder: h.Token(), TTL: time.Minute}, {Kind: Released, Fence: h.Fence()}} {
		if got := nextEvent(t, events); got != want {
			t.Fatalf("event = %+v; want %+v", got, want)
		}
	}
}

func TestParseEvent(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want Event
		ok   bool
	}{
		{"released:17", Event{Kind: Released, Fence: 17}, true},
		{"acquired:17", Event{Kind: Acquired, Fence: 17}, true}, // an older publisher: no holder
		{"acquired:17:1500:host-a#x1", Event{Kind: Acquired, Fence: 17, Holder: "host-a#x1", TTL: 1500 * time.Millisecond}, true},
		{"acquired:17:0:tok", Event{Kind: Acquired, Fence: 17, Holder: "tok", TTL: -1}, true}, // no expiry
		{"acquired:17:20:a:b:c", Event{Kind: Acquired, Fence: 17, Holder: "a:b:c", TTL: 20 * time.Millisecond}, true},
		{"acquired:17:20:", Event{}, false},
		{"acquired:17:x:tok", Event{}, false},
		{"acquired:17:20", Event{}, false},
		{"acquired:x", Event{}, false},
		{"released:", Event{}, false},
		{"granted:1:t", Event{}, false},
	} {
		got, ok := parseEvent(tc.msg)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseEvent(%q) = %+v, %v; want %+v, %v", tc.msg, got, ok, tc.want, tc.ok)
		}
	}
}

// TestQuietLockPublishesNothing: without Announce, neither an acquisition nor
// a release is published on the lock's channel, not even for a waiter of
// another process (the release hands it the key on its own grant channel). An
// announcing Lock on the same name marks where the quiet one's messages
// would have come.
func TestQuietLockPublishesNothing(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t)
	quiet := e.lock(t, "quiet", Config{TTL: time.Minute})
	loud := e.lock(t, "quiet", Config{TTL: time.Minute, Announce: true})
	events := follow(t, loud)
	if ev := nextEvent(t, events); ev.Kind != Subscribed {
		t.Fatalf("first event = %+v; want Subscribed", ev)
	}
	h := mustAcquire(t, quiet)
	waiter := e.lock(t, "quiet", Config{TTL: time.Minute})
	got, errc := acquireAsync(ctxT(t), waiter)
	awaitEntry(t, e, waiter)
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w := awaitAcquired(t, got, errc)
	if err := w.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	mark := mustAcquire(t, loud)
	ev := nextEvent(t, events)
	for ev.Kind == Subscribed { // the waiter's subscription, on the same connection
		ev = nextEvent(t, events)
	}
	if want := (Event{Kind: Acquired, Fence: mark.Fence(), Holder: mark.Token(), TTL: time.Minute}); ev != want {
		t.Fatalf("after quiet acquisitions, a handover and releases, event = %+v; want the marker %+v", ev, want)
	}
	if err := mark.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// awaitEntry waits until l's entry is in line on the server.
func awaitEntry(t *testing.T, e *env, l *Lock) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, err := e.srv.Do(t, "LRANGE", l.keys.queue, "0", "-1").AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			if strings.HasPrefix(en, l.id+" ") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's entry never joined the line: %q", l.id, entries)
		}
		time.Sleep(time.Millisecond)
	}
}

// follow runs l.Follow until the test ends and returns its events.
func follow(t *testing.T, l *Lock) <-chan Event {
	t.Helper()
	events := make(chan Event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Follow(ctx, func(ev Event) { events <- ev })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return events
}

// nextEvent returns the next event, failing the test if none comes.
func nextEvent(t *testing.T, events <-chan Event) Event {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-ctxT(t).Done():
		t.Fatal("no event")
		return Event{}
	}
}
