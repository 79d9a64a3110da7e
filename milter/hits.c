/*
 * hits.c - the scored evidence list of one message (see hits.h).
 */
#include "config.h"

#include "hits.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct note {
	const char *source;
	const char *text;
};

struct metric {
	const char *key;
	double value;
};

struct hits {
	arena_t *arena;
	hit_t *v;
	size_t n, cap;
	struct note *notes;
	size_t n_notes, cap_notes;
	struct metric metrics[16];
	size_t n_metrics;
	const char *reason;
	double reason_score;
};

hits_t *hits_new(arena_t *a)
{
	hits_t *h = arena_zalloc(a, sizeof(*h));
	h->arena = a;
	return h;
}

arena_t *hits_arena(hits_t *h)
{
	return h->arena;
}

void hits_add(hits_t *h, const char *source, const char *name, double score, const char *desc,
              const char *detail)
{
	if (h->n == h->cap)
		h->v = arena_grow(h->arena, h->v, h->n, &h->cap, sizeof(*h->v), 16);
	h->v[h->n++] = (hit_t){source, name, score, desc, detail};
}

void hits_addf(hits_t *h, const char *source, const char *name, double score, const char *desc,
               const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *detail = arena_vsprintf(h->arena, fmt, ap);
	va_end(ap);
	hits_add(h, source, name, score, desc, detail);
}

size_t hits_count(const hits_t *h)
{
	return h->n;
}
const hit_t *hits_at(const hits_t *h, size_t i)
{
	return i < h->n ? &h->v[i] : NULL;
}

bool hits_has(const hits_t *h, const char *name)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->v[i].name, name) == 0)
			return true;
	return false;
}

bool hits_same_names(const hits_t *a, const hits_t *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!hits_has(b, a->v[i].name))
			return false;
	return true;
}

static double clamp_total(double v)
{
	return v > HITS_MAX_TOTAL ? HITS_MAX_TOTAL : v < -HITS_MAX_TOTAL ? -HITS_MAX_TOTAL : v;
}

double hits_total(const hits_t *h)
{
	/*
	 * Sources bound their scores, but the verdict compares this total
	 * with thresholds: a NaN would fail every comparison (an accept) and
	 * an infinity defeat a negative allow score, so neither may come out.
	 */
	double t = 0;
	for (size_t i = 0; i < h->n; i++)
		if (isfinite(h->v[i].score))
			t = clamp_total(t + clamp_total(h->v[i].score));
	return t;
}

static int hits_cmp(const void *pa, const void *pb)
{
	const hit_t *a = pa, *b = pb;
	double da = fabs(a->score), db = fabs(b->score);
	if (da != db)
		return da > db ? -1 : 1;
	return strcmp(a->name, b->name);
}

void hits_sort(hits_t *h)
{
	if (h->n > 1)
		qsort(h->v, h->n, sizeof(*h->v), hits_cmp);
}

void hits_note(hits_t *h, const char *source, const char *fmt, ...)
{
	if (h->n_notes == h->cap_notes)
		h->notes = arena_grow(h->arena, h->notes, h->n_notes, &h->cap_notes,
		                      sizeof(*h->notes), 16);
	va_list ap;
	va_start(ap, fmt);
	h->notes[h->n_notes].text = arena_vsprintf(h->arena, fmt, ap);
	va_end(ap);
	h->notes[h->n_notes].source = source;
	h->n_notes++;
}

size_t hits_note_count(const hits_t *h)
{
	return h->n_notes;
}

const char *hits_note_at(const hits_t *h, size_t i, const char **source)
{
	if (i >= h->n_notes)
		return NULL;
	if (source)
		*source = h->notes[i].source;
	return h->notes[i].text;
}

void hits_set_metric(hits_t *h, const char *key, double value)
{
	for (size_t i = 0; i < h->n_metrics; i++)
		if (strcmp(h->metrics[i].key, key) == 0) {
			h->metrics[i].value = value;
			return;
		}
	if (h->n_metrics < sizeof(h->metrics) / sizeof(h->metrics[0]))
		h->metrics[h->n_metrics++] = (struct metric){arena_strdup(h->arena, key), value};
}

bool hits_metric(const hits_t *h, const char *key, double *value)
{
	for (size_t i = 0; i < h->n_metrics; i++)
		if (strcmp(h->metrics[i].key, key) == 0) {
			*value = h->metrics[i].value;
			return true;
		}
	return false;
}

void hits_offer_reason(hits_t *h, double score, const char *text)
{
	if (text == NULL || *text == '\0' || (h->reason != NULL && score <= h->reason_score))
		return;
	h->reason = arena_strdup(h->arena, text);
	h->reason_score = score;
}

const char *hits_reason(const hits_t *h)
{
	return h->reason;
}
