// Command baton runs a command only while it leads a named election on
// Valkey, and shows or follows who leads. See docs/cli.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Exit statuses of baton itself; `baton run` otherwise exits with its
// command's status.
const (
	exitOK         = 0
	exitError      = 1 // runtime failure: the server cannot be reached, refused the credentials, ...
	exitUsage      = 2 // bad flags, arguments or environment
	exitNoLeader   = 3 // `baton leader`: the election has no leader
	exitNotElected = 4 // `baton run --try`: another instance leads; COMMAND did not run
)

const usage = `baton runs a command only while it leads a named election on Valkey,
and shows or follows who leads.

Usage:
  baton run    --name NAME [flags] -- COMMAND [ARGS...]
  baton leader --name NAME [--json]
  baton watch  --name NAME [--json]
  baton help   [COMMAND]
  baton --version

Commands:
  run     campaign for NAME and run COMMAND while leader; stop it when leadership is lost
  leader  print the current leader of NAME (exit 0), or "no leader" (exit 3)
  watch   print every change of leader of NAME until interrupted

Every command takes the connection flags (see "baton help run"):
  --addr HOST:PORT   server, repeatable or comma-separated (default 127.0.0.1:6379, or VALKEY_URL)
  --tls, --tls-ca, --tls-cert, --tls-key, --sentinel-master NAME, --cluster, --key-prefix

Environment:
  VALKEY_URL        valkey://[user:pass@]host:port[/db] or valkeys://... (TLS); --addr overrides its address
  VALKEY_USERNAME   ACL user (overrides the URL's)
  VALKEY_PASSWORD   password (overrides the URL's); there is no password flag, so it never shows in ps

Examples:
  # Three hosts run this; the worker runs on exactly one, another takes over within 15s if it dies.
  baton run --name ingest -- ./ingest

  # Three hosts' cron start this at 02:00; the report runs once, on one of them.
  baton run --try --hold 1h --name nightly-report -- ./report.sh --since yesterday

  # Who leads?
  baton leader --name nightly-report

  # Follow leadership changes as JSON lines.
  baton watch --name nightly-report --json

Exit status: 0 success; 1 error; 2 bad usage; 3 no leader (baton leader);
4 not elected (baton run --try). baton run otherwise exits with its
command's status. Details: docs/cli.md.
`

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the subcommand named by args[0] and returns the exit status.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return cmdRun(rest, stdout, stderr)
	case "leader":
		return cmdLeader(rest, stdout, stderr)
	case "watch":
		return cmdWatch(rest, stdout, stderr)
	case superviseCmd:
		return supervise(rest)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionLine())
		return exitOK
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" {
			return dispatch([]string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "baton: unknown command %q\nsee 'baton --help'\n", cmd)
		return exitUsage
	}
}

// command is a subcommand's flag set with its help text.
type command struct {
	fs   *flag.FlagSet
	help string // printed before the flags
}

func newCommand(name, help string) *command {
	fs := flag.NewFlagSet("baton "+name, flag.ContinueOnError)
	fs.Usage = func() {} // parse prints the help itself, to the right stream
	return &command{fs: fs, help: help}
}

// parse parses args. It returns ok=false with the exit status when the
// command should stop: 0 after --help (printed to stdout), 2 after a bad flag
// (one line with the error, one pointing to --help, on stderr).
func (c *command) parse(args []string, stdout, stderr io.Writer) (status int, ok bool) {
	c.fs.SetOutput(io.Discard) // parse errors are reported below, in one line
	err := c.fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		c.printHelp(stdout)
		return exitOK, false
	}
	if err != nil {
		msg := err.Error()
		if c.unitless(msg) {
			msg += " (durations need a unit, e.g. 15s or 500ms)"
		}
		return c.usageError(stderr, "%s", msg), false
	}
	return 0, true
}

// badValue matches the flag package's message for a value it could not parse.
var badValue = regexp.MustCompile(`invalid value "([^"]*)" for flag -(\S+):`)

// unitless reports whether msg is a duration flag given a bare number.
func (c *command) unitless(msg string) bool {
	m := badValue.FindStringSubmatch(msg)
	if m == nil {
		return false
	}
	f := c.fs.Lookup(m[2])
	if f == nil {
		return false
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	if _, ok := g.Get().(time.Duration); !ok {
		return false
	}
	_, err := strconv.ParseFloat(m[1], 64)
	return err == nil
}

func (c *command) printHelp(w io.Writer) {
	fmt.Fprint(w, c.help)
	fmt.Fprintln(w, "\nFlags:")
	c.fs.SetOutput(w)
	c.fs.PrintDefaults()
}

// usageError reports a bad invocation, with a pointer to the help, and
// returns exit status 2.
func (c *command) usageError(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "baton: "+format+"\n", args...)
	fmt.Fprintf(stderr, "see '%s --help'\n", c.fs.Name())
	return exitUsage
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// errorf prints a runtime error prefixed with "baton: " and returns exit
// status 1.
func errorf(stderr io.Writer, err error) int {
	msg := err.Error()
	if !strings.HasPrefix(msg, "baton: ") {
		msg = "baton: " + msg
	}
	fmt.Fprintln(stderr, msg)
	return exitError
}

// parseObserver parses the flags of a command that takes no arguments and
// only connects (leader, watch), and builds the client options. When ok is
// false the command must exit with status.
func (c *command) parseObserver(conn *connFlags, args []string, stdout, stderr io.Writer) (opt valkey.ClientOption, status int, ok bool) {
	if status, ok := c.parse(args, stdout, stderr); !ok {
		return opt, status, false
	}
	if err := conn.validate(); err != nil {
		return opt, c.usageError(stderr, "%v", err), false
	}
	if c.fs.NArg() > 0 {
		return opt, c.usageError(stderr, "unexpected argument %q", c.fs.Arg(0)), false
	}
	opt, err := conn.options(os.Getenv)
	if err != nil {
		return opt, c.usageError(stderr, "%v", err), false
	}
	return opt, 0, true
}
