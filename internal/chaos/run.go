package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/baton-dev/baton/election"
	"github.com/baton-dev/baton/internal/chaos/wire"
	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/valkey-io/valkey-go"
)

// Mode is how a run's candidates use baton.
type Mode string

const (
	// ModeLibrary runs internal/chaos/cmd/candidate: election.New + Run,
	// writing from OnElected.
	ModeLibrary Mode = "library"
	// ModeCLI runs `baton run -- worker`: the worker writes while it runs.
	ModeCLI Mode = "cli"
)

// electionName is the election every candidate of a run campaigns in; each
// run has its own server.
const electionName = "chaos"

// electionKey is the election's key on the server.
const electionKey = election.DefaultKeyPrefix + electionName

// Defaults of Config.
const (
	DefaultCandidates = 4
	DefaultDuration   = 15 * time.Second
)

// Bounds of a run that are not about the election itself.
const (
	startupBound = 15 * time.Second // the first leader, candidates' start included
	exitBound    = 15 * time.Second // from SIGTERM until every process is gone
	adminTimeout = 5 * time.Second  // one admin command
)

// Config describes one run. Zero fields take the documented defaults;
// Binaries is required.
type Config struct {
	Seed       int64         // draws the schedule (Plan) and the candidates' pauses between writes
	Mode       Mode          // default ModeLibrary
	Candidates int           // default DefaultCandidates
	Duration   time.Duration // planned length of the fault phase; default DefaultDuration
	Faults     []Fault       // the kinds a schedule draws from; default StandardFaults()
	Timing     Timing        // default DefaultTiming()
	Binaries   Binaries      // from Build

	// Topology starts the deployment; default: one valkeytest.Server.
	Topology func(testing.TB) Topology
	// LogDir receives the processes' logs; default tb.TempDir().
	LogDir string
}

func (c Config) withDefaults(tb testing.TB) Config {
	if c.Mode == "" {
		c.Mode = ModeLibrary
	}
	if c.Candidates == 0 {
		c.Candidates = DefaultCandidates
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Faults == nil {
		c.Faults = StandardFaults()
	}
	if c.Timing == (Timing{}) {
		c.Timing = DefaultTiming()
	}
	if c.Topology == nil {
		c.Topology = func(tb testing.TB) Topology { return valkeytest.Start(tb) }
	}
	if c.LogDir == "" {
		c.LogDir = tb.TempDir()
	}
	return c
}

// Replay returns the flags of TestChaos that replay this run's schedule.
func (c Config) Replay() string {
	return fmt.Sprintf("-chaos.seed=%d -chaos.runs=1 -chaos.mode=%s -chaos.candidates=%d -chaos.duration=%v -chaos.faults=%s",
		c.Seed, c.Mode, c.Candidates, c.Duration, strings.Join(Kinds(c.Faults), ","))
}

// Plan draws the schedule of a run from its seed: faults, one at a time,
// until their gaps, holds and an expected recovery of one TTL each add up to
// duration (at least one fault). The same seed and faults always give the
// same schedule.
func Plan(seed int64, faults []Fault, p Planning, duration time.Duration) []Step {
	rng := newRand(seed, 1)
	var steps []Step
	var total time.Duration
	for len(steps) == 0 || total < duration {
		f := faults[rng.IntN(len(faults))]
		s := f.Plan(rng, p)
		s.Kind = f.Kind()
		s.Gap = between(rng, p.Timing.TTL/4, p.Timing.TTL)
		steps = append(steps, s)
		total += s.Gap + s.Hold + p.Timing.TTL
	}
	return steps
}

// StepRecord is what happened to one step of the schedule.
type StepRecord struct {
	Step
	Overlap  bool   // the fault allows overlapping terms
	Acted    string // the identity of the candidate acted on, if any
	Injected int64  // shared clock
	Healed   int64  // shared clock
	LeaderAt int64  // when a leader existed again after the heal; 0 if not within the bound
	Err      error  // the fault could not be injected or healed
}

// run is one run in progress.
type run struct {
	tb    testing.TB
	cfg   Config
	dir   string
	topo  Topology
	admin valkey.Client
	hub   *Hub
	store Store
	slots []*slot
	procs []*proc        // every incarnation, in order of start
	wg    sync.WaitGroup // the waiters of procs

	started, shutdown, ended int64 // shared clock
	firstLeader              int64 // 0 if none within startupBound
	steps                    []StepRecord
	revived                  []revived
	awaiting                 int     // the step whose heal awaitLeader waits after; -1 at the start
	errs                     []error // harness failures, not verdicts
}

// Run carries out one run: it starts the topology, a proxy and a candidate
// per slot, waits for a leader, injects the seed's schedule, stops every
// candidate with SIGTERM and checks what they reported. Failures of the
// harness itself (a process that cannot start) fail tb; the verdicts are in
// the Result for the caller to judge.
func Run(tb testing.TB, cfg Config) *Result {
	tb.Helper()
	cfg = cfg.withDefaults(tb)
	r := &run{tb: tb, cfg: cfg, dir: cfg.LogDir}
	r.topo = cfg.Topology(tb)
	admin, err := valkey.NewClient(r.topo.ClientOption())
	if err != nil {
		tb.Fatalf("chaos: admin client: %v", err)
	}
	tb.Cleanup(admin.Close)
	r.admin = admin
	hub, err := NewHub(&r.store)
	if err != nil {
		tb.Fatal(err)
	}
	r.hub = hub
	tb.Cleanup(r.cleanup)

	// Faults of another topology are left out, before the seed draws.
	r.cfg.Faults = slices.DeleteFunc(slices.Clone(cfg.Faults), func(f Fault) bool { return !f.Applies(r.topo) })
	if len(r.cfg.Faults) == 0 {
		tb.Fatalf("chaos: none of the faults %v applies to the topology", Kinds(cfg.Faults))
	}
	schedule := Plan(cfg.Seed, r.cfg.Faults, Planning{Timing: cfg.Timing, Candidates: cfg.Candidates}, cfg.Duration)
	r.started = wire.Now()
	for i := range cfg.Candidates {
		s := &slot{run: r, index: i, proxy: valkeytest.NewProxy(tb, r.topo.Addr())}
		r.slots = append(r.slots, s)
		if _, err := r.startProc(s); err != nil {
			tb.Fatal(err)
		}
	}
	r.awaiting = -1
	if at, ok := r.awaitLeader(r.started, startupBound); ok {
		r.firstLeader = at
		r.faults(schedule)
	}
	r.stop()
	res := r.result(schedule)
	// The timeline next to the logs, for whoever reads them later.
	if err := os.WriteFile(filepath.Join(r.dir, "run.txt"), []byte(res.Summary()+"\n"+res.Details()+r.events()), 0o644); err != nil {
		tb.Errorf("chaos: %v", err)
	}
	return res
}

// faults injects the schedule, one step at a time.
func (r *run) faults(schedule []Step) {
	env := &Env{Topology: r.topo, tb: r.tb, run: r, timing: r.cfg.Timing, key: electionKey}
	bound := r.cfg.Timing.LeaderBound()
	for _, s := range schedule {
		time.Sleep(s.Gap) // the schedule's quiet time
		f := r.fault(s.Kind)
		rec := StepRecord{Step: s, Overlap: f.AllowsOverlap()}
		env.acted = ""
		rec.Injected = wire.Now()
		heal, err := f.Inject(env, s)
		rec.Acted = env.acted
		if err == nil {
			time.Sleep(s.Hold) // the schedule's fault duration
			err = heal()
		}
		rec.Healed = wire.Now()
		if err != nil {
			rec.Err = err
			r.errs = append(r.errs, fmt.Errorf("step %s: %w", s, err))
		}
		r.awaiting = len(r.steps)
		rec.LeaderAt, _ = r.awaitLeader(rec.Healed, bound)
		r.steps = append(r.steps, rec)
	}
	time.Sleep(r.cfg.Timing.TTL / 2) // let the last leader work a little
}

func (r *run) fault(kind string) Fault {
	for _, f := range r.cfg.Faults {
		if f.Kind() == kind {
			return f
		}
	}
	panic("chaos: a schedule names a fault it was not planned from: " + kind)
}

// awaitLeader waits until a leader exists, from no earlier than from and
// for at most bound after it, and returns when it began to lead (from, if
// it already did). A leader exists when the key on the server names a
// candidate that reports that term as acting. It re-checks on every event
// the hub records, every RetryPeriod in case the admin client failed, and
// just after a stale key should have expired (see leaderNow).
func (r *run) awaitLeader(from int64, bound time.Duration) (int64, bool) {
	deadline := from + int64(bound)
	for {
		changed := r.hub.Changed()
		at, ok, recheck := r.leaderNow()
		if ok {
			return max(at, from), true
		}
		wait := time.Duration(deadline - wire.Now())
		if wait <= 0 {
			return 0, false
		}
		timer := time.NewTimer(min(wait, r.cfg.Timing.RetryPeriod, recheck))
		select {
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// staleMargin is how far past stop + TTL a key must still exist to count as
// revived: the server's expiry has millisecond resolution.
const staleMargin = 20 * time.Millisecond

// leaderNow reports whether a leader exists, and since when it says it
// leads.
//
// When the key names a term whose holder has already stopped, it also checks
// that the key does not outlive the term: every renewal the holder saw
// succeed was applied before it stopped, so the key must be gone TTL after
// the stop. A key still there later was renewed after its holder gave up (a
// renewal queued on a paused server and run on resume, say): the election
// stays leaderless until that TTL runs out. leaderNow records it as a
// revived term, and asks to be called again when such a key should be gone
// (recheck).
func (r *run) leaderNow() (at int64, ok bool, recheck time.Duration) {
	recheck = r.cfg.Timing.RetryPeriod
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	sent := wire.Now()
	l, err := election.LeaderOf(ctx, r.admin, electionName)
	if err != nil || l.None() {
		return 0, false, recheck
	}
	elected, stopped := r.hub.TermState(l.Identity, l.Fence)
	switch {
	case elected == 0:
		return 0, false, recheck // not yet reported
	case stopped == 0:
		return elected, true, recheck
	}
	gone := stopped + int64(r.cfg.Timing.TTL+staleMargin)
	if sent <= gone {
		return 0, false, time.Duration(gone - wire.Now() + 1)
	}
	key := fmt.Sprintf("%s/%d", l.Identity, l.Fence)
	if !slices.ContainsFunc(r.revived, func(rv revived) bool { return rv.key == key }) {
		r.revived = append(r.revived, revived{key: key, identity: l.Identity, fence: l.Fence, stopped: stopped, seen: sent, ttl: l.TTL, step: r.awaiting})
	}
	return 0, false, recheck
}

// revived is a key observed after its term stopped, past stop + TTL.
type revived struct {
	key      string // identity/fence
	identity string
	fence    int64
	stopped  int64         // when the term stopped (shared clock)
	seen     int64         // when the key was read, still there
	ttl      time.Duration // its remaining TTL then
	step     int           // the step after whose heal it was seen; -1 at the start
}

// leaderSlot returns the slot of the candidate whose identity is on the
// key, if any.
func (r *run) leaderSlot() (*slot, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	l, err := election.LeaderOf(ctx, r.admin, electionName)
	if err != nil || l.None() {
		return nil, false
	}
	i, err := strconv.Atoi(strings.TrimPrefix(strings.SplitN(l.Identity, ".", 2)[0], "c"))
	if err != nil || i < 0 || i >= len(r.slots) {
		return nil, false
	}
	return r.slots[i], true
}

// stop sends SIGTERM to every live candidate, waits for them to exit (and,
// in cli mode, for their workers to hang up), then closes the hub.
func (r *run) stop() {
	r.shutdown = wire.Now()
	for _, s := range r.slots {
		if s.cur != nil && s.cur.alive() {
			s.cur.terminate()
		}
	}
	deadline := time.NewTimer(exitBound)
	defer deadline.Stop()
	for _, p := range r.procs {
		select {
		case <-p.done:
		case <-deadline.C:
		}
		if p.alive() {
			p.stuck = true // reported by the clean-exit check
			p.kill()
		}
	}
	r.wg.Wait()
	// Workers of baton run are grandchildren: their connections close when
	// they exit, which baton waited for, but the hub may read the end late.
	grace := time.NewTimer(5 * time.Second)
	defer grace.Stop()
	for waiting := true; waiting; {
		changed := r.hub.Changed()
		if !r.anyPeerOpen() {
			break
		}
		select {
		case <-changed:
		case <-grace.C:
			waiting = false
		}
	}
	r.ended = wire.Now()
	r.hub.Close()
}

// events renders every message the hub received but writes, in the order
// received, on the run's clock: sent (the program's clock), then received.
func (r *run) events() string {
	var b strings.Builder
	b.WriteString("  events (sent, received):\n")
	at := func(t int64) string { return fmt.Sprintf("%8.3fs", float64(t-r.started)/1e9) }
	type line struct {
		recv int64
		text string
	}
	var lines []line
	for _, p := range r.hub.Peers() {
		lines = append(lines, line{p.Opened, fmt.Sprintf("%s %s %s %s pid %d: hello", at(p.Opened), at(p.Opened), p.Identity, p.Role, p.PID)})
		for _, ev := range p.Events {
			lines = append(lines, line{ev.Recv, fmt.Sprintf("%s %s %s %s pid %d: %s", at(ev.T), at(ev.Recv), p.Identity, p.Role, p.PID, ev.Format())})
		}
		if p.Closed != 0 {
			lines = append(lines, line{p.Closed, fmt.Sprintf("%s %s %s %s pid %d: closed", at(p.Closed), at(p.Closed), p.Identity, p.Role, p.PID)})
		}
	}
	slices.SortStableFunc(lines, func(a, b line) int { return cmpInt(a.recv, b.recv) })
	for _, l := range lines {
		b.WriteString("    " + l.text + "\n")
	}
	return b.String()
}

// anyPeerOpen reports whether a program's connection is still open.
func (r *run) anyPeerOpen() bool {
	r.hub.mu.Lock()
	defer r.hub.mu.Unlock()
	for _, p := range r.hub.peers {
		if p.Closed == 0 {
			return true
		}
	}
	return false
}

// cleanup kills whatever a failed run left behind; it is a no-op after stop.
func (r *run) cleanup() {
	for _, p := range r.procs {
		if p.alive() {
			p.kill()
		}
	}
	r.wg.Wait()
	r.hub.Close()
}

// Env is what a Fault acts on during a run. Faults that act on candidates
// (their processes, their proxies) live in this package; a fault of another
// topology needs only Topology, Admin and TB.
type Env struct {
	// Topology is the run's deployment.
	Topology Topology

	tb     testing.TB
	run    *run
	timing Timing
	key    string // the election's key
	acted  string // identity of the candidate the current step acted on
}

// TB returns the run's test, for helpers such as valkeytest's that fail it.
func (e *Env) TB() testing.TB { return e.tb }

// Timing returns the election's timing in this run.
func (e *Env) Timing() Timing { return e.timing }

// Key returns the election's key on the server.
func (e *Env) Key() string { return e.key }

// candidate resolves a target to the current incarnation of its slot: the
// leader's when the target is the leader and there is one, else the slot's.
func (e *Env) candidate(t Target) *proc {
	s := e.run.slots[t.Slot%len(e.run.slots)]
	if t.Leader {
		if ls, ok := e.run.leaderSlot(); ok {
			s = ls
		}
	}
	e.acted = s.cur.identity
	return s.cur
}

// Admin runs one command on the server with the run's admin client, which
// bypasses the proxies, and retries a transport failure twice: valkey-go
// does not retry what it takes for a write, and the admin's connection may
// have been killed or the server restarted since its last command. An error
// reply is returned as is.
func (e *Env) Admin(args ...string) error {
	var err error
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		c := e.run.admin
		err = c.Do(ctx, c.B().Arbitrary(args[0]).Args(args[1:]...).Build()).Error()
		cancel()
		if _, isReply := valkey.IsValkeyErr(err); err == nil || isReply {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("chaos: admin %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// newRand returns a generator for one purpose (stream) of a seed.
func newRand(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream))
}
