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
)

// Config tunes a Lock. The zero value is a lock without TTL that blocks until
// the context ends; every zero field means its documented default.
type Config struct {
	// TTL is how long the key lives after an acquisition (PX). Zero means no
	// expiry: the lock is held until released. A TTL below one millisecond or
	// a negative one is refused by New; others are rounded up to whole
	// milliseconds, the server's resolution.
	TTL time.Duration

	// BlockingTimeout bounds how long Acquire waits for the lock. Zero means
	// wait until the context ends. A blocking timeout shorter than
	// RetryInterval makes Acquire attempt exactly once. Negative is refused.
	BlockingTimeout time.Duration

	// RetryInterval paces a blocked Acquire's attempts when no notification
	// arrives. Waiters normally wake on the holder's release (published by
	// the release script) or at the moment the holder's TTL runs out; this
	// fallback covers the rest. It applies as is until the waiters'
	// subscription is confirmed, and always with PlainKey (valkey-py holders
	// do not publish); once releases are heard it stretches to ten times
	// RetryInterval, for what is never published (an operator's DEL, an
	// eviction). Default DefaultRetryInterval.
	RetryInterval time.Duration

	// KeyPrefix is prepended to the name to form the key; default
	// DefaultKeyPrefix. Ignored when PlainKey is set.
	KeyPrefix string

	// PlainKey uses the name itself as the key, exactly as valkey-py's Lock
	// does, so a Python Lock(name) and a baton Lock on the same name exclude
	// each other. Values are plain tokens in both modes.
	PlainKey bool

	// Announce publishes every acquisition ("acquired:<fence>") and every
	// release ("released:<fence>") on Channel(), for followers of the lock
	// (Follow; election watchers). Without it acquisitions are not published
	// and a release is published only when a blocked Acquire has registered
	// on the server, which is what waiters need: fewer server calls per
	// acquisition. The election package sets it.
	Announce bool

	// TracerProvider makes the spans of acquire, release, extend and
	// reacquire. Nil means the global provider (otel.GetTracerProvider).
	TracerProvider trace.TracerProvider

	// Logger receives what the lock cannot return as an error, at Warn: a
	// subscription the server refuses (waiters then fall back to attempting
	// every RetryInterval) and a release whose PUBLISH the server refuses
	// (the release is done; other processes' waiters learn of it by their
	// fallback). Each is logged once until it recovers. Nil means
	// slog.Default() at the time New is called.
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
	return c
}

func (c Config) validate(name string) error {
	var errs []error
	if name == "" {
		errs = append(errs, errors.New("lock: name must not be empty"))
	}
	if c.TTL < 0 {
		errs = append(errs, fmt.Errorf("lock: ttl %v is negative", c.TTL))
	} else if c.TTL > 0 && c.TTL < time.Millisecond {
		errs = append(errs, fmt.Errorf("lock: ttl %v is below the server's 1ms resolution (use 0 for no expiry)", c.TTL))
	}
	if c.BlockingTimeout < 0 {
		errs = append(errs, fmt.Errorf("lock: blocking timeout %v is negative", c.BlockingTimeout))
	}
	if c.RetryInterval < 0 {
		errs = append(errs, fmt.Errorf("lock: retry interval %v is negative", c.RetryInterval))
	}
	return errors.Join(errs...)
}

// keyset names everything one lock touches on the server.
type keyset struct {
	key     string // the lock itself: its value is the holder's token
	fence   string // the fencing counter: the last fencing token issued
	waiters string // who waits: one Lock's waiter id, or '*' for several
	channel string // where acquisitions and releases are published
}

// keysFor derives the keys of a lock. They share a hash tag so that one script
// can touch them on a cluster without CROSSSLOT: if the lock key already has a
// tag, the others reuse it; otherwise the whole lock key becomes their tag,
// which hashes to the same slot as the untagged lock key.
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
	return keyset{key: key, fence: base + ":fence", waiters: base + ":waiters", channel: base + ":events"}, nil
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
