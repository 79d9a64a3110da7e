/*
 * test_dns.c - the shared DNS service's pure parts: answers parsed from
 * wire-format responses (TXT strings joined per record, MX and PTR names,
 * AAAA, the NXDOMAIN/NODATA/SERVFAIL distinction, malformed input), the
 * TTL cache and the registered-domain policy. The resolver thread against
 * a real server is exercised by test_dnsbl.c and it_auth.sh.
 */
#include "config.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "diag.h"
#include "dns.h"

/* ------------------------------------------------------------ a response builder */

struct wire {
	unsigned char b[2048];
	size_t n;
	unsigned an, ns;
};

static void put16(struct wire *w, unsigned v)
{
	w->b[w->n++] = (unsigned char)(v >> 8);
	w->b[w->n++] = (unsigned char)v;
}

static void put32(struct wire *w, unsigned long v)
{
	put16(w, (unsigned)(v >> 16));
	put16(w, (unsigned)(v & 0xffff));
}

static void put_name(struct wire *w, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		w->b[w->n++] = (unsigned char)l;
		memcpy(w->b + w->n, name, l);
		w->n += l;
		name += l + (dot ? 1 : 0);
	}
	w->b[w->n++] = 0;
}

/* Header and question for name/qtype with rcode; counts are patched by finish(). */
static void begin(struct wire *w, const char *name, unsigned qtype, unsigned rcode)
{
	memset(w, 0, sizeof(*w));
	put16(w, 0x1234);
	put16(w, 0x8180 | rcode);
	put16(w, 1);
	put16(w, 0);
	put16(w, 0);
	put16(w, 0);
	put_name(w, name);
	put16(w, qtype);
	put16(w, 1);
}

/* A record whose owner is the question name (compressed: 0xc00c). */
static void rr(struct wire *w, unsigned type, unsigned long ttl, const void *rd, size_t rdlen)
{
	put16(w, 0xc00c);
	put16(w, type);
	put16(w, 1);
	put32(w, ttl);
	put16(w, (unsigned)rdlen);
	memcpy(w->b + w->n, rd, rdlen);
	w->n += rdlen;
	w->an++;
}

static void soa(struct wire *w, unsigned long ttl, unsigned long minimum)
{
	unsigned char rd[64];
	size_t n = 0;
	rd[n++] = 0xc0;
	rd[n++] = 0x0c; /* mname */
	rd[n++] = 0xc0;
	rd[n++] = 0x0c; /* rname */
	unsigned long v[5] = {1, 3600, 600, 86400, minimum};
	for (int i = 0; i < 5; i++) {
		rd[n++] = (unsigned char)(v[i] >> 24);
		rd[n++] = (unsigned char)(v[i] >> 16);
		rd[n++] = (unsigned char)(v[i] >> 8);
		rd[n++] = (unsigned char)v[i];
	}
	rr(w, 6, ttl, rd, n);
	w->an--;
	w->ns++;
}

static void finish(struct wire *w)
{
	w->b[6] = (unsigned char)(w->an >> 8);
	w->b[7] = (unsigned char)w->an;
	w->b[8] = (unsigned char)(w->ns >> 8);
	w->b[9] = (unsigned char)w->ns;
}

static dns_answer_t ans;

/* ------------------------------------------------------------ parsing */

Test(parse, txt_strings_are_joined_per_record_and_records_kept_apart)
{
	struct wire w;
	begin(&w, "example.com", DNS_T_TXT, 0);
	/* "v=spf1 " + "-all" in one record (RFC 7208 3.3: joined, no space) */
	rr(&w, DNS_T_TXT, 300, "\x07v=spf1 \x04-all", 13);
	rr(&w, DNS_T_TXT, 60, "\x05other", 6);
	rr(&w, DNS_T_TXT, 300, "", 0); /* an empty record is still a record */
	finish(&w);
	long ttl;
	cr_assert_eq(dns_parse_response(w.b, w.n, DNS_T_TXT, &ans, &ttl), 0);
	cr_assert_eq(ans.status, DNS_NOERROR);
	cr_assert_eq(ans.nrr, 3);
	size_t len;
	cr_assert_str_eq(dns_answer_rr(&ans, 0, &len), "v=spf1 -all");
	cr_assert_eq(len, 11);
	cr_assert_str_eq(dns_answer_rr(&ans, 1, NULL), "other");
	cr_assert_str_eq(dns_answer_rr(&ans, 2, &len), "");
	cr_assert_null(dns_answer_rr(&ans, 3, NULL));
	cr_assert_eq(ttl, 60, "the smallest TTL: %ld", ttl);
}

Test(parse, a_txt_string_running_past_its_record_is_dropped)
{
	struct wire w;
	begin(&w, "example.com", DNS_T_TXT, 0);
	rr(&w, DNS_T_TXT, 300, "\x09short", 6);
	finish(&w);
	long ttl;
	cr_assert_eq(dns_parse_response(w.b, w.n, DNS_T_TXT, &ans, &ttl), 0);
	cr_assert_eq(ans.nrr, 0);
	cr_assert_eq(ans.status, DNS_NODATA);
}

Test(parse, mx_names_are_expanded_with_their_preference)
{
	struct wire w;
	begin(&w, "example.com", DNS_T_MX, 0);
	/* pref 10, "mx" + pointer to the question name */
	rr(&w, DNS_T_MX, 300, "\x00\x0a\x02mx\xc0\x0c", 7);
	finish(&w);
	long ttl;
	cr_assert_eq(dns_parse_response(w.b, w.n, DNS_T_MX, &ans, &ttl), 0);
	cr_assert_eq(ans.nrr, 1);
	cr_assert_str_eq(dns_answer_rr(&ans, 0, NULL), "mx.example.com");
	cr_assert_eq(ans.rr[0].pref, 10);
}

Test(parse, ns_names_are_expanded)
{
	struct wire w;
	begin(&w, "example.com", DNS_T_NS, 0);
	rr(&w, DNS_T_NS, 300, "\x03ns1\xc0\x0c", 6); /* "ns1" + pointer to the question */
	rr(&w, DNS_T_NS, 120, "\x03ns2\x05other\x03net\x00", 15);
	rr(&w, DNS_T_A, 300, "\xc0\0\x02\x35", 4); /* glue of another type: not a name server */
	finish(&w);
	long ttl;
	cr_assert_eq(dns_parse_response(w.b, w.n, DNS_T_NS, &ans, &ttl), 0);
	cr_assert_eq(ans.status, DNS_NOERROR);
	cr_assert_eq(ans.nrr, 2);
	cr_assert_str_eq(dns_answer_rr(&ans, 0, NULL), "ns1.example.com");
	cr_assert_str_eq(dns_answer_rr(&ans, 1, NULL), "ns2.other.net");
	cr_assert_eq(ttl, 120);
}

Test(parse, ptr_and_aaaa_records)
{
	struct wire w;
	begin(&w, "4.3.2.1.in-addr.arpa", DNS_T_PTR, 0);
	rr(&w, DNS_T_PTR, 300,
	   "\x04mail\x07"
	   "example\x03org\x00",
	   18);
	finish(&w);
	long ttl;
	cr_assert_eq(dns_parse_response(w.b, w.n, DNS_T_PTR, &ans, &ttl), 0);
	cr_assert_str_eq(dns_answer_rr(&ans, 0, NULL), "mail.example.org");

	begin(&w, "example.com", DNS_T_AAAA, 0);
	rr(&w, DNS_T_AAAA, 300, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
	finish(&w);
	cr_assert_eq(dns_parse_response(w.b, w.n, DNS_T_AAAA, &ans, &ttl), 0);
	size_t len;
	const unsigned char *a = (const unsigned char *)dns_answer_rr(&ans, 0, &len);
	cr_assert_eq(len, 16);
	cr_assert_eq(a[0], 0x20);
	cr_assert_eq(a[15], 0x01);
}

Test(parse, nxdomain_nodata_and_servfail_are_told_apart)
{
	struct wire w;
	long ttl;
	begin(&w, "nope.example.com", DNS_T_TXT, 3);
	soa(&w, 300, 60);
	finish(&w);
	cr_assert_eq(dns_parse_response(w.b, w.n, DNS_T_TXT, &ans, &ttl), 0);
	cr_assert_eq(ans.status, DNS_NXDOMAIN);
	cr_assert_eq(ttl, 60, "negative TTL min(SOA ttl, minimum): %ld", ttl);

	begin(&w, "example.com", DNS_T_TXT, 0);
	rr(&w, DNS_T_A, 300, "\x7f\0\0\x02", 4); /* a record of another type only */
	finish(&w);
	cr_assert_eq(dns_parse_response(w.b, w.n, DNS_T_TXT, &ans, &ttl), 0);
	cr_assert_eq(ans.status, DNS_NODATA);
	cr_assert_eq(ttl, -1, "no SOA: the configured negative TTL applies");

	begin(&w, "example.com", DNS_T_TXT, 2);
	finish(&w);
	cr_assert_eq(dns_parse_response(w.b, w.n, DNS_T_TXT, &ans, &ttl), 0);
	cr_assert_eq(ans.status, DNS_SERVFAIL);
}

Test(parse, truncated_and_garbage_responses_are_errors_not_crashes)
{
	struct wire w;
	long ttl;
	begin(&w, "example.com", DNS_T_TXT, 0);
	rr(&w, DNS_T_TXT, 300, "\x05hello", 6);
	finish(&w);
	for (size_t cut = 0; cut < w.n; cut++)
		cr_assert_eq(dns_parse_response(w.b, cut, DNS_T_TXT, &ans, &ttl), -1, "cut at %zu",
		             cut);
	unsigned char junk[512];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 37 + 11);
	(void)dns_parse_response(junk, sizeof(junk), DNS_T_MX, &ans, &ttl);
	cr_assert_leq(ans.used, sizeof(ans.data));
	cr_assert_eq(dns_parse_response(NULL, 0, DNS_T_A, &ans, &ttl), -1);
}

Test(parse, more_records_than_fit_are_cut_not_overflowed)
{
	struct wire w;
	begin(&w, "example.com", DNS_T_TXT, 0);
	char rd[256];
	rd[0] = (char)200;
	memset(rd + 1, 'x', 200);
	for (int i = 0; i < 9; i++)
		rr(&w, DNS_T_TXT, 300, rd, 201);
	finish(&w);
	long ttl;
	cr_assert_eq(dns_parse_response(w.b, w.n, DNS_T_TXT, &ans, &ttl), 0);
	cr_assert_eq(ans.nrr, 9);
	cr_assert_leq(ans.used, sizeof(ans.data));
}

/* ------------------------------------------------------------ cache */

static dns_answer_t one_a(unsigned char last)
{
	dns_answer_t a;
	memset(&a, 0, sizeof(a));
	a.status = DNS_NOERROR;
	a.nrr = 1;
	a.rr[0].len = 4;
	a.data[0] = 127;
	a.data[3] = (char)last;
	a.used = 5;
	return a;
}

Test(cache, answers_until_the_ttl_and_not_after)
{
	dns_cache_t *c = dns_cache_new(1000, 1 << 20);
	dns_answer_t a = one_a(2), out;
	long now = dns_now_ms();
	dns_cache_put(c, "2.2.0.192.bl.test", DNS_T_A, &a, 1000, now);
	cr_assert(dns_cache_get(c, "2.2.0.192.bl.test", DNS_T_A, now + 999, &out));
	cr_assert_eq(out.status, DNS_NOERROR);
	cr_assert_eq(out.nrr, 1);
	cr_assert_eq(out.data[3], 2);
	cr_assert_not(dns_cache_get(c, "2.2.0.192.bl.test", DNS_T_TXT, now, &out));
	cr_assert_not(dns_cache_get(c, "2.2.0.192.bl.test", DNS_T_A, now + 1000, &out));
	dns_answer_t neg = {.status = DNS_NXDOMAIN};
	dns_cache_put(c, "1.2.0.192.bl.test", DNS_T_A, &neg, 500, now);
	cr_assert(dns_cache_get(c, "1.2.0.192.bl.test", DNS_T_A, now + 10, &out));
	cr_assert_eq(out.status, DNS_NXDOMAIN);
	dns_answer_t fail = {.status = DNS_SERVFAIL}, late = {.status = DNS_TIMEOUT};
	dns_cache_put(c, "3.2.0.192.bl.test", DNS_T_A, &fail, 500, now);
	dns_cache_put(c, "4.2.0.192.bl.test", DNS_T_A, &late, 500, now);
	cr_assert_not(dns_cache_get(c, "3.2.0.192.bl.test", DNS_T_A, now, &out),
	              "failures are not cached");
	cr_assert_not(dns_cache_get(c, "4.2.0.192.bl.test", DNS_T_A, now, &out),
	              "timeouts are not cached");
	dns_cache_free(c);
}

Test(cache, stays_within_its_entry_and_byte_bounds)
{
	dns_cache_t *c = dns_cache_new(160, 1 << 20);
	dns_answer_t a = {.status = DNS_NXDOMAIN}, out;
	long now = dns_now_ms();
	char name[64];
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "%d.example.bl.test", i);
		dns_cache_put(c, name, DNS_T_A, &a, 60000, now);
	}
	uint64_t n, bytes;
	dns_cache_usage(c, &n, &bytes);
	cr_assert_leq(n, 160 + 16, "entries %lu", (unsigned long)n);
	cr_assert(dns_cache_get(c, "4999.example.bl.test", DNS_T_A, now, &out),
	          "the newest survives");
	cr_assert_not(dns_cache_get(c, "0.example.bl.test", DNS_T_A, now, &out), "the oldest went");
	dns_cache_free(c);

	c = dns_cache_new(100000, 64 << 10);
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "%d.example.bl.test", i);
		dns_cache_put(c, name, DNS_T_A, &a, 60000, now);
	}
	dns_cache_usage(c, &n, &bytes);
	cr_assert_leq(bytes, (64 << 10) + 16 * 256, "bytes %lu", (unsigned long)bytes);
	dns_cache_free(c);
}

/* ------------------------------------------------------------ configuration and names */

Test(conf, old_dnsbl_keys_still_work_and_the_new_names_win)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("t.conf",
	                       "dnsbl_nameserver = 127.0.0.1:5353\n"
	                       "dnsbl_timeout = 300ms\n"
	                       "dns_timeout = 400ms\n"
	                       "dns_nameserver = 127.0.0.2\n",
	                       d);
	dns_t *r = dns_load(c, NULL, d);
	cr_assert_not_null(r);
	cr_assert_eq(conf_check_unknown(c, d), 0);
	dns_conf_t want = {.servers_csv = "127.0.0.2:53",
	                   .timeout_ms = 400,
	                   .tries = 2,
	                   .cache_max_entries = 100000,
	                   .cache_max_bytes = 32u << 20,
	                   .max_ttl_ms = 3600000L,
	                   .negative_ttl_ms = 300000L,
	                   .max_pending = DNS_DEFAULT_MAX_PENDING,
	                   .max_inflight = DNS_DEFAULT_MAX_INFLIGHT};
	cr_assert(dns_same(r, &want));
	dns_t *again = dns_load(c, r, d);
	cr_assert_eq(again, r, "unchanged settings keep the resolver and its cache");
	dns_unref(again);
	dns_unref(r);
	conf_free(c);

	c = conf_parse("t.conf", "dns_nameserver = not-an-ip\n", d);
	r = dns_load(c, NULL, d);
	dns_unref(r); /* what was valid, so the other modules still read their keys */
	cr_assert_eq(diag_errors(d), 1);
	cr_assert(strstr(diag_text(d, 0), "t.conf:1"), "%s", diag_text(d, 0));
	conf_free(c);
	diag_free(d);
}

Test(names, known_top_level_domains_come_from_the_same_list)
{
	cr_assert(dns_tld_known("mail.example.com"));
	cr_assert(dns_tld_known("example.co.uk"));
	cr_assert(dns_tld_known("x.museum"));
	/* the list's "*" rule would make every last label a suffix */
	cr_assert_not(dns_tld_known("host.example"));
	cr_assert_not(dns_tld_known("a.invalid"));
	cr_assert_not(dns_tld_known("printer.local"));
	cr_assert_not(dns_tld_known("localhost"), "no dot");
	cr_assert_not(dns_tld_known("example."), "an empty last label");
}

Test(names, registered_domain_comes_from_the_public_suffix_list)
{
	char b[256];
	cr_assert_str_eq(dns_registered_domain("mail.Example.CO.UK.", b, sizeof(b)),
	                 "example.co.uk");
	cr_assert_str_eq(dns_registered_domain("a.b.c.example.com", b, sizeof(b)), "example.com");
	/* a multi-label public suffix that no hand-written table of TLDs knows */
	cr_assert_str_eq(dns_registered_domain("x.city.kawasaki.jp", b, sizeof(b)),
	                 "city.kawasaki.jp");
	cr_assert_null(dns_registered_domain("co.uk", b, sizeof(b)));
	cr_assert_null(dns_registered_domain("192.0.2.1", b, sizeof(b)));
	cr_assert_null(dns_registered_domain("[192.0.2.1]", b, sizeof(b)));
	cr_assert_null(dns_registered_domain("[IPv6:2001:db8::1]", b, sizeof(b)));
	cr_assert_null(dns_registered_domain("bad host.example", b, sizeof(b)));
	cr_assert_null(dns_registered_domain("b\xc3\xa4r.example", b, sizeof(b)));
}
