#!/bin/sh
# run-milter.sh - sets everything up on Debian 12 and runs sift-milter in the
# foreground with the shipped defaults: installs the packages, builds,
# installs under /usr/local (configuration in /usr/local/etc/sift, rules in
# /usr/local/share/sift/rules, state in /var/lib/sift), then starts the
# daemon listening on inet:11337@127.0.0.1 with a local LMDB store and the
# shipped rules; no Redis and no DNS lists are needed.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh contrib/install-deps.sh
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure -q --prefix=/usr/local --sysconfdir=/usr/local/etc --localstatedir=/var
make -j"$(nproc)" >/dev/null
make install >/dev/null
mkdir -p /var/lib/sift
echo "run-milter: starting sift-milter (Ctrl-C stops it)"
exec /usr/local/sbin/sift-milter -f -c /usr/local/etc/sift/sift.conf "$@"
