package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/baton-dev/baton/callbacks"
)

func TestResignHandsOver(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	cs := []*candidate{g.add("a", nil).start(), g.add("b", nil).start()}

	first, cur := g.log.await(t, 0, "first election", isElected)
	leader := find(t, cs, first.id)
	if term, ok := leader.e.Term(); !ok || term.Fence != first.fence || term.Identity != leader.id {
		t.Errorf("%s.Term() = %+v, %v; want fence %d, true", leader.id, term, ok, first.fence)
	}
	if !leader.e.IsLeader() {
		t.Errorf("%s.IsLeader() = false; want true", leader.id)
	}

	start := time.Now()
	if err := leader.e.Resign(testCtx(t)); err != nil {
		t.Fatalf("%s.Resign = %v", leader.id, err)
	}
	returned := time.Since(start)
	next, _ := g.log.await(t, cur, "election of the standby", electedOtherThan(leader.id))
	t.Logf("resign -> standby OnElected: %v (Resign returned after %v)", next.at.Sub(start), returned)
	if leader.e.IsLeader() {
		t.Errorf("%s.IsLeader() after Resign = true; want false", leader.id)
	}
	if next.fence <= first.fence {
		t.Errorf("new term's fence = %d; want > %d", next.fence, first.fence)
	}
	g.log.await(t, cur, "OnLost of the resigned leader", lostBy(leader.id))
	// The handover must not wait for the TTL, nor for the standby's
	// fallback retry.
	if d := next.at.Sub(start); d >= testRetryPeriod {
		t.Errorf("resign -> standby elected took %v; want well under the retry period %v", d, testRetryPeriod)
	}

	g.finish(t, cs)
}

func TestExactlyOneLeaderAcrossResigns(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	var cs []*candidate
	for _, id := range []string{"a", "b", "c"} {
		cs = append(cs, g.add(id, nil).start())
	}
	ev, cur := g.log.await(t, 0, "first election", isElected)
	var handoffs []time.Duration
	for range 5 {
		leader := find(t, cs, ev.id)
		start := time.Now()
		if err := leader.e.Resign(testCtx(t)); err != nil {
			t.Fatalf("%s.Resign = %v", leader.id, err)
		}
		// Usually a standby wins within a round trip. But when every other
		// candidate resigned less than a retry period ago, nobody else is
		// campaigning, and whichever pause ends first wins: it may be the
		// resigner's own. All a resigner promises is not to compete again
		// for a retry period.
		prev := ev.fence
		next, after := g.log.await(t, cur, "next election", func(e event) bool { return e.kind == evElected && e.fence > prev })
		if next.id == leader.id && next.at.Sub(start) < testRetryPeriod {
			t.Errorf("%s won again %v after resigning; want a pause of at least the retry period %v", leader.id, next.at.Sub(start), testRetryPeriod)
		}
		handoffs = append(handoffs, next.at.Sub(start))
		if n := g.leaders.Load(); n != 1 {
			t.Errorf("after %s resigned, %d OnElected running; want 1", leader.id, n)
		}
		ev, cur = next, after
	}
	t.Logf("resign -> next OnElected, 3 candidates: %v", handoffs)
	g.finish(t, cs)
}

func TestTakeoverAfterTTLWhenLeaderStopsWithoutRelease(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	keep := func(c *Config) { c.KeepOnCancel = true }
	cs := []*candidate{g.add("a", keep).start(), g.add("b", keep).start()}
	first, cur := g.log.await(t, 0, "first election", isElected)
	leader := find(t, cs, first.id)

	leader.stop()
	stopped := time.Now()
	lastSent := leader.lastRenewal()
	if ttl, err := g.srv.Do(t, "PTTL", g.key()).AsInt64(); err != nil || ttl <= 0 {
		t.Fatalf("PTTL %s after the leader stopped with KeepOnCancel = %d, %v; want the key kept", g.key(), ttl, err)
	}
	next, _ := g.log.await(t, cur, "takeover by the standby", electedOtherThan(leader.id))
	expiry := lastSent.Add(testTTL) // the server's expiry is no earlier than this
	t.Logf("leader stopped; standby elected %v after stop, %v after the earliest possible expiry",
		next.at.Sub(stopped), next.at.Sub(expiry))
	if next.at.Before(expiry) {
		t.Errorf("standby elected at %v, before the kept key could expire (%v)", next.at, expiry)
	}
	g.finish(t, cs)
}

func TestReleaseOnCancelByDefault(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	cs := []*candidate{g.add("a", nil).start(), g.add("b", nil).start()}
	first, cur := g.log.await(t, 0, "first election", isElected)
	leader := find(t, cs, first.id)

	start := time.Now()
	leader.stop()
	lastSent := leader.lastRenewal()
	next, _ := g.log.await(t, cur, "takeover by the standby", electedOtherThan(leader.id))
	t.Logf("leader's Run cancelled -> standby OnElected: %v", next.at.Sub(start))
	if expiry := lastSent.Add(testTTL); !next.at.Before(expiry) {
		t.Errorf("standby elected at %v, not before the key's TTL end %v: the leader did not release", next.at, expiry)
	}
	if _, cur = g.log.await(t, 0, "OnLost of the stopped leader", lostBy(leader.id)); cur == 0 {
		t.Fatal("unreachable")
	}
	g.finish(t, cs)
}

func TestRunTwiceIsAnError(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	c := g.add("a", nil).start()
	g.log.await(t, 0, "election", isElected)
	if err := c.e.Run(testCtx(t)); !errors.Is(err, ErrRunning) {
		t.Errorf("second concurrent Run = %v; want ErrRunning", err)
	}
	c.stop()
	// Run again once the first Run has returned: allowed.
	cur := g.log.len()
	c.start()
	g.log.await(t, cur, "election in the second Run", isElected)
	c.stop()
	c.checkCallbacks(t)
}

func TestRunReturnsCtxError(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	c := g.add("a", nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.e.Run(ctx) }()
	g.log.await(t, 0, "election", isElected)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run after cancel = %v; want context.Canceled", err)
	}
	// Every callback has returned by now.
	if e, l := c.elected.Load(), c.lost.Load(); e != 1 || l != 1 {
		t.Errorf("after Run returned: OnElected %d, OnLost %d; want 1, 1", e, l)
	}
}

func TestResignWhenNotLeaderIsNoop(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	a := g.add("a", nil)
	if err := a.e.Resign(testCtx(t)); err != nil {
		t.Errorf("Resign before Run = %v; want nil", err)
	}
	a.start()
	g.log.await(t, 0, "election of a", isElected)
	b := g.add("b", nil).start()
	g.log.await(t, 0, "b seeing a lead", func(ev event) bool { return ev.kind == evLeader && ev.id == "b" && ev.leader.Identity == "a" })
	if err := b.e.Resign(testCtx(t)); err != nil {
		t.Errorf("standby Resign = %v; want nil", err)
	}
	if !a.e.IsLeader() || b.e.IsLeader() {
		t.Errorf("IsLeader a, b = %v, %v; want true, false", a.e.IsLeader(), b.e.IsLeader())
	}
	if _, ok := b.e.Term(); ok {
		t.Error("standby Term() ok = true; want false")
	}
	a.stop()
	b.stop()
}

func TestResignFromOnElected(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	var resigned atomic.Int32
	a := g.add("a", nil)
	a.work = func(ctx context.Context, term callbacks.Term) {
		if resigned.Add(1) == 1 {
			// With OnElected's ctx, Resign must not wait for OnElected.
			if err := a.e.Resign(ctx); err != nil {
				t.Errorf("Resign(OnElected's ctx) = %v", err)
			}
		}
	}
	a.start()
	first, cur := g.log.await(t, 0, "election", isElected)
	_, cur = g.log.await(t, cur, "OnLost after resigning from OnElected", lostBy("a"))
	// Alone, it wins again after its pause.
	again, _ := g.log.await(t, cur, "re-election", isElected)
	if again.fence <= first.fence {
		t.Errorf("re-election fence %d; want > %d", again.fence, first.fence)
	}
	a.stop()
	a.checkCallbacks(t)
}

// TestPanickingOnElectedEndsItsTerm: a panic in OnElected is logged at once
// with its stack and ends the term as a resignation would: OnLost, the key
// released, a standby elected. The work has stopped, so the leadership must
// not go on.
func TestPanickingOnElectedEndsItsTerm(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	var logs syncBuffer
	a := g.add("a", func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	a.work = func(context.Context, callbacks.Term) { panic("boom") }
	b := g.add("b", nil)
	a.start()
	first, cur := g.log.await(t, 0, "election of a", isElected)
	if first.id != "a" {
		t.Fatalf("first elected %s; want a", first.id)
	}
	b.start()
	// The key is released before OnLost runs, so b may be elected before
	// or after a's OnLost: look for both from the same point.
	g.log.await(t, cur, "OnLost of a", lostBy("a"))
	if a.e.IsLeader() {
		t.Error("a.IsLeader() after its OnElected panicked and OnLost ran = true; want false")
	}
	next, _ := g.log.await(t, cur, "election of b", electedOtherThan("a"))
	if next.fence <= first.fence {
		t.Errorf("b's fence %d; want > %d", next.fence, first.fence)
	}
	// The recording OnElected decrements the counter only when it returns
	// normally, so the panic leaves it at one too many: undo that.
	g.leaders.Add(-1)
	a.stop()
	b.stop()
	// Read once Run has returned: the step-down is logged after OnLost,
	// which may come after b's election.
	out := logs.String()
	for _, want := range []string{"callback panicked", "panic=boom", "stack=", "reason=panicked"} {
		if !strings.Contains(out, want) {
			t.Errorf("a's log lacks %q:\n%s", want, out)
		}
	}
	if e, l := a.elected.Load(), a.lost.Load(); e != l {
		t.Errorf("a: OnElected %d, OnLost %d; want equal", e, l)
	}
}

// TestPanickingEveryTermBacksOff: alone, a candidate whose OnElected always
// panics wins again and again, but waits longer each time: RetryPeriod, then
// twice that, and so on.
func TestPanickingEveryTermBacksOff(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	var panics atomic.Int32
	a := g.add("a", nil)
	a.work = func(context.Context, callbacks.Term) {
		panics.Add(1)
		g.leaders.Add(-1) // the recording OnElected will not get to these
		a.inElected.Store(false)
		panic("always")
	}
	a.start()
	var at []time.Time
	cur := 0
	for range 4 {
		var ev event
		ev, cur = g.log.await(t, cur, "election of a", isElected)
		at = append(at, ev.at)
	}
	a.stop()
	for i := 1; i < len(at); i++ {
		// Sleeps only ever last longer than asked: these are lower bounds.
		want := testRetryPeriod << (i - 1)
		if gap := at[i].Sub(at[i-1]); gap < want {
			t.Errorf("term %d came %v after the one before; want at least %v", i+1, gap, want)
		}
	}
}

// TestCrashOnPanic: with CrashOnPanic, Run releases the leadership and then
// panics with the callback's value.
func TestCrashOnPanic(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	a := g.add("a", func(c *Config) { c.CrashOnPanic = true })
	a.work = func(context.Context, callbacks.Term) {
		g.leaders.Add(-1) // the recording OnElected will not get to these
		a.inElected.Store(false)
		panic("fatal")
	}
	recovered := make(chan any, 1)
	go func() {
		defer func() { recovered <- recover() }()
		_ = a.e.Run(context.Background())
	}()
	select {
	case r := <-recovered:
		if r != "fatal" {
			t.Fatalf("Run panicked with %v; want the callback's value", r)
		}
	case <-time.After(awaitTimeout):
		t.Fatal("Run did not panic")
	}
	if n, _ := g.srv.Do(t, "EXISTS", g.key()).AsInt64(); n != 0 {
		t.Fatal("the leadership key was left behind when Run panicked")
	}
	a.checkCallbacks(t)
}

// TestResignFromInsideOnElectedWithAnyCtx: Resign called from OnElected, or
// from a goroutine OnElected waits for, with a ctx that is not the term's,
// returns at once; the step-down then completes.
func TestResignFromInsideOnElectedWithAnyCtx(t *testing.T) {
	for _, how := range []string{"direct", "goroutine"} {
		t.Run(how, func(t *testing.T) {
			checkLeaks(t)
			g := newGroup(t)
			var once sync.Once
			var cause error
			a := g.add("a", nil)
			a.work = func(ctx context.Context, _ callbacks.Term) {
				once.Do(func() {
					resign := func() {
						if err := a.e.Resign(context.Background()); err != nil {
							t.Errorf("Resign(context.Background()) = %v", err)
						}
					}
					if how == "direct" {
						resign()
					} else {
						var wg sync.WaitGroup
						wg.Go(resign)
						wg.Wait()
					}
					<-ctx.Done()
					cause = context.Cause(ctx)
				})
			}
			b := g.add("b", nil)
			a.start()
			_, cur := g.log.await(t, 0, "election of a", isElected)
			b.start()
			// b may be elected before or after a's OnLost (the key is
			// released first): look for both from the same point.
			g.log.await(t, cur, "OnLost of a", lostBy("a"))
			g.log.await(t, cur, "election of b", electedOtherThan("a"))
			if !errors.Is(cause, ErrResigned) {
				t.Errorf("cause of OnElected's ctx = %v; want ErrResigned", cause)
			}
			a.stop()
			b.stop()
			a.checkCallbacks(t)
		})
	}
}

// TestCallbackOrderUnderChurn resigns many times in a row, from outside and
// from inside OnElected, with short timings, and checks the callback
// contract per candidate.
func TestCallbackOrderUnderChurn(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	fast := func(c *Config) {
		c.TTL, c.RenewDeadline, c.RetryPeriod = 400*time.Millisecond, 250*time.Millisecond, 50*time.Millisecond
	}
	var cs []*candidate
	resignNow := map[string]chan struct{}{}
	for _, id := range []string{"a", "b", "c"} {
		c := g.add(id, fast)
		now := make(chan struct{}, 1)
		resignNow[id] = now
		c.work = func(ctx context.Context, term callbacks.Term) {
			select {
			case <-now:
				if err := c.e.Resign(ctx); err != nil {
					t.Errorf("%s: Resign(OnElected's ctx) = %v", id, err)
				}
			case <-ctx.Done():
			}
		}
		cs = append(cs, c.start())
	}
	const rounds = 30
	ev, cur := g.log.await(t, 0, "first election", isElected)
	fences := []int64{ev.fence}
	for round := range rounds {
		leader := find(t, cs, ev.id)
		if round%3 == 2 {
			resignNow[leader.id] <- struct{}{} // from inside OnElected
		} else if err := leader.e.Resign(testCtx(t)); err != nil {
			t.Fatalf("round %d: %s.Resign = %v", round, leader.id, err)
		}
		prev := ev.fence
		ev, cur = g.log.await(t, cur, fmt.Sprintf("election after round %d", round), func(e event) bool {
			return e.kind == evElected && e.fence > prev
		})
		fences = append(fences, ev.fence)
	}
	g.finish(t, cs)
	if !slices.IsSorted(fences) {
		t.Errorf("term fences %v; want increasing", fences)
	}
	// Per candidate, elected and lost alternate, starting with elected, and
	// lost carries the fence of the elected before it.
	for _, c := range cs {
		var open int64
		for _, ev := range g.log.snapshot() {
			if ev.id != c.id {
				continue
			}
			switch ev.kind {
			case evElected:
				if open != 0 {
					t.Errorf("%s: OnElected(fence %d) before OnLost of fence %d", c.id, ev.fence, open)
				}
				open = ev.fence
			case evLost:
				if ev.fence != open {
					t.Errorf("%s: OnLost(fence %d); want fence %d", c.id, ev.fence, open)
				}
				open = 0
			}
		}
	}
	t.Logf("%d terms; elected per candidate: a=%d b=%d c=%d", len(fences), cs[0].elected.Load(), cs[1].elected.Load(), cs[2].elected.Load())
}
