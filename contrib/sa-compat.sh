#!/bin/sh
# sa-compat.sh - how much of SpamAssassin's rule set Sift's rules engine
# loads and runs, and (with -n) how close its hits come to SpamAssassin's.
#
#   contrib/sa-compat.sh [-b BUILDDIR] [-n N] [-c CORPUS] [-m MANIFEST] [SA_RULES_DIR]
#
# Builds contrib/sa-compat.c against BUILDDIR/libsift.a (default: $top_builddir,
# else the current directory), then loads SA_RULES_DIR (default: the newest
# sa-update directory under /var/lib/spamassassin, else /usr/share/spamassassin)
# twice: as the daemon would (ifplugin true only for the plugins Sift provides)
# and with every ifplugin block read (rules_all_plugins = yes), printing for
# each the rules loaded and skipped per type and the warnings and errors.
#
# With -n N, N spam and N ham messages of the corpus test folds (CORPUS is
# where the archive was extracted, default /tmp/corpus; MANIFEST default
# /work/shared/corpus/MANIFEST.tsv; see /work/shared/corpus/README.md) are scored
# by `spamassassin -L` (local tests only) and by Sift with the same rules, and
# the rule names each reports are compared, restricted to the rules Sift runs.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
builddir=${top_builddir:-$(pwd)}
n=0
corpus=/tmp/corpus
manifest=/work/shared/corpus/MANIFEST.tsv
while getopts b:n:c:m: opt; do
	case $opt in
	b) builddir=$OPTARG ;;
	n) n=$OPTARG ;;
	c) corpus=$OPTARG ;;
	m) manifest=$OPTARG ;;
	*) echo "usage: $0 [-b BUILDDIR] [-n N] [-c CORPUS] [-m MANIFEST] [SA_RULES_DIR]" >&2
	   exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if [ $# -ge 1 ]; then
	sadir=$1
else
	sadir=$(ls -d /var/lib/spamassassin/*/updates_spamassassin_org 2>/dev/null | sort | tail -n 1)
	[ -n "$sadir" ] || sadir=/usr/share/spamassassin
fi
[ -d "$sadir" ] || { echo "$0: no SpamAssassin rules at $sadir" >&2; exit 1; }
[ -f "$builddir/libsift.a" ] || { echo "$0: no libsift.a in $builddir (use -b)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sa-compat.XXXXXX")
[ -n "${SA_COMPAT_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT

# shellcheck disable=SC2046 # pkg-config output is a list of flags
${CC:-cc} -O2 -I"$top/include" -I"$builddir" "$top/contrib/sa-compat.c" "$builddir/libsift.a" \
	$(pkg-config --libs libpcre2-8 libpsl lmdb hiredis libcares libsodium) \
	$(pkg-config --libs libhs 2>/dev/null || true) \
	-lpthread -lm -o "$work/sa-compat"

lint() {
	label=$1
	shift
	echo "== $label"
	"$work/sa-compat" "$@" 2>"$work/lint.txt" || true
	grep -E '^[0-9]+ error' "$work/lint.txt" || true
	printf '  skipped eval tests (distinct): %s\n' "$(grep -c 'skipped eval test' "$work/lint.txt" || true)"
	printf '  skipped directives (distinct): %s\n' "$(grep -c 'skipped \(plugin \)\?directive' "$work/lint.txt" || true)"
	printf '  metas naming undefined rules:  %s\n' "$(grep -c 'undefined rule' "$work/lint.txt" || true)"
	grep -v 'warning:' "$work/lint.txt" | grep -v '^[0-9]* error' | sed 's/^/  ERROR /' || true
}

echo "SpamAssassin rules: $sadir"
lint "as scored: ifplugin true for ReplaceTags and MIMEHeader only" -r "$work/runnable" "$sadir"
lint "every ifplugin block read (rules_all_plugins = yes)" -a "$sadir"

[ "$n" -gt 0 ] || exit 0
command -v spamassassin >/dev/null 2>&1 || { echo "spamassassin not installed: no comparison" >&2; exit 1; }
[ -d "$corpus/spamassassin/spam" ] || {
	echo "$0: corpus not found at $corpus (extract it there, see -c)" >&2
	exit 1
}

# The test folds (7-9) of the fixed split; every k-th file for an even sample.
pick() {
	label=$1
	if [ -f "$manifest" ]; then
		awk -F'\t' -v l="$label" '$2 == l && $6 >= 7 { print $1 }' "$manifest"
	else
		(cd "$corpus" && ls spamassassin/"$label"/*.eml)
	fi | awk -v n="$n" '{ f[NR] = $0 } END { k = NR / n; if (k < 1) k = 1;
		for (i = 1; i <= NR && c < n; i += k) { print f[int(i)]; c++ } }'
}
{ pick spam; pick ham; } | while read -r f; do
	case $f in /*) echo "$f" ;; *) echo "$corpus/$f" ;; esac
done >"$work/files"

# One mbox, one SpamAssassin process: its start-up dominates otherwise.
# SpamAssassin sorts an mbox by date: a numbered field keeps track of each message.
i=0
while read -r f; do
	i=$((i + 1))
	echo "From sa-compat@localhost Thu Jan  1 00:00:00 1970"
	echo "X-Sift-Compat-Id: $i"
	sed 's/^\(>*From \)/>\1/' "$f"
	echo
done <"$work/files" >"$work/mbox"
echo "== comparing on $(wc -l <"$work/files") messages (spamassassin -L, same rules)"
spamassassin -L --mbox --configpath="$sadir" \
	<"$work/mbox" 2>/dev/null |
	awk 'function flush() { if (msg) { sub(/.*tests=/, "", s); sub(/[ \t]+autolearn=.*/, "", s);
				gsub(/[ \t]/, "", s); if (s == "none") s = ""; print id "\t" s }
				s = ""; on = 0; id = 0 }
	     /^From sa-compat@localhost / { flush(); msg = 1; hdr = 1; got = 0; next }
	     !id && /^X-Sift-Compat-Id: / { id = $2 } # report_safe wraps spam: not in the header
	     hdr && /^$/ { hdr = 0; on = 0; next }
	     hdr && on && /^[ \t]/ { s = s $0; next }
	     hdr { on = 0 }
	     hdr && !got && /^X-Spam-Status:/ { s = $0; on = 1; got = 1 }
	     END { flush() }' | sort -n | cut -f2 >"$work/sa.txt"
xargs "$work/sa-compat" "$sadir" <"$work/files" 2>/dev/null | cut -f2 >"$work/sift.txt"

if [ "$(wc -l <"$work/sa.txt")" -ne "$(wc -l <"$work/files")" ]; then
	echo "spamassassin reported $(wc -l <"$work/sa.txt") of $(wc -l <"$work/files") messages" >&2
	exit 1
fi
paste "$work/sa.txt" "$work/sift.txt" | awk -F'\t' -v run="$work/runnable" '
	BEGIN { while ((getline l < run) > 0) { split(l, a, "\t"); runs[a[1]] = 1 } }
	{
		delete sa; delete us
		n1 = split($1, x, ","); for (i = 1; i <= n1; i++) if (x[i] != "") sa[x[i]] = 1
		n2 = split($2, y, ","); for (i = 1; i <= n2; i++) if (y[i] != "") us[y[i]] = 1
		for (r in sa) {
			if (!(r in runs)) { other++; continue }
			if (r in us) { both++; b[r]++ } else { only_sa++; osa[r]++ }
		}
		for (r in us) if (!(r in sa)) { only_us++; ous[r]++ }
		msgs++
	}
	END {
		printf "  messages %d; rule hits on rules Sift runs: both %d, SpamAssassin only %d, Sift only %d\n",
			msgs, both, only_sa, only_us
		printf "  (SpamAssassin hits of rules Sift does not run - eval, DNS, plugins: %d)\n", other
		if (both + only_sa > 0) printf "  Sift finds %.1f%% of SpamAssassin'"'"'s hits", 100 * both / (both + only_sa)
		if (both + only_us > 0) printf "; %.1f%% of Sift'"'"'s hits agree\n", 100 * both / (both + only_us)
		print "  hit by SpamAssassin only (rule, messages):"
		for (r in osa) printf "    %-28s %4d\n", r, osa[r] | "sort -k2 -rn | head -n 12"
		close("sort -k2 -rn | head -n 12")
		print "  hit by Sift only (rule, messages):"
		for (r in ous) printf "    %-28s %4d\n", r, ous[r] | "sort -k2 -rn | head -n 12"
	}'
