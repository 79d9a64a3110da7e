/*
 * test_bayes.c - the Bayes tokenizer, classifier maths, LMDB store
 * (concurrency, full map, a writer killed mid-learn, dump/load, expire)
 * and `sift learn` followed by scoring, end to end on tests/data/bayes/.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <lmdb.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bayes.h"
#include "hits.h"
#include "hits_check.h"
#include "unit_util.h"
#include "rules.h"
#include "verdict.h"

#define DATA TEST_DATADIR "/bayes"

static const mime_limits_t limits = {.max_depth = 20, .max_parts = 500, .max_text_bytes = 4u << 20};

static char tmpdir[UNIT_DIR_MAX];

static void make_tmpdir(void)
{
	unit_mkdtemp(tmpdir, sizeof(tmpdir), "test_bayes");
}

static void remove_tmpdir(void)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	cr_assert_not_null(fp, "%s", path);
	char *buf = malloc(1 << 20);
	*len = fread(buf, 1, (1 << 20) - 1, fp);
	buf[*len] = '\0';
	fclose(fp);
	return buf;
}

static msg_t *load_msg(const char *path, const mime_t **mi)
{
	size_t len;
	char *raw = slurp(path, &len);
	msg_t *m = msg_new(10u << 20);
	msg_parse_raw(m, raw, len);
	free(raw);
	*mi = mime_parse(m, &limits);
	return m;
}

static bool has_text(const bayes_tokens_t *t, const char *text)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->text[i] != NULL && strcmp(t->text[i], text) == 0)
			return true;
	return false;
}

/* ------------------------------------------------------------ tokenizer */

/* What the daemon does after load: start the module (its stores, threads). */
static void *ev_started(const evidence_ops_t *ops, void *shared, const ev_env_t *env, diag_t *d)
{
	if (shared != NULL && ops->start != NULL && ops->start(shared, env, d) != 0) {
		ops->release(shared);
		return NULL;
	}
	return shared;
}

Test(tokenizer, hash_is_stable_across_builds)
{
	/* Dumps move between nodes: the keys must never change silently. */
	cr_assert_eq(bayes_hash("free", 4, 0), bayes_hash("free", 4, 0));
	cr_assert_neq(bayes_hash("free", 4, 0), bayes_hash("free", 4, 1));
	cr_assert_neq(bayes_hash("free", 4, 0), bayes_hash("Free", 4, 0));
	cr_assert_eq(bayes_hash("", 0, 0), 0x9ca066f1a4ab2eeaULL, "hash(\"\") = %016llx",
	             (unsigned long long)bayes_hash("", 0, 0));
	cr_assert_eq(bayes_hash("tokenizer", 9, 42), 0x3c186734f8905416ULL, "%016llx",
	             (unsigned long long)bayes_hash("tokenizer", 9, 42));
}

Test(tokenizer, header_body_url_and_attachment_tokens)
{
	const mime_t *mi;
	msg_t *m = load_msg(DATA "/tokens.eml", &mi);
	bayes_tokens_t t;
	bayes_tokenize(m, mi, true, &t);

	const char *want[] = {
	    "s:free",
	    "s:money",
	    "s:free money",
	    "s:money now", /* RFC 2047, em dash splits */
	    "from:bob@example.com",
	    "from:d:example.com",
	    "from:w:bob",
	    "from:w:sender",
	    "to:alice@example.org",
	    "rt:d:reply.example.info",
	    "rt:d:.example.info",
	    "rcvd:mx.example.net",
	    "rcvd:.example.net",
	    "rcvd:ip:192.0.2",
	    "rcvd:with:esmtp",
	    "mid:mailer.example.com",
	    "mid:.example.com",
	    "xm:outlook",
	    "xm=outlook express",
	    "h:x-mailer",
	    "h:reply-to",
	    "click",
	    "here",
	    "click here",
	    "money!!!",
	    "$100",
	    "50%",
	    "café",
	    "quoted",
	    "u:www.spam.example",
	    "u:.spam.example",
	    "up:path",
	    "up:offer.html",
	    "ct:text/plain",
	    "cs:iso-8859-1",
	    "cte:quoted-printable",
	    "fn:invoice.zip",
	    "fx:zip",
	    "pt:application/zip",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect(has_text(&t, want[i]), "missing token \"%s\"", want[i]);
	/* Case folded, punctuation trimmed, short words dropped. */
	cr_expect(!has_text(&t, "HERE"));
	cr_expect(!has_text(&t, "(free)"));
	cr_expect(has_text(&t, "for"), "3-byte words are kept");
	cr_expect(!has_text(&t, "au"), "2-byte words are dropped");
	msg_free(m);
}

Test(tokenizer, keys_sorted_distinct_and_text_free_path_identical)
{
	const mime_t *mi;
	msg_t *m = load_msg(DATA "/tokens.eml", &mi);
	bayes_tokens_t a, b;
	bayes_tokenize(m, mi, true, &a);
	bayes_tokenize(m, mi, false, &b);
	cr_assert_null(b.text);
	cr_assert_eq(a.n, b.n);
	cr_assert_gt(a.n, 50);
	for (size_t i = 0; i < a.n; i++) {
		cr_assert_eq(a.keys[i], b.keys[i]);
		if (i > 0)
			cr_assert_lt(a.keys[i - 1], a.keys[i]);
	}
	cr_assert_eq(memcmp(a.digest, b.digest, BAYES_DIGEST_BYTES), 0);
	msg_free(m);
}

Test(tokenizer, case_and_punctuation_fold_to_one_key)
{
	msg_t *m1 = msg_new(1 << 20), *m2 = msg_new(1 << 20);
	msg_parse_raw(m1, "Subject: x\n\nFREE offer, Click.\n", 31);
	msg_parse_raw(m2, "Subject: x\n\n\"free\" OFFER click?\n", 32);
	bayes_tokens_t a, b;
	bayes_tokenize(m1, NULL, false, &a);
	bayes_tokenize(m2, NULL, false, &b);
	cr_assert_eq(a.n, b.n);
	cr_assert_eq(memcmp(a.keys, b.keys, a.n * sizeof(uint64_t)), 0);
	/* Different bodies are different messages for learning. */
	cr_assert_neq(memcmp(a.digest, b.digest, BAYES_DIGEST_BYTES), 0);
	msg_free(m1);
	msg_free(m2);
}

Test(tokenizer, word_order_matters_through_bigrams)
{
	msg_t *m1 = msg_new(1 << 20), *m2 = msg_new(1 << 20);
	msg_parse_raw(m1, "\nclick here now\n", 16);
	msg_parse_raw(m2, "\nnow here click\n", 16);
	bayes_tokens_t a, b;
	bayes_tokenize(m1, NULL, true, &a);
	bayes_tokenize(m2, NULL, true, &b);
	cr_assert(has_text(&a, "click here"));
	cr_assert(!has_text(&b, "click here"));
	cr_assert(has_text(&b, "here click"));
	msg_free(m1);
	msg_free(m2);
}

Test(tokenizer, long_runs_become_skip_tokens)
{
	msg_t *m = msg_new(1 << 20);
	const char *raw = "\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9w word\n";
	msg_parse_raw(m, raw, strlen(raw));
	bayes_tokens_t t;
	bayes_tokenize(m, NULL, true, &t);
	cr_assert(has_text(&t, "skip:a50"));
	cr_assert(has_text(&t, "word"));
	msg_free(m);
}

Test(tokenizer, deep_hosts_give_the_parents_nearest_the_top)
{
	msg_t *m = msg_new(1 << 20);
	const char *raw = "From: a@l1.l2.l3.l4.l5.l6.l7.l8.l9.l10.l11.example.com\n\nword\n";
	msg_parse_raw(m, raw, strlen(raw));
	bayes_tokens_t t;
	bayes_tokenize(m, NULL, true, &t);
	cr_assert(has_text(&t, "from:d:l1.l2.l3.l4.l5.l6.l7.l8.l9.l10.l11.example.com"));
	cr_assert(has_text(&t, "from:d:.l5.l6.l7.l8.l9.l10.l11.example.com"));
	cr_assert(has_text(&t, "from:d:.example.com"));
	cr_assert(!has_text(&t, "from:d:.l4.l5.l6.l7.l8.l9.l10.l11.example.com"));
	cr_assert(!has_text(&t, "from:d:.com"));
	msg_free(m);
}

Test(tokenizer, a_huge_header_gives_a_bounded_number_of_tokens)
{
	/*
	 * 2,000 From fields of 20 addresses on 20-label domains: before the
	 * bound, 76,000 distinct tokens (about 8 MB of store once learned).
	 */
	size_t cap = 8u << 20, len = 0;
	char *raw = malloc(cap);
	for (int f = 0; f < 2000; f++) {
		len += (size_t)snprintf(raw + len, cap - len, "From:");
		for (int a = 0; a < 20; a++) {
			len += (size_t)snprintf(raw + len, cap - len, " u%d@", a);
			for (int l = 0; l < 18; l++)
				len += (size_t)snprintf(raw + len, cap - len, "x%dy%d.", f, l);
			len += (size_t)snprintf(raw + len, cap - len, "example.com,");
		}
		raw[len++] = '\n';
	}
	len += (size_t)snprintf(raw + len, cap - len, "\nbodyword\n");
	msg_t *m = msg_new(16u << 20);
	msg_parse_raw(m, raw, len);
	free(raw);
	bayes_tokens_t t;
	bayes_tokenize(m, NULL, true, &t);
	cr_assert_lt(t.n, 21000, "%zu tokens", t.n);
	cr_assert(has_text(&t, "bodyword"), "the body is still read");
	msg_free(m);
}

/* ------------------------------------------------------------ classifier */

Test(classifier, robinson_fw_by_hand)
{
	bayes_params_t p = {.robs = 1.0, .robx = 0.5, .min_dev = 0.0, .max_tokens = 0};
	/* p(w) = (3/10) / (3/10 + 1/10) = 0.75; f = (1*0.5 + 4*0.75) / (1+4) = 0.7 */
	cr_assert_float_eq(bayes_token_prob(&p, 3, 1, 10, 10), 0.7, 1e-12);
	/* Unequal corpora: p = (2/4)/(2/4 + 2/16) = 0.8; f = (0.5 + 4*0.8)/5 = 0.74 */
	cr_assert_float_eq(bayes_token_prob(&p, 2, 2, 4, 16), 0.74, 1e-12);
	/* Never seen: x. */
	cr_assert_float_eq(bayes_token_prob(&p, 0, 0, 10, 10), 0.5, 1e-12);
}

Test(classifier, chi_square_tail_by_hand)
{
	cr_assert_float_eq(bayes_chi2q(2.0, 2), exp(-1.0), 1e-12);
	cr_assert_float_eq(bayes_chi2q(4.0, 4), 3.0 * exp(-2.0), 1e-12);
	cr_assert_float_eq(bayes_chi2q(6.0, 6), exp(-3.0) * (1 + 3 + 4.5), 1e-12);
	cr_assert_float_eq(bayes_chi2q(0.0, 10), 1.0, 1e-12);
	/* The log-space branch joins the direct one without a step. */
	double below = bayes_chi2q(1399.98, 1400), above = bayes_chi2q(1400.02, 1400);
	cr_assert(below > above && below - above < 1e-3, "%g %g", below, above);
	/* Large degrees of freedom: Q(v | v) is just under one half. */
	double q = bayes_chi2q(4000.0, 4000);
	cr_assert(q > 0.48 && q < 0.5, "%g", q);
}

Test(classifier, fisher_combination_by_hand)
{
	/* Qs = Q(-2 ln(0.1*0.8), 4) = 0.08 (1 + ln 12.5), S = 1 - Qs
	 * Qh = Q(-2 ln(0.9*0.2), 4) = 0.18 (1 - ln 0.18), H = 1 - Qh
	 * z = (ln Qh - ln Qs) / 2^e * 2/3; P = 1 / (1 + e^(-k z)) */
	bayes_params_t p;
	bayes_params_default(&p);
	p.fisher_exponent = 0.5;
	p.fisher_scale = 3.0;
	double fw[] = {0.9, 0.2};
	bayes_result_t r;
	double qs = 0.08 * (1 + log(12.5)), qh = 0.18 * (1 - log(0.18));
	double z = (log(qh) - log(qs)) / sqrt(2.0) * 2.0 / 3.0;
	double got = bayes_combine(&p, fw, 2, &r);
	cr_assert_float_eq(r.spamminess, 1 - qs, 1e-12);
	cr_assert_float_eq(r.hamminess, 1 - qh, 1e-12);
	cr_assert_float_eq(r.log_odds, z, 1e-12);
	cr_assert_float_eq(got, 1 / (1 + exp(-3 * z)), 1e-12);
	/* The same by the numbers: Qs = 0.282058, Qh = 0.488664. */
	cr_assert_float_eq(qs, 0.282058, 1e-6);
	cr_assert_float_eq(qh, 0.488664, 1e-6);
	cr_assert_float_eq(got, 1 / (1 + exp(-3 * 0.259065)), 1e-6);
	cr_assert_float_eq(bayes_combine(&p, fw, 0, NULL), 0.5, 1e-12);
	/* Symmetry: mirrored f(w) give the mirrored probability. */
	double mirror[] = {0.1, 0.8};
	cr_assert_float_eq(bayes_combine(&p, mirror, 2, NULL), 1 - got, 1e-12);
}

Test(classifier, saturated_fisher_still_ranks)
{
	/* 300 strong tokens each way: S and H are both 1 to double precision
	 * (Fisher's I would be 0.5 for both messages), yet the first leans
	 * clearly to spam and the second to ham. */
	bayes_params_t p;
	bayes_params_default(&p);
	double a[600], b[600];
	for (int i = 0; i < 600; i++) {
		a[i] = i < 300 ? 0.99 : 0.02;
		b[i] = i < 300 ? 0.98 : 0.01;
	}
	bayes_result_t ra, rb;
	double pa = bayes_combine(&p, a, 600, &ra), pb = bayes_combine(&p, b, 600, &rb);
	cr_assert_float_eq(ra.spamminess, 1.0, 1e-12);
	cr_assert_float_eq(ra.hamminess, 1.0, 1e-12);
	cr_assert_gt(pa, 0.6, "%g", pa);
	cr_assert_lt(pb, 0.4, "%g", pb);
	cr_assert_gt(ra.log_odds, 0.0);
	cr_assert_lt(rb.log_odds, 0.0);
}

Test(classifier, dependence_exponent_tempers_long_messages)
{
	/* Ten copies of the same evidence are not ten times the evidence: with
	 * e = 1 the log-odds stay about the same per token, with e = 0.85
	 * they grow by about 10^0.15, far less than Fisher's tails do. */
	bayes_params_t p;
	bayes_params_default(&p);
	double one[4] = {0.99, 0.97, 0.05, 0.9}, ten[40];
	for (int i = 0; i < 40; i++)
		ten[i] = one[i % 4];
	bayes_result_t r1, r10;
	p.fisher_exponent = 1.0;
	bayes_combine(&p, one, 4, &r1);
	bayes_combine(&p, ten, 40, &r10);
	double ratio1 = r10.log_odds / r1.log_odds;
	p.fisher_exponent = 0.85;
	bayes_combine(&p, one, 4, &r1);
	bayes_combine(&p, ten, 40, &r10);
	double ratio85 = r10.log_odds / r1.log_odds;
	cr_assert_float_eq(ratio85, ratio1 * pow(10.0, 0.15), 1e-9);
	cr_assert(ratio1 > 0.5 && ratio1 < 2.0, "%g", ratio1);
	cr_assert_gt(r10.log_odds, r1.log_odds);
}

Test(classifier, more_strong_tokens_never_lower_the_probability)
{
	/* One token gives half its logit; each further token of the same
	 * strength moves P further the same way (Fisher's tails alone would
	 * make one token count more than ten). */
	bayes_params_t p;
	bayes_params_default(&p);
	static double f[300];
	const double strong[] = {0.99, 0.96, 0.04, 0.01};
	for (size_t v = 0; v < 4; v++) {
		double prev = 0.0;
		for (size_t n = 1; n <= 300; n++) {
			for (size_t i = 0; i < n; i++)
				f[i] = strong[v];
			bayes_result_t r;
			bayes_combine(&p, f, n, &r);
			if (n == 1)
				cr_assert_float_eq(r.log_odds, log(strong[v] / (1 - strong[v])) / 2,
				                   1e-9);
			else
				cr_assert_geq(fabs(r.log_odds), fabs(prev), "f %g, n %zu: %g < %g",
				              strong[v], n, fabs(r.log_odds), fabs(prev));
			prev = r.log_odds;
		}
	}
}

Test(classifier, min_dev_and_max_tokens_select_the_strongest)
{
	bayes_params_t p;
	bayes_params_default(&p);
	p.robs = 1.0;
	p.robx = 0.5;
	p.min_dev = 0.1;
	p.max_tokens = 1;
	bayes_totals_t tot = {10, 10, BAYES_TOKENIZER_VERSION, 0, {0}};
	/* f = 0.7 (used), f = 0.5 (neutral: dropped), 9 spam 0 ham: f = 0.95 (strongest) */
	bayes_counts_t c[] = {{3, 1, 0, 0}, {1, 1, 0, 0}, {9, 0, 0, 0}};
	double fw[3];
	bayes_result_t r;
	double got = bayes_classify(&p, c, 3, &tot, NULL, fw, &r);
	cr_assert_eq(r.used, 1);
	cr_assert_float_eq(fw[0], 0.7, 1e-12);
	cr_assert_float_eq(fw[1], 0.5, 1e-12);
	cr_assert_float_eq(fw[2], 0.95, 1e-12);
	double only[] = {0.95};
	cr_assert_float_eq(got, bayes_combine(&p, only, 1, NULL), 1e-12);
	cr_assert_gt(got, 0.5);
}

/* ------------------------------------------------------------ store */

static bayes_learn_item_t item(bayes_op_t op, int id, const uint64_t *keys, size_t n)
{
	bayes_learn_item_t it = {.op = op, .keys = keys, .n = n};
	memset(it.digest, 0, sizeof(it.digest));
	memcpy(it.digest, &id, sizeof(id));
	return it;
}

static bayes_store_t *open_store(const char *name, uint64_t map, unsigned flags)
{
	char path[512];
	int err;
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	bayes_store_t *s = bayes_store_open(path, map, flags, &err);
	cr_assert_not_null(s, "open %s: %s", path, bayes_strerror(err));
	return s;
}

Test(store, missing_store_is_not_created_unless_asked, .init = make_tmpdir, .fini = remove_tmpdir)
{
	char path[512];
	int err = 0;
	snprintf(path, sizeof(path), "%s/none", tmpdir);
	cr_assert_null(bayes_store_open(path, 1 << 20, 0, &err));
	cr_assert_eq(err, BAYES_ENOENT);
	struct stat st;
	cr_assert_neq(stat(path, &st), 0);
	bayes_store_t *s = bayes_store_open(path, 1 << 20, BAYES_OPEN_CREATE, &err);
	cr_assert_not_null(s);
	/* One environment per process: a second open is the same store, by
	 * any spelling of its path. */
	cr_assert_eq(bayes_store_open(path, 1 << 20, 0, &err), s);
	strcat(path, "/");
	cr_assert_eq(bayes_store_open(path, 1 << 20, 0, &err), s);
	bayes_store_unref(s);
	bayes_store_unref(s);
	bayes_store_unref(s);
}

Test(store, learn_relearn_forget, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 8 << 20, BAYES_OPEN_CREATE);
	uint64_t k1[] = {1, 2, 3}, k2[] = {3, 4};
	bayes_learn_item_t batch[] = {item(BAYES_LEARN_SPAM, 1, k1, 3),
	                              item(BAYES_LEARN_HAM, 2, k2, 2),
	                              item(BAYES_LEARN_SPAM, 1, k1, 3)}; /* a duplicate */
	bayes_apply_result_t r;
	cr_assert_eq(bayes_store_apply(s, batch, 3, &r), BAYES_OK);
	cr_assert_eq(r.learned, 2);
	cr_assert_eq(r.already, 1);

	uint64_t q[] = {3, 1, 4, 99};
	bayes_counts_t c[4];
	bayes_totals_t t;
	cr_assert_eq(bayes_store_lookup(s, q, 4, c, &t), BAYES_OK);
	cr_assert_eq(t.spam, 1);
	cr_assert_eq(t.ham, 1);
	cr_assert_eq(c[0].spam, 1);
	cr_assert_eq(c[0].ham, 1);
	cr_assert_eq(c[1].spam, 1);
	cr_assert_eq(c[2].ham, 1);
	cr_assert_eq(c[3].spam + c[3].ham, 0);
	cr_assert_eq(c[0].day, bayes_today());

	/* The same message learned as ham moves it. */
	bayes_learn_item_t move = item(BAYES_LEARN_HAM, 1, k1, 3);
	cr_assert_eq(bayes_store_apply(s, &move, 1, &r), BAYES_OK);
	cr_assert_eq(r.relearned, 1);
	bayes_store_lookup(s, q, 4, c, &t);
	cr_assert_eq(t.spam, 0);
	cr_assert_eq(t.ham, 2);
	cr_assert_eq(c[0].ham, 2);
	cr_assert_eq(c[1].spam, 0);

	/* Forgetting both leaves nothing behind. */
	bayes_learn_item_t fg[] = {item(BAYES_FORGET, 1, k1, 3), item(BAYES_FORGET, 2, k2, 2),
	                           item(BAYES_FORGET, 7, k2, 2)};
	cr_assert_eq(bayes_store_apply(s, fg, 3, &r), BAYES_OK);
	cr_assert_eq(r.forgotten, 2);
	cr_assert_eq(r.unknown, 1);
	bayes_stats_t st;
	cr_assert_eq(bayes_store_stats(s, &st), BAYES_OK);
	cr_assert_eq(st.tokens, 0);
	cr_assert_eq(st.digests, 0);
	cr_assert_eq(st.totals.spam + st.totals.ham, 0);
	bayes_store_unref(s);
}

/*
 * A lookup steps its cursor to keys estimated a few entries ahead and
 * seeks the others (bayes_store.c, seek_key): over a store of 20,000 keys
 * spread over the key space, with runs of adjacent keys, every answer of
 * one lookup of many keys (near, far, absent, past the last, out of
 * order) must be the answer of that key looked up alone.
 */
Test(store, lookup_of_many_keys_answers_as_each_key_alone, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 64 << 20, BAYES_OPEN_CREATE);
	enum { SPREAD = 20000 };
	const uint64_t step = UINT64_MAX / SPREAD;
	uint64_t *k = malloc((SPREAD + 3 * (SPREAD / 1000)) * sizeof(*k));
	size_t nk = 0;
	for (size_t i = 0; i < SPREAD; i++) {
		k[nk++] = (uint64_t)i * step;
		if (i % 1000 == 0)
			for (uint64_t d = 1; d <= 3; d++)
				k[nk++] = (uint64_t)i * step + d; /* neighbours in the store */
	}
	bayes_learn_item_t it = item(BAYES_LEARN_SPAM, 1, k, nk);
	bayes_apply_result_t r;
	cr_assert_eq(bayes_store_apply(s, &it, 1, &r), BAYES_OK);

	uint64_t q[600];
	size_t nq = 0;
	for (size_t i = 0; i < SPREAD && nq < 400; i += 97)
		q[nq++] = (uint64_t)i * step; /* far apart: sought */
	for (uint64_t d = 0; d <= 5; d++)
		q[nq++] = 5000 * step + d;       /* adjacent, then two absent: stepped */
	q[nq++] = 7000 * step + 7;               /* absent between two far keys */
	q[nq++] = (uint64_t)(SPREAD - 1) * step; /* the last key */
	q[nq++] = UINT64_MAX;                    /* past it */
	q[nq++] = 3 * step;                      /* behind the cursor */
	q[nq++] = 3 * step;                      /* the key the cursor stands on */
	q[nq++] = 3 * step + 1;                  /* just past it, absent */
	bayes_counts_t *c = calloc(nq, sizeof(*c));
	cr_assert_eq(bayes_store_lookup(s, q, nq, c, NULL), BAYES_OK);
	size_t present = 0;
	for (size_t i = 0; i < nq; i++) {
		bayes_counts_t one;
		cr_assert_eq(bayes_store_lookup(s, &q[i], 1, &one, NULL), BAYES_OK);
		cr_assert(c[i].spam == one.spam && c[i].ham == one.ham && c[i].day == one.day,
		          "key %zu (%" PRIu64 "): %u/%u in the lookup of many, %u/%u alone", i,
		          q[i], c[i].spam, c[i].ham, one.spam, one.ham);
		present += one.spam == 1;
	}
	/* 207 far keys, 4 adjacent, the last, the one behind and again */
	cr_assert_eq(present, 207 + 4 + 1 + 2, "present: %zu", present);
	free(c);
	free(k);
	bayes_store_unref(s);
}

Test(store, dump_load_round_trip_and_errors, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *a = open_store("a", 8 << 20, BAYES_OPEN_CREATE);
	uint64_t k1[] = {10, 0xffffffffffffffffULL}, k2[] = {10, 12};
	bayes_learn_item_t b[] = {item(BAYES_LEARN_SPAM, 1, k1, 2),
	                          item(BAYES_LEARN_HAM, 2, k2, 2)};
	cr_assert_eq(bayes_store_apply(a, b, 2, NULL), BAYES_OK);
	char *d1 = NULL, *d2 = NULL;
	size_t n1, n2;
	FILE *fp = open_memstream(&d1, &n1);
	cr_assert_eq(bayes_store_dump(a, fp), BAYES_OK);
	fclose(fp);
	cr_assert(strstr(d1, "totals 1 1\n") != NULL, "%s", d1);
	cr_assert(strstr(d1, "token 000000000000000a 1 1 ") != NULL, "%s", d1);
	cr_assert(strstr(d1, "token ffffffffffffffff 1 0 ") != NULL, "%s", d1);

	bayes_store_t *c = open_store("c", 8 << 20, BAYES_OPEN_CREATE);
	diag_t *d = diag_new();
	fp = fmemopen(d1, n1, "r");
	cr_assert_eq(bayes_store_load(c, fp, "dump", false, d), BAYES_OK);
	fclose(fp);
	fp = open_memstream(&d2, &n2);
	bayes_store_dump(c, fp);
	fclose(fp);
	cr_assert_str_eq(d1, d2);
	free(d2);

	/* Merging the same dump doubles the counts. */
	fp = fmemopen(d1, n1, "r");
	cr_assert_eq(bayes_store_load(c, fp, "dump", true, d), BAYES_OK);
	fclose(fp);
	uint64_t q[] = {10};
	bayes_counts_t cnt;
	bayes_totals_t t;
	bayes_store_lookup(c, q, 1, &cnt, &t);
	cr_assert_eq(cnt.spam, 2);
	cr_assert_eq(t.ham, 2);

	/* A bad line names its line and changes nothing. */
	const char *bad = "sift-bayes-dump 1 tokenizer 1\ntotals 5 5\ntoken zz 1 1 1\n";
	fp = fmemopen((void *)bad, strlen(bad), "r");
	cr_assert_eq(bayes_store_load(c, fp, "bad.dump", false, d), BAYES_EFORMAT);
	fclose(fp);
	cr_assert_eq(diag_errors(d), 1);
	cr_assert(strstr(diag_text(d, 0), "bad.dump:3:") != NULL, "%s", diag_text(d, 0));
	bayes_store_lookup(c, q, 1, &cnt, &t);
	cr_assert_eq(cnt.spam, 2);
	diag_free(d);
	free(d1);
	bayes_store_unref(a);
	bayes_store_unref(c);
}

/* Loads a dump given as text (it must load). */
static void load_text(bayes_store_t *s, const char *text, bool merge)
{
	FILE *fp = fmemopen((void *)text, strlen(text), "r");
	diag_t *d = diag_new();
	cr_assert_eq(bayes_store_load(s, fp, "dump", merge, d), BAYES_OK);
	fclose(fp);
	diag_free(d);
}

Test(store, expire_removes_only_stale_rare_tokens, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 8 << 20, BAYES_OPEN_CREATE);
	const char *dump = "sift-bayes-dump 1 tokenizer 1\ntotals 3 0\n"
	                   "token 0000000000000001 1 0 100\n"   /* stale, rare: goes */
	                   "token 0000000000000002 3 0 100\n"   /* stale, common: stays */
	                   "token 0000000000000003 1 0 1000\n"; /* recent: stays */
	load_text(s, dump, false);
	uint64_t removed = 0;
	cr_assert_eq(bayes_store_expire(s, 1010, 30, 1, &removed), BAYES_OK);
	cr_assert_eq(removed, 1);
	uint64_t q[] = {1, 2, 3};
	bayes_counts_t c[3];
	bayes_store_lookup(s, q, 3, c, NULL);
	cr_assert_eq(c[0].spam, 0);
	cr_assert_eq(c[1].spam, 3);
	cr_assert_eq(c[2].spam, 1);
	bayes_store_unref(s);
}

/* ------------------------------------------------------------ read cache */

static bayes_counts_t read_key(bayes_store_t *s, uint64_t k)
{
	bayes_counts_t c;
	cr_assert_eq(bayes_store_lookup(s, &k, 1, &c, NULL), BAYES_OK);
	return c;
}

/*
 * The cache must answer what the store holds after every kind of write,
 * including those that leave the learned totals as they were (a load, an
 * expiry, a prune, a regression step on a message already learned): each
 * step below read a stale count before its write moved the generation.
 */
Test(cache, answers_follow_every_change_of_the_store, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 8 << 20, BAYES_OPEN_CREATE);
	bayes_store_set_cache(s, 1024, false);
	load_text(s,
	          "sift-bayes-dump 1 tokenizer 1\ntotals 3 2\n"
	          "token 0000000000000001 1 0 100\ntoken 0000000000000002 3 2 100\n",
	          false);
	cr_assert_eq(read_key(s, 1).spam, 1);
	uint64_t hits, reads;
	bayes_store_cache_stats(s, &hits, &reads);
	cr_assert_eq(read_key(s, 1).spam, 1);
	uint64_t hits2, reads2;
	bayes_store_cache_stats(s, &hits2, &reads2);
	cr_assert_eq(reads2, reads + 1);
	cr_assert_eq(hits2, hits + 1, "the second read came from the cache");

	/* A load with the same totals. */
	load_text(s,
	          "sift-bayes-dump 1 tokenizer 1\ntotals 3 2\n"
	          "token 0000000000000001 2 0 100\ntoken 0000000000000002 3 2 100\n",
	          false);
	cr_assert_eq(read_key(s, 1).spam, 2, "load");

	/* An expiry: totals unchanged, key 1 gone. */
	uint64_t removed = 0;
	read_key(s, 1);
	cr_assert_eq(bayes_store_expire(s, 1000, 30, 5, &removed), BAYES_OK);
	cr_assert_eq(removed, 2);
	cr_assert_eq(read_key(s, 1).spam, 0, "expire");

	/* Learning, a regression step on a message already learned (totals
	 * unchanged), forgetting. */
	uint64_t k[] = {1, 5};
	bayes_learn_item_t it = item(BAYES_LEARN_SPAM, 1, k, 2);
	cr_assert_eq(bayes_store_apply(s, &it, 1, NULL), BAYES_OK);
	cr_assert_eq(read_key(s, 5).spam, 1, "learn");
	it.lr_delta = 0.5f;
	cr_assert_eq(bayes_store_apply(s, &it, 1, NULL), BAYES_OK);
	cr_assert_float_eq(read_key(s, 5).weight, 0.5f, 1e-6, "regression step");
	it.op = BAYES_FORGET;
	cr_assert_eq(bayes_store_apply(s, &it, 1, NULL), BAYES_OK);
	cr_assert_eq(read_key(s, 5).spam, 0, "forget");

	/* A prune: totals unchanged. */
	bayes_learn_item_t two[] = {item(BAYES_LEARN_HAM, 2, k, 1),
	                            item(BAYES_LEARN_HAM, 3, k + 1, 1)};
	cr_assert_eq(bayes_store_apply(s, two, 2, NULL), BAYES_OK);
	cr_assert_eq(read_key(s, 1).ham + read_key(s, 5).ham, 2);
	cr_assert_eq(bayes_store_prune(s, 0, &removed), BAYES_OK);
	cr_assert_eq(removed, 2);
	cr_assert_eq(read_key(s, 1).ham + read_key(s, 5).ham, 0, "prune");
	bayes_store_unref(s);
}

/*
 * A commit made through this store (the daemon's autolearn writer) keeps
 * the answers of the keys it did not change: the next message's reads of
 * them still come from the cache, and the changed key is read again.
 */
Test(cache, a_commit_keeps_the_answers_of_keys_it_did_not_change, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 8 << 20, BAYES_OPEN_CREATE);
	bayes_store_set_cache(s, 1024, false);
	uint64_t ka[] = {1, 2}, kb[] = {3, 5}, q[] = {1, 2, 3, 4};
	bayes_learn_item_t it = item(BAYES_LEARN_SPAM, 1, ka, 2);
	cr_assert_eq(bayes_store_apply(s, &it, 1, NULL), BAYES_OK);
	bayes_counts_t c[4];
	bayes_totals_t t;
	cr_assert_eq(bayes_store_lookup(s, q, 4, c, &t), BAYES_OK);
	it = item(BAYES_LEARN_HAM, 2, kb, 2);
	cr_assert_eq(bayes_store_apply(s, &it, 1, NULL), BAYES_OK);
	uint64_t h0, r0, h1, r1;
	bayes_store_cache_stats(s, &h0, &r0);
	cr_assert_eq(bayes_store_lookup(s, q, 4, c, &t), BAYES_OK);
	bayes_store_cache_stats(s, &h1, &r1);
	cr_assert_eq(t.ham, 1);
	cr_assert_eq(c[0].spam + c[1].spam, 2);
	cr_assert_eq(c[2].ham, 1, "the key the commit changed is read again");
	cr_assert_eq(c[3].spam + c[3].ham, 0);
	cr_assert_eq(h1 - h0, 3, "keys 1, 2 and 4 came from the cache: %llu",
	             (unsigned long long)(h1 - h0));
	bayes_store_unref(s);
}

/*
 * A touch moves a token's day without a new generation. With fresh days
 * (the daemon dates what it sees) a cached answer of an earlier day is
 * read again, so the daemon does not queue the same touch for every
 * message; without (sift check, bayes_touch = no) the day does not matter
 * and the cached answer stands.
 */
Test(cache, fresh_days_reread_what_a_touch_moved, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 8 << 20, BAYES_OPEN_CREATE);
	load_text(s,
	          "sift-bayes-dump 1 tokenizer 1\ntotals 3 2\n"
	          "token 0000000000000002 3 2 100\ntoken 0000000000000003 1 1 100\n",
	          false);
	uint64_t k2 = 2, k3 = 3;
	bayes_learn_item_t it = item(BAYES_TOUCH, 0, &k2, 1);

	bayes_store_set_cache(s, 1024, true);
	cr_assert_eq(read_key(s, 2).day, 100);
	cr_assert_eq(bayes_store_apply(s, &it, 1, NULL), BAYES_OK);
	cr_assert_eq(read_key(s, 2).day, bayes_today());

	/* Another size replaces the table; without fresh days the day read
	 * first is kept through a touch. */
	bayes_store_set_cache(s, 4096, false);
	cr_assert_eq(read_key(s, 3).day, 100);
	it.keys = &k3;
	cr_assert_eq(bayes_store_apply(s, &it, 1, NULL), BAYES_OK);
	bayes_counts_t c = read_key(s, 3);
	cr_assert_eq(c.day, 100);
	cr_assert_eq(c.spam, 1);
	/* 0 turns it off: LMDB's answer. */
	bayes_store_set_cache(s, 0, false);
	cr_assert_eq(read_key(s, 3).day, bayes_today());
	bayes_store_unref(s);
}

/* Every learned spam message contains key 7, so in any consistent
 * snapshot count(7).spam equals the spam total. */
#define COMMON_KEY 7
#define READERS    4

struct reader_arg {
	bayes_store_t *s;
	volatile bool *stop;
	long lookups, torn;
	size_t nkeys; /* keys per lookup: more keys, longer read transactions */
};

static void *reader_main(void *p)
{
	struct reader_arg *a = p;
	uint64_t *keys = calloc(a->nkeys, sizeof(*keys));
	bayes_counts_t *c = calloc(a->nkeys, sizeof(*c));
	keys[0] = COMMON_KEY;
	for (size_t i = 1; i < a->nkeys; i++)
		keys[i] = 1000 * i;
	while (!*a->stop) {
		bayes_totals_t t;
		int rc = bayes_store_lookup(a->s, keys, a->nkeys, c, &t);
		/*
		 * Only consistency within a snapshot is promised, not that
		 * snapshots never go back: in LMDB a read transaction racing a
		 * commit can copy that commit's meta page before it is published,
		 * and the next one then starts from the published, older one.
		 */
		if (rc != BAYES_OK || c[0].spam != t.spam) {
			if (a->torn++ == 0)
				fprintf(stderr, "torn: rc %d count %u total %llu\n", rc, c[0].spam,
				        (unsigned long long)t.spam);
		}
		a->lookups++;
	}
	free(keys);
	free(c);
	return NULL;
}

/* Message id's 50 keys, as learn_batch() learns them: the common key and 49 of its own. */
static void message_keys(int id, uint64_t k[50])
{
	k[0] = COMMON_KEY;
	for (int j = 1; j < 50; j++)
		k[j] = (uint64_t)id * 1000003ULL + (uint64_t)j * 7919ULL + 100;
}

static void learn_batch(bayes_store_t *s, int first, int n, int rc_want)
{
	uint64_t *keys = malloc((size_t)n * 50 * sizeof(*keys));
	bayes_learn_item_t *it = malloc((size_t)n * sizeof(*it));
	for (int i = 0; i < n; i++) {
		uint64_t *k = keys + i * 50;
		message_keys(first + i, k);
		it[i] = item(BAYES_LEARN_SPAM, first + i, k, 50);
	}
	int rc = bayes_store_apply(s, it, (size_t)n, NULL);
	if (rc_want >= -100)
		cr_assert_eq(rc, rc_want, "%s", bayes_strerror(rc));
	free(keys);
	free(it);
}

Test(store, touch_dates_known_tokens_only, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 8 << 20, BAYES_OPEN_CREATE);
	const char *dump = "sift-bayes-dump 1 tokenizer 1\ntotals 3 2\n"
	                   "token 0000000000000001 1 0 100\n"
	                   "token 0000000000000002 3 2 100\n";
	load_text(s, dump, false);
	/* Key 2 seen twice in one batch, key 9 never learned. */
	uint64_t seen1[] = {2, 9}, seen2[] = {2};
	bayes_learn_item_t it[] = {item(BAYES_TOUCH, 0, seen1, 2), item(BAYES_TOUCH, 0, seen2, 1)};
	bayes_apply_result_t r;
	cr_assert_eq(bayes_store_apply(s, it, 2, &r), BAYES_OK);
	cr_assert_eq(r.touched, 2);
	cr_assert_eq(r.learned + r.forgotten + r.unknown, 0);
	uint64_t q[] = {1, 2, 9};
	bayes_counts_t c[3];
	bayes_totals_t t;
	bayes_store_lookup(s, q, 3, c, &t);
	cr_assert_eq(c[0].day, 100, "an unseen token keeps its day");
	cr_assert_eq(c[1].day, bayes_today());
	cr_assert_eq(c[1].spam, 3);
	cr_assert_eq(c[1].ham, 2);
	cr_assert_eq(c[2].spam + c[2].ham + c[2].day, 0, "a touch created a token");
	cr_assert_eq(t.spam, 3);
	cr_assert_eq(t.ham, 2);
	bayes_stats_t st;
	bayes_store_stats(s, &st);
	cr_assert_eq(st.tokens, 2);
	cr_assert_eq(st.digests, 0);
	/* So expiry now keeps the token still in use. */
	uint64_t removed = 0;
	cr_assert_eq(bayes_store_expire(s, bayes_today(), 30, 10, &removed), BAYES_OK);
	cr_assert_eq(removed, 1);
	bayes_store_lookup(s, q, 2, c, NULL);
	cr_assert_eq(c[0].spam, 0);
	cr_assert_eq(c[1].spam, 3);
	bayes_store_unref(s);
}

static void consistent_snapshots(size_t cache_entries, unsigned filter_bits)
{
	bayes_store_t *s = open_store("db", 64 << 20, BAYES_OPEN_CREATE);
	bayes_store_set_cache(s, cache_entries, false);
	bayes_store_set_filter(s, filter_bits);
	volatile bool stop = false;
	pthread_t th[READERS];
	struct reader_arg arg[READERS];
	for (int i = 0; i < READERS; i++) {
		arg[i] = (struct reader_arg){s, &stop, 0, 0, 3};
		pthread_create(&th[i], NULL, reader_main, &arg[i]);
	}
	for (int b = 0; b < 100; b++)
		learn_batch(s, b * 20, 20, BAYES_OK);
	stop = true;
	long total = 0;
	for (int i = 0; i < READERS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(arg[i].torn, 0, "reader %d saw %ld torn snapshots", i, arg[i].torn);
		total += arg[i].lookups;
	}
	cr_assert_gt(total, 100, "readers were blocked: %ld lookups", total);
	bayes_totals_t t;
	bayes_counts_t c;
	uint64_t k = COMMON_KEY;
	bayes_store_lookup(s, &k, 1, &c, &t);
	cr_assert_eq(t.spam, 2000);
	cr_assert_eq(c.spam, 2000);
	if (cache_entries > 0) {
		uint64_t hits, reads;
		bayes_store_cache_stats(s, &hits, &reads);
		cr_assert_gt(hits, 0, "the readers never used the cache (%llu reads)",
		             (unsigned long long)reads);
	}
	bayes_store_unref(s);
}

Test(store, readers_see_consistent_snapshots_while_writer_learns, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	consistent_snapshots(0, 0);
}

/* The same through the read cache, which four threads fill and read at once. */
Test(cache, readers_see_consistent_snapshots_while_writer_learns, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	consistent_snapshots(1024, 0);
}

/* And through the key filter, which the writer's batches move on while they read it. */
Test(filter, readers_see_consistent_snapshots_while_writer_learns, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	consistent_snapshots(0, 12);
}

/* ---------------------------------------------------------------- the key filter */

static uint64_t filter_builds(bayes_store_t *s)
{
	uint64_t skipped, builds;
	bayes_store_filter_stats(s, &skipped, &builds);
	return builds;
}

static uint64_t filter_skipped(bayes_store_t *s)
{
	uint64_t skipped, builds;
	bayes_store_filter_stats(s, &skipped, &builds);
	return skipped;
}

/* Looks up until `builds` filters are done (a lookup of another state starts one), 10 s at most. */
static void wait_filter(bayes_store_t *s, uint64_t builds)
{
	uint64_t k = COMMON_KEY;
	bayes_counts_t c;
	for (int i = 0; i < 1000 && filter_builds(s) < builds; i++) {
		bayes_store_lookup(s, &k, 1, &c, NULL);
		usleep(10000);
	}
	cr_assert_geq(filter_builds(s), builds, "no key filter was built");
}

#define PROBE_KEYS 3000

/* Keys 0..PROBE_KEYS-1 spread over the key space, and what LMDB itself answers for them. */
static void probe(bayes_store_t *s, uint64_t *keys, bayes_counts_t *c, size_t first)
{
	for (size_t i = 0; i < PROBE_KEYS; i++)
		keys[i] = (first + i) * 0x9e3779b97f4a7c15ULL;
	cr_assert_eq(bayes_store_lookup(s, keys, PROBE_KEYS, c, NULL), BAYES_OK);
}

/* Message id's own keys read as learned once, and the common key as learned `common` times. */
static void expect_learned(bayes_store_t *s, int id, unsigned common, const char *what)
{
	uint64_t k[50];
	bayes_counts_t c[50];
	message_keys(id, k);
	cr_assert_eq(bayes_store_lookup(s, k, 50, c, NULL), BAYES_OK);
	cr_assert_eq(c[0].spam, common);
	for (int j = 1; j < 50; j++)
		cr_assert_eq(c[j].spam, 1, "message %d's key %d read as absent: %s", id, j, what);
}

Test(filter, answers_as_lmdb_and_skips_absent_keys, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 64 << 20, BAYES_OPEN_CREATE);
	learn_batch(s, 0, 40, BAYES_OK); /* 1,961 keys */
	static uint64_t keys[PROBE_KEYS + 50];
	static bayes_counts_t want[PROBE_KEYS + 50], got[PROBE_KEYS + 50];
	probe(s, keys, want, 1);
	cr_assert_eq(filter_builds(s), 0, "built with the filter off");

	bayes_store_set_filter(s, 12);
	wait_filter(s, 1);
	uint64_t skipped0 = filter_skipped(s);
	probe(s, keys, got, 1);
	cr_assert_arr_eq(got, want, sizeof(want[0]) * PROBE_KEYS);
	uint64_t skipped = filter_skipped(s) - skipped0;
	cr_assert_gt(skipped, PROBE_KEYS * 95 / 100, "only %llu of %d absent keys skipped LMDB",
	             (unsigned long long)skipped, PROBE_KEYS);

	for (int m = 0; m < 40; m++)
		expect_learned(s, m, 40, "a learned key");
	bayes_store_unref(s);
}

/*
 * Switching the filter on builds it at once: left to the first lookup, the
 * daemon's first messages read a cold store key by key while it was built
 * (4.5-25 ms of Bayes each, against 0.5 later).
 */
Test(filter, is_built_when_switched_on_before_any_lookup, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 64 << 20, BAYES_OPEN_CREATE);
	learn_batch(s, 0, 10, BAYES_OK);
	bayes_store_set_filter(s, 12);
	for (int i = 0; i < 1000 && filter_builds(s) < 1; i++)
		usleep(10000);
	cr_assert_eq(filter_builds(s), 1, "no filter 10 s after it was switched on");
	/* switched on again (a reload), a filter already there is not built anew */
	bayes_store_set_filter(s, 12);
	usleep(200000);
	cr_assert_eq(filter_builds(s), 1, "rebuilt at a reload");
	uint64_t skipped0 = filter_skipped(s);
	static uint64_t keys[PROBE_KEYS];
	static bayes_counts_t got[PROBE_KEYS];
	probe(s, keys, got, 1);
	cr_assert_gt(filter_skipped(s) - skipped0, PROBE_KEYS * 95 / 100,
	             "the first lookups did not use it");
	bayes_store_unref(s);
}

/*
 * This store's own batches (autolearn, touches) move the filter on with
 * them: their keys are found at once, without a rebuild; pruning leaves
 * removed keys in it, and LMDB answers for them.
 */
Test(filter, own_batches_move_it_on_without_a_rebuild, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 64 << 20, BAYES_OPEN_CREATE);
	learn_batch(s, 0, 20, BAYES_OK); /* 981 tokens: room for 1,226 */
	bayes_store_set_filter(s, 12);
	wait_filter(s, 1);

	learn_batch(s, 100, 4, BAYES_OK); /* 1,177 */
	uint64_t skipped0 = filter_skipped(s);
	expect_learned(s, 102, 24, "a key the batch added");
	static uint64_t keys[PROBE_KEYS];
	static bayes_counts_t got[PROBE_KEYS];
	probe(s, keys, got, 1);
	cr_assert_gt(filter_skipped(s) - skipped0, PROBE_KEYS * 95 / 100,
	             "the filter was not used after the batch");
	cr_assert_eq(filter_builds(s), 1, "the batch made the filter stale");

	/* Keep 30 of the 1,177 tokens. */
	uint64_t removed = 0;
	cr_assert_eq(bayes_store_prune(s, 30, &removed), BAYES_OK);
	cr_assert_gt(removed, 1100);
	static uint64_t learned[24 * 49];
	static bayes_counts_t on[24 * 49], off[24 * 49];
	for (int m = 0; m < 24; m++)
		for (int j = 1; j < 50; j++)
			learned[m * 49 + j - 1] = (uint64_t)(m < 20 ? m : 80 + m) * 1000003ULL +
			                          (uint64_t)j * 7919ULL + 100;
	skipped0 = filter_skipped(s);
	cr_assert_eq(bayes_store_lookup(s, learned, 24 * 49, on, NULL), BAYES_OK);
	cr_assert_eq(filter_builds(s), 1, "pruning made the filter stale");
	cr_assert_eq(filter_skipped(s), skipped0, "a learned key was not in the filter");
	bayes_store_set_filter(s, 0);
	cr_assert_eq(bayes_store_lookup(s, learned, 24 * 49, off, NULL), BAYES_OK);
	cr_assert_arr_eq(on, off, sizeof(on), "the filter changed an answer after pruning");
	size_t present = 0;
	for (size_t i = 0; i < 24 * 49; i++)
		present += on[i].spam > 0;
	cr_assert_lt(present, 30, "pruning removed nothing of the learned keys");
	bayes_store_unref(s);
}

/* Past the tokens it was sized for, this store's batches leave it behind and a larger one is built.
 */
Test(filter, a_store_that_outgrows_it_gets_a_larger_one, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 64 << 20, BAYES_OPEN_CREATE);
	learn_batch(s, 0, 4, BAYES_OK); /* 197 tokens: room for 246 */
	bayes_store_set_filter(s, 12);
	wait_filter(s, 1);
	learn_batch(s, 4, 1, BAYES_OK); /* 246 */
	static uint64_t keys[PROBE_KEYS];
	static bayes_counts_t got[PROBE_KEYS];
	uint64_t skipped0 = filter_skipped(s);
	probe(s, keys, got, 1);
	cr_assert_gt(filter_skipped(s) - skipped0, PROBE_KEYS * 95 / 100,
	             "moved on within its room");
	learn_batch(s, 5, 1, BAYES_OK); /* 295: past it */
	skipped0 = filter_skipped(s);
	probe(s, keys, got, 1);
	cr_assert_eq(filter_skipped(s), skipped0, "used past its room");
	wait_filter(s, 2);
	skipped0 = filter_skipped(s);
	probe(s, keys, got, 1);
	cr_assert_gt(filter_skipped(s) - skipped0, PROBE_KEYS * 95 / 100);
	bayes_store_unref(s);
}

/*
 * Another process's learning (sift learn beside the daemon) is not in
 * the filter: lookups read LMDB and see it at once, and a new filter
 * is built for the new state.
 */
Test(filter, another_process_learning_is_seen_at_once, .init = make_tmpdir, .fini = remove_tmpdir)
{
	/* Forked before the store is opened here: LMDB's handles do not cross a fork. */
	int go[2], done[2];
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(done), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char b;
		if (read(go[0], &b, 1) != 1)
			_exit(2);
		char path[512];
		int err;
		snprintf(path, sizeof(path), "%s/db", tmpdir);
		bayes_store_t *c = bayes_store_open(path, 64 << 20, 0, &err);
		if (c == NULL)
			_exit(3);
		learn_batch(c, 500, 5, -1000);
		bayes_store_unref(c);
		_exit(write(done[1], "x", 1) == 1 ? 0 : 4);
	}
	bayes_store_t *s = open_store("db", 64 << 20, BAYES_OPEN_CREATE);
	learn_batch(s, 0, 10, BAYES_OK);
	bayes_store_set_filter(s, 12);
	wait_filter(s, 1);
	char b;
	cr_assert_eq(write(go[1], "x", 1), 1);
	cr_assert_eq(read(done[0], &b, 1), 1, "the other process did not learn");
	int status;
	waitpid(pid, &status, 0);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	uint64_t skipped0 = filter_skipped(s);
	expect_learned(s, 502, 15, "a key the other process learned");
	cr_assert_eq(filter_skipped(s), skipped0, "a filter of the old state was used");

	/* A filter of the new state follows, and finds them too. */
	wait_filter(s, 2);
	expect_learned(s, 502, 15, "through the new filter");
	static uint64_t keys[PROBE_KEYS];
	static bayes_counts_t got[PROBE_KEYS];
	skipped0 = filter_skipped(s);
	probe(s, keys, got, 1);
	cr_assert_gt(filter_skipped(s) - skipped0, PROBE_KEYS * 95 / 100);
	bayes_store_unref(s);
}

Test(store, full_map_stops_learning_not_scoring, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 256 << 10, BAYES_OPEN_CREATE);
	learn_batch(s, 0, 10, BAYES_OK);
	int rc = BAYES_OK, b;
	for (b = 1; b < 200 && rc == BAYES_OK; b++) {
		uint64_t *keys = malloc(500 * sizeof(*keys));
		for (int j = 0; j < 500; j++)
			keys[j] = (uint64_t)b * 100000 + (uint64_t)j;
		bayes_learn_item_t it = item(BAYES_LEARN_HAM, 1000 + b, keys, 500);
		rc = bayes_store_apply(s, &it, 1, NULL);
		free(keys);
	}
	cr_assert_eq(rc, BAYES_EFULL, "map never filled: %s", bayes_strerror(rc));
	bayes_stats_t st;
	cr_assert_eq(bayes_store_stats(s, &st), BAYES_OK);
	cr_assert(st.full);
	/* The failed batch left no trace; lookups still work. */
	uint64_t q[] = {COMMON_KEY, (uint64_t)(b - 1) * 100000};
	bayes_counts_t c[2];
	bayes_totals_t t;
	cr_assert_eq(bayes_store_lookup(s, q, 2, c, &t), BAYES_OK);
	cr_assert_eq(c[0].spam, 10);
	cr_assert_eq(c[1].ham, 0);
	cr_assert_eq(t.ham, (uint64_t)(b - 2));
	/* Forgetting frees room, and learning resumes. */
	uint64_t keys[500];
	for (int j = 0; j < 500; j++)
		keys[j] = (uint64_t)1 * 100000 + (uint64_t)j;
	bayes_learn_item_t fg = item(BAYES_FORGET, 1001, keys, 500);
	cr_assert_eq(bayes_store_apply(s, &fg, 1, NULL), BAYES_OK);
	learn_batch(s, 100, 1, BAYES_OK);
	bayes_store_stats(s, &st);
	cr_assert(!st.full);
	bayes_store_unref(s);
}

/* n distinct keys no other test message has, from base on. */
static uint64_t *huge_keys(uint64_t base, size_t n)
{
	uint64_t *k = malloc(n * sizeof(*k));
	for (size_t j = 0; j < n; j++)
		k[j] = base + j * 7919;
	return k;
}

Test(store, a_message_without_room_costs_only_its_own_learning, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	/*
	 * Before, a batch was one transaction: one message too big for the
	 * room left lost every message of its batch (the daemon's writer
	 * takes 256 at a time, sift learn 8,000) and marked the store full.
	 */
	bayes_store_t *s = open_store("db", 1 << 20, BAYES_OPEN_CREATE);
	uint64_t *big = huge_keys(1ULL << 40, 60000); /* about 3 MB of tokens */
	uint64_t small[20][50];
	bayes_learn_item_t it[21];
	for (int i = 0; i < 20; i++) {
		message_keys(i, small[i]);
		it[i < 7 ? i : i + 1] = item(BAYES_LEARN_SPAM, i, small[i], 50);
	}
	it[7] = item(BAYES_LEARN_SPAM, 500, big, 60000);
	bayes_apply_result_t r;
	cr_assert_eq(bayes_store_apply(s, it, 21, &r), BAYES_EFULL);
	cr_assert_eq(r.unfit, 1);
	cr_assert_eq(r.unfit_learn, 1);
	cr_assert_eq(r.learned, 20);
	for (int i = 0; i < 20; i++)
		expect_learned(s, i, 20, "learned beside a message without room");
	bayes_stats_t st;
	cr_assert_eq(bayes_store_stats(s, &st), BAYES_OK);
	cr_assert_eq(st.totals.spam, 20);
	cr_assert(!st.full, "one message without room is not a full store");
	/* The big one left no trace. */
	bayes_counts_t c;
	cr_assert_eq(bayes_store_lookup(s, big + 100, 1, &c, NULL), BAYES_OK);
	cr_assert_eq(c.spam, 0);

	/* The daemon's writer: the others learned, the one counted as dropped. */
	uint64_t more[20][50];
	for (int i = 0; i < 20; i++) {
		message_keys(100 + i, more[i]);
		bayes_learn_item_t q = item(BAYES_LEARN_HAM, 100 + i, more[i], 50);
		cr_assert_eq(bayes_store_submit(s, &q, 1000, SIZE_MAX), BAYES_OK);
		if (i == 10) {
			bayes_learn_item_t b = item(BAYES_LEARN_HAM, 501, big, 60000);
			cr_assert_eq(bayes_store_submit(s, &b, 1000, SIZE_MAX), BAYES_OK);
		}
	}
	bayes_store_flush(s);
	cr_assert_eq(bayes_store_stats(s, &st), BAYES_OK);
	cr_assert_eq(st.totals.ham, 20);
	cr_assert_eq(st.dropped, 1);
	cr_assert(!st.full);

	/* When nothing fits, the store is full. */
	bayes_learn_item_t b2[2] = {item(BAYES_LEARN_SPAM, 502, big, 60000),
	                            item(BAYES_LEARN_SPAM, 503, big + 1, 59999)};
	cr_assert_eq(bayes_store_apply(s, b2, 2, &r), BAYES_EFULL);
	cr_assert_eq(r.unfit, 2);
	cr_assert_eq(r.learned, 0);
	cr_assert_eq(bayes_store_stats(s, &st), BAYES_OK);
	cr_assert(st.full);
	free(big);
	bayes_store_unref(s);
}

Test(store, reopen_after_writer_killed_mid_learn, .init = make_tmpdir, .fini = remove_tmpdir)
{
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* The child learns as fast as it can, with a reader thread inside
		 * read transactions, and reports each committed batch. */
		close(pfd[0]);
		char path[512];
		int err;
		snprintf(path, sizeof(path), "%s/db", tmpdir);
		bayes_store_t *s = bayes_store_open(path, 64 << 20, BAYES_OPEN_CREATE, &err);
		if (s == NULL)
			_exit(3);
		volatile bool stop = false;
		struct reader_arg ra = {s, &stop, 0, 0, 50000};
		pthread_t th;
		pthread_create(&th, NULL, reader_main, &ra);
		/*
		 * Learn only once the reader runs: it then spends nearly all
		 * its time inside long read transactions, so the kill leaves
		 * a reader slot behind for the parent to clear.
		 */
		for (int i = 0; i < 5000 && *(volatile long *)&ra.lookups == 0; i++)
			usleep(1000);
		for (int b = 0;; b++) {
			learn_batch(s, b * 10, 10, -1000);
			if (write(pfd[1], "x", 1) != 1)
				_exit(4);
		}
	}
	close(pfd[1]);
	char buf[1];
	for (int i = 0; i < 30; i++)
		cr_assert_eq(read(pfd[0], buf, 1), 1, "child died early");
	/* Open it here too while the child runs, as a daemon would have it
	 * open while `sift learn` is killed (LMDB resets the reader table
	 * itself only when nobody has the store open). */
	bayes_store_t *s = open_store("db", 64 << 20, 0);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(read(pfd[0], buf, 1), 1, "child died early");
	kill(pid, SIGKILL);
	int status;
	waitpid(pid, &status, 0);
	close(pfd[0]);
	cr_assert(WIFSIGNALED(status));

	bayes_stats_t st;
	cr_assert_eq(bayes_store_stats(s, &st), BAYES_OK);
	cr_assert_eq(st.readers, 0, "stale reader slots were not cleared");
	cr_assert_geq(st.stale_readers, 1, "the killed reader left no slot to clear");
	cr_assert_geq(st.totals.spam, 350);
	cr_assert_eq(st.digests, st.totals.spam);
	uint64_t k = COMMON_KEY;
	bayes_counts_t c;
	bayes_totals_t t;
	bayes_store_lookup(s, &k, 1, &c, &t);
	cr_assert_eq(c.spam, t.spam, "torn batch: %u vs %llu", c.spam, (unsigned long long)t.spam);
	/* And learning goes on. */
	learn_batch(s, 1000000, 5, BAYES_OK);
	bayes_store_lookup(s, &k, 1, &c, &t);
	cr_assert_eq(c.spam, st.totals.spam + 5);
	bayes_store_unref(s);

	/* A fresh open of what the killed writer left is consistent too. */
	s = open_store("db", 64 << 20, 0);
	bayes_store_lookup(s, &k, 1, &c, &t);
	cr_assert_eq(c.spam, t.spam);
	cr_assert_eq(t.spam, st.totals.spam + 5);
	bayes_store_unref(s);
}

Test(store, autolearn_writer_applies_queued_messages, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 8 << 20, BAYES_OPEN_CREATE);
	uint64_t keys[] = {COMMON_KEY, 5};
	for (int i = 0; i < 50; i++) {
		bayes_learn_item_t it = item(BAYES_LEARN_HAM, i, keys, 2);
		cr_assert_eq(bayes_store_submit(s, &it, 1000, SIZE_MAX), BAYES_OK);
	}
	/* A full queue drops (and counts) instead of blocking. */
	bayes_learn_item_t it = item(BAYES_LEARN_HAM, 999, keys, 2);
	cr_assert_eq(bayes_store_submit(s, &it, 0, SIZE_MAX), BAYES_EBUSY);
	bayes_store_flush(s);
	bayes_counts_t c;
	bayes_totals_t t;
	bayes_store_lookup(s, keys, 1, &c, &t);
	cr_assert_eq(t.ham, 50);
	cr_assert_eq(c.ham, 50);
	bayes_stats_t st;
	bayes_store_stats(s, &st);
	cr_assert_eq(st.dropped, 1);
	cr_assert_geq(st.applied_batches, 1);
	bayes_store_unref(s);
}

/*
 * The queue is bounded in bytes as well as in messages: a writer held up
 * (here by another process's write transaction, as `sift learn` or a slow
 * disk would) must not let messages of 60,000 keys each pile up to
 * bayes_autolearn_queue of them (480 MB at the default 1,000).
 */
Test(store, autolearn_queue_is_bounded_in_bytes, .init = make_tmpdir, .fini = remove_tmpdir)
{
	/* Forked before the store is opened here: LMDB's handles do not cross a fork. */
	int go[2], locked[2], release[2];
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(locked), 0);
	cr_assert_eq(pipe(release), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* only the parent's ends left open: its exit, even by a failed assertion, ends this
		 */
		close(go[1]);
		close(locked[0]);
		close(release[1]);
		char b;
		if (read(go[0], &b, 1) != 1)
			_exit(2);
		char path[512];
		snprintf(path, sizeof(path), "%s/db", tmpdir);
		MDB_env *env;
		MDB_txn *txn;
		if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 4) != 0 ||
		    mdb_env_open(env, path, MDB_NOTLS, 0640) != 0 ||
		    mdb_txn_begin(env, NULL, 0, &txn) != 0)
			_exit(3);
		if (write(locked[1], "x", 1) != 1)
			_exit(4);
		(void)!read(release[0], &b, 1);
		mdb_txn_abort(txn);
		mdb_env_close(env);
		_exit(0);
	}
	close(go[0]);
	close(locked[1]);
	close(release[0]);
	bayes_store_t *s = open_store("db", 64 << 20, BAYES_OPEN_CREATE);
	char b;
	cr_assert_eq(write(go[1], "x", 1), 1);
	cr_assert_eq(read(locked[0], &b, 1), 1, "the other process took no write lock");

	/* The writer takes a first message and waits for the lock. */
	uint64_t one = COMMON_KEY;
	bayes_learn_item_t first = item(BAYES_LEARN_SPAM, 1, &one, 1);
	cr_assert_eq(bayes_store_submit(s, &first, 1000, 1 << 20), BAYES_OK);
	bayes_stats_t st;
	for (int i = 0; i < 500; i++) {
		cr_assert_eq(bayes_store_stats(s, &st), BAYES_OK);
		if (st.queued == 0)
			break;
		usleep(10000);
	}
	cr_assert_eq(st.queued, 0, "the writer did not take the first message");

	enum { BIG = 60000 };
	uint64_t *big = malloc(3 * BIG * sizeof(*big));
	for (size_t i = 0; i < 3 * BIG; i++)
		big[i] = 0x5000000000ULL + i;
	bayes_learn_item_t b1 = item(BAYES_LEARN_SPAM, 2, big, BIG);
	bayes_learn_item_t b2 = item(BAYES_LEARN_SPAM, 3, big + BIG, BIG);
	bayes_learn_item_t b3 = item(BAYES_LEARN_SPAM, 4, big + 2 * BIG, BIG);
	uint64_t small[50];
	message_keys(5, small);
	bayes_learn_item_t sm = item(BAYES_LEARN_SPAM, 5, small, 50);
	cr_assert_eq(bayes_store_submit(s, &b1, 1000, 1 << 20), BAYES_OK);
	cr_assert_eq(bayes_store_submit(s, &b2, 1000, 1 << 20), BAYES_OK);
	cr_assert_eq(bayes_store_submit(s, &b3, 1000, 1 << 20), BAYES_EBUSY,
	             "a third 480 KB message fitted a 1 MiB queue");
	cr_assert_eq(bayes_store_submit(s, &sm, 1000, 1 << 20), BAYES_OK,
	             "a small message did not fit beside the two");
	cr_assert_eq(bayes_store_stats(s, &st), BAYES_OK);
	cr_assert_eq(st.queued, 3);
	cr_assert_eq(st.dropped, 1);

	cr_assert_eq(write(release[1], "x", 1), 1);
	int status;
	waitpid(pid, &status, 0);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	bayes_store_flush(s);
	cr_assert_eq(bayes_store_stats(s, &st), BAYES_OK);
	cr_assert_eq(st.totals.spam, 4, "learned %" PRIu64, st.totals.spam);
	bayes_counts_t c;
	cr_assert_eq(bayes_store_lookup(s, big + BIG + 7, 1, &c, NULL), BAYES_OK);
	cr_assert_eq(c.spam, 1, "the second big message was not learned");
	cr_assert_eq(bayes_store_lookup(s, big + 2 * BIG + 7, 1, &c, NULL), BAYES_OK);
	cr_assert_eq(c.spam, 0, "the dropped message was learned");
	free(big);
	bayes_store_unref(s);
}

/*
 * Messages queued while the writer lingers for a batch wait it out: a
 * busy daemon commits (and syncs) a batch, not a transaction for each
 * wake-up.
 */
Test(store, autolearn_writer_gathers_a_batch, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 8 << 20, BAYES_OPEN_CREATE);
	uint64_t keys[20][50];
	for (int i = 0; i < 20; i++) {
		message_keys(i, keys[i]);
		bayes_learn_item_t it = item(BAYES_LEARN_HAM, i, keys[i], 50);
		cr_assert_eq(bayes_store_submit(s, &it, 1000, SIZE_MAX), BAYES_OK);
		usleep(2000);
	}
	bayes_stats_t st;
	for (int i = 0; i < 300; i++) {
		cr_assert_eq(bayes_store_stats(s, &st), BAYES_OK);
		if (st.totals.ham == 20)
			break;
		usleep(10000);
	}
	cr_assert_eq(st.totals.ham, 20, "not learned without a flush");
	/* 20 messages in 40 ms, within one 200 ms linger (3 allows a slow host) */
	cr_assert_leq(st.applied_batches, 3, "%" PRIu64 " batches", st.applied_batches);
	bayes_store_unref(s);
}

/* ------------------------------------------------------------ end to end */

static int run_learn(cli_ctx_t *ctx, const char *kind, const char *dir)
{
	char *argv[] = {"learn", (char *)kind, (char *)dir, NULL};
	optind = 0;
	return bayes_cmd_learn(ctx, 3, argv);
}

static double score_file(void *shared, const char *path, hits_t **hout, msg_t **mout)
{
	const mime_t *mi;
	msg_t *m = load_msg(path, &mi);
	void *conn = bayes_evidence.conn_begin(shared, NULL);
	hits_t *h = hits_new(msg_arena(m));
	ev_score_ctx_t ctx = {.explain = true};
	bayes_evidence.score(shared, conn, m, mi, h, &ctx);
	bayes_evidence.conn_end(shared, conn);
	double p = -1;
	hits_metric(h, "bayes_prob", &p);
	*hout = h;
	*mout = m;
	return p;
}

Test(end_to_end, learn_then_score_small_set, .init = make_tmpdir, .fini = remove_tmpdir)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("test.conf",
	                       "bayes_min_spam = 5\nbayes_min_ham = 5\nbayes_map_size = 16M\n", d);
	cr_assert_not_null(c);
	cli_ctx_t ctx = {.conf = c, .state_dir = tmpdir, .diag = d};
	cr_assert_eq(run_learn(&ctx, "--spam", DATA "/spam"), 0);
	cr_assert_eq(run_learn(&ctx, "--ham", DATA "/ham"), 0);
	/* Learning the same files again changes nothing. */
	cr_assert_eq(run_learn(&ctx, "--ham", DATA "/ham"), 0);

	ev_env_t env = {.state_dir = tmpdir, .offline = true};
	void *shared = ev_started(&bayes_evidence, bayes_evidence.load(c, NULL, &env, d), &env, d);
	cr_assert_not_null(shared);
	cr_assert_eq(diag_errors(d), 0);
	hits_t *h;
	msg_t *m;
	double ps = score_file(shared, DATA "/check/spam-8.eml", &h, &m);
	cr_assert_gt(ps, 0.9, "spam scored %f", ps);
	cr_assert(hits_has(h, "BAYES_99") || hits_has(h, "BAYES_999") || hits_has(h, "BAYES_95"));
	cr_assert(hits_note_says(h, "P(spam)="));
	cr_assert(hits_note_says(h, "spammy"), "no token explanation");
	msg_free(m);
	double ph = score_file(shared, DATA "/check/ham-9.eml", &h, &m);
	cr_assert_lt(ph, 0.1, "ham scored %f", ph);
	cr_assert(hits_has(h, "BAYES_00") || hits_has(h, "BAYES_05"));
	cr_assert(hits_note_says(h, "hammy"));
	msg_free(m);

	/* Forgetting the ham takes Bayes below its minimum: it stops voting. */
	char *argv[] = {"learn", "--forget", DATA "/ham", NULL};
	optind = 0;
	cr_assert_eq(bayes_cmd_learn(&ctx, 3, argv), 0);
	ph = score_file(shared, DATA "/check/ham-9.eml", &h, &m);
	cr_assert_eq(ph, -1, "voted with no ham learned");
	cr_assert(hits_note_says(h, "not voting"));
	msg_free(m);

	/* A reload carries the open store over. */
	void *again = ev_started(&bayes_evidence, bayes_evidence.load(c, shared, &env, d), &env, d);
	cr_assert_not_null(again);
	bayes_evidence.release(shared);
	bayes_evidence.release(again);
	conf_free(c);
	diag_free(d);
}

/* Every token line of the store's dump gets the given day. */
static void set_all_days(bayes_store_t *s, unsigned day)
{
	char *text = NULL, *out = NULL;
	size_t n, on;
	FILE *fp = open_memstream(&text, &n);
	cr_assert_eq(bayes_store_dump(s, fp), BAYES_OK);
	fclose(fp);
	FILE *o = open_memstream(&out, &on);
	for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		char key[17];
		unsigned sp, hm, dd;
		if (sscanf(line, "token %16s %u %u %u", key, &sp, &hm, &dd) == 4)
			fprintf(o, "token %s %u %u %u\n", key, sp, hm, day);
		else
			fprintf(o, "%s\n", line);
	}
	fclose(o);
	diag_t *d = diag_new();
	fp = fmemopen(out, on, "r");
	cr_assert_eq(bayes_store_load(s, fp, "days", false, d), BAYES_OK);
	fclose(fp);
	diag_free(d);
	free(text);
	free(out);
}

/* Tokens of the dump dated day, and all tokens; the counts, days left out. */
static void count_days(bayes_store_t *s, unsigned day, size_t *at_day, size_t *all, char **counts)
{
	char *text = NULL;
	size_t n, cn;
	FILE *fp = open_memstream(&text, &n);
	cr_assert_eq(bayes_store_dump(s, fp), BAYES_OK);
	fclose(fp);
	FILE *c = open_memstream(counts, &cn);
	*at_day = *all = 0;
	for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		char key[17];
		unsigned sp, hm, dd;
		if (sscanf(line, "token %16s %u %u %u", key, &sp, &hm, &dd) == 4) {
			(*all)++;
			*at_day += dd == day;
			fprintf(c, "%s %u %u\n", key, sp, hm);
		} else if (strncmp(line, "totals", 6) == 0) {
			fprintf(c, "%s\n", line);
		}
	}
	fclose(c);
	free(text);
}

Test(end_to_end, daemon_dates_the_tokens_it_scores, .init = make_tmpdir, .fini = remove_tmpdir)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("test.conf", "bayes_min_spam = 5\nbayes_min_ham = 5\n", d);
	cli_ctx_t ctx = {.conf = c, .state_dir = tmpdir, .diag = d};
	cr_assert_eq(run_learn(&ctx, "--spam", DATA "/spam"), 0);
	cr_assert_eq(run_learn(&ctx, "--ham", DATA "/ham"), 0);
	char path[512];
	int err;
	snprintf(path, sizeof(path), "%s/bayes", tmpdir);
	bayes_store_t *s = bayes_store_open(path, 16 << 20, 0, &err);
	cr_assert_not_null(s);
	set_all_days(s, 100);
	size_t at_today, all, before_all;
	char *before, *after;
	count_days(s, bayes_today(), &at_today, &before_all, &before);
	cr_assert_eq(at_today, 0);

	/* `sift check` (offline) never writes. */
	ev_env_t env = {.state_dir = tmpdir, .offline = true};
	void *shared = ev_started(&bayes_evidence, bayes_evidence.load(c, NULL, &env, d), &env, d);
	hits_t *h;
	msg_t *m;
	cr_assert_gt(score_file(shared, DATA "/check/spam-8.eml", &h, &m), 0.5);
	msg_free(m);
	bayes_store_flush(s);
	count_days(s, bayes_today(), &at_today, &all, &after);
	cr_assert_eq(at_today, 0);
	free(after);
	bayes_evidence.release(shared);

	/* The daemon dates what it saw, and only that; counts stay. */
	env.offline = false;
	shared = ev_started(&bayes_evidence, bayes_evidence.load(c, NULL, &env, d), &env, d);
	cr_assert_gt(score_file(shared, DATA "/check/spam-8.eml", &h, &m), 0.5);
	msg_free(m);
	bayes_store_flush(s);
	count_days(s, bayes_today(), &at_today, &all, &after);
	cr_assert_gt(at_today, 20);
	cr_assert_lt(at_today, all, "tokens the message does not have were dated");
	cr_assert_eq(all, before_all);
	cr_assert_str_eq(before, after);
	free(after);
	bayes_evidence.release(shared);

	/* bayes_touch = no turns it off. */
	set_all_days(s, 100);
	conf_t *off = conf_parse("off.conf", "bayes_touch = no\n", d);
	shared = ev_started(&bayes_evidence, bayes_evidence.load(off, NULL, &env, d), &env, d);
	cr_assert_not_null(shared);
	score_file(shared, DATA "/check/spam-8.eml", &h, &m);
	msg_free(m);
	bayes_store_flush(s);
	count_days(s, bayes_today(), &at_today, &all, &after);
	cr_assert_eq(at_today, 0);
	free(after);
	bayes_evidence.release(shared);

	free(before);
	bayes_store_unref(s);
	conf_free(off);
	conf_free(c);
	diag_free(d);
}

Test(end_to_end, missing_store_means_no_vote, .init = make_tmpdir, .fini = remove_tmpdir)
{
	diag_t *d = diag_new();
	conf_t *c = conf_new();
	ev_env_t env = {.state_dir = tmpdir, .offline = true};
	void *shared = ev_started(&bayes_evidence, bayes_evidence.load(c, NULL, &env, d), &env, d);
	cr_assert_not_null(shared);
	hits_t *h;
	msg_t *m;
	cr_assert_eq(score_file(shared, DATA "/check/spam-8.eml", &h, &m), -1);
	cr_assert_eq(hits_count(h), 0);
	msg_free(m);
	bayes_evidence.release(shared);

	/* The daemon (not offline) creates it empty in the state directory. */
	env.offline = false;
	shared = ev_started(&bayes_evidence, bayes_evidence.load(c, NULL, &env, d), &env, d);
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/bayes/data.mdb", tmpdir);
	cr_assert_eq(stat(path, &st), 0);
	bayes_evidence.release(shared);
	conf_free(c);
	diag_free(d);
}

/* ------------------------------------------------------------ learning modes, regression, bound */

#define BAYES_STR_(x) #x
#define BAYES_STR(x)  BAYES_STR_(x)

Test(learning, train_modes_decide_by_class_and_margin)
{
	/* train-always learns whatever the score. */
	cr_assert(bayes_train_wanted(BAYES_TRAIN_ALWAYS, true, 9.0, true, 1.0));
	/* On error: a confident right answer is not learned... */
	cr_assert_not(bayes_train_wanted(BAYES_TRAIN_ON_ERROR, true, 2.0, true, 1.0));
	cr_assert_not(bayes_train_wanted(BAYES_TRAIN_ON_ERROR, true, -2.0, false, 1.0));
	/* ...a wrong one, one inside the margin, or no vote at all is. */
	cr_assert(bayes_train_wanted(BAYES_TRAIN_ON_ERROR, true, -0.1, true, 1.0));
	cr_assert(bayes_train_wanted(BAYES_TRAIN_ON_ERROR, true, 0.5, true, 1.0));
	cr_assert(bayes_train_wanted(BAYES_TRAIN_UNTIL_NO_ERROR, true, 0.5, false, 1.0));
	cr_assert(bayes_train_wanted(BAYES_TRAIN_ON_ERROR, false, 0.0, true, 1.0));
	bayes_train_mode_t m;
	cr_assert_eq(bayes_train_mode_parse("train-until-no-error", &m), 0);
	cr_assert_eq(m, BAYES_TRAIN_UNTIL_NO_ERROR);
	cr_assert_neq(bayes_train_mode_parse("train-sometimes", &m), 0);
}

Test(learning, regression_step_follows_the_error)
{
	bayes_settings_t set = {.lr = true, .lr_rate = 0.5};
	bayes_score_t sc = {.lr_log_odds = 0.0};
	/* p = 0.5: half the rate toward the true class. */
	cr_assert_float_eq(bayes_lr_delta(&set, &sc, true), 0.25, 1e-6);
	cr_assert_float_eq(bayes_lr_delta(&set, &sc, false), -0.25, 1e-6);
	/* Already confident and right: almost no step. */
	sc.lr_log_odds = 12.0;
	cr_assert_lt(fabs(bayes_lr_delta(&set, &sc, true)), 1e-4);
	set.lr = false;
	cr_assert_eq(bayes_lr_delta(&set, &sc, false), 0);
}

Test(learning, mixture_by_hand)
{
	/* Equal weights: P(spam) the mean of the experts' P. */
	double mix[BAYES_MIX_EXPERTS] = {0, 0}, z[BAYES_MIX_EXPERTS] = {4, -4};
	cr_assert_float_eq(bayes_mix_log_odds(mix, z), 0.0, 1e-12);
	z[1] = 0; /* (0.98201 + 0.5) / 2 = 0.74101 */
	cr_assert_float_eq(bayes_mix_log_odds(mix, z), log(0.741007 / 0.258993), 1e-5);
	/* A saturated expert does not saturate the mixture: the other, all but
	 * out (weight e^-60), still holds P(ham) at e^-60 * sigmoid(3). */
	mix[1] = -60;
	z[0] = 800;
	z[1] = -3;
	cr_assert_float_eq(bayes_mix_log_odds(mix, z), 60.0 + log1p(exp(-3.0)), 1e-6);
	/* A message Bayes calls right (log-odds 2 for a spam) and the
	 * regression wrong (-2): the regression loses ln((1+e^2)/(1+e^-2)) = 2. */
	bayes_settings_t set = {.lr = true, .lr_mix = true, .lr_mix_share = 0};
	set.params.fisher_scale = 2;
	bayes_score_t sc = {.voted = true, .bayes_log_odds = 1.0, .lr_log_odds = -2.0};
	bayes_mix_step_t st;
	bayes_mix_step(&set, &sc, true, &st);
	cr_assert(st.on);
	double w[BAYES_MIX_EXPERTS] = {0, 0};
	bayes_mix_update(w, &st);
	cr_assert_float_eq(w[0], 0.0, 1e-12);
	cr_assert_float_eq(w[1], -2.0, 1e-12);
	/* The fixed share keeps the loser within reach: its weight, after any
	 * number of such steps, stays at share / 2 of the whole or more. */
	st.share = 1e-3;
	for (int i = 0; i < 1000; i++)
		bayes_mix_update(w, &st);
	cr_assert_gt(w[1], log(1e-3 / 2) - 1e-9);
	cr_assert_lt(w[1], log(1e-3 / 2) + 0.2); /* (1 + e^-2 ...) share / 2 */
	/* The regression's log-odds count clipped, as in the sum. */
	sc.lr_log_odds = -50;
	bayes_mix_step(&set, &sc, false, &st);
	cr_assert_float_eq(st.ll[1], -log1p(exp(-10.0)), 1e-12);
	/* No vote, or the mixture off: no step. */
	sc.voted = false;
	bayes_mix_step(&set, &sc, true, &st);
	cr_assert(!st.on);
	sc.voted = true;
	set.lr_mix = false;
	bayes_mix_step(&set, &sc, true, &st);
	cr_assert(!st.on);
}

Test(learning, mixture_weights_are_stored_and_score, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 8 << 20, BAYES_OPEN_CREATE);
	uint64_t keys[] = {3, 5, 7};
	bayes_totals_t t;
	bayes_counts_t c[3];
	cr_assert_eq(bayes_store_lookup(s, keys, 3, c, &t), BAYES_OK);
	cr_assert_eq(t.mix[0], 0); /* never learned with the mixture */
	cr_assert_eq(t.mix[1], 0);
	/* Two spams, the regression wrong on both, Bayes right on both. */
	bayes_learn_item_t it[2] = {item(BAYES_LEARN_SPAM, 1, keys, 2),
	                            item(BAYES_LEARN_SPAM, 2, keys + 1, 2)};
	bayes_mix_step_t st = {true, 0, {-0.1, -3.1}};
	it[0].mix = st;
	it[1].mix = st;
	it[1].lr_delta = -1.5f;
	cr_assert_eq(bayes_store_apply(s, it, 2, NULL), BAYES_OK);
	cr_assert_eq(bayes_store_lookup(s, keys, 3, c, &t), BAYES_OK);
	cr_assert_float_eq(t.mix[0], 0.0, 1e-12);
	cr_assert_float_eq(t.mix[1], -6.0, 1e-12);
	/* Scoring: the store's Bayes and the regression (keys 5 and 7 carry
	 * -1.5 each), pooled by those weights rather than added. */
	bayes_settings_t set = {.lr = true, .lr_weight = 1, .lr_mix = true};
	bayes_params_default(&set.params);
	bayes_tokens_t tok = {.keys = keys, .n = 3};
	arena_t *a = arena_new(4096);
	bayes_score_t sc;
	cr_assert_eq(bayes_score_tokens(s, &set, &tok, a, NULL, &sc), BAYES_OK);
	cr_assert(sc.voted);
	cr_assert_float_eq(sc.lr_log_odds, -3.0, 1e-6);
	double z[BAYES_MIX_EXPERTS];
	bayes_mix_experts(&set, sc.bayes_log_odds, sc.lr_log_odds, z);
	double want = bayes_mix_log_odds(t.mix, z);
	cr_assert_float_eq(sc.log_odds * set.params.fisher_scale, want, 1e-9);
	cr_assert_gt(sc.log_odds, 0); /* Bayes's spam, the regression all but out */
	/* The weights survive a dump and a load. */
	char *text = NULL;
	size_t n;
	FILE *fp = open_memstream(&text, &n);
	cr_assert_eq(bayes_store_dump(s, fp), BAYES_OK);
	fclose(fp);
	cr_assert_not_null(strstr(text, "\nlrmix 0 -6\n"), "%s", text);
	diag_t *d = diag_new();
	fp = fmemopen(text, n, "r");
	cr_assert_eq(bayes_store_load(s, fp, "again", false, d), BAYES_OK);
	fclose(fp);
	free(text);
	cr_assert_eq(bayes_store_lookup(s, keys, 3, c, &t), BAYES_OK);
	cr_assert_float_eq(t.mix[1], -6.0, 1e-12);
	arena_free(a);
	bayes_store_unref(s);
	diag_free(d);
}

/*
 * In the sum (bayes_lr without the mixture) the regression's hammy side
 * counts at most 4.5 and its spammy side up to 20: a spam whose many
 * hammy weights add up far below zero no longer sinks under every ham.
 */
Test(learning, regression_sum_bounds_its_hammy_side, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 8 << 20, BAYES_OPEN_CREATE);
	uint64_t hammy[] = {11, 12}, spammy[] = {21, 22}, mild[] = {31, 32}, most[] = {41, 42};
	bayes_learn_item_t it[4] = {
	    item(BAYES_LEARN_SPAM, 1, hammy, 2), item(BAYES_LEARN_HAM, 2, spammy, 2),
	    item(BAYES_LEARN_HAM, 3, mild, 2), item(BAYES_LEARN_HAM, 4, most, 2)};
	it[0].lr_delta = -4.0f; /* each key -4: the message's sum -8 */
	it[1].lr_delta = 6.0f;
	it[2].lr_delta = -1.0f;
	it[3].lr_delta = 13.0f;
	cr_assert_eq(bayes_store_apply(s, it, 4, NULL), BAYES_OK);
	bayes_settings_t set = {.lr = true, .lr_weight = 1};
	bayes_params_default(&set.params);
	double k = set.params.fisher_scale;
	arena_t *a = arena_new(4096);
	const struct {
		uint64_t *keys;
		double sum, counted;
	} want[] = {{hammy, -8, -4.5}, {spammy, 12, 12}, {mild, -2, -2}, {most, 26, 20}};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		bayes_tokens_t tok = {.keys = want[i].keys, .n = 2};
		bayes_score_t sc;
		cr_assert_eq(bayes_score_tokens(s, &set, &tok, a, NULL, &sc), BAYES_OK);
		cr_assert(sc.voted);
		cr_assert_float_eq(sc.lr_log_odds, want[i].sum, 1e-6);
		cr_assert_float_eq(sc.log_odds * k, k * sc.bayes_log_odds + want[i].counted, 1e-9,
		                   "message %zu: %g", i, sc.log_odds * k - k * sc.bayes_log_odds);
	}
	arena_free(a);
	bayes_store_unref(s);
}

Test(learning, weights_are_stored_and_older_values_read_as_zero, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 8 << 20, BAYES_OPEN_CREATE);
	/* A store written before the weights: 12-byte values, from a dump. */
	const char *dump = "sift-bayes-dump 1 tokenizer " BAYES_STR(
	    BAYES_TOKENIZER_VERSION) "\n"
	                             "totals 1 0\ntoken 0000000000000009 1 0 20000\n";
	diag_t *d = diag_new();
	FILE *fp = fmemopen((void *)dump, strlen(dump), "r");
	cr_assert_eq(bayes_store_load(s, fp, "old", false, d), BAYES_OK);
	fclose(fp);
	uint64_t keys[] = {9, 11};
	bayes_counts_t c[2];
	bayes_totals_t t;
	cr_assert_eq(bayes_store_lookup(s, keys, 2, c, &t), BAYES_OK);
	cr_assert_eq(c[0].spam, 1);
	cr_assert_eq(c[0].weight, 0);
	/* A learned message's step lands on each of its tokens... */
	bayes_learn_item_t it = item(BAYES_LEARN_SPAM, 1, keys, 2);
	it.lr_delta = 0.25f;
	cr_assert_eq(bayes_store_apply(s, &it, 1, NULL), BAYES_OK);
	bayes_store_lookup(s, keys, 2, c, &t);
	cr_assert_float_eq(c[0].weight, 0.25, 1e-6);
	cr_assert_float_eq(c[1].weight, 0.25, 1e-6);
	cr_assert_eq(c[0].spam, 2);
	/* ...and again when it is learned again (counts unchanged). */
	it.lr_delta = -0.5f;
	cr_assert_eq(bayes_store_apply(s, &it, 1, NULL), BAYES_OK);
	bayes_store_lookup(s, keys, 2, c, &t);
	cr_assert_float_eq(c[1].weight, -0.25, 1e-6);
	cr_assert_eq(c[1].spam, 1);
	/* The weight survives a dump and a load. */
	char *text = NULL;
	size_t n;
	fp = open_memstream(&text, &n);
	cr_assert_eq(bayes_store_dump(s, fp), BAYES_OK);
	fclose(fp);
	cr_assert_not_null(strstr(text, " -0.25\n"), "%s", text);
	fp = fmemopen(text, n, "r");
	cr_assert_eq(bayes_store_load(s, fp, "new", false, d), BAYES_OK);
	fclose(fp);
	free(text);
	bayes_store_lookup(s, keys, 2, c, &t);
	cr_assert_float_eq(c[1].weight, -0.25, 1e-6);
	bayes_store_unref(s);
	diag_free(d);
}

Test(learning, bound_prunes_old_hapaxes_first, .init = make_tmpdir, .fini = remove_tmpdir)
{
	bayes_store_t *s = open_store("db", 8 << 20, BAYES_OPEN_CREATE);
	/* Day 100: keys 1-10 in two messages (count 2), 11-20 once; day 200:
	 * keys 21-30 once. */
	uint64_t a[10], b[10], c2[10];
	for (int i = 0; i < 10; i++) {
		a[i] = 1 + i;
		b[i] = 11 + i;
		c2[i] = 21 + i;
	}
	bayes_store_set_day(s, 100);
	bayes_learn_item_t it[3] = {item(BAYES_LEARN_SPAM, 1, a, 10),
	                            item(BAYES_LEARN_HAM, 2, a, 10),
	                            item(BAYES_LEARN_HAM, 3, b, 10)};
	cr_assert_eq(bayes_store_apply(s, it, 3, NULL), BAYES_OK);
	bayes_store_set_day(s, 200);
	it[0] = item(BAYES_LEARN_SPAM, 4, c2, 10);
	cr_assert_eq(bayes_store_apply(s, it, 1, NULL), BAYES_OK);
	uint64_t removed = 0;
	cr_assert_eq(bayes_store_prune(s, 15, &removed), BAYES_OK);
	cr_assert_eq(removed, 15);
	bayes_counts_t c[30];
	bayes_totals_t t;
	uint64_t all[30];
	for (int i = 0; i < 30; i++)
		all[i] = 1 + i;
	bayes_store_lookup(s, all, 30, c, &t);
	int left_a = 0, left_b = 0, left_c = 0;
	for (int i = 0; i < 10; i++) {
		left_a += c[i].spam + c[i].ham > 0;
		left_b += c[10 + i].spam + c[10 + i].ham > 0;
		left_c += c[20 + i].spam + c[20 + i].ham > 0;
	}
	/* The old hapaxes went, then half of the newer ones; the tokens
	 * seen twice stayed though they are as old. */
	cr_assert_eq(left_a, 10);
	cr_assert_eq(left_b, 0);
	cr_assert_eq(left_c, 5);
	/* A bound applies by itself after a write that crosses it. */
	bayes_store_set_bound(s, 10);
	uint64_t more[] = {40, 41};
	it[0] = item(BAYES_LEARN_SPAM, 5, more, 2);
	cr_assert_eq(bayes_store_apply(s, it, 1, NULL), BAYES_OK);
	bayes_stats_t st;
	bayes_store_stats(s, &st);
	cr_assert_leq(st.tokens, 10);
	bayes_store_unref(s);
}

/*
 * A batch's changes are summed per key before they reach the store: a batch
 * large enough to spread over many buckets, whose keys span the whole 64-bit
 * range with a few in every message, learning, moving, relearning, touching
 * and forgetting, must leave the counts one-by-one application leaves, and
 * the weights of the changes summed in the batch's order.
 */
#define SUM_MESSAGES 3000
#define SUM_KEYS     40
#define SUM_POOL     4000

static uint64_t sum_key(unsigned i)
{
	/* Spread over all 64 bits (the top bit too, as sparse bigrams have). */
	uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
	x ^= x >> 29;
	return x * 0xbf58476d1ce4e5b9ULL;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static size_t pool_index(const uint64_t *sorted, uint64_t k)
{
	const uint64_t *p = bsearch(&k, sorted, SUM_POOL, sizeof(*sorted), u64_cmp);
	cr_assert_not_null(p);
	return (size_t)(p - sorted);
}

Test(store, batch_sums_per_key_equal_message_by_message, .init = make_tmpdir, .fini = remove_tmpdir)
{
	uint64_t *pool = malloc(SUM_POOL * sizeof(*pool));
	uint64_t *keys = malloc((size_t)SUM_MESSAGES * SUM_KEYS * sizeof(*keys));
	bayes_learn_item_t *it = malloc(SUM_MESSAGES * sizeof(*it));
	for (unsigned i = 0; i < SUM_POOL; i++)
		pool[i] = sum_key(i);
	qsort(pool, SUM_POOL, sizeof(*pool), u64_cmp);
	srand(12345);
	int n_touch = 0, n_forget = 0, n_move = 0;
	for (int m = 0; m < SUM_MESSAGES; m++) {
		uint64_t *k = keys + (size_t)m * SUM_KEYS;
		/* Three keys every message has (long runs of one key), the rest
		 * drawn from the pool, distinct and sorted as the tokenizer's. */
		size_t n = 0;
		for (int j = 0; j < 3; j++)
			k[n++] = pool[j * 1000];
		while (n < SUM_KEYS) {
			uint64_t x = pool[(unsigned)rand() % SUM_POOL];
			bool dup = false;
			for (size_t j = 0; j < n; j++)
				dup |= k[j] == x;
			if (!dup)
				k[n++] = x;
		}
		qsort(k, n, sizeof(*k), u64_cmp);
		int r = rand() % 20, id = m;
		bayes_op_t op = rand() % 2 ? BAYES_LEARN_SPAM : BAYES_LEARN_HAM;
		if (m > 10 && r <= 1) {
			/* An earlier message again, with its keys: moved, already
			 * known, or forgotten. */
			int e = rand() % m;
			memcpy(&id, it[e].digest, sizeof(id));
			memcpy(k, it[e].keys, it[e].n * sizeof(*k));
			n = it[e].n;
			if (r == 0)
				n_move++;
			else {
				op = BAYES_FORGET;
				n_forget++;
			}
		} else if (r == 2) {
			op = BAYES_TOUCH;
			n_touch++;
		}
		it[m] = item(op, id, k, n);
		if (op == BAYES_LEARN_SPAM || op == BAYES_LEARN_HAM)
			it[m].lr_delta = (float)((rand() % 2001) - 1000) / 7919.0f;
	}
	cr_assert_gt(n_touch, 50);
	cr_assert_gt(n_forget, 50);
	cr_assert_gt(n_move, 50);

	/* What the batch must come to: counts per message, in order; each
	 * key's weight the sum of its steps in the batch's order. */
	int32_t *spam = calloc(SUM_POOL, sizeof(*spam)), *ham = calloc(SUM_POOL, sizeof(*ham));
	float *w = calloc(SUM_POOL, sizeof(*w));
	int *had = malloc(SUM_MESSAGES * sizeof(*had)); /* 1 spam, 0 ham, -1 none */
	for (int m = 0; m < SUM_MESSAGES; m++)
		had[m] = -1;
	for (int m = 0; m < SUM_MESSAGES; m++) {
		int id;
		memcpy(&id, it[m].digest, sizeof(id));
		if (it[m].op == BAYES_TOUCH || (it[m].op == BAYES_FORGET && had[id] < 0))
			continue;
		int sign_old = had[id] >= 0 ? -1 : 0, was = had[id];
		bool spam_now = it[m].op == BAYES_LEARN_SPAM;
		bool again = it[m].op != BAYES_FORGET && was == (int)spam_now;
		had[id] = it[m].op == BAYES_FORGET ? -1 : again ? was : (int)spam_now;
		for (size_t j = 0; j < it[m].n; j++) {
			size_t x = pool_index(pool, it[m].keys[j]);
			if (it[m].op != BAYES_FORGET)
				w[x] += it[m].lr_delta;
			if (again)
				continue;
			if (was == 1)
				spam[x] += sign_old;
			else if (was == 0)
				ham[x] += sign_old;
			if (it[m].op != BAYES_FORGET)
				*(spam_now ? &spam[x] : &ham[x]) += 1;
		}
	}

	bayes_store_t *a = open_store("batch", 64 << 20, BAYES_OPEN_CREATE);
	bayes_store_t *b = open_store("single", 64 << 20, BAYES_OPEN_CREATE | BAYES_OPEN_NOSYNC);
	bayes_apply_result_t ra, rb, r1;
	cr_assert_eq(bayes_store_apply(a, it, SUM_MESSAGES, &ra), BAYES_OK);
	memset(&rb, 0, sizeof(rb));
	for (int m = 0; m < SUM_MESSAGES; m++) {
		cr_assert_eq(bayes_store_apply(b, &it[m], 1, &r1), BAYES_OK);
		rb.learned += r1.learned;
		rb.relearned += r1.relearned;
		rb.already += r1.already;
		rb.forgotten += r1.forgotten;
		rb.unknown += r1.unknown;
		rb.touched += r1.touched;
	}
	cr_assert_eq(memcmp(&ra, &rb, sizeof(ra)), 0);
	cr_assert_gt(ra.relearned, 10);
	cr_assert_gt(ra.forgotten, 10);

	bayes_counts_t *ca = malloc(SUM_POOL * sizeof(*ca)), *cb = malloc(SUM_POOL * sizeof(*cb));
	bayes_totals_t ta, tb;
	cr_assert_eq(bayes_store_lookup(a, pool, SUM_POOL, ca, &ta), BAYES_OK);
	cr_assert_eq(bayes_store_lookup(b, pool, SUM_POOL, cb, &tb), BAYES_OK);
	cr_assert_eq(ta.spam, tb.spam);
	cr_assert_eq(ta.ham, tb.ham);
	size_t present = 0;
	for (size_t x = 0; x < SUM_POOL; x++) {
		cr_assert_eq(ca[x].spam, (uint32_t)spam[x], "key %zu", x);
		cr_assert_eq(ca[x].ham, (uint32_t)ham[x], "key %zu", x);
		cr_assert_eq(ca[x].spam, cb[x].spam, "key %zu", x);
		cr_assert_eq(ca[x].ham, cb[x].ham, "key %zu", x);
		cr_assert_eq(ca[x].day, cb[x].day, "key %zu", x);
		if (spam[x] + ham[x] > 0) {
			present++;
			cr_assert_eq(ca[x].weight, w[x], "key %zu: %.9g, not %.9g", x,
			             (double)ca[x].weight, (double)w[x]);
		}
	}
	cr_assert_gt(present, SUM_POOL / 2);
	bayes_store_unref(a);
	bayes_store_unref(b);
	free(pool);
	free(keys);
	free(it);
	free(spam);
	free(ham);
	free(w);
	free(had);
	free(ca);
	free(cb);
}

/* A daemon's Bayes source with autolearn, its store, and a ham to give verdicts on. */
struct autolearn {
	diag_t *d;
	conf_t *c;
	void *shared;
	msg_t *m;
	const mime_t *mi;
	bayes_store_t *s;
};

static void autolearn_start(struct autolearn *a)
{
	a->d = diag_new();
	a->c = conf_parse("test.conf", "bayes_autolearn = yes\nbayes_map_size = 16M\n", a->d);
	ev_env_t env = {.state_dir = tmpdir, .offline = false};
	a->shared =
	    ev_started(&bayes_evidence, bayes_evidence.load(a->c, NULL, &env, a->d), &env, a->d);
	cr_assert_not_null(a->shared);
	a->m = load_msg(DATA "/check/ham-9.eml", &a->mi);
	char path[512];
	int err;
	snprintf(path, sizeof(path), "%s/bayes", tmpdir);
	a->s = bayes_store_open(path, 16 << 20, 0, &err);
	cr_assert_not_null(a->s);
}

/* What the store holds once the autolearn writer has applied what was queued. */
static bayes_totals_t autolearned(struct autolearn *a)
{
	bayes_store_flush(a->s);
	bayes_stats_t st;
	bayes_store_stats(a->s, &st);
	return st.totals;
}

static void autolearn_end(struct autolearn *a)
{
	bayes_store_unref(a->s);
	msg_free(a->m);
	bayes_evidence.release(a->shared);
	conf_free(a->c);
	diag_free(a->d);
}

Test(learning, autolearn_never_learns_what_bayes_alone_decided, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	struct autolearn a;
	autolearn_start(&a);
	/* Nothing but Bayes's own points, which made the message spam. */
	hits_t *h = hits_new(msg_arena(a.m));
	hits_add(h, "bayes", "BAYES_999", 5.0, "Bayes spam probability is 99.9 to 100%", "");
	bayes_evidence.verdict(a.shared, NULL, a.m, a.mi, h, 5.0, VERDICT_ADD_HEADER);
	bayes_totals_t t = autolearned(&a);
	cr_assert_eq(t.ham + t.spam, 0, "learned a verdict Bayes made alone");
	/* The same evidence with an accept is the other evidence's ham. */
	bayes_evidence.verdict(a.shared, NULL, a.m, a.mi, h, -1.9, VERDICT_ACCEPT);
	cr_assert_eq(autolearned(&a).ham, 1);
	autolearn_end(&a);
}

Test(learning, autolearn_skips_a_shortcircuit_verdict, .init = make_tmpdir, .fini = remove_tmpdir)
{
	struct autolearn a;
	autolearn_start(&a);
	/* Points from the rules far past the spam threshold, but one rule cut the rest short. */
	hits_t *h = hits_new(msg_arena(a.m));
	hits_add(h, "rules", "LISTED_SENDER", 20.0, "", "");
	hits_add(h, "rules", RULES_SHORTCIRCUIT, 100.0, "", "LISTED_SENDER (spam)");
	bayes_evidence.verdict(a.shared, NULL, a.m, a.mi, h, 120.0, VERDICT_REJECT);
	bayes_totals_t t = autolearned(&a);
	cr_assert_eq(t.ham + t.spam, 0, "learned a shortcircuit verdict");
	/* The same points without the cut are learned as spam. */
	hits_t *h2 = hits_new(msg_arena(a.m));
	hits_add(h2, "rules", "LISTED_SENDER", 20.0, "", "");
	bayes_evidence.verdict(a.shared, NULL, a.m, a.mi, h2, 20.0, VERDICT_REJECT);
	cr_assert_eq(autolearned(&a).spam, 1);
	autolearn_end(&a);
}

static bayes_totals_t learned_totals(void)
{
	char path[512];
	int err;
	snprintf(path, sizeof(path), "%s/bayes", tmpdir);
	bayes_store_t *s = bayes_store_open(path, 16 << 20, 0, &err);
	cr_assert_not_null(s);
	bayes_stats_t st;
	bayes_store_stats(s, &st);
	bayes_store_unref(s);
	return st.totals;
}

Test(learning, learn_on_error_skips_what_the_store_gets_right, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("test.conf",
	                       "bayes_min_spam = 5\nbayes_min_ham = 5\nbayes_map_size = 16M\n", d);
	cli_ctx_t ctx = {.conf = c, .state_dir = tmpdir, .diag = d};
	cr_assert_eq(run_learn(&ctx, "--spam", DATA "/spam"), 0);
	cr_assert_eq(run_learn(&ctx, "--ham", DATA "/ham"), 0);
	bayes_totals_t before = learned_totals();
	/* A ham the store already calls ham, confidently: not learned. */
	char *argv[] = {"learn", "--ham", "--mode", "train-on-error", DATA "/check/ham-9.eml",
	                NULL};
	optind = 0;
	cr_assert_eq(bayes_cmd_learn(&ctx, 5, argv), 0);
	bayes_totals_t t = learned_totals();
	cr_assert_eq(t.ham, before.ham);
	/* The same message said to be spam is an error: learned. */
	argv[1] = "--spam";
	optind = 0;
	cr_assert_eq(bayes_cmd_learn(&ctx, 5, argv), 0);
	t = learned_totals();
	cr_assert_eq(t.spam, before.spam + 1);
	/* A bad mode is refused. */
	argv[3] = "train-sometimes";
	optind = 0;
	cr_assert_eq(bayes_cmd_learn(&ctx, 5, argv), 2);
	conf_free(c);
	diag_free(d);
}

Test(learning, learn_until_no_error_learns_every_early_error, .init = make_tmpdir,
     .fini = remove_tmpdir)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("test.conf", "bayes_map_size = 16M\n", d);
	cli_ctx_t ctx = {.conf = c, .state_dir = tmpdir, .diag = d};
	/* Below bayes_min_spam the store does not vote: each message is
	 * learned, and a second pass that learns nothing new ends it. */
	char *argv[] = {"learn", "--spam", "--mode", "train-until-no-error", DATA "/spam", NULL};
	FILE *out = tmpfile();
	fflush(stdout);
	int saved = dup(1);
	dup2(fileno(out), 1);
	optind = 0;
	int rc = bayes_cmd_learn(&ctx, 5, argv);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	cr_assert_eq(rc, 0);
	cr_assert_eq(learned_totals().spam, 8);
	char text[4096] = "";
	rewind(out);
	text[fread(text, 1, sizeof(text) - 1, out)] = '\0';
	fclose(out);
	cr_assert_not_null(strstr(text, "; 2 pass(es)"), "%s", text);
	conf_free(c);
	diag_free(d);
}
