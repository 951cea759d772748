package valkeytest

import "slices"

// ACL is the rules of the ACL user that docs/operations.md documents for
// baton with the default key prefix: every permission the lock, the
// elector and the baton command need. Tests give a user these rules, or
// these rules Without one, to see what each missing permission does.
var ACL = []string{
	"resetkeys", "~baton:*", "~{baton:*", "resetchannels", "&{baton:*", "-@all",
	"+ping", "+eval", "+evalsha", "+get", "+set", "+del", "+exists", "+pttl", "+pexpire",
	"+time", "+publish", "+subscribe", "+multi", "+exec",
	"+lpop", "+rpush", "+lpush", "+lpos", "+lrem", "+incr", "+persist",
}

// Without returns rules minus the ones named in drop, in order.
func Without(rules []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(rules), func(r string) bool { return slices.Contains(drop, r) })
}
