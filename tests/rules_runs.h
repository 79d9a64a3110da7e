/*
 * rules_runs.h - how often the unit tests' rules ran: the evaluations
 * rules_slowest() counts for one rule, read over every rule, not the
 * slowest few: which rules come first by CPU time depends on the
 * machine's load, and a rule that ran but fell out of a top-64 list read
 * as never run.
 */
#ifndef SIFT_TEST_RULES_RUNS_H
#define SIFT_TEST_RULES_RUNS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

/* Evaluations of rule `name` under RULES_EVAL_TIMING so far; 0 if none or no memory. */
static inline uint64_t rules_runs_of(const rules_t *r, const char *name)
{
	size_t cap = rules_count(r) + 64;
	rules_time_t *t = calloc(cap, sizeof(*t));
	if (t == NULL)
		return 0;
	size_t n = rules_slowest(r, t, cap);
	uint64_t runs = 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].name, name) == 0)
			runs = t[i].evals;
	free(t);
	return runs;
}

#endif
