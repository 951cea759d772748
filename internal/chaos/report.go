package chaos

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Report adds up the results of a campaign, per fault kind. It is not safe
// for concurrent use.
type Report struct {
	Runs    int           // runs added
	Elapsed time.Duration // their Result.Elapsed, added up
	kinds   map[string]*kindStats
	order   []string       // row order: "none", the fault kinds as first seen, "shutdown"
	failed  []string       // one line per failed run: its verdicts and how to replay it
	byCheck map[string]int // failed runs per verdict
	modes   map[Mode]int
}

// kindStats are the figures of one row of the table.
type kindStats struct {
	faults, newTerms, terms, overlaps, refused int
	maxOverlap                                 time.Duration
	newLeader, afterHeal                       []time.Duration
}

// NewReport returns an empty report whose rows start with the given fault
// kinds, in order.
func NewReport(kinds []string) *Report {
	rep := &Report{kinds: map[string]*kindStats{}, byCheck: map[string]int{}, modes: map[Mode]int{}}
	for _, k := range append(append([]string{"none"}, kinds...), "shutdown") {
		rep.row(k)
	}
	return rep
}

func (rep *Report) row(kind string) *kindStats {
	if s, ok := rep.kinds[kind]; ok {
		return s
	}
	s := &kindStats{}
	rep.kinds[kind] = s
	if n := len(rep.order); n > 0 && rep.order[n-1] == "shutdown" && kind != "shutdown" {
		rep.order = slices.Insert(rep.order, n-1, kind)
	} else {
		rep.order = append(rep.order, kind)
	}
	return s
}

// Add counts one run.
func (rep *Report) Add(res *Result) {
	rep.Runs++
	rep.Elapsed += res.Elapsed
	rep.modes[res.Config.Mode]++
	if !res.OK() {
		failed := res.Failed()
		for _, name := range failed {
			rep.byCheck[name]++
		}
		if len(res.Errors) > 0 {
			failed = append(failed, "harness")
		}
		rep.failed = append(rep.failed, fmt.Sprintf("%s: %s", strings.Join(failed, ", "), res.Config.Replay()))
	}
	kindOf := func(phase int) *kindStats { return rep.row(res.Phases[phase].Kind) }
	for _, t := range res.Terms {
		kindOf(t.Phase).terms++
	}
	for _, o := range res.Overlaps {
		s := kindOf(o.Phase)
		s.overlaps++
		s.maxOverlap = max(s.maxOverlap, o.Duration)
	}
	for _, w := range res.Writes {
		if !w.Accepted {
			kindOf(res.phaseOf(w.At)).refused++
		}
	}
	for i, st := range res.Steps {
		s := rep.row(st.Kind)
		s.faults++
		if st.LeaderAt != 0 {
			s.afterHeal = append(s.afterHeal, time.Duration(st.LeaderAt-st.Healed))
		}
		if d, ok := res.newLeader(i); ok {
			s.newTerms++
			s.newLeader = append(s.newLeader, d)
		}
	}
}

// newLeader returns how long after step i's injection a term with a fence
// greater than every earlier one was elected, if one was before the next
// phase began.
func (res *Result) newLeader(i int) (time.Duration, bool) {
	st := res.Steps[i]
	phase := slices.IndexFunc(res.Phases, func(p Phase) bool { return p.Step == i })
	end := res.Phases[phase+1].Start
	var before int64
	for _, t := range res.Terms {
		if t.Elected < st.Injected {
			before = max(before, t.Fence)
		}
	}
	for _, t := range res.Terms { // in order of election
		if t.Elected >= st.Injected && t.Elected < end && t.Fence > before {
			return time.Duration(t.Elected - st.Injected), true
		}
	}
	return 0, false
}

// OK reports whether every run passed.
func (rep *Report) OK() bool { return len(rep.failed) == 0 }

// Failed returns one line per failed run: the failed verdicts and the flags
// that replay it.
func (rep *Report) Failed() []string { return rep.failed }

// Table renders the figures per fault kind as a Markdown table.
func (rep *Report) Table() string {
	var b strings.Builder
	b.WriteString("| fault | faults | new leader | terms | overlaps | max overlap ms | refused writes | new leader after injection ms p50 / max | leader after heal ms p50 / max |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var total kindStats
	for _, k := range rep.order {
		s := rep.kinds[k]
		if k != "none" && k != "shutdown" && s.faults == 0 && s.terms == 0 {
			continue
		}
		faults := fmt.Sprint(s.faults)
		if k == "none" || k == "shutdown" {
			faults = "-"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %s | %d | %s | %s |\n", k, faults, s.newTerms, s.terms, s.overlaps,
			msOrDash(s.maxOverlap, s.overlaps > 0), s.refused, percentiles(s.newLeader), percentiles(s.afterHeal))
		total.faults += s.faults
		total.newTerms += s.newTerms
		total.terms += s.terms
		total.overlaps += s.overlaps
		total.refused += s.refused
		total.maxOverlap = max(total.maxOverlap, s.maxOverlap)
		total.newLeader = append(total.newLeader, s.newLeader...)
		total.afterHeal = append(total.afterHeal, s.afterHeal...)
	}
	fmt.Fprintf(&b, "| **all** | %d | %d | %d | %d | %s | %d | %s | %s |\n", total.faults, total.newTerms, total.terms, total.overlaps,
		msOrDash(total.maxOverlap, total.overlaps > 0), total.refused, percentiles(total.newLeader), percentiles(total.afterHeal))
	return b.String()
}

// Verdict is the campaign's one-line verdict.
func (rep *Report) Verdict() string {
	modes := make([]string, 0, len(rep.modes))
	for _, m := range []Mode{ModeLibrary, ModeCLI} {
		if n := rep.modes[m]; n > 0 {
			modes = append(modes, fmt.Sprintf("%d %s", n, m))
		}
	}
	head := fmt.Sprintf("chaos: %d runs (%s) in %v", rep.Runs, strings.Join(modes, ", "), rep.Elapsed.Round(time.Second))
	if rep.OK() {
		return head + ": PASS, every verdict held in every run"
	}
	var checks []string
	for _, name := range append(Verdicts(), "harness") {
		if n := rep.byCheck[name]; n > 0 {
			checks = append(checks, fmt.Sprintf("%s in %d", name, n))
		}
	}
	return fmt.Sprintf("%s: FAIL, %d runs failed (%s)", head, len(rep.failed), strings.Join(checks, ", "))
}

func msOrDash(d time.Duration, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprint(d.Milliseconds())
}

// percentiles renders "p50 / max" in milliseconds, "-" for no sample.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("%d / %d", s[len(s)/2].Milliseconds(), s[len(s)-1].Milliseconds())
}

// Summary is one line about a run.
func (res *Result) Summary() string {
	kinds := make([]string, 0, len(res.Steps))
	for _, s := range res.Steps {
		kinds = append(kinds, s.Kind)
	}
	var refused, allowed int
	for _, w := range res.Writes {
		if !w.Accepted {
			refused++
		}
	}
	for _, o := range res.Overlaps {
		if o.Allowed {
			allowed++
		}
	}
	verdict := "ok"
	if !res.OK() {
		verdict = "FAILED " + strings.Join(res.Failed(), ", ")
		if len(res.Errors) > 0 {
			verdict += " (harness errors)"
		}
	}
	return fmt.Sprintf("seed=%d %s: %d faults (%s), %d terms, %d overlaps (%d allowed), %d/%d writes refused, first leader %v, exits <= %v, %v: %s",
		res.Config.Seed, res.Config.Mode, len(res.Steps), strings.Join(kinds, " "), len(res.Terms), len(res.Overlaps), allowed,
		refused, len(res.Writes), res.FirstLeader.Round(time.Millisecond), res.ExitMax.Round(time.Millisecond),
		res.Elapsed.Round(100*time.Millisecond), verdict)
}

// Details renders the failures, the schedule as carried out and the terms,
// on the run's clock, for a failed run.
func (res *Result) Details() string {
	var b strings.Builder
	start := res.Phases[0].Start
	at := func(t int64) string { return fmt.Sprintf("%8.3fs", float64(t-start)/1e9) }
	const shown = 10 // failures per verdict; the rest are counted
	for _, v := range res.Verdicts {
		for i, f := range v.Failures {
			if i == shown {
				fmt.Fprintf(&b, "  %s: ... and %d more\n", v.Name, len(v.Failures)-shown)
				break
			}
			fmt.Fprintf(&b, "  %s: %s\n", v.Name, f)
		}
	}
	for _, err := range res.Errors {
		fmt.Fprintf(&b, "  harness: %v\n", err)
	}
	b.WriteString("  timeline:\n")
	type line struct {
		t    int64
		text string
	}
	var lines []line
	for i, s := range res.Steps {
		lines = append(lines, line{s.Injected, fmt.Sprintf("step %d inject %s on %q", i, s.Step, s.Acted)})
		lines = append(lines, line{s.Healed, fmt.Sprintf("step %d healed", i)})
		if s.LeaderAt != 0 {
			lines = append(lines, line{s.LeaderAt, fmt.Sprintf("step %d leader back", i)})
		}
	}
	for _, t := range res.Terms {
		lines = append(lines, line{t.Elected, fmt.Sprintf("%s elected fence %d (acquisition sent after %s)", t.Identity, t.Fence, at(t.After))})
		end := "stopped"
		if t.Death {
			end = "died"
		}
		lines = append(lines, line{t.Stopped, fmt.Sprintf("%s %s fence %d", t.Identity, end, t.Fence)})
		if t.Lost != t.Stopped {
			lines = append(lines, line{t.Lost, fmt.Sprintf("%s lost fence %d", t.Identity, t.Fence)})
		}
	}
	lines = append(lines, line{res.Phases[len(res.Phases)-1].Start, "shutdown: SIGTERM to every candidate"})
	slices.SortStableFunc(lines, func(a, b line) int { return cmpInt(a.t, b.t) })
	for _, l := range lines {
		fmt.Fprintf(&b, "    %s %s\n", at(l.t), l.text)
	}
	fmt.Fprintf(&b, "  logs: %s\n", res.LogDir)
	return b.String()
}
