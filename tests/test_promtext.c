/* Tests of the Prometheus text parser behind `sift stats`. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "promtext.h"

static const char sample[] =
    "# HELP sift_messages_total Messages scanned, by action.\n"
    "# TYPE sift_messages_total counter\n"
    "sift_messages_total{action=\"accept\"} 1027\n"
    "sift_messages_total{action=\"reject\"} 3.5e1\n"
    "\n"
    "sift_rule_hits_total{rule=\"A\\\\B \\\"q\\\" \\nend\",source=\"rules\"} 7 1700000000000\n"
    "  sift_redis_up 1\r\n"
    "sift_odd{} NaN\n"
    "sift_source_duration_seconds_bucket{source=\"dnsbl\",le=\"0.005\"} 3\n"
    "sift_source_duration_seconds_bucket{source=\"dnsbl\",le=\"+Inf\"} 10\n"
    "sift_source_duration_seconds_sum{source=\"dnsbl\"} 0.12\n"
    "sift_source_duration_seconds_count{source=\"dnsbl\"} 10\n"
    "sift_low -Inf\n";

Test(promtext, reads_every_sample_with_labels_and_values)
{
	promtext_t p;
	char err[256] = "";
	cr_assert_eq(promtext_parse(sample, strlen(sample), &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p.n, 10);
	cr_assert_str_eq(p.s[0].name, "sift_messages_total");
	cr_assert_str_eq(promtext_label(&p.s[0], "action"), "accept");
	cr_assert_float_eq(p.s[0].value, 1027.0, 1e-9);
	cr_assert_float_eq(p.s[1].value, 35.0, 1e-9);
	cr_assert_null(promtext_label(&p.s[0], "rule"));
	cr_assert_str_eq(p.s[3].name, "sift_redis_up");
	cr_assert_float_eq(p.s[3].value, 1.0, 1e-9);
	cr_assert_eq(p.s[4].n_labels, 0);
	cr_assert(isnan(p.s[4].value));
	cr_assert_str_eq(promtext_label(&p.s[6], "le"), "+Inf");
	cr_assert(isinf(p.s[5].value) == 0);
	cr_assert_str_eq(p.s[8].name, "sift_source_duration_seconds_count");
	cr_assert(isinf(p.s[9].value) && p.s[9].value < 0);
	promtext_free(&p);
}

Test(promtext, unescapes_label_values_and_ignores_the_timestamp)
{
	promtext_t p;
	char err[256] = "";
	cr_assert_eq(promtext_parse(sample, strlen(sample), &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(promtext_label(&p.s[2], "rule"), "A\\B \"q\" \nend");
	cr_assert_str_eq(promtext_label(&p.s[2], "source"), "rules");
	cr_assert_float_eq(p.s[2].value, 7.0, 1e-9);
	promtext_free(&p);
}

Test(promtext, a_malformed_line_is_named)
{
	static const char *const bad[] = {
	    "ok 1\nsift_x{a=\"1\" 2\n", "ok 1\nsift_x{a=\"1} 2\n", "ok 1\nsift_x 12abc\n",
	    "ok 1\nsift_x\n",           "ok 1\n{a=\"b\"} 1\n",     "ok 1\nsift_x{a=b} 1\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		promtext_t p;
		char err[256] = "";
		cr_assert_eq(promtext_parse(bad[i], strlen(bad[i]), &p, err, sizeof(err)), -1, "%s",
		             bad[i]);
		cr_assert_eq(strncmp(err, "line 2: ", 8), 0, "%s -> %s", bad[i], err);
		cr_assert_eq(p.n, 0);
	}
}

Test(promtext, empty_text_has_no_samples)
{
	promtext_t p;
	char err[64];
	cr_assert_eq(promtext_parse("# only comments\n\n", 17, &p, err, sizeof(err)), 0);
	cr_assert_eq(p.n, 0);
	promtext_free(&p);
}
