package callbacks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// orderLog records calls in order.
type orderLog struct {
	mu    sync.Mutex
	calls []string
}

func (o *orderLog) add(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, s)
}

func (o *orderLog) get() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.calls)
}

// recordingSet returns a set whose OnLost and OnNewLeader record name.
func recordingSet(o *orderLog, name string) Callbacks {
	return Callbacks{
		OnLost:      func(t Term) { o.add(fmt.Sprintf("%s lost %d", name, t.Fence)) },
		OnNewLeader: func(l Leader) { o.add(fmt.Sprintf("%s leader %q", name, l.Identity)) },
	}
}

func TestChainOrder(t *testing.T) {
	var o orderLog
	cb := Chain(recordingSet(&o, "1"), Callbacks{}, recordingSet(&o, "2"), Callbacks{OnLost: func(Term) { o.add("3 lost") }})
	cb.OnNewLeader(Leader{Identity: "x"})
	cb.OnLost(Term{Fence: 4})
	want := []string{`1 leader "x"`, `2 leader "x"`, "1 lost 4", "2 lost 4", "3 lost"}
	if got := o.get(); !slices.Equal(got, want) {
		t.Errorf("Chain calls = %q; want %q", got, want)
	}
}

func TestChainValidate(t *testing.T) {
	elected := Callbacks{OnElected: func(context.Context, Term) {}}
	tests := []struct {
		name string
		sets []Callbacks
		want error
	}{
		{"no sets", nil, ErrNoOnElected},
		{"no OnElected", []Callbacks{ExitOnLostFunc(1, func(int) {}), {}}, ErrNoOnElected},
		{"one OnElected", []Callbacks{{}, elected}, nil},
		{"two OnElected", []Callbacks{elected, elected}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Chain(tt.sets...).Validate(); !errors.Is(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("Chain(%d sets).Validate() = %v; want %v", len(tt.sets), got, tt.want)
			}
		})
	}
}

func TestChainNilFields(t *testing.T) {
	cb := Chain(Callbacks{OnElected: func(context.Context, Term) {}})
	if cb.OnLost != nil || cb.OnNewLeader != nil {
		t.Errorf("Chain(only OnElected): OnLost nil = %v, OnNewLeader nil = %v; want true, true", cb.OnLost == nil, cb.OnNewLeader == nil)
	}
}

func TestChainOnElectedConcurrent(t *testing.T) {
	const n = 3
	started := make(chan struct{}, n)
	allStarted := make(chan struct{})
	var o orderLog
	set := func(i int) Callbacks {
		return Callbacks{OnElected: func(ctx context.Context, term Term) {
			started <- struct{}{}
			<-allStarted // only possible if all n run at once
			<-ctx.Done()
			o.add(fmt.Sprintf("%d returned", i))
		}}
	}
	cb := Chain(set(0), set(1), set(2))

	ctx, cancel := context.WithCancel(context.Background())
	chainDone := make(chan struct{})
	go func() {
		defer close(chainDone)
		cb.OnElected(ctx, Term{Fence: 1})
		o.add("chain returned")
	}()
	for range n {
		select {
		case <-started:
		case <-time.After(10 * time.Second): // a failure guard, not synchronisation
			close(allStarted)
			cancel()
			<-chainDone
			t.Fatalf("Chain's OnElected functions did not all start together")
		}
	}
	close(allStarted)
	cancel()
	<-chainDone

	got := o.get()
	if len(got) != n+1 || got[n] != "chain returned" {
		t.Errorf("Chain OnElected events = %q; want %d returns, then %q", got, n, "chain returned")
	}
}

func TestChainOnElectedPanic(t *testing.T) {
	var siblingSawCancel bool
	cb := Chain(
		Callbacks{OnElected: func(context.Context, Term) { panic("boom") }},
		Callbacks{OnElected: func(ctx context.Context, _ Term) {
			<-ctx.Done()
			siblingSawCancel = true
		}},
	)
	r := func() (r any) {
		defer func() { r = recover() }()
		cb.OnElected(context.Background(), Term{Fence: 1})
		return nil
	}()
	ps, ok := r.(panics)
	if !ok || len(ps) != 1 || ps[0].value != "boom" || !strings.Contains(string(ps[0].stack), "chain_test.go") {
		t.Errorf("Chain OnElected panicked with %v; want panics{boom} with the stack of the panic", r)
	}
	if !siblingSawCancel {
		t.Errorf("sibling OnElected saw ctx cancelled = false; want true")
	}
}

func TestChainPanicsDoNotStopOthers(t *testing.T) {
	var o orderLog
	boom := func(s string) Callbacks {
		return Callbacks{OnLost: func(Term) { panic(s) }, OnNewLeader: func(Leader) { panic(s) }}
	}
	inner := Chain(boom("first"), recordingSet(&o, "1"))
	cb := Chain(inner, boom("second"), recordingSet(&o, "2"))
	tests := []struct {
		name string
		call func()
		want []string
	}{
		{"OnLost", func() { cb.OnLost(Term{Fence: 1}) }, []string{"1 lost 1", "2 lost 1"}},
		{"OnNewLeader", func() { cb.OnNewLeader(Leader{Identity: "x"}) }, []string{`1 leader "x"`, `2 leader "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o = orderLog{}
			r := func() (r any) {
				defer func() { r = recover() }()
				tt.call()
				return nil
			}()
			if got := o.get(); !slices.Equal(got, tt.want) {
				t.Errorf("%s calls = %q; want %q", tt.name, got, tt.want)
			}
			ps, ok := r.(panics)
			if !ok || len(ps) != 2 || ps[0].value != "first" || ps[1].value != "second" {
				t.Errorf("%s panicked with %v; want panics{first, second}", tt.name, r)
			}
		})
	}
}

func TestChainPanicsLoggedByDispatcher(t *testing.T) {
	cb := Chain(
		Callbacks{OnElected: func(context.Context, Term) { panic("left") }},
		Callbacks{OnElected: func(context.Context, Term) { panic("right") }},
	)
	var logs lockedBuffer
	d := NewDispatcher(cb, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	d.Elected(Term{Fence: 1})
	d.Close()
	log := logs.String()
	for _, want := range []string{"panic=left", "panic=right"} {
		if !strings.Contains(log, want) {
			t.Errorf("log = %q; want it to contain %q", log, want)
		}
	}
}

func TestPanicsString(t *testing.T) {
	ps := panics{{value: "a", stack: []byte("stack a")}, {value: 2, stack: []byte("stack 2")}}
	want := "callbacks: panic in chained callbacks:\na\nstack a\n2\nstack 2"
	if got := ps.String(); got != want {
		t.Errorf("panics.String() = %q; want %q", got, want)
	}
}
