package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Topology is the Valkey deployment a run's candidates elect on. Every
// candidate reaches Addr through a proxy of its own; the orchestrator's
// admin client, built from ClientOption, bypasses the proxies. A
// *valkeytest.Server is one.
//
// This is the extension point for other deployments: a Sentinel or Cluster
// topology implements Topology (proxying what candidates need to reach) and
// brings its own Fault kinds (a failover, a resharding), which check in
// Applies that the run's Topology is theirs and act on it in Inject.
type Topology interface {
	Addr() string
	ClientOption() valkey.ClientOption
}

// ServerProcess is a Topology made of one server process that faults can
// kill, pause and restart empty, as *valkeytest.Server can.
type ServerProcess interface {
	Topology
	Kill(tb testing.TB)
	Restart(tb testing.TB)
	Pause(tb testing.TB)
	Resume(tb testing.TB)
}

// A Fault is one kind of fault the orchestrator can inject. A run draws
// Steps from the Faults it is given (Plan), then injects them one at a time,
// each for its Hold, healing it before the next.
type Fault interface {
	// Kind names the fault in flags, schedules and reports.
	Kind() string
	// AllowsOverlap reports whether docs/safety.md allows two terms to act
	// at once under this fault: the holder itself paused, its key deleted,
	// the server's data lost. Under any other fault an overlap fails the run.
	AllowsOverlap() bool
	// Applies reports whether the fault can act on topology.
	Applies(topology Topology) bool
	// Plan draws the fault's parameters from rng: its target, how long it
	// is held, and anything of its own. It must draw the same values for the
	// same rng state, so that a seed replays a schedule.
	Plan(rng *rand.Rand, p Planning) Step
	// Inject starts the fault described by s and returns the function that
	// heals it, which the run calls s.Hold later.
	Inject(e *Env, s Step) (heal func() error, err error)
}

// Planning is what a Fault's Plan may draw its parameters against.
type Planning struct {
	Timing     Timing // the run's election timing, which holds scale with
	Candidates int    // slots a target may name, 0 to Candidates-1
}

// Step is one fault of a schedule, as planned from the seed.
type Step struct {
	Kind   string        // the Fault's Kind
	Target Target        // the candidate it acts on, for faults that act on one
	Gap    time.Duration // quiet time before it, after the previous fault healed and a leader was back
	Hold   time.Duration // how long it lasts before it heals; 0 for one-shot faults
	Delay  time.Duration // delay-proxy's latency per chunk
}

// String describes s in the schedule's notation, e.g.
// "pause-candidate leader|c2 hold=3.1s gap=0.8s".
func (s Step) String() string {
	var b strings.Builder
	b.WriteString(s.Kind)
	if s.Target.Set {
		b.WriteString(" " + s.Target.String())
	}
	if s.Delay > 0 {
		fmt.Fprintf(&b, " delay=%v", s.Delay.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, " hold=%v gap=%v", s.Hold.Round(time.Millisecond), s.Gap.Round(time.Millisecond))
	return b.String()
}

// Target is the candidate a fault acts on: the one that leads when the fault
// starts, or a slot chosen by the seed. Slot is also the fallback when there
// is no leader to find.
type Target struct {
	Set    bool // the fault acts on a candidate
	Leader bool // on the leader when the fault starts, if there is one
	Slot   int  // on this slot, or when there is no leader
}

// String is "leader|c2" or "c2".
func (t Target) String() string {
	if t.Leader {
		return "leader|c" + strconv.Itoa(t.Slot)
	}
	return "c" + strconv.Itoa(t.Slot)
}

// pickTarget targets the leader two times in three: a fault on a standby
// seldom changes anything.
func pickTarget(rng *rand.Rand, p Planning) Target {
	return Target{Set: true, Leader: rng.IntN(3) < 2, Slot: rng.IntN(p.Candidates)}
}

// between draws a duration uniformly from [lo, hi].
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// ttls returns f times the TTL.
func ttls(p Planning, f float64) time.Duration {
	return time.Duration(f * float64(p.Timing.TTL))
}

// fault is a Fault assembled from functions: the standard kinds.
type fault struct {
	kind    string
	overlap bool
	applies func(Topology) bool
	plan    func(*rand.Rand, Planning) Step
	inject  func(*Env, Step) (func() error, error)
}

func (f *fault) Kind() string                                         { return f.kind }
func (f *fault) AllowsOverlap() bool                                  { return f.overlap }
func (f *fault) Plan(rng *rand.Rand, p Planning) Step                 { return f.plan(rng, p) }
func (f *fault) Inject(e *Env, s Step) (heal func() error, err error) { return f.inject(e, s) }
func (f *fault) Applies(t Topology) bool {
	return f.applies == nil || f.applies(t)
}

func isServerProcess(t Topology) bool {
	_, ok := t.(ServerProcess)
	return ok
}

func healed() error { return nil }

// StandardFaults returns the fault kinds of a standalone server, in a fixed
// order (a schedule draws kinds by index):
//
//   - kill-candidate: SIGKILL a candidate, restart it (as a new identity) after the hold
//   - pause-candidate: SIGSTOP a candidate for 1.25-2 TTLs, then SIGCONT (overlap allowed)
//   - pause-server: SIGSTOP the server for 0.25-2 TTLs
//   - cut-proxy: close a candidate's connections and refuse new ones
//   - blackhole-proxy: hold every byte of a candidate's connections, deliver them on heal
//   - delay-proxy: add 5ms to 0.6 RenewDeadline of latency per chunk, both ways
//   - restart-server: SIGKILL the server, start it empty on the same port after the hold (overlap allowed)
//   - del-key: DEL the election key (overlap allowed)
//   - script-flush: SCRIPT FLUSH
//   - client-kill: CLIENT KILL every normal and pubsub connection but the admin's
//   - client-pause-write: CLIENT PAUSE WRITE for 1.25-2 TTLs
func StandardFaults() []Fault {
	return []Fault{
		&fault{
			kind: "kill-candidate",
			plan: func(rng *rand.Rand, p Planning) Step {
				return Step{Target: pickTarget(rng, p), Hold: between(rng, ttls(p, 0.1), ttls(p, 1.5))}
			},
			inject: func(e *Env, s Step) (func() error, error) {
				c := e.candidate(s.Target)
				c.kill()
				return func() error { return c.restart() }, nil
			},
		},
		&fault{
			kind:    "pause-candidate",
			overlap: true,
			plan: func(rng *rand.Rand, p Planning) Step {
				return Step{Target: pickTarget(rng, p), Hold: between(rng, ttls(p, 1.25), ttls(p, 2))}
			},
			inject: func(e *Env, s Step) (func() error, error) {
				c := e.candidate(s.Target)
				if err := c.pause(); err != nil {
					return nil, err
				}
				return c.resume, nil
			},
		},
		&fault{
			kind:    "pause-server",
			applies: isServerProcess,
			plan: func(rng *rand.Rand, p Planning) Step {
				return Step{Hold: between(rng, ttls(p, 0.25), ttls(p, 2))}
			},
			inject: func(e *Env, s Step) (func() error, error) {
				srv := e.Topology.(ServerProcess)
				srv.Pause(e.TB())
				return func() error { srv.Resume(e.TB()); return nil }, nil
			},
		},
		&fault{
			kind: "cut-proxy",
			plan: func(rng *rand.Rand, p Planning) Step {
				return Step{Target: pickTarget(rng, p), Hold: between(rng, ttls(p, 0.25), ttls(p, 2))}
			},
			inject: func(e *Env, s Step) (func() error, error) {
				px := e.candidate(s.Target).slot.proxy
				px.Cut()
				return func() error { px.Restore(); return nil }, nil
			},
		},
		&fault{
			kind: "blackhole-proxy",
			plan: func(rng *rand.Rand, p Planning) Step {
				return Step{Target: pickTarget(rng, p), Hold: between(rng, ttls(p, 0.25), ttls(p, 2))}
			},
			inject: func(e *Env, s Step) (func() error, error) {
				px := e.candidate(s.Target).slot.proxy
				px.Blackhole()
				return func() error { px.Heal(); return nil }, nil
			},
		},
		&fault{
			kind: "delay-proxy",
			plan: func(rng *rand.Rand, p Planning) Step {
				return Step{
					Target: pickTarget(rng, p),
					Hold:   between(rng, ttls(p, 0.5), ttls(p, 2)),
					Delay:  between(rng, 5*time.Millisecond, time.Duration(0.6*float64(p.Timing.RenewDeadline))),
				}
			},
			inject: func(e *Env, s Step) (func() error, error) {
				px := e.candidate(s.Target).slot.proxy
				px.Delay(s.Delay)
				return func() error { px.Heal(); return nil }, nil
			},
		},
		&fault{
			kind:    "restart-server",
			overlap: true,
			applies: isServerProcess,
			plan: func(rng *rand.Rand, p Planning) Step {
				return Step{Hold: between(rng, 0, ttls(p, 1))}
			},
			inject: func(e *Env, s Step) (func() error, error) {
				srv := e.Topology.(ServerProcess)
				srv.Kill(e.TB())
				return func() error { srv.Restart(e.TB()); return nil }, nil
			},
		},
		&fault{
			kind:    "del-key",
			overlap: true,
			plan:    func(*rand.Rand, Planning) Step { return Step{} },
			inject: func(e *Env, s Step) (func() error, error) {
				return healed, e.Admin("DEL", e.Key())
			},
		},
		&fault{
			kind: "script-flush",
			plan: func(*rand.Rand, Planning) Step { return Step{} },
			inject: func(e *Env, s Step) (func() error, error) {
				return healed, e.Admin("SCRIPT", "FLUSH")
			},
		},
		&fault{
			kind: "client-kill",
			plan: func(*rand.Rand, Planning) Step { return Step{} },
			inject: func(e *Env, s Step) (func() error, error) {
				// RESP3 clients with a subscription count as pubsub.
				for _, typ := range []string{"normal", "pubsub"} {
					if err := e.Admin("CLIENT", "KILL", "TYPE", typ, "SKIPME", "yes"); err != nil {
						return nil, err
					}
				}
				return healed, nil
			},
		},
		&fault{
			kind: "client-pause-write",
			plan: func(rng *rand.Rand, p Planning) Step {
				return Step{Hold: between(rng, ttls(p, 1.25), ttls(p, 2))}
			},
			inject: func(e *Env, s Step) (func() error, error) {
				// The server unpauses by itself a little after the hold, in
				// case the orchestrator cannot.
				ms := strconv.FormatInt((s.Hold + e.Timing().TTL).Milliseconds(), 10)
				if err := e.Admin("CLIENT", "PAUSE", ms, "WRITE"); err != nil {
					return nil, err
				}
				return func() error { return e.Admin("CLIENT", "UNPAUSE") }, nil
			},
		},
	}
}

// SelectFaults returns the faults of all whose kinds are listed in list, a
// comma-separated list of kinds; "all" or "" selects every one, and a kind
// prefixed with "-" is left out ("all,-pause-server"). The order of all is
// kept.
func SelectFaults(all []Fault, list string) ([]Fault, error) {
	known := make(map[string]bool, len(all))
	for _, f := range all {
		known[f.Kind()] = true
	}
	want, drop := map[string]bool{}, map[string]bool{}
	every := list == ""
	for w := range strings.SplitSeq(list, ",") {
		w = strings.TrimSpace(w)
		switch {
		case w == "":
		case w == "all":
			every = true
		case strings.HasPrefix(w, "-") && known[w[1:]]:
			drop[w[1:]] = true
		case known[w]:
			want[w] = true
		default:
			kinds := make([]string, 0, len(all))
			for _, f := range all {
				kinds = append(kinds, f.Kind())
			}
			return nil, fmt.Errorf("chaos: unknown fault kind %q (known: %s)", w, strings.Join(kinds, ", "))
		}
	}
	if len(want) == 0 && len(drop) > 0 {
		every = true
	}
	var out []Fault
	for _, f := range all {
		if (every || want[f.Kind()]) && !drop[f.Kind()] {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("chaos: no fault kind selected by %q", list)
	}
	return out, nil
}

// Kinds returns the kinds of faults, in order.
func Kinds(faults []Fault) []string {
	out := make([]string, 0, len(faults))
	for _, f := range faults {
		out = append(out, f.Kind())
	}
	return slices.Clip(out)
}
