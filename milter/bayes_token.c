/*
 * bayes_token.c - turns one message into the 64-bit token keys the Bayes
 * store counts (see bayes.h for the token classes). The hot path hashes
 * words straight from the decoded text into a growing key array; the
 * token text is only built when an explanation asks for it.
 */
#include "config.h"

#include "bayes.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TK_INITIAL_KEYS     1024
#define TK_MAX_HEADER_WORDS 200 /* words taken from one header field */
#define TK_MIN_WORD_BYTES   3
#define TK_MAX_PREFIX_BYTES 16
/*
 * The header's share of a message's tokens. The body (BAYES_MAX_BODY_WORDS)
 * and the URIs (200) were bounded, the header only per field: 250 KB of
 * From fields of twenty addresses on deep domains made 100,000 tokens, and
 * learned, about 10 MB of store; a few dozen such messages filled the
 * default map for everyone when autolearn was on. No header of the
 * SpamAssassin corpus's 6,046 messages makes more than 476. The field that
 * passes the bound is finished; later fields give none.
 */
#define TK_MAX_HEADER_TOKENS 20000
/*
 * Parent domains kept of one host name, those nearest the top: a host of
 * 60 labels gave 59 tokens. Only names of more than nine labels lose any,
 * and the registrable domain is always among those kept, so ordinary mail
 * keeps its keys and a store its tokenizer version: of the corpus's 6,046
 * messages two (spam) lost keys, their P(spam) moving in the 7th decimal.
 */
#define TK_MAX_HOST_PARENTS 8

/* ------------------------------------------------------------ hashing */

#define H_C1     0x87c37b91114253d5ULL
#define H_C2     0x4cf5ad432745937fULL
#define H_GOLDEN 0x9e3779b97f4a7c15ULL

static inline uint64_t rotl64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t fmix64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

/* Little-endian reads so every platform computes the same keys. */
static inline uint64_t rd64le(const uint8_t *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
	       (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
	       (uint64_t)p[7] << 56;
}

/*
 * MurmurHash3-style mixing, one 64-bit lane: tokens are short, so one lane
 * and a strong finaliser beat the two-lane original for speed at equal
 * quality for our purpose (keys only need to be well spread and stable).
 */
uint64_t bayes_hash(const void *data, size_t n, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h = seed ^ (H_GOLDEN * (uint64_t)(n + 1));
	size_t len = n;

	while (len >= 8) {
		uint64_t k = rd64le(p) * H_C1;
		k = rotl64(k, 31) * H_C2;
		h ^= k;
		h = rotl64(h, 27) * 5 + 0x52dce729;
		p += 8;
		len -= 8;
	}
	if (len > 0) {
		uint64_t k = 0;
		for (size_t i = 0; i < len; i++)
			k |= (uint64_t)p[i] << (8 * i);
		k *= H_C1;
		k = rotl64(k, 31) * H_C2;
		h ^= k;
	}
	h ^= (uint64_t)n;
	return fmix64(h);
}

/* The key of a sparse bigram: both words' keys and their distance. */
static inline uint64_t pair_key(uint64_t a, uint64_t b, unsigned dist)
{
	return fmix64(a * H_C1 ^ rotl64(b, 23) ^ ((uint64_t)dist * H_C2)) | BAYES_PAIR_BIT;
}

/* ------------------------------------------------------------ key array */

typedef struct tk {
	arena_t *a;
	uint64_t *keys;
	const char **text;
	size_t n, cap;
	bool keep_text;
	/* Sparse-bigram window: the keys (and texts) of the previous words. */
	uint64_t win[BAYES_OSB_WINDOW];
	const char *win_text[BAYES_OSB_WINDOW];
	unsigned win_n;
	uint64_t win_seed; /* the prefix the window belongs to */
} tk_t;

static void tk_grow(tk_t *t)
{
	size_t cap = t->cap; /* keys and texts grow together */
	if (t->keep_text)
		t->text = arena_grow(t->a, t->text, t->n, &cap, sizeof(*t->text), TK_INITIAL_KEYS);
	cap = t->cap;
	t->keys = arena_grow(t->a, t->keys, t->n, &cap, sizeof(*t->keys), TK_INITIAL_KEYS);
	t->cap = cap;
}

static inline void tk_push(tk_t *t, uint64_t key, const char *text)
{
	if (t->n == t->cap)
		tk_grow(t);
	t->keys[t->n] = key;
	if (t->keep_text)
		t->text[t->n] = text;
	t->n++;
}

static uint64_t prefix_seed(const char *prefix)
{
	return bayes_hash(prefix, strlen(prefix), 0x5349465442415945ULL); /* "SIFTBAYE" */
}

/* Emits prefix+word (word already normalised). Returns its key. */
static uint64_t tk_emit(tk_t *t, uint64_t seed, const char *prefix, const char *w, size_t len)
{
	uint64_t key = bayes_hash(w, len, seed) & ~BAYES_PAIR_BIT;
	const char *text = NULL;
	if (t->keep_text)
		text = arena_sprintf(t->a, "%s%.*s", prefix, (int)len, w);
	tk_push(t, key, text);
	return key;
}

static void tk_window_reset(tk_t *t)
{
	t->win_n = 0;
}

/* A word in running text: its unigram plus a pair with each word before it. */
static void tk_word(tk_t *t, uint64_t seed, const char *prefix, const char *w, size_t len)
{
	uint64_t key = tk_emit(t, seed, prefix, w, len);
	const char *text = t->keep_text ? t->text[t->n - 1] : NULL;

	if (t->win_seed != seed) {
		t->win_seed = seed;
		t->win_n = 0;
	}
	for (unsigned d = 1; d <= t->win_n && d < BAYES_OSB_WINDOW; d++) {
		unsigned i = t->win_n - d;
		const char *pt = NULL;
		if (t->keep_text)
			pt = arena_sprintf(t->a, "%s%s%s", t->win_text[i], d == 1 ? " " : " * ",
			                   text + strlen(prefix));
		tk_push(t, pair_key(t->win[i], key, d), pt);
	}
	if (BAYES_OSB_WINDOW > 1) {
		if (t->win_n == BAYES_OSB_WINDOW - 1) {
			memmove(t->win, t->win + 1, (BAYES_OSB_WINDOW - 2) * sizeof(t->win[0]));
			memmove(t->win_text, t->win_text + 1,
			        (BAYES_OSB_WINDOW - 2) * sizeof(t->win_text[0]));
			t->win_n--;
		}
		t->win[t->win_n] = key;
		t->win_text[t->win_n] = text;
		t->win_n++;
	}
}

/* ------------------------------------------------------------ words */

/*
 * Byte classes for splitting. Letters, digits and UTF-8 sequences make
 * words; a few punctuation characters may sit inside a word ("e-mail",
 * "3.5", "don't", "$10", "50%") and are trimmed from its ends; all else
 * separates. UTF-8 general punctuation (U+2000-U+206F: dashes, quotes,
 * ellipsis) and the Latin-1 punctuation block (U+00A0-U+00BF: no-break
 * space, inverted marks) separate too, so typography does not split a
 * vocabulary in two.
 */
enum { C_SEP = 0, C_WORD = 1, C_INNER = 2 };

/* Built once per process (pthread_once), then only read. */
static unsigned char byte_class[256];
static pthread_once_t byte_class_once = PTHREAD_ONCE_INIT;

static void init_byte_class(void)
{
	for (int c = 0; c < 256; c++) {
		unsigned char k = C_SEP;
		if (isalnum(c) && c < 128)
			k = C_WORD;
		else if (c >= 0x80)
			k = C_WORD;
		else if (strchr("-.'_$%!@", c) != NULL && c != 0)
			k = C_INNER;
		byte_class[c] = k;
	}
}

/* Length of a UTF-8 separator sequence at p (0 if p does not start one). */
static inline size_t utf8_sep_len(const unsigned char *p, const unsigned char *end)
{
	if (p[0] == 0xc2 && p + 1 < end && p[1] >= 0xa0 && p[1] <= 0xbf)
		return 2;
	if (p[0] == 0xe2 && p + 2 < end && (p[1] == 0x80 || p[1] == 0x81))
		return 3;
	if (p[0] == 0xe3 && p + 2 < end && p[1] == 0x80 && p[2] <= 0x82)
		return 3; /* ideographic space, comma, full stop */
	if (p[0] == 0xef && p + 2 < end && p[1] == 0xbc && p[2] <= 0x8f)
		return 3; /* fullwidth punctuation */
	return 0;
}

typedef void (*word_fn)(tk_t *t, uint64_t seed, const char *prefix, const char *w, size_t len);

/*
 * Splits text into words, normalises each (ASCII lower case, trimmed) into
 * buf and passes it to fn. Over-long words become "skip:" tokens carrying
 * their first byte's kind and length in tens: long runs are base64 or
 * URLs or unspaced CJK text, whose exact form is noise but whose presence
 * is not.
 */
static size_t tk_text(tk_t *t, uint64_t seed, const char *prefix, const char *s, size_t n,
                      size_t max_words, word_fn fn)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	char buf[BAYES_MAX_WORD_BYTES + 1];
	size_t words = 0;
	uint64_t skip_seed = 0;

	while (p < end && words < max_words) {
		while (p < end && (byte_class[*p] == C_SEP || utf8_sep_len(p, end)))
			p += byte_class[*p] == C_SEP ? 1 : utf8_sep_len(p, end);
		const unsigned char *w = p;
		while (p < end && byte_class[*p] != C_SEP && !utf8_sep_len(p, end))
			p++;
		const unsigned char *we = p;
		/* Trim: a leading '$' and trailing '!' or '%' are kept. */
		while (w < we && byte_class[*w] == C_INNER && *w != '$')
			w++;
		while (we > w && byte_class[we[-1]] == C_INNER && we[-1] != '!' && we[-1] != '%')
			we--;
		size_t len = (size_t)(we - w);
		if (len < TK_MIN_WORD_BYTES)
			continue;
		words++;
		if (len > BAYES_MAX_WORD_BYTES) {
			if (skip_seed == 0)
				skip_seed = prefix_seed("skip:");
			int k = snprintf(buf, sizeof(buf), "%c%zu",
			                 *w >= 0x80    ? 'u'
			                 : isdigit(*w) ? 'd'
			                               : 'a',
			                 len / 10 * 10);
			tk_emit(t, skip_seed, "skip:", buf, (size_t)k);
			tk_window_reset(t);
			continue;
		}
		for (size_t i = 0; i < len; i++)
			buf[i] = (char)(w[i] < 0x80 ? tolower(w[i]) : w[i]);
		buf[len] = '\0';
		fn(t, seed, prefix, buf, len);
	}
	return words;
}

static void tk_unigram(tk_t *t, uint64_t seed, const char *prefix, const char *w, size_t len)
{
	tk_emit(t, seed, prefix, w, len);
}

/* ------------------------------------------------------------ headers */

static void lower_into(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[n] = '\0';
}

/* "prefix" + a lower-cased copy of s[0..n) (cut to the word limit). */
static void tk_lower(tk_t *t, const char *prefix, const char *s, size_t n)
{
	char buf[BAYES_MAX_WORD_BYTES * 2 + 1];
	if (n == 0)
		return;
	if (n > sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	lower_into(buf, s, n);
	tk_emit(t, prefix_seed(prefix), prefix, buf, n);
}

/* A host name: itself and each parent domain of two labels or more. */
static void tk_host(tk_t *t, const char *prefix, const char *h, size_t n)
{
	while (n > 0 && h[n - 1] == '.')
		n--;
	if (n == 0)
		return;
	tk_lower(t, prefix, h, n);
	char dprefix[TK_MAX_PREFIX_BYTES + 2];
	snprintf(dprefix, sizeof(dprefix), "%s.", prefix);
	/* The last dot ends the parents: a bare TLD says little. */
	size_t dots = 0;
	for (size_t i = 0; i < n; i++)
		dots += h[i] == '.';
	const char *dot = memchr(h, '.', n);
	for (size_t skip = dots > TK_MAX_HOST_PARENTS + 1 ? dots - TK_MAX_HOST_PARENTS - 1 : 0;
	     skip > 0; skip--)
		dot = memchr(dot + 1, '.', n - (size_t)(dot + 1 - h));
	while (dot != NULL) {
		const char *rest = dot + 1;
		size_t rn = n - (size_t)(rest - h);
		if (memchr(rest, '.', rn) == NULL)
			break;
		tk_lower(t, dprefix, rest, rn);
		dot = memchr(rest, '.', rn);
	}
}

static bool is_ipv4(const char *s, size_t n)
{
	unsigned dots = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.')
			dots++;
		else if (!isdigit((unsigned char)s[i]))
			return false;
	}
	return dots == 3 && n >= 7;
}

/* An IPv4 address as its /24 ("rcvd:ip:192.0.2"). */
static void tk_ip24(tk_t *t, const char *prefix, const char *s, size_t n)
{
	const char *last = s + n;
	while (last > s && last[-1] != '.')
		last--;
	char pfx[TK_MAX_PREFIX_BYTES + 4];
	snprintf(pfx, sizeof(pfx), "%sip:", prefix);
	tk_lower(t, pfx, s, (size_t)(last - s - 1));
}

/*
 * Address headers: each address whole, its domain (and parents) and the
 * words of the display names.
 */
static void tk_addresses(tk_t *t, const char *prefix, const char *v)
{
	const char *p = v;
	char wpfx[TK_MAX_PREFIX_BYTES + 4], dpfx[TK_MAX_PREFIX_BYTES + 4];
	snprintf(wpfx, sizeof(wpfx), "%sw:", prefix);
	snprintf(dpfx, sizeof(dpfx), "%sd:", prefix);
	uint64_t wseed = prefix_seed(wpfx);
	size_t found = 0;

	while ((p = strchr(p, '@')) != NULL && found < 20) {
		const char *b = p, *e = p + 1;
		while (b > v && !strchr(" \t\n<>\"(),;:'", b[-1]))
			b--;
		while (*e && !strchr(" \t\n<>\"(),;:'", *e))
			e++;
		if (p > b && e > p + 1) {
			tk_lower(t, prefix, b, (size_t)(e - b));
			tk_host(t, dpfx, p + 1, (size_t)(e - p - 1));
			found++;
		}
		p = e;
	}
	if (found == 0)
		tk_lower(t, prefix, "none", 4);
	/* Display names and comments: the words outside the addresses. */
	tk_text(t, wseed, wpfx, v, strlen(v), TK_MAX_HEADER_WORDS, tk_unigram);
}

/* Received: host names and address blocks of the hops, and the protocol. */
static void tk_received(tk_t *t, const char *v)
{
	const char *p = v;
	size_t words = 0;
	while (*p && words < 40) {
		while (*p && !isalnum((unsigned char)*p))
			p++;
		const char *b = p;
		while (*p && (isalnum((unsigned char)*p) || *p == '.' || *p == '-'))
			p++;
		size_t n = (size_t)(p - b);
		if (n == 0)
			break;
		words++;
		while (n > 0 && (b[n - 1] == '.' || b[n - 1] == '-'))
			n--;
		if (is_ipv4(b, n)) {
			tk_ip24(t, "rcvd:", b, n);
		} else if (memchr(b, '.', n) != NULL && n <= 80) {
			bool alpha = false;
			for (size_t i = 0; i < n; i++)
				alpha |= isalpha((unsigned char)b[i]) != 0;
			if (alpha)
				tk_host(t, "rcvd:", b, n);
		} else if (b > v + 5 && strncasecmp(b - 5, "with ", 5) == 0) {
			tk_lower(t, "rcvd:with:", b, n);
		}
	}
}

static void tk_message_id(tk_t *t, const char *v)
{
	const char *at = strrchr(v, '@');
	if (at == NULL) {
		tk_lower(t, "mid:", "none", 4);
		return;
	}
	const char *e = at + 1;
	while (*e && *e != '>' && !isspace((unsigned char)*e))
		e++;
	if (e == at + 1)
		tk_lower(t, "mid:", "empty", 5);
	else
		tk_host(t, "mid:", at + 1, (size_t)(e - at - 1));
}

/* The mailer: its words and its whole name without version numbers. */
static void tk_mailer(tk_t *t, const char *v)
{
	tk_text(t, prefix_seed("xm:"), "xm:", v, strlen(v), TK_MAX_HEADER_WORDS, tk_unigram);
	char buf[BAYES_MAX_WORD_BYTES + 1];
	size_t n = 0;
	for (const char *p = v; *p && n < BAYES_MAX_WORD_BYTES; p++)
		if (!isdigit((unsigned char)*p))
			buf[n++] = *p;
	while (n > 0 && strchr(" \t./-_()[]", buf[n - 1]) != NULL)
		n--;
	tk_lower(t, "xm=", buf, n);
}

/* Our own verdict headers (and other filters') must not teach us. */
static bool header_ignored(const char *name)
{
	return strncasecmp(name, "X-Spam", 6) == 0 || strncasecmp(name, "X-Bogosity", 10) == 0;
}

static void tk_headers(tk_t *t, msg_t *m)
{
	size_t n = msg_header_count(m);
	arena_t *a = msg_arena(m);
	uint64_t sseed = prefix_seed("s:");

	for (size_t i = 0; i < n && t->n < TK_MAX_HEADER_TOKENS; i++) {
		const char *name = msg_header_name(m, i);
		const char *v = msg_header_value(m, i);
		size_t nl = strlen(name);
		if (header_ignored(name) || v == NULL)
			continue;
		if (nl <= BAYES_MAX_WORD_BYTES)
			tk_lower(t, "h:", name, nl);
		if (strcasecmp(name, "Subject") == 0) {
			const char *d = mime_decode_header(a, v);
			tk_text(t, sseed, "s:", d, strlen(d), TK_MAX_HEADER_WORDS, tk_word);
			tk_window_reset(t);
		} else if (strcasecmp(name, "From") == 0) {
			tk_addresses(t, "from:", mime_decode_header(a, v));
		} else if (strcasecmp(name, "To") == 0 || strcasecmp(name, "Cc") == 0) {
			tk_addresses(t, "to:", mime_decode_header(a, v));
		} else if (strcasecmp(name, "Reply-To") == 0) {
			tk_addresses(t, "rt:", mime_decode_header(a, v));
		} else if (strcasecmp(name, "Return-Path") == 0) {
			tk_addresses(t, "rp:", v);
		} else if (strcasecmp(name, "Received") == 0) {
			tk_received(t, v);
		} else if (strcasecmp(name, "Message-ID") == 0) {
			tk_message_id(t, v);
		} else if (strcasecmp(name, "X-Mailer") == 0 ||
		           strcasecmp(name, "User-Agent") == 0) {
			tk_mailer(t, v);
		}
	}
}

/* ------------------------------------------------------------ URLs, parts */

static void tk_uri(tk_t *t, const char *u)
{
	const char *p = u, *sch = strstr(u, "://");
	if (sch != NULL && sch - u < 10) {
		p = sch + 3;
	} else if (strncasecmp(u, "mailto:", 7) == 0) {
		const char *at = strchr(u, '@');
		if (at != NULL) {
			const char *e = at + 1;
			while (*e && !strchr("?>& \t\n", *e))
				e++;
			tk_host(t, "u:", at + 1, (size_t)(e - at - 1));
		}
		return;
	}
	const char *h = p;
	while (*p && !strchr("/?#:", *p))
		p++;
	const char *at = memchr(h, '@', (size_t)(p - h));
	if (at != NULL)
		h = at + 1; /* user@host: the host is what matters */
	size_t hn = (size_t)(p - h);
	if (hn == 0)
		return;
	if (is_ipv4(h, hn))
		tk_lower(t, "u:", "ip", 2);
	else
		tk_host(t, "u:", h, hn);
	while (*p && *p != '/' && *p != '?')
		p++; /* a port */
	if (*p)
		tk_text(t, prefix_seed("up:"), "up:", p, strlen(p), 20, tk_unigram);
}

static void tk_parts(tk_t *t, const mime_t *mi)
{
	size_t n = mime_part_count(mi);
	for (size_t i = 0; i < n; i++) {
		const mime_part_t *pt = mime_part(mi, i);
		if (pt->content_type)
			tk_lower(t, "ct:", pt->content_type, strlen(pt->content_type));
		if (pt->charset)
			tk_lower(t, "cs:", pt->charset, strlen(pt->charset));
		if (pt->encoding)
			tk_lower(t, "cte:", pt->encoding, strlen(pt->encoding));
		if (pt->filename != NULL && *pt->filename) {
			size_t fl = strlen(pt->filename);
			tk_lower(t, "fn:", pt->filename, fl);
			const char *dot = strrchr(pt->filename, '.');
			if (dot != NULL && dot[1])
				tk_lower(t, "fx:", dot + 1, strlen(dot + 1));
		}
		if (pt->is_attachment && pt->content_type)
			tk_lower(t, "pt:", pt->content_type, strlen(pt->content_type));
	}
	size_t nu = mime_uri_count(mi);
	for (size_t i = 0; i < nu && i < 200; i++)
		tk_uri(t, mime_uri(mi, i));
	size_t nd = mime_domain_count(mi);
	for (size_t i = 0; i < nd && i < 200; i++) {
		const char *d = mime_domain(mi, i);
		tk_host(t, "u:", d, strlen(d));
	}
}

/* ------------------------------------------------------------ sort, digest */

/* LSD radix sort, 8 bits a pass: no comparisons, no callbacks. */
static void radix_sort(uint64_t *k, uint64_t *tmp, size_t n)
{
	for (unsigned shift = 0; shift < 64; shift += 8) {
		size_t count[257] = {0};
		for (size_t i = 0; i < n; i++)
			count[((k[i] >> shift) & 0xff) + 1]++;
		if (count[((k[0] >> shift) & 0xff) + 1] == n)
			continue; /* every key has this byte: nothing moves */
		for (int b = 0; b < 256; b++)
			count[b + 1] += count[b];
		for (size_t i = 0; i < n; i++)
			tmp[count[(k[i] >> shift) & 0xff]++] = k[i];
		memcpy(k, tmp, n * sizeof(*k));
	}
}

typedef struct keyed_text {
	uint64_t key;
	const char *text;
} keyed_text_t;

static int keyed_cmp(const void *a, const void *b)
{
	const keyed_text_t *x = a, *y = b;
	return x->key < y->key ? -1 : x->key > y->key;
}

static void tk_sort_unique(tk_t *t)
{
	if (t->n == 0)
		return;
	if (!t->keep_text) {
		uint64_t *tmp = arena_alloc(t->a, t->n * sizeof(*tmp));
		radix_sort(t->keys, tmp, t->n);
	} else {
		/* The explanation path: carry the texts along, first text wins. */
		keyed_text_t *kt = arena_alloc(t->a, t->n * sizeof(*kt));
		for (size_t i = 0; i < t->n; i++)
			kt[i] = (keyed_text_t){t->keys[i], t->text[i]};
		qsort(kt, t->n, sizeof(*kt), keyed_cmp);
		for (size_t i = 0; i < t->n; i++) {
			t->keys[i] = kt[i].key;
			t->text[i] = kt[i].text;
		}
	}
	size_t w = 1;
	for (size_t i = 1; i < t->n; i++) {
		if (t->keys[i] == t->keys[w - 1])
			continue;
		t->keys[w] = t->keys[i];
		if (t->keep_text)
			t->text[w] = t->text[i];
		w++;
	}
	t->n = w;
}

/*
 * The digest that identifies a message for learning: the fields that name
 * it (Message-ID, Date, From, Subject) and its body, not the trace fields,
 * so the same message delivered twice by different routes is one message.
 */
static void tk_digest(msg_t *m, uint8_t out[BAYES_DIGEST_BYTES])
{
	static const char *const fields[] = {"Message-ID", "Date", "From", "Subject"};
	uint64_t h1 = 0x736966742d646967ULL, h2 = 0x6d6573736167652dULL;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const char *v = msg_header_get(m, fields[i], 0);
		if (v == NULL)
			v = "";
		h1 = bayes_hash(v, strlen(v), h1);
		h2 = bayes_hash(v, strlen(v), h2 ^ H_C1);
	}
	size_t blen;
	const char *body = msg_body(m, &blen);
	h1 = bayes_hash(body, blen, h1);
	h2 = bayes_hash(body, blen, h2 ^ H_C2);
	for (int i = 0; i < 8; i++) {
		out[i] = (uint8_t)(h1 >> (56 - 8 * i));
		out[8 + i] = (uint8_t)(h2 >> (56 - 8 * i));
	}
}

/* ------------------------------------------------------------ entry */

void bayes_tokenize(msg_t *m, const mime_t *mi, bool keep_text, bayes_tokens_t *out)
{
	tk_t t = {.a = msg_arena(m), .keep_text = keep_text};

	pthread_once(&byte_class_once, init_byte_class);
	tk_grow(&t);
	tk_headers(&t, m);

	size_t blen = 0;
	const char *body = mi ? mime_body_whole(mi, &blen) : msg_body(m, &blen);
	tk_window_reset(&t);
	tk_text(&t, prefix_seed(""), "", body, blen, BAYES_MAX_BODY_WORDS, tk_word);
	if (mi != NULL)
		tk_parts(&t, mi);

	tk_sort_unique(&t);
	out->keys = t.keys;
	out->text = keep_text ? t.text : NULL;
	out->n = t.n;
	tk_digest(m, out->digest);
}
