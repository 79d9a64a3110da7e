/*
 * test_auth.c - sender authentication's pure parts: Authentication-
 * Results values (authserv-id, results, properties, comments), the From
 * domain, result names, default scores and configuration errors, the DNS
 * reply handed to libopendkim, and malformed input that must not crash.
 * The checks themselves run against a real DNS server in it_auth.sh.
 */
#include "config.h"

#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "auth_int.h"
#include "conf.h"
#include "diag.h"
#include "hits.h"
#include "msg.h"
#include "verdict.h"

Test(ar, the_authserv_id_is_the_first_token_lower_cased)
{
	char id[64];
	cr_assert_str_eq(auth_ar_servid("MX.Example.ORG; spf=pass", id, sizeof(id)),
	                 "mx.example.org");
	cr_assert_str_eq(auth_ar_servid(" (comment) mx.example.org 1; none", id, sizeof(id)),
	                 "mx.example.org");
	cr_assert_str_eq(auth_ar_servid("mx.example.org;", id, sizeof(id)), "mx.example.org");
	cr_assert_null(auth_ar_servid("", id, sizeof(id)));
	cr_assert_null(auth_ar_servid("  ; spf=pass", id, sizeof(id)));
	cr_assert_null(auth_ar_servid("a-very-long-authserv-id.example.org", id, 8));
}

Test(ar, results_and_properties_of_each_method)
{
	const char *v = "mx.example.org; spf=pass (sender is authorised) smtp.mailfrom=a@x.example;"
	                "\n\tdkim=fail (bad sig) header.d=Y.example header.s=sel;"
	                " dkim=pass header.i=@z.example header.d=z.example;"
	                " dmarc=fail (p=reject dis=none) header.from=x.example";
	char d[64];
	cr_assert_eq(auth_ar_result(v, "spf", 0, NULL, NULL, 0), AUTH_PASS);
	cr_assert_eq(auth_ar_result(v, "dkim", 0, "header.d", d, sizeof(d)), AUTH_FAIL);
	cr_assert_str_eq(d, "y.example");
	cr_assert_eq(auth_ar_result(v, "dkim", 1, "header.d", d, sizeof(d)), AUTH_PASS);
	cr_assert_str_eq(d, "z.example");
	cr_assert_eq(auth_ar_result(v, "dkim", 2, "header.d", d, sizeof(d)), AUTH_N_RESULTS);
	cr_assert_eq(auth_ar_result(v, "dmarc", 0, "header.from", d, sizeof(d)), AUTH_FAIL);
	cr_assert_str_eq(d, "x.example");
	cr_assert_eq(auth_ar_result(v, "arc", 0, NULL, NULL, 0), AUTH_N_RESULTS);
	/* a version after the method, blanks around '=', and a property that is absent */
	cr_assert_eq(auth_ar_result("a; spf/1 = softfail", "spf", 0, "smtp.mailfrom", d, sizeof(d)),
	             AUTH_SOFTFAIL);
	cr_assert_str_eq(d, "");
	/* RFC 7601's hardfail is fail; an unknown result is no result */
	cr_assert_eq(auth_ar_result("a; spf=hardfail", "spf", 0, NULL, NULL, 0), AUTH_FAIL);
	cr_assert_eq(auth_ar_result("a; spf=bogus", "spf", 0, NULL, NULL, 0), AUTH_N_RESULTS);
	/* a method name inside a comment is not a result */
	cr_assert_eq(auth_ar_result("a; (spf=pass) dkim=none", "spf", 0, NULL, NULL, 0),
	             AUTH_N_RESULTS);
}

Test(ar, malformed_values_do_not_crash)
{
	static const char *const bad[] = {"",
	                                  ";",
	                                  ";;;;",
	                                  "(",
	                                  "((((((",
	                                  "a; spf",
	                                  "a; =",
	                                  "a; spf=",
	                                  "a; \"spf=pass",
	                                  "a; spf=pass (unclosed",
	                                  "\\",
	                                  "a; dkim=pass header.d=",
	                                  "a; dkim=pass header.d"};
	char d[16], id[16];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		(void)auth_ar_servid(bad[i], id, sizeof(id));
		(void)auth_ar_result(bad[i], "spf", 0, "header.d", d, sizeof(d));
		(void)auth_ar_result(bad[i], "dkim", 0, "header.d", d, sizeof(d));
		(void)auth_from_domain(bad[i], d, sizeof(d));
	}
	/* longer than the parser's buffer: cut, not overrun */
	static char big[20000];
	memset(big, 'a', sizeof(big) - 1);
	memcpy(big, "id; spf=pass header.d=", 22);
	cr_assert_eq(auth_ar_result(big, "spf", 0, "header.d", d, sizeof(d)), AUTH_PASS);
	cr_assert_eq(strlen(d), sizeof(d) - 1);
}

Test(from, the_one_author_domain)
{
	char d[64];
	cr_assert_str_eq(auth_from_domain("Alice <alice@Mail.Example.COM>", d, sizeof(d)),
	                 "mail.example.com");
	cr_assert_str_eq(auth_from_domain("alice@example.com", d, sizeof(d)), "example.com");
	cr_assert_str_eq(auth_from_domain("\"Doe, Jane\" <jane@example.org> (work)", d, sizeof(d)),
	                 "example.org");
	cr_assert_str_eq(auth_from_domain("(c) bob@example.net (c)", d, sizeof(d)), "example.net");
	/* no address, two addresses, a group, a domain that is no host name */
	cr_assert_null(auth_from_domain("Alice", d, sizeof(d)));
	cr_assert_null(auth_from_domain("<a@x.example>, <b@y.example>", d, sizeof(d)));
	cr_assert_null(auth_from_domain("a@x.example, b@y.example", d, sizeof(d)));
	cr_assert_null(auth_from_domain("undisclosed-recipients:;", d, sizeof(d)));
	cr_assert_null(auth_from_domain("<a@bad domain>", d, sizeof(d)));
	cr_assert_null(auth_from_domain("<a@>", d, sizeof(d)));
	cr_assert_null(auth_from_domain("<a@x.example", d, sizeof(d)));
}

Test(names, results_round_trip_and_scores_have_defaults)
{
	for (int r = 0; r < AUTH_N_RESULTS; r++) {
		const char *n = auth_result_name((auth_result_t)r);
		cr_assert_eq(auth_result_parse(n, strlen(n)), r, "%s", n);
	}
	cr_assert_eq(auth_default_score("SPF_PASS"), -0.001);
	cr_assert_gt(auth_default_score("DMARC_REJECT"), 0);
	cr_assert_lt(auth_default_score("DKIM_VALID_AU"), 0);
	cr_assert(isnan(auth_default_score("NO_SUCH_RULE")));
}

/* ------------------------------------------------------------ the reply libopendkim parses */

static unsigned get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

Test(wire, a_long_key_record_is_split_into_strings_and_parses_back)
{
	dns_answer_t a;
	memset(&a, 0, sizeof(a));
	a.status = DNS_NOERROR;
	a.nrr = 1;
	a.rr[0].len = 600;
	memset(a.data, 'k', 600);
	a.used = 601;
	unsigned char buf[2048];
	size_t n = auth_dns_wire("sel._domainkey.example.com", DNS_T_TXT, &a, buf, sizeof(buf));
	cr_assert_gt(n, 600 + 3);
	cr_assert_eq(get16(buf + 6), 1, "one answer");
	cr_assert_eq(buf[3] & 0x0f, 0, "NOERROR");
	/* the shared parser reads it back joined */
	dns_answer_t back;
	long ttl;
	cr_assert_eq(dns_parse_response(buf, n, DNS_T_TXT, &back, &ttl), 0);
	cr_assert_eq(back.nrr, 1);
	size_t len;
	const char *t = dns_answer_rr(&back, 0, &len);
	cr_assert_eq(len, 600);
	cr_assert_eq(t[0], 'k');
	cr_assert_eq(t[599], 'k');
}

Test(wire, nxdomain_servfail_and_a_buffer_too_small)
{
	dns_answer_t a = {.status = DNS_NXDOMAIN};
	unsigned char buf[512];
	size_t n = auth_dns_wire("x.example", DNS_T_TXT, &a, buf, sizeof(buf));
	cr_assert_gt(n, 12);
	cr_assert_eq(buf[3] & 0x0f, 3);
	a.status = DNS_SERVFAIL;
	n = auth_dns_wire("x.example", DNS_T_TXT, &a, buf, sizeof(buf));
	cr_assert_eq(buf[3] & 0x0f, 2);
	cr_assert_eq(auth_dns_wire("x.example", DNS_T_TXT, &a, buf, 8), 0);
	cr_assert_eq(auth_dns_wire("bad..name", DNS_T_TXT, &a, buf, sizeof(buf)), 0);
	/* records that do not fit are left out, the rest stays well-formed */
	dns_answer_t big;
	memset(&big, 0, sizeof(big));
	big.status = DNS_NOERROR;
	big.nrr = 3;
	for (int i = 0; i < 3; i++) {
		big.rr[i].off = (uint16_t)(i * 201);
		big.rr[i].len = 200;
	}
	memset(big.data, 'v', 603);
	n = auth_dns_wire("x.example", DNS_T_TXT, &big, buf, 300); /* room for one */
	cr_assert_eq(get16(buf + 6), 1);
	dns_answer_t back;
	long ttl;
	cr_assert_eq(dns_parse_response(buf, n, DNS_T_TXT, &back, &ttl), 0);
	cr_assert_eq(back.nrr, 1);
}

/* ------------------------------------------------------------ configuration */

static void *load(const char *text, diag_t *d)
{
	conf_t *c = conf_parse("t.conf", text, d);
	cr_assert_not_null(c);
	dns_t *dns = dns_load(c, NULL, d);
	ev_env_t env = {.state_dir = "/tmp", .offline = true, .dns = dns};
	void *a = auth_evidence.load(c, NULL, &env, d);
	conf_check_unknown(c, d);
	dns_unref(dns);
	conf_free(c);
	return a;
}

Test(conf, off_by_default_and_every_key_known)
{
	diag_t *d = diag_new();
	cr_assert_null(load("", d));
	cr_assert_eq(diag_errors(d), 0);
	void *a = load("auth_enable = yes\nauth_serv_id = mx.example.org\n"
	               "auth_trust_authserv_id = up.example.org\nauth_dmarc_action = quarantine\n"
	               "auth_spf_helo = no\nauth_score = DMARC_REJECT 9\n",
	               d);
	cr_assert_eq(diag_errors(d), 0, "%s", diag_count(d) ? diag_text(d, 0) : "");
	cr_assert_not_null(a);
	auth_evidence.release(a);
	diag_free(d);
}

Test(conf, bad_values_are_errors_at_their_line)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
	    {"auth_enable = yes\nauth_score = NO_SUCH 1\n", "t.conf:2:"},
	    {"auth_enable = yes\nauth_score = SPF_PASS\n", "t.conf:2:"},
	    {"auth_enable = yes\nauth_score = SPF_PASS 1e9\n", "t.conf:2:"},
	    {"auth_enable = yes\nauth_dmarc_action = maybe\n", "t.conf:2:"},
	    {"auth_enable = yes\nauth_serv_id = has space\n", "t.conf:2: auth_serv_id"},
	    {"auth_enable = yes\n\nauth_serv_id =\n", "t.conf:3: auth_serv_id"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		diag_t *d = diag_new();
		cr_assert_null(load(cases[i].text, d), "%s", cases[i].text);
		cr_assert_geq(diag_errors(d), 1, "%s", cases[i].text);
		cr_assert(strstr(diag_text(d, 0), cases[i].want), "%s -> %s", cases[i].text,
		          diag_text(d, 0));
		diag_free(d);
	}
}

/* ------------------------------------------------------------ hostile fields */

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Scores m with a; the Authentication-Results value added ("" if none) into *ar. */
static ev_status_t score_one(void *a, msg_t *m, hits_t *h, const char **ar)
{
	verdict_fields_t f;
	verdict_fields_init(&f, msg_arena(m));
	verdict_action_t floor = VERDICT_ACCEPT;
	void *state = calloc(1, auth_evidence.msg_state_bytes);
	cr_assert_not_null(state);
	ev_score_ctx_t ctx = {.deadline_ms = ev_now_ms() + 2000,
	                      .state = state,
	                      .fields = &f,
	                      .action_floor = &floor};
	ev_status_t st = auth_evidence.score(a, NULL, m, NULL, h, &ctx);
	*ar = "";
	for (size_t i = 0; i < f.n; i++)
		if (f.v[i].value != NULL && strcmp(f.v[i].name, "Authentication-Results") == 0)
			*ar = f.v[i].value;
	free(state);
	return st;
}

/*
 * The trusted upstream's dkim= results were read one call each, every call
 * copying and splitting the whole value again; "dkim=none" ones take no
 * signature slot, so 20,000 of them in 220 KB (under max_header_size) made
 * 20,000 passes: 19 s of CPU for one message.
 */
Test(upstream, many_dkim_results_are_read_in_one_pass)
{
	diag_t *d = diag_new();
	void *a = load("auth_enable = yes\nauth_serv_id = mx.example.org\n"
	               "auth_trust_authserv_id = up.example.org\n",
	               d);
	cr_assert_not_null(a);
	size_t n = 12000;
	const char head[] = "up.example.org; spf=pass smtp.mailfrom=a@signer.example";
	const char none[] = "; dkim=none";
	const char tail[] = "; dkim=pass header.d=Signer.Example; dkim=fail header.d=b.example";
	char *v = malloc(sizeof(head) + n * (sizeof(none) - 1) + sizeof(tail));
	cr_assert_not_null(v);
	char *p = v + snprintf(v, sizeof(head), "%s", head);
	for (size_t i = 0; i < n; i++, p += sizeof(none) - 1)
		memcpy(p, none, sizeof(none) - 1);
	memcpy(p, tail, sizeof(tail));
	msg_t *m = msg_new(1 << 20);
	msg_add_header(m, "Authentication-Results", v);
	msg_add_header(m, "From", "a@signer.example");
	hits_t *h = hits_new(msg_arena(m));
	const char *ar;
	double t0 = cpu_seconds();
	cr_assert_eq(score_one(a, m, h, &ar), EV_OK);
	double cpu = cpu_seconds() - t0;
	/* the results after the 12,000 none: one pass reads them as the calls did */
	cr_assert(hits_has(h, "DKIM_VALID_AU"));
	cr_assert(hits_has(h, "SPF_PASS"));
	const char *valid = NULL;
	for (size_t i = 0; i < hits_count(h); i++)
		if (strcmp(hits_at(h, i)->name, "DKIM_VALID") == 0)
			valid = hits_at(h, i)->detail;
	cr_assert_str_eq(valid, "d=signer.example: dkim=pass");
	/* quadratic, over 4 s; one pass, a millisecond (under ASan too) */
	cr_assert_lt(cpu, 1.0, "%zu dkim=none results took %.2f s of CPU", n, cpu);
	msg_free(m);
	free(v);
	auth_evidence.release(a);
	diag_free(d);
}

/* A DKIM-Signature field of n tags "tN=;" (one tag letter: one of libopendkim's chains). */
static char *sig_of_tags(size_t n, const char *domain)
{
	size_t cap = 256 + n * 12;
	char *s = malloc(cap);
	cr_assert_not_null(s);
	size_t k =
	    (size_t)snprintf(s, cap,
	                     "v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=sel; "
	                     "h=from:to:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;",
	                     domain);
	for (size_t i = 0; i < n; i++)
		k += (size_t)snprintf(s + k, cap - k, " t%zu=;", i);
	snprintf(s + k, cap - k, " b=AAAA");
	return s;
}

/*
 * libopendkim keeps a signature's tags in chains by their first letter and
 * looks each new one up in its chain: n tags of one letter cost n^2/2
 * string compares. Sixteen signatures of 7,000 tags (1 MB, under
 * max_message_size) took 1.9 s of CPU; RFC 6376 defines 14 tags, so a
 * signature of more than AUTH_MAX_SIG_TAGS is not shown to it (nor
 * counted among the 16 verified).
 */
Test(dkim, a_signature_of_thousands_of_tags_is_not_handed_to_libopendkim)
{
	diag_t *d = diag_new();
	void *a = load("auth_enable = yes\nauth_serv_id = mx.example.org\n"
	               "dns_nameserver = 127.0.0.1:9\ndns_timeout = 100ms\ndns_tries = 1\n",
	               d);
	cr_assert_not_null(a, "%s", diag_count(d) ? diag_text(d, 0) : "");
	msg_t *m = msg_new(1 << 24);
	msg_keep_raw(m);
	msg_add_header(m, "From", "a@example.com");
	msg_add_header(m, "To", "b@example.org");
	msg_add_header(m, "Subject", "hi");
	char *ok = sig_of_tags(3, "small.example");
	msg_add_header(m, "DKIM-Signature", ok);
	for (int i = 0; i < 16; i++) {
		char *big = sig_of_tags(7000, "big.example");
		msg_add_header(m, "DKIM-Signature", big);
		free(big);
	}
	msg_append_body(m, "hello\r\n", 7);
	hits_t *h = hits_new(msg_arena(m));
	const char *ar;
	double t0 = cpu_seconds();
	(void)score_one(a, m, h, &ar);
	double cpu = cpu_seconds() - t0;
	/* the small signature only: verified (its key lookup fails), the others not seen */
	cr_assert(hits_has(h, "DKIM_SIGNED"));
	cr_assert(strstr(ar, "header.d=small.example"), "%s", ar);
	cr_assert_null(strstr(ar, "big.example"), "%s", ar);
	cr_assert_lt(cpu, 1.0, "16 signatures of 7,000 tags took %.2f s of CPU", cpu);
	free(ok);
	msg_free(m);
	auth_evidence.release(a);
	diag_free(d);
}

/*
 * libopendkim walks every header field for each name of a signature's h=:
 * with a key published, sixteen signatures naming 900 fields over 128,000
 * short fields (1 MB) took 16 s of CPU. Past max_header_fields the message
 * is not verified, as past max_message_size, and the field says so.
 */
Test(dkim, a_header_past_its_field_limit_is_not_verified)
{
	diag_t *d = diag_new();
	void *a = load("auth_enable = yes\nauth_serv_id = mx.example.org\n"
	               "dns_nameserver = 127.0.0.1:9\ndns_timeout = 100ms\ndns_tries = 1\n",
	               d);
	cr_assert_not_null(a, "%s", diag_count(d) ? diag_text(d, 0) : "");
	msg_t *m = msg_new(1 << 24);
	msg_keep_raw(m);
	msg_set_header_limits(m, 1000, 256 << 10);
	msg_add_header(m, "From", "a@example.com");
	char *sig = sig_of_tags(0, "signer.example");
	msg_add_header(m, "DKIM-Signature", sig);
	free(sig);
	for (int i = 0; i < 1000; i++)
		msg_add_header(m, "X-A", "1");
	cr_assert_gt(msg_fields_dropped(m), 0);
	msg_append_body(m, "hello\r\n", 7);
	hits_t *h = hits_new(msg_arena(m));
	const char *ar;
	(void)score_one(a, m, h, &ar);
	cr_assert(strstr(ar, "dkim=none (not verified: header over the size limits)"), "%s", ar);
	cr_assert_null(strstr(ar, "signer.example"), "%s", ar);
	bool yes;
	cr_assert(auth_eval(h, "check_dkim_dependable", &yes) && !yes);
	msg_free(m);
	auth_evidence.release(a);
	diag_free(d);
}

/* ------------------------------------------------------------ SpamAssassin's eval tests */

Test(eval, spamassassin_evals_answer_from_the_results_left_in_the_hits)
{
	arena_t *ar = arena_new(4096);
	hits_t *h = hits_new(ar);
	bool yes = false;
	cr_assert_not(auth_eval(h, "check_for_spf_pass", &yes), "auth did not run: no answer");
	hits_set_metric(h, "auth_spf", AUTH_SOFTFAIL);
	hits_set_metric(h, "auth_spf_helo", -1);
	hits_set_metric(h, "auth_dkim", 1 | 2);
	hits_set_metric(h, "auth_dmarc", AUTH_FAIL);
	hits_set_metric(h, "auth_dmarc_p", 'q');
	cr_assert(auth_eval(h, "check_for_spf_softfail", &yes) && yes);
	cr_assert(auth_eval(h, "check_for_spf_pass", &yes) && !yes);
	cr_assert(auth_eval(h, "check_for_spf_helo_none", &yes) && !yes, "HELO was not checked");
	cr_assert(auth_eval(h, "check_dkim_signed", &yes) && yes);
	cr_assert(auth_eval(h, "check_dkim_valid", &yes) && yes);
	cr_assert(auth_eval(h, "check_dkim_valid_author_sig", &yes) && !yes);
	cr_assert(auth_eval(h, "check_dmarc_quarantine", &yes) && yes);
	cr_assert(auth_eval(h, "check_dmarc_reject", &yes) && !yes);
	cr_assert(auth_eval(h, "check_dmarc_pass", &yes) && !yes);
	cr_assert_not(auth_eval(h, "check_for_something_else", &yes));
	cr_assert(auth_eval(h, "check_dkim_dependable", &yes) && yes);
	hits_set_metric(h, "auth_dkim", 8);
	cr_assert(auth_eval(h, "check_dkim_dependable", &yes) && !yes,
	          "DKIM not verified (over max_message_size): not dependable");
	arena_free(ar);
}

Test(eval, valid_signing_domains_are_read_from_dkim_valid)
{
	arena_t *ar = arena_new(4096);
	hits_t *h = hits_new(ar);
	cr_assert_not(auth_dkim_valid_sdid(h, "a.example", false), "auth did not run");
	hits_add(h, "auth", "DKIM_VALID", -0.1, NULL, "d=a.example,m1.b.example: dkim=pass");
	cr_assert(auth_dkim_valid_sdid(h, "a.example", false));
	cr_assert(auth_dkim_valid_sdid(h, "A.Example", false), "case-insensitive");
	cr_assert(auth_dkim_valid_sdid(h, "m1.b.example", false));
	cr_assert_not(auth_dkim_valid_sdid(h, "b.example", false));
	cr_assert(auth_dkim_valid_sdid(h, "b.example", true), "a domain below b.example");
	cr_assert_not(auth_dkim_valid_sdid(h, "a.example", true), "below, not the domain itself");
	cr_assert_not(auth_dkim_valid_sdid(h, "example", false));
	arena_free(ar);
}

static bool collect_sdid(const char *sdid, size_t n, void *ud)
{
	char *out = ud;
	size_t len = strlen(out);
	snprintf(out + len, 128 - len, "%s%.*s", len ? "|" : "", (int)n, sdid);
	return strchr(out, '|') == NULL; /* stop after the second */
}

/* askdns's _DKIMDOMAIN_: each valid signature's domain, in order, until told to stop. */
Test(eval, valid_signing_domains_are_listed_in_order)
{
	arena_t *ar = arena_new(4096);
	hits_t *h = hits_new(ar);
	char got[128] = "";
	auth_dkim_valid_each(h, collect_sdid, got);
	cr_assert_str_eq(got, "", "auth did not run: none");
	hits_add(h, "auth", "DKIM_VALID", -0.1, NULL,
	         "d=a.example,m1.b.example,c.example: dkim=pass");
	auth_dkim_valid_each(h, collect_sdid, got);
	cr_assert_str_eq(got, "a.example|m1.b.example", "in order, stopped after two");
	arena_free(ar);
}
