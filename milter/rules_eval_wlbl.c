/*
 * rules_eval_wlbl.c - SpamAssassin's welcome- and blocklists by address
 * (WLBLEval): the welcomelist_from, blocklist_from, welcomelist_to,
 * blocklist_to, more_spam_to and all_spam_to directives (with their old
 * whitelist/blacklist names and the un... forms), blocklist_uri_host and
 * welcomelist_uri_host, and the tests that look the message's sender and
 * recipient addresses, and its URIs' hosts, up in them.
 */
#include <ctype.h>
#include <stdio.h>

#include "rules_int.h"

enum { WL_FROM, BL_FROM, WL_TO, BL_TO, MORE_SPAM_TO, ALL_SPAM_TO, WLBL_N };

enum { HOST_BLOCK, HOST_WELCOME, HOST_N };

struct host_entry {
	char *host;  /* lower-case domain or address */
	bool listed; /* false for a "!host" exception */
};

struct rules_wlbl {
	char **v[WLBL_N]; /* lower-case patterns: * any run, ? one byte */
	size_t n[WLBL_N], cap[WLBL_N];
	/* blocklist_uri_host, welcomelist_uri_host */
	struct host_entry *h[HOST_N];
	size_t nh[HOST_N], caph[HOST_N];
};

static const struct {
	const char *name;
	int list;
} host_directives[] = {
    {"blocklist_uri_host", HOST_BLOCK},
    {"blacklist_uri_host", HOST_BLOCK},
    {"welcomelist_uri_host", HOST_WELCOME},
    {"whitelist_uri_host", HOST_WELCOME},
};

static int host_directive(rules_t *r, const char *dir, const char *rest)
{
	for (size_t i = 0; i < sizeof(host_directives) / sizeof(host_directives[0]); i++) {
		if (strcmp(dir, host_directives[i].name) != 0)
			continue;
		if (r->wlbl == NULL)
			r->wlbl = xalloc_calloc(1, sizeof(*r->wlbl));
		struct rules_wlbl *w = r->wlbl;
		int l = host_directives[i].list;
		for (const char *p = rest; *p;) {
			while (*p == ' ' || *p == '\t')
				p++;
			size_t n = strcspn(p, " \t");
			if (n == 0)
				break;
			bool listed = *p != '!';
			char *host = xalloc_strndup(p + !listed, n - !listed);
			for (char *q = host; *q; q++)
				*q = (char)tolower((unsigned char)*q);
			p += n;
			bool found = false;
			for (size_t k = 0; k < w->nh[l] && !found; k++)
				if (strcmp(w->h[l][k].host, host) == 0) {
					w->h[l][k].listed = listed; /* a later line wins */
					found = true;
				}
			if (found) {
				free(host);
				continue;
			}
			if (w->nh[l] == w->caph[l]) {
				w->caph[l] = w->caph[l] ? w->caph[l] * 2 : 16;
				w->h[l] = xalloc_realloc(w->h[l], w->caph[l] * sizeof(*w->h[l]));
			}
			w->h[l][w->nh[l]++] = (struct host_entry){host, listed};
		}
		return 1;
	}
	return 0;
}

static const struct {
	const char *name;
	int list;
	bool remove;
} directives[] = {
    {"welcomelist_from", WL_FROM, false},  {"whitelist_from", WL_FROM, false},
    {"unwelcomelist_from", WL_FROM, true}, {"unwhitelist_from", WL_FROM, true},
    {"blocklist_from", BL_FROM, false},    {"blacklist_from", BL_FROM, false},
    {"unblocklist_from", BL_FROM, true},   {"unblacklist_from", BL_FROM, true},
    {"welcomelist_to", WL_TO, false},      {"whitelist_to", WL_TO, false},
    {"blocklist_to", BL_TO, false},        {"blacklist_to", BL_TO, false},
    {"more_spam_to", MORE_SPAM_TO, false}, {"all_spam_to", ALL_SPAM_TO, false},
};

/* 1: handled; 0: not a directive of this family. */
int rules_wlbl_directive(rules_t *r, const char *dir, const char *rest)
{
	if (host_directive(r, dir, rest))
		return 1;
	for (size_t i = 0; i < sizeof(directives) / sizeof(directives[0]); i++) {
		if (strcmp(dir, directives[i].name) != 0)
			continue;
		if (r->wlbl == NULL)
			r->wlbl = xalloc_calloc(1, sizeof(*r->wlbl));
		struct rules_wlbl *w = r->wlbl;
		int l = directives[i].list;
		for (const char *p = rest; *p;) {
			while (*p == ' ' || *p == '\t')
				p++;
			size_t n = strcspn(p, " \t");
			if (n == 0)
				break;
			char *pat = xalloc_strndup(p, n);
			for (char *q = pat; *q; q++)
				*q = (char)tolower((unsigned char)*q);
			p += n;
			if (directives[i].remove) {
				for (size_t k = 0; k < w->n[l]; k++)
					if (strcmp(w->v[l][k], pat) == 0) {
						free(w->v[l][k]);
						w->v[l][k] = w->v[l][--w->n[l]];
						break;
					}
				free(pat);
				continue;
			}
			if (w->n[l] == w->cap[l]) {
				w->cap[l] = w->cap[l] ? w->cap[l] * 2 : 16;
				w->v[l] = xalloc_realloc(w->v[l], w->cap[l] * sizeof(char *));
			}
			w->v[l][w->n[l]++] = pat;
		}
		return 1;
	}
	return 0;
}

void rules_wlbl_free(struct rules_wlbl *w)
{
	if (w == NULL)
		return;
	for (int l = 0; l < WLBL_N; l++) {
		for (size_t k = 0; k < w->n[l]; k++)
			free(w->v[l][k]);
		free(w->v[l]);
	}
	for (int l = 0; l < HOST_N; l++) {
		for (size_t k = 0; k < w->nh[l]; k++)
			free(w->h[l][k].host);
		free(w->h[l]);
	}
	free(w);
}

/* SpamAssassin turns * into .* and ? into . and anchors both ends. */
static bool glob_all(const char *pat, const char *s)
{
	if (*pat == '\0')
		return *s == '\0';
	if (*pat == '*') {
		while (pat[1] == '*')
			pat++;
		for (const char *t = s;; t++) {
			if (glob_all(pat + 1, t))
				return true;
			if (*t == '\0')
				return false;
		}
	}
	if (*s == '\0')
		return false;
	if (*pat == '?' || *pat == tolower((unsigned char)*s))
		return glob_all(pat + 1, s + 1);
	return false;
}

static bool listed(const struct rules_wlbl *w, int l, const char *addr)
{
	for (size_t k = 0; w && k < w->n[l]; k++)
		if (glob_all(w->v[l][k], addr))
			return true;
	return false;
}

static bool any_listed(struct rules_evalenv *e, int l, const char *const *fields, size_t nf)
{
	for (size_t f = 0; f < nf; f++) {
		const char *v;
		for (size_t k = 0; (v = msg_header_get(e->m, fields[f], k)) != NULL; k++) {
			const char **list;
			size_t n = rules_eval_addrs(e->a, mime_decode_header(e->a, v), &list);
			for (size_t i = 0; i < n; i++)
				if (listed(e->r->wlbl, l, list[i]))
					return true;
		}
	}
	return false;
}

/* SpamAssassin's all_from_addrs: Resent-From when present, else the sender fields. */
static bool from_listed(struct rules_evalenv *e, int l)
{
	if (e->r->wlbl == NULL || e->r->wlbl->n[l] == 0)
		return false;
	const char *rf = msg_header_get(e->m, "Resent-From", 0);
	if (rf != NULL) {
		const char **list;
		return rules_eval_addrs(e->a, mime_decode_header(e->a, rf), &list) > 0 &&
		       listed(e->r->wlbl, l, list[0]);
	}
	static const char *const fields[] = {"From", "Envelope-Sender", "Resent-Sender",
	                                     "X-Envelope-From"};
	if (any_listed(e, l, fields, sizeof(fields) / sizeof(fields[0])))
		return true;
	const char *env = rules_eval_envelope_from(e);
	return env != NULL && listed(e->r->wlbl, l, env);
}

/* SpamAssassin's all_to_addrs, plus the SMTP recipients when Sift has them. */
static bool to_listed(struct rules_evalenv *e, int l)
{
	if (e->r->wlbl == NULL || e->r->wlbl->n[l] == 0)
		return false;
	static const char *const fields[] = {"To",
	                                     "Apparently-To",
	                                     "Delivered-To",
	                                     "Envelope-Recipients",
	                                     "Apparently-Resent-To",
	                                     "X-Envelope-To",
	                                     "Envelope-To",
	                                     "X-Delivered-To",
	                                     "X-Original-To",
	                                     "X-Rcpt-To",
	                                     "X-Real-To",
	                                     "Cc",
	                                     "Resent-To",
	                                     "Resent-Cc"};
	if (any_listed(e, l, fields, sizeof(fields) / sizeof(fields[0])))
		return true;
	for (size_t i = 0; i < msg_rcpt_count(e->m); i++) {
		const char **list;
		if (rules_eval_addrs(e->a, msg_rcpt(e->m, i), &list) > 0 &&
		    listed(e->r->wlbl, l, list[0]))
			return true;
	}
	return false;
}

#define FROM_TEST(fn, list)                                                                        \
	static long fn(struct rules_evalenv *e, const struct rule *ru)                             \
	{                                                                                          \
		(void)ru;                                                                          \
		return from_listed(e, list);                                                       \
	}
#define TO_TEST(fn, list)                                                                          \
	static long fn(struct rules_evalenv *e, const struct rule *ru)                             \
	{                                                                                          \
		(void)ru;                                                                          \
		return to_listed(e, list);                                                         \
	}

FROM_TEST(from_in_welcomelist, WL_FROM)
FROM_TEST(from_in_blocklist, BL_FROM)
TO_TEST(to_in_welcomelist, WL_TO)
TO_TEST(to_in_blocklist, BL_TO)
TO_TEST(to_in_more_spam, MORE_SPAM_TO)
TO_TEST(to_in_all_spam, ALL_SPAM_TO)

/* The host of a URI, lower-case, in buf ("" for mailto: and when there is none). */
static void uri_host(const char *u, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (strncasecmp(u, "mailto:", 7) == 0)
		return;
	const char *p = strstr(u, "://");
	p = p ? p + 3 : u;
	size_t n = strcspn(p, "/?#");
	const char *at = memchr(p, '@', n);
	if (at != NULL) {
		n -= (size_t)(at + 1 - p);
		p = at + 1;
	}
	if (n > 0 && p[0] == '[') {
		const char *close = memchr(p, ']', n);
		if (close)
			n = (size_t)(close + 1 - p);
	} else {
		const char *colon = memchr(p, ':', n);
		if (colon)
			n = (size_t)(colon - p);
	}
	if (n >= cap)
		n = cap - 1;
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)tolower((unsigned char)p[i]);
	buf[n] = '\0';
}

/*
 * SpamAssassin's uri host lists: a URI's host, then each parent domain, the
 * most specific entry deciding ("!host" is an exception to a listed parent).
 */
static bool host_listed(struct rules_evalenv *e, int l)
{
	const struct rules_wlbl *w = e->r->wlbl;
	if (w == NULL || w->nh[l] == 0 || e->mi == NULL)
		return false;
	for (size_t i = 0; i < mime_uri_count(e->mi); i++) {
		char host[256];
		uri_host(mime_uri(e->mi, i), host, sizeof(host));
		if (host[0] == '\0')
			continue;
		bool literal = host[0] == '[' || rules_eval_is_ipv4(host);
		for (const char *q = host; q != NULL;) {
			const char *key = host[0] == '[' ? host : q;
			for (size_t k = 0; k < w->nh[l]; k++)
				if (strcmp(w->h[l][k].host, key) == 0) {
					if (w->h[l][k].listed)
						return true;
					goto next_uri; /* an exception: this host is not listed */
				}
			if (literal)
				break;
			q = strchr(q, '.');
			if (q != NULL)
				q++;
		}
	next_uri:;
	}
	return false;
}

static long uri_host_in_blocklist(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return host_listed(e, HOST_BLOCK);
}

static long uri_host_in_welcomelist(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return host_listed(e, HOST_WELCOME);
}

/* The registered domain of a host, lower case; the host itself when it has none. */
static const char *reg_domain(const char *host, char *buf, size_t cap)
{
	const char *d = dns_registered_domain(host, buf, cap);
	if (d != NULL)
		return d;
	snprintf(buf, cap, "%s", host);
	for (char *p = buf; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return buf;
}

/*
 * check_mailfrom_matches_rcvd: the envelope sender's registered domain is
 * that of the first untrusted relay's rDNS (of any trusted relay's when
 * every relay is trusted): mail that comes from its sender's own servers.
 */
static long mailfrom_matches_rcvd(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const char *sender = rules_eval_envelope_from(e);
	const char *at = sender ? strrchr(sender, '@') : NULL;
	if (at == NULL || strchr(at + 1, '.') == NULL)
		return 0;
	char sd[256], rd[256];
	reg_domain(at + 1, sd, sizeof(sd));
	rules_eval_relays(e);
	const struct rules_relay *v = e->nuntrusted ? e->untrusted : e->trusted;
	size_t n = e->nuntrusted ? 1 : e->ntrusted;
	for (size_t i = 0; i < n; i++) {
		if (v[i].rdns == NULL || v[i].rdns[0] == '\0')
			continue;
		if (strcmp(sd, reg_domain(v[i].rdns, rd, sizeof(rd))) == 0)
			return 1;
	}
	return 0;
}

const struct rules_evaldef rules_eval_wlbl_defs[] = {
    {"check_mailfrom_matches_rcvd", mailfrom_matches_rcvd, 0, 0, NULL},
    {"check_uri_host_in_blocklist", uri_host_in_blocklist, 0, 0, NULL},
    {"check_uri_host_in_blacklist", uri_host_in_blocklist, 0, 0, NULL},
    {"check_uri_host_in_welcomelist", uri_host_in_welcomelist, 0, 0, NULL},
    {"check_uri_host_in_whitelist", uri_host_in_welcomelist, 0, 0, NULL},
    {"check_from_in_welcomelist", from_in_welcomelist, 0, 0, NULL},
    {"check_from_in_whitelist", from_in_welcomelist, 0, 0, NULL},
    {"check_from_in_blocklist", from_in_blocklist, 0, 0, NULL},
    {"check_from_in_blacklist", from_in_blocklist, 0, 0, NULL},
    {"check_to_in_welcomelist", to_in_welcomelist, 0, 0, NULL},
    {"check_to_in_whitelist", to_in_welcomelist, 0, 0, NULL},
    {"check_to_in_blocklist", to_in_blocklist, 0, 0, NULL},
    {"check_to_in_blacklist", to_in_blocklist, 0, 0, NULL},
    {"check_to_in_more_spam", to_in_more_spam, 0, 0, NULL},
    {"check_to_in_all_spam", to_in_all_spam, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
