package lock

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the spans this package makes.
const ScopeName = "github.com/baton-dev/baton/lock"

// Version is the instrumentation version reported with the scope.
const Version = "0.1.0"

// Span attribute keys.
const (
	AttrName     = attribute.Key("baton.lock.name")
	AttrFence    = attribute.Key("baton.lock.fence")
	AttrAcquired = attribute.Key("baton.lock.acquired")
	attrErrType  = attribute.Key("error.type")
)

// Span names.
const (
	spanAcquire   = "lock.acquire"
	spanRelease   = "lock.release"
	spanExtend    = "lock.extend"
	spanReacquire = "lock.reacquire"
)

// spanStartOptions are the options of every span of the lock named name,
// built once by New: per call, they would cost allocations even when the
// TracerProvider records nothing.
func spanStartOptions(name string) []trace.SpanStartOption {
	return []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(AttrName.String(name)),
	}
}

// startSpan starts the span name as a client span with the lock's name.
func (l *Lock) startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	return l.tracer.Start(ctx, name, l.spanOpts...)
}

// setFence adds the fencing token to a span that records.
func setFence(span trace.Span, fence int64) {
	if span.IsRecording() {
		span.SetAttributes(AttrFence.Int64(fence))
	}
}

// endSpan records the outcome. A lock held by someone else is an outcome, not
// an error: the span says acquired=false and keeps an unset status. Nothing
// is built for a span that does not record.
func endSpan(span trace.Span, h *Held, err error) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	if h != nil {
		span.SetAttributes(AttrAcquired.Bool(true), AttrFence.Int64(h.fence))
	}
	if err == nil {
		return
	}
	if errors.Is(err, ErrNotAcquired) {
		span.SetAttributes(AttrAcquired.Bool(false))
		return
	}
	span.SetAttributes(attrErrType.String(errorType(err)))
	span.SetStatus(codes.Error, err.Error())
}

// errorType names an error for the error.type attribute: the sentinel's
// short name when there is one.
func errorType(err error) string {
	for _, s := range []struct {
		err  error
		name string
	}{
		{ErrNotOwned, "not_owned"},
		{ErrNotHeld, "not_held"},
		{ErrNoTTL, "no_ttl"},
		{ErrInvalidTTL, "invalid_ttl"},
		{ErrUnavailable, "unavailable"},
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "deadline_exceeded"},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "other"
}
