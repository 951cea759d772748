package election

import (
	"bufio"
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
)

// grant is one write of an election key that a server applied: a term's
// acquisition, or a handover, which sets the key to the new holder's token.
// Tokens are unique per term, so where a token was applied says which
// servers ever had that term.
type grant struct {
	op    string    // "SET" of the key; "PUBLISH" of a grant message ("granted:<fence>:<token>") on a grant channel
	node  string    // the address of the server that applied it
	from  string    // "lua" when that server ran the script itself, else the primary it replicated it from
	key   string    // the election key
	token string    // the holder's token
	at    time.Time // the server's clock when it applied it
}

// grantLog is the servers' own record of who was granted each election, as
// seen by MONITOR on every data node of a topology: on a primary the SET that
// the acquire and release scripts run ("lua"), on a replica the same SET as
// its primary's stream delivers it. It is the observer that cannot miss a
// short term or be told a story by a client: whether a promoted replica had
// a term is whether its feed shows the term's token.
//
// A grantLog is safe for concurrent use. It reconnects to a node that was
// killed and restarted; live says since when each node's current feed is
// confirmed, so that a test can make sure nothing goes unrecorded.
type grantLog struct {
	keys map[string]bool

	mu     sync.Mutex // guards the fields below
	grants []grant
	live   map[string]time.Time // node -> when its current MONITOR was confirmed; absent while disconnected
	trace  []string             // with BATON_FAILOVER_TRACE: every line on the campaign's keys, "<node> <line>"

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// traceGrants keeps every MONITOR line on the campaign's keys, for
// diagnosis (BATON_FAILOVER_TRACE=1).
var traceGrants = os.Getenv("BATON_FAILOVER_TRACE") != ""

// recordGrants follows every node in nodes with MONITOR, recording the SETs of
// keys, until the test ends.
func recordGrants(t *testing.T, nodes []*valkeytest.Server, keys ...string) *grantLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g := &grantLog{keys: make(map[string]bool), live: make(map[string]time.Time), cancel: cancel}
	for _, k := range keys {
		g.keys[k] = true
	}
	for _, n := range nodes {
		g.wg.Go(func() { g.follow(ctx, n.Addr()) })
	}
	t.Cleanup(g.stop)
	return g
}

// stop ends every feed and waits for them; it is safe to call twice.
func (g *grantLog) stop() {
	g.cancel()
	g.wg.Wait()
}

// follow keeps a MONITOR connection to addr until ctx ends, reconnecting
// after a failure with a pause that starts at 5 ms and doubles up to 100 ms
// while the node is down.
func (g *grantLog) follow(ctx context.Context, addr string) {
	pause := 5 * time.Millisecond
	for ctx.Err() == nil {
		if g.monitor(ctx, addr) {
			pause = 5 * time.Millisecond
		}
		if !sleep(ctx, pause) {
			return
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// monitor runs one MONITOR connection to addr until it fails or ctx ends,
// and reports whether the server confirmed it. It speaks RESP2 directly:
// MONITOR's replies are one simple string a line, which valkey-go does not
// offer as a stream.
func (g *grantLog) monitor(ctx context.Context, addr string) (confirmed bool) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		return false
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
		return false
	}
	g.setLive(addr, time.Now())
	defer g.setLive(addr, time.Time{})
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return true
		}
		if traceGrants && strings.Contains(line, "{failover}") {
			g.mu.Lock()
			g.trace = append(g.trace, addr+" "+strings.TrimSpace(line))
			g.mu.Unlock()
		}
		if gr, ok := g.parse(addr, line); ok {
			g.mu.Lock()
			g.grants = append(g.grants, gr)
			g.mu.Unlock()
		}
	}
}

func (g *grantLog) setLive(addr string, since time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if since.IsZero() {
		delete(g.live, addr)
	} else {
		g.live[addr] = since
	}
}

// liveSince returns when addr's current feed was confirmed, and false while
// it is disconnected.
func (g *grantLog) liveSince(addr string) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	since, ok := g.live[addr]
	return since, ok
}

// parse reads one MONITOR line, such as
//
//	+1718000000.123456 [0 127.0.0.1:7001] "SET" "baton:election:x" "a#9f.." "PXAT" "1718000002123"
//
// and returns it as a grant if it sets one of the followed keys.
func (g *grantLog) parse(node, line string) (grant, bool) {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "+"), "\r\n")
	ts, rest, ok := strings.Cut(line, " [")
	if !ok {
		return grant{}, false
	}
	client, rest, ok := strings.Cut(rest, "] ")
	if !ok {
		return grant{}, false
	}
	args := monitorArgs(rest, 3)
	if len(args) < 3 {
		return grant{}, false
	}
	op, key, token := strings.ToUpper(args[0]), args[1], args[2]
	switch op {
	case "SET":
		if !g.keys[key] {
			return grant{}, false
		}
	case "PUBLISH", "SPUBLISH":
		msg, ok := strings.CutPrefix(token, "granted:")
		if !ok {
			return grant{}, false
		}
		_, token, _ = strings.Cut(msg, ":")
		op, key = "PUBLISH", g.keyOf(key)
		if key == "" {
			return grant{}, false
		}
	default:
		return grant{}, false
	}
	_, from, _ := strings.Cut(client, " ") // "<db> lua" or "<db> <addr>"
	sec, frac, _ := strings.Cut(ts, ".")
	s, err1 := strconv.ParseInt(sec, 10, 64)
	us, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil {
		return grant{}, false
	}
	return grant{op: op, node: node, from: from, key: key, token: token, at: time.Unix(s, us*1000)}, true
}

// keyOf returns the followed key whose grant channel channel is, or "".
// Grant channels are "{<key>}:grant:<waiter id>", or "<key>:grant:<id>" for
// a key with a hash tag.
func (g *grantLog) keyOf(channel string) string {
	for k := range g.keys {
		if strings.HasPrefix(channel, "{"+k+"}:grant:") || strings.HasPrefix(channel, k+":grant:") {
			return k
		}
	}
	return ""
}

// monitorArgs returns up to n of the quoted, escaped arguments that MONITOR
// prints ("SET" "k" "v\x00"), unquoted. Valkey escapes them as C string
// literals, which strconv.Unquote reads.
func monitorArgs(s string, n int) []string {
	var args []string
	for len(args) < n {
		s = strings.TrimLeft(s, " ")
		if !strings.HasPrefix(s, `"`) {
			break
		}
		end := 1
		for end < len(s) && s[end] != '"' {
			if s[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(s) {
			break
		}
		arg, err := strconv.Unquote(s[:end+1])
		if err != nil {
			break
		}
		args = append(args, arg)
		s = s[end+1:]
	}
	return args
}

// all returns every grant recorded so far, in the order they were recorded
// (per node, the order the node applied them).
func (g *grantLog) all() []grant {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]grant(nil), g.grants...)
}

// executed returns how many grants of key node ran itself ("lua") at or
// after since.
func (g *grantLog) executed(node, key string, since time.Time) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, gr := range g.grants {
		if gr.op == "SET" && gr.node == node && gr.key == key && gr.from == "lua" && !gr.at.Before(since) {
			n++
		}
	}
	return n
}

// traced returns the traced lines whose server time is within [from, to].
func (g *grantLog) traced(from, to time.Time) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, line := range g.trace {
		_, rest, _ := strings.Cut(line, " +")
		ts, _, _ := strings.Cut(rest, " ")
		sec, frac, _ := strings.Cut(ts, ".")
		s, err1 := strconv.ParseInt(sec, 10, 64)
		us, err2 := strconv.ParseInt(frac, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if at := time.Unix(s, us*1000); !at.Before(from) && !at.After(to) {
			out = append(out, line)
		}
	}
	return out
}
