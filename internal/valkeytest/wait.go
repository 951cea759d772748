package valkeytest

import (
	"testing"
	"time"
)

const (
	// topologyTimeout bounds every wait for a Cluster or a SentinelGroup to
	// reach a state: start-up, a failover, a rejoin. It is generous because
	// the waits poll and return as soon as the state is reached; only a
	// topology that never gets there takes this long, on a loaded machine.
	topologyTimeout = 60 * time.Second

	firstPoll = 5 * time.Millisecond  // the first pause between two polls
	maxPoll   = 50 * time.Millisecond // the pause between polls doubles up to this
)

// waitFor calls cond until it returns nil and fails tb if that has not
// happened within timeout. cond's error says what is still missing; the last
// one is quoted in the failure. There is no event to wait for in another
// process, so polling is the mechanism; the pause between polls starts short
// and doubles, so a fast transition is seen fast and a slow one costs little.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	pause := firstPoll
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("valkeytest: %s: not done after %v: %v", what, timeout, err)
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPoll)
	}
}
