package lock

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/baton-dev/baton/internal/valkeytest"
)

// The benchmarks run against one real valkey-server each and report the
// figures docs/benchmarks.md compares with the targets of DESIGN.md:
//
//	cmds/op, rtt/op   server commands (script internals included) and client
//	                  round trips per uncontended acquire+release
//	cmds/acq          server commands per contended acquisition
//	cmds-ratio        cmds/acq divided by the uncontended cmds/op
//	srv-µs/op         server CPU time (INFO cpu) per operation
//	cli-µs/op         CPU time of the benchmark process per operation
//	min/max           fewest acquisitions of a worker divided by the most
//	handoff-*-ms      release to a blocked waiter's Acquire returning
//	polls/interval    a blocked waiter's round trips per RetryInterval
//	takeover-*-ms     planted key's TTL end to a waiter's Acquire returning
//	cmds/takeover     server commands of one takeover, planting included
//
// They fail only on a correctness violation (two holders at once, an error),
// never on a figure.

// benchEnv is one server and one client of it for a benchmark.
type benchEnv struct {
	srv    *valkeytest.Server
	client *benchClient
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	s := valkeytest.Start(b)
	e := &benchEnv{srv: s, client: newBenchClient(s.Client(b))}
	e.commands(b) // connect the server's own client before anything is counted
	return e
}

// lock builds a Lock on the env's client and warms its scripts up, so the
// first measured call does not pay the NOSCRIPT fallback.
func (e *benchEnv) lock(b *testing.B, name string, cfg Config) *Lock {
	b.Helper()
	return benchLock(b, e.client, name, cfg)
}

func benchLock(b *testing.B, c valkey.Client, name string, cfg Config) *Lock {
	b.Helper()
	l, err := New(c, name, cfg)
	if err != nil {
		b.Fatal(err)
	}
	h, err := l.TryAcquire(b.Context())
	if err != nil {
		b.Fatalf("warm-up TryAcquire(%s) = %v", name, err)
	}
	if err := h.Release(b.Context()); err != nil {
		b.Fatalf("warm-up Release(%s) = %v", name, err)
	}
	return l
}

// commands returns the server's total_commands_processed. Commands that
// scripts run with server.call count too.
func (e *benchEnv) commands(b *testing.B) int64 {
	b.Helper()
	return e.srv.CommandsProcessed(b)
}

// commandsSince returns the commands processed since an earlier reading c0,
// not counting the INFO that took that reading.
func (e *benchEnv) commandsSince(b *testing.B, c0 int64) int64 {
	b.Helper()
	return e.commands(b) - c0 - 1
}

// cpu is a reading of the CPU time used so far by the server and by this
// process (the client, plus whatever else the test binary runs).
type cpu struct{ server, client time.Duration }

func (e *benchEnv) cpu(b *testing.B) cpu {
	b.Helper()
	info := e.srv.Info(b, "cpu")
	var srv float64
	for _, k := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, err := strconv.ParseFloat(info[k], 64)
		if err != nil {
			b.Fatalf("INFO cpu %s = %q: %v", k, info[k], err)
		}
		srv += v
	}
	return cpu{server: time.Duration(srv * float64(time.Second)), client: processCPU()}
}

// reportCPU reports the server's and the client's CPU time per operation
// since c0 as srv-µs/op and cli-µs/op: what an operation costs, less noisy on
// a shared machine than its wall time.
func (e *benchEnv) reportCPU(b *testing.B, c0 cpu, ops int) {
	b.Helper()
	c1 := e.cpu(b)
	per := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(ops) }
	b.ReportMetric(per(c1.server-c0.server), "srv-µs/op")
	b.ReportMetric(per(c1.client-c0.client), "cli-µs/op")
}

// benchClient counts the round trips (Do and DoMulti calls) made through it
// and tells a listener each time one returns. Subscriptions (Receive) are not
// counted: they are pushes, not request/reply round trips.
type benchClient struct {
	valkey.Client
	calls   atomic.Int64  // round trips started
	replies atomic.Int64  // round trips returned
	replied chan struct{} // buffered 1: a round trip returned
}

func newBenchClient(c valkey.Client) *benchClient {
	return &benchClient{Client: c, replied: make(chan struct{}, 1)}
}

func (c *benchClient) Do(ctx context.Context, cmd valkey.Completed) valkey.ValkeyResult {
	c.calls.Add(1)
	defer c.returned()
	return c.Client.Do(ctx, cmd)
}

func (c *benchClient) DoMulti(ctx context.Context, cmds ...valkey.Completed) []valkey.ValkeyResult {
	c.calls.Add(1)
	defer c.returned()
	return c.Client.DoMulti(ctx, cmds...)
}

func (c *benchClient) returned() {
	c.replies.Add(1)
	select {
	case c.replied <- struct{}{}:
	default:
	}
}

// BenchmarkAcquireRelease is the uncontended cost of TryAcquire plus Release,
// one after the other on one key. DESIGN.md's target is 2 round trips.
func BenchmarkAcquireRelease(b *testing.B) {
	e := newBenchEnv(b)
	l := e.lock(b, "uncontended", Config{TTL: 10 * time.Second})
	ctx := b.Context()
	calls0, c0, cpu0 := e.client.calls.Load(), e.commands(b), e.cpu(b)
	b.ReportAllocs()
	for b.Loop() {
		h, err := l.TryAcquire(ctx)
		if err != nil {
			b.Fatalf("TryAcquire = %v", err)
		}
		if err := h.Release(ctx); err != nil {
			b.Fatalf("Release = %v", err)
		}
	}
	b.StopTimer()
	e.reportCPU(b, cpu0, b.N)
	n := float64(b.N)
	b.ReportMetric(float64(e.client.calls.Load()-calls0)/n, "rtt/op")
	b.ReportMetric(float64(e.commandsSince(b, c0))/n, "cmds/op")
}

// BenchmarkParallelDistinctKeys runs 64 goroutines on one client, each
// acquiring and releasing its own lock, and reports the total ops/s.
func BenchmarkParallelDistinctKeys(b *testing.B) {
	const workers = 64
	e := newBenchEnv(b)
	locks := make([]*Lock, workers)
	for i := range locks {
		locks[i] = e.lock(b, "distinct-"+strconv.Itoa(i), Config{TTL: 10 * time.Second})
	}
	e.runDistinct(b, workers, "acquire+release on a lock of its own", func(ctx context.Context, w int) error {
		h, err := locks[w].TryAcquire(ctx)
		if err == nil {
			err = h.Release(ctx)
		}
		return err
	})
}

// runDistinct runs b.N calls of op spread over workers goroutines, worker w
// always passing w, and reports process and server CPU per op and ops/s. The
// first error fails b with what.
func (e *benchEnv) runDistinct(b *testing.B, workers int, what string, op func(ctx context.Context, w int) error) {
	ctx := b.Context()
	var next atomic.Int64
	var failed atomic.Pointer[error]
	cpu0 := e.cpu(b)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := op(ctx, w); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatalf("%s = %v", what, *err)
	}
	e.reportCPU(b, cpu0, b.N)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
}

// BenchmarkContended16 runs 16 goroutines sharing one *Lock on one key, each
// looping Acquire (blocking) and Release, so most acquisitions are handovers
// made by the previous holder's release in the process. It checks mutual
// exclusion and reports throughput, fairness (fewest acquisitions of a
// worker over the most; the target is at least 0.5) and server commands per
// acquisition against the uncontended figure measured on the same server
// (target: at most twice).
func BenchmarkContended16(b *testing.B) {
	e := newBenchEnv(b)
	e.contend(b, []*Lock{e.lock(b, "contended", Config{TTL: 10 * time.Second})}, 16)
}

// BenchmarkContendedProcesses is BenchmarkContended16 across processes: each
// simulated process is a client (a connection) and a *Lock of its own, with
// goroutines looping Acquire and Release on the one key. Handovers between
// processes go through the server's line of waiters; the target is a cost
// per acquisition that does not grow with the number of processes waiting
// (at most 1.5 times the one-process figure, and at most 10 commands).
func BenchmarkContendedProcesses(b *testing.B) {
	for _, c := range []struct{ procs, each int }{{4, 4}, {16, 1}, {64, 1}} {
		b.Run(fmt.Sprintf("%dx%d", c.procs, c.each), func(b *testing.B) {
			e := newBenchEnv(b)
			locks := make([]*Lock, c.procs)
			for i := range locks {
				locks[i] = benchLock(b, e.srv.Client(b), "processes", Config{TTL: 10 * time.Second})
			}
			e.contend(b, locks, c.each)
		})
	}
}

// contend runs each goroutines on each of locks, looping Acquire and Release
// b.N times in all, and reports acq/s, min/max, cmds/acq and cmds-ratio (and
// rtt/acq for the env's own client).
func (e *benchEnv) contend(b *testing.B, locks []*Lock, each int) {
	b.Helper()
	uncontended := e.uncontendedCommands(b)
	ctx := b.Context()
	workers := len(locks) * each
	var (
		next   atomic.Int64
		inside atomic.Int32
		both   atomic.Bool
		failed atomic.Pointer[error]
		counts = make([]int64, workers)
	)
	calls0, c0 := e.client.calls.Load(), e.commands(b)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		l := locks[w/each]
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				h, err := l.Acquire(ctx)
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				if inside.Add(1) != 1 {
					both.Store(true)
				}
				runtime.Gosched() // give an intruder the chance to show up
				inside.Add(-1)
				if err := h.Release(ctx); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				counts[w]++
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if both.Load() {
		b.Fatal("two workers held the lock at once")
	}
	if err := failed.Load(); err != nil {
		b.Fatalf("contended acquire/release = %v", *err)
	}
	n := float64(b.N)
	cmds := float64(e.commandsSince(b, c0)) / n
	b.ReportMetric(n/elapsed.Seconds(), "acq/s")
	b.ReportMetric(float64(slices.Min(counts))/float64(max(slices.Max(counts), 1)), "min/max")
	b.ReportMetric(cmds, "cmds/acq")
	b.ReportMetric(cmds/uncontended, "cmds-ratio")
	if len(locks) == 1 {
		b.ReportMetric(float64(e.client.calls.Load()-calls0)/n, "rtt/acq")
	}
}

// uncontendedCommands measures the server commands of one uncontended
// TryAcquire plus Release, the denominator of cmds-ratio.
func (e *benchEnv) uncontendedCommands(b *testing.B) float64 {
	b.Helper()
	const rounds = 200
	l := e.lock(b, "uncontended-reference", Config{TTL: 10 * time.Second})
	c0 := e.commands(b)
	for range rounds {
		h, err := l.TryAcquire(b.Context())
		if err != nil {
			b.Fatalf("TryAcquire = %v", err)
		}
		if err := h.Release(b.Context()); err != nil {
			b.Fatalf("Release = %v", err)
		}
	}
	return float64(e.commandsSince(b, c0)) / rounds
}

// BenchmarkHandoff measures the time from just before a holder's Release to
// the return of a waiter's Acquire that was blocked on the same name.
//
// The holder and the waiter are two *Lock values on two clients (two
// connections), as two processes would be, so nothing is handed over inside
// the process. The holder releases once the waiter is idle in line: it made
// its attempts (the fast path, and the one that follows the confirmation of
// its subscription when it was not subscribed yet) and the server shows a
// subscriber on its grant channel.
func BenchmarkHandoff(b *testing.B) {
	e := newBenchEnv(b)
	cfg := Config{TTL: 10 * time.Second}
	holder := e.lock(b, "handoff", cfg)
	wc := newBenchClient(e.srv.Client(b))
	waiter := benchLock(b, wc, "handoff", cfg)
	ctx := b.Context()

	got := make(chan benchAcquired, 1)
	var handoffs []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		h, err := holder.TryAcquire(ctx)
		if err != nil {
			b.Fatalf("holder TryAcquire = %v", err)
		}
		replies0 := wc.replies.Load()
		go func() {
			h, err := waiter.Acquire(ctx)
			got <- benchAcquired{h, time.Now(), err}
		}()
		e.awaitBlocked(b, wc, replies0, waiter.keys.grant+waiter.id, got)
		released := time.Now()
		if err := h.Release(ctx); err != nil {
			b.Fatalf("holder Release = %v", err)
		}
		a := <-got
		if a.err != nil {
			b.Fatalf("waiter Acquire = %v", a.err)
		}
		handoffs = append(handoffs, a.at.Sub(released))
		if err := a.h.Release(ctx); err != nil {
			b.Fatalf("waiter Release = %v", err)
		}
	}
	b.StopTimer()
	reportPercentiles(b, "handoff", handoffs)
}

// benchAcquired is what a waiter goroutine hands back: its acquisition and
// when Acquire returned.
type benchAcquired struct {
	h   *Held
	at  time.Time
	err error
}

// blockedGrace is how long awaitBlocked waits for the second attempt once the
// first one failed and the channel has a subscriber: a Lock that makes only
// one attempt before waiting is taken as blocked after it.
const blockedGrace = 50 * time.Millisecond

// awaitBlocked returns once a waiter on wc, started after wc had returned
// replies0 round trips, is blocked: two attempts returned (the fast path and
// the one after the subscription is confirmed), or one and a short grace
// (a waiter whose subscription lingered from its last acquisition joins the
// line in its first), and the server counts a subscriber on channel, its
// grant channel. It fails if the waiter acquired instead.
func (e *benchEnv) awaitBlocked(b *testing.B, wc *benchClient, replies0 int64, channel string, got <-chan benchAcquired) {
	b.Helper()
	grace := time.NewTimer(time.Hour)
	defer grace.Stop()
	graceSet := false
	for {
		attempts := wc.replies.Load() - replies0
		if attempts >= 1 && e.srv.Subscribers(b, channel) >= 1 {
			if attempts >= 2 {
				return
			}
			if !graceSet {
				grace.Reset(blockedGrace)
				graceSet = true
			}
		}
		select {
		case <-wc.replied:
		case <-grace.C:
			return
		case a := <-got:
			b.Fatalf("waiter returned before the release: %v", a.err)
		}
	}
}

// blockedWindow is how long BenchmarkBlockedWaiter watches a blocked waiter,
// and blockedRetry the waiter's RetryInterval: six fallback intervals.
const (
	blockedWindow = 30 * time.Millisecond
	blockedRetry  = 5 * time.Millisecond
)

// BenchmarkBlockedWaiter measures what one waiter costs the server while it
// is blocked behind a holder that neither releases nor expires: DESIGN.md
// asks that waiters do not poll, the fallback pace being only for lost
// notifications. polls/interval is the waiter's round trips during the
// window divided by the number of RetryIntervals in it: 1 means it polls at
// the fallback pace, 0 that it only waits for events. The waiter's
// RetryInterval is 5ms so that a short window shows it.
func BenchmarkBlockedWaiter(b *testing.B) {
	e := newBenchEnv(b)
	holder := e.lock(b, "blocked", Config{TTL: time.Minute})
	wc := newBenchClient(e.srv.Client(b))
	waiter := benchLock(b, wc, "blocked", Config{TTL: time.Minute, RetryInterval: blockedRetry})
	h, err := holder.TryAcquire(b.Context())
	if err != nil {
		b.Fatalf("holder TryAcquire = %v", err)
	}
	got := make(chan benchAcquired, 1)
	var polls, cmds int64
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithCancel(b.Context())
		replies0 := wc.replies.Load()
		go func() {
			h, err := waiter.Acquire(ctx)
			got <- benchAcquired{h, time.Now(), err}
		}()
		e.awaitBlocked(b, wc, replies0, waiter.keys.grant+waiter.id, got)
		calls0, c0 := wc.calls.Load(), e.commands(b)
		window := time.NewTimer(blockedWindow)
		select {
		case <-window.C:
		case a := <-got:
			b.Fatalf("waiter returned while the lock was held: %v", a.err)
		}
		polls += wc.calls.Load() - calls0
		cmds += e.commandsSince(b, c0)
		cancel()
		if a := <-got; a.err == nil {
			b.Fatal("waiter acquired a held lock")
		}
	}
	b.StopTimer()
	if err := h.Release(b.Context()); err != nil {
		b.Fatalf("holder Release = %v", err)
	}
	n := float64(b.N)
	b.ReportMetric(float64(polls)/n/float64(blockedWindow/blockedRetry), "polls/interval")
	b.ReportMetric(float64(cmds)/n/blockedWindow.Seconds(), "cmds/s")
}

// takeoverTTL is the TTL of the key planted by BenchmarkTakeover. It is short
// because every iteration waits it out; the lateness does not depend on it,
// since the waiter arms a timer from the PTTL that its failed attempt returned.
const takeoverTTL = 20 * time.Millisecond

// BenchmarkTakeover plants a key with a 20ms TTL, as a holder that crashed
// would leave it, and measures how long after the TTL's end (taken from just
// before the SET was sent) a waiter's Acquire returns. ns/op is therefore the
// TTL plus the lateness. cmds/takeover counts the server commands from the
// SET to the waiter's release, the cost of waiting; an uncontended acquire
// and release is 7 of them.
func BenchmarkTakeover(b *testing.B) {
	e := newBenchEnv(b)
	l := e.lock(b, "takeover", Config{TTL: 10 * time.Second})
	ctx := b.Context()
	ttl := strconv.FormatInt(takeoverTTL.Milliseconds(), 10)
	var (
		lates []time.Duration
		cmds  int64
	)
	b.ReportAllocs()
	for b.Loop() {
		c0 := e.commands(b)
		planted := time.Now()
		e.srv.Do(b, "SET", l.Key(), "crashed-holder", "PX", ttl)
		h, err := l.Acquire(ctx)
		if err != nil {
			b.Fatalf("Acquire after a crashed holder = %v", err)
		}
		lates = append(lates, time.Since(planted.Add(takeoverTTL)))
		if err := h.Release(ctx); err != nil {
			b.Fatalf("Release = %v", err)
		}
		cmds += e.commandsSince(b, c0)
	}
	reportPercentiles(b, "takeover", lates)
	b.ReportMetric(float64(cmds)/float64(len(lates)), "cmds/takeover")
}

// reportPercentiles reports p50, p99 and max of ds in milliseconds as
// "<name>-p50-ms" and so on.
func reportPercentiles(b *testing.B, name string, ds []time.Duration) {
	b.Helper()
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := int(q*float64(len(ds))+0.999999) - 1
		return float64(ds[max(i, 0)]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.50), fmt.Sprintf("%s-p50-ms", name))
	b.ReportMetric(at(0.99), fmt.Sprintf("%s-p99-ms", name))
	b.ReportMetric(float64(ds[len(ds)-1])/float64(time.Millisecond), fmt.Sprintf("%s-max-ms", name))
}
