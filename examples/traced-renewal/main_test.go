package main

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
)

// TestHangingCollector: a collector that accepts connections and never
// answers delays neither the election nor the exit. The spans are batched,
// so the candidate is elected while exports hang, and SIGINT (ctx ending)
// returns within the shutdown bound, over either OTLP protocol.
func TestHangingCollector(t *testing.T) {
	const shutdown = 500 * time.Millisecond // main's is shutdownTimeout; shorter keeps the test quick
	s := valkeytest.Start(t)
	for _, proto := range []string{"http/protobuf", "grpc"} {
		t.Run(proto, func(t *testing.T) {
			collector := hangingCollector(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+collector.addr)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", proto)
			t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")     // ms: export, and hang, at once
			t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "50") // ms
			elected := make(chan struct{})
			var once sync.Once
			prev := slog.Default()
			slog.SetDefault(slog.New(notify{msg: "elected", fn: func() { once.Do(func() { close(elected) }) }}))
			t.Cleanup(func() { slog.SetDefault(prev) })

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- run(ctx, s.Addr(), "hang-"+proto, time.Hour, false, shutdown) }()
			select {
			case <-elected:
			case err := <-done:
				t.Fatalf("run returned %v before being elected", err)
			case <-time.After(15 * time.Second):
				t.Fatal("not elected within 15s while the collector hangs")
			}
			select {
			case <-collector.accepted: // an export is hanging
			case <-time.After(15 * time.Second):
				t.Fatal("no export reached the collector within 15s")
			}
			cancel()
			stopped := time.Now()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run = %v; want nil after ctx ended", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("run still running 15s after ctx ended")
			}
			if took := time.Since(stopped); took > shutdown+2*time.Second {
				t.Errorf("run returned %v after ctx ended; want about the shutdown bound %v at most", took, shutdown)
			}
		})
	}
}

// collector accepts connections and never reads or answers.
type collector struct {
	addr     string
	accepted chan struct{} // closed at the first connection
}

func hangingCollector(t *testing.T) *collector {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{addr: l.Addr().String(), accepted: make(chan struct{})}
	var first sync.Once
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			first.Do(func() { close(c.accepted) })
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range conns {
			conn.Close()
		}
	})
	return c
}

// notify is a slog handler that calls fn when a record with message msg is
// logged, and drops every record.
type notify struct {
	msg string
	fn  func()
}

func (n notify) Enabled(context.Context, slog.Level) bool { return true }
func (n notify) Handle(_ context.Context, r slog.Record) error {
	if r.Message == n.msg {
		n.fn()
	}
	return nil
}
func (n notify) WithAttrs([]slog.Attr) slog.Handler { return n }
func (n notify) WithGroup(string) slog.Handler      { return n }
