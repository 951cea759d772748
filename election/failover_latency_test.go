package election

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/baton-dev/baton/lock"
)

// latencies are round trips of a lock's acquisitions and renewals.
type latencies struct {
	acquire, renew []time.Duration
}

// measureAcknowledgement times rounds of TryAcquire (an acquisition) and
// Reacquire (what a renewal sends) on two locks of the topology, one
// without and one with full replica acknowledgement, alternating so that
// both see the same load. The locks' keys share the elections' slot.
func measureAcknowledgement(t *testing.T, top failoverTopology, rounds int) [2]latencies {
	t.Helper()
	full := len(top.promotable(t, top.settle(t)))
	var locks [2]*lock.Lock
	for i, replicas := range []int{0, full} {
		l, err := lock.New(topologyClient(t, top), "{failover}.latency."+strconv.Itoa(replicas), lock.Config{TTL: failoverTTL, Replicas: replicas})
		if err != nil {
			t.Fatal(err)
		}
		locks[i] = l
	}
	ctx := t.Context()
	// A new client learns the topology on its first calls, and a replica
	// may still be syncing: wait until both locks work.
	for _, l := range locks {
		poll(t, "a first acquisition of "+l.Key(), func() error {
			h, err := l.TryAcquire(ctx)
			if err != nil {
				return err
			}
			return h.Release(ctx)
		})
	}
	var out [2]latencies
	failed := 0
	for range rounds {
		for i, l := range locks {
			start := time.Now()
			h, err := l.TryAcquire(ctx)
			acquired := time.Since(start)
			if err != nil {
				failed++
				continue
			}
			start = time.Now()
			err = h.Reacquire(ctx)
			renewed := time.Since(start)
			if rerr := h.Release(ctx); rerr != nil && !errors.Is(rerr, lock.ErrNotReplicated) {
				failed++
			}
			if err != nil {
				failed++
				continue
			}
			out[i].acquire = append(out[i].acquire, acquired)
			out[i].renew = append(out[i].renew, renewed)
		}
	}
	if failed > rounds/10 {
		t.Errorf("%d of %d timed calls failed on a settled %s", failed, 2*rounds, top.name())
	}
	return out
}
