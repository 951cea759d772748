package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

type reportInfo struct {
	date, valkey, goVersion, modules string
	cores, rounds                    int
	dur                              time.Duration
	handoffs, takeovers              int
	elapsed                          time.Duration
}

// report renders the results as markdown: a header and one table per
// scenario that ran.
func report(info reportInfo, ran []scenario, results map[string]*result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %d cores, Valkey %s, %s, by `cd bench && go run .` (%d rounds, %v windows, %.0fs in all).\n",
		info.date, info.cores, info.valkey, info.goVersion, info.rounds, info.dur, info.elapsed.Seconds())
	fmt.Fprintf(&b, "Peers: %s.\n", info.modules)
	baton := results["baton"]
	for _, s := range ran {
		fmt.Fprintf(&b, "\n**%s. %s**", s.id, s.name)
		switch s.id {
		case "1":
			b.WriteString(": one goroutine, TryLock + unlock; ops/s median of rounds, latency percentiles over all rounds.\n\n")
			row(&b, "implementation", "ops/s", "÷ baton", "p50 µs", "p99 µs", "cmds/op")
			for _, p := range peers {
				r := results[p.name]
				ops := median(r.seqOps)
				row(&b, name(p, r), f0(ops), ratio(ops, median(baton.seqOps)),
					f0(1000*percentile(r.seqLat, 0.5)), f0(1000*percentile(r.seqLat, 0.99)), f1(median(r.seqCmds)))
			}
		case "2":
			b.WriteString(": 64 goroutines on one instance, each on its own key; median of rounds.\n\n")
			row(&b, "implementation", "ops/s", "÷ baton")
			for _, p := range peers {
				r := results[p.name]
				ops := median(r.parOps)
				row(&b, name(p, r), f0(ops), ratio(ops, median(baton.parOps)))
			}
		case "3":
			b.WriteString(": 16 goroutines share one instance and loop blocking Lock + unlock on one key; " +
				"min/max is the fewest acquisitions of a worker over the most; cmds/acq is server commands " +
				"(script internals included) per acquisition, and its ratio to the same implementation's " +
				"uncontended cmds/op of scenario 1; medians of rounds.\n\n")
			row(&b, "implementation", "acq/s", "÷ baton", "min/max", "cmds/acq", "÷ own uncontended", "exclusion")
			for _, p := range peers {
				r := results[p.name]
				acq := median(r.conAcq)
				excl := "held"
				if r.conOverlaps > 0 {
					excl = fmt.Sprintf("**VIOLATED %d×**", r.conOverlaps)
				}
				if len(r.conAcq) == 0 {
					excl = "-"
				}
				row(&b, name(p, r), f0(acq), ratio(acq, median(baton.conAcq)), f2(median(r.conMinMax)),
					f1(median(r.conCmds)), f1(median(r.conCmds)/median(r.seqCmds)), excl)
			}
		case "4":
			fmt.Fprintf(&b, ": holder and waiter are two instances (two clients, as two processes); the waiter has been "+
				"blocked %v-%v when the holder unlocks; time from just before the unlock to the waiter's Lock "+
				"returning, %d samples per implementation.\n\n", settleMin, settleMin+settleJitter, info.rounds*info.handoffs)
			row(&b, "implementation", "p50 ms", "÷ baton", "p99 ms", "max ms")
			for _, p := range peers {
				r := results[p.name]
				p50 := percentile(r.handoff, 0.5)
				row(&b, name(p, r), f2(p50), ratio(p50, percentile(baton.handoff, 0.5)),
					f2(percentile(r.handoff, 0.99)), f2(percentile(r.handoff, 1)))
			}
		case "5":
			fmt.Fprintf(&b, ": a raw `SET key x PX %d` stands for a holder that crashed; a waiter calls Lock at once; "+
				"how late after the TTL's end (taken from just before the SET) Lock returns, and the server "+
				"commands per second spent while waiting, %d samples per implementation.\n\n",
				plantedTTL.Milliseconds(), info.rounds*info.takeovers)
			row(&b, "implementation", "p50 late ms", "÷ baton", "max late ms", "cmds/s waiting")
			for _, p := range peers {
				r := results[p.name]
				p50 := percentile(r.takeover, 0.5)
				row(&b, name(p, r), f1(p50), ratio(p50, percentile(baton.takeover, 0.5)),
					f1(percentile(r.takeover, 1)), f0(median(r.takeoverRate)))
			}
		}
	}
	var errs []string
	for _, p := range peers {
		for _, e := range results[p.name].errs {
			errs = append(errs, "- "+p.name+": "+e)
		}
	}
	if len(errs) > 0 {
		b.WriteString("\nErrors (their figures are missing or partial):\n\n" + strings.Join(errs, "\n") + "\n")
	}
	return b.String()
}

// name marks an implementation that had errors.
func name(p peer, r *result) string {
	if len(r.errs) > 0 {
		return p.name + " (errors)"
	}
	return p.name
}

func row(b *strings.Builder, cells ...string) {
	b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	if cells[0] == "implementation" {
		b.WriteString("|" + strings.Repeat(" --- |", len(cells)) + "\n")
	}
}

func ratio(x, baton float64) string {
	if math.IsNaN(x) || math.IsNaN(baton) || baton == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", x/baton)
}

func f0(x float64) string { return num(x, 0) }
func f1(x float64) string { return num(x, 1) }
func f2(x float64) string { return num(x, 2) }

func num(x float64, digits int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	return fmt.Sprintf("%.*f", digits, x)
}
