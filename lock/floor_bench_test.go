package lock

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

// The floor is the least a lock can do on valkey-go, as bench/'s "floor"
// implementation: SET NX PX to acquire and a compare-and-delete script to
// release, with no fencing, no notification and no tracing. These benchmarks
// run it on the same kind of server and client as the baton benchmarks, so
// that the two can be compared within one run (the design brief asks for
// baton's uncontended acquire + release within 10% of it).

var floorRelease = valkey.NewLuaScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// floorAcquireRelease is one floor acquire + release of key.
func floorAcquireRelease(ctx context.Context, c valkey.Client, key string, ttl time.Duration) error {
	token := newToken()
	if err := c.Do(ctx, c.B().Set().Key(key).Value(token).Nx().PxMilliseconds(ttl.Milliseconds()).Build()).Error(); err != nil {
		return err
	}
	n, err := floorRelease.Exec(ctx, c, []string{key}, []string{token}).AsInt64()
	if err == nil && n != 1 {
		err = ErrNotOwned
	}
	return err
}

// BenchmarkAcquireReleaseVsFloor alternates, operation by operation, a baton
// TryAcquire + Release and a floor acquire + release on the same client and
// server, so that both see the same load: on a shared machine, separate
// benchmarks drift apart by more than the difference between them. It
// reports the mean time of each and their ratio (baton ÷ floor).
func BenchmarkAcquireReleaseVsFloor(b *testing.B) {
	e := newBenchEnv(b)
	l := e.lock(b, "vs-floor", Config{TTL: 10 * time.Second})
	ctx := b.Context()
	if err := floorAcquireRelease(ctx, e.client, "floor", 10*time.Second); err != nil {
		b.Fatal(err)
	}
	var batonTime, floorTime time.Duration
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for k := range 2 {
			t0 := time.Now()
			if (i+k)%2 == 0 { // each goes first every other time
				h, err := l.TryAcquire(ctx)
				if err != nil {
					b.Fatalf("TryAcquire = %v", err)
				}
				if err := h.Release(ctx); err != nil {
					b.Fatalf("Release = %v", err)
				}
				batonTime += time.Since(t0)
			} else {
				if err := floorAcquireRelease(ctx, e.client, "floor", 10*time.Second); err != nil {
					b.Fatal(err)
				}
				floorTime += time.Since(t0)
			}
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(batonTime.Microseconds())/n, "baton-µs/op")
	b.ReportMetric(float64(floorTime.Microseconds())/n, "floor-µs/op")
	b.ReportMetric(float64(batonTime)/float64(floorTime), "baton/floor")
}

// BenchmarkFloorParallelDistinctKeys is BenchmarkParallelDistinctKeys for the
// floor.
func BenchmarkFloorParallelDistinctKeys(b *testing.B) {
	const workers = 64
	e := newBenchEnv(b)
	keys := make([]string, workers)
	for i := range keys {
		keys[i] = "floor-" + strconv.Itoa(i)
		if err := floorAcquireRelease(b.Context(), e.client, keys[i], 10*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	e.runDistinct(b, workers, "floor acquire+release on a key of its own", func(ctx context.Context, w int) error {
		return floorAcquireRelease(ctx, e.client, keys[w], 10*time.Second)
	})
}
