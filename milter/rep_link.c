/*
 * rep_link.c - one Redis link that survives Redis: timeouts on every
 * connect and command, reconnection with exponential backoff, a circuit
 * breaker, Sentinel discovery of the primary (authenticated), AUTH with an
 * ACL user and SELECT, addresses routed through local TLS tunnels, Redis
 * Cluster routing (slot map, MOVED, ASK), and the error replies that mean
 * "this server cannot serve you now". Credentials never reach a message.
 */
#include "config.h"

#include "rep.h"
#include "xalloc.h"

#include <hiredis/hiredis.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum {
	LINK_ADDR_MAX_BYTES = REP_ADDR_MAX_BYTES,
	LINK_MAX_SENTINELS = 16,
	LINK_SLOTS = 16384,
	LINK_MAX_NODES = 64,    /* cluster primaries the link keeps a connection to */
	LINK_MAX_REDIRECTS = 5, /* MOVED / ASK rounds for one pipeline */
	LINK_NO_NODE = 0xffff,
};

/* The largest reply a link takes when its conf names none (see rep_config_link()). */
#define LINK_REPLY_MAX_BYTES ((size_t)1 << 20)

/* A Redis Cluster primary, by the address the cluster announces. */
struct cnode {
	char addr[LINK_ADDR_MAX_BYTES];
	redisContext *ctx;
};

struct rep_link {
	rep_link_conf_t conf;
	char *server, *master_name, *password, *script;
	char *username, *sentinel_username, *sentinel_password;
	char *sentinels[LINK_MAX_SENTINELS];
	char *route_from[REP_MAX_ROUTES], *route_to[REP_MAX_ROUTES];
	char *cluster[REP_MAX_CLUSTER_SEEDS];
	/* The connection; in cluster mode one of nodes[]' (owned there). */
	redisContext *ctx;
	/* Redis Cluster: the primaries and which one serves each slot. */
	struct cnode nodes[LINK_MAX_NODES];
	size_t n_nodes;
	uint16_t *slot_node; /* LINK_SLOTS entries, an index in nodes[] or LINK_NO_NODE */
	size_t home;         /* the node of ctx */
	bool map_stale;      /* a MOVED was seen: fetch the slot map again */
	char addr[LINK_ADDR_MAX_BYTES];
	char err[1024];
	char sha[48];
	unsigned consecutive_failures;
	long next_attempt_ms; /* monotonic; no connection attempt before */
	long open_until_ms;   /* the circuit is open until then */
	bool fresh;           /* connected since rep_link_take_fresh() last asked */
	/*
	 * While a connection is being set up, when all of it (connect and
	 * handshake) must be done: set by connect_addr(), 0 once set up.
	 */
	long setup_until_ms;
	/* Read by other threads for explanations and statistics: atomics. */
	int state;
	long srtt_us; /* smoothed round trip, microseconds; -1 before any */
	/*
	 * The sockets of this link's connections, so that another thread can
	 * cut a wait on a stalled link short at shutdown (rep_link_interrupt):
	 * the only state shared with another thread, under fdmu.
	 */
	pthread_mutex_t fdmu;
	int fds[LINK_MAX_NODES + 4];
	size_t nfds;
	bool interrupted;
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

/* Secrets are wiped before their memory goes back to the allocator. */
static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

rep_link_t *rep_link_new(const rep_link_conf_t *c)
{
	rep_link_t *l = xalloc_calloc(1, sizeof(*l));
	l->conf = *c;
	if (l->conf.reply_max_bytes == 0)
		l->conf.reply_max_bytes = LINK_REPLY_MAX_BYTES;
	l->server = dup_or_null(c->server);
	l->master_name = dup_or_null(c->master_name);
	l->password = dup_or_null(c->password && *c->password ? c->password : NULL);
	l->username = dup_or_null(c->username && *c->username ? c->username : NULL);
	l->sentinel_username = dup_or_null(
	    c->sentinel_username && *c->sentinel_username ? c->sentinel_username : NULL);
	l->sentinel_password = dup_or_null(
	    c->sentinel_password && *c->sentinel_password ? c->sentinel_password : NULL);
	l->conf.username = l->username;
	l->conf.sentinel_username = l->sentinel_username;
	l->conf.sentinel_password = l->sentinel_password;
	l->conf.n_routes = c->n_routes < REP_MAX_ROUTES ? c->n_routes : REP_MAX_ROUTES;
	for (size_t i = 0; i < l->conf.n_routes; i++) {
		l->conf.route_from[i] = l->route_from[i] = xalloc_strdup(c->route_from[i]);
		l->conf.route_to[i] = l->route_to[i] = xalloc_strdup(c->route_to[i]);
	}
	l->conf.n_cluster =
	    c->n_cluster < REP_MAX_CLUSTER_SEEDS ? c->n_cluster : REP_MAX_CLUSTER_SEEDS;
	for (size_t i = 0; i < l->conf.n_cluster; i++)
		l->conf.cluster[i] = l->cluster[i] = xalloc_strdup(c->cluster[i]);
	if (l->conf.n_cluster > 0) {
		l->slot_node = xalloc_calloc(LINK_SLOTS, sizeof(*l->slot_node));
		for (size_t i = 0; i < LINK_SLOTS; i++)
			l->slot_node[i] = LINK_NO_NODE;
	}
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
	pthread_mutex_init(&l->fdmu, NULL);
	return l;
}

static void ctx_free(rep_link_t *l, redisContext *c);

static void close_all(rep_link_t *l)
{
	if (l->conf.n_cluster == 0) {
		if (l->ctx)
			ctx_free(l, l->ctx);
	} else {
		/* The node table is rebuilt from a fresh slot map on the next connection. */
		for (size_t i = 0; i < l->n_nodes; i++)
			if (l->nodes[i].ctx)
				ctx_free(l, l->nodes[i].ctx);
		l->n_nodes = 0;
		for (size_t i = 0; i < LINK_SLOTS; i++)
			l->slot_node[i] = LINK_NO_NODE;
		l->map_stale = false;
	}
	l->ctx = NULL;
}

void rep_link_free(rep_link_t *l)
{
	if (l == NULL)
		return;
	close_all(l);
	pthread_mutex_destroy(&l->fdmu);
	free(l->slot_node);
	free(l->server);
	free(l->master_name);
	free_secret(l->password);
	free(l->username);
	free(l->sentinel_username);
	free_secret(l->sentinel_password);
	free(l->script);
	for (size_t i = 0; i < l->conf.n_sentinels; i++)
		free(l->sentinels[i]);
	for (size_t i = 0; i < l->conf.n_routes; i++) {
		free(l->route_from[i]);
		free(l->route_to[i]);
	}
	for (size_t i = 0; i < l->conf.n_cluster; i++)
		free(l->cluster[i]);
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

/*
 * The address to dial for one the link is about to connect to: the local
 * end of a tunnel when a route names it (stunnel to a TLS port; Sentinel
 * and the cluster announce the server's own address, which the node
 * cannot reach in clear), else the address itself.
 */
static const char *route_of(const rep_link_t *l, const char *spec)
{
	for (size_t i = 0; i < l->conf.n_routes; i++)
		if (strcasecmp(l->route_from[i], spec) == 0)
			return l->route_to[i];
	return spec;
}

/* Records a new connection's socket; one made after an interrupt is cut at once. */
static void ctx_track(rep_link_t *l, redisContext *c)
{
	pthread_mutex_lock(&l->fdmu);
	if (l->interrupted)
		shutdown(c->fd, SHUT_RDWR);
	if (l->nfds < sizeof(l->fds) / sizeof(l->fds[0]))
		l->fds[l->nfds++] = c->fd;
	pthread_mutex_unlock(&l->fdmu);
}

/* Every connection is closed here: its socket leaves the table before it is closed. */
static void ctx_free(rep_link_t *l, redisContext *c)
{
	pthread_mutex_lock(&l->fdmu);
	for (size_t i = 0; i < l->nfds; i++)
		if (l->fds[i] == c->fd) {
			l->fds[i] = l->fds[--l->nfds];
			break;
		}
	pthread_mutex_unlock(&l->fdmu);
	redisFree(c);
}

void rep_link_interrupt(rep_link_t *l)
{
	pthread_mutex_lock(&l->fdmu);
	__atomic_store_n(&l->interrupted, true, __ATOMIC_RELAXED);
	for (size_t i = 0; i < l->nfds; i++)
		shutdown(l->fds[i], SHUT_RDWR);
	pthread_mutex_unlock(&l->fdmu);
}

bool rep_link_interrupted(rep_link_t *l)
{
	return __atomic_load_n(&l->interrupted, __ATOMIC_RELAXED);
}

/* "host:port", "[v6]:port", "host" (port 6379) or "unix:/path", routed. */
static redisContext *connect_addr(rep_link_t *l, const char *spec0, long timeout_ms, char *err,
                                  size_t errsize)
{
	char host[LINK_ADDR_MAX_BYTES], label[2 * LINK_ADDR_MAX_BYTES + 8];
	const char *spec = route_of(l, spec0);
	int port = 6379;
	redisContext *c;

	l->setup_until_ms = now_ms() + timeout_ms;

	if (spec != spec0)
		snprintf(label, sizeof(label), "%.300s via %.300s", spec0, spec);
	else
		snprintf(label, sizeof(label), "%s", spec);
	if (strncmp(spec, "unix:", 5) == 0) {
		c = redisConnectUnixWithTimeout(spec + 5, tv_of(timeout_ms));
	} else {
		const char *colon;
		size_t hl;
		if (spec[0] == '[') {
			const char *rb = strchr(spec, ']');
			if (rb == NULL) {
				snprintf(err, errsize, "bad address '%s'", label);
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
			snprintf(err, errsize, "bad port in '%s'", label);
			return NULL;
		}
		c = redisConnectWithTimeout(host, port, tv_of(timeout_ms));
	}
	if (c == NULL) {
		snprintf(err, errsize, "%s: out of memory", label);
		return NULL;
	}
	if (c->err) {
		snprintf(err, errsize, "%s: %s", label, c->errstr);
		redisFree(c);
		return NULL;
	}
	if (redisSetTimeout(c, tv_of(timeout_ms)) != REDIS_OK) {
		snprintf(err, errsize, "%s: cannot set timeout", label);
		redisFree(c);
		return NULL;
	}
	ctx_track(l, c);
	return c;
}

static bool flush_ctx(redisContext *c)
{
	int done = 0;
	while (!done)
		if (redisBufferWrite(c, &done) != REDIS_OK)
			return false;
	return true;
}

static void set_ctx_err(redisContext *c, int err, const char *what)
{
	c->err = err;
	snprintf(c->errstr, sizeof(c->errstr), "%s", what);
}

/*
 * One reply, as redisGetReply() reads it, but bounded twice. In time: by
 * deadline_ms for the whole reply, where SO_RCVTIMEO bounds each read
 * only (a server sending a byte every half second held the reader and
 * writer threads for minutes while the link still counted as up). In
 * size: the link fails once a reply has taken more than the link's
 * reply_max_bytes off the wire, where hiredis would buffer and parse any
 * amount (a 300 MB string took 2.6 GB; a stream read of a million
 * entries, 31 MB on the wire, 900 MB parsed).
 */
static int get_reply(rep_link_t *l, redisContext *c, long deadline_ms, void **out)
{
	size_t got = 0;
	*out = NULL;
	if (!flush_ctx(c) || redisGetReplyFromReader(c, out) != REDIS_OK)
		return REDIS_ERR;
	while (*out == NULL) {
		long left = deadline_ms - now_ms();
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		int rc = left > 0 ? poll(&p, 1, (int)left) : 0;
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0) {
			set_ctx_err(c, REDIS_ERR_IO, "reply not complete in time");
			return REDIS_ERR;
		}
		char buf[16384];
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			set_ctx_err(c, n == 0 ? REDIS_ERR_EOF : REDIS_ERR_IO,
			            n == 0 ? "Server closed the connection" : strerror(errno));
			return REDIS_ERR;
		}
		got += (size_t)n;
		if (got > l->conf.reply_max_bytes) {
			char why[96];
			snprintf(why, sizeof(why), "a reply larger than %zu bytes",
			         l->conf.reply_max_bytes);
			set_ctx_err(c, REDIS_ERR_PROTOCOL, why);
			return REDIS_ERR;
		}
		if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK ||
		    redisGetReplyFromReader(c, out) != REDIS_OK)
			return REDIS_ERR;
	}
	return REDIS_OK;
}

/* When every reply of a pipeline must be in: the command timeout, and a blocking read's wait. */
static long reply_deadline(const rep_link_t *l)
{
	return now_ms() + l->conf.command_timeout_ms + l->conf.extra_read_ms;
}

/*
 * One command and its reply within the connect timeout: the handshake's
 * commands (AUTH, SELECT, ROLE, SCRIPT LOAD, Sentinel and cluster-slot
 * discovery) under get_reply()'s bounds, as the pipelines' are. While a
 * connection is set up, its connect and all these share one timeout
 * (setup_until_ms): five commands each answered just in time took five.
 * NULL with c->errstr set on failure.
 */
static redisReply *link_vcommand(rep_link_t *l, redisContext *c, const char *fmt, va_list ap)
{
	void *r = NULL;
	long until = now_ms() + l->conf.connect_timeout_ms;
	if (l->setup_until_ms > 0 && l->setup_until_ms < until)
		until = l->setup_until_ms;
	if (redisvAppendCommand(c, fmt, ap) != REDIS_OK || get_reply(l, c, until, &r) != REDIS_OK)
		return NULL;
	return r;
}

static redisReply *link_command(rep_link_t *l, redisContext *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = link_vcommand(l, c, fmt, ap);
	va_end(ap);
	return r;
}

/*
 * AUTH [user] password on a fresh connection. The error names the server
 * and the user, never the password (nor does Redis's reply).
 */
static bool authenticate(rep_link_t *l, redisContext *c, const char *label, const char *user,
                         const char *pass)
{
	redisReply *r = user ? link_command(l, c, "AUTH %s %s", user, pass)
	                     : link_command(l, c, "AUTH %s", pass);
	if (r == NULL) {
		set_err(l, "%s: %s", label, c->errstr);
		return false;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		set_err(l, "%s: authentication failed%s%s%s: %.200s", label,
		        user ? " as user '" : "", user ? user : "", user ? "'" : "", r->str);
		freeReplyObject(r);
		return false;
	}
	freeReplyObject(r);
	return true;
}

/* Asks the Sentinels in turn for the current primary; fills addr "host:port". */
static int sentinel_discover(rep_link_t *l, char *addr, size_t size)
{
	char e[1024] = "";
	for (size_t i = 0; i < l->conf.n_sentinels; i++) {
		redisContext *c =
		    connect_addr(l, l->sentinels[i], l->conf.connect_timeout_ms, e, sizeof(e));
		if (c == NULL)
			continue;
		if (l->sentinel_password) {
			char label[LINK_ADDR_MAX_BYTES + 16];
			snprintf(label, sizeof(label), "sentinel %s", l->sentinels[i]);
			if (!authenticate(l, c, label, l->sentinel_username,
			                  l->sentinel_password)) {
				snprintf(e, sizeof(e), "%s", l->err);
				ctx_free(l, c);
				continue;
			}
		}
		redisReply *r = link_command(l, c, "SENTINEL get-master-addr-by-name %s",
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
			ctx_free(l, c);
			return 0;
		}
		snprintf(e, sizeof(e), "sentinel %s: %s", l->sentinels[i],
		         r == NULL                      ? c->errstr
		         : r->type == REDIS_REPLY_ERROR ? r->str
		                                        : "unknown master");
		if (r)
			freeReplyObject(r);
		ctx_free(l, c);
	}
	set_err(l, "no Sentinel knows the primary (%s)", e[0] ? e : "none configured");
	return -1;
}

/*
 * Error replies that say the server cannot serve us now: reconnect (and
 * rediscover) later. Not TRYAGAIN: a multi-key command on a slot being
 * migrated gets it while the server itself is fine; it goes back to the
 * caller, which keeps its work and tries again (rep_write_batch).
 */
static bool is_unavailable(const redisReply *r)
{
	static const char *const codes[] = {"LOADING", "READONLY", "MASTERDOWN", "NOSCRIPT",
	                                    "NOAUTH",  "BUSY",     "CLUSTERDOWN"};
	if (r == NULL || r->type != REDIS_REPLY_ERROR || r->str == NULL)
		return false;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strncmp(r->str, codes[i], strlen(codes[i])) == 0)
			return true;
	return false;
}

/* Runs one command on a fresh connection; false (and err set) unless the reply is fine. */
static bool setup_cmd(rep_link_t *l, redisContext *c, const char *label, redisReply **out,
                      const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = link_vcommand(l, c, fmt, ap);
	va_end(ap);
	if (r == NULL) {
		set_err(l, "%s: %s", label, c->errstr);
		return false;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		set_err(l, "%s: %s", label, r->str);
		freeReplyObject(r);
		return false;
	}
	if (out)
		*out = r;
	else
		freeReplyObject(r);
	return true;
}

/*
 * Makes a fresh connection ready: AUTH, SELECT, and for a single server
 * the probe and the primary check (a cluster node is a primary by the
 * slot map, and a data command on it could be MOVED); the script; the
 * read timeout.
 */
static bool conn_setup(rep_link_t *l, redisContext *c, const char *label, bool single)
{
	redisReply *r = NULL;

	if (l->password && !authenticate(l, c, label, l->username, l->password))
		return false;
	if (l->conf.db != 0 && !setup_cmd(l, c, label, NULL, "SELECT %ld", l->conf.db))
		return false;
	/* PING is allowed while loading; a data command is not, which is the point. */
	long t0 = mono_us();
	if (single && !setup_cmd(l, c, label, NULL, "EXISTS sift:probe"))
		return false;
	if (single)
		rtt_sample(l, mono_us() - t0);
	if (single && l->conf.want_primary) {
		if (!setup_cmd(l, c, label, &r, "ROLE"))
			return false;
		bool master = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
		              r->element[0]->type == REDIS_REPLY_STRING &&
		              strcmp(r->element[0]->str, "master") == 0;
		freeReplyObject(r);
		if (!master) {
			set_err(l, "%s: not a primary", label);
			return false;
		}
	}
	if (l->script) {
		if (!setup_cmd(l, c, label, &r, "SCRIPT LOAD %s", l->script))
			return false;
		snprintf(l->sha, sizeof(l->sha), "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
		freeReplyObject(r);
	}
	if (redisSetTimeout(c, tv_of(l->conf.command_timeout_ms + l->conf.extra_read_ms)) !=
	    REDIS_OK) {
		set_err(l, "%s: cannot set timeout", label);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------ Redis Cluster */

static uint16_t crc16_xmodem(const char *buf, size_t len)
{
	uint16_t crc = 0;
	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)buf[i] << 8);
		for (int b = 0; b < 8; b++)
			crc =
			    (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

unsigned rep_key_slot(const char *key, size_t len)
{
	/* Redis hashes only the first {...} when it is not empty (cluster spec). */
	size_t s = 0, e;
	while (s < len && key[s] != '{')
		s++;
	if (s < len) {
		for (e = s + 1; e < len && key[e] != '}'; e++)
			;
		if (e < len && e > s + 1) {
			key += s + 1;
			len = e - s - 1;
		}
	}
	return crc16_xmodem(key, len) & (LINK_SLOTS - 1);
}

static int node_find(const rep_link_t *l, const char *addr)
{
	for (size_t i = 0; i < l->n_nodes; i++)
		if (strcasecmp(l->nodes[i].addr, addr) == 0)
			return (int)i;
	return -1;
}

/* The node's index, added to the table if new; -1 when the table is full. */
static int node_get(rep_link_t *l, const char *addr)
{
	int i = node_find(l, addr);
	if (i >= 0)
		return i;
	if (l->n_nodes >= LINK_MAX_NODES) {
		set_err(l, "more than %d cluster primaries", LINK_MAX_NODES);
		return -1;
	}
	snprintf(l->nodes[l->n_nodes].addr, sizeof(l->nodes[0].addr), "%s", addr);
	l->nodes[l->n_nodes].ctx = NULL;
	return (int)l->n_nodes++;
}

/* The node's connection, made (and set up) on first use; NULL with err set. */
static redisContext *node_ctx(rep_link_t *l, size_t i)
{
	struct cnode *n = &l->nodes[i];
	if (n->ctx)
		return n->ctx;
	n->ctx = connect_addr(l, n->addr, l->conf.connect_timeout_ms, l->err, sizeof(l->err));
	if (n->ctx && !conn_setup(l, n->ctx, n->addr, false)) {
		ctx_free(l, n->ctx);
		n->ctx = NULL;
	}
	l->setup_until_ms = 0;
	return n->ctx;
}

/* "host:port" from a host (v6 in brackets) and a port. */
static void join_addr(char *buf, size_t size, const char *host, long long port)
{
	int k = strchr(host, ':') ? snprintf(buf, size, "[%s]:%lld", host, port)
	                          : snprintf(buf, size, "%s:%lld", host, port);
	if (k < 0 || (size_t)k >= size)
		buf[0] = '\0'; /* no such address: the connection fails cleanly */
}

/*
 * Replaces the slot map by CLUSTER SLOTS as one node (asked at addr) sees
 * it. Each range goes to its primary, the first of its nodes; an empty
 * host means the node asked.
 */
static bool load_slots(rep_link_t *l, redisContext *c, const char *asked)
{
	redisReply *r;
	char host[LINK_ADDR_MAX_BYTES], addr[LINK_ADDR_MAX_BYTES];
	size_t covered = 0;

	if (!setup_cmd(l, c, asked, &r, "CLUSTER SLOTS"))
		return false;
	snprintf(host, sizeof(host), "%s", asked);
	char *colon = host[0] == '[' ? strchr(host, ']') : strrchr(host, ':');
	if (colon)
		*colon = '\0';
	for (size_t i = 0; i < LINK_SLOTS; i++)
		l->slot_node[i] = LINK_NO_NODE;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		const redisReply *e = r->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER ||
		    e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
		    e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
			continue;
		const char *h = e->element[2]->element[0]->str;
		if (h[0] == '\0' || strcmp(h, "?") == 0)
			h = host[0] == '[' ? host + 1 : host;
		join_addr(addr, sizeof(addr), h, e->element[2]->element[1]->integer);
		int idx = node_get(l, addr);
		if (idx < 0) {
			freeReplyObject(r);
			return false;
		}
		long long from = e->element[0]->integer, to = e->element[1]->integer;
		for (long long s = from < 0 ? 0 : from; s <= to && s < LINK_SLOTS; s++) {
			l->slot_node[s] = (uint16_t)idx;
			covered++;
		}
	}
	freeReplyObject(r);
	if (covered == 0) {
		set_err(l,
		        "%s: CLUSTER SLOTS names no slot (cluster-enabled, every slot assigned?)",
		        asked);
		return false;
	}
	l->map_stale = false;
	return true;
}

/* Asks the seeds in turn for the slot map; keeps the first connection that answers. */
static bool cluster_connect(rep_link_t *l)
{
	char last[sizeof(l->err)] = "";

	for (size_t i = 0; i < l->conf.n_cluster; i++) {
		redisContext *c = connect_addr(l, l->cluster[i], l->conf.connect_timeout_ms, l->err,
		                               sizeof(l->err));
		if (c == NULL || !conn_setup(l, c, l->cluster[i], false) ||
		    !load_slots(l, c, l->cluster[i])) {
			snprintf(last, sizeof(last), "%s", l->err);
			if (c)
				ctx_free(l, c);
			continue;
		}
		int idx = node_find(l, l->cluster[i]);
		if (idx >= 0 && l->nodes[idx].ctx == NULL) {
			l->nodes[idx].ctx = c;
		} else {
			/* The seed is a replica, or named otherwise than the cluster names it. */
			ctx_free(l, c);
			idx = l->slot_node[0] != LINK_NO_NODE ? l->slot_node[0] : 0;
			if (node_ctx(l, (size_t)idx) == NULL) {
				snprintf(last, sizeof(last), "%s", l->err);
				close_all(l);
				continue;
			}
		}
		l->home = (size_t)idx;
		l->ctx = l->nodes[idx].ctx;
		snprintf(l->addr, sizeof(l->addr), "%s", l->nodes[idx].addr);
		return true;
	}
	set_err(l, "no Redis Cluster seed answered (%s)", last[0] ? last : "none configured");
	return false;
}

long rep_link_rtt_ms(rep_link_t *l)
{
	long us = __atomic_load_n(&l->srtt_us, __ATOMIC_RELAXED);
	return us < 0 ? -1 : (us + 999) / 1000;
}

bool rep_link_is_cluster(rep_link_t *l)
{
	return l->conf.n_cluster > 0;
}

/* ------------------------------------------------------------ connection */

static bool do_connect(rep_link_t *l)
{
	if (l->conf.n_cluster > 0)
		return cluster_connect(l);
	if (l->conf.n_sentinels > 0) {
		if (sentinel_discover(l, l->addr, sizeof(l->addr)) < 0)
			return false;
	} else if (l->server) {
		snprintf(l->addr, sizeof(l->addr), "%s", l->server);
	} else {
		set_err(l, "no Redis server configured");
		return false;
	}
	l->ctx = connect_addr(l, l->addr, l->conf.connect_timeout_ms, l->err, sizeof(l->err));
	if (l->ctx == NULL)
		return false;
	return conn_setup(l, l->ctx, l->addr, true);
}

static redisContext *link_get(rep_link_t *l)
{
	long now;

	if (l->ctx)
		return l->ctx;
	if (__atomic_load_n(&l->interrupted, __ATOMIC_RELAXED)) {
		set_err(l, "stopping");
		return NULL;
	}
	now = now_ms();
	if (now < l->open_until_ms) {
		__atomic_store_n(&l->state, REP_LINK_OPEN, __ATOMIC_RELAXED);
		return NULL;
	}
	if (now < l->next_attempt_ms)
		return NULL;
	__atomic_add_fetch(&l->st.attempts, 1, __ATOMIC_RELAXED);
	bool up = do_connect(l);
	l->setup_until_ms = 0;
	if (!up) {
		char why[sizeof(l->err)];
		memcpy(why, l->err, sizeof(why));
		rep_link_fail(l, why);
		return NULL;
	}
	/*
	 * consecutive_failures is not reset here but by the first exchange that
	 * works: a server (or a tunnel whose far end is down) that completes
	 * the handshake and hangs up on every command would otherwise keep the
	 * backoff at its minimum and the circuit closed for ever, a new
	 * connection every 100 ms.
	 */
	l->err[0] = '\0';
	l->fresh = true;
	__atomic_store_n(&l->state, REP_LINK_UP, __ATOMIC_RELAXED);
	return l->ctx;
}

/*
 * hiredis sends with write(2), so a server that closed or reset the
 * connection (a restart, a protocol error, a killed client) raises SIGPIPE
 * in the writing thread. The daemon ignores it, but the sift tool and any
 * other program linking this module would die of it, silently. So every
 * exchange holds SIGPIPE blocked for its duration and drops one it raised:
 * the write then fails with EPIPE, and the link reconnects as after any
 * other error. One raised before the call (someone else's) is left pending.
 */
struct pipe_guard {
	sigset_t old;
	bool was_pending;
};

static void pipe_hold(struct pipe_guard *g)
{
	sigset_t pipe, pending;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, &g->old);
	sigemptyset(&pending);
	sigpending(&pending);
	g->was_pending = sigismember(&pending, SIGPIPE) == 1;
}

static void pipe_release(struct pipe_guard *g)
{
	sigset_t pipe, pending;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	sigemptyset(&pending);
	sigpending(&pending);
	if (!g->was_pending && sigismember(&pending, SIGPIPE) == 1) {
		const struct timespec now = {0, 0};
		while (sigtimedwait(&pipe, NULL, &now) == -1 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

struct redisContext *rep_link_get(rep_link_t *l)
{
	struct pipe_guard g;
	pipe_hold(&g);
	redisContext *c = link_get(l);
	pipe_release(&g);
	return c;
}

void rep_link_fail(rep_link_t *l, const char *why)
{
	long now = now_ms(), backoff;
	unsigned f;

	if (why != l->err)
		set_err(l, "%s", why);
	close_all(l);
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
	c->key = 0;
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

/* ------------------------------------------------------------ cluster pipeline */

/* The arguments of a command, wherever they are (argv[] or a longer xargv). */
static const char **cmd_av(const rep_cmd_t *c)
{
	return (const char **)(c->xargv ? c->xargv : c->argv);
}

static const size_t *cmd_lv(const rep_cmd_t *c)
{
	return c->xargv ? c->xlen : c->len;
}

static bool arg_is(const rep_cmd_t *c, int i, const char *word)
{
	size_t n = strlen(word);
	return i < c->argc && cmd_lv(c)[i] == n && strncasecmp(cmd_av(c)[i], word, n) == 0;
}

/* The index of the command's key argument, or -1 (see rep_cmd_t.key). */
static int cmd_key(const rep_cmd_t *c)
{
	static const char *const keyless[] = {"MULTI", "EXEC",   "DISCARD", "ASKING",
	                                      "PING",  "SCRIPT", "CLUSTER", "INFO"};
	if (c->key != 0)
		return c->key > 0 && c->key < c->argc ? c->key : -1;
	for (size_t i = 0; i < sizeof(keyless) / sizeof(keyless[0]); i++)
		if (arg_is(c, 0, keyless[i]))
			return -1;
	if (arg_is(c, 0, "EVAL") || arg_is(c, 0, "EVALSHA")) {
		char num[16];
		if (c->argc < 4 || cmd_lv(c)[2] >= sizeof(num))
			return -1;
		memcpy(num, cmd_av(c)[2], cmd_lv(c)[2]);
		num[cmd_lv(c)[2]] = '\0';
		return atoi(num) > 0 ? 3 : -1;
	}
	if (arg_is(c, 0, "XREAD") || arg_is(c, 0, "XREADGROUP")) {
		for (int i = 1; i + 1 < c->argc; i++)
			if (arg_is(c, i, "STREAMS"))
				return i + 1;
		return -1;
	}
	return c->argc > 1 ? 1 : -1;
}

/*
 * What goes to one node as a whole: one command, or a MULTI ... EXEC
 * block (redirected together, since a redirected command inside aborts
 * the EXEC).
 */
struct unit {
	size_t first, n;
	size_t node;
	bool asking; /* send ASKING first: the slot is being imported there */
	bool todo;   /* still to be sent in this round */
};

/* A MOVED or ASK reply: its slot and address. */
static bool redirect_of(const redisReply *r, bool *ask, unsigned *slot, char *addr, size_t size)
{
	char a[LINK_ADDR_MAX_BYTES];
	unsigned s;
	if (r == NULL || r->type != REDIS_REPLY_ERROR || r->str == NULL)
		return false;
	if (strncmp(r->str, "MOVED ", 6) == 0)
		*ask = false;
	else if (strncmp(r->str, "ASK ", 4) == 0)
		*ask = true;
	else
		return false;
	if (sscanf(r->str + (*ask ? 4 : 6), "%u %299s", &s, a) != 2 || s >= LINK_SLOTS)
		return false;
	*slot = s;
	snprintf(addr, size, "%s", a);
	return true;
}

/*
 * Sends each unit to the node serving its key's slot, all nodes at once
 * (one round trip, not one per node), then follows MOVED (the map is
 * updated, and fetched again afterwards) and ASK (ASKING, then the unit,
 * on the node importing the slot) for the units that got one, up to
 * LINK_MAX_REDIRECTS rounds. Same contract as rep_link_pipeline().
 */
static int cluster_pipeline(rep_link_t *l, size_t n, const rep_cmd_t *cmds,
                            struct redisReply **replies)
{
	struct unit *u = malloc((n ? n : 1) * sizeof(*u));
	size_t nu = 0, i;
	bool failed = false;
	char why[sizeof(l->err)] = "";

	if (u == NULL) {
		rep_link_fail(l, "out of memory");
		return -1;
	}
	for (i = 0; i < n;) {
		size_t end = i + 1;
		if (arg_is(&cmds[i], 0, "MULTI")) {
			while (end < n && !arg_is(&cmds[end], 0, "EXEC") &&
			       !arg_is(&cmds[end], 0, "DISCARD"))
				end++;
			if (end < n)
				end++;
		}
		u[nu].first = i;
		u[nu].n = end - i;
		u[nu].node = l->home;
		u[nu].asking = false;
		u[nu].todo = true;
		for (size_t k = i; k < end; k++) {
			int ki = cmd_key(&cmds[k]);
			if (ki < 0)
				continue;
			unsigned slot = rep_key_slot(cmd_av(&cmds[k])[ki], cmd_lv(&cmds[k])[ki]);
			if (l->slot_node[slot] != LINK_NO_NODE)
				u[nu].node = l->slot_node[slot];
			break;
		}
		nu++;
		i = end;
	}
	/* Every connection first: when one is missing nothing has been sent yet. */
	for (i = 0; i < nu; i++)
		if (node_ctx(l, u[i].node) == NULL) {
			char e[sizeof(l->err)];
			snprintf(e, sizeof(e), "%s", l->err);
			free(u);
			rep_link_fail(l, e);
			return -1;
		}

	for (int round = 0; !failed; round++) {
		bool used[LINK_MAX_NODES] = {false}, any = false;
		for (i = 0; i < nu && !failed; i++) {
			if (!u[i].todo)
				continue;
			redisContext *c = node_ctx(l, u[i].node);
			if (c == NULL) {
				snprintf(why, sizeof(why), "%s", l->err);
				failed = true;
				break;
			}
			used[u[i].node] = any = true;
			if (u[i].asking && redisAppendCommand(c, "ASKING") != REDIS_OK)
				failed = true;
			for (size_t k = u[i].first; k < u[i].first + u[i].n && !failed; k++)
				if (redisAppendCommandArgv(c, cmds[k].argc, cmd_av(&cmds[k]),
				                           cmd_lv(&cmds[k])) != REDIS_OK)
					failed = true;
			if (failed)
				snprintf(why, sizeof(why), "out of memory");
		}
		if (!any)
			break;
		long t0 = mono_us(), until = reply_deadline(l);
		bool sampled = false;
		for (size_t k = 0; k < l->n_nodes && !failed; k++)
			if (used[k] && !flush_ctx(l->nodes[k].ctx)) {
				snprintf(why, sizeof(why), "%s: %s", l->nodes[k].addr,
				         l->nodes[k].ctx->errstr);
				failed = true;
			}
		for (i = 0; i < nu && !failed; i++) {
			if (!u[i].todo)
				continue;
			redisContext *c = l->nodes[u[i].node].ctx;
			void *r = NULL;
			if (u[i].asking) {
				if (get_reply(l, c, until, &r) != REDIS_OK || r == NULL) {
					failed = true;
				} else {
					freeReplyObject(r);
					r = NULL;
				}
			}
			for (size_t k = u[i].first; k < u[i].first + u[i].n && !failed; k++) {
				if (get_reply(l, c, until, &r) != REDIS_OK || r == NULL) {
					failed = true;
					break;
				}
				replies[k] = r;
				if (!sampled) {
					rtt_sample(l, mono_us() - t0);
					sampled = true;
				}
				if (is_unavailable(replies[k])) {
					snprintf(why, sizeof(why), "%s: %.200s",
					         l->nodes[u[i].node].addr, replies[k]->str);
					freeReplyObject(replies[k]);
					replies[k] = NULL;
					failed = true;
				}
			}
			if (failed && why[0] == '\0')
				snprintf(why, sizeof(why), "%s: %s", l->nodes[u[i].node].addr,
				         c->errstr[0] ? c->errstr : "no reply");
		}
		if (failed)
			break;
		/* Redirections: the unit goes again, to the node named. */
		for (i = 0; i < nu; i++) {
			if (!u[i].todo)
				continue;
			u[i].todo = false;
			for (size_t k = u[i].first; k < u[i].first + u[i].n; k++) {
				char addr[LINK_ADDR_MAX_BYTES];
				unsigned slot;
				bool ask;
				if (!redirect_of(replies[k], &ask, &slot, addr, sizeof(addr)))
					continue;
				int idx = node_get(l, addr);
				if (idx < 0 || round + 1 >= LINK_MAX_REDIRECTS)
					break; /* the error reply goes to the caller */
				if (!ask) {
					l->slot_node[slot] = (uint16_t)idx;
					l->map_stale = true;
				}
				rep_link_free_replies(u[i].n, replies + u[i].first);
				u[i].node = (size_t)idx;
				u[i].asking = ask;
				u[i].todo = true;
				break;
			}
		}
	}
	free(u);
	if (failed) {
		/* The caller learns how many leading commands ran; the rest are dropped. */
		size_t ran = 0;
		while (ran < n && replies[ran] != NULL)
			ran++;
		rep_link_free_replies(n - ran, replies + ran);
		rep_link_fail(l, why[0] ? why : "no reply");
		return (int)ran;
	}
	/* After a MOVED the whole map is fetched again: a resharding moves many slots. */
	if (l->map_stale && !load_slots(l, l->ctx, l->addr)) {
		char e[sizeof(l->err)];
		snprintf(e, sizeof(e), "%s", l->err);
		rep_link_fail(l, e);
		return (int)n;
	}
	l->consecutive_failures = 0;
	return (int)n;
}

static int link_pipeline(rep_link_t *l, size_t n, const rep_cmd_t *cmds,
                         struct redisReply **replies)
{
	redisContext *c = link_get(l);
	size_t i;

	for (i = 0; i < n; i++)
		replies[i] = NULL;
	if (c == NULL)
		return -1;
	if (l->conf.n_cluster > 0)
		return cluster_pipeline(l, n, cmds, replies);
	for (i = 0; i < n; i++)
		if (redisAppendCommandArgv(c, cmds[i].argc, cmd_av(&cmds[i]), cmd_lv(&cmds[i])) !=
		    REDIS_OK) {
			rep_link_fail(l, "out of memory");
			return 0;
		}
	long t0 = mono_us(), until = reply_deadline(l);
	for (i = 0; i < n; i++) {
		void *r = NULL;
		if (get_reply(l, c, until, &r) != REDIS_OK || r == NULL) {
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

int rep_link_pipeline(rep_link_t *l, size_t n, const rep_cmd_t *cmds, struct redisReply **replies)
{
	struct pipe_guard g;
	pipe_hold(&g);
	int got = link_pipeline(l, n, cmds, replies);
	pipe_release(&g);
	return got;
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

rep_link_stats_t rep_link_stats(rep_link_t *l)
{
	rep_link_stats_t s;
	s.attempts = __atomic_load_n(&l->st.attempts, __ATOMIC_RELAXED);
	s.failures = __atomic_load_n(&l->st.failures, __ATOMIC_RELAXED);
	s.opened = __atomic_load_n(&l->st.opened, __ATOMIC_RELAXED);
	return s;
}
