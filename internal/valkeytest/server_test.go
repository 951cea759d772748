package valkeytest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

func TestStartSetGet(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if want := fmt.Sprintf("127.0.0.1:%d", s.Port()); s.Addr() != want {
		t.Errorf("Addr() = %q; want %q", s.Addr(), want)
	}
	c := s.Client(t)
	ctx := t.Context()
	if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatalf("SET k v: %v", err)
	}
	got, err := c.Do(ctx, c.B().Get().Key("k").Build()).ToString()
	if err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want %q, nil", got, err, "v")
	}
}

func TestStartArgs(t *testing.T) {
	t.Parallel()
	s := Start(t, WithArgs("--maxmemory", "10mb"))
	got, err := s.Do(t, "CONFIG", "GET", "maxmemory").AsStrMap()
	if err != nil || got["maxmemory"] != strconv.Itoa(10<<20) {
		t.Errorf("CONFIG GET maxmemory = %v, %v; want %d", got, err, 10<<20)
	}
	save, err := s.Do(t, "CONFIG", "GET", "save").AsStrMap()
	if err != nil || save["save"] != "" {
		t.Errorf("CONFIG GET save = %v, %v; want empty", save, err)
	}
}

func TestRestartLosesDataKeepsPort(t *testing.T) {
	t.Parallel()
	s := Start(t, WithArgs("--maxmemory", "10mb"))
	port := s.Port()
	if err := s.Do(t, "SET", "k", "v").Error(); err != nil {
		t.Fatalf("SET k v: %v", err)
	}
	c := s.Client(t)

	s.Restart(t)
	if s.Port() != port {
		t.Errorf("Port() after Restart = %d; want %d", s.Port(), port)
	}
	// Clients made before the restart reconnect on their own.
	start := time.Now()
	if err := s.Do(t, "GET", "k").Error(); !valkey.IsValkeyNil(err) {
		t.Errorf("GET k after Restart: %v; want nil reply", err)
	}
	t.Logf("first command after Restart took %v", time.Since(start))
	if err := writeOnOldClient(t, c); err != nil {
		t.Errorf("SET on a client made before Restart: %v", err)
	}
	got, _ := s.Do(t, "CONFIG", "GET", "maxmemory").AsStrMap()
	if got["maxmemory"] != strconv.Itoa(10<<20) {
		t.Errorf("maxmemory after Restart = %q; want the WithArgs value %d", got["maxmemory"], 10<<20)
	}

	// Restart also brings back a killed server.
	s.Kill(t)
	s.Restart(t)
	if err := s.Do(t, "PING").Error(); err != nil {
		t.Errorf("PING after Kill and Restart: %v", err)
	}
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := s.Client(t)

	s.Pause(t)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	err := c.Do(ctx, c.B().Ping().Build()).Error()
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("PING on a paused server: %v; want %v", err, context.DeadlineExceeded)
	}

	s.Resume(t)
	s.Resume(t) // idempotent
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
	t.Logf("first PING after Resume took %v", time.Since(start))
}

func TestPausedServerIsStoppedInCleanup(t *testing.T) {
	t.Parallel()
	var pid int
	t.Run("pause", func(t *testing.T) {
		s := Start(t)
		s.Pause(t)
		s.Pause(t) // stopping a stopped process is harmless
		pid = s.proc.cmd.Process.Pid
	})
	// The subtest's cleanup has reaped the process, so its pid is gone.
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); runtime.GOOS == "linux" && err == nil {
		t.Errorf("valkey-server pid %d still exists after cleanup", pid)
	}
}

func TestKill(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := s.Client(t)
	if err := c.Do(t.Context(), c.B().Ping().Build()).Error(); err != nil {
		t.Fatalf("PING before Kill: %v", err)
	}

	s.Kill(t)
	s.Kill(t) // idempotent
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err := c.Do(ctx, c.B().Ping().Build()).Error()
	if err == nil {
		t.Fatal("PING after Kill succeeded; want an error")
	}
	if _, ok := valkey.IsValkeyErr(err); ok {
		t.Fatalf("PING after Kill: Valkey error reply %v; want a transport error", err)
	}
	t.Logf("PING after Kill failed after %v: %v", time.Since(start), err)
}

func TestParallelServers(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	if a.Port() == b.Port() {
		t.Fatalf("two servers share port %d", a.Port())
	}
	if err := a.Do(t, "SET", "k", "a").Error(); err != nil {
		t.Fatalf("SET on a: %v", err)
	}
	if err := b.Do(t, "GET", "k").Error(); !valkey.IsValkeyNil(err) {
		t.Errorf("GET k on b: %v; want nil reply (servers must not share data)", err)
	}
}

func TestDoReturnsErrorReplies(t *testing.T) {
	t.Parallel()
	s := Start(t)
	err := s.Do(t, "NOSUCHCOMMAND", "x").Error()
	if _, ok := valkey.IsValkeyErr(err); !ok {
		t.Errorf("Do(NOSUCHCOMMAND) error = %v; want a Valkey error reply", err)
	}
	if err := s.Do(t, "SCRIPT", "FLUSH").Error(); err != nil {
		t.Errorf("Do(SCRIPT FLUSH) = %v; want nil", err)
	}
}

func TestInfo(t *testing.T) {
	t.Parallel()
	s := Start(t)
	server := s.Info(t, "server")
	if got := server["tcp_port"]; got != strconv.Itoa(s.Port()) {
		t.Errorf("INFO server tcp_port = %q; want %d", got, s.Port())
	}
	if server["valkey_version"] == "" {
		t.Errorf("INFO server has no valkey_version: %v", server)
	}

	before := s.CommandsProcessed(t)
	if before < 1 {
		t.Errorf("CommandsProcessed() = %d; want >= 1 (the client handshake counts)", before)
	}
	const n = 5
	for range n {
		s.Do(t, "PING")
	}
	// +1 for the INFO that read before.
	if after := s.CommandsProcessed(t); after < before+n+1 {
		t.Errorf("CommandsProcessed() after %d PINGs = %d; want >= %d", n, after, before+n+1)
	}
}

// writeOnOldClient sends a SET on c, a client whose server was killed or cut
// off, allowing one failure. A write is not retried by valkey-go, so it fails
// once when it was queued on the connection to the dead process. A read-only
// command would do instead, but its retry can trip the race detector: valkey-go
// v1.0.79 recycles a retried command that the dead connection's writer
// goroutine may still be reading.
func writeOnOldClient(t *testing.T, c valkey.Client) error {
	t.Helper()
	set := func() error { return c.Do(t.Context(), c.B().Set().Key("old").Value("1").Build()).Error() }
	if err := set(); err != nil {
		t.Logf("first SET on the old client failed, as it may: %v", err)
		return set()
	}
	return nil
}

// fatalRecorder is a testing.TB whose Fatal ends the calling goroutine and
// records the message instead of failing the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalMessage runs fn and returns the message it failed with, "" if none.
func fatalMessage(t *testing.T, fn func(tb testing.TB)) string {
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(rec)
	}()
	<-done
	return rec.msg
}

func TestStartWithoutBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	msg := fatalMessage(t, func(tb testing.TB) { Start(tb) })
	if msg != missingBinary {
		t.Errorf("Start without valkey-server failed with %q; want %q", msg, missingBinary)
	}
}

func TestStartReportsLogTail(t *testing.T) {
	t.Parallel()
	msg := fatalMessage(t, func(tb testing.TB) { Start(tb, WithArgs("--no-such-directive", "x")) })
	for _, want := range []string{"3 attempts", "exited while starting", "no-such-directive"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Start with a bad argument failed with %q; want it to contain %q", msg, want)
		}
	}
}
