#!/bin/sh
# side-by-side.sh - sift-milter and the do-nothing libmilter filter (and,
# with SIFT_BUILDDIR_B, a second build of sift-milter) measured in turns
# by bench.sh, so that a machine whose speed drifts (a shared host, a
# virtual machine) slows them alike. See README.
#
# usage: side-by-side.sh CORPUS_DIR [CONCURRENCY] [REPEAT] [ROUNDS]
# env:   as bench.sh (SIFT_BUILDDIR, BENCH_CONF, BENCH_OWN_RULES, ...);
#        SIFT_BUILDDIR_B  another build directory, measured as "sift-B"
set -u

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 CORPUS_DIR [CONCURRENCY] [REPEAT] [ROUNDS]" >&2
	exit 2
fi
corpus=$1
conc=${2:-2}
repeat=${3:-2}
rounds=${4:-5}
here=$(cd "$(dirname "$0")" && pwd)
t=$(mktemp -d "${TMPDIR:-/tmp}/sift-sbs.XXXXXX")
trap 'rm -rf "$t"' EXIT
trap 'exit 130' INT TERM

servers="sift null"
[ -n "${SIFT_BUILDDIR_B:-}" ] && servers="sift sift-B null"
nserv=$(echo $servers | wc -w)

# One bench.sh run: "CPU_MS_PER_MSG P99_MS" on stdout, or a failure.
run() {
	case $1 in
	sift) sh "$here/bench.sh" "$corpus" "$conc" "$repeat" ;;
	sift-B) SIFT_BUILDDIR=$SIFT_BUILDDIR_B sh "$here/bench.sh" "$corpus" "$conc" "$repeat" ;;
	null) sh "$here/bench.sh" --baseline "$corpus" "$conc" "$repeat" ;;
	esac >"$t/out" 2>"$t/err" || { cat "$t/err" "$t/out" >&2; return 1; }
	awk '/^server CPU:/ { cpu = $6 } /^latency/ { p99 = $7 } END { print cpu, p99 }' "$t/out"
}

printf '%-6s %-8s %14s %10s\n' round server "CPU ms/msg" "p99 ms"
r=1
while [ $r -le "$rounds" ]; do
	# each round starts with the next server: none always runs first
	i=0
	for s in $servers $servers; do
		i=$((i + 1))
		[ $i -le $(((r - 1) % nserv)) ] && continue
		[ $i -gt $(((r - 1) % nserv + nserv)) ] && break
		res=$(run "$s") || exit 1
		printf '%-6s %-8s %14s %10s\n' "$r" "$s" $res
		echo "$r $s $res" >>"$t/all"
	done
	r=$((r + 1))
done

# Per server: the median CPU and p99 over the rounds; per round the
# ratio to null's of the same round, and the median of those ratios.
echo
awk -v servers="$servers" '
function median(a, n,    i, j, x) {
	for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ cpu[$1, $2] = $3; p99[$1, $2] = $4; if ($1 > rounds) rounds = $1 }
END {
	ns = split(servers, sv, " ")
	for (k = 1; k <= ns; k++) {
		s = sv[k]; n = 0; m = 0
		for (r = 1; r <= rounds; r++) {
			c[++n] = cpu[r, s]; p[n] = p99[r, s]
			if (s != "null" && cpu[r, "null"] > 0) q[++m] = cpu[r, s] / cpu[r, "null"]
		}
		line = sprintf("%-7s median CPU %.3f ms/msg, median p99 %.3f ms", s, median(c, n), median(p, n))
		if (m > 0) line = line sprintf(", CPU over null: median %.2fx (rounds: ", median(q, m))
		for (r = 1; m > 0 && r <= rounds; r++)
			line = line sprintf("%s%.2f", r > 1 ? " " : "", cpu[r, s] / cpu[r, "null"])
		print line (m > 0 ? ")" : "")
	}
}' "$t/all"
