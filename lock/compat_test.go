package lock

import (
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

// valkey-py's Lock writes SET name token NX PX ttl and releases with this
// script (valkey/lock.py, LUA_RELEASE_SCRIPT).
const pyRelease = `
local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
    return 0
end
redis.call('del', KEYS[1])
return 1
`

// TestExcludesValkeyPyLock drives the key exactly as valkey-py does, through
// raw commands, against a PlainKey lock of the same name.
func TestExcludesValkeyPyLock(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t)
	ctx := ctxT(t)
	l := e.lock(t, "report-job", Config{PlainKey: true, TTL: 10 * time.Second, RetryInterval: 10 * time.Millisecond})

	// Python holds: baton cannot acquire.
	e.srv.String(t, "SET", "report-job", "py-token", "NX", "PX", "10000")
	_, err := l.TryAcquire(ctx)
	wantErr(t, "TryAcquire while valkey-py holds", err, ErrNotAcquired)

	// Python releases with its own script (no publish): a blocked baton
	// waiter still gets the lock, through its fallback interval.
	got := make(chan *Held, 1)
	go func() {
		h, err := l.Acquire(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- h
	}()
	awaitQueued(t, l, 1)
	if n := e.srv.Int(t, "EVAL", pyRelease, "1", "report-job", "py-token"); n != 1 {
		t.Fatalf("valkey-py release = %d; want 1", n)
	}
	h := <-got
	if h == nil {
		t.Fatal("baton never acquired after valkey-py released")
	}

	// baton holds: Python's SET NX fails, and Python's release of a token it
	// does not hold does nothing.
	if v, err := e.srv.Do(t, "SET", "report-job", "py-token-2", "NX", "PX", "10000").ToString(); !valkey.IsValkeyNil(err) {
		t.Fatalf("valkey-py SET NX while baton holds = %q, %v; want nil", v, err)
	}
	if n := e.srv.Int(t, "EVAL", pyRelease, "1", "report-job", "py-token-2"); n != 0 {
		t.Fatalf("valkey-py release of baton's lock = %d; want 0", n)
	}
	// The stored value is the plain token, which valkey-py could release if told it.
	if got := e.srv.String(t, "GET", "report-job"); got != h.Token() {
		t.Fatalf("GET report-job = %q; want the plain token %q", got, h.Token())
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
