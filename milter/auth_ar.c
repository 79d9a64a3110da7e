/*
 * auth_ar.c - the text the authentication checks read: Authentication-
 * Results values (RFC 8601: the authserv-id, and a method's result and
 * properties) and the From field's domain. Pure functions, no I/O.
 * Written here because none of the libraries Sift links (libopendkim,
 * libopendmarc, libspf2) exports a reader of RFC 8601's grammar; fuzzed by
 * tests/fuzz/fuzz_authres.c.
 */
#include "config.h"

#include "auth.h"
#include "dns.h"
#include "xalloc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const result_names[AUTH_N_RESULTS] = {
    "none", "pass", "fail", "softfail", "neutral", "temperror", "permerror"};

const char *auth_result_name(auth_result_t r)
{
	return r < AUTH_N_RESULTS ? result_names[r] : "?";
}

auth_result_t auth_result_parse(const char *s, size_t n)
{
	for (int r = 0; r < AUTH_N_RESULTS; r++)
		if (strlen(result_names[r]) == n && strncasecmp(s, result_names[r], n) == 0)
			return (auth_result_t)r;
	/* RFC 7601's "hardfail" and the older names of the errors. */
	if (n == 8 && strncasecmp(s, "hardfail", n) == 0)
		return AUTH_FAIL;
	if (n == 9 && strncasecmp(s, "temperror", n) == 0)
		return AUTH_TEMPERROR;
	if (n == 6 && strncasecmp(s, "policy", n) == 0)
		return AUTH_FAIL;
	return AUTH_N_RESULTS;
}

/*
 * A copy of value without comments (nested parentheses, quoted pairs) and
 * with quoted strings unquoted, so the rest is tokens, '=', '/', ';'.
 * Unbalanced input ends the copy where it breaks.
 */
static size_t strip_cfws(const char *v, char *out, size_t cap)
{
	size_t n = 0;
	int depth = 0;
	bool quoted = false;
	for (; *v && n + 1 < cap; v++) {
		char c = *v;
		if (c == '\\' && v[1] && (depth > 0 || quoted)) {
			v++;
			if (quoted)
				out[n++] = *v;
			continue;
		}
		if (quoted) {
			if (c == '"')
				quoted = false;
			else
				out[n++] = c;
			continue;
		}
		if (c == '(') {
			depth++;
			continue;
		}
		if (c == ')' && depth > 0) {
			depth--;
			if (depth == 0)
				out[n++] = ' ';
			continue;
		}
		if (depth > 0)
			continue;
		if (c == '"') {
			quoted = true;
			continue;
		}
		out[n++] = (c == '\t' || c == '\r' || c == '\n') ? ' ' : c;
	}
	out[n] = '\0';
	return n;
}

/*
 * The stripped copy of a whole value, on the heap (free()): a fixed buffer
 * would end the value early, and whitespace, empty comments or a long
 * display name before the part that matters would hide it (a forged
 * authserv-id kept, a From domain not judged by DMARC).
 */
static char *strip_dup(const char *v)
{
	size_t cap = strlen(v) + 1;
	char *buf = xalloc_malloc(cap);
	strip_cfws(v, buf, cap);
	return buf;
}

const char *auth_ar_servid(const char *value, char *out, size_t out_bytes)
{
	char *buf = strip_dup(value);
	const char *p = buf + strspn(buf, " ");
	size_t n = strcspn(p, " ;");
	if (n == 0 || n >= out_bytes) {
		free(buf);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)p[i]);
	out[n] = '\0';
	free(buf);
	return out;
}

/*
 * The next resinfo of method among the segments strtok_r() has left in
 * *save: the start of its result (past "method[/version] ="), or NULL when
 * none is left.
 */
static char *ar_next(char **save, const char *method)
{
	size_t mlen = strlen(method);
	char *seg;
	while ((seg = strtok_r(NULL, ";", save)) != NULL) {
		char *p = seg + strspn(seg, " ");
		/* method [ "/" version ] "=" result */
		size_t tl = strcspn(p, " =/");
		if (tl != mlen || strncasecmp(p, method, mlen) != 0)
			continue;
		p += tl;
		if (*p == '/')
			p += 1 + strcspn(p + 1, " =");
		p += strspn(p, " ");
		if (*p != '=')
			continue;
		p++;
		return p + strspn(p, " ");
	}
	return NULL;
}

/* The result at p (from ar_next()) and, with out, its property prop lower-cased ("" if absent). */
static auth_result_t ar_take(const char *p, const char *prop, char *out, size_t out_bytes)
{
	if (out && out_bytes)
		out[0] = '\0';
	size_t rl = strcspn(p, " ");
	auth_result_t r = auth_result_parse(p, rl);
	if (r == AUTH_N_RESULTS || !prop || !out || !out_bytes)
		return r;
	/* ptype "." property [CFWS] "=" pvalue, anywhere after the result */
	size_t pl = strlen(prop);
	for (const char *q = p + rl; *q; q++) {
		if (strncasecmp(q, prop, pl) != 0 || (q > p && q[-1] != ' '))
			continue;
		const char *e = q + pl;
		e += strspn(e, " ");
		if (*e != '=')
			continue;
		e++;
		e += strspn(e, " ");
		size_t vl = strcspn(e, " ");
		if (vl >= out_bytes)
			vl = out_bytes - 1;
		for (size_t i = 0; i < vl; i++)
			out[i] = (char)tolower((unsigned char)e[i]);
		out[vl] = '\0';
		break;
	}
	return r;
}

auth_result_t auth_ar_result(const char *value, const char *method, size_t nth, const char *prop,
                             char *out, size_t out_bytes)
{
	if (out && out_bytes)
		out[0] = '\0';
	char *buf = strip_dup(value), *save = NULL, *p;
	auth_result_t r = AUTH_N_RESULTS;
	/* the first segment is the authserv-id and version */
	if (strtok_r(buf, ";", &save) != NULL)
		while ((p = ar_next(&save, method)) != NULL)
			if (nth-- == 0) {
				r = ar_take(p, prop, out, out_bytes);
				break;
			}
	free(buf);
	return r;
}

size_t auth_ar_each(const char *value, const char *method, const char *prop, char *out,
                    size_t out_bytes, auth_ar_fn fn, void *ud)
{
	char *buf = strip_dup(value), *save = NULL, *p;
	size_t n = 0;
	if (strtok_r(buf, ";", &save) != NULL)
		while ((p = ar_next(&save, method)) != NULL) {
			auth_result_t r = ar_take(p, prop, out, out_bytes);
			if (r == AUTH_N_RESULTS)
				break;
			n++;
			if (!fn(r, out, ud))
				break;
		}
	free(buf);
	return n;
}

static const char *from_domain(const char *buf, char *out, size_t out_bytes);

const char *auth_from_domain(const char *value, char *out, size_t out_bytes)
{
	char *buf = strip_dup(value);
	const char *r = from_domain(buf, out, out_bytes);
	free(buf);
	return r;
}

static const char *from_domain(const char *buf, char *out, size_t out_bytes)
{
	/* More than one mailbox (a list, or a group) is not one author domain. */
	const char *lt = strchr(buf, '<');
	const char *addr = buf, *end;
	if (lt != NULL) {
		if (strchr(lt + 1, '<') != NULL)
			return NULL;
		addr = lt + 1;
		end = strchr(addr, '>');
		if (end == NULL)
			return NULL;
	} else {
		addr += strspn(addr, " ");
		end = addr + strcspn(addr, " ");
	}
	if (memchr(buf, ',', strlen(buf)) != NULL && lt == NULL)
		return NULL;
	const char *at = NULL;
	for (const char *p = addr; p < end; p++)
		if (*p == '@')
			at = p;
	if (at == NULL)
		return NULL;
	size_t n = (size_t)(end - at - 1);
	while (n > 0 && at[n] == ' ')
		n--;
	if (n == 0 || n >= out_bytes)
		return NULL;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)at[1 + i]);
	out[n] = '\0';
	while (n > 0 && out[n - 1] == '.')
		out[--n] = '\0';
	return dns_valid_hostname(out) ? out : NULL;
}
