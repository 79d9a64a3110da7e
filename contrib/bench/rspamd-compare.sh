#!/bin/sh
# rspamd-compare.sh - Sift and rspamd side by side on the same messages:
# both learn Bayes from folds 0-6 of the SpamAssassin public corpus, then
# (1) accuracy: every message of folds 7-9 is scored (sift check --tsv;
#     rspamc through rspamd's normal worker), giving ROC AUC, spam recall at
#     0.1% and 1% ham false positives and each one's own add-header verdict;
# (2) speed: the same test messages are driven through the milter protocol
#     by sift-mclient, into sift-milter (contrib/bench/bench.sh) and into
#     rspamd's proxy worker in milter mode, measuring the servers' CPU.
#
# usage: contrib/bench/rspamd-compare.sh CORPUS_ROOT [MANIFEST]
#   CORPUS_ROOT as for contrib/eval/split.sh (extracted tree or tarball).
# environment:
#   SIFT_BUILDDIR  the build directory (sift, sift-milter, sift-mclient)
#   RSPAMD_ROOT    where rspamd is: "" for an installed package (default),
#                  or the root of an unpacked one (below)
#   CONC, REPEAT   client threads and passes for the speed runs (2, 3)
#   RSPAMD_WORKERS proxy worker processes (default: the number of CPUs)
#   WORK           work directory (default: a new one under /tmp, removed)
#
# rspamd runs with no network: its DNS goes to a closed loopback port, so
# the DNS lists, SPF/DKIM/DMARC, fuzzy hashes and remote maps - which Sift's
# runs do not use either - are switched off, and Bayes uses a redis-server
# started on loopback for the run. Every process started is stopped by PID.
#
# Debian 12's rspamd package depends on libhyperscan5, which conflicts with
# the libvectorscan5 Sift builds with. To compare on the same machine,
# unpack rspamd instead of installing it:
#   mkdir /tmp/rspamd-debs && cd /tmp/rspamd-debs
#   apt-get download rspamd libhyperscan5 libluajit-5.1-2 libluajit-5.1-common \
#     libsodium23 libunwind8 libicu72 libglib2.0-0 libsqlite3-0
#   for d in *.deb; do dpkg -x "$d" /tmp/rspamd-root; done
#   ln -s /tmp/rspamd-root/usr/share/rspamd /usr/share/rspamd   # see below
#   RSPAMD_ROOT=/tmp/rspamd-root contrib/bench/rspamd-compare.sh ...
# (rspamd 3.4 reads its language data from /usr/share/rspamd whatever its
# configuration says, so that path must exist.)
set -u

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
root=$(cd "${1:?usage: rspamd-compare.sh CORPUS_ROOT [MANIFEST]}" && pwd)
manifest=${2:-$root/MANIFEST.tsv}
b=$(cd "${SIFT_BUILDDIR:?set SIFT_BUILDDIR to a build directory}" && pwd)
conc=${CONC:-2}
repeat=${REPEAT:-3}
workers=${RSPAMD_WORKERS:-$(nproc)}
R=${RSPAMD_ROOT:-}

rspamd=$R/usr/bin/rspamd
rspamc=$R/usr/bin/rspamc
if [ -n "$R" ]; then
	LD_LIBRARY_PATH=$R/usr/lib/x86_64-linux-gnu:$R/usr/lib/rspamd${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
	export LD_LIBRARY_PATH
fi
for p in "$rspamd" "$rspamc" "$b/sift" "$b/sift-milter" "$b/sift-mclient"; do
	[ -x "$p" ] || { echo "rspamd-compare: $p not found" >&2; exit 2; }
done
[ -d /usr/share/rspamd/languages ] ||
	echo "rspamd-compare: /usr/share/rspamd/languages missing: rspamd runs without language data" >&2
command -v redis-server >/dev/null || { echo "rspamd-compare: needs redis-server" >&2; exit 2; }

if [ -z "${WORK:-}" ]; then
	WORK=$(mktemp -d /tmp/rspamd-compare.XXXXXX)
	cleanup_work=yes
else
	mkdir -p "$WORK"
	cleanup_work=no
fi
redis_pid=""
rspamd_pid=""
stop() { # PID: TERM, wait up to 10 s, then KILL
	[ -n "$1" ] || return 0
	kill "$1" 2>/dev/null || return 0
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -9 "$1" 2>/dev/null
	return 0
}
cleanup() {
	stop "$rspamd_pid"
	stop "$redis_pid"
	[ "$cleanup_work" = yes ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sh "$srcdir/contrib/eval/split.sh" "$root" "$manifest" "$WORK" >/dev/null || exit 1
mkdir -p "$WORK/test"
# Real files (bench.sh and sift-mclient read *.eml files, not links).
xargs cp -t "$WORK/test" <"$WORK/test.lst"
n_test=$(wc -l <"$WORK/test.lst")

# ------------------------------------------------------------------ Sift
echo "== Sift $("$b/sift" version 2>/dev/null | head -1)"
WORK=$WORK/sift BUILDDIR=$b sh "$srcdir/contrib/eval/pipeline-eval.sh" "$root" "$manifest" |
	sed 's/^/  /'
printf 'bayes_db = %s\n' "$WORK/sift/state/bayes" >"$WORK/sift-bench.conf"
SIFT_BUILDDIR=$b BENCH_CONF=$WORK/sift-bench.conf sh "$here/bench.sh" "$WORK/test" "$conc" "$repeat" |
	sed 's/^/  /'

# ------------------------------------------------------------------ rspamd
# A free loopback port for redis and three for rspamd's workers.
port_free() {
	python3 -c 'import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' \
		"$1" 2>/dev/null
}
base=$((20000 + $$ % 20000))
while ! port_free "$base" || ! port_free $((base + 1)) || ! port_free $((base + 2)); do
	base=$((base + 3))
done
rport=$base
nport=$((base + 1))
cport=$((base + 2))

redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no \
	--dir "$WORK" >"$WORK/redis.log" 2>&1 &
redis_pid=$!

rs=$WORK/rspamd
mkdir -p "$rs/local.d" "$rs/db" "$rs/log" "$rs/run"
cat >"$rs/rspamd.conf" <<EOF
.include "\$CONFDIR/common.conf"
options {
	pidfile = "\$RUNDIR/rspamd.pid";
	.include "\$CONFDIR/options.inc"
	.include(try=true; priority=1,duplicate=merge) "\$LOCAL_CONFDIR/local.d/options.inc"
}
logging { type = "file"; filename = "\$LOGDIR/rspamd.log"; level = "warning"; }
worker "rspamd_proxy" {
	bind_socket = "$rs/run/milter.sock mode=0600";
	milter = yes;
	timeout = 120s;
	upstream "local" { default = yes; self_scan = yes; }
	count = $workers;
}
worker "normal" { bind_socket = "127.0.0.1:$nport"; count = $workers; }
worker "controller" { bind_socket = "127.0.0.1:$cport"; count = 1; }
EOF
echo 'dns { nameserver = ["127.0.0.1:5"]; timeout = 0.2s; retransmits = 1; }' \
	>"$rs/local.d/options.inc"
for m in fuzzy_check rbl surbl asn spf dkim dmarc arc emails phishing mx_check \
	rspamd_update url_redirector replies neural reputation greylist ratelimit history_redis; do
	echo 'enabled = false;' >"$rs/local.d/$m.conf"
done
cat >"$rs/local.d/classifier-bayes.conf" <<EOF
backend = "redis";
servers = "127.0.0.1:$rport";
autolearn = false;
EOF
share=$R/usr/share/rspamd
"$rspamd" -f -i $([ "$(id -u)" = 0 ] && echo "-u root -g root") -c "$rs/rspamd.conf" \
	--var CONFDIR="$R/etc/rspamd" --var LOCAL_CONFDIR="$rs" --var RUNDIR="$rs/run" \
	--var DBDIR="$rs/db" --var LOGDIR="$rs/log" --var SHAREDIR="$share" \
	--var PLUGINSDIR="$share/plugins" --var RULESDIR="$share/rules" \
	--var LUALIBDIR="$share/lualib" --var WWWDIR="$share/www" >"$rs/stdout" 2>&1 &
rspamd_pid=$!
i=0
while [ $i -lt 600 ] && ! "$rspamc" -h "127.0.0.1:$cport" stat >/dev/null 2>&1; do
	kill -0 "$rspamd_pid" 2>/dev/null || break
	sleep 0.1
	i=$((i + 1))
done
if ! "$rspamc" -h "127.0.0.1:$cport" stat >/dev/null 2>&1; then
	echo "rspamd-compare: rspamd did not start:" >&2
	tail -20 "$rs/stdout" "$rs/log/rspamd.log" >&2
	exit 1
fi
echo "== rspamd $("$rspamd" --version 2>/dev/null | head -1 | sed 's/^Rspamd daemon version //')"

now() { date +%s.%N; }
t0=$(now)
# Learn-Type: bulk, or rspamd skips messages its Bayes already puts in
# the class (train on error); Sift and bogofilter learn every message.
for cls in spam ham; do
	xargs "$rspamc" -h "127.0.0.1:$cport" --header 'Learn-Type: bulk' "learn_$cls" \
		<"$WORK/train-$cls.lst" >"$rs/learn-$cls.out" 2>&1
done
t1=$(now)
n_train=$(cat "$WORK/train-spam.lst" "$WORK/train-ham.lst" | wc -l)
learned=$(cat "$rs/learn-spam.out" "$rs/learn-ham.out" | grep -c 'success = true')
awk -v n="$n_train" -v l="$learned" -v a="$t0" -v b="$t1" \
	'BEGIN { printf "  learn: %d of %d messages learned in %.1f s\n", l, n, b - a }'

# Accuracy: one score per test message, in test.lst order.
xargs "$rspamc" -h "127.0.0.1:$nport" symbols <"$WORK/test.lst" >"$rs/check.out" 2>&1
awk '
	/^Results for file: / { f = $4; next }
	/^Action: / { sub(/^Action: /, ""); act[f] = $0 }
	/^Score: / { score[f] = $2 }
	END { while ((getline line < list) > 0) print line "\t" score[line] "\t" act[line] }
' list="$WORK/test.lst" "$rs/check.out" >"$rs/check.tsv"
scored=$(awk -F'\t' '$2 != ""' "$rs/check.tsv" | wc -l)
[ "$scored" -eq "$n_test" ] || {
	echo "rspamd-compare: rspamd scored $scored of $n_test" >&2
	exit 1
}
cut -f2 "$rs/check.tsv" | paste "$WORK/test-labels.lst" - >"$rs/scores"
cut -f3 "$rs/check.tsv" | paste "$WORK/test-labels.lst" - | awk -F'\t' '
	{ n[$1]++ }
	$2 != "no action" && $2 != "greylist" { flagged[$1]++ }
	$2 == "reject" { rejected[$1]++ }
	END {
		printf "  thresholds: spam recall %.4f, ham FP rate %.4f (%d of %d ham) at add header;",
			flagged["spam"] / n["spam"], flagged["ham"] / n["ham"], flagged["ham"], n["ham"]
		printf " reject: spam %.4f, ham %d\n", rejected["spam"] / n["spam"], rejected["ham"]
	}'
python3 "$srcdir/contrib/eval/roc.py" "$rs/scores" rspamd | sed 's/^/  /'
python3 "$srcdir/contrib/eval/roc.py" --paired "$WORK/sift/scores" "$rs/scores" sift,rspamd |
	sed 's/^/  /'

# rspamd's hs_helper compiles its Hyperscan databases in the background
# (the workers use PCRE until then): wait until none has been written for
# 10 s (at most 5 minutes), so that the run measures rspamd at its best.
i=0
while [ $i -lt 300 ] &&
	[ -n "$(find "$rs/db" -name '*.hs*' -newermt '-10 seconds' 2>/dev/null | head -1)" ]; do
	sleep 1
	i=$((i + 1))
done
# Speed: bench.sh's dialogue and figures, into the proxy's milter socket;
# the CPU is rspamd's main process and its workers together.
echo "  (rspamd proxy in milter mode, self_scan, $workers workers)"
SIFT_BUILDDIR=$b sh "$here/bench.sh" --attach "unix:$rs/run/milter.sock" "$rspamd_pid" \
	"$WORK/test" "$conc" "$repeat" >"$rs/bench.out" 2>&1
rc=$?
sed 's/^/  /' "$rs/bench.out"
exit "$rc"
