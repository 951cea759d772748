package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults used for zero Config fields that do not derive from the TTL.
const (
	// DefaultRetryInitial is the first pause after a transient renewal
	// error, unless RetryMax is shorter.
	DefaultRetryInitial = 10 * time.Millisecond

	// minDriftMargin is the floor of the default drift margin: the server
	// counts expiry in whole milliseconds.
	minDriftMargin = time.Millisecond

	// driftDivisor gives the default drift margin as a share of the TTL:
	// 1%, far more than the rate error of any clock that NTP keeps in step
	// (under 500 ppm), so it also absorbs the odd virtual machine whose clock
	// runs fast or slow.
	driftDivisor = 100
)

// Config tunes a Lease. Every duration is a wall-clock length measured on the
// local monotonic clock; a zero field means its documented default, which
// mostly derives from the lock's TTL. New copies the Config and never writes
// into the caller's value.
type Config struct {
	// RenewInterval is the time between renewals. Renewals run on absolute
	// deadlines counted from the acquisition (AcquiredAt + k*RenewInterval),
	// not on sleeps chained after each reply, so slow replies do not push
	// the schedule back; a deadline missed while retrying is skipped.
	// Default: Validity/3 when Validity is set, otherwise TTL/3. Must be
	// shorter than Validity.
	RenewInterval time.Duration

	// Validity is how long after the moment before a successful acquire or
	// renew request was sent the lease counts as valid locally. The key
	// lives at least TTL from that moment on the server, so Validity is at
	// most TTL - DriftMargin. Default: TTL - DriftMargin. Must be longer than
	// RenewInterval. (An election sets it to its renew deadline.)
	Validity time.Duration

	// DriftMargin is subtracted from the TTL for the difference in clock
	// rates between this host and the server: the server counts the TTL on
	// its clock, the lease on ours. Default: TTL/100, at least 1ms. Must be
	// shorter than the TTL.
	DriftMargin time.Duration

	// RetryInitial is the first pause after a transient renewal error (server
	// unreachable, paused, timed out). Pauses grow exponentially with jitter
	// up to RetryMax, and retries go on until a renewal succeeds or the
	// validity bound passes: the bound, not the backoff, decides when to give
	// up. Default: DefaultRetryInitial, or RetryMax if that is shorter.
	RetryInitial time.Duration

	// RetryMax caps the pause between retries. Default: RenewInterval/2.
	RetryMax time.Duration

	// OnRenew, if set, is called after each successful renewal with the
	// local time at which its request was sent: the start of the new
	// validity. It runs on the renewal's goroutine, never concurrently with
	// itself for one lease and never after Stop or Release has returned; it
	// must return quickly. An election uses it for health and metrics.
	OnRenew func(sent time.Time)

	// OnRenewError, if set, is called after each renewal that failed, with
	// the time its request was sent and the error: transient ones that will
	// be retried and the final one (not owned, or refused for good) alike. It runs on the renewal's
	// goroutine under the same rules as OnRenew. A renewal still unanswered
	// when the validity bound passes is not reported here: Err says
	// ErrExpired.
	OnRenewError func(sent time.Time, err error)

	// RenewContext, if set, is called before each renewal request with the
	// context it will be sent with (its deadline is the validity bound); the
	// request is sent with the context it returns, and done is called with the
	// request's outcome. Tracing uses it to put a span around each renewal,
	// with the lock's own span inside. It runs on the renewal's goroutine and
	// must return quickly.
	RenewContext func(ctx context.Context) (_ context.Context, done func(err error))

	// Logger receives renewals and transient errors at Debug and the loss of
	// the lease at Info. Nil means slog.Default().
	Logger *slog.Logger
}

// resolve returns c with its defaults filled in for the lock name with the
// given TTL, or an error naming every invalid value.
func (c Config) resolve(name string, ttl time.Duration) (Config, error) {
	if ttl <= 0 {
		return c, fmt.Errorf("lease: lock %q has no ttl: a lease renews the TTL of a key that would otherwise expire", name)
	}
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"renew interval", c.RenewInterval},
		{"validity", c.Validity},
		{"drift margin", c.DriftMargin},
		{"retry initial", c.RetryInitial},
		{"retry max", c.RetryMax},
	} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("lease: %s %v is negative", f.name, f.d))
		}
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}

	if c.DriftMargin == 0 {
		c.DriftMargin = max(ttl/driftDivisor, minDriftMargin)
	}
	if c.DriftMargin >= ttl {
		return c, fmt.Errorf("lease: drift margin %v must be shorter than the ttl %v", c.DriftMargin, ttl)
	}
	if c.Validity == 0 {
		c.Validity = ttl - c.DriftMargin
		if c.RenewInterval == 0 {
			c.RenewInterval = ttl / 3
		}
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = c.Validity / 3
	}
	if c.RetryMax == 0 {
		c.RetryMax = c.RenewInterval / 2
	}
	if c.RetryInitial == 0 {
		c.RetryInitial = min(DefaultRetryInitial, c.RetryMax)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}

	if c.Validity > ttl-c.DriftMargin {
		errs = append(errs, fmt.Errorf("lease: validity %v exceeds the ttl %v minus the drift margin %v (%v)",
			c.Validity, ttl, c.DriftMargin, ttl-c.DriftMargin))
	}
	if c.RenewInterval >= c.Validity {
		errs = append(errs, fmt.Errorf("lease: renew interval %v must be shorter than the validity %v", c.RenewInterval, c.Validity))
	}
	if c.RetryInitial > c.RetryMax {
		errs = append(errs, fmt.Errorf("lease: retry initial %v exceeds retry max %v", c.RetryInitial, c.RetryMax))
	}
	if c.RetryMax <= 0 {
		errs = append(errs, fmt.Errorf("lease: retry max %v must be positive (renew interval %v is too short to derive it)", c.RetryMax, c.RenewInterval))
	}
	return c, errors.Join(errs...)
}
