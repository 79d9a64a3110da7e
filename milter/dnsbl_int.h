/*
 * dnsbl_int.h - the dnsbl module's internal pieces: the answer cache
 * (dnsbl_cache.c) and the resolver thread (dnsbl_resolver.c). Not for
 * other modules: they use dnsbl.h.
 */
#ifndef SIFT_DNSBL_INT_H
#define SIFT_DNSBL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A list answers with a handful of codes; more are ignored. */
#define DNSBL_MAX_CODES 8
/* Reject texts are for people; longer ones are cut. */
#define DNSBL_TXT_MAX_BYTES   512
#define DNSBL_QNAME_MAX_BYTES 256

enum dnsbl_qtype { DQ_TYPE_A = 1, DQ_TYPE_TXT = 16 };

/* What one name's lookup came to. */
enum dnsbl_status {
	DQ_PENDING = 0,
	DQ_LISTED,     /* NOERROR with A records (codes below) */
	DQ_NOT_LISTED, /* NXDOMAIN or NOERROR without A records */
	DQ_FAILED,     /* SERVFAIL, REFUSED, timeout, ... */
};

enum dnsbl_source { DQ_SRC_DNS = 0, DQ_SRC_CACHE, DQ_SRC_FILE };

typedef struct dnsbl_answer {
	int status;
	unsigned ncodes;
	uint32_t codes[DNSBL_MAX_CODES]; /* host byte order */
	bool has_txt;
	char txt[DNSBL_TXT_MAX_BYTES];
} dnsbl_answer_t;

/* Milliseconds on the CLOCK_MONOTONIC scale (the scale of deadline_ms). */
long dnsbl_now_ms(void);

/* ---- cache: sharded hash table, FIFO eviction, bounded entries and bytes */
typedef struct dnsbl_cache dnsbl_cache_t;
dnsbl_cache_t *dnsbl_cache_new(size_t max_entries, size_t max_bytes);
void dnsbl_cache_free(dnsbl_cache_t *c);
/* true and *out filled (status, codes or txt) when a live entry exists. */
bool dnsbl_cache_get(dnsbl_cache_t *c, const char *qname, int qtype, long now_ms,
                     dnsbl_answer_t *out);
void dnsbl_cache_put(dnsbl_cache_t *c, const char *qname, int qtype, const dnsbl_answer_t *a,
                     long ttl_ms, long now_ms);
void dnsbl_cache_usage(dnsbl_cache_t *c, uint64_t *entries, uint64_t *bytes);

/*
 * ---- resolver: one thread owning one c-ares channel, shared by every
 * generation with the same nameserver settings (reference counted).
 *
 * A batch groups the lookups one owner waits for (a connection's client
 * address, a message's domains, a list's probes). Lookups are records in
 * the batch; the resolver thread fills them in. The owner gives the batch
 * up with dnsbl_batch_release(); the batch is freed when it is released
 * and nothing is in flight, by whichever side comes last, so an answer
 * arriving after its connection has gone touches only the batch.
 */
typedef struct dnsbl_resolver dnsbl_resolver_t;
typedef struct dnsbl_batch dnsbl_batch_t;
typedef struct dnsbl_query dnsbl_query_t;

typedef struct dnsbl_resolver_conf {
	const char *servers_csv; /* "ip:port,..." or NULL for the system's */
	long timeout_ms;         /* per try */
	int tries;
	size_t cache_max_entries, cache_max_bytes;
	long max_ttl_ms, negative_ttl_ms;
} dnsbl_resolver_conf_t;

/* NULL with a reason in err when c-ares refuses the settings. */
dnsbl_resolver_t *dnsbl_resolver_new(const dnsbl_resolver_conf_t *rc, char *err, size_t err_bytes);
bool dnsbl_resolver_same(const dnsbl_resolver_t *r, const dnsbl_resolver_conf_t *rc);
/* Starts the resolver thread now rather than at the first query (idempotent); 0 or an errno. */
int dnsbl_resolver_start(dnsbl_resolver_t *r);
dnsbl_resolver_t *dnsbl_resolver_ref(dnsbl_resolver_t *r);
/* The last reference stops the thread (pending lookups fail) and frees everything. */
void dnsbl_resolver_unref(dnsbl_resolver_t *r);

typedef struct dnsbl_resolver_stats {
	uint64_t queries, cache_hits, failures, shared, cache_entries, cache_bytes;
} dnsbl_resolver_stats_t;
void dnsbl_resolver_stats(dnsbl_resolver_t *r, dnsbl_resolver_stats_t *st);

dnsbl_batch_t *dnsbl_batch_new(void);
/*
 * Starts a lookup of qname's A records (and, when listed and want_txt, its
 * TXT record). use_cache false bypasses the cache (probes). The returned
 * record belongs to the batch.
 */
dnsbl_query_t *dnsbl_resolver_submit(dnsbl_resolver_t *r, dnsbl_batch_t *b, const char *qname,
                                     bool want_txt, bool use_cache);
/* Waits until nothing is in flight or deadline_ms; true when all answered. */
bool dnsbl_batch_wait(dnsbl_batch_t *b, long deadline_ms);
/* true and a copy of the answer when the lookup has finished. */
bool dnsbl_query_result(dnsbl_batch_t *b, const dnsbl_query_t *q, dnsbl_answer_t *out, int *source);
void dnsbl_batch_release(dnsbl_batch_t *b);

/*
 * Parses a DNS response: A codes or TXT text, and the TTL to cache it for
 * (the smallest answer TTL; for negative answers min(SOA TTL, SOA minimum)
 * or -1 when there is no SOA). Exposed for the tests.
 */
int dnsbl_parse_response(const unsigned char *p, size_t n, int qtype, dnsbl_answer_t *out,
                         long *ttl_s);

#endif
