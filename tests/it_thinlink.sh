#!/bin/sh
# it_thinlink.sh - the goals of sharing over a thin link (issue 15), as
# assertions, with default settings apart from the Redis address, through
# sift-linkem on loopback:
#   1. at 600 ms RTT, 5% loss, 64 kbit/s, the p99 message latency is within
#      5 ms of the same messages without Redis: no message waits on the link;
#   2. after a 10 s stall of that link, every reputation write of the
#      messages sent meanwhile has landed within 60 s of the link's return,
#      and none was counted twice;
#   3. a new node gets a 1,000-entry block list through three cuts at that
#      profile, and a 10,000-entry one through three cuts at 300 ms RTT, 2%
#      loss, 1 Mbit/s (64 kbit/s would need minutes for 10,000 entries,
#      more than the suite can spend), the 10,000 with at most 1.2x the
#      entries' own bytes on the link, the 1,000 with at most one chunk
#      (block_sync_batch) lost per cut.
# The pieces (Redis behind the link, nodes, driving messages, writes landed,
# block entries, sync) are contrib/thinlink/thinlink-lib.sh, shared with
# contrib/thinlink/thinlink.sh. About 2 minutes when the goals are met;
# bounded (about 6 minutes) when they are not.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

it_need "$top_builddir/sift-milter" "$top_builddir/sift" "$top_builddir/sift-mclient" \
	"$top_builddir/sift-linkem"
it_need_redis

TL_BUILD=$top_builddir
TL_SRC=$top_srcdir
TL_DIR=$IT_TMP
tl_track() { it_track "$1"; }
tl_untrack() { it_untrack "$1"; }
. "$top_srcdir/contrib/thinlink/thinlink-lib.sh"

MSGS=200                # messages per run, two at a time (p99: the 2nd slowest)
MSGDIR=$top_srcdir/tests/data/milter
STALL_S=10              # the link's outage in goal 2
LANDED_S=60             # goal 2's bound after the link returns
SYNC_S=120              # how long a sync may take before it counts as failed (~30 s and ~50 s)
# goal 1; under the sanitizers (SIFT_TEST_TIME_FACTOR, tests/it_lib.sh)
# every message costs several times its CPU and the slack scales with it:
# the goal itself is checked by the default build.
LAT_SLACK_MS=$((5 * ${SIFT_TEST_TIME_FACTOR:-1}))
# The links, "RTT_MS LOSS RATE_BPS"; the environment may change them to
# check this script itself on an easy link (e.g. IT_THINLINK_THIN="0 0 0").
THIN_LINK=${IT_THINLINK_THIN:-600 0.05 64000}
FAST_LINK=${IT_THINLINK_FAST:-300 0.02 1000000}
BYTES_RATIO=1.2         # goal 3

le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }
elapsed() { echo "$(($(date +%s) - T0)) s"; }
T0=$(date +%s)

tl_redis_start redis || { fail "redis-server did not start"; cat "$TL_DIR/redis.log" >&2; it_done; }
RP=$TL_REDIS_PORT
# shellcheck disable=SC2086 # three words
tl_link_start thin "$RP" $THIN_LINK || { fail "sift-linkem (thin) did not start"; it_done; }
THIN_CTL=$TL_LINK_CTL
THIN=127.0.0.1:$TL_LINK_PORT
# shellcheck disable=SC2086
tl_link_start fast "$RP" $FAST_LINK || { fail "sift-linkem (fast) did not start"; it_done; }
FAST_CTL=$TL_LINK_CTL
FAST=127.0.0.1:$TL_LINK_PORT

# run NAME SERVER: a new node, MSGS messages through it; TL_P99 etc. set, node left running.
run() {
	tl_node_conf "$1" "$2"
	tl_node_start "$1" || { fail "node $1 did not start"; cat "$TL_DIR/$1.log" >&2; it_done; }
	tl_drive "$1" "$MSGDIR" "$MSGS" || { fail "driving messages through $1 failed"; it_done; }
	echo "# $1: $TL_MSGS messages, $TL_RATE msgs/s, p50/p95/p99 $TL_P50 / $TL_P95 / $TL_P99 ms ($(elapsed))"
}

# ------------------------------------------------------------ baselines
run none none
check "no Redis: every message scored ($TL_ERRORS errors)" [ "$TL_ERRORS" = 0 ]
P99_NONE=$TL_P99
NONE_PID=$TL_NODE_PID # kept for goal 1's retries: a baseline measured beside them

run lo "127.0.0.1:$RP"
# what every later run must land: until nothing more arrives for 6 s (more
# than the write window, rep_write_window, 5 s by default)
last=-1 same=0 i=0
while { [ "$same" -lt 12 ] || [ "$last" -le 0 ]; } && [ $i -lt 120 ]; do
	sleep 0.5
	now=$(tl_writes_landed "$RP")
	[ "$now" = "$last" ] && same=$((same + 1)) || same=0
	last=$now
	i=$((i + 1))
done
PER_RUN=$last
tl_stop "$TL_NODE_PID"
check "Redis on loopback: the messages make reputation writes ($PER_RUN)" [ "$PER_RUN" -gt 0 ]
ips=$(sed -n 's/.* queue_id=[^ ]* ip=\([^ ]*\) .*/\1/p' "$TL_DIR/lo.log" | sort -u | wc -l)
check "... from $MSGS distinct clients (sift-mclient --ip-count: $ips in the log)" [ "$ips" = "$MSGS" ]

# ------------------------------------------------------------ 1. latency over the thin link
tl_rcli "$RP" FLUSHALL >/dev/null
tl_ctl "$THIN_CTL" reset >/dev/null
run thin "$THIN"
check "RTT/loss/rate $THIN_LINK: every message scored ($TL_ERRORS errors)" [ "$TL_ERRORS" = 0 ]
LAT_LIMIT=$(awk -v a="$P99_NONE" -v s="$LAT_SLACK_MS" 'BEGIN { print a + s }')
DRIVES=1 # thin-link runs before the stall, for the writes and bytes counted below
while ! le "$TL_P99" "$LAT_LIMIT" && [ "$DRIVES" -lt 3 ]; do
	# A message that waited on the link would take a round trip, 600 ms, in
	# every run. A p99 (the 2nd slowest of 200) a few ms over is the 2-core
	# machine's noise: the link emulator and Redis share the cores with the
	# node and the client, and in CI other suites may too. So the baseline
	# is measured again beside each retry (a loaded machine slows both),
	# and the thin link must meet the goal against it.
	first=$TL_P99
	tl_drive none "$MSGDIR" "$MSGS" || { fail "driving messages through none failed"; it_done; }
	P99_NONE=$TL_P99
	LAT_LIMIT=$(awk -v a="$P99_NONE" -v s="$LAT_SLACK_MS" 'BEGIN { print a + s }')
	tl_drive thin "$MSGDIR" "$MSGS" || { fail "driving messages through thin failed"; it_done; }
	DRIVES=$((DRIVES + 1))
	echo "# again after p99 $first ms: no Redis p99 $P99_NONE ms; thin p50/p95/p99 $TL_P50 / $TL_P95 / $TL_P99 ms ($(elapsed))"
	check "... and again: every message scored ($TL_ERRORS errors)" [ "$TL_ERRORS" = 0 ]
done
tl_stop "$NONE_PID"
check "goal 1: p99 latency $TL_P99 ms is within $LAT_SLACK_MS ms of no Redis ($P99_NONE ms)" \
	le "$TL_P99" "$LAT_LIMIT"

# ------------------------------------------------------------ 2. writes after a stall
tl_ctl "$THIN_CTL" stall $((STALL_S * 1000)) >/dev/null
back=$(($(date +%s) + STALL_S))
tl_drive thin "$MSGDIR" "$MSGS"
echo "# during the stall: $TL_MSGS messages, p99 $TL_P99 ms ($(elapsed))"
now=$(date +%s)
[ "$now" -lt "$back" ] && sleep $((back - now))
# the bound runs from the later of the link's return and the last message
WANT=$(((DRIVES + 1) * PER_RUN))
tl_wait_writes "$RP" "$WANT" "$LANDED_S"
check "goal 2: all $WANT writes landed within $LANDED_S s of the link's return ($TL_LANDED after ${TL_LANDED_S} s)" \
	[ "$TL_LANDED_S" != - ]
sleep 2
final=$(tl_writes_landed "$RP")
check "... each counted once ($final of $WANT)" [ "$final" = "$WANT" ]
up=$(tl_stat "$THIN_CTL" up)
down=$(tl_stat "$THIN_CTL" down)
n=$(((DRIVES + 1) * MSGS))
echo "# thin link: $up bytes up, $down down for $n messages: $(((up + down) / n)) B/msg ($(elapsed))"
tl_stop "$TL_NODE_PID"

# ------------------------------------------------------------ 3. block-list sync through cuts
# sync_goal SIZE CTL PROFILE: SIZE entries to a new node through three cuts.
sync_goal() {
	tl_rcli "$RP" FLUSHALL >/dev/null
	TL_OWN=$(tl_block_write "$RP" "$1")
	tl_node_conf "sync$1" "$2"
	tl_sync "sync$1" "$3" "$1" 3 "$SYNC_S"
	echo "# $1 entries at $4: ${TL_SYNC_S} s, $TL_SYNC_GOT in the mirror, $TL_SYNC_CUTS cuts," \
		"$TL_SYNC_DOWN bytes down, $TL_SYNC_UP up, entries' own size $TL_OWN ($(elapsed))"
	check "goal 3: a new node holds all $1 entries (got $TL_SYNC_GOT within $SYNC_S s)" \
		[ "$TL_SYNC_GOT" -ge "$1" ]
	check "... through three cuts (cut $TL_SYNC_CUTS times)" [ "$TL_SYNC_CUTS" = 3 ]
	# The goal is 1.2x for 10,000 entries. A cut costs at most one chunk
	# (block_sync_batch, 200 entries) on top of Redis's framing (~11%):
	# a fifth of a 1,000-entry list each, so that one gets its own bound.
	_r=$(awk -v n="$1" -v g="$BYTES_RATIO" 'BEGIN { r = 1.12 + 3 * 200 / n; print (r < g ? g : r) }')
	check "... with at most ${_r}x the entries' own bytes ($TL_SYNC_DOWN down for $TL_OWN)" \
		sh -c "[ $TL_SYNC_GOT -ge $1 ] && awk 'BEGIN { exit !($TL_SYNC_DOWN <= $TL_OWN * $_r) }'"
}
sync_goal 1000 "$THIN" "$THIN_CTL" "RTT/loss/rate $THIN_LINK"
sync_goal 10000 "$FAST" "$FAST_CTL" "RTT/loss/rate $FAST_LINK"

echo "# total $(elapsed)"
it_done
