package lock

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/valkey-io/valkey-go"
	"go.uber.org/goleak"
)

// The test binary doubles as a waiter in a process of its own (a real
// process, to be killed or frozen): with envWaiter set, TestMain runs
// waiterMain instead of the tests.
const (
	envWaiter = "BATON_LOCK_TEST_WAITER" // "addr name claim-ms": wait for the lock
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(envWaiter); spec != "" {
		os.Exit(waiterMain(spec))
	}
	goleak.VerifyTestMain(m, valkeytest.LeakOptions()...)
}

// waiterMain blocks in Acquire on the lock name at addr, with the claim
// window given in ms, printing "waiting <waiter id>" once its subscription
// is confirmed and "acquired <fence>" when it holds; then it holds until
// killed.
func waiterMain(spec string) int {
	var addr, name string
	var claimMS int
	if _, err := fmt.Sscan(spec, &addr, &name, &claimMS); err != nil {
		fmt.Fprintln(os.Stderr, "bad", envWaiter, err)
		return 2
	}
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, DisableCache: true, DisableRetry: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := New(c, name, Config{TTL: time.Minute, RetryInterval: time.Hour, ClaimWindow: time.Duration(claimMS) * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("waiting", l.id)
	h, err := l.Acquire(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("acquired", strconv.FormatInt(h.Fence(), 10))
	select {}
}

// checkLeaks makes t fail, naming it, if a goroutine that started during
// the test (a waiter, a subscription, a connection of its client) is still
// running once the test and its cleanups are done; goleak waits a little
// for goroutines on their way out, such as a subscription that ends after
// its last waiter returned. Call it first, so that its check is the last
// cleanup, and only in tests that are not parallel: goleak sees every
// goroutine of the process.
func checkLeaks(t *testing.T) {
	t.Helper()
	opts := append(valkeytest.LeakOptions(), goleak.IgnoreCurrent())
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}
