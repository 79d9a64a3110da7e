/*
 * bayes_classify.c - the Bayes maths: Robinson's per-token f(w) and
 * Fisher's chi-square combining (as SpamBayes and bogofilter do it), read
 * as log-odds normalised for token dependence. Pure functions, so the
 * tests can check them against hand-computed values.
 */
#include "config.h"

#include "bayes.h"
#include "xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/*
 * Defaults chosen by 7-fold cross-validation inside the training folds
 * (0-6) of the SpamAssassin corpus (contrib/eval/bayes-cv.sh), pooled ROC
 * AUC, spam recall at 0.1% and 1% false positives, and partial AUC over
 * 0-1% false positives; with the Fisher log-odds combining below:
 *   s 0.1,  min_dev 0.45 (chosen)                  .99983 .969 .998 .985
 *   s 0.07, min_dev 0.45                           .99983 .967 .998 .985
 *   s 0.05, min_dev 0.47                           .99982 .962 .999 .984
 *   s 0.1,  min_dev 0.43                           .99983 .969 .998 .984
 *   s 0.0178, min_dev 0.375 (bogofilter's)         .99980 .966 .997 .984
 *   s 0.12, min_dev 0.45 (cuts tokens seen once)   .99978 .954 .996 .981
 * (earlier, with Fisher's I: bogofilter's s 0.0178 and min_dev 0.375
 * .99970 .930 .995; SpamBayes's s 0.45, min_dev 0.1, 150 tokens .99959
 * .903 .994.) Only strong tokens vote; s is just small enough that a token
 * seen once in one class (f = 0.956 or 0.047) still passes the cut: in
 * this corpus such tokens carry signal.
 */
#define BAYES_DEFAULT_ROBS       0.1
#define BAYES_DEFAULT_ROBX       0.52
#define BAYES_DEFAULT_MIN_DEV    0.45
#define BAYES_DEFAULT_MAX_TOKENS 0
/*
 * The combining: P = 1 / (1 + e^(-k z)), z = (ln Qh - ln Qs) / n^e *
 * n / (n + 1), where Qs and Qh are Fisher's two chi-square tail
 * probabilities over the n selected tokens. Fisher's method assumes
 * independent tokens; a word and the bigrams it is part of are not, so its
 * tail probabilities grow more extreme with length than the evidence does
 * (ln Q falls about linearly in n). Fisher's usual I = (1 + S - H) / 2
 * then saturates: a long message with strong tokens both ways has
 * S = H = 1 and I = 0.5, whichever way it leans, and about 5% of spam sat
 * in that tie. Dividing the log-odds by n^e (e < 1 counts correlated
 * tokens as fewer independent ones) keeps them ordered. For one token z
 * would be logit(f), more than ten such tokens give; the factor n / (n + 1)
 * makes the evidence grow with the number of strong tokens instead. (Meant
 * for the strong-token cut: tokens near 0.5, which min_dev keeps out,
 * lower |z|.) Cross-validated as above (AUC, recall at 0.1% and 1%,
 * partial AUC to 1%):
 *   Fisher's I, ties broken by Qh/(Qh+Qs)      .99976 .969 .998 .982
 *   e 1.0                                       .99983 .969 .999 .984
 *   e 0.85 (chosen; 0.75-0.95 is a plateau)     .99983 .969 .998 .985
 *   e 0.5                                       .99932 .968 .993 .983
 *   e 0.85 with n / (n + 1) (chosen)            .99983 .969 .998 .985
 * and the 95% bootstrap interval of recall at 0.1% narrows from
 * .845-.981 (I) to .927-.980. The scale k moves messages between score
 * bands, not their order; k = 3 gives the top bands, which decide whether
 * Bayes alone reaches add_header, the populations I gave them: 80% of
 * spam at P >= 0.999 (78% with I), no ham at P >= 0.99 (k = 2 left 46% of
 * spam at P >= 0.999 and cost the whole pipeline a fifth of its recall at
 * add_header; k = 4 puts a ham at P >= 0.99).
 */
#define BAYES_DEFAULT_FISHER_EXPONENT 0.85
#define BAYES_DEFAULT_FISHER_SCALE    3.0

/* f(w) never reaches 0 or 1, so that one token cannot veto all others. */
#define BAYES_FW_FLOOR 1e-6

void bayes_params_default(bayes_params_t *p)
{
	p->robs = BAYES_DEFAULT_ROBS;
	p->robx = BAYES_DEFAULT_ROBX;
	p->min_dev = BAYES_DEFAULT_MIN_DEV;
	p->max_tokens = BAYES_DEFAULT_MAX_TOKENS;
	p->fisher_exponent = BAYES_DEFAULT_FISHER_EXPONENT;
	p->fisher_scale = BAYES_DEFAULT_FISHER_SCALE;
}

double bayes_token_prob(const bayes_params_t *p, uint32_t spam, uint32_t ham, uint64_t nspam,
                        uint64_t nham)
{
	double bs = nspam ? (double)spam / (double)nspam : 0.0;
	double gs = nham ? (double)ham / (double)nham : 0.0;
	double n = (double)spam + (double)ham;
	double pw = bs + gs > 0 ? bs / (bs + gs) : p->robx;
	double f = (p->robs * p->robx + n * pw) / (p->robs + n);
	if (f < BAYES_FW_FLOOR)
		f = BAYES_FW_FLOOR;
	if (f > 1.0 - BAYES_FW_FLOOR)
		f = 1.0 - BAYES_FW_FLOOR;
	return f;
}

/*
 * Q(x2 | v) = e^-m * sum_{i<v/2} m^i / i!, m = x2 / 2. The direct
 * recurrence (SpamBayes's) is exact while e^-m is representable; past that
 * the terms are summed in log space so long messages do not collapse to 0.
 */
double bayes_chi2q_log(double x2, unsigned v)
{
	double m = x2 / 2.0;
	unsigned k = v / 2;
	if (k == 0 || x2 <= 0)
		return 0.0;
	if (m < 700.0) {
		double term = exp(-m), sum = term;
		for (unsigned i = 1; i < k; i++) {
			term *= m / i;
			sum += term;
		}
		return sum < 1.0 ? log(sum) : 0.0;
	}
	/* The largest term is at i = min(k-1, floor(m)); sum relative to it. */
	double lm = log(m);
	unsigned imax = m < (double)(k - 1) ? (unsigned)m : k - 1;
	/* lgamma_r: lgamma() writes the global signgam, a data race between workers */
	int sign;
	double lmax = -m + imax * lm - lgamma_r(imax + 1.0, &sign);
	double sum = 0.0, lf = 0.0;
	for (unsigned i = 0; i < k; i++) {
		if (i > 0)
			lf += log((double)i);
		double lt = -m + i * lm - lf;
		if (lt - lmax > -745.0)
			sum += exp(lt - lmax);
	}
	double lq = lmax + log(sum);
	return lq < 0.0 ? lq : 0.0;
}

/*
 * Q(x2 | v) = e^-m * sum_{i<v/2} m^i / i!, m = x2 / 2. The direct
 * recurrence (SpamBayes's) is exact while e^-m is representable; past that
 * the terms are summed in log space so long messages do not collapse to 0.
 */
double bayes_chi2q(double x2, unsigned v)
{
	return exp(bayes_chi2q_log(x2, v));
}

double bayes_combine(const bayes_params_t *p, const double *fw, size_t n, bayes_result_t *r)
{
	double ln_f = 0.0, ln_1f = 0.0;
	for (size_t i = 0; i < n; i++) {
		ln_f += log(fw[i]);
		ln_1f += log1p(-fw[i]);
	}
	double s = 0.5, h = 0.5, z = 0.0, prob = 0.5;
	if (n > 0) {
		/* S is near 1 when many f(w) are near 1 (their 1-f are small). */
		double lqs = bayes_chi2q_log(-2.0 * ln_1f, 2 * (unsigned)n);
		double lqh = bayes_chi2q_log(-2.0 * ln_f, 2 * (unsigned)n);
		s = 1.0 - exp(lqs);
		h = 1.0 - exp(lqh);
		/* n / (n + 1): one or two strong tokens are weak evidence. */
		z = (lqh - lqs) / pow((double)n, p->fisher_exponent) * ((double)n / (n + 1.0));
		prob = 1.0 / (1.0 + exp(-p->fisher_scale * z));
	}
	if (r != NULL) {
		r->prob = prob;
		r->spamminess = s;
		r->hamminess = h;
		r->log_odds = z;
		r->used = n;
	}
	return prob;
}

static int dev_cmp(const void *a, const void *b)
{
	double x = fabs(*(const double *)a - 0.5), y = fabs(*(const double *)b - 0.5);
	return x < y ? 1 : x > y ? -1 : 0;
}

double bayes_classify(const bayes_params_t *p, const bayes_counts_t *counts, size_t n,
                      const bayes_totals_t *totals, arena_t *a, double *fw_out, bayes_result_t *r)
{
	double *sel =
	    a ? arena_alloc(a, (n + 1) * sizeof(*sel)) : xalloc_malloc((n + 1) * sizeof(*sel));
	size_t k = 0;

	sel[0] = 0.5;
	for (size_t i = 0; i < n; i++) {
		double f;
		if (counts[i].spam == 0 && counts[i].ham == 0)
			f = p->robx; /* unseen: its f(w) is x, whatever s is */
		else
			f = bayes_token_prob(p, counts[i].spam, counts[i].ham, totals->spam,
			                     totals->ham);
		if (fw_out != NULL)
			fw_out[i] = f;
		if (fabs(f - 0.5) >= p->min_dev)
			sel[k++] = f;
	}
	if (p->max_tokens > 0 && k > p->max_tokens) {
		qsort(sel, k, sizeof(*sel), dev_cmp);
		k = p->max_tokens;
	}
	double prob = bayes_combine(p, sel, k, r);
	if (a == NULL)
		free(sel);
	return prob;
}
