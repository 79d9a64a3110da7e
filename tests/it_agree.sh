#!/bin/sh
# it_agree.sh - the promise that `sift check` scores what the daemon scores:
# every message fixture under tests/ goes through `sift check --tsv` and
# through a real sift-milter (fed by sift-mclient), with the shipped rules,
# the tests' rules (one of them sees a forged X-Spam-Flag) and a learned
# Bayes store configured; score and action must agree for each message.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

SIFT=$top_builddir/sift
MILTER=$top_builddir/sift-milter
MC=$top_builddir/sift-mclient
it_need "$SIFT" "$MILTER" "$MC"

D=$IT_TMP
SOCK=$D/sift.sock
LOG=$D/milter.log
# The envelope both paths see.
IP=192.0.2.44
NAME=relay.example.org
HELO=mail.example.org
FROM=sender@example.org
RCPT=rcpt@sift.test
# Rules on the SMTP recipient, which no fixture's header names, and on the
# client's reverse name: sift check must be given them as the daemon is.
cat >"$D/envelope.cf" <<EOF
header SIFT_AGREE_RCPT eval:check_to_in_more_spam()
score  SIFT_AGREE_RCPT 0.5
more_spam_to $RCPT
header SIFT_AGREE_RDNS X-Spam-Relays-Untrusted =~ /^\[ ip=\S+ rdns=$NAME /
score  SIFT_AGREE_RDNS 0.25
EOF
cat >"$D/sift.conf" <<EOF
# it_agree.sh test configuration
log = stderr
log_level = info
rules = $top_srcdir/rules
rules = $top_srcdir/tests/data/rules/10_it.cf
rules = $top_srcdir/tests/data/scan/test.cf
rules = $D/envelope.cf
add_header_score = 5
reject_score = 15
# Small, so that the larger fixtures are cut: both paths must cut alike.
max_message_size = 4K
bayes_min_spam = 5
bayes_min_ham = 5
bayes_map_size = 16M
EOF
S="$SIFT -c $D/sift.conf -d $D/state"
has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in '$1'" >&2; return 1; }

# Every message the tests use: the fixtures and the MIME fuzz corpus.
find "$top_srcdir/tests/data" "$top_srcdir/tests/fuzz/corpus_mime" -type f -name '*.eml' |
	LC_ALL=C sort >"$D/files"
N=$(wc -l <"$D/files")
check "found the message fixtures ($N)" [ "$N" -ge 40 ]
check "a fixture carries a forged X-Spam-Flag" \
	grep -q '^X-Spam-Flag: YES' "$top_srcdir/tests/data/scan/forged.eml"

out=$($S learn --spam "$top_srcdir/tests/data/bayes/spam" 2>&1)
check "Bayes store: spam learned" has "$out" "8 new"
out=$($S learn --ham "$top_srcdir/tests/data/bayes/ham" 2>&1)
check "Bayes store: ham learned" has "$out" "8 new"

# shellcheck disable=SC2046 # file names under tests/ hold no spaces
$S check --tsv --ip "$IP" --helo "$HELO" --from "$FROM" --client-name "$NAME" \
	--rcpt "$RCPT" $(cat "$D/files") \
	>"$D/check.tsv" 2>"$D/check.err"
check "sift check scored every message" [ "$(wc -l <"$D/check.tsv")" = "$N" ]
check "Bayes votes in sift check" grep -q 'BAYES_' "$D/check.tsv"
check "the envelope recipient counts in sift check" grep -q 'SIFT_AGREE_RCPT' "$D/check.tsv"
check "the client's name counts in sift check" grep -q 'SIFT_AGREE_RDNS' "$D/check.tsv"

it_milter_start 10 "$D/sift.conf" "$D/state" "$SOCK" "$LOG"
i=0
while read -r f; do
	i=$((i + 1))
	"$MC" -s "unix:$SOCK" -t 10000 -i "$IP" -H "$HELO" -f "$FROM" -r "$RCPT" -N "$NAME" \
		-Q "$(printf 'agree%03d' "$i")" --tsv "$f" >>"$D/mc.tsv" 2>>"$D/mc.err"
done <"$D/files"
check "sift-milter logged a verdict per message" \
	wait_for 10 sh -c "[ \$(grep -c ' queue_id=agree' '$LOG') -ge $N ]"

# One line per message: what sift check said against what the daemon logged.
i=0
bad=0
while read -r f; do
	i=$((i + 1))
	qid=$(printf 'agree%03d00000000' "$i")
	c_score=$(tsv_field "$D/check.tsv" "$f" 2)
	c_action=$(tsv_field "$D/check.tsv" "$f" 3)
	line=$(grep " queue_id=$qid " "$LOG" | head -1)
	d_score=$(printf '%s\n' "$line" | sed -n 's/.* score=\([^ ]*\) .*/\1/p')
	d_action=$(printf '%s\n' "$line" | sed -n 's/.* action=\([^ ]*\) .*/\1/p')
	name=${f#"$top_srcdir"/}
	if [ -n "$c_score" ] && [ "$c_score" = "$d_score" ] && [ "$c_action" = "$d_action" ]; then
		pass "$name: $c_score $c_action in both"
	else
		bad=$((bad + 1))
		fail "$name: sift check '$c_score $c_action' ($(tsv_field "$D/check.tsv" "$f" 4))," \
			"sift-milter '$d_score $d_action' ($(printf '%s\n' "$line" | sed -n 's/.* rules=\([^ ]*\) .*/\1/p'))"
	fi
done <"$D/files"
check "no message scored differently ($bad did)" [ "$bad" = 0 ]

it_done
