/*
 * dns.c - the shared DNS service's configuration (which resolver a
 * generation uses, see dns.h) and the one registered-domain policy
 * (the Public Suffix List) that every source of evidence asks.
 * The resolver thread is in dns_resolver.c, the cache in dns_cache.c.
 */
#include "config.h"

#include "dns.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <libpsl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ configuration */

static bool parse_nameserver(const char *v, char *csv, size_t n)
{
	char host[INET6_ADDRSTRLEN], port[8] = "53";
	const char *colon = strrchr(v, ':');
	if (v[0] == '[') {
		const char *rb = strchr(v, ']');
		if (rb == NULL || (size_t)(rb - v - 1) >= sizeof(host))
			return false;
		memcpy(host, v + 1, (size_t)(rb - v - 1));
		host[rb - v - 1] = '\0';
		if (rb[1] == ':')
			snprintf(port, sizeof(port), "%s", rb + 2);
		else if (rb[1] != '\0')
			return false;
	} else if (colon && strchr(v, ':') == colon) {
		if ((size_t)(colon - v) >= sizeof(host))
			return false;
		memcpy(host, v, (size_t)(colon - v));
		host[colon - v] = '\0';
		snprintf(port, sizeof(port), "%s", colon + 1);
	} else {
		if (strlen(v) >= sizeof(host))
			return false;
		strcpy(host, v);
	}
	char *e;
	long p = strtol(port, &e, 10);
	if (*e || p <= 0 || p > 65535)
		return false;
	struct in6_addr a6;
	struct in_addr a4;
	bool v6 = inet_pton(AF_INET6, host, &a6) == 1;
	if (!v6 && inet_pton(AF_INET, host, &a4) != 1)
		return false;
	size_t len = strlen(csv);
	int w = snprintf(csv + len, n - len, "%s%s%s%s:%ld", len ? "," : "", v6 ? "[" : "", host,
	                 v6 ? "]" : "", p);
	return w > 0 && (size_t)w < n - len;
}

/*
 * The dns_ key, or the dnsbl_ key it replaced: both are read (so neither
 * is an unknown key), the new one wins.
 */
static void key_ms(conf_t *c, const char *key, long def, long min, long max, long *out, diag_t *d)
{
	long old;
	char okey[64];
	snprintf(okey, sizeof(okey), "dnsbl_%s", key + 4);
	conf_ms(c, okey, def, min, max, &old, d);
	conf_ms(c, key, old, min, max, out, d);
}

static void key_long(conf_t *c, const char *key, long def, long min, long max, long *out, diag_t *d)
{
	long old;
	char okey[64];
	snprintf(okey, sizeof(okey), "dnsbl_%s", key + 4);
	conf_long(c, okey, def, min, max, &old, d);
	conf_long(c, key, old, min, max, out, d);
}

dns_t *dns_load(conf_t *c, dns_t *prev, diag_t *d)
{
	long timeout_ms, tries, cache_entries, max_ttl_ms, neg_ttl_ms, max_pending, max_inflight;
	uint64_t cache_bytes, old_bytes;
	key_ms(c, "dns_timeout", 1500, 50, 30000, &timeout_ms, d);
	key_long(c, "dns_tries", 2, 1, 10, &tries, d);
	key_long(c, "dns_cache_max_entries", 100000, 16, 100000000, &cache_entries, d);
	conf_size(c, "dnsbl_cache_max_bytes", 32u << 20, 64u << 10, (uint64_t)1 << 40, &old_bytes,
	          d);
	conf_size(c, "dns_cache_max_bytes", old_bytes, 64u << 10, (uint64_t)1 << 40, &cache_bytes,
	          d);
	key_ms(c, "dns_cache_max_ttl", 3600000L, 0, 7 * 86400000L, &max_ttl_ms, d);
	key_ms(c, "dns_negative_ttl", 300000L, 0, 86400000L, &neg_ttl_ms, d);
	conf_long(c, "dns_max_pending", DNS_DEFAULT_MAX_PENDING, 100, 10000000L, &max_pending, d);
	conf_long(c, "dns_max_inflight", DNS_DEFAULT_MAX_INFLIGHT, 1, 65536, &max_inflight, d);

	char csv[1024] = "";
	const char *key =
	    conf_count(c, "dns_nameserver") > 0 ? "dns_nameserver" : "dnsbl_nameserver";
	(void)conf_count(c, "dnsbl_nameserver"); /* read either way: not an unknown key */
	size_t nns = conf_count(c, key);
	for (size_t i = 0; i < nns; i++) {
		const char *file;
		unsigned line;
		const char *v = conf_value_at(c, key, i, &file, &line);
		if (!parse_nameserver(v, csv, sizeof(csv)))
			diag_error(d, file, line, "%s: \"%s\" is not ip[:port]", key, v);
	}
	/*
	 * On errors the generation fails anyway; a resolver on what was valid
	 * still lets every module read its keys (one run of `sift lint`
	 * reports every mistake) without reporting this one twice.
	 */
	dns_conf_t rc = {
	    .servers_csv = csv[0] ? csv : NULL,
	    .timeout_ms = timeout_ms,
	    .tries = (int)tries,
	    .cache_max_entries = (size_t)cache_entries,
	    .cache_max_bytes = (size_t)cache_bytes,
	    .max_ttl_ms = max_ttl_ms,
	    .negative_ttl_ms = neg_ttl_ms,
	    .max_pending = (size_t)max_pending,
	    .max_inflight = (unsigned)max_inflight,
	};
	if (prev && dns_same(prev, &rc))
		return dns_ref(prev);
	char err[256];
	dns_t *r = dns_new(&rc, err, sizeof(err));
	if (r == NULL)
		diag_error(d, conf_path(c), 0, "dns: %s", err);
	return r;
}

/* ------------------------------------------------------------ registered domains */

/*
 * The Public Suffix List is loaded once per process and never changes
 * afterwards (a documented process-wide cache; libpsl lookups only read
 * it, so any thread may use it).
 */
static pthread_once_t psl_once = PTHREAD_ONCE_INIT;
static const psl_ctx_t *psl_ctx;

static void psl_load_once(void)
{
	/* The system's list (Debian's publicsuffix) when newer than the built-in one. */
	psl_ctx = psl_latest(NULL);
	if (psl_ctx == NULL)
		psl_ctx = psl_builtin();
}

bool dns_valid_hostname(const char *s)
{
	size_t n = strlen(s), label = 0;
	if (n == 0 || n > 253)
		return false;
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0;
}

bool dns_ip_parse(const char *s, uint8_t out[16], bool *is_v4)
{
	char buf[INET6_ADDRSTRLEN + 8];
	size_t n = strlen(s);
	if (n >= sizeof(buf))
		return false;
	if (s[0] == '[' && n > 2 && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	char *p = buf;
	if (strncasecmp(p, "IPv6:", 5) == 0)
		p += 5;
	struct in_addr a4;
	if (inet_pton(AF_INET, p, &a4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a4, 4);
		*is_v4 = true;
		return true;
	}
	if (inet_pton(AF_INET6, p, out) == 1) {
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		*is_v4 = memcmp(out, mapped, 12) == 0;
		return true;
	}
	return false;
}

const char *dns_registered_domain(const char *host, char *out, size_t out_bytes)
{
	if (host == NULL)
		return NULL;
	size_t n = strlen(host);
	while (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n >= out_bytes || n > 253)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)host[i];
		if (c >= 0x80)
			return NULL; /* IDNs would need punycode first; not asked about */
		out[i] = (char)tolower(c);
	}
	out[n] = '\0';
	uint8_t ip[16];
	bool v4;
	if (dns_ip_parse(out, ip, &v4) || !dns_valid_hostname(out))
		return NULL;
	pthread_once(&psl_once, psl_load_once);
	const char *reg = psl_ctx ? psl_registrable_domain(psl_ctx, out) : NULL;
	if (reg == NULL)
		return NULL;
	memmove(out, reg, strlen(reg) + 1);
	return out;
}

bool dns_tld_known(const char *domain)
{
	const char *dot = strrchr(domain, '.');
	if (dot == NULL || dot[1] == '\0')
		return false;
	pthread_once(&psl_once, psl_load_once);
	return psl_ctx == NULL ||
	       psl_is_public_suffix2(psl_ctx, dot + 1, PSL_TYPE_ANY | PSL_TYPE_NO_STAR_RULE) != 0;
}
