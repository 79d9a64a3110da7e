#!/bin/sh
# it_pidfile.sh - sift-milter's pid file: links at its names are not
# followed; a stale one (left by a killed daemon) does not stop a start; when a second instance has taken over the
# pid file (and the socket, which libmilter hands over), the first one,
# stopping, leaves the second's pid file in place; an instance stopping
# removes its own, the one it wrote at start even after a reload named
# another pid_file.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MILTER=$top_builddir/sift-milter
it_need "$MILTER" "$top_builddir/sift-mclient"

D=$IT_TMP
mkdir "$D/rules" "$D/state"
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/rules/"
PIDF=$D/state/sift-milter.pid
printf 'log = stderr\nrules = %s\nbayes_enable = no\npid_file = %s\n' "$D/rules" "$PIDF" \
	>"$D/sift.conf"
SOCK=$D/s.sock

# start NAME: a foreground instance on $SOCK; sets PID once its pid file names it.
start() {
	"$MILTER" -f -c "$D/sift.conf" -d "$D/state" -p "unix:$SOCK" 2>>"$D/$1.log" &
	PID=$!
	it_track "$PID"
	wait_for 10 sh -c "[ \"\$(cat '$PIDF' 2>/dev/null)\" = $PID ]" && return 0
	fail "$1: the pid file did not name $PID within 10 s"
	cat "$D/$1.log" >&2
	it_done
}
# stop PID: SIGTERM, then its exit status.
stop() {
	kill "$1"
	wait "$1"
	_rc=$?
	it_untrack "$1"
	return $_rc
}

# --- links at the pid file's names are replaced, never written through: the
# state directory belongs to the daemon's user, and the pid file is written
# as root (a link at the temporary name had root truncate and write its target)
echo precious >"$D/victim1"
echo precious >"$D/victim2"
ln -s "$D/victim1" "$PIDF.tmp"
ln -s "$D/victim2" "$PIDF"
start links
check "a link at the pid file's temporary name: its target is left alone" \
	[ "$(cat "$D/victim1")" = precious ]
check "a link at the pid file: its target is left alone" [ "$(cat "$D/victim2")" = precious ]
check "the pid file is a file of its own" sh -c "[ -f '$PIDF' ] && [ ! -L '$PIDF' ]"
stop "$PID"

# --- a stale pid file, naming no process, is replaced
# (a child that ends by itself: one killed before its exec would run this
# shell's traps, and their cleanup, in the child)
/bin/true &
DEAD=$!
wait "$DEAD"
echo "$DEAD" >"$PIDF"
start stale
check "a stale pid file does not stop the start; it now names the daemon" \
	[ "$(cat "$PIDF")" = "$PID" ]
stop "$PID"
check "an instance stopping removes its own pid file" test ! -e "$PIDF"

# --- a second instance takes over: the first, stopping, keeps the second's pid file
start a
A=$PID
start b
B=$PID
check "the second instance's pid is in the pid file" [ "$(cat "$PIDF")" = "$B" ]
stop "$A"
check "the first instance stopped cleanly" [ $? -eq 0 ]
check "after it stopped, the pid file still names the running second one" \
	[ "$(cat "$PIDF" 2>/dev/null)" = "$B" ]
timeout 30 "$top_builddir/sift-mclient" -s "unix:$SOCK" --tsv \
	"$top_srcdir/tests/data/milter/spam.eml" >"$D/b.tsv" 2>&1
check "and the second one takes mail" \
	grep -q "^[^#].*	\(accept\|reject\|tempfail\|quarantine\)	" "$D/b.tsv"
stop "$B"
check "the second one, stopping, removes its pid file" test ! -e "$PIDF"

# --- a reload that names another pid_file: the stop still removes the one written
start c
C=$PID
sed "s|^pid_file = .*|pid_file = $D/state/other.pid|" "$D/sift.conf" >"$D/sift.conf.new"
mv "$D/sift.conf.new" "$D/sift.conf"
kill -HUP "$C"
check "the reload is applied" wait_for 5 grep -q "configuration reloaded" "$D/c.log"
check "and warns that the new pid_file waits for a restart" \
	grep -q "pid_file changed to $D/state/other.pid: takes effect at restart" "$D/c.log"
stop "$C"
check "after the stop, no pid file naming the stopped daemon is left" \
	sh -c "! grep -qx '$C' '$PIDF' '$D/state/other.pid' 2>/dev/null"
it_done
