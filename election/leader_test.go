package election

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/baton-dev/baton/lock"
)

// watchInto runs Watch until the end of the test, recording every call of
// fn as an evLeader event with id "watch".
func watchInto(t *testing.T, g *group, h *history, opts ...ObserveOption) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	client := g.srv.Client(t)
	go func() {
		done <- Watch(ctx, client, g.name, func(l callbacks.Leader) {
			h.add(event{kind: evLeader, id: "watch", leader: l, at: time.Now()})
		}, opts...)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch after its ctx ended = %v; want nil", err)
		}
	})
}

func leaderIs(id string) func(event) bool {
	return func(ev event) bool { return ev.kind == evLeader && ev.leader.Identity == id }
}

func noLeader(ev event) bool { return ev.kind == evLeader && ev.leader.None() }

func TestLeaderOfAndWatch(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	client := g.srv.Client(t)
	ctx := testCtx(t)
	watched := newHistory()
	watchInto(t, g, watched)

	// The first call reports the current state, even "no leader".
	first, wcur := watched.await(t, 0, "Watch's first report", func(event) bool { return true })
	if !first.leader.None() {
		t.Errorf("Watch's first report = %+v; want no leader", first.leader)
	}
	if l, err := LeaderOf(ctx, client, g.name); err != nil || !l.None() {
		t.Errorf("LeaderOf before any election = %+v, %v; want no leader", l, err)
	}

	a := g.add("a", nil).start()
	elected, _ := g.log.await(t, 0, "election of a", isElected)
	l, err := LeaderOf(ctx, client, g.name)
	if err != nil {
		t.Fatalf("LeaderOf = %v", err)
	}
	if l.Identity != "a" || l.Fence != elected.fence || l.TTL <= 0 || l.TTL > testTTL {
		t.Errorf("LeaderOf = %+v; want identity a, fence %d, 0 < TTL <= %v", l, elected.fence, testTTL)
	}
	if el, err := a.e.Leader(ctx); err != nil || el.Identity != "a" || el.Fence != elected.fence {
		t.Errorf("a.Leader = %+v, %v; want identity a, fence %d", el, err, elected.fence)
	}
	seenA, wcur := watched.await(t, wcur, "Watch seeing a", leaderIs("a"))
	if seenA.leader.Fence != elected.fence || seenA.leader.TTL <= 0 {
		t.Errorf("Watch reported %+v; want fence %d and a positive TTL", seenA.leader, elected.fence)
	}

	b := g.add("b", nil).start()
	if err := a.e.Resign(ctx); err != nil {
		t.Fatalf("Resign = %v", err)
	}
	g.log.await(t, 0, "election of b", electedOtherThan("a"))
	seenB, wcur := watched.await(t, wcur, "Watch seeing b", leaderIs("b"))
	if seenB.leader.Fence <= elected.fence {
		t.Errorf("Watch reported b with fence %d; want > %d", seenB.leader.Fence, elected.fence)
	}
	b.stop() // releases: a, pausing after its resignation, may take over
	a.stop()
	watched.await(t, wcur, "Watch seeing no leader after the releases", noLeader)
	if l, err := LeaderOf(ctx, client, g.name); err != nil || !l.None() {
		t.Errorf("LeaderOf after every candidate released = %+v, %v; want no leader", l, err)
	}

	// Every report is a change, in order: consecutive reports differ, and
	// the terms reported only go forward.
	var prev *callbacks.Leader
	var highest int64
	for _, ev := range watched.snapshot() {
		if prev != nil && prev.Same(ev.leader) {
			t.Errorf("Watch reported %+v twice in a row", ev.leader)
		}
		if !ev.leader.None() {
			if ev.leader.Fence <= highest {
				t.Errorf("Watch reported fence %d after %d", ev.leader.Fence, highest)
			}
			highest = ev.leader.Fence
		}
		prev = &ev.leader
	}

	// OnNewLeader of the electors saw the same history, their own election
	// included.
	for _, id := range []string{"a", "b"} {
		var own bool
		for _, ev := range g.log.snapshot() {
			own = own || (ev.kind == evLeader && ev.id == id && ev.leader.Identity == id)
		}
		if !own {
			t.Errorf("%s's OnNewLeader never reported its own election", id)
		}
	}
}

// TestWatchSeesExpiryWithoutPolling stops a leader without releasing: the
// expiry is published by nobody, so Watch must find it with its timer at the
// TTL's end, long before its fallback re-read.
func TestWatchSeesExpiryWithoutPolling(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	watched := newHistory()
	watchInto(t, g, watched, WithFallbackInterval(time.Minute))
	a := g.add("a", func(c *Config) { c.KeepOnCancel = true }).start()
	g.log.await(t, 0, "election of a", isElected)
	_, wcur := watched.await(t, 0, "Watch seeing a", leaderIs("a"))
	a.stop()
	expiry := a.lastRenewal().Add(testTTL)
	gone, _ := watched.await(t, wcur, "Watch seeing the expiry", noLeader)
	t.Logf("Watch saw the expiry %v after the earliest possible expiry", gone.at.Sub(expiry))
	if late := gone.at.Sub(expiry); late > testTTL/2 {
		t.Errorf("Watch saw the expiry %v late; want it at the TTL's end", late)
	}
}

// TestWatchSeesLeaderAfterServerRestart checks that Watch rides out a
// server restart: it resubscribes, and the new leader is reported.
func TestWatchSeesLeaderAfterServerRestart(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	watched := newHistory()
	watchInto(t, g, watched, WithFallbackInterval(time.Minute))
	a := g.add("a", nil).start()
	seen, wcur := watched.await(t, 0, "Watch seeing a", leaderIs("a"))
	g.srv.Restart(t)
	watched.await(t, wcur, "Watch seeing a new term", func(ev event) bool {
		return ev.kind == evLeader && !ev.leader.None() && ev.leader.Fence > seen.leader.Fence
	})
	a.stop()
}

func TestObserveKeyPrefix(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	ctx := testCtx(t)
	client := g.srv.Client(t)
	g.add("a", func(c *Config) { c.KeyPrefix = "custom:" }).start()
	g.log.await(t, 0, "election", isElected)
	if l, err := LeaderOf(ctx, client, g.name); err != nil || !l.None() {
		t.Errorf("LeaderOf with the default prefix = %+v, %v; want no leader", l, err)
	}
	if l, err := LeaderOf(ctx, client, g.name, WithKeyPrefix("custom:")); err != nil || l.Identity != "a" {
		t.Errorf("LeaderOf with WithKeyPrefix = %+v, %v; want a", l, err)
	}
}

func TestObserveArguments(t *testing.T) {
	t.Parallel()
	g := newGroup(t)
	ctx := testCtx(t)
	client := g.srv.Client(t)
	if _, err := LeaderOf(ctx, nil, "x"); err == nil {
		t.Error("LeaderOf(nil client) = nil error; want an error")
	}
	if _, err := LeaderOf(ctx, client, ""); err == nil {
		t.Error(`LeaderOf(name "") = nil error; want an error`)
	}
	if err := Watch(ctx, client, "x", nil); err == nil {
		t.Error("Watch(nil fn) = nil error; want an error")
	}
}

// TestHandoverCostsWatchersNoRead: a handover announces the new leader, with
// its identity and TTL, before the old one's release, so the watchers of an
// election learn of it without reading the key: the reads at a resign are
// the two electors' own, however many watch.
func TestHandoverCostsWatchersNoRead(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	// A claim window (4 x RetryPeriod/10) far longer than the test, so that
	// no read at the end of the grant's announced TTL falls inside it.
	slow := func(c *Config) {
		c.TTL, c.RenewDeadline, c.RetryPeriod = 20*time.Second, 14*time.Second, 10*time.Second
	}
	const watchers = 6
	watched := make([]*history, watchers)
	for i := range watched {
		watched[i] = newHistory()
		watchInto(t, g, watched[i], WithFallbackInterval(time.Minute))
	}
	a := g.add("a", slow).start()
	_, cur := g.log.await(t, 0, "election of a", isElected)
	b := g.add("b", slow).start()
	queue := "{" + g.key() + "}:queue"
	for g.srv.Int(t, "LLEN", queue) == 0 { // b waits in line
		time.Sleep(time.Millisecond)
	}
	for i, h := range watched {
		h.await(t, 0, fmt.Sprintf("watcher %d seeing a", i), leaderIs("a"))
	}

	g.srv.Do(t, "CONFIG", "RESETSTAT")
	if err := a.e.Resign(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	g.log.await(t, cur, "election of b", electedOtherThan("a"))
	for i, h := range watched {
		h.await(t, 0, fmt.Sprintf("watcher %d seeing b", i), leaderIs("b"))
	}
	reads := execCalls(t, g)
	a.stop()
	b.stop()
	if reads > 2 {
		t.Errorf("%d reads of the leader during a handover watched %d times; want at most 2, the electors' own", reads, watchers)
	}
}

// execCalls returns how many EXECs (one per read of the leader) the server
// ran since its stats were reset.
func execCalls(t *testing.T, g *group) int {
	t.Helper()
	stat, ok := g.srv.Info(t, "commandstats")["cmdstat_exec"]
	if !ok {
		return 0
	}
	for _, kv := range strings.Split(stat, ",") {
		if v, ok := strings.CutPrefix(kv, "calls="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("cmdstat_exec %q has no calls", stat)
	return 0
}

// TestSlowWatchFnDoesNotStallItsClient: Watch's fn runs on Watch's
// goroutine, never on the subscription's. A fn that blocks must not stop
// the client's reader, which with RESP3 carries the subscription on the
// connection every other command of that client uses.
func TestSlowWatchFnDoesNotStallItsClient(t *testing.T) {
	checkLeaks(t)
	srv := valkeytest.Start(t)
	client := srv.Client(t)
	const name = "slow-watch"
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	called := make(chan struct{}, 1)
	unblock := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, client, name, func(callbacks.Leader) {
			select {
			case called <- struct{}{}:
			default:
			}
			<-unblock
		})
	}()
	<-called // fn now blocks on its first report
	// Many announcements of the election's lock, from another client.
	l, err := lock.New(srv.Client(t), name, lock.Config{TTL: time.Minute, Announce: true, KeyPrefix: DefaultKeyPrefix})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		h, err := l.TryAcquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Do(ctx, client.B().Ping().Build()).Error(); err != nil {
		t.Fatalf("PING on Watch's client while fn blocks = %v; want an answer", err)
	}
	close(unblock)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
