/*
 * arena.c - chunked bump allocator used for every per-connection and
 * per-message allocation (see arena.h).
 */
#include "config.h"

#include "arena.h"
#include "xalloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN           16
#define ARENA_MIN_CHUNK_BYTES 4096

struct chunk {
	struct chunk *next;
	size_t size;
	size_t used;
	/* Keep the payload aligned whatever the header size is. */
	_Alignas(ARENA_ALIGN) unsigned char data[];
};

struct arena {
	struct chunk *head;
	struct chunk *first;
	size_t chunk_bytes;
	size_t used_bytes;
};

static struct chunk *chunk_new(size_t size)
{
	struct chunk *c = xalloc_malloc(sizeof(*c) + size);
	c->next = NULL;
	c->size = size;
	c->used = 0;
	return c;
}

arena_t *arena_new(size_t chunk_bytes)
{
	arena_t *a = xalloc_malloc(sizeof(*a));
	if (chunk_bytes < ARENA_MIN_CHUNK_BYTES)
		chunk_bytes = ARENA_MIN_CHUNK_BYTES;
	a->chunk_bytes = chunk_bytes;
	a->first = a->head = chunk_new(chunk_bytes);
	a->used_bytes = 0;
	return a;
}

static void chunks_free(struct chunk *c, struct chunk *keep)
{
	while (c != NULL) {
		struct chunk *next = c->next;
		if (c != keep)
			free(c);
		c = next;
	}
}

void arena_free(arena_t *a)
{
	if (a == NULL)
		return;
	chunks_free(a->head, NULL);
	free(a);
}

void arena_reset(arena_t *a)
{
	chunks_free(a->head, a->first);
	a->first->next = NULL;
	a->first->used = 0;
	a->head = a->first;
	a->used_bytes = 0;
}

void *arena_alloc(arena_t *a, size_t n)
{
	size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	struct chunk *c = a->head;

	if (need == 0)
		need = ARENA_ALIGN;
	if (c->size - c->used < need) {
		if (need > a->chunk_bytes / 4) {
			/*
			 * A big block gets a private chunk linked behind the
			 * head, so the head's free space stays usable for the
			 * small allocations that follow.
			 */
			struct chunk *big = chunk_new(need);
			big->used = need;
			big->next = c->next;
			c->next = big;
			a->used_bytes += need;
			return big->data;
		}
		c = chunk_new(a->chunk_bytes);
		c->next = a->head;
		a->head = c;
	}
	void *p = c->data + c->used;
	c->used += need;
	a->used_bytes += need;
	return p;
}

void *arena_zalloc(arena_t *a, size_t n)
{
	void *p = arena_alloc(a, n);
	memset(p, 0, n);
	return p;
}

void *arena_memdup(arena_t *a, const void *p, size_t n)
{
	void *q = arena_alloc(a, n);
	if (n)
		memcpy(q, p, n);
	return q;
}

char *arena_strndup(arena_t *a, const char *s, size_t n)
{
	char *q = arena_alloc(a, n + 1);
	if (n)
		memcpy(q, s, n);
	q[n] = '\0';
	return q;
}

char *arena_strdup(arena_t *a, const char *s)
{
	return arena_strndup(a, s, strlen(s));
}

char *arena_vsprintf(arena_t *a, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return arena_strdup(a, "");
	char *q = arena_alloc(a, (size_t)n + 1);
	vsnprintf(q, (size_t)n + 1, fmt, ap);
	return q;
}

char *arena_sprintf(arena_t *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *q = arena_vsprintf(a, fmt, ap);
	va_end(ap);
	return q;
}

size_t arena_used(const arena_t *a)
{
	return a->used_bytes;
}

void abuf_init(abuf_t *b, arena_t *a, size_t initial_cap)
{
	if (initial_cap < 64)
		initial_cap = 64;
	b->arena = a;
	b->data = arena_alloc(a, initial_cap);
	b->data[0] = '\0';
	b->len = 0;
	b->cap = initial_cap;
}

void *arena_grow(arena_t *a, void *old, size_t n, size_t *cap, size_t elem, size_t first_cap)
{
	size_t ncap = *cap ? *cap * 2 : first_cap;
	void *v = arena_alloc(a, ncap * elem);
	if (n)
		memcpy(v, old, n * elem);
	*cap = ncap;
	return v;
}

void abuf_reserve(abuf_t *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap * 2;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *d = arena_alloc(b->arena, cap);
	memcpy(d, b->data, b->len + 1);
	b->data = d;
	b->cap = cap;
}

void abuf_append(abuf_t *b, const void *p, size_t n)
{
	abuf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void abuf_putc(abuf_t *b, int c)
{
	abuf_reserve(b, 1);
	b->data[b->len++] = (char)c;
	b->data[b->len] = '\0';
}

void abuf_puts(abuf_t *b, const char *s)
{
	abuf_append(b, s, strlen(s));
}

void abuf_printf(abuf_t *b, const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n > 0) {
		abuf_reserve(b, (size_t)n);
		vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
		b->len += (size_t)n;
	}
	va_end(ap);
}
