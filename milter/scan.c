/*
 * scan.c - configuration generations and the per-message pipeline shared
 * by sift-milter and `sift check` (see scan.h). The sources of evidence
 * are listed once, in scan_modules[], and driven through evidence.h.
 */
#include "config.h"

#include "scan.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "bayes.h"
#include "dns.h"
#include "dnsbl.h"
#include "log.h"
#include "metrics.h"
#include "rep.h"
#include "rules.h"
#include "xalloc.h"

#define SCAN_CONN_ARENA_BYTES 4096

/*
 * Order matters only for time: the CPU-bound sources run first so that
 * network answers (DNS, Redis) keep arriving meanwhile, and the sources
 * that wait on the network run last against the deadline.
 */
static const evidence_ops_t *const scan_modules[] = {
    &rules_evidence, &bayes_evidence, &rep_evidence, &auth_evidence, &dnsbl_evidence,
};
#define SCAN_N_MODULES (sizeof(scan_modules) / sizeof(scan_modules[0]))
_Static_assert(SCAN_N_MODULES <= SCAN_MAX_SOURCES, "scan_result_t.timings too small");

/*
 * The order score() runs in: scan_modules[] order, except that a source
 * runs after the sources its `after` list names (evidence.h). Computed
 * once; a name that is no source, or a cycle, leaves the list order.
 */
static size_t scan_order[SCAN_N_MODULES];
static pthread_once_t scan_order_once = PTHREAD_ONCE_INIT;

static size_t scan_index_of(const evidence_ops_t *const *mods, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(mods[i]->name, name) == 0)
			return i;
	return n;
}

void scan_order_sources(const evidence_ops_t *const *mods, size_t n, size_t *order)
{
	bool placed[SCAN_MAX_SOURCES] = {false};
	for (size_t done = 0; done < n && n <= SCAN_MAX_SOURCES; done++) {
		size_t pick = n;
		for (size_t i = 0; i < n && pick == n; i++) {
			if (placed[i])
				continue;
			bool ready = true;
			for (const char *const *a = mods[i]->after; a && *a; a++) {
				size_t k = scan_index_of(mods, n, *a);
				if (k < n && !placed[k])
					ready = false;
			}
			if (ready)
				pick = i;
		}
		for (size_t i = 0; pick == n && i < n; i++) /* a cycle: the rest in list order */
			if (!placed[i])
				pick = i;
		placed[pick] = true;
		order[done] = pick;
	}
}

static void scan_order_compute(void)
{
	scan_order_sources(scan_modules, SCAN_N_MODULES, scan_order);
}

struct scan_gen {
	atomic_int refs;
	conf_t *conf;
	bool owns_conf;
	scan_settings_t settings;
	verdict_policy_t policy;
	dns_t *dns; /* the shared DNS service, carried over reloads when unchanged */
	void *mod[SCAN_N_MODULES];
};

struct scan_conn {
	scan_gen_t *gen;
	arena_t *arena;
	ev_conn_info_t ci;
	void *mod[SCAN_N_MODULES];
};

long ev_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What a module thread needs before it runs its own function. */
struct ev_thread_boot {
	char name[16]; /* the kernel keeps 15 bytes of a thread's name */
	void *(*fn)(void *);
	void *arg;
};

/* Names the thread from inside, so it carries its name before it does anything. */
static void *ev_thread_main(void *p)
{
	struct ev_thread_boot b = *(struct ev_thread_boot *)p;
	free(p);
	pthread_setname_np(pthread_self(), b.name);
	return b.fn(b.arg);
}

int ev_thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg)
{
	struct ev_thread_boot *b = xalloc_calloc(1, sizeof(*b));
	snprintf(b->name, sizeof(b->name), "%s", name);
	b->fn = fn;
	b->arg = arg;
	/* The new thread inherits the mask in force when it is created. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	int rc = pthread_create(t, NULL, ev_thread_main, b);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		free(b);
	return rc;
}

/*
 * libmilter's socket syntax is loose: "inet:127.0.0.1:11338" (Postfix's
 * notation) is read as port "127" on every interface, and "inet:11338"
 * also listens everywhere. So the spec is checked with the other settings (for
 * sift-milter, its -p flag, and for `sift lint` alike), before libmilter
 * sees it: the port is digits only, the host is required, and a spec in
 * Postfix's order gets an error that names the right form.
 */
#define SCAN_MAX_HOST_BYTES 255

static bool scan_port_ok(const char *p, size_t n)
{
	if (n == 0 || n > 5)
		return false;
	unsigned long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	return v >= 1 && v <= 65535;
}

/* A host name: letters, digits, '-' and '.', labels of 1 to 63 bytes. */
static bool scan_hostname_ok(const char *h)
{
	size_t label = 0, n = strlen(h);
	if (n == 0 || n > SCAN_MAX_HOST_BYTES)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = h[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		           (c >= '0' && c <= '9') || c == '-') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	/* all digits and dots is a mistyped address, not a name */
	return strspn(h, "0123456789.") != n;
}

static int scan_socket_check(const char *spec, char *err, size_t err_len)
{
	const char *colon = strchr(spec, ':');
	size_t plen = colon ? (size_t)(colon - spec) : 0;
	if (colon == NULL) {
		snprintf(err, err_len,
		         "socket '%s': expected unix:/path, inet:PORT@HOST or inet6:PORT@HOST",
		         spec);
		return -1;
	}
	const char *rest = colon + 1;
	if ((plen == 4 && strncmp(spec, "unix", 4) == 0) ||
	    (plen == 5 && strncmp(spec, "local", 5) == 0)) {
		struct sockaddr_un sun;
		if (rest[0] != '/') {
			snprintf(err, err_len,
			         "socket '%s': the unix socket's path must be absolute", spec);
			return -1;
		}
		if (strlen(rest) >= sizeof(sun.sun_path)) {
			snprintf(err, err_len, "socket '%s': path longer than %zu bytes", spec,
			         sizeof(sun.sun_path) - 1);
			return -1;
		}
		return 0;
	}
	bool v6 = plen == 5 && strncmp(spec, "inet6", 5) == 0;
	if (!v6 && !(plen == 4 && strncmp(spec, "inet", 4) == 0)) {
		snprintf(err, err_len,
		         "socket '%s': unknown type '%.*s' (expected unix:/path, inet:PORT@HOST or "
		         "inet6:PORT@HOST)",
		         spec, (int)plen, spec);
		return -1;
	}
	const char *at = strchr(rest, '@');
	if (at == NULL) {
		/* Postfix writes inet:HOST:PORT and inet:[HOST]:PORT. */
		const char *last = strrchr(rest, ':');
		if (last != NULL && scan_port_ok(last + 1, strlen(last + 1))) {
			const char *h = rest;
			size_t hl = (size_t)(last - rest);
			if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
				h++;
				hl -= 2;
			}
			bool h6 = memchr(h, ':', hl) != NULL;
			snprintf(
			    err, err_len,
			    "socket '%s' is in Postfix's notation; sift-milter takes libmilter's: "
			    "%s:%s@%.*s",
			    spec, h6 ? "inet6" : "inet", last + 1, (int)hl, h);
		} else if (scan_port_ok(rest, strlen(rest))) {
			snprintf(
			    err, err_len,
			    "socket '%s' names no host; write %s:%s@127.0.0.1 for loopback, or "
			    "%s:%s@%s to listen on every interface",
			    spec, v6 ? "inet6" : "inet", rest, v6 ? "inet6" : "inet", rest,
			    v6 ? "::" : "0.0.0.0");
		} else {
			snprintf(err, err_len, "socket '%s': expected %s:PORT@HOST", spec,
			         v6 ? "inet6" : "inet");
		}
		return -1;
	}
	if (!scan_port_ok(rest, (size_t)(at - rest))) {
		snprintf(err, err_len, "socket '%s': the port must be a number from 1 to 65535",
		         spec);
		return -1;
	}
	const char *host = at + 1;
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(v6 ? AF_INET6 : AF_INET, host, buf) == 1 || scan_hostname_ok(host))
		return 0;
	if (!v6 && inet_pton(AF_INET6, host, buf) == 1)
		snprintf(err, err_len, "socket '%s': an IPv6 address needs inet6:%.*s@%s", spec,
		         (int)(at - rest), rest, host);
	else
		snprintf(err, err_len, "socket '%s': '%s' is neither an %s address nor a host name",
		         spec, host, v6 ? "IPv6" : "IPv4");
	return -1;
}

/*
 * sift-milter's -f, -p and -d hide the file's foreground, socket and
 * state_dir lines; a bad value there is still an error at its line, as
 * `sift lint` reports it, rather than a surprise on the first start
 * without the flag (a unit file edited, a hand start for debugging).
 */
static void scan_hidden_check(conf_t *c, diag_t *d)
{
	const char *file, *v;
	unsigned line;
	char err[512];
	bool b;

	if ((v = conf_hidden(c, "foreground", &file, &line)) != NULL && conf_parse_bool(v, &b) < 0)
		diag_error(d, file, line, "foreground: expected yes or no, got '%s'", v);
	if ((v = conf_hidden(c, "socket", &file, &line)) != NULL &&
	    scan_socket_check(v, err, sizeof(err)) < 0)
		diag_error(d, file, line, "%s", err);
	if ((v = conf_hidden(c, "state_dir", &file, &line)) != NULL && v[0] == '\0')
		diag_error(d, file, line, "state_dir: empty");
}

static int scan_settings_read(conf_t *c, scan_settings_t *s, diag_t *d)
{
	static const char *const sinks[] = {"syslog", "stderr", NULL};
	size_t before = diag_errors(d);
	const char *level, *pid, *mode;
	long n;
	uint64_t u;
	int v;

	/* the daemon's base directory (conf_set_base_dir()) joins a relative one */
	conf_filename(c, "state_dir", SIFT_STATEDIR, &s->state_dir, d);
	conf_str(c, "socket", "inet:11337@127.0.0.1", &s->socket, d);
	conf_str(c, "socket_mode", "0660", &mode, d);
	conf_str(c, "socket_group", "", &s->socket_group, d);
	conf_str(c, "pid_file", "sift-milter.pid", &pid, d);
	/*
	 * Empty, the state directory was the working directory (/ under
	 * systemd) and the pid file the state directory itself.
	 */
	if (s->state_dir[0] == '\0')
		conf_key_error(c, "state_dir", d, "state_dir: empty");
	if (pid[0] == '\0')
		conf_key_error(c, "pid_file", d, "pid_file: empty");
	conf_str(c, "user", "", &s->user, d);
	conf_str(c, "group", "", &s->group, d);
	conf_bool(c, "foreground", false, &s->foreground, d);
	conf_enum(c, "log", sinks, s->foreground ? 1 : 0, &v, d);
	s->log_sink = sinks[v];
	conf_str(c, "log_facility", "mail", &s->log_facility, d);
	conf_str(c, "log_level", "info", &level, d);
	s->log_level = log_level_parse(level);
	if (s->log_level < 0) {
		conf_key_error(c, "log_level", d,
		               "log_level: expected err, warning, notice, info or debug, got '%s'",
		               level);
		s->log_level = LOG_L_INFO;
	}
	if (log_facility_parse(s->log_facility) < 0)
		conf_key_error(c, "log_facility", d, "log_facility: unknown facility '%s'",
		               s->log_facility);
	conf_size(c, "max_message_size", 10 << 20, 1024, (uint64_t)1 << 31, &s->max_message_bytes,
	          d);
	conf_long(c, "max_header_fields", 1000, 10, 10000000, &n, d);
	s->max_header_fields = (size_t)n;
	conf_size(c, "max_header_size", 256 << 10, 1024, (uint64_t)1 << 31, &s->max_header_bytes,
	          d);
	conf_long(c, "mime_max_depth", MIME_DEFAULT_MAX_DEPTH, 1, 1000, &n, d);
	s->mime.max_depth = (unsigned)n;
	conf_long(c, "mime_max_parts", MIME_DEFAULT_MAX_PARTS, 1, 100000, &n, d);
	s->mime.max_parts = (unsigned)n;
	conf_size(c, "mime_max_text", MIME_DEFAULT_MAX_TEXT_BYTES, 1024, (uint64_t)1 << 31, &u, d);
	s->mime.max_text_bytes = u;
	/* SpamAssassin's names and defaults: rule writers know them */
	conf_size(c, "body_part_scan_size", MIME_DEFAULT_BODY_PART_SCAN, 0, (uint64_t)1 << 31,
	          &s->mime.body_part_scan_bytes, d);
	conf_size(c, "rawbody_part_scan_size", MIME_DEFAULT_RAWBODY_PART_SCAN, 0, (uint64_t)1 << 31,
	          &s->mime.rawbody_part_scan_bytes, d);
	conf_ms(c, "deadline", 2000, 10, 600000, &s->deadline_ms, d);
	conf_ms(c, "milter_timeout", 300000, 1000, 3600000, &s->milter_timeout_ms, d);
	conf_ms(c, "stop_timeout", 30000, 0, 3600000, &s->stop_timeout_ms, d);
	static const char *const log_formats[] = {"kv", "json", NULL};
	conf_enum(c, "log_format", log_formats, 0, &s->log_format, d);
	conf_long(c, "log_top_rules", 10, 0, 100, &n, d);
	s->log_top_rules = (unsigned)n;

	char err[512];
	if (scan_socket_check(s->socket, err, sizeof(err)) < 0)
		conf_key_error(c, "socket", d, "%s", err);
	scan_hidden_check(c, d);
	conf_str(c, "metrics_listen", "", &s->metrics_listen, d);
	struct sockaddr_storage msa;
	if (s->metrics_listen[0] != '\0' &&
	    metrics_listen_parse(s->metrics_listen, &msa, err, sizeof(err)) < 0)
		conf_key_error(c, "metrics_listen", d, "%s", err);
	char *mode_end;
	unsigned long m = strtoul(mode, &mode_end, 8);
	if (mode[0] < '0' || mode[0] > '7' || *mode_end != '\0' || m > 0777)
		conf_key_error(c, "socket_mode", d,
		               "socket_mode: expected an octal mode like 0660, got '%s'", mode);
	s->socket_mode = (unsigned)m & 0777;
	if (s->state_dir[0] != '/') {
		/* Without a base directory (sift): the working directory's, once. */
		char cwd[4096];
		const char *base_dir = getcwd(cwd, sizeof(cwd));
		if (base_dir != NULL) {
			char *abs = xalloc_malloc(strlen(base_dir) + strlen(s->state_dir) + 2);
			sprintf(abs, "%s/%s", base_dir, s->state_dir);
			conf_override(c, "state_dir_abs", abs);
			conf_str(c, "state_dir_abs", NULL, &s->state_dir, d);
			free(abs);
		}
	}
	if (pid[0] == '/') {
		s->pid_file = pid;
	} else {
		char *abs = xalloc_malloc(strlen(s->state_dir) + strlen(pid) + 2);
		sprintf(abs, "%s/%s", s->state_dir, pid);
		conf_override(c, "pid_file_abs", abs);
		conf_str(c, "pid_file_abs", NULL, &s->pid_file, d);
		free(abs);
	}
	return diag_errors(d) > before ? -1 : 0;
}

scan_gen_t *scan_gen_load(conf_t *c, scan_gen_t *prev, const ev_env_t *env_in, diag_t *d)
{
	scan_gen_t *g = xalloc_calloc(1, sizeof(*g));
	atomic_init(&g->refs, 1);
	g->conf = c;
	g->owns_conf = true;
	if (env_in->base_dir != NULL)
		conf_set_base_dir(c, env_in->base_dir);
	size_t before = diag_errors(d);
	scan_settings_read(c, &g->settings, d);
	verdict_policy_read(c, &g->policy, d);
	/*
	 * Every module reads its keys even after an error elsewhere, so one
	 * run of `sift lint` (or one refused reload) reports every mistake,
	 * unknown keys included, not just the first.
	 */
	g->dns = dns_load(c, prev ? prev->dns : NULL, d);
	ev_env_t env = *env_in;
	env.state_dir = g->settings.state_dir;
	env.dns = g->dns;
	for (size_t i = 0; i < SCAN_N_MODULES; i++)
		g->mod[i] = scan_modules[i]->load(c, prev ? prev->mod[i] : NULL, &env, d);
	conf_check_unknown(c, d);
	if (diag_errors(d) > before) {
		scan_gen_unref(g);
		return NULL;
	}
	return g;
}

int scan_gen_start(scan_gen_t *g, const ev_env_t *env_in, diag_t *d)
{
	size_t before = diag_errors(d);
	ev_env_t env = *env_in;
	env.state_dir = g->settings.state_dir;
	env.dns = g->dns;
	for (size_t i = 0; i < SCAN_N_MODULES; i++)
		if (g->mod[i] != NULL && scan_modules[i]->start != NULL &&
		    scan_modules[i]->start(g->mod[i], &env, d) != 0)
			break; /* the rest would only add noise: the generation is dropped */
	return diag_errors(d) > before ? -1 : 0;
}

scan_gen_t *scan_gen_load_pipeline(conf_t *c, diag_t *d)
{
	scan_gen_t *g = xalloc_calloc(1, sizeof(*g));
	atomic_init(&g->refs, 1);
	g->conf = c;
	size_t before = diag_errors(d);
	scan_settings_read(c, &g->settings, d);
	verdict_policy_read(c, &g->policy, d);
	if (diag_errors(d) > before) {
		scan_gen_unref(g);
		return NULL;
	}
	return g;
}

const scan_settings_t *scan_gen_settings(const scan_gen_t *g)
{
	return &g->settings;
}
const verdict_policy_t *scan_gen_policy(const scan_gen_t *g)
{
	return &g->policy;
}
conf_t *scan_gen_conf(const scan_gen_t *g)
{
	return g->conf;
}

void *scan_gen_module(const scan_gen_t *g, const char *name)
{
	for (size_t i = 0; i < SCAN_N_MODULES; i++)
		if (strcmp(scan_modules[i]->name, name) == 0)
			return g->mod[i];
	return NULL;
}

scan_gen_t *scan_gen_ref(scan_gen_t *g)
{
	atomic_fetch_add(&g->refs, 1);
	return g;
}

void scan_gen_unref(scan_gen_t *g)
{
	if (g == NULL || atomic_fetch_sub(&g->refs, 1) != 1)
		return;
	for (size_t i = 0; i < SCAN_N_MODULES; i++)
		if (g->mod[i] != NULL)
			scan_modules[i]->release(g->mod[i]);
	dns_unref(g->dns);
	if (g->owns_conf)
		conf_free(g->conf);
	free(g);
}

/*
 * The process's one piece of shared mutable state: the generation new
 * connections start on. A mutex (not an atomic pointer swap) because the
 * reader must take its reference before the publisher can drop the old
 * generation's last one; the critical sections are a few instructions.
 */
static pthread_mutex_t scan_current_lock = PTHREAD_MUTEX_INITIALIZER;
static scan_gen_t *scan_current;

void scan_gen_publish(scan_gen_t *g)
{
	if (g)
		scan_gen_ref(g);
	pthread_mutex_lock(&scan_current_lock);
	scan_gen_t *old = scan_current;
	scan_current = g;
	pthread_mutex_unlock(&scan_current_lock);
	scan_gen_unref(old);
}

scan_gen_t *scan_gen_acquire(void)
{
	pthread_mutex_lock(&scan_current_lock);
	scan_gen_t *g = scan_current ? scan_gen_ref(scan_current) : NULL;
	pthread_mutex_unlock(&scan_current_lock);
	return g;
}

scan_conn_t *scan_conn_begin(scan_gen_t *g, const ev_conn_info_t *ci)
{
	arena_t *a = arena_new(SCAN_CONN_ARENA_BYTES);
	scan_conn_t *c = arena_zalloc(a, sizeof(*c));
	c->arena = a;
	c->gen = scan_gen_ref(g);
	c->ci.client_ip = ci && ci->client_ip ? arena_strdup(a, ci->client_ip) : NULL;
	c->ci.client_name = ci && ci->client_name ? arena_strdup(a, ci->client_name) : NULL;
	metrics_conn_open();
	for (size_t i = 0; i < SCAN_N_MODULES; i++)
		if (g->mod[i] != NULL && scan_modules[i]->conn_begin != NULL)
			c->mod[i] = scan_modules[i]->conn_begin(g->mod[i], &c->ci);
	return c;
}

scan_gen_t *scan_conn_gen(scan_conn_t *c)
{
	return c->gen;
}

void scan_conn_end(scan_conn_t *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < SCAN_N_MODULES; i++)
		if (c->gen->mod[i] != NULL && scan_modules[i]->conn_end != NULL)
			scan_modules[i]->conn_end(c->gen->mod[i], c->mod[i]);
	metrics_conn_close();
	scan_gen_unref(c->gen);
	arena_free(c->arena);
}

msg_t *scan_msg_new(scan_conn_t *c)
{
	msg_t *m = msg_new(c->gen->settings.max_message_bytes);
	msg_set_header_limits(m, c->gen->settings.max_header_fields,
	                      (size_t)c->gen->settings.max_header_bytes);
	msg_set_client(m, c->ci.client_ip, c->ci.client_name);
	for (size_t i = 0; i < SCAN_N_MODULES; i++)
		if (c->gen->mod[i] != NULL && (scan_modules[i]->flags & EV_F_RAW))
			msg_keep_raw(m);
	return m;
}

void scan_envelope(scan_conn_t *c, msg_t *m)
{
	for (size_t i = 0; i < SCAN_N_MODULES; i++)
		if (c->gen->mod[i] != NULL && scan_modules[i]->envelope != NULL)
			scan_modules[i]->envelope(c->gen->mod[i], c->mod[i], m);
}

bool scan_header(scan_conn_t *c, msg_t *m, const char *name, const char *value)
{
	/*
	 * Whatever foreign_headers says about delivering such a field, it is
	 * never evidence: a sender could otherwise pre-set what rules (or
	 * Bayes) see of our verdict.
	 */
	if (verdict_is_own_header(&c->gen->policy, name)) {
		msg_raw_header(m, name, value); /* still part of what a signature covers */
		return false;
	}
	msg_add_header(m, name, value);
	return true;
}

static void scan_raw_field(void *ud, msg_t *m, const char *name, const char *value)
{
	scan_header(ud, m, name, value);
}

void scan_msg_raw(scan_conn_t *c, msg_t *m, const char *data, size_t len)
{
	msg_parse_raw_fields(m, data, len, scan_raw_field, c);
}

const mime_t *scan_mime(scan_conn_t *c, msg_t *m)
{
	return mime_parse(m, &c->gen->settings.mime);
}

static atomic_uint_fast64_t scan_failed_count;

void scan_metrics_collect(metrics_out_t *o)
{
	scan_gen_t *g = scan_gen_acquire();
	if (g == NULL)
		return;
	for (size_t i = 0; i < SCAN_N_MODULES; i++)
		if (g->mod[i] != NULL && scan_modules[i]->metrics != NULL)
			scan_modules[i]->metrics(g->mod[i], o);
	scan_gen_unref(g);
}

uint64_t scan_failed_total(void)
{
	return (uint64_t)atomic_load(&scan_failed_count);
}

/* Appends name to a "a,b" list in arena a. */
static const char *scan_list_add(arena_t *a, const char *list, const char *name)
{
	return list ? arena_sprintf(a, "%s,%s", list, name) : name;
}

static double scan_ms_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/* Appends " name=1.23ms" (and "(degraded)" or "(error)") to the debug line in buf. */
static void scan_timing_add(char *buf, size_t cap, size_t *len, const char *name, double ms,
                            ev_status_t st)
{
	if (*len >= cap)
		return;
	int n = snprintf(buf + *len, cap - *len, " %s=%.2fms%s", name, ms,
	                 st == EV_ERROR      ? "(error)"
	                 : st == EV_DEGRADED ? "(degraded)"
	                                     : "");
	if (n > 0)
		*len += (size_t)n < cap - *len ? (size_t)n : cap - *len - 1;
}

scan_result_t *scan_score(scan_conn_t *c, msg_t *m, const scan_opts_t *o)
{
	long start = ev_now_ms();
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	arena_t *a = msg_arena(m);
	scan_result_t *r = arena_zalloc(a, sizeof(*r));
	r->mime = scan_mime(c, m);
	r->hits = hits_new(a);
	if (msg_fields_dropped(m) > 0)
		hits_note(r->hits, "scan",
		          "%zu header field(s) past max_header_fields (%zu) or max_header_size "
		          "(%llu bytes) not scored",
		          msg_fields_dropped(m), c->gen->settings.max_header_fields,
		          (unsigned long long)c->gen->settings.max_header_bytes);
	verdict_fields_init(&r->fields, a);
	verdict_action_t floor = VERDICT_ACCEPT;
	ev_score_ctx_t ctx = {
	    .action_floor = &floor,
	    .deadline_ms = start + c->gen->settings.deadline_ms,
	    .explain = o && o->explain,
	    .timing = o && o->timing,
	    .fields = &r->fields,
	};
	/* Two clock reads per source: cheap beside any source, and logged per message. */
	bool timings = log_enabled(LOG_L_DEBUG);
	char tbuf[256];
	size_t tlen = 0;
	tbuf[0] = '\0';
	pthread_once(&scan_order_once, scan_order_compute);
	for (size_t oi = 0; oi < SCAN_N_MODULES; oi++) {
		size_t i = scan_order[oi];
		if (c->gen->mod[i] == NULL || scan_modules[i]->score == NULL) {
			metrics_source_skip(i, scan_modules[i]->name);
			continue;
		}
		ctx.score_so_far = hits_total(r->hits);
		ctx.state = scan_modules[i]->msg_state_bytes
		                ? arena_zalloc(a, scan_modules[i]->msg_state_bytes)
		                : NULL;
		/* Always measured: the metrics' per-source histograms want every message. */
		struct timespec s0, s1;
		clock_gettime(CLOCK_MONOTONIC, &s0);
		ev_status_t st =
		    scan_modules[i]->score(c->gen->mod[i], c->mod[i], m, r->mime, r->hits, &ctx);
		clock_gettime(CLOCK_MONOTONIC, &s1);
		scan_timing_t *tm = &r->timings[r->n_timings++];
		tm->source = scan_modules[i]->name;
		tm->ms = scan_ms_between(&s0, &s1);
		metrics_source(i, scan_modules[i]->name, (int)st,
		               ctx.deadline_ms > 0 &&
		                   (long)s1.tv_sec * 1000 + s1.tv_nsec / 1000000 > ctx.deadline_ms,
		               tm->ms / 1000.0);
		if (timings)
			scan_timing_add(tbuf, sizeof(tbuf), &tlen, tm->source, tm->ms, st);
		if (st == EV_ERROR)
			r->failed = scan_list_add(a, r->failed, scan_modules[i]->name);
		else if (st == EV_DEGRADED)
			r->degraded = scan_list_add(a, r->degraded, scan_modules[i]->name);
	}
	hits_sort(r->hits);
	r->score = hits_total(r->hits);
	r->action = verdict_decide(&c->gen->policy, r->score);
	if (r->action < floor)
		r->action = floor;
	if (r->failed != NULL) {
		atomic_fetch_add(&scan_failed_count, 1);
		/* Judged on part of the evidence: the administrator's policy says what then. */
		if (c->gen->policy.on_error == VERDICT_ERR_TEMPFAIL)
			r->action = VERDICT_TEMPFAIL;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	r->elapsed_ms = scan_ms_between(&t0, &t1);
	metrics_message((int)r->action, r->elapsed_ms / 1000.0);
	if (timings)
		log_msg(LOG_L_DEBUG, "%s: timings%s total=%.2fms", msg_queue_id(m), tbuf,
		        r->elapsed_ms);
	return r;
}

void scan_verdict_done(scan_conn_t *c, msg_t *m, const scan_result_t *r)
{
	/*
	 * A verdict reached without a failed source is not the pipeline's
	 * judgement: nothing may learn from it (Bayes autolearn, reputation).
	 */
	if (r->failed != NULL)
		return;
	for (size_t i = 0; i < SCAN_N_MODULES; i++)
		if (c->gen->mod[i] != NULL && scan_modules[i]->verdict != NULL)
			scan_modules[i]->verdict(c->gen->mod[i], c->mod[i], m, r->mime, r->hits,
			                         r->score, (int)r->action);
}

char *scan_read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno; /* st is undefined after a failed fstat */
		close(fd);
		errno = e;
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		int e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		close(fd);
		errno = e;
		return NULL;
	}
	size_t cap = (size_t)st.st_size + 1, n = 0;
	char *buf = xalloc_malloc(cap);
	for (;;) {
		if (n + 1 >= cap) {
			cap *= 2;
			buf = xalloc_realloc(buf, cap);
		}
		ssize_t r = read(fd, buf + n, cap - n - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			free(buf);
			close(fd);
			errno = e;
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static int scan_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int scan_walk_at(const char *path, unsigned depth, unsigned max_depth, scan_visit_fn visit,
                        scan_fail_fn fail, void *ud)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		fail(path, errno, ud);
		return 0;
	}
	if (!S_ISDIR(st.st_mode))
		return visit(path, ud);
	if (depth >= max_depth) {
		fail(path, ELOOP, ud);
		return 0;
	}
	DIR *dir = opendir(path);
	if (dir == NULL) {
		fail(path, errno, ud);
		return 0;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = xalloc_realloc(names, cap * sizeof(*names));
		}
		size_t l = strlen(path) + strlen(de->d_name) + 2;
		names[n] = xalloc_malloc(l);
		snprintf(names[n], l, "%s/%s", path, de->d_name);
		n++;
	}
	closedir(dir);
	if (n > 1) /* not with names NULL: qsort's array must be valid even for 0 */
		qsort(names, n, sizeof(*names), scan_name_cmp);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		if (rc == 0)
			rc = scan_walk_at(names[i], depth + 1, max_depth, visit, fail, ud);
		free(names[i]);
	}
	free(names);
	return rc;
}

int scan_walk(const char *path, unsigned max_depth, scan_visit_fn visit, scan_fail_fn fail,
              void *ud)
{
	return scan_walk_at(path, 0, max_depth, visit, fail, ud);
}
