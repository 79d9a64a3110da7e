/*
 * dns_resolver.c - the shared asynchronous DNS service (dns.h): one thread
 * owns a c-ares channel and answers lookups that worker threads submit, so
 * lookups started at CONNECT or MAIL FROM are sent, retried and answered
 * while libmilter's thread is busy with the SMTP dialogue.
 *
 * Why a thread rather than a channel per connection driven at score()
 * time: with a per-connection channel nobody would read the answers or
 * run c-ares's retries between the SMTP commands, and every connection
 * would open its own sockets. One channel multiplexes everything over a
 * few sockets, and its answers fill the shared cache even when the
 * message that asked has long gone.
 *
 * Why the response parser (dns_parse_response) is written here: c-ares
 * 1.18's ares_parse_*_reply functions take one type each, drop the TTL of
 * some (TXT, MX, NS, PTR) and the SOA of a negative answer, and allocate per
 * record; the cache needs the smallest TTL, RFC 2308's negative TTL and
 * every type's records in one bounded pass into the answer's own buffer.
 * Names still go through ares_expand_name(). Fuzzed by tests/fuzz/fuzz_dns.c.
 */
#include "config.h"

#include "dns.h"
#include "evidence.h"
#include "log.h"
#include "xalloc.h"

#include <ares.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The thread wakes at least this often even when c-ares has no timer. */
#define RESOLVER_MAX_SLEEP_MS 1000
#define FLIGHT_BUCKETS        1024

struct dns_query {
	struct dns_query *batch_next; /* all records of the batch, for freeing */
	struct dns_query *queue_next; /* the resolver's submit queue, then its wait list */
	/* Resolver thread only: identical lookups share one query in flight. */
	struct dns_query *flight_next; /* chain in the in-flight table */
	struct dns_query *followers;   /* lookups waiting on this one's answer */
	struct dns_query *follow_next;
	bool flying; /* in the in-flight table */
	dns_batch_t *batch;
	dns_t *res;
	char qname[DNS_QNAME_MAX_BYTES];
	int qtype, then_qtype;
	bool use_cache;
	int phase; /* qtype, then then_qtype when the first is NOERROR */
	/* Written by the resolver thread before done is set under the batch lock. */
	bool done;
	int source;
	/*
	 * The answers as they arrived, sized to what they hold (a dns_answer_t
	 * is 4.3 KB, most answers a status or one address): a query record
	 * lives until c-ares gives up on it, and a message may have thousands.
	 * NULL: DNS_PENDING. See ans_set() and ans_get().
	 */
	struct stored_answer *ans, *then_ans;
};

struct stored_answer {
	size_t bytes; /* of the dns_answer_t prefix in raw: up to data[used] */
	unsigned char raw[];
};

struct dns_batch {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pending;
	bool released;
	dns_query_t *queries;
};

struct dns {
	unsigned refs; /* atomic */
	char *servers_csv;
	dns_conf_t conf;
	ares_channel ch;
	dns_cache_t *cache;

	pthread_mutex_t qlock; /* guards the fields below */
	dns_query_t *qhead, *qtail;
	bool stop;
	bool started;
	pthread_t thread;
	int wake[2]; /* pipe: submitters write a byte, the thread polls */

	/*
	 * Lookups in flight by name, touched by the resolver thread only: a
	 * spam run brings the same URI domain in many concurrent messages,
	 * and those should wait for one answer rather than each ask.
	 */
	dns_query_t *flights[FLIGHT_BUCKETS];
	/*
	 * Resolver thread only: lookups waiting for c-ares, which is given at
	 * most conf.max_inflight at once. A message of 1,000 URI domains sent
	 * its questions in one burst, and the answers overflowed the socket's
	 * receive buffer (about 300 datagrams by default): the rest waited
	 * dns_timeout for a retry, and so did other messages' answers.
	 */
	dns_query_t *whead, *wtail;
	unsigned in_ares;

	/*
	 * Lookups submitted and not finished, waiting or out, each kept until
	 * c-ares gives up on it (dns_timeout x dns_tries), long after its
	 * message has gone: with a dead nameserver and URI-heavy mail they
	 * grew without bound. Past conf.max_pending a lookup fails at once.
	 */
	size_t pending;             /* atomic */
	log_ratelimit_t refused_rl; /* under qlock: saying so once a minute */

	uint64_t n_queries, n_cache_hits, n_failures, n_shared, n_refused; /* atomic */
};

/* Replaces *slot with a copy of a, sized to its records' data. */
static void ans_set(struct stored_answer **slot, const dns_answer_t *a)
{
	size_t used = a->used < sizeof(a->data) ? a->used : sizeof(a->data);
	size_t bytes = offsetof(dns_answer_t, data) + used;
	struct stored_answer *sa = xalloc_malloc(sizeof(*sa) + bytes);
	sa->bytes = bytes;
	memcpy(sa->raw, a, bytes);
	free(*slot);
	*slot = sa;
}

static void ans_set_status(struct stored_answer **slot, int status)
{
	dns_answer_t a;
	memset(&a, 0, offsetof(dns_answer_t, data));
	a.status = status;
	ans_set(slot, &a);
}

/* The stored answer into a whole dns_answer_t (DNS_PENDING when none). */
static void ans_get(const struct stored_answer *sa, dns_answer_t *out)
{
	if (sa == NULL) {
		memset(out, 0, offsetof(dns_answer_t, data));
		out->status = DNS_PENDING;
		return;
	}
	memcpy(out, sa->raw, sa->bytes);
}

static int ans_status(const struct stored_answer *sa)
{
	int st;
	if (sa == NULL)
		return DNS_PENDING;
	memcpy(&st, sa->raw + offsetof(dns_answer_t, status), sizeof(st));
	return st;
}

static struct stored_answer *ans_dup(const struct stored_answer *sa)
{
	if (sa == NULL)
		return NULL;
	struct stored_answer *c = xalloc_malloc(sizeof(*c) + sa->bytes);
	memcpy(c, sa, sizeof(*c) + sa->bytes);
	return c;
}

/* The submit queue and the wait list: FIFOs through queue_next. */
static void queue_append(dns_query_t **head, dns_query_t **tail, dns_query_t *q)
{
	q->queue_next = NULL;
	if (*tail)
		(*tail)->queue_next = q;
	else
		*head = q;
	*tail = q;
}

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_status;

static void ares_init_once(void)
{
	ares_init_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static void counter_add(uint64_t *c, uint64_t n)
{
	__atomic_add_fetch(c, n, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ parsing */

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static unsigned get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static int skip_name(const unsigned char *p, size_t n, size_t off, size_t *out)
{
	/* Compression pointers end a name; they are not followed here. */
	for (unsigned hops = 0; hops < 128; hops++) {
		if (off >= n)
			return -1;
		unsigned len = p[off];
		if (len == 0) {
			*out = off + 1;
			return 0;
		}
		if ((len & 0xc0) == 0xc0) {
			if (off + 2 > n)
				return -1;
			*out = off + 2;
			return 0;
		}
		if (len & 0xc0)
			return -1;
		off += 1 + len;
	}
	return -1;
}

/* Reserves room for one record of len bytes (+1 for a NUL); false when full. */
static bool rr_add(dns_answer_t *out, size_t len, unsigned pref, bool txt)
{
	if (out->nrr >= (txt ? DNS_MAX_RR : DNS_OTHER_MAX_RR) ||
	    out->used + len + 1 > (txt ? sizeof(out->data) : DNS_OTHER_MAX_BYTES))
		return false;
	out->rr[out->nrr].off = (uint16_t)out->used;
	out->rr[out->nrr].len = (uint16_t)len;
	out->rr[out->nrr].pref = (uint16_t)pref;
	out->data[out->used + len] = '\0';
	out->nrr++;
	out->used += len + 1;
	return true;
}

/* A (compressed) domain name at off, in text form, as one record. */
static void rr_add_name(dns_answer_t *out, const unsigned char *p, size_t n, size_t off,
                        unsigned pref)
{
	char *name = NULL;
	long enclen;
	if (off >= n || ares_expand_name(p + off, p, (int)n, &name, &enclen) != ARES_SUCCESS)
		return;
	size_t l = strlen(name);
	if (rr_add(out, l, pref, false))
		memcpy(out->data + out->rr[out->nrr - 1].off, name, l);
	ares_free_string(name);
}

int dns_parse_response(const unsigned char *p, size_t n, int qtype, dns_answer_t *out, long *ttl_s)
{
	memset(out, 0, offsetof(dns_answer_t, data));
	*ttl_s = -1;
	if (p == NULL || n < 12)
		return -1;
	unsigned rcode = p[3] & 0x0f;
	unsigned qd = get16(p + 4), an = get16(p + 6), ns = get16(p + 8);
	size_t off = 12;
	for (unsigned i = 0; i < qd; i++) {
		if (skip_name(p, n, off, &off) < 0 || off + 4 > n)
			return -1;
		off += 4;
	}
	if (rcode != 0 && rcode != 3) {
		out->status = DNS_SERVFAIL; /* SERVFAIL, REFUSED, ...: not an answer */
		return 0;
	}
	long min_ttl = -1;
	for (unsigned i = 0; i < an + ns; i++) {
		if (skip_name(p, n, off, &off) < 0 || off + 10 > n)
			return -1;
		unsigned type = get16(p + off), klass = get16(p + off + 2);
		long ttl = (long)(get32(p + off + 4) & 0x7fffffff);
		unsigned rdlen = get16(p + off + 8);
		size_t rd = off + 10;
		if (rd + rdlen > n)
			return -1;
		off = rd + rdlen;
		if (klass != 1)
			continue;
		if (i < an && (int)type == qtype) {
			if (min_ttl < 0 || ttl < min_ttl)
				min_ttl = ttl;
			if (type == DNS_T_A && rdlen == 4) {
				if (rr_add(out, 4, 0, false))
					memcpy(out->data + out->rr[out->nrr - 1].off, p + rd, 4);
			} else if (type == DNS_T_AAAA && rdlen == 16) {
				if (rr_add(out, 16, 0, false))
					memcpy(out->data + out->rr[out->nrr - 1].off, p + rd, 16);
			} else if (type == DNS_T_TXT) {
				/* Every character-string of the record, joined (RFC 7208 3.3). */
				size_t len = 0, nstr = 0;
				for (size_t s = rd; s < rd + rdlen; s += 1 + p[s], nstr++)
					len += p[s];
				if (len + nstr != rdlen || !rr_add(out, len, 0, true))
					continue; /* a string runs past the record: malformed */
				char *dst = out->data + out->rr[out->nrr - 1].off;
				for (size_t s = rd; s < rd + rdlen; s += 1 + p[s]) {
					memcpy(dst, p + s + 1, p[s]);
					dst += p[s];
				}
			} else if (type == DNS_T_MX && rdlen > 2) {
				rr_add_name(out, p, rd + rdlen, rd + 2, get16(p + rd));
			} else if (type == DNS_T_PTR || type == DNS_T_NS) {
				rr_add_name(out, p, rd + rdlen, rd, 0);
			}
		} else if (i >= an && type == 6 /* SOA */ && qtype != 6) {
			/* RFC 2308: a negative answer lives min(SOA TTL, SOA MINIMUM). */
			size_t s;
			if (skip_name(p, n, rd, &s) < 0 || skip_name(p, n, s, &s) < 0 ||
			    s + 20 > rd + rdlen)
				continue;
			long minimum = (long)(get32(p + s + 16) & 0x7fffffff);
			long neg = ttl < minimum ? ttl : minimum;
			if (out->nrr == 0)
				*ttl_s = neg;
		}
	}
	if (out->nrr > 0) {
		out->status = DNS_NOERROR;
		*ttl_s = min_ttl;
	} else {
		out->status = rcode == 3 ? DNS_NXDOMAIN : DNS_NODATA;
	}
	return 0;
}

int dns_answer_rcode(const dns_answer_t *a)
{
	return a->status == DNS_NOERROR || a->status == DNS_NODATA ? 0
	       : a->status == DNS_NXDOMAIN                         ? 3
	                                                           : -1;
}

const char *dns_answer_rr(const dns_answer_t *a, unsigned i, size_t *len)
{
	if (i >= a->nrr)
		return NULL;
	if (len)
		*len = a->rr[i].len;
	return a->data + a->rr[i].off;
}

const char *dns_status_name(int status)
{
	static const char *const names[] = {"PENDING", "NOERROR",  "NXDOMAIN",
	                                    "NODATA",  "SERVFAIL", "TIMEOUT"};
	return status >= 0 && status <= DNS_TIMEOUT ? names[status] : "?";
}

/* ------------------------------------------------------------ batches */

dns_batch_t *dns_batch_new(void)
{
	dns_batch_t *b = xalloc_calloc(1, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	/* Deadlines are monotonic; a clock step must not stretch a wait. */
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cond, &ca);
	pthread_condattr_destroy(&ca);
	return b;
}

static void batch_free(dns_batch_t *b)
{
	for (dns_query_t *q = b->queries, *next; q != NULL; q = next) {
		next = q->batch_next;
		free(q->ans);
		free(q->then_ans);
		free(q);
	}
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

void dns_batch_release(dns_batch_t *b)
{
	if (b == NULL)
		return;
	pthread_mutex_lock(&b->lock);
	b->released = true;
	bool last = b->pending == 0;
	pthread_mutex_unlock(&b->lock);
	if (last)
		batch_free(b);
}

bool dns_batch_wait(dns_batch_t *b, long deadline_ms)
{
	struct timespec ts = {.tv_sec = deadline_ms / 1000,
	                      .tv_nsec = (deadline_ms % 1000) * 1000000L};
	pthread_mutex_lock(&b->lock);
	while (b->pending > 0) {
		if (pthread_cond_timedwait(&b->cond, &b->lock, &ts) == ETIMEDOUT)
			break;
	}
	bool all = b->pending == 0;
	pthread_mutex_unlock(&b->lock);
	return all;
}

bool dns_result(dns_batch_t *b, const dns_query_t *q, dns_answer_t *out, dns_answer_t *then_out,
                int *source)
{
	pthread_mutex_lock(&b->lock);
	bool done = q->done;
	if (done) {
		ans_get(q->ans, out);
		if (then_out)
			ans_get(q->then_ans, then_out);
		if (source)
			*source = q->source;
	}
	pthread_mutex_unlock(&b->lock);
	return done;
}

/* Resolver thread (or submitter, for failures): the record is final. */
static void query_complete(dns_query_t *q)
{
	dns_batch_t *b = q->batch;
	__atomic_sub_fetch(&q->res->pending, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&b->lock);
	q->done = true;
	b->pending--;
	if (b->pending == 0)
		pthread_cond_broadcast(&b->cond);
	bool last = b->released && b->pending == 0;
	pthread_mutex_unlock(&b->lock);
	if (last)
		batch_free(b);
}

/* ------------------------------------------------------------ resolver thread */

static void send_query(dns_query_t *q);

/* The first answer asks for the follow-up question (a listing's TXT). */
static bool wants_then(const dns_query_t *q)
{
	return q->then_qtype != 0 && ans_status(q->ans) == DNS_NOERROR;
}

/*
 * Fills q from the cache; true when nothing is left to ask. With the
 * first answer cached but not the follow-up, q moves on to that phase.
 */
static bool from_cache(dns_t *r, dns_query_t *q)
{
	long now = dns_now_ms();
	dns_answer_t a;
	if (q->phase == q->qtype) {
		if (!dns_cache_get(r->cache, q->qname, q->qtype, now, &a))
			return false;
		ans_set(&q->ans, &a);
		if (!wants_then(q))
			return true;
		q->phase = q->then_qtype;
	}
	if (!dns_cache_get(r->cache, q->qname, q->then_qtype, now, &a))
		return false;
	ans_set(&q->then_ans, &a);
	return true;
}

static dns_query_t **flight_slot(dns_t *r, const char *qname)
{
	uint32_t h = 2166136261u;
	for (const char *p = qname; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return &r->flights[h % FLIGHT_BUCKETS];
}

/* A cacheable lookup of the same question(s) already in flight, or NULL. */
static dns_query_t *flight_find(dns_t *r, const dns_query_t *q)
{
	for (dns_query_t *f = *flight_slot(r, q->qname); f != NULL; f = f->flight_next)
		if (f->qtype == q->qtype && f->then_qtype == q->then_qtype &&
		    strcmp(f->qname, q->qname) == 0)
			return f;
	return NULL;
}

static void flight_add(dns_t *r, dns_query_t *q)
{
	dns_query_t **slot = flight_slot(r, q->qname);
	q->flight_next = *slot;
	*slot = q;
	q->flying = true;
}

/*
 * The lookup is final: followers get a copy of its answer first, because
 * completing the leader may free it (its batch may be gone already).
 */
static void finish(dns_t *r, dns_query_t *q)
{
	if (q->flying) {
		dns_query_t **pp = flight_slot(r, q->qname);
		while (*pp != q)
			pp = &(*pp)->flight_next;
		*pp = q->flight_next;
		q->flying = false;
	}
	for (dns_query_t *f = q->followers, *next; f != NULL; f = next) {
		next = f->follow_next;
		free(f->ans);
		free(f->then_ans);
		f->ans = ans_dup(q->ans);
		f->then_ans = ans_dup(q->then_ans);
		f->source = DNS_SRC_NET;
		query_complete(f);
	}
	q->followers = NULL;
	query_complete(q);
}

static long ttl_ms_for(const dns_t *r, long ttl_s)
{
	long ms = ttl_s < 0 ? r->conf.negative_ttl_ms : ttl_s * 1000;
	return ms > r->conf.max_ttl_ms ? r->conf.max_ttl_ms : ms;
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	dns_query_t *q = arg;
	dns_t *r = q->res;
	dns_answer_t ab, *a = &ab; /* parsed here, kept in q sized to fit */
	long ttl_s = -1;
	(void)timeouts;

	bool parsed =
	    (status == ARES_SUCCESS || status == ARES_ENOTFOUND || status == ARES_ENODATA) &&
	    dns_parse_response(abuf, alen > 0 ? (size_t)alen : 0, q->phase, a, &ttl_s) == 0;
	if (!parsed) {
		memset(a, 0, offsetof(dns_answer_t, data));
		a->status = status == ARES_ETIMEOUT ? DNS_TIMEOUT : DNS_SERVFAIL;
	}
	if (a->status == DNS_SERVFAIL || a->status == DNS_TIMEOUT)
		counter_add(&r->n_failures, 1);
	else if (q->use_cache)
		dns_cache_put(r->cache, q->qname, q->phase, a, ttl_ms_for(r, ttl_s), dns_now_ms());
	ans_set(q->phase == q->qtype ? &q->ans : &q->then_ans, a);

	if (q->phase == q->qtype && wants_then(q) && status != ARES_EDESTRUCTION) {
		q->phase = q->then_qtype;
		if (!q->use_cache ||
		    !dns_cache_get(r->cache, q->qname, q->then_qtype, dns_now_ms(), a)) {
			send_query(q); /* the same slot of max_inflight */
			return;
		}
		ans_set(&q->then_ans, a);
	}
	r->in_ares--;
	finish(r, q);
}

static void send_query(dns_query_t *q)
{
	counter_add(&q->res->n_queries, 1);
	ares_query(q->res->ch, q->qname, 1 /* IN */, q->phase, on_answer, q);
}

/* Hands waiting lookups to c-ares while it has fewer than max_inflight out. */
static void pump(dns_t *r)
{
	while (r->whead != NULL && r->in_ares < r->conf.max_inflight) {
		dns_query_t *q = r->whead;
		r->whead = q->queue_next;
		if (r->whead == NULL)
			r->wtail = NULL;
		r->in_ares++;
		send_query(q); /* may answer at once (and call on_answer) */
	}
}

/* At stop: lookups that never went out fail, with their followers. */
static void fail_waiting(dns_t *r)
{
	while (r->whead != NULL) {
		dns_query_t *q = r->whead;
		r->whead = q->queue_next;
		ans_set_status(&q->ans, DNS_SERVFAIL);
		finish(r, q);
	}
	r->wtail = NULL;
}

static void *resolver_main(void *arg)
{
	dns_t *r = arg;
	for (;;) {
		pthread_mutex_lock(&r->qlock);
		dns_query_t *list = r->qhead;
		r->qhead = r->qtail = NULL;
		bool stop = r->stop;
		pthread_mutex_unlock(&r->qlock);
		char drain[64];
		while (read(r->wake[0], drain, sizeof(drain)) > 0)
			;
		for (dns_query_t *q = list, *next; q != NULL; q = next) {
			next = q->queue_next;
			dns_query_t *lead;
			if (stop) {
				ans_set_status(&q->ans, DNS_SERVFAIL);
				query_complete(q);
			} else if (q->use_cache && from_cache(r, q)) {
				/*
				 * Answered between its submitter's look at the cache and
				 * now (answers are cached by this thread before their
				 * lookups finish, so no answer falls in between).
				 */
				q->source = DNS_SRC_CACHE;
				counter_add(&r->n_cache_hits, 1);
				query_complete(q);
			} else if (q->use_cache && (lead = flight_find(r, q)) != NULL) {
				q->follow_next = lead->followers;
				lead->followers = q;
				counter_add(&r->n_shared, 1);
			} else {
				if (q->use_cache)
					flight_add(r, q);
				queue_append(&r->whead, &r->wtail, q);
			}
		}
		if (stop) {
			fail_waiting(r);
			break;
		}
		pump(r);

		ares_socket_t socks[ARES_GETSOCK_MAXNUM];
		/* Bits tested by hand: c-ares's macros shift a signed 1 into the sign bit. */
		unsigned bits = (unsigned)ares_getsock(r->ch, socks, ARES_GETSOCK_MAXNUM);
		struct pollfd pfd[ARES_GETSOCK_MAXNUM + 1];
		int np = 0;
		pfd[np++] = (struct pollfd){.fd = r->wake[0], .events = POLLIN};
		for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
			short ev = 0;
			if ((bits >> i) & 1u)
				ev |= POLLIN;
			if ((bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u)
				ev |= POLLOUT;
			if (ev)
				pfd[np++] = (struct pollfd){.fd = socks[i], .events = ev};
		}
		struct timeval maxtv = {.tv_sec = RESOLVER_MAX_SLEEP_MS / 1000,
		                        .tv_usec = (RESOLVER_MAX_SLEEP_MS % 1000) * 1000};
		struct timeval tvbuf, *tv = ares_timeout(r->ch, &maxtv, &tvbuf);
		int wait_ms = (int)(tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000);
		int rc = poll(pfd, (nfds_t)np, wait_ms);
		bool any = false;
		for (int i = 1; rc > 0 && i < np; i++) {
			if (pfd[i].revents == 0)
				continue;
			any = true;
			ares_socket_t rfd = (pfd[i].revents & (POLLIN | POLLERR | POLLHUP))
			                        ? pfd[i].fd
			                        : ARES_SOCKET_BAD;
			ares_socket_t wfd =
			    (pfd[i].revents & POLLOUT) ? pfd[i].fd : ARES_SOCKET_BAD;
			ares_process_fd(r->ch, rfd, wfd);
		}
		if (!any)
			ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timers */
	}
	/* Fails whatever is still in flight (ARES_EDESTRUCTION) so batches finish. */
	ares_destroy(r->ch);
	r->ch = NULL;
	return NULL;
}

/* ------------------------------------------------------------ public */

dns_t *dns_new(const dns_conf_t *rc, char *err, size_t err_bytes)
{
	pthread_once(&ares_once, ares_init_once);
	if (ares_init_status != ARES_SUCCESS) {
		snprintf(err, err_bytes, "c-ares: %s", ares_strerror(ares_init_status));
		return NULL;
	}
	dns_t *r = xalloc_calloc(1, sizeof(*r));
	r->refs = 1;
	r->conf = *rc;
	if (r->conf.max_pending == 0)
		r->conf.max_pending = DNS_DEFAULT_MAX_PENDING;
	if (r->conf.max_inflight == 0)
		r->conf.max_inflight = DNS_DEFAULT_MAX_INFLIGHT;
	/* NULL means the system's resolvers, so a failed copy must not become one. */
	r->servers_csv = rc->servers_csv ? xalloc_strdup(rc->servers_csv) : NULL;
	r->conf.servers_csv = r->servers_csv;

	struct ares_options o;
	memset(&o, 0, sizeof(o));
	o.timeout = (int)rc->timeout_ms;
	o.tries = rc->tries;
	/* Lists are absolute names: no search domains, no ndots games. */
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	int status =
	    ares_init_options(&r->ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
	if (status == ARES_SUCCESS && r->servers_csv)
		status = ares_set_servers_ports_csv(r->ch, r->servers_csv);
	if (status != ARES_SUCCESS) {
		snprintf(err, err_bytes, "c-ares: %s", ares_strerror(status));
		if (r->ch)
			ares_destroy(r->ch);
		free(r->servers_csv);
		free(r);
		return NULL;
	}
	if (pipe2(r->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
		snprintf(err, err_bytes, "pipe: %s", strerror(errno));
		ares_destroy(r->ch);
		free(r->servers_csv);
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->qlock, NULL);
	r->cache = dns_cache_new(rc->cache_max_entries, rc->cache_max_bytes);
	return r;
}

bool dns_same(const dns_t *r, const dns_conf_t *rc)
{
	const dns_conf_t *a = &r->conf;
	bool same_servers =
	    (a->servers_csv == NULL && rc->servers_csv == NULL) ||
	    (a->servers_csv && rc->servers_csv && strcmp(a->servers_csv, rc->servers_csv) == 0);
	return same_servers && a->timeout_ms == rc->timeout_ms && a->tries == rc->tries &&
	       a->cache_max_entries == rc->cache_max_entries &&
	       a->cache_max_bytes == rc->cache_max_bytes && a->max_ttl_ms == rc->max_ttl_ms &&
	       a->negative_ttl_ms == rc->negative_ttl_ms && a->max_pending == rc->max_pending &&
	       a->max_inflight == rc->max_inflight;
}

dns_t *dns_ref(dns_t *r)
{
	__atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
	return r;
}

void dns_unref(dns_t *r)
{
	if (r == NULL || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	pthread_mutex_lock(&r->qlock);
	r->stop = true;
	bool started = r->started;
	pthread_mutex_unlock(&r->qlock);
	if (started) {
		(void)!write(r->wake[1], "x", 1);
		pthread_join(r->thread, NULL);
	} else {
		ares_destroy(r->ch);
	}
	close(r->wake[0]);
	close(r->wake[1]);
	dns_cache_free(r->cache);
	pthread_mutex_destroy(&r->qlock);
	free(r->servers_csv);
	free(r);
}

void dns_get_stats(dns_t *r, dns_stats_t *st)
{
	st->queries = __atomic_load_n(&r->n_queries, __ATOMIC_RELAXED);
	st->cache_hits = __atomic_load_n(&r->n_cache_hits, __ATOMIC_RELAXED);
	st->failures = __atomic_load_n(&r->n_failures, __ATOMIC_RELAXED);
	st->shared = __atomic_load_n(&r->n_shared, __ATOMIC_RELAXED);
	st->refused = __atomic_load_n(&r->n_refused, __ATOMIC_RELAXED);
	st->pending = __atomic_load_n(&r->pending, __ATOMIC_RELAXED);
	dns_cache_usage(r->cache, &st->cache_entries, &st->cache_bytes);
}

/* Starts the thread once; the caller holds r->qlock. */
static int resolver_start_locked(dns_t *r)
{
	if (r->started)
		return 0;
	int rc = ev_thread_start(&r->thread, "sift-dns", resolver_main, r);
	if (rc == 0)
		r->started = true;
	return rc;
}

int dns_start(dns_t *r)
{
	pthread_mutex_lock(&r->qlock);
	int rc = resolver_start_locked(r);
	pthread_mutex_unlock(&r->qlock);
	return rc;
}

dns_query_t *dns_submit(dns_t *r, dns_batch_t *b, const char *qname, int qtype, int then_qtype,
                        unsigned flags)
{
	dns_query_t *q = xalloc_calloc(1, sizeof(*q));
	q->batch = b;
	q->res = r;
	snprintf(q->qname, sizeof(q->qname), "%s", qname);
	q->qtype = qtype;
	q->then_qtype = then_qtype;
	q->use_cache = !(flags & DNS_F_NOCACHE);
	q->phase = qtype;

	bool cached = q->use_cache && from_cache(r, q);
	pthread_mutex_lock(&b->lock);
	q->batch_next = b->queries;
	b->queries = q;
	if (cached) {
		q->done = true;
		q->source = DNS_SRC_CACHE;
	} else {
		b->pending++;
	}
	pthread_mutex_unlock(&b->lock);
	if (cached) {
		counter_add(&r->n_cache_hits, 1);
		return q;
	}
	if (__atomic_add_fetch(&r->pending, 1, __ATOMIC_RELAXED) > r->conf.max_pending) {
		ans_set_status(&q->ans, DNS_SERVFAIL); /* (query_complete() takes the count back) */
		counter_add(&r->n_failures, 1);
		counter_add(&r->n_refused, 1);
		query_complete(q);
		unsigned lost = 0;
		pthread_mutex_lock(&r->qlock);
		bool say = log_ratelimit(&r->refused_rl, 1, 60, &lost);
		pthread_mutex_unlock(&r->qlock);
		if (say)
			log_msg(LOG_L_WARNING,
			        "dns: %zu lookups waiting for answers (dns_max_pending): new ones "
			        "fail at once (%u more since the last line); is the nameserver "
			        "answering?",
			        r->conf.max_pending, lost);
		return q;
	}

	pthread_mutex_lock(&r->qlock);
	bool ok = !r->stop && resolver_start_locked(r) == 0;
	if (ok) {
		queue_append(&r->qhead, &r->qtail, q);
	}
	pthread_mutex_unlock(&r->qlock);
	if (ok) {
		(void)!write(r->wake[1], "x", 1);
	} else {
		ans_set_status(&q->ans, DNS_SERVFAIL);
		counter_add(&r->n_failures, 1);
		query_complete(q);
	}
	return q;
}

int dns_lookup(dns_t *r, const char *qname, int qtype, long deadline_ms, dns_answer_t *out)
{
	dns_batch_t *b = dns_batch_new();
	dns_query_t *q = dns_submit(r, b, qname, qtype, 0, 0);
	dns_batch_wait(b, deadline_ms);
	if (!dns_result(b, q, out, NULL, NULL)) {
		memset(out, 0, offsetof(dns_answer_t, data));
		out->status = DNS_TIMEOUT;
	}
	dns_batch_release(b);
	return out->status;
}
