/*
 * Tests of SpamAssassin's TextCat tests as Sift runs them
 * (rules_eval_textcat.c): check_language over a tiny profile set the test
 * writes itself (so they pass without SpamAssassin installed), its
 * directives and their errors at load, and check_body_8bits.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diag.h"
#include "hits.h"
#include "mime.h"
#include "msg.h"
#include "rules.h"
#define SIFT_UNIT_RULES
#include "unit_util.h"

/*
 * Profiles of English, German and French: the 60 most frequent n-grams of
 * a paragraph in each, written for this test, in SpamAssassin's format
 * ("_" stands for the NUL that marks a word's edge; "0 NAME" ends a block).
 */
static const char profiles[] =
    "_\ne\nt\nh\na\nn\no\nr\n_t\ne_\nth\nhe\nd\ni\n_th\nthe\nl\n_the\nw\n_w\nhe_\n"
    "_the_\nd_\ner\ng\nr_\nthe_\n_a\ns\ner_\nk\nu\nin\ns_\nat\nb\nc\nng\non\nt_\n"
    "_we\ned\ned_\nn_\nnd\nou\nwe\n_b\ng_\ning\nke\nm\nne\nng_\nre\ny\n_o\nan\nand\n"
    "ea\n0 en\n"
    "_\ne\nn\ni\na\nr\nn_\nen\nd\nh\ns\nen_\nt\ng\nl\ne_\nr_\nu\n_d\nc\nch\nm\ner\n"
    "b\nw\n_w\nge\no\nie\nin\nnd\nte\n_a\nd_\nde\ner_\nnd_\n_di\n_s\nbe\ndi\nf\nie_\n"
    "k\n_de\n_die\n_die_\n_g\n_h\nan\ndie\ndie_\nhe\nng\nre\nun\n\303\n_b\n_ge\n_u\n0 de\n"
    "_\ne\ns\na\nn\nr\nl\ns_\nt\no\ne_\ni\nu\n_l\n\303\nd\nm\nle\np\nt_\n\251\n"
    "\303\251\n_le\nc\n_p\nes\nes_\non\nou\n_d\n_m\nr_\nv\nai\nan\nre\nus\n_e\ng\n"
    "le_\nnt\nus_\n\251_\n\303\251_\n_a\n_le_\n_s\nar\nen\ner\nous\nous_\n_les\n"
    "_les_\n_n\n_no\n_nou\n_nous\n'\net\n0 fr\n";

static const char english[] =
    "Subject: Re: notes from the meeting\n\n"
    "Thank you for sending the notes from the meeting yesterday. I read them on the\n"
    "train this morning and I think that we agreed on most of the important points.\n"
    "The only open question is the date of the next review, which should be after\n"
    "the holidays when everyone is back in the office. Could you ask the others\n"
    "which week would suit them best?\n";

static const char german[] =
    "Subject: Re: Notizen von der Besprechung\n"
    "Content-Type: text/plain; charset=utf-8\n\n"
    "Vielen Dank f\303\274r die Notizen von der Besprechung gestern. Ich habe sie heute\n"
    "Morgen im Zug gelesen und denke, dass wir uns bei den meisten wichtigen Punkten\n"
    "einig waren. Die einzige offene Frage ist der Termin der n\303\244chsten Runde, die\n"
    "nach den Ferien stattfinden sollte, wenn alle wieder im B\303\274ro sind. K\303\266nntest\n"
    "du die anderen fragen, welche Woche ihnen am besten passt?\n";

static const char french[] =
    "Subject: Re: notes de la r\303\251union\n"
    "Content-Type: text/plain; charset=utf-8\n\n"
    "Merci pour les notes de la r\303\251union d'hier. Je les ai lues ce matin dans le\n"
    "train et je pense que nous sommes d'accord sur la plupart des points\n"
    "importants. La seule question ouverte est la date de la prochaine revue, qui\n"
    "devrait avoir lieu apr\303\250s les vacances, quand tout le monde sera de retour au\n"
    "bureau. Pourrais-tu demander aux autres quelle semaine leur conviendrait le mieux ?\n";

/* Russian: two-byte UTF-8 letters, so runs of far more than eight 8-bit bytes */
static const char russian[] =
    "Subject: \320\262\320\276\320\277\321\200\320\276\321\201\n"
    "Content-Type: text/plain; charset=utf-8\n\n"
    "\320\227\320\264\321\200\320\260\320\262\321\201\321\202\320\262\321\203\320\271\321"
    "\202\320\265, \320\264\321\200\321\203\320\267\321\214\321\217!\n";

#define RULES                                                                                      \
	"body UNWANTED_LANGUAGE_BODY eval:check_language()\n"                                      \
	"body BODY_8BITS eval:check_body_8bits()\n"

static char dir[UNIT_DIR_MAX];

/* A rules directory: t.cf holding text, and the profiles as "languages" when with_profiles. */
static void make_dir(const char *text, bool with_profiles)
{
	unit_mkdtemp(dir, sizeof(dir), "test_textcat");
	char path[UNIT_PATH_MAX];
	snprintf(path, sizeof(path), "%s/t.cf", dir);
	FILE *fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fputs(text, fp);
	fclose(fp);
	if (!with_profiles)
		return;
	snprintf(path, sizeof(path), "%s/languages", dir);
	fp = fopen(path, "wb");
	cr_assert_not_null(fp);
	for (const char *p = profiles; *p; p++)
		fputc(*p == '_' ? '\0' : *p, fp);
	fclose(fp);
}

static void remove_dir(void)
{
	char path[UNIT_PATH_MAX];
	snprintf(path, sizeof(path), "%s/t.cf", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/languages", dir);
	unlink(path);
	rmdir(dir);
}

/* Loads text from a directory with (or without) the profiles; d, when given, keeps the diagnostics.
 */
static rules_t *load_dir(const char *text, bool with_profiles, diag_t *d)
{
	make_dir(text, with_profiles);
	diag_t *own = d ? d : diag_new();
	const char *paths[] = {dir};
	rules_t *r = rules_load(paths, 1, NULL, own);
	if (r == NULL)
		diag_print(own, stderr, 1);
	if (d == NULL)
		diag_free(own);
	remove_dir();
	return r;
}

static rules_t *load(const char *text)
{
	rules_t *r = load_dir(text, true, NULL);
	cr_assert_not_null(r, "rules failed to load");
	return r;
}

/* ---------------------------------------------------------------- check_language */

Test(rules_textcat, a_body_in_an_ok_language_does_not_hit)
{
	rules_t *r = load(RULES "ok_languages en\n");
	cr_assert_not(unit_rules_hits(r, english, "UNWANTED_LANGUAGE_BODY"));
	rules_free(r);
}

Test(rules_textcat, a_body_in_another_language_hits)
{
	rules_t *r = load(RULES "ok_languages en\n");
	cr_assert(unit_rules_hits(r, german, "UNWANTED_LANGUAGE_BODY"), "German");
	cr_assert(unit_rules_hits(r, french, "UNWANTED_LANGUAGE_BODY"), "French");
	rules_free(r);
	r = load(RULES "ok_languages de\n");
	cr_assert(unit_rules_hits(r, english, "UNWANTED_LANGUAGE_BODY"),
	          "English when only German is ok");
	cr_assert_not(unit_rules_hits(r, german, "UNWANTED_LANGUAGE_BODY"));
	rules_free(r);
}

Test(rules_textcat, any_ok_language_of_several_will_do_and_the_last_line_wins)
{
	rules_t *r = load(RULES "ok_languages de\nok_languages en fr\n");
	cr_assert_not(unit_rules_hits(r, english, "UNWANTED_LANGUAGE_BODY"));
	cr_assert_not(unit_rules_hits(r, french, "UNWANTED_LANGUAGE_BODY"));
	cr_assert(unit_rules_hits(r, german, "UNWANTED_LANGUAGE_BODY"));
	rules_free(r);
}

Test(rules_textcat, all_languages_ok_never_hits_and_reads_no_profiles)
{
	rules_t *r = load(RULES);
	cr_assert_not(unit_rules_hits(r, german, "UNWANTED_LANGUAGE_BODY"), "default: all");
	rules_free(r);
	r = load(RULES "ok_languages en all\n");
	cr_assert_not(unit_rules_hits(r, german, "UNWANTED_LANGUAGE_BODY"),
	              "all anywhere in the list");
	rules_free(r);
	/* with every language ok there is nothing to guess: a missing file is no matter */
	diag_t *d = diag_new();
	r = load_dir(RULES "ok_languages all\n", false, d);
	cr_assert_not_null(r);
	cr_assert_eq(diag_warnings(d), 0, "no warning without a languages file");
	rules_free(r);
	diag_free(d);
}

Test(rules_textcat, short_text_is_not_guessed)
{
	rules_t *r = load(RULES "ok_languages en\n");
	cr_assert_not(
	    unit_rules_hits(r,
	                    "Subject: kurz\n\nDas ist nur ein sehr kurzer Text auf Deutsch, "
	                    "viel zu kurz, um die Sprache sicher zu erkennen.\n",
	                    "UNWANTED_LANGUAGE_BODY"));
	rules_free(r);
}

Test(rules_textcat, a_missing_languages_file_warns_at_load_and_never_hits)
{
	diag_t *d = diag_new();
	rules_t *r = load_dir(RULES "ok_languages en\n", false, d);
	cr_assert_not_null(r, "a warning, not an error");
	cr_assert(
	    unit_diag_has(d, "t.cf:1: warning: rule UNWANTED_LANGUAGE_BODY: no languages file"));
	cr_assert_eq(diag_warnings(d), 1);
	cr_assert_not(unit_rules_hits(r, german, "UNWANTED_LANGUAGE_BODY"));
	rules_free(r);
	diag_free(d);
}

Test(rules_textcat, an_ok_language_without_a_profile_warns)
{
	diag_t *d = diag_new();
	rules_t *r = load_dir(RULES "ok_languages en it\n", true, d);
	cr_assert_not_null(r);
	cr_assert(unit_diag_has(d, "t.cf:3: warning: ok_languages:"));
	cr_assert(unit_diag_has(d, "no profile for 'it'"));
	rules_free(r);
	diag_free(d);
}

Test(rules_textcat, inactive_languages_are_not_compared_unless_ok)
{
	rules_t *r = load(RULES "ok_languages fr\n");
	cr_assert(unit_rules_hits(r, german, "UNWANTED_LANGUAGE_BODY"), "German is German");
	rules_free(r);
	/* German and English not compared: French is all that is left, and ok */
	r = load(RULES "ok_languages fr\ninactive_languages de en\n");
	cr_assert_not(unit_rules_hits(r, german, "UNWANTED_LANGUAGE_BODY"));
	rules_free(r);
	/* listed as inactive but ok: compared after all */
	r = load(RULES "ok_languages de\ninactive_languages de\n");
	cr_assert_not(unit_rules_hits(r, german, "UNWANTED_LANGUAGE_BODY"), "de is ok: compared");
	rules_free(r);
}

Test(rules_textcat, too_many_languages_alike_is_no_guess)
{
	/* an acceptable score of 100 takes every language: three guesses */
	rules_t *r = load(RULES "ok_languages it\ntextcat_acceptable_score 100\n");
	cr_assert(unit_rules_hits(r, german, "UNWANTED_LANGUAGE_BODY"), "three guesses, none ok");
	rules_free(r);
	r = load(RULES "ok_languages it\ntextcat_acceptable_score 100\ntextcat_max_languages 2\n");
	cr_assert_not(unit_rules_hits(r, german, "UNWANTED_LANGUAGE_BODY"),
	              "more than two: unknown");
	rules_free(r);
}

Test(rules_textcat, fewer_ngrams_still_guess)
{
	rules_t *r =
	    load(RULES "ok_languages en\ntextcat_max_ngrams 50\ntextcat_optimal_ngrams 1\n");
	cr_assert(unit_rules_hits(r, german, "UNWANTED_LANGUAGE_BODY"));
	cr_assert_not(unit_rules_hits(r, english, "UNWANTED_LANGUAGE_BODY"));
	rules_free(r);
}

Test(rules_textcat, links_and_addresses_do_not_count_as_text)
{
	/* an English text padded out with links and addresses is still too short */
	rules_t *r = load(RULES "ok_languages de\n");
	cr_assert_not(unit_rules_hits(
	    r,
	    "Subject: links\n\nPlease see the page and write to us:\n"
	    "https://www.example.com/"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
	    "someone.with.a.long.name@example.com another.long.name@example.org\n"
	    "www.example.net/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n"
	    "Thank you for the help with the garden.\n",
	    "UNWANTED_LANGUAGE_BODY"));
	rules_free(r);
}

/* ---------------------------------------------------------------- directives */

static void load_fails_with(const char *text, const char *where, const char *what)
{
	make_dir(text, true);
	diag_t *d = diag_new();
	const char *paths[] = {dir};
	rules_t *r = rules_load(paths, 1, NULL, d);
	remove_dir();
	cr_assert_null(r, "%s loaded", text);
	char want[256];
	snprintf(want, sizeof(want), "t.cf:%s: %s", where, what);
	if (!unit_diag_has(d, want))
		diag_print(d, stderr, 1);
	cr_assert(unit_diag_has(d, want), "expected '%s'", want);
	diag_free(d);
}

Test(rules_textcat, bad_values_fail_the_load_at_their_line)
{
	load_fails_with(RULES "ok_languages\n", "3", "ok_languages: missing value");
	load_fails_with(RULES "ok_languages en EN\n", "3",
	                "ok_languages: 'EN' is no language code");
	load_fails_with(RULES "ok_languages english\n", "3",
	                "ok_languages: 'english' is no language code");
	load_fails_with(RULES "inactive_languages all\n", "3",
	                "inactive_languages: 'all' is no language code");
	load_fails_with(RULES "inactive_languages\n", "3", "inactive_languages: missing value");
	load_fails_with(RULES "textcat_max_languages 0\n", "3",
	                "textcat_max_languages: expected a whole number from 1");
	load_fails_with(RULES "textcat_max_languages 1.5\n", "3",
	                "textcat_max_languages: expected a whole number");
	load_fails_with(RULES "textcat_max_ngrams -4\n", "3",
	                "textcat_max_ngrams: expected a whole number from 1");
	load_fails_with(RULES "textcat_max_ngrams lots\n", "3", "textcat_max_ngrams: expected");
	load_fails_with(RULES "textcat_max_ngrams 99999999999\n", "3",
	                "textcat_max_ngrams: expected");
	load_fails_with(RULES "textcat_optimal_ngrams x\n", "3",
	                "textcat_optimal_ngrams: expected a whole number from 0");
	load_fails_with(RULES "textcat_acceptable_score 0.5\n", "3",
	                "textcat_acceptable_score: expected a number of at least 1");
	load_fails_with(RULES "textcat_acceptable_score 1e3\n", "3",
	                "textcat_acceptable_score: expected");
	load_fails_with(RULES "textcat_acceptable_score\n", "3",
	                "textcat_acceptable_score: missing value");
}

Test(rules_textcat, good_values_load)
{
	rules_t *r = load(RULES "ok_languages en zh.big5 sco\ninactive_languages bs cy\n"
	                        "textcat_max_languages 2\ntextcat_optimal_ngrams 0\n"
	                        "textcat_max_ngrams 300.\ntextcat_acceptable_score 1.05\n");
	rules_free(r);
}

/* SpamAssassin's stock block: read as the TextCat plugin's, the directive taken */
Test(rules_textcat, the_textcat_plugin_block_is_read)
{
	diag_t *d = diag_new();
	rules_t *r = load_dir("ifplugin Mail::SpamAssassin::Plugin::TextCat\n" RULES
	                      "ok_languages en\nendif\n",
	                      true, d);
	cr_assert_not_null(r);
	cr_assert_eq(diag_warnings(d), 0);
	cr_assert(unit_rules_hits(r, french, "UNWANTED_LANGUAGE_BODY"));
	rules_free(r);
	diag_free(d);
}

/* ---------------------------------------------------------------- check_body_8bits */

Test(rules_textcat, body_8bits_hits_on_eight_8bit_bytes_in_a_row)
{
	rules_t *r = load(RULES "ok_languages en\n");
	cr_assert(unit_rules_hits(r, russian, "BODY_8BITS"));
	cr_assert_not(unit_rules_hits(r, english, "BODY_8BITS"), "ASCII");
	cr_assert_not(unit_rules_hits(r, german, "BODY_8BITS"), "umlauts one at a time");
	rules_free(r);
}

Test(rules_textcat, body_8bits_never_hits_with_all_or_an_8bit_language_ok)
{
	rules_t *r = load(RULES);
	cr_assert_not(unit_rules_hits(r, russian, "BODY_8BITS"), "default: all");
	rules_free(r);
	r = load(RULES "ok_languages all\n");
	cr_assert_not(unit_rules_hits(r, russian, "BODY_8BITS"));
	rules_free(r);
	r = load(RULES "ok_languages en ru\n");
	cr_assert_not(unit_rules_hits(r, russian, "BODY_8BITS"),
	              "Russian is written in 8-bit bytes");
	rules_free(r);
	r = load(RULES "ok_languages de ja\n");
	cr_assert_not(unit_rules_hits(r, russian, "BODY_8BITS"), "so is Japanese");
	rules_free(r);
}

/* the plugin reads ok_languages here, not ok_locales, as its code does */
Test(rules_textcat, body_8bits_follows_ok_languages_not_ok_locales)
{
	rules_t *r = load(RULES "ok_locales en\n");
	cr_assert_not(unit_rules_hits(r, russian, "BODY_8BITS"));
	rules_free(r);
	r = load(RULES "ok_locales all\nok_languages en\n");
	cr_assert(unit_rules_hits(r, russian, "BODY_8BITS"));
	rules_free(r);
}

/* it needs no profiles: a missing languages file changes nothing */
Test(rules_textcat, body_8bits_needs_no_languages_file)
{
	rules_t *r =
	    load_dir("body BODY_8BITS eval:check_body_8bits()\nok_languages en\n", false, NULL);
	cr_assert_not_null(r);
	cr_assert(unit_rules_hits(r, russian, "BODY_8BITS"));
	rules_free(r);
}
