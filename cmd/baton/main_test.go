package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"go.uber.org/goleak"
)

// batonBin is the baton binary built once by TestMain.
var batonBin string

// The test binary doubles as the command that baton runs: with
// BATON_TEST_HELPER set, TestMain runs helperMain instead of the tests.
const (
	envHelper = "BATON_TEST_HELPER" // record, ignore-term or exit
	envEvents = "BATON_TEST_EVENTS" // file the helper appends its events to
	envCode   = "BATON_TEST_CODE"   // exit status in mode exit
	envSpawn  = "BATON_TEST_SPAWN"  // "1": start a grandchild (sleep 300) in the group
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envHelper); mode != "" {
		os.Exit(helperMain(mode))
	}
	dir, err := os.MkdirTemp("", "baton-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	batonBin = filepath.Join(dir, "baton")
	args := []string{"build", "-o", batonBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if mode := testing.CoverMode(); mode != "" {
		// The tests run the binary, not this package's code in process:
		// without its own coverage the package would report ~1%. It
		// writes to coverDir at each exit, and TestMain adds that to this
		// package's profile. Only under -cover, so make test stays fast.
		coverDir = filepath.Join(dir, "cover")
		if err := os.Mkdir(coverDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		args = append(args, "-cover", "-covermode="+mode, "-coverpkg="+batonPkg)
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build baton:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if err := addBinaryCoverage(); err != nil {
			fmt.Fprintln(os.Stderr, "baton's coverage:", err)
			if code == 0 {
				code = 1
			}
		}
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// batonPkg is the package whose coverage the binary reports.
const batonPkg = "github.com/baton-dev/baton/cmd/baton"

// coverDir is the GOCOVERDIR of the baton processes under -cover, or "".
var coverDir string

// addBinaryCoverage appends what the baton processes covered to this
// package's -coverprofile, which go test merges into the file it was given
// (blocks counted twice add up). Without -coverprofile there is nothing to
// add to: go test -cover's percentage is the test binary's own.
func addBinaryCoverage() error {
	f := flag.Lookup("test.coverprofile")
	if coverDir == "" || f == nil || f.Value.String() == "" {
		return nil
	}
	profile := f.Value.String()
	if dir := flag.Lookup("test.outputdir"); dir != nil && dir.Value.String() != "" && !filepath.IsAbs(profile) {
		profile = filepath.Join(dir.Value.String(), profile)
	}
	text := filepath.Join(coverDir, "profile.txt")
	out, err := exec.Command("go", "tool", "covdata", "textfmt", "-i="+coverDir, "-pkg="+batonPkg, "-o="+text).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool covdata textfmt: %v: %s", err, out)
	}
	data, err := os.ReadFile(text)
	if err != nil {
		return err
	}
	_, lines, _ := strings.Cut(string(data), "\n") // drop the "mode:" line: the profile has one
	if lines == "" {
		return nil
	}
	w, err := os.OpenFile(profile, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := w.WriteString(lines); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// helperMain is the command under test. It appends one line per event to
// the file named by BATON_TEST_EVENTS: "start IDENTITY FENCE PID" first,
// then "grandchild PID", "usr1", "hup", "term", "int".
func helperMain(mode string) int {
	record := func(format string, args ...any) {
		f, err := os.OpenFile(os.Getenv(envEvents), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(f, format+"\n", args...)
		f.Close()
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	record("start %s %s %d", os.Getenv("BATON_IDENTITY"), os.Getenv("BATON_FENCE"), os.Getpid())
	if os.Getenv(envSpawn) == "1" {
		gc := exec.Command("sleep", "300")
		if err := gc.Start(); err != nil {
			panic(err)
		}
		record("grandchild %d", gc.Process.Pid)
	}
	if mode == "exit" {
		code, _ := strconv.Atoi(os.Getenv(envCode))
		return code
	}
	for sig := range sigs {
		switch sig {
		case syscall.SIGUSR1:
			record("usr1")
		case syscall.SIGHUP:
			record("hup")
		case syscall.SIGINT:
			record("int")
			return 0
		case syscall.SIGTERM:
			record("term")
			if mode != "ignore-term" {
				return 0
			}
		}
	}
	return 0
}

// proc is a baton process started by a test.
type proc struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed once cmd.Wait returned
	code   int           // exit status, shell style; read after done
}

// startBaton starts baton with args and the helper's variables in its
// environment (extra entries as KEY=VALUE). It kills and reaps it in
// t.Cleanup if the test did not wait for it.
func startBaton(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(batonBin, args...)
	// The race detector otherwise sleeps a second at every exit.
	cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0"), env...)
	if coverDir != "" {
		cmd.Env = append(cmd.Env, "GOCOVERDIR="+coverDir)
	}
	p := &proc{cmd: cmd, stdout: new(syncBuffer), stderr: new(syncBuffer), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start baton: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		p.code = exitStatus(cmd.ProcessState)
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
			t.Error("the race detector found a race in baton")
		}
		if t.Failed() {
			t.Logf("baton %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout, p.stderr)
		}
	})
	return p
}

// runBaton runs baton to completion and returns its status and output.
func runBaton(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := startBaton(t, env, args...)
	return p.wait(t), p.stdout.String(), p.stderr.String()
}

// wait waits for baton to exit and returns its status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(30 * time.Second):
		t.Fatalf("baton did not exit within 30s\nstderr:\n%s", p.stderr)
		return 0
	}
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to baton: %v", sig, err)
	}
}

// helperEnv returns the environment that makes baton's command the helper
// in mode, recording to events.
func helperEnv(mode, events string, extra ...string) []string {
	return append([]string{envHelper + "=" + mode, envEvents + "=" + events}, extra...)
}

// helperCmd is the command line that runs the helper.
func helperCmd() []string { return []string{"--", os.Args[0]} }

// runArgs returns the arguments of `baton run` on s with a short TTL.
func runArgs(s *valkeytest.Server, name, identity string, extra ...string) []string {
	args := []string{"run", "--addr", s.Addr(), "--name", name, "--identity", identity, "--ttl", "2s", "--log-level", "debug"}
	return append(append(args, extra...), helperCmd()...)
}

// waitFor polls cond every 5ms until it holds, failing the test after 15s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 15s waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// events returns the lines the helpers appended to file.
func events(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// hasEvent reports whether file has a line starting with prefix.
func hasEvent(t *testing.T, file, prefix string) bool {
	t.Helper()
	for _, e := range events(t, file) {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

// started is a parsed "start" event.
type started struct {
	identity string
	fence    int64
	pid      int
}

// starts returns the helper's "start" events in order.
func starts(t *testing.T, file string) []started {
	t.Helper()
	var out []started
	for _, e := range events(t, file) {
		f := strings.Fields(e)
		if len(f) != 4 || f[0] != "start" {
			continue
		}
		fence, err1 := strconv.ParseInt(f[2], 10, 64)
		pid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			t.Fatalf("bad start event %q", e)
		}
		out = append(out, started{identity: f[1], fence: fence, pid: pid})
	}
	return out
}

// eventPID returns the pid of the first "NAME PID" event.
func eventPID(t *testing.T, file, name string) int {
	t.Helper()
	for _, e := range events(t, file) {
		if k, v, ok := strings.Cut(e, " "); ok && k == name {
			pid, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("bad event %q", e)
			}
			return pid
		}
	}
	t.Fatalf("no %q event in %v", name, events(t, file))
	return 0
}

// gone reports whether process pid has exited (a zombie counts as exited:
// its parent may be a reaper that is slow or absent in a container).
func gone(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of exec and
// reads of the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
