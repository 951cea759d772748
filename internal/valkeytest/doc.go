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
// A missing valkey-server binary fails the test rather than skipping it: a
// suite that silently skips its integration tests proves nothing.
package valkeytest
