#!/bin/sh
# fit-scores.sh - refit the shipped scores (rules/99_fitted.cf) on the
# corpus's train folds: out-of-fold Bayes probabilities (bayes-oof.sh),
# then `sift rules fit` over the rule files without the old scores file.
#
# usage: contrib/eval/fit-scores.sh CORPUS_ROOT [MANIFEST] > 99_fitted.cf
#   CORPUS_ROOT holds spamassassin/ (extracted) and MANIFEST.tsv.
# environment: BUILDDIR (default .), SIFT, RULES (default the source tree's
#   rules/), FOLDS (default 0-6), WORK.
# The figures and the Bayes keys to configure go to stderr.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
root=$(cd "${1:?usage: fit-scores.sh CORPUS_ROOT [MANIFEST]}" && pwd)
manifest=${2:-$root/MANIFEST.tsv}
BUILDDIR=$(cd "${BUILDDIR:-.}" && pwd)
SIFT=${SIFT:-$BUILDDIR/sift}
RULES=${RULES:-$srcdir/rules}
FOLDS=${FOLDS:-0-6}
if [ -z "${WORK:-}" ]; then
	WORK=$(mktemp -d /tmp/fit-scores.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/rules" "$WORK/state"
cp "$RULES"/*.cf "$WORK/rules/"
rm -f "$WORK/rules/99_fitted.cf"
WORK=$WORK/oof BUILDDIR=$BUILDDIR sh "$here/bayes-oof.sh" "$manifest" "$root" "$FOLDS" > "$WORK/oof.tsv"
printf 'state_dir = %s/state\nrules = %s/rules\n' "$WORK" "$WORK" > "$WORK/sift.conf"
"$SIFT" -c "$WORK/sift.conf" rules fit --manifest "$manifest" --root "$root" --folds "$FOLDS" \
	--bayes-oof "$WORK/oof.tsv" -o "$WORK/out.cf" >&2
cat "$WORK/out.cf"
