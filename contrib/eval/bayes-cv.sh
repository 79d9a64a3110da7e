#!/bin/sh
# bayes-cv.sh - 7-fold cross-validation inside the training folds (0-6) of
# the SpamAssassin corpus, for choosing tokenizer and classifier settings
# without looking at the test folds (7-9): each fold is scored by a store
# learned on the other six, and the pooled scores give ROC AUC and spam
# recall at 0.1% and 1% ham false positives, for Sift and for bogofilter.
#
# usage: contrib/eval/bayes-cv.sh CORPUS_ROOT [KEY=VALUE...]
#   CORPUS_ROOT as for bayes-eval.sh (extracted tree or tarball, and
#   MANIFEST.tsv); KEY=VALUE override configuration keys when scoring
#   (bayes_robs=0.05 bayes_min_dev=0.4 ...), so settings can be compared on
#   the same learned stores.
# environment: MANIFEST (default CORPUS_ROOT/MANIFEST.tsv), BUILDDIR
#   (default .), WORK (kept between runs when given: the stores are learned
#   once), BOGOFILTER=0 to skip bogofilter.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
root=$(cd "${1:?usage: bayes-cv.sh CORPUS_ROOT [KEY=VALUE...]}" && pwd)
shift
BUILDDIR=$(cd "${BUILDDIR:-.}" && pwd)
BOGOFILTER=${BOGOFILTER:-1}
if [ -z "${WORK:-}" ]; then
	WORK=$(mktemp -d /tmp/bayes-cv.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
# split.sh extracts a tarball into the first fold's directory; the later
# folds are split from that extracted tree.
corpus=$root

drv=$WORK/bayes-evaldrv
libs=$(make -s -C "$BUILDDIR" print-libs | tail -n 1) # what libsift.a links with
${CC:-cc} -O2 -I"$srcdir/include" -I"$BUILDDIR" -o "$drv" "$here/bayes-evaldrv.c" \
	"$BUILDDIR/libsift.a" $libs

: >"$WORK/pool-sift"
: >"$WORK/pool-bogo"
for f in 0 1 2 3 4 5 6; do
	d=$WORK/fold$f
	mkdir -p "$d"
	if [ ! -f "$d/train-ham.mbox" ]; then
		others=$(echo 0 1 2 3 4 5 6 | tr ' ' '\n' | grep -vx "$f" | tr '\n' ' ')
		corpus=$(sh "$here/split.sh" "$corpus" "${MANIFEST:-$root/MANIFEST.tsv}" "$d" \
			"$others" "$f")
		mv "$d/test-labels.lst" "$d/labels.lst"
	fi
	if [ ! -d "$d/sift" ]; then
		"$drv" "$d/sift" learn --spam "$d/train-spam.mbox" >/dev/null
		"$drv" "$d/sift" learn --ham "$d/train-ham.mbox" >/dev/null
	fi
	"$drv" "$d/sift" check "$@" <"$d/test.lst" | cut -f2 | paste "$d/labels.lst" - \
		>>"$WORK/pool-sift"
	if [ "$BOGOFILTER" = 1 ]; then
		if [ ! -d "$d/bogo" ]; then
			mkdir -p "$d/bogo"
			bogofilter -C -d "$d/bogo" -M -s <"$d/train-spam.mbox"
			bogofilter -C -d "$d/bogo" -M -n <"$d/train-ham.mbox"
		fi
		(tr '\n' '\0' <"$d/test.lst" | xargs -0 bogofilter -C -d "$d/bogo" -t \
			--terse-format='%.15f' -B || true) | paste "$d/labels.lst" - >>"$WORK/pool-bogo"
	fi
done
python3 "$here/roc.py" "$WORK/pool-sift" "sift $*"
[ "$BOGOFILTER" = 1 ] && python3 "$here/roc.py" "$WORK/pool-bogo" bogofilter
exit 0
