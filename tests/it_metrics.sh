#!/bin/sh
# it_metrics.sh - the Prometheus endpoint of a running sift-milter with
# every module that needs no outside service configured (rules, Bayes with
# a small store, a DNS list served by a local unbound, Redis reputation):
# the counters move with the messages sent, anything but GET /metrics is
# 404, `promtool check metrics` accepts the text, a reload keeps or moves
# the endpoint, a bad metrics_listen is reported at file:line, idle
# connections cannot hold the endpoint or the mail, and a real
# Prometheus scrapes it and answers a query for sift_messages_total, and
# runs every query of the Grafana dashboard (contrib/grafana/sift.json).
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

SIFT=$top_builddir/sift
MILTER=$top_builddir/sift-milter
MC=$top_builddir/sift-mclient
PROMTOOL=${PROMTOOL:-$(command -v promtool || echo /usr/bin/promtool)}
PROMETHEUS=${PROMETHEUS:-$(command -v prometheus || echo /usr/bin/prometheus)}
it_need "$SIFT" "$MILTER" "$MC"
it_need_unbound
it_need_redis
command -v curl >/dev/null || skip_all "curl is not installed"
[ -x "$PROMTOOL" ] || skip_all "promtool (Debian package prometheus) is not installed"

D=$IT_TMP
mkdir "$D/rules" "$D/state"
cp "$top_srcdir/tests/data/rules/10_it.cf" "$D/rules/"
has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in output" >&2; return 1; }

# ------------------------------------------------------------ the services
DNS_PORT=$(free_port)
it_unbound_conf "$D" "$DNS_PORT" 1 >"$D/unbound.conf" <<EOF
	local-zone: "bl.test." static
	local-data: "bl.test. 300 IN SOA ns.bl.test. admin.bl.test. 1 3600 600 86400 60"
	local-data: "2.2.0.192.bl.test. 300 IN A 127.0.0.2"
EOF
if ! it_unbound_start "$D/unbound.conf" "$D/unbound.log"; then
	fail "unbound did not start on 127.0.0.1:$DNS_PORT within 10 s"
	cat "$D/unbound.log" >&2
	it_done
fi
REDIS_PORT=$(free_port)
if ! it_redis_start 10 "$D/redis" "$REDIS_PORT" "$D/redis.log"; then
	fail "redis-server did not answer on 127.0.0.1:$REDIS_PORT within 10 s"
	it_done
fi

MPORT=$(free_port)
conf() {
	cat <<EOF
log = stderr
rules = $D/rules
add_header_score = 5
reject_score = 15
deadline = 2s
bayes_min_spam = 5
bayes_min_ham = 5
bayes_map_size = 16M
dnsbl_nameserver = 127.0.0.1:$DNS_PORT
dnsbl_list = bl ip bl.test 127.0.0.2=6:BL_TEST
redis_server = 127.0.0.1:$REDIS_PORT
redis_connect_timeout = 500ms
redis_command_timeout = 500ms
rep_write_window = 100ms
$1
EOF
}
conf "metrics_listen = $MPORT" >"$D/sift.conf"

# A small Bayes store, learned before the daemon starts.
S="$SIFT -c $D/sift.conf -d $D/state"
$S learn --spam "$top_srcdir/tests/data/bayes/spam" >/dev/null 2>"$D/learn.err" &&
	$S learn --ham "$top_srcdir/tests/data/bayes/ham" >/dev/null 2>>"$D/learn.err"
check "the Bayes store is learned" [ $? = 0 ]

# ------------------------------------------------------------ config errors
conf "metrics_listen = localhost:99999" >"$D/bad.conf"
LINE=$(grep -n '^metrics_listen' "$D/bad.conf" | cut -d: -f1)
out=$("$SIFT" -c "$D/bad.conf" -d "$D/state" lint 2>&1)
check "lint: a bad metrics_listen is reported at file:line" \
	has "$out" "$D/bad.conf:$LINE: metrics_listen:"

# ------------------------------------------------------------ the daemon
it_milter_start 10 "$D/sift.conf" "$D/state" "$D/milter.sock" "$D/milter.log"
URL=http://127.0.0.1:$MPORT/metrics
wait_for 10 curl -sf -o /dev/null "$URL" || fail "the endpoint did not answer on $URL"
scrape() { curl -sf "$URL"; }
# value NAME{LABELS}: the sample's value in a fresh scrape ("" when absent).
value() { scrape | awk -v k="$1" '$1 == k { print $2; exit }'; }

printf 'Subject: hello SIFTSPAMTOKEN\n\nbody\n' >"$D/spam.eml"
printf 'Subject: hello\n\nan ordinary body\n' >"$D/ham.eml"
check "nothing counted before mail" [ "$(value 'sift_messages_total{action="reject"}')" = 0 ]
"$MC" -s "unix:$D/milter.sock" -t 10000 -q "$D/spam.eml" "$D/spam.eml" "$D/ham.eml" \
	2>"$D/mc1.err"
"$MC" -s "unix:$D/milter.sock" -t 10000 -q -i 192.0.2.2 "$D/ham.eml" 2>"$D/mc2.err"

scrape >"$D/m1.txt"
v() { awk -v k="$1" '$1 == k { print $2; exit }' "$D/m1.txt"; }
check "sift_messages_total{action=reject} is 2" [ "$(v 'sift_messages_total{action="reject"}')" = 2 ]
check "sift_messages_total{action=accept} is 1" [ "$(v 'sift_messages_total{action="accept"}')" = 1 ]
check "the listed client's message is marked (add_header 1)" \
	[ "$(v 'sift_messages_total{action="add_header"}')" = 1 ]
check "the reject rule's hits are 2" [ "$(v 'sift_rule_hits_total{rule="SIFT_IT_SPAM_SUBJ"}')" = 2 ]
check "a rule that never hit reads 0" [ "$(v 'sift_rule_hits_total{rule="SIFT_IT_BODY"}')" = 0 ]
check "whole-message histogram counts 4" [ "$(v sift_message_duration_seconds_count)" = 4 ]
check "the rules source timed 4 messages" \
	[ "$(v 'sift_source_duration_seconds_count{source="rules"}')" = 4 ]
check "the DNS list was asked and found one listing" \
	[ "$(v 'sift_dnsbl_listings_total{list="bl"}')" = 1 ]
check "the DNS list is up" [ "$(v 'sift_dnsbl_list_up{list="bl"}')" = 1 ]
check "Bayes: 8 spam learned" [ "$(v 'sift_bayes_learned_messages{class="spam"}')" = 8 ]
# The same message twice: the second one's token reads come from the cache.
check "Bayes: token reads counted, and the repeated message's answered by the cache" \
	sh -c "[ '$(v sift_bayes_token_reads_total)' -gt 0 ] && [ '$(v sift_bayes_token_cache_hits_total)' -gt 0 ]"
check "threads and descriptors are reported" \
	sh -c "[ '$(v sift_threads)' -gt 1 ] && [ '$(v sift_open_fds)' -gt 3 ]"
wait_for 5 sh -c "curl -sf '$URL' | grep -qx 'sift_redis_up 1'"
check "Redis: the writer's link is up" [ $? = 0 ]

# The terminal view of the same figures, from the running daemon.
"$SIFT" -c "$D/sift.conf" stats >"$D/stats.out" 2>&1
check "sift stats reads the running daemon" [ $? = 0 ]
check "and shows its messages by action" grep -q "reject *2" "$D/stats.out"
check "and the rule that hit" grep -q "SIFT_IT_SPAM_SUBJ" "$D/stats.out"

check "promtool check metrics accepts the text" sh -c "'$PROMTOOL' check metrics <'$D/m1.txt' >'$D/promtool.out' 2>&1"
[ -s "$D/promtool.out" ] && cat "$D/promtool.out" >&2
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check "GET / is 404" [ "$(code "http://127.0.0.1:$MPORT/")" = 404 ]
check "POST /metrics is 404" [ "$(code -X POST -d x "$URL")" = 404 ]

# ------------------------------------------------------------ slow scrapers
# Twelve connections that never send a request take the endpoint's eight
# slots; mail goes on, and the endpoint answers again once its 5 s timeout
# has dropped them.
python3 - "$MPORT" >"$D/idle.out" 2>&1 <<'PY' &
import socket, sys, time
held = []
for _ in range(12):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", int(sys.argv[1])))
        held.append(s)
    except OSError:
        pass
print(len(held), "held", flush=True)
time.sleep(8)
PY
IDLE_PID=$!
it_track "$IDLE_PID"
# The check must come after the twelve connects, which a loaded machine may
# take more than a second to start: wait for the script's word, not a clock.
wait_for 5 grep -q held "$D/idle.out"
check "the endpoint takes no more connections while eight are held" \
	sh -c "! curl -sf -m 1 -o /dev/null '$URL'"
"$MC" -s "unix:$D/milter.sock" -t 10000 -q "$D/spam.eml" 2>"$D/mc3.err"
check "mail is judged while idle connections hold the endpoint" \
	grep -q "reject=1" "$D/mc3.err"
rejects_are() { [ "$(curl -s -m 2 "$URL" | awk '$1 == "sift_messages_total{action=\"reject\"}" { print $2 }')" = "$1" ]; }
wait_for "$(($(scaled_ms 10000) / 1000))" rejects_are 3
check "the endpoint answers again after its timeout, and counted that message" [ $? = 0 ]
kill "$IDLE_PID" 2>/dev/null
it_untrack "$IDLE_PID"

# ------------------------------------------------------------ reloads
kill -HUP "$IT_MILTER_PID"
wait_for 10 sh -c "[ \"\$(curl -sf '$URL' | awk '\$1 == \"sift_reloads_total\" { print \$2 }')\" = 1 ]"
check "a reload is counted and keeps the endpoint" [ $? = 0 ]
check "generation 2 in use" [ "$(value sift_config_generation)" = 2 ]
check "counters survive a reload" [ "$(value 'sift_messages_total{action="reject"}')" = 3 ]
MPORT2=$(free_port)
conf "metrics_listen = 127.0.0.1:$MPORT2" >"$D/sift.conf"
kill -HUP "$IT_MILTER_PID"
wait_for 10 curl -sf -o /dev/null "http://127.0.0.1:$MPORT2/metrics"
check "a reload with a new metrics_listen moves the endpoint" [ $? = 0 ]
check "and the old port is closed" sh -c "! curl -s -o /dev/null 'http://127.0.0.1:$MPORT/metrics'"
URL=http://127.0.0.1:$MPORT2/metrics
conf "metrics_listen = nonsense" >"$D/sift.conf"
kill -HUP "$IT_MILTER_PID"
wait_for 10 sh -c "[ \"\$(curl -sf '$URL' | awk '\$1 == \"sift_reloads_failed_total\" { print \$2 }')\" = 1 ]"
check "a refused reload is counted; the endpoint stays" [ $? = 0 ]
conf "metrics_listen = 127.0.0.1:$MPORT2" >"$D/sift.conf"

# ------------------------------------------------------------ a real Prometheus
if [ ! -x "$PROMETHEUS" ]; then
	echo "# SKIP prometheus (Debian package prometheus) is not installed: no real scrape"
else
	PPORT=$(free_port)
	cat >"$D/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sift
    static_configs:
      - targets: ['127.0.0.1:$MPORT2']
EOF
	"$PROMETHEUS" --config.file="$D/prometheus.yml" --storage.tsdb.path="$D/prom" \
		--web.listen-address="127.0.0.1:$PPORT" --log.level=warn >"$D/prometheus.log" 2>&1 &
	PROM_PID=$!
	it_track "$PROM_PID"
	Q="http://127.0.0.1:$PPORT/api/v1/query?query=sift_messages_total%7Baction%3D%22reject%22%7D"
	prom_value() {
		curl -sf "$Q" | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")' 2>/dev/null
	}
	wait_for "$(($(scaled_ms 30000) / 1000))" sh -c "[ \"\$(curl -sf '$Q' | grep -o '\"value\":\[[^]]*\]')\" != '' ]"
	check "Prometheus scraped the endpoint: its API answers sift_messages_total{action=reject} = 3" \
		[ "$(prom_value)" = 3 ]
	# Every query of the Grafana dashboard parses and runs on this Prometheus.
	python3 - "$top_srcdir/contrib/grafana/sift.json" "http://127.0.0.1:$PPORT" >"$D/dash.out" 2>&1 <<'PY'
import json, sys, urllib.parse, urllib.request
d = json.load(open(sys.argv[1]))
bad = n = 0
for p in d["panels"]:
    for t in p.get("targets", []):
        e = t["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
        n += 1
        u = sys.argv[2] + "/api/v1/query?query=" + urllib.parse.quote(e)
        try:
            r = json.load(urllib.request.urlopen(u, timeout=10))
            ok = r.get("status") == "success"
        except Exception as x:
            ok = False
        if not ok:
            bad += 1
            print("bad query in", p["title"], ":", e)
print(n, "queries,", bad, "bad")
sys.exit(1 if bad or n == 0 else 0)
PY
	check "every query of contrib/grafana/sift.json runs on Prometheus" [ $? = 0 ]
	sed "s/^/# /" "$D/dash.out"
	T="http://127.0.0.1:$PPORT/api/v1/targets"
	check "and the target is healthy" sh -c "curl -sf '$T' | grep -q '\"health\":\"up\"'"
	kill "$PROM_PID"
	wait_for 10 sh -c "! kill -0 $PROM_PID 2>/dev/null"
	it_untrack "$PROM_PID"
fi

kill "$IT_MILTER_PID"
wait_for 10 sh -c "! kill -0 $IT_MILTER_PID 2>/dev/null"
check "the daemon stops" [ $? = 0 ]
check "and the endpoint with it" sh -c "! curl -s -o /dev/null '$URL'"
it_done
