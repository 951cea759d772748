package election

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// windowStats is what one ballot lived through in one failover's window,
// from its trigger to the next failover's.
type windowStats struct {
	overlaps   int           // pairs of different terms whose OnElected ran at the same time (two fences, or a fence issued twice)
	maxOverlap time.Duration // the longest such pair
	leaderless time.Duration // the longest time in the window with no OnElected running

	checked int // terms whose grant the old primary ran after the window's check, so may be lost
	lost    int // of those, terms whose grant the new primary never had
	// Of the lost terms: the new primary granted the key to another
	// candidate, and did so while the lost term's key, had it survived,
	// would still have lived (its last renewal sent + TTL).
	regranted, regrantedLive int

	// phantoms are terms whose token no server ever set at the key, though a
	// script published a grant of it: the candidate took a grant that the
	// script did not make (see TestFailover).
	phantoms int

	regressions int // terms whose fence was not above that of a term that had begun before they were sent (lower, or the same)
	refused     int // writes the fenced resource refused
	stale       int // observer reports of a leader older than one already reported

	// Held-back runs only: terms whose grant the old primary ran after every
	// replica was held back, how many of them were lost, how many of those
	// the new primary granted to another candidate, and while their key
	// would still have lived; and how many grants the old primary ran then,
	// terms or not.
	heldTerms, heldLost, heldRegranted, heldRegrantedLive, heldGrants int
}

// ballotReport is one ballot's figures over a campaign.
type ballotReport struct {
	name     string
	replicas int
	windows  []windowStats // by failover, in the rig's order
	outside  windowStats   // before the first failover
	unseen   int           // terms begun after the first check of which no feed showed a trace
	notes    []string      // every overlap, lost term and unseen grant, described
}

// topologyReport is one topology's campaign.
type topologyReport struct {
	topology  string
	failovers []*failoverRecord
	ballots   []ballotReport
	latency   [2]latencies // without, with acknowledgement
	full      int          // Replicas for full acknowledgement
}

// analyse computes every ballot's figures from the terms, the resource,
// the observer and the servers' grant log.
func (r *rig) analyse() *topologyReport {
	rep := &topologyReport{topology: r.top.name(), failovers: r.failovers}
	grants := r.grants.all()
	unseen := make(map[string]bool)
	for _, rec := range r.unseen() {
		unseen[rec.token] = true
	}
	for _, b := range r.ballots {
		br := ballotReport{name: b.name, replicas: b.replicas, windows: make([]windowStats, len(r.failovers))}
		at := func(tm time.Time) *windowStats {
			for i, f := range r.failovers {
				if !tm.Before(f.trigger) && tm.Before(f.next) {
					return &br.windows[i]
				}
			}
			return &br.outside
		}
		terms := b.records()
		describe := r.describer(grants, b.key)
		set, published := make(map[string]bool), make(map[string]bool)
		for _, g := range grants {
			if g.key == b.key && g.op == "SET" {
				set[g.token] = true
			} else if g.key == b.key && g.op == "PUBLISH" {
				published[g.token] = true
			}
		}
		for _, rec := range terms {
			if !set[rec.token] && published[rec.token] {
				at(rec.start).phantoms++
				note := "phantom term, granted by a message but never set at the key: " + describe(rec)
				for _, line := range r.grants.traced(rec.start.Add(-700*time.Millisecond), rec.end) {
					note += "\n\t\t" + line
				}
				br.notes = append(br.notes, note)
			}
			if unseen[rec.token] {
				br.unseen++
				note := "no trace of the grant on any server: " + describe(rec) + "\n\tthe key's grants around it:"
				for _, g := range grants {
					if g.op == "SET" && g.key == b.key && g.at.After(rec.sent.Add(-time.Second)) && g.at.Before(rec.end.Add(time.Second)) {
						note += fmt.Sprintf("\n\t\t%s on %s from %s at %v", identityOf(g.token)+" "+g.token, g.node, g.from, g.at.Sub(rec.start).Round(time.Microsecond))
					}
				}
				br.notes = append(br.notes, note)
			}
		}
		slices.SortFunc(terms, func(x, y termRecord) int { return x.start.Compare(y.start) })

		for i, x := range terms {
			for _, y := range terms[i+1:] {
				if !y.start.Before(x.end) {
					break
				}
				if y.token == x.token {
					continue // cannot be: one term, recorded once
				}
				w := at(y.start)
				w.overlaps++
				note := fmt.Sprintf("overlap of %v:\n\t%s\n\t%s", y.start.Sub(x.end).Abs().Round(time.Microsecond), describe(x), describe(y))
				for _, line := range r.grants.traced(x.start.Add(-300*time.Millisecond), y.start.Add(50*time.Millisecond)) {
					if strings.Contains(line, b.key) {
						note += "\n\t\t" + line
					}
				}
				br.notes = append(br.notes, note)
				end := x.end
				if y.end.Before(end) {
					end = y.end
				}
				w.maxOverlap = max(w.maxOverlap, end.Sub(y.start))
			}
		}

		for i, f := range r.failovers {
			br.windows[i].leaderless = longestGap(terms, f.trigger, f.next)
		}

		// A fence is issued between the request's send (sent) and
		// OnElected's start: one issued after another was surely issued
		// must be greater.
		for _, y := range terms {
			for _, x := range terms {
				if x.start.Before(y.sent) && x.fence >= y.fence {
					at(y.sent).regressions++
					break
				}
			}
		}

		for _, tm := range b.res.refusals() {
			at(tm).refused++
		}
		fences := make(map[int64]bool)
		for _, rec := range terms {
			fences[rec.fence] = true
		}
		whose := func(fence int64) string {
			if fences[fence] {
				return "a term's"
			}
			return "no term's: an acquisition given back, or a grant never claimed"
		}
		for _, st := range b.staleReports() {
			at(st.at).stale++
			br.notes = append(br.notes, fmt.Sprintf("observer reported a stale leader at %v: %s fence %d (%s) after %s fence %d (%s)",
				st.at.Sub(r.failovers[0].trigger).Round(time.Millisecond), st.leader.Identity, st.leader.Fence, whose(st.leader.Fence),
				st.newest.Identity, st.newest.Fence, whose(st.newest.Fence)))
		}

		ran := make(map[string]grant) // token -> the grant run by the script
		applied := make(map[string]map[string]bool)
		for _, g := range grants {
			if g.op != "SET" || g.key != b.key {
				continue
			}
			if g.from == "lua" {
				if _, ok := ran[g.token]; !ok {
					ran[g.token] = g
				}
			}
			if applied[g.token] == nil {
				applied[g.token] = make(map[string]bool)
			}
			applied[g.token][g.node] = true
		}
		for i, f := range r.failovers {
			w := &br.windows[i]
			until := time.Unix(1<<40, 0)
			if i+1 < len(r.failovers) {
				until = r.failovers[i+1].check
			}
			for _, rec := range terms {
				g, ok := ran[rec.token]
				if !ok || g.node != f.old || g.at.Before(f.check) || !g.at.Before(until) {
					continue
				}
				w.checked++
				held := f.heldBack && !g.at.Before(f.paused)
				if held {
					w.heldTerms++
				}
				if applied[rec.token][f.new] {
					continue
				}
				w.lost++
				br.notes = append(br.notes, fmt.Sprintf("lost by failover %d (%s %s -> %s): %s", i+1, f.kind, f.old, f.new, describe(rec)))
				regranted, live := false, false
				if next, ok := firstGrantOn(grants, b.key, f.new, g.at); ok && identityOf(next.token) != rec.id {
					regranted, live = true, next.at.Before(rec.lastRenew.Add(failoverTTL))
				}
				w.regranted += count(regranted)
				w.regrantedLive += count(live)
				if held {
					w.heldLost++
					w.heldRegranted += count(regranted)
					w.heldRegrantedLive += count(live)
				}
			}
			if f.heldBack {
				w.heldGrants = r.grants.executed(f.old, b.key, f.paused)
			}
		}
		rep.ballots = append(rep.ballots, br)
	}
	return rep
}

// describer returns a function that describes a term of key: who, its
// fence, its times relative to the first failover's trigger, why it ended,
// and every server that applied its grant, when and from where.
func (r *rig) describer(grants []grant, key string) func(termRecord) string {
	zero := time.Now()
	if len(r.failovers) > 0 {
		zero = r.failovers[0].trigger
	}
	rel := func(tm time.Time) string { return tm.Sub(zero).Round(time.Microsecond).String() }
	return func(rec termRecord) string {
		var where []string
		for _, g := range grants {
			if g.key == key && g.token == rec.token {
				where = append(where, fmt.Sprintf("%s %s from %s at %s", g.op, g.node, g.from, rel(g.at)))
			}
		}
		return fmt.Sprintf("%s fence %d token %q sent %s start %s end %s last renewal sent %s cause %v; applied: %s",
			rec.id, rec.fence, rec.token, rel(rec.sent), rel(rec.start), rel(rec.end), rel(rec.lastRenew), rec.cause,
			strings.Join(where, ", "))
	}
}

// count is 1 for true, 0 for false.
func count(b bool) int {
	if b {
		return 1
	}
	return 0
}

// firstGrantOn returns the first grant of key that node ran itself after
// after.
func firstGrantOn(grants []grant, key, node string, after time.Time) (grant, bool) {
	for _, g := range grants {
		if g.op == "SET" && g.key == key && g.node == node && g.from == "lua" && g.at.After(after) {
			return g, true
		}
	}
	return grant{}, false
}

// longestGap returns the longest time within [from, to) during which no
// term's OnElected ran; terms are sorted by start.
func longestGap(terms []termRecord, from, to time.Time) time.Duration {
	covered := from // everything before it is covered, or outside the window
	var gap time.Duration
	for _, rec := range terms {
		if !rec.end.After(from) {
			continue
		}
		if !rec.start.Before(to) {
			break
		}
		if rec.start.After(covered) {
			gap = max(gap, rec.start.Sub(covered))
		}
		if rec.end.After(covered) {
			covered = rec.end
		}
	}
	if to.After(covered) {
		gap = max(gap, to.Sub(covered))
	}
	return gap
}

// check asserts the targets: with full acknowledgement, no overlapping
// terms, no term that a failover lost, no fence issued below an earlier one
// and no term begun while the replicas were held back; for every ballot, a
// complete record; without acknowledgement, that every term begun while
// the replicas were held back is found lost (the detector works).
func (rep *topologyReport) check(t *testing.T) {
	t.Helper()
	for _, br := range rep.ballots {
		if br.unseen != 0 {
			t.Errorf("%s: %d terms of which no server's MONITOR showed a trace; the record is incomplete", br.name, br.unseen)
		}
		all := append([]windowStats{br.outside}, br.windows...)
		for i, w := range all {
			what := "before the first failover"
			if i > 0 {
				f := rep.failovers[i-1]
				what = fmt.Sprintf("failover %d (%s, %s -> %s)", i, f.kind, f.old, f.new)
			}
			// A term no server granted is a lock bug, whatever the
			// replication: a grant message heard that the server never
			// carried out (see TestGrantHeardOnADemotedNodeIsNotTaken).
			if w.phantoms != 0 {
				t.Errorf("%s with Replicas=%d, %s: %d terms whose token no server set at the key; want 0", br.name, br.replicas, what, w.phantoms)
			}
			if br.replicas > 0 {
				if w.overlaps != 0 {
					t.Errorf("%s with Replicas=%d, %s: %d overlapping terms (longest %v); want 0", br.name, br.replicas, what, w.overlaps, w.maxOverlap)
				}
				if w.lost != 0 {
					t.Errorf("%s with Replicas=%d, %s: %d of %d terms lost by the failover; want 0", br.name, br.replicas, what, w.lost, w.checked)
				}
				if w.regressions != 0 {
					t.Errorf("%s with Replicas=%d, %s: %d fences issued below an earlier one; want 0", br.name, br.replicas, what, w.regressions)
				}
				if w.heldTerms != 0 {
					t.Errorf("%s with Replicas=%d, %s: %d terms begun while every replica was held back; want 0", br.name, br.replicas, what, w.heldTerms)
				}
			} else if w.heldLost != w.heldTerms {
				t.Errorf("%s, %s: %d terms begun while the replicas were held back, %d found lost; want all: the detector misses losses",
					br.name, what, w.heldTerms, w.heldLost)
			}
		}
	}
}

// logWindows logs every failover's figures, one line per ballot, then
// every overlap and lost term in detail. Times are relative to the first
// failover's trigger.
func (rep *topologyReport) logWindows(t *testing.T) {
	t.Helper()
	for i, f := range rep.failovers {
		zero := rep.failovers[0].trigger
		t.Logf("failover %d at %v: %s %s -> %s, check %v, promoted %v, whole %v",
			i+1, f.trigger.Sub(zero).Round(time.Millisecond), f.kind, f.old, f.new,
			f.check.Sub(zero).Round(time.Millisecond), f.promoted.Sub(zero).Round(time.Millisecond), f.settled.Sub(zero).Round(time.Millisecond))
	}
	defer func() {
		for _, br := range rep.ballots {
			for _, n := range br.notes {
				t.Logf("%s: %s", br.name, n)
			}
		}
	}()
	for i, f := range rep.failovers {
		for _, br := range rep.ballots {
			w := br.windows[i]
			t.Logf("%d %s %s -> %s, Replicas=%d: overlaps %d (%v), phantoms %d, no leader %v, lost %d/%d (regranted %d, while live %d), regressions %d, refused %d, stale %d, held terms %d (lost %d), held grants %d",
				i+1, f.kind, f.old, f.new, br.replicas, w.overlaps, w.maxOverlap.Round(time.Millisecond), w.phantoms,
				w.leaderless.Round(time.Millisecond), w.lost, w.checked, w.regranted, w.regrantedLive,
				w.regressions, w.refused, w.stale, w.heldTerms, w.heldLost, w.heldGrants)
		}
	}
}

// failoverReport gathers the topologies' reports for the table.
type failoverReport struct {
	mu   sync.Mutex
	tops []*topologyReport
}

func (fr *failoverReport) add(rep *topologyReport) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	fr.tops = append(fr.tops, rep)
	slices.SortFunc(fr.tops, func(a, b *topologyReport) int { return strings.Compare(a.topology, b.topology) })
}

// markdown renders the report as the tables in docs/operations.md.
func (fr *failoverReport) markdown() string {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	var b strings.Builder
	ms := func(d time.Duration) string {
		if d < 10*time.Millisecond {
			return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
		}
		return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
	}
	secs := func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

	b.WriteString("| topology | failover | Replicas | failovers | overlapping terms (longest) | terms never set at the key | no leader p50 / max | lost / checked acquisitions (granted again while alive) | fences not above an earlier one | writes refused | stale leader seen |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, rep := range fr.tops {
		for _, kind := range kindsOf(rep.failovers) {
			if kind == heldBackKind {
				continue
			}
			for _, br := range rep.ballots {
				var s windowStats
				var gaps []time.Duration
				n := 0
				for i, f := range rep.failovers {
					if f.kind != kind {
						continue
					}
					w := br.windows[i]
					n++
					s.overlaps += w.overlaps
					s.maxOverlap = max(s.maxOverlap, w.maxOverlap)
					s.phantoms += w.phantoms
					s.checked += w.checked
					s.lost += w.lost
					s.regrantedLive += w.regrantedLive
					s.regressions += w.regressions
					s.refused += w.refused
					s.stale += w.stale
					gaps = append(gaps, w.leaderless)
				}
				slices.Sort(gaps)
				overlap := "0"
				if s.overlaps > 0 {
					overlap = fmt.Sprintf("%d (%s)", s.overlaps, ms(s.maxOverlap))
				}
				fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %d | %s / %s | %d / %d (%d) | %d | %d | %d |\n",
					rep.topology, kind, br.replicas, n, overlap, s.phantoms, secs(percentile(gaps, 50)), secs(gaps[len(gaps)-1]),
					s.lost, s.checked, s.regrantedLive, s.regressions, s.refused, s.stale)
			}
		}
	}

	b.WriteString("\n| topology | replicas held back, then kill -9 | Replicas | runs | terms begun while held back | lost | granted to another candidate | while the lost term's TTL ran | acquisitions run while held back | overlapping terms |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, rep := range fr.tops {
		for _, br := range rep.ballots {
			var s windowStats
			n := 0
			for i, f := range rep.failovers {
				if !f.heldBack {
					continue
				}
				w := br.windows[i]
				n++
				s.heldTerms += w.heldTerms
				s.heldLost += w.heldLost
				s.heldRegranted += w.heldRegranted
				s.heldRegrantedLive += w.heldRegrantedLive
				s.heldGrants += w.heldGrants
				s.overlaps += w.overlaps
			}
			fmt.Fprintf(&b, "| %s | | %d | %d | %d | %d | %d | %d | %d | %d |\n",
				rep.topology, br.replicas, n, s.heldTerms, s.heldLost, s.heldRegranted, s.heldRegrantedLive, s.heldGrants, s.overlaps)
		}
	}

	b.WriteString("\n| topology | Replicas | acquire p50 / p90 | renewal p50 / p90 | added by acknowledgement (p50): acquire, renewal |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, rep := range fr.tops {
		off, on := rep.latency[0], rep.latency[1]
		for i, l := range rep.latency {
			added := ""
			if i == 1 {
				added = fmt.Sprintf("+%s, +%s", ms(percentile(on.acquire, 50)-percentile(off.acquire, 50)),
					ms(percentile(on.renew, 50)-percentile(off.renew, 50)))
			}
			replicas := 0
			if i == 1 {
				replicas = rep.full
			}
			fmt.Fprintf(&b, "| %s | %d | %s / %s | %s / %s | %s |\n", rep.topology, replicas,
				ms(percentile(l.acquire, 50)), ms(percentile(l.acquire, 90)),
				ms(percentile(l.renew, 50)), ms(percentile(l.renew, 90)), added)
		}
	}
	return b.String()
}

// kindsOf returns the kinds of failovers in the order they first came.
func kindsOf(fs []*failoverRecord) []string {
	var kinds []string
	for _, f := range fs {
		if !slices.Contains(kinds, f.kind) {
			kinds = append(kinds, f.kind)
		}
	}
	return kinds
}

// percentile returns the p-th percentile of ds (nearest rank), 0 for none.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}
