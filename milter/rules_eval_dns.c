/*
 * rules_eval_dns.c - SpamAssassin's DNS list tests on Sift's shared DNS
 * service: DNSEval's check_rbl, check_rbl_txt and check_rbl_sub over the
 * untrusted relays; URIDNSBL's check_uridnsbl over the body's URI hosts,
 * by their registered domains (urirhssub, urirhsbl), their addresses and
 * their domains' name servers' addresses (uridnssub, uridnsbl with tflags
 * a and ns) and their name servers' names (urinsrhssub, urifullnsrhssub
 * and the -bl forms); AskDNS's askdns rules (a query template of the
 * sender's, author's or last external relay's names); DNSEval's
 * check_dns_sender (the envelope sender's domain has neither A nor MX);
 * and HashBL's check_hashbl_bodyre (strings a regex captures in the body,
 * as they are or as a SHA-256 digest). Every lookup of a
 * message starts in one batch before the regex rules run; the URI hosts'
 * name servers and addresses are asked then too, and each answer leads on
 * (NS, then A, then the list) as it comes, all under the message's
 * deadline (no answer: no hit, the verdict is degraded). Error answers
 * (127.255.255.0/24, outside 127/8) are never listings, as in the dnsbl
 * module (dnsbl_code_is_refusal()).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>

#include "auth.h"
#include "dnsbl.h"
#include "rules_int.h"

/* SpamAssassin's num_check_received: untrusted hops asked about per rule. */
#define RBL_MAX_IPS 9
/* Hops read from the untrusted list (rules_relays.c reads at most 32). */
#define RELAYS_FOR_RBL 32

#define URIDNSBL_MAX_DOMAINS 20 /* uridnsbl_max_domains' default */

/*
 * The longest regex argument of a DNS rule (a subtest, HashBL's body
 * regex): the load check, the compilation at load and the match all read
 * it into buffers of this size, so a pattern the check takes is one that
 * runs.
 */
#define DNS_RE_MAX_BYTES 1024

/*
 * Bounds of the name-server and address lists' lookups, which
 * SpamAssassin leaves open: a domain's first URI_NS_NAMES name servers,
 * an answer's first URI_ADDRS addresses, and at most URI_CHAIN NS and A
 * lookups and URI_LIST_ASKS list lookups per rule in a message. With
 * uridnsbl_max_domains at 20 that is about three hosts a domain.
 */
#define URI_NS_NAMES  8
#define URI_ADDRS     8
#define URI_CHAIN     64
#define URI_LIST_ASKS 64
/* The chain is read every slice while it waits, so one silent name server holds up no other. */
#define URI_SLICE_MS 20

/* SpamAssassin's canonical URIDNSBL subtests. */
enum { USUB_NONE, USUB_MASK, USUB_RANGE, USUB_VALMASK, USUB_TEXT };

/* What a URIDNSBL line asks the zone about. */
enum {
	UK_RHS,       /* urirhs*: the host's registered domain (or reversed IP literal) */
	UK_ADDR,      /* uridns*: the addresses of the host (tflags a), of its NS (ns) */
	UK_NSRHS,     /* urinsrhs*: the registered domains of the name servers */
	UK_FULLNSRHS, /* urifullnsrhs*: the name servers' names */
};

/* One URIDNSBL line. */
struct uentry {
	char *name, *zone;
	int kind; /* UK_* */
	int qtype;
	int sub;
	uint32_t n1, n2;
	char *text; /* the subtest as written (a TXT answer must equal it) */
};

struct rules_uridnsbl {
	struct uentry *v;
	size_t n;
	char **skip; /* uridnsbl_skip_domain, lower-case */
	size_t nskip;
	long max_domains;
	char **hignore; /* HashBL's hashbl_ignore: values and digests not asked, lower-case */
	size_t nhignore;
};

/* One rule's lookups in this message: check_rbl, check_rbl_txt or check_uridnsbl. */
struct rbl_lookup {
	const struct rule *ru;
	int qtype;
	const struct uentry *u; /* check_uridnsbl: its zone and subtest */
	bool ask;               /* askdns: eargs are template, type, subtest */
	int *qtypes;            /* askdns: q[i]'s type, of the rule's list; else all are qtype */
	dns_query_t **q;
	const char **names; /* q[i]'s name, for the explanation */
	size_t nq, cap;
};

/*
 * The zones of the check_rbl rules, probed as the dnsbl module probes its
 * lists: the conventional test entry 127.0.0.2 (RFC 5782), or "test" for a
 * zone only DNSEval's name forms ask, is asked every RBL_PROBE_MS; a zone whose probe gets no
 * answer, a failure or a refusal code is switched off (its rules ask nothing and never hit) and
 * probed again every RBL_PROBE_OFF_MS, so a dead or refusing list costs one message its deadline
 * rather than every message. NXDOMAIN is an answer: not every list carries the entry.
 */
#define RBL_PROBE_MS     (10L * 60 * 1000)
#define RBL_PROBE_OFF_MS (60L * 1000)

enum rbl_form {
	RBL_IP,
	RBL_ACCREDITOR, /* RBL_IP, when the message names the accreditor */
	RBL_FROM_HOST,
	RBL_FROM_DOMAIN,
	RBL_ENVFROM,
	RBL_HEADERS,
	RBL_RCVD,
	RBL_NS_FROM,
};

#define RBL_MAX_HOSTS 8
#define RBL_DEFAULT_HEADERS                                                                        \
	"EnvelopeFrom,Reply-To,Disposition-Notification-To,X-WebmailclientIP,X-Source-IP"

static enum rbl_form rbl_form_of(const struct rules_evaldef *d)
{
	static const struct {
		const char *name;
		enum rbl_form form;
	} forms[] = {{"check_rbl_from_host", RBL_FROM_HOST},
	             {"check_rbl_from_domain", RBL_FROM_DOMAIN},
	             {"check_rbl_envfrom", RBL_ENVFROM},
	             {"check_rbl_headers", RBL_HEADERS},
	             {"check_rbl_rcvd", RBL_RCVD},
	             {"check_rbl_ns_from", RBL_NS_FROM},
	             {"check_rbl_accreditor", RBL_ACCREDITOR}};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
		if (strcmp(d->name, forms[i].name) == 0)
			return forms[i].form;
	return RBL_IP;
}

struct rules_dns_zone {
	char *name;
	_Atomic long next_ms; /* the next probe, on the dns_now_ms() scale */
	_Atomic bool off;
	bool names; /* only DNSEval's name forms ask it: probed with "test" (RFC 5782 5) */
};

struct rules_dns_zones {
	struct rules_dns_zone *v;
	size_t n;
};

struct zprobe {
	struct rules_dns_zone *z;
	dns_query_t *q;
};

/*
 * dns_block_rule RULE DOMAIN...: when RULE's list answers that it
 * refuses us (RCVD_IN_ZEN_BLOCKED's 127.255.255.255: an open resolver, a
 * quota), no name under DOMAIN is asked for dns_block_time, so a site on
 * a costly link stops paying for questions that get no answer worth
 * having. SpamAssassin keeps the state in a file per domain; here it
 * lives in the rule set, shared by every worker thread, and starts over
 * at a reload.
 */
#define DNS_BLOCK_TIME_S 300 /* SpamAssassin's dns_block_time default */
#define DNS_BLOCK_MAX_S  (7L * 24 * 3600)

struct dns_block {
	char *rule, *domain;
	size_t idx;            /* the rule's index; SIZE_MAX when no rule has the name */
	_Atomic long until_ms; /* asked again from then on (dns_now_ms() scale); 0: never blocked */
};

struct rules_dns_blocks {
	struct dns_block *v;
	size_t n;
	long time_ms;
};

/* Whether qname is under a domain a dns_block_rule blocks now. */
static bool dns_blocked(const rules_t *r, const char *qname)
{
	const struct rules_dns_blocks *b = r->dns_blocks;
	if (b == NULL)
		return false;
	long now = -1;
	size_t ql = strlen(qname);
	for (size_t i = 0; i < b->n; i++) {
		long until = atomic_load(&b->v[i].until_ms);
		if (until == 0)
			continue;
		if (now < 0)
			now = dns_now_ms();
		if (now >= until)
			continue;
		const char *d = b->v[i].domain;
		size_t dl = strlen(d);
		if (ql == dl ? strcasecmp(qname, d) == 0
		             : ql > dl && qname[ql - dl - 1] == '.' &&
		                   strcasecmp(qname + ql - dl, d) == 0)
			return true;
	}
	return false;
}

/* Rule ru's list answered what its subtest takes: its dns_block_rule domains are blocked. */
static void dns_block(const rules_t *r, const struct rule *ru, const char *answer)
{
	struct rules_dns_blocks *b = r->dns_blocks;
	if (b == NULL)
		return;
	size_t idx = (size_t)(ru - r->v);
	for (size_t i = 0; i < b->n; i++) {
		if (b->v[i].idx != idx)
			continue;
		long now = dns_now_ms();
		long prev = atomic_exchange(&b->v[i].until_ms, now + b->time_ms);
		if (prev <= now && b->time_ms > 0)
			log_msg(
			    LOG_L_WARNING,
			    "SpamAssassin DNS lists under %s not asked for %ld s: rule %s got %s "
			    "(dns_block_rule)",
			    b->v[i].domain, b->time_ms / 1000, ru->name, answer);
	}
}

/*
 * A message's lookups by name and type. Rules on one zone ask the same
 * names (SpamAssassin's URIBL_BLACK, _GREY and _RED each ask every URI
 * domain of multi.uribl.com, and its RCVD_IN_* sets each relay of
 * zen.spamhaus.org): they share one lookup, which counts once against
 * dns_max_pending and takes one record while its nameserver is silent.
 */
#define ASKED_BUCKETS 512
struct asked {
	const char *name;
	int qtype;
	dns_query_t *q;
	struct asked *next;
};

/*
 * A name-server or address lookup of the URI lists: its answer leads to
 * more lookups (an NS answer to its names' addresses and to the NS-name
 * lists, an address to the address lists), made when it is read.
 */
enum { UC_NS, UC_HOST_A, UC_NS_A };
struct uchain {
	dns_query_t *q;
	const char *name;   /* the name asked about */
	const char *domain; /* the URI's registered domain it serves */
	int kind;           /* UC_* */
	bool read, late;    /* late: read as a timeout */
};

struct rules_dns_msg {
	dns_t *dns;
	dns_batch_t *b;
	/*
	 * The URI lists' NS and A lookups, in a batch of their own: they are
	 * waited for apart from the list lookups, so a silent list does not
	 * stop the chain that leads to the others.
	 */
	dns_batch_t *cb;
	struct uchain *chain; /* URI_CHAIN entries, made at the first */
	size_t nchain;
	struct asked **asked; /* ASKED_BUCKETS chains, made at the first lookup */
	struct zprobe *probes;
	size_t nprobes;
	const char *ns_from; /* check_rbl_ns_from: the sender's domain whose NS it reads */
	long deadline_ms;
	bool waited;
	unsigned late; /* lookups without an answer by the deadline */
	struct rbl_lookup *v;
	size_t n;
};

static bool is_rbl(const struct rules_evaldef *d);
static bool is_uri(const struct rules_evaldef *d);
static bool is_ask(const struct rules_evaldef *d);
static bool is_sender(const struct rules_evaldef *d);
static bool is_hashbl(const struct rules_evaldef *d);
static bool is_dns(const struct rules_evaldef *d);
static bool ask_regex(const char *sub, char *pat, size_t cap, uint32_t *opts);
static void zone_name(const char *in, char *out, size_t cap);
static void res_build(rules_t *r);
static void res_free(rules_t *r);
static const pcre2_code *res_find(const rules_t *r, const char *sub);

static const struct uentry *uentry_find(const rules_t *r, const char *name)
{
	if (r->uridnsbl == NULL)
		return NULL;
	for (size_t i = r->uridnsbl->n; i-- > 0;)
		if (strcmp(r->uridnsbl->v[i].name, name) == 0)
			return &r->uridnsbl->v[i];
	return NULL;
}

static bool skipped_domain(const rules_t *r, const char *d)
{
	for (size_t i = 0; r->uridnsbl && i < r->uridnsbl->nskip; i++)
		if (strcmp(r->uridnsbl->skip[i], d) == 0)
			return true;
	return false;
}

/* A URI host of the message, and the registered domain asked about (NULL for IP literals). */
struct uhost {
	const char *host, *domain;
};

/*
 * The hosts of the message's URIs that URIDNSBL asks about: public IPv4
 * literals, and host names with a registered domain not in the skip list;
 * in the order found, those of the first uridnsbl_max_domains registered
 * domains (an IP literal counts as one). The limit counts domains, as
 * SpamAssassin's does: when it counted hosts, twenty links to hosts of one
 * clean domain ahead of a listed one kept the listed one from being asked.
 */
static size_t uri_hosts(struct rules_evalenv *e, struct uhost **out)
{
	const rules_t *r = e->r;
	long max = r->uridnsbl ? r->uridnsbl->max_domains : URIDNSBL_MAX_DOMAINS;
	/* SpamAssassin's URI list: links, links inside links, host names written bare */
	size_t nl = e->mi ? mime_lookup_domain_count(e->mi) : 0;
	size_t nd = nl + (e->mi ? mime_text_domain_count(e->mi) : 0), n = 0, ndom = 0;
	*out = arena_zalloc(e->a, (nd ? nd : 1) * sizeof(**out));
	const char **doms = arena_zalloc(e->a, (nd ? nd : 1) * sizeof(*doms));
	for (size_t i = 0; i < nd; i++) {
		const char *h =
		    i < nl ? mime_lookup_domain(e->mi, i) : mime_text_domain(e->mi, i - nl);
		if (i >= nl && !dns_tld_known(h))
			continue; /* SpamAssassin takes a bare name only with a known TLD */
		if (rules_eval_is_ipv4(h)) {
			if (!rules_eval_ip_private(h) && (long)ndom < max) {
				(*out)[n++] = (struct uhost){h, NULL};
				ndom++;
			}
			continue;
		}
		char reg[DNS_QNAME_MAX_BYTES];
		if (!dns_valid_hostname(h) || dns_registered_domain(h, reg, sizeof(reg)) == NULL ||
		    skipped_domain(r, reg) || skipped_domain(r, h))
			continue;
		const char *d = NULL;
		for (size_t k = 0; k < ndom && d == NULL; k++)
			if (doms[k] != NULL && strcmp(doms[k], reg) == 0)
				d = doms[k];
		if (d == NULL) {
			if ((long)ndom >= max)
				continue;
			d = doms[ndom++] = arena_strdup(e->a, reg);
		}
		(*out)[n++] = (struct uhost){h, d};
	}
	return n;
}

/* The message's lookup of qname (copied into the arena if new), submitted at its first asking. */
static dns_query_t *msg_lookup(struct rules_evalenv *e, dns_t *dns, struct rules_dns_msg *s,
                               const char *qname, int qtype, const char **name)
{
	if (s->asked == NULL)
		s->asked = arena_zalloc(e->a, ASKED_BUCKETS * sizeof(*s->asked));
	struct asked **slot = &s->asked[dns_key_hash(qname, qtype) % ASKED_BUCKETS];
	for (struct asked *a = *slot; a != NULL; a = a->next)
		if (a->qtype == qtype && strcmp(a->name, qname) == 0) {
			*name = a->name;
			return a->q;
		}
	struct asked *a = arena_zalloc(e->a, sizeof(*a));
	a->name = arena_strdup(e->a, qname);
	a->qtype = qtype;
	a->q = dns_submit(dns, s->b, qname, qtype, 0, 0);
	a->next = *slot;
	*slot = a;
	*name = a->name;
	return a->q;
}

/*
 * Adds qname to the rule's lookups unless the rule asks it already (one
 * lookup a name) or has its fill; true when added.
 */
static bool submit_once(struct rules_evalenv *e, dns_t *dns, struct rules_dns_msg *s,
                        struct rbl_lookup *l, const char *qname, const char **asked)
{
	if (l->nq >= l->cap || dns_blocked(e->r, qname))
		return false;
	const char *name;
	dns_query_t *q = msg_lookup(e, dns, s, qname, l->qtype, &name);
	for (size_t i = 0; i < l->nq; i++)
		if (l->q[i] == q)
			return false;
	l->names = asked;
	asked[l->nq] = name;
	if (l->qtypes != NULL)
		l->qtypes[l->nq] = l->qtype;
	l->q[l->nq++] = q;
	return true;
}

/* Starts a check_uridnsbl rule's lookups: each host's domain (or reversed IP) in the zone. */
static void uri_submit(struct rules_evalenv *e, dns_t *dns, struct rules_dns_msg *s,
                       struct rbl_lookup *l, const struct uhost *hosts, size_t nh)
{
	const struct rule *ru = l->ru;
	l->u = uentry_find(e->r, ru->eargs[0]);
	if (l->u == NULL)
		return;
	l->qtype = l->u->qtype;
	if (l->u->kind != UK_RHS) {
		/* filled as the name-server and address answers come (uchain_read) */
		l->cap = URI_LIST_ASKS;
		l->q = arena_zalloc(e->a, l->cap * sizeof(*l->q));
		l->names = arena_zalloc(e->a, l->cap * sizeof(*l->names));
		return;
	}
	l->cap = nh;
	l->q = arena_zalloc(e->a, (nh ? nh : 1) * sizeof(*l->q));
	const char **asked = arena_zalloc(e->a, (nh ? nh : 1) * sizeof(*asked));
	for (size_t i = 0; i < nh; i++) {
		char qname[DNS_QNAME_MAX_BYTES];
		if (hosts[i].domain == NULL) {
			if ((ru->tflags & TF_DOMAINS_ONLY) ||
			    dnsbl_ip_qname(hosts[i].host, l->u->zone, qname, sizeof(qname)) == 0)
				continue;
		} else {
			if (ru->tflags & TF_IPS_ONLY)
				continue;
			const char *q = (ru->tflags & TF_NOTRIM) ? hosts[i].host : hosts[i].domain;
			if ((size_t)snprintf(qname, sizeof(qname), "%s.%s", q, l->u->zone) >=
			    sizeof(qname))
				continue;
		}
		submit_once(e, dns, s, l, qname, asked);
	}
}

/* ---------------------------------------------------------------- URI name servers, addresses */

/* Whether an address rule reads the hosts' addresses (tflags a) or their name servers' (ns). */
static bool addr_rule_takes(const struct rule *ru, int ckind)
{
	bool a = (ru->tflags & TF_A) != 0;
	return ckind == UC_HOST_A ? a : (ru->tflags & TF_NS) != 0 || !a;
}

/*
 * Starts a name-server or address lookup of the URI lists, once a kind and
 * name; name and domain are kept, so they live as long as the message.
 */
static void uchain_add(struct rules_evalenv *e, struct rules_dns_msg *s, int kind, const char *name,
                       const char *domain)
{
	if (s->chain == NULL) {
		s->chain = arena_zalloc(e->a, URI_CHAIN * sizeof(*s->chain));
		s->cb = dns_batch_new();
	}
	for (size_t i = 0; i < s->nchain; i++)
		if (s->chain[i].kind == kind && strcmp(s->chain[i].name, name) == 0)
			return;
	if (s->nchain >= URI_CHAIN)
		return;
	struct uchain *c = &s->chain[s->nchain++];
	c->name = name;
	c->q = dns_submit(s->dns, s->cb, c->name, kind == UC_NS ? DNS_T_NS : DNS_T_A, 0, 0);
	c->domain = domain;
	c->kind = kind;
}

/*
 * The first lookups of the name-server and address lists: the name
 * servers of each URI host's registered domain, the addresses of each
 * host (IP literals are for the domain lists only, as in SpamAssassin).
 */
static void uchain_begin(struct rules_evalenv *e, struct rules_dns_msg *s,
                         const struct uhost *hosts, size_t nh)
{
	bool ns = false, a = false;
	for (size_t i = 0; i < s->n; i++) {
		const struct rbl_lookup *l = &s->v[i];
		if (l->u == NULL || l->u->kind == UK_RHS)
			continue;
		ns = ns || l->u->kind != UK_ADDR || addr_rule_takes(l->ru, UC_NS_A);
		a = a || (l->u->kind == UK_ADDR && addr_rule_takes(l->ru, UC_HOST_A));
	}
	for (size_t i = 0; i < nh; i++) {
		if (hosts[i].domain == NULL)
			continue;
		if (ns)
			uchain_add(e, s, UC_NS, hosts[i].domain, hosts[i].domain);
		if (a)
			uchain_add(e, s, UC_HOST_A, hosts[i].host, hosts[i].domain);
	}
}

/* Adds a list lookup to rule l, explained by why. */
static void list_ask(struct rules_evalenv *e, struct rules_dns_msg *s, struct rbl_lookup *l,
                     const char *qname, const char *why)
{
	size_t k = l->nq;
	if (submit_once(e, s->dns, s, l, qname, l->names))
		l->names[k] = arena_sprintf(e->a, "%s (%s)", l->names[k], why);
}

/* An address from a host's or name server's A answer, asked of the address lists that read it. */
static void addr_read(struct rules_evalenv *e, struct rules_dns_msg *s, const struct uchain *c,
                      const char *ip)
{
	if (rules_eval_ip_private(ip))
		return; /* 10/8, 127/8, ...: a list would answer for itself, not the site */
	const char *why = NULL;
	for (size_t i = 0; i < s->n; i++) {
		struct rbl_lookup *l = &s->v[i];
		char qname[DNS_QNAME_MAX_BYTES];
		if (l->u == NULL || l->u->kind != UK_ADDR || !addr_rule_takes(l->ru, c->kind) ||
		    dnsbl_ip_qname(ip, l->u->zone, qname, sizeof(qname)) == 0)
			continue;
		if (why == NULL)
			why = c->kind == UC_HOST_A
			          ? arena_sprintf(e->a, "address of %s", c->name)
			          : arena_sprintf(e->a, "address of %s, name server of %s", c->name,
			                          c->domain);
		list_ask(e, s, l, qname, why);
	}
}

/* A name server from a domain's NS answer: its addresses, and the name-server name lists. */
static void ns_read(struct rules_evalenv *e, struct rules_dns_msg *s, const struct uchain *c,
                    const char *d, size_t len)
{
	char name[DNS_QNAME_MAX_BYTES];
	while (len > 0 && d[len - 1] == '.')
		len--;
	if (len == 0 || len >= sizeof(name))
		return;
	for (size_t i = 0; i < len; i++)
		name[i] = (char)tolower((unsigned char)d[i]);
	name[len] = '\0';
	bool ip = rules_eval_is_ipv4(name);
	if (ip ? rules_eval_ip_private(name) : !dns_valid_hostname(name))
		return;
	const char *nm = arena_strdup(e->a, name);
	if (!ip) {
		uchain_add(e, s, UC_NS_A, nm, c->domain);
	} else {
		/* an address written as an NS name: the address lists take it as it is */
		struct uchain as = {.name = nm, .domain = c->domain, .kind = UC_NS_A};
		addr_read(e, s, &as, nm);
	}
	const char *why = NULL;
	for (size_t i = 0; i < s->n; i++) {
		struct rbl_lookup *l = &s->v[i];
		if (l->u == NULL || (l->u->kind != UK_NSRHS && l->u->kind != UK_FULLNSRHS))
			continue;
		char qname[DNS_QNAME_MAX_BYTES], reg[DNS_QNAME_MAX_BYTES];
		const char *q = nm;
		if (ip) {
			if (dnsbl_ip_qname(nm, l->u->zone, qname, sizeof(qname)) == 0)
				continue;
		} else {
			if (l->u->kind == UK_NSRHS &&
			    (q = dns_registered_domain(nm, reg, sizeof(reg))) == NULL)
				continue;
			if ((size_t)snprintf(qname, sizeof(qname), "%s.%s", q, l->u->zone) >=
			    sizeof(qname))
				continue;
		}
		if (why == NULL)
			why = arena_sprintf(e->a, "name server %s of %s", nm, c->domain);
		list_ask(e, s, l, qname, why);
	}
	if (ip || s->ns_from == NULL || strcmp(c->domain, s->ns_from) != 0)
		return;
	/* check_rbl_ns_from: the sender's domain's name servers by name */
	for (size_t i = 0; i < s->n; i++) {
		struct rbl_lookup *l = &s->v[i];
		char zone[DNS_QNAME_MAX_BYTES], qname[DNS_QNAME_MAX_BYTES];
		if (l->u != NULL || l->ask || !is_rbl(l->ru->evaldef) ||
		    rbl_form_of(l->ru->evaldef) != RBL_NS_FROM || (l->ru->tflags & TF_IPS_ONLY))
			continue;
		zone_name(l->ru->eargs[1], zone, sizeof(zone));
		if ((size_t)snprintf(qname, sizeof(qname), "%s.%s", nm, zone) < sizeof(qname))
			list_ask(e, s, l, qname,
			         arena_sprintf(e->a, "name server %s of the sender's %s", nm,
			                       c->domain));
	}
}

/*
 * Reads the name-server and address answers that came and starts what
 * they lead to (answers from the cache are followed at once); true while
 * one is still unanswered.
 */
static bool uchain_read(struct rules_evalenv *e, struct rules_dns_msg *s)
{
	bool open = false;
	dns_answer_t *a = NULL;
	for (size_t i = 0; i < s->nchain; i++) { /* grows as NS answers are read */
		struct uchain *c = &s->chain[i];
		if (c->read)
			continue;
		if (a == NULL)
			a = arena_alloc(e->a, sizeof(*a));
		if (!dns_result(s->cb, c->q, a, NULL, NULL)) {
			open = true;
			continue;
		}
		c->read = true;
		c->late = a->status == DNS_TIMEOUT;
		if (a->status != DNS_NOERROR)
			continue;
		unsigned max = c->kind == UC_NS ? URI_NS_NAMES : URI_ADDRS;
		for (unsigned k = 0; k < a->nrr && k < max; k++) {
			size_t len;
			const char *d = dns_answer_rr(a, k, &len);
			char ip[INET_ADDRSTRLEN];
			if (c->kind == UC_NS)
				ns_read(e, s, c, d, len);
			else if (len == 4 && inet_ntop(AF_INET, d, ip, sizeof(ip)) != NULL)
				addr_read(e, s, c, ip);
		}
	}
	return open;
}

/*
 * Follows the chain until every NS and A lookup is read or the deadline:
 * in slices, so that the answers that came lead on while a name server is
 * silent. Bounded: each turn either waits a slice or reads what came, and
 * at most URI_CHAIN lookups are ever made.
 */
static void uchain_follow(struct rules_evalenv *e, struct rules_dns_msg *s)
{
	while (s->cb != NULL && uchain_read(e, s)) {
		long now = dns_now_ms();
		if (now >= s->deadline_ms)
			break;
		dns_batch_wait(s->cb, now + URI_SLICE_MS < s->deadline_ms ? now + URI_SLICE_MS
		                                                          : s->deadline_ms);
	}
}

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

static void zone_name(const char *in, char *out, size_t cap)
{
	snprintf(out, cap, "%s", in);
	size_t zl = strlen(out);
	while (zl > 0 && out[zl - 1] == '.')
		out[--zl] = '\0';
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
}

static struct rules_dns_zone *zone_find(const rules_t *r, const char *name)
{
	for (size_t i = 0; r->dns_zones && i < r->dns_zones->n; i++)
		if (strcmp(r->dns_zones->v[i].name, name) == 0)
			return &r->dns_zones->v[i];
	return NULL;
}

void rules_eval_dns_finish(rules_t *r)
{
	for (size_t i = 0; r->dns_blocks != NULL && i < r->dns_blocks->n; i++) {
		int idx = rules_find(r, r->dns_blocks->v[i].rule);
		r->dns_blocks->v[i].idx = idx < 0 ? SIZE_MAX : (size_t)idx;
	}
	for (size_t k = 0; k < r->nevals; k++) {
		const struct rule *ru = &r->v[r->evals[k]];
		if (!is_rbl(ru->evaldef))
			continue;
		char zone[DNS_QNAME_MAX_BYTES];
		zone_name(ru->eargs[1], zone, sizeof(zone));
		enum rbl_form form = rbl_form_of(ru->evaldef);
		bool names = form != RBL_IP && form != RBL_ACCREDITOR;
		struct rules_dns_zone *z = zone_find(r, zone);
		if (z != NULL) {
			z->names = z->names && names;
			continue;
		}
		if (r->dns_zones == NULL)
			r->dns_zones = xalloc_calloc(1, sizeof(*r->dns_zones));
		struct rules_dns_zones *zs = r->dns_zones;
		zs->v = xalloc_realloc(zs->v, (zs->n + 1) * sizeof(*zs->v));
		memset(&zs->v[zs->n], 0, sizeof(zs->v[zs->n]));
		zs->v[zs->n].names = names;
		zs->v[zs->n++].name = xalloc_strdup(zone);
	}
	res_build(r);
}

void rules_eval_dns_free(rules_t *r)
{
	res_free(r);
	free(r->rbl_headers);
	r->rbl_headers = NULL;
	if (r->dns_blocks != NULL) {
		for (size_t i = 0; i < r->dns_blocks->n; i++) {
			free(r->dns_blocks->v[i].rule);
			free(r->dns_blocks->v[i].domain);
		}
		free(r->dns_blocks->v);
		free(r->dns_blocks);
		r->dns_blocks = NULL;
	}
	if (r->dns_zones == NULL)
		return;
	for (size_t i = 0; i < r->dns_zones->n; i++)
		free(r->dns_zones->v[i].name);
	free(r->dns_zones->v);
	free(r->dns_zones);
	r->dns_zones = NULL;
}

/* Starts the probes that are due; one message claims each. */
static void probes_submit(struct rules_evalenv *e, dns_t *dns, struct rules_dns_msg *s)
{
	const struct rules_dns_zones *zs = e->r->dns_zones;
	if (zs == NULL)
		return;
	long now = dns_now_ms();
	for (size_t i = 0; i < zs->n; i++) {
		struct rules_dns_zone *z = &zs->v[i];
		long nx = atomic_load(&z->next_ms);
		if (now < nx ||
		    !atomic_compare_exchange_strong(&z->next_ms, &nx, now + RBL_PROBE_MS))
			continue;
		char qname[DNS_QNAME_MAX_BYTES];
		if ((z->names ? (size_t)snprintf(qname, sizeof(qname), "test.%s", z->name) >=
		                    sizeof(qname)
		              : dnsbl_ip_qname("127.0.0.2", z->name, qname, sizeof(qname)) == 0) ||
		    dns_blocked(e->r, qname))
			continue;
		if (s->probes == NULL)
			s->probes = arena_zalloc(e->a, zs->n * sizeof(*s->probes));
		s->probes[s->nprobes++] =
		    (struct zprobe){z, dns_submit(dns, s->b, qname, DNS_T_A, 0, DNS_F_NOCACHE)};
	}
}

/* Reads the probes' answers: a zone is on when it answered, off otherwise. */
static void probes_read(struct rules_dns_msg *s)
{
	for (size_t i = 0; i < s->nprobes; i++) {
		struct rules_dns_zone *z = s->probes[i].z;
		dns_answer_t a;
		bool done = dns_result(s->b, s->probes[i].q, &a, NULL, NULL);
		if (!done && !s->waited) {
			atomic_store(&z->next_ms, 0); /* not waited for: ask again */
			continue;
		}
		const char *why = NULL;
		char code[INET_ADDRSTRLEN] = "";
		if (!done || a.status == DNS_TIMEOUT)
			why = "no answer by the deadline";
		else if (a.status == DNS_SERVFAIL)
			why = "a failure (SERVFAIL or REFUSED)";
		else if (a.status == DNS_NOERROR) {
			for (unsigned k = 0; k < a.nrr && why == NULL; k++) {
				size_t len;
				const unsigned char *d =
				    (const unsigned char *)dns_answer_rr(&a, k, &len);
				if (len != 4)
					continue;
				uint32_t c = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 |
				             (uint32_t)d[2] << 8 | d[3];
				if (dnsbl_code_is_refusal(c)) {
					inet_ntop(AF_INET, d, code, sizeof(code));
					why = "an error code";
				}
			}
		}
		bool was_off = atomic_exchange(&z->off, why != NULL);
		if (why != NULL) {
			atomic_store(&z->next_ms, dns_now_ms() + RBL_PROBE_OFF_MS);
			if (!was_off)
				log_msg(
				    LOG_L_WARNING,
				    "SpamAssassin DNS list zone %s switched off: its test entry "
				    "%s got %s%s%s; probed again every minute",
				    z->name, z->names ? "test" : "127.0.0.2", why,
				    code[0] ? " " : "", code);
		} else if (was_off) {
			log_msg(LOG_L_NOTICE,
			        "SpamAssassin DNS list zone %s answers again: switched on",
			        z->name);
		}
	}
}

/* ---------------------------------------------------------------- askdns */

/*
 * The tags Sift fills, as SpamAssassin's AskDNS names them. A template may
 * hold several (each occurrence is replaced) and a tag several values
 * (_DKIMDOMAIN_: one a valid signature); each combination is one
 * question, as in SpamAssassin, at most ASK_MAX_VALUES a rule.
 */
static const char *const ask_tags[] = {
    "_SENDERDOMAIN_",     "_AUTHORDOMAIN_",      "_LASTEXTERNALHELO_", "_LASTEXTERNALIP_",
    "_LASTEXTERNALRDNS_", "_LASTEXTERNALREVIP_", "_DKIMDOMAIN_",       NULL};
#define ASK_NTAGS 7

/* The ask_tags index of the tag at p, or -1. */
static int ask_tag_at(const char *p)
{
	for (int i = 0; ask_tags[i]; i++)
		if (strncmp(p, ask_tags[i], strlen(ask_tags[i])) == 0)
			return i;
	return -1;
}

/* The tags of an askdns template as bits of their ask_tags indexes; -1 for a tag Sift does not
 * fill. */
static int ask_tag_mask(const char *tmpl)
{
	int mask = 0;
	for (const char *p = strchr(tmpl, '_'); p; p = strchr(p + 1, '_')) {
		int i = ask_tag_at(p);
		if (i >= 0) {
			mask |= 1 << i;
			p += strlen(ask_tags[i]) - 1;
		} else if (isupper((unsigned char)p[1])) {
			return -1; /* _HEADER(...)_ and the rest */
		}
	}
	return mask;
}

static void add_value(struct rules_evalenv *e, const char **v, size_t *n, size_t max, const char *s)
{
	if (s == NULL || s[0] == '\0' || *n >= max)
		return;
	char *c = arena_strdup(e->a, s);
	for (char *p = c; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	for (size_t i = 0; i < *n; i++)
		if (strcmp(v[i], c) == 0)
			return;
	v[(*n)++] = c;
}

struct ask_dkim {
	struct rules_evalenv *e;
	const char **v;
	size_t *n, max;
};

static bool ask_dkim_value(const char *sdid, size_t len, void *ud)
{
	struct ask_dkim *k = ud;
	char d[256];
	if (len < sizeof(d)) {
		memcpy(d, sdid, len);
		d[len] = '\0';
		add_value(k->e, k->v, k->n, k->max, d);
	}
	return *k->n < k->max;
}

static size_t ask_values(struct rules_evalenv *e, int tag, const char **v, size_t max)
{
	size_t n = 0;
	rules_eval_relays(e);
	const struct rules_relay *last = e->nuntrusted ? &e->untrusted[0] : NULL;
	switch (tag) {
	case 0: {
		const char *f = rules_eval_envelope_from(e);
		const char *at = f ? strrchr(f, '@') : NULL;
		add_value(e, v, &n, max, at ? at + 1 : NULL);
		break;
	}
	case 1: {
		const char *from = rules_eval_header(e, "From");
		const char **addrs;
		size_t na = from ? rules_eval_addrs(e->a, from, &addrs) : 0;
		for (size_t i = 0; i < na; i++) {
			const char *at = strrchr(addrs[i], '@');
			add_value(e, v, &n, max, at ? at + 1 : NULL);
		}
		break;
	}
	case 2: add_value(e, v, &n, max, last ? last->helo : NULL); break;
	case 3: add_value(e, v, &n, max, last ? last->ip : NULL); break;
	case 4: add_value(e, v, &n, max, last ? last->rdns : NULL); break;
	case 5:
		if (last != NULL && rules_eval_is_ipv4(last->ip)) {
			unsigned a, b, c, d;
			if (sscanf(last->ip, "%u.%u.%u.%u", &a, &b, &c, &d) == 4) {
				char rev[32];
				snprintf(rev, sizeof(rev), "%u.%u.%u.%u", d, c, b, a);
				add_value(e, v, &n, max, rev);
			}
		}
		break;
	case 6:
		if (e->h != NULL) {
			struct ask_dkim k = {.e = e, .v = v, .n = &n, .max = max};
			auth_dkim_valid_each(e->h, ask_dkim_value, &k);
		}
		break;
	}
	return n;
}

#define ASK_MAX_TYPES 6

/*
 * The types of an askdns line's comma-separated list ("A", "A,AAAA"), at
 * most ASK_MAX_TYPES, each once; 0 when one is not a type asked here
 * (ANY among them). SpamAssassin asks one ANY question for a list and
 * keeps the records of the listed types; Sift asks each type, as RFC 8482
 * lets a server answer ANY with one record of its choice.
 */
static size_t ask_qtypes(const char *list, int *out)
{
	static const struct {
		const char *name;
		int type;
	} types[] = {{"A", DNS_T_A},   {"AAAA", DNS_T_AAAA}, {"TXT", DNS_T_TXT},
	             {"MX", DNS_T_MX}, {"PTR", DNS_T_PTR},   {"NS", DNS_T_NS}};
	size_t n = 0;
	for (const char *p = list;;) {
		size_t len = strcspn(p, ",");
		size_t i = 0;
		while (i < sizeof(types) / sizeof(types[0]) &&
		       (strlen(types[i].name) != len || strncasecmp(p, types[i].name, len) != 0))
			i++;
		if (i == sizeof(types) / sizeof(types[0]))
			return 0;
		bool seen = false;
		for (size_t k = 0; k < n; k++)
			seen = seen || out[k] == types[i].type;
		if (!seen)
			out[n++] = types[i].type;
		if (p[len] == '\0')
			return n;
		p += len + 1;
	}
}

#define ASK_MAX_VALUES 8

/* The template with every tag replaced by its value pick[tag]; false when it does not fit. */
static bool ask_expand(const char *t, const char *const vals[][ASK_MAX_VALUES], const size_t *pick,
                       char *out, size_t cap)
{
	size_t o = 0;
	for (const char *p = t; *p;) {
		int k = *p == '_' ? ask_tag_at(p) : -1;
		const char *v = k >= 0 ? vals[k][pick[k]] : p;
		size_t n = k >= 0 ? strlen(v) : 1;
		if (o + n >= cap)
			return false;
		memcpy(out + o, v, n);
		o += n;
		p += k >= 0 ? strlen(ask_tags[k]) : 1;
	}
	out[o] = '\0';
	return true;
}

static void ask_submit(struct rules_evalenv *e, dns_t *dns, struct rules_dns_msg *s,
                       struct rbl_lookup *l)
{
	const struct rule *ru = l->ru;
	l->ask = true;
	int types[ASK_MAX_TYPES];
	size_t ntypes = ask_qtypes(ru->eargs[1], types);
	int mask = ask_tag_mask(ru->eargs[0]);
	if (mask < 0 || ntypes == 0)
		return;
	const char *vals[ASK_NTAGS][ASK_MAX_VALUES];
	size_t nv[ASK_NTAGS] = {0}, pick[ASK_NTAGS] = {0};
	for (int k = 0; k < ASK_NTAGS; k++)
		if ((mask & (1 << k)) && (nv[k] = ask_values(e, k, vals[k], ASK_MAX_VALUES)) == 0)
			return; /* a tag without a value: no question, as in SpamAssassin */
	l->cap = ASK_MAX_VALUES * ntypes;
	l->q = arena_zalloc(e->a, l->cap * sizeof(*l->q));
	l->qtypes = arena_zalloc(e->a, l->cap * sizeof(*l->qtypes));
	const char **asked = arena_zalloc(e->a, l->cap * sizeof(*asked));
	/* every combination of the tags' values, the first tag's varying fastest */
	size_t names = 0;
	for (unsigned tries = 0; tries < 4 * ASK_MAX_VALUES && names < ASK_MAX_VALUES; tries++) {
		char qname[DNS_QNAME_MAX_BYTES];
		if (ask_expand(ru->eargs[0], vals, pick, qname, sizeof(qname))) {
			size_t ql = strlen(qname);
			while (ql > 0 && qname[ql - 1] == '.')
				qname[--ql] = '\0';
			/* a HELO such as "[192.0.2.1]" is no name to ask about */
			bool added = false;
			for (size_t t = 0; t < ntypes && dns_valid_hostname(qname); t++) {
				l->qtype = types[t];
				added = submit_once(e, dns, s, l, qname, asked) || added;
			}
			names += added;
		}
		int k = 0;
		for (; k < ASK_NTAGS; k++) {
			if (!(mask & (1 << k)))
				continue;
			if (++pick[k] < nv[k])
				break;
			pick[k] = 0;
		}
		if (k == ASK_NTAGS)
			break; /* all combinations asked */
	}
	l->qtype = types[0];
}

/* ---------------------------------------------------------------- the envelope sender's host */

/*
 * The envelope sender's host as SpamAssassin's check_dns_sender and
 * check_rbl_ns_from take it: runs of dots made one, after the first "@"
 * followed by a name with a dot (trailing dots dropped); false when none.
 */
static bool sender_host(struct rules_evalenv *e, char *host, size_t cap)
{
	const char *from = rules_eval_envelope_from(e);
	size_t o = 0;
	for (const char *at = from ? strchr(from, '@') : NULL; at != NULL && o == 0;
	     at = strchr(at + 1, '@')) {
		size_t n = strcspn(at + 1, "@ \t\r\n");
		if (n >= cap)
			continue;
		for (size_t i = 0; i < n; i++)
			if (at[1 + i] != '.' || o == 0 || host[o - 1] != '.')
				host[o++] = (char)tolower((unsigned char)at[1 + i]);
		host[o] = '\0';
		/* a dot with a byte before and after it, else the next "@" */
		const char *dot = o > 2 ? memchr(host + 1, '.', o - 2) : NULL;
		if (dot == NULL)
			o = 0;
	}
	while (o > 0 && host[o - 1] == '.')
		host[--o] = '\0';
	return o > 0 && dns_valid_hostname(host);
}

/*
 * check_dns_sender (NO_DNS_FOR_FROM): the envelope sender's host asked
 * for A and MX. It hits when both questions end in NXDOMAIN, as the
 * rule's description says and SpamAssassin 3.4 did (4.0.1's callback reads
 * A and MX records out of NXDOMAIN responses, which have none, and never
 * hits). SERVFAIL does not count here: c-ares reports a refused connection
 * the same way, and a site whose resolver is down must not see every sender
 * scored as unknown to DNS.
 */
static void sender_submit(struct rules_evalenv *e, dns_t *dns, struct rules_dns_msg *s,
                          struct rbl_lookup *l)
{
	char host[DNS_QNAME_MAX_BYTES];
	if (!sender_host(e, host, sizeof(host)))
		return;
	l->cap = l->nq = 2;
	l->q = arena_zalloc(e->a, 2 * sizeof(*l->q));
	l->names = arena_zalloc(e->a, 2 * sizeof(*l->names));
	l->q[0] = msg_lookup(e, dns, s, host, DNS_T_A, &l->names[0]);
	l->q[1] = msg_lookup(e, dns, s, host, DNS_T_MX, &l->names[1]);
}

/* ---------------------------------------------------------------- HashBL's check_hashbl_bodyre */

/*
 * check_hashbl_bodyre(LIST[/A|/TXT], OPTS, REGEX[, SUBTEST]): the strings
 * REGEX's first group captures in the body (rawbody for a rawbody rule),
 * lower-cased unless OPTS says "case", only their digits with "num", each
 * once, asked as VALUE.LIST, as SpamAssassin's HashBL asks: VALUE the
 * SHA-256 digest in lower-case base32 (RFC 4648, unpadded) with "sha256",
 * else the SHA-1 digest in lower-case hex with "sha1" (an empty OPTS means
 * sha1), else the MD5 digest in hex with "md5", else the string itself.
 * "max=N" (default 10, at most HASHBL_MAX) bounds the questions; they are
 * the first N strings in the body's order, where SpamAssassin shuffles
 * when there are more ("shuffle"): sift check and the daemon must ask the
 * same. An answer hits when it passes SUBTEST (a regex on the address or
 * text; default: any listing, refusal codes never).
 */
#define HASHBL_MAX 32

struct hashbl_opts {
	bool sha256, sha1, md5, keep_case, num;
	long max;
};

static void hashbl_opts(const char *s, struct hashbl_opts *o)
{
	*o = (struct hashbl_opts){.max = 10};
	if (s[0] == '\0')
		s = "sha1/max=10/shuffle"; /* HashBL's default */
	for (const char *p = s; *p;) {
		size_t n = strcspn(p, "/");
		char w[32];
		size_t k = 0;
		for (size_t i = 0; i < n && k + 1 < sizeof(w); i++)
			if (!isspace((unsigned char)p[i]))
				w[k++] = (char)tolower((unsigned char)p[i]);
		w[k] = '\0';
		if (strcmp(w, "sha256") == 0)
			o->sha256 = true;
		else if (strcmp(w, "sha1") == 0)
			o->sha1 = true;
		else if (strcmp(w, "md5") == 0)
			o->md5 = true;
		else if (strcmp(w, "case") == 0)
			o->keep_case = true;
		else if (strcmp(w, "num") == 0)
			o->num = true;
		else if (strncmp(w, "max=", 4) == 0 && isdigit((unsigned char)w[4]))
			o->max = strtol(w + 4, NULL, 10);
		/* raw, shuffle and the other functions' options change nothing here */
		p += n + (p[n] == '/');
	}
	if (o->max < 1 || o->max > HASHBL_MAX)
		o->max = o->max < 1 ? 10 : HASHBL_MAX;
}

/* LIST without its "/A" or "/TXT" (as zone_name() writes it), and the type asked. */
static bool hashbl_list(const char *list, char *zone, size_t cap, int *qtype)
{
	size_t n = strlen(list);
	*qtype = DNS_T_A;
	const char *sl = strrchr(list, '/');
	if (sl != NULL && (strcasecmp(sl, "/A") == 0 || strcasecmp(sl, "/TXT") == 0)) {
		*qtype = strcasecmp(sl, "/TXT") == 0 ? DNS_T_TXT : DNS_T_A;
		n = (size_t)(sl - list);
	}
	char z[DNS_QNAME_MAX_BYTES];
	if (n >= sizeof(z))
		return false;
	memcpy(z, list, n);
	z[n] = '\0';
	zone_name(z, zone, cap); /* as the other lists' zones: no final dot, lower case */
	return zone[0] != '\0' && dns_valid_hostname(zone);
}

/* RFC 4648 base32, lower case, without padding: SpamAssassin's form of the SHA-256 digest. */
static void base32_lower(const unsigned char *in, size_t n, char *out)
{
	static const char abc[] = "abcdefghijklmnopqrstuvwxyz234567";
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 5) {
			out[o++] = abc[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0)
		out[o++] = abc[(acc << (5 - bits)) & 31];
	out[o] = '\0';
}

/* Whether hashbl_ignore names s (ASCII case folded). */
static bool hashbl_ignored(const struct rules_uridnsbl *u, const char *s)
{
	for (size_t i = 0; u != NULL && i < u->nhignore; i++)
		if (strcasecmp(u->hignore[i], s) == 0)
			return true;
	return false;
}

/*
 * The name HashBL asks for one captured string (v, n bytes); false when
 * there is none, or hashbl_ignore names the string or its digest.
 */
static bool hashbl_qname(const struct rules_uridnsbl *u, const struct hashbl_opts *o,
                         const char *zone, const char *v, size_t n, char *qname, size_t cap)
{
	char val[256];
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < sizeof(val); i++) {
		char c = o->keep_case ? v[i] : (char)tolower((unsigned char)v[i]);
		if (!o->num || isdigit((unsigned char)c))
			val[k++] = c;
	}
	val[k] = '\0';
	if (k == 0 || k + 1 >= sizeof(val) || hashbl_ignored(u, val))
		return false;
	if (o->sha256) {
		unsigned char d[crypto_hash_sha256_BYTES];
		crypto_hash_sha256(d, (const unsigned char *)val, k);
		base32_lower(d, sizeof(d), val);
	} else if (o->sha1 || o->md5) {
		char hex[RULES_EVAL_DIGEST_HEX_MAX];
		if (!rules_eval_digest_hex(o->sha1 ? "SHA1" : "MD5", val, k, false, hex))
			return false;
		snprintf(val, sizeof(val), "%s", hex);
	}
	if ((o->sha256 || o->sha1 || o->md5) && hashbl_ignored(u, val))
		return false;
	return (size_t)snprintf(qname, cap, "%s.%s", val, zone) < cap && dns_valid_hostname(qname);
}

static void hashbl_submit(struct rules_evalenv *e, dns_t *dns, struct rules_dns_msg *s,
                          struct rbl_lookup *l)
{
	const struct rule *ru = l->ru;
	struct hashbl_opts o;
	hashbl_opts(ru->eargs[1], &o);
	char zone[DNS_QNAME_MAX_BYTES];
	const pcre2_code *re = res_find(e->r, ru->eargs[2]);
	if (e->mi == NULL || re == NULL ||
	    !hashbl_list(ru->eargs[0], zone, sizeof(zone), &l->qtype))
		return;
	size_t n = 0;
	const char *text =
	    ru->type == RULES_T_RAWBODY ? mime_rawbody(e->mi, &n) : mime_body(e->mi, &n);
	l->cap = (size_t)o.max;
	l->q = arena_zalloc(e->a, l->cap * sizeof(*l->q));
	l->names = arena_zalloc(e->a, l->cap * sizeof(*l->names));
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
	/* a rules file's regex: under the engine's limits, as regex rules are */
	pcre2_match_context *mc = rules_match_context(e->r);
	if (md == NULL)
		return;
	/* bounded: each turn moves on by at least a byte, and at most 10 * max strings are read */
	size_t off = 0;
	for (unsigned seen = 0; text != NULL && off <= n && l->nq < l->cap && seen < 10 * l->cap;
	     seen++) {
		int rc = pcre2_match(re, (PCRE2_SPTR)text, n, off, 0, md, mc);
		if (rc < 0)
			break; /* no more matches, or a limit: what was found is asked */
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		off = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
		char qname[DNS_QNAME_MAX_BYTES];
		if (rc >= 2 && ov[2] != PCRE2_UNSET &&
		    hashbl_qname(e->r->uridnsbl, &o, zone, text + ov[2], ov[3] - ov[2], qname,
		                 sizeof(qname)))
			submit_once(e, dns, s, l, qname, l->names);
	}
	pcre2_match_data_free(md);
}

/* ---------------------------------------------------------------- DNSEval's name forms */

/*
 * check_rbl's sisters that ask a list about names rather than the relay's
 * address, as SpamAssassin's DNSEval does: the From addresses' hosts
 * (check_rbl_from_host) or registered domains (check_rbl_from_domain),
 * the envelope sender's host (check_rbl_envfrom), the fields rbl_headers
 * names (check_rbl_headers: an address's host, else each line as a host
 * or an address), the first untrusted relay's address, by, HELO and
 * rDNS names (check_rbl_rcvd) and the names of the sender's registered
 * domain's name servers (check_rbl_ns_from, its NS lookup on the URI
 * lists' chain). A name is asked as NAME.zone, an address
 * reversed; tflags domains_only and ips_only keep one kind. Unlike
 * SpamAssassin, a private or loopback address is never asked about.
 */
struct rbl_hosts {
	struct rules_evalenv *e;
	dns_t *dns;
	struct rules_dns_msg *s;
	struct rbl_lookup *l;
	const char *zone;
};

/* Asks about one host or address (h, n bytes) in the rule's zone, once. */
static void rbl_host(struct rbl_hosts *c, const char *h, size_t n)
{
	const struct rule *ru = c->l->ru;
	/* dots at both ends stripped, runs of dots made one (SpamAssassin) */
	while (n > 0 && (*h == '.' || isspace((unsigned char)*h)))
		h++, n--;
	while (n > 0 && (h[n - 1] == '.' || isspace((unsigned char)h[n - 1])))
		n--;
	char host[256];
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (h[i] == '.' && o > 0 && host[o - 1] == '.')
			continue;
		if (o + 1 >= sizeof(host))
			return;
		host[o++] = (char)tolower((unsigned char)h[i]);
	}
	host[o] = '\0';
	if (o == 0)
		return;
	char qname[DNS_QNAME_MAX_BYTES];
	unsigned char bin[16];
	if (inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1) {
		if ((ru->tflags & TF_DOMAINS_ONLY) || rules_eval_ip_private(host) ||
		    dnsbl_ip_qname(host, c->zone, qname, sizeof(qname)) == 0)
			return;
	} else {
		if ((ru->tflags & TF_IPS_ONLY) || !dns_valid_hostname(host) ||
		    !rules_eval_domain_valid(host) ||
		    (size_t)snprintf(qname, sizeof(qname), "%s.%s", host, c->zone) >= sizeof(qname))
			return;
	}
	submit_once(c->e, c->dns, c->s, c->l, qname, c->l->names);
}

/* The host of an address (after its first '@', as SpamAssassin's pattern takes it). */
static void rbl_addr_host(struct rbl_hosts *c, const char *addr, bool registered)
{
	const char *at = addr ? strchr(addr, '@') : NULL;
	if (at == NULL)
		return;
	const char *h = at + 1;
	size_t n = strcspn(h, "@ \t\r\n");
	if (registered) {
		char host[256], reg[256];
		if (n == 0 || n >= sizeof(host))
			return;
		memcpy(host, h, n);
		host[n] = '\0';
		const char *d = dns_registered_domain(host, reg, sizeof(reg));
		if (d != NULL)
			rbl_host(c, d, strlen(d));
		return;
	}
	rbl_host(c, h, n);
}

/* check_rbl_headers: each field of the list (the rule's, else rbl_headers). */
static void rbl_header_hosts(struct rbl_hosts *c, const char *list)
{
	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ",");
		char name[128];
		while (n > 0 && isspace((unsigned char)*p))
			p++, n--;
		size_t k = n;
		while (k > 0 && isspace((unsigned char)p[k - 1]))
			k--;
		if (k > 0 && k < sizeof(name)) {
			memcpy(name, p, k);
			name[k] = '\0';
			const char *v = strcasecmp(name, "EnvelopeFrom") == 0
			                    ? rules_eval_envelope_from(c->e)
			                    : rules_eval_header(c->e, name);
			const char **addrs;
			size_t na = v != NULL ? rules_eval_addrs(c->e->a, v, &addrs) : 0;
			if (na > 0 && strchr(addrs[0], '@') != NULL) {
				rbl_addr_host(c, addrs[0], false);
			} else {
				for (const char *q = v; q != NULL && *q;) {
					size_t ln = strcspn(q, "\n");
					rbl_host(c, q, ln);
					q += ln + (q[ln] == '\n');
				}
			}
		}
		p += n + (p[n] == ',');
	}
}

static void rbl_hosts_submit(struct rules_evalenv *e, dns_t *dns, struct rules_dns_msg *s,
                             struct rbl_lookup *l, enum rbl_form form, const char *zone)
{
	const struct rule *ru = l->ru;
	l->cap = RBL_MAX_HOSTS;
	l->q = arena_zalloc(e->a, RBL_MAX_HOSTS * sizeof(*l->q));
	l->names = arena_zalloc(e->a, RBL_MAX_HOSTS * sizeof(*l->names));
	struct rbl_hosts c = {.e = e, .dns = dns, .s = s, .l = l, .zone = zone};
	switch (form) {
	case RBL_FROM_HOST:
	case RBL_FROM_DOMAIN: {
		const char **addrs;
		size_t n = rules_eval_all_from_addrs(e, &addrs);
		for (size_t i = 0; i < n; i++)
			rbl_addr_host(&c, addrs[i], form == RBL_FROM_DOMAIN);
		break;
	}
	case RBL_ENVFROM: rbl_addr_host(&c, rules_eval_envelope_from(e), false); break;
	case RBL_HEADERS:
		rbl_header_hosts(
		    &c, ru->neargs > 3 && ru->eargs[3][0]
		            ? ru->eargs[3]
		            : (e->r->rbl_headers ? e->r->rbl_headers : RBL_DEFAULT_HEADERS));
		break;
	case RBL_RCVD:
		rules_eval_relays(e);
		if (e->nuntrusted > 0) {
			/* the untrusted relay furthest from here, as SpamAssassin 4.0.1 takes it */
			const struct rules_relay *f = &e->untrusted[e->nuntrusted - 1];
			const char *v[] = {f->ip, f->by, f->helo, f->rdns};
			for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
				if (v[i] != NULL)
					rbl_host(&c, v[i], strlen(v[i]));
		}
		break;
	case RBL_NS_FROM: {
		/* the name servers of the sender's registered domain (the NS answer leads on,
		 * ns_read()) */
		char host[DNS_QNAME_MAX_BYTES], reg[DNS_QNAME_MAX_BYTES];
		const char *d = sender_host(e, host, sizeof(host))
		                    ? dns_registered_domain(host, reg, sizeof(reg))
		                    : NULL;
		if (d == NULL || (s->ns_from != NULL && strcmp(s->ns_from, d) != 0))
			break;
		if (s->ns_from == NULL)
			s->ns_from = arena_strdup(e->a, d);
		uchain_add(e, s, UC_NS, s->ns_from, s->ns_from);
		break;
	}
	case RBL_IP:
	case RBL_ACCREDITOR: break;
	}
}

/*
 * check_rbl_accreditor's "accreditor assertion": a tag in the envelope
 * sender's host ("list@a--TAG.example.com", TAG 3 or more letters or
 * digits) or the first word of each comma-separated part of an
 * Accreditor field; whether one is tag (ASCII case folded).
 */
static bool accredited(struct rules_evalenv *e, const char *tag)
{
	const char *f = rules_eval_envelope_from(e);
	for (const char *p = f ? strstr(f, "a--") : NULL; p != NULL; p = strstr(p + 1, "a--")) {
		if (p == f || (p[-1] != '@' && p[-1] != '.'))
			continue;
		const char *t = p + 3;
		size_t n = 0;
		while (isalnum((unsigned char)t[n]))
			n++;
		if (n >= 3 && t[n] == '.' && strlen(tag) == n && strncasecmp(t, tag, n) == 0)
			return true;
	}
	const char *v = rules_eval_header(e, "Accreditor");
	for (const char *p = v; p != NULL && *p;) {
		size_t n = strcspn(p, ",");
		const char *w = p, *end = p + n;
		while (w < end && isspace((unsigned char)*w))
			w++;
		size_t wn = 0;
		while (w + wn < end && !isspace((unsigned char)w[wn]))
			wn++;
		if (wn > 0 && strlen(tag) == wn && strncasecmp(w, tag, wn) == 0)
			return true;
		p = end + (*end == ',');
	}
	return false;
}

void rules_eval_dns_begin(struct rules_evalenv *e, dns_t *dns, long deadline_ms)
{
	const rules_t *r = e->r;
	if (dns == NULL)
		return;
	size_t nrbl = 0;
	for (size_t k = 0; k < r->nevals; k++)
		nrbl += is_dns(r->v[r->evals[k]].evaldef);
	if (nrbl == 0)
		return;
	struct rules_dns_msg *s = arena_zalloc(e->a, sizeof(*s));
	s->v = arena_zalloc(e->a, nrbl * sizeof(*s->v));
	s->deadline_ms = deadline_ms;
	s->dns = dns;
	s->b = dns_batch_new();
	probes_submit(e, dns, s);
	struct uhost *hosts = NULL;
	size_t nh = 0;
	bool hosts_done = false;
	for (size_t k = 0; k < r->nevals; k++) {
		const struct rule *ru = &r->v[r->evals[k]];
		const struct rules_evaldef *d = ru->evaldef;
		if (!is_dns(d))
			continue;
		struct rbl_lookup *l = &s->v[s->n++];
		l->ru = ru;
		if (is_uri(d)) {
			if (!hosts_done) {
				nh = uri_hosts(e, &hosts);
				hosts_done = true;
			}
			uri_submit(e, dns, s, l, hosts, nh);
			continue;
		}
		void (*submit)(struct rules_evalenv *, dns_t *, struct rules_dns_msg *,
		               struct rbl_lookup *) = is_ask(d)      ? ask_submit
		                                      : is_sender(d) ? sender_submit
		                                      : is_hashbl(d) ? hashbl_submit
		                                                     : NULL;
		if (submit != NULL) {
			submit(e, dns, s, l);
			continue;
		}
		/* check_rbl and its forms */
		l->qtype = strcmp(ru->evaldef->name, "check_rbl_txt") == 0 ? DNS_T_TXT : DNS_T_A;
		char zone[DNS_QNAME_MAX_BYTES];
		zone_name(ru->eargs[1], zone, sizeof(zone));
		const struct rules_dns_zone *z = zone_find(r, zone);
		enum rbl_form form = rbl_form_of(ru->evaldef);
		if (form != RBL_IP && form != RBL_ACCREDITOR) {
			if (z == NULL || !atomic_load(&z->off))
				rbl_hosts_submit(e, dns, s, l, form, zone);
			continue;
		}
		const char *ips[RBL_MAX_IPS];
		size_t nip = (z != NULL && atomic_load(&z->off)) ||
		                     (form == RBL_ACCREDITOR && !accredited(e, ru->eargs[3]))
		                 ? 0
		                 : rbl_ips(e, ru->eargs[0], ips);
		l->q = arena_zalloc(e->a, (nip ? nip : 1) * sizeof(*l->q));
		l->names = arena_zalloc(e->a, (nip ? nip : 1) * sizeof(*l->names));
		for (size_t i = 0; i < nip; i++) {
			char qname[DNS_QNAME_MAX_BYTES];
			if (dnsbl_ip_qname(ips[i], zone, qname, sizeof(qname)) == 0 ||
			    dns_blocked(r, qname))
				continue;
			l->q[l->nq] = msg_lookup(e, dns, s, qname, l->qtype, &l->names[l->nq]);
			l->nq++;
		}
	}
	if (hosts_done)
		uchain_begin(e, s, hosts, nh);
	e->cache[RULES_EVAL_CACHE_DNS] = s;
}

unsigned rules_eval_dns_end(struct rules_evalenv *e)
{
	struct rules_dns_msg *s = e->cache[RULES_EVAL_CACHE_DNS];
	if (s == NULL)
		return 0;
	probes_read(s);
	dns_batch_release(s->b);
	if (s->cb != NULL)
		dns_batch_release(s->cb);
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

/* ---------------------------------------------------------------- regex subtests */

/*
 * The regex subtests of the DNS rules (check_rbl's and check_rbl_sub's,
 * askdns's), compiled once when the rules load rather than at each answer
 * that reaches them: found by the address of the subtest's string, which
 * lives as long as the rule set. Read-only once loaded, so every thread
 * reads them; each match takes its own match data.
 */
struct dns_re {
	const char *sub;
	pcre2_code *code;
};

struct rules_dns_res {
	struct dns_re *v;
	size_t n;
};

static int res_cmp(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)((const struct dns_re *)a)->sub;
	uintptr_t y = (uintptr_t)((const struct dns_re *)b)->sub;
	return x < y ? -1 : x > y;
}

/* Whether pat compiles with opts (the load checks); *groups, when not NULL, gets its groups. */
static bool re_compiles(const char *pat, uint32_t opts, uint32_t *groups)
{
	int err;
	PCRE2_SIZE off;
	pcre2_code *c =
	    pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
	if (c != NULL && groups != NULL)
		pcre2_pattern_info(c, PCRE2_INFO_CAPTURECOUNT, groups);
	pcre2_code_free(c);
	return c != NULL;
}

static void res_add(rules_t *r, const char *sub, const char *pat, uint32_t opts)
{
	int err;
	PCRE2_SIZE off;
	/* a pattern that does not compile failed the rule's check at load */
	pcre2_code *code = rules_re_compile(pat, PCRE2_ZERO_TERMINATED, opts, NULL, &err, &off);
	if (code == NULL)
		return;
	/* HashBL's body regex reads whole bodies: JIT when available (pcre2_match uses it) */
	(void)rules_re_jit(code, pat, PCRE2_ZERO_TERMINATED);
	if (r->dns_res == NULL)
		r->dns_res = xalloc_calloc(1, sizeof(*r->dns_res));
	struct rules_dns_res *t = r->dns_res;
	t->v = xalloc_realloc(t->v, (t->n + 1) * sizeof(*t->v));
	t->v[t->n++] = (struct dns_re){sub, code};
}

static const pcre2_code *res_find(const rules_t *r, const char *sub)
{
	if (r->dns_res == NULL)
		return NULL;
	struct dns_re key = {.sub = sub};
	const struct dns_re *f =
	    bsearch(&key, r->dns_res->v, r->dns_res->n, sizeof(r->dns_res->v[0]), res_cmp);
	return f != NULL ? f->code : NULL;
}

static void res_free(rules_t *r)
{
	if (r->dns_res == NULL)
		return;
	for (size_t i = 0; i < r->dns_res->n; i++)
		pcre2_code_free(r->dns_res->v[i].code);
	free(r->dns_res->v);
	free(r->dns_res);
	r->dns_res = NULL;
}

/*
 * Whether the regex subtest sub matches data, by its code compiled at load
 * (every regex subtest a load check took is there: res_build()).
 */
static bool re_matches(const rules_t *r, const char *sub, const char *data)
{
	const pcre2_code *code = res_find(r, sub);
	if (code == NULL)
		return false;
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
	bool hit =
	    md != NULL && pcre2_match(code, (PCRE2_SPTR)data, strlen(data), 0, 0, md, NULL) >= 0;
	pcre2_match_data_free(md);
	return hit;
}

static bool subtest_match(const rules_t *r, const char *sub, const char *data, bool is_a)
{
	switch (subtest_kind(sub)) {
	case SUB_MASK: {
		struct in_addr a;
		if (!is_a || inet_pton(AF_INET, data, &a) != 1)
			return false;
		return (ntohl(a.s_addr) & (uint32_t)strtoul(sub, NULL, 10)) != 0;
	}
	case SUB_EXACT: return strcmp(sub, data) == 0;
	default: return re_matches(r, sub, data);
	}
}

/* URIDNSBL's subtest: a mask, a range or value/mask of codes, or a TXT text. */
static bool uri_subtest_match(const struct uentry *u, const char *data, bool is_a)
{
	if (u->sub == USUB_NONE)
		return true;
	if (!is_a || u->sub == USUB_TEXT)
		return strcmp(u->text, data) == 0;
	struct in_addr a;
	if (inet_pton(AF_INET, data, &a) != 1)
		return false;
	uint32_t code = ntohl(a.s_addr);
	switch (u->sub) {
	case USUB_MASK: return (code & u->n1) != 0 && (code >> 24) == 127;
	case USUB_RANGE: return code >= u->n1 && code <= u->n2;
	default: return (code & u->n2) == (u->n1 & u->n2);
	}
}

static bool usub_parse(const char *sub, int *kind, uint32_t *n1, uint32_t *n2);

/* A /regex/flags or m{regex}flags subtest: the pattern and its options; false when not one. */
static bool ask_regex(const char *sub, char *pat, size_t cap, uint32_t *opts)
{
	const char *body;
	char close;
	if (sub[0] == '/') {
		body = sub + 1;
		close = '/';
	} else if (sub[0] == 'm' && sub[1] && !isalnum((unsigned char)sub[1]) && sub[1] != '_') {
		body = sub + 2;
		close = sub[1] == '{' ? '}' : sub[1] == '(' ? ')' : sub[1] == '[' ? ']' : sub[1];
	} else {
		return false;
	}
	const char *end = strrchr(body, close);
	if (end == NULL || (size_t)(end - body) >= cap)
		return false;
	*opts = 0;
	for (const char *f = end + 1; *f; f++) {
		if (*f == 'i')
			*opts |= PCRE2_CASELESS;
		else if (*f == 's')
			*opts |= PCRE2_DOTALL;
		else if (*f == 'm')
			*opts |= PCRE2_MULTILINE;
		else if (*f == 'x')
			*opts |= PCRE2_EXTENDED;
		else
			return false;
	}
	memcpy(pat, body, (size_t)(end - body));
	pat[end - body] = '\0';
	return true;
}

/*
 * An rcode subtest, "[NXDOMAIN]" or "[FormErr,ServFail,4,5]": its codes as
 * bits of *mask (names as IANA's registry and SpamAssassin spell them, any
 * case, or numbers below 32); false when malformed. Only NOERROR and
 * NXDOMAIN can be seen (dns_answer_rcode()): check_askdns() skips the rest.
 */
static bool ask_rcodes(const char *sub, uint32_t *mask)
{
	static const struct {
		const char *name;
		unsigned code;
	} names[] = {{"NOERROR", 0},  {"FORMERR", 1}, {"SERVFAIL", 2}, {"NXDOMAIN", 3},
	             {"NOTIMP", 4},   {"REFUSED", 5}, {"YXDOMAIN", 6}, {"YXRRSET", 7},
	             {"NXRRSET", 8},  {"NOTAUTH", 9}, {"NOTZONE", 10}, {"BADVERS", 16},
	             {"BADSIG", 16},  {"BADKEY", 17}, {"BADTIME", 18}, {"BADMODE", 19},
	             {"BADNAME", 20}, {"BADALG", 21}, {"BADTRUNC", 22}};
	size_t sl = strlen(sub);
	*mask = 0;
	if (sl < 3 || sub[0] != '[' || sub[sl - 1] != ']')
		return false;
	for (const char *p = sub + 1; p < sub + sl - 1;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		size_t n = strcspn(p, ", \t]");
		if (n == 0)
			break;
		char w[16];
		if (n >= sizeof(w))
			return false;
		memcpy(w, p, n);
		w[n] = '\0';
		p += n;
		char *end;
		unsigned long v = strtoul(w, &end, 10);
		if (isdigit((unsigned char)w[0]) && *end == '\0' && v < 32) {
			*mask |= 1u << v;
			continue;
		}
		size_t i = 0;
		while (i < sizeof(names) / sizeof(names[0]) && strcasecmp(w, names[i].name) != 0)
			i++;
		if (i == sizeof(names) / sizeof(names[0]))
			return false;
		*mask |= 1u << names[i].code;
	}
	return *mask != 0;
}

/* AskDNS's subtest: none, a regex, a quoted or plain string, or URIDNSBL's numeric forms. */
static bool ask_match(const rules_t *r, const char *sub, const char *data, bool is_a)
{
	if (sub[0] == '\0')
		return true;
	char pat[DNS_RE_MAX_BYTES];
	uint32_t opts;
	if (ask_regex(sub, pat, sizeof(pat), &opts))
		return re_matches(r, sub, data);
	size_t sl = strlen(sub);
	if (sl >= 2 && (sub[0] == '"' || sub[0] == '\'') && sub[sl - 1] == sub[0])
		return strlen(data) == sl - 2 && strncmp(data, sub + 1, sl - 2) == 0;
	struct uentry u = {.text = (char *)sub};
	if (is_a && usub_parse(sub, &u.sub, &u.n1, &u.n2))
		return uri_subtest_match(&u, data, true);
	return strcmp(sub, data) == 0;
}

/* Whether one answer (an address as text, or a TXT text) passes rule ru's subtest on lookup l. */
static bool answer_takes(const rules_t *r, const struct rbl_lookup *l, const char *sub,
                         const struct rule *ru, const char *text, bool is_a)
{
	if (l->u != NULL)
		return uri_subtest_match(l->u, text, is_a);
	if (l->ask)
		return ask_match(r, ru->eargs[2], text, is_a);
	return sub == NULL || subtest_match(r, sub, text, is_a);
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
		        "rule %s: its list answered %s, an ERROR code, not a listing (query "
		        "refused, open/public resolver or over quota)%s",
		        ru->name, code, lost ? " (more suppressed)" : "");
}

/* Waits for the message's lookups once, until the deadline, and counts those without an answer. */
static void msg_wait(struct rules_evalenv *e, struct rules_dns_msg *s)
{
	if (s->waited)
		return;
	uchain_follow(e, s); /* name servers, their addresses: more list lookups */
	dns_batch_wait(s->b, s->deadline_ms);
	s->waited = true;
	for (size_t i = 0; i < s->nchain; i++)
		if (!s->chain[i].read || s->chain[i].late)
			s->late++;
	for (size_t i = 0; s->asked != NULL && i < ASKED_BUCKETS; i++)
		for (const struct asked *q = s->asked[i]; q != NULL; q = q->next) {
			dns_answer_t a;
			if (!dns_result(s->b, q->q, &a, NULL, NULL) || a.status == DNS_TIMEOUT)
				s->late++;
		}
}

/*
 * Whether one of l's answers passes sub (NULL: any listing). Waits for
 * the batch once per message, until the deadline.
 */
static bool lookup_hits(struct rules_evalenv *e, struct rules_dns_msg *s,
                        const struct rbl_lookup *l, const char *sub, const struct rule *ru)
{
	msg_wait(e, s);
	bool hit = false;
	uint32_t codes;
	if (l->ask && ask_rcodes(ru->eargs[2], &codes)) {
		/* the response's code alone, whatever records it holds (SpamAssassin) */
		for (size_t k = 0; k < l->nq && !hit; k++) {
			dns_answer_t a;
			int rc =
			    dns_result(s->b, l->q[k], &a, NULL, NULL) ? dns_answer_rcode(&a) : -1;
			hit = rc >= 0 && (codes & (1u << rc)) != 0;
			if (hit && l->names != NULL)
				e->detail = arena_sprintf(e->a, "%s -> rcode %d", l->names[k], rc);
		}
		return hit;
	}
	for (size_t k = 0; k < l->nq && !hit; k++) {
		dns_answer_t a;
		if (!dns_result(s->b, l->q[k], &a, NULL, NULL) || a.status != DNS_NOERROR)
			continue;
		char text[DNS_DATA_MAX_BYTES] = "";
		int qt = l->qtypes != NULL ? l->qtypes[k] : l->qtype;
		for (unsigned i = 0; i < a.nrr && !hit; i++) {
			size_t len;
			const char *d = dns_answer_rr(&a, i, &len);
			if (qt == DNS_T_A) {
				if (len != 4)
					continue;
				uint32_t code = (uint32_t)(unsigned char)d[0] << 24 |
				                (uint32_t)(unsigned char)d[1] << 16 |
				                (uint32_t)(unsigned char)d[2] << 8 |
				                (unsigned char)d[3];
				inet_ntop(AF_INET, d, text, sizeof(text));
				/* askdns asks about any name: only 127.255.255.0/24 is a refusal
				 * there */
				if (l->ask ? (code & 0xffffff00u) == 0x7fffff00u
				           : dnsbl_code_is_refusal(code)) {
					log_refusal(ru, text);
					/* never a hit, but RCVD_IN_ZEN_BLOCKED's still blocks its
					 * lists */
					if (e->r->dns_blocks != NULL &&
					    answer_takes(e->r, l, sub, ru, text, true))
						dns_block(e->r, ru, text);
					continue;
				}
			} else if (qt == DNS_T_AAAA) {
				if (len != 16)
					continue;
				inet_ntop(AF_INET6, d, text, sizeof(text));
			} else {
				snprintf(text, sizeof(text), "%.*s", (int)len, d);
			}
			hit = answer_takes(e->r, l, sub, ru, text, qt == DNS_T_A);
		}
		if (hit && l->names != NULL)
			e->detail = arena_sprintf(e->a, "%s -> %.200s", l->names[k], text);
		if (hit)
			dns_block(e->r, ru, text);
	}
	return hit;
}

/* Rule ru's lookups in this message and the message's DNS state; NULL when it asked nothing. */
static struct rbl_lookup *rule_lookup(struct rules_evalenv *e, const struct rule *ru,
                                      struct rules_dns_msg **sp)
{
	struct rules_dns_msg *s = e->cache[RULES_EVAL_CACHE_DNS];
	*sp = s;
	for (size_t i = 0; s != NULL && i < s->n; i++)
		if (s->v[i].ru == ru)
			return &s->v[i];
	return NULL;
}

/* Whether rule ru's lookups hit, its subtest being argument k (none when absent or empty). */
static long rule_hits(struct rules_evalenv *e, const struct rule *ru, size_t k)
{
	struct rules_dns_msg *s;
	struct rbl_lookup *l = rule_lookup(e, ru, &s);
	const char *sub = ru->neargs > k && ru->eargs[k][0] ? ru->eargs[k] : NULL;
	return l != NULL && lookup_hits(e, s, l, sub, ru);
}

static long rbl(struct rules_evalenv *e, const struct rule *ru)
{
	return rule_hits(e, ru, 2);
}

static long uridnsbl(struct rules_evalenv *e, const struct rule *ru)
{
	struct rules_dns_msg *s;
	struct rbl_lookup *l = rule_lookup(e, ru, &s);
	return l != NULL && l->u != NULL && lookup_hits(e, s, l, NULL, ru);
}

/* askdns's subtest is read by answer_takes() from the rule itself */
static long askdns(struct rules_evalenv *e, const struct rule *ru)
{
	return rule_hits(e, ru, SIZE_MAX);
}

/* check_dns_sender: both the A and the MX question of the sender's host ended in NXDOMAIN. */
static long dns_sender(struct rules_evalenv *e, const struct rule *ru)
{
	struct rules_dns_msg *s;
	struct rbl_lookup *l = rule_lookup(e, ru, &s);
	if (l == NULL || l->nq != 2)
		return 0;
	msg_wait(e, s);
	for (size_t k = 0; k < 2; k++) {
		dns_answer_t a;
		if (!dns_result(s->b, l->q[k], &a, NULL, NULL) || a.status != DNS_NXDOMAIN)
			return 0;
	}
	e->detail = arena_sprintf(e->a, "%s: NXDOMAIN for A and MX", l->names[0]);
	return 1;
}

static long hashbl(struct rules_evalenv *e, const struct rule *ru)
{
	return rule_hits(e, ru, 3);
}

/* A HashBL regex argument: /RE/flags or m{RE}flags, else the pattern as it is. */
static bool hashbl_regex(const char *arg, char *pat, size_t cap, uint32_t *opts)
{
	if (ask_regex(arg, pat, cap, opts))
		return true;
	*opts = 0;
	return (size_t)snprintf(pat, cap, "%s", arg) < cap;
}

static const char *check_hashbl(const struct rule *ru)
{
	char zone[DNS_QNAME_MAX_BYTES], pat[DNS_RE_MAX_BYTES];
	int qtype;
	uint32_t opts;
	if (!hashbl_list(ru->eargs[0], zone, sizeof(zone), &qtype))
		return "check_hashbl_bodyre: the list must be a zone name, with /A or /TXT at most";
	if (ru->type != RULES_T_BODY && ru->type != RULES_T_RAWBODY)
		return "check_hashbl_bodyre: the rule must be a body or rawbody rule";
	uint32_t groups = 0;
	if (!hashbl_regex(ru->eargs[2], pat, sizeof(pat), &opts) ||
	    !re_compiles(pat, opts, &groups))
		return "check_hashbl_bodyre: invalid body regular expression";
	if (groups == 0)
		return "check_hashbl_bodyre: the body regular expression needs a group, (...), "
		       "for the string to ask about";
	if (ru->neargs > 3 && ru->eargs[3][0] &&
	    (!hashbl_regex(ru->eargs[3], pat, sizeof(pat), &opts) || !re_compiles(pat, opts, NULL)))
		return "check_hashbl_bodyre: invalid subtest regular expression";
	return NULL;
}

static const char *check_askdns(const struct rule *ru)
{
	int types[ASK_MAX_TYPES];
	if (ask_qtypes(ru->eargs[1], types) == 0)
		return "~askdns: only A, AAAA, TXT, MX, PTR and NS questions are asked (not ANY)";
	if (ask_tag_mask(ru->eargs[0]) < 0)
		return "~askdns: a template tag this engine does not fill (it fills "
		       "_SENDERDOMAIN_, _AUTHORDOMAIN_, _DKIMDOMAIN_ and "
		       "_LASTEXTERNAL{HELO,IP,REVIP,RDNS}_)";
	const char *sub = ru->eargs[2];
	char pat[DNS_RE_MAX_BYTES];
	uint32_t opts, codes;
	if (sub[0] == '[' && !ask_rcodes(sub, &codes))
		return "askdns: a response-code subtest is a list of codes in brackets, such as "
		       "[NXDOMAIN] or [ServFail,5]";
	if (sub[0] == '[' && (codes & ~((1u << 0) | (1u << 3))) != 0)
		return "~askdns: only the response codes NOERROR and NXDOMAIN are seen (the "
		       "resolver library reports SERVFAIL, NOTIMP and REFUSED as a failure "
		       "without the response)";
	bool re = (sub[0] == '/' || sub[0] == 'm') && ask_regex(sub, pat, sizeof(pat), &opts);
	if (re ? !re_compiles(pat, opts, NULL) : sub[0] == '/')
		return "askdns: invalid subtest regular expression";
	return NULL;
}

/* The answers of the set's check_rbl lookups, tested against this rule's subtest. */
static long rbl_sub(struct rules_evalenv *e, const struct rule *ru)
{
	struct rules_dns_msg *s = e->cache[RULES_EVAL_CACHE_DNS];
	if (s == NULL)
		return 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].qtype == DNS_T_A && strcmp(s->v[i].ru->eargs[0], ru->eargs[0]) == 0 &&
		    lookup_hits(e, s, &s->v[i], ru->eargs[1], ru))
			return 1;
	return 0;
}

static const char *check_sub(const char *sub)
{
	if (strncmp(sub, "sb:", 3) == 0)
		return "~check_rbl subtests in sb: form are not run";
	if (subtest_kind(sub) == SUB_RE && !re_compiles(sub, 0, NULL))
		return "invalid subtest regular expression";
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
    {"check_rbl_from_host", rbl, 2, 3, check_rbl_args},
    {"check_rbl_from_domain", rbl, 2, 3, check_rbl_args},
    {"check_rbl_envfrom", rbl, 2, 3, check_rbl_args},
    {"check_rbl_headers", rbl, 2, 4, check_rbl_args},
    {"check_rbl_rcvd", rbl, 2, 3, check_rbl_args},
    {"check_rbl_ns_from", rbl, 2, 3, check_rbl_args},
    /* set, zone, subtest ('' for any listing), accreditor */
    {"check_rbl_accreditor", rbl, 4, 4, check_rbl_args},
    {"check_uridnsbl", uridnsbl, 1, 1, NULL},
    {"check_dns_sender", dns_sender, 0, 0, NULL},
    /* list, options, body regex, subtest */
    {"check_hashbl_bodyre", hashbl, 3, 4, check_hashbl},
    /* askdns lines, made into rules by the parser: template, type, subtest */
    {"askdns", askdns, 3, 3, check_askdns},
    {NULL, NULL, 0, 0, NULL},
};

static bool is_rbl(const struct rules_evaldef *d)
{
	return d != NULL && d->fn == rbl;
}

static bool is_ask(const struct rules_evaldef *d)
{
	return d != NULL && d->fn == askdns;
}

static bool is_hashbl(const struct rules_evaldef *d)
{
	return d != NULL && d->fn == hashbl;
}

static bool is_sender(const struct rules_evaldef *d)
{
	return d != NULL && d->fn == dns_sender;
}

static bool is_uri(const struct rules_evaldef *d)
{
	return d != NULL && d->fn == uridnsbl;
}

/* Whether d is one of the tests whose lookups start with the message's batch. */
static bool is_dns(const struct rules_evaldef *d)
{
	return is_rbl(d) || is_uri(d) || is_ask(d) || is_sender(d) || is_hashbl(d);
}

/* Compiles the rules' regex subtests (res_find()); called once the rules are read. */
static void res_build(rules_t *r)
{
	res_free(r);
	for (size_t k = 0; k < r->nevals; k++) {
		const struct rule *ru = &r->v[r->evals[k]];
		char pat[DNS_RE_MAX_BYTES];
		uint32_t opts;
		if (is_rbl(ru->evaldef) && ru->neargs > 2 && ru->eargs[2][0] &&
		    subtest_kind(ru->eargs[2]) == SUB_RE)
			res_add(r, ru->eargs[2], ru->eargs[2], 0);
		else if (ru->evaldef != NULL && ru->evaldef->fn == rbl_sub &&
		         subtest_kind(ru->eargs[1]) == SUB_RE)
			res_add(r, ru->eargs[1], ru->eargs[1], 0);
		else if (is_ask(ru->evaldef) && ask_regex(ru->eargs[2], pat, sizeof(pat), &opts))
			res_add(r, ru->eargs[2], pat, opts);
		if (is_hashbl(ru->evaldef)) {
			if (hashbl_regex(ru->eargs[2], pat, sizeof(pat), &opts))
				res_add(r, ru->eargs[2], pat, opts);
			/* the subtest is read as check_rbl's (a regex unless a number or an
			 * address) */
			if (ru->neargs > 3 && ru->eargs[3][0] &&
			    subtest_kind(ru->eargs[3]) == SUB_RE &&
			    hashbl_regex(ru->eargs[3], pat, sizeof(pat), &opts))
				res_add(r, ru->eargs[3], pat, opts);
		}
	}
	if (r->dns_res != NULL)
		qsort(r->dns_res->v, r->dns_res->n, sizeof(r->dns_res->v[0]), res_cmp);
}

/* ---------------------------------------------------------------- URIDNSBL directives */

/* One number of a subtest: decimal, 0x hex or a dotted quad. */
static bool subtest_number(const char *s, uint32_t *out, bool *quad)
{
	char *end;
	struct in_addr a;
	*quad = false;
	if (strncmp(s, "0x", 2) == 0 && s[2] && strlen(s) <= 10) {
		*out = (uint32_t)strtoul(s + 2, &end, 16);
		return *end == '\0';
	}
	if (isdigit((unsigned char)s[0]) && strspn(s, "0123456789") == strlen(s) &&
	    strlen(s) <= 10) {
		unsigned long v = strtoul(s, &end, 10);
		*out = (uint32_t)v;
		return v <= 0xffffffffUL;
	}
	if (inet_pton(AF_INET, s, &a) == 1) {
		*out = ntohl(a.s_addr);
		*quad = true;
		return true;
	}
	return false;
}

/* SpamAssassin's parse_and_canonicalize_subtest: M, N1-N2 or N/M. */
/* SpamAssassin's parse_and_canonicalize_subtest: M, N1-N2 or N/M; false when it is none. */
static bool usub_parse(const char *sub, int *kind, uint32_t *n1, uint32_t *n2)
{
	char a[64], b[64] = "";
	size_t k = strcspn(sub, "/-");
	if (k >= sizeof(a) || strlen(sub + k) > sizeof(b))
		return false;
	memcpy(a, sub, k);
	a[k] = '\0';
	char delim = sub[k];
	if (delim)
		snprintf(b, sizeof(b), "%s", sub + k + 1);
	bool qa, qb;
	if (!subtest_number(a, n1, &qa) || (delim && !subtest_number(b, n2, &qb)))
		return false;
	if (delim == '-')
		*kind = USUB_RANGE;
	else if (delim == '/')
		*kind = USUB_VALMASK;
	else if (qa) {
		*kind = USUB_RANGE;
		*n2 = *n1;
	} else
		*kind = USUB_MASK;
	return true;
}

static const char *parse_usub(struct uentry *u, const char *sub)
{
	u->text = xalloc_strdup(sub);
	u->sub = USUB_NONE;
	if (sub[0] == '\0')
		return NULL;
	if (!usub_parse(sub, &u->sub, &u->n1, &u->n2)) {
		if (u->qtype == DNS_T_TXT) {
			u->sub = USUB_TEXT;
			return NULL;
		}
		return "bad subtest (a mask, N1-N2, N/MASK or an IPv4 address)";
	}
	return NULL;
}

static struct rules_uridnsbl *uridnsbl_get(rules_t *r)
{
	if (r->uridnsbl == NULL) {
		r->uridnsbl = xalloc_calloc(1, sizeof(*r->uridnsbl));
		r->uridnsbl->max_domains = URIDNSBL_MAX_DOMAINS;
	}
	return r->uridnsbl;
}

/* A directive's one argument, a whole number 0-max (blanks after it allowed). */
static bool whole_number(const char *rest, long max, long *v)
{
	char *end;
	*v = strtol(rest, &end, 10);
	while (*end == ' ' || *end == '\t')
		end++;
	return end != rest && *end == '\0' && *v >= 0 && *v <= max;
}

static struct rules_dns_blocks *blocks_get(rules_t *r)
{
	if (r->dns_blocks == NULL) {
		r->dns_blocks = xalloc_calloc(1, sizeof(*r->dns_blocks));
		r->dns_blocks->time_ms = DNS_BLOCK_TIME_S * 1000L;
	}
	return r->dns_blocks;
}

static size_t words(const char *rest, char w[][256], size_t max)
{
	size_t n = 0, l;
	const char *p = rest, *s;
	while (n < max && rules_eval_word(&p, &s, &l))
		snprintf(w[n++], 256, "%.*s", (int)(l < 255 ? l : 255), s);
	return n;
}

bool rules_uridnsbl_directive(rules_t *r, const char *dir, const char *rest, const char **err)
{
	*err = NULL;
	static const struct {
		const char *bl, *sub;
		int kind;
	} forms[] = {
	    {"urirhsbl", "urirhssub", UK_RHS},
	    {"uridnsbl", "uridnssub", UK_ADDR},
	    {"urinsrhsbl", "urinsrhssub", UK_NSRHS},
	    {"urifullnsrhsbl", "urifullnsrhssub", UK_FULLNSRHS},
	};
	int kind = -1;
	bool sub = false;
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]) && kind < 0; i++)
		if (strcmp(dir, forms[i].bl) == 0 || strcmp(dir, forms[i].sub) == 0) {
			kind = forms[i].kind;
			sub = strcmp(dir, forms[i].sub) == 0;
		}
	if (kind >= 0) {
		char w[5][256];
		size_t n = words(rest, w, 5);
		if (n != (sub ? 4u : 3u)) {
			*err = sub ? "expected NAME ZONE TYPE SUBTEST" : "expected NAME ZONE TYPE";
			return true;
		}
		int qtype = strcasecmp(w[2], "A") == 0     ? DNS_T_A
		            : strcasecmp(w[2], "TXT") == 0 ? DNS_T_TXT
		                                           : 0;
		if (qtype == 0) {
			*err = "the lookup type must be A or TXT";
			return true;
		}
		size_t zl = strlen(w[1]);
		while (zl > 0 && w[1][zl - 1] == '.')
			w[1][--zl] = '\0';
		if (zl == 0 || zl > 200) {
			*err = "the zone must be a name of 1-200 bytes";
			return true;
		}
		struct rules_uridnsbl *u = uridnsbl_get(r);
		struct uentry e = {.qtype = qtype, .kind = kind};
		const char *perr = parse_usub(&e, sub ? w[3] : "");
		if (perr != NULL) {
			free(e.text);
			*err = perr;
			return true;
		}
		for (char *p = w[1]; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		e.name = xalloc_strdup(w[0]);
		e.zone = xalloc_strdup(w[1]);
		u->v = xalloc_realloc(u->v, (u->n + 1) * sizeof(*u->v));
		u->v[u->n++] = e;
		return true;
	}
	if (strcmp(dir, "hashbl_ignore") == 0) {
		struct rules_uridnsbl *u = uridnsbl_get(r);
		char w[64][256];
		size_t n = words(rest, w, 64);
		if (n == 0) {
			*err = "expected one or more values or digests";
			return true;
		}
		u->hignore = xalloc_realloc(u->hignore, (u->nhignore + n) * sizeof(*u->hignore));
		for (size_t i = 0; i < n; i++)
			u->hignore[u->nhignore++] = xalloc_strdup(w[i]);
		return true;
	}
	if (strcmp(dir, "uridnsbl_skip_domain") == 0) {
		struct rules_uridnsbl *u = uridnsbl_get(r);
		char w[64][256];
		size_t n = words(rest, w, 64);
		u->skip = xalloc_realloc(u->skip, (u->nskip + n + 1) * sizeof(*u->skip));
		for (size_t i = 0; i < n; i++) {
			for (char *p = w[i]; *p; p++)
				*p = (char)tolower((unsigned char)*p);
			u->skip[u->nskip++] = xalloc_strdup(w[i]);
		}
		return true;
	}
	if (strcmp(dir, "clear_uridnsbl_skip_domain") == 0) {
		struct rules_uridnsbl *u = uridnsbl_get(r);
		char w[64][256];
		size_t n = words(rest, w, 64);
		for (size_t i = 0; i < u->nskip;) {
			bool drop = n == 0;
			for (size_t k = 0; k < n && !drop; k++)
				drop = strcasecmp(u->skip[i], w[k]) == 0;
			if (drop) {
				free(u->skip[i]);
				u->skip[i] = u->skip[--u->nskip];
			} else {
				i++;
			}
		}
		return true;
	}
	if (strcmp(dir, "uridnsbl_max_domains") == 0) {
		long v;
		if (!whole_number(rest, 1000, &v)) {
			*err = "expected a number of domains, 0-1000";
			return true;
		}
		uridnsbl_get(r)->max_domains = v;
		return true;
	}
	if (strcmp(dir, "dns_block_rule") == 0) {
		char w[17][256];
		size_t n = words(rest, w, 17);
		if (n < 2) {
			*err = "expected RULE DOMAIN...";
			return true;
		}
		struct rules_dns_blocks *b = blocks_get(r);
		for (size_t i = 1; i < n; i++) {
			char *d = w[i];
			while (*d == '.')
				d++;
			size_t dl = strlen(d);
			while (dl > 0 && d[dl - 1] == '.')
				d[--dl] = '\0';
			for (char *p = d; *p; p++)
				*p = (char)tolower((unsigned char)*p);
			if (dl == 0 || strspn(d, "abcdefghijklmnopqrstuvwxyz0123456789_.-") != dl) {
				*err = "bad domain (letters, digits, '_', '-' and dots)";
				return true;
			}
			b->v = xalloc_realloc(b->v, (b->n + 1) * sizeof(*b->v));
			memset(&b->v[b->n], 0, sizeof(b->v[b->n]));
			b->v[b->n].rule = xalloc_strdup(w[0]);
			b->v[b->n].domain = xalloc_strdup(d);
			b->v[b->n++].idx = SIZE_MAX;
		}
		return true;
	}
	if (strcmp(dir, "rbl_headers") == 0) {
		/* DNSEval's fields for check_rbl_headers, comma-separated */
		size_t n = strlen(rest);
		while (n > 0 && isspace((unsigned char)rest[n - 1]))
			n--;
		if (n == 0 || memchr(rest, ' ', n) != NULL || memchr(rest, '\t', n) != NULL) {
			*err = "expected FIELD[,FIELD...] (no blanks)";
			return true;
		}
		free(r->rbl_headers);
		r->rbl_headers = xalloc_strndup(rest, n);
		return true;
	}
	if (strcmp(dir, "dns_block_time") == 0) {
		long v;
		if (!whole_number(rest, DNS_BLOCK_MAX_S, &v)) {
			*err = "expected a number of seconds, 0-604800";
			return true;
		}
		blocks_get(r)->time_ms = v * 1000;
		return true;
	}
	return false;
}

void rules_uridnsbl_free(struct rules_uridnsbl *u)
{
	if (u == NULL)
		return;
	for (size_t i = 0; i < u->n; i++) {
		free(u->v[i].name);
		free(u->v[i].zone);
		free(u->v[i].text);
	}
	free(u->v);
	for (size_t i = 0; i < u->nskip; i++)
		free(u->skip[i]);
	free(u->skip);
	for (size_t i = 0; i < u->nhignore; i++)
		free(u->hignore[i]);
	free(u->hignore);
	free(u);
}
