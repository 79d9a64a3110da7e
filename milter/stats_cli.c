/*
 * stats_cli.c - `sift stats` (see stats.h): a tiny HTTP/1.0 client for the
 * daemon's /metrics and a summary of what it says. No HTTP library: the
 * endpoint is ours, on loopback, and one GET is all it takes.
 */
#include "config.h"

#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "promtext.h"
#include "xalloc.h"

#define STATS_TIMEOUT_MS     3000
#define STATS_MAX_BODY_BYTES (32u << 20)
#define STATS_TOP_RULES      10
#define STATS_HOST_BYTES     256

struct stats_target {
	char host[STATS_HOST_BYTES], port[16], path[256];
};

/*
 * metrics_listen's forms: PORT (127.0.0.1), HOST:PORT, [V6]:PORT. A
 * wildcard address is reached on loopback.
 */
static int stats_parse_listen(const char *s, struct stats_target *t)
{
	const char *colon = strrchr(s, ':');
	const char *port = colon ? colon + 1 : s;
	size_t hl = colon ? (size_t)(colon - s) : 0;
	const char *host = s;
	if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']')
		host++, hl -= 2;
	if (*port == '\0' || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
	    atoi(port) < 1 || atoi(port) > 65535 || hl >= sizeof(t->host))
		return -1;
	snprintf(t->port, sizeof(t->port), "%s", port);
	if (!colon || hl == 0)
		snprintf(t->host, sizeof(t->host), "127.0.0.1");
	else
		snprintf(t->host, sizeof(t->host), "%.*s", (int)hl, host);
	if (strcmp(t->host, "0.0.0.0") == 0)
		snprintf(t->host, sizeof(t->host), "127.0.0.1");
	else if (strcmp(t->host, "::") == 0)
		snprintf(t->host, sizeof(t->host), "::1");
	snprintf(t->path, sizeof(t->path), "/metrics");
	return 0;
}

/* http://HOST:PORT[/PATH] */
static int stats_parse_url(const char *url, struct stats_target *t)
{
	if (strncmp(url, "http://", 7) != 0)
		return -1;
	const char *hp = url + 7, *slash = strchr(hp, '/');
	char authority[STATS_HOST_BYTES + 24];
	size_t al = slash ? (size_t)(slash - hp) : strlen(hp);
	if (al == 0 || al >= sizeof(authority))
		return -1;
	memcpy(authority, hp, al);
	authority[al] = '\0';
	if (strchr(authority, ':') == NULL || stats_parse_listen(authority, t) < 0)
		return -1;
	if (slash) {
		if (strlen(slash) >= sizeof(t->path) || strpbrk(slash, " \r\n") != NULL)
			return -1;
		snprintf(t->path, sizeof(t->path), "%s", slash);
	}
	return 0;
}

static long stats_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connects within the timeout: a daemon that is not there must not hang the terminal. */
static int stats_connect(const struct stats_target *t, char *err, size_t err_len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
	int rc = getaddrinfo(t->host, t->port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, err_len, "%s: %s", t->host, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, err_len, "socket: %s", strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	int e = 0;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		e = errno;
		if (e == EINPROGRESS) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			socklen_t el = sizeof(e);
			if (poll(&pfd, 1, STATS_TIMEOUT_MS) <= 0)
				e = ETIMEDOUT;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
				e = errno;
		}
	}
	freeaddrinfo(ai);
	if (e != 0) {
		snprintf(err, err_len, "cannot connect to %s port %s: %s%s", t->host, t->port,
		         strerror(e), e == ECONNREFUSED ? " (is sift-milter running?)" : "");
		close(fd);
		return -1;
	}
	return fd;
}

/* Waits for fd to be ready until deadline; 0, or -1 on timeout. */
static int stats_wait(int fd, short ev, long deadline)
{
	long left = deadline - stats_now_ms();
	struct pollfd pfd = {.fd = fd, .events = ev};
	return left > 0 && poll(&pfd, 1, (int)left) > 0 ? 0 : -1;
}

/* GET the target; the body (NUL-terminated, caller frees) or NULL with err. */
static char *stats_fetch(const struct stats_target *t, size_t *len, char *err, size_t err_len)
{
	int fd = stats_connect(t, err, err_len);
	if (fd < 0)
		return NULL;
	long deadline = stats_now_ms() + STATS_TIMEOUT_MS;
	char req[STATS_HOST_BYTES + 512];
	bool v6 = strchr(t->host, ':') != NULL;
	int rl = snprintf(req, sizeof(req),
	                  "GET %s HTTP/1.0\r\nHost: %s%s%s:%s\r\nAccept: text/plain\r\n"
	                  "User-Agent: sift-stats/%s\r\n\r\n",
	                  t->path, v6 ? "[" : "", t->host, v6 ? "]" : "", t->port, PACKAGE_VERSION);
	size_t sent = 0;
	while (sent < (size_t)rl) {
		if (stats_wait(fd, POLLOUT, deadline) < 0) {
			snprintf(err, err_len, "%s port %s: timed out sending", t->host, t->port);
			goto fail;
		}
		ssize_t w = send(fd, req + sent, (size_t)rl - sent, MSG_NOSIGNAL);
		if (w < 0 && errno != EINTR && errno != EAGAIN) {
			snprintf(err, err_len, "%s port %s: %s", t->host, t->port, strerror(errno));
			goto fail;
		}
		if (w > 0)
			sent += (size_t)w;
	}
	size_t cap = 65536, n = 0;
	char *buf = xalloc_malloc(cap);
	for (;;) {
		if (stats_wait(fd, POLLIN, deadline) < 0) {
			snprintf(err, err_len, "%s port %s: no complete answer within %d ms",
			         t->host, t->port, STATS_TIMEOUT_MS);
			free(buf);
			goto fail;
		}
		if (n + 1 == cap) {
			if (cap >= STATS_MAX_BODY_BYTES) {
				snprintf(err, err_len, "%s port %s: answer larger than %u bytes",
				         t->host, t->port, STATS_MAX_BODY_BYTES);
				free(buf);
				goto fail;
			}
			cap *= 2;
			buf = xalloc_realloc(buf, cap);
		}
		ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
		if (r == 0)
			break;
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			snprintf(err, err_len, "%s port %s: %s", t->host, t->port, strerror(errno));
			free(buf);
			goto fail;
		}
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	int major, minor, status = 0;
	char *body = strstr(buf, "\r\n\r\n");
	if (sscanf(buf, "HTTP/%d.%d %d", &major, &minor, &status) != 3 || body == NULL) {
		snprintf(err, err_len, "%s port %s: not an HTTP answer", t->host, t->port);
		free(buf);
		return NULL;
	}
	if (status != 200) {
		char line[128];
		log_escape(line, sizeof(line), buf);
		line[strcspn(line, "\\")] = '\0';
		snprintf(err, err_len, "%.100s port %s%.100s: %.100s", t->host, t->port, t->path,
		         line);
		free(buf);
		return NULL;
	}
	body += 4;
	*len = n - (size_t)(body - buf);
	memmove(buf, body, *len + 1);
	return buf;
fail:
	close(fd);
	return NULL;
}

/* A name or label value from the wire, made safe for a terminal. */
static const char *stats_safe(const char *s, char *buf, size_t len)
{
	log_escape(buf, len, s);
	return buf;
}

/* name{k="v",...} as it reads in the text format. */
static void stats_series(const promtext_sample_t *s, char *out, size_t len)
{
	size_t n = (size_t)snprintf(out, len, "%s", s->name);
	for (size_t i = 0; i < s->n_labels && n + 8 < len; i++) {
		n +=
		    (size_t)snprintf(out + n, len - n, "%s%s=\"", i ? "," : "{", s->labels[i].name);
		/* Escaped back as the text format writes it. */
		for (const char *v = s->labels[i].value; *v && n + 4 < len; v++) {
			if (*v == '\\' || *v == '"' || *v == '\n')
				out[n++] = '\\';
			out[n++] = *v == '\n' ? 'n' : *v;
		}
		if (n + 2 < len)
			out[n++] = '"';
		out[n] = '\0';
	}
	if (s->n_labels > 0 && n < len)
		snprintf(out + n, len - n, "}");
}

/* The same series in another scrape (for rates), or NULL. */
static const promtext_sample_t *stats_find(const promtext_t *p, const promtext_sample_t *s)
{
	for (size_t i = 0; p != NULL && i < p->n; i++) {
		const promtext_sample_t *o = &p->s[i];
		if (strcmp(o->name, s->name) != 0 || o->n_labels != s->n_labels)
			continue;
		size_t k = 0;
		for (; k < s->n_labels; k++)
			if (strcmp(o->labels[k].name, s->labels[k].name) != 0 ||
			    strcmp(o->labels[k].value, s->labels[k].value) != 0)
				break;
		if (k == s->n_labels)
			return o;
	}
	return NULL;
}

static bool stats_ends(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool stats_starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Per second between two scrapes, as " (R/s)"; "" without a previous one. */
static void stats_rate(const promtext_t *prev, const promtext_sample_t *s, double interval_s,
                       char *out, size_t len)
{
	const promtext_sample_t *o = stats_find(prev, s);
	out[0] = '\0';
	if (prev != NULL && interval_s > 0)
		snprintf(out, len, "  %.2f/s",
		         o ? (s->value - o->value) / interval_s : s->value / interval_s);
}

static int stats_by_value_desc(const void *a, const void *b)
{
	const promtext_sample_t *x = *(const promtext_sample_t *const *)a;
	const promtext_sample_t *y = *(const promtext_sample_t *const *)b;
	return x->value < y->value ? 1 : x->value > y->value ? -1 : strcmp(x->name, y->name);
}

/* Prints every unused sample whose name starts with prefix (all if NULL) under title. */
static void stats_group(const promtext_t *p, bool *used, const char *prefix, const char *title,
                        const promtext_t *prev, double interval_s)
{
	bool header = false;
	for (size_t i = 0; i < p->n; i++) {
		const promtext_sample_t *s = &p->s[i];
		if (used[i] || (prefix && strstr(s->name, prefix) == NULL))
			continue;
		used[i] = true;
		/* Buckets are summed up by the latency lines, or too many to show. */
		if (stats_ends(s->name, "_bucket"))
			continue;
		if (!header)
			printf("%s\n", title);
		header = true;
		char series[1024], safe[4096], rate[48];
		stats_series(s, series, sizeof(series));
		stats_rate(prev, s, interval_s, rate, sizeof(rate));
		if (!stats_ends(s->name, "_total"))
			rate[0] = '\0';
		printf("  %-60s %g%s\n", stats_safe(series, safe, sizeof(safe)), s->value, rate);
	}
}

static void stats_summary(const char *where, const promtext_t *p, const promtext_t *prev,
                          double interval_s)
{
	bool *used = xalloc_calloc(p->n ? p->n : 1, sizeof(*used));
	char safe[1024], rate[48];
	printf("sift-milter at %s\n", where);

	double total = 0;
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->s[i].name, "sift_messages_total") == 0)
			total += p->s[i].value;
	printf("messages %.0f", total);
	if (prev != NULL) {
		double before = 0;
		for (size_t i = 0; i < prev->n; i++)
			if (strcmp(prev->s[i].name, "sift_messages_total") == 0)
				before += prev->s[i].value;
		printf("  %.2f/s over %.0f s", (total - before) / interval_s, interval_s);
	}
	printf("\n");
	for (size_t i = 0; i < p->n; i++) {
		const promtext_sample_t *s = &p->s[i];
		if (strcmp(s->name, "sift_messages_total") != 0)
			continue;
		used[i] = true;
		const char *a = promtext_label(s, "action");
		stats_rate(prev, s, interval_s, rate, sizeof(rate));
		printf("  %-20s %12.0f%s\n", stats_safe(a ? a : "-", safe, sizeof(safe)), s->value,
		       rate);
	}
	double msum = NAN, mcount = NAN;
	for (size_t i = 0; i < p->n; i++) {
		const promtext_sample_t *s = &p->s[i];
		if (!stats_starts(s->name, "sift_message_duration_seconds"))
			continue;
		used[i] = true;
		if (stats_ends(s->name, "_sum"))
			msum = s->value;
		else if (stats_ends(s->name, "_count"))
			mcount = s->value;
	}
	if (mcount > 0)
		printf("  mean time per message %.2f ms\n", msum / mcount * 1000.0);

	size_t nr = 0;
	const promtext_sample_t **rules = xalloc_calloc(p->n ? p->n : 1, sizeof(*rules));
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->s[i].name, "sift_rule_hits_total") == 0) {
			used[i] = true;
			rules[nr++] = &p->s[i];
		}
	qsort(rules, nr, sizeof(*rules), stats_by_value_desc);
	if (nr > 0)
		printf("top rules by hits (%zu rules hit)\n", nr);
	for (size_t i = 0; i < nr && i < STATS_TOP_RULES; i++) {
		const char *r = promtext_label(rules[i], "rule");
		stats_rate(prev, rules[i], interval_s, rate, sizeof(rate));
		printf("  %-40s %12.0f%s\n", stats_safe(r ? r : "-", safe, sizeof(safe)),
		       rules[i]->value, rate);
	}
	free(rules);

	/* Sources: every sift_source_* series with a source label, one line per source. */
	bool header = false;
	for (size_t i = 0; i < p->n; i++) {
		const char *src = promtext_label(&p->s[i], "source");
		if (used[i] || src == NULL || !stats_starts(p->s[i].name, "sift_source_"))
			continue;
		if (!header)
			printf("evidence sources\n");
		header = true;
		double sum = NAN, count = NAN;
		char extra[1024] = "";
		size_t el = 0;
		for (size_t j = i; j < p->n; j++) {
			const promtext_sample_t *s = &p->s[j];
			const char *sj = promtext_label(s, "source");
			if (used[j] || sj == NULL || strcmp(sj, src) != 0 ||
			    !stats_starts(s->name, "sift_source_"))
				continue;
			used[j] = true;
			if (stats_starts(s->name, "sift_source_duration_seconds")) {
				if (stats_ends(s->name, "_sum"))
					sum = s->value;
				else if (stats_ends(s->name, "_count"))
					count = s->value;
			} else if (el < sizeof(extra)) {
				/* sift_source_errors_total -> errors */
				const char *what = s->name + strlen("sift_source_");
				size_t wl = strlen(what);
				if (stats_ends(what, "_total"))
					wl -= strlen("_total");
				el += (size_t)snprintf(extra + el, sizeof(extra) - el, "  %.*s %g",
				                       (int)wl, what, s->value);
			}
		}
		printf("  %-10s", stats_safe(src, safe, sizeof(safe)));
		if (count > 0)
			printf("  mean %.2f ms over %.0f", sum / count * 1000.0, count);
		printf("%s\n", stats_safe(extra, safe, sizeof(safe)));
	}

	stats_group(p, used, "sift_redis_", "redis", prev, interval_s);
	stats_group(p, used, "sift_dnsbl_", "dnsbl", prev, interval_s);
	stats_group(p, used, "sift_bayes_", "bayes", prev, interval_s);
	stats_group(p, used, "reload", "reloads", prev, interval_s);
	stats_group(p, used, NULL, "other", prev, interval_s);
	free(used);
	fflush(stdout);
}

static void stats_raw(const promtext_t *p)
{
	char series[1024], safe[4096];
	for (size_t i = 0; i < p->n; i++) {
		stats_series(&p->s[i], series, sizeof(series));
		printf("%s %g\n", stats_safe(series, safe, sizeof(safe)), p->s[i].value);
	}
	fflush(stdout);
}

static int stats_scrape(const struct stats_target *t, promtext_t *p)
{
	char err[1024];
	size_t len;
	char *body = stats_fetch(t, &len, err, sizeof(err));
	if (body == NULL) {
		fprintf(stderr, "sift stats: %s\n", err);
		return -1;
	}
	int rc = promtext_parse(body, len, p, err, sizeof(err));
	free(body);
	if (rc < 0)
		fprintf(stderr, "sift stats: %s port %s%s: %s\n", t->host, t->port, t->path, err);
	return rc;
}

static void stats_usage(void)
{
	fprintf(stderr, "usage: sift stats [--url http://HOST:PORT/metrics] [--watch SECONDS "
	                "[--count N]] [--raw]\n");
}

int stats_cmd_stats(cli_ctx_t *ctx, int argc, char **argv)
{
	static const struct option opts[] = {{"url", required_argument, NULL, 'u'},
	                                     {"watch", required_argument, NULL, 'w'},
	                                     {"count", required_argument, NULL, 'n'},
	                                     {"raw", no_argument, NULL, 'r'},
	                                     {NULL, 0, NULL, 0}};
	const char *url = NULL;
	long watch_s = 0, count = 0;
	bool raw = false;
	int ch;
	char *end;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'u': url = optarg; break;
		case 'r': raw = true; break;
		case 'w':
			watch_s = strtol(optarg, &end, 10);
			if (*end != '\0' || watch_s < 1 || watch_s > 86400) {
				fprintf(stderr, "sift stats: --watch: seconds from 1 to 86400\n");
				return 2;
			}
			break;
		case 'n':
			count = strtol(optarg, &end, 10);
			if (*end != '\0' || count < 1) {
				fprintf(stderr, "sift stats: --count: a positive number\n");
				return 2;
			}
			break;
		default: stats_usage(); return 2;
		}
	}
	if (optind != argc) {
		stats_usage();
		return 2;
	}
	struct stats_target t;
	char where[STATS_HOST_BYTES + 300];
	if (url != NULL) {
		if (stats_parse_url(url, &t) < 0) {
			fprintf(stderr,
			        "sift stats: --url: expected http://HOST:PORT[/PATH], got '%s'\n",
			        url);
			return 2;
		}
	} else {
		const char *listen = NULL, *cpath = conf_path(ctx->conf);
		conf_str(ctx->conf, "metrics_listen", "", &listen, ctx->diag);
		if (listen == NULL || listen[0] == '\0') {
			fprintf(
			    stderr,
			    "sift stats: metrics_listen is not set: enable metrics_listen in %s "
			    "(or give --url)\n",
			    cpath && cpath[0] ? cpath : "the configuration (sift -c FILE)");
			return 1;
		}
		if (stats_parse_listen(listen, &t) < 0) {
			const char *file = NULL;
			unsigned line = 0;
			conf_value_at(ctx->conf, "metrics_listen", 0, &file, &line);
			fprintf(stderr,
			        "%s:%u: metrics_listen: expected PORT or HOST:PORT, got '%s'\n",
			        file ? file : "-", line, listen);
			return 1;
		}
	}
	bool v6 = strchr(t.host, ':') != NULL;
	snprintf(where, sizeof(where), "http://%s%s%s:%s%s", v6 ? "[" : "", t.host, v6 ? "]" : "",
	         t.port, t.path);

	promtext_t prev = {0}, cur = {0};
	if (stats_scrape(&t, &cur) < 0)
		return 1;
	if (watch_s == 0) {
		raw ? stats_raw(&cur) : stats_summary(where, &cur, NULL, 0);
		promtext_free(&cur);
		return 0;
	}
	/* --watch: each summary shows the rates since the scrape before it. */
	for (long shown = 0; count == 0 || shown < count; shown++) {
		long t0 = stats_now_ms();
		prev = cur;
		sleep((unsigned)watch_s);
		if (stats_scrape(&t, &cur) < 0) {
			promtext_free(&prev);
			return 1;
		}
		double interval_s = (double)(stats_now_ms() - t0) / 1000.0;
		if (shown > 0)
			printf("\n");
		raw ? stats_raw(&cur) : stats_summary(where, &cur, &prev, interval_s);
		promtext_free(&prev);
	}
	promtext_free(&cur);
	return 0;
}
