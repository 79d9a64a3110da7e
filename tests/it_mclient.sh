#!/bin/sh
# it_mclient.sh - sift-mclient against a real libmilter filter (null-milter):
# negotiation, macros, CRLF body chunks, every reply kind the tests of the
# daemon rely on, several messages and an abort on one connection, filters
# that negotiate "no reply" or skip the body, concurrency and failures.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MC=$top_builddir/sift-mclient
NM=$top_builddir/contrib/bench/null-milter
it_need "$MC" "$NM"

D=$IT_TMP
printf 'From: a@example.org\nTo: d@example.net\nSubject: hello\n  folded\nX-Other: x\n\nbody line 1\nbody line 2\n' >"$D/small.eml"
# 3000 lines of 99 characters + LF: 300000 bytes, 303000 once CRLF.
awk 'BEGIN { for (i = 0; i < 3000; i++) printf "%099d\n", i }' >"$D/body.txt"
{ printf 'Subject: big\n\n'; cat "$D/body.txt"; } >"$D/big.eml"
printf 'this is not a header\nnor this\n' >"$D/noheader.eml"
mkdir "$D/dir" "$D/dir/sub"
cp "$D/small.eml" "$D/dir/a.eml"
cp "$D/small.eml" "$D/dir/sub/b.eml"
cp "$D/small.eml" "$D/dir/ignored.txt"

NM_PID=""
# start_nm ARGS...: a fresh null-milter on its own socket; sets SOCK.
start_nm() {
	stop_nm
	SOCK=$D/nm.$$.$#.sock
	rm -f "$SOCK"
	"$NM" -p "unix:$SOCK" -t 5 "$@" >"$D/nm.log" 2>&1 &
	NM_PID=$!
	it_track "$NM_PID"
	if ! wait_for 10 test -S "$SOCK"; then
		fail "null-milter $* did not open its socket in 10 s"
		cat "$D/nm.log" >&2
		it_done
	fi
}
stop_nm() {
	[ -n "$NM_PID" ] || return 0
	kill "$NM_PID" 2>/dev/null
	wait "$NM_PID" 2>/dev/null
	it_untrack "$NM_PID"
	NM_PID=""
}

# mc NAME ARGS...: runs sift-mclient with --tsv; output in $D/NAME.tsv/.err.
mc() {
	_n=$1
	shift
	"$MC" -s "unix:$SOCK" -t 3000 --tsv "$@" >"$D/$_n.tsv" 2>"$D/$_n.err"
	echo $? >"$D/$_n.rc"
}
rc_of() { cat "$D/$1.rc"; }
contains() { grep -q -e "$2" "$D/$1" || { echo "  '$2' not in $1:" >&2; cat "$D/$1" >&2; return 1; }; }

# --- accept, headers added, envelope macros, header and body counts
start_nm -c
mc small -i 192.0.2.7 -N mx.example.org -H helo.example.org -f s@example.org \
	-r r1@example.net -r r2@example.net -Q TEST "$D/small.eml"
check "accept: exit 0" [ "$(rc_of small)" = 0 ]
check "accept: action" [ "$(tsv_field "$D/small.tsv" small.eml 2)" = accept ]
check "accept: 4 headers (fold kept in one), CRLF body 26 bytes, 2 rcpts" \
	contains small.tsv "X-Null-Count: messages=1 aborts=0 headers=4 body=26 chunks=1 rcpts=2"
check "accept: macros i, MAIL argument, CONNECT address and name, HELO" \
	contains small.tsv "from=<s@example.org> qid=TEST00000000 client=mx.example.org/192.0.2.7 helo=helo.example.org"
check "accept: mods column lists both adds in order" \
	contains small.tsv "	add X-Null-Count: [^;]*;add X-Null-Env: "
check "accept: summary line" contains small.err "messages=1 errors=0 "

# --- a body over several chunks of at most 65535 bytes
mc big "$D/big.eml"
check "big body: all 303000 bytes in 5 chunks" contains big.tsv "body=303000 chunks=5 "

# --- a file without a header block is all body
mc nohdr "$D/noheader.eml"
check "no header block: 0 headers, body with CRLF" contains nohdr.tsv "headers=0 body=32 "

# --- several messages per connection, and an aborted transaction first
mc multi --per-conn 3 -n 3 --abort-first "$D/small.eml"
check "per-conn: aborted row first" [ "$(awk -F'\t' 'NR==2 {print $2}' "$D/multi.tsv")" = aborted ]
check "per-conn: third message on the same connection, after one abort" \
	contains multi.tsv "messages=2 aborts=1 "
check "per-conn: 3 messages counted, one aborted" contains multi.err "messages=3 errors=0 .* aborted=1"

# --- directories: recursive, sorted, filtered by -e
mc dir -e .eml "$D/dir"
check "directory walk finds a.eml and sub/b.eml only" \
	[ "$(grep -v '^#' "$D/dir.tsv" | cut -f1 | sed 's|.*/dir/||' | tr '\n' ' ')" = "a.eml sub/b.eml " ]

# --- concurrency
mc conc -j 4 -n 25 --per-conn 5 "$D/small.eml" "$D/big.eml"
check "concurrency: 50 messages, no errors" contains conc.err "messages=50 errors=0 "
check "concurrency: 50 rows" [ "$(grep -vc '^#' "$D/conc.tsv")" = 50 ]
stop_nm

# --- reject with the filter's reply code
start_nm -r
mc rej "$D/small.eml"
check "reject: action" [ "$(tsv_field "$D/rej.tsv" small.eml 2)" = reject ]
check "reject: reply text" [ "$(tsv_field "$D/rej.tsv" small.eml 3)" = "550 5.7.1 null says no" ]
stop_nm

# --- quarantine and header deletion (chgheader with an empty value)
start_nm -q -d
mc quar "$D/small.eml"
check "quarantine: action" [ "$(tsv_field "$D/quar.tsv" small.eml 2)" = quarantine ]
check "chgheader: Subject index 1 deleted" contains quar.tsv "chg\[1\] Subject: ;quarantine null quarantine"
stop_nm

# --- a filter that negotiates no replies before end of message
start_nm -c -n
mc nr --per-conn 2 -n 2 "$D/small.eml"
check "no-reply stages: not waited for, both messages complete" \
	contains nr.err "messages=2 errors=0 "
check "no-reply stages: second message counted" contains nr.tsv "messages=2 aborts=0 headers=4 body=26"
stop_nm

# --- a filter that skips the rest of the body
start_nm -c -s
mc skip "$D/big.eml"
check "skip: body stops after the first chunk" contains skip.tsv "body=6553[0-9] chunks=1 "
stop_nm

# --- failures are reported, not hung on
SOCK=$D/nobody.sock
mc down "$D/small.eml"
check "no filter: exit 1" [ "$(rc_of down)" = 1 ]
check "no filter: error row" [ "$(tsv_field "$D/down.tsv" small.eml 2)" = error ]
check "no filter: counted as an error" contains down.err "errors=1 "
"$MC" -s "unix:$D/x" >/dev/null 2>&1
check "usage error without files: exit 2" [ $? = 2 ]

# --- misbehaving filters (no real filter behaves so; a few lines of Python
# play them): silence must cost one timeout, garbage a protocol error.
cat >"$D/bad_filter.py" <<'PYEOF'
import socket, struct, sys, time
mode, path = sys.argv[1], sys.argv[2]
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(4)
while True:
    c, _ = srv.accept()
    c.recv(4096)  # the OPTNEG
    if mode == "silent":
        time.sleep(30)
    elif mode == "hugelen":
        c.sendall(struct.pack(">I", 0x7fffffff) + b"O")
    elif mode == "actions":
        c.sendall(struct.pack(">IcIII", 13, b"O", 6, 0xffffffff, 0))
    elif mode == "earlymod":  # a header change in answer to CONNECT
        c.sendall(struct.pack(">IcIII", 13, b"O", 6, 1, 0))
        c.sendall(struct.pack(">Ic", 5, b"h") + b"X\0y\0")
        time.sleep(2)  # let the client write CONNECT and read the answer
    c.close()
PYEOF
for mode in silent hugelen actions earlymod; do
	SOCK=$D/bad-$mode.sock
	python3 "$D/bad_filter.py" $mode "$SOCK" &
	BF_PID=$!
	it_track "$BF_PID"
	wait_for 10 test -S "$SOCK" || fail "bad filter $mode did not start"
	T0=$(date +%s)
	"$MC" -s "unix:$SOCK" -t 500 --tsv "$D/small.eml" >"$D/bad-$mode.tsv" 2>"$D/bad-$mode.err"
	RC=$?
	T1=$(date +%s)
	kill "$BF_PID"
	wait "$BF_PID" 2>/dev/null
	it_untrack "$BF_PID"
	check "$mode filter: exit 1 within 5 s" [ "$RC" = 1 -a $((T1 - T0)) -lt 5 ]
	case $mode in
	silent) want="timeout after 500 ms" ;;
	hugelen) want="protocol error: reply length" ;;
	actions) want="protocol error: filter wants actions" ;;
	earlymod) want="protocol error: modification 'h' in answer to 'C'" ;;
	esac
	check "$mode filter: error says '$want'" contains "bad-$mode.tsv" "$want"
done

it_done
