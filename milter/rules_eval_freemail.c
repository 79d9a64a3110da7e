/*
 * rules_eval_freemail.c - SpamAssassin's FreeMail plugin in C: the
 * freemail_domains lists (exact names and * ? wildcards), its welcomelist,
 * and the tests check_freemail_from, check_freemail_header and
 * check_freemail_replyto (which compares From, Reply-To and the addresses
 * written in the body). Follows Mail::SpamAssassin::Plugin::FreeMail.
 */
#include <ctype.h>

#include "rules_int.h"

struct rules_freemail {
	char **exact; /* lower-case domains, sorted once loading ends */
	size_t nexact, capexact;
	char **wild; /* patterns with * (any run without a dot) and ? (one byte) */
	size_t nwild, capwild;
	char **welcome; /* addresses or domains never counted as freemail */
	size_t nwelcome, capwelcome;
	long max_body_emails, max_body_freemails;
	bool skip_when_over_max, skip_bulk_envfrom;
};

static void push(char ***v, size_t *n, size_t *cap, const char *s, size_t len)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 256;
		*v = xalloc_realloc(*v, *cap * sizeof(char *));
	}
	char *c = xalloc_strndup(s, len);
	for (char *p = c; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	(*v)[(*n)++] = c;
}

static struct rules_freemail *get(rules_t *r)
{
	if (r->freemail == NULL) {
		r->freemail = xalloc_calloc(1, sizeof(*r->freemail));
		r->freemail->max_body_emails = 5;
		r->freemail->max_body_freemails = 3;
		r->freemail->skip_when_over_max = true;
		r->freemail->skip_bulk_envfrom = true;
	}
	return r->freemail;
}

const char *rules_freemail_directive(rules_t *r, const char *dir, const char *rest)
{
	if (strcmp(dir, "freemail_domains") == 0 || strcmp(dir, "freemail_whitelist") == 0 ||
	    strcmp(dir, "freemail_welcomelist") == 0) {
		struct rules_freemail *f = get(r);
		bool dom = dir[9] == 'd';
		const char *w;
		size_t n;
		for (const char *p = rest; rules_eval_word(&p, &w, &n);) {
			if (!dom)
				push(&f->welcome, &f->nwelcome, &f->capwelcome, w, n);
			else if (memchr(w, '*', n) || memchr(w, '?', n))
				push(&f->wild, &f->nwild, &f->capwild, w, n);
			else
				push(&f->exact, &f->nexact, &f->capexact, w, n);
		}
		return NULL;
	}
	if (strcmp(dir, "freemail_max_body_emails") == 0 ||
	    strcmp(dir, "freemail_max_body_freemails") == 0) {
		char *end;
		long v = strtol(rest, &end, 10);
		if (end == rest || v < 1)
			return "expected a positive number";
		if (dir[19] == 'e')
			get(r)->max_body_emails = v;
		else
			get(r)->max_body_freemails = v;
		return NULL;
	}
	if (strcmp(dir, "freemail_skip_when_over_max") == 0 ||
	    strcmp(dir, "freemail_skip_bulk_envfrom") == 0) {
		bool v = strcmp(rest, "1") == 0 || strcasecmp(rest, "yes") == 0;
		if (!v && strcmp(rest, "0") != 0 && strcasecmp(rest, "no") != 0)
			return "expected 0 or 1";
		if (dir[14] == 'w')
			get(r)->skip_when_over_max = v;
		else
			get(r)->skip_bulk_envfrom = v;
		return NULL;
	}
	return "~not implemented";
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void rules_freemail_finish(rules_t *r)
{
	if (r->freemail) {
		/* qsort() must not see the NULL of an empty list */
		if (r->freemail->nexact)
			qsort(r->freemail->exact, r->freemail->nexact, sizeof(char *), cmp_str);
		if (r->freemail->nwelcome)
			qsort(r->freemail->welcome, r->freemail->nwelcome, sizeof(char *), cmp_str);
	}
}

void rules_freemail_free(struct rules_freemail *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->nexact; i++)
		free(f->exact[i]);
	for (size_t i = 0; i < f->nwild; i++)
		free(f->wild[i]);
	for (size_t i = 0; i < f->nwelcome; i++)
		free(f->welcome[i]);
	free(f->exact);
	free(f->wild);
	free(f->welcome);
	free(f);
}

static bool in_sorted(char **v, size_t n, const char *s)
{
	return n && bsearch(&s, v, n, sizeof(char *), cmp_str) != NULL;
}

static bool is_freemail(const struct rules_freemail *f, const char *email)
{
	if (f == NULL || *email == '\0')
		return false;
	const char *at = strrchr(email, '@');
	const char *dom = at ? at + 1 : email;
	if (in_sorted(f->welcome, f->nwelcome, email) || in_sorted(f->welcome, f->nwelcome, dom))
		return false;
	static struct rules_eval_re welcome = {
	    .pattern =
	        "^(?:abuse|support|sales|info|helpdesk|contact|kontakt|(?:post|host|domain)"
	        "master|undisclosed.*|request-[a-f0-9]{16}|bounced?-|[a-f0-9]{8}(?:\\.[a-f0-9]"
	        "{8}|-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})|.+=.+=.+)\\@",
	    .options = PCRE2_CASELESS};
	if (rules_eval_re(&welcome, email, strlen(email)))
		return false;
	if (in_sorted(f->exact, f->nexact, dom))
		return true;
	for (size_t i = 0; i < f->nwild; i++)
		if (rules_eval_glob_within(f->wild[i], dom, '.', '\0', 0)) /* '*' within a label */
			return true;
	return false;
}

static char *lower(arena_t *a, const char *s)
{
	char *c = arena_strdup(a, s);
	for (char *p = c; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return c;
}

/* The lower-cased addresses of every occurrence of a field ("EnvelopeFrom" included). */
static size_t addrs_of(struct rules_evalenv *e, const char *name, const char ***out)
{
	char field[128];
	snprintf(field, sizeof(field), "%s", name);
	char *colon = strchr(field, ':'); /* "Reply-To:addr" is Reply-To's addresses */
	if (colon)
		*colon = '\0';
	const char *v;
	if (strcasecmp(field, "EnvelopeFrom") == 0) {
		v = rules_eval_envelope_from(e);
	} else {
		v = rules_eval_header(e, field);
	}
	if (v == NULL) {
		*out = NULL;
		return 0;
	}
	const char **list;
	size_t n = rules_eval_addrs(e->a, v, &list);
	for (size_t i = 0; i < n; i++)
		list[i] = lower(e->a, list[i]);
	*out = list;
	return n;
}

static const char *check_regex_arg(const struct rule *ru, size_t i)
{
	if (ru->neargs <= i)
		return NULL;
	int err;
	PCRE2_SIZE off;
	pcre2_code *c =
	    pcre2_compile((PCRE2_SPTR)ru->eargs[i], PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
	if (c == NULL)
		return "bad regex";
	pcre2_code_free(c);
	return NULL;
}

static const char *check_from(const struct rule *ru)
{
	return check_regex_arg(ru, 0);
}

static const char *check_header(const struct rule *ru)
{
	return check_regex_arg(ru, 1);
}

static long freemail_header(struct rules_evalenv *e, const struct rule *ru)
{
	const struct rules_freemail *f = e->r->freemail;
	const char **list;
	size_t n = addrs_of(e, ru->eargs[0], &list);
	for (size_t i = 0; i < n; i++)
		if (is_freemail(f, list[i]) &&
		    (ru->neargs < 2 || rules_eval_re_once(ru->eargs[1], 0, list[i])))
			return 1;
	return 0;
}

static long freemail_from(struct rules_evalenv *e, const struct rule *ru)
{
	const struct rules_freemail *f = e->r->freemail;
	static const char *const fields[] = {"From", "Envelope-Sender", "Resent-Sender",
	                                     "X-Envelope-From", "EnvelopeFrom"};
	const char **list;
	if (msg_header_get(e->m, "Resent-From", 0) != NULL) {
		size_t n = addrs_of(e, "Resent-From", &list);
		for (size_t i = 0; i < n && i < 1; i++)
			if (is_freemail(f, list[i]) &&
			    (ru->neargs < 1 || rules_eval_re_once(ru->eargs[0], 0, list[i])))
				return 1;
		return 0;
	}
	for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
		size_t n = addrs_of(e, fields[k], &list);
		for (size_t i = 0; i < n; i++)
			if (is_freemail(f, list[i]) &&
			    (ru->neargs < 1 || rules_eval_re_once(ru->eargs[0], 0, list[i])))
				return 1;
	}
	return 0;
}

#define EMAIL_RE                                                                                   \
	"(?=.{0,64}\\@)(?<![a-z0-9!#$%&'*+/=?^_`{|}~-])([a-z0-9!#$%&'*+/"                          \
	"=?^_`{|}~-]+(?:\\.[a-z0-9!#$%&'*+/"                                                       \
	"=?^_`{|}~-]+)*\\@(?:[a-z0-9](?:[a-z0-9-]{0,59}[a-z0-9])?\\.){1,4}[a-z]{2,24})\\b"

/*
 * The freemail addresses written in the body, as SpamAssassin collects
 * them: mailto: links, then addresses in the text, leaving out those
 * inside URLs, in <angle brackets> and before "wrote:"-like words.
 * Returns false when there are more than the limits allow.
 */
struct fmbody {
	bool ok;
	const char **v;
	size_t n;
};

static bool body_freemails_uncached(struct rules_evalenv *e, const char ***out, size_t *nout);

static bool body_freemails(struct rules_evalenv *e, const char ***out, size_t *nout)
{
	struct fmbody *c = e->cache[RULES_EVAL_CACHE_FMBODY];
	if (c == NULL) {
		c = arena_zalloc(e->a, sizeof(*c));
		c->ok = body_freemails_uncached(e, &c->v, &c->n);
		e->cache[RULES_EVAL_CACHE_FMBODY] = c;
	}
	*out = c->v;
	*nout = c->n;
	return c->ok;
}

static bool body_freemails_uncached(struct rules_evalenv *e, const char ***out, size_t *nout)
{
	const struct rules_freemail *f = e->r->freemail;
	const char **emails = arena_alloc(e->a, 64 * sizeof(char *));
	size_t n = 0;
	size_t nu = e->mi ? mime_uri_count(e->mi) : 0;
	static struct rules_eval_re mailto = {.pattern = "^mailto:" EMAIL_RE,
	                                      .options = PCRE2_CASELESS};
	for (size_t i = 0; i < nu && n < 20; i++) {
		const char *u = mime_uri(e->mi, i);
		const char *m = rules_eval_re_group(&mailto, u, strlen(u), e->a);
		if (m == NULL || !dns_tld_known(m))
			continue;
		m = lower(e->a, m);
		bool seen = false;
		for (size_t k = 0; k < n && !seen; k++)
			seen = strcmp(emails[k], m) == 0;
		if (!seen)
			emails[n++] = m;
	}
	size_t blen = 0;
	const char *body = e->mi ? mime_body(e->mi, &blen) : NULL;
	if (body != NULL && memchr(body, '@', blen) != NULL) {
		static struct rules_eval_re url = {.pattern =
		                                       "<?https?://\\S{0,255}(?:\\@|%40)\\S{0,255}",
		                                   .options = PCRE2_CASELESS};
		static struct rules_eval_re quoted = {
		    .pattern = "<?(?<!mailto:)" EMAIL_RE
		               "(?:>|\\s{1,10}(?!(?:fa(?:x|csi)|tel|phone|e?-?mail))[a-z]{2,11}:)",
		    .options = PCRE2_CASELESS};
		static struct rules_eval_re addr = {.pattern = EMAIL_RE, .options = PCRE2_CASELESS};
		char *t = arena_strndup(e->a, body, blen);
		rules_eval_re_blank(&url, t, blen);
		rules_eval_re_blank(&quoted, t, blen);
		for (size_t off = 0; off < blen && n < 40;) {
			size_t s, l;
			if (!rules_eval_re_find(&addr, t, blen, off, &s, &l))
				break;
			char *m = lower(e->a, arena_strndup(e->a, t + s, l));
			off = s + (l ? l : 1);
			/* SpamAssassin's pattern ends in its list of valid TLDs */
			if (!dns_tld_known(m))
				continue;
			bool seen = false;
			for (size_t k = 0; k < n && !seen; k++)
				seen = strcmp(emails[k], m) == 0;
			if (!seen)
				emails[n++] = m;
		}
	}
	const char **fm = arena_alloc(e->a, (n ? n : 1) * sizeof(char *));
	size_t nfm = 0, all = 0, cfm = 0;
	for (size_t i = 0; i < n; i++) {
		if (++all == (size_t)f->max_body_emails && f->skip_when_over_max)
			return false;
		if (!is_freemail(f, emails[i]))
			continue;
		if (++cfm == (size_t)f->max_body_freemails && f->skip_when_over_max)
			return false;
		fm[nfm++] = emails[i];
	}
	*out = fm;
	*nout = nfm;
	return true;
}

static const char *check_replyto(const struct rule *ru)
{
	if (ru->neargs && strcmp(ru->eargs[0], "replyto") != 0 &&
	    strcmp(ru->eargs[0], "reply") != 0)
		return "expected 'replyto' or 'reply'";
	return NULL;
}

static long freemail_replyto(struct rules_evalenv *e, const struct rule *ru)
{
	const struct rules_freemail *f = e->r->freemail;
	bool replyto = ru->neargs == 0 || strcmp(ru->eargs[0], "replyto") == 0;
	if (f == NULL)
		return 0;
	if (f->skip_bulk_envfrom) {
		const char **ef;
		static struct rules_eval_re bulk = {
		    .pattern =
		        "(?:^(?:post|host|domain)master|^double-bounce|^(?:sentto|owner|return|"
		        "(?:gr)?bounced?)-.+|-(?:request|bounces?|admin|owner)|\\b(?:do[._-t]?)?"
		        "no[._-t]?repl(?:y|ies)|.+=.+)\\@",
		    .options = PCRE2_CASELESS};
		if (addrs_of(e, "EnvelopeFrom", &ef) > 0 &&
		    rules_eval_re(&bulk, ef[0], strlen(ef[0])))
			return 0;
	}
	const char **from, **rt;
	size_t nf = addrs_of(e, "From", &from), nr = addrs_of(e, "Reply-To", &rt);
	bool from_fm = false, rt_fm = false, from_not_in_rt = true;
	for (size_t i = 0; i < nf; i++)
		from_fm |= is_freemail(f, from[i]);
	for (size_t i = 0; i < nr; i++)
		rt_fm |= is_freemail(f, rt[i]);
	for (size_t i = 0; i < nf; i++)
		for (size_t k = 0; k < nr; k++)
			if (strcmp(from[i], rt[k]) == 0)
				from_not_in_rt = false;
	if (from_fm && rt_fm && from_not_in_rt)
		return 1;
	if (replyto && !rt_fm)
		return 0;
	if (!replyto && ((nr && !rt_fm) || !from_fm))
		return 0;
	const char **body;
	size_t nb;
	if (!body_freemails(e, &body, &nb))
		return 0;
	const char **reply = replyto || rt_fm ? rt : from;
	size_t nreply = replyto || rt_fm ? nr : nf;
	for (size_t i = 0; i < nb; i++)
		for (size_t k = 0; k < nreply; k++)
			if (strcmp(body[i], reply[k]) != 0)
				return 1;
	return 0;
}

const struct rules_evaldef rules_eval_freemail_defs[] = {
    {"check_freemail_from", freemail_from, 0, 1, check_from},
    {"check_freemail_header", freemail_header, 1, 2, check_header},
    {"check_freemail_replyto", freemail_replyto, 0, 1, check_replyto},
    {NULL, NULL, 0, 0, NULL},
};
