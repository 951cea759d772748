package lock

import (
	"context"
	"errors"
	"fmt"
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
	if last.Name != "lock.acquire" || last.Status.Code != codes.Unset {
		t.Fatalf("span = %s/%v; want lock.acquire with an unset status", last.Name, last.Status.Code)
	}
	for _, kv := range last.Attributes {
		if kv.Key == AttrAcquired && kv.Value.AsBool() {
			t.Fatal("cancelled acquire span says acquired=true")
		}
	}
}

func TestErrorType(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&Error{Op: "release", Name: "x", Kind: ErrNotOwned}, "not_owned"},
		{&Error{Op: "acquire", Name: "x", Kind: ErrNotAcquired, Err: context.Canceled}, "not_acquired"},
		{&Error{Op: "extend", Name: "x", Kind: ErrUnavailable, Err: context.DeadlineExceeded}, "unavailable"},
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
