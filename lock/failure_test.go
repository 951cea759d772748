package lock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/valkey-io/valkey-go"
)

// aclClient creates the ACL user name with rules on e's server and returns a
// client logged in as it.
func (e *env) aclClient(t *testing.T, name string, rules []string) valkey.Client {
	t.Helper()
	args := append([]string{"ACL", "SETUSER", name, "reset", "on", ">pw"}, rules...)
	if err := e.srv.Do(t, args...).Error(); err != nil {
		t.Fatalf("ACL SETUSER %v: %v", rules, err)
	}
	opt := e.srv.ClientOption()
	opt.Username, opt.Password = name, "pw"
	c, err := valkey.NewClient(opt)
	if err != nil {
		t.Fatalf("client as %s: %v", name, err)
	}
	t.Cleanup(c.Close)
	return c
}

// logBuffer is a *slog.Logger writing to a buffer that tests read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// TestPermanentErrorsAreMisconfigured checks the classification of error
// replies that retrying cannot fix, on a real server with real ACL users.
func TestPermanentErrorsAreMisconfigured(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		name  string
		rules []string
		want  string // in the error's text
	}{
		{"no-evalsha-nor-eval", valkeytest.Without(valkeytest.ACL, "+evalsha", "+eval"), "evalsha"},
		{"no-time", valkeytest.Without(valkeytest.ACL, "+time"), "'time'"},
		{"no-fence-key", valkeytest.Without(valkeytest.ACL, "~{baton:*"), "NOPERM"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := New(e.aclClient(t, c.name, c.rules), "perm-"+c.name, Config{TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			_, err = l.TryAcquire(ctxT(t))
			wantErr(t, "TryAcquire", err, ErrMisconfigured)
			if errors.Is(err, ErrUnavailable) || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.want)) {
				t.Fatalf("TryAcquire = %v; want only ErrMisconfigured, naming %q", err, c.want)
			}
			// Acquire returns it at once rather than waiting.
			_, err = l.Acquire(ctxT(t))
			wantErr(t, "Acquire", err, ErrMisconfigured)
			// No phantom holder: nothing was written.
			if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
				t.Fatalf("EXISTS %s = %d after a refused acquisition; want 0", l.Key(), n)
			}
			if err := l.Check(ctxT(t)); !errors.Is(err, ErrMisconfigured) {
				t.Fatalf("Check = %v; want ErrMisconfigured", err)
			}
		})
	}
	t.Run("wrongtype", func(t *testing.T) {
		l := e.lock(t, "wrongtype", Config{TTL: time.Minute})
		e.srv.Do(t, "HSET", l.keys.fence, "f", "1")
		_, err := l.TryAcquire(ctxT(t))
		wantErr(t, "TryAcquire with a hash as the fence counter", err, ErrMisconfigured)
		if !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("TryAcquire = %v; want the server's WRONGTYPE", err)
		}
		if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
			t.Fatalf("EXISTS %s = %d; want 0", l.Key(), n)
		}
	})
	t.Run("full-acl-checks-clean", func(t *testing.T) {
		l, err := New(e.aclClient(t, "full", valkeytest.ACL), "checked", Config{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Check(ctxT(t)); err != nil {
			t.Fatalf("Check with the documented ACL = %v; want nil", err)
		}
		h, err := l.TryAcquire(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Inspect(ctxT(t)); err != nil {
			t.Fatalf("Inspect with the documented ACL = %v", err)
		}
		if err := h.Release(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCheckNamesWhatIsRefused(t *testing.T) {
	e := newEnv(t)
	c := e.aclClient(t, "nopub", valkeytest.Without(valkeytest.ACL, "+time", "+publish"))
	l, err := New(c, "check", Config{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = l.Check(ctxT(t))
	wantErr(t, "Check", err, ErrMisconfigured)
	for _, want := range []string{"TIME", "PUBLISH {baton:lock:check}:events"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check = %v; want it to name %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "SUBSCRIBE") {
		t.Errorf("Check = %v; names SUBSCRIBE, which the user may run", err)
	}
}

// TestCheckNamesTheReplicaWait: a lock that waits for replicas needs WAIT
// (WAITAOF with AOF), which the documented user lacks until it is granted.
func TestCheckNamesTheReplicaWait(t *testing.T) {
	e := newEnv(t)
	c := e.aclClient(t, "nowait", valkeytest.ACL)
	for _, tc := range []struct {
		cfg  Config
		want string // refused command; "" for none
	}{
		{Config{TTL: time.Second}, ""},
		{Config{TTL: time.Second, Replicas: 1}, "WAIT"},
		{Config{TTL: time.Second, Replicas: 1, AOF: true}, "WAITAOF"},
	} {
		l, err := New(c, "check-wait", tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = l.Check(ctxT(t))
		if tc.want == "" {
			if err != nil {
				t.Errorf("Check without Replicas = %v; want nil", err)
			}
			continue
		}
		wantErr(t, "Check", err, ErrMisconfigured)
		if !strings.Contains(err.Error(), "refuses this user "+tc.want) {
			t.Errorf("Check with %+v = %v; want it to name %s alone", tc.cfg, err, tc.want)
		}
	}
	granted := e.aclClient(t, "wait", append(slices.Clone(valkeytest.ACL), "+wait", "+waitaof"))
	l, err := New(granted, "check-wait", Config{TTL: time.Second, Replicas: 1, AOF: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Check(ctxT(t)); err != nil {
		t.Errorf("Check with +wait +waitaof = %v; want nil", err)
	}
}

func TestUnknownCommandIsMisconfigured(t *testing.T) {
	s := valkeytest.Start(t, valkeytest.WithArgs("--rename-command", "EVALSHA", "", "--rename-command", "EVAL", ""))
	l, err := New(s.Client(t), "noscripts", Config{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.TryAcquire(ctxT(t))
	wantErr(t, "TryAcquire on a server without EVAL", err, ErrMisconfigured)
	if !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("TryAcquire = %v; want the server's words", err)
	}
}

// TestAnnounceRefusedWritesNothing: an announcing lock whose user may not
// PUBLISH fails before it sets the key, so there is no phantom holder.
func TestAnnounceRefusedWritesNothing(t *testing.T) {
	e := newEnv(t)
	l, err := New(e.aclClient(t, "nopublish", valkeytest.Without(valkeytest.ACL, "+publish")), "announced", Config{TTL: time.Minute, Announce: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.TryAcquire(ctxT(t))
	wantErr(t, "TryAcquire", err, ErrMisconfigured)
	if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatalf("EXISTS %s = %d; want 0: a refused announcement left a phantom holder", l.Key(), n)
	}
}

// TestRefusedPublishStillReleases: a release hands the key to a waiter of
// another process by publishing on its grant channel; when that PUBLISH is
// refused the handover is not made (the waiter stays in line) but the
// release is done all the same, and the refusal is logged once.
func TestRefusedPublishStillReleases(t *testing.T) {
	e := newEnv(t)
	var logs logBuffer
	l, err := New(e.aclClient(t, "nopub", valkeytest.Without(valkeytest.ACL, "+publish")), "quiet", Config{TTL: time.Minute, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		h := mustAcquire(t, l)
		e.srv.Do(t, "RPUSH", l.keys.queue, "someone-else tok") // a waiter of another process
		if err := h.Release(ctxT(t)); err != nil {
			t.Fatalf("Release with PUBLISH refused = %v; want nil", err)
		}
		if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
			t.Fatalf("EXISTS %s = %d after Release; want 0", l.Key(), n)
		}
		if got, _ := e.srv.Do(t, "LRANGE", l.keys.queue, "0", "-1").AsStrSlice(); len(got) < 1 || got[0] != "someone-else tok" {
			t.Fatalf("queue = %q; want the waiter still first in line", got)
		}
		e.srv.Do(t, "DEL", l.keys.queue)
	}
	if n := strings.Count(logs.String(), "refuses PUBLISH"); n != 1 {
		t.Fatalf("log has %d 'refuses PUBLISH' lines; want 1:\n%s", n, logs.String())
	}
}

// TestRefusedAnnouncementStillHandsOver: a handover's grant reaches the
// waiter before the script announces the new holder on the lock's channel.
// When the ACL refuses that announcement (the user may publish on the grant
// channels only), the handover is made all the same: the waiter holds the
// key it heard it was given, and the release succeeds.
func TestRefusedAnnouncementStillHandsOver(t *testing.T) {
	e := newEnv(t)
	cfg := Config{TTL: time.Minute, Announce: true, RetryInterval: time.Hour}
	holder, err := New(e.aclClient(t, "announcer", valkeytest.ACL), "handover", cfg)
	if err != nil {
		t.Fatal(err)
	}
	waiter := e.lock(t, "handover", cfg)
	h := mustAcquire(t, holder)
	got, errc := acquireAsync(ctxT(t), waiter)
	awaitQueued(t, waiter, 1)
	awaitInLine(t, e.srv, holder, 1)
	// The holder may still publish grants, no longer announcements.
	e.srv.Do(t, "ACL", "SETUSER", "announcer", "resetchannels", "&"+holder.keys.grant+"*")
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatalf("Release with the announcement refused = %v; want nil", err)
	}
	w := awaitAcquired(t, got, errc)
	if v, err := e.srv.Do(t, "GET", holder.Key()).ToString(); err != nil || v != w.Token() {
		t.Fatalf("the waiter returned token %q; the key holds %q (%v)", w.Token(), v, err)
	}
	if err := w.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestCancelledAttemptNeverDeletesAHoldersKey: a caller's token can be the
// holder's own (a host name used as the token). An attempt with an ended ctx
// is not sent, and one whose ctx ends in flight is awaited, not cleaned up:
// the holder's key survives both.
func TestCancelledAttemptNeverDeletesAHoldersKey(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "hostname", Config{TTL: time.Minute})
	holder := mustAcquire(t, l, WithToken("host-a"))

	done, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := l.Acquire(done, WithToken("host-a"))
	wantErr(t, "Acquire with an ended ctx", err, ErrNotAcquired)
	wantErr(t, "Acquire with an ended ctx", err, context.Canceled)
	_, err = l.TryAcquire(done, WithToken("host-a"))
	wantErr(t, "TryAcquire with an ended ctx", err, ErrNotAcquired)
	if owned, err := holder.Owned(ctxT(t)); err != nil || !owned {
		t.Fatalf("holder.Owned after cancelled attempts = %v, %v; want true", owned, err)
	}

	// In flight: the server holds the script back, ctx ends, writes resume.
	e.srv.Do(t, "CLIENT", "PAUSE", "10000", "WRITE")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := l.TryAcquire(ctx, WithToken("host-a"))
		errc <- err
	}()
	awaitBlockedClient(t, e)
	cancel()
	e.srv.Do(t, "CLIENT", "UNPAUSE")
	err = <-errc
	wantErr(t, "TryAcquire cancelled in flight", err, ErrNotAcquired)
	if owned, err := holder.Owned(ctxT(t)); err != nil || !owned {
		t.Fatalf("holder.Owned after an attempt cancelled in flight = %v, %v; want true", owned, err)
	}
	if err := holder.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestWaitingOutTheDeadlineIsNotAcquired: a blocked Acquire whose ctx ends
// while a live holder keeps the lock was refused by the holder, not by the
// server: ErrNotAcquired wrapping the deadline, never ErrUnavailable.
func TestWaitingOutTheDeadlineIsNotAcquired(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "busy", Config{TTL: time.Minute, RetryInterval: 5 * time.Millisecond})
	h := mustAcquire(t, l)
	other := e.lock(t, "busy", Config{TTL: time.Minute, RetryInterval: 5 * time.Millisecond})
	for _, wait := range []time.Duration{time.Millisecond, 30 * time.Millisecond, 80 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		_, err := other.Acquire(ctx)
		cancel()
		wantErr(t, fmt.Sprintf("Acquire waiting %v", wait), err, ErrNotAcquired)
		wantErr(t, fmt.Sprintf("Acquire waiting %v", wait), err, context.DeadlineExceeded)
		if errors.Is(err, ErrUnavailable) {
			t.Fatalf("Acquire waiting %v = %v; want not ErrUnavailable", wait, err)
		}
	}
	_, err := other.Acquire(ctxT(t), WithBlockingTimeout(20*time.Millisecond))
	wantErr(t, "Acquire with a blocking timeout", err, ErrNotAcquired)
	if errors.Is(err, ErrUnavailable) {
		t.Fatalf("Acquire with a blocking timeout = %v; want not ErrUnavailable", err)
	}
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestNilAndZeroHeldAreNotHeld(t *testing.T) {
	ctx := context.Background()
	for _, h := range []*Held{nil, {}} {
		for name, op := range map[string]func() error{
			"Release":   func() error { return h.Release(ctx) },
			"Extend":    func() error { return h.Extend(ctx, time.Second) },
			"ExtendTo":  func() error { return h.ExtendTo(ctx, time.Second) },
			"Reacquire": func() error { return h.Reacquire(ctx) },
		} {
			if err := op(); !errors.Is(err, ErrNotHeld) {
				t.Errorf("(%#v).%s = %v; want ErrNotHeld", h, name, err)
			}
		}
		if owned, err := h.Owned(ctx); owned || err != nil {
			t.Errorf("(%#v).Owned = %v, %v; want false, nil", h, owned, err)
		}
	}
}

// TestPersistedKey: a key someone PERSISTed is still ours; Extend cannot add
// to "forever" and says so with ErrNoTTL, and Reacquire puts the TTL back.
func TestPersistedKey(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "persisted", Config{TTL: time.Minute})
	h := mustAcquire(t, l)
	e.srv.Do(t, "PERSIST", l.Key())
	wantErr(t, "Extend of a PERSISTed key", h.Extend(ctxT(t), time.Second), ErrNoTTL)
	wantErr(t, "ExtendTo of a PERSISTed key", h.ExtendTo(ctxT(t), time.Second), ErrNoTTL)
	if owned, err := h.Owned(ctxT(t)); !owned || err != nil {
		t.Fatalf("Owned after ErrNoTTL = %v, %v; want true", owned, err)
	}
	if err := h.Reacquire(ctxT(t)); err != nil {
		t.Fatalf("Reacquire of a PERSISTed key = %v", err)
	}
	if pttl := e.srv.Int(t, "PTTL", l.Key()); pttl <= 0 || pttl > 60000 {
		t.Fatalf("PTTL after Reacquire = %d; want the configured TTL back", pttl)
	}
}

func TestSubMillisecondDurationsRoundUp(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "round", Config{TTL: 1500 * time.Microsecond})
	if got := l.ttlArg; got != "2" {
		t.Fatalf("TTL 1.5ms is sent as %q ms; want 2", got)
	}
	l = e.lock(t, "round2", Config{TTL: time.Minute})
	h := mustAcquire(t, l)
	if err := h.ExtendTo(ctxT(t), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	before := e.srv.Int(t, "PTTL", l.Key())
	if err := h.Extend(ctxT(t), 500*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	// The extension added a millisecond; time passing takes some away, so
	// compare with a margin only in that direction.
	if after := e.srv.Int(t, "PTTL", l.Key()); after < before-50 || after > before+1 {
		t.Fatalf("PTTL %d -> %d after Extend(500µs); want one more millisecond at most", before, after)
	}
}

// TestInspectIsOneAtomicRead: under a stream of acquisitions with distinct
// tokens, every token Inspect reports comes with that acquisition's fence.
// Pipelined GET / PTTL / GET could pair a holder's token with its
// successor's fence.
func TestInspectIsOneAtomicRead(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "inspected", Config{TTL: time.Minute})
	var mu sync.Mutex
	fences := map[string]int64{}
	ctx, stop := context.WithCancel(ctxT(t))
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				h, err := l.Acquire(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				fences[h.Token()] = h.Fence()
				mu.Unlock()
				_ = h.Release(context.Background())
			}
		})
	}
	observer := e.lock(t, "inspected", Config{TTL: time.Minute})
	seen := 0
	for seen < 300 {
		st, err := observer.Inspect(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if !st.Held() {
			continue
		}
		mu.Lock()
		want, ok := fences[st.Token]
		mu.Unlock()
		if !ok {
			continue // its Acquire has not returned yet
		}
		seen++
		if st.Fence != want {
			stop()
			wg.Wait()
			t.Fatalf("Inspect paired token %q with fence %d; its fence is %d", st.Token, st.Fence, want)
		}
	}
	stop()
	wg.Wait()
}

// TestReleaseAfterAnUnansweredCallIsSentAsEval: once a call on an
// acquisition went unanswered (here a renewal cut off by the network), the
// server may run it later, and the release that undoes it must run whatever
// the server's script cache holds by then and whether or not its caller is
// still waiting: it goes out as EVAL. Before that, releases use EVALSHA.
func TestReleaseAfterAnUnansweredCallIsSentAsEval(t *testing.T) {
	e := newEnv(t)
	p := valkeytest.NewProxy(t, e.srv.Addr())
	c, err := valkey.NewClient(e.srv.ClientOptionVia(p.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	l, err := New(c, "unanswered", Config{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	calls := func() (evalsha, eval int64) {
		return e.srv.CommandCalls(t, "evalsha"), e.srv.CommandCalls(t, "eval")
	}

	for range 2 { // the first round loads the scripts (NOSCRIPT, then EVAL)
		h := mustAcquire(t, l)
		if err := h.Reacquire(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if err := h.Release(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	h := mustAcquire(t, l)
	sha0, eval0 := calls()
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if sha, eval := calls(); sha-sha0 != 1 || eval != eval0 {
		t.Fatalf("a release after answered calls sent %d EVALSHA, %d EVAL; want 1, 0", sha-sha0, eval-eval0)
	}

	h = mustAcquire(t, l)
	p.Cut()
	if err := h.Reacquire(ctxT(t)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Reacquire through a cut connection = %v; want ErrUnavailable", err)
	}
	p.Restore()
	sha0, eval0 = calls()
	if err := retryUnavailable(t, func() error { return h.Release(ctxT(t)) }); err != nil {
		t.Fatalf("Release after an unanswered renewal = %v", err)
	}
	if sha, eval := calls(); sha != sha0 || eval-eval0 != 1 {
		t.Fatalf("the release after an unanswered renewal sent %d EVALSHA, %d EVAL; want 0, 1", sha-sha0, eval-eval0)
	}
	if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatalf("EXISTS = %d after Release; want 0", n)
	}
}

// TestRefusedSubscriptionBacksOff: a waiter whose user may not SUBSCRIBE logs
// it once, retries the subscription with a growing pause, and keeps waiting
// on its fallback pace; the holder's release is still found.
func TestRefusedSubscriptionBacksOff(t *testing.T) {
	e := newEnv(t)
	var logs logBuffer
	client := e.aclClient(t, "nosub", valkeytest.Without(valkeytest.ACL, "+subscribe"))
	cfg := Config{TTL: time.Minute, RetryInterval: 50 * time.Millisecond, Logger: logs.logger()}
	holder := mustAcquire(t, e.lock(t, "nosub", cfg))
	l, err := New(client, "nosub", cfg)
	if err != nil {
		t.Fatal(err)
	}
	subs0 := e.srv.CommandCalls(t, "subscribe")
	evals0 := e.srv.CommandCalls(t, "evalsha", "eval")
	got := make(chan error, 1)
	go func() {
		h, err := l.Acquire(ctxT(t))
		if err == nil {
			err = h.Release(ctxT(t))
		}
		got <- err
	}()
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	for !strings.Contains(logs.String(), "refuses the subscription") {
		if time.Now().After(deadline) {
			t.Fatal("no log line about the refused subscription")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // let the waiter live through its fallback pace
	subs := e.srv.CommandCalls(t, "subscribe") - subs0
	evals := e.srv.CommandCalls(t, "evalsha", "eval") - evals0
	elapsed := time.Since(start)
	if err := holder.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiter without +subscribe: %v", err)
	}
	// Growing pauses from 50ms: at most ~6 refused SUBSCRIBEs in 1.5s (it was
	// one every 50ms, each waking an attempt).
	if subs > 8 {
		t.Errorf("%d SUBSCRIBE calls in %v; want few, backing off", subs, elapsed)
	}
	if max := int64(elapsed/cfg.RetryInterval) + 3; evals > max {
		t.Errorf("%d attempts in %v; want at most one per retry interval (%d)", evals, elapsed, max)
	}
	if n := strings.Count(logs.String(), "refuses the subscription"); n != 1 {
		t.Errorf("%d log lines about the refused subscription; want 1:\n%s", n, logs.String())
	}
}

// TestDoReleasesWhenFnPanics: Do's promise to always release holds for a
// panicking fn too; the panic goes on afterwards.
func TestDoReleasesWhenFnPanics(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "do-panic", Config{TTL: time.Minute})
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recover() = %v; want fn's panic", r)
			}
		}()
		_ = l.Do(ctxT(t), func(context.Context, *Held) error { panic("boom") })
		t.Fatal("Do returned after fn panicked")
	}()
	if n := e.srv.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatalf("EXISTS %s = %d after fn panicked; want 0", l.Key(), n)
	}
}
