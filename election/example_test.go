package election_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/election"
	"github.com/valkey-io/valkey-go"
)

// These examples need a Valkey server on localhost:6379; they compile as part
// of the tests but do not run (they have no Output comment).

func ExampleNew() {
	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	e, err := election.New(client, election.Config{
		Name: "billing-reconciler",
		// TTL, RenewDeadline and RetryPeriod default to 15s, 10s and 2s.
		Callbacks: callbacks.Callbacks{
			OnElected: func(ctx context.Context, term callbacks.Term) {
				log.Printf("leading with fencing token %d", term.Fence)
				<-ctx.Done() // do the leader's work until the term ends
			},
			OnLost: func(term callbacks.Term) {
				log.Printf("no longer leading (fencing token %d)", term.Fence)
			},
			OnNewLeader: func(l callbacks.Leader) {
				if l.None() {
					log.Print("no leader")
					return
				}
				log.Printf("leader: %s", l.Identity)
			},
		},
	})
	if err != nil {
		log.Fatal(err) // for example: election: renew deadline 10s must be less than ttl 5s
	}
	fmt.Println(e.Identity())
}

func ExampleElector_Run() {
	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	e, err := election.New(client, election.Config{
		Name: "singleton-controller",
		Callbacks: callbacks.Callbacks{
			OnElected: func(ctx context.Context, term callbacks.Term) {
				tick := time.NewTicker(time.Second)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return // leadership lost, resigned, or shutting down
					case <-tick.C:
						// Reconcile, sending term.Fence with every write so
						// that a deposed leader's late writes are refused.
					}
				}
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Liveness and role, read from the elector itself: 503 only for a
	// leader that has not renewed for RenewDeadline, which is stuck.
	http.Handle("GET /healthz", election.HealthHandler(e, 0))
	go func() { log.Println(http.ListenAndServe("127.0.0.1:8080", nil)) }()

	// Stop on SIGTERM: the leader releases at once, so a standby takes over
	// without waiting for the TTL.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := e.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

func ExampleWatch() {
	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT)
	defer stop()
	err = election.Watch(ctx, client, "singleton-controller", func(l callbacks.Leader) {
		if l.None() {
			fmt.Println("no leader")
			return
		}
		fmt.Printf("leader %s, fencing token %d, ttl %v\n", l.Identity, l.Fence, l.TTL)
	})
	if err != nil {
		log.Fatal(err)
	}
}

func ExampleLeaderOf() {
	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l, err := election.LeaderOf(ctx, client, "singleton-controller")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(l.Identity, l.Fence, l.TTL)
}
