/*
 * NAME
 *	diag - collected load-time errors and warnings
 * SYNOPSIS
 *	#include "diag.h"
 * DESCRIPTION
 *	Library code that reads configuration or rules never prints: it records
 *	"file:line: message" lines in a diag_t and returns failure. The edges
 *	(the daemon's main, reload, `sift lint`) decide whether to log them,
 *	print them or refuse a reload. Warnings (a skipped SpamAssassin
 *	construct, say) do not make a load fail; errors do.
 * THREADS
 *	A diag_t belongs to one thread (the one loading).
 */
#ifndef SIFT_DIAG_H
#define SIFT_DIAG_H

#include <stddef.h>
#include <stdio.h>

typedef enum { DIAG_ERROR, DIAG_WARNING } diag_level_t;

typedef struct diag diag_t;

diag_t *diag_new(void);
void diag_free(diag_t *d);
/* file may be NULL (no location); line 0 means "the whole file". */
void diag_add(diag_t *d, diag_level_t level, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void diag_error(diag_t *d, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void diag_warn(diag_t *d, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
size_t diag_errors(const diag_t *d);
size_t diag_warnings(const diag_t *d);
size_t diag_count(const diag_t *d);
/* The i-th entry, already formatted as "file:line: error: text". */
const char *diag_text(const diag_t *d, size_t i);
diag_level_t diag_level(const diag_t *d, size_t i);
/* Prints every entry, one per line; warnings only when with_warnings. */
void diag_print(const diag_t *d, FILE *fp, int with_warnings);

#endif
