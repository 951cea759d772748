package main

// Scenario 4: contention across processes. Each simulated process is an
// instance of its own (its own client and connections, its own lock object),
// so that a handover between two of them goes through the server as it
// would between two programs: for baton, through the server's line of
// waiters rather than the in-process handover that scenario 3 measures.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"time"
)

// procScale is one case of scenario 4: procs processes with each goroutines
// apiece, all on one key.
type procScale struct{ procs, each int }

func (s procScale) String() string { return fmt.Sprintf("%d × %d", s.procs, s.each) }

// procScales are scenario 4's cases, from issue 10: a few processes with a
// few goroutines each, and many single-goroutine processes.
var procScales = []procScale{{4, 4}, {16, 1}, {64, 1}}

// procResult is one implementation's figures for one case of scenario 4, per
// round.
type procResult struct {
	acq, fair, cmds, conns []float64
	cliCPU, srvCPU         []float64 // µs per acquisition; NaN when unknown
	overlaps               int64     // two holders at once, all rounds
}

// runProcesses: scenario 4, once per round for all implementations, case by
// case (the implementations one after the other within each case, so the
// machine's drift spreads over them alike). An implementation that fails a
// case has the error recorded and goes on with the next.
func runProcesses(ctx context.Context, e *env, tag string, results map[string]*result) error {
	for si, sc := range procScales {
		for i, p := range peers {
			if !p.procs {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "          %v: %s\n", sc, p.name)
			r := results[p.name]
			key := fmt.Sprintf("procs:%s:%d:%d", tag, si, i)
			var err error
			labels := pprof.Labels("scenario", "4", "impl", p.name, "case", fmt.Sprintf("%dx%d", sc.procs, sc.each))
			pprof.Do(ctx, labels, func(ctx context.Context) {
				err = contendProcesses(ctx, e, p, sc, key, &r.procs[si])
			})
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r.errs = append(r.errs, fmt.Sprintf("scenario 4 %v %s: %v", sc, tag, err))
				fmt.Fprintf(os.Stderr, "        error: %v\n", err)
			}
		}
	}
	return nil
}

// contendProcesses opens sc.procs instances of p, contends on key with
// sc.each goroutines apiece, and closes them all, waiting until the server
// has seen their connections go: 64 processes are 64 connections or more,
// which must not linger into the next case.
func contendProcesses(ctx context.Context, e *env, p peer, sc procScale, key string, pr *procResult) error {
	before, err := e.srv.clients(ctx)
	if err != nil {
		return err
	}
	ims := make([]impl, 0, sc.procs)
	closeAll := func() error {
		for _, im := range ims {
			im.Close()
		}
		return e.srv.awaitClients(ctx, before)
	}
	for range sc.procs {
		im, err := open(e, p)
		if err != nil {
			return errors.Join(err, closeAll())
		}
		ims = append(ims, im)
	}
	c, err := contend(ctx, e, ims, sc.each, key)
	if err := errors.Join(err, closeAll()); err != nil {
		return err
	}
	perProc := make([]int64, sc.procs)
	for w, n := range c.counts {
		perProc[w/sc.each] += n
	}
	pr.acq = append(pr.acq, c.rate)
	pr.fair = append(pr.fair, minMax(perProc))
	pr.cmds = append(pr.cmds, c.cmds)
	conns := nan
	if c.clients >= 0 {
		conns = float64(c.clients - before)
	}
	pr.conns = append(pr.conns, conns)
	pr.cliCPU = append(pr.cliCPU, micros(c.cliCPU))
	pr.srvCPU = append(pr.srvCPU, micros(c.srvCPU))
	pr.overlaps += c.overlaps
	return nil
}

// micros is d in microseconds; NaN when d is negative (unknown).
func micros(d time.Duration) float64 {
	if d < 0 {
		return nan
	}
	return float64(d) / float64(time.Microsecond)
}
