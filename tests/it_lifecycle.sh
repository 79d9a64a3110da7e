#!/bin/sh
# it_lifecycle.sh - signals and lifecycles of sift-milter with every source
# that starts threads configured at once (a real redis-server, a real
# unbound serving a DNS list on loopback, a Bayes store with autolearn,
# sender authentication asking that unbound):
#   a. in the foreground (-f): two SIGHUPs under load; nothing lost; a
#      reload that replaces the Redis runtime leaves none of the first's
#      threads running;
#   b. as a daemon (no -f): the module threads exist after the fork, the
#      DNS list, Redis and Bayes all work, two SIGHUPs, still answering;
#   c. SIGTERM under load: the port refuses at once, messages in flight
#      get their replies, the process exits in bounded time, pid file gone;
#   d. a daemon that cannot start (after fork and privilege drop) makes
#      its parent exit 1 with the reason;
#   e. SIGTERM with an MTA session open between two messages: the modules
#      still stop in order (unconfirmed reputation updates kept);
#   f. updates queued while redis_server named no server reach Redis after
#      the reload that corrects it, not only after a restart.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MILTER=$top_builddir/sift-milter
SIFT=$top_builddir/sift
MC=$top_builddir/sift-mclient
it_need "$MILTER" "$SIFT" "$MC"
it_need_redis
it_need_unbound

D=$IT_TMP
SPAM=$top_srcdir/tests/data/milter/spam.eml
HAM=$top_srcdir/tests/data/milter/ham.eml
LISTED=192.0.2.2

has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in '$1'" >&2; return 1; }
num_ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# The thread names of a process, one a line.
threads_of() { cat /proc/"$1"/task/*/comm 2>/dev/null; }
has_thread() { threads_of "$1" | grep -qx "$2" || { echo "  no thread '$2' in $1" >&2; return 1; }; }

# ------------------------------------------------------------ Redis and DNS
RP=$(free_port)
it_redis_start 10 "$D/redis" "$RP" "$D/redis.log" --appendonly no ||
	{ fail "redis did not start on port $RP"; cat "$D/redis.log" >&2; it_done; }
rcli() { redis-cli -h 127.0.0.1 -p "$RP" "$@" 2>/dev/null; }

UP=$(free_port)
it_unbound_conf "$D" "$UP" 1 >"$D/unbound.conf" <<EOF
	local-zone: "bl.test." static
	local-data: "bl.test. 300 IN SOA ns.bl.test. admin.bl.test. 1 3600 600 86400 60"
	local-data: "2.0.0.127.bl.test. 300 IN A 127.0.0.2"
	local-data: "2.2.0.192.bl.test. 300 IN A 127.0.0.2"
	local-zone: "dbl.test." static
	local-data: "dbl.test. 300 IN SOA ns.dbl.test. admin.dbl.test. 1 3600 600 86400 60"
	local-zone: "slow.example.dbl.test." deny
EOF
it_unbound_start "$D/unbound.conf" "$D/unbound.log" ||
	{ fail "unbound did not start on 127.0.0.1:$UP"; cat "$D/unbound.log" >&2; it_done; }

# ------------------------------------------------------------ configuration
# A sender at slow.example is looked up in a zone that never answers: its
# message stays in flight until the deadline (DEADLINE_MS), for part c.
DEADLINE_MS=2500
conf() {
	mkdir -p "$D/$1"
	cat >"$D/$1.conf" <<EOF
log = stderr
log_level = info
rules = $top_srcdir/tests/data/rules
add_header_score = 5
reject_score = 1000
state_dir = $D/$1
deadline = ${DEADLINE_MS}ms
redis_server = 127.0.0.1:$RP
redis_prefix = $1:
redis_connect_timeout = 500ms
redis_command_timeout = 500ms
block_sync_wait = 200ms
dnsbl_nameserver = 127.0.0.1:$UP
dnsbl_list = bl ip bl.test 127.0.0.2=3:LC_BL test_listed=127.0.0.2 test_unlisted=127.0.0.1
dnsbl_list = dbl domain dbl.test 127.0.1.2=1:LC_DBL
bayes_min_spam = 5
bayes_min_ham = 5
bayes_autolearn = yes
bayes_autolearn_spam_score = 3
bayes_map_size = 16M
auth_enable = yes
auth_serv_id = mx.lifecycle.test
$2
EOF
	"$SIFT" -c "$D/$1.conf" learn --spam "$top_srcdir/tests/data/bayes/spam" >/dev/null 2>&1 &&
		"$SIFT" -c "$D/$1.conf" learn --ham "$top_srcdir/tests/data/bayes/ham" >/dev/null 2>&1 ||
		fail "$1: sift learn failed"
}

# load SOCKET N OUT: N spam messages over 2 connections at a time, one line each in OUT.
load() { "$MC" -s "$1" -j 2 -n "$2" -t 20000 -i "$LISTED" --tsv "$SPAM" >"$3" 2>"$3.err"; }
replies() { grep -v '^#' "$1" | awk -F'\t' '$2 != "error"' | wc -l; }
errors() { grep -v '^#' "$1" | awk -F'\t' '$2 == "error" { print $3 }'; }

# ------------------------------------------------------------ a. -f: SIGHUP under load
conf fg ""
SOCK=$D/fg.sock
it_milter_start "$(($(scaled_ms 10000) / 1000))" "$D/fg.conf" "$D/fg" "$SOCK" "$D/fg.log"
FG=$IT_MILTER_PID
N=300
load "unix:$SOCK" $N "$D/a.tsv" &
LOAD=$!
sleep 0.3
kill -HUP "$FG"
sleep 0.5
kill -HUP "$FG"
wait $LOAD
check "a: the daemon survives two SIGHUPs under load" it_alive "$FG"
check "a: every one of the $N messages got a reply ($(replies "$D/a.tsv"))" \
	[ "$(replies "$D/a.tsv")" -eq $N ]
check "a: both reloads were done" [ "$(grep -c 'configuration reloaded' "$D/fg.log")" -eq 2 ]
if [ "$(id -u)" = 0 ]; then
	check "a: running as root without 'user =' is warned about" \
		grep -q "running as root" "$D/fg.log"
fi
"$MC" -s "unix:$SOCK" -t 10000 -i "$LISTED" --tsv "$SPAM" >"$D/a2.tsv" 2>&1
check "a: after the reloads a message is still scored with the DNS list" \
	has "$(cat "$D/a2.tsv")" LC_BL
# Another redis_prefix makes a new Redis runtime; the old one, shared by
# every generation so far, the first included, must stop with them.
sed -i "s|^redis_prefix = .*|redis_prefix = fg2:|" "$D/fg.conf"
kill -HUP "$FG"
check "a: the reload with another redis_prefix is done" wait_for 5 sh -c \
	"[ \$(grep -c 'configuration reloaded' '$D/fg.log') -eq 3 ]"
# (the old runtime's threads are joined as its last generation goes: allow for it)
writers() { cat /proc/"$FG"/task/*/comm 2>/dev/null | grep -cx sift-rep-write; }
wait_for 5 sh -c "[ \$(cat /proc/$FG/task/*/comm 2>/dev/null | grep -cx sift-rep-write) -eq 1 ]"
W=$(writers)
check "a: then one Redis writer thread runs, not the first generation's too ($W)" [ "$W" -eq 1 ]
it_stop "$FG"

# ------------------------------------------------------------ b. the daemon (no -f)
# Started as an admin in /etc/sift would: -c, state_dir and every file the
# configuration names (rules, the Bayes store, a local list) relative to
# the directory it starts in, which the daemon leaves for "/" when it
# detaches; each reload must still find them.
conf bg ""
MP=$(free_port)
BMP=$(free_port)
cp -R "$top_srcdir/tests/data/rules" "$D/bg-rules"
printf ':127.0.0.2:locally listed\n%s\n' "$LISTED" >"$D/bg-local.ip4set"
sed -i -e "s|^state_dir = .*|state_dir = bg|" -e "s|^rules = .*|rules = bg-rules|" "$D/bg.conf"
cat >>"$D/bg.conf" <<EOF
bayes_db = bg/bayes
dnsbl_list = loc ip local.invalid 127.0.0.2=1:LC_LOCAL file=bg-local.ip4set
EOF
echo "metrics_listen = $BMP" >>"$D/bg.conf"
PIDF=$D/bg/sift-milter.pid
(cd "$D" && "$MILTER" -c bg.conf -p "inet:$MP@127.0.0.1" >"$D/b.out" 2>"$D/b.err")
RC=$?
check "b: the parent exits 0 once the daemon is ready" [ "$RC" -eq 0 ]
check "b: by then the pid file is written" [ -s "$PIDF" ]
wait_for 5 test -s "$PIDF" # to stop it anyway
BG=$(cat "$PIDF" 2>/dev/null)
[ -n "$BG" ] && it_track "$BG"
check "b: the pid file names a running daemon" it_alive "${BG:-0}"
[ -n "$BG" ] && it_alive "$BG" || { cat "$D/b.err" >&2; it_done; }
for t in sift-rep-read sift-rep-write sift-rep-sync sift-dns sift-bayes-wr; do
	check "b: the daemon runs its $t thread" has_thread "$BG" "$t"
done
S="inet:$MP@127.0.0.1"
"$MC" -s "$S" -t 10000 -i "$LISTED" --tsv "$SPAM" >"$D/b1.tsv" 2>&1
B1=$(cat "$D/b1.tsv")
check "b: the DNS list hit is scored" has "$B1" LC_BL
check "b: Bayes scores" has "$B1" BAYES_
check "b: the rules score" has "$B1" SIFT_IT_SPAM_SUBJ
check "b: the local list file is read" has "$B1" LC_LOCAL
check "b: auth writes its Authentication-Results" has "$B1" "Authentication-Results: mx.lifecycle.test;"
check "b: the reputation is written to Redis" wait_for 5 sh -c \
	"[ \"\$(redis-cli -h 127.0.0.1 -p $RP HGET 'bg:r:{ip:$LISTED}' s 2>/dev/null)\" != '' ]"
kill -HUP "$BG"
sleep 0.5
kill -HUP "$BG"
sleep 0.5
check "b: the daemon survives two SIGHUPs" it_alive "$BG"
check "b: both reloads were applied (the relative -c, state_dir, rules, bayes_db and list file still found)" wait_for 5 sh -c \
	"curl -s http://127.0.0.1:$BMP/metrics | grep -qx 'sift_reloads_total 2'"
"$MC" -s "$S" -t 10000 -i "$LISTED" --tsv "$SPAM" >"$D/b2.tsv" 2>&1
check "b: and still answers, with the DNS list" has "$(cat "$D/b2.tsv")" LC_BL
check "b: with the local list file" has "$(cat "$D/b2.tsv")" LC_LOCAL
check "b: with the rules" has "$(cat "$D/b2.tsv")" SIFT_IT_SPAM_SUBJ
check "b: and with Bayes" has "$(cat "$D/b2.tsv")" BAYES_
check "b: and with auth's Authentication-Results" has "$(cat "$D/b2.tsv")" \
	"Authentication-Results: mx.lifecycle.test;"
for t in sift-rep-read sift-rep-write sift-rep-sync sift-dns; do
	check "b: after the reloads the $t thread is still there" has_thread "$BG" "$t"
done

# ------------------------------------------------------------ c. SIGTERM under load
# Four messages wait for the silent zone, more arrive meanwhile; then SIGTERM.
for i in 1 2 3 4; do
	"$MC" -s "$S" -t 20000 -i 192.0.2.77 -f "x@slow.example" --tsv "$HAM" \
		>"$D/slow$i.tsv" 2>"$D/slow$i.err" &
	eval "SLOW$i=\$!"
done
load "$S" 2000 "$D/c.tsv" &
LOAD=$!
sleep 0.5
T0=$(now_ms)
kill -TERM "$BG"
sleep 0.2
"$MC" -s "$S" -t 5000 -i 192.0.2.78 --tsv "$HAM" >"$D/probe.tsv" 2>&1
check "c: 0.2 s after SIGTERM a new connection is refused" \
	has "$(errors "$D/probe.tsv")" "refused"
# The daemon is not this shell's child: once it has exited it is a zombie
# until init reaps it, so "gone" is judged by it_alive(), not kill -0.
_i=0
while it_alive "$BG" && [ $_i -lt $((DEADLINE_MS / 50 + $(scaled_ms 5000) / 50)) ]; do
	sleep 0.05
	_i=$((_i + 1))
done
T1=$(now_ms)
check "c: the daemon exits within deadline + 2 s of SIGTERM ($((T1 - T0)) ms)" \
	[ $((T1 - T0)) -le $((DEADLINE_MS + $(scaled_ms 2000))) ]
it_alive "$BG" || it_untrack "$BG"
check "c: the pid file is removed" [ ! -e "$PIDF" ]
for i in 1 2 3 4; do
	eval "wait \$SLOW$i"
	check "c: message $i in flight at SIGTERM got its reply ($(errors "$D/slow$i.tsv"))" \
		[ "$(replies "$D/slow$i.tsv")" -eq 1 ]
done
wait $LOAD
# Closing a listening socket resets the connections whose handshake the
# kernel completed but nobody accepted yet: with 2 clients, at most 2. The
# client sees the reset on its first read, or, when the close races with
# the handshake, on connect itself; either way the session never started.
# Any other failure (a session closed under its message) is a lost message.
RESET_RE='^\(read\|connect [^ ]*\): Connection reset by peer$'
BAD=$(errors "$D/c.tsv" | grep -v -e 'refused' -e "$RESET_RE" | sort | uniq -c)
RESETS=$(errors "$D/c.tsv" | grep -c "$RESET_RE")
check "c: no message under load was cut off: only refused connections (${BAD:-none})" \
	[ -z "$BAD" ]
check "c: at most the 2 connections of the accept queue were reset ($RESETS)" [ "$RESETS" -le 2 ]
check "c: some of the load was answered before the stop" [ "$(replies "$D/c.tsv")" -gt 0 ]

# ------------------------------------------------------------ d. start failures reach the parent
# start_fails NAME: runs the daemon without -f on a fresh port; expects exit 1.
start_fails() {
	_p=$(free_port)
	"$MILTER" -c "$D/$1.conf" -p "inet:$_p@127.0.0.1" >"$D/$1.out" 2>"$D/$1.err"
	_rc=$?
	# Should a daemon have started anyway, it is found by its port and stopped.
	_pid=$(ss -ltnpH "sport = :$_p" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
	[ -n "$_pid" ] && { it_track "$_pid"; it_stop "$_pid"; }
	[ "$_rc" -eq 1 ] || { echo "  exit status $_rc, not 1" >&2; return 1; }
}
conf d1 ""
: >"$D/notadir"
echo "pid_file = $D/notadir/sift-milter.pid" >>"$D/d1.conf"
check "d: a pid file that cannot be written: the parent exits 1" start_fails d1
check "d: and says why" has "$(cat "$D/d1.err")" "cannot write pid file"
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
	# The mirror is opened as the daemon's user, after the privilege drop.
	conf d2 ""
	mkdir -m 0700 "$D/locked"
	printf 'user = nobody\nblock_mirror = %s/locked/mirror\n' "$D" >>"$D/d2.conf"
	check "d: a store its user cannot open: the parent exits 1" start_fails d2
	check "d: and names it" has "$(cat "$D/d2.err")" "$D/locked/mirror"
else
	echo "# d: not root: the user = case is skipped"
fi

# ------------------------------------------------------------ e. an idle session at SIGTERM
# Postfix holds a milter session open for each SMTP client, between its
# messages too. Such a session must not keep the generation, and with it
# the modules' orderly stop, from happening: the reputation updates Redis
# has not confirmed (a long write window keeps them queued) are saved.
conf e "rep_write_window = 60s"
SOCK=$D/e.sock
it_milter_start "$(($(scaled_ms 10000) / 1000))" "$D/e.conf" "$D/e" "$SOCK" "$D/e.log"
E=$IT_MILTER_PID
"$MC" -s "unix:$SOCK" -n 3 -t 10000 -i "$LISTED" --tsv "$SPAM" >"$D/e.tsv" 2>&1
# A session that negotiates and sends CONNECT, then waits for the next command.
python3 - "$SOCK" >"$D/e.idle" 2>&1 <<'PYEOF' &
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
def cmd(c, data=b""):
    s.sendall(struct.pack(">I", len(data) + 1) + c + data)
    n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
    return s.recv(n, socket.MSG_WAITALL)[:1]
cmd(b"O", struct.pack(">III", 6, 0x1FF, 0))
print("idle" if cmd(b"C", b"client.example\0" + b"4" + struct.pack(">H", 25) + b"192.0.2.9\0") == b"c" else "no")
sys.stdout.flush()
s.settimeout(30)
try:
    s.recv(1)
except OSError:
    pass
PYEOF
IDLE=$!
it_track "$IDLE"
check "e: the idle session is open" wait_for 5 grep -qx idle "$D/e.idle"
kill -TERM "$E"
check "e: the daemon exits within 5 s despite the idle session" wait_for "$(($(scaled_ms 5000) / 1000))" sh -c "! kill -0 $E 2>/dev/null"
it_stop "$E"
it_stop "$IDLE"
check "e: the unconfirmed reputation updates are kept for the next start" \
	grep -q "kept for the next start" "$D/e.log"

# ------------------------------------------------------------ f. a reload that corrects redis_server
conf f ""
sed -i "s|^redis_server = .*|redis_server = 127.0.0.1:$(free_port)|" "$D/f.conf"
SOCK=$D/f.sock
it_milter_start "$(($(scaled_ms 10000) / 1000))" "$D/f.conf" "$D/f" "$SOCK" "$D/f.log"
F=$IT_MILTER_PID
"$MC" -s "unix:$SOCK" -n 3 -t 10000 -i "$LISTED" --tsv "$SPAM" >"$D/f.tsv" 2>&1
check "f: no Redis answers: the updates wait ($(rcli --scan --pattern 'f:r:*' | wc -l) keys)" \
	[ "$(rcli --scan --pattern 'f:r:*' | wc -l)" -eq 0 ]
sed -i "s|^redis_server = .*|redis_server = 127.0.0.1:$RP|" "$D/f.conf"
kill -HUP "$F"
check "f: after the reload that names the server, the queued updates reach it" \
	wait_for "$(($(scaled_ms 15000) / 1000))" sh -c \
	"[ -n \"\$(redis-cli -h 127.0.0.1 -p $RP HGET 'f:r:{ip:$LISTED}' s 2>/dev/null)\" ]"
check "f: taken from the replaced configuration" \
	grep -q "from a replaced configuration queued" "$D/f.log"
it_stop "$F"

it_done
