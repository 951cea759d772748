package main

import (
	"context"
	"flag"
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
    signal N killed it). With --rerun it campaigns again instead; a
    COMMAND that keeps failing at once is rerun after growing pauses
    (2, 4, 8... retry periods, up to a minute).
  - --try: one attempt only; if another instance leads, exit 4 at once.
    With --hold D the leadership is kept D after COMMAND exits by itself,
    so that a standby starting later finds it taken: run-once for cron.
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

  # Cron on three hosts at 02:00: the report runs once, on the first host to
  # try; the others exit 4, also when their clocks run a few minutes late.
  baton run --try --hold 1h --name nightly-report -- ./report.sh

  # Through TLS with an ACL user.
  VALKEY_URL=valkeys://baton@valkey.internal:6380 VALKEY_PASSWORD=... \
    baton run --name sched --tls-ca /etc/ssl/valkey-ca.pem -- ./scheduler
`

func cmdRun(args []string, stdout, stderr io.Writer) int {
	c := newCommand("run", runHelp)
	var (
		conn      connFlags
		durations runDurations
		identity  string
		rerun     bool
		try       bool
		hold      time.Duration
		replicas  int
		replicaTO time.Duration
		level     slog.Level
	)
	conn.register(c.fs)
	c.fs.DurationVar(&durations.ttl, "ttl", election.DefaultTTL, "lifetime of the leadership on the server after each renewal: a crashed leader is replaced within it")
	c.fs.DurationVar(&durations.renewDeadline, "renew-deadline", 0, "how long the leader goes on without a successful renewal before it stops COMMAND (default 2/3 of --ttl)")
	c.fs.DurationVar(&durations.retry, "retry-period", 0, "renewal interval, how often a standby attempts on its own, and the pause after a --rerun release (default 1/5 of --renew-deadline)")
	c.fs.DurationVar(&durations.grace, "grace", 0, "time COMMAND gets to exit after SIGTERM before SIGKILL (default and maximum: --ttl minus --renew-deadline, so two COMMANDs never run at once)")
	c.fs.StringVar(&identity, "identity", "", "this candidate's `name` in the leader record and BATON_IDENTITY (default hostname-pid-random)")
	c.fs.BoolVar(&rerun, "rerun", false, "when COMMAND exits, release, campaign again and rerun it instead of exiting (after growing pauses while it keeps failing at once)")
	c.fs.BoolVar(&try, "try", false, "make one attempt: if another instance leads, exit 4 without running COMMAND (for cron: see --hold)")
	c.fs.DurationVar(&hold, "hold", 0, "with --try: after COMMAND exits by itself, keep the leadership this long, so that hosts whose cron starts later do not run COMMAND again")
	c.fs.IntVar(&replicas, "replicas", 0, "wait until `N` replicas acknowledged each acquisition and renewal (WAIT): set it to the replicas a failover can promote (Sentinel, Cluster), so a failover cannot lose a term")
	c.fs.DurationVar(&replicaTO, "replica-timeout", 0, "with --replicas: how long to wait for the replicas' acknowledgement (default 250ms, at most half of --retry-period)")
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
	if replicas < 0 {
		return c.usageError(stderr, "--replicas %d must not be negative", replicas)
	}
	if isSet(c.fs, "replica-timeout") && replicaTO <= 0 {
		return c.usageError(stderr, "--replica-timeout %v must be positive", replicaTO)
	}
	if isSet(c.fs, "replica-timeout") && replicas == 0 {
		return c.usageError(stderr, "--replica-timeout needs --replicas")
	}
	if err := durations.resolve(c.fs); err != nil {
		return c.usageError(stderr, "%v", err)
	}
	switch {
	case try && rerun:
		return c.usageError(stderr, "--try and --rerun exclude each other: --try runs COMMAND at most once")
	case hold < 0:
		return c.usageError(stderr, "--hold %v must not be negative", hold)
	case hold > 0 && !try:
		return c.usageError(stderr, "--hold needs --try: without it a standby campaigns again at once and would run COMMAND when the hold ends")
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
		grace: durations.grace,
		retry: durations.retry,
		rerun: rerun,
		log:   logger,
		stop:  stop,
	}
	cfg := election.Config{
		Name:           conn.name,
		Identity:       identity,
		TTL:            durations.ttl,
		RenewDeadline:  durations.renewDeadline,
		RetryPeriod:    durations.retry,
		KeyPrefix:      conn.keyPrefix,
		Logger:         logger,
		Replicas:       replicas,
		ReplicaTimeout: replicaTO,
		Callbacks: callbacks.Callbacks{
			OnElected:   r.lead,
			OnNewLeader: r.newLeader,
		},
	}
	if err := cfg.Validate(); err != nil {
		return c.usageError(stderr, "%s", strings.ReplaceAll(err.Error(), "\n", "\nbaton: "))
	}
	if try {
		return r.once(ctx, cfg, &conn, opt, hold, stderr)
	}
	return r.run(ctx, cfg, &conn, opt, stderr)
}

// runDurations are the timing flags of `baton run`.
type runDurations struct {
	ttl, renewDeadline, retry, grace time.Duration
}

// resolve fills in the durations the user left out and checks them in the
// terms the user typed: flags, not fields. The grace period defaults to, and
// may not exceed, TTL minus renew deadline: a leader cut off from Valkey
// stops COMMAND (SIGTERM) at its renew deadline and SIGKILLs it a grace
// period later, which must come before the key can expire and a standby
// start its own COMMAND.
func (d *runDurations) resolve(fs *flag.FlagSet) error {
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"ttl", d.ttl}, {"renew-deadline", d.renewDeadline}, {"retry-period", d.retry}, {"grace", d.grace}} {
		if isSet(fs, f.name) && f.v <= 0 {
			return fmt.Errorf("--%s %v must be positive", f.name, f.v)
		}
	}
	if !isSet(fs, "renew-deadline") {
		d.renewDeadline = (d.ttl * 2 / 3).Truncate(time.Millisecond)
		if d.renewDeadline < time.Millisecond {
			return fmt.Errorf("--ttl %v is too short: its default --renew-deadline, 2/3 of it, would be below the server's 1ms resolution (with the default durations give --ttl 8ms or more; below 2s, pauses end healthy terms)", d.ttl)
		}
	}
	if !isSet(fs, "retry-period") {
		d.retry = (d.renewDeadline / 5).Truncate(time.Millisecond)
		if d.retry < time.Millisecond {
			what := "--renew-deadline " + d.renewDeadline.String()
			if !isSet(fs, "renew-deadline") {
				what = fmt.Sprintf("--ttl %v (renew deadline %v)", d.ttl, d.renewDeadline)
			}
			return fmt.Errorf("%s is too short: the default --retry-period, 1/5 of the renew deadline, would be below 1ms", what)
		}
	}
	margin := d.ttl - d.renewDeadline
	if !isSet(fs, "grace") {
		d.grace = margin
		return nil
	}
	if margin > 0 && d.grace > margin {
		return fmt.Errorf("--grace %v exceeds --ttl %v minus --renew-deadline %v (%v): a leader cut off from Valkey could still run COMMAND after a standby starts its own; use --grace %v or less, or a longer --ttl",
			d.grace, d.ttl, d.renewDeadline, margin, margin)
	}
	return nil
}

// run connects, campaigns and runs the command for each term until r.stop
// ends ctx, and returns baton's exit status: exit 1 with one line when the
// server refuses for good what the election needs.
func (r *runner) run(ctx context.Context, cfg election.Config, conn *connFlags, opt valkey.ClientOption, stderr io.Writer) int {
	wait := r.handleSignals()
	defer wait()
	client, err := connect(ctx, conn, opt, true)
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
		"renew_deadline", cfg.RenewDeadline, "retry_period", cfg.RetryPeriod, "grace", r.grace)
	for {
		// Each Run ends with ctx (baton stops), with a permanent error, or
		// with runCtx when a command that keeps failing asks for a pause
		// (see lead): Run then releases, and this loop pauses before
		// campaigning again.
		runCtx, endRun := context.WithCancel(ctx)
		r.mu.Lock()
		r.endRun = endRun
		r.mu.Unlock()
		err := e.Run(runCtx)
		ended := runCtx.Err() != nil
		endRun()
		if err != nil && !ended {
			return errorf(stderr, describeRefusal(opt, err))
		}
		pause := r.takePause()
		if ctx.Err() != nil || pause == 0 || !sleep(ctx, pause) {
			return r.status()
		}
		r.log.Info("baton: campaigning again after the pause", "name", cfg.Name)
	}
}

// Pacing of --rerun for a command that keeps failing: a non-zero exit less
// than maxRerunPause after the start is a quick failure. After the first
// one in a row baton releases and campaigns again as after any exit
// (the elector pauses one retry period after a release, so a standby can
// win); after the n-th, n >= 2, it also stops campaigning for
// 2^(n-1) retry periods, up to maxRerunPause, so that a command failing at
// once on every host does not restart several times a second across the
// fleet. An exit 0, or a run that lasted maxRerunPause, starts the count
// again.
const maxRerunPause = time.Minute

// rerunPause is the pause before campaigning again after the n-th quick
// failure in a row: none for the first, then 2, 4, 8, ... retry periods,
// up to the larger of maxRerunPause and retry.
func rerunPause(retry time.Duration, n int) time.Duration {
	if n < 2 {
		return 0
	}
	limit := max(maxRerunPause, retry)
	d := retry
	for range n - 1 {
		if d >= limit/2 {
			return limit
		}
		d *= 2
	}
	return d
}

// takePause returns and clears the pause that lead asked for.
func (r *runner) takePause() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.pause
	r.pause = 0
	return d
}

// sleep waits for d or the end of ctx, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// runner runs the command for each term of `baton run`.
type runner struct {
	path  string
	args  []string
	name  string
	grace time.Duration
	retry time.Duration // the retry period: the unit of --rerun's pauses
	rerun bool
	log   *slog.Logger
	stop  context.CancelFunc // ends Run: the leadership is released if held

	elector *election.Elector // set before Run starts; nil with --try

	mu       sync.Mutex     // guards the fields below
	child    *child         // the running command, until it was reaped
	stopping syscall.Signal // the SIGINT or SIGTERM that stops baton; 0 until then
	started  bool           // the command was started at least once
	exited   bool           // the command exited on its own (or after a forwarded signal) and baton stops
	code     int            // baton's exit status once exited
	failures int            // --rerun: quick non-zero exits in a row
	pause    time.Duration  // --rerun: how long to wait before campaigning again, once the current Run ends
	endRun   func()         // ends the current Run, not baton; nil with --try
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
	r.child, r.started = c, true
	r.mu.Unlock()
	started := time.Now()
	r.log.Info("baton: command started", "pgid", c.pgid, "fence", term.Fence)

	select {
	case <-c.done:
	case <-ctx.Done():
		r.log.Warn("baton: leadership lost; stopping the command", "fence", term.Fence, "grace", r.grace,
			"reason", context.Cause(ctx))
		c.terminate(r.grace, r.log)
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

	ran := time.Since(started)
	r.mu.Lock()
	r.child = nil
	finish := r.stopping != 0 || !r.rerun
	if finish {
		r.exited, r.code = true, c.code
	}
	if c.code != 0 && ran < maxRerunPause {
		r.failures++
	} else {
		r.failures = 0
	}
	failures := r.failures
	pause := rerunPause(r.retry, failures)
	endRun := r.endRun
	if !finish && pause > 0 && endRun != nil {
		r.pause = pause
	}
	r.mu.Unlock()
	switch {
	case finish:
		r.log.Info("baton: command exited; releasing the leadership", "status", c.code)
		r.stop()
	case pause > 0 && endRun != nil:
		r.log.Warn("baton: command failed again soon after it started; releasing the leadership and pausing before campaigning again",
			"status", c.code, "ran", ran.Round(time.Millisecond), "failures_in_a_row", failures, "pause", pause)
		endRun() // Run releases and returns; run pauses, then campaigns again
	default:
		level := slog.LevelInfo
		if c.code != 0 {
			level = slog.LevelWarn
		}
		r.log.Log(ctx, level, "baton: command exited; releasing the leadership and campaigning again", "status", c.code)
		_ = r.elector.Resign(ctx) // starts the step-down and returns
	}
}

// newLeader is OnNewLeader.
func (r *runner) newLeader(l callbacks.Leader) {
	if l.None() {
		r.log.Info("baton: no leader", "name", r.name)
		return
	}
	r.log.Info("baton: leader", "name", r.name, "leader", l.Identity, "fence", l.Fence)
}

// handleSignals starts forwarding signals to the running command; SIGINT
// and SIGTERM also make baton stop. From then on the other forwarded
// signals are not fatal to baton. The returned function stops it and waits
// for its goroutine.
func (r *runner) handleSignals() (stop func()) {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.forward(ctx, sigs) })
	return func() {
		signal.Stop(sigs)
		cancel()
		wg.Wait()
	}
}

// forward handles signals until ctx ends.
func (r *runner) forward(ctx context.Context, sigs <-chan os.Signal) {
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
				c.killAfter(r.grace, r.log)
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
