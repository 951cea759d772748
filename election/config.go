package election

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/internal/random"
	"github.com/baton-dev/baton/lease"
	"github.com/baton-dev/baton/lock"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Defaults used for zero Config fields. They follow client-go's leader
// election (15s / 10s / 2s): a crashed leader is replaced within about 15s,
// a leader cut off from Valkey stops working within 10s of its last renewal.
const (
	// DefaultTTL is the lifetime of the leadership key on the server after
	// each acquisition or renewal.
	DefaultTTL = 15 * time.Second

	// DefaultRenewDeadline is how long a leader keeps acting without a
	// successful renewal before it steps down on its own.
	DefaultRenewDeadline = 10 * time.Second

	// DefaultRetryPeriod is the leader's renewal interval, and the pause
	// after Resign before campaigning again.
	DefaultRetryPeriod = 2 * time.Second

	// DefaultKeyPrefix is prepended to the election name to form the lock
	// key, so that an election never shares a key with a lock.Lock of the
	// same name (whose default prefix is lock.DefaultKeyPrefix).
	DefaultKeyPrefix = "baton:election:"

	// RetryMargin is the margin New demands between RetryPeriod and
	// RenewDeadline: RetryPeriod*RetryMargin < RenewDeadline, so a renewal
	// that is a little late, or retried once, still lands before the leader
	// gives up. client-go's JitterFactor has the same value and the same
	// check, but there it also stretches the standbys' retry period at
	// random; nothing is jittered here, because nothing polls in step:
	// standbys wake on the leader's release and at its TTL's end rather
	// than on a period, the leader renews on the deadlines of one lease,
	// and retries after errors follow a randomized exponential backoff.
	RetryMargin = 1.2

	// JitterFactor is the former name of RetryMargin.
	//
	// Deprecated: nothing is jittered; use RetryMargin.
	JitterFactor = RetryMargin
)

// Config configures an Elector. Every zero field means its documented
// default; New copies the Config, so the caller may reuse or change it
// afterwards.
//
// The durations must satisfy TTL > RenewDeadline > RetryPeriod*RetryMargin.
// See the package documentation for the timing model behind them.
type Config struct {
	// Name is the election's name: candidates with the same Name, KeyPrefix
	// and server compete for the same leadership. Required.
	Name string

	// Identity names this candidate in the leader's record, in Leader and in
	// Watch. Default: hostname + "-" + pid + "-" + 4 random characters
	// (base64url), unique per Elector. It must not be blank. It may contain any
	// character: the token stored on the server is Identity + "#" + a random
	// suffix (unique per term), and observers take the identity as
	// everything before the last '#'.
	Identity string

	// TTL is how long the leadership key lives on the server after each
	// acquisition or renewal: a leader that crashed is replaced at most TTL
	// after its last renewal. Default DefaultTTL. At least 1ms.
	TTL time.Duration

	// RenewDeadline is how long a leader keeps leading without a successful
	// renewal, measured on the local monotonic clock from the moment before
	// the last successful renewal (or the acquisition) was sent. When it
	// passes, the leader steps down locally even if Valkey cannot be reached.
	// TTL - RenewDeadline is the margin for clock-rate differences between
	// this host and the server. Default DefaultRenewDeadline.
	RenewDeadline time.Duration

	// RetryPeriod is the leader's renewal interval. It also caps the backoff
	// after server errors, and is the pause after Resign before campaigning
	// again. Standbys wait in the lock's line (see package lock): the
	// leader's release hands the leadership to the first of them, and they
	// attempt on their own when the leader's TTL runs out and every
	// RetryPeriod (every RetryPeriod/10 while their subscription is down).
	// Every elector reads the leader, for OnNewLeader, at its TTL's end and
	// every min(TTL, 5s). Default DefaultRetryPeriod.
	RetryPeriod time.Duration

	// Callbacks receive the elector's transitions; OnElected is required.
	// See package callbacks for their ordering contract.
	Callbacks callbacks.Callbacks

	// OnRenew, when set, is called after each successful renewal with the
	// local time at which the renewal was sent, for a program's own
	// bookkeeping. Health checks need no such wiring: HealthHandler and
	// Healthy read the Elector's renewals themselves. It runs on the
	// renewal goroutine: keep it short.
	OnRenew func(at time.Time)

	// CrashOnPanic makes a panic in a callback fatal, as client-go's leader
	// election does: the leadership is stepped down from and released, Run
	// stops as if its ctx had ended, and Run then panics with the callback's
	// value, so an unrecovered panic crashes the process and a supervisor
	// restarts it. By default (false) the panic is logged with its stack the
	// moment it happens; a panic in OnElected ends that term at once (its key
	// released, OnLost run) and the candidate pauses before campaigning again
	// (RetryPeriod, doubling with each panicking term in a row, up to the
	// larger of TTL and 30s), so a standby takes over and a panic that
	// happens every time does not bounce the leadership around; a panic in
	// OnLost or OnNewLeader is only logged. Either way no leadership is ever
	// held by work that has stopped.
	CrashOnPanic bool

	// Replicas, when positive, makes every acquisition, renewal and release
	// of the leadership wait until that many replicas acknowledged it (WAIT
	// on the connection that made the write, for at most ReplicaTimeout): an
	// acquisition that is not acknowledged does not become a term, and a
	// renewal that is not does not count towards RenewDeadline. Set it to the
	// number of replicas that a failover can promote (all of a Sentinel
	// group's replicas, the replica of a Cluster shard): a failover then
	// cannot promote a replica that missed a term. See lock.Config.Replicas
	// and docs/operations.md. Zero, the default, waits for nobody.
	Replicas int

	// ReplicaTimeout bounds each wait for the replicas; default
	// lock.DefaultReplicaTimeout. It must be below RetryPeriod.
	ReplicaTimeout time.Duration

	// AOF makes the acknowledgement WAITAOF: the primary and the replicas
	// must also have written the change to their append-only file.
	AOF bool

	// KeepOnCancel keeps the leadership key on the server when Run's ctx
	// ends: the elector stops renewing and the key expires at the end of its
	// TTL. By default (false) a leader whose Run ends releases the key, so a
	// standby takes over at once.
	KeepOnCancel bool

	// KeyPrefix is prepended to Name to form the lock key; default
	// DefaultKeyPrefix. Observers (LeaderOf, Watch) must use the same prefix
	// (WithKeyPrefix).
	KeyPrefix string

	// TracerProvider makes the election's spans, and the lock's. Nil means
	// the global provider.
	TracerProvider trace.TracerProvider

	// MeterProvider makes the election's metrics. Nil means the global
	// provider.
	MeterProvider metric.MeterProvider

	// MetricIdentity adds baton.election.identity to every metric data
	// point. Off by default: the default Identity holds the process id and
	// a random part, so every restart would start new time series and a
	// metrics backend would keep the dead ones. To tell candidates apart,
	// put a stable instance name on the MeterProvider's Resource instead
	// (service.instance.id: a pod or host name), which every exporter
	// sends with each point; set MetricIdentity when Identity is stable
	// and low in cardinality (baton run --identity "$(hostname)", say).
	// Spans always carry the identity.
	MetricIdentity bool

	// Logger receives transitions at Info, renewals at Debug, and retried
	// errors at Warn. Nil means slog.Default() at the time New is called.
	Logger *slog.Logger
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Identity == "" {
		c.Identity = defaultIdentity()
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = DefaultRetryPeriod
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.ReplicaTimeout == 0 && c.Replicas > 0 {
		c.ReplicaTimeout = min(lock.DefaultReplicaTimeout, c.RetryPeriod/2)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// LockConfig returns the lock.Config an Elector built from c campaigns with,
// c's defaults filled in. Take the election's lock outside Run with it (one
// attempt, as `baton run --try` does) so that its key, announcements, claim
// window and replica acknowledgement are an elector's: handovers between it
// and electors then agree on every duration.
func (c Config) LockConfig() lock.Config {
	c = c.withDefaults()
	return lock.Config{
		Announce: true, // watchers follow the leader through the lock's events
		TTL:      c.TTL,
		// Standbys wait in line and are handed the leadership; they attempt
		// on their own ten times RetryInterval apart while they hear the
		// handovers (every RetryPeriod), and a handover to a standby that
		// froze passes on after the claim window, four RetryIntervals.
		RetryInterval:  c.RetryPeriod / 10,
		KeyPrefix:      c.KeyPrefix,
		TracerProvider: c.TracerProvider,
		Logger:         c.Logger,
		Replicas:       c.Replicas,
		ReplicaTimeout: c.ReplicaTimeout,
		AOF:            c.AOF,
	}
}

// LeaseConfig returns the lease.Config of a term of an Elector built from c,
// c's defaults filled in, without the elector's own hooks (OnRenew,
// OnRenewError, RenewContext): renewals every RetryPeriod, validity
// RenewDeadline, and TTL - RenewDeadline as the margin for clock drift.
func (c Config) LeaseConfig() lease.Config {
	c = c.withDefaults()
	return lease.Config{
		RenewInterval: c.RetryPeriod,
		Validity:      c.RenewDeadline,
		// The gap between TTL and RenewDeadline is the election's margin
		// for clock-rate differences; Validate checks that it is positive.
		DriftMargin: c.TTL - c.RenewDeadline,
		Logger:      c.Logger,
	}
}

// Validate reports every problem with c at once, as New would, after filling
// in the defaults of zero fields. It makes no server call, so a command-line
// tool can reject bad flags before connecting. It never modifies c.
func (c Config) Validate() error {
	return c.withDefaults().validate()
}

// validate checks a Config with its defaults filled in and reports every
// problem at once.
func (c Config) validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("election: name must not be empty"))
	}
	if strings.TrimSpace(c.Identity) == "" {
		errs = append(errs, fmt.Errorf("election: identity %q must not be blank", c.Identity))
	}
	ordered := true
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ttl", c.TTL}, {"renew deadline", c.RenewDeadline}, {"retry period", c.RetryPeriod}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("election: %s %v must not be negative", d.name, d.v))
			ordered = false
		}
	}
	if ordered {
		if c.TTL < time.Millisecond {
			errs = append(errs, fmt.Errorf("election: ttl %v is below the server's 1ms resolution", c.TTL))
		}
		if c.RenewDeadline >= c.TTL {
			errs = append(errs, fmt.Errorf("election: renew deadline %v must be less than ttl %v", c.RenewDeadline, c.TTL))
		}
		if margin := time.Duration(float64(c.RetryPeriod) * RetryMargin); margin >= c.RenewDeadline {
			errs = append(errs, fmt.Errorf("election: retry period %v times %v (%v) must be less than renew deadline %v, so that a late renewal still lands in time",
				c.RetryPeriod, RetryMargin, margin, c.RenewDeadline))
		}
	}
	if c.Replicas < 0 {
		errs = append(errs, fmt.Errorf("election: replicas %d must not be negative", c.Replicas))
	}
	if c.ReplicaTimeout < 0 || c.ReplicaTimeout >= c.RetryPeriod && c.Replicas > 0 {
		errs = append(errs, fmt.Errorf("election: replica timeout %v must be positive and less than retry period %v", c.ReplicaTimeout, c.RetryPeriod))
	}
	if err := c.Callbacks.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("election: %w", err))
	}
	return errors.Join(errs...)
}

// DefaultIdentity returns the identity a Config without one gets:
// hostname-pid-xxxx, with 4 random characters (3 bytes, base64url).
func DefaultIdentity() string { return defaultIdentity() }

// defaultIdentity returns hostname-pid-xxxx.
func defaultIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + random.String(3)
}

// Token returns the value an elector stores at the election's key for one
// term of identity: the identity, '#', and a random suffix (8 bytes,
// base64url, which has no '#') that makes it unique per term. Observers
// (LeaderOf, Watch) read the identity back. A program that takes an
// election's lock without an Elector (baton run --try does, with lock and
// lease) stores a Token so that observers show it.
func Token(identity string) string {
	return identity + "#" + random.String(8)
}

// identityOf recovers the identity from a stored token: everything before
// the last '#'. A token without one (a holder that is not a baton elector)
// is its own identity.
func identityOf(token string) string {
	if i := strings.LastIndexByte(token, '#'); i > 0 {
		return token[:i]
	}
	return token
}
