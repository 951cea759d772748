package wire

import (
	"testing"
	"time"
)

func TestFormatParse(t *testing.T) {
	for _, m := range []Msg{
		{Kind: Hello, Identity: "c1.0", Role: RoleLibrary, PID: 42, T: 7},
		{Kind: Elected, Fence: 1795671925658273, T: 8, Acquired: 6},
		{Kind: Stopped, Fence: 3, T: 9},
		{Kind: Lost, Fence: 3, T: 10},
		{Kind: Leader, Identity: NoLeader, T: 11},
		{Kind: Write, Fence: 3, T: 12},
		{Kind: Exit, Leaked: 2, T: 13},
	} {
		got, err := Parse(m.Format())
		if err != nil || got != m {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", m.Format(), got, err, m)
		}
	}
	for _, bad := range []string{"", "nope 1 2", "elected 1 2", "write x 2", "hello a b c d"} {
		if m, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %+v; want an error", bad, m)
		}
	}
}

func TestAnswer(t *testing.T) {
	for _, tc := range []struct {
		accepted bool
		highest  int64
	}{{true, 0}, {false, 99}} {
		a, h, err := ParseAnswer(Answer(tc.accepted, tc.highest))
		if err != nil || a != tc.accepted || h != tc.highest {
			t.Errorf("ParseAnswer(Answer(%v, %d)) = %v, %d, %v", tc.accepted, tc.highest, a, h, err)
		}
	}
	if _, _, err := ParseAnswer("maybe"); err == nil {
		t.Error(`ParseAnswer("maybe") succeeded; want an error`)
	}
}

func TestAtAgreesWithNow(t *testing.T) {
	// The anchor of At is read a few µs apart on the two clocks.
	const slack = int64(100 * time.Microsecond)
	before := Now()
	at := At(time.Now())
	after := Now()
	if at < before-slack || at > after+slack {
		t.Errorf("At(time.Now()) = %d; want within [%d, %d] give or take %d", at, before, after, slack)
	}
}
