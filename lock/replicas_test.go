package lock

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
	"github.com/valkey-io/valkey-go"
)

// startReplicated starts a primary and one replica of it, linked.
func startReplicated(t *testing.T) (primary, replica *valkeytest.Server) {
	t.Helper()
	primary = valkeytest.Start(t, valkeytest.WithArgs("--repl-diskless-sync-delay", "0"))
	replica = valkeytest.Start(t, valkeytest.WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(primary.Port())))
	deadline := time.Now().Add(10 * time.Second)
	for replica.Info(t, "replication")["master_link_status"] != "up" {
		if time.Now().After(deadline) {
			t.Fatal("the replica never linked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A replica whose link just came up can take a few hundred
	// milliseconds to acknowledge anything (its acknowledged offset stays 0
	// meanwhile), longer than the tests' ReplicaTimeout: wait until it has
	// acknowledged a write. WAIT must follow the write on its connection
	// (one DoMulti), or it counts nothing.
	c := primary.Client(t)
	res := c.DoMulti(ctxT(t), c.B().Set().Key("replicated").Value("1").Build(), c.B().Wait().Numreplicas(1).Timeout(10000).Build())
	if n, err := res[1].AsInt64(); err != nil || n != 1 {
		t.Fatalf("SET then WAIT 1 on the primary = %d, %v; want 1 replica", n, err)
	}
	return primary, replica
}

// TestUnacknowledgedWritesDoNotCount: with Replicas set, an acquisition the
// replica has not acknowledged (it holds its replication stream back) is
// given back and reported as ErrNotReplicated, and so is an extension; once
// the replica follows again, both succeed.
func TestUnacknowledgedWritesDoNotCount(t *testing.T) {
	primary, replica := startReplicated(t)
	// Long enough for a loaded machine's replica to acknowledge the steps
	// that must succeed; each step that must fail waits it out.
	l, err := New(primary.Client(t), "acked", Config{TTL: time.Minute, Replicas: 1, ReplicaTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := mustAcquire(t, l)
	if err := h.Reacquire(ctxT(t)); err != nil {
		t.Fatalf("Reacquire acknowledged by the replica = %v", err)
	}

	replica.Do(t, "CLIENT", "PAUSE", "10000", "WRITE") // it reads the stream but applies nothing
	validUntil := h.ValidUntil()
	err = h.Reacquire(ctxT(t))
	if !errors.Is(err, ErrNotReplicated) || errors.Is(err, ErrMisconfigured) {
		t.Fatalf("Reacquire with the replica held back = %v; want ErrNotReplicated", err)
	}
	if h.ValidUntil() != validUntil {
		t.Fatal("an unacknowledged renewal moved ValidUntil")
	}
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	_, err = l.TryAcquire(ctxT(t))
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("TryAcquire with the replica held back = %v; want ErrNotReplicated", err)
	}
	if n := primary.Int(t, "EXISTS", l.Key()); n != 0 {
		t.Fatalf("EXISTS on the primary = %d after an unacknowledged acquisition; want 0: it must be given back", n)
	}
	replica.Do(t, "CLIENT", "UNPAUSE")
	h = mustAcquire(t, l)
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestShardedPubSubOnACluster: on a Valkey Cluster a handover between two
// processes goes out as SPUBLISH to the shard that owns the lock's slot, and
// an announcing lock's followers hear it by SSUBSCRIBE; classic PUBLISH,
// which every node would relay over the cluster bus, is not used.
func TestShardedPubSubOnACluster(t *testing.T) {
	c := valkeytest.StartCluster(t)
	cfg := Config{TTL: time.Minute, Announce: true, RetryInterval: time.Hour}
	a, b := clusterLock(t, c, "sharded", cfg), clusterLock(t, c, "sharded", cfg)
	if !a.sharded {
		t.Fatal("a cluster client's Lock does not use sharded Pub/Sub")
	}
	events := follow(t, a)
	if ev := nextEvent(t, events); ev.Kind != Subscribed {
		t.Fatalf("first event = %+v; want Subscribed", ev)
	}
	h := retryAcquire(t, a)
	if ev := nextEvent(t, events); ev.Kind != Acquired || ev.Fence != h.Fence() {
		t.Fatalf("event = %+v; want Acquired with fence %d", ev, h.Fence())
	}
	got, errc := acquireAsync(ctxT(t), b)
	owner := c.PrimaryFor(t, a.Key())
	awaitInLine(t, owner, a, 1)
	if err := h.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w := awaitAcquired(t, got, errc)
	if w.Fence() <= h.Fence() {
		t.Fatalf("fence %d; want > %d", w.Fence(), h.Fence())
	}
	if err := w.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := owner.CommandCalls(t, "spublish"); n == 0 {
		t.Fatal("no SPUBLISH on the shard that owns the lock")
	}
	for _, node := range c.Nodes() {
		if n := node.CommandCalls(t, "publish"); n != 0 {
			t.Fatalf("node %s ran PUBLISH %d times; want none on a cluster", node.Addr(), n)
		}
	}
}

// retryAcquire takes l, retrying while the cluster client is still
// learning the topology.
func retryAcquire(t *testing.T, l *Lock) *Held {
	t.Helper()
	var h *Held
	err := retryUnavailable(t, func() error {
		var err error
		h, err = l.TryAcquire(context.Background())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestGrantHeardOnADemotedNodeIsNotTaken: after a failover within the
// lock's shard, a waiting *Lock's sharded subscription stays on the demoted
// node, which still relays the shard's messages. The new primary's release
// finds no subscriber for the *Lock's grant, skips it as dead and deletes
// the key, yet the *Lock hears the grant. It must not return an
// acquisition the server never made (on a cluster a grant is claimed before
// it is returned), and it must move its subscription to the new primary,
// where grants can reach it again.
func TestGrantHeardOnADemotedNodeIsNotTaken(t *testing.T) {
	c := valkeytest.StartCluster(t)
	cfg := Config{TTL: time.Minute, RetryInterval: time.Hour}
	holder, waiter := clusterLock(t, c, "demoted", cfg), clusterLock(t, c, "demoted", cfg)
	h := retryAcquire(t, holder)
	// Two callers wait on one *Lock: the second keeps its subscription
	// going while the first holds.
	got, errc := acquireAsync(ctxT(t), waiter)
	got2, errc2 := acquireAsync(ctxT(t), waiter)
	awaitQueued(t, waiter, 2)
	old := c.PrimaryFor(t, holder.Key())
	grants := waiter.keys.grant + waiter.id
	awaitSubscribers(t, old, grants, 1)
	awaitInLine(t, old, holder, 1)
	primary := c.Failover(t, holder.Key())
	if err := retryUnavailable(t, func() error { return h.Release(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	var w *Held
	var next <-chan *Held
	var nextErr <-chan error
	select {
	case w = <-got:
		next, nextErr = got2, errc2
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	case w = <-got2:
		next, nextErr = got, errc
		if err := <-errc2; err != nil {
			t.Fatal(err)
		}
	case <-ctxT(t).Done():
		t.Fatal("no Acquire returned")
	}
	if v, err := primary.Do(t, "GET", holder.Key()).ToString(); err != nil || v != w.Token() {
		t.Fatalf("Acquire returned token %q, fence %d; the primary's key holds %q (%v)", w.Token(), w.Fence(), v, err)
	}
	if w.Fence() <= h.Fence() {
		t.Fatalf("fence %d; want > %d", w.Fence(), h.Fence())
	}
	awaitSubscribers(t, primary, grants, 1)
	if err := w.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w2 := awaitAcquired(t, next, nextErr)
	if err := w2.Release(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// awaitSubscribers waits until node counts n sharded subscribers of channel.
func awaitSubscribers(t *testing.T, node *valkeytest.Server, channel string, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		vals, err := node.Do(t, "PUBSUB", "SHARDNUMSUB", channel).ToArray()
		if err == nil && len(vals) == 2 {
			if got, err := vals[1].AsInt64(); err == nil && got == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never had %d subscribers of %s", node.Addr(), n, channel)
		}
		time.Sleep(time.Millisecond)
	}
}

// clusterLock returns a Lock on a client of its own on c, as a process of
// its own would have.
func clusterLock(t *testing.T, c *valkeytest.Cluster, name string, cfg Config) *Lock {
	t.Helper()
	client, err := valkey.NewClient(c.ClientOption())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	l, err := New(client, name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// awaitInLine waits until n entries wait in l's line on node (on a
// cluster, the primary that serves l's slot).
func awaitInLine(t *testing.T, node *valkeytest.Server, l *Lock, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := node.Do(t, "LLEN", l.keys.queue).AsInt64()
		if err == nil && got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries in line on %s; want %d", got, node.Addr(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
