package lock

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// waitQueue orders the blocked Acquire calls of one Lock. Only the head of the
// queue talks to the server; the others wait their turn, so a release wakes
// one attempt in this process, not a stampede, and no waiter is starved by
// later arrivals.
//
// The head attempts when:
//   - the subscription to the lock's channel is (re)established, since a
//     release may have been missed before it;
//   - a release is published on that channel, or made by this Lock's own
//     holder (which pokes the head without waiting for the message);
//   - the holder's TTL, as last observed, runs out;
//   - the fallback interval passes without any of the above: RetryInterval
//     while no subscription is confirmed (or with PlainKey, since valkey-py
//     holders never publish), quietFallback times RetryInterval while one is.
//
// A failed attempt registers the Lock on the server as waiting (the waiters
// key), which makes the holder's release publish. When this Lock's own holder
// releases and the head is idle, the release grants the key to the head
// instead (releaseScript), unless waiters of another Lock are registered: the
// head then holds without an attempt of its own.
//
// The subscription is started by the first waiter and stopped by the last one
// to leave; its goroutine ends on its own, after that waiter has returned.
// With RESP3 valkey-go carries it on the client's shared connection, so
// waiters never cost a connection each.
type waitQueue struct {
	lock *Lock

	mu        sync.Mutex // guards the fields below and those of the waiters
	waiters   []*waiter  // FIFO; waiters[0] is the head
	expiry    time.Time  // when the current holder's key expires, as last observed; zero when unknown or never
	releasing int64      // fence of the last release by this Lock's holder: its message needs no wake-up
	stopSub   context.CancelFunc
	subGen    int  // generation of the running subscription
	subbed    bool // the server confirmed subscription subGen and it has not ended since
}

// waiter is one blocked Acquire. Its fields after poke are guarded by
// waitQueue.mu.
type waiter struct {
	token      string
	own        bool          // token was made by this package: the waiter may be granted the key
	poke       chan struct{} // buffered 1: look at the queue again
	attempt    bool          // the next look must attempt
	attempting bool          // an attempt is in flight: no grant meanwhile
	granting   bool          // a release is granting the key to this waiter
	held       *Held         // the grant, once made
	gone       bool          // left the queue; a grant in flight is nobody's
}

// wait enqueues a waiter and returns when it holds the lock or ctx ends.
func (q *waitQueue) wait(ctx context.Context, o acquireOptions) (*Held, error) {
	l := q.lock
	reg := registration(o.retryInterval)
	// Fast path: nobody of ours is queued, so one attempt may do.
	q.mu.Lock()
	queued := len(q.waiters) > 0
	q.mu.Unlock()
	var expiry time.Time
	if !queued {
		h, pttl, err := l.attempt(ctx, o.token, o.own, reg)
		if err != nil || h != nil {
			q.acquired(h)
			return h, err
		}
		expiry = expiryAfter(pttl)
	}

	w := &waiter{token: o.token, own: o.own, poke: make(chan struct{}, 1)}
	q.join(w, expiry)
	tick := time.NewTimer(o.retryInterval)
	defer tick.Stop()
	var ttlTimer *time.Timer
	defer func() {
		if ttlTimer != nil {
			ttlTimer.Stop()
		}
	}()
	for {
		head, attempt, expiry, held := q.look(w)
		if held != nil {
			return held, nil
		}
		if attempt {
			h, pttl, err := l.attempt(ctx, o.token, o.own, reg)
			if err != nil || h != nil {
				q.leave(w, h, err != nil)
				return h, err
			}
			q.attempted(w, expiryAfter(pttl))
			tick.Reset(q.pace(o.retryInterval))
			continue
		}
		var ttlC <-chan time.Time
		if head && !expiry.IsZero() {
			d := time.Until(expiry)
			if ttlTimer == nil {
				ttlTimer = time.NewTimer(d)
			} else {
				ttlTimer.Reset(d)
			}
			ttlC = ttlTimer.C
		}
		var tickC <-chan time.Time
		if head {
			tickC = tick.C
		}
		pace := q.pace(o.retryInterval)
		select {
		case <-w.poke:
		case <-ttlC:
			q.mark(w)
		case <-tickC:
			q.mark(w)
			tick.Reset(pace)
		case <-ctx.Done():
			if h := q.leave(w, nil, true); h != nil {
				// Granted as ctx ended: the lock is held, which is what
				// the caller asked for (as with x/sync/semaphore).
				return h, nil
			}
			return nil, l.error("acquire", ErrNotAcquired, context.Cause(ctx))
		}
	}
}

// expiryAfter converts a remaining TTL into a local deadline; zero when the
// key has no TTL (the holder must release, or the fallback tick finds it gone).
func expiryAfter(pttl time.Duration) time.Time {
	if pttl < 0 {
		return time.Time{}
	}
	return time.Now().Add(pttl)
}

// join appends w, starting the subscription for the first waiter. A first
// waiter must attempt once the subscription is up, since a release between its
// failed attempt and the subscription would go unheard.
func (q *waitQueue) join(w *waiter, expiry time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waiters = append(q.waiters, w)
	if len(q.waiters) == 1 {
		q.expiry = expiry
		if q.stopSub == nil {
			q.startSubscription()
		}
	}
}

// registration is how long a failed attempt's registration lives: three times
// the head's longest pause between attempts, so each attempt renews it in
// time; capped, so that a huge RetryInterval cannot overflow it.
func registration(retry time.Duration) time.Duration {
	const maxRegistration = 30 * 24 * time.Hour
	if retry >= maxRegistration/(3*quietFallback) {
		return maxRegistration
	}
	return 3 * quietFallback * retry
}

// quietFallback multiplies the retry interval while releases are heard: the
// fallback then only covers what is never published (an operator's DEL of a
// key without TTL, an eviction) and lost messages.
const quietFallback = 10

// pace returns the fallback interval for the head's next wait.
func (q *waitQueue) pace(retry time.Duration) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.subbed && !q.lock.cfg.PlainKey {
		return quietFallback * retry
	}
	return retry
}

// subscribed records that subscription gen is confirmed (ok) or has ended.
// A confirmed subscription that ended wakes the head, since releases may have
// gone unheard; one that was never confirmed does not (the head's fallback
// pace never stretched, so it missed nothing), which keeps a refused
// SUBSCRIBE from turning into an attempt per resubscription.
func (q *waitQueue) subscribed(gen int, ok bool, err error) {
	q.mu.Lock()
	was := q.subbed
	if gen == q.subGen {
		q.subbed = ok
	}
	if ok || was {
		q.wakeHeadLocked()
	}
	q.mu.Unlock()
	q.lock.warnOnce(&q.lock.subRefused, ok, errors.Is(err, ErrMisconfigured),
		"lock: the server refuses the subscription; waiters attempt every retry interval instead of waking on releases",
		err)
}

// look reports whether w is the head, whether it must attempt now (clearing
// the flag and marking the attempt in flight), the observed expiry, and the
// grant w received, if any. A waiter being granted the key does not attempt.
func (q *waitQueue) look(w *waiter) (head, attempt bool, expiry time.Time, held *Held) {
	q.mu.Lock()
	defer q.mu.Unlock()
	head = len(q.waiters) > 0 && q.waiters[0] == w
	if head && w.attempt && !w.granting {
		attempt = true
		w.attempt = false
		w.attempting = true
	}
	return head, attempt, q.expiry, w.held
}

// attempted records the end of w's failed attempt and the expiry it learned.
func (q *waitQueue) attempted(w *waiter, expiry time.Time) {
	q.mu.Lock()
	w.attempting = false
	q.expiry = expiry
	q.mu.Unlock()
}

// mark makes w's next look an attempt.
func (q *waitQueue) mark(w *waiter) {
	q.mu.Lock()
	w.attempt = true
	q.mu.Unlock()
}

// acquired records a successful fast-path acquisition: a later head should
// expect the key to live for the TTL.
func (q *waitQueue) acquired(h *Held) {
	if h == nil {
		return
	}
	q.mu.Lock()
	q.expiry = h.expiry()
	q.mu.Unlock()
}

// leave removes w, which took the lock (h) or gave up. The new head is
// poked: to attempt at once if w gave up (it may have swallowed a wake-up), or
// just to re-arm its timers if w took the lock. A waiter that gives up while
// a grant to it is in flight leaves the grant to the releaser (released); one
// that was granted the key as it gave up gets the grant back, to return.
func (q *waitQueue) leave(w *waiter, h *Held, gaveUp bool) (granted *Held) {
	q.mu.Lock()
	if w.held != nil {
		q.mu.Unlock()
		return w.held
	}
	w.gone = true
	w.attempting = false
	if h != nil {
		q.expiry = h.expiry()
	}
	q.removeLocked(w, gaveUp && !w.granting, w.attempt)
	q.mu.Unlock()
	return nil
}

// removeLocked takes w out of the queue; q.mu must be held. When w was the
// head, the new head is poked, and made to attempt if attempt or pending is
// set. The last waiter out stops the subscription without waiting for its
// goroutine, which would put a goroutine switch on the path of every Acquire
// that waited.
func (q *waitQueue) removeLocked(w *waiter, attempt, pending bool) {
	i := slices.Index(q.waiters, w)
	if i >= 0 {
		q.waiters = slices.Delete(q.waiters, i, i+1)
	}
	if i == 0 && len(q.waiters) > 0 {
		next := q.waiters[0]
		next.attempt = next.attempt || attempt || pending
		pokeWaiter(next)
	}
	if len(q.waiters) == 0 && q.stopSub != nil {
		q.stopSub()
		q.stopSub, q.subbed = nil, false
	}
}

// grantee returns the waiter a release by this Lock's holder (whose fence is
// given) should grant the key to, marked as being granted: the head, when it
// is idle (no attempt in flight, no other grant) and its token is of our own
// making (a grant whose reply is lost is taken back by the waiter's token,
// which must not be anyone else's). Nil with PlainKey: valkey-py waiters poll
// and never register, so grants could starve them.
func (q *waitQueue) grantee(fence int64) *waiter {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releasing = fence
	if q.lock.cfg.PlainKey || len(q.waiters) == 0 {
		return nil
	}
	w := q.waiters[0]
	if w.attempting || w.granting || !w.own {
		return nil
	}
	w.granting = true
	return w
}

// released settles a release by this Lock's holder: the release script's
// reply n (0 not owned, -1 released, > 0 the fence of a grant to w) or err.
// A grant goes to w, or, when w has gone meanwhile, back to the caller, who
// must release it. Otherwise the head attempts at once: the key may be free.
func (q *waitQueue) released(w *waiter, n int64, err error, sent time.Time) (orphan *Held) {
	q.mu.Lock()
	if w != nil {
		w.granting = false
		if err == nil && n > 0 {
			h := &Held{lock: q.lock, token: w.token, fence: n, acquiredAt: sent}
			if w.gone {
				q.mu.Unlock()
				return h
			}
			w.held = h
			w.gone = true
			q.expiry = h.expiry()
			pokeWaiter(w)
			q.removeLocked(w, false, false)
			q.mu.Unlock()
			return nil
		}
	}
	if w != nil || n == -1 {
		q.wakeHeadLocked()
	}
	q.mu.Unlock()
	return nil
}

// wakeHeadLocked makes the head attempt; q.mu must be held. Called from
// valkey-go's receive goroutine, so it must not block.
func (q *waitQueue) wakeHeadLocked() {
	if len(q.waiters) > 0 {
		head := q.waiters[0]
		head.attempt = true
		pokeWaiter(head)
	}
}

// heardRelease wakes the head for a published release, unless it was this
// Lock's own holder's, which released already woke the head for.
func (q *waitQueue) heardRelease(fence int64) {
	q.mu.Lock()
	if fence != q.releasing {
		q.wakeHeadLocked()
	}
	q.mu.Unlock()
}

func pokeWaiter(w *waiter) {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// startSubscription follows the lock's channel until stopped; q.mu must be
// held. Each time the server confirms the subscription the head is woken,
// because releases before that moment went unheard. Between a lost
// connection and the next subscription the fallback tick covers.
func (q *waitQueue) startSubscription() {
	ctx, cancel := context.WithCancel(context.Background())
	q.subGen++
	gen := q.subGen
	q.stopSub, q.subbed = cancel, false
	go func() {
		// Events of a stopped generation at most wake the head once more.
		q.lock.Follow(ctx, func(ev Event) {
			switch ev.Kind {
			case Subscribed:
				q.subscribed(gen, true, nil)
			case Unsubscribed:
				q.subscribed(gen, false, ev.Err)
			case Released:
				q.heardRelease(ev.Fence)
			}
		})
	}()
}
