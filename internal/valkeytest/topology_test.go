package valkeytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Helpers shared by the Cluster and SentinelGroup tests.

// keyCount keys are enough to land on every primary of a cluster many times.
const keyCount = 300

// setKeys writes keyCount keys named prefix:N with value N through c.
func setKeys(t *testing.T, c valkey.Client, prefix string) []string {
	t.Helper()
	keys := make([]string, keyCount)
	for i := range keys {
		keys[i] = prefix + ":" + strconv.Itoa(i)
		if err := c.Do(t.Context(), c.B().Set().Key(keys[i]).Value(strconv.Itoa(i)).Build()).Error(); err != nil {
			t.Fatalf("SET %s: %v", keys[i], err)
		}
	}
	return keys
}

// checkKeys reads every key written by setKeys through c.
func checkKeys(t *testing.T, c valkey.Client, keys []string) {
	t.Helper()
	for i, k := range keys {
		got, err := c.Do(t.Context(), c.B().Get().Key(k).Build()).ToString()
		if err != nil || got != strconv.Itoa(i) {
			t.Fatalf("GET %s = %q, %v; want %q", k, got, err, strconv.Itoa(i))
		}
	}
}

// writer writes keys {key}:0, {key}:1, ... in a loop through a client, from
// its own goroutine, and records what the client returns, to show what a
// fault looks like to an application. The keys share key's hash slot.
type writer struct {
	start     time.Time
	cancel    context.CancelFunc
	done      chan struct{} // closed when the loop has returned
	succeeded chan struct{} // gets a value, if it has room, after every successful write

	// Written by the loop only; read after done is closed. Times are since
	// start.
	acked               []string       // the keys written successfully
	failures            map[string]int // by kind of error
	firstFail, lastFail time.Duration
	recovered           time.Duration // the first success after lastFail; 0 if none yet
}

// writeEvery paces the writer: a refused connection fails at once, and the
// loop should not spin.
const writeEvery = 5 * time.Millisecond

// startWriter starts a writer; call it just before the fault.
func startWriter(t *testing.T, c valkey.Client, key string) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{
		start:     time.Now(),
		cancel:    cancel,
		done:      make(chan struct{}),
		succeeded: make(chan struct{}, 1),
		failures:  make(map[string]int),
	}
	go w.loop(ctx, c, key)
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *writer) loop(ctx context.Context, c valkey.Client, key string) {
	defer close(w.done)
	tick := time.NewTicker(writeEvery)
	defer tick.Stop()
	for n := 0; ; n++ {
		opCtx, cancel := context.WithTimeout(ctx, time.Second)
		k := "{" + key + "}:" + strconv.Itoa(n)
		err := c.Do(opCtx, c.B().Set().Key(k).Value("1").Build()).Error()
		cancel()
		if ctx.Err() != nil {
			return // stopped: the last result is the stop's doing
		}
		at := time.Since(w.start)
		if err == nil {
			w.acked = append(w.acked, k)
			if w.lastFail > 0 && w.recovered == 0 {
				w.recovered = at
			}
			select {
			case w.succeeded <- struct{}{}:
			default:
			}
		} else {
			w.failures[errorKind(err)]++
			if w.firstFail == 0 {
				w.firstFail = at
			}
			w.lastFail, w.recovered = at, 0
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// awaitWrite waits until the writer succeeds in a write that ends after the
// call, for a client that has to find a new primary, and returns how long
// that took.
func (w *writer) awaitWrite(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-w.succeeded: // from before the call
	default:
	}
	select {
	case <-w.succeeded:
		return time.Since(start)
	case <-time.After(topologyTimeout):
		t.Fatalf("no successful write in %v", topologyTimeout)
		return 0
	}
}

// stop ends the loop, waits for it and returns a summary of what it saw. It
// is safe to call more than once.
func (w *writer) stop() string {
	w.cancel()
	<-w.done
	if len(w.failures) == 0 {
		return fmt.Sprintf("%d writes, none failed", len(w.acked))
	}
	var kinds []string
	for _, k := range slices.Sorted(maps.Keys(w.failures)) {
		kinds = append(kinds, fmt.Sprintf("%s ×%d", k, w.failures[k]))
	}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	end := "still failing when stopped"
	if w.recovered > 0 {
		end = fmt.Sprintf("writing again at +%v", ms(w.recovered))
	}
	return fmt.Sprintf("%d writes ok; failures %s from +%v to +%v, %s",
		len(w.acked), strings.Join(kinds, ", "), ms(w.firstFail), ms(w.lastFail), end)
}

// lost stops the writer and returns how many of its acknowledged writes c
// cannot find.
func (w *writer) lost(t *testing.T, c valkey.Client) int {
	t.Helper()
	w.stop()
	found := int64(0)
	for chunk := range slices.Chunk(w.acked, 500) {
		n, err := c.Do(t.Context(), c.B().Exists().Key(chunk...).Build()).AsInt64()
		if err != nil {
			t.Fatalf("EXISTS on the writer's keys: %v", err)
		}
		found += n
	}
	return len(w.acked) - int(found)
}

// errorKind names an error without the addresses in it.
func errorKind(err error) string {
	if verr, ok := valkey.IsValkeyErr(err); ok {
		kind, _, _ := strings.Cut(verr.Error(), " ")
		return kind
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return err.Error()
}

// replicationOffsets returns how far replica has read and applied its
// primary's stream.
func replicationOffsets(t *testing.T, replica *Server) (read, applied int64) {
	t.Helper()
	info := replica.Info(t, "replication")
	read, err1 := strconv.ParseInt(info["slave_read_repl_offset"], 10, 64)
	applied, err2 := strconv.ParseInt(info["slave_repl_offset"], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("INFO replication on %s: %v", replica.Addr(), err)
	}
	return read, applied
}

// checkHeldBack checks PauseReplication and ResumeReplication on replica of
// primary: after a write of key (served by primary) the replica reads the
// stream but does not apply it until resumed, then catches up.
func checkHeldBack(t *testing.T, primary, replica *Server, key string, pause, resume func(testing.TB, *Server)) {
	t.Helper()
	pause(t, replica)
	if err := primary.Do(t, "SET", key, "held back").Error(); err != nil {
		t.Fatalf("SET %s on the primary: %v", key, err)
	}
	waitFor(t, 10*time.Second, "the paused replica reads the stream", func() error {
		if read, applied := replicationOffsets(t, replica); read <= applied {
			return fmt.Errorf("read offset %d, applied %d", read, applied)
		}
		return nil
	})
	resume(t, replica)
	want, err := strconv.ParseInt(primary.Info(t, "replication")["master_repl_offset"], 10, 64)
	if err != nil {
		t.Fatalf("INFO replication on the primary: master_repl_offset: %v", err)
	}
	waitFor(t, 10*time.Second, "the resumed replica catches up", func() error {
		if _, applied := replicationOffsets(t, replica); applied < want {
			return fmt.Errorf("applied offset %d; want %d", applied, want)
		}
		return nil
	})
}
