/*
 * NAME
 *	msg - one message: envelope, header fields and (size-limited) body
 * SYNOPSIS
 *	#include "msg.h"
 * DESCRIPTION
 *	A msg_t is filled either piecewise by the milter glue (envelope macros,
 *	one header at a time, body chunks) or in one go from a raw RFC 5322
 *	file by msg_parse_raw() (the CLI), so that both feed the same pipeline.
 *	It owns the message arena: every allocation made while scoring the
 *	message (MIME views, hits, explanations) comes from msg_arena() and is
 *	released by msg_free().
 *
 *	Line ends are normalised to "\n" in header values and in the body (the
 *	milter protocol delivers CRLF). Body bytes beyond max_body_bytes are
 *	counted but not kept; msg_truncated() then says so and the message is
 *	still scored on what was kept. Header fields past the limits of
 *	msg_set_header_limits() are likewise counted, not kept; the values of
 *	the Authentication-Results fields among them are listed apart, so that
 *	forged ones can still be found and removed.
 *
 *	After msg_keep_raw(), the message also keeps a raw copy for signature
 *	checks (DKIM): each field as "Name:" + value as delivered (the value
 *	with its leading space and folds; bare LF made CRLF), CRLF, the blank
 *	line, and the body as delivered with bare LF made CRLF, the body cut
 *	at max_body_bytes like the normalised one.
 * THREADS
 *	A msg_t belongs to the thread handling its connection.
 */
#ifndef SIFT_MSG_H
#define SIFT_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

typedef struct msg msg_t;

msg_t *msg_new(uint64_t max_body_bytes);
void msg_free(msg_t *m);
arena_t *msg_arena(msg_t *m);

/* Envelope. Strings are copied into the message arena; NULL clears. */
void msg_set_queue_id(msg_t *m, const char *id);
void msg_set_client(msg_t *m, const char *ip, const char *hostname);
void msg_set_helo(msg_t *m, const char *helo);
/* The reverse path; angle brackets and ESMTP parameters are stripped. */
void msg_set_mail_from(msg_t *m, const char *from);
void msg_add_rcpt(msg_t *m, const char *rcpt);
/* The SASL login name when the client authenticated, else unset. */
void msg_set_auth(msg_t *m, const char *authen);

const char *msg_queue_id(const msg_t *m);    /* never NULL: "NOQUEUE" when unset */
const char *msg_client_ip(const msg_t *m);   /* NULL when unknown */
const char *msg_client_name(const msg_t *m); /* NULL when unknown */
const char *msg_helo(const msg_t *m);
const char *msg_mail_from(const msg_t *m); /* "" for the null sender, NULL when unset */
const char *msg_auth(const msg_t *m);
size_t msg_rcpt_count(const msg_t *m);
const char *msg_rcpt(const msg_t *m, size_t i);

/*
 * Header fields in arrival order. The value is as received except that
 * folds are normalised to "\n" and the one leading space is dropped.
 */
void msg_add_header(msg_t *m, const char *name, const char *value);
/*
 * Header fields kept for scoring: at most max_fields of them, and of at
 * most max_bytes in all (names and values); 0 for no limit, the default.
 * A field that would pass either limit is dropped, and so is every later
 * one. SpamAssassin's header rules that pair one field with a later one
 * (To with From, To with Subject) cost the square of the field count:
 * 20,000 To fields, a 380 KB message, took 18 s; and each view of the
 * header the rules read is a copy: 8 MB of header took 500 MB to score.
 * The raw copy keeps every field.
 */
void msg_set_header_limits(msg_t *m, size_t max_fields, size_t max_bytes);
/* Fields not kept for scoring because of those limits. */
size_t msg_fields_dropped(const msg_t *m);
/*
 * The value of the ith (0-based) Authentication-Results field among those
 * dropped, in arrival order, or NULL. They follow every kept one.
 */
const char *msg_dropped_auth_results(const msg_t *m, size_t i);
size_t msg_header_count(const msg_t *m);
const char *msg_header_name(const msg_t *m, size_t i);
const char *msg_header_value(const msg_t *m, size_t i);
/* The nth (0-based) field called name (case-insensitive), or NULL. */
const char *msg_header_get(const msg_t *m, const char *name, size_t nth);
/*
 * The next field called name at index *pos or later, *pos then past it;
 * NULL when there is none. Start with *pos = 0 to visit every occurrence
 * in one pass over the header: a loop of msg_header_get(m, name, k) costs
 * a pass per occurrence, the square of the header's length when a sender
 * repeats one field thousands of times.
 */
const char *msg_header_next(const msg_t *m, const char *name, size_t *pos);
/*
 * msg_header_next() with name's key passed in: key must be
 * msg_header_key(name) (any other value finds nothing or the wrong
 * fields). For a caller that asks for the same names of every message,
 * as the rules do: the key is computed once, at load, instead of a hash
 * of the name per call. The key depends on the name only, so it is the
 * same for every message and thread.
 */
uint32_t msg_header_key(const char *name);
const char *msg_header_next_key(const msg_t *m, const char *name, uint32_t key, size_t *pos);
/* "Name: value\n" for every field, in order (built once, cached). */
const char *msg_header_block(msg_t *m, size_t *len);

/* Body bytes as they come (CRLF or LF); NUL bytes are kept. */
void msg_append_body(msg_t *m, const void *p, size_t n);
const char *msg_body(const msg_t *m, size_t *len);
bool msg_truncated(const msg_t *m);
/* Bytes of body seen, kept or not. */
uint64_t msg_body_size(const msg_t *m);

/*
 * The Received: chain, parsed once per message (on the first call, after
 * the header is complete) and kept in the message arena, newest hop
 * (topmost field) first, at most MSG_MAX_HOPS of them. For each field:
 * the name after "from" and the address in brackets of the from clause
 * (in canonical text form, an IPv4-mapped IPv6 one as IPv4; "[IPv6:...]"
 * understood) and the name after "by"; NULL for what the field lacks.
 */
#define MSG_MAX_HOPS 64
typedef struct msg_hop {
	const char *helo;
	const char *ip;
	const char *by;
} msg_hop_t;
size_t msg_received(msg_t *m, const msg_hop_t **hops);

/* Starts the raw copy; call before the first header field. */
void msg_keep_raw(msg_t *m);
/*
 * Adds a field to the raw copy only: one the pipeline does not keep as
 * evidence (msg_add_header() adds to both). value as for msg_add_header().
 */
void msg_raw_header(msg_t *m, const char *name, const char *value);
/* The raw copy (NULL unless kept); *truncated when its body was cut. */
const char *msg_raw(msg_t *m, size_t *len, bool *truncated);

/*
 * Splits a raw message (header block, blank line, body) into fields and
 * body. Anything that is not a header line ends the header block, as MTAs
 * do; a message with no blank line is all header. Never fails.
 */
void msg_parse_raw(msg_t *m, const char *data, size_t len);

/*
 * As msg_parse_raw(), but each field goes to field() instead of straight
 * into m, as the milter delivers it: name and value as C strings (a value
 * ends at its first NUL byte, as it would on the milter protocol), the
 * value as it stands in the file (folds and line end included; the caller
 * passes it to msg_add_header(), which normalises it). The strings live
 * until field() returns. This lets the pipeline (scan.h) apply one header
 * policy to files and to milter traffic alike.
 */
typedef void (*msg_field_fn)(void *ud, msg_t *m, const char *name, const char *value);
void msg_parse_raw_fields(msg_t *m, const char *data, size_t len, msg_field_fn field, void *ud);

#endif
