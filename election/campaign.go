package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/lease"
	"github.com/baton-dev/baton/lock"
	"go.opentelemetry.io/otel/trace"
)

// The campaign loop: campaign, lead, step down, campaign again.

// maxRefusals is how many campaign attempts in a row the server may refuse
// for good (lock.ErrMisconfigured) before Run gives up and returns the error.
// More than one, so that a reply seen once during a reconfiguration (an ACL
// being rewritten, a node joining a cluster) does not end Run; few, so that
// a missing permission is reported within a few retry periods, not retried
// forever.
const maxRefusals = 3

// campaignLoop campaigns, leads, steps down and campaigns again until ctx
// ends or the server refuses for good. It returns with no term active.
// life outlives ctx until Run has stepped down: releases of ended terms that
// must be retried use it.
func (e *Elector) campaignLoop(ctx, life context.Context, d *callbacks.Dispatcher, obs *observer, r *run) {
	parent := trace.SpanContextFromContext(ctx)
	bo := newBackoff(e.cfg.RetryPeriod)
	panics := newPanicBackoff(e.cfg.RetryPeriod, e.cfg.TTL)
	for {
		h, start, attempts, err := e.campaign(ctx, bo)
		if err != nil {
			r.fail(fmt.Errorf("election %q: %w", e.cfg.Name, err))
			return
		}
		if h == nil { // ctx ended
			return
		}
		if ctx.Err() != nil { // acquired just as Run was told to stop
			_ = e.releaseKey(context.WithoutCancel(ctx), h.Fence(), h.Release)
			return
		}
		t, err := e.begin(ctx, parent, h, start, attempts)
		if err != nil {
			// The acquisition cannot make a term: its reply came after its
			// validity had passed (a server that was paused or very slow),
			// or the lease refused it. Give the key back and campaign again.
			e.log.Warn("election: acquired the lock but cannot lead; released it", "fence", h.Fence(), "error", err)
			if !errors.Is(err, lease.ErrLost) { // begin released a lost lease itself
				_ = e.releaseKey(context.WithoutCancel(ctx), h.Fence(), h.Release)
			}
			if !sleep(ctx, bo.NextBackOff()) {
				return
			}
			continue
		}
		// Report the own election now, not when the observer next reads:
		// a short term could end before that.
		obs.learned(callbacks.Leader{Identity: t.cb.Identity, Fence: t.cb.Fence, TTL: e.cfg.TTL})
		d.Elected(t.cb)
		why := e.await(ctx, t)
		e.stepDown(d, t, why, life, r)
		obs.poke()
		if ctx.Err() != nil {
			return
		}
		pause := time.Duration(0)
		switch why {
		case reasonResigned:
			// Let a standby win before competing again.
			pause = e.cfg.RetryPeriod
		case reasonPanicked:
			// A panic that happens every time must not turn into a
			// leadership that bounces as fast as candidates can win it.
			pause = panics.next()
			e.log.Warn("election: OnElected panicked; pausing before campaigning again", "pause", pause)
		default:
			panics.reset()
		}
		if pause > 0 && !sleep(ctx, pause) {
			return
		}
	}
}

// campaign blocks until it holds the lock or ctx ends. lock.Acquire waits
// in line on the server without polling: a leader's release hands the key to
// the standby first in line, and a crashed leader's key is taken when its
// TTL runs out. Transient errors (the server unreachable, mostly) are retried
// with a backoff capped at RetryPeriod, forever; errors the server will keep
// returning (lock.ErrMisconfigured) end the campaign after maxRefusals in a
// row. It returns when it started, and how many Acquire calls it made. The
// error is nil when ctx ended.
//
// No span of the election's is open while it waits: the lock's own
// lock.acquire ends when the wait begins and lock.wait is recorded when it
// ends, and election.campaign is recorded once the campaign has won.
func (e *Elector) campaign(ctx context.Context, bo *cappedBackoff) (*lock.Held, time.Time, int, error) {
	e.campaigns.Add(1)
	start := time.Now()
	refusals := 0
	for attempts := 1; ; attempts++ {
		h, err := e.lock.Acquire(ctx, lock.WithUniqueToken(Token(e.cfg.Identity)))
		if err == nil {
			bo.Reset()
			return h, start, attempts, nil
		}
		if ctx.Err() != nil {
			return nil, start, attempts, nil
		}
		wait := bo.NextBackOff()
		if errors.Is(err, lock.ErrMisconfigured) {
			if refusals++; refusals >= maxRefusals {
				e.log.Error("election: the server refuses to let this candidate campaign; giving up", "error", err, "attempts", refusals)
				return nil, start, attempts, err
			}
			e.log.Error("election: the server refused the campaign; retrying a few times", "error", err, "retry_in", wait)
		} else {
			refusals = 0
			e.log.Warn("election: campaign failed; retrying", "error", err, "retry_in", wait)
		}
		if !sleep(ctx, wait) {
			return nil, start, attempts, nil
		}
	}
}

// await waits for the end of a term and says why it ended.
func (e *Elector) await(ctx context.Context, t *term) reason {
	var r reason
	select {
	case <-t.lease.Done():
	case <-t.resign:
		r = reasonResigned
	case <-t.panic:
		r = reasonPanicked
	case <-ctx.Done():
		r = reasonContextDone
	}
	// A panic wins a tie with the end of Run that CrashOnPanic makes of it
	// (both are ready at once): the term is released, as a panic's is,
	// whatever KeepOnCancel says.
	select {
	case <-t.panic:
		r = reasonPanicked
	default:
	}
	// A lost lease wins a tie: there is nothing left to release.
	select {
	case <-t.lease.Done():
		r = reasonOf(t.lease.Err())
	default:
	}
	return r
}
