package callbacks

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Health reports this process's role and whether its leadership is alive, as
// an [http.Handler] for load balancers and supervisors. Chain
// [Health.Callbacks] with the program's own set and have the elector call
// [Health.Renewed] after each successful renewal.
//
// The status code is liveness: 200 for a standby, and for a leader whose last
// renewal is at most maxSilence old; 503 for a leader that has stopped
// renewing (its lock may already be someone else's, yet it has not noticed).
// To send traffic to the leader only, route on the "role" field.
//
// The role follows the callbacks: "leader" from the start of OnElected until
// its ctx is cancelled, "standby" otherwise. OnElected runs in its own
// goroutine, so the role turns to "leader" shortly after the elector's
// acquisition, not at the same instant.
//
// Health is safe for concurrent use.
type Health struct {
	maxSilence time.Duration
	now        func() time.Time // time.Now; tests replace it before use

	mu          sync.Mutex // guards the fields below
	leading     bool
	term        Term      // the current term while leading, else the latest one
	lastRenewal time.Time // acquisition or latest renewal of the current term
	leader      Leader    // latest leader reported by OnNewLeader
}

// NewHealth returns a Health that reports a leader as failing once its last
// renewal is older than maxSilence. A good maxSilence is the lease TTL: a
// leader that has not renewed for that long has lost its lock on the server.
// maxSilence <= 0 turns the check off: a leader is then always reported
// healthy.
func NewHealth(maxSilence time.Duration) *Health {
	return &Health{maxSilence: maxSilence, now: time.Now}
}

// Callbacks returns the set that keeps h up to date; chain it with the
// program's own: Chain(mine, h.Callbacks()). Its OnElected records the term
// and counts the acquisition as the first renewal, then waits for ctx to end.
func (h *Health) Callbacks() Callbacks {
	return Callbacks{
		OnElected: func(ctx context.Context, term Term) {
			h.mu.Lock()
			h.leading, h.term, h.lastRenewal = true, term, h.now()
			h.mu.Unlock()
			<-ctx.Done()
			h.stepDown(term)
		},
		OnLost: h.stepDown,
		OnNewLeader: func(l Leader) {
			h.mu.Lock()
			h.leader = l
			h.mu.Unlock()
		},
	}
}

// stepDown marks h standby if term is the one it reports as leading.
func (h *Health) stepDown(term Term) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.leading && h.term.Fence == term.Fence {
		h.leading = false
	}
}

// Renewed records a successful renewal made at at. The elector calls it after
// each one. It is ignored while h reports standby, and when at is older than
// the renewal already recorded.
func (h *Health) Renewed(at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.leading && at.After(h.lastRenewal) {
		h.lastRenewal = at
	}
}

// healthReport is the JSON body served by Health.
type healthReport struct {
	// Role is "leader" or "standby".
	Role string `json:"role"`
	// Identity is this process's identity, from its latest term; "" before it
	// was first elected.
	Identity string `json:"identity"`
	// Fence is the fencing token of the current term; 0 when standby.
	Fence int64 `json:"fence"`
	// Leader is the identity of the leader: this process while leading, else
	// the latest observed; "" for none or unknown.
	Leader string `json:"leader"`
	// LastRenewalMsAgo is the age of the latest renewal, in milliseconds;
	// null when standby.
	LastRenewalMsAgo *int64 `json:"last_renewal_ms_ago"`
}

// ServeHTTP writes h's report as JSON:
//
//	{"role":"leader","identity":"a","fence":7,"leader":"a","last_renewal_ms_ago":120}
//
// with status 200, or 503 when h is leading and its last renewal is older than
// maxSilence. For a standby, fence is 0, leader is the leader last observed,
// and last_renewal_ms_ago is null.
func (h *Health) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	status, rep := h.report()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(rep) // the client went away; nothing to do
}

// report returns the status code and body for the current state.
func (h *Health) report() (int, healthReport) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rep := healthReport{Role: "standby", Identity: h.term.Identity, Leader: h.leader.Identity}
	if !h.leading {
		return http.StatusOK, rep
	}
	age := max(h.now().Sub(h.lastRenewal), 0)
	ms := age.Milliseconds()
	rep.Role, rep.Fence, rep.Leader, rep.LastRenewalMsAgo = "leader", h.term.Fence, h.term.Identity, &ms
	if h.maxSilence > 0 && age > h.maxSilence {
		return http.StatusServiceUnavailable, rep
	}
	return http.StatusOK, rep
}
