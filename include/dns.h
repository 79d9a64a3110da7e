/*
 * NAME
 *	dns - the shared DNS service: one c-ares resolver thread and one TTL
 *	cache for every source of evidence (DNS lists, sender authentication)
 * SYNOPSIS
 *	#include "dns.h"
 *	dns_t *r = dns_load(conf, prev, diag);	(scan.c, per generation)
 *	dns_batch_t *b = dns_batch_new();
 *	dns_query_t *q = dns_submit(r, b, "example.com", DNS_T_TXT, 0, 0);
 *	dns_batch_wait(b, deadline_ms);
 *	dns_result(b, q, &answer, NULL, NULL);
 *	dns_batch_release(b);
 * DESCRIPTION
 *	Asks A, AAAA, TXT, MX, NS and PTR questions (any type the parser knows)
 *	of the configured nameservers (the system's resolv.conf when none is
 *	given) and caches answers, positive and negative, for their TTL
 *	(bounded by dns_cache_max_ttl; a negative answer without SOA lives
 *	dns_negative_ttl). Failures are never cached.
 *
 *	A batch groups the lookups one owner waits for (a connection's
 *	client address, a message's domains). The owner waits for the batch
 *	until its own deadline and gives it up with dns_batch_release(); an
 *	answer arriving after that touches only the batch, which is freed by
 *	whichever side comes last, and still fills the cache.
 *
 *	Keys (read by dns_load(); the older dnsbl_ names are still read,
 *	and the dns_ name wins when both are given): dns_nameserver
 *	(repeatable ip[:port] or [ip6]:port), dns_timeout (per try, 1500ms),
 *	dns_tries (2), dns_cache_max_entries (100000), dns_cache_max_bytes
 *	(32M), dns_cache_max_ttl (1h), dns_negative_ttl (5m).
 * THREADS
 *	A dns_t is shared by every worker thread: submitting, waiting and
 *	reading results are internally synchronised. Queries are sent and
 *	answered by one thread per resolver ("sift-dns", started by
 *	dns_start() or the first query, carried over reloads with unchanged
 *	settings) that blocks the daemon's signals. A batch belongs to the
 *	thread that made it. dns_registered_domain() is thread-safe.
 */
#ifndef SIFT_DNS_H
#define SIFT_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "diag.h"

#define DNS_QNAME_MAX_BYTES 256
/*
 * Records kept of one answer, and the bytes of their data; the rest is
 * dropped. TXT answers get the most: a domain's TXT records hold its SPF
 * record among site verification tokens, often dozens of them, in any
 * order. Other answers (list codes, addresses, MX and PTR names) keep at
 * most DNS_OTHER_MAX_RR records and DNS_OTHER_MAX_BYTES.
 */
#define DNS_MAX_RR          128
#define DNS_DATA_MAX_BYTES  16384
#define DNS_OTHER_MAX_RR    32
#define DNS_OTHER_MAX_BYTES 4096

enum dns_qtype {
	DNS_T_A = 1,
	DNS_T_NS = 2,
	DNS_T_PTR = 12,
	DNS_T_MX = 15,
	DNS_T_TXT = 16,
	DNS_T_AAAA = 28
};

enum dns_status {
	DNS_PENDING = 0,
	DNS_NOERROR,  /* records of the asked type (nrr > 0) */
	DNS_NXDOMAIN, /* the name does not exist */
	DNS_NODATA,   /* the name exists, no record of that type */
	DNS_SERVFAIL, /* SERVFAIL, REFUSED, a malformed answer: ask again later */
	DNS_TIMEOUT,  /* no answer within the tries, or by the caller's deadline */
};

enum dns_source { DNS_SRC_NET = 0, DNS_SRC_CACHE };

/*
 * One answer. Record i is data[rr[i].off .. +rr[i].len]: A 4 bytes and
 * AAAA 16 bytes in network order; TXT the record's character-strings
 * joined without separator (RFC 7208 3.3, RFC 6376 3.6.2.2) and NUL
 * terminated; MX (with pref), NS and PTR the host name, NUL terminated.
 */
typedef struct dns_answer {
	int status;
	unsigned nrr;
	struct {
		uint16_t off, len, pref;
	} rr[DNS_MAX_RR];
	size_t used;
	char data[DNS_DATA_MAX_BYTES];
} dns_answer_t;

typedef struct dns_conf {
	const char *servers_csv; /* "ip:port,..." or NULL for the system's */
	long timeout_ms;         /* per try */
	int tries;
	size_t cache_max_entries, cache_max_bytes;
	long max_ttl_ms, negative_ttl_ms;
	size_t max_pending;    /* lookups submitted and not finished; past it they fail at once */
	unsigned max_inflight; /* questions c-ares has out at once; the rest wait their turn */
} dns_conf_t;
/* dns_max_pending and dns_max_inflight; dns_new() reads 0 as these. */
#define DNS_DEFAULT_MAX_PENDING  20000
#define DNS_DEFAULT_MAX_INFLIGHT 128

typedef struct dns dns_t;
typedef struct dns_batch dns_batch_t;
typedef struct dns_query dns_query_t;

/*
 * Reads the dns_ (and old dnsbl_) resolver keys and returns a resolver:
 * prev's, with a new reference, when its settings are the same (so the
 * cache and the thread live on), else a new one. Bad values are errors
 * in d (the caller drops the generation) and are left out of the
 * resolver returned; NULL only when c-ares refuses the settings.
 */
dns_t *dns_load(conf_t *c, dns_t *prev, diag_t *d);
/* NULL with a reason in err when c-ares refuses the settings. */
dns_t *dns_new(const dns_conf_t *rc, char *err, size_t err_bytes);
bool dns_same(const dns_t *r, const dns_conf_t *rc);
/* Starts the resolver thread now rather than at the first query (idempotent); 0 or an errno. */
int dns_start(dns_t *r);
dns_t *dns_ref(dns_t *r);
/* The last reference stops the thread (pending lookups fail) and frees everything. */
void dns_unref(dns_t *r);

typedef struct dns_stats {
	uint64_t queries, cache_hits, failures, shared, cache_entries, cache_bytes;
	uint64_t refused; /* lookups failed at once: dns_max_pending were waiting */
	uint64_t pending; /* lookups submitted and not finished, now */
} dns_stats_t;
void dns_get_stats(dns_t *r, dns_stats_t *st);

enum { DNS_F_NOCACHE = 1 /* neither read nor fill the cache (probes) */ };

dns_batch_t *dns_batch_new(void);
/*
 * Starts a lookup of qname's qtype records; when then_qtype is not 0 and
 * that answer is NOERROR, then_qtype is asked of the same name as well
 * (a listing's TXT text), and the lookup finishes with both. The returned
 * record belongs to the batch.
 */
dns_query_t *dns_submit(dns_t *r, dns_batch_t *b, const char *qname, int qtype, int then_qtype,
                        unsigned flags);
/* Waits until nothing is in flight or deadline_ms; true when all answered. */
bool dns_batch_wait(dns_batch_t *b, long deadline_ms);
/*
 * true and copies of the answers (then_out may be NULL; its status stays
 * DNS_PENDING when then_qtype was not asked) when the lookup has finished.
 */
bool dns_result(dns_batch_t *b, const dns_query_t *q, dns_answer_t *out, dns_answer_t *then_out,
                int *source);
void dns_batch_release(dns_batch_t *b);

/*
 * One question, waited for until deadline_ms (a late answer is
 * DNS_TIMEOUT and still fills the cache). For libraries that ask one
 * question at a time (libspf2, libopendkim). Returns out->status.
 */
int dns_lookup(dns_t *r, const char *qname, int qtype, long deadline_ms, dns_answer_t *out);

/* Record i's data and length (see dns_answer_t); NULL past the end. */
const char *dns_answer_rr(const dns_answer_t *a, unsigned i, size_t *len);
/* "NOERROR", "NXDOMAIN", ... */
/*
 * The RCODE of the response an answer came from, where it is known: 0
 * (NOERROR) with records or none of the type, 3 (NXDOMAIN); -1 otherwise.
 * c-ares (1.18) ends a SERVFAIL, NOTIMP or REFUSED response as it ends a
 * refused connection, without the packet, so those are not told apart.
 */
int dns_answer_rcode(const dns_answer_t *a);
const char *dns_status_name(int status);

/*
 * Parses a DNS response for qtype into out, and the TTL to cache it for
 * (the smallest answer TTL; for negative answers min(SOA TTL, SOA minimum),
 * or -1 when there is no SOA). -1 when the message is malformed.
 */
int dns_parse_response(const unsigned char *p, size_t n, int qtype, dns_answer_t *out, long *ttl_s);

/*
 * Parses an address as mail writes it: "1.2.3.4", "[1.2.3.4]", "IPv6:::1",
 * "[IPv6:2001:db8::1]". out gets the 16-byte form (IPv4 as ::ffff:a.b.c.d);
 * *is_v4 says which family it was. false when s is no address. Pure.
 */
bool dns_ip_parse(const char *s, uint8_t out[16], bool *is_v4);

/*
 * The registered domain of host ("mail.example.co.uk" -> "example.co.uk")
 * by the Public Suffix List (libpsl; the system's list when it is newer
 * than the built-in one), lower-cased into out. NULL when host is an IP
 * literal, not ASCII, not a host name, a bare public suffix or too long.
 * The one registered-domain policy of the program (DNS lists, DMARC,
 * SpamAssassin's evals).
 */
const char *dns_registered_domain(const char *host, char *out, size_t out_bytes);

/*
 * Whether the last label of domain is a top-level domain the same Public
 * Suffix List knows, without its "*" rule (so "example", "invalid" and
 * "local" are none). Thread-safe.
 */
bool dns_tld_known(const char *domain);

/* A host name in ASCII: labels of letters, digits, '-' and '_', 1-63 bytes, 253 in all. */
bool dns_valid_hostname(const char *s);

/* Milliseconds on the CLOCK_MONOTONIC scale (the scale of deadlines). */
long dns_now_ms(void);
/* A hash of a question (FNV-1a of the name, seeded by the type): the cache's, and any table of
 * questions. */
uint32_t dns_key_hash(const char *qname, int qtype);

/* ---- the answer cache (exposed for the tests): sharded, FIFO eviction, bounded */
typedef struct dns_cache dns_cache_t;
dns_cache_t *dns_cache_new(size_t max_entries, size_t max_bytes);
void dns_cache_free(dns_cache_t *c);
/* true and *out filled when a live entry exists. */
bool dns_cache_get(dns_cache_t *c, const char *qname, int qtype, long now_ms, dns_answer_t *out);
void dns_cache_put(dns_cache_t *c, const char *qname, int qtype, const dns_answer_t *a, long ttl_ms,
                   long now_ms);
void dns_cache_usage(dns_cache_t *c, uint64_t *entries, uint64_t *bytes);

#endif
