package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/baton-dev/baton/election"
	"github.com/baton-dev/baton/lock"
	"github.com/valkey-io/valkey-go"
)

// defaultAddr is the server used when neither --addr nor VALKEY_URL says.
const defaultAddr = "127.0.0.1:6379"

// connFlags are the flags every command takes: which election, on which
// server, and how to reach it.
type connFlags struct {
	name           string
	keyPrefix      string
	addrs          addrList
	tls            bool
	tlsCA          string
	tlsCert        string
	tlsKey         string
	sentinelMaster string
	cluster        bool
	connectTimeout time.Duration
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.name, "name", "", "election `name` (required); candidates with the same name compete")
	fs.StringVar(&c.keyPrefix, "key-prefix", election.DefaultKeyPrefix, "`prefix` of the election's key; every candidate and observer must use the same")
	fs.Var(&c.addrs, "addr", "`host:port` of the server; repeat it or separate with commas for cluster seeds or sentinels (default "+defaultAddr+", or the address in VALKEY_URL)")
	fs.BoolVar(&c.tls, "tls", false, "connect with TLS (implied by valkeys:// URLs and the --tls-* flags)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "PEM `file` of the CA certificates that sign the server's certificate (default: the system's)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM `file` of the client certificate, for servers that require one (with --tls-key)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM `file` of the client certificate's private key")
	fs.StringVar(&c.sentinelMaster, "sentinel-master", "", "master set `name` to ask Sentinel for; the --addr addresses are then sentinels")
	fs.BoolVar(&c.cluster, "cluster", false, "require a Valkey Cluster (a cluster is detected anyway; this makes a standalone server an error)")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 5*time.Second, "how long to wait for the server to answer at startup")
}

// addrList is a repeatable flag whose values may also be comma lists.
type addrList []string

func (a *addrList) String() string { return strings.Join(*a, ",") }

func (a *addrList) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("address %q is not host:port", s)
		}
		*a = append(*a, s)
	}
	return nil
}

// validate checks what the flag package cannot.
func (c *connFlags) validate() error {
	if c.name == "" {
		return errors.New("--name is required")
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if c.connectTimeout <= 0 {
		return fmt.Errorf("--connect-timeout %v must be positive", c.connectTimeout)
	}
	return nil
}

// options builds the client options from the flags and the environment
// (getenv is os.Getenv outside tests). Flags win over VALKEY_USERNAME and
// VALKEY_PASSWORD, which win over VALKEY_URL.
func (c *connFlags) options(getenv func(string) string) (valkey.ClientOption, error) {
	var opt valkey.ClientOption
	if u := getenv("VALKEY_URL"); u != "" {
		if !strings.Contains(u, "://") {
			// url.Parse would take "host:6379" for a scheme and an opaque
			// part, and valkey-go would complain about the scheme "host".
			return opt, fmt.Errorf("VALKEY_URL %q has no scheme: want valkey://host:port (valkeys:// for TLS)", u)
		}
		var err error
		if opt, err = valkey.ParseURL(u); err != nil {
			return opt, fmt.Errorf("VALKEY_URL: %w (want valkey://[user:password@]host:port[/db])", err)
		}
	}
	if len(c.addrs) > 0 {
		opt.InitAddress = c.addrs
		if opt.TLSConfig != nil {
			opt.TLSConfig.ServerName = "" // crypto/tls takes it from each address
		}
	}
	if len(opt.InitAddress) == 0 {
		opt.InitAddress = []string{defaultAddr}
	}
	if v := getenv("VALKEY_USERNAME"); v != "" {
		opt.Username = v
	}
	if v := getenv("VALKEY_PASSWORD"); v != "" {
		opt.Password = v
	}
	if c.tls || c.tlsCA != "" || c.tlsCert != "" {
		if opt.TLSConfig == nil {
			opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if err := c.loadTLS(opt.TLSConfig); err != nil {
			return opt, err
		}
	}
	if c.sentinelMaster != "" {
		opt.Sentinel = valkey.SentinelOption{
			MasterSet: c.sentinelMaster,
			Username:  getenv("VALKEY_SENTINEL_USERNAME"),
			Password:  getenv("VALKEY_SENTINEL_PASSWORD"),
			TLSConfig: opt.TLSConfig,
			Dialer:    net.Dialer{Timeout: c.connectTimeout},
		}
	}
	opt.Dialer.Timeout = c.connectTimeout
	if opt.TLSConfig != nil {
		opt.DialCtxFn = dialTLS
	}
	// No client-side caching: baton does not use it, and it would need the
	// CLIENT TRACKING permission (see docs/operations.md).
	opt.DisableCache = true
	// No transparent retries: baton's own loops retry what can be retried,
	// and valkey-go v1.0.79 can reuse a read-only command it retries after
	// a broken connection while the dead connection still writes it (a data
	// race the randomized fault suite caught after CLIENT KILL).
	opt.DisableRetry = true
	opt.ClientName = "baton"
	return opt, nil
}

func (c *connFlags) loadTLS(cfg *tls.Config) error {
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--tls-ca: no PEM certificate in %s", c.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return nil
}

// observeOptions returns the options of election.LeaderOf and Watch.
func (c *connFlags) observeOptions() []election.ObserveOption {
	return []election.ObserveOption{election.WithKeyPrefix(c.keyPrefix)}
}

// connect builds a client and checks, within the connect timeout, that the
// server answers a PING and is the kind of server the flags say (HELLO's
// mode and role), so that a wrong address, password or topology is reported
// at once and plainly rather than retried forever. write is set for
// commands that will write (run): a read-only replica is then an error.
func connect(ctx context.Context, c *connFlags, opt valkey.ClientOption, write bool) (valkey.Client, error) {
	where := "valkey at " + strings.Join(opt.InitAddress, ",")
	if opt.Sentinel.MasterSet != "" {
		where = fmt.Sprintf("valkey master %q via sentinels at %s", opt.Sentinel.MasterSet, strings.Join(opt.InitAddress, ","))
	}
	client, err := valkey.NewClient(opt)
	if err != nil {
		return nil, describe(where, opt, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	if err := client.Do(ctx, client.B().Ping().Build()).Error(); err != nil {
		client.Close()
		return nil, describe(where, opt, err)
	}
	if err := checkMode(ctx, client, c, where, write); err != nil {
		client.Close()
		return nil, err
	}
	return client, nil
}

// errPlaintext says that a TLS client reached a server that answers in
// plaintext.
var errPlaintext = errors.New("the server does not speak TLS there")

// dialTLS is the client's DialCtxFn when TLS is on: crypto/tls's dialer,
// plus a probe for a server that speaks plaintext on that port. Such a
// server never answers the handshake (it waits for the end of a line that
// the handshake does not contain), so without the probe the dial would
// wait out the connect timeout and say nothing useful. If the handshake is
// still unfinished after plaintextProbeAfter, a plaintext PING goes to the
// same address on a connection of its own, and a Valkey answer ends the
// dial at once with errPlaintext.
func dialTLS(ctx context.Context, addr string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg == nil { // valkey-go passes the config it has; none means plaintext
		return raw, nil
	}
	if cfg.ServerName == "" { // as tls.Dialer does: check the name dialled
		cfg = cfg.Clone()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	hctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	after := plaintextProbeAfter
	if dl, ok := hctx.Deadline(); ok {
		after = min(after, time.Until(dl)/2)
	}
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		timer := time.NewTimer(after)
		defer timer.Stop()
		select {
		case <-hctx.Done():
			return
		case <-timer.C:
		}
		if speaksPlaintext(hctx, addr) {
			stop(errPlaintext)
		}
	}()
	conn := tls.Client(raw, cfg)
	err = conn.HandshakeContext(hctx)
	stop(nil)
	<-probed
	if err != nil {
		raw.Close()
		if errors.Is(context.Cause(hctx), errPlaintext) {
			return nil, errPlaintext
		}
		return nil, err
	}
	return conn, nil
}

// plaintextProbeAfter is how long a PING over TLS may go unanswered before
// ping looks for a plaintext server: far more than a handshake takes, far
// less than the default connect timeout.
const plaintextProbeAfter = time.Second

// speaksPlaintext reports whether addr answers a plaintext inline PING as a
// Valkey server does ("+PONG", or an error reply such as "-NOAUTH"). A TLS
// server answers it with an alert record or by closing, never with '+' or
// '-'.
func speaksPlaintext(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return false
	}
	return b[0] == '+' || b[0] == '-'
}

// tlsHint is what to do about a TLS client at a plaintext port.
const tlsHint = "drop --tls (and use valkey:// rather than valkeys://), or give the port the server serves TLS on (its tls-port)"

// checkMode compares what the server says it is (HELLO: mode and role) with
// what the flags ask for. A server that does not answer HELLO (older than
// Redis 6) is not checked.
func checkMode(ctx context.Context, client valkey.Client, c *connFlags, where string, write bool) error {
	hello, err := client.Do(ctx, client.B().Hello().Build()).AsMap()
	if err != nil {
		if c.cluster && client.Mode() != valkey.ClientModeCluster {
			return fmt.Errorf("--cluster: %s is not a cluster (mode %s)", where, client.Mode())
		}
		return nil
	}
	field := func(k string) string {
		m := hello[k]
		v, _ := m.ToString()
		return v
	}
	mode, role := field("mode"), field("role")
	switch {
	case mode == "sentinel":
		return fmt.Errorf("%s is a Sentinel, not a data node: name the master set with --sentinel-master NAME (or ?master_set=NAME in VALKEY_URL)", where)
	case mode == "cluster" && client.Mode() != valkey.ClientModeCluster:
		return fmt.Errorf("%s is a Valkey Cluster node, but the cluster's topology could not be read: grant the user +cluster|shards and +cluster|slots (see docs/operations.md), and check that CLUSTER INFO says cluster_state:ok", where)
	case c.cluster && client.Mode() != valkey.ClientModeCluster:
		return fmt.Errorf("--cluster: %s is not a cluster (mode %s)", where, mode)
	case write && mode == "standalone" && (role == "replica" || role == "slave"):
		return fmt.Errorf("%s is a read-only replica: give the primary's address, or the sentinels' with --sentinel-master", where)
	}
	return nil
}

// describeRefusal turns an error that the server will keep returning
// (lock.ErrMisconfigured) into one line that names the user and points to
// the ACL documentation; other errors are returned as they are.
func describeRefusal(opt valkey.ClientOption, err error) error {
	if !errors.Is(err, lock.ErrMisconfigured) {
		return err
	}
	user := opt.Username
	if user == "" {
		user = "default"
	}
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	if !strings.Contains(msg, "docs/operations.md") {
		msg += " (the permissions baton needs are in the ACL section of docs/operations.md)"
	}
	return fmt.Errorf("the server refuses what baton needs (user %q): %s", user, msg)
}

// describe turns a connection failure into one line that says what to fix.
func describe(where string, opt valkey.ClientOption, err error) error {
	if verr, ok := valkey.IsValkeyErr(err); ok {
		msg := verr.Error()
		user := opt.Username
		if user == "" {
			user = "default"
		}
		switch {
		case strings.HasPrefix(msg, "NOAUTH"):
			return fmt.Errorf("%s requires a password: set VALKEY_PASSWORD (and VALKEY_USERNAME for an ACL user) or use VALKEY_URL (%s)", where, msg)
		case strings.HasPrefix(msg, "WRONGPASS"):
			return fmt.Errorf("%s refused the credentials of user %q: %s", where, user, msg)
		case strings.HasPrefix(msg, "NOPERM"):
			return fmt.Errorf("%s: user %q lacks a permission baton needs (see docs/operations.md): %s", where, user, msg)
		}
		return fmt.Errorf("%s: %s", where, msg)
	}
	if errors.Is(err, errPlaintext) {
		return fmt.Errorf("TLS with %s failed: %w: it answered a plaintext PING; %s", where, err, tlsHint)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("cannot reach %s: no answer within the connect timeout", where)
	}
	if m := notValkey.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("%s is not a Valkey server: it answered %s, which is not the Valkey protocol; check --addr (or the address in VALKEY_URL)", where, firstByte(m[1]))
	}
	var (
		opErr   *net.OpError
		certErr *tls.CertificateVerificationError
		recErr  tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &certErr):
		return fmt.Errorf("TLS with %s failed: %w", where, err)
	case errors.As(err, &recErr):
		return fmt.Errorf("TLS with %s failed: %w: %s", where, errPlaintext, tlsHint)
	case errors.As(err, &opErr) && opErr.Op == "remote error": // a TLS alert from the server
		hint := ""
		if strings.Contains(opErr.Err.Error(), "certificate required") {
			hint = " (give a client certificate with --tls-cert and --tls-key)"
		}
		return fmt.Errorf("TLS with %s failed: the server refused the handshake: %w%s", where, opErr.Err, hint)
	case errors.As(err, &opErr):
		cause := opErr.Err
		var sysErr *os.SyscallError
		if errors.As(cause, &sysErr) {
			cause = sysErr.Err
		}
		if opErr.Timeout() {
			return fmt.Errorf("cannot reach %s: no answer within the connect timeout", where)
		}
		hint := ""
		switch {
		case !errors.Is(cause, syscall.ECONNRESET):
		case opt.TLSConfig == nil:
			hint = " (if that port expects TLS, add --tls)"
		case len(opt.TLSConfig.Certificates) == 0:
			hint = " (if the server requires a client certificate, give it with --tls-cert and --tls-key)"
		}
		return fmt.Errorf("cannot reach %s: %w%s", where, cause, hint)
	}
	return fmt.Errorf("cannot reach %s: %w", where, err)
}

// notValkey matches valkey-go's errors for a reply that is not RESP at all:
// the first byte of the answer is not a RESP type. An HTTP server's reply
// starts with 'H' (72), an SSH server's banner with 'S' (83).
var notValkey = regexp.MustCompile(`received unknown message type: (\d+)`)

// firstByte describes the first byte of a non-RESP answer, given as the
// decimal number valkey-go reports.
func firstByte(num string) string {
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || n > 255 {
		return "something else"
	}
	b := byte(n)
	desc := fmt.Sprintf("%q", rune(b))
	switch b {
	case 'H', '<':
		desc += ", as an HTTP server does"
	case 'S':
		desc += ", as an SSH server does"
	case 0x15, 0x16:
		desc = "with a TLS record, as a TLS server does (if that port expects TLS, add --tls)"
		return desc
	}
	return "starting with " + desc
}
