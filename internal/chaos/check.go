package chaos

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/baton-dev/baton/internal/chaos/wire"
)

// The verdicts of a run, in the order they are reported.
const (
	VerdictFenceOrder   = "fence-order"        // 1: fences increase in real-time order of election
	VerdictStore        = "store-monotonic"    // 2: the store never accepted a fence below its highest
	VerdictWritesInTerm = "writes-within-term" // 3: no write accepted outside its own term
	VerdictCallbacks    = "callback-order"     // 4: OnElected, then OnLost, once per term, alternating
	VerdictLeaderBound  = "leader-bound"       // 5: a leader within LeaderBound of every heal; no key outlives its term
	VerdictCleanExit    = "clean-exit"         // 6: SIGTERM ends every candidate cleanly, nothing leaked
	VerdictRacePanic    = "no-race-or-panic"   // 7: no data race, panic or fatal error in any log
	VerdictOverlap      = "overlap-allowed"    // 8: terms act at once only under faults that allow it
)

// Verdicts returns the names of the verdicts, in order.
func Verdicts() []string {
	return []string{
		VerdictFenceOrder, VerdictStore, VerdictWritesInTerm, VerdictCallbacks,
		VerdictLeaderBound, VerdictCleanExit, VerdictRacePanic, VerdictOverlap,
	}
}

// Verdict is the outcome of one check of a run.
type Verdict struct {
	Name     string   // one of Verdicts()
	Failures []string // empty when the check passed
}

// OK reports whether the check passed.
func (v Verdict) OK() bool { return len(v.Failures) == 0 }

// Term is one leadership term as the candidates reported it, on the shared
// clock. In cli mode a term is one run of the worker: its start is
// OnElected, its exit OnLost.
type Term struct {
	Identity string // the candidate's (baton's, in cli mode)
	Peer     int    // the hub connection that reported it
	Fence    int64  // the term's fencing token
	Elected  int64  // OnElected started, or the worker started
	After    int64  // a lower bound of the moment the winning acquisition was sent
	Stopped  int64  // OnElected returned, the worker stopped writing, or the process died
	Lost     int64  // OnLost ran, the worker exited, or the process died
	Death    bool   // closed by the death of its process rather than reported
	Phase    int    // the phase it was elected in (see Result.Phases)
}

// Overlap is two terms acting at once.
type Overlap struct {
	A, B     int64         // their fences, A < B
	Start    int64         // when the later of the two was elected (shared clock)
	Duration time.Duration // until the earlier of the two stopped
	Phase    int           // the phase Start falls in
	Allowed  bool          // that phase's fault allows overlaps
}

// Phase is a stretch of a run: before the first fault ("none"), from a
// fault's injection to the next one's, or the final shutdown.
type Phase struct {
	Kind  string // the fault's kind, "none" or "shutdown"
	Start int64  // shared clock
	Step  int    // index in Result.Steps, -1 for none and shutdown
}

// Result is what a run did and what its checks found.
type Result struct {
	Config      Config        // with its defaults filled in
	Schedule    []Step        // as planned from the seed
	Steps       []StepRecord  // as carried out
	Phases      []Phase       // in order of Start
	Terms       []Term        // in order of election
	Writes      []Write       // in the store's order
	Overlaps    []Overlap     // every pair of terms that acted at once
	Verdicts    []Verdict     // in the order of Verdicts()
	Errors      []error       // failures of the harness, not of baton
	FirstLeader time.Duration // from the start of the candidates
	ExitMax     time.Duration // the slowest exit after SIGTERM
	Elapsed     time.Duration // from the candidates' start until the last process was gone
	LogDir      string        // the processes' logs and run.txt
}

// OK reports whether every verdict passed and the harness did not fail.
func (res *Result) OK() bool {
	for _, v := range res.Verdicts {
		if !v.OK() {
			return false
		}
	}
	return len(res.Errors) == 0
}

// Failed returns the names of the verdicts that failed.
func (res *Result) Failed() []string {
	var out []string
	for _, v := range res.Verdicts {
		if !v.OK() {
			out = append(out, v.Name)
		}
	}
	return out
}

// logProblems are the lines of a log that fail the no-race-or-panic check.
var logProblems = regexp.MustCompile(`(?m)^(WARNING: DATA RACE|panic: |fatal error: |goroutine \d+ \[running\]:$).*`)

// result analyses the run once every process has exited and the hub closed.
func (r *run) result(schedule []Step) *Result {
	res := &Result{
		Config:   r.cfg,
		Schedule: schedule,
		Steps:    r.steps,
		Writes:   r.store.Writes(),
		Errors:   append(r.errs, r.hub.Errors()...),
		Elapsed:  time.Duration(r.ended - r.started),
		LogDir:   r.dir,
	}
	res.Phases = append(res.Phases, Phase{Kind: "none", Start: r.started, Step: -1})
	for i, s := range r.steps {
		res.Phases = append(res.Phases, Phase{Kind: s.Kind, Start: s.Injected, Step: i})
	}
	res.Phases = append(res.Phases, Phase{Kind: "shutdown", Start: r.shutdown, Step: -1})

	v := map[string]*Verdict{}
	for _, name := range Verdicts() {
		v[name] = &Verdict{Name: name}
	}
	fail := func(name, format string, args ...any) {
		v[name].Failures = append(v[name].Failures, fmt.Sprintf(format, args...))
	}
	at := func(t int64) string { return fmt.Sprintf("t=%.3fs", float64(t-r.started)/1e9) }

	peers := r.hub.Peers()
	procs := map[string]*proc{}
	for _, p := range r.procs {
		procs[p.identity] = p
	}
	switch r.cfg.Mode {
	case ModeLibrary:
		res.Terms = r.libraryTerms(peers, procs, fail, at)
	case ModeCLI:
		res.Terms = r.cliTerms(peers, procs, fail, at)
	}
	for i := range res.Terms {
		res.Terms[i].Phase = res.phaseOf(res.Terms[i].Elected)
	}
	slices.SortFunc(res.Terms, func(a, b Term) int { return cmpInt(a.Elected, b.Elected) })

	// 1. A term elected before another's acquisition was even sent has a
	// lower fence, whatever happened to the server.
	for _, x := range res.Terms {
		for _, y := range res.Terms {
			if x.Fence != y.Fence && x.Elected < y.After && x.Fence > y.Fence {
				fail(VerdictFenceOrder, "%s elected fence %d at %s, before %s sent the acquisition that got the lower fence %d (at %s or later)",
					x.Identity, x.Fence, at(x.Elected), y.Identity, y.Fence, at(y.After))
			}
		}
	}
	for i, x := range res.Terms {
		for _, y := range res.Terms[i+1:] {
			if x.Fence == y.Fence {
				fail(VerdictFenceOrder, "fence %d issued twice: to %s at %s and to %s at %s", x.Fence, x.Identity, at(x.Elected), y.Identity, at(y.Elected))
			}
		}
	}

	// 2. The store's decisions, replayed.
	var highest int64
	for _, w := range res.Writes {
		switch {
		case w.Accepted && w.Fence < highest:
			fail(VerdictStore, "accepted fence %d from %s at %s below the highest %d", w.Fence, w.Writer, at(w.At), highest)
		case !w.Accepted && w.Fence >= highest:
			fail(VerdictStore, "refused fence %d from %s at %s, not below the highest %d", w.Fence, w.Writer, at(w.At), highest)
		}
		if w.Accepted {
			highest = max(highest, w.Fence)
		}
	}

	// 3. Every accepted write belongs to a term of its writer, before the
	// term ended: the latest term of that writer and fence elected before
	// the write (a fence issued twice is verdict 1's business).
	for _, w := range res.Writes {
		if !w.Accepted {
			continue
		}
		i := -1
		for j, t := range res.Terms { // in order of election
			if t.Peer == w.Peer && t.Fence == w.Fence && (i < 0 || t.Elected <= w.At) {
				i = j
			}
		}
		switch {
		case i < 0:
			fail(VerdictWritesInTerm, "accepted a write of %s with fence %d at %s outside any term of it", w.Writer, w.Fence, at(w.At))
		case res.Terms[i].Lost != 0 && w.At > res.Terms[i].Lost:
			fail(VerdictWritesInTerm, "accepted a write of %s with fence %d at %s, after its term ended at %s", w.Writer, w.Fence, at(w.At), at(res.Terms[i].Lost))
		}
	}

	// 5. A leader after the start and within the bound after every heal.
	if r.firstLeader == 0 {
		fail(VerdictLeaderBound, "no leader within %v of the start", startupBound)
	} else {
		res.FirstLeader = time.Duration(r.firstLeader - r.started)
	}
	for i, s := range r.steps {
		if s.LeaderAt == 0 && s.Err == nil {
			fail(VerdictLeaderBound, "step %d (%s, acted on %q): no leader within %v of the heal at %s",
				i, s.Step, s.Acted, r.cfg.Timing.LeaderBound(), at(s.Healed))
		}
	}

	for _, rv := range r.revived {
		under := "the start"
		if rv.step >= 0 {
			s := r.steps[rv.step]
			under = fmt.Sprintf("step %d (%s, acted on %q)", rv.step, s.Step, s.Acted)
		}
		fail(VerdictLeaderBound, "revived term: the key of %s's term %d, which stopped at %s, still held at %s with %v to live, past stop + TTL: renewed after its holder gave up, so no leader until it expires; after %s",
			rv.identity, rv.fence, at(rv.stopped), at(rv.seen), rv.ttl, under)
	}

	// 6. Clean exits.
	for _, p := range r.procs {
		switch {
		case p.killed && !p.stuck:
			// a kill-candidate fault
		case !p.termed:
			fail(VerdictCleanExit, "%s exited by itself at %s with status %d%s; see %s", p.identity, at(p.exited), p.status, signalNote(p), p.log)
		case p.stuck:
			fail(VerdictCleanExit, "%s still running %v after SIGTERM: killed; see %s", p.identity, exitBound, p.log)
		default:
			res.ExitMax = max(res.ExitMax, time.Duration(p.exited-p.termedAt))
			if !cleanStatus(r.cfg.Mode, p.status) {
				fail(VerdictCleanExit, "%s exited with status %d%s after SIGTERM; see %s", p.identity, p.status, signalNote(p), p.log)
			}
		}
	}
	for _, p := range peers {
		exit := slices.IndexFunc(p.Events, func(ev Event) bool { return ev.Kind == wire.Exit })
		pr := procs[p.Identity]
		switch {
		case exit >= 0 && p.Events[exit].Leaked > 0:
			fail(VerdictCleanExit, "%s (%s, pid %d) left %d goroutines behind; see %s", p.Identity, p.Role, p.PID, p.Events[exit].Leaked, logOf(pr))
		case exit < 0 && p.Role == wire.RoleWorker:
			fail(VerdictCleanExit, "the worker of %s (pid %d) ended without reporting its exit: killed?; see %s", p.Identity, p.PID, logOf(pr))
		case exit < 0 && pr != nil && pr.termed && !pr.stuck:
			fail(VerdictCleanExit, "%s (pid %d) exited after SIGTERM without reporting its goroutines; see %s", p.Identity, p.PID, pr.log)
		}
	}

	// 7. Logs.
	for _, p := range r.procs {
		if m := logProblems.FindAllString(p.readLog(), 3); len(m) > 0 {
			fail(VerdictRacePanic, "%s: %s; see %s", p.identity, strings.Join(m, " | "), p.log)
		}
	}

	// 8. Overlaps.
	for i, a := range res.Terms {
		for _, b := range res.Terms[i+1:] {
			start, end := max(a.Elected, b.Elected), min(termEnd(a, r.ended), termEnd(b, r.ended))
			if a.Fence == b.Fence || end <= start {
				continue
			}
			o := Overlap{A: min(a.Fence, b.Fence), B: max(a.Fence, b.Fence), Start: start, Duration: time.Duration(end - start), Phase: res.phaseOf(start)}
			ph := res.Phases[o.Phase]
			o.Allowed = ph.Step >= 0 && res.Steps[ph.Step].Overlap
			res.Overlaps = append(res.Overlaps, o)
			if !o.Allowed {
				fail(VerdictOverlap, "%s (fence %d) and %s (fence %d) acted at once for %v from %s, under %s",
					a.Identity, a.Fence, b.Identity, b.Fence, o.Duration.Round(time.Millisecond), at(start), phaseName(res, o.Phase))
			}
		}
	}

	for _, name := range Verdicts() {
		res.Verdicts = append(res.Verdicts, *v[name])
	}
	return res
}

// libraryTerms reads the terms of library candidates and checks the order of
// their callbacks (verdict 4).
func (r *run) libraryTerms(peers []*Peer, procs map[string]*proc, fail func(string, string, ...any), at func(int64) string) []Term {
	var terms []Term
	for _, p := range peers {
		if p.Role != wire.RoleLibrary {
			continue
		}
		var open *Term
		for _, ev := range p.Events {
			switch ev.Kind {
			case wire.Elected:
				if open != nil {
					fail(VerdictCallbacks, "%s: OnElected(%d) at %s while term %d was not over", p.Identity, ev.Fence, at(ev.T), open.Fence)
					terms = append(terms, *open)
				}
				open = &Term{Identity: p.Identity, Peer: p.ID, Fence: ev.Fence, Elected: ev.T, After: ev.Acquired}
			case wire.Stopped:
				if open == nil || open.Fence != ev.Fence || open.Stopped != 0 {
					fail(VerdictCallbacks, "%s: OnElected(%d) returned at %s out of turn", p.Identity, ev.Fence, at(ev.T))
					continue
				}
				open.Stopped = ev.T
			case wire.Lost:
				switch {
				case open == nil || open.Fence != ev.Fence:
					fail(VerdictCallbacks, "%s: OnLost(%d) at %s without its OnElected", p.Identity, ev.Fence, at(ev.T))
					continue
				case open.Stopped == 0:
					fail(VerdictCallbacks, "%s: OnLost(%d) at %s before OnElected returned", p.Identity, ev.Fence, at(ev.T))
					open.Stopped = ev.T
				}
				open.Lost = ev.T
				terms = append(terms, *open)
				open = nil
			}
		}
		if open == nil {
			continue
		}
		// A SIGKILL closes the term; nothing else may leave it open.
		pr := procs[p.Identity]
		end := p.Closed
		if pr != nil && pr.killed && !pr.stuck {
			open.Death = true
			end = pr.exited
		} else {
			fail(VerdictCallbacks, "%s: term %d had no OnLost when the process ended at %s", p.Identity, open.Fence, at(end))
		}
		if open.Stopped == 0 {
			open.Stopped = end
		}
		open.Lost = end
		terms = append(terms, *open)
	}
	return terms
}

// cliTerms reads the terms of baton run candidates, one per worker, and
// checks that each baton ran one worker at a time, once per term (verdict
// 4). The acquisition of a term was sent after its baton started, and after
// its previous worker exited: baton campaigns again only then.
func (r *run) cliTerms(peers []*Peer, procs map[string]*proc, fail func(string, string, ...any), at func(int64) string) []Term {
	byBaton := map[string][]Term{}
	for _, p := range peers {
		if p.Role != wire.RoleWorker {
			continue
		}
		t := Term{Identity: p.Identity, Peer: p.ID}
		var last int64 // the worker's last message: it was alive then
		for _, ev := range p.Events {
			last = max(last, ev.T)
			switch ev.Kind {
			case wire.Elected:
				t.Fence, t.Elected = ev.Fence, ev.T
			case wire.Stopped:
				t.Stopped = ev.T
			case wire.Lost:
				t.Lost = ev.T
			}
		}
		if t.Elected == 0 {
			fail(VerdictCallbacks, "a worker of %s (pid %d) never reported its start", p.Identity, p.PID)
			continue
		}
		if t.Lost == 0 { // it died without saying so: it acted until its end
			t.Death = true
			t.Lost = p.Closed
			if t.Stopped == 0 {
				t.Stopped = p.Closed
			}
		}
		t.After = last // provisional: the worker's own last sign of life, for its successor
		byBaton[p.Identity] = append(byBaton[p.Identity], t)
	}
	var terms []Term
	for id, ts := range byBaton {
		slices.SortFunc(ts, func(a, b Term) int { return cmpInt(a.Elected, b.Elected) })
		var after int64
		if pr := procs[id]; pr != nil {
			after = pr.started
		}
		for i := range ts {
			lastSign := ts[i].After
			ts[i].After = after
			if i > 0 {
				prev := ts[i-1]
				if ts[i].Elected < prev.Lost {
					fail(VerdictCallbacks, "%s: worker of term %d started at %s before the worker of term %d exited at %s",
						id, ts[i].Fence, at(ts[i].Elected), prev.Fence, at(prev.Lost))
				}
				if ts[i].Fence == prev.Fence {
					fail(VerdictCallbacks, "%s: two workers for term %d", id, ts[i].Fence)
				}
			}
			after = max(after, lastSign)
		}
		terms = append(terms, ts...)
	}
	return terms
}

// termEnd is when a term stopped acting.
func termEnd(t Term, runEnd int64) int64 {
	switch {
	case t.Stopped != 0:
		return t.Stopped
	case t.Lost != 0:
		return t.Lost
	}
	return runEnd
}

// phaseOf returns the index of the phase t falls in.
func (res *Result) phaseOf(t int64) int {
	i, _ := slices.BinarySearchFunc(res.Phases, t, func(p Phase, t int64) int {
		if p.Start <= t {
			return -1
		}
		return 1
	})
	return max(i-1, 0)
}

func phaseName(res *Result, i int) string {
	ph := res.Phases[i]
	if ph.Step < 0 {
		return ph.Kind
	}
	return fmt.Sprintf("step %d (%s, acted on %q)", ph.Step, res.Steps[ph.Step].Step, res.Steps[ph.Step].Acted)
}

// cleanStatus reports whether status is a clean exit after SIGTERM: 0 for a
// candidate; for baton run, 0 (its worker's status) or 143 (a standby).
func cleanStatus(m Mode, status int) bool {
	return status == 0 || m == ModeCLI && status == 143
}

func signalNote(p *proc) string {
	if p.signal != 0 {
		return " (" + p.signal.String() + ")"
	}
	return ""
}

func logOf(p *proc) string {
	if p == nil {
		return "(unknown process)"
	}
	return p.log
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
