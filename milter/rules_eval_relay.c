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

const struct rules_evaldef rules_eval_relay_defs[] = {
    {"check_for_no_rdns_dotcom_helo", no_rdns_dotcom_helo, 0, 0, NULL},
    {"helo_ip_mismatch", helo_ip_mismatch, 0, 0, NULL},
    {"check_all_trusted", all_trusted, 0, 0, NULL},
    {"check_no_relays", no_relays, 0, 0, NULL},
    {"check_relays_unparseable", relays_unparseable, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
