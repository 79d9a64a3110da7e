#!/bin/sh
# it_logsink.sh - log = stderr in a daemon (no -f): its standard error is
# /dev/null once it detaches, so the start must say that nothing will be
# logged; in the foreground the same setting logs to standard error.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MILTER=$top_builddir/sift-milter
it_need "$MILTER"

D=$IT_TMP
mkdir "$D/rules" "$D/state"
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/rules/"
printf 'log = stderr\nrules = %s\nbayes_enable = no\n' "$D/rules" >"$D/sift.conf"
PIDF=$D/state/sift-milter.pid

timeout 30 "$MILTER" -c "$D/sift.conf" -d "$D/state" -p "unix:$D/s.sock" >"$D/d.out" 2>&1
check "the daemon starts (exit $?)" [ -s "$PIDF" ]
PID=$(cat "$PIDF" 2>/dev/null)
[ -n "$PID" ] && it_track "$PID"
check "and warns that log = stderr logs nothing in a daemon" \
	grep -q "log = stderr without -f" "$D/d.out" || cat "$D/d.out" >&2
[ -n "$PID" ] && kill "$PID"
wait_for 10 sh -c "! kill -0 $PID 2>/dev/null"

rm -f "$D/s.sock"
"$MILTER" -f -c "$D/sift.conf" -d "$D/state" -p "unix:$D/s.sock" 2>"$D/f.out" &
FP=$!
it_track "$FP"
check "in the foreground it logs to standard error" wait_for 10 grep -q "listening on" "$D/f.out"
check "without that warning" sh -c "! grep -q 'log = stderr without -f' '$D/f.out'"
kill "$FP"
wait "$FP"
it_untrack "$FP"
it_done
