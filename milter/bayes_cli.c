/*
 * bayes_cli.c - `sift learn` (bulk learning from files, directories and
 * mboxes, in large batches) and `sift bayes` (stats, dump, load, expire,
 * compact). Learning builds the same generation as `sift check` and reads
 * each message through the pipeline (scan.h): the same header policy, the
 * same size cut and MIME limits, so the tokens learned are the tokens scored.
 */
#include "config.h"

#include "bayes.h"
#include "scan.h"
#include "xalloc.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#define LEARN_BATCH_MESSAGES     8000         /* messages per write transaction */
#define LEARN_BATCH_KEYS         (4u << 20)   /* or this many keys, whichever first */
#define LEARN_PEND_MESSAGES      2000         /* messages per batch with the regression */
#define LEARN_MAX_DEPTH          16           /* directory recursion */
#define LEARN_MAX_PASSES         10           /* train-until-no-error */
#define LEARN_UNFIT_STOP         32           /* messages without room, in a row: full */
#define LEARN_PEND_KEYS          (1u << 20)   /* batch keys with the regression's table */
#define LEARN_HEAP_BYTES         (240u << 20) /* below M_MMAP_THRESHOLD: from the heap */
#define LEARN_HUGE_PAGE_BYTES    (2u << 20)
#define EXPIRE_DEFAULT_DAYS      90
#define EXPIRE_DEFAULT_MAX_COUNT 1

typedef struct pend {
	uint64_t key;
	uint32_t idx; /* the key's number in the batch: in l->miss, l->pw, l->pfirst */
} pend_t;

/* A batch item's regression step, taken at the flush. */
typedef struct pend_item {
	size_t miss_off, miss_n; /* the keys it met first, in l->miss */
	bool step;               /* takes a regression step */
} pend_item_t;

typedef struct learner {
	bayes_store_t *store;
	bayes_settings_t set;
	scan_gen_t *gen;
	scan_conn_t *conn; /* one offline connection: the pipeline's reader */
	bayes_op_t op;
	/* The batch: items whose keys sit in one pool, as offsets until flush. */
	bayes_learn_item_t *items;
	size_t *offs;
	size_t n, cap;
	uint64_t *pool;
	size_t pool_n, pool_cap;
	bayes_apply_result_t total;
	size_t messages, errors;
	size_t unfit;     /* not learned: no room in the map for them */
	size_t unfit_run; /* of those, in a row up to the last flush */
	int failed;       /* a store error (or a batch of which nothing fitted): stop */
	/*
	 * Scoring each message before learning it (a train-on-error mode, or
	 * the logistic regression, whose step depends on the current weights)
	 * makes learning sequential: each message is applied before the next
	 * is scored. The store is then opened without syncing every commit.
	 */
	bool sequential;
	bayes_train_mode_t mode;
	size_t skipped;     /* scored right outside the margin: not learned */
	size_t pass_errors; /* scored wrong in this pass (train-until-no-error) */
	/*
	 * train-always with the regression learns in batches all the same: this
	 * table (open addressing, cleared at each flush) holds the current
	 * weight of every key the batch has met, the store's plus the batch's
	 * steps not yet applied, so every step sees the steps before it as one
	 * by one would.
	 */
	pend_t *pend;              /* key 0: an empty slot */
	size_t pend_cap;           /* a power of two, at least twice pend_n */
	size_t *pend_used, pend_n; /* the slots in use, to clear only those */
	size_t pend_used_cap;
	pend_item_t *pitems; /* beside items */
	uint64_t *miss;      /* the keys to read from the store, in order met */
	size_t miss_n, miss_cap;
	/*
	 * By a key's number (pend_t.idx), beside l->miss: its current weight
	 * and the batch's item that met it first; and by pool position, the
	 * number of each key there. The steps then read and write arrays of
	 * a megabyte, in the cache, not the table (pend_steps()).
	 */
	float *pw;
	uint32_t *pfirst;
	uint32_t *pidx;
	size_t pidx_cap;
	/* With bayes_lr_mix, beside l->pw: each key's counts, the store's plus
	 * the batch's so far, for Bayes's score of each message in turn. */
	uint32_t *pspam, *pham;
} learner_t;

static size_t pend_slot(const learner_t *l, uint64_t key)
{
	size_t mask = l->pend_cap - 1, i = (size_t)(key * 0x9e3779b97f4a7c15ULL >> 20) & mask;
	while (l->pend[i].key != 0 && l->pend[i].key != key)
		i = (i + 1) & mask;
	return i;
}

/*
 * Makes room for `more` new keys. The table grows with the batch's distinct
 * keys rather than being sized for the largest batch up front: a table of
 * tens of megabytes cost a page fault per first touch and a cache miss per
 * probe, the largest costs in `sift learn` profiles with the regression.
 */
static void pend_reserve(learner_t *l, size_t more)
{
	size_t need = l->pend_n + more;
	if (need > l->pend_used_cap) {
		while (need > l->pend_used_cap)
			l->pend_used_cap *= 2;
		l->pend_used =
		    xalloc_realloc(l->pend_used, l->pend_used_cap * sizeof(*l->pend_used));
	}
	if (2 * need <= l->pend_cap)
		return;
	pend_t *old = l->pend;
	size_t *used = l->pend_used;
	while (2 * need > l->pend_cap)
		l->pend_cap *= 2;
	l->pend = xalloc_calloc(l->pend_cap, sizeof(*l->pend));
	for (size_t i = 0; i < l->pend_n; i++) {
		pend_t e = old[used[i]];
		size_t j = pend_slot(l, e.key);
		l->pend[j] = e;
		used[i] = j;
	}
	free(old);
}

/* LSD radix sort, 11 bits a pass: qsort's callbacks showed in profiles. */
static void sort_u64(uint64_t *k, size_t n)
{
	enum { BITS = 11, BUCKETS = 1 << BITS };
	uint64_t *tmp = xalloc_malloc(n * sizeof(*tmp)), *src = k, *dst = tmp;
	size_t *count = xalloc_malloc(BUCKETS * sizeof(*count));
	for (unsigned shift = 0; shift < 64; shift += BITS) {
		memset(count, 0, BUCKETS * sizeof(*count));
		for (size_t i = 0; i < n; i++)
			count[(src[i] >> shift) & (BUCKETS - 1)]++;
		size_t sum = 0;
		for (size_t b = 0; b < BUCKETS; b++) {
			size_t c = count[b];
			count[b] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			dst[count[(src[i] >> shift) & (BUCKETS - 1)]++] = src[i];
		uint64_t *t = src;
		src = dst;
		dst = t;
	}
	if (src != k)
		memcpy(k, src, n * sizeof(*k));
	free(tmp);
	free(count);
}

/*
 * The regression's steps of a batch, message by message as one by one
 * would take them: the keys first met in the batch are read from the store
 * once, together and in key order (the B-tree's pages then come in order,
 * not one random descent per key), then each message's score is summed in
 * the order learning it alone would sum it, and its step added to its keys.
 */
static int pend_steps(learner_t *l)
{
	bool mix = l->set.lr_mix;
	bayes_totals_t tot = {0, 0, BAYES_TOKENIZER_VERSION, 0, {0}};
	if (l->miss_n > 0) {
		uint64_t *sorted = xalloc_malloc(l->miss_n * sizeof(*sorted));
		bayes_counts_t *c = xalloc_malloc(l->miss_n * sizeof(*c));
		memcpy(sorted, l->miss, l->miss_n * sizeof(*sorted));
		sort_u64(sorted, l->miss_n);
		int rc = bayes_store_lookup(l->store, sorted, l->miss_n, c, &tot);
		if (rc == BAYES_OK)
			for (size_t k = 0; k < l->miss_n; k++) {
				uint32_t x = l->pend[pend_slot(l, sorted[k] | 1)].idx;
				l->pw[x] = c[k].weight;
				if (mix) {
					l->pspam[x] = c[k].spam;
					l->pham[x] = c[k].ham;
				}
			}
		free(sorted);
		free(c);
		if (rc != BAYES_OK)
			return rc;
	}
	for (size_t i = 0; i < l->n; i++) {
		const pend_item_t *p = &l->pitems[i];
		if (!p->step)
			continue;
		const uint32_t *ix = l->pidx + l->offs[i];
		size_t n = l->items[i].n;
		bayes_score_t sc;
		memset(&sc, 0, sizeof(sc));
		/* Keys met before this message first, then those it met first
		 * (numbered miss_off on, in the order it met them). */
		for (size_t j = 0; j < n; j++)
			if (l->pfirst[ix[j]] != i)
				sc.lr_log_odds += l->pw[ix[j]];
		for (size_t k = 0; k < p->miss_n; k++)
			sc.lr_log_odds += l->pw[p->miss_off + k];
		bool spam = l->items[i].op == BAYES_LEARN_SPAM;
		float d = bayes_lr_delta(&l->set, &sc, spam);
		if (mix) {
			/*
			 * Bayes's score as one by one would see it: the counts of
			 * the store and of the batch's messages before this one
			 * (counted as learned: a batch's repeated or moved digests
			 * are rare, and the store sorts them out at the flush).
			 */
			if (tot.tokenizer == BAYES_TOKENIZER_VERSION &&
			    (long)tot.spam >= l->set.min_spam && (long)tot.ham >= l->set.min_ham) {
				bayes_counts_t *cnt = xalloc_malloc((n + 1) * sizeof(*cnt));
				for (size_t j = 0; j < n; j++)
					cnt[j] =
					    (bayes_counts_t){l->pspam[ix[j]], l->pham[ix[j]], 0, 0};
				bayes_classify(&l->set.params, cnt, n, &tot, NULL, NULL, &sc.res);
				free(cnt);
				sc.bayes_log_odds = sc.res.log_odds;
				sc.voted = true;
			}
			bayes_mix_step(&l->set, &sc, spam, &l->items[i].mix);
			uint32_t *cl = spam ? l->pspam : l->pham;
			for (size_t j = 0; j < n; j++)
				cl[ix[j]]++;
			if (spam)
				tot.spam++;
			else
				tot.ham++;
		}
		for (size_t j = 0; j < n; j++)
			l->pw[ix[j]] += d;
		l->items[i].lr_delta = d;
	}
	return BAYES_OK;
}

static int learner_flush(learner_t *l)
{
	if (l->n == 0 || l->failed)
		return l->failed;
	if (l->pend != NULL) {
		int rc = pend_steps(l);
		if (rc != BAYES_OK) {
			fprintf(stderr, "sift learn: %s: %s\n", bayes_store_path(l->store),
			        bayes_strerror(rc));
			l->failed = rc;
			return rc;
		}
	}
	for (size_t i = 0; i < l->n; i++)
		l->items[i].keys = l->pool + l->offs[i];
	bayes_apply_result_t r;
	int rc = bayes_store_apply(l->store, l->items, l->n, &r);
	if (rc != BAYES_OK && rc != BAYES_EFULL) {
		fprintf(stderr, "sift learn: %s: %s\n", bayes_store_path(l->store),
		        bayes_strerror(rc));
		l->failed = rc;
		return rc;
	}
	/*
	 * A message too big for the room left costs its own learning: go on
	 * while later ones still fit (a sequential mode flushes one message at
	 * a time); LEARN_UNFIT_STOP in a row and the store is full.
	 */
	if (rc == BAYES_EFULL) {
		l->unfit += r.unfit;
		l->unfit_run = r.unfit < l->n ? r.unfit : l->unfit_run + r.unfit;
		if (l->unfit_run >= LEARN_UNFIT_STOP) {
			fprintf(stderr, "sift learn: %s: %s\n", bayes_store_path(l->store),
			        bayes_strerror(rc));
			l->failed = rc;
		} else {
			fprintf(stderr,
			        "sift learn: %s: %zu message(s) too big for the room left, not "
			        "learned\n",
			        bayes_store_path(l->store), r.unfit);
		}
	} else {
		l->unfit_run = 0;
	}
	l->total.learned += r.learned;
	l->total.relearned += r.relearned;
	l->total.already += r.already;
	l->total.forgotten += r.forgotten;
	l->total.unknown += r.unknown;
	l->n = 0;
	l->pool_n = 0;
	for (size_t i = 0; i < l->pend_n; i++)
		l->pend[l->pend_used[i]].key = 0;
	l->pend_n = 0;
	l->miss_n = 0;
	return l->failed;
}

static void learn_message(learner_t *l, const char *data, size_t len)
{
	msg_t *m = scan_msg_new(l->conn);
	scan_msg_raw(l->conn, m, data, len);
	const mime_t *mi = scan_mime(l->conn, m);
	bayes_tokens_t tok;
	bayes_tokenize(m, mi, false, &tok);
	float lr_delta = 0;
	bayes_mix_step_t mix = {0};
	/* The table must hold the batch's keys and this message's: else flush
	 * first; a message of more keys than a batch takes no regression step. */
	if (l->pend != NULL && l->pend_n + tok.n > 2 * (size_t)LEARN_PEND_KEYS)
		learner_flush(l);
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 256;
		l->items = xalloc_realloc(l->items, l->cap * sizeof(*l->items));
		l->offs = xalloc_realloc(l->offs, l->cap * sizeof(*l->offs));
		if (l->pend != NULL)
			l->pitems = xalloc_realloc(l->pitems, l->cap * sizeof(*l->pitems));
	}
	if (l->pend != NULL)
		l->pitems[l->n] = (pend_item_t){l->miss_n, 0, false};
	if (l->pend != NULL && l->op != BAYES_FORGET && tok.n <= LEARN_PEND_KEYS) {
		/*
		 * train-always with the regression: its step needs the message's
		 * score under the weights as of now, the store's plus the batch's
		 * steps so far. The steps are taken at the flush (pend_steps());
		 * here the table only notes the keys the batch has not met yet.
		 */
		pend_reserve(l, tok.n);
		if (l->miss_n + tok.n > l->miss_cap) {
			while (l->miss_n + tok.n > l->miss_cap)
				l->miss_cap = l->miss_cap ? l->miss_cap * 2 : 1u << 15;
			l->miss = xalloc_realloc(l->miss, l->miss_cap * sizeof(*l->miss));
			l->pw = xalloc_realloc(l->pw, l->miss_cap * sizeof(*l->pw));
			if (l->set.lr_mix) {
				l->pspam =
				    xalloc_realloc(l->pspam, l->miss_cap * sizeof(*l->pspam));
				l->pham = xalloc_realloc(l->pham, l->miss_cap * sizeof(*l->pham));
			}
			l->pfirst = xalloc_realloc(l->pfirst, l->miss_cap * sizeof(*l->pfirst));
		}
		if (l->pool_n + tok.n > l->pidx_cap) {
			while (l->pool_n + tok.n > l->pidx_cap)
				l->pidx_cap = l->pidx_cap ? l->pidx_cap * 2 : 1u << 16;
			l->pidx = xalloc_realloc(l->pidx, l->pidx_cap * sizeof(*l->pidx));
		}
		for (size_t i = 0; i < tok.n; i++) {
			/* (key | 1: 0 marks an empty slot; keys differing in the last
			 * bit share a weight within one batch, a negligible blur) */
			size_t j = pend_slot(l, tok.keys[i] | 1);
			if (l->pend[j].key == 0) {
				l->pend[j] = (pend_t){tok.keys[i] | 1, (uint32_t)l->miss_n};
				l->pend_used[l->pend_n++] = j;
				l->pw[l->miss_n] = 0;
				l->pfirst[l->miss_n] = (uint32_t)l->n;
				l->miss[l->miss_n++] = tok.keys[i];
			}
			l->pidx[l->pool_n + i] = l->pend[j].idx;
		}
		l->pitems[l->n].miss_n = l->miss_n - l->pitems[l->n].miss_off;
		l->pitems[l->n].step = true;
		l->pass_errors++;
	} else if (l->sequential && l->op != BAYES_FORGET) {
		bool spam = l->op == BAYES_LEARN_SPAM;
		bayes_score_t sc;
		int rc = bayes_score_tokens(l->store, &l->set, &tok, msg_arena(m), NULL, &sc);
		if (rc != BAYES_OK) {
			fprintf(stderr, "sift learn: %s: %s\n", bayes_store_path(l->store),
			        bayes_strerror(rc));
			l->failed = rc;
			msg_free(m);
			return;
		}
		l->messages++;
		if (!bayes_train_wanted(l->mode, sc.voted, sc.log_odds, spam,
		                        l->set.train_margin)) {
			l->skipped++;
			msg_free(m);
			return;
		}
		/* A store below its minimum does not vote: another pass can
		 * change that only if this one learned something new. */
		if (sc.voted)
			l->pass_errors++;
		l->messages--; /* counted again below */
		lr_delta = bayes_lr_delta(&l->set, &sc, spam);
		bayes_mix_step(&l->set, &sc, spam, &mix);
	}

	if (l->pool_n + tok.n > l->pool_cap) {
		while (l->pool_n + tok.n > l->pool_cap)
			l->pool_cap = l->pool_cap ? l->pool_cap * 2 : 1u << 16;
		l->pool = xalloc_realloc(l->pool, l->pool_cap * sizeof(*l->pool));
	}
	memcpy(l->pool + l->pool_n, tok.keys, tok.n * sizeof(*tok.keys));
	bayes_learn_item_t *it = &l->items[l->n];
	it->op = l->op;
	it->lr_delta = lr_delta;
	it->mix = mix;
	it->n = tok.n;
	memcpy(it->digest, tok.digest, sizeof(it->digest));
	l->offs[l->n++] = l->pool_n;
	l->pool_n += tok.n;
	l->messages++;
	msg_free(m);
	/*
	 * Each commit rewrites most of the tree's leaf pages (a batch of
	 * thousands of messages touches a good part of the tokens), so fewer,
	 * larger batches write less. With the regression the batch bounds stay
	 * where they were: a token's weight adds each batch's summed steps, and
	 * other bounds would round the float sums differently.
	 */
	if ((l->sequential && l->pend == NULL) ||
	    l->n >= (l->pend ? LEARN_PEND_MESSAGES : LEARN_BATCH_MESSAGES) ||
	    l->pool_n >= (l->pend ? LEARN_PEND_KEYS : LEARN_BATCH_KEYS))
		learner_flush(l);
}

/*
 * The mbox message at p (p < end): messages start at lines beginning
 * "From ", and that line is dropped. *body gets its start; returns where
 * the next one starts (or end).
 */
static const char *mbox_message(const char *p, const char *end, const char **body)
{
	const char *b = memchr(p, '\n', (size_t)(end - p));
	b = b ? b + 1 : end;
	*body = b;
	for (const char *next = b;;) {
		const char *nl = memchr(next, '\n', (size_t)(end - next));
		if (nl == NULL)
			return end;
		next = nl + 1;
		if ((size_t)(end - next) >= 5 && memcmp(next, "From ", 5) == 0)
			return next;
	}
}

static void learn_mbox(learner_t *l, const char *data, size_t len)
{
	const char *end = data + len, *body;
	for (const char *p = data, *next; p < end; p = next) {
		next = mbox_message(p, end, &body);
		learn_message(l, body, (size_t)(next - body));
	}
}

/* One message file, or an mbox (split at its "From " lines). */
static int learn_visit(const char *path, void *ud)
{
	learner_t *l = ud;
	size_t len;
	if (l->failed)
		return 1;
	char *data = scan_read_file(path, &len);
	if (data == NULL) {
		fprintf(stderr, "sift learn: %s: %s\n", path, strerror(errno));
		l->errors++;
		return 0;
	}
	if (len >= 5 && memcmp(data, "From ", 5) == 0)
		learn_mbox(l, data, len);
	else
		learn_message(l, data, len);
	free(data);
	return l->failed ? 1 : 0;
}

static void learn_fail(const char *path, int err, void *ud)
{
	learner_t *l = ud;
	/* Too deep a directory is skipped quietly, as before. */
	if (err == ELOOP)
		return;
	fprintf(stderr, "sift learn: %s: %s\n", path, strerror(err));
	l->errors++;
}

/*
 * One class's messages when a run names both (`--spam A --ham B`): its
 * files, read one at a time, and the message next to learn in the current
 * one (an mbox is split at its "From " lines as learn_mbox() splits it).
 */
typedef struct learn_class {
	bayes_op_t op;
	char **files;
	size_t n, cap, next;
	char *data; /* the current file, or NULL */
	size_t len, pos;
	bool mbox;
	uint64_t total_bytes, done_bytes;
} learn_class_t;

typedef struct learn_collect {
	learner_t *l;
	learn_class_t *cls;
} learn_collect_t;

static int learn_collect_file(const char *path, void *ud)
{
	learn_collect_t *c = ud;
	learn_class_t *k = c->cls;
	struct stat st;
	if (stat(path, &st) != 0) {
		learn_fail(path, errno, c->l);
		return 0;
	}
	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 64;
		k->files = xalloc_realloc(k->files, k->cap * sizeof(*k->files));
	}
	k->files[k->n++] = xalloc_strdup(path);
	k->total_bytes += (uint64_t)st.st_size;
	return 0;
}

static void learn_collect_fail(const char *path, int err, void *ud)
{
	learn_fail(path, err, ((learn_collect_t *)ud)->l);
}

/* The class's next message, or false when it has none left. */
static bool learn_class_next(learner_t *l, learn_class_t *k, const char **msg, size_t *len)
{
	for (;;) {
		if (k->data != NULL && k->pos < k->len) {
			const char *p = k->data + k->pos, *end = k->data + k->len;
			if (!k->mbox) {
				*msg = p;
				*len = k->len;
				k->pos = k->len;
				k->done_bytes += k->len;
				return true;
			}
			const char *body, *next = mbox_message(p, end, &body);
			*msg = body;
			*len = (size_t)(next - body);
			k->done_bytes += (uint64_t)(next - p);
			k->pos = (size_t)(next - k->data);
			return true;
		}
		if (k->data != NULL) {
			free(k->data);
			k->data = NULL;
		}
		if (k->next >= k->n)
			return false;
		const char *path = k->files[k->next++];
		k->data = scan_read_file(path, &k->len);
		if (k->data == NULL) {
			fprintf(stderr, "sift learn: %s: %s\n", path, strerror(errno));
			l->errors++;
			continue;
		}
		k->pos = 0;
		k->mbox = k->len >= 5 && memcmp(k->data, "From ", 5) == 0;
	}
}

/*
 * A run that names both classes learns them interleaved, each spread evenly
 * over the run by the share of its bytes read so far. The logistic
 * regression learns on-line, and a run of all spam then all ham left it
 * leaning to the class learned last: on training folds 0-4 scored on 5-6,
 * recall at 0.1% FPR went from 0.951 (one class after the other) to 0.974
 * (twenty alternating chunks of each) and 0.987 (a hundred). Counts do not
 * depend on the order, so Bayes alone learns the same store either way.
 */
static void learn_interleaved(learner_t *l, learn_class_t *cls, size_t ncls)
{
	for (size_t i = 0; i < ncls; i++) {
		cls[i].next = 0;
		cls[i].done_bytes = 0;
	}
	bool live[3] = {true, true, true};
	while (!l->failed) {
		size_t pick = ncls;
		double best = 2;
		for (size_t i = 0; i < ncls; i++) {
			if (!live[i])
				continue;
			double share = cls[i].total_bytes
			                   ? (double)cls[i].done_bytes / (double)cls[i].total_bytes
			                   : 0;
			if (share < best) {
				best = share;
				pick = i;
			}
		}
		if (pick == ncls)
			break;
		const char *msg;
		size_t len;
		if (!learn_class_next(l, &cls[pick], &msg, &len)) {
			live[pick] = false;
			continue;
		}
		l->op = cls[pick].op;
		learn_message(l, msg, len);
	}
	for (size_t i = 0; i < ncls; i++) {
		free(cls[i].data);
		cls[i].data = NULL;
	}
}

/*
 * Bulk learning's memory is fresh: the batch's keys, the store's sums, and
 * LMDB's copies of every page a commit rewrites (most of the tree) are
 * touched once each, so a run takes a page fault per 4 KiB, tens of
 * thousands of them, a quarter to a third of its time in profiles (on a
 * virtual machine, where each fault is dear). So the heap is grown once, by
 * LEARN_HEAP_BYTES, with transparent huge pages advised for it, and given
 * back to malloc, which keeps it (M_TRIM_THRESHOLD): later allocations
 * carve from it and fault once per 2 MiB. Only touched pages take memory;
 * where huge pages are off (or the advice fails) it is the heap as before.
 */
static void learn_reserve_heap(void)
{
#ifdef MADV_HUGEPAGE
	const uintptr_t huge = LEARN_HUGE_PAGE_BYTES;
	char *p = malloc(LEARN_HEAP_BYTES);
	if (p == NULL)
		return;
	uintptr_t lo = ((uintptr_t)p + huge - 1) & ~(huge - 1);
	uintptr_t hi = ((uintptr_t)p + LEARN_HEAP_BYTES) & ~(huge - 1);
	if (hi > lo)
		(void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
	free(p);
#endif
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int read_settings(cli_ctx_t *ctx, bayes_settings_t *set)
{
	int rc = bayes_settings_read(ctx->conf, ctx->state_dir, set, ctx->diag);
	if (rc != 0 || diag_errors(ctx->diag) > 0) {
		diag_print(ctx->diag, stderr, 0);
		return -1;
	}
	return 0;
}

static int learn_run(cli_ctx_t *ctx, const char **paths, const bayes_op_t *ops, size_t npaths,
                     const char *mode);

int bayes_cmd_learn(cli_ctx_t *ctx, int argc, char **argv)
{
	static const struct option opts[] = {{"spam", no_argument, NULL, 's'},
	                                     {"ham", no_argument, NULL, 'h'},
	                                     {"forget", no_argument, NULL, 'f'},
	                                     {"mode", required_argument, NULL, 'm'},
	                                     {NULL, 0, NULL, 0}};
	int c;
	bool bad = false;
	const char *mode = NULL;
	/*
	 * Each operand is learned as the class named last before it, so one run
	 * can take both (`--spam A --ham B`); the operands are kept in order.
	 */
	int cur = -1; /* a bayes_op_t, or -1 before the first class */
	unsigned used = 0;
	const char **paths = xalloc_calloc((size_t)argc, sizeof(*paths));
	bayes_op_t *ops = xalloc_calloc((size_t)argc, sizeof(*ops));
	size_t npaths = 0;

	optind = 0; /* argv[0] is the command; 0 also resets glibc's getopt state */
	while ((c = getopt_long(argc, argv, "-", opts, NULL)) != -1) {
		switch (c) {
		case 's': cur = BAYES_LEARN_SPAM; break;
		case 'h': cur = BAYES_LEARN_HAM; break;
		case 'f': cur = BAYES_FORGET; break;
		case 'm': mode = optarg; break;
		case 1:
			if (cur < 0) {
				bad = true;
				break;
			}
			paths[npaths] = optarg;
			ops[npaths++] = (bayes_op_t)cur;
			used |= 1u << cur;
			break;
		default: bad = true; break;
		}
	}
	bool forget = (used & (1u << BAYES_FORGET)) != 0;
	if (bad || npaths == 0 || (forget && used != 1u << BAYES_FORGET)) {
		fprintf(stderr, "usage: sift learn [--mode train-always|train-on-error|"
		                "train-until-no-error] --spam|--ham FILE|DIR|MBOX... "
		                "[--spam|--ham FILE|DIR|MBOX...]...\n"
		                "       sift learn --forget FILE|DIR|MBOX...\n");
		free(paths);
		free(ops);
		return 2;
	}
	int rc = learn_run(ctx, paths, ops, npaths, mode);
	free(paths);
	free(ops);
	return rc;
}

static int learn_run(cli_ctx_t *ctx, const char **paths, const bayes_op_t *ops, size_t npaths,
                     const char *mode)
{
	learner_t l = {0};
	bool forget = ops[0] == BAYES_FORGET;
	size_t nspam = 0, nham = 0;
	for (size_t i = 0; i < npaths; i++)
		ops[i] == BAYES_LEARN_SPAM ? nspam++ : nham++;
	bool mixed = !forget && nspam > 0 && nham > 0;
	/*
	 * The pipeline as `sift check` and the daemon build it: the message
	 * bounds are read by their one reader with one set of bounds, and
	 * messages pass through the same calls (header policy, size cut).
	 */
	l.gen = scan_gen_load_pipeline(ctx->conf, ctx->diag);
	if (l.gen == NULL || diag_errors(ctx->diag) > 0) {
		diag_print(ctx->diag, stderr, 0);
		scan_gen_unref(l.gen);
		return 1;
	}
	if (bayes_settings_read(ctx->conf, ctx->state_dir, &l.set, ctx->diag) != 0) {
		diag_print(ctx->diag, stderr, 0);
		scan_gen_unref(l.gen);
		return 1;
	}
	l.mode = l.set.train_mode;
	if (mode != NULL && bayes_train_mode_parse(mode, &l.mode) != 0) {
		fprintf(stderr,
		        "sift learn: --mode: expected train-always, train-on-error or "
		        "train-until-no-error, not \"%s\"\n",
		        mode);
		scan_gen_unref(l.gen);
		return 2;
	}
	l.sequential = !forget && (l.mode != BAYES_TRAIN_ALWAYS || l.set.lr);
	if (l.sequential && l.mode == BAYES_TRAIN_ALWAYS) {
		/* Grown by pend_reserve() as a batch meets new keys. */
		l.pend_cap = (size_t)1 << 16;
		l.pend = xalloc_calloc(l.pend_cap, sizeof(*l.pend));
		l.pend_used_cap = (size_t)1 << 15;
		l.pend_used = xalloc_malloc(l.pend_used_cap * sizeof(*l.pend_used));
	}
	l.conn = scan_conn_begin(l.gen, NULL);
	int err;
	/*
	 * No sync per commit, in every mode: a commit's sync waited for the
	 * disk longer than the batch took to compute (a tenth of a bulk run);
	 * the store is synced once when learning ends (bayes_store_unref()).
	 */
	unsigned flags = (forget ? 0 : BAYES_OPEN_CREATE) | BAYES_OPEN_NOSYNC;
	l.store = bayes_store_open(l.set.db_path, l.set.map_bytes, flags, &err);
	if (l.store == NULL) {
		fprintf(stderr, "sift learn: %s: %s\n", l.set.db_path, bayes_strerror(err));
		scan_conn_end(l.conn);
		scan_gen_unref(l.gen);
		return 1;
	}
	bayes_store_set_bound(l.store, l.set.expire_max_tokens);
	l.op = ops[0];
	/*
	 * Bulk learning allocates and frees the same large buffers (message
	 * arenas, key pools, batch sums) over and over; left to its defaults
	 * malloc hands them back to the kernel each time and every reuse
	 * page-faults anew (a fifth of the run time in profiles). This is a
	 * short-lived command, so keep the memory.
	 */
	mallopt(M_MMAP_THRESHOLD, 256 << 20);
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	learn_reserve_heap();
	learn_class_t cls[2] = {{.op = BAYES_LEARN_SPAM}, {.op = BAYES_LEARN_HAM}};
	if (mixed)
		for (size_t i = 0; i < npaths; i++) {
			learn_collect_t col = {&l, &cls[ops[i] == BAYES_LEARN_SPAM ? 0 : 1]};
			scan_walk(paths[i], LEARN_MAX_DEPTH, learn_collect_file, learn_collect_fail,
			          &col);
		}
	double t0 = now_s();
	/* train-until-no-error: passes until one learns nothing (or the cap). */
	int passes = 0, max_passes = l.mode == BAYES_TRAIN_UNTIL_NO_ERROR ? LEARN_MAX_PASSES : 1;
	size_t learned_before;
	do {
		l.pass_errors = 0;
		learned_before = l.total.learned + l.total.relearned;
		passes++;
		if (mixed)
			learn_interleaved(&l, cls, 2);
		else
			for (size_t i = 0; i < npaths && !l.failed; i++)
				scan_walk(paths[i], LEARN_MAX_DEPTH, learn_visit, learn_fail, &l);
		learner_flush(&l);
	} while (!l.failed && passes < max_passes &&
	         (l.pass_errors > 0 || l.total.learned + l.total.relearned > learned_before));
	double dt = now_s() - t0;
	bayes_store_unref(l.store);
	scan_conn_end(l.conn);
	scan_gen_unref(l.gen);
	free(l.items);
	free(l.offs);
	free(l.pool);
	free(l.pend);
	free(l.pend_used);
	free(l.pitems);
	free(l.miss);
	free(l.pw);
	free(l.pspam);
	free(l.pham);
	free(l.pfirst);
	free(l.pidx);

	for (size_t i = 0; i < 2; i++) {
		for (size_t j = 0; j < cls[i].n; j++)
			free(cls[i].files[j]);
		free(cls[i].files);
	}
	const char *what = forget                       ? "forgot"
	                   : mixed                      ? "learned as spam and as ham"
	                   : ops[0] == BAYES_LEARN_SPAM ? "learned as spam"
	                                                : "learned as ham";
	printf("%zu message(s) read, %s: %zu new, %zu moved from the other class, "
	       "%zu already known, %zu removed, %zu never learned; %.2f s, %.0f msgs/s\n",
	       l.messages, what, l.total.learned, l.total.relearned, l.total.already,
	       l.total.forgotten, l.total.unknown, dt, dt > 0 ? l.messages / dt : 0.0);
	if (l.mode != BAYES_TRAIN_ALWAYS)
		printf("%s: %zu message(s) scored right beyond the margin, not learned; %d "
		       "pass(es)\n",
		       l.mode == BAYES_TRAIN_ON_ERROR ? "train-on-error" : "train-until-no-error",
		       l.skipped, passes);
	if (l.unfit > 0)
		printf("%zu message(s) not learned: no room left in the store (raise "
		       "bayes_map_size, or expire and compact)\n",
		       l.unfit);
	return l.failed || l.errors || l.unfit ? 1 : 0;
}

/* ------------------------------------------------------------ sift bayes */

static void print_size(const char *label, uint64_t b)
{
	printf("%-12s %" PRIu64 " bytes (%.1f MiB)\n", label, b, b / 1048576.0);
}

static int cmd_stats(bayes_store_t *s)
{
	bayes_stats_t st;
	int rc = bayes_store_stats(s, &st);
	if (rc != BAYES_OK)
		return rc;
	printf("%-12s %s\n", "store", bayes_store_path(s));
	printf("%-12s %" PRIu32 "%s\n", "tokenizer", st.totals.tokenizer,
	       st.totals.tokenizer == BAYES_TOKENIZER_VERSION ? "" : " (not current: rebuild)");
	printf("%-12s %" PRIu64 "\n", "spam", st.totals.spam);
	printf("%-12s %" PRIu64 "\n", "ham", st.totals.ham);
	printf("%-12s %" PRIu64 "\n", "tokens", st.tokens);
	printf("%-12s %" PRIu64 "\n", "digests", st.digests);
	print_size("used", st.used_bytes);
	print_size("file", st.file_bytes);
	print_size("map", st.map_bytes);
	printf("%-12s %u\n", "readers", st.readers);
	return BAYES_OK;
}

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || end == s || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static void bayes_usage(void)
{
	fprintf(stderr, "usage: sift bayes stats\n"
	                "       sift bayes dump [FILE]\n"
	                "       sift bayes load [--merge] [FILE]\n"
	                "       sift bayes expire [--days N] [--max-count N] [--max-tokens N]\n"
	                "       sift bayes compact\n");
}

int bayes_cmd_bayes(cli_ctx_t *ctx, int argc, char **argv)
{
	static const struct option opts[] = {{"merge", no_argument, NULL, 'm'},
	                                     {"days", required_argument, NULL, 'd'},
	                                     {"max-count", required_argument, NULL, 'n'},
	                                     {"max-tokens", required_argument, NULL, 't'},
	                                     {NULL, 0, NULL, 0}};
	bool merge = false;
	uint32_t days = EXPIRE_DEFAULT_DAYS, max_count = EXPIRE_DEFAULT_MAX_COUNT, max_tokens = 0;
	int c;

	optind = 0; /* argv[0] is the command; 0 also resets glibc's getopt state */
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm': merge = true; break;
		case 'd':
			if (parse_u32(optarg, &days) != 0) {
				bayes_usage();
				return 2;
			}
			break;
		case 'n':
			if (parse_u32(optarg, &max_count) != 0) {
				bayes_usage();
				return 2;
			}
			break;
		case 't':
			if (parse_u32(optarg, &max_tokens) != 0) {
				bayes_usage();
				return 2;
			}
			break;
		default: bayes_usage(); return 2;
		}
	}
	if (optind >= argc) {
		bayes_usage();
		return 2;
	}
	const char *sub = argv[optind++];
	const char *file = optind < argc ? argv[optind++] : NULL;
	bool is_load = strcmp(sub, "load") == 0;
	if (optind < argc || (file != NULL && strcmp(sub, "dump") != 0 && !is_load) ||
	    (strcmp(sub, "stats") != 0 && strcmp(sub, "dump") != 0 && !is_load &&
	     strcmp(sub, "expire") != 0 && strcmp(sub, "compact") != 0)) {
		bayes_usage();
		return 2;
	}

	bayes_settings_t set;
	if (read_settings(ctx, &set) != 0)
		return 1;
	int err;
	bayes_store_t *s =
	    bayes_store_open(set.db_path, set.map_bytes, is_load ? BAYES_OPEN_CREATE : 0, &err);
	if (s == NULL) {
		fprintf(stderr, "sift bayes: %s: %s\n", set.db_path, bayes_strerror(err));
		return 1;
	}
	int rc = BAYES_OK;
	if (strcmp(sub, "stats") == 0) {
		rc = cmd_stats(s);
	} else if (strcmp(sub, "dump") == 0) {
		FILE *fp = file && strcmp(file, "-") != 0 ? fopen(file, "w") : stdout;
		if (fp == NULL) {
			fprintf(stderr, "sift bayes: %s: %s\n", file, strerror(errno));
			bayes_store_unref(s);
			return 1;
		}
		rc = bayes_store_dump(s, fp);
		if (fp != stdout && fclose(fp) != 0 && rc == BAYES_OK)
			rc = BAYES_EIO;
	} else if (is_load) {
		FILE *fp = file && strcmp(file, "-") != 0 ? fopen(file, "r") : stdin;
		if (fp == NULL) {
			fprintf(stderr, "sift bayes: %s: %s\n", file, strerror(errno));
			bayes_store_unref(s);
			return 1;
		}
		rc = bayes_store_load(s, fp, file ? file : "<stdin>", merge, ctx->diag);
		if (fp != stdin)
			fclose(fp);
		diag_print(ctx->diag, stderr, 0);
		if (rc == BAYES_OK)
			rc = cmd_stats(s);
	} else if (strcmp(sub, "expire") == 0) {
		uint64_t removed = 0;
		rc = bayes_store_expire(s, bayes_today(), days, max_count, &removed);
		if (rc == BAYES_OK)
			printf("expired %" PRIu64 " token(s) not learned or seen for %" PRIu32
			       " days with at most %" PRIu32 " message(s)\n",
			       removed, days, max_count);
		if (rc == BAYES_OK && max_tokens > 0) {
			rc = bayes_store_prune(s, max_tokens, &removed);
			if (rc == BAYES_OK)
				printf("pruned %" PRIu64
				       " token(s), the least used, to keep at most "
				       "%" PRIu32 "\n",
				       removed, max_tokens);
		}
	} else {
		uint64_t before = 0, after = 0;
		rc = bayes_store_compact(s, &before, &after);
		if (rc == BAYES_OK)
			printf("compacted %s: %" PRIu64 " -> %" PRIu64 " bytes (restart a running "
			       "sift-milter to use the new file)\n",
			       bayes_store_path(s), before, after);
	}
	if (rc != BAYES_OK)
		fprintf(stderr, "sift bayes %s: %s\n", sub, bayes_strerror(rc));
	bayes_store_unref(s);
	return rc == BAYES_OK ? 0 : 1;
}
