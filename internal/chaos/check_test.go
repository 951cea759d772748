package chaos

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/chaos/wire"
)

// ms is a time on a fake run's clock, which starts at 1ms.
func ms(n int64) int64 { return n * int64(time.Millisecond) }

// fakeRun is a run whose processes, reports and writes a test makes up, to
// check the checks.
type fakeRun struct {
	*run
	t *testing.T
}

func newFakeRun(t *testing.T, mode Mode) *fakeRun {
	r := &run{
		tb:  t,
		cfg: Config{Mode: mode, Timing: DefaultTiming(), Candidates: 2, Faults: StandardFaults()},
		dir: t.TempDir(),
		hub: &Hub{changed: make(chan struct{})},
	}
	r.started, r.firstLeader, r.shutdown, r.ended = ms(1), ms(50), ms(20000), ms(21000)
	return &fakeRun{run: r, t: t}
}

// proc adds a process that exited with status; killed by a fault or sent
// SIGTERM at the end.
func (f *fakeRun) proc(identity string, killed bool, status int, log string) *proc {
	p := &proc{identity: identity, log: filepath.Join(f.dir, identity+".log"), done: make(chan struct{}), status: status}
	close(p.done)
	if err := os.WriteFile(p.log, []byte(log), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if killed {
		p.killed, p.exited, p.signal = true, ms(9000), syscall.SIGKILL
	} else {
		p.termed, p.termedAt, p.exited = true, f.shutdown, f.shutdown+ms(30)
	}
	f.procs = append(f.procs, p)
	return p
}

// peer adds a connection that reported msgs, each received when sent.
func (f *fakeRun) peer(identity, role string, closed int64, msgs ...wire.Msg) *Peer {
	p := &Peer{ID: len(f.hub.peers), Identity: identity, Role: role, Opened: ms(2), Closed: closed}
	for _, m := range msgs {
		p.Events = append(p.Events, Event{Msg: m, Recv: m.T})
	}
	f.hub.peers = append(f.hub.peers, p)
	return p
}

// write asks the store at time at.
func (f *fakeRun) write(p *Peer, fence, at int64) {
	f.store.Write(fence, p.Identity, p.ID, func() int64 { return at })
}

// step records a fault injected at inject and healed at heal, with a leader
// back at once.
func (f *fakeRun) step(kind string, inject, heal int64) {
	i := slices.IndexFunc(f.cfg.Faults, func(fl Fault) bool { return fl.Kind() == kind })
	if i < 0 {
		f.t.Fatalf("no fault %q", kind)
	}
	f.steps = append(f.steps, StepRecord{Step: Step{Kind: kind}, Overlap: f.cfg.Faults[i].AllowsOverlap(), Injected: inject, Healed: heal, LeaderAt: heal})
}

func elected(fence, at, acquired int64) wire.Msg {
	return wire.Msg{Kind: wire.Elected, Fence: fence, T: at, Acquired: acquired}
}
func stopped(fence, at int64) wire.Msg { return wire.Msg{Kind: wire.Stopped, Fence: fence, T: at} }
func lost(fence, at int64) wire.Msg    { return wire.Msg{Kind: wire.Lost, Fence: fence, T: at} }
func exited(at int64) wire.Msg         { return wire.Msg{Kind: wire.Exit, T: at} }

// twoTerms is a clean library run: c0 leads (fence 10) until the step at 5s
// ends its term, then c1 (fence 20) until the shutdown.
func twoTerms(t *testing.T, kind string) (*fakeRun, *Peer, *Peer) {
	f := newFakeRun(t, ModeLibrary)
	f.proc("c0.0", false, 0, "level=INFO msg=ok\n")
	f.proc("c1.0", false, 0, "")
	a := f.peer("c0.0", wire.RoleLibrary, ms(20040),
		elected(10, ms(50), ms(40)), stopped(10, ms(6000)), lost(10, ms(6001)), exited(ms(20030)))
	b := f.peer("c1.0", wire.RoleLibrary, ms(20040),
		elected(20, ms(7000), ms(6990)), stopped(20, ms(20010)), lost(20, ms(20011)), exited(ms(20030)))
	f.write(a, 10, ms(100))
	f.write(b, 20, ms(7100))
	f.step(kind, ms(5000), ms(5500))
	return f, a, b
}

// failures returns the failures of verdict name.
func failures(res *Result, name string) []string {
	for _, v := range res.Verdicts {
		if v.Name == name {
			return v.Failures
		}
	}
	return nil
}

// wantOnly checks that exactly the verdicts in failed failed, each with a
// message containing its text.
func wantOnly(t *testing.T, res *Result, failed map[string]string) {
	t.Helper()
	for _, name := range Verdicts() {
		fs := failures(res, name)
		text, want := failed[name]
		switch {
		case want && len(fs) == 0:
			t.Errorf("verdict %s passed; want it to fail with %q", name, text)
		case want && !strings.Contains(strings.Join(fs, "\n"), text):
			t.Errorf("verdict %s failed with %q; want %q", name, fs, text)
		case !want && len(fs) > 0:
			t.Errorf("verdict %s failed: %q", name, fs)
		}
	}
}

func TestChecksPassACleanRun(t *testing.T) {
	f, _, _ := twoTerms(t, "cut-proxy")
	res := f.result(nil)
	wantOnly(t, res, nil)
	if len(res.Terms) != 2 || res.Terms[0].Fence != 10 || res.Terms[1].Phase != 1 {
		t.Errorf("terms = %+v; want fences 10 then 20, the second in the step's phase", res.Terms)
	}
}

func TestChecksCatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   string
		change func(f *fakeRun, a, b *Peer)
		want   map[string]string
	}{
		{
			name: "a fence lower than one elected before the acquisition",
			change: func(f *fakeRun, a, b *Peer) {
				b.Events[0].Fence, b.Events[1].Fence, b.Events[2].Fence = 5, 5, 5 // a server restart without the TIME floor
				f.store = Store{}
				f.write(a, 10, ms(100))
				f.write(b, 5, ms(7100))
			},
			want: map[string]string{VerdictFenceOrder: "lower fence 5"},
		},
		{
			name: "a fence issued twice",
			change: func(f *fakeRun, a, b *Peer) {
				b.Events[0].Fence, b.Events[1].Fence, b.Events[2].Fence = 10, 10, 10
				f.store = Store{}
				f.write(a, 10, ms(100))
			},
			want: map[string]string{VerdictFenceOrder: "fence 10 issued twice"},
		},
		{
			name: "a write after the term ended",
			change: func(f *fakeRun, a, b *Peer) {
				f.store = Store{}
				f.write(a, 10, ms(100))
				f.write(a, 10, ms(6500))
				f.write(b, 20, ms(7100))
			},
			want: map[string]string{VerdictWritesInTerm: "after its term ended"},
		},
		{
			name:   "a write outside any term",
			change: func(f *fakeRun, a, b *Peer) { f.write(b, 20, ms(7200)); f.write(b, 30, ms(7300)) },
			want:   map[string]string{VerdictWritesInTerm: "outside any term"},
		},
		{
			name: "OnLost without OnElected",
			change: func(f *fakeRun, a, b *Peer) {
				a.Events = slices.Insert(a.Events, 3, Event{Msg: lost(10, ms(6002)), Recv: ms(6002)})
			},
			want: map[string]string{VerdictCallbacks: "OnLost(10) at t=6.001s without its OnElected"},
		},
		{
			name: "OnLost before OnElected returned",
			change: func(f *fakeRun, a, b *Peer) {
				a.Events = slices.Delete(a.Events, 1, 2)
			},
			want: map[string]string{VerdictCallbacks: "before OnElected returned"},
		},
		{
			name: "a term left open by a process that was not killed",
			change: func(f *fakeRun, a, b *Peer) {
				b.Events = slices.Delete(b.Events, 2, 3) // no OnLost
			},
			want: map[string]string{VerdictCallbacks: "term 20 had no OnLost"},
		},
		{
			name:   "overlapping terms under a fault that does not allow it",
			change: func(f *fakeRun, a, b *Peer) { b.Events[0].T = ms(5900) },
			want:   map[string]string{VerdictOverlap: "acted at once for 100ms"},
		},
		{
			name:   "no leader after a heal",
			change: func(f *fakeRun, a, b *Peer) { f.steps[0].LeaderAt = 0 },
			want:   map[string]string{VerdictLeaderBound: "no leader within 3.032s"},
		},
		{
			name: "a revived term",
			change: func(f *fakeRun, a, b *Peer) {
				f.revived = append(f.revived, revived{identity: "c0.0", fence: 10, stopped: ms(6000), seen: ms(8100), ttl: time.Second})
			},
			want: map[string]string{VerdictLeaderBound: "revived term"},
		},
		{
			name:   "a bad exit status",
			change: func(f *fakeRun, a, b *Peer) { f.procs[1].status = 1 },
			want:   map[string]string{VerdictCleanExit: "c1.0 exited with status 1 after SIGTERM"},
		},
		{
			name:   "leaked goroutines",
			change: func(f *fakeRun, a, b *Peer) { a.Events[3].Leaked = 2 },
			want:   map[string]string{VerdictCleanExit: "left 2 goroutines behind"},
		},
		{
			name: "a data race in a log",
			change: func(f *fakeRun, a, b *Peer) {
				if err := os.WriteFile(f.procs[0].log, []byte("==================\nWARNING: DATA RACE\nWrite at 0x00c000\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]string{VerdictRacePanic: "WARNING: DATA RACE"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, a, b := twoTerms(t, "cut-proxy")
			tc.change(f, a, b)
			wantOnly(t, f.result(nil), tc.want)
		})
	}
}

func TestOverlapsAllowedOnlyUnderTheirFaults(t *testing.T) {
	for _, kind := range []string{"pause-candidate", "del-key", "restart-server"} {
		f, _, b := twoTerms(t, kind)
		b.Events[0].T = ms(5900)
		res := f.result(nil)
		wantOnly(t, res, nil)
		if len(res.Overlaps) != 1 || !res.Overlaps[0].Allowed || res.Overlaps[0].Duration != 100*time.Millisecond {
			t.Errorf("%s: overlaps = %+v; want one allowed, of 100ms", kind, res.Overlaps)
		}
	}
}

func TestKilledTermEndsWithItsProcess(t *testing.T) {
	f := newFakeRun(t, ModeLibrary)
	f.proc("c0.0", true, -1, "")
	f.proc("c1.0", false, 0, "")
	f.peer("c0.0", wire.RoleLibrary, ms(9001), elected(10, ms(50), ms(40)))
	f.peer("c1.0", wire.RoleLibrary, ms(20040), elected(20, ms(11000), ms(10990)), stopped(20, ms(20010)), lost(20, ms(20011)), exited(ms(20030)))
	f.step("kill-candidate", ms(9000), ms(9500))
	res := f.result(nil)
	wantOnly(t, res, nil)
	if got := res.Terms[0]; !got.Death || got.Stopped != ms(9000) {
		t.Errorf("the killed candidate's term = %+v; want closed by its death at 9s", got)
	}
}

func TestCLITerms(t *testing.T) {
	f := newFakeRun(t, ModeCLI)
	f.proc("c0.0", false, 0, "")
	f.proc("c1.0", false, 143, "")
	f.peer("c0.0", wire.RoleWorker, ms(3000), elected(10, ms(60), 0), stopped(10, ms(2990)), exited(ms(2991)), lost(10, ms(2992)))
	f.peer("c0.0", wire.RoleWorker, ms(20040), elected(30, ms(6000), 0), stopped(30, ms(20010)), exited(ms(20011)), lost(30, ms(20012)))
	f.peer("c1.0", wire.RoleWorker, ms(5000), elected(20, ms(3500), 0), stopped(20, ms(4990)), exited(ms(4991)), lost(20, ms(4992)))
	f.step("cut-proxy", ms(2000), ms(2500))
	res := f.result(nil)
	wantOnly(t, res, nil)
	// c0's second acquisition was sent after its first worker's last message.
	i := slices.IndexFunc(res.Terms, func(t Term) bool { return t.Fence == 30 })
	if res.Terms[i].After != ms(2992) {
		t.Errorf("the acquisition of term 30 was sent after %d; want after %d", res.Terms[i].After, ms(2992))
	}

	// A second term with a lower fence than one elected before it began.
	f.hub.peers[1].Events[0].Fence = 5
	wantOnly(t, f.result(nil), map[string]string{VerdictFenceOrder: "lower fence 5"})
}
