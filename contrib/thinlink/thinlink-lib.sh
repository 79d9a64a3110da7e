# thinlink-lib.sh - the pieces of a thin-link measurement, shared by
# contrib/thinlink/thinlink.sh (the operator's matrix) and
# tests/it_thinlink.sh (the goals as assertions): Redis behind sift-linkem,
# sift-milter nodes, messages driven by sift-mclient, reputation writes
# read back from Redis, block-list entries written and their sync timed.
# Sourced, not run. The caller sets:
#   TL_BUILD  build directory (sift-milter, sift, sift-mclient, sift-linkem)
#   TL_SRC    source directory (rules/, tests/data/)
#   TL_DIR    an empty work directory of its own
# and may define tl_track PID / tl_untrack PID (the test maps them to
# it_track / it_untrack); the default keeps its own list in TL_PIDS, which
# tl_stop_all stops. Only loopback is ever used; every process is stopped by
# its PID.

: "${TL_RULES:=$TL_SRC/rules}"   # the rules the nodes run
: "${TL_CLIENT_IP:=198.18.0.1}"  # the first SMTP client the messages claim (never contacted)
: "${TL_IP_COUNT:=0}"            # distinct clients (consecutive addresses); 0: one per message
: "${TL_SEED:=1}"                # sift-linkem's loss draws
: "${TL_PREFIX:=sift:}"          # redis_prefix of the nodes

if ! command -v tl_track >/dev/null 2>&1; then
	TL_PIDS=""
	tl_track() { TL_PIDS="$TL_PIDS $1"; }
	tl_untrack() {
		_l=""
		for _p in $TL_PIDS; do [ "$_p" = "$1" ] || _l="$_l $_p"; done
		TL_PIDS=$_l
	}
	tl_stop_all() { for _p in $TL_PIDS; do tl_stop "$_p"; done; }
fi

tl_ms() { echo $(($(date +%s%N) / 1000000)); }

# tl_stop PID: SIGTERM, up to 10 s, then SIGKILL; untracked.
tl_stop() {
	kill "$1" 2>/dev/null
	_i=0
	while kill -0 "$1" 2>/dev/null && [ $_i -lt 100 ]; do
		# a child stays a zombie until waited for
		awk '{ exit $3 != "Z" }' "/proc/$1/stat" 2>/dev/null && break
		sleep 0.1
		_i=$((_i + 1))
	done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	tl_untrack "$1"
}

tl_free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# tl_wait TIMEOUT_S COMMAND...: polls every 0.1 s until the command succeeds.
tl_wait() {
	_t=$(($1 * 10))
	shift
	_i=0
	while [ $_i -lt $_t ]; do
		"$@" && return 0
		sleep 0.1
		_i=$((_i + 1))
	done
	return 1
}

# ------------------------------------------------------------ Redis and the link

# tl_redis_start NAME: a redis-server on a free loopback port, no snapshots;
# sets TL_REDIS_PORT. Returns non-zero when it does not answer within 10 s.
tl_redis_start() {
	TL_REDIS_PORT=$(tl_free_port)
	mkdir -p "$TL_DIR/$1"
	redis-server --port "$TL_REDIS_PORT" --bind 127.0.0.1 --dir "$TL_DIR/$1" --save '' \
		>>"$TL_DIR/$1.log" 2>&1 &
	TL_REDIS_PID=$!
	tl_track "$TL_REDIS_PID"
	tl_wait 10 sh -c "redis-cli -h 127.0.0.1 -p $TL_REDIS_PORT ping 2>/dev/null | grep -q PONG"
}

tl_rcli() {
	_p=$1
	shift
	redis-cli -h 127.0.0.1 -p "$_p" "$@"
}

# tl_link_start NAME TARGET_PORT RTT_MS LOSS RATE_BPS: sift-linkem in front
# of 127.0.0.1:TARGET_PORT (one-way delay RTT/2, RATE 0 for none); sets
# TL_LINK_PORT, TL_LINK_CTL, TL_LINK_PID.
tl_link_start() {
	TL_LINK_PORT=$(tl_free_port)
	TL_LINK_CTL=$TL_DIR/$1.ctl
	rm -f "$TL_LINK_CTL"
	"$TL_BUILD/sift-linkem" --listen "127.0.0.1:$TL_LINK_PORT" --to "127.0.0.1:$2" \
		--delay-ms "$(awk -v r="$3" 'BEGIN { print r / 2 }')" --loss "$4" --rate "$5" \
		--seed "$TL_SEED" --control "$TL_LINK_CTL" 2>>"$TL_DIR/$1.log" &
	TL_LINK_PID=$!
	tl_track "$TL_LINK_PID"
	tl_wait 10 sh -c "'$TL_BUILD/sift-linkem' --ctl '$TL_LINK_CTL' stats >/dev/null 2>&1"
}

# tl_ctl CTL COMMAND...: one sift-linkem control command; the reply on stdout.
tl_ctl() {
	_c=$1
	shift
	"$TL_BUILD/sift-linkem" --ctl "$_c" "$@"
}

# tl_stat CTL NAME: one counter (up, down, conns, open, cuts).
tl_stat() { tl_ctl "$1" stats | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# ------------------------------------------------------------ nodes

# tl_trust: the publisher key of this run (made once in TL_DIR) and, in
# TL_TRUST, the block_trusted_key line every node gets.
tl_trust() {
	[ -f "$TL_DIR/pub.key" ] ||
		"$TL_BUILD/sift" block keygen --out "$TL_DIR/pub.key" --name thinlink >"$TL_DIR/keygen.out" 2>&1 ||
		return 1
	TL_TRUST=$(grep '^block_trusted_key = ' "$TL_DIR/keygen.out")
}

# tl_node_conf NAME SERVER: writes TL_DIR/NAME.conf for a node whose Redis is
# SERVER (host:port; "none" for no Redis), with the shipped defaults for
# everything else, trusting this run's publisher key, then the lines of the
# file TL_CONF when set. The long half-life only makes the counters sum to
# the number of increments (see tl_writes_landed); it changes neither a
# message's path nor the bytes.
tl_node_conf() {
	tl_trust || return 1
	mkdir -p "$TL_DIR/$1"
	{
		echo "log = stderr"
		echo "rules = $TL_RULES"
		echo "state_dir = $TL_DIR/$1"
		echo "rep_half_life = 365d"
		echo "$TL_TRUST"
		[ "$2" = none ] || echo "redis_server = $2"
		[ -n "${TL_CONF:-}" ] && cat "$TL_CONF"
	} >"$TL_DIR/$1.conf"
}

# tl_node_start NAME: sift-milter in the foreground on TL_DIR/NAME.sock, its
# log in TL_DIR/NAME.log; sets TL_NODE_PID. Non-zero when the socket has not
# appeared within 20 s.
tl_node_start() {
	rm -f "$TL_DIR/$1.sock"
	"$TL_BUILD/sift-milter" -f -c "$TL_DIR/$1.conf" -d "$TL_DIR/$1" -p "unix:$TL_DIR/$1.sock" \
		2>>"$TL_DIR/$1.log" &
	TL_NODE_PID=$!
	tl_track "$TL_NODE_PID"
	tl_wait 20 test -S "$TL_DIR/$1.sock"
}

# tl_drive NAME MSGDIR N: about N messages (the *.eml files of MSGDIR,
# repeated) through node NAME, two at a time, one SMTP connection each (as
# Postfix does), from TL_IP_COUNT distinct client addresses. Sets TL_MSGS, TL_ERRORS, TL_RATE (msgs/s), TL_P50, TL_P95,
# TL_P99 (ms) from sift-mclient's summary.
tl_drive() {
	_files=$(find "$2" -name '*.eml' -type f | wc -l)
	[ "$_files" -gt 0 ] || { echo "thinlink: no *.eml under $2" >&2; return 1; }
	_rep=$((($3 + _files - 1) / _files))
	_ips=$TL_IP_COUNT
	[ "$_ips" -gt 0 ] || _ips=$((_rep * _files))
	"$TL_BUILD/sift-mclient" -s "unix:$TL_DIR/$1.sock" -j 2 -n "$_rep" -i "$TL_CLIENT_IP" \
		--ip-count "$_ips" -q -e .eml "$2" 2>"$TL_DIR/$1.drive"
	_sum=$(tail -1 "$TL_DIR/$1.drive")
	TL_MSGS=$(tl_field "$_sum" messages)
	TL_ERRORS=$(tl_field "$_sum" errors)
	TL_RATE=$(tl_field "$_sum" msgs_per_s)
	TL_P50=$(tl_field "$_sum" p50_ms)
	TL_P95=$(tl_field "$_sum" p95_ms)
	TL_P99=$(tl_field "$_sum" p99_ms)
	[ -n "$TL_MSGS" ]
}
tl_field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# ------------------------------------------------------------ reputation writes

# tl_writes_landed REDIS_PORT: the counter increments that reached Redis,
# read there directly: the sum of the s and h fields of every
# <prefix>r:{kind:value} hash (see include/rep.h), rounded. Each increment
# adds 1 to one field; with the nodes' long half-life the sum decays by
# far less than one over a run.
tl_writes_landed() {
	tl_rcli "$1" EVAL "local n = 0
for _, k in ipairs(redis.call('KEYS', ARGV[1])) do
  local v = redis.call('HMGET', k, 's', 'h')
  n = n + (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
end
return string.format('%.0f', n)" 0 "${TL_PREFIX}r:*"
}

# tl_wait_writes REDIS_PORT WANT TIMEOUT_S: waits until WANT increments
# landed; TL_LANDED is what landed, TL_LANDED_S how long it took (seconds,
# or "-" when not all did within TIMEOUT_S).
tl_wait_writes() {
	_t0=$(tl_ms)
	TL_LANDED_S=-
	_end=$((_t0 + $3 * 1000))
	while :; do
		TL_LANDED=$(tl_writes_landed "$1")
		if [ "${TL_LANDED:-0}" -ge "$2" ]; then
			TL_LANDED_S=$(awk -v a="$_t0" -v b="$(tl_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
			return 0
		fi
		[ "$(tl_ms)" -ge "$_end" ] && return 1
		sleep 0.5
	done
}

# ------------------------------------------------------------ block lists

# tl_block_write REDIS_PORT N: publishes N block entries (10.x.y.z, one
# address each) straight into Redis (loopback, not through the link) with
# `sift block add --from`, signed with this run's publisher key. Prints the
# entries' own size: the bytes of every target and its signed entry as the
# snapshot hash holds them, summed.
tl_block_write() {
	tl_trust || return 1
	awk -v n="$2" 'BEGIN { for (i = 0; i < n; i++)
		printf "10.%d.%d.%d\n", int(i / 65536) % 256, int(i / 256) % 256, i % 256 }' \
		>"$TL_DIR/entries.txt"
	mkdir -p "$TL_DIR/pub"
	printf 'state_dir = %s\nredis_server = 127.0.0.1:%s\nredis_prefix = %s\nblock_signing_key = %s\n%s\n' \
		"$TL_DIR/pub" "$1" "$TL_PREFIX" "$TL_DIR/pub.key" "$TL_TRUST" >"$TL_DIR/pub.conf"
	"$TL_BUILD/sift" -c "$TL_DIR/pub.conf" block add --from "$TL_DIR/entries.txt" \
		--reason "thinlink measurement entry" >"$TL_DIR/publish.log" 2>&1 || return 1
	# --raw ends every field and value with one newline; the signatures are
	# binary, so count bytes, not lines.
	_b=$(tl_rcli "$1" --raw HGETALL "${TL_PREFIX}{bl}:state" | wc -c)
	_k=$(tl_rcli "$1" HLEN "${TL_PREFIX}{bl}:state")
	echo $((_b - 2 * _k))
}

# tl_mirror_count NAME: entries in node NAME's local mirror (`sift block
# list` reads only the mirror, never the link).
tl_mirror_count() {
	"$TL_BUILD/sift" -c "$TL_DIR/$1.conf" block list 2>/dev/null | grep -vc '^#'
}

# tl_sync NAME CTL N CUTS TIMEOUT_S: a new node NAME (configured with
# tl_node_conf, its Redis behind the link CTL) starts with an empty mirror;
# measures until its mirror holds N entries. With CUTS > 0 the link is cut
# that many times while it syncs, each cut after OWN_BYTES / (CUTS + 1) more
# bytes went down (TL_OWN: the entries' own size). Sets TL_SYNC_S (seconds,
# "-" when not done within TIMEOUT_S), TL_SYNC_GOT, TL_SYNC_UP,
# TL_SYNC_DOWN, TL_SYNC_CUTS. The node is stopped afterwards.
tl_sync() {
	_n=$1 _c=$2 _want=$3 _cuts=$4 _to=$5
	TL_SYNC_S=- TL_SYNC_GOT=0 TL_SYNC_UP=0 TL_SYNC_DOWN=0 TL_SYNC_CUTS=0
	rm -rf "${TL_DIR:?}/$_n"
	mkdir -p "$TL_DIR/$_n"
	tl_ctl "$_c" reset >/dev/null
	[ "$_cuts" -gt 0 ] && tl_ctl "$_c" cut-after $((TL_OWN / (_cuts + 1))) "$_cuts" >/dev/null
	_t0=$(tl_ms)
	tl_node_start "$_n" || { echo "thinlink: node $_n did not start" >&2; return 1; }
	_end=$((_t0 + _to * 1000))
	while :; do
		TL_SYNC_GOT=$(tl_mirror_count "$_n")
		if [ "${TL_SYNC_GOT:-0}" -ge "$_want" ]; then
			TL_SYNC_S=$(awk -v a="$_t0" -v b="$(tl_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
			break
		fi
		[ "$(tl_ms)" -ge "$_end" ] && break
		sleep 0.2
	done
	# A cut-after still pending must not hit the next run.
	tl_ctl "$_c" cut-after 0 >/dev/null
	TL_SYNC_UP=$(tl_stat "$_c" up)
	TL_SYNC_DOWN=$(tl_stat "$_c" down)
	TL_SYNC_CUTS=$(tl_stat "$_c" cuts)
	tl_stop "$TL_NODE_PID"
	[ "$TL_SYNC_S" != - ]
}
