#!/bin/sh
# it_sendmail.sh - end to end through a real Sendmail: a private Sendmail
# (Debian's sendmail-bin, unpacked from its .deb, never installed: the
# package conflicts with postfix) with its own configuration, queue and host
# name, on a free loopback port, built from an .mc that includes
# contrib/sendmail.mc as shipped. It calls sift-milter for every message and
# relays what it accepts to smtp-sink, which writes each message to a file.
# Checks: ham arrives with our X-Spam-* fields, spam is refused at DATA with
# our reply, forged X-Spam-* fields are removed, the queue id (i) and the
# SMTP AUTH login ({auth_authen}) reach sift, several messages on one
# connection each get a verdict, quarantine holds a message that
# `mailq -qQ` lists and `sendmail -qQ -Q` releases, and F= fails open.
# Skips (77) when a tool is missing, when not root, when mount namespaces
# are not allowed, or when the .debs cannot be fetched (no mirror).
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
SWAKS=$(command -v swaks)
[ "$(id -u)" = 0 ] || skip_all "a private sendmail daemon needs root"
[ -x "$SINK" ] || skip_all "smtp-sink (postfix) not installed"
id postfix >/dev/null 2>&1 || skip_all "no postfix user for smtp-sink"
[ -n "$SWAKS" ] || skip_all "swaks not installed"
for t in m4 dpkg-deb unshare mount hostname perl python3 ss; do
	command -v "$t" >/dev/null 2>&1 || skip_all "$t not installed"
done
perl -MDB_File -e 1 2>/dev/null || skip_all "perl's DB_File (for the SASL password db) missing"

MILTER=$top_builddir/sift-milter
DATA=$top_srcdir/tests/data/milter
it_need "$MILTER"
F=$SIFT_TEST_TIME_FACTOR
D=$IT_TMP
# smtp-sink runs as postfix and writes under $D/sink.
chmod 755 "$D"
mkdir -p "$D/sink" "$D/state" "$D/rules" "$D/mqueue" "$D/etc" "$D/root"
chown postfix "$D/sink"
chmod 700 "$D/mqueue"

# --- Sendmail from Debian's packages: fetched once into a cache (by
# contrib/install-deps.sh --test, or here), unpacked into $D.
SM_CACHE=${SIFT_SENDMAIL_DEBS:-/var/cache/sift-test/sendmail}
SM_PKGS="sendmail-bin sendmail-base sendmail-cf"
have_debs() {
	for p in $SM_PKGS; do
		ls "$SM_CACHE/${p}_"*.deb >/dev/null 2>&1 || return 1
	done
}
DEBS=$SM_CACHE
if ! have_debs; then
	DEBS=$D/dl
	mkdir -p "$DEBS"
	if ! (cd "$DEBS" && timeout 120 apt-get -q -o APT::Sandbox::User=root download $SM_PKGS) \
		>"$D/dl.log" 2>&1; then
		skip_all "cannot download $SM_PKGS: $( (grep '^E:' "$D/dl.log" || tail -1 "$D/dl.log") | head -1)"
	fi
	# Kept for the next run when the cache is writable; each file renamed
	# into place, so a parallel run never sees half of one.
	mkdir -p "$SM_CACHE" 2>/dev/null && for f in "$DEBS"/*.deb; do
		b=$(basename "$f")
		cp "$f" "$SM_CACHE/.$b.$$" 2>/dev/null && mv -f "$SM_CACHE/.$b.$$" "$SM_CACHE/$b"
	done
fi
for p in $SM_PKGS; do
	deb=$(ls "$DEBS/${p}_"*.deb 2>/dev/null | sort -V | tail -1)
	[ -n "$deb" ] || skip_all "no $p .deb in $DEBS"
	dpkg-deb -x "$deb" "$D/root" || { fail "dpkg-deb -x $deb"; it_done; }
done
SM_VERSION=$(basename "$deb" | cut -d_ -f2)
SENDMAIL=$D/root/usr/libexec/sendmail/sendmail
CFDIR=$D/root/usr/share/sendmail/cf
[ -x "$SENDMAIL" ] && [ -f "$CFDIR/m4/cf.m4" ] || { fail "no sendmail binary or cf/ in the packages"; it_done; }
missing=$(ldd "$SENDMAIL" 2>/dev/null | awk '/not found/ { print $1 }' | tr '\n' ' ')
[ -z "$missing" ] || skip_all "sendmail needs $missing(contrib/install-deps.sh --test installs them)"

# SMTP AUTH through Cyrus SASL: the plugins' directory is also where the
# library reads Sendmail.conf; the namespace below mounts a private copy.
SASL_PLUGINS=""
for d in /usr/lib/*/sasl2 /usr/lib/sasl2; do
	[ -e "$d/libsasldb.so.2" ] && [ -e "$d/libplain.so.2" ] && { SASL_PLUGINS=$d; break; }
done
[ -n "$SASL_PLUGINS" ] || skip_all "Cyrus SASL PLAIN and sasldb plugins missing (libsasl2-modules, libsasl2-modules-db)"
mkdir -p "$D/sasl2"
cp -P "$SASL_PLUGINS"/* "$D/sasl2/"
AUTH_USER=tester
AUTH_PASS=pw$$
cat >"$D/sasl2/Sendmail.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $D/sasldb2
mech_list: PLAIN LOGIN
EOF
# sasldb's records: "user NUL realm NUL property" -> value, in a Berkeley DB hash
perl -MDB_File -MFcntl -e '
	tie my %h, "DB_File", $ARGV[0], O_RDWR | O_CREAT, 0600, $DB_HASH or die "$ARGV[0]: $!\n";
	$h{"$ARGV[1]\0mx.sift.test\0userPassword"} = $ARGV[2];
	untie %h;' "$D/sasldb2" "$AUTH_USER" "$AUTH_PASS" || { fail "cannot write the sasldb"; it_done; }

# sm_run CMD...: CMD in its own mount and UTS namespaces, where the host
# name is mx.sift.test and /etc/hosts, nsswitch.conf and resolv.conf are
# the test's: Sendmail resolves its own name at start-up, before it reads
# any configuration, and must find it in files, never asking a DNS server
# off this host. exec all the way: the PID is CMD's.
printf '127.0.0.1 mx.sift.test mx localhost\n' >"$D/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\n' >"$D/etc/nsswitch.conf"
printf 'nameserver 127.0.0.1\noptions attempts:1 timeout:1\n' >"$D/etc/resolv.conf"
SM_NS='for f in hosts nsswitch.conf resolv.conf; do
		[ -e "/etc/$f" ] || continue # glibc then uses files, or a server on 127.0.0.1
		mount --bind "$0/etc/$f" "/etc/$f" || exit 111
	done
	mount --bind "$0/sasl2" "$1" && hostname mx.sift.test || exit 111
	shift
	exec "$@"'
# unshare makes every mount private in the new namespace, so that nothing
# mounted there reaches the host; in a chroot whose / is no mount point it
# cannot ("cannot change root filesystem propagation") and fails. There,
# when no mount at all is shared, nothing could propagate anyway, and the
# namespace is made without changing propagation.
SM_UNSHARE="unshare -m -u"
if ! unshare -m -u true 2>/dev/null && ! grep -q ' shared:' /proc/self/mountinfo; then
	SM_UNSHARE="unshare -m -u --propagation unchanged"
fi
sm_run() { $SM_UNSHARE sh -c "$SM_NS" "$D" "$SASL_PLUGINS" "$@"; }
# sm_cmd SECONDS CMD...: a command that ends by itself, bounded
sm_cmd() {
	_t=$1
	shift
	timeout "$_t" $SM_UNSHARE sh -c "$SM_NS" "$D" "$SASL_PLUGINS" "$@"
}
sm_run true 2>"$D/ns.err" || skip_all "cannot mount in a private namespace: $(head -1 "$D/ns.err")"

SMTP_PORT=$(free_port)
SINK_PORT=$(free_port)
MILTER_PORT=$(free_port)
while [ "$SINK_PORT" = "$SMTP_PORT" ]; do SINK_PORT=$(free_port); done
while [ "$MILTER_PORT" = "$SMTP_PORT" ] || [ "$MILTER_PORT" = "$SINK_PORT" ]; do
	MILTER_PORT=$(free_port)
done
# someone listens on 127.0.0.1:PORT (ss: python starts slowly on some hosts)
port_open() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q "127.0.0.1:$1 "; }

# --- sift-milter on loopback TCP
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/rules/"
# Fires only when sift learnt an SMTP AUTH login ({auth_authen}): the first
# relay is then marked authenticated.
cat >"$D/rules/20_auth.cf" <<'EOF'
header   SIFT_IT_AUTH  X-Spam-Relays-Trusted =~ /auth=ESMTPA/
describe SIFT_IT_AUTH  The client logged in with SMTP AUTH
score    SIFT_IT_AUTH  0.5
EOF
REPLY="550 5.7.1 Sift sendmail test says no"
cat >"$D/sift.conf" <<EOF
log = stderr
rules = $D/rules
add_header_score = 5
quarantine_score = 10
reject_score = 15
reject_reply = "$REPLY"
EOF
"$MILTER" -f -c "$D/sift.conf" -d "$D/state" -p "inet:$MILTER_PORT@127.0.0.1" 2>"$D/milter.log" &
MILTER_PID=$!
it_track "$MILTER_PID"
wait_for $((10 * F)) port_open "$MILTER_PORT" ||
	{ fail "sift-milter not listening on $MILTER_PORT"; cat "$D/milter.log" >&2; it_done; }

# --- the sink: accepted mail lands in $D/sink/<n>.<random>
"$SINK" -u postfix -h sink.sift.test -d "$D/sink/%M%S." "127.0.0.1:$SINK_PORT" 16 \
	>"$D/sink.log" 2>&1 &
it_track $!
wait_for $((10 * F)) port_open "$SINK_PORT" || { fail "smtp-sink not listening on $SINK_PORT"; it_done; }

# --- the private Sendmail: contrib/sendmail.mc as shipped, but for the
# port; its S= must be the shipped sift.conf's socket
SOCKET=$(sed -n 's/^socket *= *\([^ #]*\).*/\1/p' "$top_srcdir/contrib/sift.conf")
sed "s/S=$SOCKET,/S=inet:$MILTER_PORT@127.0.0.1,/" "$top_srcdir/contrib/sendmail.mc" >"$D/sift.mc"
check "contrib/sendmail.mc: S= is contrib/sift.conf's socket (${SOCKET:-none found})" \
	grep -q "S=inet:$MILTER_PORT@127.0.0.1," "$D/sift.mc"
printf 'hosts files\naliases files\n' >"$D/service.switch"
: >"$D/aliases"
: >"$D/statistics"
cat >"$D/sendmail.mc" <<EOF
divert(-1)
Private Sendmail for tests/it_sendmail.sh: loopback only, no DNS, relays
everything to smtp-sink, state under $D.
divert(0)dnl
VERSIONID(\`sift tests/it_sendmail.sh')dnl
OSTYPE(\`linux')dnl
define(\`confDOMAIN_NAME', \`mx.sift.test')dnl
define(\`confSERVICE_SWITCH_FILE', \`$D/service.switch')dnl
define(\`confHOSTS_FILE', \`$D/etc/hosts')dnl
define(\`confDONT_PROBE_INTERFACES', \`True')dnl
define(\`QUEUE_DIR', \`$D/mqueue')dnl
define(\`confPID_FILE', \`$D/sendmail.pid')dnl
define(\`STATUS_FILE', \`$D/statistics')dnl
define(\`ALIAS_FILE', \`$D/aliases')dnl
define(\`SMART_HOST', \`relay:[127.0.0.1]')dnl
define(\`RELAY_MAILER_ARGS', \`TCP \$h $SINK_PORT')dnl
define(\`confAUTH_MECHANISMS', \`PLAIN LOGIN')dnl
TRUST_AUTH_MECH(\`PLAIN LOGIN')dnl
define(\`confAUTH_OPTIONS', \`A')dnl
FEATURE(\`nocanonify')dnl
FEATURE(\`no_default_msa')dnl
FEATURE(\`accept_unresolvable_domains')dnl
DAEMON_OPTIONS(\`Port=$SMTP_PORT, Addr=127.0.0.1, Name=MTA')dnl
include(\`$D/sift.mc')dnl
MAILER(\`local')dnl
MAILER(\`smtp')dnl
EOF
if ! m4 -D_CF_DIR_="$CFDIR/" "$CFDIR/m4/cf.m4" "$D/sendmail.mc" >"$D/sendmail.cf" 2>"$D/m4.err"; then
	fail "m4 could not build sendmail.cf"
	cat "$D/m4.err" >&2
	it_done
fi
CF=$D/sendmail.cf
check "sendmail.cf: sift is an input filter with F= and the connect timeout" \
	grep -q "^Xsift, S=inet:$MILTER_PORT@127.0.0.1, F=, T=C:10s;S:30s;R:60s;E:5m" "$CF"
check "sendmail.cf: the default ENVFROM macros carry i and {auth_authen}" \
	grep -q "^O Milter.macros.envfrom=i, .*{auth_authen}" "$CF"

SM_PID=""
# Sendmail forks a child per connection and per delivery: stop the tree.
descendants() {
	ps -eo pid=,ppid= | awk -v root="$1" '{ parent[$1] = $2 }
		END {
			do {
				more = 0
				for (c in parent)
					if (!(c in d) && (parent[c] == root || (parent[c] in d))) { d[c] = 1; more = 1 }
			} while (more)
			for (c in d) print c
		}'
}
sm_stop() {
	[ -n "$SM_PID" ] || return 0
	_kids=$(descendants "$SM_PID")
	kill "$SM_PID" $_kids 2>/dev/null
	wait_for $((10 * F)) sh -c "! kill -0 $SM_PID 2>/dev/null"
	kill -9 "$SM_PID" $_kids 2>/dev/null
	it_untrack "$SM_PID"
	SM_PID=""
}
trap 'sm_stop; it_cleanup' EXIT

# sm_start CF: the daemon. -bD keeps it in the foreground, so its PID is
# ours (unshare and sh exec it; not through sm_run, which would run in a
# subshell); -X records the SMTP traffic.
sm_start() {
	$SM_UNSHARE sh -c "$SM_NS" "$D" "$SASL_PLUGINS" "$SENDMAIL" -C "$1" -bD -X "$D/traffic.log" \
		>>"$D/sendmail.out" 2>&1 &
	SM_PID=$!
	it_track "$SM_PID"
	wait_for $((15 * F)) port_open "$SMTP_PORT" && return 0
	fail "sendmail not listening on $SMTP_PORT"
	cat "$D/sendmail.out" >&2
	it_done
}
sm_start "$CF"
pass "private sendmail $SM_VERSION up (127.0.0.1:$SMTP_PORT, pid $SM_PID)"

send() { # send NAME FILE [SWAKS-ARGS...]: transcript in $D/NAME.swaks, exit status in .rc
	_n=$1 _f=$2
	shift 2
	timeout $((60 * F)) "$SWAKS" --server 127.0.0.1 --port "$SMTP_PORT" --helo client.sift.test \
		--from alice@example.org --to bob@example.net --data "@$_f" "$@" \
		>"$D/$_n.swaks" 2>&1
	echo $? >"$D/$_n.rc"
}
# The queue id of a message Sendmail accepted ("250 2.0.0 <id> Message accepted").
queue_id() { sed -n 's/^<-  250 2\.0\.0 \([A-Za-z0-9]*\) Message accepted.*/\1/p' "$D/$1.swaks" | head -1; }
arrived() { grep -l -F "$1" "$D"/sink/* 2>/dev/null | head -1; }
wait_arrival() { wait_for $((20 * F)) sh -c "grep -q -F '$1' '$D'/sink/* 2>/dev/null"; }
# msg FILE MESSAGE-ID SUBJECT BODY: a small message written to FILE
msg() {
	printf 'From: Alice Example <alice@example.org>\nTo: Bob Example <bob@example.net>\nSubject: %s\nDate: Tue, 3 Jun 2025 10:00:00 +0000\nMessage-ID: <%s>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n%s\n' \
		"$3" "$2" "$4" >"$1"
}

# --- ham: accepted, relayed with our fields; its queue id is in sift's log
send ham "$DATA/ham.eml"
QID=$(queue_id ham)
check "ham: accepted by sendmail (250 with a queue id)" [ -n "$QID" ]
if wait_arrival "minutes-20250603@example.org"; then
	M=$(arrived "minutes-20250603@example.org")
	pass "ham: relayed to the sink"
	check "ham: X-Spam-Status: No in the delivered message" grep -q "^X-Spam-Status: No, score=" "$M"
	check "ham: X-Spam-Score in the delivered message" grep -q "^X-Spam-Score: " "$M"
	check "ham: no X-Spam-Flag" sh -c "! grep -q '^X-Spam-Flag' '$M'"
else
	fail "ham: not relayed to the sink within $((20 * F)) s"
fi
check "ham: sift logged Sendmail's queue id (macro i)" \
	grep -q "queue_id=$QID ip=127.0.0.1 .*action=accept rules=- " "$D/milter.log"

# --- spam: refused at end of DATA with our reply, nothing relayed
send spam "$DATA/spam.eml"
check "spam: refused at DATA with our reply" grep -q -F "<** $REPLY" "$D/spam.swaks"
check "spam: swaks saw a failure" [ "$(cat "$D/spam.rc")" != 0 ]

# --- between the thresholds: delivered, flagged
send medium "$DATA/medium.eml"
if wait_arrival "offers-1@shop.example"; then
	check "medium: X-Spam-Flag: YES in the delivered message" grep -q "^X-Spam-Flag: YES" "$(arrived "offers-1@shop.example")"
else
	fail "medium: not relayed to the sink within $((20 * F)) s"
fi

# --- forged verdict fields (two X-Spam-Status, one X-Spam-Flag) are gone
send foreign "$DATA/foreign.eml"
if wait_arrival "fwd-1@example.org"; then
	M=$(arrived "fwd-1@example.org")
	check "foreign: the sender's X-Spam-Status copies removed" sh -c "! grep -q 'FAKE' '$M'"
	check "foreign: the sender's X-Spam-Flag removed" sh -c "! grep -q '^X-Spam-Flag: NO' '$M'"
	check "foreign: exactly one X-Spam-Status (ours)" [ "$(grep -c '^X-Spam-Status:' "$M")" = 1 ]
else
	fail "foreign: not relayed to the sink within $((20 * F)) s"
fi

# --- forged fields in other spellings: lower case, folded over two lines
printf 'From: Alice Example <alice@example.org>\nTo: Bob Example <bob@example.net>\nSubject: Forged, other spellings\nx-spam-status: No, score=-5.0\n\ttests=FAKE_FOLDED\nX-SPAM-FLAG: NO_UPPER\nx-spam-score: -99\nMessage-ID: <fwd-2@example.org>\n\nText.\n' >"$D/foreign2.eml"
send foreign2 "$D/foreign2.eml"
if wait_arrival "fwd-2@example.org"; then
	M=$(arrived "fwd-2@example.org")
	check "foreign, lower case and folded: all three removed" \
		sh -c "! grep -q -i -e FAKE_FOLDED -e NO_UPPER -e 'score: -99' '$M'"
	check "foreign, lower case and folded: one X-Spam-Status, one X-Spam-Score (ours)" \
		[ "$(grep -c -i '^X-Spam-Status:' "$M") $(grep -c -i '^X-Spam-Score:' "$M")" = "1 1" ]
else
	fail "foreign, other spellings: not relayed to the sink within $((20 * F)) s"
fi

# --- SMTP AUTH: Sendmail passes the login as {auth_authen} at MAIL FROM
msg "$D/auth.eml" auth-1@example.org "Logged-in submission" "Sent after AUTH PLAIN."
send auth "$D/auth.eml" --auth PLAIN --auth-user "$AUTH_USER" --auth-password "$AUTH_PASS"
check "auth: sendmail accepted the login" grep -q "^<-  235 " "$D/auth.swaks"
AQID=$(queue_id auth)
check "auth: {auth_authen} reached sift (the authenticated-relay rule hit)" \
	grep -q "queue_id=$AQID .*rules=SIFT_IT_AUTH" "$D/milter.log"
if wait_arrival "auth-1@example.org"; then
	check "auth: the rule is in the delivered X-Spam-Status" \
		grep -q "^X-Spam-Status: No, .*SIFT_IT_AUTH" "$(arrived "auth-1@example.org")"
else
	fail "auth: not relayed to the sink within $((20 * F)) s"
fi

# --- several messages on one SMTP connection: each gets its own verdict
msg "$D/multi-1.eml" multi-1@example.org "First of three" "Plain text."
msg "$D/multi-2.eml" multi-2@example.org "SIFTSPAMTOKEN second of three" "Plain text."
msg "$D/multi-3.eml" multi-3@example.org "SIFTMEDIUMTOKEN third of three" "Plain text."
LOG_BEFORE=$(grep -c "queue_id=" "$D/milter.log")
timeout $((60 * F)) python3 - "$SMTP_PORT" "$D"/multi-1.eml "$D"/multi-2.eml "$D"/multi-3.eml \
	>"$D/multi.out" 2>&1 <<'EOF'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), "client.sift.test", timeout=60)
for path in sys.argv[2:]:
    # str, not bytes: smtplib then sends CRLF line ends, as SMTP wants
    with open(path) as f:
        data = f.read()
    s.mail("alice@example.org")
    s.rcpt("bob@example.net")
    try:
        code, text = s.data(data)
    except smtplib.SMTPDataError as e:
        code, text = e.smtp_code, e.smtp_error
    print(code, text.decode())
s.quit()
EOF
multi_replies() {
	{
		read -r c1 _ && read -r c2 t2 && read -r c3 _
	} <"$D/multi.out" || return 1
	[ "$c1" = 250 ] && [ "$c2" = 550 ] && [ "$t2" = "${REPLY#550 }" ] && [ "$c3" = 250 ]
}
check "one connection: ham 250, spam 550 with our reply, medium 250, in order" multi_replies
LOG_AFTER=$(grep -c "queue_id=" "$D/milter.log")
check "one connection: sift logged three verdicts" [ $((LOG_AFTER - LOG_BEFORE)) = 3 ]
check "one connection: three distinct queue ids" \
	[ "$(tail -3 "$D/milter.log" | grep -o 'queue_id=[^ ]*' | sort -u | wc -l)" = 3 ]
if wait_arrival "multi-3@example.org" && wait_arrival "multi-1@example.org"; then
	check "one connection: the third message flagged" \
		grep -q "^X-Spam-Flag: YES" "$(arrived "multi-3@example.org")"
	check "one connection: the spam not relayed" sh -c "! grep -q -F multi-2@example.org '$D'/sink/*"
else
	fail "one connection: the accepted messages not relayed within $((20 * F)) s"
fi

# --- quarantine: held in the queue, listed by mailq -qQ, released by -qQ -Q
msg "$D/held.eml" held-1@example.org "SIFTMEDIUMTOKEN held" "SIFTBODYTOKEN twice over the mark."
send held "$D/held.eml"
HQID=$(queue_id held)
check "quarantine: accepted by sendmail" [ -n "$HQID" ]
check "quarantine: sift logged action=quarantine" grep -q "queue_id=$HQID .*action=quarantine" "$D/milter.log"
MAILQ=$D/root/usr/libexec/sendmail/mailq
sm_cmd $((30 * F)) "$MAILQ" -C "$CF" -qQ >"$D/mailq-held.out" 2>&1
check "quarantine: mailq -qQ lists the message with sift's reason" \
	sh -c "grep -q '^$HQID' '$D/mailq-held.out' && grep -q 'QUARANTINE: spam score 14.0' '$D/mailq-held.out'"
sleep 1
check "quarantine: not delivered while held" sh -c "! grep -q -F held-1@example.org '$D'/sink/*"
sm_cmd $((30 * F)) "$SENDMAIL" -C "$CF" -qQ -Q -qI"$HQID" >"$D/release.out" 2>&1
sm_cmd $((30 * F)) "$MAILQ" -C "$CF" -qQ >"$D/mailq-released.out" 2>&1
check "quarantine: released by sendmail -qQ -Q -qI<id>" sh -c "! grep -q '^$HQID' '$D/mailq-released.out'"
sm_cmd $((60 * F)) "$SENDMAIL" -C "$CF" -q -qI"$HQID" >"$D/run.out" 2>&1
if wait_arrival "held-1@example.org"; then
	check "quarantine: the released message carries X-Spam-Flag: YES" \
		grep -q "^X-Spam-Flag: YES" "$(arrived "held-1@example.org")"
else
	fail "quarantine: the released message not delivered by a queue run"
fi

# --- F= fails open: with sift-milter stopped, mail passes unfiltered
kill "$MILTER_PID"
wait_for $((10 * F)) sh -c "! kill -0 $MILTER_PID 2>/dev/null"
it_untrack "$MILTER_PID"
msg "$D/open.eml" open-1@example.org "SIFTSPAMTOKEN while the filter is down" "Plain text."
send open "$D/open.eml"
check "filter down: F= accepts (250)" [ -n "$(queue_id open)" ]
if wait_arrival "open-1@example.org"; then
	check "filter down: delivered without X-Spam fields" \
		sh -c "! grep -q '^X-Spam-' '$(arrived "open-1@example.org")'"
else
	fail "filter down: not relayed within $((20 * F)) s"
fi

# --- F=T tempfails instead: the same configuration but for the flag
OLD_SM=$SM_PID
sm_stop
check "sendmail (F=) stopped" sh -c "! kill -0 $OLD_SM 2>/dev/null"
sed 's/, F=, /, F=T, /' "$D/sift.mc" >"$D/sift-T.mc"
sed "s|$D/sift.mc|$D/sift-T.mc|" "$D/sendmail.mc" >"$D/sendmail-T.mc"
m4 -D_CF_DIR_="$CFDIR/" "$CFDIR/m4/cf.m4" "$D/sendmail-T.mc" >"$D/sendmail-T.cf" 2>>"$D/m4.err"
check "sendmail-T.cf: sift with F=T" grep -q "^Xsift, S=inet:$MILTER_PORT@127.0.0.1, F=T, " "$D/sendmail-T.cf"
sm_start "$D/sendmail-T.cf"
msg "$D/tempfail.eml" tempfail-1@example.org "Sent while the filter is down" "Plain text."
send tempfail "$D/tempfail.eml"
check "filter down: F=T tempfails (4xx), nothing accepted" \
	sh -c "grep -q '^<\*\* 4[0-9][0-9] ' '$D/tempfail.swaks' && ! grep -q 'Message accepted' '$D/tempfail.swaks'"

if [ "$IT_FAILS" -ne 0 ]; then
	echo "--- sendmail output and SMTP traffic" >&2
	cat "$D/sendmail.out" >&2
	tail -40 "$D/traffic.log" >&2 2>/dev/null
	echo "--- milter log" >&2
	tail -20 "$D/milter.log" >&2
fi
OLD_SM=$SM_PID
sm_stop
check "sendmail stopped" sh -c "! kill -0 $OLD_SM 2>/dev/null"
it_done
