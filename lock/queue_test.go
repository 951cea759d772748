package lock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProcessesAreServedInArrivalOrder: Locks on one name (as processes)
// that join the line one after the other are handed the key in that order,
// each by the previous holder's release, with increasing fences.
func TestProcessesAreServedInArrivalOrder(t *testing.T) {
	e := newEnv(t)
	const n = 5
	cfg := Config{TTL: time.Minute, RetryInterval: time.Hour}
	h := mustAcquire(t, e.lock(t, "fifo", cfg))
	type result struct {
		i int
		h *Held
	}
	got := make(chan result, n)
	for i := range n {
		l := e.lock(t, "fifo", cfg)
		gotH, errc := acquireAsync(ctxT(t), l)
		go func() {
			h := <-gotH
			if err := <-errc; err != nil {
				t.Error(err)
			}
			got <- result{i, h}
		}()
		awaitEntry(t, e, l)
	}
	prev := h
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for want := range n {
		var r result
		select {
		case r = <-got:
		case <-ctxT(t).Done():
			t.Fatalf("waiter %d was never handed the key", want)
		}
		if r.h == nil {
			t.FailNow()
		}
		if r.i != want {
			t.Fatalf("waiter %d got the key in turn %d; want arrival order", r.i, want)
		}
		if r.h.Fence() <= prev.Fence() {
			t.Fatalf("fence %d after %d; want increasing", r.h.Fence(), prev.Fence())
		}
		prev = r.h
		if err := r.h.Release(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.srv.Int(t, "EXISTS", "baton:lock:fifo", "{baton:lock:fifo}:queue"); n != 0 {
		t.Fatalf("EXISTS key, queue = %d after every waiter released; want 0", n)
	}
}

// waiterProc is a waiter in a process of its own (see waiterMain).
type waiterProc struct {
	cmd   *exec.Cmd
	id    string
	lines chan string // its stdout after the "waiting" line
}

// startWaiter starts a waiting process on the lock name and returns once its
// entry is in line.
func startWaiter(t *testing.T, e *env, name string, claim time.Duration) *waiterProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", envWaiter, e.srv.Addr(), name, claim.Milliseconds()))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	w := &waiterProc{cmd: cmd, lines: make(chan string, 4)}
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatal("the waiter process said nothing")
	}
	w.id = strings.TrimPrefix(sc.Text(), "waiting ")
	go func() {
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !inLine(t, e, name, w.id) {
		if time.Now().After(deadline) {
			t.Fatalf("waiter %s never joined the line", w.id)
		}
		time.Sleep(time.Millisecond)
	}
	return w
}

// inLine reports whether the waiter id has an entry in the lock's queue.
func inLine(t *testing.T, e *env, name, id string) bool {
	t.Helper()
	entries, err := e.srv.Do(t, "LRANGE", "{baton:lock:"+name+"}:queue", "0", "-1").AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if strings.HasPrefix(en, id+" ") {
			return true
		}
	}
	return false
}

// TestKilledWaiterIsSkipped: a waiter process killed after joining the line
// costs nothing: its grant channel has no subscriber left, so the release
// hands the key to the next waiter at once. (Its claim window is an hour: a
// grant made to it would hold the lock past the test.)
func TestKilledWaiterIsSkipped(t *testing.T) {
	e := newEnv(t)
	cfg := Config{TTL: time.Minute, RetryInterval: time.Hour, ClaimWindow: time.Hour}
	h := mustAcquire(t, e.lock(t, "killed", cfg))
	dead := startWaiter(t, e, "killed", time.Hour)
	live := e.lock(t, "killed", cfg)
	got, errc := acquireAsync(ctxT(t), live)
	awaitEntry(t, e, live)

	if err := dead.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = dead.cmd.Wait()
	// The server notices the closed connection, and with it the
	// subscription, as soon as it reads it: wait for that, not a guess.
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.Subscribers(t, "{baton:lock:killed}:grant:"+dead.id) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the killed waiter's subscription outlived it")
		}
		time.Sleep(time.Millisecond)
	}
	released := time.Now()
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w := awaitAcquired(t, got, errc)
	t.Logf("release -> the live waiter holds: %v, past a killed waiter first in line", time.Since(released))
	if w.Fence() <= h.Fence() {
		t.Fatalf("fence %d; want > %d", w.Fence(), h.Fence())
	}
	if inLine(t, e, "killed", dead.id) {
		t.Fatal("the killed waiter is still in line")
	}
	if err := w.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestFrozenWaiterCostsAClaimWindow: a waiter process frozen (SIGSTOP) after
// joining the line is handed the key by the release, since its connection
// still stands; it cannot claim it, so the key expires after the claim
// window and passes on to the next waiter, which does not wait for a TTL
// (a minute here). When the frozen waiter wakes, its late grant is void: the
// lock stays the next waiter's.
func TestFrozenWaiterCostsAClaimWindow(t *testing.T) {
	e := newEnv(t)
	const claim = 300 * time.Millisecond
	cfg := Config{TTL: time.Minute, RetryInterval: 20 * time.Millisecond, ClaimWindow: claim}
	h := mustAcquire(t, e.lock(t, "frozen", cfg))
	frozen := startWaiter(t, e, "frozen", claim)
	live := e.lock(t, "frozen", cfg)
	got, errc := acquireAsync(ctxT(t), live)
	awaitEntry(t, e, live)

	if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w := awaitAcquired(t, got, errc)
	took := time.Since(released)
	t.Logf("release -> the live waiter holds: %v, past a frozen waiter first in line (claim window %v)", took, claim)
	if took < claim {
		// Only the frozen waiter's unclaimed grant expiring can have let
		// it through: anything shorter means the grant did not go to it.
		t.Fatalf("the live waiter held %v after the release, before the claim window ended", took)
	}
	if err := frozen.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The woken waiter finds its grant expired and waits again, behind the
	// live holder, which still owns the key.
	if owned, err := w.Owned(ctxT(t)); err != nil || !owned {
		t.Fatalf("the live waiter's key: owned = %v, %v; want true", owned, err)
	}
	if err := w.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-frozen.lines:
		if !strings.HasPrefix(line, "acquired ") {
			t.Fatalf("the woken waiter said %q; want it to acquire in its turn", line)
		}
	case <-ctxT(t).Done():
		t.Fatal("the woken waiter never acquired")
	}
}

// TestMissedGrantIsFound: a grant whose message never arrives (done here by
// hand, as a release would, but without the PUBLISH) is found by the
// waiter's next attempt of its own (its fallback), which takes it.
func TestMissedGrantIsFound(t *testing.T) {
	e := newEnv(t)
	cfg := Config{TTL: time.Minute, RetryInterval: 10 * time.Millisecond}
	h := mustAcquire(t, e.lock(t, "missed", cfg))
	l := e.lock(t, "missed", cfg)
	got, errc := acquireAsync(ctxT(t), l)
	awaitEntry(t, e, l)
	entry := e.srv.String(t, "LPOP", l.keys.queue)
	token := strings.TrimPrefix(entry, l.id+" ")
	// What releaseScript does, less the PUBLISH.
	e.srv.Do(t, "SET", l.keys.fence, fmt.Sprint(h.Fence()+1))
	e.srv.Do(t, "SET", l.Key(), token, "PX", "60000")
	w := awaitAcquired(t, got, errc)
	if w.Token() != token || w.Fence() != h.Fence()+1 {
		t.Fatalf("acquired token %q fence %d; want the grant's %q, %d", w.Token(), w.Fence(), token, h.Fence()+1)
	}
	if err := w.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestWaiterThatGivesUpLeavesTheLine: a waiter whose ctx ends takes its
// entry out of line, and the release goes to the next.
func TestWaiterThatGivesUpLeavesTheLine(t *testing.T) {
	e := newEnv(t)
	cfg := Config{TTL: time.Minute, RetryInterval: time.Hour}
	h := mustAcquire(t, e.lock(t, "gives-up", cfg))
	quitter := e.lock(t, "gives-up", cfg)
	ctx, cancel := context.WithCancel(ctxT(t))
	_, qerr := acquireAsync(ctx, quitter)
	awaitEntry(t, e, quitter)
	next := e.lock(t, "gives-up", cfg)
	got, errc := acquireAsync(ctxT(t), next)
	awaitEntry(t, e, next)
	cancel()
	if err := <-qerr; !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("Acquire after its ctx ended = %v; want ErrNotAcquired", err)
	}
	if inLine(t, e, "gives-up", quitter.id) {
		t.Fatal("the waiter that gave up is still in line")
	}
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w := awaitAcquired(t, got, errc)
	if err := w.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestQueueSurvivesFlushAndRestart: SCRIPT FLUSH in the middle of a line
// changes nothing; a restart without data forgets the line and the key, and
// the waiters take their places again by their fallback and all acquire.
func TestQueueSurvivesFlushAndRestart(t *testing.T) {
	e := newEnv(t)
	cfg := Config{TTL: time.Minute, RetryInterval: 10 * time.Millisecond}
	for _, fault := range []string{"flush", "restart"} {
		t.Run(fault, func(t *testing.T) {
			name := "faults-" + fault
			h := mustAcquire(t, e.lock(t, name, cfg))
			const n = 3
			acquired := make(chan *Held, n)
			for range n {
				l := e.lock(t, name, cfg)
				got, errc := acquireAsync(ctxT(t), l)
				go func() { acquired <- awaitAcquired(t, got, errc) }()
				awaitEntry(t, e, l)
			}
			switch fault {
			case "flush":
				e.srv.Do(t, "SCRIPT", "FLUSH")
				if err := h.Release(ctxT(t)); err != nil {
					t.Fatal(err)
				}
			case "restart":
				e.srv.Restart(t)
			}
			for range n {
				w := <-acquired
				if w == nil {
					t.FailNow()
				}
				if err := retryUnavailable(t, func() error { return w.Release(ctxT(t)) }); err != nil {
					t.Fatal(err)
				}
			}
			if n := e.srv.Int(t, "EXISTS", "baton:lock:"+name, "{baton:lock:"+name+"}:queue"); n != 0 {
				t.Fatalf("EXISTS key, queue = %d at the end; want 0", n)
			}
		})
	}
}
