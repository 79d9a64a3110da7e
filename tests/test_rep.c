/*
 * Tests of the reputation module: the pure parts (keys, matching, decay,
 * queue, export, the LMDB mirror) and, against real redis-server processes
 * started here on loopback, the link (reconnect, timeouts, circuit breaker,
 * LOADING, READONLY, AUTH), buffered writes, stream resume and two nodes
 * sharing one Redis.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <lmdb.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rep.h"
#include "unit_util.h"

/* ------------------------------------------------------------ helpers */

static long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CPU time of the calling thread, ms. */
static long thread_cpu_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static char *tmpdir(void)
{
	return unit_mkdtemp_dup("sift-test-rep");
}

static void rmtree(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", dir);
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static bool have_redis(void)
{
	return system("command -v redis-server >/dev/null 2>&1") == 0;
}

#define NEED_REDIS()                                                                               \
	do {                                                                                       \
		if (!have_redis())                                                                 \
			cr_skip_test("redis-server is not installed");                             \
	} while (0)

/* A redis-server of our own: loopback, its own directory, no persistence unless asked. */
struct server {
	pid_t pid;
	int port;
	char dir[256];
	char addr[64];
};

static bool server_wait(struct server *s);
static void server_stop(struct server *s);

/* Starts redis-server on s->port; true once that process serves there. */
static bool server_launch(struct server *s, const char *const *extra)
{
	char port[16];
	const char *argv[40];
	int n = 0;

	snprintf(port, sizeof(port), "%d", s->port);
	snprintf(s->addr, sizeof(s->addr), "127.0.0.1:%d", s->port);
	argv[n++] = "redis-server";
	argv[n++] = "--port";
	argv[n++] = port;
	argv[n++] = "--bind";
	argv[n++] = "127.0.0.1";
	argv[n++] = "--dir";
	argv[n++] = s->dir;
	argv[n++] = "--save";
	argv[n++] = "";
	argv[n++] = "--appendonly";
	argv[n++] = "no";
	argv[n++] = "--enable-debug-command";
	argv[n++] = "local";
	for (int i = 0; extra && extra[i] && n < 38; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	s->pid = fork();
	cr_assert(s->pid >= 0);
	if (s->pid == 0) {
		/* Dies with the test process, whatever way that one ends. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp("redis-server", (char *const *)argv);
		_exit(127);
	}
	return server_wait(s);
}

/* Starts (or restarts) the server on its port. */
static void server_start(struct server *s, const char *const *extra)
{
	cr_assert(server_launch(s, extra), "redis-server on port %d did not start", s->port);
}

/* Whether pid holds the socket listening on 127.0.0.1:port (from /proc). */
static bool listens_on(pid_t pid, int port)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	char line[512];
	unsigned long inode = 0;
	while (f && inode == 0 && fgets(line, sizeof(line), f)) {
		unsigned a, p, st;
		unsigned long ino;
		if (sscanf(line, " %*d: %x:%x %*x:%*x %x %*x:%*x %*x:%*x %*x %*u %*u %lu", &a, &p,
		           &st, &ino) == 4 &&
		    a == 0x0100007f && (int)p == port && st == 0x0a)
			inode = ino;
	}
	if (f)
		fclose(f);
	if (inode == 0)
		return false;
	char want[64], dir[64], path[320], got[64];
	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(dir);
	bool found = false;
	for (struct dirent *e; d && !found && (e = readdir(d));) {
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		ssize_t n = readlink(path, got, sizeof(got) - 1);
		found = n > 0 && (got[n] = '\0', strcmp(got, want) == 0);
	}
	if (d)
		closedir(d);
	return found;
}

/*
 * Bounded wait until our server accepts connections (it may still be
 * LOADING). Tests run in parallel, so the port may have been taken since it
 * was picked: the listener there must be our process, or a test would talk
 * to another test's server and lose it when that test stops it.
 */
static bool server_wait(struct server *s)
{
	for (long until = mono_ms() + 5000; mono_ms() < until; sleep_ms(20)) {
		if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
			s->pid = 0; /* exited: could not listen */
			return false;
		}
		if (!listens_on(s->pid, s->port))
			continue;
		struct timeval tv = {0, 200000};
		redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
		bool ok = c && !c->err;
		if (c)
			redisFree(c);
		if (ok)
			return true;
	}
	return false;
}

static void server_new(struct server *s, const char *const *extra)
{
	memset(s, 0, sizeof(*s));
	char *d = tmpdir();
	snprintf(s->dir, sizeof(s->dir), "%s", d);
	free(d);
	/* A port taken between picking and binding: pick another (bounded). */
	for (int tries = 0; tries < 5; tries++) {
		s->port = free_port();
		if (server_launch(s, extra))
			return;
		server_stop(s);
	}
	cr_assert_fail("redis-server did not start on any of 5 ports");
}

static void server_stop(struct server *s)
{
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

static void server_free(struct server *s)
{
	server_stop(s);
	rmtree(s->dir);
}

/* A side connection for checking what is in Redis (not the code under test). */
static redisReply *side(struct server *s, const char *fmt, ...)
{
	struct timeval tv = {2, 0};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
	cr_assert(c && !c->err, "side connection to %d", s->port);
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	cr_assert_not_null(r);
	return r;
}

/*
 * The number after "key" in the reply to INFO section, or 0 when the
 * field is absent (a command never called). The reply's type is checked:
 * anything but text means the side connection reached something other
 * than the test's own server, and reading it as text would crash.
 */
static long long info_field(struct server *s, const char *section, const char *key)
{
	redisReply *r = side(s, "INFO %s", section);
	cr_assert(r->type == REDIS_REPLY_STRING && r->str, "INFO %s on port %d: reply of type %d",
	          section, s->port, r->type);
	const char *p = strstr(r->str, key);
	long long n = p ? atoll(p + strlen(key)) : 0;
	freeReplyObject(r);
	return n;
}

static double key_spam(struct server *s, const char *key)
{
	redisReply *r = side(s, "HGET %s s", key);
	double v = r->type == REDIS_REPLY_STRING ? strtod(r->str, NULL) : 0;
	freeReplyObject(r);
	return v;
}

static rep_link_conf_t link_conf(const char *addr)
{
	rep_link_conf_t lc;
	memset(&lc, 0, sizeof(lc));
	lc.server = addr;
	lc.connect_timeout_ms = 300;
	lc.command_timeout_ms = 300;
	lc.backoff_min_ms = 20;
	lc.backoff_max_ms = 100;
	lc.breaker_failures = 1000;
	return lc;
}

/* The writer's link: on the primary, with the counter script loaded. */
static rep_link_conf_t writer_conf(const char *addr)
{
	rep_link_conf_t lc = link_conf(addr);
	lc.want_primary = true;
	lc.script = rep_incr_script;
	return lc;
}

/* Tries the link until it connects or until_ms passes. */
static bool link_wait_up(rep_link_t *l, long ms)
{
	for (long until = mono_ms() + ms; mono_ms() < until; sleep_ms(20))
		if (rep_link_get(l))
			return true;
	return false;
}

/* ------------------------------------------------------------ publishers' keys */

/* A publisher with a key derived from a fixed seed: no files, same key every run. */
struct pub {
	rep_signer_t s;
	char b64[64]; /* the public key as block_trusted_key wants it */
};

static struct pub publisher(const char *name, uint8_t seed_byte)
{
	struct pub p;
	uint8_t seed[32], pk[32];
	memset(&p, 0, sizeof(p));
	memset(seed, seed_byte, sizeof(seed));
	cr_assert_geq(sodium_init(), 0);
	crypto_sign_seed_keypair(pk, p.s.sk, seed);
	snprintf(p.s.name, sizeof(p.s.name), "%s", name);
	sodium_bin2base64(p.b64, sizeof(p.b64), pk, sizeof(pk), sodium_base64_VARIANT_ORIGINAL);
	return p;
}

/* Trust settings from configuration text. */
static rep_bl_conf_t trust_conf(const char *text)
{
	rep_bl_conf_t bc;
	diag_t *d = diag_new();
	conf_t *c = conf_parse("trust.conf", text, d);
	cr_assert_not_null(c);
	cr_assert_eq(rep_bl_config_read(c, &bc, d), 0, "%s", diag_count(d) ? diag_text(d, 0) : "");
	bc.signing_key = NULL; /* pointed into c */
	conf_free(c);
	diag_free(d);
	return bc;
}

/* The publisher most tests use, "t1", and settings that trust it (and only it). */
static const rep_signer_t *signer(void)
{
	static struct pub p;
	if (p.s.name[0] == '\0')
		p = publisher("t1", 1);
	return &p.s;
}

static const rep_bl_conf_t *trusting(void)
{
	static rep_bl_conf_t bc;
	static bool done;
	if (!done) {
		struct pub p = publisher("t1", 1);
		char text[256];
		snprintf(text, sizeof(text), "block_trusted_key = t1 %s\n", p.b64);
		bc = trust_conf(text);
		done = true;
	}
	return &bc;
}

/* The configuration line of trusting(), for a node's configuration. */
static const char *trust_line(void)
{
	static char line[256];
	struct pub p = publisher("t1", 1);
	snprintf(line, sizeof(line), "block_trusted_key = t1 %s\n", p.b64);
	return line;
}

/*
 * Keeps the server busy for ms in a script from a side connection, without
 * waiting for it: every other client's command waits until it ends.
 */
static const char busy_script[] =
    "local t = redis.call('TIME') local s = t[1] * 1000 + t[2] / 1000 "
    "while true do local u = redis.call('TIME') "
    "if u[1] * 1000 + u[2] / 1000 - s >= tonumber(ARGV[1]) then break end end return 1";

static redisContext *busy_start(struct server *s, long ms)
{
	struct timeval tv = {5, 0};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
	cr_assert(c && !c->err);
	redisAppendCommand(c, "EVAL %s 0 %ld", busy_script, ms);
	int done = 0;
	while (!done)
		cr_assert_eq(redisBufferWrite(c, &done), REDIS_OK);
	return c;
}

static void busy_end(redisContext *c)
{
	void *r = NULL;
	cr_assert_eq(redisGetReply(c, &r), REDIS_OK);
	freeReplyObject(r);
	redisFree(c);
}

/* ------------------------------------------------------------ keys and matching */

/* What the daemon does after load: start the module (its stores, threads). */
static void *ev_started(const evidence_ops_t *ops, void *shared, const ev_env_t *env, diag_t *d)
{
	if (shared != NULL && ops->start != NULL && ops->start(shared, env, d) != 0) {
		ops->release(shared);
		return NULL;
	}
	return shared;
}

/* A block or allow entry's score is a hit's score: bounded like every other (hits.h). */
Test(rep_config, scores_beyond_the_shared_bound_are_errors_at_their_line)
{
	static const char *const bad[] = {
	    "\nrep_block_score = 5000\n",
	    "\nrep_allow_score = -1001\n",
	    "\nrep_max_score = 1e308\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		diag_t *d = diag_new();
		conf_t *c = conf_parse("r.conf", bad[i], d);
		cr_assert_not_null(c);
		rep_config_t rc;
		rep_config_read(c, "/tmp", &rc, d);
		cr_assert_gt(diag_errors(d), 0, "accepted: %s", bad[i]);
		cr_assert(strstr(diag_text(d, 0), "r.conf:2:") != NULL, "%s", diag_text(d, 0));
		conf_free(c);
		diag_free(d);
	}
	diag_t *d = diag_new();
	conf_t *c = conf_parse("r.conf", "rep_block_score = 1000\nrep_allow_score = -1000\n", d);
	rep_config_t rc;
	rep_config_read(c, "/tmp", &rc, d);
	cr_assert_eq(diag_errors(d), 0, "%s", diag_count(d) ? diag_text(d, 0) : "");
	cr_assert_float_eq(rc.block_score, 1000, 1e-9);
	conf_free(c);
	diag_free(d);
}

static rep_config_t config_of(const char *text, diag_t *d)
{
	conf_t *c = conf_parse("r.conf", text, d);
	cr_assert_not_null(c);
	rep_config_t rc;
	cr_assert_eq(rep_config_read(c, "/tmp", &rc, d), 0, "%s",
	             diag_count(d) ? diag_text(d, 0) : "");
	conf_free(c);
	return rc;
}

/* A default that cannot connect over a 600 ms round trip is no default (issue 15). */
Test(rep_config, timeouts_are_separate_and_the_old_key_still_works)
{
	diag_t *d = diag_new();
	rep_config_t rc = config_of("redis_server = 127.0.0.1:1\n", d);
	cr_assert_geq(rc.connect_timeout_ms, 4 * 600, "handshake of several 600 ms round trips");
	cr_assert_geq(rc.command_timeout_ms, rc.connect_timeout_ms);
	cr_assert_leq(rc.read_wait_ms, 50, "a message hardly waits");
	cr_assert_eq(diag_warnings(d), 0);
	diag_free(d);

	d = diag_new();
	rc = config_of("redis_server = 127.0.0.1:1\n\nredis_timeout = 2s\n"
	               "redis_command_timeout = 40s\n",
	               d);
	cr_assert_eq(rc.connect_timeout_ms, 2000, "the old key sets what is not set");
	cr_assert_eq(rc.command_timeout_ms, 40000, "and leaves what is");
	cr_assert_eq(diag_warnings(d), 1);
	cr_assert(strstr(diag_text(d, 0), "r.conf:3:") != NULL, "%s", diag_text(d, 0));
	cr_assert(strstr(diag_text(d, 0), "redis_connect_timeout") != NULL, "%s", diag_text(d, 0));
	diag_free(d);
}

Test(rep_key, schema_uses_prefix_kind_and_hash_tag)
{
	char k[REP_KEY_MAX_BYTES];
	cr_assert_gt(rep_key(k, sizeof(k), "sift:", REP_ENT_IP, "192.0.2.1"), 0);
	cr_assert_str_eq(k, "sift:r:{ip:192.0.2.1}");
	rep_key(k, sizeof(k), "x:", REP_ENT_NET, "192.0.2.0/24");
	cr_assert_str_eq(k, "x:r:{net:192.0.2.0/24}");
	rep_key(k, sizeof(k), "sift:", REP_ENT_MAILFROM, "example.org");
	cr_assert_str_eq(k, "sift:r:{mf:example.org}");
	rep_key(k, sizeof(k), "sift:", REP_ENT_FROM, "example.org");
	cr_assert_str_eq(k, "sift:r:{fd:example.org}");
	rep_key(k, sizeof(k), "sift:", REP_ENT_URL, "example.net");
	cr_assert_str_eq(k, "sift:r:{ud:example.net}");
	cr_assert_eq(rep_key(k, 10, "sift:", REP_ENT_URL, "example.net"), -1);
}

Test(rep_key, networks_are_slash24_and_slash64)
{
	rep_addr_t a;
	char net[64];
	cr_assert_eq(rep_addr_parse("192.0.2.77", &a), 0);
	cr_assert_eq(rep_addr_net(&a, net, sizeof(net)), 0);
	cr_assert_str_eq(net, "192.0.2.0/24");
	cr_assert_eq(rep_addr_parse("IPv6:2001:db8:1:2:3:4:5:6", &a), 0);
	rep_addr_net(&a, net, sizeof(net));
	cr_assert_str_eq(net, "2001:db8:1:2::/64");
	cr_assert_eq(rep_addr_parse("[10.1.2.3]", &a), 0);
	cr_assert_eq(a.family, 4);
	cr_assert_eq(rep_addr_parse("example.com", &a), -1);
	cr_assert_eq(rep_addr_parse("", &a), -1);
}

Test(rep_key, targets_parse_and_normalise)
{
	rep_target_t t;
	char err[128], txt[300];
	cr_assert_eq(rep_target_parse("192.0.2.99/24", &t, err, sizeof(err)), 0);
	cr_assert_eq(t.kind, REP_T_CIDR);
	rep_target_format(&t, txt, sizeof(txt));
	cr_assert_str_eq(txt, "192.0.2.0/24", "host bits are cleared");
	cr_assert_eq(rep_target_parse("192.0.2.1/32", &t, err, sizeof(err)), 0);
	cr_assert_eq(t.kind, REP_T_IP);
	cr_assert_eq(rep_target_parse("2001:DB8::1", &t, err, sizeof(err)), 0);
	rep_target_format(&t, txt, sizeof(txt));
	cr_assert_str_eq(txt, "2001:db8::1");
	cr_assert_eq(rep_target_parse("Spam.Example.COM.", &t, err, sizeof(err)), 0);
	cr_assert_eq(t.kind, REP_T_DOMAIN);
	cr_assert_str_eq(t.domain, "spam.example.com");
	cr_assert_eq(rep_target_parse("1.2.3.4/33", &t, err, sizeof(err)), -1);
	cr_assert_eq(rep_target_parse("localhost", &t, err, sizeof(err)), -1);
	cr_assert_eq(rep_target_parse("bad!domain.com", &t, err, sizeof(err)), -1);
	cr_assert_eq(rep_target_parse("a..b.com", &t, err, sizeof(err)), -1);
}

/*
 * A target's canonical text is the stream's and the mirror's name for the
 * entry, read back with rep_target_parse(): it must name the same kind of
 * entry. "192.0.2.1." was a domain whose text, "192.0.2.1", read back as an
 * address (found by tests/fuzz/fuzz_rep.c). No top-level domain is all
 * digits, so such names are refused, and "2001:db8::1." is no domain either.
 */
Test(rep_key, a_target_reads_back_as_the_same_kind)
{
	rep_target_t t;
	char err[128];
	cr_assert_eq(rep_target_parse("192.0.2.1.", &t, err, sizeof(err)), -1);
	cr_assert(strstr(err, "192.0.2.1.") != NULL, "%s", err);
	cr_assert_eq(rep_target_parse("12.0.2.0...", &t, err, sizeof(err)), -1);
	cr_assert_eq(rep_target_parse("host.123", &t, err, sizeof(err)), -1);
	cr_assert_eq(rep_target_parse("1.2.3.4.5", &t, err, sizeof(err)), -1);
	/* digits elsewhere are fine: a label may be numeric, the top one not */
	cr_assert_eq(rep_target_parse("123.example.com", &t, err, sizeof(err)), 0);
	cr_assert_eq(t.kind, REP_T_DOMAIN);
	cr_assert_eq(rep_target_parse("mail.1und1.de", &t, err, sizeof(err)), 0);
	cr_assert_eq(rep_target_parse("192.0.2.1", &t, err, sizeof(err)), 0);
	cr_assert_eq(t.kind, REP_T_IP);
}

Test(rep_key, cidr_and_domain_matching)
{
	rep_target_t net;
	rep_addr_t a;
	char err[64];
	rep_target_parse("10.20.0.0/14", &net, err, sizeof(err));
	rep_addr_parse("10.23.255.1", &a);
	cr_assert(rep_cidr_contains(&net, &a));
	rep_addr_parse("10.24.0.1", &a);
	cr_assert_not(rep_cidr_contains(&net, &a));
	rep_addr_parse("2001:db8::1", &a);
	cr_assert_not(rep_cidr_contains(&net, &a), "families never match");
	rep_target_parse("2001:db8::/32", &net, err, sizeof(err));
	cr_assert(rep_cidr_contains(&net, &a));

	cr_assert(rep_domain_covers("example.com", "example.com"));
	cr_assert(rep_domain_covers("example.com", "a.b.EXAMPLE.com"));
	cr_assert_not(rep_domain_covers("example.com", "badexample.com"), "label boundary");
	cr_assert_not(rep_domain_covers("a.example.com", "example.com"));

	char d[REP_DOMAIN_MAX_BYTES];
	cr_assert_eq(rep_addr_domain("Joe <joe@Mail.Example.ORG>", d, sizeof(d)), 0);
	cr_assert_str_eq(d, "mail.example.org");
	cr_assert_eq(rep_addr_domain("", d, sizeof(d)), -1);
}

/* ------------------------------------------------------------ decay and scoring */

Test(rep_decay, half_life_halves_counts)
{
	cr_assert_float_eq(rep_decay_factor(3600, 3600), 0.5, 1e-12);
	cr_assert_float_eq(rep_decay_factor(7200, 3600), 0.25, 1e-12);
	cr_assert_float_eq(rep_decay_factor(-5, 3600), 1.0, 1e-12);
	rep_counts_t c = {.spam = 8, .ham = 4, .t = 1000};
	rep_counts_decay(&c, 1000 + 2 * 86400, 86400);
	cr_assert_float_eq(c.spam, 2.0, 1e-9);
	cr_assert_float_eq(c.ham, 1.0, 1e-9);
	cr_assert_eq(c.t, 1000 + 2 * 86400);
	rep_counts_decay(&c, 10, 86400);
	cr_assert_float_eq(c.spam, 2.0, 1e-9, "a clock behind never inflates");
}

Test(rep_decay, replayed_old_observation_counts_decayed)
{
	rep_counts_t c = {.spam = 1, .ham = 0, .t = 10000};
	rep_counts_add(&c, 10000 - 3600, 1, 0, 3600);
	cr_assert_float_eq(c.spam, 1.5, 1e-9);
	cr_assert_eq(c.t, 10000);
	rep_counts_add(&c, 10000 + 3600, 0, 1, 3600);
	cr_assert_float_eq(c.spam, 0.75, 1e-9);
	cr_assert_float_eq(c.ham, 1.0, 1e-9);
}

Test(rep_decay, score_needs_enough_observations)
{
	cr_assert_float_eq(rep_score(9, 0, 10, 3), 0.0, 1e-12, "below the minimum");
	cr_assert_float_eq(rep_score(0, 0, 10, 3), 0.0, 1e-12);
	cr_assert_float_eq(rep_score(6, 6, 10, 3), 0.0, 1e-12, "mixed evidence");
	double s10 = rep_score(10, 0, 10, 3), s100 = rep_score(100, 0, 10, 3);
	cr_assert_float_eq(s10, 1.5, 1e-9);
	cr_assert_gt(s100, s10, "more observations, more weight");
	cr_assert_lt(s100, 3.0, "never beyond the maximum");
	cr_assert_lt(rep_score(0, 50, 10, 3), -2.0, "ham scores negative");
	cr_assert_lt(rep_score(18, 2, 10, 3), rep_score(20, 0, 10, 3));
}

Test(rep_decay, durations)
{
	int64_t s;
	cr_assert_eq(rep_parse_duration("90", &s), 0);
	cr_assert_eq(s, 90);
	rep_parse_duration("15m", &s);
	cr_assert_eq(s, 900);
	rep_parse_duration("12h", &s);
	cr_assert_eq(s, 43200);
	rep_parse_duration("7d", &s);
	cr_assert_eq(s, 604800);
	rep_parse_duration("never", &s);
	cr_assert_eq(s, 0);
	cr_assert_eq(rep_parse_duration("7x", &s), -1);
	cr_assert_eq(rep_parse_duration("-1h", &s), -1);
	cr_assert_eq(rep_parse_duration("h", &s), -1);
}

Test(rep_decay, stream_ids_compare_numerically)
{
	cr_assert_lt(rep_id_cmp("0-0", "1-0"), 0);
	cr_assert_lt(rep_id_cmp("999-5", "1000-0"), 0, "not as strings");
	cr_assert_lt(rep_id_cmp("1000-2", "1000-10"), 0);
	cr_assert_eq(rep_id_cmp("17-3", "17-3"), 0);
}

Test(rep_decay, entry_encoding_round_trips)
{
	rep_entry_t e = {0}, back;
	char buf[600], err[64];
	rep_target_parse("198.51.100.0/24", &e.target, err, sizeof(err));
	e.allow = false;
	e.added = 1700000000;
	e.expire = 1700086400;
	snprintf(e.by, sizeof(e.by), "mx1");
	snprintf(e.reason, sizeof(e.reason), "snowshoe | campaign 7");
	cr_assert_gt(rep_entry_encode(&e, buf, sizeof(buf)), 0);
	cr_assert_eq(rep_entry_decode("198.51.100.0/24", buf, &back), 0);
	cr_assert_eq(back.target.kind, REP_T_CIDR);
	cr_assert_eq(back.target.plen, 24);
	cr_assert_eq(back.expire, e.expire);
	cr_assert_eq(back.added, e.added);
	cr_assert_str_eq(back.by, "mx1");
	cr_assert_str_eq(back.reason, "snowshoe | campaign 7");
	cr_assert_not(back.allow);
	cr_assert(rep_entry_expired(&back, 1700086400));
	cr_assert_not(rep_entry_expired(&back, 1700086399));
}

/* ------------------------------------------------------------ queue */

static rep_witem_t item(const char *key)
{
	rep_witem_t it;
	memset(&it, 0, sizeof(it));
	snprintf(it.key, sizeof(it.key), "%s", key);
	it.spam = 1;
	return it;
}

/* Takes the batch due now (window 0) and confirms it; returns its size. */
static size_t take_all(rep_wqueue_t *q, rep_wentry_t *out, size_t max)
{
	uint64_t seq;
	int64_t at;
	size_t n = rep_wqueue_batch(q, 0, true, out, max, &seq, &at);
	rep_wqueue_confirm(q, seq);
	return n;
}

Test(rep_queue, bounded_drops_oldest_entity_and_counts_its_updates)
{
	rep_wqueue_t *q = rep_wqueue_new(3, 86400);
	rep_wentry_t out[8];
	char k[16];
	for (int i = 0; i < 3; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		rep_witem_t it = item(k);
		cr_assert(rep_wqueue_push(q, &it));
		if (i == 0)
			cr_assert(rep_wqueue_push(q, &it), "a second update of k0 merges");
	}
	cr_assert_eq(rep_wqueue_len(q), 3);
	rep_witem_t it = item("k3");
	cr_assert_not(rep_wqueue_push(q, &it), "full: the oldest entity goes");
	cr_assert_eq(rep_wqueue_len(q), 3);
	cr_assert_eq(rep_wqueue_dropped(q), 2, "with both its updates");
	cr_assert_eq(take_all(q, out, 8), 3);
	cr_assert_str_eq(out[0].key, "k1");
	cr_assert_str_eq(out[2].key, "k3");
	cr_assert_eq(rep_wqueue_len(q), 0);
	rep_wqueue_free(q);
}

Test(rep_queue, aggregates_an_entity_into_one_increment)
{
	rep_wqueue_t *q = rep_wqueue_new(100, 86400);
	rep_wentry_t out[8];
	int64_t now = 1700000000;
	for (int i = 0; i < 50; i++) {
		rep_witem_t it = item(i % 10 == 9 ? "other" : "net");
		it.t = now;
		it.spam = i % 5 != 0;
		it.ham = i % 5 == 0;
		rep_wqueue_push(q, &it);
	}
	cr_assert_eq(rep_wqueue_len(q), 2, "two entities, whatever the number of verdicts");
	rep_counts_t p;
	cr_assert(rep_wqueue_pending(q, "net", &p));
	cr_assert_float_eq(p.spam + p.ham, 45.0, 1e-9);
	cr_assert_eq(take_all(q, out, 8), 2);
	cr_assert_str_eq(out[0].key, "net");
	cr_assert_eq(out[0].pushes, 45);
	cr_assert_float_eq(out[0].c.ham, 10.0, 1e-9, "i = 0, 5, ... 40 but not 9, 19...");
	cr_assert_float_eq(out[0].c.spam, 35.0, 1e-9);
	cr_assert_eq(out[1].pushes, 5);
	rep_wqueue_free(q);
}

Test(rep_queue, a_batch_is_frozen_until_confirmed)
{
	rep_wqueue_t *q = rep_wqueue_new(100, 86400);
	rep_wentry_t out[8], again[8];
	uint64_t seq, seq2;
	int64_t at, at2;
	rep_witem_t it = item("a");
	rep_wqueue_push(q, &it);
	rep_wqueue_push(q, &it);
	cr_assert_eq(rep_wqueue_batch(q, 60000, false, out, 8, &seq, &at), 0,
	             "not due before the window");
	cr_assert_gt(rep_wqueue_due_ms(q, 60000), 50000);
	cr_assert_eq(rep_wqueue_batch(q, 0, false, out, 8, &seq, &at), 1);
	cr_assert_float_eq(out[0].c.spam, 2.0, 1e-9);
	/* Pushed while in flight: a new entry, not part of the frozen batch. */
	rep_wqueue_push(q, &it);
	cr_assert_eq(rep_wqueue_len(q), 2);
	cr_assert_eq(rep_wqueue_batch(q, 0, true, again, 8, &seq2, &at2), 1, "the same batch");
	cr_assert_eq(seq2, seq);
	cr_assert_eq(at2, at);
	cr_assert_float_eq(again[0].c.spam, 2.0, 1e-9);
	rep_counts_t p;
	rep_wqueue_pending(q, "a", &p);
	cr_assert_float_eq(p.spam, 3.0, 1e-9, "pending counts both");
	rep_wqueue_confirm(q, seq + 1);
	cr_assert_eq(rep_wqueue_len(q), 2, "another id confirms nothing");
	rep_wqueue_confirm(q, seq);
	cr_assert_eq(rep_wqueue_len(q), 1);
	cr_assert_eq(rep_wqueue_batch(q, 0, false, again, 8, &seq2, &at2), 1);
	cr_assert_neq(seq2, seq, "the next batch has a new id");
	cr_assert_float_eq(again[0].c.spam, 1.0, 1e-9);
	rep_wqueue_free(q);
}

Test(rep_queue, a_filling_queue_is_written_before_the_window_ends)
{
	rep_wqueue_t *q = rep_wqueue_new(8, 86400);
	rep_wentry_t out[8];
	uint64_t seq;
	int64_t at;
	char k[16];
	for (int i = 0; i < 5; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		rep_witem_t it = item(k);
		rep_wqueue_push(q, &it);
	}
	cr_assert_eq(rep_wqueue_batch(q, 60000, false, out, 8, &seq, &at), 0);
	rep_witem_t it = item("k5");
	rep_wqueue_push(q, &it);
	cr_assert_eq(rep_wqueue_due_ms(q, 60000), 0, "three quarters full: due now");
	cr_assert_eq(rep_wqueue_batch(q, 60000, false, out, 8, &seq, &at), 6);
	rep_wqueue_free(q);
}

Test(rep_queue, dump_keeps_every_update_for_the_next_start)
{
	rep_wqueue_t *q = rep_wqueue_new(100, 86400);
	rep_witem_t it = item("big");
	it.t = 1700000000;
	for (int i = 0; i < 300; i++)
		rep_wqueue_push(q, &it);
	it = item("h");
	it.spam = 0;
	it.ham = 1;
	rep_wqueue_push(q, &it);
	rep_witem_t *out;
	size_t n = rep_wqueue_dump(q, &out);
	cr_assert_eq(n, 3, "300 spam split at 255, one ham");
	cr_assert_eq(out[0].spam + out[1].spam, 300);
	cr_assert_eq(out[0].t, 1700000000);
	cr_assert_str_eq(out[2].key, "h");
	cr_assert_eq(out[2].ham, 1);
	free(out);
	rep_wqueue_free(q);
}

Test(rep_queue, wait_times_out_and_wakes)
{
	rep_wqueue_t *q = rep_wqueue_new(2, 86400);
	long t0 = mono_ms();
	cr_assert_not(rep_wqueue_wait(q, 100));
	long dt = mono_ms() - t0;
	cr_assert(dt >= 90 && dt < 1000, "waited %ld ms", dt);
	rep_witem_t it = item("x");
	rep_wqueue_push(q, &it);
	t0 = mono_ms();
	cr_assert(rep_wqueue_wait(q, 50));
	rep_wqueue_wake(q);
	cr_assert(rep_wqueue_wait(q, 5000));
	cr_assert_lt(mono_ms() - t0, 1000, "woken");
	rep_wqueue_free(q);
}

/* ------------------------------------------------------------ export */

static rep_entry_t entry(const char *target, bool allow, int64_t expire, const char *reason)
{
	rep_entry_t e;
	char err[64];
	memset(&e, 0, sizeof(e));
	cr_assert_eq(rep_target_parse(target, &e.target, err, sizeof(err)), 0, "%s", err);
	e.allow = allow;
	e.expire = expire;
	snprintf(e.reason, sizeof(e.reason), "%s", reason);
	return e;
}

Test(rep_export, rbldnsd_combined_dataset)
{
	rep_entry_t e[6];
	e[0] = entry("192.0.2.0/24", false, 0, "spam run");
	e[1] = entry("192.0.2.7", true, 0, "our partner");
	e[2] = entry("2001:db8::/48", false, 0, "v6 spam $x");
	e[3] = entry("bad.example", false, 0, "");
	e[4] = entry("198.51.100.1", false, 100, "expired");
	e[5] = entry("good.example", true, 0, "");
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);
	cr_assert_eq(rep_export_rbldnsd(fp, e, 6, 1000), 0);
	fclose(fp);
	const char *want = "# sift block list, rbldnsd combined dataset (6 entries)\n"
	                   "$DATASET ip4set @\n"
	                   "192.0.2.0/24 :127.0.0.2:spam run\n"
	                   "!192.0.2.7\n"
	                   "$DATASET ip6trie @\n"
	                   "2001:db8::/48 :127.0.0.2:v6 spam  x\n"
	                   "$DATASET dnset @\n"
	                   "bad.example :127.0.0.2:listed\n"
	                   "*.bad.example :127.0.0.2:listed\n"
	                   "!good.example\n"
	                   "!*.good.example\n";
	cr_assert_str_eq(buf, want);
	free(buf);
}

/* ------------------------------------------------------------ mirror */

static rep_op_t op_add(const char *id, const char *target, bool allow, int64_t expire)
{
	static uint64_t stamp;
	rep_op_t op;
	memset(&op, 0, sizeof(op));
	snprintf(op.id, sizeof(op.id), "%s", id);
	op.e = entry(target, allow, expire, "test");
	/* Later operations are newer, as the publisher's clock makes them. */
	if (stamp == 0)
		stamp = (uint64_t)time(NULL) * 1000000u;
	op.e.stamp = ++stamp;
	op.e.added = (int64_t)(op.e.stamp / 1000000u);
	snprintf(op.e.by, sizeof(op.e.by), "t1");
	return op;
}

static rep_op_t op_del(const char *id, const char *target)
{
	rep_op_t op = op_add(id, target, false, 0);
	op.del = true;
	return op;
}

/* ------------------------------------------------------------ signed operations */

static rep_op_t signed_op(const char *target, bool del, const rep_signer_t *s)
{
	rep_op_t op = op_add("", target, false, 1900000000);
	op.del = del;
	snprintf(op.e.reason, sizeof(op.e.reason), "snowshoe | wave 3");
	snprintf(op.e.by, sizeof(op.e.by), "%s", s->name);
	return op;
}

Test(rep_sign, round_trip_carries_everything_compactly)
{
	char buf[REP_SOP_MAX_BYTES];
	rep_op_t op = signed_op("198.51.100.0/24", false, signer()), back;
	op.e.allow = true;
	int n = rep_sop_encode(&op, signer(), buf, sizeof(buf));
	cr_assert_gt(n, REP_SIG_BYTES);
	/* One entry on the wire: the signature and a short line, nothing per attribute. */
	cr_assert_lt(n, REP_SIG_BYTES + 80, "%d bytes", n);
	cr_assert_eq(rep_sop_decode(buf, (size_t)n, trusting(), &back), REP_SOP_OK);
	char tgt[64];
	rep_target_format(&back.e.target, tgt, sizeof(tgt));
	cr_assert_str_eq(tgt, "198.51.100.0/24");
	cr_assert_not(back.del);
	cr_assert(back.e.allow);
	cr_assert_eq(back.e.expire, 1900000000);
	cr_assert_eq(back.e.stamp, op.e.stamp);
	cr_assert_eq(back.e.added, (int64_t)(op.e.stamp / 1000000u));
	cr_assert_str_eq(back.e.by, "t1");
	cr_assert_str_eq(back.e.reason, "snowshoe | wave 3");

	rep_op_t del = signed_op("spam.example", true, signer());
	n = rep_sop_encode(&del, signer(), buf, sizeof(buf));
	cr_assert_eq(rep_sop_decode(buf, (size_t)n, trusting(), &back), REP_SOP_OK);
	cr_assert(back.del);
	cr_assert_str_eq(back.e.target.domain, "spam.example");
	/* The encoder signs only as the key's own publisher. */
	op.e.by[0] = 'x';
	cr_assert_lt(rep_sop_encode(&op, signer(), buf, sizeof(buf)), 0);
}

Test(rep_sign, tampered_wrong_key_unknown_key_and_unsigned_are_rejected)
{
	char buf[REP_SOP_MAX_BYTES], t[REP_SOP_MAX_BYTES];
	rep_op_t op = signed_op("203.0.113.0/24", false, signer()), back;
	int n = rep_sop_encode(&op, signer(), buf, sizeof(buf));
	cr_assert_eq(rep_sop_decode(buf, (size_t)n, trusting(), &back), REP_SOP_OK);

	memcpy(t, buf, (size_t)n);
	t[5] ^= 1; /* a bit of the signature */
	cr_assert_eq(rep_sop_decode(t, (size_t)n, trusting(), &back), REP_SOP_BAD_SIG);
	memcpy(t, buf, (size_t)n);
	t[n] = '\0'; /* the payload is text */
	char *p = strstr(t + REP_SIG_BYTES, "203.0.113.0/24");
	cr_assert_not_null(p);
	p[2] = '4'; /* 204.0.113.0/24: another target under the same signature */
	cr_assert_eq(rep_sop_decode(t, (size_t)n, trusting(), &back), REP_SOP_BAD_SIG);
	memcpy(t, buf, (size_t)n);
	p = strstr(t + REP_SIG_BYTES, "|b|");
	p[1] = 'a'; /* block turned into allow */
	cr_assert_eq(rep_sop_decode(t, (size_t)n, trusting(), &back), REP_SOP_BAD_SIG);

	/* Signed by another key under the trusted name. */
	struct pub impostor = publisher("t1", 7);
	n = rep_sop_encode(&op, &impostor.s, buf, sizeof(buf));
	cr_assert_eq(rep_sop_decode(buf, (size_t)n, trusting(), &back), REP_SOP_BAD_SIG);
	/* Signed by a key nobody trusts. */
	struct pub rogue = publisher("rogue", 2);
	snprintf(op.e.by, sizeof(op.e.by), "rogue");
	n = rep_sop_encode(&op, &rogue.s, buf, sizeof(buf));
	cr_assert_eq(rep_sop_decode(buf, (size_t)n, trusting(), &back), REP_SOP_UNKNOWN_KEY);
	rep_bl_conf_t none = trust_conf("");
	snprintf(op.e.by, sizeof(op.e.by), "t1");
	n = rep_sop_encode(&op, signer(), buf, sizeof(buf));
	cr_assert_eq(rep_sop_decode(buf, (size_t)n, &none, &back), REP_SOP_UNKNOWN_KEY,
	             "no trusted key: nothing is accepted");
	/* Unsigned (the earlier format), truncated, and garbage. */
	const char *old = "block|0|1700000000|mx1|all of it";
	cr_assert_eq(rep_sop_decode(old, strlen(old), trusting(), &back), REP_SOP_UNSIGNED);
	n = rep_sop_encode(&op, signer(), buf, sizeof(buf));
	cr_assert_eq(rep_sop_decode(buf, REP_SIG_BYTES - 1, trusting(), &back), REP_SOP_MALFORMED);
	memset(t, 'x', sizeof(t));
	cr_assert_eq(rep_sop_decode(t, sizeof(t), trusting(), &back), REP_SOP_MALFORMED);
	cr_assert_eq(rep_sop_decode(t, 200, trusting(), &back), REP_SOP_MALFORMED);
}

Test(rep_sign, mangled_entries_are_refused_never_accepted)
{
	char buf[REP_SOP_MAX_BYTES], t[REP_SOP_MAX_BYTES];
	rep_op_t op = signed_op("198.51.100.0/24", false, signer()), back;
	int n = rep_sop_encode(&op, signer(), buf, sizeof(buf));
	unsigned seed = 12345;
	for (int i = 0; i < 20000; i++) {
		size_t len = (size_t)n;
		memcpy(t, buf, len);
		int flips = 1 + (int)(rand_r(&seed) % 4);
		for (int f = 0; f < flips; f++)
			t[rand_r(&seed) % len] = (char)(rand_r(&seed) & 0xff);
		if (rand_r(&seed) % 4 == 0)
			len = rand_r(&seed) % (len + 1);
		rep_sop_status_t st = rep_sop_decode(t, len, trusting(), &back);
		if (len == (size_t)n && memcmp(t, buf, len) == 0)
			cr_assert_eq(st, REP_SOP_OK);
		else
			cr_assert_neq(st, REP_SOP_OK, "a mangled entry was accepted (round %d)", i);
	}
}

Test(rep_sign, broad_entries_are_refused_unless_the_key_is_broad)
{
	static const char *const broad[] = {"0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/15",
	                                    "::/0",      "2001::/16",  "2001:db8::/31",
	                                    "co.uk",     "github.io",  "com.au"};
	static const char *const fine[] = {"10.0.0.0/16",   "192.0.2.1",    "2001:db8::/32",
	                                   "example.co.uk", "spam.example", "user.github.io"};
	struct pub p = publisher("t1", 1);
	char text[300], buf[REP_SOP_MAX_BYTES];
	snprintf(text, sizeof(text), "block_trusted_key = t1 %s broad\n", p.b64);
	rep_bl_conf_t broadkey = trust_conf(text);
	rep_op_t back;

	for (size_t i = 0; i < sizeof(broad) / sizeof(broad[0]); i++) {
		rep_op_t op = signed_op(broad[i], false, signer());
		int n = rep_sop_encode(&op, signer(), buf, sizeof(buf));
		cr_assert_eq(rep_sop_decode(buf, (size_t)n, trusting(), &back), REP_SOP_TOO_BROAD,
		             "%s", broad[i]);
		cr_assert_eq(rep_sop_decode(buf, (size_t)n, &broadkey, &back), REP_SOP_OK, "%s",
		             broad[i]);
		/* Deleting one only narrows what is listed. */
		op.del = true;
		n = rep_sop_encode(&op, signer(), buf, sizeof(buf));
		cr_assert_eq(rep_sop_decode(buf, (size_t)n, trusting(), &back), REP_SOP_OK);
	}
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
		rep_op_t op = signed_op(fine[i], false, signer());
		int n = rep_sop_encode(&op, signer(), buf, sizeof(buf));
		cr_assert_eq(rep_sop_decode(buf, (size_t)n, trusting(), &back), REP_SOP_OK, "%s",
		             fine[i]);
	}
	/* The limits are settings. */
	snprintf(text, sizeof(text), "block_trusted_key = t1 %s\nblock_min_prefix4 = 8\n", p.b64);
	rep_bl_conf_t loose = trust_conf(text);
	rep_op_t op = signed_op("10.0.0.0/8", false, signer());
	int n = rep_sop_encode(&op, signer(), buf, sizeof(buf));
	cr_assert_eq(rep_sop_decode(buf, (size_t)n, &loose, &back), REP_SOP_OK);
}

Test(rep_sign, keys_and_settings_errors_name_their_line)
{
	char *dir = tmpdir(), path[512], line[256], err[512], text[1024];
	rep_signer_t s;
	struct stat st;

	snprintf(path, sizeof(path), "%s/pub.key", dir);
	cr_assert_eq(rep_sign_keygen(path, "mx-1.site", line, sizeof(line), err, sizeof(err)), 0,
	             "%s", err);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(strncmp(line, "block_trusted_key = mx-1.site ", 30), 0, "%s", line);
	cr_assert_lt(rep_sign_keygen(path, "other", line, sizeof(line), err, sizeof(err)), 0,
	             "an existing key is never overwritten");
	cr_assert_lt(rep_sign_keygen(path, "bad name", line, sizeof(line), err, sizeof(err)), 0);
	cr_assert_eq(rep_signer_load(path, &s, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(s.name, "mx-1.site");

	/* The key keygen printed verifies what the file signs. */
	char conftext[300];
	rep_sign_keygen(path, "x", line, sizeof(line), err, sizeof(err)); /* refused, line kept */
	snprintf(path, sizeof(path), "%s/pub2.key", dir);
	cr_assert_eq(rep_sign_keygen(path, "mx2", line, sizeof(line), err, sizeof(err)), 0);
	cr_assert_eq(rep_signer_load(path, &s, err, sizeof(err)), 0, "%s", err);
	snprintf(conftext, sizeof(conftext), "%s\n", line);
	rep_bl_conf_t bc = trust_conf(conftext);
	rep_op_t op = signed_op("192.0.2.9", false, &s), back;
	char buf[REP_SOP_MAX_BYTES];
	int n = rep_sop_encode(&op, &s, buf, sizeof(buf));
	cr_assert_eq(rep_sop_decode(buf, (size_t)n, &bc, &back), REP_SOP_OK);
	rep_signer_wipe(&s);

	/* A secret key others can read is refused, by the loader and by the settings. */
	cr_assert_eq(chmod(path, 0644), 0);
	cr_assert_lt(rep_signer_load(path, &s, err, sizeof(err)), 0);
	cr_assert_not_null(strstr(err, "chmod 600"), "%s", err);
	snprintf(text, sizeof(text), "\nblock_signing_key = %s\n", path);
	diag_t *d = diag_new();
	conf_t *c = conf_parse("k.conf", text, d);
	cr_assert_lt(rep_bl_config_read(c, &bc, d), 0);
	cr_assert_not_null(strstr(diag_text(d, 0), "k.conf:2: block_signing_key:"), "%s",
	                   diag_text(d, 0));
	conf_free(c);
	diag_free(d);

	static const char *const bad[] = {
	    "block_trusted_key = t1\n",
	    "block_trusted_key = t1 notbase64!\n",
	    "block_trusted_key = t1 AAAA\n",
	    "block_trusted_key = t|1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
	    "block_trusted_key = t1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= wide\n",
	    "block_trusted_key = t1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= broad x\n",
	    "block_min_prefix4 = 33\n",
	    "block_min_prefix6 = -1\n",
	    "block_sync_batch = 0\n",
	    "block_tombstone_time = soon\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "# settings\n%s", bad[i]);
		d = diag_new();
		c = conf_parse("k.conf", text, d);
		cr_assert_not_null(c);
		cr_assert_lt(rep_bl_config_read(c, &bc, d), 0, "accepted: %s", bad[i]);
		cr_assert_not_null(strstr(diag_text(d, 0), "k.conf:2:"), "%s", diag_text(d, 0));
		conf_free(c);
		diag_free(d);
	}
	/* The same name twice is an error at the second line. */
	snprintf(text, sizeof(text), "%s\n%s\n", line, line);
	d = diag_new();
	c = conf_parse("k.conf", text, d);
	cr_assert_lt(rep_bl_config_read(c, &bc, d), 0);
	cr_assert_not_null(strstr(diag_text(d, 0), "k.conf:2: block_trusted_key: 'mx2'"), "%s",
	                   diag_text(d, 0));
	conf_free(c);
	diag_free(d);
	/* Defaults. */
	bc = trust_conf("");
	cr_assert_eq(bc.min_prefix4, 16);
	cr_assert_eq(bc.min_prefix6, 32);
	cr_assert_eq(bc.batch, 200);
	cr_assert_eq(bc.tombstone_s, 30 * 86400);
	cr_assert_eq(bc.n_trusted, 0);
	rmtree(dir);
	free(dir);
}

Test(rep_mirror, longest_match_expiry_and_resume)
{
	char *dir = tmpdir();
	diag_t *d = diag_new();
	rep_mirror_t *m = rep_mirror_open(dir, d);
	cr_assert_not_null(m);
	rep_op_t ops[] = {
	    op_add("1-0", "10.0.0.0/8", false, 0),   op_add("2-0", "10.1.2.3", true, 0),
	    op_add("3-0", "spam.example", false, 0), op_add("4-0", "ok.spam.example", true, 0),
	    op_add("5-0", "192.0.2.1", false, 500),  op_add("6-0", "2001:db8::/32", false, 0),
	};
	cr_assert_eq(rep_mirror_apply(m, ops, 6), 6);
	rep_addr_t a;
	rep_entry_t e;
	rep_addr_parse("10.9.9.9", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, 100, &e), 1);
	cr_assert_not(e.allow);
	cr_assert_eq(e.target.plen, 8);
	rep_addr_parse("10.1.2.3", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, 100, &e), 1);
	cr_assert(e.allow, "the longest prefix wins");
	rep_addr_parse("192.0.2.1", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, 100, &e), 1);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, 500, &e), 0, "expired");
	rep_addr_parse("2001:db8:5::1", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, 100, &e), 1);
	rep_addr_parse("11.0.0.1", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, 100, &e), 0);
	cr_assert_eq(rep_mirror_lookup_domain(m, "www.Spam.Example", 100, &e), 1);
	cr_assert_not(e.allow);
	cr_assert_eq(rep_mirror_lookup_domain(m, "a.ok.spam.example", 100, &e), 1);
	cr_assert(e.allow);
	cr_assert_eq(rep_mirror_lookup_domain(m, "notspam.example", 100, &e), 0);

	char last[64];
	rep_mirror_last_id(m, last, sizeof(last));
	cr_assert_str_eq(last, "6-0");
	rep_mirror_close(m);

	/* Reopened, as after a restart: the position survived; old ids are not re-applied. */
	m = rep_mirror_open(dir, d);
	cr_assert_not_null(m);
	rep_op_t more[] = {op_del("5-0", "10.0.0.0/8"), op_del("7-0", "spam.example"),
	                   op_add("8-0", "203.0.113.5", false, 0)};
	cr_assert_eq(rep_mirror_apply(m, more, 3), 2);
	rep_addr_parse("10.9.9.9", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, 100, &e), 1, "the stale delete was skipped");
	cr_assert_eq(rep_mirror_lookup_domain(m, "www.spam.example", 100, &e), 0);
	rep_mirror_last_id(m, last, sizeof(last));
	cr_assert_str_eq(last, "8-0");
	cr_assert_eq(rep_mirror_purge(m, 1000), 1);
	rep_entry_t *all;
	size_t n;
	cr_assert_eq(rep_mirror_list(m, &all, &n), 0);
	cr_assert_eq(n, 5, "six entries, one purged");
	free(all);

	rep_entry_t snap[1] = {op_add("", "198.51.100.0/24", false, 0).e};
	cr_assert_eq(rep_mirror_load_begin(m, "9-0"), 0);
	cr_assert_eq(rep_mirror_load_chunk(m, snap, 1, "0"), 1);
	rep_addr_parse("10.9.9.9", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, 100, &e), 0,
	             "a snapshot replaces every shared entry");
	rep_addr_parse("198.51.100.200", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, 100, &e), 1);
	rep_mirror_close(m);
	diag_free(d);
	rmtree(dir);
	free(dir);
}

Test(rep_mirror, a_replayed_older_operation_changes_nothing)
{
	char *dir = tmpdir();
	diag_t *d = diag_new();
	rep_mirror_t *m = rep_mirror_open(dir, d);
	rep_addr_t a;
	rep_entry_t e;
	rep_addr_parse("192.0.2.9", &a);
	rep_op_t add = op_add("1-0", "192.0.2.0/24", false, 0);
	rep_op_t del = op_del("2-0", "192.0.2.0/24");
	cr_assert_eq(rep_mirror_apply(m, &add, 1), 1);
	cr_assert_eq(rep_mirror_apply(m, &del, 1), 1);
	/* The same signed add again, later in the stream: older than the delete. */
	rep_op_t replay = add;
	snprintf(replay.id, sizeof(replay.id), "3-0");
	cr_assert_eq(rep_mirror_apply(m, &replay, 1), 0);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 0);
	char last[64];
	rep_mirror_last_id(m, last, sizeof(last));
	cr_assert_str_eq(last, "3-0", "the position moves past it");
	/* In a snapshot too. */
	cr_assert_eq(rep_mirror_load_begin(m, "3-0"), 0);
	cr_assert_eq(rep_mirror_load_chunk(m, &add.e, 1, "0"), 0);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 0);
	/* Newer operations still apply, in either direction. */
	rep_op_t again = op_add("4-0", "192.0.2.0/24", false, 0);
	cr_assert_eq(rep_mirror_apply(m, &again, 1), 1);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 1);
	rep_op_t old_del = del;
	snprintf(old_del.id, sizeof(old_del.id), "5-0");
	cr_assert_eq(rep_mirror_apply(m, &old_del, 1), 0, "a replayed delete is older too");
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 1);
	/* Tombstones are kept for the tombstone time, then purged. */
	rep_op_t del2 = op_del("6-0", "192.0.2.0/24");
	cr_assert_eq(rep_mirror_apply(m, &del2, 1), 1);
	rep_mirror_set_tombstone_time(m, 3600);
	cr_assert_eq(rep_mirror_purge(m, time(NULL)), 0);
	cr_assert_eq(rep_mirror_purge(m, time(NULL) + 3601), 1);
	rep_entry_t *all;
	size_t n;
	rep_mirror_list(m, &all, &n);
	cr_assert_eq(n, 0, "tombstones are never listed");
	free(all);
	rep_mirror_close(m);
	diag_free(d);
	rmtree(dir);
	free(dir);
}

/* Writes a mirror as the version without signatures did (schema 1). */
static void write_old_mirror(const char *dir, const char *last_id)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi entries, meta;
	cr_assert_eq(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 4);
	cr_assert_eq(mdb_env_open(env, dir, MDB_NOTLS, 0640), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "entries", MDB_CREATE, &entries), 0);
	cr_assert_eq(mdb_dbi_open(txn, "meta", MDB_CREATE, &meta), 0);
	uint8_t key[6] = {4, 24, 192, 0, 2, 0}, bits[17] = {0};
	bits[3] = 1; /* /24 */
	const char *val = "192.0.2.0/24\tblock|0|1700000000|mx1|from the old days";
	MDB_val k = {sizeof(key), key}, v = {strlen(val), (void *)val};
	cr_assert_eq(mdb_put(txn, entries, &k, &v, 0), 0);
	MDB_val pk = {5, "plen4"}, pv = {sizeof(bits), bits};
	cr_assert_eq(mdb_put(txn, meta, &pk, &pv, 0), 0);
	if (last_id) {
		MDB_val lk = {7, "last_id"}, lv = {strlen(last_id), (void *)last_id};
		cr_assert_eq(mdb_put(txn, meta, &lk, &lv, 0), 0);
	}
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

Test(rep_mirror, an_unsigned_mirror_is_resynchronised_and_keeps_local_entries, .timeout = 30)
{
	NEED_REDIS();
	char *dir = tmpdir(), *dir2 = tmpdir(), last[64];
	diag_t *d = diag_new();
	rep_addr_t a;
	rep_entry_t e;
	rep_addr_parse("192.0.2.9", &a);

	/* Followed Redis: its entries were never verified, so none is trusted. */
	write_old_mirror(dir, "1700000000000-0");
	rep_mirror_t *m = rep_mirror_open(dir, d);
	cr_assert_not_null(m);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 0);
	rep_mirror_last_id(m, last, sizeof(last));
	cr_assert_str_eq(last, "0-0", "resynchronised from the start");
	/* ...and the next sync loads the signed list. */
	struct server s;
	server_new(&s, NULL);
	rep_link_conf_t lc = link_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);
	rep_op_t o = op_add("", "198.51.100.0/24", false, 0);
	char id[64];
	cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)), 0);
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 0), 1);
	rep_addr_parse("198.51.100.1", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 1);
	rep_mirror_close(m);
	m = rep_mirror_open(dir, d);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 1, "converted once only");
	rep_mirror_close(m);

	/* Never followed Redis: its entries are the operator's own, kept as local ones. */
	write_old_mirror(dir2, NULL);
	m = rep_mirror_open(dir2, d);
	rep_addr_parse("192.0.2.9", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 1);
	cr_assert(e.local);
	cr_assert_str_eq(e.reason, "from the old days");
	cr_assert_str_eq(e.by, "mx1");
	cr_assert_eq(e.added, 1700000000);
	/* A load of the shared list does not remove them. */
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 0), 1);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 1);
	rep_mirror_close(m);
	rep_link_free(l);
	server_free(&s);
	diag_free(d);
	rmtree(dir);
	rmtree(dir2);
	free(dir);
	free(dir2);
}

Test(rep_mirror, pending_updates_kept_in_order_and_taken_once)
{
	char *dir = tmpdir();
	diag_t *d = diag_new();
	rep_mirror_t *m = rep_mirror_open(dir, d);
	rep_witem_t in[3] = {item("k:a"), item("k:b"), item("k:c")};
	in[1].ham = 1;
	in[1].spam = 0;
	in[2].t = 1700000000;
	cr_assert_eq(rep_mirror_save_pending(m, in, 2), 0);
	cr_assert_eq(rep_mirror_save_pending(m, in + 2, 1), 0, "a second shutdown appends");
	rep_mirror_close(m);
	m = rep_mirror_open(dir, d);
	rep_witem_t *out;
	size_t n;
	cr_assert_eq(rep_mirror_take_pending(m, &out, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(out[0].key, "k:a");
	cr_assert_str_eq(out[1].key, "k:b");
	cr_assert_eq(out[1].ham, 1);
	cr_assert_eq(out[1].spam, 0);
	cr_assert_str_eq(out[2].key, "k:c");
	cr_assert_eq(out[2].t, 1700000000);
	free(out);
	cr_assert_eq(rep_mirror_take_pending(m, &out, &n), 0);
	cr_assert_eq(n, 0, "taken once");
	free(out);
	rep_mirror_close(m);
	diag_free(d);
	rmtree(dir);
	free(dir);
}

/* ------------------------------------------------------------ the link, against redis-server */

Test(rep_link, starts_after_us_and_reconnects_after_restart, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	memset(&s, 0, sizeof(s));
	char *d = tmpdir();
	snprintf(s.dir, sizeof(s.dir), "%s", d);
	free(d);
	s.port = free_port();
	snprintf(s.addr, sizeof(s.addr), "127.0.0.1:%d", s.port);
	rep_link_conf_t lc = link_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);

	cr_assert_null(rep_link_get(l), "nothing listens yet");
	cr_assert_neq(rep_link_error(l)[0], '\0');
	server_start(&s, NULL);
	cr_assert(link_wait_up(l, 3000), "connected once Redis came up: %s", rep_link_error(l));

	rep_cmd_t c;
	redisReply *r;
	rep_cmd_init(&c, "SET");
	rep_cmd_arg(&c, "k");
	rep_cmd_arg(&c, "v1");
	cr_assert_eq(rep_link_pipeline(l, 1, &c, &r), 1);
	rep_link_free_replies(1, &r);

	server_stop(&s);
	server_start(&s, NULL);
	/* The first command finds the dead connection, fails, and the link reconnects. */
	int got = rep_link_pipeline(l, 1, &c, &r);
	rep_link_free_replies(1, &r);
	if (got != 1) {
		cr_assert(link_wait_up(l, 3000), "reconnected: %s", rep_link_error(l));
		cr_assert_eq(rep_link_pipeline(l, 1, &c, &r), 1);
		rep_link_free_replies(1, &r);
	}
	redisReply *v = side(&s, "GET k");
	cr_assert_str_eq(v->str, "v1");
	freeReplyObject(v);
	rep_link_free(l);
	server_free(&s);
}

/*
 * A server that closed an idle connection (Redis's `timeout`) leaves the
 * socket half closed; a command too large for one write() then raises
 * SIGPIPE on its second. That must fail the command, not kill the process:
 * this one has SIGPIPE at its default action, as the sift tool has.
 */
/* Clients connected to s other than the one asking. */
static long idle_clients(struct server *s)
{
	long n = (long)info_field(s, "clients", "connected_clients:");
	return n - 1;
}

Test(rep_link, a_connection_closed_by_the_server_does_not_kill_the_writer, .timeout = 30)
{
	NEED_REDIS();
	signal(SIGPIPE, SIG_DFL);
	struct server s;
	const char *extra[] = {"--timeout", "1", NULL};
	server_new(&s, extra);
	rep_link_conf_t lc = link_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);
	cr_assert_not_null(rep_link_get(l), "%s", rep_link_error(l));
	/* Idle past the server's timeout: it closes its end (bounded wait). */
	for (int i = 0; i < 50 && idle_clients(&s) > 0; i++)
		sleep_ms(100);
	cr_assert_eq(idle_clients(&s), 0, "the server closed the idle link");

	size_t big = 32u << 20;
	char *v = malloc(big);
	cr_assert_not_null(v);
	memset(v, 'x', big);
	rep_cmd_t c;
	redisReply *r;
	rep_cmd_init(&c, "SET");
	rep_cmd_arg(&c, "k");
	rep_cmd_argn(&c, v, big);
	cr_assert_eq(rep_link_pipeline(l, 1, &c, &r), 0, "the command failed");
	cr_assert_neq(rep_link_error(l)[0], '\0');
	free(v);

	sigset_t pending, mask;
	sigpending(&pending);
	cr_assert_eq(sigismember(&pending, SIGPIPE), 0, "no SIGPIPE left pending");
	pthread_sigmask(SIG_BLOCK, NULL, &mask);
	cr_assert_eq(sigismember(&mask, SIGPIPE), 0, "the thread's mask is as it was");

	/* And the link serves again once reconnected. */
	rep_cmd_init(&c, "SET");
	rep_cmd_arg(&c, "k");
	rep_cmd_arg(&c, "v");
	cr_assert(link_wait_up(l, 3000), "reconnected: %s", rep_link_error(l));
	cr_assert_eq(rep_link_pipeline(l, 1, &c, &r), 1, "%s", rep_link_error(l));
	rep_link_free_replies(1, &r);
	rep_link_free(l);
	server_free(&s);
}

Test(rep_link, circuit_breaker_stops_trying_then_half_opens, .timeout = 30)
{
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
	rep_link_conf_t lc = link_conf(addr);
	lc.breaker_failures = 3;
	lc.breaker_open_ms = 600;
	lc.backoff_min_ms = 1;
	lc.backoff_max_ms = 1;
	rep_link_t *l = rep_link_new(&lc);
	for (int i = 0; i < 50 && rep_link_state(l) != REP_LINK_OPEN; i++) {
		rep_link_get(l);
		sleep_ms(3);
	}
	cr_assert_eq(rep_link_state(l), REP_LINK_OPEN);
	rep_link_stats_t st = rep_link_stats(l);
	cr_assert_eq(st.attempts, 3);
	cr_assert_eq(st.opened, 1);
	/* its own CPU, not the clock: a busy runner may take the thread away */
	long t0 = thread_cpu_ms();
	for (int i = 0; i < 1000; i++)
		cr_assert_null(rep_link_get(l));
	cr_assert_lt(thread_cpu_ms() - t0, 50, "an open circuit costs nothing");
	cr_assert_eq(rep_link_stats(l).attempts, 3, "and makes no attempt");
	sleep_ms(700);
	rep_link_get(l);
	st = rep_link_stats(l);
	cr_assert_eq(st.attempts, 4, "half-open: one attempt");
	cr_assert_eq(st.opened, 2, "which failed, so the circuit opened again");
	rep_link_free(l);
}

/*
 * A server that answers the handshake (the probe) and hangs up on the
 * first command after it: a tunnel whose far end is down, say.
 */
struct hangup {
	int lfd, port;
	volatile int stop;
	pthread_t th;
};

static void *hangup_main(void *arg)
{
	struct hangup *h = arg;
	while (!h->stop) {
		struct pollfd p = {.fd = h->lfd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		int cfd = accept(h->lfd, NULL, NULL);
		if (cfd < 0)
			continue;
		char buf[4096];
		ssize_t n = read(cfd, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = '\0';
			if (strstr(buf, "EXISTS") && write(cfd, ":0\r\n", 4) == 4)
				n = read(cfd, buf, sizeof(buf)); /* the first real command */
		}
		close(cfd);
	}
	return NULL;
}

Test(rep_link, a_server_that_hangs_up_after_the_handshake_opens_the_circuit, .timeout = 30)
{
	struct hangup h = {0};
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	h.lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(h.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	getsockname(h.lfd, (struct sockaddr *)&a, &al);
	h.port = ntohs(a.sin_port);
	cr_assert_eq(listen(h.lfd, 16), 0);
	cr_assert_eq(pthread_create(&h.th, NULL, hangup_main, &h), 0);

	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", h.port);
	rep_link_conf_t lc = link_conf(addr);
	lc.breaker_failures = 3;
	lc.breaker_open_ms = 10000;
	rep_link_t *l = rep_link_new(&lc);
	const char *keys[1] = {"sift:r:{ip:192.0.2.9}"};
	rep_counts_t c;
	bool found;
	for (long until = mono_ms() + 1500; mono_ms() < until; sleep_ms(10))
		cr_assert_eq(rep_read_counts(l, 1, keys, &c, &found), -1);
	cr_assert_eq(rep_link_state(l), REP_LINK_OPEN,
	             "failures after a handshake count: the circuit opens");
	cr_assert_eq(rep_link_stats(l).attempts, 3, "three connections, not one every backoff_min");

	rep_link_free(l);
	h.stop = 1;
	pthread_join(h.th, NULL);
	close(h.lfd);
}

Test(rep_link, slow_redis_costs_at_most_the_timeout, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	rep_link_conf_t lc = link_conf(s.addr);
	lc.command_timeout_ms = 150;
	rep_link_t *l = rep_link_new(&lc);
	cr_assert(link_wait_up(l, 2000));
	/* Real slowness: the server holds every client's commands for 3 s. */
	freeReplyObject(side(&s, "CLIENT PAUSE 3000 ALL"));
	const char *keys[1] = {"sift:r:{ip:192.0.2.1}"};
	rep_counts_t c;
	bool found;
	long t0 = mono_ms();
	cr_assert_eq(rep_read_counts(l, 1, keys, &c, &found), -1);
	long dt = mono_ms() - t0;
	cr_assert(dt >= 100 && dt < 600, "gave up after %ld ms", dt);
	cr_assert_neq(rep_link_state(l), REP_LINK_UP);
	rep_link_free(l);
	server_free(&s);
}

Test(rep_link, a_reply_larger_than_any_the_link_expects_fails_the_link, .timeout = 30)
{
	/* hiredis buffered and parsed any reply: a 300 MB string took 2.6 GB. */
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	size_t big = 3u << 20;
	char *v = malloc(big);
	memset(v, '7', big);
	freeReplyObject(side(&s, "HSET %s s %b", "sift:r:{ip:192.0.2.9}", v, big));
	free(v);
	rep_link_conf_t lc = link_conf(s.addr);
	lc.reply_max_bytes = 1u << 20;
	rep_link_t *l = rep_link_new(&lc);
	cr_assert(link_wait_up(l, 2000));
	const char *keys[1] = {"sift:r:{ip:192.0.2.9}"};
	rep_counts_t c;
	bool found;
	cr_assert_eq(rep_read_counts(l, 1, keys, &c, &found), -1);
	cr_assert_neq(rep_link_state(l), REP_LINK_UP);
	cr_assert(strstr(rep_link_error(l), "a reply larger than 1048576 bytes"), "%s",
	          rep_link_error(l));
	rep_link_free(l);
	server_free(&s);
}

/*
 * A TCP proxy to Redis that, once told to, passes the replies on a byte
 * every 50 ms: a server that answers, but too slowly to be of use.
 */
struct trickle {
	int lfd, port, up_port;
	volatile int slow, stop;
	volatile int delay_ms; /* or: each reply held this long, then passed on whole */
	pthread_t th;
};

static void *trickle_main(void *arg)
{
	struct trickle *t = arg;
	int cfd = accept(t->lfd, NULL, NULL);
	if (cfd < 0)
		return NULL;
	int ufd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)t->up_port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(ufd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(cfd);
		close(ufd);
		return NULL;
	}
	struct pollfd p[2] = {{.fd = cfd, .events = POLLIN}, {.fd = ufd, .events = POLLIN}};
	char buf[16384];
	while (!t->stop && poll(p, 2, 100) >= 0) {
		if (p[0].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(cfd, buf, sizeof(buf));
			if (n <= 0 || write(ufd, buf, (size_t)n) != n)
				break;
		}
		if (p[1].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(ufd, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (t->delay_ms)
				sleep_ms(t->delay_ms);
			for (ssize_t i = 0; i < n && !t->stop; i += t->slow ? 1 : n) {
				size_t k = t->slow ? 1 : (size_t)n;
				if (write(cfd, buf + i, k) != (ssize_t)k)
					break;
				if (t->slow)
					sleep_ms(50);
			}
		}
	}
	close(cfd);
	close(ufd);
	return NULL;
}

static void trickle_start(struct trickle *t, int up_port)
{
	memset(t, 0, sizeof(*t));
	t->up_port = up_port;
	t->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(t->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t al = sizeof(a);
	getsockname(t->lfd, (struct sockaddr *)&a, &al);
	t->port = ntohs(a.sin_port);
	cr_assert_eq(listen(t->lfd, 4), 0);
	cr_assert_eq(pthread_create(&t->th, NULL, trickle_main, t), 0);
}

static void trickle_stop(struct trickle *t)
{
	t->stop = 1;
	shutdown(t->lfd, SHUT_RDWR);
	close(t->lfd);
	pthread_join(t->th, NULL);
}

Test(rep_link, a_reply_trickled_a_byte_at_a_time_costs_at_most_the_timeout, .timeout = 30)
{
	/*
	 * The socket timeout bounds each read, not the reply: a byte every 50
	 * ms within a 300 ms timeout held the link's thread for as long as
	 * the reply lasted, and the link still counted as up.
	 */
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	freeReplyObject(side(&s, "HSET %s s %s h %s t %s", "sift:r:{ip:192.0.2.8}",
	                     "12.5000000000000000000000000000000000000000", "1", "1700000000"));
	struct trickle t;
	trickle_start(&t, s.port);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t.port);
	rep_link_conf_t lc = link_conf(addr);
	rep_link_t *l = rep_link_new(&lc);
	cr_assert(link_wait_up(l, 2000), "%s", rep_link_error(l));
	t.slow = 1;
	const char *keys[1] = {"sift:r:{ip:192.0.2.8}"};
	rep_counts_t c;
	bool found;
	long t0 = mono_ms();
	cr_assert_eq(rep_read_counts(l, 1, keys, &c, &found), -1);
	long dt = mono_ms() - t0;
	cr_assert(dt < 800, "gave up after %ld ms", dt);
	cr_assert_neq(rep_link_state(l), REP_LINK_UP);
	rep_link_free(l);
	trickle_stop(&t);
	server_free(&s);
}

Test(rep_link, a_handshake_trickled_a_byte_at_a_time_costs_at_most_the_connect_timeout,
     .timeout = 30)
{
	/* The handshake's commands were bounded per read too: SCRIPT LOAD took 2.5 s here. */
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	struct trickle t;
	trickle_start(&t, s.port);
	t.slow = 1;
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t.port);
	rep_link_conf_t lc = link_conf(addr);
	lc.script = "return 1";
	rep_link_t *l = rep_link_new(&lc);
	long t0 = mono_ms();
	cr_assert_null(rep_link_get(l));
	long dt = mono_ms() - t0;
	cr_assert(dt < 1000, "gave up after %ld ms", dt);
	cr_assert(strstr(rep_link_error(l), "not complete in time"), "%s", rep_link_error(l));
	rep_link_free(l);
	trickle_stop(&t);
	server_free(&s);
}

Test(rep_link, a_handshake_of_slow_replies_costs_at_most_one_connect_timeout, .timeout = 30)
{
	/*
	 * Each handshake command had the whole connect timeout: a server
	 * answering each in 200 ms, within a 300 ms timeout, held a handshake
	 * of AUTH, SELECT, EXISTS, ROLE and SCRIPT LOAD for a second and then
	 * counted as up.
	 */
	NEED_REDIS();
	struct server s;
	const char *pw[] = {"--requirepass", "sekrit", NULL};
	server_new(&s, pw);
	struct trickle t;
	trickle_start(&t, s.port);
	t.delay_ms = 200;
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t.port);
	rep_link_conf_t lc = link_conf(addr);
	lc.script = "return 1";
	lc.password = "sekrit";
	lc.db = 1;
	rep_link_t *l = rep_link_new(&lc);
	long t0 = mono_ms();
	cr_assert_null(rep_link_get(l), "a handshake of 1 s passed a 300 ms timeout");
	long dt = mono_ms() - t0;
	cr_assert(dt < 700, "gave up after %ld ms", dt);
	rep_link_free(l);
	trickle_stop(&t);
	server_free(&s);
}

Test(rep_link, round_trip_is_measured_on_the_links_own_commands, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	rep_link_conf_t lc = link_conf(s.addr);
	lc.command_timeout_ms = 3000;
	rep_link_t *l = rep_link_new(&lc);
	cr_assert_eq(rep_link_rtt_ms(l), -1, "unknown before any command");
	cr_assert(link_wait_up(l, 2000));
	long fast = rep_link_rtt_ms(l);
	cr_assert(fast >= 0 && fast < 100, "loopback: %ld ms", fast);
	/* Every reply 300 ms late: the smoothed figure climbs towards it. */
	const char *keys[1] = {"sift:r:{ip:192.0.2.1}"};
	rep_counts_t c;
	bool found;
	for (int i = 0; i < 12; i++) {
		redisContext *busy = busy_start(&s, 300);
		sleep_ms(10);
		cr_assert_eq(rep_read_counts(l, 1, keys, &c, &found), 0, "%s", rep_link_error(l));
		busy_end(busy);
	}
	long slow = rep_link_rtt_ms(l);
	cr_assert(slow > 150 && slow < 400, "after slow replies: %ld ms", slow);
	rep_link_free(l);
	server_free(&s);
}

Test(rep_link, loading_redis_is_waited_out_without_restart, .timeout = 60)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	freeReplyObject(side(&s, "DEBUG POPULATE 20000"));
	freeReplyObject(side(&s, "SAVE"));
	server_stop(&s);
	/* Slow loading (50 us a key) that answers LOADING meanwhile. */
	const char *slow[] = {"--dbfilename",
	                      "dump.rdb",
	                      "--key-load-delay",
	                      "50",
	                      "--loading-process-events-interval-bytes",
	                      "1024",
	                      NULL};
	server_start(&s, slow);
	rep_link_conf_t lc = link_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);
	cr_assert_null(rep_link_get(l));
	cr_assert(strstr(rep_link_error(l), "LOADING") != NULL, "error: %s", rep_link_error(l));
	cr_assert(link_wait_up(l, 30000), "usable after loading: %s", rep_link_error(l));
	const char *keys[1] = {"key:1"};
	rep_counts_t c;
	bool found;
	cr_assert_eq(rep_read_counts(l, 1, keys, &c, &found), 0,
	             "key:1 is a string (WRONGTYPE): unknown, no failure");
	cr_assert(!found);
	cr_assert_eq(rep_link_state(l), REP_LINK_UP, "an ordinary error keeps the link");
	rep_link_free(l);
	server_free(&s);
}

Test(rep_link, readonly_demoted_primary_recovers_without_restart, .timeout = 30)
{
	NEED_REDIS();
	struct server a, b;
	server_new(&a, NULL);
	server_new(&b, NULL);
	rep_link_conf_t lc = link_conf(b.addr);
	rep_link_t *l = rep_link_new(&lc);
	rep_cmd_t c;
	redisReply *r;
	rep_cmd_init(&c, "INCR");
	rep_cmd_arg(&c, "n");
	cr_assert_eq(rep_link_pipeline(l, 1, &c, &r), 1);
	rep_link_free_replies(1, &r);

	redisReply *x = side(&b, "REPLICAOF 127.0.0.1 %d", a.port);
	freeReplyObject(x);
	cr_assert_eq(rep_link_pipeline(l, 1, &c, &r), 0);
	cr_assert(strstr(rep_link_error(l), "READONLY") != NULL, "%s", rep_link_error(l));
	rep_link_free_replies(1, &r);

	/* A primary-only link refuses the replica at connect time. */
	rep_link_conf_t pc = link_conf(b.addr);
	pc.want_primary = true;
	rep_link_t *p = rep_link_new(&pc);
	cr_assert_null(rep_link_get(p));
	cr_assert(strstr(rep_link_error(p), "not a primary") != NULL, "%s", rep_link_error(p));

	freeReplyObject(side(&b, "REPLICAOF NO ONE"));
	cr_assert(link_wait_up(l, 3000));
	cr_assert_eq(rep_link_pipeline(l, 1, &c, &r), 1, "%s", rep_link_error(l));
	rep_link_free_replies(1, &r);
	cr_assert(link_wait_up(p, 3000), "promoted: %s", rep_link_error(p));
	rep_link_free(l);
	rep_link_free(p);
	server_free(&a);
	server_free(&b);
}

Test(rep_link, auth_password, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	const char *pw[] = {"--requirepass", "s3cret", NULL};
	server_new(&s, pw);
	rep_link_conf_t lc = link_conf(s.addr);
	rep_link_t *bad = rep_link_new(&lc);
	cr_assert_null(rep_link_get(bad), "no password");
	lc.password = "wrong";
	rep_link_t *wrong = rep_link_new(&lc);
	cr_assert_null(rep_link_get(wrong));
	lc.password = "s3cret";
	rep_link_t *ok = rep_link_new(&lc);
	cr_assert_not_null(rep_link_get(ok), "%s", rep_link_error(ok));
	rep_link_free(bad);
	rep_link_free(wrong);
	rep_link_free(ok);
	server_free(&s);
}

/* Redis 6 ACL: "AUTH user pass"; a failure says so and never shows the password. */
Test(rep_link, acl_username_and_a_clear_authentication_failure, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	const char *acl[] = {"--user", "sift", "on", ">pw-It5-s3cret", "~sift:*", "+@all", NULL};
	server_new(&s, acl);
	rep_link_conf_t lc = link_conf(s.addr);
	lc.username = "sift";
	lc.password = "wrong-pw-Zq9";
	rep_link_t *wrong = rep_link_new(&lc);
	cr_assert_null(rep_link_get(wrong));
	const char *e = rep_link_error(wrong);
	cr_assert(strstr(e, "authentication failed as user 'sift'") != NULL, "%s", e);
	cr_assert(strstr(e, "wrong-pw-Zq9") == NULL, "the password leaked: %s", e);

	lc.password = "pw-It5-s3cret";
	rep_link_t *ok = rep_link_new(&lc);
	cr_assert_not_null(rep_link_get(ok), "%s", rep_link_error(ok));
	rep_cmd_t c;
	redisReply *r;
	rep_cmd_init(&c, "ACL");
	rep_cmd_arg(&c, "WHOAMI");
	cr_assert_eq(rep_link_pipeline(ok, 1, &c, &r), 1);
	cr_assert_eq(r->type, REDIS_REPLY_STRING, "%s", r->str);
	cr_assert_str_eq(r->str, "sift");
	rep_link_free_replies(1, &r);
	rep_link_free(wrong);
	rep_link_free(ok);
	server_free(&s);
}

/* redis_route: the address to reach is replaced by the local end of its tunnel. */
Test(rep_link, a_route_replaces_the_address_dialled, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	char remote[64];
	snprintf(remote, sizeof(remote), "127.0.0.1:%d", free_port()); /* nobody listens */
	rep_link_conf_t lc = link_conf(remote);
	rep_link_t *direct = rep_link_new(&lc);
	cr_assert_null(rep_link_get(direct), "the remote address itself is dead");
	lc.route_from[0] = remote;
	lc.route_to[0] = s.addr;
	lc.n_routes = 1;
	rep_link_t *routed = rep_link_new(&lc);
	cr_assert_not_null(rep_link_get(routed), "%s", rep_link_error(routed));
	cr_assert_str_eq(rep_link_addr(routed), remote, "named by the address it stands for");
	rep_link_free(direct);
	rep_link_free(routed);
	server_free(&s);
}

/* The cluster spec's examples: CRC16 (XMODEM) mod 16384 of the {hash tag}. */
Test(rep_link, cluster_slot_of_known_keys)
{
	cr_assert_eq(rep_key_slot("foo", 3), 12182);
	cr_assert_eq(rep_key_slot("123456789", 9), 0x31C3 & 16383, "the CRC16 check value");
	cr_assert_eq(rep_key_slot("{user1000}.following", 20),
	             rep_key_slot("{user1000}.followers", 20));
	cr_assert_eq(rep_key_slot("{user1000}.following", 20), rep_key_slot("user1000", 8));
	cr_assert_eq(rep_key_slot("foo{}{bar}", 10), rep_key_slot("foo{}{bar}x", 10),
	             "an empty tag hashes the whole key");
	cr_assert_neq(rep_key_slot("foo{}{bar}", 10), rep_key_slot("bar", 3));
	cr_assert_eq(rep_key_slot("foo{{bar}}zap", 13), rep_key_slot("{bar", 4));
	cr_assert_eq(rep_key_slot("foo{bar}{zap}", 13), rep_key_slot("bar", 3), "the first tag");
	char k[REP_KEY_MAX_BYTES];
	rep_key(k, sizeof(k), "sift:", REP_ENT_IP, "192.0.2.1");
	cr_assert_eq(rep_key_slot(k, strlen(k)), rep_key_slot("ip:192.0.2.1", 12));
	cr_assert_eq(rep_key_slot("sift:{bl}:log", 13), rep_key_slot("sift:{bl}:state", 15));
}

/* ------------------------------------------------------------ credentials in the configuration */

static conf_t *conf_file(const char *dir, const char *text, mode_t mode, diag_t *d)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/sift.conf", dir);
	FILE *fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fputs(text, fp);
	fclose(fp);
	chmod(path, mode);
	return conf_load(path, d);
}

static void write_secret(const char *path, const char *text, mode_t mode)
{
	FILE *fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fputs(text, fp);
	fclose(fp);
	chmod(path, mode);
}

/* The diagnostics of one configuration, joined; asserts the secret is in none. */
static void read_conf(const char *dir, const char *text, mode_t mode, rep_config_t *rc, char *all,
                      size_t size)
{
	diag_t *d = diag_new();
	conf_t *c = conf_file(dir, text, mode, d);
	cr_assert_not_null(c);
	rep_config_read(c, "/tmp", rc, d);
	all[0] = '\0';
	for (size_t i = 0; i < diag_count(d); i++) {
		strncat(all, diag_text(d, i), size - strlen(all) - 2);
		strcat(all, "\n");
	}
	cr_assert(strstr(all, "Kq7-secret") == NULL, "a secret in a diagnostic: %s", all);
	conf_free(c);
	diag_free(d);
}

Test(rep_config, password_files_must_not_be_readable_by_others)
{
	char *dir = tmpdir(), pwf[300], spf[300], text[1024], all[4096];
	rep_config_t rc;
	snprintf(pwf, sizeof(pwf), "%s/redis.pw", dir);
	snprintf(spf, sizeof(spf), "%s/sentinel.pw", dir);

	write_secret(pwf, "Kq7-secret\nsecond line ignored\n", 0600);
	write_secret(spf, "Kq7-secret-sentinel\r\n", 0640);
	snprintf(text, sizeof(text),
	         "redis_sentinel = 127.0.0.1:26379\nredis_username = sift\n"
	         "redis_password_file = %s\nredis_sentinel_username = watcher\n"
	         "redis_sentinel_password_file = %s\n",
	         pwf, spf);
	read_conf(dir, text, 0644, &rc, all, sizeof(all));
	cr_assert_str_eq(all, "", "%s", all);
	cr_assert_str_eq(rc.password, "Kq7-secret", "the first line");
	cr_assert_str_eq(rc.username, "sift");
	cr_assert_str_eq(rc.sentinel_password, "Kq7-secret-sentinel");
	cr_assert_str_eq(rc.sentinel_username, "watcher");
	rep_link_conf_t lc;
	rep_config_link(&rc, false, &lc);
	cr_assert_str_eq(lc.password, "Kq7-secret");
	cr_assert_str_eq(lc.username, "sift");
	cr_assert_str_eq(lc.sentinel_password, "Kq7-secret-sentinel");

	chmod(pwf, 0604);
	read_conf(dir, text, 0644, &rc, all, sizeof(all));
	cr_assert(strstr(all, "sift.conf:3: redis_password_file:") != NULL &&
	              strstr(all, "readable or writable by others") != NULL,
	          "%s", all);
	chmod(pwf, 0602);
	read_conf(dir, text, 0644, &rc, all, sizeof(all));
	cr_assert(strstr(all, "sift.conf:3: ") != NULL, "writable by others: %s", all);
	chmod(pwf, 0600);
	chmod(spf, 0644);
	read_conf(dir, text, 0644, &rc, all, sizeof(all));
	cr_assert(strstr(all, "sift.conf:5: redis_sentinel_password_file:") != NULL, "%s", all);
	chmod(spf, 0600);
	unlink(pwf);
	read_conf(dir, text, 0644, &rc, all, sizeof(all));
	cr_assert(strstr(all, "sift.conf:3: redis_password_file: cannot open") != NULL, "%s", all);
	write_secret(pwf, "\n", 0600);
	read_conf(dir, text, 0644, &rc, all, sizeof(all));
	cr_assert(strstr(all, "empty first line") != NULL, "%s", all);
	char longpw[REP_SECRET_MAX_BYTES + 10];
	memset(longpw, 'x', sizeof(longpw) - 1);
	longpw[sizeof(longpw) - 1] = '\0';
	write_secret(pwf, longpw, 0600);
	read_conf(dir, text, 0644, &rc, all, sizeof(all));
	cr_assert(strstr(all, "sift.conf:3: redis_password_file: the first line of") != NULL &&
	              strstr(all, "is longer than") != NULL,
	          "%s", all);
	write_secret(pwf, "Kq7-secret", 0600);
	read_conf(dir, text, 0644, &rc, all, sizeof(all));
	cr_assert_str_eq(all, "", "no newline at the end is fine: %s", all);
	cr_assert_str_eq(rc.password, "Kq7-secret");

	/* Inline: only in a configuration file others cannot read. */
	read_conf(dir, "redis_server = 127.0.0.1:6379\n\nredis_password = Kq7-secret\n", 0644, &rc,
	          all, sizeof(all));
	cr_assert(strstr(all, "sift.conf:3: redis_password in a file readable by others") != NULL &&
	              strstr(all, "redis_password_file") != NULL,
	          "%s", all);
	read_conf(dir, "redis_server = 127.0.0.1:6379\n\nredis_password = Kq7-secret\n", 0640, &rc,
	          all, sizeof(all));
	cr_assert_str_eq(all, "", "%s", all);
	rmtree(dir);
	free(dir);
}

Test(rep_config, routes_and_cluster_seeds_are_checked_at_their_line)
{
	char *dir = tmpdir(), all[4096];
	rep_config_t rc;
	read_conf(dir,
	          "redis_sentinel = 10.0.0.5:26379\n"
	          "redis_route = 10.0.0.5:26379 127.0.0.1:26380\n"
	          "redis_route = [2001:db8::5]:6379 127.0.0.1:6380\n",
	          0600, &rc, all, sizeof(all));
	cr_assert_str_eq(all, "", "%s", all);
	cr_assert_eq(rc.n_routes, 2);
	cr_assert_str_eq(rc.route_from[1], "[2001:db8::5]:6379");
	cr_assert_str_eq(rc.route_to[1], "127.0.0.1:6380");
	read_conf(dir, "redis_server = 10.0.0.5:6379\n\nredis_route = 10.0.0.5:6379\n", 0600, &rc,
	          all, sizeof(all));
	cr_assert(strstr(all, "sift.conf:3: redis_route: expected") != NULL, "%s", all);
	read_conf(dir, "redis_route = 10.0.0.5:6379 127.0.0.1:99999\n", 0600, &rc, all,
	          sizeof(all));
	cr_assert(strstr(all, "sift.conf:1: redis_route") != NULL, "%s", all);

	read_conf(dir, "redis_cluster = 10.0.0.5:7000\nredis_cluster = 10.0.0.6:7000\n", 0600, &rc,
	          all, sizeof(all));
	cr_assert_str_eq(all, "", "%s", all);
	cr_assert_eq(rc.n_cluster, 2);
	cr_assert(rep_config_has_redis(&rc));
	read_conf(dir, "redis_server = 10.0.0.5:6379\nredis_cluster = 10.0.0.5:7000\n", 0600, &rc,
	          all, sizeof(all));
	cr_assert(strstr(all, "sift.conf:2: redis_cluster excludes redis_server") != NULL, "%s",
	          all);
	read_conf(dir, "redis_cluster = nowhere\n", 0600, &rc, all, sizeof(all));
	cr_assert(strstr(all, "sift.conf:1: redis_cluster: expected HOST:PORT") != NULL, "%s", all);
	rmtree(dir);
	free(dir);
}

/* ------------------------------------------------------------ writes and reads */

static rep_wconf_t wconf(double hl, long ttl)
{
	rep_wconf_t wc = {.prefix = "sift:", .node_id = "test01", .half_life_s = hl, .ttl_s = ttl};
	return wc;
}

/* Writes until the queue's batch is confirmed or ms pass; the last result. */
static int write_until(rep_link_t *l, rep_wqueue_t *q, const rep_wconf_t *wc, long ms)
{
	int n = -1;
	for (long until = mono_ms() + ms; mono_ms() < until && n < 0; sleep_ms(20))
		n = rep_write_batch(l, q, wc, NULL);
	return n;
}

Test(rep_io, buffered_writes_are_replayed_when_redis_returns, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	server_stop(&s);
	rep_link_conf_t lc = writer_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);
	rep_wqueue_t *q = rep_wqueue_new(100, 86400);
	rep_wconf_t wc = wconf(86400, 3600);
	int64_t now = time(NULL);
	for (int i = 0; i < 4; i++) {
		rep_witem_t it = item("sift:r:{ip:192.0.2.9}");
		it.t = now;
		it.spam = i < 3;
		it.ham = i == 3;
		rep_wqueue_push(q, &it);
	}
	cr_assert_eq(rep_write_batch(l, q, &wc, NULL), -1, "Redis is down");
	cr_assert_eq(rep_wqueue_len(q), 1, "nothing lost: one entity");

	server_start(&s, NULL);
	cr_assert_eq(write_until(l, q, &wc, 5000), 1, "replayed: %s", rep_link_error(l));
	cr_assert_eq(rep_wqueue_len(q), 0);

	const char *keys[2] = {"sift:r:{ip:192.0.2.9}", "sift:r:{ip:192.0.2.10}"};
	rep_counts_t c[2];
	bool found[2];
	cr_assert_eq(rep_read_counts(l, 2, keys, c, found), 0);
	cr_assert(found[0]);
	cr_assert_not(found[1]);
	cr_assert_float_eq(c[0].spam, 3.0, 1e-3);
	cr_assert_float_eq(c[0].ham, 1.0, 1e-3);
	cr_assert(c[0].t >= now && c[0].t <= now + 5);
	redisReply *ttl = side(&s, "TTL sift:r:{ip:192.0.2.9}");
	cr_assert(ttl->integer > 3500 && ttl->integer <= 3600);
	freeReplyObject(ttl);

	/* The script decays on the server: a replayed observation a half-life older counts half. */
	rep_witem_t it = item("sift:r:{ip:192.0.2.9}");
	it.t = c[0].t - 86400;
	it.spam = 2;
	rep_wqueue_push(q, &it);
	cr_assert_eq(rep_write_batch(l, q, &wc, NULL), 1);
	rep_read_counts(l, 1, keys, c, found);
	cr_assert_float_eq(c[0].spam, 4.0, 1e-2);

	/* Script cache flushed (as after a restart): NOSCRIPT, reconnect, reload, replay. */
	freeReplyObject(side(&s, "SCRIPT FLUSH"));
	it.t = time(NULL);
	it.spam = 1;
	rep_wqueue_push(q, &it);
	cr_assert_eq(rep_write_batch(l, q, &wc, NULL), -1);
	cr_assert_eq(rep_wqueue_len(q), 1);
	cr_assert_eq(write_until(l, q, &wc, 3000), 1);
	rep_read_counts(l, 1, keys, c, found);
	cr_assert_float_eq(c[0].spam, 5.0, 1e-2);
	rep_wqueue_free(q);
	rep_link_free(l);
	server_free(&s);
}

static long long evalsha_calls(struct server *s)
{
	return info_field(s, "commandstats", "cmdstat_evalsha:calls=");
}

Test(rep_io, a_foreign_or_broken_key_costs_only_its_own_entity, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	rep_link_conf_t lc = writer_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);
	long long now = (long long)time(NULL);
	freeReplyObject(side(&s, "HSET m:r:{ip:192.0.2.66} s 20 h 0 t %lld", now));
	freeReplyObject(side(&s, "SET m:r:{fd:other.example} x"));
	freeReplyObject(side(&s, "HSET m:r:{ud:nan.example} s nan h 0 t %lld", now));

	/* Reads: the string and the NaN are unknown; the good key read with them stands. */
	const char *keys[3] = {"m:r:{fd:other.example}", "m:r:{ip:192.0.2.66}",
	                       "m:r:{ud:nan.example}"};
	rep_counts_t c[3];
	bool found[3];
	cr_assert_eq(rep_read_counts(l, 3, keys, c, found), 0, "%s", rep_link_error(l));
	cr_assert(!found[0]);
	cr_assert(found[1]);
	cr_assert_float_eq(c[1].spam, 20.0, 0.01);
	cr_assert(!found[2], "a NaN count is no count");

	/* Writes: the string is skipped, the entities after it in the batch are counted. */
	rep_wqueue_t *q = rep_wqueue_new(100, 3600);
	rep_wconf_t wc = wconf(3600, 86400);
	wc.force = true;
	rep_witem_t it = item("m:r:{fd:other.example}");
	it.t = now;
	rep_wqueue_push(q, &it);
	it = item("m:r:{ip:198.51.100.1}");
	it.t = now;
	rep_wqueue_push(q, &it);
	cr_assert_eq(rep_write_batch(l, q, &wc, NULL), 2, "%s", rep_link_error(l));
	cr_assert_float_eq(key_spam(&s, "m:r:{ip:198.51.100.1}"), 1.0, 0.01,
	                   "the entity after the foreign key got its increment");
	rep_wqueue_free(q);
	rep_link_free(l);
	server_free(&s);
}

Test(rep_io, one_call_writes_several_entities_exactly, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	rep_link_conf_t lc = writer_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);
	rep_wqueue_t *q = rep_wqueue_new(100, 3600);
	rep_wconf_t wc = wconf(3600, 86400);
	int64_t t0 = time(NULL) - 3600;
	rep_witem_t it;
	for (int i = 0; i < 10; i++) { /* ten spam an hour ago, one ham now, one elsewhere */
		it = item("m:r:{net:192.0.2.0/24}");
		it.t = t0;
		rep_wqueue_push(q, &it);
	}
	it = item("m:r:{net:192.0.2.0/24}");
	it.t = t0 + 3600;
	it.spam = 0;
	it.ham = 1;
	rep_wqueue_push(q, &it);
	it = item("m:r:{ip:198.51.100.1}");
	it.t = t0 + 3600;
	rep_wqueue_push(q, &it);
	long long before = evalsha_calls(&s);
	cr_assert_eq(rep_write_batch(l, q, &wc, NULL), 2, "%s", rep_link_error(l));
	cr_assert_eq(evalsha_calls(&s) - before, 1, "one call for both entities");
	cr_assert_eq(rep_wqueue_len(q), 0);
	const char *keys[2] = {"m:r:{net:192.0.2.0/24}", "m:r:{ip:198.51.100.1}"};
	rep_counts_t c[2];
	bool found[2];
	cr_assert_eq(rep_read_counts(l, 2, keys, c, found), 0);
	cr_assert_float_eq(c[0].spam, 5.0, 0.01, "ten spam one half-life old");
	cr_assert_float_eq(c[0].ham, 1.0, 0.01);
	cr_assert(c[0].t >= t0 + 3600 && c[0].t <= t0 + 3605);
	cr_assert_float_eq(c[1].spam, 1.0, 0.01);
	/* The batch key says this batch was applied. */
	redisReply *k = side(&s, "KEYS sift:b:*");
	cr_assert_eq(k->elements, 1);
	cr_assert(strstr(k->element[0]->str, ":test01.") != NULL, "%s", k->element[0]->str);
	freeReplyObject(k);
	rep_wqueue_free(q);
	rep_link_free(l);
	server_free(&s);
}

Test(rep_io, a_batch_whose_reply_was_lost_counts_once, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	rep_link_conf_t lc = writer_conf(s.addr);
	lc.command_timeout_ms = 200;
	rep_link_t *l = rep_link_new(&lc);
	cr_assert(link_wait_up(l, 2000));
	rep_wqueue_t *q = rep_wqueue_new(100, 86400);
	rep_wconf_t wc = wconf(86400, 3600);
	for (int i = 0; i < 3; i++) {
		rep_witem_t it = item("sift:r:{ip:192.0.2.77}");
		it.t = time(NULL);
		rep_wqueue_push(q, &it);
	}
	/*
	 * The call goes out while Redis is busy: the link gives up after 200 ms
	 * and closes; Redis then runs the call anyway, and its reply is lost.
	 */
	redisContext *busy = busy_start(&s, 800);
	sleep_ms(50);
	cr_assert_eq(rep_write_batch(l, q, &wc, NULL), -1, "the reply did not come in time");
	busy_end(busy);
	double v = 0;
	for (long until = mono_ms() + 3000; mono_ms() < until && v < 2.99; sleep_ms(20))
		v = key_spam(&s, "sift:r:{ip:192.0.2.77}");
	cr_assert_float_eq(v, 3.0, 1e-3, "Redis did apply the batch");
	cr_assert_eq(rep_wqueue_len(q), 1, "unconfirmed: still queued");
	/* A verdict after the cut is not part of the frozen batch. */
	rep_witem_t it = item("sift:r:{ip:192.0.2.77}");
	it.t = time(NULL);
	rep_wqueue_push(q, &it);
	cr_assert_eq(write_until(l, q, &wc, 5000), 1, "re-sent: %s", rep_link_error(l));
	cr_assert_float_eq(key_spam(&s, "sift:r:{ip:192.0.2.77}"), 3.0, 1e-3,
	                   "the re-sent batch changed nothing");
	cr_assert_eq(write_until(l, q, &wc, 5000), 1);
	cr_assert_float_eq(key_spam(&s, "sift:r:{ip:192.0.2.77}"), 4.0, 1e-3);
	cr_assert_eq(rep_wqueue_len(q), 0);
	rep_wqueue_free(q);
	rep_link_free(l);
	server_free(&s);
}

/*
 * What the writer puts on the wire per message, measured by Redis itself
 * (total_net_input_bytes) at a realistic mix: 400 messages from 40
 * addresses in 8 networks, 25 sender domains, From mostly the sender's
 * own, a URL domain in half of them out of 30; aggregated over a window
 * that holds 100 messages (20 messages/s over 5 s).
 */
static long long net_in(struct server *s)
{
	return info_field(s, "stats", "total_net_input_bytes:");
}

Test(rep_io, bytes_written_per_message, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	rep_link_conf_t lc = writer_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);
	cr_assert(link_wait_up(l, 2000));
	rep_wqueue_t *q = rep_wqueue_new(10000, 86400);
	rep_wconf_t wc = wconf(86400, 30L * 86400);
	enum { MSGS = 400, WINDOW = 100 };
	unsigned x = 12345;
#define RND(n) ((x = x * 1103515245u + 12345u) >> 16) % (n)
	size_t bytes = 0, b;
	long long in0, in1, side_bytes;
	/* The side connection's own INFO command counts too: measure it. */
	in0 = net_in(&s);
	in1 = net_in(&s);
	side_bytes = in1 - in0;
	in0 = net_in(&s);
	for (int m = 0; m < MSGS; m++) {
		char k[128];
		int ip = (int)RND(40), dom = (int)RND(25);
		bool spam = RND(3) == 0;
		const char *kinds[5];
		char vals[5][64];
		size_t n = 0;
		kinds[n] = "ip";
		snprintf(vals[n++], 64, "192.0.%d.%d", ip % 8, 10 + ip);
		kinds[n] = "net";
		snprintf(vals[n++], 64, "192.0.%d.0/24", ip % 8);
		kinds[n] = "mf";
		snprintf(vals[n++], 64, "sender%d.example", dom);
		kinds[n] = "fd";
		snprintf(vals[n++], 64, "sender%d.example", RND(10) == 0 ? (int)RND(25) : dom);
		if (RND(2)) {
			kinds[n] = "ud";
			snprintf(vals[n++], 64, "link%d.example", (int)RND(30));
		}
		for (size_t i = 0; i < n; i++) {
			snprintf(k, sizeof(k), "sift:r:{%.3s:%.60s}", kinds[i], vals[i]);
			rep_witem_t it = item(k);
			it.t = time(NULL);
			it.spam = spam;
			it.ham = !spam;
			rep_wqueue_push(q, &it);
		}
		if ((m + 1) % WINDOW == 0) {
			while (rep_write_batch(l, q, &wc, &b) > 0)
				bytes += b;
		}
	}
#undef RND
	in1 = net_in(&s);
	long long server_bytes = in1 - in0 - side_bytes;
	double per_msg = (double)server_bytes / MSGS;
	cr_log_info("reputation writes: %lld bytes for %d messages, %.1f bytes per message",
	            server_bytes, MSGS, per_msg);
	fprintf(stderr, "bytes per message written: %.1f (%lld bytes, %d messages)\n", per_msg,
	        server_bytes, MSGS);
	cr_assert_eq((long long)bytes, server_bytes, "the writer's count is what Redis received");
	cr_assert_leq(per_msg, 100.0);
	rep_wqueue_free(q);
	rep_link_free(l);
	server_free(&s);
}

/* ------------------------------------------------------------ block list stream */

Test(rep_stream, mirror_resumes_after_restart_and_link_cut, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	rep_link_conf_t lc = link_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);
	char *dir = tmpdir(), id[64], last[64];
	diag_t *d = diag_new();
	rep_op_t o;

	o = op_add("", "203.0.113.0/24", false, 0);
	cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)), 0, "%s",
	             rep_link_error(l));
	o = op_add("", "spam.example", false, 0);
	cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)), 0);

	rep_mirror_t *m = rep_mirror_open(dir, d);
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 0), 2);
	rep_mirror_last_id(m, last, sizeof(last));
	cr_assert_str_eq(last, id);
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 0), 0, "nothing new");
	rep_mirror_close(m);

	/* Meanwhile (this node down): a delete and an add. */
	o = op_del("", "spam.example");
	rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id));
	o = op_add("", "198.51.100.7", true, 0);
	rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id));

	rep_link_t *l2 = rep_link_new(&lc); /* a new process, a new connection */
	m = rep_mirror_open(dir, d);
	cr_assert_eq(rep_bl_sync(l2, m, "t:", trusting(), 0), 2,
	             "exactly the two missed operations");
	rep_entry_t e;
	cr_assert_eq(rep_mirror_lookup_domain(m, "spam.example", time(NULL), &e), 0);
	rep_addr_t a;
	rep_addr_parse("198.51.100.7", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 1);
	cr_assert(e.allow);

	/* A link cut: Redis goes away and comes back; the mirror keeps answering. */
	server_stop(&s);
	cr_assert_eq(rep_bl_sync(l2, m, "t:", trusting(), 0), -1);
	rep_addr_parse("203.0.113.99", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 1, "local lookups survive");
	server_start(&s, NULL); /* no persistence: Redis lost everything */
	int n = -1;
	for (long until = mono_ms() + 3000; mono_ms() < until && n < 0; sleep_ms(20))
		n = rep_bl_sync(l2, m, "t:", trusting(), 0);
	cr_assert_geq(n, 0);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 1,
	             "an empty Redis does not wipe the mirror");
	o = op_add("", "192.0.2.66", false, 0);
	cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)) == 0 ||
	                 (link_wait_up(l, 3000) &&
	                  rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)) == 0),
	             1);
	cr_assert_eq(rep_bl_sync(l2, m, "t:", trusting(), 0), 1, "new entries still arrive");
	rep_addr_parse("192.0.2.66", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 1);
	rep_mirror_close(m);

	/* A brand-new node starts from the snapshot, not from a replay of the stream. */
	char *dir2 = tmpdir();
	rep_mirror_t *m2 = rep_mirror_open(dir2, d);
	rep_link_t *l3 = rep_link_new(&lc);
	cr_assert_eq(rep_bl_sync(l3, m2, "t:", trusting(), 0), 1);
	cr_assert_eq(rep_mirror_lookup_ip(m2, &a, time(NULL), &e), 1);
	rep_mirror_last_id(m2, last, sizeof(last));
	cr_assert_str_eq(last, id);
	rep_mirror_close(m2);
	rep_link_free(l);
	rep_link_free(l2);
	rep_link_free(l3);
	diag_free(d);
	rmtree(dir);
	rmtree(dir2);
	free(dir);
	free(dir2);
	server_free(&s);
}

Test(rep_stream, a_stream_key_of_another_type_fails_the_link_and_keeps_the_position, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	rep_link_conf_t lc = link_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);
	char *dir = tmpdir(), id[64], last[64];
	diag_t *d = diag_new();
	rep_op_t o = op_add("", "203.0.113.0/24", false, 0);

	cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)), 0);
	rep_mirror_t *m = rep_mirror_open(dir, d);
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 0), 1);

	/* Another program's string where the stream was. */
	freeReplyObject(side(&s, "DEL t:{bl}:log"));
	freeReplyObject(side(&s, "SET t:{bl}:log x"));
	long t0 = mono_ms();
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 200), -1,
	             "WRONGTYPE is a failure, not \"nothing new\" to ask again at once");
	cr_assert(strstr(rep_link_error(l), "WRONGTYPE") != NULL, "the link says why: '%s'",
	          rep_link_error(l));
	/* Reconnections check the position: the error is no empty stream either. */
	for (int i = 0; mono_ms() - t0 < 500; i++, sleep_ms(20))
		cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 200), -1, "step %d", i);
	rep_mirror_last_id(m, last, sizeof(last));
	cr_assert_str_eq(last, id, "the position is kept");

	rep_mirror_close(m);
	rep_link_free(l);
	diag_free(d);
	rmtree(dir);
	free(dir);
	server_free(&s);
}

Test(rep_stream, an_oversize_entry_is_passed_over_not_read_for_ever, .timeout = 30)
{
	/* Anyone who can write to Redis can add one; a signed entry is never this large. */
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	rep_link_conf_t lc = link_conf(s.addr); /* a reply bound of 1 MB */
	rep_link_t *l = rep_link_new(&lc);
	char *dir = tmpdir(), *dir2 = tmpdir(), id[64];
	diag_t *d = diag_new();
	size_t big = 2u << 20;
	char *v = malloc(big);
	rep_entry_t e;
	rep_addr_t a1, a2;
	rep_load_t ls;
	rep_op_t o;

	memset(v, 'x', big);
	rep_addr_parse("192.0.2.1", &a1);
	rep_addr_parse("198.51.100.7", &a2);
	o = op_add("", "192.0.2.1", false, 0);
	cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)), 0);
	rep_mirror_t *m = rep_mirror_open(dir, d);
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 0), 1);

	freeReplyObject(side(&s, "XADD t:{bl}:log * o %b", v, big));
	o = op_add("", "198.51.100.7", false, 0);
	cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)) == 0 ||
	                 (link_wait_up(l, 2000) &&
	                  rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)) == 0),
	             1);
	for (long until = mono_ms() + 3000;
	     mono_ms() < until && rep_mirror_lookup_ip(m, &a2, time(NULL), &e) != 1; sleep_ms(20))
		rep_bl_sync(l, m, "t:", trusting(), 100);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a2, time(NULL), &e), 1,
	             "the entry after the oversize one arrives");

	/* The same in the snapshot: a new node's first load completes. */
	freeReplyObject(side(&s, "HSET t:{bl}:state junk %b", v, big));
	rep_link_t *l2 = rep_link_new(&lc);
	rep_mirror_t *m2 = rep_mirror_open(dir2, d);
	for (long until = mono_ms() + 3000; mono_ms() < until; sleep_ms(20))
		if (rep_bl_sync(l2, m2, "t:", trusting(), 0) >= 0 &&
		    rep_mirror_load_state(m2, &ls) == 0)
			break;
	cr_assert_eq(rep_mirror_load_state(m2, &ls), 0, "the load completed");
	cr_assert_eq(rep_mirror_lookup_ip(m2, &a1, time(NULL), &e), 1);
	cr_assert_eq(rep_mirror_lookup_ip(m2, &a2, time(NULL), &e), 1);

	free(v);
	rep_mirror_close(m);
	rep_mirror_close(m2);
	rep_link_free(l);
	rep_link_free(l2);
	diag_free(d);
	rmtree(dir);
	rmtree(dir2);
	free(dir);
	free(dir2);
	server_free(&s);
}

static size_t mirror_count(rep_mirror_t *m)
{
	rep_entry_t *all;
	size_t n;
	cr_assert_eq(rep_mirror_list(m, &all, &n), 0);
	free(all);
	return n;
}

/* Syncs until a step brings nothing and no snapshot load is left (bounded). */
static void sync_settled(rep_link_t *l, rep_mirror_t *m)
{
	rep_load_t ls;
	for (long until = mono_ms() + 5000; mono_ms() < until; sleep_ms(20))
		if (rep_bl_sync(l, m, "t:", trusting(), 0) == 0 &&
		    rep_mirror_load_state(m, &ls) == 0)
			return;
	cr_assert_fail("the sync did not settle: %s", rep_link_error(l));
}

static void publish_or_fail(rep_link_t *l, const rep_op_t *o, long stream_max)
{
	char id[64];
	for (long until = mono_ms() + 3000; mono_ms() < until; sleep_ms(20))
		if (rep_bl_publish(l, "t:", o, signer(), stream_max, id, sizeof(id)) == 0)
			return;
	cr_assert_fail("publish: %s", rep_link_error(l));
}

Test(rep_stream, a_stream_begun_anew_after_redis_lost_its_data_keeps_the_mirror, .timeout = 30)
{
	NEED_REDIS();
	/* Small stream nodes, so that "MAXLEN ~" trims after a few entries. */
	const char *const extra[] = {"--stream-node-max-entries", "2", NULL};
	struct server s;
	server_new(&s, extra);
	rep_link_conf_t lc = link_conf(s.addr);
	rep_link_t *pub = rep_link_new(&lc), *node = rep_link_new(&lc);
	char *dir = tmpdir();
	diag_t *d = diag_new();
	rep_mirror_t *m = rep_mirror_open(dir, d);
	rep_entry_t e;
	rep_addr_t a1, a2, a3;
	rep_op_t o;

	rep_addr_parse("192.0.2.1", &a1);
	rep_addr_parse("198.51.100.9", &a2);
	rep_addr_parse("203.0.113.5", &a3);
	o = op_add("", "192.0.2.1", false, 0);
	publish_or_fail(pub, &o, 2);
	o = op_add("", "198.51.100.0/24", false, 0);
	publish_or_fail(pub, &o, 2);
	sync_settled(node, m);
	cr_assert_eq(mirror_count(m), 2);

	/* Trimmed past our position while away: the snapshot brings the deletion we missed. */
	o = op_del("", "192.0.2.1");
	publish_or_fail(pub, &o, 2);
	for (int i = 0; i < 8; i++) {
		char t[32];
		snprintf(t, sizeof(t), "192.0.2.%d", 100 + i);
		o = op_add("", t, false, 0);
		publish_or_fail(pub, &o, 2);
	}
	rep_link_fail(node, "test: link cut");
	sync_settled(node, m);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a1, time(NULL), &e), 0,
	             "a deletion in the trimmed part of the stream is learnt from the snapshot");
	cr_assert_eq(rep_mirror_lookup_ip(m, &a2, time(NULL), &e), 1);

	/*
	 * Redis restarts without its data and a publisher adds an entry before
	 * this node reconnects: the new stream also starts after our position,
	 * but nothing was trimmed from it. The mirror is the better copy.
	 */
	server_stop(&s);
	cr_assert_eq(rep_bl_sync(node, m, "t:", trusting(), 0), -1);
	server_start(&s, extra);
	o = op_add("", "203.0.113.5", false, 0);
	publish_or_fail(pub, &o, 2);
	sync_settled(node, m);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a2, time(NULL), &e), 1,
	             "Redis lost its data: the mirror keeps its entries");
	cr_assert_eq(rep_mirror_lookup_ip(m, &a3, time(NULL), &e), 1, "and follows the new stream");

	rep_mirror_close(m);
	rep_link_free(pub);
	rep_link_free(node);
	diag_free(d);
	rmtree(dir);
	free(dir);
	server_free(&s);
}

Test(rep_stream, a_first_load_resumed_on_a_restarted_redis_misses_no_entry, .timeout = 60)
{
	/*
	 * Redis seeds its hash function at start: a scan cursor resumed on
	 * another process skips entries, and the end of the load dropped them.
	 */
	NEED_REDIS();
	const char *const aof[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
	enum { N = 1000 };
	struct server s;
	server_new(&s, aof);
	rep_link_conf_t lc = link_conf(s.addr);
	rep_link_t *pub = rep_link_new(&lc), *node = rep_link_new(&lc);
	char *dir = tmpdir(), id[64];
	diag_t *d = diag_new();
	rep_load_t ls;

	for (int i = 0; i < N; i++) {
		char t[32];
		snprintf(t, sizeof(t), "10.%d.%d.1", i / 250, i % 250);
		rep_op_t o = op_add("", t, false, 0);
		cr_assert_eq(rep_bl_publish(pub, "t:", &o, signer(), 100000, id, sizeof(id)), 0);
	}
	rep_mirror_t *m = rep_mirror_open(dir, d);
	cr_assert_gt(rep_bl_sync(node, m, "t:", trusting(), 0), 0, "the first chunk");
	cr_assert_eq(rep_mirror_load_state(m, &ls), 1, "the load is under way");

	server_stop(&s);
	server_start(&s, aof); /* the same data, a new process */
	int n = 0;
	for (long until = mono_ms() + 10000; mono_ms() < until; sleep_ms(10)) {
		n = rep_bl_sync(node, m, "t:", trusting(), 0);
		if (n == 0 && rep_mirror_load_state(m, &ls) == 0)
			break;
	}
	cr_assert_eq(rep_mirror_load_state(m, &ls), 0, "the load completed");
	cr_assert_eq(mirror_count(m), N, "every entry of the snapshot is in the mirror");

	rep_mirror_close(m);
	rep_link_free(pub);
	rep_link_free(node);
	diag_free(d);
	rmtree(dir);
	free(dir);
	server_free(&s);
}

Test(rep_stream, only_entries_signed_by_trusted_keys_are_applied, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	rep_link_conf_t lc = link_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);
	char *dir = tmpdir(), id[64], buf[REP_SOP_MAX_BYTES];
	diag_t *d = diag_new();
	rep_mirror_t *m = rep_mirror_open(dir, d);
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 0), 0);

	/* Unsigned, as the earlier format; a forged signature; an unknown key; too broad. */
	freeReplyObject(
	    side(&s, "XADD t:{bl}:log * op add target 0.0.0.0/0 entry %s", "block|0|0|rogue|all"));
	rep_op_t o = op_add("", "0.0.0.0/1", false, 0);
	int n = rep_sop_encode(&o, signer(), buf, sizeof(buf));
	memset(buf, 0, REP_SIG_BYTES);
	freeReplyObject(side(&s, "XADD t:{bl}:log * o %b", buf, (size_t)n));
	struct pub rogue = publisher("rogue", 2);
	o = op_add("", "198.51.100.0/24", false, 0);
	snprintf(o.e.by, sizeof(o.e.by), "rogue");
	cr_assert_eq(rep_bl_publish(l, "t:", &o, &rogue.s, 1000, id, sizeof(id)), 0);
	o = op_add("", "0.0.0.0/0", false, 0);
	cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)), 0);
	/* And one good entry. */
	o = op_add("", "192.0.2.7", false, 0);
	cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)), 0);

	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 0), 5, "all five read");
	rep_entry_t *all;
	size_t k;
	cr_assert_eq(rep_mirror_list(m, &all, &k), 0);
	cr_assert_eq(k, 1, "only the good one applied");
	char tgt[64];
	rep_target_format(&all[0].target, tgt, sizeof(tgt));
	cr_assert_str_eq(tgt, "192.0.2.7");
	cr_assert_str_eq(all[0].by, "t1");
	free(all);
	rep_addr_t a;
	rep_entry_t e;
	rep_addr_parse("198.51.100.1", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 0);
	char last[64];
	rep_mirror_last_id(m, last, sizeof(last));
	cr_assert_str_eq(last, id, "the position moved past the rejected entries");
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 0), 0, "and they are not read again");
	/* A node that trusts no key takes nothing from Redis, the good entry included. */
	char *dir0 = tmpdir();
	rep_mirror_t *m0 = rep_mirror_open(dir0, d);
	rep_bl_conf_t none = trust_conf("");
	cr_assert_geq(rep_bl_sync(l, m0, "t:", &none, 0), 0);
	cr_assert_eq(mirror_count(m0), 0);
	rep_mirror_close(m0);
	rmtree(dir0);
	free(dir0);

	/* A rogue replays the signed "add" after its "del": nothing changes. */
	o = op_add("", "203.0.113.0/24", false, 0);
	cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)), 0);
	redisReply *r = side(&s, "XRANGE t:{bl}:log %s %s", id, id);
	cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
	const redisReply *f = r->element[0]->element[1];
	cr_assert_str_eq(f->element[0]->str, "o");
	size_t blen = f->element[1]->len;
	memcpy(buf, f->element[1]->str, blen);
	freeReplyObject(r);
	o.del = true;
	o.e.stamp++;
	cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 1000, id, sizeof(id)), 0);
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 0), 2);
	freeReplyObject(side(&s, "XADD t:{bl}:log * o %b", buf, blen));
	freeReplyObject(side(&s, "HSET t:{bl}:state 203.0.113.0/24 %b", buf, blen));
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 0), 1);
	rep_addr_parse("203.0.113.5", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 0, "the replayed add is ignored");

	/* New trust settings reload the list: the rogue's entry, now trusted, arrives. */
	char text[512];
	snprintf(text, sizeof(text), "%sblock_trusted_key = rogue %s\n", trust_line(), rogue.b64);
	rep_bl_conf_t both = trust_conf(text);
	for (int i = 0; i < 5 && rep_bl_sync(l, m, "t:", &both, 0) > 0;)
		i++;
	rep_addr_parse("198.51.100.1", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 1);
	rep_addr_parse("203.0.113.5", &a);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 0,
	             "the tombstone outlives the reload");

	rep_mirror_close(m);
	rep_link_free(l);
	diag_free(d);
	rmtree(dir);
	free(dir);
	server_free(&s);
}

static long long cmd_calls(struct server *s, const char *cmd)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "cmdstat_%s:calls=", cmd);
	return info_field(s, "commandstats", pat);
}

/* Steps until the load is done; returns the steps that failed. */
static int sync_until_loaded(rep_link_t *l, rep_mirror_t *m, const rep_bl_conf_t *bc)
{
	rep_load_t ls;
	int failed = 0;
	for (long until = mono_ms() + 10000; mono_ms() < until;) {
		if (rep_bl_sync(l, m, "t:", bc, 0) < 0) {
			failed++;
			sleep_ms(30);
		} else if (rep_mirror_load_state(m, &ls) == 0) {
			return failed;
		}
	}
	cr_assert_fail("the load did not complete");
	return failed;
}

Test(rep_stream, a_cut_first_load_resumes_from_the_recorded_cursor, .timeout = 60)
{
	NEED_REDIS();
	/* A real hash table (not a listpack), so HSCAN returns small chunks. */
	const char *extra[] = {"--hash-max-listpack-entries", "0", NULL};
	struct server s;
	server_new(&s, extra);
	rep_link_conf_t lc = link_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);
	char *dir = tmpdir(), *ref = tmpdir(), id[64], last[64];
	diag_t *d = diag_new();
	enum { ENTRIES = 400 };
	rep_bl_conf_t bc = *trusting();
	bc.batch = 40;

	for (int i = 0; i < ENTRIES; i++) {
		char t[32];
		snprintf(t, sizeof(t), "10.%d.%d.1", i / 200, i % 200);
		rep_op_t o = op_add("", t, false, 0);
		cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 100000, id, sizeof(id)), 0);
	}

	/* How many chunks a load costs without a cut. */
	rep_mirror_t *r = rep_mirror_open(ref, d);
	long long h0 = cmd_calls(&s, "hscan");
	cr_assert_eq(sync_until_loaded(l, r, &bc), 0);
	long long uncut = cmd_calls(&s, "hscan") - h0;
	cr_assert_eq(mirror_count(r), ENTRIES);
	cr_assert_gt(uncut, 4, "small chunks: %lld", uncut);
	rep_mirror_close(r);

	/* A new node: three chunks, then the link is cut. */
	rep_mirror_t *m = rep_mirror_open(dir, d);
	rep_load_t ls, after;
	h0 = cmd_calls(&s, "hscan");
	for (int i = 0; i < 3; i++)
		cr_assert_geq(rep_bl_sync(l, m, "t:", &bc, 0), 0);
	cr_assert_eq(rep_mirror_load_state(m, &ls), 1, "still loading");
	cr_assert_str_neq(ls.cursor, "0");
	cr_assert_str_eq(ls.base, id, "the stream position was taken before the scan");
	size_t partial = mirror_count(m);
	cr_assert(partial > 0 && partial < ENTRIES, "%zu", partial);
	freeReplyObject(side(&s, "CLIENT KILL TYPE normal"));
	cr_assert_lt(rep_bl_sync(l, m, "t:", &bc, 0), 0, "the cut is noticed");
	cr_assert_eq(rep_mirror_load_state(m, &after), 1);
	cr_assert_str_eq(after.cursor, ls.cursor, "the recorded position survived the cut");
	cr_assert_eq(mirror_count(m), partial, "and the entries loaded so far");

	/* Two more chunks, then the node restarts (a new process: mirror and link reopened). */
	for (int i = 0; i < 2; i++)
		while (rep_bl_sync(l, m, "t:", &bc, 0) < 0)
			sleep_ms(30);
	rep_mirror_load_state(m, &ls);
	rep_mirror_close(m);
	rep_link_free(l);
	l = rep_link_new(&lc);
	m = rep_mirror_open(dir, d);
	cr_assert_eq(rep_mirror_load_state(m, &after), 1);
	cr_assert_str_eq(after.cursor, ls.cursor);
	sync_until_loaded(l, m, &bc);
	long long cut = cmd_calls(&s, "hscan") - h0;
	cr_assert_leq(cut, uncut + 1, "resumed: %lld HSCAN calls with the cuts, %lld without", cut,
	              uncut);
	cr_assert_eq(mirror_count(m), ENTRIES);
	rep_mirror_last_id(m, last, sizeof(last));
	cr_assert_str_eq(last, id);
	cr_assert_eq(rep_bl_sync(l, m, "t:", &bc, 0), 0, "then the stream, from the base id");

	/*
	 * A reload (new trust settings) keeps answering from the old entries
	 * until it completes, then drops what the snapshot no longer has.
	 */
	freeReplyObject(side(&s, "HDEL t:{bl}:state 10.0.0.1"));
	rep_bl_conf_t bc2 = bc;
	bc2.min_prefix4 = 17;
	rep_addr_t a;
	rep_entry_t e;
	rep_addr_parse("10.0.0.1", &a);
	cr_assert_geq(rep_bl_sync(l, m, "t:", &bc2, 0), 0);
	cr_assert_eq(rep_mirror_load_state(m, &ls), 1);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 1, "served during the load");
	cr_assert_eq(mirror_count(m), ENTRIES);
	sync_until_loaded(l, m, &bc2);
	cr_assert_eq(rep_mirror_lookup_ip(m, &a, time(NULL), &e), 0);
	cr_assert_eq(mirror_count(m), ENTRIES - 1);

	/* Stream catch-up goes in batches too. */
	for (int i = 0; i < 100; i++) {
		char t[32];
		snprintf(t, sizeof(t), "10.9.%d.1", i);
		rep_op_t o = op_add("", t, false, 0);
		cr_assert_eq(rep_bl_publish(l, "t:", &o, signer(), 100000, id, sizeof(id)), 0);
	}
	cr_assert_eq(rep_bl_sync(l, m, "t:", &bc2, 0), 40);
	cr_assert_eq(rep_bl_sync(l, m, "t:", &bc2, 0), 40);
	cr_assert_eq(rep_bl_sync(l, m, "t:", &bc2, 0), 20);

	rep_mirror_close(m);
	rep_link_free(l);
	diag_free(d);
	rmtree(dir);
	rmtree(ref);
	free(dir);
	free(ref);
	server_free(&s);
}

Test(rep_stream, blocking_read_delivers_promptly, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	server_new(&s, NULL);
	rep_link_conf_t lc = link_conf(s.addr);
	lc.extra_read_ms = 2000;
	rep_link_t *l = rep_link_new(&lc);
	char *dir = tmpdir();
	diag_t *d = diag_new();
	rep_mirror_t *m = rep_mirror_open(dir, d);
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 0), 0);
	pid_t pid = fork();
	if (pid == 0) {
		sleep_ms(300);
		rep_link_t *w = rep_link_new(&lc);
		rep_op_t o = op_add("", "192.0.2.5", false, 0);
		char id[64];
		_exit(rep_bl_publish(w, "t:", &o, signer(), 1000, id, sizeof(id)) == 0 ? 0 : 1);
	}
	long t0 = mono_ms();
	cr_assert_eq(rep_bl_sync(l, m, "t:", trusting(), 1500), 1);
	long dt = mono_ms() - t0;
	cr_assert_lt(dt, 1000, "arrived after %ld ms, not at the end of the wait", dt);
	int st;
	waitpid(pid, &st, 0);
	cr_assert_eq(WEXITSTATUS(st), 0);
	rep_mirror_close(m);
	rep_link_free(l);
	diag_free(d);
	rmtree(dir);
	free(dir);
	server_free(&s);
}

/* ------------------------------------------------------------ two nodes, one Redis */

struct node {
	char *dir;
	conf_t *conf;
	void *shared;
};

static void node_load(struct node *n, struct server *s, const char *extra)
{
	char text[1024];
	diag_t *d = diag_new();
	if (n->dir == NULL)
		n->dir = tmpdir();
	snprintf(text, sizeof(text),
	         "redis_server = %s\nredis_prefix = n:\nredis_connect_timeout = 200ms\n"
	         "redis_command_timeout = 200ms\nrep_write_window = 50ms\n"
	         "redis_breaker_failures = 2\nredis_breaker_time = 300ms\n"
	         "rep_min_observations = 3\nblock_sync_wait = 200ms\n%s%s",
	         s->addr, trust_line(), extra ? extra : "");
	n->conf = conf_parse("node.conf", text, d);
	cr_assert_not_null(n->conf);
	ev_env_t env = {.state_dir = n->dir, .offline = false};
	n->shared = ev_started(&rep_evidence, rep_evidence.load(n->conf, NULL, &env, d), &env, d);
	cr_assert_not_null(n->shared, "%s", diag_count(d) ? diag_text(d, 0) : "");
	diag_free(d);
	/* The readers connect in the background; their handshake measures the round trip. */
	sleep_ms(150);
}

static void node_free(struct node *n)
{
	rep_evidence.release(n->shared);
	conf_free(n->conf);
	rmtree(n->dir);
	free(n->dir);
}

static ev_status_t node_last_status; /* what the last node_msg()'s score() said */

/* One message from ip through a node; other_score is what the other evidence said. */
static hits_t *node_msg(struct node *n, msg_t *m, const char *ip, double other_score,
                        long *elapsed_ms)
{
	ev_conn_info_t ci = {.client_ip = ip};
	void *conn = rep_evidence.conn_begin(n->shared, &ci);
	msg_set_client(m, ip, NULL);
	msg_set_mail_from(m, "<bulk@mailer.spammer.example>");
	msg_add_header(m, "From", "Bulk <bulk@spammer.example>");
	hits_t *h = hits_new(msg_arena(m));
	hits_add(h, "rules", "OTHER", other_score, NULL, NULL);
	ev_score_ctx_t ctx = {.deadline_ms = mono_ms() + 2000, .explain = true};
	long t0 = mono_ms();
	node_last_status = rep_evidence.score(n->shared, conn, m, NULL, h, &ctx);
	if (elapsed_ms)
		*elapsed_ms = mono_ms() - t0;
	rep_evidence.verdict(n->shared, conn, m, NULL, h, hits_total(h), 0);
	rep_evidence.conn_end(n->shared, conn);
	return h;
}

static bool has_hit(hits_t *h, const char *name)
{
	return hits_has(h, name);
}

/* True when a note of the explanation contains both strings. */
static bool has_note(hits_t *h, const char *a, const char *b)
{
	for (size_t i = 0; i < hits_note_count(h); i++) {
		const char *t = hits_note_at(h, i, NULL);
		if (strstr(t, a) && strstr(t, b))
			return true;
	}
	/* What there was instead, for the failure's report. */
	for (size_t i = 0; i < hits_note_count(h); i++)
		fprintf(stderr, "  note: %s\n", hits_note_at(h, i, NULL));
	return false;
}

Test(rep_nodes, nodes_share_reputation_and_blocks_and_ride_out_outages, .timeout = 60)
{
	NEED_REDIS();
	struct server s;
	struct node a = {0}, b = {0};
	server_new(&s, NULL);
	node_load(&a, &s, NULL);
	node_load(&b, &s, NULL);
	const char *ip = "192.0.2.50";

	/* Spam verdicts on A... */
	for (int i = 0; i < 5; i++) {
		msg_t *m = msg_new(1 << 20);
		node_msg(&a, m, ip, 10, NULL);
		msg_free(m);
	}
	for (long until = mono_ms() + 3000; mono_ms() < until; sleep_ms(20))
		if (key_spam(&s, "n:r:{ip:192.0.2.50}") >= 4.99)
			break;
	cr_assert_float_eq(key_spam(&s, "n:r:{ip:192.0.2.50}"), 5.0, 0.01);
	cr_assert_float_eq(key_spam(&s, "n:r:{mf:spammer.example}"), 5.0, 0.01,
	                   "domains reduced to the registrable part");
	cr_assert_float_eq(key_spam(&s, "n:r:{net:192.0.2.0/24}"), 5.0, 0.01);

	/* ...raise the score of the same IP on B. */
	msg_t *m = msg_new(1 << 20);
	hits_t *h = node_msg(&b, m, ip, 0, NULL);
	cr_assert(has_hit(h, "REP_IP_SPAM"));
	cr_assert(has_hit(h, "REP_NET_SPAM"));
	cr_assert(has_hit(h, "REP_MAILFROM_SPAM"));
	cr_assert(has_hit(h, "REP_FROM_SPAM"));
	cr_assert_gt(hits_total(h), 3.0);
	cr_assert_eq(node_last_status, EV_OK);
	cr_assert_gt(hits_note_count(h), 0, "explained for sift check");
	msg_free(m);
	/* A first-time address scores nothing from reputation. */
	m = msg_new(1 << 20);
	h = node_msg(&b, m, "198.51.100.1", 0, NULL);
	cr_assert_not(has_hit(h, "REP_IP_SPAM"));
	msg_free(m);

	/* A block published through Redis is enforced on B within a second. */
	rep_link_conf_t lc = link_conf(s.addr);
	rep_link_t *l = rep_link_new(&lc);
	rep_op_t o = op_add("", "203.0.113.0/24", false, 0);
	char id[64];
	cr_assert_eq(rep_bl_publish(l, "n:", &o, signer(), 1000, id, sizeof(id)), 0);
	long t0 = mono_ms();
	bool blocked = false;
	while (!blocked && mono_ms() - t0 < 1000) {
		m = msg_new(1 << 20);
		blocked = has_hit(node_msg(&b, m, "203.0.113.9", 0, NULL), "BLOCKLIST_IP");
		msg_free(m);
		if (!blocked)
			sleep_ms(20);
	}
	cr_assert(blocked, "enforced after %ld ms", mono_ms() - t0);

	/* Redis stopped: both nodes keep scoring, fast, from local state; writes queue. */
	server_stop(&s);
	int degraded = 0;
	for (int i = 0; i < 6; i++) {
		long dt;
		m = msg_new(1 << 20);
		h = node_msg(i % 2 ? &b : &a, m, i < 3 ? "203.0.113.9" : ip, 10, &dt);
		cr_assert_lt(dt, 450, "message %d waited %ld ms", i, dt);
		if (i < 3)
			cr_assert(has_hit(h, "BLOCKLIST_IP"), "the mirror answers without Redis");
		/* A dead Redis degrades the verdict (cached answers aside); never an error. */
		cr_assert_neq(node_last_status, EV_ERROR, "message %d", i);
		degraded += node_last_status == EV_DEGRADED;
		msg_free(m);
	}
	cr_assert_gt(degraded, 0, "no message said reputation was unavailable");
	/* Redis is back (empty: no persistence): the queued verdicts are replayed. */
	server_start(&s, NULL);
	double v = 0;
	for (long until = mono_ms() + 8000; mono_ms() < until && v < 2.99; sleep_ms(50))
		v = key_spam(&s, "n:r:{ip:192.0.2.50}");
	cr_assert_float_eq(v, 3.0, 0.01, "the three verdicts given during the outage");
	rep_link_free(l);
	node_free(&a);
	node_free(&b);
	server_free(&s);
}

Test(rep_nodes, unwritten_updates_survive_a_restart_of_the_node, .timeout = 60)
{
	NEED_REDIS();
	struct server s;
	struct node a = {0};
	server_new(&s, NULL);
	server_stop(&s);
	node_load(&a, &s, NULL);
	for (int i = 0; i < 3; i++) {
		msg_t *m = msg_new(1 << 20);
		node_msg(&a, m, "192.0.2.33", 10, NULL);
		msg_free(m);
	}
	/* Shut down while Redis is away: the three updates go to the mirror... */
	rep_evidence.release(a.shared);
	conf_free(a.conf);
	server_start(&s, NULL);
	/* ...and the next start writes them. */
	node_load(&a, &s, NULL);
	double v = 0;
	for (long until = mono_ms() + 5000; mono_ms() < until && v < 2.99; sleep_ms(20))
		v = key_spam(&s, "n:r:{ip:192.0.2.33}");
	cr_assert_float_eq(v, 3.0, 0.01);
	node_free(&a);
	server_free(&s);
}

Test(rep_nodes, reload_keeps_the_runtime_and_its_queue, .timeout = 60)
{
	NEED_REDIS();
	struct server s;
	struct node a = {0};
	diag_t *d = diag_new();
	server_new(&s, NULL);
	server_stop(&s);
	node_load(&a, &s, NULL);
	for (int i = 0; i < 2; i++) {
		msg_t *m = msg_new(1 << 20);
		node_msg(&a, m, "192.0.2.44", 10, NULL);
		msg_free(m);
	}
	/* A reload with the same Redis settings (another score changes). */
	char text[1024];
	snprintf(text, sizeof(text),
	         "redis_server = %s\nredis_prefix = n:\nredis_connect_timeout = 200ms\n"
	         "redis_command_timeout = 200ms\nrep_write_window = 50ms\n"
	         "redis_breaker_failures = 2\nredis_breaker_time = 300ms\n"
	         "rep_min_observations = 5\nblock_sync_wait = 200ms\n%s",
	         s.addr, trust_line());
	conf_t *c2 = conf_parse("reload.conf", text, d);
	ev_env_t env = {.state_dir = a.dir, .offline = false};
	void *g2 = ev_started(&rep_evidence, rep_evidence.load(c2, a.shared, &env, d), &env, d);
	cr_assert_not_null(g2);
	rep_evidence.release(a.shared); /* the old generation ends */
	conf_free(a.conf);
	a.shared = g2;
	a.conf = c2;
	/* The queue lived on in memory: Redis back, the two updates arrive without a restart. */
	server_start(&s, NULL);
	double v = 0;
	for (long until = mono_ms() + 5000; mono_ms() < until && v < 1.99; sleep_ms(20))
		v = key_spam(&s, "n:r:{ip:192.0.2.44}");
	cr_assert_float_eq(v, 2.0, 0.01);
	diag_free(d);
	node_free(&a);
	server_free(&s);
}

Test(rep_nodes, without_redis_the_local_mirror_still_answers)
{
	char *dir = tmpdir(), text[256];
	diag_t *d = diag_new();
	rep_mirror_t *mm = rep_mirror_open(dir, d);
	rep_op_t ops[2] = {op_add("", "192.0.2.0/24", false, 0), op_add("", "ok.example", true, 0)};
	cr_assert_eq(rep_mirror_apply(mm, ops, 2), 2);
	rep_mirror_close(mm);

	snprintf(text, sizeof(text), "block_mirror = %s\n", dir);
	conf_t *c = conf_parse("local.conf", text, d);
	ev_env_t env = {.state_dir = "/nonexistent", .offline = true};
	void *sh = ev_started(&rep_evidence, rep_evidence.load(c, NULL, &env, d), &env, d);
	cr_assert_not_null(sh);
	ev_conn_info_t ci = {.client_ip = "192.0.2.1"};
	void *conn = rep_evidence.conn_begin(sh, &ci);
	msg_t *m = msg_new(1 << 20);
	msg_set_client(m, "192.0.2.1", NULL);
	hits_t *h = hits_new(msg_arena(m));
	ev_score_ctx_t ctx = {.deadline_ms = mono_ms() + 1000};
	rep_evidence.score(sh, conn, m, NULL, h, &ctx);
	cr_assert(hits_has(h, "BLOCKLIST_IP"));
	cr_assert_float_eq(hits_total(h), 100.0, 1e-9);
	msg_free(m);
	rep_evidence.conn_end(sh, conn);

	m = msg_new(1 << 20);
	msg_set_mail_from(m, "<a@mx.ok.example>");
	h = hits_new(msg_arena(m));
	rep_evidence.score(sh, NULL, m, NULL, h, &ctx);
	cr_assert(hits_has(h, "ALLOWLIST_DOMAIN"));
	msg_free(m);
	rep_evidence.release(sh);
	conf_free(c);
	diag_free(d);
	rmtree(dir);
	free(dir);
}

static long long hmget_calls(struct server *s)
{
	return info_field(s, "commandstats", "cmdstat_hmget:calls=");
}

/*
 * The HMGET count once it has reached want (bounded wait) and then stayed
 * put for 100 ms, so reads still in flight are counted and extra ones show.
 */
static long long settled_hmget_calls(struct server *s, long long want)
{
	long long n = hmget_calls(s);
	for (int i = 0; i < 100 && n < want; i++) {
		sleep_ms(30);
		n = hmget_calls(s);
	}
	for (int i = 0; i < 50; i++) {
		sleep_ms(100);
		long long again = hmget_calls(s);
		if (again == n)
			break;
		n = again;
	}
	return n;
}

Test(rep_nodes, repeated_entities_are_served_from_the_cache, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	struct node a = {0}, b = {0};
	server_new(&s, NULL);
	node_load(&a, &s, NULL);
	node_load(&b, &s, "rep_cache_time = 0\n");
	/*
	 * A message waits for its reads only once the reader has measured the
	 * link's round trip; before that (a slow start, a loaded machine) the
	 * reads run just after it. Either way they are made: count them when
	 * they have arrived, not at the instant the message returns.
	 */
	long long base = hmget_calls(&s), before = base, calls[4];
	for (int i = 0; i < 4; i++) {
		msg_t *m = msg_new(1 << 20);
		/* Scored 2: neither spam nor ham, so no write (the Lua script HMGETs too). */
		node_msg(i < 2 ? &a : &b, m, "192.0.2.90", 2, NULL);
		msg_free(m);
		calls[i] = settled_hmget_calls(&s, i == 1 ? before : before + 4);
		before = calls[i];
	}
	cr_assert_eq(calls[0] - base, 4, "ip, net, MAIL FROM and From domains read once");
	cr_assert_eq(calls[1] - calls[0], 0, "and then served from the cache");
	cr_assert_eq(calls[2] - calls[1], 4, "without a cache, every message reads (%lld)",
	             calls[2] - calls[1]);
	cr_assert_eq(calls[3] - calls[2], 4);
	node_free(&a);
	node_free(&b);
	server_free(&s);
}

/*
 * A Redis as far away as a 600 ms round trip: a child keeps the server in
 * back-to-back busy scripts of ms each, so every other client's command
 * waits for the one running to end. Stopped by PID (or with the test).
 */
static pid_t slow_start(struct server *s, long ms)
{
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		struct timeval tv = {5, 0};
		redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
		for (long until = mono_ms() + 60000; c && !c->err && mono_ms() < until;) {
			redisReply *r = redisCommand(c, "EVAL %s 0 %ld", busy_script, ms);
			if (r == NULL)
				break;
			freeReplyObject(r);
		}
		_exit(0);
	}
	sleep_ms(100);
	return pid;
}

static void slow_stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void node_load_text(struct node *n, const char *text)
{
	diag_t *d = diag_new();
	n->dir = tmpdir();
	n->conf = conf_parse("node.conf", text, d);
	cr_assert_not_null(n->conf);
	ev_env_t env = {.state_dir = n->dir, .offline = false};
	n->shared = ev_started(&rep_evidence, rep_evidence.load(n->conf, NULL, &env, d), &env, d);
	cr_assert_not_null(n->shared, "%s", diag_count(d) ? diag_text(d, 0) : "");
	diag_free(d);
}

Test(rep_nodes, defaults_work_over_a_600ms_round_trip_and_messages_never_wait, .timeout = 90)
{
	NEED_REDIS();
	struct server s;
	struct node a = {0};
	char text[512];
	server_new(&s, NULL);
	/* The network's reputation is known in Redis before the node starts. */
	freeReplyObject(
	    side(&s, "HSET n:r:{net:192.0.2.0/24} s 20 h 0 t %lld", (long long)time(NULL)));
	pid_t slow = slow_start(&s, 600);
	/* Only what the test needs changed: every timeout is the default. */
	snprintf(text, sizeof(text),
	         "redis_server = %s\nredis_prefix = n:\nrep_min_observations = 3\n"
	         "rep_write_window = 200ms\n",
	         s.addr);
	node_load_text(&a, text);

	int sent = 0, first_known = -1, late = 0;
	long worst = 0;
	for (long until = mono_ms() + 20000; mono_ms() < until && first_known < 0; sleep_ms(200)) {
		long dt;
		msg_t *m = msg_new(1 << 20);
		hits_t *h = node_msg(&a, m, "192.0.2.61", 10, &dt);
		if (dt > worst)
			worst = dt;
		late += dt >= 20 + 40;
		if (sent == 0)
			cr_assert(has_note(h, "NET 192.0.2.0/24", "not yet known"),
			          "the explanation says what was missing");
		if (has_hit(h, "REP_NET_SPAM")) {
			first_known = sent;
			cr_assert(has_note(h, "NET 192.0.2.0/24", "cached"),
			          "and where the counts came from");
		}
		sent++;
		msg_free(m);
	}
	/*
	 * Each waits rep_read_wait (20 ms) at most; on a busy runner one may be
	 * descheduled past that, but none waits anywhere near a round trip.
	 */
	cr_assert_leq(late, 1, "%d of %d messages waited 60 ms or more", late, sent);
	cr_assert_lt(worst, 300, "a message waited %ld ms on a 600 ms link", worst);
	cr_assert_geq(first_known, 0, "a later message got the counts from the cache");
	cr_assert_gt(first_known, 0, "the first message did not wait for the far Redis");
	/* Every verdict lands, through the default connect and command timeouts. */
	double v = 0;
	for (long until = mono_ms() + 30000; mono_ms() < until && v < sent - 0.01; sleep_ms(300))
		v = key_spam(&s, "n:r:{ip:192.0.2.61}");
	cr_assert_float_eq(v, (double)sent, 0.01, "%d messages", sent);
	slow_stop(slow);
	node_free(&a);
	server_free(&s);
}

Test(rep_nodes, verdicts_on_one_entity_are_written_as_one_increment, .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	struct node a = {0};
	char text[512];
	server_new(&s, NULL);
	snprintf(text, sizeof(text),
	         "redis_server = %s\nredis_prefix = n:\nrep_write_window = 2s\n", s.addr);
	node_load_text(&a, text);
	sleep_ms(150); /* the readers connect and measure the link */
	long long before = evalsha_calls(&s);
	for (int i = 0; i < 20; i++) {
		msg_t *m = msg_new(1 << 20);
		node_msg(&a, m, "192.0.2.80", 10, NULL);
		msg_free(m);
	}
	double v = 0;
	for (long until = mono_ms() + 8000; mono_ms() < until && v < 19.99; sleep_ms(50))
		v = key_spam(&s, "n:r:{ip:192.0.2.80}");
	cr_assert_float_eq(v, 20.0, 0.01);
	cr_assert_eq(evalsha_calls(&s) - before, 1,
	             "20 messages, 4 entities each: one call, one increment of 20 each");
	cr_assert_float_eq(key_spam(&s, "n:r:{mf:spammer.example}"), 20.0, 0.01);
	node_free(&a);
	server_free(&s);
}

Test(rep_nodes, own_verdicts_count_at_once_and_stale_counts_are_served_while_refreshed,
     .timeout = 30)
{
	NEED_REDIS();
	struct server s;
	struct node a = {0};
	char text[512];
	server_new(&s, NULL);
	/*
	 * Never waits, writes late: all the node knows must come from its
	 * cache. The cache time leaves room for a slow (sanitizer) build
	 * between the first read and the "cached" checks.
	 */
	snprintf(text, sizeof(text),
	         "redis_server = %s\nredis_prefix = n:\nrep_min_observations = 2\n"
	         "rep_read_wait = 0\nrep_write_window = 30s\nrep_cache_time = 1500ms\n",
	         s.addr);
	node_load_text(&a, text);
	sleep_ms(150);
	const char *ip = "192.0.2.95";
	msg_t *m = msg_new(1 << 20);
	hits_t *h = node_msg(&a, m, ip, 10, NULL);
	/* The CONNECT read, not waited for, may or may not be back already. */
	cr_assert(has_note(h, "IP 192.0.2.95", "not yet known") ||
	          has_note(h, "IP 192.0.2.95", "fresh from Redis"));
	cr_assert(has_note(h, "MAILFROM spammer.example", "not yet known"));
	cr_assert_eq(node_last_status, EV_DEGRADED, "judged on less");
	msg_free(m);
	sleep_ms(100); /* the background read lands in the cache */
	for (int i = 0; i < 2; i++) {
		m = msg_new(1 << 20);
		h = node_msg(&a, m, ip, 10, NULL);
		cr_assert(has_note(h, "IP 192.0.2.95", "cached"), "message %d", i + 2);
		msg_free(m);
	}
	/* Three spam verdicts, none written yet: this node already counts them. */
	m = msg_new(1 << 20);
	h = node_msg(&a, m, ip, 2, NULL);
	cr_assert(has_hit(h, "REP_IP_SPAM"));
	cr_assert(has_note(h, "IP 192.0.2.95: spam 3.0", "cached"));
	cr_assert_eq(node_last_status, EV_OK);
	msg_free(m);
	cr_assert_float_eq(key_spam(&s, "n:r:{ip:192.0.2.95}"), 0.0, 1e-9, "nothing written");

	/* Past rep_cache_time: served stale, refreshed in the background. */
	freeReplyObject(
	    side(&s, "HSET n:r:{ip:192.0.2.95} s 10 h 0 t %lld", (long long)time(NULL)));
	sleep_ms(1700);
	m = msg_new(1 << 20);
	h = node_msg(&a, m, ip, 2, NULL);
	/* (The address may have been refreshed already by the CONNECT read.) */
	cr_assert(has_note(h, "MAILFROM spammer.example: spam 3.0", "stale"));
	cr_assert(has_hit(h, "REP_MAILFROM_SPAM"));
	msg_free(m);
	sleep_ms(100);
	m = msg_new(1 << 20);
	h = node_msg(&a, m, ip, 2, NULL);
	cr_assert(has_note(h, "IP 192.0.2.95: spam 13.0", "cached"),
	          "the refresh brought Redis's 10 (and the 3 still queued on top)");
	msg_free(m);
	node_free(&a);
	server_free(&s);
}

/*
 * The daemon reads its configuration again after moving to "/": a
 * relative password file is taken from the directory it started in
 * (conf_set_base_dir()), while a relative block_mirror stays under
 * state_dir, as documented.
 */
Test(rep_config, relative_names_follow_the_base_dir_or_state_dir)
{
	char *dir = tmpdir(), pwf[300];
	snprintf(pwf, sizeof(pwf), "%s/redis.pw", dir);
	write_secret(pwf, "Kq7-secret\n", 0600);
	diag_t *d = diag_new();
	conf_t *c = conf_parse("r.conf",
	                       "redis_server = 127.0.0.1:1\nredis_password_file = redis.pw\n"
	                       "block_mirror = mirror\n",
	                       d);
	cr_assert_not_null(c);
	conf_set_base_dir(c, dir);
	rep_config_t rc;
	cr_assert_eq(rep_config_read(c, "/var/lib/sift-test", &rc, d), 0, "%s",
	             diag_count(d) ? diag_text(d, 0) : "");
	cr_assert_str_eq(rc.password, "Kq7-secret");
	cr_assert_str_eq(rc.mirror_dir, "/var/lib/sift-test/mirror");
	conf_free(c);
	diag_free(d);
	rmtree(dir);
	free(dir);
}
