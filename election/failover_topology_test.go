package election

import (
	"fmt"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/valkey-io/valkey-go"
)

// failoverTopology is a replicated deployment that the failover campaign
// runs against: the shard of a Valkey Cluster that serves the elections'
// keys, or a Sentinel group. Its methods fail the test when the topology
// does not get where it should within valkeytest's bounds.
type failoverTopology interface {
	// name is how the report calls it.
	name() string
	// clientOption builds each candidate's own client.
	clientOption() valkey.ClientOption
	// nodes returns every data node, whatever its role.
	nodes() []*valkeytest.Server
	// settle waits until the topology is whole (every node running is a
	// primary or a linked replica) and returns the primary of the keys.
	settle(t *testing.T) *valkeytest.Server
	// promotable returns the replicas of primary that a failover can
	// promote: Replicas = len(promotable) is full acknowledgement.
	promotable(t *testing.T, primary *valkeytest.Server) []*valkeytest.Server
	// kinds returns the failovers this topology has: a planned one and a
	// crash of the primary (after which the killed node rejoins as a
	// replica).
	kinds() []failoverKind
	// awaitPromotion waits, after old was killed by the test, until another
	// node serves the keys, and returns it.
	awaitPromotion(t *testing.T, old *valkeytest.Server) *valkeytest.Server
	// rejoin brings a killed node back as a replica of primary and waits
	// until the topology is whole again.
	rejoin(t *testing.T, old, primary *valkeytest.Server)
	// pauseReplication and resumeReplication hold a replica back
	// (valkeytest's PauseReplication) and let it go.
	pauseReplication(t *testing.T, replica *valkeytest.Server)
	resumeReplication(t *testing.T, replica *valkeytest.Server)
}

// failoverKind is one way to lose the primary. run makes it happen to old,
// the current primary, and returns the new primary and when it took over;
// by the time run returns, the topology is whole again.
type failoverKind struct {
	name string
	run  func(t *testing.T, old *valkeytest.Server) (primary *valkeytest.Server, promoted time.Time)
}

// clusterShard is the shard of a valkeytest.Cluster that serves key.
type clusterShard struct {
	c   *valkeytest.Cluster
	key string
}

func (s clusterShard) name() string                      { return "Cluster" }
func (s clusterShard) clientOption() valkey.ClientOption { return s.c.ClientOption() }
func (s clusterShard) nodes() []*valkeytest.Server       { return s.c.Nodes() }

func (s clusterShard) settle(t *testing.T) *valkeytest.Server {
	t.Helper()
	return s.c.PrimaryFor(t, s.key)
}

func (s clusterShard) promotable(t *testing.T, primary *valkeytest.Server) []*valkeytest.Server {
	t.Helper()
	return s.c.ReplicasOf(t, primary)
}

func (s clusterShard) kinds() []failoverKind {
	return []failoverKind{
		{name: "CLUSTER FAILOVER", run: func(t *testing.T, _ *valkeytest.Server) (*valkeytest.Server, time.Time) {
			p := s.c.Failover(t, s.key)
			return p, time.Now()
		}},
		{name: "kill -9 of the primary", run: func(t *testing.T, old *valkeytest.Server) (*valkeytest.Server, time.Time) {
			p := s.c.KillPrimary(t, s.key)
			promoted := time.Now()
			s.c.RestartNode(t, old) // back as a replica of p
			return p, promoted
		}},
	}
}

func (s clusterShard) awaitPromotion(t *testing.T, old *valkeytest.Server) *valkeytest.Server {
	t.Helper()
	var p *valkeytest.Server
	poll(t, "a replica of "+old.Addr()+" takes over", func() error {
		if p = s.c.PrimaryFor(t, s.key); p == old {
			return fmt.Errorf("%s still serves %s", old.Addr(), s.key)
		}
		return nil
	})
	return p
}

func (s clusterShard) rejoin(t *testing.T, old, _ *valkeytest.Server) {
	t.Helper()
	s.c.RestartNode(t, old)
}

func (s clusterShard) pauseReplication(t *testing.T, r *valkeytest.Server) {
	t.Helper()
	s.c.PauseReplication(t, r)
}

func (s clusterShard) resumeReplication(t *testing.T, r *valkeytest.Server) {
	t.Helper()
	s.c.ResumeReplication(t, r)
}

// sentinelGroup is a valkeytest.SentinelGroup.
type sentinelGroup struct {
	g *valkeytest.SentinelGroup
}

func (s sentinelGroup) name() string                      { return "Sentinel" }
func (s sentinelGroup) clientOption() valkey.ClientOption { return s.g.ClientOption() }
func (s sentinelGroup) nodes() []*valkeytest.Server       { return s.g.Nodes() }

func (s sentinelGroup) settle(t *testing.T) *valkeytest.Server {
	t.Helper()
	return s.g.AwaitSettled(t)
}

func (s sentinelGroup) promotable(t *testing.T, _ *valkeytest.Server) []*valkeytest.Server {
	t.Helper()
	return s.g.Replicas(t)
}

func (s sentinelGroup) kinds() []failoverKind {
	return []failoverKind{
		{name: "SENTINEL FAILOVER", run: func(t *testing.T, _ *valkeytest.Server) (*valkeytest.Server, time.Time) {
			p := s.g.Failover(t)
			promoted := time.Now()
			// The old primary goes on taking writes until Sentinel demotes
			// it, 9-10 s later: the failover is over only then.
			s.g.AwaitSettled(t)
			return p, promoted
		}},
		{name: "kill -9 of the primary", run: func(t *testing.T, old *valkeytest.Server) (*valkeytest.Server, time.Time) {
			p := s.g.KillPrimary(t)
			promoted := time.Now()
			s.rejoin(t, old, p)
			return p, promoted
		}},
	}
}

func (s sentinelGroup) awaitPromotion(t *testing.T, old *valkeytest.Server) *valkeytest.Server {
	t.Helper()
	var p *valkeytest.Server
	poll(t, "the sentinels replace "+old.Addr(), func() error {
		if p = s.g.Primary(t); p == old {
			return fmt.Errorf("the sentinels still name %s", old.Addr())
		}
		return nil
	})
	return p
}

// rejoin restarts old, empty, as a replica from the start: restarted as a
// primary, it would take the writes of clients that still had its address
// until Sentinel converted it, a fault of its own.
func (s sentinelGroup) rejoin(t *testing.T, old, _ *valkeytest.Server) {
	t.Helper()
	s.g.RestartNode(t, old)
}

func (s sentinelGroup) pauseReplication(t *testing.T, r *valkeytest.Server) {
	t.Helper()
	s.g.PauseReplication(t, r)
}

func (s sentinelGroup) resumeReplication(t *testing.T, r *valkeytest.Server) {
	t.Helper()
	s.g.ResumeReplication(t, r)
}

// pollTimeout bounds poll: far longer than any failover takes, so reaching
// it means the state never came, not that the machine was slow.
const pollTimeout = 3 * time.Minute

// poll calls cond until it returns nil, pausing 5 ms and then doubling up to
// 50 ms between calls, and fails the test after pollTimeout. The state it
// waits for is in other processes, so there is no event to wait on.
func poll(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(pollTimeout)
	pause := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after %v: %v", what, pollTimeout, err)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}
