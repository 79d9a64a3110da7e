/*
 * rules_eval_auth.c - SpamAssassin's SPF, DKIM and DMARC eval tests
 * (check_for_spf_*, check_dkim_*, check_dmarc_*). Sift does not verify
 * again here: the auth module has judged the message before the rules run
 * (rules_evidence's `after`), and these tests read its results from the
 * message's hits through auth_eval(). When auth is not enabled, or did not
 * judge the message, none of them hits, as SpamAssassin's do without the
 * plugin's answer.
 */
#include "auth.h"
#include "rules_int.h"

static long auth_test(struct rules_evalenv *e, const struct rule *ru)
{
	bool answer = false;
	if (e->h == NULL || !auth_eval(e->h, ru->evaldef->name, &answer))
		return 0;
	return answer ? 1 : 0;
}

/*
 * check_dkim_testing (a key with the testing flag t=y) and
 * check_dkim_signsome (ADSP's "some"): never hit. SpamAssassin 4.0.1's
 * DKIM plugin resets the testing flag and never sets it, and returns 0
 * for signsome on purpose (it is true of every domain), so their rules
 * never fire there either.
 */
static long dkim_never(struct rules_evalenv *e, const struct rule *ru)
{
	(void)e;
	(void)ru;
	return 0;
}

bool rules_eval_is_auth(const struct rules_evaldef *d)
{
	return d != NULL && d->fn == auth_test;
}

const struct rules_evaldef rules_eval_auth_defs[] = {
    {"check_for_spf_pass", auth_test, 0, 0, NULL},
    {"check_for_spf_fail", auth_test, 0, 0, NULL},
    {"check_for_spf_softfail", auth_test, 0, 0, NULL},
    {"check_for_spf_neutral", auth_test, 0, 0, NULL},
    {"check_for_spf_none", auth_test, 0, 0, NULL},
    {"check_for_spf_permerror", auth_test, 0, 0, NULL},
    {"check_for_spf_temperror", auth_test, 0, 0, NULL},
    {"check_for_spf_helo_pass", auth_test, 0, 0, NULL},
    {"check_for_spf_helo_fail", auth_test, 0, 0, NULL},
    {"check_for_spf_helo_softfail", auth_test, 0, 0, NULL},
    {"check_for_spf_helo_neutral", auth_test, 0, 0, NULL},
    {"check_for_spf_helo_none", auth_test, 0, 0, NULL},
    {"check_for_spf_helo_permerror", auth_test, 0, 0, NULL},
    {"check_for_spf_helo_temperror", auth_test, 0, 0, NULL},
    {"check_dkim_signed", auth_test, 0, 0, NULL},
    {"check_dkim_valid", auth_test, 0, 0, NULL},
    {"check_dkim_valid_author_sig", auth_test, 0, 0, NULL},
    {"check_dkim_dependable", auth_test, 0, 0, NULL},
    {"check_dkim_testing", dkim_never, 0, 0, NULL},
    {"check_dkim_signsome", dkim_never, 0, 0, NULL},
    {"check_dmarc_pass", auth_test, 0, 0, NULL},
    {"check_dmarc_missing", auth_test, 0, 0, NULL},
    {"check_dmarc_reject", auth_test, 0, 0, NULL},
    {"check_dmarc_quarantine", auth_test, 0, 0, NULL},
    {"check_dmarc_none", auth_test, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
