/* Tests of the message container: envelope, header fields, body limits. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "msg.h"

Test(msg, parse_raw_splits_headers_and_body)
{
	msg_t *m = msg_new(1 << 20);
	const char raw[] = "From: a@example.com\r\nSubject: hello\r\n\tworld\r\nX-Empty:\r\n\r\n"
	                   "line one\r\nline two\r\n";
	msg_parse_raw(m, raw, sizeof(raw) - 1);
	cr_assert_eq(msg_header_count(m), 3);
	cr_assert_str_eq(msg_header_get(m, "subject", 0), "hello\n\tworld");
	cr_assert_str_eq(msg_header_get(m, "X-Empty", 0), "");
	size_t len;
	const char *b = msg_body(m, &len);
	cr_assert_str_eq(b, "line one\nline two\n");
	cr_assert_eq(len, strlen("line one\nline two\n"));
	msg_free(m);
}

Test(msg, a_non_header_line_starts_the_body)
{
	msg_t *m = msg_new(1 << 20);
	const char raw[] = "Subject: x\nthis is not a header\nmore\n";
	msg_parse_raw(m, raw, sizeof(raw) - 1);
	cr_assert_eq(msg_header_count(m), 1);
	cr_assert_str_eq(msg_body(m, NULL), "this is not a header\nmore\n");
	msg_free(m);
}

Test(msg, mbox_from_line_is_skipped)
{
	msg_t *m = msg_new(1 << 20);
	const char raw[] = "From someone Mon Jan  1 00:00:00 2024\nSubject: y\n\nbody\n";
	msg_parse_raw(m, raw, sizeof(raw) - 1);
	cr_assert_str_eq(msg_header_get(m, "Subject", 0), "y");
	msg_free(m);
}

Test(msg, body_over_the_limit_is_counted_not_kept)
{
	msg_t *m = msg_new(10);
	msg_append_body(m, "0123456789abcdef", 16);
	msg_append_body(m, "more", 4);
	size_t len;
	msg_body(m, &len);
	cr_assert_eq(len, 10);
	cr_assert(msg_truncated(m));
	cr_assert_eq(msg_body_size(m), 20);
	msg_free(m);
}

Test(msg, crlf_split_across_chunks_becomes_lf)
{
	msg_t *m = msg_new(1 << 20);
	msg_append_body(m, "a\r", 2);
	msg_append_body(m, "\nb\r", 3);
	msg_append_body(m, "c", 1);
	cr_assert_str_eq(msg_body(m, NULL), "a\nb\rc");
	msg_free(m);
}

Test(msg, envelope_paths_are_stripped)
{
	msg_t *m = msg_new(100);
	msg_set_mail_from(m, "<user@example.org> SIZE=1234");
	msg_add_rcpt(m, "<r1@example.net>");
	msg_add_rcpt(m, "r2@example.net");
	cr_assert_str_eq(msg_mail_from(m), "user@example.org");
	cr_assert_eq(msg_rcpt_count(m), 2);
	cr_assert_str_eq(msg_rcpt(m, 1), "r2@example.net");
	msg_set_mail_from(m, "<>");
	cr_assert_str_eq(msg_mail_from(m), "");
	cr_assert_str_eq(msg_queue_id(m), "NOQUEUE");
	msg_free(m);
}

Test(msg, header_block_lists_every_field)
{
	msg_t *m = msg_new(100);
	msg_add_header(m, "A", "1");
	msg_add_header(m, "B", " 2");
	size_t len;
	cr_assert_str_eq(msg_header_block(m, &len), "A: 1\nB: 2\n");
	msg_add_header(m, "A", "3");
	cr_assert_str_eq(msg_header_block(m, &len), "A: 1\nB: 2\nA: 3\n");
	cr_assert_str_eq(msg_header_get(m, "a", 1), "3");
	cr_assert_null(msg_header_get(m, "a", 2));
	msg_free(m);
}

/* Fields are found by name in any case, in order, among many other fields. */
Test(msg, header_get_finds_each_occurrence_in_any_case)
{
	msg_t *m = msg_new(100);
	char name[32];
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "X-Field-%d", i);
		msg_add_header(m, name, "filler");
		if (i % 10 == 3)
			msg_add_header(m, i < 20 ? "Received" : "RECEIVED",
			               i < 20 ? "low" : "high");
	}
	msg_add_header(m, "received", "last");
	cr_assert_str_eq(msg_header_get(m, "ReCeIvEd", 0), "low");
	cr_assert_str_eq(msg_header_get(m, "ReCeIvEd", 1), "low");
	cr_assert_str_eq(msg_header_get(m, "received", 2), "high");
	cr_assert_str_eq(msg_header_get(m, "RECEIVED", 3), "high");
	cr_assert_str_eq(msg_header_get(m, "Received", 4), "last");
	cr_assert_null(msg_header_get(m, "Received", 5));
	cr_assert_str_eq(msg_header_get(m, "x-field-39", 0), "filler");
	cr_assert_null(msg_header_get(m, "X-Field-40", 0));
	cr_assert_null(msg_header_get(m, "Receive", 0));
	msg_free(m);
}

/* msg_header_next walks the occurrences that msg_header_get numbers, in one pass. */
Test(msg, header_next_visits_each_occurrence_in_order, .timeout = 30)
{
	msg_t *m = msg_new(100);
	msg_add_header(m, "To", "a");
	msg_add_header(m, "Subject", "s");
	msg_add_header(m, "TO", "b");
	msg_add_header(m, "to", "c");
	size_t pos = 0;
	for (size_t k = 0; k < 3; k++)
		cr_assert_str_eq(msg_header_next(m, "To", &pos), msg_header_get(m, "To", k));
	cr_assert_null(msg_header_next(m, "To", &pos));
	cr_assert_null(msg_header_next(m, "To", &pos), "and stays at the end");
	pos = 0;
	cr_assert_null(msg_header_next(m, "Cc", &pos));
	msg_free(m);

	/*
	 * 200,000 copies of one field, a 4 MB header any MTA passes: one pass
	 * each way. Numbering them with msg_header_get() took 2 * 10^10 name
	 * comparisons, minutes of a worker's time.
	 */
	m = msg_new(100);
	char v[32];
	for (int i = 0; i < 200000; i++) {
		snprintf(v, sizeof(v), "u%d@example.com", i);
		msg_add_header(m, "To", v);
	}
	pos = 0;
	size_t n = 0;
	for (const char *s; (s = msg_header_next(m, "To", &pos)) != NULL; n++) {
		snprintf(v, sizeof(v), "u%zu@example.com", n);
		cr_assert_str_eq(s, v);
	}
	cr_assert_eq(n, 200000);
	msg_free(m);
}

/*
 * The lookups go through an index from name to fields, grown as fields
 * come: from any *pos, in any case, they find what a pass over the
 * fields from *pos finds, and a name the message lacks finds nothing.
 */
Test(msg, header_lookups_from_any_position_agree_with_a_pass_over_the_fields)
{
	msg_t *m = msg_new(100);
	static const char *const cases[] = {"X-F", "x-f", "X-f"};
	char name[32], v[32];
	/* 600 fields, 150 names: the index is outgrown several times */
	for (int i = 0; i < 600; i++) {
		snprintf(name, sizeof(name), "%s%d", cases[i % 3], (i * 7) % 150);
		snprintf(v, sizeof(v), "v%d", i);
		msg_add_header(m, name, v);
	}
	size_t n = msg_header_count(m);
	cr_assert_eq(n, 600);
	for (int f = 0; f < 151; f++) {
		snprintf(name, sizeof(name), "X-F%d", f);
		size_t nth = 0;
		for (size_t from = 0; from <= n; from++) {
			size_t want = from;
			while (want < n && strcasecmp(msg_header_name(m, want), name) != 0)
				want++;
			size_t pos = from;
			const char *got = msg_header_next(m, name, &pos);
			if (want == n) {
				cr_assert_null(got, "%s from %zu", name, from);
				cr_assert_eq(pos, n);
			} else {
				cr_assert_eq(got, msg_header_value(m, want), "%s from %zu", name,
				             from);
				cr_assert_eq(pos, want + 1);
			}
			if (from < n && strcasecmp(msg_header_name(m, from), name) == 0)
				cr_assert_eq(msg_header_get(m, name, nth++),
				             msg_header_value(m, from));
		}
		cr_assert_null(msg_header_get(m, name, nth), "%s past its last", name);
		cr_assert_eq(nth, f < 150 ? 4u : 0u);
	}
	msg_free(m);
}

/* A key computed once stands for its name in any message, in any case. */
Test(msg, header_next_key_finds_what_header_next_finds)
{
	uint32_t to = msg_header_key("to"), cc = msg_header_key("Cc");
	cr_assert_eq(to, msg_header_key("TO"), "the key folds case as the lookups do");
	for (int round = 0; round < 2; round++) {
		msg_t *m = msg_new(100);
		msg_add_header(m, "To", "a");
		msg_add_header(m, "Subject", "s");
		msg_add_header(m, "tO", round ? "b2" : "b");
		size_t pos = 0, pk = 0;
		for (int k = 0; k < 3; k++) {
			const char *want = msg_header_next(m, "To", &pos);
			cr_assert_eq(msg_header_next_key(m, "To", to, &pk), want);
			cr_assert_eq(pk, pos);
		}
		pk = 0;
		cr_assert_null(msg_header_next_key(m, "Cc", cc, &pk));
		cr_assert_eq(pk, msg_header_count(m));
		msg_free(m);
	}
}

Test(msg, fields_past_a_limit_are_counted_and_authentication_results_listed_apart)
{
	msg_t *m = msg_new(1 << 20);
	msg_keep_raw(m);
	msg_set_header_limits(m, 3, 0);
	char v[32];
	for (int i = 0; i < 6; i++) {
		snprintf(v, sizeof(v), " v%d", i);
		msg_add_header(m, "X-Pad", v);
		if (i == 1 || i == 4)
			msg_add_header(m, "authentication-results",
			               i == 1 ? " kept.example; spf=pass"
			                      : " mx.example.org; spf=pass");
	}
	cr_assert_eq(msg_header_count(m), 3);
	cr_assert_eq(msg_fields_dropped(m), 5);
	cr_assert_str_eq(msg_header_get(m, "X-Pad", 1), "v1");
	cr_assert_null(msg_header_get(m, "X-Pad", 2), "the fourth field is past the limit");
	cr_assert_str_eq(msg_header_get(m, "Authentication-Results", 0), "kept.example; spf=pass");
	cr_assert_null(msg_header_get(m, "Authentication-Results", 1), "not scored...");
	cr_assert_str_eq(msg_dropped_auth_results(m, 0), "mx.example.org; spf=pass",
	                 "...but listed, so that a forged one can be removed");
	cr_assert_null(msg_dropped_auth_results(m, 1));
	size_t len;
	const char *raw = msg_raw(m, &len, NULL);
	cr_assert(raw != NULL && strstr(raw, "X-Pad: v5\r\n") != NULL,
	          "the raw copy (what a signature covers) keeps every field");
	msg_free(m);

	/* bytes: names and values; once one field is dropped, every later one is */
	m = msg_new(1 << 20);
	msg_set_header_limits(m, 0, 40);
	msg_add_header(m, "Subject", " 0123456789");         /* 17 */
	msg_add_header(m, "X-Big", " 0123456789abcdefghij"); /* 17 + 25 > 40 */
	msg_add_header(m, "To", " a@b");                     /* would fit, but comes later */
	cr_assert_eq(msg_header_count(m), 1);
	cr_assert_eq(msg_fields_dropped(m), 2);
	cr_assert_null(msg_header_get(m, "To", 0));
	msg_free(m);

	m = msg_new(1 << 20);
	for (int i = 0; i < 50; i++)
		msg_add_header(m, "X-Pad", " v");
	cr_assert_eq(msg_header_count(m), 50, "no limit unless one is set");
	cr_assert_eq(msg_fields_dropped(m), 0);
	cr_assert_null(msg_dropped_auth_results(m, 0));
	msg_free(m);
}

/* ------------------------------------------------------------ the raw copy (DKIM) */

Test(msg, no_raw_copy_unless_asked)
{
	msg_t *m = msg_new(1 << 20);
	msg_add_header(m, "Subject", " hi");
	cr_assert_null(msg_raw(m, NULL, NULL));
	msg_free(m);
}

Test(msg, raw_copy_rebuilds_milter_fields_and_chunks_byte_exact)
{
	msg_t *m = msg_new(1 << 20);
	msg_keep_raw(m);
	/* As libmilter hands them with SMFIP_HDR_LEADSPC: the value after the colon, folds as LF.
	 */
	msg_add_header(m, "Subject", " a\n\tfolded  value ");
	msg_add_header(m, "X-Tab", "\tx");
	msg_raw_header(m, "X-Spam-Status", " No"); /* not evidence, still signed */
	msg_add_header(m, "Empty", "");
	msg_append_body(m, "line one\r", 9);
	msg_append_body(m, "\nline two\r\n", 11);
	msg_append_body(m, "bare lf\n", 8);
	size_t len;
	bool cut = true;
	const char *raw = msg_raw(m, &len, &cut);
	const char want[] = "Subject: a\r\n\tfolded  value \r\nX-Tab:\tx\r\nX-Spam-Status: No\r\n"
	                    "Empty:\r\n\r\nline one\r\nline two\r\nbare lf\r\n";
	cr_assert_eq(len, sizeof(want) - 1, "%zu: %.*s", len, (int)len, raw);
	cr_assert_eq(memcmp(raw, want, len), 0, "%.*s", (int)len, raw);
	cr_assert_not(cut);
	/* the evidence view is unchanged: one leading blank dropped, LF line ends */
	cr_assert_str_eq(msg_header_get(m, "Subject", 0), "a\n\tfolded  value ");
	cr_assert_null(msg_header_get(m, "X-Spam-Status", 0));
	msg_free(m);
}

Test(msg, raw_copy_of_a_file_has_crlf_line_ends)
{
	msg_t *m = msg_new(1 << 20);
	msg_keep_raw(m);
	const char file[] = "From: a@example.com\nSubject: x\n y\n\nbody\n\n";
	msg_parse_raw(m, file, sizeof(file) - 1);
	size_t len;
	const char *raw = msg_raw(m, &len, NULL);
	const char want[] = "From: a@example.com\r\nSubject: x\r\n y\r\n\r\nbody\r\n\r\n";
	cr_assert_eq(len, sizeof(want) - 1, "%.*s", (int)len, raw);
	cr_assert_eq(memcmp(raw, want, len), 0, "%.*s", (int)len, raw);
	msg_free(m);
}

Test(msg, raw_copy_is_cut_at_the_size_limit_and_says_so)
{
	msg_t *m = msg_new(10);
	msg_keep_raw(m);
	msg_add_header(m, "A", " b");
	msg_append_body(m, "0123456789abcdef", 16);
	size_t len;
	bool cut = false;
	const char *raw = msg_raw(m, &len, &cut);
	cr_assert(cut);
	cr_assert_eq(len, strlen("A: b\r\n\r\n0123456789"));
	cr_assert_eq(memcmp(raw, "A: b\r\n\r\n0123456789", len), 0);
	msg_free(m);
}

/* ------------------------------------------------------------ the Received: chain */

Test(msg, the_received_chain_is_parsed_once_newest_first)
{
	msg_t *m = msg_new(1 << 20);
	msg_add_header(m, "Received",
	               " from mail.example.org (mail.example.org [192.0.2.7])\n"
	               "\tby mx.example.net (Postfix) with ESMTP id 1; Mon, 1 Jan");
	msg_add_header(m, "Received",
	               " from [IPv6:::ffff:198.51.100.3] (helo=x)\tby mail.example.org;");
	msg_add_header(m, "Received", " by localhost (Postfix, from userid 0) id 2");
	msg_add_header(m, "Received", " from h.example [not-an-ip] [2001:DB8::1] by y");
	const msg_hop_t *h;
	size_t n = msg_received(m, &h);
	cr_assert_eq(n, 4);
	cr_assert_str_eq(h[0].helo, "mail.example.org");
	cr_assert_str_eq(h[0].ip, "192.0.2.7");
	cr_assert_str_eq(h[0].by, "mx.example.net");
	cr_assert_str_eq(h[1].ip, "198.51.100.3", "an IPv4-mapped address is IPv4");
	cr_assert_str_eq(h[1].by, "mail.example.org");
	cr_assert_null(h[2].helo, "no from clause");
	cr_assert_null(h[2].ip);
	cr_assert_str_eq(h[2].by, "localhost");
	cr_assert_str_eq(h[3].ip, "2001:db8::1", "the first bracket that holds an address");
	const msg_hop_t *again;
	cr_assert_eq(msg_received(m, &again), 4);
	cr_assert_eq(again, h, "parsed once, kept with the message");
	msg_free(m);
}

Test(msg, malformed_received_fields_do_not_crash)
{
	msg_t *m = msg_new(1 << 20);
	msg_add_header(m, "Received", "");
	msg_add_header(m, "Received", "from");
	msg_add_header(m, "Received", "from [");
	msg_add_header(m, "Received", "from []] by");
	msg_add_header(m, "Received", "from x [1.2.3.4 by y");
	const msg_hop_t *h;
	cr_assert_eq(msg_received(m, &h), 5);
	cr_assert_null(h[2].ip);
	cr_assert_null(h[3].ip);
	msg_free(m);
}
