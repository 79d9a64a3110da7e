/*
 * rules_eval_dns.c - SpamAssassin's DNSEval list tests (check_rbl,
 * check_rbl_txt, check_rbl_sub) on Sift's shared DNS service: every
 * lookup of a message starts in one batch before the regex rules run, the
 * answers are read when the first of these tests is evaluated, and the
 * message's deadline bounds the wait (no answer: no hit, the verdict is
 * degraded). Error answers (127.255.255.0/24, outside 127/8) are never
 * listings, as in the dnsbl module (dnsbl_code_is_refusal()).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>

#include "dnsbl.h"
#include "rules_int.h"

/* SpamAssassin's num_check_received: untrusted hops asked about per rule. */
#define RBL_MAX_IPS 9
/* Hops read from the untrusted list (rules_relays.c reads at most 32). */
#define RELAYS_FOR_RBL 32

/* One check_rbl / check_rbl_txt rule's lookups in this message. */
struct rbl_lookup {
	const struct rule *ru;
	int qtype;
	dns_query_t **q;
	size_t nq;
};

struct rules_dns_msg {
	dns_batch_t *b;
	long deadline_ms;
	bool waited;
	unsigned late; /* lookups without an answer by the deadline */
	struct rbl_lookup *v;
	size_t n;
};

static bool is_rbl(const struct rules_evaldef *d);

static bool ip_listed_before(const char **ips, size_t n, const char *ip)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(ips[i], ip) == 0)
			return true;
	return false;
}

/*
 * The untrusted hops a set asks about, by its name's suffix as in
 * SpamAssassin: -lastexternal and -firsttrusted the newest untrusted
 * (the one that handed the message to the trusted side), -notfirsthop
 * all but the oldest, -untrusted all but the newest, otherwise all.
 * Private addresses and repeats are left out.
 */
static size_t rbl_ips(struct rules_evalenv *e, const char *set, const char **out)
{
	rules_eval_relays(e);
	const char *all[RELAYS_FOR_RBL];
	size_t n = 0;
	for (size_t i = 0; i < e->nuntrusted && n < RELAYS_FOR_RBL; i++) {
		const char *ip = e->untrusted[i].ip;
		if (ip[0] == '\0' || rules_eval_ip_private(ip) || ip_listed_before(all, n, ip))
			continue;
		all[n++] = ip;
	}
	size_t sl = strlen(set);
#define ENDS(s) (sl >= sizeof(s) - 1 && strcmp(set + sl - (sizeof(s) - 1), s) == 0)
	size_t from = 0, to = n;
	if (ENDS("-lastexternal") || ENDS("-firsttrusted"))
		to = n > 0 ? 1 : 0;
	else if (ENDS("-notfirsthop"))
		to = n > 1 ? n - 1 : n;
	else if (ENDS("-untrusted"))
		from = n > 0 ? 1 : 0;
#undef ENDS
	size_t k = 0;
	for (size_t i = from; i < to && k < RBL_MAX_IPS; i++)
		out[k++] = all[i];
	return k;
}

void rules_eval_dns_begin(struct rules_evalenv *e, dns_t *dns, long deadline_ms)
{
	const rules_t *r = e->r;
	if (dns == NULL)
		return;
	size_t nrbl = 0;
	for (size_t k = 0; k < r->nevals; k++)
		if (is_rbl(r->v[r->evals[k]].evaldef))
			nrbl++;
	if (nrbl == 0)
		return;
	struct rules_dns_msg *s = arena_zalloc(e->a, sizeof(*s));
	s->v = arena_zalloc(e->a, nrbl * sizeof(*s->v));
	s->deadline_ms = deadline_ms;
	s->b = dns_batch_new();
	for (size_t k = 0; k < r->nevals; k++) {
		const struct rule *ru = &r->v[r->evals[k]];
		if (!is_rbl(ru->evaldef))
			continue;
		struct rbl_lookup *l = &s->v[s->n++];
		l->ru = ru;
		l->qtype = strcmp(ru->evaldef->name, "check_rbl_txt") == 0 ? DNS_T_TXT : DNS_T_A;
		char zone[DNS_QNAME_MAX_BYTES];
		snprintf(zone, sizeof(zone), "%s", ru->eargs[1]);
		size_t zl = strlen(zone);
		while (zl > 0 && zone[zl - 1] == '.')
			zone[--zl] = '\0';
		const char *ips[RBL_MAX_IPS];
		size_t nip = rbl_ips(e, ru->eargs[0], ips);
		l->q = arena_zalloc(e->a, (nip ? nip : 1) * sizeof(*l->q));
		for (size_t i = 0; i < nip; i++) {
			char qname[DNS_QNAME_MAX_BYTES];
			if (dnsbl_ip_qname(ips[i], zone, qname, sizeof(qname)) == 0)
				continue;
			l->q[l->nq++] = dns_submit(dns, s->b, qname, l->qtype, 0, 0);
		}
	}
	e->cache[RULES_EVAL_CACHE_DNS] = s;
}

unsigned rules_eval_dns_end(struct rules_evalenv *e)
{
	struct rules_dns_msg *s = e->cache[RULES_EVAL_CACHE_DNS];
	if (s == NULL)
		return 0;
	dns_batch_release(s->b);
	e->cache[RULES_EVAL_CACHE_DNS] = NULL;
	return s->late;
}

/* SpamAssassin's check_subtest: a decimal bitmask, an exact address, else a regex. */
enum { SUB_MASK, SUB_EXACT, SUB_RE };

static int subtest_kind(const char *s)
{
	size_t i = 0, dots = 0;
	if (!isdigit((unsigned char)s[0]))
		return SUB_RE;
	for (; s[i]; i++) {
		if (s[i] == '.')
			dots++;
		else if (!isdigit((unsigned char)s[i]))
			return SUB_RE;
	}
	if (dots == 0)
		return SUB_MASK;
	return dots == 3 ? SUB_EXACT : SUB_RE;
}

static bool subtest_match(const char *sub, const char *data, bool is_a)
{
	switch (subtest_kind(sub)) {
	case SUB_MASK: {
		struct in_addr a;
		if (!is_a || inet_pton(AF_INET, data, &a) != 1)
			return false;
		return (ntohl(a.s_addr) & (uint32_t)strtoul(sub, NULL, 10)) != 0;
	}
	case SUB_EXACT: return strcmp(sub, data) == 0;
	default: {
		int err;
		PCRE2_SIZE off;
		pcre2_code *re =
		    pcre2_compile((PCRE2_SPTR)sub, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
		if (re == NULL)
			return false;
		pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
		bool hit = pcre2_match(re, (PCRE2_SPTR)data, strlen(data), 0, 0, md, NULL) >= 0;
		pcre2_match_data_free(md);
		pcre2_code_free(re);
		return hit;
	}
	}
}

static pthread_mutex_t refusal_lock = PTHREAD_MUTEX_INITIALIZER;
static log_ratelimit_t refusal_log;

static void log_refusal(const struct rule *ru, const char *code)
{
	unsigned lost = 0;
	pthread_mutex_lock(&refusal_lock);
	bool ok = log_ratelimit(&refusal_log, 5, 60, &lost);
	pthread_mutex_unlock(&refusal_lock);
	if (ok)
		log_msg(LOG_L_ERR,
		        "rule %s: zone %s answered %s, an ERROR code, not a listing (query "
		        "refused, open/public resolver or over quota)%s",
		        ru->name, ru->eargs[1], code, lost ? " (more suppressed)" : "");
}

/*
 * Whether one of l's answers passes sub (NULL: any listing). Waits for
 * the batch once per message, until the deadline.
 */
static bool lookup_hits(struct rules_dns_msg *s, const struct rbl_lookup *l, const char *sub,
                        const struct rule *ru)
{
	if (!s->waited) {
		dns_batch_wait(s->b, s->deadline_ms);
		s->waited = true;
		for (size_t i = 0; i < s->n; i++)
			for (size_t k = 0; k < s->v[i].nq; k++) {
				dns_answer_t a;
				if (!dns_result(s->b, s->v[i].q[k], &a, NULL, NULL) ||
				    a.status == DNS_TIMEOUT)
					s->late++;
			}
	}
	bool hit = false;
	for (size_t k = 0; k < l->nq && !hit; k++) {
		dns_answer_t a;
		if (!dns_result(s->b, l->q[k], &a, NULL, NULL) || a.status != DNS_NOERROR)
			continue;
		for (unsigned i = 0; i < a.nrr && !hit; i++) {
			size_t len;
			const char *d = dns_answer_rr(&a, i, &len);
			char text[DNS_DATA_MAX_BYTES];
			if (l->qtype == DNS_T_A) {
				if (len != 4)
					continue;
				uint32_t code = (uint32_t)(unsigned char)d[0] << 24 |
				                (uint32_t)(unsigned char)d[1] << 16 |
				                (uint32_t)(unsigned char)d[2] << 8 |
				                (unsigned char)d[3];
				inet_ntop(AF_INET, d, text, sizeof(text));
				if (dnsbl_code_is_refusal(code)) {
					log_refusal(ru, text);
					continue;
				}
			} else {
				snprintf(text, sizeof(text), "%.*s", (int)len, d);
			}
			hit = sub == NULL || subtest_match(sub, text, l->qtype == DNS_T_A);
		}
	}
	return hit;
}

static long rbl(struct rules_evalenv *e, const struct rule *ru)
{
	struct rules_dns_msg *s = e->cache[RULES_EVAL_CACHE_DNS];
	if (s == NULL)
		return 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].ru == ru)
			return lookup_hits(s, &s->v[i], ru->neargs > 2 ? ru->eargs[2] : NULL, ru);
	return 0;
}

/* The answers of the set's check_rbl lookups, tested against this rule's subtest. */
static long rbl_sub(struct rules_evalenv *e, const struct rule *ru)
{
	struct rules_dns_msg *s = e->cache[RULES_EVAL_CACHE_DNS];
	if (s == NULL)
		return 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].qtype == DNS_T_A && strcmp(s->v[i].ru->eargs[0], ru->eargs[0]) == 0 &&
		    lookup_hits(s, &s->v[i], ru->eargs[1], ru))
			return 1;
	return 0;
}

static const char *check_sub(const char *sub)
{
	if (strncmp(sub, "sb:", 3) == 0)
		return "~check_rbl subtests in sb: form are not run";
	if (subtest_kind(sub) == SUB_RE) {
		int err;
		PCRE2_SIZE off;
		pcre2_code *re =
		    pcre2_compile((PCRE2_SPTR)sub, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
		if (re == NULL)
			return "invalid subtest regular expression";
		pcre2_code_free(re);
	}
	return NULL;
}

static const char *check_rbl_args(const struct rule *ru)
{
	if (ru->eargs[1][0] == '\0' || strlen(ru->eargs[1]) >= 200)
		return "check_rbl: the zone must be a name of 1-199 bytes";
	return ru->neargs > 2 ? check_sub(ru->eargs[2]) : NULL;
}

static const char *check_rbl_sub_args(const struct rule *ru)
{
	return check_sub(ru->eargs[1]);
}

const struct rules_evaldef rules_eval_dns_defs[] = {
    {"check_rbl", rbl, 2, 3, check_rbl_args},
    {"check_rbl_txt", rbl, 2, 3, check_rbl_args},
    {"check_rbl_sub", rbl_sub, 2, 2, check_rbl_sub_args},
    {NULL, NULL, 0, 0, NULL},
};

static bool is_rbl(const struct rules_evaldef *d)
{
	return d != NULL && d->fn == rbl;
}
