package lock

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// waitQueue is a *Lock's part in the line of waiters. Blocked Acquire calls
// of one *Lock wait in a local FIFO queue; only its head talks to the
// server. While the key is held by another process, the *Lock has one entry
// in the server's queue (see scripts.go), and a release by the holder hands
// the key to the first live entry: the *Lock hears the grant on its grant
// channel and gives it to its head. So one release wakes one waiter, in
// arrival order across processes, however many wait; goroutines of one
// *Lock take their turn together, and a release by one of them hands the key
// straight to the next in the same round trip unless another process waits.
//
// The head attempts itself only when it must:
//   - on joining, unless the *Lock is already listening for grants (then its
//     first attempt already took its place in line);
//   - when the grant subscription is (re)established: a grant made while it
//     was down went unheard, so the attempt makes sure of the *Lock's entry
//     (and finds a grant it missed);
//   - when the key was freed by a release of this *Lock's own holder;
//   - when the holder's TTL, as last observed, runs out, since an expiry is
//     not published: the attempt that finds the key free hands it to the
//     first in line (or takes it);
//   - when the fallback interval passes without any of the above:
//     RetryInterval while no subscription is confirmed (or with PlainKey,
//     which has no queue: valkey-py waiters poll and cannot join it),
//     quietFallback times RetryInterval while one is.
//
// The subscription is started by the first waiter and stopped a little after
// the last one leaves (lingerFor), so that a process that acquires
// again at once keeps it: its next Acquire takes its place in line in its
// first attempt. With RESP3 valkey-go carries it on the client's shared
// connection, so waiters never cost a connection each.
type waitQueue struct {
	lock *Lock

	mu      sync.Mutex // guards the fields below and those of the waiters
	waiters []*waiter  // FIFO; waiters[0] is the head
	expiry  time.Time  // when the current holder's key expires, as last observed; zero when unknown or never

	// This *Lock's place in the server's queue.
	entry    string    // "<id> <token>" while queued (or believed to be); "" otherwise
	entryOwn bool      // entry's token was made by this package
	unsure   bool      // entry may be wrong (a lost reply, a subscription that broke): the next attempt ensures
	anchor   time.Time // send time of the latest attempt that saw another holder since entry was queued: a grant to entry came after it
	granted  int64     // highest fence this *Lock acquired or took a grant of: a grant heard at or below it is stale, never taken nor passed on

	// Attempts and releases in flight that put an entry in line, by entry:
	// the grant to it can be heard before their reply.
	pushes map[string]*push

	stopSub  context.CancelFunc // ends the grant subscription; nil when none runs
	moving   bool               // the subscription will move to the slot's current owner (resubscribe)
	subGen   int                // generation of the running subscription
	subbed   bool               // the server confirmed subscription subGen and it has not ended since
	linger   *time.Timer        // stops the subscription once no waiter came back
	passing  sync.WaitGroup     // grants nobody here wants, being passed on
	lingered bool               // the last waiter left; linger is armed
}

// push is an attempt or a release in flight that puts an entry in line.
type push struct {
	at    time.Time // when the first of them was about to be sent: a grant to the entry comes after
	own   bool      // the entry's token is unique
	n     int       // how many are in flight
	taken bool      // the grant to the entry was heard: their replies must not put it back in the books
}

// waiter is one blocked Acquire. Its fields after poke are guarded by
// waitQueue.mu.
type waiter struct {
	token      string
	own        bool          // token was made by this package
	poke       chan struct{} // buffered 1: look at the queue again
	attempt    bool          // the next look must attempt
	attempting bool          // an attempt is in flight: no local grant meanwhile
	granting   bool          // a release by this Lock's holder is granting the key to this waiter
	held       *Held         // the grant, once made
	gone       bool          // left the queue; a grant in flight is nobody's
}

// How an attempt takes part in the server's queue (acquireScript's ARGV[5]).
const (
	modeNone   = ""       // does not wait there
	modePush   = "push"   // joins the line if the key is held
	modeEnsure = "ensure" // is in line, or may be
)

// quietFallback multiplies the retry interval while grants are heard: the
// fallback then only covers what is never announced (an operator's DEL of a
// key without TTL, an eviction), lost messages, and a grant whose grantee
// froze before claiming it.
const quietFallback = 10

// wait enqueues a waiter and returns when it holds the lock or ctx ends.
func (q *waitQueue) wait(ctx context.Context, o acquireOptions) (*Held, error) {
	l := q.lock
	// Fast path: nobody of ours is queued, so one attempt may do; when grants
	// can be heard already, it also takes this *Lock's place in line.
	q.mu.Lock()
	queued := len(q.waiters) > 0
	var args attemptArgs
	if !queued {
		args = q.argsLocked(o.token, o.own)
		if args.mode == modePush {
			q.pushing(args.entry, args.entryOwn)
		}
	}
	q.mu.Unlock()
	var expiry time.Time
	if !queued {
		res, err := l.attempt(ctx, args)
		if err != nil || res.held != nil && !res.missed {
			q.acquired(res.held, args)
			return res.held, err
		}
		if res.missed { // cannot be: no entry without a waiter
			res.held = nil
		}
		q.attempted(res, args)
		expiry = res.expiry()
	}

	if o.waiting != nil {
		o.waiting()
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
		head, attempt, args, expiry, held := q.look(w)
		if held != nil {
			if h, err, again := q.take(ctx, held); !again {
				return h, err
			}
			// The grant expired before it could be claimed, and passed on:
			// wait again, at the back of the line.
			q.rejoin(w)
			continue
		}
		if attempt {
			res, err := l.attempt(ctx, args)
			if res.held != nil && res.missed {
				// A grant to this *Lock that it had not heard of, unless
				// it was heard meanwhile (w.held is then set).
				q.missedGrant(w, res.held)
				continue
			}
			if err != nil || res.held != nil {
				h, withdraw := q.leave(w, res.held, err != nil, args)
				if withdraw {
					l.withdraw(ctx, args.entry)
				}
				if h != nil && res.held == nil {
					// Granted while the failed attempt was in flight.
					if h, err, again := q.take(context.WithoutCancel(ctx), h); !again {
						return h, err
					}
				}
				return res.held, err
			}
			q.attempted(res, args)
			q.doneAttempting(w)
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
			h, entry := q.giveUp(w)
			if h != nil {
				// Granted as ctx ended: the lock is held, which is what
				// the caller asked for (as with x/sync/semaphore).
				if h, err, again := q.take(context.WithoutCancel(ctx), h); !again {
					return h, err
				}
			}
			l.withdraw(ctx, entry)
			return nil, l.error("acquire", ErrNotAcquired, context.Cause(ctx))
		}
	}
}

// take returns an acquisition to its waiter. A grant from another process
// whose claim window is less than half gone is returned at once, its claim
// scheduled for the half-way mark; one whose window is further gone (the
// process had waited long without news from the server) is claimed first.
// again is set when that claim found the grant expired and passed on: the
// waiter must wait again. A claim that cannot reach the server releases the
// grant and returns the error.
func (q *waitQueue) take(ctx context.Context, h *Held) (_ *Held, _ error, again bool) {
	if h.ready() {
		return h, nil, false
	}
	err := h.claim(ctx)
	switch {
	case err == nil:
		return h, nil, false
	case errors.Is(err, ErrNotOwned):
		if q.lock.sharded {
			q.resubscribe()
		}
		return nil, nil, true
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	_ = h.release(rctx)
	cancel()
	return nil, err, false
}

// resubscribe moves the grant subscription, after slotMapRefresh, to the
// node the client then routes the grant channel's slot to. On a cluster, a
// grant that was not the key's when claimed may have been heard on a node
// demoted by a failover, where the subscription stays and where the new
// primary's releases do not see it (they skip this *Lock as dead, and the
// grant it hears anyway only wakes it up). The claim was redirected to the
// new primary, and valkey-go refreshes its slot map within slotMapRefresh of
// a redirection; a new SSUBSCRIBE sent before that would go to the demoted
// node again. Once confirmed, the head attempts, as after any
// resubscription. One move is scheduled at a time.
func (q *waitQueue) resubscribe() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.moving || q.stopSub == nil {
		return
	}
	q.moving = true
	gen := q.subGen
	time.AfterFunc(slotMapRefresh, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.moving = false
		if q.stopSub != nil && q.subGen == gen {
			q.stopSub()
			q.startSubscription()
		}
	})
}

// slotMapRefresh bounds how long valkey-go's cluster client takes to refresh
// its slot map after a MOVED redirection: a random delay below one second
// (for clusters of fewer than 100 nodes), then one round trip.
const slotMapRefresh = 2 * time.Second

// rejoin puts w back in the queue after a grant it could not claim, and
// makes the head attempt: the key may be free (a grant the server never
// made, heard on a node demoted by a failover) or be another's, whose TTL
// the queue does not know yet.
func (q *waitQueue) rejoin(w *waiter) {
	q.mu.Lock()
	w.held, w.gone, w.attempt = nil, false, true
	q.mu.Unlock()
	q.join(w, time.Time{})
	q.mu.Lock()
	q.wakeHeadLocked()
	q.mu.Unlock()
}

// argsLocked says how the next attempt by a waiter with token takes part in
// the server's queue; q.mu must be held. Grants are only asked for while
// they can be heard (a confirmed subscription) and never with PlainKey, where
// valkey-py waiters poll and could be starved.
func (q *waitQueue) argsLocked(token string, own bool) attemptArgs {
	a := attemptArgs{token: token, own: own}
	if q.lock.cfg.PlainKey || !q.subbed {
		return a
	}
	if q.entry != "" && (q.entryOwn && own || q.entryToken() == token) {
		a.mode, a.entry, a.entryOwn = modeEnsure, q.entry, q.entryOwn
		return a
	}
	// Not in line, or with an entry whose token this waiter cannot take (a
	// caller's token of a waiter that left): line up with its own. The old
	// entry's grant, if it comes, is passed on.
	a.mode, a.entry, a.entryOwn = modePush, q.lock.id+" "+token, own
	return a
}

// entryToken returns the token of the *Lock's entry; q.mu must be held.
func (q *waitQueue) entryToken() string {
	return q.entry[len(q.lock.id)+1:]
}

// pushing notes an attempt or a release about to be sent that may put entry
// in line; q.mu must be held.
func (q *waitQueue) pushing(entry string, own bool) {
	if q.pushes == nil {
		q.pushes = make(map[string]*push)
	}
	if p := q.pushes[entry]; p != nil {
		p.n++
		return
	}
	q.pushes[entry] = &push{at: time.Now(), own: own, n: 1}
}

// pushed settles a push of entry whose reply came, or that failed; it
// reports whether a grant to the entry was heard meanwhile. q.mu must be
// held.
func (q *waitQueue) pushed(entry string) (taken bool) {
	p := q.pushes[entry]
	if p == nil {
		return false
	}
	if p.n--; p.n <= 0 {
		delete(q.pushes, entry)
	}
	return p.taken
}

// attempted records a failed attempt: the entry it put in line, the moment
// from which a grant may come, and the holder's expiry.
func (q *waitQueue) attempted(res attemptResult, a attemptArgs) {
	q.mu.Lock()
	defer q.mu.Unlock()
	taken := a.mode == modePush && q.pushed(a.entry)
	switch a.mode {
	case modePush:
		if taken {
			break // granted already, before this reply came
		}
		q.entry, q.entryOwn, q.unsure, q.anchor = a.entry, a.entryOwn, false, res.sent
	case modeEnsure:
		q.unsure = false
		if q.entryOwn {
			// The key held someone else's token, not ours, when this
			// attempt ran (it would have said so): a grant to us came
			// after. With a caller's token the attempt cannot tell (the
			// token may be the grant's), so the anchor stays.
			q.anchor = res.sent
		}
	}
	q.expiry = res.expiry()
}

// doneAttempting clears w's in-flight mark after a failed attempt.
func (q *waitQueue) doneAttempting(w *waiter) {
	q.mu.Lock()
	w.attempting = false
	q.mu.Unlock()
}

// join appends w, starting the subscription for the first waiter (or keeping
// the lingering one). A first waiter attempts once the subscription is
// confirmed (grants before that went unheard), or at once if it is confirmed
// already and the *Lock is not in line: its fast path could not join the
// line, the subscription being confirmed only since.
func (q *waitQueue) join(w *waiter, expiry time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waiters = append(q.waiters, w)
	if len(q.waiters) == 1 {
		q.expiry = expiry
		if q.lingered {
			q.linger.Stop()
			q.lingered = false
		}
		if q.stopSub == nil {
			q.startSubscription()
		} else if q.subbed && q.entry == "" && len(q.pushes) == 0 && !q.lock.cfg.PlainKey {
			w.attempt = true
		}
	}
}

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
// Either way the *Lock may have missed a grant, so its entry is unsure; a
// confirmation also wakes the head, to take its place in line or make sure
// of it.
func (q *waitQueue) subscribed(gen int, ok bool, err error) {
	q.mu.Lock()
	if gen == q.subGen {
		q.subbed = ok
		if q.entry != "" {
			q.unsure = true
		}
		if ok {
			q.wakeHeadLocked()
		}
	}
	q.mu.Unlock()
	q.lock.warnOnce(&q.lock.subRefused, ok, errors.Is(err, ErrMisconfigured),
		"lock: the server refuses the subscription; waiters attempt every retry interval instead of waiting for their turn",
		err)
}

// look reports whether w is the head, whether it must attempt now (clearing
// the flag and marking the attempt in flight) and how, the observed expiry,
// and the grant w received, if any. A waiter being granted the key does not
// attempt.
func (q *waitQueue) look(w *waiter) (head, attempt bool, args attemptArgs, expiry time.Time, held *Held) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.held != nil {
		return false, false, args, q.expiry, w.held
	}
	head = len(q.waiters) > 0 && q.waiters[0] == w
	if head && w.attempt && !w.granting {
		attempt = true
		w.attempt = false
		w.attempting = true
		args = q.argsLocked(w.token, w.own)
		if args.mode == modePush {
			q.pushing(args.entry, args.entryOwn)
		}
	}
	return head, attempt, args, q.expiry, nil
}

// mark makes w's next look an attempt.
func (q *waitQueue) mark(w *waiter) {
	q.mu.Lock()
	w.attempt = true
	q.mu.Unlock()
}

// acquired records a successful attempt: the *Lock's entry, if any, was
// taken by it, and a later head should expect the key to live for the TTL.
func (q *waitQueue) acquired(h *Held, a attemptArgs) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if a.mode == modePush {
		q.pushed(a.entry)
	}
	if h == nil {
		return
	}
	q.entry, q.unsure = "", false
	q.expiry = h.expiry()
}

// leave removes w, whose attempt took the lock (h) or failed (gaveUp). The
// new head is poked: to attempt at once if w gave up (it may have swallowed
// a wake-up), or just to re-arm its timers if w took the lock. A waiter that
// was granted the key while its failed attempt was in flight gets the grant
// back (granted), to return. withdraw reports that the *Lock's entry must be
// taken out of line: the last waiter gave up while it was queued.
func (q *waitQueue) leave(w *waiter, h *Held, gaveUp bool, a attemptArgs) (granted *Held, withdraw bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w.attempting = false
	if a.mode == modePush {
		q.pushed(a.entry)
	}
	if w.held != nil {
		return w.held, false
	}
	w.gone = true
	if h != nil {
		q.entry, q.unsure = "", false
		q.expiry = h.expiry()
	}
	q.removeLocked(w, gaveUp && !w.granting, w.attempt)
	return nil, q.withdrawLocked() != ""
}

// giveUp removes w, whose ctx ended. A waiter that was granted the key as it
// gave up gets the grant back, to return. A grant in flight to it is left to
// the releaser (released). withdraw is the entry to take out of line, if
// the last waiter gave up while it was queued.
func (q *waitQueue) giveUp(w *waiter) (granted *Held, withdraw string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.held != nil {
		return w.held, ""
	}
	w.gone = true
	w.attempting = false
	q.removeLocked(w, !w.granting, w.attempt)
	return nil, q.withdrawLocked()
}

// withdrawLocked returns the *Lock's entry if it must be taken out of the
// server's queue because no waiter is left for it, and forgets it; q.mu must
// be held. A grant to it that races the withdrawal is passed on when heard.
func (q *waitQueue) withdrawLocked() string {
	if len(q.waiters) > 0 || q.entry == "" {
		return ""
	}
	entry := q.entry
	q.entry, q.unsure = "", false
	return entry
}

// removeLocked takes w out of the queue; q.mu must be held. When w was the
// head, the new head is poked, and made to attempt if attempt or pending is
// set. When the last waiter leaves, the subscription lingers for
// lingerFor and then stops, unless a waiter came back.
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
	if len(q.waiters) == 0 && q.stopSub != nil && !q.lingered {
		q.lingered = true
		if q.linger == nil {
			q.linger = time.AfterFunc(q.lingerFor(), q.endLinger)
		} else {
			q.linger.Reset(q.lingerFor())
		}
	}
}

// lingerFor is how long the grant subscription outlives the last waiter:
// RetryInterval, between 10ms and 100ms. A process that acquires again
// within it keeps its subscription, and so takes its place in line in its
// first attempt; a grant that raced a withdrawal is heard and passed on.
func (q *waitQueue) lingerFor() time.Duration {
	return min(max(q.lock.cfg.RetryInterval, 10*time.Millisecond), 100*time.Millisecond)
}

// endLinger stops the subscription if no waiter came back while it lingered.
func (q *waitQueue) endLinger() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.lingered || len(q.waiters) > 0 {
		return
	}
	q.lingered = false
	if q.stopSub != nil {
		q.stopSub()
		q.stopSub, q.subbed = nil, false
	}
}

// grantee returns the waiter a release by this Lock's holder should hand the
// key to in the process, marked as being granted: the head, when it is idle
// (no attempt in flight, no other grant) and its token is of our own making
// (a local grant whose reply is lost is taken back by the waiter's token,
// which must not be anyone else's). It also returns the entry with which the
// *Lock goes back in line if another process is handed the key first: its
// head's, unless it is in line already or has no waiter. Nil and "" with
// PlainKey: valkey-py waiters poll and never join the line, so handovers
// could starve them.
func (q *waitQueue) grantee() (next *waiter, entry string, entryOwn bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.lock.cfg.PlainKey || len(q.waiters) == 0 {
		return nil, "", false
	}
	w := q.waiters[0]
	if q.entry == "" || q.unsure {
		entry, entryOwn = q.lock.id+" "+w.token, w.own
		// The release may put it in line, and the grant that follows can
		// come before the release's reply.
		q.pushing(entry, entryOwn)
	}
	if w.attempting || w.granting || !w.own {
		return nil, entry, entryOwn
	}
	w.granting = true
	return w, entry, entryOwn
}

// released settles a release by this Lock's holder: the release script's
// reply n (see releaseScript) or err. A local grant goes to next, or, when
// next has gone meanwhile, back to the caller, who must release it. A
// handover to another process put this *Lock back in line with entry when it
// had waiters. A key that is free makes the head attempt at once.
func (q *waitQueue) released(next *waiter, entry string, entryOwn bool, n int64, err error, sent time.Time, acked bool) (orphan *Held) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if next != nil {
		next.granting = false
	}
	taken := entry != "" && q.pushed(entry)
	switch {
	case err != nil:
		if entry != "" {
			q.unsure = true // the script may have put us back in line
		}
		q.wakeHeadLocked()
	case n > 0 && next != nil:
		// Our entry, if it was first in line, went with it.
		q.entry, q.unsure = "", false
		q.granted = max(q.granted, n)
		h := newHeld(q.lock, next.token, true, n, sent)
		if !acked {
			// The replicas have not acknowledged the handover: the waiter
			// claims it, acknowledged, before it returns.
			h.unclaimed = true
		}
		if next.gone {
			return h
		}
		next.held = h
		next.gone = true
		q.expiry = h.expiry()
		pokeWaiter(next)
		q.removeLocked(next, false, false)
	case n == -2:
		if entry != "" && !taken {
			q.entry, q.entryOwn, q.unsure, q.anchor = entry, entryOwn, false, sent
		}
		// Another process holds now, for its claim window at least.
		q.expiry = sent.Add(q.lock.claim)
	default: // not owned, or released: the key may be free
		q.wakeHeadLocked()
	}
	return nil
}

// missedGrant makes a grant that w's attempt found (the key held this
// *Lock's entry token) w's acquisition, unless it was heard already as a
// message: w.held is then set, by grantHeard.
func (q *waitQueue) missedGrant(w *waiter, found *Held) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w.attempting = false
	if found.fence <= q.granted {
		return
	}
	q.granted = found.fence
	h := newGrant(q.lock, found.token, true, found.fence, q.anchor)
	q.entry, q.unsure = "", false
	w.held, w.gone = h, true
	q.removeLocked(w, false, false)
}

// grantHeard hands a grant heard on the grant channel to the first waiter
// that can take its token: any waiter whose token is of our making, if the
// token is (they are interchangeable), or the one waiter whose token it is.
// A grant nobody here can take is passed on at once. It runs on valkey-go's
// receive goroutine, so it must not block.
func (q *waitQueue) grantHeard(fence int64, token string) {
	q.mu.Lock()
	if fence <= q.granted {
		q.mu.Unlock()
		return
	}
	q.granted = fence
	// Only a grant to the current entry, or to the one an attempt in flight
	// is putting in line, has a known anchor (a send time that precedes the
	// grant); any other was to an entry withdrawn or replaced.
	ours := q.entry != "" && q.entryToken() == token
	own, anchor := ours && q.entryOwn, q.anchor
	if p := q.pushes[q.lock.id+" "+token]; !ours && p != nil {
		ours, own, anchor = true, p.own, p.at
		p.taken = true
	}
	h := newGrant(q.lock, token, own, fence, anchor)
	var w *waiter
	if ours {
		q.entry, q.unsure = "", false
		// A waiter being handed the key by this *Lock's own holder can take
		// it: that handover did not happen, since the key is ours now.
		for _, c := range q.waiters {
			if own && c.own || c.token == token {
				w = c
				break
			}
		}
	}
	if w == nil {
		q.passing.Add(1)
		q.mu.Unlock()
		go q.passOn(h)
		return
	}
	w.held = h
	w.gone = true
	q.expiry = h.validUntil
	pokeWaiter(w)
	q.removeLocked(w, false, false)
	q.mu.Unlock()
}

// acquiredFence records the fence of an acquisition by this *Lock's own
// attempt. A grant message with a fence at or below it is older than that
// acquisition (a message relayed late, such as by a node demoted in a
// failover): passing it on would release by the grant's token, which, with
// a caller's token used for every acquisition (an identity), is this live
// acquisition's.
func (q *waitQueue) acquiredFence(fence int64) {
	q.mu.Lock()
	q.granted = max(q.granted, fence)
	q.mu.Unlock()
}

// passOn releases a grant that nobody here wants: the release hands it to
// the next in line.
func (q *waitQueue) passOn(h *Held) {
	defer q.passing.Done()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_ = h.release(ctx)
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

func pokeWaiter(w *waiter) {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// startSubscription follows the *Lock's grant channel until stopped; q.mu
// must be held. Each time the server confirms the subscription the head is
// woken, because grants before that moment went unheard. The goroutine ends
// once stopped and once every grant it handed on has been passed on.
func (q *waitQueue) startSubscription() {
	ctx, cancel := context.WithCancel(context.Background())
	q.subGen++
	gen := q.subGen
	q.stopSub, q.subbed = cancel, false
	go func() {
		defer q.passing.Wait()
		q.lock.follow(ctx, q.lock.keys.grant+q.lock.id, func(ev Event, msg string) {
			switch ev.Kind {
			case Subscribed:
				q.subscribed(gen, true, nil)
			case Unsubscribed:
				q.subscribed(gen, false, ev.Err)
			default:
				if fence, token, ok := parseGrant(msg); ok {
					q.grantHeard(fence, token)
				}
			}
		})
	}()
}

// grantPrefix begins the messages on a grant channel: "granted:<fence>:<token>".
const grantPrefix = "granted:"

// parseGrant decodes a message on a grant channel.
func parseGrant(msg string) (fence int64, token string, ok bool) {
	rest, ok := strings.CutPrefix(msg, grantPrefix)
	if !ok {
		return 0, "", false
	}
	f, token, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, "", false
	}
	fence, err := strconv.ParseInt(f, 10, 64)
	if err != nil || fence <= 0 {
		return 0, "", false
	}
	return fence, token, true
}

// withdraw takes entry out of the server's queue: its *Lock's last waiter
// gave up. It waits for the server (bounded by cleanupTimeout, whatever
// ctx), so that the grant that may have raced it has been heard, and passed
// on, by the lingering subscription when it returns.
func (l *Lock) withdraw(ctx context.Context, entry string) {
	if entry == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	l.client.Do(ctx, l.client.B().Lrem().Key(l.keys.queue).Count(1).Element(entry).Build())
}
