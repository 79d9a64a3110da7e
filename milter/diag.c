/*
 * diag.c - a list of formatted load-time diagnostics (see diag.h).
 */
#include "config.h"

#include "diag.h"
#include "xalloc.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct diag_entry {
	diag_level_t level;
	char *text;
};

struct diag {
	struct diag_entry *v;
	size_t n, cap;
	size_t errors, warnings;
};

diag_t *diag_new(void)
{
	diag_t *d = xalloc_calloc(1, sizeof(*d));
	return d;
}

void diag_free(diag_t *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].text);
	free(d->v);
	free(d);
}

static void diag_vadd(diag_t *d, diag_level_t level, const char *file, unsigned line,
                      const char *fmt, va_list ap)
{
	char msg[1024], loc[600] = "";
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (file != NULL && line > 0)
		snprintf(loc, sizeof(loc), "%s:%u: ", file, line);
	else if (file != NULL)
		snprintf(loc, sizeof(loc), "%s: ", file);
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 16;
		d->v = xalloc_realloc(d->v, d->cap * sizeof(*d->v));
	}
	size_t len = strlen(loc) + strlen(msg) + 16;
	char *t = xalloc_malloc(len);
	snprintf(t, len, "%s%s%s", loc, level == DIAG_ERROR ? "" : "warning: ", msg);
	d->v[d->n].level = level;
	d->v[d->n].text = t;
	d->n++;
	if (level == DIAG_ERROR)
		d->errors++;
	else
		d->warnings++;
}

void diag_add(diag_t *d, diag_level_t level, const char *file, unsigned line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vadd(d, level, file, line, fmt, ap);
	va_end(ap);
}

void diag_error(diag_t *d, const char *file, unsigned line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vadd(d, DIAG_ERROR, file, line, fmt, ap);
	va_end(ap);
}

void diag_warn(diag_t *d, const char *file, unsigned line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vadd(d, DIAG_WARNING, file, line, fmt, ap);
	va_end(ap);
}

size_t diag_errors(const diag_t *d)
{
	return d->errors;
}
size_t diag_warnings(const diag_t *d)
{
	return d->warnings;
}
size_t diag_count(const diag_t *d)
{
	return d->n;
}
const char *diag_text(const diag_t *d, size_t i)
{
	return d->v[i].text;
}
diag_level_t diag_level(const diag_t *d, size_t i)
{
	return d->v[i].level;
}

void diag_print(const diag_t *d, FILE *fp, int with_warnings)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].level == DIAG_ERROR || with_warnings)
			fprintf(fp, "%s\n", d->v[i].text);
}
