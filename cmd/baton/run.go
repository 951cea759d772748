package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/election"
	"github.com/valkey-io/valkey-go"
)

const runHelp = `Usage: baton run --name NAME [flags] -- COMMAND [ARGS...]

Campaign for the leadership of the election NAME and run COMMAND while this
process leads. Start the same line on several hosts: COMMAND runs on exactly
one of them, and another takes over when the leader dies or is cut off.

  - COMMAND gets baton's stdin, stdout and stderr, and in its environment
    BATON_NAME, BATON_IDENTITY and BATON_FENCE (the term's fencing token,
    greater than every earlier term's: pass it to the resources you write).
  - Leadership lost (key expired, deleted, or not renewable within
    --renew-deadline): SIGTERM to COMMAND's process group, SIGKILL after
    --grace; then baton campaigns again and reruns COMMAND when re-elected.
  - COMMAND exits: baton releases the leadership at once (a standby takes
    over within a round trip) and exits with COMMAND's status (128+N when
    signal N killed it). With --rerun it campaigns again instead.
  - SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are forwarded to COMMAND's
    process group. After SIGINT or SIGTERM baton does not rerun: it waits
    for COMMAND (SIGKILL after --grace) and exits with its status. With no
    COMMAND running, SIGINT or SIGTERM stop baton with status 130 or 143.
  - If baton itself dies (even by SIGKILL), COMMAND's group is stopped too.

Examples:
  # One of several hosts runs the nightly report.
  baton run --name nightly-report -- ./report.sh --since yesterday

  # A singleton worker that is restarted whenever it exits, on whichever host leads.
  baton run --name ingest --rerun --identity "$(hostname)" -- ./ingest

  # Fast failover: a crashed leader is replaced within 3s.
  baton run --name sched --ttl 3s -- ./scheduler

  # Through TLS with an ACL user.
  VALKEY_URL=valkeys://baton@valkey.internal:6380 VALKEY_PASSWORD=... \
    baton run --name sched --tls-ca /etc/ssl/valkey-ca.pem -- ./scheduler
`

// checkConfig reports an invalid configuration before baton connects, so
// that bad flags are usage errors whether or not the server is up.
func checkConfig(cfg election.Config) error {
	return cfg.Validate()
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	c := newCommand("run", runHelp)
	var (
		conn                      connFlags
		ttl, renewDeadline, retry time.Duration
		grace                     time.Duration
		identity                  string
		rerun                     bool
		level                     slog.Level
	)
	conn.register(c.fs)
	c.fs.DurationVar(&ttl, "ttl", election.DefaultTTL, "lifetime of the leadership on the server after each renewal: a crashed leader is replaced within it")
	c.fs.DurationVar(&renewDeadline, "renew-deadline", 0, "how long the leader goes on without a successful renewal before it stops COMMAND (default 2/3 of --ttl)")
	c.fs.DurationVar(&retry, "retry-period", 0, "renewal interval, and the standbys' fallback retry pace (default 1/5 of --renew-deadline)")
	c.fs.DurationVar(&grace, "grace", 10*time.Second, "time COMMAND gets to exit after SIGTERM before SIGKILL")
	c.fs.StringVar(&identity, "identity", "", "this candidate's `name` in the leader record and BATON_IDENTITY (default hostname-pid-random)")
	c.fs.BoolVar(&rerun, "rerun", false, "when COMMAND exits, release, campaign again and rerun it instead of exiting")
	c.fs.TextVar(&level, "log-level", slog.LevelInfo, "baton's own log `level` on stderr: debug, info, warn or error")
	if status, ok := c.parse(args, stdout, stderr); !ok {
		return status
	}
	if err := conn.validate(); err != nil {
		return c.usageError(stderr, "%v", err)
	}
	if c.fs.NArg() == 0 {
		return c.usageError(stderr, "no command to run: put it after --")
	}
	if grace < 0 {
		return c.usageError(stderr, "--grace %v must not be negative", grace)
	}
	if !isSet(c.fs, "renew-deadline") {
		renewDeadline = (ttl * 2 / 3).Truncate(time.Millisecond)
	}
	if !isSet(c.fs, "retry-period") {
		retry = (renewDeadline / 5).Truncate(time.Millisecond)
	}
	path, err := exec.LookPath(c.fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "baton: %v\n", err)
		return startStatus(err)
	}
	opt, err := conn.options(os.Getenv)
	if err != nil {
		return c.usageError(stderr, "%v", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	r := &runner{
		path:  path,
		args:  c.fs.Args()[1:],
		name:  conn.name,
		grace: grace,
		rerun: rerun,
		log:   logger,
		stop:  stop,
	}
	cfg := election.Config{
		Name:          conn.name,
		Identity:      identity,
		TTL:           ttl,
		RenewDeadline: renewDeadline,
		RetryPeriod:   retry,
		KeyPrefix:     conn.keyPrefix,
		Logger:        logger,
		Callbacks: callbacks.Callbacks{
			OnElected:   r.lead,
			OnNewLeader: r.newLeader,
		},
	}
	if err := checkConfig(cfg); err != nil {
		return c.usageError(stderr, "%s", strings.ReplaceAll(err.Error(), "\n", "\nbaton: "))
	}
	return r.run(ctx, cfg, &conn, opt, stderr)
}

// run connects, campaigns and runs the command for each term until r.stop
// ends ctx, and returns baton's exit status.
func (r *runner) run(ctx context.Context, cfg election.Config, conn *connFlags, opt valkey.ClientOption, stderr io.Writer) int {
	// From here on SIGINT and SIGTERM stop baton cleanly, and the other
	// signals are not fatal to it.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	var wg sync.WaitGroup
	defer wg.Wait()
	hctx, stopHandling := context.WithCancel(context.Background())
	defer stopHandling() // runs before wg.Wait
	wg.Go(func() { r.handleSignals(hctx, sigs) })

	client, err := connect(ctx, conn, opt)
	if err != nil {
		if ctx.Err() != nil { // SIGINT or SIGTERM while connecting
			return r.status()
		}
		return errorf(stderr, err)
	}
	defer client.Close()
	e, err := election.New(client, cfg)
	if err != nil {
		return errorf(stderr, err)
	}
	r.elector = e
	r.log.Info("baton: campaigning", "name", cfg.Name, "identity", e.Identity(), "ttl", cfg.TTL,
		"renew_deadline", cfg.RenewDeadline, "retry_period", cfg.RetryPeriod)
	_ = e.Run(ctx) // returns ctx.Err() once ctx ends, which only r.stop does
	return r.status()
}

// runner runs the command for each term of `baton run`.
type runner struct {
	path  string
	args  []string
	name  string
	grace time.Duration
	rerun bool
	log   *slog.Logger
	stop  context.CancelFunc // ends Run: the leadership is released if held

	elector *election.Elector // set before Run starts

	mu       sync.Mutex     // guards the fields below
	child    *child         // the running command, until it was reaped
	stopping syscall.Signal // the SIGINT or SIGTERM that stops baton; 0 until then
	exited   bool           // the command exited on its own (or after a forwarded signal) and baton stops
	code     int            // baton's exit status once exited
}

// lead is OnElected: it runs the command for the term.
func (r *runner) lead(ctx context.Context, term callbacks.Term) {
	env := append(withoutBatonVars(os.Environ()),
		"BATON_NAME="+term.Name,
		"BATON_IDENTITY="+term.Identity,
		"BATON_FENCE="+strconv.FormatInt(term.Fence, 10),
	)
	r.mu.Lock()
	if r.stopping != 0 { // a stop signal came as we were elected: Run is ending
		r.mu.Unlock()
		return
	}
	c, err := startChild(r.path, r.args, env, r.grace)
	if err != nil {
		r.exited, r.code = true, exitError
		r.mu.Unlock()
		r.log.Error("baton: cannot start the command", "error", err)
		r.stop()
		return
	}
	r.child = c
	r.mu.Unlock()
	r.log.Info("baton: command started", "pgid", c.pgid, "fence", term.Fence)

	select {
	case <-c.done:
	case <-ctx.Done():
		r.log.Warn("baton: leadership lost; stopping the command", "fence", term.Fence, "grace", r.grace)
		c.terminate(r.grace)
		r.mu.Lock()
		r.child = nil
		stopping := r.stopping != 0
		r.mu.Unlock()
		r.log.Info("baton: command stopped", "status", c.code)
		if stopping { // a stop signal came during the grace period
			r.stop()
		}
		return
	}

	r.mu.Lock()
	r.child = nil
	finish := r.stopping != 0 || !r.rerun
	if finish {
		r.exited, r.code = true, c.code
	}
	r.mu.Unlock()
	if finish {
		r.log.Info("baton: command exited; releasing the leadership", "status", c.code)
		r.stop()
		return
	}
	r.log.Info("baton: command exited; releasing the leadership and campaigning again", "status", c.code)
	_ = r.elector.Resign(ctx) // with OnElected's ctx: starts the step-down and returns
}

// newLeader is OnNewLeader.
func (r *runner) newLeader(l callbacks.Leader) {
	if l.None() {
		r.log.Info("baton: no leader", "name", r.name)
		return
	}
	r.log.Info("baton: leader", "name", r.name, "leader", l.Identity, "fence", l.Fence)
}

// handleSignals forwards signals to the running command; SIGINT and SIGTERM
// also make baton stop. It returns when ctx ends.
func (r *runner) handleSignals(ctx context.Context, sigs <-chan os.Signal) {
	for {
		var sig syscall.Signal
		select {
		case <-ctx.Done():
			return
		case s := <-sigs:
			sig = s.(syscall.Signal)
		}
		stop := sig == syscall.SIGINT || sig == syscall.SIGTERM
		r.mu.Lock()
		c := r.child
		if stop && r.stopping == 0 {
			r.stopping = sig
		}
		r.mu.Unlock()
		switch {
		case c != nil:
			r.log.Debug("baton: forwarding signal to the command", "signal", sig)
			c.signal(sig)
			if stop {
				c.killAfter(r.grace)
			}
		case stop:
			r.log.Info("baton: stopping", "signal", sig)
			r.stop()
		default:
			r.log.Debug("baton: no command running; signal ignored", "signal", sig)
		}
	}
}

// status is baton's exit status once Run has returned.
func (r *runner) status() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.exited:
		return r.code
	case r.stopping != 0:
		return 128 + int(r.stopping)
	}
	return exitError
}

// withoutBatonVars drops BATON_NAME, BATON_IDENTITY and BATON_FENCE
// inherited from an outer baton, so the command sees this term's only.
func withoutBatonVars(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "BATON_NAME", "BATON_IDENTITY", "BATON_FENCE":
		default:
			out = append(out, kv)
		}
	}
	return out
}
