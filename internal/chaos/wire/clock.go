package wire

import (
	"time"

	"golang.org/x/sys/unix"
)

// base pairs one reading of this process's time.Now with one of the shared
// clock, so that At can place any time.Time of this process on the shared
// clock through its monotonic reading.
var base = func() (b struct {
	t    time.Time
	mono int64
}) {
	before := Now()
	b.t = time.Now()
	b.mono = before + (Now()-before)/2 // the two clocks are read a few µs apart
	return b
}()

// Now returns the shared clock in nanoseconds: CLOCK_MONOTONIC, one clock
// for every process on the host, which never steps. Go's own monotonic
// readings are relative to each process's start and cannot be compared
// between processes; these can.
func Now() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("wire: clock_gettime(CLOCK_MONOTONIC): " + err.Error()) // cannot fail on a supported platform
	}
	return ts.Nano()
}

// At returns t on the shared clock. t must come from time.Now in this
// process (it needs the monotonic reading).
func At(t time.Time) int64 {
	return base.mono + int64(t.Sub(base.t))
}
