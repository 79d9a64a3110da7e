#!/bin/sh
# it_rep_tls.sh - Redis over an untrusted link: TLS through stunnel4 and
# Redis ACL credentials, on loopback.
#   A Redis with only its TLS port (7's tls-port, certificates made here by
#   openssl), a Sentinel on a TLS port with its own password, a stunnel
#   client per server verifying the certificate's chain and name, and an
#   ACL user with the README's least-privilege rules. A sift-milter node
#   reaches Redis through the tunnel with redis_username and
#   redis_password_file: a spam message's reputation write lands (read back
#   over TLS); through Sentinel with redis_route mapping the announced
#   addresses to the tunnels; a wrong password gives a clear
#   "authentication failed" line; no password appears in any log or in
#   `sift lint` / `sift check` output.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MILTER=$top_builddir/sift-milter
SIFT=$top_builddir/sift
MC=$top_builddir/sift-mclient
DATA=$top_srcdir/tests/data/milter
it_need "$MILTER" "$SIFT" "$MC"
it_need_redis
STUNNEL=$(command -v stunnel4 || command -v stunnel) ||
	skip_all "stunnel4 not installed (contrib/install-deps.sh --test)"
command -v openssl >/dev/null || skip_all "openssl not installed"

D=$IT_TMP
PW=Rq8-sift-pw-$$
SPW=Sn4-sentinel-pw-$$
ADMIN=Ad7-admin-$$
has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in '$1'" >&2; return 1; }
num_ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

# ------------------------------------------------------------ certificates
(
	cd "$D" &&
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout ca.key -out ca.pem -days 2 -subj "/CN=Sift test CA" &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout srv.key -out srv.csr -subj "/CN=redis.sift.test" &&
		printf 'subjectAltName=DNS:redis.sift.test\n' >srv.ext &&
		openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-out srv.pem -days 2 -extfile srv.ext
) >"$D/openssl.log" 2>&1 || { fail "openssl could not make the certificates"; cat "$D/openssl.log" >&2; it_done; }
chmod 0644 "$D/srv.key"

# ------------------------------------------------------------ Redis on its TLS port only
TP=$(free_port)
# The README's ACL rule for Sift, with this test's password: the list of
# commands it documents must be enough.
RULE=$(sed -n 's/^    user sift on >LONG-RANDOM-PASSWORD //p' "$top_srcdir/README")
check "the README documents the ACL rule" [ -n "$RULE" ]
mkdir -p "$D/redis"
# shellcheck disable=SC2086 # the rule is a list of words
redis-server --port 0 --tls-port "$TP" --bind 127.0.0.1 --dir "$D/redis" --save '' \
	--tls-cert-file "$D/srv.pem" --tls-key-file "$D/srv.key" \
	--tls-ca-cert-file "$D/ca.pem" --tls-auth-clients no \
	--user default off --user admin on ">$ADMIN" '~*' '&*' +@all \
	--user sift on ">$PW" $RULE >"$D/redis.log" 2>&1 &
REDIS_PID=$!
it_track "$REDIS_PID"
rtls() { _p=$1; shift; redis-cli --tls --cacert "$D/ca.pem" -h 127.0.0.1 -p "$_p" \
	--user admin --pass "$ADMIN" --no-auth-warning "$@" 2>/dev/null; }
check "redis-server answers on its TLS port only" wait_for 10 sh -c \
	"redis-cli --tls --cacert '$D/ca.pem' -h 127.0.0.1 -p $TP --user admin --pass '$ADMIN' --no-auth-warning ping 2>/dev/null | grep -q PONG"
check "and not in clear" sh -c "! redis-cli -h 127.0.0.1 -p $TP ping 2>/dev/null | grep -q PONG"

# ------------------------------------------------------------ a Sentinel on a TLS port, with a password
STP=$(free_port)
cat >"$D/sentinel.conf" <<EOF
port 0
tls-port $STP
bind 127.0.0.1
dir $D
tls-cert-file $D/srv.pem
tls-key-file $D/srv.key
tls-ca-cert-file $D/ca.pem
tls-auth-clients no
tls-replication yes
requirepass $SPW
sentinel monitor mymaster 127.0.0.1 $TP 1
sentinel auth-user mymaster admin
sentinel auth-pass mymaster $ADMIN
EOF
redis-server "$D/sentinel.conf" --sentinel >"$D/sentinel.log" 2>&1 &
SENTINEL_PID=$!
it_track "$SENTINEL_PID"
sentinel_knows() {
	redis-cli --tls --cacert "$D/ca.pem" -h 127.0.0.1 -p "$STP" --pass "$SPW" --no-auth-warning \
		SENTINEL get-master-addr-by-name mymaster 2>/dev/null | grep -q "^$TP\$"
}
check "the Sentinel (TLS, requirepass) knows the primary" wait_for 10 sentinel_knows

# ------------------------------------------------------------ stunnel clients on loopback
LP=$(free_port)
SLP=$(free_port)
BADP=$(free_port)
cat >"$D/stunnel.conf" <<EOF
foreground = yes
pid =
output = $D/stunnel.log
debug = notice
client = yes
verifyChain = yes
CAfile = $D/ca.pem
[redis]
accept = 127.0.0.1:$LP
connect = 127.0.0.1:$TP
checkHost = redis.sift.test
[sentinel]
accept = 127.0.0.1:$SLP
connect = 127.0.0.1:$STP
checkHost = redis.sift.test
[wrong-name]
accept = 127.0.0.1:$BADP
connect = 127.0.0.1:$TP
checkHost = other.sift.test
EOF
"$STUNNEL" "$D/stunnel.conf" >"$D/stunnel.out" 2>&1 &
STUNNEL_PID=$!
it_track "$STUNNEL_PID"
check "stunnel carries plain Redis to the TLS port" wait_for 10 sh -c \
	"redis-cli -h 127.0.0.1 -p $LP --user admin --pass '$ADMIN' --no-auth-warning ping 2>/dev/null | grep -q PONG"
check "stunnel refuses a certificate for another name" sh -c \
	"! redis-cli -h 127.0.0.1 -p $BADP --user admin --pass '$ADMIN' --no-auth-warning ping 2>/dev/null | grep -q PONG"

# ------------------------------------------------------------ nodes
printf '%s\n' "$PW" >"$D/redis.pw"
printf '%s\n' "$SPW" >"$D/sentinel.pw"
printf 'not-%s\n' "$PW" >"$D/wrong.pw"
chmod 0600 "$D/redis.pw" "$D/sentinel.pw" "$D/wrong.pw"

# Block list entries are signed: one publisher key, trusted by the node.
"$SIFT" block keygen --out "$D/pub.key" --name pub >"$D/keygen.out" 2>&1
TRUST=$(grep '^block_trusted_key = pub ' "$D/keygen.out")
check "a publisher key for the block list" [ -n "$TRUST" ]

# node NAME EXTRA_CONFIG: writes NAME.conf (readable by others, as a
# configuration usually is: the secrets are in the password files).
node() {
	mkdir -p "$D/$1"
	cat >"$D/$1.conf" <<EOF
log = stderr
log_level = info
rules = $top_srcdir/tests/data/rules
add_header_score = 5
reject_score = 1000
state_dir = $D/$1
deadline = 2s
redis_connect_timeout = 2s
redis_command_timeout = 2s
rep_write_window = 100ms
redis_breaker_failures = 3
redis_breaker_time = 500ms
redis_backoff_max = 500ms
rep_min_observations = 1
block_sync_wait = 200ms
rep_cache_time = 0
redis_username = sift
block_signing_key = $D/pub.key
$TRUST
$2
EOF
	chmod 0644 "$D/$1.conf"
}
start_node() {
	it_milter_start 10 "$D/$1.conf" "$D/$1" "$D/$1.sock" "$D/$1.log"
	eval "${1}_PID=\$IT_MILTER_PID"
}
send() {
	"$MC" -s "unix:$D/$1.sock" -t 10000 -i "$3" -Q "$2" --tsv "$4" >"$D/$2.tsv" 2>"$D/$2.err"
	wait_for 5 grep -q "queue_id=${2}00000000 " "$D/$1.log"
	grep "queue_id=${2}00000000 " "$D/$1.log" | tail -1 >"$D/$2.line"
}
rules_of() { sed -n 's/.* rules=\([^ ]*\) .*/\1/p' "$D/$1.line"; }
spam_ge() { num_ge "$(rtls "$TP" HGET "sift:r:{ip:$1}" s)" "$2"; }

node a "redis_server = 127.0.0.1:$LP
redis_password_file = $D/redis.pw"
"$SIFT" -d "$D/a" lint "$D/a.conf" >"$D/lint-a.out" 2>&1
check "sift lint accepts the node's configuration" [ $? = 0 ]
start_node a
for i in 1 2 3; do send a "a$i" 192.0.2.41 "$DATA/spam.eml"; done
check "the spam verdicts land in Redis through the tunnel (read back over TLS)" \
	wait_for 10 spam_ge 192.0.2.41 2.99
send a aread 192.0.2.41 "$DATA/ham.eml"
check "and the node reads them back" has "$(rules_of aread)" REP_IP_SPAM
check "sift block add as the ACL user" "$SIFT" -c "$D/a.conf" block add 203.0.113.0/24
check "the block is in Redis" sh -c "[ \"\$(redis-cli --tls --cacert '$D/ca.pem' -h 127.0.0.1 -p $TP --user admin --pass '$ADMIN' --no-auth-warning HLEN 'sift:{bl}:state' 2>/dev/null)\" = 1 ]"
ok=""
for i in 1 2 3 4 5 6 7 8 9 10; do
	send a "ablk$i" 203.0.113.7 "$DATA/ham.eml"
	case "$(rules_of "ablk$i")" in *BLOCKLIST_IP*) ok=1; break ;; esac
	sleep 0.2
done
check "and the node's sync enforces it" [ -n "$ok" ]

# Through Sentinel: both the Sentinel and the primary it names go through their tunnels.
node s "redis_sentinel = 127.0.0.1:$STP
redis_sentinel_password_file = $D/sentinel.pw
redis_route = 127.0.0.1:$STP 127.0.0.1:$SLP
redis_route = 127.0.0.1:$TP 127.0.0.1:$LP
redis_password_file = $D/redis.pw"
start_node s
for i in 1 2; do send s "s$i" 192.0.2.42 "$DATA/spam.eml"; done
# The primary's port speaks only TLS: without the route the node could not write.
check "through the authenticated Sentinel and the routes, the writes land" \
	wait_for 10 spam_ge 192.0.2.42 1.99

node ns "redis_sentinel = 127.0.0.1:$STP
redis_route = 127.0.0.1:$STP 127.0.0.1:$SLP
redis_route = 127.0.0.1:$TP 127.0.0.1:$LP
redis_password_file = $D/redis.pw"
start_node ns
send ns ns1 192.0.2.43 "$DATA/spam.eml"
check "without the Sentinel's password the node cannot find the primary" \
	wait_for 5 grep -q "no Sentinel knows the primary.*NOAUTH" "$D/ns.log"

# A wrong password: a clear line, and no password anywhere.
node w "redis_server = 127.0.0.1:$LP
redis_password_file = $D/wrong.pw"
start_node w
send w w1 192.0.2.44 "$DATA/spam.eml"
check "a wrong password is reported clearly" \
	wait_for 5 grep -q "authentication failed as user 'sift': WRONGPASS" "$D/w.log"
send w w2 192.0.2.44 "$DATA/ham.eml"
check "and messages still get their verdicts" grep -q "action=" "$D/w2.line"
"$SIFT" -c "$D/w.conf" check --ip 192.0.2.44 "$DATA/ham.eml" >"$D/check-w.out" 2>&1

# Inline password in a configuration others can read: refused at its line.
node i "redis_server = 127.0.0.1:$LP
redis_password = $PW"
"$SIFT" -d "$D/i" lint "$D/i.conf" >"$D/lint-i.out" 2>&1
check "sift lint refuses redis_password in a world-readable file" [ $? != 0 ]
check "with file:line, pointing at redis_password_file" \
	grep -q "i.conf:[0-9]*: redis_password in a file readable by others.*redis_password_file" "$D/lint-i.out"
chmod 0604 "$D/redis.pw"
"$SIFT" -d "$D/a" lint "$D/a.conf" >"$D/lint-a2.out" 2>&1
check "sift lint refuses a password file others can read" \
	grep -q "a.conf:[0-9]*: redis_password_file: .* is readable or writable by others" "$D/lint-a2.out"
chmod 0600 "$D/redis.pw"

for n in a s ns w; do
	pid=$(eval echo "\$${n}_PID")
	kill "$pid" 2>/dev/null
	wait_for 10 sh -c "! kill -0 $pid 2>/dev/null"
	it_untrack "$pid"
done
leak=""
for f in a.log s.log ns.log w.log lint-a.out lint-a2.out lint-i.out check-w.out stunnel.log; do
	grep -q -e "$PW" -e "$SPW" "$D/$f" && leak="$leak $f"
done
check "no password in any log or output (${leak:-none})" [ -z "$leak" ]
it_done
