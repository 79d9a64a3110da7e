/*
 * rules_eval_relay.c - SpamAssassin's RelayEval tests in C, over the
 * untrusted and trusted relay lists Sift builds from the SMTP client and
 * the Received fields (rules_relays.c): HELO against rDNS and IP, and the
 * shape of the relay chain. Follows Mail::SpamAssassin::Plugin::RelayEval.
 */
#include <ctype.h>

#include "rules_int.h"

/*
 * A big mail provider's name given as HELO by a client without reverse
 * DNS. SpamAssassin resets its answer at each relay, so the oldest
 * public relay with a HELO decides; kept as it is, for the same hits.
 */
static long no_rdns_dotcom_helo(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	rules_eval_relays(e);
	static struct rules_eval_re dotcom = {
	    .pattern = "(?:\\.|^)(lycos\\.com|lycos\\.co\\.uk|hotmail\\.com|localhost\\.com|"
	               "excite\\.com|caramail\\.com|cs\\.com|aol\\.com|msn\\.com|yahoo\\.com|"
	               "drizzle\\.com)$",
	    .options = PCRE2_CASELESS};
	bool hit = false;
	for (size_t i = 0; i < e->nuntrusted; i++) {
		const struct rules_relay *r = &e->untrusted[i];
		if (rules_eval_ip_private(r->ip))
			continue;
		/* an empty HELO resets the answer too, as in SpamAssassin */
		/* an empty rdns counts only where the MTA's form shows it looked */
		hit = rules_eval_re(&dotcom, r->helo, strlen(r->helo)) && e->untrusted_no_rdns[i];
	}
	return hit;
}

/* A HELO that is a public IPv4 address outside the client's /24. */
static long helo_ip_mismatch(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	rules_eval_relays(e);
	for (size_t i = 0; i < e->nuntrusted; i++) {
		const struct rules_relay *r = &e->untrusted[i];
		if (!rules_eval_is_ipv4(r->helo) || rules_eval_ip_private(r->helo))
			continue;
		if (!rules_eval_is_ipv4(r->ip) || rules_eval_ip_private(r->ip) ||
		    strcmp(r->helo, r->ip) == 0)
			continue;
		const char *d = strrchr(r->helo, '.');
		size_t n = (size_t)(d - r->helo) + 1; /* "a.b.c." */
		if (strncmp(r->ip, r->helo, n) != 0)
			return 1;
	}
	return 0;
}

/* An unreadable Received field could hide an untrusted hop: it spoils both. */
static long all_trusted(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	rules_eval_relays(e);
	return e->ntrusted > 0 && e->nuntrusted == 0 && e->relays_unparseable == 0;
}

static long no_relays(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	rules_eval_relays(e);
	return e->ntrusted == 0 && e->nuntrusted == 0 && e->relays_unparseable == 0;
}

/* How many Received fields no MTA form reads (__UNPARSEABLE_RELAY_COUNT). */
static long relays_unparseable(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	rules_eval_relays(e);
	return (long)e->relays_unparseable;
}

/*
 * SpamAssassin's hostname_to_domain(): the last two labels, or three
 * under a two-letter country code other than ie, fr and de; a name with
 * no letter (an address) as it is. Lower case, in the arena.
 */
static const char *host_domain(arena_t *a, const char *host)
{
	char *h = arena_strdup(a, host);
	bool letter = false;
	for (char *p = h; *p; p++) {
		*p = (char)tolower((unsigned char)*p);
		letter |= isalpha((unsigned char)*p) != 0;
	}
	if (!letter)
		return h;
	size_t n = strlen(h);
	while (n > 0 && h[n - 1] == '.')
		h[--n] = '\0'; /* Perl's split drops the empty trailing labels */
	/* the last three dots */
	const char *last = NULL, *second = NULL, *third = NULL;
	for (const char *p = h; *p; p++)
		if (*p == '.') {
			third = second;
			second = last;
			last = p;
		}
	if (last == NULL)
		return h;
	const char *tld = last + 1;
	/* /(?:\S{3,}|ie|fr|de)/, unanchored as SpamAssassin has it */
	bool long_tld = false;
	for (const char *p = tld, *run = tld;; p++) {
		if (*p == '\0' || isspace((unsigned char)*p)) {
			if (p - run >= 3)
				long_tld = true;
			if (*p == '\0')
				break;
			run = p + 1;
		}
	}
	if (long_tld || strstr(tld, "ie") || strstr(tld, "fr") || strstr(tld, "de"))
		return second ? second + 1 : h;
	if (second != NULL)
		return third ? third + 1 : h;
	return h;
}

/* SpamAssassin's /^\w+(?:[\w.-]+\.)+\w+$/: a dotted name. */
static bool dotted_name(const char *s)
{
	static struct rules_eval_re re = {.pattern = "^\\w+(?:[\\w.-]+\\.)+\\w+$"};
	return s != NULL && rules_eval_re(&re, s, strlen(s));
}

/*
 * check_for_forged_received_trail: two or more untrusted hops where a
 * relay says it received the message ("by") under another domain than
 * the reverse DNS the next relay saw for it. msn.com for hotmail.com's
 * hosts is allowed.
 */
static long forged_received_trail(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	rules_eval_relays(e);
	size_t n = e->nuntrusted;
	if (n == 0)
		return 0;
	const char **from = arena_alloc(e->a, n * sizeof(char *));
	for (size_t i = 0; i < n; i++)
		from[i] = host_domain(e->a, e->untrusted[i].rdns ? e->untrusted[i].rdns : "");
	unsigned mismatch = 0;
	for (size_t i = 0; i < n; i++) {
		const struct rules_relay *r = &e->untrusted[i];
		const char *by = host_domain(e->a, r->by ? r->by : "");
		if (!dotted_name(by))
			continue;
		if (from[i] != NULL && r->ip != NULL && strcmp(r->ip, "127.0.0.1") == 0 &&
		    (strcmp(from[i], "localhost") == 0 ||
		     strcmp(from[i], "localhost.localdomain") == 0))
			from[i] = NULL; /* a hop inside one machine */
		const char *prev = i > 0 ? from[i - 1] : NULL;
		if (dotted_name(prev) && strcmp(by, prev) != 0 &&
		    !(strcmp(by, "msn.com") == 0 && strcmp(prev, "hotmail.com") == 0))
			mismatch++;
	}
	return mismatch > 1;
}

const struct rules_evaldef rules_eval_relay_defs[] = {
    {"check_for_no_rdns_dotcom_helo", no_rdns_dotcom_helo, 0, 0, NULL},
    {"helo_ip_mismatch", helo_ip_mismatch, 0, 0, NULL},
    {"check_all_trusted", all_trusted, 0, 0, NULL},
    {"check_no_relays", no_relays, 0, 0, NULL},
    {"check_relays_unparseable", relays_unparseable, 0, 0, NULL},
    {"check_for_forged_received_trail", forged_received_trail, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
