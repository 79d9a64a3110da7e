/*
 * sift-linkem - a TCP proxy on loopback that behaves like a thin, lossy link
 * (delay, bandwidth, loss, stalls, cuts), so the tests and the benchmark can
 * put one between sift-milter and Redis. The kernel's netem needs root and a
 * module that is often missing (containers, CI), and no Debian package does
 * this from user space with a control socket; hence this small program.
 * It is test tooling, not product: it refuses any address but loopback.
 *
 * usage: sift-linkem --listen 127.0.0.1:PORT --to 127.0.0.1:PORT [--delay-ms N]
 *                    [--rate BITS_PER_S] [--loss P] [--seed N] [--control PATH]
 *                    [--stats FILE] [--pidfile FILE]
 *        sift-linkem --ctl PATH COMMAND...     (one control command, prints the reply)
 *
 * Model. Every accepted connection opens one to --to. Bytes read from one
 * side are cut into segments of at most LINK_SEGMENT_BYTES (a TCP MSS) and
 * each segment is released to the other side at
 *     max(arrival + delay, release of the previous segment) + size / rate
 * (delay one way, rate per direction, each direction its own pipe). A
 * segment is lost with probability --loss; as TCP sees it, it then arrives
 * one retransmission timeout later, max(200 ms, 2 x RTT), and everything
 * after it waits behind it (head-of-line blocking). Loss draws come from a
 * seeded generator, so a run is reproducible. A connection's handshake is
 * not delayed (connect() returns at once); the first reply is.
 *
 * Control socket (--control, a unix socket): one command a line, one reply
 * line ("ok ..." or "error ..."):
 *     stats                 ok up=B down=B conns=N open=N cuts=N delay_ms=.. rate=.. loss=..
 *     stall MS              nothing is forwarded for MS ms; connections stay open
 *     cut                   every open connection is reset, both sides
 *     cut-after BYTES [N]   cut once BYTES more bytes went downstream (to the clients),
 *                           and again after each BYTES more, N times in all (default
 *                           1); BYTES 0 cancels
 *     reset                 counters to zero
 *     set delay|rate|loss V applies to segments read from now on
 * "up" counts bytes delivered to the --to side, "down" bytes delivered to
 * the clients; bytes still in flight at a cut are lost, as on a real link.
 * SIGUSR1 writes the stats line to --stats FILE, and so does exit (SIGTERM).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum {
	LINK_SEGMENT_BYTES = 1448,     /* a TCP MSS on a 1500-byte path */
	LINK_QUEUE_BYTES = 64 * 1024,  /* in flight per direction: a TCP window */
	LINK_READ_BYTES = 16 * 1024,   /* one read */
	LINK_MAX_CONNS = 256,          /* connections at once; more are refused */
	LINK_MAX_CTL = 16,             /* control clients at once */
	LINK_CTL_LINE_BYTES = 256,     /* longest control command */
	LINK_MIN_RTO_US = 200 * 1000,  /* Linux's minimum retransmission timeout */
	LINK_MAX_WAIT_US = 1000 * 1000 /* longest poll, so signals are never late */
};

typedef struct seg {
	struct seg *next;
	int64_t release_us; /* monotonic time it may be written */
	size_t len, off;
	bool eof; /* the sender closed its side: shutdown(SHUT_WR) here */
	char data[];
} seg_t;

/* One direction of a connection: read from fd[i], write to fd[1 - i]. */
typedef struct pipe_dir {
	seg_t *head, *tail;
	size_t queued;
	int64_t last_release_us;
	bool read_eof; /* nothing more to read */
	bool shut;     /* the EOF was delivered */
	bool blocked;  /* the last write would block: wait for POLLOUT */
} pipe_dir_t;

typedef struct conn {
	int fd[2];       /* 0: the client, 1: the --to server */
	pipe_dir_t d[2]; /* 0: up (client to server), 1: down */
	bool dead;
} conn_t;

typedef struct ctl {
	int fd;
	size_t n;
	char buf[LINK_CTL_LINE_BYTES];
} ctl_t;

static struct {
	int64_t delay_us;
	int64_t rate_bps; /* 0: unlimited */
	double loss;
	uint64_t rng;
	struct sockaddr_storage to;
	socklen_t to_len;
	const char *stats_path;
	/* counters */
	uint64_t up, down, conns, cuts;
	int64_t stall_until_us;
	int64_t cut_after; /* downstream bytes left before a cut; -1: none */
	int64_t cut_every; /* re-armed with this after a cut ... */
	long cut_repeat;   /* ... this many more times */
	bool cut_pending;
} g = {.rng = 1, .cut_after = -1};

static conn_t *conns[LINK_MAX_CONNS];
static ctl_t *ctls[LINK_MAX_CTL];
static volatile sig_atomic_t got_term, got_usr1;

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* splitmix64: small, seeded, the same sequence on every platform. */
static double rnd(void)
{
	uint64_t z = (g.rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0;
}

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		got_usr1 = 1;
	else
		got_term = 1;
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* A reset, not a FIN: the peer sees the connection drop as on a cut link. */
static void close_abrupt(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* "127.0.0.1:PORT" or "[::1]:PORT", loopback only; -1 with a message otherwise. */
static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(host)) {
		fprintf(stderr, "sift-linkem: '%s' is not HOST:PORT\n", s);
		return -1;
	}
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	long port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 1 || port > 65535) {
		fprintf(stderr, "sift-linkem: bad port in '%s'\n", s);
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	size_t hl = strlen(host);
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127)
			goto not_loopback;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*len = sizeof(*a4);
		return 0;
	}
	if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
		host[hl - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) == 1) {
			if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
				goto not_loopback;
			a6->sin6_family = AF_INET6;
			a6->sin6_port = htons((uint16_t)port);
			*len = sizeof(*a6);
			return 0;
		}
	}
	fprintf(stderr, "sift-linkem: '%s' is not a numeric address\n", s);
	return -1;
not_loopback:
	fprintf(stderr, "sift-linkem: %s is not a loopback address (this is a test tool)\n", s);
	return -1;
}

static void format_stats(char *buf, size_t size)
{
	int open = 0;
	for (int i = 0; i < LINK_MAX_CONNS; i++)
		open += conns[i] != NULL;
	snprintf(buf, size,
	         "up=%" PRIu64 " down=%" PRIu64 " conns=%" PRIu64 " open=%d cuts=%" PRIu64
	         " delay_ms=%.3f rate=%" PRId64 " loss=%g",
	         g.up, g.down, g.conns, open, g.cuts, (double)g.delay_us / 1000.0, g.rate_bps,
	         g.loss);
}

static void write_stats_file(void)
{
	char line[256], tmp[4096];
	if (g.stats_path == NULL)
		return;
	format_stats(line, sizeof(line));
	snprintf(tmp, sizeof(tmp), "%s.tmp", g.stats_path);
	FILE *fp = fopen(tmp, "w");
	if (fp == NULL) {
		fprintf(stderr, "sift-linkem: %s: %s\n", tmp, strerror(errno));
		return;
	}
	fprintf(fp, "%s\n", line);
	if (fclose(fp) != 0 || rename(tmp, g.stats_path) != 0)
		fprintf(stderr, "sift-linkem: %s: %s\n", g.stats_path, strerror(errno));
}

static void conn_free(conn_t *c, bool abrupt)
{
	for (int i = 0; i < 2; i++) {
		if (abrupt)
			close_abrupt(c->fd[i]);
		else
			close(c->fd[i]);
		seg_t *s = c->d[i].head;
		while (s != NULL) {
			seg_t *n = s->next;
			free(s);
			s = n;
		}
	}
	free(c);
}

static int cut_all(void)
{
	int n = 0;
	for (int i = 0; i < LINK_MAX_CONNS; i++) {
		if (conns[i] != NULL) {
			conn_free(conns[i], true);
			conns[i] = NULL;
			n++;
		}
	}
	g.cuts++;
	return n;
}

static void enqueue(pipe_dir_t *d, seg_t *s, int64_t now)
{
	int64_t rel = now + g.delay_us;
	if (rel < d->last_release_us)
		rel = d->last_release_us;
	if (g.rate_bps > 0)
		rel += (int64_t)s->len * 8 * 1000000 / g.rate_bps;
	if (!s->eof && g.loss > 0 && rnd() < g.loss) {
		int64_t rto = 4 * g.delay_us; /* 2 x RTT, one way being delay */
		rel += rto > LINK_MIN_RTO_US ? rto : LINK_MIN_RTO_US;
	}
	s->release_us = rel;
	d->last_release_us = rel;
	s->next = NULL;
	if (d->tail)
		d->tail->next = s;
	else
		d->head = s;
	d->tail = s;
	d->queued += s->len;
}

/* Reads what side i sent into its queue; false when the connection must go. */
static bool conn_read(conn_t *c, int i, int64_t now)
{
	pipe_dir_t *d = &c->d[i];
	char buf[LINK_READ_BYTES];
	size_t room = LINK_QUEUE_BYTES - d->queued;
	ssize_t n = read(c->fd[i], buf, room < sizeof(buf) ? room : sizeof(buf));
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	if (n == 0) {
		seg_t *s = calloc(1, sizeof(*s));
		if (s == NULL)
			return false;
		s->eof = true;
		d->read_eof = true;
		enqueue(d, s, now);
		return true;
	}
	for (ssize_t off = 0; off < n; off += LINK_SEGMENT_BYTES) {
		size_t len =
		    (size_t)(n - off) < LINK_SEGMENT_BYTES ? (size_t)(n - off) : LINK_SEGMENT_BYTES;
		seg_t *s = malloc(sizeof(*s) + len);
		if (s == NULL)
			return false;
		memset(s, 0, sizeof(*s));
		memcpy(s->data, buf + off, len);
		s->len = len;
		enqueue(d, s, now);
	}
	return true;
}

/* Writes the due segments of direction i; false when the connection must go. */
static bool conn_write(conn_t *c, int i, int64_t now)
{
	pipe_dir_t *d = &c->d[i];
	int out = c->fd[1 - i];

	d->blocked = false;
	while (d->head != NULL && d->head->release_us <= now && now >= g.stall_until_us) {
		seg_t *s = d->head;
		if (s->eof) {
			shutdown(out, SHUT_WR);
			d->shut = true;
		} else {
			size_t want = s->len - s->off;
			if (i == 1 && g.cut_after >= 0 && (int64_t)want > g.cut_after)
				want = (size_t)g.cut_after;
			ssize_t n = want ? write(out, s->data + s->off, want) : 0;
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR) {
					d->blocked = true;
					return true;
				}
				return false;
			}
			s->off += (size_t)n;
			d->queued -= (size_t)n;
			if (i == 0)
				g.up += (uint64_t)n;
			else
				g.down += (uint64_t)n;
			if (i == 1 && g.cut_after >= 0) {
				g.cut_after -= n;
				if (g.cut_after == 0) {
					g.cut_after = g.cut_repeat-- > 0 ? g.cut_every : -1;
					g.cut_pending = true;
					return true;
				}
			}
			if (s->off < s->len) {
				d->blocked = true;
				return true;
			}
		}
		d->head = s->next;
		if (d->head == NULL)
			d->tail = NULL;
		free(s);
	}
	return true;
}

static void accept_conn(int lfd)
{
	int cfd = accept(lfd, NULL, NULL);
	if (cfd < 0)
		return;
	int slot = -1;
	for (int i = 0; i < LINK_MAX_CONNS && slot < 0; i++)
		if (conns[i] == NULL)
			slot = i;
	int sfd = socket(g.to.ss_family, SOCK_STREAM, 0);
	/* The target is on loopback: a blocking connect answers at once. */
	if (slot < 0 || sfd < 0 || connect(sfd, (struct sockaddr *)&g.to, g.to_len) != 0) {
		if (sfd >= 0)
			close(sfd);
		close_abrupt(cfd);
		return;
	}
	conn_t *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(sfd);
		close_abrupt(cfd);
		return;
	}
	int one = 1;
	/* Segments leave when the model says, not when Nagle would. */
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	set_nonblock(cfd);
	set_nonblock(sfd);
	c->fd[0] = cfd;
	c->fd[1] = sfd;
	conns[slot] = c;
	g.conns++;
}

/* One command line; the reply (without newline) into out. */
static void ctl_command(char *line, char *out, size_t size)
{
	char *args[4] = {0};
	int n = 0;
	for (char *t = strtok(line, " \t\r"); t != NULL && n < 4; t = strtok(NULL, " \t\r"))
		args[n++] = t;
	char *end = NULL;
	if (n == 0) {
		snprintf(out, size, "error empty command");
	} else if (strcmp(args[0], "stats") == 0 && n == 1) {
		char s[256];
		format_stats(s, sizeof(s));
		snprintf(out, size, "ok %s", s);
	} else if (strcmp(args[0], "stall") == 0 && n == 2) {
		long ms = strtol(args[1], &end, 10);
		if (*end != '\0' || ms < 0 || ms > 3600000) {
			snprintf(out, size, "error stall wants milliseconds (0 to 3600000)");
			return;
		}
		g.stall_until_us = now_us() + (int64_t)ms * 1000;
		snprintf(out, size, "ok stalled %ld ms", ms);
	} else if (strcmp(args[0], "cut") == 0 && n == 1) {
		snprintf(out, size, "ok cut %d connections", cut_all());
	} else if (strcmp(args[0], "cut-after") == 0 && (n == 2 || n == 3)) {
		long long b = strtoll(args[1], &end, 10);
		long times = 1;
		if (*end != '\0' || b < 0 ||
		    (n == 3 && ((times = strtol(args[2], &end, 10)) < 1 || *end != '\0'))) {
			snprintf(out, size, "error cut-after BYTES [TIMES] (BYTES 0: cancel)");
			return;
		}
		g.cut_after = b > 0 ? b : -1;
		g.cut_every = b;
		g.cut_repeat = times - 1;
		snprintf(out, size, "ok cut after %lld bytes downstream, %ld times", b, times);
	} else if (strcmp(args[0], "reset") == 0 && n == 1) {
		g.up = g.down = g.conns = g.cuts = 0;
		snprintf(out, size, "ok counters reset");
	} else if (strcmp(args[0], "set") == 0 && n == 3) {
		double v = strtod(args[2], &end);
		if (*end != '\0' || v < 0) {
			snprintf(out, size, "error bad value '%s'", args[2]);
		} else if (strcmp(args[1], "delay") == 0 && v <= 600000) {
			g.delay_us = (int64_t)(v * 1000);
			snprintf(out, size, "ok delay %g ms", v);
		} else if (strcmp(args[1], "rate") == 0) {
			g.rate_bps = (int64_t)v;
			snprintf(out, size, "ok rate %" PRId64 " bit/s", g.rate_bps);
		} else if (strcmp(args[1], "loss") == 0 && v < 1) {
			g.loss = v;
			snprintf(out, size, "ok loss %g", v);
		} else {
			snprintf(out, size, "error set delay MS | rate BITS_PER_S | loss P (< 1)");
		}
	} else {
		snprintf(out, size,
		         "error unknown command '%s' (stats, stall MS, cut, "
		         "cut-after BYTES, reset, set delay|rate|loss V)",
		         args[0]);
	}
}

/* Reads a control client; false when it is gone. */
static bool ctl_read(ctl_t *k)
{
	ssize_t n = read(k->fd, k->buf + k->n, sizeof(k->buf) - 1 - k->n);
	if (n <= 0)
		return n < 0 && (errno == EAGAIN || errno == EINTR);
	k->n += (size_t)n;
	char *nl;
	while ((nl = memchr(k->buf, '\n', k->n)) != NULL) {
		char reply[512];
		*nl = '\0';
		ctl_command(k->buf, reply, sizeof(reply) - 1);
		strcat(reply, "\n");
		/* Replies are short and the peer waits for them: one write fits. */
		if (write(k->fd, reply, strlen(reply)) < 0)
			return false;
		size_t used = (size_t)(nl + 1 - k->buf);
		memmove(k->buf, nl + 1, k->n - used);
		k->n -= used;
	}
	return k->n < sizeof(k->buf) - 1; /* a line longer than the buffer: drop it */
}

static int listen_tcp(const char *spec)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (parse_addr(spec, &ss, &len) < 0)
		return -1;
	int fd = socket(ss.ss_family, SOCK_STREAM, 0), one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 64) != 0) {
		fprintf(stderr, "sift-linkem: listen on %s: %s\n", spec, strerror(errno));
		return -1;
	}
	set_nonblock(fd);
	return fd;
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path)) {
		fprintf(stderr, "sift-linkem: control path too long: %s\n", path);
		return -1;
	}
	strcpy(sa->sun_path, path);
	return 0;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa;
	if (unix_addr(path, &sa) < 0)
		return -1;
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0) {
		fprintf(stderr, "sift-linkem: control socket %s: %s\n", path, strerror(errno));
		return -1;
	}
	set_nonblock(fd);
	return fd;
}

/* --ctl PATH COMMAND...: sends one command, prints the reply; 0 when it is "ok". */
static int ctl_client(const char *path, int argc, char **argv)
{
	struct sockaddr_un sa;
	char cmd[LINK_CTL_LINE_BYTES] = "", reply[512];
	size_t n = 0;

	for (int i = 0; i < argc; i++) {
		size_t l = strlen(cmd);
		snprintf(cmd + l, sizeof(cmd) - l, "%s%s", i ? " " : "", argv[i]);
	}
	if (unix_addr(path, &sa) < 0)
		return 2;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "sift-linkem: %s: %s\n", path, strerror(errno));
		return 2;
	}
	strcat(cmd, "\n");
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd)) {
		fprintf(stderr, "sift-linkem: %s: %s\n", path, strerror(errno));
		return 2;
	}
	while (n < sizeof(reply) - 1) {
		ssize_t r = read(fd, reply + n, sizeof(reply) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		if (memchr(reply, '\n', n))
			break;
	}
	close(fd);
	reply[n] = '\0';
	if (n == 0) {
		fprintf(stderr, "sift-linkem: no reply from %s\n", path);
		return 2;
	}
	fputs(reply, stdout);
	return strncmp(reply, "ok", 2) == 0 ? 0 : 1;
}

static int usage(void)
{
	fputs("usage: sift-linkem --listen 127.0.0.1:PORT --to 127.0.0.1:PORT [--delay-ms N]\n"
	      "                   [--rate BITS_PER_S] [--loss P] [--seed N] [--control PATH]\n"
	      "                   [--stats FILE] [--pidfile FILE]\n"
	      "       sift-linkem --ctl PATH COMMAND...\n",
	      stderr);
	return 2;
}

static bool num_arg(const char *opt, const char *v, double lo, double hi, double *out)
{
	char *end;
	*out = strtod(v, &end);
	if (*v == '\0' || *end != '\0' || *out < lo || *out > hi) {
		fprintf(stderr, "sift-linkem: %s wants a number from %g to %g, not '%s'\n", opt, lo,
		        hi, v);
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	const char *listen_spec = NULL, *to_spec = NULL, *ctl_path = NULL, *pidfile = NULL;
	double v;

	if (argc >= 3 && strcmp(argv[1], "--ctl") == 0)
		return argc >= 4 ? ctl_client(argv[2], argc - 3, argv + 3) : usage();
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *a = i + 1 < argc ? argv[i + 1] : NULL;
		if (a == NULL)
			return usage();
		i++;
		if (strcmp(o, "--listen") == 0) {
			listen_spec = a;
		} else if (strcmp(o, "--to") == 0) {
			to_spec = a;
		} else if (strcmp(o, "--delay-ms") == 0) {
			if (!num_arg(o, a, 0, 600000, &v))
				return 2;
			g.delay_us = (int64_t)(v * 1000);
		} else if (strcmp(o, "--rate") == 0) {
			if (!num_arg(o, a, 0, 1e12, &v))
				return 2;
			g.rate_bps = (int64_t)v;
		} else if (strcmp(o, "--loss") == 0) {
			if (!num_arg(o, a, 0, 0.99, &v))
				return 2;
			g.loss = v;
		} else if (strcmp(o, "--seed") == 0) {
			if (!num_arg(o, a, 0, 1e15, &v))
				return 2;
			g.rng = (uint64_t)v;
		} else if (strcmp(o, "--control") == 0) {
			ctl_path = a;
		} else if (strcmp(o, "--stats") == 0) {
			g.stats_path = a;
		} else if (strcmp(o, "--pidfile") == 0) {
			pidfile = a;
		} else {
			return usage();
		}
	}
	if (listen_spec == NULL || to_spec == NULL)
		return usage();
	if (parse_addr(to_spec, &g.to, &g.to_len) < 0)
		return 2;
	int lfd = listen_tcp(listen_spec);
	if (lfd < 0)
		return 1;
	int cfd = ctl_path ? listen_unix(ctl_path) : -1;
	if (ctl_path && cfd < 0)
		return 1;

	/* The signals are only let in while waiting in ppoll: no race with the flags. */
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGUSR1);
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (pidfile != NULL) {
		FILE *fp = fopen(pidfile, "w");
		if (fp == NULL || fprintf(fp, "%ld\n", (long)getpid()) < 0 || fclose(fp) != 0) {
			fprintf(stderr, "sift-linkem: %s: %s\n", pidfile, strerror(errno));
			return 1;
		}
	}

	struct pollfd pfd[2 + LINK_MAX_CTL + 2 * LINK_MAX_CONNS];
	while (!got_term) {
		int64_t now = now_us(), wait = LINK_MAX_WAIT_US;
		nfds_t np = 0;
		int pi[LINK_MAX_CONNS]; /* pfd index of each connection's first fd, or -1 */
		int ki[LINK_MAX_CTL];

		pfd[np++] = (struct pollfd){.fd = lfd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = cfd, .events = POLLIN};
		for (int i = 0; i < LINK_MAX_CTL; i++) {
			ki[i] = -1;
			if (ctls[i] != NULL) {
				ki[i] = (int)np;
				pfd[np++] = (struct pollfd){.fd = ctls[i]->fd, .events = POLLIN};
			}
		}
		for (int i = 0; i < LINK_MAX_CONNS; i++) {
			conn_t *c = conns[i];
			pi[i] = -1;
			if (c == NULL)
				continue;
			pi[i] = (int)np;
			for (int s = 0; s < 2; s++) {
				short ev = 0;
				if (!c->d[s].read_eof && c->d[s].queued < LINK_QUEUE_BYTES)
					ev |= POLLIN;
				if (c->d[1 - s].blocked)
					ev |= POLLOUT;
				/* No interest: leave it out, or a hung-up socket would wake us in a
				 * loop. */
				pfd[np++] = (struct pollfd){.fd = ev ? c->fd[s] : -1, .events = ev};
				const seg_t *h = c->d[s].head;
				if (h != NULL && !c->d[s].blocked) {
					int64_t due = h->release_us;
					if (due < g.stall_until_us)
						due = g.stall_until_us;
					if (due - now < wait)
						wait = due - now;
				}
			}
		}
		if (wait < 0)
			wait = 0;
		struct timespec ts = {.tv_sec = wait / 1000000, .tv_nsec = (wait % 1000000) * 1000};
		int r = ppoll(pfd, np, &ts, &waitmask);
		if (got_usr1) {
			got_usr1 = 0;
			write_stats_file();
		}
		if (r < 0 && errno != EINTR) {
			perror("sift-linkem: poll");
			break;
		}
		if (r < 0)
			continue;
		now = now_us();
		for (int i = 0; i < LINK_MAX_CONNS; i++) {
			conn_t *c = conns[i];
			if (c == NULL || pi[i] < 0)
				continue;
			bool ok = true;
			for (int s = 0; s < 2 && ok; s++) {
				short re = pfd[pi[i] + s].revents;
				if ((re & (POLLIN | POLLHUP | POLLERR)) && !c->d[s].read_eof &&
				    c->d[s].queued < LINK_QUEUE_BYTES)
					ok = conn_read(c, s, now);
			}
			for (int s = 0; s < 2 && ok && !g.cut_pending; s++)
				ok = conn_write(c, s, now);
			if (!ok) {
				conn_free(c, true);
				conns[i] = NULL;
			} else if (c->d[0].shut && c->d[1].shut) {
				conn_free(c, false);
				conns[i] = NULL;
			}
			if (g.cut_pending) {
				g.cut_pending = false;
				cut_all();
				break;
			}
		}
		for (int i = 0; i < LINK_MAX_CTL; i++) {
			if (ctls[i] != NULL && ki[i] >= 0 && pfd[ki[i]].revents &&
			    !ctl_read(ctls[i])) {
				close(ctls[i]->fd);
				free(ctls[i]);
				ctls[i] = NULL;
			}
		}
		if (pfd[1].revents & POLLIN) {
			int k = accept(cfd, NULL, NULL);
			int slot = -1;
			for (int i = 0; i < LINK_MAX_CTL && slot < 0 && k >= 0; i++)
				if (ctls[i] == NULL)
					slot = i;
			if (slot >= 0 && (ctls[slot] = calloc(1, sizeof(ctl_t))) != NULL) {
				set_nonblock(k);
				ctls[slot]->fd = k;
			} else if (k >= 0) {
				close(k);
			}
		}
		if (pfd[0].revents & POLLIN)
			accept_conn(lfd);
	}
	write_stats_file();
	for (int i = 0; i < LINK_MAX_CONNS; i++)
		if (conns[i] != NULL)
			conn_free(conns[i], true);
	if (ctl_path != NULL)
		unlink(ctl_path);
	if (pidfile != NULL)
		unlink(pidfile);
	return 0;
}
