/* Tests of the verdict policy: thresholds to actions, and the headers. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "verdict.h"

/* The policy keeps pointers into its conf, so the conf lives until the test
 * ends; the suite's .fini frees it (each test runs in its own process). */
static conf_t *policy_conf;

static void free_policy_conf(void)
{
	conf_free(policy_conf);
	policy_conf = NULL;
}

TestSuite(verdict, .fini = free_policy_conf);

static verdict_policy_t policy(const char *text)
{
	diag_t *d = diag_new();
	conf_free(policy_conf);
	policy_conf = conf_parse("v.conf", text, d);
	verdict_policy_t p;
	int rc = verdict_policy_read(policy_conf, &p, d);
	cr_assert_eq(rc, 0, "%s", diag_count(d) ? diag_text(d, 0) : "");
	diag_free(d);
	return p;
}

Test(hits, same_names_ignores_order_scores_and_details)
{
	arena_t *a = arena_new(4096);
	hits_t *x = hits_new(a), *y = hits_new(a);
	cr_assert(hits_same_names(x, y), "two empty sets are the same");
	hits_add(x, "rules", "A", 1, NULL, NULL);
	hits_add(x, "rules", "B", 2, NULL, "x");
	hits_add(y, "rules", "B", 3, NULL, "y");
	cr_assert_not(hits_same_names(x, y), "A is missing from y");
	cr_assert_not(hits_same_names(y, x), "one name against two");
	hits_add(y, "rules", "A", 1, NULL, NULL);
	cr_assert(hits_same_names(x, y));
	hits_add(y, "rules", "C", 1, NULL, NULL);
	hits_add(x, "rules", "D", 1, NULL, NULL);
	cr_assert_not(hits_same_names(x, y), "as many names, not the same ones");
	arena_free(a);
}

Test(verdict, highest_reached_threshold_wins)
{
	verdict_policy_t p =
	    policy("add_header_score = 5\nquarantine_score = 8\nreject_score = 12\n");
	cr_assert_eq(verdict_decide(&p, 4.9), VERDICT_ACCEPT);
	cr_assert_eq(verdict_decide(&p, 5), VERDICT_ADD_HEADER);
	cr_assert_eq(verdict_decide(&p, 9), VERDICT_QUARANTINE);
	cr_assert_eq(verdict_decide(&p, 12), VERDICT_REJECT);
	cr_assert_eq(verdict_decide(&p, -3), VERDICT_ACCEPT);
}

Test(verdict, off_thresholds_never_apply)
{
	verdict_policy_t p =
	    policy("add_header_score = off\nreject_score = off\ntempfail_score = 7\n");
	cr_assert_eq(verdict_decide(&p, 100), VERDICT_TEMPFAIL);
	cr_assert_eq(verdict_decide(&p, 6.9), VERDICT_ACCEPT);
	cr_assert_float_eq(verdict_spam_threshold(&p), 7, 1e-9);
}

Test(verdict, bad_replies_are_refused)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("v.conf", "reject_reply = 450 not a rejection\n", d);
	verdict_policy_t p;
	cr_assert_eq(verdict_policy_read(c, &p, d), -1);
	cr_assert(strstr(diag_text(d, 0), "reject_reply must be a 5xx"));
	conf_free(c);
	diag_free(d);
}

/*
 * A CR in a reply passed the load, then smfi_setreply() refused it at each
 * message; an empty header_prefix named the fields "-Score"... The errors
 * name the file and line, as every other one does.
 */
Test(verdict, replies_with_control_characters_are_refused_at_their_line)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("v.conf",
	                       "header_max_rules = 3\nreject_reply = 550 5.7.1 no\rX-Injected: 1\n"
	                       "tempfail_reply = 451 4.7.1 later\x1b[2J\nheader_prefix =\n",
	                       d);
	verdict_policy_t p;
	cr_assert_eq(verdict_policy_read(c, &p, d), -1);
	cr_assert_eq(diag_errors(d), 3);
	cr_assert(strstr(diag_text(d, 0), "v.conf:2: reject_reply must be a 5xx"), "%s",
	          diag_text(d, 0));
	cr_assert(strstr(diag_text(d, 1), "v.conf:3: tempfail_reply must be a 4xx"), "%s",
	          diag_text(d, 1));
	cr_assert(strstr(diag_text(d, 2), "v.conf:4: header_prefix: empty"), "%s", diag_text(d, 2));
	conf_free(c);
	diag_free(d);
}

Test(verdict, headers_name_the_rules_and_flag_spam)
{
	verdict_policy_t p = policy("");
	arena_t *a = arena_new(0);
	hits_t *h = hits_new(a);
	hits_add(h, "rules", "BIG_MONEY", 4.0, NULL, NULL);
	hits_add(h, "rules", "ALL_CAPS", 2.0, NULL, NULL);
	verdict_header_t hv[4];
	size_t n = verdict_headers(&p, a, 6.0, VERDICT_ADD_HEADER, h, hv);
	cr_assert_eq(n, 4);
	cr_assert_str_eq(hv[0].name, "X-Spam-Score");
	cr_assert_str_eq(hv[0].value, "6.0");
	cr_assert_str_eq(hv[1].name, "X-Spam-Status");
	cr_assert_str_eq(hv[1].value, "Yes, score=6.0 required=5.0 tests=BIG_MONEY,ALL_CAPS");
	cr_assert_str_eq(hv[3].name, "X-Spam-Flag");
	n = verdict_headers(&p, a, 0.0, VERDICT_ACCEPT, hits_new(a), hv);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(hv[1].value, "No, score=0.0 required=5.0 tests=none");
	arena_free(a);
}

Test(verdict, own_headers_are_recognised_case_insensitively)
{
	verdict_policy_t p = policy("");
	cr_assert(verdict_is_own_header(&p, "x-spam-status"));
	cr_assert(verdict_is_own_header(&p, "X-Spam-Flag"));
	cr_assert_not(verdict_is_own_header(&p, "X-Spam-Whatever-Else"));
	cr_assert_not(verdict_is_own_header(&p, "Subject"));
}

Test(verdict, fields_to_add_and_remove_are_kept_in_order)
{
	arena_t *a = arena_new(1024);
	verdict_fields_t f;
	verdict_fields_init(&f, a);
	char name[32] = "Authentication-Results";
	verdict_field_remove(&f, name, 2);
	verdict_field_add(&f, name, "mx.example; spf=pass", true);
	name[0] = 'X'; /* the list holds copies */
	cr_assert_eq(f.n, 2);
	cr_assert_str_eq(f.v[0].name, "Authentication-Results");
	cr_assert_null(f.v[0].value);
	cr_assert_eq(f.v[0].index, 2);
	cr_assert_str_eq(f.v[1].value, "mx.example; spf=pass");
	cr_assert(f.v[1].prepend);
	for (int i = 0; i < 20; i++)
		verdict_field_add(&f, "X-More", "v", false);
	cr_assert_eq(f.n, 22);
	arena_free(a);
}
