package valkeytest

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
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

func TestProxyBlackhole(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := NewProxy(t, s.Addr())
	if err := s.Do(t, "SET", "k", "before").Error(); err != nil {
		t.Fatalf("SET k: %v", err)
	}
	open := dialRaw(t, p.Addr()) // opened before the blackhole
	if got := rawCommand(t, open, "PING"); got != "+PONG" {
		t.Fatalf("PING through the proxy = %q; want +PONG", got)
	}

	p.Blackhole()
	// New connections are accepted and held, not refused or closed.
	fresh := dialRaw(t, p.Addr())
	for _, c := range []net.Conn{open, fresh} {
		if _, err := io.WriteString(c, "SET k held\r\n"); err != nil {
			t.Fatalf("write to a blackholed proxy: %v", err)
		}
		if err := c.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read from a blackholed proxy = %d bytes, %v; want a timeout", n, err)
		}
	}
	if got := s.String(t, "GET", "k"); got != "before" {
		t.Fatalf("GET k on the server during the blackhole = %q; want %q (nothing delivered)", got, "before")
	}

	p.Heal()
	for _, c := range []net.Conn{open, fresh} {
		if got := rawReply(t, c); got != "+OK" {
			t.Fatalf("reply to the held SET after Heal = %q; want +OK", got)
		}
	}
	if got := s.String(t, "GET", "k"); got != "held" {
		t.Fatalf("GET k on the server after Heal = %q; want %q", got, "held")
	}
}

func TestProxyDelay(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := NewProxy(t, s.Addr())
	c := newClient(t, s.ClientOptionVia(p.Addr()))
	ctx := t.Context()
	ping := func() time.Duration {
		t.Helper()
		start := time.Now()
		if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
			t.Fatalf("PING through the proxy: %v", err)
		}
		return time.Since(start)
	}
	ping() // connect

	const d = 50 * time.Millisecond
	p.Delay(d)
	if rtt := ping(); rtt < 2*d {
		t.Errorf("PING through a proxy delaying %v took %v; want at least %v", d, rtt, 2*d)
	}

	// Heal delivers what a delay still holds at once, without waiting for it.
	p.Delay(time.Hour)
	done := make(chan error, 1)
	go func() { done <- c.Do(ctx, c.B().Ping().Build()).Error() }()
	select {
	case err := <-done:
		t.Fatalf("PING through a proxy delaying an hour returned at once: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	p.Heal()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("PING held by the delay, after Heal: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("PING held by the delay still unanswered 10s after Heal")
	}
}

func TestProxyCutDropsHeldBytes(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := NewProxy(t, s.Addr())
	raw := dialRaw(t, p.Addr())
	p.Blackhole()
	if _, err := io.WriteString(raw, "SET k held\r\n"); err != nil {
		t.Fatalf("write to a blackholed proxy: %v", err)
	}
	p.Cut()
	if err := raw.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := raw.Read(make([]byte, 64)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read from a cut proxy = %d bytes, %v; want the connection closed", n, err)
	}
	p.Heal()
	p.Restore()
	c := newClient(t, s.ClientOptionVia(p.Addr()))
	if err := c.Do(t.Context(), c.B().Get().Key("k").Build()).Error(); !valkey.IsValkeyNil(err) {
		t.Errorf("GET k after the cut = %v; want a nil reply (the held SET was dropped)", err)
	}
	p.Blackhole()
	p.Close() // must not hang on held connections; goleak checks the rest
}

// rawCommand sends an inline command on c and returns the first line of
// the reply, without its CRLF.
func rawCommand(t *testing.T, c net.Conn, cmd string) string {
	t.Helper()
	if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
		t.Fatalf("write %q: %v", cmd, err)
	}
	return rawReply(t, c)
}

// rawReply reads one reply line from c, waiting at most 5s. It reads one
// byte at a time, so nothing after the line is consumed.
func rawReply(t *testing.T, c net.Conn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			t.Fatalf("read a reply: %v (got %q)", err, line)
		}
		if b[0] == '\n' {
			return strings.TrimSuffix(string(line), "\r")
		}
		line = append(line, b[0])
	}
}

// dialRaw opens a plain TCP connection, closed in t.Cleanup.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
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
