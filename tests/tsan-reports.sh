#!/bin/sh
# tsan-reports.sh DIR SRCDIR - sorts the ThreadSanitizer reports in DIR (the
# files its log_path option writes) for contrib/run-tests.sh: prints each
# report that touches Sift's code and exits 1 if there is one (or if
# ThreadSanitizer itself failed), else exits 0; either way it ends with a
# line of counts.
#
# A report touches Sift's code when a stack of its memory accesses (or, for
# a thread never joined, the stack that created it) holds a frame of
# SRCDIR/milter/ other than main(), which only calls smfi_main(). The rest
# are libmilter's own: its worker pool and its stop tear down mutexes and
# condition variables that its other threads still use. tests/tsan.supp
# names the ones it can (libmilter's exported functions); the pool's
# functions are static and have no names to match, and matching libmilter
# by module would hide every race in Sift's callbacks too, whose stacks all
# start in libmilter.
set -u
dir=${1:?usage: tsan-reports.sh DIR SRCDIR}
src=${2:?usage: tsan-reports.sh DIR SRCDIR}/milter/
set -- "$dir"/tsan.*
[ -e "$1" ] || { echo "no ThreadSanitizer report"; exit 0; }
cat "$@" | awk -v src="$src" '
	function flush() {
		if (rep == "")
			return
		if (sift) {
			nsift++
			printf "%s", rep
		} else {
			nlib++
		}
		rep = ""
	}
	/^==[0-9]+==(ERROR|FATAL): ThreadSanitizer/ { flush(); nfatal++; print; next }
	/^WARNING: ThreadSanitizer:/ {
		flush()
		rep = $0 "\n"
		sect = "access"
		leak = $0 ~ /thread leak/
		sift = 0
		next
	}
	rep == "" { next }
	{ rep = rep $0 "\n" }
	/^  (Previous )?([Aa]tomic )?([Ww]rite|[Rr]ead) of size/ { sect = "access"; next }
	/^  Thread T[0-9]+.* created by/ { sect = leak ? "access" : "other"; next }
	/^  [A-Z]/ { sect = "other"; next }
	/^ *#[0-9]+ / {
		if (sect == "access" && index($0, src) && $2 != "main")
			sift = 1
		next
	}
	/^SUMMARY: ThreadSanitizer/ { flush() }
	END {
		flush()
		printf "ThreadSanitizer: %d report(s) in Sift'"'"'s code, %d in libmilter'"'"'s own, %d failure(s) of its own\n",
		    nsift, nlib, nfatal
		exit nsift + nfatal > 0
	}'
