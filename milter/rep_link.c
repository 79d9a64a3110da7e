/*
 * rep_link.c - one Redis connection that survives Redis: timeouts on
 * every connect and command, reconnection with exponential backoff, a
 * circuit breaker, Sentinel discovery of the primary, AUTH and SELECT,
 * and the error replies that mean "this server cannot serve you now".
 */
#include "config.h"

#include "rep.h"
#include "xalloc.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

enum { LINK_ADDR_MAX_BYTES = 300, LINK_MAX_SENTINELS = 16 };

struct rep_link {
	rep_link_conf_t conf;
	char *server, *master_name, *password, *script;
	char *sentinels[LINK_MAX_SENTINELS];
	redisContext *ctx;
	char addr[LINK_ADDR_MAX_BYTES];
	char err[256];
	char sha[48];
	unsigned consecutive_failures;
	long next_attempt_ms; /* monotonic; no connection attempt before */
	long open_until_ms;   /* the circuit is open until then */
	bool fresh;           /* connected since rep_link_take_fresh() last asked */
	/* Read by other threads for explanations and statistics: atomics. */
	int state;
	long srtt_us; /* smoothed round trip, microseconds; -1 before any */
	rep_link_stats_t st;
};

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * TCP's smoothing (7/8 old, 1/8 new) of the time to a first reply: what a
 * message would wait for a read on this link. The first sample is taken
 * as it is.
 */
static void rtt_sample(rep_link_t *l, long us)
{
	long old = __atomic_load_n(&l->srtt_us, __ATOMIC_RELAXED);
	long v = old < 0 ? us : old + (us - old) / 8;
	__atomic_store_n(&l->srtt_us, v, __ATOMIC_RELAXED);
}

static char *dup_or_null(const char *s)
{
	return s ? xalloc_strdup(s) : NULL;
}

rep_link_t *rep_link_new(const rep_link_conf_t *c)
{
	rep_link_t *l = xalloc_calloc(1, sizeof(*l));
	l->conf = *c;
	l->server = dup_or_null(c->server);
	l->master_name = dup_or_null(c->master_name);
	l->password = dup_or_null(c->password && *c->password ? c->password : NULL);
	l->script = dup_or_null(c->script);
	l->conf.n_sentinels =
	    c->n_sentinels < LINK_MAX_SENTINELS ? c->n_sentinels : LINK_MAX_SENTINELS;
	for (size_t i = 0; i < l->conf.n_sentinels; i++)
		l->sentinels[i] = xalloc_strdup(c->sentinels[i]);
	l->conf.server = l->server;
	l->conf.master_name = l->master_name;
	l->conf.password = l->password;
	l->conf.script = l->script;
	l->conf.sentinels = NULL;
	if (l->conf.connect_timeout_ms <= 0)
		l->conf.connect_timeout_ms = 10000;
	if (l->conf.command_timeout_ms <= 0)
		l->conf.command_timeout_ms = 30000;
	l->srtt_us = -1;
	if (l->conf.backoff_min_ms <= 0)
		l->conf.backoff_min_ms = 100;
	if (l->conf.backoff_max_ms < l->conf.backoff_min_ms)
		l->conf.backoff_max_ms = l->conf.backoff_min_ms;
	if (l->conf.breaker_failures == 0)
		l->conf.breaker_failures = 3;
	l->state = REP_LINK_DOWN;
	return l;
}

void rep_link_free(rep_link_t *l)
{
	if (l == NULL)
		return;
	if (l->ctx)
		redisFree(l->ctx);
	free(l->server);
	free(l->master_name);
	free(l->password);
	free(l->script);
	for (size_t i = 0; i < l->conf.n_sentinels; i++)
		free(l->sentinels[i]);
	free(l);
}

static void set_err(rep_link_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(rep_link_t *l, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(l->err, sizeof(l->err), fmt, ap);
	va_end(ap);
}

static struct timeval tv_of(long ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	return tv;
}

/* "host:port", "[v6]:port", "host" (port 6379) or "unix:/path". */
static redisContext *connect_addr(const char *spec, long timeout_ms, char *err, size_t errsize)
{
	char host[LINK_ADDR_MAX_BYTES];
	int port = 6379;
	redisContext *c;

	if (strncmp(spec, "unix:", 5) == 0) {
		c = redisConnectUnixWithTimeout(spec + 5, tv_of(timeout_ms));
	} else {
		const char *colon;
		size_t hl;
		if (spec[0] == '[') {
			const char *rb = strchr(spec, ']');
			if (rb == NULL) {
				snprintf(err, errsize, "bad address '%s'", spec);
				return NULL;
			}
			hl = (size_t)(rb - spec - 1);
			memcpy(host, spec + 1, hl < sizeof(host) ? hl : sizeof(host) - 1);
			colon = rb[1] == ':' ? rb + 1 : NULL;
		} else {
			colon = strrchr(spec, ':');
			hl = colon ? (size_t)(colon - spec) : strlen(spec);
			memcpy(host, spec, hl < sizeof(host) ? hl : sizeof(host) - 1);
		}
		host[hl < sizeof(host) ? hl : sizeof(host) - 1] = '\0';
		if (colon)
			port = atoi(colon + 1);
		if (port <= 0 || port > 65535) {
			snprintf(err, errsize, "bad port in '%s'", spec);
			return NULL;
		}
		c = redisConnectWithTimeout(host, port, tv_of(timeout_ms));
	}
	if (c == NULL) {
		snprintf(err, errsize, "%s: out of memory", spec);
		return NULL;
	}
	if (c->err) {
		snprintf(err, errsize, "%s: %s", spec, c->errstr);
		redisFree(c);
		return NULL;
	}
	if (redisSetTimeout(c, tv_of(timeout_ms)) != REDIS_OK) {
		snprintf(err, errsize, "%s: cannot set timeout", spec);
		redisFree(c);
		return NULL;
	}
	return c;
}

/* Asks the Sentinels in turn for the current primary; fills addr "host:port". */
static int sentinel_discover(rep_link_t *l, char *addr, size_t size)
{
	char e[200] = "";
	for (size_t i = 0; i < l->conf.n_sentinels; i++) {
		redisContext *c =
		    connect_addr(l->sentinels[i], l->conf.connect_timeout_ms, e, sizeof(e));
		if (c == NULL)
			continue;
		redisReply *r = redisCommand(c, "SENTINEL get-master-addr-by-name %s",
		                             l->master_name ? l->master_name : "mymaster");
		if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
		    r->element[0]->type == REDIS_REPLY_STRING &&
		    r->element[1]->type == REDIS_REPLY_STRING) {
			const char *h = r->element[0]->str;
			if (strchr(h, ':'))
				snprintf(addr, size, "[%s]:%s", h, r->element[1]->str);
			else
				snprintf(addr, size, "%s:%s", h, r->element[1]->str);
			freeReplyObject(r);
			redisFree(c);
			return 0;
		}
		snprintf(e, sizeof(e), "sentinel %s: %s", l->sentinels[i],
		         r == NULL                      ? c->errstr
		         : r->type == REDIS_REPLY_ERROR ? r->str
		                                        : "unknown master");
		if (r)
			freeReplyObject(r);
		redisFree(c);
	}
	set_err(l, "no Sentinel knows the primary (%s)", e[0] ? e : "none configured");
	return -1;
}

/* Error replies that say the server cannot serve us now: reconnect (and rediscover) later. */
static bool is_unavailable(const redisReply *r)
{
	static const char *const codes[] = {"LOADING", "READONLY", "MASTERDOWN", "NOSCRIPT",
	                                    "NOAUTH",  "BUSY",     "TRYAGAIN",   "CLUSTERDOWN"};
	if (r == NULL || r->type != REDIS_REPLY_ERROR || r->str == NULL)
		return false;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strncmp(r->str, codes[i], strlen(codes[i])) == 0)
			return true;
	return false;
}

/* Runs one command on the fresh connection; false (and err set) unless the reply is fine. */
static bool setup_cmd(rep_link_t *l, redisReply **out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(l->ctx, fmt, ap);
	va_end(ap);
	if (r == NULL) {
		set_err(l, "%s: %s", l->addr, l->ctx->errstr);
		return false;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		set_err(l, "%s: %s", l->addr, r->str);
		freeReplyObject(r);
		return false;
	}
	if (out)
		*out = r;
	else
		freeReplyObject(r);
	return true;
}

static bool do_connect(rep_link_t *l)
{
	redisReply *r = NULL;

	if (l->conf.n_sentinels > 0) {
		if (sentinel_discover(l, l->addr, sizeof(l->addr)) < 0)
			return false;
	} else if (l->server) {
		snprintf(l->addr, sizeof(l->addr), "%s", l->server);
	} else {
		set_err(l, "no Redis server configured");
		return false;
	}
	l->ctx = connect_addr(l->addr, l->conf.connect_timeout_ms, l->err, sizeof(l->err));
	if (l->ctx == NULL)
		return false;
	if (l->password && !setup_cmd(l, NULL, "AUTH %s", l->password))
		return false;
	if (l->conf.db != 0 && !setup_cmd(l, NULL, "SELECT %ld", l->conf.db))
		return false;
	/* PING is allowed while loading; a data command is not, which is the point. */
	long t0 = mono_us();
	if (!setup_cmd(l, NULL, "EXISTS sift:probe"))
		return false;
	rtt_sample(l, mono_us() - t0);
	if (l->conf.want_primary) {
		if (!setup_cmd(l, &r, "ROLE"))
			return false;
		bool master = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
		              r->element[0]->type == REDIS_REPLY_STRING &&
		              strcmp(r->element[0]->str, "master") == 0;
		freeReplyObject(r);
		if (!master) {
			set_err(l, "%s: not a primary", l->addr);
			return false;
		}
	}
	if (l->script) {
		if (!setup_cmd(l, &r, "SCRIPT LOAD %s", l->script))
			return false;
		snprintf(l->sha, sizeof(l->sha), "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
		freeReplyObject(r);
	}
	if (redisSetTimeout(l->ctx, tv_of(l->conf.command_timeout_ms + l->conf.extra_read_ms)) !=
	    REDIS_OK) {
		set_err(l, "%s: cannot set timeout", l->addr);
		return false;
	}
	return true;
}

struct redisContext *rep_link_get(rep_link_t *l)
{
	long now;

	if (l->ctx)
		return l->ctx;
	now = now_ms();
	if (now < l->open_until_ms) {
		__atomic_store_n(&l->state, REP_LINK_OPEN, __ATOMIC_RELAXED);
		return NULL;
	}
	if (now < l->next_attempt_ms)
		return NULL;
	__atomic_add_fetch(&l->st.attempts, 1, __ATOMIC_RELAXED);
	if (!do_connect(l)) {
		char why[sizeof(l->err)];
		memcpy(why, l->err, sizeof(why));
		rep_link_fail(l, why);
		return NULL;
	}
	l->consecutive_failures = 0;
	l->err[0] = '\0';
	l->fresh = true;
	__atomic_store_n(&l->state, REP_LINK_UP, __ATOMIC_RELAXED);
	return l->ctx;
}

void rep_link_fail(rep_link_t *l, const char *why)
{
	long now = now_ms(), backoff;
	unsigned f;

	if (why != l->err)
		set_err(l, "%s", why);
	if (l->ctx) {
		redisFree(l->ctx);
		l->ctx = NULL;
	}
	__atomic_add_fetch(&l->st.failures, 1, __ATOMIC_RELAXED);
	f = ++l->consecutive_failures;
	backoff = l->conf.backoff_min_ms;
	for (unsigned i = 1; i < f && backoff < l->conf.backoff_max_ms; i++)
		backoff *= 2;
	if (backoff > l->conf.backoff_max_ms)
		backoff = l->conf.backoff_max_ms;
	l->next_attempt_ms = now + backoff;
	if (f >= l->conf.breaker_failures && l->conf.breaker_open_ms > 0) {
		/* Half-open after the pause: one attempt; failing it opens the circuit again. */
		l->open_until_ms = now + l->conf.breaker_open_ms;
		__atomic_add_fetch(&l->st.opened, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&l->state, REP_LINK_OPEN, __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&l->state, REP_LINK_DOWN, __ATOMIC_RELAXED);
	}
}

void rep_cmd_init(rep_cmd_t *c, const char *first)
{
	c->argc = 0;
	c->xargv = NULL;
	c->xlen = NULL;
	rep_cmd_arg(c, first);
}

void rep_cmd_argn(rep_cmd_t *c, const char *s, size_t n)
{
	if (c->argc >= (int)(sizeof(c->argv) / sizeof(c->argv[0])))
		return;
	c->argv[c->argc] = s;
	c->len[c->argc] = n;
	c->argc++;
}

void rep_cmd_arg(rep_cmd_t *c, const char *s)
{
	rep_cmd_argn(c, s, strlen(s));
}

int rep_link_pipeline(rep_link_t *l, size_t n, const rep_cmd_t *cmds, struct redisReply **replies)
{
	redisContext *c = rep_link_get(l);
	size_t i;

	for (i = 0; i < n; i++)
		replies[i] = NULL;
	if (c == NULL)
		return -1;
	for (i = 0; i < n; i++)
		if (redisAppendCommandArgv(
		        c, cmds[i].argc,
		        (const char **)(cmds[i].xargv ? cmds[i].xargv : cmds[i].argv),
		        cmds[i].xargv ? cmds[i].xlen : cmds[i].len) != REDIS_OK) {
			rep_link_fail(l, "out of memory");
			return 0;
		}
	long t0 = mono_us();
	for (i = 0; i < n; i++) {
		void *r = NULL;
		if (redisGetReply(c, &r) != REDIS_OK || r == NULL) {
			char why[600];
			snprintf(why, sizeof(why), "%s: %s", l->addr,
			         c->errstr[0] ? c->errstr : "no reply");
			rep_link_fail(l, why);
			return (int)i;
		}
		replies[i] = r;
		if (i == 0)
			rtt_sample(l, mono_us() - t0);
		if (is_unavailable(replies[i])) {
			char why[600];
			snprintf(why, sizeof(why), "%s: %.200s", l->addr, replies[i]->str);
			freeReplyObject(replies[i]);
			replies[i] = NULL;
			/*
			 * The rest of the replies are still on the wire: closing the
			 * connection (in fail) is what keeps the next pipeline in step.
			 */
			rep_link_fail(l, why);
			return (int)i;
		}
	}
	l->consecutive_failures = 0;
	return (int)n;
}

void rep_link_free_replies(size_t n, struct redisReply **replies)
{
	for (size_t i = 0; i < n; i++)
		if (replies[i]) {
			freeReplyObject(replies[i]);
			replies[i] = NULL;
		}
}

bool rep_link_take_fresh(rep_link_t *l)
{
	bool f = l->fresh;
	l->fresh = false;
	return f;
}

rep_link_state_t rep_link_state(rep_link_t *l)
{
	return (rep_link_state_t)__atomic_load_n(&l->state, __ATOMIC_RELAXED);
}

const char *rep_link_error(rep_link_t *l)
{
	return l->err;
}

const char *rep_link_addr(rep_link_t *l)
{
	return l->ctx ? l->addr : "";
}

const char *rep_link_script_sha(rep_link_t *l)
{
	return l->sha;
}

long rep_link_rtt_ms(rep_link_t *l)
{
	long us = __atomic_load_n(&l->srtt_us, __ATOMIC_RELAXED);
	return us < 0 ? -1 : (us + 999) / 1000;
}

/*
 * A single Redis (or a Sentinel-managed primary) for now: the Redis
 * Cluster support replaces this with what the connection found out.
 */
bool rep_link_is_cluster(rep_link_t *l)
{
	(void)l;
	return false;
}

rep_link_stats_t rep_link_stats(rep_link_t *l)
{
	rep_link_stats_t s;
	s.attempts = __atomic_load_n(&l->st.attempts, __ATOMIC_RELAXED);
	s.failures = __atomic_load_n(&l->st.failures, __ATOMIC_RELAXED);
	s.opened = __atomic_load_n(&l->st.opened, __ATOMIC_RELAXED);
	return s;
}
