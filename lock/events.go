package lock

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
)

// EventKind says what Follow observed on a lock's channel.
type EventKind int

const (
	// Subscribed: the subscription is (re)established. Events before it went
	// unheard, so a follower should look at the lock again.
	Subscribed EventKind = iota + 1
	// Unsubscribed: the subscription's connection broke. Events go unheard
	// until the next Subscribed.
	Unsubscribed
	// Acquired: an acquisition succeeded; Event.Fence is its fencing token.
	// Published only by Locks with Config.Announce.
	Acquired
	// Released: a holder released the lock; Event.Fence is its fencing token.
	Released
)

// Event is one thing Follow observed on a lock's channel.
type Event struct {
	Kind  EventKind
	Fence int64 // for Acquired and Released; 0 otherwise
}

// Prefixes of the messages the scripts publish on a lock's channel; the
// fencing token follows them.
const (
	acquiredPrefix = "acquired:"
	releasedPrefix = "released:"
)

// resubscribePause is the pause before resubscribing after a broken
// connection, so a down server is not hammered.
const resubscribePause = 50 * time.Millisecond

// Follow subscribes to the lock's channel and calls fn with every event until
// ctx ends, resubscribing after a short pause when the connection breaks.
// Expiry is not published: a follower learns of it from the TTL that a failed
// attempt or Inspect reports. With RESP3 the subscription rides the client's
// existing connection. fn must not block: Subscribed is reported from
// valkey-go's connection goroutine, the others from Follow's. Follow returns
// when ctx ends.
//
// What is published depends on the acquirers' Config, not the follower's:
// Locks with Announce publish every acquisition and release; others publish a
// release only when a blocked Acquire has registered, and no acquisition.
// Follow a lock whose acquirers announce (elections do) to see every change.
//
// Blocked Acquire calls and election watchers are built on it.
func (l *Lock) Follow(ctx context.Context, fn func(Event)) {
	hooked := valkey.WithOnSubscriptionHook(ctx, func(s valkey.PubSubSubscription) {
		if s.Kind == "subscribe" && s.Channel == l.keys.channel {
			fn(Event{Kind: Subscribed})
		}
	})
	pause := time.NewTimer(resubscribePause)
	pause.Stop()
	defer pause.Stop()
	for {
		cmd := l.client.B().Subscribe().Channel(l.keys.channel).Build()
		_ = l.client.Receive(hooked, cmd, func(m valkey.PubSubMessage) {
			if ev, ok := parseEvent(m.Message); ok {
				fn(ev)
			}
		})
		// Receive ends with ctx, or when the connection broke.
		if ctx.Err() != nil {
			return
		}
		fn(Event{Kind: Unsubscribed})
		pause.Reset(resubscribePause)
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
	}
}

// parseEvent decodes a message the scripts published.
func parseEvent(msg string) (Event, bool) {
	kind := Acquired
	rest, ok := strings.CutPrefix(msg, acquiredPrefix)
	if !ok {
		kind = Released
		if rest, ok = strings.CutPrefix(msg, releasedPrefix); !ok {
			return Event{}, false
		}
	}
	fence, err := strconv.ParseInt(rest, 10, 64)
	if err != nil {
		return Event{}, false
	}
	return Event{Kind: kind, Fence: fence}, true
}
