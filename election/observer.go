package election

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/lock"
)

// observer follows the leader of one election for Watch and for a running
// Elector. run reads the server; learned may be called from any goroutine.
//
// It reads the leader only when the channel does not say who leads: an
// announced acquisition names its holder and TTL (lock.Event), and a
// handover announces the new holder before the old one's release, so a
// handover costs a follower no read when it happens. A handover to another
// process announces the claim window as the new holder's TTL and its claim
// is not announced, so the follower reads once when that window ends. A
// release of the leader it knows, a subscription (re)established, the
// leader's TTL running out and the fallback interval make it read too.
type observer struct {
	lock     *lock.Lock
	fallback time.Duration // re-read pace
	log      *slog.Logger
	report   func(callbacks.Leader)
	pokes    chan struct{} // buffered 1: re-read soon
	rearm    chan struct{} // buffered 1: a leader was heard; time its expiry from heardUntil

	// reportMu serialises reports, so that a leader learned outside run (an
	// elector's own election, an announcement) is never followed by the
	// result of a read that was sent before it.
	reportMu   sync.Mutex
	seq        uint64           // guarded by reportMu: bumped by learned and heard
	last       callbacks.Leader // guarded by reportMu: last reported
	have       bool             // guarded by reportMu: whether last is set
	highest    int64            // guarded by reportMu: highest fence reported
	heardUntil time.Time        // guarded by reportMu: when the heard leader's TTL runs out; zero for none

	subRefused atomic.Bool // a refused subscription was logged
}

func newObserver(l *lock.Lock, fallback time.Duration, log *slog.Logger, report func(callbacks.Leader)) *observer {
	return &observer{lock: l, fallback: fallback, log: log, report: report,
		pokes: make(chan struct{}, 1), rearm: make(chan struct{}, 1)}
}

// heard reports the holder an announcement named, without a read: its
// token, fence and the TTL its key was set with (negative: none). A read in
// flight is dropped, as for learned.
func (o *observer) heard(ev lock.Event) {
	l := callbacks.Leader{Identity: identityOf(ev.Holder), Fence: ev.Fence, TTL: ev.TTL}
	o.reportMu.Lock()
	o.seq++
	o.consider(l)
	o.heardUntil = time.Time{}
	if ev.TTL > 0 {
		o.heardUntil = time.Now().Add(ev.TTL)
	}
	o.reportMu.Unlock()
	select {
	case o.rearm <- struct{}{}:
	default:
	}
}

// needsRead says whether a release of the term with fence calls for a read:
// not when a later term was already heard of (a handover announces the new
// holder before the release).
func (o *observer) needsRead(fence int64) bool {
	o.reportMu.Lock()
	defer o.reportMu.Unlock()
	return !o.have || o.last.None() || o.last.Fence <= fence
}

// poke makes run re-read the leader. It never blocks.
func (o *observer) poke() {
	select {
	case o.pokes <- struct{}{}:
	default:
	}
}

// learned reports a leader known without reading the server, such as the
// elector's own election, and makes run discard the read in flight.
func (o *observer) learned(l callbacks.Leader) {
	o.reportMu.Lock()
	o.seq++
	o.consider(l)
	o.reportMu.Unlock()
	o.poke()
}

// consider reports l if it differs from the last leader reported; the first
// leader is always reported. A leader whose fence is below the highest one
// reported is marked stale. o.reportMu must be held.
func (o *observer) consider(l callbacks.Leader) {
	if o.have && o.last.Same(l) {
		return
	}
	if !l.None() {
		if l.Fence < o.highest {
			l.Stale = true
			o.log.Warn("election: the server names a leader older than one already seen: it went back in time (a failover that lost writes, or a restart without data); that term may have ended",
				"name", o.lock.Name(), "leader", l.Identity, "fence", l.Fence, "highest_fence_seen", o.highest)
		} else {
			o.highest = l.Fence
		}
	}
	o.last, o.have = l, true
	o.report(l)
}

// run reports the leader until ctx ends, then waits for its subscription
// goroutine. It returns nil then, or an error wrapping lock.ErrMisconfigured
// once maxRefusals reads in a row were refused for good.
func (o *observer) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, stop := context.WithCancel(ctx)
	defer stop() // before wg.Wait: the subscription must end too
	wg.Go(func() { o.subscribe(ctx) })

	bo := newBackoff(o.fallback)
	expiry := time.NewTimer(time.Hour)
	expiry.Stop()
	defer expiry.Stop()
	next := time.NewTimer(o.fallback)
	defer next.Stop()
	failures, refusals := 0, 0

	read := true // false after a heard leader re-armed the expiry: no read is due
	for {
		if read {
			o.reportMu.Lock()
			seq := o.seq
			o.reportMu.Unlock()
			// A read is bounded so that a hung server delays it by at most one
			// fallback interval; the next one goes out then.
			rctx, cancel := context.WithTimeout(ctx, o.fallback)
			st, err := o.lock.Inspect(rctx)
			cancel()
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				wait := bo.NextBackOff()
				failures++
				if errors.Is(err, lock.ErrMisconfigured) {
					if refusals++; refusals >= maxRefusals {
						o.log.Error("election: the server refuses to show the leader; giving up", "name", o.lock.Name(), "error", err)
						return err
					}
				} else {
					refusals = 0
				}
				level := slog.LevelDebug
				if failures == 1 {
					level = slog.LevelWarn
				}
				o.log.Log(ctx, level, "election: read leader failed; retrying", "name", o.lock.Name(), "error", err, "retry_in", wait)
				next.Reset(wait)
			default:
				if failures > 0 {
					o.log.Info("election: read leader again", "name", o.lock.Name(), "failed_reads", failures)
				}
				failures, refusals = 0, 0
				bo.Reset()
				l := leaderFrom(st)
				o.reportMu.Lock()
				// A leader learned or heard while the read was out is newer
				// than what it found: the read is dropped (a learned leader
				// asks for a read of its own; a heard one re-arms the expiry).
				fresh := o.seq == seq
				if fresh {
					o.consider(l)
				}
				o.reportMu.Unlock()
				if fresh {
					if l.None() || st.TTL <= 0 {
						expiry.Stop()
					} else {
						// A millisecond late, so the key has expired when we look.
						expiry.Reset(st.TTL + time.Millisecond)
					}
				}
				next.Reset(o.fallback)
			}
		}
		read = true
		select {
		case <-ctx.Done():
			return nil
		case <-o.pokes:
		case <-expiry.C:
		case <-next.C:
		case <-o.rearm:
			o.reportMu.Lock()
			until := o.heardUntil
			o.reportMu.Unlock()
			if until.IsZero() {
				expiry.Stop()
			} else {
				expiry.Reset(time.Until(until) + time.Millisecond)
			}
			read = false
		}
	}
}

// subscribe follows the election's channel: an announced acquisition that
// names its holder is reported as heard; a release of the leader last
// reported, an announcement that names no holder (an older baton's), and
// each (re)established subscription (changes made while it was down went
// unheard) make run read the leader. It returns when ctx ends.
func (o *observer) subscribe(ctx context.Context) {
	o.lock.Follow(ctx, func(ev lock.Event) {
		if ev.Kind != lock.Unsubscribed {
			o.subRefused.Store(false)
		}
		switch {
		case ev.Kind == lock.Acquired && ev.Holder != "":
			o.heard(ev)
		case ev.Kind == lock.Released && !o.needsRead(ev.Fence):
		case ev.Kind != lock.Unsubscribed:
			o.poke()
		case errors.Is(ev.Err, lock.ErrMisconfigured) && o.subRefused.CompareAndSwap(false, true):
			o.log.Warn("election: the server refuses the subscription; following the leader by reads only (at its TTL and every fallback interval)",
				"name", o.lock.Name(), "error", ev.Err)
		}
	})
}
