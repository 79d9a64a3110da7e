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
	size_t length;        /* bytes of HTML source, as SpamAssassin counts it */
	size_t non_space_len; /* characters of text outside tags, not white space */
	double image_area;    /* of <img> with width and height (800x600 for %) */
	long basefont, max_size;
	bool font_face_bad, form_action_mailto, embeds;
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

/*
 * The value of attribute name between p and end (a tag's attributes),
 * unquoted, in buf; false when the tag does not have it.
 */
static bool attr(const char *p, const char *end, const char *name, char *buf, size_t cap)
{
	size_t nl = strlen(name);
	while (p < end) {
		while (p < end && (isspace((unsigned char)*p) || *p == '/'))
			p++;
		const char *k = p;
		while (p < end && !isspace((unsigned char)*p) && *p != '=' && *p != '>')
			p++;
		size_t kl = (size_t)(p - k);
		while (p < end && isspace((unsigned char)*p))
			p++;
		const char *v = p, *ve = p;
		if (p < end && *p == '=') {
			p++;
			while (p < end && isspace((unsigned char)*p))
				p++;
			if (p < end && (*p == '"' || *p == '\'')) {
				char q = *p++;
				v = p;
				while (p < end && *p != q)
					p++;
				ve = p;
				if (p < end)
					p++;
			} else {
				v = p;
				while (p < end && !isspace((unsigned char)*p) && *p != '>')
					p++;
				ve = p;
			}
		}
		if (kl == 0 && p == k) {
			p++;
			continue;
		}
		if (kl == nl && strncasecmp(k, name, nl) == 0) {
			size_t vl = (size_t)(ve - v) < cap - 1 ? (size_t)(ve - v) : cap - 1;
			memcpy(buf, v, vl);
			buf[vl] = '\0';
			return true;
		}
	}
	return false;
}

static bool face_ok(const char *f)
{
	static struct rules_eval_re ok = {
	    .pattern =
	        "^\\s*[\"'.]?[a-z ][a-z -]*[a-z]\\d?[\"']?(?:,\\s*[\"']?[a-z][a-z -]*[a-z]\\d?["
	        "\"']?)*;?$",
	    .options = PCRE2_CASELESS};
	return rules_eval_re(&ok, f, strlen(f));
}

/* A dimension as SpamAssassin reads it: digits, "%" of an 800x600 screen; 200 if unusable. */
static double dimension(const char *v, double percent_of)
{
	char *end;
	if (!isdigit((unsigned char)*v))
		return 200;
	double x = strtod(v, &end);
	if (*end == '%' && end[1] == '\0')
		x *= percent_of;
	else if (*end != '\0')
		return 200;
	return x > 0 ? x : 200;
}

/* What SpamAssassin's HTML parser notes of one opening tag (name lower-case). */
static void tag_facts(struct html_part *p, const char *name, const char *a, const char *end)
{
	char v[256];
	if (strcmp(name, "basefont") == 0 && attr(a, end, "size", v, sizeof(v))) {
		const char *q = v;
		while (isspace((unsigned char)*q))
			q++;
		if (isdigit((unsigned char)*q))
			p->basefont = strtol(q, NULL, 10);
		return;
	}
	if (strcmp(name, "font") == 0) {
		if (attr(a, end, "size", v, sizeof(v))) {
			const char *q = v;
			while (isspace((unsigned char)*q))
				q++;
			long size = -1;
			if ((*q == '+' || *q == '-') && isdigit((unsigned char)q[1]))
				size = p->basefont + strtol(q, NULL, 10);
			else if (isdigit((unsigned char)*q))
				size = strtol(q, NULL, 10);
			if (size > p->max_size)
				p->max_size = size;
		}
		if (attr(a, end, "face", v, sizeof(v)) && !face_ok(v))
			p->font_face_bad = true;
	}
	char w[64], h[64];
	if (strcmp(name, "img") == 0 && attr(a, end, "width", w, sizeof(w)) &&
	    attr(a, end, "height", h, sizeof(h)))
		p->image_area += dimension(w, 8) * dimension(h, 6);
	if (strcmp(name, "form") == 0 && attr(a, end, "action", v, sizeof(v)) &&
	    rules_eval_strcasestr(v, "mailto:") != NULL)
		p->form_action_mailto = true;
	if (strcmp(name, "object") == 0 || strcmp(name, "embed") == 0)
		p->embeds = true;
}

static void scan(arena_t *a, const char *s, size_t n, struct html_part *p)
{
	p->length = n;
	p->basefont = 3;
	p->max_size = 3;
	const char *end = s + n;
	for (const char *q = s; q < end; q++) {
		if (*q != '<') {
			/* text: characters (UTF-8 lead bytes), an entity counting as one */
			if (*q == '&') {
				const char *sc = q + 1;
				while (sc < end && sc - q < 10 &&
				       (isalnum((unsigned char)*sc) || *sc == '#'))
					sc++;
				if (sc < end && *sc == ';' && sc > q + 1) {
					if (strncmp(q, "&nbsp;", 6) != 0)
						p->non_space_len++;
					q = sc;
					continue;
				}
			}
			if (!isspace((unsigned char)*q) && ((unsigned char)*q & 0xC0) != 0x80)
				p->non_space_len++;
			continue;
		}
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
		if (!close)
			tag_facts(p, name, te, r);
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
	if (strcmp(ru->eargs[0], "length") != 0 && strcmp(ru->eargs[0], "max_size") != 0)
		return "~not implemented";
	if (ru->neargs == 2)
		return check_expr(ru->eargs[1]);
	return NULL;
}

static const char *check_test(const struct rule *ru)
{
	static const char *const ok[] = {"html", "font_face_bad", "form_action_mailto", "embeds",
	                                 NULL};
	for (size_t i = 0; ok[i]; i++)
		if (strcmp(ru->eargs[0], ok[i]) == 0)
			return NULL;
	return "~not implemented";
}

/* html_test('html') is SpamAssassin's HTML_MESSAGE: any text/html part parsed. */
static long html_test(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	const char *t = ru->eargs[0];
	for (size_t i = 0; i < f->n; i++) {
		const struct html_part *p = &f->v[i];
		if (strcmp(t, "html") == 0 ||
		    (strcmp(t, "font_face_bad") == 0 && p->font_face_bad) ||
		    (strcmp(t, "form_action_mailto") == 0 && p->form_action_mailto) ||
		    (strcmp(t, "embeds") == 0 && p->embeds))
			return 1;
	}
	return 0;
}

static long image_ratio(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	double min = strtod(ru->eargs[0], NULL), max = strtod(ru->eargs[1], NULL);
	for (size_t i = 0; i < f->n; i++) {
		if (f->v[i].image_area <= 0)
			continue;
		double r = (double)f->v[i].non_space_len / f->v[i].image_area;
		if (r > min && r <= max)
			return 1;
	}
	return 0;
}

static double value_of(const struct html_part *p, const char *test)
{
	return strcmp(test, "max_size") == 0 ? (double)p->max_size : (double)p->length;
}

/* html_eval('length', '< 512') */
static long html_eval(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	for (size_t i = 0; i < f->n; i++)
		if (compare(value_of(&f->v[i], ru->eargs[0]), ru->eargs[1]))
			return 1;
	return 0;
}

/* html_range(test, min, max): min < value <= max; max "inf" leaves it open */
static long html_range(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	double min = strtod(ru->eargs[1], NULL);
	bool open = strcmp(ru->eargs[2], "inf") == 0;
	double max = open ? 0 : strtod(ru->eargs[2], NULL);
	for (size_t i = 0; i < f->n; i++) {
		double v = value_of(&f->v[i], ru->eargs[0]);
		if (v > min && (open || v <= max))
			return 1;
	}
	return 0;
}

const struct rules_evaldef rules_eval_html_defs[] = {
    {"html_test", html_test, 1, 1, check_test},
    {"html_image_ratio", image_ratio, 2, 2, NULL},
    {"html_tag_exists", tag_exists, 1, 1, check_tag},
    {"html_tag_balance", tag_balance, 2, 2, check_tag},
    {"html_image_only", image_only, 2, 2, NULL},
    {"html_eval", html_eval, 2, 2, check_length},
    {"html_range", html_range, 3, 3, check_length},
    {NULL, NULL, 0, 0, NULL},
};
