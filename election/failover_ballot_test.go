package election

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/valkey-io/valkey-go"
)

// The failover campaign's timing: docs/operations.md's fast preset.
const (
	failoverTTL           = 2 * time.Second
	failoverRenewDeadline = 1333 * time.Millisecond
	failoverRetryPeriod   = 266 * time.Millisecond

	// A leader resigns after holding for a random time in this range, so
	// that acquisitions (handovers, mostly) keep happening on the primary
	// when a failover strikes, as they would under any real churn.
	minHold = 100 * time.Millisecond
	maxHold = 1500 * time.Millisecond

	// resourceWriteEvery paces each leader's writes to the fenced resource.
	resourceWriteEvery = 2 * time.Millisecond
)

// termRecord is one term as its candidate lived it: from OnElected's start
// to the moment it saw its ctx end.
type termRecord struct {
	id    string // the candidate
	fence int64
	token string    // stored at the key for this term; unique per term
	sent  time.Time // callbacks.Term.Start: the key was not set for this term before
	start time.Time // OnElected began

	// Guarded by ballot.mu.
	end       time.Time // OnElected saw its ctx end; zero while it runs
	lastRenew time.Time // when the last successful renewal was sent, or sent
	cause     error     // context.Cause of OnElected's ctx
}

// fencedResource accepts a write only if its fence is at least the highest
// it has accepted, as a store that checks fencing tokens does.
type fencedResource struct {
	mu       sync.Mutex
	highest  int64
	accepted int
	refused  []time.Time // when each refused write came
}

func (r *fencedResource) write(fence int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fence < r.highest {
		r.refused = append(r.refused, time.Now())
		return
	}
	r.highest = fence
	r.accepted++
}

func (r *fencedResource) refusals() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.refused...)
}

// ballot is one election of the campaign: three candidates, each an Elector
// with its own client, a fenced resource its leaders write to, and an
// observer (Watch) that records the leader as the server shows it.
type ballot struct {
	name     string
	key      string
	replicas int // Config.Replicas: 0, or every promotable replica
	res      fencedResource
	cands    []*contender

	mu       sync.Mutex // guards the fields below
	rng      *rand.Rand
	terms    []*termRecord
	activity time.Time        // the last term start or successful renewal
	changed  chan struct{}    // closed and replaced whenever activity moves
	stale    []staleReport    // the observer's reports of a leader older than one it had seen
	newest   callbacks.Leader // the leader with the highest fence the observer reported

	cancel  context.CancelFunc
	watched chan struct{} // closed when the observer has returned
}

// contender is one candidate of a ballot.
type contender struct {
	b  *ballot
	id string
	e  *Elector

	mu  sync.Mutex  // guards cur
	cur *termRecord // the term OnElected runs, nil between terms

	cancel context.CancelFunc
	done   chan error
}

// newBallot builds a ballot's candidates, each on a new client made by
// newClient, without starting them.
func newBallot(t *testing.T, name string, replicas int, seed uint64, newClient func() valkey.Client) *ballot {
	t.Helper()
	b := &ballot{
		name:     name,
		key:      DefaultKeyPrefix + name,
		replicas: replicas,
		rng:      rand.New(rand.NewPCG(seed, uint64(replicas))),
		changed:  make(chan struct{}),
	}
	for _, id := range []string{"a", "b", "c"} {
		c := &contender{b: b, id: id}
		e, err := New(newClient(), Config{
			Name:          name,
			Identity:      id,
			TTL:           failoverTTL,
			RenewDeadline: failoverRenewDeadline,
			RetryPeriod:   failoverRetryPeriod,
			Replicas:      replicas,
			Logger:        testLogger(),
			Callbacks:     callbacks.Callbacks{OnElected: c.onElected},
			OnRenew:       c.onRenew,
		})
		if err != nil {
			t.Fatalf("New(%s/%s) = %v", name, id, err)
		}
		c.e = e
		b.cands = append(b.cands, c)
	}
	return b
}

// start runs every candidate and the observer on observerClient.
func (b *ballot) start(observerClient valkey.Client) {
	for _, c := range b.cands {
		ctx, cancel := context.WithCancel(context.Background())
		c.cancel, c.done = cancel, make(chan error, 1)
		go func() { c.done <- c.e.Run(ctx) }()
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel, b.watched = cancel, make(chan struct{})
	go func() {
		defer close(b.watched)
		_ = Watch(ctx, observerClient, b.name, b.observed, WithLogger(testLogger()))
	}()
}

// stop ends every candidate and the observer and waits for them.
func (b *ballot) stop(t *testing.T) {
	t.Helper()
	for _, c := range b.cands {
		if c.cancel == nil {
			continue
		}
		c.cancel()
		select {
		case <-c.done:
		case <-time.After(awaitTimeout):
			t.Errorf("%s/%s: Run did not return within %v of its ctx ending", b.name, c.id, awaitTimeout)
		}
		c.cancel = nil
	}
	if b.cancel != nil {
		b.cancel()
		<-b.watched
		b.cancel = nil
	}
}

// staleReport is a leader the observer reported with Stale set, and the
// newest leader it had reported before.
type staleReport struct {
	at             time.Time
	leader, newest callbacks.Leader
}

func (b *ballot) observed(l callbacks.Leader) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l.Stale {
		b.stale = append(b.stale, staleReport{at: time.Now(), leader: l, newest: b.newest})
	}
	if l.Fence > b.newest.Fence {
		b.newest = l
	}
}

// hold returns how long the next term holds before it resigns.
func (b *ballot) hold() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return minHold + time.Duration(b.rng.Int64N(int64(maxHold-minHold)))
}

// touchLocked records activity (a term start or a renewal) and wakes waiters.
func (b *ballot) touchLocked(at time.Time) {
	if at.After(b.activity) {
		b.activity = at
	}
	close(b.changed)
	b.changed = make(chan struct{})
}

// awaitActivity waits until the ballot has a term start or a successful
// renewal after since: its election works on the topology as it is now.
func (b *ballot) awaitActivity(t *testing.T, since time.Time) {
	t.Helper()
	b.await(t, "no term and no renewal", func() bool { return b.activity.After(since) })
}

// awaitTerm waits until a term of the ballot has begun after since.
func (b *ballot) awaitTerm(t *testing.T, since time.Time) {
	t.Helper()
	b.await(t, "no term began", func() bool { return len(b.terms) > 0 && b.terms[len(b.terms)-1].start.After(since) })
}

// await waits until ok, called with b.mu held, reports true, woken by every
// change to the ballot; after pollTimeout it fails the test with failure.
func (b *ballot) await(t *testing.T, failure string, ok func() bool) {
	t.Helper()
	deadline := time.NewTimer(pollTimeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		done, changed := ok(), b.changed
		b.mu.Unlock()
		if done {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%s: %s within %v", b.name, failure, pollTimeout)
		}
	}
}

// resignLeader makes whichever candidate leads resign, if one does.
func (b *ballot) resignLeader() {
	for _, c := range b.cands {
		if c.e.IsLeader() {
			_ = c.e.Resign(context.Background()) // returns once the step-down began; nil unless ctx ends
		}
	}
}

// records returns a copy of every term recorded so far.
func (b *ballot) records() []termRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]termRecord, len(b.terms))
	for i, r := range b.terms {
		out[i] = *r
	}
	return out
}

func (b *ballot) staleReports() []staleReport {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]staleReport(nil), b.stale...)
}

// onElected records the term, writes to the fenced resource every
// resourceWriteEvery while the term's ctx lives, and resigns after a random
// hold.
func (c *contender) onElected(ctx context.Context, tm callbacks.Term) {
	b := c.b
	rec := &termRecord{id: c.id, fence: tm.Fence, token: termToken(ctx), sent: tm.Start, start: time.Now(), lastRenew: tm.Start}
	b.mu.Lock()
	b.terms = append(b.terms, rec)
	b.touchLocked(rec.start)
	b.mu.Unlock()
	c.mu.Lock()
	c.cur = rec
	c.mu.Unlock()

	hold := time.NewTimer(b.hold())
	defer hold.Stop()
	tick := time.NewTicker(resourceWriteEvery)
	defer tick.Stop()
	for {
		// The write does not look at ctx first: a leader does not know it
		// has lost until its ctx says so, and fencing is what covers that.
		b.res.write(rec.fence)
		select {
		case <-ctx.Done():
			end := time.Now()
			c.mu.Lock()
			c.cur = nil
			c.mu.Unlock()
			b.mu.Lock()
			rec.end, rec.cause = end, context.Cause(ctx)
			b.mu.Unlock()
			return
		case <-hold.C:
			_ = c.e.Resign(ctx) // OnElected's own ctx: nil once the step-down began
		case <-tick.C:
		}
	}
}

// onRenew records a successful renewal sent at at.
func (c *contender) onRenew(at time.Time) {
	c.mu.Lock()
	rec := c.cur
	c.mu.Unlock()
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if rec != nil && at.After(rec.lastRenew) {
		rec.lastRenew = at
	}
	b.touchLocked(time.Now())
}

// termToken returns the token stored at the key for the term OnElected's
// ctx belongs to. Only a test in this package can know it: the token is
// what the servers' feeds show, so it ties a term to where it was applied.
func termToken(ctx context.Context) string {
	t, _ := ctx.Value(termKey{}).(*term)
	if t == nil || t.lease == nil {
		return ""
	}
	return t.lease.Held().Token()
}
