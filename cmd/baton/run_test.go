package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
)

// electionKey is the key of election name with the default prefix.
func electionKey(name string) string { return "baton:election:" + name }

func TestOnlyTheLeaderRunsTheCommand(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	ev := filepath.Join(t.TempDir(), "events")
	a := startBaton(t, helperEnv("record", ev), runArgs(s, "only", "a")...)
	b := startBaton(t, helperEnv("record", ev), runArgs(s, "only", "b")...)
	procs := map[string]*proc{"a": a, "b": b}

	waitFor(t, "a command to start", func() bool { return len(starts(t, ev)) > 0 })
	first := starts(t, ev)[0]
	code, out, _ := runBaton(t, nil, "leader", "--addr", s.Addr(), "--name", "only")
	if want := first.identity + " fence="; code != 0 || !strings.HasPrefix(out, want) {
		t.Fatalf("baton leader = %d %q; want 0 %q...", code, out, want)
	}

	// The leader's baton stops: its command gets SIGTERM and exits 0, baton
	// releases, and only then does the standby's command start.
	leader, standby := procs[first.identity], procs[map[string]string{"a": "b", "b": "a"}[first.identity]]
	leader.signal(t, syscall.SIGTERM)
	if code := leader.wait(t); code != 0 {
		t.Fatalf("leader's baton exited %d after its command exited 0; want 0", code)
	}
	waitFor(t, "the standby's command to start", func() bool { return len(starts(t, ev)) == 2 })
	got := events(t, ev)
	if want := []string{"start", "term", "start"}; len(got) != 3 || !strings.HasPrefix(got[0], want[0]) ||
		got[1] != "term" || !strings.HasPrefix(got[2], want[2]) {
		t.Fatalf("events = %q; want start, term, start", got)
	}
	second := starts(t, ev)[1]
	if second.identity == first.identity || second.fence <= first.fence {
		t.Fatalf("second term = %+v after %+v; want the other identity and a greater fence", second, first)
	}
	standby.signal(t, syscall.SIGTERM)
	standby.wait(t)
}

func TestLossTerminatesTheCommandGroup(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	ev := filepath.Join(t.TempDir(), "events")
	p := startBaton(t, helperEnv("record", ev, envSpawn+"=1"), runArgs(s, "loss", "a")...)
	waitFor(t, "the grandchild", func() bool { return hasEvent(t, ev, "grandchild ") })
	grandchild := eventPID(t, ev, "grandchild")

	s.Do(t, "DEL", electionKey("loss")) // the leader finds out at its next renewal
	waitFor(t, "SIGTERM to the command", func() bool { return hasEvent(t, ev, "term") })
	waitFor(t, "the grandchild to die with its group", func() bool { return gone(grandchild) })

	// baton campaigns again, wins (nobody else runs) and reruns the command.
	waitFor(t, "the command to run again", func() bool { return len(starts(t, ev)) == 2 })
	if st := starts(t, ev); st[1].fence <= st[0].fence {
		t.Fatalf("fences %d then %d; want increasing", st[0].fence, st[1].fence)
	}
	p.signal(t, syscall.SIGTERM)
	p.wait(t)
}

func TestGraceThenSIGKILL(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	ev := filepath.Join(t.TempDir(), "events")
	p := startBaton(t, helperEnv("ignore-term", ev), runArgs(s, "grace", "a", "--grace", "300ms")...)
	waitFor(t, "the command to start", func() bool { return len(starts(t, ev)) == 1 })
	pid := starts(t, ev)[0].pid

	s.Do(t, "DEL", electionKey("grace"))
	waitFor(t, "SIGTERM to the command", func() bool { return hasEvent(t, ev, "term") })
	waitFor(t, "SIGKILL after the grace period", func() bool { return gone(pid) })
	waitFor(t, "baton to report the kill", func() bool {
		return strings.Contains(p.stderr.String(), `msg="baton: command stopped" status=137`)
	})
	p.signal(t, syscall.SIGINT) // forwarded to the next term's command, which ignores only SIGTERM
	p.wait(t)
}

func TestExitStatusPropagates(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	ev := filepath.Join(t.TempDir(), "events")
	code, _, stderr := runBaton(t, helperEnv("exit", ev, envCode+"=7"), runArgs(s, "exit", "a")...)
	if code != 7 {
		t.Fatalf("baton run exited %d; want the command's 7\n%s", code, stderr)
	}
	// The leadership was released on exit, not left to expire.
	if n, err := s.Do(t, "EXISTS", electionKey("exit")).AsInt64(); err != nil || n != 0 {
		t.Fatalf("EXISTS %s = %d, %v after baton exited; want 0", electionKey("exit"), n, err)
	}
}

func TestRerun(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	ev := filepath.Join(t.TempDir(), "events")
	p := startBaton(t, helperEnv("exit", ev, envCode+"=0"), runArgs(s, "rerun", "a", "--rerun")...)
	waitFor(t, "a second run", func() bool { return len(starts(t, ev)) >= 2 })
	if st := starts(t, ev); st[1].fence <= st[0].fence {
		t.Fatalf("fences %d then %d; want a new term for each run", st[0].fence, st[1].fence)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 && code != 143 {
		t.Fatalf("baton exited %d after SIGTERM; want 0 (a command that exited) or 143", code)
	}
}

// TestRerunBacksOffACommandThatKeepsFailing: with --rerun, a command that
// fails at once is rerun after one retry period the first time, then after
// pauses that double, each logged at warn.
func TestRerunBacksOffACommandThatKeepsFailing(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	ev := filepath.Join(t.TempDir(), "events")
	// --ttl 2s: renew deadline 1.333s, retry period 266ms.
	p := startBaton(t, helperEnv("exit", ev, envCode+"=3"), runArgs(s, "failing", "a", "--rerun")...)
	waitFor(t, "four runs", func() bool { return len(starts(t, ev)) >= 4 })
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 143 && code != 3 {
		t.Fatalf("baton exited %d after SIGTERM; want 143 (pausing) or 3 (the command's)", code)
	}
	log := p.stderr.String()
	for _, want := range []string{
		`level=WARN msg="baton: command exited; releasing the leadership and campaigning again" status=3`,
		`level=WARN msg="baton: command failed again soon after it started; releasing the leadership and pausing before campaigning again" status=3`,
		"failures_in_a_row=2 pause=532ms",
		"failures_in_a_row=3 pause=1.064s",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	// The starts as logged: the gaps grow by the pauses.
	var at []time.Time
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `msg="baton: command started"`) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatalf("bad time in %q: %v", line, err)
		}
		at = append(at, tm)
	}
	if len(at) < 4 {
		t.Fatalf("%d command starts logged; want >= 4", len(at))
	}
	for i, least := range []time.Duration{266 * time.Millisecond, 532 * time.Millisecond, 1064 * time.Millisecond} {
		if gap := at[i+1].Sub(at[i]); gap < least {
			t.Errorf("run %d started %v after run %d; want at least %v", i+2, gap, i+1, least)
		}
	}
}

func TestRerunPause(t *testing.T) {
	t.Parallel()
	const rp = 2 * time.Second
	for _, tc := range []struct {
		retry time.Duration
		n     int
		want  time.Duration
	}{
		{rp, 0, 0}, {rp, 1, 0}, {rp, 2, 2 * rp}, {rp, 3, 4 * rp}, {rp, 5, 16 * rp},
		{rp, 6, maxRerunPause}, {rp, 1000, maxRerunPause},
		{2 * time.Minute, 2, 2 * time.Minute}, // never above a retry period that is longer than the cap
	} {
		if got := rerunPause(tc.retry, tc.n); got != tc.want {
			t.Errorf("rerunPause(%v, %d) = %v; want %v", tc.retry, tc.n, got, tc.want)
		}
	}
}

func TestSignalsAreForwarded(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	ev := filepath.Join(t.TempDir(), "events")
	p := startBaton(t, helperEnv("record", ev), runArgs(s, "signals", "a")...)
	waitFor(t, "the command to start", func() bool { return len(starts(t, ev)) == 1 })

	p.signal(t, syscall.SIGUSR1)
	waitFor(t, "SIGUSR1 at the command", func() bool { return hasEvent(t, ev, "usr1") })
	p.signal(t, syscall.SIGHUP)
	waitFor(t, "SIGHUP at the command", func() bool { return hasEvent(t, ev, "hup") })
	p.signal(t, syscall.SIGINT) // the helper exits 0 on SIGINT: so does baton, without rerunning
	if code := p.wait(t); code != 0 {
		t.Fatalf("baton exited %d; want its command's 0", code)
	}
	if got := events(t, ev); got[len(got)-1] != "int" || len(starts(t, ev)) != 1 {
		t.Fatalf("events = %q; want one start and SIGINT last", got)
	}
}

func TestStopSignalWithoutCommand(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	ev := filepath.Join(t.TempDir(), "events")
	leader := startBaton(t, helperEnv("record", ev), runArgs(s, "standby", "leader")...)
	waitFor(t, "the leader's command", func() bool { return len(starts(t, ev)) == 1 })

	for _, tc := range []struct {
		sig  syscall.Signal
		want int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			p := startBaton(t, helperEnv("record", ev), runArgs(s, "standby", "standby")...)
			waitFor(t, "the standby to see the leader", func() bool {
				return strings.Contains(p.stderr.String(), `msg="baton: leader" name=standby leader=leader`)
			})
			p.signal(t, tc.sig)
			if code := p.wait(t); code != tc.want {
				t.Fatalf("standby exited %d after %v; want %d", code, tc.sig, tc.want)
			}
		})
	}
	leader.signal(t, syscall.SIGTERM)
	leader.wait(t)
	if n := len(starts(t, ev)); n != 1 {
		t.Fatalf("%d commands started; want only the leader's", n)
	}
}

func TestKilledBatonStopsItsCommand(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	ev := filepath.Join(t.TempDir(), "events")
	p := startBaton(t, helperEnv("record", ev, envSpawn+"=1"), runArgs(s, "killed", "a")...)
	waitFor(t, "the grandchild", func() bool { return hasEvent(t, ev, "grandchild ") })
	pid, grandchild := starts(t, ev)[0].pid, eventPID(t, ev, "grandchild")

	p.signal(t, syscall.SIGKILL) // baton cannot clean up: its supervisor must
	p.wait(t)
	waitFor(t, "SIGTERM to the orphaned command", func() bool { return hasEvent(t, ev, "term") })
	waitFor(t, "the command to exit", func() bool { return gone(pid) })
	waitFor(t, "the grandchild to exit", func() bool { return gone(grandchild) })
}

func TestCommandNotFound(t *testing.T) {
	t.Parallel()
	code, _, stderr := runBaton(t, nil, "run", "--name", "x", "--addr", "127.0.0.1:1", "--", "baton-no-such-command")
	if code != 127 || !strings.Contains(stderr, `"baton-no-such-command": executable file not found`) {
		t.Fatalf("baton run of a missing command = %d %q; want 127 and a clear message", code, stderr)
	}
}
