package valkeytest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

const (
	binary = "valkey-server"

	// missingBinary is the whole fatal message when valkey-server is not
	// installed; it names the fix, because these tests never skip.
	missingBinary = "valkey-server not found on PATH: run scripts/ensure-valkey.sh " +
		"(Debian: apt-get install -t bookworm-backports valkey-server valkey-tools)"

	startTimeout    = 10 * time.Second       // per launch, until the server answers
	startAttempts   = 3                      // fresh ports tried by Start
	restartAttempts = 5                      // launches on the same port tried by Restart
	restartBackoff  = 100 * time.Millisecond // between Restart attempts, for a port in TIME_WAIT
	pollInterval    = 10 * time.Millisecond  // between readiness probes while booting
	probeTimeout    = time.Second            // one readiness probe
	doTimeout       = 10 * time.Second       // one command sent by Server.Do
	logTailLines    = 20                     // log lines quoted in a start failure
)

type config struct {
	args []string

	// Set only by this package's topologies.
	bin        string // the binary to run instead of valkey-server
	missing    string // the fatal message when bin is not on PATH
	conf       string // the text of a config file, written to the server's directory and passed first
	clusterBus bool   // pick a second free port for the cluster bus
}

// Option configures a Server started by Start.
type Option func(*config)

// WithArgs appends extra valkey-server command-line arguments, for example
// WithArgs("--maxmemory", "10mb"). They follow the package's own arguments, so
// they can override them; they are reused by Restart.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is a valkey-server process owned by one test, or a valkey-sentinel
// one in a SentinelGroup. It is safe for concurrent use; Kill, Restart,
// Pause and Resume are serialised.
type Server struct {
	bin      string
	dir      string
	logPath  string
	confPath string   // "" unless the server runs from a config file
	args     []string // extra arguments from WithArgs
	port     int      // fixed once Start returns
	busPort  int      // the cluster bus port, 0 unless the server is a cluster node; fixed once Start returns

	mu     sync.Mutex // serialises lifecycle changes; guards proc and paused; taken before clientMu
	proc   *process   // nil once killed
	paused bool

	clientMu sync.Mutex    // guards client
	client   valkey.Client // used by Do; created on first use, dropped by Kill and Restart
}

// process is one run of valkey-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait has returned
	err  error         // cmd.Wait's result; read only after done is closed
}

// Start starts a valkey-server on a free loopback port and waits until it
// answers. The server has persistence off, protected mode off, its own
// t.TempDir as working directory, and logs warnings to valkey.log there. It is
// stopped in tb.Cleanup, so a paused server is never left behind.
//
// If the chosen port is taken before the server binds it, Start tries another
// one, up to 3 times, then fails the test quoting the end of the log. A missing
// valkey-server binary fails the test too; it is never skipped.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	cfg := config{bin: binary, missing: missingBinary}
	for _, opt := range opts {
		opt(&cfg)
	}
	bin, err := exec.LookPath(cfg.bin)
	if err != nil {
		tb.Fatal(cfg.missing)
	}
	dir := tb.TempDir()
	s := &Server{bin: bin, dir: dir, logPath: filepath.Join(dir, "valkey.log"), args: cfg.args}
	if cfg.conf != "" {
		// In the server's directory, so that a server that rewrites its
		// config file (Sentinel does) can.
		s.confPath = filepath.Join(dir, "valkey.conf")
		if err := os.WriteFile(s.confPath, []byte(cfg.conf), 0o644); err != nil {
			tb.Fatalf("valkeytest: write config file: %v", err)
		}
	}
	tb.Cleanup(s.stop)

	for attempt := 1; ; attempt++ {
		port, busPort, err := freePorts(cfg.clusterBus)
		if err != nil {
			tb.Fatalf("valkeytest: pick a free port: %v", err)
		}
		s.busPort = busPort // read by launch
		p, err := s.launch(port)
		if err == nil {
			s.port, s.proc = port, p
			return s
		}
		if attempt == startAttempts {
			tb.Fatalf("valkeytest: start valkey-server (%d attempts): %v\n--- tail of %s ---\n%s",
				attempt, err, s.logPath, s.logTail())
		}
	}
}

// Addr returns the server's address, "127.0.0.1:PORT".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Port returns the server's TCP port. It does not change across Restart.
func (s *Server) Port() int {
	return s.port
}

// ClientOption returns the options for a valkey-go client of this server:
// InitAddress, DisableCache (so no client tracking is needed),
// ForceSingleClient (so a client of a cluster node talks to that node only)
// and DisableRetry. valkey-go v1.0.79 retries read-only commands after a broken
// connection and can then recycle a command its old writer still reads: a
// data race that -race reports in fault tests. Without retries a command on a
// broken connection fails once, which is what fault tests want to see anyway.
func (s *Server) ClientOption() valkey.ClientOption {
	return s.ClientOptionVia(s.Addr())
}

// ClientOptionVia returns ClientOption with addr as the only address, for a
// client that reaches the server through a Proxy.
func (s *Server) ClientOptionVia(addr string) valkey.ClientOption {
	return valkey.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true, DisableRetry: true}
}

// Client returns a new client built from ClientOption and closes it in
// tb.Cleanup. It fails the test if the client cannot connect.
func (s *Server) Client(tb testing.TB) valkey.Client {
	tb.Helper()
	c, err := valkey.NewClient(s.ClientOption())
	if err != nil {
		tb.Fatalf("valkeytest: new client for %s: %v", s.Addr(), err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Kill sends SIGKILL to the server and waits for it to exit, simulating a
// crash. Killing a killed server does nothing.
func (s *Server) Kill(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

// Restart kills the server if it is running and starts a new, empty one on
// the same port with the same arguments, then waits until it answers.
// Clients made before keep their address and valkey-go reconnects them, but
// their first command after Restart can still fail once with EOF if it was
// written to the dead connection (valkey-go retries only read-only commands).
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.restart(tb)
}

// restart is Restart with extra arguments for this run only, after those
// of Start.
func (s *Server) restart(tb testing.TB, extra ...string) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
	for attempt := 1; ; attempt++ {
		p, err := s.launch(s.port, extra...)
		if err == nil {
			s.proc = p
			return
		}
		if attempt == restartAttempts {
			tb.Fatalf("valkeytest: restart valkey-server on port %d (%d attempts): %v\n--- tail of %s ---\n%s",
				s.port, attempt, err, s.logPath, s.logTail())
		}
		time.Sleep(restartBackoff) // give a port in TIME_WAIT time to free up
	}
}

// Pause stops the server with SIGSTOP and returns once it is stopped: its
// connections stay open but nothing is answered until Resume.
func (s *Server) Pause(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		tb.Fatal("valkeytest: pause: server is not running")
	}
	if err := s.proc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		tb.Fatalf("valkeytest: pause: %v", err)
	}
	if err := AwaitStopped(s.proc.cmd.Process.Pid, s.proc.done); err != nil {
		tb.Fatalf("valkeytest: pause: %v", err)
	}
	s.paused = true
}

// Resume continues a paused server with SIGCONT. Resuming a server that is
// not paused does nothing.
func (s *Server) Resume(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || !s.paused {
		return
	}
	if err := s.proc.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		tb.Fatalf("valkeytest: resume: %v", err)
	}
	s.paused = false
}

// Do sends one raw command, such as Do(t, "SCRIPT", "FLUSH"), on a client the
// Server keeps for itself and returns the result, Valkey error replies
// included. It fails the test only if the command could not be carried out
// (connection refused, timeout after 10s).
func (s *Server) Do(tb testing.TB, args ...string) valkey.ValkeyResult {
	tb.Helper()
	if len(args) == 0 {
		tb.Fatal("valkeytest: Do needs a command")
	}
	res := s.try(args...)
	if err := res.NonValkeyError(); err != nil {
		tb.Fatalf("valkeytest: %s on %s: %v", strings.Join(args, " "), s.Addr(), err)
	}
	return res
}

// try is Do without tb, for polling a server that may be on its way down or
// up: a failure to carry out the command is the result's error.
func (s *Server) try(args ...string) valkey.ValkeyResult {
	c, err := s.ownClient()
	if err != nil {
		return valkey.NewErrorResult(err)
	}
	// Not tb.Context: that is already cancelled when Cleanup functions run.
	ctx, cancel := context.WithTimeout(context.Background(), doTimeout)
	defer cancel()
	return c.Do(ctx, c.B().Arbitrary(args[0]).Args(args[1:]...).Build())
}

// running reports whether the process is up and not paused, so that a
// command sent to it is answered.
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.paused
}

// Info returns the fields of one INFO section, such as "stats", as key/value
// pairs.
func (s *Server) Info(tb testing.TB, section string) map[string]string {
	tb.Helper()
	text, err := s.Do(tb, "INFO", section).ToString()
	if err != nil {
		tb.Fatalf("valkeytest: INFO %s: %v", section, err)
	}
	return parseInfo(text)
}

// CommandsProcessed returns total_commands_processed from INFO stats. The
// INFO command that reads it is not yet counted.
func (s *Server) CommandsProcessed(tb testing.TB) int64 {
	tb.Helper()
	v := s.Info(tb, "stats")["total_commands_processed"]
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		tb.Fatalf("valkeytest: total_commands_processed %q: %v", v, err)
	}
	return n
}

// String runs one raw command and returns its string reply, "" for a nil
// reply. Any error, a Valkey error reply included, fails tb.
func (s *Server) String(tb testing.TB, args ...string) string {
	tb.Helper()
	v, err := s.Do(tb, args...).ToString()
	if valkey.IsValkeyNil(err) {
		return ""
	}
	if err != nil {
		tb.Fatalf("valkeytest: %s = %v", strings.Join(args, " "), err)
	}
	return v
}

// Int runs one raw command and returns its integer reply. Any error, a
// Valkey error reply included, fails tb.
func (s *Server) Int(tb testing.TB, args ...string) int64 {
	tb.Helper()
	v, err := s.Do(tb, args...).AsInt64()
	if err != nil {
		tb.Fatalf("valkeytest: %s = %v", strings.Join(args, " "), err)
	}
	return v
}

// CommandCalls returns how many times the server ran the named commands,
// added up (INFO commandstats, lower-case names such as "evalsha"); commands
// run inside scripts count too.
func (s *Server) CommandCalls(tb testing.TB, cmds ...string) int64 {
	tb.Helper()
	stats := s.Info(tb, "commandstats")
	var n int64
	for _, cmd := range cmds {
		for f := range strings.SplitSeq(stats["cmdstat_"+cmd], ",") { // calls=N,usec=...
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				calls, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					tb.Fatalf("valkeytest: INFO commandstats %s: %q", cmd, stats["cmdstat_"+cmd])
				}
				n += calls
			}
		}
	}
	return n
}

// Subscribers returns how many subscribers the server counts on channel
// (PUBSUB NUMSUB).
func (s *Server) Subscribers(tb testing.TB, channel string) int64 {
	tb.Helper()
	vals, err := s.Do(tb, "PUBSUB", "NUMSUB", channel).ToArray()
	if err != nil || len(vals) != 2 {
		tb.Fatalf("valkeytest: PUBSUB NUMSUB %s = %v, %v", channel, vals, err)
	}
	n, err := vals[1].AsInt64()
	if err != nil {
		tb.Fatalf("valkeytest: PUBSUB NUMSUB %s count: %v", channel, err)
	}
	return n
}

func (s *Server) ownClient() (valkey.Client, error) {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	if s.client == nil {
		c, err := valkey.NewClient(s.ClientOption())
		if err != nil {
			return nil, fmt.Errorf("valkeytest: new client for %s: %w", s.Addr(), err)
		}
		s.client = c
	}
	return s.client, nil
}

// stop is the Cleanup registered by Start.
func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

// killLocked kills the process and drops the client Do uses. valkey-go
// retries only read-only commands after a connection error, and Do's
// arbitrary commands count as writes, so a client that still held a
// connection to the dead process would fail the first Do after Restart.
func (s *Server) killLocked() {
	s.clientMu.Lock()
	if s.client != nil {
		s.client.Close()
		s.client = nil
	}
	s.clientMu.Unlock()
	if s.proc != nil {
		s.proc.kill()
		s.proc, s.paused = nil, false
	}
}

// launch starts valkey-server on port, with extra after the arguments of
// Start, and waits until it answers; on failure the process is killed and
// reaped before launch returns.
func (s *Server) launch(port int, extra ...string) (*process, error) {
	var args []string
	if s.confPath != "" {
		args = append(args, s.confPath) // the config file must come first
	}
	args = append(args,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--protected-mode", "no",
		"--loglevel", "warning",
		"--logfile", s.logPath,
	)
	if s.busPort != 0 {
		args = append(args, "--cluster-port", strconv.Itoa(s.busPort))
	}
	args = append(append(args, s.args...), extra...)
	cmd := exec.Command(s.bin, args...)
	cmd.SysProcAttr = SysProcAttr()
	// Errors before the log file is open (a bad argument) go to stderr.
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("valkeytest: open log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("valkeytest: run %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := p.awaitReady(net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

// awaitReady polls addr until this process answers there. It asks for the
// server's pid rather than sending PING, so another server that won the port
// race is not taken for this one.
func (p *process) awaitReady(addr string) error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		pid, err := serverPID(addr)
		if err == nil {
			if pid == p.cmd.Process.Pid {
				return nil
			}
			err = fmt.Errorf("valkeytest: %s is served by another process (pid %d)", addr, pid)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("valkeytest: %s not ready after %v: %w", addr, startTimeout, err)
		}
		select {
		case <-p.done:
			return fmt.Errorf("valkeytest: valkey-server exited while starting on %s: %w", addr, p.err)
		case <-tick.C:
		}
	}
}

// kill resumes the process in case it is stopped, kills it and reaps it.
func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // fails only if it has exited
	_ = p.cmd.Process.Kill()
	<-p.done
}

// serverPID sends INFO server over a bare RESP2 connection and returns the
// process_id it reports.
func serverPID(addr string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(conn, "*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"); err != nil {
		return 0, err
	}
	r := bufio.NewReader(conn)
	header, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	header = strings.TrimRight(header, "\r\n")
	if !strings.HasPrefix(header, "$") {
		return 0, fmt.Errorf("valkeytest: INFO server replied %q", header)
	}
	n, err := strconv.Atoi(header[1:])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("valkeytest: INFO server replied %q", header)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(parseInfo(string(body))["process_id"])
	if err != nil {
		return 0, fmt.Errorf("valkeytest: INFO server process_id: %w", err)
	}
	return pid, nil
}

// parseInfo turns INFO or CLUSTER INFO output ("# Section" headers and
// "key:value" lines) into a map.
func parseInfo(text string) map[string]string {
	m := make(map[string]string)
	for line := range strings.Lines(trimVerbatim(text)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// trimVerbatim removes the format prefix valkey-go leaves on a RESP3
// verbatim string reply, such as CLUSTER INFO's "txt:".
func trimVerbatim(s string) string {
	return strings.TrimPrefix(s, "txt:")
}

// logTail returns the last lines of the server log, for failure messages.
func (s *Server) logTail() string {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePorts returns a free port and, if bus is set, a second, different one
// for the cluster bus, whose default (port+10000) can be taken or above 65535.
func freePorts(bus bool) (port, busPort int, err error) {
	if port, err = FreePort(); err != nil || !bus {
		return port, 0, err
	}
	for busPort == 0 || busPort == port {
		if busPort, err = FreePort(); err != nil {
			return 0, 0, err
		}
	}
	return port, busPort, nil
}

// FreePort asks the kernel for a free loopback port. The port is free only
// until someone else takes it, hence the retries in Start. It needs no
// testing.TB: the bench program, a module of its own, uses it too (Go's
// internal rule goes by import path, and bench's is under this module's).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
