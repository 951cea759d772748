// Command active-passive is an HTTP service with one active replica: the
// election's leader serves, standbys answer 503. /role is for a load
// balancer's health check (200 only on the leader), /healthz for liveness
// (election.HealthHandler: 503 only for a leader that has stopped renewing).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/election"
	"github.com/valkey-io/valkey-go"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "valkey-server `host:port`")
	listen := flag.String("listen", "127.0.0.1:8080", "HTTP `address` to serve on")
	name := flag.String("name", "active-passive", "election name")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *listen, *name); err != nil {
		slog.Error("active-passive", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, listen, name string) error {
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
		// The service itself needs no per-term work: the role is all it routes on.
		Callbacks: callbacks.Callbacks{
			OnElected: func(ctx context.Context, term callbacks.Term) {
				slog.Info("active", "fence", term.Fence)
				<-ctx.Done()
			},
			OnLost: func(term callbacks.Term) { slog.Info("standby", "fence", term.Fence) },
		},
	})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	// Read from the elector itself: nothing else to wire. 503 only for a
	// leader that has gone RenewDeadline without a renewal and still has not
	// stepped down, which is stuck: restarting it is the fix.
	mux.Handle("GET /healthz", election.HealthHandler(e, 0))
	mux.HandleFunc("GET /role", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := e.Term(); !ok {
			http.Error(w, "standby", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "leader")
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		term, ok := e.Term()
		if !ok {
			http.Error(w, "standby: not serving", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "served by %s (fence %d)\n", term.Identity, term.Fence)
	})
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, cancel := context.WithCancel(ctx) // also ended when serving fails
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := e.Run(ctx); !errors.Is(err, context.Canceled) {
			slog.Error("election", "error", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	slog.Info("serving", "listen", listen, "identity", e.Identity())
	err = srv.ListenAndServe()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	cancel() // the leader releases at once, so a standby takes over without waiting for the TTL
	wg.Wait()
	return err
}
