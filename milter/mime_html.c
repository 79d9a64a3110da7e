/*
 * mime_html.c - HTML to text for the body view, and the URLs of links
 * (see mime.h).
 *
 * One forward scan, no DOM: mail HTML is mostly broken, and all rules need
 * is the text a reader would see (so "<b>V</b>iagra" renders as "Viagra")
 * plus the link targets. Text runs are appended in one go; tags only decide
 * line breaks, skipped contents and which attribute values are URLs.
 */
#include "config.h"

#include "mime.h"

#include <string.h>

/* Longest tag name we tell apart; longer ones are just unknown tags. */
#define HTML_TAG_NAME_BYTES 16
/* Longest entity name looked up ("&thetasym;" is 8). */
#define HTML_ENTITY_NAME_BYTES 10

/* 1: ends a text run; 2: a blank, which a text run may carry if single. */
static const unsigned char h_text_class[256] = {
    ['<'] = 1, ['&'] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1, ['\f'] = 1, ['\v'] = 1, [' '] = 2,
};

struct render {
	mime_t *mi;
	abuf_t *out;
	size_t start; /* out->len when rendering began: never break before it */
	bool space;   /* white space seen since the last text */
	/*
	 * No text since the last break or cell. SpamAssassin's renderer drops
	 * the leading blank of the first text after one, but keeps the blank
	 * of any later one, even at the start of a line: its paragraphs can
	 * start with a space, which anchored body rules see.
	 */
	bool fresh;
	/*
	 * Where "</head" is, once looked for (0: not yet; n: nowhere), so a
	 * message of many unclosed <head> tags is not rescanned for each.
	 */
	size_t head_end;
};

static inline bool h_space(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static inline bool h_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool h_alnum(int c)
{
	return h_alpha(c) || (c >= '0' && c <= '9');
}

static inline int h_lc(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* ------------------------------------------------------------ entities */

static const struct {
	const char *name;
	uint32_t cp;
} entities[] = {
    {"amp", '&'},       {"lt", '<'},        {"gt", '>'},        {"quot", '"'},
    {"apos", '\''},     {"nbsp", 0xa0},     {"copy", 0xa9},     {"reg", 0xae},
    {"trade", 0x2122},  {"hellip", 0x2026}, {"mdash", 0x2014},  {"ndash", 0x2013},
    {"lsquo", 0x2018},  {"rsquo", 0x2019},  {"sbquo", 0x201a},  {"ldquo", 0x201c},
    {"rdquo", 0x201d},  {"bdquo", 0x201e},  {"bull", 0x2022},   {"middot", 0xb7},
    {"euro", 0x20ac},   {"pound", 0xa3},    {"yen", 0xa5},      {"cent", 0xa2},
    {"curren", 0xa4},   {"sect", 0xa7},     {"para", 0xb6},     {"deg", 0xb0},
    {"plusmn", 0xb1},   {"times", 0xd7},    {"divide", 0xf7},   {"laquo", 0xab},
    {"raquo", 0xbb},    {"iexcl", 0xa1},    {"iquest", 0xbf},   {"shy", 0xad},
    {"ordf", 0xaa},     {"ordm", 0xba},     {"sup1", 0xb9},     {"sup2", 0xb2},
    {"sup3", 0xb3},     {"frac14", 0xbc},   {"frac12", 0xbd},   {"frac34", 0xbe},
    {"micro", 0xb5},    {"not", 0xac},      {"macr", 0xaf},     {"acute", 0xb4},
    {"cedil", 0xb8},    {"uml", 0xa8},      {"brvbar", 0xa6},   {"dagger", 0x2020},
    {"Dagger", 0x2021}, {"permil", 0x2030}, {"lsaquo", 0x2039}, {"rsaquo", 0x203a},
    {"ensp", 0x2002},   {"emsp", 0x2003},   {"thinsp", 0x2009}, {"zwnj", 0x200c},
    {"zwj", 0x200d},    {"lrm", 0x200e},    {"rlm", 0x200f},    {"Agrave", 0xc0},
    {"Aacute", 0xc1},   {"Acirc", 0xc2},    {"Atilde", 0xc3},   {"Auml", 0xc4},
    {"Aring", 0xc5},    {"AElig", 0xc6},    {"Ccedil", 0xc7},   {"Egrave", 0xc8},
    {"Eacute", 0xc9},   {"Ecirc", 0xca},    {"Euml", 0xcb},     {"Igrave", 0xcc},
    {"Iacute", 0xcd},   {"Icirc", 0xce},    {"Iuml", 0xcf},     {"ETH", 0xd0},
    {"Ntilde", 0xd1},   {"Ograve", 0xd2},   {"Oacute", 0xd3},   {"Ocirc", 0xd4},
    {"Otilde", 0xd5},   {"Ouml", 0xd6},     {"Oslash", 0xd8},   {"Ugrave", 0xd9},
    {"Uacute", 0xda},   {"Ucirc", 0xdb},    {"Uuml", 0xdc},     {"Yacute", 0xdd},
    {"THORN", 0xde},    {"szlig", 0xdf},    {"agrave", 0xe0},   {"aacute", 0xe1},
    {"acirc", 0xe2},    {"atilde", 0xe3},   {"auml", 0xe4},     {"aring", 0xe5},
    {"aelig", 0xe6},    {"ccedil", 0xe7},   {"egrave", 0xe8},   {"eacute", 0xe9},
    {"ecirc", 0xea},    {"euml", 0xeb},     {"igrave", 0xec},   {"iacute", 0xed},
    {"icirc", 0xee},    {"iuml", 0xef},     {"eth", 0xf0},      {"ntilde", 0xf1},
    {"ograve", 0xf2},   {"oacute", 0xf3},   {"ocirc", 0xf4},    {"otilde", 0xf5},
    {"ouml", 0xf6},     {"oslash", 0xf8},   {"ugrave", 0xf9},   {"uacute", 0xfa},
    {"ucirc", 0xfb},    {"uuml", 0xfc},     {"yacute", 0xfd},   {"thorn", 0xfe},
    {"yuml", 0xff},     {"OElig", 0x152},   {"oelig", 0x153},   {"Scaron", 0x160},
    {"scaron", 0x161},  {"Yuml", 0x178},    {"fnof", 0x192},    {"circ", 0x2c6},
    {"tilde", 0x2dc},   {"larr", 0x2190},   {"rarr", 0x2192},   {"uarr", 0x2191},
    {"darr", 0x2193},   {"hearts", 0x2665}, {"spades", 0x2660}, {"clubs", 0x2663},
    {"diams", 0x2666},  {"infin", 0x221e},  {"ne", 0x2260},     {"le", 0x2264},
    {"ge", 0x2265},     {"alpha", 0x3b1},   {"beta", 0x3b2},    {"pi", 0x3c0},
    {"mu", 0x3bc},      {"check", 0x2713},  {"star", 0x2606},
};

/* HTML5 reads numeric references 0x80-0x9f as windows-1252, as browsers do. */
static const uint16_t ncr_80[32] = {
    0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008d, 0x017d, 0x008f, 0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
};

/*
 * Decodes the character reference at s[0] == '&'. Returns the bytes it
 * spans and sets *cp, or 0 when it is not one (the '&' is then text).
 */
static size_t entity(const char *s, size_t n, uint32_t *cp)
{
	size_t i = 1;

	if (i < n && s[i] == '#') {
		uint32_t v = 0;
		size_t digits = 0;
		bool hex = false;
		i++;
		if (i < n && (s[i] == 'x' || s[i] == 'X')) {
			hex = true;
			i++;
		}
		for (; i < n; i++, digits++) {
			int c = (unsigned char)s[i], d;
			if (c >= '0' && c <= '9')
				d = c - '0';
			else if (hex && h_lc(c) >= 'a' && h_lc(c) <= 'f')
				d = h_lc(c) - 'a' + 10;
			else
				break;
			/* Saturate: anything past U+10FFFF is invalid anyway. */
			if (v <= 0x10ffff)
				v = v * (hex ? 16 : 10) + (uint32_t)d;
		}
		if (digits == 0)
			return 0;
		if (i < n && s[i] == ';')
			i++;
		if (v >= 0x80 && v <= 0x9f)
			v = ncr_80[v - 0x80];
		else if (v == 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
			v = 0xfffd;
		*cp = v;
		return i;
	}
	char name[HTML_ENTITY_NAME_BYTES + 1];
	size_t k = 0;
	while (i < n && h_alnum((unsigned char)s[i]) && k < HTML_ENTITY_NAME_BYTES)
		name[k++] = s[i++];
	if (k == 0)
		return 0;
	name[k] = '\0';
	bool semi = i < n && s[i] == ';';
	/* Without ';' only when the name clearly ends ("&amp " yes, "&ampx" no). */
	if (!semi && i < n && h_alnum((unsigned char)s[i]))
		return 0;
	for (size_t e = 0; e < sizeof(entities) / sizeof(entities[0]); e++) {
		if (entities[e].name[0] == name[0] && !strcmp(entities[e].name, name)) {
			*cp = entities[e].cp;
			return i + (semi ? 1 : 0);
		}
	}
	return 0;
}

/* ------------------------------------------------------------ output */

static void put_text(struct render *r, const char *p, size_t n)
{
	abuf_t *o = r->out;
	if (r->space) {
		/* even first: SpamAssassin keeps the blank of the document's first text */
		if (o->len == r->start ||
		    (o->data[o->len - 1] != ' ' && (!r->fresh || o->data[o->len - 1] != '\n')))
			abuf_putc(o, ' ');
		r->space = false;
	}
	r->fresh = false;
	abuf_append(o, p, n);
}

/*
 * A break or cell ends the text before it: its trailing blanks go, and the
 * next text is the first after a break. Returns whether any text is out.
 */
static bool end_run(struct render *r)
{
	abuf_t *o = r->out;
	r->space = false;
	r->fresh = true;
	while (o->len > r->start && o->data[o->len - 1] == ' ')
		o->len--;
	o->data[o->len] = '\0';
	return o->len > r->start;
}

/* Ends the current line; lines = 2 leaves a blank line (a paragraph). */
static void put_break(struct render *r, unsigned lines)
{
	abuf_t *o = r->out;
	if (!end_run(r))
		return; /* no blank lines before the first text */
	unsigned have = 0;
	while (have < lines && o->len - have > r->start && o->data[o->len - 1 - have] == '\n')
		have++;
	for (; have < lines; have++)
		abuf_putc(o, '\n');
}

/* One more line break, however many the text ends with. */
static void put_newline(struct render *r)
{
	if (end_run(r)) /* no blank lines before the first text */
		abuf_putc(r->out, '\n');
}

/* A cell or list item: one blank, even at the start of a line. */
static void put_cell_space(struct render *r)
{
	if (end_run(r))
		abuf_putc(r->out, ' ');
}

/*
 * A tag or comment ends a text node. White space alone right after a
 * break makes nothing (its blank is dropped); anywhere else it is a blank.
 */
static void end_text_node(struct render *r)
{
	if (r->space) {
		if (r->fresh)
			r->space = false;
		r->fresh = false;
	}
}

/* ------------------------------------------------------------ tags */

static inline bool is(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

/*
 * The white space a tag stands for, opening or closing, as SpamAssassin's
 * HTML renderer writes it, since its body rules run on the paragraphs
 * that result: 3 = one more line break (<br> and <div> add up, so
 * "</div><div>" starts a paragraph), 2 = a paragraph, -1 = a space
 * (cells, list items, headings), 0 = nothing (not even <table> or <tr>).
 * A switch on the first letter: this runs for every tag.
 */
static int tag_break(const char *t)
{
	switch (t[0]) {
	case 'b':
		if (is(t, "br"))
			return 3;
		return is(t, "blockquote") ? 2 : 0;
	case 'd':
		if (is(t, "div"))
			return 3;
		return (is(t, "dt") || is(t, "dd")) ? -1 : 0;
	case 'e': return is(t, "embed") ? -1 : 0;
	case 'h':
		if (t[1] >= '1' && t[1] <= '6' && t[2] == '\0')
			return -1;
		return is(t, "hr") ? 2 : 0;
	case 'l':
		if (is(t, "li"))
			return -1;
		return is(t, "listing") ? 2 : 0;
	case 'p': return (is(t, "p") || is(t, "pre") || is(t, "plaintext")) ? 2 : 0;
	case 't':
		if (is(t, "td") || is(t, "th"))
			return -1;
		return is(t, "title") ? 2 : 0;
	case 'x': return is(t, "xmp") ? 2 : 0;
	default: return 0;
	}
}

/* Finds "</name" (any case) at or after i; returns its offset or n. */
static size_t find_end_tag(const char *s, size_t n, size_t i, const char *name)
{
	size_t nl = strlen(name);
	while (i < n) {
		const char *lt = memchr(s + i, '<', n - i);
		if (lt == NULL)
			return n;
		size_t k = (size_t)(lt - s);
		if (k + 2 + nl <= n && s[k + 1] == '/') {
			size_t j = 0;
			while (j < nl && h_lc((unsigned char)s[k + 2 + j]) == name[j])
				j++;
			if (j == nl && (k + 2 + nl == n || !h_alnum((unsigned char)s[k + 2 + nl])))
				return k;
		}
		i = k + 1;
	}
	return n;
}

/* The offset after the '>' that closes the tag starting at or after i. */
static size_t skip_past_gt(const char *s, size_t n, size_t i)
{
	const char *gt = i < n ? memchr(s + i, '>', n - i) : NULL;
	return gt ? (size_t)(gt - s) + 1 : n;
}

/* The URL attribute a[0..n) is (lower-case), or NULL when it is none. */
static const char *url_attr(const char *a, size_t n)
{
	static const char *const names[] = {"href", "src", "action", "background"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t k = strlen(names[i]);
		if (k != n)
			continue;
		size_t j = 0;
		while (j < k && h_lc((unsigned char)a[j]) == names[i][j])
			j++;
		if (j == k)
			return names[i];
	}
	return NULL;
}

/*
 * An attribute value as the renderer offers it as a URL: entity-decoded
 * into buf (MIME_MAX_URI_BYTES) and cut there, or v itself when it holds
 * no entity or runs past MIME_LONG_URI_BYTES (mime_add_uri() then flags
 * it and keeps its start undecoded); *n becomes the length offered.
 */
static const char *attr_url(const char *v, size_t *n, char *buf)
{
	if (*n > MIME_LONG_URI_BYTES)
		return v;
	if (*n > MIME_MAX_URI_BYTES)
		*n = MIME_MAX_URI_BYTES;
	if (memchr(v, '&', *n) == NULL)
		return v;
	size_t k = 0;
	for (size_t i = 0; i < *n && k + 4 < MIME_MAX_URI_BYTES;) {
		uint32_t cp;
		size_t el = v[i] == '&' ? entity(v + i, *n - i, &cp) : 0;
		if (el == 0) {
			buf[k++] = v[i++];
			continue;
		}
		i += el;
		if (cp < 0x80) {
			buf[k++] = (char)cp;
		} else {
			/* Non-ASCII in a URL: keep it as UTF-8. */
			if (cp < 0x800) {
				buf[k++] = (char)(0xc0 | (cp >> 6));
				buf[k++] = (char)(0x80 | (cp & 0x3f));
			} else if (cp < 0x10000) {
				buf[k++] = (char)(0xe0 | (cp >> 12));
				buf[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
				buf[k++] = (char)(0x80 | (cp & 0x3f));
			} else {
				buf[k++] = (char)(0xf0 | (cp >> 18));
				buf[k++] = (char)(0x80 | ((cp >> 12) & 0x3f));
				buf[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
				buf[k++] = (char)(0x80 | (cp & 0x3f));
			}
		}
	}
	*n = k;
	return buf;
}

/* Offers an attribute value as a URL found as types says. */
static void attr_uri(struct render *r, const char *v, size_t n, uint32_t types)
{
	char buf[MIME_MAX_URI_BYTES];

	if (r->mi == NULL || n == 0)
		return;
	const char *u = attr_url(v, &n, buf);
	mime_add_uri(r->mi, u, n, types);
}

const char *mime_href_uri(arena_t *a, const char *v, size_t n)
{
	char buf[MIME_MAX_URI_BYTES], form[MIME_MAX_URI_BYTES];
	const char *u = attr_url(v, &n, buf);
	size_t k = mime_uri_form(u, n, form, NULL);
	return k > 0 ? arena_strndup(a, form, k) : NULL;
}

/* Handles the markup starting at s[i] == '<'; returns where text resumes. */
static size_t tag(struct render *r, const char *s, size_t n, size_t i)
{
	size_t j = i + 1;
	char name[HTML_TAG_NAME_BYTES];
	size_t k = 0;
	bool end = false;

	if (j >= n) {
		put_text(r, "<", 1);
		return n;
	}
	if (s[j] == '!') {
		if (j + 2 < n && s[j + 1] == '-' && s[j + 2] == '-') {
			/* A comment runs to "-->"; unclosed, it hides the rest (as in browsers). */
			const char *e = j + 3 < n ? memmem(s + j + 3, n - j - 3, "-->", 3) : NULL;
			return e ? (size_t)(e - s) + 3 : n;
		}
		return skip_past_gt(s, n, j);
	}
	if (s[j] == '?')
		return skip_past_gt(s, n, j);
	if (s[j] == '/') {
		end = true;
		j++;
	}
	if (j >= n || !h_alpha((unsigned char)s[j])) {
		if (end)
			return skip_past_gt(s, n, j); /* "</3" and the like: a bogus comment */
		put_text(r, "<", 1);                  /* "a < b" is text */
		return i + 1;
	}
	while (j < n && (h_alnum((unsigned char)s[j]) || s[j] == '-' || s[j] == ':')) {
		if (k + 1 < sizeof(name))
			name[k++] = (char)h_lc((unsigned char)s[j]);
		j++;
	}
	name[k] = '\0';

	/* Attributes, up to the closing '>'. */
	while (j < n) {
		while (j < n && (h_space((unsigned char)s[j]) || s[j] == '/'))
			j++;
		if (j >= n)
			break;
		if (s[j] == '>') {
			j++;
			break;
		}
		size_t a = j;
		while (j < n && !h_space((unsigned char)s[j]) && s[j] != '=' && s[j] != '>' &&
		       !(s[j] == '/' && j + 1 < n && s[j + 1] == '>'))
			j++;
		size_t al = j - a;
		if (al == 0) {
			j++; /* a stray '=': step over it */
			continue;
		}
		while (j < n && h_space((unsigned char)s[j]))
			j++;
		if (j >= n || s[j] != '=')
			continue;
		j++;
		while (j < n && h_space((unsigned char)s[j]))
			j++;
		size_t v, ve;
		if (j < n && (s[j] == '"' || s[j] == '\'')) {
			const char *q = memchr(s + j + 1, s[j], n - j - 1);
			v = j + 1;
			ve = q ? (size_t)(q - s) : n;
			j = q ? ve + 1 : n;
		} else {
			v = j;
			while (j < n && !h_space((unsigned char)s[j]) && s[j] != '>')
				j++;
			ve = j;
		}
		const char *ua = end ? NULL : url_attr(s + a, al);
		if (ua != NULL)
			attr_uri(r, s + v, ve - v, mime_uri_type_of(name, ua));
	}

	if (!end) {
		if (!strcmp(name, "script") || !strcmp(name, "style") || !strcmp(name, "title") ||
		    !strcmp(name, "xml")) {
			/* Contents are not shown; an unclosed one hides the rest. */
			return skip_past_gt(s, n, find_end_tag(s, n, j, name));
		}
		if (!strcmp(name, "head")) {
			/*
			 * Only when it is closed: spam often opens <head> and
			 * never closes it, and dropping the whole message would
			 * hide exactly the text the rules need.
			 */
			if (r->head_end == 0 || (r->head_end < j && r->head_end != n))
				r->head_end = find_end_tag(s, n, j, "head");
			if (r->head_end < n && r->head_end >= j)
				return skip_past_gt(s, n, r->head_end);
		}
	}
	int br = tag_break(name);
	if (br == 3)
		put_newline(r);
	else if (br > 0)
		put_break(r, (unsigned)br);
	else if (br < 0)
		put_cell_space(r);
	return j;
}

/* ------------------------------------------------------------ the scan */

void mime_html_render(mime_t *mi, const char *s, size_t n, abuf_t *out)
{
	struct render r = {.mi = mi, .out = out, .start = out->len, .space = false, .fresh = false};

	abuf_reserve(out, n + 16);
	for (size_t i = 0; i < n;) {
		int c = (unsigned char)s[i];
		if (c == '<') {
			end_text_node(&r);
			i = tag(&r, s, n, i);
		} else if (c == '&') {
			uint32_t cp;
			size_t el = entity(s + i, n - i, &cp);
			if (el == 0) {
				put_text(&r, "&", 1);
				i++;
				continue;
			}
			i += el;
			if (cp == 0xa0 || cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') {
				/* &nbsp; and friends are spacing, which collapses. */
				r.space = true;
			} else {
				put_text(&r, "", 0);
				mime_put_utf8(out, cp);
			}
		} else if (h_space(c)) {
			r.space = true;
			i++;
		} else {
			/*
			 * A text run goes on through single blanks, so a line of
			 * prose is one append rather than one per word.
			 */
			size_t j = i + 1;
			while (j < n) {
				unsigned char k = h_text_class[(unsigned char)s[j]];
				if (k == 0 ||
				    (k == 2 && j + 1 < n && !h_space((unsigned char)s[j + 1]) &&
				     s[j + 1] != '<' && s[j + 1] != '&')) {
					j++;
					continue;
				}
				break;
			}
			put_text(&r, s + i, j - i);
			i = j;
		}
	}
	/* Block ends leave line breaks behind; the text itself ends with one. */
	while (out->len > r.start &&
	       (out->data[out->len - 1] == ' ' || out->data[out->len - 1] == '\n'))
		out->len--;
	out->data[out->len] = '\0';
	if (out->len > r.start)
		abuf_putc(out, '\n');
}
