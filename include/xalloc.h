/*
 * NAME
 *	xalloc - heap allocation for long-lived structures, where running out
 *	of memory ends the process
 * SYNOPSIS
 *	#include "xalloc.h"
 *
 *	v = xalloc_realloc(v, n * sizeof(*v));
 *	s = xalloc_strdup(name);
 * DESCRIPTION
 *	What lives longer than one message (rule sets, DNS list tables, rbldnsd
 *	snapshots, command-line batches) comes from the heap rather than an
 *	arena. These wrappers give it the arena's policy (arena.h): out of
 *	memory is not an input error and cannot be handled sensibly half-way
 *	through building a structure, so it prints "sift: out of memory" and
 *	aborts instead of returning NULL. Release with free().
 * THREADS
 *	As thread-safe as malloc().
 */
#ifndef SIFT_XALLOC_H
#define SIFT_XALLOC_H

#include <stddef.h>

void *xalloc_malloc(size_t n);
void *xalloc_calloc(size_t n, size_t size);
void *xalloc_realloc(void *p, size_t n);
char *xalloc_strdup(const char *s);
char *xalloc_strndup(const char *s, size_t n);

#endif
