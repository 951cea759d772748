package random

import (
	"regexp"
	"testing"
)

func TestString(t *testing.T) {
	alphabet := regexp.MustCompile(`^[A-Za-z0-9_-]*$`)
	for _, tc := range []struct{ n, chars int }{{0, 0}, {3, 4}, {8, 11}, {16, 22}, {MaxBytes, 43}} {
		s := String(tc.n)
		if len(s) != tc.chars || !alphabet.MatchString(s) {
			t.Errorf("String(%d) = %q; want %d base64url characters", tc.n, s, tc.chars)
		}
	}
	seen := map[string]bool{}
	for range 1000 {
		s := String(8)
		if seen[s] {
			t.Fatalf("String(8) repeated %q within 1000 calls", s)
		}
		seen[s] = true
	}
}
