package chaos

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// sysProcAttr has the kernel kill a candidate when the orchestrator dies
// without cleaning up (a test timeout, a crash). baton run's command then
// stops too: its supervisor watches baton.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// awaitStopped returns once the process's state in /proc is "stopped":
// SIGSTOP is delivered asynchronously.
func awaitStopped(pid int, exited <-chan struct{}) error {
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
