#!/bin/sh
# it_sadns.sh - SpamAssassin's DNSEval rules (check_rbl, check_rbl_sub,
# check_rbl_txt) through Sift's DNS service against a real unbound on a
# loopback port: a listed relay hits, an unlisted one does not, exact,
# bitmask and regex subtests, TXT text, a refusal code that is never a
# listing, and a zone that never answers costing no more than the deadline;
# the name forms, URIDNSBL's chains, askdns and check_dns_sender likewise.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

SIFT=$top_builddir/sift
MC=$top_builddir/sift-mclient
MSG=$top_srcdir/tests/data/dnsbl/clean.eml
it_need "$SIFT" "$top_builddir/sift-milter" "$MC"
it_need_unbound

D=$IT_TMP
PORT=$(free_port)
mkdir "$D/rules"
cp "$top_srcdir/tests/data/sadns/50_dnseval.cf" "$D/rules/"

# Names outside the test zones (askdns asks about the sender's domain and the
# HELO) get NXDOMAIN: it_unbound_conf's server never recurses.
it_unbound_conf "$D" "$PORT" 1 >"$D/unbound.conf" <<EOF2
	local-zone: "bl.test." static
	local-data: "bl.test. 300 IN SOA ns.bl.test. admin.bl.test. 1 3600 600 86400 60"
	local-data: "2.2.0.192.bl.test. 300 IN A 127.0.0.2"
	local-data: '2.2.0.192.bl.test. 300 IN TXT "Listed by bl.test"'
	local-data: "3.2.0.192.bl.test. 300 IN A 127.0.0.3"
	local-data: "10.2.0.192.bl.test. 300 IN A 127.0.0.10"
	local-data: "9.2.0.192.bl.test. 300 IN A 127.255.255.254"
	local-zone: "uribl.test." static
	local-data: "uribl.test. 300 IN SOA ns.uribl.test. admin.uribl.test. 1 3600 600 86400 60"
	local-data: "spam-uri.example.uribl.test. 300 IN A 127.0.0.2"
	local-data: "skipme.example.uribl.test. 300 IN A 127.0.0.2"
	local-data: "7.100.51.198.uribl.test. 300 IN A 127.0.0.2"
	local-zone: "dbl.test." static
	local-data: "dbl.test. 300 IN SOA ns.dbl.test. admin.dbl.test. 1 3600 600 86400 60"
	local-data: "spam-uri.example.dbl.test. 300 IN A 127.0.1.2"
	local-zone: "fresh.test." static
	local-data: "example.net.fresh.test. 300 IN A 127.2.0.2"
	local-zone: "spf-all.test." static
	local-data: 'spf-all.test. 300 IN TXT "v=spf1 +all"'
	local-zone: "helo.test." static
	local-data: "mx.helo.test. 300 IN A 198.51.100.1"
	local-zone: "dead.test." deny
	local-zone: "refuse.test." refuse
	local-zone: "hbl.test." static
	local-data: "test.hbl.test. 300 IN A 127.0.0.2"
	local-data: "2.0.0.127.hbl.test. 300 IN A 127.255.255.254"
	local-data: "mail.sender.example.org.hbl.test. 300 IN A 127.0.0.2"
	local-data: "author.example.com.hbl.test. 300 IN A 127.0.0.3"
	local-data: "example.com.hbl.test. 300 IN A 127.0.0.4"
	local-data: "replyhost.example.net.hbl.test. 300 IN A 127.0.0.5"
	local-data: "77.100.51.198.hbl.test. 300 IN A 127.0.0.6"
	local-data: "9.100.51.198.hbl.test. 300 IN A 127.0.0.7"
	local-data: "7.0.0.10.hbl.test. 300 IN A 127.0.0.8"
	local-zone: "mxonly.test." static
	local-data: "mxonly.test. 300 IN MX 10 mx.helo.test."
	local-zone: "hash.test." static
	local-data: "test.hash.test. 300 IN A 127.0.0.2"
	local-data: "1bvbmseystwetqtfn5au4m4gfg7xjanvn2.hash.test. 300 IN A 127.0.0.2"
	local-data: "ty7xknwljolxjbtqlu3fuldzfx2yev6c5sqko3nzbqldkrm4meca.hash.test. 300 IN A 127.0.0.3"
	local-data: "1234.hash.test. 300 IN A 127.0.0.4"
	local-data: "3d6c85a4776a7543049c4cd7d7aeb667f67bed24.hash.test. 300 IN A 127.0.0.5"
	local-data: "a861eabed080da8884f62cced7817363.hash.test. 300 IN A 127.0.0.6"
	local-data: "1beeg6oegdnuguuogdpmq5wljrmguyeqsr.hash.test. 300 IN A 127.255.255.254"
	local-zone: "pair.test." static
	local-data: "spf-all.test.example.net.pair.test. 300 IN A 127.0.0.2"
	local-data: "example.org.example.net.pair.test. 300 IN A 127.0.0.3"
	local-data: "example.net.x.example.net.pair.test. 300 IN A 127.0.0.2"
	local-zone: "blk.test." static
	local-data: "blk.test. 300 IN SOA ns.blk.test. admin.blk.test. 1 3600 600 86400 60"
	local-data: "6.2.0.192.blk.test. 300 IN A 127.255.255.255"
	local-data: "7.2.0.192.blk.test. 300 IN A 127.0.0.2"
	local-data: "8.2.0.192.blk.test. 300 IN A 127.0.0.2"
	local-zone: "nsdom.example." static
	local-data: "nsdom.example. 300 IN NS ns1.nshost.example."
	local-data: "nsdom.example. 300 IN NS ns2.nshost.example."
	local-data: "www.nsdom.example. 300 IN A 192.0.2.60"
	local-zone: "nshost.example." static
	local-data: "ns1.nshost.example. 300 IN A 192.0.2.53"
	local-data: "ns2.nshost.example. 300 IN A 192.0.2.61"
	local-zone: "adom.example." static
	local-data: "adom.example. 300 IN NS ns.cleanns.example."
	local-data: "www.adom.example. 300 IN A 192.0.2.54"
	local-zone: "cleanns.example." static
	local-data: "ns.cleanns.example. 300 IN A 192.0.2.62"
	local-zone: "privns.example." static
	local-data: "privns.example. 300 IN NS ns.privns.example."
	local-data: "ns.privns.example. 300 IN A 10.0.0.53"
	local-zone: "slowns.example." static
	local-data: "slowns.example. 300 IN NS ns.dead.test."
	local-zone: "sbl.test." static
	local-data: "sbl.test. 300 IN SOA ns.sbl.test. admin.sbl.test. 1 3600 600 86400 60"
	local-data: "53.2.0.192.sbl.test. 300 IN A 127.0.0.2"
	local-data: "54.2.0.192.sbl.test. 300 IN A 127.0.0.2"
	local-data: "53.0.0.10.sbl.test. 300 IN A 127.0.0.2"
	local-zone: "nsbl.test." static
	local-data: "nsbl.test. 300 IN SOA ns.nsbl.test. admin.nsbl.test. 1 3600 600 86400 60"
	local-data: "nshost.example.nsbl.test. 300 IN A 127.0.0.2"
	local-data: "ns.cleanns.example.nsbl.test. 300 IN A 127.0.0.2"
EOF2
if ! it_unbound_start "$D/unbound.conf" "$D/unbound.log"; then
	fail "unbound did not start on 127.0.0.1:$PORT within 10 s"
	cat "$D/unbound.log" >&2
	it_done
fi
has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in output" >&2; return 1; }
hasnt() { case "$1" in *"$2"*) echo "  '$2' unexpectedly in output" >&2; return 1 ;; esac; return 0; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# score set 1: network tests on, no Bayes
cat >"$D/sift.conf" <<EOF2
log = stderr
rules = $D/rules
rules_score_set = 1
bayes_enable = no
dns_nameserver = 127.0.0.1:$PORT
deadline = 700ms
EOF2
run() { "$SIFT" -c "$D/sift.conf" check --ip "$1" "$MSG" 2>>"$D/check.err"; }

OUT=$(run 192.0.2.2)
echo "$OUT" >"$D/check.out"
check "listed relay: check_rbl hits" has "$OUT" "rules  T_RCVD_IN_BL"
check "listed relay: explained by the query and its answer" has "$OUT" "2.2.0.192.bl.test -> 127.0.0.2"
check "listed relay: check_rbl_txt regex on the TXT text hits" has "$OUT" "T_RCVD_IN_TXT"
check "listed relay: check_rbl_sub 127.0.0.3 misses 127.0.0.2" hasnt "$OUT" "T_RCVD_IN_CSS"
check "listed relay: bitmask 8 misses 127.0.0.2" hasnt "$OUT" "T_RCVD_IN_MASK"

OUT=$(run 192.0.2.3)
check "127.0.0.3: the set's check_rbl_sub hits" has "$OUT" "T_RCVD_IN_CSS"
check "127.0.0.3: check_rbl with no subtest hits too" has "$OUT" "T_RCVD_IN_BL"

OUT=$(run 192.0.2.10)
check "127.0.0.10: bitmask 8 hits" has "$OUT" "T_RCVD_IN_MASK"
check "127.0.0.10: regex subtest hits" has "$OUT" "T_RCVD_IN_RE"
check "127.0.0.10: exact subtest 127.0.0.3 misses" hasnt "$OUT" "T_RCVD_IN_CSS"

OUT=$(run 192.0.2.1)
check "unlisted relay: no list rule hits" hasnt "$OUT" "T_RCVD_IN_"

OUT=$(run 192.0.2.9)
check "refusal code: not a listing" hasnt "$OUT" "T_RCVD_IN_BL"
check "refusal code: not even for a subtest asking for it" hasnt "$OUT" "T_RCVD_IN_REFUSED"
check "refusal code: logged as an error" grep -q "an ERROR code, not a listing" "$D/check.err"

STARTUP_MS=$(scaled_ms 1000)

# URIDNSBL: the registered domains of the body's URI hosts
URIS=$top_srcdir/tests/data/sadns
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 "$URIS/uri.eml" 2>>"$D/check.err")
echo "$OUT" >>"$D/check.out"
check "urirhssub: the registered domain listed with bit 2 hits" has "$OUT" "T_URIBL_BLACK"
check "urirhssub: bit 4 not set, no hit" hasnt "$OUT" "T_URIBL_GREY"
check "urirhssub: an exact code hits" has "$OUT" "T_DBL_SPAM"
check "urirhssub: explained by the domain asked about" has "$OUT" "spam-uri.example.dbl.test -> 127.0.1.2"
check "urirhssub: a range of codes hits" has "$OUT" "T_URIBL_RANGE"
check "urirhssub: a value/mask that differs misses" hasnt "$OUT" "T_URIBL_VALMASK"
check "urirhsbl ips_only: an IP literal host, reversed, hits" has "$OUT" "T_URI_IP"
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 "$URIS/many-hosts.eml" 2>>"$D/check.err")
check "uridnsbl_max_domains counts domains: 25 hosts of one ahead do not hide a listed one" \
	has "$OUT" "T_URIBL_BLACK"
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 "$URIS/skip.eml" 2>>"$D/check.err")
check "uridnsbl_skip_domain: a listed but skipped domain is not asked" hasnt "$OUT" "T_URIBL_BLACK"
check "uridnsbl_skip_domain: no URI rule hits on unlisted domains" hasnt "$OUT" "T_DBL_SPAM"
LINT=$("$SIFT" -c "$D/sift.conf" lint 2>&1)
check "lint: the name-server and address forms are read, not skipped" \
	hasnt "$LINT" "skipped directive uri"

# DNSEval's name forms: the sender's, the author's and the fields' hosts
cat >"$D/hbl.eml" <<'MSG'
Received: from helo.example.net (rdns.example.net [198.51.100.9])
	by mx.example.org with ESMTP id 7A1; Tue, 24 Nov 2026 10:00:00 +0000
From: Author <a@author.example.com>
Reply-To: r@replyhost.example.net
X-Source-IP: 198.51.100.77
X-Source-IP: 10.0.0.7
To: b@example.org
Subject: names
Message-ID: <hbl-1@author.example.com>
Date: Tue, 24 Nov 2026 10:00:00 +0000

hello
MSG
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 --from s@mail.sender.example.org \
	"$D/hbl.eml" 2>>"$D/check.err")
echo "$OUT" >>"$D/check.out"
check "check_rbl_envfrom: the envelope sender's host" has "$OUT" "T_HBL_ENVFROM"
check "check_rbl_from_host: the From address's host" has "$OUT" "T_HBL_FROMHOST"
check "check_rbl_from_domain: the From host's registered domain" has "$OUT" "T_HBL_FROMDOM"
check "check_rbl_headers: Reply-To's host, by the default fields" has "$OUT" "T_HBL_HDRS"
check "check_rbl_headers: an address in the named field, reversed" has "$OUT" "T_HBL_SRCIP"
check "check_rbl_headers: a private address is not asked about" hasnt "$OUT" "T_HBL_PRIV"
check "check_rbl_headers: tflags domains_only asks no address" hasnt "$OUT" "T_HBL_DOMONLY"
check "check_rbl_rcvd: the first untrusted relay's address" has "$OUT" "T_HBL_RCVD"
check "check_rbl_sub: reads the name forms' answers of its set" has "$OUT" "T_HBL_SUB"
check "the name forms' zone is probed with its 'test' entry and stays on" \
	hasnt "$(cat "$D/check.err")" "hbl.test switched off"
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 --from s@other.example.org "$MSG" 2>>"$D/check.err")
check "check_rbl_envfrom: a sender not listed, no hit" hasnt "$OUT" "T_HBL_ENVFROM"
check "check_rbl_from_host: an author not listed, no hit" hasnt "$OUT" "T_HBL_FROMHOST"

# check_dns_sender: the envelope sender's domain, asked for A and MX
sender() { "$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 --from "$1" "$MSG" 2>>"$D/check.err"; }
OUT=$(sender s@no.such.example)
echo "$OUT" >>"$D/check.out"
check "check_dns_sender: a domain without A or MX (NXDOMAIN) hits" has "$OUT" "T_NO_DNS_FOR_FROM"
check "check_dns_sender: explained by the name asked" has "$OUT" "no.such.example: NXDOMAIN for A and MX"
OUT=$(sender s@x..no.such.example)
check "check_dns_sender: runs of dots are made one" has "$OUT" "x.no.such.example: NXDOMAIN"
OUT=$(sender s@mx.helo.test)
check "check_dns_sender: a host with an address, no hit" hasnt "$OUT" "T_NO_DNS_FOR_FROM"
OUT=$(sender s@mxonly.test)
check "check_dns_sender: a domain with an MX and no address, no hit" hasnt "$OUT" "T_NO_DNS_FOR_FROM"
OUT=$(sender s@spf-all.test)
check "check_dns_sender: a name that exists without A or MX (NODATA), no hit" \
	hasnt "$OUT" "T_NO_DNS_FOR_FROM"
OUT=$(sender s@x.refuse.test)
check "check_dns_sender: a refusal is no NXDOMAIN, no hit" hasnt "$OUT" "T_NO_DNS_FOR_FROM"
T0=$(now_ms)
OUT=$(sender s@x.dead.test)
T1=$(now_ms)
check "check_dns_sender: a silent server, no hit" hasnt "$OUT" "T_NO_DNS_FOR_FROM"
check "check_dns_sender: a silent server costs no more than the deadline (700 ms) + $STARTUP_MS ms ($((T1 - T0)) ms)" \
	[ $((T1 - T0)) -lt $((700 + STARTUP_MS)) ]
OUT=$(sender s@localhost)
check "check_dns_sender: a name without a dot is not asked" hasnt "$OUT" "T_NO_DNS_FOR_FROM"

# check_rbl_ns_from: the name servers of the sender's domain, by name
OUT=$(sender s@mail.adom.example)
echo "$OUT" >>"$D/check.out"
check "check_rbl_ns_from: a listed name server of the sender's domain hits" has "$OUT" "T_NS_FROM"
check "check_rbl_ns_from: explained by the name server and the domain" \
	has "$OUT" "ns.cleanns.example.nsbl.test (name server ns.cleanns.example of the sender's adom.example) -> 127.0.0.2"
check "check_rbl_ns_from: tflags ips_only asks no name" hasnt "$OUT" "T_NS_FROM_IPS"
OUT=$(sender s@www.nsdom.example)
check "check_rbl_ns_from: name servers not listed by name, no hit" hasnt "$OUT" "T_NS_FROM"
OUT=$(sender s@no.such.example)
check "check_rbl_ns_from: a domain without name servers, no hit" hasnt "$OUT" "T_NS_FROM"

# check_rbl_accreditor: the relay list, asked only for mail naming the accreditor
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.2 --from list@a--vouch.example.net "$MSG" 2>>"$D/check.err")
echo "$OUT" >>"$D/check.out"
check "check_rbl_accreditor: the sender's a--TAG names it, a listed relay hits" has "$OUT" "T_ACCREDITED"
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.2 --from list@a--other.example.net "$MSG" 2>>"$D/check.err")
check "check_rbl_accreditor: another accreditor, not asked" hasnt "$OUT" "T_ACCREDITED"
{ printf 'Accreditor: Other x=1, Vouch y=2\n'; cat "$MSG"; } >"$D/acc.eml"
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.3 --from s@example.net "$D/acc.eml" 2>>"$D/check.err")
check "check_rbl_accreditor: the Accreditor field names it, and its set's check_rbl_sub reads the answer" \
	has "$OUT" "T_ACCREDITED_S"
{ printf 'Accreditor: Other, x=1\n'; cat "$MSG"; } >"$D/acc2.eml"
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.2 --from s@example.net "$D/acc2.eml" 2>>"$D/check.err")
check "check_rbl_accreditor: a field naming another, not asked" hasnt "$OUT" "T_ACCREDITED"

# HashBL's check_hashbl_bodyre: strings the body holds, as they are or hashed
cat >"$D/btc.eml" <<'MSG'
From: a@example.net
To: b@example.org
Subject: payment
Message-ID: <btc-1@example.net>
Date: Tue, 24 Nov 2026 10:00:00 +0000

Send it to 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2 today, ref id-12-34.
MSG
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 "$D/btc.eml" 2>>"$D/check.err")
echo "$OUT" >>"$D/check.out"
check "check_hashbl_bodyre raw: a listed string of the body hits" has "$OUT" "T_HASHBL_RAW"
check "check_hashbl_bodyre raw: explained by the name asked" \
	has "$OUT" "1bvbmseystwetqtfn5au4m4gfg7xjanvn2.hash.test -> 127.0.0.2"
check "check_hashbl_bodyre sha256: the digest SpamAssassin asks (base32) hits" has "$OUT" "T_HASHBL_SHA"
check "check_hashbl_bodyre: a body regex longer than 512 bytes is asked too" has "$OUT" "T_HASHBL_LONG"
check "check_hashbl_bodyre num: the digits of a rawbody capture hit" has "$OUT" "T_HASHBL_NUM"
check "check_hashbl_bodyre: strings not listed, no hit" hasnt "$OUT" "T_HASHBL_MISS"
check "check_hashbl_bodyre sha1: the digest SpamAssassin asks (hex) hits" has "$OUT" "T_HASHBL_H1 "
check "check_hashbl_bodyre sha1: explained by the name asked" \
	has "$OUT" "3d6c85a4776a7543049c4cd7d7aeb667f67bed24.hash.test -> 127.0.0.5"
check "check_hashbl_bodyre: the default digest is SHA-1" has "$OUT" "T_HASHBL_DEF"
check "check_hashbl_bodyre md5: the digest SpamAssassin asks (hex) hits" has "$OUT" "T_HASHBL_MD5"
check "check_hashbl_bodyre sha1: a digest not listed, no hit" hasnt "$OUT" "T_HASHBL_H1X"
sed 's/1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2/1BeEG6oEgDnUguUoGDpmq5WLJRmgUYEqSR/' "$D/btc.eml" >"$D/btc2.eml"
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 "$D/btc2.eml" 2>>"$D/check.err")
check "check_hashbl_bodyre: a refusal code is not a listing" hasnt "$OUT" "T_HASHBL_RAW"
LINT=$("$SIFT" -c "$D/sift.conf" lint 2>&1)
check "check_hashbl_bodyre: lint skips none of its forms" hasnt "$LINT" "check_hashbl_bodyre"
# hashbl_ignore: a value (any case) is not asked, raw or hashed; a digest is not asked
mkdir "$D/rules-hignore"
cp "$D/rules/"* "$D/rules-hignore/"
echo "hashbl_ignore other 1BVBMSEYSTWETQTFN5AU4M4GFG7XJANVN2" >"$D/rules-hignore/60_ignore.cf"
sed "s|^rules = .*|rules = $D/rules-hignore|" "$D/sift.conf" >"$D/hignore.conf"
OUT=$("$SIFT" -c "$D/hignore.conf" check --ip 192.0.2.1 "$D/btc.eml" 2>>"$D/check.err")
check "hashbl_ignore: an ignored value is not asked as it is" hasnt "$OUT" "T_HASHBL_RAW"
check "hashbl_ignore: nor as its digest" hasnt "$OUT" "T_HASHBL_SHA"
check "hashbl_ignore: the other strings still are" has "$OUT" "T_HASHBL_NUM"
echo "hashbl_ignore TY7XKNWLJOLXJBTQLU3FULDZFX2YEV6C5SQKO3NZBQLDKRM4MECA" \
	>"$D/rules-hignore/60_ignore.cf"
OUT=$("$SIFT" -c "$D/hignore.conf" check --ip 192.0.2.1 "$D/btc.eml" 2>>"$D/check.err")
check "hashbl_ignore: an ignored digest is not asked" hasnt "$OUT" "T_HASHBL_SHA"
check "hashbl_ignore: its value is still asked as it is" has "$OUT" "T_HASHBL_RAW"
LINT=$("$SIFT" -c "$D/hignore.conf" lint 2>&1)
check "hashbl_ignore: read, not skipped" hasnt "$LINT" "skipped directive hashbl_ignore"

# URIDNSBL's name-server and address lists: NS, then A, then the list
links() { # FILE LINK...: a message whose body holds the links
	f=$1
	shift
	{
		printf 'From: a@example.net\nTo: b@example.org\nSubject: links\n'
		printf 'Message-ID: <%s@example.net>\nDate: Tue, 24 Nov 2026 10:00:00 +0000\n\n' "$(basename "$f")"
		for l in "$@"; do echo "see $l"; done
	} >"$f"
}
links "$D/ns.eml" http://www.nsdom.example/offer
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 "$D/ns.eml" 2>>"$D/check.err")
echo "$OUT" >>"$D/check.out"
check "uridnssub: a domain whose name server's address is listed hits" has "$OUT" "T_URIBL_NS_SBL"
check "uridnssub: explained by the address, its name server and the domain" \
	has "$OUT" "53.2.0.192.sbl.test (address of ns1.nshost.example, name server of nsdom.example) -> 127.0.0.2"
check "uridnssub tflags a: the host's own address, unlisted, does not hit" hasnt "$OUT" "T_URIBL_A_SBL"
check "urinsrhssub: the name server's registered domain listed hits" has "$OUT" "T_URI_NSRHS"
check "urifullnsrhsbl: the name server's full name, unlisted, does not hit" hasnt "$OUT" "T_URI_FULLNS"
links "$D/a.eml" http://www.adom.example/offer
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 "$D/a.eml" 2>>"$D/check.err")
echo "$OUT" >>"$D/check.out"
check "uridnssub tflags a: a host whose address is listed hits" has "$OUT" "T_URIBL_A_SBL"
check "uridnssub tflags a: explained by the host's address" \
	has "$OUT" "54.2.0.192.sbl.test (address of www.adom.example) -> 127.0.0.2"
check "uridnssub: the name server's address, unlisted, does not hit" hasnt "$OUT" "T_URIBL_NS_SBL"
check "urifullnsrhsbl: the name server's full name listed hits" has "$OUT" "T_URI_FULLNS"
check "urinsrhssub: its registered domain, unlisted, does not hit" hasnt "$OUT" "T_URI_NSRHS"
links "$D/slow.eml" http://privns.example/ http://www.slowns.example/ http://www.nsdom.example/
T0=$(now_ms)
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 "$D/slow.eml" 2>>"$D/check.err")
T1=$(now_ms)
echo "$OUT" >>"$D/check.out"
check "uridnssub: a private name-server address is not asked (10.0.0.53 is listed)" \
	hasnt "$OUT" "53.0.0.10.sbl.test"
check "uridnssub: a silent name server's address is noted" has "$OUT" "had no answer by the deadline"
check "uridnssub: the domains that answer still count" has "$OUT" "T_URIBL_NS_SBL"
check "uridnssub: three rounds within the deadline (700 ms) + $STARTUP_MS ms ($((T1 - T0)) ms)" \
	[ $((T1 - T0)) -lt $((700 + STARTUP_MS)) ]

# AskDNS: templates filled with the author's, sender's and HELO names
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 --helo mx.helo.test --from x@spf-all.test \
	"$MSG" 2>>"$D/check.err")
echo "$OUT" >>"$D/check.out"
check "askdns: _AUTHORDOMAIN_ regex subtest hits" has "$OUT" "T_ASK_NEWDOM"
check "askdns: an address subtest that differs misses" hasnt "$OUT" "T_ASK_OLDDOM"
check "askdns: _SENDERDOMAIN_ TXT hits" has "$OUT" "T_ASK_SPFALL"
check "askdns: _LASTEXTERNALHELO_ A outside 127/8 is an answer, not a refusal" has "$OUT" "T_ASK_HELO"
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 --helo unknown.test --from x@example.org \
	"$MSG" 2>>"$D/check.err")
check "askdns: no TXT record, no hit" hasnt "$OUT" "T_ASK_SPFALL"
check "askdns: a HELO without an address, no hit" hasnt "$OUT" "T_ASK_HELO"
check "askdns: two tags, a pair whose answer differs from the subtest misses" hasnt "$OUT" "T_ASK_PAIR"
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 --helo mx.helo.test --from x@spf-all.test \
	"$MSG" 2>>"$D/check.err")
check "askdns: [NXDOMAIN] hits a name that does not exist" has "$OUT" "T_ASK_RC_NX"
check "askdns: [NXDOMAIN] misses a name that exists" hasnt "$OUT" "T_ASK_RC_AUTHNX"
check "askdns: [NOERROR] hits a name without records of the type" has "$OUT" "T_ASK_RC_OK"
check "askdns: a refusal is neither NXDOMAIN nor NOERROR" hasnt "$OUT" "T_ASK_RC_REFNX"
check "askdns: the rcode is explained" has "$OUT" "spf-all.test.fresh.test -> rcode 3"
check "askdns: two tags, one question of both values" has "$OUT" "T_ASK_PAIR"
check "askdns: a tag twice, both places filled" has "$OUT" "T_ASK_TWICE"
check "askdns: a list of types, the TXT answer of MX,TXT hits" has "$OUT" "T_ASK_MULTI_TXT"
check "askdns: a list of types, no MX name matching, no hit" hasnt "$OUT" "T_ASK_MULTI "
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.1 --from x@mxonly.test "$MSG" 2>>"$D/check.err")
check "askdns: a list of types, the MX answer of A,MX hits" has "$OUT" "T_ASK_MULTI "
check "askdns: a list of types, explained by the name" has "$OUT" "mxonly.test -> mx.helo.test"
check "askdns: MX,TXT without a TXT record, no hit" hasnt "$OUT" "T_ASK_MULTI_TXT"

# the zone probe: the second of two messages in one process no longer waits
OUT=$("$SIFT" -c "$D/sift.conf" check --ip 192.0.2.2 "$MSG" "$URIS/skip.eml" 2>>"$D/check.err")
MS2=$(echo "$OUT" | sed -n 's/^.*skip\.eml: .*(\([0-9]*\)\.[0-9]* ms)$/\1/p')
check "probe: the second message took ${MS2:-?} ms, under the 700 ms deadline" \
	[ "${MS2:-9999}" -lt 650 ]
check "probe: the zones that answer stay on" has "$OUT" "T_RCVD_IN_BL"

# the same rules with DNS off (score set 0): no lookups, no hits
sed 's/^rules_score_set = 1/rules_score_set = 0/' "$D/sift.conf" >"$D/nonet.conf"
OUT=$("$SIFT" -c "$D/nonet.conf" check --ip 192.0.2.2 "$MSG" 2>>"$D/check.err")
check "score set 0: network tests off" hasnt "$OUT" "T_RCVD_IN_"
OUT=$("$SIFT" -c "$D/nonet.conf" check --ip 192.0.2.1 --from s@no.such.example "$MSG" 2>>"$D/check.err")
check "check_dns_sender: score set 0 asks nothing" hasnt "$OUT" "T_NO_DNS_FOR_FROM"

# a zone that never answers: no hit, within the deadline, and said so
T0=$(now_ms)
OUT=$(run 192.0.2.2)
T1=$(now_ms)
check "dead zone: not scored" hasnt "$OUT" "T_RCVD_IN_DEAD"
check "dead zone: the other lists still count" has "$OUT" "T_RCVD_IN_BL"
check "dead zone: noted" has "$OUT" "had no answer by the deadline"
check "dead zone: run within deadline (700 ms) + $STARTUP_MS ms ($((T1 - T0)) ms)" \
	[ $((T1 - T0)) -lt $((700 + STARTUP_MS)) ]

# rules on one zone share the message's lookups: five rules asking a silent
# zone about 30 domains wait on 30 lookups, not 150 (past dns_max_pending,
# 100 here, new lookups would fail at once, for every message)
mkdir "$D/rules-shared"
{
	echo "uridnsbl_max_domains 30"
	for r in A B C D E; do
		printf 'urirhssub T_SHARED_%s dead.test. A 127.0.0.2\n' "$r"
		printf "body T_SHARED_%s eval:check_uridnsbl('T_SHARED_%s')\ntflags T_SHARED_%s net\n" \
			"$r" "$r" "$r"
	done
} >"$D/rules-shared/50_shared.cf"
{
	printf 'From: a@example.net\nTo: b@example.org\nSubject: links\n'
	printf 'Message-ID: <shared@example.net>\nDate: Tue, 24 Nov 2026 10:00:00 +0000\n\n'
	i=0
	while [ $i -lt 30 ]; do echo "http://www.site$i.example/"; i=$((i + 1)); done
} >"$D/thirty.eml"
sed -e "s|^rules = .*|rules = $D/rules-shared|" -e 's/^deadline = .*/deadline = 300ms/' \
	"$D/sift.conf" >"$D/shared.conf"
echo "dns_max_pending = 100" >>"$D/shared.conf"
OUT=$("$SIFT" -c "$D/shared.conf" check --ip 192.0.2.1 "$D/thirty.eml" 2>"$D/shared.err")
check "shared lookups: the silent zone is noted" has "$OUT" "had no answer by the deadline"
check "shared lookups: five rules' 150 askings stay within dns_max_pending (100)" \
	sh -c "! grep -q 'dns_max_pending' '$D/shared.err'"

# the daemon: the same rules, answers and deadline over the milter protocol
mkdir "$D/state"
it_milter_start 10 "$D/sift.conf" "$D/state" "$D/sift.sock" "$D/milter.log"
MILTER_PID=$IT_MILTER_PID
"$MC" -s "unix:$D/sift.sock" -t 10000 -i 192.0.2.3 -Q listed --tsv "$MSG" >"$D/listed.tsv" 2>"$D/mc.err"
RULES=$(tsv_field "$D/listed.tsv" clean.eml 4)
check "milter: a listed client hits check_rbl and its set's check_rbl_sub" \
	sh -c "case '$RULES' in *T_RCVD_IN_BL*T_RCVD_IN_CSS*|*T_RCVD_IN_CSS*T_RCVD_IN_BL*) exit 0;; esac; exit 1"
check "milter: the silent zone did not hit" hasnt "$RULES" "T_RCVD_IN_DEAD"
check "milter: the silent zone degraded the verdict" \
	grep -q "queue_id=listed00000000 .*degraded=rules" "$D/milter.log"
"$MC" -s "unix:$D/sift.sock" -t 10000 -i 192.0.2.1 -Q clean --tsv "$MSG" >"$D/clean.tsv" 2>>"$D/mc.err"
check "milter: an unlisted client hits no list rule" hasnt "$(tsv_field "$D/clean.tsv" clean.eml 4)" "T_RCVD_IN_"
check "milter: the silent zone's probe failed and switched it off" \
	grep -q "zone dead.test switched off: its test entry 127.0.0.2 got no answer" "$D/milter.log"
check "milter: the next message no longer waits for it" \
	grep -q "queue_id=clean00000000 .*degraded=- " "$D/milter.log"
"$MC" -s "unix:$D/sift.sock" -t 10000 -i 192.0.2.1 -Q ns --tsv "$D/ns.eml" >"$D/ns.tsv" 2>>"$D/mc.err"
check "milter: a domain whose name server's address is listed hits" \
	has "$(tsv_field "$D/ns.tsv" ns.eml 4)" "T_URIBL_NS_SBL"
"$MC" -s "unix:$D/sift.sock" -t 10000 -i 192.0.2.1 -f s@no.such.example -Q nodns --tsv "$MSG" \
	>"$D/nodns.tsv" 2>>"$D/mc.err"
check "milter: MAIL FROM's domain without A or MX hits check_dns_sender" \
	has "$(tsv_field "$D/nodns.tsv" clean.eml 4)" "T_NO_DNS_FOR_FROM"
"$MC" -s "unix:$D/sift.sock" -t 10000 -i 192.0.2.1 -f s@mxonly.test -Q mxdns --tsv "$MSG" \
	>"$D/mxdns.tsv" 2>>"$D/mc.err"
check "milter: MAIL FROM's domain with an MX does not" \
	hasnt "$(tsv_field "$D/mxdns.tsv" clean.eml 4)" "T_NO_DNS_FOR_FROM"
"$MC" -s "unix:$D/sift.sock" -t 10000 -i 192.0.2.1 -Q btc --tsv "$D/btc.eml" >"$D/btc.tsv" 2>>"$D/mc.err"
RULES=$(tsv_field "$D/btc.tsv" btc.eml 4)
check "milter: check_hashbl_bodyre asks the body's strings as they are" has "$RULES" "T_HASHBL_RAW"
check "milter: check_hashbl_bodyre asks their SHA-256 digests" has "$RULES" "T_HASHBL_SHA"
# dns_block_rule: listed before the list refuses us, not asked after
"$MC" -s "unix:$D/sift.sock" -t 10000 -i 192.0.2.7 -Q blk1 --tsv "$MSG" >"$D/blk1.tsv" 2>>"$D/mc.err"
check "milter: a client the list names hits before any block" \
	has "$(tsv_field "$D/blk1.tsv" clean.eml 4)" "T_BLK_LISTED"
"$MC" -s "unix:$D/sift.sock" -t 10000 -i 192.0.2.6 -Q blk2 --tsv "$MSG" >"$D/blk2.tsv" 2>>"$D/mc.err"
check "milter: the refusal is no hit, even for the rule that asks for it" \
	hasnt "$(tsv_field "$D/blk2.tsv" clean.eml 4)" "T_BLK_"
check "milter: dns_block_rule blocks the list, logged" \
	grep -q "SpamAssassin DNS lists under blk.test not asked for 300 s: rule T_BLK_BLOCKED got 127.255.255.255" \
	"$D/milter.log"
"$MC" -s "unix:$D/sift.sock" -t 10000 -i 192.0.2.8 -Q blk3 --tsv "$MSG" >"$D/blk3.tsv" 2>>"$D/mc.err"
check "milter: while blocked, the list is not asked: another listed client does not hit" \
	hasnt "$(tsv_field "$D/blk3.tsv" clean.eml 4)" "T_BLK_LISTED"
check "milter: and the message is not held for it" \
	grep -q "queue_id=blk300000000 .*degraded=- " "$D/milter.log"
kill -TERM "$MILTER_PID"
wait_for 10 sh -c "! kill -0 $MILTER_PID 2>/dev/null" || fail "sift-milter did not stop"
it_untrack "$MILTER_PID"

if [ "$IT_FAILS" -ne 0 ]; then
	echo "--- sift check output" >&2
	cat "$D/check.out" "$D/check.err" >&2
	echo "--- daemon" >&2
	cat "$D/listed.tsv" "$D/mc.err" >&2
	tail -20 "$D/milter.log" >&2
fi
it_done
