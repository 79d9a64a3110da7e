/*
 * rules_eval_wlbl.c - SpamAssassin's welcome- and blocklists by address
 * (WLBLEval): the welcomelist_from, blocklist_from, welcomelist_to,
 * blocklist_to, more_spam_to and all_spam_to directives (with their old
 * whitelist/blacklist names and the un... forms) and the tests that look
 * the message's sender and recipient addresses up in them.
 */
#include <ctype.h>

#include "rules_int.h"

enum { WL_FROM, BL_FROM, WL_TO, BL_TO, MORE_SPAM_TO, ALL_SPAM_TO, WLBL_N };

struct rules_wlbl {
	char **v[WLBL_N]; /* lower-case patterns: * any run, ? one byte */
	size_t n[WLBL_N], cap[WLBL_N];
};

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

const struct rules_evaldef rules_eval_wlbl_defs[] = {
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
