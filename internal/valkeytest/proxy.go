package valkeytest

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on a free loopback port in front of a target address,
// for cutting connections in fault tests while the server stays healthy. It
// is safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close, to abort dials to the target
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every connection's goroutines

	mu     sync.Mutex
	cut    bool                  // guarded by mu
	closed bool                  // guarded by mu; no wg.Add once set
	conns  map[net.Conn]struct{} // guarded by mu; open conns, both sides
}

// NewProxy starts a proxy that forwards every accepted connection to target.
// It is closed in tb.Cleanup.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("valkeytest: proxy listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{target: target, ln: ln, ctx: ctx, cancel: cancel, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's address, "127.0.0.1:PORT".
func (p *Proxy) Addr() string {
	return p.ln.Addr().String()
}

// Cut closes every open connection and, until Restore, closes new ones as
// soon as they are accepted: clients see a reset rather than a refusal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.closeConnsLocked()
}

// Restore makes the proxy forward new connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Close stops the proxy, closes every connection and waits for all its
// goroutines. It is safe to call more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.closeConnsLocked()
		p.cancel()
		p.ln.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) closeConnsLocked() {
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// accept runs until the listener is closed.
func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut || p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.forward(c)
	}
}

// forward dials the target for client and copies both ways until either
// side ends or the connection is cut; then it closes both.
func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	var d net.Dialer
	upstream, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		p.forget(client)
		return
	}
	p.mu.Lock()
	_, open := p.conns[client] // gone if Cut or Close ran during the dial
	if open {
		p.conns[upstream] = struct{}{}
	}
	p.mu.Unlock()
	if !open {
		client.Close()
		upstream.Close()
		return
	}

	toTarget := make(chan struct{})
	go func() {
		defer close(toTarget)
		_, _ = io.Copy(upstream, client)
		upstream.Close() // unblocks the copy below
		client.Close()
	}()
	_, _ = io.Copy(client, upstream)
	client.Close() // unblocks the copy above
	upstream.Close()
	<-toTarget
	p.forget(client, upstream)
}

func (p *Proxy) forget(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(p.conns, c)
	}
}
