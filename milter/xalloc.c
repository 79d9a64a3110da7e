/*
 * xalloc.c - heap allocation that aborts on out of memory (see xalloc.h).
 */
#include "config.h"

#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void xalloc_fail(size_t n)
{
	fprintf(stderr, "sift: out of memory (%zu bytes)\n", n);
	abort();
}

void *xalloc_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		xalloc_fail(n);
	return p;
}

void *xalloc_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		xalloc_fail(n * size);
	return p;
}

void *xalloc_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		xalloc_fail(n);
	return q;
}

char *xalloc_strndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (p == NULL)
		xalloc_fail(n + 1);
	return p;
}

char *xalloc_strdup(const char *s)
{
	return xalloc_strndup(s, strlen(s));
}
