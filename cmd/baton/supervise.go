package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// superviseCmd is the hidden command baton runs as the leader of the
// command's process group; see child.
const superviseCmd = "_supervise"

// forwarded are the signals baton passes on to the command's process group.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2}

// supervise runs `_supervise --grace D -- PATH ARGS...` with fd 3 the read
// end of baton's lifeline pipe. It starts the command in its own process
// group and exits with the command's status. If the pipe closes first, baton
// has died: it stops the group as baton would on a loss of leadership.
func supervise(args []string) int {
	fs := flag.NewFlagSet(superviseCmd, flag.ContinueOnError)
	grace := fs.Duration("grace", 10*time.Second, "")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "baton: _supervise is internal to baton run")
		return exitUsage
	}
	lifeline := os.NewFile(3, "baton-lifeline")
	syscall.CloseOnExec(3) // the command must not hold baton's lifeline

	// Signals sent to the group reach the command directly. The supervisor
	// only has to survive them, and SIGPIPE from a closed stderr must not
	// kill it before it stopped the group. Handled (not ignored) signals are
	// reset to their defaults in the command.
	signal.Notify(make(chan os.Signal, 1), append(forwarded, syscall.SIGPIPE)...)

	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "baton: %v\n", err)
		return startStatus(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	orphaned := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, lifeline) // returns when baton's end closes
		close(orphaned)
	}()

	select {
	case <-exited:
		return exitStatus(cmd.ProcessState)
	case <-orphaned:
	}
	// baton is gone: its leadership will expire, so the command must stop.
	fmt.Fprintln(os.Stderr, "baton: the baton process died without stopping the command; stopping it")
	_ = syscall.Kill(0, syscall.SIGTERM)
	t := time.NewTimer(*grace)
	select {
	case <-exited:
	case <-t.C:
	}
	_ = syscall.Kill(0, syscall.SIGKILL) // leftovers, and the supervisor itself
	return exitError
}
