/*
 * NAME
 *	bayes - statistical token classifier: tokenizer, LMDB store, Fisher
 *	combining, autolearn writer, and the `sift learn` / `sift bayes` commands
 * SYNOPSIS
 *	#include "bayes.h"
 *
 *	bayes_tokenize(m, mi, false, &tok);          tokens of one message
 *	s = bayes_store_open(path, map_bytes, BAYES_OPEN_CREATE, &err);
 *	bayes_store_lookup(s, tok.keys, tok.n, counts, &totals);
 *	p = bayes_classify(&params, counts, tok.n, &totals, NULL, NULL, &res);
 *	bayes_store_apply(s, items, n, &result);      learn, relearn, forget
 *	bayes_store_unref(s);
 * DESCRIPTION
 *	Tokenizer. bayes_tokenize() reads the decoded UTF-8 views the MIME
 *	layer produced (mime_body(), the URIs, the parts) and the message's
 *	header fields, and turns them into 64-bit token keys:
 *	  body words      ASCII lower-cased; UTF-8 kept as is; leading and
 *	                  trailing punctuation stripped (a leading '$' and a
 *	                  trailing '!' are kept: they carry signal); words of
 *	                  1-2 bytes dropped; words over 40 bytes become a
 *	                  "skip" token of their length class;
 *	  word order      sparse bigrams (OSB): each word paired with each of
 *	                  the BAYES_OSB_WINDOW-1 words before it, the distance
 *	                  being part of the key;
 *	  header fields   prefixed tokens: "s:" Subject words, "from:", "to:",
 *	                  "rt:" Reply-To addresses, domains and name words,
 *	                  "rcvd:" Received hosts and IP /24s, "mid:" Message-ID
 *	                  host, "xm:" X-Mailer/User-Agent, "h:" each header
 *	                  name present, "ct:"/"cs:"/"cte:" content types,
 *	                  charsets and encodings of every part;
 *	  URLs            "u:" host and each parent domain, "up:" path pieces;
 *	  attachments     "fn:" file name, "fx:" extension, "pt:" type.
 *	Keys are a stable 64-bit hash (the same on every platform, so dumps
 *	move between nodes); each distinct key counts once per message. The
 *	token text is kept only when asked for (for `sift check` explanations),
 *	never on the scoring path. BAYES_TOKENIZER_VERSION changes whenever the
 *	keys a message produces change; a store learned with another version
 *	refuses to learn and does not vote until rebuilt.
 *
 *	Store. One LMDB environment (a directory, default <state_dir>/bayes)
 *	with three databases: "tokens" (8-byte big-endian key -> spam count,
 *	ham count, last day seen), "digests" (the 16-byte digest of each
 *	learned message -> its class and day, so a message is never learned
 *	twice, can be moved to the other class, and can be forgotten) and
 *	"meta" (totals and versions). Readers use LMDB read transactions and
 *	are never blocked by the writer; all writes go through
 *	bayes_store_apply(), one write transaction per batch (halves of it
 *	when it does not fit the map). Stale reader slots of killed processes
 *	are cleared when the store is opened, before each write batch and by
 *	bayes_store_stats(). A writer killed between
 *	writing its meta page and announcing it leaves a batch that new read
 *	transactions do not see yet: lookups live with that (they never wait
 *	for a writer; the next write publishes it), while bayes_store_stats()
 *	and bayes_store_dump() take the write lock once to have LMDB recover
 *	it, so their counts match what the file holds.
 *
 *	A store is opened once per process per path (LMDB forbids opening one
 *	environment twice in a process): bayes_store_open() returns a new
 *	reference to an already open store from a process-wide registry.
 *
 *	Classifier. Robinson's f(w) = (s*x + n*p(w)) / (s + n), with p(w) the
 *	ratio of the token's spam and ham frequencies, combined with Fisher's
 *	chi-square method (as SpamBayes and bogofilter do) over the tokens
 *	whose |f(w) - 0.5| >= min_dev, at most max_tokens of the strongest.
 *	Fisher's two tail probabilities are read as log-odds, divided by
 *	n^e to allow for the dependence between a word and its bigrams, and
 *	mapped to P(spam) = 1 / (1 + e^(-k * log-odds)): unlike Fisher's
 *	usual I = (1 + S - H) / 2 this does not tie long messages with strong
 *	evidence both ways at 0.5 (see bayes_classify.c for the measurements).
 *	Result: P(spam) in [0, 1], 0.5 when undecided.
 *
 *	Logistic regression (bayes_lr). Beside the counts each token holds a
 *	weight; a message's regression log-odds are the sum of its tokens'
 *	weights, and learning a message of class y moves each of its tokens'
 *	weights by rate * (y - p) (on-line gradient descent on log loss, as
 *	the leading on-line filters of the TREC spam track did). The two
 *	log-odds are added (bayes_score_tokens()): on the corpus's date-ordered
 *	stream this cut (1-ROC area) by a quarter and more (contrib/eval/README).
 *
 *	Dump format (`sift bayes dump`), one record per line, text, fields
 *	separated by one space, numbers decimal, keys lower-case hex:
 *	  sift-bayes-dump 1 tokenizer <version>     first line
 *	  totals <spam messages> <ham messages>
 *	  token <16 hex> <spam count> <ham count> <day> [<weight>]
 *	  digest <32 hex> <s|h> <day>
 *	'#' lines are comments. <day> counts days since 1970-01-01 (UTC).
 *	bayes_store_load() replaces the store's contents with a dump, or with
 *	merge adds its counts and totals to what is there (digests already
 *	present are kept); either way in one transaction.
 * CONFIGURATION
 *	bayes_enable (yes), bayes_db (<state_dir>/bayes), bayes_map_size
 *	(512M; a change takes effect at the next start), bayes_min_spam and
 *	bayes_min_ham (200: learned messages of each class before Bayes votes),
 *	bayes_robs (0.1), bayes_robx (0.52), bayes_min_dev (0.45),
 *	bayes_max_tokens (0 = all), bayes_fisher_exponent (0.85),
 *	bayes_fisher_scale (3), the band scores bayes_score_00 (-1.9),
 *	_05 (-0.5), _20 (-0.001), _40 (-0.001), _50 (0), _60 (1.5), _80 (2.0),
 *	_95 (3.0), _99 (4.0), _999 (5.0) for the hits BAYES_00 (P < 1%) ...
 *	BAYES_999 (P >= 99.9%); bayes_logodds_scale, bayes_logodds_clip
 *	and bayes_logodds_offset (the continuous contribution BAYES_LOGODDS:
 *	scale * logit(P) clipped to +-clip, plus offset; with a scale above
 *	0 the band scores default to 0, so the bands still hit for rules that
 *	name them but carry no points), bayes_autolearn (no),
 *	bayes_autolearn_spam_score (12) and bayes_autolearn_ham_score (0.1),
 *	compared with the message's score without Bayes's own points, and
 *	bayes_autolearn_queue (1000 messages; more are dropped and counted)
 *	and bayes_autolearn_queue_bytes (32M: the bytes they may take, since
 *	a message can bring up to some 60,000 keys),
 *	bayes_train_mode (train-always, train-on-error, train-until-no-error)
 *	and bayes_train_margin (1), bayes_lr (no), bayes_lr_rate (0.1),
 *	bayes_lr_weight (1), bayes_lr_mix (no) and bayes_lr_mix_share (3e-6),
 *	bayes_expire_max_tokens (0: no bound),
 *	bayes_cache_entries (65536: recent token reads kept in memory, 32
 *	bytes each, shared by all threads; 0: none; see
 *	bayes_store_set_cache()), bayes_filter_bits (12: the daemon's key
 *	filter, bits per stored token; 0: none; see bayes_store_set_filter()),
 *	bayes_touch (yes: the daemon gives the tokens of each message it scores
 *	today's day through the same writer queue, so that expiry judges
 *	staleness by current mail, not by when a token was last learned;
 *	`sift check` never writes).
 * THREADS
 *	bayes_tokenize() and bayes_classify() are reentrant. A bayes_store_t
 *	is internally synchronised: any number of threads may call lookup at
 *	once while one thread (or the autolearn writer) applies a batch.
 *	bayes_store_submit() may be called from any thread and never blocks;
 *	the store's writer thread learns the queued messages in batches. The
 *	daemon starts that thread with bayes_store_start() (the evidence
 *	start() hook, after fork and privilege drop), and the store itself is
 *	opened there too; the writer blocks the daemon's signals (SIGHUP,
 *	SIGTERM, SIGINT, SIGUSR1) and is named "sift-bayes-wr".
 * DIAGNOSTICS
 *	Store functions return BAYES_OK or a BAYES_E* code; bayes_strerror()
 *	names it. A full map (BAYES_EFULL) stops learning (one log line says
 *	so and what to do) but never stops lookups.
 */
#ifndef SIFT_BAYES_H
#define SIFT_BAYES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "arena.h"
#include "cli.h"
#include "conf.h"
#include "diag.h"
#include "evidence.h"
#include "mime.h"
#include "msg.h"

#define BAYES_TOKENIZER_VERSION 1
#define BAYES_DIGEST_BYTES      16
#define BAYES_OSB_WINDOW        2     /* a word and the 1 word before it */
#define BAYES_MAX_WORD_BYTES    40    /* longer words become "skip" tokens */
#define BAYES_MAX_BODY_WORDS    20000 /* body words tokenized per message */
/* The top bit of a key tells a sparse bigram from a single token. */
#define BAYES_PAIR_BIT (1ULL << 63)

/* ------------------------------------------------------------ tokenizer */

typedef struct bayes_tokens {
	uint64_t *keys;    /* sorted ascending, distinct; in the arena */
	const char **text; /* parallel to keys when keep_text, else NULL */
	size_t n;
	uint8_t digest[BAYES_DIGEST_BYTES]; /* identifies the message for learning */
} bayes_tokens_t;

/*
 * Tokenizes m (its header fields) and mi (its MIME views; may be NULL, then
 * only the header fields and the raw body are used). Memory comes from
 * msg_arena(m). Never fails.
 */
void bayes_tokenize(msg_t *m, const mime_t *mi, bool keep_text, bayes_tokens_t *out);
/* The stable 64-bit hash under the token keys. */
uint64_t bayes_hash(const void *p, size_t n, uint64_t seed);

/* ------------------------------------------------------------ store */

enum {
	BAYES_OK = 0,
	BAYES_ENOENT = -1,   /* no store at that path (and not asked to create) */
	BAYES_EFULL = -2,    /* the map is full: learning stopped */
	BAYES_EIO = -3,      /* LMDB or file system error */
	BAYES_EVERSION = -4, /* learned with another tokenizer or format */
	BAYES_EPERM = -5,    /* cannot create or write (permissions, read-only) */
	BAYES_EFORMAT = -6,  /* bad dump text */
	BAYES_EBUSY = -7,    /* the autolearn queue is full */
};
const char *bayes_strerror(int err);

enum {
	BAYES_OPEN_CREATE = 1u << 0, /* create the directory and databases if missing */
	/*
	 * Commits do not wait for the disk (MDB_NOSYNC); the last reference
	 * syncs. For one-off bulk learning (`sift learn`, in every mode): a
	 * system crash (not a process crash) may lose or damage the store.
	 * Only the first open of a path in a process decides.
	 */
	BAYES_OPEN_NOSYNC = 1u << 1,
};

typedef struct bayes_store bayes_store_t;

typedef struct bayes_counts {
	uint32_t spam, ham; /* messages of each class that contained the token */
	uint32_t day;       /* last day learned or seen in scored mail (days since the epoch) */
	float weight;       /* the token's logistic-regression weight (0 in older stores) */
} bayes_counts_t;

/*
 * The experts of bayes_lr_mix, in this order: Bayes alone and the
 * regression alone (see bayes_mix_log_odds()).
 */
#define BAYES_MIX_EXPERTS 2

typedef struct bayes_totals {
	uint64_t spam, ham; /* messages learned */
	uint32_t tokenizer; /* the tokenizer version the store was learned with */
	uint64_t gen;       /* moves with every commit that changes counts or weights */
	/* bayes_lr_mix's log-weights of the experts, the largest 0 (all 0, the
	 * same weight each, in a store that never learned with the mix) */
	double mix[BAYES_MIX_EXPERTS];
} bayes_totals_t;

/*
 * Opens (or with BAYES_OPEN_CREATE creates) the store at path, a directory.
 * map_bytes is the LMDB map size (the store's maximum size). Returns NULL
 * with *err set on failure. Opening a path already open in this process
 * returns a new reference to the same store (map_bytes is then ignored).
 */
bayes_store_t *bayes_store_open(const char *path, uint64_t map_bytes, unsigned flags, int *err);
bayes_store_t *bayes_store_ref(bayes_store_t *s);
/* Drops a reference; the last one stops the writer thread and closes. */
void bayes_store_unref(bayes_store_t *s);
const char *bayes_store_path(const bayes_store_t *s);

/*
 * Reads the counts of n keys (any order) and the totals from one
 * consistent snapshot. Keys not in the store read as zero counts. With
 * n = 0 (keys and out may be NULL) it reads the totals alone.
 */
int bayes_store_lookup(bayes_store_t *s, const uint64_t *keys, size_t n, bayes_counts_t *out,
                       bayes_totals_t *totals);

/*
 * Gives the store's lookups a table of up to entries recent answers
 * (rounded down to a power of two, 32 bytes each; 0: none), shared by all
 * threads. It answers exactly what LMDB would in the lookup's snapshot
 * (see bayes_store.c), except that with fresh_days an answer dated
 * before today is read again (so the daemon's touches see the true day).
 * May be called again, from any thread, with lookups running (reload): a
 * table of another size replaces the old one, which is freed with the
 * store. A batch applied through this store (bayes_store_apply(), the
 * writer thread) leaves the answers of the keys it did not change in
 * the table; any other change of the store (another process, expiry,
 * pruning, a load) makes all of them stale. bayes_store_cache_stats()
 * gives the keys answered by the table and all keys read through it
 * since the store was opened.
 */
void bayes_store_set_cache(bayes_store_t *s, size_t entries, bool fresh_days);
void bayes_store_cache_stats(bayes_store_t *s, uint64_t *hits, uint64_t *reads);

/*
 * The key filter: with bits_per_key above 0, lookups skip LMDB for keys
 * that a Bloom filter of the store's keys (about bits_per_key bits per
 * token, 12 by default: 1% of absent keys still read) says are absent.
 * The answers are exactly LMDB's: the filter is used only by a lookup
 * whose snapshot is the store state it was built from (or moved to by
 * this store's own batches, until the store holds a quarter more tokens
 * than it was sized for); until one is built for the current state,
 * a thread of the store builds it (a read of every key; spaced by ten
 * times the last build's time) and lookups read LMDB; the first build
 * starts when the filter is switched on, not at the first lookup. Any
 * thread, any time; 0 stops its use. bayes_store_filter_stats() gives the keys it
 * answered and the builds finished since the store was opened.
 */
void bayes_store_set_filter(bayes_store_t *s, unsigned bits_per_key);
void bayes_store_filter_stats(bayes_store_t *s, uint64_t *skipped, uint64_t *builds);
/*
 * Waits until no filter build runs. A build walks every key; a store file
 * that is overwritten under that walk (the tests that wreck one) trips
 * LMDB's own assertions, so they wait first. Any thread.
 */
void bayes_store_filter_wait(bayes_store_t *s);

/*
 * BAYES_TOUCH records that the keys were seen in scored mail today: tokens
 * the store holds get today as their day (counts unchanged, nothing
 * created, the digest unused), so expiry keeps what current mail uses.
 */
typedef enum { BAYES_LEARN_SPAM, BAYES_LEARN_HAM, BAYES_FORGET, BAYES_TOUCH } bayes_op_t;

/*
 * One message's update of bayes_lr_mix's weights: each expert's log
 * likelihood of the message's true class, as it scored the message before
 * it was learned, and the share (bayes_lr_mix_share) every expert then gets
 * back of the total weight.
 */
typedef struct bayes_mix_step {
	bool on;
	double share;
	double ll[BAYES_MIX_EXPERTS];
} bayes_mix_step_t;

typedef struct bayes_learn_item {
	bayes_op_t op;
	uint8_t digest[BAYES_DIGEST_BYTES];
	const uint64_t *keys; /* distinct */
	size_t n;
	/* Added to each key's weight when the message is learned (new or moved);
	 * 0 leaves the weights alone. See bayes_lr_delta(). */
	float lr_delta;
	/* bayes_lr_mix's update by what the experts said of the message before
	 * it was learned (on false: none). See bayes_mix_step(). */
	bayes_mix_step_t mix;
} bayes_learn_item_t;

typedef struct bayes_apply_result {
	size_t learned;   /* new messages counted */
	size_t relearned; /* moved from the other class */
	size_t already;   /* skipped: already learned as that class */
	size_t forgotten; /* removed */
	size_t unknown;   /* forget of a message never learned */
	size_t touched;   /* BAYES_TOUCH items */
	size_t unfit;     /* items not applied: no room left in the map */
	size_t unfit_learn; /* of those, items to learn or forget (not touches) */
} bayes_apply_result_t;

/*
 * Learns or forgets a batch, in one write transaction when it fits the
 * map; when it does not, in halves, down to single items, so that only
 * the items that find no room are left out (res->unfit counts them).
 * Learning a digest already learned as the other class moves it. Returns
 * BAYES_OK when every item was applied, BAYES_EFULL when some were not
 * (res says what was), or another error (res untouched; halves applied
 * before it stay).
 * The store counts as full (bayes_stats_t.full) when nothing of a batch
 * to learn fitted.
 */
int bayes_store_apply(bayes_store_t *s, const bayes_learn_item_t *items, size_t n,
                      bayes_apply_result_t *res);

/*
 * Starts the store's writer thread now rather than at the first submit
 * (idempotent). Returns BAYES_OK, or BAYES_EIO when it cannot be started.
 */
int bayes_store_start(bayes_store_t *s);

/*
 * Queues one item for the store's writer thread (started on first use)
 * without blocking; the keys are copied. Returns BAYES_EBUSY when queue_max
 * items are already waiting, or when the waiting items and this one would
 * take more than queue_max_bytes (8 bytes a key and some 80 an item; an
 * empty queue takes any one item). A dropped message to learn is counted
 * in the stats' dropped; a dropped touch is not: it only lets tokens age.
 */
int bayes_store_submit(bayes_store_t *s, const bayes_learn_item_t *item, size_t queue_max,
                       size_t queue_max_bytes);
/* Waits until everything submitted so far has been applied (tests, shutdown). */
void bayes_store_flush(bayes_store_t *s);

typedef struct bayes_stats {
	bayes_totals_t totals;
	uint64_t tokens, digests;
	uint64_t map_bytes;                        /* configured maximum */
	uint64_t used_bytes;                       /* pages in use */
	uint64_t file_bytes;                       /* data file size on disk */
	unsigned readers;                          /* reader slots in use */
	unsigned stale_readers;                    /* slots of dead processes cleared so far */
	uint64_t queued, dropped, applied_batches; /* this process's autolearn writer */
	bool full;                                 /* learning stopped on a full map */
} bayes_stats_t;
int bayes_store_stats(bayes_store_t *s, bayes_stats_t *st);

/*
 * Deletes tokens last learned or seen more than max_age_days before today whose
 * spam + ham count is at most max_count. *removed gets their number.
 */
int bayes_store_expire(bayes_store_t *s, uint32_t today, uint32_t max_age_days, uint32_t max_count,
                       uint64_t *removed);
/*
 * Removes tokens until at most keep remain: hapaxes (seen in one message)
 * oldest first, then the oldest of the rest. *removed gets their number.
 */
int bayes_store_prune(bayes_store_t *s, uint64_t keep, uint64_t *removed);
/*
 * Bounds the store (bayes_expire_max_tokens; 0, the default, for none):
 * a write that leaves more than max_tokens tokens prunes to 90% of it.
 * Safe while the writer thread runs: the daemon sets it again at each
 * reload of a store it carries over.
 */
void bayes_store_set_bound(bayes_store_t *s, uint64_t max_tokens);
/*
 * Dates learning as day instead of the clock's (0: the clock again), for
 * replaying a dated stream (contrib/eval). Set after opening, before
 * learning starts (not synchronised).
 */
void bayes_store_set_day(bayes_store_t *s, uint32_t day);
int bayes_store_dump(bayes_store_t *s, FILE *fp);
/* Errors go to d as "name:line: ..." lines. */
int bayes_store_load(bayes_store_t *s, FILE *fp, const char *name, bool merge, diag_t *d);
/*
 * Rewrites the data file without free pages (LMDB files never shrink by
 * themselves). Processes that have the store open keep the old file until
 * they reopen it, so stop the daemon (or restart it) around a compaction.
 */
int bayes_store_compact(bayes_store_t *s, uint64_t *before_bytes, uint64_t *after_bytes);

/* Days since 1970-01-01 UTC, the unit of the "day" fields. */
uint32_t bayes_today(void);

/* ------------------------------------------------------------ classifier */

typedef struct bayes_params {
	double robs;            /* Robinson's s: strength of the prior */
	double robx;            /* Robinson's x: prior for unseen tokens */
	double min_dev;         /* ignore tokens with |f(w) - 0.5| below this */
	unsigned max_tokens;    /* use at most this many strongest tokens; 0 = all */
	double fisher_exponent; /* e: the log-odds are divided by n^e */
	double fisher_scale;    /* k: P = 1 / (1 + e^(-k * log-odds)) */
} bayes_params_t;

void bayes_params_default(bayes_params_t *p);

/* Robinson's f(w) of a token seen in spam/ham of nspam/nham messages. */
double bayes_token_prob(const bayes_params_t *p, uint32_t spam, uint32_t ham, uint64_t nspam,
                        uint64_t nham);
/* The upper tail Q(x2 | v) of the chi-square distribution, v even. */
double bayes_chi2q(double x2, unsigned v);
/* log Q(x2 | v), exact where Q itself underflows (long messages). */
double bayes_chi2q_log(double x2, unsigned v);

typedef struct bayes_result {
	double prob;                  /* P(spam) */
	double spamminess, hamminess; /* Fisher's S and H, each in [0, 1] */
	double log_odds;              /* z of bayes_combine(); > 0 leans to spam */
	size_t used;                  /* tokens that took part */
} bayes_result_t;

/*
 * Combines f(w) values with Fisher's method: Qs = Q(-2 sum ln(1 - f), 2n)
 * and Qh = Q(-2 sum ln f, 2n) (S = 1 - Qs, H = 1 - Qh), read as log-odds
 * z = (ln Qh - ln Qs) / n^e * n / (n + 1) and P = 1 / (1 + e^(-k z)),
 * e and k from p.
 * P is 0.5 when n is 0.
 */
double bayes_combine(const bayes_params_t *p, const double *fw, size_t n, bayes_result_t *r);
/*
 * Classifies from the counts of a message's tokens (unseen tokens have
 * zero counts). fw_out (may be NULL) receives every token's f(w), for
 * explanations. Scratch memory comes from a, or from malloc when a is NULL.
 */
double bayes_classify(const bayes_params_t *p, const bayes_counts_t *counts, size_t n,
                      const bayes_totals_t *totals, arena_t *a, double *fw_out, bayes_result_t *r);

/* ------------------------------------------------------------ settings */

/*
 * When a learner (sift learn, autolearn) learns a message whose class it
 * knows: always; only when the store misclassifies it or scores it within
 * the margin (train on error); or on error over repeated passes until a
 * pass learns nothing (sift learn only; autolearn sees each message once).
 */
typedef enum {
	BAYES_TRAIN_ALWAYS,
	BAYES_TRAIN_ON_ERROR,
	BAYES_TRAIN_UNTIL_NO_ERROR,
} bayes_train_mode_t;

typedef struct bayes_settings {
	bool enable;
	char db_path[1024];
	uint64_t map_bytes;
	long min_spam, min_ham;
	bayes_params_t params;
	double band_score[10]; /* per band, see bayes.c's band table */
	bool touch;            /* the daemon dates the tokens it sees (bayes_touch) */
	bool autolearn;
	double autolearn_spam_score, autolearn_ham_score;
	long autolearn_queue;
	uint64_t autolearn_queue_bytes; /* bayes_autolearn_queue_bytes */
	/*
	 * The continuous contribution BAYES_LOGODDS: scale * logit(P) clipped
	 * to +-clip, plus offset points; a scale of 0 leaves the bands alone.
	 */
	double logodds_scale, logodds_clip, logodds_offset;
	uint64_t expire_max_tokens;    /* bayes_expire_max_tokens: the store's bound, 0 none */
	long cache_entries;            /* bayes_cache_entries: the read cache's size, 0 none */
	long filter_bits; /* bayes_filter_bits: the key filter's bits per token, 0 none */
	bool lr;                       /* bayes_lr: the logistic regression beside Bayes */
	double lr_rate;                /* bayes_lr_rate: its learning rate */
	double lr_weight;              /* bayes_lr_weight: its share of the combined log-odds */
	bool lr_mix;                   /* bayes_lr_mix: the experts' mixture, learned */
	double lr_mix_share;           /* bayes_lr_mix_share: the fixed share of each step */
	bayes_train_mode_t train_mode; /* bayes_train_mode, for sift learn and autolearn */
	double train_margin;           /* bayes_train_margin: |log-odds| below it is an error */
} bayes_settings_t;

/*
 * Bayes's points in the continuous mode: logit(p) = ln(p / (1 - p)),
 * clipped to -clip..clip, times scale. `sift rules fit` fits on the same
 * value, so the daemon adds exactly what was fitted. Pure; any thread.
 */
double bayes_logodds_points(double p, double scale, double clip);

/*
 * Reads every bayes_* key. The message bounds (max_message_size, the
 * mime_max_* keys) are the pipeline's (scan.h), also for `sift learn`.
 * Returns -1 with errors in d.
 */
int bayes_settings_read(conf_t *c, const char *state_dir, bayes_settings_t *s, diag_t *d);

/* Parses "train-always", "train-on-error", "train-until-no-error". */
int bayes_train_mode_parse(const char *s, bayes_train_mode_t *out);

/* ------------------------------------------------------------ scoring */

typedef struct bayes_score {
	bool voted;            /* false: too few messages learned, or another tokenizer */
	double prob;           /* P(spam), 0.5 when not voting */
	double log_odds;       /* > 0 leans to spam; 0 when not voting; unbounded (P saturates) */
	double bayes_log_odds; /* Bayes's part: bayes_result_t's log_odds */
	double lr_log_odds;    /* the logistic regression's: the sum of the weights */
	bayes_totals_t totals;
	bayes_result_t res;
	bayes_counts_t *counts; /* per token, in the arena */
} bayes_score_t;

/*
 * Whether a store with totals t votes under set: its tokenizer is this
 * one and it learned at least bayes_min_spam spam and bayes_min_ham ham.
 */
bool bayes_can_vote(const bayes_settings_t *set, const bayes_totals_t *t);

/*
 * Scores tokens against the store as the daemon does (lookup, the
 * bayes_min_spam/ham gate, the classifier). Returns BAYES_OK (sc->voted
 * says whether the classifier voted) or the lookup's error. Memory from a.
 */
int bayes_score_tokens(bayes_store_t *s, const bayes_settings_t *set, const bayes_tokens_t *tok,
                       arena_t *a, double *fw_out, bayes_score_t *sc);
/*
 * The weight step of a message of class is_spam that scored sc: the
 * logistic regression's gradient step rate * (y - sigmoid(lr_log_odds)),
 * or 0 when bayes_lr is off.
 */
float bayes_lr_delta(const bayes_settings_t *set, const bayes_score_t *sc, bool is_spam);
/*
 * bayes_lr_mix: two experts, Bayes's natural log-odds k * z and the
 * regression's r (clipped to +-10), pooled as a Bayesian mixture instead of
 * added: P(spam) is the sum of each expert's P(spam) times its weight, the
 * weights the experts' shares of exp(log-likelihood) of the classes of the
 * messages learned so far, each scored before it was learned, with a fixed
 * share (Herbster and Warmuth's "fixed share") given back to every expert
 * after each step, so that the mixture can move from the one that led (the
 * regression, while the store is young) to the one that leads now.
 * bayes_mix_log_odds() is the mixture's natural log-odds of the experts'
 * log-odds z under log-weights mix; bayes_mix_experts() the experts of a
 * score; bayes_mix_step() a learned message's update (off when bayes_lr or
 * bayes_lr_mix is off or the store did not vote); bayes_mix_update()
 * applies one to log-weights mix (the largest left 0).
 * Pure; any thread.
 */
double bayes_mix_log_odds(const double mix[BAYES_MIX_EXPERTS], const double z[BAYES_MIX_EXPERTS]);
void bayes_mix_experts(const bayes_settings_t *set, double bayes_log_odds, double lr_log_odds,
                       double z[BAYES_MIX_EXPERTS]);
void bayes_mix_step(const bayes_settings_t *set, const bayes_score_t *sc, bool is_spam,
                    bayes_mix_step_t *out);
void bayes_mix_update(double mix[BAYES_MIX_EXPERTS], const bayes_mix_step_t *st);
/*
 * Whether a learner in mode m learns a message of class is_spam that the
 * store scored as (voted, log_odds): always in BAYES_TRAIN_ALWAYS; in the
 * error modes when the store did not vote, leaned the wrong way, or
 * |log_odds| < margin.
 */
bool bayes_train_wanted(bayes_train_mode_t m, bool voted, double log_odds, bool is_spam,
                        double margin);

/* ------------------------------------------------------------ pipeline and CLI */

extern const evidence_ops_t bayes_evidence;

/* `sift learn --spam|--ham [--forget] FILE|DIR|mbox...` */
int bayes_cmd_learn(cli_ctx_t *ctx, int argc, char **argv);
/* `sift bayes stats|dump|load|expire|compact [...]` */
int bayes_cmd_bayes(cli_ctx_t *ctx, int argc, char **argv);

#endif
