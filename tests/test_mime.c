/*
 * test_mime.c - the MIME module: tree walk and limits, transfer decoding,
 * charsets, RFC 2047/2231, HTML rendering and the URI lists. Fixtures are
 * whole messages in tests/data/mime/.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <iconv.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"
#include "msg.h"
#include "utf8_check.h"

#define FIXTURE_MAX_BYTES (1 << 20)

static msg_t *msg_from(const char *raw, size_t n)
{
	msg_t *m = msg_new(10 << 20);
	msg_parse_raw(m, raw, n);
	return m;
}

static msg_t *load(const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/mime/%s", TEST_DATADIR, name);
	FILE *fp = fopen(path, "rb");
	cr_assert_not_null(fp, "cannot open %s", path);
	char *buf = malloc(FIXTURE_MAX_BYTES);
	size_t n = fread(buf, 1, FIXTURE_MAX_BYTES, fp);
	fclose(fp);
	msg_t *m = msg_from(buf, n);
	free(buf);
	return m;
}

static mime_t *parse_lim(msg_t *m, unsigned depth, unsigned parts, uint64_t text)
{
	mime_limits_t l = {.max_depth = depth, .max_parts = parts, .max_text_bytes = text};
	return mime_parse(m, &l);
}

static mime_t *parse(msg_t *m)
{
	return parse_lim(m, 20, 500, 4 << 20);
}

static const char *body(const mime_t *mi)
{
	return mime_body(mi, NULL);
}

static bool has_uri(const mime_t *mi, const char *u)
{
	for (size_t i = 0; i < mime_uri_count(mi); i++)
		if (!strcmp(mime_uri(mi, i), u))
			return true;
	return false;
}

static bool has_domain(const mime_t *mi, const char *d)
{
	for (size_t i = 0; i < mime_domain_count(mi); i++)
		if (!strcmp(mime_domain(mi, i), d))
			return true;
	return false;
}

/* ------------------------------------------------------------ structure */

Test(mime, nested_multipart_walks_every_part_in_document_order)
{
	msg_t *m = load("nested.eml");
	mime_t *mi = parse(m);
	cr_assert_eq(mime_part_count(mi), 5);
	const char *types[] = {"multipart/mixed", "multipart/alternative", "text/plain",
	                       "text/html", "application/pdf"};
	unsigned depths[] = {0, 1, 2, 2, 1};
	for (size_t i = 0; i < 5; i++) {
		cr_assert_str_eq(mime_part(mi, i)->content_type, types[i]);
		cr_assert_eq(mime_part(mi, i)->depth, depths[i], "part %zu", i);
	}
	/* the only irregularity: a line of text after the close delimiter */
	cr_assert_eq(mime_flags(mi), MIME_F_EPILOGUE, "flags %#x", mime_flags(mi));
	cr_assert_null(mime_part(mi, 5));
	msg_free(m);
}

Test(mime, boundary_that_prefixes_the_inner_one_does_not_split_it)
{
	/* Outer "==b1", inner "==b1-alt": "--==b1-alt" must not end an outer part. */
	msg_t *m = load("nested.eml");
	mime_t *mi = parse(m);
	cr_assert_eq(mime_part(mi, 1)->depth, 1);
	cr_assert_eq(mime_part(mi, 2)->depth, 2);
	cr_assert_eq(mime_part(mi, 3)->depth, 2);
	cr_assert_eq(mime_flags(mi) & MIME_F_BAD_BOUNDARY, 0);
	msg_free(m);
}

Test(mime, preamble_and_epilogue_are_not_text)
{
	msg_t *m = load("nested.eml");
	mime_t *mi = parse(m);
	cr_assert_null(strstr(body(mi), "multi-part message in MIME format"));
	cr_assert_null(strstr(body(mi), "Epilogue"));
	cr_assert_null(strstr(mime_rawbody(mi, NULL), "Epilogue"));
	msg_free(m);
}

Test(mime, part_headers_are_kept_per_part)
{
	msg_t *m = load("nested.eml");
	mime_t *mi = parse(m);
	cr_assert_not_null(
	    strstr(mime_part(mi, 2)->headers, "Content-Transfer-Encoding: quoted-printable\n"));
	cr_assert_not_null(strstr(mime_part(mi, 0)->headers, "Subject: Quarterly report\n"));
	cr_assert_null(strchr(mime_part(mi, 4)->headers, '\r'));
	msg_free(m);
}

Test(mime, message_rfc822_is_descended_into)
{
	msg_t *m = load("rfc822.eml");
	mime_t *mi = parse(m);
	cr_assert_eq(mime_part_count(mi), 6);
	cr_assert_str_eq(mime_part(mi, 2)->content_type, "message/rfc822");
	cr_assert_str_eq(mime_part(mi, 3)->content_type, "multipart/alternative");
	cr_assert_eq(mime_part(mi, 5)->depth, 3);
	cr_assert_not_null(strstr(body(mi), "Buy now at http://inner-spam.example.com/"));
	cr_assert(has_uri(mi, "http://inner-spam.example.com/html"));
	msg_free(m);
}

Test(mime, message_without_mime_headers_is_one_text_part)
{
	const char raw[] = "From: a@example.org\nSubject: hi\n\nJust text.\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_eq(mime_part_count(mi), 1);
	cr_assert_str_eq(mime_part(mi, 0)->content_type, "text/plain");
	cr_assert(mime_part(mi, 0)->is_text);
	cr_assert_str_eq(body(mi), "hi\n\nJust text.\n");
	cr_assert_str_eq(mime_rawbody(mi, NULL), "Just text.\n");
	msg_free(m);
}

Test(mime, empty_message_parses)
{
	msg_t *m = msg_from("", 0);
	mime_t *mi = mime_parse(m, NULL);
	cr_assert_eq(mime_part_count(mi), 1);
	cr_assert_str_eq(body(mi), "");
	cr_assert_str_eq(mime_subject(mi), "");
	cr_assert_eq(mime_uri_count(mi), 0);
	msg_free(m);
}

Test(mime, multipart_digest_parts_default_to_message_rfc822)
{
	const char raw[] = "Subject: digest\nContent-Type: multipart/digest; boundary=d\n\n"
	                   "--d\n\nSubject: one\n\nFirst digest body.\n"
	                   "--d--\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_eq(mime_part_count(mi), 3);
	cr_assert_str_eq(mime_part(mi, 1)->content_type, "message/rfc822");
	cr_assert_str_eq(mime_part(mi, 2)->content_type, "text/plain");
	cr_assert_not_null(strstr(body(mi), "First digest body."));
	msg_free(m);
}

Test(mime, crlf_line_ends_are_handled)
{
	const char raw[] = "Subject: crlf\r\nContent-Type: multipart/mixed; boundary=\"c\"\r\n\r\n"
	                   "--c\r\nContent-Type: text/plain\r\n\r\nline one\r\nline two\r\n"
	                   "--c--\r\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_eq(mime_part_count(mi), 2);
	cr_assert_eq(mime_flags(mi), 0);
	cr_assert_str_eq(mime_part(mi, 1)->decoded, "line one\nline two");
	msg_free(m);
}

/* ------------------------------------------------------------ malformed input */

Test(mime, missing_closing_boundary_keeps_last_part_and_flags)
{
	msg_t *m = load("no_close.eml");
	mime_t *mi = parse(m);
	cr_assert_eq(mime_part_count(mi), 3);
	cr_assert(mime_flags(mi) & MIME_F_BAD_BOUNDARY);
	cr_assert_not_null(strstr(body(mi), "without a close delimiter."));
	cr_assert_not_null(strstr(body(mi), "First part."));
	msg_free(m);
}

Test(mime, missing_boundary_parameter_is_read_as_text_and_flagged)
{
	msg_t *m = load("no_boundary.eml");
	mime_t *mi = parse(m);
	cr_assert(mime_flags(mi) & MIME_F_BAD_BOUNDARY);
	cr_assert_eq(mime_part_count(mi), 1);
	cr_assert(mime_part(mi, 0)->is_text);
	cr_assert_not_null(strstr(body(mi), "Text of a multipart with no boundary"));
	cr_assert(has_domain(mi, "www.no-boundary.example.com"));
	msg_free(m);
}

Test(mime, boundary_never_found_is_flagged_and_body_kept)
{
	const char raw[] = "Content-Type: multipart/mixed; boundary=zzz\n\nno delimiters here\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert(mime_flags(mi) & MIME_F_BAD_BOUNDARY);
	cr_assert_not_null(strstr(body(mi), "no delimiters here"));
	msg_free(m);
}

Test(mime, garbage_base64_is_decoded_tolerantly_and_flagged)
{
	msg_t *m = load("bad_base64.eml");
	mime_t *mi = parse(m);
	cr_assert(mime_flags(mi) & MIME_F_BAD_BASE64);
	cr_assert_str_eq(mime_part(mi, 0)->decoded, "Hello world! More text");
	msg_free(m);
}

Test(mime, clean_base64_is_not_flagged)
{
	const char raw[] = "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
	                   "SGVsbG8sIHdv\ncmxkIQ==\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_eq(mime_flags(mi), 0);
	cr_assert_str_eq(mime_part(mi, 0)->decoded, "Hello, world!");
	msg_free(m);
}

Test(mime, depth_limit_stops_descent_and_flags)
{
	msg_t *m = load("deep.eml");
	mime_t *mi = parse_lim(m, 3, 500, 1 << 20);
	cr_assert(mime_flags(mi) & MIME_F_DEPTH_LIMIT);
	cr_assert_eq(mime_part_count(mi), 4); /* depths 0..3 */
	cr_assert_null(strstr(body(mi), "Deepest text."));
	msg_free(m);

	m = load("deep.eml");
	mi = parse_lim(m, 6, 500, 1 << 20);
	cr_assert_eq(mime_flags(mi) & MIME_F_DEPTH_LIMIT, 0);
	cr_assert_not_null(strstr(body(mi), "Deepest text."));
	msg_free(m);
}

Test(mime, part_limit_stops_parsing_and_flags)
{
	msg_t *m = load("many_parts.eml");
	mime_t *mi = parse_lim(m, 20, 10, 1 << 20);
	cr_assert(mime_flags(mi) & MIME_F_PART_LIMIT);
	cr_assert_eq(mime_part_count(mi), 10);
	cr_assert_not_null(strstr(body(mi), "Part number 8."));
	cr_assert_null(strstr(body(mi), "Part number 9."));
	msg_free(m);

	m = load("many_parts.eml");
	mi = parse(m);
	cr_assert_eq(mime_part_count(mi), 31);
	cr_assert_eq(mime_flags(mi), 0);
	msg_free(m);
}

Test(mime, text_limit_bounds_decoded_text_and_flags)
{
	size_t n = 100000;
	char *raw = malloc(n + 64);
	strcpy(raw, "Subject: big\n\n");
	size_t h = strlen(raw);
	memset(raw + h, 'a', n);
	msg_t *m = msg_from(raw, h + n);
	mime_t *mi = parse_lim(m, 20, 500, 4096);
	cr_assert(mime_flags(mi) & MIME_F_TEXT_LIMIT);
	cr_assert_eq(mime_part(mi, 0)->decoded_len, 4096);
	size_t bl;
	mime_body(mi, &bl);
	cr_assert_lt(bl, 4096 + 64);
	free(raw);
	msg_free(m);
}

/* ------------------------------------------------------------ scan sizes */

/* head, then times copies of unit (*len bytes); freed by the caller. */
static char *repeat(const char *head, const char *unit, size_t times, size_t *len)
{
	size_t hl = strlen(head), ul = strlen(unit);
	char *s = malloc(hl + ul * times + 1);
	memcpy(s, head, hl);
	for (size_t i = 0; i < times; i++)
		memcpy(s + hl + i * ul, unit, ul);
	*len = hl + ul * times;
	s[*len] = '\0';
	return s;
}

static mime_t *parse_scan(msg_t *m, uint64_t body_scan, uint64_t raw_scan)
{
	mime_limits_t l = {.max_depth = 20,
	                   .max_parts = 500,
	                   .max_text_bytes = 4 << 20,
	                   .body_part_scan_bytes = body_scan,
	                   .rawbody_part_scan_bytes = raw_scan};
	return mime_parse(m, &l);
}

/* The message printf(fmt, ...) writes; freed by the caller. */
__attribute__((format(printf, 1, 2))) static msg_t *msg_fmt(const char *fmt, ...)
{
	char *raw = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&raw, fmt, ap);
	va_end(ap);
	cr_assert_gt(n, 0);
	msg_t *m = msg_from(raw, (size_t)n);
	free(raw);
	return m;
}

/* A message of one text/plain part (UTF-8) with body text. */
static msg_t *plain(const char *text)
{
	return msg_fmt("Subject: s\nContent-Type: text/plain; charset=utf-8\n"
	               "Content-Transfer-Encoding: 8bit\n\n%s",
	               text);
}

/*
 * SpamAssassin's body_part_scan_size: a part's text is cut after the
 * first line break at or past the size, else after the first blank, each
 * looked for in the next 1,024 bytes, else at the size itself.
 */
Test(mime, body_scan_size_cuts_a_part_after_a_line_break_or_a_blank)
{
	msg_t *m = plain("alpha beta\ngamma delta\nepsilon\n");
	mime_t *mi = parse_scan(m, 12, 0);
	cr_assert_str_eq(body(mi), "s\n\nalpha beta\ngamma delta\n", "the line break past byte 12");
	cr_assert(mime_flags(mi) & MIME_F_SCAN_CUT);
	msg_free(m);

	/* the next line break is beyond the slack: the first blank past the size */
	size_t len;
	char *words = repeat("", "word ", 400, &len); /* no line break at all */
	m = plain(words);
	mi = parse_scan(m, 12, 0);
	cr_assert_str_eq(body(mi), "s\n\nword word word ");
	msg_free(m);
	free(words);

	/* short enough: untouched, unflagged */
	m = plain("alpha beta\n");
	mi = parse_scan(m, 12, 0);
	cr_assert_str_eq(body(mi), "s\n\nalpha beta\n");
	cr_assert_eq(mime_flags(mi) & MIME_F_SCAN_CUT, 0);
	msg_free(m);

	/* 0: no cut */
	m = plain("alpha beta\ngamma delta\nepsilon\n");
	mi = parse_scan(m, 0, 0);
	cr_assert_str_eq(body(mi), "s\n\nalpha beta\ngamma delta\nepsilon\n");
	cr_assert_eq(mime_flags(mi) & MIME_F_SCAN_CUT, 0);
	msg_free(m);
}

Test(mime, body_scan_size_without_a_boundary_cuts_at_a_character)
{
	/* 1,500 two-byte letters and no blank: byte 11 is inside one; 5 letters stay */
	size_t len;
	char *text = repeat("", "\xc3\xa9", 1500, &len);
	msg_t *m = plain(text);
	mime_t *mi = parse_scan(m, 11, 0);
	cr_assert_str_eq(body(mi), "s\n\n\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
	cr_assert(test_utf8_strict((const unsigned char *)body(mi), strlen(body(mi))));
	msg_free(m);
	free(text);
}

Test(mime, scan_sizes_apply_to_each_part_and_leave_the_uris_whole)
{
	size_t len;
	char *late = repeat("", "word ", 400, &len);
	msg_t *m = msg_fmt("Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
	                   "--b\nContent-Type: text/plain\n\nalpha beta\ngamma delta\nepsilon\n"
	                   "--b\nContent-Type: text/plain\n\nalpha beta\ngamma delta\nepsilon\n"
	                   "--b\nContent-Type: text/plain\n\n%shttp://late.example/offer\n--b--\n",
	                   late);
	mime_t *mi = parse_scan(m, 12, 12);
	cr_assert_str_eq(body(mi), "s\n\nalpha beta\ngamma delta\nalpha beta\ngamma delta\n"
	                           "word word word ");
	size_t rl;
	const char *rb = mime_rawbody(mi, &rl);
	cr_assert_eq(rl,
	             strlen("alpha beta\ngamma delta\nalpha beta\ngamma delta\nword word word "));
	cr_assert(strncmp(rb, "alpha beta\ngamma delta\nalpha beta\ngamma delta\nword word word ",
	                  rl) == 0);
	cr_assert(has_uri(mi, "http://late.example/offer"), "links past the cut are still read");
	size_t wl;
	const char *whole = mime_body_whole(mi, &wl);
	cr_assert_str_eq(whole + wl - strlen("word http://late.example/offer"),
	                 "word http://late.example/offer", "Bayes reads every part whole");
	cr_assert_eq(strstr(whole, "epsilon\nalpha beta\ngamma delta\nepsilon\nword ") != NULL,
	             true);
	cr_assert_eq(mime_part(mi, 3)->decoded_len, len + strlen("http://late.example/offer"),
	             "the part itself is whole");
	msg_free(m);
	free(late);
}

/* rawbody keeps HTML as written: without a line break, a cut after a tag's '>' comes first. */
Test(mime, rawbody_scan_size_prefers_the_end_of_a_tag)
{
	size_t len;
	char *html = repeat("<html><body>", "<p>x y</p>", 200, &len);
	msg_t *m = msg_fmt("Subject: s\nContent-Type: text/html\n\n%s</body></html>\n", html);
	mime_t *mi = parse_scan(m, 0, 11);
	size_t rl;
	const char *rb = mime_rawbody(mi, &rl);
	cr_assert_eq(rl, 12);
	cr_assert(strncmp(rb, "<html><body>", 12) == 0);
	cr_assert(mime_flags(mi) & MIME_F_SCAN_CUT);
	/* the rendered text is the body view's: it has blanks, and only its own limit */
	cr_assert_gt(strlen(body(mi)), 1000);
	msg_free(m);
	free(html);
}

Test(mime, default_limits_cut_body_text_at_spamassassins_50000_bytes)
{
	size_t len;
	char *text = repeat("", "0123456789 abcdefghi\n", 5000, &len); /* 105,000 bytes */
	msg_t *m = plain(text);
	mime_t *mi = mime_parse(m, NULL);
	size_t bl;
	mime_body(mi, &bl);
	/* "s\n\n" and the 21-byte lines up to the break at byte 50,000 (21 x 2,380 + 20) */
	cr_assert_eq(bl, 3 + 50001);
	size_t rl;
	mime_rawbody(mi, &rl);
	cr_assert_eq(rl, len, "rawbody's default is 500,000 bytes");
	msg_free(m);
	free(text);
}

Test(mime, truncated_message_is_flagged)
{
	const char raw[] = "Subject: t\n\n0123456789012345678901234567890123456789\n";
	msg_t *m = msg_new(10);
	msg_parse_raw(m, raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert(mime_flags(mi) & MIME_F_TRUNCATED);
	msg_free(m);
}

Test(mime, malformed_content_type_is_flagged)
{
	const char raw[] = "Content-Type: text; charset=\"utf-8\n\nhello\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert(mime_flags(mi) & MIME_F_BAD_HEADER);
	cr_assert_str_eq(mime_part(mi, 0)->content_type, "text/plain");
	cr_assert_not_null(strstr(body(mi), "hello"));
	msg_free(m);
}

/* ------------------------------------------------------------ transfer encodings */

Test(mime, quoted_printable_soft_breaks_and_latin1)
{
	msg_t *m = load("nested.eml");
	mime_t *mi = parse(m);
	const mime_part_t *p = mime_part(mi, 2);
	cr_assert_str_eq(p->charset, "iso-8859-1");
	cr_assert_str_eq(p->encoding, "quoted-printable");
	cr_assert_str_eq(p->decoded,
	                 "Café crème for everyone, and a very long line that is wrapped "
	                 "with a soft break here.");
	msg_free(m);
}

Test(mime, quoted_printable_bad_escapes_kept_literally_and_flagged)
{
	msg_t *m = load("qp.eml");
	mime_t *mi = parse(m);
	cr_assert(mime_flags(mi) & MIME_F_BAD_QP);
	const char *d = mime_part(mi, 0)->decoded;
	cr_assert_not_null(strstr(d, "Soft break and été.\n"), "%s", d);
	cr_assert_not_null(strstr(d, "Bad escape =ZZ and =4 end, equals= sign. \n"), "%s", d);
	/* Transport padding goes; an encoded blank (=20) stays. */
	cr_assert_not_null(strstr(d, "Trailing padding here   \n"), "%s", d);
	msg_free(m);
}

Test(mime, base64_html_is_decoded_and_rendered)
{
	msg_t *m = load("nested.eml");
	mime_t *mi = parse(m);
	const mime_part_t *p = mime_part(mi, 3);
	cr_assert(p->is_html);
	cr_assert_not_null(strstr(p->decoded, "<p>Café crème for <b>everyone</b>.</p>"));
	cr_assert_not_null(strstr(body(mi), "Café crème for everyone.\n"));
	cr_assert_not_null(strstr(mime_rawbody(mi, NULL), "<b>everyone</b>"));
	msg_free(m);
}

Test(mime, base64_attachment_is_decoded_bytes)
{
	msg_t *m = load("nested.eml");
	mime_t *mi = parse(m);
	const mime_part_t *p = mime_part(mi, 4);
	cr_assert(p->is_attachment);
	cr_assert_not(p->is_text);
	cr_assert_eq(p->decoded_len, 83);
	cr_assert_eq(memcmp(p->decoded, "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", 15), 0);
	cr_assert_null(strstr(body(mi), "PDF"));
	msg_free(m);
}

/* ------------------------------------------------------------ charsets */

Test(mime, koi8r_windows1252_latin1_utf8_parts_become_utf8)
{
	msg_t *m = load("charsets.eml");
	mime_t *mi = parse(m);
	cr_assert_str_eq(mime_part(mi, 1)->decoded, "Привет, как дела? Скидки на всё!");
	cr_assert_str_eq(mime_part(mi, 2)->decoded, "He said “free money” – only €99…");
	cr_assert_str_eq(mime_part(mi, 3)->decoded, "Grüße aus München");
	cr_assert_str_eq(mime_part(mi, 4)->decoded, "Emoji 😀 and 中文 text");
	msg_free(m);
}

Test(mime, unknown_charset_falls_back_to_windows1252_and_flags)
{
	msg_t *m = load("charsets.eml");
	mime_t *mi = parse(m);
	cr_assert_str_eq(mime_part(mi, 5)->charset, "x-no-such-charset");
	cr_assert_str_eq(mime_part(mi, 5)->decoded, "Unknown café");
	cr_assert(mime_flags(mi) & MIME_F_BAD_CHARSET);
	msg_free(m);
}

Test(mime, invalid_utf8_is_replaced_and_flagged)
{
	const char raw[] = "Content-Type: text/plain; charset=utf-8\n\nbad \xff\xfe byte \xc3\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert(mime_flags(mi) & MIME_F_BAD_CHARSET);
	cr_assert_str_eq(mime_part(mi, 0)->decoded,
	                 "bad \xef\xbf\xbd\xef\xbf\xbd byte \xef\xbf\xbd\n");
	msg_free(m);
}

Test(mime, undeclared_8bit_text_is_read_as_windows1252_without_flag)
{
	const char raw[] = "Subject: x\n\ncaf\xe9 \x93quoted\x94\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_eq(mime_flags(mi), 0);
	cr_assert_str_eq(mime_part(mi, 0)->decoded, "café “quoted”\n");
	msg_free(m);
}

Test(mime, iconv_invalid_sequence_is_replaced_and_flagged)
{
	/* 0x82 0xa0 is a Shift_JIS hiragana; 0xff alone is invalid. */
	const char raw[] = "Content-Type: text/plain; charset=shift_jis\n\n\x82\xa0\xff!\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert(mime_flags(mi) & MIME_F_BAD_CHARSET);
	cr_assert_str_eq(mime_part(mi, 0)->decoded, "あ\xef\xbf\xbd!\n");
	msg_free(m);
}

Test(mime, mime_to_utf8_converts_and_rejects_unknown_charsets)
{
	arena_t *a = arena_new(4096);
	size_t n;
	char *s = mime_to_utf8(a, "KOI8-R", "\xf0\xd2\xc9\xd7\xc5\xd4", 6, &n);
	cr_assert_str_eq(s, "Привет");
	cr_assert_eq(n, strlen("Привет"));
	cr_assert_null(mime_to_utf8(a, "no-such-charset", "abc", 3, &n));
	const char jis[] = "\x1b$B$\"\x1b(B";
	s = mime_to_utf8(a, "iso-2022-jp", jis, sizeof(jis) - 1, &n);
	cr_assert_str_eq(s, "あ");
	arena_free(a);
}

/*
 * Encoded words that cycle through twenty charsets: each converter is
 * opened once per thread. A cache of eight evicting in turn closed and
 * reopened one per word, and glibc unloads and reloads the gconv module
 * each time: 300,000 such words took 16 s.
 */
Test(mime, encoded_words_in_many_charsets_open_each_converter_once, .timeout = 10)
{
	static const char *const cs[] = {
	    "iso-8859-2", "iso-8859-5",   "iso-8859-7",   "koi8-r", "windows-1251",
	    "gb2312",     "big5",         "shift_jis",    "euc-jp", "euc-kr",
	    "tis-620",    "cp850",        "macintosh",    "cp437",  "koi8-u",
	    "iso-8859-4", "windows-1250", "windows-1253", "cp866",  "iso-8859-9"};
	enum { N_CS = sizeof(cs) / sizeof(cs[0]), WORDS = 300000 };
	arena_t *a = arena_new(1 << 16);
	abuf_t b;
	abuf_init(&b, a, WORDS * 24);
	for (int i = 0; i < WORDS; i++)
		abuf_printf(&b, "%s=?%s?Q?w%d?=", i ? " " : "", cs[i % N_CS], i % 10);
	char *out = mime_decode_header(a, b.data);
	/* each word decoded; words in different charsets stay apart */
	cr_assert_eq(strlen(out), 3 * WORDS - 1, "%.80s", out);
	cr_assert(strncmp(out, "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w0 ", 33) == 0, "%.40s", out);
	cr_assert_str_eq(out + 3 * WORDS - 3, "w9");

	/*
	 * Past MIME_ICONV_MAX charsets a thread meets, a new one is treated as
	 * unknown (the word is kept as written); those it met still convert.
	 */
	size_t met = N_CS, kept = 0;
	bool last_kept = false;
	char name[32];
	for (int k = 0; k < 20000 && met < MIME_ICONV_MAX + 40; k++) {
		snprintf(name, sizeof(name), k < 10000 ? "ibm%d" : "cp%d", k % 10000);
		iconv_t cd = iconv_open("UTF-8", name);
		if (cd == (iconv_t)-1)
			continue;
		iconv_close(cd);
		char w[64];
		snprintf(w, sizeof(w), "=?%s?Q?x?=", name);
		/* decoded, the word is no longer as written (EBCDIC pages make 'x' another letter)
		 */
		last_kept = strcmp(mime_decode_header(a, w), w) == 0;
		kept += last_kept;
		met++;
	}
	cr_assert_eq(met, MIME_ICONV_MAX + 40, "glibc knows enough IBM and CP code pages");
	/* (a few names convert without iconv, or share a converter: not exactly 40) */
	cr_assert(kept >= 20 && kept <= 40 && last_kept, "kept as written: %zu", kept);
	cr_assert_str_eq(mime_decode_header(a, "=?koi8-r?Q?=F0=D2=C9?="), "При");
	arena_free(a);
}

/* ------------------------------------------------------------ headers */

Test(mime, rfc2047_subject_joins_words_split_inside_a_character)
{
	msg_t *m = load("subject2047.eml");
	mime_t *mi = parse(m);
	cr_assert_str_eq(mime_subject(mi),
	                 "Скидки только сегодня - Grüße aus München =?x-unknown-cs?Q?keep_me?=");
	msg_free(m);
}

Test(mime, body_view_starts_with_subject_and_a_blank_line)
{
	msg_t *m = load("subject2047.eml");
	mime_t *mi = parse(m);
	const char *b = body(mi);
	const char *want = "Скидки только сегодня - Grüße aus München "
	                   "=?x-unknown-cs?Q?keep_me?=\n\nBody line.\n";
	cr_assert_str_eq(b, want);
	msg_free(m);
}

Test(mime, decode_header_unfolds_and_decodes)
{
	arena_t *a = arena_new(4096);
	cr_assert_str_eq(mime_decode_header(a, "plain\n\tfolded"), "plain\tfolded");
	cr_assert_str_eq(mime_decode_header(a, "=?utf-8?q?a_b?= =?utf-8?q?c?="), "a bc");
	cr_assert_str_eq(mime_decode_header(a, "=?ISO-8859-1?B?SvZyZw==?= x"), "Jörg x");
	cr_assert_str_eq(mime_decode_header(a, "=?utf-8*en?Q?Hi?="), "Hi");
	/* Not encoded words: kept as written. */
	cr_assert_str_eq(mime_decode_header(a, "=?utf-8?x?abc?= and =? lone"),
	                 "=?utf-8?x?abc?= and =? lone");
	/* Decoded line breaks must not reach rules or added headers. */
	cr_assert_str_eq(mime_decode_header(a, "=?utf-8?q?a=0D=0Ab?="), "a  b");
	/* Raw 8-bit header text becomes UTF-8 too. */
	cr_assert_str_eq(mime_decode_header(a, "caf\xe9"), "café");
	cr_assert_str_eq(mime_decode_header(a, ""), "");
	arena_free(a);
}

Test(mime, rfc2231_filename_continuations_are_decoded)
{
	msg_t *m = load("nested.eml");
	mime_t *mi = parse(m);
	cr_assert_str_eq(mime_part(mi, 4)->filename, "Résumé of Bob.pdf");
	msg_free(m);
}

Test(mime, content_type_name_with_rfc2047_word_is_decoded)
{
	const char raw[] = "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
	                   "Content-Type: application/octet-stream;\n"
	                   " name=\"=?UTF-8?B?0YTQsNC50LsuZXhl?=\"\n\nMZ\n--b--\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_str_eq(mime_part(mi, 1)->filename, "файл.exe");
	cr_assert(mime_part(mi, 1)->is_attachment);
	msg_free(m);
}

Test(mime, quoted_parameters_with_escapes_and_semicolons)
{
	const char raw[] =
	    "Content-Type: multipart/mixed; boundary=\"a;b \\\"c\\\"\"\n\n"
	    "--a;b \"c\"\ncontent-type: TEXT/PLAIN; CHARSET=\"ISO-8859-1\"\n\nx\xe9\n"
	    "--a;b \"c\"--\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_eq(mime_part_count(mi), 2);
	cr_assert_str_eq(mime_part(mi, 1)->content_type, "text/plain");
	cr_assert_str_eq(mime_part(mi, 1)->charset, "iso-8859-1");
	cr_assert_str_eq(mime_part(mi, 1)->decoded, "xé");
	cr_assert_eq(mime_flags(mi), 0);
	msg_free(m);
}

/* ------------------------------------------------------------ HTML */

Test(mime, html_drops_script_style_head_and_comments)
{
	msg_t *m = load("html.eml");
	mime_t *mi = parse(m);
	const char *b = body(mi);
	cr_assert_null(strstr(b, "HIDDEN"), "%s", b);
	cr_assert_null(strstr(b, "Hidden title"), "%s", b);
	cr_assert_null(strstr(b, "color: red"), "%s", b);
	msg_free(m);
}

Test(mime, html_entities_are_decoded)
{
	msg_t *m = load("html.eml");
	mime_t *mi = parse(m);
	const char *b = body(mi);
	cr_assert_not_null(strstr(b, "Café & Crème\n"), "%s", b);
	cr_assert_not_null(strstr(b, "Price: €10 ABC now, 5 < 6 > 4 \"ok\""), "%s", b);
	msg_free(m);
}

Test(mime, html_inline_tags_join_and_blocks_break_lines)
{
	msg_t *m = load("html.eml");
	mime_t *mi = parse(m);
	const char *b = body(mi);
	cr_assert_not_null(strstr(b, "\n\nViagra cheap\n\n"), "%s", b);
	cr_assert_not_null(strstr(b, "log in.\nMail us."), "%s", b);
	cr_assert_not_null(strstr(b, "cell1 cell2"), "%s", b);
	msg_free(m);
}

/*
 * Breaks as SpamAssassin's renderer writes them, since its body rules run
 * on the paragraphs that result: <br> and <div> add a line each (so two
 * make a paragraph), <p> makes one, cells are spaces, tables nothing.
 */
static const char *render(arena_t *a, const char *html)
{
	abuf_t out;
	abuf_init(&out, a, 16);
	mime_html_render(NULL, html, strlen(html), &out);
	return out.data;
}

Test(mime, html_breaks_make_the_paragraphs_spamassassin_sees)
{
	arena_t *a = arena_new(4096);
	cr_assert_not_null(strstr(render(a, "a<br>b"), "a\nb"));
	cr_assert_null(strstr(render(a, "a<br>b"), "\n\n"));
	cr_assert_not_null(strstr(render(a, "a<br><br>b"), "a\n\nb"));
	cr_assert_not_null(strstr(render(a, "<div>a</div><div>b</div>"), "a\n\nb"),
	                   "a closing and an opening div");
	cr_assert_not_null(strstr(render(a, "a<p>b"), "a\n\nb"));
	const char *t =
	    render(a, "<table><tr><td>x</td><td>y</td></tr><tr><td>z</td></tr></table>");
	cr_assert_str_eq(t, "x y z\n", "rows and tables break nothing, cells are spaces");
	/* white space alone between tags after a break still makes the next text start blank */
	cr_assert_str_eq(render(a, "<p>x</p>\n</body>\n</html>\n\ntracker"), "x\n\n tracker\n");
	cr_assert_str_eq(render(a, "<p>x</p>\ny"), "x\n\ny\n", "the first text's blank is dropped");
	cr_assert_str_eq(render(a, "  first"), " first\n", "the document's first blank is kept");
	arena_free(a);
}

Test(mime, html_unclosed_head_does_not_hide_the_message)
{
	const char raw[] = "Content-Type: text/html\n\n<html><head><body>Visible text</body>\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_not_null(strstr(body(mi), "Visible text"));
	msg_free(m);
}

Test(mime, html_render_handles_stray_markup)
{
	arena_t *a = arena_new(4096);
	abuf_t out;
	abuf_init(&out, a, 16);
	const char html[] = "a < b &unknown; &amp &ampx &#0; &#x110000; <</ 3> <br/>c<";
	mime_html_render(NULL, html, sizeof(html) - 1, &out);
	cr_assert_str_eq(out.data, "a < b &unknown; & &ampx \xef\xbf\xbd \xef\xbf\xbd <\nc<\n");
	arena_free(a);
}

Test(mime, html_links_and_text_urls_are_collected)
{
	msg_t *m = load("html.eml");
	mime_t *mi = parse(m);
	cr_assert(has_uri(mi, "http://WWW.Example.COM/buy?a=1&b=2"));
	cr_assert(has_uri(mi, "https://secure.example.org:8443/login"));
	cr_assert(has_uri(mi, "mailto:sales@Shop.Example.NET?subject=hi"));
	cr_assert(has_uri(mi, "http://tracker.example.com/pixel.gif"));
	cr_assert(has_uri(mi, "http://form.example.biz/submit"));
	cr_assert(has_uri(mi, "http://img.example.com/bg.gif"));
	cr_assert(has_uri(mi, "http://text-link.example.info/path"));
	cr_assert(has_domain(mi, "www.example.com"));
	cr_assert(has_domain(mi, "secure.example.org"));
	cr_assert(has_domain(mi, "shop.example.net"));
	cr_assert_eq(mime_domain_count(mi), 7);
	msg_free(m);
}

/* ------------------------------------------------------------ URLs in text */

Test(mime, text_urls_trimmed_lowercased_and_distinct)
{
	msg_t *m = load("urls.eml");
	mime_t *mi = parse(m);
	cr_assert_eq(mime_uri_count(mi), 6);
	cr_assert_str_eq(mime_uri(mi, 0), "http://paren.example.com/a.html");
	cr_assert_str_eq(mime_uri(mi, 1), "www.Example.COM");
	cr_assert_str_eq(mime_uri(mi, 2), "https://wiki.example.org/Foo_(bar)");
	cr_assert_str_eq(mime_uri(mi, 3), "ftp://files.example.net/pub/x.tgz");
	cr_assert_str_eq(mime_uri(mi, 4), "mailto:Info@Mail.Example.ORG");
	cr_assert_str_eq(mime_uri(mi, 5), "http://user:pw@Login.Example.CO.UK:8080/path?q=1#frag");
	const char *doms[] = {"paren.example.com", "www.example.com",  "wiki.example.org",
	                      "files.example.net", "mail.example.org", "login.example.co.uk"};
	cr_assert_eq(mime_domain_count(mi), 6);
	for (size_t i = 0; i < 6; i++)
		cr_assert_str_eq(mime_domain(mi, i), doms[i]);
	msg_free(m);
}

Test(mime, uri_and_domain_lists_are_bounded)
{
	size_t cap = 1500 * 40 + 64;
	char *raw = malloc(cap);
	size_t n = (size_t)snprintf(raw, cap, "Subject: many\n\n");
	for (int i = 0; i < 1500; i++)
		n += (size_t)snprintf(raw + n, cap - n, "http://h%d.example.com/ ", i);
	msg_t *m = msg_from(raw, n);
	mime_t *mi = parse(m);
	cr_assert_eq(mime_uri_count(mi), MIME_MAX_URIS);
	cr_assert_eq(mime_domain_count(mi), MIME_MAX_DOMAINS);
	cr_assert_null(mime_uri(mi, MIME_MAX_URIS));
	free(raw);
	msg_free(m);
}

/* ------------------------------------------------------------ hostile input */

/*
 * Shapes that would make a naive parser quadratic. Each input is a few MB;
 * linear code parses it in milliseconds, quadratic code in hours, so the
 * timeout is what these tests assert.
 */
#define HOSTILE_REPEATS 300000

static void parse_hostile(const char *head, const char *unit, size_t times)
{
	size_t n;
	char *raw = repeat(head, unit, times, &n);
	msg_t *m = msg_from(raw, n);
	mime_t *mi = parse(m);
	size_t bl;
	cr_assert_not_null(mime_body(mi, &bl));
	free(raw);
	msg_free(m);
}

Test(mime, many_unclosed_head_tags_parse_in_linear_time, .timeout = 20)
{
	parse_hostile("Content-Type: text/html\n\n", "<head>x", HOSTILE_REPEATS);
}

Test(mime, url_followed_by_many_parens_parses_in_linear_time, .timeout = 20)
{
	/* memchr is fast: it takes millions of ')' to show the square. */
	parse_hostile("Subject: x\n\nhttp://x.example.com/", ")", 10 * HOSTILE_REPEATS);
}

Test(mime, boundary_text_not_at_line_start_parses_in_linear_time, .timeout = 20)
{
	parse_hostile("Content-Type: multipart/mixed; boundary=b\n\n--b\n\n", "x--b ",
	              HOSTILE_REPEATS);
}

Test(mime, many_broken_encoded_words_parse_in_linear_time, .timeout = 20)
{
	parse_hostile("Subject: ", "=?utf-8?q?", HOSTILE_REPEATS);
}

Test(mime, many_empty_parts_stop_at_the_part_limit, .timeout = 20)
{
	size_t n;
	char *raw =
	    repeat("Content-Type: multipart/mixed; boundary=b\n\n", "--b\n", HOSTILE_REPEATS, &n);
	msg_t *m = msg_from(raw, n);
	mime_t *mi = parse_lim(m, 20, 500, 4 << 20);
	cr_assert_eq(mime_part_count(mi), 500);
	cr_assert(mime_flags(mi) & MIME_F_PART_LIMIT);
	free(raw);
	msg_free(m);
}

Test(mime, nesting_is_capped_whatever_the_limit_says, .timeout = 20)
{
	/* 1000 nested multiparts, each opening only: boundaries b0, b1, ... */
	size_t cap = 1000 * 80 + 64, n = 0;
	char *raw = malloc(cap);
	n += (size_t)snprintf(raw + n, cap - n, "Content-Type: multipart/mixed; boundary=b0\n\n");
	for (int i = 0; i < 1000; i++)
		n += (size_t)snprintf(raw + n, cap - n,
		                      "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n", i,
		                      i + 1);
	msg_t *m = msg_from(raw, n);
	mime_t *mi = parse_lim(m, 100000, 100000, 4 << 20);
	cr_assert(mime_flags(mi) & MIME_F_DEPTH_LIMIT);
	cr_assert_leq(mime_part(mi, mime_part_count(mi) - 1)->depth, MIME_DEPTH_CAP);
	free(raw);
	msg_free(m);
}

Test(mime, html_relative_and_script_links_are_not_uris)
{
	const char raw[] = "Content-Type: text/html\n\n"
	                   "<a href=\"/local/path\">a</a> <a href=\"#top\">b</a>"
	                   "<a href=\"javascript:void(0)\">c</a> <img src=\"cid:part1@x\">"
	                   "<a href=\" http://ok.example.com/\n x \">d</a>\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_eq(mime_uri_count(mi), 1);
	/* Blanks around a link go, a newline inside it too (as in browsers). */
	cr_assert_str_eq(mime_uri(mi, 0), "http://ok.example.com/ x");
	cr_assert_str_eq(mime_domain(mi, 0), "ok.example.com");
	msg_free(m);
}

/* The type names of URI u's bits, space-separated ("" when none; NULL when u is not listed). */
static char *uri_types_of(const mime_t *mi, const char *u)
{
	for (size_t i = 0; i < mime_uri_count(mi); i++) {
		if (strcmp(mime_uri(mi, i), u) != 0)
			continue;
		static char out[256];
		size_t o = 0;
		out[0] = '\0';
		for (unsigned b = 0; b < MIME_URI_NTYPES; b++)
			if (mime_uri_types(mi, i) & (1u << b))
				o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%s",
				                      o ? " " : "", mime_uri_type_name(b));
		return out;
	}
	return NULL;
}

Test(mime, each_uri_says_where_it_was_found_as_uri_detail_names_it)
{
	const char raw[] =
	    "Content-Type: text/html\n\n"
	    "<body background=\"http://bg.example.com/b.png\">"
	    "<a href=\"http://a.example.com/&amp;x\">http://a.example.com/&amp;x</a>"
	    "<img SRC=\"http://i.example.com/1.gif\"><iframe src=\"http://f.example.com/\">"
	    "</iframe><form action=\"http://post.example.com/\"></form>"
	    "<div background=\"http://div.example.com/\">see www.text.example.com</div>"
	    "<a href=\"http://i.example.com/1.gif\">i</a></body>\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_str_eq(uri_types_of(mi, "http://bg.example.com/b.png"), "body");
	/* an anchor whose text shows its own link: found both ways, one entry */
	cr_assert_str_eq(uri_types_of(mi, "http://a.example.com/&x"), "parsed a");
	cr_assert_str_eq(uri_types_of(mi, "http://i.example.com/1.gif"), "a img");
	cr_assert_str_eq(uri_types_of(mi, "http://f.example.com/"), "iframe");
	cr_assert_str_eq(uri_types_of(mi, "http://post.example.com/"), "form");
	/* an attribute SpamAssassin does not read links from: listed, no type */
	cr_assert_str_eq(uri_types_of(mi, "http://div.example.com/"), "");
	cr_assert_str_eq(uri_types_of(mi, "www.text.example.com"), "parsed");
	cr_assert_eq(mime_uri_count(mi), 7);
	cr_assert_null(mime_uri_type_name(MIME_URI_NTYPES));
	cr_assert_eq(mime_uri_type_of("td", "background"), MIME_URI_TD);
	cr_assert_eq(mime_uri_type_of("a", "src"), 0);
	cr_assert_eq(mime_uri_type_of("span", "href"), 0);
	msg_free(m);
}

Test(mime, percent_encoded_hosts_are_decoded_in_the_domain_list)
{
	const char raw[] = "Subject: x\n\nGo to http://%77%77%77.Ex%61mple.com./x now\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_eq(mime_uri_count(mi), 1);
	cr_assert_str_eq(mime_uri(mi, 0), "http://%77%77%77.Ex%61mple.com./x");
	cr_assert_eq(mime_domain_count(mi), 1);
	cr_assert_str_eq(mime_domain(mi, 0), "www.example.com");
	msg_free(m);
}

/* A list of the MIME module's, space-separated, checked to end where its count says. */
static char *joined(const mime_t *mi, size_t n, const char *(*at)(const mime_t *, size_t))
{
	static char out[4096];
	size_t k = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		k += (size_t)snprintf(out + k, sizeof(out) - k, "%s%s", i ? " " : "", at(mi, i));
	cr_assert_null(at(mi, n));
	return out;
}

static char *lookup_domains(const mime_t *mi)
{
	return joined(mi, mime_lookup_domain_count(mi), mime_lookup_domain);
}

/*
 * A link carried inside another (a redirector's) is looked up too: plain,
 * %-escaped, nested, with user info and port; not when it holds no dot,
 * not again when it is a link's own host, and never in mime_domain()
 * (Bayes's tokens).
 */
Test(mime, links_carried_inside_links_are_lookup_domains)
{
	const char raw[] =
	    "Subject: x\nContent-Type: text/html\n\n"
	    "<a href=\"https://www.google.com/url?q=https%3A%2F%2FEvil.Example%2Fpay&sa=D\">a</a>"
	    "<a href=\"http://r.example.net/go?u=http://u:p@Nested.example.org:8080/x?to="
	    "https%253A//ignored\">b</a>"
	    "<a "
	    "href=\"http://t.example.com/c?next=https://t2.example.com/?z=http:/deep.example.info"
	    "\">c</a>"
	    "<a href=\"http://self.example.com/?r=http://self.example.com/\">d</a>"
	    "<a href=\"http://plain.example.com/?r=http://localhost/&s=httpx://no.example\">e</a>"
	    "<a href=\"mailto:a@m.example.com?body=http://mail-body.example\">f</a>\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_eq(mime_domain_count(mi), 6);
	for (size_t i = 0; i < mime_domain_count(mi); i++)
		cr_assert(strstr(mime_domain(mi, i), "evil") == NULL &&
		              strstr(mime_domain(mi, i), "nested") == NULL,
		          "a target in mime_domain: %s", mime_domain(mi, i));
	cr_assert_str_eq(lookup_domains(mi),
	                 "www.google.com r.example.net t.example.com self.example.com "
	                 "plain.example.com m.example.com "
	                 "evil.example nested.example.org t2.example.com deep.example.info");
	msg_free(m);
}

static char *text_domains(const mime_t *mi)
{
	return joined(mi, mime_text_domain_count(mi), mime_text_domain);
}

/*
 * Host names written without a scheme are candidates for the URI DNS lists
 * (SpamAssassin's schemeless URIs); addresses, paths, numbers,
 * abbreviations and the links' own hosts are not.
 */
Test(mime, host_names_written_bare_in_the_text_are_text_domains)
{
	const char raw[] = "Subject: x\n\n"
	                   "Visit Shop.Example.COM today, or end.example.org. Write to "
	                   "bob@mail.example.net or first.last@x.example; version 1.2.3, "
	                   "e.g. this, x.y and ...dots... and a.-b.example and _dmarc.d.example\n"
	                   "http://link.example.org/a.b/c.d?x=y.example and link.example.org "
	                   "and www.w.example and see docs/file.example\n"
	                   "Mr.Smith xn--80ak6aa92e.xn--p1ai shop.example.com\n";
	msg_t *m = msg_from(raw, sizeof(raw) - 1);
	mime_t *mi = parse(m);
	cr_assert_str_eq(text_domains(mi),
	                 "shop.example.com end.example.org mr.smith xn--80ak6aa92e.xn--p1ai");
	cr_assert_eq(mime_domain_count(mi), 2, "text domains are not link hosts");
	msg_free(m);
}

Test(mime, lookup_domains_are_bounded)
{
	size_t cap = 300 * 64 + 64;
	char *raw = malloc(cap);
	size_t n = (size_t)snprintf(raw, cap, "Subject: many\n\n");
	for (int i = 0; i < 300; i++)
		n += (size_t)snprintf(raw + n, cap - n,
		                      "http://r.example/?u=http://t%d.example.com/ ", i);
	msg_t *m = msg_from(raw, n);
	mime_t *mi = parse(m);
	cr_assert_eq(mime_domain_count(mi), 1);
	cr_assert_eq(mime_lookup_domain_count(mi), 1 + MIME_MAX_TARGET_DOMAINS);
	cr_assert_str_eq(mime_lookup_domain(mi, MIME_MAX_TARGET_DOMAINS), "t199.example.com");
	free(raw);
	msg_free(m);
}

Test(mime, the_utf8_oracle_rejects_what_it_should)
{
	/* The check the other tests rely on: valid forms in, invalid out. */
	const char *good = "a \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
	cr_assert(test_utf8_strict((const unsigned char *)good, strlen(good)));
	const char *bad[] = {"\xc0\xaf",         "\xe0\x80\xaf",     "\xed\xa0\x80",
	                     "\xf0\x80\x80\xaf", "\xf4\x90\x80\x80", "\xfc\x84\x80\x80\x80\x80",
	                     "\xe2\x82"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(!test_utf8_strict((const unsigned char *)bad[i], strlen(bad[i])),
		          "accepted case %zu", i);
}

Test(mime, iconv_output_is_checked_for_valid_utf8)
{
	/*
	 * glibc normalises "utf-8\x01" to its UTF-8 decoder, which passes the
	 * obsolete 6-byte form through; the view must still be valid UTF-8.
	 */
	arena_t *a = arena_new(0);
	const char in[] = "ok \xfc\x84\x80\x80\x80\x80 end";
	size_t n;
	char *out = mime_to_utf8(a, "utf-8\x01", in, sizeof(in) - 1, &n);
	cr_assert_not_null(out);
	cr_assert(test_utf8_strict((const unsigned char *)out, n), "invalid UTF-8 out: %s", out);
	cr_assert_not_null(strstr(out, "ok "));
	cr_assert_not_null(strstr(out, " end"));
	arena_free(a);
}
