package election

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestHealthy(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	a := g.add("a", nil)
	if err := a.e.Healthy(time.Nanosecond); err != nil {
		t.Errorf("Healthy before Run = %v; want nil (not leading)", err)
	}
	a.start()
	g.log.await(t, 0, "election", isElected)
	if err := a.e.Healthy(0); err != nil {
		t.Errorf("Healthy(0) while leading = %v; want nil", err)
	}
	err := a.e.Healthy(time.Nanosecond)
	if !errors.Is(err, ErrNotRenewing) {
		t.Errorf("Healthy(1ns) = %v; want ErrNotRenewing", err)
	}
	a.stop()
	if err := a.e.Healthy(time.Nanosecond); err != nil {
		t.Errorf("Healthy after Run = %v; want nil", err)
	}
}

// TestHealthHandler: the handler is built from the Elector alone, before
// Run, and follows the leadership and its renewals with nothing else wired
// (a leader that kept renewing past maxSilence used to answer 503 when the
// renewals were not passed on by hand).
func TestHealthHandler(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	a, b := g.add("a", nil), g.add("b", nil)
	maxSilence := 2 * testRetryPeriod
	ha, hb := HealthHandler(a.e, maxSilence), HealthHandler(b.e, 0)

	if code, rep := get(t, ha); code != http.StatusOK || rep.Role != "standby" || rep.Identity != "a" || rep.Leader != "" || rep.LastRenewalMsAgo != nil {
		t.Errorf("before Run: %d %+v; want 200, a standby that knows no leader", code, rep)
	}
	a.start()
	elected, cur := g.log.await(t, 0, "election of a", isElected)
	b.start()
	g.log.await(t, 0, "b seeing a lead", func(ev event) bool { return ev.kind == evLeader && ev.id == "b" && ev.leader.Identity == "a" })
	// Longer than maxSilence: the handler must have seen the renewals.
	for range 4 {
		_, cur = g.log.await(t, cur, "a renewal of a", func(ev event) bool { return ev.kind == evRenew && ev.id == "a" })
	}
	code, rep := get(t, ha)
	if code != http.StatusOK || rep.Role != "leader" || rep.Fence != elected.fence || rep.Leader != "a" ||
		rep.LastRenewalMsAgo == nil || *rep.LastRenewalMsAgo > maxSilence.Milliseconds() {
		t.Errorf("leader after 4 renewals: %d %+v; want 200, role leader, fence %d, a renewal under %v ago", code, rep, elected.fence, maxSilence)
	}
	if code, rep := get(t, hb); code != http.StatusOK || rep.Role != "standby" || rep.Leader != "a" || rep.Fence != 0 {
		t.Errorf("standby: %d %+v; want 200, role standby, leader a", code, rep)
	}
	// Any leader is silent for longer than a nanosecond.
	if code, rep := get(t, HealthHandler(a.e, time.Nanosecond)); code != http.StatusServiceUnavailable || rep.Role != "leader" {
		t.Errorf("leader with maxSilence 1ns: %d %+v; want 503, role leader", code, rep)
	}
	a.stop()
	b.stop()
	if code, rep := get(t, ha); code != http.StatusOK || rep.Role != "standby" || rep.Leader != "" {
		t.Errorf("after Run: %d %+v; want 200, a standby that knows no leader", code, rep)
	}
}

// get serves one GET with h and decodes the report.
func get(t *testing.T, h http.Handler) (int, healthReport) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	var rep healthReport
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("health body %q: %v", rec.Body.String(), err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	return rec.Code, rep
}
