package election

import (
	"testing"

	"github.com/baton-dev/baton/internal/valkeytest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// TestFailover's cluster clients leave goroutines that end on their own
	// (see valkeytest.LeakOptions).
	goleak.VerifyTestMain(m, valkeytest.LeakOptions()...)
}
