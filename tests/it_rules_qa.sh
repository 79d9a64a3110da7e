#!/bin/sh
# it_rules_qa.sh - `sift rules qa` and `sift rules fit` on the labelled
# fixtures in tests/data/qa: hit counts per label from directories and from
# a manifest with a fold selection, the fitted scores file keeps each
# rule's sign (tflags nice stays <= 0) and loads as rules, and malformed
# input fails with a clear message.
. "$(dirname "$0")/it_lib.sh"

SIFT=$top_builddir/sift
QA=$top_srcdir/tests/data/qa
D=$IT_TMP
printf 'state_dir = %s/state\nrules = %s/qa.cf\n' "$D" "$QA" >"$D/sift.conf"

"$SIFT" -c "$D/sift.conf" rules qa --tsv -j 2 --spam "$QA/spam" --ham "$QA/ham" >"$D/qa.tsv" 2>"$D/qa.err"
check "rules qa over directories succeeds" [ $? = 0 ]
check "cash: 3 spam, 0 ham" grep -q '^QA_CLAIM_CASH	2	3	0	' "$D/qa.tsv"
check "winner: 2 spam, 1 ham" grep -q '^QA_SUBJ_WINNER	2	2	1	' "$D/qa.tsv"
check "meeting (nice): 0 spam, 2 ham" grep -q '^QA_MEETING	-1	0	2	' "$D/qa.tsv"
check "a rule that never hits is listed" grep -q '^QA_NEVER	1	0	0	' "$D/qa.tsv"

"$SIFT" -c "$D/sift.conf" rules qa --manifest "$QA/manifest.tsv" --root "$QA" --folds 0-1 >"$D/qa.txt" 2>&1
check "rules qa over manifest folds 0-1 sees 2 spam and 2 ham" grep -q '^# 2 spam, 2 ham, 0 unreadable' "$D/qa.txt"

"$SIFT" -c "$D/sift.conf" rules fit --spam "$QA/spam" --ham "$QA/ham" --k 3 -o "$D/fit.cf" >"$D/fit.out" 2>"$D/fit.err"
check "rules fit succeeds" [ $? = 0 ]
check "fit prints held-out figures" grep -q '^held out: fitted score AUC' "$D/fit.out"
check "fit names the Bayes keys" grep -q '^bayes_logodds_scale = ' "$D/fit.out"
check "fit warns that Bayes is not out of fold" grep -q 'no --bayes-oof' "$D/fit.err"
check "cash gets a positive score" awk '$1 == "score" && $2 == "QA_CLAIM_CASH" && $3 > 0 { f = 1 } END { exit !f }' "$D/fit.cf"
check "a nice rule that hits only spam stays <= 0" awk '$1 == "score" && $2 == "QA_NICE_CASH" && $3 <= 0 { f = 1 } END { exit !f }' "$D/fit.cf"
cp "$QA/qa.cf" "$D/10_qa.cf"
cp "$D/fit.cf" "$D/99_fitted.cf"
"$SIFT" lint "$D/10_qa.cf" "$D/99_fitted.cf" >"$D/lint.out" 2>&1
check "the scores file loads after the rules" [ $? = 0 ]

"$SIFT" -c "$D/sift.conf" rules fit --manifest "$QA/manifest.tsv" --root "$QA" --folds 0 -o "$D/one.cf" >/dev/null 2>"$D/one.err"
check "one spam and one ham cannot be fitted" grep -q 'needs at least 2 spam, 2 ham and 2 folds' "$D/one.err"
"$SIFT" -c "$D/sift.conf" rules fit --manifest "$QA/manifest.tsv" --root "$QA" --folds 0-1 --k 2 -o "$D/two.cf" >/dev/null 2>&1
check "manifest folds 0-1 fit" grep -q '^score QA_CLAIM_CASH' "$D/two.cf"

printf 'score QA_CLAIM_CASH 4.5\n' >"$D/lock"
"$SIFT" -c "$D/sift.conf" rules fit --spam "$QA/spam" --ham "$QA/ham" --k 3 --lock "$D/lock" -o "$D/fit2.cf" >/dev/null 2>&1
check "a locked rule is not refitted" sh -c "! grep -q 'QA_CLAIM_CASH' '$D/fit2.cf'"

printf 'path\tlabel\tgroup\tbytes\tmd5\tfold\nx.eml\tperhaps\tg\t1\tm\t0\n' >"$D/bad.tsv"
"$SIFT" -c "$D/sift.conf" rules qa --manifest "$D/bad.tsv" --root "$QA" >/dev/null 2>"$D/bad.err"
check "a malformed manifest fails" [ $? != 0 ]
check "naming its line" grep -q 'bad.tsv:2: expected' "$D/bad.err"
"$SIFT" -c "$D/sift.conf" rules qa --manifest "$QA/manifest.tsv" --root "$QA" --folds 9-1 >/dev/null 2>"$D/folds.err"
check "a bad fold list fails" grep -q "bad fold list '9-1'" "$D/folds.err"

# The shipped rules for today's mail hit the lures they were written for.
printf 'state_dir = %s/state\nrules = %s/rules\n' "$D" "$top_srcdir" >"$D/shipped.conf"
"$SIFT" -c "$D/shipped.conf" check --tsv "$QA/modern" >"$D/modern.tsv" 2>"$D/modern.err"
check "the modern fixtures score" [ "$(wc -l <"$D/modern.tsv")" = 4 ]
hits() { # FILE RULE...
	f=$1
	shift
	for r in "$@"; do
		grep "/$f	" "$D/modern.tsv" | cut -f4 | tr ',' '\n' | grep -qx "$r" || return 1
	done
}
check "phishing: password form, account threat, brand host, address in the link, redirector" \
	hits phish.eml SIFT_HTML_FORM_PASSWORD SIFT_PHISH_ACCOUNT SIFT_URI_BRAND_SUBDOMAIN \
	SIFT_URI_PHP_EMAIL SIFT_URI_GOOGLE_REDIR SIFT_URI_SHORT_MODERN SIFT_FROM_NAME_SUPPORT
check "extortion: wording, deadline with a wallet, a bech32 address, From = To" \
	hits extort.eml SIFT_SEXTORTION SIFT_PAY_DEADLINE_BTC SIFT_WALLET_ADDR SIFT_FROM_SAME_AS_TO
check "invoice lure with a disk-image attachment" \
	hits invoice.eml SIFT_SUBJ_INVOICE SIFT_BODY_PAYMENT_LURE SIFT_MIME_RISKY_ARCHIVE
check "Cyrillic look-alike in the Subject, digits for letters" \
	hits homoglyph.eml SIFT_SUBJ_MIXED_SCRIPT SIFT_OBFU_WORDS
check "the plain ham fixtures hit none of them" sh -c "! \"$SIFT\" -c '$D/shipped.conf' check --tsv '$QA/ham' | cut -f4 | grep -q 'SIFT_PHISH\|SIFT_SEXTORTION\|SIFT_URI_BRAND\|SIFT_SUBJ_MIXED'"

it_done
