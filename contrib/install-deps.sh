#!/bin/sh
# install-deps.sh - installs the Debian 12 packages Sift needs.
#   install-deps.sh          to build and run sift-milter
#   install-deps.sh --test   also what the test suite starts (Redis, unbound,
#                            Postfix, swaks, clang for the fuzzers)
set -eu
export DEBIAN_FRONTEND=noninteractive
build="build-essential autoconf automake pkg-config libmilter-dev libpcre2-dev liblmdb-dev
 libhiredis-dev libc-ares-dev libpsl-dev libvectorscan-dev libcriterion-dev"
test="clang libclang-rt-14-dev redis-server redis-tools unbound postfix swaks zstd python3 procps
 iproute2 lmdb-utils spamassassin bogofilter"
want=$build
[ "${1:-}" = "--test" ] && want="$build $test"
missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
# Postfix must not ask questions nor configure a system mailer: the tests
# run their own private instances.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
