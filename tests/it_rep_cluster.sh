#!/bin/sh
# it_rep_cluster.sh - a sift-milter node on a three-primary Redis Cluster on
# loopback: reputation writes and reads and the block list (publish, sync)
# go to the primary of each key's slot; then the slot of the node's busiest
# key is migrated to another primary while the node runs, through ASK (the
# key moved, the slot still migrating) and MOVED (the slot handed over),
# and the node keeps reading and writing with no error reaching a message.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MILTER=$top_builddir/sift-milter
SIFT=$top_builddir/sift
MC=$top_builddir/sift-mclient
DATA=$top_srcdir/tests/data/milter
it_need "$MILTER" "$SIFT" "$MC"
it_need_redis

D=$IT_TMP
rcli() { _p=$1; shift; redis-cli -h 127.0.0.1 -p "$_p" "$@" 2>/dev/null; }
has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in '$1'" >&2; return 1; }
num_ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

# A port whose cluster bus port (+10000) is free too.
cluster_port() {
	while :; do
		_p=$(free_port)
		[ "$_p" -lt 55000 ] || continue
		ss -ltn 2>/dev/null | grep -q ":$((_p + 10000)) " && continue
		echo "$_p"
		return 0
	done
}

PORTS=""
for n in 1 2 3; do
	p=$(cluster_port)
	it_redis_start 10 "$D/r$n" "$p" "$D/r$n.log" --cluster-enabled yes \
		--cluster-config-file "$D/r$n/nodes.conf" --cluster-node-timeout 5000 ||
		{ fail "cluster node $n did not start on $p"; cat "$D/r$n.log" >&2; it_done; }
	PORTS="$PORTS $p"
done
set -- $PORTS
P1=$1 P2=$2 P3=$3
redis-cli --cluster create "127.0.0.1:$P1" "127.0.0.1:$P2" "127.0.0.1:$P3" \
	--cluster-replicas 0 --cluster-yes >"$D/create.log" 2>&1 ||
	{ fail "redis-cli --cluster create"; cat "$D/create.log" >&2; it_done; }
cluster_ok() {
	for p in $PORTS; do
		rcli "$p" CLUSTER INFO | grep -q '^cluster_state:ok' || return 1
	done
}
check "the three-primary cluster is up" wait_for 20 cluster_ok

# Block list entries are signed: one publisher key, trusted by the node.
"$SIFT" block keygen --out "$D/pub.key" --name pub >"$D/keygen.out" 2>&1
TRUST=$(grep '^block_trusted_key = pub ' "$D/keygen.out")
check "a publisher key for the block list" [ -n "$TRUST" ]

mkdir -p "$D/n"
cat >"$D/n.conf" <<EOF
log = stderr
log_level = info
rules = $top_srcdir/tests/data/rules
add_header_score = 5
reject_score = 1000
state_dir = $D/n
deadline = 2s
redis_cluster = 127.0.0.1:$P2
redis_cluster = 127.0.0.1:$P1
redis_connect_timeout = 2s
redis_command_timeout = 2s
rep_write_window = 100ms
rep_min_observations = 3
rep_max_score = 4
block_sync_wait = 200ms
rep_cache_time = 0
# One reader: with one link per thread, the MOVED checks below know which
# links have met the moved slot (two readers take requests in any order).
rep_reader_threads = 1
block_signing_key = $D/pub.key
$TRUST
EOF
it_milter_start 10 "$D/n.conf" "$D/n" "$D/n.sock" "$D/n.log"

# send QID IP FILE: one message; the daemon's log line for it is in $D/QID.line.
send() {
	"$MC" -s "unix:$D/n.sock" -t 10000 -i "$2" -Q "$1" --tsv "$3" >"$D/$1.tsv" 2>"$D/$1.err"
	wait_for 5 grep -q "queue_id=${1}00000000 " "$D/n.log"
	grep "queue_id=${1}00000000 " "$D/n.log" | tail -1 >"$D/$1.line"
}
rules_of() { sed -n 's/.* rules=\([^ ]*\) .*/\1/p' "$D/$1.line"; }

SPAMMER=192.0.2.66
KEY="sift:r:{ip:$SPAMMER}"
SLOT=$(rcli "$P1" CLUSTER KEYSLOT "$KEY")
# The primary holding a key (the others answer MOVED).
owner() { for p in $PORTS; do [ "$(rcli "$p" EXISTS "$1")" = 1 ] && echo "$p"; done; }
# ASKING first: while the slot is importing only that lets a client read it there.
spam_ge() { num_ge "$(printf 'ASKING\nHGET %s s\n' "$KEY" | rcli "$1" | tail -1)" "$2"; }
stat_of() { rcli "$1" INFO "$2" | sed -n "s/^$3:\(calls\|count\)=\([0-9]*\).*/\2/p"; }

for i in 1 2 3 4; do send "pre$i" "$SPAMMER" "$DATA/spam.eml"; done
key_placed() { [ -n "$(owner "$KEY")" ]; }
check "spam verdicts are written to the cluster" wait_for 10 key_placed
SRC=$(owner "$KEY")
check "the key is on the primary of its slot $SLOT (port ${SRC:-none})" [ -n "$SRC" ]
check "with the four verdicts" wait_for 5 spam_ge "$SRC" 3.99
written=0
for p in $PORTS; do
	n=$(stat_of "$p" commandstats cmdstat_evalsha)
	[ "${n:-0}" -gt 0 ] && written=$((written + 1))
done
check "the entities' writes went to more than one primary ($written)" [ "$written" -ge 2 ]
send read1 "$SPAMMER" "$DATA/ham.eml"
check "the node reads the reputation back" has "$(rules_of read1)" REP_IP_SPAM

check "sift block add on the cluster" "$SIFT" -c "$D/n.conf" block add 203.0.113.0/24
ok=""
for i in 1 2 3 4 5 6 7 8 9 10; do
	send "blk$i" 203.0.113.7 "$DATA/ham.eml"
	case "$(rules_of "blk$i")" in *BLOCKLIST_IP*) ok=1; break ;; esac
	sleep 0.2
done
check "the node's sync thread enforces it" [ -n "$ok" ]

# ------------------------------------------------------------ migrate the slot
for p in $PORTS; do [ "$p" != "$SRC" ] && DST=$p && break; done
SRC_ID=$(rcli "$SRC" CLUSTER MYID)
DST_ID=$(rcli "$DST" CLUSTER MYID)
unavail0=$(grep -c "Redis unavailable" "$D/n.log")
check "slot $SLOT importing on $DST" [ "$(rcli "$DST" CLUSTER SETSLOT "$SLOT" IMPORTING "$SRC_ID")" = OK ]
check "and migrating on $SRC" [ "$(rcli "$SRC" CLUSTER SETSLOT "$SLOT" MIGRATING "$DST_ID")" = OK ]
check "MIGRATE moves the key" [ "$(rcli "$SRC" MIGRATE 127.0.0.1 "$DST" "$KEY" 0 5000)" = OK ]

# The slot is still the source's, the key is not: the node's reads get ASK.
# Its writes (the counters and the batch key, two keys of the slot) get
# TRYAGAIN on the importing node until the slot has moved: they wait, and
# the link is not failed for it.
for i in 1 2 3; do send "ask$i" "$SPAMMER" "$DATA/spam.eml"; done
wait_for 5 sh -c "[ \"\$(redis-cli -h 127.0.0.1 -p $DST INFO errorstats | sed -n 's/^errorstat_TRYAGAIN:count=\([0-9]*\).*/\1/p')\" -gt 0 ]"
t=$(stat_of "$DST" errorstats errorstat_TRYAGAIN)
check "during the migration the writes get TRYAGAIN (${t:-0} times)" [ "${t:-0}" -gt 0 ]
below() { ! spam_ge "$1" "$2"; }
check "and wait: the counter is still the 4 that migrated" below "$DST" 4.99
send askread "$SPAMMER" "$DATA/ham.eml"
check "and the node reads the key there" has "$(rules_of askread)" REP_IP_SPAM
a=$(stat_of "$SRC" errorstats errorstat_ASK)
check "the source answered ASK (${a:-0} times)" [ "${a:-0}" -gt 0 ]
a=$(stat_of "$DST" commandstats cmdstat_asking)
check "the node sent ASKING to the importing node (${a:-0} times)" [ "${a:-0}" -gt 0 ]

# The slot handed over: the node's map still names the source, which answers MOVED.
for p in $PORTS; do
	check "SETSLOT NODE on $p" [ "$(rcli "$p" CLUSTER SETSLOT "$SLOT" NODE "$DST_ID")" = OK ]
done
for i in 1 2 3; do send "mov$i" "$SPAMMER" "$DATA/spam.eml"; done
check "after the migration the writes land on the new owner" wait_for 10 spam_ge "$DST" 9.99
send movread "$SPAMMER" "$DATA/ham.eml"
check "and the node reads the key there" has "$(rules_of movread)" REP_IP_SPAM
m=$(stat_of "$SRC" errorstats errorstat_MOVED)
check "the source answered MOVED (${m:-0} times)" [ "${m:-0}" -gt 0 ]
m2=$(stat_of "$SRC" errorstats errorstat_MOVED)
send mov4 "$SPAMMER" "$DATA/spam.eml"
send movread2 "$SPAMMER" "$DATA/ham.eml"
check "the refreshed map sends the key straight to its owner" wait_for 5 spam_ge "$DST" 10.99
check "(no further MOVED)" [ "$(stat_of "$SRC" errorstats errorstat_MOVED)" = "$m2" ]

unavail1=$(grep -c "Redis unavailable" "$D/n.log")
check "no Redis failure logged through the migration" [ "$unavail1" = "$unavail0" ]
bad=""
for q in ask1 ask2 ask3 askread mov1 mov2 mov3 movread mov4 movread2; do
	grep -q ' errors=0 ' "$D/$q.err" || bad="$bad $q"
	grep -q 'action=\(accept\|add_header\|reject\)' "$D/$q.line" 2>/dev/null || bad="$bad $q"
done
check "every message got its verdict, none an error (${bad:-all fine})" [ -z "$bad" ]
check "exactly: 11 spam verdicts, none lost, none doubled" \
	awk -v v="$(rcli "$DST" HGET "$KEY" s)" 'BEGIN { exit !(v > 10.99 && v < 11.01) }'
it_done
