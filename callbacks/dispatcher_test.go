package callbacks

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// churnRecorder checks the dispatcher's contract from inside the callbacks.
type churnRecorder struct {
	exclusive atomic.Int32 // OnLost and OnNewLeader calls in progress
	electing  atomic.Int32 // OnElected calls in progress

	mu         sync.Mutex // guards the fields below
	events     []string   // "elected N", "returned N", "lost N"
	ctxs       map[int64]context.Context
	returned   map[int64]bool
	leaders    []Leader
	violations []string
}

func (r *churnRecorder) violate(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.violations) < 20 {
		r.violations = append(r.violations, fmt.Sprintf(format, args...))
	}
}

func (r *churnRecorder) callbacks() Callbacks {
	return Callbacks{
		OnElected: func(ctx context.Context, term Term) {
			r.electing.Add(1)
			defer r.electing.Add(-1)
			r.mu.Lock()
			r.events = append(r.events, fmt.Sprint("elected ", term.Fence))
			r.ctxs[term.Fence] = ctx
			r.mu.Unlock()
			if term.Fence%2 == 0 { // half the terms work until the end, half return at once
				<-ctx.Done()
			}
			r.mu.Lock()
			r.events = append(r.events, fmt.Sprint("returned ", term.Fence))
			r.returned[term.Fence] = true
			r.mu.Unlock()
		},
		OnLost: func(term Term) {
			if n := r.exclusive.Add(1); n != 1 {
				r.violate("OnLost(%d) overlaps %d other callbacks", term.Fence, n-1)
			}
			defer r.exclusive.Add(-1)
			if n := r.electing.Load(); n != 0 {
				r.violate("OnLost(%d) overlaps %d OnElected", term.Fence, n)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if ctx := r.ctxs[term.Fence]; ctx == nil || ctx.Err() == nil {
				r.violations = append(r.violations, fmt.Sprintf("OnLost(%d): ctx not cancelled", term.Fence))
			}
			if !r.returned[term.Fence] {
				r.violations = append(r.violations, fmt.Sprintf("OnLost(%d) before OnElected returned", term.Fence))
			}
			r.events = append(r.events, fmt.Sprint("lost ", term.Fence))
		},
		OnNewLeader: func(l Leader) {
			if n := r.exclusive.Add(1); n != 1 {
				r.violate("OnNewLeader(%+v) overlaps %d other callbacks", l, n-1)
			}
			defer r.exclusive.Add(-1)
			r.mu.Lock()
			defer r.mu.Unlock()
			r.leaders = append(r.leaders, l)
		},
	}
}

func TestDispatcherChurn(t *testing.T) {
	const rounds = 1000
	r := &churnRecorder{ctxs: map[int64]context.Context{}, returned: map[int64]bool{}}
	d := NewDispatcher(r.callbacks())

	var wg sync.WaitGroup
	wg.Go(func() { // another observer of the leader, as a watch loop would be
		for i := range 5 * rounds {
			switch i % 3 {
			case 0:
				d.NewLeader(Leader{})
			default:
				d.NewLeader(Leader{Identity: "other", Fence: int64(i % 7)})
			}
		}
	})
	for i := int64(1); i <= rounds; i++ {
		d.Elected(Term{Name: "churn", Identity: "me", Fence: i})
		d.NewLeader(Leader{Identity: "me", Fence: i})
		if i%3 == 0 {
			d.NewLeader(Leader{})
		}
		d.Lost()
	}
	wg.Wait()
	d.Close()

	if len(r.violations) > 0 {
		t.Fatalf("contract violations:\n%s", strings.Join(r.violations, "\n"))
	}

	// Per term: elected < returned < lost < next term's elected.
	pos := map[string]int{}
	for i, e := range r.events {
		if _, dup := pos[e]; dup {
			t.Fatalf("event %q recorded twice", e)
		}
		pos[e] = i
	}
	elected, lost := 0, 0
	for _, e := range r.events {
		switch {
		case strings.HasPrefix(e, "elected "):
			elected++
		case strings.HasPrefix(e, "lost "):
			lost++
		}
	}
	if elected != rounds || lost != rounds {
		t.Fatalf("OnElected calls = %d, OnLost calls = %d; want %d each", elected, lost, rounds)
	}
	for i := 1; i <= rounds; i++ {
		el, ret, lo := pos[fmt.Sprint("elected ", i)], pos[fmt.Sprint("returned ", i)], pos[fmt.Sprint("lost ", i)]
		if !(el < ret && ret < lo) {
			t.Errorf("term %d: elected at %d, returned at %d, lost at %d; want increasing", i, el, ret, lo)
		}
		if next, ok := pos[fmt.Sprint("elected ", i+1)]; ok && next < lo {
			t.Errorf("term %d elected at %d, before term %d lost at %d", i+1, next, i, lo)
		}
	}

	// OnNewLeader: changes only, and this goroutine's reports in call order.
	var mine []int64
	for i, l := range r.leaders {
		if i > 0 && r.leaders[i-1].Same(l) {
			t.Errorf("OnNewLeader #%d = %+v; same as the one before", i, l)
		}
		if l.Identity == "me" {
			mine = append(mine, l.Fence)
		}
	}
	if len(mine) != rounds || !slices.IsSorted(mine) {
		t.Errorf("OnNewLeader for this process: %d reports, sorted %v; want %d, sorted", len(mine), slices.IsSorted(mine), rounds)
	}
}

// counter counts callbacks and records their arguments.
type counter struct {
	mu      sync.Mutex
	elected []Term
	lost    []Term
	leaders []Leader
	ctxs    []context.Context
}

// callbacks returns a set whose OnElected waits for its ctx when wait is set.
func (c *counter) callbacks(wait bool) Callbacks {
	return Callbacks{
		OnElected: func(ctx context.Context, term Term) {
			c.mu.Lock()
			c.elected = append(c.elected, term)
			c.ctxs = append(c.ctxs, ctx)
			c.mu.Unlock()
			if wait {
				<-ctx.Done()
			}
		},
		OnLost: func(term Term) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.lost = append(c.lost, term)
		},
		OnNewLeader: func(l Leader) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.leaders = append(c.leaders, l)
		},
	}
}

func (c *counter) counts() (elected, lost, leaders int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.elected), len(c.lost), len(c.leaders)
}

func TestDispatcherTermTransitions(t *testing.T) {
	term1 := Term{Name: "e", Identity: "me", Fence: 1}
	term2 := Term{Name: "e", Identity: "me", Fence: 2}
	tests := []struct {
		name        string
		run         func(d *Dispatcher)
		wantElected int
		wantLost    int
	}{
		{"Lost without Elected", func(d *Dispatcher) { d.Lost() }, 0, 0},
		{"Lost twice", func(d *Dispatcher) { d.Elected(term1); d.Lost(); d.Lost() }, 1, 1},
		{"Elected while active", func(d *Dispatcher) { d.Elected(term1); d.Elected(term2); d.Lost() }, 1, 1},
		{"two terms", func(d *Dispatcher) { d.Elected(term1); d.Lost(); d.Elected(term2); d.Lost() }, 2, 2},
		{"Close ends the term", func(d *Dispatcher) { d.Elected(term1) }, 1, 1},
		{"Close then Elected", func(d *Dispatcher) { d.Close(); d.Elected(term1); d.Lost() }, 0, 0},
		{"Close twice", func(d *Dispatcher) { d.Elected(term1); d.Close(); d.Close() }, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c counter
			var logs lockedBuffer
			d := NewDispatcher(c.callbacks(true), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			tt.run(d)
			d.Close()
			elected, lost, _ := c.counts()
			if elected != tt.wantElected || lost != tt.wantLost {
				t.Errorf("OnElected, OnLost calls = %d, %d; want %d, %d", elected, lost, tt.wantElected, tt.wantLost)
			}
			for i, term := range c.lost {
				if term != c.elected[i] {
					t.Errorf("OnLost #%d(%+v); want the term of OnElected #%d, %+v", i, term, i, c.elected[i])
				}
				if c.ctxs[i].Err() == nil {
					t.Errorf("OnElected #%d ctx.Err() = nil after OnLost; want context.Canceled", i)
				}
			}
			if _, ok := d.Active(); ok {
				t.Errorf("Active() after Close = _, true; want false")
			}
		})
	}
}

func TestDispatcherActive(t *testing.T) {
	var c counter
	d := NewDispatcher(c.callbacks(true))
	defer d.Close()
	term := Term{Name: "e", Identity: "me", Fence: 5}

	if got, ok := d.Active(); ok {
		t.Errorf("Active() before Elected = %+v, true; want false", got)
	}
	d.Elected(term)
	if got, ok := d.Active(); !ok || got != term {
		t.Errorf("Active() after Elected = %+v, %v; want %+v, true", got, ok, term)
	}
	d.Lost()
	if got, ok := d.Active(); ok {
		t.Errorf("Active() after Lost = %+v, true; want false", got)
	}
}

func TestDispatcherElectedIgnoredIsLogged(t *testing.T) {
	var c counter
	var logs lockedBuffer
	d := NewDispatcher(c.callbacks(true), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	d.Elected(Term{Fence: 1})
	d.Elected(Term{Fence: 2})
	d.Close()
	if got := logs.String(); !strings.Contains(got, "Elected ignored") || !strings.Contains(got, "active_fence=1") {
		t.Errorf("log = %q; want a warning naming the active fence 1", got)
	}
}

func TestDispatcherNewLeaderDedupe(t *testing.T) {
	a1 := Leader{Identity: "a", Fence: 1, TTL: 5}
	a1later := Leader{Identity: "a", Fence: 1, TTL: 3}
	a2 := Leader{Identity: "a", Fence: 2}
	b3 := Leader{Identity: "b", Fence: 3}
	none := Leader{}
	tests := []struct {
		name string
		in   []Leader
		want []Leader
	}{
		{"first none is reported", []Leader{none}, []Leader{none}},
		{"repeats dropped", []Leader{a1, a1, a1}, []Leader{a1}},
		{"ttl ignored", []Leader{a1, a1later}, []Leader{a1}},
		{"same identity new term", []Leader{a1, a2}, []Leader{a1, a2}},
		{"to none and back", []Leader{a1, none, none, a1}, []Leader{a1, none, a1}},
		{"none with a fence is none", []Leader{none, {Fence: 4}}, []Leader{none}},
		{"handover", []Leader{a2, none, b3, b3}, []Leader{a2, none, b3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c counter
			d := NewDispatcher(c.callbacks(false))
			for _, l := range tt.in {
				d.NewLeader(l)
			}
			d.Close()
			if !slices.Equal(c.leaders, tt.want) {
				t.Errorf("OnNewLeader after NewLeader(%v) = %v; want %v", tt.in, c.leaders, tt.want)
			}
		})
	}
}

func TestDispatcherCloseDrainsQueue(t *testing.T) {
	const n = 100
	gate := make(chan struct{})
	var mu sync.Mutex
	var got []int64
	d := NewDispatcher(Callbacks{
		OnElected: func(context.Context, Term) {},
		OnNewLeader: func(l Leader) {
			<-gate // hold the queue until every NewLeader is queued
			mu.Lock()
			defer mu.Unlock()
			got = append(got, l.Fence)
		},
	})
	for i := range int64(n) {
		d.NewLeader(Leader{Identity: "a", Fence: i})
	}
	close(gate)
	d.Close()
	d.NewLeader(Leader{Identity: "after close"})
	if len(got) != n || !slices.IsSorted(got) {
		t.Errorf("OnNewLeader calls after Close = %d (sorted %v); want %d, sorted", len(got), slices.IsSorted(got), n)
	}
}

func TestDispatcherConcurrentClose(t *testing.T) {
	var c counter
	d := NewDispatcher(c.callbacks(true))
	d.Elected(Term{Fence: 1})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(d.Close)
		wg.Go(d.Lost)
	}
	wg.Wait()
	if elected, lost, _ := c.counts(); elected != 1 || lost != 1 {
		t.Errorf("OnElected, OnLost calls = %d, %d; want 1, 1", elected, lost)
	}
}

func TestDispatcherLostWaitsForOnLost(t *testing.T) {
	var lostReturned atomic.Bool
	d := NewDispatcher(Callbacks{
		OnElected: func(context.Context, Term) {},
		OnLost:    func(Term) { lostReturned.Store(true) },
	})
	defer d.Close()
	d.Elected(Term{Fence: 1})
	d.Lost()
	if !lostReturned.Load() {
		t.Errorf("OnLost returned before Lost() returned = false; want true")
	}
}

func TestDispatcherRecoversPanics(t *testing.T) {
	tests := []string{"OnElected", "OnLost", "OnNewLeader"}
	for _, panicIn := range tests {
		t.Run(panicIn, func(t *testing.T) {
			var c counter
			cb := c.callbacks(true)
			switch panicIn {
			case "OnElected":
				cb.OnElected = func(ctx context.Context, term Term) {
					c.callbacks(false).OnElected(ctx, term)
					panic("boom")
				}
			case "OnLost":
				orig := cb.OnLost
				cb.OnLost = func(term Term) { orig(term); panic("boom") }
			case "OnNewLeader":
				orig := cb.OnNewLeader
				cb.OnNewLeader = func(l Leader) { orig(l); panic("boom") }
			}
			var logs lockedBuffer
			d := NewDispatcher(cb, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			d.Elected(Term{Name: "e", Identity: "me", Fence: 1})
			d.NewLeader(Leader{Identity: "me", Fence: 1})
			d.Lost()
			d.NewLeader(Leader{Identity: "b", Fence: 2})
			d.Elected(Term{Name: "e", Identity: "me", Fence: 3})
			d.Close()

			if elected, lost, leaders := c.counts(); elected != 2 || lost != 2 || leaders != 2 {
				t.Errorf("OnElected, OnLost, OnNewLeader calls = %d, %d, %d; want 2, 2, 2", elected, lost, leaders)
			}
			log := logs.String()
			for _, want := range []string{"callback panicked", "callback=" + panicIn, "panic=boom", "stack="} {
				if !strings.Contains(log, want) {
					t.Errorf("log = %q; want it to contain %q", log, want)
				}
			}
		})
	}
}

func TestDispatcherNilCallbacks(t *testing.T) {
	d := NewDispatcher(Callbacks{})
	d.NewLeader(Leader{Identity: "a"})
	d.Elected(Term{Fence: 1})
	if _, ok := d.Active(); !ok {
		t.Errorf("Active() with nil OnElected = _, false; want true until Lost")
	}
	d.Lost()
	d.Close()
}
