package callbacks

import "os"

// ExitOnLost returns a set whose OnLost ends the process with os.Exit(code),
// for programs that must not outlive their leadership (a singleton job whose
// work cannot be stopped cleanly, for instance). Chain it after the program's
// own set: Chain(mine, ExitOnLost(3)). OnLost runs after OnElected returned,
// so the leader's work has stopped; deferred functions do not run, so flush
// logs and telemetry in an earlier OnLost.
func ExitOnLost(code int) Callbacks {
	return ExitOnLostFunc(code, os.Exit)
}

// ExitOnLostFunc is [ExitOnLost] with the exit function chosen by the caller:
// OnLost calls exit(code). A nil exit means os.Exit. Tests use it to observe
// the exit; programs use it to exit through their own shutdown path.
func ExitOnLostFunc(code int, exit func(code int)) Callbacks {
	if exit == nil {
		exit = os.Exit
	}
	return Callbacks{OnLost: func(Term) { exit(code) }}
}
