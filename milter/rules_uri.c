/*
 * rules_uri.c - the URI list that uri rules run over. The MIME module
 * collects the links a message holds; SpamAssassin's rules were written
 * against a longer list, and match as they should only on it:
 *  - addresses written in the text, as mailto: links (its Thunderbird-like
 *    URI pattern takes a bare address for one), so __UNSUB_LINK sees
 *    "unsubscribe-x@list.example" in a plain-text footer;
 *  - for each link, the variants its canonicalisation adds: %-escapes of
 *    plain characters decoded, the scheme made "http://", user names cut
 *    from the host, a numeric host written as a dotted quad, the host in
 *    lower case, ":80" dropped, and the target of a redirect carried in
 *    the link ("...?url=http://b.example/"), itself canonicalised.
 * The variants follow Mail::SpamAssassin::Util::uri_list_canonicalize so
 * that NORMAL_HTTP_TO_IP and its kin hit where SpamAssassin's do. Only the
 * uri rules see this list: Bayes and the DNS lists keep the MIME module's.
 * Each list is bounded; all memory is the message's arena.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rules_int.h"

#define URI_TEXT_MAILTOS_MAX 200  /* addresses taken from the text */
#define URI_LIST_MAX         4000 /* links, addresses and variants together */
#define URI_REDIRECT_DEPTH   4    /* a redirect's target's target... */

/* A list in order of finding, with a hash set beside it (at most half full): each URI once. */
struct urilist {
	arena_t *a;
	const char **v;
	size_t n, cap;
	const char **set; /* nslots slots, a power of two */
	size_t nslots;
};

/* The set slot holding n bytes of u, or the empty slot where they would go. */
static const char **find_slot(const struct urilist *l, const char *u, size_t n)
{
	for (size_t i = rules_hash_bytes(u, n) & (l->nslots - 1);; i = (i + 1) & (l->nslots - 1))
		if (l->set[i] == NULL || (strncmp(l->set[i], u, n) == 0 && l->set[i][n] == '\0'))
			return &l->set[i];
}

static bool list_has(const struct urilist *l, const char *u, size_t n)
{
	return l->set != NULL && *find_slot(l, u, n) != NULL;
}

static void grow_set(struct urilist *l)
{
	l->nslots = l->nslots ? l->nslots * 2 : 128;
	l->set = arena_zalloc(l->a, l->nslots * sizeof(*l->set));
	for (size_t i = 0; i < l->n; i++)
		*find_slot(l, l->v[i], strlen(l->v[i])) = l->v[i];
}

/* Adds n bytes of u unless present or the list is full. */
static void list_add(struct urilist *l, const char *u, size_t n)
{
	if (n == 0 || l->n >= URI_LIST_MAX)
		return;
	if (2 * (l->n + 1) > l->nslots)
		grow_set(l);
	const char **slot = find_slot(l, u, n);
	if (*slot != NULL)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		const char **v = arena_alloc(l->a, cap * sizeof(*v));
		if (l->n)
			memcpy(v, l->v, l->n * sizeof(*v));
		l->v = v;
		l->cap = cap;
	}
	*slot = l->v[l->n++] = arena_strndup(l->a, u, n);
}

static void list_add_str(struct urilist *l, const char *u)
{
	list_add(l, u, strlen(u));
}

/* ---------------------------------------------------------------- addresses in the text */

static bool mail_local_char(unsigned char c)
{
	return isalnum(c) || (c != 0 && strchr("!#$%&'*+/=?^_`{|}~-.", c) != NULL);
}

static void text_mailtos(struct urilist *l, const char *t, size_t n)
{
	size_t count = 0;
	for (const char *at = memchr(t, '@', n); at != NULL && count < URI_TEXT_MAILTOS_MAX;
	     at = memchr(at + 1, '@', (size_t)(t + n - at - 1))) {
		const char *s = at;
		while (s > t && mail_local_char((unsigned char)s[-1]))
			s--;
		while (s < at && *s == '.')
			s++;
		const char *e = at + 1, *end = t + n;
		size_t dots = 0;
		while (e < end && (isalnum((unsigned char)*e) || *e == '-' || *e == '.')) {
			dots += *e == '.';
			e++;
		}
		while (e > at + 1 && (e[-1] == '.' || e[-1] == '-')) {
			dots -= e[-1] == '.';
			e--;
		}
		if (s == at || dots == 0 || at[1] == '.' || at[1] == '-')
			continue;
		char *u = arena_sprintf(l->a, "mailto:%.*s", (int)(e - s), s);
		/* a link's address in another case is the same address */
		bool seen = false;
		for (size_t i = 0; i < l->n && !seen; i++)
			seen =
			    strncasecmp(l->v[i], "mailto:", 7) == 0 && strcasecmp(l->v[i], u) == 0;
		if (seen)
			continue;
		list_add_str(l, u);
		count++;
	}
}

/* ---------------------------------------------------------------- variants */

static int hexval(int c)
{
	return isdigit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
}

/*
 * Decodes %2x-%7x escapes (plain printable characters, not %20 or %7f)
 * and escapes blanks, controls, bytes above 0x7e and '"', '%', '<', '>'
 * written bare, as SpamAssassin's url_encode does.
 */
static char *url_plain(arena_t *a, const char *u)
{
	abuf_t b;
	abuf_init(&b, a, strlen(u) + 16);
	for (const unsigned char *p = (const unsigned char *)u; *p; p++) {
		if (*p == '%' && isxdigit(p[1]) && isxdigit(p[2])) {
			int v = hexval(p[1]) * 16 + hexval(p[2]);
			if (v > 0x20 && v < 0x7f)
				abuf_putc(&b, (char)v);
			else
				abuf_append(&b, (const char *)p, 3);
			p += 2;
		} else if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '%' || *p == '<' ||
		           *p == '>') {
			abuf_printf(&b, "%%%02x", *p);
		} else {
			abuf_putc(&b, (char)*p);
		}
	}
	return b.data;
}

static bool has_escape(const char *u)
{
	for (const char *p = strchr(u, '%'); p != NULL; p = strchr(p + 1, '%'))
		if (isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2]))
			return true;
	return false;
}

/* "&#46;" and "&#x2e;" for printable characters, and the dots of other scripts. */
static char *decode_char_refs(arena_t *a, const char *u)
{
	if (strstr(u, "&#") == NULL)
		return (char *)u;
	abuf_t b;
	abuf_init(&b, a, strlen(u) + 1);
	for (const char *p = u; *p;) {
		if (p[0] == '&' && p[1] == '#') {
			bool hex = p[2] == 'x' || p[2] == 'X';
			const char *d = p + (hex ? 3 : 2);
			char *end;
			long v = strtol(d, &end, hex ? 16 : 10);
			if (end > d && *end == ';' && end - d <= 8) {
				if (v == 0x2e || v == 12290 || v == 65294 || v == 65377) {
					abuf_putc(&b, '.');
					p = end + 1;
					continue;
				}
				if (v >= 33 && v <= 126) {
					abuf_putc(&b, (char)v);
					p = end + 1;
					continue;
				}
			}
		}
		abuf_putc(&b, *p++);
	}
	return b.data;
}

/* One number of a dotted host: decimal, 0x hex or leading-zero octal; -1 if not one. */
static long ip_part(const char *s, size_t n)
{
	if (n == 0 || n > 12)
		return -1;
	char buf[16];
	memcpy(buf, s, n);
	buf[n] = '\0';
	char *end;
	long v;
	if (n > 2 && buf[0] == '0' && (buf[1] | 0x20) == 'x')
		v = strtol(buf + 2, &end, 16);
	else if (buf[0] == '0' && n > 1)
		v = strtol(buf, &end, 8);
	else
		v = strtol(buf, &end, 10);
	return *end == '\0' ? v : -1;
}

/* A host written as numbers ("0x7f.1", "2130706433", "0177.0.0.1") as a dotted quad. */
static bool numeric_host(const char *h, size_t n, char out[16])
{
	const char *dot[4];
	size_t ndots = 0;
	for (size_t i = 0; i < n; i++)
		if (h[i] == '.') {
			if (ndots == 3)
				return false;
			dot[ndots++] = h + i;
		}
	unsigned long ip;
	if (ndots == 3) {
		long p[4];
		const char *s = h;
		for (size_t k = 0; k < 4; k++) {
			const char *e = k < 3 ? dot[k] : h + n;
			p[k] = ip_part(s, (size_t)(e - s));
			if (p[k] < 0 || p[k] > 255)
				return false;
			s = e + 1;
		}
		snprintf(out, 16, "%ld.%ld.%ld.%ld", p[0], p[1], p[2], p[3]);
		return true;
	}
	if (ndots != 0)
		return false;
	bool hex = n > 2 && h[0] == '0' && (h[1] | 0x20) == 'x';
	for (size_t i = hex ? 2 : 0; i < n; i++)
		if (hex ? !isxdigit((unsigned char)h[i]) : !isdigit((unsigned char)h[i]))
			return false;
	if (hex) {
		/* the last eight digits, as SpamAssassin reads it */
		size_t d = n - 2 > 8 ? n - 8 : 2;
		char buf[9];
		memcpy(buf, h + d, n - d);
		buf[n - d] = '\0';
		ip = strtoul(buf, NULL, 16);
	} else {
		if (n > 10)
			return false;
		char buf[11];
		memcpy(buf, h, n);
		buf[n] = '\0';
		ip = strtoul(buf, NULL, 10);
		if (ip > 0xffffffffUL)
			return false;
	}
	snprintf(out, 16, "%lu.%lu.%lu.%lu", (ip >> 24) & 255, (ip >> 16) & 255, (ip >> 8) & 255,
	         ip & 255);
	return true;
}

static void add_parts(struct urilist *l, const char *proto, const char *host, size_t hn,
                      const char *rest)
{
	char *u = arena_sprintf(l->a, "%s%.*s%s", proto, (int)hn, host, rest);
	list_add_str(l, u);
}

/* The redirector_pattern lines and what to match them with. */
struct redirectors {
	const rules_t *r;
	pcre2_match_data *md; /* NULL: no lines */
	pcre2_match_context *mc;
};

/*
 * SpamAssassin tries the redirector_pattern lines first, in order, on the
 * link as proto, host and rest: the first whose group 1 holds a dot gives
 * the target. True if one did (the generic form is then not tried).
 */
static bool redirector_target(const struct redirectors *rd, struct urilist *pending,
                              const char *link)
{
	for (size_t k = 0; rd->md != NULL && k < rd->r->nredir; k++) {
		const pcre2_code *code = rd->r->redir[k].code;
		if (code == NULL ||
		    pcre2_match(code, (PCRE2_SPTR)link, strlen(link), 0, 0, rd->md, rd->mc) < 2)
			continue;
		const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(rd->md);
		if (ov[2] == PCRE2_UNSET || memchr(link + ov[2], '.', ov[3] - ov[2]) == NULL)
			continue;
		list_add(pending, link + ov[2], ov[3] - ov[2]);
		return true;
	}
	return false;
}

/* The variants of one link; a redirect's target goes on to pending. */
static void variants(struct urilist *l, const char *uri, struct urilist *pending,
                     const struct redirectors *rd)
{
	arena_t *a = l->a;
	size_t first = strcspn(uri, ":@"); /* an '@' before any ':' is an address too */
	if (strncasecmp(uri, "mailto:", 7) == 0 || uri[first] == '@') {
		/* an address: without its ?subject=..., and one hidden in %20s or <> */
		const char *at = strchr(uri, '@');
		if (at != NULL) {
			const char *q = strchr(at, '?');
			if (q != NULL && q > at + 1)
				list_add(l, uri, (size_t)(q - uri));
			size_t amp = strcspn(at, "?&");
			if (at[amp] == '&' && amp > 1)
				list_add(l, uri, (size_t)(at - uri) + amp);
		}
		return;
	}
	char *nuri = arena_strdup(a, uri);
	for (char *p = nuri; *p; p++)
		if (*p == '\\')
			*p = '/';
	/* "http:/x" and "http:x" as "http://x" */
	size_t sl = strncasecmp(nuri, "http:", 5) == 0    ? 5
	            : strncasecmp(nuri, "https:", 6) == 0 ? 6
	                                                  : 0;
	if (sl) {
		size_t k = 0;
		while (k < 2 && nuri[sl + k] == '/')
			k++;
		if (k < 2)
			nuri = arena_sprintf(a, "%.*s//%s", (int)sl, nuri, nuri + sl + k);
	}
	if (has_escape(nuri))
		nuri = url_plain(a, nuri);
	size_t sch = 0;
	while (isalnum((unsigned char)nuri[sch]) || nuri[sch] == '-' || nuri[sch] == '_')
		sch++;
	if (sch == 0 || nuri[sch] != ':')
		nuri = arena_sprintf(
		    a, "%s%s", strncasecmp(nuri, "ftp.", 4) == 0 ? "ftp://" : "http://", nuri);
	nuri = decode_char_refs(a, nuri);
	/* "http://host?x" as "http://host/?x" */
	size_t pl = strncasecmp(nuri, "http://", 7) == 0    ? 7
	            : strncasecmp(nuri, "https://", 8) == 0 ? 8
	                                                    : 0;
	if (pl) {
		size_t h = pl + strcspn(nuri + pl, "/?#");
		if (h > pl && (nuri[h] == '?' || nuri[h] == '#'))
			nuri = arena_sprintf(a, "%.*s/%s", (int)h, nuri, nuri + h);
	}
	if (strcmp(nuri, uri) != 0)
		list_add_str(l, nuri);
	if (!pl)
		return;

	/* proto, user info, host, [":" port] rest */
	char proto[9];
	memcpy(proto, nuri, pl);
	proto[pl] = '\0';
	for (size_t i = 0; i < pl; i++)
		proto[i] = (char)tolower((unsigned char)proto[i]);
	const char *p = nuri + pl;
	size_t authn = strcspn(p, "@/?#");
	const char *host = p;
	if (p[authn] == '@')
		host = p + authn + 1;
	size_t hn = strcspn(host, "/?#:");
	if (hn == 0)
		return;
	const char *rest = host + hn;
	const char *port = rest[0] == ':' ? rest + 1 : NULL;
	if (port != NULL) {
		size_t pn = strspn(port, "0123456789");
		bool dflt =
		    (strcmp(proto, "http://") == 0 && pn == 2 && strncmp(port, "80", 2) == 0) ||
		    (strcmp(proto, "https://") == 0 && pn == 3 && strncmp(port, "443", 3) == 0);
		if (dflt)
			add_parts(l, proto, host, hn, port + pn);
	}
	/* the host in lower case (SpamAssassin's IDN conversion lowers it) */
	char *lhost = arena_strndup(a, host, hn);
	bool upper = false;
	for (char *c = lhost; *c; c++)
		if (isupper((unsigned char)*c)) {
			*c = (char)tolower((unsigned char)*c);
			upper = true;
		}
	if (upper)
		add_parts(l, proto, lhost, hn, rest);
	/* a redirect: a redirector_pattern's target, else a link carried in the path or query */
	bool by_pattern = false;
	if (rd->md != NULL) {
		const char *link = arena_sprintf(a, "%s%.*s%s", proto, (int)hn, host, rest);
		by_pattern = redirector_target(rd, pending, link);
	}
	for (const char *r = rest; !by_pattern && (r = strcasestr(r, "http")) != NULL; r++) {
		size_t k = 4 + ((r[4] | 0x20) == 's');
		if (r[k] != ':')
			continue;
		size_t e = k + 1 + strcspn(r + k + 1, "&#");
		if (memchr(r, '.', e) != NULL)
			list_add(pending, r, e);
		break;
	}
	/* the variants below leave the user name out, as SpamAssassin's do */
	size_t tn = hn;
	while (tn > 0 && !isalnum((unsigned char)lhost[tn - 1]))
		tn--;
	if (tn > 0 && tn < hn)
		add_parts(l, proto, lhost, tn, rest);
	char quad[16];
	if (numeric_host(lhost, tn, quad))
		add_parts(l, proto, quad, strlen(quad), rest);
}

/* Ready to try r's redirector_pattern lines, if any (rd_close() after). */
static void rd_open(struct redirectors *rd, const rules_t *r, pcre2_match_context *mc)
{
	*rd = (struct redirectors){.r = r, .mc = mc};
	if (r != NULL && r->nredir > 0 && (rd->md = pcre2_match_data_create(2, NULL)) == NULL)
		abort();
}

static void rd_close(struct redirectors *rd)
{
	pcre2_match_data_free(rd->md);
}

/* Adds the variants of l's entries from first on, and redirect targets, a few levels deep. */
static void canonicalize(struct urilist *l, size_t first, const struct redirectors *rd)
{
	arena_t *a = l->a;
	struct urilist pending = {.a = a};
	size_t base = l->n;
	for (size_t i = first; i < base; i++)
		variants(l, l->v[i], &pending, rd);
	for (int depth = 0; depth < URI_REDIRECT_DEPTH && pending.n > 0; depth++) {
		struct urilist next = {.a = a};
		for (size_t i = 0; i < pending.n; i++) {
			if (list_has(l, pending.v[i], strlen(pending.v[i])))
				continue;
			list_add_str(l, pending.v[i]);
			variants(l, pending.v[i], &next, rd);
		}
		pending = next;
	}
}

size_t rules_uri_list(arena_t *a, const mime_t *mi, const rules_t *r, pcre2_match_context *mc,
                      const char ***out)
{
	struct urilist l = {.a = a};
	struct redirectors rd;
	rd_open(&rd, r, mc);
	size_t nlinks = mi ? mime_uri_count(mi) : 0;
	for (size_t i = 0; i < nlinks; i++)
		list_add_str(&l, mime_uri(mi, i));
	size_t bn = 0;
	const char *body = mi ? mime_body(mi, &bn) : NULL;
	if (body != NULL)
		text_mailtos(&l, body, bn);
	canonicalize(&l, 0, &rd);
	rd_close(&rd);
	*out = l.v;
	return l.n;
}

size_t rules_uri_details(arena_t *a, const mime_t *mi, const rules_t *r, pcre2_match_context *mc,
                         struct rules_uri_detail **out)
{
	size_t nlinks = mi ? mime_uri_count(mi) : 0;
	struct urilist mailtos = {.a = a};
	size_t bn = 0;
	const char *body = mi ? mime_body(mi, &bn) : NULL;
	if (body != NULL) {
		/* the text's addresses that are not already links */
		for (size_t i = 0; i < nlinks; i++)
			list_add_str(&mailtos, mime_uri(mi, i));
		size_t before = mailtos.n;
		text_mailtos(&mailtos, body, bn);
		/* no links and no addresses leave v NULL: NULL + 0 is undefined */
		if (mailtos.v != NULL)
			mailtos.v += before;
		mailtos.n -= before;
	}
	struct rules_uri_detail *v =
	    arena_zalloc(a, (nlinks + mailtos.n + 1) * sizeof(struct rules_uri_detail));
	struct redirectors rd;
	rd_open(&rd, r, mc);
	for (size_t i = 0; i < nlinks + mailtos.n; i++) {
		struct rules_uri_detail *d = &v[i];
		const char *u = i < nlinks ? mime_uri(mi, i) : mailtos.v[i - nlinks];
		d->types = i < nlinks ? mime_uri_types(mi, i) : MIME_URI_PARSED;
		/* a "www." host in the text is keyed with its scheme, as SpamAssassin keys it */
		d->schemeless = strncasecmp(u, "www.", 4) == 0;
		d->raw = d->schemeless ? arena_sprintf(a, "http://%s", u) : u;
		d->schemeless = d->schemeless && (d->types & MIME_URI_PARSED);
		struct urilist l = {.a = a};
		list_add_str(&l, d->raw);
		canonicalize(&l, 0, &rd);
		d->cleaned = l.v;
		d->ncleaned = l.n;
	}
	rd_close(&rd);
	*out = v;
	return nlinks + mailtos.n;
}
