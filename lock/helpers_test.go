package lock

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/valkey-io/valkey-go"
)

// env is one real server and a client for a test.
type env struct {
	srv    *valkeytest.Server
	client valkey.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := valkeytest.Start(t)
	return &env{srv: s, client: s.Client(t)}
}

func (e *env) lock(t *testing.T, name string, cfg Config) *Lock {
	t.Helper()
	l, err := New(e.client, name, cfg)
	if err != nil {
		t.Fatalf("New(%q, %+v) = %v", name, cfg, err)
	}
	return l
}

// str runs a raw command and returns its string reply ("" for nil).
func (e *env) str(t *testing.T, args ...string) string {
	t.Helper()
	v, err := e.srv.Do(t, args...).ToString()
	if valkey.IsValkeyNil(err) {
		return ""
	}
	if err != nil {
		t.Fatalf("%v = %v", args, err)
	}
	return v
}

func (e *env) int(t *testing.T, args ...string) int64 {
	t.Helper()
	v, err := e.srv.Do(t, args...).AsInt64()
	if err != nil {
		t.Fatalf("%v = %v", args, err)
	}
	return v
}

// calls returns how many times the server ran cmd (INFO commandstats).
func (e *env) calls(t *testing.T, cmd string) int64 {
	t.Helper()
	stats := e.srv.Info(t, "commandstats")
	v, ok := stats["cmdstat_"+cmd]
	if !ok {
		return 0
	}
	// calls=N,usec=...
	for _, f := range splitComma(v) {
		if len(f) > 6 && f[:6] == "calls=" {
			n, _ := strconv.ParseInt(f[6:], 10, 64)
			return n
		}
	}
	return 0
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAcquire(t *testing.T, l *Lock, opts ...AcquireOption) *Held {
	t.Helper()
	h, err := l.TryAcquire(ctxT(t), opts...)
	if err != nil {
		t.Fatalf("TryAcquire(%q) = %v", l.Name(), err)
	}
	return h
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s = %v; want %v", what, err, want)
	}
}

// queued reports how many Acquire calls are waiting on l.
func queued(l *Lock) int {
	l.queue.mu.Lock()
	defer l.queue.mu.Unlock()
	return len(l.queue.waiters)
}

// awaitQueued waits until n Acquire calls wait on l. It watches the queue
// itself (an event it owns) rather than sleeping a guessed time.
func awaitQueued(t *testing.T, l *Lock, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for queued(l) != n {
		if time.Now().After(deadline) {
			t.Fatalf("queued = %d; want %d", queued(l), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// retryUnavailable retries op while it fails with ErrUnavailable, as a caller
// would after a reconnect: a client learns of a broken connection from the
// first command sent on it.
func retryUnavailable(t *testing.T, op func() error) error {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := op()
		if !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
