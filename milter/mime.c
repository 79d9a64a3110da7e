/*
 * mime.c - the MIME tree walk, transfer decoding, charsets and the text
 * views (see mime.h); HTML rendering is in mime_html.c.
 *
 * Hand-written rather than built on a MIME library (gmime and friends),
 * because this runs on every message and must take any input: those build
 * a tree of malloc'ed copies of every part and give up, or "repair", where
 * we want to keep going and record what was wrong (mime_flags) for rules
 * to score. Here the body is walked once: delimiters are found with
 * memmem() inside the span of the enclosing part, parts are spans of the
 * message body (never copied), and the only copies made are the decoded
 * forms we must produce anyway (transfer decoding, charset conversion, the
 * body and rawbody views). Everything comes from the message arena, so
 * nothing is freed per part.
 */
#include "config.h"

#include "mime.h"

#include <errno.h>
#include <iconv.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Parameters kept per Content-Type/Disposition value (more are ignored). */
#define MIME_MAX_PARAMS 32
/* Longest charset name we look at; longer ones are unknown by definition. */
#define MIME_CHARSET_NAME_BYTES 48
/*
 * Converters each thread keeps open: a table of this many slots (a power
 * of two) holding at most MIME_ICONV_MAX of them, and the last few names
 * iconv refused.
 */
#define MIME_ICONV_SLOTS   256
#define MIME_ICONV_REFUSED 8
_Static_assert(MIME_ICONV_MAX <= MIME_ICONV_SLOTS * 3 / 4, "the table keeps a quarter free");
/*
 * The open-addressing sets that keep the URI and domain lists distinct
 * start small (most mail has a handful of links) and double while more
 * than half full, up to MIME_SET_MAX_SLOTS.
 */
#define MIME_SET_MIN_SLOTS 64
#define MIME_SET_MAX_SLOTS 2048

_Static_assert(MIME_SET_MAX_SLOTS >= 2 * MIME_MAX_URIS, "URI set must stay at most half full");
_Static_assert(MIME_SET_MAX_SLOTS >= 2 * MIME_MAX_DOMAINS, "domain set must stay half empty");
_Static_assert(MIME_SET_MAX_SLOTS >= 2 * MIME_MAX_TARGET_DOMAINS,
               "target set must stay half empty");
_Static_assert(MIME_SET_MAX_SLOTS >= 2 * MIME_MAX_TEXT_DOMAINS,
               "text domain set must stay half empty");
/* The links one URI may carry inside it that are followed (a redirect's redirect...). */
#define MIME_TARGETS_PER_URI 4
/* A host name as the domain lists keep it, with its NUL (DNS names are shorter). */
#define MIME_HOST_KEY_BYTES 256

struct strset {
	const char **slot; /* cap entries, allocated on first insert */
	size_t cap, n;
};

/* Distinct host names in order of finding, with a set beside them; max entries at most. */
struct hostlist {
	const char **v;
	size_t n;
	struct strset set;
};

struct mime {
	arena_t *arena;
	mime_limits_t lim;
	unsigned flags;
	mime_part_t *parts;
	size_t nparts, parts_cap;
	abuf_t body; /* every text part whole (mime_body_whole()) */
	/* the pieces of body past a part's scan size: [from, to) left out of the body view */
	struct scan_gap {
		size_t from, to;
		bool whole_ends_nl; /* else the next part put a line break at to */
	} * gaps;
	size_t ngaps, gaps_cap;
	const char *scan_body; /* the body view: body without its gaps, built at the end */
	size_t scan_body_len;
	const char *rawbody; /* built at the end of mime_parse() */
	size_t rawbody_len;
	const char *subject;
	uint64_t text_bytes; /* decoded text kept so far, against lim.max_text_bytes */
	const char **uris;
	uint32_t *uri_types; /* per URI: MIME_URI_* bits of where it was found */
	size_t nuris;
	struct hostlist domains;  /* the URIs' hosts */
	struct hostlist targets;  /* hosts of links carried inside the URIs, not in domains */
	struct hostlist tdomains; /* host names written in the text without a scheme */
	/*
	 * URI index + 1 by hash of the URI, MIME_SET_MAX_SLOTS slots (at most
	 * half full): a URI found again adds where it was found to its types.
	 */
	uint16_t *uri_slot;
};

/* ------------------------------------------------------------ ASCII helpers */

/* Locale-independent on purpose: <ctype.h> follows the locale and MIME does not. */
static inline int lc(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

static inline bool is_sp(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static inline bool is_alnum(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = lc(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool ci_prefix(const char *p, size_t n, const char *lit)
{
	size_t k = strlen(lit);
	if (n < k)
		return false;
	for (size_t i = 0; i < k; i++)
		if (lc((unsigned char)p[i]) != lit[i])
			return false;
	return true;
}

static bool ci_eq(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && ci_prefix(p, n, lit);
}

static char *lower_dup(arena_t *a, const char *p, size_t n)
{
	char *s = arena_strndup(a, p, n);
	for (size_t i = 0; i < n; i++)
		s[i] = (char)lc((unsigned char)s[i]);
	return s;
}

/* ------------------------------------------------------------ UTF-8 */

void mime_put_utf8(abuf_t *out, uint32_t cp)
{
	char b[4];
	size_t n;

	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		cp = 0xfffd;
	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	abuf_append(out, b, n);
}

/*
 * Length of the valid UTF-8 sequence at p (1..4), or 0 if the bytes there
 * are not one (overlong forms, surrogates and values past U+10FFFF are
 * invalid too, so the output is safe for any consumer).
 */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (n >= 2 && (p[1] & 0xc0) == 0x80) ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if (c == 0xe0 && p[1] < 0xa0)
			return 0;
		if (c == 0xed && p[1] >= 0xa0)
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
		    (p[3] & 0xc0) != 0x80)
			return 0;
		if (c == 0xf0 && p[1] < 0x90)
			return 0;
		if (c == 0xf4 && p[1] >= 0x90)
			return 0;
		return 4;
	}
	return 0;
}

/* Offset of the first invalid UTF-8 byte, or n when all of it is valid. */
static size_t utf8_valid_prefix(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		/* ASCII runs are the common case: test 8 bytes at a time. */
		while (i + 8 <= n) {
			uint64_t w;
			memcpy(&w, p + i, 8);
			if (w & 0x8080808080808080ull)
				break;
			i += 8;
		}
		if (i >= n)
			break;
		size_t k = utf8_seq(p + i, n - i);
		if (k == 0)
			return i;
		i += k;
	}
	return n;
}

/* Appends s as UTF-8, each invalid byte replaced by U+FFFD; true if any was. */
static bool utf8_append(abuf_t *out, const char *s, size_t n)
{
	bool bad = false;
	abuf_reserve(out, n);
	while (n > 0) {
		size_t ok = utf8_valid_prefix(s, n);
		abuf_append(out, s, ok);
		if (ok == n)
			break;
		mime_put_utf8(out, 0xfffd);
		bad = true;
		s += ok + 1;
		n -= ok + 1;
	}
	return bad;
}

/*
 * windows-1252 is what "iso-8859-1" and undeclared 8-bit text mean in
 * practice (HTML5 decodes latin-1 labels this way too); its 0x80-0x9f row
 * is the only difference from latin-1. Undefined bytes map to the C1
 * control of the same value, as browsers do, so the fallback never fails.
 */
static const uint16_t cp1252_80[32] = {
    0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008d, 0x017d, 0x008f, 0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
};

static void cp1252_append(abuf_t *out, const char *s, size_t n)
{
	abuf_reserve(out, n + n / 2);
	for (size_t i = 0; i < n; i++) {
		unsigned c = (unsigned char)s[i];
		if (c < 0x80) {
			/* Copy the ASCII run in one go. */
			size_t j = i + 1;
			while (j < n && (unsigned char)s[j] < 0x80)
				j++;
			abuf_append(out, s + i, j - i);
			i = j - 1;
		} else if (c < 0xa0) {
			mime_put_utf8(out, cp1252_80[c - 0x80]);
		} else {
			mime_put_utf8(out, c);
		}
	}
}

/* Undeclared or "us-ascii" text: UTF-8 if it is valid, else windows-1252. */
static void guess_append(abuf_t *out, const char *s, size_t n)
{
	if (utf8_valid_prefix(s, n) == n)
		abuf_append(out, s, n);
	else
		cp1252_append(out, s, n);
}

/* ------------------------------------------------------------ charsets */

enum cs_kind { CS_GUESS, CS_UTF8, CS_CP1252, CS_ICONV };

/*
 * Normalises a charset label into buf (lower case, no quotes or blanks,
 * RFC 2231 "*language" suffix dropped) and says how to convert it. For
 * CS_ICONV, buf holds the name to give iconv_open().
 */
static enum cs_kind cs_classify(const char *cs, char *buf, size_t cap)
{
	size_t n = 0;

	if (cs == NULL)
		return CS_GUESS;
	for (const char *p = cs; *p && *p != '*'; p++) {
		int c = (unsigned char)*p;
		if (c == '"' || c == '\'' || is_sp(c))
			continue;
		if (n + 1 >= cap)
			return CS_ICONV; /* too long to be real: iconv_open will fail on it */
		buf[n++] = (char)lc(c);
	}
	buf[n] = '\0';
	if (n == 0 || !strcmp(buf, "us-ascii") || !strcmp(buf, "ascii") ||
	    !strcmp(buf, "ansi_x3.4-1968") || !strcmp(buf, "default") || !strcmp(buf, "unknown") ||
	    !strcmp(buf, "unknown-8bit") || !strcmp(buf, "x-unknown"))
		return CS_GUESS;
	if (!strcmp(buf, "utf-8") || !strcmp(buf, "utf8"))
		return CS_UTF8;
	if (!strcmp(buf, "iso-8859-1") || !strcmp(buf, "iso8859-1") || !strcmp(buf, "iso_8859-1") ||
	    !strcmp(buf, "latin1") || !strcmp(buf, "latin-1") || !strcmp(buf, "l1") ||
	    !strcmp(buf, "windows-1252") || !strcmp(buf, "cp1252") ||
	    !strcmp(buf, "x-user-defined") || !strcmp(buf, "iso-8859-1:1987"))
		return CS_CP1252;
	/* Labels mail uses that glibc does not know, or knows as a smaller set. */
	static const char *const alias[][2] = {
	    {"ks_c_5601-1987", "CP949"},
	    {"ks_c_5601", "CP949"},
	    {"euc-kr", "CP949"},
	    {"gb2312", "GB18030"},
	    {"gbk", "GB18030"},
	    {"x-gbk", "GB18030"},
	    {"cp936", "GB18030"},
	    {"shift_jis", "CP932"},
	    {"shift-jis", "CP932"},
	    {"x-sjis", "CP932"},
	    {"sjis", "CP932"},
	    {"windows-31j", "CP932"},
	    {"big5", "BIG5-HKSCS"},
	    {"x-mac-roman", "MACINTOSH"},
	    {"unicode-1-1-utf-7", "UTF-7"},
	    {"windows-874", "CP874"},
	    {"x-euc-jp", "EUC-JP"},
	    {"chinesebig5", "BIG5-HKSCS"},
	    {"gb2312_charset", "GB18030"},
	    {"x-gb2312", "GB18030"},
	};
	for (size_t i = 0; i < sizeof(alias) / sizeof(alias[0]); i++) {
		if (!strcmp(buf, alias[i][0])) {
			strcpy(buf, alias[i][1]);
			break;
		}
	}
	return CS_ICONV;
}

/*
 * iconv descriptors are cached per thread: iconv_open() loads and parses
 * gconv modules and costs tens of microseconds, far more than converting
 * a typical part, while a reset descriptor is reusable. Per-thread rather
 * than shared, so conversion takes no lock; the cache is a pthread key
 * whose destructor closes the descriptors when the thread exits.
 *
 * A descriptor, once open, stays open: closing the last one of a gconv
 * module unloads the module (dlclose), and the next open loads it again,
 * some 300 us a time. A small cache evicting in turn did exactly that for
 * encoded words that cycle through more charsets than it held: 20,000 of
 * them, in twenty charsets, took 6.4 s to decode. A thread keeps up to
 * MIME_ICONV_MAX charsets (mail uses a few dozen at most); past that, a
 * charset not yet met is treated as one iconv does not know, so its text
 * is decoded as undeclared text, not reopened per word. Names iconv refused
 * are remembered in a small ring and never take a slot.
 */
struct ic_slot {
	char name[MIME_CHARSET_NAME_BYTES]; /* "" for a free slot */
	iconv_t cd;
};

struct ic_cache {
	struct ic_slot slot[MIME_ICONV_SLOTS]; /* open addressing by name */
	unsigned used;
	char refused[MIME_ICONV_REFUSED][MIME_CHARSET_NAME_BYTES];
	unsigned next_refused;
};

static pthread_key_t ic_key;
static pthread_once_t ic_once = PTHREAD_ONCE_INIT;
static bool ic_key_ok; /* written once under ic_once */

static void ic_destroy(void *p)
{
	struct ic_cache *c = p;
	for (unsigned i = 0; i < MIME_ICONV_SLOTS; i++)
		if (c->slot[i].name[0] != '\0')
			iconv_close(c->slot[i].cd);
	free(c);
}

static void ic_init(void)
{
	ic_key_ok = pthread_key_create(&ic_key, ic_destroy) == 0;
}

/* The hash of the converter table below and of the URI and domain sets. */
static uint32_t hash_bytes(const char *p, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a: short keys, no need for more */
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 16777619u;
	}
	return h;
}

/*
 * A descriptor from name to UTF-8, reset to its initial state, or
 * (iconv_t)-1 if iconv does not know name (or the thread's table is full).
 * *owned says the caller must close it (no cache available).
 */
static iconv_t ic_get(const char *name, bool *owned)
{
	struct ic_cache *c = NULL;

	*owned = false;
	pthread_once(&ic_once, ic_init);
	if (ic_key_ok) {
		c = pthread_getspecific(ic_key);
		if (c == NULL) {
			c = calloc(1, sizeof(*c));
			if (c != NULL && pthread_setspecific(ic_key, c) != 0) {
				free(c);
				c = NULL;
			}
		}
	}
	if (c == NULL || name[0] == '\0' || strlen(name) >= MIME_CHARSET_NAME_BYTES) {
		iconv_t cd = iconv_open("UTF-8", name);
		*owned = cd != (iconv_t)-1;
		return cd;
	}
	unsigned h = hash_bytes(name, strlen(name)) & (MIME_ICONV_SLOTS - 1);
	/* ends: the table is never more than three quarters full */
	while (c->slot[h].name[0] != '\0') {
		if (strcmp(c->slot[h].name, name) == 0) {
			iconv(c->slot[h].cd, NULL, NULL, NULL, NULL);
			return c->slot[h].cd;
		}
		h = (h + 1) & (MIME_ICONV_SLOTS - 1);
	}
	for (unsigned i = 0; i < MIME_ICONV_REFUSED; i++)
		if (strcmp(c->refused[i], name) == 0)
			return (iconv_t)-1;
	if (c->used >= MIME_ICONV_MAX)
		return (iconv_t)-1;
	iconv_t cd = iconv_open("UTF-8", name);
	if (cd == (iconv_t)-1) {
		strcpy(c->refused[c->next_refused], name);
		c->next_refused = (c->next_refused + 1) % MIME_ICONV_REFUSED;
		return cd;
	}
	strcpy(c->slot[h].name, name);
	c->slot[h].cd = cd;
	c->used++;
	return cd;
}

/* iconv conversion into out; returns true if invalid input was replaced. */
static bool iconv_append(iconv_t cd, abuf_t *out, const char *s, size_t n)
{
	bool bad = false;
	char *in = (char *)s;
	size_t inleft = n;

	abuf_reserve(out, 2 * n + 16);
	while (inleft > 0) {
		char *o = out->data + out->len;
		size_t oleft = out->cap - out->len - 1, before = oleft;
		size_t r = iconv(cd, &in, &inleft, &o, &oleft);
		int err = errno;
		out->len += before - oleft;
		out->data[out->len] = '\0';
		if (r != (size_t)-1)
			break;
		if (err == E2BIG) {
			abuf_reserve(out, inleft * 2 + 64);
		} else if (err == EILSEQ) {
			mime_put_utf8(out, 0xfffd);
			bad = true;
			in++;
			inleft--;
		} else {
			/* EINVAL: an incomplete sequence ends the input. */
			mime_put_utf8(out, 0xfffd);
			bad = true;
			break;
		}
	}
	/* Stateful encodings (ISO-2022-JP) may owe a return to the initial state. */
	for (;;) {
		abuf_reserve(out, 64);
		char *o = out->data + out->len;
		size_t oleft = out->cap - out->len - 1, before = oleft;
		size_t r = iconv(cd, NULL, NULL, &o, &oleft);
		out->len += before - oleft;
		if (r != (size_t)-1 || errno != E2BIG)
			break;
	}
	out->data[out->len] = '\0';
	return bad;
}

/*
 * Appends n bytes in charset cs to out as UTF-8. Returns -1 (and appends
 * nothing) when the charset is unknown; otherwise 0, with *bad set when
 * invalid input was replaced.
 */
static int conv_append(abuf_t *out, const char *cs, const char *s, size_t n, bool *bad)
{
	char name[MIME_CHARSET_NAME_BYTES];
	bool owned;

	switch (cs_classify(cs, name, sizeof(name))) {
	case CS_GUESS: guess_append(out, s, n); return 0;
	case CS_UTF8:
		if (utf8_append(out, s, n))
			*bad = true;
		return 0;
	case CS_CP1252: cp1252_append(out, s, n); return 0;
	case CS_ICONV: break;
	}
	iconv_t cd = ic_get(name, &owned);
	if (cd == (iconv_t)-1)
		return -1;
	size_t start = out->len;
	if (iconv_append(cd, out, s, n))
		*bad = true;
	if (owned)
		iconv_close(cd);
	/*
	 * iconv's output is not always valid UTF-8: glibc's UTF-8 decoder (reached
	 * through aliases such as "utf-8\x01", which it normalises) lets the
	 * obsolete 5- and 6-byte forms through. Every view promises valid
	 * UTF-8, so the converted run is checked and, if need be, repaired.
	 */
	size_t got = out->len - start;
	if (utf8_valid_prefix(out->data + start, got) != got) {
		char *copy = arena_memdup(out->arena, out->data + start, got);
		out->len = start;
		out->data[start] = '\0';
		utf8_append(out, copy, got);
		*bad = true;
	}
	return 0;
}

/* conv_append() with the windows-1252 fallback; unknown charsets set *bad. */
static void conv_or_fallback(abuf_t *out, const char *cs, const char *s, size_t n, bool *bad)
{
	if (conv_append(out, cs, s, n, bad) < 0) {
		cp1252_append(out, s, n);
		*bad = true;
	}
}

char *mime_to_utf8(arena_t *a, const char *charset, const char *p, size_t n, size_t *out_len)
{
	abuf_t out;
	bool bad = false;

	abuf_init(&out, a, n + 16);
	if (conv_append(&out, charset, p, n, &bad) < 0)
		return NULL;
	if (out_len)
		*out_len = out.len;
	return out.data;
}

/* ------------------------------------------------------------ transfer decoding */

/* -1 invalid, -2 white space, -3 '=' padding, else the 6-bit value. */
static const signed char b64_tab[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -2, -2, -1, -1, -2, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -2, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -3, -1, -1, -1, 0,  1,  2,  3,  4,  5,  6,
    7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
    49, 50, 51, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

/*
 * Decodes base64 into out (room for n / 4 * 3 + 3 bytes). White space is
 * skipped silently; other junk is skipped and flagged, as are a dangling
 * quantum and missing padding. Data after padding is decoded as a new
 * stream (concatenated encoder output happens). Returns the length.
 */
static size_t b64_decode(const char *s, size_t n, unsigned char *out, bool *bad)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t acc = 0;
	unsigned q = 0;
	size_t o = 0;
	bool after_pad = false;

	for (size_t i = 0; i < n;) {
		/* Fast path: four valid characters at a quantum boundary. */
		if (q == 0 && i + 4 <= n) {
			int a = b64_tab[p[i]], b = b64_tab[p[i + 1]], c = b64_tab[p[i + 2]],
			    d = b64_tab[p[i + 3]];
			if ((a | b | c | d) >= 0) {
				uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 |
				             (uint32_t)c << 6 | (uint32_t)d;
				out[o++] = (unsigned char)(v >> 16);
				out[o++] = (unsigned char)(v >> 8);
				out[o++] = (unsigned char)v;
				i += 4;
				after_pad = false;
				continue;
			}
		}
		int v = b64_tab[p[i++]];
		if (v >= 0) {
			acc = acc << 6 | (uint32_t)v;
			after_pad = false;
			if (++q == 4) {
				out[o++] = (unsigned char)(acc >> 16);
				out[o++] = (unsigned char)(acc >> 8);
				out[o++] = (unsigned char)acc;
				q = 0;
				acc = 0;
			}
		} else if (v == -2) {
			continue;
		} else if (v == -3) {
			if (q == 2) {
				out[o++] = (unsigned char)(acc >> 4);
			} else if (q == 3) {
				out[o++] = (unsigned char)(acc >> 10);
				out[o++] = (unsigned char)(acc >> 2);
			} else if (!(q == 0 && after_pad)) {
				*bad = true;
			}
			q = 0;
			acc = 0;
			after_pad = true;
		} else {
			*bad = true;
		}
	}
	if (q == 1) {
		*bad = true;
	} else if (q == 2) {
		out[o++] = (unsigned char)(acc >> 4);
		*bad = true;
	} else if (q == 3) {
		out[o++] = (unsigned char)(acc >> 10);
		out[o++] = (unsigned char)(acc >> 2);
		*bad = true;
	}
	return o;
}

/*
 * Decodes quoted-printable into out (room for n bytes). Soft line breaks
 * ("=" then optional blanks then the line end) vanish, transport padding
 * (blanks at the end of a line) is dropped, CRLF becomes LF, and an "="
 * not followed by two hex digits is kept literally and flagged.
 */
static size_t qp_decode(const char *s, size_t n, char *out, bool *bad)
{
	size_t o = 0, keep = 0; /* keep: output below this is not padding */

	for (size_t i = 0; i < n;) {
		char c = s[i];
		if (c == '=') {
			int h1 = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
			int h2 = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
			if (h1 >= 0 && h2 >= 0) {
				out[o++] = (char)(h1 << 4 | h2);
				keep = o;
				i += 3;
				continue;
			}
			size_t j = i + 1;
			while (j < n && (s[j] == ' ' || s[j] == '\t'))
				j++;
			if (j == n) {
				i = n; /* soft break at the very end */
			} else if (s[j] == '\n') {
				i = j + 1;
			} else if (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n') {
				i = j + 2;
			} else {
				out[o++] = '=';
				keep = o;
				*bad = true;
				i++;
			}
			continue;
		}
		if (c == '\n' || (c == '\r' && i + 1 < n && s[i + 1] == '\n')) {
			while (o > keep && (out[o - 1] == ' ' || out[o - 1] == '\t'))
				o--;
			out[o++] = '\n';
			keep = o;
			i += c == '\r' ? 2 : 1;
			continue;
		}
		/* Copy the plain run up to the next '=', CR or LF in one go. */
		size_t j = i + 1;
		while (j < n && s[j] != '=' && s[j] != '\n' && s[j] != '\r')
			j++;
		memcpy(out + o, s + i, j - i);
		o += j - i;
		i = j;
		/* A lone CR is data; let the next round copy it. */
		if (i < n && s[i] == '\r' && !(i + 1 < n && s[i + 1] == '\n')) {
			out[o++] = '\r';
			i++;
		}
	}
	return o;
}

enum xfer { XF_IDENTITY, XF_BASE64, XF_QP };

static enum xfer xfer_kind(const char *enc)
{
	if (enc == NULL)
		return XF_IDENTITY;
	if (!strcmp(enc, "base64"))
		return XF_BASE64;
	if (!strcmp(enc, "quoted-printable"))
		return XF_QP;
	return XF_IDENTITY;
}

/*
 * Transfer-decodes s. Identity encodings return s itself (no copy) and set
 * *owned false; otherwise the result is a fresh arena buffer the caller may
 * modify, with one spare byte for a NUL.
 */
static const char *xfer_decode(mime_t *mi, const char *enc, const char *s, size_t n,
                               size_t *out_len, bool *owned)
{
	bool bad = false;
	char *out;

	switch (xfer_kind(enc)) {
	case XF_BASE64:
		out = arena_alloc(mi->arena, n / 4 * 3 + 4);
		*out_len = b64_decode(s, n, (unsigned char *)out, &bad);
		if (bad)
			mi->flags |= MIME_F_BAD_BASE64;
		break;
	case XF_QP:
		out = arena_alloc(mi->arena, n + 1);
		*out_len = qp_decode(s, n, out, &bad);
		if (bad)
			mi->flags |= MIME_F_BAD_QP;
		break;
	default:
		*out_len = n;
		*owned = false;
		return s;
	}
	out[*out_len] = '\0';
	*owned = true;
	return out;
}

/* ------------------------------------------------------------ RFC 2047 */

/* Appends header text that is not an encoded word: UTF-8 if valid, else windows-1252. */
static void hdr_literal(abuf_t *out, const char *s, size_t n)
{
	guess_append(out, s, n);
}

struct ew_run {
	abuf_t bytes; /* decoded bytes of the adjacent words so far */
	char cs[MIME_CHARSET_NAME_BYTES];
	const char *raw_start; /* the words as written, for unknown charsets */
	const char *raw_end;
	bool active;
};

static void ew_flush(struct ew_run *r, abuf_t *out)
{
	bool bad = false;
	if (!r->active)
		return;
	if (conv_append(out, r->cs, r->bytes.data, r->bytes.len, &bad) < 0)
		hdr_literal(out, r->raw_start, (size_t)(r->raw_end - r->raw_start));
	r->active = false;
	r->bytes.len = 0;
}

/*
 * Parses the encoded word at p ("=?cs?X?text?="); on success fills the
 * charset and text spans and returns the end of the word, else NULL.
 */
static const char *ew_parse(const char *p, const char *end, const char **cs, size_t *csn, int *enc,
                            const char **txt, size_t *txtn)
{
	const char *q = p + 2;
	*cs = q;
	while (q < end && *q != '?' && !is_sp((unsigned char)*q) &&
	       q - *cs < MIME_CHARSET_NAME_BYTES)
		q++;
	if (q >= end || *q != '?' || q == *cs || q - *cs >= MIME_CHARSET_NAME_BYTES)
		return NULL;
	*csn = (size_t)(q - *cs);
	if (q + 2 >= end || q[2] != '?')
		return NULL;
	*enc = lc((unsigned char)q[1]);
	if (*enc != 'b' && *enc != 'q')
		return NULL;
	q += 3;
	*txt = q;
	while (q < end && *q != '?' && !is_sp((unsigned char)*q))
		q++;
	if (q + 1 >= end || q[0] != '?' || q[1] != '=')
		return NULL;
	*txtn = (size_t)(q - *txt);
	return q + 2;
}

char *mime_decode_header(arena_t *a, const char *raw)
{
	size_t n = raw ? strlen(raw) : 0;
	abuf_t out;
	struct ew_run run;
	char *u;
	size_t un = 0;

	abuf_init(&out, a, n + 16);
	if (n == 0)
		return out.data;
	/* Unfold: a line break followed by a blank vanishes; a bare one is a space. */
	u = arena_alloc(a, n + 1);
	for (size_t i = 0; i < n; i++) {
		char c = raw[i];
		if (c == '\r' && i + 1 < n && raw[i + 1] == '\n')
			continue;
		if (c == '\n') {
			if (i + 1 < n && (raw[i + 1] == ' ' || raw[i + 1] == '\t'))
				continue;
			c = ' ';
		}
		u[un++] = c;
	}
	u[un] = '\0';

	memset(&run, 0, sizeof(run));
	abuf_init(&run.bytes, a, 64);
	const char *p = u, *end = u + un, *lit = u;
	while (p + 1 < end) {
		const char *q = memchr(p, '=', (size_t)(end - p) - 1);
		if (q == NULL)
			break;
		if (q[1] != '?') {
			p = q + 1;
			continue;
		}
		const char *cs, *txt;
		size_t csn, txtn;
		int enc;
		const char *we = ew_parse(q, end, &cs, &csn, &enc, &txt, &txtn);
		if (we == NULL) {
			p = q + 2;
			continue;
		}
		/* White space between two encoded words is not text (RFC 2047, 6.2). */
		bool only_ws = true;
		for (const char *t = lit; t < q; t++)
			if (*t != ' ' && *t != '\t')
				only_ws = false;
		char csbuf[MIME_CHARSET_NAME_BYTES];
		memcpy(csbuf, cs, csn);
		csbuf[csn] = '\0';
		bool same = run.active && only_ws && !strcasecmp(run.cs, csbuf);
		if (!same) {
			ew_flush(&run, &out);
			hdr_literal(&out, lit, (size_t)(q - lit));
			run.active = true;
			run.raw_start = q;
			memcpy(run.cs, csbuf, csn + 1);
		}
		run.raw_end = we;
		/*
		 * Adjacent words of one charset are decoded into one byte run and
		 * converted together, because encoders split multi-byte
		 * characters across words.
		 */
		abuf_reserve(&run.bytes, txtn + 4);
		unsigned char *d = (unsigned char *)run.bytes.data + run.bytes.len;
		size_t dn = 0;
		if (enc == 'b') {
			bool bad = false;
			dn = b64_decode(txt, txtn, d, &bad);
		} else {
			for (size_t i = 0; i < txtn; i++) {
				int h1, h2;
				if (txt[i] == '_') {
					d[dn++] = ' ';
				} else if (txt[i] == '=' && i + 2 < txtn &&
				           (h1 = hexval((unsigned char)txt[i + 1])) >= 0 &&
				           (h2 = hexval((unsigned char)txt[i + 2])) >= 0) {
					d[dn++] = (unsigned char)(h1 << 4 | h2);
					i += 2;
				} else {
					d[dn++] = (unsigned char)txt[i];
				}
			}
		}
		run.bytes.len += dn;
		run.bytes.data[run.bytes.len] = '\0';
		lit = p = we;
	}
	ew_flush(&run, &out);
	hdr_literal(&out, lit, (size_t)(end - lit));
	/* Decoded words may carry line breaks or NULs: never let them out. */
	for (size_t i = 0; i < out.len; i++)
		if (out.data[i] == '\r' || out.data[i] == '\n' || out.data[i] == '\0')
			out.data[i] = ' ';
	return out.data;
}

/* ------------------------------------------------------------ parameters */

struct param {
	const char *attr;
	size_t alen;
	const char *val;
	size_t vlen;
};

struct params {
	size_t n;
	struct param p[MIME_MAX_PARAMS];
};

/*
 * Splits "; attr=value; attr="quoted \" value"" into ps. Quoted values are
 * unescaped (and unfolded) into arena copies; unquoted ones point into s.
 * Malformed pieces (no '=', an unclosed quote) set MIME_F_BAD_HEADER.
 */
static void params_parse(mime_t *mi, const char *s, struct params *ps)
{
	ps->n = 0;
	while (*s) {
		while (*s == ';' || is_sp((unsigned char)*s))
			s++;
		if (!*s)
			break;
		const char *attr = s;
		while (*s && *s != '=' && *s != ';' && !is_sp((unsigned char)*s))
			s++;
		size_t alen = (size_t)(s - attr);
		while (is_sp((unsigned char)*s))
			s++;
		if (*s != '=') {
			mi->flags |= MIME_F_BAD_HEADER;
			while (*s && *s != ';')
				s++;
			continue;
		}
		s++;
		while (is_sp((unsigned char)*s))
			s++;
		const char *val;
		size_t vlen;
		if (*s == '"') {
			const char *q = ++s;
			size_t k = 0;
			while (*q && *q != '"') {
				if (*q == '\\' && q[1])
					q++;
				q++;
				k++;
			}
			char *v = arena_alloc(mi->arena, k + 1);
			size_t j = 0;
			while (*s && *s != '"') {
				if (*s == '\\' && s[1])
					s++;
				if (*s != '\r' && *s != '\n')
					v[j++] = *s;
				s++;
			}
			v[j] = '\0';
			if (*s == '"')
				s++;
			else
				mi->flags |= MIME_F_BAD_HEADER;
			val = v;
			vlen = j;
			while (*s && *s != ';')
				s++;
		} else {
			val = s;
			while (*s && *s != ';')
				s++;
			vlen = (size_t)(s - val);
			while (vlen > 0 && is_sp((unsigned char)val[vlen - 1]))
				vlen--;
		}
		if (alen > 0 && ps->n < MIME_MAX_PARAMS) {
			struct param *p = &ps->p[ps->n++];
			p->attr = attr;
			p->alen = alen;
			p->val = val;
			p->vlen = vlen;
		}
	}
}

/* Percent-decodes an RFC 2231 extended value (bad escapes kept) into b. */
static void pct_append(abuf_t *b, const char *s, size_t n)
{
	abuf_reserve(b, n);
	for (size_t i = 0; i < n; i++) {
		int h1, h2;
		if (s[i] == '%' && i + 2 < n && (h1 = hexval((unsigned char)s[i + 1])) >= 0 &&
		    (h2 = hexval((unsigned char)s[i + 2])) >= 0) {
			abuf_putc(b, h1 << 4 | h2);
			i += 2;
		} else {
			abuf_putc(b, s[i]);
		}
	}
}

/*
 * The value of parameter name as UTF-8, or NULL. RFC 2231 forms win over
 * the plain one: name*=charset'lang'%XX, and continuations name*0, name*1*,
 * ... joined in index order up to the first missing one.
 */
static char *param_get(mime_t *mi, const struct params *ps, const char *name)
{
	size_t nl = strlen(name);
	const struct param *plain = NULL, *ext = NULL;
	const struct param *seg[MIME_MAX_PARAMS] = {0};
	bool seg_ext[MIME_MAX_PARAMS] = {0};

	for (size_t i = 0; i < ps->n; i++) {
		const struct param *p = &ps->p[i];
		if (p->alen < nl || !ci_prefix(p->attr, p->alen, name))
			continue;
		if (p->alen == nl) {
			if (plain == NULL)
				plain = p;
			continue;
		}
		if (p->attr[nl] != '*')
			continue;
		if (p->alen == nl + 1) {
			if (ext == NULL)
				ext = p;
			continue;
		}
		size_t j = nl + 1, idx = 0;
		if (j >= p->alen || p->attr[j] < '0' || p->attr[j] > '9')
			continue;
		while (j < p->alen && p->attr[j] >= '0' && p->attr[j] <= '9' &&
		       idx < MIME_MAX_PARAMS)
			idx = idx * 10 + (size_t)(p->attr[j++] - '0');
		bool is_ext = j < p->alen && p->attr[j] == '*';
		if (is_ext)
			j++;
		if (j != p->alen || idx >= MIME_MAX_PARAMS || seg[idx] != NULL)
			continue;
		seg[idx] = p;
		seg_ext[idx] = is_ext;
	}
	if (ext == NULL && seg[0] == NULL) {
		if (plain == NULL)
			return NULL;
		return arena_strndup(mi->arena, plain->val, plain->vlen);
	}

	abuf_t raw;
	char cs[MIME_CHARSET_NAME_BYTES] = "";
	abuf_init(&raw, mi->arena, 64);
	const struct param *first = ext ? ext : seg[0];
	bool first_ext = ext ? true : seg_ext[0];
	const char *v = first->val;
	size_t vn = first->vlen;
	if (first_ext) {
		/* charset'language'value; a value without the quotes is all data. */
		const char *q1 = memchr(v, '\'', vn);
		const char *q2 = q1 ? memchr(q1 + 1, '\'', vn - (size_t)(q1 + 1 - v)) : NULL;
		if (q2 != NULL) {
			size_t cn = (size_t)(q1 - v);
			if (cn < sizeof(cs)) {
				memcpy(cs, v, cn);
				cs[cn] = '\0';
			}
			vn -= (size_t)(q2 + 1 - v);
			v = q2 + 1;
		}
		pct_append(&raw, v, vn);
	} else {
		abuf_append(&raw, v, vn);
	}
	if (ext == NULL) {
		for (size_t i = 1; i < MIME_MAX_PARAMS && seg[i] != NULL; i++) {
			if (seg_ext[i])
				pct_append(&raw, seg[i]->val, seg[i]->vlen);
			else
				abuf_append(&raw, seg[i]->val, seg[i]->vlen);
		}
	}
	abuf_t out;
	bool bad = false;
	abuf_init(&out, mi->arena, raw.len + 16);
	conv_or_fallback(&out, cs[0] ? cs : NULL, raw.data, raw.len, &bad);
	if (bad)
		mi->flags |= MIME_F_BAD_CHARSET;
	return out.data;
}

/* ------------------------------------------------------------ URI lists */

static void strset_grow(arena_t *a, struct strset *s)
{
	size_t cap = s->cap ? s->cap * 2 : MIME_SET_MIN_SLOTS;
	const char **slot = arena_zalloc(a, cap * sizeof(*slot));
	for (size_t i = 0; i < s->cap; i++) {
		if (s->slot[i] == NULL)
			continue;
		size_t j = hash_bytes(s->slot[i], strlen(s->slot[i])) & (cap - 1);
		while (slot[j] != NULL)
			j = (j + 1) & (cap - 1);
		slot[j] = s->slot[i];
	}
	s->slot = slot;
	s->cap = cap;
}

/*
 * Returns the stored copy if p[0..n) is new, NULL if already present. The
 * callers' list limits keep n at most half of MIME_SET_MAX_SLOTS.
 */
static const char *strset_add(arena_t *a, struct strset *s, const char *p, size_t n)
{
	if (2 * (s->n + 1) > s->cap && s->cap < MIME_SET_MAX_SLOTS)
		strset_grow(a, s);
	size_t i = hash_bytes(p, n) & (s->cap - 1);
	while (s->slot[i] != NULL) {
		if (strncmp(s->slot[i], p, n) == 0 && s->slot[i][n] == '\0')
			return NULL;
		i = (i + 1) & (s->cap - 1);
	}
	s->slot[i] = arena_strndup(a, p, n);
	s->n++;
	return s->slot[i];
}

static bool strset_has(const struct strset *s, const char *p, size_t n)
{
	if (s->cap == 0)
		return false;
	for (size_t i = hash_bytes(p, n) & (s->cap - 1); s->slot[i] != NULL;
	     i = (i + 1) & (s->cap - 1))
		if (strncmp(s->slot[i], p, n) == 0 && s->slot[i][n] == '\0')
			return true;
	return false;
}

/* The host h[0..n) as the lists keep it, into host; its length (0: none). */
static size_t host_key(const char *h, size_t n, char host[MIME_HOST_KEY_BYTES])
{
	size_t k = 0;

	/* Lower-case, undo %XX (seen in obfuscated links), drop trailing dots. */
	for (size_t i = 0; i < n && k + 1 < MIME_HOST_KEY_BYTES; i++) {
		int c = (unsigned char)h[i];
		int h1, h2;
		if (c == '%' && i + 2 < n && (h1 = hexval((unsigned char)h[i + 1])) >= 0 &&
		    (h2 = hexval((unsigned char)h[i + 2])) >= 0) {
			c = h1 << 4 | h2;
			i += 2;
		}
		if (!(is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '[' || c == ']' ||
		      c == ':' || c >= 0x80))
			break;
		host[k++] = (char)lc(c);
	}
	while (k > 0 && host[k - 1] == '.')
		k--;
	while (k > 0 && host[0] == '.') {
		memmove(host, host + 1, --k);
	}
	return k;
}

static void hostlist_add(arena_t *a, struct hostlist *l, size_t max, const char *host, size_t k)
{
	if (k == 0 || l->n >= max)
		return;
	const char *d = strset_add(a, &l->set, host, k);
	if (d == NULL)
		return;
	if (l->v == NULL)
		l->v = arena_alloc(a, max * sizeof(*l->v));
	l->v[l->n++] = d;
}

static void add_domain(mime_t *mi, const char *h, size_t n)
{
	char host[MIME_HOST_KEY_BYTES];
	size_t k = host_key(h, n, host);
	hostlist_add(mi->arena, &mi->domains, MIME_MAX_DOMAINS, host, k);
}

/* A redirect target's host, unless the domain list has it already. */
static void add_target(mime_t *mi, const char *h, size_t n)
{
	char host[MIME_HOST_KEY_BYTES];
	size_t k = host_key(h, n, host);
	if (memchr(host, '.', k) != NULL && !strset_has(&mi->domains.set, host, k))
		hostlist_add(mi->arena, &mi->targets, MIME_MAX_TARGET_DOMAINS, host, k);
}

/*
 * The links a URI carries after its host, as redirectors take them
 * ("https://r.example/url?q=https%3A%2F%2Ft.example%2Fx": t.example):
 * SpamAssassin's canonicalisation follows "https?:/{0,2}[^&#]+" holding a
 * dot, and so do the DNS lists here, or a listed site would hide behind a
 * redirector every mail provider lets through. %-escapes are undone first
 * (they are how a link is put into a query); each link found is searched
 * again for the next, up to MIME_TARGETS_PER_URI.
 */
static void uri_targets(mime_t *mi, const char *rest, size_t n)
{
	char buf[MIME_MAX_URI_BYTES];
	size_t k = 0;
	for (size_t i = 0; i < n && k < sizeof(buf); i++) {
		int c = (unsigned char)rest[i], h1, h2;
		if (c == '%' && i + 2 < n && (h1 = hexval((unsigned char)rest[i + 1])) >= 0 &&
		    (h2 = hexval((unsigned char)rest[i + 2])) >= 0) {
			c = h1 << 4 | h2;
			i += 2;
		}
		buf[k++] = (char)c;
	}
	size_t found = 0;
	for (size_t i = 0; i + 5 < k && found < MIME_TARGETS_PER_URI; i++) {
		size_t j = i;
		if (!ci_prefix(buf + j, k - j, "http"))
			continue;
		j += 4;
		if (lc((unsigned char)buf[j]) == 's')
			j++;
		if (j >= k || buf[j] != ':')
			continue;
		j++;
		for (int sl = 0; sl < 2 && j < k && (buf[j] == '/' || buf[j] == '\\'); sl++)
			j++;
		size_t h = j, stop = j;
		while (stop < k && buf[stop] != '/' && buf[stop] != '?' && buf[stop] != '#' &&
		       buf[stop] != '&' && buf[stop] != '\\' && (unsigned char)buf[stop] > ' ')
			stop++;
		for (size_t t = h; t < stop; t++) /* user:password@host */
			if (buf[t] == '@')
				h = t + 1;
		size_t end = h;
		while (end < stop && buf[end] != ':')
			end++;
		if (end > h) {
			add_target(mi, buf + h, end - h);
			found++;
		}
		i = j - 1;
	}
}

/*
 * A host name written in the text without a scheme ("visit shop.example
 * today"), as SpamAssassin's URI list takes one ending in a known TLD for
 * its URI DNS lists: at least two labels of letters, digits and hyphens,
 * the last 2-63 letters (or an xn-- name). Whether that is a public
 * suffix is for the lookup to decide (the Public Suffix List): "Mr.Smith"
 * is a candidate here and asked nothing there.
 */
static void add_text_domain(mime_t *mi, const char *h, size_t n)
{
	if (n > 253)
		return;
	size_t label = 0, labels = 0, letters = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || h[i] == '.') {
			if (label == 0 || label > 63 || h[i - label] == '-' || h[i - 1] == '-')
				return;
			labels++;
			if (i == n && letters != label && !ci_prefix(h + i - label, label, "xn--"))
				return;
			if (i == n && label < 2)
				return;
			label = letters = 0;
			continue;
		}
		label++;
		letters += (lc((unsigned char)h[i]) >= 'a' && lc((unsigned char)h[i]) <= 'z');
	}
	char host[MIME_HOST_KEY_BYTES];
	size_t k = host_key(h, n, host);
	if (labels >= 2 && !strset_has(&mi->domains.set, host, k) &&
	    !strset_has(&mi->targets.set, host, k))
		hostlist_add(mi->arena, &mi->tdomains, MIME_MAX_TEXT_DOMAINS, host, k);
}

/* Finds the host in a checked URI and adds it to the domain list. */
static void uri_host(mime_t *mi, const char *u, size_t n)
{
	const char *h, *e = u + n;

	if (ci_prefix(u, n, "mailto:")) {
		const char *q = u + 7;
		const char *stop = q;
		while (stop < e && *stop != '?' && *stop != ',' && *stop != ';')
			stop++;
		const char *at = NULL;
		for (const char *t = q; t < stop; t++)
			if (*t == '@')
				at = t;
		if (at == NULL)
			return;
		add_domain(mi, at + 1, (size_t)(stop - at - 1));
		return;
	}
	const char *sep = NULL;
	for (const char *t = u; t + 2 < e && t < u + 8; t++) {
		if (t[0] == ':' && t[1] == '/' && t[2] == '/') {
			sep = t + 3;
			break;
		}
	}
	h = sep ? sep : u;
	const char *stop = h;
	while (stop < e && *stop != '/' && *stop != '?' && *stop != '#' && *stop != '\\')
		stop++;
	/* user:password@host: the host is after the last '@'. */
	for (const char *t = h; t < stop; t++)
		if (*t == '@')
			h = t + 1;
	const char *port = NULL;
	if (h < stop && *h == '[') {
		const char *rb = memchr(h, ']', (size_t)(stop - h));
		if (rb != NULL)
			stop = rb + 1;
	} else {
		port = memchr(h, ':', (size_t)(stop - h));
		if (port != NULL)
			stop = port;
	}
	add_domain(mi, h, (size_t)(stop - h));
	while (stop < e && *stop != '/' && *stop != '?' && *stop != '#' && *stop != '\\')
		stop++; /* past a port */
	if (stop < e)
		uri_targets(mi, stop, (size_t)(e - stop));
}

size_t mime_uri_form(const char *p, size_t n, char *buf, bool *too_long)
{
	size_t k = 0;
	/* Browsers ignore blanks around a link and tabs or newlines inside it. */
	while (n > 0 && is_sp((unsigned char)*p)) {
		p++;
		n--;
	}
	while (n > 0 && is_sp((unsigned char)p[n - 1]))
		n--;
	if (too_long != NULL)
		*too_long =
		    n > MIME_LONG_URI_BYTES; /* the list keeps its first MIME_MAX_URI_BYTES */
	for (size_t i = 0; i < n && k < MIME_MAX_URI_BYTES && p[i] != '\0'; i++)
		if (p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			buf[k++] = p[i];
	if (k == 0)
		return 0;
	size_t skip;
	if (ci_prefix(buf, k, "http://"))
		skip = 7;
	else if (ci_prefix(buf, k, "https://"))
		skip = 8;
	else if (ci_prefix(buf, k, "ftp://"))
		skip = 6;
	else if (ci_prefix(buf, k, "mailto:"))
		skip = 7;
	else if (ci_prefix(buf, k, "www."))
		skip = 4;
	else
		return 0;
	return k > skip ? k : 0;
}

void mime_add_uri(mime_t *mi, const char *p, size_t n, uint32_t types)
{
	char buf[MIME_MAX_URI_BYTES];

	if (mi == NULL || mi->nuris >= MIME_MAX_URIS)
		return;
	bool too_long;
	size_t k = mime_uri_form(p, n, buf, &too_long);
	if (too_long)
		mi->flags |= MIME_F_LONG_URI;
	if (k == 0)
		return;
	if (mi->uris == NULL) {
		mi->uris = arena_alloc(mi->arena, MIME_MAX_URIS * sizeof(*mi->uris));
		mi->uri_types = arena_alloc(mi->arena, MIME_MAX_URIS * sizeof(*mi->uri_types));
		mi->uri_slot = arena_zalloc(mi->arena, MIME_SET_MAX_SLOTS * sizeof(*mi->uri_slot));
	}
	size_t i = hash_bytes(buf, k) & (MIME_SET_MAX_SLOTS - 1);
	for (; mi->uri_slot[i] != 0; i = (i + 1) & (MIME_SET_MAX_SLOTS - 1)) {
		size_t at = mi->uri_slot[i] - 1u;
		if (strncmp(mi->uris[at], buf, k) == 0 && mi->uris[at][k] == '\0') {
			mi->uri_types[at] |= types;
			return;
		}
	}
	const char *u = arena_strndup(mi->arena, buf, k);
	mi->uri_types[mi->nuris] = types;
	mi->uris[mi->nuris++] = u;
	mi->uri_slot[i] = (uint16_t)mi->nuris;
	uri_host(mi, u, k);
}

/* Characters that end a URL written in text. */
static inline bool uri_stop(int c)
{
	return c <= ' ' || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '`' || c == '{' ||
	       c == '}' || c == '|' || c == '^' || c == '\\';
}

/* A URL may start at t[s]: not inside a word, a host name or a path. */
static bool uri_word_start(const char *t, size_t s)
{
	if (s == 0)
		return true;
	int c = (unsigned char)t[s - 1];
	return !(is_alnum(c) || c == '.' || c == '-' || c == '_' || c == '@' || c == '/');
}

/*
 * Every URL written in text contains ':' (after its scheme) or '.' (after
 * "www"), so the scan jumps between those two with memchr() instead of
 * testing each byte for a scheme: text is mostly letters, and this loop
 * runs over every text part and rendered HTML part.
 */
void mime_scan_uris(mime_t *mi, const char *t, size_t n)
{
	const char *end = t + n, *colon = NULL, *dot = NULL;
	size_t i = 0;

	if (mi == NULL)
		return;
	while (i < n && mi->nuris < MIME_MAX_URIS) {
		if (colon == NULL || colon < t + i) {
			colon = memchr(t + i, ':', n - i);
			if (colon == NULL)
				colon = end;
		}
		if (dot == NULL || dot < t + i) {
			dot = memchr(t + i, '.', n - i);
			if (dot == NULL)
				dot = end;
		}
		const char *hit = colon < dot ? colon : dot;
		if (hit == end)
			break;
		size_t k = (size_t)(hit - t), start, min;
		i = k + 1;
		if (*hit == ':') {
			size_t s = k;
			while (s > 0 && k - s < 6 &&
			       ((t[s - 1] | 0x20) >= 'a' && (t[s - 1] | 0x20) <= 'z'))
				s--;
			bool slashes = k + 2 < n && t[k + 1] == '/' && t[k + 2] == '/';
			size_t wl = k - s;
			if (slashes && ((wl == 4 && ci_prefix(t + s, wl, "http")) ||
			                (wl == 5 && ci_prefix(t + s, wl, "https")) ||
			                (wl == 3 && ci_prefix(t + s, wl, "ftp"))))
				min = wl + 3;
			else if (wl == 6 && ci_prefix(t + s, wl, "mailto"))
				min = 7;
			else
				continue;
			start = s;
		} else if (k < 3 || !ci_prefix(t + k - 3, 3, "www")) {
			/*
			 * A bare host name: the run of name bytes around the dot,
			 * unless an address ('@' before or after it) or part of a
			 * path or query.
			 */
			size_t s = k, e = k + 1;
			while (s > 0 && (is_alnum((unsigned char)t[s - 1]) || t[s - 1] == '-' ||
			                 t[s - 1] == '.'))
				s--;
			while (e < n &&
			       (is_alnum((unsigned char)t[e]) || t[e] == '-' || t[e] == '.'))
				e++;
			i = e;
			bool inside = s > 0 && strchr("@/\\:_%=?&#~+", t[s - 1]) != NULL;
			if (inside || (e < n && (t[e] == '@' || t[e] == '_')))
				continue;
			while (e > s && (t[e - 1] == '.' || t[e - 1] == '-'))
				e--;
			while (s < e && (t[s] == '.' || t[s] == '-'))
				s++;
			if (memchr(t + s, '.', e - s) != NULL)
				add_text_domain(mi, t + s, e - s);
			continue;
		} else {
			start = k - 3;
			min = 4;
		}
		if (!uri_word_start(t, start))
			continue;
		const char *p = t + start;
		size_t rest = n - start, e = min;
		while (e < rest && !uri_stop((unsigned char)p[e]))
			e++;
		/*
		 * Trailing punctuation belongs to the sentence, not the link; a
		 * ')' stays if a '(' opened inside the link. The '(' is looked
		 * for once: e only shrinks, and ")))..." must not go quadratic.
		 */
		const char *open_paren = memchr(p, '(', e);
		while (e > min) {
			char z = p[e - 1];
			if (z == '.' || z == ',' || z == ';' || z == ':' || z == '!' || z == '?' ||
			    z == '\'' || z == '*' || z == ']' || z == '}') {
				e--;
			} else if (z == ')') {
				if (open_paren != NULL && open_paren < p + e)
					break;
				e--;
			} else {
				break;
			}
		}
		if (e > min)
			mime_add_uri(mi, p, e, MIME_URI_PARSED);
		if (start + e > i)
			i = start + e;
	}
}

/* ------------------------------------------------------------ the walk */

static size_t new_part(mime_t *mi, unsigned depth, const char *headers)
{
	if (mi->nparts == mi->parts_cap)
		mi->parts = arena_grow(mi->arena, mi->parts, mi->nparts, &mi->parts_cap,
		                       sizeof(*mi->parts), 8);
	mime_part_t *p = &mi->parts[mi->nparts];
	memset(p, 0, sizeof(*p));
	p->depth = depth;
	p->headers = headers ? headers : "";
	p->decoded = "";
	p->raw = "";
	return mi->nparts++;
}

/* A header value made NUL-terminated, CRs dropped, leading blanks skipped. */
static const char *hdr_value(mime_t *mi, const char *s, size_t n)
{
	while (n > 0 && is_sp((unsigned char)*s)) {
		s++;
		n--;
	}
	char *v = arena_alloc(mi->arena, n + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] != '\r')
			v[k++] = s[i];
	while (k > 0 && is_sp((unsigned char)v[k - 1]))
		k--;
	v[k] = '\0';
	return v;
}

struct ent_hdr {
	const char *ct, *cte, *cd; /* header values, NULL when absent */
	const char *block;         /* "Name: value\n" lines */
	bool no_separator;         /* the block ended at a body line, not an empty one */
};

/*
 * Splits a part into its header block and body. The header block ends at
 * a blank line, or at the first line that is not a header field (then no
 * line is consumed), as msg_parse_raw() does for the message.
 */
static size_t part_headers(mime_t *mi, const char *s, size_t n, struct ent_hdr *h)
{
	size_t i = 0, end_hdr = 0;
	const char **cur = NULL;
	size_t cur_start = 0;

	memset(h, 0, sizeof(*h));
	while (i < n) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t eol = nl ? (size_t)(nl - s) : n;
		size_t next = nl ? eol + 1 : n;
		size_t le = eol;
		if (le > i && s[le - 1] == '\r')
			le--;
		if (le == i) {
			/* The blank line. */
			if (cur)
				*cur = hdr_value(mi, s + cur_start, end_hdr - cur_start);
			cur = NULL;
			i = next;
			break;
		}
		if (s[i] == ' ' || s[i] == '\t') {
			if (end_hdr == 0) {
				h->no_separator = true;
				break; /* a continuation with no field: body */
			}
			end_hdr = next;
			i = next;
			continue;
		}
		size_t j = i;
		while (j < le && s[j] > ' ' && s[j] < 127 && s[j] != ':')
			j++;
		size_t name_end = j;
		while (j < le && (s[j] == ' ' || s[j] == '\t'))
			j++;
		if (name_end == i || j >= le || s[j] != ':') {
			h->no_separator = true;
			break; /* not a header line: the body starts here */
		}
		if (cur)
			*cur = hdr_value(mi, s + cur_start, end_hdr - cur_start);
		cur = NULL;
		const char *name = s + i;
		size_t nlen = name_end - i;
		if (ci_eq(name, nlen, "content-type") && h->ct == NULL)
			cur = &h->ct;
		else if (ci_eq(name, nlen, "content-transfer-encoding") && h->cte == NULL)
			cur = &h->cte;
		else if (ci_eq(name, nlen, "content-disposition") && h->cd == NULL)
			cur = &h->cd;
		cur_start = j + 1;
		end_hdr = next;
		i = next;
	}
	if (cur)
		*cur = hdr_value(mi, s + cur_start, end_hdr - cur_start);
	/* The part's own header block, CRs dropped, for mimeheader rules. */
	char *b = arena_alloc(mi->arena, end_hdr + 2);
	size_t k = 0;
	for (size_t t = 0; t < end_hdr; t++)
		if (s[t] != '\r')
			b[k++] = s[t];
	if (k > 0 && b[k - 1] != '\n')
		b[k++] = '\n';
	b[k] = '\0';
	h->block = b;
	return i;
}

/* Appends text to a view, starting it on a new line after earlier text. */
static void view_add(abuf_t *v, const char *s, size_t n)
{
	if (n == 0)
		return;
	if (v->len > 0 && v->data[v->len - 1] != '\n')
		abuf_putc(v, '\n');
	abuf_append(v, s, n);
}

/* Drops CR before LF and turns NULs into spaces, in place; returns the new length. */
static size_t text_clean(char *s, size_t n)
{
	if (memchr(s, '\r', n) == NULL) {
		for (char *z = memchr(s, '\0', n); z != NULL;
		     z = memchr(z, '\0', n - (size_t)(z - s)))
			*z = ' ';
		return n;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
			continue;
		s[k++] = s[i] ? s[i] : ' ';
	}
	s[k] = '\0';
	return k;
}

/*
 * SpamAssassin's cut of a text part to its scan size (Message.pm): how
 * many of s's n bytes the view keeps. The first line break at or past
 * the limit, else (raw) the first '>', else the first blank, ends the
 * kept text when it comes within MIME_SCAN_CUT_SLACK bytes; else the cut
 * is at the limit, moved back to a character boundary so the view stays
 * UTF-8.
 */
static size_t scan_cut(const char *s, size_t n, uint64_t limit, bool raw)
{
	if (limit == 0 || n <= limit)
		return n;
	size_t from = (size_t)limit;
	size_t span = n - from < MIME_SCAN_CUT_SLACK + 1 ? n - from : MIME_SCAN_CUT_SLACK + 1;
	const char *ends = raw ? "\n> " : "\n ";
	for (const char *c = ends; *c; c++) {
		const char *hit = memchr(s + from, *c, span);
		if (hit != NULL)
			return (size_t)(hit - s) + 1;
	}
	size_t cut = from;
	while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
		cut--;
	return cut;
}

/* A text leaf: decode, convert to UTF-8 within the text budget, add to the views. */
static void text_leaf(mime_t *mi, size_t idx, const char *s, size_t n)
{
	mime_part_t *p = &mi->parts[idx];
	uint64_t room =
	    mi->lim.max_text_bytes > mi->text_bytes ? mi->lim.max_text_bytes - mi->text_bytes : 0;
	if (room == 0) {
		if (n > 0)
			mi->flags |= MIME_F_TEXT_LIMIT;
		return;
	}
	size_t dn;
	bool owned;
	const char *d = xfer_decode(mi, p->encoding, s, n, &dn, &owned);
	char name[MIME_CHARSET_NAME_BYTES];
	enum cs_kind kind = cs_classify(p->charset, name, sizeof(name));
	char *t;
	size_t tn;
	if (owned && (kind == CS_UTF8 || kind == CS_GUESS) && utf8_valid_prefix(d, dn) == dn) {
		/* Already valid UTF-8 in a buffer of our own: no further copy. */
		t = (char *)d;
		tn = dn;
	} else {
		abuf_t out;
		bool bad = false;
		abuf_init(&out, mi->arena, dn + dn / 8 + 16);
		conv_or_fallback(&out, p->charset, d, dn, &bad);
		if (bad)
			mi->flags |= MIME_F_BAD_CHARSET;
		t = out.data;
		tn = out.len;
	}
	tn = text_clean(t, tn);
	if (tn > room) {
		/* Cut at a character boundary so the view stays valid UTF-8. */
		size_t cut = (size_t)room;
		while (cut > 0 && ((unsigned char)t[cut] & 0xc0) == 0x80)
			cut--;
		tn = cut;
		t[tn] = '\0';
		mi->flags |= MIME_F_TEXT_LIMIT;
	}
	mi->text_bytes += tn;
	p->decoded = t;
	p->decoded_len = tn;
	size_t start;
	if (p->is_html) {
		if (mi->body.len > 0 && mi->body.data[mi->body.len - 1] != '\n')
			abuf_putc(&mi->body, '\n');
		start = mi->body.len;
		mime_html_render(mi, t, tn, &mi->body);
		mime_scan_uris(mi, mi->body.data + start, mi->body.len - start);
	} else {
		view_add(&mi->body, t, tn);
		start = mi->body.len - tn;
		mime_scan_uris(mi, t, tn);
	}
	size_t keep = scan_cut(mi->body.data + start, mi->body.len - start,
	                       mi->lim.body_part_scan_bytes, false);
	if (keep < mi->body.len - start) {
		mi->gaps =
		    arena_grow(mi->arena, mi->gaps, mi->ngaps, &mi->gaps_cap, sizeof(*mi->gaps), 4);
		mi->gaps[mi->ngaps++] = (struct scan_gap){start + keep, mi->body.len,
		                                          mi->body.data[mi->body.len - 1] == '\n'};
		mi->flags |= MIME_F_SCAN_CUT;
	}
}

/*
 * Fills part idx from its header values. Returns the boundary of a
 * multipart (NULL when it has none); *kind says how to treat the body.
 */
enum ent_kind { ENT_LEAF, ENT_MULTIPART, ENT_MESSAGE };

static const char *describe(mime_t *mi, size_t idx, const struct ent_hdr *h, bool digest,
                            enum ent_kind *kind)
{
	struct params ps;
	mime_part_t *p = &mi->parts[idx];
	const char *boundary = NULL;

	*kind = ENT_LEAF;
	p->content_type = digest ? "message/rfc822" : "text/plain";
	if (h->ct != NULL) {
		const char *s = h->ct;
		while (is_sp((unsigned char)*s))
			s++;
		const char *e = s;
		while (*e && *e != ';')
			e++;
		size_t tn = (size_t)(e - s);
		while (tn > 0 && is_sp((unsigned char)s[tn - 1]))
			tn--;
		const char *slash = memchr(s, '/', tn);
		if (slash != NULL && slash > s && slash + 1 < s + tn) {
			char *ct = lower_dup(mi->arena, s, tn);
			/* "text / html" happens: squeeze blanks out. */
			size_t k = 0;
			for (size_t i = 0; ct[i]; i++)
				if (!is_sp((unsigned char)ct[i]))
					ct[k++] = ct[i];
			ct[k] = '\0';
			p->content_type = ct;
		} else if (tn > 0) {
			mi->flags |= MIME_F_BAD_HEADER;
			if (ci_eq(s, tn, "text"))
				p->content_type = "text/plain";
		}
		params_parse(mi, e, &ps);
		const char *cs = param_get(mi, &ps, "charset");
		if (cs != NULL && *cs) {
			char buf[MIME_CHARSET_NAME_BYTES];
			size_t k = 0;
			for (const char *c = cs; *c && k + 1 < sizeof(buf); c++)
				if (!is_sp((unsigned char)*c) && *c != '"' && *c != '\'')
					buf[k++] = (char)lc((unsigned char)*c);
			if (k > 0)
				p->charset = arena_strndup(mi->arena, buf, k);
		}
		if (!strncmp(p->content_type, "multipart/", 10)) {
			boundary = param_get(mi, &ps, "boundary");
			if (boundary != NULL && *boundary == '\0')
				boundary = NULL;
		}
		p->filename = param_get(mi, &ps, "name");
	}
	if (h->cte != NULL) {
		const char *s = h->cte;
		size_t n = 0;
		while (s[n] && !is_sp((unsigned char)s[n]) && s[n] != ';' && s[n] != '(')
			n++;
		if (n > 0)
			p->encoding = lower_dup(mi->arena, s, n);
	}
	bool attach = false;
	if (h->cd != NULL) {
		const char *s = h->cd;
		size_t n = 0;
		while (s[n] && s[n] != ';' && !is_sp((unsigned char)s[n]))
			n++;
		attach = ci_eq(s, n, "attachment");
		params_parse(mi, s + n, &ps);
		const char *fn = param_get(mi, &ps, "filename");
		if (fn != NULL)
			p->filename = fn;
	}
	if (p->filename != NULL) {
		/* Outlook and friends put RFC 2047 words inside quoted names. */
		if (strstr(p->filename, "=?") != NULL) {
			p->filename = mime_decode_header(mi->arena, p->filename);
		} else if (utf8_valid_prefix(p->filename, strlen(p->filename)) !=
		           strlen(p->filename)) {
			abuf_t b;
			abuf_init(&b, mi->arena, 64);
			cp1252_append(&b, p->filename, strlen(p->filename));
			p->filename = b.data;
		}
	}
	bool text = !strncmp(p->content_type, "text/", 5);
	p->is_attachment = attach || (p->filename != NULL && !text);
	p->is_text = text && !p->is_attachment;
	p->is_html = !strcmp(p->content_type, "text/html");
	if (!strncmp(p->content_type, "multipart/", 10)) {
		*kind = ENT_MULTIPART;
		if (boundary == NULL) {
			/* Nothing to split on: read it as text so rules still see it. */
			mi->flags |= MIME_F_BAD_BOUNDARY;
			p->is_text = true;
			*kind = ENT_LEAF;
		}
	} else if (!strcmp(p->content_type, "message/rfc822") ||
	           !strcmp(p->content_type, "message/global")) {
		*kind = ENT_MESSAGE;
	}
	return boundary;
}

/*
 * The next delimiter line of boundary b at or after from: "--" b at the
 * start of a line, then optionally "--" (the close delimiter), then only
 * blanks to the end of the line (RFC 2046, 5.1.1). Requiring the rest of
 * the line to be blank is what keeps an inner boundary "abc-1" from being
 * taken for the outer "abc". The line break before the delimiter belongs
 * to it, so *cend is where the preceding part's content ends.
 */
static bool find_delim(const char *s, size_t n, size_t from, const char *b, size_t bl, size_t *cend,
                       size_t *after, bool *close)
{
	while (from + 2 + bl <= n) {
		const char *hit = memmem(s + from + 2, n - from - 2, b, bl);
		if (hit == NULL)
			return false;
		size_t bpos = (size_t)(hit - s);
		size_t pos = bpos - 2;
		from = pos + 1;
		if (s[pos] != '-' || s[pos + 1] != '-' || (pos > 0 && s[pos - 1] != '\n'))
			continue;
		size_t e = bpos + bl;
		bool cl = false;
		if (e + 1 < n && s[e] == '-' && s[e + 1] == '-') {
			cl = true;
			e += 2;
		}
		while (e < n && (s[e] == ' ' || s[e] == '\t'))
			e++;
		if (e < n && s[e] == '\r' && e + 1 < n && s[e + 1] == '\n')
			e++;
		if (e < n && s[e] != '\n')
			continue;
		*after = e < n ? e + 1 : n;
		size_t c = pos;
		if (c > 0 && s[c - 1] == '\n')
			c--;
		if (c > 0 && s[c - 1] == '\r')
			c--;
		*cend = c;
		*close = cl;
		return true;
	}
	return false;
}

static void walk(mime_t *mi, const struct ent_hdr *h, const char *s, size_t n, unsigned depth,
                 bool digest);

/* A part of a multipart, or an embedded message: headers, then walk it. */
static bool walk_raw(mime_t *mi, const char *s, size_t n, unsigned depth, bool digest)
{
	struct ent_hdr h;
	size_t off = part_headers(mi, s, n, &h);
	walk(mi, &h, s + off, n - off, depth, digest);
	return h.no_separator;
}

/*
 * SpamAssassin expects a header field on the line after a delimiter
 * (a name of printable characters and a colon, no blank before it).
 */
static bool header_line_follows(const char *s, size_t n, size_t at)
{
	size_t i = at;
	while (i < n && s[i] > ' ' && s[i] < 127 && s[i] != ':')
		i++;
	return i > at && i < n && s[i] == ':';
}

/* Text other than white space and dots ("." lines are common in ham). */
static bool epilogue_text(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_sp((unsigned char)s[i]) && s[i] != '.')
			return true;
	return false;
}

static void walk_multipart(mime_t *mi, size_t idx, const char *b, const char *s, size_t n,
                           unsigned depth)
{
	size_t bl = strlen(b), cend, after, start;
	bool close, digest = !strcmp(mi->parts[idx].content_type, "multipart/digest");

	if (!find_delim(s, n, 0, b, bl, &cend, &after, &close)) {
		/* No delimiter at all: the body is all preamble; show it as text. */
		mi->flags |= MIME_F_BAD_BOUNDARY;
		mi->parts[idx].is_text = true;
		text_leaf(mi, idx, s, n);
		return;
	}
	start = after; /* the preamble before the first delimiter is ignored */
	if (!close && start < n && !header_line_follows(s, n, start))
		mi->flags |= MIME_F_PART_NO_HEADERS;
	while (!close) {
		if (mi->nparts >= mi->lim.max_parts) {
			mi->flags |= MIME_F_PART_LIMIT;
			return;
		}
		size_t part_end, next;
		if (find_delim(s, n, start, b, bl, &cend, &after, &close)) {
			part_end = cend < start ? start : cend;
			next = after;
		} else {
			/* No closing delimiter: the last part runs to the end. */
			mi->flags |= MIME_F_BAD_BOUNDARY;
			part_end = n;
			next = n;
			close = true;
		}
		bool ended = close && next < n; /* by a delimiter, not the end */
		if (walk_raw(mi, s + start, part_end - start, depth + 1, digest))
			mi->flags |= MIME_F_PART_NO_SEPARATOR;
		if (!close && next < n && !header_line_follows(s, n, next))
			mi->flags |= MIME_F_PART_NO_HEADERS;
		if (ended && epilogue_text(s + next, n - next))
			mi->flags |= MIME_F_EPILOGUE;
		start = next;
	}
	/* The epilogue after the close delimiter is otherwise ignored. */
}

static void walk(mime_t *mi, const struct ent_hdr *h, const char *s, size_t n, unsigned depth,
                 bool digest)
{
	enum ent_kind kind;

	if (mi->nparts >= mi->lim.max_parts) {
		mi->flags |= MIME_F_PART_LIMIT;
		return;
	}
	size_t idx = new_part(mi, depth, h->block);
	const char *boundary = describe(mi, idx, h, digest, &kind);
	mime_part_t *p = &mi->parts[idx];
	if (kind == ENT_LEAF) {
		p->raw = s;
		p->raw_len = n;
	}

	if (kind != ENT_LEAF && depth + 1 > mi->lim.max_depth) {
		mi->flags |= MIME_F_DEPTH_LIMIT;
		return;
	}
	if (kind == ENT_MULTIPART) {
		walk_multipart(mi, idx, boundary, s, n, depth);
		return;
	}
	if (kind == ENT_MESSAGE) {
		size_t dn;
		bool owned;
		/* Only identity is legal here, but base64'ed messages exist. */
		const char *d = xfer_decode(mi, p->encoding, s, n, &dn, &owned);
		walk_raw(mi, d, dn, depth + 1, false);
		return;
	}
	if (p->is_text) {
		text_leaf(mi, idx, s, n);
		return;
	}
	size_t dn;
	bool owned;
	p->decoded = xfer_decode(mi, p->encoding, s, n, &dn, &owned);
	p->decoded_len = dn;
}

/*
 * The body view: the whole body less the text past each part's scan
 * size. Parts stay on lines of their own, as view_add() keeps them: the
 * line break the next part put after a whole part that did not end with
 * one goes unless the cut text ends with one already, and one is put
 * after a cut part that lost the line break it ended with.
 */
static void scan_body_build(mime_t *mi)
{
	if (mi->ngaps == 0) {
		mi->scan_body = mi->body.data;
		mi->scan_body_len = mi->body.len;
		return;
	}
	abuf_t v;
	abuf_init(&v, mi->arena, mi->body.len + mi->ngaps + 1);
	size_t at = 0;
	for (size_t i = 0; i < mi->ngaps; i++) {
		const struct scan_gap *g = &mi->gaps[i];
		abuf_append(&v, mi->body.data + at, g->from - at);
		at = g->to;
		if (at == mi->body.len)
			break;
		bool ends_nl = v.len > 0 && v.data[v.len - 1] == '\n';
		if (!g->whole_ends_nl && ends_nl)
			at++; /* the next part's line break: the cut text has one */
		else if (g->whole_ends_nl && !ends_nl)
			abuf_putc(&v, '\n');
	}
	abuf_append(&v, mi->body.data + at, mi->body.len - at);
	mi->scan_body = v.data;
	mi->scan_body_len = v.len;
}

/*
 * rawbody is the text parts joined, each cut to its scan size. With one
 * text part (most mail) and no cut it is that part's decoded text itself,
 * so the common case makes no copy.
 */
static void rawbody_build(mime_t *mi)
{
	const mime_part_t *only = NULL;
	size_t count = 0;
	bool cut = false;
	uint64_t limit = mi->lim.rawbody_part_scan_bytes;

	for (size_t i = 0; i < mi->nparts; i++) {
		const mime_part_t *p = &mi->parts[i];
		if (p->is_text && p->decoded_len > 0) {
			only = p;
			count++;
			cut |= scan_cut(p->decoded, p->decoded_len, limit, true) < p->decoded_len;
		}
	}
	if (cut)
		mi->flags |= MIME_F_SCAN_CUT;
	if (count <= 1 && !cut) {
		mi->rawbody = only ? only->decoded : "";
		mi->rawbody_len = only ? only->decoded_len : 0;
		return;
	}
	abuf_t v;
	abuf_init(&v, mi->arena, (size_t)mi->text_bytes + count + 1);
	for (size_t i = 0; i < mi->nparts; i++) {
		const mime_part_t *p = &mi->parts[i];
		if (p->is_text)
			view_add(&v, p->decoded, scan_cut(p->decoded, p->decoded_len, limit, true));
	}
	mi->rawbody = v.data;
	mi->rawbody_len = v.len;
}

mime_t *mime_parse(msg_t *m, const mime_limits_t *limits)
{
	arena_t *a = msg_arena(m);
	mime_t *mi = arena_zalloc(a, sizeof(*mi));
	size_t blen, hlen;
	const char *body = msg_body(m, &blen);

	mi->arena = a;
	if (limits != NULL) {
		mi->lim = *limits;
	} else {
		mi->lim.max_depth = MIME_DEFAULT_MAX_DEPTH;
		mi->lim.max_parts = MIME_DEFAULT_MAX_PARTS;
		mi->lim.max_text_bytes = MIME_DEFAULT_MAX_TEXT_BYTES;
		mi->lim.body_part_scan_bytes = MIME_DEFAULT_BODY_PART_SCAN;
		mi->lim.rawbody_part_scan_bytes = MIME_DEFAULT_RAWBODY_PART_SCAN;
	}
	if (mi->lim.max_depth > MIME_DEPTH_CAP)
		mi->lim.max_depth = MIME_DEPTH_CAP;
	if (msg_truncated(m))
		mi->flags |= MIME_F_TRUNCATED;
	if (msg_fields_dropped(m) > 0)
		mi->flags |= MIME_F_FIELD_LIMIT;
	abuf_init(&mi->body, a, blen + 256);

	const char *subj = msg_header_get(m, "Subject", 0);
	mi->subject = subj ? mime_decode_header(a, subj) : "";
	if (subj != NULL) {
		/* SpamAssassin's body starts "Subject\n\n": rules rely on it. */
		abuf_puts(&mi->body, mi->subject);
		abuf_append(&mi->body, "\n\n", 2);
	}

	struct ent_hdr h;
	h.ct = msg_header_get(m, "Content-Type", 0);
	h.cte = msg_header_get(m, "Content-Transfer-Encoding", 0);
	h.cd = msg_header_get(m, "Content-Disposition", 0);
	h.block = msg_header_block(m, &hlen);
	walk(mi, &h, body ? body : "", body ? blen : 0, 0, false);
	scan_body_build(mi);
	rawbody_build(mi);
	return mi;
}

/* ------------------------------------------------------------ accessors */

const char *mime_body(const mime_t *mi, size_t *len)
{
	if (len)
		*len = mi->scan_body_len;
	return mi->scan_body;
}

const char *mime_body_whole(const mime_t *mi, size_t *len)
{
	if (len)
		*len = mi->body.len;
	return mi->body.data;
}

const char *mime_rawbody(const mime_t *mi, size_t *len)
{
	if (len)
		*len = mi->rawbody_len;
	return mi->rawbody;
}

const char *mime_subject(const mime_t *mi)
{
	return mi->subject;
}

size_t mime_part_count(const mime_t *mi)
{
	return mi->nparts;
}

const mime_part_t *mime_part(const mime_t *mi, size_t i)
{
	return i < mi->nparts ? &mi->parts[i] : NULL;
}

size_t mime_uri_count(const mime_t *mi)
{
	return mi->nuris;
}

const char *mime_uri(const mime_t *mi, size_t i)
{
	return i < mi->nuris ? mi->uris[i] : NULL;
}

uint32_t mime_uri_types(const mime_t *mi, size_t i)
{
	return i < mi->nuris ? mi->uri_types[i] : 0;
}

static const char *const uri_type_names[] = {
    "parsed", "a",       "area", "link", "img",   "frame", "iframe", "embed",
    "script", "bgsound", "form", "body", "table", "tr",    "td",     "base",
};
_Static_assert(sizeof(uri_type_names) / sizeof(uri_type_names[0]) == MIME_URI_NTYPES,
               "a name per URI type");

const char *mime_uri_type_name(unsigned bit)
{
	return bit < MIME_URI_NTYPES ? uri_type_names[bit] : NULL;
}

uint32_t mime_uri_type_of(const char *tag, const char *attr)
{
	/* SpamAssassin's HTML parser (html_uri): which attribute of which tag is a link */
	static const struct {
		const char *attr;
		uint32_t types;
	} by_attr[] = {
	    {"href", MIME_URI_A | MIME_URI_AREA | MIME_URI_LINK | MIME_URI_BASE},
	    {"src", MIME_URI_IMG | MIME_URI_FRAME | MIME_URI_IFRAME | MIME_URI_EMBED |
	                MIME_URI_SCRIPT | MIME_URI_BGSOUND},
	    {"action", MIME_URI_FORM},
	    {"background", MIME_URI_BODY | MIME_URI_TABLE | MIME_URI_TR | MIME_URI_TD},
	};
	for (unsigned b = 1; b < MIME_URI_NTYPES; b++) {
		if (strcmp(tag, uri_type_names[b]) != 0)
			continue;
		for (size_t k = 0; k < sizeof(by_attr) / sizeof(by_attr[0]); k++)
			if (strcmp(attr, by_attr[k].attr) == 0)
				return by_attr[k].types & (1u << b);
		return 0;
	}
	return 0;
}

size_t mime_domain_count(const mime_t *mi)
{
	return mi->domains.n;
}

const char *mime_domain(const mime_t *mi, size_t i)
{
	return i < mi->domains.n ? mi->domains.v[i] : NULL;
}

size_t mime_text_domain_count(const mime_t *mi)
{
	return mi->tdomains.n;
}

const char *mime_text_domain(const mime_t *mi, size_t i)
{
	return i < mi->tdomains.n ? mi->tdomains.v[i] : NULL;
}

size_t mime_lookup_domain_count(const mime_t *mi)
{
	return mi->domains.n + mi->targets.n;
}

const char *mime_lookup_domain(const mime_t *mi, size_t i)
{
	if (i < mi->domains.n)
		return mi->domains.v[i];
	i -= mi->domains.n;
	return i < mi->targets.n ? mi->targets.v[i] : NULL;
}

unsigned mime_flags(const mime_t *mi)
{
	return mi->flags;
}
