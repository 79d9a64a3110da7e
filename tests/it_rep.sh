#!/bin/sh
# it_rep.sh - shared reputation and block lists between real sift-milter
# nodes through real redis-servers on loopback:
#   1. two nodes, one Redis (plus a replica B reads from): spam on A raises
#      the IP's score on B; `sift block add` on A is enforced on B within a
#      second; with Redis stopped both keep scoring (the mirror still
#      blocks) and nothing queued is lost; after the restart the counters
#      catch up, and a node that was down resumes its mirror where it was.
#   2. a rogue writer with access to Redis publishes 0.0.0.0/0 unsigned,
#      signed by an untrusted key, and signed by a trusted key without
#      "broad": no node blocks anything, and the nodes say why.
#   3. a primary, a replica and a Sentinel: kill the primary, the node
#      follows the promoted replica without a restart.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MILTER=$top_builddir/sift-milter
SIFT=$top_builddir/sift
MC=$top_builddir/sift-mclient
DATA=$top_srcdir/tests/data/milter
it_need "$MILTER" "$SIFT" "$MC"
it_need_redis
if "$SIFT" block 2>&1 | grep -q "unknown command"; then
	echo "FAIL: 'sift block' is not registered in milter/sift.c" >&2
	exit 1
fi

D=$IT_TMP

# ------------------------------------------------------------ helpers

rcli() { _p=$1; shift; redis-cli -h 127.0.0.1 -p "$_p" "$@" 2>/dev/null; }

# start_redis NAME PORT [ARGS...]: a redis-server with its own dir and AOF; pid in NAME_PID.
start_redis() {
	_n=$1 _p=$2
	shift 2
	it_redis_start 10 "$D/$_n" "$_p" "$D/$_n.log" --appendonly yes --appendfsync always "$@"
	_up=$?
	eval "${_n}_PID=$IT_REDIS_PID"
	[ "$_up" = 0 ] ||
		{ fail "redis $_n did not start on port $_p"; cat "$D/$_n.log" >&2; it_done; }
}


# The publisher's key (node a, and the CLI of section 3); every node trusts it.
"$SIFT" block keygen --out "$D/pub.key" --name pubA >"$D/keygen.out" 2>&1
check "sift block keygen writes a key only its owner can read" \
	sh -c "[ \"\$(stat -c %a '$D/pub.key')\" = 600 ]"
TRUST=$(grep '^block_trusted_key = pubA ' "$D/keygen.out")
check "and prints the line for the nodes" [ -n "$TRUST" ]
check "it never overwrites a key" sh -c "! '$SIFT' block keygen --out '$D/pub.key' 2>/dev/null"

# node NAME EXTRA_CONFIG: writes NAME.conf; start_node NAME starts its daemon.
node() {
	mkdir -p "$D/$1"
	cat >"$D/$1.conf" <<EOF
log = stderr
log_level = info
rules = $top_srcdir/tests/data/rules
add_header_score = 5
reject_score = 1000
state_dir = $D/$1
deadline = 2s
redis_connect_timeout = 200ms
redis_command_timeout = 200ms
# short: the checks below look for the writes within seconds
rep_write_window = 100ms
redis_breaker_failures = 3
redis_breaker_time = 500ms
redis_backoff_max = 500ms
rep_min_observations = 3
rep_max_score = 4
block_sync_wait = 200ms
# short: the test reads counts right after other nodes changed them
rep_cache_time = 300ms
$TRUST
$2
EOF
}

start_node() {
	it_milter_start 10 "$D/$1.conf" "$D/$1" "$D/$1.sock" "$D/$1.log"
	eval "${1}_PID=\$IT_MILTER_PID"
}

# send NODE QID IP FILE: one message; the daemon's log line for it is in $D/QID.line.
send() {
	"$MC" -s "unix:$D/$1.sock" -t 10000 -i "$3" -Q "$2" --tsv "$4" >"$D/$2.tsv" 2>"$D/$2.err"
	wait_for 5 grep -q "queue_id=${2}00000000 " "$D/$1.log"
	grep "queue_id=${2}00000000 " "$D/$1.log" | tail -1 >"$D/$2.line"
}
rules_of() { sed -n 's/.* rules=\([^ ]*\) .*/\1/p' "$D/$1.line"; }
score_of() { sed -n 's/.* score=\([^ ]*\) .*/\1/p' "$D/$1.line"; }
ms_of() { grep -v '^#' "$D/$1.tsv" | head -1 | cut -f6; }
has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in '$1'" >&2; return 1; }
hasnt() { case "$1" in *"$2"*) echo "  '$2' unexpectedly in '$1'" >&2; return 1 ;; esac; return 0; }
num_ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
num_lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }
spam_count() { rcli "$1" HGET "sift:r:{ip:$2}" s; }
spam_ge() { num_ge "$(spam_count "$1" "$2")" "$3"; }
ham_ge() { num_ge "$(rcli "$1" HGET "sift:r:{ip:$2}" h)" "$3"; }

# ------------------------------------------------------------ 1. two nodes, one Redis

RP=$(free_port)
RR=$(free_port)
start_redis main "$RP" --repl-diskless-sync-delay 0
start_redis rep "$RR" --replicaof 127.0.0.1 "$RP"
node a "redis_server = 127.0.0.1:$RP
block_signing_key = $D/pub.key"
node b "redis_server = 127.0.0.1:$RP
redis_replica = 127.0.0.1:$RR"
start_node a
start_node b

SPAMMER=192.0.2.66
for i in 1 2 3 4 5; do
	send a "aspam$i" "$SPAMMER" "$DATA/spam.eml"
done
check "A: spam scored by the rules" has "$(rules_of aspam1)" SIFT_IT_SPAM_SUBJ
check "A's five spam verdicts reach Redis (background writer)" \
	wait_for 5 spam_ge "$RP" "$SPAMMER" 4.99
check "the replica has them too" wait_for 5 spam_ge "$RR" "$SPAMMER" 4.99

send b bham1 "$SPAMMER" "$DATA/ham.eml"
send b bham2 198.51.100.20 "$DATA/ham.eml"
check "B: the spammer's IP now carries REP_IP_SPAM" has "$(rules_of bham1)" REP_IP_SPAM
check "B: and its /24" has "$(rules_of bham1)" REP_NET_SPAM
check "B: a new IP has no reputation" hasnt "$(rules_of bham2)" REP_IP
check "B: the same ham scores higher from the spammer's IP" \
	num_ge "$(score_of bham1)" "$(awk -v s="$(score_of bham2)" 'BEGIN { print s + 2 }')"
hm=$(rcli "$RR" INFO commandstats | grep -c '^cmdstat_hmget:')
check "B reads reputation from its replica" [ "$hm" -ge 1 ]

# B's verdict on bham1 is written within rep_write_window, then replicated
check "B's verdict on the ham reaches the replica" wait_for 5 ham_ge "$RR" "$SPAMMER" 0.99
out=$("$SIFT" -c "$D/b.conf" check --ip "$SPAMMER" "$DATA/ham.eml" 2>&1)
check "sift check explains the reputation" has "$out" "IP $SPAMMER: spam 5.0 ham 1.0"

# A block on A, enforced on B within a second.
check "sift block add on A" \
	"$SIFT" -c "$D/a.conf" block add 203.0.113.0/24 --reason "it_rep snowshoe" --expire 1h
t0=$(date +%s%N)
enforced=""
i=0
while [ $i -lt 20 ] && [ -z "$enforced" ]; do
	send b "bblk$i" 203.0.113.7 "$DATA/ham.eml"
	case "$(rules_of "bblk$i")" in *BLOCKLIST_IP*) enforced=$i ;; *) sleep 0.05 ;; esac
	i=$((i + 1))
done
dt=$((($(date +%s%N) - t0) / 1000000))
check "B enforces A's block (after ${dt} ms)" sh -c "[ -n '$enforced' ] && [ $dt -lt 1000 ]"
check "the block is in B's mirror" sh -c "'$SIFT' -c '$D/b.conf' block list | grep -q '^203.0.113.0/24	block'"
"$SIFT" -c "$D/b.conf" block export --rbldnsd "$D/zone" >/dev/null 2>&1
check "rbldnsd export of B's mirror" grep -q '^203.0.113.0/24 :127.0.0.2:it_rep snowshoe$' "$D/zone"

# Redis (primary and replica) stopped: both nodes keep scoring from local state.
it_stop "$main_PID"
it_stop "$rep_PID"
for i in 1 2 3; do
	send a "aout$i" "$SPAMMER" "$DATA/spam.eml"
	send b "bout$i" 203.0.113.8 "$DATA/spam.eml"
done
check "outage: A still gives verdicts" has "$(rules_of aout3)" SIFT_IT_SPAM_SUBJ
check "outage: B still enforces the block from its mirror" has "$(rules_of bout3)" BLOCKLIST_IP
check "outage: A answered fast ($(ms_of aout3) ms)" num_lt "$(ms_of aout3)" 1000
check "outage: B answered fast ($(ms_of bout3) ms)" num_lt "$(ms_of bout3)" 1000
check "outage: the circuit breaker is logged" grep -q "Redis unavailable" "$D/a.log"

start_redis main "$RP" --repl-diskless-sync-delay 0
start_redis rep "$RR" --replicaof 127.0.0.1 "$RP"
check "the replica is back in sync" wait_for 10 sh -c \
	"redis-cli -p $RR INFO replication | grep -q 'master_link_status:up'"
check "after the restart A's queued verdicts are replayed (5 + 3)" \
	wait_for 10 spam_ge "$RP" "$SPAMMER" 7.99
check "and B's (3 for 203.0.113.8)" wait_for 10 spam_ge "$RP" 203.0.113.8 2.99
# 8 observations, a few seconds old (decayed by a factor ~0.99999).
check "exactly: nothing lost, nothing doubled" num_lt "$(spam_count "$RP" "$SPAMMER")" 8.01


# B goes down; meanwhile the list changes; B resumes from its last applied entry.
it_stop "$b_PID"
check "sift block del on A" "$SIFT" -c "$D/a.conf" block del 203.0.113.0/24
check "sift block add on A (domain)" "$SIFT" -c "$D/a.conf" block add spam-domain.example
start_node b
printf 'From: x@spam-domain.example\nTo: y@example.org\nSubject: hi\n\nhello\n' >"$D/dom.eml"
ok=""
for i in 1 2 3 4 5 6 7 8 9 10; do
	send b "bres$i" 203.0.113.9 "$D/dom.eml"
	case "$(rules_of "bres$i")" in *BLOCKLIST_DOMAIN*) ok=$i; break ;; esac
	sleep 0.2
done
check "restarted B caught up: the new domain block" [ -n "$ok" ]
check "restarted B caught up: the deleted network is free" hasnt "$(rules_of "bres$ok")" BLOCKLIST_IP

# ------------------------------------------------------------ 2. a rogue writer

# Write access to Redis is all a rogue has: an unsigned entry (the stream
# and the snapshot, as the unsigned format had them)...
rcli "$RP" XADD 'sift:{bl}:log' '*' op add target 0.0.0.0/0 entry 'block|0|0|rogue|all' >/dev/null
rcli "$RP" HSET 'sift:{bl}:state' ::/0 'block|0|0|rogue|all' >/dev/null
# ...an entry signed by a key no node trusts...
"$SIFT" block keygen --out "$D/rogue.key" --name rogue >/dev/null 2>&1
printf 'state_dir = %s\nredis_server = 127.0.0.1:%s\nblock_signing_key = %s\n' \
	"$D/rogue" "$RP" "$D/rogue.key" >"$D/rogue.conf"
check "the rogue publishes 0.0.0.0/0 with its own key" \
	"$SIFT" -c "$D/rogue.conf" block add 0.0.0.0/0 --reason rogue
# ...and, with a trusted key that may not publish broad entries, a /0 and a public suffix.
check "a trusted publisher without 'broad' publishes 0.0.0.0/0" \
	"$SIFT" -c "$D/a.conf" block add 0.0.0.0/0 --reason "too broad"
"$SIFT" -c "$D/a.conf" block add co.uk --reason "a public suffix" >/dev/null 2>&1
"$SIFT" -c "$D/b.conf" block sync >"$D/bsync.out" 2>&1
check "sift block sync on B succeeds" grep -q "^handled .* entries" "$D/bsync.out"
send b rogue1 198.51.100.77 "$DATA/ham.eml"
printf 'From: x@example.co.uk\nTo: y@example.org\nSubject: hi\n\nhello\n' >"$D/couk.eml"
send b rogue2 203.0.113.77 "$D/couk.eml"
check "B blocks no arbitrary address" hasnt "$(rules_of rogue1)" BLOCKLIST
check "B does not block the public suffix" hasnt "$(rules_of rogue2)" BLOCKLIST
check "B's score for the arbitrary address is low ($(score_of rogue1))" num_lt "$(score_of rogue1)" 50
"$SIFT" -c "$D/b.conf" block list >"$D/blist.out" 2>&1
check "B's mirror has none of them" sh -c "! grep -q '^0.0.0.0/0\|^co.uk' '$D/blist.out'"
check "B logged the unsigned entry" grep -q "ignored stream entry .*: unsigned" "$D/b.log"
check "B logged the untrusted key" \
	grep -q "ignored stream entry .* (0.0.0.0/0 by 'rogue'): signed by an unknown key" "$D/b.log"
check "B logged the too broad entries" \
	grep -q "ignored stream entry .* (0.0.0.0/0 by 'pubA'): too broad" "$D/b.log"
# A new node loads the snapshot: the same entries are refused there too.
node e "redis_server = 127.0.0.1:$RP"
"$SIFT" -c "$D/e.conf" block sync >"$D/esync.out" 2>&1
check "a new node's first sync succeeds" grep -q "^handled .* entries" "$D/esync.out"
"$SIFT" -c "$D/e.conf" block list >"$D/elist.out" 2>&1
check "it has the legitimate entry" grep -q '^spam-domain.example	block' "$D/elist.out"
check "and none of the rogue ones" sh -c "! grep -q '^0.0.0.0/0\|^::/0\|^co.uk' '$D/elist.out'"
check "it logged the unsigned snapshot entry" \
	grep -q "ignored snapshot entry ::/0: unsigned" "$D/esync.out"
check "and the too broad one" grep -q "ignored snapshot entry co.uk (by 'pubA'): too broad" "$D/esync.out"
# What a sync would send first (XRANGE / XREVRANGE / HSCAN); the daemons
# running meanwhile only XREAD.
calls() {
	rcli "$RP" INFO commandstats |
		awk -F'[:=,]' '/^cmdstat_(hscan|xrange|xrevrange):/ { n += $3 } END { print n + 0 }'
}
c0=$(calls)
"$SIFT" -c "$D/e.conf" block list >/dev/null 2>&1
c1=$(calls)
check "sift block list reads the local mirror only (sync calls $c0 -> $c1)" [ "$c0" = "$c1" ]
"$SIFT" -c "$D/a.conf" block add 192.0.2.201 >/dev/null 2>&1
"$SIFT" -c "$D/e.conf" block list --sync >"$D/elist2.out" 2>&1
check "sift block list --sync syncs first" grep -q '^192.0.2.201	block' "$D/elist2.out"
"$SIFT" -c "$D/b.conf" block add 192.0.2.202 >"$D/nokey.out" 2>&1
check "publishing without block_signing_key fails" [ $? = 1 ]
check "and says why" grep -q "needs block_signing_key" "$D/nokey.out"

it_stop "$a_PID"
it_stop "$b_PID"

# ------------------------------------------------------------ 3. Sentinel failover

P1=$(free_port)
P2=$(free_port)
SP=$(free_port)
start_redis p1 "$P1"
start_redis p2 "$P2" --replicaof 127.0.0.1 "$P1"
cat >"$D/sentinel.conf" <<EOF
port $SP
bind 127.0.0.1
dir $D
sentinel monitor mymaster 127.0.0.1 $P1 1
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 5000
EOF
redis-server "$D/sentinel.conf" --sentinel >>"$D/sentinel.log" 2>&1 &
SENTINEL_PID=$!
it_track "$SENTINEL_PID"
wait_for 10 sh -c "redis-cli -p $SP SENTINEL get-master-addr-by-name mymaster 2>/dev/null | grep -q $P1" ||
	fail "Sentinel did not come up"
node c "redis_sentinel = 127.0.0.1:$SP
redis_sentinel_master = mymaster"
node d "redis_sentinel = 127.0.0.1:$SP
redis_sentinel_master = mymaster"
start_node c
start_node d
C_PID=$c_PID
D_PID=$d_PID
for i in 1 2 3; do send c "cpre$i" 192.0.2.77 "$DATA/spam.eml"; done
for i in 1 2 3; do send d "dpre$i" 192.0.2.77 "$DATA/spam.eml"; done
check "via Sentinel: both nodes' verdicts land on the primary" \
	wait_for 5 spam_ge "$P1" 192.0.2.77 5.99
check "and reach the replica" wait_for 10 spam_ge "$P2" 192.0.2.77 5.99

# Kill the primary outright.
kill -9 "$p1_PID"
it_stop "$p1_PID"
check "Sentinel promotes the replica" wait_for 30 sh -c \
	"redis-cli -p $SP SENTINEL get-master-addr-by-name mymaster 2>/dev/null | grep -q $P2"
for i in 1 2 3; do send c "cpost$i" 192.0.2.77 "$DATA/spam.eml"; done
for i in 1 2 3; do send d "dpost$i" 192.0.2.77 "$DATA/spam.eml"; done
check "both nodes write to the promoted replica" wait_for 15 spam_ge "$P2" 192.0.2.77 11.99
send d dread 192.0.2.77 "$DATA/ham.eml"
check "and read from it" has "$(rules_of dread)" REP_IP_SPAM
cat >"$D/cli.conf" <<EOF
state_dir = $D/c
redis_sentinel = 127.0.0.1:$SP
block_signing_key = $D/pub.key
$TRUST
EOF
check "sift block add through Sentinel after the failover" \
	"$SIFT" -c "$D/cli.conf" block add 198.18.0.0/16
ok=""
for i in 1 2 3 4 5 6 7 8 9 10; do
	send c "cblk$i" 198.18.3.4 "$DATA/ham.eml"
	case "$(rules_of "cblk$i")" in *BLOCKLIST_IP*) ok=1; break ;; esac
	sleep 0.2
done
check "the node enforces it" [ -n "$ok" ]
check "node c was never restarted" it_alive "$C_PID"
check "node d was never restarted" it_alive "$D_PID"
check "the node logged the switch" grep -q "Redis 127.0.0.1:$P2 available" "$D/c.log"

# ------------------------------------------------------------ 5. stopping over a stalled link

# Redis stops answering (CLIENT PAUSE holds every command) while a write
# and the sync's read wait on it, with the default command timeout (30 s).
# SIGTERM must not sit that out: the reads are cut at once, the writer
# after a short last try, and the unconfirmed update is kept for the next
# start, where it lands.
P5=$(free_port)
start_redis stall "$P5"
mkdir -p "$D/s"
cat >"$D/s.conf" <<EOF
log = stderr
log_level = info
rules = $top_srcdir/tests/data/rules
add_header_score = 5
reject_score = 1000
state_dir = $D/s
redis_server = 127.0.0.1:$P5
rep_write_window = 100ms
$TRUST
EOF
start_node s
send s s1 192.0.2.55 "$DATA/spam.eml"
check "a write lands while Redis answers" wait_for 10 spam_ge "$P5" 192.0.2.55 0.99
rcli "$P5" CLIENT PAUSE 8000 ALL >/dev/null # new clients wait too: it ends by itself
send s s2 192.0.2.55 "$DATA/spam.eml"
sleep 1 # the writer is now waiting for the paused EVALSHA
t0=$(date +%s)
kill -TERM "$s_PID"
wait_for 40 sh -c "! kill -0 $s_PID 2>/dev/null"
t1=$(date +%s)
it_untrack "$s_PID"
check "SIGTERM over a stalled link stops the daemon within 8 s (took $((t1 - t0)) s)" \
	[ $((t1 - t0)) -le 8 ]
check "the unconfirmed update is kept for the next start" \
	grep -q "unwritten reputation updates .* kept for the next start" "$D/s.log"
start_node s
check "and lands after the restart" wait_for 20 spam_ge "$P5" 192.0.2.55 1.99

# A publisher's list in one command: every line signed and published, or,
# when a line is bad, nothing at all.
cat >"$D/pub5.conf" <<EOF
state_dir = $D/pub5
redis_server = 127.0.0.1:$P5
block_signing_key = $D/pub.key
$TRUST
EOF
printf '# feed\n198.51.100.7\n\n198.51.100.0/28   # a comment\nspam.example\n' >"$D/list.txt"
out=$("$SIFT" -c "$D/pub5.conf" block add --from "$D/list.txt" --reason feed 2>&1)
check "block add --from publishes every entry of a list" has "$out" "added 3 entries"
check "each one signed and in the shared list" [ "$(rcli "$P5" HLEN 'sift:{bl}:state')" = 3 ]
ok=""
for i in 1 2 3 4 5 6 7 8 9 10; do
	send s "sfrom$i" 198.51.100.7 "$DATA/ham.eml"
	case "$(rules_of "sfrom$i")" in *BLOCKLIST_IP*) ok=1; break ;; esac
	sleep 0.2
done
check "and the node enforces them" [ -n "$ok" ]
printf '203.0.113.9\n203.0.113.10\nnot an address!\n' >"$D/bad.txt"
"$SIFT" -c "$D/pub5.conf" block add --from "$D/bad.txt" >"$D/bad.out" 2>&1
check "a list with a bad line fails" [ $? = 2 ]
check "naming the file and line" grep -q "bad.txt:3: " "$D/bad.out"
check "and publishes nothing of it" [ "$(rcli "$P5" HLEN 'sift:{bl}:state')" = 3 ]

# ------------------------------------------------------------ 4. the deprecated single timeout

cat >"$D/old.conf" <<EOF
rules = $top_srcdir/tests/data/rules
redis_server = 127.0.0.1:$P2
redis_timeout = 1s
EOF
out=$("$SIFT" -c "$D/old.conf" lint 2>&1)
check "redis_timeout is still accepted" [ $? = 0 ]
check "with a warning at its line naming the keys that replace it" \
	has "$out" "old.conf:3: warning: redis_timeout is deprecated: use redis_connect_timeout and redis_command_timeout"

it_done
