package valkeytest

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

func TestProxy(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := NewProxy(t, s.Addr())
	c := newClient(t, s.ClientOptionVia(p.Addr()))
	ctx := t.Context()
	if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatalf("SET through the proxy: %v", err)
	}
	if got, err := s.Do(t, "GET", "k").ToString(); err != nil || got != "v" {
		t.Fatalf("GET k on the server = %q, %v; want %q", got, err, "v")
	}

	p.Cut()
	cutCtx, cancel := context.WithTimeout(ctx, time.Second)
	start := time.Now()
	err := c.Do(cutCtx, c.B().Get().Key("k").Build()).Error()
	cancel()
	if err == nil {
		t.Fatal("GET through a cut proxy succeeded; want an error")
	}
	t.Logf("GET through a cut proxy failed after %v: %v", time.Since(start), err)
	// New connections are accepted and closed at once. (Not checked with
	// valkey.NewClient: a failed NewClient leaves a goroutine sleeping for up
	// to a second, which goleak reports.)
	assertClosedOnAccept(t, p.Addr())
	if err := s.Do(t, "PING").Error(); err != nil {
		t.Errorf("PING on the server while the proxy is cut: %v", err)
	}

	p.Restore()
	c3 := newClient(t, s.ClientOptionVia(p.Addr()))
	if got, err := c3.Do(ctx, c3.B().Get().Key("k").Build()).ToString(); err != nil || got != "v" {
		t.Fatalf("GET k through the restored proxy = %q, %v; want %q", got, err, "v")
	}
	start = time.Now()
	if err := writeOnOldClient(t, c); err != nil {
		t.Errorf("SET on the client from before the cut, after Restore: %v", err)
	}
	t.Logf("the client from before the cut answered after Restore in %v", time.Since(start))

	p.Close()
	p.Close() // idempotent
}

func TestProxyCloseWithOpenConnections(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := NewProxy(t, s.Addr())
	c := newClient(t, s.ClientOptionVia(p.Addr()))
	if err := c.Do(t.Context(), c.B().Ping().Build()).Error(); err != nil {
		t.Fatalf("PING through the proxy: %v", err)
	}
	p.Close() // must not hang on the client's open connection; goleak checks the rest
}

// assertClosedOnAccept checks that a connection to addr is closed by the
// other side before it answers a PING.
func assertClosedOnAccept(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "PING\r\n") // may fail if already closed
	n, err := conn.Read(make([]byte, 64))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read from a cut proxy = %d bytes, %v; want the connection closed", n, err)
	}
}

func newClient(t *testing.T, opt valkey.ClientOption) valkey.Client {
	t.Helper()
	c, err := valkey.NewClient(opt)
	if err != nil {
		t.Fatalf("NewClient(%v): %v", opt.InitAddress, err)
	}
	t.Cleanup(c.Close)
	return c
}
