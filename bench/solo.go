package main

// Scenarios 7 and 8 measure baton alone: its peers have no election and no
// lease renewal to compare with. They run once, not once per round.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/election"
	"github.com/baton-dev/baton/lease"
	"github.com/baton-dev/baton/lock"
)

// quiet discards the election's and the leases' logs.
var quiet = slog.New(slog.DiscardHandler)

// --- scenario 7: election failover ---

// profile is an election's timing: TTL, renew deadline, retry period.
type profile struct {
	name                      string
	ttl, renewDeadline, retry time.Duration
}

var (
	// clientGoProfile is client-go's leader election timing, baton's default.
	clientGoProfile = profile{"client-go", election.DefaultTTL, election.DefaultRenewDeadline, election.DefaultRetryPeriod}
	fastProfile     = profile{"fast", time.Second, 700 * time.Millisecond, 200 * time.Millisecond}
)

func (p profile) String() string {
	return fmt.Sprintf("%s (%v / %v / %v)", p.name, p.ttl, p.renewDeadline, p.retry)
}

// failover is one series of samples of scenario 7.
type failover struct {
	profile  profile
	crash    bool            // the leader crashed; otherwise it resigned
	standbys int             // blocked in their campaigns when the leader goes
	lat      []time.Duration // resign: Resign called to a standby's OnElected; crash: the key's expiry to it
	total    []time.Duration // crash: the crash to the standby's OnElected
	cmds     []float64       // resign: server commands from the Resign to resignQuiet after OnElected
}

// candidate is one elector running in the background.
type candidate struct {
	e       *election.Elector
	elected chan time.Time // the start of its OnElected; shared by the standbys of a sample
	cancel  context.CancelFunc
	done    chan error
}

// startCandidate starts an elector whose OnElected sends its start time on
// elected, if there is room.
func startCandidate(ctx context.Context, client valkey.Client, name, id string, p profile, keepOnCancel bool, elected chan time.Time) (*candidate, error) {
	c := &candidate{elected: elected, done: make(chan error, 1)}
	e, err := election.New(client, election.Config{
		Name:          name,
		Identity:      id,
		TTL:           p.ttl,
		RenewDeadline: p.renewDeadline,
		RetryPeriod:   p.retry,
		KeepOnCancel:  keepOnCancel,
		Logger:        quiet,
		Callbacks: callbacks.Callbacks{OnElected: func(ctx context.Context, _ callbacks.Term) {
			at := time.Now()
			select {
			case c.elected <- at:
			default:
			}
			<-ctx.Done()
		}},
	})
	if err != nil {
		return nil, err
	}
	c.e = e
	rctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	go func() { c.done <- e.Run(rctx) }()
	return c, nil
}

// stopAll cancels the candidates' Runs and waits for them to return.
func stopAll(cs ...*candidate) error {
	for _, c := range cs {
		c.cancel()
	}
	var errs []error
	deadline := time.Now().Add(waitLimit)
	for _, c := range cs {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-c.done:
		case <-t.C:
			errs = append(errs, fmt.Errorf("%s: Run did not return within %v of its cancel", c.e.Identity(), waitLimit))
		}
		t.Stop()
	}
	return errors.Join(errs...)
}

// awaitElected returns when OnElected started for a candidate that reports
// on elected.
func awaitElected(elected <-chan time.Time, limit time.Duration) (time.Time, error) {
	select {
	case at := <-elected:
		return at, nil
	case <-time.After(limit):
		return time.Time{}, fmt.Errorf("no candidate elected within %v", limit)
	}
}

// runElection: scenario 7. Every sample starts a leader and its standbys,
// each on a client of its own as a process of its own, on an election of
// its own, so that no sample waits for the previous one's retry period.
// Resign samples with one standby and with e.standbys alternate sample by
// sample, so that the machine's drift hits both alike.
func runElection(ctx context.Context, e *env, _ peer, tag string, r *result) error {
	clients := make([]valkey.Client, 1+max(e.standbys, 1))
	for i := range clients {
		c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{e.srv.addr}, DisableCache: true})
		if err != nil {
			return err
		}
		defer c.Close()
		clients[i] = c
	}
	type plan struct {
		p        profile
		crash    bool
		standbys int
		n        int
	}
	resigns := []plan{
		{fastProfile, false, 1, e.resigns},
		{fastProfile, false, e.standbys, e.resigns},
		{clientGoProfile, false, 1, e.resigns},
		{clientGoProfile, false, e.standbys, e.resigns},
	}
	if e.standbys == 1 {
		resigns = []plan{resigns[0], resigns[2]}
	}
	var crashes []plan
	if e.crashes > 0 {
		crashes = append(crashes, plan{fastProfile, true, 1, e.crashes})
	}
	if e.slowCrash {
		crashes = append(crashes, plan{clientGoProfile, true, 1, 1})
	}
	first := len(r.failovers)
	for _, s := range slices.Concat(resigns, crashes) {
		r.failovers = append(r.failovers, failover{profile: s.p, crash: s.crash, standbys: s.standbys})
	}
	for i := range e.resigns {
		for j, s := range resigns {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			name := fmt.Sprintf("%s:%s:%d:%d", tag, s.p.name, s.standbys, i)
			if err := resignSample(ctx, e, clients[:1+s.standbys], name, s.p, &r.failovers[first+j]); err != nil {
				return fmt.Errorf("%v resign with %d standbys: %w", s.p, s.standbys, err)
			}
		}
	}
	for j, s := range crashes {
		f := &r.failovers[first+len(resigns)+j]
		for i := range s.n {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			name := fmt.Sprintf("%s:%s:crash:%d", tag, s.p.name, i)
			if err := crashSample(ctx, e, clients[:2], name, s.p, f); err != nil {
				return fmt.Errorf("%v crash: %w", s.p, err)
			}
		}
	}
	return nil
}

// startGroup starts the leader on clients[0] and waits for its election,
// then starts a standby on each other client, waits until all of them are
// in the server's line of waiters, and lets them wait there for 20-40ms
// more. The standbys report on one channel, elected.
func startGroup(ctx context.Context, e *env, clients []valkey.Client, name string, p profile, keepOnCancel bool) (leader *candidate, standbys []*candidate, elected chan time.Time, err error) {
	leader, err = startCandidate(ctx, clients[0], name, "leader", p, keepOnCancel, make(chan time.Time, 1))
	if err != nil {
		return nil, nil, nil, err
	}
	if _, err := awaitElected(leader.elected, waitLimit); err != nil {
		return nil, nil, nil, errors.Join(err, stopAll(leader))
	}
	elected = make(chan time.Time, len(clients)-1)
	for i, c := range clients[1:] {
		s, err := startCandidate(ctx, c, name, "standby-"+strconv.Itoa(i), p, keepOnCancel, elected)
		if err != nil {
			return nil, nil, nil, errors.Join(err, stopAll(append(standbys, leader)...))
		}
		standbys = append(standbys, s)
	}
	stop := func(err error) (*candidate, []*candidate, chan time.Time, error) {
		return nil, nil, nil, errors.Join(err, stopAll(append(standbys, leader)...))
	}
	if err := awaitLine(ctx, e, election.DefaultKeyPrefix+name, len(standbys)); err != nil {
		return stop(err)
	}
	time.Sleep(settleMin + rand.N(settleJitter))
	if len(elected) > 0 {
		return stop(errors.New("a standby elected while the leader led"))
	}
	return leader, standbys, elected, nil
}

// awaitLine waits until the server's line of waiters for the lock key holds
// n entries. The queue key is derived from the lock key as package lock
// does for a key without a hash tag of its own (as the bench's are): the key
// in braces, then ":queue".
func awaitLine(ctx context.Context, e *env, key string, n int) error {
	queue := "{" + key + "}:queue"
	deadline := time.Now().Add(waitLimit)
	for {
		got, err := e.srv.do(ctx, "LLEN", queue).AsInt64()
		if err != nil {
			return fmt.Errorf("LLEN %s: %w", queue, err)
		}
		if got == int64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("LLEN %s = %d after %v; want %d standbys in line", queue, got, waitLimit, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// resignQuiet is how long after the new leader's OnElected the server
// commands of a resign are still counted: the electors' reads of the new
// leader, which the handover's announcement sets off, land within it.
const resignQuiet = 10 * time.Millisecond

// resignSample: the leader calls Resign; one sample is the time from just
// before the call to the start of a standby's OnElected, and the server
// commands from then until resignQuiet after it. Only one standby may be
// elected.
func resignSample(ctx context.Context, e *env, clients []valkey.Client, name string, p profile, f *failover) error {
	leader, standbys, elected, err := startGroup(ctx, e, clients, name, p, false)
	if err != nil {
		return err
	}
	c0, err := e.srv.commands(ctx)
	if err != nil {
		return errors.Join(err, stopAll(append(standbys, leader)...))
	}
	start := time.Now()
	err = leader.e.Resign(ctx)
	if err == nil {
		var at time.Time
		if at, err = awaitElected(elected, waitLimit); err == nil {
			f.lat = append(f.lat, at.Sub(start))
			time.Sleep(resignQuiet)
			var cmds int64
			if cmds, err = commandsSince(ctx, e, c0); err == nil {
				f.cmds = append(f.cmds, float64(cmds))
			}
		}
	}
	if len(elected) > 0 {
		err = errors.Join(err, errors.New("two standbys elected"))
	}
	return errors.Join(err, stopAll(append(standbys, leader)...))
}

// crashSample: the leader's Run is cancelled with KeepOnCancel, so its key
// stays until its TTL ends, as after a crash; the crash falls at a random
// point of the renewal cycle. The key's expiry is taken from a PTTL read
// once the leader's Run has returned (its last renewal then has landed or
// been abandoned): the middle of that round trip plus the PTTL. One sample
// is how long after the expiry the standby's OnElected starts, and how long
// after the crash.
func crashSample(ctx context.Context, e *env, clients []valkey.Client, name string, p profile, f *failover) (err error) {
	leader, standbys, elected, err := startGroup(ctx, e, clients, name, p, true)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopAll(standbys...)) }()
	time.Sleep(rand.N(p.retry))
	crashed := time.Now()
	if err := stopAll(leader); err != nil {
		return err
	}
	before := time.Now()
	pttl, err := e.srv.do(ctx, "PTTL", election.DefaultKeyPrefix+name).AsInt64()
	after := time.Now()
	if err != nil {
		return fmt.Errorf("PTTL: %w", err)
	}
	if pttl <= 0 {
		return fmt.Errorf("PTTL after the crash = %d; want the key still alive", pttl)
	}
	expiry := before.Add(after.Sub(before) / 2).Add(time.Duration(pttl) * time.Millisecond)
	at, err := awaitElected(elected, p.ttl+waitLimit)
	if err != nil {
		return err
	}
	f.lat = append(f.lat, at.Sub(expiry))
	f.total = append(f.total, at.Sub(crashed))
	return nil
}

// --- scenario 8: many leases on one connection ---

// leaseRun is one case of scenario 8.
type leaseRun struct {
	n        int
	ttl      time.Duration
	spread   bool          // acquisitions paced over one renew interval; otherwise all at once
	acquire  time.Duration // to acquire all n
	window   time.Duration
	renewals int64         // in the window
	cpu      time.Duration // this process, user + system, in the window; < 0 when unknown
	server   time.Duration // valkey-server, user + system, in the window; < 0 when unknown
	lat      []time.Duration
	heapAll  float64 // HeapInuse per lease: lock + held + lease
	heapOnly float64 // HeapInuse per lease: the lease alone
	routines float64 // goroutines per lease
	conns    int     // the server's client connections besides the admin's; < 0 when unknown
	lost     int     // leases that were not alive at the end
}

// leaseCases are scenario 8's cases: the target (TTL 10s) with spread and
// burst starts, and a 3s TTL for 3.3 times the renewal rate.
var leaseCases = []struct {
	ttl    time.Duration
	spread bool
}{
	{10 * time.Second, true},
	{10 * time.Second, false},
	{3 * time.Second, true},
}

const (
	leaseWorkers    = 64 // concurrent acquisitions and releases, pipelined on the one connection
	leaseIdleWindow = time.Second
) // concurrent acquisitions and releases, pipelined on the one connection

func runLeases(ctx context.Context, e *env, _ peer, tag string, r *result) error {
	// What the process costs idle, with no lease: the baseline that the
	// cases' CPU figures include.
	runtime.GC()
	cpu0, t0 := cpuTime(), time.Now()
	time.Sleep(leaseIdleWindow)
	if cpu1 := cpuTime(); cpu0 >= 0 && cpu1 >= 0 {
		r.leaseIdle = (cpu1 - cpu0).Seconds() / time.Since(t0).Seconds()
	} else {
		r.leaseIdle = nan
	}
	for i, c := range leaseCases {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(os.Stderr, "          %d leases, TTL %v, start=%s\n", e.leases, c.ttl, startName(c.spread))
		r.leaseRuns = append(r.leaseRuns, leaseRun{n: e.leases, ttl: c.ttl, spread: c.spread})
		if err := leaseCase(ctx, e, tag+":"+strconv.Itoa(i), &r.leaseRuns[len(r.leaseRuns)-1]); err != nil {
			return fmt.Errorf("%d leases, TTL %v, start=%s: %w", e.leases, c.ttl, startName(c.spread), err)
		}
	}
	return nil
}

func startName(spread bool) string {
	if spread {
		return "spread"
	}
	return "burst"
}

// leaseCase acquires lr.n locks on one client with one connection, keeps
// them alive with leases at the default renew interval (TTL/3), and
// measures a window of two renew intervals.
func leaseCase(ctx context.Context, e *env, tag string, lr *leaseRun) error {
	client, err := valkey.NewClient(valkey.ClientOption{
		InitAddress:       []string{e.srv.addr},
		DisableCache:      true,
		PipelineMultiplex: -1, // exactly one connection
	})
	if err != nil {
		return err
	}
	defer client.Close()
	n, interval := lr.n, lr.ttl/3

	var m0, m1, m2 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	helds := make([]*lock.Held, n)
	begin := time.Now()
	err = inParallel(n, func(i int) error {
		if lr.spread {
			time.Sleep(time.Until(begin.Add(interval * time.Duration(i) / time.Duration(n))))
		}
		l, err := lock.New(client, "leases:"+tag+":"+strconv.Itoa(i), lock.Config{TTL: lr.ttl})
		if err != nil {
			return err
		}
		helds[i], err = l.TryAcquire(ctx)
		return err
	})
	lr.acquire = time.Since(begin)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)

	var (
		counting atomic.Bool
		renewed  atomic.Int64
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, 3*n)
	)
	onRenew := func(sent time.Time) {
		d := time.Since(sent)
		if !counting.Load() {
			return
		}
		renewed.Add(1)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
	}
	leases := make([]*lease.Lease, 0, n)
	defer func() {
		_ = inParallel(len(leases), func(i int) error { return leases[i].Release(context.WithoutCancel(ctx)) })
	}()
	for _, h := range helds {
		l, err := lease.New(h, lease.Config{OnRenew: onRenew, Logger: quiet})
		if err != nil {
			return err
		}
		leases = append(leases, l)
	}
	runtime.GC()
	runtime.ReadMemStats(&m2)
	lr.routines = float64(runtime.NumGoroutine()-g0) / float64(n)
	lr.heapAll = (float64(m2.HeapInuse) - float64(m0.HeapInuse)) / float64(n)
	lr.heapOnly = (float64(m2.HeapInuse) - float64(m1.HeapInuse)) / float64(n)

	// The window holds two renewals of every lease: with a spread start
	// anywhere, with a burst start between the bursts.
	open := time.Now().Add(50 * time.Millisecond)
	if !lr.spread {
		open = begin.Add(interval / 2)
		if lr.acquire+50*time.Millisecond > interval/2 {
			return fmt.Errorf("acquiring took %v, too long for a window between the renewal bursts", lr.acquire)
		}
	}
	time.Sleep(time.Until(open))
	lr.window = 2 * interval
	srv0, srvErr := e.srv.cpu(ctx)
	cpu0 := cpuTime()
	start := time.Now()
	counting.Store(true)
	time.Sleep(lr.window)
	counting.Store(false)
	lr.window = time.Since(start)
	cpu1 := cpuTime()
	srv1, err := e.srv.cpu(ctx)
	srvErr = errors.Join(srvErr, err)
	lr.cpu, lr.server = -1, -1
	if cpu0 >= 0 && cpu1 >= 0 {
		lr.cpu = cpu1 - cpu0
	}
	if srvErr == nil {
		lr.server = srv1 - srv0
	}
	lr.conns = -1
	if v, err := e.srv.info(ctx, "clients", "connected_clients"); err == nil {
		if c, err := strconv.Atoi(v); err == nil {
			lr.conns = c - 1 // the admin's
		}
	}
	lr.renewals = renewed.Load()
	mu.Lock()
	lr.lat = lat
	mu.Unlock()
	var lostErr error
	for _, l := range leases {
		if err := l.Err(); err != nil {
			lr.lost++
			lostErr = cmp(lostErr, err)
		}
	}
	if lostErr != nil {
		return fmt.Errorf("%d leases lost, the first: %w", lr.lost, lostErr)
	}
	if lr.renewals == 0 {
		return errors.New("no renewal in the window")
	}
	return nil
}

// inParallel runs fn(0..n-1) on leaseWorkers goroutines and returns the
// first error.
func inParallel(n int, fn func(i int) error) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range leaseWorkers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := fn(i); err != nil {
					mu.Lock()
					firstErr = cmp(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// cpu returns the server's CPU time, user plus system, from INFO cpu.
func (s *server) cpu(ctx context.Context) (time.Duration, error) {
	text, err := s.do(ctx, "INFO", "cpu").ToString()
	if err != nil {
		return 0, err
	}
	var total float64
	found := 0
	for line := range strings.Lines(text) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("INFO cpu %s: %w", k, err)
			}
			total += x
			found++
		}
	}
	if found != 2 {
		return 0, errors.New("INFO cpu has no used_cpu_user and used_cpu_sys")
	}
	return time.Duration(total * float64(time.Second)), nil
}
