/*
 * auth_dns.c - the authentication libraries' DNS, answered by the shared
 * DNS service (dns.h) under the message deadline: a resolver layer for
 * libspf2 (SPF_dns_server_t) and the query callbacks of libopendkim.
 * Both libraries ask one question at a time from the thread that scores
 * the message, so that thread's deadline is kept in thread-local storage.
 */
#include "config.h"

#include "auth_int.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/*
 * libspf2 compiles a record's mechanisms into at most SPF_MAX_MECH_LEN
 * (511) bytes and silently drops the ones past that: about 60 ip4 or 24
 * ip6 terms are kept, and the record's "-all" is lost with the rest. Such
 * a record is valid (RFC 7208 sets no such bound, and large senders
 * publish them), but a server listed late in it got neutral, not pass,
 * and a forger neutral, not fail. So a record whose compiled form has
 * fewer mechanisms than its text has its runs of ip4 and ip6 terms of one
 * qualifier moved into part records, answered here (SPF_PART_SUFFIX,
 * never asked of DNS) and each included where its run was, with that
 * qualifier: the part passes exactly when one of its terms matches, so
 * "-include:part" fails exactly where its "-ip4:" terms would have; every
 * other term and the order stay. A record still too long once split is a
 * permerror (auth_spf_over_limit()).
 */
#define SPF_PART_SUFFIX    "._spf-part.invalid"
#define SPF_PART_MAX       32  /* part records one check makes */
#define SPF_PART_BYTES     440 /* compiled bytes of the terms of one part */
#define SPF_PART_MIN_TERMS 4   /* a shorter run stays: its include would cost more */

static __thread SPF_server_t *tls_spf_server;
static __thread int tls_spf_max_dns_mech;
static __thread char *tls_spf_part[SPF_PART_MAX];
static __thread unsigned tls_spf_nparts;

void auth_spf_begin(SPF_server_t *srv)
{
	tls_spf_records = tls_spf_lookups = tls_spf_voids = 0;
	tls_spf_over = false;
	tls_spf_server = srv;
	tls_spf_max_dns_mech = SPF_server_get_max_dns_mech(srv);
}

void auth_spf_end(void)
{
	for (unsigned i = 0; i < tls_spf_nparts; i++)
		free(tls_spf_part[i]);
	if (tls_spf_nparts > 0)
		SPF_server_set_max_dns_mech(tls_spf_server, tls_spf_max_dns_mech);
	tls_spf_nparts = 0;
	tls_spf_server = NULL;
}

/* The mechanisms of record txt as libspf2's compiler reads them: terms not name=value, and
 * redirect=. */
static unsigned spf_mech_terms(const char *txt)
{
	unsigned n = 0;
	for (const char *p = txt + 6; *p;) {
		p += strspn(p, " ");
		const char *name = p + strspn(p, "+-~?");
		size_t nl = strspn(
		    name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
		if (nl > 0 &&
		    (name[nl] != '=' || (nl == 8 && strncasecmp(name, "redirect", 8) == 0)))
			n++;
		p += strcspn(p, " ");
	}
	return n;
}

enum spf_compiled { SPF_BROKEN, SPF_CUT, SPF_WHOLE };

/* How libspf2 compiles txt: not at all, with mechanisms dropped, or whole. */
static enum spf_compiled spf_compile(const char *txt)
{
	SPF_response_t *resp = SPF_response_new(NULL);
	if (resp == NULL)
		return SPF_BROKEN;
	SPF_record_t *rec = NULL;
	SPF_errcode_t err = SPF_record_compile(tls_spf_server, resp, &rec, txt);
	enum spf_compiled c = err != SPF_E_SUCCESS || rec == NULL    ? SPF_BROKEN
	                      : rec->num_mech == spf_mech_terms(txt) ? SPF_WHOLE
	                                                             : SPF_CUT;
	if (rec != NULL)
		SPF_record_free(rec);
	SPF_response_free(resp);
	return c;
}

/* A term's qualifier: '+' (written or not), '-', '~' or '?'. */
static char spf_qualifier(const char *t)
{
	return t[0] != '\0' && strchr("-~?", t[0]) != NULL ? t[0] : '+';
}

/* Compiled bytes of term t (len bytes) when a part can take it (ip4, ip6), else 0. */
static size_t spf_part_term(const char *t, size_t len)
{
	if (len > 0 && strchr("+-~?", t[0]) != NULL)
		t++, len--;
	if (len < 5 || t[3] != ':' || strncasecmp(t, "ip", 2) != 0)
		return 0;
	return t[2] == '4' ? 8 : t[2] == '6' ? 20 : 0;
}

/*
 * Closes the part open in *part as part record tls_spf_nparts, included
 * from out with its terms' qualifier q: "-include:" fails exactly when
 * one of the part's terms, written "-ip4:", would have.
 */
static bool spf_part_close(char q, char **part, char *out, size_t *out_len, size_t out_cap)
{
	char inc[64];
	int n = snprintf(inc, sizeof(inc), " %.*sinclude:%u" SPF_PART_SUFFIX, q != '+', &q,
	                 tls_spf_nparts);
	if (tls_spf_nparts >= SPF_PART_MAX || *out_len + (size_t)n + 1 > out_cap)
		return false;
	memcpy(out + *out_len, inc, (size_t)n + 1);
	*out_len += (size_t)n;
	tls_spf_part[tls_spf_nparts++] = *part;
	*part = NULL;
	return true;
}

/*
 * txt with its runs of SPF_PART_MIN_TERMS or more ip4 and ip6 terms of
 * one qualifier moved into part records; NULL when txt compiles whole as
 * it is (or not at all: libspf2 reports that), or when it still does not
 * once split (the check is then a permerror).
 */
static char *spf_split(const char *txt)
{
	if (tls_spf_server == NULL || spf_compile(txt) != SPF_CUT)
		return NULL;
	unsigned nparts0 = tls_spf_nparts;
	/* an include per run of 4 or more terms is shorter than the run */
	size_t cap = strlen(txt) + 64, out_len = 0, part_len = 0, part_bytes = 0;
	char *out = xalloc_malloc(cap), *part = NULL;
	bool ok = true;
	const char *p = txt;
	while (ok && *p) {
		/* the run of movable terms of one qualifier starting at p */
		const char *q = p;
		unsigned run = 0;
		char qual = spf_qualifier(p + strspn(p, " "));
		while (*q) {
			const char *t = q + strspn(q, " ");
			size_t tl = strcspn(t, " ");
			if (tl == 0 || spf_part_term(t, tl) == 0 || spf_qualifier(t) != qual)
				break;
			run++;
			q = t + tl;
		}
		if (run < SPF_PART_MIN_TERMS) {
			/* one term (with its leading spaces) as it is */
			const char *t = p + strspn(p, " ");
			size_t n = (size_t)(t - p) + strcspn(t, " ");
			if (out_len + n + 1 > cap) {
				ok = false;
				break;
			}
			memcpy(out + out_len, p, n);
			out_len += n;
			out[out_len] = '\0';
			p += n;
			continue;
		}
		for (; ok && p < q;) {
			const char *t = p + strspn(p, " ");
			size_t tl = strcspn(t, " "), bytes = spf_part_term(t, tl);
			if (part != NULL && part_bytes + bytes > SPF_PART_BYTES)
				ok = spf_part_close(qual, &part, out, &out_len, cap);
			if (part == NULL) {
				part = xalloc_malloc(strlen(txt) + 8);
				part_len = (size_t)sprintf(part, "v=spf1");
				part_bytes = 0;
			}
			if (strchr("+-~?", *t) != NULL)
				t++, tl--;
			part[part_len++] = ' ';
			memcpy(part + part_len, t, tl);
			part_len += tl;
			part[part_len] = '\0';
			part_bytes += bytes;
			p = t + tl;
		}
		if (ok)
			ok = spf_part_close(qual, &part, out, &out_len, cap);
	}
	free(part);
	for (unsigned i = nparts0; ok && i < tls_spf_nparts; i++)
		ok = spf_compile(tls_spf_part[i]) == SPF_WHOLE;
	if (ok && spf_compile(out) == SPF_WHOLE) {
		/* libspf2 counts the includes among the record's DNS-querying terms */
		SPF_server_set_max_dns_mech(tls_spf_server,
		                            SPF_server_get_max_dns_mech(tls_spf_server) +
		                                (int)(tls_spf_nparts - nparts0));
		return out;
	}
	while (tls_spf_nparts > nparts0)
		free(tls_spf_part[--tls_spf_nparts]);
	free(out);
	tls_spf_over = true; /* mechanisms libspf2 would drop: not the record's result */
	return NULL;
}

/* The part record named domain, if it is one this check made. */
static const char *spf_part_named(const char *domain)
{
	size_t n = strlen(domain), sl = sizeof(SPF_PART_SUFFIX) - 1;
	if (n <= sl || strcasecmp(domain + n - sl, SPF_PART_SUFFIX) != 0)
		return NULL;
	char *end;
	unsigned long i = strtoul(domain, &end, 10);
	return end == domain + n - sl && i < tls_spf_nparts ? tls_spf_part[i] : "";
}

bool auth_spf_over_limit(void)
{
	return tls_spf_over;
}

static SPF_dns_rr_t *spf_lookup(SPF_dns_server_t *srv, const char *domain, ns_type type,
                                int should_cache)
{
	(void)should_cache;
	const char *part = spf_part_named(domain);
	if (part != NULL) {
		/* a part record: answered here, not asked of DNS, not counted */
		SPF_dns_rr_t *rr = SPF_dns_rr_new_init(
		    srv, domain, type, 0,
		    part[0] && type == ns_t_txt ? NETDB_SUCCESS : HOST_NOT_FOUND);
		if (rr != NULL && part[0] && type == ns_t_txt) {
			if (SPF_dns_rr_buf_realloc(rr, 0, strlen(part) + 1) == SPF_E_SUCCESS) {
				memcpy(rr->rr[0]->txt, part, strlen(part) + 1);
				rr->num_rr = 1;
			} else {
				rr->herrno = TRY_AGAIN;
			}
		}
		return rr;
	}
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
		else if (type == ns_t_txt && strncasecmp(d, "v=spf1", 6) == 0 &&
		         (d[6] == ' ' || d[6] == '\0')) {
			char *split = spf_split(d);
			if (split != NULL &&
			    SPF_dns_rr_buf_realloc(rr, n, strlen(split) + 1) == SPF_E_SUCCESS)
				memcpy(rr->rr[n]->txt, split, strlen(split) + 1);
			else
				memcpy(rr->rr[n]->txt, d, len + 1);
			free(split);
		} else if (type == ns_t_txt || type == ns_t_mx || type == ns_t_ptr)
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
