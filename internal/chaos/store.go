package chaos

import "sync"

// Store is the fenced resource the leaders write to: it accepts a write only
// when its fence is at least the highest it has accepted, as docs/safety.md
// tells a protected resource to do, and records every write, accepted or
// refused. It is safe for concurrent use.
type Store struct {
	mu      sync.Mutex
	highest int64   // guarded by mu
	writes  []Write // guarded by mu
}

// Write is one write the store was asked for.
type Write struct {
	Fence    int64  // the writer's fence
	Writer   string // the identity of the writing term
	Peer     int    // the hub connection it came on
	At       int64  // shared clock, when the store decided
	Accepted bool   // fence >= Highest
	Highest  int64  // the highest fence accepted before this write
}

// Write decides one write and records it: accepted when fence is at least
// the highest fence accepted so far, which it then becomes. It returns the
// decision and the highest fence accepted before.
func (s *Store) Write(fence int64, writer string, peer int, at func() int64) (accepted bool, highest int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	highest = s.highest
	accepted = fence >= highest
	if accepted {
		s.highest = fence
	}
	s.writes = append(s.writes, Write{Fence: fence, Writer: writer, Peer: peer, At: at(), Accepted: accepted, Highest: highest})
	return accepted, highest
}

// Writes returns a copy of every write, in the order decided.
func (s *Store) Writes() []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Write(nil), s.writes...)
}
