package lock

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// cleanupTimeout bounds the release that follows an acquire whose outcome is
// unknown (cancelled or cut off while the script was in flight).
const cleanupTimeout = time.Second

// Lock is one named lock on Valkey. Build it once with New and share it: it
// holds no token itself, every acquisition is its own *Held value. A Lock is
// safe for concurrent use; blocked Acquire calls on the same *Lock queue in
// FIFO order and share one subscription, so use one *Lock per name per
// process rather than one per goroutine.
type Lock struct {
	client   valkey.Client
	name     string
	cfg      Config
	keys     keyset
	keyList  []string // keys.key, keys.fence, keys.waiters: the scripts' KEYS, never modified
	id       string   // this Lock's waiter id, registered by its blocked attempts
	announce string   // "1" with cfg.Announce, else "0": the scripts' announce flag
	ttlArg   string   // cfg.TTL in ms, as the acquire script's ARGV[2]
	tracer   trace.Tracer
	spanOpts []trace.SpanStartOption // the client kind and the name attribute, built once
	queue    waitQueue
}

// New returns a Lock named name on client, which the caller keeps owning (the
// Lock never closes it). The config is copied; zero fields take their
// defaults. New makes no server call; it refuses an empty name and TTLs or
// timeouts that are negative or below the server's resolution.
func New(client valkey.Client, name string, cfg Config) (*Lock, error) {
	if client == nil {
		return nil, errors.New("lock: client must not be nil")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(name); err != nil {
		return nil, err
	}
	ks, err := keysFor(name, cfg)
	if err != nil {
		return nil, err
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	announce := "0"
	if cfg.Announce {
		announce = "1"
	}
	l := &Lock{
		client:   client,
		name:     name,
		cfg:      cfg,
		keys:     ks,
		keyList:  []string{ks.key, ks.fence, ks.waiters},
		id:       randomString(8),
		announce: announce,
		ttlArg:   strconv.FormatInt(cfg.TTL.Milliseconds(), 10),
		tracer:   tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version)),
		spanOpts: spanStartOptions(name),
	}
	l.queue.lock = l
	return l, nil
}

// Name returns the lock's name as given to New.
func (l *Lock) Name() string { return l.name }

// Key returns the key that holds the lock's token on the server.
func (l *Lock) Key() string { return l.keys.key }

// TTL returns the configured TTL (0 = no expiry).
func (l *Lock) TTL() time.Duration { return l.cfg.TTL }

// AcquireOption overrides the Lock's Config for one Acquire or TryAcquire.
type AcquireOption func(*acquireOptions)

type acquireOptions struct {
	token           string
	blockingTimeout time.Duration
	retryInterval   time.Duration
	err             error
}

// WithToken stores token, byte-exact, instead of a fresh random one. The
// caller must keep tokens unique: whoever knows the token can release.
func WithToken(token string) AcquireOption {
	return func(o *acquireOptions) {
		if token == "" {
			o.err = errors.New("lock: token must not be empty")
		}
		o.token = token
	}
}

// WithBlockingTimeout overrides Config.BlockingTimeout for one call; 0 waits
// until the context ends.
func WithBlockingTimeout(d time.Duration) AcquireOption {
	return func(o *acquireOptions) {
		if d < 0 {
			o.err = fmt.Errorf("lock: blocking timeout %v is negative", d)
		}
		o.blockingTimeout = d
	}
}

// WithRetryInterval overrides Config.RetryInterval (the fallback pace) for
// one call.
func WithRetryInterval(d time.Duration) AcquireOption {
	return func(o *acquireOptions) {
		if d <= 0 {
			o.err = fmt.Errorf("lock: retry interval %v is not positive", d)
		}
		o.retryInterval = d
	}
}

func (l *Lock) options(opts []AcquireOption) (acquireOptions, error) {
	o := acquireOptions{blockingTimeout: l.cfg.BlockingTimeout, retryInterval: l.cfg.RetryInterval}
	if len(opts) > 0 {
		// The options are closures that take a pointer: applied to o itself,
		// they would move it to the heap on every call, options or not.
		p := new(acquireOptions)
		*p = o
		for _, opt := range opts {
			opt(p)
		}
		o = *p
	}
	if o.err != nil {
		return o, &Error{Op: "acquire", Name: l.name, Err: o.err}
	}
	if o.token == "" {
		o.token = newToken()
	}
	return o, nil
}

// TryAcquire makes exactly one attempt. It returns ErrNotAcquired when the
// lock is held by someone else.
func (l *Lock) TryAcquire(ctx context.Context, opts ...AcquireOption) (*Held, error) {
	o, err := l.options(opts)
	if err != nil {
		return nil, err
	}
	ctx, span := l.startSpan(ctx, spanAcquire)
	h, _, err := l.attempt(ctx, o.token, 0)
	if err == nil && h == nil {
		err = l.error("acquire", ErrNotAcquired, nil)
	}
	endSpan(span, h, err)
	return h, err
}

// Acquire blocks until the lock is held, the blocking timeout passes
// (ErrNotAcquired) or ctx ends (an error wrapping ctx.Err()). It is not
// re-entrant: a second Acquire by the same goroutine waits like any other.
//
// While waiting it does not poll: it wakes when a holder releases (its failed
// attempts register it on the server, so the release script publishes) and at
// the moment the holder's TTL runs out (a failed attempt returns the remaining
// TTL). RetryInterval paces attempts only when neither happens, for lost
// notifications and valkey-py holders. A blocking timeout shorter than
// RetryInterval makes exactly one attempt. When the holder is an acquisition
// of the same *Lock, its release may grant the key to this call directly (see
// Held.Release); a grant that lands as ctx ends is returned, not dropped.
//
// When ctx ends or the connection fails while an attempt is in flight, the
// attempt may have succeeded on the server; Acquire then deletes the key by
// its token before returning, so nothing is left locked.
func (l *Lock) Acquire(ctx context.Context, opts ...AcquireOption) (*Held, error) {
	o, err := l.options(opts)
	if err != nil {
		return nil, err
	}
	ctx, span := l.startSpan(ctx, spanAcquire)
	h, err := l.acquire(ctx, o)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		// The caller stopped waiting (a standby shutting down): an outcome,
		// not a failure, like a blocking timeout.
		endSpan(span, nil, ErrNotAcquired)
	} else {
		endSpan(span, h, err)
	}
	return h, err
}

func (l *Lock) acquire(ctx context.Context, o acquireOptions) (*Held, error) {
	if o.blockingTimeout > 0 && o.blockingTimeout < o.retryInterval {
		h, _, err := l.attempt(ctx, o.token, 0)
		if err == nil && h == nil {
			err = l.error("acquire", ErrNotAcquired, nil)
		}
		return h, err
	}
	if o.blockingTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, o.blockingTimeout, errBlockingTimeout)
		defer cancel()
	}
	h, err := l.queue.wait(ctx, o)
	if err != nil && context.Cause(ctx) == errBlockingTimeout {
		return nil, l.error("acquire", ErrNotAcquired, nil)
	}
	return h, err
}

var errBlockingTimeout = errors.New("lock: blocking timeout")

// attempt runs the acquire script once. It returns the acquisition, or nil
// and the holder's remaining TTL (negative when the key has none). A caller
// that will wait passes reg > 0: a failed attempt then registers the Lock as
// waiting for that long, so that releases are published (acquireScript).
func (l *Lock) attempt(ctx context.Context, token string, reg time.Duration) (*Held, time.Duration, error) {
	sent := time.Now()
	args := []string{token, l.ttlArg, l.keys.channel, l.announce}
	if reg > 0 {
		args = append(args, l.id, strconv.FormatInt(reg.Milliseconds(), 10))
	}
	n, err := acquireScript.Exec(ctx, l.client, l.keyList, args).AsInt64()
	if err == nil && n == 0 {
		err = errors.New("unexpected acquire script reply 0")
	}
	if err != nil {
		if ambiguous(err) {
			l.cleanup(ctx, token)
		}
		return nil, 0, l.callError(ctx, "acquire", err)
	}
	if n < 0 {
		return nil, acquireHeldBy(n), nil
	}
	return &Held{lock: l, token: token, fence: n, acquiredAt: sent}, 0, nil
}

// cleanup deletes the key if it holds token: an acquire whose reply was lost
// may have set it. The fence is unknown, so the release script publishes the
// counter's.
func (l *Lock) cleanup(ctx context.Context, token string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	releaseScript.Exec(ctx, l.client, l.keyList, []string{token, l.keys.channel, l.announce})
}

// Locked reports whether anyone holds the lock.
func (l *Lock) Locked(ctx context.Context) (bool, error) {
	n, err := l.client.Do(ctx, l.client.B().Exists().Key(l.keys.key).Build()).AsInt64()
	if err != nil {
		return false, l.callError(ctx, "locked", err)
	}
	return n == 1, nil
}

// Do acquires the lock (blocking, with opts), runs fn with the acquisition and
// always releases it afterwards, with a fresh context bounded by a second if
// ctx has ended. It returns fn's error joined with the release error.
func (l *Lock) Do(ctx context.Context, fn func(ctx context.Context, h *Held) error, opts ...AcquireOption) error {
	h, err := l.Acquire(ctx, opts...)
	if err != nil {
		return err
	}
	ferr := fn(ctx, h)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	return errors.Join(ferr, h.Release(rctx))
}

// error wraps a sentinel and a cause into an *Error. Transport failures that
// leave the outcome unknown get ErrUnavailable, unless they are the caller's
// context ending.
func (l *Lock) error(op string, kind, cause error) error {
	if kind == nil && cause != nil && unavailable(cause) {
		kind = ErrUnavailable
	}
	return &Error{Op: op, Name: l.name, Kind: kind, Err: cause}
}

// unavailable reports whether err means the server could not do the work now
// but may later: a transport failure, a timeout, or a transient error reply.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	if verr, ok := valkey.IsValkeyErr(err); ok {
		msg := verr.Error()
		for _, p := range []string{"LOADING", "READONLY", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "NOREPLICAS"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true
}

// ambiguous reports whether a failed call may still have been executed.
func ambiguous(err error) bool {
	if _, ok := valkey.IsValkeyErr(err); ok {
		return false
	}
	return true
}

// newToken returns 16 random bytes from crypto/rand, base64url-encoded.
func newToken() string { return randomString(16) }

// randomString returns n (at most 16) random bytes from crypto/rand,
// base64url-encoded.
func randomString(n int) string {
	var b [16]byte
	_, _ = rand.Read(b[:n]) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:n])
}

// Channel returns the Pub/Sub channel on which the lock's scripts publish
// "released:<fence>" after a release that a blocked Acquire registered for,
// and, with Config.Announce, "acquired:<fence>" after every acquisition and
// "released:<fence>" after every release, for watchers that follow the holder
// without polling. Expiry is not published: a watcher learns of it from the
// TTL that Inspect reports.
func (l *Lock) Channel() string { return l.keys.channel }

// State is what Inspect observed of a lock at one moment.
type State struct {
	// Token is the holder's token, or "" when the lock is free.
	Token string
	// Fence is the holder's fencing token: the last one issued, which is the
	// holder's since nobody else can acquire while it holds. 0 when free.
	Fence int64
	// TTL is the holder's remaining TTL; negative when the key has no expiry,
	// 0 when free.
	TTL time.Duration
}

// Held reports whether someone held the lock.
func (s State) Held() bool { return s.Token != "" }

// Inspect reads the holder's token, fencing token and remaining TTL in one
// round trip, without taking part in the lock.
func (l *Lock) Inspect(ctx context.Context) (State, error) {
	b := l.client.B()
	res := l.client.DoMulti(ctx,
		b.Get().Key(l.keys.key).Build(),
		b.Pttl().Key(l.keys.key).Build(),
		b.Get().Key(l.keys.fence).Build(),
	)
	token, err := res[0].ToString()
	if valkey.IsValkeyNil(err) {
		return State{}, nil
	}
	if err != nil {
		return State{}, l.callError(ctx, "inspect", err)
	}
	pttl, err := res[1].AsInt64()
	if err != nil {
		return State{}, l.callError(ctx, "inspect", err)
	}
	if pttl == -2 { // expired between the GET and the PTTL
		return State{}, nil
	}
	fence, err := res[2].AsInt64()
	if err != nil && !valkey.IsValkeyNil(err) {
		return State{}, l.callError(ctx, "inspect", err)
	}
	return State{Token: token, Fence: fence, TTL: time.Duration(pttl) * time.Millisecond}, nil
}

// callError wraps the error of a server call made with ctx. A context error
// that is not ctx's own is the server being unavailable: valkey-go reports
// the cancellation of a connection attempt that another call started to
// every call waiting for that connection.
func (l *Lock) callError(ctx context.Context, op string, err error) error {
	if ctx.Err() == nil && errors.Is(err, context.Canceled) {
		return &Error{Op: op, Name: l.name, Kind: ErrUnavailable, Err: err}
	}
	return l.error(op, nil, err)
}
