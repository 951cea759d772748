package lock

import (
	"context"
	"errors"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Channel returns the Pub/Sub channel on which, with Config.Announce, the
// lock's scripts publish "released:<fence>" after every release and "acquired:<fence>:<ttl ms>:<token>" after every
// acquisition (a handover announces the new holder before the release) and
// "released:<fence>" after every release, for watchers that follow the holder
// without polling (Follow parses them into Events). Expiry is not published: a watcher learns of it from the
// TTL that Inspect reports.
func (l *Lock) Channel() string { return l.keys.channel }

// State is what Inspect observed of a lock at one moment.
type State struct {
	// Token is the holder's token, or "" when the lock is free.
	Token string
	// Fence is the holder's fencing token: the last one issued, which is the
	// holder's since nobody else can acquire while it holds. 0 when free.
	Fence int64
	// TTL is the holder's remaining TTL; negative when the key has no expiry,
	// 0 when free.
	TTL time.Duration
}

// Held reports whether someone held the lock.
func (s State) Held() bool { return s.Token != "" }

// Inspect reads the holder's token, fencing token and remaining TTL in one
// round trip and one atomic step (MULTI / GET / PTTL / GET / EXEC), without
// taking part in the lock: the three always describe the same acquisition.
func (l *Lock) Inspect(ctx context.Context) (State, error) {
	b := l.client.B()
	res := l.client.DoMulti(ctx,
		b.Multi().Build(),
		b.Get().Key(l.keys.key).Build(),
		b.Pttl().Key(l.keys.key).Build(),
		b.Get().Key(l.keys.fence).Build(),
		b.Exec().Build(),
	)
	// A refused MULTI, or a command refused inside it, makes EXEC fail too;
	// the MULTI's own error names the missing permission more plainly.
	if err := res[0].Error(); err != nil {
		return State{}, l.fail(ctx, "inspect", err)
	}
	replies, err := res[4].ToArray()
	if err == nil && len(replies) != 3 {
		err = errors.New("unexpected EXEC reply")
	}
	if err != nil {
		return State{}, l.fail(ctx, "inspect", err)
	}
	token, err := replies[0].ToString()
	if valkey.IsValkeyNil(err) {
		return State{}, nil
	}
	if err != nil {
		return State{}, l.fail(ctx, "inspect", err)
	}
	pttl, err := replies[1].AsInt64()
	if err != nil {
		return State{}, l.fail(ctx, "inspect", err)
	}
	fence, err := replies[2].AsInt64()
	if err != nil && !valkey.IsValkeyNil(err) {
		return State{}, l.fail(ctx, "inspect", err)
	}
	return State{Token: token, Fence: fence, TTL: time.Duration(pttl) * time.Millisecond}, nil
}
