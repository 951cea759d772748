// Command candidate is one candidate of the chaos suite's library mode: an
// election.Elector whose OnElected writes to the orchestrator's fenced store
// with its term's fence until its ctx ends, and which reports every callback
// to the orchestrator's hub (package wire).
//
// SIGTERM or SIGINT end Run; the candidate then closes its client, looks for
// goroutines left behind (goleak, against the ones that existed before the
// client was made), reports the count and exits: 0 when clean, 3 when
// goroutines leaked, 4 when the hub could not be reached, 2 for bad flags.
//
// The orchestrator builds it with -race and runs it; it is not meant to be
// run by hand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/election"
	"github.com/baton-dev/baton/internal/chaos/wire"
	"github.com/valkey-io/valkey-go"
	"go.uber.org/goleak"
)

func main() {
	os.Exit(run())
}

type config struct {
	hub, addr, name, identity string
	ttl, renewDeadline, retry time.Duration
	writeMin, writeMax        time.Duration
	seed                      uint64
}

func run() int {
	var cfg config
	flag.StringVar(&cfg.hub, "hub", "", "address of the orchestrator's hub")
	flag.StringVar(&cfg.addr, "addr", "", "address of valkey (this candidate's proxy)")
	flag.StringVar(&cfg.name, "name", "chaos", "election name")
	flag.StringVar(&cfg.identity, "identity", "", "this candidate's identity")
	flag.DurationVar(&cfg.ttl, "ttl", 2*time.Second, "election TTL")
	flag.DurationVar(&cfg.renewDeadline, "renew-deadline", 1333*time.Millisecond, "election renew deadline")
	flag.DurationVar(&cfg.retry, "retry-period", 266*time.Millisecond, "election retry period")
	flag.DurationVar(&cfg.writeMin, "write-min", 20*time.Millisecond, "shortest pause between two writes of a term")
	flag.DurationVar(&cfg.writeMax, "write-max", 50*time.Millisecond, "longest pause between two writes of a term")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the pauses between writes")
	flag.Parse()
	if cfg.hub == "" || cfg.addr == "" || cfg.identity == "" || cfg.writeMax < cfg.writeMin {
		fmt.Fprintln(os.Stderr, "candidate: -hub, -addr and -identity are required, and -write-max >= -write-min")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hub, err := wire.Dial(cfg.hub, cfg.identity, wire.RoleLibrary, os.Getpid())
	if err != nil {
		fmt.Fprintln(os.Stderr, "candidate:", err)
		return 4
	}
	defer hub.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c := &candidate{cfg: cfg, hub: hub, log: log, stop: stop, rng: rand.New(rand.NewPCG(cfg.seed, 0x9e3779b97f4a7c15))}

	// Everything from here on must be gone when Run has returned and the
	// client is closed.
	baseline := goleak.IgnoreCurrent()
	status := c.elect(ctx)

	leaked := 0
	if err := goleak.Find(baseline); err != nil {
		leaked = max(1, strings.Count(err.Error(), "\n[Goroutine "))
		fmt.Fprintf(os.Stderr, "candidate: %d goroutines left after Run returned and the client was closed:\n%v\n", leaked, err)
		status = max(status, 3)
	}
	c.send(wire.Msg{Kind: wire.Exit, Leaked: leaked, T: wire.Now()})
	if c.hubFailed() {
		return 4
	}
	return status
}

// candidate holds what the callbacks share.
type candidate struct {
	cfg  config
	hub  *wire.Conn
	log  *slog.Logger
	stop context.CancelFunc // ends Run

	rngMu sync.Mutex // guards rng: terms of one elector never overlap, but say so
	rng   *rand.Rand

	errMu  sync.Mutex
	hubErr error // the first failure to reach the hub; guarded by errMu
}

// elect connects to valkey and runs the elector until ctx ends. It returns
// the exit status so far.
func (c *candidate) elect(ctx context.Context) int {
	client, err := connect(ctx, c.cfg)
	if err != nil {
		if ctx.Err() != nil {
			return 0 // stopped while the server was unreachable
		}
		c.log.Error("candidate: cannot build a valkey client", "error", err)
		return 1
	}
	defer client.Close()
	e, err := election.New(client, election.Config{
		Name:          c.cfg.name,
		Identity:      c.cfg.identity,
		TTL:           c.cfg.ttl,
		RenewDeadline: c.cfg.renewDeadline,
		RetryPeriod:   c.cfg.retry,
		Logger:        c.log,
		Callbacks: callbacks.Callbacks{
			OnElected: c.lead,
			OnLost: func(term callbacks.Term) {
				c.send(wire.Msg{Kind: wire.Lost, Fence: term.Fence, T: wire.Now()})
			},
			OnNewLeader: func(l callbacks.Leader) {
				id := l.Identity
				if l.None() {
					id = wire.NoLeader
				}
				c.send(wire.Msg{Kind: wire.Leader, Identity: id, Fence: l.Fence, T: wire.Now()})
			},
		},
	})
	if err != nil {
		c.log.Error("candidate: election.New", "error", err)
		return 1
	}
	if err := e.Run(ctx); !errors.Is(err, context.Canceled) {
		c.log.Error("candidate: Run returned", "error", err)
		return 1
	}
	return 0
}

// connect builds the client as baton run does (no client-side cache, no
// transparent retries: see docs/operations.md), retrying while the server
// cannot be reached: valkey-go dials in NewClient.
func connect(ctx context.Context, cfg config) (valkey.Client, error) {
	opt := valkey.ClientOption{
		InitAddress:  []string{cfg.addr},
		DisableCache: true,
		DisableRetry: true,
		ClientName:   "chaos-" + cfg.identity,
	}
	pause := 10 * time.Millisecond
	for {
		client, err := valkey.NewClient(opt)
		if err == nil {
			return client, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pause):
		}
		pause = min(2*pause, cfg.retry)
	}
}

// lead is OnElected: it writes with the term's fence every writeMin to
// writeMax until ctx ends, like a leader doing its work.
func (c *candidate) lead(ctx context.Context, term callbacks.Term) {
	c.send(wire.Msg{Kind: wire.Elected, Fence: term.Fence, T: wire.Now(), Acquired: wire.At(term.Start)})
	defer func() { c.send(wire.Msg{Kind: wire.Stopped, Fence: term.Fence, T: wire.Now()}) }()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if _, _, err := c.hub.Write(term.Fence); err != nil {
			c.failed(err)
			return
		}
		timer.Reset(c.pause())
	}
}

func (c *candidate) pause() time.Duration {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return c.cfg.writeMin + time.Duration(c.rng.Int64N(int64(c.cfg.writeMax-c.cfg.writeMin)+1))
}

// send reports m to the hub.
func (c *candidate) send(m wire.Msg) {
	if err := c.hub.Send(m); err != nil {
		c.failed(err)
	}
}

// failed records that the hub cannot be reached and stops the candidate:
// without the hub its runs prove nothing.
func (c *candidate) failed(err error) {
	c.errMu.Lock()
	first := c.hubErr == nil
	if first {
		c.hubErr = err
	}
	c.errMu.Unlock()
	if first {
		c.log.Error("candidate: lost the hub", "error", err)
	}
	c.stop()
}

func (c *candidate) hubFailed() bool {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.hubErr != nil
}
