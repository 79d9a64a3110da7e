/*
 * msg.c - the message being scored: envelope, header fields, body (see msg.h).
 * Everything lives in the message's own arena.
 */
#include "config.h"

#include "msg.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "xalloc.h"

#define MSG_ARENA_CHUNK_BYTES  (64 * 1024)
#define MSG_INITIAL_BODY_BYTES (16 * 1024)

struct msg_hdr {
	const char *name;
	const char *value;
	uint32_t key;  /* name_key(name): compared before the names */
	uint32_t next; /* 1 + the index of the next field of the same key, 0 for none */
};

/*
 * A slot of the index from a name's key to its fields: the first and the
 * last of them (1 + index; first 0 for an empty slot). The scorer asks
 * for some hundred field names a message, most of which the message
 * lacks: through the index such a name costs a probe, not a pass over
 * every field. Names whose keys collide share a chain; the names are
 * still compared.
 */
struct msg_hslot {
	uint32_t key;
	uint32_t first, last;
};

struct msg {
	arena_t *arena;
	const char *queue_id, *client_ip, *client_name, *helo, *mail_from, *auth;
	const char **rcpt;
	size_t n_rcpt, cap_rcpt;
	struct msg_hdr *hdr;
	size_t n_hdr, cap_hdr;
	struct msg_hslot *hix; /* open addressing, linear probing; at most half full */
	size_t cap_hix;        /* a power of two, or 0 before the first field */
	size_t max_hdr, max_hdr_bytes, hdr_bytes, hdr_dropped;
	/* values of the Authentication-Results fields among the dropped */
	const char **late_ar;
	size_t n_late_ar, cap_late_ar;
	const char *header_block;
	size_t header_block_len;
	abuf_t body;
	uint64_t max_body_bytes;
	uint64_t body_seen;
	bool truncated;
	bool pending_cr; /* a chunk ended in "\r": decide when the next byte comes */
	/* The raw copy (msg_keep_raw()): fields, then body, CRLF throughout. */
	bool keep_raw;
	bool raw_last_cr; /* the last raw body byte was "\r" */
	bool raw_truncated;
	abuf_t raw_hdr, raw_body;
	const char *raw; /* both joined, built once */
	size_t raw_len;
	msg_hop_t *hops; /* the Received: chain, parsed on first use */
	size_t n_hops;
	bool hops_done;
};

msg_t *msg_new(uint64_t max_body_bytes)
{
	arena_t *a = arena_new(MSG_ARENA_CHUNK_BYTES);
	msg_t *m = arena_zalloc(a, sizeof(*m));
	m->arena = a;
	m->max_body_bytes = max_body_bytes;
	abuf_init(&m->body, a, MSG_INITIAL_BODY_BYTES);
	return m;
}

void msg_free(msg_t *m)
{
	if (m != NULL)
		arena_free(m->arena);
}

arena_t *msg_arena(msg_t *m)
{
	return m->arena;
}

static const char *msg_dup(msg_t *m, const char *s)
{
	return s ? arena_strdup(m->arena, s) : NULL;
}

void msg_set_queue_id(msg_t *m, const char *id)
{
	m->queue_id = msg_dup(m, id);
}
void msg_set_helo(msg_t *m, const char *helo)
{
	m->helo = msg_dup(m, helo);
}
void msg_set_auth(msg_t *m, const char *authen)
{
	m->auth = msg_dup(m, authen);
}

void msg_set_client(msg_t *m, const char *ip, const char *hostname)
{
	m->client_ip = msg_dup(m, ip);
	m->client_name = msg_dup(m, hostname);
}

/* "<a@b> SIZE=12" -> "a@b"; "<>" -> "". */
static const char *msg_strip_path(msg_t *m, const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	const char *end;
	if (*s == '<') {
		s++;
		end = strchr(s, '>');
		if (end == NULL)
			end = s + strcspn(s, " \t");
	} else {
		end = s + strcspn(s, " \t");
	}
	return arena_strndup(m->arena, s, (size_t)(end - s));
}

void msg_set_mail_from(msg_t *m, const char *from)
{
	m->mail_from = from ? msg_strip_path(m, from) : NULL;
}

void msg_add_rcpt(msg_t *m, const char *rcpt)
{
	if (m->n_rcpt == m->cap_rcpt)
		m->rcpt =
		    arena_grow(m->arena, m->rcpt, m->n_rcpt, &m->cap_rcpt, sizeof(*m->rcpt), 4);
	m->rcpt[m->n_rcpt++] = msg_strip_path(m, rcpt);
}

const char *msg_queue_id(const msg_t *m)
{
	return m->queue_id ? m->queue_id : "NOQUEUE";
}
const char *msg_client_ip(const msg_t *m)
{
	return m->client_ip;
}
const char *msg_client_name(const msg_t *m)
{
	return m->client_name;
}
const char *msg_helo(const msg_t *m)
{
	return m->helo;
}
const char *msg_mail_from(const msg_t *m)
{
	return m->mail_from;
}
const char *msg_auth(const msg_t *m)
{
	return m->auth;
}
size_t msg_rcpt_count(const msg_t *m)
{
	return m->n_rcpt;
}
const char *msg_rcpt(const msg_t *m, size_t i)
{
	return i < m->n_rcpt ? m->rcpt[i] : NULL;
}

/* Copies s dropping every "\r" that precedes "\n" (CRLF folds to LF). */
static char *msg_dup_lf(msg_t *m, const char *s, size_t n)
{
	char *d = arena_alloc(m->arena, n + 1), *o = d;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
			continue;
		*o++ = s[i];
	}
	*o = '\0';
	return d;
}

/*
 * A field name's hash, folded as strcasecmp() folds (tolower): names that
 * compare equal have the same key. The scorer asks for fields by name
 * hundreds of times a message; most fields are then passed over on the
 * key alone instead of a strcasecmp() each.
 */
static uint32_t name_key(const char *s, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint32_t)tolower((unsigned char)s[i])) * 16777619u;
	return h;
}

/* The slot of key in the index: its own, or the empty one where it would go. */
static struct msg_hslot *msg_hslot(const msg_t *m, uint32_t key)
{
	size_t mask = m->cap_hix - 1, i = key & mask;
	while (m->hix[i].first != 0 && m->hix[i].key != key)
		i = (i + 1) & mask;
	return &m->hix[i];
}

/* Links field i (its key set) into the index, which has room for it. */
static void msg_index_field(msg_t *m, size_t i)
{
	struct msg_hslot *sl = msg_hslot(m, m->hdr[i].key);
	m->hdr[i].next = 0;
	if (sl->first == 0) {
		sl->key = m->hdr[i].key;
		sl->first = (uint32_t)i + 1;
	} else {
		m->hdr[sl->last - 1].next = (uint32_t)i + 1;
	}
	sl->last = (uint32_t)i + 1;
}

/* Makes room in the index for one more field: doubles it and relinks every field when full. */
static void msg_index_reserve(msg_t *m)
{
	if (2 * (m->n_hdr + 1) <= m->cap_hix)
		return;
	m->cap_hix = m->cap_hix ? 2 * m->cap_hix : 64;
	m->hix = arena_zalloc(m->arena, m->cap_hix * sizeof(*m->hix));
	for (size_t i = 0; i < m->n_hdr; i++)
		msg_index_field(m, i);
}

static void msg_push_header(msg_t *m, const char *name, size_t name_len, const char *value,
                            size_t value_len)
{
	if (value_len > 0 && (value[0] == ' ' || value[0] == '\t')) {
		value++;
		value_len--;
	}
	/* A trailing line end belongs to the framing, not to the value. */
	while (value_len > 0 && (value[value_len - 1] == '\n' || value[value_len - 1] == '\r'))
		value_len--;
	/* past a limit, this field and every later one (the order is kept) */
	if (m->hdr_dropped > 0 || (m->max_hdr && m->n_hdr >= m->max_hdr) ||
	    (m->max_hdr_bytes && m->hdr_bytes + name_len + value_len > m->max_hdr_bytes)) {
		static const char ar[] = "Authentication-Results";
		m->hdr_dropped++;
		if (name_len == sizeof(ar) - 1 && strncasecmp(name, ar, name_len) == 0) {
			if (m->n_late_ar == m->cap_late_ar)
				m->late_ar = arena_grow(m->arena, m->late_ar, m->n_late_ar,
				                        &m->cap_late_ar, sizeof(*m->late_ar), 4);
			m->late_ar[m->n_late_ar++] = msg_dup_lf(m, value, value_len);
		}
		return;
	}
	m->hdr_bytes += name_len + value_len;
	if (m->n_hdr == m->cap_hdr)
		m->hdr = arena_grow(m->arena, m->hdr, m->n_hdr, &m->cap_hdr, sizeof(*m->hdr), 32);
	m->hdr[m->n_hdr].name = arena_strndup(m->arena, name, name_len);
	m->hdr[m->n_hdr].value = msg_dup_lf(m, value, value_len);
	/* of the name as kept: a NUL in it ends it for strcasecmp() too */
	m->hdr[m->n_hdr].key = name_key(m->hdr[m->n_hdr].name, strlen(m->hdr[m->n_hdr].name));
	msg_index_reserve(m);
	msg_index_field(m, m->n_hdr);
	m->n_hdr++;
	m->header_block = NULL;
}

void msg_keep_raw(msg_t *m)
{
	if (m->keep_raw)
		return;
	m->keep_raw = true;
	abuf_init(&m->raw_hdr, m->arena, 4096);
	abuf_init(&m->raw_body, m->arena, MSG_INITIAL_BODY_BYTES);
}

/* Appends p to b with every bare LF made CRLF; *last_cr carries across calls. */
static void msg_raw_put(abuf_t *b, const char *p, size_t n, bool *last_cr)
{
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n' && !(i > 0 ? p[i - 1] == '\r' : *last_cr)) {
			abuf_append(b, p + start, i - start);
			abuf_append(b, "\r", 1);
			start = i;
		}
	}
	abuf_append(b, p + start, n - start);
	if (n > 0)
		*last_cr = p[n - 1] == '\r';
}

static void msg_raw_field(msg_t *m, const char *name, size_t name_len, const char *value,
                          size_t value_len)
{
	if (!m->keep_raw)
		return;
	/* The line end after the value is framing; the fold inside it is not. */
	while (value_len > 0 && (value[value_len - 1] == '\n' || value[value_len - 1] == '\r'))
		value_len--;
	bool cr = false;
	abuf_append(&m->raw_hdr, name, name_len);
	abuf_putc(&m->raw_hdr, ':');
	msg_raw_put(&m->raw_hdr, value, value_len, &cr);
	abuf_append(&m->raw_hdr, "\r\n", 2);
	m->raw = NULL;
}

void msg_raw_header(msg_t *m, const char *name, const char *value)
{
	msg_raw_field(m, name, strlen(name), value, strlen(value));
}

const char *msg_raw(msg_t *m, size_t *len, bool *truncated)
{
	if (!m->keep_raw)
		return NULL;
	if (m->raw == NULL) {
		abuf_t b;
		abuf_init(&b, m->arena, m->raw_hdr.len + m->raw_body.len + 3);
		abuf_append(&b, m->raw_hdr.data, m->raw_hdr.len);
		abuf_append(&b, "\r\n", 2);
		abuf_append(&b, m->raw_body.data, m->raw_body.len);
		m->raw = b.data;
		m->raw_len = b.len;
	}
	if (len)
		*len = m->raw_len;
	if (truncated)
		*truncated = m->raw_truncated;
	return m->raw;
}

void msg_add_header(msg_t *m, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);
	msg_raw_field(m, name, nl, value, vl);
	msg_push_header(m, name, nl, value, vl);
}

void msg_set_header_limits(msg_t *m, size_t max_fields, size_t max_bytes)
{
	m->max_hdr = max_fields;
	m->max_hdr_bytes = max_bytes;
}

const char *msg_dropped_auth_results(const msg_t *m, size_t i)
{
	return i < m->n_late_ar ? m->late_ar[i] : NULL;
}

size_t msg_fields_dropped(const msg_t *m)
{
	return m->hdr_dropped;
}

size_t msg_header_count(const msg_t *m)
{
	return m->n_hdr;
}
const char *msg_header_name(const msg_t *m, size_t i)
{
	return i < m->n_hdr ? m->hdr[i].name : NULL;
}
const char *msg_header_value(const msg_t *m, size_t i)
{
	return i < m->n_hdr ? m->hdr[i].value : NULL;
}

/*
 * The index of the first field called name (key its name_key) at from or
 * later, else n_hdr. The walk follows the key's chain: from its head, or
 * on from field from - 1 when that one has the key (the next call of a
 * msg_header_next() loop), so that a loop over a field's occurrences
 * stays one pass however often the field repeats.
 */
static size_t msg_header_find(const msg_t *m, uint32_t key, const char *name, size_t from)
{
	if (m->n_hdr == 0 || from >= m->n_hdr)
		return m->n_hdr;
	uint32_t i;
	if (from > 0 && m->hdr[from - 1].key == key)
		i = m->hdr[from - 1].next;
	else
		i = msg_hslot(m, key)->first;
	for (; i != 0; i = m->hdr[i - 1].next)
		if (i - 1 >= from && strcasecmp(m->hdr[i - 1].name, name) == 0)
			return i - 1;
	return m->n_hdr;
}

const char *msg_header_get(const msg_t *m, const char *name, size_t nth)
{
	uint32_t key = name_key(name, strlen(name));
	size_t i = msg_header_find(m, key, name, 0);
	for (; i < m->n_hdr && nth > 0; nth--)
		i = msg_header_find(m, key, name, i + 1);
	return i < m->n_hdr ? m->hdr[i].value : NULL;
}

const char *msg_header_next(const msg_t *m, const char *name, size_t *pos)
{
	return msg_header_next_key(m, name, name_key(name, strlen(name)), pos);
}

uint32_t msg_header_key(const char *name)
{
	return name_key(name, strlen(name));
}

const char *msg_header_next_key(const msg_t *m, const char *name, uint32_t key, size_t *pos)
{
	size_t i = msg_header_find(m, key, name, *pos);
	*pos = i < m->n_hdr ? i + 1 : m->n_hdr;
	return i < m->n_hdr ? m->hdr[i].value : NULL;
}

const char *msg_header_block(msg_t *m, size_t *len)
{
	if (m->header_block == NULL) {
		abuf_t b;
		abuf_init(&b, m->arena, 4096);
		for (size_t i = 0; i < m->n_hdr; i++) {
			abuf_puts(&b, m->hdr[i].name);
			abuf_append(&b, ": ", 2);
			abuf_puts(&b, m->hdr[i].value);
			abuf_putc(&b, '\n');
		}
		m->header_block = b.data;
		m->header_block_len = b.len;
	}
	if (len)
		*len = m->header_block_len;
	return m->header_block;
}

static void msg_keep(msg_t *m, const char *p, size_t n)
{
	if (m->truncated)
		return;
	if (m->body.len + n > m->max_body_bytes) {
		n = (size_t)(m->max_body_bytes - m->body.len);
		m->truncated = true;
	}
	if (n)
		abuf_append(&m->body, p, n);
}

void msg_append_body(msg_t *m, const void *vp, size_t n)
{
	const char *p = vp;
	m->body_seen += n;
	if (m->keep_raw && !m->raw_truncated && n > 0) {
		size_t room = m->raw_body.len < m->max_body_bytes
		                  ? (size_t)(m->max_body_bytes - m->raw_body.len)
		                  : 0;
		if (n > room)
			m->raw_truncated = true;
		msg_raw_put(&m->raw_body, p, n < room ? n : room, &m->raw_last_cr);
		m->raw = NULL;
	}
	if (m->truncated || n == 0)
		return;
	if (m->pending_cr) {
		m->pending_cr = false;
		if (p[0] != '\n')
			msg_keep(m, "\r", 1);
	}
	/* Copy runs between CRs, dropping each CR that starts a CRLF. */
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\r')
			continue;
		if (i + 1 == n) {
			msg_keep(m, p + start, i - start);
			m->pending_cr = true;
			return;
		}
		if (p[i + 1] == '\n') {
			msg_keep(m, p + start, i - start);
			start = i + 1;
		}
	}
	msg_keep(m, p + start, n - start);
}

const char *msg_body(const msg_t *m, size_t *len)
{
	if (len)
		*len = m->body.len;
	return m->body.data;
}

bool msg_truncated(const msg_t *m)
{
	return m->truncated;
}
uint64_t msg_body_size(const msg_t *m)
{
	return m->body_seen;
}

static bool msg_is_field_name_char(unsigned char c)
{
	return c > 32 && c < 127 && c != ':';
}

/*
 * A field handed to a msg_field_fn: copied NUL-terminated into a scratch
 * buffer that is reused across fields, so the message arena holds each
 * field once (msg_add_header's copy) even for 200,000-field messages.
 */
struct msg_scratch {
	char *buf;
	size_t cap;
};

static void msg_emit_field(msg_t *m, struct msg_scratch *sc, const char *name, size_t name_len,
                           const char *value, size_t value_len, msg_field_fn field, void *ud)
{
	if (field == NULL) {
		msg_raw_field(m, name, name_len, value, value_len);
		msg_push_header(m, name, name_len, value, value_len);
		return;
	}
	size_t need = name_len + value_len + 2;
	if (need > sc->cap) {
		sc->cap = need > 2 * sc->cap ? need : 2 * sc->cap;
		free(sc->buf);
		sc->buf = xalloc_malloc(sc->cap);
	}
	memcpy(sc->buf, name, name_len);
	sc->buf[name_len] = '\0';
	char *v = sc->buf + name_len + 1;
	memcpy(v, value, value_len);
	v[value_len] = '\0';
	field(ud, m, sc->buf, v);
}

void msg_parse_raw(msg_t *m, const char *data, size_t len)
{
	msg_parse_raw_fields(m, data, len, NULL, NULL);
}

void msg_parse_raw_fields(msg_t *m, const char *data, size_t len, msg_field_fn field, void *ud)
{
	struct msg_scratch sc = {NULL, 0};
	size_t i = 0;
	/* A leading mbox "From " line is envelope, not a header field. */
	if (len >= 5 && memcmp(data, "From ", 5) == 0) {
		const char *nl = memchr(data, '\n', len);
		i = nl ? (size_t)(nl - data) + 1 : len;
	}
	while (i < len) {
		/* The blank line ends the header block. */
		if (data[i] == '\n') {
			i++;
			break;
		}
		if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n') {
			i += 2;
			break;
		}
		size_t name_start = i;
		while (i < len && msg_is_field_name_char((unsigned char)data[i]))
			i++;
		size_t name_end = i;
		while (i < len && (data[i] == ' ' || data[i] == '\t'))
			i++;
		if (name_end == name_start || i >= len || data[i] != ':') {
			/* Not a header line: the body starts here (as MTAs treat it). */
			i = name_start;
			break;
		}
		i++;
		size_t value_start = i;
		/* The value runs to a newline not followed by a fold. */
		for (;;) {
			const char *nl = memchr(data + i, '\n', len - i);
			if (nl == NULL) {
				i = len;
				break;
			}
			i = (size_t)(nl - data) + 1;
			if (i >= len || (data[i] != ' ' && data[i] != '\t'))
				break;
		}
		msg_emit_field(m, &sc, data + name_start, name_end - name_start, data + value_start,
		               i - value_start, field, ud);
	}
	free(sc.buf);
	if (i < len)
		msg_append_body(m, data + i, len - i);
}

/* ------------------------------------------------------------ the Received: chain */

/* The word after keyword at the start of p (blanks skipped), in the arena; NULL if none. */
static const char *msg_word_after(msg_t *m, const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n'))
		p++;
	size_t n = 0;
	while (p + n < end && p[n] != ' ' && p[n] != '\t' && p[n] != '\n' && p[n] != '(' &&
	       p[n] != ';')
		n++;
	return n ? arena_strndup(m->arena, p, n) : NULL;
}

/* "[1.2.3.4]", "[IPv6:2001:db8::1]" -> canonical text in the arena, or NULL. */
static const char *msg_bracket_ip(msg_t *m, const char *lb, const char *rb)
{
	char buf[INET6_ADDRSTRLEN + 8];
	size_t n = (size_t)(rb - lb - 1);
	if (n == 0 || n >= sizeof(buf))
		return NULL;
	memcpy(buf, lb + 1, n);
	buf[n] = '\0';
	const char *p = strncasecmp(buf, "IPv6:", 5) == 0 ? buf + 5 : buf;
	unsigned char a[16];
	char out[INET6_ADDRSTRLEN];
	if (inet_pton(AF_INET, p, a) == 1)
		return inet_ntop(AF_INET, a, out, sizeof(out)) ? arena_strdup(m->arena, out) : NULL;
	if (inet_pton(AF_INET6, p, a) != 1)
		return NULL;
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	const char *t = memcmp(a, mapped, 12) == 0 ? inet_ntop(AF_INET, a + 12, out, sizeof(out))
	                                           : inet_ntop(AF_INET6, a, out, sizeof(out));
	return t ? arena_strdup(m->arena, out) : NULL;
}

static void msg_parse_hop(msg_t *m, const char *f, msg_hop_t *h)
{
	memset(h, 0, sizeof(*h));
	const char *p = f;
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	const char *end = p + strlen(p);
	/* The from clause ends at the first " by " (any blank before it). */
	const char *by = strncasecmp(p, "by ", 3) == 0 ? p : NULL; /* a field without from */
	for (const char *q = p; *q && by == NULL; q++)
		if ((*q == ' ' || *q == '\t' || *q == '\n') && strncasecmp(q + 1, "by ", 3) == 0) {
			by = q + 1;
			break;
		}
	if (by)
		h->by = msg_word_after(m, by + 3, end);
	if (strncasecmp(p, "from", 4) != 0)
		return;
	const char *from_end = by ? by : end;
	h->helo = msg_word_after(m, p + 4, from_end);
	for (const char *lb = memchr(p, '[', (size_t)(from_end - p)); lb && lb < from_end;
	     lb = memchr(lb + 1, '[', (size_t)(from_end - lb - 1))) {
		const char *rb = memchr(lb, ']', (size_t)(end - lb));
		if (rb == NULL)
			return;
		if ((h->ip = msg_bracket_ip(m, lb, rb)) != NULL)
			return;
		if (rb >= from_end)
			return;
	}
}

size_t msg_received(msg_t *m, const msg_hop_t **hops)
{
	if (!m->hops_done) {
		m->hops_done = true;
		const char *v[MSG_MAX_HOPS];
		size_t n = 0, pos = 0;
		while (n < MSG_MAX_HOPS && (v[n] = msg_header_next(m, "Received", &pos)) != NULL)
			n++;
		m->hops = n ? arena_alloc(m->arena, n * sizeof(*m->hops)) : NULL;
		for (size_t i = 0; i < n; i++)
			msg_parse_hop(m, v[i], &m->hops[i]);
		m->n_hops = n;
	}
	*hops = m->hops;
	return m->n_hops;
}
