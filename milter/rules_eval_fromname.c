/*
 * rules_eval_fromname.c - SpamAssassin's FromNameSpoof tests: a From
 * display name that is itself an address ("paypal@paypal.com"
 * <x@evil.example>) other than the sender's, or the recipient's, or the
 * Reply-To address; with the fns_* directives. Follows
 * Mail::SpamAssassin::Plugin::FromNameSpoof of SpamAssassin 4.0.
 */
#include <ctype.h>

#include "auth.h"
#include "rules_int.h"

/* fns_add_addrlist (OWNER) addr...: addresses that belong to one owner */
struct fns_list {
	char *owner; /* lower case */
	char **v;    /* lower-case patterns: * any run, ? one byte */
	size_t n, cap;
};

struct rules_fromname {
	long extrachars; /* fns_extrachars: name bytes allowed beside the address */
	int check;       /* fns_check: 0 address, 1 and owner, 2 and domain */
	char **ignore_headers;
	size_t nignore;
	char **ignore_dkim; /* fns_ignore_dkim: signing domains, lower-case */
	size_t nignore_dkim;
	struct fns_list *lists;
	size_t nlists;
};

static struct rules_fromname *get(rules_t *r)
{
	if (r->fromname == NULL) {
		r->fromname = xalloc_calloc(1, sizeof(*r->fromname));
		r->fromname->extrachars = 50;
		r->fromname->check = 1;
	}
	return r->fromname;
}

/* "(OWNER) addr...": the owner's list, created on first use; NULL on a malformed line */
static struct fns_list *list_of(struct rules_fromname *f, const char *rest, const char **addrs)
{
	const char *close = rest[0] == '(' ? strchr(rest, ')') : NULL;
	if (close == NULL || close == rest + 1 || (close[1] != ' ' && close[1] != '\t'))
		return NULL;
	*addrs = close + 1 + strspn(close + 1, " \t");
	if (**addrs == '\0')
		return NULL;
	char *owner = rules_eval_lower_dup(rest + 1, (size_t)(close - rest - 1));
	for (size_t i = 0; i < f->nlists; i++)
		if (strcmp(f->lists[i].owner, owner) == 0) {
			free(owner);
			return &f->lists[i];
		}
	f->lists = xalloc_realloc(f->lists, (f->nlists + 1) * sizeof(*f->lists));
	f->lists[f->nlists] = (struct fns_list){.owner = owner};
	return &f->lists[f->nlists++];
}

const char *rules_fromname_directive(rules_t *r, const char *dir, const char *rest)
{
	struct rules_fromname *f = get(r);
	if (strcmp(dir, "fns_add_addrlist") == 0 || strcmp(dir, "fns_remove_addrlist") == 0) {
		const char *p;
		struct fns_list *l = list_of(f, rest, &p);
		if (l == NULL)
			return "expected (OWNER) and addresses";
		bool add = dir[4] == 'a';
		const char *w;
		size_t n;
		while (rules_eval_word(&p, &w, &n)) {
			char *pat = rules_eval_lower_dup(w, n);
			if (add) {
				if (l->n == l->cap) {
					l->cap = l->cap ? l->cap * 2 : 8;
					l->v = xalloc_realloc(l->v, l->cap * sizeof(char *));
				}
				l->v[l->n++] = pat;
				continue;
			}
			for (size_t k = 0; k < l->n; k++)
				if (strcmp(l->v[k], pat) == 0) {
					free(l->v[k]);
					l->v[k] = l->v[--l->n];
					break;
				}
			free(pat);
		}
		return NULL;
	}
	if (strcmp(dir, "fns_extrachars") == 0) {
		char *end;
		long v = strtol(rest, &end, 10);
		if (end == rest || *end != '\0' || v < 0)
			return "expected a number of characters";
		f->extrachars = v;
		return NULL;
	}
	if (strcmp(dir, "fns_check") == 0) {
		if (strlen(rest) != 1 || rest[0] < '0' || rest[0] > '2')
			return "expected 0, 1 or 2";
		f->check = rest[0] - '0';
		return NULL;
	}
	if (strcmp(dir, "fns_ignore_headers") == 0) {
		if (*rest == '\0')
			return "expected header names";
		const char *w;
		size_t n;
		for (const char *p = rest; rules_eval_word(&p, &w, &n);) {
			f->ignore_headers =
			    xalloc_realloc(f->ignore_headers, (f->nignore + 1) * sizeof(char *));
			f->ignore_headers[f->nignore++] = xalloc_strndup(w, n);
		}
		return NULL;
	}
	if (strcmp(dir, "fns_ignore_dkim") == 0) {
		if (*rest == '\0')
			return "expected signing domains";
		const char *w;
		size_t n;
		for (const char *p = rest; rules_eval_word(&p, &w, &n);) {
			f->ignore_dkim =
			    xalloc_realloc(f->ignore_dkim, (f->nignore_dkim + 1) * sizeof(char *));
			f->ignore_dkim[f->nignore_dkim++] = rules_eval_lower_dup(w, n);
		}
		return NULL;
	}
	return "~not a FromNameSpoof directive Sift knows";
}

void rules_fromname_free(struct rules_fromname *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->nignore; i++)
		free(f->ignore_headers[i]);
	free(f->ignore_headers);
	for (size_t i = 0; i < f->nignore_dkim; i++)
		free(f->ignore_dkim[i]);
	free(f->ignore_dkim);
	for (size_t i = 0; i < f->nlists; i++) {
		for (size_t k = 0; k < f->lists[i].n; k++)
			free(f->lists[i].v[k]);
		free(f->lists[i].v);
		free(f->lists[i].owner);
	}
	free(f->lists);
	free(f);
}

/* ---------------------------------------------------------------- the display name */

/*
 * SpamAssassin's From:name: the phrase of the first mailbox of the first
 * From field that has one (quotes and escapes undone, comments dropped),
 * else the comment after a bare address; RFC 2047 decoded, white space
 * runs made one space, outer single quotes dropped. "" when none.
 */
static const char *from_name(struct rules_evalenv *e)
{
	const char *v = msg_header_get(e->m, "From", 0);
	if (v == NULL)
		return "";
	const char *p = v;
	while (*p) {
		abuf_t phrase, comment;
		abuf_init(&phrase, e->a, 64);
		abuf_init(&comment, e->a, 64);
		bool angle = false;
		const char *addr_start = NULL, *addr_end = NULL;
		for (; *p && *p != ','; p++) {
			if (*p == '"') {
				for (p++; *p && *p != '"'; p++) {
					if (*p == '\\' && p[1])
						p++;
					abuf_append(&phrase, p, 1);
				}
				if (*p == '\0')
					break;
			} else if (*p == '(') {
				int depth = 1;
				for (p++; *p && depth > 0; p++) {
					if (*p == '\\' && p[1]) {
						p++;
					} else if (*p == '(') {
						depth++;
					} else if (*p == ')') {
						if (--depth == 0)
							break;
					}
					abuf_append(&comment, p, 1);
				}
				if (*p == '\0')
					break;
			} else if (*p == '<') {
				const char *gt = strchr(p, '>');
				if (gt == NULL)
					break;
				angle = true;
				addr_start = p + 1;
				addr_end = gt;
				p = gt;
			} else if (!angle) {
				abuf_append(&phrase, p, 1);
			}
		}
		abuf_append(&phrase, "", 1);
		abuf_append(&comment, "", 1);
		const char *name = phrase.data;
		if (!angle) {
			/* a bare address: the words are the address, a comment the name */
			name = comment.data;
		} else {
			/*
			 * A phrase that repeats the address is none, but only when
			 * written as it ("a@b"<a@b>): SpamAssassin's phrase keeps the
			 * white space before the "<", and so does not equal the address.
			 */
			size_t an = (size_t)(addr_end - addr_start);
			const char *t = name + strspn(name, " \t\r\n");
			if (strlen(t) == an && strncmp(t, addr_start, an) == 0)
				name = "";
			if (strspn(name, " \t\r\n") == strlen(name))
				name = comment.data;
		}
		if (strspn(name, " \t\r\n") != strlen(name)) {
			const char *d = mime_decode_header(e->a, name);
			/* white space runs as one space, trimmed */
			char *out = arena_strdup(e->a, d), *w = out;
			for (const char *q = d; *q;) {
				if (isspace((unsigned char)*q)) {
					while (isspace((unsigned char)*q))
						q++;
					if (w != out && *q)
						*w++ = ' ';
				} else
					*w++ = *q++;
			}
			*w = '\0';
			size_t n = strlen(out);
			if (n >= 2 && out[0] == '\'' && out[n - 1] == '\'') {
				out[n - 1] = '\0';
				out++;
			}
			return out;
		}
		if (*p == ',')
			p++;
		else
			break;
	}
	return "";
}

/* ---------------------------------------------------------------- the facts */

struct fns_facts {
	bool contains_email, address_different, domain_different, owner_different;
	bool equals_to, equals_replyto;
};

/*
 * SpamAssassin's _find_address_owner: the fns_add_addrlist owner of the
 * address (or of user@registered-domain), else the registered domain's
 * first label ("paypal" for paypal.co.uk).
 */
static const char *owner_of(struct rules_evalenv *e, const char *addr, const char *domain)
{
	const struct rules_fromname *f = e->r->fromname;
	const char *at = strrchr(addr, '@');
	const char *alt = at != NULL && strcmp(at + 1, domain) != 0
	                      ? arena_sprintf(e->a, "%.*s@%s", (int)(at - addr), addr, domain)
	                      : NULL;
	for (size_t i = 0; f != NULL && i < f->nlists; i++)
		for (size_t k = 0; k < f->lists[i].n; k++)
			if (rules_eval_glob(f->lists[i].v[k], addr) ||
			    (alt != NULL && rules_eval_glob(f->lists[i].v[k], alt)))
				return f->lists[i].owner;
	const char *dot = strchr(domain, '.');
	return dot != NULL && dot != domain ? arena_strndup(e->a, domain, (size_t)(dot - domain))
	                                    : domain;
}

/* The registered domain of an address's host (lower case, arena), NULL when none. */
static const char *addr_domain(struct rules_evalenv *e, const char *addr)
{
	const char *at = strrchr(addr, '@');
	char buf[256];
	if (at == NULL || dns_registered_domain(at + 1, buf, sizeof(buf)) == NULL ||
	    !rules_eval_domain_valid(buf))
		return NULL; /* SpamAssassin's uri_to_domain() wants a known TLD */
	return arena_strdup(e->a, buf);
}

/* Characters, not bytes: Perl counts the decoded name's characters. */
static size_t chars(const char *s, size_t *other)
{
	size_t n = 0;
	*other = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p & 0xc0) == 0x80)
			continue;
		n++;
		if (!(islower(*p) || isdigit(*p)))
			(*other)++;
	}
	return n;
}

static char *lower_arena(arena_t *a, const char *s)
{
	char *d = arena_strdup(a, s);
	for (char *p = d; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return d;
}

/* The first address of a field, as get('Name:addr'), "" when none. */
static const char *first_addr(struct rules_evalenv *e, const char *name, size_t occ)
{
	const char *v = msg_header_get(e->m, name, occ);
	const char **list;
	return v != NULL && rules_eval_addrs(e->a, v, &list) ? list[0] : "";
}

/* SpamAssassin's all_to_addrs: does one of them equal addr (as written)? */
static bool in_all_to(struct rules_evalenv *e, const char *addr)
{
	const char **list;
	const char *rt = msg_header_get(e->m, "Resent-To", 0);
	const char *rc = msg_header_get(e->m, "Resent-Cc", 0);
	if (rt != NULL || rc != NULL) {
		for (int i = 0; i < 2; i++) {
			const char *v = i ? rc : rt;
			size_t n = v ? rules_eval_addrs(e->a, v, &list) : 0;
			for (size_t k = 0; k < n; k++)
				if (strcmp(list[k], addr) == 0)
					return true;
		}
		return false;
	}
	/* the "for <addr>" of the three newest Received fields */
	static struct rules_eval_re rcvd_for = {.pattern = " for <?(\\S+\\@(\\S+?))>?;"};
	const char *v;
	for (size_t i = 0; i < 3 && (v = msg_header_get(e->m, "Received", i)) != NULL; i++) {
		char *line = arena_strdup(e->a, v), *w = line;
		for (const char *q = v; *q; q++)
			if (*q != '\n' && *q != '\r')
				*w++ = *q; /* unfolded */
		*w = '\0';
		const char *f = rules_eval_re_group(&rcvd_for, line, strlen(line), e->a);
		if (f != NULL && strcmp(f, addr) == 0)
			return true;
	}
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
	                                     "Cc"};
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
		for (size_t pos = 0; (v = msg_header_next(e->m, fields[f], &pos)) != NULL;) {
			size_t n = rules_eval_addrs(e->a, v, &list);
			for (size_t k = 0; k < n; k++)
				if (strcmp(list[k], addr) == 0)
					return true;
		}
	return false;
}

static void compute(struct rules_evalenv *e, struct fns_facts *fa)
{
	const struct rules_fromname *f = e->r->fromname;
	long extrachars = f ? f->extrachars : 50;
	for (size_t i = 0; f != NULL && i < f->nignore; i++)
		if (msg_header_get(e->m, f->ignore_headers[i], 0) != NULL)
			return; /* a mailing list's mail, say */
	/* a valid signature of fns_ignore_dkim's domains (auth's results: none without auth) */
	for (size_t i = 0; f != NULL && e->h != NULL && i < f->nignore_dkim; i++)
		if (auth_dkim_valid_sdid(e->h, f->ignore_dkim[i], false))
			return;
	const char *from = lower_arena(e->a, first_addr(e, "From", 0));
	const char *from_domain = addr_domain(e, from);
	if (from_domain == NULL)
		return;
	const char *name = lower_arena(e->a, from_name(e));
	static struct rules_eval_re in_name = {
	    .pattern =
	        "\\b([\\w\\.\\!\\#\\$\\%\\&\\'\\*\\+\\/\\=\\?\\^\\_\\`\\{\\|\\}\\~-]+\\@\\w[\\w-]*"
	        "\\.\\w[\\w.-]++)\\b",
	    .options = PCRE2_CASELESS};
	const char *naddr = rules_eval_re_group(&in_name, name, strlen(name), e->a);
	if (naddr == NULL)
		return;
	const char *ndomain = addr_domain(e, naddr);
	if (ndomain == NULL)
		return;
	fa->contains_email = true;
	size_t name_other, addr_other;
	size_t name_len = chars(name, &name_other), addr_len = chars(naddr, &addr_other);
	long len = (long)name_len + ((long)name_other - (long)addr_other) - (long)addr_len;
	if (len > extrachars)
		return; /* the address is a small part of a longer name */
	fa->address_different = strcmp(naddr, from) != 0;
	fa->domain_different = strcmp(ndomain, from_domain) != 0;
	fa->owner_different =
	    strcmp(owner_of(e, naddr, ndomain), owner_of(e, from, from_domain)) != 0;
	fa->equals_replyto = strcmp(naddr, lower_arena(e->a, first_addr(e, "Reply-To", 0))) == 0;
	fa->equals_to = in_all_to(e, naddr);
}

static const struct fns_facts *facts(struct rules_evalenv *e)
{
	struct fns_facts *fa = e->cache[RULES_EVAL_CACHE_FROMNAME];
	if (fa == NULL) {
		fa = arena_alloc(e->a, sizeof(*fa));
		memset(fa, 0, sizeof(*fa));
		compute(e, fa);
		e->cache[RULES_EVAL_CACHE_FROMNAME] = fa;
	}
	return fa;
}

/* check_fromname_spoof([level]): fns_check's level unless one is given. */
static long fromname_spoof(struct rules_evalenv *e, const struct rule *ru)
{
	int level = e->r->fromname ? e->r->fromname->check : 1;
	if (ru->neargs == 1 && strlen(ru->eargs[0]) == 1 && ru->eargs[0][0] >= '0' &&
	    ru->eargs[0][0] <= '2')
		level = ru->eargs[0][0] - '0';
	const struct fns_facts *fa = facts(e);
	switch (level) {
	case 0: return fa->address_different;
	case 2: return fa->address_different && fa->domain_different;
	default: return fa->address_different && fa->owner_different;
	}
}

#define FACT_TEST(fn, field)                                                                       \
	static long fn(struct rules_evalenv *e, const struct rule *ru)                             \
	{                                                                                          \
		(void)ru;                                                                          \
		return facts(e)->field;                                                            \
	}

FACT_TEST(fromname_different, address_different)
FACT_TEST(fromname_domain_differ, domain_different)
FACT_TEST(fromname_contains_email, contains_email)
FACT_TEST(fromname_equals_to, equals_to)
FACT_TEST(fromname_owners_differ, owner_different)
FACT_TEST(fromname_equals_replyto, equals_replyto)

const struct rules_evaldef rules_eval_fromname_defs[] = {
    {"check_fromname_spoof", fromname_spoof, 0, 1, NULL},
    {"check_fromname_different", fromname_different, 0, 0, NULL},
    {"check_fromname_domain_differ", fromname_domain_differ, 0, 0, NULL},
    {"check_fromname_contains_email", fromname_contains_email, 0, 0, NULL},
    {"check_fromname_equals_to", fromname_equals_to, 0, 0, NULL},
    {"check_fromname_owners_differ", fromname_owners_differ, 0, 0, NULL},
    {"check_fromname_equals_replyto", fromname_equals_replyto, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
