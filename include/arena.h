/*
 * NAME
 *	arena - per-connection and per-message memory pools
 * SYNOPSIS
 *	#include "arena.h"
 * DESCRIPTION
 *	An arena hands out memory that is released all at once by arena_free().
 *	Everything allocated while scoring one message comes from that message's
 *	arena, so the hot path does no per-object free() and cannot leak across
 *	messages. Allocations are 16-byte aligned. Large requests get a chunk of
 *	their own so a big body does not waste the rest of a small chunk.
 * THREADS
 *	An arena is not synchronised: it belongs to one thread at a time (the
 *	thread handling the connection or message that owns it).
 * DIAGNOSTICS
 *	Allocation failure aborts the process (out of memory is not an input
 *	error and cannot be handled per message sensibly).
 */
#ifndef SIFT_ARENA_H
#define SIFT_ARENA_H

#include <stdarg.h>
#include <stddef.h>

typedef struct arena arena_t;

arena_t *arena_new(size_t chunk_bytes);
void arena_free(arena_t *a);
/* Drops every allocation but keeps the first chunk for reuse. */
void arena_reset(arena_t *a);
void *arena_alloc(arena_t *a, size_t n);
void *arena_zalloc(arena_t *a, size_t n);
void *arena_memdup(arena_t *a, const void *p, size_t n);
/* The copies below are NUL-terminated. */
char *arena_strdup(arena_t *a, const char *s);
char *arena_strndup(arena_t *a, const char *s, size_t n);
char *arena_sprintf(arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *arena_vsprintf(arena_t *a, const char *fmt, va_list ap);
/* Bytes handed out so far (for limits and statistics). */
size_t arena_used(const arena_t *a);
/*
 * Grows an array of n elements of elem bytes held in the arena: returns a
 * copy with room for twice *cap elements (first_cap when *cap is 0) and
 * sets *cap. The old copy dies with the arena.
 */
void *arena_grow(arena_t *a, void *old, size_t n, size_t *cap, size_t elem, size_t first_cap);

/*
 * abuf - a growable byte buffer whose storage comes from an arena. The
 * contents are always NUL-terminated so text views can be used as C
 * strings; len excludes that NUL. Old storage is abandoned to the arena on
 * growth (it is freed with the arena), so growth doubles to keep the waste
 * bounded by the final size.
 */
typedef struct abuf {
	arena_t *arena;
	char *data;
	size_t len;
	size_t cap;
} abuf_t;

void abuf_init(abuf_t *b, arena_t *a, size_t initial_cap);
void abuf_reserve(abuf_t *b, size_t extra);
void abuf_append(abuf_t *b, const void *p, size_t n);
void abuf_putc(abuf_t *b, int c);
void abuf_puts(abuf_t *b, const char *s);
void abuf_printf(abuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
