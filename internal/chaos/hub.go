package chaos

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/baton-dev/baton/internal/chaos/wire"
)

// Hub is the orchestrator's end of package wire: it accepts one connection
// per program, records what each reports, and answers writes from the
// Store. It is safe for concurrent use.
type Hub struct {
	store *Store
	ln    net.Listener
	wg    sync.WaitGroup // the accept loop and one goroutine per connection

	mu      sync.Mutex
	peers   []*Peer           // guarded by mu; every connection, in order of acceptance
	conns   map[net.Conn]bool // guarded by mu; open connections
	closed  bool              // guarded by mu
	changed chan struct{}     // guarded by mu; closed and replaced on every event
	errs    []error           // guarded by mu; protocol errors
}

// Peer is one program's connection to the hub: one candidate process, or
// one worker (one term) of baton run. Its fields are written by the hub
// until Closed is set; read them after Hub.Close.
type Peer struct {
	ID       int     // index in Peers, and Write.Peer of its writes
	Identity string  // from hello: the candidate's identity (a worker's is its baton's)
	Role     string  // wire.RoleLibrary or wire.RoleWorker
	PID      int     // from hello
	Opened   int64   // shared clock, when the hello came
	Closed   int64   // shared clock, when the connection ended; 0 while open
	Events   []Event // everything but writes, in the order sent
}

// Event is one message of a peer other than a write. T is the sender's
// reading of the shared clock, Recv the hub's.
type Event struct {
	wire.Msg
	Recv int64 // the hub's reading of the shared clock when the line arrived
}

// NewHub listens on a free loopback port.
func NewHub(store *Store) (*Hub, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("chaos: hub listen: %w", err)
	}
	h := &Hub{store: store, ln: ln, conns: make(map[net.Conn]bool), changed: make(chan struct{})}
	h.wg.Go(h.accept)
	return h, nil
}

// Addr returns the address programs dial.
func (h *Hub) Addr() string { return h.ln.Addr().String() }

// Changed returns a channel closed at the next event of any peer (or when
// the hub closes).
func (h *Hub) Changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

// Close stops accepting, closes every connection and waits for the hub's
// goroutines. Call it once every program has exited.
func (h *Hub) Close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		h.ln.Close()
		for c := range h.conns {
			c.Close()
		}
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// Peers returns every peer so far. The slice is a copy; the peers are not.
func (h *Hub) Peers() []*Peer {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Peer(nil), h.peers...)
}

// Errors returns the protocol errors seen: lines that did not parse.
func (h *Hub) Errors() []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]error(nil), h.errs...)
}

// TermState returns what the peer of identity reported about its term with
// fence: when it was elected (0 if never), and when it stopped (0 while it
// acts). A peer whose connection closed while the term acted stopped then.
func (h *Hub) TermState(identity string, fence int64) (elected, stopped int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.peers {
		if p.Identity != identity {
			continue
		}
		for _, ev := range p.Events {
			switch {
			case ev.Kind == wire.Elected && ev.Fence == fence:
				elected, stopped = ev.T, 0
			case ev.Kind == wire.Stopped && ev.Fence == fence && elected != 0:
				stopped = ev.T
			}
		}
		if elected != 0 {
			if stopped == 0 && p.Closed != 0 {
				stopped = p.Closed
			}
			return elected, stopped
		}
	}
	return 0, 0
}

func (h *Hub) accept() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			c.Close()
			return
		}
		h.conns[c] = true
		h.mu.Unlock()
		h.wg.Go(func() { h.serve(c) })
	}
}

// serve reads one connection until it ends.
func (h *Hub) serve(c net.Conn) {
	defer func() {
		h.mu.Lock()
		delete(h.conns, c)
		h.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReader(c)
	var p *Peer
	for {
		line, err := r.ReadString('\n')
		now := wire.Now()
		if err != nil {
			if p != nil {
				h.record(func() { p.Closed = now })
			}
			return
		}
		m, err := wire.Parse(strings.TrimSuffix(line, "\n"))
		if err != nil || (p == nil) != (m.Kind == wire.Hello) {
			if err == nil {
				err = fmt.Errorf("chaos: hub: %q out of place", line)
			}
			h.mu.Lock()
			h.errs = append(h.errs, err)
			h.mu.Unlock()
			return
		}
		switch m.Kind {
		case wire.Hello:
			h.record(func() {
				p = &Peer{ID: len(h.peers), Identity: m.Identity, Role: m.Role, PID: m.PID, Opened: now}
				h.peers = append(h.peers, p)
			})
		case wire.Write:
			accepted, highest := h.store.Write(m.Fence, p.Identity, p.ID, wire.Now)
			if _, err := c.Write([]byte(wire.Answer(accepted, highest) + "\n")); err != nil {
				h.record(func() { p.Closed = now })
				return
			}
		default:
			h.record(func() { p.Events = append(p.Events, Event{Msg: m, Recv: now}) })
		}
	}
}

// record applies change under the lock and wakes the waiters of Changed.
func (h *Hub) record(change func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	change()
	close(h.changed)
	h.changed = make(chan struct{})
}
