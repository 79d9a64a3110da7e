/*
 * rep_queue.c - the bounded queue of reputation updates waiting for Redis,
 * aggregated per entity over the write window, with the one batch in
 * flight kept frozen until Redis confirms it (see rep.h). Allocated once:
 * pushing from a milter thread never allocates and never waits on the
 * network.
 */
#include "config.h"

#include "rep.h"
#include "xalloc.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { E_FREE, E_OPEN, E_FLIGHT };

struct qent {
	char key[REP_KEY_MAX_BYTES];
	rep_counts_t c;
	uint32_t pushes;
	long first_ms;      /* monotonic: when its first update arrived (the window) */
	int32_t prev, next; /* the FIFO of open entries, or the free list (next) */
	int32_t hnext;      /* hash chain */
	uint8_t state;
};

struct rep_wqueue {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	double half_life_s;
	struct qent *e;
	size_t cap, used;
	int32_t *bucket;
	size_t nbucket; /* a power of two */
	int32_t free_head;
	int32_t open_head, open_tail;
	size_t nopen;
	int32_t flight[REP_WRITE_BATCH_MAX];
	size_t nflight;
	uint64_t flight_seq, next_seq;
	int64_t flight_at;
	uint64_t dropped;
	bool woken;
};

static long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t hash_key(const char *k)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *k; k++)
		h = (h ^ (unsigned char)*k) * 1099511628211ull;
	return (size_t)h;
}

rep_wqueue_t *rep_wqueue_new(size_t max_entities, double half_life_s)
{
	rep_wqueue_t *q = xalloc_calloc(1, sizeof(*q));
	pthread_condattr_t ca;

	if (max_entities == 0)
		max_entities = 1;
	q->half_life_s = half_life_s > 1 ? half_life_s : 1;
	q->e = xalloc_calloc(max_entities, sizeof(*q->e));
	q->cap = max_entities;
	for (q->nbucket = 16; q->nbucket < 2 * max_entities; q->nbucket *= 2)
		;
	q->bucket = xalloc_calloc(q->nbucket, sizeof(*q->bucket));
	for (size_t i = 0; i < q->nbucket; i++)
		q->bucket[i] = -1;
	for (size_t i = 0; i < max_entities; i++)
		q->e[i].next = i + 1 < max_entities ? (int32_t)(i + 1) : -1;
	q->free_head = 0;
	q->open_head = q->open_tail = -1;
	q->next_seq = 1;
	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cv, &ca);
	pthread_condattr_destroy(&ca);
	return q;
}

void rep_wqueue_free(rep_wqueue_t *q)
{
	if (q == NULL)
		return;
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	free(q->e);
	free(q->bucket);
	free(q);
}

static void open_unlink(rep_wqueue_t *q, int32_t i)
{
	struct qent *x = &q->e[i];
	if (x->prev >= 0)
		q->e[x->prev].next = x->next;
	else
		q->open_head = x->next;
	if (x->next >= 0)
		q->e[x->next].prev = x->prev;
	else
		q->open_tail = x->prev;
	q->nopen--;
}

/* Takes an entry out of its hash chain and gives it back to the free list. */
static void release(rep_wqueue_t *q, int32_t i)
{
	int32_t *pp = &q->bucket[hash_key(q->e[i].key) & (q->nbucket - 1)];
	while (*pp >= 0 && *pp != i)
		pp = &q->e[*pp].hnext;
	if (*pp == i)
		*pp = q->e[i].hnext;
	q->e[i].state = E_FREE;
	q->e[i].next = q->free_head;
	q->free_head = i;
	q->used--;
}

static int32_t find_open(rep_wqueue_t *q, const char *key)
{
	for (int32_t i = q->bucket[hash_key(key) & (q->nbucket - 1)]; i >= 0; i = q->e[i].hnext)
		if (q->e[i].state == E_OPEN && strcmp(q->e[i].key, key) == 0)
			return i;
	return -1;
}

bool rep_wqueue_push(rep_wqueue_t *q, const rep_witem_t *it)
{
	bool kept_all = true;

	pthread_mutex_lock(&q->mu);
	int32_t i = find_open(q, it->key);
	if (i >= 0) {
		rep_counts_add(&q->e[i].c, it->t, it->spam, it->ham, q->half_life_s);
		q->e[i].pushes++;
		pthread_mutex_unlock(&q->mu);
		return true;
	}
	if (q->used == q->cap) {
		/* Fresh observations are worth more than old ones: the oldest open entity goes. */
		kept_all = false;
		if (q->open_head < 0) {
			q->dropped++; /* everything is in flight: this one cannot wait */
			pthread_mutex_unlock(&q->mu);
			return false;
		}
		int32_t old = q->open_head;
		q->dropped += q->e[old].pushes;
		open_unlink(q, old);
		release(q, old);
	}
	bool was_empty = q->used == 0;
	i = q->free_head;
	struct qent *x = &q->e[i];
	q->free_head = x->next;
	q->used++;
	snprintf(x->key, sizeof(x->key), "%s", it->key);
	memset(&x->c, 0, sizeof(x->c));
	x->c.t = it->t;
	rep_counts_add(&x->c, it->t, it->spam, it->ham, q->half_life_s);
	x->pushes = 1;
	x->first_ms = mono_ms();
	x->state = E_OPEN;
	size_t b = hash_key(x->key) & (q->nbucket - 1);
	x->hnext = q->bucket[b];
	q->bucket[b] = i;
	x->next = -1;
	x->prev = q->open_tail;
	if (q->open_tail >= 0)
		q->e[q->open_tail].next = i;
	else
		q->open_head = i;
	q->open_tail = i;
	q->nopen++;
	if (was_empty)
		pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	return kept_all;
}

static void copy_out(const struct qent *x, rep_wentry_t *o)
{
	snprintf(o->key, sizeof(o->key), "%s", x->key);
	o->c = x->c;
	o->pushes = x->pushes;
}

/* A batch is due when its oldest entity has waited the window, or the queue is filling up. */
static bool due(rep_wqueue_t *q, long window_ms, long now)
{
	return q->open_head >= 0 &&
	       (now - q->e[q->open_head].first_ms >= window_ms || q->used * 4 >= q->cap * 3);
}

size_t rep_wqueue_batch(rep_wqueue_t *q, long window_ms, bool force, rep_wentry_t *out, size_t max,
                        uint64_t *seq, int64_t *at)
{
	size_t n = 0;

	pthread_mutex_lock(&q->mu);
	if (q->nflight == 0 && (force ? q->open_head >= 0 : due(q, window_ms, mono_ms()))) {
		/* Frozen from here on: a re-send must carry exactly what the first try did. */
		while (q->open_head >= 0 && q->nflight < REP_WRITE_BATCH_MAX && q->nflight < max) {
			int32_t i = q->open_head;
			open_unlink(q, i);
			q->e[i].state = E_FLIGHT;
			q->flight[q->nflight++] = i;
		}
		q->flight_seq = q->next_seq++;
		q->flight_at = (int64_t)time(NULL);
	}
	for (size_t k = 0; k < q->nflight && n < max; k++)
		copy_out(&q->e[q->flight[k]], &out[n++]);
	*seq = q->flight_seq;
	*at = q->flight_at;
	pthread_mutex_unlock(&q->mu);
	return n;
}

void rep_wqueue_confirm(rep_wqueue_t *q, uint64_t seq)
{
	pthread_mutex_lock(&q->mu);
	if (q->nflight > 0 && q->flight_seq == seq) {
		for (size_t k = 0; k < q->nflight; k++)
			release(q, q->flight[k]);
		q->nflight = 0;
	}
	pthread_mutex_unlock(&q->mu);
}

long rep_wqueue_due_ms(rep_wqueue_t *q, long window_ms)
{
	long r;
	pthread_mutex_lock(&q->mu);
	long now = mono_ms();
	if (q->nflight > 0 || due(q, window_ms, now))
		r = 0;
	else if (q->open_head < 0)
		r = -1;
	else
		r = window_ms - (now - q->e[q->open_head].first_ms);
	pthread_mutex_unlock(&q->mu);
	return r;
}

bool rep_wqueue_pending(rep_wqueue_t *q, const char *key, rep_counts_t *out)
{
	bool any = false;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&q->mu);
	for (int32_t i = q->bucket[hash_key(key) & (q->nbucket - 1)]; i >= 0; i = q->e[i].hnext) {
		const struct qent *x = &q->e[i];
		if (x->state == E_FREE || strcmp(x->key, key) != 0)
			continue;
		rep_counts_add(out, x->c.t, x->c.spam, x->c.ham, q->half_life_s);
		any = true;
	}
	pthread_mutex_unlock(&q->mu);
	return any;
}

/* Appends one entity as observations of at most 255 each (the saved form's unit). */
static void dump_one(const struct qent *x, rep_witem_t **arr, size_t *n, size_t *cap)
{
	long s = lround(x->c.spam), h = lround(x->c.ham);
	while (s > 0 || h > 0) {
		if (*n == *cap) {
			*cap = *cap ? 2 * *cap : 64;
			*arr = xalloc_realloc(*arr, *cap * sizeof(**arr));
		}
		rep_witem_t *w = &(*arr)[(*n)++];
		memset(w, 0, sizeof(*w));
		w->t = x->c.t;
		w->spam = (uint8_t)(s > 255 ? 255 : s);
		w->ham = (uint8_t)(h > 255 ? 255 : h);
		snprintf(w->key, sizeof(w->key), "%s", x->key);
		s -= w->spam;
		h -= w->ham;
	}
}

size_t rep_wqueue_dump(rep_wqueue_t *q, rep_witem_t **out)
{
	size_t n = 0, cap = 0;
	*out = NULL;
	pthread_mutex_lock(&q->mu);
	for (size_t k = 0; k < q->nflight; k++)
		dump_one(&q->e[q->flight[k]], out, &n, &cap);
	for (int32_t i = q->open_head; i >= 0; i = q->e[i].next)
		dump_one(&q->e[i], out, &n, &cap);
	pthread_mutex_unlock(&q->mu);
	return n;
}

size_t rep_wqueue_len(rep_wqueue_t *q)
{
	pthread_mutex_lock(&q->mu);
	size_t n = q->used;
	pthread_mutex_unlock(&q->mu);
	return n;
}

uint64_t rep_wqueue_dropped(rep_wqueue_t *q)
{
	pthread_mutex_lock(&q->mu);
	uint64_t n = q->dropped;
	pthread_mutex_unlock(&q->mu);
	return n;
}

bool rep_wqueue_wait(rep_wqueue_t *q, long timeout_ms)
{
	struct timespec ts;
	bool any;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&q->mu);
	bool empty = q->used == 0;
	while (!q->woken && !(empty && q->used > 0))
		if (pthread_cond_timedwait(&q->cv, &q->mu, &ts) == ETIMEDOUT)
			break;
	q->woken = false;
	any = q->used > 0;
	pthread_mutex_unlock(&q->mu);
	return any;
}

void rep_wqueue_wake(rep_wqueue_t *q)
{
	pthread_mutex_lock(&q->mu);
	q->woken = true;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
}
