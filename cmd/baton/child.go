package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// child is one run of the user's command. baton starts a supervisor (this
// binary's hidden _supervise command) as the leader of a new process group;
// the supervisor starts the command in that group. Signals go to the whole
// group, so a shell's children get them too. The supervisor holds the read
// end of a pipe whose write end only baton has: if baton dies, even by
// SIGKILL, the pipe closes and the supervisor stops the group (SIGTERM,
// then SIGKILL after the grace period). Linux's Pdeathsig would reach only
// the direct child, and is tied to the OS thread that started it rather
// than to the process.
//
// A child is safe for concurrent use.
type child struct {
	cmd      *exec.Cmd
	pgid     int
	lifeline *os.File      // write end of the supervisor's pipe; closed once the group is gone
	done     chan struct{} // closed once the supervisor was reaped and code set
	code     int           // exit status, shell style; read after done

	mu     sync.Mutex  // guards exited and kill; held while signalling, so no signal can reach a reused group id
	exited bool        // the supervisor has exited: its group id may be reused once it is reaped
	kill   *time.Timer // SIGKILL after the grace period of a stop signal; nil when not armed
}

// startChild starts path with args under a supervisor, in a new process
// group, with env and baton's standard streams. grace is the supervisor's
// wait between SIGTERM and SIGKILL should baton die.
func startChild(path string, args, env []string, grace time.Duration) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find baton's own executable: %w", err)
	}
	r, w, err := os.Pipe() // both ends close-on-exec; ExtraFiles hands r to the supervisor only
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(self, append([]string{superviseCmd, "--grace", grace.String(), "--", path}, args...)...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{r} // fd 3 in the supervisor
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start supervisor: %w", err)
	}
	c := &child{cmd: cmd, pgid: cmd.Process.Pid, lifeline: w, done: make(chan struct{})}
	go c.wait() // ends when the supervisor exits; every caller waits on c.done
	return c, nil
}

// wait reaps the supervisor. Where the platform allows, it first waits
// without reaping, kills whatever the command left behind in its group
// (background processes of a finished command must not outlive its
// leadership), and only then reaps, so the group id cannot have been reused.
func (c *child) wait() {
	if waitWithoutReaping(c.cmd.Process.Pid) == nil {
		c.mu.Lock()
		c.exited = true
		_ = syscall.Kill(-c.pgid, syscall.SIGKILL) // ESRCH: nothing was left
		c.mu.Unlock()
	}
	_ = c.cmd.Wait() // the status is in ProcessState
	c.mu.Lock()
	c.exited = true
	if c.kill != nil {
		c.kill.Stop()
	}
	c.mu.Unlock()
	c.lifeline.Close()
	c.code = exitStatus(c.cmd.ProcessState)
	close(c.done)
}

// signal sends sig to the command's process group, unless it has exited.
func (c *child) signal(sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.exited {
		_ = syscall.Kill(-c.pgid, sig)
	}
}

// killAfter arms a SIGKILL of the group after grace, logged when it fires;
// later calls do nothing.
func (c *child) killAfter(grace time.Duration, log *slog.Logger) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kill == nil && !c.exited {
		c.kill = time.AfterFunc(grace, func() { c.sigkill(grace, log) })
	}
}

// terminate stops the command: SIGTERM to its group, SIGKILL (logged) if it
// has not exited after grace. It returns once the supervisor was reaped.
func (c *child) terminate(grace time.Duration, log *slog.Logger) {
	c.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.sigkill(grace, log)
		<-c.done
	}
}

// sigkill kills the group after its grace period ran out, unless it has
// exited, and says so.
func (c *child) sigkill(grace time.Duration, log *slog.Logger) {
	c.mu.Lock()
	exited := c.exited
	c.mu.Unlock()
	if !exited {
		log.Warn("baton: grace period expired; sending SIGKILL to the command's group", "grace", grace, "pgid", c.pgid)
		c.signal(syscall.SIGKILL)
	}
}

// exitStatus returns a process's status the way a shell reports it: the
// exit code, or 128+N when signal N killed it.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// startStatus is the shell's status for a command that could not start:
// 127 when it does not exist, 126 when it cannot be executed.
func startStatus(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return 127
	}
	return 126
}
