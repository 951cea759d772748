package valkeytest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

const (
	// clusterNodeTimeout is every node's cluster-node-timeout: a node that
	// does not answer its peers for this long is suspected (PFAIL), and once a
	// majority of primaries suspect a primary its replica starts an election
	// some 500-1000 ms later. A killed primary is so replaced in two to three
	// seconds. Shorter would risk failovers nobody asked for when a loaded
	// machine starves a node; longer only makes KillPrimary slower.
	clusterNodeTimeout = 1000 * time.Millisecond

	clusterShards = 3     // primaries, each with one replica
	clusterSlots  = 16384 // hash slots, split evenly between the primaries
)

// Cluster is a Valkey Cluster of three primaries, each with one replica, for
// tests. Every node is a Server started by Start with cluster mode on, so
// Addr, Do, Info, Kill, Pause and Resume work on each; Server.Restart
// restarts a node without waiting for it to rejoin, RestartNode waits.
//
// A Cluster is safe for concurrent use. Its methods that wait, wait until the
// cluster has settled: every running node reports cluster_state:ok, all of
// them agree on which primary serves each slot and which node replicates
// which, and every running replica's link to its primary is up. Killed and
// paused (SIGSTOP) nodes are left out of that check.
type Cluster struct {
	nodes []*Server // primaries in slot order, then their replicas in the same order; fixed
	ids   []string  // the nodes' cluster IDs, in the same order; nodes.conf keeps them across Restart
}

// clusterBus has Start pick a second free port for the cluster bus.
func clusterBus() Option {
	return func(c *config) { c.clusterBus = true }
}

// StartCluster starts six cluster-mode valkey-servers (three primaries, each
// with one replica), assigns the slots evenly, joins them into one cluster
// and waits until it has settled, typically two or three seconds. The opts
// apply to every node; WithArgs can override the cluster's own arguments:
//
//	--cluster-node-timeout 1000          a node silent for 1 s is suspected of having failed
//	--cluster-replica-no-failover no     a replica of a failed primary takes over
//	--cluster-allow-reads-when-down no   the default: a cluster that is down refuses reads too
//	--cluster-require-full-coverage yes  the default: a slot without a primary takes the cluster down
//	--repl-diskless-sync-delay 0         a replica's full sync starts at once, not after 5 s
//
// Each node has its own directory with its nodes.conf, persistence off, and
// dies with the test, like any Server.
func StartCluster(tb testing.TB, opts ...Option) *Cluster {
	tb.Helper()
	nodeOpts := append([]Option{
		clusterBus(),
		WithArgs(
			"--cluster-enabled", "yes",
			"--cluster-node-timeout", strconv.FormatInt(clusterNodeTimeout.Milliseconds(), 10),
			"--cluster-replica-no-failover", "no",
			"--cluster-allow-reads-when-down", "no",
			"--cluster-require-full-coverage", "yes",
			"--repl-diskless-sync-delay", "0",
		),
	}, opts...)
	c := new(Cluster)
	for range 2 * clusterShards {
		c.nodes = append(c.nodes, Start(tb, nodeOpts...))
	}
	c.create(tb)
	c.awaitSettled(tb, "cluster start-up")
	return c
}

// create does what valkey-cli --cluster create does, without its one-second
// sleeps: slots to the primaries, distinct config epochs, a handshake between
// every pair of nodes, and each replica to its primary.
func (c *Cluster) create(tb testing.TB) {
	tb.Helper()
	for i, n := range c.nodes {
		c.ids = append(c.ids, n.String(tb, "CLUSTER", "MYID"))
		// Distinct epochs from the start spare the cluster resolving
		// collisions one by one. Allowed only before the node meets others.
		expectOK(tb, n, "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1))
	}
	for i, n := range c.nodes[:clusterShards] {
		first, last := i*clusterSlots/clusterShards, (i+1)*clusterSlots/clusterShards-1
		expectOK(tb, n, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(first), strconv.Itoa(last))
	}
	// Every pair meets directly, so no node waits for gossip to hear of the
	// others.
	for i, a := range c.nodes {
		for _, b := range c.nodes[i+1:] {
			expectOK(tb, a, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(b.port), strconv.Itoa(b.busPort))
		}
	}
	// CLUSTER REPLICATE needs the primary known, handshake finished.
	waitFor(tb, topologyTimeout, "cluster nodes meet", func() error {
		for _, n := range c.nodes {
			v, err := readClusterView(n)
			if err != nil {
				return err
			}
			if len(v.nodes) != len(c.nodes) {
				return fmt.Errorf("%s knows %d nodes; want %d", n.Addr(), len(v.nodes), len(c.nodes))
			}
		}
		return nil
	})
	for i, n := range c.nodes[clusterShards:] {
		expectOK(tb, n, "CLUSTER", "REPLICATE", c.ids[i])
	}
}

// Nodes returns every node: the three primaries it started with, in slot
// order, then their replicas in the same order. Failovers change the roles
// but not this order.
func (c *Cluster) Nodes() []*Server {
	return slices.Clone(c.nodes)
}

// Addrs returns every node's address, as seeds for a cluster client.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// ClientOption returns the options for a valkey-go cluster client: every node
// as a seed, DisableCache and DisableRetry for the reasons given at
// Server.ClientOption. valkey-go follows MOVED and ASK even without retries,
// but returns CLUSTERDOWN and transport errors to the caller, so a fault test
// sees every error a failover causes.
func (c *Cluster) ClientOption() valkey.ClientOption {
	return valkey.ClientOption{InitAddress: c.Addrs(), DisableCache: true, DisableRetry: true}
}

// Client returns a new cluster client built from ClientOption and closes it
// in tb.Cleanup.
func (c *Cluster) Client(tb testing.TB) valkey.Client {
	tb.Helper()
	client, err := valkey.NewClient(c.ClientOption())
	if err != nil {
		tb.Fatalf("valkeytest: new cluster client: %v", err)
	}
	tb.Cleanup(client.Close)
	return client
}

// PrimaryFor returns the primary that serves key's slot, once the running
// nodes agree on it. While a killed primary has not yet been replaced, that
// is the killed node.
func (c *Cluster) PrimaryFor(tb testing.TB, key string) *Server {
	tb.Helper()
	slot := c.keySlot(tb, key)
	var primary *Server
	waitFor(tb, topologyTimeout, "nodes agree on the primary for "+strconv.Quote(key), func() error {
		v, err := c.agreedView()
		if err != nil {
			return err
		}
		id := v.owner(slot)
		if id == "" {
			return fmt.Errorf("slot %d has no primary", slot)
		}
		primary = c.node(id)
		return nil
	})
	return primary
}

// ReplicasOf returns the nodes that the running nodes agree replicate
// primary, in Nodes order; a killed replica is still listed.
func (c *Cluster) ReplicasOf(tb testing.TB, primary *Server) []*Server {
	tb.Helper()
	id := c.id(tb, primary)
	var replicas []*Server
	waitFor(tb, topologyTimeout, "nodes agree on the replicas of "+primary.Addr(), func() error {
		v, err := c.agreedView()
		if err != nil {
			return err
		}
		replicas = c.replicas(v, id)
		return nil
	})
	return replicas
}

// Failover makes a replica of key's primary take over with CLUSTER FAILOVER,
// a manual failover: the primary stops taking writes, the replica catches
// up, is elected, and the old primary becomes its replica; no write is lost.
// Failover waits until the cluster has settled with the replica serving key
// and returns it, the new primary. It takes well under a second on an idle
// machine.
//
// The replica must be able to catch up: one held back by PauseReplication
// never does, and Valkey abandons the failover after 5 s.
func (c *Cluster) Failover(tb testing.TB, key string) *Server {
	tb.Helper()
	slot := c.keySlot(tb, key)
	v := c.awaitSettled(tb, "cluster settled before failover")
	old := v.owner(slot)
	var replica *Server
	for _, r := range c.replicas(v, old) {
		if r.running() {
			replica = r
			break
		}
	}
	if replica == nil {
		tb.Fatalf("valkeytest: failover of slot %d: primary %s has no running replica", slot, c.node(old).Addr())
	}
	expectOK(tb, replica, "CLUSTER", "FAILOVER")
	c.awaitOwner(tb, slot, func(id string) bool { return id == c.id(tb, replica) },
		fmt.Sprintf("replica %s takes over slot %d", replica.Addr(), slot))
	return replica
}

// KillPrimary kills key's primary with SIGKILL, as a crash, and waits until
// the cluster has detected it, promoted its replica and settled, which takes
// two or three seconds on an idle machine (see clusterNodeTimeout in doc.go).
// It returns the new primary. Writes the replica had not received are lost,
// as in production; the killed node stays down until RestartNode.
func (c *Cluster) KillPrimary(tb testing.TB, key string) *Server {
	tb.Helper()
	slot := c.keySlot(tb, key)
	v := c.awaitSettled(tb, "cluster settled before killing a primary")
	old := c.node(v.owner(slot))
	old.Kill(tb)
	oldID := c.id(tb, old)
	c.awaitOwner(tb, slot, func(id string) bool { return id != oldID },
		fmt.Sprintf("a replica of killed %s takes over slot %d", old.Addr(), slot))
	return c.PrimaryFor(tb, key)
}

// RestartNode restarts node, empty, on its port and with its nodes.conf, and
// waits until it has rejoined and the cluster has settled. A former primary
// whose slots were taken over comes back as a replica of the node that took
// them, and syncs from it.
func (c *Cluster) RestartNode(tb testing.TB, node *Server) {
	tb.Helper()
	c.id(tb, node) // fails for a node of another cluster
	node.Restart(tb)
	c.awaitSettled(tb, node.Addr()+" rejoins the cluster")
}

// PauseReplication holds replica back with CLIENT PAUSE WRITE on it: it
// stops applying what its primary sends, while its link, its cluster bus
// and its answers to reads stay healthy, so nothing flags it. It simulates a
// replica that lags; a failover to it loses the writes it has not applied.
// The pause lasts until ResumeReplication.
func (c *Cluster) PauseReplication(tb testing.TB, replica *Server) {
	tb.Helper()
	pauseReplication(tb, replica)
}

// ResumeReplication lifts PauseReplication; the replica applies what it held
// back at once.
func (c *Cluster) ResumeReplication(tb testing.TB, replica *Server) {
	tb.Helper()
	resumeReplication(tb, replica)
}

// awaitSettled waits until the cluster has settled and returns the view the
// nodes agree on.
func (c *Cluster) awaitSettled(tb testing.TB, what string) clusterView {
	tb.Helper()
	var v clusterView
	waitFor(tb, topologyTimeout, what, func() (err error) {
		v, err = c.settled()
		return err
	})
	return v
}

// awaitOwner waits until the cluster has settled with slot served by a node
// whose ID satisfies ok.
func (c *Cluster) awaitOwner(tb testing.TB, slot int, ok func(id string) bool, what string) {
	tb.Helper()
	waitFor(tb, topologyTimeout, what, func() error {
		v, err := c.settled()
		if err != nil {
			return err
		}
		if id := v.owner(slot); !ok(id) {
			return fmt.Errorf("slot %d still served by %s", slot, c.node(id).Addr())
		}
		return nil
	})
}

// settled returns the running nodes' common view if every one of them
// reports cluster_state:ok, the view covers every slot, and every running
// replica's link to its primary is up; otherwise it says what is missing.
func (c *Cluster) settled() (clusterView, error) {
	v, err := c.agreedView()
	if err != nil {
		return clusterView{}, err
	}
	if n := v.slotsCovered(); n != clusterSlots {
		return clusterView{}, fmt.Errorf("%d of %d slots have a primary", n, clusterSlots)
	}
	for i, n := range c.nodes {
		if !n.running() {
			continue
		}
		info, err := n.try("CLUSTER", "INFO").ToString()
		if err != nil {
			return clusterView{}, fmt.Errorf("CLUSTER INFO on %s: %w", n.Addr(), err)
		}
		if state := parseInfo(info)["cluster_state"]; state != "ok" {
			return clusterView{}, fmt.Errorf("%s: cluster_state:%s", n.Addr(), state)
		}
		if v.nodes[c.ids[i]].primary != "" {
			if _, err := linkUp(n); err != nil {
				return clusterView{}, err
			}
		}
	}
	return v, nil
}

// agreedView reads CLUSTER NODES from every running node and returns the
// view they share, or an error naming two that differ.
func (c *Cluster) agreedView() (clusterView, error) {
	var (
		agreed clusterView
		from   *Server
	)
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		v, err := readClusterView(n)
		if err != nil {
			return clusterView{}, err
		}
		if from == nil {
			agreed, from = v, n
			continue
		}
		if v.key != agreed.key {
			return clusterView{}, fmt.Errorf("%s and %s disagree:\n%s\n--- and ---\n%s",
				from.Addr(), n.Addr(), agreed.key, v.key)
		}
	}
	if from == nil {
		return clusterView{}, errors.New("no node is running")
	}
	return agreed, nil
}

// keySlot asks a running node for key's hash slot.
func (c *Cluster) keySlot(tb testing.TB, key string) int {
	tb.Helper()
	for _, n := range c.nodes {
		if n.running() {
			return int(n.Int(tb, "CLUSTER", "KEYSLOT", key))
		}
	}
	tb.Fatal("valkeytest: no cluster node is running")
	return 0
}

// replicas returns the nodes that replicate the node with ID primary in v,
// in Nodes order.
func (c *Cluster) replicas(v clusterView, primary string) []*Server {
	var rs []*Server
	for i, id := range c.ids {
		if v.nodes[id].primary == primary {
			rs = append(rs, c.nodes[i])
		}
	}
	return rs
}

// node returns the node with the given ID, nil if there is none.
func (c *Cluster) node(id string) *Server {
	if i := slices.Index(c.ids, id); i >= 0 {
		return c.nodes[i]
	}
	return nil
}

// id returns node's cluster ID and fails tb if node is not one of c's.
func (c *Cluster) id(tb testing.TB, node *Server) string {
	tb.Helper()
	i := slices.Index(c.nodes, node)
	if i < 0 {
		tb.Fatalf("valkeytest: %s is not a node of this cluster", node.Addr())
	}
	return c.ids[i]
}

// clusterView is one node's CLUSTER NODES reduced to what all nodes must
// agree on: roles, who replicates whom, and slots. Flags such as fail and
// myself, link states and epochs are left out: they legitimately differ.
type clusterView struct {
	nodes map[string]viewNode // by node ID
	key   string              // a canonical text of nodes, for comparing views
}

type viewNode struct {
	primary string   // the ID of the primary this node replicates, "" for a primary
	slots   []string // the slot ranges it serves, as CLUSTER NODES lists them ("0-5460", "7")
}

// readClusterView reads node's CLUSTER NODES. A node still in the handshake
// makes it fail: its ID is not known yet.
func readClusterView(node *Server) (clusterView, error) {
	text, err := node.try("CLUSTER", "NODES").ToString()
	if err != nil {
		return clusterView{}, fmt.Errorf("CLUSTER NODES on %s: %w", node.Addr(), err)
	}
	v := clusterView{nodes: make(map[string]viewNode)}
	var lines []string
	for line := range strings.Lines(trimVerbatim(text)) {
		// <id> <ip:port@cport> <flags> <primary> <ping-sent> <pong-recv> <epoch> <link> <slot>...
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		if strings.Contains(f[2], "handshake") {
			return clusterView{}, fmt.Errorf("%s: handshake with %s under way", node.Addr(), f[1])
		}
		var n viewNode
		if f[3] != "-" {
			n.primary = f[3]
		}
		for _, s := range f[8:] {
			if !strings.HasPrefix(s, "[") { // not a slot being migrated
				n.slots = append(n.slots, s)
			}
		}
		v.nodes[f[0]] = n
		lines = append(lines, fmt.Sprintf("%s replicates %q serves %v", f[0], n.primary, n.slots))
	}
	slices.Sort(lines)
	v.key = strings.Join(lines, "\n")
	return v, nil
}

// owner returns the ID of the primary serving slot, "" if none.
func (v clusterView) owner(slot int) string {
	for id, n := range v.nodes {
		for _, r := range n.slots {
			if first, last := slotRange(r); first <= slot && slot <= last {
				return id
			}
		}
	}
	return ""
}

// slotsCovered returns how many slots have a primary.
func (v clusterView) slotsCovered() int {
	total := 0
	for _, n := range v.nodes {
		for _, r := range n.slots {
			first, last := slotRange(r)
			total += last - first + 1
		}
	}
	return total
}

// slotRange parses "first-last" or a single slot; a malformed range is empty.
func slotRange(s string) (first, last int) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		b = a
	}
	first, err1 := strconv.Atoi(a)
	last, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		return 0, -1
	}
	return first, last
}
