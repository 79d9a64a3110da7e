#!/bin/sh
# bench.sh - throughput, latency, server CPU and memory of sift-milter (or,
# with --baseline, of a libmilter filter that does nothing) over a corpus,
# driven through the milter protocol by sift-mclient. See README.
#
# usage: bench.sh [--baseline | --attach SOCKET PID] CORPUS_DIR [CONCURRENCY] [REPEAT]
#   --attach measures a milter already listening on SOCKET (e.g.
#   unix:/run/x.sock): the CPU of process PID and its children, the
#   largest VmHWM among them; it is not started or stopped here.
# env:   SIFT_BUILDDIR  build directory holding sift-milter, sift-mclient and
#                       contrib/bench/null-milter (default: the current
#                       directory if ./sift-milter exists)
#        BENCH_CONF     extra configuration lines appended to the daemon's
#                       config (a file), e.g. to point bayes_db at a trained store
#        BENCH_OWN_RULES yes (default): the daemon loads the source tree's
#                       rules as well as any rules lines in BENCH_CONF;
#                       no: only BENCH_CONF's (e.g. SpamAssassin's alone)
#        BENCH_WARMUP   messages sent before measuring (default 200)
#        BENCH_PER_CONN messages per milter connection (default 1, as Postfix)
#        BENCH_DB_WAIT  seconds to wait for a prefilter database the daemon
#                       builds in the background (not yet cached: its CPU
#                       would be counted as the messages'); default 900
set -u

baseline=no
attach_sock=""
attach_pid=""
if [ "${1:-}" = "--baseline" ]; then
	baseline=yes
	shift
elif [ "${1:-}" = "--attach" ] && [ $# -ge 3 ]; then
	attach_sock=$2
	attach_pid=$3
	shift 3
fi
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 [--baseline | --attach SOCKET PID] CORPUS_DIR [CONCURRENCY] [REPEAT]" >&2
	exit 2
fi
corpus=$1
conc=${2:-4}
repeat=${3:-1}
warmup=${BENCH_WARMUP:-200}
per_conn=${BENCH_PER_CONN:-1}
here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)

if [ -n "${SIFT_BUILDDIR:-}" ]; then
	b=$SIFT_BUILDDIR
elif [ -x ./sift-milter ]; then
	b=.
else
	echo "bench.sh: set SIFT_BUILDDIR to a build directory (sift-milter not in .)" >&2
	exit 2
fi
b=$(cd "$b" && pwd)
mclient=$b/sift-mclient
if [ -n "$attach_pid" ]; then
	server=$(cat "/proc/$attach_pid/comm" 2>/dev/null) ||
		{ echo "bench.sh: no process $attach_pid" >&2; exit 2; }
	server="$server (attached, pid $attach_pid)"
elif [ "$baseline" = yes ]; then
	server=$b/contrib/bench/null-milter
else
	server=$b/sift-milter
fi
for p in "$mclient" $([ -z "$attach_pid" ] && echo "$server"); do
	[ -x "$p" ] || { echo "bench.sh: $p not built (make in $b)" >&2; exit 2; }
done

t=$(mktemp -d "${TMPDIR:-/tmp}/sift-bench.XXXXXX")
pid=""
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid"
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -9 "$pid" 2>/dev/null
	fi
	rm -rf "$t"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sock=$t/s
# The shipped defaults, except what a throw-away run must change: the
# rules come from the source tree (nothing is installed), logs go to a file.
{
	echo "log = stderr"
	[ "${BENCH_OWN_RULES:-yes}" = no ] || echo "rules = $srcdir/rules"
	[ -n "${BENCH_CONF:-}" ] && cat "$BENCH_CONF"
} >"$t/sift.conf"

if [ -n "$attach_pid" ]; then
	spec=$attach_sock
	measured=$attach_pid
else
	if [ "$baseline" = yes ]; then
		# -g: the same protocol options as sift-milter's glue (no replies to
		# headers and body chunks), so the difference is sift's own work.
		"$server" -g -p "unix:$sock" 2>"$t/server.log" &
	else
		"$server" -f -c "$t/sift.conf" -d "$t/state" -p "unix:$sock" 2>"$t/server.log" &
	fi
	pid=$!
	i=0
	while [ ! -S "$sock" ] && [ $i -lt 300 ]; do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
		i=$((i + 1))
	done
	if [ ! -S "$sock" ]; then
		echo "bench.sh: server did not start within 30 s:" >&2
		cat "$t/server.log" >&2
		exit 1
	fi
	spec=unix:$sock
	measured=$pid
fi

# The measured process and its children (a multi-process server's workers).
tree() { echo "$measured"; ps -o pid= --ppid "$measured"; }
# utime and stime in clock ticks (fields 14, 15 after "(comm)") and minor
# page faults (field 10), each summed: the CPU, and where it went. The
# do-nothing filter's time is mostly the kernel's (sockets, threads); a
# filter's own work shows as user time.
cpu_split() {
	for p in $(tree); do sed 's/.*) //' "/proc/$p/stat" 2>/dev/null; done |
		awk '{ u += $12; s += $13; f += $8 } END { print u, s, f }'
}
# The largest VmHWM (peak) or VmRSS (now) among them, KiB.
rss_of() {
	for p in $(tree); do awk -v k="$1:" '$1 == k { print $2 }' "/proc/$p/status" 2>/dev/null; done |
		sort -n | tail -1
}

find "$corpus" -name '*.eml' -type f | sort >"$t/all"
total=$(wc -l <"$t/all")
if [ "$total" -eq 0 ]; then
	echo "bench.sh: no *.eml under $corpus" >&2
	exit 2
fi
# A prefilter database built in the background runs on the daemon's CPU:
# measured beside the messages it would count as theirs. Wait for it (it
# is cached for the next run).
if [ -z "$attach_pid" ] && [ "$baseline" = no ] &&
	grep -q "prefilter database: building" "$t/server.log"; then
	echo "bench.sh: waiting for the prefilter database to be built (once per rule set)" >&2
	i=0
	while ! grep -q "prefilter database: built" "$t/server.log" &&
		[ $i -lt "${BENCH_DB_WAIT:-900}" ]; do
		kill -0 "$pid" 2>/dev/null || break
		sleep 1
		i=$((i + 1))
	done
	grep -q "prefilter database: built" "$t/server.log" ||
		echo "bench.sh: the database was not built within ${BENCH_DB_WAIT:-900} s; measuring without" >&2
fi
# Warm-up: page cache, rule JIT, allocator, first-use paths.
if [ "$warmup" -gt 0 ]; then
	mkdir "$t/warm"
	head -n "$warmup" "$t/all" | while read -r f; do
		ln -s "$f" "$t/warm/$(basename "$f")"
	done
	"$mclient" -s "$spec" -j "$conc" -q -e .eml "$t/warm" 2>"$t/warm.sum" ||
		{ echo "bench.sh: warm-up failed:" >&2; cat "$t/warm.sum" >&2; exit 1; }
fi

hz=$(getconf CLK_TCK)
split0=$(cpu_split)
"$mclient" -s "$spec" -j "$conc" -n "$repeat" --per-conn "$per_conn" -q -e .eml \
	"$corpus" 2>"$t/run.sum"
rc=$?
split1=$(cpu_split)
hwm=$(rss_of VmHWM)
rss=$(rss_of VmRSS)
sum=$(tail -1 "$t/run.sum")

get() { printf '%s\n' "$sum" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
msgs=$(get messages)
errors=$(get errors)
echo "server:           $(basename "$server")$([ "$baseline" = yes ] && echo " (baseline)")"
echo "corpus:           $corpus ($total files x $repeat, concurrency $conc, $per_conn per connection)"
echo "messages:         $msgs (errors $errors)"
echo "elapsed:          $(get elapsed_s) s"
echo "msgs/s:           $(get msgs_per_s)"
echo "$split0 $split1" | awk -v hz="$hz" -v n="$msgs" '{
	u = ($4 - $1) * 1000 / hz
	k = ($5 - $2) * 1000 / hz
	printf "server CPU:       %.0f ms total, %.3f ms per message\n", u + k, n ? (u + k) / n : 0
	if (n)
		printf "  user / kernel:  %.3f / %.3f ms per message, %.1f minor page faults per message\n",
		    u / n, k / n, ($6 - $3) / n }'
echo "latency p50/p95/p99: $(get p50_ms) / $(get p95_ms) / $(get p99_ms) ms (max $(get max_ms))"
# The peak includes compiling the rules at the start; the end is what the
# daemon holds while it serves.
echo "peak RSS (VmHWM): $((hwm / 1024)) MiB (at the end: $((rss / 1024)) MiB)"
echo "actions:          accept $(get accept) (of which flagged as spam $(get flagged)), reject $(get reject), tempfail $(get tempfail), quarantine $(get quarantine)"
if [ "$rc" -ne 0 ]; then
	echo "bench.sh: sift-mclient reported errors:" >&2
	head -5 "$t/run.sum" >&2
	exit 1
fi
exit 0
