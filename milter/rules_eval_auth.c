/*
 * rules_eval_auth.c - SpamAssassin's SPF, DKIM and DMARC eval tests
 * (check_for_spf_*, check_dkim_*, check_dmarc_*). Sift does not verify
 * again here: the auth module has judged the message before the rules run
 * (rules_evidence's `after`), and these tests read its results from the
 * message's hits through auth_eval(). When auth is not enabled, or did not
 * judge the message, none of them hits, as SpamAssassin's do without the
 * plugin's answer.
 */
#include <ctype.h>

#include "auth.h"
#include "rules_int.h"

static long auth_test(struct rules_evalenv *e, const struct rule *ru)
{
	bool answer = false;
	if (e->h == NULL || !auth_eval(e->h, ru->evaldef->name, &answer))
		return 0;
	if (!answer || ru->neargs == 0)
		return answer ? 1 : 0;
	/*
	 * check_dkim_valid(DOMAIN...): a valid signature by one of them;
	 * "*.dom" or ".dom" is dom itself or a domain below it.
	 */
	for (size_t i = 0; i < ru->neargs; i++) {
		const char *d = ru->eargs[i];
		if (d[0] == '.' || (d[0] == '*' && d[1] == '.')) {
			d += d[0] == '*' ? 2 : 1;
			if (auth_dkim_valid_sdid(e->h, d, false) ||
			    auth_dkim_valid_sdid(e->h, d, true))
				return 1;
		} else if (auth_dkim_valid_sdid(e->h, d, false)) {
			return 1;
		}
	}
	return 0;
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

/*
 * check_dkim_adsp(PRACTICES [, DOMAIN...]) and check_dkim_signall (its
 * 'A'): the author domain (From's first address) has no valid signature
 * of its own and adsp_override gives it one of PRACTICES ("*": any);
 * DOMAIN, when given, names the author domain ("*.dom" or ".dom": dom or
 * below). ADSP's own DNS records (RFC 5617, historic since RFC 7656) are
 * not asked: a domain adsp_override does not name has no practice, as in
 * SpamAssassin without DNS.
 */
static bool adsp_matches(struct rules_evalenv *e, const char *want, char *const *domains,
                         size_t ndomains)
{
	bool dependable = false;
	if (e->h == NULL || !auth_eval(e->h, "check_dkim_dependable", &dependable) || !dependable)
		return false; /* the signatures were not checked */
	const char *from = rules_eval_header_raw(e, "From");
	const char **list;
	if (from == NULL || rules_eval_addrs(e->a, mime_decode_header(e->a, from), &list) == 0)
		return false;
	const char *at = strrchr(list[0], '@');
	if (at == NULL)
		return false;
	char *dom = arena_strdup(e->a, at + 1);
	dom[strcspn(dom, " \t")] = '\0';
	for (char *q = dom; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	/* a fully qualified name: /.\.[a-z-]{2,}\z/i */
	const char *last = strrchr(dom, '.');
	if (last == NULL || last == dom || strlen(last + 1) < 2 ||
	    strspn(last + 1, "abcdefghijklmnopqrstuvwxyz-") != strlen(last + 1))
		return false;
	if (auth_dkim_valid_sdid(e->h, dom, false))
		return false; /* an author domain signature: ADSP is met */
	char practice = rules_wlbl_adsp_override(e->r, dom);
	if (practice == 0)
		return false;
	if (strcmp(want, "*") == 0)
		want = "NAD123";
	if (strchr(want, practice) == NULL)
		return false;
	if (ndomains == 0)
		return true;
	size_t dl = strlen(dom);
	for (size_t i = 0; i < ndomains; i++) {
		const char *d = domains[i];
		bool below = d[0] == '.' || (d[0] == '*' && d[1] == '.');
		if (!below) {
			if (strcasecmp(d, dom) == 0)
				return true;
			continue;
		}
		d += d[0] == '*' ? 2 : 1;
		size_t n = strlen(d);
		if (strcasecmp(d, dom) == 0 ||
		    (dl > n && dom[dl - n - 1] == '.' && strcasecmp(dom + dl - n, d) == 0))
			return true;
	}
	return false;
}

static long dkim_adsp(struct rules_evalenv *e, const struct rule *ru)
{
	return adsp_matches(e, ru->eargs[0], ru->eargs + 1, ru->neargs - 1);
}

static long dkim_signall(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return adsp_matches(e, "A", NULL, 0);
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
    {"check_dkim_valid", auth_test, 0, 64, NULL},
    {"check_dkim_valid_author_sig", auth_test, 0, 0, NULL},
    {"check_dkim_dependable", auth_test, 0, 0, NULL},
    {"check_dkim_testing", dkim_never, 0, 0, NULL},
    {"check_dkim_signsome", dkim_never, 0, 0, NULL},
    {"check_dkim_adsp", dkim_adsp, 1, 64, NULL},
    {"check_dkim_signall", dkim_signall, 0, 0, NULL},
    {"check_dmarc_pass", auth_test, 0, 0, NULL},
    {"check_dmarc_missing", auth_test, 0, 0, NULL},
    {"check_dmarc_reject", auth_test, 0, 0, NULL},
    {"check_dmarc_quarantine", auth_test, 0, 0, NULL},
    {"check_dmarc_none", auth_test, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
