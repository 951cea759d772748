package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/baton-dev/baton/internal/chaos/wire"
	"github.com/baton-dev/baton/internal/valkeytest"
)

// Binaries are the programs a run starts, built with -race.
type Binaries struct {
	Candidate string // internal/chaos/cmd/candidate: library mode
	Worker    string // internal/chaos/cmd/worker: the command of baton run
	Baton     string // cmd/baton: cli mode
}

// Packages built by Build, in the order of Binaries' fields.
var buildPackages = []string{
	"github.com/baton-dev/baton/internal/chaos/cmd/candidate",
	"github.com/baton-dev/baton/internal/chaos/cmd/worker",
	"github.com/baton-dev/baton/cmd/baton",
}

// Build builds the candidate, the worker and baton with -race into dir,
// with the go command that is on PATH (or in GOROOT). It must run inside the
// module.
func Build(ctx context.Context, dir string) (Binaries, error) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		gotool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	args := append([]string{"build", "-race", "-o", dir + string(filepath.Separator)}, buildPackages...)
	cmd := exec.CommandContext(ctx, gotool, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("chaos: go build -race: %w\n%s", err, out)
	}
	return Binaries{
		Candidate: filepath.Join(dir, "candidate"),
		Worker:    filepath.Join(dir, "worker"),
		Baton:     filepath.Join(dir, "baton"),
	}, nil
}

// proc is one incarnation of a candidate: a candidate process in library
// mode, a baton run process in cli mode. Its fields are written by the run's
// goroutine, except those the waiter sets before closing done.
type proc struct {
	slot     *slot
	inc      int    // incarnation of the slot, from 0
	identity string // "c<slot>.<inc>"
	log      string // path of its stdout and stderr
	cmd      *exec.Cmd
	started  int64 // shared clock, just before the process was started

	paused   bool
	killed   bool  // by a kill-candidate fault
	termed   bool  // sent SIGTERM at the end of the run
	termedAt int64 // shared clock
	stuck    bool  // still there exitBound after SIGTERM: killed

	done   chan struct{} // closed once the process has been reaped
	exited int64         // shared clock, when it was reaped; read after done
	status int           // exit status, -1 when killed by a signal; read after done
	signal syscall.Signal
}

// slot is one candidate position: its proxy and its current incarnation.
type slot struct {
	run   *run
	index int
	proxy interface {
		Addr() string
		Cut()
		Restore()
		Blackhole()
		Delay(time.Duration)
		Heal()
	}
	cur  *proc
	next int // next incarnation
}

// startProc starts the next incarnation of s.
func (r *run) startProc(s *slot) (*proc, error) {
	p := &proc{slot: s, inc: s.next, done: make(chan struct{})}
	s.next++
	p.identity = fmt.Sprintf("c%d.%d", s.index, p.inc)
	p.log = filepath.Join(r.dir, p.identity+".log")
	logf, err := os.Create(p.log)
	if err != nil {
		return nil, fmt.Errorf("chaos: candidate log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor

	tm := r.cfg.Timing
	seed := strconv.FormatUint(uint64(r.cfg.Seed)*1000+uint64(s.index)*100+uint64(p.inc), 10)
	switch r.cfg.Mode {
	case ModeLibrary:
		p.cmd = exec.Command(r.cfg.Binaries.Candidate,
			"-hub", r.hub.Addr(),
			"-addr", s.proxy.Addr(),
			"-name", electionName,
			"-identity", p.identity,
			"-ttl", tm.TTL.String(),
			"-renew-deadline", tm.RenewDeadline.String(),
			"-retry-period", tm.RetryPeriod.String(),
			"-seed", seed,
		)
	case ModeCLI:
		p.cmd = exec.Command(r.cfg.Binaries.Baton, "run",
			"--name", electionName,
			"--addr", s.proxy.Addr(),
			"--identity", p.identity,
			"--ttl", tm.TTL.String(),
			"--renew-deadline", tm.RenewDeadline.String(),
			"--retry-period", tm.RetryPeriod.String(),
			"--grace", cliGrace(tm).String(),
			"--", r.cfg.Binaries.Worker,
		)
		p.cmd.Env = append(os.Environ(), "CHAOS_HUB="+r.hub.Addr(), "CHAOS_SEED="+seed)
	default:
		return nil, fmt.Errorf("chaos: unknown mode %q", r.cfg.Mode)
	}
	if p.cmd.Env == nil {
		p.cmd.Env = os.Environ()
	}
	// The race runtime sleeps a second at exit by default, to catch late
	// reports: longer than baton run's grace, so a worker stopped by SIGTERM
	// would be SIGKILLed while sleeping. The goroutines are gone by then
	// (goleak), so 50ms is plenty. A GORACE of the caller's comes after, and
	// wins.
	p.cmd.Env = append(p.cmd.Env, "GORACE=atexit_sleep_ms=50 "+os.Getenv("GORACE"))
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = valkeytest.SysProcAttr()
	p.started = wire.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("chaos: start %s: %w", p.identity, err)
	}
	r.procs = append(r.procs, p)
	s.cur = p
	r.wg.Go(func() {
		err := p.cmd.Wait()
		p.exited = wire.Now()
		p.status = p.cmd.ProcessState.ExitCode()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.signal = ws.Signal()
		}
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			p.status = -2 // Wait itself failed
		}
		close(p.done)
	})
	return p, nil
}

// cliGrace is baton run's --grace: within TTL - RenewDeadline, so that a
// command that ignored SIGTERM would still be gone before a successor can be
// elected (docs/cli.md). The worker exits at once on SIGTERM anyway.
func cliGrace(tm Timing) time.Duration {
	return (tm.TTL - tm.RenewDeadline) * 3 / 4
}

// alive reports whether the process has not been reaped.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits until the process is reaped.
func (p *proc) kill() {
	p.killed = true
	_ = p.cmd.Process.Signal(syscall.SIGKILL) // fails only if it has exited
	<-p.done
	p.paused = false
}

// restart starts the slot's next incarnation.
func (p *proc) restart() error {
	_, err := p.slot.run.startProc(p.slot)
	return err
}

// pause stops the process with SIGSTOP and returns once it is stopped.
func (p *proc) pause() error {
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("chaos: pause %s: %w", p.identity, err)
	}
	p.paused = true
	if err := valkeytest.AwaitStopped(p.cmd.Process.Pid, p.done); err != nil {
		return fmt.Errorf("chaos: pause %s: %w", p.identity, err)
	}
	return nil
}

// resume continues a paused process.
func (p *proc) resume() error {
	if !p.paused {
		return nil
	}
	p.paused = false
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil && p.alive() {
		return fmt.Errorf("chaos: resume %s: %w", p.identity, err)
	}
	return nil
}

// terminate sends SIGTERM (after SIGCONT, in case it is paused).
func (p *proc) terminate() {
	p.termed, p.termedAt = true, wire.Now()
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
}

// readLog returns the process's log.
func (p *proc) readLog() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}
