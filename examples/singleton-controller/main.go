// Command singleton-controller runs a reconcile loop on exactly one of its
// replicas: the one that leads the election. The loop runs in OnElected and
// stops the moment its ctx is cancelled, that is, the moment leadership ends.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/election"
	"github.com/valkey-io/valkey-go"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "valkey-server `host:port`")
	name := flag.String("name", "singleton-controller", "election name")
	every := flag.Duration("every", time.Second, "reconcile interval")
	flag.Parse()

	// SIGINT or SIGTERM: a leader stops reconciling and releases at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *name, *every); err != nil {
		slog.Error("singleton-controller", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, name string, every time.Duration) error {
	// No client-side caching: baton does not use it, and it needs the
	// CLIENT TRACKING permission (see docs/operations.md).
	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, DisableCache: true, DisableRetry: true})
	if err != nil {
		return err
	}
	defer client.Close()

	e, err := election.New(client, election.Config{
		Name: name,
		TTL:  5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond,
		Callbacks: callbacks.Callbacks{
			OnElected: func(ctx context.Context, term callbacks.Term) { reconcileLoop(ctx, term, every) },
			OnLost: func(term callbacks.Term) {
				slog.Info("stopped reconciling", "fence", term.Fence)
			},
			OnNewLeader: func(l callbacks.Leader) {
				if l.None() {
					slog.Info("no leader")
					return
				}
				slog.Info("leader changed", "leader", l.Identity, "fence", l.Fence)
			},
		},
	})
	if err != nil {
		return err
	}
	slog.Info("campaigning", "name", name, "identity", e.Identity(), "pid", os.Getpid())
	if err := e.Run(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// reconcileLoop is the leader's work for one term. Every write it makes
// carries term.Fence, so a store that remembers the highest fence it saw
// refuses a deposed leader's late writes.
func reconcileLoop(ctx context.Context, term callbacks.Term, every time.Duration) {
	slog.Info("elected: reconciling", "fence", term.Fence)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := 1; ; n++ {
		reconcile(ctx, term.Fence, n)
		select {
		case <-ctx.Done(): // lost, resigned or shutting down: stop now
			return
		case <-tick.C:
		}
	}
}

// reconcile stands for one pass of real work: compare desired and actual
// state, and write the difference with the fencing token.
func reconcile(ctx context.Context, fence int64, n int) {
	if ctx.Err() != nil {
		return
	}
	slog.Info("reconcile", "pass", n, "fence", fence)
}
