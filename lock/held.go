package lock

import (
	"context"
	"fmt"
	"strconv"
	"sync"
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
	own        bool // token is unique: made by this package, or promised (WithUniqueToken)
	fence      int64
	acquiredAt time.Time
	ended      atomic.Bool // released, or found not owned: no more server calls
	unsure     atomic.Bool // a call on this acquisition got no reply: release with EVAL

	mu         sync.Mutex  // guards the fields below
	validUntil time.Time   // the key lives at least until then; zero: no expiry
	unclaimed  bool        // a grant from another process, set for the claim window only
	claimTimer *time.Timer // claims it at the window's half-way mark
}

// newHeld returns an acquisition whose key was set, with the Lock's TTL, by
// a request sent at sent.
func newHeld(l *Lock, token string, own bool, fence int64, sent time.Time) *Held {
	h := &Held{lock: l, token: token, own: own, fence: fence, acquiredAt: sent}
	if l.cfg.TTL > 0 {
		h.validUntil = sent.Add(l.cfg.TTL)
	}
	return h
}

// newGrant returns an acquisition handed over by another process's release,
// which set the key for the claim window no earlier than anchor.
func newGrant(l *Lock, token string, own bool, fence int64, anchor time.Time) *Held {
	return &Held{lock: l, token: token, own: own, fence: fence, acquiredAt: anchor,
		validUntil: anchor.Add(l.claim), unclaimed: true}
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

// AcquiredAt returns a local time, with its monotonic reading, before which
// the key was not set for this acquisition: when the acquire request was
// sent, or, for a key handed over by another process's release, when this
// process's last request that found it still held was sent.
func (h *Held) AcquiredAt() time.Time { return h.acquiredAt }

// ValidUntil returns the local time, with its monotonic reading, until which
// the key is this acquisition's at least, unless it is released or deleted
// or the server loses it: AcquiredAt plus the TTL, moved on by each
// successful Reacquire, Extend or ExtendTo (counted from when its request was
// sent). For a key handed over by another process's release it is first
// AcquiredAt plus the claim window (see Config.ClaimWindow), until the claim
// that the *Lock sends before half of that window has passed resets the TTL.
// Zero for a key without expiry. Clocks of different hosts are never
// compared: the server's TTL runs on its own clock, so allow for drift
// (lease does).
func (h *Held) ValidUntil() time.Time {
	if h == nil || h.lock == nil {
		return time.Time{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.validUntil
}

// ready reports whether h can be returned as it is: it is not an unclaimed
// grant, or its claim window is less than half gone, in which case its claim
// is scheduled for the half-way mark. With replica acknowledgement a grant is
// never ready: its claim, acknowledged, is what shows that the replicas have
// the grant too. On a cluster neither: after a failover within the shard, a
// sharded subscription stays on the demoted node, which relays the grants
// the new primary publishes, including those it made to nobody (it skipped
// the waiter as dead, having no subscriber of its own); the claim tells a
// grant the server made from one it did not.
func (h *Held) ready() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.unclaimed {
		return true
	}
	if h.lock.cfg.Replicas > 0 || h.lock.sharded {
		return false
	}
	d := time.Until(h.acquiredAt.Add(h.lock.claim / 2))
	if d <= 0 {
		return false
	}
	h.claimTimer = time.AfterFunc(d, h.autoClaim)
	return true
}

// autoClaim claims an unclaimed grant that is still held.
func (h *Held) autoClaim() {
	h.mu.Lock()
	pending := h.unclaimed
	h.mu.Unlock()
	if pending && !h.ended.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		_ = h.claim(ctx)
	}
}

// claim resets the TTL of a grant whose key was set for the claim window
// only: the key then lives a whole TTL from the claim. Past the window it is
// still tried (the window is a lower bound: the key may still be ours); a key
// that passed on answers ErrNotOwned.
func (h *Held) claim(ctx context.Context) error {
	return h.extend(ctx, "reacquire", h.lock.cfg.TTL, "reset")
}

// stopClaim cancels a scheduled claim: the acquisition is ending.
func (h *Held) stopClaim() {
	h.mu.Lock()
	if h.claimTimer != nil {
		h.claimTimer.Stop()
	}
	h.mu.Unlock()
}

// Lock returns the Lock this acquisition belongs to.
func (h *Held) Lock() *Lock { return h.lock }

// Release ends this acquisition if the key still holds its token: in the
// same server step it hands the key to the first process waiting in line
// (see the package documentation), or to the next blocked Acquire of the
// same *Lock, or else deletes it. It returns
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
	h.stopClaim()
	next, entry, entryOwn := l.queue.grantee()
	local := ""
	if next != nil {
		local = next.token
	}
	args := []string{h.token, l.keys.channel, l.announce, releasedMessage(h.fence), strconv.FormatInt(h.fence, 10),
		l.keys.grant, l.ttlArg, l.claimArg, entry, local, l.id}
	sent := time.Now()
	res, acked := l.run(ctx, l.scripts.release, h.unsure.Load(), l.keyList, args)
	n, err := res.AsInt64()
	if err != nil && ambiguous(err) {
		h.unsure.Store(true)
		if next != nil {
			// The grant may have happened with its reply lost: the key
			// would hold the waiter's token (ours: only waiters with a
			// token of our own making are granted to). Take it back.
			l.cleanup(ctx, next.token)
		}
	}
	if orphan := l.queue.released(next, entry, entryOwn, n, err, sent, acked); orphan != nil {
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
	if n == 0 {
		return l.error("release", ErrNotOwned, nil)
	}
	if n == -3 {
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
	sent := time.Now()
	res, acked := l.run(ctx, l.scripts.extend, false, []string{l.keys.key}, []string{h.token, ms, mode})
	n, err := res.AsInt64()
	if err != nil {
		if ambiguous(err) {
			h.unsure.Store(true)
		}
		return l.fail(ctx, op, err)
	}
	switch n {
	case 1:
		if !acked {
			// Done on the primary, but a failover could undo it: not a
			// renewal to count on.
			return l.error(op, ErrNotReplicated, nil)
		}
		h.extended(sent, d, mode)
		return nil
	case 0:
		return l.error(op, ErrNotOwned, nil)
	case -1:
		return l.error(op, ErrNoTTL, nil)
	default:
		return l.error(op, ErrInvalidTTL, fmt.Errorf("resulting ttl would be below 1ms"))
	}
}

// extended records a successful extension of the given mode, whose request
// was sent at sent.
func (h *Held) extended(sent time.Time, d time.Duration, mode string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case mode == "add":
		if !h.validUntil.IsZero() {
			h.validUntil = h.validUntil.Add(d)
		}
	case d == 0: // a reset without TTL: no expiry
		h.validUntil, h.unclaimed = time.Time{}, false
	default: // set or reset: the key lives d from when the request was sent
		h.validUntil, h.unclaimed = sent.Add(d), false
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
