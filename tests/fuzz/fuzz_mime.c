/*
 * fuzz_mime.c - libFuzzer target for the MIME module: any byte string is
 * parsed as a raw message, every view and list is read back, and the
 * module's promises are checked (NUL-terminated strings, UTF-8 views).
 * Build and run with tests/fuzz/run.sh mime SECONDS.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mime.h"
#include "msg.h"
#include "../utf8_check.h"

/* Small limits so the fuzzer reaches the limit paths with small inputs. */
#define FUZZ_MAX_DEPTH        8
#define FUZZ_MAX_PARTS        64
#define FUZZ_MAX_TEXT_BYTES   (64 * 1024)
#define FUZZ_MAX_HEADER_BYTES 4096
/* header fields and bytes kept (max_header_fields, max_header_size) */
#define FUZZ_MAX_FIELDS     24
#define FUZZ_MAX_FIELD_KEPT 2048
/* and scan sizes small enough that text parts are cut for the views */
#define FUZZ_BODY_PART_SCAN    512
#define FUZZ_RAWBODY_PART_SCAN 2048

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_utf8(const char *s, size_t n)
{
	if (!test_utf8_strict((const unsigned char *)s, n))
		__builtin_trap();
}

/* Touches every byte so ASan sees an overrun, and checks the terminator. */
static size_t touch(const char *s)
{
	return s ? strlen(s) : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mime_limits_t lim = {FUZZ_MAX_DEPTH, FUZZ_MAX_PARTS, FUZZ_MAX_TEXT_BYTES,
	                     FUZZ_BODY_PART_SCAN, FUZZ_RAWBODY_PART_SCAN};
	msg_t *m = msg_new(1 << 20);
	msg_set_header_limits(m, FUZZ_MAX_FIELDS, FUZZ_MAX_FIELD_KEPT);
	msg_parse_raw(m, (const char *)data, size);
	mime_t *mi = mime_parse(m, &lim);

	/* the header limits, and msg_header_next() agreeing with msg_header_get() */
	if (msg_header_count(m) > FUZZ_MAX_FIELDS ||
	    (msg_fields_dropped(m) > 0) != ((mime_flags(mi) & MIME_F_FIELD_LIMIT) != 0))
		__builtin_trap();
	for (size_t i = 0; msg_dropped_auth_results(m, i) != NULL; i++)
		touch(msg_dropped_auth_results(m, i));
	if (msg_header_count(m) > 0) {
		const char *name = msg_header_name(m, msg_header_count(m) - 1), *v;
		size_t pos = 0, k = 0;
		for (; (v = msg_header_next(m, name, &pos)) != NULL; k++)
			if (v != msg_header_get(m, name, k))
				__builtin_trap();
		if (k == 0 || msg_header_get(m, name, k) != NULL)
			__builtin_trap();
	}

	size_t n;
	const char *b = mime_body(mi, &n);
	if (b[n] != '\0')
		__builtin_trap();
	check_utf8(b, n);
	b = mime_rawbody(mi, &n);
	if (b[n] != '\0')
		__builtin_trap();
	check_utf8(b, n);
	check_utf8(mime_subject(mi), touch(mime_subject(mi)));
	if (mime_part_count(mi) > FUZZ_MAX_PARTS)
		__builtin_trap();
	for (size_t i = 0; i < mime_part_count(mi); i++) {
		const mime_part_t *p = mime_part(mi, i);
		touch(p->content_type);
		touch(p->charset);
		touch(p->encoding);
		touch(p->headers);
		check_utf8(p->filename, touch(p->filename));
		if (p->depth > FUZZ_MAX_DEPTH)
			__builtin_trap();
		if (p->decoded_len > 0)
			(void)*(volatile const char *)&p->decoded[p->decoded_len - 1];
		if (p->is_text) {
			if (p->decoded[p->decoded_len] != '\0')
				__builtin_trap();
			check_utf8(p->decoded, p->decoded_len);
		}
	}
	if (mime_uri_count(mi) > MIME_MAX_URIS || mime_domain_count(mi) > MIME_MAX_DOMAINS)
		__builtin_trap();
	for (size_t i = 0; i < mime_uri_count(mi); i++) {
		touch(mime_uri(mi, i));
		/* where it was found: known types only; each URI once (checked on short lists) */
		if (mime_uri_types(mi, i) >> MIME_URI_NTYPES)
			__builtin_trap();
		for (size_t j = 0; mime_uri_count(mi) <= 64 && j < i; j++)
			if (strcmp(mime_uri(mi, i), mime_uri(mi, j)) == 0)
				__builtin_trap();
	}
	for (size_t i = 0; i < mime_domain_count(mi); i++)
		touch(mime_domain(mi, i));
	/* Host names written bare: bounded, each with a dot and no upper case. */
	if (mime_text_domain_count(mi) > MIME_MAX_TEXT_DOMAINS ||
	    mime_text_domain(mi, mime_text_domain_count(mi)) != NULL)
		__builtin_trap();
	for (size_t i = 0; i < mime_text_domain_count(mi); i++) {
		const char *t = mime_text_domain(mi, i);
		if (touch(t) < 4 || strchr(t, '.') == NULL ||
		    strpbrk(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZ@/"))
			__builtin_trap();
	}
	/* The lookup list: the domains first, then distinct redirect targets holding a dot. */
	size_t nl = mime_lookup_domain_count(mi);
	if (nl < mime_domain_count(mi) || nl > MIME_MAX_DOMAINS + MIME_MAX_TARGET_DOMAINS ||
	    mime_lookup_domain(mi, nl) != NULL)
		__builtin_trap();
	for (size_t i = 0; i < nl; i++) {
		const char *t = mime_lookup_domain(mi, i);
		if (touch(t) == 0 ||
		    (i < mime_domain_count(mi) ? t != mime_domain(mi, i) : strchr(t, '.') == NULL))
			__builtin_trap();
		for (size_t j = mime_domain_count(mi); j < i && i >= mime_domain_count(mi); j++)
			if (strcmp(t, mime_lookup_domain(mi, j)) == 0)
				__builtin_trap();
	}

	/* The header decoder and the charset converter on raw input too. */
	arena_t *a = msg_arena(m);
	size_t hn = size < FUZZ_MAX_HEADER_BYTES ? size : FUZZ_MAX_HEADER_BYTES;
	char *h = arena_strndup(a, (const char *)data, hn);
	char *d = mime_decode_header(a, h);
	check_utf8(d, touch(d));
	const char *charsets[] = {"utf-8",       "koi8-r", "shift_jis",
	                          "iso-2022-jp", "utf-16", "gb2312"};
	char *u = mime_to_utf8(a, charsets[size % 6], (const char *)data, hn, &n);
	if (u != NULL)
		check_utf8(u, n);
	msg_free(m);
	return 0;
}
