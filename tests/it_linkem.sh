#!/bin/sh
# it_linkem.sh - sift-linkem, the thin-link emulator the thin-link tests and
# contrib/thinlink rely on, proved against a real redis-server on loopback:
# delay, rate, stall, cut and cut-after, exact byte counters, seeded loss
# that delays but never corrupts, the stats file, and its refusal of any
# address but loopback.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

LINKEM=$top_builddir/sift-linkem
it_need "$LINKEM"
it_need_redis

D=$IT_TMP
RP=$(free_port)
it_redis_start 10 "$D/redis" "$RP" "$D/redis.log" ||
	{ fail "redis-server did not start"; cat "$D/redis.log" >&2; it_done; }

LP=$(free_port)
CTL=$D/ctl
it_linkem_start "$LP" "$RP" "$CTL" --delay-ms 100 --seed 7 --stats "$D/stats" \
	--pidfile "$D/pid" ||
	{ fail "sift-linkem did not start"; cat "$CTL.log" >&2; it_done; }
LINKEM_PID=$IT_LINKEM_PID
check "the pidfile holds its PID" [ "$(cat "$D/pid")" = "$LINKEM_PID" ]

ms_now() { echo $(($(date +%s%N) / 1000000)); }
ge() { [ "$1" -ge "$2" ] || { echo "  $1 < $2" >&2; return 1; }; }
lt() { [ "$1" -lt "$2" ] || { echo "  $1 >= $2" >&2; return 1; }; }
# timed OUT COMMAND...: runs it, stdout to OUT; the elapsed ms in $ELAPSED.
timed() {
	_o=$1
	shift
	_t0=$(ms_now)
	"$@" >"$_o" 2>"$_o.err"
	ELAPSED=$(($(ms_now) - _t0))
}
via() { redis-cli -h 127.0.0.1 -p "$LP" "$@"; }
direct() { redis-cli -h 127.0.0.1 -p "$RP" "$@"; }
stat() { it_linkem_stat "$CTL" "$1"; }
# RESP size of a bulk reply of N bytes: "$N\r\n<N bytes>\r\n".
bulk_bytes() { echo $((1 + ${#1} + 2 + $1 + 2)); }

# ------------------------------------------------------------ delay
timed "$D/ping" via PING
check "PING through the link answers PONG" grep -qx PONG "$D/ping"
check "a round trip through 100 ms one way takes >= 200 ms (${ELAPSED} ms)" ge "$ELAPSED" 200
check "... and < 400 ms" lt "$ELAPSED" 400

# ------------------------------------------------------------ rate and counters
# 64 KiB of printable bytes, no newline (redis-cli -x would keep one).
head -c 49152 /dev/urandom | base64 -w0 >"$D/v64"
SIZE=$(wc -c <"$D/v64")
direct -x SET v64 <"$D/v64" >/dev/null
it_linkem_ctl "$CTL" set rate 256000 >/dev/null
it_linkem_ctl "$CTL" reset >/dev/null
timed "$D/get64" via GET v64
check "the 64 KiB value arrives intact at 256 kbit/s" \
	sh -c "head -c $SIZE '$D/get64' | cmp -s - '$D/v64'"
check "64 KiB at 256 kbit/s takes >= 2 s (${ELAPSED} ms)" ge "$ELAPSED" 2000
# RESP: "*2\r\n$3\r\nGET\r\n$3\r\nv64\r\n" goes up.
up_want=22
down_want=$(bulk_bytes "$SIZE")
check "bytes up counted exactly ($(stat up) of $up_want)" [ "$(stat up)" = "$up_want" ]
check "bytes down counted exactly ($(stat down) of $down_want)" [ "$(stat down)" = "$down_want" ]
check "one connection counted" [ "$(stat conns)" = 1 ]
it_linkem_ctl "$CTL" set rate 0 >/dev/null
timed "$D/get64b" via GET v64
check "without a rate it takes far less (${ELAPSED} ms < 1000)" lt "$ELAPSED" 1000

# ------------------------------------------------------------ stall
it_linkem_ctl "$CTL" set delay 10 >/dev/null
# Timed from before the stall is asked for: the PING cannot be answered
# before the stall ends, however long a loaded machine takes to start it.
_t_stall=$(ms_now)
check "stall is acknowledged" sh -c "'$LINKEM' --ctl '$CTL' stall 1500 | grep -q '^ok'"
via PING >"$D/pstall" 2>"$D/pstall.err"
ELAPSED=$(($(ms_now) - _t_stall))
check "a PING during a 1.5 s stall waits for its end (${ELAPSED} ms >= 1450)" ge "$ELAPSED" 1450
check "... and then answers" grep -qx PONG "$D/pstall"

# ------------------------------------------------------------ cut
it_linkem_ctl "$CTL" reset >/dev/null
via BLPOP nothing-comes 20 >"$D/blpop" 2>&1 &
BL=$!
it_track "$BL"
wait_for 5 sh -c "[ \"\$('$LINKEM' --ctl '$CTL' stats | sed -n 's/.* open=\([0-9]*\) .*/\1/p')\" = 1 ]"
sleep 0.2
t0=$(ms_now)
check "cut closes the open connection" \
	sh -c "'$LINKEM' --ctl '$CTL' cut | grep -q '^ok cut 1 connections'"
wait_for 5 sh -c "! kill -0 $BL 2>/dev/null"
dt=$(($(ms_now) - t0))
check "redis-cli sees the connection drop at once (${dt} ms)" lt "$dt" 2000
wait "$BL" 2>/dev/null
it_untrack "$BL"
check "... as an error, not a reply" sh -c "! grep -qx '(nil)' '$D/blpop' && [ -s '$D/blpop' ]"
check "the cut is counted" [ "$(stat cuts)" = 1 ]
timed "$D/pcut" via PING
check "a new connection works after the cut" grep -qx PONG "$D/pcut"

# cut-after: exactly that many bytes reach the client, then the link drops.
it_linkem_ctl "$CTL" reset >/dev/null
it_linkem_ctl "$CTL" cut-after 10000 >/dev/null
timed "$D/gcut" via GET v64
check "cut-after delivers exactly 10000 bytes downstream ($(stat down))" [ "$(stat down)" = 10000 ]
check "... and then cuts" [ "$(stat cuts)" = 1 ]
check "redis-cli does not get the whole value" sh -c "! head -c $SIZE '$D/gcut' | cmp -s - '$D/v64'"
# cut-after BYTES TIMES: a cut after each BYTES, TIMES times, then none.
it_linkem_ctl "$CTL" reset >/dev/null
it_linkem_ctl "$CTL" cut-after 5000 2 >/dev/null
via GET v64 >/dev/null 2>&1
via GET v64 >/dev/null 2>&1
check "cut-after 5000 2 cuts twice, at 5000 and 10000 bytes ($(stat cuts), $(stat down))" \
	[ "$(stat cuts)/$(stat down)" = 2/10000 ]
via GET v64 >"$D/gafter" 2>&1
check "... and then lets a whole value through" sh -c "head -c $SIZE '$D/gafter' | cmp -s - '$D/v64'"

# ------------------------------------------------------------ loss
head -c 786432 /dev/urandom | base64 -w0 >"$D/v1m"
SIZE=$(wc -c <"$D/v1m")
direct -x SET v1m <"$D/v1m" >/dev/null
it_linkem_ctl "$CTL" set delay 5 >/dev/null
timed "$D/g1m0" via GET v1m
clean=$ELAPSED
it_linkem_ctl "$CTL" set loss 0.01 >/dev/null
it_linkem_ctl "$CTL" reset >/dev/null
timed "$D/g1m" via GET v1m
check "1 MiB with 1% loss round-trips intact" \
	sh -c "[ \$(wc -c <'$D/g1m') = $((SIZE + 1)) ] && head -c $SIZE '$D/g1m' | cmp -s - '$D/v1m'"
check "loss costs at least one retransmission timeout (${ELAPSED} ms vs ${clean} ms)" \
	ge "$ELAPSED" $((clean + 200))
check "every byte is counted once despite the loss" [ "$(stat down)" = "$(bulk_bytes "$SIZE")" ]
via -x SET v1mc <"$D/v1m" >/dev/null
check "1 MiB written upstream through the loss arrives intact" \
	sh -c "redis-cli -h 127.0.0.1 -p $RP GET v1mc | head -c $SIZE | cmp -s - '$D/v1m'"

# ------------------------------------------------------------ stats file, signals
kill -USR1 "$LINKEM_PID"
check "SIGUSR1 writes the stats file" wait_for 5 grep -q '^up=[0-9]* down=[0-9]* conns=' "$D/stats"
kill "$LINKEM_PID"
check "SIGTERM ends it" wait_for 5 sh -c "! kill -0 $LINKEM_PID 2>/dev/null"
wait "$LINKEM_PID"
check "... with status 0" [ $? = 0 ]
it_untrack "$LINKEM_PID"
check "the control socket and the pidfile are removed" sh -c "[ ! -e '$CTL' ] && [ ! -e '$D/pid' ]"

# ------------------------------------------------------------ loopback only
P2=$(free_port)
# refused WHAT OUTPUT RC: it failed, said why, and never listened.
refused() {
	[ "$3" != 0 ] && printf '%s\n' "$2" | grep -q "$1" && ! ss -ltn | grep -q ":$P2 "
}
out=$("$LINKEM" --listen 127.0.0.1:"$P2" --to 192.0.2.1:6379 2>&1)
check "a non-loopback --to is refused" refused 'not a loopback address' "$out" $?
out=$("$LINKEM" --listen 0.0.0.0:"$P2" --to 127.0.0.1:"$RP" 2>&1)
check "a non-loopback --listen is refused" refused 'not a loopback address' "$out" $?
out=$("$LINKEM" --listen 127.0.0.1:"$P2" --to localhost:"$RP" 2>&1)
check "a name instead of an address is refused" refused 'not a numeric address' "$out" $?

it_done
