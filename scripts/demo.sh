#!/usr/bin/env bash
# demo.sh shows baton run failing over: three candidates on a private
# valkey-server, the leader killed with SIGKILL (a standby takes over when
# its TTL runs out), then the new leader stopped with SIGTERM (it releases on
# exit: the handoff is immediate). It measures both, stops everything it
# started and checks that no process is left. Run it with `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

TTL=2s
NAME=demo
BATON=$PWD/bin/baton # absolute: the leftover check below matches its supervisors by path

scripts/ensure-valkey.sh
echo "==> building $BATON"
go build -o "$BATON" ./cmd/baton

work=$(mktemp -d "${TMPDIR:-/tmp}/baton-demo.XXXXXX")
valkey_pid=""
watch_pid=""
declare -A cand_pid=() # identity -> pid of its baton

# alive PID: the process exists and is not a zombie.
alive() {
	[ -r "/proc/$1/stat" ] || return 1
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat:0:1}" != Z ]
}

# stop PID: SIGTERM, and SIGKILL if it is still there after 5s; then reap.
stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 100); do alive "$pid" || break; sleep 0.05; done
	kill -KILL "$pid" 2>/dev/null || true
	{ wait "$pid"; } 2>/dev/null || true
}

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	for id in "${!cand_pid[@]}"; do stop "${cand_pid[$id]}"; done
	[ -n "$watch_pid" ] && stop "$watch_pid"
	[ -n "$valkey_pid" ] && stop "$valkey_pid"
	wait 2>/dev/null || true # the output filters end with their batons
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_ms() { date +%s%3N; }

# wait_until DESCRIPTION COMMAND...: run COMMAND every 20ms until it succeeds, for at most 20s.
wait_until() {
	local what=$1 i
	shift
	for i in $(seq 1000); do
		"$@" >/dev/null && return 0
		sleep 0.02
	done
	echo "demo: timed out waiting for $what" >&2
	exit 1
}

# Start a private server on a free loopback port: no persistence, its own directory.
for attempt in 1 2 3 4 5; do
	port=$((20000 + RANDOM % 40000))
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi # taken
	valkey-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
		--logfile "$work/valkey.log" --protected-mode no >/dev/null 2>&1 &
	valkey_pid=$!
	addr=127.0.0.1:$port
	for i in $(seq 100); do
		code=0
		"$BATON" leader --addr "$addr" --name "$NAME" >/dev/null 2>&1 || code=$?
		[ "$code" = 3 ] && break # answered: no leader yet
		alive "$valkey_pid" || break
		sleep 0.05
	done
	[ "$code" = 3 ] && break
	stop "$valkey_pid"
	valkey_pid=""
done
[ -n "$valkey_pid" ] || { echo "demo: could not start valkey-server" >&2; exit 1; }
echo "==> valkey-server $(valkey-server --version | awk '{print $3}') on $addr (pid $valkey_pid, no persistence)"

# A watcher records every change of leader with its time.
"$BATON" watch --addr "$addr" --name "$NAME" >"$work/watch.log" 2>&1 &
watch_pid=$!

# Three candidates around the same small command; their output is prefixed with their name.
work_cmd='while :; do echo "working as $BATON_IDENTITY fence $BATON_FENCE"; sleep 0.5; done'
echo "==> starting three candidates: baton run --name $NAME --ttl $TTL --identity cand-N -- sh -c '$work_cmd'"
for i in 1 2 3; do
	"$BATON" run --addr "$addr" --name "$NAME" --ttl "$TTL" --identity "cand-$i" --log-level warn \
		-- sh -c "$work_cmd" "demo-$port" > >(sed -u "s/^/    [cand-$i] /") 2>&1 &
	cand_pid[cand-$i]=$!
done

leader_now() { "$BATON" leader --addr "$addr" --name "$NAME" 2>/dev/null | awk '$1 != "no" {print $1}'; }
has_leader() { [ -n "$(leader_now)" ]; }
# new_leader_since N OLD: the first line after line N of the watch log names a leader other than OLD.
new_leader_since() {
	tail -n +"$(($1 + 1))" "$work/watch.log" | awk -v old="$2" '$2 != "none" && $2 != old {print; found=1; exit} END {exit !found}'
}
line_ms() { date -d "$(echo "$1" | awk '{print $1}')" +%s%3N; }

wait_until "a leader" has_leader
first=$(leader_now)
echo "==> baton leader --name $NAME"
"$BATON" leader --addr "$addr" --name "$NAME" | sed 's/^/    /'
sleep 1.2 # let it work a little

# 1. Crash: SIGKILL the leader's baton. Its supervisor sees baton die and stops the command;
#    the standbys take over when the leadership's TTL runs out.
victim=${cand_pid[$first]}
supervisor=$(pgrep -P "$victim" -f _supervise || true)
lines=$(wc -l <"$work/watch.log")
echo "==> kill -KILL $first's baton (pid $victim)"
t_kill=$(now_ms)
kill -KILL "$victim"
{ wait "$victim"; } 2>/dev/null || true # no "Killed" job notice
unset "cand_pid[$first]"
command_stop_ms="n/a"
if [ -n "$supervisor" ]; then
	wait_until "the killed leader's command to stop" bash -c "! [ -r /proc/$supervisor/stat ] || grep -q ') Z' /proc/$supervisor/stat"
	command_stop_ms=$(($(now_ms) - t_kill))
fi
wait_until "a new leader" new_leader_since "$lines" "$first"
line=$(new_leader_since "$lines" "$first")
second=$(echo "$line" | awk '{print $2}')
crash_ms=$(($(line_ms "$line") - t_kill))
echo "==> $second took over ${crash_ms} ms after the kill (ttl $TTL); $first's command had stopped after $command_stop_ms ms"
sleep 1.2

# 2. Resign: SIGTERM the new leader's baton. The command gets SIGTERM, exits, and baton
#    releases the leadership as it exits: the last standby is woken by the release.
victim=${cand_pid[$second]}
lines=$(wc -l <"$work/watch.log")
echo "==> kill -TERM $second's baton (pid $victim)"
t_term=$(now_ms)
kill -TERM "$victim"
wait_until "a new leader" new_leader_since "$lines" "$second"
line=$(new_leader_since "$lines" "$second")
third=$(echo "$line" | awk '{print $2}')
handoff_ms=$(($(line_ms "$line") - t_term))
status=0
wait "$victim" || status=$?
unset "cand_pid[$second]"
echo "==> $third took over ${handoff_ms} ms after the SIGTERM; $second's baton exited with status $status (its command's)"
sleep 1.2

echo "==> leadership changes seen by baton watch:"
sed 's/^/    /' "$work/watch.log"

# Stop everything and check that nothing is left.
for id in "${!cand_pid[@]}"; do stop "${cand_pid[$id]}"; done
cand_pid=()
stop "$watch_pid"
watch_pid=""
stop "$valkey_pid"
valkey_pid=""
wait 2>/dev/null || true
left=$(pgrep -f "demo-$port|127\.0\.0\.1:$port|$BATON _supervise" || true)

cat <<EOF

Summary
  first leader                    $first
  crash (SIGKILL) failover        $first -> $second in $crash_ms ms  (standbys wait for the ttl of $TTL to run out)
  killed leader's command stopped $command_stop_ms ms after the kill  (baton's supervisor saw it die)
  resign (SIGTERM) handoff        $second -> $third in $handoff_ms ms  (baton releases the leadership on exit)
  processes left behind           ${left:-none}
EOF
[ -z "$left" ]
