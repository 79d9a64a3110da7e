/*
 * auth_dns.c - the authentication libraries' DNS, answered by the shared
 * DNS service (dns.h) under the message deadline: a resolver layer for
 * libspf2 (SPF_dns_server_t) and the query callbacks of libopendkim.
 * Both libraries ask one question at a time from the thread that scores
 * the message, so that thread's deadline is kept in thread-local storage.
 */
#include "config.h"

#include "auth_int.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include <opendkim/dkim.h>

static __thread long tls_deadline_ms;
static __thread unsigned tls_failed;

void auth_dns_begin(long deadline_ms)
{
	tls_deadline_ms = deadline_ms;
	tls_failed = 0;
}

unsigned auth_dns_failures(void)
{
	return tls_failed;
}

static int lookup(dns_t *dns, const char *name, int type, dns_answer_t *a)
{
	int st = dns_lookup(dns, name, type, tls_deadline_ms, a);
	if (st == DNS_TIMEOUT || st == DNS_SERVFAIL)
		tls_failed++;
	return st;
}

/* ------------------------------------------------------------ libspf2 */

/*
 * RFC 7208 4.6.4 limits one check_host() to 10 DNS-querying terms and 2
 * void lookups. libspf2 counts the terms of each record on its own and lets
 * include and redirect nest 20 deep, so a tree of records of 10 includes
 * each asks without end (until the message deadline). Counted here over
 * the whole check instead: the first record, 10 more (include, redirect)
 * and exp='s explanation, 10 terms of up to 11 questions each (mx and
 * ptr), and 2 void answers to a, mx and exists; past them every question is answered "no
 * such name" and the check ends as permerror (auth_spf_over_limit()).
 */
#define SPF_MAX_RECORDS 12
#define SPF_MAX_LOOKUPS 111
#define SPF_MAX_VOID    2

static __thread unsigned tls_spf_records, tls_spf_lookups, tls_spf_voids;
static __thread bool tls_spf_over;

void auth_spf_begin(void)
{
	tls_spf_records = tls_spf_lookups = tls_spf_voids = 0;
	tls_spf_over = false;
}

bool auth_spf_over_limit(void)
{
	return tls_spf_over;
}

static SPF_dns_rr_t *spf_lookup(SPF_dns_server_t *srv, const char *domain, ns_type type,
                                int should_cache)
{
	(void)should_cache;
	if (tls_spf_over || ++tls_spf_lookups > SPF_MAX_LOOKUPS ||
	    (type == ns_t_txt && ++tls_spf_records > SPF_MAX_RECORDS)) {
		tls_spf_over = true;
		return SPF_dns_rr_new_init(srv, domain, type, 0, HOST_NOT_FOUND);
	}
	/*
	 * RFC 7208 7.3: a macro expansion longer than 253 bytes loses labels
	 * from the left (the resolver would refuse it: a lookup failure, so
	 * temperror, in the hands of whoever picks the local part).
	 */
	const char *qname = domain;
	while (strlen(qname) > 253 && strchr(qname, '.') != NULL)
		qname = strchr(qname, '.') + 1;
	dns_answer_t *a = malloc(sizeof(*a));
	if (a == NULL)
		return SPF_dns_rr_new_init(srv, domain, type, 0, TRY_AGAIN);
	int st = lookup(srv->hook, qname, (int)type, a);
	if ((st == DNS_NXDOMAIN || st == DNS_NODATA) &&
	    (type == ns_t_a || type == ns_t_aaaa || type == ns_t_mx) &&
	    ++tls_spf_voids > SPF_MAX_VOID)
		tls_spf_over = true;
	int herrno = st == DNS_NOERROR    ? NETDB_SUCCESS
	             : st == DNS_NXDOMAIN ? HOST_NOT_FOUND
	             : st == DNS_NODATA   ? NO_DATA
	                                  : TRY_AGAIN;
	SPF_dns_rr_t *rr = SPF_dns_rr_new_init(srv, domain, type, 0, herrno);
	if (rr == NULL || st != DNS_NOERROR) {
		free(a);
		return rr;
	}
	int n = 0;
	for (unsigned i = 0; i < a->nrr; i++) {
		size_t len;
		const char *d = dns_answer_rr(a, i, &len);
		size_t need = type == ns_t_a      ? sizeof(struct in_addr)
		              : type == ns_t_aaaa ? sizeof(struct in6_addr)
		                                  : len + 1;
		if (SPF_dns_rr_buf_realloc(rr, n, need) != SPF_E_SUCCESS)
			break;
		if (type == ns_t_a && len == 4)
			memcpy(&rr->rr[n]->a, d, 4);
		else if (type == ns_t_aaaa && len == 16)
			memcpy(&rr->rr[n]->aaaa, d, 16);
		else if (type == ns_t_txt || type == ns_t_mx || type == ns_t_ptr)
			memcpy(rr->rr[n]->txt, d, len + 1);
		else
			continue;
		n++;
	}
	rr->num_rr = n;
	if (n == 0)
		rr->herrno = NO_DATA;
	free(a);
	return rr;
}

SPF_dns_server_t *auth_spf_dns_new(dns_t *dns)
{
	SPF_dns_server_t *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	/* No destroy hook: SPF_server_free() leaves the layer alone; we free it. */
	s->lookup = spf_lookup;
	s->name = "sift";
	s->hook = dns;
	return s;
}

void auth_spf_dns_free(SPF_dns_server_t *s)
{
	free(s);
}

/* ------------------------------------------------------------ libopendkim */

/*
 * libopendkim parses DNS replies in wire format itself, so the answer is
 * written back as one: header, the question, the TXT records (each split
 * into character-strings of at most 255 bytes). One query at a time per
 * thread, so its state is thread-local too.
 */
struct dkim_q {
	size_t bytes;
	bool expired;
};
static __thread struct dkim_q tls_q;

static bool put(unsigned char *buf, size_t cap, size_t *n, const void *p, size_t len)
{
	if (*n + len > cap)
		return false;
	memcpy(buf + *n, p, len);
	*n += len;
	return true;
}

size_t auth_dns_wire(const char *qname, int qtype, const dns_answer_t *a, unsigned char *buf,
                     size_t cap)
{
	unsigned rcode = a->status == DNS_NXDOMAIN                             ? 3
	                 : a->status == DNS_NOERROR || a->status == DNS_NODATA ? 0
	                                                                       : 2;
	unsigned char h[12] = {0, 0, 0x81, (unsigned char)(0x80 | rcode), 0, 1, 0, 0, 0, 0, 0, 0};
	size_t n = 0;
	if (!put(buf, cap, &n, h, sizeof(h)))
		return 0;
	for (const char *l = qname; *l;) {
		size_t ll = strcspn(l, ".");
		if (ll == 0 || ll > 63)
			return 0;
		unsigned char b = (unsigned char)ll;
		if (!put(buf, cap, &n, &b, 1) || !put(buf, cap, &n, l, ll))
			return 0;
		l += ll + (l[ll] == '.');
	}
	unsigned char tail[5] = {0, (unsigned char)(qtype >> 8), (unsigned char)qtype, 0, 1};
	if (!put(buf, cap, &n, tail, sizeof(tail)))
		return 0;
	unsigned an = 0;
	for (unsigned i = 0; a->status == DNS_NOERROR && qtype == DNS_T_TXT && i < a->nrr; i++) {
		size_t len;
		const char *d = dns_answer_rr(a, i, &len);
		size_t rdlen = len + (len + 254) / 255 + (len == 0);
		if (rdlen > 65535)
			continue;
		unsigned char rh[12] = {0xc0,
		                        12,
		                        0,
		                        16,
		                        0,
		                        1,
		                        0,
		                        0,
		                        1,
		                        0x2c,
		                        (unsigned char)(rdlen >> 8),
		                        (unsigned char)rdlen};
		size_t save = n;
		bool ok = put(buf, cap, &n, rh, sizeof(rh));
		for (size_t off = 0; ok && (off < len || (len == 0 && off == 0));) {
			size_t chunk = len - off > 255 ? 255 : len - off;
			unsigned char b = (unsigned char)chunk;
			ok = put(buf, cap, &n, &b, 1) && put(buf, cap, &n, d + off, chunk);
			off += chunk;
			if (len == 0)
				break;
		}
		if (!ok) {
			n = save; /* what does not fit is left out */
			break;
		}
		an++;
	}
	buf[6] = (unsigned char)(an >> 8);
	buf[7] = (unsigned char)an;
	return n;
}

static int dkim_q_start(void *srv, int type, unsigned char *query, unsigned char *buf,
                        size_t buflen, void **qh)
{
	dns_answer_t *a = malloc(sizeof(*a));
	if (a == NULL)
		return DKIM_DNS_ERROR;
	int st = lookup(srv, (const char *)query, type, a);
	tls_q.expired = st == DNS_TIMEOUT;
	tls_q.bytes = tls_q.expired ? 0 : auth_dns_wire((const char *)query, type, a, buf, buflen);
	free(a);
	*qh = &tls_q;
	return tls_q.expired || tls_q.bytes > 0 ? DKIM_DNS_SUCCESS : DKIM_DNS_ERROR;
}

static int dkim_q_cancel(void *srv, void *qh)
{
	(void)srv;
	(void)qh;
	return DKIM_DNS_SUCCESS;
}

static int dkim_q_wait(void *srv, void *qh, struct timeval *to, size_t *bytes, int *error,
                       int *dnssec)
{
	(void)srv;
	(void)to; /* the message deadline bounded the lookup already */
	struct dkim_q *q = qh;
	if (error)
		*error = 0;
	if (dnssec)
		*dnssec = DKIM_DNSSEC_UNKNOWN;
	if (q->expired)
		return DKIM_DNS_EXPIRED;
	*bytes = q->bytes;
	return DKIM_DNS_SUCCESS;
}

void auth_dkim_dns_install(DKIM_LIB *lib, dns_t *dns)
{
	dkim_dns_set_init(lib, NULL);
	dkim_dns_set_close(lib, NULL);
	dkim_dns_set_query_service(lib, dns);
	dkim_dns_set_query_start(lib, dkim_q_start);
	dkim_dns_set_query_cancel(lib, dkim_q_cancel);
	dkim_dns_set_query_waitreply(lib, dkim_q_wait);
}
