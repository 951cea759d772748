package lock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/baton-dev/baton/lock"
	"github.com/valkey-io/valkey-go"
)

// Examples that need a valkey-server on 127.0.0.1:6379 have no Output line:
// they compile with the tests, and the tests make the same calls against
// servers they start themselves.

func Example() {
	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	l, err := lock.New(client, "nightly-report", lock.Config{TTL: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	h, err := l.Acquire(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Release(ctx)
	fmt.Println("holding", h.Name(), "with fencing token", h.Fence())
}

func ExampleLock_TryAcquire() {
	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	l, err := lock.New(client, "cron:cleanup", lock.Config{TTL: time.Minute})
	if err != nil {
		log.Fatal(err)
	}

	h, err := l.TryAcquire(context.Background())
	switch {
	case errors.Is(err, lock.ErrNotAcquired):
		fmt.Println("another instance runs the cleanup")
		return
	case err != nil:
		log.Fatal(err) // errors.Is(err, lock.ErrUnavailable): retry later
	}
	defer h.Release(context.Background())
	// ... run the cleanup once for the fleet ...
}

func ExampleLock_Do() {
	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	l, err := lock.New(client, "migrations", lock.Config{TTL: time.Minute, BlockingTimeout: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	err = l.Do(context.Background(), func(ctx context.Context, h *lock.Held) error {
		// Long work: push the expiry out as it goes.
		return h.Extend(ctx, time.Minute)
	})
	if err != nil {
		log.Fatal(err)
	}
}

// A protected resource compares fencing tokens: a holder that was paused past
// its TTL comes back with a token lower than its successor's and is refused.
func ExampleHeld_Fence() {
	var highest int64
	write := func(fence int64, v string) error {
		if fence < highest {
			return fmt.Errorf("stale fencing token %d < %d", fence, highest)
		}
		highest = fence
		_ = v // store v
		return nil
	}
	fmt.Println(write(41, "from the new holder"))
	fmt.Println(write(40, "from a holder paused past its TTL"))
	// Output:
	// <nil>
	// stale fencing token 40 < 41
}

func ExampleLock_Acquire_valkeyPy() {
	client, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	// Same key and value format as valkey-py's Lock("report-job"): a Python
	// service and this one exclude each other.
	l, err := lock.New(client, "report-job", lock.Config{PlainKey: true, TTL: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	h, err := l.Acquire(context.Background(), lock.WithBlockingTimeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer h.Release(context.Background())
}
