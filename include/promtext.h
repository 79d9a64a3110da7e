/*
 * NAME
 *	promtext - a parser for the Prometheus text exposition format
 * SYNOPSIS
 *	promtext_t p;
 *	if (promtext_parse(text, len, &p, err, sizeof(err)) < 0) ... err ...
 *	for (size_t i = 0; i < p.n; i++) p.s[i].name, p.s[i].labels, p.s[i].value
 *	promtext_free(&p);
 * DESCRIPTION
 *	Reads "name{label="value",...} value [timestamp]" lines generically:
 *	# lines (HELP, TYPE, comments) and blank lines are skipped, label
 *	values are unescaped (\\, \", \n), values may be NaN, +Inf or -Inf.
 *	Histogram and summary series are plain samples here (name_bucket
 *	with its "le" label, name_sum, name_count); grouping is the caller's.
 *	A malformed line stops the parse with "line N: what is wrong".
 * THREADS
 *	No shared state; a promtext_t belongs to its caller.
 */
#ifndef SIFT_PROMTEXT_H
#define SIFT_PROMTEXT_H

#include <stddef.h>

typedef struct promtext_label {
	char *name, *value;
} promtext_label_t;

typedef struct promtext_sample {
	char *name;
	promtext_label_t *labels;
	size_t n_labels;
	double value;
} promtext_sample_t;

/* Owns every string and array in it; promtext_free() releases them. */
typedef struct promtext {
	promtext_sample_t *s;
	size_t n;
} promtext_t;

/* Returns 0, or -1 with out empty and the reason in err. */
int promtext_parse(const char *text, size_t len, promtext_t *out, char *err, size_t err_len);
void promtext_free(promtext_t *p);
/* The value of the sample's label name, or NULL when it has none. */
const char *promtext_label(const promtext_sample_t *s, const char *name);

#endif
