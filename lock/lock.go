package lock

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
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
	log      *slog.Logger
	queue    waitQueue

	// Problems logged once until they clear (see warnOnce).
	subRefused, pubRefused atomic.Bool
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
		ttlArg:   strconv.FormatInt(milliseconds(cfg.TTL), 10),
		tracer:   tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version)),
		spanOpts: spanStartOptions(name),
		log:      cfg.Logger.With("lock", name),
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
	own             bool // token was made by newToken, not given by the caller
	blockingTimeout time.Duration
	retryInterval   time.Duration
	err             error
}

// WithToken stores token, byte-exact, instead of a fresh random one. The
// caller should keep tokens unique: whoever knows the token can release.
//
// Since a caller's token may be shared (a host name used as the token by two
// callers), baton never deletes a key by such a token unless it knows its
// own call set it (see Acquire), and a release by this *Lock's holder never
// grants the key to a waiter with such a token.
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
		o.token, o.own = newToken(), true
	}
	return o, nil
}

// TryAcquire makes exactly one attempt. It returns ErrNotAcquired when the
// lock is held by someone else, and ErrNotAcquired wrapping ctx's error,
// without sending anything, when ctx has already ended.
func (l *Lock) TryAcquire(ctx context.Context, opts ...AcquireOption) (*Held, error) {
	o, err := l.options(opts)
	if err != nil {
		return nil, err
	}
	ctx, span := l.startSpan(ctx, spanAcquire)
	h, _, err := l.attempt(ctx, o.token, o.own, 0)
	if err == nil && h == nil {
		err = l.error("acquire", ErrNotAcquired, nil)
	}
	endSpan(span, h, err)
	return h, err
}

// Acquire blocks until the lock is held, the blocking timeout passes, or ctx
// ends; in the last two cases it returns ErrNotAcquired (wrapping ctx's error
// when ctx ended), also when the server was unreachable meanwhile: the
// caller's deadline, not the server, ended the wait. It is not re-entrant: a
// second Acquire by the same goroutine waits like any other.
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
// Errors other than "held by someone else" end the call at once:
// ErrUnavailable when the server cannot be reached (retry later),
// ErrMisconfigured when it refuses for good.
//
// When ctx ends while an attempt is in flight, Acquire waits for its reply
// (at most a second) and releases what it acquired, so nothing is left
// locked and the caller gets ErrNotAcquired. When the connection fails with
// an attempt in flight, the attempt may have succeeded on the server; Acquire
// then deletes the key by its token, unless the token was the caller's
// (WithToken): that key expires by its TTL.
func (l *Lock) Acquire(ctx context.Context, opts ...AcquireOption) (*Held, error) {
	o, err := l.options(opts)
	if err != nil {
		return nil, err
	}
	ctx, span := l.startSpan(ctx, spanAcquire)
	h, err := l.acquire(ctx, o)
	endSpan(span, h, err)
	return h, err
}

func (l *Lock) acquire(ctx context.Context, o acquireOptions) (*Held, error) {
	if o.blockingTimeout > 0 && o.blockingTimeout < o.retryInterval {
		h, _, err := l.attempt(ctx, o.token, o.own, 0)
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
//
// An attempt is never sent with a context that has already ended. When ctx
// ends while it is in flight, its reply is still awaited, for up to
// cleanupTimeout: an attempt that acquired is then released at once, so the
// caller, who has gone, holds nothing. Awaiting, rather than deleting the key
// by token at once, matters twice: a caller's token (WithToken) may also be
// another acquisition's, such as a host name used by two callers, whose key a
// delete by token would remove; and valkey-go may send the delete on another
// connection, where the server can run it before the attempt it was meant to
// undo. Only when no reply comes (the connection failed, or the server did
// not answer within cleanupTimeout) is the outcome unknown: a token of our own
// making is then deleted by token, which can only remove our own write; a
// key set with a caller's token expires by its TTL.
func (l *Lock) attempt(ctx context.Context, token string, own bool, reg time.Duration) (*Held, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, l.error("acquire", ErrNotAcquired, context.Cause(ctx))
	}
	sent := time.Now()
	args := []string{token, l.ttlArg, l.keys.channel, l.announce}
	if reg > 0 {
		args = append(args, l.id, strconv.FormatInt(reg.Milliseconds(), 10))
	}
	sctx, stop := awaitReply(ctx)
	n, err := acquireScript.Exec(sctx, l.client, l.keyList, args).AsInt64()
	stop()
	if err == nil && n == 0 {
		err = errors.New("unexpected acquire script reply 0")
	}
	if err != nil {
		if own && ambiguous(err) {
			l.cleanup(ctx, token)
		}
		return nil, 0, l.fail(ctx, "acquire", err)
	}
	if n < 0 {
		return nil, acquireHeldBy(n), nil
	}
	h := &Held{lock: l, token: token, own: own, fence: n, acquiredAt: sent}
	if ctx.Err() != nil {
		// Acquired as the caller gave up: give it back (or on, to the
		// next local waiter) rather than leave it held by nobody.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		_ = h.release(rctx)
		cancel()
		return nil, 0, l.error("acquire", ErrNotAcquired, context.Cause(ctx))
	}
	return h, 0, nil
}

// awaitReply returns a context for a call whose reply must be awaited even if
// ctx ends: it keeps ctx's values and is cancelled only cleanupTimeout after
// ctx ends, or by stop.
func awaitReply(ctx context.Context) (_ context.Context, stop func()) {
	if ctx.Done() == nil {
		return ctx, func() {}
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopAfter := context.AfterFunc(ctx, func() {
		t := time.NewTimer(cleanupTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-sctx.Done():
		}
	})
	return sctx, func() {
		stopAfter()
		cancel()
	}
}

// cleanup deletes the key if it holds token: an acquire or a grant whose
// reply was lost may have set it. It is sent as EVAL, never EVALSHA, with a
// fresh context bounded by cleanupTimeout: a server that comes back without
// the script in its cache, after the caller has gone, still runs it. The
// fence is unknown, so the release script publishes the counter's.
func (l *Lock) cleanup(ctx context.Context, token string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	releaseEval.Exec(ctx, l.client, l.keyList, []string{token, l.keys.channel, l.announce})
}

// Locked reports whether anyone holds the lock.
func (l *Lock) Locked(ctx context.Context) (bool, error) {
	n, err := l.client.Do(ctx, l.client.B().Exists().Key(l.keys.key).Build()).AsInt64()
	if err != nil {
		return false, l.fail(ctx, "locked", err)
	}
	return n == 1, nil
}

// Do acquires the lock (blocking, with opts), runs fn with the acquisition
// and releases it afterwards, also when fn panics (the panic then goes on
// once the key is released). The release uses a fresh context bounded by a
// second, so it works when ctx has ended. Do returns fn's error joined with
// the release's.
//
// Do does not renew: if fn outlives the TTL, the lock passes on while fn
// runs, and Do reports it only afterwards (the release finds ErrNotOwned).
// For work that may outlast the TTL, use lease.Do, which renews and cancels
// fn's context the moment the lock is lost.
func (l *Lock) Do(ctx context.Context, fn func(ctx context.Context, h *Held) error, opts ...AcquireOption) (err error) {
	h, err := l.Acquire(ctx, opts...)
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		err = errors.Join(err, h.Release(rctx))
	}()
	return fn(ctx, h)
}

// error wraps a sentinel and a cause into an *Error.
func (l *Lock) error(op string, kind, cause error) error {
	return &Error{Op: op, Name: l.name, Kind: kind, Err: cause}
}

// fail wraps the error of a server call made with ctx, classified (see
// classify). For an acquisition, ctx ending is "not acquired".
func (l *Lock) fail(ctx context.Context, op string, err error) error {
	kind := classify(ctx, err)
	if kind == nil && op == "acquire" {
		kind = ErrNotAcquired
	}
	return &Error{Op: op, Name: l.name, Kind: kind, Err: err}
}

// warnOnce logs msg at Warn when bad is set and flag is not, and sets flag;
// cleared (a later refusal is logged again) when ok is set.
func (l *Lock) warnOnce(flag *atomic.Bool, ok, bad bool, msg string, err error) {
	switch {
	case ok:
		flag.Store(false)
	case bad && flag.CompareAndSwap(false, true):
		l.log.Warn(msg, "error", err)
	}
}

// publishRefused logs, once, that a release's PUBLISH was refused.
func (l *Lock) publishRefused() {
	l.warnOnce(&l.pubRefused, false, true,
		"lock: the server refuses PUBLISH on the lock's channel; releases are done, but waiters in other processes learn of them only by their fallback (grant +publish and the channel)",
		nil)
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
