/*
 * hits_check.h - what the unit tests ask of a message's hits beyond the
 * hits module's own calls: whether a note says something.
 */
#ifndef SIFT_TEST_HITS_CHECK_H
#define SIFT_TEST_HITS_CHECK_H

#include <stdbool.h>
#include <string.h>

#include "hits.h"

/* True when one of h's notes contains needle. */
static inline bool hits_note_says(const hits_t *h, const char *needle)
{
	for (size_t i = 0; i < hits_note_count(h); i++)
		if (strstr(hits_note_at(h, i, NULL), needle) != NULL)
			return true;
	return false;
}

#endif
