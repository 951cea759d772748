//go:build !linux

package chaos

import "syscall"

// sysProcAttr asks for nothing special where the parent-death signal does
// not exist.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// awaitStopped cannot observe the stop without /proc; SIGSTOP is delivered
// promptly in practice.
func awaitStopped(int, <-chan struct{}) error { return nil }
