// Package wire is the line protocol between the chaos orchestrator and the
// programs it runs (candidates, and the workers of baton run), and the clock
// they share.
//
// A program opens one TCP connection to the orchestrator's hub per process,
// says hello, then sends one line per event, in the order the events
// happened: each carries the program's reading of the shared clock (Now).
// Writes to the fenced store travel on the same connection and are the only
// messages answered, so the hub sees a program's events and writes in
// exactly the order the program made them. When the process dies, the
// connection closes: the hub notes the time.
//
// Lines are words separated by single spaces:
//
//	hello <identity> <role> <pid> <t>
//	elected <fence> <t> <acquired>   (acquired: when the winning acquire request was sent; 0 if unknown)
//	stopped <fence> <t>              (the term's work has stopped: OnElected returned, the worker stopped writing)
//	lost <fence> <t>                 (OnLost ran; a worker sends it just before it exits)
//	leader <identity> <fence> <t>    (OnNewLeader; identity "-" for no leader)
//	write <fence> <t>                (answered "ok" or "refused <highest>")
//	exit <leaked> <t>                (the program is about to exit; leaked goroutines found)
package wire

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Message kinds.
const (
	Hello   = "hello"
	Elected = "elected"
	Stopped = "stopped"
	Lost    = "lost"
	Leader  = "leader"
	Write   = "write"
	Exit    = "exit"
)

// Roles a program says it plays in its hello.
const (
	RoleLibrary = "library" // a candidate built on election.Elector
	RoleWorker  = "worker"  // the command of baton run, for one term
)

// NoLeader is the identity of a leader message that reports no leader.
const NoLeader = "-"

// Msg is one line of the protocol, parsed. Fields a kind does not use are
// zero.
type Msg struct {
	Kind     string // one of the message kinds above
	Identity string // hello: the sender's; leader: the leader's
	Role     string // hello
	PID      int    // hello
	Fence    int64  // elected, stopped, lost, leader, write
	T        int64  // every kind: the sender's Now when it happened
	Acquired int64  // elected: Now when the acquire request was sent, 0 if unknown
	Leaked   int    // exit
}

// Format renders m as one line, without the newline.
func (m Msg) Format() string {
	switch m.Kind {
	case Hello:
		return fmt.Sprintf("%s %s %s %d %d", m.Kind, m.Identity, m.Role, m.PID, m.T)
	case Elected:
		return fmt.Sprintf("%s %d %d %d", m.Kind, m.Fence, m.T, m.Acquired)
	case Leader:
		return fmt.Sprintf("%s %s %d %d", m.Kind, m.Identity, m.Fence, m.T)
	case Exit:
		return fmt.Sprintf("%s %d %d", m.Kind, m.Leaked, m.T)
	default: // stopped, lost, write
		return fmt.Sprintf("%s %d %d", m.Kind, m.Fence, m.T)
	}
}

// Parse reads one line as Format writes it.
func Parse(line string) (Msg, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return Msg{}, errors.New("wire: empty line")
	}
	m := Msg{Kind: f[0]}
	want := map[string]int{Hello: 5, Elected: 4, Stopped: 3, Lost: 3, Leader: 4, Write: 3, Exit: 3}[m.Kind]
	if want == 0 {
		return Msg{}, fmt.Errorf("wire: unknown message %q", line)
	}
	if len(f) != want {
		return Msg{}, fmt.Errorf("wire: %s wants %d words: %q", m.Kind, want, line)
	}
	ints := make([]int64, 0, 3)
	parse := func(words ...string) error {
		for _, w := range words {
			n, err := strconv.ParseInt(w, 10, 64)
			if err != nil {
				return fmt.Errorf("wire: %q in %q: %w", w, line, err)
			}
			ints = append(ints, n)
		}
		return nil
	}
	var err error
	switch m.Kind {
	case Hello:
		m.Identity, m.Role = f[1], f[2]
		if err = parse(f[3], f[4]); err == nil {
			m.PID, m.T = int(ints[0]), ints[1]
		}
	case Elected:
		if err = parse(f[1], f[2], f[3]); err == nil {
			m.Fence, m.T, m.Acquired = ints[0], ints[1], ints[2]
		}
	case Leader:
		m.Identity = f[1]
		if err = parse(f[2], f[3]); err == nil {
			m.Fence, m.T = ints[0], ints[1]
		}
	case Exit:
		if err = parse(f[1], f[2]); err == nil {
			m.Leaked, m.T = int(ints[0]), ints[1]
		}
	default:
		if err = parse(f[1], f[2]); err == nil {
			m.Fence, m.T = ints[0], ints[1]
		}
	}
	return m, err
}

// Conn is a program's connection to the hub. It is safe for concurrent use:
// each message, and each write with its answer, is one step under a mutex.
type Conn struct {
	mu sync.Mutex
	c  net.Conn
	r  *bufio.Reader
}

// Dial connects to the hub at addr and says hello as identity in role.
func Dial(addr, identity, role string, pid int) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("wire: dial hub: %w", err)
	}
	conn := &Conn{c: c, r: bufio.NewReader(c)}
	if err := conn.Send(Msg{Kind: Hello, Identity: identity, Role: role, PID: pid, T: Now()}); err != nil {
		c.Close()
		return nil, err
	}
	return conn, nil
}

// Send sends one message that is not answered.
func (c *Conn) Send(m Msg) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sendLocked(m)
}

func (c *Conn) sendLocked(m Msg) error {
	if _, err := c.c.Write([]byte(m.Format() + "\n")); err != nil {
		return fmt.Errorf("wire: send %s: %w", m.Kind, err)
	}
	return nil
}

// Write asks the fenced store to accept a write with fence, and returns
// whether it did and the highest fence it had accepted before.
func (c *Conn) Write(fence int64) (accepted bool, highest int64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.sendLocked(Msg{Kind: Write, Fence: fence, T: Now()}); err != nil {
		return false, 0, err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return false, 0, fmt.Errorf("wire: read the store's answer: %w", err)
	}
	return ParseAnswer(strings.TrimSuffix(line, "\n"))
}

// Close closes the connection.
func (c *Conn) Close() error {
	return c.c.Close()
}

// Answer renders the store's answer to a write.
func Answer(accepted bool, highest int64) string {
	if accepted {
		return "ok"
	}
	return "refused " + strconv.FormatInt(highest, 10)
}

// ParseAnswer reads an answer as Answer writes it.
func ParseAnswer(line string) (accepted bool, highest int64, err error) {
	if line == "ok" {
		return true, 0, nil
	}
	if v, ok := strings.CutPrefix(line, "refused "); ok {
		highest, err = strconv.ParseInt(v, 10, 64)
		if err == nil {
			return false, highest, nil
		}
	}
	return false, 0, fmt.Errorf("wire: bad answer %q", line)
}
