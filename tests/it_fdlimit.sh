#!/bin/sh
# it_fdlimit.sh - sift-milter out of file descriptors (ulimit -n): while
# connections are held open and accept() fails with EMFILE, the listener
# must not spin on the CPU (libmilter retries such a failure at once) and
# must say once why new connections wait; once the connections close, new
# mail is scored again.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MILTER=$top_builddir/sift-milter
it_need "$MILTER" "$top_builddir/sift-mclient"
command -v python3 >/dev/null || skip_all "python3 is needed to hold connections"

D=$IT_TMP
mkdir "$D/rules"
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/rules/"
printf 'log = stderr\nrules = %s\nbayes_enable = no\n' "$D/rules" >"$D/sift.conf"
SOCK=$D/s.sock

# hold.py SOCK N SECONDS: opens N milter sessions (each negotiated when the
# daemon accepts it) and holds them, then closes them all.
cat >"$D/hold.py" <<'PY'
import socket, struct, sys, time
path, n, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
opt = struct.pack('>I', 13) + b'O' + struct.pack('>III', 6, 0x1ff, 0x1fffff)
held = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    s.sendall(opt)
    held.append(s)
print("held", len(held), flush=True)
time.sleep(secs)
for s in held:
    s.close()
PY

( ulimit -n 48 && exec "$MILTER" -f -c "$D/sift.conf" -d "$D/state" -p "unix:$SOCK" ) 2>>"$D/m.log" &
MP=$!
it_track "$MP"
wait_for 10 test -S "$SOCK" || { fail "sift-milter did not open $SOCK"; cat "$D/m.log" >&2; it_done; }

# CPU ticks (user + system, 1/CLK_TCK s) the daemon has used.
ticks() { awk '{print $14 + $15}' "/proc/$MP/stat"; }

timeout 60 python3 "$D/hold.py" "$SOCK" 120 6 >"$D/hold.out" 2>&1 &
HP=$!
it_track "$HP"
check "the client holds 120 connections" wait_for 10 grep -q "^held 120" "$D/hold.out"
sleep 0.5
T0=$(ticks)
sleep 3
T1=$(ticks)
HZ=$(getconf CLK_TCK)
# 3 s of wall time: a spinning listener takes about 3 * HZ ticks.
check "out of descriptors, the daemon does not spin ($((T1 - T0)) ticks of $((3 * HZ)) in 3 s)" \
	[ $((T1 - T0)) -lt $((3 * HZ / 10)) ]
check "and the log says why connections wait" \
	grep -q "cannot accept a connection: Too many open files (open files limit 48)" "$D/m.log"
check "said once, not per attempt ($(grep -c 'cannot accept' "$D/m.log"))" \
	[ "$(grep -c 'cannot accept' "$D/m.log")" -eq 1 ]
wait "$HP"
it_untrack "$HP"

timeout 30 "$top_builddir/sift-mclient" -s "unix:$SOCK" --tsv \
	"$top_srcdir/tests/data/milter/spam.eml" >"$D/after.tsv" 2>&1
check "once the connections closed, a message is scored again" \
	grep -q "^[^#].*	\(accept\|reject\|tempfail\|quarantine\)	" "$D/after.tsv" ||
	cat "$D/after.tsv" >&2
kill "$MP"
wait "$MP"
check "the daemon stops cleanly" [ $? -eq 0 ]
it_untrack "$MP"
it_done
