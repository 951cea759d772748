package valkeytest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestClusterFailover(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := StartCluster(t)
	t.Logf("cluster ready in %v", time.Since(start).Round(time.Millisecond))
	checkClusterShape(t, c)
	client := c.Client(t)
	keys := setKeys(t, client, "k")
	checkSpread(t, c, len(keys))
	checkKeys(t, client, keys)

	const key = "moving"
	old := c.PrimaryFor(t, key)
	w := startWriter(t, client, key)
	start = time.Now()
	primary := c.Failover(t, key)
	took := time.Since(start)
	firstWrite := w.awaitWrite(t)
	t.Logf("manual failover took %v, first client write %v later; meanwhile the client: %s",
		took.Round(time.Millisecond), firstWrite.Round(time.Millisecond), w.stop())
	if lost := w.lost(t, client); lost != 0 {
		t.Errorf("%d acknowledged writes lost in a manual failover; want 0", lost)
	}
	if primary == old {
		t.Fatalf("Failover returned the old primary %s", old.Addr())
	}
	if got := c.PrimaryFor(t, key); got != primary {
		t.Errorf("PrimaryFor(%q) after Failover = %s; want %s", key, got.Addr(), primary.Addr())
	}
	if got := c.ReplicasOf(t, primary); !slices.Equal(got, []*Server{old}) {
		t.Errorf("ReplicasOf(new primary) = %v; want the old primary %s", addrs(got), old.Addr())
	}
	checkKeys(t, client, keys) // a manual failover loses nothing
	checkKeys(t, client, setKeys(t, client, "after"))

	checkHeldBack(t, primary, old, key, c.PauseReplication, c.ResumeReplication)
}

func TestClusterKillPrimary(t *testing.T) {
	t.Parallel()
	c := StartCluster(t)
	client := c.Client(t)
	keys := setKeys(t, client, "k")
	for _, n := range c.Nodes()[:clusterShards] {
		// So that no key can be lost with the primary.
		if got := n.Int(t, "WAIT", "1", "10000"); got != 1 {
			t.Fatalf("WAIT 1 on primary %s = %d replicas; want 1", n.Addr(), got)
		}
	}

	const key = "crash"
	old := c.PrimaryFor(t, key)
	replicas := c.ReplicasOf(t, old)
	elsewhere := ""
	for i := 0; elsewhere == ""; i++ {
		if k := "elsewhere:" + strconv.Itoa(i); c.PrimaryFor(t, k) != old {
			elsewhere = k
		}
	}
	w := startWriter(t, client, key)
	wElsewhere := startWriter(t, client, elsewhere)
	start := time.Now()
	primary := c.KillPrimary(t, key)
	took := time.Since(start)
	firstWrite := w.awaitWrite(t)
	t.Logf("kill -9 of the primary: replica promoted in %v, first client write %v later; meanwhile the client: %s",
		took.Round(time.Millisecond), firstWrite.Round(time.Millisecond), w.stop())
	t.Logf("acknowledged writes lost: %d", w.lost(t, client))
	// A slot without a primary takes the whole cluster down for a moment
	// (cluster-require-full-coverage yes).
	t.Logf("writes to a key of another primary meanwhile: %s", wElsewhere.stop())
	if !slices.Equal(replicas, []*Server{primary}) {
		t.Errorf("KillPrimary promoted %s; want the replica %v", primary.Addr(), addrs(replicas))
	}
	checkKeys(t, client, keys)

	start = time.Now()
	c.RestartNode(t, old)
	t.Logf("the killed primary rejoined as a replica in %v", time.Since(start).Round(time.Millisecond))
	if got := c.ReplicasOf(t, primary); !slices.Equal(got, []*Server{old}) {
		t.Errorf("ReplicasOf(new primary) after RestartNode = %v; want %s", addrs(got), old.Addr())
	}
	if got, want := old.Int(t, "DBSIZE"), primary.Int(t, "DBSIZE"); got != want {
		t.Errorf("DBSIZE on the rejoined replica = %d; want its primary's %d", got, want)
	}
}

// TestClusterPauseReplication shows what PauseReplication simulates: a write
// acknowledged by the primary but not applied by its lagging replica is lost
// when the replica takes over.
func TestClusterPauseReplication(t *testing.T) {
	t.Parallel()
	c := StartCluster(t)
	client := c.Client(t)
	const key = "lagging"
	primary := c.PrimaryFor(t, key)
	replica := c.ReplicasOf(t, primary)[0]
	set := func(v string) {
		t.Helper()
		if err := client.Do(t.Context(), client.B().Set().Key(key).Value(v).Build()).Error(); err != nil {
			t.Fatalf("SET %s %s: %v", key, v, err)
		}
	}
	set("replicated")
	if got := primary.Int(t, "WAIT", "1", "10000"); got != 1 {
		t.Fatalf("WAIT 1 = %d replicas; want 1", got)
	}

	c.PauseReplication(t, replica)
	set("lost")
	waitFor(t, 10*time.Second, "the paused replica reads the write", func() error {
		if read, applied := replicationOffsets(t, replica); read <= applied {
			return fmt.Errorf("read offset %d, applied %d", read, applied)
		}
		return nil
	})
	if got := c.KillPrimary(t, key); got != replica {
		t.Fatalf("KillPrimary promoted %s; want the paused replica %s", got.Addr(), replica.Addr())
	}
	c.ResumeReplication(t, replica) // it still refuses writes until then

	var got string
	waitFor(t, topologyTimeout, "a client read of "+key, func() (err error) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		got, err = client.Do(ctx, client.B().Get().Key(key).Build()).ToString()
		return err
	})
	if got != "replicated" {
		t.Errorf("GET %s after failing over to the paused replica = %q; want %q (the later write lost)",
			key, got, "replicated")
	}
}

// checkClusterShape checks that the cluster has three primaries with one
// replica each and that every node says so.
func checkClusterShape(t *testing.T, c *Cluster) {
	t.Helper()
	if n := len(c.Nodes()); n != 2*clusterShards {
		t.Fatalf("len(Nodes()) = %d; want %d", n, 2*clusterShards)
	}
	primaries := 0
	for _, n := range c.Nodes() {
		info := parseInfo(n.String(t, "CLUSTER", "INFO"))
		if info["cluster_state"] != "ok" || info["cluster_known_nodes"] != "6" || info["cluster_size"] != "3" {
			t.Errorf("CLUSTER INFO on %s: state %s, %s nodes, size %s; want ok, 6, 3",
				n.Addr(), info["cluster_state"], info["cluster_known_nodes"], info["cluster_size"])
		}
		if n.Info(t, "replication")["role"] != "master" {
			continue
		}
		primaries++
		if rs := c.ReplicasOf(t, n); len(rs) != 1 || rs[0].Info(t, "replication")["role"] != "slave" {
			t.Errorf("ReplicasOf(%s) = %v; want one replica", n.Addr(), addrs(rs))
		}
	}
	if primaries != clusterShards {
		t.Errorf("%d nodes are primaries; want %d", primaries, clusterShards)
	}
}

// checkSpread checks that n keys written through a cluster client landed on
// every primary and nowhere else.
func checkSpread(t *testing.T, c *Cluster, n int) {
	t.Helper()
	var total int64
	for _, p := range c.Nodes()[:clusterShards] {
		size := p.Int(t, "DBSIZE")
		if size == 0 {
			t.Errorf("primary %s has no keys", p.Addr())
		}
		total += size
	}
	if total != int64(n) {
		t.Errorf("the primaries hold %d keys; want %d", total, n)
	}
}

func addrs(nodes []*Server) []string {
	var as []string
	for _, n := range nodes {
		as = append(as, n.Addr())
	}
	return as
}
