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
	keyList  []string      // keys.key, keys.fence, keys.queue: the scripts' KEYS, never modified
	id       string        // this Lock's waiter id, registered by its blocked attempts
	announce string        // "1" with cfg.Announce, else "0": the scripts' announce flag
	ttlArg   string        // cfg.TTL in ms, as the scripts take it
	claim    time.Duration // cfg.ClaimWindow, rounded up to whole ms
	claimArg string        // claim in ms, as the scripts take it
	tracer   trace.Tracer
	spanOpts []trace.SpanStartOption // the client kind and the name attribute, built once
	log      *slog.Logger
	scripts  scriptSet // classic, or sharded on a cluster
	sharded  bool      // the client is a cluster client: sharded Pub/Sub
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
	if cfg.TTL == NoExpiry {
		cfg.TTL = 0 // from here on, 0 is no expiry
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
		keyList:  []string{ks.key, ks.fence, ks.queue},
		id:       randomString(8),
		announce: announce,
		ttlArg:   strconv.FormatInt(milliseconds(cfg.TTL), 10),
		claim:    time.Duration(milliseconds(cfg.ClaimWindow)) * time.Millisecond,
		claimArg: strconv.FormatInt(milliseconds(cfg.ClaimWindow), 10),
		tracer:   tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version)),
		spanOpts: spanStartOptions(name),
		log:      cfg.Logger.With("lock", name),
		scripts:  classicScripts,
	}
	if client.Mode() == valkey.ClientModeCluster {
		l.scripts, l.sharded = shardedScripts, true
	}
	l.queue.lock = l
	return l, nil
}

// Name returns the lock's name as given to New.
func (l *Lock) Name() string { return l.name }

// Key returns the key that holds the lock's token on the server.
func (l *Lock) Key() string { return l.keys.key }

// TTL returns the configured TTL; 0 for a lock without expiry (NoExpiry).
func (l *Lock) TTL() time.Duration { return l.cfg.TTL }

// AcquireOption overrides the Lock's Config for one Acquire or TryAcquire.
type AcquireOption func(*acquireOptions)

type acquireOptions struct {
	token           string
	own             bool // token is unique: made by newToken, or promised by the caller (WithUniqueToken)
	blockingTimeout time.Duration
	retryInterval   time.Duration
	err             error
	waiting         func() // called once, if the call goes on to wait in line (Acquire's tracing)
}

// WithToken stores token, byte-exact, instead of a fresh random one. The
// caller should keep tokens unique: whoever knows the token can release.
//
// Since a caller's token may be shared (a host name used as the token by two
// callers), baton never takes a key holding such a token for this
// acquisition's unless its own call said so: it never deletes a key by it
// (see Acquire), never hands a release's key to a waiter with it in the same
// process, and a grant to it from another process's release that goes
// unheard is not recognised by a later attempt (it expires after the claim
// window instead). WithUniqueToken lifts these limits.
func WithToken(token string) AcquireOption {
	return func(o *acquireOptions) {
		if token == "" {
			o.err = errors.New("lock: token must not be empty")
		}
		o.token, o.own = token, false
	}
}

// WithUniqueToken is WithToken for a token that the caller promises no other
// acquisition of the lock ever uses (it has a random part, say): baton then
// treats it as one of its own making, so a key that holds it can only be
// this acquisition's. An election's tokens are made this way.
func WithUniqueToken(token string) AcquireOption {
	return func(o *acquireOptions) {
		if token == "" {
			o.err = errors.New("lock: token must not be empty")
		}
		o.token, o.own = token, true
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
	res, err := l.attempt(ctx, attemptArgs{token: o.token, own: o.own})
	if err == nil && res.held == nil {
		err = l.error("acquire", ErrNotAcquired, nil)
	}
	endSpan(span, res.held, err)
	return res.held, err
}

// Acquire blocks until the lock is held, the blocking timeout passes, or ctx
// ends; in the last two cases it returns ErrNotAcquired (wrapping ctx's error
// when ctx ended), also when the server was unreachable meanwhile: the
// caller's deadline, not the server, ended the wait. It is not re-entrant: a
// second Acquire by the same goroutine waits like any other.
//
// While waiting it does not poll: it waits in line on the server and is
// handed the key by the holder's release, or attempts at the moment the
// holder's TTL runs out (a failed attempt returns the remaining TTL).
// RetryInterval paces attempts only when neither happens, for lost messages
// and valkey-py holders. A blocking timeout shorter than RetryInterval makes
// exactly one attempt. A handover that lands as ctx ends is returned, not
// dropped.
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
	parent := ctx
	ctx, span := l.startSpan(ctx, spanAcquire)
	var waitStart time.Time
	if span.IsRecording() {
		o.waiting = func() {
			span.SetAttributes(AttrAcquired.Bool(false), AttrWaits.Bool(true))
			span.End()
			waitStart = time.Now()
		}
	}
	h, err := l.acquire(ctx, o)
	if waitStart.IsZero() {
		endSpan(span, h, err)
	} else {
		l.recordWait(parent, span.SpanContext(), waitStart, h, err)
	}
	return h, err
}

func (l *Lock) acquire(ctx context.Context, o acquireOptions) (*Held, error) {
	if o.blockingTimeout > 0 && o.blockingTimeout < o.retryInterval {
		res, err := l.attempt(ctx, attemptArgs{token: o.token, own: o.own})
		if err == nil && res.held == nil {
			err = l.error("acquire", ErrNotAcquired, nil)
		}
		return res.held, err
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
func (l *Lock) attempt(ctx context.Context, a attemptArgs) (attemptResult, error) {
	if err := ctx.Err(); err != nil {
		return attemptResult{}, l.error("acquire", ErrNotAcquired, context.Cause(ctx))
	}
	res := attemptResult{sent: time.Now()}
	recognize := "0"
	if a.entryOwn {
		recognize = "1"
	}
	id := ""
	if a.mode != modeNone {
		id = l.id
	}
	args := []string{a.token, l.ttlArg, l.keys.channel, l.announce, a.mode, a.entry, id, l.keys.grant, l.claimArg, recognize}
	sctx, stop := awaitReply(ctx)
	result, acked := l.run(sctx, l.scripts.acquire, false, l.keyList, args)
	stop()
	reply, err := result.ToMessage()
	var n int64
	if err == nil {
		n, err = acquireReply(reply)
	}
	if err != nil {
		if a.own && ambiguous(err) {
			l.cleanup(ctx, a.token)
		}
		return attemptResult{}, l.fail(ctx, "acquire", err)
	}
	switch {
	case reply.IsArray():
		// A grant to this *Lock's entry that it had not heard of: the
		// waiter queue dates it and claims it.
		res.held, res.missed = &Held{lock: l, token: a.entry[len(l.id)+1:], own: true, fence: n}, true
		return res, nil
	case n < 0:
		res.pttl = acquireHeldBy(n)
		return res, nil
	}
	h := newHeld(l, a.token, a.own, n, res.sent)
	if ctx.Err() != nil || !acked {
		// Acquired as the caller gave up, or without the replicas'
		// acknowledgement asked for (a failover could lose it): give it
		// back (or on, to the next waiter) rather than return it.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		_ = h.release(rctx)
		cancel()
		if !acked && ctx.Err() == nil {
			return attemptResult{}, l.error("acquire", ErrNotReplicated, nil)
		}
		return attemptResult{}, l.error("acquire", ErrNotAcquired, context.Cause(ctx))
	}
	l.queue.acquiredFence(n)
	res.held = h
	return res, nil
}

// attemptArgs is what one attempt sends.
type attemptArgs struct {
	token    string // the token to store
	own      bool   // token was made by this package
	mode     string // how the caller takes part in the queue: modeNone, modePush, modeEnsure
	entry    string // its entry in the queue, "<waiter id> <token>", unless modeNone
	entryOwn bool   // the entry's token was made by this package: a key holding it can only be a grant to us
}

// attemptResult is what one attempt found.
type attemptResult struct {
	held   *Held         // the acquisition, if any
	missed bool          // held is a grant to the caller's entry found by the attempt, not dated yet
	pttl   time.Duration // the holder's remaining TTL when not acquired; negative for none
	sent   time.Time     // when the attempt was sent
}

// expiry converts the holder's remaining TTL into a local deadline; zero when
// the key has no TTL (the holder must release, or the fallback tick finds it
// gone).
func (r attemptResult) expiry() time.Time {
	if r.pttl < 0 {
		return time.Time{}
	}
	return r.sent.Add(r.pttl)
}

// acquireReply decodes the reply of acquireScript: an integer, or a table
// holding the fence of a grant the caller missed.
func acquireReply(m valkey.ValkeyMessage) (int64, error) {
	if m.IsArray() {
		vals, err := m.ToArray()
		if err != nil || len(vals) != 1 {
			return 0, fmt.Errorf("unexpected acquire script reply %v", m)
		}
		n, err := vals[0].AsInt64()
		if err == nil && n <= 0 {
			err = fmt.Errorf("unexpected fence %d", n)
		}
		return n, err
	}
	n, err := m.AsInt64()
	if err == nil && n == 0 {
		err = errors.New("unexpected acquire script reply 0")
	}
	return n, err
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
	l.run(ctx, l.scripts.release, true, l.keyList, []string{token, l.keys.channel, l.announce, "", "0",
		l.keys.grant, l.ttlArg, l.claimArg, "", "", ""})
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
