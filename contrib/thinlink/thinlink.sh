#!/bin/sh
# thinlink.sh - sift-milter with its Redis across a thin, lossy link, as an
# operator would try it: sift-linkem (tests/sift-linkem.c) between node and
# Redis at the profiles below, messages driven by sift-mclient, and a table
# of throughput, latency, reputation writes landed, bytes on the link and
# block-list sync to a new node (with and without three cuts). See README.
#
# usage: thinlink.sh [-n MESSAGES] [-w WRITE_WAIT_S] [-t SYNC_TIMEOUT_S]
#                    [-e "1000 10000"] [-p "PROFILE..."] [-S] MSGDIR
#   MSGDIR   a directory of *.eml messages (repeated to make MESSAGES)
#   -n       messages per run (default 500), two at a time
#   -w       how long to wait for the writes to land after the run (default 60)
#   -t       how long a block-list sync may take (default 120)
#   -e       block-list sizes (default "1000 10000")
#   -p       profiles "name:RTT_MS:LOSS:RATE_BPS" (default: the two of issue 15)
#   -S       no sync runs (messages only)
# env: SIFT_BUILDDIR  build directory (sift-milter, sift, sift-mclient,
#                     sift-linkem); default: . if ./sift-linkem exists
#      TL_CONF        a file of extra settings for every node with Redis
#                     (e.g. "redis_timeout = 1s"), appended to the
#                     configuration this script writes
#      TL_RULES       rules directory (default: the source tree's rules/)
#      TL_SEED        sift-linkem's loss seed (default 1)
set -u

n_msgs=500
write_wait=60
sync_to=120
sizes="1000 10000"
profiles="rtt300-loss2-256k:300:0.02:256000 rtt600-loss5-64k:600:0.05:64000"
do_sync=yes
while getopts n:w:t:e:p:S o; do
	case $o in
	n) n_msgs=$OPTARG ;;
	w) write_wait=$OPTARG ;;
	t) sync_to=$OPTARG ;;
	e) sizes=$OPTARG ;;
	p) profiles=$OPTARG ;;
	S) do_sync=no ;;
	*) sed -n '8,17p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	sed -n '8,17p' "$0" >&2
	exit 2
fi
msgdir=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
TL_SRC=$(cd "$here/../.." && pwd)
if [ -n "${SIFT_BUILDDIR:-}" ]; then
	TL_BUILD=$SIFT_BUILDDIR
elif [ -x ./sift-linkem ]; then
	TL_BUILD=.
else
	echo "thinlink.sh: set SIFT_BUILDDIR to a build directory" >&2
	exit 2
fi
TL_BUILD=$(cd "$TL_BUILD" && pwd)
for p in sift-milter sift sift-mclient sift-linkem; do
	[ -x "$TL_BUILD/$p" ] || { echo "thinlink.sh: $TL_BUILD/$p not built" >&2; exit 2; }
done
for p in redis-server redis-cli python3; do
	command -v $p >/dev/null || { echo "thinlink.sh: $p not installed" >&2; exit 2; }
done
TL_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sift-thinlink.XXXXXX")
export TL_SRC TL_BUILD TL_DIR
. "$here/thinlink-lib.sh"
cleanup() {
	tl_stop_all
	[ -n "${TL_KEEP:-}" ] && echo "kept $TL_DIR" >&2 || rm -rf "$TL_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tl_redis_start redis || { echo "thinlink.sh: redis-server did not start" >&2; exit 1; }
RP=$TL_REDIS_PORT
kb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1024 }'; }

# ------------------------------------------------------------ messages
# Each run: an empty Redis, a new node, MESSAGES messages, then up to -w
# seconds for its writes to land. "Redis on loopback" goes through a link
# without delay, loss or rate, so its bytes are counted too; its writes are
# what every other run should land.
msg_row() { printf '%-28s %6s %8s %24s %22s %10s %10s %7s\n' "$@"; }
msg_header() {
	msg_row run msgs msgs/s "p50 / p95 / p99 ms" "writes landed" "up KB" "down KB" "B/msg"
}

expected=""
# msg_run NAME SERVER CTL: SERVER "none" for no Redis; CTL the link's control or "".
msg_run() {
	_name=$1 _srv=$2 _ctl=$3
	tl_rcli "$RP" FLUSHALL >/dev/null
	tl_node_conf "m-$_name" "$_srv"
	[ -n "$_ctl" ] && tl_ctl "$_ctl" reset >/dev/null
	tl_node_start "m-$_name" || { echo "thinlink.sh: node for $_name did not start" >&2; return 1; }
	tl_drive "m-$_name" "$msgdir" "$n_msgs" || { echo "thinlink.sh: run $_name failed" >&2; return 1; }
	landed=- up=0 down=0
	if [ "$_srv" != none ]; then
		if [ -z "$expected" ]; then
			# the baseline: until something arrived and then nothing more
			# for 6 s (longer than the default rep_write_window, 5 s)
			_last=-1
			_same=0
			_i=0
			while { [ "$_same" -lt 12 ] || [ "$_last" -le 0 ]; } && [ "$_i" -lt 240 ]; do
				_i=$((_i + 1))
				sleep 0.5
				_now=$(tl_writes_landed "$RP")
				[ "$_now" = "$_last" ] && _same=$((_same + 1)) || _same=0
				_last=$_now
			done
			expected=$_last
			landed="$expected of $expected"
		elif tl_wait_writes "$RP" "$expected" "$write_wait"; then
			landed="$TL_LANDED of $expected in ${TL_LANDED_S}s"
		else
			landed="$TL_LANDED of $expected (${write_wait}s)"
		fi
	fi
	if [ -n "$_ctl" ]; then
		up=$(tl_stat "$_ctl" up)
		down=$(tl_stat "$_ctl" down)
	fi
	tl_stop "$TL_NODE_PID"
	msg_row "$_name" "$TL_MSGS" "$TL_RATE" "$TL_P50 / $TL_P95 / $TL_P99" "$landed" \
		"$(kb "$up")" "$(kb "$down")" "$(((up + down) / TL_MSGS))"
}

echo "thinlink: $n_msgs messages from $msgdir per run, two at a time; extra settings: ${TL_CONF:-none}"
[ -n "${TL_CONF:-}" ] && sed 's/^/  /' "$TL_CONF"
echo
msg_header
msg_run "no Redis" none ""
tl_link_start link-lo "$RP" 0 0 0
LO_CTL=$TL_LINK_CTL
LO_PORT=$TL_LINK_PORT
msg_run "Redis on loopback" "127.0.0.1:$LO_PORT" "$LO_CTL"
for prof in $profiles; do
	IFS=: read -r pname rtt loss rate <<EOF
$prof
EOF
	tl_link_start "link-$pname" "$RP" "$rtt" "$loss" "$rate"
	eval "CTL_$(echo "$pname" | tr -c 'a-zA-Z0-9\n' _)=\$TL_LINK_CTL"
	eval "PORT_$(echo "$pname" | tr -c 'a-zA-Z0-9\n' _)=\$TL_LINK_PORT"
	msg_run "$pname" "127.0.0.1:$TL_LINK_PORT" "$TL_LINK_CTL"
done

[ "$do_sync" = yes ] || exit 0

# ------------------------------------------------------------ block-list sync
# A new node (empty mirror) fetches the whole list: time until its mirror
# holds every entry, bytes on the link, and bytes down / the entries' own
# size (target + encoded entry). "3 cuts": the link is reset three times
# while it syncs, each after a quarter of the entries' own size went down.
sync_row() { printf '%-28s %8s %5s %9s %13s %10s %10s %10s\n' "$@"; }
echo
# cuts: asked / done (a sync that never gets far enough is not cut)
sync_row profile entries cuts "time s" "in mirror" "up KB" "down KB" "down/own"
sync_profile() {
	_pn=$1 _ctl=$2 _port=$3
	for n in $sizes; do
		tl_rcli "$RP" FLUSHALL >/dev/null
		TL_OWN=$(tl_block_write "$RP" "$n") || { echo "thinlink.sh: writing entries failed" >&2; return 1; }
		for cuts in 0 3; do
			tl_node_conf "s-$_pn-$n-$cuts" "127.0.0.1:$_port"
			tl_sync "s-$_pn-$n-$cuts" "$_ctl" "$n" "$cuts" "$sync_to"
			t=$TL_SYNC_S
			[ "$t" = - ] && t=">$sync_to"
			sync_row "$_pn" "$n" "$cuts/$TL_SYNC_CUTS" "$t" "$TL_SYNC_GOT" "$(kb "$TL_SYNC_UP")" \
				"$(kb "$TL_SYNC_DOWN")" \
				"$(awk -v d="$TL_SYNC_DOWN" -v o="$TL_OWN" 'BEGIN { printf "%.2f", d / o }')"
		done
	done
}
sync_profile loopback "$LO_CTL" "$LO_PORT"
for prof in $profiles; do
	pname=${prof%%:*}
	v=$(echo "$pname" | tr -c 'a-zA-Z0-9\n' _)
	eval "sync_profile \"$pname\" \"\$CTL_$v\" \"\$PORT_$v\""
done
