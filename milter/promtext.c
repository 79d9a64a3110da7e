/*
 * promtext.c - the Prometheus text format read back into samples (see
 * promtext.h), for `sift stats`: a line at a time, no allocation beyond
 * the samples kept.
 */
#include "config.h"

#include "promtext.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static bool pt_name_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool pt_name_char(char c)
{
	return pt_name_start(c) || (c >= '0' && c <= '9');
}

static char *pt_strndup(const char *s, size_t n)
{
	char *d = xalloc_malloc(n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static void pt_sample_free(promtext_sample_t *s)
{
	for (size_t i = 0; i < s->n_labels; i++) {
		free(s->labels[i].name);
		free(s->labels[i].value);
	}
	free(s->labels);
	free(s->name);
}

__attribute__((format(printf, 4, 5))) static int pt_fail(char *err, size_t err_len, size_t line,
                                                         const char *fmt, ...)
{
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (err_len > 0)
		snprintf(err, err_len, "line %zu: %s", line, what);
	return -1;
}

/* Parses the labels after '{' at *pp; on success *pp is past the '}'. */
static int pt_labels(const char **pp, const char *end, promtext_sample_t *s, char *err,
                     size_t err_len, size_t line)
{
	const char *p = *pp;
	for (;;) {
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p < end && *p == '}') {
			*pp = p + 1;
			return 0;
		}
		if (p >= end || !pt_name_start(*p))
			return pt_fail(err, err_len, line, "expected a label name");
		const char *n0 = p;
		while (p < end && pt_name_char(*p))
			p++;
		size_t nl = (size_t)(p - n0);
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p + 1 >= end || p[0] != '=' || p[1] != '"')
			return pt_fail(err, err_len, line, "expected =\" after label %.*s", (int)nl,
			               n0);
		p += 2;
		char *v = xalloc_malloc((size_t)(end - p) + 1);
		size_t vl = 0;
		while (p < end && *p != '"') {
			if (*p == '\\') {
				if (p + 1 >= end) {
					free(v);
					return pt_fail(err, err_len, line,
					               "unterminated label value");
				}
				p++;
				v[vl++] = *p == 'n' ? '\n' : *p;
			} else {
				v[vl++] = *p;
			}
			p++;
		}
		if (p >= end) {
			free(v);
			return pt_fail(err, err_len, line, "unterminated label value");
		}
		p++;
		v[vl] = '\0';
		s->labels = xalloc_realloc(s->labels, (s->n_labels + 1) * sizeof(*s->labels));
		s->labels[s->n_labels].name = pt_strndup(n0, nl);
		s->labels[s->n_labels].value = v;
		s->n_labels++;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p < end && *p == ',')
			p++;
		else if (p >= end || *p != '}')
			return pt_fail(err, err_len, line, "expected , or } after a label");
	}
}

/* One sample line [p, end); 0 with s filled, or -1 (s then freed by the caller). */
static int pt_line(const char *p, const char *end, promtext_sample_t *s, char *err, size_t err_len,
                   size_t line)
{
	if (!pt_name_start(*p))
		return pt_fail(err, err_len, line, "expected a metric name");
	const char *n0 = p;
	while (p < end && pt_name_char(*p))
		p++;
	s->name = pt_strndup(n0, (size_t)(p - n0));
	if (p < end && *p == '{') {
		p++;
		if (pt_labels(&p, end, s, err, err_len, line) < 0)
			return -1;
	}
	if (p >= end || (*p != ' ' && *p != '\t'))
		return pt_fail(err, err_len, line, "expected a value after %s", s->name);
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	const char *v0 = p;
	while (p < end && *p != ' ' && *p != '\t')
		p++;
	char num[64];
	size_t vl = (size_t)(p - v0);
	if (vl == 0 || vl >= sizeof(num))
		return pt_fail(err, err_len, line, "bad value for %s", s->name);
	memcpy(num, v0, vl);
	num[vl] = '\0';
	char *e;
	s->value = strtod(num, &e);
	if (*e != '\0')
		return pt_fail(err, err_len, line, "bad value '%s' for %s", num, s->name);
	/* A timestamp may follow; it is not used. */
	return 0;
}

int promtext_parse(const char *text, size_t len, promtext_t *out, char *err, size_t err_len)
{
	const char *p = text, *end = text + len;
	size_t line = 0, cap = 0;
	out->s = NULL;
	out->n = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		line++;
		const char *q = p;
		p = nl ? nl + 1 : end;
		while (q < le && (*q == ' ' || *q == '\t'))
			q++;
		const char *qe = le;
		while (qe > q && (qe[-1] == '\r' || qe[-1] == ' ' || qe[-1] == '\t'))
			qe--;
		if (q == qe || *q == '#')
			continue;
		if (out->n == cap) {
			cap = cap ? cap * 2 : 64;
			out->s = xalloc_realloc(out->s, cap * sizeof(*out->s));
		}
		promtext_sample_t *s = &out->s[out->n];
		memset(s, 0, sizeof(*s));
		if (pt_line(q, qe, s, err, err_len, line) < 0) {
			pt_sample_free(s);
			promtext_free(out);
			return -1;
		}
		out->n++;
	}
	return 0;
}

void promtext_free(promtext_t *p)
{
	for (size_t i = 0; i < p->n; i++)
		pt_sample_free(&p->s[i]);
	free(p->s);
	p->s = NULL;
	p->n = 0;
}

const char *promtext_label(const promtext_sample_t *s, const char *name)
{
	for (size_t i = 0; i < s->n_labels; i++)
		if (strcmp(s->labels[i].name, name) == 0)
			return s->labels[i].value;
	return NULL;
}
