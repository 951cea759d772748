package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/baton-dev/baton/internal/valkeytest"
)

// aclEnv creates user name with rules (valkeytest.ACL minus drop) on s and returns
// the environment that logs baton in as it.
func aclEnv(t *testing.T, s *valkeytest.Server, name string, drop ...string) []string {
	t.Helper()
	user(t, s, name, valkeytest.Without(valkeytest.ACL, drop...))
	return []string{"VALKEY_USERNAME=" + name, "VALKEY_PASSWORD=pw"}
}

// user creates the ACL user name, password "pw", with rules on s.
func user(t *testing.T, s *valkeytest.Server, name string, rules []string) {
	t.Helper()
	if err := s.Do(t, slices.Concat([]string{"ACL", "SETUSER", name, "reset", "on", ">pw"}, rules)...).Error(); err != nil {
		t.Fatal(err)
	}
}

// oneLine checks that stderr is one line containing every want.
func oneLine(t *testing.T, what, stderr string, want ...string) {
	t.Helper()
	if strings.Count(strings.TrimSuffix(stderr, "\n"), "\n") != 0 {
		t.Errorf("%s: stderr has several lines; want one:\n%s", what, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("%s: stderr %q lacks %q", what, stderr, w)
		}
	}
}

// TestMissingPermissionExitsOne: every command reports a permission the
// server refuses in one line, with status 1, instead of retrying forever.
func TestMissingPermissionExitsOne(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	noTime := aclEnv(t, s, "notime", "+time")
	code, _, stderr := runBaton(t, noTime, runArgs(s, "perm", "a")...)
	if code != exitError {
		t.Fatalf("baton run without +time = %d; want 1:\n%s", code, stderr)
	}
	oneLine(t, "baton run without +time", stderr[strings.LastIndex(strings.TrimSuffix(stderr, "\n"), "\n")+1:],
		"baton: the server refuses", `user "notime"`, "TIME")

	noMulti := aclEnv(t, s, "nomulti", "+multi")
	code, _, stderr = runBaton(t, noMulti, "leader", "--addr", s.Addr(), "--name", "perm")
	if code != exitError {
		t.Fatalf("baton leader without +multi = %d; want 1", code)
	}
	oneLine(t, "baton leader without +multi", stderr, "baton: the server refuses", "multi")

	code, _, stderr = runBaton(t, noMulti, "watch", "--addr", s.Addr(), "--name", "perm")
	if code != exitError {
		t.Fatalf("baton watch without +multi = %d; want 1", code)
	}
	last := strings.TrimSuffix(stderr, "\n")
	oneLine(t, "baton watch without +multi", last[strings.LastIndex(last, "\n")+1:], "baton: the server refuses", "multi")

	noPub := aclEnv(t, s, "nopub", "+publish")
	code, _, stderr = runBaton(t, noPub, runArgs(s, "perm", "a", "--try")...)
	if code != exitError || !strings.Contains(stderr, "PUBLISH") {
		t.Fatalf("baton run --try without +publish = %d %q; want 1 naming PUBLISH", code, stderr)
	}
}

// TestWrongServerKindExitsOne: a cluster node reached without cluster
// topology, and a replica given to run, are reported at once.
func TestWrongServerKindExitsOne(t *testing.T) {
	t.Parallel()
	node := valkeytest.Start(t, valkeytest.WithArgs("--cluster-enabled", "yes"))
	node.Do(t, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
	env := aclEnv(t, node, "nocluster") // the documented ACL has no +cluster|shards
	code, _, stderr := runBaton(t, env, "leader", "--addr", node.Addr(), "--name", "x")
	if code != exitError {
		t.Fatalf("baton leader on a cluster node without topology = %d; want 1:\n%s", code, stderr)
	}
	oneLine(t, "cluster node", stderr, "is a Valkey Cluster node", "+cluster|shards")

	// A Sentinel given as the server, without --sentinel-master; and with it,
	// the master set it names is reached.
	group := valkeytest.StartSentinel(t)
	sentinel := group.SentinelAddrs()[0]
	code, _, stderr = runBaton(t, nil, "leader", "--addr", sentinel, "--name", "x")
	if code != exitError {
		t.Fatalf("baton leader on a Sentinel = %d; want 1:\n%s", code, stderr)
	}
	oneLine(t, "sentinel", stderr, "is a Sentinel, not a data node", "--sentinel-master")
	code, out, stderr := runBaton(t, nil, "leader", "--addr", sentinel, "--sentinel-master", group.MasterSet(), "--name", "x")
	if code != exitNoLeader {
		t.Fatalf("baton leader --sentinel-master = %d %q %q; want 3", code, out, stderr)
	}

	primary := valkeytest.Start(t)
	replica := valkeytest.Start(t, valkeytest.WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(primary.Port())))
	code, _, stderr = runBaton(t, nil, runArgs(replica, "x", "a")...)
	if code != exitError {
		t.Fatalf("baton run on a replica = %d; want 1:\n%s", code, stderr)
	}
	oneLine(t, "replica", stderr, "read-only replica")
	if code, _, stderr := runBaton(t, nil, "leader", "--addr", replica.Addr(), "--name", "x"); code != exitNoLeader {
		t.Fatalf("baton leader on a replica = %d %q; want 3: reading a replica is fine", code, stderr)
	}
}

// TestOnAClusterWithTheDocumentedUser: with the documented user and the
// rules docs/operations.md adds for a cluster, one seed address is enough
// for run, leader and watch; without the sharded Pub/Sub rules, run names
// them and exits 1.
func TestOnAClusterWithTheDocumentedUser(t *testing.T) {
	t.Parallel()
	c := valkeytest.StartCluster(t)
	topology := []string{"+cluster|shards", "+cluster|slots"}
	for _, node := range c.Nodes() { // ACL users are per node
		user(t, node, "clustered", slices.Concat(valkeytest.ACL, topology, []string{"+spublish", "+ssubscribe"}))
		user(t, node, "noshard", slices.Concat(valkeytest.ACL, topology))
	}
	env := []string{"VALKEY_USERNAME=clustered", "VALKEY_PASSWORD=pw"}
	noShard := []string{"VALKEY_USERNAME=noshard", "VALKEY_PASSWORD=pw"}
	seed := c.Addrs()[0]

	ev := filepath.Join(t.TempDir(), "events")
	code, _, stderr := runBaton(t, append(helperEnv("exit", ev, envCode+"=0"), env...),
		"run", "--cluster", "--addr", seed, "--name", "clustered", "--identity", "a", "--ttl", "2s", "--try", "--hold", "1m", "--", os.Args[0])
	if code != exitOK || len(starts(t, ev)) != 1 {
		t.Fatalf("baton run --try on a cluster = %d, %d starts; want 0, 1:\n%s", code, len(starts(t, ev)), stderr)
	}
	code, out, stderr := runBaton(t, env, "leader", "--cluster", "--addr", seed, "--name", "clustered")
	if code != exitOK || !strings.HasPrefix(out, "a ") {
		t.Fatalf("baton leader on a cluster = %d %q %q; want a", code, out, stderr)
	}
	code, _, stderr = runBaton(t, append(helperEnv("exit", ev, envCode+"=0"), noShard...),
		"run", "--cluster", "--addr", seed, "--name", "sharded", "--identity", "b", "--ttl", "2s", "--", os.Args[0])
	if code != exitError {
		t.Fatalf("baton run on a cluster without +spublish = %d; want 1:\n%s", code, stderr)
	}
	last := strings.TrimSuffix(stderr, "\n")
	oneLine(t, "run without sharded Pub/Sub", last[strings.LastIndex(last, "\n")+1:], "baton: the server refuses", "SPUBLISH", "SSUBSCRIBE")
}

// TestDurationFlags: defaults are safe together, zero and negative values
// are refused, and messages name the flags the user typed.
func TestDurationFlags(t *testing.T) {
	t.Parallel()
	const down = "127.0.0.1:1" // refused before connecting
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"zero ttl", []string{"--ttl", "0"}, []string{"--ttl 0s must be positive"}},
		{"negative grace", []string{"--grace", "-1s"}, []string{"--grace -1s must be positive"}},
		{"zero renew deadline", []string{"--renew-deadline", "0s"}, []string{"--renew-deadline 0s must be positive"}},
		{"tiny ttl", []string{"--ttl", "1ms"}, []string{"--ttl 1ms is too short", "--renew-deadline"}},
		{"no unit", []string{"--ttl", "15"}, []string{"durations need a unit"}},
		{"grace beyond the margin", []string{"--grace", "10s"},
			[]string{"--grace 10s exceeds --ttl 15s minus --renew-deadline 10s (5s)"}},
		{"grace beyond a given margin", []string{"--ttl", "3s", "--grace", "2s"},
			[]string{"--grace 2s exceeds --ttl 3s minus --renew-deadline 2s (1s)"}},
		{"hold without try", []string{"--hold", "1m"}, []string{"--hold needs --try"}},
		{"replica timeout without replicas", []string{"--replica-timeout", "1s"}, []string{"--replica-timeout needs --replicas"}},
		{"try and rerun", []string{"--try", "--rerun"}, []string{"exclude each other"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"run", "--addr", down, "--name", "x"}, tc.args...), "--", "true")
			code, _, stderr := runBaton(t, nil, args...)
			if code != exitUsage {
				t.Fatalf("baton %s = %d; want 2:\n%s", strings.Join(args, " "), code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
			if n := strings.Count(stderr, "\n"); n > 2 {
				t.Errorf("stderr has %d lines; want the error and a pointer to --help:\n%s", n, stderr)
			}
		})
	}
	// The defaults, and those derived from a --ttl, are logged and safe.
	s := valkeytest.Start(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "ttl=15s renew_deadline=10s retry_period=2s grace=5s"},
		{[]string{"--ttl", "3s"}, "ttl=3s renew_deadline=2s retry_period=400ms grace=1s"},
	} {
		ev := filepath.Join(t.TempDir(), "events")
		args := append([]string{"run", "--addr", s.Addr(), "--name", "defaults-" + strconv.Itoa(len(tc.args)), "--identity", "a"}, tc.args...)
		p := startBaton(t, helperEnv("record", ev), append(args, helperCmd()...)...)
		waitFor(t, "the command to start", func() bool { return len(starts(t, ev)) == 1 })
		if !strings.Contains(p.stderr.String(), tc.want) {
			t.Errorf("baton run %v logged:\n%s\nwant %q", tc.args, p.stderr, tc.want)
		}
		p.signal(t, syscall.SIGTERM)
		p.wait(t)
	}
}

// TestTryRunsOnceAcrossHosts: cron starts `baton run --try --hold` on three
// hosts, one after the other (clocks a little apart): the job runs once.
func TestTryRunsOnceAcrossHosts(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	ev := filepath.Join(t.TempDir(), "events")
	env := helperEnv("exit", ev, envCode+"=0")
	for i, host := range []string{"a", "b", "c"} {
		code, _, stderr := runBaton(t, env, runArgs(s, "nightly", host, "--try", "--hold", "1m")...)
		want := exitOK
		if i > 0 {
			want = exitNotElected
		}
		if code != want {
			t.Fatalf("host %s: baton run --try = %d; want %d:\n%s", host, code, want, stderr)
		}
		if i > 0 && !strings.Contains(stderr, `another instance leads; not running the command" leader=a`) {
			t.Errorf("host %s: stderr lacks who leads:\n%s", host, stderr)
		}
	}
	if got := starts(t, ev); len(got) != 1 || got[0].identity != "a" {
		t.Fatalf("the job ran %v; want once, on a", got)
	}
	if code, out, _ := runBaton(t, nil, "leader", "--addr", s.Addr(), "--name", "nightly"); code != exitOK || !strings.HasPrefix(out, "a ") {
		t.Fatalf("baton leader during the hold = %d %q; want a", code, out)
	}
	if pttl := s.Int(t, "PTTL", electionKey("nightly")); pttl <= 2000 || pttl > 60000 {
		t.Fatalf("PTTL during the hold = %d; want up to the hold (1m), longer than the ttl", pttl)
	}

	// Without --hold the leadership is released when the job ends, and
	// while it runs a second --try exits 4 at once.
	ev2 := filepath.Join(t.TempDir(), "events2")
	p := startBaton(t, helperEnv("record", ev2), runArgs(s, "hourly", "a", "--try")...)
	waitFor(t, "the job to start", func() bool { return len(starts(t, ev2)) == 1 })
	if code, _, stderr := runBaton(t, helperEnv("record", ev2), runArgs(s, "hourly", "b", "--try")...); code != exitNotElected {
		t.Fatalf("second baton run --try while the first runs = %d; want 4:\n%s", code, stderr)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("baton run --try after SIGTERM = %d; want the command's 0", code)
	}
	if n := s.Int(t, "EXISTS", electionKey("hourly")); n != 0 {
		t.Fatal("the leadership of a stopped --try run was not released")
	}
	if got := starts(t, ev2); len(got) != 1 {
		t.Fatalf("the job started %d times; want 1", len(got))
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := runBaton(t, nil, "--version")
	if code != 0 || !strings.HasPrefix(out, "baton ") || !strings.Contains(out, "go1.") {
		t.Fatalf("baton --version = %d %q", code, out)
	}
}
