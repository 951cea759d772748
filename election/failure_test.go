package election

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/baton-dev/baton/lock"
	"github.com/valkey-io/valkey-go"
)

// aclClient creates the ACL user name with rules and returns a client
// logged in as it.
func (g *group) aclClient(t *testing.T, name string, rules []string) valkey.Client {
	t.Helper()
	args := append([]string{"ACL", "SETUSER", name, "reset", "on", ">pw"}, rules...)
	if err := g.srv.Do(t, args...).Error(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	opt := g.srv.ClientOption()
	opt.Username, opt.Password = name, "pw"
	c, err := valkey.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// runOnce runs c's elector until it returns, failing after awaitTimeout.
func runOnce(t *testing.T, c *candidate) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.e.Run(context.Background()) }()
	select {
	case err := <-done:
		return err
	case <-time.After(awaitTimeout):
		t.Fatalf("%s: Run kept going for %v", c.id, awaitTimeout)
		return nil
	}
}

// TestRunReturnsPermanentErrors: what the server will refuse every time
// ends Run with an error that names it, instead of a WARN per retry forever.
func TestRunReturnsPermanentErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		rules []string
		want  string
	}{
		{"no-evalsha", valkeytest.Without(valkeytest.ACL, "+evalsha"), "EVALSHA"},
		{"no-time", valkeytest.Without(valkeytest.ACL, "+time"), "TIME"},
		{"no-multi", valkeytest.Without(valkeytest.ACL, "+multi"), "MULTI"},
		{"no-publish", valkeytest.Without(valkeytest.ACL, "+publish"), "PUBLISH"},
		{"no-subscribe", valkeytest.Without(valkeytest.ACL, "+subscribe"), "SUBSCRIBE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkLeaks(t)
			g := newGroup(t)
			a := g.addWith("a", g.aclClient(t, c.name, c.rules), nil)
			err := runOnce(t, a)
			if !errors.Is(err, lock.ErrMisconfigured) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run = %v; want lock.ErrMisconfigured naming %s", err, c.want)
			}
			if a.elected.Load() != 0 {
				t.Fatal("elected although the server refuses what leading needs")
			}
		})
	}
	t.Run("wrongtype", func(t *testing.T) {
		checkLeaks(t)
		g := newGroup(t)
		g.srv.Do(t, "HSET", "{"+g.key()+"}:fence", "f", "1")
		a := g.add("a", nil)
		err := runOnce(t, a)
		if !errors.Is(err, lock.ErrMisconfigured) || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("Run = %v; want lock.ErrMisconfigured with the server's WRONGTYPE", err)
		}
	})
}

// TestRunRidesOutTransientErrors: a server restarted under a running
// elector (connection errors, then an empty server) does not end Run.
func TestRunRidesOutTransientErrors(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	a := g.add("a", nil).start()
	_, cur := g.log.await(t, 0, "election of a", isElected)
	g.srv.Kill(t)
	_, cur = g.log.await(t, cur, "a stepping down", lostBy("a"))
	g.srv.Restart(t)
	g.log.await(t, cur, "a elected again", isElected)
	select {
	case err := <-a.done:
		t.Fatalf("Run returned %v after a restart; want it to go on", err)
	default:
	}
	a.stop()
	a.checkCallbacks(t)
}

// TestStalledServerDoesNotReviveADeadTerm: the server stops (SIGSTOP) with
// a renewal on its way; the leader gives up at its renew deadline and
// releases; when the server resumes it runs the stale renewal, which renews
// the dead term's key, and then the release must run too, so that a new
// term starts at once instead of after a whole TTL. The release goes out
// when the server has never seen the release script (NOSCRIPT), after its
// caller's context has ended.
func TestStalledServerDoesNotReviveADeadTerm(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	// A TTL well above the renew deadline leaves room to resume the server
	// after the leader's own release attempts have given up (RetryPeriod
	// after it stepped down) but before its key would expire.
	timing := func(c *Config) { c.TTL, c.RenewDeadline = 3*time.Second, time.Second }
	a := g.add("a", timing).start()
	first, cur := g.log.await(t, 0, "election of a", isElected)
	b := g.add("b", timing).start()
	// Pause right after a renewal, so the next one is sent into the pause.
	_, cur = g.log.await(t, cur, "a renewal", func(ev event) bool { return ev.kind == evRenew && ev.id == "a" })
	g.srv.Pause(t)
	_, cur = g.log.await(t, cur, "a stepping down on its own clock", lostBy("a"))
	// The key lives until a's last renewal + 3s, that is 2s after a's
	// OnLost: resume in between, once a's first release has timed out.
	time.Sleep(3 * testRetryPeriod)
	g.srv.Resume(t)
	next, _ := g.log.await(t, cur, "a new term", isElected)
	if next.fence <= first.fence {
		t.Errorf("new term's fence %d; want > %d", next.fence, first.fence)
	}
	// Had the stale renewal revived a's key, the new term could only have
	// started when it expired: the server would count an expired key.
	if n := g.srv.Info(t, "stats")["expired_keys"]; n != "0" {
		t.Errorf("expired_keys = %s; want 0: a's key was not released but left to expire", n)
	}
	a.stop()
	b.stop()
	a.checkCallbacks(t)
	b.checkCallbacks(t)
}

// TestWatchMarksALeaderFromThePast: when the server goes back in time (here
// the key and counter are rewritten as a lossy failover would leave them),
// the older term is reported as stale and logged, not silently as the
// current leader.
func TestWatchMarksALeaderFromThePast(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	client := g.srv.Client(t)
	var logs syncBuffer
	leaders := make(chan callbacks.Leader, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, client, g.name, func(l callbacks.Leader) { leaders <- l },
			WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	}()
	next := func() callbacks.Leader {
		t.Helper()
		select {
		case l := <-leaders:
			return l
		case <-time.After(awaitTimeout):
			t.Fatal("no leader reported")
			return callbacks.Leader{}
		}
	}
	if l := next(); !l.None() {
		t.Fatalf("first report = %+v; want no leader", l)
	}
	a := g.add("a", nil).start()
	newer := next()
	if newer.Identity != "a" || newer.Stale {
		t.Fatalf("report = %+v; want a, not stale", newer)
	}
	a.stop()
	if l := next(); !l.None() {
		t.Fatalf("report after a stopped = %+v; want no leader", l)
	}
	// The server "loses" a's term: an older term of x is back.
	older := newer.Fence - 1000
	g.srv.Do(t, "SET", "{"+g.key()+"}:fence", strconvI(older))
	g.srv.Do(t, "SET", g.key(), "x#old", "PX", "60000")
	g.srv.Do(t, "PUBLISH", "{"+g.key()+"}:events", "acquired:"+strconvI(older))
	l := next()
	if l.Identity != "x" || l.Fence != older || !l.Stale {
		t.Fatalf("report = %+v; want x, fence %d, marked stale", l, older)
	}
	if !strings.Contains(logs.String(), "older than one already seen") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch = %v", err)
	}
}

// TestRevokedSubscriptionIsLoggedOnce: electors whose permission to
// SUBSCRIBE is revoked while they run (the startup check would refuse to
// start without it) go on leading and handing over, their standbys and
// watchers falling back to reads, and say so once, not at every
// resubscription.
func TestRevokedSubscriptionIsLoggedOnce(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	client := g.aclClient(t, "u", valkeytest.ACL)
	a := g.addWith("a", client, func(c *Config) { c.Logger = logger }).start()
	_, cur := g.log.await(t, 0, "election of a", isElected)
	b := g.addWith("b", g.aclClient(t, "u", valkeytest.ACL), func(c *Config) { c.Logger = logger }).start()
	g.log.await(t, 0, "b seeing a lead", func(ev event) bool { return ev.kind == evLeader && ev.id == "b" && ev.leader.Identity == "a" })

	g.srv.Do(t, "ACL", "SETUSER", "u", "-subscribe")
	g.srv.Do(t, "CLIENT", "KILL", "USER", "u") // subscriptions must be made again
	deadline := time.Now().Add(awaitTimeout)
	for !strings.Contains(logs.String(), "refuses the subscription") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line about the refused subscription:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.e.Resign(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	g.log.await(t, cur, "election of b", electedOtherThan("a"))
	time.Sleep(time.Second) // several resubscription attempts
	a.stop()
	b.stop()
	// Each elector follows the channel twice (its waiters and its
	// observer); each follower logs the refusal once.
	if n := strings.Count(logs.String(), "refuses the subscription"); n > 4 {
		t.Errorf("%d log lines about the refused subscription; want at most one per follower:\n%s", n, logs.String())
	}
}

func strconvI(n int64) string { return fmtInt(n) }
