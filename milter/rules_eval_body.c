/*
 * rules_eval_body.c - SpamAssassin's BodyEval tests in C: the body's raw
 * length, the share of blank lines, and how far the HTML and the text of
 * a multipart/alternative say different things, stock-tip field names.
 * Follows
 * Mail::SpamAssassin::Plugin::BodyEval.
 */
#include <ctype.h>

#include "rules_int.h"

static bool number(const char *s)
{
	char *end;
	strtod(s, &end);
	return end != s && *end == '\0';
}

static const char *check_numbers(const struct rule *ru)
{
	for (size_t i = 0; i < ru->neargs; i++)
		if (!number(ru->eargs[i]) && strcmp(ru->eargs[i], "undef") != 0)
			return "expected numbers";
	return NULL;
}

/* check_body_length(N): the body as received is at most N bytes. */
static long body_length(struct rules_evalenv *e, const struct rule *ru)
{
	size_t n = 0;
	msg_body(e->m, &n);
	return (double)n <= ru->eargn[0];
}

/* check_blank_line_ratio(min, max, minlines): percent of blank lines of the decoded text. */
static long blank_line_ratio(struct rules_evalenv *e, const struct rule *ru)
{
	double min = ru->eargn[0], max = ru->eargn[1];
	long minlines = ru->neargs > 2 ? strtol(ru->eargs[2], NULL, 10) : 1;
	if (minlines < 1)
		minlines = 1;
	size_t n = 0;
	const char *s = e->mi ? mime_rawbody(e->mi, &n) : NULL;
	long lines = 0, blank = 0;
	for (size_t off = 0; s && off < n;) {
		const char *nl = memchr(s + off, '\n', n - off);
		size_t len = nl ? (size_t)(nl - (s + off)) + 1 : n - off;
		bool empty = true;
		for (size_t i = 0; i < len && empty; i++)
			if (!isspace((unsigned char)s[off + i]))
				empty = false;
		lines++;
		blank += empty;
		off += len;
	}
	double ratio = lines < minlines ? -1 : 100.0 * (double)blank / (double)lines;
	return (min == 0 && ratio <= max) || (ratio > min && ratio <= max);
}

/*
 * tvd_vertical_words(min, max): the largest share of spaces to other
 * characters in a body paragraph (white space runs made one space, as body
 * rules see them) longer than 5; text written one letter per line.
 */
static long vertical_words(struct rules_evalenv *e, const struct rule *ru)
{
	double min = ru->eargn[0], max = ru->eargn[1];
	if (max >= 100)
		max = 101;
	size_t n = 0;
	const char *s = e->mi ? mime_body(e->mi, &n) : NULL;
	long best = -1;
	for (size_t off = 0; s && off < n;) {
		/* one paragraph: up to a line holding only white space */
		size_t len = 0, spaces = 0, end = off;
		bool prev_space = true, line_blank = true;
		size_t line_start = off;
		for (; end < n; end++) {
			char c = s[end];
			if (c == '\n') {
				if (line_blank && end > line_start)
					break;
				if (line_blank && end == line_start && end > off)
					break;
				line_start = end + 1;
				line_blank = true;
			} else if (!isspace((unsigned char)c)) {
				line_blank = false;
			}
			if (isspace((unsigned char)c)) {
				if (!prev_space) {
					spaces++;
					len++;
				}
				prev_space = true;
			} else {
				if (((unsigned char)c & 0xC0) != 0x80)
					len++;
				prev_space = false;
			}
		}
		if (prev_space && spaces > 0) {
			spaces--; /* the run at the end is cut */
			len--;
		}
		if (len > 5) {
			size_t non = len - spaces;
			long pct = (spaces > non || non == 0) ? 100 : (long)(100 * spaces / non);
			if (pct > best)
				best = pct;
		}
		off = end + 1;
	}
	return (double)best >= min && (double)best < max;
}

/* ---------------------------------------------------------------- multipart/alternative */

/*
 * The distinct words of a part and how often each occurs. A spam's HTML
 * part can hold thousands of distinct words, so they are found through a
 * hash set (slot: index + 1, 0 empty), not by comparing with every word
 * before them.
 */
struct words {
	char **w;
	size_t *len;
	long *count;
	size_t n, cap;
	uint32_t *slot; /* nslots, a power of two, at most half full */
	size_t nslots;
	bool img;
};

/* The slot of the word p[0..n), or the empty slot where it would go. */
static uint32_t *word_slot(const struct words *ws, const char *p, size_t n)
{
	size_t mask = ws->nslots - 1;
	for (size_t i = rules_hash_bytes(p, n) & mask;; i = (i + 1) & mask) {
		uint32_t k = ws->slot[i];
		if (k == 0 || (ws->len[k - 1] == n && memcmp(ws->w[k - 1], p, n) == 0))
			return &ws->slot[i];
	}
}

/* Index of the word p[0..n) in ws, or SIZE_MAX. */
static size_t word_find(const struct words *ws, const char *p, size_t n)
{
	if (ws->nslots == 0)
		return SIZE_MAX;
	uint32_t k = *word_slot(ws, p, n);
	return k ? k - 1 : SIZE_MAX;
}

static void add_word(arena_t *a, struct words *ws, const char *p, size_t n)
{
	bool word = false;
	for (size_t i = 0; i < n && !word; i++)
		word = isalnum((unsigned char)p[i]) || p[i] == '_' || (unsigned char)p[i] >= 0x80;
	if (!word)
		return;
	size_t found = word_find(ws, p, n);
	if (found != SIZE_MAX) {
		ws->count[found]++;
		return;
	}
	if (ws->n == ws->cap) {
		size_t cap = ws->cap ? ws->cap * 2 : 64;
		char **w = arena_alloc(a, cap * sizeof(char *));
		size_t *len = arena_alloc(a, cap * sizeof(size_t));
		long *c = arena_alloc(a, cap * sizeof(long));
		if (ws->n) {
			memcpy(w, ws->w, ws->n * sizeof(char *));
			memcpy(len, ws->len, ws->n * sizeof(size_t));
			memcpy(c, ws->count, ws->n * sizeof(long));
		}
		ws->w = w;
		ws->len = len;
		ws->count = c;
		ws->cap = cap;
		/* the set: twice the words' room, filled again from the words */
		ws->nslots = 2 * cap;
		ws->slot = arena_alloc(a, ws->nslots * sizeof(uint32_t));
		memset(ws->slot, 0, ws->nslots * sizeof(uint32_t));
		for (size_t i = 0; i < ws->n; i++)
			*word_slot(ws, ws->w[i], ws->len[i]) = (uint32_t)(i + 1);
	}
	ws->w[ws->n] = arena_strndup(a, p, n);
	ws->len[ws->n] = n;
	ws->count[ws->n++] = 1;
	*word_slot(ws, p, n) = (uint32_t)ws->n;
}

static void split_words(arena_t *a, struct words *ws, const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		while (i < n && isspace((unsigned char)s[i]))
			i++;
		size_t b = i;
		while (i < n && !isspace((unsigned char)s[i]))
			i++;
		if (i > b)
			add_word(a, ws, s + b, i - b);
	}
}

/* Inline tags join the text around them; every other tag breaks words, as a browser does. */
static bool inline_tag(const char *t, size_t n)
{
	static const char *const tags[] = {"a",    "b",      "i",     "u",    "em",  "strong",
	                                   "span", "font",   "small", "big",  "sup", "sub",
	                                   "s",    "strike", "tt",    "abbr", NULL};
	for (size_t i = 0; tags[i]; i++)
		if (strlen(tags[i]) == n && strncasecmp(tags[i], t, n) == 0)
			return true;
	return false;
}

/* The words of an HTML part's text: tags, comments, script and style out; entities decoded. */
static void html_words(arena_t *a, struct words *ws, const char *s, size_t n)
{
	abuf_t b;
	abuf_init(&b, a, n + 1);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '<') {
			if (i + 3 < n && strncmp(s + i, "<!--", 4) == 0) {
				const char *e = NULL;
				for (size_t k = i + 4; k + 2 < n && e == NULL; k++)
					if (strncmp(s + k, "-->", 3) == 0)
						e = s + k + 2;
				i = e ? (size_t)(e - s) : n;
				continue;
			}
			size_t t = i + 1 + (i + 1 < n && s[i + 1] == '/');
			size_t te = t;
			while (te < n && isalnum((unsigned char)s[te]))
				te++;
			const char *gt = memchr(s + i, '>', n - i);
			if (te == t && s[t] != '!' && s[t] != '?') {
				abuf_append(&b, "<", 1); /* a lone '<' is text */
				continue;
			}
			if (te - t == 3 && strncasecmp(s + t, "img", 3) == 0)
				ws->img = true;
			bool skip = s[i + 1] != '/' &&
			            ((te - t == 6 && strncasecmp(s + t, "script", 6) == 0) ||
			             (te - t == 5 && strncasecmp(s + t, "style", 5) == 0));
			if (!inline_tag(s + t, te - t))
				abuf_append(&b, " ", 1);
			i = gt ? (size_t)(gt - s) : n;
			if (skip) {
				const char *end = NULL;
				for (size_t k = i; k + 2 < n && end == NULL; k++)
					if (s[k] == '<' && s[k + 1] == '/' &&
					    strncasecmp(s + k + 2, s + t, te - t) == 0)
						end = s + k;
				if (end) {
					const char *g2 = memchr(end, '>', (size_t)(s + n - end));
					i = g2 ? (size_t)(g2 - s) : n;
				} else {
					i = n;
				}
			}
			continue;
		}
		if (s[i] == '&') {
			static const struct {
				const char *ent, *txt;
			} ents[] = {{"&nbsp;", " "}, {"&amp;", "&"},   {"&lt;", "<"},
			            {"&gt;", ">"},   {"&quot;", "\""}, {"&#39;", "'"}};
			bool done = false;
			for (size_t k = 0; k < sizeof(ents) / sizeof(ents[0]) && !done; k++) {
				size_t el = strlen(ents[k].ent);
				if (i + el <= n && strncasecmp(s + i, ents[k].ent, el) == 0) {
					abuf_puts(&b, ents[k].txt);
					i += el - 1;
					done = true;
				}
			}
			if (done)
				continue;
		}
		abuf_append(&b, s + i, 1);
	}
	split_words(a, ws, b.data, b.len);
}

struct madiff {
	double diff;
	size_t html, text;
};

static struct madiff ma_difference(struct rules_evalenv *e)
{
	struct madiff r = {0, 0, 0};
	size_t np = e->mi ? mime_part_count(e->mi) : 0;
	/* SpamAssassin leaves out a calendar invitation: alternative of HTML and text/calendar */
	if (np == 3 && strcmp(mime_part(e->mi, 0)->content_type, "multipart/alternative") == 0 &&
	    strcmp(mime_part(e->mi, 1)->content_type, "text/html") == 0 &&
	    strcmp(mime_part(e->mi, 2)->content_type, "text/calendar") == 0)
		return r;
	for (size_t i = 0; i < np; i++) {
		const mime_part_t *ma = mime_part(e->mi, i);
		if (strcmp(ma->content_type, "multipart/alternative") != 0)
			continue;
		struct words html = {0}, text = {0};
		for (size_t k = i + 1; k < np && mime_part(e->mi, k)->depth > ma->depth; k++) {
			const mime_part_t *p = mime_part(e->mi, k);
			if (strncmp(p->content_type, "text", 4) != 0 || p->decoded == NULL)
				continue;
			if (p->is_html) {
				html.img = false;
				size_t before = html.n;
				html_words(e->a, &html, p->decoded, p->decoded_len);
				if (before == 0 && html.n == 0 && html.img)
					add_word(e->a, &html, "\n_",
					         2); /* an image-only part counts as one word */
			} else {
				split_words(e->a, &text, p->decoded, p->decoded_len);
			}
		}
		if (html.n == 0)
			continue;
		r.html = html.n;
		r.text = text.n;
		size_t left = html.n;
		for (size_t h = 0; h < html.n; h++) {
			size_t t = word_find(&text, html.w[h], html.len[h]);
			if (t != SIZE_MAX && html.count[h] - text.count[t] < 1)
				left--;
		}
		double diff = (double)left / (double)html.n * 100;
		if (diff > r.diff)
			r.diff = diff;
	}
	return r;
}

static struct madiff madiff_cached(struct rules_evalenv *e)
{
	struct madiff *c = e->cache[RULES_EVAL_CACHE_MADIFF];
	if (c == NULL) {
		c = arena_alloc(e->a, sizeof(*c));
		*c = ma_difference(e);
		e->cache[RULES_EVAL_CACHE_MADIFF] = c;
	}
	return *c;
}

/* multipart_alternative_difference(min, max): percent of the HTML's words not in the text. */
static long ma_diff(struct rules_evalenv *e, const struct rule *ru)
{
	struct madiff d = madiff_cached(e);
	double min = ru->eargn[0];
	return (min == 0 || d.diff > min) &&
	       (strcmp(ru->eargs[1], "undef") == 0 || d.diff <= ru->eargn[1]);
}

/* multipart_alternative_difference_count(ratio, minhtml) */
static long ma_diff_count(struct rules_evalenv *e, const struct rule *ru)
{
	struct madiff d = madiff_cached(e);
	if ((double)d.html <= ru->eargn[1])
		return 0;
	return (double)d.text / (double)d.html > ru->eargn[0];
}

#define STOCK_KEYS_MAX 32 /* more distinct field names than the pattern can tell apart */

/*
 * SpamAssassin's count of distinct stock-tip field names ("Symbol: XYZ",
 * "Target Price: 2.10") in the message's first text/plain part: each
 * "name: value" line start, its name lower-cased with all but a-z dropped.
 */
static long stock_count(struct rules_evalenv *e)
{
	/* the whole "name: x" in group 1, so the search goes on after it as Perl's //g */
	static struct rules_eval_re field = {.pattern = "^\\s*([^:\\s][^:\\n]{2,29}\\s*:\\s*\\S)",
	                                     .options = PCRE2_MULTILINE};
	static struct rules_eval_re stock = {
	    .pattern =
	        "(^trad(?:e|ing)date|company(?:name)?|"
	        "s\\w?(?:t\\w?o\\w?c\\w?k|y\\w?m(?:\\w?b\\w?o\\w?l)?)|t(?:arget|icker)|"
	        "(?:opening|current)p(?:rice)?|p(?:rojected|osition)|expectations|weeks?high|"
	        "marketperformance|(?:year|week|month|day|price)(?:target|estimates?)|sector|"
	        "r(?:ecommendation|ating))$"};
	const mime_part_t *p = NULL;
	for (size_t i = 0; e->mi != NULL && i < mime_part_count(e->mi) && p == NULL; i++)
		if (mime_part(e->mi, i)->content_type != NULL &&
		    strcmp(mime_part(e->mi, i)->content_type, "text/plain") == 0)
			p = mime_part(e->mi, i);
	if (p == NULL || p->decoded == NULL)
		return 0;
	const char *keys[STOCK_KEYS_MAX];
	size_t nkeys = 0, st, len;
	for (size_t from = 0;
	     nkeys < STOCK_KEYS_MAX &&
	     rules_eval_re_find(&field, p->decoded, p->decoded_len, from, &st, &len);
	     from = st + len) {
		char name[32];
		size_t k = 0;
		for (size_t i = st; i < st + len && p->decoded[i] != ':'; i++) {
			int c = tolower((unsigned char)p->decoded[i]);
			if (c >= 'a' && c <= 'z' && k < sizeof(name) - 1)
				name[k++] = (char)c;
		}
		name[k] = '\0';
		size_t ks, kl;
		if (!rules_eval_re_find(&stock, name, k, 0, &ks, &kl))
			continue;
		bool seen = false;
		for (size_t j = 0; j < nkeys && !seen; j++)
			seen = strlen(keys[j]) == kl && strncmp(keys[j], name + ks, kl) == 0;
		if (!seen)
			keys[nkeys++] = arena_strndup(e->a, name + ks, kl);
	}
	return (long)nkeys;
}

/* check_stock_info(min): min (0: any message) distinct stock-tip fields. */
static long stock_info(struct rules_evalenv *e, const struct rule *ru)
{
	double min = ru->eargn[0];
	return min == 0 || (double)stock_count(e) >= min;
}

const struct rules_evaldef rules_eval_body_defs[] = {
    {"check_stock_info", stock_info, 1, 1, check_numbers},
    {"check_body_length", body_length, 1, 1, check_numbers},
    {"check_blank_line_ratio", blank_line_ratio, 2, 3, check_numbers},
    {"tvd_vertical_words", vertical_words, 2, 2, check_numbers},
    {"multipart_alternative_difference", ma_diff, 2, 2, check_numbers},
    {"multipart_alternative_difference_count", ma_diff_count, 2, 2, check_numbers},
    {NULL, NULL, 0, 0, NULL},
};
