package lock

import (
	"time"

	"github.com/valkey-io/valkey-go"
)

// The scripts run with KEYS[1] = lock key, KEYS[2] = fence counter key.
// valkey-go's Lua.Exec sends EVALSHA and falls back to EVAL on NOSCRIPT, so
// they survive SCRIPT FLUSH and server restarts at the cost of one extra
// round trip the first time.

// acquireScript sets the key if absent and, in the same step, issues the next
// fencing token: the server's TIME in microseconds, or one more than the
// counter when the counter is not behind the clock. So tokens strictly
// increase while the counter lasts, and never go backwards even when it is
// lost (a restart without persistence) or behind (a failover to a replica that
// missed the latest writes), as long as fewer than a million acquisitions a
// second happen and the server clock does not step back. The token stays
// below 2^53 (TIME's seconds * 10^6 + microseconds, exact in a Lua number,
// in JSON and in SQL) and is written with '%d': Lua's default number
// formatting keeps only 14 digits.
//
// The counter is read and written by one SET ... GET: since the counter is
// almost always behind the clock (one increment per acquisition against a
// million microseconds a second), the second SET is the rare path, and an
// acquisition is 4 server calls: SET NX, TIME, SET ... GET, PUBLISH. Each
// server.call costs far more than the command it runs (about 0.7 µs against
// 0.1-0.4 µs on Valkey 8.0 with a warm cache), so their number is what counts.
// A counter that is not a number is replaced by the clock, not an error.
//
// It publishes "acquired:<fence>" on the lock's channel, so leader watchers
// learn of a new holder without polling; waiters ignore it.
//
// ARGV[1] = token, ARGV[2] = ttl in ms (0 = no expiry), ARGV[3] = channel.
// Returns the fence (> 0) when acquired; when held by someone else,
// -2 - PTTL: -1 for a key without TTL, -2 - ms otherwise. One integer, not a
// table: no reply array to build on the server or decode on the client.
var acquireScript = valkey.NewLuaScript(`
local ok
if ARGV[2] == '0' then
  ok = redis.call('SET', KEYS[1], ARGV[1], 'NX')
else
  ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
end
if not ok then
  return -2 - redis.call('PTTL', KEYS[1])
end
local t = redis.call('TIME')
local f = t[1] * 1000000 + t[2]
local last = tonumber(redis.call('SET', KEYS[2], string.format('%d', f), 'GET'))
if last and last >= f then
  f = last + 1
  redis.call('SET', KEYS[2], string.format('%d', f))
end
redis.call('PUBLISH', ARGV[3], string.format('acquired:%d', f))
return f
`)

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

// releaseScript deletes the key only if it holds our token, and publishes
// ARGV[3], "released:<fence>" with the releaser's own fence, so that waiters
// wake at once. The *Held knows its fence, so the script does not read the
// counter; a caller that does not know the fence (the cleanup of an acquire
// whose reply was lost) omits ARGV[3], and the script publishes the counter,
// which is that acquisition's fence since nobody else can acquire while the
// key is held.
//
// ARGV[1] = token, ARGV[2] = channel, ARGV[3] = message (optional).
// Returns 1 when released, 0 when not owned.
var releaseScript = valkey.NewLuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3] or ('released:' .. (redis.call('GET', KEYS[2]) or '0')))
return 1
`)

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
