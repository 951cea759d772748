package valkeytest

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

const (
	sentinelBinary = "valkey-sentinel"

	// missingSentinel is the whole fatal message when valkey-sentinel is not
	// installed.
	missingSentinel = "valkey-sentinel not found on PATH: run scripts/ensure-valkey.sh " +
		"(Debian: apt-get install -t bookworm-backports valkey-sentinel)"

	// masterSet is the name under which the sentinels monitor the primary.
	masterSet = "baton"

	sentinels      = 3
	groupReplicas  = 2 // replicas of the primary in a SentinelGroup
	sentinelQuorum = 2 // sentinels that must see the primary down before a failover

	// sentinelDownAfter is down-after-milliseconds: a primary that has not
	// answered a sentinel's PING for this long is subjectively down. With
	// the quorum's agreement and a leader elected among the sentinels, a
	// killed primary is replaced in five to six seconds.
	//
	// 1000 ms was tried and is too short on a loaded machine: a sentinel
	// that learns of a new primary from a hello message must connect to it
	// and have a PING answered within down-after, but it retries a
	// connection only once a second. It then marks the new primary down,
	// and the "down" answers its peers gave about the old primary in the
	// last 5 s still count towards the quorum, so it elected itself and
	// failed over from the healthy new primary at once, discarding what
	// had been written to it.
	sentinelDownAfter = 2000 * time.Millisecond

	// sentinelFailoverTimeout is failover-timeout: how long a failover may
	// take to promote a replica and repoint the others before it is given
	// up, and half of how long the sentinels wait before trying again after
	// a failed attempt or a split vote.
	sentinelFailoverTimeout = 3000 * time.Millisecond
)

// SentinelGroup is a primary with two replicas watched by three Valkey
// Sentinels, for tests. Every data node and every sentinel is a Server
// started by Start, so Addr, Do, Info, Kill, Pause and Resume work on each.
//
// A SentinelGroup is safe for concurrent use. Its methods that wait, wait
// until the group has settled: every running sentinel names the same
// primary, with no failover under way, knows the other two sentinels and
// lists every running data node but the primary as a healthy replica, and
// every such replica reports its link to the primary up. Killed and paused
// (SIGSTOP) processes are left out of that check.
type SentinelGroup struct {
	data      []*Server // the first primary, then its two replicas; fixed
	sentinels []*Server // fixed
}

// sentinelMode has Start run valkey-sentinel from a config file with conf in
// it.
func sentinelMode(conf string) Option {
	return func(c *config) {
		c.bin, c.missing, c.conf = sentinelBinary, missingSentinel, conf
	}
}

// StartSentinel starts a primary, two replicas (--replicaof) and three
// valkey-sentinels monitoring the primary under the master set name "baton"
// with quorum 2, and waits until the group has settled, typically in two to
// three seconds, the time the sentinels take to hear of each other. The opts
// apply to the data nodes, not to the sentinels. Each sentinel's config
// file, which Sentinel rewrites, is in its own directory:
//
//	sentinel monitor baton 127.0.0.1 <port> 2
//	sentinel down-after-milliseconds baton 2000
//	sentinel failover-timeout baton 3000
//	sentinel parallel-syncs baton 1
//	sentinel announce-ip 127.0.0.1
//
// The data nodes run with --repl-diskless-sync-delay 0, so a replica's full
// sync starts at once rather than after 5 s. Every process dies with the
// test, like any Server.
func StartSentinel(tb testing.TB, opts ...Option) *SentinelGroup {
	tb.Helper()
	// Before any server starts, so that a missing binary fails fast.
	if _, err := exec.LookPath(sentinelBinary); err != nil {
		tb.Fatal(missingSentinel)
	}
	dataArgs := []string{"--repl-diskless-sync-delay", "0"}
	g := new(SentinelGroup)
	primary := Start(tb, append([]Option{WithArgs(dataArgs...)}, opts...)...)
	g.data = append(g.data, primary)
	replicaOf := WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(primary.Port()))
	for range groupReplicas {
		g.data = append(g.data, Start(tb, append([]Option{WithArgs(dataArgs...), replicaOf}, opts...)...))
	}
	conf := fmt.Sprintf(`sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d
sentinel down-after-milliseconds %[1]s %[4]d
sentinel failover-timeout %[1]s %[5]d
sentinel parallel-syncs %[1]s 1
sentinel announce-ip 127.0.0.1
sentinel resolve-hostnames no
`, masterSet, primary.Port(), sentinelQuorum, sentinelDownAfter.Milliseconds(), sentinelFailoverTimeout.Milliseconds())
	for range sentinels {
		g.sentinels = append(g.sentinels, Start(tb, sentinelMode(conf)))
	}
	g.awaitSettled(tb, "sentinel group start-up")
	return g
}

// Nodes returns the data nodes: the primary it started with, then its two
// replicas. Failovers change the roles but not this order.
func (g *SentinelGroup) Nodes() []*Server {
	return slices.Clone(g.data)
}

// Sentinels returns the three sentinel processes.
func (g *SentinelGroup) Sentinels() []*Server {
	return slices.Clone(g.sentinels)
}

// SentinelAddrs returns the sentinels' addresses, as seeds for a client.
func (g *SentinelGroup) SentinelAddrs() []string {
	addrs := make([]string, len(g.sentinels))
	for i, s := range g.sentinels {
		addrs[i] = s.Addr()
	}
	return addrs
}

// MasterSet returns the name under which the sentinels monitor the primary,
// "baton".
func (g *SentinelGroup) MasterSet() string {
	return masterSet
}

// ClientOption returns the options for a valkey-go client that finds the
// primary through the sentinels: the sentinels as InitAddress, the master
// set, DisableCache and DisableRetry for the reasons given at
// Server.ClientOption. SentinelOption.TopologyRefreshInterval is left at
// zero, valkey-go's default: such a client moves to a new primary only when
// the sentinel it subscribed to publishes +switch-master, at the end of a
// failover. Until then it keeps writing to the old primary, which after
// SENTINEL FAILOVER still accepts the writes, and loses them when it is
// demoted.
func (g *SentinelGroup) ClientOption() valkey.ClientOption {
	return valkey.ClientOption{
		InitAddress:  g.SentinelAddrs(),
		Sentinel:     valkey.SentinelOption{MasterSet: masterSet},
		DisableCache: true,
		DisableRetry: true,
	}
}

// Client returns a new client built from ClientOption and closes it in
// tb.Cleanup.
func (g *SentinelGroup) Client(tb testing.TB) valkey.Client {
	tb.Helper()
	c, err := valkey.NewClient(g.ClientOption())
	if err != nil {
		tb.Fatalf("valkeytest: new sentinel client: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Primary returns the data node the running sentinels agree is the primary
// (SENTINEL GET-MASTER-ADDR-BY-NAME). While a killed primary has not yet
// been replaced, that is the killed node.
func (g *SentinelGroup) Primary(tb testing.TB) *Server {
	tb.Helper()
	var primary *Server
	waitFor(tb, topologyTimeout, "sentinels agree on the primary", func() (err error) {
		primary, err = g.agreedPrimary()
		return err
	})
	return primary
}

// Replicas returns the data nodes a running sentinel lists as replicas of
// the primary with no flag but "slave" (not down, not disconnected), in
// Nodes order. A killed primary is listed, flagged, once replaced.
func (g *SentinelGroup) Replicas(tb testing.TB) []*Server {
	tb.Helper()
	for _, s := range g.sentinels {
		if !s.running() {
			continue
		}
		listed, err := sentinelReplicas(s)
		if err != nil {
			tb.Fatalf("valkeytest: %v", err)
		}
		var replicas []*Server
		for _, n := range g.data {
			if listed[n.Addr()] == "slave" {
				replicas = append(replicas, n)
			}
		}
		return replicas
	}
	tb.Fatal("valkeytest: no sentinel is running")
	return nil
}

// Failover asks a sentinel for a failover with SENTINEL FAILOVER, which
// needs no agreement: the sentinel promotes the best replica, repoints the
// other replica to it and announces the new primary with +switch-master,
// which the other sentinels learn from its next hello message (every 2 s).
// Failover waits until every sentinel names the new primary and the group
// has settled but for the old primary, and returns the new primary; it takes
// two to three seconds.
//
// The old primary is then still a primary and takes writes: Sentinel demotes
// it to a replica, discarding them, only once it has seen it claim the
// primary role for 8 s (four hello periods), 9-10 s after Failover returns.
// AwaitSettled waits for that. A
// client that writes to the old primary until it hears +switch-master loses
// those writes too: Sentinel, unlike a Cluster manual failover, does not stop
// writes on the old primary first.
func (g *SentinelGroup) Failover(tb testing.TB) *Server {
	tb.Helper()
	old := g.awaitSettled(tb, "sentinel group settled before failover")
	s := g.runningSentinel(tb)
	expectOK(tb, s, "SENTINEL", "FAILOVER", masterSet)
	return g.awaitNewPrimary(tb, old, "sentinels promote a replica of "+old.Addr())
}

// KillPrimary kills the primary with SIGKILL, as a crash, and waits until
// the sentinels have agreed it is down, elected a leader, promoted a
// replica and settled, five to six seconds on an idle machine. It returns
// the new primary. Writes the promoted replica had not received are lost;
// the killed node stays down until RestartNode.
func (g *SentinelGroup) KillPrimary(tb testing.TB) *Server {
	tb.Helper()
	old := g.awaitSettled(tb, "sentinel group settled before killing the primary")
	old.Kill(tb)
	return g.awaitNewPrimary(tb, old, "sentinels replace killed "+old.Addr())
}

// RestartNode restarts node, a data node that was killed (KillPrimary, or
// Server.Kill), empty, as a replica of the current primary, and waits until
// the group has settled. The replica role is on its command line from the
// start: restarted from its own arguments, a former primary would come back
// as an empty primary, and clients that were connected to it (valkey-go
// reconnects to the address it had) would write to it until Sentinel
// converts it into a replica.
func (g *SentinelGroup) RestartNode(tb testing.TB, node *Server) {
	tb.Helper()
	if !slices.Contains(g.data, node) {
		tb.Fatalf("valkeytest: %s is not a data node of this group", node.Addr())
	}
	primary := g.Primary(tb)
	if primary == node {
		tb.Fatalf("valkeytest: restart %s: the sentinels name it the primary", node.Addr())
	}
	node.restart(tb, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port()))
	g.awaitSettled(tb, node.Addr()+" rejoins as a replica")
}

// PauseReplication holds replica back with CLIENT PAUSE WRITE on it: it
// stops applying what the primary sends, while its link and its answers to
// reads and to the sentinels stay healthy, so nothing flags it. It simulates
// a replica that lags; a failover to it loses the writes it has not applied.
// Sentinel prefers the replica with the larger offset, but judges by the
// INFO it last read, which can be 10 s old. The pause lasts until
// ResumeReplication.
func (g *SentinelGroup) PauseReplication(tb testing.TB, replica *Server) {
	tb.Helper()
	pauseReplication(tb, replica)
}

// ResumeReplication lifts PauseReplication; the replica applies what it held
// back at once.
func (g *SentinelGroup) ResumeReplication(tb testing.TB, replica *Server) {
	tb.Helper()
	resumeReplication(tb, replica)
}

// AwaitSettled waits until the group has settled (see SentinelGroup) and
// returns the primary. After Failover that includes the demotion of the old
// primary, 9-10 s later.
func (g *SentinelGroup) AwaitSettled(tb testing.TB) *Server {
	tb.Helper()
	return g.awaitSettled(tb, "sentinel group settles")
}

func (g *SentinelGroup) awaitSettled(tb testing.TB, what string) *Server {
	tb.Helper()
	var primary *Server
	waitFor(tb, topologyTimeout, what, func() (err error) {
		primary, err = g.settled(nil)
		return err
	})
	return primary
}

// awaitNewPrimary waits until the group has settled with a primary other
// than old, leaving old out of the check, and returns the new primary.
func (g *SentinelGroup) awaitNewPrimary(tb testing.TB, old *Server, what string) *Server {
	tb.Helper()
	var primary *Server
	waitFor(tb, topologyTimeout, what, func() (err error) {
		if primary, err = g.settled(old); err == nil && primary == old {
			err = fmt.Errorf("sentinels still name %s", old.Addr())
		}
		return err
	})
	return primary
}

// settled returns the primary if the group has settled (see SentinelGroup),
// leaving the node ignore (if not nil) out of the check of the replicas, and
// otherwise says what is missing.
func (g *SentinelGroup) settled(ignore *Server) (*Server, error) {
	primary, err := g.agreedPrimary()
	if err != nil {
		return nil, err
	}
	if !primary.running() {
		return nil, fmt.Errorf("the sentinels name %s, which is down", primary.Addr())
	}
	info, err := replicationInfo(primary)
	if err != nil {
		return nil, err
	}
	if info["role"] != "master" {
		return nil, fmt.Errorf("the sentinels name %s, whose role is %s", primary.Addr(), info["role"])
	}
	for _, s := range g.sentinels {
		if !s.running() {
			continue
		}
		m, err := s.try("SENTINEL", "MASTER", masterSet).AsStrMap()
		if err != nil {
			return nil, fmt.Errorf("SENTINEL MASTER on %s: %w", s.Addr(), err)
		}
		if m["flags"] != "master" {
			return nil, fmt.Errorf("sentinel %s: primary flags %q", s.Addr(), m["flags"])
		}
		if others := strconv.Itoa(len(g.sentinels) - 1); m["num-other-sentinels"] != others {
			return nil, fmt.Errorf("sentinel %s knows %s other sentinels; want %s",
				s.Addr(), m["num-other-sentinels"], others)
		}
		listed, err := sentinelReplicas(s)
		if err != nil {
			return nil, err
		}
		for _, n := range g.data {
			if n == primary || n == ignore || !n.running() {
				continue
			}
			if flags := listed[n.Addr()]; flags != "slave" {
				return nil, fmt.Errorf("sentinel %s: replica %s flags %q", s.Addr(), n.Addr(), flags)
			}
		}
	}
	for _, n := range g.data {
		if n == primary || n == ignore || !n.running() {
			continue
		}
		info, err := linkUp(n)
		if err != nil {
			return nil, err
		}
		if got := net.JoinHostPort(info["master_host"], info["master_port"]); got != primary.Addr() {
			return nil, fmt.Errorf("%s replicates %s; want %s", n.Addr(), got, primary.Addr())
		}
	}
	return primary, nil
}

// agreedPrimary returns the data node every running sentinel names as the
// primary.
func (g *SentinelGroup) agreedPrimary() (*Server, error) {
	var addr string
	for _, s := range g.sentinels {
		if !s.running() {
			continue
		}
		hp, err := s.try("SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterSet).AsStrSlice()
		if err != nil || len(hp) != 2 {
			return nil, fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME on %s = %v, %v", s.Addr(), hp, err)
		}
		a := net.JoinHostPort(hp[0], hp[1])
		if addr != "" && a != addr {
			return nil, fmt.Errorf("sentinels disagree on the primary: %s and %s", addr, a)
		}
		addr = a
	}
	if addr == "" {
		return nil, errors.New("no sentinel is running")
	}
	for _, n := range g.data {
		if n.Addr() == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("the sentinels name %s, which is not a data node of this group", addr)
}

// runningSentinel returns a sentinel that is up.
func (g *SentinelGroup) runningSentinel(tb testing.TB) *Server {
	tb.Helper()
	for _, s := range g.sentinels {
		if s.running() {
			return s
		}
	}
	tb.Fatal("valkeytest: no sentinel is running")
	return nil
}

// sentinelReplicas returns the flags of each replica a sentinel lists, by
// address.
func sentinelReplicas(s *Server) (map[string]string, error) {
	replies, err := s.try("SENTINEL", "REPLICAS", masterSet).ToArray()
	if err != nil {
		return nil, fmt.Errorf("SENTINEL REPLICAS on %s: %w", s.Addr(), err)
	}
	flags := make(map[string]string)
	for _, r := range replies {
		m, err := r.AsStrMap()
		if err != nil {
			return nil, fmt.Errorf("SENTINEL REPLICAS on %s: %w", s.Addr(), err)
		}
		flags[net.JoinHostPort(m["ip"], m["port"])] = m["flags"]
	}
	return flags, nil
}
