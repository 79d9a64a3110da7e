#!/bin/sh
# install-deps.sh - installs the Debian 12 packages Sift needs.
#   install-deps.sh          to build and run sift-milter
#   install-deps.sh --test   also what the test suite starts (Redis, unbound,
#                            Postfix, swaks, stunnel4 and openssl for the TLS
#                            test, clang for the fuzzers, prometheus for
#                            promtool and the scrape in it_metrics, debhelper,
#                            lintian and systemd-analyze for the package test), and
#                            fetches Sendmail's .debs for tests/it_sendmail.sh
# (gpg-agent: spamassassin's postinst imports sa-update's key with gpg,
# which fails without it when recommends are not installed.)
set -eu
export DEBIAN_FRONTEND=noninteractive
build="build-essential autoconf automake pkg-config libmilter-dev libpcre2-dev liblmdb-dev
 libhiredis-dev libc-ares-dev libpsl-dev libsodium-dev libssl-dev libvectorscan-dev libcriterion-dev
 libmicrohttpd-dev libspf2-dev libopendkim-dev libopendmarc-dev publicsuffix"
test="clang libclang-rt-14-dev redis-server redis-tools unbound postfix swaks zstd python3 procps
 iproute2 lmdb-utils curl spamassassin gpg-agent bogofilter m4 perl stunnel4 openssl
 libwrap0 liblockfile1 libdb5.3 libldap-2.5-0 libnsl2 libsasl2-2 libssl3 libsasl2-modules
 libsasl2-modules-db prometheus
 opendkim-tools
 debhelper dpkg-dev fakeroot lintian systemd"
want=$build
[ "${1:-}" = "--test" ] && want="$build $test"
missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
updated=0
if [ -n "$missing" ]; then
	# Postfix must not ask questions nor configure a system mailer: the
	# tests run their own private instances.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
	apt-get update -qq
	updated=1
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
[ "${1:-}" = "--test" ] || exit 0

# tests/it_sendmail.sh runs Sendmail unpacked from its packages (sendmail-bin
# conflicts with postfix, so it is never installed); the libraries it links
# are in $test above. Fetched once; the test looks here first.
cache=${SIFT_SENDMAIL_DEBS:-/var/cache/sift-test/sendmail}
debs="sendmail-bin sendmail-base sendmail-cf"
have=1
for p in $debs; do
	ls "$cache/${p}_"*.deb >/dev/null 2>&1 || have=0
done
[ "$have" = 1 ] && exit 0
mkdir -p "$cache"
fetch() { (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root $debs >/dev/null); }
# stale package lists name versions the mirror no longer has: update once
fetch || { [ "$updated" = 0 ] && apt-get update -qq && fetch; } ||
	echo "install-deps: cannot fetch $debs; tests/it_sendmail.sh will skip" >&2
