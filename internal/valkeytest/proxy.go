package valkeytest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// chunkSize is the most one read from either side of a proxied connection
// takes in before it is queued for the other side.
const chunkSize = 32 << 10

// Proxy is a TCP proxy on a free loopback port in front of a target address,
// for network faults in tests while the server stays healthy: Cut drops
// every connection, Blackhole holds every byte in flight without dropping
// anything, Delay adds latency. It is safe for concurrent use.
//
// Each direction of a proxied connection is a queue of chunks, read as they
// come and written to the other side in order once neither a blackhole nor
// a delay holds them back, so a held connection keeps accepting bytes from
// both sides, as a network path that is merely slow or stuck would.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close, to abort dials to the target
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every connection's goroutines

	mu      sync.Mutex
	cut     bool               // guarded by mu
	closed  bool               // guarded by mu; no wg.Add once set
	links   map[*link]struct{} // guarded by mu; open connections
	holding bool               // guarded by mu; Blackhole until Heal
	delay   time.Duration      // guarded by mu; Delay until Heal
	changed chan struct{}      // guarded by mu; closed and replaced when holding or delay change
}

// link is one proxied connection: the client's side and the target's.
type link struct {
	client   net.Conn
	upstream net.Conn      // nil until dialled; set and read with Proxy.mu held
	done     chan struct{} // closed by close
	once     sync.Once
}

// close closes both sides and wakes every goroutine of the link. It is
// called with Proxy.mu held.
func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		if l.upstream != nil {
			l.upstream.Close()
		}
	})
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
	p := &Proxy{
		target:  target,
		ln:      ln,
		ctx:     ctx,
		cancel:  cancel,
		links:   make(map[*link]struct{}),
		changed: make(chan struct{}),
	}
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
// Bytes held by Blackhole or Delay on the closed connections are dropped.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.closeLinksLocked()
}

// Restore makes the proxy forward new connections again after Cut.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Blackhole stops delivering bytes in either direction until Heal, on open
// connections and on new ones, which are still accepted and dialled. Nothing
// is dropped: both sides' writes succeed and the proxy holds the bytes, as a
// stuck network path would, so TCP keepalives see a live connection.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holding = true
	p.changedLocked()
}

// Delay delivers every chunk of bytes, in either direction, no earlier than
// d after the proxy read it, until Heal or another Delay; a round trip
// through the proxy then takes at least 2*d. Order is kept. Chunks already
// read take the new delay too.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = max(d, 0)
	p.changedLocked()
}

// Heal ends Blackhole and Delay: the bytes held are delivered at once, in
// the order they came, and new bytes flow without added latency. It does not
// undo Cut (Restore does).
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holding, p.delay = false, 0
	p.changedLocked()
}

func (p *Proxy) changedLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Close stops the proxy, closes every connection and waits for all its
// goroutines. It is safe to call more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.closeLinksLocked()
		p.cancel()
		p.ln.Close()
		p.changedLocked()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) closeLinksLocked() {
	for l := range p.links {
		l.close()
	}
	clear(p.links)
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
		l := &link{client: c, done: make(chan struct{})}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.forward(l)
	}
}

// forward dials the target for the link and relays both ways until either
// side ends or the link is cut; then it closes both.
func (p *Proxy) forward(l *link) {
	defer p.wg.Done()
	defer p.forget(l)
	var d net.Dialer
	upstream, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	_, open := p.links[l] // gone if Cut or Close ran during the dial
	if open {
		l.upstream = upstream
	}
	p.mu.Unlock()
	if !open {
		upstream.Close()
		return
	}

	// Each direction: a reader that queues what arrives, and a relay that
	// writes it out when the proxy lets it. The first relay to end (its
	// source closed and its queue drained, or a write failed) ends the link.
	var wg sync.WaitGroup
	for _, dir := range []struct{ from, to net.Conn }{{l.client, upstream}, {upstream, l.client}} {
		q := newQueue()
		wg.Go(func() { q.fill(dir.from) })
		wg.Go(func() {
			p.relay(l, q, dir.to)
			p.forget(l) // unblocks the other three
		})
	}
	wg.Wait()
}

// forget closes the link and drops it from the open ones.
func (p *Proxy) forget(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l.close()
	delete(p.links, l)
}

// relay writes the chunks of q to dst as the proxy's state allows, until q
// is drained after its source ended, a write fails, or the link closes.
func (p *Proxy) relay(l *link, q *queue, dst net.Conn) {
	for {
		c, ok := q.pop(l.done)
		if !ok {
			return
		}
		if !p.await(l, c.read) {
			return
		}
		if _, err := dst.Write(c.data); err != nil {
			return
		}
	}
}

// await waits until a chunk read at read may be delivered: no blackhole, and
// the delay since read has passed. It reports false if the link closed first.
func (p *Proxy) await(l *link, read time.Time) bool {
	for {
		p.mu.Lock()
		holding, delay, changed := p.holding, p.delay, p.changed
		p.mu.Unlock()
		var timer *time.Timer
		var due <-chan time.Time
		if !holding {
			wait := time.Until(read.Add(delay))
			if wait <= 0 {
				return true
			}
			timer = time.NewTimer(wait)
			due = timer.C
		}
		select {
		case <-l.done:
			return false
		case <-changed:
			if timer != nil {
				timer.Stop()
			}
		case <-due:
			return true
		}
	}
}

// chunk is what one read returned, and when.
type chunk struct {
	data []byte
	read time.Time
}

// queue holds the chunks of one direction of a link between the reader and
// the relay. It never blocks the reader: bytes held by a blackhole pile up
// here.
type queue struct {
	ready chan struct{} // capacity 1: a chunk was pushed or the source ended

	mu     sync.Mutex
	chunks []chunk // guarded by mu
	ended  bool    // guarded by mu; the source returned an error or EOF
}

func newQueue() *queue {
	return &queue{ready: make(chan struct{}, 1)}
}

// fill reads src into the queue until src fails.
func (q *queue) fill(src net.Conn) {
	buf := make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q.push(chunk{data: append([]byte(nil), buf[:n]...), read: time.Now()})
		}
		if err != nil {
			q.mu.Lock()
			q.ended = true
			q.mu.Unlock()
			q.signal()
			return
		}
	}
}

func (q *queue) push(c chunk) {
	q.mu.Lock()
	q.chunks = append(q.chunks, c)
	q.mu.Unlock()
	q.signal()
}

func (q *queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop returns the oldest chunk, waiting for one; false once the source ended
// and every chunk was popped, or when done is closed.
func (q *queue) pop(done <-chan struct{}) (chunk, bool) {
	for {
		q.mu.Lock()
		if len(q.chunks) > 0 {
			c := q.chunks[0]
			q.chunks[0] = chunk{}
			q.chunks = q.chunks[1:]
			q.mu.Unlock()
			return c, true
		}
		ended := q.ended
		q.mu.Unlock()
		if ended {
			return chunk{}, false
		}
		select {
		case <-q.ready:
		case <-done:
			return chunk{}, false
		}
	}
}
