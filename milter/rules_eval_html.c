/*
 * rules_eval_html.c - SpamAssassin's HTMLEval tests that rest on the tag
 * structure of each text/html part: which tags occur, how opening and
 * closing tags balance, the part's length and whether it holds images.
 * A small tag scanner does what HTML::Parser does for SpamAssassin here.
 */
#include <ctype.h>

#include "rules_int.h"

#define HTML_TAGS_MAX 256

struct html_part {
	size_t length; /* bytes of HTML source, as SpamAssassin counts it */
	size_t ntags;
	char *tag[HTML_TAGS_MAX]; /* distinct tag names seen, lower-case */
	long inside[HTML_TAGS_MAX];
};

struct html_facts {
	size_t n;
	struct html_part *v;
};

static long *slot(arena_t *a, struct html_part *p, const char *name, size_t n)
{
	for (size_t i = 0; i < p->ntags; i++)
		if (strlen(p->tag[i]) == n && strncmp(p->tag[i], name, n) == 0)
			return &p->inside[i];
	if (p->ntags == HTML_TAGS_MAX)
		return NULL;
	p->tag[p->ntags] = arena_strndup(a, name, n);
	p->inside[p->ntags] = 0;
	return &p->inside[p->ntags++];
}

/* Skips past the first case-insensitive occurrence of needle, or to the end. */
static const char *skip_past(const char *p, const char *end, const char *needle)
{
	size_t nl = strlen(needle);
	for (; p + nl <= end; p++)
		if (strncasecmp(p, needle, nl) == 0)
			return p + nl;
	return end;
}

static void scan(arena_t *a, const char *s, size_t n, struct html_part *p)
{
	p->length = n;
	const char *end = s + n;
	for (const char *q = s; q < end; q++) {
		if (*q != '<')
			continue;
		if (q + 3 < end && q[1] == '!' && q[2] == '-' && q[3] == '-') {
			q = skip_past(q + 4, end, "-->") - 1;
			continue;
		}
		if (q + 1 < end && (q[1] == '!' || q[1] == '?')) {
			const char *gt = memchr(q, '>', (size_t)(end - q));
			q = gt ? gt : end - 1;
			continue;
		}
		bool close = q + 1 < end && q[1] == '/';
		const char *t = q + 1 + close;
		if (t >= end || !isalpha((unsigned char)*t))
			continue; /* a lone '<' is text */
		const char *te = t;
		while (te < end && (isalnum((unsigned char)*te) || *te == ':' || *te == '-' ||
		                    *te == '_' || *te == '.'))
			te++;
		char name[32];
		size_t nl = (size_t)(te - t);
		if (nl >= sizeof(name))
			nl = sizeof(name) - 1;
		for (size_t i = 0; i < nl; i++)
			name[i] = (char)tolower((unsigned char)t[i]);
		name[nl] = '\0';
		/* to the end of the tag, stepping over quoted attribute values */
		const char *r = te;
		char quote = 0;
		for (; r < end; r++) {
			if (quote) {
				if (*r == quote)
					quote = 0;
			} else if (*r == '"' || *r == '\'') {
				if (r > te && (r[-1] == '=' || isspace((unsigned char)r[-1])))
					quote = *r;
			} else if (*r == '>') {
				break;
			}
		}
		long *in = slot(a, p, name, nl);
		if (in != NULL) {
			*in += close ? -1 : 1;
			if (*in < 0)
				*in = 0;
		}
		q = r < end ? r : end - 1;
		/* script and style hold text, not tags */
		if (!close && (strcmp(name, "script") == 0 || strcmp(name, "style") == 0)) {
			char endtag[40];
			snprintf(endtag, sizeof(endtag), "</%s", name);
			const char *c = skip_past(q, end, endtag);
			if (c < end) {
				const char *gt = memchr(c, '>', (size_t)(end - c));
				if (in != NULL && *in > 0)
					(*in)--;
				q = gt ? gt : end - 1;
			} else {
				q = end - 1;
			}
		}
	}
}

static struct html_facts *facts(struct rules_evalenv *e)
{
	if (e->html != NULL)
		return e->html;
	struct html_facts *f = arena_zalloc(e->a, sizeof(*f));
	size_t np = e->mi ? mime_part_count(e->mi) : 0;
	f->v = arena_zalloc(e->a, (np ? np : 1) * sizeof(*f->v));
	for (size_t i = 0; i < np; i++) {
		const mime_part_t *p = mime_part(e->mi, i);
		if (!p->is_html || p->decoded == NULL)
			continue;
		scan(e->a, p->decoded, p->decoded_len, &f->v[f->n++]);
	}
	e->html = f;
	return f;
}

static long inside(const struct html_part *p, const char *tag, bool *present)
{
	for (size_t i = 0; i < p->ntags; i++)
		if (strcmp(p->tag[i], tag) == 0) {
			*present = true;
			return p->inside[i];
		}
	*present = false;
	return 0;
}

static long tag_exists(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	for (size_t i = 0; i < f->n; i++) {
		bool present;
		inside(&f->v[i], ru->eargs[0], &present);
		if (present)
			return 1;
	}
	return 0;
}

/* "< 512", "!= 0", ">= 2": SpamAssassin's comparison expressions. */
static bool compare(double v, const char *expr)
{
	while (isspace((unsigned char)*expr))
		expr++;
	char op[3] = {0};
	size_t k = 0;
	while (k < 2 && strchr("<>=!", expr[k])) {
		op[k] = expr[k];
		k++;
	}
	double x = strtod(expr + k, NULL);
	if (strcmp(op, "<") == 0)
		return v < x;
	if (strcmp(op, "<=") == 0)
		return v <= x;
	if (strcmp(op, ">") == 0)
		return v > x;
	if (strcmp(op, ">=") == 0)
		return v >= x;
	if (strcmp(op, "==") == 0)
		return v == x;
	return v != x; /* "!=" (check_expr allows no other) */
}

static const char *check_expr(const char *expr)
{
	const char *p = expr;
	while (isspace((unsigned char)*p))
		p++;
	static const char *const ops[] = {"<=", ">=", "==", "!=", "<", ">", NULL};
	for (size_t i = 0; ops[i]; i++)
		if (strncmp(p, ops[i], strlen(ops[i])) == 0) {
			char *end;
			strtod(p + strlen(ops[i]), &end);
			while (isspace((unsigned char)*end))
				end++;
			return end != p + strlen(ops[i]) && *end == '\0' ? NULL : "bad comparison";
		}
	return "bad comparison";
}

static const char *check_tag(const struct rule *ru)
{
	for (const char *p = ru->eargs[0]; *p; p++)
		if (!isalnum((unsigned char)*p))
			return "bad tag name";
	return ru->neargs > 1 ? check_expr(ru->eargs[1]) : NULL;
}

static long tag_balance(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	for (size_t i = 0; i < f->n; i++) {
		bool present;
		long v = inside(&f->v[i], ru->eargs[0], &present);
		if (present && compare((double)v, ru->eargs[1]))
			return 1;
	}
	return 0;
}

static long image_only(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	double min = strtod(ru->eargs[0], NULL), max = strtod(ru->eargs[1], NULL);
	for (size_t i = 0; i < f->n; i++) {
		bool img;
		inside(&f->v[i], "img", &img);
		if (img && (double)f->v[i].length > min && (double)f->v[i].length <= max)
			return 1;
	}
	return 0;
}

static const char *check_length(const struct rule *ru)
{
	if (strcmp(ru->eargs[0], "length") != 0)
		return "~not implemented";
	if (ru->neargs == 2)
		return check_expr(ru->eargs[1]);
	return NULL;
}

/* html_eval('length', '< 512') */
static long html_eval(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	for (size_t i = 0; i < f->n; i++)
		if (compare((double)f->v[i].length, ru->eargs[1]))
			return 1;
	return 0;
}

/* html_range('length', min, max): min < value <= max, SpamAssassin's bounds */
static long html_range(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	double min = strtod(ru->eargs[1], NULL), max = strtod(ru->eargs[2], NULL);
	for (size_t i = 0; i < f->n; i++) {
		double v = (double)f->v[i].length;
		if (v > min && v <= max)
			return 1;
	}
	return 0;
}

static const char *check_test(const struct rule *ru)
{
	return strcmp(ru->eargs[0], "html") == 0 ? NULL : "~not implemented";
}

/* html_test('html'): SpamAssassin's HTML_MESSAGE, any text/html part parsed */
static long html_test(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return facts(e)->n > 0;
}

const struct rules_evaldef rules_eval_html_defs[] = {
    {"html_test", html_test, 1, 1, check_test},
    {"html_tag_exists", tag_exists, 1, 1, check_tag},
    {"html_tag_balance", tag_balance, 2, 2, check_tag},
    {"html_image_only", image_only, 2, 2, NULL},
    {"html_eval", html_eval, 2, 2, check_length},
    {"html_range", html_range, 3, 3, check_length},
    {NULL, NULL, 0, 0, NULL},
};
