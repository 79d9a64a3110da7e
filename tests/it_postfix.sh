#!/bin/sh
# it_postfix.sh - end to end through a real MTA: a private Postfix instance
# (own config, queue and data directories under a temp dir, loopback only,
# free ports) calls sift-milter for every message received by smtpd and
# relays what it accepts to smtp-sink, which writes each message to a file.
# Spam must be rejected during the SMTP dialogue with our reply; ham must
# arrive carrying our X-Spam-* fields. Skips (77) only when Postfix, swaks
# or smtp-sink are not installed.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

POSTFIX=$(command -v postfix || echo /usr/sbin/postfix)
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
SWAKS=$(command -v swaks)
[ -x "$POSTFIX" ] || skip_all "postfix not installed"
[ -x "$SINK" ] || skip_all "smtp-sink (postfix) not installed"
[ -n "$SWAKS" ] || skip_all "swaks not installed"
id postfix >/dev/null 2>&1 || skip_all "no postfix user (postfix package not set up)"
[ "$(id -u)" = 0 ] || skip_all "a private postfix instance needs root"
# Postfix's daemons run as the postfix user: a system whose root directory
# others may not search (a bare chroot made under a 0700 directory, say)
# lets them open nothing at all, so Postfix cannot start there.
case $(stat -c %A / 2>/dev/null) in
d????????[xt]) ;;
*) skip_all "the root directory is not searchable by other users ($(stat -c %a /)): Postfix's unprivileged daemons cannot run here" ;;
esac

MILTER=$top_builddir/sift-milter
DATA=$top_srcdir/tests/data/milter
it_need "$MILTER"

D=$IT_TMP
# Postfix's daemons run as the postfix user and must reach their queue.
chmod 755 "$D"
PF=$D/pf
mkdir -p "$PF/etc" "$PF/spool" "$PF/data" "$D/sink" "$D/state" "$D/rules"
chown postfix "$D/sink" "$PF/data"
SMTP_PORT=$(free_port)
SINK_PORT=$(free_port)
MILTER_PORT=$(free_port)
while [ "$SINK_PORT" = "$SMTP_PORT" ]; do SINK_PORT=$(free_port); done
while [ "$MILTER_PORT" = "$SMTP_PORT" ] || [ "$MILTER_PORT" = "$SINK_PORT" ]; do
	MILTER_PORT=$(free_port)
done

port_open() {
	python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$1" \
		2>/dev/null
}

# --- sift-milter, on loopback TCP (Postfix's smtpd is not root and could
# not connect to a root-owned unix socket)
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/rules/"
REPLY="550 5.7.1 Sift postfix test says no"
# Sender authentication, when unbound is there to serve a DMARC policy
# (every other name is answered "no such name" locally: nothing leaves).
it_find_unbound
AUTH_CONF=""
if [ -x "$UNBOUND" ] && [ -x "$UBCTL" ]; then
	DNS_PORT=$(free_port)
	it_unbound_conf "$D" "$DNS_PORT" 1 >"$D/unbound.conf" <<EOF
	local-data: 'dmarc.test. 300 IN TXT "v=spf1 -all"'
	local-data: '_dmarc.dmarc.test. 300 IN TXT "v=DMARC1; p=reject"'
EOF
	it_unbound_start "$D/unbound.conf" "$D/unbound.log" &&
		AUTH_CONF="auth_enable = yes
auth_serv_id = mx.sift.test
dns_nameserver = 127.0.0.1:$DNS_PORT"
fi
cat >"$D/sift.conf" <<EOF
log = stderr
rules = $D/rules
add_header_score = 5
reject_score = 15
reject_reply = "$REPLY"
$AUTH_CONF
EOF
"$MILTER" -f -c "$D/sift.conf" -d "$D/state" -p "inet:$MILTER_PORT@127.0.0.1" 2>"$D/milter.log" &
MILTER_PID=$!
it_track "$MILTER_PID"
wait_for 10 port_open "$MILTER_PORT" || { fail "sift-milter not listening on $MILTER_PORT"; cat "$D/milter.log" >&2; it_done; }

# --- the sink: accepted mail lands in $D/sink/<n>.<random>
"$SINK" -u postfix -h sink.sift.test -d "$D/sink/%M%S." "127.0.0.1:$SINK_PORT" 16 \
	>"$D/sink.log" 2>&1 &
SINK_PID=$!
it_track "$SINK_PID"
wait_for 10 port_open "$SINK_PORT" || { fail "smtp-sink not listening on $SINK_PORT"; it_done; }

# --- a private Postfix instance
cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.sift.test
mydomain = sift.test
myorigin = \$myhostname
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
relayhost = [127.0.0.1]:$SINK_PORT
smtp_dns_support_level = disabled
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
maillog_file_prefixes = $PF
maillog_file = $PF/maillog
smtpd_milters = inet:127.0.0.1:$MILTER_PORT
milter_default_action = tempfail
milter_protocol = 6
milter_mail_macros = i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}
milter_content_timeout = 30s
EOF
cat >"$PF/etc/master.cf" <<EOF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

MASTER_PID=""
pf_stop() {
	[ -n "$MASTER_PID" ] || return 0
	timeout 20 "$POSTFIX" -c "$PF/etc" stop >/dev/null 2>&1
	wait_for 10 sh -c "! kill -0 $MASTER_PID 2>/dev/null"
	# Anything the master left behind, by PID (children of the master).
	for s in /proc/[0-9]*/stat; do
		set -- $(cat "$s" 2>/dev/null)
		[ "${4:-}" = "$MASTER_PID" ] && kill "$1" 2>/dev/null
	done
	kill "$MASTER_PID" 2>/dev/null
	it_untrack "$MASTER_PID"
	MASTER_PID=""
}
# The EXIT trap stops tracked PIDs; Postfix needs its own stop first.
trap 'pf_stop; it_cleanup' EXIT

if ! timeout 30 "$POSTFIX" -c "$PF/etc" start >"$D/postfix-start.log" 2>&1; then
	fail "postfix start failed"
	# With maillog_file set, Postfix reports start-up errors there.
	cat "$D/postfix-start.log" "$PF/maillog" >&2 2>/dev/null
	it_done
fi
wait_for 10 test -s "$PF/spool/pid/master.pid" &&
	MASTER_PID=$(tr -d ' \n' <"$PF/spool/pid/master.pid")
[ -n "$MASTER_PID" ] && it_track "$MASTER_PID"
if ! wait_for 15 port_open "$SMTP_PORT"; then
	fail "postfix smtpd not listening on $SMTP_PORT"
	cat "$D/postfix-start.log" "$PF/maillog" >&2 2>/dev/null
	it_done
fi
pass "private postfix instance up (smtpd 127.0.0.1:$SMTP_PORT, master $MASTER_PID)"

send() { # send NAME FILE: swaks transcript in $D/NAME.swaks, exit status in .rc
	timeout 60 "$SWAKS" --server 127.0.0.1 --port "$SMTP_PORT" --helo client.sift.test \
		--from alice@example.org --to bob@example.net --data "$2" \
		>"$D/$1.swaks" 2>&1
	echo $? >"$D/$1.rc"
}
# The sink file holding the message with this Message-ID, after up to 20 s.
arrived() { grep -l -F "$1" "$D"/sink/* 2>/dev/null | head -1; }
wait_arrival() { wait_for 20 sh -c "grep -q -F '$1' '$D'/sink/* 2>/dev/null"; }

# --- spam: rejected at end of DATA with our reply, nothing relayed
send spam "$DATA/spam.eml"
check "spam: rejected during SMTP with our reply" grep -q -F "<** $REPLY" "$D/spam.swaks"
check "spam: swaks saw a failure" [ "$(cat "$D/spam.rc")" != 0 ]

# --- ham: accepted, relayed, carrying our fields
send ham "$DATA/ham.eml"
check "ham: accepted by smtpd (250 queued)" grep -q "<-  250 2.0.0 Ok: queued" "$D/ham.swaks"
if wait_arrival "minutes-20250603@example.org"; then
	F=$(arrived "minutes-20250603@example.org")
	pass "ham: relayed to the sink"
	check "ham: X-Spam-Status: No in the delivered message" grep -q "^X-Spam-Status: No, score=" "$F"
	check "ham: X-Spam-Score in the delivered message" grep -q "^X-Spam-Score: " "$F"
	check "ham: no X-Spam-Flag" sh -c "! grep -q '^X-Spam-Flag' '$F'"
	# Above Postfix's own Received: field, as RFC 8601 wants it.
	[ -z "$AUTH_CONF" ] || check "ham: our Authentication-Results above Postfix's Received:" \
		sh -c "sed -n '/by mx.sift.test (Postfix)/q; /^Authentication-Results: mx.sift.test;/p' '$F' | grep -q ."
else
	fail "ham: not relayed to the sink within 20 s"
fi

# --- a header field over 64 KB (libmilter's default packet size), under
# Postfix's header_size_limit (100 KB): accepted and scored, not deferred.
# (Postfix delivers such a field cut near 60 KB with any libmilter filter,
# a do-nothing one too; without a milter it arrives whole.)
{
	printf 'References:'
	i=0
	while [ $i -lt 2500 ]; do
		printf ' <thread-%05d@lists.example.org>\n' $i
		i=$((i + 1))
	done
	sed 's/minutes-20250603@example.org/longref-20250603@example.org/' "$DATA/ham.eml"
} >"$D/longref.eml"
send longref "$D/longref.eml"
check "an 85 KB header field: accepted (250 queued)" grep -q "<-  250 2.0.0 Ok: queued" "$D/longref.swaks"
if wait_arrival "longref-20250603@example.org"; then
	F=$(arrived "longref-20250603@example.org")
	check "an 85 KB header field: scored (X-Spam-Score)" grep -q "^X-Spam-Score: " "$F"
else
	fail "an 85 KB header field: not relayed to the sink within 20 s"
fi

# --- between the thresholds: delivered, flagged
send medium "$DATA/medium.eml"
if wait_arrival "offers-1@shop.example"; then
	F=$(arrived "offers-1@shop.example")
	check "medium: X-Spam-Flag: YES in the delivered message" grep -q "^X-Spam-Flag: YES" "$F"
else
	fail "medium: not relayed to the sink within 20 s"
fi

# --- foreign verdict fields are gone from the delivered message
send foreign "$DATA/foreign.eml"
if wait_arrival "fwd-1@example.org"; then
	F=$(arrived "fwd-1@example.org")
	check "foreign: the sender's X-Spam-Status copies removed" \
		sh -c "! grep -q 'FAKE' '$F'"
	check "foreign: the sender's X-Spam-Flag removed" sh -c "! grep -q '^X-Spam-Flag: NO' '$F'"
	check "foreign: exactly one X-Spam-Status (ours)" [ "$(grep -c '^X-Spam-Status:' "$F")" = 1 ]
else
	fail "foreign: not relayed to the sink within 20 s"
fi

# --- DMARC: a From domain with p=reject and an unaligned sender (no DKIM)
if [ -n "$AUTH_CONF" ]; then
	send dmarc "$top_srcdir/tests/data/auth/dmarc-reject.eml"
	check "dmarc: a p=reject failure is rejected during SMTP, the policy named" \
		grep -q -F "<** $REPLY: DMARC policy of dmarc.test: reject" "$D/dmarc.swaks"
else
	pass "dmarc: skipped, unbound (Debian package unbound) is not installed"
fi

check "milter log names the rejected message" grep -q "action=reject rules=SIFT_IT_SPAM_SUBJ" "$D/milter.log"

if [ "$IT_FAILS" -ne 0 ]; then
	echo "--- postfix log" >&2
	tail -40 "$PF/maillog" >&2 2>/dev/null
	echo "--- milter log" >&2
	tail -20 "$D/milter.log" >&2
fi
OLD_MASTER=$MASTER_PID
pf_stop
check "postfix stopped" sh -c "! kill -0 $OLD_MASTER 2>/dev/null"
it_done
