/*
 * rules_eval_shorturl.c - SpamAssassin's DecodeShortURLs plugin, its part
 * that needs no outside service: the url_shortener lists and short_url(),
 * whether a link of the message points at a listed URL shortener. What
 * the plugin learns by asking the shortener over HTTP where a link leads
 * (short_url_chained, short_url_redir, short_url_200, ...) is not asked:
 * those evals are skipped with a lint warning (rules_eval.c).
 *
 * SpamAssassin's default install leaves the plugin unloaded (v400.pre), so
 * the stock 25_url_shortener.cf falls back to a uri rule for
 * __URL_SHORTENER; Sift does the same unless rules_all_plugins reads
 * every plugin's blocks (rules_parse.c), and then answers short_url here.
 */
#include <ctype.h>

#include "rules_int.h"

/* url_shortener and url_shortener_get domains, lower case ("." first: any host one level below) */
struct rules_shorturl {
	char **dom;
	size_t n, cap;
};

static bool listed(const struct rules_shorturl *s, const char *host, size_t n)
{
	for (size_t i = 0; s != NULL && i < s->n; i++)
		if (strlen(s->dom[i]) == n && memcmp(s->dom[i], host, n) == 0)
			return true;
	return false;
}

static void drop(struct rules_shorturl *s, const char *w, size_t n)
{
	for (size_t i = 0; i < s->n;)
		if (strlen(s->dom[i]) == n && strncasecmp(s->dom[i], w, n) == 0) {
			free(s->dom[i]);
			s->dom[i] = s->dom[--s->n];
		} else {
			i++;
		}
}

const char *rules_shorturl_directive(rules_t *r, const char *dir, const char *rest)
{
	bool add = strcmp(dir, "url_shortener") == 0 || strcmp(dir, "url_shortener_get") == 0;
	if (!add && strcmp(dir, "clear_url_shortener") != 0)
		return "~not a url_shortener directive";
	if (r->shorturl == NULL)
		r->shorturl = xalloc_calloc(1, sizeof(*r->shorturl));
	struct rules_shorturl *s = r->shorturl;
	const char *p = rest, *w;
	size_t n;
	if (!add && !rules_eval_word(&p, &w, &n)) {
		for (size_t i = 0; i < s->n; i++)
			free(s->dom[i]);
		s->n = 0;
		return NULL;
	}
	p = rest;
	bool any = false;
	while (rules_eval_word(&p, &w, &n)) {
		any = true;
		for (size_t i = 0; i < n; i++)
			if (!isalnum((unsigned char)w[i]) && w[i] != '.' && w[i] != '-' &&
			    w[i] != '_')
				return "expected domain names";
		drop(s, w, n);
		if (!add)
			continue;
		if (s->n == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 64;
			s->dom = xalloc_realloc(s->dom, s->cap * sizeof(*s->dom));
		}
		s->dom[s->n++] = rules_eval_lower_dup(w, n);
	}
	return any ? NULL : "expected one domain name or more";
}

void rules_shorturl_free(struct rules_shorturl *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->dom[i]);
	free(s->dom);
	free(s);
}

/*
 * As the plugin's _check_shortener_uri: an http(s) link (its query and
 * fragment cut off) whose host is listed, or is www. before a listed
 * domain of two labels, or sits one level below a ".domain" entry; a host
 * of two labels counts only with a path holding a word character.
 */
static bool shortener_link(const struct rules_shorturl *s, const char *uri)
{
	size_t end = strcspn(uri, "#?");
	const char *p;
	if (strncasecmp(uri, "http://", 7) == 0)
		p = uri + 7;
	else if (strncasecmp(uri, "https://", 8) == 0)
		p = uri + 8;
	else
		return false;
	const char *stop = uri + end;
	size_t auth = strcspn(p, "/?#");
	const char *at = memchr(p, '@', auth < (size_t)(stop - p) ? auth : (size_t)(stop - p));
	if (at != NULL)
		p = at + 1;
	size_t hn = 0;
	while (p + hn < stop && !strchr("/?#:", p[hn]))
		hn++;
	if (hn == 0 || hn >= 256)
		return false;
	char host[256];
	size_t dots = 0;
	for (size_t i = 0; i < hn; i++) {
		host[i] = (char)tolower((unsigned char)p[i]);
		dots += host[i] == '.';
	}
	host[hn] = '\0';
	const char *q = p + hn;
	if (q < stop && *q == ':') {
		q++;
		while (q < stop && isdigit((unsigned char)*q))
			q++;
	}
	bool path = false;
	for (; q < stop && !path; q++)
		path = isalnum((unsigned char)*q) || *q == '_';
	if (dots == 1 && !path)
		return false;
	if (listed(s, host, hn))
		return true;
	if (dots != 2)
		return false;
	if (strncmp(host, "www.", 4) == 0)
		return listed(s, host + 4, hn - 4);
	const char *sub = strchr(host, '.');
	return sub != host && listed(s, sub, hn - (size_t)(sub - host));
}

/* short_url(): a link of the message points at a listed URL shortener. */
static long short_url(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const struct rules_shorturl *s = e->r->shorturl;
	if (s == NULL || s->n == 0 || e->mi == NULL)
		return 0;
	struct rules_uri_detail *d;
	size_t n = rules_uri_details(e->a, e->mi, e->r, rules_match_context(e->r), &d);
	for (size_t i = 0; i < n; i++)
		if (d[i].ncleaned > 0 && shortener_link(s, d[i].raw)) {
			e->detail = arena_strdup(e->a, d[i].raw);
			return 1;
		}
	return 0;
}

const struct rules_evaldef rules_eval_shorturl_defs[] = {
    {"short_url", short_url, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
