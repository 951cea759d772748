package election

import (
	"context"
	"errors"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/lease"
	"github.com/baton-dev/baton/lock"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the election's spans and
// metrics: the package's import path.
const ScopeName = "github.com/baton-dev/baton/election"

// Version is the instrumentation version reported with the scope.
const Version = "0.1.0"

// Attribute keys of the election's spans and metrics. The fencing token uses
// lock.AttrFence ("baton.lock.fence").
const (
	AttrName      = attribute.Key("baton.election.name")
	AttrIdentity  = attribute.Key("baton.election.identity")
	AttrReason    = attribute.Key("baton.election.reason")    // on election.step_down
	AttrDirection = attribute.Key("baton.election.direction") // on baton.election.transitions
	AttrAttempts  = attribute.Key("baton.election.attempts")  // on election.campaign: lock.Acquire calls, more than 1 after errors
	AttrReleased  = attribute.Key("baton.election.released")  // on election.release
	AttrRenewed   = attribute.Key("baton.election.renewed")   // on election.renew
	attrErrType   = attribute.Key("error.type")
)

// reason says why a term ended; it is the step-down span's
// baton.election.reason.
type reason string

const (
	reasonResigned       reason = "resigned"        // Resign was called
	reasonNotOwned       reason = "lost_not_owned"  // a renewal found the key gone or someone else's
	reasonExpiredLocally reason = "expired_locally" // RenewDeadline passed without a successful renewal
	reasonContextDone    reason = "context_done"    // Run's ctx ended, or Run stopped on a permanent error or a panic
	reasonPanicked       reason = "panicked"        // OnElected panicked
	reasonRefused        reason = "refused"         // a renewal was refused for good (lock.ErrMisconfigured)
)

// reasonOf maps the error of a lease that ended on its own.
func reasonOf(err error) reason {
	switch {
	case errors.Is(err, lease.ErrExpired):
		return reasonExpiredLocally
	case errors.Is(err, lock.ErrMisconfigured):
		return reasonRefused
	}
	return reasonNotOwned
}

// tracer makes the election's spans. Spans that are not children of a live
// call (campaign, renew, step_down) take the span context of Run's ctx as
// parent, so a caller that runs the elector inside a span sees them there.
type tracer struct {
	tr    trace.Tracer
	attrs []attribute.KeyValue // name and identity
}

func newTracer(cfg Config) tracer {
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tracer{
		tr:    tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version)),
		attrs: []attribute.KeyValue{AttrName.String(cfg.Name), AttrIdentity.String(cfg.Identity)},
	}
}

func (t tracer) with(extra ...attribute.KeyValue) trace.SpanStartEventOption {
	return trace.WithAttributes(append(append([]attribute.KeyValue(nil), t.attrs...), extra...)...)
}

// campaign records a campaign that won, after the fact: "election.campaign"
// spans the campaign's whole wait, from its start to the acquisition, but
// exists only once the campaign changed state, so a standby that waits for
// hours leaves no open span behind. It returns the span's context, which the
// term's later spans link to.
func (t tracer) campaign(parent trace.SpanContext, start time.Time, h *lock.Held, attempts int) trace.SpanContext {
	ctx := trace.ContextWithSpanContext(context.Background(), parent)
	_, span := t.tr.Start(ctx, "election.campaign", trace.WithTimestamp(start),
		t.with(lock.AttrFence.Int64(h.Fence()), AttrAttempts.Int(attempts)))
	span.End()
	return span.SpanContext()
}

// startRenew starts "election.renew" around one renewal request, so the
// lock's lock.reacquire span nests inside it, and returns the context to send
// the request with and the function that ends the span with its outcome.
// A renewal the server refused (the key is gone or someone else's) is an
// outcome, renewed=false, like a lock held elsewhere; one that could not
// reach the server is an error.
func (t tracer) startRenew(ctx context.Context, parent, term trace.SpanContext, fence int64) (context.Context, func(error)) {
	ctx = trace.ContextWithSpanContext(ctx, parent)
	ctx, span := t.tr.Start(ctx, "election.renew",
		t.with(lock.AttrFence.Int64(fence)), trace.WithLinks(trace.Link{SpanContext: term}))
	return ctx, func(err error) {
		defer span.End()
		span.SetAttributes(AttrRenewed.Bool(err == nil))
		if err != nil && !errors.Is(err, lock.ErrNotOwned) {
			failSpan(span, err)
		}
	}
}

// startStepDown starts "election.step_down", which lasts until OnLost has
// returned and contains the release, if any.
func (t tracer) startStepDown(parent, term trace.SpanContext, tm callbacks.Term, r reason) (context.Context, trace.Span) {
	ctx := trace.ContextWithSpanContext(context.Background(), parent)
	return t.tr.Start(ctx, "election.step_down",
		t.with(lock.AttrFence.Int64(tm.Fence), AttrReason.String(string(r))),
		trace.WithLinks(trace.Link{SpanContext: term}))
}

// startRelease starts "election.release".
func (t tracer) startRelease(ctx context.Context, fence int64) (context.Context, trace.Span) {
	return t.tr.Start(ctx, "election.release", t.with(lock.AttrFence.Int64(fence)))
}

// endRelease ends a release span. Finding the key already gone is an
// outcome (released=false), not an error.
func endRelease(span trace.Span, err error) {
	defer span.End()
	span.SetAttributes(AttrReleased.Bool(err == nil))
	if err != nil && !errors.Is(err, lock.ErrNotOwned) && !errors.Is(err, lease.ErrLost) {
		failSpan(span, err)
	}
}

// failSpan marks span as failed with err's type and message.
func failSpan(span trace.Span, err error) {
	span.SetAttributes(attrErrType.String(errorType(err)))
	span.SetStatus(codes.Error, err.Error())
}

// errorType names an error for the error.type attribute: "expired" for a
// lease whose renew deadline passed, which the lock package cannot know of,
// and lock.ErrorType's name otherwise, so that both scopes name an error
// alike.
func errorType(err error) string {
	if errors.Is(err, lease.ErrExpired) {
		return "expired"
	}
	return lock.ErrorType(err)
}
