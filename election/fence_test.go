package election

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/baton-dev/baton/callbacks"
)

// resource is an in-memory stand-in for a store that checks fencing tokens:
// it accepts a write only if its fence is at least the highest it has seen.
type resource struct {
	mu      sync.Mutex
	highest int64
	writes  []write // every attempt, in the order the resource saw them
}

type write struct {
	id       string
	fence    int64
	accepted bool
}

func (r *resource) write(id string, fence int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok := fence >= r.highest
	if ok {
		r.highest = fence
	}
	r.writes = append(r.writes, write{id: id, fence: fence, accepted: ok})
	return ok
}

func (r *resource) history() []write {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]write(nil), r.writes...)
}

// TestFencedResourceAcrossChurn has every leader write to a fenced resource
// for as long as its OnElected runs, through resignations, key deletions
// (where the old leader keeps writing until its next renewal fails, while
// the new one already writes) and a server pause.
func TestFencedResourceAcrossChurn(t *testing.T) {
	checkLeaks(t)
	g := newGroup(t)
	res := &resource{}
	var cs []*candidate
	for _, id := range []string{"a", "b", "c"} {
		c := g.add(id, nil)
		c.work = func(ctx context.Context, term callbacks.Term) {
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				// A leader does not check its ctx between writes at the
				// moment of a deletion: it does not know yet. That is the
				// window fencing closes.
				res.write(id, term.Fence)
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}
		cs = append(cs, c.start())
	}

	ev, cur := g.log.await(t, 0, "first election", isElected)
	terms := []int64{ev.fence}
	nextTerm := func(what string) {
		t.Helper()
		prev := ev.fence
		ev, cur = g.log.await(t, cur, what, func(e event) bool { return e.kind == evElected && e.fence > prev })
		terms = append(terms, ev.fence)
	}
	for i := range 6 {
		switch i % 3 {
		case 0:
			if err := find(t, cs, ev.id).e.Resign(testCtx(t)); err != nil {
				t.Fatalf("Resign = %v", err)
			}
			nextTerm("election after a resignation")
		case 1:
			before, deposed := cur, ev.fence
			g.srv.Do(t, "DEL", g.key())
			nextTerm("election after a deletion")
			// Wait for the deposed leader to notice, so the next round
			// starts from one leader.
			g.log.await(t, before, "the deposed leader stepping down", func(e event) bool { return e.kind == evLost && e.fence == deposed })
		case 2:
			g.srv.Pause(t)
			time.Sleep(testRenewDeadline / 2) // the fault: a pause the leader survives
			g.srv.Resume(t)
			if err := find(t, cs, ev.id).e.Resign(testCtx(t)); err != nil {
				t.Fatalf("Resign after the pause = %v", err)
			}
			nextTerm("election after a pause and a resignation")
		}
	}
	for _, c := range cs {
		c.stop()
		c.checkCallbacks(t)
	}

	writes := res.history()
	var highest int64
	var accepted, rejected int
	seen := map[int64]bool{}
	for i, w := range writes {
		if w.accepted {
			accepted++
			if w.fence < highest {
				t.Fatalf("write %d by %s with fence %d accepted after fence %d had been", i, w.id, w.fence, highest)
			}
			highest = w.fence
			seen[w.fence] = true
			continue
		}
		rejected++
		if w.fence >= highest {
			t.Errorf("write %d by %s with fence %d rejected although the highest accepted was %d", i, w.id, w.fence, highest)
		}
	}
	for i := 1; i < len(terms); i++ {
		if terms[i] <= terms[i-1] {
			t.Errorf("term fences %v; want strictly increasing", terms)
		}
	}
	for _, f := range terms {
		if !seen[f] {
			t.Errorf("no accepted write with the fence %d of a term", f)
		}
	}
	t.Logf("%d terms, %d writes accepted, %d stale writes rejected", len(terms), accepted, rejected)
}
