package lock

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strings"

	"github.com/valkey-io/valkey-go"
)

// script is one of the lock's Lua scripts.
type script struct {
	src  string
	sha  string      // hex SHA-1 of src, for EVALSHA
	lua  *valkey.Lua // EVALSHA, then EVAL on NOSCRIPT (valkey-go)
	eval *valkey.Lua // EVAL only
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:]), lua: valkey.NewLuaScript(src), eval: valkey.NewLuaScriptNoSha(src)}
}

// scriptSet is the scripts a Lock runs: with classic Pub/Sub, or, on a
// Valkey Cluster, sharded Pub/Sub (SPUBLISH), so that a message goes to the
// shard that owns the lock's slot rather than to every node over the
// cluster bus.
type scriptSet struct {
	acquire, release, extend, check *script
}

var (
	classicScripts = newScriptSet(false)
	shardedScripts = newScriptSet(true)
)

func newScriptSet(sharded bool) scriptSet {
	pub := func(src string) string {
		if sharded {
			src = strings.ReplaceAll(src, "'PUBLISH'", "'SPUBLISH'")
			src = strings.ReplaceAll(src, "'SUBSCRIBE'", "'SSUBSCRIBE'")
		}
		return src
	}
	return scriptSet{
		acquire: newScript(pub(acquireLua)),
		release: newScript(pub(releaseLua)),
		extend:  newScript(extendLua),
		check:   newScript(pub(checkLua)),
	}
}

// run runs s on the lock's keys, as EVALSHA (EVAL after NOSCRIPT) or, with
// eval, as EVAL only. When the Lock asks for replica acknowledgement
// (Config.Replicas), a WAIT (or WAITAOF) follows in the same DoMulti: valkey-go
// sends both on one connection, the one that made the write, which is what
// WAIT counts; acked reports whether enough replicas acknowledged. Without
// it acked is always true.
func (l *Lock) run(ctx context.Context, s *script, eval bool, keys, args []string) (_ valkey.ValkeyResult, acked bool) {
	if l.cfg.Replicas == 0 {
		if eval {
			return s.eval.Exec(ctx, l.client, keys, args), true
		}
		return s.lua.Exec(ctx, l.client, keys, args), true
	}
	b := l.client.B()
	wait := l.waitCmd(keys[0])
	if !eval {
		res := l.client.DoMulti(ctx, b.Evalsha().Sha1(s.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
		if verr, ok := valkey.IsValkeyErr(res[0].Error()); !ok || !verr.IsNoScript() {
			return res[0], l.acked(res[1])
		}
		wait = l.waitCmd(keys[0])
	}
	res := l.client.DoMulti(ctx, b.Eval().Script(s.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
	return res[0], l.acked(res[1])
}

// waitCmd builds the WAIT (or WAITAOF) that follows a write, routed to the
// node of key on a cluster.
func (l *Lock) waitCmd(key string) valkey.Completed {
	b := l.client.B()
	ms := l.cfg.ReplicaTimeout.Milliseconds()
	if l.cfg.AOF {
		return b.Waitaof().Numlocal(1).Numreplicas(int64(l.cfg.Replicas)).Timeout(ms).Build().SetSlot(key)
	}
	return b.Wait().Numreplicas(int64(l.cfg.Replicas)).Timeout(ms).Build().SetSlot(key)
}

// acked reads a WAIT (or WAITAOF) reply: whether enough replicas (and the
// primary's own AOF) acknowledged.
func (l *Lock) acked(r valkey.ValkeyResult) bool {
	if l.cfg.AOF {
		v, err := r.AsIntSlice()
		return err == nil && len(v) == 2 && v[0] >= 1 && v[1] >= int64(l.cfg.Replicas)
	}
	n, err := r.AsInt64()
	return err == nil && n >= int64(l.cfg.Replicas)
}
