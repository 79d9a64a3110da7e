/*
 * rules_fit.c - `sift rules fit`: rule scores and Bayes's weight fitted to
 * labelled mail by L2-regularised logistic regression, cross-validated,
 * scaled to the configured add_header threshold (see rules_fit.h).
 */
#include "config.h"

#include "rules_fit.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bayes.h"
#include "rules_int.h"
#include "rules_qa.h"
#include "xalloc.h"

#define FIT_MAX_SWEEPS   300
#define FIT_TOL          1e-7
#define FIT_MAX_STEP     4.0
#define FIT_DEFAULT_K    5
#define FIT_PAUC_FPR     0.01
#define FIT_MAX_FOLDS    64
#define FIT_SCALE_PASSES 3
#define FIT_MIN_POINTS   0.001 /* a fitted 0 would disable the rule (metas see it unhit) */
#define FIT_NAME_BYTES   256
#define FIT_LINE_BYTES   4096

static const double lambdas[] = {0.1, 0.3, 1, 3, 10, 30, 100, 1000, 1e5};
static const double clips[] = {4, 8, 16, 32};
/* Bayes's own, light penalty: it keeps the weight finite when Bayes separates the classes. */
static const double bayes_lambdas[] = {0.01, 0.1, 1};
#define N_LAMBDAS  (sizeof(lambdas) / sizeof(lambdas[0]))
#define N_CLIPS    (sizeof(clips) / sizeof(clips[0]))
#define N_BLAMBDAS (sizeof(bayes_lambdas) / sizeof(bayes_lambdas[0]))

/* Columns of non-zero entries: the features are mostly sparse binary hits. */
struct cols {
	size_t nf;
	size_t *start; /* nf + 1 */
	size_t *row;
	double *val;
};

static void cols_build(struct cols *c, const double *x, const unsigned char *use, size_t n,
                       size_t nf)
{
	c->nf = nf;
	c->start = xalloc_calloc(nf + 1, sizeof(size_t));
	size_t nnz = 0;
	for (size_t j = 0; j < nf; j++)
		for (size_t i = 0; i < n; i++)
			if ((use == NULL || use[i]) && x[i * nf + j] != 0)
				nnz++;
	c->row = xalloc_calloc(nnz + 1, sizeof(size_t));
	c->val = xalloc_calloc(nnz + 1, sizeof(double));
	nnz = 0;
	for (size_t j = 0; j < nf; j++) {
		c->start[j] = nnz;
		for (size_t i = 0; i < n; i++)
			if ((use == NULL || use[i]) && x[i * nf + j] != 0) {
				c->row[nnz] = i;
				c->val[nnz++] = x[i * nf + j];
			}
	}
	c->start[nf] = nnz;
}

static void cols_free(struct cols *c)
{
	free(c->start);
	free(c->row);
	free(c->val);
}

static double sigmoid(double z)
{
	return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/*
 * Cyclic coordinate descent with one Newton step per coordinate, each
 * projected onto its bounds: simple, exact for box constraints (the nice
 * and lock rules), and cheap per sweep on sparse columns.
 */
static void fit_cols(const struct cols *c, const int *y, const double *off,
                     const unsigned char *use, size_t n, double lambda, const double *lo,
                     const double *hi, double *w, double *b, size_t free_col, double free_lambda)
{
	size_t nf = c->nf;
	double *z = xalloc_calloc(n + 1, sizeof(double));
	for (size_t j = 0; j < nf; j++)
		w[j] = lo && lo[j] > 0 ? lo[j] : hi && hi[j] < 0 ? hi[j] : 0;
	*b = 0;
	for (size_t i = 0; i < n; i++)
		z[i] = off ? off[i] : 0;
	for (size_t j = 0; j < nf; j++)
		for (size_t k = c->start[j]; k < c->start[j + 1]; k++)
			z[c->row[k]] += w[j] * c->val[k];
	for (int sweep = 0; sweep < FIT_MAX_SWEEPS; sweep++) {
		double maxd = 0;
		/* The intercept, unpenalised. */
		double g = 0, h = 1e-9;
		for (size_t i = 0; i < n; i++) {
			if (use && !use[i])
				continue;
			double p = sigmoid(z[i] + *b);
			g += p - y[i];
			h += p * (1 - p);
		}
		double d = -g / h;
		d = d > FIT_MAX_STEP ? FIT_MAX_STEP : d < -FIT_MAX_STEP ? -FIT_MAX_STEP : d;
		*b += d;
		maxd = fabs(d);
		for (size_t j = 0; j < nf; j++) {
			/*
			 * free_col (Bayes's log-odds) has its own, light penalty:
			 * one weight on thousands of messages needs little
			 * shrinking, and the largest rule penalties then leave
			 * Bayes alone, so the choice by cross-validation includes
			 * "the rules add nothing".
			 */
			double lam = j == free_col ? free_lambda : lambda;
			g = lam * w[j];
			h = lam + 1e-9;
			for (size_t k = c->start[j]; k < c->start[j + 1]; k++) {
				size_t i = c->row[k];
				double p = sigmoid(z[i] + *b), v = c->val[k];
				g += (p - y[i]) * v;
				h += p * (1 - p) * v * v;
			}
			double nw = w[j] - g / h;
			if (nw - w[j] > FIT_MAX_STEP)
				nw = w[j] + FIT_MAX_STEP;
			if (w[j] - nw > FIT_MAX_STEP)
				nw = w[j] - FIT_MAX_STEP;
			if (lo && nw < lo[j])
				nw = lo[j];
			if (hi && nw > hi[j])
				nw = hi[j];
			d = nw - w[j];
			if (d != 0) {
				for (size_t k = c->start[j]; k < c->start[j + 1]; k++)
					z[c->row[k]] += d * c->val[k];
				w[j] = nw;
			}
			if (fabs(d) > maxd)
				maxd = fabs(d);
		}
		if (maxd < FIT_TOL)
			break;
	}
	free(z);
}

/*
 * The rules first, then Bayes on top. Stage one fits the rules' weights
 * with Bayes's weight held at 0, so they stand on their own, as
 * SpamAssassin's score set without Bayes does: a fresh install with an
 * untrained store, mail of another era that fools the store, and
 * autolearn (which compares the score without Bayes's points) all need
 * rules whose points mean something alone. A joint fit on a corpus Bayes
 * knows well drives them to nearly 0. Stage two fits Bayes's weight and
 * the intercept with the rules' points as fixed offsets, so the sum is
 * calibrated.
 */
static void fit_two_stage(const struct cols *c, const int *y, const double *off,
                          const unsigned char *use, size_t n, double lambda, const double *lo,
                          const double *hi, double *w, double *b, size_t bcol, double blambda)
{
	size_t nf = c->nf;
	double *lo2 = xalloc_calloc(nf + 1, sizeof(double));
	double *hi2 = xalloc_calloc(nf + 1, sizeof(double));
	double *w2 = xalloc_calloc(nf + 1, sizeof(double));
	double *off2 = xalloc_calloc(n + 1, sizeof(double));
	memcpy(lo2, lo, nf * sizeof(double));
	memcpy(hi2, hi, nf * sizeof(double));
	lo2[bcol] = hi2[bcol] = 0;
	fit_cols(c, y, off, use, n, lambda, lo2, hi2, w, b, bcol, blambda);
	for (size_t i = 0; i < n; i++)
		off2[i] = off ? off[i] : 0;
	for (size_t j = 0; j < nf; j++) {
		if (j == bcol)
			continue;
		for (size_t k = c->start[j]; k < c->start[j + 1]; k++)
			off2[c->row[k]] += w[j] * c->val[k];
		lo2[j] = hi2[j] = 0;
	}
	lo2[bcol] = lo[bcol];
	hi2[bcol] = hi[bcol];
	fit_cols(c, y, off2, use, n, lambda, lo2, hi2, w2, b, bcol, blambda);
	w[bcol] = w2[bcol];
	free(lo2);
	free(hi2);
	free(w2);
	free(off2);
}

void rules_fit_logistic(const double *x, const int *y, const double *off, size_t n, size_t nf,
                        double lambda, const double *lo, const double *hi, double *w, double *b)
{
	struct cols c;
	cols_build(&c, x, NULL, n, nf);
	fit_cols(&c, y, off, NULL, n, lambda, lo, hi, w, b, (size_t)-1, 0);
	cols_free(&c);
}

/* ------------------------------------------------------------ figures */

struct scored {
	double s;
	int y;
};

static int cmp_scored(const void *a, const void *b)
{
	const struct scored *x = a, *y = b;
	return x->s < y->s ? -1 : x->s > y->s;
}

/* ROC AUC (ties count one half) and spam recall at ham FP rates, as contrib/eval/roc.py. */
static void figures(const double *s, const int *y, size_t n, double *auc, double *r01, double *r1)
{
	struct scored *v = xalloc_calloc(n + 1, sizeof(*v));
	size_t ns = 0, nh = 0;
	for (size_t i = 0; i < n; i++) {
		v[i] = (struct scored){s[i], y[i]};
		y[i] ? ns++ : nh++;
	}
	qsort(v, n, sizeof(*v), cmp_scored);
	double rank_sum = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i, sp = 0;
		while (j < n && v[j].s == v[i].s)
			sp += (size_t)v[j++].y;
		rank_sum += sp * ((i + 1 + j) / 2.0);
		i = j;
	}
	*auc = ns && nh ? (rank_sum - ns * (ns + 1) / 2.0) / ((double)ns * nh) : NAN;
	/* The k-th highest ham score: at most k hams above the threshold. */
	double rates[2] = {0.001, 0.01}, *out[2] = {r01, r1};
	for (int q = 0; q < 2; q++) {
		size_t k = (size_t)(rates[q] * nh + 1e-9), seen = 0;
		double thr = -INFINITY;
		for (size_t i = n; i-- > 0;)
			if (!v[i].y && seen++ == k) {
				thr = v[i].s;
				break;
			}
		size_t above = 0;
		for (size_t i = 0; i < n; i++)
			if (v[i].y && v[i].s > thr)
				above++;
		*out[q] = ns ? (double)above / ns : NAN;
	}
	free(v);
}

/*
 * Partial ROC AUC over ham false-positive rates 0..rate, scaled to 0..1
 * (ties count one half): what the low-FP end of the ranking is worth,
 * where a mail filter sets its thresholds.
 */
static double partial_auc(const double *s, const int *y, size_t n, double rate)
{
	struct scored *v = xalloc_calloc(n + 1, sizeof(*v));
	size_t ns = 0, nh = 0;
	for (size_t i = 0; i < n; i++) {
		v[i] = (struct scored){s[i], y[i]};
		y[i] ? ns++ : nh++;
	}
	qsort(v, n, sizeof(*v), cmp_scored);
	size_t limit = (size_t)(rate * nh + 1e-9), hams = 0, spam_above = 0;
	double area = 0;
	/* From the top: each ham passed adds the share of spam ranked above it. */
	for (size_t i = n; i-- > 0 && hams < limit;) {
		if (v[i].y) {
			spam_above++;
			continue;
		}
		size_t tied = 0;
		for (size_t k = i; k-- > 0 && v[k].s == v[i].s;)
			tied += (size_t)v[k].y;
		area += (spam_above + 0.5 * tied) / (double)(ns ? ns : 1);
		hams++;
	}
	free(v);
	return limit ? area / limit : 0;
}

/* The lowest threshold above which at most rate * hams score (strictly above). */
static double threshold_for(const double *s, const int *y, size_t n, double rate)
{
	size_t nh = 0;
	for (size_t i = 0; i < n; i++)
		nh += !y[i];
	double *h = xalloc_calloc(nh + 1, sizeof(double));
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!y[i])
			h[k++] = s[i];
	struct scored *tmp = NULL;
	(void)tmp;
	/* descending */
	for (size_t a = 1; a < nh; a++)
		for (size_t c = a; c > 0 && h[c - 1] < h[c]; c--) {
			double t = h[c];
			h[c] = h[c - 1];
			h[c - 1] = t;
		}
	size_t allowed = (size_t)(rate * nh + 1e-9);
	double thr = allowed < nh ? h[allowed] : -INFINITY;
	free(h);
	return thr;
}

/* ------------------------------------------------------------ the command */

struct fit_opts {
	const char *out, *lock, *oof, *heldout;
	double fpr;
	long k;
	double clip; /* 0: chosen by CV */
};

static int fit_extra(int ch, const char *arg, void *ud)
{
	struct fit_opts *o = ud;
	char *end;
	switch (ch) {
	case 'o': o->out = arg; return 0;
	case 'L': o->lock = arg; return 0;
	case 'B': o->oof = arg; return 0;
	case 'P':
		o->fpr = strtod(arg, &end);
		if (*end || !(o->fpr >= 0 && o->fpr < 0.5))
			break;
		return 0;
	case 'K':
		o->k = strtol(arg, &end, 10);
		if (*end || o->k < 2 || o->k > FIT_MAX_FOLDS)
			break;
		return 0;
	case 'W': o->heldout = arg; return 0;
	case 'C':
		o->clip = strtod(arg, &end);
		if (*end || !(o->clip >= 0.1 && o->clip <= 100))
			break;
		return 0;
	}
	fprintf(stderr, "sift rules fit: bad value '%s'\n", arg ? arg : "");
	return -1;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* Reads "name<TAB>P" lines into the messages' bayes_p by file name; counts the misses. */
static int read_oof(rules_qa_set_t *s, const char *path, size_t *missing)
{
	FILE *fp = fopen(path, "r");
	if (fp == NULL) {
		fprintf(stderr, "sift rules fit: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 1;
	while (cap < 2 * s->n + 2)
		cap *= 2;
	size_t *slot = xalloc_calloc(cap, sizeof(size_t));
	for (size_t i = 0; i < s->n; i++) {
		const char *b = base_name(s->msg[i].path);
		size_t h = 5381;
		for (const char *q = b; *q; q++)
			h = h * 33 + (unsigned char)*q;
		size_t k = h & (cap - 1);
		while (slot[k])
			k = (k + 1) & (cap - 1);
		slot[k] = i + 1;
		s->msg[i].bayes_p = NAN;
	}
	unsigned char *seen = xalloc_calloc(s->n + 1, 1);
	char line[FIT_LINE_BYTES];
	unsigned ln = 0;
	int rc = 0;
	while (fgets(line, sizeof(line), fp) != NULL) {
		ln++;
		line[strcspn(line, "\r\n")] = '\0';
		char *tab = strchr(line, '\t');
		if (line[0] == '\0' || line[0] == '#')
			continue;
		char *end = NULL;
		double p = tab ? strtod(tab + 1, &end) : NAN;
		if (tab == NULL || (strcmp(tab + 1, "-") != 0 && (*end || !(p >= 0 && p <= 1)))) {
			fprintf(stderr,
			        "sift rules fit: %s:%u: expected 'name<TAB>P' (P 0..1 or -)\n",
			        path, ln);
			rc = -1;
			break;
		}
		*tab = '\0';
		const char *b = base_name(line);
		size_t h = 5381;
		for (const char *q = b; *q; q++)
			h = h * 33 + (unsigned char)*q;
		for (size_t k = h & (cap - 1); slot[k]; k = (k + 1) & (cap - 1))
			if (strcmp(base_name(s->msg[slot[k] - 1].path), b) == 0) {
				s->msg[slot[k] - 1].bayes_p = strcmp(tab + 1, "-") == 0 ? NAN : p;
				seen[slot[k] - 1] = 1;
				break;
			}
	}
	fclose(fp);
	*missing = 0;
	for (size_t i = 0; i < s->n; i++)
		*missing += !seen[i];
	free(seen);
	free(slot);
	return rc;
}

struct lock {
	char name[FIT_NAME_BYTES];
	double points;
};

static int read_locks(const char *path, struct lock **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	FILE *fp = fopen(path, "r");
	if (fp == NULL) {
		fprintf(stderr, "sift rules fit: %s: %s\n", path, strerror(errno));
		return -1;
	}
	char line[FIT_LINE_BYTES];
	unsigned ln = 0;
	size_t cap = 0;
	int rc = 0;
	while (fgets(line, sizeof(line), fp) != NULL) {
		ln++;
		char *p = line + strspn(line, " \t");
		if (*p == '#' || *p == '\n' || *p == '\0')
			continue;
		char name[FIT_NAME_BYTES];
		double v;
		char extra;
		if (sscanf(p, "score %255s %lf %c", name, &v, &extra) != 2 || !isfinite(v) ||
		    fabs(v) > HITS_MAX_SCORE) {
			fprintf(stderr, "sift rules fit: %s:%u: expected 'score NAME POINTS'\n",
			        path, ln);
			rc = -1;
			break;
		}
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			*out = xalloc_realloc(*out, cap * sizeof(**out));
		}
		snprintf((*out)[*n].name, FIT_NAME_BYTES, "%s", name);
		(*out)[(*n)++].points = v;
	}
	fclose(fp);
	return rc;
}

static double bayes_feature(double p, double clip)
{
	return isnan(p) ? 0.0 : bayes_logodds_points(p, 1.0 / clip, clip);
}

int rules_fit_cmd(cli_ctx_t *ctx, int argc, char **argv)
{
	static const struct option extra[] = {{"output", required_argument, NULL, 'o'},
	                                      {"lock", required_argument, NULL, 'L'},
	                                      {"bayes-oof", required_argument, NULL, 'B'},
	                                      {"fpr", required_argument, NULL, 'P'},
	                                      {"k", required_argument, NULL, 'K'},
	                                      {"bayes-clip", required_argument, NULL, 'C'},
	                                      {"held-out", required_argument, NULL, 'W'},
	                                      {NULL, 0, NULL, 0}};
	struct fit_opts o = {.k = FIT_DEFAULT_K};
	rules_qa_cli_t in;
	struct lock *locks = NULL;
	size_t nlocks = 0;
	int rc = rules_qa_cli_input(&in, argc, argv, ctx, extra, fit_extra, &o);
	if (rc == 0 && o.lock != NULL && read_locks(o.lock, &locks, &nlocks) < 0)
		rc = 1;
	double add_header = 5.0, reject = 15.0;
	if (rc == 0) {
		/* Read before the generation takes the configuration. */
		conf_double_or_off(ctx->conf, "reject_score", 15.0, INFINITY, &reject, ctx->diag);
		conf_double_or_off(ctx->conf, "add_header_score", 5.0, INFINITY, &add_header,
		                   ctx->diag);
		if (!isfinite(add_header) || add_header <= 0) {
			fprintf(stderr,
			        "sift rules fit: add_header_score must be a positive number\n");
			rc = 1;
		}
	}
	if (rc == 0)
		rc = rules_qa_cli_score(&in, ctx, false);
	if (rc != 0) {
		rules_qa_cli_done(&in);
		free(locks);
		return rc;
	}
	rules_qa_set_t *s = in.set;
	const struct rules *r = scan_gen_module(in.gen, "rules");
	if (o.oof != NULL) {
		size_t missing;
		if (read_oof(s, o.oof, &missing) < 0) {
			rules_qa_cli_done(&in);
			free(locks);
			return 1;
		}
		if (missing)
			fprintf(stderr,
			        "sift rules fit: %zu message(s) have no line in %s: no Bayes\n",
			        missing, o.oof);
	} else {
		fprintf(stderr,
		        "sift rules fit: no --bayes-oof: Bayes's probabilities come from the "
		        "configured store, which may have learned these very messages\n");
	}

	/* Messages that were read, and their folds. */
	size_t n = 0;
	size_t *mi = xalloc_calloc(s->n + 1, sizeof(size_t));
	for (size_t i = 0; i < s->n; i++)
		if (s->msg[i].ok)
			mi[n++] = i;
	int *y = xalloc_calloc(n + 1, sizeof(int));
	int *fold = xalloc_calloc(n + 1, sizeof(int));
	bool manifest_folds = true;
	for (size_t q = 0; q < n; q++)
		if (s->msg[mi[q]].fold < 0)
			manifest_folds = false;
	/* One manifest fold cannot be cross-validated: then k folds by position. */
	for (size_t q = 1; manifest_folds && q < n; q++)
		if (s->msg[mi[q]].fold != s->msg[mi[0]].fold)
			break;
		else if (q + 1 == n)
			manifest_folds = false;
	int folds[FIT_MAX_FOLDS], nfolds = 0;
	size_t nspam_all = 0;
	for (size_t q = 0; q < n; q++) {
		y[q] = s->msg[mi[q]].spam;
		nspam_all += (size_t)y[q];
		fold[q] = manifest_folds ? s->msg[mi[q]].fold : (int)(q % (size_t)o.k);
		bool known = false;
		for (int f = 0; f < nfolds; f++)
			known |= folds[f] == fold[q];
		if (!known && nfolds < FIT_MAX_FOLDS)
			folds[nfolds++] = fold[q];
	}
	if (nspam_all < 2 || n - nspam_all < 2 || nfolds < 2) {
		fprintf(stderr,
		        "sift rules fit: needs at least 2 spam, 2 ham and 2 folds (have %zu, "
		        "%zu, %d)\n",
		        nspam_all, n - nspam_all, nfolds);
		free(mi);
		free(y);
		free(fold);
		free(locks);
		rules_qa_cli_done(&in);
		return 1;
	}

	/*
	 * Features: each rule that hit (not locked), each other non-Bayes hit
	 * name, then Bayes. Locked rules and sources we cannot score are
	 * offsets in points, converted to logits by the current scale.
	 */
	size_t nf = 0;
	long *fcol = xalloc_calloc(s->nfeat + 1, sizeof(long));
	size_t *colfeat = xalloc_calloc(s->nfeat + 2, sizeof(size_t));
	double *lockpts = xalloc_calloc(s->nfeat + 1, sizeof(double));
	bool *locked = xalloc_calloc(s->nfeat + 1, sizeof(bool));
	for (size_t j = 0; j < s->nfeat; j++) {
		fcol[j] = -1;
		if (strcmp(s->feat[j].source, "bayes") == 0)
			continue;
		for (size_t l = 0; l < nlocks; l++)
			if (strcmp(locks[l].name, s->feat[j].name) == 0) {
				locked[j] = true;
				lockpts[j] = locks[l].points;
			}
		if (locked[j])
			continue;
		colfeat[nf] = j;
		fcol[j] = (long)nf++;
	}
	size_t bcol = nf++;
	double *lo = xalloc_calloc(nf + 1, sizeof(double));
	double *hi = xalloc_calloc(nf + 1, sizeof(double));
	for (size_t c = 0; c < nf; c++) {
		lo[c] = -INFINITY;
		hi[c] = INFINITY;
	}
	for (size_t c = 0; c + 1 < nf; c++) {
		const rules_qa_feat_t *f = &s->feat[colfeat[c]];
		long ri = r && strcmp(f->source, "rules") == 0
		              ? rules_find((const rules_t *)r, f->name)
		              : -1;
		/*
		 * A rule keeps the sign its author meant, as SpamAssassin's score
		 * ranges do: a spam sign that the fit made negative (it overlaps a
		 * stronger source) would let a sender lower his score by adding it.
		 */
		if (ri >= 0 && (r->v[ri].tflags & TF_NICE))
			hi[c] = 0;
		else if (ri >= 0)
			lo[c] = 0;
	}
	lo[bcol] = 0; /* Bayes's log-odds never count against spam */
	double *x = xalloc_calloc(n * nf + 1, sizeof(double));
	double *lockoff = xalloc_calloc(n + 1, sizeof(double));
	double *bayes_p = xalloc_calloc(n + 1, sizeof(double));
	for (size_t q = 0; q < n; q++) {
		const rules_qa_msg_t *m = &s->msg[mi[q]];
		for (size_t k = 0; k < m->nfeat; k++) {
			size_t j = m->feat[k];
			if (fcol[j] >= 0)
				x[q * nf + fcol[j]] = 1;
			if (locked[j])
				lockoff[q] += lockpts[j];
		}
		bayes_p[q] = m->bayes_p;
	}

	/* Cross-validation over the penalty and Bayes's clip. */
	double *w = xalloc_calloc(nf + 1, sizeof(double));
	double *off = xalloc_calloc(n + 1, sizeof(double));
	double *oof = xalloc_calloc(n + 1, sizeof(double));
	double *best_oof = xalloc_calloc(n + 1, sizeof(double));
	unsigned char *use = xalloc_calloc(n + 1, 1);
	double scale = 1.0; /* points per logit; refined below when locks need it */
	double offset = 0;  /* points added with Bayes's contribution */
	double best_loss = INFINITY, best_lambda = lambdas[0], best_clip = clips[0], b = 0;
	double best_blambda = bayes_lambdas[0];
	size_t nclips = o.clip > 0 ? 1 : N_CLIPS;
	for (int pass = 0; pass < (nlocks ? FIT_SCALE_PASSES : 1); pass++) {
		best_loss = INFINITY;
		for (size_t q = 0; q < n; q++)
			off[q] = lockoff[q] / scale;
		for (size_t ci = 0; ci < nclips; ci++) {
			double clip = o.clip > 0 ? o.clip : clips[ci];
			for (size_t q = 0; q < n; q++)
				x[q * nf + bcol] = bayes_feature(bayes_p[q], clip);
			for (size_t gi = 0; gi < N_LAMBDAS * N_BLAMBDAS; gi++) {
				size_t li = gi / N_BLAMBDAS, bi = gi % N_BLAMBDAS;
				double loss = 0;
				for (int f = 0; f < nfolds; f++) {
					for (size_t q = 0; q < n; q++)
						use[q] = fold[q] != folds[f];
					struct cols c;
					cols_build(&c, x, use, n, nf);
					fit_two_stage(&c, y, off, use, n, lambdas[li], lo, hi, w,
					              &b, bcol, bayes_lambdas[bi]);
					cols_free(&c);
					for (size_t q = 0; q < n; q++) {
						if (use[q])
							continue;
						double z = b + off[q];
						for (size_t j = 0; j < nf; j++)
							z += w[j] * x[q * nf + j];
						oof[q] = z;
						double p = sigmoid(z);
						loss -=
						    log(y[q] ? fmax(p, 1e-15) : fmax(1 - p, 1e-15));
					}
				}
				/*
				 * Chosen on held-out log-loss, the fit's own objective:
				 * the partial AUC to 1% false positives rests on a few
				 * dozen hams and swings with them (it is printed).
				 */
				if (loss < best_loss) {
					best_loss = loss;
					best_lambda = lambdas[li];
					best_blambda = bayes_lambdas[bi];
					best_clip = clip;
					memcpy(best_oof, oof, n * sizeof(double));
				}
			}
		}
		/* The final fit on everything, and the scale from the held-out logits. */
		for (size_t q = 0; q < n; q++)
			x[q * nf + bcol] = bayes_feature(bayes_p[q], best_clip);
		{
			struct cols c;
			cols_build(&c, x, NULL, n, nf);
			fit_two_stage(&c, y, off, NULL, n, best_lambda, lo, hi, w, &b, bcol,
			              best_blambda);
			cols_free(&c);
		}
		double za = threshold_for(best_oof, y, n, o.fpr);
		/* Just above the chosen ham: halfway to the next spam logit above it. */
		double next = INFINITY;
		for (size_t q = 0; q < n; q++)
			if (y[q] && best_oof[q] > za && best_oof[q] < next)
				next = best_oof[q];
		if (isfinite(next))
			za = (za + next) / 2;
		/*
		 * Points are s * (z - b): no intercept. When the add_header logit
		 * lies less than one logit above the intercept, that would take
		 * a huge or negative scale; then the median held-out ham scores
		 * 0 points instead, and the difference rides on Bayes's
		 * contribution as an offset.
		 */
		if (za - b >= 1) {
			scale = add_header / (za - b);
			offset = 0;
		} else {
			double zm = threshold_for(best_oof, y, n, 0.5);
			scale = add_header / (za - zm > 1 ? za - zm : 1);
			offset = add_header - scale * (za - b);
		}
	}

	if (rc == 0) {
		FILE *out = stdout;
		if (o.out != NULL && (out = fopen(o.out, "w")) == NULL) {
			fprintf(stderr, "sift rules fit: %s: %s\n", o.out, strerror(errno));
			rc = 1;
		}
		size_t nspam = 0;
		for (size_t q = 0; q < n; q++)
			nspam += (size_t)y[q];
		double auc, r01, r1, bauc, br01, br1;
		figures(best_oof, y, n, &auc, &r01, &r1);
		double *bl = xalloc_calloc(n + 1, sizeof(double));
		for (size_t q = 0; q < n; q++)
			bl[q] = isnan(bayes_p[q]) ? 0.5 : bayes_p[q];
		figures(bl, y, n, &bauc, &br01, &br1);
		double bpauc = partial_auc(bl, y, n, FIT_PAUC_FPR);
		free(bl);
		double bscale = scale * w[bcol] / best_clip;
		if (rc == 0) {
			fprintf(
			    out,
			    "# Scores fitted by `sift rules fit` on %zu spam and %zu ham, %d-fold "
			    "cross-validated:\n"
			    "# L2 penalty %g (Bayes's %g), Bayes log-odds clipped at %g; %.4f "
			    "points "
			    "per logit.\n"
			    "# Held out: ROC AUC %.5f, recall %.4f at 0.1%% and %.4f at 1%% FPR\n"
			    "# (Bayes alone: AUC %.5f, recall %.4f and %.4f).\n"
			    "# Configuration to go with these scores:\n"
			    "#   bayes_logodds_scale = %.4f\n"
			    "#   bayes_logodds_clip = %g\n"
			    "#   bayes_logodds_offset = %.4f\n",
			    nspam, n - nspam, nfolds, best_lambda, best_blambda, best_clip, scale,
			    auc, r01, r1, bauc, br01, br1, bscale, best_clip, offset);
			for (size_t c = 0; c + 1 < nf; c++) {
				const rules_qa_feat_t *f = &s->feat[colfeat[c]];
				double pts = scale * w[c];
				if (fabs(pts) < FIT_MIN_POINTS)
					pts = hi[c] <= 0 ? -FIT_MIN_POINTS : FIT_MIN_POINTS;
				if (strcmp(f->source, "rules") == 0)
					fprintf(out, "score %s %.3f\n", f->name, pts);
				else
					fprintf(out,
					        "# %s hit %s: fitted %.3f points (set in its own "
					        "keys)\n",
					        f->source, f->name, pts);
			}
			if (out != stdout)
				fclose(out);
			printf("fit: %zu messages (%zu spam, %zu ham), %zu features, %d folds\n", n,
			       nspam, n - nspam, nf, nfolds);
			printf("chosen by cross-validation: L2 penalty %g (Bayes's %g), "
			       "bayes_logodds_clip %g\n",
			       best_lambda, best_blambda, best_clip);
			printf("held out: fitted score AUC %.5f, recall %.4f at 0.1%% FPR, %.4f at "
			       "1%% "
			       "FPR\n",
			       auc, r01, r1);
			printf("held out: partial AUC to 1%% FPR %.5f (Bayes alone %.5f)\n",
			       partial_auc(best_oof, y, n, FIT_PAUC_FPR), bpauc);
			printf("held out: Bayes alone   AUC %.5f, recall %.4f at 0.1%% FPR, %.4f "
			       "at 1%% "
			       "FPR\n",
			       bauc, br01, br1);
			printf("bayes_logodds_scale = %.4f\nbayes_logodds_clip = %g\n"
			       "bayes_logodds_offset = %.4f\n",
			       bscale, best_clip, offset);
			static const double fprs[] = {0, 0.001, 0.01};
			for (size_t k = 0; k < sizeof(fprs) / sizeof(fprs[0]); k++) {
				double t = threshold_for(best_oof, y, n, fprs[k]);
				size_t above = 0;
				for (size_t q = 0; q < n; q++)
					above += y[q] && best_oof[q] > t;
				printf("threshold for %g%% held-out FPR: score above %.2f (spam "
				       "recall "
				       "%.4f)\n",
				       fprs[k] * 100, scale * (t - b) + offset,
				       nspam ? (double)above / nspam : 0);
			}
			if (o.heldout != NULL) {
				/* Each message's held-out points, to see what the fit gets wrong.
				 */
				FILE *hf = fopen(o.heldout, "w");
				if (hf == NULL) {
					fprintf(stderr, "sift rules fit: %s: %s\n", o.heldout,
					        strerror(errno));
					rc = 1;
				} else {
					for (size_t q = 0; q < n; q++)
						fprintf(hf, "%s\t%s\t%.3f\n", s->msg[mi[q]].path,
						        y[q] ? "spam" : "ham",
						        scale * (best_oof[q] - b) + offset);
					fclose(hf);
				}
			}
			printf("add_header_score %.2f sits at held-out FPR %g%%\n", add_header,
			       o.fpr * 100);
			/* What the configured actions do to the held-out messages, in points. */
			const double acts[2] = {add_header, reject};
			const char *act_name[2] = {"add_header", "reject"};
			for (int a = 0; a < 2; a++) {
				if (!isfinite(acts[a]))
					continue;
				size_t sp = 0, hm = 0;
				for (size_t q = 0; q < n; q++)
					if (scale * (best_oof[q] - b) + offset >= acts[a])
						y[q] ? sp++ : hm++;
				printf(
				    "held out at %s_score %.2f: spam recall %.4f, %zu of %zu ham\n",
				    act_name[a], acts[a], nspam ? (double)sp / nspam : 0, hm,
				    n - nspam);
			}
		}
	}
	free(mi);
	free(y);
	free(fold);
	free(fcol);
	free(colfeat);
	free(lockpts);
	free(locked);
	free(lo);
	free(hi);
	free(x);
	free(lockoff);
	free(bayes_p);
	free(w);
	free(off);
	free(oof);
	free(best_oof);
	free(use);
	free(locks);
	rules_qa_cli_done(&in);
	return rc;
}
