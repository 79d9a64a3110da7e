#!/bin/sh
# run.sh TARGET SECONDS - builds the libFuzzer target tests/fuzz/fuzz_TARGET.c
# with clang (ASan + UBSan) and runs it for at most SECONDS over a copy of
# its seed corpus tests/fuzz/corpus_TARGET/ (the source tree is not
# written to). Exits 0 when nothing was found, 1 on a crash, leak, timeout
# or build failure (the reproducer's path is printed), 2 on usage errors and
# 77 (skip) only when clang or its libFuzzer runtime is missing (for the
# evals target also when SpamAssassin's rules files are).
#
# config.h is taken from $top_builddir (as `make check` exports it), else
# from $SIFT_BUILDDIR, else an empty one is used. Set FUZZ_KEEP=1 to keep
# the work directory, FUZZ_WORKDIR to choose it.
set -u

usage() {
	echo "usage: $0 TARGET SECONDS   (targets: conf mime dns dnsbl_file authres rep rules evals milter)" >&2
	exit 2
}
[ $# -eq 2 ] || usage
target=$1
seconds=$2
case $seconds in '' | *[!0-9]*) usage ;; esac

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

# What the whole pipeline links with: the build tree's own list (Makefile.am's
# print-libs) when there is one, so that a module's new library is not
# missed here; else pkg-config's.
pipeline_libs() {
	if [ -n "${SIFT_BUILDDIR:-}" ] && make -s -C "$SIFT_BUILDDIR" print-libs 2>/dev/null; then
		return
	fi
	echo "$(pkg-config --libs libpcre2-8 libpsl lmdb hiredis libcares libsodium libcrypto \
		opendkim 2>/dev/null) $(pkg-config --libs libhs 2>/dev/null) -lspf2 -lopendmarc"
}

# The scoring pipeline's sources (what rules' eval tests call: the DNS
# service, auth's results, Bayes, the reputation) and its build defines; the
# escaped quotes make C string literals (the path has no spaces).
pipeline_srcs="milter/scan.c milter/verdict.c milter/rules*.c milter/mime.c milter/mime_html.c
	milter/msg.c milter/hits.c milter/arena.c milter/xalloc.c milter/diag.c milter/conf.c
	milter/log.c milter/bayes*.c milter/dnsbl*.c milter/rep*.c milter/metrics.c
	milter/msglog.c milter/dns.c milter/dns_*.c milter/auth*.c"
pipeline_defs="-DSIFT_STATEDIR=\"/nonexistent\" -DSIFT_RULESDIR=\"$top/rules\"
	-DSIFT_SYSCONFDIR=\"/nonexistent\""

# Target name -> sources (relative to the top of the tree) and libraries.
# Each module's owner keeps its line current.
case $target in
conf)
	srcs="milter/conf.c milter/verdict.c milter/diag.c milter/hits.c milter/arena.c
	      milter/xalloc.c"
	libs=""
	;;
mime)
	srcs="milter/mime.c milter/mime_html.c milter/msg.c milter/arena.c milter/xalloc.c"
	libs=""
	;;
authres)
	# the Authentication-Results and From readers (pure functions)
	srcs="milter/auth_ar.c milter/dns.c milter/dns_cache.c milter/dns_resolver.c milter/conf.c
	      milter/diag.c milter/log.c milter/xalloc.c milter/arena.c"
	libs="$(pkg-config --libs libcares libpsl 2>/dev/null)"
	;;
dns)
	# the response parser and what the resolver's file links with
	srcs="milter/dns.c milter/dns_cache.c milter/dns_resolver.c milter/conf.c milter/diag.c
	      milter/log.c milter/xalloc.c milter/arena.c"
	libs="$(pkg-config --libs libcares libpsl 2>/dev/null)"
	;;
dnsbl_file)
	# the local list files' reader, and the DNS cache's clock it reads
	srcs="milter/dnsbl_file.c milter/dns_cache.c milter/diag.c milter/log.c milter/xalloc.c
	      milter/arena.c"
	libs=""
	;;
rep)
	# the shared reputation's decoders of what peers and the mirror hold
	srcs="milter/rep_key.c milter/rep_sign.c milter/conf.c milter/diag.c milter/log.c
	      milter/xalloc.c milter/arena.c"
	libs="$(pkg-config --libs libsodium libpsl 2>/dev/null)"
	;;
rules)
	# the rules and what their eval tests call: the DNS service (DNS lists),
	# auth's results, and the pipeline `sift rules qa` drives
	srcs=$pipeline_srcs
	libs="$(pipeline_libs)"
	defs=$pipeline_defs
	;;
evals)
	# the same, run by SpamAssassin's stock rules over the input's messages
	srcs=$pipeline_srcs
	libs="$(pipeline_libs)"
	defs=$pipeline_defs
	sa_rules=${SIFT_FUZZ_SA_RULES:-/usr/share/spamassassin}
	[ -f "$sa_rules/72_active.cf" ] || {
		echo "SKIP: no SpamAssassin rules in $sa_rules: fuzz target 'evals' not run" >&2
		exit 77
	}
	;;
milter)
	# the protocol glue and the whole pipeline behind it; libmilter itself
	# is played by the target's shim, so it is not linked
	srcs="milter/glue.c $pipeline_srcs"
	libs="$(pipeline_libs)"
	defs=$pipeline_defs
	;;
*)
	echo "$0: unknown target '$target'" >&2
	usage
	;;
esac

src="$here/fuzz_$target.c"
seeds="$here/corpus_$target"
[ -f "$src" ] || {
	echo "$0: $src not found" >&2
	exit 1
}
command -v clang >/dev/null 2>&1 || {
	echo "SKIP: clang not found: fuzz target '$target' not run" >&2
	exit 77
}

work=${FUZZ_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/sift-fuzz-$target.XXXXXX")}
mkdir -p "$work/corpus" "$work/artifacts"
cleanup() {
	[ "${FUZZ_KEEP:-0}" = 1 ] || [ "${keep_work:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

confdir=""
for d in "${top_builddir:-}" "${SIFT_BUILDDIR:-}"; do
	if [ -n "$d" ] && [ -f "$d/config.h" ]; then
		confdir=$d
		break
	fi
done
if [ -z "$confdir" ]; then
	confdir="$work/inc"
	mkdir -p "$confdir"
	printf "#define _GNU_SOURCE 1\n" >"$confdir/config.h"
fi

# A probe first, so a clang without libFuzzer is a skip, not a failure.
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n{ return 0; }\n' \
	>"$work/probe.c"
if ! clang -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" >/dev/null 2>&1; then
	echo "SKIP: clang has no libFuzzer runtime: fuzz target '$target' not run" >&2
	exit 77
fi

abs_srcs=""
for s in $(cd "$top" && echo $srcs); do
	abs_srcs="$abs_srcs $top/$s"
done
echo "building fuzz_$target" >&2
# shellcheck disable=SC2086,SC2090 # word splitting of the source, library and define lists is wanted
if ! clang -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -I"$top/include" -I"$top/milter" -I"$confdir" -DFUZZ_SRCDIR="\"$top\"" ${defs:-} \
	"$src" $abs_srcs $libs -lm -pthread -o "$work/fuzz_$target"; then
	echo "FAIL: fuzz_$target does not build" >&2
	keep_work=1
	exit 1
fi

[ -d "$seeds" ] && cp "$seeds"/* "$work/corpus/" 2>/dev/null
dict=""
[ -f "$here/$target.dict" ] && dict="-dict=$here/$target.dict"

# libFuzzer's default error exit code is 77, which automake reads as "skip":
# make every finding exit 1 instead.
# shellcheck disable=SC2086
"$work/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	-error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
	-artifact_prefix="$work/artifacts/" $dict "$work/corpus" >"$work/fuzz.log" 2>&1
rc=$?
tail -n 25 "$work/fuzz.log" >&2
if [ $rc -ne 0 ]; then
	keep_work=1
	echo "FAIL: fuzz_$target found a problem (exit $rc); reproducers in $work/artifacts:" >&2
	ls -l "$work/artifacts" >&2
	echo "replay one with: $work/fuzz_$target FILE" >&2
	exit 1
fi
echo "PASS: fuzz_$target ran ${seconds}s without findings" >&2
exit 0
