package main

import "syscall"

// sysProcAttr makes the kernel kill the server if this program dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
