/*
 * dns_cache.c - the in-process cache of DNS answers (dns.h), shared by all
 * threads. Entries expire with the answer's TTL (positive and negative);
 * the cache is bounded in entries and bytes and evicts the oldest insert
 * first, which for TTL-bound data is nearly as good as LRU and needs no
 * write on the read path.
 */
#include "config.h"

#include "dns.h"
#include "xalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Shards keep worker threads from serialising on one lock; each shard
 * has its own share of the bounds.
 */
#define CACHE_SHARDS      16
#define CACHE_MIN_BUCKETS 64

struct centry {
	struct centry *hnext;       /* hash chain */
	struct centry *prev, *next; /* insertion order, oldest first */
	long expires_ms;
	size_t bytes;
	uint32_t hash;
	uint16_t qtype;
	uint8_t status;
	uint8_t nrr;
	uint16_t used;
	void *rr;   /* nrr records' offsets, in this allocation after key */
	char *data; /* used bytes, after rr */
	char key[];
};

struct shard {
	pthread_mutex_t lock;
	struct centry **buckets;
	size_t nbuckets; /* power of two */
	struct centry *oldest, *newest;
	size_t entries, bytes;
	size_t max_entries, max_bytes;
};

struct dns_cache {
	struct shard shards[CACHE_SHARDS];
};

/*
 * The shard takes the hash's low bits, so a shard's chains must not: with
 * the same bits every entry of a shard fell in 1/CACHE_SHARDS of its buckets.
 */
static size_t bucket_of(const struct shard *s, uint32_t h)
{
	return (h / CACHE_SHARDS) & (s->nbuckets - 1);
}

long dns_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint32_t dns_key_hash(const char *s, int qtype)
{
	/* FNV-1a: names are short, and any decent spread will do. */
	uint32_t h = 2166136261u ^ (uint32_t)qtype;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

dns_cache_t *dns_cache_new(size_t max_entries, size_t max_bytes)
{
	dns_cache_t *c = xalloc_calloc(1, sizeof(*c));
	size_t per_entries = max_entries / CACHE_SHARDS + 1;
	size_t per_bytes = max_bytes / CACHE_SHARDS + 1;
	size_t nb = CACHE_MIN_BUCKETS;
	while (nb < per_entries && nb < (1u << 20))
		nb <<= 1;
	for (int i = 0; i < CACHE_SHARDS; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_init(&s->lock, NULL);
		s->nbuckets = nb;
		s->buckets = xalloc_calloc(nb, sizeof(*s->buckets));
		s->max_entries = per_entries;
		s->max_bytes = per_bytes;
	}
	return c;
}

void dns_cache_free(dns_cache_t *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < CACHE_SHARDS; i++) {
		struct shard *s = &c->shards[i];
		for (struct centry *e = s->oldest, *next; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	free(c);
}

/* Unlinks e from its chain and the age list; the shard lock is held. */
static void shard_remove(struct shard *s, struct centry *e)
{
	struct centry **pp = &s->buckets[bucket_of(s, e->hash)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->prev)
		e->prev->next = e->next;
	else
		s->oldest = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		s->newest = e->prev;
	s->entries--;
	s->bytes -= e->bytes;
	free(e);
}

static struct centry *shard_find(struct shard *s, const char *qname, int qtype, uint32_t h)
{
	for (struct centry *e = s->buckets[bucket_of(s, h)]; e != NULL; e = e->hnext)
		if (e->hash == h && e->qtype == qtype && strcmp(e->key, qname) == 0)
			return e;
	return NULL;
}

bool dns_cache_get(dns_cache_t *c, const char *qname, int qtype, long now_ms, dns_answer_t *out)
{
	uint32_t h = dns_key_hash(qname, qtype);
	struct shard *s = &c->shards[h % CACHE_SHARDS];
	bool found = false;
	pthread_mutex_lock(&s->lock);
	struct centry *e = shard_find(s, qname, qtype, h);
	if (e != NULL && e->expires_ms <= now_ms) {
		shard_remove(s, e);
		e = NULL;
	}
	if (e != NULL) {
		found = true;
		out->status = e->status;
		out->nrr = e->nrr;
		memcpy(out->rr, e->rr, e->nrr * sizeof(out->rr[0]));
		out->used = e->used;
		memcpy(out->data, e->data, e->used);
	}
	pthread_mutex_unlock(&s->lock);
	return found;
}

void dns_cache_put(dns_cache_t *c, const char *qname, int qtype, const dns_answer_t *a, long ttl_ms,
                   long now_ms)
{
	if (ttl_ms <= 0 || a->status == DNS_PENDING || a->status == DNS_SERVFAIL ||
	    a->status == DNS_TIMEOUT)
		return; /* failures are not answers: the next message asks again */
	uint32_t h = dns_key_hash(qname, qtype);
	struct shard *s = &c->shards[h % CACHE_SHARDS];
	size_t klen = strlen(qname) + 1;
	size_t rlen = a->nrr * sizeof(a->rr[0]);
	size_t bytes = sizeof(struct centry) + klen + rlen + a->used;
	struct centry *e = xalloc_malloc(bytes);
	memset(e, 0, sizeof(*e));
	memcpy(e->key, qname, klen);
	e->rr = e->key + klen;
	memcpy(e->rr, a->rr, rlen);
	e->data = (char *)e->rr + rlen;
	memcpy(e->data, a->data, a->used);
	e->used = (uint16_t)a->used;
	e->bytes = bytes;
	e->hash = h;
	e->qtype = (uint16_t)qtype;
	e->status = (uint8_t)a->status;
	e->nrr = (uint8_t)a->nrr;
	e->expires_ms = now_ms + ttl_ms;

	pthread_mutex_lock(&s->lock);
	struct centry *old = shard_find(s, qname, qtype, h);
	if (old)
		shard_remove(s, old);
	while (s->oldest != NULL &&
	       (s->entries + 1 > s->max_entries || s->bytes + bytes > s->max_bytes))
		shard_remove(s, s->oldest);
	size_t b = bucket_of(s, h);
	e->hnext = s->buckets[b];
	s->buckets[b] = e;
	e->prev = s->newest;
	if (s->newest)
		s->newest->next = e;
	else
		s->oldest = e;
	s->newest = e;
	s->entries++;
	s->bytes += bytes;
	pthread_mutex_unlock(&s->lock);
}

void dns_cache_usage(dns_cache_t *c, uint64_t *entries, uint64_t *bytes)
{
	uint64_t n = 0, b = 0;
	for (int i = 0; i < CACHE_SHARDS; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_lock(&s->lock);
		n += s->entries;
		b += s->bytes;
		pthread_mutex_unlock(&s->lock);
	}
	*entries = n;
	*bytes = b;
}
