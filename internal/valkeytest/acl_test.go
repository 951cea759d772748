package valkeytest

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestACLIsTheDocumentedUser: the rules the tests grant are the ones
// docs/operations.md tells operators to grant, so the failure tests that
// take one away test the documented user.
func TestACLIsTheDocumentedUser(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	cmd := regexp.MustCompile(`(?s)valkey-cli ACL SETUSER baton on '>CHANGE-ME' (.*?)\n` + "```").FindSubmatch(doc)
	if cmd == nil {
		t.Fatal("no ACL SETUSER baton command in docs/operations.md")
	}
	var documented []string
	for _, f := range strings.Fields(strings.ReplaceAll(string(cmd[1]), "\\\n", " ")) {
		documented = append(documented, strings.Trim(f, "'"))
	}
	want, got := slices.Sorted(slices.Values(documented)), slices.Sorted(slices.Values(ACL))
	if !slices.Equal(got, want) {
		t.Errorf("ACL = %v\ndocs/operations.md grants %v", got, want)
	}
	if w := Without(ACL, "+time", "-@all"); len(w) != len(ACL)-2 || slices.Contains(w, "+time") || len(ACL) != len(got) {
		t.Errorf("Without(ACL, +time, -@all) = %v", w)
	}
}
