//go:build !linux

package main

import (
	"syscall"
	"time"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// cpuTime is unknown here: -1.
func cpuTime() time.Duration { return -1 }
