#!/bin/sh
# learn-speed.sh - how fast `sift learn` and bogofilter learn as their stores
# grow: the training mboxes of the fixed split (split.sh) are learned again
# and again, each copy's messages made new by a first header "Message-ID:
# <replay-COPY@eval.invalid>" (Sift's learning digest takes the first
# Message-ID: it learns each copy anew rather than skipping it as already
# known; a new token, so neither store merely re-reads what it holds), and
# each copy's rate is printed with the number of messages learned so far.
#
# usage: contrib/eval/learn-speed.sh CORPUS_ROOT COPIES [sift|bogofilter|both]
# environment: BUILDDIR (default .), WORK (default a new temp dir, removed),
#   SIFT_CONF lines appended to Sift's configuration (e.g. "bayes_lr = no").
set -eu

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
root=$(cd "${1:?usage: learn-speed.sh CORPUS_ROOT COPIES [sift|bogofilter|both]}" && pwd)
copies=${2:?copies}
which=${3:-both}
BUILDDIR=$(cd "${BUILDDIR:-.}" && pwd)
if [ -z "${WORK:-}" ]; then
	WORK=$(mktemp -d /tmp/learn-speed.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
sh "$here/split.sh" "$root" "$root/MANIFEST.tsv" "$WORK" > /dev/null
printf 'state_dir = %s/sift\nbayes_map_size = 8G\nrules = %s/rules\n' "$WORK" "$srcdir" \
	> "$WORK/sift.conf"
printf '%s\n' "${SIFT_CONF:-}" >> "$WORK/sift.conf"
mkdir -p "$WORK/bogo"
now() { date +%s.%N; }
total=0
i=1
while [ "$i" -le "$copies" ]; do
	for cls in spam ham; do
		sed "s/^From eval@localhost .*/&\nMessage-ID: <replay-$i@eval.invalid>/" \
			"$WORK/train-$cls.mbox" > "$WORK/copy-$cls.mbox"
	done
	n=$(( $(grep -c '^Message-ID: <replay-' "$WORK/copy-spam.mbox") +
		$(grep -c '^Message-ID: <replay-' "$WORK/copy-ham.mbox") ))
	total=$((total + n))
	if [ "$which" != bogofilter ]; then
		t0=$(now)
		"$BUILDDIR/sift" -c "$WORK/sift.conf" learn --spam "$WORK/copy-spam.mbox" > /dev/null
		"$BUILDDIR/sift" -c "$WORK/sift.conf" learn --ham "$WORK/copy-ham.mbox" > /dev/null
		t1=$(now)
		awk -v n="$n" -v t="$total" -v a="$t0" -v b="$t1" \
			'BEGIN { printf "sift        learned %7d: %5.0f msgs/s\n", t, n / (b - a) }'
	fi
	if [ "$which" != sift ]; then
		t0=$(now)
		bogofilter -C -d "$WORK/bogo" -M -s < "$WORK/copy-spam.mbox"
		bogofilter -C -d "$WORK/bogo" -M -n < "$WORK/copy-ham.mbox"
		t1=$(now)
		awk -v n="$n" -v t="$total" -v a="$t0" -v b="$t1" \
			'BEGIN { printf "bogofilter  learned %7d: %5.0f msgs/s\n", t, n / (b - a) }'
	fi
	i=$((i + 1))
done
[ "$which" = bogofilter ] || "$BUILDDIR/sift" -c "$WORK/sift.conf" bayes stats | grep -E 'tokens|used'
[ "$which" = sift ] || ls -l "$WORK/bogo/wordlist.db" | awk '{ print "bogofilter wordlist", $5, "bytes" }'
