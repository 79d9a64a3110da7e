#!/bin/sh
# protocols.sh - the acted-on score and Bayes alone under three protocols:
# the fixed split (train folds 0-6, test 7-9), 2002 -> 2003 (train groups
# spam-1 + easy-ham-1, test spam-2 + easy-ham-2) and 2003 -> 2002.
# Bayes learns the training messages only. The fixed split scores with the
# shipped configuration (rules/ with 99_fitted.cf, the default Bayes
# scale); each era protocol refits the scores on its own training messages
# (contrib/eval/bayes-oof.sh, then `sift rules fit`), since the shipped
# scores were fitted on folds that hold both eras.
#
# usage: contrib/eval/protocols.sh CORPUS_ROOT [MANIFEST]
#   CORPUS_ROOT holds spamassassin/ (extracted) and MANIFEST.tsv.
# environment: BUILDDIR (default .), SIFT, RULES (default the source tree's
#   rules/), PROTOCOLS (default "fixed 2002-2003 2003-2002"), WORK.
# output per protocol: ROC AUC and recall at 0.1%/1% FPR of the score and
#   of Bayes's probability; spam recall and ham flagged at add_header.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
root=$(cd "${1:?usage: protocols.sh CORPUS_ROOT [MANIFEST]}" && pwd)
manifest=${2:-$root/MANIFEST.tsv}
BUILDDIR=$(cd "${BUILDDIR:-.}" && pwd)
SIFT=${SIFT:-$BUILDDIR/sift}
RULES=${RULES:-$srcdir/rules}
if [ -z "${WORK:-}" ]; then
	WORK=$(mktemp -d /tmp/protocols.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
fi
[ -d "$root/spamassassin" ] || { echo "protocols: no spamassassin/ in $root" >&2; exit 1; }

# select KIND SPEC: "label<TAB>path" lines; KIND folds|groups.
select_msgs() {
	awk -F'\t' -v kind="$1" -v spec="$2" -v root="$root" '
		BEGIN { n = split(spec, a, ","); for (i = 1; i <= n; i++) {
			if (kind == "folds" && split(a[i], ab, "-") == 2) { for (f = ab[1]; f <= ab[2]; f++) s[f] = 1 }
			else s[a[i]] = 1 } }
		NR == 1 && $1 == "path" { next }
		(kind == "folds" && ($6 in s)) || (kind == "groups" && ($3 in s)) { print $2 "\t" root "/" $1 }
	' "$manifest"
}

run() { # NAME TRAIN_KIND TRAIN_SPEC TEST_KIND TEST_SPEC REFIT
	name=$1 w=$WORK/$1
	mkdir -p "$w/state" "$w/rules"
	select_msgs "$2" "$3" > "$w/train.tsv"
	select_msgs "$4" "$5" > "$w/test.tsv"
	cp "$RULES"/*.cf "$w/rules/"
	extra=""
	if [ "$6" = yes ]; then
		rm -f "$w/rules/99_fitted.cf"
		printf 'state_dir = %s/fitstate\nrules = %s/rules\n' "$w" "$w" > "$w/fit.conf"
		if [ "$2" = groups ]; then
			WORK=$w/oof BUILDDIR=$BUILDDIR sh "$here/bayes-oof.sh" "$manifest" "$root" 0-9 "$3" > "$w/oof.tsv"
			"$SIFT" -c "$w/fit.conf" rules fit --manifest "$manifest" --root "$root" --groups "$3" \
				--bayes-oof "$w/oof.tsv" -o "$w/99_fitted.cf" > "$w/fit.out"
		else
			WORK=$w/oof BUILDDIR=$BUILDDIR sh "$here/bayes-oof.sh" "$manifest" "$root" "$3" > "$w/oof.tsv"
			"$SIFT" -c "$w/fit.conf" rules fit --manifest "$manifest" --root "$root" --folds "$3" \
				--bayes-oof "$w/oof.tsv" -o "$w/99_fitted.cf" > "$w/fit.out"
		fi
		mv "$w/99_fitted.cf" "$w/rules/"
		extra=$(grep '^bayes_logodds_' "$w/fit.out")
	fi
	{
		printf 'state_dir = %s/state\nrules = %s/rules\nbayes_map_size = 1G\n' "$w" "$w"
		[ -n "$extra" ] && printf '%s\n' "$extra"
	} > "$w/sift.conf"
	for cls in spam ham; do
		awk -F'\t' -v c="$cls" '$1 == c { print $2 }' "$w/train.tsv" | tr '\n' '\0' |
			xargs -0 "$SIFT" -c "$w/sift.conf" learn --"$cls" > /dev/null
	done
	cut -f2 "$w/test.tsv" | tr '\n' '\0' | xargs -0 "$SIFT" -c "$w/sift.conf" check --tsv \
		> "$w/check.tsv"
	cut -f1 "$w/test.tsv" > "$w/labels"
	[ "$(wc -l < "$w/check.tsv")" -eq "$(wc -l < "$w/labels")" ] || {
		echo "protocols: $name: scored $(wc -l < "$w/check.tsv") of $(wc -l < "$w/labels")" >&2
		exit 1
	}
	echo "== $name (train $2 $3, test $4 $5; scores $([ "$6" = yes ] && echo refitted on the training set || echo shipped))"
	cut -f2 "$w/check.tsv" | paste "$w/labels" - > "$w/scores"
	cut -f5 "$w/check.tsv" | sed 's/^-$/0.5/' | paste "$w/labels" - > "$w/bayes"
	python3 "$here/roc.py" "$w/scores" acted-on
	python3 "$here/roc.py" "$w/bayes" bayes-prob
	cut -f3 "$w/check.tsv" | paste "$w/labels" - | awk '
		{ n[$1]++ } $2 != "accept" { f[$1]++ }
		END { printf "add_header: spam recall %.4f, ham flagged %d of %d\n",
			f["spam"] / n["spam"], f["ham"], n["ham"] }'
}

for p in ${PROTOCOLS:-fixed 2002-2003 2003-2002}; do
	case $p in
	fixed) run fixed folds 0-6 folds 7-9 no ;;
	fixed-refit) run fixed-refit folds 0-6 folds 7-9 yes ;;
	2002-2003) run 2002-2003 groups spam-1,easy-ham-1 groups spam-2,easy-ham-2 yes ;;
	2003-2002) run 2003-2002 groups spam-2,easy-ham-2 groups spam-1,easy-ham-1 yes ;;
	*) echo "protocols: unknown protocol $p" >&2; exit 2 ;;
	esac
done
