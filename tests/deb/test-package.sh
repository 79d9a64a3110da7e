#!/bin/sh
# test-package.sh - builds the Debian package from a clean copy of the tree,
# installs it with apt, checks the user, directories, conffile and unit,
# starts sift-milter as its systemd unit would (no systemd needed), scores a
# message through the packaged socket with sift-mclient, reloads it, and
# purges the package. Root only (it installs a package): skips otherwise.
# Run by contrib/run-tests.sh after the other suites; top_builddir must hold
# a built sift-mclient.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/it_lib.sh"

[ "$(id -u)" = 0 ] || skip_all "not root: installing a package needs root"
if dpkg-query -W -f='${Status}' sift 2>/dev/null | grep -q "ok installed"; then
	skip_all "a sift package is already installed here; it is left alone"
fi
MC=$top_builddir/sift-mclient
it_need "$MC"
for t in dpkg-buildpackage apt-get lintian systemd-analyze setpriv; do
	command -v "$t" >/dev/null || { echo "FAIL: $t missing (contrib/install-deps.sh --test)" >&2; exit 1; }
done

D=$IT_TMP
UNIT=/lib/systemd/system/sift-milter.service
CONF=/etc/sift/sift.conf
SOCK=/run/sift/sift-milter.sock
user_before=no
getent passwd sift >/dev/null && user_before=yes
run_before=no
[ -e /run/sift ] && run_before=yes

# Whatever happens, the machine is left as it was found: the daemon
# stopped, the package purged, and a user this test created deleted.
deb_cleanup() {
	it_cleanup
	if dpkg-query -W -f='${Status}' sift 2>/dev/null | grep -q "installed"; then
		apt-get purge -y -qq sift >/dev/null 2>&1
	fi
	if [ "$user_before" = no ] && getent passwd sift >/dev/null; then
		deluser --quiet --system sift >/dev/null 2>&1
		delgroup --quiet --system sift >/dev/null 2>&1
	fi
	[ "$run_before" = no ] && rm -rf /run/sift
}
trap deb_cleanup EXIT

# --- a clean copy: the committed tree plus uncommitted edits of tracked
# files (git stash create makes that commit without touching anything);
# without git, the tree minus build directories.
mkdir "$D/src"
if git -C "$top_srcdir" rev-parse --git-dir >/dev/null 2>&1; then
	rev=$(git -C "$top_srcdir" stash create 2>/dev/null)
	git -C "$top_srcdir" archive --prefix=sift/ "${rev:-HEAD}" | tar -x -C "$D/src"
else
	mkdir "$D/src/sift"
	tar -C "$top_srcdir" --exclude='./build*' --exclude=./autom4te.cache -cf - . |
		tar -x -C "$D/src/sift"
fi
check "the clean copy has debian/" test -x "$D/src/sift/debian/rules"

# --- build: once, two jobs, no tests (the suite ran them already)
start=$(date +%s)
if (cd "$D/src/sift" && DEB_BUILD_OPTIONS="nocheck parallel=2" \
	dpkg-buildpackage -us -uc -b >"$D/build.log" 2>&1); then
	pass "dpkg-buildpackage -us -uc -b builds ($(($(date +%s) - start)) s)"
else
	fail "dpkg-buildpackage -us -uc -b fails"
	tail -n 40 "$D/build.log" >&2
	it_done
fi
DEB=$(ls "$D"/src/sift_*.deb)
# The .changes file and sift-dbgsym take no overrides (bogus-mail-host); the
# package's are explained in debian/sift.lintian-overrides.
if lintian --fail-on error,warning "$DEB" >"$D/lintian.log" 2>&1; then
	pass "lintian: no errors or warnings"
else
	fail "lintian reports errors or warnings"
	cat "$D/lintian.log" >&2
fi

# --- install with apt (dependencies resolved from the package's Depends)
if (cd "$D/src" && apt-get install -y -qq "./$(basename "$DEB")" >"$D/install.log" 2>&1); then
	pass "apt-get install ./$(basename "$DEB")"
else
	fail "apt-get install fails"
	cat "$D/install.log" >&2
	it_done
fi

# --- what the package installed
for f in /usr/sbin/sift-milter /usr/bin/sift; do
	check "$f is installed and executable" test -x "$f"
done
for m in man1/sift.1.gz man5/sift.conf.5.gz man8/sift-milter.8.gz; do
	check "man page $m" test -s "/usr/share/man/$m"
done
check "rules in /usr/share/sift/rules" test -s /usr/share/sift/rules/10_header.cf
pw=$(getent passwd sift)
check "a sift user exists" [ -n "$pw" ]
uid=$(echo "$pw" | cut -d: -f3)
check "sift is a system user (uid $uid < 1000)" [ "${uid:-1000}" -lt 1000 ]
case $(echo "$pw" | cut -d: -f7) in
*/nologin | */false) pass "sift has no login shell" ;;
*) fail "sift has a login shell: $pw" ;;
esac
check "a sift group exists" sh -c "getent group sift >/dev/null"
check "/var/lib/sift is owned by sift:sift, mode 750" \
	[ "$(stat -c '%U:%G %a' /var/lib/sift)" = "sift:sift 750" ]
check "$CONF is a conffile" \
	sh -c "dpkg-query -W -f='\${Conffiles}' sift | grep -q ' $CONF '"
for l in "socket = unix:$SOCK" "user = sift" "state_dir = /var/lib/sift" \
	"log = syslog" "rules = /usr/share/sift/rules"; do
	check "sift.conf: $l" grep -qxF "$l" "$CONF"
done
check "the unit is installed" test -s "$UNIT"
check "the unit is enabled (multi-user.target.wants)" \
	test -L /etc/systemd/system/multi-user.target.wants/sift-milter.service
for k in ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes \
	ReadWritePaths=/var/lib/sift RuntimeDirectory=sift 'ExecReload=/bin/kill -HUP $MAINPID'; do
	check "unit: $k" grep -qxF "$k" "$UNIT"
done
# --man=no only where man itself is missing: the pages are installed.
man_opt=""
command -v man >/dev/null || man_opt="--man=no"
if systemd-analyze verify $man_opt "$UNIT" >"$D/verify.log" 2>&1; then
	pass "systemd-analyze verify $UNIT"
else
	fail "systemd-analyze verify $UNIT"
	cat "$D/verify.log" >&2
fi

# --- start it as the unit does: ExecStart as root (the unit has no User=;
# the daemon drops to sift.conf's user), with no new privileges, in the
# RuntimeDirectory systemd would create.
exec_start=$(sed -n 's/^ExecStart=//p' "$UNIT")
mkdir -p -m 0755 /run/sift
setpriv --no-new-privs $exec_start 2>"$D/milter.log" &
MPID=$!
it_track "$MPID"
if wait_for 10 test -S "$SOCK"; then
	pass "sift-milter opens $SOCK"
else
	fail "sift-milter did not open $SOCK within 10 s"
	cat "$D/milter.log" >&2
	it_done
fi
# the privilege drop happens after the socket is opened
wait_for 5 sh -c "[ \"\$(stat -c %U /proc/$MPID)\" = sift ]"
check "the daemon runs as sift" [ "$(stat -c %U "/proc/$MPID")" = sift ]
check "the socket is sift:sift, mode 660" [ "$(stat -c '%U:%G %a' "$SOCK")" = "sift:sift 660" ]

mc() {
	"$MC" -s "unix:$SOCK" -t 10000 -i 192.0.2.10 -Q "$1" --tsv "$top_srcdir/tests/data/milter/ham.eml" \
		>"$D/$1.tsv" 2>"$D/$1.err"
}
if mc deb1; then pass "sift-mclient scores a message through $SOCK"; else
	fail "sift-mclient fails"
	cat "$D/deb1.err" "$D/milter.log" >&2
fi
check "the message is accepted" [ "$(tsv_field "$D/deb1.tsv" ham.eml 2)" = accept ]
case $(tsv_field "$D/deb1.tsv" ham.eml 4) in
*"X-Spam-Status: No, score="*) pass "it carries X-Spam-Status from the packaged rules" ;;
*) fail "no X-Spam-Status: $(cat "$D/deb1.tsv")" ;;
esac

# --- systemctl reload is SIGHUP: the same process keeps serving
kill -HUP "$MPID"
sleep 1
check "after SIGHUP the daemon still runs" kill -0 "$MPID"
mc deb2
check "after SIGHUP it still scores" [ "$(tsv_field "$D/deb2.tsv" ham.eml 2)" = accept ]
kill "$MPID"
wait_for 35 sh -c "! kill -0 $MPID 2>/dev/null"
check "SIGTERM stops it" sh -c "! kill -0 $MPID 2>/dev/null"
it_untrack "$MPID"
[ "$run_before" = no ] && rm -rf /run/sift

# --- purge: state and conffiles go, the user stays (debian/sift.postrm)
touch /var/lib/sift/learned-data
if apt-get purge -y -qq sift >"$D/purge.log" 2>&1; then pass "apt-get purge -y sift"; else
	fail "apt-get purge fails"
	cat "$D/purge.log" >&2
fi
check "the package is gone" sh -c "! dpkg-query -W -f='\${Status}' sift 2>/dev/null | grep -q installed"
check "/var/lib/sift is removed on purge" test ! -e /var/lib/sift
check "$CONF is removed on purge" test ! -e "$CONF"
check "the unit is removed" test ! -e "$UNIT"
check "the sift user stays after purge, as documented" sh -c "getent passwd sift >/dev/null"
it_done
