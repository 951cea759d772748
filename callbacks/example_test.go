package callbacks_test

import (
	"context"
	"fmt"
	"time"

	"github.com/baton-dev/baton/callbacks"
)

func ExampleChain() {
	work := callbacks.Callbacks{
		OnElected: func(ctx context.Context, term callbacks.Term) {
			fmt.Printf("leading %s with fence %d\n", term.Name, term.Fence)
			<-ctx.Done() // the leader's work runs until the term ends
			fmt.Println("work stopped")
		},
		OnLost: func(term callbacks.Term) {
			fmt.Printf("lost %s, fence %d\n", term.Name, term.Fence)
		},
	}
	audit := callbacks.Callbacks{
		OnLost: func(term callbacks.Term) { fmt.Println("audit: term", term.Fence, "ended") },
	}

	// The elector does this: one dispatcher, driven by the campaign loop.
	d := callbacks.NewDispatcher(callbacks.Chain(work, audit))
	d.Elected(callbacks.Term{Name: "reports", Identity: "node-a", Fence: 42, Start: time.Now()})
	d.Lost() // returns once both OnLost have returned
	d.Close()
	// Output:
	// leading reports with fence 42
	// work stopped
	// lost reports, fence 42
	// audit: term 42 ended
}

func ExampleNewDispatcher() {
	d := callbacks.NewDispatcher(callbacks.Callbacks{
		OnElected: func(ctx context.Context, term callbacks.Term) {
			<-ctx.Done()
		},
		OnLost: func(term callbacks.Term) { fmt.Println("lost fence", term.Fence) },
		OnNewLeader: func(l callbacks.Leader) {
			if l.None() {
				fmt.Println("no leader")
				return
			}
			fmt.Println("leader", l.Identity, l.Fence)
		},
	})
	defer d.Close()

	d.NewLeader(callbacks.Leader{})
	d.Elected(callbacks.Term{Name: "reports", Identity: "node-a", Fence: 7})
	d.NewLeader(callbacks.Leader{Identity: "node-a", Fence: 7, TTL: 10 * time.Second})
	// Same leader, new TTL: dropped.
	d.NewLeader(callbacks.Leader{Identity: "node-a", Fence: 7, TTL: 6 * time.Second})
	// OnLost runs after the OnNewLeader calls queued before it.
	d.Lost()
	// Output:
	// no leader
	// leader node-a 7
	// lost fence 7
}

func ExampleExitOnLostFunc() {
	work := callbacks.Callbacks{OnElected: func(ctx context.Context, _ callbacks.Term) { <-ctx.Done() }}
	// A program would use callbacks.ExitOnLost(3); the exit is shown instead.
	exit := callbacks.ExitOnLostFunc(3, func(code int) { fmt.Println("exit", code) })
	d := callbacks.NewDispatcher(callbacks.Chain(work, exit))
	d.Elected(callbacks.Term{Name: "cron", Identity: "node-a", Fence: 1})
	d.Lost()
	d.Close()
	// Output:
	// exit 3
}
