#!/bin/sh
# it_hardening.sh - the built sift-milter and sift carry Debian's hardening:
# PIE, full RELRO (GNU_RELRO and BIND_NOW), the stack protector and, when
# the build optimises and is not a sanitizer build, _FORTIFY_SOURCE's
# checked functions (configure.ac leaves it out of those on purpose).
# Read with readelf, as Debian's hardening-check does.
. "$(dirname "$0")/it_lib.sh"

command -v readelf >/dev/null 2>&1 || skip_all "readelf (binutils) not found"
MK=$top_builddir/Makefile
[ -f "$MK" ] || skip_all "no $MK"
grep -q -- '--disable-hardening' "$top_builddir/config.status" 2>/dev/null &&
	skip_all "configured with --disable-hardening"

# The flags the user gave configure, as the Makefile recorded them.
mkvar() { sed -n "s/^$1 = //p" "$MK" | head -n 1; }
user_flags="$(mkvar CPPFLAGS) $(mkvar CFLAGS)"

fortify=yes
why=""
case " $user_flags " in
*-fsanitize=address* | *-fsanitize=kernel-address*) fortify=no why="sanitizer build" ;;
*-U_FORTIFY_SOURCE* | *_FORTIFY_SOURCE=0*) fortify=no why="the user's flags turn it off" ;;
esac
if [ $fortify = yes ]; then
	# glibc's checks need optimisation; the last -O wins.
	opt=-O0
	for w in $(mkvar CFLAGS); do
		case $w in -O*) opt=$w ;; esac
	done
	[ "$opt" = -O0 ] && fortify=no why="not optimised ($opt)"
fi

for prog in sift-milter sift; do
	bin=$top_builddir/$prog
	if [ ! -x "$bin" ]; then
		fail "$prog: not built ($bin)"
		continue
	fi
	readelf -hW "$bin" >"$IT_TMP/$prog.h" 2>&1
	readelf -dW "$bin" >"$IT_TMP/$prog.d" 2>&1
	readelf -lW "$bin" >"$IT_TMP/$prog.l" 2>&1
	readelf --dyn-syms -W "$bin" >"$IT_TMP/$prog.s" 2>&1
	check "$prog: position-independent executable" \
		grep -q 'Type: *DYN' "$IT_TMP/$prog.h"
	check "$prog: PIE flag in the dynamic section" \
		grep -q 'FLAGS_1.*PIE' "$IT_TMP/$prog.d"
	check "$prog: GNU_RELRO segment (-z relro)" \
		grep -q 'GNU_RELRO' "$IT_TMP/$prog.l"
	check "$prog: BIND_NOW (-z now)" \
		grep -Eq '\(FLAGS\).*BIND_NOW|FLAGS_1.*NOW' "$IT_TMP/$prog.d"
	check "$prog: stack protector (__stack_chk_fail)" \
		grep -q ' __stack_chk_fail' "$IT_TMP/$prog.s"
	if [ $fortify = yes ]; then
		check "$prog: _FORTIFY_SOURCE's checked functions (__*_chk)" \
			grep -Eq ' __[a-z0-9_]+_chk(@|$)' "$IT_TMP/$prog.s"
	else
		echo "# $prog: _FORTIFY_SOURCE not expected: $why"
	fi
	chk=$(grep -Eo ' __[a-z0-9_]+_chk' "$IT_TMP/$prog.s" | grep -v stack_chk | sort -u | tr -d ' ')
	[ -z "$chk" ] || echo "# $prog fortified:" $chk
done
it_done
