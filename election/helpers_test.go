package election

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/valkey-io/valkey-go"
	"go.uber.org/goleak"
)

// Test timing: proportional to the defaults (15s/10s/2s), scaled down so a
// takeover after the TTL costs a second.
const (
	testTTL           = time.Second
	testRenewDeadline = 700 * time.Millisecond
	testRetryPeriod   = 200 * time.Millisecond

	// awaitTimeout bounds every wait for an event: far longer than any
	// transition should take, so a failure means a lost transition, not a
	// slow machine.
	awaitTimeout = 15 * time.Second
)

// testLogger discards logs unless BATON_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("BATON_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Kinds of recorded events.
const (
	evElected = "elected"
	evLost    = "lost"
	evLeader  = "leader"
	evRenew   = "renew"
)

// event is one callback invocation, as recorded by a group.
type event struct {
	kind   string
	id     string // the candidate whose callback ran
	fence  int64  // the term's, for elected and lost
	leader callbacks.Leader
	at     time.Time
}

func (ev event) String() string {
	if ev.kind == evLeader {
		return fmt.Sprintf("%s: leader %q fence %d", ev.id, ev.leader.Identity, ev.leader.Fence)
	}
	return fmt.Sprintf("%s: %s fence %d", ev.id, ev.kind, ev.fence)
}

// history is an append-only event log that tests wait on without sleeping:
// every append wakes the waiters.
type history struct {
	mu      sync.Mutex
	events  []event
	changed chan struct{} // closed and replaced at each append
}

func newHistory() *history { return &history{changed: make(chan struct{})} }

func (h *history) add(ev event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, ev)
	close(h.changed)
	h.changed = make(chan struct{})
}

// len returns the number of events so far: a cursor for await.
func (h *history) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.events)
}

func (h *history) snapshot() []event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]event(nil), h.events...)
}

// await returns the first event at or after index from that matches, and
// the index after it; it fails the test after awaitTimeout.
func (h *history) await(t testing.TB, from int, what string, match func(event) bool) (event, int) {
	t.Helper()
	deadline := time.NewTimer(awaitTimeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		for i := from; i < len(h.events); i++ {
			if match(h.events[i]) {
				ev := h.events[i]
				h.mu.Unlock()
				return ev, i + 1
			}
		}
		from = len(h.events)
		changed := h.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %s within %v; events:\n%v", what, awaitTimeout, h.snapshot())
		}
	}
}

func isElected(ev event) bool { return ev.kind == evElected }

func electedOtherThan(id string) func(event) bool {
	return func(ev event) bool { return ev.kind == evElected && ev.id != id }
}

func lostBy(id string) func(event) bool {
	return func(ev event) bool { return ev.kind == evLost && ev.id == id }
}

// group is a set of candidates of one election on one server. It checks the
// invariants every test relies on: never two OnElected running at once (when
// exclusive is set), OnLost only after OnElected, callbacks of one candidate
// never overlapping except OnNewLeader with OnElected.
type group struct {
	t    testing.TB
	srv  *valkeytest.Server
	name string
	log  *history

	leaders  atomic.Int32 // OnElected calls running
	overlaps atomic.Int32 // times leaders went above 1
}

func newGroup(t testing.TB) *group {
	t.Helper()
	return &group{t: t, srv: valkeytest.Start(t), name: "election-" + t.Name(), log: newHistory()}
}

// candidate is one Elector of a group, with its own client.
type candidate struct {
	g  *group
	id string
	e  *Elector

	// work, if set, runs inside OnElected before it waits for ctx.
	work func(ctx context.Context, term callbacks.Term)

	elected, lost atomic.Int32
	renewMu       sync.Mutex
	lastRenew     time.Time    // guarded by renewMu: the term's start or its last renewal's send time
	busy          atomic.Int32 // OnLost or OnNewLeader running
	overlaps      atomic.Int32 // OnLost/OnNewLeader overlapping each other, or OnLost overlapping OnElected
	inElected     atomic.Bool

	cancel context.CancelFunc
	done   chan error
}

// add builds a candidate named id with the test timing, a fresh client and
// the recording callbacks; mod may change its Config.
func (g *group) add(id string, mod func(*Config)) *candidate {
	g.t.Helper()
	return g.addWith(id, g.srv.Client(g.t), mod)
}

func (g *group) addWith(id string, client valkey.Client, mod func(*Config)) *candidate {
	g.t.Helper()
	c := &candidate{g: g, id: id}
	cfg := Config{
		Name:          g.name,
		Identity:      id,
		TTL:           testTTL,
		RenewDeadline: testRenewDeadline,
		RetryPeriod:   testRetryPeriod,
		Logger:        testLogger(),
		Callbacks: callbacks.Callbacks{
			OnElected:   c.onElected,
			OnLost:      c.onLost,
			OnNewLeader: c.onNewLeader,
		},
		OnRenew: c.onRenew,
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(client, cfg)
	if err != nil {
		g.t.Fatalf("New(%s) = %v", id, err)
	}
	c.e = e
	return c
}

func (c *candidate) onElected(ctx context.Context, term callbacks.Term) {
	g := c.g
	if g.leaders.Add(1) > 1 {
		g.overlaps.Add(1)
	}
	c.inElected.Store(true)
	c.elected.Add(1)
	c.setLastRenew(term.Start)
	g.log.add(event{kind: evElected, id: c.id, fence: term.Fence, at: time.Now()})
	if c.work != nil {
		c.work(ctx, term)
	}
	<-ctx.Done()
	c.inElected.Store(false)
	g.leaders.Add(-1)
}

func (c *candidate) onLost(term callbacks.Term) {
	c.enter()
	defer c.busy.Add(-1)
	if c.inElected.Load() {
		c.overlaps.Add(1)
	}
	if c.lost.Add(1) > c.elected.Load() {
		c.overlaps.Add(1) // OnLost without OnElected
	}
	c.g.log.add(event{kind: evLost, id: c.id, fence: term.Fence, at: time.Now()})
}

func (c *candidate) onNewLeader(l callbacks.Leader) {
	c.enter()
	defer c.busy.Add(-1)
	c.g.log.add(event{kind: evLeader, id: c.id, leader: l, at: time.Now()})
}

func (c *candidate) onRenew(at time.Time) {
	c.setLastRenew(at)
	c.g.log.add(event{kind: evRenew, id: c.id, at: at})
}

func (c *candidate) setLastRenew(at time.Time) {
	c.renewMu.Lock()
	defer c.renewMu.Unlock()
	if at.After(c.lastRenew) {
		c.lastRenew = at
	}
}

// lastRenewal returns the send time of the candidate's last successful
// renewal, or the start of its last term.
func (c *candidate) lastRenewal() time.Time {
	c.renewMu.Lock()
	defer c.renewMu.Unlock()
	return c.lastRenew
}

func (c *candidate) enter() {
	if c.busy.Add(1) > 1 {
		c.overlaps.Add(1)
	}
}

// start runs the candidate's elector until stop or the end of the test.
func (c *candidate) start() *candidate {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan error, 1)
	go func() { c.done <- c.e.Run(ctx) }()
	c.g.t.Cleanup(func() { c.stop() })
	return c
}

// stop cancels Run and waits for it; it is safe to call twice.
func (c *candidate) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	c.cancel = nil
	select {
	case <-c.done:
	case <-time.After(awaitTimeout):
		c.g.t.Errorf("%s: Run did not return within %v of its ctx ending", c.id, awaitTimeout)
	}
}

// checkCallbacks verifies the per-candidate callback contract once the
// candidate has stopped.
func (c *candidate) checkCallbacks(t testing.TB) {
	t.Helper()
	if e, l := c.elected.Load(), c.lost.Load(); e != l {
		t.Errorf("%s: OnElected ran %d times, OnLost %d; want equal", c.id, e, l)
	}
	if n := c.overlaps.Load(); n != 0 {
		t.Errorf("%s: callbacks overlapped %d times; want 0", c.id, n)
	}
}

// finish stops every candidate, checks each one's callbacks, and checks that
// no two OnElected ran at once.
func (g *group) finish(t testing.TB, cs []*candidate) {
	t.Helper()
	for _, c := range cs {
		c.stop()
		c.checkCallbacks(t)
	}
	g.checkExclusive(t)
}

// checkExclusive verifies that no two OnElected ran at once.
func (g *group) checkExclusive(t testing.TB) {
	t.Helper()
	if n := g.overlaps.Load(); n != 0 {
		t.Errorf("two leaders' OnElected ran at once %d times; want 0", n)
	}
}

// key returns the election's lock key on the server.
func (g *group) key() string { return DefaultKeyPrefix + g.name }

// find returns the candidate named id among cs.
func find(t testing.TB, cs []*candidate, id string) *candidate {
	t.Helper()
	for _, c := range cs {
		if c.id == id {
			return c
		}
	}
	t.Fatalf("no candidate %q", id)
	return nil
}

// checkLeaks makes t fail, naming it, if a goroutine that started during
// the test is still running once the test and its cleanups are done (the
// electors stopped, the clients closed, the servers gone); goleak waits a
// little for goroutines that are on their way out. Call it first, so that
// its check is the last cleanup. A test that calls it must not be
// parallel: goleak sees every goroutine of the process, and a parallel
// sibling's would be blamed on it. (goleak.VerifyTestMain still checks the
// package as a whole.)
func checkLeaks(t *testing.T) {
	t.Helper()
	opts := append(valkeytest.LeakOptions(), goleak.IgnoreCurrent())
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// testCtx returns a context that ends with the test, bounded for safety.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// syncBuffer is a buffer for a slog handler written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}

func fmtInt(n int64) string { return fmt.Sprint(n) }
