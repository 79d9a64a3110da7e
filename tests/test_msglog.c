/* Tests of the per-message log line: escaping, one line whatever the input, bounds. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "hits.h"
#include "msglog.h"

static arena_t *a;
static hits_t *h;
static const msglog_timing_t timings[] = {{"rules", 0.25}, {"dnsbl", 12.5}};

static msglog_fields_t fields(void)
{
	return (msglog_fields_t){.queue_id = "4XyZ1",
	                         .ip = "192.0.2.7",
	                         .helo = "mx.example.org",
	                         .client_name = NULL,
	                         .action = "reject",
	                         .score = 7.5,
	                         .hits = h,
	                         .timings = timings,
	                         .n_timings = 2,
	                         .degraded = "dnsbl",
	                         .failed = NULL,
	                         .size_bytes = 1234,
	                         .ms = 13.04};
}

static void setup(void)
{
	a = arena_new(4096);
	h = hits_new(a);
}

static void teardown(void)
{
	arena_free(a);
}

/* Printable ASCII only: neither sink can be handed a second line or an escape. */
static void assert_one_printable_line(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		cr_assert(*p >= 0x20 && *p < 0x7f, "byte 0x%02x at %zu in %s", *p,
		          (size_t)(p - (const unsigned char *)s), s);
}

TestSuite(msglog, .init = setup, .fini = teardown);

Test(msglog, kv_keeps_the_existing_field_order_and_adds_the_new_ones)
{
	hits_add(h, "rules", "SUBJ_SPAM", 5.0, NULL, NULL);
	hits_add(h, "dnsbl", "BL_SBL", 2.5, NULL, NULL);
	msglog_fields_t f = fields();
	char line[MSGLOG_LINE_BYTES];
	msglog_format(line, sizeof(line), MSGLOG_KV, 10, &f);
	cr_assert_str_eq(line,
	                 "queue_id=4XyZ1 ip=192.0.2.7 score=7.50 action=reject "
	                 "rules=SUBJ_SPAM(5.0),BL_SBL(2.5) helo=mx.example.org client=- "
	                 "size=1234 t_rules=0.25 t_dnsbl=12.50 degraded=dnsbl failed=- ms=13.0");
}

Test(msglog, kv_names_at_most_top_rules_and_marks_the_rest)
{
	hits_add(h, "rules", "A", 3.0, NULL, NULL);
	hits_add(h, "rules", "B", 2.0, NULL, NULL);
	hits_add(h, "rules", "C", 1.0, NULL, NULL);
	msglog_fields_t f = fields();
	char line[MSGLOG_LINE_BYTES];
	msglog_format(line, sizeof(line), MSGLOG_KV, 2, &f);
	cr_assert_not_null(strstr(line, " rules=A(3.0),B(2.0),... "), "%s", line);
	msglog_fields_t none = fields();
	none.hits = hits_new(a);
	msglog_format(line, sizeof(line), MSGLOG_KV, 2, &none);
	cr_assert_not_null(strstr(line, " rules=- "), "%s", line);
}

Test(msglog, kv_quotes_and_escapes_a_hostile_helo)
{
	msglog_fields_t f = fields();
	f.helo = "evil\nqueue_id=forged \"x\" \\ \x1b[31m\xff";
	f.queue_id = "Q ID";
	char line[MSGLOG_LINE_BYTES];
	msglog_format(line, sizeof(line), MSGLOG_KV, 10, &f);
	assert_one_printable_line(line);
	cr_assert_not_null(strstr(line, "queue_id=\"Q ID\" ip="), "%s", line);
	cr_assert_not_null(
	    strstr(line,
	           " helo=\"evil\\x0aqueue_id=forged \\\"x\\\" \\\\ \\x1b[31m\\xff\" client="),
	    "%s", line);
	/* The forged key appears only inside the quoted value. */
	cr_assert_null(strstr(line, " queue_id=forged"), "%s", line);
}

Test(msglog, kv_quotes_an_empty_value)
{
	msglog_fields_t f = fields();
	f.helo = "";
	char line[MSGLOG_LINE_BYTES];
	msglog_format(line, sizeof(line), MSGLOG_KV, 10, &f);
	cr_assert_not_null(strstr(line, " helo=\"\" "), "%s", line);
}

Test(msglog, json_is_one_object_with_the_same_fields)
{
	hits_add(h, "rules", "SUBJ_SPAM", 5.0, NULL, NULL);
	msglog_fields_t f = fields();
	char line[MSGLOG_LINE_BYTES];
	msglog_format(line, sizeof(line), MSGLOG_JSON, 10, &f);
	cr_assert_str_eq(
	    line, "{\"queue_id\":\"4XyZ1\",\"ip\":\"192.0.2.7\",\"score\":7.50,"
	          "\"action\":\"reject\",\"rules\":[{\"name\":\"SUBJ_SPAM\",\"score\":5.00}],"
	          "\"helo\":\"mx.example.org\",\"client\":null,\"size\":1234,"
	          "\"t\":{\"rules\":0.25,\"dnsbl\":12.50},\"degraded\":[\"dnsbl\"],"
	          "\"failed\":[],\"ms\":13.0}");
}

Test(msglog, json_escapes_controls_utf8_and_invalid_bytes)
{
	msglog_fields_t f = fields();
	/* é (2 bytes), 😀 (4 bytes), a lone continuation byte, an overlong '/', DEL. */
	f.helo = "a\"b\\c\n\t\x01\xc3\xa9\xf0\x9f\x98\x80\x80\xc0\xaf\x7f";
	char line[MSGLOG_LINE_BYTES];
	msglog_format(line, sizeof(line), MSGLOG_JSON, 10, &f);
	assert_one_printable_line(line);
	cr_assert_not_null(strstr(line, "\"helo\":\"a\\\"b\\\\c\\n\\t\\u0001\\u00e9"
	                                "\\ud83d\\ude00\\ufffd\\ufffd\\ufffd\\u007f\","),
	                   "%s", line);
}

Test(msglog, a_long_value_is_cut_and_the_line_stays_whole)
{
	char big[4096];
	memset(big, '\x01', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	char name[200];
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "RULE_%03d_%0150d", i, 0);
		hits_add(h, "rules", name, 1.0, NULL, NULL);
	}
	msglog_fields_t f = fields();
	f.queue_id = f.helo = f.client_name = f.ip = big;
	char line[MSGLOG_LINE_BYTES];
	for (int fmt = MSGLOG_KV; fmt <= MSGLOG_JSON; fmt++) {
		size_t n = msglog_format(line, sizeof(line), (msglog_format_t)fmt, 100, &f);
		cr_assert_eq(n, strlen(line));
		cr_assert_lt(n, sizeof(line));
		assert_one_printable_line(line);
		if (fmt == MSGLOG_KV) {
			cr_assert_not_null(strstr(line, ",... helo="), "%s", line);
			cr_assert_not_null(strstr(line, " ms=13.0"), "%s", line);
		} else {
			cr_assert_not_null(strstr(line, "],\"rules_cut\":true,\"helo\":"), "%s",
			                   line);
			cr_assert_eq(line[n - 1], '}');
		}
	}
}

Test(msglog, format_names)
{
	cr_assert_eq(msglog_format_parse("kv"), MSGLOG_KV);
	cr_assert_eq(msglog_format_parse("json"), MSGLOG_JSON);
	cr_assert_eq(msglog_format_parse("xml"), -1);
}
