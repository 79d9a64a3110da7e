/*
 * rules_eval_html.c - SpamAssassin's HTMLEval tests that rest on the tag
 * structure of each text/html part: which tags occur, how opening and
 * closing tags balance, the part's length and whether it holds images,
 * the share of unknown and extra closing tags, words split by tags; and
 * URIEval's and HTTPSMismatch's tests of each anchor's href and text.
 * A small tag scanner does what HTML::Parser does for SpamAssassin here.
 */
#include <ctype.h>
#include <math.h>

#include "dns.h"
#include "rules_int.h"

#define HTML_TAGS_MAX  256
#define HTML_STYLE_MAX 128 /* nesting of text styles followed; deeper ones share the top */

/* A text style: the colours are "#rrggbb", "invalid" or "transparent". */
struct html_style {
	char tag[12];
	char fg[12], bg[12];
};

struct html_part {
	size_t length;        /* bytes of HTML source, as SpamAssassin counts it */
	size_t non_space_len; /* characters of text outside tags, not white space */
	double image_area;    /* of <img> with width and height (800x600 for %) */
	long basefont, max_size;
	bool font_face_bad, form_action_mailto, embeds;
	bool font_low_contrast, font_invalid_color;
	struct html_style *style; /* the stack while scanning */
	size_t nstyle;
	/* texts html_text_match() looks at: each anchor's text ("<img>\n" for
	 * an image in it), each comment as written, each title */
	struct html_texts {
		char **v;
		size_t n, cap;
		size_t last_len, last_room; /* of v[n - 1], the one that grows */
		bool dropped;               /* the text begun last is past HTML_TEXTS_MAX */
	} anchor, comment, title;
	struct html_texts href; /* each anchor's href, trimmed ("" without one) */
	long in_a, in_title;
	/* html_range's ratios: tag events, those of HTML 4 elements, distinct
	 * names and elements, closing tags with nothing open, words split by a
	 * tag (the text before ended in a word character, this one starts so) */
	size_t tags, elements, tags_seen, elements_seen, closed_extra, obfuscation;
	bool text_seen, text_word_end, iframe_src;
	/* the charsets of <meta http-equiv=Content-Type> tags, blank-separated
	 * (html_charset_faraway; the rest is dropped when it is full) */
	char charsets[256];
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

/* HTML 4.01's and XHTML 1.0's elements and three common extensions (SpamAssassin's list), sorted.
 */
static const char *const html4_elements[] = {
    "a",        "abbr",     "acronym",  "address",    "applet",   "area",     "b",        "base",
    "basefont", "bdo",      "big",      "blockquote", "body",     "br",       "button",   "caption",
    "center",   "cite",     "code",     "col",        "colgroup", "dd",       "del",      "dfn",
    "dir",      "div",      "dl",       "dt",         "em",       "fieldset", "font",     "form",
    "frame",    "frameset", "h1",       "h2",         "h3",       "h4",       "h5",       "h6",
    "head",     "hr",       "html",     "i",          "iframe",   "img",      "input",    "ins",
    "isindex",  "kbd",      "label",    "legend",     "li",       "link",     "map",      "menu",
    "meta",     "nobr",     "noframes", "noscript",   "object",   "ol",       "optgroup", "option",
    "p",        "param",    "pre",      "q",          "s",        "samp",     "script",   "select",
    "small",    "span",     "strike",   "strong",     "style",    "sub",      "sup",      "table",
    "tbody",    "td",       "textarea", "tfoot",      "th",       "thead",    "title",    "tr",
    "tt",       "u",        "ul",       "var",        "x-sigsep", "x-tab",
};

static int cmp_name(const void *k, const void *e)
{
	return strcmp(k, *(const char *const *)e);
}

/* An element, or an Office namespace tag ("o:p", "st1:place") SpamAssassin counts as one. */
static bool is_element(const char *name)
{
	if ((name[0] == 'o' && name[1] == ':') ||
	    (strncmp(name, "st", 2) == 0 && isdigit((unsigned char)name[2]) && name[3] == ':'))
		return name[name[0] == 'o' ? 2 : 4] != '\0';
	return bsearch(name, html4_elements, sizeof(html4_elements) / sizeof(html4_elements[0]),
	               sizeof(html4_elements[0]), cmp_name) != NULL;
}

/* Elements whose opening and closing tags put white space into the text. */
static bool is_whitespace_tag(const char *name)
{
	static const char *const ws[] = {
	    "br", "div",        "li",  "th",    "td",      "dt",        "dd",  "p",
	    "hr", "blockquote", "pre", "embed", "listing", "plaintext", "xmp", "title",
	    "h1", "h2",         "h3",  "h4",    "h5",      "h6",        NULL};
	for (size_t i = 0; ws[i]; i++)
		if (strcmp(ws[i], name) == 0)
			return true;
	return false;
}

/*
 * Whether a character counts as part of a word for SpamAssassin's
 * obfuscation count: neither white space nor ASCII punctuation.
 */
static bool word_char(uint32_t c)
{
	if (c >= 0x80)
		return true;
	return !(isspace((int)c) || (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) ||
	         (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e));
}

/* The character an entity at s..e (from '&' to ';') stands for, as far as word_char goes. */
static uint32_t entity_char(const char *s, const char *e)
{
	if (s[1] == '#') {
		bool hex = s[2] == 'x' || s[2] == 'X';
		return (uint32_t)strtoul(s + 2 + hex, NULL, hex ? 16 : 10);
	}
	static const struct {
		const char *name;
		char c;
	} ascii[] = {{"&amp;", '&'},  {"&lt;", '<'},    {"&gt;", '>'},
	             {"&quot;", '"'}, {"&apos;", '\''}, {"&nbsp;", ' '}};
	for (size_t i = 0; i < sizeof(ascii) / sizeof(ascii[0]); i++)
		if ((size_t)(e - s + 1) == strlen(ascii[i].name) &&
		    strncasecmp(s, ascii[i].name, strlen(ascii[i].name)) == 0)
			return (uint32_t)ascii[i].c;
	return 0xe9; /* the other named entities are letters and signs beyond ASCII */
}

/*
 * A text event of HTML::Parser between s and e, for the obfuscation count
 * (its first and last characters, entities decoded).
 */
static void text_event(struct html_part *p, const char *s, const char *e)
{
	if (e <= s)
		return;
	uint32_t first = (unsigned char)*s, last = (unsigned char)e[-1];
	if (*s == '&') {
		const char *sc = memchr(s, ';', (size_t)(e - s) < 10 ? (size_t)(e - s) : 10);
		if (sc != NULL && sc > s + 1)
			first = entity_char(s, sc);
	}
	for (size_t back = 2; e[-1] == ';' && back <= 10 && back <= (size_t)(e - s); back++)
		if (e[-(ptrdiff_t)back] == '&') {
			last = entity_char(e - back, e - 1);
			break;
		}
	/* SpamAssassin makes curly double quotes (U+201C, U+201D) plain ones first */
	if (e - s >= 3 && memcmp(s, "\xe2\x80", 2) == 0 && (s[2] == '\x9c' || s[2] == '\x9d'))
		first = '"';
	if (e - s >= 3 && memcmp(e - 3, "\xe2\x80", 2) == 0 && (e[-1] == '\x9c' || e[-1] == '\x9d'))
		last = '"';
	if (p->text_seen && p->text_word_end && word_char(first))
		p->obfuscation++;
	p->text_seen = true;
	p->text_word_end = word_char(last);
}

/* A tag event, for html_range's ratios. */
static void tag_event(struct html_part *p, const char *name, bool first_seen)
{
	bool el = is_element(name);
	p->tags++;
	p->elements += el;
	p->tags_seen += first_seen;
	p->elements_seen += el && first_seen;
	if (is_whitespace_tag(name)) {
		/* the white space it adds ends the text before */
		p->text_seen = true;
		p->text_word_end = false;
	}
}

/*
 * The charset of a <meta> Content-Type: after a "charset" that starts a
 * word, blanks, '=' and an optional quote, up to a quote (as SpamAssassin's
 * /\bcharset\s*=\s*["']?([^"']+)/i takes it).
 */
static void meta_charset(struct html_part *p, const char *content)
{
	for (const char *c = content; (c = rules_eval_strcasestr(c, "charset")) != NULL; c++) {
		if (c > content && (isalnum((unsigned char)c[-1]) || c[-1] == '_'))
			continue;
		const char *q = c + 7;
		while (isspace((unsigned char)*q))
			q++;
		if (*q++ != '=')
			continue;
		while (isspace((unsigned char)*q))
			q++;
		if (*q == '"' || *q == '\'')
			q++;
		size_t n = strcspn(q, "\"'");
		if (n == 0)
			continue;
		size_t used = strlen(p->charsets);
		if (used + 1 + n < sizeof(p->charsets))
			snprintf(p->charsets + used, sizeof(p->charsets) - used, "%s%.*s",
			         used ? " " : "", (int)n, q);
		return;
	}
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
	if (strcmp(name, "meta") == 0 && attr(a, end, "http-equiv", w, sizeof(w)) &&
	    rules_eval_strcasestr(w, "content-type") != NULL &&
	    attr(a, end, "content", v, sizeof(v)))
		meta_charset(p, v);
	if (strcmp(name, "iframe") == 0 && attr(a, end, "src", v, sizeof(v))) {
		const char *q = v;
		while (isspace((unsigned char)*q))
			q++;
		if (*q != '\0') /* <iframe src=""> points nowhere */
			p->iframe_src = true;
	}
}

/* CSS and HTML colour names (the standard list), sorted for bsearch. */
static const struct color {
	const char *name;
	unsigned rgb;
} colors[] = {
    {"aliceblue", 0xf0f8ff},
    {"antiquewhite", 0xfaebd7},
    {"aqua", 0x00ffff},
    {"aquamarine", 0x7fffd4},
    {"azure", 0xf0ffff},
    {"beige", 0xf5f5dc},
    {"bisque", 0xffe4c4},
    {"black", 0x000000},
    {"blanchedalmond", 0xffebcd},
    {"blue", 0x0000ff},
    {"blueviolet", 0x8a2be2},
    {"brown", 0xa52a2a},
    {"burlywood", 0xdeb887},
    {"cadetblue", 0x5f9ea0},
    {"chartreuse", 0x7fff00},
    {"chocolate", 0xd2691e},
    {"coral", 0xff7f50},
    {"cornflowerblue", 0x6495ed},
    {"cornsilk", 0xfff8dc},
    {"crimson", 0xdc143c},
    {"cyan", 0x00ffff},
    {"darkblue", 0x00008b},
    {"darkcyan", 0x008b8b},
    {"darkgoldenrod", 0xb8860b},
    {"darkgray", 0xa9a9a9},
    {"darkgreen", 0x006400},
    {"darkgrey", 0xa9a9a9},
    {"darkkhaki", 0xbdb76b},
    {"darkmagenta", 0x8b008b},
    {"darkolivegreen", 0x556b2f},
    {"darkorange", 0xff8c00},
    {"darkorchid", 0x9932cc},
    {"darkred", 0x8b0000},
    {"darksalmon", 0xe9967a},
    {"darkseagreen", 0x8fbc8f},
    {"darkslateblue", 0x483d8b},
    {"darkslategray", 0x2f4f4f},
    {"darkslategrey", 0x2f4f4f},
    {"darkturquoise", 0x00ced1},
    {"darkviolet", 0x9400d3},
    {"deeppink", 0xff1493},
    {"deepskyblue", 0x00bfff},
    {"dimgray", 0x696969},
    {"dimgrey", 0x696969},
    {"dodgerblue", 0x1e90ff},
    {"firebrick", 0xb22222},
    {"floralwhite", 0xfffaf0},
    {"forestgreen", 0x228b22},
    {"fuchsia", 0xff00ff},
    {"gainsboro", 0xdcdcdc},
    {"ghostwhite", 0xf8f8ff},
    {"gold", 0xffd700},
    {"goldenrod", 0xdaa520},
    {"gray", 0x808080},
    {"green", 0x008000},
    {"greenyellow", 0xadff2f},
    {"grey", 0x808080},
    {"honeydew", 0xf0fff0},
    {"hotpink", 0xff69b4},
    {"indianred", 0xcd5c5c},
    {"indigo", 0x4b0082},
    {"ivory", 0xfffff0},
    {"khaki", 0xf0e68c},
    {"lavender", 0xe6e6fa},
    {"lavenderblush", 0xfff0f5},
    {"lawngreen", 0x7cfc00},
    {"lemonchiffon", 0xfffacd},
    {"lightblue", 0xadd8e6},
    {"lightcoral", 0xf08080},
    {"lightcyan", 0xe0ffff},
    {"lightgoldenrodyellow", 0xfafad2},
    {"lightgray", 0xd3d3d3},
    {"lightgreen", 0x90ee90},
    {"lightgrey", 0xd3d3d3},
    {"lightpink", 0xffb6c1},
    {"lightsalmon", 0xffa07a},
    {"lightseagreen", 0x20b2aa},
    {"lightskyblue", 0x87cefa},
    {"lightslategray", 0x778899},
    {"lightslategrey", 0x778899},
    {"lightsteelblue", 0xb0c4de},
    {"lightyellow", 0xffffe0},
    {"lime", 0x00ff00},
    {"limegreen", 0x32cd32},
    {"linen", 0xfaf0e6},
    {"magenta", 0xff00ff},
    {"maroon", 0x800000},
    {"mediumaquamarine", 0x66cdaa},
    {"mediumblue", 0x0000cd},
    {"mediumorchid", 0xba55d3},
    {"mediumpurple", 0x9370db},
    {"mediumseagreen", 0x3cb371},
    {"mediumslateblue", 0x7b68ee},
    {"mediumspringgreen", 0x00fa9a},
    {"mediumturquoise", 0x48d1cc},
    {"mediumvioletred", 0xc71585},
    {"midnightblue", 0x191970},
    {"mintcream", 0xf5fffa},
    {"mistyrose", 0xffe4e1},
    {"moccasin", 0xffe4b5},
    {"navajowhite", 0xffdead},
    {"navy", 0x000080},
    {"oldlace", 0xfdf5e6},
    {"olive", 0x808000},
    {"olivedrab", 0x6b8e23},
    {"orange", 0xffa500},
    {"orangered", 0xff4500},
    {"orchid", 0xda70d6},
    {"palegoldenrod", 0xeee8aa},
    {"palegreen", 0x98fb98},
    {"paleturquoise", 0xafeeee},
    {"palevioletred", 0xdb7093},
    {"papayawhip", 0xffefd5},
    {"peachpuff", 0xffdab9},
    {"peru", 0xcd853f},
    {"pink", 0xffc0cb},
    {"plum", 0xdda0dd},
    {"powderblue", 0xb0e0e6},
    {"purple", 0x800080},
    {"red", 0xff0000},
    {"rosybrown", 0xbc8f8f},
    {"royalblue", 0x4169e1},
    {"saddlebrown", 0x8b4513},
    {"salmon", 0xfa8072},
    {"sandybrown", 0xf4a460},
    {"seagreen", 0x2e8b57},
    {"seashell", 0xfff5ee},
    {"sienna", 0xa0522d},
    {"silver", 0xc0c0c0},
    {"skyblue", 0x87ceeb},
    {"slateblue", 0x6a5acd},
    {"slategray", 0x708090},
    {"slategrey", 0x708090},
    {"snow", 0xfffafa},
    {"springgreen", 0x00ff7f},
    {"steelblue", 0x4682b4},
    {"tan", 0xd2b48c},
    {"teal", 0x008080},
    {"thistle", 0xd8bfd8},
    {"tomato", 0xff6347},
    {"turquoise", 0x40e0d0},
    {"violet", 0xee82ee},
    {"wheat", 0xf5deb3},
    {"white", 0xffffff},
    {"whitesmoke", 0xf5f5f5},
    {"yellow", 0xffff00},
    {"yellowgreen", 0x9acd32},
};

static int cmp_color(const void *k, const void *c)
{
	return strcmp(k, ((const struct color *)c)->name);
}

/*
 * A colour value as SpamAssassin's HTML parser reads it: a name, "#hex"
 * (cut to 6 or 3 digits, padded, 3 doubled), rgb(r, g, b) or rgb(p%, ...);
 * anything else is "invalid" (a bare "ff0000" too).
 */
static void color_rgb(const char *v, char out[12])
{
	char c[64];
	size_t n = 0;
	while (isspace((unsigned char)*v))
		v++;
	for (; *v && n < sizeof(c) - 1; v++)
		c[n++] = (char)tolower((unsigned char)*v);
	while (n > 0 && isspace((unsigned char)c[n - 1]))
		n--;
	c[n] = '\0';
	const struct color *k =
	    bsearch(c, colors, sizeof(colors) / sizeof(colors[0]), sizeof(colors[0]), cmp_color);
	if (k != NULL) {
		snprintf(out, 12, "#%06x", k->rgb);
		return;
	}
	bool hexlike = true;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)c[i]) && c[i] != '#')
			hexlike = false;
	unsigned r, g, b;
	char hex[64];
	if (!hexlike) {
		const char *rgb = strstr(c, "rgb(");
		if (rgb == NULL) {
			snprintf(out, 12, "invalid");
			return;
		}
		if (sscanf(rgb, "rgb(%u%%, %u%%, %u%%)", &r, &g, &b) == 3) {
			snprintf(c, sizeof(c), "#%02x%02x%02x", r * 255 / 100, g * 255 / 100,
			         b * 255 / 100);
		} else if (sscanf(rgb, "rgb(%u, %u, %u)", &r, &g, &b) == 3) {
			snprintf(c, sizeof(c), "#%02x%02x%02x", r, g, b);
		} else {
			snprintf(out, 12, "invalid");
			return;
		}
	}
	if (c[0] != '#') {
		snprintf(out, 12, "invalid");
		return;
	}
	size_t h = 0;
	for (const char *q = c; *q && h < sizeof(hex) - 1; q++)
		if (isxdigit((unsigned char)*q))
			hex[h++] = *q;
	if (h > 6)
		h = 6;
	if (h > 3 && h < 6)
		h = 3;
	while (h % 3)
		hex[h++] = '0';
	hex[h] = '\0';
	if (h == 3)
		snprintf(out, 12, "#%c%c%c%c%c%c", hex[0], hex[0], hex[1], hex[1], hex[2], hex[2]);
	else
		snprintf(out, 12, "#%.6s", hex);
}

static const char *const style_tags[] = {"body", "font", "table", "tr",       "th",
                                         "td",   "big",  "small", "basefont", "marquee",
                                         "span", "p",    "div",   "a",        NULL};

static bool is_style_tag(const char *name)
{
	for (size_t i = 0; style_tags[i]; i++)
		if (strcmp(style_tags[i], name) == 0)
			return true;
	return false;
}

static bool in_stack(const struct html_part *p, const char *tag)
{
	for (size_t i = 0; i < p->nstyle; i++)
		if (strcmp(p->style[i].tag, tag) == 0)
			return true;
	return false;
}

/* "color: x; background-color: y; background: z" of a style attribute. */
static void css_colors(const char *css, struct html_style *st, const struct html_style *parent)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", css);
	for (char *save = NULL, *d = strtok_r(buf, ";", &save); d; d = strtok_r(NULL, ";", &save)) {
		while (isspace((unsigned char)*d))
			d++;
		char *colon = strchr(d, ':');
		if (colon == NULL)
			continue;
		*colon = '\0';
		char *v = colon + 1;
		for (char *q = d; *q; q++)
			*q = (char)tolower((unsigned char)*q);
		size_t dl = strlen(d);
		while (dl > 0 && isspace((unsigned char)d[dl - 1]))
			d[--dl] = '\0';
		while (isspace((unsigned char)*v))
			v++;
		char *imp = strstr(v, "!important");
		if (imp)
			*imp = '\0';
		size_t vl = strlen(v);
		while (vl > 0 && (isspace((unsigned char)v[vl - 1]) || v[vl - 1] == '!'))
			v[--vl] = '\0';
		char *dest = strcmp(d, "color") == 0              ? st->fg
		             : strcmp(d, "background-color") == 0 ? st->bg
		                                                  : NULL;
		if (dest != NULL) {
			if (strcasecmp(v, "inherit") == 0)
				continue;
			if (strcasecmp(v, "transparent") == 0)
				snprintf(dest, 12, "transparent");
			else
				color_rgb(v, dest);
		} else if (strcmp(d, "background") == 0) {
			/* the first word of the last layer that is a colour */
			char *layer = strrchr(v, ',');
			layer = layer ? layer + 1 : v;
			for (char *s2 = NULL, *w = strtok_r(layer, " \t", &s2); w;
			     w = strtok_r(NULL, " \t", &s2)) {
				char c[12];
				color_rgb(w, c);
				if (strcmp(c, "invalid") != 0) {
					memcpy(st->bg, c, 12);
					break;
				}
			}
		}
	}
	if (strcmp(st->bg, "transparent") == 0)
		memcpy(st->bg, parent->bg, 12);
	if (strcmp(st->fg, "transparent") == 0)
		memcpy(st->fg, st->bg, 12);
}

/* SpamAssassin's text_style(): the colours each opening or closing tag sets. */
static void style_tag(arena_t *a, struct html_part *p, const char *name, bool close, const char *at,
                      const char *end)
{
	char tag[12];
	snprintf(tag, sizeof(tag), "%.11s", strcmp(name, "th") == 0 ? "td" : name);
	if (!is_style_tag(tag))
		return;
	if (p->style == NULL) {
		p->style = arena_zalloc(a, HTML_STYLE_MAX * sizeof(*p->style));
		p->style[0] = (struct html_style){"", "#000000", "#ffffff"};
		p->nstyle = 1;
	}
	if (close) {
		if (strcmp(tag, "body") == 0 || !in_stack(p, tag))
			return;
		while (p->nstyle > 1) {
			bool last = strcmp(p->style[--p->nstyle].tag, tag) == 0;
			if (last)
				break;
		}
		return;
	}
	if (strcmp(tag, "basefont") == 0)
		return;
	if ((strcmp(tag, "td") == 0 || strcmp(tag, "tr") == 0) && in_stack(p, tag))
		while (p->nstyle > 1) {
			const char *top = p->style[p->nstyle - 1].tag;
			if (strcmp(top, "font") == 0 || strcmp(top, "td") == 0 ||
			    (tag[1] == 'r' && strcmp(top, "tr") == 0))
				p->nstyle--;
			else
				break;
		}
	struct html_style st = p->style[p->nstyle - 1];
	memcpy(st.tag, tag, sizeof(st.tag));
	char v[256];
	bool font = strcmp(tag, "font") == 0, body = strcmp(tag, "body") == 0;
	if ((font && attr(at, end, "color", v, sizeof(v))) ||
	    (body && attr(at, end, "text", v, sizeof(v))))
		color_rgb(v, st.fg);
	if (!font && !body && strcmp(tag, "marquee") != 0 && strcmp(tag, "big") != 0 &&
	    strcmp(tag, "small") != 0 && attr(at, end, "style", v, sizeof(v)))
		css_colors(v, &st, &p->style[p->nstyle - 1]);
	if (p->nstyle < HTML_STYLE_MAX)
		p->style[p->nstyle++] = st;
	else
		p->style[HTML_STYLE_MAX - 1] = st;
}

/* SpamAssassin's html_font_invisible(), for a run of text that is not all white space. */
static void text_run(struct html_part *p, const char *s, const char *e)
{
	bool visible = false;
	for (const char *q = s; q < e && !visible; q++) {
		if (strchr(" \t\n\r\f\v", *q))
			continue;
		if ((unsigned char)q[0] == 0xc2 && q + 1 < e && (unsigned char)q[1] == 0xa0) {
			q++;
			continue;
		}
		if (*q == '&' && (strncmp(q, "&nbsp;", 6) == 0 || strncmp(q, "&#160;", 6) == 0)) {
			q += 5;
			continue;
		}
		visible = true;
	}
	if (!visible)
		return;
	const struct html_style *st = p->style && p->nstyle ? &p->style[p->nstyle - 1] : NULL;
	const char *fg = st ? st->fg : "#000000", *bg = st ? st->bg : "#ffffff";
	size_t fl = strlen(fg), bl = strlen(bg);
	if (strcmp(fg + (fl > 6 ? fl - 6 : 0), bg + (bl > 6 ? bl - 6 : 0)) == 0) {
		p->font_low_contrast = true;
		return;
	}
	unsigned r1, g1, b1, r2, g2, b2;
	if (fl == 7 && bl == 7 && sscanf(fg, "#%2x%2x%2x", &r1, &g1, &b1) == 3 &&
	    sscanf(bg, "#%2x%2x%2x", &r2, &g2, &b2) == 3) {
		double r = 0.2126 * ((double)r1 - r2), g = 0.7152 * ((double)g1 - g2),
		       b = 0.0722 * ((double)b1 - b2);
		if (sqrt(r * r + g * g + b * b) < 12) {
			p->font_low_contrast = true;
			return;
		}
	}
	if (strcmp(fg, "invalid") == 0 || strcmp(bg, "invalid") == 0)
		p->font_invalid_color = true;
}

#define HTML_TEXTS_MAX 256 /* anchors, comments or titles kept per part */

static void texts_new(arena_t *a, struct html_texts *t, const char *s, size_t n)
{
	/* A text past the limit is not kept, nor are its runs (texts_add). */
	t->dropped = t->n == HTML_TEXTS_MAX;
	if (t->dropped)
		return;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		char **v = arena_alloc(a, cap * sizeof(char *));
		if (t->n)
			memcpy(v, t->v, t->n * sizeof(char *));
		t->v = v;
		t->cap = cap;
	}
	t->v[t->n] = arena_strndup(a, s, n);
	t->last_len = strlen(t->v[t->n]);
	t->last_room = n + 1;
	t->n++;
}

/*
 * Appends to the last text (anchors and titles grow while their tag is
 * open). The text grows into room that doubles: a copy of the whole text
 * per run made one <a> with 64K one-byte runs (a 256 KB part) take 2 GB of
 * arena. The text is read as a C string: a run is kept up to its first NUL.
 */
static void texts_add(arena_t *a, struct html_texts *t, const char *s, size_t n)
{
	if (t->n == 0 || t->dropped || n == 0)
		return;
	size_t ol = t->last_len;
	if (ol + n > 64 * 1024)
		return;
	n = strnlen(s, n);
	char *v = t->v[t->n - 1];
	if (ol + n + 1 > t->last_room) {
		size_t room = 2 * t->last_room > ol + n + 1 ? 2 * t->last_room : ol + n + 1;
		char *nv = arena_alloc(a, room);
		memcpy(nv, v, ol);
		t->v[t->n - 1] = v = nv;
		t->last_room = room;
	}
	memcpy(v + ol, s, n);
	v[ol + n] = '\0';
	t->last_len = ol + n;
}

/* A run of text between tags, for the anchor and the title it sits in. */
static void add_text(arena_t *a, struct html_part *p, const char *s, const char *e)
{
	if (e <= s)
		return;
	if (p->in_a > 0)
		texts_add(a, &p->anchor, s, (size_t)(e - s));
	if (p->in_title > 0)
		texts_add(a, &p->title, s, (size_t)(e - s));
}

/*
 * An anchor's href as SpamAssassin keys its anchor texts: white space
 * (and no-break spaces) trimmed, byte order marks dropped.
 */
static void anchor_href(arena_t *a, struct html_part *p, const char *at, const char *end)
{
	char v[MIME_MAX_URI_BYTES];
	if (!attr(at, end, "href", v, sizeof(v)))
		v[0] = '\0';
	char *b = v, *e = v + strlen(v);
	while (b < e && (isspace((unsigned char)*b) || memcmp(b, "\xc2\xa0", 2) == 0))
		b += isspace((unsigned char)*b) ? 1 : 2;
	while (e > b &&
	       (isspace((unsigned char)e[-1]) || (e - b >= 2 && memcmp(e - 2, "\xc2\xa0", 2) == 0)))
		e -= isspace((unsigned char)e[-1]) ? 1 : 2;
	size_t k = 0;
	for (char *q = b; q < e; q++) {
		if (e - q >= 3 && memcmp(q, "\xef\xbb\xbf", 3) == 0) {
			q += 2;
			continue;
		}
		b[k++] = *q;
	}
	texts_new(a, &p->href, b, k);
}

static void scan(arena_t *a, const char *s, size_t n, struct html_part *p)
{
	p->length = n;
	p->basefont = 3;
	p->max_size = 3;
	const char *end = s + n;
	const char *text = s; /* start of the current run of text */
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
			text_event(p, text, q);
			text_run(p, text, q);
			add_text(a, p, text, q);
			const char *c0 = q;
			q = skip_past(q + 4, end, "-->") - 1;
			texts_new(a, &p->comment, c0, (size_t)(q + 1 - c0));
			text = q + 1;
			continue;
		}
		if (q + 1 < end && (q[1] == '!' || q[1] == '?')) {
			text_event(p, text, q);
			text_run(p, text, q);
			add_text(a, p, text, q);
			const char *c0 = q;
			const char *gt = memchr(q, '>', (size_t)(end - q));
			q = gt ? gt : end - 1;
			/* "<!x>" is a comment to HTML::Parser, "<!doctype ...>" a declaration */
			if (q[0] == '>' && c0[1] == '!' && strncasecmp(c0, "<!doctype", 9) != 0)
				texts_new(a, &p->comment, c0, (size_t)(q + 1 - c0));
			if (strncasecmp(c0, "<!doctype", 9) == 0) {
				p->tags++; /* SpamAssassin counts the declaration as an element */
				p->elements++;
			}
			text = q + 1;
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
		text_event(p, text, q);
		text_run(p, text, q);
		add_text(a, p, text, q);
		if (!close)
			tag_facts(p, name, te, r);
		if (strcmp(name, "a") == 0) {
			if (!close) {
				anchor_href(a, p, te, r);
				texts_new(a, &p->anchor, "", 0);
				p->in_a++;
			} else if (p->in_a > 0) {
				p->in_a--;
			}
		} else if (strcmp(name, "title") == 0) {
			if (!close) {
				texts_new(a, &p->title, "", 0);
				p->in_title++;
			} else if (p->in_title > 0) {
				p->in_title--;
			}
		} else if (strcmp(name, "img") == 0 && !close && p->in_a > 0) {
			texts_add(a, &p->anchor, "<img>\n", 6);
		}
		style_tag(a, p, name, close, te, r);
		size_t known = p->ntags;
		long *in = slot(a, p, name, nl);
		tag_event(p, name, p->ntags > known);
		if (in != NULL) {
			*in += close ? -1 : 1;
			if (*in < 0) {
				*in = 0;
				p->closed_extra++;
			}
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
				tag_event(p, name, false);
				q = gt ? gt : end - 1;
			} else {
				q = end - 1;
			}
		}
		text = q + 1;
	}
	text_event(p, text, end);
	text_run(p, text, end);
	add_text(a, p, text, end);
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
	double min = ru->eargn[0], max = ru->eargn[1];
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
	static const char *const ok[] = {"length",
	                                 "max_size",
	                                 "closed_extra_ratio",
	                                 "bad_tag_ratio",
	                                 "non_element_ratio",
	                                 "obfuscation_ratio",
	                                 NULL};
	size_t i = 0;
	while (ok[i] && strcmp(ru->eargs[0], ok[i]) != 0)
		i++;
	if (ok[i] == NULL)
		return "~not implemented";
	if (ru->neargs == 2)
		return check_expr(ru->eargs[1]);
	return NULL;
}

static const char *check_test(const struct rule *ru)
{
	static const char *const ok[] = {"html",   "font_face_bad",     "form_action_mailto",
	                                 "embeds", "font_low_contrast", "font_invalid_color",
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
		    (strcmp(t, "embeds") == 0 && p->embeds) ||
		    (strcmp(t, "font_low_contrast") == 0 && p->font_low_contrast) ||
		    (strcmp(t, "font_invalid_color") == 0 && p->font_invalid_color))
			return 1;
	}
	return 0;
}

static long image_ratio(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	double min = ru->eargn[0], max = ru->eargn[1];
	for (size_t i = 0; i < f->n; i++) {
		if (f->v[i].image_area <= 0)
			continue;
		double r = (double)f->v[i].non_space_len / f->v[i].image_area;
		if (r > min && r <= max)
			return 1;
	}
	return 0;
}

/*
 * The value html_eval and html_range test, false when SpamAssassin leaves
 * it undefined (a ratio of a part without tags, or without what it counts).
 */
static bool value_of(const struct html_part *p, const char *test, double *v)
{
	double tags = (double)p->tags;
	if (strcmp(test, "max_size") == 0)
		*v = (double)p->max_size;
	else if (strcmp(test, "length") == 0)
		*v = (double)p->length;
	else if (p->tags == 0)
		return false;
	else if (strcmp(test, "closed_extra_ratio") == 0)
		*v = (double)p->closed_extra / tags;
	else if (strcmp(test, "bad_tag_ratio") == 0 && p->elements > 0)
		*v = (tags - (double)p->elements) / tags;
	else if (strcmp(test, "non_element_ratio") == 0 && p->elements_seen > 0)
		*v = (double)(p->tags_seen - p->elements_seen) / (double)p->tags_seen;
	else if (strcmp(test, "obfuscation_ratio") == 0 && p->obfuscation > 0)
		*v = (double)p->obfuscation / tags;
	else
		return false;
	return true;
}

/* html_eval('length', '< 512') */
static long html_eval(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	double v;
	for (size_t i = 0; i < f->n; i++)
		if (value_of(&f->v[i], ru->eargs[0], &v) && compare(v, ru->eargs[1]))
			return 1;
	return 0;
}

/* html_range(test, min, max): min < value <= max; max "inf" leaves it open */
static long html_range(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	double min = ru->eargn[1];
	bool open = strcmp(ru->eargs[2], "inf") == 0;
	double max = open ? 0 : ru->eargn[2];
	double v;
	for (size_t i = 0; i < f->n; i++)
		if (value_of(&f->v[i], ru->eargs[0], &v) && v > min && (open || v <= max))
			return 1;
	return 0;
}

static const char *check_text_match(const struct rule *ru)
{
	const char *t = ru->eargs[0];
	if (strcmp(t, "anchor") != 0 && strcmp(t, "comment") != 0 && strcmp(t, "title") != 0)
		return "~not implemented";
	int err;
	PCRE2_SIZE off;
	pcre2_code *c =
	    pcre2_compile((PCRE2_SPTR)ru->eargs[1], PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
	if (c == NULL)
		return "bad regex";
	pcre2_code_free(c);
	return NULL;
}

/* html_text_match(anchor|comment|title, regex): some such text matches. */
static long text_match(struct rules_evalenv *e, const struct rule *ru)
{
	struct html_facts *f = facts(e);
	const char *t = ru->eargs[0];
	pcre2_code *c = NULL;
	pcre2_match_data *md = NULL;
	/* a rule file's regex: under the engine's limits, as regex rules are */
	pcre2_match_context *mc = rules_match_context(e->r);
	long hit = 0;
	for (size_t i = 0; i < f->n && hit == 0; i++) {
		const struct html_texts *x = t[0] == 'a'   ? &f->v[i].anchor
		                             : t[0] == 'c' ? &f->v[i].comment
		                                           : &f->v[i].title;
		for (size_t k = 0; k < x->n && hit == 0; k++) {
			if (c == NULL) {
				/* compiled per message: a handful of rules use this */
				int err;
				PCRE2_SIZE off;
				c = rules_re_compile(ru->eargs[1], PCRE2_ZERO_TERMINATED, 0, NULL,
				                     &err, &off);
				if (c == NULL)
					return -1;
				md = pcre2_match_data_create_from_pattern(c, NULL);
			}
			int rc = pcre2_match(c, (PCRE2_SPTR)x->v[k], strlen(x->v[k]), 0, 0, md, mc);
			if (rc > 0)
				hit = 1;
			else if (rc != PCRE2_ERROR_NOMATCH)
				hit = -1; /* a limit: undecided, no hit */
		}
	}
	pcre2_match_data_free(md);
	pcre2_code_free(c);
	return hit;
}

/* check_iframe_src: an <iframe> that loads something. */
static long iframe_src(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	struct html_facts *f = facts(e);
	for (size_t i = 0; i < f->n; i++)
		if (f->v[i].iframe_src)
			return 1;
	return 0;
}

/* Characters of UTF-8 text (continuation bytes not counted). */
static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* html_title_subject_ratio(r): some title more than r times as long as the Subject. */
static long title_subject_ratio(struct rules_evalenv *e, const struct rule *ru)
{
	const char *subj = rules_eval_header(e, "Subject");
	if (subj == NULL || *subj == '\0')
		return 0;
	double sl = (double)utf8_chars(subj), ratio = ru->eargn[0];
	struct html_facts *f = facts(e);
	for (size_t i = 0; i < f->n; i++) {
		double max = 0;
		const struct html_texts *t = &f->v[i].title;
		for (size_t k = 0; k < t->n; k++)
			if (t->v[k][0] != '\0' && strcmp(t->v[k], "0") != 0 &&
			    (double)utf8_chars(t->v[k]) / sl > max)
				max = (double)utf8_chars(t->v[k]) / sl;
		if (max > ratio)
			return 1;
	}
	return 0;
}

/*
 * html_charset_faraway: in some HTML part, the <meta> charsets outside
 * ok_locales are at least as many as those inside (never with "all").
 */
static long charset_faraway(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	if (e->r->ok_locales == NULL)
		return 0;
	const struct html_facts *f = facts(e);
	for (size_t i = 0; i < f->n; i++) {
		size_t ok = 0, bad = 0;
		char cs[sizeof(f->v[i].charsets)];
		for (const char *s = f->v[i].charsets; *s;) {
			s += strspn(s, " \t");
			size_t n = strcspn(s, " \t");
			if (n == 0)
				break;
			snprintf(cs, sizeof(cs), "%.*s", (int)n, s);
			s += n;
			if (rules_eval_charset_ok(e->r, cs))
				ok++;
			else
				bad++;
		}
		if (bad > 0 && bad >= ok)
			return 1;
	}
	return 0;
}

static const char *check_numbers(const struct rule *ru)
{
	for (size_t i = 0; i < ru->neargs; i++) {
		char *end;
		strtod(ru->eargs[i], &end);
		if (end == ru->eargs[i] || *end != '\0')
			return "expected numbers";
	}
	return NULL;
}

/* ---------------------------------------------------------------- URIEval, HTTPSMismatch */

/*
 * check_https_ip_mismatch: an anchor to an IPv4 address whose text shows
 * an https: link that is not to such an address.
 */
static long https_ip_mismatch(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	static struct rules_eval_re ip_href = {
	    .pattern = "^https?:/*(?:[^@/]+@)?\\d+\\.\\d+\\.\\d+\\.\\d+",
	    .options = PCRE2_CASELESS};
	static struct rules_eval_re https = {.pattern = "https:", .options = PCRE2_CASELESS};
	struct html_facts *f = facts(e);
	for (size_t i = 0; i < f->n; i++) {
		const struct html_part *p = &f->v[i];
		for (size_t k = 0; k < p->anchor.n && k < p->href.n; k++) {
			const char *h = p->href.v[k], *t = p->anchor.v[k];
			if (!rules_eval_re(&ip_href, h, strlen(h)))
				continue;
			/* the https form of the address itself is no mismatch */
			if (strncasecmp(t, "https:", 6) == 0 &&
			    rules_eval_re(&ip_href, t, strlen(t)))
				continue;
			if (rules_eval_re(&https, t, strlen(t)))
				return 1;
		}
	}
	return 0;
}

/* check_uri_truncated: a URL longer than SpamAssassin keeps. */
static long uri_truncated(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return e->mi != NULL && (mime_flags(e->mi) & MIME_F_LONG_URI) != 0;
}

/*
 * The registered domain of the host after "https?://" at the start of s
 * (anchored) or anywhere in it, into out; an IP address as written when
 * keep_ip. NULL when there is none, or the host is no valid domain.
 */
static const char *link_domain(const char *s, bool anchored, bool keep_ip, char *out, size_t cap)
{
	static struct rules_eval_re at_start = {.pattern = "^https?://([^/:?#]+)",
	                                        .options = PCRE2_CASELESS};
	static struct rules_eval_re in_text = {.pattern = "https://([^\\s/:?#]+)",
	                                       .options = PCRE2_CASELESS};
	size_t st, len;
	if (!rules_eval_re_find(anchored ? &at_start : &in_text, s, strlen(s), 0, &st, &len))
		return NULL;
	char host[256];
	if (len >= sizeof(host))
		return NULL;
	memcpy(host, s + st, len);
	host[len] = '\0';
	uint8_t ip[16];
	bool v4;
	if (dns_ip_parse(host, ip, &v4)) {
		if (!keep_ip || len >= cap)
			return NULL;
		memcpy(out, host, len + 1);
		return out;
	}
	return dns_registered_domain(host, out, cap);
}

/*
 * check_https_http_mismatch(min, max): in one HTML part, an anchor whose
 * text shows an https: link to another registered domain than its href's,
 * among min to max - 1 distinct hrefs to domains (SpamAssassin's count).
 */
static long https_http_mismatch(struct rules_evalenv *e, const struct rule *ru)
{
	double min = ru->neargs > 0 ? ru->eargn[0] : 0;
	bool bounded = ru->neargs > 1;
	double max = bounded ? ru->eargn[1] : 0;
	if (min == 0)
		min = 1;
	struct html_facts *f = facts(e);
	for (size_t i = 0; i < f->n; i++) {
		const struct html_part *p = &f->v[i];
		size_t na = p->anchor.n < p->href.n ? p->anchor.n : p->href.n;
		size_t anchors = 0;
		bool hit = false;
		for (size_t k = 0; k < na; k++) {
			const char *h = p->href.v[k];
			bool first = true; /* SpamAssassin counts each distinct href once */
			for (size_t j = 0; j < k && first; j++)
				first = strcmp(p->href.v[j], h) != 0;
			char dom[256], https[256];
			if (link_domain(h, true, false, dom, sizeof(dom)) == NULL)
				continue;
			anchors += first;
			const char *t = p->anchor.v[k];
			if (!hit && link_domain(t, false, true, https, sizeof(https)) != NULL &&
			    strcasecmp(dom, https) != 0)
				hit = true;
		}
		if (hit && (double)anchors >= min && (!bounded || (double)anchors < max))
			return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- uri_detail */

/*
 * URIDetail's rules: "uri_detail NAME key =~ /re/ ..." hits when one link
 * meets every criterion, a criterion being met when some value of its key
 * matches (=~) or does not match (!~): raw (the link as found), type (where:
 * "a", "img", "parsed", ... see mime_uri_types(); "schemeless" too for a
 * "www." name in the text), cleaned (the link and its
 * canonical variants), text (the texts of the <a> tags linking to it), host
 * and domain (of the cleaned links, the domain by the Public Suffix List).
 * rules_parse.c gives the criteria as (key, op, pattern, options) groups.
 */
struct ud_link {
	const struct rules_uri_detail *d;
	const char **hosts, **domains, **texts;
	size_t nhosts, ndomains, ntexts, captexts;
};

struct ud_facts {
	struct ud_link *v;
	size_t n;
};

/*
 * SpamAssassin's uri_to_domain: the host of a cleaned link, and its domain;
 * false if none, as for a name whose top-level domain is not one.
 */
static bool ud_host(arena_t *a, const char *u, const char **host, const char **domain)
{
	if (strncasecmp(u, "javascript:", 11) == 0)
		return false;
	const char *p = u;
	while (isalpha((unsigned char)*p))
		p++;
	if (*p == ':' && p > u) {
		p++;
		for (int k = 0; k < 2 && *p == '/'; k++)
			p++;
	} else {
		p = u;
	}
	/* user information: up to the last '@' before any '/' */
	size_t n = strcspn(p, "#");
	const char *lim = memchr(p, '/', n), *last_at = NULL;
	if (lim == NULL)
		lim = p + n;
	for (const char *q = p; q < lim; q++)
		if (*q == '@')
			last_at = q;
	if (last_at != NULL)
		p = last_at + 1;
	n = strcspn(p, "/?#");
	size_t c = n;
	while (c > 0 && isdigit((unsigned char)p[c - 1]))
		c--;
	if (c > 0 && p[c - 1] == ':')
		n = c - 1;
	if (n > 0 && p[n - 1] == '.')
		n--;
	if (n == 0 || n >= DNS_QNAME_MAX_BYTES || memchr(p, '%', n) != NULL)
		return false;
	char *h = arena_strndup(a, p, n);
	for (char *q = h; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	uint8_t ip[16];
	bool v4;
	char reg[DNS_QNAME_MAX_BYTES];
	if (dns_ip_parse(h, ip, &v4) && v4) {
		*domain = h;
	} else if (dns_tld_known(h) && dns_registered_domain(h, reg, sizeof(reg)) != NULL) {
		*domain = arena_strdup(a, reg);
	} else {
		return false;
	}
	*host = h;
	return true;
}

static void ud_push(arena_t *a, const char ***v, size_t *n, size_t *cap, const char *s)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 4;
		const char **nv = arena_alloc(a, nc * sizeof(*nv));
		if (*n)
			memcpy(nv, *v, *n * sizeof(*nv));
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = s;
}

static struct ud_facts *ud_facts(struct rules_evalenv *e)
{
	struct ud_facts *f = e->cache[RULES_EVAL_CACHE_URIDETAIL];
	if (f != NULL)
		return f;
	arena_t *a = e->a;
	f = arena_zalloc(a, sizeof(*f));
	e->cache[RULES_EVAL_CACHE_URIDETAIL] = f;
	struct rules_uri_detail *d;
	f->n = rules_uri_details(a, e->mi, e->r, rules_match_context(e->r), &d);
	f->v = arena_zalloc(a, (f->n ? f->n : 1) * sizeof(*f->v));
	/* the links by raw form, for the anchors' hrefs: at most half full */
	size_t nslots = 16;
	while (nslots < 2 * f->n)
		nslots *= 2;
	size_t *slot = arena_zalloc(a, nslots * sizeof(*slot));
	size_t kept = 0;
	for (size_t i = 0; i < f->n; i++) {
		struct ud_link *l = &f->v[kept];
		memset(l, 0, sizeof(*l));
		l->d = &d[i];
		size_t hc = 0, dc = 0;
		for (size_t k = 0; k < d[i].ncleaned; k++) {
			const char *host, *dom;
			if (!ud_host(a, d[i].cleaned[k], &host, &dom))
				continue;
			ud_push(a, &l->hosts, &l->nhosts, &hc, host);
			ud_push(a, &l->domains, &l->ndomains, &dc, dom);
		}
		/* a link only written in the text counts when it names a domain */
		if (d[i].types == MIME_URI_PARSED && l->ndomains == 0)
			continue;
		kept++;
		size_t j = rules_hash_bytes(d[i].raw, strlen(d[i].raw)) & (nslots - 1);
		while (slot[j] != 0)
			j = (j + 1) & (nslots - 1);
		slot[j] = kept;
	}
	f->n = kept;
	struct html_facts *h = facts(e);
	for (size_t pi = 0; pi < h->n; pi++) {
		const struct html_part *p = &h->v[pi];
		for (size_t k = 0; k < p->anchor.n && k < p->href.n; k++) {
			const char *key = mime_href_uri(a, p->href.v[k], strlen(p->href.v[k]));
			if (key == NULL)
				continue; /* no link the MIME module keeps */
			const char *www = strncasecmp(key, "www.", 4) == 0
			                      ? arena_sprintf(a, "http://%s", key)
			                      : key;
			for (size_t j = rules_hash_bytes(www, strlen(www)) & (nslots - 1);
			     slot[j] != 0; j = (j + 1) & (nslots - 1)) {
				struct ud_link *l = &f->v[slot[j] - 1];
				if (strcmp(l->d->raw, www) != 0)
					continue;
				bool dup = false;
				for (size_t t = 0; t < l->ntexts && !dup; t++)
					dup = strcmp(l->texts[t], p->anchor.v[k]) == 0;
				if (!dup)
					ud_push(a, &l->texts, &l->ntexts, &l->captexts,
					        p->anchor.v[k]);
				break;
			}
		}
	}
	return f;
}

static const char *check_uri_detail(const struct rule *ru)
{
	if (ru->neargs % 4 != 0)
		return "bad criteria";
	for (size_t i = 0; i + 3 < ru->neargs; i += 4) {
		int err;
		PCRE2_SIZE off;
		pcre2_code *c =
		    pcre2_compile((PCRE2_SPTR)ru->eargs[i + 2], PCRE2_ZERO_TERMINATED,
		                  (uint32_t)strtoul(ru->eargs[i + 3], NULL, 10), &err, &off, NULL);
		if (c == NULL) {
			static _Thread_local char msg[200];
			PCRE2_UCHAR m[120];
			pcre2_get_error_message(err, m, sizeof(m));
			snprintf(msg, sizeof(msg), "%s: regex error at offset %zu: %s",
			         ru->eargs[i], (size_t)off, (const char *)m);
			return msg;
		}
		pcre2_code_free(c);
	}
	return NULL;
}

/* Some value of vals meets the criterion: matches (=~) or does not (!~); -1 at a limit. */
static int ud_some(pcre2_code *c, bool neg, const char *const *vals, size_t n, pcre2_match_data *md,
                   pcre2_match_context *mc)
{
	for (size_t i = 0; i < n; i++) {
		int rc = pcre2_match(c, (PCRE2_SPTR)vals[i], strlen(vals[i]), 0, 0, md, mc);
		if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
			return -1;
		if ((rc >= 0) != neg)
			return 1;
	}
	return 0;
}

static long uri_detail(struct rules_evalenv *e, const struct rule *ru)
{
	size_t nc = ru->neargs / 4;
	if (nc == 0 || e->mi == NULL)
		return 0;
	struct ud_facts *f = ud_facts(e);
	if (f->n == 0)
		return 0;
	/* compiled per message with links: few rules use this */
	pcre2_code *code[6] = {NULL};
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	pcre2_match_context *mc = rules_match_context(e->r);
	long hit = 0;
	for (size_t k = 0; k < nc && k < 6; k++) {
		int err;
		PCRE2_SIZE off;
		code[k] = rules_re_compile(ru->eargs[4 * k + 2], PCRE2_ZERO_TERMINATED,
		                           (uint32_t)strtoul(ru->eargs[4 * k + 3], NULL, 10),
		                           e->r->cctx, &err, &off);
		if (code[k] == NULL) {
			hit = -1;
			goto out;
		}
	}
	for (size_t i = 0; i < f->n && hit == 0; i++) {
		const struct ud_link *l = &f->v[i];
		const char *types[MIME_URI_NTYPES + 1];
		size_t ntypes = 0;
		for (unsigned b = 0; b < MIME_URI_NTYPES; b++)
			if (l->d->types & (1u << b))
				types[ntypes++] = mime_uri_type_name(b);
		if (l->d->schemeless)
			types[ntypes++] = "schemeless";
		int all = 1;
		for (size_t k = 0; k < nc && k < 6 && all == 1; k++) {
			const char *key = ru->eargs[4 * k];
			bool neg = ru->eargs[4 * k + 1][0] == '!';
			const char *const *vals;
			size_t n;
			switch (key[0]) {
			case 'r':
				vals = &l->d->raw;
				n = 1;
				break;
			case 't':
				if (key[1] == 'y') {
					vals = types;
					n = ntypes;
				} else {
					vals = l->texts;
					n = l->ntexts;
				}
				break;
			case 'c':
				vals = l->d->cleaned;
				n = l->d->ncleaned;
				break;
			case 'd':
				vals = l->domains;
				n = l->ndomains;
				break;
			default:
				vals = l->hosts;
				n = l->nhosts;
				break;
			}
			all = ud_some(code[k], neg, vals, n, md, mc);
		}
		if (all == 1) {
			hit = 1;
			e->detail = arena_sprintf(e->a, "%s", l->d->raw);
		} else if (all < 0) {
			hit = -1;
		}
	}
out:
	for (size_t k = 0; k < 6; k++)
		pcre2_code_free(code[k]);
	pcre2_match_data_free(md);
	return hit;
}

const struct rules_evaldef rules_eval_html_defs[] = {
    {"check_https_ip_mismatch", https_ip_mismatch, 0, 0, NULL},
    {"check_uri_truncated", uri_truncated, 0, 0, NULL},
    {"check_https_http_mismatch", https_http_mismatch, 0, 2, check_numbers},
    {"check_iframe_src", iframe_src, 0, 0, NULL},
    {"html_title_subject_ratio", title_subject_ratio, 1, 1, check_numbers},
    {"html_charset_faraway", charset_faraway, 0, 0, NULL},
    {"html_text_match", text_match, 2, 2, check_text_match},
    {"html_test", html_test, 1, 1, check_test},
    {"html_image_ratio", image_ratio, 2, 2, NULL},
    {"html_tag_exists", tag_exists, 1, 1, check_tag},
    {"html_tag_balance", tag_balance, 2, 2, check_tag},
    {"html_image_only", image_only, 2, 2, NULL},
    {"html_eval", html_eval, 2, 2, check_length},
    {"html_range", html_range, 3, 3, check_length},
    /* a uri_detail line's rule (rules_parse.c): four arguments a criterion */
    {"check_uri_detail", uri_detail, 0, 24, check_uri_detail},
    {NULL, NULL, 0, 0, NULL},
};
