#!/bin/sh
# soak.sh - a soak and fault run: N messages through a private Postfix
# (own config and queue under a temp dir, loopback only, free ports) whose
# smtpd calls sift-milter with Redis, a DNS list (unbound) and Bayes all
# configured, while Redis is killed and restarted, frozen, the DNS server
# goes silent and SIGHUP arrives every 10 s. Accepted mail goes to
# smtp-sink. soak.py injects, runs the faults and reports; see README.
#
# usage: soak.sh [options] [MESSAGE_FILE_OR_DIR...]   (root: Postfix needs it)
set -u

usage() {
	cat <<'EOF'
usage: soak.sh [options] [MESSAGE_FILE_OR_DIR...]
  -n, --count N          messages to send (default 100000)
  -j, --jobs N           parallel SMTP sessions (default 8)
  -w, --warmup N         messages before the first fault and the RSS
                         reference (default: a tenth of N, 3000..10000,
                         at most half of N)
  -t, --time-limit S     stop sending after S seconds (default 7200)
  --drain-timeout S      wait at most S seconds for the queue (default 600)
  --no-faults            no Redis or DNS faults (SIGHUP still, see --hup)
  --hup S                SIGHUP to sift-milter every S seconds, 0: never (10)
  --gap S                normal time between two faults (default 20)
  --fault-time S         Redis down / DNS silent for S seconds (default 20)
  --freeze S             Redis frozen (SIGSTOP) for S seconds (default 30)
  --without LIST         leave out some of redis,dns,bayes (comma-separated),
                         to tell which one a failure needs
  --rss-slack KIB        allowed RSS growth after warm-up, at least (4096;
                         or 10% of the warm-up figure, the larger)
  -k, --keep             keep the run directory (logs, results.tsv)
  -b, --builddir DIR     build directory (default: $SIFT_BUILDDIR, ., build/)
Messages: every file under the arguments, cycled; default tests/data/milter.
EOF
}

srcdir=$(cd "$(dirname "$0")/../.." && pwd)
count=100000 jobs=8 warmup="" tlimit=7200 drain=600 nofaults="" hup=10
gap=20 ftime=20 freeze=30 rss_slack=4096 keep="" builddir=${SIFT_BUILDDIR:-}
use_redis=1 use_dns=1 use_bayes=1
num() {
	case $2 in '' | *[!0-9]*) echo "soak.sh: $1 needs a whole number, not '$2'" >&2; exit 2 ;; esac
}
while [ $# -gt 0 ]; do
	case $1 in
	-n | --count) num "$1" "${2:-}"; count=$2; shift 2 ;;
	-j | --jobs) num "$1" "${2:-}"; jobs=$2; shift 2 ;;
	-w | --warmup) num "$1" "${2:-}"; warmup=$2; shift 2 ;;
	-t | --time-limit) num "$1" "${2:-}"; tlimit=$2; shift 2 ;;
	--drain-timeout) num "$1" "${2:-}"; drain=$2; shift 2 ;;
	--no-faults) nofaults=--no-faults; shift ;;
	--hup) num "$1" "${2:-}"; hup=$2; shift 2 ;;
	--gap) num "$1" "${2:-}"; gap=$2; shift 2 ;;
	--fault-time) num "$1" "${2:-}"; ftime=$2; shift 2 ;;
	--freeze) num "$1" "${2:-}"; freeze=$2; shift 2 ;;
	--rss-slack) num "$1" "${2:-}"; rss_slack=$2; shift 2 ;;
	-k | --keep) keep=1; shift ;;
	--without)
		for w in $(echo "${2:-}" | tr ',' ' '); do
			case $w in
			redis) use_redis="" ;;
			dns) use_dns="" ;;
			bayes) use_bayes="" ;;
			*) echo "soak.sh: --without takes redis, dns, bayes; not '$w'" >&2; exit 2 ;;
			esac
		done
		shift 2
		;;
	-b | --builddir) builddir=${2:-}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	-*) echo "soak.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	*) break ;;
	esac
done
[ "$count" -ge 1 ] && [ "$jobs" -ge 1 ] && [ "$jobs" -le 64 ] ||
	{ echo "soak.sh: --count must be >= 1 and --jobs 1..64" >&2; exit 2; }
if [ -z "$warmup" ]; then
	warmup=$((count / 10))
	[ "$warmup" -lt 3000 ] && warmup=3000
	[ "$warmup" -gt 10000 ] && warmup=10000
	[ "$warmup" -gt $((count / 2)) ] && warmup=$((count / 2))
	[ "$warmup" -lt 1 ] && warmup=1
fi
if [ $# -eq 0 ]; then
	set -- "$srcdir/tests/data/milter"
fi
for m in "$@"; do
	[ -e "$m" ] || { echo "soak.sh: $m: no such file or directory" >&2; exit 2; }
done

if [ -z "$builddir" ]; then
	if [ -x ./sift-milter ]; then builddir=.; else builddir=$srcdir/build; fi
fi
builddir=$(cd "$builddir" 2>/dev/null && pwd) || { echo "soak.sh: no build directory" >&2; exit 2; }
MILTER=$builddir/sift-milter
SIFT=$builddir/sift
for p in "$MILTER" "$SIFT"; do
	[ -x "$p" ] || { echo "soak.sh: $p not built (make in $builddir)" >&2; exit 2; }
done
POSTFIX=$(command -v postfix || echo /usr/sbin/postfix)
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
UNBOUND=$(command -v unbound || echo /usr/sbin/unbound)
UBCTL=$(command -v unbound-control || echo /usr/sbin/unbound-control)
for p in "$POSTFIX" "$SINK" "$UNBOUND" "$UBCTL"; do
	[ -x "$p" ] || { echo "soak.sh: $p not installed (contrib/install-deps.sh --test)" >&2; exit 2; }
done
for p in redis-server redis-cli python3; do
	command -v $p >/dev/null || { echo "soak.sh: $p not installed" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "soak.sh: a private Postfix instance needs root" >&2; exit 2; }
id postfix >/dev/null 2>&1 || { echo "soak.sh: no postfix user" >&2; exit 2; }

# Shared with the integration tests: free_port, wait_for, the PID list
# stopped by the EXIT trap, the temp dir (kept with IT_KEEP).
top_srcdir=$srcdir top_builddir=$builddir
IT_KEEP=$keep
. "$srcdir/tests/it_lib.sh"

D=$IT_TMP
chmod 755 "$D"
PF=$D/pf
mkdir -p "$PF/etc" "$PF/spool" "$PF/data" "$D/sink" "$D/state" "$D/rules" "$D/redis"
chown postfix "$D/sink" "$PF/data"
UB_PID=""
MASTER_PID=""
pf_stop() {
	[ -n "$MASTER_PID" ] || return 0
	timeout 20 "$POSTFIX" -c "$PF/etc" stop >/dev/null 2>&1
	wait_for 10 sh -c "! kill -0 $MASTER_PID 2>/dev/null"
	# Anything the master left behind, by PID (children of the master).
	for s in /proc/[0-9]*/stat; do
		# shellcheck disable=SC2046 # the fields of /proc/PID/stat, split on purpose
		set -- $(cat "$s" 2>/dev/null)
		[ "${4:-}" = "$MASTER_PID" ] && kill "$1" 2>/dev/null
	done
	kill "$MASTER_PID" 2>/dev/null
	it_untrack "$MASTER_PID"
	MASTER_PID=""
}
# A dead child stays a zombie until waited for: gone means not in /proc or Z.
gone() { ! [ -r "/proc/$1/stat" ] || awk '{ exit $3 != "Z" }' "/proc/$1/stat" 2>/dev/null; }
# stop PID: SIGTERM (SIGCONT first: it may be frozen), 10 s, SIGKILL, reaped.
stop() {
	kill -CONT "$1" 2>/dev/null
	kill "$1" 2>/dev/null
	wait_for 10 gone "$1" || kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	it_untrack "$1"
}
# Redis's PID changes when soak.py restarts it: stopped from its pid file.
stop_all() {
	pf_stop
	[ -s "$D/redis.pid" ] && stop "$(cat "$D/redis.pid")" && rm -f "$D/redis.pid"
	for p in $IT_PIDS; do stop "$p"; done
	it_cleanup
}
trap stop_all EXIT
ports=""
port() { # port VAR: a free port not handed out yet in this run
	while :; do
		_p=$(free_port)
		case " $ports " in *" $_p "*) ;; *) ports="$ports $_p"; eval "$1=$_p"; return ;; esac
	done
}
port SMTP_PORT
port SINK_PORT
port MILTER_PORT
port REDIS_PORT
port DNS_PORT
port_open() {
	python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$1" \
		2>/dev/null
}
die() {
	echo "soak.sh: $*" >&2
	for f in "$D"/*.log "$PF/maillog"; do
		[ -s "$f" ] && { echo "--- $f" >&2; tail -15 "$f" >&2; }
	done
	exit 1
}
echo "soak.sh: run directory $D"

# ------------------------------------------------------------ Redis
# soak.py restarts Redis with this command line (the one it_redis_start
# runs, written out) and keeps its PID in redis.pid; the EXIT trap stops
# whatever PID is there.
if [ -n "$use_redis" ]; then
	printf '%s\n' redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$D/redis" \
		--save '' --appendonly yes --appendfsync everysec >"$D/redis.argv"
	it_redis_start 15 "$D/redis" "$REDIS_PORT" "$D/redis.log" --appendonly yes --appendfsync everysec
	redis_up=$?
	# Tracked by its pid file from here on, not the PID list.
	echo "$IT_REDIS_PID" >"$D/redis.pid"
	it_untrack "$IT_REDIS_PID"
	[ "$redis_up" = 0 ] || die "redis-server did not start on 127.0.0.1:$REDIS_PORT"
fi

# ------------------------------------------------------------ DNS lists
# Every name sift asks lies in a local zone; "." refused keeps unbound from
# ever recursing off the machine.
if [ -n "$use_dns" ]; then
it_unbound_conf "$D" "$DNS_PORT" 0 >"$D/unbound.conf" <<EOF
	local-zone: "." refuse
	local-zone: "bl.soak.test." static
	local-data: "bl.soak.test. 300 IN SOA ns.bl.soak.test. admin.bl.soak.test. 1 3600 600 86400 60"
	local-data: "2.0.0.127.bl.soak.test. 300 IN A 127.0.0.2"
	local-data: "2.2.0.192.bl.soak.test. 300 IN A 127.0.0.2"
	local-data: '2.2.0.192.bl.soak.test. 300 IN TXT "Listed by bl.soak.test"'
	local-data: "3.2.0.192.bl.soak.test. 300 IN A 127.0.0.3"
	local-zone: "dbl.soak.test." static
	local-data: "dbl.soak.test. 300 IN SOA ns.dbl.soak.test. admin.dbl.soak.test. 1 3600 600 86400 60"
	local-data: "listed-sender.test.dbl.soak.test. 300 IN A 127.0.1.2"
	local-zone: "uribl.soak.test." static
	local-data: "uribl.soak.test. 300 IN SOA ns.uribl.soak.test. admin.uribl.soak.test. 1 3600 600 86400 60"
	local-data: "example.com.uribl.soak.test. 300 IN A 127.0.0.2"
EOF
it_unbound_start "$D/unbound.conf" "$D/unbound.log" ||
	die "unbound did not start on 127.0.0.1:$DNS_PORT"
UB_PID=$IT_UNBOUND_PID
fi

# ------------------------------------------------------------ sift-milter
cp "$srcdir/tests/data/rules/10_it.cf" "$D/rules/"
TEMPFAIL_REPLY="451 4.7.1 Soak run defers this message by policy"
cat >"$D/sift.conf" <<EOF
log = stderr
log_level = info
rules = $srcdir/rules
rules = $D/rules
add_header_score = 5
tempfail_score = 12
reject_score = 15
tempfail_reply = "$TEMPFAIL_REPLY"
on_error = accept
deadline = 2s
EOF
if [ -n "$use_bayes" ]; then
	printf 'bayes_min_spam = 5\nbayes_min_ham = 5\nbayes_map_size = 64M\n' >>"$D/sift.conf"
else
	echo "bayes_enable = no" >>"$D/sift.conf"
fi
[ -n "$use_dns" ] && cat >>"$D/sift.conf" <<EOF
dnsbl_nameserver = 127.0.0.1:$DNS_PORT
dnsbl_list = soakbl ip bl.soak.test 127.0.0.2=20:SOAK_BL 127.0.0.3=6:SOAK_BL_MED txt=yes test_listed=127.0.0.2 test_unlisted=127.0.0.1
dnsbl_list = soakdbl domain dbl.soak.test 127.0.1.2=3:SOAK_DBL
dnsbl_list = soakuri uri uribl.soak.test mask:0.0.0.2=3:SOAK_URIBL
dnsbl_timeout = 1500ms
# Small caches fill during the warm-up, so RSS after it is the plateau.
dnsbl_cache_max_entries = 2000
EOF
[ -n "$use_redis" ] && cat >>"$D/sift.conf" <<EOF
redis_server = 127.0.0.1:$REDIS_PORT
redis_connect_timeout = 250ms
redis_command_timeout = 250ms
rep_min_observations = 3
rep_cache_entries = 1000
EOF
"$SIFT" -c "$D/sift.conf" lint >"$D/lint.log" 2>&1 || die "sift lint refused the soak configuration"
# A store trained on a few messages, so that Bayes votes on every message.
if [ -n "$use_bayes" ]; then
	"$SIFT" -c "$D/sift.conf" -d "$D/state" learn --spam "$srcdir/tests/data/bayes/spam" \
		>>"$D/learn.log" 2>&1 &&
		"$SIFT" -c "$D/sift.conf" -d "$D/state" learn --ham "$srcdir/tests/data/bayes/ham" \
			>>"$D/learn.log" 2>&1 || die "sift learn failed"
fi
# Loopback TCP: Postfix's smtpd is not root and could not reach a root-owned unix socket.
"$MILTER" -f -c "$D/sift.conf" -d "$D/state" -p "inet:$MILTER_PORT@127.0.0.1" 2>"$D/milter.log" &
MILTER_PID=$!
it_track "$MILTER_PID"
wait_for 30 port_open "$MILTER_PORT" || die "sift-milter not listening on 127.0.0.1:$MILTER_PORT"

# ------------------------------------------------------------ smtp-sink
"$SINK" -u postfix -h sink.soak.test -d "$D/sink/%H%M%S." "127.0.0.1:$SINK_PORT" 256 \
	>"$D/sink.log" 2>&1 &
it_track "$!"
wait_for 10 port_open "$SINK_PORT" || die "smtp-sink not listening on 127.0.0.1:$SINK_PORT"

# ------------------------------------------------------------ Postfix
# As tests/it_postfix.sh, plus: XCLIENT from loopback (the injector gives
# each session its own client address), no PTR lookups (nothing leaves the
# machine), the XCLIENT ranges in mynetworks so they may relay.
cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.soak.test
mydomain = soak.test
myorigin = \$myhostname
mydestination =
mynetworks = 127.0.0.0/8 192.0.2.0/24 198.18.0.0/15
relay_domains =
relayhost = [127.0.0.1]:$SINK_PORT
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtp_tls_security_level = none
smtpd_tls_security_level = none
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
maillog_file_prefixes = $PF
maillog_file = $PF/maillog
smtpd_milters = inet:127.0.0.1:$MILTER_PORT
milter_default_action = tempfail
milter_protocol = 6
milter_mail_macros = i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}
milter_content_timeout = 30s
EOF
cat >"$PF/etc/master.cf" <<EOF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF


timeout 30 "$POSTFIX" -c "$PF/etc" start >"$D/postfix-start.log" 2>&1 || die "postfix start failed"
wait_for 10 test -s "$PF/spool/pid/master.pid" &&
	MASTER_PID=$(tr -d ' \n' <"$PF/spool/pid/master.pid")
[ -n "$MASTER_PID" ] && it_track "$MASTER_PID"
wait_for 15 port_open "$SMTP_PORT" || die "postfix smtpd not listening on 127.0.0.1:$SMTP_PORT"

without=""
[ -n "$use_redis" ] || without="$without redis"
[ -n "$use_dns" ] || without="$without dns"
[ -n "$use_bayes" ] || without="$without bayes"
echo "soak.sh: postfix 127.0.0.1:$SMTP_PORT (master $MASTER_PID), sift-milter $MILTER_PID" \
	"on 127.0.0.1:$MILTER_PORT, redis :$REDIS_PORT, unbound :$DNS_PORT ($UB_PID)," \
	"smtp-sink :$SINK_PORT; left out:${without:- nothing}"
echo "soak.sh: $count messages, $jobs sessions, warm-up $warmup," \
	"faults ${nofaults:-on} (gap ${gap}s, down ${ftime}s, frozen ${freeze}s), SIGHUP every ${hup}s"

# What is left out has no faults (and for DNS, no PID to stop).
parts="--no-dns"
[ -n "$use_dns" ] && parts="--unbound-pid $UB_PID"
[ -n "$use_redis" ] || parts="$parts --no-redis"
python3 "$srcdir/contrib/soak/soak.py" --dir "$D" --port "$SMTP_PORT" --count "$count" \
	--jobs "$jobs" --warmup "$warmup" --time-limit "$tlimit" --drain-timeout "$drain" \
	$nofaults --gap "$gap" --fault-time "$ftime" --freeze "$freeze" --hup "$hup" \
	--rss-slack-kib "$rss_slack" --milter-pid "$MILTER_PID" --milter-log "$D/milter.log" \
	--tempfail-reply "$TEMPFAIL_REPLY" \
	$parts \
	--sink-dir "$D/sink" --queue-dir "$PF/spool" -- "$@"
rc=$?
if gone "$MILTER_PID"; then
	wait "$MILTER_PID"
	st=$?
	it_untrack "$MILTER_PID"
	if [ "$st" -gt 128 ]; then
		echo "sift-milter (pid $MILTER_PID) ended by signal $((st - 128))" \
			"($(kill -l $((st - 128)) 2>/dev/null))"
	else
		echo "sift-milter (pid $MILTER_PID) exited with status $st"
	fi
fi
if [ "$rc" -ne 0 ]; then
	echo "--- sift-milter log (last 15 lines)"
	tail -15 "$D/milter.log"
fi
exit "$rc"
