#!/bin/sh
# it_stats.sh - `sift stats` against an HTTP server on loopback serving a
# fixed Prometheus text: the summary (messages, top rules, per-source
# latency, gauges, other), --raw, --watch rates, and the errors an
# administrator meets (metrics_listen unset, nothing listening, a 404, a
# malformed answer).
. "${top_srcdir:-$(dirname "$0")/..}/tests/it_lib.sh"

SIFT=$top_builddir/sift
it_need "$SIFT"
command -v python3 >/dev/null 2>&1 || skip_all "python3 not installed"

D=$IT_TMP
PORT=$(free_port)
# Two scrapes' worth: the second adds 10 accepted messages and 4 SUBJ_SPAM hits.
cat >"$D/metrics1" <<'EOF2'
# HELP sift_messages_total Messages scanned, by action.
# TYPE sift_messages_total counter
sift_messages_total{action="accept"} 1027
sift_messages_total{action="add_header"} 40
sift_messages_total{action="reject"} 35
sift_rule_hits_total{rule="BL_SBL"} 12
sift_rule_hits_total{rule="SUBJ_SPAM"} 30
sift_rule_hits_total{rule="ODD \"Q\" \\ \n"} 2
# TYPE sift_source_duration_seconds histogram
sift_source_duration_seconds_bucket{source="dnsbl",le="0.005"} 3
sift_source_duration_seconds_bucket{source="dnsbl",le="+Inf"} 10
sift_source_duration_seconds_sum{source="dnsbl"} 0.12
sift_source_duration_seconds_count{source="dnsbl"} 10
sift_source_errors_total{source="dnsbl"} 2
sift_source_timeouts_total{source="dnsbl"} 1
sift_source_duration_seconds_sum{source="rules"} 0.003
sift_source_duration_seconds_count{source="rules"} 10
sift_message_duration_seconds_bucket{le="+Inf"} 10
sift_message_duration_seconds_sum 0.2
sift_message_duration_seconds_count 10
sift_redis_link_up 1
sift_dnsbl_queries_total{list="zen.example"} 10
sift_bayes_learned_total{class="spam"} 100
sift_reloads_total 2
sift_threads NaN
sift_future_metric{x="y"} +Inf
EOF2
sed -e 's/{action="accept"} 1027/{action="accept"} 1037/' \
	-e 's/{rule="SUBJ_SPAM"} 30/{rule="SUBJ_SPAM"} 34/' "$D/metrics1" >"$D/metrics2"
printf 'sift_ok 1\nsift_bad{a="1" 2\n' >"$D/bad"
# /metrics answers metrics1; /watch/metrics metrics1 once, then metrics2;
# /bad/metrics a malformed text.
cat >"$D/server.py" <<'EOF2'
import http.server, sys
d, port = sys.argv[1], int(sys.argv[2])
seen = [0]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/metrics":
            name = "metrics1"
        elif self.path == "/watch/metrics":
            seen[0] += 1
            name = "metrics1" if seen[0] == 1 else "metrics2"
        elif self.path == "/bad/metrics":
            name = "bad"
        else:
            self.send_error(404)
            return
        body = open(d + "/" + name, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
EOF2
python3 "$D/server.py" "$D" "$PORT" 2>"$D/server.err" &
SPID=$!
it_track "$SPID"
wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null || {
	fail "the test's HTTP server did not listen on port $PORT"
	it_done
}
has() { case "$1" in *"$2"*) return 0 ;; esac; echo "  '$2' not in '$1'" >&2; return 1; }
hasnt() { case "$1" in *"$2"*) echo "  '$2' unexpectedly in '$1'" >&2; return 1 ;; esac; return 0; }

echo "metrics_listen = $PORT" >"$D/port.conf"
OUT=$("$SIFT" -c "$D/port.conf" stats 2>"$D/port.err")
check "stats: a bare port is loopback, exit 0" test $? -eq 0
check "stats: messages in total" has "$OUT" "messages 1102"
check "stats: messages by action" has "$OUT" "$(printf '  %-20s %12s' accept 1027)"
check "stats: top rules, most hits first" \
	sh -c "printf '%s\n' \"\$1\" | grep -A2 '^top rules by hits (3 rules hit)' | sed -n 2p | grep -q '^  SUBJ_SPAM  *30$'" \
	- "$OUT"
check "stats: a hostile label value is printed escaped" has "$OUT" 'ODD "Q" \ \x0a'
check "stats: no raw control character" sh -c "! printf '%s' \"\$1\" | LC_ALL=C grep -q '[[:cntrl:]]'" - "$(printf '%s' "$OUT" | tr '\n' ' ')"
check "stats: per-source mean latency and errors" \
	has "$OUT" "dnsbl       mean 12.00 ms over 10  errors 2  timeouts 1"
check "stats: a source with timings only" has "$OUT" "rules       mean 0.30 ms over 10"
check "stats: mean time per message" has "$OUT" "mean time per message 20.00 ms"
check "stats: redis gauges" has "$OUT" "$(printf 'redis\n  %-60s 1' sift_redis_link_up)"
check "stats: dnsbl counters" has "$OUT" 'sift_dnsbl_queries_total{list="zen.example"}'
check "stats: bayes" has "$OUT" 'sift_bayes_learned_total{class="spam"}'
check "stats: reloads" has "$OUT" "$(printf 'reloads\n  %-60s 2' sift_reloads_total)"
check "stats: unknown metrics under other, NaN and +Inf shown" \
	has "$OUT" "$(printf 'other\n  %-60s nan\n  %-60s inf' sift_threads 'sift_future_metric{x="y"}')"
check "stats: histogram buckets are not listed" hasnt "$OUT" "_bucket"

echo "metrics_listen = 127.0.0.1:$PORT" >"$D/hostport.conf"
RAW=$("$SIFT" -c "$D/hostport.conf" stats --raw)
check "stats --raw (HOST:PORT): every series, label values escaped back" \
	has "$RAW" 'sift_rule_hits_total{rule="ODD \"Q\" \\ \n"} 2'
check "stats --raw: buckets with their le label" \
	has "$RAW" 'sift_source_duration_seconds_bucket{source="dnsbl",le="+Inf"} 10'

# The second scrape finds 10 more accepted over a watch of 1 s.
WATCH=$("$SIFT" stats --url "http://127.0.0.1:$PORT/watch/metrics" --watch 1 --count 1)
check "stats --watch: exit 0 after --count summaries" test $? -eq 0
rate=$(printf '%s\n' "$WATCH" | sed -n 's/^  accept  *1037  \([0-9.]*\)\/s$/\1/p')
check "stats --watch: the accept rate between the two scrapes (got '$rate')" \
	awk -v r="$rate" 'BEGIN { exit !(r != "" && r > 0 && r <= 10) }'
check "stats --watch: a counter that did not move is 0/s" \
	has "$WATCH" "$(printf '  %-20s %12s  0.00/s' reject 35)"

printf 'x = 1\n' >"$D/none.conf"
ERR=$("$SIFT" -c "$D/none.conf" stats 2>&1)
check "metrics_listen unset: exit 1" test $? -eq 1
check "metrics_listen unset: says so, naming the file" has "$ERR" "enable metrics_listen in $D/none.conf"
DEAD=$(free_port)
ERR=$("$SIFT" stats --url "http://127.0.0.1:$DEAD/metrics" 2>&1)
check "nothing listening: exit 1" test $? -eq 1
check "nothing listening: asks if the daemon runs" has "$ERR" "Connection refused (is sift-milter running?)"
ERR=$("$SIFT" stats --url "http://127.0.0.1:$PORT/nothere" 2>&1)
check "404: exit 1" test $? -eq 1
check "404: the status line is shown" has "$ERR" "404"
ERR=$("$SIFT" stats --url "http://127.0.0.1:$PORT/bad/metrics" 2>&1)
check "malformed text: the line is named" has "$ERR" "line 2: expected , or } after a label"
printf 'metrics_listen = nope:x\n' >"$D/badlisten.conf"
ERR=$("$SIFT" -c "$D/badlisten.conf" stats 2>&1)
check "bad metrics_listen: file:line" has "$ERR" "$D/badlisten.conf:1: metrics_listen: expected PORT or HOST:PORT"
ERR=$("$SIFT" stats --url "ftp://x" 2>&1)
check "bad --url: usage error" has "$ERR" "expected http://HOST:PORT"

kill "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null
it_untrack "$SPID"
it_done
