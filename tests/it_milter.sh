#!/bin/sh
# it_milter.sh - the real sift-milter on a private unix socket, driven by
# sift-milter's own protocol client (sift-mclient): verdicts, replies and
# headers, foreign verdict headers, several messages and an abort on one
# connection, oversize and malformed messages, reload (good and broken),
# clean stop, and a bad configuration refused with file:line.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MILTER=$top_builddir/sift-milter
MC=$top_builddir/sift-mclient
DATA=$top_srcdir/tests/data/milter
it_need "$MILTER" "$MC"

D=$IT_TMP
SOCK=$D/sift.sock
mkdir "$D/rules" "$D/state"
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/rules/"
REPLY="550 5.7.1 Sift integration test says no"
cat >"$D/sift.conf" <<EOF
# it_milter.sh test configuration
log = stderr
log_level = info
rules = $D/rules
add_header_score = 5
reject_score = 15
reject_reply = "$REPLY"
max_message_size = 64K
EOF

LOG=$D/milter.log
MILTER_PID=""
start_milter() {
	it_milter_start 10 "$D/sift.conf" "$D/state" "$SOCK" "$LOG"
	MILTER_PID=$IT_MILTER_PID
}

# mc NAME ARGS...: one sift-mclient run; TSV in $D/NAME.tsv, summary in .err.
mc() {
	_n=$1
	shift
	"$MC" -s "unix:$SOCK" -t 10000 -i 192.0.2.10 -Q "$_n" --tsv "$@" \
		>"$D/$_n.tsv" 2>"$D/$_n.err"
	echo $? >"$D/$_n.rc"
}
# field NAME FILE COLUMN: column of the row for FILE (1 file 2 action 3 reply 4 headers 5 mods).
field() { tsv_field "$D/$1.tsv" "$2" "$3"; }
# row NAME N COLUMN: column of the Nth data row.
row() { grep -v '^#' "$D/$1.tsv" | sed -n "$2p" | cut -f"$3"; }
has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in '$1'" >&2; return 1; }
hasnt() { case "$1" in *"$2"*) echo "  '$2' unexpectedly in '$1'" >&2; return 1 ;; esac; return 0; }
log_has() { grep -q -e "$1" "$LOG"; }
# count_in STRING PATTERN: how many ';'-separated items start with PATTERN.
count_in() { printf '%s\n' "$1" | tr ';' '\n' | grep -c "^$2"; }

start_milter
check "pid file holds the daemon's pid" [ "$(cat "$D/state/sift-milter.pid" 2>/dev/null)" = "$MILTER_PID" ]

# --- ham: accepted, marked not spam
mc ham "$DATA/ham.eml"
check "ham: accepted" [ "$(field ham ham.eml 2)" = accept ]
check "ham: X-Spam-Status: No" has "$(field ham ham.eml 4)" "X-Spam-Status: No, score="
check "ham: no X-Spam-Flag" hasnt "$(field ham ham.eml 4)" "X-Spam-Flag"
check "ham: client exit 0" [ "$(cat "$D/ham.rc")" = 0 ]

# --- spam: rejected with the configured reply, no header changes
mc spam "$DATA/spam.eml"
check "spam: rejected" [ "$(field spam spam.eml 2)" = reject ]
check "spam: configured 550 reply" [ "$(field spam spam.eml 3)" = "$REPLY" ]
check "spam: one log line with queue id, score, action and rule" \
	log_has "queue_id=spam00000000 ip=192.0.2.10 score=20.00 action=reject rules=SIFT_IT_SPAM_SUBJ"

# --- between the thresholds: accepted, flagged
mc medium "$DATA/medium.eml"
check "medium: accepted" [ "$(field medium medium.eml 2)" = accept ]
check "medium: X-Spam-Flag: YES" has "$(field medium medium.eml 4)" "X-Spam-Flag: YES"
check "medium: X-Spam-Status: Yes with the rule" \
	has "$(field medium medium.eml 4)" "X-Spam-Status: Yes, score=7.0 required=5.0 tests=SIFT_IT_MEDIUM_SUBJ"
check "medium: X-Spam-Action: add_header" has "$(field medium medium.eml 4)" "X-Spam-Action: add_header"
check "medium: the client's summary counts it as flagged" grep -q " flagged=1$" "$D/medium.err"
check "ham: the client's summary does not" grep -q " flagged=0$" "$D/ham.err"

# --- malformed MIME: scored, an action, and the daemon lives on
mc malformed "$DATA/malformed.eml"
check "malformed: scored (X-Spam-Score present)" has "$(field malformed malformed.eml 4)" "X-Spam-Score: "
ACT=$(field malformed malformed.eml 2)
check "malformed: an action ($ACT)" [ -n "$ACT" -a "$ACT" != error ]
check "malformed: daemon still running" kill -0 "$MILTER_PID"

# --- foreign verdict headers: all removed (chgheader, empty value) before ours
mc foreign "$DATA/foreign.eml"
MODS=$(field foreign foreign.eml 5)
check "foreign: accepted" [ "$(field foreign foreign.eml 2)" = accept ]
check "foreign: both X-Spam-Status copies deleted" \
	[ "$(count_in "$MODS" 'chg\[[12]\] X-Spam-Status: $')" = 2 ]
check "foreign: X-Spam-Flag deleted" [ "$(count_in "$MODS" 'chg\[1\] X-Spam-Flag: $')" = 1 ]
check "foreign: deletions come before our additions" \
	[ "$(printf '%s\n' "$MODS" | tr ';' '\n' | awk '/^add /{a=1} /^chg/ && a {bad=1} END {print bad+0}')" = 0 ]
check "foreign: our X-Spam-Status added" has "$(field foreign foreign.eml 4)" "X-Spam-Status: No, score="

# --- many forged copies: every one removed, not only the first few
{
	printf 'From: f@example.org\nTo: bob@example.net\nSubject: forty flags\n'
	printf 'Message-ID: <flags-1@example.org>\n'
	i=1
	while [ $i -le 40 ]; do
		# every fifth copy in another case: the MTA counts names case-blind
		if [ $((i % 5)) = 0 ]; then printf 'x-spam-flag: YES\n'; else printf 'X-Spam-Flag: YES\n'; fi
		i=$((i + 1))
	done
	printf '\nhello\n'
} >"$D/flags40.eml"
mc flags40 "$D/flags40.eml"
MODS=$(field flags40 flags40.eml 5)
check "40 forged X-Spam-Flag: accepted" [ "$(field flags40 flags40.eml 2)" = accept ]
check "40 forged X-Spam-Flag: 40 deletions" [ "$(count_in "$MODS" 'chg\[[0-9]*\] X-Spam-Flag: $')" = 40 ]
check "40 forged X-Spam-Flag: indexes 40 down to 1" \
	[ "$(printf '%s\n' "$MODS" | tr ';' '\n' | sed -n 's/^chg\[\([0-9]*\)\] X-Spam-Flag: $/\1/p' |
		tr '\n' ' ')" = "$(seq 40 -1 1 | tr '\n' ' ')" ]
check "40 forged X-Spam-Flag: no flag of ours on a clean message" \
	hasnt "$(field flags40 flags40.eml 4)" "X-Spam-Flag"

# --- two messages on one connection; then an aborted transaction and a message
mc two --per-conn 2 "$DATA/spam.eml" "$DATA/ham.eml"
check "one connection: first message rejected" [ "$(row two 1 2)" = reject ]
check "one connection: second accepted, unaffected by the first" \
	has "$(row two 2 4)" "X-Spam-Status: No, score="
mc abort --per-conn 2 --abort-first "$DATA/spam.eml" "$DATA/ham.eml"
check "abort: first transaction aborted" [ "$(row abort 1 2)" = aborted ]
check "abort: next message on the connection accepted as ham" \
	has "$(row abort 2 4)" "X-Spam-Status: No, score="
check "abort: the aborted message was never scored" \
	sh -c "! grep -q 'queue_id=abort00000000 ' '$LOG'"
check "abort: the next one was" log_has "queue_id=abort00000001 "

# --- oversize body (above max_message_size = 64K): still scored on what was kept
{
	printf 'From: big@example.org\nTo: bob@example.net\nSubject: a large one\n'
	printf 'Message-ID: <big-1@example.org>\n\nSIFTBODYTOKEN at the top\n'
	awk 'BEGIN { for (i = 0; i < 2000; i++) printf "filler line %05d of a long body\n", i }'
} >"$D/oversize.eml"
mc oversize "$D/oversize.eml"
check "oversize: accepted, not failed" [ "$(field oversize oversize.eml 2)" = accept ]
check "oversize: body rule hit on the kept part" \
	has "$(field oversize oversize.eml 4)" "tests=SIFT_IT_BODY"

# --- SIGHUP with a changed rules file: new connections use the new rules
sed 's/^Subject: .*/Subject: SIFTNEWTOKEN arrives/' "$DATA/ham.eml" >"$D/new.eml"
mc before "$D/new.eml"
check "before reload: new token not scored" [ "$(field before new.eml 2)" = accept ]
cat >>"$D/rules/10_it.cf" <<'EOF'

header   SIFT_IT_NEW_SUBJ  Subject =~ /\bSIFTNEWTOKEN\b/
score    SIFT_IT_NEW_SUBJ  25
EOF
kill -HUP "$MILTER_PID"
check "reload logged" wait_for 10 log_has "configuration reloaded"
mc after "$D/new.eml"
check "after reload: new rule rejects" [ "$(field after new.eml 2)" = reject ]

# --- SIGHUP with a broken rules file: refused, file:line logged, old rules act
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/rules/10_it.cf" # drops SIFT_IT_NEW_SUBJ
printf '# broken on line 2\nheader SIFT_IT_BROKEN Subject =~ /(unclosed/\n' >"$D/rules/20_broken.cf"
kill -HUP "$MILTER_PID"
check "broken reload refused" wait_for 10 log_has "reload refused"
check "broken reload: file:line in the log" log_has "20_broken.cf:2:"
mc broken "$D/new.eml"
check "broken reload: the old rules still act (new token still rejects)" \
	[ "$(field broken new.eml 2)" = reject ]
check "daemon survived the refused reload" kill -0 "$MILTER_PID"

# --- SIGTERM: stops, removes its pid file
kill -TERM "$MILTER_PID"
if wait_for 10 sh -c "! kill -0 $MILTER_PID 2>/dev/null"; then
	wait "$MILTER_PID"
	check "SIGTERM: clean exit status" [ $? = 0 ]
else
	fail "SIGTERM: still running after 10 s"
fi
it_untrack "$MILTER_PID"
check "SIGTERM: pid file removed" [ ! -e "$D/state/sift-milter.pid" ]

# --- a bad configuration: refused at start with file:line
rm -f "$D/rules/20_broken.cf" # so the unknown key is the only error
printf 'log = stderr\nrules = %s\nno_such_key = 1\n' "$D/rules" >"$D/bad.conf"
timeout 10 "$MILTER" -f -c "$D/bad.conf" -d "$D/state" -p "unix:$D/bad.sock" \
	>"$D/bad.out" 2>"$D/bad.err"
BAD_RC=$?
check "bad config: non-zero exit, not a timeout ($BAD_RC)" [ "$BAD_RC" != 0 -a "$BAD_RC" != 124 ]
check "bad config: file:line on stderr" grep -q "bad.conf:3:" "$D/bad.err"

# --- TCP: no 40 ms stall per message. libmilter writes each header change
# separately; without TCP_NODELAY each later write waits for the client's
# delayed ACK (~40 ms), so the median of 20 clean messages would be >= 40 ms.
TPORT=$(free_port)
"$MILTER" -f -c "$D/sift.conf" -d "$D/state-tcp" -p "inet:$TPORT@127.0.0.1" 2>>"$D/tcp.log" &
TCP_PID=$!
it_track "$TCP_PID"
if wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$TPORT" 2>/dev/null; then
	"$MC" -s "inet:$TPORT@127.0.0.1" -t 10000 -n 20 -q "$DATA/ham.eml" 2>"$D/tcp.err"
	P50=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' "$D/tcp.err")
	check "tcp: 20 messages answered (p50 ${P50:-none} ms)" [ -n "$P50" ]
	check "tcp: median under 20 ms, no delayed-ACK stall (${P50:-none} ms)" \
		awk -v p="${P50:-999}" 'BEGIN { exit !(p < 20) }'
else
	fail "tcp: sift-milter did not listen on port $TPORT within 10 s"
fi
kill "$TCP_PID"
wait "$TCP_PID" 2>/dev/null
it_untrack "$TCP_PID"

# --- user = nobody: stores created by root before the switch are handed over
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
	printf 'log = stderr\nrules = %s\nuser = nobody\n' "$D/rules" >"$D/drop.conf"
	# The stores are opened after the switch: nobody must reach its state dir.
	chmod 711 "$D"
	"$top_builddir/sift" -c "$D/drop.conf" -d "$D/state-drop" block add 192.0.2.99 \
		--reason test >/dev/null 2>&1
	# nested directories are handed over; a link in the tree is not followed
	mkdir -p "$D/state-drop/a/b"
	echo x >"$D/state-drop/a/b/deep"
	echo root-only >"$D/outside"
	ln -s "$D/outside" "$D/state-drop/a/link"
	"$MILTER" -f -c "$D/drop.conf" -d "$D/state-drop" -p "unix:$D/drop.sock" 2>>"$D/drop.log" &
	DROP_PID=$!
	it_track "$DROP_PID"
	if wait_for 10 test -S "$D/drop.sock"; then
		check "user: the daemon runs as nobody" [ "$(ps -o user= -p "$DROP_PID")" = nobody ]
		check "user: root-created stores are owned by nobody" \
			[ -z "$(find "$D/state-drop" ! -type l ! -user nobody)" ]
		check "user: a file two directories down too" [ "$(stat -c %U "$D/state-drop/a/b/deep")" = nobody ]
		check "user: a link in the state dir is not followed ($(stat -c %U "$D/outside"))" \
			[ "$(stat -c %U "$D/outside")" = root ]
		"$MC" -s "unix:$D/drop.sock" -t 10000 -i 192.0.2.99 -q "$DATA/ham.eml" 2>"$D/drop.err"
		check "user: a message is still scored after the switch" \
			grep -q "queue_id=.* ip=192.0.2.99 .*action=" "$D/drop.log"
	else
		fail "user: sift-milter did not start as nobody"
	fi
	kill "$DROP_PID"
	wait "$DROP_PID" 2>/dev/null
	it_untrack "$DROP_PID"
fi

if [ "$IT_FAILS" -ne 0 ]; then
	echo "--- daemon log" >&2
	tail -50 "$LOG" >&2
fi
it_done
