#!/bin/sh
# it_dnsbl.sh - DNS blocklists end to end against a real unbound on a
# loopback port serving test zones: `sift check` scoring and explaining
# listings (client hop, sender domains, URI domains, TXT, a local rbldnsd
# file), a zone that never answers bounded by the deadline, the cache
# answering a repeat (queries counted at the server by unbound-control),
# and sift-milter rejecting a listed client IP and picking up a changed
# local list file.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

SIFT=$top_builddir/sift
MILTER=$top_builddir/sift-milter
MC=$top_builddir/sift-mclient
DATA=$top_srcdir/tests/data/dnsbl
it_need "$SIFT" "$MILTER" "$MC"
it_need_unbound

D=$IT_TMP
PORT=$(free_port)
mkdir "$D/rules" "$D/state"
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/rules/"

# ------------------------------------------------------------ the DNS server
V6=5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2
it_unbound_conf "$D" "$PORT" 1 >"$D/unbound.conf" <<EOF
	local-zone: "bl.test." static
	local-data: "bl.test. 300 IN SOA ns.bl.test. admin.bl.test. 1 3600 600 86400 60"
	local-data: "2.0.0.127.bl.test. 300 IN A 127.0.0.2"
	local-data: "2.2.0.192.bl.test. 300 IN A 127.0.0.2"
	local-data: '2.2.0.192.bl.test. 300 IN TXT "Listed by bl.test, see https://bl.test/?192.0.2.2"'
	local-data: "3.2.0.192.bl.test. 300 IN A 127.0.0.3"
	local-data: "9.2.0.192.bl.test. 300 IN A 127.255.255.254"
	local-data: "$V6.bl.test. 300 IN A 127.0.0.2"
	local-zone: "dbl.test." static
	local-data: "dbl.test. 300 IN SOA ns.dbl.test. admin.dbl.test. 1 3600 600 86400 60"
	local-data: "spam-sender.co.uk.dbl.test. 300 IN A 127.0.1.2"
	local-data: "spam-from.example.dbl.test. 300 IN A 127.0.1.2"
	local-zone: "uribl.test." static
	local-data: "uribl.test. 300 IN SOA ns.uribl.test. admin.uribl.test. 1 3600 600 86400 60"
	local-data: "spam-uri.example.uribl.test. 300 IN A 127.0.0.2"
	local-zone: "dead.test." deny
EOF
if ! it_unbound_start "$D/unbound.conf" "$D/unbound.log"; then
	fail "unbound did not start on 127.0.0.1:$PORT within 10 s"
	cat "$D/unbound.log" >&2
	it_done
fi
# Queries the server has answered (or dropped) so far.
queries() { "$UBCTL" -c "$D/unbound.conf" stats_noreset | sed -n 's/^total\.num\.queries=//p'; }
has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in output" >&2; return 1; }
hasnt() { case "$1" in *"$2"*) echo "  '$2' unexpectedly in output" >&2; return 1 ;; esac; return 0; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

printf '# a local copy of a list, rbldnsd ip4set\n:127.0.0.2:Local list: $ is listed\n192.0.2.0/30\n' \
	>"$D/local.ip4set"

LISTS="dnsbl_nameserver = 127.0.0.1:$PORT
dnsbl_list = bl ip bl.test 127.0.0.2=20:BL_SBL 127.0.0.3=2:BL_CSS txt=yes test_listed=127.0.0.2 test_unlisted=127.0.0.1
dnsbl_list = dbl domain dbl.test 127.0.1.2=2.5:DBL_SPAM
dnsbl_list = uribl uri uribl.test mask:0.0.0.2=3:URIBL_BLACK
dnsbl_list = local ip local.invalid 127.0.0.2=1.5:LOCAL_BL txt=yes file=$D/local.ip4set
dnsbl_local_check_interval = 0"
cat >"$D/sift.conf" <<EOF
log = stderr
rules = $D/rules
add_header_score = 5
reject_score = 15
deadline = 1s
$LISTS
EOF
cat >"$D/dead.conf" <<EOF
log = stderr
rules = $D/rules
deadline = 700ms
$LISTS
dnsbl_list = dead ip dead.test any=9:DEAD_LIST
EOF

# ------------------------------------------------------------ sift check
OUT=$("$SIFT" -c "$D/sift.conf" check "$DATA/listed.eml" 2>"$D/check.err")
echo "$OUT" >"$D/check.out"
check "check: the first untrusted Received hop is listed, TXT shown" \
	has "$OUT" 'received hop 192.0.2.2: 2.2.0.192.bl.test -> 127.0.0.2 via dns txt="Listed by bl.test, see https://bl.test/?192.0.2.2"'
check "check: BL_SBL scored 20" has "$OUT" "20.00  dnsbl  BL_SBL"
check "check: envelope sender domain reduced by the PSL and listed" \
	has "$OUT" "mail from spam-sender.co.uk: spam-sender.co.uk.dbl.test -> 127.0.1.2 via dns"
check "check: From domain reduced by the PSL and listed" \
	has "$OUT" "from spam-from.example: spam-from.example.dbl.test -> 127.0.1.2 via dns"
check "check: DBL_SPAM counted once" [ "$(echo "$OUT" | grep -c " DBL_SPAM ")" = 1 ]
check "check: URI domain listed" has "$OUT" "uri spam-uri.example: spam-uri.example.uribl.test -> 127.0.0.2 via dns"
check "check: the local file answered, and says so" \
	has "$OUT" "received hop 192.0.2.2: 192.0.2.2 -> 127.0.0.2 via file $D/local.ip4set"
check "check: local TXT with \$ expanded" has "$OUT" 'txt="Local list: 192.0.2.2 is listed"'
check "check: an unlisted URI domain is explained as not listed" has "$OUT" "uri example.net not listed"

TSV=$("$SIFT" -c "$D/sift.conf" check --tsv "$DATA/listed.eml" "$DATA/clean.eml" 2>>"$D/check.err")
check "check --tsv: listed message has all four lists" \
	has "$(echo "$TSV" | grep listed.eml | cut -f4)" "BL_SBL"
RULES=$(echo "$TSV" | grep listed.eml | cut -f4)
for r in DBL_SPAM URIBL_BLACK LOCAL_BL; do
	check "check --tsv: $r among the rules" has "$RULES" "$r"
done
check "check --tsv: clean message has no dnsbl rule" \
	[ "$(echo "$TSV" | grep clean.eml | cut -f4)" = "-" ]

# --- an IPv6 client (sift check --ip) asked by nibbles; an error code is not a listing
OUT6=$("$SIFT" -c "$D/sift.conf" check --ip 2001:db8::25 "$DATA/clean.eml" 2>>"$D/check.err")
check "check: IPv6 client listed by its nibble name" has "$OUT6" "$V6.bl.test -> 127.0.0.2"
OUTE=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.9 "$DATA/clean.eml" 2>"$D/err.err")
check "check: 127.255.255.254 is an error, not scored" hasnt "$OUTE" "BL_SBL"
check "check: the error is explained" has "$OUTE" "error answer 127.255.255.254"
check "check: the error is logged loudly" grep -q "an ERROR code, not a listing" "$D/err.err"

# --- a zone that never answers costs at most the deadline
T0=$(now_ms)
OUTD=$("$SIFT" -c "$D/dead.conf" check --ip 192.0.2.2 "$DATA/clean.eml" 2>>"$D/check.err")
T1=$(now_ms)
check "dead zone: the other lists still count" has "$OUTD" "BL_SBL"
check "dead zone: not scored" hasnt "$OUTD" "DEAD_LIST"
check "dead zone: explained" has "$OUTD" "no answer by the deadline"
# The deadline is the behaviour under test; only the start-up allowance scales.
STARTUP_MS=$(scaled_ms 1000)
DESC="dead zone: whole run within deadline (700 ms) + $STARTUP_MS ms of start-up"
check "$DESC ($((T1 - T0)) ms)" [ $((T1 - T0)) -lt $((700 + STARTUP_MS)) ]

# --- the cache: a repeat of the same message in one process sends no query
Q0=$(queries)
"$SIFT" -c "$D/sift.conf" check --tsv --ip 192.0.2.3 "$DATA/listed.eml" >/dev/null 2>&1
Q1=$(queries)
cp "$DATA/listed.eml" "$D/again.eml"
"$SIFT" -c "$D/sift.conf" check --tsv --ip 192.0.2.3 "$DATA/listed.eml" "$D/again.eml" \
	>"$D/twice.tsv" 2>&1
Q2=$(queries)
ONE=$((Q1 - Q0))
TWO=$((Q2 - Q1))
check "cache: one message asked the server $ONE times" [ "$ONE" -gt 0 ]
check "cache: the same message twice asked no more ($TWO = $ONE)" [ "$TWO" = "$ONE" ]
check "cache: the repeat still scored" [ "$(grep -c BL_CSS "$D/twice.tsv")" = 2 ]

# ------------------------------------------------------------ sift-milter
SOCK=$D/sift.sock
LOG=$D/milter.log
it_milter_start 10 "$D/sift.conf" "$D/state" "$SOCK" "$LOG"
MILTER_PID=$IT_MILTER_PID
mc() {
	_n=$1
	_ip=$2
	shift 2
	"$MC" -s "unix:$SOCK" -t 10000 -i "$_ip" -Q "$_n" --tsv "$@" >"$D/$_n.tsv" 2>"$D/$_n.err"
}
field() { tsv_field "$D/$1.tsv" "$2" "$3"; }

mc listed 192.0.2.2 "$DATA/clean.eml"
check "milter: a listed client IP is rejected" [ "$(field listed clean.eml 2)" = reject ]
check "milter: with a 550 reply" has "$(field listed clean.eml 3)" "550"
check "milter: the reply quotes the list's TXT text" \
	has "$(field listed clean.eml 3)" "Listed by bl.test, see https://bl.test/?192.0.2.2"
check "milter: logged with the list's rule" \
	grep -q "queue_id=listed00000000 ip=192.0.2.2 .*action=reject rules=.*BL_SBL" "$LOG"
mc auth 192.0.2.2 -a alice "$DATA/clean.eml"
check "milter: the same listed IP, SASL-authenticated ({auth_authen}), is accepted" \
	[ "$(field auth clean.eml 2)" = accept ]
check "milter: and not scored by the lists" hasnt "$(field auth clean.eml 4)" "BL_SBL"
mc unlisted 192.0.2.200 "$DATA/clean.eml"
check "milter: an unlisted client is accepted" [ "$(field unlisted clean.eml 2)" = accept ]
check "milter: without dnsbl hits" hasnt "$(field unlisted clean.eml 4)" "BL_"

# --- the local file changes under the running daemon: the next lookup sees it
mc before 198.51.100.9 "$DATA/clean.eml"
check "local file: 198.51.100.9 not yet listed" hasnt "$(field before clean.eml 4)" "LOCAL_BL"
printf ':127.0.0.2:Local list: $ is listed\n192.0.2.0/30\n198.51.100.9\n' >"$D/local.new"
mv "$D/local.new" "$D/local.ip4set"
mc after 198.51.100.9 "$DATA/clean.eml"
check "local file: reloaded, 198.51.100.9 now listed" has "$(field after clean.eml 4)" "LOCAL_BL"

kill -TERM "$MILTER_PID"
wait_for 10 sh -c "! kill -0 $MILTER_PID 2>/dev/null" || fail "sift-milter did not stop"
it_untrack "$MILTER_PID"

if [ "$IT_FAILS" -ne 0 ]; then
	echo "--- sift check output" >&2
	cat "$D/check.out" "$D/check.err" >&2
	echo "--- daemon log" >&2
	tail -30 "$LOG" >&2
fi
it_done
