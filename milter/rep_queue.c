/*
 * rep_queue.c - the bounded queue of reputation updates waiting for Redis.
 * A fixed ring allocated once: pushing from a milter thread never
 * allocates and never blocks on the network (see rep.h).
 */
#include "config.h"

#include "rep.h"
#include "xalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rep_wqueue {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	rep_witem_t *ring;
	bool *done; /* written out of order (a merged batch), removed when at the head */
	size_t cap, head, len, ndone;
	uint64_t next_seq;
	uint64_t dropped;
	bool woken;
};

rep_wqueue_t *rep_wqueue_new(size_t max_items)
{
	rep_wqueue_t *q = xalloc_calloc(1, sizeof(*q));
	pthread_condattr_t ca;

	if (max_items == 0)
		max_items = 1;
	q->ring = xalloc_calloc(max_items, sizeof(*q->ring));
	q->done = xalloc_calloc(max_items, sizeof(*q->done));
	q->cap = max_items;
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
	free(q->ring);
	free(q->done);
	free(q);
}

/* Removes the head item; the caller holds the lock. */
static void pop_head(rep_wqueue_t *q)
{
	if (q->done[q->head]) {
		q->done[q->head] = false;
		q->ndone--;
	}
	q->head = (q->head + 1) % q->cap;
	q->len--;
}

bool rep_wqueue_push(rep_wqueue_t *q, const rep_witem_t *it)
{
	bool kept_all = true;

	pthread_mutex_lock(&q->mu);
	if (q->len == q->cap) {
		/* An item already written is no loss. */
		if (!q->done[q->head]) {
			q->dropped++;
			kept_all = false;
		}
		pop_head(q);
		while (q->len > 0 && q->done[q->head])
			pop_head(q);
	}
	rep_witem_t *slot = &q->ring[(q->head + q->len) % q->cap];
	*slot = *it;
	slot->seq = q->next_seq++;
	q->len++;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	return kept_all;
}

size_t rep_wqueue_peek(rep_wqueue_t *q, rep_witem_t *out, size_t max)
{
	size_t n;

	pthread_mutex_lock(&q->mu);
	n = 0;
	for (size_t i = 0; i < q->len && n < max; i++) {
		size_t at = (q->head + i) % q->cap;
		if (!q->done[at])
			out[n++] = q->ring[at];
	}
	pthread_mutex_unlock(&q->mu);
	return n;
}

void rep_wqueue_ack(rep_wqueue_t *q, uint64_t upto)
{
	pthread_mutex_lock(&q->mu);
	/* Items dropped meanwhile are gone already; the sequence numbers say which are left. */
	while (q->len > 0 && (q->ring[q->head].seq <= upto || q->done[q->head]))
		pop_head(q);
	pthread_mutex_unlock(&q->mu);
}

void rep_wqueue_ack_seqs(rep_wqueue_t *q, const uint64_t *seqs, size_t n)
{
	pthread_mutex_lock(&q->mu);
	/* Sequence numbers are consecutive from the head: an item's slot is arithmetic. */
	uint64_t head_seq = q->next_seq - q->len;
	for (size_t i = 0; i < n; i++) {
		if (seqs[i] < head_seq || seqs[i] - head_seq >= q->len)
			continue; /* dropped meanwhile */
		size_t at = (q->head + (size_t)(seqs[i] - head_seq)) % q->cap;
		if (!q->done[at]) {
			q->done[at] = true;
			q->ndone++;
		}
	}
	while (q->len > 0 && q->done[q->head])
		pop_head(q);
	pthread_mutex_unlock(&q->mu);
}

size_t rep_wqueue_len(rep_wqueue_t *q)
{
	pthread_mutex_lock(&q->mu);
	size_t n = q->len - q->ndone;
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
	while (q->len == q->ndone && !q->woken)
		if (pthread_cond_timedwait(&q->cv, &q->mu, &ts) == ETIMEDOUT)
			break;
	q->woken = false;
	any = q->len > q->ndone;
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
