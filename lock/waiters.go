package lock

import (
	"context"
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
//   - the subscription to the lock's release channel is (re)established, since
//     a release may have been missed before it;
//   - a release is published on that channel;
//   - the holder's TTL, as last observed, runs out;
//   - the fallback interval passes without any of the above: RetryInterval
//     while no subscription is confirmed (or with PlainKey, since valkey-py
//     holders never publish), quietFallback times RetryInterval while one is.
//
// The subscription is started by the first waiter and stopped, and joined, by
// the last one to leave. With RESP3 valkey-go carries it on the client's
// shared connection, so waiters never cost a connection each.
type waitQueue struct {
	lock *Lock

	mu      sync.Mutex // guards the fields below
	waiters []*waiter  // FIFO; waiters[0] is the head
	expiry  time.Time  // when the current holder's key expires, as last observed; zero when unknown or never
	stopSub context.CancelFunc
	subDone chan struct{}
	subGen  int  // generation of the running subscription
	subbed  bool // the server confirmed subscription subGen and it has not ended since
}

type waiter struct {
	poke    chan struct{} // buffered 1: look at the queue again
	attempt bool          // guarded by waitQueue.mu: the next look must attempt
}

// wait enqueues a waiter and returns when it holds the lock or ctx ends.
func (q *waitQueue) wait(ctx context.Context, o acquireOptions) (*Held, error) {
	l := q.lock
	// Fast path: nobody of ours is queued, so one attempt may do.
	q.mu.Lock()
	queued := len(q.waiters) > 0
	q.mu.Unlock()
	var expiry time.Time
	if !queued {
		h, pttl, err := l.attempt(ctx, o.token)
		if err != nil || h != nil {
			q.acquired(h)
			return h, err
		}
		expiry = expiryAfter(pttl)
	}

	w := &waiter{poke: make(chan struct{}, 1)}
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
		head, attempt, expiry := q.look(w)
		if head && attempt {
			h, pttl, err := l.attempt(ctx, o.token)
			if err != nil || h != nil {
				q.leave(w, h, err != nil)
				return h, err
			}
			q.observed(expiryAfter(pttl))
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
			q.leave(w, nil, true)
			return nil, l.error("acquire", nil, context.Cause(ctx))
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

// subscribed records that subscription gen is confirmed (or has ended). An
// ended subscription wakes the head: releases may have gone unheard.
func (q *waitQueue) subscribed(gen int, ok bool) {
	q.mu.Lock()
	if gen == q.subGen {
		q.subbed = ok
	}
	q.mu.Unlock()
	q.wakeHead()
}

// look reports whether w is the head, whether it must attempt (clearing the
// flag), and the observed expiry.
func (q *waitQueue) look(w *waiter) (head, attempt bool, expiry time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	head = len(q.waiters) > 0 && q.waiters[0] == w
	attempt = w.attempt
	w.attempt = false
	return head, attempt, q.expiry
}

// mark makes w's next look an attempt.
func (q *waitQueue) mark(w *waiter) {
	q.mu.Lock()
	w.attempt = true
	q.mu.Unlock()
}

// observed records the expiry learned from a failed attempt.
func (q *waitQueue) observed(expiry time.Time) {
	q.mu.Lock()
	q.expiry = expiry
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

// leave removes w. The new head is poked: to attempt at once if w gave up
// (it may have swallowed a wake-up), or just to re-arm its timers if w took the
// lock. The last waiter out stops the subscription and waits for it to end.
func (q *waitQueue) leave(w *waiter, h *Held, gaveUp bool) {
	q.mu.Lock()
	if h != nil {
		q.expiry = h.expiry()
	}
	i := slices.Index(q.waiters, w)
	if i >= 0 {
		q.waiters = slices.Delete(q.waiters, i, i+1)
	}
	if i == 0 && len(q.waiters) > 0 {
		next := q.waiters[0]
		next.attempt = next.attempt || gaveUp || w.attempt
		pokeWaiter(next)
	}
	var stop context.CancelFunc
	var done chan struct{}
	if len(q.waiters) == 0 && q.stopSub != nil {
		stop, done = q.stopSub, q.subDone
		q.stopSub, q.subDone, q.subbed = nil, nil, false
	}
	q.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// wakeHead makes the head attempt. Called from valkey-go's receive goroutine,
// so it must not block.
func (q *waitQueue) wakeHead() {
	q.mu.Lock()
	if len(q.waiters) > 0 {
		head := q.waiters[0]
		head.attempt = true
		pokeWaiter(head)
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
	done := make(chan struct{})
	q.subGen++
	gen := q.subGen
	q.stopSub, q.subDone, q.subbed = cancel, done, false
	go func() {
		defer close(done)
		q.lock.Follow(ctx, func(ev Event) {
			switch ev.Kind {
			case Subscribed:
				q.subscribed(gen, true)
			case Unsubscribed:
				q.subscribed(gen, false)
			case Released:
				q.wakeHead()
			}
		})
	}()
}
