package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/valkey-io/valkey-go"
)

// server is a valkey-server process started for the run, on a free loopback
// port, without persistence. internal/valkeytest does the same for tests,
// but its Start reports through a testing.TB and ends the server with the
// test; the bench is a program, so it shares only valkeytest.FreePort.
type server struct {
	addr  string
	cmd   *exec.Cmd
	dir   string
	done  chan struct{} // closed once the process has exited
	admin valkey.Client // INFO, raw SETs: not counted as any implementation's
}

const serverStartTimeout = 10 * time.Second

// startServer runs valkey-server and waits until it answers PING.
func startServer() (*server, error) {
	bin, err := exec.LookPath("valkey-server")
	if err != nil {
		return nil, errors.New("valkey-server not found on PATH: run scripts/ensure-valkey.sh")
	}
	port, err := valkeytest.FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "baton-bench-")
	if err != nil {
		return nil, err
	}
	s := &server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, done: make(chan struct{})}
	s.cmd = exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--dir", dir,
		"--loglevel", "warning",
	)
	s.cmd.SysProcAttr = sysProcAttr()
	var out strings.Builder
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start valkey-server: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()

	deadline := time.Now().Add(serverStartTimeout)
	for {
		select {
		case <-s.done:
			s.stop()
			return nil, fmt.Errorf("valkey-server exited while starting: %s", out.String())
		default:
		}
		c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{s.addr}, DisableCache: true})
		if err == nil {
			s.admin = c
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("valkey-server on %s not ready after %v: %w", s.addr, serverStartTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server and waits for it to exit.
func (s *server) stop() {
	if s.admin != nil {
		s.admin.Close()
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	os.RemoveAll(s.dir)
}

// do sends one raw command on the admin connection.
func (s *server) do(ctx context.Context, args ...string) valkey.ValkeyResult {
	return s.admin.Do(ctx, s.admin.B().Arbitrary(args[0]).Args(args[1:]...).Build())
}

// info returns one field of an INFO section.
func (s *server) info(ctx context.Context, section, field string) (string, error) {
	text, err := s.do(ctx, "INFO", section).ToString()
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(text) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return v, nil
		}
	}
	return "", fmt.Errorf("INFO %s has no %s", section, field)
}

// commands returns total_commands_processed; commands run by scripts count.
// The INFO that reads it is counted in the next reading.
func (s *server) commands(ctx context.Context) (int64, error) {
	v, err := s.info(ctx, "stats", "total_commands_processed")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// clients returns connected_clients: the admin's connection included.
func (s *server) clients(ctx context.Context) (int64, error) {
	v, err := s.info(ctx, "clients", "connected_clients")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// awaitClients waits until the server counts at most n client connections
// (the admin's included): the connections of closed instances are gone, so
// that the next scenario starts without them. Closing a client does not
// wait for the server to notice.
func (s *server) awaitClients(ctx context.Context, n int64) error {
	deadline := time.Now().Add(closeLimit)
	for {
		c, err := s.clients(ctx)
		if err != nil {
			return err
		}
		if c <= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d client connections still open %v after closing, want at most %d", c, closeLimit, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closeLimit bounds how long awaitClients waits.
const closeLimit = 5 * time.Second
