package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	redsyncgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	"github.com/valkey-io/valkey-go"
	"github.com/valkey-io/valkey-go/valkeylock"

	"github.com/baton-dev/baton/lock"
)

// impl is one lock implementation as the scenarios drive it. An impl is one
// "process": its own client and connections. It is safe for concurrent use.
type impl interface {
	Name() string
	// TryLock makes one attempt; ok is false when someone else holds key.
	TryLock(ctx context.Context, key string) (unlock func(context.Context) error, ok bool, err error)
	// Lock blocks until key is held or ctx ends.
	Lock(ctx context.Context, key string) (unlock func(context.Context) error, err error)
	// Key is the server key that holds the lock named key, for planting a
	// crashed holder's value.
	Key(key string) string
	Close()
}

// peer names an implementation and opens an instance of it on a server.
type peer struct {
	name string
	open func(addr string) (impl, error)
	// procs: the implementation takes part in scenario 4 (processes on one
	// key). The variants with a slow retry delay do not: a waiter that
	// sleeps 50-250ms between attempts says nothing about how a line of
	// processes is served, and 64 of them would only lengthen the run.
	procs bool
}

// lockTTL is the TTL of every acquisition: long enough never to expire during
// a scenario, so expiry never does a release's work.
const lockTTL = 10 * time.Second

var peers = []peer{
	{name: "baton", open: openBaton, procs: true},
	{name: "valkeylock", open: openValkeylock, procs: true},
	{name: "redsync (default delay)", open: openRedsync("redsync (default delay)", 0)},
	{name: "redsync (1ms delay)", open: openRedsync("redsync (1ms delay)", time.Millisecond), procs: true},
	{name: "redislock (100ms)", open: openRedislock("redislock (100ms)", 100*time.Millisecond)},
	{name: "redislock (1ms)", open: openRedislock("redislock (1ms)", time.Millisecond), procs: true},
	{name: "floor (SET NX + script)", open: openFloor, procs: true},
}

// errNotHeld reports an unlock of something that was not held any more.
var errNotHeld = errors.New("unlock: not held")

// --- baton ---

// batonImpl keeps one *lock.Lock per name, as baton's docs ask: waiters on
// one *Lock queue in FIFO order and share one subscription. A sync.Map, read
// without a lock once a name is known, stands for what a program does: keep
// its *Lock values in variables.
type batonImpl struct {
	client valkey.Client
	locks  sync.Map // name -> *lock.Lock
}

func openBaton(addr string) (impl, error) {
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		return nil, err
	}
	return &batonImpl{client: c}, nil
}

func (b *batonImpl) Name() string { return "baton" }

func (b *batonImpl) lock(key string) (*lock.Lock, error) {
	if l, ok := b.locks.Load(key); ok {
		return l.(*lock.Lock), nil
	}
	l, err := lock.New(b.client, key, lock.Config{TTL: lockTTL})
	if err != nil {
		return nil, err
	}
	actual, _ := b.locks.LoadOrStore(key, l)
	return actual.(*lock.Lock), nil
}

func (b *batonImpl) TryLock(ctx context.Context, key string) (func(context.Context) error, bool, error) {
	l, err := b.lock(key)
	if err != nil {
		return nil, false, err
	}
	h, err := l.TryAcquire(ctx)
	if errors.Is(err, lock.ErrNotAcquired) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return h.Release, true, nil
}

func (b *batonImpl) Lock(ctx context.Context, key string) (func(context.Context) error, error) {
	l, err := b.lock(key)
	if err != nil {
		return nil, err
	}
	h, err := l.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return h.Release, nil
}

func (b *batonImpl) Key(key string) string { return lock.DefaultKeyPrefix + key }
func (b *batonImpl) Close()                { b.client.Close() }

// --- valkeylock ---

// valkeylockImpl is valkey-go's valkeylock with one key per lock (KeyMajority
// 1) and NOLOOP tracking: waiters wake on the invalidation of the key.
type valkeylockImpl struct {
	locker valkeylock.Locker
}

const valkeylockPrefix = "valkeylock"

func openValkeylock(addr string) (impl, error) {
	l, err := valkeylock.NewLocker(valkeylock.LockerOption{
		ClientOption:   valkey.ClientOption{InitAddress: []string{addr}},
		KeyPrefix:      valkeylockPrefix,
		KeyMajority:    1,
		NoLoopTracking: true,
		KeyValidity:    lockTTL,
	})
	if err != nil {
		return nil, err
	}
	return &valkeylockImpl{locker: l}, nil
}

func (v *valkeylockImpl) Name() string { return "valkeylock" }

func (v *valkeylockImpl) TryLock(ctx context.Context, key string) (func(context.Context) error, bool, error) {
	_, cancel, err := v.locker.TryWithContext(ctx, key)
	if errors.Is(err, valkeylock.ErrNotLocked) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return cancelUnlock(cancel), true, nil
}

func (v *valkeylockImpl) Lock(ctx context.Context, key string) (func(context.Context) error, error) {
	_, cancel, err := v.locker.WithContext(ctx, key)
	if err != nil {
		return nil, err
	}
	return cancelUnlock(cancel), nil
}

// cancelUnlock turns valkeylock's cancel, which deletes the key and waits for
// the deletion, into an unlock.
func cancelUnlock(cancel context.CancelFunc) func(context.Context) error {
	return func(context.Context) error {
		cancel()
		return nil
	}
}

func (v *valkeylockImpl) Key(key string) string { return valkeylockPrefix + ":0:" + key }
func (v *valkeylockImpl) Close()                { v.locker.Close() }

// --- redsync ---

// redsyncImpl is redsync v4 on one go-redis v9 client (a single pool, so a
// quorum of one). delay 0 keeps redsync's default random 50-250ms retry delay.
type redsyncImpl struct {
	name  string
	rdb   *redis.Client
	rs    *redsync.Redsync
	delay time.Duration
}

func openRedsync(name string, delay time.Duration) func(string) (impl, error) {
	return func(addr string) (impl, error) {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		return &redsyncImpl{name: name, rdb: rdb, rs: redsync.New(redsyncgoredis.NewPool(rdb)), delay: delay}, nil
	}
}

func (r *redsyncImpl) Name() string { return r.name }

func (r *redsyncImpl) mutex(key string, tries int) *redsync.Mutex {
	opts := []redsync.Option{redsync.WithExpiry(lockTTL), redsync.WithTries(tries)}
	if r.delay > 0 {
		opts = append(opts, redsync.WithRetryDelay(r.delay))
	}
	return r.rs.NewMutex(key, opts...)
}

func (r *redsyncImpl) TryLock(ctx context.Context, key string) (func(context.Context) error, bool, error) {
	m := r.mutex(key, 1)
	if err := m.TryLockContext(ctx); err != nil {
		if taken(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return mutexUnlock(m), true, nil
}

func (r *redsyncImpl) Lock(ctx context.Context, key string) (func(context.Context) error, error) {
	// Unbounded tries: Lock waits until ctx ends, like the others.
	m := r.mutex(key, math.MaxInt32)
	if err := m.LockContext(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, errors.Join(err, ctx.Err())
		}
		return nil, err
	}
	return mutexUnlock(m), nil
}

// taken reports whether a failed redsync attempt means "held elsewhere".
func taken(err error) bool {
	var t *redsync.ErrTaken
	var nt *redsync.ErrNodeTaken
	return errors.Is(err, redsync.ErrFailed) || errors.As(err, &t) || errors.As(err, &nt)
}

func mutexUnlock(m *redsync.Mutex) func(context.Context) error {
	return func(ctx context.Context) error {
		ok, err := m.UnlockContext(ctx)
		if err == nil && !ok {
			err = errNotHeld
		}
		return err
	}
}

func (r *redsyncImpl) Key(key string) string { return key }
func (r *redsyncImpl) Close()                { r.rdb.Close() }

// --- bsm/redislock ---

// redislockImpl is bsm/redislock on one go-redis v9 client, retrying at a
// fixed interval (LinearBackoff) when blocking.
type redislockImpl struct {
	name    string
	rdb     *redis.Client
	client  *redislock.Client
	backoff time.Duration
}

func openRedislock(name string, backoff time.Duration) func(string) (impl, error) {
	return func(addr string) (impl, error) {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		return &redislockImpl{name: name, rdb: rdb, client: redislock.New(rdb), backoff: backoff}, nil
	}
}

func (r *redislockImpl) Name() string { return r.name }

func (r *redislockImpl) TryLock(ctx context.Context, key string) (func(context.Context) error, bool, error) {
	l, err := r.client.Obtain(ctx, key, lockTTL, nil)
	if errors.Is(err, redislock.ErrNotObtained) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return l.Release, true, nil
}

func (r *redislockImpl) Lock(ctx context.Context, key string) (func(context.Context) error, error) {
	opts := &redislock.Options{RetryStrategy: redislock.LinearBackoff(r.backoff)}
	for {
		// Obtain gives up after the TTL when ctx has no deadline; go on
		// until ctx ends, like the others.
		l, err := r.client.Obtain(ctx, key, lockTTL, opts)
		if err == nil {
			return l.Release, nil
		}
		if !errors.Is(err, redislock.ErrNotObtained) || ctx.Err() != nil {
			return nil, err
		}
	}
}

func (r *redislockImpl) Key(key string) string { return key }
func (r *redislockImpl) Close()                { r.rdb.Close() }

// --- floor ---

// floorImpl is the least a lock can do on valkey-go: SET NX PX to acquire and
// a compare-and-delete script to release, with no fencing, no notification
// and no queue. Blocking polls every millisecond.
type floorImpl struct {
	client valkey.Client
}

const floorPoll = time.Millisecond

var floorRelease = valkey.NewLuaScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

func openFloor(addr string) (impl, error) {
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		return nil, err
	}
	return &floorImpl{client: c}, nil
}

func (f *floorImpl) Name() string { return "floor (SET NX + script)" }

func (f *floorImpl) TryLock(ctx context.Context, key string) (func(context.Context) error, bool, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	token := base64.RawURLEncoding.EncodeToString(b[:])
	err := f.client.Do(ctx, f.client.B().Set().Key(key).Value(token).Nx().PxMilliseconds(lockTTL.Milliseconds()).Build()).Error()
	if valkey.IsValkeyNil(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return func(ctx context.Context) error {
		n, err := floorRelease.Exec(ctx, f.client, []string{key}, []string{token}).AsInt64()
		if err == nil && n != 1 {
			err = errNotHeld
		}
		return err
	}, true, nil
}

func (f *floorImpl) Lock(ctx context.Context, key string) (func(context.Context) error, error) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		unlock, ok, err := f.TryLock(ctx, key)
		if err != nil || ok {
			return unlock, err
		}
		t.Reset(floorPoll)
	}
}

func (f *floorImpl) Key(key string) string { return key }
func (f *floorImpl) Close()                { f.client.Close() }
