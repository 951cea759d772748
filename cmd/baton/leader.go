package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/election"
)

const leaderHelp = `Usage: baton leader --name NAME [--json] [connection flags]

Print the current leader of the election NAME: its identity, the fencing
token of its term, and the time its leadership has left unless renewed.
Exit status 0 when there is a leader, 3 when there is none, 1 on error.

  $ baton leader --name nightly-report
  host-b fence=1764150000123456 ttl=13.204s
  $ baton leader --name nightly-report --json
  {"name":"nightly-report","leader":true,"identity":"host-b","fence":1764150000123456,"ttl_ms":13204}
  $ baton leader --name idle || echo "status $?"
  no leader
  status 3
`

func cmdLeader(args []string, stdout, stderr io.Writer) int {
	c := newCommand("leader", leaderHelp)
	var (
		conn   connFlags
		asJSON bool
	)
	conn.register(c.fs)
	c.fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	opt, status, ok := c.parseObserver(&conn, args, stdout, stderr)
	if !ok {
		return status
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*conn.connectTimeout)
	defer cancel()
	client, err := connect(ctx, &conn, opt, false)
	if err != nil {
		return errorf(stderr, err)
	}
	defer client.Close()
	l, err := election.LeaderOf(ctx, client, conn.name, conn.observeOptions()...)
	if err != nil {
		return errorf(stderr, describeRefusal(opt, err))
	}
	if asJSON {
		writeJSON(stdout, leaderRecord(conn.name, l, time.Time{}))
	} else if l.None() {
		fmt.Fprintln(stdout, "no leader")
	} else {
		fmt.Fprintf(stdout, "%s fence=%d ttl=%s\n", l.Identity, l.Fence, ttlText(l.TTL))
	}
	if l.None() {
		return exitNoLeader
	}
	return exitOK
}

// record is the JSON form of a leader, shared by leader and watch.
type record struct {
	Time     *time.Time `json:"time,omitempty"` // watch only
	Name     string     `json:"name"`
	Leader   bool       `json:"leader"`
	Identity string     `json:"identity,omitempty"`
	Fence    int64      `json:"fence,omitempty"`
	TTLMs    *int64     `json:"ttl_ms,omitempty"` // -1: the key has no expiry
	Stale    bool       `json:"stale,omitempty"`  // watch only: older than a leader already shown
}

func leaderRecord(name string, l callbacks.Leader, at time.Time) record {
	r := record{Name: name, Leader: !l.None(), Identity: l.Identity, Fence: l.Fence, Stale: l.Stale}
	if !at.IsZero() {
		r.Time = &at
	}
	if !l.None() {
		ms := l.TTL.Milliseconds()
		if l.TTL < 0 {
			ms = -1
		}
		r.TTLMs = &ms
	}
	return r
}

func writeJSON(w io.Writer, v any) {
	_ = json.NewEncoder(w).Encode(v) // a closed stdout: nothing to report to
}

// ttlText prints a remaining TTL; a key without expiry (set by something
// other than baton) has none.
func ttlText(d time.Duration) string {
	if d < 0 {
		return "none"
	}
	return d.Round(time.Millisecond).String()
}
