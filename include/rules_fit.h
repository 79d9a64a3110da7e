/*
 * NAME
 *	rules_fit - fit rule scores and Bayes's weight to labelled mail
 *	(`sift rules fit`)
 * SYNOPSIS
 *	sift rules fit [-r PATH]... [-o FILE] [--lock FILE] [--bayes-oof FILE]
 *	    [--fpr RATE] [--k N] [--bayes-clip C] [--held-out FILE] INPUT
 * DESCRIPTION
 *	The evidence of every message (rules_qa.h: the rules that hit, other
 *	sources' hits, Bayes's P(spam)) is fitted with an L2-regularised
 *	logistic regression: one weight per rule that hit (binary), one for
 *	Bayes's log-odds clipped to +-C and divided by C, an unpenalised
 *	intercept, in two stages: the rules first, with Bayes's weight held at
 *	0 (so their points stand on their own when Bayes is untrained or
 *	fooled, and autolearn's score without Bayes means something), then
 *	Bayes's weight (lightly penalised) and the intercept with the rules'
 *	points fixed. The penalty and C are chosen by k-fold cross-validation
 *	(the manifest's folds, else k folds by position) on held-out
 *	log-loss; the final weights are fitted on all the messages.
 *
 *	Locks: a rule with tflags nice gets a weight <= 0, any other rule a
 *	weight >= 0 (the sign its author meant, as SpamAssassin's score
 *	ranges keep it); a "score NAME
 *	VALUE" line in the --lock file pins that rule's points (not fitted;
 *	its points enter the fit as they are). Hits of sources whose points
 *	the rules files cannot set (dnsbl, rep, sift) are fitted too and
 *	reported as comments for their own configuration keys.
 *
 *	Bayes out of fold: with --bayes-oof FILE ("name<TAB>P" per line, name
 *	the message's file name, as contrib/eval/bayes-oof.sh writes from a
 *	Bayes store trained without the message's fold) those probabilities
 *	replace the configured store's, so the fit never learns from a Bayes
 *	that saw the message it scores. Without it, the configured store's
 *	probabilities are used and a warning says so.
 *
 *	Scale: Sift's score has no intercept, so the fitted logit z = b + w.x
 *	becomes points as s * (z - b), with s chosen so that the add_header
 *	threshold (add_header_score) falls where the held-out logits give the
 *	false-positive rate --fpr (default 0: just above the highest held-out
 *	ham; where that would take a huge scale, the median held-out ham is
 *	put at 0 points and bayes_logodds_offset carries the rest). The
 *	scores file holds "score NAME points" lines, to load after
 *	the rules (a rules path whose name sorts last, e.g. 99_fitted.cf), and
 *	the bayes_logodds_scale and bayes_logodds_clip values in a comment,
 *	for the configuration. The held-out figures (ROC AUC, recall at 0.1%
 *	and 1% false positives) of the fitted score and of Bayes alone, and
 *	the thresholds in points for chosen false-positive rates, and the
 *	held-out spam recall and hams reached at add_header_score and
 *	reject_score, go to stdout.
 * THREADS
 *	Runs on the calling thread (the pipeline run is rules_qa_run()'s).
 */
#ifndef SIFT_RULES_FIT_H
#define SIFT_RULES_FIT_H

#include <stdbool.h>
#include <stddef.h>

#include "cli.h"

/*
 * The optimiser, exposed for tests: minimises sum of log-losses +
 * lambda/2 * |w|^2 over n examples with nf features (x[i*nf + j]),
 * labels y (0/1), fixed offsets off (may be NULL), bounds lo/hi per
 * weight (may be NULL: unbounded). w gets nf weights, *b the intercept.
 */
void rules_fit_logistic(const double *x, const int *y, const double *off, size_t n, size_t nf,
                        double lambda, const double *lo, const double *hi, double *w, double *b);

int rules_fit_cmd(cli_ctx_t *ctx, int argc, char **argv);

#endif
