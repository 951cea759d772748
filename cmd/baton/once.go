package main

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/election"
	"github.com/baton-dev/baton/lease"
	"github.com/baton-dev/baton/lock"
	"github.com/valkey-io/valkey-go"
)

// once is `baton run --try`: one attempt at the election's lock, made with
// lock and lease directly, stored and announced exactly as an elector would
// (so `baton leader` and `watch` show it). If another instance leads it
// exits 4 at once. Otherwise COMMAND runs for this one term, stopped as in
// `baton run` if the leadership is lost. When COMMAND exits by itself, the
// leadership is released, or with hold kept for hold more: its renewals stop
// and its TTL is set to hold, so that candidates whose cron starts later
// find it taken. A stop signal releases it, so the job may run elsewhere.
func (r *runner) once(ctx context.Context, cfg election.Config, conn *connFlags, opt valkey.ClientOption, hold time.Duration, stderr io.Writer) int {
	wait := r.handleSignals()
	defer wait()
	client, err := connect(ctx, conn, opt, true)
	if err != nil {
		if ctx.Err() != nil {
			return r.status()
		}
		return errorf(stderr, err)
	}
	defer client.Close()
	if cfg.Identity == "" {
		cfg.Identity = election.DefaultIdentity()
	}
	// An elector's lock and lease: the key, its announcements and the claim
	// window of handovers to and from `baton run` standbys agree.
	lc := cfg.LockConfig()
	lc.Logger = r.log
	l, err := lock.New(client, cfg.Name, lc)
	if err != nil {
		return errorf(stderr, err)
	}
	if err := l.Check(ctx); err != nil && ctx.Err() == nil {
		return errorf(stderr, describeRefusal(opt, err))
	}
	r.log.Info("baton: trying once", "name", cfg.Name, "identity", cfg.Identity, "ttl", cfg.TTL,
		"renew_deadline", cfg.RenewDeadline, "retry_period", cfg.RetryPeriod, "grace", r.grace, "hold", hold)
	h, err := l.TryAcquire(ctx, lock.WithUniqueToken(election.Token(cfg.Identity)))
	switch {
	case errors.Is(err, lock.ErrNotAcquired) && ctx.Err() == nil:
		leader, lerr := election.LeaderOf(ctx, client, cfg.Name, election.WithKeyPrefix(cfg.KeyPrefix))
		if lerr == nil && !leader.None() {
			r.log.Info("baton: another instance leads; not running the command", "leader", leader.Identity, "fence", leader.Fence)
		} else {
			r.log.Info("baton: another instance leads; not running the command")
		}
		return exitNotElected
	case err != nil:
		if ctx.Err() != nil {
			return r.status()
		}
		return errorf(stderr, describeRefusal(opt, err))
	}
	leaseCfg := cfg.LeaseConfig()
	leaseCfg.Logger = r.log
	ls, err := lease.New(h, leaseCfg)
	if err != nil {
		_ = h.Release(context.WithoutCancel(ctx))
		return errorf(stderr, err)
	}
	select {
	case <-ls.Done():
		// The acquisition's validity passed before its reply came, as an
		// elector would find: give it back rather than run COMMAND on it.
		_ = ls.Release(context.WithoutCancel(ctx))
		return errorf(stderr, ls.Err())
	default:
	}
	r.log.Info("election: elected", "election", cfg.Name, "identity", cfg.Identity, "fence", h.Fence())
	work, cancel := ls.Context(ctx)
	r.lead(work, callbacks.Term{Name: cfg.Name, Identity: cfg.Identity, Fence: h.Fence(), Start: h.AcquiredAt()})
	cancel()

	r.mu.Lock()
	finished := r.started && r.exited && r.stopping == 0 // COMMAND ran and exited by itself
	r.mu.Unlock()
	if hold > 0 && finished && ls.Err() == nil {
		ls.Stop() // no more renewals: the key now lives as long as we set
		hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		err := h.ExtendTo(hctx, hold)
		hcancel()
		if err == nil {
			r.log.Info("baton: command exited; keeping the leadership so that it does not run again", "hold", hold, "fence", h.Fence())
			return r.status()
		}
		r.log.Warn("baton: could not keep the leadership; releasing it", "error", err)
	}
	if err := ls.Release(ctx); err != nil {
		r.log.Warn("baton: release failed; the leadership expires by its ttl", "error", err)
	} else {
		r.log.Info("election: stepped down", "election", cfg.Name, "identity", cfg.Identity, "fence", h.Fence())
	}
	return r.status()
}
