package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/baton-dev/baton/internal/valkeytest"
)

// lines returns the complete lines written so far.
func lines(b *syncBuffer) []string {
	s := b.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.Split(s[:i], "\n")
	}
	return nil
}

func TestWatchJSON(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	w := startBaton(t, nil, "watch", "--addr", s.Addr(), "--name", "watched", "--json")
	waitFor(t, "the first observation", func() bool { return len(lines(w.stdout)) == 1 })

	ev := filepath.Join(t.TempDir(), "events")
	p := startBaton(t, helperEnv("record", ev), runArgs(s, "watched", "w1")...)
	waitFor(t, "the election to be seen", func() bool { return len(lines(w.stdout)) == 2 })
	waitFor(t, "the command to start", func() bool { return len(starts(t, ev)) == 1 })
	p.signal(t, syscall.SIGTERM) // releases on exit
	p.wait(t)
	waitFor(t, "the release to be seen", func() bool { return len(lines(w.stdout)) == 3 })

	w.signal(t, syscall.SIGINT)
	if code := w.wait(t); code != 0 {
		t.Fatalf("baton watch exited %d after SIGINT; want 0", code)
	}
	var got []record
	for _, l := range lines(w.stdout) {
		var r record
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Time == nil || r.Name != "watched" {
			t.Fatalf("line %q: %v; want a record with time and name", l, err)
		}
		got = append(got, r)
	}
	fence := starts(t, ev)[0].fence
	if got[0].Leader || !got[1].Leader || got[1].Identity != "w1" || got[1].Fence != fence || got[2].Leader {
		t.Fatalf("watch saw %+v; want none, w1 with fence %d, none", got, fence)
	}
}

func TestWatchText(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	ev := filepath.Join(t.TempDir(), "events")
	p := startBaton(t, helperEnv("record", ev), runArgs(s, "text", "t1")...)
	waitFor(t, "the command to start", func() bool { return len(starts(t, ev)) == 1 })

	w := startBaton(t, nil, "watch", "--addr", s.Addr(), "--name", "text")
	waitFor(t, "the first observation", func() bool { return len(lines(w.stdout)) == 1 })
	p.signal(t, syscall.SIGTERM) // releases on exit
	p.wait(t)
	waitFor(t, "no leader", func() bool { return len(lines(w.stdout)) == 2 })
	w.signal(t, syscall.SIGTERM)
	if code := w.wait(t); code != 0 {
		t.Fatalf("baton watch exited %d after SIGTERM; want 0", code)
	}
	got := lines(w.stdout)
	first := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d) t1 fence=\d+$`)
	second := regexp.MustCompile(`^\S+ none$`)
	if !first.MatchString(got[0]) || !second.MatchString(got[1]) {
		t.Fatalf("watch printed %q; want %s then %s", got, first, second)
	}
}
