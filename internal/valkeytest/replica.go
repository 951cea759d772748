package valkeytest

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// replicationPause is the CLIENT PAUSE timeout set by pauseReplication:
// longer than any test, so only resumeReplication or the process's end
// lifts it.
const replicationPause = time.Hour

// pauseReplication holds a replica back: CLIENT PAUSE WRITE on the replica
// makes it stop applying the stream its primary sends. The link stays up, the
// stream piles up unread in the replica's buffer, and the replica keeps
// answering PING, INFO, reads and its cluster bus or Sentinel peers, so every
// health check still passes; only its replication offset falls behind. It
// simulates a replica that is alive but lags, and a failover to it loses the
// writes it has not applied.
func pauseReplication(tb testing.TB, node *Server) {
	tb.Helper()
	if role := node.Info(tb, "replication")["role"]; role != "slave" {
		tb.Fatalf("valkeytest: pause replication on %s: role %q; want a replica", node.Addr(), role)
	}
	ms := strconv.FormatInt(replicationPause.Milliseconds(), 10)
	expectOK(tb, node, "CLIENT", "PAUSE", ms, "WRITE")
}

// resumeReplication lifts pauseReplication; the replica applies the stream it
// held back at once.
func resumeReplication(tb testing.TB, node *Server) {
	tb.Helper()
	expectOK(tb, node, "CLIENT", "UNPAUSE")
}

// expectOK runs a command on node that must reply OK.
func expectOK(tb testing.TB, node *Server, args ...string) {
	tb.Helper()
	if got := node.String(tb, args...); got != "OK" {
		tb.Fatalf("valkeytest: %v on %s = %q; want OK", args, node.Addr(), got)
	}
}

// replicationInfo returns node's INFO replication.
func replicationInfo(node *Server) (map[string]string, error) {
	text, err := node.try("INFO", "replication").ToString()
	if err != nil {
		return nil, fmt.Errorf("INFO replication on %s: %w", node.Addr(), err)
	}
	return parseInfo(text), nil
}

// linkUp returns node's INFO replication if node is a replica whose link to
// its primary is up, and otherwise says what it is.
func linkUp(node *Server) (map[string]string, error) {
	info, err := replicationInfo(node)
	if err != nil {
		return nil, err
	}
	if info["role"] != "slave" || info["master_link_status"] != "up" {
		return nil, fmt.Errorf("%s: role:%s master_link_status:%s; want a replica with its link up",
			node.Addr(), info["role"], info["master_link_status"])
	}
	return info, nil
}
