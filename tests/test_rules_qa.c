/*
 * test_rules_qa.c - rule QA over labelled fixtures (tests/data/qa) and the
 * score fitter's optimiser (rules_qa.h, rules_fit.h).
 */
#include "config.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bayes.h"
#include "rules_fit.h"
#include "rules_qa.h"
#include "scan.h"
#include "unit_util.h"

static char state_dir[UNIT_DIR_MAX];

static void setup(void)
{
	unit_mkdtemp(state_dir, sizeof(state_dir), "sift-test-qa");
}

static void teardown(void)
{
	char cmd[UNIT_PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state_dir);
	cr_assert_eq(system(cmd), 0);
}

static scan_gen_t *qa_gen(diag_t *d)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), "state_dir = %s\nrules = %s/qa/qa.cf\n", state_dir,
	         TEST_DATADIR);
	conf_t *c = conf_parse("test.conf", buf, d);
	cr_assert_not_null(c);
	ev_env_t env = {.state_dir = NULL, .offline = true};
	scan_gen_t *g = scan_gen_load(c, NULL, &env, d);
	cr_assert_not_null(g);
	cr_assert_eq(scan_gen_start(g, &env, d), 0);
	return g;
}

static long feat_of(const rules_qa_set_t *s, const char *name)
{
	for (size_t j = 0; j < s->nfeat; j++)
		if (strcmp(s->feat[j].name, name) == 0)
			return (long)j;
	return -1;
}

static void count(const rules_qa_set_t *s, const char *name, size_t *spam, size_t *ham)
{
	*spam = *ham = 0;
	long j = feat_of(s, name);
	if (j < 0)
		return;
	for (size_t i = 0; i < s->n; i++)
		if (rules_qa_has(s, i, (size_t)j))
			s->msg[i].spam ? (*spam)++ : (*ham)++;
}

Test(rules_qa, folds_parse_ranges_and_lists)
{
	unsigned long long m;
	cr_assert_eq(rules_qa_parse_folds("0-6", &m), 0);
	cr_assert_eq(m, 0x7fULL);
	cr_assert_eq(rules_qa_parse_folds("1,3,5-6", &m), 0);
	cr_assert_eq(m, 0x6aULL);
	cr_assert_eq(rules_qa_parse_folds("7-3", &m), -1);
	cr_assert_eq(rules_qa_parse_folds("1,,x", &m), -1);
	cr_assert_eq(rules_qa_parse_folds("64", &m), -1);
}

Test(rules_qa, manifest_selects_folds_and_groups_and_refuses_bad_lines)
{
	char err[256], path[512], root[512];
	snprintf(path, sizeof(path), "%s/qa/manifest.tsv", TEST_DATADIR);
	snprintf(root, sizeof(root), "%s/qa", TEST_DATADIR);
	rules_qa_set_t *s = rules_qa_set_new();
	cr_assert_eq(rules_qa_add_manifest(s, path, root, "0-1", NULL, err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_eq(s->n, 4);
	for (size_t i = 0; i < s->n; i++)
		cr_assert(s->msg[i].fold <= 1);
	rules_qa_set_free(s);
	s = rules_qa_set_new();
	cr_assert_eq(rules_qa_add_manifest(s, path, root, NULL, "h", err, sizeof(err)), 0);
	cr_assert_eq(s->n, 3);
	cr_assert(!s->msg[0].spam);
	rules_qa_set_free(s);

	char bad[UNIT_DIR_MAX];
	int fd = unit_mkstemps(bad, sizeof(bad), "sift-test-qa-manifest", "");
	FILE *fp = fdopen(fd, "w");
	fprintf(fp, "path\tlabel\tgroup\tbytes\tmd5\tfold\na.eml\tmaybe\tg\t1\tx\t0\n");
	fclose(fp);
	s = rules_qa_set_new();
	cr_assert_eq(rules_qa_add_manifest(s, bad, root, NULL, NULL, err, sizeof(err)), -1);
	cr_assert(strstr(err, ":2:") != NULL, "%s", err);
	rules_qa_set_free(s);
	unlink(bad);
}

Test(rules_qa, run_counts_hits_per_label_in_parallel, .init = setup, .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g = qa_gen(d);
	char dir[512], err[256];
	rules_qa_set_t *s = rules_qa_set_new();
	snprintf(dir, sizeof(dir), "%s/qa/spam", TEST_DATADIR);
	cr_assert_eq(rules_qa_add_dir(s, dir, true, err, sizeof(err)), 0);
	snprintf(dir, sizeof(dir), "%s/qa/ham", TEST_DATADIR);
	cr_assert_eq(rules_qa_add_dir(s, dir, false, err, sizeof(err)), 0);
	cr_assert_eq(rules_qa_run(s, g, 3, true), 0);
	cr_assert_eq(s->failed, 0);
	size_t sp, hm;
	count(s, "QA_SUBJ_WINNER", &sp, &hm);
	cr_assert(sp == 2 && hm == 1, "winner %zu/%zu", sp, hm);
	count(s, "QA_CLAIM_CASH", &sp, &hm);
	cr_assert(sp == 3 && hm == 0, "cash %zu/%zu", sp, hm);
	count(s, "QA_MEETING", &sp, &hm);
	cr_assert(sp == 0 && hm == 2, "meeting %zu/%zu", sp, hm);
	cr_assert_eq(feat_of(s, "QA_NEVER"), -1);

	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);
	rules_qa_report(s, scan_gen_module(g, "rules"), fp, true);
	fclose(fp);
	/* The never-hitting rule is listed too. */
	cr_assert(strstr(buf, "\nQA_NEVER\t1\t0\t0\t") != NULL, "%s", buf);
	cr_assert(strstr(buf, "\nQA_CLAIM_CASH\t2\t3\t0\t100.0000\t0.0000\t1.0000\t") != NULL, "%s",
	          buf);
	/* Meeting (2 ham) lies inside Date (all 6): Jaccard 2/6; it shares nothing else. */
	cr_assert(strstr(buf, "\tQA_HAS_DATE\t0.3333\t") != NULL, "%s", buf);
	free(buf);
	rules_qa_set_free(s);
	scan_gen_unref(g);
	diag_free(d);
}

/* Feature 0 marks spam most of the time, feature 1 is noise. */
static void synth(double *x, int *y, size_t n)
{
	unsigned v = 12345;
	for (size_t i = 0; i < n; i++) {
		v = v * 1103515245u + 12345u;
		y[i] = (v >> 16) & 1;
		v = v * 1103515245u + 12345u;
		bool flip = ((v >> 16) % 10) == 0;
		x[i * 2] = (y[i] ^ flip) ? 1 : 0;
		v = v * 1103515245u + 12345u;
		x[i * 2 + 1] = (v >> 16) & 1;
	}
}

Test(rules_fit, logistic_weights_evidence_and_ignores_noise)
{
	enum { N = 2000 };
	static double x[N * 2];
	static int y[N];
	synth(x, y, N);
	double w[2], b;
	rules_fit_logistic(x, y, NULL, N, 2, 0.1, NULL, NULL, w, &b);
	/* 90% agreement: log(0.9 / 0.1) = 2.2 logits between hit and not hit. */
	cr_assert(fabs(w[0] - 4.39) < 0.5, "w0 %g", w[0]);
	cr_assert(fabs(w[1]) < 0.3, "w1 %g", w[1]);
	cr_assert(fabs(b + w[0] / 2) < 0.4, "b %g", b);
}

Test(rules_fit, logistic_penalty_shrinks_and_bounds_hold)
{
	enum { N = 2000 };
	static double x[N * 2];
	static int y[N];
	synth(x, y, N);
	double w[2], w2[2], b;
	rules_fit_logistic(x, y, NULL, N, 2, 0.1, NULL, NULL, w, &b);
	rules_fit_logistic(x, y, NULL, N, 2, 1000, NULL, NULL, w2, &b);
	cr_assert(w2[0] < w[0] / 2, "penalised %g vs %g", w2[0], w[0]);
	/* A nice rule (weight <= 0) that marks spam gets no points at all. */
	double lo[2] = {-INFINITY, -INFINITY}, hi[2] = {0, INFINITY};
	rules_fit_logistic(x, y, NULL, N, 2, 0.1, lo, hi, w, &b);
	cr_assert_eq(w[0], 0.0);
}

Test(rules_fit, bayes_points_are_scaled_clipped_log_odds)
{
	/* What the fit fits on is what the daemon adds: logit(P), clipped, scaled. */
	cr_assert_float_eq(bayes_logodds_points(0.5, 2.0, 8.0), 0.0, 1e-12);
	cr_assert_float_eq(bayes_logodds_points(0.9, 1.0, 8.0), log(9.0), 1e-12);
	cr_assert_float_eq(bayes_logodds_points(0.1, 2.0, 8.0), -2.0 * log(9.0), 1e-12);
	cr_assert_float_eq(bayes_logodds_points(1.0 - 1e-9, 1.5, 8.0), 12.0, 1e-12);
	cr_assert_float_eq(bayes_logodds_points(1.0, 1.5, 8.0), 12.0, 1e-12);
	cr_assert_float_eq(bayes_logodds_points(0.0, 1.5, 8.0), -12.0, 1e-12);
}
