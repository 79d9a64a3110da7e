/*
 * Tests of SpamAssassin's eval: tests as Sift runs them (rules_eval*.c),
 * one family at a time, each with messages that hit and that miss, and of
 * the SpamAssassin semantics around them: score sets, tflags net/learn,
 * skipped evals that warn with their reason.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "diag.h"
#include "auth.h"
#include "hits.h"
#include "mime.h"
#include "msg.h"
#include "rules.h"
#include "rules_int.h"
#define SIFT_UNIT_RULES
#include "unit_util.h"

static rules_t *load_o(const char *text, const rules_opts_t *o)
{
	diag_t *d = diag_new();
	rules_t *r = rules_load_text("t.cf", text, o, d);
	if (r == NULL)
		diag_print(d, stderr, 1);
	diag_free(d);
	cr_assert_not_null(r, "rules failed to load");
	return r;
}

static rules_t *load(const char *text)
{
	return load_o(text, NULL);
}

/*
 * The fields the evals read (SpamAssassin's get()) are built once per
 * message and kept by name and by raw or decoded: asked again in another
 * case, or by a name in a buffer since reused, the answer is the same.
 */
Test(rules_eval, header_values_are_built_once_and_kept_apart)
{
	rules_t *r = load("header T_NONE exists:X-Nothing\n");
	const char *raw = "Subject: =?UTF-8?Q?caf=C3=A9?= au\r\n lait\r\n"
	                  "Received: from a\n\tby b\nReceived: from c\n\nbody\n";
	msg_t *m = msg_new(1 << 20);
	msg_parse_raw(m, raw, strlen(raw));
	mime_t *mi = mime_parse(m, NULL);
	struct rules_evalenv e;
	rules_eval_env_init(&e, r, m, mi);
	const char *dec = rules_eval_header(&e, "Subject");
	cr_assert_str_eq(dec, "caf\xc3\xa9 au lait\n");
	cr_assert_str_eq(rules_eval_header_raw(&e, "subject"), "=?UTF-8?Q?caf=C3=A9?= au lait\n");
	cr_assert_eq(rules_eval_header(&e, "SUBJECT"), dec, "built once");
	char name[16];
	snprintf(name, sizeof(name), "Received");
	cr_assert_str_eq(rules_eval_header(&e, name), "from a\tby b\nfrom c\n");
	snprintf(name, sizeof(name), "X-Absent");
	cr_assert_null(rules_eval_header(&e, name));
	cr_assert_str_eq(rules_eval_header(&e, "received"), "from a\tby b\nfrom c\n");
	cr_assert_null(rules_eval_header(&e, "x-absent"));
	msg_free(m);
	rules_free(r);
}

/* ---------------------------------------------------------------- HeaderEval */

Test(rules_eval, outlook_message_id_must_track_the_date)
{
	rules_t *r = load("header MSGID_OUTLOOK_INVALID eval:check_outlook_message_id()\n");
	/*
	 * Outlook's token for Date = 1034000000 (2002-10-07 14:13:20 UTC):
	 * int(1034000000 * 0.0023283064365387 + 27111902.8329849) = 29519389
	 * = 0x01c2703d... written as its 8 hex digits after 4 others.
	 */
	long tok = (long)(1034000000.0 * 0.0023283064365387 + 27111902.8329849);
	char good[1024], bad[1024];
	snprintf(good, sizeof(good),
	         "From: a@example.com\nDate: Mon, 7 Oct 2002 14:13:20 +0000\n"
	         "Message-ID: <0000%08lx$0123abcd$4567cdef@example.com>\nSubject: x\n\nhi\n",
	         tok);
	snprintf(bad, sizeof(bad),
	         "From: a@example.com\nDate: Mon, 7 Oct 2002 14:13:20 +0000\n"
	         "Message-ID: <0000%08lx$0123abcd$4567cdef@example.com>\nSubject: x\n\nhi\n",
	         tok + 5000);
	cr_assert_not(unit_rules_hits(r, good, "MSGID_OUTLOOK_INVALID"));
	cr_assert(unit_rules_hits(r, bad, "MSGID_OUTLOOK_INVALID"));
	cr_assert_not(unit_rules_hits(r, "From: a@example.com\nMessage-ID: <1@example.com>\n\nx\n",
	                              "MSGID_OUTLOOK_INVALID"),
	              "not an Outlook form");
	rules_free(r);
}

#define RCVD "Received: from a.example.net (a.example.net [192.0.2.1]) by mx.example.org; "

Test(rules_eval, shifted_date_compares_date_with_the_nearest_received)
{
	rules_t *r = load("header DATE_IN_FUTURE_03_06 eval:check_for_shifted_date('3', '6')\n"
	                  "header DATE_IN_PAST_12_24 eval:check_for_shifted_date('-24', '-12')\n"
	                  "header DATE_FAR_PAST eval:check_for_shifted_date('undef', '-96')\n");
	const char *future = RCVD "Mon, 2 Jan 2023 10:00:00 +0000\n"
	                          "Date: Mon, 2 Jan 2023 14:30:00 +0000\nSubject: x\n\nx\n";
	const char *past = RCVD "Mon, 2 Jan 2023 10:00:00 +0000\n"
	                        "Date: Sun, 1 Jan 2023 5:00:00 -0500\nSubject: x\n\nx\n";
	const char *sane = RCVD "Mon, 2 Jan 2023 10:00:00 +0000\n"
	                        "Date: Mon, 2 Jan 2023 11:00:00 +0100\nSubject: x\n\nx\n";
	const char *old = RCVD "Mon, 2 Jan 2023 10:00:00 +0000\n"
	                       "Date: Tue, 1 Mar 2022 10:00:00 +0000\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, future, "DATE_IN_FUTURE_03_06"));
	cr_assert_not(unit_rules_hits(r, future, "DATE_IN_PAST_12_24"));
	cr_assert(unit_rules_hits(r, past, "DATE_IN_PAST_12_24"), "-0500 counted: 19 hours back");
	cr_assert_not(unit_rules_hits(r, sane, "DATE_IN_FUTURE_03_06"));
	cr_assert_not(unit_rules_hits(r, sane, "DATE_IN_PAST_12_24"));
	cr_assert(unit_rules_hits(r, old, "DATE_FAR_PAST"), "undef leaves a side open");
	cr_assert_not(unit_rules_hits(r, "Date: Mon, 2 Jan 2023 14:30:00 +0000\n\nx\n",
	                              "DATE_IN_FUTURE_03_06"),
	              "no Received: nothing to compare");
	/* a time with one-digit seconds is no time to SpamAssassin: midnight, 10 hours back */
	rules_t *r2 = load("header DATE_IN_PAST_06_12 eval:check_for_shifted_date('-12', '-6')\n"
	                   "header DATE_IN_FUTURE_06_12 eval:check_for_shifted_date('6', '12')\n");
	const char *badtime = RCVD "Mon, 2 Jan 2023 10:28:47 +0000\n"
	                           "Date: Mon, 2 Jan 2023 10:28:3 +0000\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r2, badtime, "DATE_IN_PAST_06_12"));
	/* a folded Received field's date still counts (its zone on the next line) */
	const char *folded =
	    "Received: from a.example by b.example; Mon, 2 Jan 2023 14:28:47\n"
	    "        +0000\n"
	    "Received: from c.example by a.example; Mon, 2 Jan 2023 01:00:00 +0000\n"
	    "Date: Mon, 2 Jan 2023 12:00:00 +0000\nSubject: x\n\nx\n";
	cr_assert_not(unit_rules_hits(r2, folded, "DATE_IN_FUTURE_06_12"),
	              "the folded field is the nearer: 2.5 hours, not the other's 11");
	rules_free(r2);
	rules_free(r);
}

/*
 * Tens of thousands of copies of one field, as a sender may write them
 * (Postfix limits only Received and Delivered-To): the evals and header
 * rules that read every copy take one pass. Numbered one by one, and with
 * check_header_count_range comparing each copy with every earlier one,
 * this message took over a minute.
 */
Test(rules_eval, many_copies_of_a_field_are_read_in_one_pass, .timeout = 30)
{
	rules_t *r = load("header DATE_IN_PAST_03_06 eval:check_for_shifted_date('-6', '-3')\n"
	                  "header TO_DISTINCT eval:check_header_count_range('To', 60000, 60000)\n"
	                  "header TO_FEW eval:check_header_count_range('To', 1, 59999)\n"
	                  "header TO_LAST To:last =~ /^u999\\@/\n"
	                  "header TO_FIRST To:first =~ /^u0\\@/\n"
	                  "header TO_ANY To =~ /^u31337\\@/m\n"
	                  "header RCVD_ANY Received =~ /\\bh29999\\b/\n");
	size_t cap = 8u << 20, n = 0;
	char *raw = malloc(cap);
	for (int i = 0; i < 30000; i++)
		n += (size_t)snprintf(
		    raw + n, cap - n,
		    "Received: from h%d.example.net by mx.example.org; "
		    "%s +0000\n",
		    i, i == 0 ? "Mon, 2 Jan 2023 10:00:00" : "Sat, 1 Jan 2022 03:00:00");
	/* 60,000 distinct addresses, then the first thousand again */
	for (int i = 0; i < 61000; i++)
		n += (size_t)snprintf(raw + n, cap - n, "To: u%d@example.com\n", i % 60000);
	snprintf(raw + n, cap - n, "Date: Mon, 2 Jan 2023 05:30:00 +0000\nSubject: x\n\nx\n");
	cr_assert(unit_rules_hits(r, raw, "DATE_IN_PAST_03_06"),
	          "the nearest Received is the first, 4.5 h on");
	cr_assert(unit_rules_hits(r, raw, "TO_DISTINCT"));
	cr_assert_not(unit_rules_hits(r, raw, "TO_FEW"));
	cr_assert(unit_rules_hits(r, raw, "TO_ANY") && unit_rules_hits(r, raw, "RCVD_ANY"));
	cr_assert(unit_rules_hits(r, raw, "TO_FIRST"));
	cr_assert(unit_rules_hits(r, raw, "TO_LAST"), "the last copy is u999");
	free(raw);
	rules_free(r);
}

Test(rules_eval, subject_all_caps_needs_two_words_and_ten_letters)
{
	rules_t *r = load("header SUBJ_ALL_CAPS eval:subject_is_all_caps()\n");
	cr_assert(unit_rules_hits(r, "Subject: Re: FREE MONEY NOW\n\nx\n", "SUBJ_ALL_CAPS"));
	cr_assert_not(unit_rules_hits(r, "Subject: FREE Money NOW\n\nx\n", "SUBJ_ALL_CAPS"));
	cr_assert_not(unit_rules_hits(r, "Subject: FREEMONEYNOW\n\nx\n", "SUBJ_ALL_CAPS"),
	              "one word");
	cr_assert_not(unit_rules_hits(r, "Subject: HI YOU\n\nx\n", "SUBJ_ALL_CAPS"), "short");
	cr_assert_not(
	    unit_rules_hits(r, "Subject: =?koi8-r?Q?FREE_MONEY_NOW?=\n\nx\n", "SUBJ_ALL_CAPS"),
	    "charsets that read as capitals");
	rules_free(r);
}

Test(rules_eval, similar_and_sorted_recipients)
{
	rules_t *r = load("header SUSPICIOUS_RECIPS eval:similar_recipients('0.65','undef')\n"
	                  "header SORTED_RECIPS eval:sorted_recipients()\n");
	const char *similar = "To: jo1@aa.example, jo2@ab.example, jo3@ac.example,\n"
	                      " jo4@ad.example, jo5@ae.example, jo6@af.example,\n"
	                      " jo7@ag.example\nSubject: x\n\nx\n";
	const char *varied = "To: alice@example.com, bob@example.org, carol@test.example,\n"
	                     " dave@mail.example, erin@other.example\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, similar, "SUSPICIOUS_RECIPS"));
	cr_assert(unit_rules_hits(r, similar, "SORTED_RECIPS"));
	cr_assert_not(unit_rules_hits(r, varied, "SUSPICIOUS_RECIPS"));
	cr_assert_not(unit_rules_hits(r, varied, "SORTED_RECIPS"),
	              "five are too few to call sorted");
	rules_free(r);
}

Test(rules_eval, forged_yahoo_received)
{
	rules_t *r =
	    load("header FORGED_YAHOO_RCVD eval:check_for_forged_yahoo_received_headers()\n");
	const char *forged = "Received: from spammer.example (spammer.example [192.0.2.9])\n"
	                     " by mx.example.org with SMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                     "From: Bob <bob@yahoo.com>\nSubject: x\n\nx\n";
	const char *real = "Received: from web1.mail.example (web1.mail.example [192.0.2.9])\n"
	                   " by web12.mail.dcn.yahoo.com via HTTP; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                   "From: Bob <bob@yahoo.com>\nSubject: x\n\nx\n";
	const char *other = "Received: from spammer.example (spammer.example [192.0.2.9])\n"
	                    " by mx.example.org with SMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                    "From: Bob <bob@notyahoo.com>\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, forged, "FORGED_YAHOO_RCVD"));
	cr_assert_not(unit_rules_hits(r, real, "FORGED_YAHOO_RCVD"));
	cr_assert_not(unit_rules_hits(r, other, "FORGED_YAHOO_RCVD"));
	rules_free(r);
}

Test(rules_eval, header_counts_missing_to_and_illegal_chars)
{
	rules_t *r = load("header MISSING_TO eval:check_for_missing_to_header()\n"
	                  "header TWO_SUBJ eval:check_header_count_range('Subject','2','3')\n"
	                  "header SUBJ_ILLEGAL eval:check_illegal_chars('Subject','0.03','2')\n"
	                  "header TMPL eval:check_unresolved_template()\n");
	cr_assert(unit_rules_hits(r, "Subject: x\n\nx\n", "MISSING_TO"));
	cr_assert_not(unit_rules_hits(r, "To: a@example.com\nSubject: x\n\nx\n", "MISSING_TO"));
	cr_assert_not(unit_rules_hits(r, "To: \nSubject: x\n\nx\n", "MISSING_TO"),
	              "empty is not missing");
	cr_assert(unit_rules_hits(r, "Subject: a\nSubject: b\n\nx\n", "TWO_SUBJ"));
	cr_assert_not(unit_rules_hits(r, "Subject: a\nSubject: a\n\nx\n", "TWO_SUBJ"),
	              "distinct values");
	cr_assert(unit_rules_hits(r, "Subject: caf\xe9 cr\xe8me\n\nx\n", "SUBJ_ILLEGAL"));
	cr_assert_not(
	    unit_rules_hits(r, "Subject: caf\xc3\xa9 cr\xc3\xa8me\n\nx\n", "SUBJ_ILLEGAL"),
	    "valid UTF-8 is not illegal");
	cr_assert(unit_rules_hits(r, "X-Campaign: %CAMPAIGN_ID\nSubject: x\n\nx\n", "TMPL"));
	cr_assert_not(unit_rules_hits(r, "Subject: 100%OFF\n\nx\n", "TMPL"));
	cr_assert(unit_rules_hits(r, "X-Campaign: =?utf-8?q?=25CAMPAIGN=5FID?=\nSubject: x\n\nx\n",
	                          "TMPL"),
	          "a template in an encoded word, read decoded");
	rules_free(r);
}

/* ---------------------------------------------------------------- RelayEval */

Test(rules_eval, relay_helo_tests)
{
	rules_t *r = load("header NO_RDNS_DOTCOM_HELO eval:check_for_no_rdns_dotcom_helo()\n"
	                  "header RCVD_HELO_IP_MISMATCH eval:helo_ip_mismatch()\n"
	                  "header NO_RELAYS eval:check_no_relays()\n");
	const char *dotcom = "Received: from mx1.hotmail.com (unknown [198.51.100.7])\n"
	                     " by mx.example.org with SMTP; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                     "Subject: x\n\nx\n";
	const char *named = "Received: from mx1.hotmail.com (host.example.net [198.51.100.7])\n"
	                    " by mx.example.org with SMTP; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                    "Subject: x\n\nx\n";
	const char *ipmis = "Received: from 203.0.113.5 (host.example.net [198.51.100.7])\n"
	                    " by mx.example.org with SMTP; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                    "Subject: x\n\nx\n";
	const char *same24 = "Received: from 198.51.100.9 (host.example.net [198.51.100.7])\n"
	                     " by mx.example.org with SMTP; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                     "Subject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, dotcom, "NO_RDNS_DOTCOM_HELO"));
	cr_assert_not(unit_rules_hits(r, named, "NO_RDNS_DOTCOM_HELO"));
	cr_assert(unit_rules_hits(r, ipmis, "RCVD_HELO_IP_MISMATCH"));
	cr_assert_not(unit_rules_hits(r, same24, "RCVD_HELO_IP_MISMATCH"), "same /24 is fine");
	cr_assert(unit_rules_hits(r, "Subject: x\n\nx\n", "NO_RELAYS"));
	cr_assert_not(unit_rules_hits(r, dotcom, "NO_RELAYS"));
	/* the oldest public relay decides, even without a HELO */
	char two[1024];
	snprintf(two, sizeof(two),
	         "Received: from mx1.hotmail.com (unknown [198.51.100.7])\n"
	         " by mx.example.org with SMTP; Mon, 2 Jan 2023 10:00:00 +0000\n"
	         "Received: from [203.0.113.8] by mx1.hotmail.com with NNFMP;"
	         " Mon, 2 Jan 2023 09:59:00 +0000\n%s",
	         "Subject: x\n\nx\n");
	cr_assert_not(unit_rules_hits(r, two, "NO_RDNS_DOTCOM_HELO"));
	/* "06" is no octet: the HELO is a name */
	const char *zero = "Received: from 46.34.15.06 (host.example.net [198.51.100.7])\n"
	                   " by mx.example.org with SMTP; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                   "Subject: x\n\nx\n";
	cr_assert_not(unit_rules_hits(r, zero, "RCVD_HELO_IP_MISMATCH"));
	rules_free(r);
}

Test(rules_eval, to_in_subject_by_address_and_by_user)
{
	rules_t *r = load("header LOCALPART_IN_SUBJECT eval:check_for_to_in_subject('user')\n"
	                  "header TO_IN_SUBJ eval:check_for_to_in_subject('address')\n");
	const char *to = "To: Bob <bob@example.com>\n";
	char m[512];
	snprintf(m, sizeof(m), "%sSubject: bob, your order is ready\n\nx\n", to);
	cr_assert(unit_rules_hits(r, m, "LOCALPART_IN_SUBJECT"), "'bob,' opens the subject");
	cr_assert_not(unit_rules_hits(r, m, "TO_IN_SUBJ"));
	snprintf(m, sizeof(m), "%sSubject: Re: hello Bob\n\nx\n", to);
	cr_assert(unit_rules_hits(r, m, "LOCALPART_IN_SUBJECT"), "Re: with one word, any case");
	snprintf(m, sizeof(m), "%sSubject: Bob, hello\n\nx\n", to);
	cr_assert_not(unit_rules_hits(r, m, "LOCALPART_IN_SUBJECT"), "'user,' is case-sensitive");
	snprintf(m, sizeof(m), "%sSubject: BOB\n\nx\n", to);
	cr_assert(unit_rules_hits(r, m, "LOCALPART_IN_SUBJECT"), "the user alone");
	snprintf(m, sizeof(m), "%sSubject: news for you, bob!\n\nx\n", to);
	cr_assert_not(unit_rules_hits(r, m, "LOCALPART_IN_SUBJECT"),
	              "every shape starts the subject");
	snprintf(m, sizeof(m), "%sSubject: bobsleigh results\n\nx\n", to);
	cr_assert_not(unit_rules_hits(r, m, "LOCALPART_IN_SUBJECT"));
	snprintf(m, sizeof(m), "%sSubject: your order is ready\n\nx\n", to);
	cr_assert_not(unit_rules_hits(r, m, "LOCALPART_IN_SUBJECT"), "no user in the subject");
	cr_assert_not(unit_rules_hits(r, m, "TO_IN_SUBJ"));
	snprintf(m, sizeof(m), "%sSubject: mail for BOB@example.com today\n\nx\n", to);
	cr_assert(unit_rules_hits(r, m, "TO_IN_SUBJ"));
	cr_assert_not(unit_rules_hits(r, "Subject: bob, hi\n\nx\n", "LOCALPART_IN_SUBJECT"),
	              "no To");
	/* the local part is quoted: a dot in it is no wildcard */
	cr_assert_not(unit_rules_hits(r, "To: b.b@example.com\nSubject: bxb, hi\n\nx\n",
	                              "LOCALPART_IN_SUBJECT"));
	cr_assert(unit_rules_hits(r, "To: b.b@example.com\nSubject: b.b, hi\n\nx\n",
	                          "LOCALPART_IN_SUBJECT"));
	rules_free(r);
}

Test(rules_eval, to_in_subject_rejects_an_unknown_mode)
{
	diag_t *d = diag_new();
	rules_t *r =
	    rules_load_text("t.cf", "header T eval:check_for_to_in_subject('domain')\n", NULL, d);
	cr_assert(unit_diag_has(d, "expected 'address' or 'user'"));
	rules_free(r);
	diag_free(d);
}

Test(rules_eval, ratware_message_id_and_envelope_sender)
{
	rules_t *r = load("header RATWARE_NAME_ID eval:check_ratware_name_id()\n"
	                  "header RATWARE_EFROM eval:check_ratware_envelope_from()\n");
	const char *nameid = "Message-ID: <ABCDEFGHIJKLMNOPQRSTUVWXYZAB.sales@shop.example>\n"
	                     "From: \"Sales\" <sales@shop.example>\nSubject: x\n\nx\n";
	const char *plain = "Message-ID: <ABCDEFGHIJKLMNOPQRSTUVWXYZAB.sales@shop.example>\n"
	                    "From: sales@shop.example\nSubject: x\n\nx\n";
	const char *short_id = "Message-ID: <ABCDEFGHIJKLMNOPQRSTUVWXYZ.sales@shop.example>\n"
	                       "From: \"Sales\" <sales@shop.example>\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, nameid, "RATWARE_NAME_ID"));
	cr_assert_not(unit_rules_hits(r, plain, "RATWARE_NAME_ID"), "no quoted display name");
	cr_assert_not(unit_rules_hits(r, short_id, "RATWARE_NAME_ID"), "26 capitals, not 28");
	const char *efrom = "Return-Path: <example.co.uk.bob@bulk.example>\n"
	                    "To: bob@mail.example.co.uk\nSubject: x\n\nx\n";
	const char *other = "Return-Path: <list@bulk.example>\n"
	                    "To: bob@mail.example.co.uk\nSubject: x\n\nx\n";
	const char *srs = "Return-Path: <SRS0=ab=cd=example.co.uk.bob@fwd.example>\n"
	                  "To: bob@mail.example.co.uk\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, efrom, "RATWARE_EFROM"),
	          "registered domain, any byte, then user");
	cr_assert_not(unit_rules_hits(r, other, "RATWARE_EFROM"));
	cr_assert_not(unit_rules_hits(r, srs, "RATWARE_EFROM"), "SRS rewrites are forwarders");
	rules_free(r);
}

Test(rules_eval, forged_webmail_received_headers)
{
	rules_t *r =
	    load("header FORGED_GMAIL_RCVD eval:check_for_forged_gmail_received_headers()\n"
	         "header JUNO eval:check_for_forged_juno_received_headers()\n"
	         "header EUDORA eval:check_for_forged_eudoramail_received_headers()\n"
	         "header AOL eval:check_for_fake_aol_relay_in_rcvd()\n");
	const char *rc = "Received: from spammer.example (spammer.example [192.0.2.9])\n"
	                 " by mx.example.org with SMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n";
	char m[1024];
	snprintf(m, sizeof(m), "%sFrom: a@gmail.com\nSubject: x\n\nx\n", rc);
	cr_assert(unit_rules_hits(r, m, "FORGED_GMAIL_RCVD"));
	snprintf(m, sizeof(m),
	         "X-Received: by 10.1.2.3 with SMTP id abc;\n Mon, 2 Jan 2023 10:00:00 +0000\n"
	         "%sFrom: a@gmail.com\nSubject: x\n\nx\n",
	         rc);
	cr_assert_not(unit_rules_hits(r, m, "FORGED_GMAIL_RCVD"), "Google's internal hop");
	snprintf(m, sizeof(m), "%sFrom: a@notgmail.com\nSubject: x\n\nx\n", rc);
	cr_assert_not(unit_rules_hits(r, m, "FORGED_GMAIL_RCVD"), "\\bgmail.com$");
	snprintf(m, sizeof(m), "%sFrom: a@juno.com\nSubject: x\n\nx\n", rc);
	cr_assert(unit_rules_hits(r, m, "JUNO"));
	snprintf(m, sizeof(m),
	         "Received: from cookie.juno.com (cookie.juno.com [64.136.0.1])\n"
	         " by mx.example.org with SMTP id 1\n"
	         "X-Originating-IP: [192.0.2.1]\nX-Mailer: Juno 5.0\n"
	         "From: a@juno.com\nSubject: x\n\nx\n");
	cr_assert_not(unit_rules_hits(r, m, "JUNO"), "old-style Juno: its relay and its mailer");
	snprintf(m, sizeof(m), "%sFrom: a@eudoramail.com\nSubject: x\n\nx\n", rc);
	cr_assert(unit_rules_hits(r, m, "EUDORA"));
	snprintf(m, sizeof(m),
	         "Received: from Unknown/Local ([?.?.?.?]) by shared1-mail.whowhere.com;\n"
	         " Thu Nov 29 13:44:25 2001\nX-Sender-Ip: 192.175.21.146\n"
	         "From: a@eudoramail.com\nSubject: x\n\nx\n");
	cr_assert_not(unit_rules_hits(r, m, "EUDORA"));
	const char *aol = "Received: from unknown (HELO mta05bw.bigpond.com) (80.71.176.130) by\n"
	                  " rly-xw01.mx.aol.com with QMQP; Sat, 15 Jun 2002 23:37:16 -0000\n"
	                  "Subject: x\n\nx\n";
	const char *real_aol =
	    "Received: from logs-tr.proxy.aol.com (logs-tr.proxy.aol.com [152.163.201.132])\n"
	    " by rly-ip01.mx.aol.com (8.8.8/8.8.8/AOL-5.0.0)\n"
	    " with ESMTP id NAA08955; Thu, 4 Apr 2002 13:11:20 -0500 (EST)\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, aol, "AOL"));
	cr_assert_not(unit_rules_hits(r, real_aol, "AOL"), "AOL's own relay software");
	cr_assert_not(unit_rules_hits(r, rc, "AOL"));
	rules_free(r);
}

Test(rules_eval, faraway_charset_in_headers_follows_ok_locales)
{
	const char *rule =
	    "header CHARSET_FARAWAY_HEADER eval:check_for_faraway_charset_in_headers()\n";
	const char *koi = "From: a@b.example\nSubject: =?koi8-r?B?8NLJ18XU?=\n\nx\n";
	const char *jis =
	    "From: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= <a@b.example>\nSubject: x\n\nx\n";
	const char *utf = "From: a@b.example\nSubject: =?utf-8?Q?caf=C3=A9?= and =?windows-1251?B?"
	                  "8NLJ?=\n\nx\n";
	rules_t *r = load(rule);
	cr_assert_not(unit_rules_hits(r, koi, "CHARSET_FARAWAY_HEADER"), "no ok_locales: all");
	rules_free(r);
	char text[512];
	snprintf(text, sizeof(text), "%sok_locales all\n", rule);
	r = load(text);
	cr_assert_not(unit_rules_hits(r, koi, "CHARSET_FARAWAY_HEADER"));
	rules_free(r);
	snprintf(text, sizeof(text), "%sok_locales all\nok_locales en\n", rule);
	r = load(text);
	cr_assert(unit_rules_hits(r, koi, "CHARSET_FARAWAY_HEADER"), "the last line wins");
	cr_assert(unit_rules_hits(r, jis, "CHARSET_FARAWAY_HEADER"), "in From too");
	cr_assert_not(unit_rules_hits(r, utf, "CHARSET_FARAWAY_HEADER"),
	              "Unicode and code pages always pass");
	rules_free(r);
	snprintf(text, sizeof(text), "%sok_locales en ja_JP\n", rule);
	r = load(text);
	cr_assert(unit_rules_hits(r, koi, "CHARSET_FARAWAY_HEADER"));
	cr_assert_not(unit_rules_hits(r, jis, "CHARSET_FARAWAY_HEADER"), "ja_JP reads ISO-2022-JP");
	rules_free(r);
}

Test(rules_eval, forged_received_trail_needs_two_mismatches)
{
	rules_t *r = load("header FORGED_RCVD_TRAIL eval:check_for_forged_received_trail()\n");
	/* each relay's "by" names another domain than the next hop's rDNS */
	const char *forged =
	    "Received: from mail.one.example (mail.one.example [198.51.100.1])\n"
	    " by mx.example.org with SMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	    "Received: from relay.two.example (relay.two.example [198.51.100.2])\n"
	    " by mail.three.example with SMTP id 2; Mon, 2 Jan 2023 09:59:00 +0000\n"
	    "Received: from host.four.example (host.four.example [198.51.100.3])\n"
	    " by relay.five.example with SMTP id 3; Mon, 2 Jan 2023 09:58:00 +0000\n"
	    "Subject: x\n\nx\n";
	const char *trail = "Received: from mail.one.example (mail.one.example [198.51.100.1])\n"
	                    " by mx.example.org with SMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                    "Received: from relay.two.example (relay.two.example [198.51.100.2])\n"
	                    " by out.one.example with SMTP id 2; Mon, 2 Jan 2023 09:59:00 +0000\n"
	                    "Received: from host.four.example (host.four.example [198.51.100.3])\n"
	                    " by smtp.two.example with SMTP id 3; Mon, 2 Jan 2023 09:58:00 +0000\n"
	                    "Subject: x\n\nx\n";
	const char *one = "Received: from mail.one.example (mail.one.example [198.51.100.1])\n"
	                  " by mx.example.org with SMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                  "Received: from relay.two.example (relay.two.example [198.51.100.2])\n"
	                  " by mail.three.example with SMTP id 2; Mon, 2 Jan 2023 09:59:00 +0000\n"
	                  "Subject: x\n\nx\n";
	/* a two-letter TLD keeps three labels: a.example.co.uk is example.co.uk */
	const char *uk = "Received: from a.example.co.uk (a.example.co.uk [198.51.100.1])\n"
	                 " by mx.example.org with SMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                 "Received: from b.other.co.uk (b.other.co.uk [198.51.100.2])\n"
	                 " by c.example.co.uk with SMTP id 2; Mon, 2 Jan 2023 09:59:00 +0000\n"
	                 "Received: from host.four.example (host.four.example [198.51.100.3])\n"
	                 " by d.other.co.uk with SMTP id 3; Mon, 2 Jan 2023 09:58:00 +0000\n"
	                 "Subject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, forged, "FORGED_RCVD_TRAIL"));
	cr_assert_not(unit_rules_hits(r, trail, "FORGED_RCVD_TRAIL"),
	              "each hop names the same domain");
	cr_assert_not(unit_rules_hits(r, one, "FORGED_RCVD_TRAIL"), "one mismatch is not enough");
	cr_assert_not(unit_rules_hits(r, uk, "FORGED_RCVD_TRAIL"));
	rules_free(r);
}

/* What SpamAssassin's Received parser records: the MTA's rDNS lookup, rdns kept as written. */
Test(rules_eval, relays_record_rdns_as_the_mta_wrote_it)
{
	rules_t *r = load("header NO_RDNS_DOTCOM_HELO eval:check_for_no_rdns_dotcom_helo()\n"
	                  "header RDNS_NONE X-Spam-Relays-External =~ /^[^\\]]+ rdns= /\n");
	/* Exchange's SMTPSVC never looks up rDNS: an empty rdns says nothing */
	const char *smtpsvc =
	    "Received: from mx09.hotmail.com ([198.51.100.7]) by relay.example.net"
	    " with Microsoft SMTPSVC(5.0.2195.2966); Mon, 2 Jan 2023 10:00:00 +0000\n"
	    "Subject: x\n\nx\n";
	/* sendmail's "([IP])" form: it looked and found none */
	const char *sendmail =
	    "Received: from mx09.hotmail.com ([198.51.100.7]) by relay.example.net"
	    " (8.11.6/8.11.6) with SMTP id g8C2EnC13248; Mon, 2 Jan 2023\n"
	    "Subject: x\n\nx\n";
	/* an address where the name goes is what the MTA wrote, not "no name" */
	const char *ipname = "Received: from x.example.com (198.51.100.7 [198.51.100.7]) by"
	                     " relay.example.net with SMTP (Microsoft Exchange Internet Mail"
	                     " Service Version 5.5.2653.13) id RMT9XDW1; Mon, 2 Jan 2023\n"
	                     "Subject: x\n\nx\n";
	cr_assert_not(unit_rules_hits(r, smtpsvc, "NO_RDNS_DOTCOM_HELO"));
	cr_assert(unit_rules_hits(r, smtpsvc, "RDNS_NONE"), "the string still shows no rdns");
	cr_assert(unit_rules_hits(r, sendmail, "NO_RDNS_DOTCOM_HELO"));
	cr_assert_not(unit_rules_hits(r, ipname, "RDNS_NONE"));
	rules_free(r);
}

Test(rules_eval, envelope_sender_matching_the_first_untrusted_relay)
{
	rules_t *r = load("header RP_RCVD eval:check_mailfrom_matches_rcvd()\n");
	const char *own = "Return-Path: <news@shop.example.co.uk>\n"
	                  "Received: from mta7.shop.example.co.uk (mta7.shop.example.co.uk"
	                  " [198.51.100.7]) by mx.example.org (Postfix) with ESMTP id A1\n"
	                  "From: news@shop.example.co.uk\n\nx\n";
	const char *other = "Return-Path: <news@shop.example.co.uk>\n"
	                    "Received: from relay.other.example (relay.other.example"
	                    " [198.51.100.8]) by mx.example.org (Postfix) with ESMTP id A2\n"
	                    "From: news@shop.example.co.uk\n\nx\n";
	cr_assert(unit_rules_hits(r, own, "RP_RCVD"), "the same registered domain");
	cr_assert_not(unit_rules_hits(r, other, "RP_RCVD"));
	cr_assert_not(unit_rules_hits(r, "From: a@b.example\n\nx\n", "RP_RCVD"),
	              "no relay, no match");
	rules_free(r);
}

Test(rules_eval, envelope_sender_matching_the_from_address)
{
	rules_t *r = load("header ENV_HDR eval:check_for_matching_env_and_hdr_from()\n");
	cr_assert(unit_rules_hits(r,
	                          "Return-Path: <Jo@Example.com>\nFrom: Jo <jo@example.com>\n\nx\n",
	                          "ENV_HDR"),
	          "the same address, whatever its case");
	cr_assert_not(unit_rules_hits(
	    r, "Return-Path: <bounce@list.example>\nFrom: jo@example.com\n\nx\n", "ENV_HDR"));
	cr_assert(unit_rules_hits(r, "Subject: none of either\n\nx\n", "ENV_HDR"),
	          "two blanks match");
	rules_free(r);
}

/* ALL-EXTERNAL and ALL-TRUSTED split the header block at the trust boundary. */
Test(rules_eval, all_external_and_all_trusted_split_the_header_at_the_boundary)
{
	rules_t *r =
	    load("header RELAYED_EXT ALL-EXTERNAL =~ /(?:^|\\n)Received:\\s.+\\nReceived:\\s/s\n"
	         "header EXT_HAS_TOP ALL-EXTERNAL =~ /by top\\.example\\.org/\n"
	         "header EXT_HAS_SUBJ ALL-EXTERNAL =~ /^Subject: x$/m\n"
	         "header TRUSTED_HAS_BOUNDARY ALL-TRUSTED =~ /from edge\\.example\\.net/\n"
	         "header TRUSTED_HAS_OUTER ALL-TRUSTED =~ /from outer\\.example\\.com/\n");
	/* top: a private hop (trusted); then the boundary field; then one more outside */
	const char *two = "Received: from inner (inner [10.0.0.2]) by top.example.org (Postfix)"
	                  " with ESMTP id A1; Mon, 2 Jan 2023 10:00:02 +0000\n"
	                  "Received: from edge.example.net (edge.example.net [198.51.100.7]) by"
	                  " inner (Postfix) with ESMTP id A2; Mon, 2 Jan 2023 10:00:01 +0000\n"
	                  "Received: from outer.example.com (outer.example.com [203.0.113.9]) by"
	                  " edge.example.net (Postfix) with ESMTP id A3; Mon, 2 Jan 2023\n"
	                  "Subject: x\n\nx\n";
	const char *one = "Received: from inner (inner [10.0.0.2]) by top.example.org (Postfix)"
	                  " with ESMTP id A1; Mon, 2 Jan 2023 10:00:02 +0000\n"
	                  "Received: from edge.example.net (edge.example.net [198.51.100.7]) by"
	                  " inner (Postfix) with ESMTP id A2; Mon, 2 Jan 2023 10:00:01 +0000\n"
	                  "Subject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, two, "RELAYED_EXT"), "two fields from the boundary down");
	cr_assert_not(unit_rules_hits(r, one, "RELAYED_EXT"), "the boundary field alone");
	cr_assert_not(unit_rules_hits(r, two, "EXT_HAS_TOP"),
	              "the trusted hop's field is not external");
	cr_assert(unit_rules_hits(r, two, "EXT_HAS_SUBJ"),
	          "fields below the boundary are external");
	cr_assert(unit_rules_hits(r, two, "TRUSTED_HAS_BOUNDARY"),
	          "the boundary field is on both sides");
	cr_assert_not(unit_rules_hits(r, two, "TRUSTED_HAS_OUTER"));
	rules_free(r);
}

/*
 * One Received field of each main MTA form and the relay SpamAssassin's
 * parser makes of it (NULL: none; 0 ignored on purpose, -1 unreadable),
 * which the rules written against it expect.
 */
static const struct {
	const char *field;
	int rc;
	const char *relay;
} received_forms[] = {
    /* sendmail: HELO, then rDNS and address */
    {"from mail1.example.com (host66.example.com [65.217.159.66] (may be forged)) by "
     "dogma.example.org (8.11.6/8.11.6) with ESMTP id h2F0c2x31856 for <jm@example.org>; Sat, 15 "
     "Mar 2003 00:38:03 GMT",
     1,
     "ip=65.217.159.66 rdns=host66.example.com helo=mail1.example.com by=dogma.example.org ident= "
     "envfrom= id=h2F0c2x31856 auth= no_rdns=0"},
    /* sendmail: an IDENT lookup before the rDNS */
    {"from ran-out.mx.example.com (IDENT:qmailr@one.example.com [64.81.84.115]) by "
     "dogma.example.org (8.11.6/8.11.6) with SMTP id h381Vvf19860 for <jm@example.org>; Tue, 8 Apr "
     "2003 02:31:57 +0100",
     1,
     "ip=64.81.84.115 rdns=one.example.com helo=ran-out.mx.example.com by=dogma.example.org "
     "ident=qmailr envfrom= id=h381Vvf19860 auth= no_rdns=0"},
    /* sendmail: looked up, found no rDNS */
    {"from mail.sxptt.example.cn ([218.0.185.24]) by dogma.example.org (8.11.6/8.11.6) with ESMTP "
     "id h2FH0Zx11330 for <webmaster@example.org>; Sat, 15 Mar 2003 17:00:41 GMT",
     1,
     "ip=218.0.185.24 rdns= helo=mail.sxptt.example.cn by=dogma.example.org ident= envfrom= "
     "id=h2FH0Zx11330 auth= no_rdns=1"},
    /* sendmail's command-line submission */
    {"(from mail@localhost) by int-mx1.example.org (8.11.6/8.11.6) id g7MBY7g11259 for "
     "list@example.org; Thu, 22 Aug 2002 07:34:07 -0400",
     0, NULL},
    /* Postfix: "unknown" is no rDNS, and Postfix always looks */
    {"from localhost (unknown [198.51.100.4]) by cabbage.example.org (Postfix) with ESMTP id "
     "A96E18BD97 for <jm@localhost>; Thu, 13 Mar 2003 15:23:15 -0500 (EST)",
     1,
     "ip=198.51.100.4 rdns= helo=localhost by=cabbage.example.org ident= envfrom= id=A96E18BD97 "
     "auth= no_rdns=1"},
    /* Postfix with SASL: authenticated */
    {"from laptop (dsl-1.example.net [203.0.113.5]) (Authenticated sender: jo) by smtp.example.org "
     "(Postfix) with ESMTPSA id 4F57189D for <x@example.org>; Thu, 22 Aug 2002 16:25:45 +0100 "
     "(IST)",
     1,
     "ip=203.0.113.5 rdns=dsl-1.example.net helo=laptop by=smtp.example.org ident= envfrom= "
     "id=4F57189D auth=ESMTPSA no_rdns=0"},
    /* Postfix's local pickup */
    {"by jlooney.example.ie (Postfix, from userid 500) id 4F57189D; Thu, 22 Aug 2002 16:25:45 "
     "+0100 (IST)",
     0, NULL},
    /* qmail without HELO: the HELO was the rDNS */
    {"from rly-xw01.mx.aol.com ([153.196.56.114]) by x.concentric.net with SMTP; 22 Aug 2002 "
     "11:46:29 -0000",
     1,
     "ip=153.196.56.114 rdns=rly-xw01.mx.aol.com helo=rly-xw01.mx.aol.com by=x.concentric.net "
     "ident= envfrom= id= auth= no_rdns=0"},
    /* qmail: "unknown" rDNS from tcpserver */
    {"from unknown (HELO feux01a-isp) (213.199.4.210) by totor.example.net with SMTP; 1 Nov 2003 "
     "07:05:19 -0000",
     1,
     "ip=213.199.4.210 rdns= helo=feux01a-isp by=totor.example.net ident= envfrom= id= auth= "
     "no_rdns=0"},
    /* qmail's QMQP: "unknown" is not a lookup */
    {"from unknown (66.218.66.217) by m3.grp.scd.yahoo.com with QMQP; 22 Aug 2002 11:46:29 -0000",
     1,
     "ip=66.218.66.217 rdns= helo=unknown by=m3.grp.scd.yahoo.com ident= envfrom= id= auth= "
     "no_rdns=0"},
    /* qmail's network marker */
    {"(qmail 11764 invoked from network); 22 Aug 2002 11:46:29 -0000", 0, NULL},
    /* exim without helo=: the HELO equalled the rDNS */
    {"from mail-gr-oh.networksonline.com ([65.163.204.6]) by usw-sf-list1.sourceforge.net with "
     "esmtp (Exim 3.31-VA-mm2 #1 (Debian)) id 17hskN-0008Ox-00 for <x@lists.sourceforge.net>; Thu, "
     "22 Aug 2002 07:15:39 -0700",
     1,
     "ip=65.163.204.6 rdns=mail-gr-oh.networksonline.com helo=mail-gr-oh.networksonline.com "
     "by=usw-sf-list1.sourceforge.net ident= envfrom= id=17hskN-0008Ox-00 auth= no_rdns=0"},
    /* exim with helo= */
    {"from dsl092-072-213.bos1.dsl.example.net ([66.92.72.213] helo=blazing.example.org) by "
     "sc8-sf-list1.sourceforge.net with esmtp (Cipher TLSv1:DES-CBC3-SHA:168) (Exim 3.31-VA-mm2 #1 "
     "(Debian)) id 18lyuU-0007TI-00 for <x@lists.sourceforge.net>; Thu, 20 Feb 2003 14:11:18 -0800",
     1,
     "ip=66.92.72.213 rdns=dsl092-072-213.bos1.dsl.example.net helo=blazing.example.org "
     "by=sc8-sf-list1.sourceforge.net ident= envfrom= id=18lyuU-0007TI-00 auth= no_rdns=0"},
    /* exim without rDNS, with ident */
    {"from [218.19.142.229] (helo=hotmail.com ident=yiuhyotp) by yzordderrex with smtp (Exim 3.35 "
     "#1 (Debian)) id 194BE5-0005Zh-00; Sat, 12 Apr 2003 03:58:53 +0100",
     1,
     "ip=218.19.142.229 rdns= helo=hotmail.com by=yzordderrex ident=yiuhyotp envfrom= "
     "id=194BE5-0005Zh-00 auth= no_rdns=0"},
    /* exim's local delivery */
    {"from andrew by trinity.example.net with local (Exim 4.12) id 18xeL6-000Dn1-00; Tue, 25 Mar "
     "2003 02:39:00 +0000",
     0, NULL},
    /* Exchange's SMTPSVC never looks up rDNS */
    {"from inet-vrs-05.redmond.corp.example.com ([157.54.6.157]) by "
     "INET-IMC-05.redmond.corp.example.com with Microsoft SMTPSVC(5.0.2195.6624); Thu, 6 Mar 2003 "
     "12:02:35 -0800",
     1,
     "ip=157.54.6.157 rdns= helo=inet-vrs-05.redmond.corp.example.com "
     "by=INET-IMC-05.redmond.corp.example.com ident= envfrom= id= auth= no_rdns=0"},
    /* Exchange's pickup directory */
    {"from mail pickup service by hotmail.com with Microsoft SMTPSVC; Thu, 22 Aug 2002 18:20:23 "
     "-0700",
     0, NULL},
    /* Exchange with an id that is not its version string */
    {"from EXC-DAG-02.global.example (198.51.100.152) by EXC-DAG-03.global.example "
     "(198.51.100.153) with Microsoft SMTP Server (version=TLS1_2, "
     "cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) id 15.1.1261.35; Mon, 29 Oct 2018 11:17:19 "
     "+0100",
     1,
     "ip=198.51.100.152 rdns=EXC-DAG-02.global.example helo=EXC-DAG-02.global.example "
     "by=EXC-DAG-03.global.example ident= envfrom= id=15.1.1261.35 auth= no_rdns=0"},
    /* CommuniGate Pro's account */
    {"from [203.0.113.104] (account nazgul HELO [192.168.1.104]) by somewhere.example.com "
     "(CommuniGate Pro SMTP 3.5.7) with ESMTP-TLS id 2088434; Fri, 07 Mar 2003 13:05:06 -0500",
     1,
     "ip=203.0.113.104 rdns= helo=!192.168.1.104! by=somewhere.example.com ident= envfrom= "
     "id=2088434 auth=Communigate no_rdns=0"},
    /* CommuniGate Pro's verified rDNS */
    {"from host.example.com ([192.0.2.1] verified) by mail.example.net (CommuniGate Pro SMTP "
     "5.1.13) with ESMTP id 9786656 for user@example.net; Thu, 27 Mar 2008 15:08:17 +0600",
     1,
     "ip=192.0.2.1 rdns=host.example.com helo=host.example.com by=mail.example.net ident= envfrom= "
     "id=9786656 auth= no_rdns=0"},
    /* Lotus Domino */
    {"from mailhub.example.com ([198.51.100.20]) by notes.example.com (Lotus Domino Release 5.0.8) "
     "with ESMTP id 2002082207153912:1234 ; Thu, 22 Aug 2002 07:15:39 -0400",
     1,
     "ip=198.51.100.20 rdns= helo=mailhub.example.com by=notes.example.com ident= envfrom= "
     "id=2002082207153912:1234 auth= no_rdns=0"},
    /* fetchmail's marker */
    {"from cabbage.example.org [127.0.0.1] by localhost with IMAP (fetchmail-5.9.0) for "
     "jm@localhost (single-drop); Thu, 13 Mar 2003 20:39:56 -0800 (PST)",
     0, NULL},
    /* Yahoo's NNFMP: no HELO */
    {"from [66.218.67.196] by n20.grp.scd.yahoo.com with NNFMP; 22 Aug 2002 11:46:30 -0000", 1,
     "ip=66.218.67.196 rdns= helo= by=n20.grp.scd.yahoo.com ident= envfrom= id= auth= no_rdns=0"},
    /* courier: an IPv4-mapped IPv6 address */
    {"from dhiggins ([::ffff:205.233.198.35]) (IDENT: nnzrjkx) by netc.example.net with esmtp; "
     "Wed, 07 Aug 2002 10:55:31 -0400",
     1,
     "ip=205.233.198.35 rdns= helo=dhiggins by=netc.example.net ident= envfrom= id= auth= "
     "no_rdns=1"},
    /* no address at all */
    {"from mail.example.com (HELO x) by mx.example.org; Mon, 2 Jan 2023 10:00:00 +0000", -1, NULL},
    /* no address in brackets */
    {"from relay.example.com (relay.example.com) by mx.example.org with ESMTP; Mon, 2 Jan 2023 "
     "10:00:00 +0000",
     -1, NULL},
    /* envelope sender */
    {"from jo.example.net (jo.example.net [192.0.2.8]) by mx.example.org (8.12.8/8.12.8) with "
     "ESMTP id h1ABC for <x@example.org> (envelope-from jo@example.net); Mon, 2 Jan 2023 10:00:00 "
     "+0000",
     1,
     "ip=192.0.2.8 rdns=jo.example.net helo=jo.example.net by=mx.example.org ident= "
     "envfrom=jo@example.net id=h1ABC auth= no_rdns=0"},
};

Test(rules_eval, received_forms_read_as_spamassassin_reads_them)
{
	for (size_t i = 0; i < sizeof(received_forms) / sizeof(received_forms[0]); i++) {
		char out[1024] = "";
		int rc = rules_relays_parse_one(received_forms[i].field, out, sizeof(out));
		cr_expect_eq(rc, received_forms[i].rc, "%s: %d, not %d", received_forms[i].field,
		             rc, received_forms[i].rc);
		if (received_forms[i].relay != NULL)
			cr_expect_str_eq(out, received_forms[i].relay, "%s",
			                 received_forms[i].field);
	}
}

/* Hostile fields: huge, with unbalanced brackets and runs the patterns could backtrack on. */
Test(rules_eval, received_huge_fields_are_read_in_bounded_time)
{
	size_t n = 1 << 20;
	char *f = malloc(n + 1);
	cr_assert_not_null(f);
	memcpy(f, "from ", 5);
	for (size_t i = 5; i < n; i++)
		f[i] = "([a1.:@ ]) by "[i % 14];
	f[n] = '\0';
	char out[1024];
	int rc = rules_relays_parse_one(f, out, sizeof(out));
	cr_assert(rc >= -1 && rc <= 1);
	free(f);
}

/* qmail-scanner logs the envelope sender of the handover in the field below its own. */
Test(rules_eval, qmail_scanner_hands_its_envelope_sender_to_the_next_relay)
{
	rules_t *r = load("header QMS X-Spam-Relays-Untrusted =~ /^\\[ ip=192\\.0\\.2\\.7 rdns=list"
	                  "\\.example\\.net helo=list\\.example\\.net by=mx\\.example\\.org ident= "
	                  "envfrom=list-bounce\\@example\\.net intl=0 /\n");
	const char *m =
	    "Received: from 192.0.2.7 by mx.example.org (envelope-from <list-bounce@example.net>,"
	    " uid 502) with qmail-scanner-1.24 (clamdscan: 0.80/594. Clear:RC:0(192.0.2.7):."
	    " Processed in 0.288806 secs); 06 Feb 2005 21:11:38 -0000\n"
	    "Received: from list.example.net (HELO list.example.net) (192.0.2.7) by mx.example.org"
	    " with SMTP; 06 Feb 2005 21:11:37 -0000\n"
	    "Subject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, m, "QMS"));
	rules_free(r);
}

/* A Received field no form reads stays out of the relays but is counted, and spoils ALL_TRUSTED. */
Test(rules_eval, unparseable_relays_are_counted)
{
	rules_t *r = load("header __UNPARSEABLE_RELAY_COUNT eval:check_relays_unparseable()\n"
	                  "meta UNPARSEABLE_RELAY (__UNPARSEABLE_RELAY_COUNT >= 1)\n"
	                  "header ALL_TRUSTED eval:check_all_trusted()\n"
	                  "header NO_RELAYS eval:check_no_relays()\n");
	const char *inner = "Received: from inner (inner [10.0.0.2]) by top.example.org (Postfix)"
	                    " with ESMTP id A1; Mon, 2 Jan 2023 10:00:02 +0000\n";
	const char *odd = "Received: from relay.example.com (relay.example.com) by inner with"
	                  " ESMTP; Mon, 2 Jan 2023 10:00:01 +0000\n";
	const char *local =
	    "Received: (qmail 11764 invoked from network); 2 Jan 2023 10:00:00 -0000\n";
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s%sSubject: x\n\nx\n", inner, odd);
	cr_assert(unit_rules_hits(r, buf, "UNPARSEABLE_RELAY"));
	cr_assert_not(unit_rules_hits(r, buf, "ALL_TRUSTED"), "an unreadable hop may be untrusted");
	snprintf(buf, sizeof(buf), "%s%sSubject: x\n\nx\n", inner, local);
	cr_assert_not(unit_rules_hits(r, buf, "UNPARSEABLE_RELAY"),
	              "ignored on purpose is not unreadable");
	cr_assert(unit_rules_hits(r, buf, "ALL_TRUSTED"));
	snprintf(buf, sizeof(buf), "%sSubject: x\n\nx\n", odd);
	cr_assert_not(unit_rules_hits(r, buf, "NO_RELAYS"));
	rules_free(r);
}

Test(rules_eval, uri_https_ip_and_https_http_mismatch)
{
	rules_t *r = load("body HTTPS_IP_MISMATCH eval:check_https_ip_mismatch()\n"
	                  "body HTTPS_HTTP_MISMATCH eval:check_https_http_mismatch('1','10')\n");
	const char *h = "Content-Type: text/html\nSubject: s\n\n";
	char msg[2048];
	snprintf(msg, sizeof(msg),
	         "%s<a href=\" http://192.0.2.7/login\">https://bank.example.com/</a>\n", h);
	cr_assert(unit_rules_hits(r, msg, "HTTPS_IP_MISMATCH"));
	cr_assert_not(unit_rules_hits(r, msg, "HTTPS_HTTP_MISMATCH"),
	              "an address is the other rule's");
	snprintf(msg, sizeof(msg), "%s<a href=\"http://192.0.2.7/\">https://192.0.2.7/</a>\n", h);
	cr_assert_not(unit_rules_hits(r, msg, "HTTPS_IP_MISMATCH"),
	              "the address shown is the address");
	snprintf(msg, sizeof(msg),
	         "%s<a href=\"http://bank.example.com/\">https://bank.example.com/</a>\n", h);
	cr_assert_not(unit_rules_hits(r, msg, "HTTPS_IP_MISMATCH"));
	cr_assert_not(unit_rules_hits(r, msg, "HTTPS_HTTP_MISMATCH"), "the same domain");
	snprintf(msg, sizeof(msg),
	         "%s<a href=\"http://www.evil.example.net/x\">Log in at "
	         "https://www.bank.example.com</a>\n",
	         h);
	cr_assert(unit_rules_hits(r, msg, "HTTPS_HTTP_MISMATCH"));
	snprintf(msg, sizeof(msg),
	         "%s<a href=\"http://login.bank.example.com/\">https://www.bank.example.com</a>\n",
	         h);
	cr_assert_not(unit_rules_hits(r, msg, "HTTPS_HTTP_MISMATCH"),
	              "registered domains are compared");
	/* ten distinct hrefs to domains: outside '1','10' */
	char *q = msg + snprintf(msg, sizeof(msg), "%s", h);
	for (int i = 0; i < 10; i++)
		q += snprintf(q, sizeof(msg) - (size_t)(q - msg),
		              "<a href=\"http://n%d.example.org/\">https://bank.example.com</a>\n",
		              i);
	cr_assert_not(unit_rules_hits(r, msg, "HTTPS_HTTP_MISMATCH"), "too many links");
	rules_free(r);
}

Test(rules_eval, uri_truncated_beyond_8192_bytes)
{
	rules_t *r = load("body URI_TRUNCATED eval:check_uri_truncated()\n");
	size_t n = 9000;
	char *msg = malloc(n + 256), *q = msg;
	q += sprintf(q, "Content-Type: text/html\nSubject: s\n\n<a href=\"http://example.com/");
	memset(q, 'a', n);
	strcpy(q + n, "\">x</a>\n");
	cr_assert(unit_rules_hits(r, msg, "URI_TRUNCATED"));
	q = msg + sprintf(msg, "Subject: s\n\nsee http://example.com/");
	memset(q, 'b', n);
	strcpy(q + n, " now\n");
	cr_assert(unit_rules_hits(r, msg, "URI_TRUNCATED"), "in text too");
	q[8000] = ' ';
	cr_assert_not(unit_rules_hits(r, msg, "URI_TRUNCATED"));
	free(msg);
	rules_free(r);
}

/* ---------------------------------------------------------------- MIMEEval */

Test(rules_eval, uppercase_share_of_the_body)
{
	rules_t *r = load("body UPPER_75 eval:check_for_uppercase('75', '100')\n"
	                  "body UPPER_25 eval:check_for_uppercase('25', '50')\n");
	char caps[600], text[600];
	strcpy(caps, "Subject: s\n\n");
	strcpy(text, "Subject: s\n\n");
	for (int i = 0; i < 20; i++) {
		strcat(caps, "FREE CASH NOW ");
		strcat(text, i % 3 ? "some words here " : "THREE CAPS NOW ");
	}
	strcat(caps, "\n");
	strcat(text, "\n");
	cr_assert(unit_rules_hits(r, caps, "UPPER_75"));
	cr_assert_not(unit_rules_hits(r, caps, "UPPER_25"));
	cr_assert(unit_rules_hits(r, text, "UPPER_25"), "a third in capitals");
	cr_assert_not(unit_rules_hits(r, "Subject: s\n\nFREE CASH NOW\n", "UPPER_75"),
	              "too short to say");
	char koi[700] = "Subject: s\nContent-Type: text/plain; charset=koi8-r\n\n";
	strcat(koi, caps + strlen("Subject: s\n\n"));
	cr_assert_not(unit_rules_hits(r, koi, "UPPER_75"), "a charset that reads as capitals");
	rules_free(r);
}

Test(rules_eval, mime_parts_encodings_and_html_only)
{
	rules_t *r = load("rawbody __MIME_BASE64 eval:check_for_mime('mime_base64_count')\n"
	                  "rawbody __MIME_QP eval:check_for_mime('mime_qp_count')\n"
	                  "body __MIME_ATT eval:check_for_mime('mime_attachment')\n"
	                  "body MIME_HTML_ONLY eval:check_for_mime_html_only()\n"
	                  "body __MIME_HTML eval:check_for_mime_html()\n"
	                  "meta B64 __MIME_BASE64\nmeta QP __MIME_QP\nmeta ATT __MIME_ATT\n"
	                  "meta HTML __MIME_HTML\n");
	const char *html = "Content-Type: text/html\nSubject: x\n\n<p>hi</p>\n";
	const char *alt = "Content-Type: multipart/alternative; boundary=b\nSubject: x\n\n"
	                  "--b\nContent-Type: text/plain\nContent-Transfer-Encoding: "
	                  "quoted-printable\n\nh=69 there\n"
	                  "--b\nContent-Type: text/html\n\n<p>hi</p>\n--b--\n";
	const char *att = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\n"
	                  "--b\nContent-Type: text/plain\n\nsee file\n"
	                  "--b\nContent-Type: application/octet-stream\n"
	                  "Content-Disposition: attachment; filename=a.bin\n"
	                  "Content-Transfer-Encoding: base64\n\naGVsbG8=\n--b--\n";
	cr_assert(unit_rules_hits(r, html, "MIME_HTML_ONLY"));
	cr_assert(unit_rules_hits(r, html, "HTML"));
	cr_assert_not(unit_rules_hits(r, alt, "MIME_HTML_ONLY"), "a text part beside it");
	cr_assert(unit_rules_hits(r, alt, "HTML"));
	cr_assert(unit_rules_hits(r, alt, "QP"));
	cr_assert_not(unit_rules_hits(r, alt, "B64"));
	cr_assert(unit_rules_hits(r, att, "B64"));
	cr_assert(unit_rules_hits(r, att, "ATT"));
	cr_assert_not(unit_rules_hits(r, alt, "ATT"));
	rules_free(r);
}

/* ---------------------------------------------------------------- loading */

Test(rules_eval, unimplemented_evals_warn_with_their_reason_and_bad_arguments_fail)
{
	diag_t *d = diag_new();
	rules_t *r =
	    rules_load_text("t.cf",
	                    "header R eval:check_razor2()\n"
	                    "header S eval:check_arc_valid()\n"
	                    "body M eval:check_msg_parse_flags('missing_head_body_separator')\n"
	                    "header OK eval:subject_is_all_caps()\n",
	                    NULL, d);
	cr_assert_not_null(r);
	cr_assert(unit_diag_has(d, "t.cf:1: warning: skipped eval test check_razor2 (Razor"));
	cr_assert(unit_diag_has(d, "t.cf:2: warning: skipped eval test check_arc_valid (ARC"));
	cr_assert(unit_diag_has(d, "t.cf:3: warning: skipped eval test "
	                           "check_msg_parse_flags(missing_head_body_separator)"));
	cr_assert(rules_runs(r, (size_t)rules_find(r, "OK")));
	cr_assert_eq(diag_warnings(d), 3, "one warning per reason");
	cr_assert_not(rules_runs(r, (size_t)rules_find(r, "R")));
	rules_free(r);
	diag_free(d);

	d = diag_new();
	r = rules_load_text("t.cf", "header D eval:check_for_shifted_date('x', '6')\n", NULL, d);
	cr_assert_null(r);
	cr_assert(unit_diag_has(
	    d, "t.cf:1: header rule D: eval:check_for_shifted_date: expected numbers"));
	diag_free(d);
	d = diag_new();
	r = rules_load_text("t.cf", "header D eval:check_for_shifted_date('3')\n", NULL, d);
	cr_assert_null(r, "too few arguments");
	cr_assert(unit_diag_has(d, "bad arguments for eval:check_for_shifted_date"));
	diag_free(d);
}

Test(rules_eval, skipped_evals_are_listed_once_per_reason)
{
	diag_t *d = diag_new();
	rules_t *r = rules_load_text("t.cf",
	                             "header A eval:check_hashbl_emails('x.example')\n"
	                             "header B eval:check_hashbl_uris('x.example', 'sha1')\n"
	                             "header C eval:check_hashbl_emails('y.example')\n"
	                             "header D eval:check_rbl_from_host('z', 'hbl.example.')\n",
	                             NULL, d);
	cr_assert_not_null(r);
	cr_assert_eq(diag_warnings(d), 1);
	cr_assert(unit_diag_has(d, "t.cf:1: warning: skipped 2 eval tests (HashBL"));
	cr_assert(unit_diag_has(d, "check_hashbl_emails, check_hashbl_uris"));
	cr_assert(rules_runs(r, (size_t)rules_find(r, "D")), "check_rbl_from_host runs");
	rules_free(r);
	diag_free(d);
}

/* check_hashbl_bodyre loads in all its forms; malformed lines fail at file:line. */
Test(rules_eval, hashbl_bodyre_loads_and_checks_its_arguments)
{
	diag_t *d = diag_new();
	rules_t *r = rules_load_text(
	    "t.cf",
	    "body A eval:check_hashbl_bodyre('bl.example', 'raw/max=10/shuffle', "
	    "'\\b(\\d{6})\\b')\n"
	    "rawbody B eval:check_hashbl_bodyre('bl.example/TXT', 'sha256', '/(x+)/i', '^127\\.')\n"
	    "body C eval:check_hashbl_bodyre('bl.example', 'sha1', '(x+)')\n"
	    "body D eval:check_hashbl_bodyre('bl.example', '', '(x+)')\n"
	    "body E eval:check_hashbl_bodyre('bl.example', 'md5/max=3', '(x+)')\n",
	    NULL, d);
	cr_assert_not_null(r);
	cr_assert(rules_runs(r, (size_t)rules_find(r, "A")), "raw runs");
	cr_assert(rules_runs(r, (size_t)rules_find(r, "B")), "sha256 runs");
	cr_assert(rules_runs(r, (size_t)rules_find(r, "C")), "sha1 runs");
	cr_assert(rules_runs(r, (size_t)rules_find(r, "D")), "the default, sha1, runs");
	cr_assert(rules_runs(r, (size_t)rules_find(r, "E")), "md5 runs");
	cr_assert_eq(diag_warnings(d), 0);
	rules_free(r);
	diag_free(d);

	static const struct {
		const char *line, *err;
	} bad[] = {
	    {"body B eval:check_hashbl_bodyre('', 'raw', '(x)')\n", "the list must be a zone name"},
	    {"body B eval:check_hashbl_bodyre('bl.example', 'raw', 'x+')\n", "needs a group"},
	    {"body B eval:check_hashbl_bodyre('bl.example', 'raw', '(x')\n",
	     "invalid body regular expression"},
	    {"header B eval:check_hashbl_bodyre('bl.example', 'raw', '(x)')\n",
	     "must be a body or rawbody rule"},
	    {"body B eval:check_hashbl_bodyre('bl.example', 'raw', '(x)', '^(')\n",
	     "invalid subtest regular expression"},
	    {"hashbl_ignore\n", "expected one or more values or digests"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		d = diag_new();
		r = rules_load_text("t.cf", bad[i].line, NULL, d);
		cr_assert_null(r, "%s", bad[i].line);
		cr_assert(unit_diag_has(d, "t.cf:1:"), "%s", bad[i].line);
		cr_assert(unit_diag_has(d, bad[i].err), "%s: %s", bad[i].line, bad[i].err);
		diag_free(d);
	}
}

/* DNSEval's last forms load and run; check_rbl_accreditor takes its four arguments. */
Test(rules_eval, dnseval_ns_from_and_accreditor_load)
{
	diag_t *d = diag_new();
	rules_t *r = rules_load_text(
	    "t.cf",
	    "header A eval:check_rbl_ns_from('x', 'nsbl.example.', '127.0.0.2')\n"
	    "header B eval:check_rbl_accreditor('y-lastexternal', 'bl.example.', '', 'vouch')\n"
	    "header C eval:check_dns_sender()\n",
	    NULL, d);
	cr_assert_not_null(r);
	cr_assert_eq(diag_warnings(d), 0);
	for (const char *const *n = (const char *const[]){"A", "B", "C", NULL}; *n; n++)
		cr_assert(rules_runs(r, (size_t)rules_find(r, *n)), "%s runs", *n);
	rules_free(r);
	diag_free(d);
	d = diag_new();
	r = rules_load_text("t.cf", "header B eval:check_rbl_accreditor('y', 'bl.example.')\n",
	                    NULL, d);
	cr_assert_null(r, "the accreditor is required");
	cr_assert(unit_diag_has(d, "t.cf:1:"));
	diag_free(d);
}

/* check_rbl, check_rbl_txt and check_rbl_sub load and run; their subtests are checked at load. */
Test(rules_eval, dnseval_rules_load_and_check_their_subtests)
{
	diag_t *d = diag_new();
	rules_t *r =
	    rules_load_text("t.cf",
	                    "header A eval:check_rbl('zen', 'zen.example.')\n"
	                    "header B eval:check_rbl_sub('zen', '127.0.0.2')\n"
	                    "header C eval:check_rbl('zen-lastexternal', 'zen.example', "
	                    "'^127\\.0\\.0\\.1[01]$')\n"
	                    "header E eval:check_rbl_txt('sc', 'bl.example.', '(?i:spam)')\n"
	                    "header F eval:check_rbl_sub('zen', '12')\n"
	                    "header G eval:check_rbl_sub('zen', 'sb:1.2.3.4')\n",
	                    NULL, d);
	cr_assert_not_null(r);
	for (const char *const *n = (const char *const[]){"A", "B", "C", "E", "F", NULL}; *n; n++)
		cr_assert(rules_runs(r, (size_t)rules_find(r, *n)), "%s runs", *n);
	cr_assert_not(rules_runs(r, (size_t)rules_find(r, "G")), "sb: subtests are skipped");
	cr_assert(unit_diag_has(d, "sb: form"));
	rules_free(r);
	diag_free(d);

	d = diag_new();
	r = rules_load_text("t.cf", "header A eval:check_rbl_sub('zen', '^127\\.(')\n", NULL, d);
	cr_assert_null(r, "a subtest that is no regular expression is an error");
	cr_assert(unit_diag_has(d, "t.cf:1:"));
	cr_assert(unit_diag_has(d, "invalid subtest regular expression"));
	diag_free(d);

	d = diag_new();
	r = rules_load_text("t.cf", "header A eval:check_rbl('zen')\n", NULL, d);
	cr_assert_null(r, "check_rbl without a zone");
	cr_assert(unit_diag_has(d, "bad arguments for eval:check_rbl"));
	diag_free(d);
}

/* DNSEval's name forms load, rbl_headers with them; their zones and subtests are checked. */
Test(rules_eval, dnseval_name_forms_load)
{
	diag_t *d = diag_new();
	rules_t *r = rules_load_text(
	    "t.cf",
	    "rbl_headers EnvelopeFrom,Reply-To\n"
	    "header A eval:check_rbl_from_host('h', 'hbl.example.')\n"
	    "header B eval:check_rbl_from_domain('h', 'hbl.example.', '127.0.0.2')\n"
	    "header C eval:check_rbl_envfrom('h', 'hbl.example', '^127\\.0\\.0\\.[23]$')\n"
	    "header D eval:check_rbl_headers('h', 'hbl.example.', '127.0.0.2', 'X-Source-IP')\n"
	    "header E eval:check_rbl_rcvd('h', 'hbl.example.')\n"
	    "if can(Mail::SpamAssassin::Plugin::DNSEval::has_tflags_ips_only)\n"
	    "tflags E ips_only\n"
	    "endif\n",
	    NULL, d);
	cr_assert_not_null(r);
	cr_assert_eq(diag_warnings(d), 0);
	for (const char *const *n = (const char *const[]){"A", "B", "C", "D", "E", NULL}; *n; n++)
		cr_assert(rules_runs(r, (size_t)rules_find(r, *n)), "%s runs", *n);
	rules_free(r);
	diag_free(d);

	static const struct {
		const char *line, *error;
	} bad[] = {
	    {"header A eval:check_rbl_envfrom('h', '')\n", "the zone must be a name"},
	    {"header A eval:check_rbl_headers('h', 'x.example', '^(')\n", "invalid subtest"},
	    {"header A eval:check_rbl_rcvd('h')\n", "bad arguments for eval:check_rbl_rcvd"},
	    {"rbl_headers Reply-To, X-Source-IP\n",
	     "t.cf:1: rbl_headers: expected FIELD[,FIELD...]"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		d = diag_new();
		r = rules_load_text("t.cf", bad[i].line, NULL, d);
		cr_assert_null(r, "%s", bad[i].line);
		cr_assert(unit_diag_has(d, "t.cf:1:"), "%s", bad[i].line);
		cr_assert(unit_diag_has(d, bad[i].error), "%s", bad[i].error);
		diag_free(d);
	}
}

/* URIDNSBL's lines: checked at load, named in file:line errors; check_uridnsbl runs. */
Test(rules_eval, uridnsbl_directives_load_and_are_checked)
{
	diag_t *d = diag_new();
	rules_t *r = rules_load_text("t.cf",
	                             "urirhssub U1 multi.uribl.example. A 2\n"
	                             "body U1 eval:check_uridnsbl('U1')\n"
	                             "urirhssub U2 dbl.example. A 127.0.1.2\n"
	                             "body U2 eval:check_uridnsbl('U2')\n"
	                             "urirhssub U3 dbl.example. A 127.0.1.20-127.0.1.39\n"
	                             "urirhssub U4 dbl.example. A 0x10/0x10\n"
	                             "urirhsbl U5 any.example. TXT\n"
	                             "uridnsbl_skip_domain example.com example.net\n"
	                             "clear_uridnsbl_skip_domain example.net\n"
	                             "uridnsbl_max_domains 5\n"
	                             "uridnsbl U6 ns.example. A\n"
	                             "uridnssub U7 zen.example. A 127.0.0.2\n"
	                             "body U7 eval:check_uridnsbl('U7')\n"
	                             "tflags U7 net a ns\n"
	                             "urinsrhssub U8 nsbl.example. A 127.0.0.2\n"
	                             "urifullnsrhsbl U9 nsbl.example. TXT\n"
	                             "dns_block_rule U7 .Zen.Example. other.example\n"
	                             "dns_block_time 60\n",
	                             NULL, d);
	cr_assert_not_null(r);
	cr_assert(rules_runs(r, (size_t)rules_find(r, "U1")));
	cr_assert(rules_runs(r, (size_t)rules_find(r, "U2")));
	cr_assert(rules_runs(r, (size_t)rules_find(r, "U7")));
	cr_assert_eq(diag_errors(d), 0);
	cr_assert_eq(diag_warnings(d), 0, "the name-server and address forms are read");
	rules_free(r);
	diag_free(d);

	static const struct {
		const char *line, *error;
	} bad[] = {
	    {"urirhssub U z.example. MX 2\n",
	     "t.cf:1: urirhssub: the lookup type must be A or TXT"},
	    {"urirhssub U z.example. A\n", "t.cf:1: urirhssub: expected NAME ZONE TYPE SUBTEST"},
	    {"urirhssub U z.example. A two\n", "t.cf:1: urirhssub: bad subtest"},
	    {"urirhsbl U z.example.\n", "t.cf:1: urirhsbl: expected NAME ZONE TYPE"},
	    {"uridnsbl_max_domains many\n", "t.cf:1: uridnsbl_max_domains: expected a number"},
	    {"uridnssub U z.example. A\n", "t.cf:1: uridnssub: expected NAME ZONE TYPE SUBTEST"},
	    {"uridnssub U z.example. A 127.0.0.x\n", "t.cf:1: uridnssub: bad subtest"},
	    {"urinsrhsbl U z.example. NS\n",
	     "t.cf:1: urinsrhsbl: the lookup type must be A or TXT"},
	    {"urifullnsrhssub U . A 2\n", "t.cf:1: urifullnsrhssub: the zone must be a name"},
	    {"dns_block_rule U\n", "t.cf:1: dns_block_rule: expected RULE DOMAIN"},
	    {"dns_block_rule U zen.example/x\n", "t.cf:1: dns_block_rule: bad domain"},
	    {"dns_block_time soon\n", "t.cf:1: dns_block_time: expected a number of seconds"},
	    {"dns_block_time -1\n", "t.cf:1: dns_block_time: expected a number of seconds"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		d = diag_new();
		r = rules_load_text("t.cf", bad[i].line, NULL, d);
		cr_assert_null(r, "%s", bad[i].line);
		cr_assert(unit_diag_has(d, bad[i].error), "%s", bad[i].error);
		diag_free(d);
	}
}

/* askdns lines become rules, rcode subtests and _DKIMDOMAIN_ included; tags Sift does not fill are
 * skipped. */
Test(rules_eval, askdns_lines_are_rules)
{
	diag_t *d = diag_new();
	rules_t *r =
	    rules_load_text("t.cf",
	                    "askdns A1 _AUTHORDOMAIN_.fresh.example. A /^127\\.2\\.0\\.2$/\n"
	                    "askdns A2 _SENDERDOMAIN_ TXT /^v=spf1 \\+all$/i\n"
	                    "askdns A3 _LASTEXTERNALHELO_\n"
	                    "askdns A4 _AUTHORDOMAIN_.x.example. A 127.0.0.1-127.0.0.9\n"
	                    "askdns A5 _DKIMDOMAIN_.dkimwl.example. A /^127\\./\n"
	                    "askdns A6 _SENDERDOMAIN_ A [NXDOMAIN]\n"
	                    "askdns A7 _SENDERDOMAIN_.rc.example. TXT [noerror, 3]\n"
	                    "askdns A8 _SENDERDOMAIN_._AUTHORDOMAIN_.pair.example. A\n"
	                    "askdns A9 _HEADER(Reply-To:addr)_.x.example. A\n"
	                    "askdns A10 _SENDERDOMAIN_.rc.example. A [FormErr, servfail,4,5]\n"
	                    "askdns A11 _SENDERDOMAIN_ A,MX,aaaa\n"
	                    "askdns A12 _SENDERDOMAIN_ ANY\n"
	                    "askdns A13 _SENDERDOMAIN_ A,SOA\n",
	                    NULL, d);
	cr_assert_not_null(r);
	for (const char *const *n =
	         (const char *const[]){"A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8", "A11", NULL};
	     *n; n++)
		cr_assert(rules_runs(r, (size_t)rules_find(r, *n)), "%s runs", *n);
	cr_assert_not(rules_runs(r, (size_t)rules_find(r, "A12")), "ANY is not asked");
	cr_assert_not(rules_runs(r, (size_t)rules_find(r, "A13")), "nor a type it does not read");
	cr_assert(unit_diag_has(d, "t.cf:12:"), "one warning for both, at the first");
	cr_assert(
	    unit_diag_has(d, "only A, AAAA, TXT, MX, PTR and NS questions are asked (not ANY)"));
	cr_assert_not(rules_runs(r, (size_t)rules_find(r, "A9")), "an unfilled tag is skipped");
	cr_assert(unit_diag_has(d, "t.cf:9:"));
	cr_assert(unit_diag_has(d, "a template tag this engine does not fill"));
	cr_assert_not(rules_runs(r, (size_t)rules_find(r, "A10")), "codes not seen: skipped");
	cr_assert(unit_diag_has(d, "t.cf:10:"));
	cr_assert(unit_diag_has(d, "only the response codes NOERROR and NXDOMAIN are seen"));
	rules_free(r);
	diag_free(d);

	static const char *const bad_rcodes[] = {
	    "askdns B _SENDERDOMAIN_ A [NXDOMAINS]\n", "askdns B _SENDERDOMAIN_ A [32]\n",
	    "askdns B _SENDERDOMAIN_ A []\n", "askdns B _SENDERDOMAIN_ A [NXDOMAIN\n"};
	for (size_t i = 0; i < sizeof(bad_rcodes) / sizeof(bad_rcodes[0]); i++) {
		d = diag_new();
		r = rules_load_text("t.cf", bad_rcodes[i], NULL, d);
		cr_assert_null(r, "%s", bad_rcodes[i]);
		cr_assert(unit_diag_has(d, "t.cf:1:"), "%s", bad_rcodes[i]);
		cr_assert(unit_diag_has(d, "a response-code subtest is a list of codes"), "%s",
		          bad_rcodes[i]);
		diag_free(d);
	}

	d = diag_new();
	r = rules_load_text("t.cf", "askdns B _SENDERDOMAIN_ A /^(/\n", NULL, d);
	cr_assert_null(r);
	cr_assert(unit_diag_has(d, "t.cf:1:"));
	cr_assert(unit_diag_has(d, "invalid subtest regular expression"));
	diag_free(d);
	d = diag_new();
	r = rules_load_text("t.cf", "askdns B\n", NULL, d);
	cr_assert_null(r);
	cr_assert(unit_diag_has(d, "t.cf:1: askdns: expected NAME TEMPLATE"));
	diag_free(d);
}

/* ---------------------------------------------------------------- score sets and tflags */

/* As in SpamAssassin, net and learn switch off eval tests only, not regex rules. */
static const char set_rules[] = "header A Subject =~ /x/\n"
                                "score A 1 2 3 4\n"
                                "header N eval:check_for_missing_to_header()\n"
                                "tflags N net\nscore N 1\n"
                                "header L eval:check_for_missing_to_header()\n"
                                "tflags L learn\nscore L 1\n"
                                "header R Subject =~ /x/\ntflags R net\nscore R 1\n";

static double score_in(int set, const char *name, bool *hit)
{
	rules_opts_t o;
	rules_opts_default(&o);
	o.score_set = set;
	rules_t *r = load_o(set_rules, &o);
	*hit = unit_rules_hits(r, "Subject: x\n\nx\n", name);
	double s = rules_score(r, (size_t)rules_find(r, name));
	rules_free(r);
	return s;
}

Test(rules_eval, the_score_set_picks_the_column_and_turns_off_net_and_learn_evals)
{
	bool hit;
	for (int set = 0; set < 4; set++) {
		cr_assert_float_eq(score_in(set, "A", &hit), set + 1.0, 1e-9);
		cr_assert(hit);
		score_in(set, "N", &hit);
		cr_assert_eq(hit, (set & 1) != 0, "net rule in set %d", set);
		score_in(set, "L", &hit);
		cr_assert_eq(hit, (set & 2) != 0, "learn rule in set %d", set);
		score_in(set, "R", &hit);
		cr_assert(hit, "a regex rule flagged net runs in set %d", set);
	}
}

static int set_from_conf(const char *text)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("sift.conf", text, d);
	cr_assert_not_null(c);
	rules_opts_t o;
	cr_assert_eq(rules_opts_read(c, &o, d), 0);
	conf_free(c);
	diag_free(d);
	return o.score_set;
}

Test(rules_eval, the_score_set_follows_what_is_configured)
{
	cr_assert_eq(set_from_conf(""), 2, "Bayes on by default, no DNS lists");
	cr_assert_eq(set_from_conf("bayes_enable = no\n"), 0);
	cr_assert_eq(set_from_conf("dnsbl_list = zen.spamhaus.org\n"), 3);
	cr_assert_eq(set_from_conf("bayes_enable = no\ndnsbl_list = zen.spamhaus.org\n"), 1);
	cr_assert_eq(set_from_conf("rules_score_set = 0\n"), 0, "an explicit set wins");
}

/* ---------------------------------------------------------------- HTMLEval */

Test(rules_eval, html_iframe_src_title_subject_ratio_and_charset_faraway)
{
	rules_t *r = load("body HTML_IFRAME_SRC eval:check_iframe_src()\n"
	                  "body __HTML_TITLE_SUBJ_DIFF eval:html_title_subject_ratio('3.5')\n"
	                  "body __HTML_CHARSET_FARAWAY eval:html_charset_faraway()\n"
	                  "meta TITLE __HTML_TITLE_SUBJ_DIFF\nmeta FAR __HTML_CHARSET_FARAWAY\n");
	const char *h = "Content-Type: text/html\nSubject: Hi\n\n";
	char msg[512];
	snprintf(msg, sizeof(msg), "%s<iframe src=\"http://example.com/x\"></iframe>\n", h);
	cr_assert(unit_rules_hits(r, msg, "HTML_IFRAME_SRC"));
	snprintf(msg, sizeof(msg), "%s<iframe src=\" \"></iframe><img src=\"a.gif\">\n", h);
	cr_assert_not(unit_rules_hits(r, msg, "HTML_IFRAME_SRC"), "an empty source loads nothing");
	/* "Hi\n" is 3 characters: a title of 11 is 3.67 times as long */
	snprintf(msg, sizeof(msg), "%s<title>Cheap meds!</title><p>x</p>\n", h);
	cr_assert(unit_rules_hits(r, msg, "TITLE"));
	snprintf(msg, sizeof(msg), "%s<title>Cheap med</title><p>x</p>\n", h);
	cr_assert_not(unit_rules_hits(r, msg, "TITLE"), "3 times as long");
	cr_assert_not(
	    unit_rules_hits(r, "Content-Type: text/html\n\n<title>Cheap meds!</title>\n", "TITLE"),
	    "no Subject");
	snprintf(msg, sizeof(msg),
	         "Content-Type: text/html; charset=koi8-r\nSubject: Hi\n\n<p>\xf0\xf2\xe9</p>\n");
	cr_assert_not(unit_rules_hits(r, msg, "FAR"), "ok_locales is all");
	rules_free(r);
}

Test(rules_eval, html_charset_faraway_reads_meta_charsets)
{
	rules_t *r = load("body __HTML_CHARSET_FARAWAY eval:html_charset_faraway()\n"
	                  "meta FAR __HTML_CHARSET_FARAWAY\nok_locales en\n");
	const char *h = "Content-Type: text/html\nSubject: Hi\n\n";
	char msg[512];
	snprintf(msg, sizeof(msg),
	         "%s<meta http-equiv=\"Content-Type\" content=\"text/html; charset=koi8-r\">x\n",
	         h);
	cr_assert(unit_rules_hits(r, msg, "FAR"), "koi8-r is not en's");
	snprintf(msg, sizeof(msg),
	         "%s<META HTTP-EQUIV=content-type CONTENT=\"text/html; Charset = 'big5'\">x\n", h);
	cr_assert(unit_rules_hits(r, msg, "FAR"),
	          "names and the charset key in any case, blanks, quotes");
	snprintf(
	    msg, sizeof(msg),
	    "%s<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\">x\n", h);
	cr_assert_not(unit_rules_hits(r, msg, "FAR"), "ISO 8859 is near for every locale");
	snprintf(msg, sizeof(msg),
	         "%s<meta http-equiv=\"Content-Type\" content=\"text/html; charset=koi8-r\">"
	         "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">"
	         "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=us-ascii\">x\n",
	         h);
	cr_assert_not(unit_rules_hits(r, msg, "FAR"), "one far of three");
	snprintf(msg, sizeof(msg), "%s<meta name=\"x\" content=\"charset=koi8-r\">x\n", h);
	cr_assert_not(unit_rules_hits(r, msg, "FAR"), "not a Content-Type meta");
	snprintf(msg, sizeof(msg),
	         "%s<meta http-equiv=\"Content-Type\" content=\"text/html; xcharset=koi8-r\">x\n",
	         h);
	cr_assert_not(unit_rules_hits(r, msg, "FAR"), "charset must start a word");
	rules_free(r);
}

Test(rules_eval, html_range_obfuscation_extra_closing_and_unknown_tags)
{
	rules_t *r =
	    load("body HTML_OBFUSCATE_90_100 eval:html_range('obfuscation_ratio','.9','1.0')\n"
	         "body HTML_OBFUSCATE_05_10 eval:html_range('obfuscation_ratio','.05','.1')\n"
	         "body HTML_OBFUSCATE_20_30 eval:html_range('obfuscation_ratio','.2','.3')\n"
	         "body HTML_EXTRA_CLOSE eval:html_range('closed_extra_ratio', '0.09', 'inf')\n"
	         "body HTML_BADTAG_90_100 eval:html_range('bad_tag_ratio','0.90','1.00')\n"
	         "body HTML_NONELEMENT_40_50 eval:html_range('non_element_ratio','0.40','0.50')\n");
	const char *h = "Content-Type: text/html\nSubject: s\n\n";
	char msg[1024];
	/* two words split by the two tags: 2 / 2 */
	snprintf(msg, sizeof(msg), "%sV<b>i</b>agra\n", h);
	cr_assert(unit_rules_hits(r, msg, "HTML_OBFUSCATE_90_100"));
	cr_assert_not(unit_rules_hits(r, msg, "HTML_EXTRA_CLOSE"));
	snprintf(msg, sizeof(msg), "%sV<br>i<br>agra\n", h);
	cr_assert_not(unit_rules_hits(r, msg, "HTML_OBFUSCATE_90_100"),
	              "a line break separates words");
	snprintf(msg, sizeof(msg), "%sV <b>i</b> agra, &amp;<i>x</i>\n", h);
	cr_assert_not(unit_rules_hits(r, msg, "HTML_OBFUSCATE_90_100"),
	              "spaces and punctuation separate");
	cr_assert_not(unit_rules_hits(r, msg, "HTML_OBFUSCATE_05_10"));
	snprintf(msg, sizeof(msg),
	         "Content-Type: text/html; charset=windows-1252\nSubject: s\n\n"
	         "\x93<u>Join</u>\x94 and \xe9<u>t\xe9</u>\n");
	/* only the accented word is split (1 / 4): the quotes are punctuation */
	cr_assert(unit_rules_hits(r, msg, "HTML_OBFUSCATE_20_30"),
	          "curly double quotes are plain ones to SpamAssassin, a letter is a letter");
	/* one split word among 14 tags: 1 / 14 */
	snprintf(msg, sizeof(msg),
	         "%s<html><body><p>one</p><p>two</p><p>th<b>ree</b></p><p>x</p></body></html>\n",
	         h);
	cr_assert(unit_rules_hits(r, msg, "HTML_OBFUSCATE_05_10"));
	cr_assert_not(unit_rules_hits(r, msg, "HTML_OBFUSCATE_90_100"));
	/* two closing tags with nothing open among three tags */
	snprintf(msg, sizeof(msg), "%s</b></i>text<p>\n", h);
	cr_assert(unit_rules_hits(r, msg, "HTML_EXTRA_CLOSE"));
	/* ten tags no HTML 4 element, one <p>: 10 / 11; two names of which one unknown */
	snprintf(msg, sizeof(msg),
	         "%s<p><foo>a<foo>b<foo>c<foo>d<foo>e<foo>f<foo>g<foo>h<foo>i<foo>j\n", h);
	cr_assert(unit_rules_hits(r, msg, "HTML_BADTAG_90_100"));
	cr_assert(unit_rules_hits(r, msg, "HTML_NONELEMENT_40_50"));
	snprintf(msg, sizeof(msg), "%s<foo>a<foo>b<foo>c\n", h);
	cr_assert_not(unit_rules_hits(r, msg, "HTML_BADTAG_90_100"),
	              "no element at all leaves the ratio undefined");
	snprintf(msg, sizeof(msg), "%s<o:p>a</o:p><p>b</p>\n", h);
	cr_assert_not(unit_rules_hits(r, msg, "HTML_NONELEMENT_40_50"),
	              "Office's namespace tags count");
	rules_free(r);
}

Test(rules_eval, html_tags_balance_length_and_image_only)
{
	rules_t *r = load("body __TAG_EXISTS_HTML eval:html_tag_exists('html')\n"
	                  "body __TAG_EXISTS_CENTER eval:html_tag_exists('center')\n"
	                  "body HTML_TAG_BALANCE_BODY eval:html_tag_balance('body', '!= 0')\n"
	                  "body HTML_IMAGE_ONLY_04 eval:html_image_only('0000','0400')\n"
	                  "body HTML_SHORT eval:html_eval('length', '< 384')\n"
	                  "body HTML_LEN_LONG eval:html_range('length', '384', 'inf')\n"
	                  "body HTML_MESSAGE eval:html_test('html')\n"
	                  "meta HTML_TAG __TAG_EXISTS_HTML\nmeta CENTER __TAG_EXISTS_CENTER\n");
	const char *img = "Content-Type: text/html\nSubject: x\n\n"
	                  "<html><body><img src=\"http://example.com/a.png\"></body></html>\n";
	const char *unbalanced = "Content-Type: text/html\nSubject: x\n\n"
	                         "<html><body><p>hello <!-- <center> --> there</p></html>\n";
	const char *plain = "Content-Type: text/plain\nSubject: x\n\n<html><center>\n";
	cr_assert(unit_rules_hits(r, img, "HTML_TAG"));
	cr_assert(unit_rules_hits(r, img, "HTML_IMAGE_ONLY_04"));
	cr_assert_not(unit_rules_hits(r, img, "HTML_TAG_BALANCE_BODY"));
	cr_assert(unit_rules_hits(r, img, "HTML_SHORT"));
	cr_assert_not(unit_rules_hits(r, img, "HTML_LEN_LONG"));
	cr_assert(unit_rules_hits(r, unbalanced, "HTML_TAG_BALANCE_BODY"));
	cr_assert_not(unit_rules_hits(r, unbalanced, "HTML_IMAGE_ONLY_04"), "no image");
	cr_assert_not(unit_rules_hits(r, unbalanced, "CENTER"),
	              "a tag in a comment does not count");
	cr_assert_not(unit_rules_hits(r, plain, "HTML_TAG"), "markup in text/plain is text");
	cr_assert(unit_rules_hits(r, img, "HTML_MESSAGE"));
	cr_assert_not(unit_rules_hits(r, plain, "HTML_MESSAGE"));
	rules_free(r);
}

/* ---------------------------------------------------------------- FreeMail */

static const char freemail_rules[] =
    "ifplugin Mail::SpamAssassin::Plugin::FreeMail\n"
    "freemail_domains gmail.com yahoo.* *.free.example\n"
    "freemail_welcomelist friend@gmail.com\n"
    "header FREEMAIL_FROM eval:check_freemail_from()\n"
    "header FREEMAIL_REPLYTO_END_DIGIT eval:check_freemail_header('Reply-To', '\\d@')\n"
    "header __freemail_hdr_replyto eval:check_freemail_header('Reply-To')\n"
    "header __freemail_replyto eval:check_freemail_replyto('replyto')\n"
    "meta FREEMAIL_REPLYTO __freemail_replyto\n"
    "meta FREEMAIL_FORGED_REPLYTO __freemail_hdr_replyto && !FREEMAIL_FROM\n"
    "endif\n";

Test(rules_eval, freemail_domains_wildcards_and_welcomelist)
{
	rules_t *r = load(freemail_rules);
	cr_assert(unit_rules_hits(r, "From: A <a@gmail.com>\n\nx\n", "FREEMAIL_FROM"));
	cr_assert(unit_rules_hits(r, "From: a@Yahoo.CO\n\nx\n", "FREEMAIL_FROM"),
	          "yahoo.* and case");
	cr_assert(unit_rules_hits(r, "From: a@mx.free.example\n\nx\n", "FREEMAIL_FROM"));
	cr_assert_not(unit_rules_hits(r, "From: a@a.b.free.example\n\nx\n", "FREEMAIL_FROM"),
	              "* does not cross a dot");
	cr_assert_not(unit_rules_hits(r, "From: a@example.com\n\nx\n", "FREEMAIL_FROM"));
	cr_assert_not(unit_rules_hits(r, "From: friend@gmail.com\n\nx\n", "FREEMAIL_FROM"),
	              "welcomelisted");
	cr_assert_not(unit_rules_hits(r, "From: support@gmail.com\n\nx\n", "FREEMAIL_FROM"),
	              "role addresses are not counted");
	rules_free(r);
}

Test(rules_eval, freemail_reply_to_tests)
{
	rules_t *r = load(freemail_rules);
	const char *forged = "From: boss@example.com\nReply-To: boss1977@gmail.com\n\nx\n";
	const char *two = "From: a@gmail.com\nReply-To: b@yahoo.com\n\nx\n";
	const char *same = "From: a@gmail.com\nReply-To: a@gmail.com\n\nx\n";
	const char *body = "From: a@example.com\nReply-To: a@gmail.com\n\n"
	                   "Please write to b@yahoo.com today.\n";
	cr_assert(unit_rules_hits(r, forged, "FREEMAIL_FORGED_REPLYTO"));
	cr_assert(unit_rules_hits(r, forged, "FREEMAIL_REPLYTO_END_DIGIT"));
	cr_assert_not(unit_rules_hits(r, two, "FREEMAIL_REPLYTO_END_DIGIT"));
	cr_assert(unit_rules_hits(r, two, "FREEMAIL_REPLYTO"),
	          "From and Reply-To different freemails");
	cr_assert_not(unit_rules_hits(r, same, "FREEMAIL_REPLYTO"));
	cr_assert(unit_rules_hits(r, body, "FREEMAIL_REPLYTO"), "Reply-To and the body disagree");
	cr_assert_not(unit_rules_hits(r,
	                              "From: a@example.com\nReply-To: a@gmail.com\n\n"
	                              "Please write to b@mx.free.example today.\n",
	                              "FREEMAIL_REPLYTO"),
	              "a body address counts only under a known top-level domain");
	rules_free(r);
}

Test(rules_eval, hotmail_received_and_from_domains)
{
	rules_t *r =
	    load("header FORGED_HOTMAIL_RCVD2 eval:check_for_no_hotmail_received_headers()\n"
	         "header __FORGED_HOTMAIL_RCVD "
	         "eval:check_for_forged_hotmail_received_headers()\n"
	         "meta FORGED_HOTMAIL __FORGED_HOTMAIL_RCVD\n"
	         "header HEADER_FROM_DIFFERENT_DOMAINS eval:check_equal_from_domains()\n");
	const char *nohm = "Received: from x.example (x.example [192.0.2.1]) by mx.example.org; "
	                   "Mon, 2 Jan 2023 10:00:00 +0000\nFrom: a@hotmail.com\n\nx\n";
	const char *real = "Received: from hotmail.com (f1.law8.hotmail.com [192.0.2.1]) by "
	                   "mx.example.org; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                   "X-Originating-IP: [198.51.100.1]\nFrom: a@hotmail.com\n\nx\n";
	const char *helo =
	    "Received: from mx.hotmail.com (x.example [192.0.2.1]) by "
	    "mx.example.org; Mon, 2 Jan 2023 10:00:00 +0000\nFrom: a@example.com\n\nx\n";
	cr_assert(unit_rules_hits(r, nohm, "FORGED_HOTMAIL_RCVD2"));
	cr_assert_not(unit_rules_hits(r, real, "FORGED_HOTMAIL_RCVD2"));
	cr_assert_not(unit_rules_hits(r, real, "FORGED_HOTMAIL"));
	cr_assert(unit_rules_hits(r, helo, "FORGED_HOTMAIL"));
	cr_assert_not(unit_rules_hits(r, helo, "FORGED_HOTMAIL_RCVD2"));
	cr_assert(unit_rules_hits(
	    r, "Return-Path: <b@mail.other.example>\nFrom: a@news.example.com\n\nx\n",
	    "HEADER_FROM_DIFFERENT_DOMAINS"));
	cr_assert_not(
	    unit_rules_hits(r, "Return-Path: <b@bounce.example.com>\nFrom: a@example.com\n\nx\n",
	                    "HEADER_FROM_DIFFERENT_DOMAINS"),
	    "same last two labels");
	cr_assert_not(
	    unit_rules_hits(r, "From: a@example.com\n\nx\n", "HEADER_FROM_DIFFERENT_DOMAINS"),
	    "no envelope sender known");
	rules_free(r);
}

Test(rules_eval, the_envelope_sender_comes_from_the_received_chain)
{
	rules_t *r =
	    load("header ENVFROM X-Spam-Relays-Untrusted =~ /envfrom=list\\@bounce\\.example /\n"
	         "header HEADER_FROM_DIFFERENT_DOMAINS eval:check_equal_from_domains()\n");
	const char *m = "Received: from mx.bounce.example (mx.bounce.example [192.0.2.7])\n"
	                " (envelope-from <list@bounce.example>)\n"
	                " by mx.example.org with ESMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                "From: a@example.com\n\nx\n";
	cr_assert(unit_rules_hits(r, m, "ENVFROM"));
	cr_assert(unit_rules_hits(r, m, "HEADER_FROM_DIFFERENT_DOMAINS"));
	rules_free(r);
}

Test(rules_eval, html_font_sizes_faces_and_image_ratio)
{
	rules_t *r = load("body HTML_FONT_SIZE_LARGE eval:html_range('max_size', '5', '6')\n"
	                  "body HTML_FONT_SIZE_HUGE eval:html_range('max_size', '6', 'inf')\n"
	                  "body HTML_FONT_FACE_BAD eval:html_test('font_face_bad')\n"
	                  "body HTML_IMAGE_RATIO_02 eval:html_image_ratio('0.000','0.002')\n"
	                  "body HTML_EMBEDS eval:html_test('embeds')\n");
	const char *big = "Content-Type: text/html\n\n<font size=\"+3\">BUY</font>\n";
	const char *huge =
	    "Content-Type: text/html\n\n<font size=7 face=\"Arial, Helvetica\">x</font>\n";
	const char *face = "Content-Type: text/html\n\n<font face=\"=?x#1\">hello</font>\n";
	const char *img = "Content-Type: text/html\n\n<img src=a.png width=600 height=400>hi\n";
	const char *text = "Content-Type: text/html\n\n<p>a normal letter</p><img src=a.png "
	                   "width=10 height=10><embed src=x.swf>\n";
	cr_assert(unit_rules_hits(r, big, "HTML_FONT_SIZE_LARGE"), "basefont 3 + 3");
	cr_assert_not(unit_rules_hits(r, big, "HTML_FONT_SIZE_HUGE"));
	cr_assert(unit_rules_hits(r, huge, "HTML_FONT_SIZE_HUGE"));
	cr_assert_not(unit_rules_hits(r, huge, "HTML_FONT_FACE_BAD"));
	cr_assert(unit_rules_hits(r, face, "HTML_FONT_FACE_BAD"));
	cr_assert(unit_rules_hits(r, img, "HTML_IMAGE_RATIO_02"),
	          "2 characters over 240000 pixels");
	cr_assert_not(unit_rules_hits(r, text, "HTML_IMAGE_RATIO_02"));
	cr_assert(unit_rules_hits(r, text, "HTML_EMBEDS"));
	cr_assert_not(unit_rules_hits(r, img, "HTML_EMBEDS"));
	rules_free(r);
}

Test(rules_eval, html_low_contrast_and_invalid_colours)
{
	rules_t *r = load("body HTML_FONT_LOW_CONTRAST eval:html_test('font_low_contrast')\n"
	                  "body T_FONT_INVALID eval:html_test('font_invalid_color')\n");
	const char *white = "Content-Type: text/html\n\n<p>hi</p><font color=\"#fffffe\">hidden "
	                    "words</font>\n";
	const char *css = "Content-Type: text/html\n\n<div style=\"background-color: navy\">"
	                  "<span style=\"color: rgb(0, 0, 130)\">hidden</span></div>\n";
	const char *fine = "Content-Type: text/html\n\n<div style=\"background: #ffffff\">"
	                   "<font color=red>red</font> <font color=\"#ffffff\"> </font></div>\n";
	const char *closed = "Content-Type: text/html\n\n<font color=white></font>visible\n";
	const char *invalid = "Content-Type: text/html\n\n<font color=\"ff0000\">x</font>\n";
	cr_assert(unit_rules_hits(r, white, "HTML_FONT_LOW_CONTRAST"));
	cr_assert(unit_rules_hits(r, css, "HTML_FONT_LOW_CONTRAST"));
	cr_assert_not(unit_rules_hits(r, fine, "HTML_FONT_LOW_CONTRAST"),
	              "white space in white is no text");
	cr_assert_not(unit_rules_hits(r, closed, "HTML_FONT_LOW_CONTRAST"),
	              "the colour ends with its tag");
	cr_assert(unit_rules_hits(r, invalid, "T_FONT_INVALID"), "a hex colour needs its #");
	cr_assert_not(unit_rules_hits(r, invalid, "HTML_FONT_LOW_CONTRAST"));
	cr_assert_not(unit_rules_hits(r, fine, "T_FONT_INVALID"));
	rules_free(r);
}

Test(rules_eval, mime_fake_ascii_and_needless_quoted_printable)
{
	rules_t *r =
	    load("body PP_MIME_FAKE_ASCII_TEXT eval:check_for_ascii_text_illegal()\n"
	         "rawbody __MIME_QP eval:check_for_mime('mime_qp_count')\nmeta QP __MIME_QP\n");
	const char *fake = "Content-Type: text/plain; charset=us-ascii\n\ncaf\xe9 cr\xe8me\n";
	const char *latin = "Content-Type: text/plain; charset=iso-8859-1\n\ncaf\xe9 cr\xe8me\n";
	const char *needless = "Content-Type: text/plain\nContent-Transfer-Encoding: "
	                       "quoted-printable\n\n=48=65llo=20world\n";
	const char *needed = "Content-Type: text/plain; charset=iso-8859-1\n"
	                     "Content-Transfer-Encoding: quoted-printable\n\ncaf=E9 au lait=20\n";
	cr_assert(unit_rules_hits(r, fake, "PP_MIME_FAKE_ASCII_TEXT"));
	cr_assert_not(unit_rules_hits(r, latin, "PP_MIME_FAKE_ASCII_TEXT"));
	/* raw lines count: a carriage return of its own, 8-bit bytes in a QP part */
	cr_assert(
	    unit_rules_hits(r, "Subject: s\n\nHELLO\r\r\r\nthere\n", "PP_MIME_FAKE_ASCII_TEXT"));
	cr_assert_not(
	    unit_rules_hits(r, "Subject: s\n\nHELLO\r\nthere\r\n", "PP_MIME_FAKE_ASCII_TEXT"),
	    "line ends are no illegal carriage returns");
	cr_assert(unit_rules_hits(
	    r, "Content-Transfer-Encoding: quoted-printable\n\ncaf\xe9 =3D cr\xe8me\n",
	    "PP_MIME_FAKE_ASCII_TEXT"));
	cr_assert_not(unit_rules_hits(r, needless, "PP_MIME_FAKE_ASCII_TEXT"), "escapes are ASCII");
	cr_assert(unit_rules_hits(r, needless, "QP"));
	cr_assert_not(unit_rules_hits(r, needed, "QP"), "=E9 is needed, a trailing =20 too");
	rules_free(r);
}

/* tmpl with its first "@" replaced by a and its second by b, in buf. */
static const char *fill(char *buf, size_t cap, const char *tmpl, const char *a, const char *b)
{
	size_t n = 0;
	const char *args[2] = {a, b};
	int k = 0;
	for (const char *t = tmpl; *t && n + 1 < cap; t++) {
		if (*t == '@' && k < 2) {
			for (const char *v = args[k++]; *v && n + 1 < cap; v++)
				buf[n++] = *v;
		} else {
			buf[n++] = *t;
		}
	}
	buf[n] = '\0';
	return buf;
}

Test(rules_eval, mime_qp_escapes_count_in_quoted_printable_parts_only)
{
	rules_t *r =
	    load("rawbody __MIME_QP eval:check_for_mime('mime_qp_count')\nmeta QP __MIME_QP\n");
	/* "=41" in the 7bit part is text, not an escape; the QP part needs its =E9 */
	const char *mixed = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\n"
	                    "--b\nContent-Transfer-Encoding: quoted-printable\n\ncaf=E9\n"
	                    "--b\nContent-Transfer-Encoding: 7bit\n\nkey=41 value=20x\n--b--\n";
	cr_assert_not(unit_rules_hits(r, mixed, "QP"));
	const char *needless = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\n"
	                       "--b\nContent-Transfer-Encoding: 7bit\n\nplain\n"
	                       "--b\nContent-Transfer-Encoding: quoted-printable\n\n=48i\n--b--\n";
	cr_assert(unit_rules_hits(r, needless, "QP"));
	rules_free(r);
}

Test(rules_eval, mime_qp_long_line_counts_raw_lines_over_78_characters)
{
	rules_t *r = load("rawbody MIME_QP_LONG_LINE eval:check_for_mime('mime_qp_long_line')\n");
	char line78[79], line79[80], msg[512];
	memset(line78, 'a', 78);
	line78[78] = '\0';
	memset(line79, 'a', 79);
	line79[79] = '\0';
	const char *fmt = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\n"
	                  "--b\nContent-Transfer-Encoding: @\n\n@\nend\n--b--\n";
	fill(msg, sizeof(msg), fmt, "quoted-printable", line79);
	cr_assert(unit_rules_hits(r, msg, "MIME_QP_LONG_LINE"));
	fill(msg, sizeof(msg), fmt, "quoted-printable", line78);
	cr_assert_not(unit_rules_hits(r, msg, "MIME_QP_LONG_LINE"),
	              "78 characters and the break are allowed");
	fill(msg, sizeof(msg), fmt, "7bit", line79);
	cr_assert_not(unit_rules_hits(r, msg, "MIME_QP_LONG_LINE"), "not quoted-printable");
	char spam[128];
	snprintf(spam, sizeof(spam), "SPAM: %s", line78);
	fill(msg, sizeof(msg), fmt, "quoted-printable", spam);
	cr_assert_not(unit_rules_hits(r, msg, "MIME_QP_LONG_LINE"),
	              "SpamAssassin's own report lines");
	rules_free(r);
}

Test(rules_eval, mime_parse_flags_epilogue_missing_headers_and_separator)
{
	rules_t *r =
	    load("body T_TVD_MIME_EPI eval:check_msg_parse_flags('mime_epilogue_exists')\n"
	         "body T_TVD_MIME_NO_HEADERS eval:check_msg_parse_flags('missing_mime_headers')\n"
	         "body MISSING_MIME_HB_SEP "
	         "eval:check_msg_parse_flags('missing_mime_head_body_separator')\n");
	const char *clean = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\npreamble\n"
	                    "--b\nContent-Type: text/plain\n\none\n"
	                    "--b\nContent-Type: text/plain\n\ntwo\n--b--\n\n.\n \n";
	cr_assert_not(unit_rules_hits(r, clean, "T_TVD_MIME_EPI"),
	              "blanks and dots are no epilogue");
	cr_assert_not(unit_rules_hits(r, clean, "T_TVD_MIME_NO_HEADERS"));
	cr_assert_not(unit_rules_hits(r, clean, "MISSING_MIME_HB_SEP"));
	const char *epi = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\n"
	                  "--b\nContent-Type: text/plain\n\none\n--b--\nvisit example.com\n";
	cr_assert(unit_rules_hits(r, epi, "T_TVD_MIME_EPI"));
	/* an inner multipart's epilogue ends at its parent's next delimiter */
	const char *inner = "Content-Type: multipart/mixed; boundary=o\nSubject: x\n\n"
	                    "--o\nContent-Type: multipart/alternative; boundary=i\n\n"
	                    "--i\nContent-Type: text/plain\n\none\n--i--\ntrailer\n"
	                    "--o--\n";
	cr_assert(unit_rules_hits(r, inner, "T_TVD_MIME_EPI"));
	const char *noclose = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\n"
	                      "--b\nContent-Type: text/plain\n\none\nmore text\n";
	cr_assert_not(unit_rules_hits(r, noclose, "T_TVD_MIME_EPI"),
	              "no close delimiter, no epilogue");
	const char *nohdr = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\n"
	                    "--b\nContent-Type: text/plain\n\none\n--b\n\ntwo\n--b--\n";
	cr_assert(unit_rules_hits(r, nohdr, "T_TVD_MIME_NO_HEADERS"));
	cr_assert_not(unit_rules_hits(r, nohdr, "MISSING_MIME_HB_SEP"),
	              "an empty header block is separated");
	const char *nosep = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\n"
	                    "--b\nContent-Type: text/plain\nhello there\n--b--\n";
	cr_assert(unit_rules_hits(r, nosep, "MISSING_MIME_HB_SEP"));
	cr_assert_not(unit_rules_hits(r, nosep, "T_TVD_MIME_NO_HEADERS"));
	const char *first = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\n"
	                    "--b\nhello\n--b--\n";
	cr_assert(unit_rules_hits(r, first, "T_TVD_MIME_NO_HEADERS"), "the first delimiter too");
	cr_assert(unit_rules_hits(r, first, "MISSING_MIME_HB_SEP"));
	cr_assert_not(
	    unit_rules_hits(r, "Subject: x\n\nplain text\n--b--\nmore\n", "T_TVD_MIME_EPI"),
	    "not multipart");
	rules_free(r);
}

Test(rules_eval, mime_parse_flag_truncated_header)
{
	rules_t *r = load("header HEAD_LONG eval:check_msg_parse_flags('truncated_header')\n");
	size_t n = 70000;
	char *msg = malloc(n + 256), *q = msg;
	q += sprintf(q, "Subject: s\nX-Long: ");
	memset(q, 'a', 8193);
	strcpy(q + 8193, "\n\nbody\n");
	cr_assert(unit_rules_hits(r, msg, "HEAD_LONG"), "a value beyond 8192 bytes");
	strcpy(q + 8000, "\n\nbody\n");
	cr_assert_not(unit_rules_hits(r, msg, "HEAD_LONG"));
	q = msg + sprintf(msg, "Subject: s\nX-");
	memset(q, 'n', 300);
	strcpy(q + 300, ": v\n\nbody\n");
	cr_assert(unit_rules_hits(r, msg, "HEAD_LONG"), "a name beyond 256 bytes");
	/* ten fields of 7,000 bytes: each fine, 70,000 in all */
	q = msg + sprintf(msg, "Subject: s\n");
	for (int i = 0; i < 10; i++) {
		q += sprintf(q, "X-%d: ", i);
		memset(q, 'v', 6990);
		q += 6990;
		*q++ = '\n';
	}
	strcpy(q, "\nbody\n");
	cr_assert(unit_rules_hits(r, msg, "HEAD_LONG"), "a header section beyond 65536 bytes");
	free(msg);
	rules_free(r);
}

Test(rules_eval, mime_base64_line_length)
{
	rules_t *r = load("body BASE64_LENGTH_78_79 eval:check_base64_length('78','79')\n"
	                  "body BASE64_LENGTH_79_INF eval:check_base64_length('79')\n");
	char l76[77], l77[78], l78[79], l79[80], msg[512];
	memset(l76, 'Q', 76);
	l76[76] = '\0';
	memset(l77, 'Q', 77);
	l77[77] = '\0';
	memset(l78, 'Q', 78);
	l78[78] = '\0';
	memset(l79, 'Q', 79);
	l79[79] = '\0';
	const char *fmt = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\n"
	                  "--b\nContent-Type: @\nContent-Transfer-Encoding: base64\n\n@\nQQ==\n"
	                  "--b--\n";
	fill(msg, sizeof(msg), fmt, "application/octet-stream", l76);
	cr_assert_not(unit_rules_hits(r, msg, "BASE64_LENGTH_78_79"),
	              "76 characters and the break");
	cr_assert_not(unit_rules_hits(r, msg, "BASE64_LENGTH_79_INF"));
	fill(msg, sizeof(msg), fmt, "application/octet-stream", l77);
	cr_assert(unit_rules_hits(r, msg, "BASE64_LENGTH_78_79"));
	cr_assert_not(unit_rules_hits(r, msg, "BASE64_LENGTH_79_INF"));
	fill(msg, sizeof(msg), fmt, "application/octet-stream", l78);
	cr_assert(unit_rules_hits(r, msg, "BASE64_LENGTH_78_79"), "both ranges hold 79");
	cr_assert(unit_rules_hits(r, msg, "BASE64_LENGTH_79_INF"));
	fill(msg, sizeof(msg), fmt, "application/octet-stream", l79);
	cr_assert_not(unit_rules_hits(r, msg, "BASE64_LENGTH_78_79"));
	cr_assert(unit_rules_hits(r, msg, "BASE64_LENGTH_79_INF"));
	fill(msg, sizeof(msg), fmt, "application/ics", l78);
	cr_assert_not(unit_rules_hits(r, msg, "BASE64_LENGTH_79_INF"),
	              "calendar invitations are exempt");
	rules_free(r);
}

Test(rules_eval, mime_abundant_unicode_escapes_in_plain_text)
{
	rules_t *r = load("body PP_TOO_MUCH_UNICODE05 eval:check_abundant_unicode_ratio(0.05)\n");
	cr_assert(unit_rules_hits(
	    r, "Subject: x\n\n&#x0412;&#x0438;&#x0430;&#x0433;&#x0440;&#x0430; now\n",
	    "PP_TOO_MUCH_UNICODE05"));
	cr_assert_not(unit_rules_hits(r,
	                              "Subject: x\n\nplain text with one &#x0412; in a long line\n",
	                              "PP_TOO_MUCH_UNICODE05"));
	cr_assert_not(unit_rules_hits(r, "Subject: x\n\n&#x04a0;&#x04b0;&#x04c0; lower-case hex\n",
	                              "PP_TOO_MUCH_UNICODE05"),
	              "SpamAssassin matches capital hex digits only");
	cr_assert_not(
	    unit_rules_hits(r, "Content-Type: text/html\nSubject: x\n\n&#x0412;&#x0438;&#x0430;\n",
	                    "PP_TOO_MUCH_UNICODE05"),
	    "HTML may use them");
	rules_free(r);
}

Test(rules_eval, mime_alternative_non_text_and_multipart_ratio)
{
	rules_t *r = load("body MULTIPART_ALT_NON_TEXT eval:check_ma_non_text()\n"
	                  "body MIME_HTML_MOSTLY eval:check_mime_multipart_ratio('0.00','0.01')\n"
	                  "body CHARSET_FARAWAY eval:check_for_faraway_charset()\n");
	const char *img = "Content-Type: multipart/alternative; boundary=b\nSubject: x\n\n"
	                  "--b\nContent-Type: text/plain\n\nhi\n"
	                  "--b\nContent-Type: image/gif\n\nGIF89a\n--b--\n";
	const char *rtf = "Content-Type: multipart/alternative; boundary=b\nSubject: x\n\n"
	                  "--b\nContent-Type: text/plain\n\nhi\n"
	                  "--b\nContent-Type: application/rtf\n\n{\\rtf1}\n--b--\n";
	const char *nested = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\n"
	                     "--b\nContent-Type: multipart/alternative; boundary=c\n\n"
	                     "--c\nContent-Type: text/plain\n\nhi\n--c--\n"
	                     "--b\nContent-Type: image/gif\n\nGIF89a\n--b--\n";
	cr_assert(unit_rules_hits(r, img, "MULTIPART_ALT_NON_TEXT"));
	cr_assert_not(unit_rules_hits(r, rtf, "MULTIPART_ALT_NON_TEXT"));
	cr_assert_not(unit_rules_hits(r, nested, "MULTIPART_ALT_NON_TEXT"),
	              "the image is not an alternative");
	char big[600], msg[1024];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	const char *fmt = "Content-Type: multipart/alternative; boundary=b\nSubject: x\n\n"
	                  "--b\nContent-Type: text/plain\n\n@\n"
	                  "--b\nContent-Type: text/html\n\n<p>@</p>\n--b--\n";
	fill(msg, sizeof(msg), fmt, "", big);
	cr_assert(unit_rules_hits(r, msg, "MIME_HTML_MOSTLY"), "an empty text alternative");
	fill(msg, sizeof(msg), fmt, "the same text", "the same text");
	cr_assert_not(unit_rules_hits(r, msg, "MIME_HTML_MOSTLY"));
	cr_assert_not(unit_rules_hits(r, img, "MIME_HTML_MOSTLY"), "no HTML part");
	cr_assert_not(unit_rules_hits(
	                  r,
	                  "Content-Type: text/plain; charset=koi8-r\nSubject: x\n\n\xf0\xf2\xe9\xf7"
	                  "\xe5\xf4\n",
	                  "CHARSET_FARAWAY"),
	              "ok_locales is all");
	rules_free(r);
}

Test(rules_eval, faraway_charset_in_body_and_parts_follows_ok_locales)
{
	rules_t *r = load("body CHARSET_FARAWAY eval:check_for_faraway_charset()\n"
	                  "body MIME_CHARSET_FARAWAY eval:check_for_mime('mime_faraway_charset')\n"
	                  "ok_locales en\n");
	const char *koi = "Content-Type: text/plain; charset=\"koi8-r\"\nSubject: x\n\n"
	                  "\xf0\xf2\xe9\xf7\xe5\xf4 \xf0\xf2\xe9\n";
	const char *koi_ascii =
	    "Content-Type: text/plain; charset=koi8-r\nSubject: x\n\nplain ascii words only\n";
	const char *utf = "Content-Type: text/plain; charset=utf-8\nSubject: x\n\n"
	                  "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82\n";
	const char *part = "Content-Type: multipart/mixed; boundary=b\nSubject: x\n\n"
	                   "--b\nContent-Type: text/plain; charset=us-ascii\n\nhi\n"
	                   "--b\nContent-Type: text/plain; charset=big5\n\nhi\n--b--\n";
	cr_assert(unit_rules_hits(r, koi, "CHARSET_FARAWAY"),
	          "koi8-r is not en's, and the text is Cyrillic");
	cr_assert_not(unit_rules_hits(r, koi_ascii, "CHARSET_FARAWAY"),
	              "a koi8-r label on ASCII text");
	cr_assert_not(unit_rules_hits(r, utf, "CHARSET_FARAWAY"),
	              "Unicode is near for every locale");
	cr_assert(unit_rules_hits(r, koi, "MIME_CHARSET_FARAWAY"));
	cr_assert(unit_rules_hits(r, part, "MIME_CHARSET_FARAWAY"), "any part's charset");
	cr_assert_not(unit_rules_hits(r, part, "CHARSET_FARAWAY"), "the top Content-Type has none");
	cr_assert_not(unit_rules_hits(r, utf, "MIME_CHARSET_FARAWAY"));
	rules_free(r);
	r = load("body MIME_CHARSET_FARAWAY eval:check_for_mime('mime_faraway_charset')\n"
	         "ok_locales en zh\n");
	cr_assert_not(unit_rules_hits(r, part, "MIME_CHARSET_FARAWAY"), "zh reads big5");
	rules_free(r);
}

/* ---------------------------------------------------------------- BodyEval */

Test(rules_eval, body_stock_info_counts_distinct_field_names)
{
	rules_t *r = load("body TVD_STOCK1 eval:check_stock_info('2')\n");
	cr_assert(unit_rules_hits(
	    r,
	    "Subject: s\n\nHot pick!\nCompany: Acme Mining Corp\n  S-y-m-b-o-l :  ACMQ\n"
	    "Target Price: $2.10\n",
	    "TVD_STOCK1"));
	cr_assert_not(
	    unit_rules_hits(r, "Subject: s\n\nSymbol: ACMQ\nSymbol: BCMQ\nsee you: tomorrow\n",
	                    "TVD_STOCK1"),
	    "one field name twice");
	cr_assert_not(
	    unit_rules_hits(r, "Subject: s\n\nCompany:\nSymbol ACMQ\nTarget: \n", "TVD_STOCK1"),
	    "one name with a value (the next line's first character)");
	cr_assert_not(
	    unit_rules_hits(r,
	                    "Content-Type: text/html\nSubject: s\n\n<p>Company: Acme</p>\n"
	                    "<p>Symbol: ACMQ</p>\n",
	                    "TVD_STOCK1"),
	    "no text/plain part");
	rules_free(r);
}

Test(rules_eval, body_length_blank_lines_vertical_words_and_alternative_difference)
{
	rules_t *r =
	    load("body SHORT eval:check_body_length('20')\n"
	         "body BLANK_LINES_80_90 eval:check_blank_line_ratio('50','90','4')\n"
	         "body __TVD_SPACE_RATIO eval:tvd_vertical_words('0','10')\n"
	         "body VERTICAL eval:tvd_vertical_words('50','100')\n"
	         "meta TVD __TVD_SPACE_RATIO\n"
	         "body MPART_ALT_DIFF eval:multipart_alternative_difference('99', '100')\n");
	const char *shortmsg = "Subject: hi\n\nhello\n";
	const char *blank = "Subject: a b c\n\nx\n\n\n\ny\n\n\n\n";
	const char *vertical = "Subject: x\n\nB U Y N O W\n";
	const char *url = "Subject:\n\nhttp://example.com/averyveryverylongpathwithoutspaces\n";
	const char *same =
	    "Content-Type: multipart/alternative; boundary=b\nSubject: x\n\n"
	    "--b\nContent-Type: text/plain\n\nhello dear friend\n"
	    "--b\nContent-Type: text/html\n\n<p>hello <b>dear</b> friend</p>\n--b--\n";
	const char *differ = "Content-Type: multipart/alternative; boundary=b\nSubject: x\n\n"
	                     "--b\nContent-Type: text/plain\n\nplease view in html\n"
	                     "--b\nContent-Type: text/html\n\n<p>cheap pills online</p>\n--b--\n";
	cr_assert(unit_rules_hits(r, shortmsg, "SHORT"));
	cr_assert_not(unit_rules_hits(r, same, "SHORT"));
	cr_assert(unit_rules_hits(r, blank, "BLANK_LINES_80_90"));
	cr_assert_not(unit_rules_hits(r, shortmsg, "BLANK_LINES_80_90"), "too few lines");
	cr_assert(unit_rules_hits(r, vertical, "VERTICAL"));
	cr_assert_not(unit_rules_hits(r, same, "VERTICAL"));
	cr_assert(unit_rules_hits(r, url, "TVD"));
	cr_assert_not(unit_rules_hits(r, same, "TVD"));
	cr_assert(unit_rules_hits(r, differ, "MPART_ALT_DIFF"));
	cr_assert_not(unit_rules_hits(r, same, "MPART_ALT_DIFF"));
	rules_free(r);
}

/*
 * A test's numeric arguments are read once, at load, as strtod() reads
 * them: an exponent, hex, a sign and leading space give the bound they
 * gave when they were read each message. "hello\n" is 6 bytes.
 */
Test(rules_eval, numeric_arguments_are_read_at_load_as_strtod_reads_them)
{
	rules_t *r = load("body LEN_6E0 eval:check_body_length('6e0')\n"
	                  "body LEN_5E0 eval:check_body_length('5e0')\n"
	                  "body LEN_HEX eval:check_body_length('0x6')\n"
	                  "body LEN_SPACE eval:check_body_length(' +6.0')\n"
	                  "body LEN_NEG eval:check_body_length('-6')\n"
	                  "header DATE_ANY eval:check_for_shifted_date('undef', 'undef')\n"
	                  "header DATE_NONE eval:check_for_shifted_date('1e9', 'undef')\n");
	const char *msg = "Subject: hi\n\nhello\n";
	cr_assert(unit_rules_hits(r, msg, "LEN_6E0"));
	cr_assert_not(unit_rules_hits(r, msg, "LEN_5E0"));
	cr_assert(unit_rules_hits(r, msg, "LEN_HEX"));
	cr_assert(unit_rules_hits(r, msg, "LEN_SPACE"));
	cr_assert_not(unit_rules_hits(r, msg, "LEN_NEG"));
	for (int k = 0; k < 2; k++) { /* the same each message */
		cr_assert(unit_rules_hits(r,
		               "Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
		               "Received: from a by b; Mon, 1 Jan 2024 01:00:00 +0000\n\nx\n",
		               "DATE_ANY"));
		cr_assert_not(unit_rules_hits(r,
		                   "Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
		                   "Received: from a by b; Mon, 1 Jan 2024 01:00:00 +0000\n\nx\n",
		                   "DATE_NONE"));
	}
	rules_free(r);
}

/*
 * Thousands of distinct words, as in a long newsletter: the word sets grow
 * their hash tables many times over, and the percentage must come out as
 * it does word by word. A word the HTML says more often than the text
 * counts as not in the text (SpamAssassin's rule).
 */
Test(rules_eval, alternative_difference_over_thousands_of_words)
{
	rules_t *r =
	    load("body DIFF_30 eval:multipart_alternative_difference('30', '30.1')\n"
	         "body DIFF_ABOVE eval:multipart_alternative_difference('30.04', '100')\n"
	         "body COUNT eval:multipart_alternative_difference_count('0.69', '2999')\n");
	size_t cap = 128 * 1024, n = 0; /* the message is about 51 KB */
	char *m = malloc(cap);
	cr_assert_not_null(m);
	n += (size_t)snprintf(m + n, cap - n,
	                      "Content-Type: multipart/alternative; boundary=b\nSubject: x\n\n"
	                      "--b\nContent-Type: text/plain\n\n");
	for (int i = 0; i < 2100; i++)
		n += (size_t)snprintf(m + n, cap - n, "w%d%c", i, i % 10 == 9 ? '\n' : ' ');
	n += (size_t)snprintf(m + n, cap - n, "\n--b\nContent-Type: text/html\n\n<p>w0 ");
	for (int i = 0; i < 3000; i++)
		n += (size_t)snprintf(m + n, cap - n, "<b>w%d</b>%s", i,
		                      i % 10 == 9 ? "<br>\n" : " ");
	n += (size_t)snprintf(m + n, cap - n, "</p>\n--b--\n");
	cr_assert_lt(n, cap - 1);
	/* 900 words only in the HTML, and w0 twice there: 901 of 3,000, 30.03% */
	cr_assert(unit_rules_hits(r, m, "DIFF_30"));
	cr_assert_not(unit_rules_hits(r, m, "DIFF_ABOVE"));
	/* 2,100 text words over 3,000 HTML words is 0.7 */
	cr_assert(unit_rules_hits(r, m, "COUNT"));
	free(m);
	rules_free(r);
}

Test(rules_eval, freemail_domains_without_a_welcomelist)
{
	/* an empty list must not reach qsort() (undefined behaviour the sanitizers catch) */
	rules_t *r = load("freemail_domains gmail.com\n"
	                  "header FREEMAIL_FROM eval:check_freemail_from()\n");
	cr_assert(unit_rules_hits(r, "From: a@gmail.com\n\nx\n", "FREEMAIL_FROM"));
	rules_free(r);
}

/* ---------------------------------------------------------------- WLBLEval */

Test(rules_eval, welcome_and_block_lists_by_address)
{
	rules_t *r = load("ifplugin Mail::SpamAssassin::Plugin::WLBLEval\n"
	                  "if can(Mail::SpamAssassin::Conf::feature_welcomelist_blocklist)\n"
	                  "header USER_IN_WELCOMELIST eval:check_from_in_welcomelist()\n"
	                  "header USER_IN_BLOCKLIST eval:check_from_in_blocklist()\n"
	                  "header USER_IN_BLOCKLIST_TO eval:check_to_in_blocklist()\n"
	                  "header USER_IN_ALL_SPAM_TO eval:check_to_in_all_spam()\n"
	                  "endif\nendif\n"
	                  "welcomelist_from *@partner.example boss@example.com\n"
	                  "whitelist_from old@example.com\n"
	                  "unwelcomelist_from old@example.com\n"
	                  "blocklist_from spam?@*.example.net\n"
	                  "blocklist_to honeypot@example.org\n"
	                  "all_spam_to abuse@example.org\n");
	cr_assert(unit_rules_hits(r, "From: A <a@partner.example>\n\nx\n", "USER_IN_WELCOMELIST"));
	cr_assert(unit_rules_hits(r, "From: BOSS@Example.COM\n\nx\n", "USER_IN_WELCOMELIST"),
	          "case");
	cr_assert_not(
	    unit_rules_hits(r, "From: a@partner.example.net\n\nx\n", "USER_IN_WELCOMELIST"),
	    "anchored at the end");
	cr_assert_not(unit_rules_hits(r, "From: old@example.com\n\nx\n", "USER_IN_WELCOMELIST"),
	              "removed");
	cr_assert(unit_rules_hits(r, "From: spam1@mx.example.net\n\nx\n", "USER_IN_BLOCKLIST"));
	cr_assert_not(
	    unit_rules_hits(r, "From: spam12@mx.example.net\n\nx\n", "USER_IN_BLOCKLIST"));
	cr_assert(unit_rules_hits(r, "To: a@example.org\nCc: honeypot@example.org\n\nx\n",
	                          "USER_IN_BLOCKLIST_TO"));
	cr_assert(
	    unit_rules_hits(r, "X-Original-To: abuse@example.org\n\nx\n", "USER_IN_ALL_SPAM_TO"));
	cr_assert_not(unit_rules_hits(r, "To: a@example.org\n\nx\n", "USER_IN_ALL_SPAM_TO"));
	rules_free(r);
}

/* Globbing as a recursion over every length of every '*' does it: the reference. */
static bool glob_ref(const char *p, const char *s)
{
	if (*p == '\0')
		return *s == '\0';
	if (*p == '*')
		return glob_ref(p + 1, s) || (*s != '\0' && glob_ref(p, s + 1));
	return *s != '\0' && (*p == '?' || *p == tolower((unsigned char)*s)) &&
	       glob_ref(p + 1, s + 1);
}

/* freemail_domains' glob: '*' within a label, '?' any byte, exact bytes. */
static bool glob_label_ref(const char *p, const char *s)
{
	if (*p == '\0')
		return *s == '\0';
	if (*p == '*')
		return glob_label_ref(p + 1, s) ||
		       (*s != '\0' && *s != '.' && glob_label_ref(p, s + 1));
	return *s != '\0' && (*p == '?' || *p == *s) && glob_label_ref(p + 1, s + 1);
}

/* welcomelist_subject's: a prefix of s, '*' and '?' within a line, any case. */
static bool glob_line_prefix_ref(const char *p, const char *s)
{
	if (*p == '\0')
		return true;
	if (*p == '*')
		return glob_line_prefix_ref(p + 1, s) ||
		       (*s != '\0' && *s != '\n' && glob_line_prefix_ref(p, s + 1));
	return *s != '\0' && (*p == '?' ? *s != '\n' : *p == tolower((unsigned char)*s)) &&
	       glob_line_prefix_ref(p + 1, s + 1);
}

static bool glob_anywhere_ref(const char *p, const char *s)
{
	for (; *s != '\0'; s++)
		if (glob_line_prefix_ref(p, s))
			return true;
	return false;
}

/* The idx-th word of len letters over abc into w; false past the last. */
static bool nth_word(char *w, int len, unsigned idx, const char *abc)
{
	unsigned base = (unsigned)strlen(abc);
	for (int k = 0; k < len; k++, idx /= base)
		w[k] = abc[idx % base];
	w[len] = '\0';
	return idx == 0;
}

/*
 * The list patterns' globs: what the reference gives on every pattern and
 * address over a small alphabet, and in linear-ish time where a crafted
 * address met a pattern of many stars (it took minutes: the timeout).
 */
Test(rules_eval, list_globs_match_as_written_and_in_bounded_time, .timeout = 30)
{
	static const char *const fixed[][3] = {
	    {"*@partner.example", "a@partner.example", "1"},
	    {"*@partner.example", "a@partner.example.net", "0"},
	    {"*@*.example.net", "Spam1@MX.Example.NET", "1"},
	    {"spam?@*.example.net", "spam12@mx.example.net", "0"},
	    {"*", "", "1"},
	    {"?", "", "0"},
	    {"a**b", "ab", "1"},
	    {"*a*b*", "xxbxxa", "0"},
	    {"*.icu", ".icu", "1"},
	    {"*ab", "aab", "1"},
	};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		cr_assert_eq(rules_eval_glob(fixed[i][0], fixed[i][1]), fixed[i][2][0] == '1',
		             "%s against %s", fixed[i][0], fixed[i][1]);
	/* every pattern of up to 5 symbols over {a, b, ?, *} against every
	 * string of up to 5 letters over {a, b, A} */
	char p[8], t[8];
	unsigned checked = 0;
	for (int pl = 0; pl <= 5; pl++) {
		for (unsigned pc = 0; nth_word(p, pl, pc, "ab?*"); pc++) {
			for (int sl = 0; sl <= 5; sl++) {
				for (unsigned sc = 0; nth_word(t, sl, sc, "abA"); sc++) {
					cr_assert_eq(rules_eval_glob(p, t), glob_ref(p, t),
					             "%s against %s", p, t);
					checked++;
					/* the same strings with '.' and '\n' for 'b' and 'A' */
					char u[8];
					for (int k = 0; k <= sl; k++)
						u[k] = t[k] == 'b'   ? '.'
						       : t[k] == 'A' ? '\n'
						                     : t[k];
					cr_assert_eq(rules_eval_glob_within(p, u, '.', '\0', 0),
					             glob_label_ref(p, u),
					             "%s in a label against %s", p, u);
					cr_assert_eq(rules_eval_glob_within(
					                 p, t, '\n', '\n',
					                 RULES_GLOB_FOLD | RULES_GLOB_ANYWHERE),
					             glob_anywhere_ref(p, t), "%s anywhere in %s",
					             p, t);
					cr_assert_eq(rules_eval_glob_within(
					                 p, u, '\n', '\n',
					                 RULES_GLOB_FOLD | RULES_GLOB_ANYWHERE),
					             glob_anywhere_ref(p, u), "%s anywhere in %s",
					             p, u);
				}
			}
		}
	}
	cr_assert_eq(checked, 1365u * 364u); /* (4^6 - 1) / 3 patterns, (3^6 - 1) / 2 strings */

	/* many stars, a long address that almost matches */
	char addr[4001];
	memset(addr, 'a', sizeof(addr) - 1);
	addr[sizeof(addr) - 1] = '\0';
	cr_assert_not(rules_eval_glob("*a*a*a*a*a*a*a*a*b*", addr));
	addr[sizeof(addr) - 2] = 'b';
	cr_assert(rules_eval_glob("*a*a*a*a*a*a*a*a*b*", addr));
	/* a pattern longer than the automaton's stack buffer */
	char longpat[601];
	memset(longpat, '*', sizeof(longpat) - 1);
	longpat[sizeof(longpat) - 1] = '\0';
	longpat[300] = 'b';
	cr_assert(rules_eval_glob_within(longpat, addr, '\n', '\n', RULES_GLOB_ANYWHERE));
	cr_assert(rules_eval_glob_within(longpat, addr, '.', '\0', 0));
	addr[sizeof(addr) - 2] = 'a';
	cr_assert_not(rules_eval_glob_within(longpat, addr, '.', '\0', 0));
	/* the same through the rules: an address list, freemail_domains, a subject list */
	rules_t *r = load("header IN_LIST eval:check_from_in_list('L')\n"
	                  "enlist_addrlist (L) *a*a*a*a*a*a*a*a*b*@example.com\n"
	                  "header FREEMAIL eval:check_freemail_from()\n"
	                  "freemail_domains *a*a*a*a*a*a*a*a*b.example\n"
	                  "header SUBJ_BL eval:check_subject_in_blocklist()\n"
	                  "blocklist_subject *a*a*a*a*a*a*a*a*b\n");
	char raw[8400];
	snprintf(raw, sizeof(raw), "From: x@%s.example\nSubject: %s\n\nx\n", addr, addr);
	cr_assert_not(unit_rules_hits(r, raw, "FREEMAIL"));
	cr_assert_not(unit_rules_hits(r, raw, "SUBJ_BL"));
	snprintf(raw, sizeof(raw), "From: %s@example.com\n\nx\n", addr);
	cr_assert_not(unit_rules_hits(r, raw, "IN_LIST"));
	snprintf(raw, sizeof(raw), "From: x@aaaaaaaab.example\nSubject: aaaaaaaab\n\nx\n");
	cr_assert(unit_rules_hits(r, raw, "FREEMAIL"));
	cr_assert(unit_rules_hits(r, raw, "SUBJ_BL"));
	rules_free(r);

	/* an ordinary subject pattern: one star each side was quadratic in the
	 * subject's length (30 KB took 2.8 s, these 200 KB minutes) */
	r = load("header SUBJ_BL eval:check_subject_in_blocklist()\n"
	         "blocklist_subject *cheap pills*\n");
	size_t big = 200000;
	char *msg = malloc(big + 64);
	int k = snprintf(msg, big + 64, "From: a@example.com\nSubject: ");
	for (size_t i = 0; i < big; i += 3)
		memcpy(msg + k + i, "ab ", 3);
	strcpy(msg + k + big, "\n\nx\n");
	cr_assert_not(unit_rules_hits(r, msg, "SUBJ_BL"));
	memcpy(msg + k + big - 12, "cheap pills ", 12);
	cr_assert(unit_rules_hits(r, msg, "SUBJ_BL"));
	free(msg);
	rules_free(r);
}

Test(rules_eval, named_address_lists_for_from_and_reply_to)
{
	rules_t *r = load("header FROM_SUSPNTLD eval:check_from_in_list('SUSP_NTLD')\n"
	                  "header REPLYTO_SUSPNTLD eval:check_replyto_in_list('SUSP_NTLD')\n"
	                  "header FROM_GOV eval:check_from_in_list('GOV')\n"
	                  "header FROM_NONE eval:check_from_in_list('NONE')\n"
	                  "enlist_addrlist (SUSP_NTLD) *@*.pw *@*.top\n"
	                  "enlist_addrlist (SUSP_NTLD) *@*.click\n"
	                  "enlist_addrlist (GOV) *@*.gov\n");
	cr_assert(unit_rules_hits(r, "From: a@shop.top\n\nx\n", "FROM_SUSPNTLD"));
	cr_assert(unit_rules_hits(r, "From: A <a@X.CLICK>\n\nx\n", "FROM_SUSPNTLD"),
	          "a later line adds to the list; any case");
	cr_assert_not(unit_rules_hits(r, "From: a@shop.topics.example\n\nx\n", "FROM_SUSPNTLD"));
	cr_assert_not(unit_rules_hits(r, "From: a@shop.top\n\nx\n", "FROM_GOV"), "another list");
	cr_assert(
	    unit_rules_hits(r, "Return-Path: <b@irs.gov>\nFrom: a@example.com\n\nx\n", "FROM_GOV"),
	    "the envelope sender is a sender address too");
	cr_assert_not(unit_rules_hits(r, "From: a@x.gov\n\nx\n", "FROM_NONE"), "no such list");
	cr_assert(
	    unit_rules_hits(r, "From: a@example.com\nReply-To: b@x.pw\n\nx\n", "REPLYTO_SUSPNTLD"));
	cr_assert_not(
	    unit_rules_hits(r, "From: a@x.pw\nReply-To: b@example.com\n\nx\n", "REPLYTO_SUSPNTLD"));
	rules_free(r);
}

Test(rules_eval, enlist_addrlist_needs_a_list_name)
{
	diag_t *d = diag_new();
	rules_t *r = rules_load_text("t.cf", "enlist_addrlist SUSP *@*.pw\n", NULL, d);
	cr_assert_null(r);
	cr_assert(unit_diag_has(d, "t.cf:1: enlist_addrlist: expected (LISTNAME) and addresses"));
	diag_free(d);
}

Test(rules_eval, default_welcomelist_needs_the_listed_relay)
{
	rules_t *r =
	    load("header USER_IN_DEF_WELCOMELIST eval:check_from_in_default_welcomelist()\n"
	         "header OLD_NAME eval:check_from_in_default_whitelist()\n"
	         "def_welcomelist_from_rcvd *@news.example.com example.com\n"
	         "def_whitelist_from_rcvd alerts@bank.example [198.51.100.0/24]\n"
	         "def_welcomelist_from_rcvd info@shop.example [203.0.113]\n");
	const char *via_own =
	    "Received: from mta1.mail.example.com (mta1.mail.example.com [192.0.2.1])\n"
	    " by mx.example.org with ESMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	    "From: News <letter@news.example.com>\n\nx\n";
	const char *via_other =
	    "Received: from host.example.net (host.example.net [192.0.2.1])\n"
	    " by mx.example.org with ESMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	    "From: News <letter@news.example.com>\n\nx\n";
	const char *suffix_only =
	    "Received: from mta1.badexample.com (mta1.badexample.com [192.0.2.1])\n"
	    " by mx.example.org with ESMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	    "From: News <letter@news.example.com>\n\nx\n";
	cr_assert(unit_rules_hits(r, via_own, "USER_IN_DEF_WELCOMELIST"));
	cr_assert(unit_rules_hits(r, via_own, "OLD_NAME"));
	cr_assert_not(unit_rules_hits(r, via_other, "USER_IN_DEF_WELCOMELIST"), "a forged sender");
	cr_assert_not(unit_rules_hits(r, suffix_only, "USER_IN_DEF_WELCOMELIST"),
	              "labels, not suffixes");
	cr_assert_not(
	    unit_rules_hits(r, "From: letter@news.example.com\n\nx\n", "USER_IN_DEF_WELCOMELIST"),
	    "no relay, no match");
	const char *bank_in = "Received: from out.bank.example (out.bank.example [198.51.100.77])\n"
	                      " by mx.example.org with ESMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                      "From: alerts@bank.example\n\nx\n";
	const char *bank_out =
	    "Received: from out.bank.example (out.bank.example [198.51.101.77])\n"
	    " by mx.example.org with ESMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	    "From: alerts@bank.example\n\nx\n";
	cr_assert(unit_rules_hits(r, bank_in, "USER_IN_DEF_WELCOMELIST"), "inside the /24");
	cr_assert_not(unit_rules_hits(r, bank_out, "USER_IN_DEF_WELCOMELIST"));
	const char *shop = "Received: from x.example.net (x.example.net [203.0.113.9])\n"
	                   " by mx.example.org with ESMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                   "From: info@shop.example\n\nx\n";
	const char *shop_no = "Received: from x.example.net (x.example.net [203.0.11.9])\n"
	                      " by mx.example.org with ESMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                      "From: info@shop.example\n\nx\n";
	cr_assert(unit_rules_hits(r, shop, "USER_IN_DEF_WELCOMELIST"), "a classful subnet");
	cr_assert_not(unit_rules_hits(r, shop_no, "USER_IN_DEF_WELCOMELIST"),
	              "203.0.11 is not 203.0.113");
	rules_free(r);
}

Test(rules_eval, welcomelist_from_rcvd_needs_the_listed_relay)
{
	rules_t *r = load("header USER_IN_WELCOMELIST eval:check_from_in_welcomelist()\n"
	                  "welcomelist_from_rcvd *@news.example.com example.com\n"
	                  "whitelist_from_rcvd boss@corp.example [192.0.2.0/24]\n"
	                  "welcomelist_from plain@example.org\n");
	const char *via_own =
	    "Received: from mta1.mail.example.com (mta1.mail.example.com [198.51.100.1])\n"
	    " by mx.example.org with ESMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	    "From: News <letter@news.example.com>\n\nx\n";
	const char *via_other =
	    "Received: from host.example.net (host.example.net [198.51.100.1])\n"
	    " by mx.example.org with ESMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	    "From: News <letter@news.example.com>\n\nx\n";
	const char *boss = "Received: from x.example.net (x.example.net [192.0.2.77])\n"
	                   " by mx.example.org with ESMTP id 1; Mon, 2 Jan 2023 10:00:00 +0000\n"
	                   "From: boss@corp.example\n\nx\n";
	cr_assert(unit_rules_hits(r, via_own, "USER_IN_WELCOMELIST"));
	cr_assert_not(unit_rules_hits(r, via_other, "USER_IN_WELCOMELIST"), "a forged sender");
	cr_assert(unit_rules_hits(r, boss, "USER_IN_WELCOMELIST"),
	          "the relay's address in the range");
	cr_assert(unit_rules_hits(r, "From: plain@example.org\n\nx\n", "USER_IN_WELCOMELIST"),
	          "welcomelist_from still counts");
	rules_free(r);
	diag_t *d = diag_new();
	cr_assert_null(rules_load_text("t.cf", "welcomelist_from_rcvd a@b.example\n", NULL, d));
	cr_assert(unit_diag_has(d, "t.cf:1: welcomelist_from_rcvd: expected an address"));
	diag_free(d);
}

/*
 * The auth module's results as it leaves them for the rules (auth.c's
 * score()): the SPF result of the envelope sender, and DKIM_VALID naming
 * the signing domains that verified.
 */
static bool hits_auth(rules_t *r, const char *raw, const char *name, int spf,
                      const char *dkim_valid)
{
	msg_t *m = msg_new(1 << 20);
	msg_parse_raw(m, raw, strlen(raw));
	mime_t *mi = mime_parse(m, NULL);
	hits_t *h = hits_new(msg_arena(m));
	hits_set_metric(h, "auth_spf", spf);
	hits_set_metric(h, "auth_spf_helo", -1);
	hits_set_metric(h, "auth_dkim", dkim_valid ? 3 : 0);
	hits_set_metric(h, "auth_dmarc", -1);
	hits_set_metric(h, "auth_dmarc_p", 0);
	if (dkim_valid)
		hits_add(h, "auth", "DKIM_VALID", -0.1, NULL, dkim_valid);
	rules_eval(r, m, mi, h, 0);
	bool v = hits_has(h, name);
	msg_free(m);
	return v;
}

Test(rules_eval, spf_welcomelist_needs_the_sender_listed_and_spf_pass)
{
	rules_t *r = load("header USER_IN_SPF_WL eval:check_for_spf_welcomelist_from()\n"
	                  "header OLD eval:check_for_spf_whitelist_from()\n"
	                  "header USER_IN_DEF_SPF_WL eval:check_for_def_spf_welcomelist_from()\n"
	                  "welcomelist_from_spf *@lists.example.com\n"
	                  "def_welcomelist_from_spf bounce@*.shop.example\n"
	                  "welcomelist_auth boss@corp.example\n");
	const char *lists = "Return-Path: <owner@Lists.Example.com>\nFrom: x@y.example\n\nx\n";
	const char *shop = "Return-Path: <bounce@mail.shop.example>\nFrom: x@y.example\n\nx\n";
	const char *boss = "Return-Path: <boss@corp.example>\nFrom: x@y.example\n\nx\n";
	const char *other = "Return-Path: <a@other.example>\nFrom: x@y.example\n\nx\n";
	cr_assert(hits_auth(r, lists, "USER_IN_SPF_WL", AUTH_PASS, NULL));
	cr_assert(hits_auth(r, lists, "OLD", AUTH_PASS, NULL));
	cr_assert_not(hits_auth(r, lists, "USER_IN_DEF_SPF_WL", AUTH_PASS, NULL));
	cr_assert_not(hits_auth(r, lists, "USER_IN_SPF_WL", AUTH_SOFTFAIL, NULL), "no SPF pass");
	cr_assert(hits_auth(r, shop, "USER_IN_DEF_SPF_WL", AUTH_PASS, NULL));
	cr_assert_not(hits_auth(r, shop, "USER_IN_SPF_WL", AUTH_PASS, NULL));
	cr_assert(hits_auth(r, boss, "USER_IN_SPF_WL", AUTH_PASS, NULL), "welcomelist_auth");
	cr_assert_not(hits_auth(r, other, "USER_IN_SPF_WL", AUTH_PASS, NULL));
	cr_assert_not(unit_rules_hits(r, lists, "USER_IN_SPF_WL"),
	              "auth did not judge the message");
	rules_free(r);
}

Test(rules_eval, dkim_welcomelist_needs_a_valid_signature_of_the_listed_domain)
{
	rules_t *r = load("header USER_IN_DKIM_WL eval:check_for_dkim_welcomelist_from()\n"
	                  "header OLD eval:check_for_dkim_whitelist_from()\n"
	                  "header USER_IN_DEF_DKIM_WL eval:check_for_def_dkim_welcomelist_from()\n"
	                  "header DKIM_VALID_EF eval:check_dkim_valid_envelopefrom()\n"
	                  "welcomelist_from_dkim *@corp.example\n"
	                  "welcomelist_from_dkim jane@example.net example.org\n"
	                  "whitelist_from_dkim *@*.remailer.example *.remailer.example\n"
	                  "def_welcomelist_from_dkim *@*.ebay.example ebay.example\n"
	                  "def_welcomelist_from_dkim *@gone.example\n"
	                  "unwelcomelist_from_dkim *@gone.example\n"
	                  "welcomelist_auth boss@auth.example\n");
	const char *corp = "From: Joe <joe@corp.example>\n\nx\n";
	cr_assert(hits_auth(r, corp, "USER_IN_DKIM_WL", AUTH_NONE, "d=corp.example: dkim=pass"),
	          "an author domain signature");
	cr_assert(hits_auth(r, corp, "OLD", AUTH_NONE, "d=x.example,corp.example: dkim=pass"),
	          "any of the valid signatures");
	cr_assert_not(
	    hits_auth(r, corp, "USER_IN_DKIM_WL", AUTH_NONE, "d=other.example: dkim=pass"),
	    "a third party's signature is not the author's");
	cr_assert_not(hits_auth(r, corp, "USER_IN_DKIM_WL", AUTH_PASS, NULL), "no valid signature");
	const char *jane = "From: jane@example.net\n\nx\n";
	cr_assert(hits_auth(r, jane, "USER_IN_DKIM_WL", AUTH_NONE, "d=example.org: dkim=pass"));
	cr_assert_not(hits_auth(r, jane, "USER_IN_DKIM_WL", AUTH_NONE, "d=example.net: dkim=pass"),
	              "the listed signing domain, not the author's");
	const char *rem = "From: a@b.remailer.example\n\nx\n";
	cr_assert(
	    hits_auth(r, rem, "USER_IN_DKIM_WL", AUTH_NONE, "d=m7.remailer.example: dkim=pass"));
	cr_assert_not(
	    hits_auth(r, rem, "USER_IN_DKIM_WL", AUTH_NONE, "d=remailer.example: dkim=pass"),
	    "*.domain: below it, not the domain itself");
	const char *ebay = "From: news@reply.ebay.example\n\nx\n";
	cr_assert(
	    hits_auth(r, ebay, "USER_IN_DEF_DKIM_WL", AUTH_NONE, "d=ebay.example: dkim=pass"));
	cr_assert_not(
	    hits_auth(r, ebay, "USER_IN_DKIM_WL", AUTH_NONE, "d=ebay.example: dkim=pass"));
	cr_assert_not(hits_auth(r, "From: a@gone.example\n\nx\n", "USER_IN_DEF_DKIM_WL", AUTH_NONE,
	                        "d=gone.example: dkim=pass"),
	              "removed by unwelcomelist_from_dkim");
	cr_assert(hits_auth(r, "From: boss@auth.example\n\nx\n", "USER_IN_DKIM_WL", AUTH_NONE,
	                    "d=auth.example: dkim=pass"),
	          "welcomelist_auth: an author domain signature");
	rules_t *rv =
	    load("full __RESIGNER1 eval:check_dkim_valid('linkedin.example')\n"
	         "full __RESIGNER2 eval:check_dkim_valid('x.example', '.groups.example')\n"
	         "meta RESIGNER1 __RESIGNER1\nmeta RESIGNER2 __RESIGNER2\n");
	cr_assert(hits_auth(rv, corp, "RESIGNER1", AUTH_NONE, "d=linkedin.example: dkim=pass"));
	cr_assert_not(hits_auth(rv, corp, "RESIGNER1", AUTH_NONE, "d=corp.example: dkim=pass"));
	cr_assert(hits_auth(rv, corp, "RESIGNER2", AUTH_NONE, "d=groups.example: dkim=pass"));
	cr_assert(hits_auth(rv, corp, "RESIGNER2", AUTH_NONE, "d=a.groups.example: dkim=pass"));
	cr_assert_not(hits_auth(rv, corp, "RESIGNER2", AUTH_NONE, "d=a.x.example: dkim=pass"));
	rules_free(rv);
	const char *ef = "Return-Path: <b@Bounce.Example>\nFrom: x@corp.example\n\nx\n";
	cr_assert(hits_auth(r, ef, "DKIM_VALID_EF", AUTH_NONE, "d=bounce.example: dkim=pass"));
	cr_assert_not(hits_auth(r, ef, "DKIM_VALID_EF", AUTH_NONE, "d=corp.example: dkim=pass"));
	rules_free(r);
	diag_t *d = diag_new();
	cr_assert_null(
	    rules_load_text("t.cf", "welcomelist_from_dkim a@b.example c.example d\n", NULL, d));
	cr_assert(unit_diag_has(d, "t.cf:1: welcomelist_from_dkim: expected an author address"));
	diag_free(d);
}

Test(rules_eval, dkim_adsp_from_adsp_override_without_an_author_signature)
{
	rules_t *r = load("header DKIM_ADSP_DISCARD eval:check_dkim_adsp('D')\n"
	                  "header DKIM_ADSP_ALL eval:check_dkim_adsp('A')\n"
	                  "header ANY_EBAY eval:check_dkim_adsp('*', '.ebay.example')\n"
	                  "header SIGNALL eval:check_dkim_signall()\n"
	                  "header SIGNSOME eval:check_dkim_signsome()\n"
	                  "adsp_override ebay.example\n"
	                  "adsp_override *.bank.example all\n"
	                  "adsp_override fine.bank.example unknown\n");
	const char *ebay = "From: eBay <a@eBay.example>\n\nx\n";
	cr_assert(hits_auth(r, ebay, "DKIM_ADSP_DISCARD", AUTH_NONE, NULL),
	          "discardable by default");
	cr_assert(hits_auth(r, ebay, "ANY_EBAY", AUTH_NONE, NULL));
	cr_assert_not(hits_auth(r, ebay, "DKIM_ADSP_ALL", AUTH_NONE, NULL));
	cr_assert_not(
	    hits_auth(r, ebay, "DKIM_ADSP_DISCARD", AUTH_NONE, "d=ebay.example: dkim=pass"),
	    "an author domain signature meets any practice");
	cr_assert(hits_auth(r, ebay, "DKIM_ADSP_DISCARD", AUTH_NONE, "d=other.example: dkim=pass"),
	          "a third party's signature does not");
	const char *bank = "From: a@x.bank.example\n\nx\n";
	cr_assert(hits_auth(r, bank, "DKIM_ADSP_ALL", AUTH_NONE, NULL), "*.bank.example");
	cr_assert(hits_auth(r, bank, "SIGNALL", AUTH_NONE, NULL));
	cr_assert_not(hits_auth(r, bank, "ANY_EBAY", AUTH_NONE, NULL),
	              "not an ebay.example domain");
	cr_assert_not(hits_auth(r, bank, "SIGNSOME", AUTH_NONE, NULL), "never, as in SpamAssassin");
	cr_assert_not(
	    hits_auth(r, "From: a@fine.bank.example\n\nx\n", "DKIM_ADSP_ALL", AUTH_NONE, NULL),
	    "the domain's own line wins over *.bank.example");
	cr_assert_not(
	    hits_auth(r, "From: a@other.example\n\nx\n", "DKIM_ADSP_DISCARD", AUTH_NONE, NULL),
	    "no override and no ADSP lookup: no practice");
	cr_assert_not(unit_rules_hits(r, ebay, "DKIM_ADSP_DISCARD"),
	              "auth did not judge the message");
	rules_free(r);
	diag_t *d = diag_new();
	cr_assert_null(rules_load_text("t.cf", "adsp_override a.example sometimes\n", NULL, d));
	cr_assert(unit_diag_has(d, "t.cf:1: adsp_override: the practice is one of"));
	diag_free(d);
}

Test(rules_eval, def_welcomelist_from_rcvd_wants_two_words)
{
	diag_t *d = diag_new();
	rules_t *r = rules_load_text("t.cf", "def_welcomelist_from_rcvd a@b.example\n", NULL, d);
	cr_assert_null(r);
	cr_assert(unit_diag_has(d, "t.cf:1: def_welcomelist_from_rcvd: expected an address"));
	diag_free(d);
}

Test(rules_eval, subject_welcome_and_block_lists)
{
	rules_t *r = load("ifplugin Mail::SpamAssassin::Plugin::WelcomeListSubject\n"
	                  "header SUBJECT_IN_WELCOMELIST eval:check_subject_in_welcomelist()\n"
	                  "header SUBJECT_IN_BLOCKLIST eval:check_subject_in_blocklist()\n"
	                  "endif\n"
	                  "header OLD_BL eval:check_subject_in_blacklist()\n"
	                  "welcomelist_subject [Project X] *\n"
	                  "blocklist_subject Cheap ?ills\n"
	                  "blacklist_subject act now\n");
	cr_assert(unit_rules_hits(r, "Subject: Re: [project x] meeting notes\n\nx\n",
	                          "SUBJECT_IN_WELCOMELIST"),
	          "anywhere in the subject, any case");
	cr_assert_not(unit_rules_hits(r, "Subject: project x\n\nx\n", "SUBJECT_IN_WELCOMELIST"),
	              "brackets are literal");
	cr_assert(
	    unit_rules_hits(r, "Subject: buy CHEAP PILLS today\n\nx\n", "SUBJECT_IN_BLOCKLIST"));
	cr_assert(unit_rules_hits(r, "Subject: please ACT NOW\n\nx\n", "OLD_BL"),
	          "one list, two names");
	cr_assert(unit_rules_hits(r, "Subject: please ACT NOW\n\nx\n", "SUBJECT_IN_BLOCKLIST"));
	cr_assert_not(unit_rules_hits(r, "Subject: cheap  pills\n\nx\n", "SUBJECT_IN_BLOCKLIST"),
	              "? is one character");
	cr_assert_not(unit_rules_hits(r, "From: a@b.example\n\nx\n", "SUBJECT_IN_BLOCKLIST"),
	              "no Subject");
	rules_free(r);
}

/* ---------------------------------------------------------------- FromNameSpoof */

Test(rules_eval, fromname_spoof_compares_the_name_address_with_the_sender)
{
	rules_t *r = load("header SPOOF eval:check_fromname_spoof()\n"
	                  "header SPOOF0 eval:check_fromname_spoof('0')\n"
	                  "header SPOOF2 eval:check_fromname_spoof('2')\n"
	                  "header EQ_TO eval:check_fromname_equals_to()\n"
	                  "header EQ_REPLY eval:check_fromname_equals_replyto()\n"
	                  "header CONTAINS eval:check_fromname_contains_email()\n");
	const char *spoof = "From: \"service@paypal.com\" <alerts@evil-mail.net>\n"
	                    "To: bob@example.org\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, spoof, "SPOOF"), "another owner (paypal vs evil)");
	cr_assert(unit_rules_hits(r, spoof, "SPOOF2"), "another registered domain");
	cr_assert(unit_rules_hits(r, spoof, "CONTAINS"));
	cr_assert_not(unit_rules_hits(r,
	                              "From: \"service@paypal.com\" <alerts@evil.example>\n\nx\n",
	                              "CONTAINS"),
	              "a From address under an unknown TLD stops the test, as in SpamAssassin");
	/* the same owner under another suffix: an address differs, owners do not */
	const char *owner = "From: \"service@paypal.com\" <service@paypal.co.uk>\n"
	                    "To: bob@example.org\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, owner, "SPOOF0"));
	cr_assert_not(unit_rules_hits(r, owner, "SPOOF"), "paypal is paypal's owner in both");
	cr_assert(unit_rules_hits(r, owner, "SPOOF2"));
	const char *same =
	    "From: \"Alerts@Evil-Mail.net\" <alerts@evil-mail.net>\nSubject: x\n\nx\n";
	cr_assert_not(unit_rules_hits(r, same, "SPOOF0"), "the name is the sender's own address");
	const char *plain = "From: PayPal Service <alerts@evil-mail.net>\nSubject: x\n\nx\n";
	cr_assert_not(unit_rules_hits(r, plain, "SPOOF0"));
	cr_assert_not(unit_rules_hits(r, plain, "CONTAINS"));
	/* the address is a small part of a long name: not a spoof (fns_extrachars 50) */
	const char *chatty =
	    "From: \"Weekly news and offers from our whole team, write to help@shop-news.com "
	    "any time you like\" <news@mailer-news.com>\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, chatty, "CONTAINS"));
	cr_assert_not(unit_rules_hits(r, chatty, "SPOOF0"));
	/* the name repeats the sender's address: no spoof, but Reply-To is the same */
	const char *own = "From: \"info@shop-news.com\" <info@shop-news.com>\n"
	                  "Reply-To: info@shop-news.com\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, own, "EQ_REPLY"));
	cr_assert_not(unit_rules_hits(r, own, "SPOOF0"));
	cr_assert_not(unit_rules_hits(r,
	                              "From: \"info@shop-news.com\"<info@shop-news.com>\n"
	                              "Reply-To: info@shop-news.com\nSubject: x\n\nx\n",
	                              "EQ_REPLY"),
	              "written with no space, the phrase is the address: no name");
	const char *to = "From: \"bob@example.org\" <x@evil-mail.net>\nTo: bob@example.org\n"
	                 "Reply-To: bob@example.org\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, to, "EQ_TO"));
	cr_assert(unit_rules_hits(r, to, "EQ_REPLY"));
	cr_assert_not(unit_rules_hits(r, spoof, "EQ_TO"));
	cr_assert_not(unit_rules_hits(r, spoof, "EQ_REPLY"));
	/* a bare address names its owner in a comment */
	cr_assert(
	    unit_rules_hits(r, "From: alerts@evil-mail.net (service@paypal.com)\n\nx\n", "SPOOF"));
	/* broken fields: no hit, no crash */
	static const char *const broken[] = {
	    "From: \"service@paypal.com <alerts@evil-mail.net>\n\nx\n",
	    "From: service@paypal.com <alerts@evil-mail.net\n\nx\n",
	    "From: (service@paypal.com (a\\) alerts@evil-mail.net\n\nx\n",
	    "From: <>\n\nx\n",
	    "From: \"\" <@>, \"a@b\" <>\n\nx\n",
	};
	for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++)
		(void)unit_rules_hits(r, broken[i], "SPOOF");
	rules_free(r);
}

Test(rules_eval, fromname_directives_change_the_owner_and_the_level)
{
	rules_t *r = load("header SPOOF eval:check_fromname_spoof()\n"
	                  "fns_add_addrlist (bank) *@bank-one.com *@bankone-mail.net\n"
	                  "fns_ignore_headers List-Id\n"
	                  "fns_check 2\n");
	const char *alias =
	    "From: \"info@bank-one.com\" <info@bankone-mail.net>\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, alias, "SPOOF"), "level 2 asks only that the domains differ");
	rules_free(r);
	r = load("header SPOOF eval:check_fromname_spoof()\n"
	         "fns_add_addrlist (bank) *@bank-one.com *@bankone-mail.net\n"
	         "fns_ignore_headers List-Id\n");
	cr_assert_not(unit_rules_hits(r, alias, "SPOOF"), "the owner list makes them one");
	const char *other = "From: \"info@bank-one.com\" <info@evil-mail.net>\nSubject: x\n\nx\n";
	cr_assert(unit_rules_hits(r, other, "SPOOF"));
	const char *list = "List-Id: <news.bank-one.com>\n"
	                   "From: \"info@bank-one.com\" <info@evil-mail.net>\nSubject: x\n\nx\n";
	cr_assert_not(unit_rules_hits(r, list, "SPOOF"), "fns_ignore_headers");
	rules_free(r);
	diag_t *d = diag_new();
	cr_assert_null(rules_load_text("t.cf", "fns_check 3\n", NULL, d));
	cr_assert(unit_diag_has(d, "t.cf:1: fns_check: expected 0, 1 or 2"));
	diag_free(d);
}

Test(rules_eval, fns_ignore_dkim_skips_mail_its_domains_signed)
{
	rules_t *r = load("header SPOOF eval:check_fromname_spoof()\n"
	                  "fns_ignore_dkim GoogleGroups.com\n");
	const char *spoof = "From: \"service@paypal.com\" <alerts@evil-mail.net>\n"
	                    "To: bob@example.org\nSubject: x\n\nx\n";
	cr_assert(hits_auth(r, spoof, "SPOOF", AUTH_NONE, NULL));
	cr_assert_not(hits_auth(r, spoof, "SPOOF", AUTH_NONE, "d=googlegroups.com: dkim=pass"),
	              "a valid signature of a listed domain");
	cr_assert(hits_auth(r, spoof, "SPOOF", AUTH_NONE, "d=evil-mail.net: dkim=pass"));
	rules_free(r);
}

Test(rules_eval, html_text_match_sees_anchors_comments_and_titles)
{
	rules_t *r = load("body __HTML_LINK_IMAGE eval:html_text_match('anchor', '<img>')\n"
	                  "meta LINK_IMAGE __HTML_LINK_IMAGE\n"
	                  "body HTML_COMMENT_SAVED_URL eval:html_text_match('comment', "
	                  "'<!-- saved from url=\\(\\d{4}\\)')\n"
	                  "body T_LONG_TITLE eval:html_text_match('title', '.{20}')\n");
	const char *img = "Content-Type: text/html\n\n<a href=\"http://x.example/\"><img "
	                  "src=a.png></a>\n";
	const char *noimg = "Content-Type: text/html\n\n<a href=\"http://x.example/\">go</a><img "
	                    "src=a.png>\n";
	const char *saved =
	    "Content-Type: text/html\n\n<!-- saved from url=(0022)http://x.example/ "
	    "-->\n<title>a title that goes on and on</title>hi\n";
	cr_assert(unit_rules_hits(r, img, "LINK_IMAGE"));
	cr_assert_not(unit_rules_hits(r, noimg, "LINK_IMAGE"), "the image is outside the link");
	cr_assert(unit_rules_hits(r, saved, "HTML_COMMENT_SAVED_URL"));
	cr_assert_not(unit_rules_hits(r, img, "HTML_COMMENT_SAVED_URL"));
	cr_assert(unit_rules_hits(r, saved, "T_LONG_TITLE"));
	cr_assert_not(unit_rules_hits(r, img, "T_LONG_TITLE"));
	rules_free(r);
}

/*
 * An eval's regex argument matches as Perl's does, as a rule's pattern
 * does: PCRE2 10.42's auto-possessification made "x?" possessive here,
 * and "ax" went unmatched.
 */
Test(rules_eval, eval_regex_arguments_match_as_perl_does)
{
	rules_t *r = load("body T_POSS eval:html_text_match('title', 'ax?(?:b)?+x')\n");
	cr_assert(unit_rules_hits(r, "Content-Type: text/html\n\n<title>ax</title>hi\n", "T_POSS"));
	cr_assert_not(
	    unit_rules_hits(r, "Content-Type: text/html\n\n<title>a</title>hi\n", "T_POSS"));
	rules_free(r);
}

/*
 * An anchor's or a title's text grows run by run while its tag is open.
 * Each run used to copy the whole text so far: 64K one-byte runs (a
 * 256 KB part, "y<b>" over and over inside one <a>) took 2 GB of arena,
 * and one more copy per anchor past the 256 kept grew the 256th. Both
 * must stay in proportion to the message.
 */
Test(rules_eval, html_anchor_and_title_texts_grow_in_linear_memory, .timeout = 30)
{
	rules_t *r = load("body T_ANCHOR eval:html_text_match('anchor', '^yy')\n"
	                  "body T_TITLE eval:html_text_match('title', 'zzz')\n");
	static const char head[] = "Content-Type: text/html\n\n";
	size_t runs = 65536, cap = sizeof(head) + 300 * 8 + runs * 8 + 64;
	char *raw = malloc(cap), *o = raw;
	cr_assert_not_null(raw);
	o += sprintf(o, "%s", head);
	/* 300 anchors of one letter each: the texts past the 256th are not kept */
	for (int i = 0; i < 300; i++)
		o += sprintf(o, "<a>y</a>");
	o += sprintf(o, "<title>");
	for (size_t i = 0; i < runs; i++)
		o += sprintf(o, "z<b>");
	o += sprintf(o, "</title>\n");
	msg_t *m = msg_new(1 << 20);
	msg_parse_raw(m, raw, (size_t)(o - raw));
	mime_t *mi = mime_parse(m, NULL);
	hits_t *h = hits_new(msg_arena(m));
	rules_eval(r, m, mi, h, 0);
	size_t used = arena_used(msg_arena(m));
	cr_assert_lt(used, (size_t)64 << 20, "%zu bytes of arena for a %zu-byte message", used,
	             (size_t)(o - raw));
	cr_assert(hits_has(h, "T_TITLE"));
	cr_assert_not(hits_has(h, "T_ANCHOR"), "later anchors' texts joined the 256th");
	msg_free(m);
	free(raw);
	rules_free(r);
}

Test(rules_eval, uri_host_lists_match_parent_domains_with_exceptions)
{
	rules_t *r = load("body URI_HOST_IN_BLOCKLIST eval:check_uri_host_in_blocklist()\n"
	                  "body URI_HOST_IN_WELCOMELIST eval:check_uri_host_in_whitelist()\n"
	                  "blocklist_uri_host bad.example !ok.bad.example 192.0.2.7\n"
	                  "welcomelist_uri_host Good.Example\n");
	cr_assert(unit_rules_hits(r, "Subject: x\n\nsee http://www.bad.example/x now\n",
	                          "URI_HOST_IN_BLOCKLIST"));
	cr_assert_not(unit_rules_hits(r, "Subject: x\n\nsee http://www.ok.bad.example/x now\n",
	                              "URI_HOST_IN_BLOCKLIST"),
	              "the exception is more specific");
	cr_assert(unit_rules_hits(r, "Subject: x\n\nsee http://192.0.2.7:8080/x now\n",
	                          "URI_HOST_IN_BLOCKLIST"));
	cr_assert_not(unit_rules_hits(r, "Subject: x\n\nsee http://notbad.example/x now\n",
	                              "URI_HOST_IN_BLOCKLIST"),
	              "labels, not suffixes");
	cr_assert_not(unit_rules_hits(r, "Subject: x\n\nwrite to mailto:a@bad.example\n",
	                              "URI_HOST_IN_BLOCKLIST"),
	              "mailto: is left out");
	cr_assert(unit_rules_hits(r, "Subject: x\n\nsee https://user@good.example/ now\n",
	                          "URI_HOST_IN_WELCOMELIST"));
	rules_free(r);
}

Test(rules_eval, uri_host_listed_reads_the_named_lists)
{
	rules_t *r = load("header PDS_OTHER_BAD_TLD eval:check_uri_host_listed('SUSP_NTLD')\n"
	                  "header IN_BLOCK eval:check_uri_host_listed('BLOCK')\n"
	                  "header IN_OTHER eval:check_uri_host_listed('OTHER')\n"
	                  "enlist_uri_host (SUSP_NTLD) top xyz !good.xyz\n"
	                  "enlist_uri_host (OTHER) gone.example kept.example 2001:db8::1\n"
	                  "delist_uri_host (OTHER) gone.example\n"
	                  "blocklist_uri_host bad.example\n");
	cr_assert(unit_rules_hits(r, "Subject: x\n\nsee http://shop.example.TOP/x now\n",
	                          "PDS_OTHER_BAD_TLD"),
	          "a top-level domain listed");
	cr_assert_not(
	    unit_rules_hits(r, "Subject: x\n\nsee http://www.good.xyz/ now\n", "PDS_OTHER_BAD_TLD"),
	    "an exception below it");
	cr_assert_not(unit_rules_hits(r, "Subject: x\n\nsee http://shop.example.com/ now\n",
	                              "PDS_OTHER_BAD_TLD"));
	cr_assert(unit_rules_hits(r, "Subject: x\n\nsee http://www.bad.example/ now\n", "IN_BLOCK"),
	          "blocklist_uri_host is the list BLOCK");
	cr_assert_not(
	    unit_rules_hits(r, "Subject: x\n\nsee http://www.bad.example/ now\n", "IN_OTHER"));
	cr_assert_not(
	    unit_rules_hits(r, "Subject: x\n\nsee http://a.gone.example/ now\n", "IN_OTHER"),
	    "delisted");
	cr_assert(unit_rules_hits(r, "Subject: x\n\nsee http://a.kept.example/ now\n", "IN_OTHER"));
	cr_assert(unit_rules_hits(r, "Subject: x\n\n<http://[2001:db8::1]/x>\n", "IN_OTHER"),
	          "an address literal without its brackets");
	cr_assert(
	    unit_rules_hits(r, "Subject: x\n\nExtended Benefits.Top Here\n", "PDS_OTHER_BAD_TLD"),
	    "a host name written without a scheme");
	cr_assert(unit_rules_hits(r, "Subject: x\n\nsee shop.example.top/offer now\n",
	                          "PDS_OTHER_BAD_TLD"));
	cr_assert_not(unit_rules_hits(r, "Subject: x\n\nwrite to sales@shop.example.top now\n",
	                              "PDS_OTHER_BAD_TLD"),
	              "a mail address is no link");
	cr_assert_not(unit_rules_hits(r, "Subject: x\n\nsee http://a.example/page.top now\n",
	                              "PDS_OTHER_BAD_TLD"),
	              "a link's path is not a host");
	cr_assert_not(
	    unit_rules_hits(r, "Subject: x\n\nthe file.notatld is here\n", "PDS_OTHER_BAD_TLD"));
	cr_assert_not(unit_rules_hits(r, "Subject: x\n\nsee shop.example.com/offer.top now\n",
	                              "PDS_OTHER_BAD_TLD"),
	              "a schemeless link's path is not a host either");
	cr_assert_not(
	    unit_rules_hits(r, "Subject: x\n\nmore info...TOP offers\n", "PDS_OTHER_BAD_TLD"),
	    "an empty label: no host name");
	rules_free(r);
	diag_t *d = diag_new();
	cr_assert_null(rules_load_text("t.cf", "enlist_uri_host LIST a.example\n", NULL, d));
	cr_assert(unit_diag_has(d, "t.cf:1: enlist_uri_host: expected (LISTNAME) and host names"));
	diag_free(d);
}

/*
 * A list kept in order by host: entries added out of order, some delisted,
 * some turned into exceptions by a later line, are each found as the last
 * line left them, and a parent domain still decides for its subdomains.
 */
Test(rules_eval, uri_host_lists_of_many_entries_answer_for_each)
{
	enum { N = 61 };
	char *cf = NULL;
	size_t cflen = 0;
	FILE *f = open_memstream(&cf, &cflen);
	fprintf(f, "body IN_LIST eval:check_uri_host_listed('MANY')\n");
	/* 17 is prime to N: every host once, far from sorted */
	for (int i = 0; i < N; i++)
		fprintf(f, "enlist_uri_host (MANY) h%d.example\n", (i * 17) % N);
	for (int i = 0; i < N; i += 3)
		fprintf(f, "delist_uri_host (MANY) h%d.example\n", i);
	for (int i = 1; i < N; i += 5)
		fprintf(f, "enlist_uri_host (MANY) !h%d.example\n", i);
	fclose(f);
	rules_t *r = load(cf);
	free(cf);
	for (int i = 0; i < N; i++) {
		bool want = i % 3 != 0 && i % 5 != 1;
		char msg[128];
		snprintf(msg, sizeof(msg), "Subject: x\n\nsee http://www.h%d.example/x now\n", i);
		cr_assert_eq(unit_rules_hits(r, msg, "IN_LIST"), want, "h%d.example", i);
	}
	cr_assert_not(
	    unit_rules_hits(r, "Subject: x\n\nsee http://h1000.example/x now\n", "IN_LIST"));
	cr_assert_not(unit_rules_hits(r, "Subject: x\n\nsee http://example/x now\n", "IN_LIST"));
	rules_free(r);
}

/*
 * The schemeless host scan runs only over the stretches between end
 * delimiters that hold a host's dot; each case puts a host where that cut
 * could go wrong, and gives what a scan of the whole text gives.
 */
Test(rules_eval, schemeless_hosts_are_found_wherever_they_stand)
{
	rules_t *r = load("header BAD_TLD eval:check_uri_host_listed('SUSP_NTLD')\n"
	                  "enlist_uri_host (SUSP_NTLD) top\n");
	static const struct {
		const char *body;
		bool hit;
	} c[] = {
	    {"shop.example.top", true}, /* the body's last bytes, no line break */
	    {"end. of it. and so... on shop.example.top here\n", true},
	    {"the file.notatld then shop.example.top\n", true},
	    {"<shop.example.top>\n", true},
	    {"a@b.com,shop.example.top\n", true},             /* the address skipped, then a host */
	    {"(see)shop.example.top\n", true},                /* after ")": a host's lookbehind */
	    {"http://a.example/x,shop.example.top\n", false}, /* one link to the blank */
	    {"www.a.example/shop.example.top\n", false},
	    {"mailto:x@shop.example.top\n", false},
	    {"x@shop.example.top\n", false},
	    {"http://a.example/ shop.example.top\n", true},
	    {"shop.example.TOP.\n", true},
	    {"shop.example.to\n", false},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char msg[256];
		snprintf(msg, sizeof(msg), "Subject: x\n\n%s", c[i].body);
		cr_assert_eq(unit_rules_hits(r, msg, "BAD_TLD"), c[i].hit, "case %zu: %s", i,
		             c[i].body);
	}
	rules_free(r);
}

/* ---------------------------------------------------------------- AntiVirus */

#define MP_HEAD                                                                                    \
	"From: a@example.com\nSubject: x\nMIME-Version: 1.0\n"                                     \
	"Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: "                     \
	"text/plain\n\nhi\n--b\n"

Test(rules_eval, microsoft_executable_by_name_base64_header_or_uuencode)
{
	rules_t *r = load("body MICROSOFT_EXECUTABLE eval:check_microsoft_executable()\n");
	const char *named =
	    MP_HEAD "Content-Type: application/octet-stream; name=\"Invoice.PDF.exe\"\n"
	            "Content-Transfer-Encoding: base64\n\nAAAA\n--b--\n";
	const char *mz = MP_HEAD "Content-Type: application/octet-stream; name=\"invoice.zip\"\n"
	                         "Content-Transfer-Encoding: base64\n\n"
	                         "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\n--b--\n";
	const char *zip = MP_HEAD "Content-Type: application/zip; name=\"invoice.zip\"\n"
	                          "Content-Transfer-Encoding: base64\n\n"
	                          "UEsDBBQAAAAIAAAAIQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n--b--\n";
	const char *uue = MP_HEAD "Content-Type: text/plain\n\nbegin 644 a.exe\n"
	                          "M35J0``,````$````__\\``+@`````````0```````````````````````````\n"
	                          "end\n--b--\n";
	const char *disposition =
	    MP_HEAD "Content-Type: application/octet-stream\n"
	            "Content-Disposition: attachment; filename=\"run.exe\"\n\nAAAA\n--b--\n";
	cr_assert(unit_rules_hits(r, named, "MICROSOFT_EXECUTABLE"), "an .exe name, any case");
	cr_assert(unit_rules_hits(r, mz, "MICROSOFT_EXECUTABLE"), "base64 of an MZ/PE header");
	cr_assert_not(unit_rules_hits(r, zip, "MICROSOFT_EXECUTABLE"));
	cr_assert(unit_rules_hits(r, uue, "MICROSOFT_EXECUTABLE"), "uuencoded in a text part");
	cr_assert_not(unit_rules_hits(r, disposition, "MICROSOFT_EXECUTABLE"),
	              "SpamAssassin reads the name from Content-Type only");
	rules_free(r);
}

Test(rules_eval, suspect_name_extension_against_content_type)
{
	rules_t *r = load("body MIME_SUSPECT_NAME eval:check_suspect_name()\n");
	const char *gif_as_exe =
	    MP_HEAD "Content-Type: application/x-msdownload; name=\"photo.gif\"\n"
	            "\nAAAA\n--b--\n";
	const char *gif = MP_HEAD "Content-Type: image/gif; name=\"photo.gif\"\n\nAAAA\n--b--\n";
	const char *exe_as_image =
	    MP_HEAD "Content-Type: image/jpeg; name=\"photo.jpg.exe\"\n\nAAAA\n--b--\n";
	const char *octet =
	    MP_HEAD "Content-Type: application/octet-stream; name=\"photo.gif\"\n\nAAAA\n--b--\n";
	const char *doc =
	    MP_HEAD "Content-Type: application/msword; name=\"a.doc\"\n\nAAAA\n--b--\n";
	const char *xls =
	    MP_HEAD "Content-Type: application/vnd.ms-excel; name=\"a.xls\"\n\nAAAA\n--b--\n";
	const char *html = MP_HEAD "Content-Type: application/pdf; name=\"a.htm\"\n\nAAAA\n--b--\n";
	cr_assert(unit_rules_hits(r, gif_as_exe, "MIME_SUSPECT_NAME"));
	cr_assert_not(unit_rules_hits(r, gif, "MIME_SUSPECT_NAME"));
	cr_assert(unit_rules_hits(r, exe_as_image, "MIME_SUSPECT_NAME"),
	          "the last extension counts");
	cr_assert_not(unit_rules_hits(r, octet, "MIME_SUSPECT_NAME"), "octet-stream fits any name");
	cr_assert_not(unit_rules_hits(r, doc, "MIME_SUSPECT_NAME"));
	cr_assert_not(unit_rules_hits(r, xls, "MIME_SUSPECT_NAME"),
	              "vnd. is dropped: application/ms-excel");
	cr_assert(unit_rules_hits(r, html, "MIME_SUSPECT_NAME"));
	rules_free(r);
}

/* ---------------------------------------------------------------- VBounce */

/* SpamAssassin 4.0.1 loads VBounce by default (v320.pre): its block is read. */
Test(rules_eval, bounce_relays_found_in_a_quoted_received_field)
{
#define VB_RULES                                                                                   \
	"ifplugin Mail::SpamAssassin::Plugin::VBounce\n"                                           \
	"body __MY_SERVERS_FOUND eval:check_welcomelist_bounce_relays()\n"                         \
	"body OLD eval:check_whitelist_bounce_relays()\n"                                          \
	"body __HAVE_BOUNCE_RELAYS eval:have_any_bounce_relays()\n"                                \
	"endif\n"                                                                                  \
	"meta MY_SERVERS __MY_SERVERS_FOUND\n"                                                     \
	"meta HAVE_RELAYS __HAVE_BOUNCE_RELAYS\n"
	rules_t *r = load(VB_RULES "welcomelist_bounce_relays out*.example.com\n");
	rules_t *none = load(VB_RULES);
	const char *in_text = "From: MAILER-DAEMON@mx.example.net\nSubject: failure\n\n"
	                      "> Received: by OUT2.example.com (Postfix, from userid 1007)\n";
	const char *attached =
	    "From: MAILER-DAEMON@mx.example.net\nSubject: failure\nMIME-Version: 1.0\n"
	    "Content-Type: multipart/report; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\n"
	    "not delivered\n--b\nContent-Type: message/rfc822\n\n"
	    "Received: from client (client [192.0.2.1])\n"
	    "\tby out1.example.com\n (Postfix) with ESMTP id 1\n"
	    "From: me@example.com\n\nhello\n--b--\n";
	const char *foreign = "From: MAILER-DAEMON@mx.example.net\nSubject: failure\n\n"
	                      "Received: by mail.example.org (Postfix)\n";
	cr_assert(unit_rules_hits(r, in_text, "MY_SERVERS"));
	cr_assert(unit_rules_hits(r, in_text, "OLD"));
	cr_assert(unit_rules_hits(r, attached, "MY_SERVERS"),
	          "a folded Received field of the bounced message");
	cr_assert_not(unit_rules_hits(r, foreign, "MY_SERVERS"));
	cr_assert(unit_rules_hits(r, foreign, "HAVE_RELAYS"));
	cr_assert_not(unit_rules_hits(none, in_text, "MY_SERVERS"), "no relays listed");
	cr_assert_not(unit_rules_hits(none, in_text, "HAVE_RELAYS"));
	rules_free(r);
	rules_free(none);
}

/* ImageInfo and PDFInfo: images and PDFs built here, base64 as mail carries them. */
static const char gif_800x600[] = "R0lGODlhIANYAvcAAA==";                         /* w 800, h 600 */
static const char png_264x127[] = "iVBORw0KGgoAAAANSUhEUgAAAQgAAAB/CAIAAAAAAAAA"; /* w 264, h 127 */
static const char jpeg_1024x768[] = "/9j/4AAQSkZJRgABAQAAAQABAAD/wAARCAMABAADAAAAAAAAAAAA";

/* A message with a text part and one attachment of type ct, named name, holding data. */
static char *one_part(char *buf, size_t n, const char *text, const char *ct, const char *name,
                      const char *cte, const char *data)
{
	snprintf(buf, n,
	         "Subject: s\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n"
	         "--B\nContent-Type: text/plain\n\n%s\n"
	         "--B\nContent-Type: %s; name=\"%s\"\nContent-Transfer-Encoding: %s\n"
	         "Content-Disposition: attachment; filename=\"%s\"\n\n%s\n--B--\n",
	         text, ct, name, cte, name, data);
	return buf;
}

static const char image_rules[] =
    "body GIF1 eval:image_count('gif','1','1')\n"
    "body ALL2 eval:image_count('all',2)\n"
    "body PNG_SIZE eval:image_size_exact('png','127','264')\n"
    "body GIF_SIZE eval:image_size_exact('all',600,800)\n"
    "body GIF_SIZE_SWAPPED eval:image_size_exact('all',800,600)\n"
    "body JPEG_RANGE eval:image_size_range('jpeg', 700, 1000, 800, 1100)\n"
    "body JPEG_MIN eval:image_size_range('jpeg', 769, 1000)\n"
    "body COVER eval:pixel_coverage('all',400000,500000)\n"
    "body COVER_GIF eval:pixel_coverage('gif',62500,300000)\n"
    "body NAMED eval:image_named('image001.gif')\n"
    "body NAMED_RE eval:image_name_regex('^image\\d+\\.gif$')\n"
    "body RATIO eval:image_to_text_ratio('all', '0.000', '0.008')\n";

Test(rules_eval, image_info_reads_gif_png_and_jpeg_headers)
{
	rules_t *r = load(image_rules);
	char m[4096];
	one_part(m, sizeof(m), "hello", "image/gif", "image001.gif", "base64", gif_800x600);
	cr_assert(unit_rules_hits(r, m, "GIF1"));
	cr_assert_not(unit_rules_hits(r, m, "ALL2"));
	cr_assert(unit_rules_hits(r, m, "GIF_SIZE"), "height then width");
	cr_assert_not(unit_rules_hits(r, m, "GIF_SIZE_SWAPPED"));
	cr_assert(unit_rules_hits(r, m, "COVER"), "800 x 600 = 480000 pixels");
	cr_assert_not(unit_rules_hits(r, m, "COVER_GIF"));
	cr_assert(unit_rules_hits(r, m, "NAMED"));
	cr_assert(unit_rules_hits(r, m, "NAMED_RE"));
	cr_assert(unit_rules_hits(r, m, "RATIO"), "a short text beside a large image");
	one_part(m, sizeof(m), "hello", "image/gif", "other.gif", "base64", gif_800x600);
	cr_assert_not(unit_rules_hits(r, m, "NAMED"));
	cr_assert_not(unit_rules_hits(r, m, "NAMED_RE"));
	one_part(m, sizeof(m), "hello", "image/png", "a.png", "base64", png_264x127);
	cr_assert(unit_rules_hits(r, m, "PNG_SIZE"));
	cr_assert_not(unit_rules_hits(r, m, "GIF1"));
	cr_assert(unit_rules_hits(r, m, "RATIO"), "8 characters for 33528 pixels");
	char text[301];
	memset(text, 'w', 300);
	text[300] = '\0';
	one_part(m, sizeof(m), text, "image/png", "a.png", "base64", png_264x127);
	cr_assert_not(unit_rules_hits(r, m, "RATIO"), "over 0.008 characters a pixel");
	one_part(m, sizeof(m), "hello", "image/jpeg", "a.jpg", "base64", jpeg_1024x768);
	cr_assert(unit_rules_hits(r, m, "JPEG_RANGE"));
	cr_assert_not(unit_rules_hits(r, m, "JPEG_MIN"), "768 is under the minimum height");
	/* SpamAssassin reads only base64 images */
	one_part(m, sizeof(m), "hello", "image/gif", "image001.gif", "7bit", "GIF89a");
	cr_assert_not(unit_rules_hits(r, m, "GIF1"));
	cr_assert_not(unit_rules_hits(r, "Subject: s\n\nno images\n", "GIF1"));
	snprintf(m, sizeof(m),
	         "Subject: s\nContent-Type: multipart/mixed; boundary=\"B\"\n\n"
	         "--B\nContent-Type: image/gif\nContent-Transfer-Encoding: base64\n\n%s\n"
	         "--B\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\n%s\n--B--\n",
	         gif_800x600, png_264x127);
	cr_assert(unit_rules_hits(r, m, "ALL2"));
	cr_assert(unit_rules_hits(r, m, "GIF1"));
	cr_assert(unit_rules_hits(r, m, "PNG_SIZE"));
	cr_assert_not(unit_rules_hits(r, m, "COVER"), "480000 + 33528 pixels is over the maximum");
	rules_free(r);
}

Test(rules_eval, image_info_survives_malformed_images)
{
	rules_t *r = load(image_rules);
	/* each: counted as an image of its type, but no size read and nothing over-read */
	static const struct {
		const char *ct, *data;
	} bad[] = {
	    {"image/gif", "R0lGODlhIA=="},             /* GIF header cut after one byte of width */
	    {"image/png", "iVBORw0KGgoAAAANSUhEUgAA"}, /* IHDR cut inside the width */
	    {"image/jpeg", "/9j/4OpgSkY="},            /* APP0 claiming 60000 bytes */
	    {"image/jpeg", "/9j/wAARCAM="},            /* SOF0 cut inside the height */
	    {"image/jpeg", "/9g="},                    /* SOI cut */
	    {"image/png", ""},                         /* empty */
	    {"image/gif", "!!!!"},                     /* not base64 */
	};
	char m[4096];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		one_part(m, sizeof(m), "hello", bad[i].ct, "image001.gif", "base64", bad[i].data);
		cr_assert_not(unit_rules_hits(r, m, "COVER"), "case %zu", i);
		cr_assert_not(unit_rules_hits(r, m, "JPEG_RANGE"), "case %zu", i);
		cr_assert_not(unit_rules_hits(r, m, "NAMED"),
		              "case %zu: a name counts once the size is read", i);
		cr_assert_not(unit_rules_hits(r, m, "RATIO"), "case %zu", i);
	}
	one_part(m, sizeof(m), "hello", "image/gif", "a.gif", "base64", "R0lGODlhIA==");
	cr_assert(unit_rules_hits(r, m, "GIF1"), "a GIF without a size is still a GIF");
	rules_free(r);
}

/* PDFs built here: an image drawn with "cm", another given by /Width and /Height. */
static char *b64n(char *out, size_t n, const char *in, size_t l)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < l && o + 5 < n; i += 3) {
		unsigned v = (unsigned char)in[i] << 16;
		if (i + 1 < l)
			v |= (unsigned char)in[i + 1] << 8;
		if (i + 2 < l)
			v |= (unsigned char)in[i + 2];
		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		out[o++] = i + 1 < l ? t[v >> 6 & 63] : '=';
		out[o++] = i + 2 < l ? t[v & 63] : '=';
		if (o % 76 == 0)
			out[o++] = '\n';
	}
	out[o] = '\0';
	return out;
}

static char *b64(char *out, size_t n, const char *in)
{
	return b64n(out, n, in, strlen(in));
}

static const char pdf_rules[] = "body PDF1 eval:pdf_count(1,1)\n"
                                "body PDF2 eval:pdf_count(2)\n"
                                "body PDF_IMG2 eval:pdf_image_count(2,2)\n"
                                "body PDF_COVER eval:pdf_pixel_coverage(1,100000)\n"
                                "body PDF_EXACT eval:pdf_image_size_exact(150,400)\n"
                                "body PDF_TOTAL eval:pdf_image_size_exact(250,600)\n"
                                "body PDF_RANGE eval:pdf_image_size_range(140, 300, 240, 800)\n"
                                "body PDF_NAMED eval:pdf_named('mytest.pdf')\n"
                                "body PDF_ENC eval:pdf_is_encrypted()\n"
                                "body PDF_EMPTY eval:pdf_is_empty_body()\n"
                                "body PDF_RATIO eval:pdf_image_to_text_ratio(0.000, 0.008)\n";

static const char pdf_doc[] = "%PDF-1.4\n"
                              "1 0 obj\n<</Type/XObject/Subtype/Image/Width 400/Height 150>>\n"
                              "q\n2 0 obj /Image\n200 0 0 100 0 0 cm\nQ\n%%EOF\n";

Test(rules_eval, pdf_info_counts_names_and_sizes)
{
	rules_t *r = load(pdf_rules);
	char data[2048], m[4096];
	b64(data, sizeof(data), pdf_doc);
	one_part(m, sizeof(m), "", "application/pdf", "mytest.pdf", "base64", data);
	cr_assert(unit_rules_hits(r, m, "PDF1"));
	cr_assert_not(unit_rules_hits(r, m, "PDF2"));
	cr_assert(unit_rules_hits(r, m, "PDF_IMG2"), "one image per form");
	cr_assert(unit_rules_hits(r, m, "PDF_COVER"), "400*150 + 200*100 = 80000");
	cr_assert(unit_rules_hits(r, m, "PDF_EXACT"));
	cr_assert(unit_rules_hits(r, m, "PDF_TOTAL"), "the summed heights and widths count too");
	cr_assert(unit_rules_hits(r, m, "PDF_RANGE"),
	          "150 x 400; the sum, 250 x 600, is over the maximum");
	cr_assert(unit_rules_hits(r, m, "PDF_NAMED"));
	cr_assert_not(unit_rules_hits(r, m, "PDF_ENC"));
	cr_assert(unit_rules_hits(r, m, "PDF_EMPTY"), "no text beside the PDF");
	one_part(m, sizeof(m), "read the attached file please", "application/pdf", "mytest.pdf",
	         "base64", data);
	cr_assert_not(unit_rules_hits(r, m, "PDF_EMPTY"));
	cr_assert(unit_rules_hits(r, m, "PDF_RATIO"), "29 characters for 80000 pixels");
	/* octet-stream counts only under a .pdf (or .fdf) name */
	one_part(m, sizeof(m), "x", "application/octet-stream", "MyTest.PDF", "base64", data);
	cr_assert(unit_rules_hits(r, m, "PDF1"));
	cr_assert_not(unit_rules_hits(r, m, "PDF_NAMED"), "names compare exactly");
	one_part(m, sizeof(m), "x", "application/octet-stream", "mytest.bin", "base64", data);
	cr_assert_not(unit_rules_hits(r, m, "PDF1"));
	b64(data, sizeof(data), "%PDF-1.6\n/Encrypt 5 0 R\n%%EOF\n");
	one_part(m, sizeof(m), "x", "application/pdf", "e.pdf", "base64", data);
	cr_assert(unit_rules_hits(r, m, "PDF_ENC"));
	cr_assert_not(unit_rules_hits(r, m, "PDF_IMG2"));
	cr_assert_not(unit_rules_hits(r, m, "PDF_COVER"), "no image, no coverage");
	cr_assert_not(unit_rules_hits(r, m, "PDF_RANGE"));
	rules_free(r);
}

/*
 * PDFInfo's three MD5 digests. The expected values are those SpamAssassin
 * 4.0.1 (PDFInfo loaded, -D pdfinfo) prints for this document: CRLF line
 * ends, a comment, a box, a size line, trailing blanks, an image whose
 * "cm" line ends the fuzzy part once its CR is stripped, text after
 * "stream" that it leaves out.
 */
Test(rules_eval, pdf_match_md5_and_fuzzy_md5)
{
	rules_t *r = load("body P_MD5 eval:pdf_match_md5('b8caef29572045145f03e0f51f96024e')\n"
	                  "body P_MD5_NO eval:pdf_match_md5('B8CAEF29572045145F03E0F51F96024F')\n"
	                  "body P_FUZZY1 eval:pdf_match_fuzzy_md5('2A599E3725D2B0F11F7DD9D612AA6204')\n"
	                  "body P_FUZZY2 eval:pdf_match_fuzzy_md5('8A131A2BF2EFD78F0ADA46301F8796C1')\n"
	                  "body P_FUZZY_NO eval:pdf_match_fuzzy_md5('B8CAEF29572045145F03E0F51F96024E')\n"
	                  "body P_SIZE eval:pdf_image_size_exact(200,300)\n");
	static const char doc[] =
	    "%PDF-1.5\r\n%\xe2\xe3\xcf\xd3\r\n1 0 obj  \r\n<</Type/Catalog/Pages 2 0 R>>\r\n"
	    "endobj\r\n/MediaBox [0 0 612 792]\r\n/Producer(Sift test)   \r\n\r\n/Image /XObject\r\n"
	    "/Width 640\r\n300 0 0 200 0 0 cm\r\n/Length 44\r\nstream\r\nBT /F1 12 Tf (Hello) Tj "
	    "ET\r\nendstream\r\n/Title(After)\r\n%%EOF\r\n";
	char data[2048], m[4096];
	b64(data, sizeof(data), doc);
	one_part(m, sizeof(m), "see attached", "application/pdf", "t.pdf", "base64", data);
	cr_assert(unit_rules_hits(r, m, "P_MD5"), "the data's digest, given in lower case");
	cr_assert_not(unit_rules_hits(r, m, "P_MD5_NO"));
	cr_assert(unit_rules_hits(r, m, "P_FUZZY1"), "the first lines' digest");
	cr_assert(unit_rules_hits(r, m, "P_FUZZY2"), "the tag layout's digest");
	cr_assert_not(unit_rules_hits(r, m, "P_FUZZY_NO"), "the data's digest is not a fuzzy one");
	cr_assert(unit_rules_hits(r, m, "P_SIZE"),
	          "a cm line ended by CR gives its size in the first lines");
	/* the same document as text/plain is no PDF: no digest */
	one_part(m, sizeof(m), "see attached", "text/plain", "t.txt", "base64", data);
	cr_assert_not(unit_rules_hits(r, m, "P_MD5"));
	rules_free(r);
	diag_t *d = diag_new();
	cr_assert_null(rules_load_text("bad.cf", "body A eval:pdf_match_md5('C359F8F89B')\n", NULL, d));
	cr_assert(
	    unit_diag_has(d, "bad.cf:1: body rule A: eval:pdf_match_md5: expected an MD5 digest"));
	diag_free(d);
}

/*
 * PDFInfo's document details and name regex. SpamAssassin 4.0.1 (PDFInfo
 * loaded) gives the same hits on this document.
 */
Test(rules_eval, pdf_details_and_names_match_regexes)
{
	rules_t *r = load("body GMD_PRODUCER_GPL eval:pdf_match_details('producer','/^(?:gnu|gpl) "
	                  "ghostscript/i')\n"
	                  "body D_CREATED eval:pdf_match_details('created','/^200707/')\n"
	                  "body D_MOD eval:pdf_match_details('modified','/^20070703144220$/')\n"
	                  "body D_TITLE eval:pdf_match_details('title','/^Microsoft Word "
	                  "\\(draft\\) - Document1$/')\n"
	                  "body D_CREATOR eval:pdf_match_details('creator','/^Writer$/')\n"
	                  "body D_AUTHOR eval:pdf_match_details('author','/^HP_Admin$/')\n"
	                  "body D_AUTHOR_NO eval:pdf_match_details('author','/^colet$/')\n"
	                  "body D_TITLE2 eval:pdf_match_details('title','/^Second$/')\n"
	                  "body N_RE eval:pdf_name_regex('/^(?:my|your)test\\.pdf$/')\n"
	                  "body N_RE_NO eval:pdf_name_regex('/^IMG\\D+\\.\\.PDF$/i')\n");
	/* a literal string, octal escapes of UTF-16, hex strings with blanks, a date with a zone */
	static const char doc[] =
	    "%PDF-1.4\n1 0 obj\n<</Producer(GPL Ghostscript "
	    "8.15)\n/CreationDate(D:20070703144220)\n"
	    "/ModDate (D:20070703144220-06'00')\n/Title(Microsoft Word \\(draft\\) - Document1)\n"
	    "/Creator<FEFF005700720069007400650072>\n"
	    "/Author(\\376\\377\\000H\\000P\\000_\\000A\\000d\\000m\\000i\\000n)>>endobj\n"
	    "<</Title<53 65 636F6E64>>>\n%%EOF\n";
	char data[2048], m[4096];
	b64(data, sizeof(data), doc);
	one_part(m, sizeof(m), "x", "application/pdf", "mytest.pdf", "base64", data);
	const char *hit[] = {"GMD_PRODUCER_GPL", "D_CREATED", "D_MOD",    "D_TITLE",
	                     "D_CREATOR",        "D_AUTHOR",  "D_TITLE2", "N_RE"};
	for (size_t i = 0; i < sizeof(hit) / sizeof(hit[0]); i++)
		cr_assert(unit_rules_hits(r, m, hit[i]), "%s should hit", hit[i]);
	cr_assert_not(unit_rules_hits(r, m, "D_AUTHOR_NO"));
	cr_assert_not(unit_rules_hits(r, m, "N_RE_NO"));
	/* not a PDF (no magic): nothing is read from it */
	b64(data, sizeof(data), doc + 9);
	one_part(m, sizeof(m), "x", "application/pdf", "mytest.pdf", "base64", data);
	cr_assert_not(unit_rules_hits(r, m, "GMD_PRODUCER_GPL"));
	cr_assert_not(unit_rules_hits(r, m, "N_RE"));
	rules_free(r);
	diag_t *d = diag_new();
	cr_assert_null(rules_load_text("bad.cf",
	                               "body A eval:pdf_match_details('colour','/x/')\n"
	                               "body B eval:pdf_match_details('title','x')\n"
	                               "body C eval:pdf_name_regex('/x(/')\n",
	                               NULL, d));
	cr_assert_eq(diag_errors(d), 3);
	cr_assert(strstr(diag_text(d, 0), "bad.cf:1: body rule A: eval:pdf_match_details: unknown"
	                                  " detail") != NULL,
	          "%s", diag_text(d, 0));
	cr_assert(strstr(diag_text(d, 1), "bad.cf:2:") != NULL);
	cr_assert(strstr(diag_text(d, 2),
	                 "bad.cf:3: body rule C: eval:pdf_name_regex: bad regex") != NULL);
	diag_free(d);
}

Test(rules_eval, pdf_info_ignores_what_is_not_a_pdf)
{
	rules_t *r = load(pdf_rules);
	char data[4096], m[8192];
	/* no magic: counted as a PDF part (SpamAssassin does), nothing read from it */
	b64(data, sizeof(data), "not a pdf\n/Encrypt\n/Image\n200 0 0 100 0 0 cm\n");
	one_part(m, sizeof(m), "x", "application/pdf", "mytest.pdf", "base64", data);
	cr_assert(unit_rules_hits(r, m, "PDF1"));
	cr_assert_not(unit_rules_hits(r, m, "PDF_ENC"));
	cr_assert_not(unit_rules_hits(r, m, "PDF_NAMED"));
	cr_assert_not(unit_rules_hits(r, m, "PDF_COVER"));
	/* /Width and /Height on lines of their own give no size, as in SpamAssassin */
	b64(data, sizeof(data), "%PDF-1.4\n/Image\n/Width 400\n/Height 150\n/Width /Height 3\n");
	one_part(m, sizeof(m), "x", "application/pdf", "a.pdf", "base64", data);
	cr_assert_not(unit_rules_hits(r, m, "PDF_EXACT"));
	/* huge numbers, a cut line, binary bytes: no crash, no hit */
	b64(data, sizeof(data),
	    "%PDF-1.4\n/Image/Width 99999999999999999999999/Height 9\n"
	    "1 2 3 4 5 6 c\n\x01\x02/Image /Width 1\n/Width");
	one_part(m, sizeof(m), "x", "application/pdf", "a.pdf", "base64", data);
	cr_assert_not(unit_rules_hits(r, m, "PDF_EXACT"));
	cr_assert(unit_rules_hits(r, m, "PDF1"));
	cr_assert_not(unit_rules_hits(r, "Subject: s\n\nno pdf\n", "PDF_EMPTY"));
	rules_free(r);
}

Test(rules_eval, image_info_reads_every_cut_of_an_image_within_bounds)
{
	rules_t *r = load(image_rules);
	/* the three test images, decoded; every prefix is parsed (run under ASan in CI) */
	static const struct {
		const char *ct, *bytes;
		size_t len;
	} img[] = {
	    {"image/gif", "GIF89a\x20\x03\x58\x02\xf7\x00\x00", 13},
	    {"image/png",
	     "\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x01\x08\x00\x00\x00\x7f\x08\x02\x00\x00"
	     "\x00\x00\x00\x00\x00",
	     33},
	    {"image/jpeg",
	     "\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xc0\x00\x11"
	     "\x08"
	     "\x03\x00\x04\x00\x03",
	     29},
	};
	char data[128], m[1024];
	for (size_t i = 0; i < 3; i++)
		for (size_t len = 0; len <= img[i].len; len++) {
			b64n(data, sizeof(data), img[i].bytes, len);
			one_part(m, sizeof(m), "hello", img[i].ct, "image001.gif", "base64", data);
			/* a size is read only once the header holds it whole */
			bool whole = len >= (i == 0 ? 10 : i == 1 ? 24 : 29);
			cr_assert_eq(unit_rules_hits(r, m, "COVER") ||
			                 unit_rules_hits(r, m, "PNG_SIZE") ||
			                 unit_rules_hits(r, m, "JPEG_RANGE"),
			             whole, "image %zu cut at %zu", i, len);
		}
	rules_free(r);
}

/*
 * DecodeShortURLs' short_url() from the url_shortener lists, as its
 * _check_shortener_uri: a listed host; www. before a listed domain; a host
 * one level below a ".domain" entry; a two-label host only with a path.
 * Its features and block count only with rules_all_plugins, as
 * SpamAssassin's default install leaves the plugin unloaded and the
 * stock file then takes its uri fallback.
 */
static const char shorturl_rules[] =
    "if can(Mail::SpamAssassin::Plugin::DecodeShortURLs::has_short_url_redir)\n"
    "body SHORT eval:short_url()\n"
    "url_shortener bit.ly t.co .page.link\n"
    "url_shortener_get tinyurl.com gone.example\n"
    "clear_url_shortener gone.example\n"
    "endif\n"
    "if !can(Mail::SpamAssassin::Plugin::DecodeShortURLs::has_short_url_redir)\n"
    "uri SHORT_RE m,^https?://bit\\.ly/,i\n"
    "endif\n";

static void shorturl_msg(char *m, size_t cap, const char *link)
{
	snprintf(m, cap,
	         "From: a@example.net\nTo: b@example.org\nSubject: hi\n\nlook at %s today\n",
	         link);
}

Test(rules_eval, short_url_from_the_url_shortener_lists)
{
	rules_opts_t o;
	rules_opts_default(&o);
	o.all_plugins = true;
	rules_t *r = load_o(shorturl_rules, &o);
	cr_assert_lt(rules_find(r, "SHORT_RE"), 0, "the fallback is not read");
	char m[512];
	static const struct {
		const char *link;
		bool hit;
	} cases[] = {
	    {"https://bit.ly/3xYz", true},
	    {"http://BIT.LY/abc?utm=1", true},
	    {"https://bit.ly/", false},          /* two labels, no path */
	    {"https://bit.ly/?x=abc", false},    /* the query is cut off first */
	    {"http://www.bit.ly/abc", true},     /* www. before a listed domain */
	    {"http://me@t.co:8080/x", true},     /* user and port skipped */
	    {"https://app.page.link/q", true},   /* one level below .page.link */
	    {"https://a.b.page.link/q", false},  /* two levels below */
	    {"https://page.link/q", false},      /* ".page.link" is not page.link */
	    {"https://tinyurl.com/y6abc", true}, /* url_shortener_get */
	    {"https://gone.example/y6abc", false}, /* cleared */
	    {"https://bit.ly.example.com/x", false},
	    {"ftp://bit.ly/abc", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		shorturl_msg(m, sizeof(m), cases[i].link);
		cr_assert_eq(unit_rules_hits(r, m, "SHORT"), cases[i].hit, "%s", cases[i].link);
	}
	rules_free(r);
	/* without rules_all_plugins: the stock fallback, as SpamAssassin's default */
	r = load(shorturl_rules);
	cr_assert_lt(rules_find(r, "SHORT"), 0);
	shorturl_msg(m, sizeof(m), "https://bit.ly/3xYz");
	cr_assert(unit_rules_hits(r, m, "SHORT_RE"));
	rules_free(r);
	/* clear_url_shortener alone empties the lists; a bad domain fails at file:line */
	r = load_o("body SHORT eval:short_url()\nurl_shortener bit.ly\nclear_url_shortener\n", &o);
	shorturl_msg(m, sizeof(m), "https://bit.ly/3xYz");
	cr_assert_not(unit_rules_hits(r, m, "SHORT"));
	rules_free(r);
	diag_t *d = diag_new();
	cr_assert_null(rules_load_text("t.cf", "url_shortener bit.ly\nurl_shortener a/b\n", &o, d));
	cr_assert(unit_diag_has(d, "t.cf:2: url_shortener: expected domain names"));
	diag_free(d);
}
