package valkeytest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// SysProcAttr has the kernel kill a child process (valkey-server, or a
// chaos candidate) when the test binary dies without running its cleanups
// (a test timeout, a crash), so no child outlives its test. Strictly the
// signal follows the death of the OS thread that started the child; Go
// retires threads only after a goroutine exits while locked to one with
// runtime.LockOSThread.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// AwaitStopped returns once the process's state in /proc is "stopped":
// SIGSTOP is delivered asynchronously, and a command sent in between would
// still be answered. exited closes when the process has exited.
func AwaitStopped(pid int, exited <-chan struct{}) error {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		stat, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read process state: %w", err)
		}
		// The state follows the command name, which is in parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'T' {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d not stopped after 5s", pid)
		}
		select {
		case <-exited:
			return fmt.Errorf("process %d exited", pid)
		case <-tick.C:
		}
	}
}
