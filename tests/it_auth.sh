#!/bin/sh
# it_auth.sh - sender authentication end to end against a real unbound on
# a loopback port serving SPF, DKIM key and DMARC records for test
# domains: `sift check` with SPF pass, fail, softfail, neutral, none,
# permerror and temperror (a nameserver that never answers), DKIM of a
# message signed here with a fresh key (valid, and a body changed in
# transit), DMARC pass and reject, the Authentication-Results field and
# the removal of a forged one, trust in an upstream authserv-id; then
# sift-milter rejecting a DMARC failure under p=reject.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

SIFT=$top_builddir/sift
MILTER=$top_builddir/sift-milter
MC=$top_builddir/sift-mclient
DATA=$top_srcdir/tests/data/auth
SIGNER=${OPENDKIM_TESTMSG:-$(command -v opendkim-testmsg || echo /usr/sbin/opendkim-testmsg)}
it_need "$SIFT" "$MILTER" "$MC"
it_need_unbound
[ -x "$SIGNER" ] || skip_all "opendkim-testmsg (Debian package opendkim-tools) is not installed"
command -v openssl >/dev/null || skip_all "openssl is not installed"
command -v python3 >/dev/null || skip_all "python3 is not installed"

D=$IT_TMP
PORT=$(free_port)
mkdir "$D/state" "$D/rules"
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/rules/"
# SpamAssassin's AskDNS with the signing domains of the valid signatures,
# as a DKIM welcomelist (Spamhaus's DWL) is asked
cat >"$D/rules/20_dwl.cf" <<'RULES'
askdns   T_DWL  _DKIMDOMAIN_._vouch.dwl.test. TXT /\b(transaction|list|all)\b/
tflags   T_DWL  net
score    T_DWL  -0.1
RULES

# ------------------------------------------------------------ a key, made now
openssl genrsa -out "$D/sel.key" 1024 2>/dev/null
PUB=$(openssl rsa -in "$D/sel.key" -pubout -outform DER 2>/dev/null | base64 | tr -d '\n')
[ -n "$PUB" ] || { fail "openssl made no key"; it_done; }

# ------------------------------------------------------------ the DNS server
# An SPF tree of 111 records, each including ten more: RFC 7208 allows one
# check 10 DNS-querying terms, libspf2 counted them per record.
inc() { i=0; printf 'v=spf1'; while [ $i -lt 10 ]; do printf ' include:%s%s' "$i" "$1"; i=$((i + 1)); done; printf ' -all'; }
{
	printf "\tlocal-data: 'fan.test. 300 IN TXT \"%s\"'\n" "$(inc .fan.test)"
	for a in 0 1 2 3 4 5 6 7 8 9; do
		printf "\tlocal-data: '%s.fan.test. 300 IN TXT \"%s\"'\n" "$a" "$(inc ".$a.fan.test")"
		for b in 0 1 2 3 4 5 6 7 8 9; do
			printf "\tlocal-data: '%s.%s.fan.test. 300 IN TXT \"v=spf1 -all\"'\n" "$b" "$a"
		done
	done
} >"$D/fan.zone"
# A long record (RFC 7208 sets no bound; libspf2 kept only its first 511
# compiled bytes of mechanisms, about 60 ip4 terms, and lost the "-all"),
# written as character-strings of at most 255 bytes.
txt() { printf '%s' "$1" | fold -w 250 | sed 's/.*/"&"/' | tr '\n' ' '; }
ip4s() { i=0; while [ $i -lt "$3" ]; do printf ' %sip4:%s.%s.0/24' "$1" "$2" $i; i=$((i + 1)); done; }
mixed() { i=0; while [ $i -lt "$1" ]; do printf ' ip4:10.0.%s.0/24 -ip4:10.1.%s.0/24' $i $i; i=$((i + 1)); done; }
ip6s() { i=0; while [ $i -lt "$1" ]; do printf ' ip6:2001:db8:%x::/48' $i; i=$((i + 1)); done; }
{
	printf "\tlocal-data: 'long.test. 300 IN TXT %s'\n" \
		"$(txt "v=spf1$(ip4s '' 10.0 40) -ip4:192.0.2.99$(ip6s 30) ip4:192.0.2.10$(ip4s + 10.1 50)$(ip4s - 10.2 70) ~all")"
	# too long even with its runs of one qualifier moved out: they are all one term long
	printf "\tlocal-data: 'toolong.test. 300 IN TXT %s'\n" \
		"$(txt "v=spf1$(mixed 60) ip4:192.0.2.10 -all")"
	# an SPF record among 60 other TXT records (site verification tokens),
	# which unbound rotates: only the first 32 were kept
	i=0
	while [ $i -lt 60 ]; do
		printf "\tlocal-data: 'crowded.test. 300 IN TXT \"token-%03d\"'\n" $i
		i=$((i + 1))
	done
	printf "\tlocal-data: 'crowded.test. 300 IN TXT \"v=spf1 ip4:192.0.2.10 -all\"'\n"
} >>"$D/fan.zone"
# Every name outside test. is answered "no such name" locally: nothing leaves.
{ cat "$D/fan.zone"; cat; } <<EOF | it_unbound_conf "$D" "$PORT" 1 >"$D/unbound.conf"
	local-zone: "test." static
	local-data: "test. 300 IN SOA ns.test. admin.test. 1 3600 600 86400 60"
	local-data: 'pass.test. 300 IN TXT "v=spf1 ip4:192.0.2.10 -all"'
	local-data: 'mail.pass.test. 300 IN TXT "v=spf1 ip4:192.0.2.10 -all"'
	local-data: '_dmarc.pass.test. 300 IN TXT "v=DMARC1; p=reject"'
	local-data: 'sel._domainkey.pass.test. 300 IN TXT "v=DKIM1; k=rsa; p=$PUB"'
	local-data: 'pass.test._vouch.dwl.test. 300 IN TXT "all"'
	local-data: 'soft.test. 300 IN TXT "v=spf1 ~all"'
	local-data: 'neutral.test. 300 IN TXT "v=spf1 " "?all"'
	local-data: 'none.test. 300 IN TXT "just some text"'
	local-data: 'perm.test. 300 IN TXT "v=spf1 -all"'
	local-data: 'perm.test. 300 IN TXT "v=spf1 +all"'
	local-data: 'other.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"'
	local-data: 'voids.test. 300 IN TXT "v=spf1 a:v1.voids.test a:v2.voids.test a:v3.voids.test -all"'
	local-data: 'macro.test. 300 IN TXT "v=spf1 exists:%{l}.%{d} -all"'
	local-data: 'syntax.test. 300 IN TXT "v=spf1 ip4:192.0.2.10 frob:x.test -all"'
	local-data: 'junk._domainkey.pass.test. 300 IN TXT "v=DKIM1; k=rsa; p=!!not-base64!!"'
EOF
if ! it_unbound_start "$D/unbound.conf" "$D/unbound.log"; then
	fail "unbound did not start on 127.0.0.1:$PORT within 10 s"
	cat "$D/unbound.log" >&2
	it_done
fi
has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in output" >&2; return 1; }
hasnt() { case "$1" in *"$2"*) echo "  '$2' unexpectedly in output" >&2; return 1 ;; esac; return 0; }

cat >"$D/sift.conf" <<EOF
state_dir = $D/state
rules = $D/rules
dns_nameserver = 127.0.0.1:$PORT
dns_timeout = 300ms
dns_tries = 1
deadline = 2s
auth_enable = yes
auth_serv_id = mx.sift.test
EOF
# check FROM IP MESSAGE [HELO]: the explained verdict of sift check
run() {
	"$SIFT" -c "${CONF:-$D/sift.conf}" check --ip "$2" --helo "${4:-mail.pass.test}" \
		--from "$1" "$3" 2>&1
}

# ------------------------------------------------------------ SPF
OUT=$(run alice@pass.test 192.0.2.10 "$DATA/plain.eml")
check "spf pass: SPF_PASS" has "$OUT" "SPF_PASS"
check "spf pass: the HELO passes too" has "$OUT" "SPF_HELO_PASS"
check "spf pass: Authentication-Results added with our authserv-id" \
	has "$OUT" "field  + Authentication-Results: mx.sift.test;"
check "spf pass: A-R says spf=pass smtp.mailfrom" has "$OUT" "spf=pass smtp.mailfrom=alice@pass.test"
check "spf pass + aligned: DMARC_PASS" has "$OUT" "DMARC_PASS"
check "no signature: dkim=none" has "$OUT" "dkim=none"
OUT=$(run alice@pass.test 198.51.100.7 "$DATA/plain.eml")
check "spf fail: SPF_FAIL" has "$OUT" "SPF_FAIL"
check "spf fail + p=reject: DMARC_REJECT" has "$OUT" "DMARC_REJECT"
check "spf fail + p=reject: the message is rejected" has "$OUT" "action reject"
OUT=$(run x@soft.test 198.51.100.7 "$DATA/plain.eml")
check "spf softfail: SPF_SOFTFAIL" has "$OUT" "SPF_SOFTFAIL"
OUT=$(run x@neutral.test 198.51.100.7 "$DATA/plain.eml")
check "spf neutral (two strings joined): SPF_NEUTRAL" has "$OUT" "SPF_NEUTRAL"
OUT=$(run x@none.test 198.51.100.7 "$DATA/plain.eml")
check "spf none: SPF_NONE" has "$OUT" "SPF_NONE"
OUT=$(run x@nxdomain.test 198.51.100.7 "$DATA/plain.eml")
check "spf of a domain that does not exist: SPF_NONE" has "$OUT" "SPF_NONE"
OUT=$(run x@perm.test 198.51.100.7 "$DATA/plain.eml")
check "spf with two records: T_SPF_PERMERROR" has "$OUT" "T_SPF_PERMERROR"
OUT=$(run x@fan.test 198.51.100.7 "$DATA/plain.eml")
check "spf past 10 lookups through includes: T_SPF_PERMERROR" has "$OUT" "T_SPF_PERMERROR"
OUT=$(run x@voids.test 198.51.100.7 "$DATA/plain.eml")
check "spf past 2 void lookups: T_SPF_PERMERROR" has "$OUT" "T_SPF_PERMERROR"
OUT=$(run x@syntax.test 192.0.2.10 "$DATA/plain.eml")
check "spf record with an unknown mechanism: T_SPF_PERMERROR, not none" has "$OUT" "T_SPF_PERMERROR"
check "spf record with an unknown mechanism: A-R says spf=permerror" has "$OUT" "spf=permerror smtp.mailfrom"
OUT=$(run x@long.test 192.0.2.10 "$DATA/plain.eml")
check "spf long record, a server listed after 70 terms: SPF_PASS" has "$OUT" "SPF_PASS"
OUT=$(run x@long.test 10.1.49.5 "$DATA/plain.eml")
check "spf long record, a server in a later run of ip4 terms: SPF_PASS" has "$OUT" "SPF_PASS"
OUT=$(run x@long.test 10.2.69.5 "$DATA/plain.eml")
check "spf long record, a server in its run of -ip4 terms: SPF_FAIL" has "$OUT" "SPF_FAIL"
OUT=$(run x@long.test 10.0.3.5 "$DATA/plain.eml")
check "spf long record, a server in its first run: SPF_PASS" has "$OUT" "SPF_PASS"
OUT=$(run x@long.test 198.51.100.7 "$DATA/plain.eml")
check "spf long record, a server not listed: SPF_SOFTFAIL (its ~all), not neutral" has "$OUT" "SPF_SOFTFAIL"
OUT=$(run x@long.test 192.0.2.99 "$DATA/plain.eml")
check "spf long record, a -ip4 term between runs: SPF_FAIL" has "$OUT" "SPF_FAIL"
OUT=$(run x@long.test 2001:db8:1d::5 "$DATA/plain.eml")
check "spf long record, an ip6 server: SPF_PASS" has "$OUT" "SPF_PASS"
n=0
for k in 1 2 3 4 5 6 7 8; do
	case "$(run x@crowded.test 192.0.2.10 "$DATA/plain.eml")" in *SPF_PASS*) n=$((n + 1)) ;; esac
done
check "spf record among 60 other TXT records: SPF_PASS every time ($n of 8)" [ "$n" -eq 8 ]
OUT=$(run x@toolong.test 192.0.2.10 "$DATA/plain.eml")
check "spf record too long to evaluate whole: T_SPF_PERMERROR, not neutral" has "$OUT" "T_SPF_PERMERROR"
LONG=$(printf '%0300d' 0 | tr 0 x)
OUT=$(run "$LONG.y@macro.test" 198.51.100.7 "$DATA/plain.eml")
check "spf macro longer than 253 bytes: cut from the left, not a temperror" has "$OUT" "SPF_FAIL"
check "spf macro longer than 253 bytes: no T_SPF_TEMPERROR" hasnt "$OUT" "T_SPF_TEMPERROR"

# ------------------------------------------------------------ temperror: a nameserver that never answers
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
time.sleep(60)
' >"$D/silent.port" &
SILENT=$!
it_track "$SILENT"
wait_for 5 test -s "$D/silent.port"
sed "s/^dns_nameserver = .*/dns_nameserver = 127.0.0.1:$(cat "$D/silent.port")/" \
	"$D/sift.conf" >"$D/silent.conf"
T0=$(date +%s%N)
OUT=$(CONF=$D/silent.conf run alice@pass.test 192.0.2.10 "$DATA/plain.eml")
T1=$(date +%s%N)
check "silent DNS: T_SPF_TEMPERROR" has "$OUT" "T_SPF_TEMPERROR"
check "silent DNS: judged on less evidence (degraded)" has "$OUT" "degraded auth"
check "silent DNS: A-R says spf=temperror" has "$OUT" "spf=temperror"
ELAPSED=$(((T1 - T0) / 1000000))
LIMIT=$((2000 + $(scaled_ms 1500)))
check "silent DNS: bounded by the 2 s deadline ($ELAPSED ms < $LIMIT)" [ "$ELAPSED" -lt "$LIMIT" ]
kill "$SILENT" 2>/dev/null
wait "$SILENT" 2>/dev/null
it_untrack "$SILENT"

# ------------------------------------------------------------ DKIM, signed now
"$SIGNER" -d pass.test -s sel -k "$D/sel.key" <"$DATA/plain.eml" >"$D/signed.eml" 2>"$D/sign.err"
check "the test message is signed" grep -q "^DKIM-Signature:" "$D/signed.eml"
OUT=$(run other@other.test 192.0.2.10 "$D/signed.eml")
check "dkim valid: DKIM_VALID" has "$OUT" "DKIM_VALID "
check "dkim valid from the author's domain: DKIM_VALID_AU" has "$OUT" "DKIM_VALID_AU"
check "dkim valid: A-R says dkim=pass header.d=pass.test" has "$OUT" "dkim=pass header.d=pass.test header.s=sel"
check "dkim aligned, spf not: DMARC_PASS" has "$OUT" "DMARC_PASS"
check "askdns: _DKIMDOMAIN_ asks about the valid signature's domain" has "$OUT" "T_DWL"
check "askdns: _DKIMDOMAIN_ explained by the name asked" has "$OUT" "pass.test._vouch.dwl.test"
sed 's/the figures are attached/the figures are NOT attached/' "$D/signed.eml" >"$D/changed.eml"
OUT=$(run other@other.test 192.0.2.10 "$D/changed.eml")
check "body changed in transit: DKIM_INVALID" has "$OUT" "DKIM_INVALID"
check "body changed in transit: dkim=fail" has "$OUT" "dkim=fail"
check "body changed in transit: no DKIM_VALID" hasnt "$OUT" "DKIM_VALID "
check "askdns: no valid signature, _DKIMDOMAIN_ asks nothing" hasnt "$OUT" "T_DWL"
check "body changed, spf unaligned, p=reject: DMARC_REJECT" has "$OUT" "DMARC_REJECT"
# A key record that is not one is a permanent error (RFC 6376 6.1.2).
"$SIGNER" -d pass.test -s junk -k "$D/sel.key" <"$DATA/plain.eml" >"$D/junk.eml" 2>>"$D/sign.err"
OUT=$(run other@other.test 192.0.2.10 "$D/junk.eml")
check "a malformed key record: dkim=permerror" has "$OUT" "dkim=permerror"
check "a malformed key record: not a temperror" hasnt "$OUT" "dkim=temperror"
# 40 signatures, each naming its own selector: only the first 16 are
# verified (each costs a key lookup, a public-key operation, a body pass).
{
	i=0
	while [ $i -lt 40 ]; do
		printf 'DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=pass.test; s=k%d;\n' $i
		printf '\th=from:subject; bh=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=; b=AAAA\n'
		i=$((i + 1))
	done
	cat "$D/signed.eml"
} >"$D/many-sigs.eml"
Q0=$("$UBCTL" -c "$D/unbound.conf" stats_noreset | sed -n 's/^total.num.queries=//p')
OUT=$(run other@other.test 192.0.2.10 "$D/many-sigs.eml")
Q1=$("$UBCTL" -c "$D/unbound.conf" stats_noreset | sed -n 's/^total.num.queries=//p')
check "41 signatures: at most 16 key lookups and a few others ($((Q1 - Q0)) queries)" \
	[ $((Q1 - Q0)) -le 24 ]
# The From's display name padded past 8 KB hid the address from DMARC.
PAD=$(printf '%08200d' 0 | tr 0 A)
sed "s/^From: Alice </From: \"$PAD\" </" "$DATA/plain.eml" >"$D/padded-from.eml"
OUT=$(run alice@pass.test 198.51.100.7 "$D/padded-from.eml")
check "a From display name of 8 KB still gives the author domain: DMARC_REJECT" \
	has "$OUT" "DMARC_REJECT"

# ------------------------------------------------------------ forged and trusted Authentication-Results
{
	echo "Authentication-Results: mx.sift.test; spf=pass smtp.mailfrom=alice@pass.test;"
	echo "	dkim=pass header.d=pass.test; dmarc=pass header.from=pass.test"
	echo "Authentication-Results: upstream.test; spf=pass smtp.mailfrom=alice@pass.test;"
	echo "	dkim=pass header.d=pass.test; dmarc=pass header.from=pass.test"
	cat "$DATA/plain.eml"
} >"$D/forged.eml"
OUT=$(run alice@pass.test 198.51.100.7 "$D/forged.eml")
check "a field claiming our authserv-id is removed" has "$OUT" "field  - Authentication-Results #1"
check "and not believed: SPF_FAIL" has "$OUT" "SPF_FAIL"
{ cat "$D/sift.conf"; echo "auth_trust_authserv_id = upstream.test"; } >"$D/trust.conf"
OUT=$(CONF=$D/trust.conf run alice@pass.test 198.51.100.7 "$D/forged.eml")
check "trusted upstream: its spf=pass is taken" has "$OUT" "SPF_PASS"
check "trusted upstream: its dkim=pass is taken" has "$OUT" "DKIM_VALID_AU"
check "trusted upstream: DMARC_PASS" has "$OUT" "DMARC_PASS"
check "trusted upstream: ours still removed" has "$OUT" "field  - Authentication-Results #1"
# Past max_header_fields (1000) the fields are not scored, but a forged
# Authentication-Results among them is still found and removed.
{
	i=0
	while [ $i -lt 1100 ]; do
		echo "X-Pad-$i: $i"
		i=$((i + 1))
	done
	echo "Authentication-Results: upstream.test; spf=pass smtp.mailfrom=alice@pass.test"
	echo "Authentication-Results: mx.sift.test; spf=pass smtp.mailfrom=alice@pass.test"
	cat "$DATA/plain.eml"
} >"$D/padded.eml"
OUT=$(run alice@pass.test 198.51.100.7 "$D/padded.eml")
check "past max_header_fields: said" has "$OUT" "past max_header_fields (1000)"
check "past max_header_fields: a forged field is still removed" \
	has "$OUT" "field  - Authentication-Results #2"
check "past max_header_fields: the other is left" hasnt "$OUT" "Authentication-Results #1"
check "past max_header_fields: and not believed: SPF_FAIL" has "$OUT" "SPF_FAIL"
# 9 KB of folding white space before our authserv-id hid it.
{
	printf 'Authentication-Results:'
	i=0
	while [ $i -lt 450 ]; do
		printf '          () \t        \n'
		i=$((i + 1))
	done
	echo " mx.sift.test; spf=pass smtp.mailfrom=alice@pass.test"
	cat "$DATA/plain.eml"
} >"$D/padded-ar.eml"
OUT=$(run alice@pass.test 198.51.100.7 "$D/padded-ar.eml")
check "a forged field behind 9 KB of white space is still removed" \
	has "$OUT" "field  - Authentication-Results #1"

# ------------------------------------------------------------ SpamAssassin's eval tests answer from auth
# Rules written as SpamAssassin ships them, inside its plugins' ifplugin
# blocks, which are read because auth runs. SPF_FAIL is also auth's own
# hit: one fact, scored once, and still seen by metas.
mkdir "$D/sarules"
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/sarules/"
cat >"$D/sarules/25_sa_auth.cf" <<'EOF'
ifplugin Mail::SpamAssassin::Plugin::SPF
header SA_IT_SPF_FAIL eval:check_for_spf_fail()
score  SA_IT_SPF_FAIL 2.5
header SA_IT_SPF_PASS eval:check_for_spf_pass()
score  SA_IT_SPF_PASS -0.5
header SPF_FAIL       eval:check_for_spf_fail()
score  SPF_FAIL       0.9
header SA_IT_SPF_WL   eval:check_for_spf_welcomelist_from()
score  SA_IT_SPF_WL   -0.1
welcomelist_from_spf alice@pass.test
endif
ifplugin Mail::SpamAssassin::Plugin::DKIM
header SA_IT_DKIM_VALID eval:check_dkim_valid()
score  SA_IT_DKIM_VALID -0.1
header SA_IT_DKIM_WL  eval:check_for_def_dkim_welcomelist_from()
score  SA_IT_DKIM_WL  -0.1
def_welcomelist_from_dkim *@pass.test
header SA_IT_THIRD_WL eval:check_for_dkim_welcomelist_from()
score  SA_IT_THIRD_WL -0.1
welcomelist_from_dkim *@pass.test other.test
endif
ifplugin Mail::SpamAssassin::Plugin::Dmarc
header SA_IT_DMARC_REJECT eval:check_dmarc_reject()
score  SA_IT_DMARC_REJECT 1.0
endif
meta  SA_IT_META_SPF SPF_FAIL && SA_IT_SPF_FAIL
score SA_IT_META_SPF 0.5
EOF
sed "s|^rules = .*|rules = $D/sarules|" "$D/sift.conf" >"$D/sa.conf"
OUT=$(CONF=$D/sa.conf run alice@pass.test 198.51.100.7 "$DATA/plain.eml")
check "sa evals: check_for_spf_fail() hits on an SPF failure" has "$OUT" "SA_IT_SPF_FAIL"
check "sa evals: check_for_spf_pass() does not" hasnt "$OUT" "SA_IT_SPF_PASS"
check "sa evals: welcomelist_from_spf without SPF pass" hasnt "$OUT" "SA_IT_SPF_WL"
check "sa evals: check_dmarc_reject() hits under p=reject" has "$OUT" "SA_IT_DMARC_REJECT"
check "sa evals: a meta over them hits" has "$OUT" "SA_IT_META_SPF"
check "sa evals: SPF_FAIL is scored once (auth's hit and the rule are one fact)" \
	[ "$(printf '%s\n' "$OUT" | grep -c '[^_]SPF_FAIL ')" = 1 ]
OUT=$(CONF=$D/sa.conf run alice@pass.test 192.0.2.10 "$DATA/plain.eml")
check "sa evals: check_for_spf_pass() hits on an SPF pass" has "$OUT" "SA_IT_SPF_PASS"
check "sa evals: welcomelist_from_spf: the sender listed, SPF pass" has "$OUT" "SA_IT_SPF_WL"
check "sa evals: no DKIM signature, no DKIM welcomelist" hasnt "$OUT" "SA_IT_DKIM_WL"
check "sa evals: and check_for_spf_fail() does not" hasnt "$OUT" "SA_IT_SPF_FAIL"
OUT=$(CONF=$D/sa.conf run other@other.test 192.0.2.10 "$D/signed.eml")
check "sa evals: check_dkim_valid() hits on a valid signature" has "$OUT" "SA_IT_DKIM_VALID"
check "sa evals: def_welcomelist_from_dkim: the author's domain signed" has "$OUT" "SA_IT_DKIM_WL"
check "sa evals: welcomelist_from_dkim wants other.test's signature" hasnt "$OUT" "SA_IT_THIRD_WL"
OUT=$(CONF=$D/sa.conf run other@other.test 192.0.2.10 "$D/changed.eml")
check "sa evals: a broken signature welcomelists nobody" hasnt "$OUT" "SA_IT_DKIM_WL"
sed -e "s|^auth_enable = .*|auth_enable = no|" "$D/sa.conf" >"$D/sa-noauth.conf"
OUT=$(CONF=$D/sa-noauth.conf run alice@pass.test 198.51.100.7 "$DATA/plain.eml")
check "sa evals: without auth the plugins' blocks are not read" hasnt "$OUT" "SA_IT_SPF_FAIL"

# ------------------------------------------------------------ the daemon: DMARC reject over the milter protocol
SOCK=$D/milter.sock
it_milter_start 10 "$D/sift.conf" "$D/state" "$SOCK" "$D/milter.err"
"$MC" -s "unix:$SOCK" -t 10000 -i 198.51.100.7 -H mail.pass.test -f alice@pass.test --tsv \
	"$DATA/plain.eml" >"$D/mc1.tsv" 2>"$D/mc1.err"
check "milter: a DMARC failure under p=reject is rejected" [ "$(tail -n 1 "$D/mc1.tsv" | cut -f2)" = reject ]
check "milter: with the policy in the reply" grep -q "DMARC policy of pass.test" "$D/mc1.tsv"
"$MC" -s "unix:$SOCK" -t 10000 -i 192.0.2.10 -H mail.pass.test -f alice@pass.test --tsv \
	"$D/signed.eml" >"$D/mc2.tsv" 2>"$D/mc2.err"
check "milter: an authenticated message is accepted" [ "$(tail -n 1 "$D/mc2.tsv" | cut -f2)" = accept ]
check "milter: with Authentication-Results inserted on top" \
	grep -q "ins\[0\] Authentication-Results: mx.sift.test;" "$D/mc2.tsv"
check "milter: dkim=pass over the milter protocol (fields rebuilt byte-exact)" \
	grep -q "dkim=pass header.d=pass.test" "$D/mc2.tsv"
it_done
