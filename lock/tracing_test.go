package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestSpans(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(ctxT(t)) })
	l := e.lock(t, "traced", Config{TTL: time.Minute, TracerProvider: tp})
	ctx := ctxT(t)

	h := mustAcquire(t, l)
	_, _ = l.TryAcquire(ctx) // held: not an error
	_ = h.Extend(ctx, time.Second)
	_ = h.Reacquire(ctx)
	_ = h.Release(ctx)
	_ = h.Release(ctx) // not held: an error

	spans := exp.GetSpans()
	// lock.acquire may wait and make several calls: internal. The others
	// are one request each: client.
	want := []struct {
		name     string
		kind     trace.SpanKind
		acquired attribute.Value
		fence    bool
		status   codes.Code
	}{
		{"lock.acquire", trace.SpanKindInternal, attribute.BoolValue(true), true, codes.Unset},
		{"lock.acquire", trace.SpanKindInternal, attribute.BoolValue(false), false, codes.Unset},
		{"lock.extend", trace.SpanKindClient, attribute.Value{}, true, codes.Unset},
		{"lock.reacquire", trace.SpanKindClient, attribute.Value{}, true, codes.Unset},
		{"lock.release", trace.SpanKindClient, attribute.Value{}, true, codes.Unset},
		{"lock.release", trace.SpanKindClient, attribute.Value{}, true, codes.Error},
	}
	if len(spans) != len(want) {
		t.Fatalf("spans = %d; want %d", len(spans), len(want))
	}
	for i, w := range want {
		s := spans[i]
		attrs := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes {
			attrs[kv.Key] = kv.Value
		}
		if s.Name != w.name || s.Status.Code != w.status || s.SpanKind != w.kind {
			t.Errorf("span %d = %s/%v/%v; want %s/%v/%v", i, s.Name, s.SpanKind, s.Status.Code, w.name, w.kind, w.status)
		}
		if attrs[AttrName].AsString() != "traced" {
			t.Errorf("span %d %s: name attribute = %q; want traced", i, s.Name, attrs[AttrName].AsString())
		}
		if _, ok := attrs[AttrFence]; ok != w.fence || (ok && attrs[AttrFence].AsInt64() != h.Fence()) {
			t.Errorf("span %d %s: fence attribute = %v; want present=%v value %d", i, s.Name, attrs[AttrFence], w.fence, h.Fence())
		}
		if w.acquired.Type() != attribute.EMPTY && attrs[AttrAcquired] != w.acquired {
			t.Errorf("span %d %s: acquired = %v; want %v", i, s.Name, attrs[AttrAcquired], w.acquired)
		}
		if w.status == codes.Error && attrs["error.type"].AsString() != "not_held" {
			t.Errorf("span %d: error.type = %q; want not_held", i, attrs["error.type"].AsString())
		}
	}
	if got := spans[0].InstrumentationScope.Name; got != ScopeName {
		t.Errorf("scope = %q; want %q", got, ScopeName)
	}
}

// TestCancelledAcquireIsNotASpanError: a standby that stops waiting is an
// outcome, not a failure.
func TestCancelledAcquireIsNotASpanError(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(ctxT(t)) })
	l := e.lock(t, "traced-cancel", Config{TTL: time.Minute, TracerProvider: tp})
	mustAcquire(t, l)
	ctx, cancel := context.WithCancel(ctxT(t))
	errc := make(chan error, 1)
	go func() {
		_, err := l.Acquire(ctx)
		errc <- err
	}()
	awaitQueued(t, l, 1)
	cancel()
	wantErr(t, "cancelled Acquire", <-errc, context.Canceled)
	spans := exp.GetSpans()
	last := spans[len(spans)-1]
	if last.Name != "lock.wait" || last.Status.Code != codes.Unset {
		t.Fatalf("span = %s/%v; want lock.wait with an unset status", last.Name, last.Status.Code)
	}
	for _, kv := range last.Attributes {
		if kv.Key == AttrAcquired && kv.Value.AsBool() {
			t.Fatal("cancelled acquire span says acquired=true")
		}
	}
}

// TestWaitingAcquireLeavesNoSpanOpen: spans cover work, not waiting. An
// Acquire that must wait ends its lock.acquire span as it joins the line;
// the wait is recorded when it is over, as a lock.wait span that links to
// it and carries the outcome.
func TestWaitingAcquireLeavesNoSpanOpen(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t)
	spans := &openSpans{open: map[trace.SpanID]string{}}
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(ctxT(t)) })
	holder := e.lock(t, "traced-wait", Config{TTL: time.Minute})
	l := e.lock(t, "traced-wait", Config{TTL: time.Minute, TracerProvider: tp})
	h := mustAcquire(t, holder)
	got := make(chan *Held, 1)
	go func() {
		w, err := l.Acquire(ctxT(t))
		if err != nil {
			t.Errorf("Acquire = %v", err)
		}
		got <- w
	}()
	awaitQueued(t, l, 1)
	if open := spans.names(); len(open) != 0 {
		t.Errorf("spans open while waiting: %v; want none", open)
	}
	ended := exp.GetSpans()
	if len(ended) != 1 || ended[0].Name != "lock.acquire" || !attrOf(ended[0], AttrWaits).AsBool() || attrOf(ended[0], AttrAcquired).AsBool() {
		t.Fatalf("spans before the release: %v; want one lock.acquire, acquired=false, waits=true", ended)
	}
	waitFrom := time.Now()
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w := <-got
	if w == nil {
		return
	}
	defer func() { _ = w.Release(context.Background()) }()
	all := exp.GetSpans()
	if len(all) != 2 {
		t.Fatalf("%d spans; want lock.acquire and lock.wait", len(all))
	}
	wait := all[1]
	if wait.Name != "lock.wait" || wait.SpanKind != trace.SpanKindInternal || wait.Status.Code != codes.Unset {
		t.Errorf("second span = %s/%v/%v; want lock.wait/internal/unset", wait.Name, wait.SpanKind, wait.Status.Code)
	}
	if !attrOf(wait, AttrAcquired).AsBool() || attrOf(wait, AttrFence).AsInt64() != w.Fence() || attrOf(wait, AttrName).AsString() != "traced-wait" {
		t.Errorf("lock.wait attributes %v; want acquired, fence %d and the name", wait.Attributes, w.Fence())
	}
	if len(wait.Links) != 1 || wait.Links[0].SpanContext.SpanID() != ended[0].SpanContext.SpanID() {
		t.Errorf("lock.wait links %v; want the lock.acquire span", wait.Links)
	}
	if wait.StartTime.Before(ended[0].EndTime) || !wait.StartTime.Before(waitFrom) {
		t.Errorf("lock.wait starts %v; want after the attempt ended (%v) and before the release (%v)", wait.StartTime, ended[0].EndTime, waitFrom)
	}
	if wait.Parent.SpanID() != ended[0].Parent.SpanID() {
		t.Error("lock.wait and lock.acquire have different parents; want siblings")
	}
}

// openSpans is a span processor that knows which spans are open.
type openSpans struct {
	mu   sync.Mutex
	open map[trace.SpanID]string
}

func (o *openSpans) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.open[s.SpanContext().SpanID()] = s.Name()
}

func (o *openSpans) OnEnd(s sdktrace.ReadOnlySpan) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.open, s.SpanContext().SpanID())
}

func (*openSpans) Shutdown(context.Context) error   { return nil }
func (*openSpans) ForceFlush(context.Context) error { return nil }

func (o *openSpans) names() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var names []string
	for _, n := range o.open {
		names = append(names, n)
	}
	return names
}

func attrOf(s tracetest.SpanStub, k attribute.Key) attribute.Value {
	for _, kv := range s.Attributes {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func TestErrorType(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&Error{Op: "release", Name: "x", Kind: ErrNotOwned}, "not_owned"},
		{&Error{Op: "acquire", Name: "x", Kind: ErrNotAcquired, Err: context.Canceled}, "not_acquired"},
		{&Error{Op: "extend", Name: "x", Kind: ErrUnavailable, Err: context.DeadlineExceeded}, "unavailable"},
		{&Error{Op: "acquire", Name: "x", Kind: ErrNotReplicated}, "not_replicated"},
		{&Error{Op: "check", Name: "x", Kind: ErrMisconfigured}, "misconfigured"},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), "deadline_exceeded"},
		{context.Canceled, "canceled"},
		{errors.New("something else"), ErrorTypeOther},
	} {
		if got := ErrorType(tc.err); got != tc.want {
			t.Errorf("ErrorType(%v) = %q; want %q", tc.err, got, tc.want)
		}
	}
	if ErrorTypeOther != "_OTHER" {
		t.Errorf("ErrorTypeOther = %q; want the semantic conventions' _OTHER", ErrorTypeOther)
	}
}
