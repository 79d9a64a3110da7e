#!/bin/sh
# it_bayes.sh - Bayes through the real programs: `sift learn` (files,
# directories, an mbox; relearning and --forget), `sift check` and its
# --tsv bayes_prob column, `sift bayes stats|dump|load|expire|compact`, a
# full map, and autolearn in a running sift-milter fed by sift-mclient.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

SIFT=$top_builddir/sift
MILTER=$top_builddir/sift-milter
MC=$top_builddir/sift-mclient
DATA=$top_srcdir/tests/data/bayes
it_need "$SIFT" "$MILTER" "$MC"

D=$IT_TMP
cat >"$D/sift.conf" <<EOF
rules = $top_srcdir/rules
bayes_min_spam = 5
bayes_min_ham = 5
bayes_map_size = 16M
EOF
S="$SIFT -c $D/sift.conf -d $D/state"
has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in '$1'" >&2; return 1; }
stat_of() { $S bayes stats | awk -v k="$1" '$1 == k { print $2 }'; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

# ------------------------------------------------------------ learn, check
out=$($S learn --spam "$DATA/spam" 2>&1)
check "learn --spam DIR: 8 new" has "$out" "8 new"
out=$($S learn --ham "$DATA"/ham/*.eml 2>&1)
check "learn --ham FILES: 8 new" has "$out" "8 new"
out=$($S learn --ham "$DATA/ham" 2>&1)
check "the same messages again: already known" has "$out" "8 already known"
check "stats: 8 spam" [ "$(stat_of spam)" = 8 ]
check "stats: 8 ham" [ "$(stat_of ham)" = 8 ]

$S check --tsv "$DATA"/check/*.eml >"$D/check.tsv" 2>"$D/check.err"
p_spam=$(tsv_field "$D/check.tsv" spam-8.eml 5)
p_ham=$(tsv_field "$D/check.tsv" ham-9.eml 5)
check "check --tsv: spam's bayes_prob column > 0.9 ($p_spam)" gt "$p_spam" 0.9
check "check --tsv: ham's bayes_prob column < 0.1 ($p_ham)" gt 0.1 "$p_ham"
check "check --tsv: spam hits a high BAYES band" \
	has "$(tsv_field "$D/check.tsv" spam-8.eml 4)" "BAYES_99"
check "check --tsv: ham hits BAYES_00" has "$(tsv_field "$D/check.tsv" ham-9.eml 4)" "BAYES_00"
out=$($S check "$DATA/check/spam-8.eml" 2>&1)
check "check explains the probability" has "$out" "P(spam)="
check "check lists the tokens that moved it" has "$out" "spammy"

# ------------------------------------------------------------ mbox, forget
for f in "$DATA"/check/spam-*.eml; do
	printf 'From someone@example.com Mon Sep  2 12:00:00 2002\n'
	cat "$f"
	printf '\n'
done >"$D/two.mbox"
out=$($S learn --spam "$D/two.mbox" 2>&1)
check "learn an mbox: 2 messages" has "$out" "2 message(s) read, learned as spam: 2 new"
out=$($S learn --ham "$D/two.mbox" 2>&1)
check "relearning as ham moves them" has "$out" "2 moved from the other class"
out=$($S learn --forget "$D/two.mbox" 2>&1)
check "--forget removes them" has "$out" "2 removed"
check "stats after forget: 8 spam, 8 ham" [ "$(stat_of spam)/$(stat_of ham)" = 8/8 ]

# ------------------------------------------------------------ dump, load
$S bayes dump "$D/a.dump"
check "dump starts with its format line" has "$(head -1 "$D/a.dump")" "sift-bayes-dump 1 tokenizer"
check "dump has a token per stats line" \
	[ "$(grep -c '^token ' "$D/a.dump")" = "$(stat_of tokens)" ]
$SIFT -c "$D/sift.conf" -d "$D/other" bayes load "$D/a.dump" >/dev/null
$SIFT -c "$D/sift.conf" -d "$D/other" bayes dump >"$D/b.dump"
check "load into another store, dump again: identical" cmp -s "$D/a.dump" "$D/b.dump"
printf 'sift-bayes-dump 1 tokenizer 1\ntotals 1 1\ntoken xyz 1 1 1\n' >"$D/bad.dump"
out=$($SIFT -c "$D/sift.conf" -d "$D/other" bayes load "$D/bad.dump" 2>&1)
check "a bad dump is refused with its line number" has "$out" "bad.dump:3:"
check "and the store is unchanged" \
	[ "$($SIFT -c "$D/sift.conf" -d "$D/other" bayes dump | cmp -s - "$D/a.dump"; echo $?)" = 0 ]

# ------------------------------------------------------------ expire, compact
{
	head -1 "$D/a.dump"
	echo "totals 0 0"
	echo "token 0000000000000001 1 0 100"
	echo "token 0000000000000002 5 0 100"
} >"$D/old.dump"
$S bayes load --merge "$D/old.dump" >/dev/null
out=$($S bayes expire --days 30 --max-count 1 2>&1)
check "expire removes a stale hapax" has "$out" "expired 1 token"
check "and keeps the stale common token" has "$($S bayes dump)" "token 0000000000000002 5 0 100"
out=$($S bayes compact 2>&1)
check "compact reports the sizes" has "$out" "compacted"
check "stats after compact still read" [ "$(stat_of spam)/$(stat_of ham)" = 8/8 ]

# ------------------------------------------------------------ batched regression steps
# `sift learn` takes a batch's regression steps together at its flush; each
# must still see the steps before it: the weights equal those of learning
# the messages one by one, one batch each (to float rounding).
for mode in batch single; do
	SB="$SIFT -c $D/sift.conf -d $D/lr-$mode"
	if [ $mode = batch ]; then
		$SB learn --spam "$DATA"/spam/*.eml >/dev/null 2>&1
		$SB learn --ham "$DATA"/ham/*.eml >/dev/null 2>&1
	else
		for f in "$DATA"/spam/*.eml; do $SB learn --spam "$f" >/dev/null 2>&1; done
		for f in "$DATA"/ham/*.eml; do $SB learn --ham "$f" >/dev/null 2>&1; done
	fi
	$SB bayes dump | awk '$1 == "token" { print $2, $3, $4, $6 }' | sort >"$D/lr-$mode.w"
done
check "batched learning stepped the regression" \
	awk '$4 != 0 { n++ } END { exit !(n > 100) }' "$D/lr-batch.w"
check "batched regression weights equal one-by-one learning's" \
	awk 'NR == FNR { w[$1] = $4; c[$1] = $2 "/" $3; next }
	     { d = w[$1] - $4; if (d < 0) d = -d; a = $4 < 0 ? -$4 : $4
	       if (!($1 in w) || c[$1] != $2 "/" $3 || d > 1e-5 * (a > 1 ? a : 1)) bad++ }
	     END { exit !(bad == 0 && FNR == NR - FNR && FNR > 0) }' "$D/lr-batch.w" "$D/lr-single.w"

# ------------------------------------------------------------ both classes in one run
# `sift learn --spam A --ham B` interleaves the classes by the share of
# their bytes read, so the on-line regression does not end leaning to the
# class learned last. With messages of one size the order is spam, ham,
# spam, ham...: the weights must equal learning them one by one in that
# order, and differ from all the spam then all the ham.
mkdir -p "$D/mix/spam" "$D/mix/ham"
for c in spam ham; do
	for i in 1 2 3 4 5 6; do
		# (class words of four letters: every file is 600 bytes)
		awk -v c=$c -v i=$i 'BEGIN { srand(i * (c == "spam" ? 3 : 5)); if (c == "ham") c = "eggs"
			printf "From: %s%d@example.com\nSubject: %s number %d\n\n", c, i, c, i
			for (w = 0; w < 60; w++) printf "%s%03d ", (w % 3 ? "common" : c), int(rand() * 100)
			printf "\n" }' | head -c 600 >"$D/mix/$c/m$i.eml"
	done
done
printf 'rules = %s/rules\nbayes_lr = yes\nbayes_map_size = 16M\n' "$top_srcdir" >"$D/mix.conf"
for mode in mixed pairs sorted; do
	SM="$SIFT -c $D/mix.conf -d $D/mix-$mode"
	case $mode in
	mixed) out=$($SM learn --spam "$D/mix/spam" --ham "$D/mix/ham" 2>&1) ;;
	pairs) for i in 1 2 3 4 5 6; do
		$SM learn --spam "$D/mix/spam/m$i.eml" >/dev/null 2>&1
		$SM learn --ham "$D/mix/ham/m$i.eml" >/dev/null 2>&1
	done ;;
	sorted) $SM learn --spam "$D/mix/spam" >/dev/null 2>&1
		$SM learn --ham "$D/mix/ham" >/dev/null 2>&1 ;;
	esac
	$SM bayes dump | awk '$1 == "token" { print $2, $3, $4, $6 }' | sort >"$D/mix-$mode.w"
done
check "learn --spam DIR --ham DIR: one run learns both" \
	has "$out" "12 message(s) read, learned as spam and as ham: 12 new"
same_w() {
	awk 'NR == FNR { w[$1] = $4; c[$1] = $2 "/" $3; next }
	     { d = w[$1] - $4; if (d < 0) d = -d; a = $4 < 0 ? -$4 : $4
	       if (!($1 in w) || c[$1] != $2 "/" $3 || d > 1e-5 * (a > 1 ? a : 1)) bad++ }
	     END { exit !(bad == 0 && FNR == NR - FNR && FNR > 0) }' "$1" "$2"
}
check "one run of both classes steps as spam, ham, spam, ham..." \
	same_w "$D/mix-mixed.w" "$D/mix-pairs.w"
check "which is not the order of all spam, then all ham" \
	sh -c '! cmp -s "$1" "$2"' - "$D/mix-mixed.w" "$D/mix-sorted.w"
out=$($SIFT -c "$D/mix.conf" -d "$D/mix-bad" learn "$D/mix/spam" 2>&1)
check "a path before any class is a usage error" [ $? -eq 2 ]
out=$($SIFT -c "$D/mix.conf" -d "$D/mix-bad" learn --forget "$D/mix/spam" --ham "$D/mix/ham" 2>&1)
check "forgetting does not mix with learning" has "$out" "usage:"

# ------------------------------------------------------------ a full map
printf 'bayes_map_size = 64K\nrules = %s/rules\n' "$top_srcdir" >"$D/tiny.conf"
# 400 messages of 40 words never seen elsewhere: far more than 64 KiB of tokens.
awk 'BEGIN { srand(7); for (m = 0; m < 400; m++) {
	printf "From x@example.com Mon Sep  2 12:00:00 2002\nSubject: m%d\n\n", m
	for (w = 0; w < 40; w++) printf "w%dx%d ", m, int(rand() * 1e9)
	printf "\n\n" } }' >"$D/many.mbox"
$SIFT -c "$D/tiny.conf" -d "$D/tiny" learn --spam "$D/many.mbox" >"$D/tiny.out" 2>&1
check "learning into a full map fails" [ $? -ne 0 ]
check "and says the store is full" grep -q "full" "$D/tiny.out"
$SIFT -c "$D/tiny.conf" -d "$D/tiny" check --tsv "$DATA/check/spam-8.eml" >"$D/tiny.tsv" 2>&1
check "scoring still works on a full store" [ -s "$D/tiny.tsv" ]

# One message too big for the room left costs its own learning, not its
# batch's: 20,000 words never seen elsewhere (40,000 tokens, 3 MB of store)
# amid the test messages, into a 1 MiB map.
mkdir -p "$D/unfit"
cp "$DATA"/spam/*.eml "$D/unfit/"
awk 'BEGIN { srand(11); printf "From: big@example.com\nSubject: big\n\n"
	for (w = 0; w < 20000; w++) printf "b%dz%d%s", w, int(rand() * 1e9), (w % 10 == 9) ? "\n" : " " }' \
	>"$D/unfit/big.eml"
printf 'bayes_map_size = 1M\nrules = %s/rules\n' "$top_srcdir" >"$D/unfit.conf"
$SIFT -c "$D/unfit.conf" -d "$D/unfit-state" learn --spam "$D/unfit" >"$D/unfit.out" 2>&1
check "a message without room: exit status 1" [ $? -eq 1 ]
check "the others are learned" grep -q "8 new" "$D/unfit.out"
check "and the one is named as not learned" grep -q "1 message(s) not learned: no room left" "$D/unfit.out"
n=$($SIFT -c "$D/unfit.conf" -d "$D/unfit-state" bayes stats | awk '$1 == "spam" { print $2 }')
check "stats: 8 spam ($n)" [ "$n" = 8 ]

# ------------------------------------------------------------ autolearn in the daemon
SOCK=$D/milter.sock
LOG=$D/milter.log
cat >"$D/milter.conf" <<EOF
rules = $top_srcdir/rules
log = stderr
log_level = info
bayes_min_spam = 5
bayes_min_ham = 5
bayes_autolearn = yes
bayes_autolearn_spam_score = 3
bayes_autolearn_ham_score = -100
bayes_map_size = 1M
EOF
it_milter_start "$(($(scaled_ms 10000) / 1000))" "$D/milter.conf" "$D/state" "$SOCK" "$LOG"
MILTER_PID=$IT_MILTER_PID
"$MC" -s "unix:$SOCK" -t 10000 -i 192.0.2.10 -q "$DATA/check/spam-8.eml" 2>"$D/mc.err"
spam_is() { [ "$(stat_of spam)" = "$1" ]; }
check "autolearn: the daemon learns a confident spam (9 spam within 5 s)" wait_for 5 spam_is 9
check "autolearn: hams below the confidence bar are not learned" [ "$(stat_of ham)" = 8 ]
# `sift learn` with a larger map grows the file past the daemon's 1M map:
# the daemon must adopt the new size, not stop scoring.
$S learn --ham "$D/many.mbox" >/dev/null 2>&1
check "the store grew past the daemon's map" gt "$(stat_of used)" 1048576
"$MC" -s "unix:$SOCK" -t 10000 -i 192.0.2.10 -q "$DATA/check/spam-9.eml" 2>>"$D/mc.err"
check "the daemon still scores with Bayes after the map grew" \
	wait_for 5 sh -c "grep 'rules=' '$LOG' | tail -1 | grep -q BAYES_"
check "and logged no lookup failure" sh -c "! grep -q 'lookup failed' '$LOG'"
kill "$MILTER_PID"
wait "$MILTER_PID" 2>/dev/null
it_untrack "$MILTER_PID"

it_done
