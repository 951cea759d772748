//go:build !unix

package lock

import "time"

// processCPU returns 0 where getrusage is missing: the cli-µs/op metric then
// reads 0.
func processCPU() time.Duration { return 0 }
