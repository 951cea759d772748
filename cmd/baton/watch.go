package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/baton-dev/baton/callbacks"
	"github.com/baton-dev/baton/election"
)

const watchHelp = `Usage: baton watch --name NAME [--json] [connection flags]

Print the leader of the election NAME, then every change of leader as it
happens, one line each, until interrupted (SIGINT or SIGTERM: exit 0).
It does not poll: it follows the election's Pub/Sub channel and the
leader's TTL. Read errors are logged to stderr (the first at warn, then a
"read leader again" line once the server answers) and retried; a server
that refuses the reads for good (a missing permission) ends it with exit 1.
A leader older than one already printed (the server lost writes in a
failover or restart) is marked "stale".

  $ baton watch --name nightly-report
  2026-11-26T10:00:00.125+01:00 host-a fence=1764150000123456
  2026-11-26T10:07:12.310+01:00 none
  2026-11-26T10:07:12.311+01:00 host-b fence=1764150000123457
  $ baton watch --name nightly-report --json
  {"time":"2026-11-26T10:00:00.125+01:00","name":"nightly-report","leader":true,"identity":"host-a","fence":1764150000123456,"ttl_ms":14873}
`

// timeLayout is RFC 3339 with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func cmdWatch(args []string, stdout, stderr io.Writer) int {
	c := newCommand("watch", watchHelp)
	var (
		conn   connFlags
		asJSON bool
		level  slog.Level
	)
	conn.register(c.fs)
	c.fs.BoolVar(&asJSON, "json", false, "print one JSON object per line")
	c.fs.TextVar(&level, "log-level", slog.LevelInfo, "log `level` of read errors on stderr: debug, info, warn or error")
	opt, status, ok := c.parseObserver(&conn, args, stdout, stderr)
	if !ok {
		return status
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	client, err := connect(ctx, &conn, opt, false)
	if err != nil {
		if ctx.Err() != nil { // SIGINT or SIGTERM while connecting: as promised, 0
			return exitOK
		}
		return errorf(stderr, err)
	}
	defer client.Close()

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	show := func(l callbacks.Leader) {
		now := time.Now()
		switch {
		case asJSON:
			writeJSON(stdout, leaderRecord(conn.name, l, now))
		case l.None():
			fmt.Fprintf(stdout, "%s none\n", now.Format(timeLayout))
		case l.Stale:
			fmt.Fprintf(stdout, "%s %s fence=%d stale\n", now.Format(timeLayout), l.Identity, l.Fence)
		default:
			fmt.Fprintf(stdout, "%s %s fence=%d\n", now.Format(timeLayout), l.Identity, l.Fence)
		}
	}
	opts := append(conn.observeOptions(), election.WithLogger(logger))
	if err := election.Watch(ctx, client, conn.name, show, opts...); err != nil {
		return errorf(stderr, describeRefusal(opt, err))
	}
	return exitOK
}
