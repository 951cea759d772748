//go:build !linux

package valkeytest

import "syscall"

// SysProcAttr asks for nothing special where the parent-death signal does
// not exist.
func SysProcAttr() *syscall.SysProcAttr { return nil }

// AwaitStopped cannot observe the stop without /proc; SIGSTOP is delivered
// promptly in practice.
func AwaitStopped(int, <-chan struct{}) error { return nil }
