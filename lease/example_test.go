package lease_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/baton-dev/baton/lease"
	"github.com/baton-dev/baton/lock"
	"github.com/valkey-io/valkey-go"
)

// These examples need a Valkey server on localhost:6379; they compile but do
// not run as tests. The package's tests exercise the same paths against a
// real server.

// Protected writes carry the lease's fencing token; a store that has seen a
// higher token refuses them.
type store interface {
	Write(ctx context.Context, fence int64, data []byte) error
}

func ExampleNew() {
	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	l, err := lock.New(client, "reports", lock.Config{TTL: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	h, err := l.Acquire(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	// Renew every TTL/3; count the lease valid until TTL - 1% after each
	// successful renewal was sent.
	ls, err := lease.New(h, lease.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer ls.Release(context.Background())

	select {
	case <-ls.Done():
		log.Printf("lease ended: %v", ls.Err())
	case <-time.After(time.Minute):
		// ... the work this process does while it holds "reports".
	}
}

func ExampleLease_Context() {
	var (
		ls *lease.Lease // from lease.New
		db store
	)
	// Work under ctx stops the moment the lease ends; the cause says why.
	ctx, cancel := ls.Context(context.Background())
	defer cancel()

	for ctx.Err() == nil {
		if err := db.Write(ctx, ls.Fence(), []byte("tick")); err != nil {
			break
		}
	}
	if cause := context.Cause(ctx); errors.Is(cause, lease.ErrLost) {
		log.Printf("lost the lock: %v", cause)
	}
}

func ExampleLease_Release() {
	var ls *lease.Lease // from lease.New

	// Release ignores ctx's cancellation: it still deletes the key, within a
	// second, when called on the way out of a cancelled operation.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ls.Release(ctx); err != nil {
		// The server could not be reached (the key expires by its TTL), or
		// the lock had been lost before Release noticed.
		log.Printf("release: %v", err)
	}
	log.Println(ls.Err() == lease.ErrReleased) // true, unless it was lost first
}

func ExampleLease_Err() {
	var ls *lease.Lease // from lease.New

	<-ls.Done()
	switch err := ls.Err(); {
	case errors.Is(err, lock.ErrNotOwned):
		log.Printf("someone else holds the lock, or the key was deleted: %v", err)
	case errors.Is(err, lease.ErrExpired):
		log.Printf("could not renew in time; the key may still expire on its own: %v", err)
	case errors.Is(err, lease.ErrReleased), errors.Is(err, lease.ErrStopped):
		log.Print("ended by this process")
	}
}
