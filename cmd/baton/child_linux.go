package main

import (
	"syscall"
	"unsafe"
)

// waitWithoutReaping blocks until process pid has exited, leaving it a
// zombie, so that its pid (and process group id) stays reserved until
// cmd.Wait reaps it. os.Process does the same internally.
func waitWithoutReaping(pid int) error {
	const pPID = 1 // P_PID
	var siginfo [128]byte
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&siginfo[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			if errno != 0 {
				return errno
			}
			return nil
		}
	}
}
