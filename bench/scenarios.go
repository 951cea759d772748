package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// env is what every scenario run gets.
type env struct {
	srv       *server
	dur       time.Duration // length of a throughput window
	handoffs  int           // handoff samples per implementation per round
	takeovers int           // takeover samples per implementation per round
	resigns   int           // resign samples per election profile and number of standbys (scenario 7)
	standbys  int           // standbys in the many-standby resign samples (scenario 7)
	crashes   int           // crash samples with the fast profile (scenario 7)
	slowCrash bool          // also one crash sample with the client-go profile (15s)
	leases    int           // leases held at once (scenario 8)
}

// result collects one implementation's figures over all rounds.
type result struct {
	seqOps, seqCmds []float64       // per round
	seqLat          []time.Duration // every sample

	parOps []float64 // per round

	conAcq, conMinMax, conCmds []float64 // per round
	conOverlaps                int64     // two holders at once, all rounds

	procs []procResult // scenario 4, one per procScales case

	handoff []time.Duration // every sample

	takeover     []time.Duration // every sample
	takeoverRate []float64       // server commands per second while waiting, per sample

	failovers []failover // scenario 7, baton only
	leaseRuns []leaseRun // scenario 8, baton only
	leaseIdle float64    // scenario 8: share of one core the process used idle, before the cases

	errs     []string // scenarios 1-6: the implementation's figures are partial
	soloErrs []string // scenarios 7 and 8
}

func newResult() *result {
	return &result{procs: make([]procResult, len(procScales))}
}

// scenario is one numbered scenario of the run: run once per implementation
// per round, or joint once per round for all implementations together.
type scenario struct {
	id    string
	name  string
	run   func(ctx context.Context, e *env, p peer, tag string, r *result) error
	joint func(ctx context.Context, e *env, tag string, results map[string]*result) error
	solo  bool // baton only, run once rather than once per round
}

var scenarios = []scenario{
	{"1", "sequential acquire + release, one key", nil, runSequential, false},
	{"2", "64 goroutines, distinct keys", runParallel, nil, false},
	{"3", "16 goroutines, one key", runContended, nil, false},
	{"4", "processes on one key", nil, runProcesses, false},
	{"5", "handoff to a blocked waiter in another process", runHandoff, nil, false},
	{"6", "takeover after a crashed holder", runTakeover, nil, false},
	{"7", "election failover", runElection, nil, true},
	{"8", "many leases on one connection", runLeases, nil, true},
}

const (
	warmOps        = 20                     // per goroutine before a window opens
	contendedWarm  = 300 * time.Millisecond // contended workers run before the window opens
	parallelism    = 64
	contenders     = 16
	waitLimit      = 5 * time.Second        // bound on one blocking acquisition in scenarios 5 and 6
	settleMin      = 20 * time.Millisecond  // the waiter has been blocked this long ...
	settleJitter   = 20 * time.Millisecond  // ... plus up to this, before the release
	plantedTTL     = 500 * time.Millisecond // TTL of the crashed holder's key
	unlockDeadline = 5 * time.Second
)

// open starts an instance of p; the caller closes it.
func open(e *env, p peer) (impl, error) {
	im, err := p.open(e.srv.addr)
	if err != nil {
		return nil, fmt.Errorf("%s: open: %w", p.name, err)
	}
	return im, nil
}

// tryOnce acquires key with one attempt and releases it; not getting it is an
// error here, since nobody else uses the key.
func tryOnce(ctx context.Context, im impl, key string) error {
	unlock, ok, err := im.TryLock(ctx, key)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("TryLock(%s): held by someone else", key)
	}
	return unlock(ctx)
}

// commandsSince returns the server commands since reading c0, less the INFO
// that read c0.
func commandsSince(ctx context.Context, e *env, c0 int64) (int64, error) {
	c1, err := e.srv.commands(ctx)
	return c1 - c0 - 1, err
}

// runSequential: one goroutine, TryLock + unlock on one key per
// implementation, the implementations interleaved op by op (A B C ... A B C,
// each going first in turn) for e.dur per implementation, so that the
// machine's noise hits them alike: one-second windows taken in turn moved the
// ratios by 15% from run to run, more than the differences measured. ops/s is
// one over the mean latency. Server commands per op are counted before, one
// implementation at a time: the server's counter cannot tell interleaved ops
// apart. An implementation that fails leaves the rotation.
func runSequential(ctx context.Context, e *env, tag string, results map[string]*result) error {
	const countedOps = 50
	ims := make([]impl, len(peers))
	keys := make([]string, len(peers))
	fail := func(i int, err error) {
		r := results[peers[i].name]
		r.errs = append(r.errs, fmt.Sprintf("scenario 1 %s: %v", tag, err))
		ims[i] = nil
	}
	for i, p := range peers {
		im, err := open(e, p)
		if err != nil {
			fail(i, err)
			continue
		}
		defer im.Close()
		ims[i], keys[i] = im, fmt.Sprintf("seq:%s:%d", tag, i)
		for range warmOps {
			if err := tryOnce(ctx, im, keys[i]); err != nil {
				fail(i, err)
				break
			}
		}
	}
	for i, im := range ims {
		if im == nil {
			continue
		}
		c0, err := e.srv.commands(ctx)
		if err != nil {
			return err
		}
		for range countedOps {
			if err := tryOnce(ctx, im, keys[i]); err != nil {
				fail(i, err)
				break
			}
		}
		cmds, err := commandsSince(ctx, e, c0)
		if err != nil {
			return err
		}
		if ims[i] != nil {
			results[peers[i].name].seqCmds = append(results[peers[i].name].seqCmds, float64(cmds)/countedOps)
		}
	}
	lat := make([][]time.Duration, len(ims))
	spent := make([]time.Duration, len(ims))
	start := time.Now()
	for k := 0; time.Since(start) < e.dur*time.Duration(len(ims)); k++ {
		for j := range ims {
			i := (j + k) % len(ims)
			if ims[i] == nil {
				continue
			}
			t := time.Now()
			if err := tryOnce(ctx, ims[i], keys[i]); err != nil {
				fail(i, err)
				continue
			}
			d := time.Since(t)
			lat[i] = append(lat[i], d)
			spent[i] += d
		}
	}
	for i, p := range peers {
		if ims[i] == nil || len(lat[i]) == 0 {
			continue
		}
		r := results[p.name]
		r.seqOps = append(r.seqOps, float64(len(lat[i]))/spent[i].Seconds())
		r.seqLat = append(r.seqLat, lat[i]...)
	}
	return ctx.Err()
}

// runParallel: 64 goroutines on one instance, each TryLock + unlock on a key
// of its own, for e.dur.
func runParallel(ctx context.Context, e *env, p peer, tag string, r *result) error {
	im, err := open(e, p)
	if err != nil {
		return err
	}
	defer im.Close()
	var (
		warm, wg sync.WaitGroup
		begin    = make(chan struct{})
		stop     atomic.Bool
		ops      atomic.Int64
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		errMu.Lock()
		firstErr = cmp(firstErr, err)
		errMu.Unlock()
	}
	warm.Add(parallelism)
	for i := range parallelism {
		key := "par:" + tag + ":" + strconv.Itoa(i)
		wg.Go(func() {
			for range warmOps {
				if err := tryOnce(ctx, im, key); err != nil {
					fail(err)
					break
				}
			}
			warm.Done()
			<-begin
			for !stop.Load() {
				if err := tryOnce(ctx, im, key); err != nil {
					fail(err)
					return
				}
				if !stop.Load() {
					ops.Add(1)
				}
			}
		})
	}
	warm.Wait()
	start := time.Now()
	close(begin)
	time.Sleep(e.dur)
	stop.Store(true)
	elapsed := time.Since(start)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	r.parOps = append(r.parOps, float64(ops.Load())/elapsed.Seconds())
	return nil
}

// runContended: 16 goroutines share one instance and loop Lock + unlock on
// one key.
func runContended(ctx context.Context, e *env, p peer, tag string, r *result) error {
	im, err := open(e, p)
	if err != nil {
		return err
	}
	defer im.Close()
	c, err := contend(ctx, e, []impl{im}, contenders, "con:"+tag)
	if err != nil {
		return err
	}
	r.conAcq = append(r.conAcq, c.rate)
	r.conMinMax = append(r.conMinMax, minMax(c.counts))
	r.conCmds = append(r.conCmds, c.cmds)
	r.conOverlaps += c.overlaps
	return nil
}

// contention is what one window of contend measured.
type contention struct {
	rate     float64 // acquisitions per second
	counts   []int64 // acquisitions of each worker; worker w runs on ims[w/each]
	cmds     float64 // server commands per acquisition, script internals included
	clients  int64   // the server's connected clients in the middle of the window; -1 when unknown
	overlaps int64   // two holders at once, seen at any time before the window closed
	// CPU time per acquisition in the window, user + system: this process's
	// (every instance and the Go runtime), from getrusage, and the server's,
	// from INFO cpu; negative when unknown.
	cliCPU, srvCPU time.Duration
}

// contend runs each goroutines on every instance of ims, all looping
// blocking Lock + unlock on key, for contendedWarm and then a window of
// e.dur. An atomic counter of holders checks exclusion throughout; the
// window opens after the warm-up, so connection setup is not counted.
func contend(ctx context.Context, e *env, ims []impl, each int, key string) (contention, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := len(ims) * each
	var (
		wg       sync.WaitGroup
		counts   = make([]atomic.Int64, workers)
		inside   atomic.Int32
		overlaps atomic.Int64
		errMu    sync.Mutex
		firstErr error
	)
	for w := range workers {
		im := ims[w/each]
		wg.Go(func() {
			for {
				unlock, err := im.Lock(wctx, key)
				if err != nil {
					if wctx.Err() == nil {
						errMu.Lock()
						firstErr = cmp(firstErr, fmt.Errorf("Lock: %w", err))
						errMu.Unlock()
					}
					return
				}
				// After the window a holder may lose its lock to the
				// cancellation (valkeylock's does): overlaps count until then.
				if inside.Add(1) != 1 && wctx.Err() == nil {
					overlaps.Add(1)
				}
				runtime.Gosched() // give an intruder the chance to show up
				inside.Add(-1)
				uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), unlockDeadline)
				err = unlock(uctx)
				ucancel()
				if err != nil && wctx.Err() == nil {
					errMu.Lock()
					firstErr = cmp(firstErr, fmt.Errorf("unlock: %w", err))
					errMu.Unlock()
					return
				}
				counts[w].Add(1)
			}
		})
	}
	snapshot := func() []int64 {
		per := make([]int64, workers)
		for i := range counts {
			per[i] = counts[i].Load()
		}
		return per
	}
	stop := func() {
		cancel()
		wg.Wait()
	}
	time.Sleep(contendedWarm)
	c0, err := e.srv.commands(ctx)
	if err != nil {
		stop()
		return contention{}, err
	}
	srv0, srvErr := e.srv.cpu(ctx)
	per0, cpu0 := snapshot(), cpuTime()
	start := time.Now()
	time.Sleep(e.dur / 2)
	conns, connErr := e.srv.clients(ctx)
	time.Sleep(e.dur - e.dur/2)
	per1, cpu1 := snapshot(), cpuTime()
	elapsed := time.Since(start)
	srv1, err := e.srv.cpu(ctx)
	srvErr = errors.Join(srvErr, err)
	cmds, err := commandsSince(ctx, e, c0)
	stop()
	if err != nil {
		return contention{}, err
	}
	if firstErr != nil {
		return contention{}, firstErr
	}
	c := contention{counts: make([]int64, workers), clients: -1, overlaps: overlaps.Load()}
	if connErr == nil {
		c.clients = conns
	}
	var acq int64
	for i := range per1 {
		c.counts[i] = per1[i] - per0[i]
		acq += c.counts[i]
	}
	if acq == 0 {
		return contention{}, errors.New("no acquisition in the window")
	}
	c.rate = float64(acq) / elapsed.Seconds()
	c.cmds = float64(cmds-3) / float64(acq) // less the INFO clients and the two INFO cpu
	c.cliCPU, c.srvCPU = -1, -1
	if cpu0 >= 0 && cpu1 >= 0 {
		c.cliCPU = (cpu1 - cpu0) / time.Duration(acq)
	}
	if srvErr == nil {
		c.srvCPU = (srv1 - srv0) / time.Duration(acq)
	}
	return c, nil
}

// minMax is the fewest of counts over the most; 0 when the most is 0.
func minMax(counts []int64) float64 {
	most := slices.Max(counts)
	if most == 0 {
		return 0
	}
	return float64(slices.Min(counts)) / float64(most)
}

type acquired struct {
	unlock func(context.Context) error
	at     time.Time
	err    error
}

// runHandoff: a holder and a waiter in two instances, as two processes. The
// waiter calls Lock while the key is held; after it has been blocked for
// 20-40ms the holder unlocks, and the time from just before the unlock to
// the waiter's Lock returning is one sample.
func runHandoff(ctx context.Context, e *env, p peer, tag string, r *result) error {
	holder, err := open(e, p)
	if err != nil {
		return err
	}
	defer holder.Close()
	waiter, err := open(e, p)
	if err != nil {
		return err
	}
	defer waiter.Close()
	key := "handoff:" + tag
	if err := tryOnce(ctx, waiter, key); err != nil {
		return err
	}
	for range e.handoffs {
		unlock, ok, err := holder.TryLock(ctx, key)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("holder TryLock(%s): held by someone else", key)
		}
		wctx, cancel := context.WithTimeout(ctx, waitLimit)
		got := make(chan acquired, 1)
		go func() {
			u, err := waiter.Lock(wctx, key)
			got <- acquired{u, time.Now(), err}
		}()
		settle := time.NewTimer(settleMin + rand.N(settleJitter))
		select {
		case a := <-got:
			settle.Stop()
			cancel()
			return fmt.Errorf("waiter returned while the key was held: %v", a.err)
		case <-settle.C:
		}
		released := time.Now()
		if err := unlock(ctx); err != nil {
			cancel()
			<-got
			return fmt.Errorf("holder unlock: %w", err)
		}
		a := <-got
		if a.err != nil {
			cancel()
			return fmt.Errorf("waiter Lock: %w", a.err)
		}
		r.handoff = append(r.handoff, a.at.Sub(released))
		err = a.unlock(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("waiter unlock: %w", err)
		}
	}
	return nil
}

// runTakeover: a key planted with a 500ms TTL by a raw SET, as a holder that
// crashed would leave it; a waiter calls Lock at once. One sample is how long
// after the TTL's end (taken from just before the SET was sent) Lock returns.
func runTakeover(ctx context.Context, e *env, p peer, tag string, r *result) error {
	waiter, err := open(e, p)
	if err != nil {
		return err
	}
	defer waiter.Close()
	if err := tryOnce(ctx, waiter, "takeover-warm:"+tag); err != nil {
		return err
	}
	ttl := strconv.FormatInt(plantedTTL.Milliseconds(), 10)
	for i := range e.takeovers {
		key := "takeover:" + tag + ":" + strconv.Itoa(i)
		c0, err := e.srv.commands(ctx)
		if err != nil {
			return err
		}
		planted := time.Now()
		if err := e.srv.do(ctx, "SET", waiter.Key(key), "crashed-holder", "PX", ttl).Error(); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, waitLimit)
		unlock, err := waiter.Lock(wctx, key)
		at := time.Now()
		if err != nil {
			cancel()
			return fmt.Errorf("Lock after a crashed holder: %w", err)
		}
		cmds, err := commandsSince(ctx, e, c0)
		if err == nil {
			err = unlock(ctx)
		}
		cancel()
		if err != nil {
			return err
		}
		r.takeover = append(r.takeover, at.Sub(planted.Add(plantedTTL)))
		r.takeoverRate = append(r.takeoverRate, float64(cmds-1)/at.Sub(planted).Seconds()) // less the SET
	}
	return nil
}

// cmp keeps the first error.
func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// median of xs; NaN when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return nan
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile of ds (q in 0..1) in milliseconds, nearest rank; NaN when empty.
func percentile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return nan
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return float64(s[max(i, 0)]) / float64(time.Millisecond)
}
