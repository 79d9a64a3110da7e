/*
 * bayes_store.c - the Bayes token store in LMDB: lookups from read
 * transactions on any thread, learning in batches through one write
 * transaction at a time, the autolearn writer thread and its bounded
 * queue, and the maintenance operations behind `sift bayes`.
 */
#include "config.h"

#include "bayes.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STORE_FORMAT_VERSION   1
#define STORE_MAX_READERS      1024 /* one slot per concurrent read transaction */
#define STORE_WRITER_BATCH     256  /* queued messages learned per transaction */
#define STORE_WRITER_LINGER_MS 200  /* wait for a batch to fill before writing */
#define TOKEN_VALUE_BYTES      12   /* spam, ham, day */
#define TOKEN_WEIGHT_BYTES     16   /* and the logistic-regression weight, when not 0 */
#define DIGEST_VALUE_BYTES     5

typedef struct bayes_cache bayes_cache_t;
typedef struct bayes_filter bayes_filter_t;

typedef struct job {
	struct job *next;
	bayes_learn_item_t item;
	uint64_t keys[]; /* the copied keys item.keys points at */
} job_t;

/* What a queued job takes: the autolearn queue is bounded by it. */
static size_t job_bytes(const job_t *j)
{
	return sizeof(*j) + j->item.n * sizeof(uint64_t);
}

struct bayes_store {
	char *path;
	MDB_env *env;
	MDB_dbi tokens, digests, meta;
	int refs; /* under registry_lock */
	struct bayes_store *next;
	bool full;                    /* learning stopped on a full map (atomic access) */
	int stale_readers;            /* reader slots of dead processes cleared at open */
	pthread_rwlock_t resize_lock; /* see txn_begin() */

	/* The autolearn writer and its queue, under qlock. */
	pthread_mutex_t qlock;
	pthread_cond_t qcond, qdone;
	job_t *qhead, *qtail;
	size_t qlen, qbytes; /* jobs waiting, and their bytes (job_bytes()) */
	bool writer_running, writer_stop;
	pthread_t writer;
	uint64_t submitted, applied, dropped, batches;

	/* 0: no bound. Atomic: a reload sets it while the writer thread reads it. */
	_Atomic uint64_t max_tokens;
	/* Set before use, read by the applying thread only (see bayes.h). */
	uint32_t day;        /* 0: the clock's day */
	uint64_t pruned;     /* tokens removed by the bound (atomic access) */

	/* apply_changes()'s scratch, kept between batches; used by the holder
	 * of the write transaction only. */
	struct pair *pairs;
	size_t pairs_cap;

	/* The read cache (see "read cache" below): the table lookups use, and
	 * the ones it replaced, freed with the store; under cache_lock but
	 * for the lookups' atomic read of cache. */
	_Atomic(bayes_cache_t *) cache;
	bayes_cache_t *cache_retired;
	pthread_mutex_t cache_lock;
	atomic_bool cache_fresh_days; /* entries dated before today are read again */
	atomic_uint_fast64_t cache_hits, cache_reads;

	/* The key filter (see "key filter" below): lookups hold filter_lock
	 * for reading while they use filter; a swap holds it for writing. */
	pthread_rwlock_t filter_lock;
	bayes_filter_t *filter;
	_Atomic unsigned filter_bits; /* per key; 0: no filter */
	pthread_mutex_t fb_lock;      /* the builder thread's state below */
	pthread_cond_t fb_cond;
	bool fb_running, fb_joinable, fb_stop;
	pthread_t fb_thread;
	uint64_t fb_next_ms; /* no build starts before this (monotonic clock) */
	atomic_uint_fast64_t filter_skipped, filter_builds;
};

/*
 * The process-wide registry of open stores. LMDB must not open the same
 * environment twice in one process (its locks are per process), yet two
 * configuration generations, or the daemon and a test, may each ask for
 * it: so opens of a path already open return another reference.
 */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static bayes_store_t *registry;

const char *bayes_strerror(int err)
{
	switch (err) {
	case BAYES_OK: return "success";
	case BAYES_ENOENT: return "no Bayes store there";
	case BAYES_EFULL: return "Bayes store full (raise bayes_map_size, or expire and compact)";
	case BAYES_EIO: return "Bayes store I/O or database error";
	case BAYES_EVERSION: return "Bayes store made by another tokenizer version: rebuild it";
	case BAYES_EPERM: return "no permission to create or write the Bayes store";
	case BAYES_EFORMAT: return "bad Bayes dump format";
	case BAYES_EBUSY: return "Bayes learning queue full";
	}
	return "unknown Bayes error";
}

uint32_t bayes_today(void)
{
	return (uint32_t)(time(NULL) / 86400);
}

static int map_err(int rc)
{
	switch (rc) {
	case 0: return BAYES_OK;
	case MDB_MAP_FULL: return BAYES_EFULL;
	case ENOENT: return BAYES_ENOENT;
	case EACCES:
	case EROFS:
	case EPERM: return BAYES_EPERM;
	}
	return BAYES_EIO;
}

/* ------------------------------------------------------------ encoding */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* Big-endian keys: LMDB's byte order then equals numeric order, so a
 * sorted batch walks the B-tree left to right. */
static void key_be(uint8_t out[8], uint64_t k)
{
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(k >> (56 - 8 * i));
}

static uint64_t key_from_be(const uint8_t *p)
{
	uint64_t k = 0;
	for (int i = 0; i < 8; i++)
		k = k << 8 | p[i];
	return k;
}

static void decode_counts(const MDB_val *v, bayes_counts_t *c)
{
	if (v->mv_size < TOKEN_VALUE_BYTES) {
		*c = (bayes_counts_t){0, 0, 0, 0};
		return;
	}
	const uint8_t *p = v->mv_data;
	c->spam = get32(p);
	c->ham = get32(p + 4);
	c->day = get32(p + 8);
	c->weight = 0;
	if (v->mv_size >= TOKEN_WEIGHT_BYTES) {
		uint32_t bits = get32(p + 12);
		memcpy(&c->weight, &bits, sizeof(bits));
	}
}

/*
 * Stores written before the weights existed hold 12-byte values; they read
 * as weight 0, and a token without a weight keeps the short value, so
 * both kinds of value live in one store and older readers, which read the
 * first 12 bytes, still understand every value. Returns the value's size.
 */
static size_t encode_counts(uint8_t out[TOKEN_WEIGHT_BYTES], const bayes_counts_t *c)
{
	put32(out, c->spam);
	put32(out + 4, c->ham);
	put32(out + 8, c->day);
	if (c->weight == 0)
		return TOKEN_VALUE_BYTES;
	uint32_t bits;
	memcpy(&bits, &c->weight, sizeof(bits));
	put32(out + 12, bits);
	return TOKEN_WEIGHT_BYTES;
}

static MDB_val mval(const void *p, size_t n)
{
	return (MDB_val){.mv_size = n, .mv_data = (void *)p};
}

static int read_totals(MDB_txn *txn, MDB_dbi meta, bayes_totals_t *t)
{
	MDB_val k = mval("totals", 6), v;
	*t = (bayes_totals_t){0, 0, BAYES_TOKENIZER_VERSION, 0, {0}};
	int rc = mdb_get(txn, meta, &k, &v);
	if (rc == 0 && v.mv_size >= 16) {
		t->spam = get64(v.mv_data);
		t->ham = get64((const uint8_t *)v.mv_data + 8);
	} else if (rc != MDB_NOTFOUND && rc != 0) {
		return rc;
	}
	k = mval("version", 7);
	rc = mdb_get(txn, meta, &k, &v);
	if (rc == 0 && v.mv_size >= 8)
		t->tokenizer = get32((const uint8_t *)v.mv_data + 4);
	else if (rc != MDB_NOTFOUND && rc != 0)
		return rc;
	k = mval("gen", 3);
	rc = mdb_get(txn, meta, &k, &v);
	if (rc == 0 && v.mv_size >= 8)
		t->gen = get64(v.mv_data);
	else if (rc != MDB_NOTFOUND && rc != 0)
		return rc;
	/* bayes_lr_mix's log-weights, a double's bits each (absent: all 0) */
	k = mval("lrmix", 5);
	rc = mdb_get(txn, meta, &k, &v);
	if (rc == 0 && v.mv_size >= 8 * BAYES_MIX_EXPERTS)
		for (size_t i = 0; i < BAYES_MIX_EXPERTS; i++) {
			uint64_t bits = get64((const uint8_t *)v.mv_data + 8 * i);
			memcpy(&t->mix[i], &bits, sizeof(bits));
		}
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int write_mix(MDB_txn *txn, MDB_dbi meta, const double *mix)
{
	uint8_t buf[8 * BAYES_MIX_EXPERTS];
	for (size_t i = 0; i < BAYES_MIX_EXPERTS; i++) {
		uint64_t bits;
		memcpy(&bits, &mix[i], sizeof(bits));
		put64(buf + 8 * i, bits);
	}
	MDB_val k = mval("lrmix", 5), v = mval(buf, sizeof(buf));
	return mdb_put(txn, meta, &k, &v, 0);
}

/*
 * Every commit that changes what a lookup returns (counts, weights, tokens
 * removed) moves the store's generation, which the read cache tags its
 * answers with; a touch (only a day moves) does not.
 */
static int bump_gen(MDB_txn *txn, MDB_dbi meta, uint64_t *gen)
{
	MDB_val k = mval("gen", 3), v;
	uint64_t g = 0;
	int rc = mdb_get(txn, meta, &k, &v);
	if (rc == 0 && v.mv_size >= 8)
		g = get64(v.mv_data);
	else if (rc != MDB_NOTFOUND && rc != 0)
		return rc;
	uint8_t b[8];
	put64(b, g + 1);
	v = mval(b, sizeof(b));
	if (gen != NULL)
		*gen = g + 1;
	return mdb_put(txn, meta, &k, &v, 0);
}

static int write_totals(MDB_txn *txn, MDB_dbi meta, const bayes_totals_t *t)
{
	uint8_t buf[16], ver[8];
	put64(buf, t->spam);
	put64(buf + 8, t->ham);
	MDB_val k = mval("totals", 6), v = mval(buf, sizeof(buf));
	int rc = mdb_put(txn, meta, &k, &v, 0);
	if (rc != 0)
		return rc;
	put32(ver, STORE_FORMAT_VERSION);
	put32(ver + 4, t->tokenizer);
	k = mval("version", 7);
	v = mval(ver, sizeof(ver));
	return mdb_put(txn, meta, &k, &v, 0);
}

/* ------------------------------------------------------------ open, close */

/*
 * Slots left by a process killed inside a read transaction would keep old
 * pages alive forever and let the file grow. LMDB resets the table when
 * the first process opens the store, but a long-running daemon keeps it
 * open, so this also runs before each write batch and for stats.
 */
static void clear_stale_readers(bayes_store_t *s)
{
	int dead = 0;
	if (mdb_reader_check(s->env, &dead) == 0 && dead > 0) {
		__atomic_add_fetch(&s->stale_readers, dead, __ATOMIC_RELAXED);
		log_msg(LOG_L_NOTICE, "bayes: cleared %d stale reader slot(s) in %s", dead,
		        s->path);
	}
}

static int open_dbis(bayes_store_t *s, bool create)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return rc;
	rc = mdb_dbi_open(txn, "tokens", 0, &s->tokens);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "digests", 0, &s->digests);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "meta", 0, &s->meta);
	if (rc == 0)
		return mdb_txn_commit(txn); /* a commit keeps the handles open */
	mdb_txn_abort(txn);
	if (rc != MDB_NOTFOUND || !create)
		return rc;

	/* A new store: create the databases and stamp the versions. */
	rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return rc;
	rc = mdb_dbi_open(txn, "tokens", MDB_CREATE, &s->tokens);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "digests", MDB_CREATE, &s->digests);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta);
	if (rc == 0) {
		bayes_totals_t t;
		rc = read_totals(txn, s->meta, &t);
		if (rc == 0)
			rc = write_totals(txn, s->meta, &t);
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	return mdb_txn_commit(txn);
}

/*
 * Another process (a `sift learn` with a larger bayes_map_size) may grow
 * the map. LMDB then refuses new transactions here with MDB_MAP_RESIZED
 * until this process adopts the new size, which it may only do while none
 * of its transactions is active. So every transaction holds resize_lock
 * shared, and the adoption takes it exclusively; readers that meet the
 * error all queue for it, so it cannot starve.
 */
static int txn_begin(bayes_store_t *s, unsigned flags, MDB_txn **txn)
{
	for (int tries = 0;; tries++) {
		pthread_rwlock_rdlock(&s->resize_lock);
		int rc = mdb_txn_begin(s->env, NULL, flags, txn);
		if (rc == 0)
			return 0;
		pthread_rwlock_unlock(&s->resize_lock);
		if (rc != MDB_MAP_RESIZED || tries > 0)
			return rc;
		pthread_rwlock_wrlock(&s->resize_lock);
		mdb_env_set_mapsize(s->env, 0);
		pthread_rwlock_unlock(&s->resize_lock);
	}
}

static void txn_abort(bayes_store_t *s, MDB_txn *txn)
{
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&s->resize_lock);
}

static int txn_commit(bayes_store_t *s, MDB_txn *txn)
{
	int rc = mdb_txn_commit(txn);
	pthread_rwlock_unlock(&s->resize_lock);
	return rc;
}

/*
 * A read transaction starts from the transaction id the last writer
 * published in the lock file, which LMDB stores only after the new meta
 * page is written (a synchronous write). A writer killed in between (a
 * `sift learn` stopped with SIGKILL) leaves that batch committed in the
 * file but unpublished until the next writer recovers the dead owner's
 * mutex and starts from the newer meta page. Lookups may see the older
 * snapshot meanwhile (only consistency is promised to them, and they must
 * never wait for a writer), but stats and dump report the store as it is:
 * when the file holds a newer meta page than their snapshot, they take and
 * drop the write lock once (recovering a dead writer, or waiting out a
 * live one's commit) and start again.
 */
static int read_begin(bayes_store_t *s, MDB_txn **txn)
{
	int rc = txn_begin(s, MDB_RDONLY, txn);
	if (rc != 0)
		return rc;
	MDB_envinfo info;
	if (mdb_env_info(s->env, &info) != 0 || mdb_txn_id(*txn) >= info.me_last_txnid)
		return 0;
	txn_abort(s, *txn);
	MDB_txn *w;
	if (txn_begin(s, 0, &w) == 0)
		txn_abort(s, w);
	return txn_begin(s, MDB_RDONLY, txn);
}

static int mkdir_p(const char *path, mode_t mode)
{
	char *tmp = strdup(path);
	if (tmp == NULL)
		return -1;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) != 0 && errno != EEXIST) {
			free(tmp);
			return -1;
		}
		*p = '/';
	}
	int rc = mkdir(tmp, mode);
	free(tmp);
	return rc == 0 || errno == EEXIST ? 0 : -1;
}

static bayes_store_t *store_open(const char *path, uint64_t map_bytes, unsigned flags, int *err)
{
	bool create = flags & BAYES_OPEN_CREATE;
	char data[4096];
	struct stat st;

	snprintf(data, sizeof(data), "%s/data.mdb", path);
	if (stat(data, &st) != 0) {
		if (!create) {
			*err = BAYES_ENOENT;
			return NULL;
		}
		if (mkdir_p(path, 0750) != 0) {
			*err = map_err(errno);
			return NULL;
		}
	}
	bayes_store_t *s = calloc(1, sizeof(*s));
	/* The registry compares canonical paths: "db", "./db" and "db/" are one. */
	char canon[PATH_MAX];
	if (realpath(path, canon) != NULL)
		path = canon;
	if (s == NULL || (s->path = strdup(path)) == NULL) {
		free(s);
		*err = BAYES_EIO;
		return NULL;
	}
	int rc = mdb_env_create(&s->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(s->env, 4);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(s->env, STORE_MAX_READERS);
	if (rc == 0)
		rc = mdb_env_set_mapsize(s->env, (size_t)map_bytes);
	/*
	 * MDB_NOTLS: read transactions are not tied to threads, so libmilter's
	 * worker threads can come and go without pinning reader slots.
	 */
	if (rc == 0)
		rc = mdb_env_open(s->env, path,
		                  MDB_NOTLS | (flags & BAYES_OPEN_NOSYNC ? MDB_NOSYNC : 0), 0640);
	if (rc == 0) {
		clear_stale_readers(s);
		rc = open_dbis(s, create);
	}
	if (rc != 0) {
		*err = rc == MDB_NOTFOUND ? BAYES_ENOENT : map_err(rc);
		mdb_env_close(s->env);
		free(s->path);
		free(s);
		return NULL;
	}
	pthread_rwlock_init(&s->resize_lock, NULL);
	pthread_mutex_init(&s->cache_lock, NULL);
	pthread_rwlock_init(&s->filter_lock, NULL);
	pthread_mutex_init(&s->fb_lock, NULL);
	pthread_cond_init(&s->fb_cond, NULL);
	pthread_mutex_init(&s->qlock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	/* The writer's linger is monotonic: a clock stepped back must not stretch it. */
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->qcond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&s->qdone, NULL);
	s->refs = 1;
	return s;
}

bayes_store_t *bayes_store_open(const char *path, uint64_t map_bytes, unsigned flags, int *err)
{
	int dummy;
	if (err == NULL)
		err = &dummy;
	*err = BAYES_OK;
	char canon[PATH_MAX];
	const char *key = realpath(path, canon) != NULL ? canon : path;
	pthread_mutex_lock(&registry_lock);
	for (bayes_store_t *s = registry; s != NULL; s = s->next) {
		if (strcmp(s->path, key) == 0) {
			s->refs++;
			pthread_mutex_unlock(&registry_lock);
			return s;
		}
	}
	bayes_store_t *s = store_open(path, map_bytes, flags, err);
	if (s != NULL) {
		s->next = registry;
		registry = s;
	}
	pthread_mutex_unlock(&registry_lock);
	return s;
}

bayes_store_t *bayes_store_ref(bayes_store_t *s)
{
	pthread_mutex_lock(&registry_lock);
	s->refs++;
	pthread_mutex_unlock(&registry_lock);
	return s;
}

static void writer_stop(bayes_store_t *s);
static void cache_free_all(bayes_store_t *s);
static void filter_stop(bayes_store_t *s);
typedef struct pair pair_t;
static void filter_advance(bayes_store_t *s, uint64_t gen0, uint64_t entries0, uint64_t gen1,
                           uint64_t entries1, const pair_t *pairs, size_t n);

void bayes_store_unref(bayes_store_t *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&registry_lock);
	if (--s->refs > 0) {
		pthread_mutex_unlock(&registry_lock);
		return;
	}
	for (bayes_store_t **pp = &registry; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	writer_stop(s);
	filter_stop(s);
	mdb_env_sync(s->env, 1); /* a no-op unless opened with BAYES_OPEN_NOSYNC */
	mdb_env_close(s->env);
	pthread_mutex_destroy(&s->qlock);
	pthread_rwlock_destroy(&s->resize_lock);
	cache_free_all(s);
	pthread_mutex_destroy(&s->cache_lock);
	free(s->filter);
	pthread_rwlock_destroy(&s->filter_lock);
	pthread_mutex_destroy(&s->fb_lock);
	pthread_cond_destroy(&s->fb_cond);
	pthread_cond_destroy(&s->qcond);
	pthread_cond_destroy(&s->qdone);
	free(s->pairs);
	free(s->path);
	free(s);
}

const char *bayes_store_path(const bayes_store_t *s)
{
	return s->path;
}

/* ------------------------------------------------------------ read cache */

/*
 * Why a cache in front of LMDB: a message's few hundred token reads were a
 * third of its scoring CPU, nearly all of it cache misses in the binary
 * searches of leaf pages (the store is tens of megabytes, read at random
 * places). Mail repeats itself (header tokens, common words, the same
 * lists and campaigns): about half of a message's reads were made by a
 * recent message, and a direct-mapped table answers those with one miss.
 *
 * Exactness: an answer is kept with a tag of the store state it was read
 * in, the store's generation (bump_gen()) mixed with its learned totals,
 * and used only by a lookup whose own snapshot has the same tag: what
 * LMDB holds in that snapshot. The totals are mixed in so that a writer
 * that does not know the generation (an older sift) still changes the tag.
 * A tag is 32 bits: a stale answer needs two states with the same tag, a
 * chance of 2^-32 for each. The day is the one exception: touches move it
 * without a new generation, so when the daemon dates tokens (fresh days)
 * an answer dated before today is read again from LMDB.
 *
 * A commit made by this process (the daemon's autolearn writer) knows
 * the keys it changed: the others' answers are carried over to the new
 * state (cache_retag()), so autolearn costs the cache only what it learns.
 *
 * Threads: each slot is a sequence lock. A hit writes nothing shared, so
 * hits do not move cache lines between cores; a reader that finds a slot
 * being written reads LMDB, and a writer that finds it busy skips it.
 */
typedef struct cache_slot {
	_Atomic uint64_t seq; /* low 32 bits: odd while written; high 32: the tag */
	_Atomic uint64_t key;
	_Atomic uint64_t sh;   /* spam | ham << 32 */
	_Atomic uint64_t dayw; /* day | the weight's bits << 32 */
} cache_slot_t;

struct bayes_cache {
	bayes_cache_t *next; /* retired tables */
	size_t entries;      /* a power of two */
	unsigned shift;      /* 64 - log2(entries) */
	cache_slot_t slot[];
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint32_t cache_tag(const bayes_totals_t *t)
{
	return (uint32_t)mix64(t->gen ^ mix64(t->spam ^ mix64(t->ham)));
}

static cache_slot_t *cache_slot(bayes_cache_t *c, uint64_t key)
{
	/* Keys are hashes already; the multiply spreads any that are not. */
	return &c->slot[(key * 0x9e3779b97f4a7c15ULL) >> c->shift];
}

/* today 0: any day will do. */
static bool cache_get(bayes_cache_t *c, uint32_t tag, uint64_t key, uint32_t today,
                      bayes_counts_t *out)
{
	cache_slot_t *sl = cache_slot(c, key);
	uint64_t s1 = atomic_load_explicit(&sl->seq, memory_order_acquire);
	if ((s1 & 1) || (uint32_t)(s1 >> 32) != tag ||
	    atomic_load_explicit(&sl->key, memory_order_relaxed) != key)
		return false;
	uint64_t sh = atomic_load_explicit(&sl->sh, memory_order_relaxed);
	uint64_t dw = atomic_load_explicit(&sl->dayw, memory_order_relaxed);
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&sl->seq, memory_order_relaxed) != s1)
		return false;
	out->spam = (uint32_t)sh;
	out->ham = (uint32_t)(sh >> 32);
	out->day = (uint32_t)dw;
	uint32_t bits = (uint32_t)(dw >> 32);
	memcpy(&out->weight, &bits, sizeof(bits));
	return out->day >= today || (out->spam == 0 && out->ham == 0);
}

static void cache_put(bayes_cache_t *c, uint32_t tag, uint64_t key, const bayes_counts_t *v)
{
	cache_slot_t *sl = cache_slot(c, key);
	uint64_t s0 = atomic_load_explicit(&sl->seq, memory_order_relaxed);
	if ((s0 & 1) || !atomic_compare_exchange_strong_explicit(
	                    &sl->seq, &s0, s0 | 1, memory_order_relaxed, memory_order_relaxed))
		return; /* another writer has it */
	atomic_thread_fence(memory_order_release);
	uint32_t bits;
	memcpy(&bits, &v->weight, sizeof(bits));
	atomic_store_explicit(&sl->key, key, memory_order_relaxed);
	atomic_store_explicit(&sl->sh, v->spam | (uint64_t)v->ham << 32, memory_order_relaxed);
	atomic_store_explicit(&sl->dayw, v->day | (uint64_t)bits << 32, memory_order_relaxed);
	uint32_t next = (uint32_t)s0 + 2; /* even again */
	atomic_store_explicit(&sl->seq, (uint64_t)tag << 32 | next, memory_order_release);
}

/*
 * The table is mapped on its own, not taken from malloc: it lives as long
 * as the store, so it should not sit among (and pin) the heap the rules'
 * compilation frees, and its pages (zero, as an empty table must be)
 * become resident only as its slots are used.
 */
static bayes_cache_t *cache_map(size_t n)
{
	size_t bytes = sizeof(bayes_cache_t) + n * sizeof(cache_slot_t);
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	bayes_cache_t *c = p;
	c->entries = n;
	return c;
}

static void cache_unmap(bayes_cache_t *c)
{
	if (c != NULL)
		munmap(c, sizeof(bayes_cache_t) + c->entries * sizeof(cache_slot_t));
}

void bayes_store_set_cache(bayes_store_t *s, size_t entries, bool fresh_days)
{
	size_t n = 0;
	unsigned bits = 0;
	while (entries > 1 && bits < 30 && ((size_t)1 << (bits + 1)) <= entries)
		bits++;
	if (entries > 0)
		n = (size_t)1 << bits;
	atomic_store(&s->cache_fresh_days, fresh_days);
	pthread_mutex_lock(&s->cache_lock);
	bayes_cache_t *old = atomic_load(&s->cache);
	if ((old ? old->entries : 0) != n) {
		bayes_cache_t *c = n > 0 ? cache_map(n) : NULL;
		if (c != NULL)
			c->shift = 64 - bits;
		/* Lookups may be reading the old table: it lives until the store closes. */
		atomic_store(&s->cache, c);
		if (old != NULL) {
			old->next = s->cache_retired;
			s->cache_retired = old;
		}
	}
	pthread_mutex_unlock(&s->cache_lock);
}

void bayes_store_cache_stats(bayes_store_t *s, uint64_t *hits, uint64_t *reads)
{
	*hits = atomic_load_explicit(&s->cache_hits, memory_order_relaxed);
	*reads = atomic_load_explicit(&s->cache_reads, memory_order_relaxed);
}

static void cache_free_all(bayes_store_t *s)
{
	cache_unmap(atomic_load(&s->cache));
	for (bayes_cache_t *c = s->cache_retired, *next; c != NULL; c = next) {
		next = c->next;
		cache_unmap(c);
	}
}

/* ------------------------------------------------------------ key filter */

/*
 * Most of the keys a message brings are not in the store (on the test
 * folds, with a store of 4,270 messages, five in six of a large message's
 * 10,515), and each costs a descent of the B-tree; the read cache holds
 * only recent answers. A blocked Bloom filter of the store's keys (each
 * key's bits in one 64-byte block, so one cache line per key) answers
 * "absent" for nearly all of those from memory; a key it may hold is read
 * from LMDB as before.
 *
 * Exact by construction: a filter holds every key of the store in one
 * state, named by the store's generation and token count (a commit that
 * adds or removes tokens moves the generation: bump_gen()), and a lookup
 * uses it only when its own snapshot has that generation and count. In
 * any other state (another process learned, a dump was loaded) lookups
 * read LMDB while a thread builds the filter anew; builds are spaced by
 * ten times the last one's time, so a store that never settles costs a
 * tenth of a core at most. A batch this process applies
 * (bayes_store_apply(): autolearn, touches) sets its keys' bits first and
 * then moves the filter to the state it committed, so autolearn does not
 * make it stale, until the store outgrows the tokens it was sized for
 * (a quarter more than it held): then a build sizes one anew, so the
 * share of absent keys it lets through stays about 1%. Keys removed
 * (pruning, forgetting) stay in it, which costs a read, never a wrong
 * answer.
 */
#define FILTER_BLOCK_WORDS 8 /* 512 bits */
#define FILTER_PROBES      6
#define FILTER_HEADROOM    1.25 /* room for the keys learned before the next build */
#define FILTER_MIN_GAP_MS  1000
#define FILTER_GAP_FACTOR  10
#define FILTER_STOP_CHECK  65536 /* keys between two looks at fb_stop */

struct bayes_filter {
	_Atomic uint64_t gen;     /* the store state it holds every key of */
	_Atomic uint64_t entries; /* and that state's token count */
	uint64_t room;            /* tokens it was sized for */
	size_t nblocks;
	_Atomic uint64_t w[]; /* nblocks * FILTER_BLOCK_WORDS */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bayes_filter_t *filter_new(uint64_t entries, unsigned bits)
{
	double want = (double)(entries ? entries : 1) * FILTER_HEADROOM * bits;
	size_t nblocks = (size_t)(want / (64.0 * FILTER_BLOCK_WORDS)) + 1;
	bayes_filter_t *f = calloc(1, sizeof(*f) + nblocks * FILTER_BLOCK_WORDS * sizeof(uint64_t));
	if (f != NULL) {
		f->nblocks = nblocks;
		f->room = (uint64_t)((double)(entries ? entries : 1) * FILTER_HEADROOM);
	}
	return f;
}

static _Atomic uint64_t *filter_block(const bayes_filter_t *f, uint64_t key, uint64_t *probe)
{
	uint64_t h = mix64(key);
	*probe = key * 0x9e3779b97f4a7c15ULL; /* 9 bits per probe from here */
	size_t b = (size_t)(((h >> 32) * (uint64_t)f->nblocks) >> 32);
	return (_Atomic uint64_t *)&f->w[b * FILTER_BLOCK_WORDS];
}

static void filter_add(bayes_filter_t *f, uint64_t key)
{
	uint64_t p;
	_Atomic uint64_t *w = filter_block(f, key, &p);
	for (int i = 0; i < FILTER_PROBES; i++, p >>= 9)
		atomic_fetch_or_explicit(&w[(p >> 6) & 7], 1ULL << (p & 63), memory_order_relaxed);
}

static bool filter_maybe(const bayes_filter_t *f, uint64_t key)
{
	uint64_t p;
	_Atomic uint64_t *w = filter_block(f, key, &p);
	for (int i = 0; i < FILTER_PROBES; i++, p >>= 9)
		if (!(atomic_load_explicit(&w[(p >> 6) & 7], memory_order_relaxed) &
		      (1ULL << (p & 63))))
			return false;
	return true;
}

/* Every key of the store as one read transaction sees it; NULL when stopped or failing. */
static bayes_filter_t *filter_build(bayes_store_t *s, unsigned bits)
{
	MDB_txn *txn;
	if (txn_begin(s, MDB_RDONLY, &txn) != 0)
		return NULL;
	bayes_totals_t t;
	MDB_stat st;
	MDB_cursor *cur = NULL;
	bayes_filter_t *f = NULL;
	if (read_totals(txn, s->meta, &t) == 0 && mdb_stat(txn, s->tokens, &st) == 0 &&
	    mdb_cursor_open(txn, s->tokens, &cur) == 0 &&
	    (f = filter_new(st.ms_entries, bits)) != NULL) {
		MDB_val k, v;
		size_t n = 0;
		int r;
		for (r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0;
		     r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			if (k.mv_size == 8)
				filter_add(f, key_from_be(k.mv_data));
			if (++n % FILTER_STOP_CHECK == 0) {
				pthread_mutex_lock(&s->fb_lock);
				bool stop = s->fb_stop;
				pthread_mutex_unlock(&s->fb_lock);
				if (stop)
					break;
			}
		}
		if (r != MDB_NOTFOUND) {
			free(f);
			f = NULL;
		} else {
			atomic_store_explicit(&f->gen, t.gen, memory_order_relaxed);
			atomic_store_explicit(&f->entries, st.ms_entries, memory_order_relaxed);
		}
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	txn_abort(s, txn);
	return f;
}

static void *filter_main(void *arg)
{
	bayes_store_t *s = arg;
	uint64_t t0 = mono_ms();
	bayes_filter_t *f = filter_build(s, atomic_load(&s->filter_bits));
	if (f != NULL) {
		log_msg(LOG_L_DEBUG,
		        "bayes: key filter of %s built: %" PRIu64 " tokens, %zu KiB, %" PRIu64
		        " ms",
		        s->path, (uint64_t)atomic_load(&f->entries),
		        f->nblocks * FILTER_BLOCK_WORDS * 8 / 1024, mono_ms() - t0);
		pthread_rwlock_wrlock(&s->filter_lock);
		bayes_filter_t *old = s->filter;
		/* generations only grow: one moved on by this process's commits meanwhile stays */
		if (old == NULL || atomic_load(&old->gen) <= atomic_load(&f->gen)) {
			s->filter = f;
			f = old;
		}
		pthread_rwlock_unlock(&s->filter_lock);
		free(f);
		atomic_fetch_add_explicit(&s->filter_builds, 1, memory_order_relaxed);
	}
	uint64_t took = mono_ms() - t0;
	pthread_mutex_lock(&s->fb_lock);
	uint64_t gap = FILTER_GAP_FACTOR * took;
	s->fb_next_ms = mono_ms() + (gap > FILTER_MIN_GAP_MS ? gap : FILTER_MIN_GAP_MS);
	s->fb_running = false;
	pthread_cond_broadcast(&s->fb_cond);
	pthread_mutex_unlock(&s->fb_lock);
	return NULL;
}

/* A lookup found no filter for its state: start a build unless one runs or is too soon. */
static void filter_kick(bayes_store_t *s)
{
	if (pthread_mutex_trylock(&s->fb_lock) != 0)
		return; /* someone else is at it */
	if (!s->fb_running && !s->fb_stop && (s->fb_next_ms == 0 || mono_ms() >= s->fb_next_ms)) {
		if (s->fb_joinable)
			pthread_join(s->fb_thread, NULL);
		s->fb_joinable = false;
		if (pthread_create(&s->fb_thread, NULL, filter_main, s) == 0) {
			s->fb_running = true;
			s->fb_joinable = true;
		} else {
			s->fb_next_ms = mono_ms() + FILTER_MIN_GAP_MS;
		}
	}
	pthread_mutex_unlock(&s->fb_lock);
}

static void filter_stop(bayes_store_t *s)
{
	pthread_mutex_lock(&s->fb_lock);
	s->fb_stop = true;
	bool join = s->fb_joinable;
	s->fb_joinable = false;
	pthread_mutex_unlock(&s->fb_lock);
	if (join)
		pthread_join(s->fb_thread, NULL);
}

void bayes_store_set_filter(bayes_store_t *s, unsigned bits_per_key)
{
	atomic_store(&s->filter_bits, bits_per_key);
	/*
	 * Built now, not at the first lookup: the build reads every key, which
	 * brings the store's pages in too, so the first messages after a start
	 * cost what later ones do. Left to the first lookups, the first three
	 * test-fold messages took 4.5, 9 and 25 ms of Bayes, then 0.5.
	 */
	if (bits_per_key > 0) {
		pthread_rwlock_rdlock(&s->filter_lock);
		bool none = s->filter == NULL;
		pthread_rwlock_unlock(&s->filter_lock);
		if (none)
			filter_kick(s);
	}
}

void bayes_store_filter_wait(bayes_store_t *s)
{
	pthread_mutex_lock(&s->fb_lock);
	while (s->fb_running)
		pthread_cond_wait(&s->fb_cond, &s->fb_lock);
	pthread_mutex_unlock(&s->fb_lock);
}

void bayes_store_filter_stats(bayes_store_t *s, uint64_t *skipped, uint64_t *builds)
{
	*skipped = atomic_load_explicit(&s->filter_skipped, memory_order_relaxed);
	*builds = atomic_load_explicit(&s->filter_builds, memory_order_relaxed);
}

/* ------------------------------------------------------------ lookup */

/*
 * A cursor walk over keys that mostly come in ascending order: the keys of a
 * message, and `sift learn`'s batched reads and writes, which meet a good
 * part of the store's keys (a third and more) in key order. A key a few
 * entries past the cursor is reached by stepping (MDB_NEXT stays in the leaf
 * page, no search); a farther one, or one behind, by MDB_SET_RANGE, which
 * also leaves the cursor on the next key when the one sought is absent.
 * The walk is the same set of answers as mdb_get() per key, in a third of
 * the time on `sift learn` batches.
 */
#define SEEK_STEPS 4

typedef struct seek {
	bool at;      /* the cursor stands on an entry, key */
	uint64_t key; /* its key */
	/*
	 * The store's entries per unit of key space, 0: not known. Keys are
	 * hashes, spread evenly, so a key farther than SEEK_STEPS entries by
	 * this estimate is sought at once: a message's keys lie thousands of
	 * entries apart (0.7% of its reads were met by stepping, at four
	 * wasted steps for each of the others).
	 */
	double density;
} seek_t;

/* Returns 0 with *v the value, MDB_NOTFOUND, or an LMDB error. */
static int seek_key(MDB_cursor *cur, seek_t *sk, uint64_t key, MDB_val *v)
{
	MDB_val k;
	if (sk->at && key == sk->key)
		return mdb_cursor_get(cur, &k, v, MDB_GET_CURRENT);
	if (sk->at && key > sk->key &&
	    (sk->density == 0 || (double)(key - sk->key) * sk->density <= SEEK_STEPS)) {
		for (int i = 0; i < SEEK_STEPS; i++) {
			int r = mdb_cursor_get(cur, &k, v, MDB_NEXT);
			if (r != 0 || k.mv_size != 8) {
				sk->at = false;
				if (r != 0)
					return r; /* MDB_NOTFOUND: past the last key */
				break;
			}
			sk->key = key_from_be(k.mv_data);
			if (sk->key >= key)
				return sk->key == key ? 0 : MDB_NOTFOUND;
		}
	}
	uint8_t kb[8];
	key_be(kb, key);
	k = mval(kb, 8);
	int r = mdb_cursor_get(cur, &k, v, MDB_SET_RANGE);
	sk->at = r == 0 && k.mv_size == 8;
	if (r != 0)
		return r;
	if (!sk->at)
		return MDB_NOTFOUND;
	sk->key = key_from_be(k.mv_data);
	return sk->key == key ? 0 : MDB_NOTFOUND;
}

int bayes_store_lookup(bayes_store_t *s, const uint64_t *keys, size_t n, bayes_counts_t *out,
                       bayes_totals_t *totals)
{
	MDB_txn *txn;
	int rc = txn_begin(s, MDB_RDONLY, &txn);
	if (rc != 0)
		return map_err(rc);
	bayes_totals_t t;
	MDB_cursor *cur = NULL;
	rc = read_totals(txn, s->meta, &t);
	if (rc == 0 && n > 0)
		rc = mdb_cursor_open(txn, s->tokens, &cur);
	bayes_cache_t *c = atomic_load_explicit(&s->cache, memory_order_acquire);
	uint32_t tag = c != NULL ? cache_tag(&t) : 0;
	uint32_t today =
	    c != NULL && atomic_load_explicit(&s->cache_fresh_days, memory_order_relaxed)
	        ? bayes_today()
	        : 0;
	size_t hits = 0, skipped = 0;
	seek_t sk = {false, 0, 0};
	MDB_stat st;
	bool have_st = cur != NULL && mdb_stat(txn, s->tokens, &st) == 0;
	if (have_st)
		sk.density = (double)st.ms_entries / 18446744073709551616.0; /* 2^64 */
	bool filtering = have_st && atomic_load_explicit(&s->filter_bits, memory_order_relaxed) > 0;
	const bayes_filter_t *f = NULL;
	bool stale = false;
	if (filtering) {
		pthread_rwlock_rdlock(&s->filter_lock);
		f = s->filter;
		uint64_t fgen = f ? atomic_load_explicit(&f->gen, memory_order_acquire) : 0;
		if (f == NULL || fgen != t.gen ||
		    atomic_load_explicit(&f->entries, memory_order_acquire) != st.ms_entries) {
			/* a snapshot older than the filter (generations only grow) is no reason to
			 * build */
			stale = f == NULL || fgen <= t.gen;
			f = NULL;
		}
	}
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (c != NULL && cache_get(c, tag, keys[i], today, &out[i])) {
			hits++;
			continue;
		}
		if (f != NULL && !filter_maybe(f, keys[i])) {
			out[i] = (bayes_counts_t){0, 0, 0, 0}; /* as MDB_NOTFOUND below */
			skipped++;
			continue;
		}
		MDB_val v;
		int r = seek_key(cur, &sk, keys[i], &v);
		if (r == 0)
			decode_counts(&v, &out[i]);
		else if (r == MDB_NOTFOUND)
			out[i] = (bayes_counts_t){0, 0, 0, 0};
		else
			rc = r;
		if (c != NULL && rc == 0)
			cache_put(c, tag, keys[i], &out[i]);
	}
	if (c != NULL && n > 0) {
		atomic_fetch_add_explicit(&s->cache_hits, hits, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->cache_reads, n, memory_order_relaxed);
	}
	if (filtering) {
		pthread_rwlock_unlock(&s->filter_lock);
		if (skipped > 0)
			atomic_fetch_add_explicit(&s->filter_skipped, skipped,
			                          memory_order_relaxed);
		if (stale && rc == 0)
			filter_kick(s);
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	txn_abort(s, txn);
	if (rc == 0 && totals != NULL)
		*totals = t;
	return map_err(rc);
}

/* ------------------------------------------------------------ learning */

/*
 * A batch's count changes. Each message learned, moved, forgotten or touched
 * brings one change (spam and ham count steps, a weight step, a touch) for
 * every one of its keys; the changes are summed per key and applied in key
 * order through one cursor. The (key, change) pairs are scattered into
 * buckets by the keys' top bits (a counting pass and a scatter pass over the
 * batch's keys, which each message holds sorted, so its writes sweep the
 * buckets in order), then each bucket, a few kilobytes, is sorted on its
 * own by a stable merge sort while it sits in the cache and applied. This
 * replaced an LSD radix sort of one 24-byte entry per pair: six passes over
 * tens of megabytes and a second buffer as large, a third of `sift learn`
 * in profiles of 8000-message batches (an open-addressing table had been
 * slower still: random accesses over tens of megabytes). Both the scatter
 * and the sort keep the batch's order among a key's pairs, so each key's
 * changes are summed in the order the messages came, as before: the float
 * sums of the weights come out the same.
 */
typedef struct change {
	const uint64_t *keys; /* the message's keys, sorted */
	size_t n;
	int32_t dspam, dham;
	float dweight; /* logistic-regression step */
	bool touch;    /* seen in scored mail: move its day, if it exists */
} change_t;

typedef struct changes {
	change_t *v;
	size_t n, cap;
	size_t pairs; /* the sum of the changes' n */
} changes_t;

typedef struct pair {
	uint64_t key;
	uint32_t change; /* index in changes_t.v */
} pair_t;

#define PAIRS_PER_BUCKET 256 /* average; about 4 KiB, in the L1 or L2 cache */
#define PAIRS_MAX_BITS   16  /* bucket bits at most */
#define PAIRS_RUN        8   /* runs the merge sort starts from, by insertion */

static int change_add(changes_t *c, const bayes_learn_item_t *it, int sign, bool spam,
                      float dweight)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		change_t *v = realloc(c->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = (change_t){it->keys,        it->n,   spam ? sign : 0,
	                          spam ? 0 : sign, dweight, it->op == BAYES_TOUCH};
	c->pairs += it->n;
	return 0;
}

/* Stable: a pair moves before an earlier one only when its key is smaller. */
static void pairs_sort(pair_t *a, pair_t *tmp, size_t n)
{
	for (size_t lo = 0; lo < n; lo += PAIRS_RUN) {
		size_t hi = lo + PAIRS_RUN < n ? lo + PAIRS_RUN : n;
		for (size_t i = lo + 1; i < hi; i++) {
			pair_t x = a[i];
			size_t j = i;
			for (; j > lo && a[j - 1].key > x.key; j--)
				a[j] = a[j - 1];
			a[j] = x;
		}
	}
	pair_t *src = a, *dst = tmp;
	for (size_t w = PAIRS_RUN; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
			size_t i = lo, j = mid, k = lo;
			while (i < mid && j < hi)
				dst[k++] = src[j].key < src[i].key ? src[j++] : src[i++];
			while (i < mid)
				dst[k++] = src[i++];
			while (j < hi)
				dst[k++] = src[j++];
		}
		pair_t *t = src;
		src = dst;
		dst = t;
	}
	if (src != a)
		memcpy(a, src, n * sizeof(*a));
}

static uint32_t sat_add(uint32_t v, int32_t d)
{
	int64_t r = (int64_t)v + d;
	return r < 0 ? 0 : r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
}

/* Applies one key's summed change at the cursor. */
static int apply_key(MDB_cursor *cur, seek_t *sk, uint64_t key, const change_t *d, uint32_t today)
{
	uint8_t kb[8], vb[TOKEN_WEIGHT_BYTES];
	bool counts = d->dspam != 0 || d->dham != 0 || d->dweight != 0;
	if (!counts && !d->touch)
		return 0; /* learned and forgotten in one batch */
	key_be(kb, key);
	MDB_val k, v;
	bayes_counts_t c = {0, 0, 0, 0};
	int r = seek_key(cur, sk, key, &v);
	if (r == 0)
		decode_counts(&v, &c);
	else if (r != MDB_NOTFOUND)
		return r;
	if (!counts) {
		/* Only seen: a token the store does not hold is not created,
		 * one already dated today is not rewritten. */
		if (r != 0 || c.day >= today)
			return 0;
		c.day = today;
		v = mval(vb, encode_counts(vb, &c));
		k = mval(kb, 8);
		return mdb_cursor_put(cur, &k, &v, MDB_CURRENT);
	}
	c.spam = sat_add(c.spam, d->dspam);
	c.ham = sat_add(c.ham, d->dham);
	c.weight += d->dweight;
	if (d->dspam > 0 || d->dham > 0)
		c.day = today;
	if (c.spam == 0 && c.ham == 0) {
		if (r != 0)
			return 0;
		sk->at = false; /* the cursor moved to the next entry */
		return mdb_cursor_del(cur, 0);
	}
	v = mval(vb, encode_counts(vb, &c));
	k = mval(kb, 8);
	/* A new key's insertion leaves the cursor on it. */
	sk->at = true;
	sk->key = key;
	return mdb_cursor_put(cur, &k, &v, r == 0 ? MDB_CURRENT : 0);
}

/* Sums the changes per key and applies them in key order through one cursor. */
static int apply_changes(bayes_store_t *s, MDB_txn *txn, const changes_t *ch, uint32_t today)
{
	size_t total = ch->pairs;
	if (total == 0)
		return 0;
	unsigned bits = 0;
	while (bits < PAIRS_MAX_BITS && (total >> bits) > PAIRS_PER_BUCKET)
		bits++;
	size_t nb = (size_t)1 << bits;
	unsigned shift = 64 - bits; /* bucket = key >> shift (bits > 0) */
	size_t *start = calloc(nb + 1, sizeof(*start));
	if (start == NULL)
		return ENOMEM;
	if (total > s->pairs_cap) {
		/* Kept for the next batch: fresh memory costs a page fault per
		 * page on first touch. Only the write transaction's holder uses it. */
		free(s->pairs);
		s->pairs = malloc(total * sizeof(*s->pairs));
		s->pairs_cap = s->pairs ? total : 0;
		if (s->pairs == NULL) {
			free(start);
			return ENOMEM;
		}
	}
	pair_t *p = s->pairs;
	for (size_t c = 0; c < ch->n; c++)
		for (size_t j = 0; j < ch->v[c].n; j++)
			start[(bits ? ch->v[c].keys[j] >> shift : 0) + 1]++;
	size_t largest = 0;
	for (size_t b = 0; b < nb; b++) {
		if (start[b + 1] > largest)
			largest = start[b + 1];
		start[b + 1] += start[b];
	}
	size_t *fill = malloc(nb * sizeof(*fill));
	pair_t *tmp = malloc(largest * sizeof(*tmp));
	if (fill == NULL || tmp == NULL) {
		free(start);
		free(fill);
		free(tmp);
		return ENOMEM;
	}
	memcpy(fill, start, nb * sizeof(*fill));
	for (size_t c = 0; c < ch->n; c++) {
		const uint64_t *keys = ch->v[c].keys;
		for (size_t j = 0; j < ch->v[c].n; j++)
			p[fill[bits ? keys[j] >> shift : 0]++] = (pair_t){keys[j], (uint32_t)c};
	}
	free(fill);

	MDB_cursor *cur = NULL;
	seek_t sk = {false, 0, 0};
	int rc = mdb_cursor_open(txn, s->tokens, &cur);
	for (size_t b = 0; rc == 0 && b < nb; b++) {
		size_t lo = start[b], hi = start[b + 1];
		pairs_sort(p + lo, tmp, hi - lo);
		for (size_t i = lo; rc == 0 && i < hi;) {
			uint64_t key = p[i].key;
			change_t sum = ch->v[p[i].change];
			for (i++; i < hi && p[i].key == key; i++) {
				const change_t *d = &ch->v[p[i].change];
				sum.dspam += d->dspam;
				sum.dham += d->dham;
				sum.dweight += d->dweight;
				sum.touch |= d->touch;
			}
			rc = apply_key(cur, &sk, key, &sum, today);
		}
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	free(start);
	free(tmp);
	return rc;
}

static void set_full(bayes_store_t *s, bool full)
{
	bool was = __atomic_exchange_n(&s->full, full, __ATOMIC_ACQ_REL);
	if (full && !was)
		log_msg(LOG_L_ERR,
		        "bayes: store %s is full (map size reached): learning stopped, scoring "
		        "continues; raise bayes_map_size, or run `sift bayes expire` and "
		        "`sift bayes compact`",
		        s->path);
	else if (!full && was)
		log_msg(LOG_L_NOTICE, "bayes: store %s has room again: learning resumed", s->path);
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/*
 * Removes the least useful tokens until at most keep remain: first those
 * learned from one message (hapaxes, half or more of any store, and the
 * weakest evidence), oldest first; then, if that is not enough, the oldest
 * of the rest. Oldest means the smallest day, the last day a token was
 * learned or seen in scored mail. Tokens of the cutoff day go in key order
 * until the target is reached. One write transaction.
 */
int bayes_store_prune(bayes_store_t *s, uint64_t keep, uint64_t *removed)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	MDB_stat st;
	uint64_t gone = 0;
	int rc = txn_begin(s, 0, &txn);
	if (rc != 0)
		return map_err(rc);
	rc = mdb_stat(txn, s->tokens, &st);
	if (rc == 0 && st.ms_entries > keep) {
		uint64_t excess = st.ms_entries - keep;
		/* The days of the hapaxes and of the others, to find the cutoffs. */
		uint32_t *d1 = malloc(st.ms_entries * sizeof(*d1)),
		         *dn = malloc(st.ms_entries * sizeof(*dn));
		size_t n1 = 0, nn = 0;
		rc = d1 && dn ? mdb_cursor_open(txn, s->tokens, &cur) : ENOMEM;
		if (rc == 0) {
			for (int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0;
			     r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
				bayes_counts_t c;
				decode_counts(&v, &c);
				if ((uint64_t)c.spam + c.ham <= 1)
					d1[n1++] = c.day;
				else
					dn[nn++] = c.day;
			}
			qsort(d1, n1, sizeof(*d1), u32_cmp);
			qsort(dn, nn, sizeof(*dn), u32_cmp);
			/* Remove the take1 oldest hapaxes and the taken_n oldest others:
			 * every one older than the cutoff day, and of the cutoff day as
			 * many as still needed. */
			uint64_t take1 = excess < n1 ? excess : n1, rest = excess - take1;
			uint64_t taken = rest < nn ? rest : nn;
			uint32_t cut1 = take1 ? d1[take1 - 1] : 0, cutn = taken ? dn[taken - 1] : 0;
			uint64_t at1 = 0, atn = 0; /* of the cutoff day */
			for (uint64_t i = 0; i < take1; i++)
				at1 += d1[i] == cut1;
			for (uint64_t i = 0; i < taken; i++)
				atn += dn[i] == cutn;
			int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
			while (r == 0) {
				bayes_counts_t c;
				decode_counts(&v, &c);
				bool hapax = (uint64_t)c.spam + c.ham <= 1, del = false;
				uint64_t take = hapax ? take1 : taken, *at = hapax ? &at1 : &atn;
				uint32_t cut = hapax ? cut1 : cutn;
				if (take > 0 && c.day < cut)
					del = true;
				else if (take > 0 && c.day == cut && *at > 0) {
					del = true;
					(*at)--;
				}
				if (del) {
					rc = mdb_cursor_del(cur, 0);
					if (rc != 0)
						break;
					gone++;
				}
				/* After a delete LMDB's MDB_NEXT lands on the next key. */
				r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			}
			if (rc == 0 && r != MDB_NOTFOUND)
				rc = r;
			mdb_cursor_close(cur);
		}
		free(d1);
		free(dn);
	}
	uint64_t gen = 0;
	if (rc == 0 && gone > 0)
		rc = bump_gen(txn, s->meta, &gen);
	if (rc == 0)
		rc = txn_commit(s, txn);
	else
		txn_abort(s, txn);
	/* removed keys may stay in the filter (a read more, never a wrong answer) */
	if (rc == 0 && gen != 0)
		filter_advance(s, gen - 1, st.ms_entries, gen, st.ms_entries - gone, NULL, 0);
	if (rc == 0) {
		__atomic_add_fetch(&s->pruned, gone, __ATOMIC_RELAXED);
		if (removed != NULL)
			*removed = gone;
	}
	return map_err(rc);
}

/*
 * With a bound, a store is pruned to 90% of it when a batch takes it past
 * it, so the cost (a scan of the tokens) is paid once per tenth of the
 * bound learned, not on every batch.
 */
static void prune_if_over(bayes_store_t *s)
{
	MDB_txn *txn;
	MDB_stat st;
	if (txn_begin(s, MDB_RDONLY, &txn) != 0)
		return;
	int rc = mdb_stat(txn, s->tokens, &st);
	txn_abort(s, txn);
	uint64_t max = atomic_load_explicit(&s->max_tokens, memory_order_relaxed);
	if (rc == 0 && max > 0 && st.ms_entries > max)
		bayes_store_prune(s, max - max / 10, NULL);
}

void bayes_store_set_bound(bayes_store_t *s, uint64_t max_tokens)
{
	atomic_store_explicit(&s->max_tokens, max_tokens, memory_order_relaxed);
}

void bayes_store_set_day(bayes_store_t *s, uint32_t day)
{
	s->day = day;
}

static int pair_key_cmp(const void *k, const void *p)
{
	uint64_t a = *(const uint64_t *)k, b = ((const pair_t *)p)->key;
	return a < b ? -1 : a > b;
}

/* Whether key is among the n pairs, sorted by key. */
static bool pairs_have(const pair_t *p, size_t n, uint64_t key)
{
	return n > 0 && bsearch(&key, p, n, sizeof(*p), pair_key_cmp) != NULL;
}

/*
 * After this process's commit took the store from the state tagged from
 * to the one tagged to, an answer of from for a key the commit did not
 * change (changed: its n pairs, sorted) is an answer of to as well. A
 * slot changed meanwhile fails the compare-and-swap and stays as it is:
 * tagged from, it is only stale.
 */
static void cache_retag(bayes_cache_t *c, uint32_t from, uint32_t to, const pair_t *changed,
                        size_t n)
{
	for (size_t i = 0; i < c->entries; i++) {
		cache_slot_t *sl = &c->slot[i];
		uint64_t s0 = atomic_load_explicit(&sl->seq, memory_order_acquire);
		if ((s0 & 1) || (uint32_t)(s0 >> 32) != from ||
		    pairs_have(changed, n, atomic_load_explicit(&sl->key, memory_order_relaxed)))
			continue;
		uint64_t s1 = (uint64_t)to << 32 | (uint32_t)((uint32_t)s0 + 2);
		atomic_compare_exchange_strong_explicit(&sl->seq, &s0, s1, memory_order_acq_rel,
		                                        memory_order_relaxed);
	}
}

/*
 * After this process's commit took the store from (gen0, entries0) to
 * (gen1, entries1), adding at most the keys of pairs: a filter of the
 * first state gets their bits, then is named for the second. Lookups of
 * the first state see extra bits (a read more); those of the second use it
 * only once it is named so, with every bit set.
 */
static void filter_advance(bayes_store_t *s, uint64_t gen0, uint64_t entries0, uint64_t gen1,
                           uint64_t entries1, const pair_t *pairs, size_t n)
{
	pthread_rwlock_rdlock(&s->filter_lock);
	bayes_filter_t *f = s->filter;
	/* past the tokens it was sized for, it stays behind: a build sizes one anew */
	if (f != NULL && entries1 <= f->room &&
	    atomic_load_explicit(&f->gen, memory_order_acquire) == gen0 &&
	    atomic_load_explicit(&f->entries, memory_order_acquire) == entries0) {
		for (size_t i = 0; i < n; i++)
			filter_add(f, pairs[i].key);
		atomic_store_explicit(&f->entries, entries1, memory_order_release);
		atomic_store_explicit(&f->gen, gen1, memory_order_release);
	}
	pthread_rwlock_unlock(&s->filter_lock);
}

/* One write transaction for the whole batch: all of it or nothing. */
static int apply_txn(bayes_store_t *s, const bayes_learn_item_t *items, size_t n,
                     bayes_apply_result_t *res)
{
	bayes_apply_result_t r = {0};
	uint32_t today = s->day ? s->day : bayes_today();
	MDB_txn *txn;
	changes_t d = {0};

	clear_stale_readers(s);
	int rc = txn_begin(s, 0, &txn);
	if (rc != 0)
		return map_err(rc);
	bayes_totals_t t;
	rc = read_totals(txn, s->meta, &t);
	if (rc == 0 && t.tokenizer != BAYES_TOKENIZER_VERSION) {
		if (t.spam == 0 && t.ham == 0) {
			t.tokenizer = BAYES_TOKENIZER_VERSION; /* empty: adopt ours */
		} else {
			txn_abort(s, txn);
			return BAYES_EVERSION;
		}
	}
	const bayes_totals_t before = t;
	MDB_stat st0, st1;
	bool mixed = false;
	if (rc == 0)
		rc = mdb_stat(txn, s->tokens, &st0);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const bayes_learn_item_t *it = &items[i];
		/* The experts scored the message before it was learned, whether
		 * or not its counts change now: the mixture learns from each. */
		if (it->mix.on && (it->op == BAYES_LEARN_SPAM || it->op == BAYES_LEARN_HAM)) {
			bayes_mix_update(t.mix, &it->mix);
			mixed = true;
		}
		if (it->op == BAYES_TOUCH) {
			if (change_add(&d, it, 0, false, 0) != 0) {
				rc = ENOMEM;
				break;
			}
			r.touched++;
			continue;
		}
		MDB_val k = mval(it->digest, BAYES_DIGEST_BYTES), v;
		int had = -1; /* 1 spam, 0 ham, -1 never learned */
		int g = mdb_get(txn, s->digests, &k, &v);
		if (g == 0 && v.mv_size >= 1)
			had = ((const uint8_t *)v.mv_data)[0] == 's';
		else if (g != MDB_NOTFOUND) {
			rc = g;
			break;
		}
		if (it->op == BAYES_FORGET) {
			if (had < 0) {
				r.unknown++;
				continue;
			}
			if (change_add(&d, it, -1, had == 1, 0) != 0) {
				rc = ENOMEM;
				break;
			}
			if (had == 1 && t.spam > 0)
				t.spam--;
			else if (had == 0 && t.ham > 0)
				t.ham--;
			rc = mdb_del(txn, s->digests, &k, NULL);
			r.forgotten++;
			continue;
		}
		bool spam = it->op == BAYES_LEARN_SPAM;
		if (had == (int)spam) {
			/* Counts once per message, but the regression may step again
			 * (a learner's later pass over a message it still gets wrong). */
			if (it->lr_delta != 0 && change_add(&d, it, 0, spam, it->lr_delta) != 0) {
				rc = ENOMEM;
				break;
			}
			r.already++;
			continue;
		}
		if (had >= 0 && change_add(&d, it, -1, had == 1, 0) != 0) {
			rc = ENOMEM;
			break;
		}
		if (had >= 0) {
			if (had == 1 && t.spam > 0)
				t.spam--;
			else if (had == 0 && t.ham > 0)
				t.ham--;
			r.relearned++;
		} else {
			r.learned++;
		}
		if (change_add(&d, it, +1, spam, it->lr_delta) != 0) {
			rc = ENOMEM;
			break;
		}
		if (spam)
			t.spam++;
		else
			t.ham++;
		uint8_t vb[DIGEST_VALUE_BYTES];
		vb[0] = spam ? 's' : 'h';
		put32(vb + 1, today);
		v = mval(vb, sizeof(vb));
		rc = mdb_put(txn, s->digests, &k, &v, 0);
	}
	if (rc == 0)
		rc = apply_changes(s, txn, &d, today);
	if (rc == 0)
		rc = write_totals(txn, s->meta, &t);
	if (rc == 0 && mixed)
		rc = write_mix(txn, s->meta, t.mix);
	uint64_t gen = 0;
	if (rc == 0 && d.n > r.touched)
		rc = bump_gen(txn, s->meta, &gen);
	if (rc == 0)
		rc = mdb_stat(txn, s->tokens, &st1);
	size_t npairs = d.pairs; /* s->pairs holds them, sorted, when apply_changes() ran */
	free(d.v);
	if (rc == 0)
		rc = txn_commit(s, txn);
	else
		txn_abort(s, txn);
	if (rc == 0 && gen != 0)
		filter_advance(s, before.gen, st0.ms_entries, gen, st1.ms_entries, s->pairs,
		               npairs);
	bayes_cache_t *c = atomic_load_explicit(&s->cache, memory_order_acquire);
	if (rc == 0 && gen != 0 && c != NULL) {
		bayes_totals_t after = t;
		after.gen = gen;
		cache_retag(c, cache_tag(&before), cache_tag(&after), s->pairs, npairs);
	}
	if (rc == 0)
		*res = r;
	if (rc == 0 && atomic_load_explicit(&s->max_tokens, memory_order_relaxed) > 0)
		prune_if_over(s);
	return map_err(rc);
}

static void result_add(bayes_apply_result_t *to, const bayes_apply_result_t *r)
{
	to->learned += r->learned;
	to->relearned += r->relearned;
	to->already += r->already;
	to->forgotten += r->forgotten;
	to->unknown += r->unknown;
	to->touched += r->touched;
	to->unfit += r->unfit;
	to->unfit_learn += r->unfit_learn;
}

static size_t count_learn(const bayes_learn_item_t *items, size_t n)
{
	size_t learn = 0;
	for (size_t i = 0; i < n; i++)
		learn += items[i].op != BAYES_TOUCH;
	return learn;
}

/*
 * A batch that does not fit the map goes again in halves, so that a
 * message too big for the room left (a hostile one brought 100,000 tokens,
 * 10 MB of map) costs its own learning, not that of the 255 queued with
 * it. k misfits of n cost O(k log n) more transactions, each aborted
 * before its commit. Not split: a batch of touches only (they just age
 * tokens), nor any batch while the store is full (nothing fitted last
 * time; a whole batch is tried again, and fits once room is made).
 */
static int apply_split(bayes_store_t *s, const bayes_learn_item_t *items, size_t n, bool split,
                       bayes_apply_result_t *res)
{
	bayes_apply_result_t r = {0};
	int rc = apply_txn(s, items, n, &r);
	if (rc == BAYES_OK) {
		result_add(res, &r);
		return rc;
	}
	if (rc != BAYES_EFULL)
		return rc;
	if (n == 1 || !split) {
		res->unfit += n;
		res->unfit_learn += count_learn(items, n);
		return BAYES_OK;
	}
	rc = apply_split(s, items, n / 2, split, res);
	if (rc == BAYES_OK)
		rc = apply_split(s, items + n / 2, n - n / 2, split, res);
	return rc;
}

int bayes_store_apply(bayes_store_t *s, const bayes_learn_item_t *items, size_t n,
                      bayes_apply_result_t *res)
{
	bayes_apply_result_t r = {0};
	size_t learn = count_learn(items, n);
	bool split = learn > 0 && !__atomic_load_n(&s->full, __ATOMIC_ACQUIRE);
	int rc = apply_split(s, items, n, split, &r);
	if (rc != BAYES_OK)
		return rc;
	if (r.unfit > 0) {
		/* Full is when nothing fitted: not when one message of many did not. */
		set_full(s, r.unfit_learn == learn);
		rc = BAYES_EFULL;
	} else {
		set_full(s, false);
	}
	if (res != NULL)
		*res = r;
	return rc;
}

/* ------------------------------------------------------------ autolearn writer */

/*
 * One writer thread per store applies what the daemon's threads queue.
 * Batching matters: an LMDB commit costs an fsync, so writing 256 queued
 * messages at once is about 256 times cheaper than one by one, and the
 * milter threads never wait for any of it.
 */
static void *writer_main(void *arg)
{
	bayes_store_t *s = arg;
	bayes_learn_item_t items[STORE_WRITER_BATCH];
	job_t *jobs[STORE_WRITER_BATCH];

	pthread_mutex_lock(&s->qlock);
	for (;;) {
		while (s->qhead == NULL && !s->writer_stop)
			pthread_cond_wait(&s->qcond, &s->qlock);
		if (s->qhead == NULL && s->writer_stop)
			break;
		if (s->qlen < STORE_WRITER_BATCH && !s->writer_stop) {
			/* Let a batch gather, bounded so learning stays timely. */
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += STORE_WRITER_LINGER_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&s->qcond, &s->qlock, &ts);
		}
		size_t n = 0;
		while (s->qhead != NULL && n < STORE_WRITER_BATCH) {
			jobs[n] = s->qhead;
			items[n] = s->qhead->item;
			s->qbytes -= job_bytes(s->qhead);
			s->qhead = s->qhead->next;
			n++;
		}
		if (s->qhead == NULL)
			s->qtail = NULL;
		s->qlen -= n;
		pthread_mutex_unlock(&s->qlock);

		bayes_apply_result_t r = {0};
		int rc = bayes_store_apply(s, items, n, &r);
		size_t learn = count_learn(items, n);
		size_t lost = rc == BAYES_OK ? 0 : rc == BAYES_EFULL ? r.unfit_learn : learn;
		if (rc != BAYES_OK && rc != BAYES_EFULL)
			log_msg(LOG_L_ERR,
			        "bayes: writing %zu queued item(s) (%zu to learn) failed: %s", n,
			        learn, bayes_strerror(rc));
		else if (lost > 0 && lost < learn)
			log_msg(LOG_L_WARNING,
			        "bayes: %zu queued message(s) too big for the room left in %s not "
			        "learned; the other %zu were",
			        lost, s->path, learn - lost);
		for (size_t i = 0; i < n; i++)
			free(jobs[i]);

		pthread_mutex_lock(&s->qlock);
		s->dropped += lost; /* lost learning; lost touches only age tokens */
		s->applied += n;
		s->batches++;
		pthread_cond_broadcast(&s->qdone);
	}
	pthread_mutex_unlock(&s->qlock);
	return NULL;
}

/* Starts the writer once; the caller holds s->qlock. */
static int writer_start_locked(bayes_store_t *s)
{
	if (s->writer_running)
		return 0;
	if (s->writer_stop || ev_thread_start(&s->writer, "sift-bayes-wr", writer_main, s) != 0)
		return -1;
	s->writer_running = true;
	return 0;
}

int bayes_store_start(bayes_store_t *s)
{
	pthread_mutex_lock(&s->qlock);
	int rc = writer_start_locked(s) == 0 ? BAYES_OK : BAYES_EIO;
	pthread_mutex_unlock(&s->qlock);
	return rc;
}

int bayes_store_submit(bayes_store_t *s, const bayes_learn_item_t *item, size_t queue_max,
                       size_t queue_max_bytes)
{
	job_t *j = malloc(sizeof(*j) + item->n * sizeof(uint64_t));
	if (j == NULL)
		return BAYES_EIO;
	j->next = NULL;
	j->item = *item;
	memcpy(j->keys, item->keys, item->n * sizeof(uint64_t));
	j->item.keys = j->keys;

	pthread_mutex_lock(&s->qlock);
	/* one job always fits an empty queue, whatever its size */
	if (s->qlen >= queue_max || (s->qlen > 0 && s->qbytes + job_bytes(j) > queue_max_bytes) ||
	    s->writer_stop) {
		if (item->op != BAYES_TOUCH)
			s->dropped++;
		pthread_mutex_unlock(&s->qlock);
		free(j);
		return BAYES_EBUSY;
	}
	if (writer_start_locked(s) != 0) {
		if (item->op != BAYES_TOUCH)
			s->dropped++;
		pthread_mutex_unlock(&s->qlock);
		free(j);
		return BAYES_EIO;
	}
	/*
	 * The writer is woken by the first job (it sleeps on an empty queue)
	 * and by a full batch; the jobs between wait out its linger, so a
	 * busy daemon writes batches rather than a commit per wake-up.
	 */
	bool wake = s->qhead == NULL || s->qlen + 1 >= STORE_WRITER_BATCH;
	if (s->qtail)
		s->qtail->next = j;
	else
		s->qhead = j;
	s->qtail = j;
	s->qlen++;
	s->qbytes += job_bytes(j);
	s->submitted++;
	if (wake)
		pthread_cond_signal(&s->qcond);
	pthread_mutex_unlock(&s->qlock);
	return BAYES_OK;
}

void bayes_store_flush(bayes_store_t *s)
{
	pthread_mutex_lock(&s->qlock);
	uint64_t target = s->submitted;
	while (s->writer_running && s->applied < target) {
		pthread_cond_signal(&s->qcond);
		pthread_cond_wait(&s->qdone, &s->qlock);
	}
	pthread_mutex_unlock(&s->qlock);
}

static void writer_stop(bayes_store_t *s)
{
	pthread_mutex_lock(&s->qlock);
	bool running = s->writer_running;
	s->writer_stop = true;
	pthread_cond_broadcast(&s->qcond);
	pthread_mutex_unlock(&s->qlock);
	if (running)
		pthread_join(s->writer, NULL); /* it drains the queue first */
}

/* ------------------------------------------------------------ maintenance */

/* mdb_reader_list() prints a header line, then one line per slot in use. */
static int count_reader(const char *msg, void *ctx)
{
	if (strstr(msg, "pid") == NULL && strstr(msg, "(no active readers)") == NULL)
		(*(unsigned *)ctx)++;
	return 0;
}

int bayes_store_stats(bayes_store_t *s, bayes_stats_t *st)
{
	memset(st, 0, sizeof(*st));
	clear_stale_readers(s);
	MDB_envinfo info;
	MDB_stat est;
	mdb_env_info(s->env, &info);
	mdb_env_stat(s->env, &est);
	st->map_bytes = info.me_mapsize;
	st->used_bytes = (uint64_t)(info.me_last_pgno + 1) * est.ms_psize;
	char data[4096];
	struct stat fs;
	snprintf(data, sizeof(data), "%s/data.mdb", s->path);
	if (stat(data, &fs) == 0)
		st->file_bytes = (uint64_t)fs.st_size;
	mdb_reader_list(s->env, count_reader, &st->readers);

	MDB_txn *txn;
	int rc = read_begin(s, &txn);
	if (rc != 0)
		return map_err(rc);
	rc = read_totals(txn, s->meta, &st->totals);
	MDB_stat ds;
	if (rc == 0 && (rc = mdb_stat(txn, s->tokens, &ds)) == 0)
		st->tokens = ds.ms_entries;
	if (rc == 0 && (rc = mdb_stat(txn, s->digests, &ds)) == 0)
		st->digests = ds.ms_entries;
	txn_abort(s, txn);

	pthread_mutex_lock(&s->qlock);
	st->queued = s->qlen;
	st->dropped = s->dropped;
	st->applied_batches = s->batches;
	pthread_mutex_unlock(&s->qlock);
	st->full = __atomic_load_n(&s->full, __ATOMIC_ACQUIRE);
	st->stale_readers = (unsigned)__atomic_load_n(&s->stale_readers, __ATOMIC_RELAXED);
	return map_err(rc);
}

int bayes_store_expire(bayes_store_t *s, uint32_t today, uint32_t max_age_days, uint32_t max_count,
                       uint64_t *removed)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	uint64_t gone = 0;
	int rc = txn_begin(s, 0, &txn);
	if (rc != 0)
		return map_err(rc);
	rc = mdb_cursor_open(txn, s->tokens, &cur);
	if (rc == 0) {
		MDB_val k, v;
		int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		while (r == 0) {
			bayes_counts_t c;
			decode_counts(&v, &c);
			if ((uint64_t)c.spam + c.ham <= max_count &&
			    (uint64_t)c.day + max_age_days < today) {
				rc = mdb_cursor_del(cur, 0);
				if (rc != 0)
					break;
				gone++;
			}
			r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		if (rc == 0 && r != MDB_NOTFOUND)
			rc = r;
		mdb_cursor_close(cur);
	}
	if (rc == 0 && gone > 0)
		rc = bump_gen(txn, s->meta, NULL);
	if (rc == 0)
		rc = txn_commit(s, txn);
	else
		txn_abort(s, txn);
	if (rc == 0 && removed != NULL)
		*removed = gone;
	return map_err(rc);
}

static void hex(char *out, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

int bayes_store_dump(bayes_store_t *s, FILE *fp)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = read_begin(s, &txn);
	if (rc != 0)
		return map_err(rc);
	bayes_totals_t t;
	rc = read_totals(txn, s->meta, &t);
	if (rc == 0) {
		fprintf(fp, "sift-bayes-dump 1 tokenizer %" PRIu32 "\n", t.tokenizer);
		fprintf(fp, "totals %" PRIu64 " %" PRIu64 "\n", t.spam, t.ham);
		if (t.mix[0] != 0 || t.mix[1] != 0)
			fprintf(fp, "lrmix %.17g %.17g\n", t.mix[0], t.mix[1]);
		rc = mdb_cursor_open(txn, s->tokens, &cur);
	}
	if (rc == 0) {
		int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		for (; r == 0; r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			bayes_counts_t c;
			if (k.mv_size != 8)
				continue;
			decode_counts(&v, &c);
			fprintf(fp, "token %016" PRIx64 " %" PRIu32 " %" PRIu32 " %" PRIu32,
			        key_from_be(k.mv_data), c.spam, c.ham, c.day);
			if (c.weight != 0)
				fprintf(fp, " %.9g", (double)c.weight);
			fputc('\n', fp);
		}
		mdb_cursor_close(cur);
		rc = mdb_cursor_open(txn, s->digests, &cur);
	}
	if (rc == 0) {
		int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		for (; r == 0; r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			char hx[2 * BAYES_DIGEST_BYTES + 1];
			if (k.mv_size != BAYES_DIGEST_BYTES || v.mv_size < DIGEST_VALUE_BYTES)
				continue;
			hex(hx, k.mv_data, BAYES_DIGEST_BYTES);
			const uint8_t *vb = v.mv_data;
			fprintf(fp, "digest %s %c %" PRIu32 "\n", hx, vb[0] == 's' ? 's' : 'h',
			        get32(vb + 1));
		}
		mdb_cursor_close(cur);
	}
	txn_abort(s, txn);
	if (rc == 0 && (fflush(fp) != 0 || ferror(fp)))
		return BAYES_EIO;
	return map_err(rc);
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int v = 0;
		for (int j = 0; j < 2; j++) {
			char c = s[2 * i + j];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= c - '0';
			else if (c >= 'a' && c <= 'f')
				v |= c - 'a' + 10;
			else if (c >= 'A' && c <= 'F')
				v |= c - 'A' + 10;
			else
				return -1;
		}
		out[i] = (uint8_t)v;
	}
	return s[2 * n] == '\0' ? 0 : -1;
}

int bayes_store_load(bayes_store_t *s, FILE *fp, const char *name, bool merge, diag_t *d)
{
	MDB_txn *txn;
	char line[512];
	unsigned lineno = 0;
	bool header = false, mixed = false;
	int rc = txn_begin(s, 0, &txn);
	if (rc != 0)
		return map_err(rc);
	bayes_totals_t t;
	rc = read_totals(txn, s->meta, &t);
	if (rc == 0 && !merge) {
		rc = mdb_drop(txn, s->tokens, 0);
		if (rc == 0)
			rc = mdb_drop(txn, s->digests, 0);
		t.spam = t.ham = 0;
		memset(t.mix, 0, sizeof(t.mix)); /* the dump's, if it has one */
		mixed = true;
	}
	int err = BAYES_OK;
	while (rc == 0 && err == BAYES_OK && fgets(line, sizeof(line), fp) != NULL) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		char kind[16], a[64], b[32];
		uint64_t x, y;
		uint32_t z;
		if (!header) {
			unsigned ver, tok;
			if (sscanf(line, "sift-bayes-dump %u tokenizer %u", &ver, &tok) != 2 ||
			    ver != 1) {
				diag_error(d, name, lineno, "not a sift Bayes dump (version 1)");
				err = BAYES_EFORMAT;
			} else if (merge && (t.spam || t.ham) && tok != t.tokenizer) {
				diag_error(d, name, lineno,
				           "dump of tokenizer %u cannot merge into a store of %u",
				           tok, t.tokenizer);
				err = BAYES_EVERSION;
			} else {
				t.tokenizer = tok;
			}
			header = true;
			continue;
		}
		if (sscanf(line, "%15s", kind) != 1) {
			diag_error(d, name, lineno, "empty record");
			err = BAYES_EFORMAT;
		} else if (strcmp(kind, "totals") == 0) {
			if (sscanf(line, "totals %" SCNu64 " %" SCNu64, &x, &y) != 2) {
				diag_error(d, name, lineno, "expected: totals SPAM HAM");
				err = BAYES_EFORMAT;
			} else {
				t.spam += x;
				t.ham += y;
			}
		} else if (strcmp(kind, "lrmix") == 0) {
			double m[BAYES_MIX_EXPERTS];
			if (sscanf(line, "lrmix %lf %lf", &m[0], &m[1]) != 2 || !isfinite(m[0]) ||
			    !isfinite(m[1])) {
				diag_error(d, name, lineno, "expected: lrmix BAYES REGRESSION");
				err = BAYES_EFORMAT;
			} else if (!merge || (t.mix[0] == 0 && t.mix[1] == 0)) {
				/* a merge keeps the store's own, if it has any */
				memcpy(t.mix, m, sizeof(m));
				mixed = true;
			}
		} else if (strcmp(kind, "token") == 0) {
			uint8_t kb[8];
			double w = 0;
			int got = sscanf(line, "token %63s %" SCNu64 " %" SCNu64 " %" SCNu32 " %lf",
			                 a, &x, &y, &z, &w);
			if (got < 4 || !isfinite(w) || strlen(a) != 16 || unhex(a, kb, 8) != 0 ||
			    x > UINT32_MAX || y > UINT32_MAX) {
				diag_error(d, name, lineno,
				           "expected: token HEX16 SPAM HAM DAY [WEIGHT]");
				err = BAYES_EFORMAT;
				break;
			}
			bayes_counts_t c = {(uint32_t)x, (uint32_t)y, z, (float)w}, old;
			MDB_val k = mval(kb, 8), v;
			if (merge && mdb_get(txn, s->tokens, &k, &v) == 0) {
				decode_counts(&v, &old);
				c.spam = sat_add(
				    c.spam, (int32_t)(old.spam > INT32_MAX ? INT32_MAX : old.spam));
				c.ham = sat_add(
				    c.ham, (int32_t)(old.ham > INT32_MAX ? INT32_MAX : old.ham));
				if (old.day > c.day)
					c.day = old.day;
				c.weight += old.weight;
			}
			uint8_t vb[TOKEN_WEIGHT_BYTES];
			v = mval(vb, encode_counts(vb, &c));
			rc = mdb_put(txn, s->tokens, &k, &v, 0);
		} else if (strcmp(kind, "digest") == 0) {
			uint8_t kb[BAYES_DIGEST_BYTES], vb[DIGEST_VALUE_BYTES];
			if (sscanf(line, "digest %63s %31s %" SCNu32, a, b, &z) != 3 ||
			    unhex(a, kb, BAYES_DIGEST_BYTES) != 0 ||
			    (strcmp(b, "s") != 0 && strcmp(b, "h") != 0)) {
				diag_error(d, name, lineno, "expected: digest HEX32 s|h DAY");
				err = BAYES_EFORMAT;
				break;
			}
			vb[0] = (uint8_t)b[0];
			put32(vb + 1, z);
			MDB_val k = mval(kb, sizeof(kb)), v = mval(vb, sizeof(vb));
			rc = mdb_put(txn, s->digests, &k, &v, MDB_NOOVERWRITE);
			if (rc == MDB_KEYEXIST)
				rc = 0;
		} else {
			diag_error(d, name, lineno, "unknown record \"%s\"", kind);
			err = BAYES_EFORMAT;
		}
	}
	if (rc == 0 && err == BAYES_OK && !header) {
		diag_error(d, name, 0, "empty dump");
		err = BAYES_EFORMAT;
	}
	if (rc == 0 && err == BAYES_OK)
		rc = write_totals(txn, s->meta, &t);
	if (rc == 0 && err == BAYES_OK && mixed)
		rc = write_mix(txn, s->meta, t.mix);
	if (rc == 0 && err == BAYES_OK)
		rc = bump_gen(txn, s->meta, NULL);
	if (rc == 0 && err == BAYES_OK) {
		rc = txn_commit(s, txn);
	} else {
		txn_abort(s, txn);
		if (rc != 0)
			diag_error(d, name, lineno, "%s", mdb_strerror(rc));
	}
	return err != BAYES_OK ? err : map_err(rc);
}

int bayes_store_compact(bayes_store_t *s, uint64_t *before_bytes, uint64_t *after_bytes)
{
	char tmp[4096], src[4096 + 16], dst[4096 + 16];
	struct stat st;
	snprintf(tmp, sizeof(tmp), "%s.compact", s->path);
	snprintf(src, sizeof(src), "%s/data.mdb", tmp);
	snprintf(dst, sizeof(dst), "%s/data.mdb", s->path);
	if (stat(dst, &st) == 0 && before_bytes)
		*before_bytes = (uint64_t)st.st_size;
	unlink(src);
	if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
		return map_err(errno);
	/* A compacting copy writes only live pages, renumbered; the copy is
	 * consistent (it runs in a read transaction) and then replaces the
	 * original atomically by rename. */
	pthread_rwlock_rdlock(&s->resize_lock); /* the copy runs a read transaction */
	int rc = mdb_env_copy2(s->env, tmp, MDB_CP_COMPACT);
	pthread_rwlock_unlock(&s->resize_lock);
	if (rc == 0 && rename(src, dst) != 0)
		rc = errno;
	unlink(src);
	rmdir(tmp);
	if (rc == 0 && stat(dst, &st) == 0 && after_bytes)
		*after_bytes = (uint64_t)st.st_size;
	return map_err(rc);
}
