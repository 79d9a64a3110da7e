#!/bin/sh
# bayes-oof.sh - out-of-fold Bayes probabilities for `sift rules fit
# --bayes-oof`: for each selected fold, a fresh Bayes store learns the other
# selected folds and scores the held-out one, so no probability comes from
# a store that saw its message.
#
# usage: contrib/eval/bayes-oof.sh MANIFEST ROOT FOLDS [GROUPS] > OOF.tsv
#   MANIFEST: path label group bytes md5 fold (the corpus's MANIFEST.tsv);
#   ROOT: the directory the manifest's paths are relative to;
#   FOLDS: e.g. "0-6" or "0,1,2"; GROUPS: comma-separated groups (default all).
# environment: BUILDDIR (default .), SIFT, EXTRA_CONF (configuration lines), WORK.
# output: "file-name<TAB>P(spam)" per selected message ("-" when Bayes did not vote).
set -eu

manifest=${1:?usage: bayes-oof.sh MANIFEST ROOT FOLDS [GROUPS]}
root=$(cd "${2:?root}" && pwd)
folds=${3:?folds}
groups=${4:-}
BUILDDIR=$(cd "${BUILDDIR:-.}" && pwd)
SIFT=${SIFT:-$BUILDDIR/sift}
if [ -z "${WORK:-}" ]; then
	WORK=$(mktemp -d /tmp/bayes-oof.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/norules"

# The selected lines as "fold label path".
awk -F'\t' -v folds="$folds" -v groups="$groups" -v root="$root" '
	BEGIN {
		n = split(folds, parts, ",")
		for (i = 1; i <= n; i++) {
			if (split(parts[i], ab, "-") == 2) { for (f = ab[1]; f <= ab[2]; f++) sel[f] = 1 }
			else sel[parts[i]] = 1
		}
		ng = split(groups, gl, ",")
		for (i = 1; i <= ng; i++) gsel[gl[i]] = 1
	}
	NR == 1 && $1 == "path" { next }
	($6 in sel) && (ng == 0 || ($3 in gsel)) { print $6 "\t" $2 "\t" root "/" $1 }
' "$manifest" > "$WORK/sel.tsv"
[ -s "$WORK/sel.tsv" ] || { echo "bayes-oof: no messages selected" >&2; exit 1; }

for f in $(cut -f1 "$WORK/sel.tsv" | sort -un); do
	rm -rf "$WORK/state"
	mkdir -p "$WORK/state"
	{
		printf 'state_dir = %s\nbayes_map_size = 1G\n' "$WORK/state"
		[ -n "${EXTRA_CONF:-}" ] && printf '%s\n' "$EXTRA_CONF"
	} > "$WORK/sift.conf"
	for cls in spam ham; do
		awk -F'\t' -v f="$f" -v c="$cls" '$1 != f && $2 == c { print $3 }' "$WORK/sel.tsv" |
			tr '\n' '\0' | xargs -0 "$SIFT" -c "$WORK/sift.conf" learn --"$cls" > /dev/null
	done
	awk -F'\t' -v f="$f" '$1 == f { print $3 }' "$WORK/sel.tsv" | tr '\n' '\0' |
		xargs -0 "$SIFT" -c "$WORK/sift.conf" check --tsv -r "$WORK/norules" 2> /dev/null |
		awk -F'\t' '{ n = split($1, p, "/"); print p[n] "\t" $5 }' || true
done
