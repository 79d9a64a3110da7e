/*
 * rep.c - the reputation evidence source: configuration, the long-lived
 * runtime (Redis links, reader / writer / mirror-sync threads) carried over
 * reloads, and the per-connection and per-message hooks (see rep.h).
 */
#include "config.h"

#include "rep.h"

#include <errno.h>
#include <fcntl.h>
#include <libpsl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hits.h"
#include "log.h"
#include "xalloc.h"

enum {
	READQ_MAX = 4096,           /* pending read requests; beyond, reads fail fast */
	READ_BATCH = 64,            /* requests merged into one pipeline by the reader */
	READ_MAX_KEYS = 16,         /* entities read for one connection or message */
	BG_READ_MAX_AGE_MS = 60000, /* a queued read not served by then is dropped */
	PURGE_EVERY_S = 60,         /* expired mirror entries are dropped this often */
	STATS_LOG_EVERY_S = 300,    /* queue statistics in the log */
	REP_STOP_FLUSH_S = 2,       /* the writer's last flush at stop, before its link is cut */
};

/* ------------------------------------------------------------ configuration */

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ the link's keys */

/* "host:port" or "[v6]:port" with a port in 1..65535. */
static bool addr_ok(const char *s)
{
	const char *colon;
	char *end;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb == s + 1 || rb[1] != ':')
			return false;
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || colon == s)
			return false;
	}
	long port = strtol(colon + 1, &end, 10);
	return *end == '\0' && port > 0 && port <= 65535 && strlen(s) < REP_ADDR_MAX_BYTES;
}

/*
 * Reads the secret on the first line of the file a key names into buf.
 * Refused when the file is missing, empty, or readable or writable by
 * others: a secret anyone on the host can read is no secret. The
 * diagnostics name the file, never its contents. Returns 1 when read, 0
 * when the key is absent, -1 on error.
 */
static int read_secret_file(conf_t *c, const char *key, char *buf, size_t size, diag_t *d)
{
	const char *path, *file = NULL;
	unsigned line = 0;
	struct stat st;
	int fd;

	buf[0] = '\0';
	if (conf_filename(c, key, NULL, &path, d) < 0)
		return -1;
	if (path == NULL)
		return 0;
	conf_value_at(c, key, 0, &file, &line);
	fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		diag_error(d, file, line, "%s: cannot open %s: %s", key, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		diag_error(d, file, line, "%s: %s is not a regular file", key, path);
		close(fd);
		return -1;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		diag_error(d, file, line,
		           "%s: %s is readable or writable by others (mode %04o); "
		           "chmod o-rw it",
		           key, path, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -1;
	}
	/* read(), not stdio: no copy of the secret is left in a stdio buffer. */
	size_t n = 0;
	ssize_t got;
	while (n < size - 1 && (got = read(fd, buf + n, size - 1 - n)) > 0)
		n += (size_t)got;
	close(fd);
	buf[n] = '\0';
	char *nl = memchr(buf, '\n', n);
	if (nl == NULL && n == size - 1) {
		explicit_bzero(buf, size);
		diag_error(d, file, line, "%s: the first line of %s is longer than %zu bytes", key,
		           path, size - 2);
		return -1;
	}
	if (nl) {
		explicit_bzero(nl, n - (size_t)(nl - buf));
		n = (size_t)(nl - buf);
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	if (n == 0) {
		diag_error(d, file, line, "%s: %s has an empty first line (the secret goes there)",
		           key, path);
		return -1;
	}
	return 1;
}

static int copy_key(conf_t *c, const char *key, char *buf, size_t size, diag_t *d)
{
	const char *v;
	if (conf_str(c, key, NULL, &v, d) < 0)
		return -1;
	if (v == NULL)
		return 0;
	if (strlen(v) >= size) {
		conf_key_error(c, key, d, "%s: longer than %zu bytes", key, size - 1);
		return -1;
	}
	snprintf(buf, size, "%s", v);
	return 0;
}

/*
 * The keys of the link's security and topology: redis_username,
 * redis_password (inline, only in a file others cannot read) or
 * redis_password_file, the Sentinels' credentials, redis_route and
 * redis_cluster. Returns 0 or -1.
 */
static int link_config_read(conf_t *c, rep_config_t *rc, diag_t *d)
{
	int bad = 0, r;
	const char *file = NULL;
	unsigned line = 0;
	struct stat st;

	if (rc->password && rc->password[0] == '\0')
		rc->password = NULL; /* "redis_password =": none, as the shipped file has it */
	bad |= copy_key(c, "redis_username", rc->username, sizeof(rc->username), d);
	bad |= copy_key(c, "redis_sentinel_username", rc->sentinel_username,
	                sizeof(rc->sentinel_username), d);
	r = read_secret_file(c, "redis_password_file", rc->password_buf, sizeof(rc->password_buf),
	                     d);
	bad |= r < 0 ? -1 : 0;
	if (rc->password != NULL) {
		conf_value_at(c, "redis_password", 0, &file, &line);
		if (r != 0) {
			diag_error(d, file, line,
			           "redis_password and redis_password_file exclude each other");
			bad = -1;
		} else if (file && stat(file, &st) == 0 && (st.st_mode & S_IROTH)) {
			diag_error(
			    d, file, line,
			    "redis_password in a file readable by others (mode %04o): put the "
			    "password in redis_password_file (mode 0600 or 0640) instead",
			    (unsigned)(st.st_mode & 07777));
			bad = -1;
		}
	} else if (r > 0) {
		rc->password = rc->password_buf;
	}
	r = read_secret_file(c, "redis_sentinel_password_file", rc->sentinel_password,
	                     sizeof(rc->sentinel_password), d);
	bad |= r < 0 ? -1 : 0;
	if (rc->username[0] && rc->password == NULL) {
		conf_value_at(c, "redis_username", 0, &file, &line);
		diag_error(d, file, line, "redis_username needs redis_password_file");
		bad = -1;
	}
	if (rc->sentinel_username[0] && r == 0) {
		conf_value_at(c, "redis_sentinel_username", 0, &file, &line);
		diag_error(d, file, line,
		           "redis_sentinel_username needs redis_sentinel_password_file");
		bad = -1;
	}

	rc->n_routes = conf_count(c, "redis_route");
	if (rc->n_routes > REP_MAX_ROUTES) {
		conf_value_at(c, "redis_route", REP_MAX_ROUTES, &file, &line);
		diag_error(d, file, line, "redis_route: at most %d", REP_MAX_ROUTES);
		rc->n_routes = REP_MAX_ROUTES;
		bad = -1;
	}
	for (size_t i = 0; i < rc->n_routes; i++) {
		const char *v = conf_value_at(c, "redis_route", i, &file, &line);
		char from[REP_ADDR_MAX_BYTES], to[REP_ADDR_MAX_BYTES], extra[2];
		if (strlen(v) >= REP_ADDR_MAX_BYTES ||
		    sscanf(v, "%299s %299s %1s", from, to, extra) != 2 || !addr_ok(from) ||
		    !addr_ok(to)) {
			diag_error(
			    d, file, line,
			    "redis_route: expected 'REMOTE_HOST:PORT LOCAL_HOST:PORT', got '%s'",
			    v);
			bad = -1;
			continue;
		}
		snprintf(rc->route_from[i], sizeof(rc->route_from[i]), "%s", from);
		snprintf(rc->route_to[i], sizeof(rc->route_to[i]), "%s", to);
	}

	rc->n_cluster = conf_count(c, "redis_cluster");
	if (rc->n_cluster > REP_MAX_CLUSTER_SEEDS) {
		conf_value_at(c, "redis_cluster", REP_MAX_CLUSTER_SEEDS, &file, &line);
		diag_error(d, file, line, "redis_cluster: at most %d", REP_MAX_CLUSTER_SEEDS);
		rc->n_cluster = REP_MAX_CLUSTER_SEEDS;
		bad = -1;
	}
	for (size_t i = 0; i < rc->n_cluster; i++) {
		const char *v = conf_value_at(c, "redis_cluster", i, &file, &line);
		if (!addr_ok(v)) {
			diag_error(d, file, line, "redis_cluster: expected HOST:PORT, got '%s'", v);
			bad = -1;
			continue;
		}
		snprintf(rc->cluster[i], sizeof(rc->cluster[i]), "%s", v);
	}
	if (rc->n_cluster > 0 && (rc->server || rc->n_sentinels > 0 || rc->replica)) {
		conf_value_at(c, "redis_cluster", 0, &file, &line);
		diag_error(d, file, line,
		           "redis_cluster excludes redis_server, redis_sentinel and redis_replica");
		bad = -1;
	}
	if (rc->n_cluster > 0 && rc->db != 0) {
		conf_value_at(c, "redis_cluster", 0, &file, &line);
		diag_error(d, file, line,
		           "redis_cluster: a Redis Cluster has only database 0 "
		           "(redis_db)");
		bad = -1;
	}
	return bad ? -1 : 0;
}

/*
 * Connect, background command and per-message wait are separate settings:
 * one value cannot fit all three (a handshake needs several round trips
 * of a slow link, a message must not wait on it at all). The defaults work
 * at a 600 ms round trip with 5% loss. The old single redis_timeout still
 * sets the first two when they are not given.
 */
static int read_timeouts(conf_t *c, rep_config_t *rc, diag_t *d)
{
	int bad = 0;
	long old = 0;
	bool has_old = conf_count(c, "redis_timeout") > 0;

	if (has_old) {
		const char *f;
		unsigned line;
		conf_value_at(c, "redis_timeout", 0, &f, &line);
		bad |= conf_ms(c, "redis_timeout", 250, 10, 600000, &old, d);
		diag_warn(d, f, line,
		          "redis_timeout is deprecated: use redis_connect_timeout and "
		          "redis_command_timeout (and rep_read_wait for what a message waits)");
	}
	bool has_conn = conf_count(c, "redis_connect_timeout") > 0;
	bool has_cmd = conf_count(c, "redis_command_timeout") > 0;
	bad |= conf_ms(c, "redis_connect_timeout", 10000, 10, 600000, &rc->connect_timeout_ms, d);
	bad |= conf_ms(c, "redis_command_timeout", 30000, 10, 600000, &rc->command_timeout_ms, d);
	if (has_old && !bad) {
		if (!has_conn)
			rc->connect_timeout_ms = old;
		if (!has_cmd)
			rc->command_timeout_ms = old;
	}
	bad |= conf_ms(c, "rep_read_wait", 20, 0, 60000, &rc->read_wait_ms, d);
	bad |= conf_ms(c, "rep_write_window", 5000, 0, 3600000, &rc->write_window_ms, d);
	return bad;
}

int rep_config_read(conf_t *c, const char *state_dir, rep_config_t *rc, diag_t *d)
{
	int bad = 0;
	const char *mirror;
	long v;

	memset(rc, 0, sizeof(*rc));
	bad |= conf_str(c, "redis_server", NULL, &rc->server, d);
	bad |= conf_str(c, "redis_replica", NULL, &rc->replica, d);
	rc->n_sentinels = conf_count(c, "redis_sentinel");
	if (rc->n_sentinels > REP_MAX_SENTINELS) {
		const char *f;
		unsigned line;
		conf_value_at(c, "redis_sentinel", REP_MAX_SENTINELS, &f, &line);
		diag_error(d, f, line, "redis_sentinel: at most %d", REP_MAX_SENTINELS);
		rc->n_sentinels = REP_MAX_SENTINELS;
		bad = -1;
	}
	for (size_t i = 0; i < rc->n_sentinels; i++)
		rc->sentinels[i] = conf_value_at(c, "redis_sentinel", i, NULL, NULL);
	bad |= conf_str(c, "redis_sentinel_master", "mymaster", &rc->master_name, d);
	bad |= conf_str(c, "redis_password", NULL, &rc->password, d);
	bad |= conf_str(c, "redis_prefix", "sift:", &rc->prefix, d);
	bad |= conf_long(c, "redis_db", 0, 0, 1000000, &rc->db, d);
	bad |= read_timeouts(c, rc, d);
	bad |= conf_long(c, "redis_breaker_failures", 5, 1, 1000, &rc->breaker_failures, d);
	bad |= conf_ms(c, "redis_breaker_time", 30000, 0, 3600000, &rc->breaker_open_ms, d);
	bad |= conf_ms(c, "redis_backoff_max", 10000, 10, 3600000, &rc->backoff_max_ms, d);
	bad |= conf_double(c, "rep_min_observations", 10, 1, 1e9, &rc->min_obs, d);
	bad |= conf_double(c, "rep_max_score", 3, 0, HITS_MAX_SCORE, &rc->max_score, d);
	bad |= conf_double(c, "rep_learn_spam_score", 5, -1000, 1000, &rc->learn_spam, d);
	bad |= conf_double(c, "rep_learn_ham_score", 1, -1000, 1000, &rc->learn_ham, d);
	bad |= conf_double(c, "rep_block_score", 100, -HITS_MAX_SCORE, HITS_MAX_SCORE,
	                   &rc->block_score, d);
	bad |= conf_double(c, "rep_allow_score", -100, -HITS_MAX_SCORE, HITS_MAX_SCORE,
	                   &rc->allow_score, d);
	bad |= conf_ms(c, "rep_half_life", 86400000L, 1000, 365L * 86400000L, &v, d);
	rc->half_life_s = v / 1000;
	bad |= conf_ms(c, "rep_ttl", 30L * 86400000L, 1000, 3650L * 86400000L, &v, d);
	rc->ttl_s = v / 1000;
	bad |= conf_long(c, "rep_queue_max", 10000, 1, 10000000, &rc->queue_max, d);
	bad |= conf_long(c, "rep_url_domains_max", 8, 0, READ_MAX_KEYS - 4, &rc->url_max, d);
	bad |= conf_ms(c, "rep_cache_time", 10000, 0, 3600000, &rc->cache_ms, d);
	bad |= conf_long(c, "rep_reader_threads", 2, 1, REP_MAX_READERS, &rc->reader_threads, d);
	bad |= conf_long(c, "rep_cache_entries", 4096, 1, 1 << 24, &rc->cache_entries, d);
	bad |= conf_str(c, "block_mirror", NULL, &mirror, d);
	bad |= conf_long(c, "block_stream_max", 100000, 100, 100000000, &rc->stream_max, d);
	bad |= conf_ms(c, "block_sync_wait", 500, 10, 60000, &rc->sync_wait_ms, d);
	bad |= rep_bl_config_read(c, &rc->bl, d);
	bad |= link_config_read(c, rc, d);
	rc->mirror_explicit = mirror != NULL;
	if (mirror == NULL)
		snprintf(rc->mirror_dir, sizeof(rc->mirror_dir), "%s/blockmirror",
		         state_dir ? state_dir : ".");
	else if (mirror[0] == '/' || state_dir == NULL)
		snprintf(rc->mirror_dir, sizeof(rc->mirror_dir), "%s", mirror);
	else
		snprintf(rc->mirror_dir, sizeof(rc->mirror_dir), "%s/%s", state_dir, mirror);
	if (rc->server && rc->n_sentinels > 0) {
		diag_error(d, conf_path(c), 0,
		           "redis_server and redis_sentinel exclude each other (Sentinel finds "
		           "the primary)");
		bad = -1;
	}
	if (rc->replica && !rc->server && rc->n_sentinels == 0) {
		diag_error(d, conf_path(c), 0,
		           "redis_replica needs redis_server or redis_sentinel "
		           "(writes go to the primary)");
		bad = -1;
	}
	return bad ? -1 : 0;
}

bool rep_config_has_redis(const rep_config_t *rc)
{
	return rc->server != NULL || rc->n_sentinels > 0 || rc->n_cluster > 0;
}

void rep_config_link(const rep_config_t *rc, bool replica, rep_link_conf_t *out)
{
	memset(out, 0, sizeof(*out));
	if (replica) {
		out->server = rc->replica;
	} else {
		out->server = rc->server;
		out->sentinels = rc->sentinels;
		out->n_sentinels = rc->n_sentinels;
		out->master_name = rc->master_name;
	}
	out->password = rc->password;
	out->username = rc->username[0] ? rc->username : NULL;
	out->sentinel_username = rc->sentinel_username[0] ? rc->sentinel_username : NULL;
	out->sentinel_password = rc->sentinel_password[0] ? rc->sentinel_password : NULL;
	for (size_t i = 0; i < rc->n_routes; i++) {
		out->route_from[i] = rc->route_from[i];
		out->route_to[i] = rc->route_to[i];
	}
	out->n_routes = rc->n_routes;
	if (!replica) {
		for (size_t i = 0; i < rc->n_cluster; i++)
			out->cluster[i] = rc->cluster[i];
		out->n_cluster = rc->n_cluster;
	}
	out->db = rc->db;
	/*
	 * The largest reply any link takes: the block list sync's, an HSCAN
	 * chunk of the first load (COUNT is a hint; Redis returns a small hash
	 * whole, up to its listpack bound, 128 by default) or a stream read of
	 * block_sync_batch signed entries, each at most REP_SOP_MAX_BYTES and
	 * its framing (1.2 MB at the default 200). More is a broken or hostile
	 * server, and parsing it would cost about 30 times its size.
	 */
	out->reply_max_bytes = ((size_t)rc->bl.batch * 4 + 1024) * (REP_SOP_MAX_BYTES + 128);
	out->connect_timeout_ms = rc->connect_timeout_ms;
	out->command_timeout_ms = rc->command_timeout_ms;
	out->backoff_min_ms = 100;
	out->backoff_max_ms = rc->backoff_max_ms;
	out->breaker_failures = (unsigned)rc->breaker_failures;
	out->breaker_open_ms = rc->breaker_open_ms;
}

/* ------------------------------------------------------------ shared pieces */

/* The mirror, shared by generations with the same path (an LMDB env once per process). */
struct mirror_ref {
	int refs;
	char *path;
	rep_mirror_t *m;
	/*
	 * Set when a runtime that stopped saved its unwritten updates here: on
	 * a reload that replaced it, the live runtime's writer takes them
	 * (rt_take_pending) rather than leave them for the next start.
	 */
	int pending_saved;
};

static void mirror_unref(struct mirror_ref *mr)
{
	if (mr && __atomic_sub_fetch(&mr->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		rep_mirror_close(mr->m);
		free(mr->path);
		free(mr);
	}
}

/*
 * A read handed to the reader thread. Not in the message arena: the reader
 * may still be filling it after the message gave up waiting, so it is
 * reference-counted (requester + reader) and freed by the last one.
 */
struct rep_read {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;
	int state; /* 0 pending, 1 done, 2 failed */
	long not_after_ms;
	size_t n;
	char keys[READ_MAX_KEYS][REP_KEY_MAX_BYTES];
	rep_counts_t c[READ_MAX_KEYS];
	bool found[READ_MAX_KEYS];
	long age_ms[READ_MAX_KEYS]; /* served from the cache, this old; -1 from Redis */
};

static struct rep_read *read_new(long not_after_ms)
{
	struct rep_read *r = calloc(1, sizeof(*r));
	pthread_condattr_t ca;
	if (r == NULL)
		return NULL;
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	r->refs = 1;
	r->not_after_ms = not_after_ms;
	return r;
}

static void read_unref(struct rep_read *r)
{
	if (r && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		pthread_mutex_destroy(&r->mu);
		pthread_cond_destroy(&r->cv);
		free(r);
	}
}

static void read_finish(struct rep_read *r, int state)
{
	pthread_mutex_lock(&r->mu);
	r->state = state;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* Waits until the read is done or until_ms; returns its state (0 = timed out). */
static int read_wait(struct rep_read *r, long until_ms)
{
	struct timespec ts = {.tv_sec = until_ms / 1000, .tv_nsec = (until_ms % 1000) * 1000000L};
	int st;
	pthread_mutex_lock(&r->mu);
	while (r->state == 0)
		if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT)
			break;
	st = r->state;
	pthread_mutex_unlock(&r->mu);
	return st;
}

/*
 * The runtime: everything that talks to Redis and lives across reloads
 * while its settings (the signature) stay the same.
 */
struct rep_rt {
	int refs;
	char *sig;
	char *prefix;
	rep_config_t cfg; /* strings below are private copies */
	char *server, *replica, *password, *master, *sentinels[REP_MAX_SENTINELS];
	struct mirror_ref *mir;
	rep_wqueue_t *wq;
	bool offline;

	pthread_mutex_t mu; /* the read queue and the stop flag */
	pthread_cond_t cv;  /* stop: wakes the threads' pauses */
	pthread_cond_t rcv; /* a read was queued: wakes the reader only */
	struct rep_read *rq[READQ_MAX];
	size_t rq_head, rq_len;
	bool stop;
	bool threads;
	pthread_t readers[REP_MAX_READERS], writer, syncer;
	/*
	 * The threads' links, so that stopping can cut a wait on a stalled
	 * link short (rep_link_interrupt) instead of sitting out
	 * redis_command_timeout. A thread adds its links when it makes them
	 * and removes them before freeing them, both under mu.
	 */
	rep_link_t *links[2 * REP_MAX_READERS + 4];
	bool link_is_writer[2 * REP_MAX_READERS + 4];
	size_t nlinks;
	size_t nreaders;
	bool writer_started, syncer_started;

	pthread_mutex_t cmu; /* the readers' cache */
	struct cache_slot *cache;
	size_t ncache;

	/* `sift check`: one link used synchronously under olock. */
	pthread_mutex_t olock;
	rep_link_t *olink;

	/* Statistics, atomics. */
	uint64_t reads_ok, reads_failed, written, applied, write_bytes, write_calls;
	int redis_up;     /* the writer's view, for explanations */
	int writer_link;  /* rep_link_state_t of the writer's link, for the metrics */
	long synced_at_s; /* unix time of the last block-list sync that worked; 0 never */
	long read_rtt_ms; /* round trip of the link the readers use now; -1 unknown or down */
	char node_id[17]; /* random per run: the writer's batch ids */
};

static void rt_link_conf(struct rep_rt *rt, bool replica, rep_link_conf_t *lc)
{
	rep_config_link(&rt->cfg, replica, lc);
}

static void sleep_or_stop(struct rep_rt *rt, long ms)
{
	struct timespec ts;
	long until = now_ms() + ms;
	ts.tv_sec = until / 1000;
	ts.tv_nsec = (until % 1000) * 1000000L;
	pthread_mutex_lock(&rt->mu);
	while (!rt->stop)
		if (pthread_cond_timedwait(&rt->cv, &rt->mu, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&rt->mu);
}

static bool stopping(struct rep_rt *rt)
{
	pthread_mutex_lock(&rt->mu);
	bool s = rt->stop;
	pthread_mutex_unlock(&rt->mu);
	return s;
}

/* A thread's new link, known to rt_stop_threads(); NULL stays NULL. */
static rep_link_t *rt_link(struct rep_rt *rt, rep_link_t *l, bool writer)
{
	if (l == NULL)
		return NULL;
	pthread_mutex_lock(&rt->mu);
	if (rt->nlinks < sizeof(rt->links) / sizeof(rt->links[0])) {
		rt->link_is_writer[rt->nlinks] = writer;
		rt->links[rt->nlinks++] = l;
	}
	if (rt->stop && !writer)
		rep_link_interrupt(l);
	pthread_mutex_unlock(&rt->mu);
	return l;
}

static void rt_link_free(struct rep_rt *rt, rep_link_t *l)
{
	if (l == NULL)
		return;
	pthread_mutex_lock(&rt->mu);
	for (size_t i = 0; i < rt->nlinks; i++)
		if (rt->links[i] == l) {
			rt->nlinks--;
			rt->links[i] = rt->links[rt->nlinks];
			rt->link_is_writer[i] = rt->link_is_writer[rt->nlinks];
			break;
		}
	pthread_mutex_unlock(&rt->mu);
	rep_link_free(l);
}

/* Logs a link's transitions once each, not every failed attempt. */
static void note_link(rep_link_t *l, const char *who, bool *was_up, bool ok)
{
	if (rep_link_interrupted(l))
		return; /* cut by a stop: not news */
	if (ok && !*was_up)
		log_msg(LOG_L_NOTICE, "rep: %s: Redis %s available", who, rep_link_addr(l));
	else if (!ok && *was_up)
		log_msg(LOG_L_WARNING, "rep: %s: Redis unavailable: %s", who, rep_link_error(l));
	*was_up = ok;
}

static rep_link_t *pick_read_link(rep_link_t *replica, rep_link_t *primary)
{
	/* The local replica when it answers; the primary (maybe far away) otherwise. */
	if (replica && rep_link_get(replica))
		return replica;
	return primary;
}

/*
 * The local cache of counts every message is scored from, shared by the
 * reader threads and the milter threads under its own lock (never held
 * across I/O): direct-mapped by key hash, so bounded by rep_cache_entries,
 * a collision simply replaces. On a thin link most messages repeat a few
 * domains (the big mailbox providers, a spam run's URL) and networks.
 * base is what Redis said at fetched_ms; local is this node's own
 * verdicts since (the ones still queued at the fetch included), so a
 * spam run is seen by the next message, not a round trip later. An entry
 * older than rep_cache_time is served stale, for up to REP_STALE_MAX_MS
 * more, while a refresh is queued (queued_ms: one refresh per key at a
 * time).
 */
struct cache_slot {
	long fetched_ms; /* 0: never fetched (a placeholder for a queued read) */
	long queued_ms;  /* a refresh is queued since (0: none) */
	bool found;
	rep_counts_t base, local;
	char key[REP_KEY_MAX_BYTES];
};

static size_t key_hash(const char *k)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *k; k++)
		h = (h ^ (unsigned char)*k) * 1099511628211ull;
	return (size_t)h;
}

static struct cache_slot *cache_slot_of(struct rep_rt *rt, const char *key)
{
	return rt->ncache ? &rt->cache[key_hash(key) % rt->ncache] : NULL;
}

/* base + local of a slot, as one count. */
static rep_counts_t slot_counts(const struct cache_slot *cs, double hl)
{
	rep_counts_t c = cs->found ? cs->base : (rep_counts_t){0, 0, cs->local.t};
	if (cs->local.spam > 0 || cs->local.ham > 0)
		rep_counts_add(&c, cs->local.t, cs->local.spam, cs->local.ham, hl);
	return c;
}

/* Stores what Redis said about key; the caller holds cmu. */
static void cache_store(struct rep_rt *rt, const char *key, const rep_counts_t *c, bool found,
                        long now)
{
	struct cache_slot *cs = cache_slot_of(rt, key);
	if (cs == NULL)
		return;
	if (strcmp(cs->key, key) != 0)
		snprintf(cs->key, sizeof(cs->key), "%s", key);
	cs->fetched_ms = now;
	cs->queued_ms = 0;
	cs->found = found;
	cs->base = *c;
	/* What this node has not written yet is not in Redis's answer: keep it on top. */
	rep_wqueue_pending(rt->wq, key, &cs->local);
}

static void *reader_main(void *arg)
{
	struct rep_rt *rt = arg;
	rep_link_conf_t lc;
	rep_link_t *primary, *replica = NULL;
	bool up = true;
	double hl = (double)rt->cfg.half_life_s;

	rt_link_conf(rt, false, &lc);
	primary = rt_link(rt, rep_link_new(&lc), false);
	if (rt->cfg.replica) {
		rt_link_conf(rt, true, &lc);
		replica = rt_link(rt, rep_link_new(&lc), false);
	}
	/* Connect now: the handshake measures the round trip messages decide by. */
	{
		rep_link_t *l = pick_read_link(replica, primary);
		if (rep_link_get(l))
			__atomic_store_n(&rt->read_rtt_ms, rep_link_rtt_ms(l), __ATOMIC_RELAXED);
	}
	for (;;) {
		struct rep_read *batch[READ_BATCH];
		size_t nb = 0;

		pthread_mutex_lock(&rt->mu);
		while (rt->rq_len == 0 && !rt->stop)
			pthread_cond_wait(&rt->rcv, &rt->mu);
		if (rt->stop) {
			pthread_mutex_unlock(&rt->mu);
			break;
		}
		while (rt->rq_len > 0 && nb < READ_BATCH) {
			batch[nb++] = rt->rq[rt->rq_head];
			rt->rq_head = (rt->rq_head + 1) % READQ_MAX;
			rt->rq_len--;
		}
		pthread_mutex_unlock(&rt->mu);

		/* Merge every live request into one pipeline: one round trip for all. */
		const char *keys[READ_BATCH * READ_MAX_KEYS];
		rep_counts_t c[READ_BATCH * READ_MAX_KEYS];
		bool found[READ_BATCH * READ_MAX_KEYS];
		uint8_t from_cache[READ_BATCH][READ_MAX_KEYS];
		size_t nk = 0;
		long now = now_ms(), taken = now;
		pthread_mutex_lock(&rt->cmu);
		for (size_t i = 0; i < nb; i++) {
			if (batch[i]->not_after_ms < taken)
				continue; /* too old to be worth a round trip */
			for (size_t k = 0; k < batch[i]->n; k++) {
				struct rep_read *r = batch[i];
				struct cache_slot *cs = cache_slot_of(rt, r->keys[k]);
				from_cache[i][k] = cs && cs->fetched_ms &&
				                   now - cs->fetched_ms < rt->cfg.cache_ms &&
				                   strcmp(cs->key, r->keys[k]) == 0;
				if (from_cache[i][k]) {
					r->c[k] = slot_counts(cs, hl);
					r->found[k] = cs->found;
					r->age_ms[k] = now - cs->fetched_ms;
				} else {
					keys[nk++] = r->keys[k];
				}
			}
		}
		pthread_mutex_unlock(&rt->cmu);
		int rc = 0;
		if (nk > 0) {
			rep_link_t *l = pick_read_link(replica, primary);
			rc = rep_read_counts(l, nk, keys, c, found);
			bool ok = rc == 0 || rep_link_state(l) == REP_LINK_UP;
			note_link(l, "reader", &up, ok);
			__atomic_store_n(&rt->read_rtt_ms,
			                 rep_link_state(l) == REP_LINK_UP ? rep_link_rtt_ms(l) : -1,
			                 __ATOMIC_RELAXED);
		}
		nk = 0;
		now = now_ms();
		pthread_mutex_lock(&rt->cmu);
		for (size_t i = 0; i < nb; i++) {
			struct rep_read *r = batch[i];
			if (r->not_after_ms < taken) {
				read_finish(r, 2);
				read_unref(r);
				continue;
			}
			bool complete = true;
			for (size_t k = 0; k < r->n; k++) {
				if (from_cache[i][k])
					continue;
				if (rc < 0) {
					complete = false;
					struct cache_slot *cs = cache_slot_of(rt, keys[nk]);
					if (cs && strcmp(cs->key, keys[nk]) == 0)
						cs->queued_ms =
						    0; /* the next message may ask again */
					nk++;
					continue;
				}
				cache_store(rt, keys[nk], &c[nk], found[nk], now);
				struct cache_slot *cs = cache_slot_of(rt, keys[nk]);
				r->c[k] = slot_counts(cs, hl);
				r->found[k] = found[nk];
				r->age_ms[k] = -1;
				nk++;
			}
			__atomic_add_fetch(complete ? &rt->reads_ok : &rt->reads_failed, 1,
			                   __ATOMIC_RELAXED);
			read_finish(r, complete ? 1 : 2);
			read_unref(r);
		}
		pthread_mutex_unlock(&rt->cmu);
	}
	rt_link_free(rt, primary);
	rt_link_free(rt, replica);
	return NULL;
}

/* Queues the updates a stopped runtime left in the mirror (from: whose, for the log). */
static void rt_take_pending(struct rep_rt *rt, const char *from)
{
	rep_witem_t *items = NULL;
	size_t n;
	if (rt->mir == NULL)
		return;
	__atomic_store_n(&rt->mir->pending_saved, 0, __ATOMIC_RELEASE);
	if (rep_mirror_take_pending(rt->mir->m, &items, &n) == 0 && n > 0) {
		for (size_t i = 0; i < n; i++)
			rep_wqueue_push(rt->wq, &items[i]);
		log_msg(LOG_L_NOTICE, "rep: %zu reputation updates from %s queued", n, from);
	}
	free(items);
}

static void *writer_main(void *arg)
{
	struct rep_rt *rt = arg;
	rep_link_conf_t lc;
	rep_link_t *l;
	bool up = true;
	time_t last_stats = time(NULL);
	uint64_t last_dropped = 0;

	rt_link_conf(rt, false, &lc);
	lc.want_primary = true;
	lc.script = rep_incr_script;
	l = rt_link(rt, rep_link_new(&lc), true);
	rep_wconf_t wc = {.prefix = rt->prefix,
	                  .node_id = rt->node_id,
	                  .half_life_s = (double)rt->cfg.half_life_s,
	                  .ttl_s = rt->cfg.ttl_s,
	                  .window_ms = rt->cfg.write_window_ms};
	for (;;) {
		bool stop = stopping(rt);
		int n;
		size_t bytes;
		/*
		 * Drain what is due; on stop, one last attempt to flush everything,
		 * but only over a link that is up: a new connection to a far Redis
		 * could hold the shutdown for the whole connect timeout, and what is
		 * not written is kept for the next start anyway.
		 */
		wc.force = stop;
		n = 0;
		while ((!stop || rep_link_state(l) == REP_LINK_UP) &&
		       (n = rep_write_batch(l, rt->wq, &wc, &bytes)) > 0) {
			__atomic_add_fetch(&rt->written, (uint64_t)n, __ATOMIC_RELAXED);
			__atomic_add_fetch(&rt->write_bytes, (uint64_t)bytes, __ATOMIC_RELAXED);
			__atomic_add_fetch(&rt->write_calls, 1, __ATOMIC_RELAXED);
		}
		if (n == 0 || rep_link_state(l) == REP_LINK_UP)
			note_link(l, "writer", &up, true);
		else
			note_link(l, "writer", &up, false);
		__atomic_store_n(&rt->redis_up, up, __ATOMIC_RELAXED);
		__atomic_store_n(&rt->writer_link, (int)rep_link_state(l), __ATOMIC_RELAXED);
		if (stop)
			break;
		/* a runtime a reload replaced left its unwritten updates in the mirror */
		if (rt->mir && __atomic_load_n(&rt->mir->pending_saved, __ATOMIC_ACQUIRE))
			rt_take_pending(rt, "a replaced configuration");
		time_t t = time(NULL);
		if (t - last_stats >= STATS_LOG_EVERY_S) {
			uint64_t dropped = rep_wqueue_dropped(rt->wq);
			log_msg(
			    dropped != last_dropped ? LOG_L_WARNING : LOG_L_INFO,
			    "rep: written=%llu (%llu calls, %llu bytes) queued=%zu dropped=%llu",
			    (unsigned long long)__atomic_load_n(&rt->written, __ATOMIC_RELAXED),
			    (unsigned long long)__atomic_load_n(&rt->write_calls, __ATOMIC_RELAXED),
			    (unsigned long long)__atomic_load_n(&rt->write_bytes, __ATOMIC_RELAXED),
			    rep_wqueue_len(rt->wq), (unsigned long long)dropped);
			last_dropped = dropped;
			last_stats = t;
		}
		if (n < 0) {
			sleep_or_stop(rt, 50); /* the link's backoff decides when to try again */
		} else {
			long due = rep_wqueue_due_ms(rt->wq, rt->cfg.write_window_ms);
			rep_wqueue_wait(rt->wq, due < 0 || due > 1000 ? 1000 : due);
		}
	}
	rt_link_free(rt, l);
	return NULL;
}

static void *syncer_main(void *arg)
{
	struct rep_rt *rt = arg;
	rep_link_conf_t lc;
	rep_link_t *primary, *replica = NULL;
	bool up = true;
	time_t last_purge = 0;

	/* The read timeout covers the blocking XREAD. */
	rt_link_conf(rt, false, &lc);
	lc.extra_read_ms = rt->cfg.sync_wait_ms;
	primary = rt_link(rt, rep_link_new(&lc), false);
	if (rt->cfg.replica) {
		rt_link_conf(rt, true, &lc);
		lc.extra_read_ms = rt->cfg.sync_wait_ms;
		replica = rt_link(rt, rep_link_new(&lc), false);
	}
	while (!stopping(rt)) {
		rep_link_t *l = pick_read_link(replica, primary);
		int n = rep_bl_sync(l, rt->mir->m, rt->prefix, &rt->cfg.bl, rt->cfg.sync_wait_ms);
		note_link(l, "block list sync", &up, n >= 0);
		if (n > 0)
			__atomic_add_fetch(&rt->applied, (uint64_t)n, __ATOMIC_RELAXED);
		time_t t = time(NULL);
		if (n >= 0)
			__atomic_store_n(&rt->synced_at_s, (long)t, __ATOMIC_RELAXED);
		if (t - last_purge >= PURGE_EVERY_S) {
			rep_mirror_purge(rt->mir->m, t);
			last_purge = t;
		}
		if (n < 0)
			sleep_or_stop(rt, 100);
	}
	rt_link_free(rt, primary);
	rt_link_free(rt, replica);
	return NULL;
}

static char *sdup(const char *s)
{
	return s ? xalloc_strdup(s) : NULL;
}

static void rt_stop_threads(struct rep_rt *rt)
{
	pthread_mutex_lock(&rt->mu);
	rt->stop = true;
	pthread_cond_broadcast(&rt->cv);
	pthread_cond_broadcast(&rt->rcv);
	/* Readers and the sync have nothing worth waiting for: cut their links now. */
	for (size_t i = 0; i < rt->nlinks; i++)
		if (!rt->link_is_writer[i])
			rep_link_interrupt(rt->links[i]);
	pthread_mutex_unlock(&rt->mu);
	rep_wqueue_wake(rt->wq);
	for (size_t i = 0; i < rt->nreaders; i++)
		pthread_join(rt->readers[i], NULL);
	rt->nreaders = 0;
	if (rt->writer_started) {
		/*
		 * The writer gets a moment to flush over a link that answers;
		 * on a stalled one it is cut, and what is unconfirmed is kept in
		 * the mirror for the next start.
		 */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += REP_STOP_FLUSH_S;
		if (pthread_timedjoin_np(rt->writer, NULL, &ts) != 0) {
			pthread_mutex_lock(&rt->mu);
			for (size_t i = 0; i < rt->nlinks; i++)
				rep_link_interrupt(rt->links[i]);
			pthread_mutex_unlock(&rt->mu);
			pthread_join(rt->writer, NULL);
		}
	}
	if (rt->syncer_started)
		pthread_join(rt->syncer, NULL);
	rt->writer_started = rt->syncer_started = false;
}

static void rt_free(struct rep_rt *rt)
{
	rt_stop_threads(rt);
	/* Updates Redis never confirmed wait in the mirror for the next start. */
	size_t left = rt->offline ? 0 : rep_wqueue_len(rt->wq);
	if (left > 0 && rt->mir) {
		/*
		 * A batch in flight is saved as plain updates: the next run sends it
		 * under a new id, so if Redis applied it and the reply was lost it
		 * counts twice (once, at most, per restart).
		 */
		rep_witem_t *items;
		size_t n = rep_wqueue_dump(rt->wq, &items);
		if (n > 0 && rep_mirror_save_pending(rt->mir->m, items, n) == 0) {
			log_msg(LOG_L_NOTICE,
			        "rep: %zu unwritten reputation updates (%zu entities) kept for the "
			        "next start, or for the running configuration after a reload",
			        n, left);
			__atomic_store_n(&rt->mir->pending_saved, 1, __ATOMIC_RELEASE);
		} else
			log_msg(LOG_L_WARNING,
			        "rep: %zu reputation updates (entities) lost at shutdown", left);
		free(items);
	}
	/* Reads still queued were never started: fail them so their waiters move on. */
	while (rt->rq_len > 0) {
		struct rep_read *r = rt->rq[rt->rq_head];
		rt->rq_head = (rt->rq_head + 1) % READQ_MAX;
		rt->rq_len--;
		read_finish(r, 2);
		read_unref(r);
	}
	rep_link_free(rt->olink);
	free(rt->cache);
	pthread_mutex_destroy(&rt->cmu);
	rep_wqueue_free(rt->wq);
	mirror_unref(rt->mir);
	pthread_mutex_destroy(&rt->mu);
	pthread_cond_destroy(&rt->cv);
	pthread_cond_destroy(&rt->rcv);
	pthread_mutex_destroy(&rt->olock);
	free(rt->server);
	free(rt->replica);
	free(rt->password);
	free(rt->master);
	for (size_t i = 0; i < rt->cfg.n_sentinels; i++)
		free(rt->sentinels[i]);
	free(rt->prefix);
	free(rt->sig);
	free(rt);
}

static void rt_unref(struct rep_rt *rt)
{
	if (rt && __atomic_sub_fetch(&rt->refs, 1, __ATOMIC_ACQ_REL) == 0)
		rt_free(rt);
}

/* Everything the runtime depends on; a reload with the same signature keeps it. */
static char *rt_signature(const rep_config_t *rc, bool offline)
{
	char buf[16384];
	int n = snprintf(
	    buf, sizeof(buf),
	    "%d|%s|%s|%s|%s|%s|%ld|%ld|%ld|%ld|%ld|%ld|%ld|%ld|%ld|%ld|%s|%ld|%ld|%ld|%ld", offline,
	    rc->server ? rc->server : "", rc->replica ? rc->replica : "", rc->master_name,
	    rc->password ? rc->password : "", rc->prefix, rc->db, rc->connect_timeout_ms,
	    rc->command_timeout_ms, rc->write_window_ms, rc->breaker_failures, rc->breaker_open_ms,
	    rc->backoff_max_ms, rc->half_life_s, rc->ttl_s, rc->queue_max, rc->mirror_dir,
	    rc->sync_wait_ms, rc->cache_ms, rc->cache_entries, rc->reader_threads);
	for (size_t i = 0; i < rc->n_sentinels && n > 0 && (size_t)n < sizeof(buf); i++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "|%s", rc->sentinels[i]);
	/* The sync thread checks entries against the trust settings it started with. */
	if (n > 0 && (size_t)n < sizeof(buf)) {
		char fp[64];
		rep_bl_conf_fingerprint(&rc->bl, fp, sizeof(fp));
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "|%s|%ld|%ld", fp, rc->bl.batch,
		              rc->bl.tombstone_s);
	}
	/* The link's credentials and topology (link_config_read). */
	if (n > 0 && (size_t)n < sizeof(buf))
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "|u=%s|su=%s|sp=%s", rc->username,
		              rc->sentinel_username, rc->sentinel_password);
	for (size_t i = 0; i < rc->n_routes && n > 0 && (size_t)n < sizeof(buf); i++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "|r=%s>%s", rc->route_from[i],
		              rc->route_to[i]);
	for (size_t i = 0; i < rc->n_cluster && n > 0 && (size_t)n < sizeof(buf); i++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "|c=%s", rc->cluster[i]);
	return xalloc_strdup(buf);
}

/* 48 random bits in hex: batch ids of different runs and nodes never meet. */
static void node_id_new(char *buf, size_t size)
{
	uint8_t b[6] = {0};
	FILE *f = fopen("/dev/urandom", "rb");
	if (f == NULL || fread(b, 1, sizeof(b), f) != sizeof(b)) {
		/* No urandom (a chroot): time and pid, unique enough for one fleet. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x =
		    ((uint64_t)ts.tv_nsec << 16) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 32);
		memcpy(b, &x, sizeof(b));
	}
	if (f)
		fclose(f);
	snprintf(buf, size, "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
}

static struct rep_rt *rt_new(const rep_config_t *rc, struct mirror_ref *mir, bool offline,
                             diag_t *d)
{
	struct rep_rt *rt = xalloc_calloc(1, sizeof(*rt));
	pthread_condattr_t ca;

	rt->refs = 1;
	rt->sig = rt_signature(rc, offline);
	rt->cfg = *rc;
	rt->cfg.server = rt->server = sdup(rc->server);
	rt->cfg.replica = rt->replica = sdup(rc->replica);
	rt->cfg.password = rt->password = sdup(rc->password);
	rt->cfg.master_name = rt->master = sdup(rc->master_name);
	for (size_t i = 0; i < rc->n_sentinels; i++)
		rt->cfg.sentinels[i] = rt->sentinels[i] = xalloc_strdup(rc->sentinels[i]);
	rt->cfg.prefix = rt->prefix = xalloc_strdup(rc->prefix);
	rt->offline = offline;
	rt->wq = rep_wqueue_new((size_t)rc->queue_max, (double)rc->half_life_s);
	rt->read_rtt_ms = -1;
	node_id_new(rt->node_id, sizeof(rt->node_id));
	if (mir)
		__atomic_add_fetch(&mir->refs, 1, __ATOMIC_ACQ_REL);
	rt->mir = mir;
	pthread_mutex_init(&rt->mu, NULL);
	pthread_mutex_init(&rt->olock, NULL);
	pthread_mutex_init(&rt->cmu, NULL);
	if (!offline) {
		rt->cache = calloc((size_t)rc->cache_entries, sizeof(*rt->cache));
		rt->ncache = rt->cache ? (size_t)rc->cache_entries : 0;
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rt->cv, &ca);
	pthread_cond_init(&rt->rcv, &ca);
	pthread_condattr_destroy(&ca);
	rt->redis_up = 1;
	if (offline) {
		rep_link_conf_t lc;
		rt_link_conf(rt, rc->replica != NULL, &lc);
		rt->olink = rep_link_new(&lc);
		return rt;
	}
	/* What the previous run could not write goes first. */
	rt_take_pending(rt, "the last run");
	/*
	 * Several readers, each with its own connections: a read queued while
	 * another is on the wire goes out at once instead of waiting a round
	 * trip behind it (what a long-RTT link would otherwise double).
	 */
	for (long i = 0; i < rc->reader_threads; i++) {
		if (ev_thread_start(&rt->readers[rt->nreaders], "sift-rep-read", reader_main, rt) !=
		    0)
			break;
		rt->nreaders++;
	}
	if (rt->nreaders > 0 &&
	    ev_thread_start(&rt->writer, "sift-rep-write", writer_main, rt) == 0)
		rt->writer_started = true;
	if (rt->writer_started && mir &&
	    ev_thread_start(&rt->syncer, "sift-rep-sync", syncer_main, rt) == 0)
		rt->syncer_started = true;
	if (!rt->syncer_started) {
		diag_error(d, NULL, 0, "rep: cannot start the reputation threads%s",
		           mir ? "" : " (no block list mirror)");
		rt_free(rt);
		return NULL;
	}
	rt->threads = true;
	return rt;
}

/* Hands a read to the reader thread; NULL when offline or the queue is full. */
static struct rep_read *rt_submit(struct rep_rt *rt, struct rep_read *r)
{
	bool ok = false;
	pthread_mutex_lock(&rt->mu);
	if (!rt->stop && rt->rq_len < READQ_MAX) {
		r->refs++; /* the reader's reference; not yet shared, no atomics needed */
		rt->rq[(rt->rq_head + rt->rq_len) % READQ_MAX] = r;
		rt->rq_len++;
		pthread_cond_signal(&rt->rcv);
		ok = true;
	}
	pthread_mutex_unlock(&rt->mu);
	if (!ok)
		read_finish(r, 2);
	return r;
}

/* ------------------------------------------------------------ evidence hooks */

struct rep_shared {
	rep_config_t cfg; /* strings point into the generation's conf_t */
	struct mirror_ref *mir;
	struct rep_rt *rt;
	const psl_ctx_t *psl;
	bool offline;
};

struct rep_conn {
	bool has_addr;
	rep_addr_t addr;
	char ip[64];
	char net[64];
	struct rep_read *ipread; /* IP and network, issued at CONNECT */
};

static void *rep_load(conf_t *c, void *prev_v, const ev_env_t *env, diag_t *d)
{
	struct rep_shared *prev = prev_v, *s = xalloc_calloc(1, sizeof(*s));

	if (rep_config_read(c, env->state_dir, &s->cfg, d) < 0) {
		free(s);
		return NULL;
	}
	s->offline = env->offline;
	/* Built-in, static and immutable: nothing to free, safe from every thread. */
	s->psl = psl_builtin();

	/*
	 * What the previous generation started carries over when its settings
	 * are the same (an LMDB env once per process, the Redis threads);
	 * anything else is opened by rep_start(), after fork.
	 */
	if (prev && prev->mir && strcmp(prev->mir->path, s->cfg.mirror_dir) == 0) {
		__atomic_add_fetch(&prev->mir->refs, 1, __ATOMIC_ACQ_REL);
		s->mir = prev->mir;
	}
	if (!rep_config_has_redis(&s->cfg) || prev == NULL || prev->rt == NULL ||
	    prev->mir != s->mir)
		return s;
	char *sig = rt_signature(&s->cfg, env->offline);
	if (sig && strcmp(prev->rt->sig, sig) == 0) {
		__atomic_add_fetch(&prev->rt->refs, 1, __ATOMIC_ACQ_REL);
		s->rt = prev->rt;
	}
	free(sig);
	return s;
}

/* Opens the block-list mirror and starts the Redis runtime unless carried over. */
static int rep_start(void *sv, const ev_env_t *env, diag_t *d)
{
	struct rep_shared *s = sv;
	if (s->mir == NULL) {
		struct stat st;
		bool exists = stat(s->cfg.mirror_dir, &st) == 0;
		/*
		 * `sift check` does not create state: without a mirror it just has
		 * no block list. The daemon creates it, and failing that is an error.
		 */
		if (exists || !env->offline) {
			diag_t *tmp = diag_new();
			rep_mirror_t *m = rep_mirror_open(s->cfg.mirror_dir, tmp);
			if (m) {
				s->mir = xalloc_calloc(1, sizeof(*s->mir));
				s->mir->refs = 1;
				s->mir->path = xalloc_strdup(s->cfg.mirror_dir);
				s->mir->m = m;
			} else if (!env->offline || s->cfg.mirror_explicit) {
				for (size_t i = 0; i < diag_count(tmp); i++)
					diag_error(d, NULL, 0, "%s", diag_text(tmp, i));
			}
			diag_free(tmp);
			if (s->mir == NULL && !env->offline)
				return -1;
		}
	}
	if (!rep_config_has_redis(&s->cfg) || s->rt != NULL)
		return 0;
	s->rt = rt_new(&s->cfg, s->mir, env->offline, d);
	return s->rt == NULL ? -1 : 0;
}

static void rep_release(void *sv)
{
	struct rep_shared *s = sv;
	if (s == NULL)
		return;
	rt_unref(s->rt);
	mirror_unref(s->mir);
	free(s);
}

static bool claim_refresh(struct rep_shared *s, const char *key, long now);

static void *rep_conn_begin(void *sv, const ev_conn_info_t *ci)
{
	struct rep_shared *s = sv;
	struct rep_conn *c = xalloc_calloc(1, sizeof(*c));

	if (ci == NULL || ci->client_ip == NULL)
		return c;
	if (rep_addr_parse(ci->client_ip, &c->addr) < 0)
		return c;
	c->has_addr = true;
	rep_addr_format(&c->addr, c->ip, sizeof(c->ip));
	rep_addr_net(&c->addr, c->net, sizeof(c->net));
	if (s->rt && !s->offline) {
		/*
		 * Issued now so the round trip overlaps the SMTP dialogue, and it
		 * fills the cache. The reader may serve it any time in the next
		 * minute (the connection can take that long to reach end of
		 * message); after that it is skipped. Not when the cache has both
		 * fresh, or their refresh is on its way already: on a far link,
		 * every connection of a busy sender would read them again.
		 */
		struct rep_read *r = read_new(now_ms() + BG_READ_MAX_AGE_MS);
		if (r) {
			long now = now_ms();
			bool need = false;
			rep_key(r->keys[0], REP_KEY_MAX_BYTES, s->cfg.prefix, REP_ENT_IP, c->ip);
			rep_key(r->keys[1], REP_KEY_MAX_BYTES, s->cfg.prefix, REP_ENT_NET, c->net);
			r->n = 2;
			pthread_mutex_lock(&s->rt->cmu);
			for (size_t k = 0; k < 2; k++) {
				struct cache_slot *cs = cache_slot_of(s->rt, r->keys[k]);
				bool fresh = cs && cs->fetched_ms &&
				             strcmp(cs->key, r->keys[k]) == 0 &&
				             now - cs->fetched_ms < s->cfg.cache_ms;
				if (!fresh && claim_refresh(s, r->keys[k], now))
					need = true;
			}
			pthread_mutex_unlock(&s->rt->cmu);
			if (need)
				c->ipread = rt_submit(s->rt, r);
			else
				read_unref(r);
		}
	}
	return c;
}

static void rep_envelope(void *sv, void *cv, msg_t *m)
{
	/* Nothing to do before end of message: the domains are read with the URLs, in one trip. */
}

/* The registrable domain (libpsl) of a host, into buf; false if not a domain. */
static bool reg_domain(struct rep_shared *s, const char *host, char *buf, size_t size)
{
	char norm[REP_DOMAIN_MAX_BYTES];
	if (host == NULL || rep_domain_norm(host, norm, sizeof(norm)) < 0 ||
	    strchr(norm, '.') == NULL)
		return false;
	const char *r = s->psl ? psl_registrable_domain(s->psl, norm) : NULL;
	snprintf(buf, size, "%s", r ? r : norm);
	return true;
}

/* The entities of one message besides the IP: kinds and values. */
struct msg_ents {
	size_t n;
	rep_ent_t kind[READ_MAX_KEYS];
	char value[READ_MAX_KEYS][REP_DOMAIN_MAX_BYTES];
	char from_dom[REP_DOMAIN_MAX_BYTES]; /* full (not registrable) for the block list */
	char mf_dom[REP_DOMAIN_MAX_BYTES];
};

static void add_ent(struct msg_ents *e, rep_ent_t kind, const char *v)
{
	for (size_t i = 0; i < e->n; i++)
		if (e->kind[i] == kind && strcmp(e->value[i], v) == 0)
			return;
	if (e->n < READ_MAX_KEYS) {
		e->kind[e->n] = kind;
		snprintf(e->value[e->n], sizeof(e->value[0]), "%s", v);
		e->n++;
	}
}

static void msg_entities(struct rep_shared *s, msg_t *m, const mime_t *mi, struct msg_ents *e)
{
	char d[REP_DOMAIN_MAX_BYTES];
	const char *from;

	memset(e, 0, sizeof(*e));
	if (rep_addr_domain(msg_mail_from(m), e->mf_dom, sizeof(e->mf_dom)) == 0 &&
	    reg_domain(s, e->mf_dom, d, sizeof(d)))
		add_ent(e, REP_ENT_MAILFROM, d);
	from = msg_header_get(m, "From", 0);
	if (from && rep_addr_domain(from, e->from_dom, sizeof(e->from_dom)) == 0 &&
	    reg_domain(s, e->from_dom, d, sizeof(d)))
		add_ent(e, REP_ENT_FROM, d);
	size_t urls = 0;
	for (size_t i = 0; mi && i < mime_lookup_domain_count(mi) && urls < (size_t)s->cfg.url_max;
	     i++)
		if (reg_domain(s, mime_lookup_domain(mi, i), d, sizeof(d))) {
			size_t before = e->n;
			add_ent(e, REP_ENT_URL, d);
			urls += e->n > before;
		}
}

static void block_hits(struct rep_shared *s, struct rep_conn *c, msg_t *m, const mime_t *mi,
                       const struct msg_ents *e, hits_t *h, const ev_score_ctx_t *ctx)
{
	rep_mirror_t *mm = s->mir->m;
	int64_t now = time(NULL);
	rep_entry_t ent;
	char tgt[REP_DOMAIN_MAX_BYTES];

	if (c && c->has_addr && rep_mirror_lookup_ip(mm, &c->addr, now, &ent) == 1) {
		rep_target_format(&ent.target, tgt, sizeof(tgt));
		hits_addf(h, "rep", ent.allow ? "ALLOWLIST_IP" : "BLOCKLIST_IP",
		          ent.allow ? s->cfg.allow_score : s->cfg.block_score,
		          ent.allow ? "Client address on the shared allowlist"
		                    : "Client address on the shared blocklist",
		          "%s in %s (%s)", c->ip, tgt, ent.reason[0] ? ent.reason : "no reason");
	}
	/* Sender domains: one hit for the first listed; the forgeable From can allow too. */
	const char *doms[3] = {e->mf_dom, e->from_dom, msg_client_name(m)};
	const char *what[3] = {"MAIL FROM", "From", "client name"};
	bool done = false;
	for (int i = 0; i < 3 && !done; i++) {
		if (doms[i] == NULL || doms[i][0] == '\0' ||
		    rep_mirror_lookup_domain(mm, doms[i], now, &ent) != 1)
			continue;
		if (ent.allow && i == 2)
			continue; /* a reverse name is the address owner's claim, not a sender's */
		hits_addf(h, "rep", ent.allow ? "ALLOWLIST_DOMAIN" : "BLOCKLIST_DOMAIN",
		          ent.allow ? s->cfg.allow_score : s->cfg.block_score,
		          ent.allow ? "Sender domain on the shared allowlist"
		                    : "Sender domain on the shared blocklist",
		          "%s %s under %s (%s)", what[i], doms[i], ent.target.domain,
		          ent.reason[0] ? ent.reason : "no reason");
		done = true;
	}
	/* URLs only block: allowing by URL would let anyone borrow a good name. */
	for (size_t i = 0; mi && i < mime_lookup_domain_count(mi); i++) {
		const char *dom = mime_lookup_domain(mi, i);
		if (rep_mirror_lookup_domain(mm, dom, now, &ent) == 1 && !ent.allow) {
			hits_addf(h, "rep", "BLOCKLIST_URL", s->cfg.block_score,
			          "URL domain on the shared blocklist", "%s under %s (%s)", dom,
			          ent.target.domain, ent.reason[0] ? ent.reason : "no reason");
			break;
		}
	}
	if (ctx->explain) {
		char last[REP_ID_MAX_BYTES];
		if (rep_mirror_last_id(mm, last, sizeof(last)) == 0)
			hits_note(h, "rep", "block list mirror %s at stream id %s", s->mir->path,
			          last);
	}
}

/* Adds the reputation hit of one entity kind (the strongest of its values). */
static void rep_hit(struct rep_shared *s, hits_t *h, rep_ent_t kind, const char *value,
                    const rep_counts_t *cnt, const char *from, bool explain)
{
	char name[48];
	double sc = rep_score(cnt->spam, cnt->ham, s->cfg.min_obs, s->cfg.max_score);

	if (explain)
		hits_note(h, "rep", "%s %s: spam %.1f ham %.1f%s (score %.2f; %s)",
		          rep_ent_label(kind), value, cnt->spam, cnt->ham,
		          cnt->spam + cnt->ham < s->cfg.min_obs ? ", too few observations" : "", sc,
		          from);
	if (sc == 0)
		return;
	snprintf(name, sizeof(name), "REP_%s_%s", rep_ent_label(kind), sc > 0 ? "SPAM" : "HAM");
	hits_addf(h, "rep", arena_strdup(hits_arena(h), name), sc,
	          sc > 0 ? "Shared reputation: mostly spam" : "Shared reputation: mostly ham",
	          "%s spam=%.1f ham=%.1f", value, cnt->spam, cnt->ham);
}

/* One entity of a message on its way to a score. */
struct look {
	rep_ent_t kind;
	const char *value;
	char key[REP_KEY_MAX_BYTES];
	enum { L_UNKNOWN, L_FRESH, L_CACHED, L_STALE } src;
	long age_ms;
	bool need; /* a read is queued for it by this message */
	rep_counts_t c;
};

/* Takes answer k of a finished read: fresh from Redis, or from the reader's cache. */
static void look_read(struct look *lk, const struct rep_read *r, size_t k)
{
	lk->c = r->found[k] ? r->c[k] : (rep_counts_t){0, 0, 0};
	lk->src = r->age_ms[k] < 0 ? L_FRESH : L_CACHED;
	lk->age_ms = r->age_ms[k] < 0 ? 0 : r->age_ms[k];
	lk->need = false;
}

/*
 * The cache's answer for one entity: fresh (younger than rep_cache_time),
 * stale (served, but refreshed) or unknown.
 */
static void look_cache(struct rep_shared *s, struct look *lk, long now, double hl)
{
	struct rep_rt *rt = s->rt;
	struct cache_slot *cs = cache_slot_of(rt, lk->key);
	lk->src = L_UNKNOWN;
	lk->need = true;
	if (cs == NULL || cs->fetched_ms == 0 || strcmp(cs->key, lk->key) != 0)
		return;
	lk->age_ms = now - cs->fetched_ms;
	if (lk->age_ms >= s->cfg.cache_ms + REP_STALE_MAX_MS)
		return;
	lk->c = slot_counts(cs, hl);
	lk->src = lk->age_ms < s->cfg.cache_ms ? L_CACHED : L_STALE;
	lk->need = lk->src == L_STALE;
}

/* Marks a refresh of key as queued; false if one is already (and not yet overdue). */
static bool claim_refresh(struct rep_shared *s, const char *key, long now)
{
	struct cache_slot *cs = cache_slot_of(s->rt, key);
	if (cs == NULL)
		return true;
	if (strcmp(cs->key, key) != 0) {
		/* A placeholder: the answer will land in this slot anyway. */
		memset(cs, 0, sizeof(*cs));
		snprintf(cs->key, sizeof(cs->key), "%s", key);
	} else if (cs->queued_ms && now - cs->queued_ms < s->cfg.command_timeout_ms) {
		return false;
	}
	cs->queued_ms = now;
	return true;
}

/*
 * Decide locally: a message is scored from the local cache (see rep.h);
 * what it lacks is read in the background, and the message waits for that
 * read (rep_read_wait at most, never past its deadline) only when the
 * measured round trip of the read link fits that wait. Entities still
 * unknown, or Redis down, degrade the verdict (EV_DEGRADED): reputation is
 * an outside service, and mail must flow without it.
 */
static ev_status_t rep_score_hook(void *sv, void *cv, msg_t *m, const mime_t *mi, hits_t *h,
                                  const ev_score_ctx_t *ctx)
{
	ev_status_t status = EV_OK;
	struct rep_shared *s = sv;
	struct rep_conn *c = cv, tmpc;
	struct msg_ents e;

	/* `sift check` (or a glue that gave no IP at connect): take the message's. */
	if ((c == NULL || !c->has_addr) && msg_client_ip(m)) {
		memset(&tmpc, 0, sizeof(tmpc));
		if (rep_addr_parse(msg_client_ip(m), &tmpc.addr) == 0) {
			tmpc.has_addr = true;
			rep_addr_format(&tmpc.addr, tmpc.ip, sizeof(tmpc.ip));
			rep_addr_net(&tmpc.addr, tmpc.net, sizeof(tmpc.net));
			c = &tmpc;
		}
	}
	msg_entities(s, m, mi, &e);
	if (s->mir)
		block_hits(s, c, m, mi, &e, h, ctx);
	if (s->rt == NULL)
		return EV_OK;

	struct look lk[READ_MAX_KEYS];
	size_t n = 0;
	bool has_ip = c && c->has_addr;
	if (has_ip) {
		lk[n].kind = REP_ENT_IP;
		lk[n].value = c->ip;
		rep_key(lk[n++].key, REP_KEY_MAX_BYTES, s->cfg.prefix, REP_ENT_IP, c->ip);
		lk[n].kind = REP_ENT_NET;
		lk[n].value = c->net;
		rep_key(lk[n++].key, REP_KEY_MAX_BYTES, s->cfg.prefix, REP_ENT_NET, c->net);
	}
	for (size_t i = 0; i < e.n && n < READ_MAX_KEYS; i++) {
		lk[n].kind = e.kind[i];
		lk[n].value = e.value[i];
		if (rep_key(lk[n].key, REP_KEY_MAX_BYTES, s->cfg.prefix, e.kind[i], e.value[i]) >=
		    0)
			n++;
	}
	for (size_t i = 0; i < n; i++) {
		lk[i].src = L_UNKNOWN;
		lk[i].need = true;
		lk[i].age_ms = 0;
		memset(&lk[i].c, 0, sizeof(lk[i].c));
	}
	int64_t now_s = time(NULL);
	double hl = (double)s->cfg.half_life_s;
	long start = now_ms();
	bool failed = false;

	if (n > 0 && s->offline) {
		/* The CLI: a synchronous read, bounded by the link's command timeout. */
		const char *keys[READ_MAX_KEYS];
		rep_counts_t cnt[READ_MAX_KEYS];
		bool found[READ_MAX_KEYS];
		for (size_t i = 0; i < n; i++)
			keys[i] = lk[i].key;
		pthread_mutex_lock(&s->rt->olock);
		if (rep_read_counts(s->rt->olink, n, keys, cnt, found) == 0) {
			for (size_t i = 0; i < n; i++) {
				lk[i].src = L_FRESH;
				lk[i].c = found[i] ? cnt[i] : (rep_counts_t){0, 0, 0};
			}
		} else {
			failed = true;
			if (ctx->explain)
				hits_note(h, "rep", "reputation unavailable: %s",
				          rep_link_error(s->rt->olink));
		}
		pthread_mutex_unlock(&s->rt->olock);
	} else if (n > 0) {
		/* The CONNECT read answered already: fresh counts for the IP and its network. */
		bool ip_done = has_ip && c->ipread && read_wait(c->ipread, 0) == 1;
		if (ip_done)
			for (size_t k = 0; k < 2; k++)
				look_read(&lk[k], c->ipread, k);
		pthread_mutex_lock(&s->rt->cmu);
		for (size_t i = ip_done ? 2 : 0; i < n; i++)
			look_cache(s, &lk[i], start, hl);
		pthread_mutex_unlock(&s->rt->cmu);
		/* The CONNECT read is on its way: no second read of the same keys. */
		bool ip_pending = has_ip && c->ipread && !ip_done;
		if (ip_pending)
			for (size_t k = 0; k < 2; k++)
				lk[k].need = false;

		/* Waiting is worth it only when an answer can come back in time. */
		long budget = s->cfg.read_wait_ms;
		if (ctx->deadline_ms > 0 && ctx->deadline_ms - start < budget)
			budget = ctx->deadline_ms - start;
		long rtt = __atomic_load_n(&s->rt->read_rtt_ms, __ATOMIC_RELAXED);
		bool wait = budget > 0 && rtt >= 0 && rtt <= budget;

		struct rep_read *r = read_new(start + BG_READ_MAX_AGE_MS);
		size_t idx[READ_MAX_KEYS];
		if (r) {
			pthread_mutex_lock(&s->rt->cmu);
			for (size_t i = 0; i < n; i++) {
				if (!lk[i].need)
					continue;
				/* A far link: one refresh per key in flight is enough. */
				if (!claim_refresh(s, lk[i].key, start) && !wait) {
					lk[i].need = false;
					continue;
				}
				idx[r->n] = i;
				snprintf(r->keys[r->n++], REP_KEY_MAX_BYTES, "%s", lk[i].key);
			}
			pthread_mutex_unlock(&s->rt->cmu);
		}
		bool any_wait = wait && ((r && r->n > 0) || ip_pending);
		if (r && r->n > 0)
			rt_submit(s->rt, r);
		if (any_wait) {
			long until = start + budget;
			if (r && r->n > 0 && read_wait(r, until) == 1)
				for (size_t k = 0; k < r->n; k++)
					look_read(&lk[idx[k]], r, k);
			if (ip_pending && read_wait(c->ipread, until) == 1)
				for (size_t k = 0; k < 2; k++)
					look_read(&lk[k], c->ipread, k);
		}
		bool reading = (r && r->n > 0) || ip_pending;
		read_unref(r);
		if (ctx->explain) {
			hits_note(h, "rep",
			          "read link round trip %s%ld ms; %s (rep_read_wait %ld ms)",
			          rtt < 0 ? "unknown " : "", rtt < 0 ? 0 : rtt,
			          any_wait   ? "the message waited for the reads"
			          : !reading ? "nothing to read"
			                     : "the message did not wait: reads fill the cache",
			          s->cfg.read_wait_ms);
		}
	}

	/* The best (strongest) value per kind, so many URLs do not add up. */
	rep_counts_t best[REP_ENT_N];
	const char *bestv[REP_ENT_N] = {0};
	const char *bestfrom[REP_ENT_N] = {0};
	char from[READ_MAX_KEYS][64];
	double bestsc[REP_ENT_N] = {0};
	bool unknown = false;
	for (size_t i = 0; i < n; i++) {
		rep_counts_t cnt = lk[i].c;
		switch (lk[i].src) {
		case L_FRESH: snprintf(from[i], sizeof(from[i]), "fresh from Redis"); break;
		case L_CACHED:
			snprintf(from[i], sizeof(from[i]), "cached %ld ms ago", lk[i].age_ms);
			break;
		case L_STALE:
			snprintf(from[i], sizeof(from[i]), "stale, %ld s old, refresh queued",
			         lk[i].age_ms / 1000);
			break;
		default:
			unknown = true;
			if (ctx->explain)
				hits_note(h, "rep", "%s %s: not yet known%s",
				          rep_ent_label(lk[i].kind), lk[i].value,
				          failed ? "" : ", read queued");
			continue;
		}
		rep_counts_decay(&cnt, now_s, hl);
		double sc = rep_score(cnt.spam, cnt.ham, s->cfg.min_obs, s->cfg.max_score);
		rep_ent_t k = lk[i].kind;
		if (bestv[k] == NULL || fabs(sc) > fabs(bestsc[k])) {
			best[k] = cnt;
			bestv[k] = lk[i].value;
			bestfrom[k] = from[i];
			bestsc[k] = sc;
		}
	}
	if (unknown || failed)
		status = EV_DEGRADED;
	for (int k = 0; k < REP_ENT_N; k++)
		if (bestv[k])
			rep_hit(s, h, (rep_ent_t)k, bestv[k], &best[k], bestfrom[k], ctx->explain);
	return status;
}

static double rep_own_score(const hits_t *h)
{
	double own = 0;
	for (size_t i = 0; i < hits_count(h); i++) {
		const hit_t *x = hits_at(h, i);
		if (x->source && strcmp(x->source, "rep") == 0)
			own += x->score;
	}
	return own;
}

static void push(struct rep_shared *s, rep_ent_t kind, const char *value, int64_t t, bool spam)
{
	rep_witem_t it;
	memset(&it, 0, sizeof(it));
	if (rep_key(it.key, sizeof(it.key), s->cfg.prefix, kind, value) < 0)
		return;
	it.t = t;
	it.spam = spam;
	it.ham = !spam;
	/*
	 * The next message from the same sender sees this verdict without a
	 * round trip. Queued and folded under one hold of cmu: a refresh
	 * (cache_store, also under cmu) takes the queued counts as the
	 * cache's local part, so a refresh landing between the two steps
	 * would count this verdict twice.
	 */
	pthread_mutex_lock(&s->rt->cmu);
	rep_wqueue_push(s->rt->wq, &it);
	struct cache_slot *cs = cache_slot_of(s->rt, it.key);
	if (cs && cs->fetched_ms && strcmp(cs->key, it.key) == 0)
		rep_counts_add(&cs->local, t, it.spam, it.ham, (double)s->cfg.half_life_s);
	pthread_mutex_unlock(&s->rt->cmu);
}

static void rep_verdict(void *sv, void *cv, msg_t *m, const mime_t *mi, const hits_t *h,
                        double score, int action)
{
	struct rep_shared *s = sv;
	struct rep_conn *c = cv;
	struct msg_ents e;
	bool spam;

	if (s->rt == NULL || s->offline)
		return;
	/*
	 * Learn from the other evidence only: counting our own hits would let
	 * reputation confirm itself (and a block list entry would poison the
	 * counters of everything else in the message).
	 */
	double base = score - rep_own_score(h);
	if (base >= s->cfg.learn_spam)
		spam = true;
	else if (base < s->cfg.learn_ham)
		spam = false;
	else
		return;
	/* Our own authenticated users are not the world's business. */
	if (msg_auth(m) != NULL)
		return;
	int64_t t = time(NULL);
	if (c && c->has_addr) {
		push(s, REP_ENT_IP, c->ip, t, spam);
		push(s, REP_ENT_NET, c->net, t, spam);
	} else if (msg_client_ip(m)) {
		rep_addr_t a;
		char ip[64], net[64];
		if (rep_addr_parse(msg_client_ip(m), &a) == 0 &&
		    rep_addr_format(&a, ip, sizeof(ip)) == 0 &&
		    rep_addr_net(&a, net, sizeof(net)) == 0) {
			push(s, REP_ENT_IP, ip, t, spam);
			push(s, REP_ENT_NET, net, t, spam);
		}
	}
	msg_entities(s, m, mi, &e);
	for (size_t i = 0; i < e.n; i++)
		push(s, e.kind[i], e.value[i], t, spam);
}

static void rep_conn_end(void *sv, void *cv)
{
	struct rep_conn *c = cv;
	if (c == NULL)
		return;
	read_unref(c->ipread);
	free(c);
}

static void rep_gauge(metrics_out_t *o, const char *name, const char *type, const char *help,
                      double v)
{
	metrics_out_family(o, name, type, help);
	metrics_out_value(o, name, NULL, NULL, v);
}

/* The runtime's figures (shared by generations with the same Redis settings). */
static void rep_metrics(void *sv, metrics_out_t *o)
{
	struct rep_shared *sh = sv;
	struct rep_rt *rt = sh->rt;
	if (rt == NULL || rt->offline)
		return;
	int link = __atomic_load_n(&rt->writer_link, __ATOMIC_RELAXED);
	rep_gauge(o, "sift_redis_up", "gauge", "1 when the writer's link to Redis is up.",
	          __atomic_load_n(&rt->redis_up, __ATOMIC_RELAXED) ? 1 : 0);
	rep_gauge(o, "sift_redis_breaker_open", "gauge",
	          "1 while the circuit breaker holds the writer's link open (no attempts).",
	          link == REP_LINK_OPEN ? 1 : 0);
	metrics_out_family(o, "sift_redis_reads_total", "counter",
	                   "Reputation reads, by result (failed: Redis down, slow or broken).");
	metrics_out_value(o, "sift_redis_reads_total", "result", "ok",
	                  (double)__atomic_load_n(&rt->reads_ok, __ATOMIC_RELAXED));
	metrics_out_value(o, "sift_redis_reads_total", "result", "failed",
	                  (double)__atomic_load_n(&rt->reads_failed, __ATOMIC_RELAXED));
	rep_gauge(o, "sift_redis_writes_total", "counter", "Reputation updates written to Redis.",
	          (double)__atomic_load_n(&rt->written, __ATOMIC_RELAXED));
	if (rt->wq != NULL) {
		rep_gauge(o, "sift_redis_write_queue_depth", "gauge",
		          "Entities waiting in the write queue.", (double)rep_wqueue_len(rt->wq));
		rep_gauge(o, "sift_redis_writes_dropped_total", "counter",
		          "Updates dropped because the write queue was full.",
		          (double)rep_wqueue_dropped(rt->wq));
	}
	if (__atomic_load_n(&rt->syncer_started, __ATOMIC_RELAXED)) {
		rep_gauge(o, "sift_rep_mirror_applied_total", "counter",
		          "Block-list changes applied to the local mirror.",
		          (double)__atomic_load_n(&rt->applied, __ATOMIC_RELAXED));
		long at = __atomic_load_n(&rt->synced_at_s, __ATOMIC_RELAXED);
		if (at > 0)
			rep_gauge(o, "sift_rep_mirror_lag_seconds", "gauge",
			          "Seconds since the mirror last synced with Redis.",
			          (double)(time(NULL) - at));
	}
}

const evidence_ops_t rep_evidence = {
    .name = "rep",
    .load = rep_load,
    .start = rep_start,
    .release = rep_release,
    .conn_begin = rep_conn_begin,
    .envelope = rep_envelope,
    .score = rep_score_hook,
    .verdict = rep_verdict,
    .conn_end = rep_conn_end,
    .metrics = rep_metrics,
};
