// Package valkeytest starts real valkey-server processes for tests and
// benchmarks, and puts a TCP proxy in front of them for network faults.
//
// Every server is a separate process on its own free loopback port with
// persistence off and its own temporary directory, so tests may start as many
// as they like and run them in parallel. A server lives as long as the test
// that started it: t.Cleanup resumes it if it was paused, kills it with
// SIGKILL and waits for the process to exit. On Linux the process is also
// killed if the test binary dies without running its cleanups.
//
// The fault helpers act on the process, not on the protocol: Kill simulates a
// crash, Pause (SIGSTOP) simulates a hung server whose TCP connections stay
// open, Restart brings up an empty server on the same address, and a Proxy
// in front of it faults the network while the server stays healthy: Cut
// drops every connection, Blackhole holds every byte (both ways) until Heal
// delivers them, and Delay adds latency to each chunk.
//
// A typical fault test:
//
//	s := valkeytest.Start(t)
//	p := valkeytest.NewProxy(t, s.Addr())
//	c := newClient(t, s.ClientOptionVia(p.Addr())) // valkey.NewClient, closed in t.Cleanup
//	// ... take a lease through c ...
//	p.Cut() // c's connections drop; the server keeps its data
//	n := s.CommandsProcessed(t) // observe the server directly, not through c
//
// What valkey-go v1.0.79 did under these faults when this package was
// written: against a paused server a command waits for its context,
// or fails with "i/o timeout" after about 12s (the client's own keepalive
// PING) when the context has no deadline. After Kill, a write or an arbitrary
// command fails at once with "connection refused", while a read-only command
// is retried with backoff until its context ends, forever without a deadline.
// After Restart, or Restore of a cut Proxy, an old client reconnects within a
// few milliseconds, but a write that was queued on the dead connection can
// fail once with EOF.
//
// # Topologies
//
// StartCluster and StartSentinel build the two replicated deployments, a
// Valkey Cluster and a Sentinel-managed primary with replicas, out of such
// servers, so that failover is tested against Valkey's own machinery,
// not a model of it. Every node is a *Server, and the process-level faults
// above apply to each; the topology adds faults that need the topology:
//
//   - Cluster.Failover: CLUSTER FAILOVER on a replica, a planned switchover.
//     The old primary holds writes until the replica has caught up, so no
//     write is lost and a client sees at most a redirect.
//   - Cluster.KillPrimary, SentinelGroup.KillPrimary: SIGKILL of the primary,
//     a crash; the topology detects it and promotes a replica. Writes the
//     replica had not received are lost.
//   - SentinelGroup.Failover: SENTINEL FAILOVER, which promotes a replica
//     without stopping the old primary first: the old primary keeps taking
//     writes, all lost, until its clients hear of the switch and until
//     Sentinel demotes it.
//   - Cluster.RestartNode, SentinelGroup.RestartNode: an empty restart
//     that rejoins the topology, a killed primary coming back as a replica.
//   - PauseReplication: CLIENT PAUSE WRITE on a replica, which then stops
//     applying its primary's stream while every health check still passes:
//     a lagging replica. A failover to it loses what it held back.
//
// Each helper returns once the topology has settled, by polling the nodes
// until they agree (see Cluster and SentinelGroup for what each checks),
// never by sleeping for an expected duration. A poll starts 5 ms after the
// last and the pause doubles up to 50 ms; a wait fails the test only after
// 60 s, so the helpers are slow only when Valkey is, and a loaded machine
// makes them slower, not flaky.
//
// The timing constants, all shorter than Valkey's defaults so that a test
// takes seconds:
//
//	cluster-node-timeout                 1000 ms  a silent cluster node is suspected after this
//	Sentinel down-after-milliseconds     2000 ms  a silent primary is down for a sentinel after this
//	Sentinel failover-timeout            3000 ms  a failover is abandoned, and retried after twice this
//	Sentinel quorum, parallel-syncs      2, 1
//	repl-diskless-sync-delay             0        a replica's full sync starts at once, not after 5 s
//
// Sentinel's own timers are left at their defaults: a sentinel sends a hello
// every 2 s (how sentinels learn of each other and of a new primary), INFO
// to each replica every 10 s (1 s during a failover), and demotes a former
// primary once it has claimed the role for 8 s.
//
// Measured with these constants on a shared 2-core machine under -race,
// idle and beside two CPU-bound processes, which changed nothing beyond
// noise:
//
//	StartCluster ready                        2.1-2.3 s
//	Cluster.Failover                          0.15-0.7 s  the client saw no error and lost no write
//	Cluster.KillPrimary                       2.0-2.8 s
//	  the client's writes fail until          +1.6-2.5 s, and succeed again at +2.2-3.4 s
//	  its writes to other primaries fail      for about 1 s before the promotion, with CLUSTERDOWN
//	Cluster.RestartNode                       0.1-0.6 s
//	StartSentinel ready                       2.1-2.4 s
//	SentinelGroup.Failover                    2.2-2.7 s   until all three sentinels agree
//	  the old primary is demoted              9-10 s later
//	  the client writes to the old primary    until about +2 s; some 400 writes, one per 5 ms, lost
//	SentinelGroup.KillPrimary                 5.2-5.5 s
//	  the client's writes fail until          +3.3-4.4 s
//
// What valkey-go v1.0.79 does in these topologies: a cluster client follows
// MOVED by itself even with DisableRetry, so a manual failover is invisible
// to it. After a crash it returns "connection refused" until its slot map
// is refreshed, then ErrNoSlot ("the slot has no valkey node") while the
// cluster has no primary for the slot; it refreshes only after a random
// delay of up to a second, so its first write can come a few hundred
// milliseconds after the promotion. Writes to the crashed primary's slots
// never got CLUSTERDOWN, but writes to the other primaries' slots did, for
// about a second, from the moment the cluster flags the crashed node as
// failed until the promotion: with cluster-require-full-coverage yes (the
// default) a slot without a primary takes the whole cluster down. A sentinel
// client switches on the +switch-master of the sentinel it subscribed to,
// which can come up to 2 s before all sentinels agree; until then it writes
// to the old primary without error. A cluster client also leaves
// goroutines behind for up to 5 s; see LeakOptions.
//
// A missing valkey-server or valkey-sentinel binary fails the test rather
// than skipping it: a suite that silently skips its integration tests proves
// nothing.
package valkeytest
