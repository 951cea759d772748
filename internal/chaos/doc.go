// Package chaos is baton's seeded, randomized fault suite: it elects a
// leader among several candidate processes on a real valkey-server, injects
// faults one at a time on a schedule drawn from a seed, and checks what the
// candidates report against the guarantees of docs/safety.md.
//
// It is driven by TestChaos (see docs/safety.md, "Randomized fault suite").
package chaos
