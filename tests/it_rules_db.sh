#!/bin/sh
# it_rules_db.sh - the rules' prefilter database in the real daemon: built in
# the background after start, cached in the state directory, read from there
# at the next start and by `sift check`, rebuilt for changed rules on SIGHUP
# and when the cached file is damaged; the verdicts never change.
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MILTER=$top_builddir/sift-milter
MC=$top_builddir/sift-mclient
SIFT=$top_builddir/sift
DATA=$top_srcdir/tests/data/milter
it_need "$MILTER" "$MC" "$SIFT"

D=$IT_TMP
SOCK=$D/sift.sock
mkdir "$D/rules" "$D/state"
# Rules with no literal the literal prefilter could use: the database's share.
cat >"$D/rules/10_db.cf" <<'EOF'
body     SIFT_DB_PHONE   /\b\d{3}-\d{4}\b/
score    SIFT_DB_PHONE   20
body     SIFT_DB_CAPS    /\b[A-Z]{2,3}\d\d\b/
score    SIFT_DB_CAPS    0.5
EOF
cat >"$D/sift.conf" <<EOF
log = stderr
log_level = info
rules = $D/rules
reject_score = 15
# the database's machinery, also where no build of Vectorscan's scanner
# passes its probes (auto then goes without it); these short messages are
# not where it misses
regex_prefilter_engine = vectorscan
EOF
if ! "$SIFT" -c "$D/sift.conf" lint 2>&1 | grep -q "prefilter database:"; then
	skip_all "built without Vectorscan (no prefilter database)"
fi
sed 's/^Subject: .*/Subject: call 555-0123 now/' "$DATA/ham.eml" >"$D/phone.eml"
cp "$DATA/ham.eml" "$D/ham.eml"

LOG=$D/milter.log
PID=""
start() {
	it_milter_start 10 "$D/sift.conf" "$D/state" "$SOCK" "$LOG"
	PID=$IT_MILTER_PID
}
stop() { it_stop "$PID"; }
mc() {
	"$MC" -s "unix:$SOCK" -t 10000 -i 192.0.2.10 -Q "$1" --tsv "$D/phone.eml" "$D/ham.eml" \
		>"$D/$1.tsv" 2>"$D/$1.err"
}
field() { tsv_field "$D/$1.tsv" "$2" "$3"; }
verdicts_ok() {
	[ "$(field "$1" phone.eml 2)" = reject ] && [ "$(field "$1" ham.eml 2)" = accept ]
}
nfiles() { ls "$D/state" | grep -c '^rules-hs-.*\.db$'; }
log_count() { grep -c -e "$1" "$LOG"; }
built_n() { [ "$(log_count 'prefilter database: built')" -ge "$1" ]; }
T=$((30 * SIFT_TEST_TIME_FACTOR))

# --- first start: the rules serve at once, the database follows
start
mc cold
check "cold: verdicts before or while the database builds" verdicts_ok cold
check "the daemon says it builds one" grep -q "prefilter database: building" "$LOG"
check "the database is built in the background" wait_for "$T" built_n 1
# "built" is logged once the file is in place, so no wait is needed here
check "and cached in the state directory" [ "$(nfiles)" = 1 ]
check "the log says it is cached" grep -q 'prefilter database: built .*, cached' "$LOG"
check "no temporary file is left" [ -z "$(ls "$D/state" | grep '\.tmp')" ]
mc warm
check "warm: the same verdicts with the database" verdicts_ok warm

# --- sift check reads the cache and says so
"$SIFT" -c "$D/sift.conf" -d "$D/state" check --timing "$D/phone.eml" >"$D/check.out" 2>&1
check "sift check: the rule hits" grep -q SIFT_DB_PHONE "$D/check.out"
check "sift check: the cached database is loaded" grep -q "prefilter database: .*loaded" "$D/check.out"
check "sift check: the time per view" grep -Eq "^body +[0-9.]+ +[0-9.]+ +[0-9.]+ +[1-9]" "$D/check.out"
check "sift check: the clock's own cost, taken out" grep -Eq "^clock: [0-9]+\.[0-9]+ us per timed run" "$D/check.out"

# --- restart: read from the cache, no build
stop
start
check "restart: the cached database is loaded" wait_for 10 grep -q "prefilter database: loaded" "$LOG"
check "restart: nothing is rebuilt" [ "$(log_count 'prefilter database: built')" = 1 ]
check "restart: nor said to be" [ "$(log_count 'prefilter database: building')" = 1 ]
mc restarted
check "restart: the same verdicts" verdicts_ok restarted

# --- SIGHUP with changed rules: a new database, the old file kept beside it
cat >>"$D/rules/10_db.cf" <<'EOF'
body     SIFT_DB_NEW     /\b\d\d[a-f]\d\d\b/
EOF
kill -HUP "$PID"
check "reload: a database for the new rules is built" wait_for "$T" built_n 2
check "reload: two cache files" [ "$(nfiles)" = 2 ]
mc reloaded
check "reload: the same verdicts" verdicts_ok reloaded

# --- a damaged cache file: refused with a reason, rebuilt, never trusted
stop
for f in "$D"/state/rules-hs-*.db; do
	printf 'damaged' | dd of="$f" bs=1 seek=100 conv=notrunc 2>/dev/null
done
start
check "damaged: refused and rebuilt" wait_for 10 grep -q "checksum mismatch (corrupt); rebuilding" "$LOG"
check "damaged: a fresh database is built" wait_for "$T" built_n 3
mc damaged
check "damaged: the same verdicts" verdicts_ok damaged
stop

# --- a rule whose build alone exceeds the build's bounds (a group counted
# 200 times: 300 MB of compiler): left out of the database with a warning;
# the compiler runs in a child process, so the daemon's memory stays small
cat >"$D/rules/20_costly.cf" <<'EOF'
body     SIFT_DB_COSTLY  /(?:(?:your\s)?(?:ad+re?s+|n'a[mn]e|pho?ne?)(?:[-_.:\s]{1,9}|\sor\s)){200}/i
score    SIFT_DB_COSTLY  0.1
EOF
echo "regex_prefilter_build_memory = 64M" >>"$D/sift.conf"
start
check "costly: a database is built" wait_for "$T" built_n 4
check "costly: the rule is left out, with a warning" \
	grep -q "SIFT_DB_COSTLY left out (it runs on every message): building it" "$LOG"
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$PID/status")
hwm_small() { [ "${hwm:-0}" -gt 0 ] && [ "$hwm" -lt 150000 ]; }
check "costly: the daemon's peak memory stayed small (${hwm} kB)" hwm_small
mc costly
check "costly: the same verdicts" verdicts_ok costly
stop

it_done
