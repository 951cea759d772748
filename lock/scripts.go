package lock

import (
	"fmt"
	"time"
)

// The acquire and release scripts run with KEYS[1] = lock key, KEYS[2] =
// fence counter key, KEYS[3] = queue key (see keyset). valkey-go's Lua.Exec
// sends EVALSHA and falls back to EVAL on NOSCRIPT while the caller's context
// is alive, so they survive SCRIPT FLUSH and server restarts at the cost of
// one extra round trip the first time; calls that must run after their
// caller has gone are sent as EVAL (releaseEval).
//
// No script writes before a step that can fail (an ACL refusal, a key of the
// wrong type): each checks and reads first and writes last, so a refused
// script leaves the lock as it found it. The exceptions are harmless by
// design and said where they are.
//
// Each server.call costs far more than the command it runs (about 1 µs
// against 0.1-0.4 µs on Valkey 8.0), and each EVALSHA about 3 µs before its
// first call, so the number of calls on the common paths is what the scripts
// are shaped by.
//
// # The queue
//
// Processes wait in line on the server. The queue key is a list of entries,
// "<waiter id> <token>": one per *Lock whose blocked Acquire calls wait for
// another process's holder, with the token its next acquisition is to store.
// (Goroutines of one *Lock wait in a local queue behind its one entry.) A
// release hands the key to the first entry whose *Lock still listens on its
// grant channel, GrantPrefix+id: it sets the key to the entry's token and
// publishes "granted:<fence>:<token>" there, and the count of receivers
// that PUBLISH returns tells a live waiter (1) from a process that has died
// (0: its connection, and with it its subscription, is gone), which is
// skipped. A waiter that is alive but frozen (SIGSTOP, a partition) cannot
// be told apart, so a grant sets the key for the claim window only: the
// grantee claims it (resets the TTL) before half the window has passed, if
// it still holds it by then, and an unclaimed grant expires and passes on.

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
f = t[1] * 1000000 + t[2]
local last = tonumber(redis.call('SET', KEYS[2], string.format('%d', f), 'GET'))
if last and last >= f then
  f = last + 1
  redis.call('SET', KEYS[2], string.format('%d', f))
end
`

// nextFenceLua issues the next fencing token into f when the key is handed
// on by its holder, whose fence is ARGV[floor]: one more than the counter,
// or than the holder's fence if the counter is behind it. No fence was issued
// after the holder's while it held the key (nobody else could acquire), so
// this is greater than every earlier token, as fenceLua's is, without TIME:
// one call instead of two on the handover path. A counter that is not a
// number (INCR's error, caught) is replaced.
func nextFenceLua(floor int) string {
	return fmt.Sprintf(`
f = redis.pcall('INCR', KEYS[2])
if type(f) ~= 'number' or f <= tonumber(ARGV[%[1]d]) then
  f = tonumber(ARGV[%[1]d]) + 1
  redis.call('SET', KEYS[2], string.format('%%d', f))
end
`, floor)
}

// setLua sets the lock key to token (a Lua expression) with the ttl
// ARGV[ttl] in ms (0 = none): the last step of a script that acquires or
// grants, so that nothing can fail after it.
func setLua(token string, ttl int) string {
	return fmt.Sprintf(`
if ARGV[%[2]d] == '0' then
  redis.call('SET', KEYS[1], %[1]s)
else
  redis.call('SET', KEYS[1], %[1]s, 'PX', ARGV[%[2]d])
end
`, token, ttl)
}

// acquiredMsgLua is the Lua expression of the message that announces an
// acquisition: "acquired:<fence>:<ttl ms>:<token>", with the fence in f and
// the token and ttl (in ms, 0 for none) as setLua takes them. Followers
// learn the new holder from it without reading the key (parseEvent).
func acquiredMsgLua(token string, ttl int) string {
	return fmt.Sprintf(`string.format('acquired:%%d:%%s:', f, ARGV[%[2]d]) .. %[1]s`, token, ttl)
}

// handoverLua pops queue entries until one is granted the key: the first
// whose grant channel (ARGV[prefix] .. id) has a subscriber. An entry of the
// caller's own waiter id (ARGV[self], "" for none) ends the loop with
// mine = true when stopAtSelf is set (an attempt: the key is the caller's to
// take), and is dropped otherwise (a release: it is stale, the releaser's
// own waiters are put back in line by the caller). fence is the Lua code
// that issues f, run once, at the first entry that may be granted. A PUBLISH
// the ACL refuses puts the entry back and ends the loop with refused = true:
// the grant cannot be delivered, so it is not made.
//
// On a grant it leaves grantee set to the entry's token (the caller sets the
// key, with the claim window as its TTL, once its own bookkeeping is
// written); otherwise grantee is nil.
func handoverLua(prefix, self int, stopAtSelf bool, fence string) string {
	return fmt.Sprintf(`
local grantee, mine, refused
while true do
  local e = redis.call('LPOP', KEYS[3])
  if not e then break end
  local sp = string.find(e, ' ', 1, true)
  local id, tok = '', ''
  if sp then
    id, tok = string.sub(e, 1, sp - 1), string.sub(e, sp + 1)
  end
  if id == ARGV[%[2]d] and %[4]t then
    mine = true
    break
  end
  if id ~= '' and id ~= ARGV[%[2]d] then
    if not f then
%[3]s
    end
    local n = redis.pcall('PUBLISH', ARGV[%[1]d] .. id, 'granted:' .. string.format('%%d', f) .. ':' .. tok)
    if type(n) ~= 'number' then
      redis.call('LPUSH', KEYS[3], e)
      refused = true
      break
    end
    if n > 0 then
      grantee = tok
      break
    end
  end
end
`, prefix, self, fence, stopAtSelf)
}

// acquireLua takes the key for the caller if it is free and nobody waits
// in line before the caller, issuing the next fencing token in the same step
// (fenceLua). With announce it publishes the acquisition on the lock's
// channel (acquiredMsgLua), for followers such as election watchers; the message reaches
// them only once the script has finished, so publishing before the key is
// set is invisible to them, and a refused PUBLISH fails the script before
// the key is written. A handover is different: its grant was delivered
// already, so the key must follow, and the announcement of it is a
// protected call that a refusal skips (followers then miss that message).
//
// A free key with processes waiting in line goes to the first of them that
// is alive (handoverLua), with the claim window as its TTL, unless that is
// the caller itself: newcomers do not overtake the queue. So an attempt at
// the moment a holder's TTL ran out, or a grant's claim window, is what
// passes the lock on when no release does.
//
// ARGV[1] = token, ARGV[2] = ttl in ms (0 = no expiry), ARGV[3] = channel,
// ARGV[4] = '1' to announce, ARGV[5] = how the caller waits: empty if it does not
// (TryAcquire, or no grant could reach it yet), 'push' it joins the queue
// when the key is held, 'ensure' it is in the queue, or may be (a fallback
// attempt): it is put back in line if it is not, and a grant to it that it
// has not heard of is found; ARGV[6] = its entry "<waiter id> <token>" and
// ARGV[7] = its waiter id (both empty unless it waits); ARGV[8] = the grant
// channels' prefix; ARGV[9] = the claim window in ms; ARGV[10] = '1' when
// the caller's token is of this package's making, so that a key holding it
// can only be a grant to the caller.
//
// Returns the fence (> 0) when acquired. When someone else holds the key (or
// was just handed it): -2 - PTTL, -1 for a key without TTL. With 'ensure'
// and ARGV[10], when the key holds the caller's token (a grant it missed): a
// table {fence}: the counter is that grant's fence, since nobody else can
// acquire while it holds. One integer otherwise: no reply array to build.
//
// The queue key has no TTL: entries of processes that died are dropped by
// the next handover (their grant channel has no subscriber), and a *Lock
// whose waiters all give up takes its entry out (LREM).
var acquireLua = `
local pttl = redis.call('PTTL', KEYS[1])
if pttl ~= -2 then
  if ARGV[5] == 'push' then
    redis.call('RPUSH', KEYS[3], ARGV[6])
  elseif ARGV[5] == 'ensure' then
    if ARGV[10] == '1' and redis.call('GET', KEYS[1]) == string.sub(ARGV[6], string.len(ARGV[7]) + 2) then
      return {tonumber(redis.call('GET', KEYS[2])) or 0}
    end
    if not redis.call('LPOS', KEYS[3], ARGV[6]) then
      redis.call('RPUSH', KEYS[3], ARGV[6])
    end
  end
  return -2 - pttl
end
local f
` + handoverLua(8, 7, true, fenceLua) + `
if grantee then
  if ARGV[5] == 'push' or (ARGV[5] == 'ensure' and not redis.call('LPOS', KEYS[3], ARGV[6])) then
    redis.call('RPUSH', KEYS[3], ARGV[6])
  end
  if ARGV[4] == '1' then
    redis.pcall('PUBLISH', ARGV[3], ` + acquiredMsgLua("grantee", 9) + `)
  end
` + setLua("grantee", 9) + `
  return -2 - tonumber(ARGV[9])
end
if not f then
` + fenceLua + `
end
if ARGV[4] == '1' then
  redis.call('PUBLISH', ARGV[3], ` + acquiredMsgLua("ARGV[1]", 2) + `)
end
` + setLua("ARGV[1]", 2) + `
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

// releaseLua ends an acquisition whose token is still at the key, in one
// of three ways.
//
// Handover across processes: processes wait in line (the queue), so the key
// goes to the first of them that is alive (handoverLua), set to its token
// for the claim window, with a fence one above the releaser's (nextFenceLua).
// If the releaser's own *Lock has goroutines waiting too and is not in line
// yet, it goes to the back (ARGV[9] is its entry): processes take turns, each
// serving its own waiters in order.
//
// Handover in the process: when the releaser's own entry comes first, or
// nobody else waits, and its *Lock has a next waiter whose token it made
// (ARGV[10]), the key goes straight to that token with a fresh TTL and a new
// fence: one round trip, and the key is never free. The releaser's reply
// tells the waiter; a reply that is lost is taken back by that token
// (Lock.cleanup).
//
// With announce, a handover publishes the new acquisition (acquiredMsgLua)
// before the release, so that a follower learns of the next holder before
// it hears that the last one let go, and need not read the key to find out
// who holds it now.
//
// Release: the key is deleted, and with announce "released:<fence>"
// (ARGV[4]) is published. The *Held knows its fence; a caller that does not
// (the cleanup of an acquire whose reply was lost) passes an empty message and 0 as
// ARGV[4] and ARGV[5]: the script then publishes the counter, which is that
// acquisition's fence, and issues the next fence from the counter. That
// PUBLISH follows the DEL, so it is a protected call: a PUBLISH the ACL
// refuses leaves the release done and is reported as -3, never as a failed
// release. A handover's announcements are protected calls too (they follow
// a grant the waiter may have heard): a refusal skips them and the handover
// is made.
//
// ARGV[1] = token, ARGV[2] = channel, ARGV[3] = '1' to announce, ARGV[4] =
// message (optional), ARGV[5] = the releaser's fence, ARGV[6] = the grant
// channels' prefix, ARGV[7] = ttl in ms (0 = no expiry), ARGV[8] = the claim
// window in ms, ARGV[9] = the entry "<waiter id> <token of its next waiter>"
// with which the releaser's *Lock goes back in line if another process is
// handed the key (empty: no waiter, or in line already), ARGV[10] = the
// token of the next waiter to hand the key to in the process (or empty),
// ARGV[11] = the releaser's waiter id.
//
// Returns 0 when not owned, -1 when released, -2 when handed to another
// process, -3 when released but the PUBLISH was refused, the new fence (> 0)
// when handed to the releaser's next waiter.
//
// It is sent as EVAL, never EVALSHA, for releases whose caller may have gone
// before the reply (cleanups, and releases after a call whose outcome was
// unknown), which must run even on a server that comes back without the
// script in its cache: valkey-go falls back from EVALSHA to EVAL on NOSCRIPT
// only while the caller's context is alive.
var releaseLua = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local msg = ARGV[4]
if msg == '' then
  msg = 'released:' .. (redis.call('GET', KEYS[2]) or '0')
end
local f
` + handoverLua(6, 11, true, nextFenceLua(5)) + `
if grantee then
  if ARGV[9] ~= '' then
    redis.call('RPUSH', KEYS[3], ARGV[9])
  end
  if ARGV[3] == '1' then
    redis.pcall('PUBLISH', ARGV[2], ` + acquiredMsgLua("grantee", 8) + `)
    redis.pcall('PUBLISH', ARGV[2], msg)
  end
` + setLua("grantee", 8) + `
  return -2
end
if ARGV[10] ~= '' then
  if not f then
` + nextFenceLua(5) + `
  end
  if ARGV[3] == '1' then
    redis.pcall('PUBLISH', ARGV[2], ` + acquiredMsgLua("ARGV[10]", 7) + `)
    redis.pcall('PUBLISH', ARGV[2], msg)
  end
` + setLua("ARGV[10]", 7) + `
  return f
end
redis.call('DEL', KEYS[1])
if refused then
  return -3
end
if ARGV[3] == '1' and type(redis.pcall('PUBLISH', ARGV[2], msg)) ~= 'number' then
  return -3
end
return -1
`

// extendLua changes the TTL of a key we own. ARGV[3] says how:
// 'add' adds ARGV[2] ms to the remaining TTL, 'set' sets it to ARGV[2] ms
// (both refuse a key without TTL, as valkey-py does), 'reset' sets it to
// ARGV[2] ms whatever it was (reacquire, and the claim of a grant), or
// removes the expiry when ARGV[2] is 0 (the claim of a grant on a lock
// without TTL). It never deletes, recreates or touches a key that is not
// ours.
//
// Returns 1 when extended, 0 when not owned, -1 when the key has no TTL,
// -2 when the resulting TTL would be below 1 ms.
var extendLua = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[2])
if ARGV[3] == 'reset' and ttl == 0 then
  redis.call('PERSIST', KEYS[1])
  return 1
end
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
`
