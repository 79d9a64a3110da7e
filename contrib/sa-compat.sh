#!/bin/sh
# sa-compat.sh - how much of SpamAssassin's rule set Sift's rules engine
# loads and runs, and (with -n) how close its hits come to SpamAssassin's.
#
#   contrib/sa-compat.sh [-b BUILDDIR] [-n N|all] [-c CORPUS] [-m MANIFEST] [-k DIR] [SA_RULES_DIR]
#
# Builds contrib/sa-compat.c against BUILDDIR/libsift.a (default: $top_builddir,
# else the current directory), then loads SA_RULES_DIR (default: the newest
# sa-update directory under /var/lib/spamassassin, else /usr/share/spamassassin)
# twice: as the daemon would (ifplugin true only for the plugins Sift provides)
# and with every ifplugin block read (rules_all_plugins = yes), printing for
# each the rules loaded and skipped per type and the warnings and errors.
#
# With -n N, N spam and N ham messages of the corpus test folds (CORPUS is
# where the archive was extracted, default /tmp/corpus; MANIFEST, the
# corpus's fold list, default CORPUS/MANIFEST.tsv; without one, every
# message of CORPUS/spamassassin/{spam,ham} is a candidate) are scored
# by `spamassassin -L` (local tests only, no Bayes: score set 0) and by Sift
# with the same rules and score set, and the rule names each reports are
# compared, restricted to the rules Sift runs: Jaccard of the (rule, message)
# hits, and the rules that differ most. -n all takes every test-fold message.
# The scores of both then give the accuracy table (contrib/eval/roc.py: ROC
# AUC, recall at 0.1% and 1% ham FPR, and recall and FPR at 5 points).
# -k DIR keeps SpamAssassin's results in DIR and reuses them when the same
# messages are asked for again (SpamAssassin takes about 15 minutes for all).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
builddir=${top_builddir:-$(pwd)}
n=0
corpus=/tmp/corpus
manifest=
keep=
while getopts b:n:c:m:k: opt; do
	case $opt in
	b) builddir=$OPTARG ;;
	n) n=$OPTARG ;;
	c) corpus=$OPTARG ;;
	m) manifest=$OPTARG ;;
	k) keep=$OPTARG ;;
	*) echo "usage: $0 [-b BUILDDIR] [-n N|all] [-c CORPUS] [-m MANIFEST] [-k DIR] [SA_RULES_DIR]" >&2
	   exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ -n "$manifest" ] || manifest=$corpus/MANIFEST.tsv
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

# shellcheck disable=SC2046 # print-libs prints a list of flags
${CC:-cc} -O2 -I"$top/include" -I"$builddir" "$top/contrib/sa-compat.c" "$builddir/libsift.a" \
	$(make -s -C "$builddir" print-libs | tail -n 1) -o "$work/sa-compat"

lint() {
	label=$1
	shift
	echo "== $label"
	"$work/sa-compat" "$@" 2>"$work/lint.txt" || true
	grep -E '^[0-9]+ error' "$work/lint.txt" || true
	printf '  skipped eval tests (functions): %s\n' "$(awk '/skipped [0-9]+ eval tests/ { sub(/.*skipped /, ""); n += $1 }
		/skipped eval test / { n++ } END { print n + 0 }' "$work/lint.txt")"
	printf '  skipped directives (distinct): %s\n' "$(grep -c 'skipped \(plugin \)\?directive' "$work/lint.txt" || true)"
	printf '  metas naming undefined rules:  %s\n' "$(grep -c 'undefined rule' "$work/lint.txt" || true)"
	grep -v 'warning:' "$work/lint.txt" | grep -v '^[0-9]* error' | sed 's/^/  ERROR /' || true
}

echo "SpamAssassin rules: $sadir"
lint "as scored: ifplugin true for the plugins Sift provides" -r "$work/runnable" "$sadir"
lint "every ifplugin block read (rules_all_plugins = yes)" -a "$sadir"

[ "$n" = all ] && n=1000000
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
		echo "$0: no manifest at $manifest: sampling all of $label, not the test folds" >&2
		(cd "$corpus" && ls spamassassin/"$label"/*.eml)
	fi | awk -v n="$n" '{ f[NR] = $0 } END { k = NR / n; if (k < 1) k = 1;
		for (i = 1; i <= NR && c < n; i += k) { print f[int(i)]; c++ } }'
}
{ pick spam | sed 's/^/spam /'; pick ham | sed 's/^/ham /'; } | while read -r l f; do
	echo "$l" >>"$work/labels"
	case $f in /*) echo "$f" ;; *) echo "$corpus/$f" ;; esac
done >"$work/files"

echo "== comparing on $(wc -l <"$work/files") messages (spamassassin -L, same rules)"
if [ -n "$keep" ] && [ -f "$keep/sa.txt" ] && cmp -s "$keep/files" "$work/files"; then
	echo "== reusing SpamAssassin's results in $keep"
	cp "$keep/sa.txt" "$keep/sa-score.txt" "$work/"
else
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
# No Bayes (score set 0, like Sift's -s 0 below), and a home of its own so
# that no database or user_prefs of the caller's is read or written.
mkdir -p "$work/home"
HOME=$work/home spamassassin -L --mbox --configpath="$sadir" \
	--cf='use_bayes 0' --cf='bayes_auto_learn 0' <"$work/mbox" 2>/dev/null |
	awk 'function flush() { if (msg) { sub(/.*tests=/, "", s); sub(/[ \t]+autolearn=.*/, "", s);
				gsub(/[ \t]/, "", s); sc = s0; sub(/.*score=/, "", sc); sub(/[ \t].*/, "", sc)
				if (s == "none") s = ""; print id "\t" s "\t" sc }
				s = ""; on = 0; id = 0 }
	     /^From sa-compat@localhost / { flush(); msg = 1; hdr = 1; got = 0; next }
	     !id && /^X-Sift-Compat-Id: / { id = $2 } # report_safe wraps spam: not in the header
	     hdr && /^$/ { hdr = 0; on = 0; next }
	     hdr && on && /^[ \t]/ { s = s $0; next }
	     hdr { on = 0 }
	     hdr && !got && /^X-Spam-Status:/ { s = $0; s0 = $0; on = 1; got = 1 }
	     END { flush() }' | sort -n | cut -f2,3 >"$work/sa-both.txt"
	cut -f1 "$work/sa-both.txt" >"$work/sa.txt"
	cut -f2 "$work/sa-both.txt" >"$work/sa-score.txt"
	if [ -n "$keep" ]; then
		mkdir -p "$keep"
		cp "$work/files" "$work/sa.txt" "$work/sa-score.txt" "$keep/"
	fi
fi
xargs "$work/sa-compat" -s 0 "$sadir" <"$work/files" 2>/dev/null >"$work/sift-both.txt"
cut -f2 "$work/sift-both.txt" >"$work/sift.txt"
cut -f3 "$work/sift-both.txt" >"$work/sift-score.txt"

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
		if (both + only_sa + only_us > 0)
			printf "  Jaccard of (rule, message) hits: %.4f\n", both / (both + only_sa + only_us)
		printf "  (SpamAssassin hits of rules Sift does not run - eval, DNS, plugins: %d)\n", other
		if (both + only_sa > 0) printf "  Sift finds %.1f%% of SpamAssassin'"'"'s hits", 100 * both / (both + only_sa)
		if (both + only_us > 0) printf "; %.1f%% of Sift'"'"'s hits agree\n", 100 * both / (both + only_us)
		print "  hit by SpamAssassin only (rule, messages):"
		for (r in osa) printf "    %-28s %4d\n", r, osa[r] | "sort -k2 -rn | head -n 25"
		close("sort -k2 -rn | head -n 25")
		print "  hit by Sift only (rule, messages):"
		for (r in ous) printf "    %-28s %4d\n", r, ous[r] | "sort -k2 -rn | head -n 25"
	}'

# Accuracy of both scores on these messages (SpamAssassin: required_score 5).
for who in sa sift; do
	paste -d' ' "$work/labels" "$work/$who-score.txt" >"$work/$who-roc.txt"
	printf '== %s: ' "$([ $who = sa ] && echo SpamAssassin || echo 'Sift, same rules')"
	python3 "$top/contrib/eval/roc.py" "$work/$who-roc.txt" "$who" | tr '\n' ' '
	awk '{ if ($1 == "spam") { s++; if ($2 >= 5) ts++ } else { h++; if ($2 >= 5) fh++ } }
	     END { printf "at 5 points: recall %.3f, FPR %.2f%%\n", ts / s, 100 * fh / h }' "$work/$who-roc.txt"
done
