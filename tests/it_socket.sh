#!/bin/sh
# it_socket.sh - sift-milter's socket setting: specs libmilter would misread
# (Postfix's inet:HOST:PORT, a missing host, a bad port) are refused at
# start with an error that names the right form, and nothing is bound; an
# inet socket binds the address it names and the log says what was bound;
# a unix socket gets socket_mode and socket_group. `sift lint` refuses the
# same specs at their file:line.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MILTER=$top_builddir/sift-milter
it_need "$MILTER" "$top_builddir/sift" "$top_builddir/sift-mclient"

D=$IT_TMP
mkdir "$D/rules"
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/rules/"
printf 'log = stderr\nrules = %s\n' "$D/rules" >"$D/sift.conf"

# refused NAME SPEC EXPECTED: the daemon exits non-zero at once, saying EXPECTED.
refused() {
	timeout 10 "$MILTER" -f -c "$D/sift.conf" -d "$D/state-$1" -p "$2" >"$D/$1.out" 2>&1
	_rc=$?
	check "$1: '$2' refused (exit $_rc)" [ "$_rc" != 0 -a "$_rc" != 124 ]
	check "$1: the error says: $3" grep -q -F -e "$3" "$D/$1.out" ||
		cat "$D/$1.out" >&2
}

PORT=$(free_port)
refused postfix "inet:127.0.0.1:$PORT" \
	"is in Postfix's notation; sift-milter takes libmilter's: inet:$PORT@127.0.0.1"
check "postfix: nothing listens on port 127" sh -c "! ss -ltnH 'sport = :127' | grep -q ."
check "postfix: nothing listens on port $PORT" sh -c "! ss -ltnH 'sport = :$PORT' | grep -q ."
refused postfix6 "inet:[::1]:$PORT" "sift-milter takes libmilter's: inet6:$PORT@::1"
refused nohost "inet:$PORT" "names no host; write inet:$PORT@127.0.0.1 for loopback"
refused port0 "inet:0@127.0.0.1" "the port must be a number from 1 to 65535"
refused port_big "inet:65536@127.0.0.1" "the port must be a number from 1 to 65535"
refused port_sign "inet:+25@127.0.0.1" "the port must be a number from 1 to 65535"
refused port_name "inet:smtp@127.0.0.1" "the port must be a number from 1 to 65535"
refused badhost "inet:$PORT@127.0.0.1:25" "is neither an IPv4 address nor a host name"
refused badip "inet:$PORT@127.0.0.256" "is neither an IPv4 address nor a host name"
refused v6_in_inet "inet:$PORT@::1" "an IPv6 address needs inet6:$PORT@::1"
refused relative "unix:sift.sock" "the unix socket's path must be absolute"
refused unknown "tcp:$PORT@127.0.0.1" "expected unix:/path"
printf 'log = stderr\nrules = %s\nsocket = inet:127.0.0.1:%s\n' "$D/rules" "$PORT" >"$D/pf.conf"
timeout 10 "$MILTER" -f -c "$D/pf.conf" -d "$D/state-pf" >"$D/pf.out" 2>&1
check "postfix notation in sift.conf: refused too" [ $? = 1 ]
check "postfix notation in sift.conf: the right form named" \
	grep -q -F "inet:$PORT@127.0.0.1" "$D/pf.out"
# `sift lint` reads the settings as the daemon does: the same error, at the key's line.
"$top_builddir/sift" -c "$D/pf.conf" -d "$D/state-lint" lint >"$D/lint.out" 2>&1
check "postfix notation: sift lint fails" [ $? = 1 ]
check "postfix notation: sift lint names file:line and the right form" grep -q -F \
	"$D/pf.conf:3: socket 'inet:127.0.0.1:$PORT' is in Postfix's notation; sift-milter takes libmilter's: inet:$PORT@127.0.0.1" \
	"$D/lint.out"

# --- inet:PORT@127.0.0.1 binds 127.0.0.1 only, and says so
"$MILTER" -f -c "$D/sift.conf" -d "$D/state-inet" -p "inet:$PORT@127.0.0.1" 2>"$D/inet.log" &
PID=$!
it_track "$PID"
if wait_for 10 sh -c "ss -ltnH 'sport = :$PORT' | grep -q ." 2>/dev/null; then
	check "inet: bound to 127.0.0.1:$PORT" \
		sh -c "ss -ltnH 'sport = :$PORT' | awk '{print \$4}' | grep -qx '127.0.0.1:$PORT'"
	check "inet: and nothing else on that port" \
		[ "$(ss -ltnH "sport = :$PORT" | wc -l)" = 1 ]
	check "inet: the log names the bound address" \
		wait_for 5 grep -q "listening on 127.0.0.1:$PORT\$" "$D/inet.log"
else
	fail "inet: sift-milter did not listen on port $PORT within 10 s"
	cat "$D/inet.log" >&2
fi
kill "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
it_untrack "$PID"

# --- a unix socket: the default mode 0660, or socket_mode and socket_group
SOCK=$D/default.sock
"$MILTER" -f -c "$D/sift.conf" -d "$D/state-u1" -p "unix:$SOCK" 2>"$D/u1.log" &
PID=$!
it_track "$PID"
if wait_for 10 test -S "$SOCK"; then
	check "unix: default mode 660 ($(stat -c %a "$SOCK"))" [ "$(stat -c %a "$SOCK")" = 660 ]
	check "unix: the log names the socket" wait_for 5 grep -q "listening on unix:$SOCK\$" "$D/u1.log"
else
	fail "unix: sift-milter did not create $SOCK within 10 s"
	cat "$D/u1.log" >&2
fi
kill "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
it_untrack "$PID"

# --- a second instance on the same path takes it over (libmilter replaces
# the file); the first one, stopping, must not remove the second's socket
SOCK=$D/shared.sock
"$MILTER" -f -c "$D/sift.conf" -d "$D/state-a" -p "unix:$SOCK" 2>"$D/a.log" &
PA=$!
it_track "$PA"
wait_for 10 grep -q "listening on" "$D/a.log" ||
	{ fail "first instance did not start"; cat "$D/a.log" >&2; }
"$MILTER" -f -c "$D/sift.conf" -d "$D/state-b" -p "unix:$SOCK" 2>"$D/b.log" &
PB=$!
it_track "$PB"
wait_for 10 grep -q "listening on" "$D/b.log" ||
	{ fail "second instance did not start"; cat "$D/b.log" >&2; }
kill "$PA" 2>/dev/null
wait "$PA" 2>/dev/null
it_untrack "$PA"
check "after the first instance stopped, the second's socket is there" test -S "$SOCK"
check "and the second instance takes mail through it" \
	"$top_builddir/sift-mclient" -s "unix:$SOCK" -t 10000 -q "$top_srcdir/tests/data/milter/ham.eml"
kill "$PB" 2>/dev/null
wait "$PB" 2>/dev/null
it_untrack "$PB"
check "an instance stopping removes its own socket" test ! -e "$SOCK"

GROUP=""
if [ "$(id -u)" = 0 ]; then
	for g in postfix nogroup mail; do
		getent group "$g" >/dev/null 2>&1 && { GROUP=$g; break; }
	done
fi
[ -n "$GROUP" ] || GROUP=$(id -gn)
SOCK=$D/set.sock
printf 'log = stderr\nrules = %s\nsocket = unix:%s\nsocket_mode = 0620\nsocket_group = %s\n' \
	"$D/rules" "$SOCK" "$GROUP" >"$D/set.conf"
"$MILTER" -f -c "$D/set.conf" -d "$D/state-u2" 2>"$D/u2.log" &
PID=$!
it_track "$PID"
if wait_for 10 test -S "$SOCK"; then
	check "unix: socket_mode 0620 applied ($(stat -c %a "$SOCK"))" [ "$(stat -c %a "$SOCK")" = 620 ]
	check "unix: socket_group $GROUP applied ($(stat -c %G "$SOCK"))" \
		[ "$(stat -c %G "$SOCK")" = "$GROUP" ]
else
	fail "unix: sift-milter did not create $SOCK within 10 s"
	cat "$D/u2.log" >&2
fi
kill "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
it_untrack "$PID"

# --- user = nobody with socket_group: the socket keeps the group
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1 && [ "$GROUP" != "$(id -gn nobody)" ]; then
	SOCK=$D/drop.sock
	# The stores are opened after the switch: nobody must reach its state dir.
	chmod 711 "$D"
	printf 'log = stderr\nrules = %s\nsocket = unix:%s\nsocket_group = %s\nuser = nobody\n' \
		"$D/rules" "$SOCK" "$GROUP" >"$D/drop.conf"
	"$MILTER" -f -c "$D/drop.conf" -d "$D/state-u3" 2>"$D/u3.log" &
	PID=$!
	it_track "$PID"
	if wait_for 10 grep -q "listening on" "$D/u3.log"; then
		check "user: the socket is nobody's, group $GROUP ($(stat -c %U:%G "$SOCK"))" \
			[ "$(stat -c %U:%G "$SOCK")" = "nobody:$GROUP" ]
	else
		fail "user: sift-milter did not start as nobody"
		cat "$D/u3.log" >&2
	fi
	kill "$PID" 2>/dev/null
	wait "$PID" 2>/dev/null
	it_untrack "$PID"
fi

# --- Postfix's user can connect to a socket given socket_group = postfix
# (the system's python3: a python under root's home is out of postfix's reach)
if [ "$(id -u)" = 0 ] && id postfix >/dev/null 2>&1 && command -v setpriv >/dev/null &&
	[ -x /usr/bin/python3 ]; then
	mkdir "$D/pub"
	chmod 755 "$D" "$D/pub" # the socket's directory must be reachable
	SOCK=$D/pub/pf.sock
	printf 'log = stderr\nrules = %s\nsocket = unix:%s\nsocket_group = postfix\n' \
		"$D/rules" "$SOCK" >"$D/pfuser.conf"
	"$MILTER" -f -c "$D/pfuser.conf" -d "$D/state-u4" 2>"$D/u4.log" &
	PID=$!
	it_track "$PID"
	if wait_for 10 test -S "$SOCK"; then
		check "postfix user: connects to the socket (group postfix, mode 660)" \
			setpriv --reuid=postfix --regid=postfix --init-groups /usr/bin/python3 -c \
			"import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])" "$SOCK"
	else
		fail "postfix user: sift-milter did not create $SOCK within 10 s"
		cat "$D/u4.log" >&2
	fi
	kill "$PID" 2>/dev/null
	wait "$PID" 2>/dev/null
	it_untrack "$PID"
fi

# --- user = nobody with a state_dir anyone can write to: refused, nothing handed over
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
	mkdir -m 1777 "$D/shared"
	echo theirs >"$D/shared/someone-elses"
	printf 'log = stderr\nrules = %s\nuser = nobody\n' "$D/rules" >"$D/shared.conf"
	timeout 20 "$MILTER" -f -c "$D/shared.conf" -d "$D/shared" -p "unix:$D/shared.sock" \
		>"$D/shared.out" 2>&1
	check "user with a state_dir writable by everyone: refused (exit $?)" [ $? = 1 ]
	check "and said why" grep -q "state_dir $D/shared is writable by everyone" "$D/shared.out" ||
		cat "$D/shared.out" >&2
	check "a file in it is not handed to nobody ($(stat -c %U "$D/shared/someone-elses"))" \
		[ "$(stat -c %U "$D/shared/someone-elses")" = root ]
	check "the failed start leaves no socket file behind" test ! -e "$D/shared.sock"
fi

# --- a pid file that cannot be written: exit 1, and no socket file left behind
printf 'log = stderr\nrules = %s\npid_file = %s/no/such/dir/x.pid\n' "$D/rules" "$D" \
	>"$D/nopid.conf"
timeout 20 "$MILTER" -f -c "$D/nopid.conf" -d "$D/state-np" -p "unix:$D/nopid.sock" \
	>"$D/nopid.out" 2>&1
check "an unwritable pid file: refused (exit $?)" [ $? = 1 ]
check "and the socket file it had made is removed" test ! -e "$D/nopid.sock"

printf 'log = stderr\nrules = %s\nsocket_mode = 0999\n' "$D/rules" >"$D/badmode.conf"
timeout 10 "$MILTER" -f -c "$D/badmode.conf" -d "$D/state-bm" -p "unix:$D/bm.sock" \
	>"$D/badmode.out" 2>&1
check "a bad socket_mode is refused" [ $? = 1 ]
check "with the file and the key" grep -q "badmode.conf.*socket_mode: expected an octal mode" \
	"$D/badmode.out"

it_done
