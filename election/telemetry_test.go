package election

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/baton-dev/baton/lease"
	"github.com/baton-dev/baton/lock"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestTelemetry(t *testing.T) {
	checkLeaks(t)
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	ctx := testCtx(t)
	collect := func() metricdata.ResourceMetrics {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatalf("Collect = %v", err)
		}
		return rm
	}

	g := newGroup(t)
	// a and b share a MeterProvider: their identities tell their points apart.
	withOTel := func(c *Config) { c.TracerProvider, c.MeterProvider, c.MetricIdentity = tp, mp, true }
	a := g.add("a", withOTel).start()
	_, cur := g.log.await(t, 0, "election of a", isElected)
	b := g.add("b", withOTel).start()
	_, cur = g.log.await(t, cur, "a renewal", func(ev event) bool { return ev.kind == evRenew && ev.id == "a" })
	_, cur = g.log.await(t, cur, "a second renewal", func(ev event) bool { return ev.kind == evRenew && ev.id == "a" })

	// While a leads.
	rm := collect()
	if v, ok := gaugeInt(rm, MetricIsLeader, "a"); !ok || v != 1 {
		t.Errorf("%s{a} = %d, %v; want 1", MetricIsLeader, v, ok)
	}
	if v, ok := gaugeInt(rm, MetricIsLeader, "b"); !ok || v != 0 {
		t.Errorf("%s{b} = %d, %v; want 0", MetricIsLeader, v, ok)
	}
	if v, ok := gaugeFloat(rm, MetricSinceLastRenewal, "a"); !ok || v < 0 || v > testRenewDeadline.Seconds() {
		t.Errorf("%s{a} = %v, %v; want between 0 and %v", MetricSinceLastRenewal, v, ok, testRenewDeadline.Seconds())
	}
	if _, ok := gaugeFloat(rm, MetricSinceLastRenewal, "b"); ok {
		t.Errorf("%s{b} reported for a standby; want no data point", MetricSinceLastRenewal)
	}
	if n := histCount(rm, MetricAcquireDuration, "a"); n != 1 {
		t.Errorf("%s{a} count = %d; want 1", MetricAcquireDuration, n)
	}
	if n := histCount(rm, MetricRenewDuration, "a"); n < 2 {
		t.Errorf("%s{a} count = %d; want >= 2", MetricRenewDuration, n)
	}

	// a resigns; b is deposed by a deletion; then both stop.
	if err := a.e.Resign(ctx); err != nil {
		t.Fatalf("Resign = %v", err)
	}
	_, cur = g.log.await(t, cur, "election of b", electedOtherThan("a"))
	g.srv.Do(t, "DEL", g.key())
	g.log.await(t, cur, "b losing its deleted key", lostBy("b"))
	a.stop()
	b.stop()

	rm = collect()
	for _, id := range []string{"a", "b"} {
		el, lo := counter(rm, MetricTransitions, id, "elected"), counter(rm, MetricTransitions, id, "lost")
		if el < 1 || el != lo {
			t.Errorf("%s{%s}: elected %d, lost %d; want equal and >= 1", MetricTransitions, id, el, lo)
		}
	}
	if n := counter(rm, MetricRenewFailures, "b", ""); n != 1 {
		t.Errorf("%s{b} = %d; want 1 (the renewal that found the key deleted)", MetricRenewFailures, n)
	}
	if v, ok := gaugeInt(rm, MetricIsLeader, "a"); ok && v != 0 {
		t.Errorf("%s{a} after Run returned = %d; want no data point or 0", MetricIsLeader, v)
	}

	// Spans.
	stubs := spans.GetSpans()
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range stubs {
		byName[s.Name] = append(byName[s.Name], s)
		if s.InstrumentationScope.Name == ScopeName {
			if s.InstrumentationScope.Version != Version {
				t.Errorf("span %s scope version = %q; want %q", s.Name, s.InstrumentationScope.Version, Version)
			}
			if s.Status.Code == codes.Error {
				t.Errorf("span %s has error status %q; want none (held elsewhere and stopping are not errors)", s.Name, s.Status.Description)
			}
			for _, k := range []attribute.Key{AttrName, AttrIdentity} {
				if _, ok := attr(s, k); !ok {
					t.Errorf("span %s has no %s", s.Name, k)
				}
			}
		}
	}
	campaigns := byName["election.campaign"]
	if len(campaigns) < 2 {
		t.Errorf("%d election.campaign spans; want >= 2 (a, then b)", len(campaigns))
	}
	for _, s := range campaigns {
		if v, ok := attr(s, lock.AttrFence); !ok || v.AsInt64() <= 0 {
			t.Errorf("election.campaign fence = %v, %v; want a fencing token", v, ok)
		}
		if !s.EndTime.After(s.StartTime) {
			t.Errorf("election.campaign from %v to %v; want a positive duration", s.StartTime, s.EndTime)
		}
	}
	if n := len(byName["election.renew"]); n < 2 {
		t.Errorf("%d election.renew spans; want >= 2", n)
	}
	// Each renewal's lock.reacquire runs inside its election.renew.
	var inRenew bool
	for _, s := range byName["lock.reacquire"] {
		inRenew = inRenew || hasParent(s, byName["election.renew"])
	}
	if !inRenew {
		t.Error("no lock.reacquire span is a child of an election.renew span")
	}
	var reasons []string
	for _, s := range byName["election.step_down"] {
		v, _ := attr(s, AttrReason)
		reasons = append(reasons, v.AsString())
	}
	for _, want := range []string{"resigned", "lost_not_owned"} {
		if !slices.Contains(reasons, want) {
			t.Errorf("step_down reasons %v; want one %q", reasons, want)
		}
	}
	// The release nests in the step-down.
	releases := byName["election.release"]
	if len(releases) == 0 {
		t.Fatal("no election.release span")
	}
	if !hasParent(releases[0], byName["election.step_down"]) {
		t.Error("election.release is not a child of an election.step_down span")
	}
	// b waited in line for a's resignation: its lock.acquire ended when
	// the wait began, and the wait that won is a lock.wait linked to it.
	var waited bool
	for _, s := range byName["lock.wait"] {
		acquired, _ := attr(s, lock.AttrAcquired)
		if !acquired.AsBool() || len(s.Links) != 1 {
			continue
		}
		for _, a := range byName["lock.acquire"] {
			waits, _ := attr(a, lock.AttrWaits)
			if a.SpanContext.SpanID() == s.Links[0].SpanContext.SpanID() && waits.AsBool() && !a.EndTime.After(s.StartTime) {
				waited = true
			}
		}
	}
	if !waited {
		t.Error("no lock.wait span that acquired, linked to a lock.acquire span that ended (baton.lock.waits=true) before the wait began")
	}
}

// TestMetricsLeaveIdentityOut: by default no data point carries the
// identity, whose default changes at every restart; the name is always there.
func TestMetricsLeaveIdentityOut(t *testing.T) {
	checkLeaks(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	g := newGroup(t)
	a := g.add("a", func(c *Config) { c.MeterProvider = mp }).start()
	g.log.await(t, 0, "election of a", isElected)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(testCtx(t), &rm); err != nil {
		t.Fatalf("Collect = %v", err)
	}
	a.stop()
	points := 0
	for _, name := range []string{MetricIsLeader, MetricTransitions, MetricAcquireDuration, MetricSinceLastRenewal} {
		m, ok := metricNamed(rm, name)
		if !ok {
			t.Errorf("no %s", name)
			continue
		}
		for _, set := range pointAttrs(m) {
			points++
			if v, ok := set.Value(AttrIdentity); ok {
				t.Errorf("%s point has %s=%q; want none without MetricIdentity", name, AttrIdentity, v.AsString())
			}
			if v, _ := set.Value(AttrName); v.AsString() != g.name {
				t.Errorf("%s point has %s=%q; want %q", name, AttrName, v.AsString(), g.name)
			}
		}
	}
	if points == 0 {
		t.Error("no data points")
	}
}

// pointAttrs returns the attribute sets of m's data points.
func pointAttrs(m metricdata.Metrics) []attribute.Set {
	var sets []attribute.Set
	switch d := m.Data.(type) {
	case metricdata.Gauge[int64]:
		for _, dp := range d.DataPoints {
			sets = append(sets, dp.Attributes)
		}
	case metricdata.Gauge[float64]:
		for _, dp := range d.DataPoints {
			sets = append(sets, dp.Attributes)
		}
	case metricdata.Sum[int64]:
		for _, dp := range d.DataPoints {
			sets = append(sets, dp.Attributes)
		}
	case metricdata.Histogram[float64]:
		for _, dp := range d.DataPoints {
			sets = append(sets, dp.Attributes)
		}
	}
	return sets
}

func TestErrorType(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&lease.LostError{Name: "x", Fence: 1, Reason: lease.ErrExpired}, "expired"},
		{&lease.LostError{Name: "x", Fence: 1, Reason: &lock.Error{Op: "reacquire", Name: "x", Kind: lock.ErrNotOwned}}, "not_owned"},
		{&lock.Error{Op: "reacquire", Name: "x", Kind: lock.ErrUnavailable}, "unavailable"},
		{errors.New("unknown"), "_OTHER"},
	} {
		if got := errorType(tc.err); got != tc.want {
			t.Errorf("errorType(%v) = %q; want %q", tc.err, got, tc.want)
		}
	}
}

func hasParent(s tracetest.SpanStub, parents []tracetest.SpanStub) bool {
	for _, p := range parents {
		if s.Parent.SpanID() == p.SpanContext.SpanID() {
			return true
		}
	}
	return false
}

func attr(s tracetest.SpanStub, k attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == k {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// metricNamed returns the metric named name in the election's scope.
func metricNamed(rm metricdata.ResourceMetrics, name string) (metricdata.Metrics, bool) {
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

func matches(set attribute.Set, identity, direction string) bool {
	v, _ := set.Value(AttrIdentity)
	if v.AsString() != identity {
		return false
	}
	if direction == "" {
		return true
	}
	d, _ := set.Value(AttrDirection)
	return d.AsString() == direction
}

func gaugeInt(rm metricdata.ResourceMetrics, name, identity string) (int64, bool) {
	m, _ := metricNamed(rm, name)
	g, _ := m.Data.(metricdata.Gauge[int64])
	for _, dp := range g.DataPoints {
		if matches(dp.Attributes, identity, "") {
			return dp.Value, true
		}
	}
	return 0, false
}

func gaugeFloat(rm metricdata.ResourceMetrics, name, identity string) (float64, bool) {
	m, _ := metricNamed(rm, name)
	g, _ := m.Data.(metricdata.Gauge[float64])
	for _, dp := range g.DataPoints {
		if matches(dp.Attributes, identity, "") {
			return dp.Value, true
		}
	}
	return 0, false
}

func counter(rm metricdata.ResourceMetrics, name, identity, direction string) int64 {
	m, _ := metricNamed(rm, name)
	s, _ := m.Data.(metricdata.Sum[int64])
	var n int64
	for _, dp := range s.DataPoints {
		if matches(dp.Attributes, identity, direction) {
			n += dp.Value
		}
	}
	return n
}

func histCount(rm metricdata.ResourceMetrics, name, identity string) uint64 {
	m, _ := metricNamed(rm, name)
	h, _ := m.Data.(metricdata.Histogram[float64])
	var n uint64
	for _, dp := range h.DataPoints {
		if matches(dp.Attributes, identity, "") {
			n += dp.Count
		}
	}
	return n
}

// TestStandbyKeepsNoSpanOpen: spans cover work, not waiting. A standby's
// lock.acquire span ends with its failed attempt, as it begins to wait in
// line, and no span at all is open while the leader renews; when it finally
// wins, its wait is recorded as lock.wait and its election.campaign span
// covers the whole campaign.
func TestStandbyKeepsNoSpanOpen(t *testing.T) {
	checkLeaks(t)
	spans := newSpanLog()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	g := newGroup(t)
	a := g.add("a", nil).start()
	_, cur := g.log.await(t, 0, "election of a", isElected)
	b := g.add("b", func(c *Config) { c.TracerProvider = tp })
	started := time.Now()
	b.start()
	spans.await(t, "b's first, failed attempt", func(s sdktrace.ReadOnlySpan) bool {
		v, _ := spanAttr(s, lock.AttrWaits)
		return s.Name() == "lock.acquire" && v.AsBool()
	})
	// Let a renew a few times while b waits.
	for i := range 3 {
		_, cur = g.log.await(t, cur, fmt.Sprintf("renewal %d of a", i+1), func(ev event) bool { return ev.kind == evRenew && ev.id == "a" })
	}
	if open := spans.open(); len(open) != 0 {
		t.Errorf("spans open while b waits: %v; want none", open)
	}
	if n := len(spans.named("lock.acquire")); n != 1 {
		t.Errorf("b made %d lock.acquire spans while a renewed; want 1", n)
	}

	if err := a.e.Resign(testCtx(t)); err != nil {
		t.Fatalf("Resign = %v", err)
	}
	g.log.await(t, cur, "election of b", electedOtherThan("a"))
	waited := time.Since(started)
	a.stop()
	b.stop()

	campaigns := spans.named("election.campaign")
	if len(campaigns) != 1 {
		t.Fatalf("%d election.campaign spans; want 1", len(campaigns))
	}
	campaign := campaigns[0]
	if v, _ := spanAttr(campaign, AttrAttempts); v.AsInt64() != 1 {
		t.Errorf("election.campaign attempts = %d; want 1 (one Acquire, which waited)", v.AsInt64())
	}
	attempt, waits := spans.named("lock.acquire")[0], spans.named("lock.wait")
	if len(waits) != 1 {
		t.Fatalf("%d lock.wait spans; want 1", len(waits))
	}
	wait := waits[0]
	if v, _ := spanAttr(wait, lock.AttrAcquired); !v.AsBool() {
		t.Errorf("lock.wait acquired = %v; want true", v)
	}
	if links := wait.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != attempt.SpanContext().SpanID() {
		t.Errorf("lock.wait links %v; want the lock.acquire span", links)
	}
	// The attempt is a round trip; the wait and the campaign are the rest.
	busy := attempt.EndTime().Sub(attempt.StartTime())
	if d := campaign.EndTime().Sub(campaign.StartTime()); d < 2*testRetryPeriod || busy > d/2 { // three renewals span two retry periods
		t.Errorf("election.campaign lasted %v (b waited %v), its attempt %v; want the campaign over the whole wait and the attempt a small part of it",
			d, waited, busy)
	}
	if wait.StartTime().Before(attempt.EndTime()) || wait.EndTime().After(campaign.EndTime()) {
		t.Errorf("lock.wait from %v to %v, lock.acquire ended %v, campaign ended %v; want the wait after the attempt and within the campaign",
			wait.StartTime(), wait.EndTime(), attempt.EndTime(), campaign.EndTime())
	}
}

// spanLog is a span processor that keeps the spans that ended and knows
// which are still open; tests wait on it without sleeping.
type spanLog struct {
	mu      sync.Mutex
	started map[trace.SpanID]string // open spans, by name
	ended   []sdktrace.ReadOnlySpan
	changed chan struct{} // closed and replaced at each end
}

func newSpanLog() *spanLog {
	return &spanLog{started: map[trace.SpanID]string{}, changed: make(chan struct{})}
}

func (l *spanLog) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.started[s.SpanContext().SpanID()] = s.Name()
}

func (l *spanLog) OnEnd(s sdktrace.ReadOnlySpan) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.started, s.SpanContext().SpanID())
	l.ended = append(l.ended, s)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (*spanLog) Shutdown(context.Context) error   { return nil }
func (*spanLog) ForceFlush(context.Context) error { return nil }

// open returns the names of the spans started and not ended.
func (l *spanLog) open() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var names []string
	for _, n := range l.started {
		names = append(names, n)
	}
	return names
}

// named returns the ended spans called name, in the order they ended.
func (l *spanLog) named(name string) []sdktrace.ReadOnlySpan {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []sdktrace.ReadOnlySpan
	for _, s := range l.ended {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// await waits until a span that matches has ended.
func (l *spanLog) await(t testing.TB, what string, match func(sdktrace.ReadOnlySpan) bool) {
	t.Helper()
	deadline := time.NewTimer(awaitTimeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		found := slices.ContainsFunc(l.ended, match)
		changed := l.changed
		l.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %s within %v", what, awaitTimeout)
		}
	}
}

func spanAttr(s sdktrace.ReadOnlySpan, k attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}
