package callbacks

import (
	"context"
	"slices"
	"sync"
	"testing"
)

func TestExitOnLostFunc(t *testing.T) {
	for _, code := range []int{0, 1, 3, 125} {
		var got []int
		cb := ExitOnLostFunc(code, func(c int) { got = append(got, c) })
		if cb.OnElected != nil || cb.OnNewLeader != nil {
			t.Errorf("ExitOnLostFunc(%d) sets OnElected or OnNewLeader; want OnLost only", code)
		}
		cb.OnLost(Term{Fence: 1})
		if want := []int{code}; !slices.Equal(got, want) {
			t.Errorf("ExitOnLostFunc(%d).OnLost: exit calls = %v; want %v", code, got, want)
		}
	}
}

func TestExitOnLostDefaults(t *testing.T) {
	// The real exit is never called here; only its presence is checked.
	for name, cb := range map[string]Callbacks{
		"ExitOnLost(2)":          ExitOnLost(2),
		"ExitOnLostFunc(2, nil)": ExitOnLostFunc(2, nil),
	} {
		if cb.OnLost == nil || cb.OnElected != nil || cb.OnNewLeader != nil {
			t.Errorf("%s = %+v; want OnLost only", name, cb)
		}
	}
}

func TestExitOnLostInDispatcher(t *testing.T) {
	var (
		mu     sync.Mutex
		events []string
	)
	add := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, s)
	}
	work := Callbacks{
		OnElected: func(ctx context.Context, _ Term) { <-ctx.Done(); add("work stopped") },
		OnLost:    func(Term) { add("flushed") },
	}
	d := NewDispatcher(Chain(work, ExitOnLostFunc(3, func(code int) { add("exit") })))
	d.Elected(Term{Fence: 1})
	d.Lost()
	d.Close()
	if want := []string{"work stopped", "flushed", "exit"}; !slices.Equal(events, want) {
		t.Errorf("events = %q; want %q", events, want)
	}
}
