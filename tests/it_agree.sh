#!/bin/sh
# it_agree.sh - the promise that `sift check` scores what the daemon scores:
# every message fixture under tests/ goes through `sift check --tsv` and
# through a real sift-milter (fed by sift-mclient), with the shipped rules,
# the tests' rules (one of them sees a forged X-Spam-Flag) and a learned
# Bayes store configured; score and action must agree for each message.
# Then again with SpamAssassin's stock rules loaded as well (Debian's
# spamassassin package, which the test suite installs): their eval tests
# read what only the daemon is told by the MTA (the client, HELO, envelope,
# the relays it makes of them), which sift check is given on its command
# line, so this is where the two could part.
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

# Every message the tests use: the fixtures and the MIME and evals fuzz corpora.
find "$top_srcdir/tests/data" "$top_srcdir/tests/fuzz/corpus_mime" \
	"$top_srcdir/tests/fuzz/corpus_evals" -type f -name '*.eml' |
	LC_ALL=C sort >"$D/files"
N=$(wc -l <"$D/files")
check "found the message fixtures ($N)" [ "$N" -ge 40 ]
check "a fixture carries a forged X-Spam-Flag" \
	grep -q '^X-Spam-Flag: YES' "$top_srcdir/tests/data/scan/forged.eml"

out=$($S learn --spam "$top_srcdir/tests/data/bayes/spam" 2>&1)
check "Bayes store: spam learned" has "$out" "8 new"
out=$($S learn --ham "$top_srcdir/tests/data/bayes/ham" 2>&1)
check "Bayes store: ham learned" has "$out" "8 new"

# agree LABEL CONF QPREFIX: both paths over every file with CONF, compared.
agree() {
	label=$1
	conf=$2
	qp=$3
	# shellcheck disable=SC2046 # file names under tests/ hold no spaces
	$SIFT -c "$conf" -d "$D/state" check --tsv --ip "$IP" --helo "$HELO" --from "$FROM" \
		--client-name "$NAME" --rcpt "$RCPT" $(cat "$D/files") \
		>"$D/check.$qp.tsv" 2>"$D/check.$qp.err"
	check "$label: sift check scored every message" [ "$(wc -l <"$D/check.$qp.tsv")" = "$N" ]
	check "$label: Bayes votes in sift check" grep -q 'BAYES_' "$D/check.$qp.tsv"
	check "$label: the envelope recipient counts in sift check" \
		grep -q 'SIFT_AGREE_RCPT' "$D/check.$qp.tsv"
	check "$label: the client's name counts in sift check" \
		grep -q 'SIFT_AGREE_RDNS' "$D/check.$qp.tsv"

	it_milter_start 30 "$conf" "$D/state" "$SOCK" "$LOG.$qp"
	i=0
	while read -r f; do
		i=$((i + 1))
		"$MC" -s "unix:$SOCK" -t 10000 -i "$IP" -H "$HELO" -f "$FROM" -r "$RCPT" -N "$NAME" \
			-Q "$(printf '%s%03d' "$qp" "$i")" --tsv "$f" >>"$D/mc.$qp.tsv" 2>>"$D/mc.$qp.err"
	done <"$D/files"
	check "$label: sift-milter logged a verdict per message" \
		wait_for 10 sh -c "[ \$(grep -c ' queue_id=$qp' '$LOG.$qp') -ge $N ]"
	it_stop "$IT_MILTER_PID"

	# One line per message: what sift check said against what the daemon logged.
	i=0
	bad=0
	while read -r f; do
		i=$((i + 1))
		qid=$(printf '%s%03d00000000' "$qp" "$i")
		c_score=$(tsv_field "$D/check.$qp.tsv" "$f" 2)
		c_action=$(tsv_field "$D/check.$qp.tsv" "$f" 3)
		line=$(grep " queue_id=$qid " "$LOG.$qp" | head -1)
		d_score=$(printf '%s\n' "$line" | sed -n 's/.* score=\([^ ]*\) .*/\1/p')
		d_action=$(printf '%s\n' "$line" | sed -n 's/.* action=\([^ ]*\) .*/\1/p')
		name=${f#"$top_srcdir"/}
		if [ -n "$c_score" ] && [ "$c_score" = "$d_score" ] && [ "$c_action" = "$d_action" ]; then
			pass "$label: $name: $c_score $c_action in both"
		else
			bad=$((bad + 1))
			fail "$label: $name: sift check '$c_score $c_action' ($(tsv_field "$D/check.$qp.tsv" "$f" 4))," \
				"sift-milter '$d_score $d_action' ($(printf '%s\n' "$line" | sed -n 's/.* rules=\([^ ]*\) .*/\1/p'))"
		fi
	done <"$D/files"
	check "$label: no message scored differently ($bad did)" [ "$bad" = 0 ]
}

agree "shipped rules" "$D/sift.conf" agree

SA=${SIFT_TEST_SA_RULES:-/usr/share/spamassassin}
if [ -f "$SA/72_active.cf" ]; then
	# SpamAssassin's rules after the others, as the shipped config's commented line has them
	sed "s|^rules = $D/envelope.cf|rules = $SA\n&|" "$D/sift.conf" >"$D/sift-sa.conf"
	check "the second config loads SpamAssassin's rules" grep -q "^rules = $SA" "$D/sift-sa.conf"
	agree "SpamAssassin's rules" "$D/sift-sa.conf" saagr
	# an eval test over the relay the MTA's client name and HELO make
	check "SpamAssassin's KHOP_HELO_FCRDNS hits in sift check" \
		grep -q 'KHOP_HELO_FCRDNS' "$D/check.saagr.tsv"
	check "SpamAssassin's KHOP_HELO_FCRDNS hits in sift-milter" \
		grep -q 'rules=[^ ]*KHOP_HELO_FCRDNS' "$LOG.saagr"
else
	# The test suite installs them (contrib/install-deps.sh --test): missing is a failure.
	fail "no SpamAssassin rules in $SA: the second pass did not run"
fi

it_done
