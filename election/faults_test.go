package election

import (
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/valkey-io/valkey-go"
)

// TestLeaderCutOffStepsDown cuts the leader's connections with a proxy: it
// must step down by itself (RenewDeadline) before the standby, which still
// reaches the server, can take over (TTL).
func TestLeaderCutOffStepsDown(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	proxy := valkeytest.NewProxy(t, g.srv.Addr())
	via, err := valkey.NewClient(g.srv.ClientOptionVia(proxy.Addr()))
	if err != nil {
		t.Fatalf("client via proxy: %v", err)
	}
	t.Cleanup(via.Close)

	a := g.addWith("a", via, nil).start()
	_, cur := g.log.await(t, 0, "election of a", isElected)
	b := g.add("b", nil).start()
	g.log.await(t, 0, "b seeing a lead", func(ev event) bool { return ev.kind == evLeader && ev.id == "b" && ev.leader.Identity == "a" })

	proxy.Cut()
	cut := time.Now()
	lost, _ := g.log.await(t, cur, "a stepping down", lostBy("a"))
	next, _ := g.log.await(t, cur, "b taking over", electedOtherThan("a"))
	lastSent := a.lastRenewal()
	t.Logf("cut -> a's OnLost %v, -> b's OnElected %v; a stepped down %v after its last renewal was sent",
		lost.at.Sub(cut), next.at.Sub(cut), lost.at.Sub(lastSent))
	if !lost.at.Before(next.at) {
		t.Errorf("a stepped down at %v, after b was elected at %v", lost.at, next.at)
	}
	if deadline := lastSent.Add(testTTL); !lost.at.Before(deadline) {
		t.Errorf("a stepped down at %v; want before its last renewal + TTL (%v)", lost.at, deadline)
	}
	if a.e.IsLeader() {
		t.Error("a.IsLeader() after being cut off = true; want false")
	}

	proxy.Restore()
	a.stop()
	b.stop()
	a.checkCallbacks(t)
	b.checkCallbacks(t)
	g.checkExclusive(t)
}

// TestServerPausedLongerThanTTL stops the server with SIGSTOP for longer
// than the TTL: the leader must step down on its own clock before its key
// could expire, and after the server resumes exactly one leader emerges.
func TestServerPausedLongerThanTTL(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	cs := []*candidate{g.add("a", nil).start(), g.add("b", nil).start()}
	first, cur := g.log.await(t, 0, "first election", isElected)
	leader := find(t, cs, first.id)

	g.srv.Pause(t)
	paused := time.Now()
	// Nothing can be elected while the server is paused, so every election
	// after this cursor comes after the resume.
	lost, cur := g.log.await(t, cur, "the leader stepping down while the server is paused", lostBy(leader.id))
	lastSent := leader.lastRenewal()
	t.Logf("pause -> OnLost %v; OnLost %v after the last renewal was sent (renew deadline %v, ttl %v)",
		lost.at.Sub(paused), lost.at.Sub(lastSent), testRenewDeadline, testTTL)
	if deadline := lastSent.Add(testTTL); !lost.at.Before(deadline) {
		t.Errorf("OnLost at %v; want before the last renewal + TTL (%v)", lost.at, deadline)
	}
	if err := leader.e.Healthy(0); err != nil {
		t.Errorf("Healthy after stepping down = %v; want nil (not leading)", err)
	}
	// The fault itself: stay paused until every key has expired on the
	// server's clock.
	time.Sleep(time.Until(lastSent.Add(testTTL + 200*time.Millisecond)))
	g.srv.Resume(t)
	resumed := time.Now()

	next, _ := g.log.await(t, cur, "an election after the resume", isElected)
	t.Logf("resume -> %s elected in %v", next.id, next.at.Sub(resumed))
	if next.fence <= first.fence {
		t.Errorf("fence after the pause = %d; want > %d", next.fence, first.fence)
	}
	winner := find(t, cs, next.id)
	if l, err := LeaderOf(testCtx(t), g.srv.Client(t), g.name); err != nil || l.Identity != next.id || l.Fence != next.fence {
		t.Errorf("LeaderOf after the resume = %+v, %v; want %s with fence %d", l, err, next.id, next.fence)
	}
	for _, c := range cs {
		if got, want := c.e.IsLeader(), c == winner; got != want {
			t.Errorf("%s.IsLeader() after the resume = %v; want %v", c.id, got, want)
		}
	}
	g.finish(t, cs)
}

// TestServerRestarted kills the server and starts an empty one on the same
// port: the electors keep campaigning, one leader emerges, and its fencing
// token is greater than the old term's although the counter was lost.
func TestServerRestarted(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	cs := []*candidate{g.add("a", nil).start(), g.add("b", nil).start()}
	first, cur := g.log.await(t, 0, "first election", isElected)

	g.srv.Restart(t)
	restarted := time.Now()
	g.log.await(t, cur, "the old leader stepping down", lostBy(first.id))
	next, _ := g.log.await(t, cur, "a new term after the restart", func(ev event) bool { return ev.kind == evElected && ev.fence != first.fence })
	t.Logf("restart -> %s elected in %v, fence %d -> %d", next.id, next.at.Sub(restarted), first.fence, next.fence)
	if next.fence <= first.fence {
		t.Errorf("fence after the restart = %d; want > %d", next.fence, first.fence)
	}
	for _, c := range cs {
		c.stop()
		c.checkCallbacks(t)
	}
}

// TestKeyDeletedByOperator deletes the leadership key: the leader must step
// down at its next renewal and a new leader be elected.
func TestKeyDeletedByOperator(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	cs := []*candidate{g.add("a", nil).start(), g.add("b", nil).start()}
	first, cur := g.log.await(t, 0, "first election", isElected)

	if n, err := g.srv.Do(t, "DEL", g.key()).AsInt64(); err != nil || n != 1 {
		t.Fatalf("DEL %s = %d, %v; want 1", g.key(), n, err)
	}
	deleted := time.Now()
	lost, _ := g.log.await(t, cur, "the leader stepping down", lostBy(first.id))
	next, _ := g.log.await(t, cur, "a new term", func(ev event) bool { return ev.kind == evElected && ev.fence > first.fence })
	t.Logf("DEL -> OnLost of %s %v, -> %s elected %v", first.id, lost.at.Sub(deleted), next.id, next.at.Sub(deleted))
	// The next renewal is at most RetryPeriod away; leave room for -race.
	if d := lost.at.Sub(deleted); d > testRetryPeriod+testRetryPeriod/2 {
		t.Errorf("leader stepped down %v after the DEL; want within about the retry period %v", d, testRetryPeriod)
	}
	for _, c := range cs {
		c.stop()
		c.checkCallbacks(t)
	}
}
