package lock

import (
	"context"
	"errors"
	"time"

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
	// AttrName is the lock's name, on every span.
	AttrName = attribute.Key("baton.lock.name")
	// AttrFence is the fencing token of the acquisition a span is about.
	AttrFence = attribute.Key("baton.lock.fence")
	// AttrAcquired says whether an acquire or wait span took the lock.
	AttrAcquired = attribute.Key("baton.lock.acquired")
	// AttrWaits is set on the lock.acquire span of an Acquire that went on
	// to wait in line; the wait and its outcome are the lock.wait span.
	AttrWaits   = attribute.Key("baton.lock.waits")
	attrErrType = attribute.Key("error.type")
)

// Span names.
const (
	spanAcquire   = "lock.acquire"
	spanWait      = "lock.wait"
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
// internal span: its attempt may be answered in process (a handover between
// two callers of one Lock) and may carry a WAIT, and OpenTelemetry keeps the
// client kind for a span that covers one request to a remote service, as
// release, extend and reacquire do. Both Acquire and TryAcquire make
// lock.acquire spans, so that one span name never has two kinds.
//
// Spans cover work, not waiting: the lock.acquire span of an Acquire that
// must wait ends when the wait begins (baton.lock.waits=true), and the wait
// is recorded when it is over, as lock.wait (recordWait). A caller that waits
// for hours leaves no span open meanwhile.
func (l *Lock) startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	if name == spanAcquire {
		return l.tracer.Start(ctx, name, l.spanOpts[:2]...)
	}
	return l.tracer.Start(ctx, name, l.spanOpts[1:]...)
}

// recordWait records the wait of an Acquire, after the fact: a lock.wait
// span from start until now, a sibling of the lock.acquire span acquire
// (which it links to), with the outcome of the call.
func (l *Lock) recordWait(parent context.Context, acquire trace.SpanContext, start time.Time, h *Held, err error) {
	_, span := l.tracer.Start(parent, spanWait, trace.WithTimestamp(start), l.spanOpts[0], l.spanOpts[1],
		trace.WithLinks(trace.Link{SpanContext: acquire}))
	endSpan(span, h, err)
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
	{ErrNotReplicated, "not_replicated"},
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
