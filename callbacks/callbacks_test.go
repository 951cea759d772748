package callbacks

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLeaderNone(t *testing.T) {
	tests := []struct {
		name string
		l    Leader
		want bool
	}{
		{"zero", Leader{}, true},
		{"fence without identity", Leader{Fence: 3, TTL: time.Second}, true},
		{"identity", Leader{Identity: "a"}, false},
		{"identity fence ttl", Leader{Identity: "a", Fence: 7, TTL: time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.l.None(); got != tt.want {
				t.Errorf("%+v.None() = %v; want %v", tt.l, got, tt.want)
			}
		})
	}
}

func TestSameLeader(t *testing.T) {
	a1 := Leader{Identity: "a", Fence: 1, TTL: time.Second}
	tests := []struct {
		name string
		a, b Leader
		want bool
	}{
		{"equal", a1, a1, true},
		{"ttl ignored", a1, Leader{Identity: "a", Fence: 1}, true},
		{"other fence", a1, Leader{Identity: "a", Fence: 2}, false},
		{"other identity", a1, Leader{Identity: "b", Fence: 1}, false},
		{"none and none", Leader{}, Leader{Fence: 9}, true},
		{"none and leader", Leader{}, a1, false},
		{"leader and none", a1, Leader{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Same(tt.b); got != tt.want {
				t.Errorf("(%+v).Same(%+v) = %v; want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestCallbacksValidate(t *testing.T) {
	elected := func(context.Context, Term) {}
	tests := []struct {
		name string
		cb   Callbacks
		want error
	}{
		{"zero", Callbacks{}, ErrNoOnElected},
		{"only optional", Callbacks{OnLost: func(Term) {}, OnNewLeader: func(Leader) {}}, ErrNoOnElected},
		{"only OnElected", Callbacks{OnElected: elected}, nil},
		{"all", Callbacks{OnElected: elected, OnLost: func(Term) {}, OnNewLeader: func(Leader) {}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cb.Validate(); !errors.Is(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("Validate() = %v; want %v", got, tt.want)
			}
		})
	}
}
