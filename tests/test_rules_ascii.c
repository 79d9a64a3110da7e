/*
 * test_rules_ascii.c - a pattern's ASCII form (rules_ascii.c): what it
 * drops, what it refuses, and that it matches pure-ASCII text exactly as
 * the full pattern does, match by match.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "hits.h"
#include "mime.h"
#include "msg.h"
#include "rules.h"
#include "regex_gen.h"
#include "rules_int.h"

static char *reduce(const char *pat, uint32_t opts)
{
	return rules_ascii_reduce(pat, strlen(pat), opts, rules_latin1_tables());
}

static void expect(const char *pat, const char *want)
{
	char *got = reduce(pat, 0);
	if (want == NULL)
		cr_assert_null(got, "%s: reduced to %s", pat, got ? got : "");
	else {
		cr_assert_not_null(got, "%s: not reduced", pat);
		cr_assert_str_eq(got, want, "%s", pat);
	}
	free(got);
}

Test(rules_ascii, drops_what_needs_a_high_byte)
{
	expect("caf(?:\xe9|e)", "caf(?:e)");
	expect("[a\xe9]x", "[a]x");
	expect("a\xe9?b", "ab");
	expect("a(?:\xc3[\\x80-\\x85])*b", "ab");
	expect("[a-\xff]", "[a-\\x7f]");
	expect("x|\\xe9|y", "x|y");
	expect("\\x{e9}z|z", "z");
	expect("(?i)v(?:[a@\xe0]|\xc3\xa0)gra", "(?i)v(?:[a\\x40])gra");
	/* a negative assertion stays as written: it means the same on ASCII text */
	expect("(?!\xe9)a|\xe9", "(?!\xe9)a");
	/* nothing can match: a pattern that never does */
	expect("\xe9", "(?!)");
	expect("[\xe0-\xff]+", "(?!)");
	/* what a dropped branch sets holds in the branches after it, in its group */
	expect("(?i)d\xe9|x", "(?i)x");
	expect("(?:a\xe9(?i)|b)c", "(?:(?i)b)c");
	expect("(?:\xe9(?i)|\xe9(?-i)|b)", "(?:(?i)(?-i)b)");
	expect("(?:(?i)\xe9|b)|c", "(?:(?i)b)|c");
}

Test(rules_ascii, leaves_alone_what_it_does_not_follow)
{
	expect("abc", NULL);                  /* nothing to drop */
	expect("[^\xe9]a|\xe9", "[^\\xe9]a"); /* a negated class keeps every byte */
	expect("(a)\\1|\xe9", NULL);          /* backreference */
	expect("(?<n>a)|\xe9", NULL);         /* named group */
	expect("\\Qa\xe9\\E", NULL);
	expect("(?x) a | \xe9", NULL); /* extended mode */
	expect("(?(1)a|b)\xe9", NULL); /* conditional */
	expect("(*UTF)a|\xe9", NULL);
	expect("(a|\xe9", NULL); /* unbalanced: PCRE2 refuses it anyway */
	/* what PCRE2 10.42's auto-possessification gets wrong: "x?" is made possessive */
	expect("x?(?:\xe9)?+x", NULL);
	expect("\\s*(?>(?:X)*?)^|\xe9", NULL);
	expect("a\\R*\\s|\xe9", NULL);
	expect("a\xe9?(?#c)?b", NULL); /* the quantifier is the high byte's */
	char *x = rules_ascii_reduce("a|\xe9", 3, PCRE2_EXTENDED, rules_latin1_tables());
	cr_assert_null(x);
}

static pcre2_code *compile(const char *pat, uint32_t opts)
{
	int err;
	PCRE2_SIZE off;
	pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
	pcre2_set_character_tables(cc, rules_latin1_tables());
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &off, cc);
	pcre2_compile_context_free(cc);
	return c;
}

/* Asserts that pat (compiled: full) and its ASCII form (small) match text alike. */
static void same_matches(pcre2_code *full, pcre2_code *small, const char *text, const char *pat,
                         uint32_t opts, const char *form)
{
	char m1[1024], m2[1024];
	regex_gen_matches(full, text, m1, sizeof(m1));
	regex_gen_matches(small, text, m2, sizeof(m2));
	cr_assert_str_eq(m1, m2, "%s (options %#x) on \"%s\": %s vs %s (%s)", pat, opts, text, m1,
	                 m2, form);
}

/* SpamAssassin-style look-alike letters, as its ReplaceTags rules spell them */
#define TAG_A "(?:[aA\\@\xc0\xc1\xe0\xe1]|[\\xc3][\\x80-\\x85\\xa0-\\xa5]|&\\#(?:0?64|x40);)"
#define TAG_I "(?:[iIl|!1\xcc\xec]|[\\xc3][\\x8c-\\x8f\\xac-\\xaf]|\\xc4\\xb1)"
#define TAG_O "(?:[oO0\xd2\xf2]|[\\xc3][\\x92-\\x96\\xb2-\\xb6]|\\(\\))"

static const char *const patterns[] = {
    "(?:^|\\s)(?:v" TAG_I TAG_A "gr" TAG_A "|c" TAG_I TAG_A "l" TAG_I "s)(?:\\s|$)",
    "\\bfr" TAG_O "m\\s+(?:[a-z\xe9]+\\s+){1,3}" TAG_A "t\\b",
    "(?:" TAG_A "|\xe9){2,}x?",
    "[\xe0-\xff]?pay\\s?(?:me|\xe9\xe9)?\\b",
    "^(?:[^\\s\xe9]+\\s){3}" TAG_O,
    "(?=\\w+" TAG_O ")\\w+|\xe9",
    "(?<=\\s)" TAG_I "s\\b|\xe9",
    "a(?>b|\xe9"
    "c|bc)c",
    "x*?(?:\xe9|y)+?z|\\xe9+",
    "[[:alpha:]\xe9]+\\d",
    "[\\w\xe9-]+@[\\w.\xe9]+",
    "(?:\\x{e9}|e)[\\x{c0}-\\x{ff}a-c]{0,2}",
    "(?s)a.{0,5}(?:\xe9|b)",
    "(?m)^\\s*(?:your|y" TAG_O "ur)\\s(?:p" TAG_A "ssw" TAG_O "rd|\xe9)$",
    /* an option set in a dropped branch still holds in the branches after it */
    "(?i)d\xe9"
    "ar|x\\s",
    "(?:a\xe9(?i)|b)c|(?s-i)\xe9|Y.Z",
    "(?-i)(?:[\xe0-\xff](?i)(?-s)|\xe9(?s)|a.B)",
    "x?(?:\xe9)?+x",
};

static const char *const subjects[] = {
    "buy viagra now",
    "cheap v1@gra and c1al1s",
    "v1&#64;gra!",
    "from our friends at home",
    "pay me 100",
    "paymee",
    "aaaa x",
    "one two three 0ops",
    "abcc abc ac",
    "xxxyz yyz",
    "word5 other9",
    "me-you@example.com",
    "eac ebb ec",
    "a1234b",
    "  your passw0rd\nyour p@ssword",
    "Your PASSWORD",
    "(){}[]|\\^$.*+?",
    "X bC BC bc y\nz A\nb",
    "",
};

Test(rules_ascii, the_same_matches_on_ascii_text)
{
	static const uint32_t optsets[] = {0, PCRE2_CASELESS, PCRE2_MULTILINE | PCRE2_DOTALL,
	                                   PCRE2_CASELESS | PCRE2_MULTILINE};
	size_t reduced = 0;
	for (size_t p = 0; p < sizeof(patterns) / sizeof(*patterns); p++) {
		for (size_t o = 0; o < sizeof(optsets) / sizeof(*optsets); o++) {
			char *a = reduce(patterns[p], optsets[o]);
			if (a == NULL)
				continue;
			reduced++;
			pcre2_code *full = compile(patterns[p], optsets[o]);
			pcre2_code *small = compile(a, optsets[o]);
			cr_assert_not_null(full, "pattern %zu compiles", p);
			cr_assert_not_null(small, "pattern %zu: its ASCII form %s compiles", p, a);
			for (size_t s = 0; s < sizeof(subjects) / sizeof(*subjects); s++)
				same_matches(full, small, subjects[s], patterns[p], optsets[o], a);
			pcre2_code_free(full);
			pcre2_code_free(small);
			free(a);
		}
	}
	cr_assert_geq(reduced, 40, "most of the patterns have an ASCII form (%zu)", reduced);
}

/*
 * Random patterns from a small grammar (items that need a high byte or
 * not, classes, escapes, groups of every kind, option settings,
 * quantifiers greedy, lazy and possessive, comments), each matched in
 * both forms on fixed and random ASCII texts. The hand-picked patterns
 * above missed what this finds: options a dropped branch took along,
 * PCRE2 10.42's auto-possessification bugs around possessive and atomic
 * groups and \R, a quantifier after a comment. A fixed seed, so a
 * failure repeats.
 */
Test(rules_ascii, random_patterns_match_alike)
{
	struct gen g = {.s = 0x9e3779b97f4a7c15u};
	static const char *const fixed[] = {"a b B x X",
	                                    "ab\nAB\nxX.",
	                                    "  aaa bbb\n\nXxX a1 b2",
	                                    "(x)ba.BX A",
	                                    "",
	                                    "\x01{}]\t\r\n\x1b-_ABC1_\n"};
	static const uint32_t optsets[] = {0, PCRE2_CASELESS, PCRE2_MULTILINE | PCRE2_DOTALL,
	                                   PCRE2_CASELESS | PCRE2_MULTILINE | PCRE2_UNGREEDY};
	size_t reduced = 0;
	for (int k = 0; k < 20000; k++) {
		gen_pattern(&g);
		char random[3][24];
		for (int t = 0; t < 3; t++)
			gen_text(&g, random[t]);
		for (size_t o = 0; o < sizeof(optsets) / sizeof(*optsets); o++) {
			char *a = reduce(g.buf, optsets[o]);
			if (a == NULL)
				continue;
			pcre2_code *full = compile(g.buf, optsets[o]);
			pcre2_code *small = full ? compile(a, optsets[o]) : NULL;
			cr_assert(full == NULL || small != NULL, "%s: its ASCII form %s compiles",
			          g.buf, a);
			for (size_t t = 0; full != NULL && t < 9; t++)
				same_matches(full, small, t < 6 ? fixed[t] : random[t - 6], g.buf,
				             optsets[o], a);
			reduced += full != NULL;
			pcre2_code_free(full);
			pcre2_code_free(small);
			free(a);
		}
	}
	cr_assert_geq(reduced, 5000, "enough patterns have an ASCII form (%zu)", reduced);
}

static const mime_limits_t limits = {.max_depth = 20, .max_parts = 500, .max_text_bytes = 4u << 20};

static bool hit_msg(rules_t *r, const char *subject, const char *body)
{
	char raw[4096];
	snprintf(raw, sizeof(raw), "From: a@example.com\nSubject: %s\n\n%s\n", subject, body);
	msg_t *m = msg_new(1 << 20);
	msg_parse_raw(m, raw, strlen(raw));
	mime_t *mi = mime_parse(m, &limits);
	hits_t *h = hits_new(msg_arena(m));
	rules_eval(r, m, mi, h, RULES_EVAL_EXPLAIN);
	bool v = hits_has(h, "FUZZY_PILL");
	msg_free(m);
	return v;
}

static bool hit(rules_t *r, const char *body)
{
	return hit_msg(r, "x", body);
}

/* the same letters as SpamAssassin's own tags spell them, with their many UTF-8 look-alikes */
#define UTF8_MORE                                                                                  \
	"|[\\xce][\\x8a\\x99\\xaa\\xaf\\xb9]|[\\xd0][\\x86\\x87\\x98\\xb8]|[\\xd3][\\x80\\x8f]"    \
	"|[\\xe1](?:[\\xb8][\\xac-\\xaf]|[\\xbb][\\x88-\\x8b])|[\\xf0][\\x9d](?:[\\x90]["          \
	"\\x88\\xa2]|[\\x91][\\x96\\xb0])"
#define BIG_A                                                                                      \
	"(?:[aA\\@\xc0\xc1\xe0\xe1]|[\\xc3][\\x80-\\x85\\xa0-\\xa5]|&\\#(?:0?64|x40);" UTF8_MORE ")"
#define BIG_I "(?:[iIl|!1\xcc\xec]|[\\xc3][\\x8c-\\x8f\\xac-\\xaf]|\\xc4\\xb1" UTF8_MORE ")"
#define BIG_O "(?:[oO0\xd2\xf2]|[\\xc3][\\x92-\\x96\\xb2-\\xb6]|\\(\\)" UTF8_MORE ")"

/*
 * FUZZY_PILL, a rule long enough to get an ASCII form, of type what
 * ("body", "header"), on field (NULL but for a header rule).
 */
static rules_t *fuzzy_pill(const char *what, const char *field)
{
	char *text = malloc(65536);
	size_t n = (size_t)snprintf(text, 65536, "%s FUZZY_PILL %s%s/(?:^|\\s)(?:", what,
	                            field ? field : "", field ? " =~ " : "");
	/* enough words to pass the size at which a rule gets an ASCII form */
	static const char *const words[] = {"pill", "tablet", "capsule", "dose", "remedy", "cure"};
	for (int k = 0; k < 40; k++) {
		const char *w = words[k % 6];
		if (k > 0)
			text[n++] = '|';
		for (const char *c = w; *c; c++) {
			if (*c == 'i')
				n += (size_t)snprintf(text + n, 65536 - n, "%s", BIG_I);
			else if (*c == 'o')
				n += (size_t)snprintf(text + n, 65536 - n, "%s", BIG_O);
			else if (*c == 'a')
				n += (size_t)snprintf(text + n, 65536 - n, "%s", BIG_A);
			else
				text[n++] = *c;
		}
		n += (size_t)snprintf(text + n, 65536 - n, "%d", k / 6);
	}
	snprintf(text + n, 65536 - n, ")\\b/i\nscore FUZZY_PILL 1\n");
	diag_t *d = diag_new();
	rules_t *r = rules_load_text("t.cf", text, NULL, d);
	cr_assert_not_null(r, "%s", what);
	rules_stats_t st;
	rules_stats(r, &st);
	cr_assert_eq(st.ascii_forms, 1, "%s", what);
	diag_free(d);
	free(text);
	return r;
}

/* A long rule gets its ASCII form; each paragraph is matched with the form that fits it. */
Test(rules_ascii, a_long_rule_runs_either_form)
{
	rules_t *r = fuzzy_pill("body", NULL);
	cr_assert(hit(r, "buy p1ll0 today"), "ASCII text, ASCII form");
	cr_assert(hit(r, "buy P!LL3 today"));
	cr_assert_not(hit(r, "buy pills today"));
	cr_assert(hit(r, "buy p\xc4\xb1ll0 today"), "a UTF-8 look-alike: the full form");
	cr_assert(hit(r, "caf\xc3\xa9 \xe2\x80\x94 t@blet2 here"),
	          "a high byte elsewhere: the full form");
	cr_assert_not(hit(r, "caf\xc3\xa9 tablet here"));
	rules_free(r);
}

/*
 * Whether a piece of text is ASCII is known per piece (a paragraph, a
 * raw chunk, a field's value), once a message: a high byte in one
 * paragraph does not send another to the full form, nor the reverse.
 */
Test(rules_ascii, each_piece_runs_the_form_that_fits_it)
{
	rules_t *r = fuzzy_pill("body", NULL);
	cr_assert(hit(r, "caf\xc3\xa9 here\n\nbuy p1ll0 today"), "ASCII after non-ASCII");
	cr_assert(hit(r, "buy it\n\ncaf\xc3\xa9 p\xc4\xb1ll0 today"), "a look-alike after ASCII");
	cr_assert_not(hit(r, "caf\xc3\xa9 here\n\nbuy pills today"));
	cr_assert(hit_msg(r, "caf\xc3\xa9", "p\xc4\xb1ll0\n\nbuy it\n\nP!LL3 now"),
	          "every paragraph read");
	rules_free(r);

	r = fuzzy_pill("rawbody", NULL);
	cr_assert(hit(r, "caf\xc3\xa9 p\xc4\xb1ll0 today"));
	cr_assert(hit(r, "buy P!LL3 today"));
	cr_assert_not(hit(r, "caf\xc3\xa9 pills today"));
	rules_free(r);

	r = fuzzy_pill("header", "Subject");
	cr_assert(hit_msg(r, "buy p1ll0 today", "caf\xc3\xa9"), "the value is ASCII");
	cr_assert(hit_msg(r, "caf\xc3\xa9 p\xc4\xb1ll0", "buy it"));
	cr_assert_not(hit_msg(r, "caf\xc3\xa9 pills", "p1ll0"));
	rules_free(r);
}
