//go:build unix

package lease

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/baton-dev/baton/lock"
	"github.com/valkey-io/valkey-go"
)

// BenchmarkLeases keeps N leases alive from one process on one client
// connection, with a 3s TTL and the default renew interval (TTL/3 = 1s), and
// reports per renewal the process's CPU time (user + system, from getrusage,
// so valkey-go's work and the runtime's are included), the p50/p99 renewal
// latency (send to OnRenew), and per lease the heap it holds at rest and the
// goroutines it keeps. One iteration is a 3s window of renewals.
//
// Renewals follow each lease's acquisition time, so the start matters:
// start=burst acquires all N as fast as the connection allows, and their
// renewals then arrive in one burst per interval (the worst case for
// latency); start=spread paces the acquisitions evenly over one interval, as
// leases taken over time would be, for a steady stream of renewals.
func BenchmarkLeases(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, spread := range []bool{false, true} {
			name := fmt.Sprintf("leases=%d/start=burst", n)
			if spread {
				name = fmt.Sprintf("leases=%d/start=spread", n)
			}
			b.Run(name, func(b *testing.B) { benchLeases(b, n, spread) })
		}
	}
}

func benchLeases(b *testing.B, n int, spread bool) {
	const (
		ttl     = 3 * time.Second
		window  = 3 * time.Second
		workers = 64 // concurrent acquires and releases, pipelined on the connection
	)
	s := valkeytest.Start(b)
	opt := s.ClientOption()
	opt.PipelineMultiplex = -1 // exactly one connection
	client, err := valkey.NewClient(opt)
	if err != nil {
		b.Fatalf("valkey.NewClient = %v", err)
	}
	b.Cleanup(client.Close)
	ctx := context.Background()

	interval := ttl / 3 // the default renew interval
	helds := make([]*lock.Held, n)
	begin := time.Now()
	inParallel(b, n, workers, func(i int) error {
		if spread {
			time.Sleep(time.Until(begin.Add(interval * time.Duration(i) / time.Duration(n))))
		}
		l, err := lock.New(client, fmt.Sprintf("bench-%d", i), lock.Config{TTL: ttl})
		if err != nil {
			return err
		}
		helds[i], err = l.TryAcquire(ctx)
		return err
	})

	var (
		mu        sync.Mutex
		latencies []time.Duration
		renewed   atomic.Int64
	)
	onRenew := func(sent time.Time) {
		d := time.Since(sent)
		renewed.Add(1)
		mu.Lock()
		latencies = append(latencies, d)
		mu.Unlock()
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	leases := make([]*Lease, n)
	for i, h := range helds {
		if leases[i], err = New(h, Config{OnRenew: onRenew}); err != nil {
			b.Fatalf("New = %v", err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	goroutines = runtime.NumGoroutine() - goroutines
	b.Cleanup(func() {
		inParallel(b, n, workers, func(i int) error { return leases[i].Release(ctx) })
	})

	debug.FreeOSMemory() // keep the scavenger's work for earlier runs out of the window
	b.ReportAllocs()
	b.ResetTimer()
	var cpu time.Duration
	var count int64
	for range b.N {
		mu.Lock()
		latencies = latencies[:0]
		mu.Unlock()
		start, ru0 := renewed.Load(), rusage(b)
		time.Sleep(window) // the leases renew on their own meanwhile
		cpu += rusage(b) - ru0
		count += renewed.Load() - start
	}
	b.StopTimer()

	for i, l := range leases {
		if err := l.Err(); err != nil {
			b.Fatalf("lease %d: Err() = %v; want every lease alive", i, err)
		}
	}
	if count == 0 {
		b.Fatal("no renewal in the window")
	}
	mu.Lock()
	slices.Sort(latencies)
	p50, p99 := latencies[len(latencies)/2], latencies[len(latencies)*99/100]
	mu.Unlock()

	b.ReportMetric(float64(cpu.Microseconds())/float64(count), "cpu-µs/renewal")
	b.ReportMetric(float64(p50.Microseconds())/1000, "renew-p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "renew-p99-ms")
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(n), "heap-B/lease")
	b.ReportMetric(float64(goroutines)/float64(n), "goroutines/lease")
	b.ReportMetric(float64(count)/float64(b.N)/window.Seconds(), "renewals/s")
}

// inParallel runs fn(0..n-1) on workers goroutines and fails b on the first
// error.
func inParallel(b *testing.B, n, workers int, fn func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// rusage returns the CPU time, user plus system, this process has used.
func rusage(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
