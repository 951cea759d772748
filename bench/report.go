package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

type reportInfo struct {
	date, valkey, goVersion, modules string
	cores, rounds                    int
	dur                              time.Duration
	handoffs, takeovers, standbys    int
	slowCrash                        bool
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
			b.WriteString(": one goroutine, TryLock + unlock; the implementations interleaved op by op (A B C ... A B C, for one window each per round), so the machine's noise hits them alike; ops/s is one over the mean latency, median of rounds; latency percentiles over all rounds.\n\n")
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
			reportProcesses(&b, results)
		case "5":
			fmt.Fprintf(&b, ": holder and waiter are two instances, each with its own client (and connections) and its own lock object, as two processes; the waiter has been "+
				"blocked %v-%v when the holder unlocks; time from just before the unlock to the waiter's Lock "+
				"returning, %d samples per implementation.\n\n", settleMin, settleMin+settleJitter, info.rounds*info.handoffs)
			row(&b, "implementation", "p50 ms", "÷ baton", "p99 ms", "max ms")
			for _, p := range peers {
				r := results[p.name]
				p50 := percentile(r.handoff, 0.5)
				row(&b, name(p, r), f2(p50), ratio(p50, percentile(baton.handoff, 0.5)),
					f2(percentile(r.handoff, 0.99)), f2(percentile(r.handoff, 1)))
			}
		case "6":
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
		case "7":
			reportElection(&b, info, baton)
		case "8":
			reportLeases(&b, baton)
		}
	}
	var errs []string
	for _, p := range peers {
		r := results[p.name]
		for _, e := range slices.Concat(r.errs, r.soloErrs) {
			errs = append(errs, "- "+p.name+": "+e)
		}
	}
	if len(errs) > 0 {
		b.WriteString("\nErrors (their figures are missing or partial):\n\n" + strings.Join(errs, "\n") + "\n")
	}
	return b.String()
}

// fairLine is the fairness from which a peer counts as fair: the fewest
// acquisitions at least half the most.
const fairLine = 0.5

// reportProcesses renders scenario 4.
func reportProcesses(b *strings.Builder, results map[string]*result) {
	fmt.Fprintf(b, ": each process is an instance of its own (its own client and connections, its own lock "+
		"object: for baton a `*lock.Lock` of its own), whose goroutines loop blocking Lock + unlock on the one key, "+
		"TTL %v. *fairness* is the fewest acquisitions of a process (summed over its goroutines) over the most; "+
		"cmds/acq is as in scenario 3, and *÷ 1 process* its ratio to the same implementation's figure there "+
		"(16 goroutines on one instance); *conns* is the server's client connections during the window besides the "+
		"bench's own; *cli µs* and *srv µs* are the CPU time (user + system) per acquisition of this process, "+
		"all its instances together (getrusage), and of the server (`INFO cpu`); *overlaps* counts the times two "+
		"holders held at once (of all rounds: must be 0). The peers are "+
		"valkeylock, those retrying every 1ms, and the floor. Cases one after the other, "+
		"each with the implementations in turn; medians of rounds.\n\n", lockTTL)
	header(b, "processes × goroutines", "implementation", "acq/s", "÷ baton", "fairness", "cmds/acq", "÷ 1 process",
		"cli µs", "srv µs", "conns", "overlaps")
	baton := results["baton"]
	for si, sc := range procScales {
		for _, p := range peers {
			if !p.procs {
				continue
			}
			r := results[p.name]
			pr := r.procs[si]
			acq := median(pr.acq)
			overlaps := fmt.Sprint(pr.overlaps)
			if pr.overlaps > 0 {
				overlaps = "**" + overlaps + "**"
			}
			if len(pr.acq) == 0 {
				overlaps = "-"
			}
			row(b, sc.String(), name(p, r), f0(acq), ratio(acq, median(baton.procs[si].acq)), f2(median(pr.fair)),
				f1(median(pr.cmds)), f2(median(pr.cmds)/median(r.conCmds)), f0(median(pr.cliCPU)), f0(median(pr.srvCPU)),
				f0(median(pr.conns)), overlaps)
		}
	}
	fmt.Fprintf(b, "\nbaton ÷ the fastest fair peer (fairness at least %.2f) of each case:", fairLine)
	for si, sc := range procScales {
		best, bestAcq := "", 0.0
		for _, p := range peers[1:] {
			pr := results[p.name].procs[si]
			if acq := median(pr.acq); p.procs && median(pr.fair) >= fairLine && acq > bestAcq {
				best, bestAcq = p.name, acq
			}
		}
		sep := ";"
		if si == len(procScales)-1 {
			sep = "."
		}
		if best != "" {
			fmt.Fprintf(b, " %v: %s, %s (%s acq/s)%s", sc, ratio(median(baton.procs[si].acq), bestAcq), best, f0(bestAcq), sep)
			continue
		}
		// No fair peer: say so, and against the fastest one, fair or not.
		for _, p := range peers[1:] {
			if acq := median(results[p.name].procs[si].acq); p.procs && acq > bestAcq {
				best, bestAcq = p.name, acq
			}
		}
		fmt.Fprintf(b, " %v: no fair peer (against the fastest, %s at %s acq/s: %s)%s", sc, best, f0(bestAcq),
			ratio(median(baton.procs[si].acq), bestAcq), sep)
	}
	b.WriteString("\n")
}

// reportElection renders scenario 7.
func reportElection(b *strings.Builder, info reportInfo, r *result) {
	b.WriteString(" (baton only): a leader and its standbys on one election, each on a client of its own as a " +
		"process of its own; the standbys have all been in the server's line of waiters for 20-40ms when the leader " +
		"goes. *Resign*: time from just before the leader's Resign to the start of a standby's OnElected, each sample " +
		"a fresh set of electors; samples with one standby and with many alternate; *server cmds* is the median of " +
		"the server's commands from the Resign to 10ms after OnElected (the electors' reads of the new leader included). " +
		"*Crash*: the leader's Run is cancelled with KeepOnCancel at a random point of its renewal cycle, so " +
		"its key stays until its TTL ends; the key's expiry is the crash-time PTTL read (middle of that round " +
		"trip plus the PTTL); *after the TTL* is from that expiry to the standby's OnElected, *total* from " +
		"the crash. Profiles are TTL / renew deadline / retry period.\n\n")
	header(b, "profile", "failover", "standbys", "samples", "p50 ms", "p99 ms", "max ms", "server cmds")
	type series struct {
		what string
		lat  []time.Duration
		cmds string
	}
	for _, f := range r.failovers {
		all := []series{{"resign → new leader", f.lat, f0(median(f.cmds))}}
		if f.crash {
			all = []series{{"crash: new leader after the TTL's end", f.lat, "-"}, {"crash → new leader (total)", f.total, "-"}}
		}
		for _, s := range all {
			row(b, f.profile.String(), s.what, fmt.Sprint(f.standbys), fmt.Sprint(len(s.lat)),
				f2(percentile(s.lat, 0.5)), f2(percentile(s.lat, 0.99)), f2(percentile(s.lat, 1)), s.cmds)
		}
	}
	// Resign with many standbys against one, per profile.
	var ratios []string
	for _, one := range r.failovers {
		if one.crash || one.standbys != 1 {
			continue
		}
		for _, many := range r.failovers {
			if !many.crash && many.standbys > 1 && many.profile == one.profile {
				ratios = append(ratios, fmt.Sprintf("%s: p50 %s×, p99 %s×", one.profile.name,
					ratio(percentile(many.lat, 0.5), percentile(one.lat, 0.5)),
					ratio(percentile(many.lat, 0.99), percentile(one.lat, 0.99))))
			}
		}
	}
	if len(ratios) > 0 {
		fmt.Fprintf(b, "\nResign with %d standbys ÷ with 1: %s.\n", info.standbys, strings.Join(ratios, "; "))
	}
	if !info.slowCrash {
		fmt.Fprintf(b, "\nA crash with the %v profile was not run: a sample waits out its %v TTL (flag `-slowcrash` adds one).\n",
			clientGoProfile, clientGoProfile.ttl)
	}
}

// reportLeases renders scenario 8.
func reportLeases(b *strings.Builder, r *result) {
	b.WriteString(" (baton only): one process holds the leases on one valkey-go client with one connection " +
		"(`PipelineMultiplex: -1`) and renews them at the default interval, TTL/3. *spread* paces the " +
		"acquisitions over one renew interval, so renewals come as a steady stream; *burst* takes them " +
		"all at once, so they come in one burst per interval. Measured over a window of two renew " +
		"intervals: CPU is this process's user + system time (getrusage: valkey-go and the Go runtime " +
		"included) per renewal and as a share of one core, and the server's from `INFO cpu`; latency is " +
		"from just before a renewal is sent to its OnRenew; heap is HeapInuse after a GC, per lease, for " +
		"lock + held + lease and for the lease alone; connections are the server's clients besides the " +
		"bench's own.\n\n")
	header(b, "leases", "TTL", "start", "renewals/s", "CPU µs/renewal", "share of one core",
		"server µs/renewal", "renew p50 ms", "p99 ms", "max ms", "heap B/lease (all / lease)", "goroutines/lease",
		"connections", "lost")
	for _, lr := range r.leaseRuns {
		sec := lr.window.Seconds()
		perRenewal := func(d time.Duration) string {
			if d < 0 || lr.renewals == 0 {
				return "-"
			}
			return f1(float64(d.Microseconds()) / float64(lr.renewals))
		}
		share := "-"
		if lr.cpu >= 0 && sec > 0 {
			share = f2(lr.cpu.Seconds() / sec)
		}
		conns := "-"
		if lr.conns >= 0 {
			conns = fmt.Sprint(lr.conns)
		}
		row(b, fmt.Sprint(lr.n), lr.ttl.String(), startName(lr.spread), f0(float64(lr.renewals)/sec),
			perRenewal(lr.cpu), share, perRenewal(lr.server),
			f2(percentile(lr.lat, 0.5)), f2(percentile(lr.lat, 0.99)), f2(percentile(lr.lat, 1)),
			f0(lr.heapAll)+" / "+f0(lr.heapOnly), f2(lr.routines), conns, fmt.Sprint(lr.lost))
	}
	fmt.Fprintf(b, "\nIdle, before the cases and without a lease, the process used %s of one core.\n", f3(r.leaseIdle))
}

// name marks an implementation that had errors.
func name(p peer, r *result) string {
	if len(r.errs) > 0 {
		return p.name + " (errors)"
	}
	return p.name
}

// header writes a table's header row and its rule.
func header(b *strings.Builder, cells ...string) {
	b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(cells)) + "\n")
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
func f3(x float64) string { return num(x, 3) }

func num(x float64, digits int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	return fmt.Sprintf("%.*f", digits, x)
}
