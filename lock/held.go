package lock

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Held is one acquisition of a Lock: the token stored on the server, the
// fencing token issued with it, and the name. Only code that has the *Held
// can release or extend it; hand it to another goroutine to pass ownership
// on. A Held is safe for concurrent use; the server arbitrates concurrent
// calls.
type Held struct {
	lock       *Lock
	token      string
	own        bool // token was made by this package, not given by the caller
	fence      int64
	acquiredAt time.Time
	ended      atomic.Bool // released, or found not owned: no more server calls
	unsure     atomic.Bool // a call on this acquisition got no reply: release with EVAL
}

// Name returns the lock's name.
func (h *Held) Name() string { return h.lock.name }

// milliseconds converts d to the server's whole milliseconds, rounding up:
// a TTL or an extension is never shorter than asked, a negative extension
// never shortens by more than asked.
func milliseconds(d time.Duration) int64 {
	ms := d.Milliseconds()
	if d%time.Millisecond > 0 {
		ms++
	}
	return ms
}

// Token returns the value stored at the lock's key for this acquisition.
func (h *Held) Token() string { return h.token }

// Fence returns the fencing token of this acquisition: strictly greater than
// the fencing token of every earlier acquisition of the same lock. Send it
// with every write to a protected resource, which must refuse a write whose
// token is lower than the highest it has seen.
func (h *Held) Fence() int64 { return h.fence }

// AcquiredAt returns the local time, with its monotonic reading, at which the
// acquire request was sent. The key's TTL started no earlier than this, so a
// lock with TTL d is held at least until AcquiredAt().Add(d) unless released,
// deleted or extended.
func (h *Held) AcquiredAt() time.Time { return h.acquiredAt }

// Lock returns the Lock this acquisition belongs to.
func (h *Held) Lock() *Lock { return h.lock }

// Release deletes the key if it still holds this acquisition's token and
// wakes the waiters; when a blocked Acquire of the same *Lock is next in line,
// it hands the key to that waiter instead, in the same server step (unless
// waiters of other Locks are registered: see Lock.Acquire). It returns
// ErrNotOwned when the token is no longer there (expired, deleted,
// overwritten) and ErrNotHeld, without a server call, once the acquisition
// has ended, or for a nil or zero *Held.
//
// When the server cannot be reached, or ctx ends before it answers, the
// outcome is unknown and the acquisition stays releasable: call Release
// again. Once any call on the acquisition has gone unanswered, Release is
// sent as EVAL rather than EVALSHA, so it runs even if the server comes back
// without the script in its cache after the caller has stopped waiting; a
// renewal that the server runs late is then undone by the release queued
// behind it.
func (h *Held) Release(ctx context.Context) error {
	if h == nil || h.lock == nil {
		return &Error{Op: "release", Kind: ErrNotHeld}
	}
	ctx, span := h.lock.startSpan(ctx, spanRelease)
	setFence(span, h.fence)
	err := h.release(ctx)
	endSpan(span, nil, err)
	return err
}

func (h *Held) release(ctx context.Context) error {
	l := h.lock
	if h.ended.Load() {
		return l.error("release", ErrNotHeld, nil)
	}
	next := l.queue.grantee(h.fence)
	args := make([]string, 4, 7)
	args[0], args[1], args[2], args[3] = h.token, l.keys.channel, l.announce, releasedMessage(h.fence)
	if next != nil {
		args = append(args, l.id, next.token, l.ttlArg)
	}
	script := releaseScript
	if h.unsure.Load() {
		script = releaseEval
	}
	sent := time.Now()
	n, err := script.Exec(ctx, l.client, l.keyList, args).AsInt64()
	if err != nil && ambiguous(err) {
		h.unsure.Store(true)
		if next != nil {
			// The grant may have happened with its reply lost: the key
			// would hold the waiter's token (ours: only waiters with a
			// token of our own making are granted to). Take it back.
			l.cleanup(ctx, next.token)
		}
	}
	if orphan := l.queue.released(next, n, err, sent); orphan != nil {
		// Granted to a waiter that gave up meanwhile: pass it on.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		_ = orphan.Release(rctx)
		cancel()
	}
	if err != nil {
		return l.fail(ctx, "release", err)
	}
	if !h.ended.CompareAndSwap(false, true) {
		return l.error("release", ErrNotHeld, nil)
	}
	switch n {
	case 0:
		return l.error("release", ErrNotOwned, nil)
	case -3:
		l.publishRefused()
	}
	return nil
}

// Extend adds d to the remaining TTL, if the lock is still owned and has a
// TTL. A negative d shortens it, but never to below one millisecond: that is
// ErrInvalidTTL and nothing changes (the key is never deleted this way). The
// server counts whole milliseconds: d is rounded up to the next one, so
// Extend(500*time.Microsecond) adds a millisecond.
func (h *Held) Extend(ctx context.Context, d time.Duration) error {
	return h.extend(ctx, "extend", d, "add")
}

// ExtendTo sets the remaining TTL to d (valkey-py's extend with
// replace_ttl=True), if the lock is still owned and has a TTL. d must be at
// least one millisecond; it is rounded up to a whole one.
func (h *Held) ExtendTo(ctx context.Context, d time.Duration) error {
	if h == nil || h.lock == nil {
		return &Error{Op: "extend", Kind: ErrNotHeld}
	}
	if d < time.Millisecond {
		return h.lock.error("extend", ErrInvalidTTL, fmt.Errorf("ttl %v is below 1ms", d))
	}
	return h.extend(ctx, "extend", d, "set")
}

// Reacquire resets the remaining TTL to the Lock's configured TTL, if the lock
// is still owned. It returns ErrNoTTL for a lock configured without TTL.
// This is the renewal a lease performs.
func (h *Held) Reacquire(ctx context.Context) error {
	if h == nil || h.lock == nil {
		return &Error{Op: "reacquire", Kind: ErrNotHeld}
	}
	if h.lock.cfg.TTL == 0 {
		return h.lock.error("reacquire", ErrNoTTL, nil)
	}
	return h.extend(ctx, "reacquire", h.lock.cfg.TTL, "reset")
}

func (h *Held) extend(ctx context.Context, op string, d time.Duration, mode string) error {
	if h == nil || h.lock == nil {
		return &Error{Op: op, Kind: ErrNotHeld}
	}
	spanName := spanExtend
	if op == "reacquire" {
		spanName = spanReacquire
	}
	ctx, span := h.lock.startSpan(ctx, spanName)
	setFence(span, h.fence)
	err := h.doExtend(ctx, op, d, mode)
	endSpan(span, nil, err)
	return err
}

func (h *Held) doExtend(ctx context.Context, op string, d time.Duration, mode string) error {
	l := h.lock
	if h.ended.Load() {
		return l.error(op, ErrNotHeld, nil)
	}
	if l.cfg.TTL == 0 && mode != "reset" {
		return l.error(op, ErrNoTTL, nil)
	}
	ms := l.ttlArg
	if d != l.cfg.TTL {
		ms = strconv.FormatInt(milliseconds(d), 10)
	}
	n, err := extendScript.Exec(ctx, l.client, []string{l.keys.key}, []string{h.token, ms, mode}).AsInt64()
	if err != nil {
		if ambiguous(err) {
			h.unsure.Store(true)
		}
		return l.fail(ctx, op, err)
	}
	switch n {
	case 1:
		return nil
	case 0:
		return l.error(op, ErrNotOwned, nil)
	case -1:
		return l.error(op, ErrNoTTL, nil)
	default:
		return l.error(op, ErrInvalidTTL, fmt.Errorf("resulting ttl would be below 1ms"))
	}
}

// Owned reports whether the server still stores this acquisition's token.
// It is false once the acquisition has ended, without a server call.
func (h *Held) Owned(ctx context.Context) (bool, error) {
	if h == nil || h.lock == nil || h.ended.Load() {
		return false, nil
	}
	l := h.lock
	v, err := l.client.Do(ctx, l.client.B().Get().Key(l.keys.key).Build()).ToString()
	if valkey.IsValkeyNil(err) {
		return false, nil
	}
	if err != nil {
		return false, l.fail(ctx, "owned", err)
	}
	return v == h.token, nil
}

// expiry is the local time by which the key expires unless renewed; zero for a
// lock without TTL.
func (h *Held) expiry() time.Time {
	if h.lock.cfg.TTL == 0 {
		return time.Time{}
	}
	return time.Now().Add(h.lock.cfg.TTL)
}

// releasedMessage is what a release by the holder of fence publishes.
func releasedMessage(fence int64) string {
	var b [len(releasedPrefix) + 20]byte
	return string(strconv.AppendInt(append(b[:0], releasedPrefix...), fence, 10))
}
