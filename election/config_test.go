package election

import (
	"context"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/baton-dev/baton/callbacks"
)

func validConfig() Config {
	return Config{
		Name:      "jobs",
		Identity:  "a",
		Callbacks: callbacks.Callbacks{OnElected: func(context.Context, callbacks.Term) {}},
	}
}

func TestNewValidation(t *testing.T) {
	g := newGroup(t)
	client := g.srv.Client(t)
	tests := []struct {
		name string
		mod  func(*Config)
		want []string // substrings of the error; none means valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"empty name", func(c *Config) { c.Name = "" }, []string{"election: name must not be empty"}},
		{"blank identity", func(c *Config) { c.Identity = "  " }, []string{`election: identity "  " must not be blank`}},
		{"no OnElected", func(c *Config) { c.Callbacks.OnElected = nil }, []string{"election: callbacks: OnElected is required"}},
		{"renew deadline equal to ttl", func(c *Config) { c.TTL, c.RenewDeadline = 5*time.Second, 5*time.Second },
			[]string{"election: renew deadline 5s must be less than ttl 5s"}},
		{"default renew deadline over ttl", func(c *Config) { c.TTL = 5 * time.Second },
			[]string{"election: renew deadline 10s must be less than ttl 5s"}},
		{"retry period too close to renew deadline", func(c *Config) { c.RetryPeriod = 9 * time.Second },
			[]string{"election: retry period 9s times 1.2 (10.8s) must be less than renew deadline 10s, so that a late renewal still lands in time"}},
		{"retry period at the margin", func(c *Config) { c.RenewDeadline, c.RetryPeriod = 12*time.Second, 10*time.Second },
			[]string{"election: retry period 10s times 1.2 (12s) must be less than renew deadline 12s, so that a late renewal still lands in time"}},
		{"retry period just under the margin", func(c *Config) { c.RetryPeriod = 8 * time.Second }, nil},
		{"negative ttl", func(c *Config) { c.TTL = -time.Second }, []string{"election: ttl -1s must not be negative"}},
		{"negative renew deadline", func(c *Config) { c.RenewDeadline = -time.Second }, []string{"election: renew deadline -1s must not be negative"}},
		{"negative retry period", func(c *Config) { c.RetryPeriod = -time.Second }, []string{"election: retry period -1s must not be negative"}},
		{"ttl below a millisecond", func(c *Config) {
			c.TTL, c.RenewDeadline, c.RetryPeriod = 900*time.Microsecond, 500*time.Microsecond, 100*time.Microsecond
		},
			[]string{"election: ttl 900µs is below the server's 1ms resolution"}},
		{"small but valid", func(c *Config) {
			c.TTL, c.RenewDeadline, c.RetryPeriod = 30*time.Millisecond, 20*time.Millisecond, 10*time.Millisecond
		}, nil},
		{"every problem at once", func(c *Config) { c.Name, c.Callbacks.OnElected, c.TTL = "", nil, time.Second },
			[]string{"name must not be empty", "renew deadline 10s must be less than ttl 1s", "OnElected is required"}},
		{"key prefix that breaks hash tags", func(c *Config) { c.KeyPrefix = "x}" }, []string{"election: lock: key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.mod(&cfg)
			verr := cfg.Validate()
			if (verr == nil) != (len(tt.want) == 0) && tt.name != "key prefix that breaks hash tags" {
				t.Errorf("Validate(%+v) = %v; want an error exactly when New fails (%q)", cfg, verr, tt.want)
			}
			for _, w := range tt.want {
				if verr != nil && !strings.Contains(verr.Error(), w) {
					t.Errorf("Validate(%+v) = %q; want it to contain %q", cfg, verr, w)
				}
			}
			e, err := New(client, cfg)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("New(%+v) = %v; want nil", cfg, err)
				}
				if e == nil {
					t.Fatal("New returned a nil Elector and no error")
				}
				return
			}
			if err == nil {
				t.Fatalf("New(%+v) = nil error; want %q", cfg, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New(%+v) = %q; want it to contain %q", cfg, err, w)
				}
			}
		})
	}
	if _, err := New(nil, validConfig()); err == nil || err.Error() != "election: client must not be nil" {
		t.Errorf("New(nil, cfg) = %v; want election: client must not be nil", err)
	}
}

func TestNewDefaults(t *testing.T) {
	g := newGroup(t)
	client := g.srv.Client(t)
	cfg := Config{
		Name:      "jobs",
		Callbacks: callbacks.Callbacks{OnElected: func(context.Context, callbacks.Term) {}},
	}
	before := cfg
	e, err := New(client, cfg)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	if !reflect.DeepEqual(configFields(cfg), configFields(before)) {
		t.Errorf("New changed the caller's Config: %+v; was %+v", cfg, before)
	}
	got := e.cfg
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"TTL", got.TTL, DefaultTTL},
		{"RenewDeadline", got.RenewDeadline, DefaultRenewDeadline},
		{"RetryPeriod", got.RetryPeriod, DefaultRetryPeriod},
		{"KeyPrefix", got.KeyPrefix, DefaultKeyPrefix},
		{"lock key", e.lock.Key(), "baton:election:jobs"},
		{"lock TTL", e.lock.TTL(), DefaultTTL},
	} {
		if c.got != c.want {
			t.Errorf("default %s = %v; want %v", c.field, c.got, c.want)
		}
	}
	if got.Logger == nil {
		t.Error("default Logger = nil; want slog.Default()")
	}
	host, _ := os.Hostname()
	re := regexp.MustCompile("^" + regexp.QuoteMeta(host) + "-" + strconv.Itoa(os.Getpid()) + "-[A-Za-z0-9_-]{4}$")
	if !re.MatchString(e.Identity()) {
		t.Errorf("default Identity = %q; want hostname-pid-6hex (%s)", e.Identity(), re)
	}
	e2, err := New(client, cfg)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	if e.Identity() == e2.Identity() {
		t.Errorf("two Electors got the same default identity %q; want distinct", e.Identity())
	}
}

// configFields is the comparable part of a Config (functions are not).
func configFields(c Config) []any {
	return []any{c.Name, c.Identity, c.TTL, c.RenewDeadline, c.RetryPeriod, c.KeepOnCancel, c.KeyPrefix, c.TracerProvider, c.MeterProvider, c.Logger}
}

func TestIdentityOf(t *testing.T) {
	tests := []struct{ token, want string }{
		{"a#0123", "a"},
		{"host-1-abc#ffee", "host-1-abc"},
		{"we#ird#id#9a", "we#ird#id"},
		{"plain-valkey-py-token", "plain-valkey-py-token"},
		{"#x", "#x"},
	}
	for _, tt := range tests {
		if got := identityOf(tt.token); got != tt.want {
			t.Errorf("identityOf(%q) = %q; want %q", tt.token, got, tt.want)
		}
	}
	if tok := Token("id#x"); identityOf(tok) != "id#x" || tok == Token("id#x") {
		t.Errorf("Token(%q) = %q: identity %q, or not unique", "id#x", tok, identityOf(tok))
	}
}
