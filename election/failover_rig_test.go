package election

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/valkey-io/valkey-go"
)

// failoverRecord is one failover as the rig made it happen.
type failoverRecord struct {
	kind     string
	heldBack bool   // the replicas were held back while a term was acquired, then the primary was killed
	old, new string // the primary before and after

	// check: every replica had applied everything the old primary had run
	// before this moment (their offsets were compared), so only grants the
	// old primary ran after it can have been lost.
	check    time.Time
	trigger  time.Time // the fault began (held-back runs: just before the replicas were held back)
	paused   time.Time // held-back runs: every replica was held back
	killed   time.Time // held-back runs: the primary was killed
	promoted time.Time // a replica serves the keys
	settled  time.Time // the topology is whole again
	next     time.Time // the next failover's trigger, or the end of the campaign: the end of this one's window
}

// rig runs failovers against one topology while two ballots, one without
// and one with replica acknowledgement, campaign on it.
type rig struct {
	t       *testing.T
	top     failoverTopology
	ballots []*ballot
	grants  *grantLog

	failovers []*failoverRecord
}

// newRig starts the two ballots (their keys share a hash slot, so on a
// cluster the same shard serves both) and the servers' grant log.
func newRig(t *testing.T, top failoverTopology, seed uint64) *rig {
	t.Helper()
	r := &rig{t: t, top: top}
	primary := top.settle(t)
	full := len(top.promotable(t, primary))
	newClient := func() valkey.Client { return r.client() }
	for _, replicas := range []int{0, full} {
		name := "{failover}." + strconv.Itoa(replicas)
		r.ballots = append(r.ballots, newBallot(t, name, replicas, seed, newClient))
	}
	r.grants = recordGrants(t, top.nodes(), r.ballots[0].key, r.ballots[1].key)
	for _, b := range r.ballots {
		b.start(r.client())
		t.Cleanup(func() { b.stop(t) })
	}
	return r
}

// client returns a new client of the topology, closed when the test ends.
func (r *rig) client() valkey.Client {
	r.t.Helper()
	return topologyClient(r.t, r.top)
}

// topologyClient returns a new client of top, closed when the test ends.
func topologyClient(t *testing.T, top failoverTopology) valkey.Client {
	t.Helper()
	c, err := valkey.NewClient(top.clientOption())
	if err != nil {
		t.Fatalf("new %s client: %v", top.name(), err)
	}
	t.Cleanup(c.Close)
	return c
}

// awaitElections waits until every ballot has had a term start or a renewal
// after since.
func (r *rig) awaitElections(since time.Time) {
	r.t.Helper()
	for _, b := range r.ballots {
		b.awaitActivity(r.t, since)
	}
}

// caughtUp waits until the grant log follows primary and every replica, then
// until every replica has applied what primary had run by the returned
// moment.
func (r *rig) caughtUp(primary *valkeytest.Server, replicas []*valkeytest.Server) time.Time {
	r.t.Helper()
	poll(r.t, "MONITOR on every node", func() error {
		for _, n := range append([]*valkeytest.Server{primary}, replicas...) {
			if _, ok := r.grants.liveSince(n.Addr()); !ok {
				return fmt.Errorf("no MONITOR on %s yet", n.Addr())
			}
		}
		return nil
	})
	check := time.Now()
	want := replicationOffset(r.t, primary, "master_repl_offset")
	for _, n := range replicas {
		poll(r.t, n.Addr()+" catches up", func() error {
			if got := replicationOffset(r.t, n, "slave_repl_offset"); got < want {
				return fmt.Errorf("applied offset %d; want %d", got, want)
			}
			return nil
		})
	}
	return check
}

// replicationOffset reads one offset from node's INFO replication.
func replicationOffset(t *testing.T, node *valkeytest.Server, field string) int64 {
	t.Helper()
	info := node.Info(t, "replication")
	n, err := strconv.ParseInt(info[field], 10, 64)
	if err != nil {
		t.Fatalf("INFO replication on %s: %s = %q: %v", node.Addr(), field, info[field], err)
	}
	return n
}

// failover makes one failover of kind happen and waits until both
// elections work again.
func (r *rig) failover(kind failoverKind) {
	r.t.Helper()
	old := r.top.settle(r.t)
	f := &failoverRecord{kind: kind.name, old: old.Addr()}
	f.check = r.caughtUp(old, r.top.promotable(r.t, old))
	// Strike just after a term began, the ballots taking turns: a new
	// grant is what a failover can lose.
	r.ballots[len(r.failovers)%len(r.ballots)].awaitTerm(r.t, f.check)
	r.begin(f)
	primary, promoted := kind.run(r.t, old)
	f.new, f.promoted, f.settled = primary.Addr(), promoted, time.Now()
	r.awaitElections(f.settled)
	r.t.Logf("%s %d: %s -> %s, promoted after %v, whole after %v", kind.name, r.count(kind.name), f.old, f.new,
		f.promoted.Sub(f.trigger).Round(time.Millisecond), f.settled.Sub(f.trigger).Round(time.Millisecond))
}

// heldBack holds every promotable replica back, makes the leader of each
// ballot resign so that the leadership is acquired again while nothing
// replicates, kills the primary once the ballot without acknowledgement has
// a new term and the one with it has had at least two acquisitions refused,
// lets the replicas go once they have seen their primary die (so they drop
// what they held back instead of applying it), and waits for a promotion.
func (r *rig) heldBack() {
	r.t.Helper()
	old := r.top.settle(r.t)
	replicas := r.top.promotable(r.t, old)
	f := &failoverRecord{kind: heldBackKind, heldBack: true, old: old.Addr()}
	f.check = r.caughtUp(old, replicas)
	r.begin(f)
	for _, n := range replicas {
		r.top.pauseReplication(r.t, n)
	}
	paused := time.Now()
	f.paused = paused
	for _, b := range r.ballots {
		b.resignLeader()
	}
	unacked, acked := r.ballots[0], r.ballots[1]
	poll(r.t, unacked.name+": a term granted while the replicas are held back", func() error {
		if !r.heldTermBegun(unacked, old.Addr(), paused) {
			return errors.New("none yet")
		}
		return nil
	})
	poll(r.t, acked.name+": acquisitions while the replicas are held back", func() error {
		if n := r.grants.executed(old.Addr(), acked.key, paused); n < 2 {
			return fmt.Errorf("%d grants run on %s", n, old.Addr())
		}
		return nil
	})
	old.Kill(r.t)
	f.killed = time.Now()
	for _, n := range replicas {
		poll(r.t, n.Addr()+" sees its primary die", func() error {
			if s := n.Info(r.t, "replication")["master_link_status"]; s != "down" {
				return fmt.Errorf("master_link_status:%s", s)
			}
			return nil
		})
		r.top.resumeReplication(r.t, n)
	}
	primary := r.top.awaitPromotion(r.t, old)
	f.new, f.promoted = primary.Addr(), time.Now()
	r.top.rejoin(r.t, old, primary)
	f.settled = time.Now()
	r.awaitElections(f.settled)
	r.t.Logf("%s %d: %s -> %s, killed %v after the replicas were held back, promoted %v after the kill",
		heldBackKind, r.count(heldBackKind), f.old, f.new,
		f.killed.Sub(f.trigger).Round(time.Millisecond), f.promoted.Sub(f.killed).Round(time.Millisecond))
}

// heldTermBegun reports whether a term of b has begun whose grant node ran
// at or after since.
func (r *rig) heldTermBegun(b *ballot, node string, since time.Time) bool {
	ran := make(map[string]bool)
	for _, g := range r.grants.all() {
		if g.op == "SET" && g.key == b.key && g.node == node && g.from == "lua" && !g.at.Before(since) {
			ran[g.token] = true
		}
	}
	for _, rec := range b.records() {
		if ran[rec.token] {
			return true
		}
	}
	return false
}

// heldBackKind names the held-back variant in the report.
const heldBackKind = "replicas held back, then kill -9"

// begin records f as triggered now, which ends the previous failover's
// window.
func (r *rig) begin(f *failoverRecord) {
	f.trigger = time.Now()
	if n := len(r.failovers); n > 0 {
		r.failovers[n-1].next = f.trigger
	}
	r.failovers = append(r.failovers, f)
}

// count returns how many failovers of kind have begun.
func (r *rig) count(kind string) int {
	n := 0
	for _, f := range r.failovers {
		if f.kind == kind {
			n++
		}
	}
	return n
}

// finish stops the ballots, closes the last failover's window and waits
// until the grant log has seen the grant of every term that began after
// the first check (a grant reaches MONITOR before the reply that makes the
// term), so that analysis reads a complete record.
func (r *rig) finish() {
	r.t.Helper()
	end := time.Now()
	for _, b := range r.ballots {
		b.stop(r.t)
	}
	if n := len(r.failovers); n > 0 {
		r.failovers[n-1].next = end
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && len(r.unseen()) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	r.grants.stop()
}

// unseen returns the terms, begun after the first failover's check, of
// which no server's feed shows a trace: no script set the key to their
// token, nor published a grant of it. (A term whose grant was published
// but whose token was never set is a phantom, which analyse reports.)
func (r *rig) unseen() []termRecord {
	if len(r.failovers) == 0 {
		return nil
	}
	ran := make(map[string]bool)
	for _, g := range r.grants.all() {
		if g.from == "lua" {
			ran[g.token] = true
		}
	}
	var out []termRecord
	for _, b := range r.ballots {
		for _, rec := range b.records() {
			if rec.start.After(r.failovers[0].check) && !ran[rec.token] {
				out = append(out, rec)
			}
		}
	}
	return out
}
