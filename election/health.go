package election

import (
	"encoding/json"
	"net/http"
	"time"
)

// HealthHandler returns an http.Handler that reports e's role and whether its
// leadership is alive, for load balancers and supervisors, as JSON:
//
//	{"role":"leader","identity":"a","fence":7,"leader":"a","last_renewal_ms_ago":120}
//
// The status code is e.Healthy(maxSilence): 200 for a standby and for a
// leader that renews, 503 for a leader whose last successful renewal is
// older than maxSilence (<= 0 means RenewDeadline: see Healthy for the
// threshold to choose). Route traffic on "role" ("leader" while IsLeader is
// true, else "standby"); restart on the status.
//
// The handler reads e itself, renewals included: there is nothing to chain
// into the callbacks or to pass as Config.OnRenew. For a standby, fence is 0,
// last_renewal_ms_ago is null and leader is the leader Run last observed
// ("" for none, or while Run is not running). It is safe for concurrent use,
// and may be built before Run starts.
func HealthHandler(e *Elector, maxSilence time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		status, rep := e.health(maxSilence)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(rep) // the client went away; nothing to do
	})
}

// healthReport is the JSON body served by HealthHandler.
type healthReport struct {
	// Role is "leader" or "standby".
	Role string `json:"role"`
	// Identity is this candidate's identity.
	Identity string `json:"identity"`
	// Fence is the fencing token of the current term; 0 when standby.
	Fence int64 `json:"fence"`
	// Leader is the identity of the leader: this candidate while leading,
	// else the one last observed; "" for none or unknown.
	Leader string `json:"leader"`
	// LastRenewalMsAgo is the age of the last successful renewal (or of the
	// acquisition), in milliseconds; null when standby.
	LastRenewalMsAgo *int64 `json:"last_renewal_ms_ago"`
}

// health returns the status code and body for e's current state.
func (e *Elector) health(maxSilence time.Duration) (int, healthReport) {
	tm, leading, last := e.snapshot()
	rep := healthReport{Role: "standby", Identity: e.cfg.Identity}
	if !leading {
		if l, ok := e.observedLeader(); ok {
			rep.Leader = l.Identity
		}
		return http.StatusOK, rep
	}
	ms := max(time.Since(last), 0).Milliseconds()
	rep.Role, rep.Fence, rep.Leader, rep.LastRenewalMsAgo = "leader", tm.Fence, tm.Identity, &ms
	if e.verdict(leading, last, maxSilence) != nil {
		return http.StatusServiceUnavailable, rep
	}
	return http.StatusOK, rep
}
