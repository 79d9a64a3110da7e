/*
 * regex_gen.h - random regular expressions of a small grammar, and every
 * match of a compiled one in a text, for the suites that check two ways
 * of matching a pattern against each other: a pattern and its ASCII form
 * (test_rules_ascii.c), the compile rules get and PCRE2's interpreter
 * (test_rules.c). One copy of the grammar, so both see the same kinds of
 * item.
 *
 * Static: each suite is one program. Not thread-safe (a generator is
 * one caller's).
 */
#ifndef SIFT_TEST_REGEX_GEN_H
#define SIFT_TEST_REGEX_GEN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

/* Every match of code in s, as "start-end," pairs (at most 64). */
static inline void regex_gen_matches(pcre2_code *code, const char *s, char *out, size_t cap)
{
	pcre2_match_data *md = pcre2_match_data_create(32, NULL);
	size_t len = strlen(s), start = 0, on = 0;
	out[0] = '\0';
	for (int k = 0; k < 64 && start <= len; k++) {
		int rc = pcre2_match(code, (PCRE2_SPTR)s, len, start, 0, md, NULL);
		if (rc < 0) {
			on += (size_t)snprintf(out + on, cap - on, "rc%d",
			                       rc == PCRE2_ERROR_NOMATCH ? 0 : rc);
			break;
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		on +=
		    (size_t)snprintf(out + on, cap - on, "%zu-%zu,", (size_t)ov[0], (size_t)ov[1]);
		start = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
	}
	pcre2_match_data_free(md);
}

/*
 * The grammar: items that need a high byte or not, classes, escapes,
 * groups of every kind, option settings, quantifiers greedy, lazy and
 * possessive, comments. A fixed seed gives the same patterns each run,
 * so a failure repeats.
 */
struct gen {
	uint64_t s;
	char buf[2048];
	size_t n;
	bool no_high; /* plain letters where an item needing a high byte would go */
};

static inline unsigned gen_pick(struct gen *g, unsigned n)
{
	g->s ^= g->s << 13; /* xorshift64 */
	g->s ^= g->s >> 7;
	g->s ^= g->s << 17;
	return (unsigned)(g->s % n);
}

static inline void gen_put(struct gen *g, const char *x)
{
	size_t l = strlen(x);
	if (g->n + l < sizeof(g->buf)) {
		memcpy(g->buf + g->n, x, l);
		g->n += l;
	}
}

#define PICK(g, list) (list)[gen_pick((g), sizeof(list) / sizeof(*(list)))]

static void gen_alt(struct gen *g, int depth);

static void gen_seq(struct gen *g, int depth)
{
	/* "\\xe9" is a high byte written as an escape; "\xe9" the byte itself */
	static const char *const plain[] = {"a", "b", "B", "x", "X", " ",    ".",
	                                    "^", "$", "{", "}", "]", "a{2,}"};
	static const char *const escapes[] = {"\\x41", "\\s", "\\w",  "\\d",   "\\b",    "\\B",
	                                      "\\W",   "\\S", "\\h",  "\\v",   "\\R",    "\\K",
	                                      "\\A",   "\\z", "\\Z",  "\\.",   "\\(",    "\\n",
	                                      "\\t",   "\\e", "\\cA", "\\012", "\\p{L}", "\\1"};
	static const char *const high[] = {"\\xe9", "\\x{e9}",    "\xe9",
	                                   "\xc9",  "\\Q\xe9\\E", "(?#c\xe9)"};
	static const char *const classes[] = {
	    "[ab]",      "[a\xe9]",         "[^b\xe9]",      "[\xe0-\xff]",      "[a-\xff]",
	    "[\\w\xe9]", "[[:alpha:]\xe9]", "[\\x00-\\x20]", "[a-c\\d\xe0-\xe9]"};
	static const char *const opts[] = {"(?i)",  "(?-i)", "(?s)",   "(?m)", "(?-s)",
	                                   "(?-m)", "(?U)",  "(?i-s)", "(?ms)"};
	static const char *const groups[] = {
	    "(?:",   "(",         "(?>",       "(?=",    "(?!", "(?i:",
	    "(?-i:", "(?<=a)(?:", "(?<!b)(?:", "(?s-i:", "(?|"};
	static const char *const quants[] = {"",      "",   "",   "",   "?",      "*",  "+", "{2}",
	                                     "{0,2}", "??", "*?", "+?", "{1,3}?", "?+", "*+"};
	unsigned n = 1 + gen_pick(g, 4);
	for (unsigned i = 0; i < n; i++) {
		unsigned k = gen_pick(g, 10);
		if (k < 6) {
			unsigned kind = gen_pick(g, 4);
			gen_put(g, kind == 0 || (kind == 2 && g->no_high) ? PICK(g, plain)
			           : kind == 1                            ? PICK(g, escapes)
			           : kind == 2                            ? PICK(g, high)
			                                                  : PICK(g, classes));
			gen_put(g, PICK(g, quants));
		} else if (k < 8 && depth < 4) {
			gen_put(g, PICK(g, groups));
			gen_alt(g, depth + 1);
			gen_put(g, ")");
			gen_put(g, PICK(g, quants));
		} else {
			gen_put(g, PICK(g, opts));
		}
	}
}

static void gen_alt(struct gen *g, int depth)
{
	unsigned n = 1 + gen_pick(g, 3);
	for (unsigned i = 0; i < n; i++) {
		if (i > 0)
			gen_put(g, "|");
		gen_seq(g, depth);
	}
}

/* The next random pattern, in g->buf, terminated. */
static inline void gen_pattern(struct gen *g)
{
	g->n = 0;
	gen_alt(g, 0);
	g->buf[g->n] = '\0';
}

/* A random text of up to 23 bytes of the letters, blanks and marks the grammar's items match. */
static inline void gen_text(struct gen *g, char out[24])
{
	static const char alphabet[] = "abxXAB \n\t.()_1{}\r\x0b\x1fzZ-";
	unsigned l = gen_pick(g, 24);
	for (unsigned j = 0; j < l; j++)
		out[j] = alphabet[gen_pick(g, sizeof(alphabet) - 1)];
	out[l] = '\0';
}

#endif
