/*
 * mclient.c - the MTA side of the milter protocol (see mclient.h): what
 * Postfix's milter8 client sends, so sift-milter can be driven, tested and
 * measured without an MTA. Every socket operation is non-blocking behind
 * poll() with a deadline, so a stuck filter costs a timeout, never a hang.
 */
#include "config.h"

#include "mclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#define MC_DEFAULT_TIMEOUT_MS 10000
#define MC_ERR_BYTES          256
/*
 * libmilter refuses packets above its MILTER_MAX_DATA_SIZE unless a larger
 * size was negotiated, so long header fields are cut to fit, as an MTA's
 * own header size limit would.
 */
#define MC_MAX_SEND_BYTES MILTER_MAX_DATA_SIZE

/* What we offer: every action and every protocol step option. */
#define MC_OFFER_ACTIONS  SMFI_CURR_ACTS
#define MC_OFFER_PROTOCOL SMFI_CURR_PROT

struct mclient {
	int fd;
	long timeout_ms;
	unsigned long f_actions;  /* what the filter may do */
	unsigned long f_protocol; /* steps it skips or does not answer */
	bool broken;              /* an error made the stream unusable */
	/* A connection-level verdict (CONNECT or HELO) applies to every message. */
	bool conn_final;
	mclient_action_t conn_action;
	char conn_stage;
	const char *conn_reply; /* malloc'ed, freed at close */
	unsigned char *wbuf;    /* the packet being built */
	size_t wlen, wcap;
	size_t pkt_start; /* where the packet being built begins in wbuf */
	bool woom;
	unsigned char *rbuf; /* the last packet read */
	size_t rcap;
	char err[MC_ERR_BYTES];
};

/* How a wait for the filter's answer to one command ended. */
enum { REPLY_ERROR = -1, REPLY_CONTINUE = 0, REPLY_FINAL, REPLY_SKIP };

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void fail(mclient_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(mclient_t *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	c->broken = true;
}

const char *mclient_error(const mclient_t *c)
{
	return c->err;
}

const char *mclient_action_name(mclient_action_t a)
{
	switch (a) {
	case MCLIENT_ACCEPT: return "accept";
	case MCLIENT_REJECT: return "reject";
	case MCLIENT_TEMPFAIL: return "tempfail";
	case MCLIENT_DISCARD: return "discard";
	case MCLIENT_ABORTED: return "aborted";
	case MCLIENT_CONN_FAIL: return "conn_fail";
	}
	return "unknown";
}

unsigned long mclient_filter_actions(const mclient_t *c)
{
	return c->f_actions;
}

unsigned long mclient_filter_protocol(const mclient_t *c)
{
	return c->f_protocol;
}

/* ------------------------------------------------------------ raw I/O */

/* Waits for events on the socket until deadline (monotonic ms). */
static int wait_fd(mclient_t *c, short events, double deadline, const char *what)
{
	for (;;) {
		double left = deadline - now_ms();
		if (left <= 0) {
			fail(c, "timeout after %ld ms %s", c->timeout_ms, what);
			return -1;
		}
		struct pollfd p = {.fd = c->fd, .events = events};
		int n = poll(&p, 1, (int)(left + 1));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR) {
			fail(c, "poll: %s", strerror(errno));
			return -1;
		}
	}
}

static int write_all(mclient_t *c, const unsigned char *p, size_t n)
{
	double deadline = now_ms() + c->timeout_ms;
	while (n > 0) {
		/* MSG_NOSIGNAL: a filter that went away is an error, not a SIGPIPE. */
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			fail(c, "write: %s", strerror(errno));
			return -1;
		}
		if (wait_fd(c, POLLOUT, deadline, "writing to the filter") < 0)
			return -1;
	}
	return 0;
}

static int read_all(mclient_t *c, unsigned char *p, size_t n, double deadline)
{
	while (n > 0) {
		ssize_t r = recv(c->fd, p, n, 0);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
			continue;
		}
		if (r == 0) {
			fail(c, "the filter closed the connection");
			return -1;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			fail(c, "read: %s", strerror(errno));
			return -1;
		}
		if (wait_fd(c, POLLIN, deadline, "waiting for the filter") < 0)
			return -1;
	}
	return 0;
}

/* Reads one packet; *data points into c->rbuf (valid until the next read). */
static int read_packet(mclient_t *c, char *cmd, const unsigned char **data, size_t *len)
{
	unsigned char hdr[MILTER_LEN_BYTES + 1];
	double deadline = now_ms() + c->timeout_ms;
	if (read_all(c, hdr, sizeof(hdr), deadline) < 0)
		return -1;
	uint32_t n;
	memcpy(&n, hdr, sizeof(n));
	n = ntohl(n);
	if (n < 1 || n - 1 > MCLIENT_MAX_PACKET_BYTES) {
		fail(c, "protocol error: reply length %lu", (unsigned long)n);
		return -1;
	}
	*cmd = (char)hdr[MILTER_LEN_BYTES];
	*len = n - 1;
	if (*len + 1 > c->rcap) {
		unsigned char *nb = realloc(c->rbuf, *len + 1);
		if (nb == NULL) {
			fail(c, "out of memory");
			return -1;
		}
		c->rbuf = nb;
		c->rcap = *len + 1;
	}
	if (read_all(c, c->rbuf, *len, deadline) < 0)
		return -1;
	c->rbuf[*len] = 0; /* so string payloads are always terminated */
	*data = c->rbuf;
	return 0;
}

/* ------------------------------------------------------- packet building */

static void pk_put(mclient_t *c, const void *p, size_t n)
{
	if (c->woom)
		return;
	if (c->wlen + n > c->wcap) {
		size_t cap = c->wcap ? c->wcap : 1024;
		while (cap < c->wlen + n)
			cap *= 2;
		unsigned char *nb = realloc(c->wbuf, cap);
		if (nb == NULL) {
			c->woom = true;
			return;
		}
		c->wbuf = nb;
		c->wcap = cap;
	}
	memcpy(c->wbuf + c->wlen, p, n);
	c->wlen += n;
}

/*
 * Packets are built one after the other in wbuf and written together by
 * pk_send(), so a stage's macros travel in the same write as its command
 * (as Postfix's buffered stream does): two small writes would meet Nagle's
 * algorithm and the peer's delayed ACK on TCP and cost 40 ms a stage.
 */
static void pk_begin(mclient_t *c, char cmd)
{
	static const unsigned char zero[MILTER_LEN_BYTES];
	c->pkt_start = c->wlen;
	pk_put(c, zero, sizeof(zero));
	pk_put(c, &cmd, 1);
}

/* Fills in the length of the packet being built. */
static void pk_end(mclient_t *c)
{
	if (c->woom)
		return;
	uint32_t n = htonl((uint32_t)(c->wlen - c->pkt_start - MILTER_LEN_BYTES));
	memcpy(c->wbuf + c->pkt_start, &n, sizeof(n));
}

static void pk_str(mclient_t *c, const char *s)
{
	pk_put(c, s, strlen(s) + 1);
}

static void pk_u32(mclient_t *c, uint32_t v)
{
	v = htonl(v);
	pk_put(c, &v, sizeof(v));
}

/* Ends the packet being built and writes every packet pending. */
static int pk_send(mclient_t *c)
{
	pk_end(c);
	size_t n = c->wlen;
	c->wlen = 0;
	if (c->woom) {
		c->woom = false;
		fail(c, "out of memory");
		return -1;
	}
	return write_all(c, c->wbuf, n);
}

static int send_simple(mclient_t *c, char cmd)
{
	pk_begin(c, cmd);
	return pk_send(c);
}

/*
 * Queues SMFIC_MACRO for stage cmd from NULL-terminated name, value pairs
 * (NULL values skipped); it is written with the stage's command.
 */
static int send_macros(mclient_t *c, char cmd, const char *const *kv)
{
	pk_begin(c, SMFIC_MACRO);
	pk_put(c, &cmd, 1);
	for (; kv[0] != NULL; kv += 2) {
		if (kv[1] == NULL)
			continue;
		pk_str(c, kv[0]);
		pk_str(c, kv[1]);
	}
	pk_end(c);
	return 0;
}

/* ------------------------------------------------------------- connect */

static int connect_fd(mclient_t *c, const char *spec, long timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	int family;
	memset(&ss, 0, sizeof(ss));

	const char *path = NULL;
	if (strncmp(spec, "unix:", 5) == 0)
		path = spec + 5;
	else if (strncmp(spec, "local:", 6) == 0)
		path = spec + 6;
	else if (spec[0] == '/')
		path = spec;
	if (path != NULL) {
		struct sockaddr_un *su = (struct sockaddr_un *)&ss;
		if (strlen(path) >= sizeof(su->sun_path)) {
			fail(c, "socket path too long: %s", path);
			return -1;
		}
		su->sun_family = AF_UNIX;
		strcpy(su->sun_path, path);
		sslen = sizeof(*su);
		family = AF_UNIX;
	} else {
		const char *rest;
		if (strncmp(spec, "inet:", 5) == 0) {
			family = AF_INET;
			rest = spec + 5;
		} else if (strncmp(spec, "inet6:", 6) == 0) {
			family = AF_INET6;
			rest = spec + 6;
		} else {
			fail(c, "bad socket %s (unix:/path or inet:port@host)", spec);
			return -1;
		}
		char port[16];
		const char *at = strchr(rest, '@');
		size_t plen = at ? (size_t)(at - rest) : strlen(rest);
		if (plen == 0 || plen >= sizeof(port)) {
			fail(c, "bad port in %s", spec);
			return -1;
		}
		memcpy(port, rest, plen);
		port[plen] = 0;
		const char *host = at ? at + 1 : (family == AF_INET ? "127.0.0.1" : "::1");
		struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM};
		struct addrinfo *ai = NULL;
		int e = getaddrinfo(host, port, &hints, &ai);
		if (e != 0 || ai == NULL) {
			fail(c, "%s: %s", spec, gai_strerror(e));
			return -1;
		}
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		sslen = ai->ai_addrlen;
		freeaddrinfo(ai);
	}

	c->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fail(c, "socket: %s", strerror(errno));
		return -1;
	}
	if (family != AF_UNIX) {
		/* Every write ends a command the filter is waiting for: send it now. */
		int one = 1;
		(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (connect(c->fd, (struct sockaddr *)&ss, sslen) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EAGAIN) {
		fail(c, "connect %s: %s", spec, strerror(errno));
		return -1;
	}
	if (wait_fd(c, POLLOUT, now_ms() + timeout_ms, "connecting") < 0)
		return -1;
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
		fail(c, "connect %s: %s", spec, strerror(soerr ? soerr : errno));
		return -1;
	}
	return 0;
}

static uint32_t get_u32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return ntohl(v);
}

static int negotiate(mclient_t *c)
{
	pk_begin(c, SMFIC_OPTNEG);
	pk_u32(c, SMFI_PROT_VERSION);
	pk_u32(c, MC_OFFER_ACTIONS);
	pk_u32(c, MC_OFFER_PROTOCOL);
	if (pk_send(c) < 0)
		return -1;

	char cmd;
	const unsigned char *d;
	size_t n;
	if (read_packet(c, &cmd, &d, &n) < 0)
		return -1;
	if (cmd != SMFIC_OPTNEG || n < MILTER_OPTLEN) {
		fail(c, "protocol error: negotiation answered with '%c' (%zu bytes)", cmd, n);
		return -1;
	}
	uint32_t version = get_u32(d);
	uint32_t actions = get_u32(d + 4);
	uint32_t proto = get_u32(d + 8);
	if (version < 2 || version > SMFI_PROT_VERSION) {
		fail(c, "protocol error: filter speaks version %lu", (unsigned long)version);
		return -1;
	}
	if (actions & ~(uint32_t)MC_OFFER_ACTIONS) {
		fail(c, "protocol error: filter wants actions 0x%lx not offered",
		     (unsigned long)(actions & ~(uint32_t)MC_OFFER_ACTIONS));
		return -1;
	}
	/* The MDS bits are libmilter-internal; ignore them, refuse the rest. */
	proto &= ~(uint32_t)SMFI_INTERNAL;
	if (proto & ~(uint32_t)MC_OFFER_PROTOCOL) {
		fail(c, "protocol error: filter wants protocol steps 0x%lx not offered",
		     (unsigned long)(proto & ~(uint32_t)MC_OFFER_PROTOCOL));
		return -1;
	}
	/*
	 * The rest is the filter's macro wish list (stage number, then a
	 * NUL-terminated list of names). We send our fixed set anyway, so only
	 * check that it is well formed.
	 */
	size_t off = MILTER_OPTLEN;
	for (unsigned i = 0; off < n && i < 64; i++) {
		if (n - off < MILTER_LEN_BYTES + 1) {
			fail(c, "protocol error: truncated macro list in negotiation");
			return -1;
		}
		off += MILTER_LEN_BYTES;
		const unsigned char *z = memchr(d + off, 0, n - off);
		if (z == NULL) {
			fail(c, "protocol error: unterminated macro list in negotiation");
			return -1;
		}
		off = (size_t)(z - d) + 1;
	}
	c->f_actions = actions;
	c->f_protocol = proto;
	return 0;
}

mclient_t *mclient_open(const char *spec, const mclient_opts_t *o, char *err, size_t errlen)
{
	mclient_t *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->fd = -1;
	c->timeout_ms = (o && o->timeout_ms > 0) ? o->timeout_ms : MC_DEFAULT_TIMEOUT_MS;
	long cto = (o && o->connect_timeout_ms > 0) ? o->connect_timeout_ms : c->timeout_ms;
	if (connect_fd(c, spec, cto) < 0 || negotiate(c) < 0) {
		snprintf(err, errlen, "%s", c->err);
		mclient_close(c);
		return NULL;
	}
	return c;
}

void mclient_close(mclient_t *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->wbuf);
	free(c->rbuf);
	free((char *)c->conn_reply);
	free(c);
}

void mclient_quit(mclient_t *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0 && !c->broken)
		(void)send_simple(c, SMFIC_QUIT);
	mclient_close(c);
}

/* ------------------------------------------------------------- replies */

static void result_init(mclient_result_t *r)
{
	memset(r, 0, sizeof(*r));
	r->action = MCLIENT_ACCEPT;
}

static int add_mod(mclient_t *c, arena_t *a, mclient_result_t *r, size_t *cap,
                   const mclient_mod_t *m)
{
	if (r->nmods >= MCLIENT_MAX_MODS) {
		fail(c, "protocol error: more than %d modifications", MCLIENT_MAX_MODS);
		return -1;
	}
	if (r->nmods == *cap)
		r->mods = arena_grow(a, r->mods, r->nmods, cap, sizeof(*r->mods), 8);
	r->mods[r->nmods++] = *m;
	return 0;
}

/* The NUL-terminated string at *off in d[0..n), advancing *off; NULL if none. */
static const char *take_str(const unsigned char *d, size_t n, size_t *off)
{
	if (*off >= n)
		return NULL;
	const unsigned char *z = memchr(d + *off, 0, n - *off);
	if (z == NULL)
		return NULL;
	const char *s = (const char *)d + *off;
	*off = (size_t)(z - d) + 1;
	return s;
}

/* A modification reply: checks it was negotiated and records it. */
static int take_mod(mclient_t *c, char cmd, const unsigned char *d, size_t n, arena_t *a,
                    mclient_result_t *r, size_t *cap)
{
	mclient_mod_t m = {.type = cmd};
	unsigned long need = 0;
	size_t off = 0;
	const char *s1 = NULL, *s2 = NULL;

	switch (cmd) {
	case SMFIR_ADDHEADER:
		need = SMFIF_ADDHDRS;
		s1 = take_str(d, n, &off);
		s2 = take_str(d, n, &off);
		break;
	case SMFIR_INSHEADER:
	case SMFIR_CHGHEADER:
		need = cmd == SMFIR_INSHEADER ? SMFIF_ADDHDRS : SMFIF_CHGHDRS;
		if (n < MILTER_LEN_BYTES)
			break;
		m.index = get_u32(d);
		off = MILTER_LEN_BYTES;
		s1 = take_str(d, n, &off);
		s2 = take_str(d, n, &off);
		break;
	case SMFIR_QUARANTINE:
		need = SMFIF_QUARANTINE;
		s1 = take_str(d, n, &off);
		s2 = "";
		break;
	case SMFIR_ADDRCPT:
	case SMFIR_DELRCPT:
		need = cmd == SMFIR_ADDRCPT ? SMFIF_ADDRCPT : SMFIF_DELRCPT;
		s1 = take_str(d, n, &off);
		s2 = "";
		break;
	case SMFIR_ADDRCPT_PAR:
	case SMFIR_CHGFROM:
		need = cmd == SMFIR_CHGFROM ? SMFIF_CHGFROM : SMFIF_ADDRCPT_PAR;
		s1 = take_str(d, n, &off);
		s2 = off < n ? take_str(d, n, &off) : "";
		break;
	case SMFIR_REPLBODY:
		need = SMFIF_CHGBODY;
		s1 = "";
		s2 = "";
		m.value = arena_memdup(a, d, n);
		m.value_len = n;
		break;
	}
	if (s1 == NULL || s2 == NULL) {
		fail(c, "protocol error: malformed '%c' reply", cmd);
		return -1;
	}
	if (!(c->f_actions & need)) {
		fail(c, "protocol error: '%c' reply without negotiating action 0x%lx", cmd, need);
		return -1;
	}
	m.name = arena_strdup(a, s1);
	if (cmd != SMFIR_REPLBODY) {
		m.value = arena_strdup(a, s2);
		m.value_len = strlen(s2);
	}
	if (cmd == SMFIR_QUARANTINE)
		r->quarantined = true;
	return add_mod(c, a, r, cap, &m);
}

/*
 * Waits for the filter's answer to command stage. Modifications are only
 * legal at end of message; progress restarts the wait. Returns REPLY_*.
 */
static int wait_reply(mclient_t *c, char stage, arena_t *a, mclient_result_t *r, size_t *cap)
{
	unsigned progress = 0;
	/* Bounded: every pass consumes a packet and each kind is capped. */
	for (;;) {
		char cmd;
		const unsigned char *d;
		size_t n;
		if (read_packet(c, &cmd, &d, &n) < 0)
			return REPLY_ERROR;
		switch (cmd) {
		case SMFIR_CONTINUE: return REPLY_CONTINUE;
		case SMFIR_ACCEPT:
			r->action = MCLIENT_ACCEPT;
			r->stage = stage;
			return REPLY_FINAL;
		case SMFIR_REJECT:
			r->action = MCLIENT_REJECT;
			r->stage = stage;
			return REPLY_FINAL;
		case SMFIR_TEMPFAIL:
			r->action = MCLIENT_TEMPFAIL;
			r->stage = stage;
			return REPLY_FINAL;
		case SMFIR_DISCARD:
			r->action = MCLIENT_DISCARD;
			r->stage = stage;
			return REPLY_FINAL;
		case SMFIR_CONN_FAIL:
			r->action = MCLIENT_CONN_FAIL;
			r->stage = stage;
			return REPLY_FINAL;
		case SMFIR_SHUTDOWN:
			r->action = MCLIENT_TEMPFAIL;
			r->reply = "421 4.7.0 filter shutting down";
			r->stage = stage;
			return REPLY_FINAL;
		case SMFIR_REPLYCODE: {
			const char *txt = (const char *)d;
			if (n < 4 || memchr(d, 0, n) == NULL || (txt[0] != '4' && txt[0] != '5')) {
				fail(c, "protocol error: bad reply code \"%.40s\"", txt);
				return REPLY_ERROR;
			}
			r->action = txt[0] == '5' ? MCLIENT_REJECT : MCLIENT_TEMPFAIL;
			r->reply = arena_strdup(a, txt);
			r->stage = stage;
			return REPLY_FINAL;
		}
		case SMFIR_SKIP:
			if (stage != SMFIC_BODY || !(c->f_protocol & SMFIP_SKIP)) {
				fail(c, "protocol error: skip in answer to '%c'", stage);
				return REPLY_ERROR;
			}
			return REPLY_SKIP;
		case SMFIR_PROGRESS:
			if (++progress > MCLIENT_MAX_PROGRESS) {
				fail(c, "protocol error: more than %d progress replies",
				     MCLIENT_MAX_PROGRESS);
				return REPLY_ERROR;
			}
			continue;
		case SMFIR_ADDHEADER:
		case SMFIR_INSHEADER:
		case SMFIR_CHGHEADER:
		case SMFIR_QUARANTINE:
		case SMFIR_ADDRCPT:
		case SMFIR_DELRCPT:
		case SMFIR_ADDRCPT_PAR:
		case SMFIR_CHGFROM:
		case SMFIR_REPLBODY:
			if (stage != SMFIC_BODYEOB) {
				fail(c, "protocol error: modification '%c' in answer to '%c'", cmd,
				     stage);
				return REPLY_ERROR;
			}
			if (take_mod(c, cmd, d, n, a, r, cap) < 0)
				return REPLY_ERROR;
			continue;
		default:
			fail(c, "protocol error: unknown reply '%c' (0x%02x) to '%c'", cmd,
			     (unsigned char)cmd, stage);
			return REPLY_ERROR;
		}
	}
}

/*
 * Sends the packet built in c->wbuf for stage; waits for the answer unless
 * the filter negotiated not to give one (nr_flag).
 */
static int send_stage(mclient_t *c, char stage, unsigned long nr_flag, arena_t *a,
                      mclient_result_t *r, size_t *cap)
{
	if (pk_send(c) < 0)
		return REPLY_ERROR;
	if (nr_flag && (c->f_protocol & nr_flag))
		return REPLY_CONTINUE;
	return wait_reply(c, stage, a, r, cap);
}

/* ---------------------------------------------------------- CONNECT/HELO */

int mclient_smtp_connect(mclient_t *c, const mclient_session_t *s, arena_t *a, mclient_result_t *r)
{
	size_t cap = 0;
	char portbuf[16];
	double t0 = now_ms();
	result_init(r);
	if (c->broken) {
		fail(c, "connection unusable after an earlier error");
		return -1;
	}
	const char *ip = s->client_ip;
	const char *name = s->client_name ? s->client_name : "unknown";
	unsigned port = s->client_port ? s->client_port : 49152;
	snprintf(portbuf, sizeof(portbuf), "%u", port);
	char *underscore = arena_sprintf(a, "%s [%s]", name, ip ? ip : "unknown");
	const char *mta = s->mta_name ? s->mta_name : "mx.sift.test";

	int rc = REPLY_CONTINUE;
	if (!(c->f_protocol & SMFIP_NOCONNECT)) {
		const char *kv[] = {"j",
		                    mta,
		                    "{daemon_name}",
		                    "sift-mclient",
		                    "{client_addr}",
		                    ip,
		                    "{client_name}",
		                    name,
		                    "{client_ptr}",
		                    name,
		                    "{client_port}",
		                    portbuf,
		                    "_",
		                    underscore,
		                    NULL,
		                    NULL};
		if (send_macros(c, SMFIC_CONNECT, kv) < 0)
			return -1;
		pk_begin(c, SMFIC_CONNECT);
		pk_str(c, name);
		char fam = SMFIA_UNKNOWN;
		if (ip != NULL)
			fam = strchr(ip, ':') ? SMFIA_INET6 : SMFIA_INET;
		pk_put(c, &fam, 1);
		if (fam != SMFIA_UNKNOWN) {
			uint16_t p16 = htons((uint16_t)port);
			pk_put(c, &p16, sizeof(p16));
			pk_str(c, ip);
		}
		rc = send_stage(c, SMFIC_CONNECT, SMFIP_NR_CONN, a, r, &cap);
	}
	if (rc == REPLY_CONTINUE && s->helo != NULL && !(c->f_protocol & SMFIP_NOHELO)) {
		pk_begin(c, SMFIC_HELO);
		pk_str(c, s->helo);
		rc = send_stage(c, SMFIC_HELO, SMFIP_NR_HELO, a, r, &cap);
	}
	r->latency_ms = now_ms() - t0;
	if (rc == REPLY_ERROR)
		return -1;
	if (rc == REPLY_FINAL) {
		/* The filter has decided for the whole SMTP session. */
		c->conn_final = true;
		c->conn_action = r->action;
		c->conn_stage = r->stage;
		free((char *)c->conn_reply);
		c->conn_reply = NULL;
		if (r->reply != NULL && (c->conn_reply = strdup(r->reply)) == NULL) {
			fail(c, "out of memory");
			return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------- message */

/* One header field of the raw message, located in place. */
struct raw_hdr {
	const char *name;
	size_t name_len;
	const char *value; /* after the colon, continuation lines included */
	size_t value_len;
};

static bool is_field_name_char(unsigned char ch)
{
	return ch > 0x20 && ch < 0x7f && ch != ':';
}

/* Length of a line including its LF (or up to end). */
static size_t line_len(const char *p, const char *end)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	return nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
}

/* Is p the first line of a header field ("Name:")? */
/*
 * The length of the field name line p (n bytes) starts with, or 0 when it
 * is not a field. Blanks may stand between the name and the colon (RFC
 * 5322's obsolete syntax): Postfix and Sendmail take such a line as a
 * field with the name alone, and so does the daemon's own parser.
 */
static size_t field_name_len(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && is_field_name_char((unsigned char)p[i]))
		i++;
	size_t name = i;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	return name > 0 && i < n && p[i] == ':' ? name : 0;
}

/*
 * Sends one header: name and value, the value's lines joined with "\n"
 * (CR dropped) and its leading blanks dropped unless the filter asked
 * for them (SMFIP_HDR_LEADSPC).
 */
static void pk_header(mclient_t *c, const struct raw_hdr *h)
{
	pk_begin(c, SMFIC_HEADER);
	size_t name_len = h->name_len;
	if (name_len > MC_MAX_SEND_BYTES / 2)
		name_len = MC_MAX_SEND_BYTES / 2;
	pk_put(c, h->name, name_len);
	pk_put(c, "", 1);
	const char *v = h->value, *end = h->value + h->value_len;
	if (!(c->f_protocol & SMFIP_HDR_LEADSPC))
		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
	/* Drop the field's own final line end. */
	while (end > v && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	size_t room = MC_MAX_SEND_BYTES - 1 - (c->wlen - c->pkt_start - MILTER_LEN_BYTES - 1) - 1;
	size_t put = 0;
	for (const char *p = v; p < end && put < room; p++) {
		if (*p == '\r' && p + 1 < end && p[1] == '\n')
			continue;
		pk_put(c, p, 1);
		put++;
	}
	pk_put(c, "", 1);
}

/* Splits off the header block: fills hdrs (arena), returns the body start. */
static const char *split_headers(arena_t *a, const char *raw, size_t len, struct raw_hdr **out,
                                 size_t *nout)
{
	const char *p = raw, *end = raw + len;
	size_t cap = 16, n = 0;
	struct raw_hdr *h = arena_alloc(a, cap * sizeof(*h));
	*out = h;
	*nout = 0;
	while (p < end) {
		size_t ll = line_len(p, end);
		if (ll == 1 && p[0] == '\n')
			return p + 1; /* the empty line */
		if (ll == 2 && p[0] == '\r' && p[1] == '\n')
			return p + 2;
		if ((p[0] == ' ' || p[0] == '\t') && n > 0) {
			h[n - 1].value_len += ll;
			p += ll;
			continue;
		}
		size_t name_len = field_name_len(p, ll);
		if (name_len == 0)
			return p; /* not a header line: the body starts here */
		if (n == cap)
			h = arena_grow(a, h, n, &cap, sizeof(*h), 16);
		const char *colon = memchr(p, ':', ll);
		h[n].name = p;
		h[n].name_len = name_len;
		h[n].value = colon + 1;
		h[n].value_len = ll - (size_t)(colon - p) - 1;
		n++;
		*out = h;
		*nout = n;
		p += ll;
	}
	return end;
}

/*
 * Sends the body with CRLF line ends in chunks of at most
 * MCLIENT_CHUNK_BYTES. Returns REPLY_CONTINUE, REPLY_SKIP, REPLY_FINAL or
 * REPLY_ERROR.
 */
static int send_body(mclient_t *c, const char *p, const char *end, arena_t *a, mclient_result_t *r,
                     size_t *cap)
{
	char prev = 0;
	if (c->f_protocol & SMFIP_NOBODY)
		return REPLY_CONTINUE;
	while (p < end) {
		pk_begin(c, SMFIC_BODY);
		size_t room = MCLIENT_CHUNK_BYTES;
		/* Keep room for an inserted CR so a CRLF is never split. */
		while (p < end && room >= 2) {
			if (*p == '\n' && prev != '\r') {
				pk_put(c, "\r\n", 2);
				room -= 2;
			} else {
				pk_put(c, p, 1);
				room--;
			}
			prev = *p++;
		}
		int rc = send_stage(c, SMFIC_BODY, SMFIP_NR_BODY, a, r, cap);
		if (rc != REPLY_CONTINUE) {
			if (rc == REPLY_SKIP)
				r->body_skipped = true;
			return rc;
		}
	}
	return REPLY_CONTINUE;
}

/* Ends a transaction the filter decided early: tell it we are done. */
static int finish_early(mclient_t *c, mclient_result_t *r, double t0)
{
	r->latency_ms = now_ms() - t0;
	return send_simple(c, SMFIC_ABORT) < 0 ? -1 : 0;
}

int mclient_message(mclient_t *c, const mclient_env_t *env, const char *raw, size_t len, arena_t *a,
                    mclient_result_t *r)
{
	size_t cap = 0;
	double t0 = now_ms();
	int rc;
	result_init(r);
	if (c->broken) {
		fail(c, "connection unusable after an earlier error");
		return -1;
	}
	if (c->conn_final) {
		r->action = c->conn_action;
		r->stage = c->conn_stage;
		r->reply = c->conn_reply ? arena_strdup(a, c->conn_reply) : NULL;
		return 0;
	}
	if (env->nrcpts == 0 || env->nrcpts > MCLIENT_MAX_RCPTS) {
		fail(c, "between 1 and %d recipients needed", MCLIENT_MAX_RCPTS);
		c->broken = false; /* a caller error; the stream is fine */
		return -1;
	}
	const char *from = env->mail_from ? env->mail_from : "";

	/* MAIL */
	if (!(c->f_protocol & SMFIP_NOMAIL)) {
		const char *at = strrchr(from, '@');
		const char *kv[] = {"i",
		                    env->queue_id,
		                    "{mail_addr}",
		                    from,
		                    "{mail_mailer}",
		                    "smtp",
		                    "{mail_host}",
		                    at ? at + 1 : NULL,
		                    "{auth_authen}",
		                    env->auth_authen,
		                    "{auth_type}",
		                    env->auth_authen ? "PLAIN" : NULL,
		                    NULL,
		                    NULL};
		if (send_macros(c, SMFIC_MAIL, kv) < 0)
			return -1;
		pk_begin(c, SMFIC_MAIL);
		pk_str(c, arena_sprintf(a, "<%s>", from));
		rc = send_stage(c, SMFIC_MAIL, SMFIP_NR_MAIL, a, r, &cap);
		if (rc == REPLY_ERROR)
			return -1;
		if (rc == REPLY_FINAL)
			return finish_early(c, r, t0);
	}

	/* RCPT: a rejected recipient is dropped; all of them rejected ends it. */
	if (!(c->f_protocol & SMFIP_NORCPT)) {
		mclient_result_t last;
		result_init(&last);
		for (size_t i = 0; i < env->nrcpts; i++) {
			const char *rc_at = strrchr(env->rcpts[i], '@');
			const char *kv[] = {"{rcpt_addr}", env->rcpts[i], "{rcpt_mailer}",
			                    "smtp",        "{rcpt_host}", rc_at ? rc_at + 1 : NULL,
			                    NULL,          NULL};
			if (send_macros(c, SMFIC_RCPT, kv) < 0)
				return -1;
			pk_begin(c, SMFIC_RCPT);
			pk_str(c, arena_sprintf(a, "<%s>", env->rcpts[i]));
			result_init(&last);
			rc = send_stage(c, SMFIC_RCPT, SMFIP_NR_RCPT, a, &last, &cap);
			if (rc == REPLY_ERROR)
				return -1;
			if (rc != REPLY_FINAL)
				continue;
			if (last.action == MCLIENT_REJECT || last.action == MCLIENT_TEMPFAIL) {
				r->rcpts_rejected++;
				continue;
			}
			/* accept or discard: for the whole message */
			*r = last;
			return finish_early(c, r, t0);
		}
		if (r->rcpts_rejected == env->nrcpts) {
			size_t rejected = r->rcpts_rejected;
			*r = last;
			r->rcpts_rejected = rejected;
			return finish_early(c, r, t0);
		}
	}
	if (env->abort_at == MCLIENT_ABORT_AFTER_RCPT)
		goto aborted;

	/* DATA */
	if (!(c->f_protocol & SMFIP_NODATA)) {
		const char *kv[] = {"i", env->queue_id, NULL, NULL};
		if (send_macros(c, SMFIC_DATA, kv) < 0)
			return -1;
		pk_begin(c, SMFIC_DATA);
		rc = send_stage(c, SMFIC_DATA, SMFIP_NR_DATA, a, r, &cap);
		if (rc == REPLY_ERROR)
			return -1;
		if (rc == REPLY_FINAL)
			return finish_early(c, r, t0);
	}

	/* Headers, EOH */
	struct raw_hdr *hdrs = NULL;
	size_t nhdrs = 0;
	const char *body = split_headers(a, raw, len, &hdrs, &nhdrs);
	if (!(c->f_protocol & SMFIP_NOHDRS)) {
		for (size_t i = 0; i < nhdrs; i++) {
			pk_header(c, &hdrs[i]);
			rc = send_stage(c, SMFIC_HEADER, SMFIP_NR_HDR, a, r, &cap);
			if (rc == REPLY_ERROR)
				return -1;
			if (rc == REPLY_FINAL)
				return finish_early(c, r, t0);
		}
	}
	if (!(c->f_protocol & SMFIP_NOEOH)) {
		pk_begin(c, SMFIC_EOH);
		rc = send_stage(c, SMFIC_EOH, SMFIP_NR_EOH, a, r, &cap);
		if (rc == REPLY_ERROR)
			return -1;
		if (rc == REPLY_FINAL)
			return finish_early(c, r, t0);
	}
	if (env->abort_at == MCLIENT_ABORT_AFTER_HEADERS)
		goto aborted;

	/* Body */
	rc = send_body(c, body, raw + len, a, r, &cap);
	if (rc == REPLY_ERROR)
		return -1;
	if (rc == REPLY_FINAL)
		return finish_early(c, r, t0);
	if (env->abort_at == MCLIENT_ABORT_AFTER_BODY)
		goto aborted;

	/* End of message: the modifications, then the final answer. */
	{
		const char *kv[] = {"i", env->queue_id, NULL, NULL};
		if (send_macros(c, SMFIC_BODYEOB, kv) < 0)
			return -1;
	}
	pk_begin(c, SMFIC_BODYEOB);
	rc = send_stage(c, SMFIC_BODYEOB, 0, a, r, &cap);
	r->latency_ms = now_ms() - t0;
	if (rc == REPLY_ERROR)
		return -1;
	if (rc == REPLY_CONTINUE) {
		r->action = MCLIENT_ACCEPT;
		r->stage = SMFIC_BODYEOB;
	}
	return 0;

aborted:
	r->action = MCLIENT_ABORTED;
	r->latency_ms = now_ms() - t0;
	return send_simple(c, SMFIC_ABORT) < 0 ? -1 : 0;
}
