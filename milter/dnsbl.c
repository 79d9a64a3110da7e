/*
 * dnsbl.c - DNS blocklists as a source of evidence (see dnsbl.h): the
 * list configuration, which names are asked of which list and when, the
 * meaning of the answers (scores, errors, probes) and the evidence hooks.
 * DNS itself is the shared service (dns.h), the local rbldnsd files are
 * in dnsbl_file.c.
 */
#include "config.h"

#include "dns.h"
#include "dnsbl.h"
#include "dnsbl_int.h"
#include "hits.h"
#include "log.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DNSBL_MAX_NAME_BYTES 64
/* Error answers are logged loudly, but at most this many per list and window. */
#define ERROR_LOG_BURST    3
#define ERROR_LOG_WINDOW_S 60
/* A switched-off list is probed again at least this often. */
#define DISABLED_PROBE_MAX_MS 60000L
/* Received: fields walked looking for the first untrusted hop. */
#define RECEIVED_MAX_HOPS 20
#define WHAT_MAX_BYTES    64

enum list_kind { KIND_IP, KIND_DOMAIN, KIND_URI };
static const char *const kind_names[] = {"ip", "domain", "uri", NULL};
enum { CHECK_MAILFROM = 1, CHECK_HELO = 2, CHECK_FROM = 4 };
enum code_type { CODE_EXACT, CODE_RANGE, CODE_MASK, CODE_ANY };

struct code_rule {
	int type;
	uint32_t lo, hi; /* lo is the mask for CODE_MASK */
	double score;
	char *rule; /* hit name, or NULL for the list's name */
};

struct code_range {
	uint32_t lo, hi;
};

struct probe {
	pthread_mutex_t lock;
	dns_batch_t *batch; /* probes in flight */
	dns_query_t *q_listed, *q_unlisted;
	long next_ms;
	bool enabled; /* atomic reads */
};

struct dlist {
	char *name;
	int kind;
	char *zone;
	struct code_rule *codes;
	size_t ncodes;
	struct code_range *errors;
	size_t nerrors;
	bool txt;
	bool ipv6;
	unsigned checks;
	char *test_listed, *test_unlisted;
	dnsbl_file_t *file;
	char *file_path;
	struct probe probe;
	log_ratelimit_t error_rl;
	/* per-list statistics for the metrics, atomic */
	uint64_t n_lookups, n_cached, n_listed, n_errors, n_late, n_failed;
};

/* An address or network, IPv4 stored as IPv4-mapped IPv6. */
struct cidr {
	uint8_t a[16];
	unsigned plen;
};

struct dnsbl {
	struct dlist *lists;
	size_t nlists;
	dns_t *res; /* NULL when every list is a local file */
	struct cidr *allow, *trusted;
	size_t nallow, ntrusted;
	bool allow_auth;
	bool skip_private;
	long probe_interval_ms;
	long stats_interval_ms; /* 0: no periodic statistics line */
	long next_stats_ms;     /* atomic */
	long max_uri_domains;
	bool uri_text_domains; /* also host names written without a scheme */
	unsigned kinds;        /* bit per list_kind present */
	size_t max_hit_names;  /* distinct hit names the lists can produce */
	/* statistics, atomic */
	uint64_t n_lookups, n_file, n_listed, n_errors, n_late, n_probes, n_probe_failures;
};

/*
 * One name asked of one list. These records live outside the message
 * arena on purpose: the resolver thread fills them in and may still do
 * so after the message (or the connection) is gone; they are freed with
 * their set.
 */
struct lookup {
	size_t list;
	char subject[DNSBL_QNAME_MAX_BYTES]; /* the address or domain asked about */
	char qname[DNSBL_QNAME_MAX_BYTES];
	char what[WHAT_MAX_BYTES]; /* "client", "helo", "mail from", ... */
	dns_query_t *q;            /* DNS, or NULL when answered locally */
	dnsbl_answer_t local;      /* the file's answer */
	bool skipped;              /* list switched off by its probe */
};

struct lookup_set {
	dns_batch_t *batch;
	struct lookup *v;
	size_t n, cap;
};

struct dnsbl_conn {
	dnsbl_t *d;
	char ip[INET6_ADDRSTRLEN];
	bool have_ip;
	bool allowed;        /* allowlisted or private: no lookups at all */
	bool trusted_client; /* a trusted relay: check its first untrusted hop */
	struct lookup_set conn_set;
	struct lookup_set msg_set;
	msg_t *msg; /* the message msg_set belongs to */
};

static void counter_add(uint64_t *c, uint64_t n)
{
	__atomic_add_fetch(c, n, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ names */

int dnsbl_ip_qname(const char *ip, const char *zone, char *out, size_t out_bytes)
{
	uint8_t a[16];
	bool v4;
	if (!dns_ip_parse(ip, a, &v4))
		return 0;
	int n;
	if (v4) {
		n = snprintf(out, out_bytes, "%u.%u.%u.%u.%s", a[15], a[14], a[13], a[12], zone);
	} else {
		static const char hex[] = "0123456789abcdef";
		char nib[65];
		for (int i = 0; i < 16; i++) {
			nib[4 * i] = hex[a[15 - i] & 0xf];
			nib[4 * i + 1] = '.';
			nib[4 * i + 2] = hex[a[15 - i] >> 4];
			nib[4 * i + 3] = '.';
		}
		nib[64] = '\0';
		n = snprintf(out, out_bytes, "%s%s", nib, zone);
	}
	if (n < 0 || (size_t)n >= out_bytes || (size_t)n >= DNSBL_QNAME_MAX_BYTES - 1)
		return 0;
	return v4 ? 4 : 6;
}

/* The canonical text form of an address (IPv4-mapped shown as IPv4). */
static bool ip_text(const uint8_t a[16], bool v4, char *out, size_t n)
{
	if (v4)
		return inet_ntop(AF_INET, a + 12, out, (socklen_t)n) != NULL;
	return inet_ntop(AF_INET6, a, out, (socklen_t)n) != NULL;
}

/* ------------------------------------------------------------ networks */

static bool parse_cidr(const char *s, struct cidr *c)
{
	char buf[INET6_ADDRSTRLEN + 8];
	if (strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	char *slash = strchr(buf, '/');
	long plen = -1;
	if (slash) {
		*slash = '\0';
		char *e;
		plen = strtol(slash + 1, &e, 10);
		if (*e || slash[1] == '\0' || plen < 0)
			return false;
	}
	bool v4;
	if (!dns_ip_parse(buf, c->a, &v4))
		return false;
	long max = v4 ? 32 : 128;
	if (plen > max)
		return false;
	if (plen < 0)
		plen = max;
	c->plen = (unsigned)(v4 ? plen + 96 : plen);
	return true;
}

static bool cidr_match(const struct cidr *c, const uint8_t a[16])
{
	unsigned full = c->plen / 8, rest = c->plen % 8;
	if (memcmp(c->a, a, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t m = (uint8_t)(0xff << (8 - rest));
	return (c->a[full] & m) == (a[full] & m);
}

static bool in_cidrs(const struct cidr *v, size_t n, const uint8_t a[16])
{
	for (size_t i = 0; i < n; i++)
		if (cidr_match(&v[i], a))
			return true;
	return false;
}

static bool is_private(const uint8_t a[16], bool v4)
{
	static const char *const nets[] = {"0.0.0.0/8",
	                                   "10.0.0.0/8",
	                                   "100.64.0.0/10",
	                                   "127.0.0.0/8",
	                                   "169.254.0.0/16",
	                                   "172.16.0.0/12",
	                                   "192.168.0.0/16",
	                                   "::/127",
	                                   "fc00::/7",
	                                   "fe80::/10",
	                                   NULL};
	(void)v4;
	for (int i = 0; nets[i]; i++) {
		struct cidr c;
		if (parse_cidr(nets[i], &c) && cidr_match(&c, a))
			return true;
	}
	return false;
}

/* ------------------------------------------------------------ configuration */

static bool parse_code(const char *s, uint32_t *out)
{
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1)
		return false;
	*out = ntohl(a.s_addr);
	return true;
}

static bool parse_code_range(const char *s, uint32_t *lo, uint32_t *hi)
{
	char buf[40];
	if (strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	char *dash = strchr(buf, '-');
	if (dash == NULL)
		return parse_code(buf, lo) && (*hi = *lo, true);
	*dash = '\0';
	return parse_code(buf, lo) && parse_code(dash + 1, hi) && *lo <= *hi;
}

static bool valid_rule_name(const char *s)
{
	if (*s == '\0' || strlen(s) >= DNSBL_MAX_NAME_BYTES)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
			return false;
	return true;
}

/* "SCORE[:RULE]" */
/* Sets *out_of_range when the number is there but beyond HITS_MAX_SCORE (see hits.h). */
static bool parse_score(const char *s, double *score, char **rule, bool *out_of_range)
{
	char *e;
	*score = strtod(s, &e);
	if (e == s || !isfinite(*score))
		return false;
	if (fabs(*score) > HITS_MAX_SCORE) {
		*out_of_range = true;
		return false;
	}
	*rule = NULL;
	if (*e == '\0')
		return true;
	if (*e != ':' || !valid_rule_name(e + 1))
		return false;
	*rule = xalloc_strdup(e + 1);
	return true;
}

static void list_free(struct dlist *l)
{
	free(l->name);
	free(l->zone);
	for (size_t i = 0; i < l->ncodes; i++)
		free(l->codes[i].rule);
	free(l->codes);
	free(l->errors);
	free(l->test_listed);
	free(l->test_unlisted);
	free(l->file_path);
	dnsbl_file_free(l->file);
	if (l->probe.batch)
		dns_batch_release(l->probe.batch);
	pthread_mutex_destroy(&l->probe.lock);
}

static bool valid_test_entry(const struct dlist *l, const char *v)
{
	uint8_t a[16];
	bool v4;
	if (l->kind == KIND_IP)
		return dns_ip_parse(v, a, &v4);
	return dns_valid_hostname(v);
}

/*
 * Parses one "dnsbl_list" value into l; errors go to d at file:line. A
 * relative file= is taken from c's base directory (conf_resolve()).
 */
static int parse_list(const conf_t *c, const char *value, const char *file, unsigned line,
                      long check_ms, struct dlist *l, diag_t *d)
{
	char *copy = xalloc_strdup(value);
	char *save = NULL;
	char *tok[3];
	int rc = -1;
	for (int i = 0; i < 3; i++) {
		tok[i] = strtok_r(i == 0 ? copy : NULL, " \t", &save);
		if (tok[i] == NULL) {
			diag_error(
			    d, file, line,
			    "dnsbl_list: expected \"NAME ip|domain|uri ZONE CODE=SCORE...\"");
			goto out;
		}
	}
	if (!valid_rule_name(tok[0])) {
		diag_error(d, file, line, "dnsbl_list: bad list name \"%s\"", tok[0]);
		goto out;
	}
	l->name = xalloc_strdup(tok[0]);
	l->kind = -1;
	for (int k = 0; kind_names[k]; k++)
		if (strcmp(tok[1], kind_names[k]) == 0)
			l->kind = k;
	if (l->kind < 0) {
		diag_error(d, file, line, "dnsbl_list %s: kind \"%s\" is not ip, domain or uri",
		           l->name, tok[1]);
		goto out;
	}
	size_t zl = strlen(tok[2]);
	while (zl > 0 && tok[2][zl - 1] == '.')
		tok[2][--zl] = '\0';
	for (char *p = tok[2]; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (!dns_valid_hostname(tok[2]) || zl > 180) {
		diag_error(d, file, line, "dnsbl_list %s: bad zone \"%s\"", l->name, tok[2]);
		goto out;
	}
	l->zone = xalloc_strdup(tok[2]);
	l->txt = false;
	l->ipv6 = true;
	l->checks = CHECK_MAILFROM | CHECK_HELO | CHECK_FROM;
	int bad = 0;
	char *t;
	while ((t = strtok_r(NULL, " \t", &save)) != NULL) {
		char *eq = strchr(t, '=');
		if (eq == NULL) {
			diag_error(d, file, line, "dnsbl_list %s: \"%s\" is not KEY=VALUE", l->name,
			           t);
			bad++;
			continue;
		}
		*eq = '\0';
		const char *v = eq + 1;
		bool ok = true;
		bool out_of_range = false;
		struct code_rule cr = {0};
		if (isdigit((unsigned char)t[0]) || strcmp(t, "any") == 0 ||
		    strncmp(t, "mask:", 5) == 0) {
			if (strcmp(t, "any") == 0) {
				cr.type = CODE_ANY;
			} else if (strncmp(t, "mask:", 5) == 0) {
				char *e;
				unsigned long m = strtoul(t + 5, &e, 0);
				cr.type = CODE_MASK;
				if (*e == '\0' && t[5] != '\0' && m > 0 && m <= 0xffffffffu)
					cr.lo = (uint32_t)m;
				else
					ok = parse_code(t + 5, &cr.lo) && cr.lo != 0;
			} else {
				ok = parse_code_range(t, &cr.lo, &cr.hi);
				cr.type = cr.lo == cr.hi ? CODE_EXACT : CODE_RANGE;
			}
			if (ok)
				ok = parse_score(v, &cr.score, &cr.rule, &out_of_range);
			if (ok) {
				l->codes =
				    xalloc_realloc(l->codes, (l->ncodes + 1) * sizeof(*l->codes));
				l->codes[l->ncodes++] = cr;
			}
		} else if (strcmp(t, "error") == 0) {
			struct code_range r;
			ok = parse_code_range(v, &r.lo, &r.hi);
			if (ok) {
				l->errors = xalloc_realloc(l->errors, (l->nerrors + 1) * sizeof(r));
				l->errors[l->nerrors++] = r;
			}
		} else if (strcmp(t, "txt") == 0) {
			ok = conf_parse_bool(v, &l->txt) == 0;
		} else if (strcmp(t, "ipv6") == 0) {
			ok = conf_parse_bool(v, &l->ipv6) == 0 && l->kind == KIND_IP;
		} else if (strcmp(t, "test_listed") == 0 || strcmp(t, "test_unlisted") == 0) {
			ok = valid_test_entry(l, v);
			char **slot = t[5] == 'l' ? &l->test_listed : &l->test_unlisted;
			if (ok) {
				free(*slot);
				*slot = xalloc_strdup(v);
			}
		} else if (strcmp(t, "check") == 0) {
			l->checks = 0;
			char *vv = xalloc_strdup(v), *s2 = NULL;
			for (char *w = strtok_r(vv, ",", &s2); w; w = strtok_r(NULL, ",", &s2)) {
				if (strcmp(w, "mailfrom") == 0)
					l->checks |= CHECK_MAILFROM;
				else if (strcmp(w, "helo") == 0)
					l->checks |= CHECK_HELO;
				else if (strcmp(w, "from") == 0)
					l->checks |= CHECK_FROM;
				else
					ok = false;
			}
			free(vv);
			ok = ok && l->checks != 0 && l->kind == KIND_DOMAIN;
		} else if (strcmp(t, "file") == 0) {
			ok = *v != '\0' && l->file_path == NULL;
			if (ok)
				l->file_path = conf_resolve(c, "dnsbl_list", v, file, line, d);
		} else {
			diag_error(d, file, line, "dnsbl_list %s: unknown attribute \"%s\"",
			           l->name, t);
			bad++;
			continue;
		}
		if (!ok) {
			bool wrong_kind = (strcmp(t, "check") == 0 && l->kind != KIND_DOMAIN) ||
			                  (strcmp(t, "ipv6") == 0 && l->kind != KIND_IP);
			if (out_of_range)
				diag_error(
				    d, file, line,
				    "dnsbl_list %s: bad %s=%s (score out of range, -%g to %g)",
				    l->name, t, v, HITS_MAX_SCORE, HITS_MAX_SCORE);
			else
				diag_error(d, file, line, "dnsbl_list %s: bad %s=%s%s", l->name, t,
				           v, wrong_kind ? " (not for this kind of list)" : "");
			bad++;
		}
	}
	if (bad)
		goto out;
	if (l->ncodes == 0) {
		diag_error(d, file, line,
		           "dnsbl_list %s: no return codes (e.g. 127.0.0.2=3 or any=1)", l->name);
		goto out;
	}
	if (l->file_path) {
		l->file = dnsbl_file_open(l->file_path,
		                          l->kind == KIND_IP ? DNSBL_FILE_IP4SET : DNSBL_FILE_DNSET,
		                          check_ms, d);
		if (l->file == NULL) {
			diag_error(d, file, line, "dnsbl_list %s: cannot load %s", l->name,
			           l->file_path);
			goto out;
		}
	}
	rc = 0;
out:
	free(copy);
	return rc;
}

static void read_cidrs(conf_t *c, const char *key, struct cidr **out, size_t *n, diag_t *d)
{
	size_t cnt = conf_count(c, key);
	*out = cnt ? xalloc_calloc(cnt, sizeof(**out)) : NULL;
	*n = 0;
	for (size_t i = 0; i < cnt; i++) {
		const char *file;
		unsigned line;
		const char *v = conf_value_at(c, key, i, &file, &line);
		if (parse_cidr(v, &(*out)[*n]))
			(*n)++;
		else
			diag_error(d, file, line, "%s: \"%s\" is not an address or network", key,
			           v);
	}
}

/* One line with the counters, so errors and late answers show in the logs. */
static void log_stats(const dnsbl_t *d, const char *when)
{
	dnsbl_stats_t st;
	dnsbl_get_stats(d, &st);
	if (st.lookups == 0 && st.probes == 0)
		return;
	log_msg(LOG_L_INFO,
	        "dnsbl: statistics (%s): lookups=%lu listed=%lu errors=%lu late=%lu"
	        " dns_queries=%lu dns_shared=%lu dns_failures=%lu cache_hits=%lu cache_entries=%lu"
	        " cache_bytes=%lu file_lookups=%lu probes=%lu probe_failures=%lu"
	        " lists_disabled=%u/%u",
	        when, (unsigned long)st.lookups, (unsigned long)st.listed,
	        (unsigned long)st.error_answers, (unsigned long)st.late,
	        (unsigned long)st.dns_queries, (unsigned long)st.dns_shared,
	        (unsigned long)st.dns_failures, (unsigned long)st.cache_hits,
	        (unsigned long)st.cache_entries, (unsigned long)st.cache_bytes,
	        (unsigned long)st.file_lookups, (unsigned long)st.probes,
	        (unsigned long)st.probe_failures, st.lists_disabled, st.lists);
}

void dnsbl_release(dnsbl_t *d)
{
	if (d == NULL)
		return;
	log_stats(d, "end of configuration generation");
	for (size_t i = 0; i < d->nlists; i++)
		list_free(&d->lists[i]);
	free(d->lists);
	free(d->allow);
	free(d->trusted);
	dns_unref(d->res);
	free(d);
}

dnsbl_t *dnsbl_load(conf_t *c, dnsbl_t *prev, const ev_env_t *env, diag_t *d)
{
	(void)env;
	size_t errors0 = diag_errors(d);
	dnsbl_t *b = xalloc_calloc(1, sizeof(*b));
	long max_uri, probe_ms, check_ms;
	conf_long(c, "dnsbl_max_uri_domains", 20, 0, 1000, &max_uri, d);
	conf_ms(c, "dnsbl_probe_interval", 600000L, 1000, 7 * 86400000L, &probe_ms, d);
	conf_ms(c, "dnsbl_local_check_interval", 5000, 0, 86400000L, &check_ms, d);
	conf_bool(c, "dnsbl_allow_authenticated", true, &b->allow_auth, d);
	conf_bool(c, "dnsbl_skip_private", true, &b->skip_private, d);
	conf_bool(c, "dnsbl_uri_text_domains", true, &b->uri_text_domains, d);
	conf_ms(c, "dnsbl_stats_interval", 3600000L, 0, 7 * 86400000L, &b->stats_interval_ms, d);
	b->next_stats_ms = dnsbl_now_ms() + b->stats_interval_ms;
	b->probe_interval_ms = probe_ms;
	b->max_uri_domains = max_uri;
	read_cidrs(c, "dnsbl_allow", &b->allow, &b->nallow, d);
	read_cidrs(c, "dnsbl_trusted_relay", &b->trusted, &b->ntrusted, d);

	/*
	 * The generation's shared DNS service (scan.c); loaded here from the
	 * same keys only when dnsbl runs alone (its unit tests).
	 */
	dns_t *res = env && env->dns ? dns_ref(env->dns) : dns_load(c, prev ? prev->res : NULL, d);

	size_t n = conf_count(c, "dnsbl_list");
	b->lists = xalloc_calloc(n ? n : 1, sizeof(*b->lists));
	bool need_dns = false;
	for (size_t i = 0; i < n; i++) {
		const char *file;
		unsigned line;
		const char *v = conf_value_at(c, "dnsbl_list", i, &file, &line);
		struct dlist *l = &b->lists[b->nlists];
		pthread_mutex_init(&l->probe.lock, NULL);
		l->probe.enabled = true;
		if (parse_list(c, v, file, line, check_ms, l, d) < 0) {
			list_free(l);
			memset(l, 0, sizeof(*l));
			continue;
		}
		for (size_t j = 0; j < b->nlists; j++)
			if (strcmp(b->lists[j].name, l->name) == 0)
				diag_error(d, file, line, "dnsbl_list %s: name used twice",
				           l->name);
		b->kinds |= 1u << l->kind;
		b->max_hit_names += l->ncodes + 1;
		need_dns |= l->file == NULL;
		b->nlists++;
	}
	if (diag_errors(d) > errors0 || b->nlists == 0) {
		dns_unref(res);
		dnsbl_release(b);
		return NULL;
	}
	if (need_dns)
		b->res = res;
	else
		dns_unref(res);
	return b;
}

int dnsbl_start(dnsbl_t *b, const ev_env_t *env, diag_t *d)
{
	if (b == NULL || b->res == NULL || env->offline)
		return 0;
	int rc = dns_start(b->res);
	if (rc != 0) {
		diag_error(d, NULL, 0, "dnsbl: cannot start the resolver thread: %s", strerror(rc));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ statistics */

void dnsbl_get_stats(const dnsbl_t *d, dnsbl_stats_t *st)
{
	memset(st, 0, sizeof(*st));
	if (d == NULL)
		return;
	st->lookups = __atomic_load_n(&d->n_lookups, __ATOMIC_RELAXED);
	st->file_lookups = __atomic_load_n(&d->n_file, __ATOMIC_RELAXED);
	st->listed = __atomic_load_n(&d->n_listed, __ATOMIC_RELAXED);
	st->error_answers = __atomic_load_n(&d->n_errors, __ATOMIC_RELAXED);
	st->late = __atomic_load_n(&d->n_late, __ATOMIC_RELAXED);
	st->probes = __atomic_load_n(&d->n_probes, __ATOMIC_RELAXED);
	st->probe_failures = __atomic_load_n(&d->n_probe_failures, __ATOMIC_RELAXED);
	if (d->res) {
		dns_stats_t rs;
		dns_get_stats(d->res, &rs);
		st->dns_queries = rs.queries;
		st->cache_hits = rs.cache_hits;
		st->dns_shared = rs.shared;
		st->dns_failures = rs.failures;
		st->dns_refused = rs.refused;
		st->dns_pending = rs.pending;
		st->cache_entries = rs.cache_entries;
		st->cache_bytes = rs.cache_bytes;
	}
	st->lists = (unsigned)d->nlists;
	for (size_t i = 0; i < d->nlists; i++)
		if (!dnsbl_list_enabled(d, i))
			st->lists_disabled++;
}

static void list_family(metrics_out_t *o, const dnsbl_t *d, const char *name, const char *help,
                        size_t field)
{
	metrics_out_family(o, name, "counter", help);
	for (size_t i = 0; i < d->nlists; i++) {
		const uint64_t *f = (const uint64_t *)((const char *)&d->lists[i] + field);
		metrics_out_value(o, name, "list", d->lists[i].name,
		                  (double)__atomic_load_n(f, __ATOMIC_RELAXED));
	}
}

/* Per list (counters of this generation), then the resolver's (process-wide). */
static void ev_metrics(void *shared, metrics_out_t *o)
{
	const dnsbl_t *d = shared;
	list_family(o, d, "sift_dnsbl_lookups_total", "Lookups asked of each list.",
	            offsetof(struct dlist, n_lookups));
	list_family(o, d, "sift_dnsbl_cache_hits_total", "Lookups answered from the DNS cache.",
	            offsetof(struct dlist, n_cached));
	list_family(o, d, "sift_dnsbl_listings_total", "Lookups that found a listing.",
	            offsetof(struct dlist, n_listed));
	list_family(o, d, "sift_dnsbl_error_codes_total",
	            "Answers with an error code (query refused, over quota), never a listing.",
	            offsetof(struct dlist, n_errors));
	list_family(o, d, "sift_dnsbl_failures_total", "Lookups that failed (SERVFAIL, timeout).",
	            offsetof(struct dlist, n_failed));
	list_family(o, d, "sift_dnsbl_late_total", "Lookups not answered by the message deadline.",
	            offsetof(struct dlist, n_late));
	metrics_out_family(o, "sift_dnsbl_list_up", "gauge",
	                   "1 when the list is in use, 0 when its probe switched it off.");
	for (size_t i = 0; i < d->nlists; i++)
		metrics_out_value(o, "sift_dnsbl_list_up", "list", d->lists[i].name,
		                  dnsbl_list_enabled(d, i) ? 1 : 0);
	dnsbl_stats_t st;
	dnsbl_get_stats(d, &st);
	metrics_out_family(o, "sift_dnsbl_dns_queries_total", "counter",
	                   "Queries sent to the nameservers.");
	metrics_out_value(o, "sift_dnsbl_dns_queries_total", NULL, NULL, (double)st.dns_queries);
	metrics_out_family(o, "sift_dnsbl_dns_pending", "gauge",
	                   "Lookups waiting for answers (at most dns_max_pending).");
	metrics_out_value(o, "sift_dnsbl_dns_pending", NULL, NULL, (double)st.dns_pending);
	metrics_out_family(o, "sift_dnsbl_dns_refused_total", "counter",
	                   "Lookups failed at once because dns_max_pending were waiting.");
	metrics_out_value(o, "sift_dnsbl_dns_refused_total", NULL, NULL, (double)st.dns_refused);
	metrics_out_family(o, "sift_dnsbl_probes_total", "counter", "Test-entry probes sent.");
	metrics_out_value(o, "sift_dnsbl_probes_total", NULL, NULL, (double)st.probes);
	metrics_out_family(o, "sift_dnsbl_probe_failures_total", "counter",
	                   "Probes whose answers were wrong.");
	metrics_out_value(o, "sift_dnsbl_probe_failures_total", NULL, NULL,
	                  (double)st.probe_failures);
	metrics_out_family(o, "sift_dnsbl_cache_entries", "gauge",
	                   "Answers held in the DNS cache.");
	metrics_out_value(o, "sift_dnsbl_cache_entries", NULL, NULL, (double)st.cache_entries);
}

size_t dnsbl_list_count(const dnsbl_t *d)
{
	return d ? d->nlists : 0;
}

const char *dnsbl_list_name(const dnsbl_t *d, size_t i)
{
	return i < dnsbl_list_count(d) ? d->lists[i].name : NULL;
}

bool dnsbl_list_enabled(const dnsbl_t *d, size_t i)
{
	if (i >= dnsbl_list_count(d))
		return false;
	return __atomic_load_n(&d->lists[i].probe.enabled, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ answers */

bool dnsbl_code_is_refusal(uint32_t code)
{
	/*
	 * Outside 127/8 is a resolver's ad page or NXDOMAIN hijack, and
	 * 127.255.255.0/24 is how Spamhaus (and others since) say "refused".
	 */
	return (code >> 24) != 127 || (code & 0xffffff00u) == 0x7fffff00u;
}

static bool code_is_error(const struct dlist *l, uint32_t code)
{
	if (dnsbl_code_is_refusal(code))
		return true;
	for (size_t i = 0; i < l->nerrors; i++)
		if (code >= l->errors[i].lo && code <= l->errors[i].hi)
			return true;
	return false;
}

static bool code_matches(const struct code_rule *r, uint32_t code)
{
	switch (r->type) {
	case CODE_EXACT:
	case CODE_RANGE: return code >= r->lo && code <= r->hi;
	case CODE_MASK: return (code & r->lo) != 0;
	default: return true;
	}
}

static const char *code_text(uint32_t code, char *buf, size_t n)
{
	struct in_addr a = {.s_addr = htonl(code)};
	return inet_ntop(AF_INET, &a, buf, (socklen_t)n);
}

/* The answer codes as "127.0.0.2,127.0.0.4". */
static void codes_text(const dnsbl_answer_t *a, char *buf, size_t n)
{
	size_t o = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < a->ncodes && o + 17 < n; i++) {
		char c[16];
		code_text(a->codes[i], c, sizeof(c));
		o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? "," : "", c);
	}
}

/* A probe's verdict: 1 right, 0 wrong (why says how), -1 no answer. */
static int probe_check(const struct dlist *l, const dnsbl_answer_t *a, bool must_list,
                       const char *entry, char *why, size_t n)
{
	char codes[160];
	if (a->status == DQ_PENDING || (a->status == DQ_FAILED && !must_list))
		return -1;
	if (a->status == DQ_FAILED) {
		/*
		 * c-ares gave up on the entry that must be listed (all tries timed
		 * out, or SERVFAIL): every message would wait its full deadline for
		 * this list and get nothing, so it is switched off like a wrong one.
		 */
		snprintf(why, n,
		         "no answer for test entry %s (nameserver unreachable or zone"
		         " not served?)",
		         entry);
		return 0;
	}
	codes_text(a, codes, sizeof(codes));
	if (must_list) {
		if (a->status != DQ_LISTED) {
			snprintf(why, n, "test entry %s is not listed (resolver blocked?)", entry);
			return 0;
		}
		for (unsigned i = 0; i < a->ncodes; i++)
			if (code_is_error(l, a->codes[i])) {
				snprintf(why, n,
				         "test entry %s answered the error code %s (query refused,"
				         " open resolver or over quota?)",
				         entry, codes);
				return 0;
			}
		return 1;
	}
	if (a->status == DQ_LISTED) {
		snprintf(why, n,
		         "test entry %s must not be listed but answered %s (answers \"listed\" for"
		         " everything: over quota or blocked?)",
		         entry, codes);
		return 0;
	}
	return 1;
}

static bool probe_qname(const struct dlist *l, const char *entry, char *out, size_t n)
{
	if (l->kind == KIND_IP)
		return dnsbl_ip_qname(entry, l->zone, out, n) != 0;
	int w = snprintf(out, n, "%s.%s", entry, l->zone);
	return w > 0 && (size_t)w < n;
}

/*
 * A finished lookup's answers as the lists read them: the A codes and
 * the listing's text (control characters shown as '?', cut to fit).
 */
static bool query_result(dns_batch_t *b, const dns_query_t *q, dnsbl_answer_t *out, int *source)
{
	dns_answer_t *a = xalloc_malloc(2 * sizeof(*a)), *t = a + 1;
	int src = DNS_SRC_NET;
	bool done = dns_result(b, q, a, t, &src);
	if (done) {
		memset(out, 0, sizeof(*out));
		out->status = a->status == DNS_NOERROR                               ? DQ_LISTED
		              : a->status == DNS_NXDOMAIN || a->status == DNS_NODATA ? DQ_NOT_LISTED
		                                                                     : DQ_FAILED;
		for (unsigned i = 0; i < a->nrr && out->ncodes < DNSBL_MAX_CODES; i++) {
			const unsigned char *rr = (const unsigned char *)dns_answer_rr(a, i, NULL);
			out->codes[out->ncodes++] = (uint32_t)rr[0] << 24 | (uint32_t)rr[1] << 16 |
			                            (uint32_t)rr[2] << 8 | rr[3];
		}
		size_t len;
		const char *txt = t->status == DNS_NOERROR ? dns_answer_rr(t, 0, &len) : NULL;
		if (txt != NULL) {
			size_t n = 0;
			for (size_t i = 0; i < len && n + 1 < sizeof(out->txt); i++) {
				unsigned char ch = (unsigned char)txt[i];
				out->txt[n++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
			}
			out->txt[n] = '\0';
			out->has_txt = true;
		}
		if (source)
			*source = src == DNS_SRC_CACHE ? DQ_SRC_CACHE : DQ_SRC_DNS;
	}
	free(a);
	return done;
}

/*
 * Probing is driven by the lookups themselves (no timer thread): the
 * first lookup after the interval sends the test queries, a later one
 * reads their answers. Only one thread at a time does either (trylock),
 * the others go on without waiting.
 */
static void probe_tick(dnsbl_t *d, struct dlist *l)
{
	if (l->file != NULL || d->res == NULL || (!l->test_listed && !l->test_unlisted))
		return;
	struct probe *p = &l->probe;
	if (pthread_mutex_trylock(&p->lock) != 0)
		return;
	long now = dnsbl_now_ms();
	if (p->batch != NULL && dns_batch_wait(p->batch, 0)) {
		dnsbl_answer_t a;
		char why[300] = "";
		int right = 1, r;
		if (p->q_listed && query_result(p->batch, p->q_listed, &a, NULL)) {
			r = probe_check(l, &a, true, l->test_listed, why, sizeof(why));
			right = r < right ? r : right;
		}
		if (p->q_unlisted && right != 0 &&
		    query_result(p->batch, p->q_unlisted, &a, NULL)) {
			r = probe_check(l, &a, false, l->test_unlisted, why, sizeof(why));
			right = r < right ? r : right;
		}
		bool enabled = __atomic_load_n(&p->enabled, __ATOMIC_RELAXED);
		if (right == 0) {
			counter_add(&d->n_probe_failures, 1);
			if (enabled)
				log_msg(LOG_L_ERR,
				        "dnsbl: list %s (%s) switched OFF: %s; it stays off until"
				        " its test answers are right",
				        l->name, l->zone, why);
			__atomic_store_n(&p->enabled, false, __ATOMIC_RELAXED);
		} else if (right == 1 && !enabled) {
			log_msg(LOG_L_NOTICE,
			        "dnsbl: list %s (%s) switched back on: test answers"
			        " are right again",
			        l->name, l->zone);
			__atomic_store_n(&p->enabled, true, __ATOMIC_RELAXED);
		}
		dns_batch_release(p->batch);
		p->batch = NULL;
		p->q_listed = p->q_unlisted = NULL;
		enabled = __atomic_load_n(&p->enabled, __ATOMIC_RELAXED);
		long every = enabled || d->probe_interval_ms < DISABLED_PROBE_MAX_MS
		                 ? d->probe_interval_ms
		                 : DISABLED_PROBE_MAX_MS;
		p->next_ms = now + every;
	} else if (p->batch == NULL && now >= p->next_ms) {
		char qn[DNSBL_QNAME_MAX_BYTES];
		p->batch = dns_batch_new();
		if (l->test_listed && probe_qname(l, l->test_listed, qn, sizeof(qn))) {
			p->q_listed = dns_submit(d->res, p->batch, qn, DNS_T_A, 0, DNS_F_NOCACHE);
			counter_add(&d->n_probes, 1);
		}
		if (l->test_unlisted && probe_qname(l, l->test_unlisted, qn, sizeof(qn))) {
			p->q_unlisted = dns_submit(d->res, p->batch, qn, DNS_T_A, 0, DNS_F_NOCACHE);
			counter_add(&d->n_probes, 1);
		}
		p->next_ms = now + d->probe_interval_ms;
	}
	pthread_mutex_unlock(&p->lock);
}

/* ------------------------------------------------------------ lookups */

static void set_reset(struct lookup_set *s)
{
	dns_batch_release(s->batch);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static void add_lookup(dnsbl_t *d, struct lookup_set *s, size_t li, const char *subject,
                       const char *what)
{
	struct dlist *l = &d->lists[li];
	for (size_t i = 0; i < s->n; i++) {
		struct lookup *k = &s->v[i];
		if (k->list == li && strcmp(k->subject, subject) == 0) {
			/* The same name for another reason: one query, both reasons shown. */
			if (strstr(k->what, what) == NULL) {
				size_t o = strlen(k->what);
				snprintf(k->what + o, sizeof(k->what) - o, "+%s", what);
			}
			return;
		}
	}
	char qname[DNSBL_QNAME_MAX_BYTES];
	if (l->kind == KIND_IP) {
		if (dnsbl_ip_qname(subject, l->zone, qname, sizeof(qname)) == 0)
			return;
	} else {
		int w = snprintf(qname, sizeof(qname), "%s.%s", subject, l->zone);
		if (w < 0 || (size_t)w >= sizeof(qname) - 1)
			return;
	}
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 8;
		s->v = xalloc_realloc(s->v, s->cap * sizeof(*s->v));
	}
	struct lookup *k = &s->v[s->n++];
	memset(k, 0, sizeof(*k));
	k->list = li;
	snprintf(k->subject, sizeof(k->subject), "%s", subject);
	snprintf(k->qname, sizeof(k->qname), "%s", qname);
	snprintf(k->what, sizeof(k->what), "%s", what);

	probe_tick(d, l);
	if (!__atomic_load_n(&l->probe.enabled, __ATOMIC_RELAXED)) {
		k->skipped = true;
		return;
	}
	counter_add(&d->n_lookups, 1);
	counter_add(&l->n_lookups, 1);
	if (l->file) {
		counter_add(&d->n_file, 1);
		uint32_t code;
		k->local.status = DQ_NOT_LISTED;
		if (dnsbl_file_lookup(l->file, subject, &code, k->local.txt,
		                      sizeof(k->local.txt))) {
			k->local.status = DQ_LISTED;
			k->local.ncodes = 1;
			k->local.codes[0] = code;
			k->local.has_txt = l->txt && k->local.txt[0] != '\0';
		}
		return;
	}
	if (s->batch == NULL)
		s->batch = dns_batch_new();
	k->q = dns_submit(d->res, s->batch, qname, DNS_T_A, l->txt ? DNS_T_TXT : 0, 0);
}

/* Starts the lookups of an address in every ip list. */
static void lookup_ip(dnsbl_t *d, struct lookup_set *s, const char *ip, const char *what)
{
	uint8_t a[16];
	bool v4;
	if (!dns_ip_parse(ip, a, &v4))
		return;
	char text[INET6_ADDRSTRLEN];
	if (!ip_text(a, v4, text, sizeof(text)))
		return;
	for (size_t i = 0; i < d->nlists; i++) {
		struct dlist *l = &d->lists[i];
		if (l->kind != KIND_IP || (!v4 && (!l->ipv6 || l->file)))
			continue; /* ip4set files hold IPv4 only */
		add_lookup(d, s, i, text, what);
	}
}

static void lookup_domain(dnsbl_t *d, struct lookup_set *s, int kind, unsigned check,
                          const char *host, const char *what)
{
	char reg[DNSBL_QNAME_MAX_BYTES];
	if (dns_registered_domain(host, reg, sizeof(reg)) == NULL)
		return;
	for (size_t i = 0; i < d->nlists; i++) {
		struct dlist *l = &d->lists[i];
		if (l->kind == kind && (kind != KIND_DOMAIN || (l->checks & check)))
			add_lookup(d, s, i, reg, what);
	}
}

/* The domain of an address ("a@b.example" or "Name <a@b.example>"), into out. */
static const char *addr_domain(const char *s, char *out, size_t n)
{
	if (s == NULL)
		return NULL;
	const char *lt = strrchr(s, '<');
	if (lt)
		s = lt + 1;
	const char *at = NULL;
	for (const char *p = s; *p && *p != '>'; p++)
		if (*p == '@')
			at = p;
	if (at == NULL)
		return NULL;
	size_t o = 0;
	for (const char *p = at + 1; *p && o + 1 < n; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '>' || c == ' ' || c == '\t' || c == '\n' || c == ')' || c == ',' ||
		    c == ';' || c == '(' || c == '"')
			break;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return o ? out : NULL;
}

/*
 * The first hop not among the trusted relays, walking Received: fields
 * from the top. start is the client (a trusted relay) or NULL when the
 * client is unknown (a saved message in `sift check`: the topmost field
 * recorded the client then). A field recording a connection from the
 * address in hand is the receiving MTA's own and is stepped over.
 */
static bool untrusted_hop(const dnsbl_t *d, msg_t *m, const char *start, char *out, size_t n)
{
	char cur[INET6_ADDRSTRLEN + 8] = "";
	uint8_t a[16];
	bool v4;
	if (start)
		snprintf(cur, sizeof(cur), "%s", start);
	const msg_hop_t *hops;
	size_t nhops = msg_received(m, &hops); /* the chain, parsed once per message */
	for (size_t i = 0; i < RECEIVED_MAX_HOPS; i++) {
		if (cur[0] && dns_ip_parse(cur, a, &v4) && !in_cidrs(d->trusted, d->ntrusted, a))
			break;
		if (i >= nhops || hops[i].ip == NULL)
			return false;
		if (strcmp(hops[i].ip, cur) != 0)
			snprintf(cur, sizeof(cur), "%s", hops[i].ip);
	}
	if (!cur[0] || !dns_ip_parse(cur, a, &v4) || in_cidrs(d->trusted, d->ntrusted, a))
		return false;
	if (in_cidrs(d->allow, d->nallow, a) || (d->skip_private && is_private(a, v4)))
		return false;
	snprintf(out, n, "%s", cur);
	return true;
}

/* ------------------------------------------------------------ evidence hooks */

static void *ev_load(conf_t *c, void *prev, const ev_env_t *env, diag_t *d)
{
	return dnsbl_load(c, prev, env, d);
}

static int ev_start(void *shared, const ev_env_t *env, diag_t *d)
{
	return dnsbl_start(shared, env, d);
}

static void ev_release(void *shared)
{
	dnsbl_release(shared);
}

static void conn_set_client(struct dnsbl_conn *c, const char *ip)
{
	dnsbl_t *d = c->d;
	uint8_t a[16];
	bool v4;
	if (ip == NULL || !dns_ip_parse(ip, a, &v4) || !ip_text(a, v4, c->ip, sizeof(c->ip)))
		return;
	c->have_ip = true;
	c->allowed = in_cidrs(d->allow, d->nallow, a) || (d->skip_private && is_private(a, v4));
	c->trusted_client = in_cidrs(d->trusted, d->ntrusted, a);
	if (c->trusted_client)
		c->allowed = false; /* the hop behind it decides */
	if (!c->allowed && !c->trusted_client && (d->kinds & (1u << KIND_IP)))
		lookup_ip(d, &c->conn_set, c->ip, "client");
}

static void *ev_conn_begin(void *shared, const ev_conn_info_t *ci)
{
	struct dnsbl_conn *c = xalloc_calloc(1, sizeof(*c));
	c->d = shared;
	conn_set_client(c, ci ? ci->client_ip : NULL);
	return c;
}

static bool skip_message(const struct dnsbl_conn *c, msg_t *m)
{
	return c->allowed || (c->d->allow_auth && msg_auth(m) != NULL && *msg_auth(m) != '\0');
}

static void envelope_lookups(struct dnsbl_conn *c, msg_t *m)
{
	dnsbl_t *d = c->d;
	set_reset(&c->msg_set);
	c->msg = m;
	if (skip_message(c, m) || !(d->kinds & (1u << KIND_DOMAIN)))
		return;
	char dom[DNSBL_QNAME_MAX_BYTES];
	if (addr_domain(msg_mail_from(m), dom, sizeof(dom)))
		lookup_domain(d, &c->msg_set, KIND_DOMAIN, CHECK_MAILFROM, dom, "mail from");
	/* A trusted relay's HELO names the relay, not the sender. */
	if (!c->trusted_client && msg_helo(m))
		lookup_domain(d, &c->msg_set, KIND_DOMAIN, CHECK_HELO, msg_helo(m), "helo");
}

static void ev_envelope(void *shared, void *conn, msg_t *m)
{
	(void)shared;
	if (conn)
		envelope_lookups(conn, m);
}

struct agg {
	const char *name;
	double score;
	const char *detail;
	const char *desc;
	unsigned ndetail; /* listings named in detail */
	unsigned more;    /* listings beyond AGG_DETAIL_MAX, only counted */
};

/*
 * Listings named in one hit's detail. Every listing used to be joined in
 * (a copy of the whole string per listing: quadratic in the URI domains
 * of a message, ~100 MB of arena for 1000 listed domains).
 */
#define AGG_DETAIL_MAX 8

/*
 * Keeps the highest score per hit name (a listing counts once, however
 * many names of the message are listed), with every listing's detail.
 */
static void agg_add(arena_t *ar, struct agg *v, size_t *n, size_t cap, const char *name,
                    double score, const char *desc, const char *detail)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(v[i].name, name) == 0) {
			if (fabs(score) > fabs(v[i].score)) {
				/* At most once per distinct score of the name: still bounded. */
				v[i].score = score;
				v[i].desc = desc;
				v[i].detail = arena_sprintf(ar, "%s; %s", detail, v[i].detail);
				v[i].ndetail++;
			} else if (v[i].ndetail >= AGG_DETAIL_MAX) {
				v[i].more++;
			} else {
				v[i].detail = arena_sprintf(ar, "%s; %s", v[i].detail, detail);
				v[i].ndetail++;
			}
			return;
		}
	if (*n < cap)
		v[(*n)++] = (struct agg){name, score, detail, desc, 1, 0};
}

static const char *source_text(arena_t *a, const struct dlist *l, int source)
{
	if (source == DQ_SRC_FILE)
		return arena_sprintf(a, "file %s", l->file_path);
	return source == DQ_SRC_CACHE ? "dns (cached)" : "dns";
}

/* Returns how many lookups had no usable answer (late, failed or an error code). */
static size_t judge_set(dnsbl_t *d, struct lookup_set *s, hits_t *h, const ev_score_ctx_t *ctx,
                        struct agg *agg, size_t *nagg, size_t cap)
{
	arena_t *ar = hits_arena(h);
	size_t unanswered = 0;
	for (size_t i = 0; i < s->n; i++) {
		const struct lookup *k = &s->v[i];
		struct dlist *l = &d->lists[k->list];
		dnsbl_answer_t a;
		int source = DQ_SRC_FILE;
		if (k->skipped) {
			if (ctx->explain)
				hits_note(h, "dnsbl",
				          "%s: %s %s not asked: the list is switched off (wrong"
				          " test answers)",
				          l->name, k->what, k->subject);
			continue;
		}
		if (k->q == NULL) {
			a = k->local;
		} else if (!query_result(s->batch, k->q, &a, &source)) {
			counter_add(&d->n_late, 1);
			counter_add(&l->n_late, 1);
			unanswered++;
			if (ctx->explain)
				hits_note(h, "dnsbl", "%s: %s %s (%s): no answer by the deadline",
				          l->name, k->what, k->subject, k->qname);
			continue;
		}
		const char *src = source_text(ar, l, source);
		if (source == DQ_SRC_CACHE)
			counter_add(&l->n_cached, 1);
		if (a.status == DQ_FAILED) {
			counter_add(&l->n_failed, 1);
			unanswered++;
			if (ctx->explain)
				hits_note(h, "dnsbl", "%s: %s %s (%s): lookup failed via %s",
				          l->name, k->what, k->subject, k->qname, src);
			continue;
		}
		if (a.status != DQ_LISTED) {
			if (ctx->explain)
				hits_note(h, "dnsbl", "%s: %s %s not listed (%s via %s)", l->name,
				          k->what, k->subject, k->qname, src);
			continue;
		}
		char codes[160];
		codes_text(&a, codes, sizeof(codes));
		bool any_error = false, listed = false;
		double listed_score = 0;
		for (unsigned j = 0; j < a.ncodes; j++) {
			uint32_t code = a.codes[j];
			char ct[16];
			code_text(code, ct, sizeof(ct));
			if (code_is_error(l, code)) {
				any_error = true;
				continue;
			}
			for (size_t r = 0; r < l->ncodes; r++) {
				const struct code_rule *cr = &l->codes[r];
				if (!code_matches(cr, code))
					continue;
				listed = true;
				const char *name = arena_strdup(ar, cr->rule ? cr->rule : l->name);
				const char *desc =
				    arena_sprintf(ar, "%s: listed in %s", l->name, l->zone);
				const char *detail =
				    arena_sprintf(ar, "%s %s: %s -> %s via %s%s%s%s", k->what,
				                  k->subject, k->q ? k->qname : k->subject, ct, src,
				                  a.has_txt ? " txt=\"" : "",
				                  a.has_txt ? a.txt : "", a.has_txt ? "\"" : "");
				agg_add(ar, agg, nagg, cap, name, cr->score, desc, detail);
				if (cr->score > listed_score)
					listed_score = cr->score;
			}
		}
		if (listed) {
			counter_add(&d->n_listed, 1);
			counter_add(&l->n_listed, 1);
		}
		/* The operator's TXT text explains a rejection to the sender. */
		if (listed && a.has_txt)
			hits_offer_reason(h, listed_score, a.txt);
		if (any_error) {
			counter_add(&d->n_errors, 1);
			counter_add(&l->n_errors, 1);
			unsigned lost = 0;
			if (log_ratelimit(&l->error_rl, ERROR_LOG_BURST, ERROR_LOG_WINDOW_S, &lost))
				log_msg(
				    LOG_L_ERR,
				    "dnsbl: list %s answered %s for %s: an ERROR code, not a"
				    " listing (query refused, open/public resolver or over"
				    " quota?) - check the nameserver setup%s",
				    l->name, codes, k->qname,
				    lost ? arena_sprintf(ar, " (%u similar lines suppressed)", lost)
				         : "");
			hits_note(h, "dnsbl", "%s: %s %s: error answer %s (%s via %s), not counted",
			          l->name, k->what, k->subject, codes, k->qname, src);
			unanswered++;
		} else if (!listed && ctx->explain) {
			hits_note(h, "dnsbl", "%s: %s %s answered %s, a code no rule scores",
			          l->name, k->what, k->subject, codes);
		}
	}
	return unanswered;
}

/*
 * A list that did not answer by the deadline, or failed, degrades the
 * verdict (EV_DEGRADED), never fails it: DNS is an outside service.
 */
static ev_status_t ev_score(void *shared, void *conn, msg_t *m, const mime_t *mi, hits_t *h,
                            const ev_score_ctx_t *ctx)
{
	struct dnsbl_conn *c = conn;
	dnsbl_t *d = shared;
	if (c == NULL || d == NULL)
		return EV_OK;
	long now = dnsbl_now_ms(), next = __atomic_load_n(&d->next_stats_ms, __ATOMIC_RELAXED);
	if (d->stats_interval_ms > 0 && now >= next &&
	    __atomic_compare_exchange_n(&d->next_stats_ms, &next, now + d->stats_interval_ms, false,
	                                __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		log_stats(d, "periodic");
	if (c->msg != m)
		envelope_lookups(c, m); /* envelope() was not called (e.g. `sift check`) */
	if (!c->have_ip && msg_client_ip(m))
		conn_set_client(c, msg_client_ip(m));
	if (skip_message(c, m)) {
		if (ctx->explain)
			hits_note(h, "dnsbl", "no lookups: %s",
			          c->allowed ? "client allowlisted or private" : "authenticated");
		set_reset(&c->msg_set);
		c->msg = NULL;
		return EV_OK;
	}
	char dom[DNSBL_QNAME_MAX_BYTES];
	if ((c->trusted_client || !c->have_ip) && (d->kinds & (1u << KIND_IP))) {
		char hop[INET6_ADDRSTRLEN + 8];
		if (untrusted_hop(d, m, c->have_ip ? c->ip : NULL, hop, sizeof(hop)))
			lookup_ip(d, &c->msg_set, hop, "received hop");
	}
	if (d->kinds & (1u << KIND_DOMAIN)) {
		if (addr_domain(msg_header_get(m, "From", 0), dom, sizeof(dom)))
			lookup_domain(d, &c->msg_set, KIND_DOMAIN, CHECK_FROM, dom, "from");
	}
	if (mi && (d->kinds & (1u << KIND_URI))) {
		size_t asked = 0;
		char seen_last[DNSBL_QNAME_MAX_BYTES] = "";
		/* the links' hosts, those of links inside them, then names written bare */
		size_t nl = mime_lookup_domain_count(mi),
		       nt = d->uri_text_domains ? mime_text_domain_count(mi) : 0;
		for (size_t i = 0; i < nl + nt && (long)asked < d->max_uri_domains; i++) {
			char reg[DNSBL_QNAME_MAX_BYTES];
			const char *host =
			    i < nl ? mime_lookup_domain(mi, i) : mime_text_domain(mi, i - nl);
			if (i >= nl && !dns_tld_known(host))
				continue; /* "Mr.Smith", "index.html": not a name at all */
			if (dns_registered_domain(host, reg, sizeof(reg)) == NULL ||
			    strcmp(reg, seen_last) == 0)
				continue;
			size_t before = c->msg_set.n;
			lookup_domain(d, &c->msg_set, KIND_URI, 0, reg, "uri");
			if (c->msg_set.n != before)
				asked++;
			snprintf(seen_last, sizeof(seen_last), "%s", reg);
		}
	}
	/* One deadline for everything: each wait ends at the same instant. */
	if (c->conn_set.batch)
		dns_batch_wait(c->conn_set.batch, ctx->deadline_ms);
	if (c->msg_set.batch)
		dns_batch_wait(c->msg_set.batch, ctx->deadline_ms);

	size_t cap = d->max_hit_names;
	struct agg *agg = arena_zalloc(hits_arena(h), cap * sizeof(*agg));
	size_t nagg = 0;
	size_t unanswered = judge_set(d, &c->conn_set, h, ctx, agg, &nagg, cap);
	unanswered += judge_set(d, &c->msg_set, h, ctx, agg, &nagg, cap);
	for (size_t i = 0; i < nagg; i++)
		hits_add(h, "dnsbl", agg[i].name, agg[i].score, agg[i].desc,
		         agg[i].more ? arena_sprintf(hits_arena(h), "%s; and %u more",
		                                     agg[i].detail, agg[i].more)
		                     : agg[i].detail);
	set_reset(&c->msg_set);
	c->msg = NULL;
	return unanswered > 0 ? EV_DEGRADED : EV_OK;
}

static void ev_verdict(void *shared, void *conn, msg_t *m, const mime_t *mi, const hits_t *h,
                       double score, int action)
{
	/* Nothing to learn: lists are someone else's data. */
	(void)shared, (void)conn, (void)m, (void)mi, (void)h, (void)score, (void)action;
}

static void ev_conn_end(void *shared, void *conn)
{
	(void)shared;
	struct dnsbl_conn *c = conn;
	if (c == NULL)
		return;
	set_reset(&c->conn_set);
	set_reset(&c->msg_set);
	free(c);
}

const evidence_ops_t dnsbl_evidence = {
    .name = "dnsbl",
    .load = ev_load,
    .start = ev_start,
    .release = ev_release,
    .conn_begin = ev_conn_begin,
    .envelope = ev_envelope,
    .score = ev_score,
    .verdict = ev_verdict,
    .conn_end = ev_conn_end,
    .metrics = ev_metrics,
};
