#!/bin/sh
# split.sh - the fixed train/test split of the SpamAssassin public corpus,
# shared by the evaluation and comparison scripts so that every figure is
# learned and tested on the same messages in the same order.
#
# usage: contrib/eval/split.sh CORPUS_ROOT MANIFEST WORK [TRAIN_FOLDS [TEST_FOLDS]]
#   CORPUS_ROOT holds the extracted spamassassin/ tree, or
#   spamassassin-public.tar.zst (then extracted into WORK/corpus once);
#   TRAIN_FOLDS default "0 1 2 3 4 5 6", TEST_FOLDS default "7 8 9".
# writes, in WORK: train-spam.lst, train-ham.lst, test.lst (paths, in
#   manifest order), test-labels.lst (spam|ham, one per test.lst line), and
#   train-spam.mbox, train-ham.mbox (the training messages as mboxes, body
#   lines starting "From " quoted, so every tool learns the same bytes in one
#   bulk run); prints the directory that holds spamassassin/.
set -eu

root=$(cd "${1:?usage: split.sh CORPUS_ROOT MANIFEST WORK [TRAIN [TEST]]}" && pwd)
manifest=${2:?manifest}
work=${3:?work directory}
train=${4:-0 1 2 3 4 5 6}
test=${5:-7 8 9}
mkdir -p "$work"

corpus=$root
if [ ! -d "$root/spamassassin" ]; then
	[ -f "$root/spamassassin-public.tar.zst" ] || {
		echo "split.sh: no spamassassin/ tree or tarball in $root" >&2
		exit 1
	}
	corpus=$work/corpus
	if [ ! -d "$corpus/spamassassin" ]; then
		mkdir -p "$corpus"
		zstd -qdc "$root/spamassassin-public.tar.zst" | tar -xf - -C "$corpus"
	fi
fi

rm -f "$work/train-spam.lst" "$work/train-ham.lst" "$work/test.lst" "$work/test-labels.lst"
awk -F'\t' -v train="$train" -v test="$test" -v dir="$corpus" -v w="$work" '
	BEGIN { n = split(train, a, " "); for (i = 1; i <= n; i++) tr[a[i]] = 1
		n = split(test, b, " "); for (i = 1; i <= n; i++) te[b[i]] = 1 }
	NR == 1 { next }
	($6 in tr) { print dir "/" $1 > (w "/train-" $2 ".lst") }
	($6 in te) { print dir "/" $1 > (w "/test.lst"); print $2 > (w "/test-labels.lst") }
' "$manifest"

for cls in spam ham; do
	while IFS= read -r f; do
		printf 'From eval@localhost Thu Jan  1 00:00:00 1970\n'
		sed 's/^From />From /' "$f"
		printf '\n'
	done <"$work/train-$cls.lst" >"$work/train-$cls.mbox"
done
echo "$corpus"
