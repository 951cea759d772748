// Package chaos is baton's seeded, randomized fault suite: several candidate
// processes elect a leader on a real valkey-server, faults drawn from a seed
// hit them one at a time, and eight verdicts judge what the candidates did
// against docs/safety.md. TestChaos drives it: a short campaign in make test,
// a long one in make chaos; docs/safety.md ("Randomized fault suite") is the
// user's guide.
//
// # A run
//
// Run starts the Topology (one valkeytest.Server by default), a Hub with
// its Store, and per slot a valkeytest.Proxy and a candidate process: in
// ModeLibrary internal/chaos/cmd/candidate (election.New + Run), in ModeCLI
// baton run with internal/chaos/cmd/worker as its command. Both are built
// with -race by Build. Each process reaches the server through its own
// proxy, so a fault can hit one candidate, and reports to the hub on one
// connection (package wire): its callbacks, and its writes to the Store,
// which accepts a write only with a fence at least as high as the highest it
// accepted.
//
// Plan draws the schedule from the seed: Steps of the given Faults, each
// with a quiet gap, a hold and a target (the leader, or a slot). Run injects
// them one at a time, heals each after its hold, and waits for a leader
// before the next gap. Then every candidate gets SIGTERM, and the run's
// Result holds the terms, the writes, the overlaps and the Verdicts.
//
// # Clock
//
// Every event carries its process's reading of CLOCK_MONOTONIC (wire.Now),
// one clock for the host; the orchestrator stamps its own (injections, heals,
// the store's decisions) on the same clock. A process paused after an event
// still reports it where it happened.
//
// # Extending
//
// Fault is an interface and StandardFaults the standalone server's kinds. A
// Sentinel or Cluster deployment implements Topology and brings Faults of
// its own (a failover), which check in Applies that the run's Topology is
// theirs; Run leaves out the faults that do not apply.
package chaos
