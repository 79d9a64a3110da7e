/*
 * metrics.c - the process-wide counters and their Prometheus text (see
 * metrics.h). Counting is a few relaxed atomic adds; all formatting
 * happens on the scraping thread. The HTTP side is metrics_http.c, linked
 * only into sift-milter.
 */
#include "config.h"

#include "metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verdict.h"
#include "xalloc.h"

/* Seconds; the same buckets for messages and sources so panels compare. */
static const double metrics_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define METRICS_N_BUCKETS (sizeof(metrics_buckets) / sizeof(metrics_buckets[0]))

/* Buckets are kept non-cumulative (one add per observation) and summed at scrape time. */
struct metrics_hist {
	_Atomic uint64_t bucket[METRICS_N_BUCKETS + 1]; /* the last one is +Inf */
	_Atomic uint64_t count;
	_Atomic uint64_t sum_ns;
};

struct metrics_source {
	_Atomic(const char *) name;
	struct metrics_hist dur;
	_Atomic uint64_t errors, degraded, timeouts, skips;
};

/* The process's one set of counters (see THREADS in metrics.h). */
static struct {
	_Atomic uint64_t messages[VERDICT_N_ACTIONS];
	struct metrics_hist message_dur;
	struct metrics_source sources[METRICS_MAX_SOURCES];
	_Atomic uint64_t reloads, reloads_failed, generation;
	_Atomic int64_t conns;
} metrics_g;

#define RLX memory_order_relaxed

static void hist_observe(struct metrics_hist *h, double s)
{
	size_t i = 0;
	while (i < METRICS_N_BUCKETS && s > metrics_buckets[i])
		i++;
	atomic_fetch_add_explicit(&h->bucket[i], 1, RLX);
	atomic_fetch_add_explicit(&h->count, 1, RLX);
	atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)(s > 0 ? s * 1e9 : 0), RLX);
}

void metrics_message(int action, double seconds)
{
	if (action >= 0 && action < VERDICT_N_ACTIONS)
		atomic_fetch_add_explicit(&metrics_g.messages[action], 1, RLX);
	hist_observe(&metrics_g.message_dur, seconds);
}

static struct metrics_source *source_at(size_t idx, const char *name)
{
	if (idx >= METRICS_MAX_SOURCES)
		return NULL;
	struct metrics_source *s = &metrics_g.sources[idx];
	if (atomic_load_explicit(&s->name, RLX) == NULL)
		atomic_store_explicit(&s->name, name, memory_order_release);
	return s;
}

void metrics_source(size_t idx, const char *name, int status, bool late, double seconds)
{
	struct metrics_source *s = source_at(idx, name);
	if (s == NULL)
		return;
	hist_observe(&s->dur, seconds);
	if (status == 2) /* EV_ERROR */
		atomic_fetch_add_explicit(&s->errors, 1, RLX);
	else if (status == 1) /* EV_DEGRADED */
		atomic_fetch_add_explicit(&s->degraded, 1, RLX);
	if (late)
		atomic_fetch_add_explicit(&s->timeouts, 1, RLX);
}

void metrics_source_skip(size_t idx, const char *name)
{
	struct metrics_source *s = source_at(idx, name);
	if (s != NULL)
		atomic_fetch_add_explicit(&s->skips, 1, RLX);
}

void metrics_conn_open(void)
{
	atomic_fetch_add_explicit(&metrics_g.conns, 1, RLX);
}

void metrics_conn_close(void)
{
	atomic_fetch_sub_explicit(&metrics_g.conns, 1, RLX);
}

void metrics_reload(bool ok)
{
	atomic_fetch_add_explicit(ok ? &metrics_g.reloads : &metrics_g.reloads_failed, 1, RLX);
}

void metrics_generation(uint64_t gen)
{
	atomic_store_explicit(&metrics_g.generation, gen, RLX);
}

/* ------------------------------------------------------------ text output */

struct metrics_out {
	char *buf;
	size_t len, cap;
};

static void out_printf(metrics_out_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void out_printf(metrics_out_t *o, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		o->cap = o->cap * 2 + (size_t)n;
		o->buf = xalloc_realloc(o->buf, o->cap);
	}
}

size_t metrics_escape(const char *in, char *out, size_t cap)
{
	size_t n = 0;
	for (; *in != '\0'; in++) {
		const char *rep = NULL;
		if (*in == '\\')
			rep = "\\\\";
		else if (*in == '"')
			rep = "\\\"";
		else if (*in == '\n')
			rep = "\\n";
		size_t need = rep ? 2 : 1;
		if (n + need >= cap)
			break;
		if (rep) {
			out[n++] = rep[0];
			out[n++] = rep[1];
		} else {
			out[n++] = *in;
		}
	}
	out[n] = '\0';
	return n;
}

/* HELP text escapes only backslash and newline. */
static void out_help(metrics_out_t *o, const char *help)
{
	for (; *help != '\0'; help++) {
		if (*help == '\\')
			out_printf(o, "\\\\");
		else if (*help == '\n')
			out_printf(o, "\\n");
		else
			out_printf(o, "%c", *help);
	}
}

void metrics_out_family(metrics_out_t *o, const char *name, const char *type, const char *help)
{
	out_printf(o, "# HELP %s ", name);
	out_help(o, help);
	out_printf(o, "\n# TYPE %s %s\n", name, type);
}

static void out_number(metrics_out_t *o, double v)
{
	if (isnan(v))
		out_printf(o, "NaN\n");
	else if (isinf(v))
		out_printf(o, "%s\n", v > 0 ? "+Inf" : "-Inf");
	else
		out_printf(o, "%.17g\n", v);
}

void metrics_out_value(metrics_out_t *o, const char *name, const char *label,
                       const char *label_value, double v)
{
	if (label != NULL) {
		char esc[1024];
		metrics_escape(label_value ? label_value : "", esc, sizeof(esc));
		out_printf(o, "%s{%s=\"%s\"} ", name, label, esc);
	} else {
		out_printf(o, "%s ", name);
	}
	out_number(o, v);
}

static double ld(_Atomic uint64_t *p)
{
	return (double)atomic_load_explicit(p, RLX);
}

/* A histogram's samples; label NULL for none. */
static void out_hist(metrics_out_t *o, const char *name, const char *label, const char *lv,
                     struct metrics_hist *h)
{
	char esc[256] = "";
	if (label)
		metrics_escape(lv, esc, sizeof(esc));
	uint64_t cum = 0;
	for (size_t i = 0; i <= METRICS_N_BUCKETS; i++) {
		cum += atomic_load_explicit(&h->bucket[i], RLX);
		char le[32];
		if (i < METRICS_N_BUCKETS)
			snprintf(le, sizeof(le), "%g", metrics_buckets[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		if (label)
			out_printf(o, "%s_bucket{%s=\"%s\",le=\"%s\"} %llu\n", name, label, esc, le,
			           (unsigned long long)cum);
		else
			out_printf(o, "%s_bucket{le=\"%s\"} %llu\n", name, le,
			           (unsigned long long)cum);
	}
	/* count from the buckets so that count == the +Inf bucket in every scrape */
	if (label) {
		out_printf(o, "%s_sum{%s=\"%s\"} %.9f\n", name, label, esc, ld(&h->sum_ns) / 1e9);
		out_printf(o, "%s_count{%s=\"%s\"} %llu\n", name, label, esc,
		           (unsigned long long)cum);
	} else {
		out_printf(o, "%s_sum %.9f\n", name, ld(&h->sum_ns) / 1e9);
		out_printf(o, "%s_count %llu\n", name, (unsigned long long)cum);
	}
}

static long count_dir(const char *path)
{
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	long n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void out_source_counter(metrics_out_t *o, const char *name, const char *help, size_t field)
{
	metrics_out_family(o, name, "counter", help);
	for (size_t i = 0; i < METRICS_MAX_SOURCES; i++) {
		struct metrics_source *s = &metrics_g.sources[i];
		const char *n = atomic_load_explicit(&s->name, memory_order_acquire);
		if (n == NULL)
			continue;
		_Atomic uint64_t *f = (_Atomic uint64_t *)((char *)s + field);
		metrics_out_value(o, name, "source", n, ld(f));
	}
}

char *metrics_render(metrics_collect_fn collect, size_t *len)
{
	metrics_out_t o = {.cap = 16384};
	o.buf = xalloc_malloc(o.cap);
	o.buf[0] = '\0';

	metrics_out_family(&o, "sift_messages_total", "counter", "Messages judged, by action.");
	for (int a = 0; a < VERDICT_N_ACTIONS; a++)
		metrics_out_value(&o, "sift_messages_total", "action", verdict_action_name(a),
		                  ld(&metrics_g.messages[a]));
	metrics_out_family(&o, "sift_message_duration_seconds", "histogram",
	                   "Wall time of scoring one message, all sources.");
	out_hist(&o, "sift_message_duration_seconds", NULL, NULL, &metrics_g.message_dur);

	metrics_out_family(&o, "sift_source_duration_seconds", "histogram",
	                   "Wall time of one evidence source on one message.");
	for (size_t i = 0; i < METRICS_MAX_SOURCES; i++) {
		const char *n =
		    atomic_load_explicit(&metrics_g.sources[i].name, memory_order_acquire);
		if (n != NULL)
			out_hist(&o, "sift_source_duration_seconds", "source", n,
			         &metrics_g.sources[i].dur);
	}
	out_source_counter(&o, "sift_source_errors_total",
	                   "Messages a source could not judge (internal error; on_error applies).",
	                   offsetof(struct metrics_source, errors));
	out_source_counter(&o, "sift_source_degraded_total",
	                   "Messages a source judged on less evidence (service down, input limit).",
	                   offsetof(struct metrics_source, degraded));
	out_source_counter(&o, "sift_source_timeouts_total",
	                   "Messages on which a source returned after the deadline.",
	                   offsetof(struct metrics_source, timeouts));
	out_source_counter(&o, "sift_source_skips_total",
	                   "Messages a source was not asked about (not configured).",
	                   offsetof(struct metrics_source, skips));

	metrics_out_family(&o, "sift_reloads_total", "counter", "Configuration reloads applied.");
	metrics_out_value(&o, "sift_reloads_total", NULL, NULL, ld(&metrics_g.reloads));
	metrics_out_family(&o, "sift_reloads_failed_total", "counter",
	                   "Configuration reloads refused (the previous one stayed live).");
	metrics_out_value(&o, "sift_reloads_failed_total", NULL, NULL,
	                  ld(&metrics_g.reloads_failed));
	metrics_out_family(&o, "sift_config_generation", "gauge",
	                   "Number of the configuration generation in use (1 at start).");
	metrics_out_value(&o, "sift_config_generation", NULL, NULL, ld(&metrics_g.generation));
	metrics_out_family(&o, "sift_connections_in_flight", "gauge", "MTA connections open.");
	metrics_out_value(&o, "sift_connections_in_flight", NULL, NULL,
	                  (double)atomic_load_explicit(&metrics_g.conns, RLX));
	long n = count_dir("/proc/self/task");
	if (n >= 0) {
		metrics_out_family(&o, "sift_threads", "gauge", "Threads of the process.");
		metrics_out_value(&o, "sift_threads", NULL, NULL, (double)n);
	}
	n = count_dir("/proc/self/fd");
	if (n >= 0) {
		metrics_out_family(&o, "sift_open_fds", "gauge", "Open file descriptors.");
		metrics_out_value(&o, "sift_open_fds", NULL, NULL, (double)(n > 0 ? n - 1 : 0));
	}
	if (collect != NULL)
		collect(&o);
	*len = o.len;
	return o.buf;
}

int metrics_listen_parse(const char *spec, struct sockaddr_storage *sa, char *err, size_t err_len)
{
	memset(sa, 0, sizeof(*sa));
	char host[64] = "127.0.0.1";
	const char *port = spec;
	bool v6 = false;
	if (spec[0] == '[') {
		const char *e = strchr(spec, ']');
		if (e == NULL || e[1] != ':' || (size_t)(e - spec - 1) >= sizeof(host)) {
			snprintf(err, err_len, "metrics_listen: expected [IPV6]:PORT, got '%s'",
			         spec);
			return -1;
		}
		memcpy(host, spec + 1, (size_t)(e - spec - 1));
		host[e - spec - 1] = '\0';
		port = e + 2;
		v6 = true;
	} else if (strchr(spec, ':') != NULL) {
		const char *e = strrchr(spec, ':');
		if ((size_t)(e - spec) >= sizeof(host) || strchr(spec, ':') != e) {
			snprintf(
			    err, err_len,
			    "metrics_listen: expected PORT, HOST:PORT or [IPV6]:PORT, got '%s'",
			    spec);
			return -1;
		}
		memcpy(host, spec, (size_t)(e - spec));
		host[e - spec] = '\0';
		port = e + 1;
	}
	unsigned long p = 0;
	size_t nd = strspn(port, "0123456789");
	if (nd == 0 || nd > 5 || port[nd] != '\0' || (p = strtoul(port, NULL, 10)) < 1 ||
	    p > 65535) {
		snprintf(err, err_len, "metrics_listen: port must be 1-65535, got '%s'", spec);
		return -1;
	}
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
			snprintf(err, err_len, "metrics_listen: '%s' is not an IPv6 address", host);
			return -1;
		}
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
			snprintf(err, err_len,
			         "metrics_listen: '%s' is not an IPv4 address (use [ADDR]:PORT for "
			         "IPv6)",
			         host);
			return -1;
		}
	}
	return 0;
}
