#!/bin/sh
# online-eval.sh - the on-line (TREC spam track) evaluation of Sift's Bayes
# and bogofilter on the SpamAssassin public corpus: messages in date order,
# each scored and then learned with its true label, after an optional
# warm-up set learned first.
#
# usage: contrib/eval/online-eval.sh CORPUS_ROOT RUN [KEY=VALUE...]
#   CORPUS_ROOT holds the extracted spamassassin/ tree (or the tarball) and
#   MANIFEST.tsv, e.g. the shared corpus directory beside the checkout.
#   RUN is one of
#     all      every message in date order (no warm-up);
#     2002-03  the first release's groups (spam-1, easy-ham-1, hard-ham-1)
#              learned as warm-up in date order, then the second release's
#              (spam-2, easy-ham-2) scored and learned in date order;
#     03-2002  the reverse;
#     split    the fixed split as a batch: folds 0-6 learned, folds 7-9
#              scored without learning (both in date order); TRAIN_FOLDS
#              and TEST_FOLDS choose other folds, for cross-validation
#              on the training folds.
#   KEY=VALUE are passed to the Sift driver (bayes_* keys, mode=, margin=).
# environment: BUILDDIR (default .), WORK (default a new temp dir, removed),
#   TRAIN_FOLDS, TEST_FOLDS (the split run's folds),
#   ONLY_FOLDS (runs all, 2002-03 and 03-2002 keep only these folds'
#   messages, e.g. "0 1 2 3 4 5 6" to cross-validate a setting on the
#   training folds),
#   BOGOFILTER=0 to skip bogofilter.
# output: one figures line per filter (contrib/eval/online.py), and the
#   store sizes along the stream.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
root=$(cd "${1:?usage: online-eval.sh CORPUS_ROOT RUN [KEY=VALUE...]}" && pwd)
run=${2:?run: all, 2002-03, 03-2002 or split}
shift 2
BUILDDIR=$(cd "${BUILDDIR:-.}" && pwd)
BOGOFILTER=${BOGOFILTER:-1}
TRAIN_FOLDS=${TRAIN_FOLDS:-0 1 2 3 4 5 6}
TEST_FOLDS=${TEST_FOLDS:-7 8 9}
ONLY_FOLDS=${ONLY_FOLDS:-}
if [ -z "${WORK:-}" ]; then
	WORK=$(mktemp -d /tmp/online-eval.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"

corpus=$root
if [ ! -d "$root/spamassassin" ]; then
	corpus=$WORK/corpus
	if [ ! -d "$corpus/spamassassin" ]; then
		mkdir -p "$corpus"
		zstd -qdc "$root/spamassassin-public.tar.zst" | tar -xf - -C "$corpus"
	fi
fi
manifest=$root/MANIFEST.tsv

# The stream: "label<TAB>path<TAB>epoch", warm-up lines labelled
# warm-spam|warm-ham; the epoch dates what Sift learns (for expire=N).
r1=spam-1,easy-ham-1,hard-ham-1
r2=spam-2,easy-ham-2
# order.py's lines for the given groups (all without), of ONLY_FOLDS' folds
# when it is set.
ordered() {
	python3 "$here/order.py" "$corpus" "$manifest" "$@" |
		awk -F'\t' -v f=" $ONLY_FOLDS " 'f == "  " || index(f, " " $5 " ")'
}
case $run in
all) ordered | cut -f1-3 > "$WORK/stream" ;;
2002-03 | 03-2002)
	if [ "$run" = 2002-03 ]; then warm=$r1 test=$r2; else warm=$r2 test=$r1; fi
	ordered "$warm" | awk -F'\t' '{ print "warm-" $1 "\t" $2 "\t" $3 }' > "$WORK/stream"
	ordered "$test" | cut -f1-3 >> "$WORK/stream"
	;;
split)
	# The training folds learned in date order (the logistic regression
	# learns in order; a class at a time would skew it), the test folds
	# scored in date order.
	python3 "$here/order.py" "$corpus" "$manifest" > "$WORK/ordered"
	awk -F'\t' -v f=" $TRAIN_FOLDS " 'index(f, " " $5 " ") { print "warm-" $1 "\t" $2 "\t" $3 }' \
		"$WORK/ordered" > "$WORK/stream"
	awk -F'\t' -v f=" $TEST_FOLDS " 'index(f, " " $5 " ") { print $1 "\t" $2 "\t" $3 }' \
		"$WORK/ordered" >> "$WORK/stream"
	;;
*) echo "online-eval.sh: unknown run $run" >&2; exit 2 ;;
esac
echo "run $run: $(grep -c '^warm-' "$WORK/stream" || true) warm-up," \
	"$(grep -vc '^warm-' "$WORK/stream") scored"

# A batch run scores the test messages without learning them.
learn_test=1
[ "$run" = split ] && learn_test=0

drv=$WORK/bayes-onlinedrv
libs=$(make -s -C "$BUILDDIR" print-libs | tail -n 1) # what libsift.a links with
${CC:-cc} -O2 -I"$srcdir/include" -I"$BUILDDIR" -o "$drv" "$here/bayes-onlinedrv.c" \
	"$BUILDDIR/libsift.a" $libs
# Bayes votes from the first message (as bogofilter does): the daemon's
# bayes_min_spam/ham gate is for a site's young store, not for this protocol.
"$drv" "$WORK/sift" bayes_min_spam=0 bayes_min_ham=0 learn="$learn_test" "$@" \
	< "$WORK/stream" > "$WORK/sift.out"
grep '^#' "$WORK/sift.out" | sed 's/^/sift /'
awk -F'\t' '!/^#/ { print $1 "\t" $2 "\t" ($3 > 0.5) "\t" $4 "\t" $5 }' "$WORK/sift.out" \
	> "$WORK/sift.eval"
python3 "$here/online.py" "$WORK/sift.eval" sift

if [ "$BOGOFILTER" = 1 ]; then
	LEARN_TEST=$learn_test python3 "$here/bogo-online.py" "$WORK/bogo" < "$WORK/stream" \
		> "$WORK/bogo.out"
	grep '^#' "$WORK/bogo.out" | sed 's/^/bogofilter /'
	grep -v '^#' "$WORK/bogo.out" > "$WORK/bogo.eval"
	python3 "$here/online.py" "$WORK/bogo.eval" bogofilter
	# bogofilter's own verdict is spam only at its spam_cutoff (0.99); the
	# lam at P > 0.5, for a fair view of its misclassifications:
	awk -F'\t' '{ $3 = ($2 > 0.5); print }' OFS='\t' "$WORK/bogo.eval" > "$WORK/bogo05.eval"
	python3 "$here/online.py" "$WORK/bogo05.eval" bogofilter@.5
fi
