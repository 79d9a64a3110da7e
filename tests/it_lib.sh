# it_lib.sh - shared helpers for the integration tests (sourced, not run).
# Gives each script a private temp dir, a PID list that an EXIT trap stops,
# bounded waits, free-port selection and assertions that count and fail
# loudly.

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$(pwd)}"
export top_srcdir top_builddir

IT_NAME=$(basename "$0" .sh)
IT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$IT_NAME.XXXXXX")
IT_PIDS=""
IT_FAILS=0
IT_PASSES=0

it_cleanup() {
	for p in $IT_PIDS; do
		kill "$p" 2>/dev/null
	done
	for p in $IT_PIDS; do
		# bounded wait: 5 s, then SIGKILL
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -9 "$p" 2>/dev/null
	done
	if [ -n "$IT_KEEP" ]; then
		echo "kept $IT_TMP"
	else
		rm -rf "$IT_TMP"
	fi
}
trap it_cleanup EXIT
trap 'exit 130' INT TERM

it_track() { IT_PIDS="$IT_PIDS $1"; }
# A child stays a zombie until waited for, so "alive" means: in /proc and not Z.
it_alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit $3 != "Z" }' "/proc/$1/stat" 2>/dev/null; }
# it_stop PID: SIGTERM, up to 10 s for it to end, then SIGKILL; reaped and untracked.
it_stop() {
	kill "$1" 2>/dev/null
	_i=0
	while [ $_i -lt 100 ] && it_alive "$1"; do sleep 0.1; _i=$((_i + 1)); done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	it_untrack "$1"
}
it_untrack() {
	_l=""
	for p in $IT_PIDS; do [ "$p" = "$1" ] || _l="$_l $p"; done
	IT_PIDS=$_l
}

# TAP-style lines ("ok N - ..." / "not ok N - ..."), numbered together.
IT_N=0
pass() {
	IT_PASSES=$((IT_PASSES + 1))
	IT_N=$((IT_N + 1))
	echo "ok $IT_N - $*"
}
fail() {
	IT_FAILS=$((IT_FAILS + 1))
	IT_N=$((IT_N + 1))
	echo "FAIL - $*" >&2
	echo "not ok $IT_N - $*"
}

# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() {
	_d=$1
	shift
	if "$@"; then pass "$_d"; else fail "$_d"; fi
}

# Skips the whole script (exit 77) with a reason; only for missing tools.
skip_all() { echo "SKIP: $*"; exit 77; }
# it_need PROGRAM...: every program the test runs was built, or it fails at once.
it_need() {
	for _p in "$@"; do
		[ -x "$_p" ] || { echo "FAIL: $_p not built" >&2; exit 1; }
	done
}

# `make distcheck` re-runs the suite from a tarball; the run-tests script
# has already run the integration tests, so it asks them to stand aside.
[ -n "${SIFT_SKIP_INTEGRATION:-}" ] && skip_all "SIFT_SKIP_INTEGRATION is set"

# Ends the script: non-zero when any assertion failed.
it_done() {
	echo "$IT_NAME: $IT_PASSES passed, $IT_FAILS failed"
	[ "$IT_FAILS" -eq 0 ]
	exit $?
}

# Sanitizer builds run several times slower, more so on a loaded machine:
# contrib/run-tests.sh sets SIFT_TEST_TIME_FACTOR (a whole number, default 1)
# for them. Only start-up and slack allowances scale with it, never the bound
# under test: "deadline + 1 s of start-up" is written as
# $((DEADLINE_MS + $(scaled_ms 1000))).
SIFT_TEST_TIME_FACTOR=${SIFT_TEST_TIME_FACTOR:-1}
case $SIFT_TEST_TIME_FACTOR in
'' | *[!0-9]* | 0)
	echo "$IT_NAME: SIFT_TEST_TIME_FACTOR must be a whole number >= 1," \
		"not '$SIFT_TEST_TIME_FACTOR'" >&2
	exit 1
	;;
esac

# scaled_ms N: the allowance N ms times SIFT_TEST_TIME_FACTOR.
scaled_ms() { echo $(($1 * SIFT_TEST_TIME_FACTOR)); }

# wait_for TIMEOUT_S COMMAND...: polls every 0.1 s until the command succeeds.
wait_for() {
	_t=$(($1 * 10))
	shift
	_i=0
	while [ $_i -lt $_t ]; do
		if "$@"; then return 0; fi
		sleep 0.1
		_i=$((_i + 1))
	done
	return 1
}

# it_milter_start TIMEOUT_S CONF STATE_DIR SOCKET LOG: starts sift-milter in
# the foreground on a unix socket, tracked for the EXIT trap, its stderr
# appended to LOG; sets IT_MILTER_PID. When the socket has not appeared
# within TIMEOUT_S seconds it fails, shows the log and ends the script.
it_milter_start() {
	rm -f "$4"
	"$top_builddir/sift-milter" -f -c "$2" -d "$3" -p "unix:$4" 2>>"$5" &
	IT_MILTER_PID=$!
	it_track "$IT_MILTER_PID"
	wait_for "$1" test -S "$4" && return 0
	fail "sift-milter did not open $4 within $1 s"
	cat "$5" >&2
	it_done
}

# it_find_unbound: sets UNBOUND and UBCTL to unbound and unbound-control
# ($UNBOUND and $UNBOUND_CONTROL if set, else the installed ones).
it_find_unbound() {
	UNBOUND=${UNBOUND:-$(command -v unbound || echo /usr/sbin/unbound)}
	UBCTL=${UNBOUND_CONTROL:-$(command -v unbound-control || echo /usr/sbin/unbound-control)}
}
# it_need_unbound: it_find_unbound, then skips the script unless both exist.
it_need_unbound() {
	it_find_unbound
	[ -x "$UNBOUND" ] && [ -x "$UBCTL" ] || skip_all "unbound (Debian package unbound) is not installed"
}
# it_need_redis: skips the script unless redis-server and redis-cli are installed.
it_need_redis() {
	command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
		skip_all "redis-server / redis-cli not installed"
}

# it_unbound_conf DIR PORT [VERBOSITY] <ZONES: an unbound.conf on stdout for a
# server on 127.0.0.1:PORT that never daemonizes, drops privileges or
# recurses (names outside the caller's zones are NXDOMAIN), logs to DIR/unbound.log at
# VERBOSITY (default 1) and is controlled over the unix socket
# DIR/unbound.ctl. The caller's own server lines (local-zone, local-data,
# one a line, tab-indented) come on stdin and go in the server: clause.
it_unbound_conf() {
	cat <<EOF
server:
	interface: 127.0.0.1
	port: $2
	do-ip6: no
	do-daemonize: no
	username: ""
	chroot: ""
	directory: "$1"
	pidfile: ""
	use-syslog: no
	logfile: "$1/unbound.log"
	verbosity: ${3:-1}
	module-config: "iterator"
	access-control: 127.0.0.0/8 allow
	num-threads: 1
	so-reuseport: no
	# Every name outside the caller's zones gets NXDOMAIN from here: the
	# server never recurses, so no test can send a query off loopback.
	local-zone: "." static
EOF
	cat
	cat <<EOF
remote-control:
	control-enable: yes
	control-interface: "$1/unbound.ctl"
	control-use-cert: no
EOF
}

# it_unbound_start CONF LOG: starts "$UNBOUND" -d -c CONF (a configuration
# from it_unbound_conf), tracked for the EXIT trap, its stderr appended to
# LOG; sets IT_UNBOUND_PID. Returns non-zero when "$UBCTL" (unbound-control)
# has not seen it running within 10 s; the caller reports that its own way.
it_unbound_start() {
	"$UNBOUND" -d -c "$1" 2>>"$2" &
	IT_UNBOUND_PID=$!
	it_track "$IT_UNBOUND_PID"
	wait_for 10 sh -c "'$UBCTL' -c '$1' status >/dev/null 2>&1"
}

# it_redis_ping PORT: whether the redis-server on 127.0.0.1:PORT answers.
it_redis_ping() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }

# it_redis_start TIMEOUT_S DIR PORT LOG [ARGS...]: starts a redis-server on
# 127.0.0.1:PORT working in DIR (created), with no RDB snapshots and the
# extra ARGS (persistence: --appendonly ...), its output appended to LOG,
# tracked for the EXIT trap; sets IT_REDIS_PID. Returns non-zero when it
# does not answer within TIMEOUT_S seconds; the caller reports that.
it_redis_start() {
	_rt=$1 _rd=$2 _rp=$3 _rl=$4
	shift 4
	mkdir -p "$_rd"
	redis-server --port "$_rp" --bind 127.0.0.1 --dir "$_rd" --save '' "$@" >>"$_rl" 2>&1 &
	IT_REDIS_PID=$!
	it_track "$IT_REDIS_PID"
	wait_for "$_rt" it_redis_ping "$_rp"
}

# it_linkem_start LISTEN_PORT TARGET_PORT CONTROL_PATH [ARGS...]: starts
# sift-linkem forwarding 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT as a
# thin link (ARGS: --delay-ms N --rate BITS_PER_S --loss P --seed N --stats
# FILE), controlled over the unix socket CONTROL_PATH, tracked for the EXIT
# trap; sets IT_LINKEM_PID. Its stderr goes to CONTROL_PATH.log. Returns
# non-zero when it does not answer on CONTROL_PATH within 10 s.
it_linkem_start() {
	_ll=$1 _lt=$2 _lc=$3
	shift 3
	rm -f "$_lc"
	"$top_builddir/sift-linkem" --listen "127.0.0.1:$_ll" --to "127.0.0.1:$_lt" \
		--control "$_lc" "$@" 2>>"$_lc.log" &
	IT_LINKEM_PID=$!
	it_track "$IT_LINKEM_PID"
	wait_for 10 it_linkem_ctl "$_lc" stats >/dev/null 2>&1
}

# it_linkem_ctl CONTROL_PATH COMMAND...: one control command (stats, stall
# MS, cut, cut-after BYTES [TIMES], reset, set delay|rate|loss V); prints the reply
# line, succeeds when it is "ok ...".
it_linkem_ctl() {
	_lc=$1
	shift
	"$top_builddir/sift-linkem" --ctl "$_lc" "$@"
}

# it_linkem_stat CONTROL_PATH NAME: one counter of the stats reply (up,
# down, conns, open, cuts).
it_linkem_stat() {
	it_linkem_ctl "$1" stats | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# A TCP port on 127.0.0.1 nobody listens on (random, checked with a bind).
free_port() {
	python3 - <<'EOF' 2>/dev/null && return 0
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
	# Fallback without python: random high port not in ss's listing.
	while :; do
		_p=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
		ss -ltn 2>/dev/null | grep -q ":$_p " || { echo "$_p"; return 0; }
	done
}

# tsv_field FILE ROW_MATCH COLUMN: the column (1-based) of the first data
# row whose file column ends with ROW_MATCH.
tsv_field() {
	awk -F'\t' -v m="$2" -v c="$3" '
		!/^#/ && substr($1, length($1) - length(m) + 1) == m { print $c; exit }' "$1"
}
