package election

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
)

var (
	failoverCount = flag.Int("failover.count", 2,
		"TestFailover: failovers of each kind, and held-back runs, per topology (make failover: 20)")
	failoverTable = flag.String("failover.table", "",
		"TestFailover: also write the figures, as markdown tables, to this file")
)

// TestFailover runs failovers back to back on a real Valkey Cluster and a
// real Sentinel group while two elections campaign on each, three
// candidates apiece: one election without replica acknowledgement, one
// with Replicas set to every replica a failover can promote. Each topology
// goes through -failover.count failovers of each of its kinds (a planned
// one, CLUSTER FAILOVER or SENTINEL FAILOVER; a kill -9 of the primary,
// which then rejoins as a replica) and as many runs of the held-back
// variant (every replica held back while the leadership is acquired again,
// then kill -9 of the primary).
//
// Leaders resign after a random hold, so acquisitions keep coming when a
// failover strikes. Each term writes to a fenced resource while its ctx
// lives; MONITOR on every data node records which server applied which
// term's grant (grantLog), so a term lost by a failover is one whose grant
// the promoted node never had.
//
// The assertions are the targets of full acknowledgement: no overlapping
// terms, no lost term, no fence that is not above an earlier one, no term
// begun while nothing replicates. Without acknowledgement the figures are
// only reported (t.Log, and -failover.table), apart from a check that the
// held-back runs' terms are found lost, which shows that the loss detector
// works. With or without, no term's token may be one no server ever set at
// the key: that is a lock bug, not replication. For every
// election, every term must have left a trace in the servers' feeds, or the
// record is incomplete. Counts and invariants only: nothing is timed
// against a bound. BATON_FAILOVER_TRACE=1 keeps every MONITOR line on the
// elections' keys and prints those around each term that no server set.
func TestFailover(t *testing.T) {
	t.Parallel()
	var report failoverReport
	t.Run("topology", func(t *testing.T) {
		t.Run("Cluster", func(t *testing.T) {
			t.Parallel()
			c := valkeytest.StartCluster(t)
			report.add(runFailovers(t, clusterShard{c: c, key: DefaultKeyPrefix + "{failover}.0"}, *failoverCount))
		})
		t.Run("Sentinel", func(t *testing.T) {
			t.Parallel()
			g := valkeytest.StartSentinel(t)
			report.add(runFailovers(t, sentinelGroup{g: g}, *failoverCount))
		})
	})
	// The figures are written even when a target was missed: they are what
	// to look at then.
	table := report.markdown()
	t.Log("\n" + table)
	if *failoverTable != "" {
		if err := os.WriteFile(*failoverTable, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// runFailovers runs one topology's campaign, checks it and returns its
// figures.
func runFailovers(t *testing.T, top failoverTopology, count int) *topologyReport {
	if count < 1 {
		t.Fatalf("-failover.count=%d; want at least 1", count)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (the leaders' hold times)", seed)
	latency := measureAcknowledgement(t, top, min(max(50*count, 100), 500))
	r := newRig(t, top, seed)
	r.awaitElections(time.Time{})
	for _, kind := range top.kinds() {
		for range count {
			r.failover(kind)
		}
	}
	for range count {
		r.heldBack()
	}
	r.finish()
	rep := r.analyse()
	rep.latency = latency
	rep.full = r.ballots[1].replicas
	rep.logWindows(t)
	rep.check(t)
	return rep
}
