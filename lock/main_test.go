package lock

import (
	"testing"

	"github.com/baton-dev/baton/internal/valkeytest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
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
