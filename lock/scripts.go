package lock

import "github.com/valkey-io/valkey-go"

// The scripts run with KEYS[1] = lock key, KEYS[2] = fence counter key.
// valkey-go's Lua.Exec sends EVALSHA and falls back to EVAL on NOSCRIPT, so
// they survive SCRIPT FLUSH and server restarts at the cost of one extra
// round trip the first time.

// acquireScript sets the key if absent and, in the same step, issues the next
// fencing token: one more than the counter, but never less than the server's
// TIME in microseconds. So tokens never go backwards even when the counter is
// lost (a restart without persistence) or behind (a failover to a replica
// that missed the latest increments), as long as fewer than a million
// acquisitions a second happen and the server clock does not step back.
// The token is built from TIME's strings, not from float arithmetic, and
// stays below 2^53: exact as a Lua number, in JSON and in SQL.
//
// It publishes "acquired:<fence>" on the lock's channel, so leader watchers
// learn of a new holder without polling; waiters ignore it.
//
// ARGV[1] = token, ARGV[2] = ttl in ms (0 = no expiry), ARGV[3] = channel.
// Returns {1, fence} when acquired, {0, pttl} when held by someone else.
var acquireScript = valkey.NewLuaScript(`
local ok
if ARGV[2] == '0' then
  ok = redis.call('SET', KEYS[1], ARGV[1], 'NX')
else
  ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
end
if not ok then
  return {0, redis.call('PTTL', KEYS[1])}
end
local f = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
if f < tonumber(now) then
  redis.call('SET', KEYS[2], now)
  f = tonumber(now)
end
redis.call('PUBLISH', ARGV[3], 'acquired:' .. string.format('%d', f))
return {1, f}
`)

// releaseScript deletes the key only if it holds our token, and publishes
// "released:<fence>" so that waiters wake at once.
//
// ARGV[1] = token, ARGV[2] = channel. Returns 1 when released, 0 when not owned.
var releaseScript = valkey.NewLuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'released:' .. (redis.call('GET', KEYS[2]) or '0'))
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
