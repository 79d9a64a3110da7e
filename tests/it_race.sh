#!/bin/sh
# it_race.sh - reloads while mail flows, with every module that starts
# threads configured at once (a real redis-server, a real unbound serving a
# DNS list on loopback, a Bayes store with autolearn and the regression, the
# shipped rules, the metrics endpoint): four clients send mail while SIGHUP
# arrives every 0.3 s (twelve times), then SIGTERM. The first ten reloads
# move the metrics endpoint between two ports while a scraper asks both,
# so the reload thread stops and starts it under scrapes and mail. Every message
# must get its verdict, the reloads must be done and none refused, the
# endpoint must answer where the last configuration puts it, and the
# daemon must stop in bounded time. contrib/run-tests.sh also runs it against a
# ThreadSanitizer build, where this load is what makes data races between
# the workers, the reload thread and the module threads show (a report in
# Sift's code fails that step: tests/tsan-reports.sh).
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

MILTER=$top_builddir/sift-milter
SIFT=$top_builddir/sift
MC=$top_builddir/sift-mclient
it_need "$MILTER" "$SIFT" "$MC"
it_need_redis
it_need_unbound
command -v curl >/dev/null || skip_all "curl is not installed"

D=$IT_TMP
RP=$(free_port)
it_redis_start 10 "$D/redis" "$RP" "$D/redis.log" --appendonly no ||
	{ fail "redis did not start on port $RP"; cat "$D/redis.log" >&2; it_done; }
UP=$(free_port)
it_unbound_conf "$D" "$UP" 1 >"$D/unbound.conf" <<EOF
	local-zone: "bl.test." static
	local-data: "bl.test. 300 IN SOA ns.bl.test. admin.bl.test. 1 3600 600 86400 60"
	local-data: "2.0.0.127.bl.test. 300 IN A 127.0.0.2"
	local-data: "2.2.0.192.bl.test. 300 IN A 127.0.0.2"
EOF
it_unbound_start "$D/unbound.conf" "$D/unbound.log" ||
	{ fail "unbound did not start on 127.0.0.1:$UP"; cat "$D/unbound.log" >&2; it_done; }

MP=$(free_port)
mkdir -p "$D/state"
cat >"$D/sift.conf" <<EOF
log = stderr
log_level = info
rules = $top_srcdir/rules
state_dir = $D/state
redis_server = 127.0.0.1:$RP
redis_connect_timeout = 500ms
redis_command_timeout = 500ms
dnsbl_nameserver = 127.0.0.1:$UP
dnsbl_list = bl ip bl.test 127.0.0.2=3:LC_BL
bayes_min_spam = 5
bayes_min_ham = 5
bayes_lr = yes
bayes_autolearn = yes
bayes_autolearn_spam_score = 3
bayes_expire_max_tokens = 100000
bayes_map_size = 16M
metrics_listen = 127.0.0.1:$MP
EOF
"$SIFT" -c "$D/sift.conf" learn --spam "$top_srcdir/tests/data/bayes/spam" \
	--ham "$top_srcdir/tests/data/bayes/ham" >"$D/learn.out" 2>&1 ||
	{ fail "sift learn failed"; cat "$D/learn.out" >&2; it_done; }

# The messages: the Bayes and milter fixtures, ham and spam.
mkdir -p "$D/mail"
for f in "$top_srcdir"/tests/data/bayes/spam/* "$top_srcdir"/tests/data/bayes/ham/* \
	"$top_srcdir"/tests/data/milter/*.eml; do
	cp "$f" "$D/mail/$(basename "$(dirname "$f")")-$(basename "$f" .eml).eml"
done
NMSG=$(ls "$D/mail" | wc -l)

SOCK=$D/s.sock
it_milter_start "$(($(scaled_ms 10000) / 1000))" "$D/sift.conf" "$D/state" "$SOCK" "$D/milter.log"
PID=$IT_MILTER_PID

# Each client sends the messages round after round until told to stop
# (at most 100 rounds); one line a message in its TSV file.
STOP=$D/stop
client() {
	_n=0
	while [ ! -e "$STOP" ] && [ $_n -lt 100 ]; do
		"$MC" -s "unix:$SOCK" -j 1 -t "$(scaled_ms 20000)" -i 192.0.2.2 --tsv "$D/mail" \
			>>"$D/load$1.tsv" 2>>"$D/load$1.err"
		_n=$((_n + 1))
	done
}
CLIENTS=4
i=0
LOADS=""
while [ $i -lt $CLIENTS ]; do
	client $i &
	LOADS="$LOADS $!"
	i=$((i + 1))
done
# The scraper: both ports in turn until told to stop (at most 2,000 rounds);
# one line per answer that carried the message counter.
MP2=$(free_port)
scraper() {
	_n=0
	while [ ! -e "$STOP" ] && [ $_n -lt 2000 ]; do
		for _p in "$MP" "$MP2"; do
			curl -s -m 2 "http://127.0.0.1:$_p/metrics" 2>/dev/null |
				grep -m 1 '^sift_messages_total' >>"$D/scrapes"
		done
		_n=$((_n + 1))
	done
}
: >"$D/scrapes"
scraper &
LOADS="$LOADS $!"
HUPS=0
while [ $HUPS -lt 12 ]; do
	sleep 0.3
	# the first ten move the endpoint to MP2 and back; the last ones keep
	# it on MP, so a reload finds it where it is (and the stop follows)
	if [ $HUPS -lt 10 ] && [ $((HUPS % 2)) -eq 0 ]; then to=$MP2; else to=$MP; fi
	sed "s/^metrics_listen = .*/metrics_listen = 127.0.0.1:$to/" "$D/sift.conf" >"$D/sift.conf.new" &&
		mv "$D/sift.conf.new" "$D/sift.conf"
	kill -HUP "$PID"
	HUPS=$((HUPS + 1))
done
touch "$STOP"
for l in $LOADS; do wait "$l"; done

rows=$(cat "$D"/load*.tsv | grep -v '^#' | wc -l)
errors=$(cat "$D"/load*.tsv | grep -v '^#' | awk -F'\t' '$2 == "error"' | wc -l)
check "every one of the $rows messages sent over $HUPS reloads got its verdict ($errors errors)" \
	[ "$rows" -gt 0 -a "$errors" -eq 0 -a $((rows % NMSG)) -eq 0 ]
check "the daemon survives $HUPS SIGHUPs under load" it_alive "$PID"
# (signals that arrive during a reload are one pending signal: fewer reloads
# than SIGHUPs; the last may still be running)
reloads() { grep -c 'configuration reloaded' "$D/milter.log"; }
two_reloads() { [ "$(reloads)" -ge 2 ]; }
wait_for "$(($(scaled_ms 10000) / 1000))" two_reloads
check "reloads were done while mail flowed ($(reloads) for $HUPS SIGHUPs)" \
	[ "$(reloads)" -ge 2 -a "$(reloads)" -le "$HUPS" ]
check "no reload was refused" [ "$(grep -c 'reload refused' "$D/milter.log")" -eq 0 ]
# The last file written names MP.
serves_last() { curl -s -m 2 "http://127.0.0.1:$MP/metrics" | grep -q '^sift_reloads_total'; }
check "the metrics endpoint answers where the last reload put it" \
	wait_for "$(($(scaled_ms 10000) / 1000))" serves_last
moves=$(grep -c "metrics: GET /metrics on 127.0.0.1:$MP2\$" "$D/milter.log")
check "it moved with the reloads ($moves times to the second port) and was scraped all along ($(wc -l <"$D/scrapes") answers)" \
	[ "$moves" -ge 1 -a -s "$D/scrapes" ]
check "the reputation reached Redis" wait_for 10 sh -c \
	"[ \$(redis-cli -h 127.0.0.1 -p $RP dbsize 2>/dev/null || echo 0) -gt 0 ]"

kill -TERM "$PID"
# (gone by it_alive, not kill -0: the daemon is this shell's child, a zombie until waited for)
gone() { ! it_alive "$PID"; }
check "SIGTERM stops it within $(scaled_ms 10000) ms" wait_for "$(($(scaled_ms 10000) / 1000))" gone
wait "$PID" 2>/dev/null
it_untrack "$PID"
check "it says it stopped" grep -q 'sift-milter stopped' "$D/milter.log"
it_done
