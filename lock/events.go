package lock

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"
)

// EventKind says what Follow observed on a lock's channel.
type EventKind int

const (
	// Subscribed: the subscription is (re)established. Events before it went
	// unheard, so a follower should look at the lock again.
	Subscribed EventKind = iota + 1
	// Unsubscribed: the subscription's connection broke, or the server
	// refused the SUBSCRIBE (Event.Err wraps ErrMisconfigured then: a missing
	// +subscribe or channel permission). Events go unheard until the next
	// Subscribed.
	Unsubscribed
	// Acquired: an acquisition succeeded; Event.Fence is its fencing token.
	// Published only by Locks with Config.Announce.
	Acquired
	// Released: a holder released the lock; Event.Fence is its fencing token.
	Released
)

// Event is one thing Follow observed on a lock's channel.
type Event struct {
	Kind  EventKind // what happened
	Fence int64     // for Acquired and Released; 0 otherwise
	// Holder and TTL describe the acquisition of an Acquired event: the
	// token stored at the key, and the TTL the key was set with (negative:
	// no expiry). For a key handed to a waiter in another process the TTL is
	// the claim window, which the waiter's claim then extends without
	// announcing it. Holder is "" when the publisher did not say (a baton
	// from before the holder was announced): read the key (Inspect).
	Holder string
	TTL    time.Duration
	// Err is, for Unsubscribed, why the subscription ended or could not
	// start: an *Error wrapping ErrUnavailable or ErrMisconfigured. Nil
	// otherwise, and when valkey-go gave no reason.
	Err error
}

// Prefixes of the messages the scripts publish on a lock's channel; the
// fencing token follows them.
const (
	acquiredPrefix = "acquired:"
	releasedPrefix = "released:"
)

// Pauses before resubscribing: resubscribePause after a subscription that
// was confirmed and then broke, doubling after each attempt that did not get
// as far as a confirmation (a server that is down, or refuses), up to
// maxResubscribePause. So a refused SUBSCRIBE costs a few calls a minute, not
// twenty a second.
const (
	resubscribePause    = 50 * time.Millisecond
	maxResubscribePause = 10 * time.Second
)

// Follow subscribes to the lock's channel and calls fn with every event until
// ctx ends, resubscribing when the connection breaks or the server refuses:
// after a short pause following a confirmed subscription, after a pause that
// doubles up to ten seconds following an attempt that was never confirmed.
// Expiry is not published: a follower learns of it from the TTL that a failed
// attempt or Inspect reports. With RESP3 the subscription rides the client's
// existing connection. fn must not block: Subscribed is reported from
// valkey-go's connection goroutine, the others from Follow's. Follow returns
// when ctx ends.
//
// What is published depends on the acquirers' Config, not the follower's:
// Locks with Announce publish every acquisition and release; others publish
// nothing (their waiters hear of releases on their own grant channels).
// Follow a lock whose acquirers announce (elections do) to see every change.
//
// Blocked Acquire calls and election watchers are built on it.
func (l *Lock) Follow(ctx context.Context, fn func(Event)) {
	l.follow(ctx, l.keys.channel, func(ev Event, msg string) {
		if ev.Kind == 0 {
			var ok bool
			if ev, ok = parseEvent(msg); !ok {
				return
			}
		}
		fn(ev)
	})
}

// follow subscribes to channel until ctx ends, as Follow does, and calls fn
// with Subscribed and Unsubscribed events and, for each message, with the
// zero Event and the message.
func (l *Lock) follow(ctx context.Context, channel string, fn func(Event, string)) {
	var confirmed atomic.Bool
	kind := "subscribe"
	if l.sharded {
		kind = "ssubscribe"
	}
	hooked := valkey.WithOnSubscriptionHook(ctx, func(s valkey.PubSubSubscription) {
		if s.Kind == kind && s.Channel == channel {
			confirmed.Store(true)
			fn(Event{Kind: Subscribed}, "")
		}
	})
	timer := time.NewTimer(resubscribePause)
	timer.Stop()
	defer timer.Stop()
	pause := resubscribePause
	for {
		confirmed.Store(false)
		cmd := l.client.B().Subscribe().Channel(channel).Build()
		if l.sharded {
			cmd = l.client.B().Ssubscribe().Channel(channel).Build()
		}
		err := l.client.Receive(hooked, cmd, func(m valkey.PubSubMessage) {
			fn(Event{}, m.Message)
		})
		// Receive ends with ctx, or when the connection broke or the
		// server refused.
		if ctx.Err() != nil {
			return
		}
		ev := Event{Kind: Unsubscribed}
		if err != nil {
			ev.Err = l.fail(ctx, "subscribe", err)
		}
		fn(ev, "")
		if confirmed.Load() {
			pause = resubscribePause
		}
		timer.Reset(pause)
		pause = min(2*pause, maxResubscribePause)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
	}
}

// parseEvent decodes a message the scripts published.
func parseEvent(msg string) (Event, bool) {
	if rest, ok := strings.CutPrefix(msg, releasedPrefix); ok {
		fence, err := strconv.ParseInt(rest, 10, 64)
		return Event{Kind: Released, Fence: fence}, err == nil
	}
	rest, ok := strings.CutPrefix(msg, acquiredPrefix)
	if !ok {
		return Event{}, false
	}
	// "<fence>", or "<fence>:<ttl ms>:<token>" (the token may hold ':').
	f, rest, full := strings.Cut(rest, ":")
	fence, err := strconv.ParseInt(f, 10, 64)
	if err != nil {
		return Event{}, false
	}
	ev := Event{Kind: Acquired, Fence: fence}
	if !full {
		return ev, true
	}
	ms, token, ok := strings.Cut(rest, ":")
	ttl, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || token == "" || ttl < 0 {
		return Event{}, false
	}
	ev.Holder, ev.TTL = token, time.Duration(ttl)*time.Millisecond
	if ttl == 0 {
		ev.TTL = -1
	}
	return ev, true
}
