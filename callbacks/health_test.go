package callbacks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// healthBody mirrors healthReport with the renewal age as a plain pointer, so
// that null and 0 differ.
type healthBody struct {
	Role             string `json:"role"`
	Identity         string `json:"identity"`
	Fence            int64  `json:"fence"`
	Leader           string `json:"leader"`
	LastRenewalMsAgo *int64 `json:"last_renewal_ms_ago"`
}

func ms(n int64) *int64 { return &n }

func get(t *testing.T, h *Health) (int, healthBody) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	var b healthBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("json.Unmarshal(%q) = %v; want nil", rec.Body.String(), err)
	}
	return rec.Code, b
}

func fmtMs(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestHealth(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	h := NewHealth(10 * time.Second)
	h.now = clk.Now
	cb := h.Callbacks()

	term := Term{Name: "e", Identity: "me", Fence: 4}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	electedDone := make(chan struct{})

	// The steps run in order, each against the state the ones before left.
	steps := []struct {
		name     string
		do       func()
		wantCode int
		want     healthBody
	}{
		{"before any term", func() {}, 200,
			healthBody{Role: "standby"}},
		{"other leader observed", func() { cb.OnNewLeader(Leader{Identity: "other", Fence: 3}) }, 200,
			healthBody{Role: "standby", Leader: "other"}},
		{"renewal while standby ignored", func() { h.Renewed(clk.Now()) }, 200,
			healthBody{Role: "standby", Leader: "other"}},
		{"elected", func() {
			wctx := newWaitCtx(ctx)
			go func() { defer close(electedDone); cb.OnElected(wctx, term) }()
			<-wctx.waiting
		}, 200, healthBody{Role: "leader", Identity: "me", Fence: 4, Leader: "me", LastRenewalMsAgo: ms(0)}},
		{"5s silent", func() { clk.Advance(5 * time.Second) }, 200,
			healthBody{Role: "leader", Identity: "me", Fence: 4, Leader: "me", LastRenewalMsAgo: ms(5000)}},
		{"11s silent", func() { clk.Advance(6 * time.Second) }, 503,
			healthBody{Role: "leader", Identity: "me", Fence: 4, Leader: "me", LastRenewalMsAgo: ms(11000)}},
		{"renewed 1s ago", func() { h.Renewed(clk.Now().Add(-time.Second)) }, 200,
			healthBody{Role: "leader", Identity: "me", Fence: 4, Leader: "me", LastRenewalMsAgo: ms(1000)}},
		{"older renewal ignored", func() { h.Renewed(clk.Now().Add(-3 * time.Second)) }, 200,
			healthBody{Role: "leader", Identity: "me", Fence: 4, Leader: "me", LastRenewalMsAgo: ms(1000)}},
		{"silent exactly maxSilence", func() { clk.Advance(9 * time.Second) }, 200,
			healthBody{Role: "leader", Identity: "me", Fence: 4, Leader: "me", LastRenewalMsAgo: ms(10000)}},
		{"silent just over maxSilence", func() { clk.Advance(time.Millisecond) }, 503,
			healthBody{Role: "leader", Identity: "me", Fence: 4, Leader: "me", LastRenewalMsAgo: ms(10001)}},
		{"renewal in the future counts as now", func() { h.Renewed(clk.Now().Add(time.Second)) }, 200,
			healthBody{Role: "leader", Identity: "me", Fence: 4, Leader: "me", LastRenewalMsAgo: ms(0)}},
		{"OnLost of an older term ignored", func() { cb.OnLost(Term{Identity: "me", Fence: 2}) }, 200,
			healthBody{Role: "leader", Identity: "me", Fence: 4, Leader: "me", LastRenewalMsAgo: ms(0)}},
		{"ctx cancelled", func() { cancel(); <-electedDone }, 200,
			healthBody{Role: "standby", Identity: "me", Leader: "other"}},
		{"OnLost", func() { cb.OnLost(term) }, 200,
			healthBody{Role: "standby", Identity: "me", Leader: "other"}},
		{"long silence as standby", func() { clk.Advance(time.Hour) }, 200,
			healthBody{Role: "standby", Identity: "me", Leader: "other"}},
		{"no leader observed", func() { cb.OnNewLeader(Leader{}) }, 200,
			healthBody{Role: "standby", Identity: "me"}},
	}
	for _, s := range steps {
		s.do()
		code, got := get(t, h)
		if code != s.wantCode {
			t.Errorf("%s: ServeHTTP status = %d; want %d", s.name, code, s.wantCode)
		}
		if got.Role != s.want.Role || got.Identity != s.want.Identity || got.Fence != s.want.Fence ||
			got.Leader != s.want.Leader || fmtMs(got.LastRenewalMsAgo) != fmtMs(s.want.LastRenewalMsAgo) {
			t.Errorf("%s: ServeHTTP body = %+v (ms %v); want %+v (ms %v)",
				s.name, got, fmtMs(got.LastRenewalMsAgo), s.want, fmtMs(s.want.LastRenewalMsAgo))
		}
	}
}

func TestHealthMaxSilence(t *testing.T) {
	tests := []struct {
		name       string
		maxSilence time.Duration
		silent     time.Duration
		want       int
	}{
		{"within", time.Second, 999 * time.Millisecond, 200},
		{"at", time.Second, time.Second, 200},
		{"over", time.Second, 1001 * time.Millisecond, 503},
		{"check off at zero", 0, 24 * time.Hour, 200},
		{"check off when negative", -time.Second, 24 * time.Hour, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1e9, 0)}
			h := NewHealth(tt.maxSilence)
			h.now = clk.Now
			ctx, cancel := context.WithCancel(context.Background())
			wctx := newWaitCtx(ctx)
			done := make(chan struct{})
			go func() { defer close(done); h.Callbacks().OnElected(wctx, Term{Identity: "me", Fence: 1}) }()
			<-wctx.waiting
			clk.Advance(tt.silent)
			code, _ := get(t, h)
			cancel()
			<-done
			if code != tt.want {
				t.Errorf("NewHealth(%v) after %v silent: status = %d; want %d", tt.maxSilence, tt.silent, code, tt.want)
			}
		})
	}
}

func TestHealthThroughDispatcher(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	h := NewHealth(time.Second)
	h.now = clk.Now
	hc := h.Callbacks()
	// Wrap Health's OnElected so the test learns when it is waiting.
	waiting := make(chan (<-chan struct{}), 1)
	wrapped := hc
	wrapped.OnElected = func(ctx context.Context, term Term) {
		wctx := newWaitCtx(ctx)
		waiting <- wctx.waiting
		hc.OnElected(wctx, term)
	}
	d := NewDispatcher(Chain(Callbacks{OnElected: func(ctx context.Context, _ Term) { <-ctx.Done() }}, wrapped))
	d.Elected(Term{Identity: "me", Fence: 9})
	<-<-waiting
	if code, b := get(t, h); code != 200 || b.Role != "leader" || b.Fence != 9 {
		t.Errorf("while leading: status %d, body %+v; want 200, leader, fence 9", code, b)
	}
	d.Lost()
	if code, b := get(t, h); code != 200 || b.Role != "standby" {
		t.Errorf("after Lost: status %d, body %+v; want 200, standby", code, b)
	}
	d.Close()
}
