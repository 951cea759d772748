package lock

import (
	"fmt"
	"time"

	"github.com/valkey-io/valkey-go"
)

// The acquire and release scripts run with KEYS[1] = lock key, KEYS[2] =
// fence counter key, KEYS[3] = waiters key (see keyset). valkey-go's Lua.Exec
// sends EVALSHA and falls back to EVAL on NOSCRIPT while the caller's context
// is alive, so they survive SCRIPT FLUSH and server restarts at the cost of
// one extra round trip the first time; calls that must run after their
// caller has gone are sent as EVAL (releaseEval).
//
// No script writes before a step that can fail (an ACL refusal, a key of the
// wrong type): each checks and reads first and writes last, so a refused
// script leaves the lock as it found it.
//
// Each server.call costs far more than the command it runs (about 1 µs
// against 0.1-0.4 µs on Valkey 8.0), and each EVALSHA about 3 µs before its
// first call, so the number of calls on the common paths is what the scripts
// are shaped by: an uncontended acquire is 3 calls, a release 2.

// fenceLua issues the next fencing token into f: the server's TIME in
// microseconds, or one more than the counter when the counter is not behind
// the clock. So tokens strictly increase while the counter lasts, and never
// go backwards even when it is lost (a restart without persistence) or
// behind (a failover to a replica that missed the latest writes), as long as
// fewer than a million acquisitions a second happen and the server clock
// does not step back. The token stays below 2^53 (TIME's seconds * 10^6 +
// microseconds, exact in a Lua number, in JSON and in SQL) and is written
// with '%d': Lua's default number formatting keeps only 14 digits.
//
// The counter is read and written by one SET ... GET: since the counter is
// almost always behind the clock (one increment per acquisition against a
// million microseconds a second), the second SET is the rare path. A counter
// that is not a number is replaced by the clock, not an error.
//
// It runs before the lock key is written, and is the only write that may
// precede a step that can fail (an announcement refused by the ACL, say):
// a counter that moved on without an acquisition is harmless, since tokens
// only have to increase. A lock key set before a failing step would name a
// holder that never got its token (a phantom holder, for a whole TTL).
const fenceLua = `
local t = redis.call('TIME')
local f = t[1] * 1000000 + t[2]
local last = tonumber(redis.call('SET', KEYS[2], string.format('%d', f), 'GET'))
if last and last >= f then
  f = last + 1
  redis.call('SET', KEYS[2], string.format('%d', f))
end
`

// setLua sets the lock key to ARGV[tok] with the ttl ARGV[ttl] (0 = none):
// the last step of a script that acquires or grants, so that nothing can fail
// after it.
func setLua(tok, ttl int) string {
	return fmt.Sprintf(`
if ARGV[%[2]d] == '0' then
  redis.call('SET', KEYS[1], ARGV[%[1]d])
else
  redis.call('SET', KEYS[1], ARGV[%[1]d], 'PX', ARGV[%[2]d])
end
`, tok, ttl)
}

// acquireScript sets the key if it is free and, in the same step, issues the
// next fencing token (fenceLua). With announce it publishes
// "acquired:<fence>" on the lock's channel, for followers such as election
// watchers; the message reaches them only once the script has finished, so
// publishing before the key is set is invisible to them, and a refused
// PUBLISH fails the script before the key is written.
//
// A caller that will wait when the lock is held passes its Lock's waiter id:
// a failed attempt then registers it in the waiters key (PX ARGV[6]), so the
// holder's release publishes and, while the id is the only one there, may
// grant the lock to the next waiter of its own Lock (releaseScript). Two
// different ids make the value '*': waiters of several Locks (processes).
//
// ARGV[1] = token, ARGV[2] = ttl in ms (0 = no expiry), ARGV[3] = channel,
// ARGV[4] = '1' to announce, ARGV[5] = waiter id and ARGV[6] = its
// registration's ttl in ms (both absent for a caller that will not wait).
// Returns the fence (> 0) when acquired; when held by someone else,
// -2 - PTTL: -1 for a key without TTL, -2 - ms otherwise. One integer, not a
// table: no reply array to build on the server or decode on the client.
var acquireScript = valkey.NewLuaScript(acquireLua)

var acquireLua = `
local pttl = redis.call('PTTL', KEYS[1])
if pttl ~= -2 then
  if ARGV[5] then
    local prev = redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6], 'GET')
    if prev and prev ~= ARGV[5] then
      redis.call('SET', KEYS[3], '*', 'PX', ARGV[6])
    end
  end
  return -2 - pttl
end
` + fenceLua + `
if ARGV[4] == '1' then
  redis.call('PUBLISH', ARGV[3], string.format('acquired:%d', f))
end
` + setLua(1, 2) + `
return f
`

// acquireHeldBy decodes the reply of acquireScript when the lock is held by
// someone else (a reply < 0): the holder's remaining TTL, negative when its
// key has none.
func acquireHeldBy(reply int64) time.Duration {
	pttl := -2 - reply
	if pttl < 0 {
		return -1
	}
	return time.Duration(pttl) * time.Millisecond
}

// releaseScript ends an acquisition whose token is still at the key, in one
// of two ways.
//
// Grant: when the caller names the next waiter of its own Lock (ARGV[6]) and
// no waiter of another Lock is registered, the key goes straight to that
// waiter's token with a fresh TTL and a new fencing token: a handoff in one
// round trip, without the key ever being free. A waiter of another Lock
// registered in the waiters key turns the grant into a plain release, so
// other processes are never starved by a Lock passing the key around
// among its own waiters. As in acquireScript, the fence and the
// announcements come before the key is written.
//
// Release: the key and the waiters key are deleted, and "released:<fence>"
// (ARGV[4]) is published when a waiter was registered or with announce.
// The *Held knows its fence, so the script does not read the counter; a
// caller that does not know the fence (the cleanup of an acquire whose reply
// was lost) omits ARGV[4], and the script publishes the counter, which is
// that acquisition's fence since nobody else can acquire while the key is
// held. The PUBLISH follows the DEL (whose count says whether a waiter was
// registered), so it is a protected call: a PUBLISH the ACL refuses leaves
// the release done and is reported as -3, never as a failed release.
//
// ARGV[1] = token, ARGV[2] = channel, ARGV[3] = '1' to announce, ARGV[4] =
// message (optional); to grant, ARGV[5] = the caller's waiter id, ARGV[6] =
// the next waiter's token, ARGV[7] = ttl in ms (0 = no expiry).
// Returns 0 when not owned, -1 when released, -3 when released but the
// PUBLISH was refused, the new fence (> 0) when granted.
//
// releaseEval is the same script sent as EVAL, never EVALSHA: for releases
// whose caller may have gone before the reply (cleanups, and releases after
// a call whose outcome was unknown), which must run even on a server that
// comes back without the script in its cache. valkey-go falls back from
// EVALSHA to EVAL on NOSCRIPT only while the caller's context is alive.
var (
	releaseScript = valkey.NewLuaScript(releaseLua)
	releaseEval   = valkey.NewLuaScriptNoSha(releaseLua)
)

var releaseLua = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[6] then
  local w = redis.call('GET', KEYS[3])
  if not w or w == ARGV[5] then
` + fenceLua + `
    if ARGV[3] == '1' then
      redis.call('PUBLISH', ARGV[2], ARGV[4])
      redis.call('PUBLISH', ARGV[2], string.format('acquired:%d', f))
    end
` + setLua(6, 7) + `
    return f
  end
end
local msg = ARGV[4]
if not msg then
  msg = 'released:' .. (redis.call('GET', KEYS[2]) or '0')
end
if redis.call('DEL', KEYS[1], KEYS[3]) == 2 or ARGV[3] == '1' then
  if type(redis.pcall('PUBLISH', ARGV[2], msg)) == 'table' then
    return -3
  end
end
return -1
`

// extendScript changes the TTL of a key we own. ARGV[3] says how:
// 'add' adds ARGV[2] ms to the remaining TTL, 'set' sets it to ARGV[2] ms
// (both refuse a key without TTL, as valkey-py does), 'reset' sets it to
// ARGV[2] ms whatever it was (reacquire). It never deletes, recreates or
// touches a key that is not ours.
//
// Returns 1 when extended, 0 when not owned, -1 when the key has no TTL,
// -2 when the resulting TTL would be below 1 ms.
var extendScript = valkey.NewLuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[2])
if ARGV[3] ~= 'reset' then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl < 0 then
    return -1
  end
  if ARGV[3] == 'add' then
    ttl = ttl + pttl
  end
end
if ttl < 1 then
  return -2
end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`)
