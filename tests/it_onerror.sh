#!/bin/sh
# it_onerror.sh - on_error in a running sift-milter: a Bayes store that
# becomes unreadable while the daemon runs is an internal error; with
# on_error = tempfail the message is deferred with tempfail_reply, with
# on_error = accept it is judged on the other sources and carries an
# X-Sift-Error field; each such message is logged with the running count.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

SIFT=$top_builddir/sift
MC=$top_builddir/sift-mclient
it_need "$SIFT" "$top_builddir/sift-milter" "$MC"

D=$IT_TMP
SOCK=$D/sift.sock
LOG=$D/milter.log
DATA=$top_srcdir/tests/data
REPLY="451 4.3.0 Sift test: try again later"
conf() {
	cat >"$D/sift.conf" <<EOF
log = stderr
log_level = info
rules = $DATA/rules/10_it.cf
add_header_score = 5
reject_score = 15
tempfail_reply = "$REPLY"
bayes_min_spam = 5
bayes_min_ham = 5
bayes_map_size = 16M
on_error = $1
EOF
}
has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in '$1'" >&2; return 1; }
hasnt() { case "$1" in *"$2"*) echo "  '$2' unexpectedly in '$1'" >&2; return 1 ;; esac; return 0; }
mc() {
	"$MC" -s "unix:$SOCK" -t 10000 -i 192.0.2.10 -Q "$1" --tsv "$2" >"$D/$1.tsv" 2>"$D/$1.err"
}
field() { tsv_field "$D/$1.tsv" "$2" "$3"; }

conf tempfail
S="$SIFT -c $D/sift.conf -d $D/state"
$S learn --spam "$DATA/bayes/spam" >/dev/null 2>&1
$S learn --ham "$DATA/bayes/ham" >/dev/null 2>&1
check "store learned" [ -s "$D/state/bayes/data.mdb" ]

it_milter_start 10 "$D/sift.conf" "$D/state" "$SOCK" "$LOG"
mc good "$DATA/milter/ham.eml"
check "healthy store: accepted" [ "$(field good ham.eml 2)" = accept ]
check "healthy store: Bayes voted" has "$(field good ham.eml 4)" "BAYES_"
check "healthy store: no X-Sift-Error" hasnt "$(field good ham.eml 4)" "X-Sift-Error"

# Zero every page but LMDB's two meta pages, keeping the file's size: the
# open store now reads pages of no known type (MDB_CORRUPTED).
PAGE=$(getconf PAGESIZE)
SIZE=$(stat -c %s "$D/state/bayes/data.mdb")
dd if=/dev/zero of="$D/state/bayes/data.mdb" bs="$PAGE" seek=2 \
	count=$((SIZE / PAGE - 2)) conv=notrunc 2>/dev/null
check "store wrecked" [ "$(stat -c %s "$D/state/bayes/data.mdb")" = "$SIZE" ]

mc broken "$DATA/milter/ham.eml"
check "on_error = tempfail: deferred" [ "$(field broken ham.eml 2)" = tempfail ]
check "on_error = tempfail: with tempfail_reply" [ "$(field broken ham.eml 3)" = "$REPLY" ]
check "the internal error is logged with its count" \
	wait_for 5 grep -q "broken00000000: internal error in bayes; on_error=tempfail (1 message(s) so far)" "$LOG"

conf accept
kill -HUP "$IT_MILTER_PID"
check "reload to on_error = accept" wait_for 10 grep -q "configuration reloaded" "$LOG"
mc accepted "$DATA/milter/ham.eml"
check "on_error = accept: accepted" [ "$(field accepted ham.eml 2)" = accept ]
check "on_error = accept: X-Sift-Error names the source" \
	has "$(field accepted ham.eml 4)" "X-Sift-Error: scored without bayes"
check "on_error = accept: the verdict fields are still added" \
	has "$(field accepted ham.eml 4)" "X-Spam-Status: No"
check "the count goes on" wait_for 5 grep -q "on_error=accept (2 message(s) so far)" "$LOG"
mc spam "$DATA/milter/spam.eml"
check "on_error = accept: the other sources still reject spam" [ "$(field spam spam.eml 2)" = reject ]
check "the daemon survived" kill -0 "$IT_MILTER_PID"
it_done
