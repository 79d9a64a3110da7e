/*
 * msglog.c - the per-message log line as key=value pairs or JSON (see
 * msglog.h); the escaping is what keeps a hostile field from forging a
 * line or a field.
 */
#include "config.h"

#include "msglog.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* A bounded output buffer: a piece that does not fit is dropped whole. */
struct mlbuf {
	char *p;
	size_t cap, len;
	bool over;
};

static void ml_put(struct mlbuf *b, const char *s, size_t n)
{
	if (b->over || b->len + n >= b->cap) {
		b->over = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void ml_puts(struct mlbuf *b, const char *s)
{
	ml_put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void ml_printf(struct mlbuf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->over = true;
		return;
	}
	ml_put(b, tmp, (size_t)n);
}

static bool ml_kv_plain(const char *s)
{
	if (*s == '\0')
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '=' || *p == '\\')
			return false;
	return true;
}

/* A kv value: as is when that parses back unchanged, else quoted and escaped. */
static void ml_kv_value(struct mlbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	if (s == NULL)
		s = "-";
	char out[MSGLOG_VALUE_MAX_BYTES + 8];
	size_t n = 0;
	bool plain = ml_kv_plain(s);
	if (!plain)
		out[n++] = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char e[4];
		size_t el;
		if (*p == '"' || *p == '\\') {
			e[0] = '\\', e[1] = (char)*p, el = 2;
		} else if (*p < 0x20 || *p >= 0x7f) {
			e[0] = '\\', e[1] = 'x', e[2] = hex[*p >> 4], e[3] = hex[*p & 15], el = 4;
		} else {
			e[0] = (char)*p, el = 1;
		}
		if (n + el > MSGLOG_VALUE_MAX_BYTES)
			break;
		memcpy(out + n, e, el);
		n += el;
	}
	if (!plain)
		out[n++] = '"';
	ml_put(b, out, n);
}

/*
 * Decodes one UTF-8 sequence at p (n bytes left); returns its length and
 * the code point, or 0 when the bytes are not well-formed UTF-8 (overlong
 * forms, surrogates and values above U+10FFFF included).
 */
static size_t ml_utf8(const unsigned char *p, size_t n, unsigned *cp)
{
	size_t len;
	unsigned c, min;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, c = p[0] & 0x1f, min = 0x80;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, c = p[0] & 0x0f, min = 0x800;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, c = p[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* A JSON string (or null), all ASCII: the syslog sink would mangle raw UTF-8. */
static void ml_json_str(struct mlbuf *b, const char *s)
{
	if (s == NULL) {
		ml_puts(b, "null");
		return;
	}
	char out[MSGLOG_VALUE_MAX_BYTES + 16];
	size_t n = 0, left = strlen(s);
	out[n++] = '"';
	const unsigned char *p = (const unsigned char *)s;
	while (left > 0) {
		char e[16];
		size_t el, used = 1;
		unsigned cp;
		if (*p == '"' || *p == '\\') {
			e[0] = '\\', e[1] = (char)*p, el = 2;
		} else if (*p == '\n') {
			memcpy(e, "\\n", 2), el = 2;
		} else if (*p == '\r') {
			memcpy(e, "\\r", 2), el = 2;
		} else if (*p == '\t') {
			memcpy(e, "\\t", 2), el = 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			el = (size_t)snprintf(e, sizeof(e), "\\u%04x", *p);
		} else if (*p < 0x7f) {
			e[0] = (char)*p, el = 1;
		} else if ((used = ml_utf8(p, left, &cp)) == 0) {
			used = 1;
			memcpy(e, "\\ufffd", 6), el = 6;
		} else if (cp < 0x10000) {
			el = (size_t)snprintf(e, sizeof(e), "\\u%04x", cp);
		} else {
			cp -= 0x10000;
			el = (size_t)snprintf(e, sizeof(e), "\\u%04x\\u%04x", 0xd800 + (cp >> 10),
			                      0xdc00 + (cp & 0x3ff));
		}
		if (n + el > MSGLOG_VALUE_MAX_BYTES)
			break;
		memcpy(out + n, e, el);
		n += el;
		p += used;
		left -= used;
	}
	out[n++] = '"';
	ml_put(b, out, n);
}

/* "a,b" as a JSON array of strings. */
static void ml_json_list(struct mlbuf *b, const char *list)
{
	ml_puts(b, "[");
	for (const char *p = list; p != NULL && *p;) {
		size_t l = strcspn(p, ",");
		char one[64];
		snprintf(one, sizeof(one), "%.*s", (int)(l < sizeof(one) ? l : sizeof(one) - 1), p);
		if (p != list)
			ml_puts(b, ",");
		ml_json_str(b, one);
		p += l + (p[l] == ',');
	}
	ml_puts(b, "]");
}

/* The fields after the rules, written apart so the rules get what is left. */
static void ml_tail(struct mlbuf *b, msglog_format_t fmt, const msglog_fields_t *f)
{
	if (fmt == MSGLOG_KV) {
		ml_puts(b, " helo=");
		ml_kv_value(b, f->helo);
		ml_puts(b, " client=");
		ml_kv_value(b, f->client_name);
		ml_printf(b, " size=%llu", (unsigned long long)f->size_bytes);
		for (size_t i = 0; i < f->n_timings; i++) {
			ml_puts(b, " t_");
			ml_puts(b, f->timings[i].source);
			ml_printf(b, "=%.2f", f->timings[i].ms);
		}
		ml_puts(b, " degraded=");
		ml_kv_value(b, f->degraded);
		ml_puts(b, " failed=");
		ml_kv_value(b, f->failed);
		ml_printf(b, " ms=%.1f", f->ms);
		return;
	}
	ml_puts(b, ",\"helo\":");
	ml_json_str(b, f->helo);
	ml_puts(b, ",\"client\":");
	ml_json_str(b, f->client_name);
	ml_printf(b, ",\"size\":%llu,\"t\":{", (unsigned long long)f->size_bytes);
	for (size_t i = 0; i < f->n_timings; i++) {
		if (i)
			ml_puts(b, ",");
		ml_json_str(b, f->timings[i].source);
		ml_printf(b, ":%.2f", f->timings[i].ms);
	}
	ml_puts(b, "},\"degraded\":");
	ml_json_list(b, f->degraded);
	ml_puts(b, ",\"failed\":");
	ml_json_list(b, f->failed);
	ml_printf(b, ",\"ms\":%.1f}", f->ms);
}

int msglog_format_parse(const char *name)
{
	if (strcmp(name, "kv") == 0)
		return MSGLOG_KV;
	if (strcmp(name, "json") == 0)
		return MSGLOG_JSON;
	return -1;
}

size_t msglog_format(char *out, size_t out_len, msglog_format_t fmt, unsigned top_rules,
                     const msglog_fields_t *f)
{
	char tailbuf[MSGLOG_LINE_BYTES];
	struct mlbuf t = {tailbuf, sizeof(tailbuf), 0, false};
	struct mlbuf b = {out, out_len, 0, false};
	if (out_len == 0)
		return 0;
	out[0] = tailbuf[0] = '\0';
	ml_tail(&t, fmt, f);
	bool kv = fmt == MSGLOG_KV;
	ml_puts(&b, kv ? "queue_id=" : "{\"queue_id\":");
	kv ? ml_kv_value(&b, f->queue_id) : ml_json_str(&b, f->queue_id);
	ml_puts(&b, kv ? " ip=" : ",\"ip\":");
	kv ? ml_kv_value(&b, f->ip) : ml_json_str(&b, f->ip);
	ml_printf(&b, kv ? " score=%.2f action=" : ",\"score\":%.2f,\"action\":", f->score);
	kv ? ml_kv_value(&b, f->action) : ml_json_str(&b, f->action);
	ml_puts(&b, kv ? " rules=" : ",\"rules\":[");
	/* Room kept for the tail and for the longest cut marker. */
	size_t reserve = t.len + 24;
	size_t n = f->hits ? hits_count(f->hits) : 0, shown = 0;
	for (size_t i = 0; i < n && i < top_rules; i++) {
		const hit_t *h = hits_at(f->hits, i);
		char one[MSGLOG_VALUE_MAX_BYTES + 64];
		struct mlbuf r = {one, sizeof(one), 0, false};
		if (kv) {
			/* Rule names are identifiers; anything else is escaped as a whole. */
			ml_puts(&r, shown ? "," : "");
			if (ml_kv_plain(h->name) && strchr(h->name, ',') == NULL &&
			    strchr(h->name, '(') == NULL)
				ml_puts(&r, h->name);
			else
				ml_kv_value(&r, h->name);
			ml_printf(&r, "(%.1f)", h->score);
		} else {
			ml_puts(&r, shown ? ",{\"name\":" : "{\"name\":");
			ml_json_str(&r, h->name);
			ml_printf(&r, ",\"score\":%.2f}", h->score);
		}
		if (r.over || b.len + r.len + reserve >= out_len)
			break;
		ml_put(&b, one, r.len);
		shown++;
	}
	bool cut = shown < n;
	if (kv) {
		if (cut)
			ml_puts(&b, shown ? ",..." : "...");
		else if (shown == 0)
			ml_puts(&b, "-");
	} else {
		ml_puts(&b, "]");
		if (cut)
			ml_puts(&b, ",\"rules_cut\":true");
	}
	ml_put(&b, tailbuf, t.len);
	return b.len;
}
