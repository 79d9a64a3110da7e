/*
 * NAME
 *	hits - the scored evidence gathered for one message
 * DESCRIPTION
 *	Every evidence module (rules, bayes, dnsbl, reputation) adds what it
 *	found here: a named hit with a score, a short description and an
 *	optional detail line for `sift check`; plus notes (unscored
 *	explanations) and named metrics (the Bayes probability, say) that the
 *	verdict, the log line and `sift check --tsv` read.
 *
 *	Strings passed in must live as long as the hits_t: pass literals,
 *	strings owned by a rule set that outlives the message, or copies made
 *	in the message arena (the hits_*f() variants copy for you).
 * THREADS
 *	Belongs to the thread scoring the message.
 */
#ifndef SIFT_HITS_H
#define SIFT_HITS_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"

typedef struct hit {
	const char *source; /* "rules", "bayes", "dnsbl", "rep", "sift" */
	const char *name;   /* rule or list name, e.g. "SUBJ_ALL_CAPS" */
	double score;
	const char *desc;   /* what the rule means, may be NULL */
	const char *detail; /* what matched / which answer, may be NULL */
} hit_t;

typedef struct hits hits_t;

hits_t *hits_new(arena_t *a);
arena_t *hits_arena(hits_t *h);
void hits_add(hits_t *h, const char *source, const char *name, double score, const char *desc,
              const char *detail);
/* Like hits_add() with detail formatted into the arena. */
void hits_addf(hits_t *h, const char *source, const char *name, double score, const char *desc,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));
size_t hits_count(const hits_t *h);
const hit_t *hits_at(const hits_t *h, size_t i);
bool hits_has(const hits_t *h, const char *name);
/* Whether a and b hold the same rule names (each name once, as rules add them). */
bool hits_same_names(const hits_t *a, const hits_t *b);
/*
 * The largest |score| any one configured score may have (a rule's score, a
 * DNS list's return code, a reputation or Bayes score): far above any real
 * rule set's (SpamAssassin's largest are 100), and small enough that sums
 * over any number of hits stay finite. Every source's config reader refuses
 * a score beyond it with file:line.
 */
#define HITS_MAX_SCORE 1000.0
/* The sum of the scores, always finite: a non-finite score counts 0 and the sum stays within
 * -HITS_MAX_TOTAL..HITS_MAX_TOTAL. */
#define HITS_MAX_TOTAL 1e9
double hits_total(const hits_t *h);
/* Orders hits by descending |score|, then name (stable output). */
void hits_sort(hits_t *h);

/* Explanations that carry no score, shown by `sift check`. */
void hits_note(hits_t *h, const char *source, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
size_t hits_note_count(const hits_t *h);
const char *hits_note_at(const hits_t *h, size_t i, const char **source);

/*
 * A reason to quote in an SMTP rejection (a DNS list's TXT record, say).
 * Of several offers the one backed by the highest score is kept. The text
 * is copied; hits_reason() returns NULL when none was offered.
 */
void hits_offer_reason(hits_t *h, double score, const char *text);
const char *hits_reason(const hits_t *h);

/* Named numbers (e.g. "bayes_prob"); a second set replaces the first. */
void hits_set_metric(hits_t *h, const char *key, double value);
bool hits_metric(const hits_t *h, const char *key, double *value);

#endif
