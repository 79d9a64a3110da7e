#!/bin/sh
# bayes-eval.sh - measures Sift's Bayes against bogofilter on the fixed split
# of the SpamAssassin public corpus: train on folds 0-6, test on folds 7-9.
#
# usage: contrib/eval/bayes-eval.sh CORPUS_ROOT [MANIFEST]
#   CORPUS_ROOT holds the extracted spamassassin/ tree and MANIFEST.tsv, or
#   spamassassin-public.tar.zst and MANIFEST.tsv (extracted into the work
#   directory), e.g. the shared corpus directory beside the checkout.
# environment:
#   BUILDDIR     the build directory (default: .), for sift and libsift.a
#   SIFT         the sift binary (default: $BUILDDIR/sift)
#   TOOL         "sift" (sift learn + sift check --tsv) or "driver" (the
#                Bayes-only contrib/eval/bayes-evaldrv.c); default: sift when
#                it has the learn command, else driver
#   TRAIN_FOLDS  default "0 1 2 3 4 5 6";  TEST_FOLDS  default "7 8 9"
#   WORK         work directory (default: a new one under /tmp, removed after)
#   BOGOFILTER   0 to skip bogofilter (default 1)
#   SIFT_CONF    extra configuration lines for Sift (e.g. "bayes_lr = yes")
# output: one line of figures per classifier (ROC AUC, spam recall at 0.1%
# and 1% ham false positives, partial AUC to 1%), the learning speed of
# each, and a paired bootstrap of the differences (how often Sift leads).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
root=${1:?usage: bayes-eval.sh CORPUS_ROOT [MANIFEST]}
root=$(cd "$root" && pwd)
manifest=${2:-$root/MANIFEST.tsv}
BUILDDIR=$(cd "${BUILDDIR:-.}" && pwd)
SIFT=${SIFT:-$BUILDDIR/sift}
TRAIN_FOLDS=${TRAIN_FOLDS:-0 1 2 3 4 5 6}
TEST_FOLDS=${TEST_FOLDS:-7 8 9}
BOGOFILTER=${BOGOFILTER:-1}

if [ -z "${WORK:-}" ]; then
	WORK=$(mktemp -d /tmp/bayes-eval.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"

# The split and the training mboxes, so both tools learn the same bytes.
sh "$here/split.sh" "$root" "$manifest" "$WORK" "$TRAIN_FOLDS" "$TEST_FOLDS" > /dev/null
n_spam=$(wc -l < "$WORK/train-spam.lst")
n_ham=$(wc -l < "$WORK/train-ham.lst")
n_test=$(wc -l < "$WORK/test.lst")
echo "split: train folds [$TRAIN_FOLDS] $n_spam spam + $n_ham ham;" \
	"test folds [$TEST_FOLDS] $n_test messages"

now() { date +%s.%N; }
rate() {
	awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.2f s, %.0f msgs/s", b - a, n / (b - a) }'
}

if [ -z "${TOOL:-}" ]; then
	TOOL=driver
	if [ -x "$SIFT" ] && "$SIFT" 2>&1 | grep -q '^ *learn'; then
		TOOL=sift
	fi
fi

# ---------------------------------------------------------------- sift
mkdir -p "$WORK/sift"
# The shipped rules come from the source tree (sift check needs some).
printf 'state_dir = %s\nbayes_map_size = 1G\nrules = %s/rules\n%s\n' "$WORK/sift" "$srcdir" \
	"${SIFT_CONF:-}" > "$WORK/sift.conf"
if [ "$TOOL" = sift ]; then
	learn() { "$SIFT" -c "$WORK/sift.conf" learn "$@" > /dev/null; }
	# bayes_prob is the fifth tsv column.
	score() { tr '\n' '\0' < "$WORK/test.lst" |
		xargs -0 "$SIFT" -c "$WORK/sift.conf" check --tsv | cut -f1,5 || true; }
else
	drv=$WORK/bayes-evaldrv
	libs=$(make -s -C "$BUILDDIR" print-libs | tail -n 1) # what libsift.a links with
	${CC:-cc} -O2 -I"$srcdir/include" -I"$BUILDDIR" -o "$drv" "$here/bayes-evaldrv.c" \
		"$BUILDDIR/libsift.a" $libs
	learn() { "$drv" "$WORK/sift/bayes" learn "$@" > /dev/null; }
	score() { "$drv" "$WORK/sift/bayes" check < "$WORK/test.lst"; }
fi
# sift learn takes both classes in one run and interleaves them (the
# regression, bayes_lr, learns on-line); the driver learns one at a time.
t0=$(now)
if [ "$TOOL" = sift ]; then
	learn --spam "$WORK/train-spam.mbox" --ham "$WORK/train-ham.mbox"
	t2=$(now)
	echo "sift ($TOOL) learn: both $(rate "$((n_spam + n_ham))" "$t0" "$t2")"
else
	learn --spam "$WORK/train-spam.mbox"
	t1=$(now)
	learn --ham "$WORK/train-ham.mbox"
	t2=$(now)
	echo "sift ($TOOL) learn: spam $(rate "$n_spam" "$t0" "$t1"); ham $(rate "$n_ham" "$t1" "$t2")"
fi
t0=$(now)
score > "$WORK/sift.scores"
t1=$(now)
[ "$(wc -l < "$WORK/sift.scores")" -eq "$n_test" ] || {
	echo "bayes-eval: sift scored $(wc -l < "$WORK/sift.scores") of $n_test" >&2
	exit 1
}
echo "sift ($TOOL) check: $(rate "$n_test" "$t0" "$t1")"
# Same order as test.lst: pair each score with its label.
cut -f2 "$WORK/sift.scores" | paste "$WORK/test-labels.lst" - > "$WORK/sift.eval"
python3 "$here/roc.py" "$WORK/sift.eval" sift

# ---------------------------------------------------------------- bogofilter
if [ "$BOGOFILTER" = 1 ]; then
	bogo=$WORK/bogo
	mkdir -p "$bogo"
	t0=$(now)
	bogofilter -C -d "$bogo" -M -s < "$WORK/train-spam.mbox"
	t1=$(now)
	bogofilter -C -d "$bogo" -M -n < "$WORK/train-ham.mbox"
	t2=$(now)
	echo "bogofilter learn: spam $(rate "$n_spam" "$t0" "$t1"); ham $(rate "$n_ham" "$t1" "$t2")"
	# A terse format with full precision: -T rounds to 6 decimals, which
	# would tie many messages at 0 and 1 and understate bogofilter.
	# (bogofilter exits 1 for ham, so xargs's status means nothing here.)
	t0=$(now)
	# (bogofilter truncates its terse line at 20 characters: plain %f fits.)
	tr '\n' '\0' < "$WORK/test.lst" | xargs -0 bogofilter -C -d "$bogo" -t \
		--terse-format='%.15f' -B > "$WORK/bogo.scores" || true
	t1=$(now)
	[ "$(wc -l < "$WORK/bogo.scores")" -eq "$n_test" ] || {
		echo "bayes-eval: bogofilter scored $(wc -l < "$WORK/bogo.scores") of $n_test" >&2
		exit 1
	}
	echo "bogofilter check: $(rate "$n_test" "$t0" "$t1")"
	awk '{ print $NF }' "$WORK/bogo.scores" | paste "$WORK/test-labels.lst" - > "$WORK/bogo.eval"
	python3 "$here/roc.py" "$WORK/bogo.eval" bogofilter
	python3 "$here/roc.py" --paired "$WORK/sift.eval" "$WORK/bogo.eval" sift,bogofilter
fi
