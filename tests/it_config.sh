#!/bin/sh
# it_config.sh - the shipped configuration is valid and is the defaults:
# `sift lint` accepts it, every documented (commented) key in it is a real
# key with a valid value, a misspelt key fails with file:line, a message
# scores the same with the shipped file as with no file at all, and a daemon
# started in / warns about a relative file name, and a bad line that a
# command-line flag hides still fails the start at its line.
. "$(dirname "$0")/it_lib.sh"

SIFT=$top_builddir/sift
CONF=$top_srcdir/contrib/sift.conf
RULES=$top_srcdir/rules
MSG=$top_srcdir/tests/data/scan/spam.eml
D=$IT_TMP

"$SIFT" -d "$D/s1" lint "$CONF" "$RULES" >"$D/lint.out" 2>&1
check "the shipped sift.conf lints cleanly" [ $? = 0 ]
check "lint counts the shipped rules" grep -q "^total .* loaded" "$D/lint.out"

# Uncomment every "#key = value" line. Sentinel discovery and a cluster
# exclude redis_server, and the password files and the signing key do not
# exist here, so those lines stay commented; DNS goes to loopback only and
# the stores to the test's own directory.
sed -e 's/^#\([a-z_0-9]* = \)/\1/' \
	-e 's/^\(redis_sentinel\|redis_cluster\|redis_username\|redis_password_file\|block_signing_key\)/#\1/' "$CONF" |
	sed -e 's/^dnsbl_nameserver = .*/dnsbl_nameserver = 127.0.0.1/' \
		-e "s|^bayes_db = .*|bayes_db = $D/s2/bayes-db|" \
		-e "s|^block_mirror = .*|block_mirror = $D/s2/mirror|" >"$D/all.conf"
check "every documented key is uncommented in the test copy" \
	grep -q '^bayes_score_999 = ' "$D/all.conf"
"$SIFT" -d "$D/s2" lint "$D/all.conf" "$RULES" >"$D/all.out" 2>&1
check "every documented key and value is accepted" [ $? = 0 ]
grep -v '^total\|^header\|^body\|^rawbody\|^uri\|^full\|^mimeheader\|^meta\|^split\|error(s)' \
	"$D/all.out" | head -5

printf 'rules = %s\nreject_scroe = 3\n' "$RULES" >"$D/typo.conf"
"$SIFT" -d "$D/s3" lint "$D/typo.conf" >"$D/typo.out" 2>&1
check "a misspelt key fails" [ $? != 0 ]
check "with file:line" grep -q "typo.conf:2: unknown key 'reject_scroe'" "$D/typo.out"

# Values the daemon's own settings check (not just their syntax) name their line too.
printf 'rules = %s\nsocket_mode = 0999\nlog_level = loud\nlog_facility = mailx\n' "$RULES" >"$D/vals.conf"
"$SIFT" -d "$D/s7" lint "$D/vals.conf" >"$D/vals.out" 2>&1
check "bad daemon settings fail the lint" [ $? != 0 ]
check "a bad socket_mode names its line" grep -q "vals.conf:2: socket_mode: expected an octal mode" "$D/vals.out"
check "a bad log_level names its line" grep -q "vals.conf:3: log_level: expected" "$D/vals.out"
check "a bad log_facility names its line" grep -q "vals.conf:4: log_facility: unknown facility" "$D/vals.out"

# Three different mistakes on three lines: all three reported, the lint fails.
printf '%s\n' 'header A Subject =~ /(unclosed/' 'body B /ok/' 'score B abc' 'meta C (B &&' \
	'score NEVER_DEFINED 2' 'body E /x/' 'score E 1e308' >"$D/bad.cf"
"$SIFT" -d "$D/s6" lint "$D/bad.cf" >"$D/bad.out" 2>&1
check "a rules file with errors fails the lint" [ $? != 0 ]
check "the regex error on line 1 is reported" grep -q "bad.cf:1: header rule A: regex error" "$D/bad.out"
check "the bad score on line 3 is reported" grep -q "bad.cf:3: score B: bad number" "$D/bad.out"
check "the broken meta on line 4 is reported" grep -q "bad.cf:4: meta rule C:" "$D/bad.out"
check "the out-of-range score on line 7 is reported" grep -q "bad.cf:7: score E: 1e308 is out of range" "$D/bad.out"
check "a score for an undefined rule warns" \
	grep -q "bad.cf:5: warning: score for undefined rule NEVER_DEFINED" "$D/bad.out"
check "the count says 4 errors" grep -q "^4 error(s)" "$D/bad.out"

"$SIFT" -d "$D/s4" -c "$CONF" check --tsv -r "$RULES" "$MSG" | cut -f2-4 >"$D/with.tsv"
"$SIFT" -d "$D/s5" check --tsv -r "$RULES" "$MSG" | cut -f2-4 >"$D/without.tsv"
check "a message scores the same with the shipped file as with none" \
	cmp -s "$D/with.tsv" "$D/without.tsv"

# Started by systemd or an init script the daemon runs in "/", where a
# relative file name is all but surely a slip: it is warned about, with
# its file:line, and the daemon still starts.
RULES_ABS=$(cd "$RULES" && pwd)
REL=${RULES_ABS#/}
printf 'rules = %s\n' "$REL" >"$D/root.conf"
MILTER=$(cd "$top_builddir" && pwd)/sift-milter
MP=$(free_port)
(cd / && exec "$MILTER" -f -c "$D/root.conf" -d "$D/s6" -p "inet:$MP@127.0.0.1") 2>"$D/root.err" &
RP=$!
it_track "$RP"
check "started in /, sift-milter starts with a relative rules path" \
	wait_for 20 grep -q "listening on" "$D/root.err"
check "and warns about it at its file:line" \
	grep -q "root.conf:1: warning: rules: the relative path '$REL' is taken from /" "$D/root.err"
kill "$RP"
wait "$RP"
it_untrack "$RP"

# -f, -p and -d hide the file's foreground, socket and state_dir lines, but
# a bad value there is still refused at its line, as `sift lint` refuses it:
# the daemon and the lint agree on which files are valid.
printf 'rules = %s\nforeground = maybe\nsocket = carrier-pigeon:x\nstate_dir = ""\n' \
	"$RULES_ABS" >"$D/hidden.conf"
timeout 60 "$MILTER" -f -c "$D/hidden.conf" -d "$D/s8" -p "inet:$MP@127.0.0.1" \
	>"$D/hidden.err" 2>&1
check "a bad line hidden by a command-line flag fails the start" [ $? = 1 ]
check "the hidden foreground names its line" \
	grep -q "hidden.conf:2: foreground: expected yes or no, got 'maybe'" "$D/hidden.err"
check "the hidden socket names its line" grep -q "hidden.conf:3: .*carrier-pigeon" "$D/hidden.err"
check "the hidden state_dir names its line" grep -q "hidden.conf:4: state_dir: empty" "$D/hidden.err"
check "the daemon never listened" sh -c "! grep -q 'listening on' '$D/hidden.err'"
it_done
