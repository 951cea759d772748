package chaos

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/chaos/wire"
)

func TestStoreRefusesOldFences(t *testing.T) {
	var s Store
	clock := int64(0)
	now := func() int64 { clock++; return clock }
	for _, tc := range []struct {
		fence        int64
		wantAccepted bool
		wantHighest  int64
	}{
		{5, true, 0},
		{5, true, 5}, // the same term writes again
		{7, true, 5},
		{6, false, 7},
		{8, true, 7},
	} {
		accepted, highest := s.Write(tc.fence, "w", 0, now)
		if accepted != tc.wantAccepted || highest != tc.wantHighest {
			t.Errorf("Write(%d) = %v, %d; want %v, %d", tc.fence, accepted, highest, tc.wantAccepted, tc.wantHighest)
		}
	}
	w := s.Writes()
	if len(w) != 5 || w[3].Accepted || w[3].At != 4 {
		t.Errorf("Writes() = %+v; want 5 writes, the 4th refused at 4", w)
	}
}

func TestHubRecordsAndAnswers(t *testing.T) {
	var s Store
	h, err := NewHub(&s)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := wire.Dial(h.Addr(), "c0.0", wire.RoleLibrary, 42)
	if err != nil {
		t.Fatal(err)
	}
	changed := h.Changed()
	if err := c.Send(wire.Msg{Kind: wire.Elected, Fence: 9, T: wire.Now(), Acquired: 1}); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := c.Write(9); err != nil || !ok {
		t.Fatalf("Write(9) = %v, %v; want accepted", ok, err)
	}
	if ok, highest, err := c.Write(8); err != nil || ok || highest != 9 {
		t.Fatalf("Write(8) = %v, %d, %v; want refused below 9", ok, highest, err)
	}
	<-changed // the elected event came before the writes were answered
	if el, st := h.TermState("c0.0", 9); el == 0 || st != 0 {
		t.Errorf("TermState while acting = %d, %d; want elected, not stopped", el, st)
	}
	if err := c.Send(wire.Msg{Kind: wire.Stopped, Fence: 9, T: wire.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Write(9); err != nil { // answered after the stop was read
		t.Fatal(err)
	}
	if _, st := h.TermState("c0.0", 9); st == 0 {
		t.Error("TermState after the stop: not stopped")
	}
	c.Close()
	h.Close()
	peers := h.Peers()
	if len(peers) != 1 || peers[0].PID != 42 || peers[0].Closed == 0 || len(peers[0].Events) != 2 {
		t.Fatalf("peers = %+v; want one closed peer (pid 42) with 2 events", peers)
	}
	if w := s.Writes(); len(w) != 3 || w[0].Writer != "c0.0" || w[1].Accepted {
		t.Errorf("writes = %+v; want 3 by c0.0, the second refused", w)
	}
	if errs := h.Errors(); len(errs) != 0 {
		t.Errorf("hub errors: %v", errs)
	}
}

func TestSelectFaults(t *testing.T) {
	all := StandardFaults()
	for _, tc := range []struct {
		list string
		want []string
	}{
		{"", Kinds(all)},
		{"all", Kinds(all)},
		{"del-key, cut-proxy", []string{"cut-proxy", "del-key"}},
		{"-pause-server,-del-key", slices.DeleteFunc(Kinds(all), func(k string) bool { return k == "pause-server" || k == "del-key" })},
		{"all,-pause-server", slices.DeleteFunc(Kinds(all), func(k string) bool { return k == "pause-server" })},
	} {
		got, err := SelectFaults(all, tc.list)
		if err != nil || !reflect.DeepEqual(Kinds(got), tc.want) {
			t.Errorf("SelectFaults(%q) = %v, %v; want %v", tc.list, Kinds(got), err, tc.want)
		}
	}
	for _, bad := range []string{"no-such-fault", "-del-key,del-key"} {
		if got, err := SelectFaults(all, bad); err == nil {
			t.Errorf("SelectFaults(%q) = %v; want an error", bad, Kinds(got))
		}
	}
}

func TestStandardFaults(t *testing.T) {
	kinds := Kinds(StandardFaults())
	want := []string{"kill-candidate", "pause-candidate", "pause-server", "cut-proxy", "blackhole-proxy", "delay-proxy",
		"restart-server", "del-key", "script-flush", "client-kill", "client-pause-write"}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("kinds = %v; want %v", kinds, want)
	}
	var overlap []string
	for _, f := range StandardFaults() {
		if f.AllowsOverlap() {
			overlap = append(overlap, f.Kind())
		}
	}
	// docs/safety.md: the holder paused, the key deleted, the server's data lost.
	if want := []string{"pause-candidate", "restart-server", "del-key"}; !reflect.DeepEqual(overlap, want) {
		t.Errorf("faults allowing overlaps = %v; want %v", overlap, want)
	}
}

func TestPlanIsReplayable(t *testing.T) {
	p := Planning{Timing: DefaultTiming(), Candidates: 4}
	a := Plan(7, StandardFaults(), p, 60*time.Second)
	b := Plan(7, StandardFaults(), p, 60*time.Second)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("Plan(7) differs between calls:\n%v\n%v", a, b)
	}
	if c := Plan(8, StandardFaults(), p, 60*time.Second); reflect.DeepEqual(a, c) {
		t.Error("Plan(8) = Plan(7)")
	}
	var total time.Duration
	for _, s := range a {
		total += s.Gap + s.Hold + p.Timing.TTL
		if s.Gap < p.Timing.TTL/4 || s.Gap > p.Timing.TTL {
			t.Errorf("step %s: gap outside [TTL/4, TTL]", s)
		}
		switch s.Kind {
		case "pause-candidate", "client-pause-write":
			if s.Hold <= p.Timing.TTL {
				t.Errorf("step %s: held no longer than the TTL", s)
			}
		case "del-key", "script-flush", "client-kill":
			if s.Hold != 0 {
				t.Errorf("step %s: a one-shot fault with a hold", s)
			}
		}
	}
	if total < 60*time.Second || total-a[len(a)-1].Gap-a[len(a)-1].Hold-p.Timing.TTL >= 60*time.Second {
		t.Errorf("Plan(7) plans %v; want just past 60s", total)
	}
	if got := Plan(7, StandardFaults()[:1], p, 0); len(got) != 1 {
		t.Errorf("Plan with no duration = %d steps; want 1", len(got))
	}
}

func TestReportTable(t *testing.T) {
	f, _, b := twoTerms(t, "del-key")
	b.Events[0].T = ms(5900) // an allowed overlap
	f.store.Write(5, "c9.0", 9, func() int64 { return ms(5600) })
	res := f.result(nil)
	rep := NewReport([]string{"cut-proxy", "del-key"})
	rep.Add(res)
	table := rep.Table()
	for _, want := range []string{
		"| none | - | 0 | 1 | 0 | - | 0 | - | - |",
		"| del-key | 1 | 1 | 1 | 1 | 100 | 1 | 900 / 900 | 0 / 0 |",
		"| **all** | 1 | 1 | 2 | 1 | 100 | 1 | 900 / 900 | 0 / 0 |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "cut-proxy") {
		t.Errorf("table has a row for a kind that never ran:\n%s", table)
	}
	if !rep.OK() || !strings.Contains(rep.Verdict(), "PASS") {
		t.Errorf("Verdict() = %q; want PASS", rep.Verdict())
	}

	f.steps[0].LeaderAt = 0
	rep.Add(f.result(nil))
	if rep.OK() || !strings.Contains(rep.Verdict(), "FAIL, 1 runs failed (leader-bound in 1)") || !strings.Contains(rep.Failed()[0], "-chaos.seed=0 -chaos.runs=1 -chaos.mode=library") {
		t.Errorf("after a failed run: Verdict() = %q, Failed() = %q", rep.Verdict(), rep.Failed())
	}
}
