#!/bin/sh
# it_protocol.sh - the real sift-milter on a private TCP port, fed milter
# command sequences no MTA sends (commands before option negotiation,
# headers and body without MAIL, CONNECT twice, a second negotiation, empty
# arguments, truncated packets) by a raw python3 client; after each one the
# daemon must still run, and at the end it must still score a normal
# session from sift-mclient. Also: logged fields are escaped, and
# log_level = debug shows the session's stages and each evidence source's
# time while info does not.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MILTER=$top_builddir/sift-milter
MC=$top_builddir/sift-mclient
DATA=$top_srcdir/tests/data/milter
it_need "$MILTER" "$MC"
command -v python3 >/dev/null 2>&1 || skip_all "python3 not found"

D=$IT_TMP
mkdir "$D/rules" "$D/state"
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/rules/"
cat >"$D/sift.conf" <<EOF
log = stderr
log_level = info
rules = $D/rules
add_header_score = 5
reject_score = 15
EOF

LOG=$D/milter.log
# start: a fresh daemon on a fresh port (again after a sequence killed it,
# so that each sequence is judged on its own).
start() {
	PORT=$(free_port)
	"$MILTER" -f -c "$D/sift.conf" -d "$D/state" -p "inet:$PORT@127.0.0.1" 2>>"$LOG" &
	PID=$!
	it_track "$PID"
	if ! wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then
		fail "sift-milter did not listen on 127.0.0.1:$PORT within 10 s"
		cat "$LOG" >&2
		it_done
	fi
}
start

# send.py PORT SEQUENCE: sends one named sequence of raw milter packets,
# reading whatever the filter answers (at most 2 s per read), then closes.
cat >"$D/send.py" <<'EOF'
import os, socket, struct, sys, time

def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data

OPTNEG = pkt(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
CONN4 = pkt(b"C", b"client.example\x00" + b"4" + struct.pack(">H", 25) + b"192.0.2.7\x00")
HELO = pkt(b"H", b"evil\x00")
MAIL = pkt(b"M", b"<a@example.org>\x00")
RCPT = pkt(b"R", b"<b@example.net>\x00")
HDR = pkt(b"L", b"Subject\x00hello\x00")
FLAG = pkt(b"L", b"X-Spam-Flag\x00YES\x00")
BODY = pkt(b"B", b"body text\r\n")
EOH, EOB, ABORT, QUIT, DATA = pkt(b"N"), pkt(b"E"), pkt(b"A"), pkt(b"Q"), pkt(b"T")
MACRO_I = pkt(b"D", b"M" + b"i\x00Q\x1b[31mID\x00")

SEQ = {
    "helo-first": [HELO],
    "mail-first": [MAIL, RCPT],
    "rcpt-first": [RCPT],
    "header-first": [HDR, FLAG],
    "eoh-first": [EOH],
    "body-first": [BODY],
    "eom-first": [EOB],
    "abort-first": [ABORT, HELO],
    "unknown-first": [pkt(b"U", b"XYZZY\x00")],
    "data-first": [DATA],
    "no-connect": [OPTNEG, HELO, MAIL, RCPT, HDR, EOH, BODY, EOB],
    "header-without-mail": [OPTNEG, CONN4, HELO, HDR, FLAG, EOH, BODY, EOB],
    "body-without-mail": [OPTNEG, CONN4, BODY, EOB],
    "rcpt-without-mail": [OPTNEG, CONN4, RCPT, EOB],
    "connect-twice": [OPTNEG, CONN4, CONN4, HELO, MAIL, RCPT, HDR, EOH, BODY, EOB],
    "negotiate-twice": [OPTNEG, CONN4, HELO, OPTNEG, HELO, MAIL, HDR, EOB],
    "negotiate-mid-message": [OPTNEG, CONN4, MAIL, HDR, OPTNEG, BODY, EOB],
    "empty-args": [OPTNEG, pkt(b"C"), pkt(b"H"), pkt(b"M"), pkt(b"R"), pkt(b"L"),
                   pkt(b"L", b"X-Spam-Flag\x00"), pkt(b"B"), EOB],
    "unterminated": [OPTNEG, pkt(b"C", b"host"), pkt(b"H", b"x" * 100),
                     pkt(b"M", b"<a@b>"), pkt(b"L", b"Subject"), EOB],
    "bad-family": [OPTNEG, pkt(b"C", b"h\x00" + b"9" + b"\x00\x19" + b"junk\x00"),
                   pkt(b"C", b"h\x00" + b"4" + b"\x00"), pkt(b"C", b"h\x00" + b"6" +
                   struct.pack(">H", 25) + b"not-an-ip\x00"), HELO, MAIL, EOB],
    "abort-then-body": [OPTNEG, CONN4, MAIL, HDR, ABORT, BODY, HDR, EOB],
    "eom-twice": [OPTNEG, CONN4, MAIL, RCPT, HDR, EOH, BODY, EOB, EOB, BODY],
    "macro-injection": [OPTNEG, CONN4, MACRO_I, MAIL, RCPT, HDR, EOH, EOB],
    "quit-then-more": [OPTNEG, CONN4, QUIT, HELO],
}

def run(port, name):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    # Everything at once, then read until the filter closes or falls
    # silent: libmilter handles the commands one by one all the same.
    try:
        s.sendall(b"".join(SEQ[name]))
        s.settimeout(0.3)
        while s.recv(65536):
            pass
    except OSError:
        pass  # the filter may close on a command it refuses: that is fine
    s.close()

# Runs each named sequence in turn and prints "NAME alive" or "NAME died";
# stops at the first death (the caller restarts the daemon).
port, pid = int(sys.argv[1]), int(sys.argv[2])
for name in sys.argv[3:]:
    run(port, name)
    # libmilter runs the callbacks in the connection's own thread: give a
    # crash there a moment to take the process down before looking.
    time.sleep(0.2 * int(os.environ.get("SIFT_TEST_TIME_FACTOR", "1")))
    try:
        # a dead daemon the shell has not reaped yet is a zombie
        with open("/proc/%d/stat" % pid) as fp:
            alive = fp.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        alive = False
    if not alive:
        print(name, "died", flush=True)
        break
    print(name, "alive", flush=True)
EOF

SEQS="helo-first mail-first rcpt-first header-first eoh-first body-first eom-first
	abort-first unknown-first data-first no-connect header-without-mail body-without-mail
	rcpt-without-mail connect-twice negotiate-twice negotiate-mid-message empty-args
	unterminated bad-family abort-then-body eom-twice macro-injection quit-then-more"
# shellcheck disable=SC2086 # the list is split on purpose
set -- $SEQS
while [ $# -gt 0 ]; do
	timeout 120 python3 "$D/send.py" "$PORT" "$PID" "$@" >"$D/send.out" 2>>"$D/send.err"
	[ -s "$D/send.out" ] || { fail "send.py ran no sequence (see $D/send.err)"; break; }
	while read -r seq state; do
		shift
		if [ "$state" = alive ]; then
			pass "$seq: daemon still running"
		else
			fail "$seq: the daemon died"
			it_untrack "$PID"
			start
		fi
	done <"$D/send.out"
done

"$MC" -s "inet:$PORT@127.0.0.1" -t 10000 -i 192.0.2.10 -Q proto --tsv "$DATA/ham.eml" \
	>"$D/ham.tsv" 2>"$D/ham.err"
check "after the sequences: a normal session still gets a verdict" \
	grep -q "X-Spam-Status: No, score=" "$D/ham.tsv"
check "no sanitizer or fatal report in the log" \
	sh -c "! grep -E -q 'AddressSanitizer|runtime error|Segmentation' '$LOG'"

# The queue id macro of "macro-injection" carried ESC: logged escaped.
check "a control character in the queue id macro is logged escaped" \
	grep -q 'queue_id="Q\\x1b\[31mID" ' "$LOG"
check "no raw control character in the log" \
	sh -c "! LC_ALL=C grep -q '[[:cntrl:]]' '$LOG'"
check "log_level = info: no debug lines" sh -c "! grep -q '\[debug\]' '$LOG'"
check "log_level = info: no timings line" sh -c "! grep -q ': timings ' '$LOG'"
kill "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
it_untrack "$PID"

# --- log_level = debug: the session's stages and macros are logged
sed 's/^log_level = info/log_level = debug/' "$D/sift.conf" >"$D/debug.conf"
DPORT=$(free_port)
DLOG=$D/debug.log
"$MILTER" -f -c "$D/debug.conf" -d "$D/state" -p "inet:$DPORT@127.0.0.1" 2>>"$DLOG" &
DPID=$!
it_track "$DPID"
if wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$DPORT" 2>/dev/null; then
	"$MC" -s "inet:$DPORT@127.0.0.1" -t 10000 -i 192.0.2.11 -N mail.example.org \
		-H helo.example.org -f sender@example.org -a authuser -Q dbg -q "$DATA/ham.eml" \
		2>"$D/dbg.err"
	check "debug: connect with client name and address" \
		grep -q '\[debug\]: connect from mail.example.org \[192.0.2.11\]' "$DLOG"
	check "debug: HELO" grep -q '\[debug\]: helo helo.example.org' "$DLOG"
	check "debug: MAIL FROM with the queue id and auth macros" \
		grep -q '\[debug\]: dbg00000000: mail from=<sender@example.org> .*auth=authuser' "$DLOG"
	check "debug: RCPT" grep -q '\[debug\]: dbg00000000: rcpt to=' "$DLOG"
	check "debug: the verdict line is still there" grep -q 'queue_id=dbg00000000 ' "$DLOG"
	check "debug: each source's time and status for the message" \
		grep -E -q '\[debug\]: dbg00000000: timings( [a-z]+=[0-9]+\.[0-9]{2}ms(\((degraded|error)\))?)+ total=' "$DLOG"
	# in the order the sources ran (rules after auth), so any position
	check "debug: the rules' time among them" \
		grep -E -q '\[debug\]: dbg00000000: timings.* rules=[0-9]+\.[0-9]{2}ms.* total=' "$DLOG"
else
	fail "debug: sift-milter did not listen on port $DPORT within 10 s"
fi
kill "$DPID" 2>/dev/null
wait "$DPID" 2>/dev/null
it_untrack "$DPID"
# --- log_format = json, and a hostile HELO in both formats: one parseable line
{ cat "$D/sift.conf"; echo "log_format = json"; } >"$D/json.conf"
JPORT=$(free_port)
JLOG=$D/json.log
HOSTILE=$(printf 'evil"\\ \033[31m queue_id=forged\001\377\303\251')
"$MILTER" -f -c "$D/json.conf" -d "$D/state" -p "inet:$JPORT@127.0.0.1" 2>>"$JLOG" &
JPID=$!
it_track "$JPID"
if wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$JPORT" 2>/dev/null; then
	"$MC" -s "inet:$JPORT@127.0.0.1" -t 10000 -i 192.0.2.12 -N mail.example.org \
		-H "$HOSTILE" -f sender@example.org -Q json -q "$DATA/ham.eml" 2>"$D/json.err"
	wait_for 5 grep -q '"queue_id":"json00000000"' "$JLOG"
	check "json: the message line is one JSON object with the fields, HELO intact" \
		python3 -c '
import json, sys
lines = [l.split("]: ", 1)[1] for l in open(sys.argv[1], encoding="ascii") if "]: {" in l]
assert len(lines) == 1, lines
o = json.loads(lines[0])
assert o["queue_id"] == "json00000000" and o["ip"] == "192.0.2.12", o
assert o["helo"] == sys.argv[2].encode("utf-8", "surrogateescape")[:-3].decode() + "\ufffd\u00e9", o
assert o["client"] == "mail.example.org" and o["action"] == "accept", o
assert isinstance(o["score"], float) and isinstance(o["rules"], list), o
assert "rules" in o["t"] and o["degraded"] == [] and o["failed"] == [], o
assert o["size"] > 0 and o["ms"] >= 0, o
' "$JLOG" "$HOSTILE"
	check "json: no raw control character in the log" \
		sh -c "! LC_ALL=C grep -q '[[:cntrl:]]' '$JLOG'"
else
	fail "json: sift-milter did not listen on port $JPORT within 10 s"
fi
kill "$JPID" 2>/dev/null
wait "$JPID" 2>/dev/null
it_untrack "$JPID"
# The kvh line with its quoted values taken out: what a kv parser sees as keys.
kv_forged_only_quoted() {
	_l=$(grep 'queue_id=kvh00000000 ' "$KLOG" | sed 's/"\([^"\\]\|\\.\)*"//g')
	case $_l in *" helo= client="*) ;; *) return 1 ;; esac
	case $_l in *forged*) return 1 ;; esac
}
KPORT=$(free_port)
KLOG=$D/kvhelo.log
"$MILTER" -f -c "$D/sift.conf" -d "$D/state" -p "inet:$KPORT@127.0.0.1" 2>>"$KLOG" &
KPID=$!
it_track "$KPID"
if wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$KPORT" 2>/dev/null; then
	"$MC" -s "inet:$KPORT@127.0.0.1" -t 10000 -i 192.0.2.13 -H "$HOSTILE" \
		-f sender@example.org -Q kvh -q "$DATA/ham.eml" 2>"$D/kvh.err"
	wait_for 5 grep -q 'queue_id=kvh00000000 ' "$KLOG"
	check "kv: a hostile HELO is one quoted, escaped value" \
		grep -q -F ' helo="evil\"\\ \x1b[31m queue_id=forged\x01\xff\xc3\xa9" client=' "$KLOG"
	check "kv: the forged key is only inside the quoted value" kv_forged_only_quoted
else
	fail "kv: sift-milter did not listen on port $KPORT within 10 s"
fi
kill "$KPID" 2>/dev/null
wait "$KPID" 2>/dev/null
it_untrack "$KPID"
if [ "$IT_FAILS" -ne 0 ]; then
	echo "--- daemon log" >&2
	tail -30 "$LOG" >&2
fi
it_done
