package valkeytest

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	start := time.Now()
	g := StartSentinel(t)
	t.Logf("sentinel group ready in %v", time.Since(start).Round(time.Millisecond))
	checkSentinelShape(t, g)
	client := g.Client(t)
	keys := setKeys(t, client, "k")
	checkKeys(t, client, keys)
	old := g.Primary(t)
	// Sentinel does not stop writes before it promotes, so only what both
	// replicas have is certain to survive.
	if got := old.Int(t, "WAIT", "2", "10000"); got != 2 {
		t.Fatalf("WAIT 2 = %d replicas; want 2", got)
	}

	const key = "moving"
	w := startWriter(t, client, key)
	start = time.Now()
	primary := g.Failover(t)
	took := time.Since(start)
	firstWrite := w.awaitWrite(t)
	t.Logf("SENTINEL FAILOVER: all sentinels named the new primary after %v, first client write %v later; meanwhile the client: %s",
		took.Round(time.Millisecond), firstWrite.Round(time.Millisecond), w.stop())
	t.Logf("of the client's %d writes, %d are on the new primary, %d on the old one",
		len(w.acked), countKeys(t, primary, w.acked), countKeys(t, old, w.acked))
	if primary == old {
		t.Fatalf("Failover returned the old primary %s", old.Addr())
	}
	if got := g.Primary(t); got != primary {
		t.Errorf("Primary() after Failover = %s; want %s", got.Addr(), primary.Addr())
	}
	start = time.Now()
	if got := g.AwaitSettled(t); got != primary {
		t.Fatalf("AwaitSettled() = %s; want %s", got.Addr(), primary.Addr())
	}
	t.Logf("the sentinels demoted the old primary %v after Failover returned", time.Since(start).Round(time.Millisecond))
	t.Logf("acknowledged writes lost: %d", w.lost(t, client))
	var others []*Server
	for _, n := range g.Nodes() {
		if n != primary {
			others = append(others, n)
		}
	}
	replicas := g.Replicas(t)
	if !slices.Equal(replicas, others) {
		t.Errorf("Replicas() after Failover = %v; want %v", addrs(replicas), addrs(others))
	}
	checkKeys(t, client, keys)
	checkKeys(t, client, setKeys(t, client, "after"))

	checkHeldBack(t, primary, old, key, g.PauseReplication, g.ResumeReplication)
}

func TestSentinelKillPrimary(t *testing.T) {
	t.Parallel()
	g := StartSentinel(t)
	client := g.Client(t)
	keys := setKeys(t, client, "k")
	old := g.Primary(t)
	if got := old.Int(t, "WAIT", "2", "10000"); got != 2 {
		t.Fatalf("WAIT 2 = %d replicas; want 2", got)
	}

	const key = "crash"
	w := startWriter(t, client, key)
	start := time.Now()
	primary := g.KillPrimary(t)
	took := time.Since(start)
	firstWrite := w.awaitWrite(t)
	t.Logf("kill -9 of the primary: all sentinels named the new primary after %v, first client write %v later; meanwhile the client: %s",
		took.Round(time.Millisecond), firstWrite.Round(time.Millisecond), w.stop())
	t.Logf("acknowledged writes lost: %d", w.lost(t, client))
	if primary == old {
		t.Fatalf("KillPrimary returned the killed primary %s", old.Addr())
	}
	// The killed node is listed as a replica, but down.
	var survivor []*Server
	for _, n := range g.Nodes()[1:] {
		if n != primary {
			survivor = append(survivor, n)
		}
	}
	if got := g.Replicas(t); !slices.Equal(got, survivor) {
		t.Errorf("Replicas() after KillPrimary = %v; want %v", addrs(got), addrs(survivor))
	}
	checkKeys(t, client, keys)

	g.RestartNode(t, old)
	if got := g.Replicas(t); len(got) != 2 || !slices.Contains(got, old) {
		t.Errorf("Replicas() after RestartNode = %v; want both non-primary nodes", addrs(got))
	}
	if info := old.Info(t, "replication"); info["role"] != "slave" || info["master_port"] != strconv.Itoa(primary.Port()) {
		t.Errorf("restarted %s: role %s of port %s; want a replica of %s", old.Addr(), info["role"], info["master_port"], primary.Addr())
	}
	if n := countKeys(t, old, keys); n != len(keys) {
		t.Errorf("restarted replica has %d of %d keys; want all, synced from the primary", n, len(keys))
	}
}

// countKeys returns how many of keys exist on node.
func countKeys(t *testing.T, node *Server, keys []string) int {
	t.Helper()
	n := 0
	for chunk := range slices.Chunk(keys, 500) {
		n += int(node.Int(t, append([]string{"EXISTS"}, chunk...)...))
	}
	return n
}

func TestStartSentinelWithoutBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	msg := fatalMessage(t, func(tb testing.TB) { StartSentinel(tb) })
	if msg != missingSentinel {
		t.Errorf("StartSentinel without valkey-sentinel failed with %q; want %q", msg, missingSentinel)
	}
}

// checkSentinelShape checks that the group has the primary it started with,
// two replicas, and three sentinels that know each other by 127.0.0.1
// addresses.
func checkSentinelShape(t *testing.T, g *SentinelGroup) {
	t.Helper()
	nodes := g.Nodes()
	if got := g.Primary(t); got != nodes[0] {
		t.Errorf("Primary() = %s; want the first node %s", got.Addr(), nodes[0].Addr())
	}
	if got := g.Replicas(t); !slices.Equal(got, nodes[1:]) {
		t.Errorf("Replicas() = %v; want %v", addrs(got), addrs(nodes[1:]))
	}
	if got := g.MasterSet(); got != "baton" {
		t.Errorf("MasterSet() = %q; want %q", got, "baton")
	}
	if got := g.ClientOption().InitAddress; !slices.Equal(got, g.SentinelAddrs()) || len(got) != sentinels {
		t.Errorf("ClientOption().InitAddress = %v; want the %d SentinelAddrs %v", got, sentinels, g.SentinelAddrs())
	}
	for _, s := range g.Sentinels() {
		peers, err := s.Do(t, "SENTINEL", "SENTINELS", g.MasterSet()).ToArray()
		if err != nil || len(peers) != sentinels-1 {
			t.Fatalf("SENTINEL SENTINELS on %s = %d peers, %v; want %d", s.Addr(), len(peers), err, sentinels-1)
		}
		for _, p := range peers {
			m, err := p.AsStrMap()
			if err != nil || m["ip"] != "127.0.0.1" || !slices.Contains(g.SentinelAddrs(), "127.0.0.1:"+m["port"]) {
				t.Errorf("sentinel %s knows a peer at %s:%s (%v); want one of %v",
					s.Addr(), m["ip"], m["port"], err, g.SentinelAddrs())
			}
		}
	}
}
