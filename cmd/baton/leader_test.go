package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"

	"github.com/baton-dev/baton/internal/valkeytest"
)

func TestLeader(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	args := []string{"leader", "--addr", s.Addr(), "--name", "shown"}

	code, out, _ := runBaton(t, nil, args...)
	if code != exitNoLeader || out != "no leader\n" {
		t.Fatalf("baton leader with no leader = %d %q; want 3 %q", code, out, "no leader\n")
	}
	code, out, _ = runBaton(t, nil, append(args, "--json")...)
	if code != exitNoLeader || out != `{"name":"shown","leader":false}`+"\n" {
		t.Fatalf("baton leader --json with no leader = %d %q", code, out)
	}

	ev := filepath.Join(t.TempDir(), "events")
	p := startBaton(t, helperEnv("record", ev), runArgs(s, "shown", "node-1")...)
	waitFor(t, "the command to start", func() bool { return len(starts(t, ev)) == 1 })
	fence := starts(t, ev)[0].fence

	code, out, _ = runBaton(t, nil, args...)
	if want := regexp.MustCompile(`^node-1 fence=(\d+) ttl=\d+(\.\d+)?m?s\n$`); code != 0 || !want.MatchString(out) {
		t.Fatalf("baton leader = %d %q; want 0 and %s", code, out, want)
	}
	code, out, _ = runBaton(t, nil, append(args, "--json")...)
	var got record
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("baton leader --json = %d %q (%v); want 0 and JSON", code, out, err)
	}
	if !got.Leader || got.Identity != "node-1" || got.Fence != fence || got.TTLMs == nil || *got.TTLMs <= 0 || *got.TTLMs > 2000 {
		t.Fatalf("baton leader --json = %s; want node-1, fence %d, 0 < ttl_ms <= 2000", out, fence)
	}
	p.signal(t, syscall.SIGTERM)
	p.wait(t)
}

func TestLeaderKeyPrefix(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	ev := filepath.Join(t.TempDir(), "events")
	p := startBaton(t, helperEnv("record", ev), runArgs(s, "pfx", "x", "--key-prefix", "team1:")...)
	waitFor(t, "the command to start", func() bool { return len(starts(t, ev)) == 1 })
	if n, _ := s.Do(t, "EXISTS", "team1:pfx").AsInt64(); n != 1 {
		t.Fatalf("EXISTS team1:pfx = %d; want 1", n)
	}
	if code, _, _ := runBaton(t, nil, "leader", "--addr", s.Addr(), "--name", "pfx"); code != exitNoLeader {
		t.Fatalf("baton leader with the default prefix = %d; want 3", code)
	}
	if code, _, _ := runBaton(t, nil, "leader", "--addr", s.Addr(), "--name", "pfx", "--key-prefix", "team1:"); code != 0 {
		t.Fatalf("baton leader --key-prefix team1: = %d; want 0", code)
	}
	p.signal(t, syscall.SIGTERM)
	p.wait(t)
}
