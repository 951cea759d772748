package election

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// How the loops pace themselves: sleeps that end with ctx, and backoffs
// that never give up.

// sleep waits for d or the end of ctx, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// panicBackoff paces campaigns after terms that ended in a panic: the first
// pause is RetryPeriod, each further one in a row doubles, up to the larger
// of the TTL and 30 seconds.
type panicBackoff struct {
	first, limit, cur time.Duration
}

func newPanicBackoff(retry, ttl time.Duration) *panicBackoff {
	return &panicBackoff{first: retry, limit: max(ttl, 30*time.Second)}
}

func (p *panicBackoff) next() time.Duration {
	if p.cur == 0 {
		p.cur = p.first
	} else {
		p.cur = min(2*p.cur, p.limit)
	}
	return p.cur
}

func (p *panicBackoff) reset() { p.cur = 0 }

// newBackoff returns an exponential backoff for retry loops that run until
// their ctx ends: it never gives up (backoff v4's default MaxElapsedTime of
// 15 minutes would) and never waits longer than limit.
func newBackoff(limit time.Duration) *cappedBackoff {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(min(50*time.Millisecond, limit)),
		backoff.WithMaxInterval(limit),
		backoff.WithMaxElapsedTime(0),
	)
	return &cappedBackoff{b: b, limit: limit}
}

// cappedBackoff caps the randomized intervals of an ExponentialBackOff, which
// may otherwise exceed MaxInterval by the randomization factor.
type cappedBackoff struct {
	b     *backoff.ExponentialBackOff
	limit time.Duration
}

func (c *cappedBackoff) NextBackOff() time.Duration {
	d := c.b.NextBackOff()
	if d == backoff.Stop || d > c.limit {
		return c.limit
	}
	return d
}

func (c *cappedBackoff) Reset() { c.b.Reset() }
