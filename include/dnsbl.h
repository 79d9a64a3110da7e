/*
 * NAME
 *	dnsbl - DNS blocklists (client IP, sender domains, URI domains) as evidence
 * SYNOPSIS
 *	#include "dnsbl.h"
 *	extern const evidence_ops_t dnsbl_evidence;
 * DESCRIPTION
 *	Three kinds of list, each one "dnsbl_list" line:
 *	  ip      the client address: IPv4 as reversed octets, IPv6 as 32
 *	          reversed nibbles, prepended to the zone (Spamhaus ZEN style);
 *	  domain  the envelope sender, HELO and From domains (RHSBL);
 *	  uri     the host names of URLs in the body (URIBL / DBL style).
 *	Domains are reduced to their registered domain with the Public Suffix
 *	List (dns_registered_domain(), the program's one policy).
 *
 *	  dnsbl_list = NAME KIND ZONE ATTR...
 *	ATTR is one of
 *	  CODE=SCORE[:RULE]        an exact return code, e.g. 127.0.0.2=3.5
 *	  LO-HI=SCORE[:RULE]       a range of codes, e.g. 127.0.0.4-127.0.0.7=2
 *	  mask:BITS=SCORE[:RULE]   any of BITS set in the code (URIBL/SURBL style)
 *	  any=SCORE[:RULE]         every code that is not an error
 *	  error=CODE|LO-HI         codes that mean "refused" (127.255.255.0/24 and
 *	                           answers outside 127.0.0.0/8 always are)
 *	  txt=yes|no               fetch the TXT record of a listing (reject text)
 *	  test_listed=ENTRY        the operator's test entry that must be listed
 *	  test_unlisted=ENTRY      and one that must not be (probed now and then)
 *	  check=mailfrom,helo,from which domains a domain list looks at (default all)
 *	  ipv6=yes|no              whether an ip list is asked about IPv6 clients
 *	  file=PATH                answer from a local rbldnsd ip4set (ip lists) or
 *	                           dnset (domain/uri lists) file, no DNS at all
 *	A hit is named RULE, or NAME when no RULE is given; when several codes
 *	of one message map to the same name the highest score counts once.
 *
 *	DNS is the generation's shared service (dns.h, env->dns): its keys
 *	dns_nameserver, dns_timeout, dns_tries, dns_cache_max_entries,
 *	dns_cache_max_bytes, dns_cache_max_ttl and dns_negative_ttl are still
 *	read under their old dnsbl_ names.
 *	Other keys: dnsbl_allow (repeatable ip or cidr: no lookups at all),
 *	dnsbl_allow_authenticated (yes: SASL-authenticated senders are not
 *	looked up), dnsbl_skip_private (yes: loopback, RFC 1918, ULA and
 *	link-local clients are not looked up), dnsbl_trusted_relay (repeatable
 *	ip or cidr: when the client is one of them, the first untrusted
 *	Received: hop is checked instead), dnsbl_probe_interval (10m), dnsbl_max_uri_domains (20:
 *	the links' hosts, then the hosts of links carried inside links, then with
 *	dnsbl_uri_text_domains (yes) host names written in the text without a
 *	scheme; mime_lookup_domain(), mime_text_domain()),
 *	dnsbl_local_check_interval (how often a list file is stat()ed, 5s),
 *	dnsbl_stats_interval (a statistics line at info level, 1h; 0 = never;
 *	one is also logged when a configuration generation ends).
 *	The per-message wait is the core key "deadline" (ctx->deadline_ms).
 *
 *	Lookups of the client address start in conn_begin(), those of the
 *	envelope domains in envelope(), so they overlap the SMTP dialogue;
 *	score() adds the From and URI domains and waits for all of them until
 *	the deadline. What has not answered by then does not count (a late
 *	answer still fills the cache for the next message).
 *
 *	Answers in 127.255.255.0/24 (Spamhaus: query refused, open resolver,
 *	over quota) and the list's error= codes are errors, never listings:
 *	logged at error level (rate-limited) and counted in the statistics.
 *	A list with test entries is probed at start and every probe interval;
 *	when the test answers are wrong, or the entry that must be listed gets
 *	no answer at all (which would cost every message its deadline), it is
 *	switched off (logged) until they are right again; a switched-off list
 *	is probed at least every minute.
 * THREADS
 *	The shared state (dnsbl_t) is used by every worker thread: the lists
 *	are immutable after load; the cache, the statistics, the probe state
 *	and the local file indexes are internally synchronised. DNS queries
 *	are sent and answered by the shared DNS service's thread ("sift-dns",
 *	see dns.h; started by dnsbl_start() or the first query). Per-connection state belongs to the
 *	connection's thread; answers arriving after a connection has gone are
 *	dropped safely (the lookup records are freed by whichever of the two
 *	sides finishes last).
 * DIAGNOSTICS
 *	dnsbl_load() records "file:line: ..." errors for every bad value.
 */
#ifndef SIFT_DNSBL_H
#define SIFT_DNSBL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "diag.h"
#include "evidence.h"

extern const evidence_ops_t dnsbl_evidence;

typedef struct dnsbl dnsbl_t;

/*
 * Loads the dnsbl_* keys. Returns NULL when no list is configured (the
 * module then costs nothing) or on errors (recorded in d). prev (may be
 * NULL) lends its resolver when env->dns is NULL (the module alone, as in
 * its tests) and the nameserver settings are unchanged.
 */
dnsbl_t *dnsbl_load(conf_t *c, dnsbl_t *prev, const ev_env_t *env, diag_t *d);

/*
 * Starts the resolver thread (the evidence start() hook, after fork and
 * privilege drop). Offline (`sift check`) it waits for the first query.
 * Returns 0, or -1 with an error in d.
 */
int dnsbl_start(dnsbl_t *b, const ev_env_t *env, diag_t *d);
void dnsbl_release(dnsbl_t *d);

typedef struct dnsbl_stats {
	uint64_t lookups;        /* list lookups asked for, all sources */
	uint64_t dns_queries;    /* queries sent to the nameservers */
	uint64_t cache_hits;     /* lookups answered from the cache */
	uint64_t dns_shared;     /* lookups that waited for an identical one in flight */
	uint64_t file_lookups;   /* lookups answered from a local list file */
	uint64_t listed;         /* lookups that found a listing */
	uint64_t error_answers;  /* "query refused"-style answers */
	uint64_t late;           /* not answered by a message's deadline */
	uint64_t dns_failures;   /* SERVFAIL, REFUSED, timeouts inside c-ares */
	uint64_t dns_refused;    /* failed at once: dns_max_pending lookups were waiting */
	uint64_t dns_pending;    /* lookups waiting for answers, now */
	uint64_t probes;         /* test-entry probes sent */
	uint64_t probe_failures; /* probes whose answers were wrong */
	uint64_t cache_entries;
	uint64_t cache_bytes;
	unsigned lists;
	unsigned lists_disabled;
} dnsbl_stats_t;

/* A snapshot of the counters (process-wide per resolver, per generation otherwise). */
void dnsbl_get_stats(const dnsbl_t *d, dnsbl_stats_t *st);

/* Lists in configuration order; a disabled list failed its last probe. */
size_t dnsbl_list_count(const dnsbl_t *d);
const char *dnsbl_list_name(const dnsbl_t *d, size_t i);
bool dnsbl_list_enabled(const dnsbl_t *d, size_t i);

/*
 * The query name for an address in zone: "4.3.2.1.zone" for 1.2.3.4, 32
 * nibbles for IPv6 (an IPv4-mapped IPv6 address is treated as IPv4).
 * Returns 4 or 6, or 0 when ip is not an address or the name does not fit.
 */
int dnsbl_ip_qname(const char *ip, const char *zone, char *out, size_t out_bytes);

/*
 * Whether an A answer's code (host byte order) is an error rather than a
 * listing: outside 127.0.0.0/8 (a resolver's ad page, NXDOMAIN hijack) or
 * in 127.255.255.0/24 (query refused, open resolver, over quota).
 */
bool dnsbl_code_is_refusal(uint32_t code);

/*
 * rbldnsd data files, as operators distribute them by rsync:
 *   ip4set: "1.2.3.4", "1.2.3.0/24", "1.2.3" (= /24), "1.2.3.4-1.2.3.9",
 *           "1.2.3.4-9", "!1.2.3.5" (exclusion), each optionally followed by
 *           ":A:text" or a text; a line ":A:text" sets the default value.
 *   dnset:  "example.com", "*.example.com" (subdomains only), ".example.com"
 *           (both), "!name" exclusions, values as above.
 * "$" in a text stands for the entry asked about; A may be abbreviated
 * ("2" means 127.0.0.2). "#" and ";" start comments; "$TTL", "$SOA" and
 * "$NS" lines are accepted and ignored.
 * A dnsbl_file_t re-reads its file (at most every check_ms) when the
 * file's mtime, size or inode changed; lookups then see the new data,
 * lookups in progress finish on the old. Thread-safe.
 */
typedef struct dnsbl_file dnsbl_file_t;
enum { DNSBL_FILE_IP4SET, DNSBL_FILE_DNSET };
dnsbl_file_t *dnsbl_file_open(const char *path, int format, long check_ms, diag_t *d);
void dnsbl_file_free(dnsbl_file_t *f);
/* Number of entries (exclusions included) in the loaded data, and its generation (1, 2...). */
size_t dnsbl_file_entries(dnsbl_file_t *f, unsigned *generation);
/*
 * Looks up an IPv4 address (ip4set) or a lower-case domain (dnset). On a
 * listing returns 1 with the code in *code (host byte order) and the text,
 * "$" expanded, in txt (may be NULL); 0 when not listed.
 */
int dnsbl_file_lookup(dnsbl_file_t *f, const char *key, uint32_t *code, char *txt,
                      size_t txt_bytes);

#endif
