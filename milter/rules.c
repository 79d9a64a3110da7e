/*
 * rules.c - the rules engine: builds a rule set (rules_parse.c reads the
 * files), compiles every pattern with PCRE2 + JIT under Latin-1 tables,
 * and evaluates a set on one message's views. See rules.h for the
 * semantics; this file is about doing it fast and never silently wrong.
 */
#include "config.h"

#include <ctype.h>
#include <inttypes.h>
#include <libpsl.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rules_int.h"

/* The build defines it (Makefile.am); stand-alone builds (fuzzing) get a default. */
#ifndef SIFT_RULESDIR
#define SIFT_RULESDIR "/usr/local/share/sift/rules"
#endif

#define RULES_DEFAULT_MATCH_LIMIT     1000000u
#define RULES_DEFAULT_DEPTH_LIMIT     100000u
#define RULES_DEFAULT_JIT_STACK_BYTES (1024u * 1024)
/* SpamAssassin's MAX_HEADER_VALUE_LENGTH and MAX_HEADER_LENGTH (see value_into) */
#define RULES_DEFAULT_HEADER_VALUE_SCAN 8192u
#define RULES_DEFAULT_HEADER_ALL_SCAN   65536u
/* the prefilter database build's bounds (rules_hs.c) */
#define RULES_DEFAULT_BUILD_MEMORY ((uint64_t)1 << 30)
#define RULES_DEFAULT_BUILD_CPU    600
#define RULES_JIT_STACK_START_BYTES     (32u * 1024)
#define RULES_MAX_SPLIT_DEPTH           24
#define RULES_DETAIL_BYTES              60
#define RULES_ERROR_LOG_BURST           10
#define RULES_ERROR_LOG_WINDOW_S        60
/* rules_eval() without a deadline: how long the DNS tests wait for answers */
#define RULES_DNS_WAIT_MS 5000

/* ---------------------------------------------------------------- Latin-1 tables */

/*
 * PCRE2's tables come from the C library's locale, and no Latin-1 locale
 * can be relied on (Debian ships only C and C.UTF-8). So: build the C
 * locale's tables, then make 0xC0-0xDE and 0xE0-0xFE (minus the two
 * operators 0xD7 and 0xF7) case partners in the lower-case and flip-case
 * tables, which is all PCRE2 consults for /i in byte mode. The character
 * classes (\w, [[:alpha:]]) stay ASCII, like Perl's /aa. Built once per
 * process and never changed: shared read-only by every rule set.
 */
#define TABLES_LCC 0
#define TABLES_FCC 256

static const uint8_t *latin1_tables;
static pthread_once_t latin1_once = PTHREAD_ONCE_INIT;

static void latin1_build(void)
{
	locale_t c = newlocale(LC_CTYPE_MASK, "C", (locale_t)0);
	locale_t old = c ? uselocale(c) : (locale_t)0;
	const uint8_t *base = pcre2_maketables(NULL);
	if (c) {
		uselocale(old);
		freelocale(c);
	}
	if (base == NULL)
		abort();
	uint8_t *t = (uint8_t *)base; /* ours until published */
	for (int ch = 0xC0; ch <= 0xDE; ch++) {
		if (ch == 0xD7)
			continue;
		t[TABLES_LCC + ch] = (uint8_t)(ch + 0x20);
		t[TABLES_FCC + ch] = (uint8_t)(ch + 0x20);
		t[TABLES_FCC + ch + 0x20] = (uint8_t)ch;
	}
	latin1_tables = t;
}

const uint8_t *rules_latin1_tables(void)
{
	pthread_once(&latin1_once, latin1_build);
	return latin1_tables;
}

/* ---------------------------------------------------------------- the rule table */

static uint64_t hash_name(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ULL;
	return h;
}

long rules_lookup(const rules_t *r, const char *name)
{
	if (r->hcap == 0)
		return -1;
	size_t mask = r->hcap - 1;
	for (size_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
		size_t v = r->hash[i];
		if (v == 0)
			return -1;
		if (strcmp(r->v[v - 1].name, name) == 0)
			return (long)(v - 1);
	}
}

static void hash_insert(rules_t *r, size_t idx)
{
	size_t mask = r->hcap - 1;
	size_t i = hash_name(r->v[idx].name) & mask;
	while (r->hash[i] != 0)
		i = (i + 1) & mask;
	r->hash[i] = idx + 1;
}

size_t rules_intern_rule(rules_t *r, const char *name)
{
	long found = rules_lookup(r, name);
	if (found >= 0)
		return (size_t)found;
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 256;
		r->v = xalloc_realloc(r->v, r->cap * sizeof(*r->v));
	}
	if ((r->n + 1) * 2 > r->hcap) {
		free(r->hash);
		r->hcap = r->hcap ? r->hcap * 2 : 512;
		r->hash = xalloc_calloc(r->hcap, sizeof(size_t));
		for (size_t i = 0; i < r->n; i++)
			hash_insert(r, i);
	}
	struct rule *ru = &r->v[r->n];
	memset(ru, 0, sizeof(*ru));
	ru->name = xalloc_strdup(name);
	ru->type = -1;
	hash_insert(r, r->n);
	return r->n++;
}

const char *rules_intern_file(rules_t *r, const char *file)
{
	for (size_t i = 0; i < r->nfiles; i++)
		if (strcmp(r->files[i], file) == 0)
			return r->files[i];
	r->files = xalloc_realloc(r->files, (r->nfiles + 1) * sizeof(char *));
	r->files[r->nfiles] = xalloc_strdup(file);
	return r->files[r->nfiles++];
}

const char *rules_type_name(int type)
{
	static const char *const names[RULES_T_N] = {"header", "body",       "rawbody", "uri",
	                                             "full",   "mimeheader", "meta"};
	return type >= 0 && type < RULES_T_N ? names[type] : "undefined";
}

/* ---------------------------------------------------------------- compiling */

/*
 * Walks a pattern's top level to find where it may be cut: the middle
 * '|' of the top-level alternation, or, failing that, of the largest
 * unquantified group whose body is an alternation. Cutting there keeps the
 * meaning (a match of the whole is a match of one piece) as long as the
 * pattern has no back-references and the group is not atomic.
 */
struct split {
	size_t lead_len;        /* a leading "(?flags)" that every piece keeps */
	size_t g_body, g_close; /* the cut group: body from g_body, ")" at g_close */
	size_t cut;             /* position of the chosen '|' */
	bool in_group;
};

static bool has_backrefs(const char *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] != '\\')
			continue;
		char c = p[i + 1];
		if ((c >= '1' && c <= '9') || c == 'g' || c == 'k')
			return true;
		i++;
	}
	/* named back-references, conditionals and subroutine calls tie pieces together */
	static const char *const ties[] = {"(?P=", "(?(", "(?&", "(?P>", "(?R"};
	for (size_t k = 0; k < sizeof(ties) / sizeof(ties[0]); k++)
		if (memmem(p, n, ties[k], strlen(ties[k])) != NULL)
			return true;
	for (size_t i = 0; i + 3 < n; i++) {
		if (p[i] != '(' || p[i + 1] != '?')
			continue;
		unsigned char c = (unsigned char)p[i + 2];
		if (isdigit(c) || ((c == '+' || c == '-') && isdigit((unsigned char)p[i + 3])))
			return true; /* (?1), (?+1), (?-1): recursion into a numbered group */
	}
	return false;
}

/* Skips an escape at p[i] == '\\'; returns the index after it. */
static size_t skip_escape(const char *p, size_t n, size_t i)
{
	if (i + 1 >= n)
		return n;
	if (p[i + 1] == 'Q') {
		const char *e = memmem(p + i + 2, n - i - 2, "\\E", 2);
		return e ? (size_t)(e - p) + 2 : n;
	}
	return i + 2;
}

static size_t skip_class(const char *p, size_t n, size_t i)
{
	i++; /* '[' */
	if (i < n && p[i] == '^')
		i++;
	if (i < n && p[i] == ']')
		i++;
	while (i < n && p[i] != ']') {
		if (p[i] == '\\')
			i += 2;
		else if (p[i] == '[' && i + 1 < n && p[i + 1] == ':') {
			const char *e = memmem(p + i + 2, n - i - 2, ":]", 2);
			i = e ? (size_t)(e - p) + 2 : i + 1;
		} else
			i++;
	}
	return i < n ? i + 1 : n;
}

/*
 * The index after an escape, a character class or (with /x) a comment that
 * starts at p[i], or i when none does: what the structure scans below step
 * over without looking inside.
 */
static size_t skip_inert(const char *p, size_t n, size_t i, bool extended)
{
	if (p[i] == '\\')
		return skip_escape(p, n, i);
	if (p[i] == '[')
		return skip_class(p, n, i);
	if (extended && p[i] == '#') {
		while (i < n && p[i] != '\n')
			i++;
		return i < n ? i + 1 : n;
	}
	return i;
}

static bool find_split(const char *p, size_t n, bool extended, struct split *sp)
{
	memset(sp, 0, sizeof(*sp));
	if (has_backrefs(p, n))
		return false;
	size_t i = 0;
	if (n > 3 && p[0] == '(' && p[1] == '?') {
		size_t k = 2;
		while (k < n && (isalpha((unsigned char)p[k]) || p[k] == '-' || p[k] == '^'))
			k++;
		if (k < n && p[k] == ')')
			sp->lead_len = i = k + 1;
	}
	/* one pass: the top-level bar nearest the middle, and the largest cuttable group */
	size_t best_bar = 0, best_dist = (size_t)-1;
	size_t gstack[64];
	int depth = 0;
	size_t best_g_len = 0;
	size_t g_open_best = 0, g_close_best = 0;
	for (; i < n; i++) {
		size_t past = skip_inert(p, n, i, extended);
		if (past != i) {
			i = past - 1;
			continue;
		}
		char c = p[i];
		if (c == '(') {
			if (i + 2 < n && p[i + 1] == '?' && p[i + 2] == '#') {
				while (i < n && p[i] != ')')
					i++;
				continue;
			}
			if (depth < 64)
				gstack[depth] = i;
			depth++;
		} else if (c == ')') {
			if (depth == 0)
				return false;
			depth--;
			if (depth == 0) {
				size_t open = gstack[0];
				size_t next = i + 1;
				bool quantified = next < n && (p[next] == '*' || p[next] == '+' ||
				                               p[next] == '?' || p[next] == '{');
				bool ok = !quantified;
				if (open + 2 < n && p[open + 1] == '?') {
					char k = p[open + 2];
					/* lookaround, atomic, conditional, recursion: not cuttable
					 */
					if (k == '=' || k == '!' || k == '>' || k == '(' ||
					    k == '|' ||
					    (k == '<' && open + 3 < n &&
					     (p[open + 3] == '=' || p[open + 3] == '!')))
						ok = false;
				}
				if (ok && i - open > best_g_len) {
					best_g_len = i - open;
					g_open_best = open;
					g_close_best = i;
				}
			}
		} else if (c == '|' && depth == 0) {
			size_t dist = i > n / 2 ? i - n / 2 : n / 2 - i;
			if (dist < best_dist) {
				best_dist = dist;
				best_bar = i;
			}
		}
	}
	if (best_bar) {
		sp->cut = best_bar;
		return true;
	}
	if (best_g_len == 0)
		return false;
	/* the body of the group starts after "(", "(?:", "(?i:", "(?<name>" ... */
	size_t b = g_open_best + 1;
	if (p[b] == '?') {
		if (p[b + 1] == '<' || p[b + 1] == '\'' || p[b + 1] == 'P') {
			char close = p[b + 1] == '\'' ? '\'' : '>';
			while (b < g_close_best && p[b] != close)
				b++;
			b++;
		} else {
			while (b < g_close_best && p[b] != ':' && p[b] != ')')
				b++;
			if (p[b] != ':')
				return false; /* "(?i)" style, not a group */
			b++;
		}
	}
	struct split in;
	if (!find_split(p + b, g_close_best - b, extended, &in) || in.lead_len)
		return false;
	sp->cut = in.cut + b;
	sp->in_group = true;
	if (in.in_group) {
		/* the cut is in a group nested deeper: its body bounds the pieces */
		sp->g_body = in.g_body + b;
		sp->g_close = in.g_close + b;
	} else {
		sp->g_body = b;
		sp->g_close = g_close_best;
	}
	return true;
}

/*
 * PCRE2 compiles "(...){5}" as five copies of the group, which is what
 * makes a few expanded SpamAssassin patterns too large even though their
 * source is small. When such a pattern cannot be cut, the largest group
 * with a counted repeat is rewritten as a named group followed by
 * subroutine calls: "(?<sift_rep>(...))(?&sift_rep){4}" - the same
 * language (PCRE2 10.30+ backtracks into subroutine calls like Perl), one
 * copy of the body. Returns a malloc'd pattern or NULL.
 */
static char *rewrite_repeat(const char *p, size_t n, bool extended, int serial)
{
	if (has_backrefs(p, n))
		return NULL;
	size_t gstack[64];
	int depth = 0;
	size_t best_open = 0, best_close = 0, best_qend = 0, best_len = 0;
	unsigned long qmin = 0, qmax = 0;
	bool qopen = false;
	for (size_t i = 0; i < n; i++) {
		size_t past = skip_inert(p, n, i, extended);
		if (past != i) {
			i = past - 1;
			continue;
		}
		char c = p[i];
		if (c == '(') {
			if (depth < 64)
				gstack[depth] = i;
			depth++;
		} else if (c == ')') {
			if (depth == 0)
				return NULL;
			depth--;
			if (depth >= 64 || i + 1 >= n || p[i + 1] != '{')
				continue;
			char *end;
			unsigned long lo = strtoul(p + i + 2, &end, 10), hi = lo;
			if (end == p + i + 2)
				continue;
			bool open = false;
			if (*end == ',') {
				char *e2;
				hi = strtoul(end + 1, &e2, 10);
				open = e2 == end + 1;
				end = e2;
			}
			if (*end != '}' || lo < 2 || i - gstack[depth] <= best_len)
				continue;
			best_open = gstack[depth];
			best_close = i;
			best_qend = (size_t)(end - p) + 1;
			best_len = i - best_open;
			qmin = lo;
			qmax = hi;
			qopen = open;
		}
	}
	if (best_len == 0 || (best_qend < n && (p[best_qend] == '?' || p[best_qend] == '+')))
		return NULL;
	size_t cap = n + 96;
	char *out = xalloc_malloc(cap);
	char q[48];
	if (qopen)
		snprintf(q, sizeof(q), "{%lu,}", qmin - 1);
	else if (qmax == qmin)
		snprintf(q, sizeof(q), "{%lu}", qmin - 1);
	else
		snprintf(q, sizeof(q), "{%lu,%lu}", qmin - 1, qmax - 1);
	snprintf(out, cap, "%.*s(?<sift_rep%d>%.*s)(?&sift_rep%d)%s%.*s", (int)best_open, p, serial,
	         (int)(best_close + 1 - best_open), p + best_open, serial, q, (int)(n - best_qend),
	         p + best_qend);
	return out;
}

/*
 * The index after the atom at p[i] (a group, a class, an escape or one
 * character), or n when the pattern ends inside it.
 */
static size_t atom_end(const char *p, size_t n, size_t i)
{
	size_t past = skip_inert(p, n, i, false);
	if (past != i)
		return past;
	if (p[i] != '(')
		return i + 1;
	int depth = 0;
	for (size_t k = i; k < n; k++) {
		past = skip_inert(p, n, k, false);
		if (past != k) {
			k = past - 1;
			continue;
		}
		if (p[k] == '(')
			depth++;
		else if (p[k] == ')' && --depth == 0)
			return k + 1;
	}
	return n;
}

/*
 * The quantifier at p[i], if any: sets *end past it (a lazy or possessive
 * mark included) and *lo to its least count (1 with none). Returns false
 * on a '{' that is not a count, which PCRE2 versions read differently.
 */
static bool quantifier(const char *p, size_t n, size_t i, size_t *end, unsigned long *lo)
{
	*lo = 1;
	*end = i;
	if (i >= n)
		return true;
	if (p[i] == '?' || p[i] == '*')
		*lo = 0, i++;
	else if (p[i] == '+')
		i++;
	else if (p[i] == '{') {
		char *e;
		if (i + 1 >= n || !isdigit((unsigned char)p[i + 1]))
			return false;
		*lo = strtoul(p + i + 1, &e, 10);
		if (*e == ',') {
			e++;
			while (isdigit((unsigned char)*e))
				e++;
		}
		if ((size_t)(e - p) >= n || *e != '}')
			return false;
		i = (size_t)(e - p) + 1;
	} else
		return true;
	if (i < n && (p[i] == '?' || p[i] == '+'))
		i++;
	*end = i;
	return true;
}

size_t rules_repeat_gate(const char *p, size_t n, size_t *h_off, size_t *h_len, size_t max,
                         unsigned *min)
{
	if (has_backrefs(p, n))
		return 0;
	/* inline options would change what a part means alone */
	for (size_t i = 0; i + 2 < n; i++) {
		size_t past = skip_inert(p, n, i, false);
		if (past != i) {
			i = past - 1;
			continue;
		}
		if (p[i] == '(' && p[i + 1] == '?' &&
		    (isalpha((unsigned char)p[i + 2]) || strchr("-^#", p[i + 2]) != NULL))
			return 0;
	}
	/* the largest group at the top level that must repeat at least twice */
	size_t g = 0, g_end = 0;
	unsigned long g_lo = 0;
	for (size_t i = 0; i < n;) {
		if (p[i] == '|')
			return 0; /* either side may match: no part is required */
		size_t a = atom_end(p, n, i), q;
		unsigned long lo;
		if (a > n || !quantifier(p, n, a, &q, &lo))
			return 0;
		if (p[i] == '(' && lo >= 2 && a - i > g_end - g) {
			g = i;
			g_end = a;
			g_lo = lo;
		}
		i = q > i ? q : i + 1;
	}
	if (g_end == 0 || g_end - g < 3 || p[g_end - 1] != ')')
		return 0;
	/* its body: after "(", "(?:" or "(?<name>"; lookarounds and the rest are not parts */
	size_t b = g + 1, e = g_end - 1;
	if (p[b] == '?') {
		if (b + 1 < e && p[b + 1] == ':')
			b += 2;
		else if (b + 1 < e && p[b + 1] == '<' && b + 2 < e && p[b + 2] != '=' &&
		         p[b + 2] != '!') {
			const char *gt = memchr(p + b, '>', e - b);
			if (gt == NULL)
				return 0;
			b = (size_t)(gt - p) + 1;
		} else
			return 0;
	}
	/* the items every pass must match */
	size_t k = 0;
	for (size_t i = b; i < e;) {
		if (p[i] == '|')
			return 0;
		size_t a = atom_end(p, e, i), q;
		unsigned long lo;
		if (!quantifier(p, e, a, &q, &lo))
			return 0;
		if (lo >= 1 && k < max) {
			h_off[k] = i;
			h_len[k++] = a - i;
		}
		i = q > i ? q : i + 1;
	}
	*min = g_lo > 1000 ? 1000 : (unsigned)g_lo;
	return k;
}

static void push_code(struct rule *ru, pcre2_code *code, bool jit, const char *pat, size_t len,
                      int depth)
{
	if (depth > 0) { /* a split piece: rules_hs.c compiles the pieces */
		ru->pieces = xalloc_realloc(ru->pieces, (ru->npieces + 1) * sizeof(*ru->pieces));
		ru->piecelen = xalloc_realloc(ru->piecelen, (ru->npieces + 1) * sizeof(size_t));
		ru->pieces[ru->npieces] = xalloc_strndup(pat, len);
		ru->piecelen[ru->npieces++] = len;
	}
	ru->codes = xalloc_realloc(ru->codes, (ru->ncodes + 1) * sizeof(*ru->codes));
	ru->jit = xalloc_realloc(ru->jit, (ru->ncodes + 1) * sizeof(*ru->jit));
	ru->codes[ru->ncodes] = code;
	ru->jit[ru->ncodes] = jit;
	ru->ncodes++;
}

/*
 * PCRE2 10.42 (Debian 12's) matches some patterns unlike Perl, as a
 * random-pattern check against its own interpreter and against Perl
 * found, in two ways:
 * - its auto-possessification, around possessive quantifiers, atomic
 *   groups and \R: "x?(?:b)?+x" never matches a lone "x", "a\R*\s"
 *   misses "a\nb". Compiled without it, they match right, and run by
 *   the JIT as fast (RE_NO_AUTO_POSSESS);
 * - its JIT, which backtracks into an atomic group that can itself
 *   backtrack: "(?> {0,2}[^x]*?)\B" matches "  a" at 1. Every such
 *   difference found had an atomic (or possessive) group holding an
 *   alternative or a lazy quantifier; those, and \R, run by the
 *   interpreter (RE_NO_JIT), which costs: SpamAssassin's
 *   __FILL_THIS_FORM_PARTIAL_RAW, "^(?>\s{0,50})...", took ten times as
 *   long there, and does not need it.
 * Without those constructs the check found no difference in the first
 * match in over 280,000 patterns (tests/test_rules.c runs 10,000); the
 * JIT missed a later, empty match of one ("(?:[^b]|) *?(?<=a)" from
 * offset 1 in "a b"), which only a count of every match could see: left
 * to PCRE2. Classes and escapes are read as such (FreeMail's address
 * pattern has "*+" in a class); what errs toward yes (a comment under
 * /x) only costs speed.
 */
enum { RE_NO_AUTO_POSSESS = 1, RE_NO_JIT = 2 };

/*
 * What pattern p[0..n) must be compiled and run without (RE_*), as said
 * above. One pass, whatever the nesting: a pattern after ReplaceTags can
 * be hundreds of kilobytes. Each open group keeps whether it can
 * backtrack so far (an alternative, a lazy repeat, "(?U)" in force, or
 * such a group inside), and says it to its parent when it closes.
 */
static unsigned re_hazards(const char *p, size_t n)
{
	enum { RE_MAX_DEPTH = 256 }; /* PCRE2 allows 250 by default */
	struct {
		bool atomic, backtracks;
	} st[RE_MAX_DEPTH];
	int depth = 0;
	bool ungreedy = false; /* "(?U)" seen: every repeat after it may be lazy */
	unsigned h = 0;
	for (size_t i = 0; i < n;) {
		if (p[i] == '\\' && i + 1 < n && p[i + 1] == 'R')
			return RE_NO_AUTO_POSSESS | RE_NO_JIT;
		/* escapes and classes, whose "*+" or "(?>" are characters */
		size_t past = skip_inert(p, n, i, false);
		if (past != i) {
			i = past;
			continue;
		}
		char c = p[i];
		if (c == '(' && i + 2 < n && p[i + 1] == '?' && p[i + 2] == '#') {
			const char *e = memchr(p + i, ')', n - i);
			i = e != NULL ? (size_t)(e - p) + 1 : n;
			continue;
		}
		if (c == '(' && i + 8 < n && memcmp(p + i, "(*atomic:", 9) == 0)
			return RE_NO_AUTO_POSSESS | RE_NO_JIT;
		if (c == '(') {
			if (depth == RE_MAX_DEPTH)
				return RE_NO_AUTO_POSSESS | RE_NO_JIT;
			bool atomic = i + 2 < n && p[i + 1] == '?' && p[i + 2] == '>';
			if (atomic)
				h |= RE_NO_AUTO_POSSESS;
			/* "(?U)" makes the repeats after it lazy ("(?-U)" is taken alike) */
			for (size_t k = i + 2; p[i + 1] == '?' && k < n && !ungreedy &&
			                       (isalpha((unsigned char)p[k]) || p[k] == '-');
			     k++)
				if (p[k] == 'U') {
					ungreedy = true;
					for (int d = 0; d < depth; d++)
						st[d].backtracks = true;
				}
			st[depth].atomic = atomic;
			st[depth].backtracks = ungreedy;
			depth++;
			i += i + 1 < n && p[i + 1] == '?' ? 2 : 1; /* "(?" is no quantifier */
			continue;
		}
		if (c == ')' && depth > 0) {
			depth--;
			size_t q;
			unsigned long lo;
			bool possessive =
			    quantifier(p, n, i + 1, &q, &lo) && q > i + 2 && p[q - 1] == '+';
			if ((st[depth].atomic || possessive) && st[depth].backtracks)
				h |= RE_NO_JIT;
			if (depth > 0 && st[depth].backtracks)
				st[depth - 1].backtracks = true;
		} else if (c == '|' && depth > 0) {
			st[depth - 1].backtracks = true;
		}
		if (strchr("?*+}", c) != NULL && i + 1 < n && p[i + 1] == '+')
			h |= RE_NO_AUTO_POSSESS;
		if (strchr("?*+}", c) != NULL && i + 1 < n && p[i + 1] == '?' && depth > 0)
			st[depth - 1].backtracks = true;
		i++;
	}
	return h;
}

pcre2_code *rules_re_compile(const char *pat, size_t len, uint32_t opts, pcre2_compile_context *cc,
                             int *err, PCRE2_SIZE *off)
{
	size_t n = len == PCRE2_ZERO_TERMINATED ? strlen(pat) : len;
	if (re_hazards(pat, n) & RE_NO_AUTO_POSSESS)
		opts |= PCRE2_NO_AUTO_POSSESS;
	return pcre2_compile((PCRE2_SPTR)pat, n, opts, err, off, cc);
}

bool rules_re_jit(pcre2_code *code, const char *pat, size_t len)
{
	size_t n = len == PCRE2_ZERO_TERMINATED ? strlen(pat) : len;
	return !(re_hazards(pat, n) & RE_NO_JIT) &&
	       pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

static int compile_piece(rules_t *r, struct rule *ru, const char *pat, size_t len, int depth,
                         diag_t *d)
{
	int err;
	PCRE2_SIZE off;
	pcre2_code *code = rules_re_compile(pat, len, ru->re_options, r->cctx, &err, &off);
	if (code != NULL) {
		if (re_hazards(pat, len) & RE_NO_JIT)
			r->stats.strict_patterns++;
		bool jit = rules_re_jit(code, pat, len);
		if (jit)
			r->stats.jit_compiled++;
		push_code(ru, code, jit, pat, len, depth);
		return 0;
	}
	struct split sp;
	if (err == PCRE2_ERROR_PATTERN_TOO_LARGE && depth < RULES_MAX_SPLIT_DEPTH &&
	    find_split(pat, len, (ru->re_options & PCRE2_EXTENDED) != 0, &sp)) {
		if (depth == 0)
			r->stats.split_patterns++;
		/* left: [lead] prefix ... body-up-to-cut ... suffix; right likewise */
		size_t cap = len * 2 + 16;
		char *left = xalloc_calloc(1, cap), *right = xalloc_calloc(1, cap);
		size_t ln, rn;
		if (!sp.in_group) {
			memcpy(left, pat, sp.cut);
			ln = sp.cut;
			memcpy(right, pat, sp.lead_len);
			memcpy(right + sp.lead_len, pat + sp.cut + 1, len - sp.cut - 1);
			rn = sp.lead_len + len - sp.cut - 1;
		} else {
			ln = 0;
			memcpy(left, pat, sp.cut);
			ln = sp.cut;
			memcpy(left + ln, pat + sp.g_close, len - sp.g_close);
			ln += len - sp.g_close;
			memcpy(right, pat, sp.g_body);
			rn = sp.g_body;
			memcpy(right + rn, pat + sp.cut + 1, len - sp.cut - 1);
			rn += len - sp.cut - 1;
		}
		int rc = compile_piece(r, ru, left, ln, depth + 1, d);
		if (rc == 0)
			rc = compile_piece(r, ru, right, rn, depth + 1, d);
		free(left);
		free(right);
		return rc;
	}
	char *rw = NULL;
	if (err == PCRE2_ERROR_PATTERN_TOO_LARGE && depth < RULES_MAX_SPLIT_DEPTH &&
	    (rw = rewrite_repeat(pat, len, (ru->re_options & PCRE2_EXTENDED) != 0, depth)) !=
	        NULL) {
		if (depth == 0)
			r->stats.split_patterns++;
		int rc = compile_piece(r, ru, rw, strlen(rw), depth + 1, d);
		free(rw);
		return rc;
	}
	PCRE2_UCHAR msg[160];
	pcre2_get_error_message(err, msg, sizeof(msg));
	diag_error(d, ru->file, ru->line, "%s rule %s: regex error at offset %zu: %s",
	           rules_type_name(ru->type), ru->name, (size_t)off, (const char *)msg);
	return -1;
}

/*
 * SpamAssassin's ReplaceTags rules start "(?:^|\s)" so that a word is
 * matched only at its start. As written, PCRE2 must try the pattern at
 * every position of the text (no first character is known); the
 * equivalent lookbehind "(?<!\S)" lets it skip to the positions where a
 * first character of the rest can occur, which halved their cost on the
 * corpus. Same hits: both accept a start of text or a preceding blank
 * (\S is exactly the complement of \s; "^" alone, multi-line or not,
 * only accepts positions a blank precedes or the start). Only the match
 * text loses the blank, and a rule counting every match (tflags
 * multiple) keeps its form: a lookbehind may reuse the blank the
 * previous match ended with, where the group would need another.
 */
static char *lead_as_lookbehind(const struct rule *ru)
{
	static const struct {
		const char *lead, *look;
	} forms[] = {
	    {"(?:^|\\s)", "(?<!\\S)"},
	    {"(?:\\s|^)", "(?<!\\S)"},
	    {"(?:^|\\W)", "(?<!\\w)"},
	    {"(?:\\W|^)", "(?<!\\w)"},
	};
	if (ru->tflags & TF_MULTIPLE)
		return NULL;
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		size_t n = strlen(forms[i].lead);
		if (strncmp(ru->pattern, forms[i].lead, n) == 0) {
			/* a quantifier would apply to the group: "(?:^|\s)?" is another rule */
			char c = ru->pattern[n];
			if (c == '?' || c == '*' || c == '+' || c == '{')
				return NULL;
			size_t rest = strlen(ru->pattern + n), ln = strlen(forms[i].look);
			char *out = xalloc_malloc(ln + rest + 1);
			memcpy(out, forms[i].look, ln);
			memcpy(out + ln, ru->pattern + n, rest + 1);
			return out;
		}
	}
	return NULL;
}

/*
 * Whether the group p[i..end) may be dropped as a whole: "(?:" or
 * "(?FLAGS:" without x (blanks and comments would need reading as such),
 * holding non-capturing groups, lookarounds and option settings only: no
 * capturing or named group (the numbers of the others would change), no
 * comment or callout (atom_end() does not read them), no recursion,
 * branch reset or reference by name or number.
 */
static bool lead_group_droppable(const char *p, size_t i, size_t end)
{
	size_t k = i + 1;
	if (k >= end || p[k] != '?')
		return false;
	for (k++; k < end && (isalpha((unsigned char)p[k]) || p[k] == '-' || p[k] == '^'); k++)
		if (p[k] == 'x')
			return false;
	if (k >= end || p[k] != ':')
		return false;
	for (k++; k < end; k++) {
		size_t past = skip_inert(p, end, k, false);
		if (past != k) {
			k = past - 1;
			continue;
		}
		if (p[k] != '(')
			continue;
		char d = k + 2 < end && p[k + 1] == '?' ? p[k + 2] : '\0';
		if (d == '\0' || strchr("P'|R&(#C+-", d) != NULL || isdigit((unsigned char)d) ||
		    (d == '<' && k + 3 < end && p[k + 3] != '=' && p[k + 3] != '!'))
			return false;
	}
	return true;
}

/*
 * How many bytes of p[0..n) lead_nullable_dropped() may drop: the atoms
 * quantified by ?, * or {0,N} it starts with, greedy or lazy (possessive
 * ones are kept), and only while something remains that is not the other
 * side of an alternation; 0 for none.
 */
static size_t lead_nullable_len(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		char c = p[i];
		/* escapes with arguments (\x{..}, \p{..}, \Q..\E, \g1, \cX ...) are left alone */
		if (strchr("|)*+?{^$.", c) != NULL ||
		    (c == '\\' && (i + 1 >= n || strchr("xopPNQEgkc0123456789", p[i + 1]) != NULL)))
			break;
		size_t a = atom_end(p, n, i), q;
		unsigned long lo;
		if (a >= n || (c == '(' && !lead_group_droppable(p, i, a)) ||
		    !quantifier(p, n, a, &q, &lo) || lo != 0 || p[q - 1] == '+')
			break;
		i = q;
	}
	if (i == 0 || i >= n || strchr("|)*+?{", p[i]) != NULL)
		return 0;
	return i;
}

/*
 * A rule that asks only whether its pattern matches (not tflags multiple)
 * can go without what its pattern starts with when that part may match
 * nothing: some text holds a match of "(?:your\s)?(?:full\s)?name:"
 * exactly when it holds one of "name:", since the search tries every start
 * position and the optional part may always match nothing there. PCRE2
 * does not see it: at every position it tries the part's alternatives
 * first. SpamAssassin's __FILL_THIS_FORM_LOAN1 and _FRAUD_PHISH1 begin with
 * such a part (<FF_YOUR>, 14 alternatives up to three times) and cost half
 * as much without it. What is dropped: items quantified by ?, * or {0,N}
 * (greedy or lazy; a possessive or atomic part may refuse a match the rest
 * alone finds, and is kept), and never a capturing group (the numbers of
 * the others would change). Only the match text differs.
 * Tried and left: the same for the first pass of a counted group,
 * "(?:G){5}" as "(?:G')(?:G){4}" (__FILL_THIS_FORM_LONG2 and _SHORT2):
 * LONG2 took twice as long in that form.
 */
static char *lead_nullable_dropped(const struct rule *ru)
{
	if ((ru->tflags & TF_MULTIPLE) || (ru->re_options & PCRE2_EXTENDED) || ru->captures ||
	    ru->capture_dep)
		return NULL;
	size_t i = lead_nullable_len(ru->pattern, strlen(ru->pattern));
	return i > 0 ? xalloc_strdup(ru->pattern + i) : NULL;
}

/*
 * Patterns this long, or cut into pieces, get an ASCII form when it is at
 * most half their size: SpamAssassin's ReplaceTags rules shrink from tens
 * of KB to a few, and run several times faster on the (most common)
 * paragraphs with no byte above 0x7f. Smaller patterns gain too little
 * for the memory.
 */
#define RULES_ASCII_MIN_BYTES 2048

static void ascii_form(rules_t *r, struct rule *ru)
{
	size_t len = strlen(ru->pattern);
	if ((len < RULES_ASCII_MIN_BYTES && ru->ncodes < 2) || ru->captures || ru->capture_dep)
		return;
	char *a = rules_ascii_reduce(ru->pattern, len, ru->re_options, r->tables);
	if (a == NULL)
		return;
	if (strlen(a) * 2 > len) {
		free(a);
		return;
	}
	/* compiled as a rule of its own, so that it is cut and rewritten the same way */
	struct rule t = {
	    .name = ru->name, .pattern = a, .re_options = ru->re_options, .tflags = ru->tflags};
	rules_stats_t keep = r->stats;
	diag_t *quiet = diag_new();
	if (rules_compile_rule(r, &t, quiet) == 0) {
		ru->acodes = t.codes;
		ru->ajit = t.jit;
		ru->nacodes = t.ncodes;
		ru->apattern = a;
		a = NULL;
		ru->apieces = t.pieces;
		ru->apiecelen = t.piecelen;
		ru->napieces = t.npieces;
		t.pieces = NULL;
		t.piecelen = NULL;
		t.npieces = 0;
	} else {
		for (size_t k = 0; k < t.ncodes; k++)
			pcre2_code_free(t.codes[k]);
		free(t.codes);
		free(t.jit);
	}
	for (size_t k = 0; k < t.npieces; k++)
		free(t.pieces[k]);
	free(t.pieces);
	free(t.piecelen);
	diag_free(quiet);
	r->stats = keep; /* the counts are of rules, not of their forms */
	if (ru->nacodes > 0)
		r->stats.ascii_forms++;
	free(a);
}

/*
 * A rule whose pattern starts with a run of one class, "[a-z]{3,}\d+..."
 * (SpamAssassin's __TVD_SUBJ_NUM_OBFU), costs the square of the longest
 * such run in the text: PCRE2 tries every position of the run, and from
 * each the repeat takes the rest of the run before the next item fails
 * there. A Subject of 250,000 letters took 25 s on that rule alone. The
 * lookbehind "(?<![a-z])" lets only the first position of a run start a
 * match, which costs the run once. Same first match: a match that starts
 * after a character of the class has one starting a position earlier
 * (the unbounded repeat takes that character too, the rest matches the
 * same), so the leftmost match always starts where the lookbehind holds,
 * and from there PCRE2 finds the very same match. A rule counting every
 * match (tflags multiple) is left as written: the next search starts
 * where a match ended, maybe inside a run. One class or class escape,
 * greedy and with no upper count; no \G, which depends on the start.
 */
static char *lead_run_lookbehind(const struct rule *ru)
{
	const char *p = ru->pattern;
	size_t n = strlen(p), q;
	unsigned long lo;
	if ((ru->tflags & TF_MULTIPLE) || (ru->re_options & PCRE2_EXTENDED) || ru->captures ||
	    ru->capture_dep || n < 2 || strstr(p, "\\G") != NULL)
		return NULL;
	if (p[0] != '[' && !(p[0] == '\\' && strchr("dDwWsShHvV", p[1]) != NULL))
		return NULL;
	size_t a = atom_end(p, n, 0);
	if (a >= n || !quantifier(p, n, a, &q, &lo) || q == a)
		return NULL;
	bool open = p[a] == '+' || p[a] == '*';
	if (p[a] == '{') {
		const char *comma = memchr(p + a, ',', q - a);
		open = comma != NULL && comma[1] == '}';
	}
	/* lazy or possessive */
	if (!open || p[q - 1] == '?' || (p[q - 1] == '+' && q - 1 > a))
		return NULL;
	char *out = xalloc_malloc(n + a + 6);
	memcpy(out, "(?<!", 4);
	memcpy(out + 4, p, a);
	out[4 + a] = ')';
	memcpy(out + 5 + a, p, n + 1);
	return out;
}

int rules_compile_rule(rules_t *r, struct rule *ru, diag_t *d)
{
	char *look = lead_as_lookbehind(ru);
	bool dropped = false;
	if (look == NULL && (look = lead_nullable_dropped(ru)) != NULL)
		dropped = true;
	if (look == NULL)
		look = lead_run_lookbehind(ru);
	if (look != NULL) {
		size_t ncodes = ru->ncodes, npieces = ru->npieces;
		diag_t *quiet = diag_new();
		int rc = compile_piece(r, ru, look, strlen(look), 0, quiet);
		diag_free(quiet);
		free(look);
		if (rc == 0) {
			if (dropped)
				r->stats.lead_dropped++;
			return 0;
		}
		/* the original pattern reports its own error, if any */
		while (ru->ncodes > ncodes)
			pcre2_code_free(ru->codes[--ru->ncodes]);
		while (ru->npieces > npieces)
			free(ru->pieces[--ru->npieces]);
	}
	return compile_piece(r, ru, ru->pattern, strlen(ru->pattern), 0, d);
}

/* ---------------------------------------------------------------- finishing a load */

static bool name_is_sub(const char *name)
{
	return name[0] == '_' && name[1] == '_';
}

/* RULES_HK_* for a header name, as header_value() reads it. */
static uint8_t hkey_kind(const char *nm)
{
	if (strcmp(nm, "ALL") == 0)
		return RULES_HK_ALL;
	if (strcmp(nm, "ALL-TRUSTED") == 0 || strcmp(nm, "ALL-INTERNAL") == 0)
		return RULES_HK_ALL_INNER;
	if (strcmp(nm, "ALL-UNTRUSTED") == 0 || strcmp(nm, "ALL-EXTERNAL") == 0)
		return RULES_HK_ALL_OUTER;
	if (strcasecmp(nm, "ToCc") == 0)
		return RULES_HK_TOCC;
	if (strcmp(nm, "MESSAGEID") == 0)
		return RULES_HK_MESSAGEID;
	if (strcasecmp(nm, "EnvelopeFrom") == 0)
		return RULES_HK_ENVFROM;
	if (strncasecmp(nm, "X-Spam-Relays-", 14) == 0) {
		if (strcasecmp(nm + 14, "Untrusted") == 0 || strcasecmp(nm + 14, "External") == 0)
			return RULES_HK_RELAYS_OUTER;
		if (strcasecmp(nm + 14, "Trusted") == 0 || strcasecmp(nm + 14, "Internal") == 0)
			return RULES_HK_RELAYS_INNER;
	}
	if (strcasecmp(nm, "X-Sift-Mime") == 0)
		return RULES_HK_SIFT_MIME;
	return RULES_HK_FIELD;
}

static size_t hkey_intern(rules_t *r, const char *name, unsigned mods, bool mime)
{
	for (size_t i = 0; i < r->nhkeys; i++)
		/* case matters: "MESSAGEID" is a pseudo-field, "MessageID" a (bad) field name */
		if (r->hkeys[i].mods == mods && r->hkeys[i].mime == mime &&
		    strcmp(r->hkeys[i].name, name) == 0)
			return i;
	r->hkeys = xalloc_realloc(r->hkeys, (r->nhkeys + 1) * sizeof(*r->hkeys));
	r->hkeys[r->nhkeys] = (struct hkey){.name = xalloc_strdup(name),
	                                    .key = msg_header_key(name),
	                                    .mods = mods,
	                                    .mime = mime,
	                                    .kind = hkey_kind(name)};
	return r->nhkeys++;
}

/* Depth-first order of metas so each runs after what it reads; cycles are errors. */
static int meta_visit(rules_t *r, size_t i, uint8_t *mark, size_t *out, size_t *nout, diag_t *d)
{
	if (mark[i] == 2)
		return 0;
	if (mark[i] == 1) {
		diag_error(d, r->v[i].file, r->v[i].line, "meta rule %s: depends on itself",
		           r->v[i].name);
		return -1;
	}
	mark[i] = 1;
	struct rule *ru = &r->v[i];
	for (size_t k = 0; k < ru->nprog; k++) {
		if (ru->prog[k].op != MOP_RULE)
			continue;
		size_t j = ru->prog[k].arg;
		if (r->v[j].defined && r->v[j].type == RULES_T_META && !r->v[j].skipped &&
		    meta_visit(r, j, mark, out, nout, d) < 0) {
			mark[i] = 2;
			return -1;
		}
	}
	mark[i] = 2;
	out[(*nout)++] = i;
	return 0;
}

/* ---------------------------------------------------------------- capture rules */

/* Length of "%{TAG}" at p (0 if none); the tag is p[2..2+*tl). */
static size_t tag_ref(const char *p, size_t *tl)
{
	if (p[0] != '%' || p[1] != '{')
		return 0;
	size_t k = 2;
	while (isalnum((unsigned char)p[k]) || p[k] == '_')
		k++;
	if (k == 2 || p[k] != '}')
		return 0;
	*tl = k - 2;
	return k + 1;
}

/*
 * pattern with each %{TAG} replaced by its value quoted as a literal (as
 * Perl's quotemeta does). values == NULL: a stand-in "x" (syntax checks).
 * Returns NULL when a tag has no value.
 */
static char *substitute_tags(const char *pattern, char *const *tags, const char *const *values,
                             size_t ntags)
{
	size_t cap = strlen(pattern) + 64, n = 0;
	char *out = xalloc_calloc(1, cap);
	for (const char *p = pattern; *p;) {
		size_t tl, len = tag_ref(p, &tl);
		const char *v = NULL;
		if (len > 0 && values == NULL) {
			v = "x";
		} else if (len > 0) {
			for (size_t i = 0; i < ntags; i++)
				if (strlen(tags[i]) == tl && strncmp(tags[i], p + 2, tl) == 0)
					v = values[i];
			if (v == NULL) {
				free(out);
				return NULL;
			}
		}
		size_t need = len > 0 ? strlen(v) * 2 + 1 : 2;
		if (n + need + 1 > cap) {
			cap = (n + need + 1) * 2;
			out = xalloc_realloc(out, cap);
		}
		if (len == 0) {
			out[n++] = *p++;
			continue;
		}
		for (const char *q = v; *q; q++) {
			if (!isalnum((unsigned char)*q) && *q != '_')
				out[n++] = '\\';
			out[n++] = *q;
		}
		p += len;
	}
	out[n] = '\0';
	return out;
}

/*
 * Whether each %{TAG} in pattern stands where every match must hold its
 * value, quoted as substitute_tags() quotes it: outside any group and
 * character class, with no alternation at the top and no quantifier after
 * it. Patterns that could change what a literal is are left out: extended
 * syntax (a value in a comment), \Q, and (*VERB) settings such as UTF.
 * Inline (?i) is fine: the values are looked for without case.
 */
bool rules_tags_required(const char *p, uint32_t options)
{
	if (options & PCRE2_EXTENDED)
		return false;
	int depth = 0;
	bool in_class = false, any = false;
	for (; *p; p++) {
		if (*p == '\\') {
			if (p[1] == 'Q')
				return false;
			if (p[1] != '\0')
				p++;
			continue;
		}
		if (in_class) {
			in_class = *p != ']';
			continue;
		}
		size_t tl, len = tag_ref(p, &tl);
		if (len > 0) {
			char next = p[len];
			if (depth > 0 || next == '?' || next == '*' || next == '+' || next == '{')
				return false;
			any = true;
			p += len - 1;
			continue;
		}
		switch (*p) {
		case '[':
			in_class = true;
			if (p[1] == '^')
				p++;
			if (p[1] == ']') /* a ']' first in a class is one of its bytes */
				p++;
			break;
		case '(':
			if (p[1] == '*')
				return false;
			if (p[1] == '?')
				for (const char *q = p + 2;
				     isalpha((unsigned char)*q) || *q == '-' || *q == '^'; q++)
					if (*q == 'x')
						return false; /* (?x): extended from here on */
			depth++;
			break;
		case ')': depth--; break;
		case '|':
			if (depth == 0)
				return false;
			break;
		default: break;
		}
	}
	return any;
}

/*
 * For a rule whose tags are needed (rules_tags_required): whether some captured
 * value is missing from text, compared as PCRE2 compares without case
 * (its tables' flipped case), so the rule cannot match it. Most messages
 * do not repeat the To: address in a URI; SpamAssassin's six such rules
 * were compiled for each of them, 1.5% of the daemon's CPU with its rules.
 */
static bool tag_value_missing(const rules_t *r, const struct rule *ru, const char *const *values,
                              const char *text, size_t n)
{
	const uint8_t *fcc = r->tables + 256;
	for (const char *p = strchr(ru->pattern, '%'); p; p = strchr(p + 1, '%')) {
		size_t tl;
		if (tag_ref(p, &tl) == 0)
			continue;
		const char *v = NULL;
		for (size_t i = 0; i < r->ntags && v == NULL; i++)
			if (strlen(r->tags[i]) == tl && strncmp(r->tags[i], p + 2, tl) == 0)
				v = values[i];
		if (v == NULL)
			return true; /* not captured: substitute_tags() gives no pattern */
		size_t vn = strlen(v);
		bool found = vn == 0;
		for (size_t i = 0; !found && vn <= n && i <= n - vn; i++) {
			size_t k = 0;
			while (k < vn && ((uint8_t)text[i + k] == (uint8_t)v[k] ||
			                  fcc[(uint8_t)text[i + k]] == (uint8_t)v[k]))
				k++;
			found = k == vn;
		}
		if (!found)
			return true;
	}
	return false;
}

bool rules_tags_needed(const rules_t *r, const char *rule)
{
	long i = rules_lookup(r, rule);
	return i >= 0 && r->v[i].tags_needed;
}

/* Marks the rules that use %{TAG} and those that capture a used TAG. */
static void find_captures(rules_t *r)
{
	for (size_t i = 0; i < r->n; i++) {
		struct rule *ru = &r->v[i];
		if (!ru->defined || ru->skipped || ru->pattern == NULL)
			continue;
		for (const char *p = strchr(ru->pattern, '%'); p; p = strchr(p + 1, '%')) {
			size_t tl;
			if (tag_ref(p, &tl) == 0)
				continue;
			if (!ru->capture_dep)
				ru->tags_needed = rules_tags_required(ru->pattern, ru->re_options);
			ru->capture_dep = true;
			bool known = false;
			for (size_t k = 0; k < r->ntags; k++)
				known |=
				    strlen(r->tags[k]) == tl && strncmp(r->tags[k], p + 2, tl) == 0;
			if (!known) {
				r->tags = xalloc_realloc(r->tags, (r->ntags + 1) * sizeof(char *));
				r->tags[r->ntags] = xalloc_calloc(1, tl + 1);
				memcpy(r->tags[r->ntags++], p + 2, tl);
			}
		}
	}
	for (size_t i = 0; i < r->n; i++) {
		struct rule *ru = &r->v[i];
		if (!ru->defined || ru->skipped || ru->pattern == NULL || ru->capture_dep)
			continue;
		for (size_t k = 0; k < r->ntags; k++) {
			char pat[3][160];
			snprintf(pat[0], sizeof(pat[0]), "(?<%s>", r->tags[k]);
			snprintf(pat[1], sizeof(pat[1]), "(?P<%s>", r->tags[k]);
			snprintf(pat[2], sizeof(pat[2]), "(?'%s'", r->tags[k]);
			for (int j = 0; j < 3; j++)
				if (strstr(ru->pattern, pat[j]) != NULL)
					ru->captures = true;
		}
	}
}

/* Lowers the sc_priority of everything meta i reads, through other metas, to at most p. */
static void sc_lower(rules_t *r, size_t i, int p, uint32_t *seen, uint32_t stamp)
{
	const struct rule *ru = &r->v[i];
	for (size_t k = 0; k < ru->nprog; k++) {
		if (ru->prog[k].op != MOP_RULE)
			continue;
		size_t j = ru->prog[k].arg;
		if (seen[j] == stamp)
			continue;
		seen[j] = stamp;
		if (r->v[j].sc_priority > p)
			r->v[j].sc_priority = p;
		if (r->v[j].type == RULES_T_META)
			sc_lower(r, j, p, seen, stamp);
	}
}

static int cmp_sc_priority(const void *a, const void *b, void *ctx)
{
	const rules_t *r = ctx;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int px = r->v[x].sc_priority, py = r->v[y].sc_priority;
	if (px != py)
		return px < py ? -1 : 1;
	return x < y ? -1 : x > y;
}

/*
 * The shortcircuit rules that can hit (scored, run), and the priority each
 * rule counts at for the cut. SpamAssassin runs rules priority by
 * priority and stops after the first priority where a shortcircuit rule
 * hit; before that, fix_priorities() lowers every rule a meta reads to the
 * meta's priority, lowest metas first, so a meta never waits for a
 * priority that might be cut. The priority field itself is left alone: it
 * orders matching, which the cut does not change.
 */
static void shortcircuit_prepare(rules_t *r)
{
	for (size_t i = 0; i < r->n; i++) {
		r->v[i].sc_priority = r->v[i].priority;
		if (r->v[i].sc != RULES_SC_NONE && r->v[i].report && r->v[i].defined &&
		    !r->v[i].skipped && !r->v[i].disabled)
			r->nsc++;
	}
	if (r->nsc == 0)
		return;
	r->sc = xalloc_calloc(r->nsc, sizeof(size_t));
	size_t nm = 0, *metas = xalloc_calloc(r->norder[RULES_T_META] + 1, sizeof(size_t));
	for (size_t i = 0, k = 0; i < r->n; i++) {
		const struct rule *ru = &r->v[i];
		if (ru->sc != RULES_SC_NONE && ru->report && ru->defined && !ru->skipped &&
		    !ru->disabled)
			r->sc[k++] = i;
	}
	for (size_t oi = 0; oi < r->norder[RULES_T_META]; oi++)
		metas[nm++] = r->order[RULES_T_META][oi];
	qsort_r(metas, nm, sizeof(size_t), cmp_sc_priority, r);
	uint32_t *seen = xalloc_calloc(r->n + 1, sizeof(uint32_t));
	for (size_t k = 0; k < nm; k++)
		sc_lower(r, metas[k], r->v[metas[k]].sc_priority, seen, (uint32_t)k + 1);
	free(seen);
	free(metas);
}

static int cmp_priority(const void *a, const void *b, void *ctx)
{
	const rules_t *r = ctx;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int px = r->v[x].priority, py = r->v[y].priority;
	if (px != py)
		return px < py ? -1 : 1;
	return x < y ? -1 : x > y;
}

/*
 * A __ sub-rule counts only through the metas that use it: one that no
 * scored rule reaches (its metas scored 0, or sandbox rules that never
 * made it) would cost its match on every message for nothing, and
 * SpamAssassin's files have hundreds. Eval tests always run (check_rbl
 * starts the lookups its check_rbl_sub rules read), and so do rules that
 * capture a tag for others.
 */
static void mark_unused(rules_t *r)
{
	size_t *stack = xalloc_calloc(r->n ? r->n : 1, sizeof(size_t));
	uint8_t *seen = xalloc_calloc(r->n ? r->n : 1, 1);
	size_t sp = 0;
	for (size_t i = 0; i < r->n; i++) {
		struct rule *ru = &r->v[i];
		ru->unused = ru->defined && !ru->skipped && !ru->disabled && ru->type >= 0;
		if (ru->unused && (ru->report || ru->evaldef != NULL || ru->captures)) {
			seen[i] = 1;
			stack[sp++] = i;
		}
	}
	/* through every meta a needed meta depends on, as meta_visit() orders them */
	while (sp > 0) {
		struct rule *ru = &r->v[stack[--sp]];
		ru->unused = false;
		if (ru->type != RULES_T_META)
			continue;
		for (size_t k = 0; k < ru->nprog; k++) {
			size_t j = ru->prog[k].arg;
			if (ru->prog[k].op == MOP_RULE && !seen[j]) {
				seen[j] = 1; /* each rule is pushed once */
				stack[sp++] = j;
			}
		}
	}
	free(seen);
	free(stack);
	for (size_t i = 0; i < r->n; i++)
		r->stats.unused += r->v[i].unused;
}

/*
 * Which sub-rules wait for a meta to need them (see struct rule): the
 * regex sub-rules of the header and body-like views. Not mimeheader rules
 * (they run per part, rarely) nor exists: tests, which cost nothing; a
 * rule that captures a tag runs anyway, for the rules that use the tag.
 */
static void mark_deferred(rules_t *r)
{
	static const int types[] = {RULES_T_HEADER, RULES_T_BODY, RULES_T_RAWBODY, RULES_T_URI,
	                            RULES_T_FULL};
	for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
		int t = types[k];
		for (size_t oi = 0; oi < r->norder[t]; oi++) {
			struct rule *ru = &r->v[r->order[t][oi]];
			if (!name_is_sub(ru->name) || ru->report || ru->captures || ru->hdr_exists)
				continue;
			ru->deferred = true;
			/*
			 * The pattern's size stands for its cost per byte of text (the
			 * message's bytes scale it, see pending_cost()): a run walks
			 * the text once per start position through that much program,
			 * though most of a long alternation is never entered at a
			 * given position. Its square root ordered SpamAssassin's rules
			 * best of the powers tried (1/4 to 3/2), in instructions per
			 * message over two samples of 300 messages.
			 */
			const char *p = ru->apattern ? ru->apattern : ru->pattern;
			ru->lazy_cost = sqrt(64.0 + (p ? (double)strlen(p) : 0));
		}
	}
	/*
	 * Topological order: each meta's operands are costed before it. Metas
	 * are settled recursively, a few stack frames per level of metas over
	 * metas: a rule set deeper than RULES_LAZY_MAX_DEPTH (SpamAssassin's
	 * are under ten) is run eagerly, without recursion, rather than risk a
	 * worker thread's stack.
	 */
	uint32_t *depth = xalloc_calloc(r->n ? r->n : 1, sizeof(*depth));
	uint32_t deepest = 0;
	for (size_t oi = 0; oi < r->norder[RULES_T_META]; oi++) {
		size_t ri = r->order[RULES_T_META][oi];
		struct rule *ru = &r->v[ri];
		double c = 0;
		for (size_t k = 0; k < ru->nprog; k++)
			if (ru->prog[k].op == MOP_RULE) {
				size_t j = ru->prog[k].arg;
				c += r->v[j].lazy_cost;
				if (depth[j] + 1 > depth[ri])
					depth[ri] = depth[j] + 1;
			}
		ru->lazy_cost = c < 1e15 ? c : 1e15;
		if (depth[ri] > deepest)
			deepest = depth[ri];
	}
	free(depth);
	if (deepest > RULES_LAZY_MAX_DEPTH)
		for (size_t i = 0; i < r->n; i++) {
			r->v[i].deferred = false;
			r->v[i].lazy_cost = 0;
		}
}

/*
 * The number of rules in the chain that starts at prog[k], "__A __B +
 * __C + ..." (*op MOP_ADD) or "__A __B || __C || ..." (MOP_OR): 0 if
 * none starts there. Only the last op may end the left operand of an
 * outer && or || (carry a jump); inside an || chain each operand but the
 * last ends the left one of the next ||.
 */
static size_t chain_run(const struct meta_op *prog, size_t nprog, size_t k, enum meta_opcode *op)
{
	if (k + 2 >= nprog || prog[k].op != MOP_RULE || prog[k + 1].op != MOP_RULE ||
	    (prog[k + 2].op != MOP_ADD && prog[k + 2].op != MOP_OR) || prog[k + 1].jump)
		return 0;
	*op = prog[k + 2].op;
	uint32_t inner = *op == MOP_OR ? (uint32_t)(k + 2) : 0; /* prog[k]'s jump */
	if (prog[k].jump != inner)
		return 0;
	size_t n = 2, end = k + 2; /* end: the chain's last op */
	while (end + 2 < nprog && prog[end + 1].op == MOP_RULE && prog[end + 1].jump == 0 &&
	       prog[end + 2].op == *op &&
	       prog[end].jump == (*op == MOP_OR ? (uint32_t)(end + 2) : 0)) {
		end += 2;
		n++;
	}
	return n;
}

/* The index of the chain op over rules ids[0 .. n) in r->mchain, added if new. */
static uint32_t chain_intern(rules_t *r, enum meta_opcode op, const uint32_t *ids, size_t n,
                             size_t *cap)
{
	for (size_t k = 0; k < r->nmchain; k++)
		if (r->mchain[k].op == op && r->mchain[k].n == n &&
		    memcmp(&r->mchain_rules[r->mchain[k].off], ids, n * sizeof(*ids)) == 0)
			return (uint32_t)k;
	size_t off = r->nmchain ? r->mchain[r->nmchain - 1].off + r->mchain[r->nmchain - 1].n : 0;
	if (off + n > *cap) {
		*cap = 2 * (off + n);
		r->mchain_rules = xalloc_realloc(r->mchain_rules, *cap * sizeof(*r->mchain_rules));
	}
	memcpy(&r->mchain_rules[off], ids, n * sizeof(*ids));
	r->mchain = xalloc_realloc(r->mchain, (r->nmchain + 1) * sizeof(*r->mchain));
	r->mchain[r->nmchain] =
	    (struct meta_chain){.off = (uint32_t)off, .n = (uint32_t)n, .op = op};
	return (uint32_t)r->nmchain++;
}

/* Builds r->mcode (see struct meta_code) and r->mchain. */
static void meta_pack(rules_t *r)
{
	size_t nops = 0, nnums = 0, maxprog = 0;
	const size_t *order = r->order[RULES_T_META];
	for (size_t oi = 0; oi < r->norder[RULES_T_META]; oi++) {
		const struct rule *ru = &r->v[order[oi]];
		nops += ru->nprog;
		if (ru->nprog > maxprog)
			maxprog = ru->nprog;
		for (size_t k = 0; k < ru->nprog; k++)
			nnums += ru->prog[k].op == MOP_NUM;
	}
	r->mcode = xalloc_calloc(r->n ? r->n : 1, sizeof(*r->mcode));
	/* the numbers first: doubles stay aligned; a packed chain only shortens a program */
	r->mblock = xalloc_malloc(nnums * sizeof(double) + nops * sizeof(struct meta_op) + 1);
	double *nums = r->mblock;
	struct meta_op *ops = (struct meta_op *)(nums + nnums);
	uint32_t *at = xalloc_calloc(maxprog + 1, sizeof(*at));   /* old op index: new */
	uint32_t *ids = xalloc_calloc(maxprog + 1, sizeof(*ids)); /* a chain's rules */
	size_t cap = 0;
	for (size_t oi = 0; oi < r->norder[RULES_T_META]; oi++) {
		size_t ri = order[oi];
		const struct rule *ru = &r->v[ri];
		struct meta_code *mc = &r->mcode[ri];
		struct meta_op *prog = ops;
		mc->prog = ops;
		mc->nums = nums;
		for (size_t k = 0; k < ru->nprog;) {
			enum meta_opcode cop = MOP_ADD;
			size_t n = chain_run(ru->prog, ru->nprog, k, &cop);
			if (n >= RULES_META_CHAIN_MIN) {
				size_t last = k + 2 * n - 2; /* the chain's last + or || */
				ids[0] = ru->prog[k].arg;
				for (size_t q = 1; q < n; q++)
					ids[q] = ru->prog[k + 2 * q - 1].arg;
				for (size_t q = k; q <= last; q++)
					at[q] = (uint32_t)(ops - prog);
				enum meta_opcode op = cop == MOP_ADD ? MOP_SUM : MOP_ANY;
				*ops++ = (struct meta_op){.op = op,
				                          .jump = ru->prog[last].jump,
				                          .arg = chain_intern(r, op, ids, n, &cap)};
				k = last + 1;
				continue;
			}
			at[k] = (uint32_t)(ops - prog);
			/* each MOP_NUM names its own number: renumbered into the block */
			*ops = ru->prog[k];
			if (ops->op == MOP_NUM) {
				*nums = ru->nums[ru->prog[k].arg];
				ops->arg = (uint32_t)(nums - mc->nums);
				nums++;
			}
			ops++;
			k++;
		}
		mc->nprog = (uint32_t)(ops - prog);
		/* a jump names an && or || outside any chain (those inside went with it) */
		for (size_t k = 0; k < mc->nprog; k++)
			if (prog[k].jump != 0)
				prog[k].jump = at[prog[k].jump];
	}
	free(at);
	free(ids);
}

/*
 * Builds r->lazy_parent: each lazily settled meta under each of its
 * operands, once, and each chain such a meta reads under each of its rules.
 */
static void lazy_parents(rules_t *r)
{
	size_t nn = r->n + r->nmchain, n = nn ? nn : 1;
	uint32_t *off = xalloc_calloc(n + 1, sizeof(*off));
	uint32_t *seen = xalloc_calloc(n, sizeof(*seen));
	uint8_t *read = xalloc_calloc(r->nmchain ? r->nmchain : 1, 1); /* by a lazy meta */
	size_t total = 0;
	for (int pass = 0; pass < 2; pass++) {
		memset(seen, 0, n * sizeof(*seen));
		uint32_t *fill = pass ? xalloc_calloc(n, sizeof(*fill)) : NULL;
		/* p: a meta, or n + k for mchain k; seen[j] is p + 1 while p's are listed */
		for (size_t p = 0; p < nn; p++) {
			const uint32_t *sub = NULL;
			size_t nsub = 0;
			const struct meta_code *mc = NULL;
			if (p < r->n && (r->hot[p] & RULES_HOT_LAZY)) {
				mc = &r->mcode[p];
				nsub = mc->nprog;
			} else if (p >= r->n && read[p - r->n]) {
				sub = &r->mchain_rules[r->mchain[p - r->n].off];
				nsub = r->mchain[p - r->n].n;
			}
			for (size_t k = 0; k < nsub; k++) {
				size_t j;
				if (sub != NULL) {
					j = sub[k];
				} else if (mc->prog[k].op == MOP_RULE) {
					j = mc->prog[k].arg;
				} else if (mc->prog[k].op == MOP_SUM || mc->prog[k].op == MOP_ANY) {
					j = r->n + mc->prog[k].arg;
					read[mc->prog[k].arg] = 1;
				} else {
					continue;
				}
				if (seen[j] == p + 1)
					continue;
				seen[j] = (uint32_t)(p + 1);
				if (pass == 0) {
					off[j + 1]++;
					total++;
				} else {
					r->lazy_parent[off[j] + fill[j]++] = (uint32_t)p;
				}
			}
		}
		if (pass == 0) {
			for (size_t i = 0; i < n; i++)
				off[i + 1] += off[i];
			r->lazy_parent = xalloc_calloc(total ? total : 1, sizeof(uint32_t));
		}
		free(fill);
	}
	free(read);
	free(seen);
	r->lazy_parent_off = off;
}

/* paths: the files and directories loaded (none for text), where TextCat looks for profiles */
static int rules_finish(rules_t *r, const char *const *paths, size_t npaths, diag_t *d)
{
	size_t before = diag_errors(d);
	r->cctx = pcre2_compile_context_create(NULL);
	pcre2_set_character_tables(r->cctx, rules_latin1_tables());
	r->tables = rules_latin1_tables();

	for (size_t k = 0; k < r->nredir; k++) {
		struct rules_redirector *rd = &r->redir[k];
		int err;
		PCRE2_SIZE off;
		rd->code = rules_re_compile(rd->pattern, PCRE2_ZERO_TERMINATED, rd->options,
		                            r->cctx, &err, &off);
		if (rd->code == NULL) {
			PCRE2_UCHAR msg[160];
			pcre2_get_error_message(err, msg, sizeof(msg));
			diag_error(d, rd->file, rd->line,
			           "redirector_pattern: regex error at offset %zu: %s", (size_t)off,
			           (const char *)msg);
			continue;
		}
		uint32_t groups = 0;
		if (pcre2_pattern_info(rd->code, PCRE2_INFO_CAPTURECOUNT, &groups) == 0 &&
		    groups < 1)
			diag_error(d, rd->file, rd->line,
			           "redirector_pattern: no group (...) to take the link from");
		(void)rules_re_jit(rd->code, rd->pattern, PCRE2_ZERO_TERMINATED);
	}
	find_captures(r);
	size_t n0 = r->n; /* metas may intern undefined names: only walk defined ones */
	for (size_t i = 0; i < n0; i++) {
		struct rule *ru = &r->v[i];
		if (!ru->defined)
			continue;
		if (!ru->has_score) {
			if (name_is_sub(ru->name))
				ru->score = 0;
			else if (strncmp(ru->name, "T_", 2) == 0)
				ru->score = 0.01;
			else
				ru->score = (ru->tflags & TF_NICE) ? -1.0 : 1.0;
		}
		ru->disabled = ru->has_score && ru->score == 0 && !name_is_sub(ru->name);
		/*
		 * SpamAssassin runs eval tests flagged net only in score sets 1
		 * and 3, learn only in 2 and 3; regex and meta rules run anyway.
		 */
		if (ru->evaldef != NULL && (((ru->tflags & TF_NET) && !(r->opts.score_set & 1)) ||
		                            ((ru->tflags & TF_LEARN) && !(r->opts.score_set & 2))))
			ru->disabled = true;
		ru->report = !name_is_sub(ru->name) && ru->score != 0;
		if (ru->skipped) {
			r->stats.skipped[ru->type]++;
			continue;
		}
		if (ru->type == RULES_T_META) {
			if (rules_meta_compile(r, &r->v[i], d) == 0)
				r->stats.loaded[RULES_T_META]++;
			continue;
		}
		if (ru->evaldef != NULL) {
			ru->eargn =
			    xalloc_malloc((ru->neargs ? ru->neargs : 1) * sizeof(*ru->eargn));
			for (size_t k = 0; k < ru->neargs; k++)
				ru->eargn[k] = strtod(ru->eargs[k], NULL);
			r->stats.loaded[ru->type]++;
			continue;
		}
		if (ru->type == RULES_T_HEADER || ru->type == RULES_T_MIMEHEADER)
			ru->hkey =
			    hkey_intern(r, ru->hdr_name,
			                ru->hdr_mods & (HM_RAW | HM_ADDR | HM_NAME | HM_FIRST |
			                                HM_LAST | HM_HOST | HM_DOMAIN),
			                ru->type == RULES_T_MIMEHEADER);
		if (ru->hdr_exists) {
			r->stats.loaded[ru->type]++;
			continue;
		}
		if (ru->capture_dep) {
			/* compiled per message; check the syntax now with a stand-in value */
			char *probe = substitute_tags(ru->pattern, NULL, NULL, 0);
			int err;
			PCRE2_SIZE off;
			pcre2_code *code = pcre2_compile((PCRE2_SPTR)probe, PCRE2_ZERO_TERMINATED,
			                                 ru->re_options, &err, &off, r->cctx);
			free(probe);
			if (code == NULL) {
				PCRE2_UCHAR msg[160];
				pcre2_get_error_message(err, msg, sizeof(msg));
				diag_error(d, ru->file, ru->line, "%s rule %s: regex error: %s",
				           rules_type_name(ru->type), ru->name, (const char *)msg);
				continue;
			}
			pcre2_code_free(code);
			r->stats.loaded[ru->type]++;
			continue;
		}
		if (rules_compile_rule(r, ru, d) == 0) {
			ascii_form(r, ru);
			r->stats.loaded[ru->type]++;
			rules_lit_extract(ru);
			if (ru->nlits)
				r->stats.prefiltered++;
		}
	}
	/* Undefined names in metas: warn once each, they count as not hit. */
	for (size_t i = 0; i < n0; i++) {
		struct rule *ru = &r->v[i];
		if (!ru->defined || ru->type != RULES_T_META || ru->skipped)
			continue;
		for (size_t k = 0; k < ru->nprog; k++) {
			if (ru->prog[k].op != MOP_RULE)
				continue;
			struct rule *dep = &r->v[ru->prog[k].arg];
			if (!dep->defined && dep->type != -2) {
				diag_warn(d, ru->file, ru->line,
				          "meta rule %s: undefined rule %s (never hits)", ru->name,
				          dep->name);
				dep->type = -2; /* warned */
			}
		}
	}
	/*
	 * Scores for rules defined nowhere: a typo or a stale score file.
	 * A warning, as for undefined names in metas: the score is inert.
	 * Checked only now, after every file, since SpamAssassin's score files
	 * score rules defined in other files.
	 */
	for (size_t i = 0; i < n0; i++) {
		struct rule *ru = &r->v[i];
		if (ru->has_score && !ru->defined && !ru->seen_inactive)
			diag_warn(d, ru->score_file, ru->score_line, "score for undefined rule %s",
			          ru->name);
	}
	if (diag_errors(d) > before)
		return -1;

	mark_unused(r);

	/* Evaluation order per type: priority, then file order; metas topologically. */
	uint8_t *mark = xalloc_calloc(r->n ? r->n : 1, 1);
	for (int t = 0; t < RULES_T_N; t++)
		r->order[t] = xalloc_calloc(r->n ? r->n : 1, sizeof(size_t));
	r->late = xalloc_calloc(r->n ? r->n : 1, sizeof(size_t));
	r->evals = xalloc_calloc(r->n ? r->n : 1, sizeof(size_t));
	for (size_t i = 0; i < r->n; i++) {
		struct rule *ru = &r->v[i];
		if (!ru->defined || ru->skipped || ru->disabled || ru->unused || ru->type < 0)
			continue;
		if (ru->type == RULES_T_META) {
			if (meta_visit(r, i, mark, r->order[RULES_T_META], &r->norder[RULES_T_META],
			               d) < 0)
				break;
		} else if (ru->evaldef != NULL) {
			r->evals[r->nevals++] = i;
		} else if (ru->capture_dep) {
			r->late[r->nlate++] = i;
		} else {
			r->order[ru->type][r->norder[ru->type]++] = i;
		}
	}
	free(mark);
	for (int t = 0; t < RULES_T_META; t++)
		qsort_r(r->order[t], r->norder[t], sizeof(size_t), cmp_priority, r);
	qsort_r(r->evals, r->nevals, sizeof(size_t), cmp_priority, r);
	shortcircuit_prepare(r);
	mark_deferred(r);
	r->hot = xalloc_calloc(r->n ? r->n : 1, 1);
	r->lazy_cost = xalloc_calloc(r->n ? r->n : 1, sizeof(double));
	for (size_t i = 0; i < r->n; i++) {
		const struct rule *ru = &r->v[i];
		r->lazy_cost[i] = ru->lazy_cost;
		r->hot[i] = (uint8_t)((ru->deferred ? RULES_HOT_DEFERRED : 0) |
		                      (ru->lazy_cost > 0 ? RULES_HOT_LAZY : 0) |
		                      (ru->type != RULES_T_META && (ru->tflags & TF_MULTIPLE)
		                           ? RULES_HOT_MANY
		                           : 0) |
		                      (ru->report ? RULES_HOT_REPORT : 0));
	}
	meta_pack(r);
	lazy_parents(r);
	rules_freemail_finish(r);
	rules_eval_dns_finish(r);
	rules_textcat_finish(r, paths, npaths, d);
	if (diag_errors(d) > before)
		return -1;
	if (r->opts.prefilter)
		r->pf = rules_prefilter_build(r);
	r->hs = rules_hs_prepare(r);
	return 0;
}

/* ---------------------------------------------------------------- options and loading */

void rules_opts_default(rules_opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->paths[0] = SIFT_RULESDIR;
	o->npaths = 1;
	o->match_limit = RULES_DEFAULT_MATCH_LIMIT;
	o->depth_limit = RULES_DEFAULT_DEPTH_LIMIT;
	o->jit_stack_bytes = RULES_DEFAULT_JIT_STACK_BYTES;
	o->prefilter = true;
	o->prefilter_db = true;
	o->score_set = 3;
	o->header_value_scan = RULES_DEFAULT_HEADER_VALUE_SCAN;
	o->header_all_scan = RULES_DEFAULT_HEADER_ALL_SCAN;
	o->build_memory = RULES_DEFAULT_BUILD_MEMORY;
	o->build_cpu = RULES_DEFAULT_BUILD_CPU;
}

int rules_opts_read(conf_t *c, rules_opts_t *o, diag_t *d)
{
	int rc = 0;
	rules_opts_default(o);
	size_t n = conf_count(c, "rules");
	if (n > RULES_MAX_PATHS) {
		const char *file;
		unsigned line;
		conf_value_at(c, "rules", RULES_MAX_PATHS, &file, &line);
		diag_error(d, file, line, "rules: at most %d paths", RULES_MAX_PATHS);
		rc = -1;
		n = RULES_MAX_PATHS;
	}
	if (n > 0) {
		for (size_t i = 0; i < n; i++) {
			o->paths[i] = conf_filename_at(c, "rules", i, NULL, NULL, d);
			if (o->paths[i][0] == '\0')
				rc = -1; /* said at its line; not also "cannot open" */
		}
		o->npaths = n;
	}
	long v;
	if (conf_long(c, "regex_match_limit", RULES_DEFAULT_MATCH_LIMIT, 100, 1000000000, &v, d) <
	    0)
		rc = -1;
	o->match_limit = (uint32_t)v;
	if (conf_long(c, "regex_depth_limit", RULES_DEFAULT_DEPTH_LIMIT, 10, 100000000, &v, d) < 0)
		rc = -1;
	o->depth_limit = (uint32_t)v;
	if (conf_size(c, "regex_jit_stack", RULES_DEFAULT_JIT_STACK_BYTES, 16 * 1024,
	              1024ULL * 1024 * 1024, &o->jit_stack_bytes, d) < 0)
		rc = -1;
	if (conf_bool(c, "regex_prefilter", true, &o->prefilter, d) < 0)
		rc = -1;
	if (conf_size(c, "header_value_scan_size", RULES_DEFAULT_HEADER_VALUE_SCAN, 0,
	              (uint64_t)1 << 31, &o->header_value_scan, d) < 0)
		rc = -1;
	if (conf_size(c, "header_all_scan_size", RULES_DEFAULT_HEADER_ALL_SCAN, 0,
	              (uint64_t)1 << 31, &o->header_all_scan, d) < 0)
		rc = -1;
	/* the auth module answers the eval tests of these plugins' blocks */
	if (conf_bool(c, "auth_enable", false, &o->auth_plugins, d) < 0)
		rc = -1;
	if (conf_bool(c, "rules_all_plugins", false, &o->all_plugins, d) < 0)
		rc = -1;
	static const char *const engines[] = {"auto", "memmem", "vectorscan", NULL};
	int engine;
	if (conf_enum(c, "regex_prefilter_engine", engines, 0, &engine, d) < 0)
		rc = -1;
	o->prefilter_memmem = engine == 1;
	o->vectorscan_unchecked = engine == 2;
	if (conf_bool(c, "regex_prefilter_db", true, &o->prefilter_db, d) < 0)
		rc = -1;
	if (conf_size(c, "regex_prefilter_build_memory", RULES_DEFAULT_BUILD_MEMORY,
	              16ULL * 1024 * 1024, (uint64_t)1 << 40, &o->build_memory, d) < 0)
		rc = -1;
	if (conf_long(c, "regex_prefilter_build_cpu", RULES_DEFAULT_BUILD_CPU, 1, 86400, &v, d) <
	    0)
		rc = -1;
	o->build_cpu = (uint32_t)v;
	/* the daemon changes to "/" when it detaches: a relative path would move */
	if (conf_str(c, "regex_prefilter_db_dir", "", &o->db_dir, d) < 0)
		rc = -1;
	if (o->db_dir != NULL && o->db_dir[0] != '\0' && o->db_dir[0] != '/') {
		const char *file;
		unsigned line;
		conf_value_at(c, "regex_prefilter_db_dir", 0, &file, &line);
		diag_error(d, file, line,
		           "regex_prefilter_db_dir: expected an absolute path, got '%s'",
		           o->db_dir);
		rc = -1;
	}
	/*
	 * auto: SpamAssassin's score set for what this configuration runs -
	 * Bayes unless bayes_enable = no, network tests when a dnsbl_list is
	 * given (the bayes and dnsbl modules own those keys; this only reads them).
	 */
	static const char *const sets[] = {"auto", "0", "1", "2", "3", NULL};
	int set;
	if (conf_enum(c, "rules_score_set", sets, 0, &set, d) < 0)
		rc = -1;
	if (set == 0) {
		bool bayes = true;
		if (conf_bool(c, "bayes_enable", true, &bayes, d) < 0)
			rc = -1;
		/* the network set when DNS lists or sender authentication ask DNS */
		bool auth = false;
		if (conf_bool(c, "auth_enable", false, &auth, d) < 0)
			rc = -1;
		o->score_set = (bayes ? 2 : 0) + (conf_count(c, "dnsbl_list") > 0 || auth ? 1 : 0);
	} else {
		o->score_set = set - 1;
	}
	return rc;
}

static uint64_t next_generation(void)
{
	static _Atomic uint64_t gen;
	return atomic_fetch_add(&gen, 1) + 1;
}

static rules_t *rules_new(const rules_opts_t *o)
{
	rules_t *r = xalloc_calloc(1, sizeof(*r));
	if (o)
		r->opts = *o;
	else
		rules_opts_default(&r->opts);
	r->generation = next_generation();
	r->error_log = xalloc_calloc(1, sizeof(*r->error_log));
	r->errors_total = xalloc_calloc(1, sizeof(*r->errors_total));
	r->view_ns = xalloc_calloc(2 * RULES_T_N, sizeof(*r->view_ns));
	/* SpamAssassin's shortcircuit_spam_score and shortcircuit_ham_score defaults */
	r->sc_spam_score = 100;
	r->sc_ham_score = -100;
	return r;
}

rules_t *rules_load(const char *const *paths, size_t n, const rules_opts_t *o, diag_t *d)
{
	rules_t *r = rules_new(o);
	void *ps = rules_parse_begin(r);
	int rc = 0;
	for (size_t i = 0; i < n; i++)
		if (rules_parse_file(r, ps, paths[i], d) < 0)
			rc = -1;
	if (rules_parse_end(r, ps, d) < 0)
		rc = -1;
	/* Even after a parse error: regex and meta errors are reported too. */
	if (rules_finish(r, paths, n, d) < 0)
		rc = -1;
	if (rc < 0) {
		rules_free(r);
		return NULL;
	}
	return r;
}

rules_t *rules_load_text(const char *name, const char *text, const rules_opts_t *o, diag_t *d)
{
	rules_t *r = rules_new(o);
	void *ps = rules_parse_begin(r);
	int rc = rules_parse_text(r, ps, name, text, d);
	if (rules_parse_end(r, ps, d) < 0)
		rc = -1;
	/* Even after a parse error: regex and meta errors are reported too. */
	if (rules_finish(r, NULL, 0, d) < 0)
		rc = -1;
	if (rc < 0) {
		rules_free(r);
		return NULL;
	}
	return r;
}

void rules_free(rules_t *r)
{
	if (r == NULL)
		return;
	if (r->dns != NULL)
		dns_unref(r->dns);
	rules_uridnsbl_free(r->uridnsbl);
	rules_eval_dns_free(r);
	for (size_t i = 0; i < r->n; i++) {
		struct rule *ru = &r->v[i];
		free(ru->name);
		free(ru->desc);
		free(ru->pattern);
		for (size_t k = 0; k < ru->ncodes; k++)
			pcre2_code_free(ru->codes[k]);
		free(ru->codes);
		free(ru->jit);
		for (size_t k = 0; k < ru->nacodes; k++)
			pcre2_code_free(ru->acodes[k]);
		free(ru->acodes);
		free(ru->ajit);
		free(ru->apattern);
		for (size_t k = 0; k < ru->napieces; k++)
			free(ru->apieces[k]);
		free(ru->apieces);
		free(ru->apiecelen);
		for (size_t k = 0; k < ru->npieces; k++)
			free(ru->pieces[k]);
		free(ru->pieces);
		free(ru->piecelen);
		free(ru->hdr_name);
		free(ru->if_unset);
		free(ru->meta_src);
		free(ru->prog);
		free(ru->nums);
		for (size_t k = 0; k < ru->neargs; k++)
			free(ru->eargs[k]);
		free(ru->eargs);
		free(ru->eargn);
		for (size_t k = 0; k < ru->nlits; k++)
			free(ru->lits[k]);
		free(ru->lits);
		free(ru->litlen);
	}
	free(r->v);
	free(r->hash);
	for (size_t i = 0; i < r->nhkeys; i++)
		free(r->hkeys[i].name);
	free(r->hkeys);
	for (int t = 0; t < RULES_T_N; t++)
		free(r->order[t]);
	free(r->late);
	free(r->evals);
	free(r->hot);
	free(r->lazy_cost);
	free(r->lazy_parent_off);
	free(r->lazy_parent);
	free(r->mcode);
	free(r->mblock);
	free(r->mchain);
	free(r->mchain_rules);
	rules_freemail_free(r->freemail);
	rules_shorturl_free(r->shorturl);
	rules_wlbl_free(r->wlbl);
	rules_fromname_free(r->fromname);
	free(r->ok_locales);
	rules_textcat_free(r->textcat);
	free(r->sc);
	for (size_t k = 0; k < r->nredir; k++) {
		free(r->redir[k].pattern);
		pcre2_code_free(r->redir[k].code);
	}
	free(r->redir);
	for (size_t i = 0; i < r->ntags; i++)
		free(r->tags[i]);
	free(r->tags);
	for (size_t i = 0; i < r->nfiles; i++)
		free(r->files[i]);
	free(r->files);
	pcre2_compile_context_free(r->cctx);
	rules_prefilter_free(r->pf);
	rules_hs_release(r->hs);
	free(r->error_log);
	free(r->errors_total);
	free(r->hkey_lit);
	free(r->rule_hkey);
	free(r->view_ns);
	free(r);
}

size_t rules_count(const rules_t *r)
{
	size_t n = 0;
	for (size_t i = 0; i < r->n; i++)
		n += r->v[i].defined;
	return n;
}

const char *rules_name(const rules_t *r, size_t i)
{
	return i < r->n ? r->v[i].name : NULL;
}

long rules_find(const rules_t *r, const char *name)
{
	long i = rules_lookup(r, name);
	return i >= 0 && r->v[i].defined ? i : -1;
}

double rules_score(const rules_t *r, size_t i)
{
	return i < r->n ? r->v[i].score : 0;
}

int rules_type(const rules_t *r, size_t i)
{
	return i < r->n && r->v[i].defined ? r->v[i].type : -1;
}

bool rules_runs(const rules_t *r, size_t i)
{
	return i < r->n && r->v[i].defined && !r->v[i].skipped && !r->v[i].disabled &&
	       !r->v[i].unused;
}

void rules_stats(const rules_t *r, rules_stats_t *s)
{
	*s = r->stats;
}

static void print_db(const rules_t *r, FILE *fp)
{
	size_t cov, bytes;
	rules_db_state_t st = rules_prefilter_db_state(r, &cov, &bytes);
	if (st != RULES_DB_OFF)
		fprintf(fp, "prefilter database: %zu rules without literals, %s (%zu bytes)\n", cov,
		        rules_db_state_name(st), bytes);
}

void rules_print_stats(const rules_t *r, FILE *fp)
{
	size_t tl = 0, ts = 0;
	for (int t = 0; t < RULES_T_N; t++) {
		fprintf(fp, "%-10s %5zu loaded %5zu skipped\n", rules_type_name(t),
		        r->stats.loaded[t], r->stats.skipped[t]);
		tl += r->stats.loaded[t];
		ts += r->stats.skipped[t];
	}
	fprintf(fp, "%-10s %5zu loaded %5zu skipped\n", "total", tl, ts);
	fprintf(fp, "split patterns %zu, JIT-compiled %zu, prefiltered rules %zu (%s%s%s)\n",
	        r->stats.split_patterns, r->stats.jit_compiled, r->stats.prefiltered,
	        r->stats.vectorscan ? "vectorscan" : "memmem", r->stats.scanner ? ", " : "",
	        r->stats.scanner ? r->stats.scanner : "");
	if (r->stats.ascii_forms > 0)
		fprintf(fp, "rules with an ASCII form %zu (run on text with no byte above 0x7f)\n",
		        r->stats.ascii_forms);
	if (r->stats.strict_patterns > 0)
		fprintf(fp,
		        "patterns run by PCRE2's interpreter, not its JIT, %zu (an atomic group "
		        "that can backtrack, or \\R: PCRE2 10.42's JIT gets those wrong)\n",
		        r->stats.strict_patterns);
	if (r->stats.lead_dropped > 0)
		fprintf(fp,
		        "rules run without their optional start %zu (they only ask whether it "
		        "matches)\n",
		        r->stats.lead_dropped);
	if (r->stats.unused > 0)
		fprintf(fp, "unused sub-rules %zu (no scored rule depends on them: not run)\n",
		        r->stats.unused);
	print_db(r, fp);
}

const char *rules_db_state_name(rules_db_state_t s)
{
	static const char *const names[] = {"off", "pending", "built", "loaded", "failed"};
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

uint64_t rules_errors(const rules_t *r, size_t i)
{
	return i < r->n ? atomic_load(&r->v[i].errors) : 0;
}

uint64_t rules_errors_total(const rules_t *r)
{
	return atomic_load(r->errors_total);
}

static int cmp_time(const void *a, const void *b)
{
	const rules_time_t *x = a, *y = b;
	if (x->cpu_ns != y->cpu_ns)
		return x->cpu_ns > y->cpu_ns ? -1 : 1;
	return strcmp(x->name, y->name);
}

size_t rules_slowest(const rules_t *r, rules_time_t *out, size_t n)
{
	rules_time_t *all = xalloc_calloc(r->n ? r->n : 1, sizeof(*all));
	size_t k = 0;
	for (size_t i = 0; i < r->n; i++) {
		uint64_t ev = atomic_load(&r->v[i].evals);
		if (ev == 0)
			continue;
		all[k++] = (rules_time_t){.name = r->v[i].name,
		                          .type = r->v[i].type,
		                          .cpu_ns = atomic_load(&r->v[i].cpu_ns),
		                          .evals = ev};
	}
	qsort(all, k, sizeof(*all), cmp_time);
	if (k > n)
		k = n;
	memcpy(out, all, k * sizeof(*out));
	free(all);
	return k;
}

static uint64_t thread_ns(void);

/* What one reading of the thread CPU clock costs, in ns (the median of a few tries). */
static double clock_read_ns(void)
{
	double tries[5];
	for (int k = 0; k < 5; k++) {
		uint64_t t0 = thread_ns();
		for (int i = 0; i < 200; i++)
			(void)thread_ns();
		tries[k] = (double)(thread_ns() - t0) / 201.0;
	}
	for (int a = 1; a < 5; a++)
		for (int b = a; b > 0 && tries[b] < tries[b - 1]; b--) {
			double x = tries[b];
			tries[b] = tries[b - 1];
			tries[b - 1] = x;
		}
	return tries[2];
}

/* A timed total less the clock's cost of its runs, not below 0. */
static double net_ns(uint64_t ns, uint64_t runs, double clock_ns)
{
	double v = (double)ns - (double)runs * clock_ns;
	return v > 0 ? v : 0;
}

void rules_print_timing(const rules_t *r, FILE *fp, size_t top_n)
{
	rules_time_t *t = xalloc_calloc(top_n ? top_n : 1, sizeof(*t));
	size_t k = rules_slowest(r, t, top_n);
	uint64_t total = 0;
	for (size_t i = 0; i < r->n; i++)
		total += atomic_load(&r->v[i].cpu_ns);
	fprintf(fp, "rules CPU time: %.3f ms in total\n", total / 1e6);
	/*
	 * Where it goes, per view: making the view, the prefilter's scans of
	 * it, and its rules; eval tests and metas apart. Each timed rule run
	 * also pays for one reading of the thread's CPU clock (a system call
	 * on some virtual machines, microseconds): measured here and taken out
	 * of the rule times, or the metas' many short runs would look costly.
	 */
	double clock_ns = clock_read_ns();
	fprintf(fp, "clock: %.2f us per timed run, taken out of the rule times below\n",
	        clock_ns / 1e3);
	uint64_t rule_ns[RULES_T_N] = {0}, rule_runs[RULES_T_N] = {0}, eval_ns = 0, eval_runs = 0;
	for (size_t i = 0; i < r->n; i++) {
		const struct rule *ru = &r->v[i];
		if (ru->type < 0 || ru->type >= RULES_T_N)
			continue;
		uint64_t ns = atomic_load(&ru->cpu_ns), runs = atomic_load(&ru->evals);
		if (ru->evaldef != NULL) {
			eval_ns += ns;
			eval_runs += runs;
		} else {
			rule_ns[ru->type] += ns;
			rule_runs[ru->type] += runs;
		}
	}
	fprintf(fp, "%-11s %10s %10s %10s %9s\n", "view", "build ms", "scan ms", "rules ms",
	        "runs");
	for (int ty = 0; ty < RULES_T_N; ty++)
		fprintf(fp, "%-11s %10.3f %10.3f %10.3f %9" PRIu64 "\n", rules_type_name(ty),
		        atomic_load(&r->view_ns[2 * ty]) / 1e6,
		        atomic_load(&r->view_ns[2 * ty + 1]) / 1e6,
		        net_ns(rule_ns[ty], rule_runs[ty], clock_ns) / 1e6, rule_runs[ty]);
	fprintf(fp, "%-11s %10s %10s %10.3f %9" PRIu64 "\n", "eval tests", "-", "-",
	        net_ns(eval_ns, eval_runs, clock_ns) / 1e6, eval_runs);
	print_db(r, fp);
	for (size_t i = 0; i < k; i++) {
		double ns = net_ns(t[i].cpu_ns, t[i].evals, clock_ns);
		fprintf(fp, "%10.3f ms %8" PRIu64 " evals %7.2f us/eval  %-10s %s\n", ns / 1e6,
		        t[i].evals, t[i].evals ? ns / 1e3 / (double)t[i].evals : 0.0,
		        rules_type_name(t[i].type), t[i].name);
	}
	free(t);
}

/* ---------------------------------------------------------------- pooled match state */

/*
 * PCRE2 match data, match context and JIT stack are not thread-safe, and
 * making them per call costs more than many matches. So an evaluation
 * takes one set from a pool for the message and gives it back after. They
 * were kept per thread before, but libmilter's worker pool starts a thread
 * when none is idle and ends one when more than one is idle, so threads
 * come and go with the load (159 started over 1,500 one-message
 * connections in contrib/bench), and each new one made the set again (a
 * JIT stack mapped, the late patterns below compiled again). The settings
 * come from the rule set being run (a reload may change them), so they are
 * re-applied when the generation changes. The pool keeps at most
 * RULES_TLS_POOL_MAX idle sets: a burst of concurrent evaluations frees
 * its extra ones as they come back.
 */
#define RULES_TLS_POOL_MAX 128

/*
 * A pattern made from captured tags (the late rules: eval_all) and its
 * compiled code, kept by the set for the next message that makes the
 * same pattern for the same rule. SpamAssassin's __GB_* rules put the
 * recipient address a capture finds into six patterns, and mail to one
 * address or list makes the same six message after message: a compile
 * costs some 25,000 instructions, a look here a few hundred. On the test
 * messages, 61% of the compiles were found here.
 */
#define RULES_LATE_CACHE_ENTRIES 32
struct late_code {
	char *pat; /* NULL: an empty entry */
	size_t rule;
	pcre2_code *code;
	uint64_t used; /* the set's late_tick when last found: the least is dropped */
};

struct rules_tls {
	pcre2_match_data *md;
	pcre2_match_context *mc;
	pcre2_jit_stack *js;
	uint64_t js_bytes;
	uint64_t generation;
	/* emptied when the generation changes: rule indexes are a rule set's */
	struct late_code late[RULES_LATE_CACHE_ENTRIES];
	uint64_t late_tick;
	struct rules_tls *next; /* in the pool */
};

static pthread_mutex_t tls_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rules_tls *tls_pool; /* idle sets */
static size_t tls_pool_n;
/* the set the thread's evaluation holds, for rules_match_context() */
static __thread struct rules_tls *tls_cur;

static void late_flush(struct rules_tls *t)
{
	for (size_t i = 0; i < RULES_LATE_CACHE_ENTRIES; i++) {
		free(t->late[i].pat);
		pcre2_code_free(t->late[i].code);
		t->late[i] = (struct late_code){.pat = NULL};
	}
}

static void tls_free(struct rules_tls *t)
{
	late_flush(t);
	pcre2_match_data_free(t->md);
	pcre2_match_context_free(t->mc);
	pcre2_jit_stack_free(t->js);
	free(t);
}

/* A set for one evaluation of r's rules, held until tls_give(). */
static struct rules_tls *tls_take(const rules_t *r)
{
	pthread_mutex_lock(&tls_pool_lock);
	struct rules_tls *t = tls_pool;
	if (t != NULL) {
		tls_pool = t->next;
		tls_pool_n--;
	}
	pthread_mutex_unlock(&tls_pool_lock);
	if (t == NULL) {
		t = xalloc_calloc(1, sizeof(*t));
		t->md = pcre2_match_data_create(1, NULL);
		t->mc = pcre2_match_context_create(NULL);
		if (t->md == NULL || t->mc == NULL)
			abort();
	}
	if (t->generation != r->generation) {
		late_flush(t);
		pcre2_set_match_limit(t->mc, r->opts.match_limit);
		pcre2_set_depth_limit(t->mc, r->opts.depth_limit);
		if (t->js_bytes != r->opts.jit_stack_bytes) {
			pcre2_jit_stack_free(t->js);
			uint64_t start = RULES_JIT_STACK_START_BYTES;
			if (start > r->opts.jit_stack_bytes)
				start = r->opts.jit_stack_bytes;
			t->js = pcre2_jit_stack_create(start, r->opts.jit_stack_bytes, NULL);
			t->js_bytes = r->opts.jit_stack_bytes;
			pcre2_jit_stack_assign(t->mc, NULL, t->js);
		}
		t->generation = r->generation;
	}
	t->next = tls_cur; /* an evaluation inside another gets its own, and gives it back */
	tls_cur = t;
	return t;
}

static void tls_give(struct rules_tls *t)
{
	tls_cur = t->next;
	pthread_mutex_lock(&tls_pool_lock);
	if (tls_pool_n < RULES_TLS_POOL_MAX) {
		t->next = tls_pool;
		tls_pool = t;
		tls_pool_n++;
		t = NULL;
	}
	pthread_mutex_unlock(&tls_pool_lock);
	if (t != NULL)
		tls_free(t);
}

pcre2_match_context *rules_match_context(const rules_t *r)
{
	(void)r;
	/* eval tests run inside eval_all(), which holds a set; outside, PCRE2's own limits */
	return tls_cur != NULL ? tls_cur->mc : NULL;
}

/* ---------------------------------------------------------------- matching */

/*
 * ascii: 1 when p holds no byte above 0x7f, -1 when it does, 0 when not
 * known (then match_text() looks). A view's pieces are looked at once, as
 * the view is built, when the rule set has ASCII forms at all (else 0,
 * and no rule asks): SpamAssassin's rules have them (rules_ascii.c)
 * that run on each piece, and a look per rule run was a pass over the
 * body per rule.
 */
struct span {
	const char *p;
	size_t n;
	int8_t ascii;
};

struct evalctx {
	const rules_t *r;
	struct rules_tls *t;
	arena_t *a;
	unsigned flags;
	int errors;
	/* detail of the first match of the rule being run */
	const char *mp;
	size_t mn;
	/* capture rules: recorded tag values, and a per-message pattern to run */
	const char **capval;
	pcre2_code *ocode;
	/* the eval tests' per-message facts: X-Spam-Relays-* are parsed once for both */
	struct rules_evalenv *ee;
	bool body_has_subject; /* the body view's first paragraph is the Subject */
};

static void rule_error(struct evalctx *e, struct rule *ru, int rc)
{
	atomic_fetch_add(&ru->errors, 1);
	atomic_fetch_add(e->r->errors_total, 1);
	e->errors++;
	unsigned lost = 0;
	if (log_ratelimit(e->r->error_log, RULES_ERROR_LOG_BURST, RULES_ERROR_LOG_WINDOW_S,
	                  &lost)) {
		PCRE2_UCHAR msg[120];
		pcre2_get_error_message(rc, msg, sizeof(msg));
		log_msg(LOG_L_WARNING, "rule %s (%s:%u): %s; rule not applied%s", ru->name,
		        ru->file, ru->line, (const char *)msg,
		        lost ? " (more such errors suppressed)" : "");
	}
}

/*
 * The code of pat (malloc'd, taken) made for rule ri from captured tags:
 * from the thread's cache, else compiled and kept there in place of the
 * entry found least lately. NULL with *err when pat does not compile.
 * The code stays the cache's: the caller runs it and lets go.
 */
static pcre2_code *late_compile(struct evalctx *e, size_t ri, char *pat, int *err)
{
	struct rules_tls *t = e->t;
	struct late_code *victim = &t->late[0];
	t->late_tick++;
	for (size_t i = 0; i < RULES_LATE_CACHE_ENTRIES; i++) {
		struct late_code *c = &t->late[i];
		if (c->pat != NULL && c->rule == ri && strcmp(c->pat, pat) == 0) {
			c->used = t->late_tick;
			free(pat);
			return c->code;
		}
		if (c->used < victim->used)
			victim = c;
	}
	PCRE2_SIZE off;
	pcre2_code *code = rules_re_compile(pat, PCRE2_ZERO_TERMINATED, e->r->v[ri].re_options,
	                                    e->r->cctx, err, &off);
	if (code == NULL) {
		free(pat);
		return NULL;
	}
	free(victim->pat);
	pcre2_code_free(victim->code);
	*victim = (struct late_code){.pat = pat, .rule = ri, .code = code, .used = t->late_tick};
	return code;
}

/*
 * Counts matches of ru in s (every piece of a split pattern), at most
 * `limit` (0: stop at the first). Returns -1 after a limit error.
 */
/* Records the tags a capturing rule's match at `start` defines (first value wins). */
static void record_captures(struct evalctx *e, pcre2_code *code, const char *s, size_t len,
                            size_t start)
{
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
	if (md == NULL)
		return;
	if (pcre2_match(code, (PCRE2_SPTR)s, len, start, 0, md, e->t->mc) >= 0) {
		for (size_t k = 0; k < e->r->ntags; k++) {
			if (e->capval[k] != NULL)
				continue;
			PCRE2_UCHAR *v;
			PCRE2_SIZE vn;
			if (pcre2_substring_get_byname(md, (PCRE2_SPTR)e->r->tags[k], &v, &vn) ==
			    0) {
				/* an empty capture is no value (SpamAssassin drops it too) */
				if (vn > 0 && memchr(v, '\0', vn) == NULL)
					e->capval[k] = arena_strndup(e->a, (const char *)v, vn);
				pcre2_substring_free(v);
			}
		}
	}
	pcre2_match_data_free(md);
}

bool rules_text_is_ascii(const char *s, size_t len)
{
	size_t i = 0;
	uint64_t acc = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		acc |= w;
	}
	for (; i < len; i++)
		acc |= (unsigned char)s[i];
	return (acc & 0x8080808080808080ull) == 0;
}

/* ascii: whether s holds no byte above 0x7f, as struct span's ascii says (0: not known). */
static long match_text(struct evalctx *e, struct rule *ru, const char *s, size_t len,
                       unsigned limit, int8_t ascii)
{
	long count = 0;
	bool multiple = (ru->tflags & TF_MULTIPLE) != 0;
	/* a capture dependent runs the pattern made for this message instead */
	size_t ncodes = e->ocode ? 1 : ru->ncodes;
	pcre2_code **codes = ru->codes;
	bool *jits = ru->jit;
	if (!e->ocode && ru->nacodes > 0 &&
	    (ascii != 0 ? ascii > 0 : rules_text_is_ascii(s, len))) {
		ncodes = ru->nacodes;
		codes = ru->acodes;
		jits = ru->ajit;
	}
	for (size_t k = 0; k < ncodes; k++) {
		PCRE2_SIZE start = 0;
		pcre2_code *code = e->ocode ? e->ocode : codes[k];
		bool jit = e->ocode ? false : jits[k];
		while (start <= len) {
			int rc = jit ? pcre2_jit_match(code, (PCRE2_SPTR)s, len, start, 0, e->t->md,
			                               e->t->mc)
			             : pcre2_match(code, (PCRE2_SPTR)s, len, start, 0, e->t->md,
			                           e->t->mc);
			if (rc == PCRE2_ERROR_NOMATCH)
				break;
			if (rc < 0) {
				/* match/depth/heap/JIT-stack limits; any failure is not a "no" */
				rule_error(e, ru, rc);
				return -1;
			}
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->t->md);
			if (count == 0 && (e->flags & RULES_EVAL_EXPLAIN)) {
				e->mp = s + ov[0];
				e->mn = ov[1] > ov[0] ? ov[1] - ov[0] : 0;
			}
			if (count == 0 && ru->captures && e->capval)
				record_captures(e, code, s, len, ov[0]);
			count++;
			if (!multiple || (limit && (unsigned long)count >= limit))
				return count;
			start = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
		}
	}
	return count;
}

/*
 * Runs ru over a list of spans (paragraphs, URIs, parts) and returns its
 * count; with `nodes`, only over the spans listed from `head` (the
 * prefilter's finds).
 */
static long match_spans(struct evalctx *e, struct rule *ru, const struct span *v, size_t n,
                        const struct pf_node *nodes, uint32_t head)
{
	long total = 0;
	for (size_t k = 0; nodes ? head != 0 : k < n; k++) {
		size_t i = k;
		if (nodes) {
			i = nodes[head - 1].span;
			head = nodes[head - 1].next;
		}
		if (i == 0 && (ru->tflags & TF_NOSUBJECT) && ru->type == RULES_T_BODY &&
		    e->body_has_subject)
			continue;
		unsigned limit = 0;
		if (ru->maxhits)
			limit = ru->maxhits - (unsigned)total;
		long c = match_text(e, ru, v[i].p, v[i].n, limit, v[i].ascii);
		if (c < 0)
			return -1;
		total += c;
		if (total > 0 && !(ru->tflags & TF_MULTIPLE))
			break;
		if (ru->maxhits && total >= (long)ru->maxhits)
			break;
	}
	return total;
}

/* ---------------------------------------------------------------- views */

/*
 * SpamAssassin's body "lines": blank-line-separated paragraphs with white
 * space collapsed, each ending in "\n", cut at 2048 bytes at a space.
 * Returns the processed text in *buf and the pieces in *out.
 */
static size_t body_paragraphs(arena_t *a, const char *s, size_t n, struct span **out,
                              struct span *whole)
{
	char *b = arena_alloc(a, n + 2);
	size_t bn = 0;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		if (!(c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')) {
			b[bn++] = (char)c;
			i++;
			continue;
		}
		size_t j = i, first_nl = (size_t)-1, last_nl = 0, nls = 0;
		for (; j < n; j++) {
			unsigned char d = (unsigned char)s[j];
			if (!(d == ' ' || d == '\t' || d == '\n' || d == '\r' || d == '\f' ||
			      d == '\v'))
				break;
			if (d == '\n') {
				if (first_nl == (size_t)-1)
					first_nl = j;
				last_nl = j;
				nls++;
			}
		}
		if (nls >= 2) {
			if (first_nl > i)
				b[bn++] = ' ';
			b[bn++] = '\n';
			if (last_nl + 1 < j)
				b[bn++] = ' ';
		} else {
			b[bn++] = ' ';
		}
		i = j;
	}
	whole->p = b;
	whole->n = bn;
	/* count lines for the span array */
	size_t cap = 1;
	for (size_t i = 0; i < bn; i++)
		cap += b[i] == '\n';
	cap += bn / RULES_LINE_MAX_BYTES + 1;
	struct span *v = arena_alloc(a, cap * sizeof(*v));
	size_t k = 0;
	for (size_t i = 0; i < bn;) {
		const char *nl = memchr(b + i, '\n', bn - i);
		size_t end = nl ? (size_t)(nl - b) + 1 : bn;
		while (end - i > RULES_LINE_MAX_BYTES) {
			size_t cut = 0;
			for (size_t q = i + RULES_LINE_MAX_BYTES; q > i; q--)
				if (b[q] == ' ') {
					cut = q - i + 1;
					break;
				}
			if (b[i] == ' ' && cut == 0)
				cut = 1;
			if (cut == 0)
				cut = RULES_LINE_MAX_BYTES;
			if (k < cap)
				v[k++] = (struct span){.p = b + i, .n = cut};
			i += cut;
		}
		if (k < cap && end > i)
			v[k++] = (struct span){.p = b + i, .n = end - i};
		i = end;
	}
	*out = v;
	return k;
}

/* SpamAssassin's split_into_array_of_short_paragraphs (rawbody). */
static size_t raw_chunks(arena_t *a, const char *s, size_t n, struct span **out)
{
	size_t cap = n / RULES_LINE_MAX_BYTES + 2;
	struct span *v = arena_alloc(a, cap * sizeof(*v));
	size_t k = 0, ofs = 0;
	if (n <= RULES_LINE_MAX_BYTES) {
		v[k++] = (struct span){.p = s, .n = n};
		*out = v;
		return k;
	}
	while (n - ofs > 2 * RULES_LINE_MAX_BYTES) {
		size_t from = ofs + RULES_LINE_MAX_BYTES, j = 0;
		const char seps[3] = {'\n', '>', ' '};
		bool found = false;
		for (int si = 0; si < 3 && !found; si++) {
			const char *q = memchr(s + from, seps[si], n - from);
			if (q && (size_t)(q - s) - ofs + 1 <= 2 * RULES_LINE_MAX_BYTES) {
				j = (size_t)(q - s);
				found = true;
			}
		}
		if (!found)
			j = ofs + RULES_LINE_MAX_BYTES;
		if (k < cap)
			v[k++] = (struct span){.p = s + ofs, .n = j - ofs + 1};
		ofs = j + 1;
	}
	if (ofs < n && k < cap)
		v[k++] = (struct span){.p = s + ofs, .n = n - ofs};
	*out = v;
	return k;
}

/*
 * The body view's lines joined by "\n": SpamAssassin's rendered body text
 * array as the plugins that read it whole (TextCat) see it. Without a
 * Subject field SpamAssassin's array still starts with an empty line, so
 * the lengths those plugins compare come out the same.
 */
const char *rules_body_joined(arena_t *a, msg_t *m, const mime_t *mi, size_t *len)
{
	size_t n = 0;
	const char *s = mi ? mime_body(mi, &n) : NULL;
	abuf_t b;
	abuf_init(&b, a, n + 16);
	if (msg_header_get(m, "Subject", 0) == NULL)
		abuf_append(&b, "\n", 1);
	if (s != NULL && n > 0) {
		struct span *v, whole;
		size_t k = body_paragraphs(a, s, n, &v, &whole);
		for (size_t i = 0; i < k; i++) {
			if (i > 0 || b.len > 0)
				abuf_putc(&b, '\n');
			abuf_append(&b, v[i].p, v[i].n);
		}
	}
	*len = b.len;
	return b.data;
}

/* Folds continuation lines into single spaces, as SpamAssassin's raw view does. */
static void unfold_into(abuf_t *b, const char *v)
{
	/* a run at a time: the raw ALL pseudo-field passes every field through here */
	for (const char *p = v;;) {
		size_t run = strcspn(p, "\r\n");
		abuf_append(b, p, run);
		p += run;
		if (*p == '\0')
			break;
		if (*p == '\n') {
			while (p[1] == ' ' || p[1] == '\t')
				p++;
			abuf_putc(b, ' ');
		}
		p++;
	}
}

/*
 * One field value as a rule reads it, its first cap bytes (0: all) taken
 * before unfolding or decoding, as SpamAssassin cuts a value at 8192
 * (MAX_HEADER_VALUE_LENGTH) when it parses the header. Besides matching
 * what SpamAssassin's rules were written against, this bounds regex rules
 * whose cost is the square of a value's length: SpamAssassin's
 * TO_MALFORMED took 0.8 s on a 64 KB To field, Sift's SIFT_FROM_SAME_AS_TO
 * 2.3 s on a 64 KB From field.
 */
static void value_into(abuf_t *b, arena_t *a, const char *v, bool raw, uint64_t cap)
{
	if (cap > 0 && strnlen(v, (size_t)cap + 1) > cap)
		v = arena_strndup(a, v, (size_t)cap);
	if (raw)
		unfold_into(b, v);
	else
		abuf_puts(b, mime_decode_header(a, v));
}

/* Addresses or display names of an address-list field value (raw). */
static void addr_parts(abuf_t *out, arena_t *a, const char *v, bool want_name, bool raw)
{
	const char *p = v;
	while (*p) {
		/* one element: up to a comma outside quotes, <> and () */
		const char *s = p;
		int ang = 0, par = 0;
		bool q = false;
		for (; *p; p++) {
			if (*p == '\\' && p[1]) {
				p++;
				continue;
			}
			if (*p == '"')
				q = !q;
			else if (!q && *p == '(')
				par++;
			else if (!q && *p == ')' && par)
				par--;
			else if (!q && !par && *p == '<')
				ang++;
			else if (!q && !par && *p == '>' && ang)
				ang--;
			else if (!q && !par && !ang && *p == ',')
				break;
		}
		size_t n = (size_t)(p - s);
		if (*p == ',')
			p++;
		const char *lt = memchr(s, '<', n);
		const char *gt = lt ? memchr(lt, '>', n - (size_t)(lt - s)) : NULL;
		char *addr = NULL, *name = NULL;
		if (lt && gt) {
			addr = arena_strndup(a, lt + 1, (size_t)(gt - lt - 1));
			name = arena_strndup(a, s, (size_t)(lt - s));
		} else {
			/* "a@b (Name)" or bare "a@b" */
			const char *lp = memchr(s, '(', n);
			const char *rp = lp ? memchr(lp, ')', n - (size_t)(lp - s)) : NULL;
			addr = arena_strndup(a, s, lp ? (size_t)(lp - s) : n);
			if (lp && rp)
				name = arena_strndup(a, lp + 1, (size_t)(rp - lp - 1));
		}
		char *t = want_name ? name : addr;
		if (t == NULL)
			continue;
		if (want_name && !raw)
			t = mime_decode_header(a, t);
		/* trim blanks and, for names, surrounding quotes; collapse white space */
		while (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r')
			t++;
		size_t tn = strlen(t);
		while (tn && (t[tn - 1] == ' ' || t[tn - 1] == '\t' || t[tn - 1] == '\n' ||
		              t[tn - 1] == '\r'))
			tn--;
		if (want_name && tn >= 2 && (t[0] == '"' || t[0] == '\'') && t[tn - 1] == t[0]) {
			t++;
			tn -= 2;
		}
		if (tn == 0 && !want_name)
			continue;
		if (want_name && tn == 0)
			continue;
		if (out->len)
			abuf_putc(out, '\n');
		bool sp = false;
		for (size_t i = 0; i < tn; i++) {
			char c = t[i];
			if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
				sp = true;
				continue;
			}
			if (sp && want_name)
				abuf_putc(out, ' ');
			sp = false;
			abuf_putc(out, c);
		}
	}
}

static const char *mime_words(arena_t *a, const mime_t *mi)
{
	static const char *const names[] = {"truncated",    "depth_limit", "part_limit",
	                                    "bad_boundary", "bad_base64",  "bad_qp",
	                                    "bad_charset",  "text_limit",  "bad_header"};
	abuf_t b;
	abuf_init(&b, a, 128);
	if (mi == NULL)
		return "";
	unsigned f = mime_flags(mi);
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (f & (1u << i)) {
			abuf_puts(&b, names[i]);
			abuf_putc(&b, ' ');
		}
	if (f & MIME_F_FIELD_LIMIT)
		abuf_puts(&b, "field_limit ");
	bool html = false, plain = false, att = false, exe = false;
	for (size_t i = 0; i < mime_part_count(mi); i++) {
		const mime_part_t *p = mime_part(mi, i);
		if (p->is_attachment) {
			att = true;
			const char *fn = p->filename;
			const char *dot = fn ? strrchr(fn, '.') : NULL;
			static const char *const exts[] = {".exe", ".scr", ".pif", ".com", ".bat",
			                                   ".cmd", ".js",  ".vbs", ".jar", ".lnk",
			                                   ".hta", ".wsf", NULL};
			for (int k = 0; dot && exts[k]; k++)
				if (strcasecmp(dot, exts[k]) == 0)
					exe = true;
		} else if (p->is_text) {
			if (p->is_html)
				html = true;
			else if (p->content_type && strcmp(p->content_type, "text/plain") == 0 &&
			         p->decoded_len > 0)
				plain = true;
		}
	}
	if (html && !plain)
		abuf_puts(&b, "html_only ");
	if (!html && !plain)
		abuf_puts(&b, "no_text ");
	if (att)
		abuf_puts(&b, "has_attachment ");
	if (exe)
		abuf_puts(&b, "exe_attachment ");
	if (b.len && b.data[b.len - 1] == ' ')
		b.data[--b.len] = '\0';
	return b.data;
}

static const psl_ctx_t *psl_get(void)
{
	return psl_builtin();
}

/* Host (and registrable domain) from an address or a text. */
static void host_parts(abuf_t *out, arena_t *a, const char *v, bool domain)
{
	abuf_t tmp;
	abuf_init(&tmp, a, 64);
	const char *p = v;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		const char *at = NULL;
		for (size_t i = 0; i < n; i++)
			if (p[i] == '@')
				at = p + i;
		if (at) {
			const char *h = at + 1;
			size_t hn = 0;
			while (h + hn < p + n && !isspace((unsigned char)h[hn]) && h[hn] != '>')
				hn++;
			char *host = arena_strndup(a, h, hn);
			for (char *c = host; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			if (domain && psl_get() != NULL) {
				const char *rd = psl_registrable_domain(psl_get(), host);
				if (rd)
					host = (char *)rd;
			}
			if (out->len)
				abuf_putc(out, '\n');
			abuf_puts(out, host);
		}
		p += n;
		if (*p)
			p++;
	}
}

struct hval {
	bool done, present;
	int8_t ascii; /* of s, as struct span's: looked at when a rule first needs it */
	const char *s;
	size_t n;
	/* a mimeheader key's value per MIME part (mime_part_count entries) */
	struct hval *parts;
};

/*
 * Field i's value into b as value_into() puts it (cut at
 * header_value_scan). Decoded, it is the message's decoded field
 * (rules_eval_field_decoded()): ALL decodes every field, and the rules on
 * a field by its name (Subject, From, To) and the evals read it again. A
 * value past the cut is cut and decoded here, as value_into() does.
 */
static void field_into(struct evalctx *e, abuf_t *b, msg_t *m, size_t i, bool raw)
{
	uint64_t cap = e->r->opts.header_value_scan;
	const char *v = msg_header_value(m, i);
	if (raw || (cap > 0 && strnlen(v, (size_t)cap + 1) > cap))
		value_into(b, e->a, v, raw, cap);
	else
		abuf_puts(b, rules_eval_field_decoded(e->ee, i));
}

/* Every occurrence of field name (key its msg_header_key()) as header rules read it, into b. */
static void field_values(struct evalctx *e, abuf_t *b, msg_t *m, const char *name, uint32_t key,
                         unsigned mods, bool *present)
{
	bool raw = (mods & (HM_RAW | HM_ADDR | HM_NAME)) != 0;
	size_t pos = 0, count = 0, last = 0;
	while (msg_header_next_key(m, name, key, &pos) != NULL) {
		count++;
		/* pos is past the field found */
		if (mods & HM_LAST) {
			last = pos;
			continue;
		}
		*present = true;
		field_into(e, b, m, pos - 1, raw);
		abuf_putc(b, '\n');
		if (mods & HM_FIRST)
			break;
	}
	/* :first:last is the one occurrence of a field that occurs once */
	if (last != 0 && !((mods & HM_FIRST) && count > 1)) {
		*present = true;
		field_into(e, b, m, last - 1, raw);
		abuf_putc(b, '\n');
	}
}

/* Finds a field in a MIME part's header block ("Name: value\n" lines). */
static void part_field(abuf_t *b, arena_t *a, const char *block, const char *name, bool raw,
                       bool *present)
{
	size_t nl = strlen(name);
	for (const char *p = block; p && *p;) {
		const char *eol = strchr(p, '\n');
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			/* value with its continuation lines */
			const char *v = p + nl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			const char *e = eol;
			while (e && (e[1] == ' ' || e[1] == '\t')) {
				e = strchr(e + 1, '\n');
			}
			size_t vn = e ? (size_t)(e - v) : strlen(v);
			char *val = arena_strndup(a, v, vn);
			/* SpamAssassin cuts no MIME part's field: neither does this */
			value_into(b, a, val, raw, 0);
			abuf_putc(b, '\n');
			*present = true;
			eol = e;
		}
		p = eol ? eol + 1 : NULL;
	}
}

/*
 * Field i as the ALL pseudo-fields hold it ("Name: value\n") appended to
 * b, unless that would take b past all_cap bytes (0: no limit): then
 * false, and this field and the later ones are left out, as SpamAssassin
 * leaves them out of ALL past 64 KB (MAX_HEADER_LENGTH).
 */
static bool all_field(struct evalctx *e, abuf_t *b, msg_t *m, size_t i, bool raw, uint64_t all_cap)
{
	size_t before = b->len;
	abuf_puts(b, msg_header_name(m, i));
	abuf_puts(b, ": ");
	field_into(e, b, m, i, raw);
	abuf_putc(b, '\n');
	if (all_cap > 0 && b->len > all_cap) {
		b->len = before;
		if (b->data != NULL)
			b->data[before] = '\0';
		return false;
	}
	return true;
}

static void header_value(struct evalctx *e, msg_t *m, const mime_t *mi, const struct hkey *k,
                         struct hval *hv)
{
	arena_t *a = e->a;
	abuf_t b;
	abuf_init(&b, a, 128);
	bool present = false;
	bool raw = (k->mods & HM_RAW) != 0;
	const char *nm = k->name;
	uint64_t all_cap = e->r->opts.header_all_scan;
	if (k->kind == RULES_HK_ALL) {
		for (size_t i = 0; i < msg_header_count(m); i++) {
			if (!all_field(e, &b, m, i, raw, all_cap))
				break;
			present = true;
		}
	} else if (k->kind == RULES_HK_ALL_INNER || k->kind == RULES_HK_ALL_OUTER) {
		/*
		 * SpamAssassin's split of ALL at the trust boundary (internal is
		 * trusted: Sift infers one boundary). Both sides hold the Received
		 * field of the boundary, which the last trusted relay wrote.
		 */
		rules_eval_relays(e->ee);
		size_t cut = e->ee->rcvd_trusted;
		bool outer = k->kind == RULES_HK_ALL_OUTER;
		long rcvd = -1;
		for (size_t i = 0; i < msg_header_count(m); i++) {
			bool is_rcvd = strcasecmp(msg_header_name(m, i), "Received") == 0;
			rcvd += is_rcvd;
			if (outer ? rcvd < (long)cut
			          : rcvd > (long)cut || (rcvd == (long)cut && !is_rcvd))
				continue;
			if (!all_field(e, &b, m, i, raw, all_cap))
				break;
			present = true;
			if (!outer && is_rcvd && rcvd == (long)cut)
				break;
		}
	} else if (k->kind == RULES_HK_TOCC) {
		field_values(e, &b, m, "To", msg_header_key("To"), k->mods, &present);
		field_values(e, &b, m, "Cc", msg_header_key("Cc"), k->mods, &present);
	} else if (k->kind == RULES_HK_MESSAGEID) {
		static const char *const ids[] = {"X-Message-Id", "Resent-Message-Id",
		                                  "X-Original-Message-ID", "Message-Id"};
		for (int i = 0; i < 4; i++)
			field_values(e, &b, m, ids[i], msg_header_key(ids[i]), k->mods, &present);
	} else if (k->kind == RULES_HK_ENVFROM) {
		const char *f = msg_mail_from(m);
		if (f == NULL) {
			/* `sift check` on a file: the MTA's record of the envelope */
			const char *rp = msg_header_get(m, "Return-Path", 0);
			if (rp != NULL) {
				abuf_t t;
				abuf_init(&t, a, 64);
				addr_parts(&t, a, rp, false, true);
				f = t.data;
			}
		}
		if (f != NULL) {
			abuf_puts(&b, f);
			present = true;
		}
	} else if (k->kind == RULES_HK_RELAYS_INNER || k->kind == RULES_HK_RELAYS_OUTER) {
		/* pseudo-fields: a real field of the name is ignored, as with X-Sift-Mime */
		rules_eval_relays(e->ee);
		bool untrusted = k->kind == RULES_HK_RELAYS_OUTER;
		abuf_puts(&b, untrusted ? e->ee->untrusted_str : e->ee->trusted_str);
		present = true;
	} else if (k->kind == RULES_HK_SIFT_MIME) {
		abuf_puts(&b, mime_words(a, mi));
		abuf_putc(&b, '\n');
		present = true;
	} else {
		field_values(e, &b, m, nm, k->key, k->mods, &present);
	}
	if (present && (k->mods & (HM_ADDR | HM_NAME))) {
		abuf_t o;
		abuf_init(&o, a, 64);
		addr_parts(&o, a, b.data, (k->mods & HM_NAME) != 0, raw);
		b = o;
		present = o.len > 0;
	}
	if (present && (k->mods & HM_HOST)) {
		abuf_t o;
		abuf_init(&o, a, 64);
		host_parts(&o, a, b.data, (k->mods & HM_DOMAIN) != 0);
		b = o;
		present = o.len > 0;
	}
	hv->done = true;
	hv->present = present;
	hv->s = b.data;
	hv->n = b.len;
}

/* ---------------------------------------------------------------- evaluation */

static uint64_t thread_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A binary operator of a meta on known operands (comparisons and logic give 0 or 1). */
static inline double meta_binop(enum meta_opcode op, double a, double b)
{
	switch (op) {
	case MOP_AND: return a != 0 && b != 0;
	case MOP_OR: return a != 0 || b != 0;
	case MOP_ADD: return a + b;
	case MOP_SUB: return a - b;
	case MOP_MUL: return a * b;
	case MOP_DIV: return b != 0 ? a / b : 0;
	case MOP_GT: return a > b;
	case MOP_GE: return a >= b;
	case MOP_LT: return a < b;
	case MOP_LE: return a <= b;
	case MOP_EQ: return a == b;
	default: return a != b;
	}
}

/*
 * Past an && whose left operand is false, or an || whose left operand is
 * true: the result is that of evaluating the right one too, without doing
 * it. Repeats up a chain (a && b && c). Returns the op to go on after.
 */
static size_t meta_skip(const struct meta_code *ru, size_t i, double *top)
{
	while (ru->prog[i].jump != 0) {
		size_t j = ru->prog[i].jump;
		bool and = ru->prog[j].op == MOP_AND;
		if (and? *top != 0 : *top == 0)
			break;
		*top = and? 0 : 1;
		i = j;
	}
	return i;
}

/* The value of mchain k: added up in the order the meta wrote it, or or-ed. */
static double meta_chain_value(const rules_t *r, uint32_t k, const double *val)
{
	const struct meta_chain *c = &r->mchain[k];
	const uint32_t *ids = &r->mchain_rules[c->off];
	if (c->op == MOP_ANY) {
		for (uint32_t q = 0; q < c->n; q++)
			if (val[ids[q]] != 0)
				return 1;
		return 0;
	}
	double v = val[ids[0]];
	for (uint32_t q = 1; q < c->n; q++)
		v += val[ids[q]];
	return v;
}

struct views {
	bool built[RULES_T_N];
	struct span *spans[RULES_T_N];
	size_t nspans[RULES_T_N];
	struct span whole[RULES_T_N]; /* the text the prefilter scans */
};

static void build_view(struct evalctx *e, struct views *vw, int type, msg_t *m, const mime_t *mi)
{
	arena_t *a = e->a;
	vw->built[type] = true;
	vw->nspans[type] = 0;
	vw->whole[type] = (struct span){.p = "", .n = 0};
	switch (type) {
	case RULES_T_BODY: {
		if (mi == NULL)
			return;
		size_t n;
		const char *s = mime_body(mi, &n);
		if (s == NULL)
			return;
		/* mime.c starts the body with "Subject\n\n" when there is a Subject field */
		e->body_has_subject = msg_header_get(m, "Subject", 0) != NULL;
		vw->nspans[type] = body_paragraphs(a, s, n, &vw->spans[type], &vw->whole[type]);
		break;
	}
	case RULES_T_RAWBODY: {
		if (mi == NULL)
			return;
		size_t n;
		const char *s = mime_rawbody(mi, &n);
		if (s == NULL)
			return;
		vw->whole[type] = (struct span){.p = s, .n = n};
		vw->nspans[type] = raw_chunks(a, s, n, &vw->spans[type]);
		break;
	}
	case RULES_T_URI: {
		if (mi == NULL)
			return;
		/* the links, the addresses in the text and their variants (rules_uri.c) */
		const char **uris;
		size_t n = rules_uri_list(a, mi, e->r, e->t->mc, &uris);
		struct span *v = arena_alloc(a, (n ? n : 1) * sizeof(*v));
		size_t *off = arena_alloc(a, (n ? n : 1) * sizeof(*off));
		abuf_t all;
		abuf_init(&all, a, 256);
		/* one text, each URI a span of it, so the prefilter can place its literals */
		for (size_t i = 0; i < n; i++) {
			const char *u = uris[i];
			off[i] = all.len;
			v[i].n = strlen(u);
			abuf_append(&all, u, v[i].n);
			abuf_putc(&all, '\n');
		}
		for (size_t i = 0; i < n; i++)
			v[i].p = all.data + off[i];
		vw->spans[type] = v;
		vw->nspans[type] = n;
		vw->whole[type] = (struct span){.p = all.data, .n = all.len};
		break;
	}
	case RULES_T_FULL: {
		size_t hn, bn;
		const char *h = msg_header_block(m, &hn);
		const char *b = msg_body(m, &bn);
		char *f = arena_alloc(a, hn + bn + 2);
		memcpy(f, h, hn);
		f[hn] = '\n';
		if (bn)
			memcpy(f + hn + 1, b, bn);
		f[hn + 1 + bn] = '\0';
		struct span *v = arena_alloc(a, sizeof(*v));
		v[0] = (struct span){.p = f, .n = hn + 1 + bn};
		vw->spans[type] = v;
		vw->nspans[type] = 1;
		vw->whole[type] = v[0];
		break;
	}
	default: break;
	}
	/* a pass over the view only for a rule set with ASCII forms (not Sift's own rules) */
	bool look = e->r->stats.ascii_forms > 0;
	for (size_t i = 0; i < vw->nspans[type]; i++) {
		struct span *sp = &vw->spans[type][i];
		sp->ascii = !look ? 0 : rules_text_is_ascii(sp->p, sp->n) ? 1 : -1;
	}
}

/* The matched text for `sift check`: one line, control bytes shown as spaces. */
static const char *printable(arena_t *a, const char *p, size_t n)
{
	if (n > RULES_DETAIL_BYTES)
		n = RULES_DETAIL_BYTES;
	char *s = arena_strndup(a, p, n);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			s[i] = ' ';
	while (n > 0 && s[n - 1] == ' ')
		s[--n] = '\0';
	return s;
}

/*
 * The header rules' literal prefilter: the values of the fields that
 * prefiltered rules read, one span each, scanned at once; a rule runs
 * only if one of its literals is in its own field's value. SpamAssassin
 * has some 700 header rules and most find nothing to look at.
 */
static void header_prefilter(struct evalctx *e, msg_t *m, const mime_t *mi, struct hval *hv,
                             struct pf_result *pf)
{
	const rules_t *r = e->r;
	uint64_t t0 = (e->flags & RULES_EVAL_TIMING) ? thread_ns() : 0;
	size_t *off = arena_alloc(e->a, (r->nhkeys ? r->nhkeys : 1) * sizeof(size_t));
	size_t *len = arena_alloc(e->a, (r->nhkeys ? r->nhkeys : 1) * sizeof(size_t));
	abuf_t w;
	abuf_init(&w, e->a, 4096);
	for (size_t k = 0; k < r->nhkeys; k++) {
		off[k] = w.len;
		len[k] = 0;
		if (r->hkey_lit[k]) {
			struct hval *v = &hv[k];
			if (!v->done)
				header_value(e, m, mi, &r->hkeys[k], v);
			if (v->present) {
				abuf_append(&w, v->s, v->n);
				len[k] = v->n;
			}
		}
		/* a separator: every span starts after the last, and no literal spans two */
		abuf_putc(&w, '\0');
	}
	pf->span_off = off;
	pf->span_len = len;
	pf->nspans = r->nhkeys;
	pf->nnodes = 0;
	pf->rule_span = r->rule_hkey;
	memset(pf->want, PF_SKIP, r->n);
	rules_prefilter_scan(r, RULES_T_HEADER, w.data, w.len, pf);
	pf->rule_span = NULL;
	if (e->flags & RULES_EVAL_TIMING)
		atomic_fetch_add(&r->view_ns[2 * RULES_T_HEADER + 1], thread_ns() - t0);
}

/*
 * A header or mimeheader rule's count on one field value (v->s, v->n
 * when present): exists: tests count presence; an absent field matches as its
 * if-unset stand-in, else as ""; !~ turns a match count into 0 or 1.
 */
static long field_rule_count(struct evalctx *e, struct rule *ru, struct hval *v)
{
	if (ru->hdr_exists)
		return v->present;
	const char *s = v->s;
	size_t n = v->n;
	int8_t ascii = 0;
	if (!v->present) {
		s = ru->if_unset ? ru->if_unset : "";
		n = strlen(s);
	} else if (ru->nacodes > 0 && !e->ocode) {
		if (v->ascii == 0)
			v->ascii = rules_text_is_ascii(s, n) ? 1 : -1;
		ascii = v->ascii;
	}
	long count = match_text(e, ru, s, n, ru->maxhits, ascii);
	if (count >= 0 && ru->negate)
		count = count == 0;
	return count;
}

/* A header rule's count on the message's value of its field. */
static long header_rule_count(struct evalctx *e, msg_t *m, const mime_t *mi, struct hval *hv,
                              struct rule *ru)
{
	struct hval *v = &hv[ru->hkey];
	if (!v->done)
		header_value(e, m, mi, &e->r->hkeys[ru->hkey], v);
	return field_rule_count(e, ru, v);
}

/*
 * A mimeheader key's value in part pi (NULL when the part has no header
 * block), built once a message: SpamAssassin's set has some fifty
 * mimeheader rules on Content-Type alone, and a copy per rule would cost
 * the field's size times the rules in the message's arena (a 2 MB
 * Content-Type took 290 MB and 260 ms that way).
 */
static struct hval *mime_field(struct evalctx *e, const mime_t *mi, struct hval *hv, size_t hkey,
                               size_t pi)
{
	struct hval *k = &hv[hkey];
	const mime_part_t *p = mime_part(mi, pi);
	if (p->headers == NULL)
		return NULL;
	if (k->parts == NULL)
		k->parts = arena_zalloc(e->a, mime_part_count(mi) * sizeof(*k->parts));
	struct hval *v = &k->parts[pi];
	if (!v->done) {
		const struct hkey *hk = &e->r->hkeys[hkey];
		abuf_t b;
		abuf_init(&b, e->a, 64);
		part_field(&b, e->a, p->headers, hk->name, (hk->mods & HM_RAW) != 0, &v->present);
		v->s = b.data;
		v->n = v->present ? strlen(b.data) : 0;
		v->done = true;
	}
	return v;
}

/* ---------------------------------------------------------------- lazy sub-rules */

/*
 * A deferred sub-rule (see mark_deferred) that the prefilter did not rule
 * out is pending until a meta needs its value. Each scored meta is settled
 * by evaluation over what is known and the bounds of what is not: "A && B"
 * with B known false is false whatever A is, and so is "A + B + C > 1"
 * with A and B known misses. When the value is still open, the open
 * operand cheapest to settle (by pending_cost()) is settled (a pending rule run,
 * a sub-meta settled the same way) and the meta is tried again. So a ham
 * from a mailing list never runs SpamAssassin's __FILL_THIS_FORM_* rules,
 * whose metas all require !__VIA_ML or the like. The values are those of
 * running everything: only the order of work changes.
 */
enum { LZ_KNOWN = 0, LZ_PENDING, LZ_META };

struct lz_ent;

struct lazy {
	struct evalctx *e;
	msg_t *m;
	const mime_t *mi;
	struct hval *hv;
	const struct views *vw;
	double *val;
	uint8_t *state;               /* per rule, then per mchain (n + k): LZ_* */
	const struct pf_node **nodes; /* per pending rule: its listed spans, NULL: all */
	uint32_t *head;
	double *pcost;        /* per pending rule: lazy_cost scaled by the bytes it would read */
	uint8_t *fresh;       /* per sub-meta found open, mchain: nothing it read settled since */
	double *left;         /* per sub-meta found open: the cost left to settle it */
	struct lz_ent *chain; /* per mchain, while fresh: what it was last found to be */
	bool timing;
	uint64_t forced_ns; /* time of pending rules run, not a meta's own */
};

static bool meta_try(struct lazy *z, const struct meta_code *ru, double *out, size_t *pick,
                     double *left);

/* Rule j's value if settled; if not, the cost left to settle it in *left. */
static double lazy_peek(struct lazy *z, size_t j, bool *known, double *left)
{
	*known = false;
	if (z->state[j] == LZ_KNOWN) {
		*known = true;
		return z->val[j];
	}
	if (z->state[j] == LZ_PENDING) {
		*left = z->pcost[j];
		return 0;
	}
	if (!z->fresh[j]) {
		double v;
		size_t pick;
		if (meta_try(z, &z->e->r->mcode[j], &v, &pick, &z->left[j])) {
			z->val[j] = v != 0;
			z->state[j] = LZ_KNOWN;
			*known = true;
			return z->val[j];
		}
		z->fresh[j] = 1;
	}
	*left = z->left[j];
	return 0;
}

/*
 * What is known of an open value: bounds it lies within. A pending rule
 * gives 0 or 1, or under tflags multiple a count from 0 to its maxhits
 * (any count without one); an open meta 0 or 1. Sums and comparisons
 * then decide what counting alone cannot: "(__A + __B + __C) > 1" is
 * true once two are known hits, and false once two are known misses,
 * whatever the third gives. SpamAssassin's counted sub-rules all have a
 * maxhits, so a sum "> 3" with a maxhits=2 rule in it is false, without
 * running that rule, once the others are known to give at most 1. Bounds are only
 * compared (never taken as the value), and rounding is monotonic, so a
 * value decided by them is the one meta_run() computes.
 */
struct lz_ent {
	double lo, hi; /* bounds of an open value; a known one's value is both */
	double cost;   /* open: the cost left to settle it */
	size_t pick;   /* open: the operand to settle first for it */
	bool known;
};

/* An entry's truth: 1, 0, or -1 while its bounds straddle zero. */
static inline int lz_truth(const struct lz_ent *x)
{
	if (x->known)
		return x->lo != 0;
	if (x->lo > 0 || x->hi < 0)
		return 1;
	if (x->lo == 0 && x->hi == 0)
		return 0;
	return -1;
}

/* Makes x known as v (its pick and cost are then never read). */
static inline void lz_set(struct lz_ent *x, double v)
{
	x->lo = x->hi = v;
	x->known = true;
}

/* The bounds of an open binary operation's value (a, b as the meta reads them). */
static void lz_bounds(enum meta_opcode op, const struct lz_ent *a, const struct lz_ent *b,
                      double *lo, double *hi)
{
	double l = -INFINITY, h = INFINITY;
	switch (op) {
	case MOP_ADD:
		l = a->lo + b->lo;
		h = a->hi + b->hi;
		break;
	case MOP_SUB:
		l = a->lo - b->hi;
		h = a->hi - b->lo;
		break;
	case MOP_AND:
	case MOP_OR:
	case MOP_GT:
	case MOP_GE:
	case MOP_LT:
	case MOP_LE:
	case MOP_EQ:
	case MOP_NE:
		l = 0;
		h = 1;
		break;
	default: break; /* MUL, DIV: unbounded */
	}
	if (isnan(l) || isnan(h)) {
		l = -INFINITY;
		h = INFINITY;
	}
	*lo = l;
	*hi = h;
}

/*
 * Mchain k's value or bounds, as the ops "__A __B + __C + ..." (or ||)
 * give them to meta_try(): the same additions in the same order (so the
 * same doubles), the same operands read (an || stops at its first hit),
 * the same one picked. Kept while fresh: a rule under it that settles
 * makes it stale (lazy_stale), and while it is fresh so is each sub-meta
 * it found open (it tried them), so going through it again would find the
 * same. A value once known is kept for good (LZ_KNOWN: lazy_stale passes
 * over it), as its rules' are.
 */
static const struct lz_ent *lazy_chain(struct lazy *z, uint32_t k)
{
	const rules_t *r = z->e->r;
	struct lz_ent *s = &z->chain[k];
	if (z->fresh[r->n + k])
		return s;
	const struct meta_chain *ch = &r->mchain[k];
	const uint32_t *ids = &r->mchain_rules[ch->off];
	bool any = ch->op == MOP_ANY, hit = false;
	double lo = 0, hi = 0, cost = 0;
	size_t pick = SIZE_MAX;
	for (uint32_t q = 0; q < ch->n; q++) {
		size_t j = ids[q];
		bool known = z->state[j] == LZ_KNOWN;
		double v = z->val[j], c = 0;
		if (!known)
			v = lazy_peek(z, j, &known, &c);
		if (known) {
			if (any && v != 0) {
				hit = true;
				break;
			}
			lo += v;
			hi += v;
			continue;
		}
		double h = 1;
		if (r->hot[j] & RULES_HOT_MANY) {
			unsigned mh = r->v[j].maxhits;
			h = mh ? (double)mh : INFINITY;
		}
		hi += h;
		/* meta_try()'s pick for "a + b" or "a || b" both open: b if cheaper than a */
		if (pick == SIZE_MAX || c < cost)
			pick = j;
		cost += c;
	}
	if (hit)
		*s = (struct lz_ent){.lo = 1, .hi = 1, .known = true};
	else if (any && pick != SIZE_MAX)
		*s = (struct lz_ent){.lo = 0, .hi = 1, .cost = cost, .pick = pick};
	else
		*s = (struct lz_ent){
		    .lo = lo, .hi = hi, .cost = cost, .pick = pick, .known = pick == SIZE_MAX};
	z->fresh[r->n + k] = 1;
	if (s->known)
		z->state[r->n + k] = LZ_KNOWN;
	return s;
}

/*
 * The plain evaluation of a meta's program, on its stack st (*sp
 * entries): from the start up to the end, or, lazily (z given), up to the
 * first operand read that is not settled (one that a short-circuit skips
 * is not read). Returns where it stopped: ru->nprog at the end, SIZE_MAX
 * for a program the stack cannot run (its value is 0). meta_run() is it
 * to the end; meta_try() goes on from where it stops with bounds. Inlined
 * into both, so that meta_run()'s copy loses the lazy tests (z is NULL
 * there): a call per meta, on every message, measured 0.7% more.
 */
static inline __attribute__((always_inline)) size_t
meta_plain(const rules_t *r, const struct meta_code *ru, const double *val, struct lazy *z,
           double *st, int *sp)
{
	int n = 0;
	size_t i = 0;
	for (; i < ru->nprog; i++) {
		const struct meta_op *op = &ru->prog[i];
		if (op->op == MOP_NUM || op->op == MOP_RULE || op->op >= MOP_SUM) {
			double v;
			if (op->op == MOP_RULE) {
				if (z != NULL && z->state[op->arg] != LZ_KNOWN)
					break;
				v = val[op->arg];
			} else if (op->op == MOP_NUM) {
				v = ru->nums[op->arg];
			} else if (z != NULL) {
				const struct lz_ent *x = lazy_chain(z, op->arg);
				if (!x->known)
					break;
				v = x->lo;
			} else {
				v = meta_chain_value(r, op->arg, val);
			}
			if (n == RULES_META_STACK)
				return SIZE_MAX;
			st[n++] = v;
		} else if (op->op == MOP_NOT || op->op == MOP_NEG) {
			if (n < 1)
				return SIZE_MAX;
			st[n - 1] = op->op == MOP_NOT ? (st[n - 1] == 0) : -st[n - 1];
		} else {
			if (n < 2)
				return SIZE_MAX;
			double b = st[--n];
			st[n - 1] = meta_binop(op->op, st[n - 1], b);
		}
		if (op->jump != 0)
			i = meta_skip(ru, i, &st[n - 1]);
	}
	*sp = n;
	return i;
}

static double meta_run(const rules_t *r, const struct meta_code *ru, const double *val)
{
	double st[RULES_META_STACK];
	int sp = 0;
	size_t i = meta_plain(r, ru, val, NULL, st, &sp);
	return i == ru->nprog && sp == 1 ? st[0] : 0;
}

/* A comparison that the bounds decide: 1 or 0, else -1. */
static int lz_compare(enum meta_opcode op, const struct lz_ent *a, const struct lz_ent *b)
{
	switch (op) {
	case MOP_GT: return a->lo > b->hi ? 1 : a->hi <= b->lo ? 0 : -1;
	case MOP_GE: return a->lo >= b->hi ? 1 : a->hi < b->lo ? 0 : -1;
	case MOP_LT: return a->hi < b->lo ? 1 : a->lo >= b->hi ? 0 : -1;
	case MOP_LE: return a->hi <= b->lo ? 1 : a->lo > b->hi ? 0 : -1;
	case MOP_EQ: return (a->hi < b->lo || b->hi < a->lo) ? 0 : -1;
	case MOP_NE: return (a->hi < b->lo || b->hi < a->lo) ? 1 : -1;
	default: return -1;
	}
}

/*
 * The meta's value over what is settled (true, in *out), or false and in
 * *pick the open operand cheapest to settle among those the value turns
 * on, in *left what settling all of them would cost: the cost of pending
 * rules still to run, not of those the prefilter ruled out, so a meta over
 * sixty rules of which one is pending counts as one. Mirrors meta_run(),
 * which gives the value when everything is known.
 */
static bool meta_try(struct lazy *z, const struct meta_code *ru, double *out, size_t *pick,
                     double *left)
{
	struct lz_ent st[RULES_META_STACK];
	int sp = 0;
	*out = 0;
	*pick = SIZE_MAX;
	*left = 0;
	/*
	 * Most metas have every operand settled by the time they are tried
	 * (the prefilter rules out most sub-rules before any meta runs): then
	 * the plain evaluation (meta_plain(), meta_run()'s) gives the value, at
	 * a fraction of the cost of carrying bounds. It goes as far as it can,
	 * and the bounds take over from there with the values it computed: a
	 * long sum with one operand open is added up plainly up to it.
	 */
	double pst[RULES_META_STACK];
	size_t i0 = meta_plain(z->e->r, ru, z->val, z, pst, &sp);
	if (i0 == SIZE_MAX)
		return true;
	if (i0 == ru->nprog) {
		*out = sp == 1 ? pst[0] : 0;
		return true;
	}
	for (int k = 0; k < sp; k++)
		lz_set(&st[k], pst[k]);
	for (size_t i = i0; i < ru->nprog; i++) {
		const struct meta_op *op = &ru->prog[i];
		if (op->op == MOP_NUM || op->op == MOP_RULE || op->op >= MOP_SUM) {
			if (sp == RULES_META_STACK)
				return true;
			struct lz_ent *x = &st[sp++];
			if (op->op == MOP_NUM) {
				lz_set(x, ru->nums[op->arg]);
			} else if (op->op >= MOP_SUM) {
				*x = *lazy_chain(z, op->arg);
			} else if (z->state[op->arg] == LZ_KNOWN) {
				lz_set(x, z->val[op->arg]); /* most operands: no call */
			} else {
				bool known;
				double cost = 0;
				double v = lazy_peek(z, op->arg, &known, &cost);
				if (known) {
					lz_set(x, v);
				} else {
					double hi = 1;
					if (z->e->r->hot[op->arg] & RULES_HOT_MANY) {
						/* match_spans() and match_text() stop at maxhits */
						unsigned mh = z->e->r->v[op->arg].maxhits;
						hi = mh ? (double)mh : INFINITY;
					}
					*x = (struct lz_ent){
					    .lo = 0, .hi = hi, .cost = cost, .pick = op->arg};
				}
			}
		} else if (op->op == MOP_NOT || op->op == MOP_NEG) {
			if (sp < 1)
				return true;
			struct lz_ent *x = &st[sp - 1];
			if (x->known) {
				lz_set(x, op->op == MOP_NOT ? (x->lo == 0) : -x->lo);
			} else if (op->op == MOP_NEG) {
				double lo = x->lo;
				x->lo = -x->hi;
				x->hi = -lo;
			} else {
				int t = lz_truth(x);
				if (t >= 0)
					lz_set(x, !t);
				else
					x->lo = 0, x->hi = 1;
			}
		} else {
			if (sp < 2)
				return true;
			sp--;
			struct lz_ent *a = &st[sp - 1], *b = &st[sp];
			if (a->known && b->known) {
				lz_set(a, meta_binop(op->op, a->lo, b->lo));
			} else if ((op->op == MOP_ADD || op->op == MOP_SUB) &&
			           (a->known || b->known)) {
				/*
				 * A long sum with one open operand stays open to its end: this
				 * is the general case below for that shape, without its tests
				 * (the open side's pick and cost are the sum's).
				 */
				double lo, hi;
				if (b->known) {
					double v = op->op == MOP_ADD ? b->lo : -b->lo;
					lo = a->lo + v;
					hi = a->hi + v;
				} else {
					double v = a->lo;
					lo = op->op == MOP_ADD ? v + b->lo : v - b->hi;
					hi = op->op == MOP_ADD ? v + b->hi : v - b->lo;
					a->pick = b->pick;
					a->cost = b->cost;
				}
				if (isnan(lo) || isnan(hi)) {
					lo = -INFINITY;
					hi = INFINITY;
				}
				a->lo = lo;
				a->hi = hi;
				a->known = false;
			} else {
				int d = -1;
				int ta = lz_truth(a), tb = lz_truth(b);
				/* an operand whose truth is decided no longer needs settling */
				bool na = !a->known, nb = !b->known;
				if (op->op == MOP_AND) {
					d = (ta == 0 || tb == 0)   ? 0
					    : (ta == 1 && tb == 1) ? 1
					                           : -1;
					na = ta < 0;
					nb = tb < 0;
				} else if (op->op == MOP_OR) {
					d = (ta == 1 || tb == 1)   ? 1
					    : (ta == 0 && tb == 0) ? 0
					                           : -1;
					na = ta < 0;
					nb = tb < 0;
				} else {
					d = lz_compare(op->op, a, b);
				}
				if (d >= 0) {
					lz_set(a, d);
				} else {
					size_t pk =
					    !na || (nb && b->cost < a->cost) ? b->pick : a->pick;
					double cost = (na ? a->cost : 0) + (nb ? b->cost : 0);
					lz_bounds(op->op, a, b, &a->lo, &a->hi);
					a->pick = pk;
					a->cost = cost;
					a->known = false;
				}
			}
		}
		/* a false left of && (true left of ||): the right is not looked at */
		if (ru->prog[i].jump != 0) {
			struct lz_ent *x = &st[sp - 1];
			int t = lz_truth(x);
			if (!x->known && t >= 0 &&
			    (ru->prog[ru->prog[i].jump].op == MOP_AND ? t == 0 : t == 1))
				lz_set(x, t);
			if (x->known) {
				double v = x->lo;
				i = meta_skip(ru, i, &v);
				lz_set(x, v);
			}
		}
	}
	if (sp != 1) {
		*out = 0;
		return true;
	}
	int t = lz_truth(&st[0]);
	if (st[0].known || t >= 0) {
		*out = st[0].known ? st[0].lo : t;
		return true;
	}
	*pick = st[0].pick;
	*left = st[0].cost;
	return false;
}

/*
 * Rule j was just settled: what was found of the metas over it, directly
 * or through others, no longer holds. Only those are tried again: after
 * one of __ADVANCE_FEE_2_NEW's seventy operands runs, its open sub-metas
 * that do not read that operand keep what their last try found. A meta
 * already stale stops the walk up: the metas over it went stale with it,
 * and one tried since then did not read it (a short-circuit skipped it).
 */
static void lazy_stale(struct lazy *z, size_t j)
{
	const rules_t *r = z->e->r;
	for (uint32_t k = r->lazy_parent_off[j]; k < r->lazy_parent_off[j + 1]; k++) {
		uint32_t p = r->lazy_parent[k];
		if (z->state[p] == LZ_META && z->fresh[p]) {
			z->fresh[p] = 0;
			lazy_stale(z, p);
		}
	}
}

static void lazy_run(struct lazy *z, size_t j)
{
	struct evalctx *e = z->e;
	struct rule *ru = &e->r->v[j];
	uint64_t t0 = z->timing ? thread_ns() : 0;
	e->mp = NULL;
	e->mn = 0;
	long count = ru->type == RULES_T_HEADER
	                 ? header_rule_count(e, z->m, z->mi, z->hv, ru)
	                 : match_spans(e, ru, z->vw->spans[ru->type], z->vw->nspans[ru->type],
	                               z->nodes[j], z->head[j]);
	if (z->timing) {
		uint64_t dt = thread_ns() - t0;
		atomic_fetch_add(&ru->cpu_ns, dt);
		atomic_fetch_add(&ru->evals, 1);
		z->forced_ns += dt;
	}
	z->val[j] = count > 0 ? ((ru->tflags & TF_MULTIPLE) ? (double)count : 1) : 0;
	z->state[j] = LZ_KNOWN;
	lazy_stale(z, j);
}

/* Settles rule j: runs it if pending, settles a meta's open operands until it is known. */
static double lazy_settle(struct lazy *z, size_t j)
{
	if (z->state[j] == LZ_PENDING)
		lazy_run(z, j);
	while (z->state[j] != LZ_KNOWN) {
		double v, left;
		size_t pick;
		bool decided = meta_try(z, &z->e->r->mcode[j], &v, &pick, &left);
		if (decided || pick == SIZE_MAX) {
			z->val[j] = v != 0;
			z->state[j] = LZ_KNOWN;
			/*
			 * A try decides a meta only after something under it was
			 * settled, which made the metas over it stale already; a
			 * value taken with nothing left to pick is news to them.
			 */
			if (!decided)
				lazy_stale(z, j);
		} else {
			lazy_settle(z, pick);
		}
	}
	return z->val[j];
}

/*
 * What running pending rule ri would cost on this message: its pattern's
 * cost (lazy_cost) times the bytes it would read, the spans the prefilter
 * listed or the whole view, a header rule its field's value (an estimate
 * when the value is not built yet). A header rule over a Subject costs
 * far less than a body rule of the same size over the whole body, and a
 * body rule whose literal the prefilter found in one short paragraph less
 * than one that has to read all of them.
 */
static double pending_cost(const rules_t *r, size_t ri, const struct views *vw,
                           const struct hval *hv, const struct pf_result *pf)
{
	const struct rule *ru = &r->v[ri];
	size_t bytes = 0;
	if (ru->type == RULES_T_HEADER) {
		const struct hval *v = &hv[ru->hkey];
		bytes = v->done ? v->n : RULES_LAZY_FIELD_BYTES;
	} else if (pf != NULL && pf->want[ri] == PF_LISTED) {
		for (uint32_t h = pf->head[ri]; h != 0; h = pf->nodes[h - 1].next)
			bytes += vw->spans[ru->type][pf->nodes[h - 1].span].n;
	} else {
		bytes = vw->whole[ru->type].n;
	}
	return r->lazy_cost[ri] * (1.0 + (double)bytes / RULES_LAZY_COST_BYTES);
}

/*
 * deadline_ms bounds the wait for the DNS tests' answers; *late gets the
 * lookups that had none by then.
 */
static int eval_all(const rules_t *r, msg_t *m, const mime_t *mi, hits_t *h, unsigned flags,
                    long deadline_ms, unsigned *late)
{
	/* first: the DNS tests' start already matches a rules file's pattern (HashBL's bodies) */
	struct rules_tls *t = tls_take(r);
	/* DNS lookups first, so they are answered while the regex rules run */
	struct rules_evalenv ee;
	rules_eval_env_init(&ee, r, m, mi);
	ee.h = h;
	if (r->dns != NULL)
		rules_eval_dns_begin(&ee, r->dns, deadline_ms);
	struct evalctx e = {.r = r, .t = t, .a = msg_arena(m), .flags = flags, .ee = &ee};
	arena_t *a = e.a;
	double *val = arena_zalloc(a, (r->n ? r->n : 1) * sizeof(double));
	struct hval *hv = arena_zalloc(a, (r->nhkeys ? r->nhkeys : 1) * sizeof(*hv));
	struct views vw;
	memset(&vw, 0, sizeof(vw));
	struct pf_result pf = {.a = a};
	bool pf_on = r->pf != NULL && !(flags & RULES_EVAL_NO_PREFILTER);
	if (pf_on) {
		pf.want = arena_alloc(a, r->n ? r->n : 1);
		pf.head = arena_alloc(a, (r->n ? r->n : 1) * sizeof(uint32_t));
		pf.tail = arena_alloc(a, (r->n ? r->n : 1) * sizeof(uint32_t));
	}
	if (r->ntags)
		e.capval = arena_zalloc(a, r->ntags * sizeof(char *));
	bool timing = (flags & RULES_EVAL_TIMING) != 0;
	struct lazy z = {
	    .e = &e, .m = m, .mi = mi, .hv = hv, .vw = &vw, .val = val, .timing = timing};
	bool lazy = !(flags & (RULES_EVAL_EAGER | RULES_EVAL_NO_PREFILTER));
	if (lazy) {
		size_t n = r->n ? r->n : 1;
		z.state = arena_zalloc(a, n + r->nmchain);
		z.nodes = arena_alloc(a, n * sizeof(*z.nodes));
		z.head = arena_alloc(a, n * sizeof(*z.head));
		z.pcost = arena_alloc(a, n * sizeof(*z.pcost));
		z.fresh = arena_zalloc(a, n + r->nmchain);
		z.left = arena_alloc(a, n * sizeof(*z.left));
		z.chain = arena_alloc(a, (r->nmchain ? r->nmchain : 1) * sizeof(*z.chain));
		/* a chain is stale until gone through (lazy_stale() passes over known nodes) */
		memset(z.state + r->n, LZ_META, r->nmchain);
	}
	const char **detail = (flags & RULES_EVAL_EXPLAIN)
	                          ? arena_zalloc(a, (r->n ? r->n : 1) * sizeof(char *))
	                          : NULL;

	for (int type = 0; type < RULES_T_META; type++) {
		if (r->norder[type] == 0)
			continue;
		if (type != RULES_T_HEADER && type != RULES_T_MIMEHEADER) {
			uint64_t t0 = timing ? thread_ns() : 0;
			build_view(&e, &vw, type, m, mi);
			if (timing) {
				uint64_t t1 = thread_ns();
				atomic_fetch_add(&r->view_ns[2 * type], t1 - t0);
				t0 = t1;
			}
			if (pf_on) {
				size_t ns = vw.nspans[type];
				size_t *off = arena_alloc(a, (ns ? ns : 1) * sizeof(size_t));
				size_t *len = arena_alloc(a, (ns ? ns : 1) * sizeof(size_t));
				for (size_t k = 0; k < ns; k++) {
					off[k] = (size_t)(vw.spans[type][k].p - vw.whole[type].p);
					len[k] = vw.spans[type][k].n;
				}
				pf.span_off = off;
				pf.span_len = len;
				pf.nspans = ns;
				pf.nnodes = 0;
				memset(pf.want, PF_SKIP, r->n);
				rules_prefilter_scan(r, type, vw.whole[type].p, vw.whole[type].n,
				                     &pf);
				if (timing)
					atomic_fetch_add(&r->view_ns[2 * type + 1],
					                 thread_ns() - t0);
			}
		}
		if (type == RULES_T_HEADER && pf_on && r->hkey_lit != NULL)
			header_prefilter(&e, m, mi, hv, &pf);
		bool pf_active = pf_on && type != RULES_T_MIMEHEADER &&
		                 (type != RULES_T_HEADER || r->hkey_lit != NULL);
		const struct pf_node *kept = NULL; /* this view's span lists, for pending rules */
		for (size_t oi = 0; oi < r->norder[type]; oi++) {
			size_t ri = r->order[type][oi];
			struct rule *ru = &r->v[ri];
			if (pf_active && pf.want[ri] == PF_SKIP)
				continue;
			if (lazy && (r->hot[ri] & RULES_HOT_DEFERRED)) {
				z.state[ri] = LZ_PENDING;
				z.nodes[ri] = NULL;
				z.head[ri] = 0;
				if (pf_active && pf.want[ri] == PF_LISTED &&
				    type != RULES_T_HEADER) {
					/* the next view's scan reuses pf.nodes */
					if (kept == NULL)
						kept = arena_memdup(a, pf.nodes,
						                    (pf.nnodes ? pf.nnodes : 1) *
						                        sizeof(*pf.nodes));
					z.nodes[ri] = kept;
					z.head[ri] = pf.head[ri];
				}
				z.pcost[ri] = pending_cost(r, ri, &vw, hv, pf_active ? &pf : NULL);
				continue;
			}
			uint64_t t0 = timing ? thread_ns() : 0;
			long count = 0;
			e.mp = NULL;
			e.mn = 0;
			if (type == RULES_T_HEADER) {
				count = header_rule_count(&e, m, mi, hv, ru);
			} else if (type == RULES_T_MIMEHEADER) {
				size_t np = mi ? mime_part_count(mi) : 0;
				for (size_t pi = 0; pi < np && count >= 0; pi++) {
					struct hval *v = mime_field(&e, mi, hv, ru->hkey, pi);
					if (v == NULL)
						continue;
					long c = field_rule_count(&e, ru, v);
					if (c < 0) {
						count = -1;
						break;
					}
					count += c;
					if (count && !(ru->tflags & TF_MULTIPLE))
						break;
				}
			} else {
				bool listed = pf_active && pf.want[ri] == PF_LISTED;
				count =
				    match_spans(&e, ru, vw.spans[type], vw.nspans[type],
				                listed ? pf.nodes : NULL, listed ? pf.head[ri] : 0);
			}
			if (timing) {
				atomic_fetch_add(&ru->cpu_ns, thread_ns() - t0);
				atomic_fetch_add(&ru->evals, 1);
			}
			if (count > 0) {
				val[ri] = (ru->tflags & TF_MULTIPLE) ? (double)count : 1;
				if (detail && e.mp)
					detail[ri] = printable(a, e.mp, e.mn);
			}
		}
	}
	for (size_t li = 0; li < r->nlate; li++) {
		size_t ri = r->late[li];
		struct rule *ru = &r->v[ri];
		int type = ru->type;
		bool view =
		    type != RULES_T_HEADER && type != RULES_T_MIMEHEADER && type != RULES_T_META;
		if (view && !vw.built[type])
			build_view(&e, &vw, type, m, mi);
		if (view && ru->tags_needed &&
		    tag_value_missing(r, ru, e.capval, vw.whole[type].p, vw.whole[type].n))
			continue; /* no hit, and nothing compiled */
		char *pat = substitute_tags(ru->pattern, r->tags, e.capval, r->ntags);
		if (pat == NULL)
			continue; /* a tag was not captured: no hit */
		int err;
		e.ocode = late_compile(&e, ri, pat, &err);
		if (e.ocode == NULL) {
			rule_error(&e, ru, err);
			continue;
		}
		e.mp = NULL;
		long count = 0;
		if (type == RULES_T_HEADER)
			count = header_rule_count(&e, m, mi, hv, ru);
		else if (view)
			count = match_spans(&e, ru, vw.spans[type], vw.nspans[type], NULL, 0);
		e.ocode = NULL; /* the thread's cache keeps it */
		if (count > 0) {
			val[ri] = (ru->tflags & TF_MULTIPLE) ? (double)count : 1;
			if (detail && e.mp)
				detail[ri] = printable(a, e.mp, e.mn);
		}
	}
	if (r->nevals) {
		for (size_t k = 0; k < r->nevals; k++) {
			size_t ri = r->evals[k];
			struct rule *ru = &r->v[ri];
			uint64_t t0 = timing ? thread_ns() : 0;
			ee.detail = NULL;
			long count = ru->evaldef->fn(&ee, ru);
			if (timing) {
				atomic_fetch_add(&ru->cpu_ns, thread_ns() - t0);
				atomic_fetch_add(&ru->evals, 1);
			}
			if (count > 0)
				val[ri] = (ru->tflags & TF_MULTIPLE) ? (double)count : 1;
			if (count > 0 && detail && ee.detail)
				detail[ri] = ee.detail;
		}
	}
	*late = rules_eval_dns_end(&ee);
	/*
	 * Metas that read no deferred rule, even through other metas (cost
	 * 0), are computed as they come. The others wait to be settled, marked
	 * so as they come: in topological order a meta's operands come first.
	 */
	for (size_t oi = 0; oi < r->norder[RULES_T_META]; oi++) {
		size_t ri = r->order[RULES_T_META][oi];
		bool settle = lazy && (r->hot[ri] & RULES_HOT_LAZY);
		if (settle)
			z.state[ri] = LZ_META;
		if (settle && !(r->hot[ri] & RULES_HOT_REPORT))
			continue; /* settled when a scored meta needs it */
		uint64_t t0 = timing ? thread_ns() : 0, forced0 = z.forced_ns;
		val[ri] = settle ? lazy_settle(&z, ri) : meta_run(r, &r->mcode[ri], val) != 0;
		if (timing) {
			atomic_fetch_add(&r->v[ri].cpu_ns,
			                 thread_ns() - t0 - (z.forced_ns - forced0));
			atomic_fetch_add(&r->v[ri].evals, 1);
		}
	}
	/*
	 * Shortcircuit: SpamAssassin stops after the first priority at which
	 * a shortcircuit rule hit. Here every rule has run (one scan serves
	 * them all), so the rules of later priorities are dropped instead:
	 * the same hits and score, not the CPU saved.
	 */
	size_t sc_by = SIZE_MAX;
	for (size_t k = 0; k < r->nsc; k++) {
		size_t i = r->sc[k];
		if (val[i] != 0 &&
		    (sc_by == SIZE_MAX || r->v[i].sc_priority < r->v[sc_by].sc_priority))
			sc_by = i;
	}
	for (size_t i = 0; i < r->n; i++) {
		const struct rule *ru = &r->v[i];
		if (val[i] == 0 || !ru->report)
			continue;
		if (sc_by != SIZE_MAX && ru->sc_priority > r->v[sc_by].sc_priority)
			continue;
		if (rules_eval_is_auth(ru->evaldef) && hits_has(h, ru->name))
			continue;
		/* indexed by rule id: one relaxed add, no lookup, on the message path */
		atomic_fetch_add_explicit(&r->v[i].hits, 1, memory_order_relaxed);
		const char *det = detail ? detail[i] : NULL;
		if (det != NULL && (ru->tflags & TF_MULTIPLE) && val[i] > 1)
			hits_addf(h, "rules", ru->name, ru->score, ru->desc,
			          "%.0f matches, first: %s", val[i], det);
		else if (det != NULL)
			hits_addf(h, "rules", ru->name, ru->score, ru->desc, "matched: %s", det);
		else
			hits_add(h, "rules", ru->name, ru->score, ru->desc, NULL);
	}
	if (sc_by != SIZE_MAX) {
		/*
		 * As SpamAssassin 4: "on" keeps the rule's own points and marks the
		 * cut with a sign-only 0.0001; spam and ham add their scores here.
		 */
		const struct rule *ru = &r->v[sc_by];
		const char *type = ru->sc == RULES_SC_SPAM  ? "spam"
		                   : ru->sc == RULES_SC_HAM ? "ham"
		                   : ru->score < 0          ? "ham"
		                                            : "spam";
		double pts = ru->sc == RULES_SC_SPAM  ? r->sc_spam_score
		             : ru->sc == RULES_SC_HAM ? r->sc_ham_score
		             : ru->score < 0          ? -0.0001
		                                      : 0.0001;
		hits_addf(h, "rules", RULES_SHORTCIRCUIT, pts,
		          "Not all rules were run, due to a shortcircuited rule", "%s (%s)",
		          ru->name, type);
	}
	tls_give(e.t);
	return e.errors;
}

int rules_eval(const rules_t *r, msg_t *m, const mime_t *mi, hits_t *h, unsigned flags)
{
	unsigned late;
	return eval_all(r, m, mi, h, flags, dns_now_ms() + RULES_DNS_WAIT_MS, &late);
}

/* ---------------------------------------------------------------- evidence source */

static void *ev_load(conf_t *c, void *prev, const ev_env_t *env, diag_t *d)
{
	rules_opts_t o;
	if (rules_opts_read(c, &o, d) < 0)
		return NULL;
	rules_t *r = rules_load(o.paths, o.npaths, &o, d);
	/* SpamAssassin's DNS list tests ask only in the network score sets */
	if (r != NULL && env != NULL && env->dns != NULL && (r->opts.score_set & 1))
		r->dns = dns_ref(env->dns);
	return r;
}

/*
 * After fork and privilege drop: the prefilter database is read from the
 * state directory or built in the background; `sift check` and rules qa
 * (offline, short-lived) only read it - their hits are the same either way.
 */
static int ev_start(void *shared, const ev_env_t *env, diag_t *d)
{
	(void)d;
	if (!env->offline)
		rules_relays_prepare();
	return rules_prefilter_db_start(shared, env->state_dir,
	                                env->offline ? RULES_DB_CACHED : RULES_DB_BACKGROUND);
}

static void ev_release(void *shared)
{
	rules_free(shared);
}

/*
 * A rule stopped at a regex limit is counted, logged and not applied; the
 * input caused it and would cause it again, so it degrades the verdict
 * rather than failing it (see evidence.h).
 */
static ev_status_t ev_score(void *shared, void *conn, msg_t *m, const mime_t *mi, hits_t *h,
                            const ev_score_ctx_t *ctx)
{
	unsigned flags = 0;
	if (ctx->timing)
		flags |= RULES_EVAL_TIMING;
	if (ctx->explain)
		flags |= RULES_EVAL_EXPLAIN;
	unsigned late = 0;
	int errors = eval_all(shared, m, mi, h, flags, ctx->deadline_ms, &late);
	/* so that whoever wonders why a rule missed text far down a part knows */
	if (mi != NULL && (mime_flags(mi) & MIME_F_SCAN_CUT))
		hits_note(h, "rules",
		          "a text part was cut to body_part_scan_size or rawbody_part_scan_size "
		          "for the body rules");
	if (late > 0) {
		hits_note(h, "rules",
		          "%u DNS list lookup(s) of SpamAssassin's rules had no answer by "
		          "the deadline",
		          late);
		hits_set_metric(h, "rules_dns_late", late);
	}
	if (errors > 0) {
		hits_note(h, "rules", "%d rule(s) stopped at the regex match limit", errors);
		hits_set_metric(h, "rules_errors", errors);
		return EV_DEGRADED;
	}
	return late > 0 ? EV_DEGRADED : EV_OK;
}

/* Counters of this generation's rules (a reload starts them at 0: a counter reset). */
static void ev_metrics(void *shared, metrics_out_t *o)
{
	const rules_t *r = shared;
	metrics_out_family(o, "sift_rule_hits_total", "counter",
	                   "Messages each reported rule hit, since the rules were loaded.");
	for (size_t i = 0; i < r->n; i++)
		if (r->v[i].report)
			metrics_out_value(
			    o, "sift_rule_hits_total", "rule", r->v[i].name,
			    (double)atomic_load_explicit(&r->v[i].hits, memory_order_relaxed));
	metrics_out_family(
	    o, "sift_rule_errors_total", "counter",
	    "Rule evaluations stopped at a regex limit, since the rules were loaded.");
	metrics_out_value(o, "sift_rule_errors_total", NULL, NULL,
	                  (double)atomic_load(r->errors_total));
	metrics_out_family(o, "sift_rules_loaded", "gauge", "Rules in the live generation.");
	metrics_out_value(o, "sift_rules_loaded", NULL, NULL, (double)r->n);
	size_t cov;
	rules_db_state_t st = rules_prefilter_db_state(r, &cov, NULL);
	metrics_out_family(o, "sift_rules_prefilter_db_rules", "gauge",
	                   "Rules without literals the prefilter database serves (0: not yet).");
	metrics_out_value(o, "sift_rules_prefilter_db_rules", NULL, NULL,
	                  st == RULES_DB_BUILT || st == RULES_DB_LOADED ? (double)cov : 0);
}

/* SpamAssassin's SPF, DKIM and DMARC eval tests read auth's results. */
static const char *const rules_after[] = {"auth", NULL};

const evidence_ops_t rules_evidence = {
    .name = "rules",
    .after = rules_after,
    .load = ev_load,
    .start = ev_start,
    .release = ev_release,
    .score = ev_score,
    .metrics = ev_metrics,
};
