/*
 * Tests of the metrics module: the Prometheus text format (families,
 * escaping of label values and HELP text, histograms), the counters the
 * message path moves, metrics_listen parsing, and the HTTP endpoint.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "verdict.h"

static const char *collect_label;

static void collect_one(metrics_out_t *o)
{
	metrics_out_family(o, "sift_test_total", "counter", "A help text with \\ and\na newline.");
	metrics_out_value(o, "sift_test_total", "rule", collect_label, 42);
}

static char *render(void)
{
	size_t len;
	char *t = metrics_render(collect_one, &len);
	cr_assert_eq(strlen(t), len);
	return t;
}

/* The value of the sample line that starts with prefix (name and labels), or -1. */
static double sample(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);
	for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

Test(metrics, label_values_are_escaped)
{
	collect_label = "a\"b\\c\nd";
	char *t = render();
	cr_assert_not_null(strstr(t, "sift_test_total{rule=\"a\\\"b\\\\c\\nd\"} 42\n"), "%s", t);
	free(t);
}

Test(metrics, help_text_escapes_backslash_and_newline)
{
	collect_label = "x";
	char *t = render();
	cr_assert_not_null(strstr(t,
	                          "# HELP sift_test_total A help text with \\\\ and\\na newline.\n"
	                          "# TYPE sift_test_total counter\n"),
	                   "%s", t);
	free(t);
}

Test(metrics, escape_stops_at_capacity_without_splitting_an_escape)
{
	char out[4];
	size_t n = metrics_escape("ab\"", out, sizeof(out));
	cr_assert_eq(n, 2);
	cr_assert_str_eq(out, "ab");
}

Test(metrics, messages_count_by_action_and_fill_the_histogram)
{
	collect_label = "x";
	char *before = render();
	double rej = sample(before, "sift_messages_total{action=\"reject\"}");
	double le2 = sample(before, "sift_message_duration_seconds_bucket{le=\"0.0025\"}");
	double le5 = sample(before, "sift_message_duration_seconds_bucket{le=\"0.005\"}");
	double cnt = sample(before, "sift_message_duration_seconds_count");
	cr_assert_geq(rej, 0);
	metrics_message(VERDICT_REJECT, 0.003);
	char *after = render();
	cr_assert_eq(sample(after, "sift_messages_total{action=\"reject\"}"), rej + 1);
	cr_assert_eq(sample(after, "sift_message_duration_seconds_bucket{le=\"0.0025\"}"), le2);
	cr_assert_eq(sample(after, "sift_message_duration_seconds_bucket{le=\"0.005\"}"), le5 + 1);
	cr_assert_eq(sample(after, "sift_message_duration_seconds_bucket{le=\"+Inf\"}"), cnt + 1);
	cr_assert_eq(sample(after, "sift_message_duration_seconds_count"), cnt + 1);
	cr_assert_not_null(strstr(after, "# TYPE sift_message_duration_seconds histogram\n"));
	free(before);
	free(after);
}

Test(metrics, sources_count_errors_degraded_timeouts_and_skips)
{
	metrics_source(0, "rules", 2, true, 0.0001);
	metrics_source(0, "rules", 1, false, 0.0001);
	metrics_source_skip(1, "dnsbl");
	collect_label = "x";
	char *t = render();
	cr_assert_eq(sample(t, "sift_source_errors_total{source=\"rules\"}"), 1);
	cr_assert_eq(sample(t, "sift_source_degraded_total{source=\"rules\"}"), 1);
	cr_assert_eq(sample(t, "sift_source_timeouts_total{source=\"rules\"}"), 1);
	cr_assert_eq(sample(t, "sift_source_skips_total{source=\"dnsbl\"}"), 1);
	cr_assert_eq(sample(t, "sift_source_duration_seconds_count{source=\"rules\"}"), 2);
	free(t);
}

Test(metrics, listen_forms)
{
	struct sockaddr_storage sa;
	char err[256];
	cr_assert_eq(metrics_listen_parse("9100", &sa, err, sizeof(err)), 0);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
	cr_assert_eq(sa.ss_family, AF_INET);
	cr_assert_eq(ntohs(s4->sin_port), 9100);
	cr_assert_eq(ntohl(s4->sin_addr.s_addr), INADDR_LOOPBACK, "a bare port is loopback");
	cr_assert_eq(metrics_listen_parse("0.0.0.0:9100", &sa, err, sizeof(err)), 0);
	cr_assert_eq(s4->sin_addr.s_addr, htonl(INADDR_ANY));
	cr_assert_eq(metrics_listen_parse("[::1]:9100", &sa, err, sizeof(err)), 0);
	cr_assert_eq(sa.ss_family, AF_INET6);
	cr_assert_eq(ntohs(((struct sockaddr_in6 *)&sa)->sin6_port), 9100);
	const char *bad[] = {"",           "0",        "65536",      "localhost:9100", "::1:9100",
	                     "[::1]9100",  "1.2.3.4:", "1.2.3.4:x1", "[1.2.3.4]:80",   "9100 ",
	                     "1.2.3.4:80a"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_assert_eq(metrics_listen_parse(bad[i], &sa, err, sizeof(err)), -1, "'%s'",
		             bad[i]);
		cr_assert_not_null(strstr(err, "metrics_listen"), "'%s': %s", bad[i], err);
	}
}

/* A port nobody listens on, from the kernel. */
static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t l = sizeof(a);
	getsockname(s, (struct sockaddr *)&a, &l);
	close(s);
	return ntohs(a.sin_port);
}

/* One HTTP request on 127.0.0.1:port; returns the whole response (static buffer). */
static const char *http(int port, const char *request)
{
	static char buf[1 << 16];
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(write(s, request, strlen(request)), (ssize_t)strlen(request));
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(buf) - 1 && (r = read(s, buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(s);
	return buf;
}

Test(metrics, endpoint_serves_get_metrics_only)
{
	collect_label = "served";
	int port = free_port();
	char spec[32], err[256];
	snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
	cr_assert_eq(metrics_start(spec, collect_one, err, sizeof(err)), 0, "%s", err);
	cr_assert(metrics_serves(spec));
	const char *r = http(port, "GET /metrics HTTP/1.0\r\n\r\n");
	cr_assert_not_null(strstr(r, " 200 OK\r\n"), "%s", r);
	cr_assert_not_null(strstr(r, "Content-Type: text/plain; version=0.0.4"), "%s", r);
	cr_assert_not_null(strstr(r, "sift_test_total{rule=\"served\"} 42\n"), "%s", r);
	r = http(port, "GET / HTTP/1.0\r\n\r\n");
	cr_assert_not_null(strstr(r, " 404 "), "%s", r);
	r = http(port, "GET /metrics/x HTTP/1.0\r\n\r\n");
	cr_assert_not_null(strstr(r, " 404 "), "%s", r);
	r = http(port, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
	cr_assert_not_null(strstr(r, " 404 "), "%s", r);
	r = http(port, "DELETE /metrics HTTP/1.0\r\n\r\n");
	cr_assert_not_null(strstr(r, " 404 "), "%s", r);
	metrics_stop();
	cr_assert_not(metrics_serves(NULL));
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_neq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0, "stopped: nobody listens");
	close(s);
}

struct serves_reader {
	const char *spec;
	atomic_bool done;
	long asked;
};

static void *serves_read(void *arg)
{
	struct serves_reader *r = arg;
	while (!atomic_load(&r->done)) {
		(void)metrics_serves(r->spec);
		r->asked++;
	}
	return NULL;
}

/*
 * The reload thread asks whether the server runs on the configured spec,
 * and the main thread stops it at the end. The answer used to be a pointer
 * to the running spec, compared after the lock was let go, so nothing
 * ordered that read before the stop's free: ThreadSanitizer reported it in
 * it_race (its reloads, then SIGTERM) on every run. Here: the answers, for
 * the spec, any spec and another one, while a reader asks all along.
 */
Test(metrics, asking_what_runs_is_safe_against_a_concurrent_stop, .timeout = 60)
{
	collect_label = "raced";
	char spec[32], other[32], err[256];
	int port = free_port();
	snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
	snprintf(other, sizeof(other), "127.0.0.2:%d", port);
	struct serves_reader r = {.spec = spec};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, serves_read, &r), 0);
	for (int i = 0; i < 200; i++) {
		cr_assert_eq(metrics_start(spec, collect_one, err, sizeof(err)), 0, "%s", err);
		cr_assert(metrics_serves(spec));
		cr_assert(metrics_serves(NULL));
		cr_assert_not(metrics_serves(other), "another spec is not the one running");
		metrics_stop();
		cr_assert_not(metrics_serves(spec));
		cr_assert_not(metrics_serves(NULL));
	}
	atomic_store(&r.done, true);
	pthread_join(t, NULL);
	cr_assert_gt(r.asked, 0);
}

/*
 * A client that sends its request one byte a second is never idle for
 * METRICS_TIMEOUT_S, and held its slot for good (eight such, the whole
 * endpoint): each connection gets METRICS_TIMEOUT_S in all.
 */
Test(metrics, a_trickling_client_is_cut_after_the_timeout, .timeout = 40)
{
	collect_label = "trickle";
	int port = free_port();
	char spec[32], err[256];
	snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
	cr_assert_eq(metrics_start(spec, collect_one, err, sizeof(err)), 0, "%s", err);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
	const char *req = "GET /metrics HTTP/1.1\r\nX-Slow: ";
	cr_assert_eq(send(s, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	bool closed = false;
	for (int i = 0; i < 3 * METRICS_TIMEOUT_S && !closed; i++) {
		struct pollfd pfd = {.fd = s, .events = POLLIN};
		char c;
		if (poll(&pfd, 1, 1000) > 0 && recv(s, &c, 1, 0) <= 0)
			closed = true;
		else if (send(s, "x", 1, MSG_NOSIGNAL) < 0)
			closed = true;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	close(s);
	metrics_stop();
	cr_assert(closed, "a byte a second kept the connection %ld s",
	          (long)(t1.tv_sec - t0.tv_sec));
	cr_assert_leq(t1.tv_sec - t0.tv_sec, METRICS_TIMEOUT_S + 2);
}
