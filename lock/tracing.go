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
// TracerProvider records nothing. The slice holds both kinds around the name
// attribute, so that startSpan picks one by slicing, without allocating:
// [internal kind, name, client kind].
func spanStartOptions(name string) []trace.SpanStartOption {
	return []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(AttrName.String(name)),
		trace.WithSpanKind(trace.SpanKindClient),
	}
}

// startSpan starts the span name with the lock's name. lock.acquire is an
// internal span: a blocking Acquire makes several calls and waits between
// them, and OpenTelemetry keeps the client kind for a span that covers one
// request to a remote service, as release, extend and reacquire do. Both
// Acquire and TryAcquire make lock.acquire spans, so that one span name
// never has two kinds.
func (l *Lock) startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	if name == spanAcquire {
		return l.tracer.Start(ctx, name, l.spanOpts[:2]...)
	}
	return l.tracer.Start(ctx, name, l.spanOpts[1:]...)
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
	span.SetAttributes(attrErrType.String(ErrorType(err)))
	span.SetStatus(codes.Error, err.Error())
}

// errorTypes are the names ErrorType gives, first match wins.
var errorTypes = []struct {
	err  error
	name string
}{
	{ErrNotOwned, "not_owned"},
	{ErrNotAcquired, "not_acquired"},
	{ErrNotHeld, "not_held"},
	{ErrNoTTL, "no_ttl"},
	{ErrInvalidTTL, "invalid_ttl"},
	{ErrUnavailable, "unavailable"},
	{ErrMisconfigured, "misconfigured"},
	{context.Canceled, "canceled"},
	{context.DeadlineExceeded, "deadline_exceeded"},
}

// ErrorTypeOther is the error.type of an error that ErrorType does not know,
// as the OpenTelemetry semantic conventions name the fallback.
const ErrorTypeOther = "_OTHER"

// ErrorType names err for the error.type attribute of a span: the short name
// of the sentinel it wraps ("not_owned", "unavailable", "misconfigured",
// "canceled", "deadline_exceeded", ...), or ErrorTypeOther. The names are
// few and fixed, so they are safe as a metric attribute too. The election
// package uses it for its own spans, so both scopes name an error alike.
func ErrorType(err error) string {
	for _, s := range errorTypes {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return ErrorTypeOther
}
