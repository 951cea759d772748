package lock

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Defaults used for zero Config fields.
const (
	// DefaultRetryInterval is the fallback pace of a blocked Acquire when no
	// release notification arrives (valkey-py's sleep=0.1).
	DefaultRetryInterval = 100 * time.Millisecond

	// DefaultKeyPrefix is prepended to the lock name to form its key.
	DefaultKeyPrefix = "baton:lock:"

	// NoExpiry as Config.TTL makes a lock whose key never expires: held
	// until released, also by a holder that crashed (valkey-py's
	// timeout=None). Lock.TTL then reports 0.
	NoExpiry time.Duration = -1

	// DefaultReplicaTimeout bounds a wait for the replicas' acknowledgement
	// when Config.Replicas is set.
	DefaultReplicaTimeout = 250 * time.Millisecond

	// minClaimWindow is the shortest claim window: a grantee claims at half
	// of it, and must be heard by then.
	minClaimWindow = 2 * time.Millisecond
)

// Config tunes a Lock. TTL is required (NoExpiry for a key without expiry);
// every other zero field means its documented default.
type Config struct {
	// TTL is how long the key lives after an acquisition (PX): a holder
	// that crashes keeps the lock at most this long. Required: New refuses
	// zero, so that a lock without expiry is a choice, not an omission. Set
	// NoExpiry for a key held until released (valkey-py's timeout=None).
	// Below one millisecond, or negative, is refused; others are rounded up
	// to whole milliseconds, the server's resolution.
	TTL time.Duration

	// BlockingTimeout bounds how long Acquire waits for the lock. Zero means
	// wait until the context ends. A blocking timeout shorter than
	// RetryInterval makes Acquire attempt exactly once. Negative is refused.
	BlockingTimeout time.Duration

	// RetryInterval paces a blocked Acquire's own attempts when nothing else
	// wakes it. Waiters normally wait in line on the server and are handed
	// the key by the holder's release, or attempt at the moment the holder's
	// TTL runs out; this fallback covers the rest. It applies as is until the
	// waiters' subscription to their grants is confirmed, and always with
	// PlainKey (no line: valkey-py waiters poll, and so do baton's then);
	// once grants are heard it stretches to ten times RetryInterval, for what
	// is never announced (an operator's DEL, an eviction, a grant whose
	// grantee froze before claiming it). Default DefaultRetryInterval.
	RetryInterval time.Duration

	// ClaimWindow is how long a key handed over by a release to a waiter in
	// another process lives until that process claims it (resets it to the
	// TTL), which it does before half the window has passed if it still
	// holds the key then. A waiter that froze or was cut off after joining
	// the line therefore keeps the lock for at most this, not a TTL, before
	// it passes on (see the package documentation). Default: four times
	// RetryInterval, at most the TTL. At least 2ms.
	ClaimWindow time.Duration

	// Replicas, when positive, makes every write of the lock (an
	// acquisition, a handover, a renewal, a release) wait until that many
	// replicas have acknowledged it: WAIT (WAITAOF with AOF) follows the
	// script on the same connection, for at most ReplicaTimeout. An
	// acquisition that is not acknowledged in time is given back and
	// reported as ErrNotReplicated; a renewal that is not does not count. A
	// handover from another process is claimed, acknowledged, before Acquire
	// returns. This closes the failovers in which a replica that missed the
	// acquisition is promoted, as long as Replicas is every replica that can
	// be promoted (WAIT is not consensus: see docs/operations.md). Zero, the
	// default, waits for nobody.
	Replicas int

	// ReplicaTimeout bounds each wait for the replicas' acknowledgement.
	// Default DefaultReplicaTimeout.
	ReplicaTimeout time.Duration

	// AOF makes the acknowledgement WAITAOF 1 Replicas: the primary and the
	// replicas must also have written the change to their append-only file.
	// Needs appendonly yes on all of them.
	AOF bool

	// KeyPrefix is prepended to the name to form the key; default
	// DefaultKeyPrefix. Ignored when PlainKey is set.
	KeyPrefix string

	// PlainKey uses the name itself as the key, exactly as valkey-py's Lock
	// does, so a Python Lock(name) and a baton Lock on the same name exclude
	// each other. Values are plain tokens in both modes.
	PlainKey bool

	// Announce publishes every acquisition, with its holder's token, and
	// every release on Channel(), for followers of the lock (Follow;
	// election watchers), who then know the holder without reading the key.
	// Anyone allowed to subscribe to the channel learns the tokens, as
	// anyone allowed to GET the key does. Without it nothing is published there:
	// waiters do not need it (they are handed the key on their own grant
	// channels), and each announcement costs a server call. The election
	// package sets it.
	Announce bool

	// TracerProvider makes the spans of acquire, release, extend and
	// reacquire. Nil means the global provider (otel.GetTracerProvider).
	TracerProvider trace.TracerProvider

	// Logger receives what the lock cannot return as an error, at Warn: a
	// subscription the server refuses (waiters then fall back to attempting
	// every RetryInterval) and a release whose PUBLISH the server refuses
	// (the release is done, but the key cannot be handed to the next waiter
	// in line, which finds it free by its fallback). Each is logged once
	// until it recovers. Nil means slog.Default() at the time New is called.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ReplicaTimeout == 0 {
		c.ReplicaTimeout = DefaultReplicaTimeout
	}
	if c.ClaimWindow == 0 {
		c.ClaimWindow = 4 * c.RetryInterval
		if c.TTL > 0 && c.ClaimWindow > c.TTL {
			c.ClaimWindow = c.TTL
		}
		c.ClaimWindow = max(c.ClaimWindow, minClaimWindow)
	}
	return c
}

func (c Config) validate(name string) error {
	var errs []error
	if name == "" {
		errs = append(errs, errors.New("lock: name must not be empty"))
	}
	switch {
	case c.TTL == 0:
		errs = append(errs, errors.New("lock: ttl must be set: a holder that crashes would keep a lock without expiry forever (use lock.NoExpiry if that is what you want, as valkey-py's timeout=None)"))
	case c.TTL == NoExpiry:
	case c.TTL < 0:
		errs = append(errs, fmt.Errorf("lock: ttl %v is negative", c.TTL))
	case c.TTL < time.Millisecond:
		errs = append(errs, fmt.Errorf("lock: ttl %v is below the server's 1ms resolution", c.TTL))
	}
	if c.BlockingTimeout < 0 {
		errs = append(errs, fmt.Errorf("lock: blocking timeout %v is negative", c.BlockingTimeout))
	}
	if c.RetryInterval < 0 {
		errs = append(errs, fmt.Errorf("lock: retry interval %v is negative", c.RetryInterval))
	}
	if c.Replicas < 0 {
		errs = append(errs, fmt.Errorf("lock: replicas %d is negative", c.Replicas))
	}
	if c.ReplicaTimeout < time.Millisecond {
		errs = append(errs, fmt.Errorf("lock: replica timeout %v is below 1ms", c.ReplicaTimeout))
	}
	if c.ClaimWindow < minClaimWindow {
		errs = append(errs, fmt.Errorf("lock: claim window %v is below %v: a grantee could not claim it in time", c.ClaimWindow, minClaimWindow))
	}
	return errors.Join(errs...)
}

// keyset names everything one lock touches on the server.
type keyset struct {
	key     string // the lock itself: its value is the holder's token
	fence   string // the fencing counter: the last fencing token issued
	queue   string // processes waiting in line: a list of "<waiter id> <token>"
	channel string // where acquisitions and releases are announced
	grant   string // prefix of the grant channels: grant + waiter id is one *Lock's
}

// keysFor derives the keys of a lock. They share a hash tag so that one script
// can touch them on a cluster without CROSSSLOT: if the lock key already has a
// tag, the others reuse it; otherwise the whole lock key becomes their tag,
// which hashes to the same slot as the untagged lock key. The channels share
// it too, for sharded Pub/Sub.
func keysFor(name string, c Config) (keyset, error) {
	key := c.KeyPrefix + name
	if c.PlainKey {
		key = name
	}
	base := key
	if hashTag(key) == "" {
		if strings.ContainsRune(key, '}') {
			return keyset{}, fmt.Errorf("lock: key %q has a '}' but no hash tag: its companion keys could not share its slot", key)
		}
		base = "{" + key + "}"
	}
	return keyset{key: key, fence: base + ":fence", queue: base + ":queue", channel: base + ":events", grant: base + ":grant:"}, nil
}

// hashTag returns the part of key that Valkey Cluster hashes, when the key has
// a non-empty {tag}, or "".
func hashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return ""
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return ""
	}
	return key[open+1 : open+1+end]
}
