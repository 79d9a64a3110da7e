/*
 * verdict.c - score to action, and the X-Spam-* header fields (see verdict.h).
 */
#include "config.h"

#include "verdict.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define VERDICT_HEADER_VALUE_MAX_BYTES 900

static const char *const verdict_names[VERDICT_N_ACTIONS] = {"accept", "add_header", "quarantine",
                                                             "tempfail", "reject"};

const char *verdict_action_name(verdict_action_t a)
{
	return a < VERDICT_N_ACTIONS ? verdict_names[a] : "?";
}

/* "550 5.7.1 text": a 3-digit code of the right class, then text. */
static int verdict_check_reply(const char *reply, char cls)
{
	if (strlen(reply) < 5 || reply[0] != cls || !isdigit((unsigned char)reply[1]) ||
	    !isdigit((unsigned char)reply[2]) || reply[3] != ' ')
		return -1;
	/* libmilter passes the text through a format; a '%' would be misread. */
	if (strchr(reply, '%') != NULL)
		return -1;
	/*
	 * smfi_setreply() refuses a CR (a file with old Mac line ends, a pasted
	 * one), and SMTP text is printable or tabs: such a reply passed the load
	 * and then failed at every message, which got the MTA's generic text.
	 */
	for (const char *s = reply; *s; s++)
		if (iscntrl((unsigned char)*s) && *s != '\t')
			return -1;
	return 0;
}

int verdict_policy_read(conf_t *c, verdict_policy_t *p, diag_t *d)
{
	static const char *const on_error[] = {"accept", "tempfail", NULL};
	static const char *const foreign[] = {"remove", "rename", "keep", NULL};
	static const char *const add[] = {"all", "spam", "none", NULL};
	size_t before = diag_errors(d);
	int v;
	long n;

	p->threshold[VERDICT_ACCEPT] = -INFINITY;
	conf_double_or_off(c, "add_header_score", 5.0, INFINITY, &p->threshold[VERDICT_ADD_HEADER],
	                   d);
	conf_double_or_off(c, "quarantine_score", INFINITY, INFINITY,
	                   &p->threshold[VERDICT_QUARANTINE], d);
	conf_double_or_off(c, "tempfail_score", INFINITY, INFINITY, &p->threshold[VERDICT_TEMPFAIL],
	                   d);
	conf_double_or_off(c, "reject_score", 15.0, INFINITY, &p->threshold[VERDICT_REJECT], d);
	conf_str(c, "reject_reply", "550 5.7.1 Message rejected as spam", &p->reject_reply, d);
	conf_str(c, "tempfail_reply", "451 4.7.1 Message deferred, try again later",
	         &p->tempfail_reply, d);
	conf_str(c, "header_prefix", "X-Spam", &p->header_prefix, d);
	conf_enum(c, "add_headers", add, VERDICT_HDR_ALL, &v, d);
	p->add_headers = (verdict_add_headers_t)v;
	conf_enum(c, "foreign_headers", foreign, VERDICT_FOREIGN_REMOVE, &v, d);
	p->foreign = (verdict_foreign_t)v;
	conf_enum(c, "on_error", on_error, VERDICT_ERR_ACCEPT, &v, d);
	p->on_error = (verdict_on_error_t)v;
	conf_long(c, "header_max_rules", 30, 0, 1000, &n, d);
	p->max_rules_in_header = (unsigned)n;

	if (verdict_check_reply(p->reject_reply, '5') < 0)
		conf_key_error(c, "reject_reply", d,
		               "reject_reply must be a 5xx code, a space and text without '%%' "
		               "or control characters: '%s'",
		               p->reject_reply);
	if (verdict_check_reply(p->tempfail_reply, '4') < 0)
		conf_key_error(c, "tempfail_reply", d,
		               "tempfail_reply must be a 4xx code, a space and text without '%%' "
		               "or control characters: '%s'",
		               p->tempfail_reply);
	/* An empty prefix named the fields "-Score", "-Status" and "-Action". */
	if (p->header_prefix[0] == '\0')
		conf_key_error(c, "header_prefix", d, "header_prefix: empty");
	for (const char *s = p->header_prefix; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '-')) {
			conf_key_error(c, "header_prefix", d,
			               "header_prefix may hold letters, digits and '-'");
			break;
		}
	return diag_errors(d) > before ? -1 : 0;
}

verdict_action_t verdict_decide(const verdict_policy_t *p, double score)
{
	/*
	 * The action whose threshold is the highest one reached wins. Ties go
	 * to the harsher action, so "reject_score = tempfail_score" rejects.
	 */
	verdict_action_t best = VERDICT_ACCEPT;
	double best_t = -INFINITY;
	for (int a = VERDICT_ADD_HEADER; a < VERDICT_N_ACTIONS; a++) {
		double t = p->threshold[a];
		if (isfinite(t) && score >= t && t >= best_t) {
			best = (verdict_action_t)a;
			best_t = t;
		}
	}
	return best;
}

double verdict_spam_threshold(const verdict_policy_t *p)
{
	double t = INFINITY;
	for (int a = VERDICT_ADD_HEADER; a < VERDICT_N_ACTIONS; a++)
		if (p->threshold[a] < t)
			t = p->threshold[a];
	return t;
}

size_t verdict_headers(const verdict_policy_t *p, arena_t *a, double score, verdict_action_t action,
                       const hits_t *h, verdict_header_t out[4])
{
	bool spam = action != VERDICT_ACCEPT;
	size_t n = 0;
	if (p->add_headers == VERDICT_HDR_NONE || (p->add_headers == VERDICT_HDR_SPAM && !spam))
		return 0;
	double req = verdict_spam_threshold(p);
	abuf_t tests;
	abuf_init(&tests, a, 256);
	unsigned listed = 0;
	for (size_t i = 0; i < hits_count(h) && listed < p->max_rules_in_header; i++) {
		const hit_t *hit = hits_at(h, i);
		/* Keep the field short enough for any MTA's line limits. */
		if (tests.len + strlen(hit->name) + 1 > VERDICT_HEADER_VALUE_MAX_BYTES)
			break;
		if (listed++)
			abuf_putc(&tests, ',');
		abuf_puts(&tests, hit->name);
	}
	if (listed == 0)
		abuf_puts(&tests, "none");
	out[n++] = (verdict_header_t){arena_sprintf(a, "%s-Score", p->header_prefix),
	                              arena_sprintf(a, "%.1f", score)};
	if (isfinite(req))
		out[n++] =
		    (verdict_header_t){arena_sprintf(a, "%s-Status", p->header_prefix),
		                       arena_sprintf(a, "%s, score=%.1f required=%.1f tests=%s",
		                                     spam ? "Yes" : "No", score, req, tests.data)};
	else
		out[n++] =
		    (verdict_header_t){arena_sprintf(a, "%s-Status", p->header_prefix),
		                       arena_sprintf(a, "%s, score=%.1f tests=%s",
		                                     spam ? "Yes" : "No", score, tests.data)};
	out[n++] = (verdict_header_t){arena_sprintf(a, "%s-Action", p->header_prefix),
	                              verdict_action_name(action)};
	if (spam)
		out[n++] = (verdict_header_t){arena_sprintf(a, "%s-Flag", p->header_prefix), "YES"};
	return n;
}

bool verdict_error_header(const char *failed, arena_t *a, verdict_header_t *out)
{
	if (failed == NULL)
		return false;
	*out = (verdict_header_t){VERDICT_ERROR_HEADER,
	                          arena_sprintf(a, "scored without %s (internal error)", failed)};
	return true;
}

bool verdict_is_own_header(const verdict_policy_t *p, const char *name)
{
	if (strcasecmp(name, VERDICT_ERROR_HEADER) == 0)
		return true;
	static const char *const suffixes[] = {"-Score", "-Status", "-Action",
	                                       "-Flag",  "-Report", "-Level"};
	size_t plen = strlen(p->header_prefix);
	if (strncasecmp(name, p->header_prefix, plen) != 0)
		return false;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		if (strcasecmp(name + plen, suffixes[i]) == 0)
			return true;
	return false;
}

void verdict_fields_init(verdict_fields_t *f, arena_t *a)
{
	*f = (verdict_fields_t){.a = a};
}

static void verdict_field_push(verdict_fields_t *f, verdict_field_t v)
{
	if (f->n == f->cap)
		f->v = arena_grow(f->a, f->v, f->n, &f->cap, sizeof(*f->v), 4);
	f->v[f->n++] = v;
}

void verdict_field_add(verdict_fields_t *f, const char *name, const char *value, bool prepend)
{
	verdict_field_push(
	    f, (verdict_field_t){arena_strdup(f->a, name), arena_strdup(f->a, value), 0, prepend});
}

void verdict_field_remove(verdict_fields_t *f, const char *name, unsigned index)
{
	verdict_field_push(f, (verdict_field_t){arena_strdup(f->a, name), NULL, index, false});
}
