package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
)

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	const down = "127.0.0.1:1" // checks happen before connecting
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no command", nil, "Usage:"},
		{"unknown command", []string{"lead"}, `unknown command "lead"`},
		{"unknown flag", []string{"leader", "--name", "x", "--bogus"}, "flag provided but not defined: -bogus"},
		{"bad duration", []string{"run", "--name", "x", "--ttl", "soon", "--", "true"}, `invalid value "soon" for flag -ttl`},
		{"missing name", []string{"leader", "--addr", down}, "--name is required"},
		{"extra argument", []string{"leader", "--addr", down, "--name", "x", "y"}, `unexpected argument "y"`},
		{"no command to run", []string{"run", "--addr", down, "--name", "x"}, "no command to run"},
		{"bad address", []string{"leader", "--addr", "localhost", "--name", "x"}, `address "localhost" is not host:port`},
		{"renew deadline above ttl", []string{"run", "--addr", down, "--name", "x", "--ttl", "2s", "--renew-deadline", "3s", "--", "true"},
			"election: renew deadline 3s must be less than ttl 2s"},
		{"retry period too long", []string{"run", "--addr", down, "--name", "x", "--renew-deadline", "2s", "--retry-period", "2s", "--", "true"},
			"must be less than renew deadline 2s"},
		{"cert without key", []string{"leader", "--addr", down, "--name", "x", "--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{"missing CA file", []string{"leader", "--addr", down, "--name", "x", "--tls-ca", "/nonexistent/ca.pem"}, "--tls-ca: open /nonexistent/ca.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runBaton(t, nil, tc.args...)
			if code != exitUsage || stdout != "" || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("baton %s = %d, stdout %q, stderr %q; want 2 and stderr containing %q",
					strings.Join(tc.args, " "), code, stdout, stderr, tc.stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"help"}, {"run", "--help"}, {"help", "run"}, {"leader", "-h"}, {"watch", "--help"}} {
		code, stdout, stderr := runBaton(t, nil, args...)
		if code != 0 || !strings.Contains(stdout, "Usage: baton") && !strings.Contains(stdout, "Usage:\n  baton") || stderr != "" {
			t.Errorf("baton %s = %d, stdout %q, stderr %q; want 0 and the help on stdout", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	_, stdout, _ := runBaton(t, nil, "run", "--help")
	for _, want := range []string{"Examples:", "-grace", "BATON_FENCE", "-sentinel-master", "-tls-ca"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("baton run --help lacks %q", want)
		}
	}
}

func TestUnreachableServer(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"leader", "--name", "x", "--addr", "127.0.0.1:1"},
		{"watch", "--name", "x", "--addr", "127.0.0.1:1"},
		{"run", "--name", "x", "--addr", "127.0.0.1:1", "--", "true"},
	} {
		code, _, stderr := runBaton(t, nil, args...)
		if want := "baton: cannot reach valkey at 127.0.0.1:1: connection refused\n"; code != exitError || stderr != want {
			t.Errorf("baton %s = %d %q; want 1 %q", args[0], code, stderr, want)
		}
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	// Set after start: valkeytest's readiness probe does not authenticate.
	// The connection Do uses stays authenticated.
	s := valkeytest.Start(t)
	s.Do(t, "CONFIG", "SET", "requirepass", "s3cret")
	args := []string{"leader", "--name", "x", "--addr", s.Addr()}
	for _, tc := range []struct {
		name   string
		env    []string
		code   int
		stderr string
	}{
		{"no password", nil, 1, "requires a password: set VALKEY_PASSWORD"},
		{"wrong password", []string{"VALKEY_PASSWORD=nope"}, 1, `refused the credentials of user "default": WRONGPASS`},
		{"password", []string{"VALKEY_PASSWORD=s3cret"}, exitNoLeader, ""},
		{"URL", []string{"VALKEY_URL=valkey://:s3cret@" + s.Addr()}, exitNoLeader, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := args
			if strings.HasPrefix(tc.name, "URL") {
				a = args[:3] // the address comes from the URL
			}
			code, _, stderr := runBaton(t, tc.env, a...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("baton leader = %d %q; want %d and stderr containing %q", code, stderr, tc.code, tc.stderr)
			}
		})
	}
}

// TestMinimalACL runs baton as a user with only the permissions that
// docs/operations.md lists.
func TestMinimalACL(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	s.Do(t, "ACL", "SETUSER", "baton", "on", ">pw", "resetkeys", "~baton:*", "~{baton:*", "resetchannels", "&{baton:*",
		"-@all", "+ping", "+eval", "+evalsha", "+get", "+set", "+del", "+exists", "+pttl", "+pexpire", "+time",
		"+publish", "+subscribe", "+multi", "+exec", "+lpop", "+rpush", "+lpush", "+lpos", "+lrem", "+incr", "+persist")
	env := []string{"VALKEY_USERNAME=baton", "VALKEY_PASSWORD=pw"}
	ev := filepath.Join(t.TempDir(), "events")

	w := startBaton(t, env, "watch", "--addr", s.Addr(), "--name", "acl")
	p := startBaton(t, append(helperEnv("record", ev), env...), runArgs(s, "acl", "limited")...)
	waitFor(t, "the command to start", func() bool { return len(starts(t, ev)) == 1 })
	if code, out, stderr := runBaton(t, env, "leader", "--addr", s.Addr(), "--name", "acl"); code != 0 || !strings.HasPrefix(out, "limited ") {
		t.Fatalf("baton leader as the limited user = %d %q %q", code, out, stderr)
	}
	waitFor(t, "watch to see the leader", func() bool { return strings.Contains(w.stdout.String(), " limited fence=") })
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("baton run exited %d; want 0", code)
	}
	w.signal(t, syscall.SIGTERM)
	w.wait(t)
	if strings.Contains(p.stderr.String()+w.stderr.String(), "NOPERM") {
		t.Fatalf("a command was refused:\n%s\n%s", p.stderr, w.stderr)
	}
	if n, _ := s.Do(t, "EXISTS", electionKey("acl")).AsInt64(); n != 0 {
		t.Fatalf("the leadership was not released")
	}
}

func TestAddrFromURL(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	code, out, stderr := runBaton(t, []string{"VALKEY_URL=valkey://" + s.Addr()}, "leader", "--name", "x")
	if code != exitNoLeader || out != "no leader\n" {
		t.Fatalf("baton leader with VALKEY_URL = %d %q %q; want 3", code, out, stderr)
	}
	code, _, stderr = runBaton(t, []string{"VALKEY_URL=valkey://127.0.0.1:1"}, "leader", "--name", "x", "--addr", s.Addr())
	if code != exitNoLeader {
		t.Fatalf("--addr over VALKEY_URL = %d %q; want 3", code, stderr)
	}
	code, _, stderr = runBaton(t, []string{"VALKEY_URL=http://x"}, "leader", "--name", "x")
	if code != exitUsage || !strings.Contains(stderr, "VALKEY_URL: valkey: invalid URL scheme: http") {
		t.Fatalf("bad VALKEY_URL = %d %q; want 2", code, stderr)
	}
	for _, u := range []string{s.Addr(), "localhost:6379"} {
		code, _, stderr = runBaton(t, []string{"VALKEY_URL=" + u}, "leader", "--name", "x")
		if want := "has no scheme: want valkey://host:port"; code != exitUsage || !strings.Contains(stderr, want) {
			t.Errorf("VALKEY_URL=%s = %d %q; want 2 and %q", u, code, stderr, want)
		}
	}
}

// TestNotAValkeyServer: an HTTP server at --addr is named as not a Valkey
// server, not as valkey-go's "received unknown message type".
func TestNotAValkeyServer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	code, _, stderr := runBaton(t, nil, "leader", "--name", "x", "--addr", addr)
	want := "baton: valkey at " + addr + " is not a Valkey server: it answered starting with 'H', as an HTTP server does"
	if code != exitError || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("baton leader at an HTTP server = %d %q; want 1 and one line starting %q", code, stderr, want)
	}
}

// TestTLSToAPlaintextPort: the handshake never gets an answer from a
// plaintext server; baton finds out with a plaintext PING and says so well
// before the connect timeout, with the fix.
func TestTLSToAPlaintextPort(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	start := time.Now()
	code, _, stderr := runBaton(t, nil, "leader", "--name", "x", "--addr", s.Addr(), "--tls", "--connect-timeout", "30s")
	took := time.Since(start)
	want := "baton: TLS with valkey at " + s.Addr() + " failed: the server does not speak TLS there: it answered a plaintext PING; drop --tls"
	if code != exitError || !strings.HasPrefix(stderr, want) {
		t.Fatalf("baton leader --tls at a plaintext port = %d %q; want 1 and %q", code, stderr, want)
	}
	if took > 15*time.Second {
		t.Errorf("baton took %v to report it; want far less than the 30s connect timeout", took)
	}
}

func TestClusterRequired(t *testing.T) {
	t.Parallel()
	s := valkeytest.Start(t)
	code, _, stderr := runBaton(t, nil, "leader", "--name", "x", "--addr", s.Addr(), "--cluster")
	if code != exitError || !strings.Contains(stderr, "is not a cluster") {
		t.Fatalf("baton leader --cluster on a standalone server = %d %q; want 1", code, stderr)
	}
}
