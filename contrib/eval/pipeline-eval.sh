#!/bin/sh
# pipeline-eval.sh - accuracy of the whole pipeline (shipped rules + Bayes,
# as `sift check` and the daemon score) on the fixed split of the
# SpamAssassin public corpus: Bayes trained on folds 0-6 with `sift learn`,
# every message of folds 7-9 scored with `sift check --tsv`.
#
# usage: contrib/eval/pipeline-eval.sh CORPUS_ROOT [MANIFEST]
#   CORPUS_ROOT: the extracted spamassassin/ tree and MANIFEST.tsv, or the
#   tarball and MANIFEST.tsv (e.g. the shared corpus directory beside the
#   checkout).
# environment: BUILDDIR (default .), SIFT, RULES (default: the source tree's
#   rules/), EXTRA_CONF (lines appended to the configuration), WORK.
# output: spam recall and ham false-positive rate at the add_header and
#   reject thresholds, ROC AUC of the score, recall at 0.1% and 1% ham FPR.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
root=${1:?usage: pipeline-eval.sh CORPUS_ROOT [MANIFEST]}
root=$(cd "$root" && pwd)
manifest=${2:-$root/MANIFEST.tsv}
BUILDDIR=$(cd "${BUILDDIR:-.}" && pwd)
SIFT=${SIFT:-$BUILDDIR/sift}
RULES=${RULES:-$srcdir/rules}

if [ -z "${WORK:-}" ]; then
	WORK=$(mktemp -d /tmp/pipeline-eval.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/state"

sh "$here/split.sh" "$root" "$manifest" "$WORK" > /dev/null

{
	printf 'state_dir = %s\nrules = %s\nbayes_map_size = 1G\n' "$WORK/state" "$RULES"
	[ -n "${EXTRA_CONF:-}" ] && printf '%s\n' "$EXTRA_CONF"
} > "$WORK/sift.conf"
"$SIFT" -c "$WORK/sift.conf" learn --spam "$WORK/train-spam.mbox" \
	--ham "$WORK/train-ham.mbox" > /dev/null
tr '\n' '\0' < "$WORK/test.lst" | xargs -0 "$SIFT" -c "$WORK/sift.conf" check --tsv \
	> "$WORK/check.tsv"
[ "$(wc -l < "$WORK/check.tsv")" -eq "$(wc -l < "$WORK/test.lst")" ] || {
	echo "pipeline-eval: scored $(wc -l < "$WORK/check.tsv") of $(wc -l < "$WORK/test.lst")" >&2
	exit 1
}
cut -f2 "$WORK/check.tsv" | paste "$WORK/test-labels.lst" - > "$WORK/scores"
cut -f3 "$WORK/check.tsv" | paste "$WORK/test-labels.lst" - > "$WORK/actions"
awk '
	{ n[$1]++ }
	$2 != "accept" { flagged[$1]++ }
	$2 == "reject" { rejected[$1]++ }
	END {
		printf "thresholds: spam recall %.4f, ham FP rate %.4f (%d of %d ham) at add_header;",
			flagged["spam"] / n["spam"], flagged["ham"] / n["ham"], flagged["ham"], n["ham"]
		printf " reject: spam %.4f, ham %d\n", rejected["spam"] / n["spam"], rejected["ham"]
	}' "$WORK/actions"
python3 "$here/roc.py" "$WORK/scores" pipeline
awk -F'\t' '{ t += $6; n++ } END { printf "sift check: %.3f ms per message (scoring only)\n", t / n }' \
	"$WORK/check.tsv"
