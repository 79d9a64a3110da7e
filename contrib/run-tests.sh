#!/bin/bash
# run-tests.sh - sets everything up on Debian 12 and runs the whole test suite:
#   1. installs the Debian packages (build and test: Redis, unbound, Postfix...)
#   2. builds with warnings as errors and runs `make check`: the Criterion unit
#      tests and the integration tests that start the real sift-milter,
#      redis-server, unbound and a private Postfix on loopback
#   3. builds again with AddressSanitizer and UndefinedBehaviorSanitizer and
#      runs the same suite
#   4. builds the programs again with ThreadSanitizer and runs the
#      integration tests that load and reload a daemon with every module
#      (it_lifecycle, it_race); any report in Sift's code fails
#   5. runs each fuzz target for a bounded time (SIFT_FUZZ_SECONDS, default 60)
#   6. `make distcheck` (unit tests only; the integration tests ran above)
#   7. tests/deb/test-package.sh: builds, installs, runs and purges the
#      Debian package (as root; skipped otherwise)
# and ends with one line "N passed, N failed" summing every suite.
# Usage: contrib/run-tests.sh [--quick]   (--quick: step 2 only)
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -gt 2 ] && jobs=2

bash contrib/install-deps.sh --test || { echo "run-tests: installing packages failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
skipped=0

# Adds the results of one build's `make check` from its .trs/.log files. A
# Criterion program counts each of its tests, a script that prints TAP lines
# ("ok N - ...") each check, any other script one test.
count_suite() {
	local dir=$1 label=$2 trs log res p f c
	for trs in $(find "$dir/tests" -name '*.trs' 2>/dev/null | sort); do
		log=${trs%.trs}.log
		res=$(sed -n 's/^:test-result: //p' "$trs" | head -n 1)
		syn=$(grep -a 'Synthesis: Tested:' "$log" 2>/dev/null | tail -n 1)
		if [ -n "$syn" ]; then
			p=$(echo "$syn" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
			f=$(echo "$syn" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
			c=$(echo "$syn" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
			passed=$((passed + p))
			failed=$((failed + f + c))
			if [ "$res" != PASS ] && [ $((f + c)) -eq 0 ]; then
				failed=$((failed + 1))
			fi
		elif [ "$res" != SKIP ] && grep -aqE '^(not )?ok [0-9]' "$log" 2>/dev/null; then
			# A script that reports each check TAP-style counts each check.
			p=$(grep -acE '^ok [0-9]' "$log")
			f=$(grep -acE '^not ok [0-9]' "$log")
			passed=$((passed + p))
			failed=$((failed + f))
			if [ "$res" != PASS ] && [ "$f" -eq 0 ]; then
				failed=$((failed + 1))
			fi
		else
			case $res in
			PASS | XFAIL) passed=$((passed + 1)) ;;
			SKIP) skipped=$((skipped + 1)) ;;
			*) failed=$((failed + 1)) ;;
			esac
		fi
		if [ "$res" != PASS ] && [ "$res" != SKIP ] && [ "$res" != XFAIL ]; then
			# Criterion writes a failed assertion where it happens, often
			# far above the end of a long log: name those first.
			if grep -aqE '\[(FAIL|----)\]' "$log" 2>/dev/null; then
				echo "---- $label: ${log#$dir/} ($res), failed tests and assertions:"
				grep -aE '^\[FAIL\]|^\[----\] .*(Assertion|Test crashed|Timed out)' -A3 "$log" |
					head -n 60
			fi
			# the integration scripts print "not ok N - what" where it fails
			if grep -aq '^not ok ' "$log" 2>/dev/null; then
				echo "---- $label: ${log#$dir/} ($res), failed checks:"
				grep -a '^not ok ' -A4 "$log" | head -n 60
			fi
			echo "---- $label: ${log#$dir/} ($res), last lines:"
			tail -n 30 "$log"
		fi
	done
}

step() { echo "==== $*"; }

# count_tap OUT RC: adds the checks a script printed TAP-style to OUT ("ok N
# - ...", "not ok N - ..."); exit status RC without a failed check is one
# failure. Shows OUT's last line.
count_tap() {
	local p f
	p=$(grep -acE '^ok [0-9]' "$1")
	f=$(grep -acE '^not ok [0-9]' "$1")
	passed=$((passed + p))
	failed=$((failed + f))
	[ "$2" -ne 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1))
	tail -n 1 "$1" | sed "s/^/  /"
}

# ThreadSanitizer over the daemon's threads (libmilter's workers, the reload
# thread, the module threads). Criterion's runner cannot run under it (its
# shared arena), so the unit tests stay with the builds above; the
# integration tests that load and reload a daemon with every module run
# against this build. Each of their checks counts, and so does "no report in
# Sift's code" (tests/tsan-reports.sh; tests/tsan.supp names libmilter's
# own races that it can).
tsan_check() {
	local dir=$top/build-tsan it rc wrap=""
	step "tsan: configure and build in $dir"
	rm -rf "$dir"
	mkdir -p "$dir"
	if ! (cd "$dir" && "$top/configure" -q CC=clang \
		CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=thread" \
		LDFLAGS="-fsanitize=thread" >configure.out 2>&1 &&
		make -j"$jobs" sift sift-milter sift-mclient >make.out 2>&1); then
		echo "run-tests: tsan build failed:"
		tail -n 40 "$dir/configure.out" "$dir/make.out" 2>/dev/null
		failed=$((failed + 1))
		return 1
	fi
	# ThreadSanitizer's shadow memory needs a fixed layout, which a kernel
	# randomising more address bits than it expects breaks ("unexpected
	# memory mapping"): then the runs go without address randomisation.
	if ! "$dir/sift" version >/dev/null 2>"$dir/probe.err"; then
		wrap="setarch $(uname -m) -R"
		if ! $wrap "$dir/sift" version >/dev/null 2>>"$dir/probe.err"; then
			echo "run-tests: ThreadSanitizer cannot run here:"
			tail -n 5 "$dir/probe.err"
			failed=$((failed + 1))
			return 1
		fi
	fi
	for it in it_lifecycle it_race; do
		step "tsan: $it"
		rm -rf "$dir/reports-$it"
		mkdir -p "$dir/reports-$it"
		TSAN_OPTIONS="log_path=$dir/reports-$it/tsan suppressions=$top/tests/tsan.supp" \
			SIFT_TEST_TIME_FACTOR=4 top_srcdir=$top top_builddir=$dir \
			$wrap sh "tests/$it.sh" >"$dir/$it.out" 2>&1
		rc=$?
		count_tap "$dir/$it.out" $rc
		if [ $rc -ne 0 ]; then
			echo "---- tsan: $it failed, last lines:"
			tail -n 30 "$dir/$it.out"
		fi
		if sh tests/tsan-reports.sh "$dir/reports-$it" "$top" >"$dir/reports-$it.out"; then
			passed=$((passed + 1))
			tail -n 1 "$dir/reports-$it.out" | sed "s/^/  /"
		else
			failed=$((failed + 1))
			echo "---- tsan: $it: ThreadSanitizer reported:"
			head -n 150 "$dir/reports-$it.out"
			# the counts, when the reports ran past what is shown
			[ "$(wc -l <"$dir/reports-$it.out")" -gt 150 ] && tail -n 1 "$dir/reports-$it.out"
		fi
	done
}

[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] || autoreconf -fi >/dev/null 2>&1 || {
	echo "run-tests: autoreconf failed"; autoreconf -fi; echo "0 passed, 1 failed"; exit 1; }

# build DIR LABEL CONFIGURE-ARGS... : configure, build, check.
build_and_check() {
	local dir=$1 label=$2
	shift 2
	step "$label: configure and build in $dir"
	rm -rf "$dir"
	mkdir -p "$dir"
	if ! (cd "$dir" && "$top/configure" -q "$@" >configure.out 2>&1 && make -j"$jobs" >make.out 2>&1); then
		echo "run-tests: $label build failed:"
		tail -n 40 "$dir/configure.out" "$dir/make.out" 2>/dev/null
		failed=$((failed + 1))
		return 1
	fi
	step "$label: make check"
	local rc before=$failed
	(cd "$dir" && make -j"$jobs" check >check.out 2>&1)
	rc=$?
	grep -E '^(PASS|FAIL|ERROR|SKIP|XPASS)' "$dir/check.out" | sed "s/^/  /"
	count_suite "$dir" "$label"
	if [ $rc -ne 0 ] && [ $failed -eq $before ]; then
		# make check failed before any test could fail (a test did not build).
		echo "---- $label: make check failed:"
		tail -n 40 "$dir/check.out"
		failed=$((failed + 1))
	fi
}

build_and_check "$top/build-test" "default" --enable-werror

if [ $quick = 0 ]; then
	san="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	# Leaks inside libcriterion itself, not ours (see the file).
	export LSAN_OPTIONS=suppressions=$top/tests/lsan.supp
	# The sanitizers slow everything several times: the integration tests
	# scale their start-up and slack allowances (never the bounds under
	# test) by this factor (tests/it_lib.sh, scaled_ms).
	export SIFT_TEST_TIME_FACTOR=4
	build_and_check "$top/build-asan" "asan+ubsan" CFLAGS="$san" LDFLAGS="-fsanitize=address,undefined"
	unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS SIFT_TEST_TIME_FACTOR

	tsan_check

	for target in tests/fuzz/fuzz_*.c; do
		[ -e "$target" ] || continue
		name=$(basename "$target" .c)
		name=${name#fuzz_}
		step "fuzz: $name for ${SIFT_FUZZ_SECONDS:-60}s"
		if SIFT_BUILDDIR="$top/build-test" bash tests/fuzz/run.sh "$name" "${SIFT_FUZZ_SECONDS:-60}" >"$top/build-test/fuzz-$name.out" 2>&1; then
			passed=$((passed + 1))
			tail -n 2 "$top/build-test/fuzz-$name.out" | sed "s/^/  /"
		else
			failed=$((failed + 1))
			echo "---- fuzz $name failed:"
			tail -n 40 "$top/build-test/fuzz-$name.out"
		fi
	done

	step "make distcheck"
	if (cd "$top/build-test" && SIFT_SKIP_INTEGRATION=1 make -j"$jobs" distcheck >distcheck.out 2>&1); then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "---- make distcheck failed:"
		tail -n 40 "$top/build-test/distcheck.out"
		# A failed distcheck leaves its unpacked tree: the failing tests' own logs.
		find "$top/build-test" -path '*/_build/*' -name '*.trs' \
			-exec grep -l -E '^:test-result: (FAIL|ERROR|XPASS)' {} + 2>/dev/null |
			while read -r trs; do
				echo "---- distcheck: ${trs##*/_build/}, last lines of its log:"
				tail -n 30 "${trs%.trs}.log"
			done
	fi

	# Builds the Debian package, installs, runs and purges it (root only;
	# it skips otherwise). Each of its TAP lines counts.
	step "Debian package: build, install, run, purge"
	top_srcdir=$top top_builddir=$top/build-test bash tests/deb/test-package.sh >"$top/build-test/deb.out" 2>&1
	rc=$?
	if [ $rc -eq 77 ]; then
		skipped=$((skipped + 1))
		grep -a '^SKIP' "$top/build-test/deb.out" | sed "s/^/  /"
	else
		count_tap "$top/build-test/deb.out" $rc
		if [ $rc -ne 0 ]; then
			echo "---- Debian package test failed, last lines:"
			tail -n 40 "$top/build-test/deb.out"
		fi
	fi
fi

echo "skipped: $skipped"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
