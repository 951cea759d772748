package lock

import (
	"strings"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
)

func TestNewRefusesBadConfig(t *testing.T) {
	c := valkeytest.Start(t).Client(t)
	tests := []struct {
		name    string
		lock    string
		cfg     Config
		wantErr string // substring; "" = valid
	}{
		{"no ttl", "a", Config{}, "ttl must be set"},
		{"no expiry", "a", Config{TTL: NoExpiry}, ""},
		{"one millisecond", "a", Config{TTL: time.Millisecond}, ""},
		{"empty name", "", Config{TTL: time.Second}, "name must not be empty"},
		{"negative ttl", "a", Config{TTL: -time.Second}, "ttl -1s is negative"},
		{"sub-millisecond ttl", "a", Config{TTL: 500 * time.Microsecond}, "ttl 500µs is below"},
		{"negative blocking timeout", "a", Config{TTL: time.Second, BlockingTimeout: -1}, "blocking timeout -1ns is negative"},
		{"negative retry interval", "a", Config{TTL: time.Second, RetryInterval: -time.Millisecond}, "retry interval -1ms is negative"},
		{"brace without tag", "a}b", Config{TTL: time.Second, PlainKey: true}, "has a '}' but no hash tag"},
		{"empty tag", "a{}b", Config{TTL: time.Second, PlainKey: true}, "has a '}' but no hash tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(c, tt.lock, tt.cfg)
			if tt.wantErr == "" {
				if err != nil || l == nil {
					t.Fatalf("New(%q, %+v) = %v; want a lock", tt.lock, tt.cfg, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New(%q, %+v) = %v; want error containing %q", tt.lock, tt.cfg, err, tt.wantErr)
			}
		})
	}
	if _, err := New(nil, "a", Config{TTL: time.Second}); err == nil {
		t.Fatal("New(nil client) = nil error; want one")
	}
}

func TestNewDoesNotWriteCallersConfig(t *testing.T) {
	c := valkeytest.Start(t).Client(t)
	cfg := Config{TTL: time.Second}
	if _, err := New(c, "a", cfg); err != nil {
		t.Fatal(err)
	}
	if cfg != (Config{TTL: time.Second}) {
		t.Fatalf("config after New = %+v; want it untouched", cfg)
	}
}

// TestKeysShareASlot asks a real cluster-mode server which slot every key and
// channel of a lock hashes to: a script touching them never hits CROSSSLOT.
func TestKeysShareASlot(t *testing.T) {
	s := valkeytest.Start(t, valkeytest.WithArgs("--cluster-enabled", "yes"))
	e := &env{srv: s}
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"orders", Config{TTL: NoExpiry}},
		{"orders", Config{PlainKey: true}},
		{"{tenant-1}:orders", Config{TTL: NoExpiry}},
		{"{tenant-1}:orders", Config{PlainKey: true}},
		{"with spaces and ünïcode", Config{KeyPrefix: "app:"}},
		{"a{b", Config{PlainKey: true}},
	} {
		ks, err := keysFor(tt.name, tt.cfg.withDefaults())
		if err != nil {
			t.Fatalf("keysFor(%q) = %v", tt.name, err)
		}
		slot := e.srv.Int(t, "CLUSTER", "KEYSLOT", ks.key)
		for _, other := range []string{ks.fence, ks.channel} {
			if got := e.srv.Int(t, "CLUSTER", "KEYSLOT", other); got != slot {
				t.Errorf("slot(%q) = %d; want %d, the slot of %q", other, got, slot, ks.key)
			}
		}
	}
}

func TestPlainKeyIsTheName(t *testing.T) {
	e := newEnv(t)
	l := e.lock(t, "jobs:nightly", Config{TTL: time.Minute, PlainKey: true})
	if l.Key() != "jobs:nightly" {
		t.Fatalf("Key() = %q; want %q", l.Key(), "jobs:nightly")
	}
	d := e.lock(t, "jobs:nightly", Config{TTL: NoExpiry})
	if d.Key() != DefaultKeyPrefix+"jobs:nightly" {
		t.Fatalf("Key() = %q; want %q", d.Key(), DefaultKeyPrefix+"jobs:nightly")
	}
}
