// Command worker is the command that the chaos suite's cli mode gives to
// baton run: it reads the term's fence from BATON_FENCE and writes to the
// orchestrator's fenced store with it until SIGTERM (or SIGINT), reporting
// its start and stop to the hub named by CHAOS_HUB (package wire).
//
// Its start is the term's OnElected and its exit the term's OnLost: it sends
// "lost" just before exiting, after checking that it left no goroutine. It
// exits 0 when stopped cleanly, 3 when goroutines leaked, 4 when the hub could
// not be reached, 2 when the environment is incomplete.
//
// CHAOS_WRITE_MIN and CHAOS_WRITE_MAX (Go durations, default 20ms and 50ms)
// bound the pause between two writes; CHAOS_SEED seeds it.
package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/baton-dev/baton/internal/chaos/wire"
	"go.uber.org/goleak"
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	baseline := goleak.IgnoreCurrent()

	identity := os.Getenv("BATON_IDENTITY")
	fence, err := strconv.ParseInt(os.Getenv("BATON_FENCE"), 10, 64)
	hubAddr := os.Getenv("CHAOS_HUB")
	writeMin, errMin := durationEnv("CHAOS_WRITE_MIN", 20*time.Millisecond)
	writeMax, errMax := durationEnv("CHAOS_WRITE_MAX", 50*time.Millisecond)
	seed, _ := strconv.ParseUint(os.Getenv("CHAOS_SEED"), 10, 64)
	if identity == "" || hubAddr == "" || err != nil || errMin != nil || errMax != nil || writeMax < writeMin {
		fmt.Fprintln(os.Stderr, "worker: needs BATON_IDENTITY, BATON_FENCE and CHAOS_HUB, and valid CHAOS_WRITE_MIN <= CHAOS_WRITE_MAX")
		return 2
	}
	hub, err := wire.Dial(hubAddr, identity, wire.RoleWorker, os.Getpid())
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 4
	}
	defer hub.Close()
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "worker %s fence %d: %v\n", identity, fence, err)
		return 4
	}

	// Each term's worker draws its own pauses.
	rng := rand.New(rand.NewPCG(seed, uint64(fence)))
	if err := hub.Send(wire.Msg{Kind: wire.Elected, Fence: fence, T: wire.Now()}); err != nil {
		return fail(err)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
writing:
	for {
		select {
		case <-ctx.Done():
			break writing
		case <-timer.C:
		}
		if _, _, err := hub.Write(fence); err != nil {
			return fail(err)
		}
		timer.Reset(writeMin + time.Duration(rng.Int64N(int64(writeMax-writeMin)+1)))
	}
	if err := hub.Send(wire.Msg{Kind: wire.Stopped, Fence: fence, T: wire.Now()}); err != nil {
		return fail(err)
	}

	status, leaked := 0, 0
	if err := goleak.Find(baseline); err != nil {
		leaked = max(1, strings.Count(err.Error(), "\n[Goroutine "))
		fmt.Fprintf(os.Stderr, "worker: %d goroutines left:\n%v\n", leaked, err)
		status = 3
	}
	if err := hub.Send(wire.Msg{Kind: wire.Exit, Leaked: leaked, T: wire.Now()}); err != nil {
		return fail(err)
	}
	if err := hub.Send(wire.Msg{Kind: wire.Lost, Fence: fence, T: wire.Now()}); err != nil {
		return fail(err)
	}
	return status
}

func durationEnv(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	return time.ParseDuration(v)
}
