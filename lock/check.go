package lock

import (
	"context"
	"fmt"
	"strings"
)

// checkLua asks the server's ACL, without running anything, whether the
// calling user may run every command the lock's scripts and calls need, on
// the lock's own keys and channel. Valkey checks the commands a script runs
// against the caller's ACL, so a missing +time fails an acquisition although
// baton never sends TIME itself. It returns the refused commands, each with
// the key or channel it was checked on.
//
// KEYS: lock, fence, queue. ARGV[1] = the lock's channel, ARGV[2] = its
// grant channel, ARGV[3] = the replica acknowledgement the lock sends after
// its writes: "WAIT", "WAITAOF" or "" (Config.Replicas, Config.AOF).
// On a cluster the sharded set of scripts checks SPUBLISH and SSUBSCRIBE.
var checkLua = `
local refused = {}
local function need(...)
  if not redis.acl_check_cmd(...) then
    refused[#refused + 1] = table.concat({...}, ' ', 1, math.min(select('#', ...), 2))
  end
end
need('EVALSHA', '0000000000000000000000000000000000000000', '0')
need('PTTL', KEYS[1])
need('GET', KEYS[1])
need('SET', KEYS[1], 'x')
need('PEXPIRE', KEYS[1], '1')
need('DEL', KEYS[1])
need('EXISTS', KEYS[1])
need('TIME')
need('SET', KEYS[2], 'x')
need('GET', KEYS[2])
need('PUBLISH', ARGV[1], 'x')
need('SUBSCRIBE', ARGV[1])
need('PUBLISH', ARGV[2], 'x')
need('SUBSCRIBE', ARGV[2])
need('LPOP', KEYS[3])
need('RPUSH', KEYS[3], 'x')
need('LPUSH', KEYS[3], 'x')
need('LPOS', KEYS[3], 'x')
need('LREM', KEYS[3], '1', 'x')
need('INCR', KEYS[2])
need('PERSIST', KEYS[1])
need('MULTI')
need('EXEC')
if ARGV[3] == 'WAIT' then
  need('WAIT', '1', '0')
elseif ARGV[3] == 'WAITAOF' then
  need('WAITAOF', '1', '1', '0')
end
return refused
`

// Check asks the server whether this client may do everything the lock does:
// the commands that its scripts run (TIME, SET, LPOP, PUBLISH, ...), on its
// keys and channels, plus SUBSCRIBE for waiting, MULTI/EXEC for Inspect, and
// WAIT (WAITAOF with Config.AOF) when Config.Replicas is set; on a Valkey
// Cluster, SPUBLISH and SSUBSCRIBE instead of PUBLISH and SUBSCRIBE. It runs
// nothing but one read-only EVAL, and changes nothing.
//
// It returns nil, or an error wrapping ErrMisconfigured that lists what the
// server refuses (or, when even EVAL is refused or unknown, the server's
// reply to it: a missing +eval, a Sentinel, a server without scripting), or
// ErrUnavailable. Elections call it before campaigning, so that a missing
// permission is reported at once rather than at the first acquisition.
// It needs Valkey 7.2 or later (Lua's server.acl_check_cmd).
func (l *Lock) Check(ctx context.Context) error {
	ack := ""
	switch {
	case l.cfg.Replicas > 0 && l.cfg.AOF:
		ack = "WAITAOF"
	case l.cfg.Replicas > 0:
		ack = "WAIT"
	}
	refused, err := l.scripts.check.eval.Exec(ctx, l.client, l.keyList, []string{l.keys.channel, l.keys.grant + l.id, ack}).AsStrSlice()
	if err != nil {
		return l.fail(ctx, "check", err)
	}
	if len(refused) > 0 {
		return l.error("check", ErrMisconfigured,
			fmt.Errorf("the server's ACL refuses this user %s (see the ACL section of docs/operations.md)", strings.Join(refused, ", ")))
	}
	return nil
}
