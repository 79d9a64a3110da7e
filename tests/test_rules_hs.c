/*
 * test_rules_hs.c - the prefilter database (rules_hs.c): the rules without
 * literals, prefiltered by Vectorscan, hit exactly as without it; the
 * database is cached in the state directory, read back, and a damaged
 * cache file is refused and rebuilt.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef HAVE_VECTORSCAN
#include <hs/hs.h>
#endif

#include "diag.h"
#include "hits.h"
#include "mime.h"
#include "msg.h"
#include "rules.h"
#include "rules_runs.h"
#include "rules_int.h"
#include "unit_util.h"

static const mime_limits_t limits = {.max_depth = 20, .max_parts = 500, .max_text_bytes = 4u << 20};

#define PLAIN(subject, body)                                                                       \
	"From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: " subject                  \
	"\nDate: Mon, 2 Jan 2023 10:00:00 +0000\nMessage-ID: <1@example.com>\n\n" body

/*
 * Rules with no literal of 3 bytes every match must contain, so the
 * literal prefilter runs them everywhere and the database takes them:
 * anchors, \b, classes, Latin-1 letters under /i (PCRE2 folds them here,
 * Vectorscan does not: the view is UTF-8, so "\xe3" finds the lead byte
 * C3 of "\xc3\x89", an E with acute accent), negated classes, counted repeats, lookarounds,
 * a back-reference, "multiple".
 */
static const char hs_rules[] = "body H_ANCHOR /^\\w+ \\d\\d?$/\n"
                               "body H_START /^[A-Z]{2}\\b/\n"
                               "body H_WORDB /\\b\\d{3}\\b/\n"
                               "rawbody H_LATIN /\\xe3\\x89t|[\\xe0-\\xe2]\\xa3x/i\n"
                               "rawbody H_LATIN_RAW /ca\xe3\x89s?\\b/i\n"
                               "body H_NEG /q[^\\xe9a-z]q/i\n"
                               "body H_ALT /(?:ab|cd|ef)\\d/\n"
                               "body H_DOT /a.b.c/s\n"
                               "body __H_MULTI /\\d[a-f]/\n"
                               "tflags __H_MULTI multiple\n"
                               "meta H_MULTI3 __H_MULTI >= 3\n"
                               "rawbody H_RAW_START /^<\\w+>/m\n"
                               "rawbody H_RAW_END /\\d\\d$/\n"
                               "uri H_URI /^\\w+\\W+\\d+\\./\n"
                               "uri H_URI_END /\\.(?:ru|cn)$/\n"
                               "full H_FULL /^X-\\w+: \\d+$/m\n"
                               "full H_FULL_LOOK /(?<=\\s)a\\d(?!\\d)/\n"
                               "rawbody H_NEGLOOK /(?<!\\xe9)\\xe3\\xa3x/i\n"
                               "rawbody H_BACKREF /(\\w)\\1/\n"
                               "body H_LIT /free money/i\n";

static const char *const hs_msgs[] = {
    PLAIN("ab 12", "hello 7\n\nXY there 123 and 1234\n"),
    PLAIN("x", "\xc9T\xc9 and \xe3x ca\xc9S, q\xc9q qzq q!q\n\nab1 a\nb\nc 1a 2b 3c\n"),
    PLAIN("x", "nothing here at all\n"),
    "From: a@b.example\nSubject: s\nX-Count: 42\nMIME-Version: 1.0\n"
    "Content-Type: text/html\n\n<b>bold</b> a1 <a href=\"http://127.0.0.1/x\">x</a>\n"
    "<a href=\"http://example.ru\">y</a> 99\n",
    PLAIN("free money", "CAF\xc9 FREE MONEY\n"),
};

#define NMSGS (sizeof(hs_msgs) / sizeof(hs_msgs[0]))

/* Hit names as one comma-separated string. */
static char *hit_list(rules_t *r, const char *raw, unsigned flags)
{
	msg_t *m = msg_new(1 << 20);
	msg_parse_raw(m, raw, strlen(raw));
	mime_t *mi = mime_parse(m, &limits);
	hits_t *h = hits_new(msg_arena(m));
	rules_eval(r, m, mi, h, flags);
	hits_sort(h);
	size_t cap = 64;
	for (size_t i = 0; i < hits_count(h); i++)
		cap += strlen(hits_at(h, i)->name) + 1;
	char *s = calloc(1, cap);
	for (size_t i = 0; i < hits_count(h); i++) {
		strcat(s, hits_at(h, i)->name);
		strcat(s, ",");
	}
	msg_free(m);
	return s;
}

/*
 * The rules of text. unchecked: Vectorscan's dispatched scanner even where
 * it misses its probes (regex_prefilter_engine = vectorscan), else as a
 * site loads them, with a scanner that finds their matches, or without
 * Vectorscan (rules_hs_engine()).
 */
static rules_t *load_text(const char *text, const rules_opts_t *o)
{
	diag_t *d = diag_new();
	rules_t *r = rules_load_text("hs.cf", text, o, d);
	if (r == NULL)
		diag_print(d, stderr, 1);
	diag_free(d);
	cr_assert_not_null(r);
	return r;
}

static rules_t *load_with(const char *text, bool unchecked)
{
	rules_opts_t o;
	rules_opts_default(&o);
	o.vectorscan_unchecked = unchecked;
	o.prefilter_db_rawbody = true; /* the machinery on raw bytes too */
	return load_text(text, &o);
}

static rules_t *load_checked(const char *text)
{
	return load_with(text, false);
}

/*
 * The database built even where Vectorscan misses its probes (Debian 12's
 * 5.4.9 on AVX-512): these tests are of the database's machinery, on short
 * texts, where it finds what it should.
 */
static rules_t *load(const char *text)
{
	return load_with(text, true);
}

/*
 * plant at byte pos of a body line of len bytes of 'a': the hits are want,
 * with the prefilter and without.
 */
static void assert_planted(rules_t *r, const char *plant, size_t len, size_t pos, const char *want)
{
	char raw[512];
	int n = snprintf(raw, sizeof(raw), "From: a@example.com\n\n");
	cr_assert_lt((size_t)n + len + 2, sizeof(raw));
	memset(raw + n, 'a', len);
	memcpy(raw + n + pos, plant, strlen(plant));
	strcpy(raw + n + len, "\n");
	char *a = hit_list(r, raw, 0);
	char *b = hit_list(r, raw, RULES_EVAL_NO_PREFILTER);
	cr_assert_str_eq(b, want, "%s in %zu bytes at %zu without the prefilter", plant, len, pos);
	cr_assert_str_eq(a, b, "%s in %zu bytes at %zu", plant, len, pos);
	free(a);
	free(b);
}

static bool have_db(const rules_t *r)
{
	size_t covered;
	return rules_prefilter_db_state(r, &covered, NULL) != RULES_DB_OFF && covered > 0;
}

/* The rules of text, for a test of the database: skipped where there can be none. */
static rules_t *load_for_db(const char *text)
{
	rules_t *r = load(text);
	if (!have_db(r)) {
		rules_free(r);
		cr_skip_test("built without Vectorscan");
	}
	return r;
}

/* The hits of every message, with the prefilter (and the database if built) and without. */
static void assert_same_hits(rules_t *r, const char *const *msgs, size_t n, size_t *nhits)
{
	for (size_t i = 0; i < n; i++) {
		char *a = hit_list(r, msgs[i], 0);
		char *b = hit_list(r, msgs[i], RULES_EVAL_NO_PREFILTER);
		cr_assert_str_eq(a, b, "message %zu", i);
		if (nhits)
			*nhits += a[0] != '\0';
		free(a);
		free(b);
	}
}

/*
 * As sites load rules, only the body view has a database: the rawbody
 * view's pieces are many and short, and its scans cost more than the rule
 * runs they spared (rules_hs.c).
 */
Test(rules_hs, only_body_rules_are_in_the_database_by_default)
{
	rules_opts_t o;
	rules_opts_default(&o);
	diag_t *d = diag_new();
	rules_t *r = rules_load_text("hs.cf", "body B /x.*z/\nrawbody R /x.*z/\n", &o, d);
	diag_free(d);
	cr_assert_not_null(r);
	rules_prefilter_db_start(r, NULL, RULES_DB_NOW);
	size_t covered = 0;
	rules_db_state_t st = rules_prefilter_db_state(r, &covered, NULL);
	if (st == RULES_DB_OFF) {
		rules_free(r);
		cr_skip_test(
		    "no prefilter database here (built without Vectorscan, or none sound)");
	}
	cr_assert_eq(st, RULES_DB_BUILT);
	cr_assert_eq(covered, 1, "covered %zu: the rawbody rule is not in it", covered);
	rules_free(r);
}

/*
 * A rule the database would report on any ordinary paragraph (here /\S/,
 * and a lookbehind, which prefilter mode drops, before an "e") spares no run
 * and costs scan time: it is left out and runs on every paragraph; a
 * selective one stays in. The hits are those without the prefilter.
 */
Test(rules_hs, rules_that_match_any_paragraph_are_left_out)
{
	rules_t *r = load_for_db("body ANY_TEXT /\\S/\n"
	                         "body WIDENED /(?<=zz)e/\n"
	                         "body SELECTIVE /q[0-9]{3}q/\n");
	rules_prefilter_db_start(r, NULL, RULES_DB_NOW);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), RULES_DB_BUILT);
	cr_assert_not(rules_hs_in_db(r, "ANY_TEXT"));
	cr_assert_not(rules_hs_in_db(r, "WIDENED"));
	cr_assert(rules_hs_in_db(r, "SELECTIVE"));
	static const char *const msgs[] = {
	    PLAIN("s", "nothing but words here\n\nq123q and zze more\n"),
	    PLAIN("s", "q12q\n"),
	};
	size_t nhits = 0;
	assert_same_hits(r, msgs, 2, &nhits);
	char *a = hit_list(r, msgs[0], 0);
	cr_assert_not_null(strstr(a, "ANY_TEXT,"), "%s", a);
	cr_assert_not_null(strstr(a, "SELECTIVE,"), "%s", a);
	cr_assert_not_null(strstr(a, "WIDENED,"), "%s", a);
	free(a);
	rules_free(r);
}

/*
 * A rule the database reports on most places of ordinary prose, though not
 * on every paragraph (here after a capitalised two-letter word, which two
 * of the four hold), costs scan time for every report and spares few runs:
 * it is left out too, as SpamAssassin's __FILL_THIS_FORM_SHORT1 was, whose
 * two million reports over the test folds made a sixth of the scan.
 */
Test(rules_hs, rules_the_database_reports_densely_are_left_out)
{
	rules_t *r = load_for_db("body DENSE /[A-Z][a-z]\\b.*[a-z]/\n"
	                         "body SELECTIVE /q[0-9]{3}q/\n");
	rules_prefilter_db_start(r, NULL, RULES_DB_NOW);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), RULES_DB_BUILT);
	cr_assert_not(rules_hs_in_db(r, "DENSE"));
	cr_assert(rules_hs_in_db(r, "SELECTIVE"));
	static const char *const msgs[] = {
	    PLAIN("s", "Hi there, q123q\n"),
	    PLAIN("s", "no capitals here\n\nOk\n"),
	    PLAIN("s", "Dear all, q12q\n"),
	};
	size_t nhits = 0;
	assert_same_hits(r, msgs, 3, &nhits);
	char *a = hit_list(r, msgs[0], 0);
	cr_assert_str_eq(a, "DENSE,SELECTIVE,", "%s", a);
	free(a);
	rules_free(r);
}

/*
 * A counted group is compiled as that many copies: this one took the
 * daemon's builder 12 s and 300 MB at {200}, 22 s and 540 MB at {400}
 * (alone, 6 s and 200 MB at {140}, 2.4 s and 95 MB at {50}).
 * The rules of text, with the build's bounds given.
 */
#define COSTLY_GROUP "(?:(?:your\\s)?(?:ad+re?s+|n'a[mn]e|pho?ne?)(?:[-_.:\\s]{1,9}|\\sor\\s))"

static rules_t *load_bounded(const char *text, uint64_t memory, uint32_t cpu)
{
	rules_opts_t o;
	rules_opts_default(&o);
	o.vectorscan_unchecked = true;
	o.build_memory = memory;
	o.build_cpu = cpu;
	rules_t *r = load_text(text, &o);
	if (!have_db(r)) {
		rules_free(r);
		cr_skip_test("built without Vectorscan");
	}
	return r;
}

/* "your address: " n times: the costly rule's match */
static char *repeated_form(unsigned n)
{
	char *raw = malloc(64 + 16 * n);
	strcpy(raw, "From: a@example.com\n\nplease send ");
	for (unsigned i = 0; i < n; i++)
		strcat(raw, "your address: ");
	strcat(raw, "\n\nq123q\n");
	return raw;
}

/*
 * A pattern whose build needs more memory than regex_prefilter_build_memory
 * is left out of the database (its rule runs everywhere, and still hits);
 * the others are built. Without the bound it was built, at 100 MB.
 */
Test(rules_hs, a_pattern_whose_build_exceeds_the_memory_bound_is_left_out, .timeout = 60)
{
#if defined(__SANITIZE_ADDRESS__)
	/* its allocator keeps what is freed (quarantine): a bound measures that, not the compiler */
	cr_skip_test("under AddressSanitizer");
#endif
	rules_t *r = load_bounded("body SELECTIVE /q[0-9]{3}q/\n"
	                          "body COSTLY /" COSTLY_GROUP "{60}/i\n",
	                          16u << 20, 600);
	rules_prefilter_db_start(r, NULL, RULES_DB_NOW);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), RULES_DB_BUILT);
	cr_assert(rules_hs_in_db(r, "SELECTIVE"));
	cr_assert_not(rules_hs_in_db(r, "COSTLY"));
	char *raw = repeated_form(60);
	const char *const msgs[] = {raw, PLAIN("s", "your address: q12q\n")};
	size_t nhits = 0;
	assert_same_hits(r, msgs, 2, &nhits);
	char *a = hit_list(r, raw, 0);
	cr_assert_str_eq(a, "COSTLY,SELECTIVE,");
	free(a);
	free(raw);
	rules_free(r);
}

/*
 * The same for CPU time: one second against the six {140} takes (a body
 * piece is at most 2 KB, so the match is in one).
 */
Test(rules_hs, a_pattern_whose_build_exceeds_the_cpu_bound_is_left_out, .timeout = 60)
{
	rules_t *r = load_bounded("body SELECTIVE /q[0-9]{3}q/\n"
	                          "body COSTLY /" COSTLY_GROUP "{140}/i\n",
	                          (uint64_t)4 << 30, 1);
	rules_prefilter_db_start(r, NULL, RULES_DB_NOW);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), RULES_DB_BUILT);
	cr_assert(rules_hs_in_db(r, "SELECTIVE"));
	cr_assert_not(rules_hs_in_db(r, "COSTLY"));
	char *raw = repeated_form(140);
	char *a = hit_list(r, raw, 0);
	char *b = hit_list(r, raw, RULES_EVAL_NO_PREFILTER);
	cr_assert_str_eq(a, "COSTLY,SELECTIVE,");
	cr_assert_str_eq(a, b);
	free(a);
	free(b);
	free(raw);
	rules_free(r);
}

Test(rules_hs, the_database_never_changes_the_hits)
{
	rules_t *r = load_for_db(hs_rules);
	size_t covered;
	rules_prefilter_db_start(r, NULL, RULES_DB_NOW);
	cr_assert_eq(rules_prefilter_db_state(r, &covered, NULL), RULES_DB_BUILT);
	cr_assert_eq(covered, 13, "the rules without literals are covered (%zu)", covered);
	size_t nhits = 0;
	assert_same_hits(r, hs_msgs, NMSGS, &nhits);
	cr_assert_geq(nhits, 4, "the messages hit something");
	char *a = hit_list(r, hs_msgs[1], 0);
	cr_assert_not_null(strstr(a, "H_LATIN,"), "%s", a);
	cr_assert_not_null(strstr(a, "H_LATIN_RAW,"), "%s", a);
	cr_assert_not_null(strstr(a, "H_MULTI3,"), "%s", a);
	cr_assert_not_null(strstr(a, "H_NEGLOOK,"), "%s", a);
	free(a);
	rules_free(r);
}

/*
 * Vectorscan 5.4.9 with HS_FLAG_SINGLEMATCH (its AVX-512 path, at least)
 * reported no match past a piece's 64th byte for patterns it scans as one
 * byte: each rule below then never ran where its only match lay late in a
 * paragraph, and missed. Every byte position of a 200-byte paragraph.
 */
Test(rules_hs, a_match_anywhere_in_a_long_piece_is_reported)
{
	rules_t *r = load_checked("body ONE_BYTE /Y/\nrawbody ONE_BYTE_RAW /Y/\n"
	                          "body DOT_STAR /x.*z/\nbody ONE_BYTE_RUN /Q+/\n");
	rules_prefilter_db_start(r, NULL, RULES_DB_NOW);
	/* a sound engine builds it; one that misses its probes none */
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL),
	             rules_hs_engine_sound() ? RULES_DB_BUILT : RULES_DB_OFF);
	static const char *const names[] = {"ONE_BYTE,ONE_BYTE_RAW,", "DOT_STAR,", "ONE_BYTE_RUN,"};
	static const char *const plants[] = {"Y", "xbz", "Q"};
	for (size_t k = 0; k < 3; k++)
		for (size_t pos = 0; pos + strlen(plants[k]) <= 200; pos++)
			assert_planted(r, plants[k], 200, pos, names[k]);
	rules_free(r);
}

#ifdef HAVE_VECTORSCAN
static int count_match(unsigned int id, unsigned long long from, unsigned long long to,
                       unsigned int flags, void *ctx)
{
	(void)id;
	(void)from;
	(void)to;
	(void)flags;
	(*(int *)ctx)++;
	return 0;
}
#endif

#ifdef HAVE_VECTORSCAN
/* The first place of a 100-byte text where scan, on /x.*z/ built for platform, misses "xbz". */
static long first_miss(hs_error_t (*scan)(const hs_database_t *, const char *, unsigned int,
                                          unsigned int, hs_scratch_t *, match_event_handler,
                                          void *),
                       const hs_platform_info_t *platform)
{
	hs_database_t *db = NULL;
	hs_compile_error_t *err = NULL;
	hs_scratch_t *sc = NULL;
	cr_assert_eq(hs_compile("x.*z", HS_FLAG_PREFILTER | HS_FLAG_ALLOWEMPTY, HS_MODE_BLOCK,
	                        platform, &db, &err),
	             HS_SUCCESS);
	cr_assert_eq(hs_alloc_scratch(db, &sc), HS_SUCCESS);
	long miss = -1;
	char buf[100];
	for (size_t pos = 0; pos + 3 <= sizeof(buf) && miss < 0; pos++) {
		memset(buf, '.', sizeof(buf));
		memcpy(buf + pos, "xbz", 3);
		int n = 0;
		scan(db, buf, sizeof(buf), 0, sc, count_match, &n);
		if (n == 0)
			miss = (long)pos;
	}
	hs_free_scratch(sc);
	hs_free_database(db);
	return miss;
}
#endif

/*
 * Where the dispatched scanner misses a match of /x.*z/ past a scan's 64th
 * byte (5.4.9 on a CPU with AVX-512; this test's own scan tells), it is
 * not the one used: another build of the scanner that finds them all
 * (AVX2 there), or none, and then no database is built. Whichever is
 * chosen finds every match here too.
 */
Test(rules_hs, a_scanner_that_misses_its_probes_is_not_used)
{
#ifndef HAVE_VECTORSCAN
	cr_skip_test("built without Vectorscan");
#else
	rules_t *r = load_checked("body X /x.*z/\n");
	const struct rules_hs_engine *e = rules_hs_engine(r);
	long miss = first_miss(hs_scan, NULL);
	if (miss >= 0)
		cr_assert(e == NULL || e->scan != hs_scan,
		          "the dispatched scanner misses \"xbz\" at %ld, and is used", miss);
	if (e != NULL) {
		cr_assert_eq(first_miss(e->scan, e->platform), -1, "%s misses", e->name);
		cr_assert(rules_hs_engine_sound());
	}
	rules_prefilter_db_start(r, NULL, RULES_DB_NOW);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL),
	             e != NULL ? RULES_DB_BUILT : RULES_DB_OFF);
	rules_free(r);
	/* forced, the dispatched one is used whatever it misses */
	r = load("body X /x.*z/\n");
	e = rules_hs_engine(r);
	cr_assert(e != NULL && e->scan == hs_scan);
	rules_free(r);
#endif
}

/*
 * Vectorscan 5.4.9's literal matcher on a CPU with AVX-512 missed literals
 * in a scan's last, partial 64-byte vector, and the rules that held them
 * did not run; where it fails its probes the literal stage uses a build of
 * the scanner that passes them (AVX2 there), or memmem.
 * Each literal at every place of a body line of 60 to 200 bytes: the hits
 * are those without the prefilter.
 */
Test(rules_hs, a_literal_anywhere_in_a_view_is_found)
{
	/* two literals in the body view: 5.4.9 took the path that missed for two */
	rules_t *r =
	    load_checked("body LIT_A /_:v: x_/\nbody LIT_C /qwv/i\nrawbody LIT_D /-_.:x/\n");
	static const char *const plants[] = {"_:v: x_", "QwV", "-_.:x"};
	static const char *const names[] = {"LIT_A,", "LIT_C,", "LIT_D,"};
	size_t tried = 0;
	for (size_t k = 0; k < 3; k++)
		for (size_t len = 60; len <= 200; len += 3)
			for (size_t pos = 0; pos + strlen(plants[k]) <= len; pos++, tried++)
				assert_planted(r, plants[k], len, pos, names[k]);
	cr_assert_gt(tried, 10000);
	rules_free(r);
}

/* Look-alike letters as SpamAssassin's ReplaceTags rules spell them: mostly UTF-8. */
#define LOOK_MORE                                                                                  \
	"|[\\xce][\\x8a\\x99\\xaa\\xaf\\xb9]|[\\xd0][\\x86\\x87\\x98\\xb8]|[\\xd3][\\x80\\x8f]"    \
	"|[\\xe1](?:[\\xb8][\\xac-\\xaf]|[\\xbb][\\x88-\\x8b])|[\\xf0][\\x9d](?:[\\x90]["          \
	"\\x88\\xa2])"
#define LOOK_A "(?:[aA\\@]|[\\xc3][\\x80-\\x85\\xa0-\\xa5]" LOOK_MORE ")"
#define LOOK_I "(?:[iIl|!1]|[\\xc3][\\x8c-\\x8f\\xac-\\xaf]|\\xc4\\xb1" LOOK_MORE ")"
#define LOOK_O "(?:[oO0]|[\\xc3][\\x92-\\x96\\xb2-\\xb6]" LOOK_MORE ")"

/*
 * A long rule with an ASCII form is in the database by that form: on a
 * paragraph with a byte above 0x7f it runs whatever the scan says, since
 * only the full pattern can tell there.
 */
Test(rules_hs, a_rule_with_an_ascii_form_is_in_the_database_by_it)
{
	rules_t *r = load_for_db("body LOOK /(?:^|\\s)(?:p" LOOK_I "ll|t" LOOK_A "blet|d" LOOK_O
	                         "se|c" LOOK_A "psule|l" LOOK_O LOOK_A "n|f" LOOK_I "x|b" LOOK_O
	                         "nus|w" LOOK_I "n|c" LOOK_O LOOK_I "n)\\d\\b/i\n");
	rules_stats_t st;
	rules_stats(r, &st);
	cr_assert_eq(st.ascii_forms, 1);
	size_t covered;
	rules_prefilter_db_start(r, NULL, RULES_DB_NOW);
	cr_assert_eq(rules_prefilter_db_state(r, &covered, NULL), RULES_DB_BUILT);
	cr_assert_eq(covered, 1);
	static const char *const msgs[] = {
	    PLAIN("x", "buy p1ll5 now\n"),        /* ASCII: the database finds it */
	    PLAIN("x", "buy pills now\n"),        /* ASCII, no hit */
	    PLAIN("x", "buy p\xc4\xb1ll5 now\n"), /* a look-alike only the full form knows */
	    PLAIN("x",
	          "caf\xc3\xa9\n\nw\xc3\xaen7 and d\xce\x8ase2\n"), /* in the second paragraph */
	    PLAIN("x", "caf\xc3\xa9 l0@n3\n"), /* ASCII look-alikes, a high byte beside */
	};
	static const bool want[] = {true, false, true, true, true};
	for (size_t i = 0; i < sizeof(msgs) / sizeof(*msgs); i++) {
		char *a = hit_list(r, msgs[i], 0);
		char *b = hit_list(r, msgs[i], RULES_EVAL_NO_PREFILTER);
		cr_assert_eq(strstr(a, "LOOK,") != NULL, want[i], "message %zu: %s / %s", i, a, b);
		free(b);
		free(a);
	}
	assert_same_hits(r, msgs, sizeof(msgs) / sizeof(*msgs), NULL);
	rules_free(r);
}

/*
 * Every byte in every class PCRE2 knows, between letters, under /i and
 * not: Vectorscan's reading must take in at least what PCRE2's does
 * (prefilter mode may only let too many rules through). The rawbody view
 * is UTF-8, so bytes >= 0x80 arrive as C2/C3 and a continuation byte,
 * which the patterns allow for: "\xe3" under /i must then find C3.
 */
Test(rules_hs, classes_and_case_folding_match_pcre2_for_every_byte)
{
	static const char *const atoms[] = {
	    "\\s",         "\\S",         "\\w",           "\\W",           "\\d",
	    "\\D",         ".",           "[[:alpha:]]",   "[[:space:]]",   "[[:punct:]]",
	    "[[:print:]]", "[[:alnum:]]", "[[:upper:]]",   "[[:lower:]]",   "[^a]",
	    "\\xc9",       "\\xe9",       "[\\xc0-\\xcf]", "[\\xe0-\\xef]", "\\x80|\\xff",
	    "[\\xd7\\xf7]"};
	size_t na = sizeof(atoms) / sizeof(atoms[0]);
	char text[8192] = "";
	for (size_t i = 0; i < na; i++)
		for (int ci = 0; ci < 2; ci++) {
			char line[128];
			snprintf(line, sizeof(line), "rawbody C%zu_%d /K(?:%s)[\\x80-\\xbf]?K/%s\n",
			         i, ci, atoms[i], ci ? "i" : "");
			strcat(text, line);
		}
	rules_t *r = load_for_db(text);
	rules_prefilter_db_start(r, NULL, RULES_DB_NOW);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), RULES_DB_BUILT);
	static char msgs[256][128];
	const char *mp[256];
	size_t n = 0;
	for (int b = 1; b < 256; b++) {
		if (b == '\n' || b == '\r')
			continue;
		snprintf(msgs[n], sizeof(msgs[n]), "Subject: x\n\nK%cK k%ck\n", b, b);
		mp[n] = msgs[n];
		n++;
	}
	size_t nhits = 0;
	assert_same_hits(r, mp, n, &nhits);
	cr_assert_gt(nhits, 200);
	rules_free(r);
}

/* ---------------------------------------------------------------- repeat gates */

/* The items rules_repeat_gate() finds in p, as "a b c", and its count; "" when there are none. */
static char *gate_of(const char *p, unsigned *min)
{
	size_t off[8], len[8];
	*min = 0;
	size_t n = rules_repeat_gate(p, strlen(p), off, len, 8, min);
	char *s = calloc(1, strlen(p) * 2 + 16);
	for (size_t k = 0; k < n; k++) {
		if (k)
			strcat(s, " ");
		strncat(s, p + off[k], len[k]);
	}
	if (n == 0)
		*min = 0;
	return s;
}

Test(rules_hs, the_repeat_gate_is_the_part_every_pass_must_match)
{
	static const struct {
		const char *pattern, *part;
		unsigned min;
	} cases[] = {
	    /* SpamAssassin's __FILL_THIS_FORM_LONG2, in small */
	    {"(?:(?:your\\s)?(?:name|address|phone)(?:\\sin\\sfull)?(?:[-_.:\\s]{1,9}|\\sor\\s)){"
	     "5}",
	     "(?:name|address|phone) (?:[-_.:\\s]{1,9}|\\sor\\s)", 5},
	    {"x(?:a(?:bc|de)+f?){3,}y", "a (?:bc|de)", 3},
	    {"(?:ab(?:cd)?efg){2,4}?", "a b e f g", 2},
	    {"(?<g>(?:one|two)\\W){3}", "(?:one|two) \\W", 3},
	    {"(?:x(?:one|two)\\W){2}+", "x (?:one|two) \\W", 2},
	    /* none */
	    {"(?:(?:one|two)\\W){1,3}", "", 0},    /* once is not a repeat */
	    {"(?:(?:one|two)\\W){3}|z", "", 0},    /* the other side needs none */
	    {"(?:(?:one|two)|\\W){3}", "", 0},     /* a pass may take either side */
	    {"(?:(?:one|two)?\\W?){3}", "", 0},    /* nothing is required */
	    {"(?:(\\w)\\1(?:one|two)){3}", "", 0}, /* back-references */
	    {"(?i)(?:(?:one|two)\\W){3}", "", 0},  /* inline options */
	    {"(?:(?:one|two)\\W){,3}", "", 0},     /* a brace PCRE2 versions read apart */
	    {"(?=(?:(?:one|two)\\W){3})", "", 0},  /* inside a lookahead */
	    {"(?:(?:one|two)\\W)*", "", 0},        /* no count */
	    {"((?:(?:one|two)\\W){3})", "", 0},    /* not at the top level */
	    {"(?:(?:one|two)\\W){3", "", 0},       /* unclosed */
	    {"[(](?:(?:one|two)\\W){3}", "(?:one|two) \\W", 3}, /* a parenthesis in a class */
	    {"\\((?:(?:one|two)\\W){3}", "(?:one|two) \\W", 3}, /* an escaped one */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned min;
		char *part = gate_of(cases[i].pattern, &min);
		cr_assert_str_eq(part, cases[i].part, "%s", cases[i].pattern);
		cr_assert_eq(min, cases[i].min, "%s: %u", cases[i].pattern, min);
		free(part);
	}
}

/*
 * A rule whose counted group repeats a part runs only on the paragraphs
 * where that part occurs as often (Vectorscan counts it), whether the
 * rule's own pattern is in the database (G_IN) or Vectorscan refuses it
 * (G_OUT: an end anchor inside), and hits exactly as without the stage.
 */
static const char gate_rules[] =
    "body G_IN /(?:(?:ad+re?s+|na[mn]e|pho?ne?)\\W+){3}/i\n"
    "body G_OUT /(?:(?:ad+re?s+|na[mn]e|pho?ne?)\\W+){3}(?:x$\\n|y)/i\n"
    "body G_ADDR /(?:(?:your\\s)?(?:ad+re?s+|na[mn]e|pho?ne?)(?:[-_.:\\s]{1,9}|\\sor\\s)){3}/i\n";

static const char *const gate_msgs[] = {
    PLAIN("x", "Name, address, phone, y\n"),
    PLAIN("x", "name address\n\nphone y\n\nname address\n"), /* two and one: no paragraph has 3 */
    PLAIN("x", "name and address and phone y\n"),            /* 3, but apart */
    PLAIN("x", "addss, addss, y\n"), /* 4 ends, but two of them 1 byte after another */
    PLAIN("x", "caf\xc3\xa9 name, address, phone, y\n"), /* a byte above 0x7f */
    PLAIN("x", "Your name: ____ address: ____ phone: ____\n"),
    PLAIN("x", "name or address or phone number, please\n"),
    PLAIN("x", "name address\n"),
    PLAIN("x", "nothing to see\n"),
};
#define NGATE_MSGS (sizeof(gate_msgs) / sizeof(gate_msgs[0]))

/* Runs of rule `name` while scoring message i (with the prefilter). */
static uint64_t runs_on(rules_t *r, const char *name, size_t i)
{
	uint64_t before = rules_runs_of(r, name);
	free(hit_list(r, gate_msgs[i], RULES_EVAL_TIMING));
	return rules_runs_of(r, name) - before;
}

Test(rules_hs, a_counted_group_runs_only_where_its_part_repeats)
{
	rules_t *r = load_for_db(gate_rules);
	/* before the database: every paragraph, as the literal stage leaves them */
	cr_assert_eq(runs_on(r, "G_OUT", 7), 1);
	rules_prefilter_db_start(r, NULL, RULES_DB_NOW);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), RULES_DB_BUILT);
	size_t nhits = 0;
	assert_same_hits(r, gate_msgs, NGATE_MSGS, &nhits);
	char *a = hit_list(r, gate_msgs[0], 0);
	cr_assert_str_eq(a, "G_IN,G_OUT,", "%s", a);
	free(a);
	a = hit_list(r, gate_msgs[4], 0);
	cr_assert_str_eq(a, "G_IN,G_OUT,", "%s", a);
	free(a);
	a = hit_list(r, gate_msgs[5], 0);
	cr_assert_str_eq(a, "G_ADDR,", "%s", a);
	free(a);
	a = hit_list(r, gate_msgs[6], 0);
	cr_assert_str_eq(a, "G_ADDR,", "%s", a);
	free(a);
	/* where the part is not there three times, neither runs */
	for (size_t i = 1; i <= 3; i += 2) {
		cr_assert_eq(runs_on(r, "G_OUT", i), 0, "G_OUT ran on message %zu", i);
		cr_assert_eq(runs_on(r, "G_IN", i), 0, "G_IN ran on message %zu", i);
	}
	cr_assert_eq(runs_on(r, "G_OUT", 7), 0);
	cr_assert_eq(runs_on(r, "G_ADDR", 7), 0);
	cr_assert_eq(runs_on(r, "G_OUT", 8), 0);
	/* and where it is, they run (and decide) */
	cr_assert_eq(runs_on(r, "G_OUT", 2), 1);
	cr_assert_eq(runs_on(r, "G_OUT", 0), 1);
	rules_free(r);
}

/* ---------------------------------------------------------------- the cache */

static char *tmpdir(void)
{
	return unit_mkdtemp_dup("sift-test-hs");
}

/* The one cache file in dir (malloc'd path), or NULL; *count says how many. */
static char *cache_file(const char *dir, size_t *count)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d);
	char *found = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "rules-hs-", 9) != 0)
			continue;
		n++;
		free(found);
		found = malloc(strlen(dir) + strlen(de->d_name) + 2);
		sprintf(found, "%s/%s", dir, de->d_name);
	}
	closedir(d);
	*count = n;
	return found;
}

static void rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

Test(rules_hs, the_database_is_cached_and_read_back_on_the_next_load)
{
	rules_t *r = load_for_db(hs_rules);
	char *dir = tmpdir();
	/* a short-lived `sift check` only reads: nothing cached yet, nothing built */
	rules_prefilter_db_start(r, dir, RULES_DB_CACHED);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), RULES_DB_PENDING);
	rules_free(r);

	r = load(hs_rules);
	rules_prefilter_db_start(r, dir, RULES_DB_NOW);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), RULES_DB_BUILT);
	rules_free(r);
	size_t count;
	char *path = cache_file(dir, &count);
	cr_assert_eq(count, 1, "one cache file, no temporary left: %zu", count);
	cr_assert_not_null(strstr(path, ".db"));

	r = load(hs_rules);
	rules_prefilter_db_start(r, dir, RULES_DB_CACHED);
	size_t bytes;
	cr_assert_eq(rules_prefilter_db_state(r, NULL, &bytes), RULES_DB_LOADED);
	cr_assert_gt(bytes, 0);
	assert_same_hits(r, hs_msgs, NMSGS, NULL);
	char buf[4096] = "";
	FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");
	rules_print_stats(r, f);
	fclose(f);
	cr_assert_not_null(strstr(buf, "prefilter database: "), "%s", buf);
	cr_assert_not_null(strstr(buf, "loaded"), "%s", buf);
	rules_free(r);

	/* other rules: another key, another file; the current one is kept */
	r = load("body OTHER /\\d[a-z]\\d/\n");
	rules_prefilter_db_start(r, dir, RULES_DB_NOW);
	rules_free(r);
	free(cache_file(dir, &count));
	cr_assert_eq(count, 2);
	free(path);
	rm_rf(dir);
	free(dir);
}

/* Loads hs_rules, starts their database from dir in mode and checks the state it reaches. */
static void start_and_expect(const char *dir, rules_db_mode_t mode, rules_db_state_t want)
{
	rules_t *r = load(hs_rules);
	rules_prefilter_db_start(r, dir, mode);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), want, "%s: mode %d", dir, (int)mode);
	rules_free(r);
}

/*
 * regex_prefilter_db_dir names a directory nobody made yet: the builder
 * makes it (one level), so the next start reads the database instead of
 * building it again. One whose parent is missing too is left alone.
 */
Test(rules_hs, a_missing_cache_directory_is_made)
{
	rules_t *r = load_for_db(hs_rules);
	char *dir = tmpdir();
	char sub[512], deep[512];
	snprintf(sub, sizeof(sub), "%s/db", dir);
	snprintf(deep, sizeof(deep), "%s/no/db", dir);
	rules_prefilter_db_start(r, sub, RULES_DB_NOW);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), RULES_DB_BUILT);
	rules_free(r);
	struct stat sb;
	cr_assert_eq(stat(sub, &sb), 0, "%s was not made", sub);
	cr_assert(S_ISDIR(sb.st_mode) && (sb.st_mode & 0007) == 0, "mode %o", (unsigned)sb.st_mode);
	size_t count;
	free(cache_file(sub, &count));
	cr_assert_eq(count, 1);
	start_and_expect(sub, RULES_DB_CACHED, RULES_DB_LOADED);

	/* built and used all the same, only not cached */
	r = load(hs_rules);
	rules_prefilter_db_start(r, deep, RULES_DB_NOW);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), RULES_DB_BUILT);
	assert_same_hits(r, hs_msgs, NMSGS, NULL);
	rules_free(r);
	cr_assert_neq(stat(deep, &sb), 0);
	rm_rf(sub);
	rm_rf(dir);
	free(dir);
}

static void damage(const char *path, int how)
{
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0);
	if (how == 0) { /* a flipped byte in the middle */
		int fd = open(path, O_RDWR);
		cr_assert_geq(fd, 0);
		unsigned char c;
		cr_assert_eq(pread(fd, &c, 1, sb.st_size / 2), 1);
		c ^= 0x5a;
		cr_assert_eq(pwrite(fd, &c, 1, sb.st_size / 2), 1);
		close(fd);
	} else if (how == 1) { /* torn: half written */
		cr_assert_eq(truncate(path, sb.st_size / 2), 0);
	} else { /* something else under that name */
		FILE *f = fopen(path, "w");
		fputs("not a database\n", f);
		fclose(f);
	}
}

Test(rules_hs, a_damaged_cache_file_is_refused_and_rebuilt)
{
	rules_t *r = load_for_db(hs_rules);
	char *dir = tmpdir();
	rules_prefilter_db_start(r, dir, RULES_DB_NOW);
	rules_free(r);
	size_t count;
	char *path = cache_file(dir, &count);
	cr_assert_eq(count, 1);
	for (int how = 0; how < 3; how++) {
		damage(path, how);
		r = load(hs_rules);
		rules_prefilter_db_start(r, dir, RULES_DB_CACHED);
		cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), RULES_DB_PENDING,
		             "damage %d was not noticed", how);
		assert_same_hits(r, hs_msgs, NMSGS, NULL);
		rules_free(r);
		/* the builder writes it afresh, and that one is read */
		start_and_expect(dir, RULES_DB_NOW, RULES_DB_BUILT);
		start_and_expect(dir, RULES_DB_CACHED, RULES_DB_LOADED);
	}
	free(path);
	rm_rf(dir);
	free(dir);
}

Test(rules_hs, background_builds_publish_and_survive_a_reload_storm)
{
	char *dir = tmpdir();
	/* rule sets freed while queued or building: the builder holds its own reference */
	for (int i = 0; i < 5; i++) {
		rules_t *r = load(hs_rules);
		if (!have_db(r)) {
			rules_free(r);
			rm_rf(dir);
			free(dir);
			cr_skip_test("built without Vectorscan");
		}
		rules_prefilter_db_start(r, dir, RULES_DB_BACKGROUND);
		rules_free(r);
	}
	rules_t *r = load(hs_rules);
	rules_prefilter_db_start(r, dir, RULES_DB_BACKGROUND);
	/* the hits are the same whether the database is there yet or not */
	assert_same_hits(r, hs_msgs, NMSGS, NULL);
	cr_assert(rules_prefilter_db_wait(r, 60000), "the background build published");
	assert_same_hits(r, hs_msgs, NMSGS, NULL);
	rules_free(r);
	r = load(hs_rules);
	rules_prefilter_db_start(r, dir, RULES_DB_CACHED);
	cr_assert_eq(rules_prefilter_db_state(r, NULL, NULL), RULES_DB_LOADED);
	rules_free(r);
	rm_rf(dir);
	free(dir);
}
