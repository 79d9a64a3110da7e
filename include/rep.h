/*
 * NAME
 *	rep - shared reputation and block/allow lists through Redis
 * SYNOPSIS
 *	#include "rep.h"
 *	extern const evidence_ops_t rep_evidence;
 *	int rep_cmd_block(cli_ctx_t *ctx, int argc, char **argv);
 * DESCRIPTION
 *	Several sift-milter nodes learn from each other through one Redis
 *	(optionally a Sentinel-managed primary with a replica per site), in a
 *	way meant for thin, costly and unreliable links: every node keeps
 *	deciding from local state while Redis or the link is down, and
 *	catches up when it returns.
 *
 *	Reputation. For the client IP, its /24 (IPv4) or /64 (IPv6), the
 *	envelope-sender domain, the From domain and the URL domains (domains
 *	reduced to their registrable part with libpsl) Redis holds
 *	exponentially decaying spam and ham counts, one small hash per entity:
 *
 *	  <prefix>r:{<kind>:<value>}  fields s (spam), h (ham), t (unix s)
 *	  kinds: ip, net, mf (MAIL FROM domain), fd (From domain), ud (URL)
 *
 *	s and h are the counts as of time t; a reader decays them to "now"
 *	with the configured half-life. Writes run a small Lua script that
 *	decays and increments atomically (so no node's increment is lost to
 *	a read-modify-write race) and refreshes the key's TTL. The braces
 *	are Redis Cluster hash tags: every key is single-entity, so routing by
 *	slot needs no multi-key command.
 *
 *	Decide locally. No message waits on a remote link: reputation is
 *	served from a local cache of counts (rep_cache_entries, direct-mapped)
 *	that background readers refresh, the configured redis_replica (usually
 *	local) first. An entry younger than rep_cache_time is fresh; an older
 *	one is still served (stale-while-revalidate) for up to
 *	REP_STALE_MAX_MS while a refresh is queued; an entity not in the
 *	cache scores nothing this time and its read is queued, so the next
 *	message has it. The node's own verdicts are folded into its cached
 *	counts at once. A message waits for a read (at most rep_read_wait,
 *	never past its deadline) only when the measured round trip of the
 *	link that serves it fits that budget: a loopback Redis or a local
 *	replica still gives every message fresh counts. The IP and its
 *	network are read at CONNECT, so the round trip overlaps the SMTP
 *	dialogue.
 *
 *	Cheap writes. Verdicts are aggregated per entity in the write queue
 *	for rep_write_window; the writer then freezes a batch (up to
 *	REP_WRITE_BATCH_MAX entities, one script call: the entity keys as
 *	KEYS, increments as runs of "spam:ham" ARGV) under a batch id (a random node
 *	id and a sequence number). The script applies a batch id once
 *	(SET NX EX on <prefix>b:{tag}:<id>), and a batch is re-sent with the
 *	same id until confirmed, so a reply lost on the link never counts
 *	twice. With Redis Cluster a call carries one hash slot's keys.
 *
 *	Block and allow lists. `sift block add|del` appends an operation,
 *	signed with the publisher's Ed25519 key (rep_sign.c), to a Redis
 *	stream, <prefix>{bl}:log, and in the same MULTI updates a snapshot
 *	hash <prefix>{bl}:state (target -> signed entry). A sync thread on
 *	every node XREADs the stream (blocking, so a new entry arrives within
 *	milliseconds; block_sync_batch entries at a time) and applies what is
 *	signed by a trusted key, and not too broad for it, to a local LMDB
 *	mirror together with the stream id of the last entry read, in one
 *	transaction: lookups are local, survive outages, and a restart or
 *	link cut resumes exactly after that entry. Per target the operation
 *	with the newest stamp wins (deletions leave tombstones), so replayed
 *	old operations change nothing. A node too far behind a trimmed
 *	stream, or a new node, loads the snapshot in HSCAN chunks, recording
 *	the cursor with each, and then follows the stream.
 *
 *	Failure behaviour. Every Redis connection has a connect timeout
 *	(redis_connect_timeout: connect and the AUTH / SELECT / SCRIPT LOAD
 *	handshake) and a command timeout (redis_command_timeout: background
 *	writes and reads); after a failure it waits with exponential
 *	backoff before the next attempt, and after redis_breaker_failures
 *	consecutive failures the circuit opens: no attempt at all for
 *	redis_breaker_time, so a dead link costs nothing per message. Error
 *	replies LOADING, READONLY (a demoted primary) and MASTERDOWN count as
 *	failures of that server and trigger a reconnect (and, with Sentinel,
 *	a fresh discovery of the primary), so Sift never needs a restart.
 *	Unwritten verdicts stay queued (rep_queue_max entities; the oldest is
 *	dropped and counted when full) and are replayed when Redis returns.
 *
 *	Security and topology (rep_link.c). AUTH with a Redis 6 ACL user
 *	(redis_username) and a password read from a file no one else may read
 *	(redis_password_file); the Sentinels get their own credentials. No
 *	password appears in an error, a diagnostic or the log. TLS is left to
 *	a tunnel (stunnel4; Debian 12's hiredis has none): redis_route maps
 *	each address about to be dialled, including those Sentinel or the
 *	cluster announce, to the tunnel's local end. With redis_cluster the
 *	link routes each command by its key's hash slot, keeps a connection
 *	per primary and follows MOVED and ASK.
 * THREADS
 *	The evidence hooks are called from any worker thread; the shared
 *	state is immutable except for the runtime (queues, counters), which
 *	is internally synchronised. The runtime owns its threads: readers
 *	(rep_reader_threads), a writer and the mirror sync, each with its own
 *	connections (a rep_link_t is used by one thread only). No lock is
 *	held across a network wait. The pure helpers below are reentrant. A
 *	rep_mirror_t is safe to share between threads (LMDB transactions) and
 *	between processes. The threads started by this module ("sift-rep-read",
 *	"sift-rep-write", "sift-rep-sync") block the daemon's signals (SIGHUP,
 *	SIGTERM, SIGINT, SIGUSR1); they, the Redis links and the mirror's LMDB
 *	environment are brought up by the evidence start() hook, after fork
 *	and privilege drop, never by load().
 */
#ifndef SIFT_REP_H
#define SIFT_REP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "diag.h"
#include "evidence.h"

extern const evidence_ops_t rep_evidence;

/* `sift block add|del|list|export|sync|keygen` (rep_cli.c). */
int rep_cmd_block(cli_ctx_t *ctx, int argc, char **argv);

/* ------------------------------------------------------------ configuration (rep.c) */

enum { REP_MAX_SENTINELS = 16, REP_MAX_READERS = 8 };
enum {
	REP_MAX_ROUTES = 16,        /* redis_route lines */
	REP_MAX_CLUSTER_SEEDS = 16, /* redis_cluster lines */
	REP_ADDR_MAX_BYTES = 300,   /* "host:port" */
	REP_SECRET_MAX_BYTES = 512, /* a user name or password */
};

/* ---- block list trust and sync settings (read by rep_sign.c) */
enum {
	REP_MAX_TRUSTED = 64,       /* block_trusted_key lines */
	REP_KEYNAME_MAX_BYTES = 32, /* a publisher's name: [A-Za-z0-9._-], at most 31 */
	REP_PUBKEY_BYTES = 32,      /* Ed25519 */
	REP_SIG_BYTES = 64,
};

/* A publisher whose entries this node accepts. */
typedef struct rep_pubkey {
	char name[REP_KEYNAME_MAX_BYTES];
	uint8_t pk[REP_PUBKEY_BYTES];
	bool broad; /* may publish entries broader than block_min_prefix4/6 or public suffixes */
} rep_pubkey_t;

typedef struct rep_bl_conf {
	const char *signing_key; /* block_signing_key: the publisher's secret key file, or NULL */
	rep_pubkey_t trusted[REP_MAX_TRUSTED]; /* block_trusted_key, repeatable */
	size_t n_trusted;
	long min_prefix4; /* block_min_prefix4: shorter IPv4 prefixes are too broad */
	long min_prefix6; /* block_min_prefix6 */
	long batch;       /* block_sync_batch: entries per round trip */
	long tombstone_s; /* block_tombstone_time: how long a deletion is remembered */
} rep_bl_conf_t;

/* Reads the block_* trust and sync keys; errors as file:line. 0 or -1. */
int rep_bl_config_read(conf_t *c, rep_bl_conf_t *bc, diag_t *d);
/* A short text that changes whenever the set of accepted entries may change. */
void rep_bl_conf_fingerprint(const rep_bl_conf_t *bc, char *buf, size_t size);

/*
 * Every key the module reads, with defaults applied. Strings point into
 * the conf_t (copy them to keep them longer).
 */
typedef struct rep_config {
	const char *server;                       /* redis_server: host:port or unix:/path */
	const char *replica;                      /* redis_replica: a (local) replica for reads */
	const char *sentinels[REP_MAX_SENTINELS]; /* redis_sentinel, repeatable */
	size_t n_sentinels;
	const char *master_name; /* redis_sentinel_master */
	const char *password;    /* redis_password */
	const char *prefix;      /* redis_prefix, default "sift:" */
	long db;                 /* redis_db */
	long connect_timeout_ms; /* redis_connect_timeout (or the deprecated redis_timeout) */
	long command_timeout_ms; /* redis_command_timeout (or the deprecated redis_timeout) */
	long read_wait_ms;       /* rep_read_wait: the most a message waits for reads */
	long write_window_ms;    /* rep_write_window: verdicts aggregated this long */
	long breaker_failures;   /* redis_breaker_failures */
	long breaker_open_ms;    /* redis_breaker_time */
	long backoff_max_ms;     /* redis_backoff_max */
	double min_obs;          /* rep_min_observations */
	double max_score;        /* rep_max_score */
	double learn_spam;   /* rep_learn_spam_score: learn spam at or above (rep hits excluded) */
	double learn_ham;    /* rep_learn_ham_score: learn ham below */
	double block_score;  /* rep_block_score */
	double allow_score;  /* rep_allow_score */
	long half_life_s;    /* rep_half_life */
	long ttl_s;          /* rep_ttl: idle entities expire */
	long queue_max;      /* rep_queue_max: entities buffered for writing */
	long url_max;        /* rep_url_domains_max */
	long cache_ms;       /* rep_cache_time: counts younger are fresh, 0 = always refresh */
	long cache_entries;  /* rep_cache_entries */
	long reader_threads; /* rep_reader_threads */
	char mirror_dir[1024]; /* block_mirror, default <state_dir>/blockmirror */
	bool mirror_explicit;  /* block_mirror was configured */
	long stream_max;       /* block_stream_max: entries kept in the stream */
	long sync_wait_ms;     /* block_sync_wait: one blocking XREAD */
	rep_bl_conf_t bl;      /* block list trust and sync (rep_sign.c) */
	/*
	 * The link's credentials and topology. Kept in the struct (not in the
	 * conf_t) so a copy of the struct owns them; password above points to
	 * password_buf when it came from redis_password_file.
	 */
	char username[REP_SECRET_MAX_BYTES];                 /* redis_username (Redis 6 ACL) */
	char password_buf[REP_SECRET_MAX_BYTES];             /* redis_password_file's first line */
	char sentinel_username[REP_SECRET_MAX_BYTES];        /* redis_sentinel_username */
	char sentinel_password[REP_SECRET_MAX_BYTES];        /* redis_sentinel_password_file */
	char route_from[REP_MAX_ROUTES][REP_ADDR_MAX_BYTES]; /* redis_route: remote address */
	char route_to[REP_MAX_ROUTES][REP_ADDR_MAX_BYTES];   /* the local tunnel end */
	size_t n_routes;
	char cluster[REP_MAX_CLUSTER_SEEDS][REP_ADDR_MAX_BYTES]; /* redis_cluster seeds */
	size_t n_cluster;
} rep_config_t;

int rep_config_read(conf_t *c, const char *state_dir, rep_config_t *rc, diag_t *d);
bool rep_config_has_redis(const rep_config_t *rc);

/* ------------------------------------------------------------ entities and keys (rep_key.c) */

enum {
	REP_KEY_MAX_BYTES = 320, /* prefix + kind + a 253-byte domain */
	REP_DOMAIN_MAX_BYTES = 254,
	REP_REASON_MAX_BYTES = 200,
	REP_BY_MAX_BYTES = 64,
	REP_ID_MAX_BYTES = 48, /* a stream id "ms-seq" */
};

typedef enum {
	REP_ENT_IP,       /* the client address */
	REP_ENT_NET,      /* its /24 or /64 */
	REP_ENT_MAILFROM, /* envelope-sender domain */
	REP_ENT_FROM,     /* From: header domain */
	REP_ENT_URL,      /* a URL's domain */
	REP_ENT_N
} rep_ent_t;

/* "ip", "net", "mf", "fd", "ud": the kind part of the key. */
const char *rep_ent_tag(rep_ent_t kind);
/* "IP", "NET", "MAILFROM", "FROM", "URL": the part of the hit names. */
const char *rep_ent_label(rep_ent_t kind);
/* Writes "<prefix>r:{<tag>:<value>}"; returns its length, or -1 if it does not fit. */
int rep_key(char *buf, size_t size, const char *prefix, rep_ent_t kind, const char *value);

/* An IP address in binary; family 4 or 6. */
typedef struct rep_addr {
	int family;
	uint8_t a[16];
} rep_addr_t;

int rep_addr_parse(const char *s, rep_addr_t *out); /* 0 or -1; accepts "IPv6:" and [..] */
/* The reputation network of an address as text: "192.0.2.0/24", "2001:db8:1:2::/64". */
int rep_addr_net(const rep_addr_t *a, char *buf, size_t size);
/* Canonical text of an address ("::ffff:1.2.3.4" is kept as IPv6). */
int rep_addr_format(const rep_addr_t *a, char *buf, size_t size);

/* What a block/allow entry names: one address, a network, or a domain. */
typedef enum { REP_T_IP, REP_T_CIDR, REP_T_DOMAIN } rep_target_kind_t;
typedef struct rep_target {
	rep_target_kind_t kind;
	rep_addr_t addr;                   /* network address with host bits cleared for CIDR */
	unsigned plen;                     /* 32 or 128 for REP_T_IP */
	char domain[REP_DOMAIN_MAX_BYTES]; /* lower case, no trailing dot */
} rep_target_t;

/*
 * Parses "192.0.2.1", "192.0.2.0/24", "2001:db8::/32" or "Example.COM."
 * (a domain covers its subdomains). Host bits of a CIDR are cleared;
 * "1.2.3.4/32" becomes an IP. Returns 0, or -1 with a reason in err.
 */
int rep_target_parse(const char *s, rep_target_t *t, char *err, size_t errsize);
/* Canonical text, the stream's and the mirror's name for the entry. */
int rep_target_format(const rep_target_t *t, char *buf, size_t size);
bool rep_cidr_contains(const rep_target_t *net, const rep_addr_t *a);
/* True when domain equals entry or is a subdomain of it (label-wise). */
bool rep_domain_covers(const char *entry, const char *domain);
/*
 * Lower-cases and checks a host name into buf (LDH labels, '_' allowed,
 * no empty label); returns 0 or -1.
 */
int rep_domain_norm(const char *s, char *buf, size_t size);
/* The domain part of an address ("<a@B.org>" -> "b.org"), normalised; -1 if none. */
int rep_addr_domain(const char *mailbox, char *buf, size_t size);

/* ------------------------------------------------------------ decay maths (rep_key.c) */

/* Counts as of time t (unix seconds). */
typedef struct rep_counts {
	double spam, ham;
	int64_t t;
} rep_counts_t;

/* 2^(-age/half_life); 1 for age <= 0. */
double rep_decay_factor(double age_s, double half_life_s);
/* c decayed to now (a count from the future, clock skew, is kept as is). */
void rep_counts_decay(rep_counts_t *c, int64_t now, double half_life_s);
/* Adds an observation made at time `at` to c (whichever of the two is newer wins the clock). */
void rep_counts_add(rep_counts_t *c, int64_t at, double spam, double ham, double half_life_s);

/*
 * The score of an entity: 0 below min_obs observations (spam + ham) or
 * when the evidence is mixed (spam ratio between 0.35 and 0.65);
 * otherwise max_score * (2p - 1) * n / (n + min_obs) with p the spam
 * ratio, so it grows with both the ratio and the number of observations
 * and is negative for ham.
 */
double rep_score(double spam, double ham, double min_obs, double max_score);

/* "30s", "15m", "12h", "7d", "2w", a bare number of seconds; "never"/"0" -> 0. */
int rep_parse_duration(const char *s, int64_t *out_s);

/* ------------------------------------------------------------ write queue (rep_queue.c) */

enum {
	REP_WRITE_BATCH_MAX = 256, /* entities in one frozen batch (one script call) */
	REP_BATCH_ID_MAX_BYTES = 48,
	REP_STALE_MAX_MS = 3600000, /* a cached count is served this long past rep_cache_time */
};

/* One observation (a verdict on one entity), or a saved update (rep_mirror_*_pending). */
typedef struct rep_witem {
	uint64_t seq; /* unused by the queue; kept for the saved form */
	int64_t t;    /* when the verdict was given (unix s) */
	uint8_t spam, ham;
	char key[REP_KEY_MAX_BYTES];
} rep_witem_t;

/* One entity's aggregated update, as the writer sends it. */
typedef struct rep_wentry {
	char key[REP_KEY_MAX_BYTES];
	rep_counts_t c; /* increments as of c.t (decayed to the newest observation) */
	uint32_t pushes;
} rep_wentry_t;

/*
 * The bounded queue of updates, aggregated per entity: a push for an
 * entity that is queued and not yet in flight adds to its counts, so a
 * window of verdicts on one sender costs one increment. The writer takes a
 * batch with rep_wqueue_batch(): the entities whose first update is at
 * least window_ms old (all, when forced), frozen under a batch sequence
 * number; until rep_wqueue_confirm() the same batch (same sequence, same
 * counts) is handed out again, and pushes for its entities start new open
 * entries. At most max_entities entities (open and in flight); when full,
 * the oldest open entity is dropped and its pushes counted in
 * rep_wqueue_dropped(). push() never blocks on the network and never
 * allocates. Internally synchronised.
 */
typedef struct rep_wqueue rep_wqueue_t;
rep_wqueue_t *rep_wqueue_new(size_t max_entities, double half_life_s);
void rep_wqueue_free(rep_wqueue_t *q);
/* Returns false when updates had to be dropped to make room (or this one). */
bool rep_wqueue_push(rep_wqueue_t *q, const rep_witem_t *it);
/*
 * The batch to send: the one in flight if any, else a new one when due.
 * Copies up to max entries into out; *seq gets the batch's sequence
 * number (stable across calls until confirmed), *at its frozen time (unix
 * s). Returns the number of entities, 0 when nothing is due.
 */
size_t rep_wqueue_batch(rep_wqueue_t *q, long window_ms, bool force, rep_wentry_t *out, size_t max,
                        uint64_t *seq, int64_t *at);
/* Redis confirmed batch seq: its entities leave the queue. */
void rep_wqueue_confirm(rep_wqueue_t *q, uint64_t seq);
/* Milliseconds until a batch is due (0 now, -1 when the queue is empty). */
long rep_wqueue_due_ms(rep_wqueue_t *q, long window_ms);
/* This node's updates of key still queued (open and in flight); false if none. */
bool rep_wqueue_pending(rep_wqueue_t *q, const char *key, rep_counts_t *out);
/* Every queued update as observations (for rep_mirror_save_pending); malloc'd. */
size_t rep_wqueue_dump(rep_wqueue_t *q, rep_witem_t **out);
size_t rep_wqueue_len(rep_wqueue_t *q); /* entities queued */
uint64_t rep_wqueue_dropped(rep_wqueue_t *q);
/*
 * Waits up to timeout_ms, until woken, or until an empty queue receives an
 * update; true if updates are queued.
 */
bool rep_wqueue_wait(rep_wqueue_t *q, long timeout_ms);
void rep_wqueue_wake(rep_wqueue_t *q);

/* ------------------------------------------------------------ Redis link (rep_link.c) */

struct redisContext;
struct redisReply;

typedef struct rep_link_conf {
	const char *server;           /* "host:port", "[v6]:port" or "unix:/path"; or NULL */
	const char *const *sentinels; /* "host:port" each, used when n_sentinels > 0 */
	size_t n_sentinels;
	const char *master_name; /* the Sentinel master name */
	const char *password;    /* AUTH, NULL for none */
	long db;
	long connect_timeout_ms; /* connect and the AUTH / SELECT / ROLE / SCRIPT LOAD handshake */
	long command_timeout_ms; /* every later command */
	/*
	 * Credentials and topology. AUTH is "AUTH username password" when a
	 * username is set (Redis 6 ACL). The Sentinels get their own
	 * credentials, sent before SENTINEL get-master-addr-by-name. Every
	 * address the link is about to connect to (the server, a Sentinel, the
	 * primary a Sentinel names, a cluster node) equal to route_from[i] is
	 * replaced by route_to[i]: the local end of a TLS tunnel (stunnel) to
	 * it. With n_cluster > 0 the link speaks to a Redis Cluster whose seed
	 * nodes these are (server and sentinels are then unused).
	 */
	const char *username;
	const char *sentinel_username, *sentinel_password;
	const char *route_from[REP_MAX_ROUTES], *route_to[REP_MAX_ROUTES];
	size_t n_routes;
	const char *cluster[REP_MAX_CLUSTER_SEEDS];
	size_t n_cluster;
	long extra_read_ms; /* added to the command timeout (blocking XREAD) */
	/*
	 * A pipeline's replies must all be in within command_timeout_ms +
	 * extra_read_ms, and no reply may take more than reply_max_bytes off
	 * the wire (0: 1 MB); else the link fails.
	 */
	size_t reply_max_bytes;
	long backoff_min_ms, backoff_max_ms;
	unsigned breaker_failures; /* consecutive failures that open the circuit */
	long breaker_open_ms;
	bool want_primary;  /* check ROLE is master after connecting */
	const char *script; /* Lua source to SCRIPT LOAD on connect, or NULL */
} rep_link_conf_t;

typedef enum { REP_LINK_UP, REP_LINK_DOWN, REP_LINK_OPEN } rep_link_state_t;

typedef struct rep_link rep_link_t;

rep_link_t *rep_link_new(const rep_link_conf_t *c); /* copies everything */
void rep_link_free(rep_link_t *l);
/*
 * The connected context, connecting first if needed and allowed (not in
 * backoff, circuit closed). NULL when Redis is not available right now;
 * rep_link_error() says why. Never waits longer than the timeouts.
 */
struct redisContext *rep_link_get(rep_link_t *l);
/*
 * Cuts every connection of the link (shutdown, so a read blocked on a
 * stalled link returns at once) and refuses new ones: for stopping the
 * thread that owns the link. The one function callable from another
 * thread while the owner uses the link.
 */
void rep_link_interrupt(rep_link_t *l);
/* True once rep_link_interrupt() was called (any thread). */
bool rep_link_interrupted(rep_link_t *l);
/* Records a failure: closes the connection, schedules the next attempt. */
void rep_link_fail(rep_link_t *l, const char *why);
/*
 * Sends n commands (argv form) in one pipeline and reads the replies into
 * replies[] (the caller frees them with rep_link_free_replies()). Returns
 * the number of replies read: n on success; fewer after a transport
 * failure or a LOADING / READONLY / MASTERDOWN / NOSCRIPT reply, when the
 * link is failed and reconnects later (the first ones did run); -1 when
 * nothing was sent (Redis not available). Other error replies are
 * returned to the caller as they are.
 */
typedef struct rep_cmd {
	int argc;
	const char *argv[16];
	size_t len[16];
	/*
	 * Which argument is the key, for Redis Cluster routing: 0 (what
	 * rep_cmd_init sets) derives it from the command: argv[1], EVAL's and
	 * EVALSHA's KEYS[1], XREAD's first stream; none for MULTI and EXEC,
	 * which go to the node of the commands between them. A positive value
	 * names the argument, -1 says the command has no key.
	 */
	int key;
	/* A longer command: when set, argc arguments are taken from here instead. */
	const char **xargv;
	const size_t *xlen;
} rep_cmd_t;
void rep_cmd_init(rep_cmd_t *c, const char *first);
void rep_cmd_arg(rep_cmd_t *c, const char *s);
void rep_cmd_argn(rep_cmd_t *c, const char *s, size_t n);
int rep_link_pipeline(rep_link_t *l, size_t n, const rep_cmd_t *cmds, struct redisReply **replies);
void rep_link_free_replies(size_t n, struct redisReply **replies);
/* True once after each new connection (a caller that must re-check state on reconnect). */
bool rep_link_take_fresh(rep_link_t *l);
rep_link_state_t rep_link_state(rep_link_t *l);
const char *rep_link_error(rep_link_t *l); /* the last failure, "" if none */
const char *rep_link_addr(rep_link_t *l);  /* "host:port" of the current server, or "" */
const char *rep_link_script_sha(rep_link_t *l);
/* Counters: connection attempts, failures, times the circuit opened. */
typedef struct rep_link_stats {
	uint64_t attempts, failures, opened;
} rep_link_stats_t;
rep_link_stats_t rep_link_stats(rep_link_t *l);
/*
 * True when the link speaks to a Redis Cluster: each command of a
 * pipeline goes to the node serving its key's slot (MOVED and ASK are
 * followed), so a MULTI must stay within one hash slot.
 */
bool rep_link_is_cluster(rep_link_t *l);
/* The Redis Cluster hash slot of a key (CRC16 of its {hash tag}, mod 16384). */
unsigned rep_key_slot(const char *key, size_t len);
/*
 * The smoothed round trip of this link's own commands (the handshake and
 * every pipeline: time to the first reply), -1 before any. Safe to call
 * from any thread.
 */
long rep_link_rtt_ms(rep_link_t *l);
/* The link settings for the primary (replica false) or the configured replica. */
void rep_config_link(const rep_config_t *rc, bool replica, rep_link_conf_t *out);

/* ------------------------------------------------------------ block entries and mirror */

typedef struct rep_entry {
	rep_target_t target;
	bool allow;     /* an allowlist entry; else a blocklist entry */
	int64_t added;  /* unix s */
	int64_t expire; /* unix s, 0 = never */
	char reason[REP_REASON_MAX_BYTES];
	char by[REP_BY_MAX_BYTES]; /* the publisher's key name (local entries: the host) */
	uint64_t stamp; /* the publisher's clock in unix microseconds: the newest op wins */
	bool local;     /* added without Redis: never replaced by a resynchronisation */
} rep_entry_t;

/* One operation of the stream: add (or replace) or delete an entry. */
typedef struct rep_op {
	char id[REP_ID_MAX_BYTES]; /* the stream id, "" for local operations */
	bool del;
	bool skip; /* a rejected stream entry: only moves the position past it */
	rep_entry_t e;
} rep_op_t;

/* Compares two stream ids numerically ("0-0" < "1-0" < "1-1"). */
int rep_id_cmp(const char *a, const char *b);
/*
 * An entry's attributes as text, and back: "block|expire|added|by|stamp|reason"
 * (the mirror's record; what travels through Redis is rep_sop_encode()'s).
 */
int rep_entry_encode(const rep_entry_t *e, char *buf, size_t size);
int rep_entry_decode(const char *target, const char *v, rep_entry_t *e);
bool rep_entry_expired(const rep_entry_t *e, int64_t now);

/*
 * Writes entries in rbldnsd "combined" dataset format: an ip4set (blocked
 * addresses and networks, allowed ones as "!" exclusions), an ip6trie and
 * a dnset (each blocked domain and "*." for its subdomains). Expired
 * entries are skipped. Returns 0 or -1 (write error).
 */
int rep_export_rbldnsd(FILE *fp, const rep_entry_t *entries, size_t n, int64_t now);

typedef struct rep_mirror rep_mirror_t;
/*
 * Opens (creating) the LMDB environment in directory dir. NULL + diag on
 * failure. A mirror written by a version without signed entries is
 * converted: its shared entries are dropped (they were never verified)
 * and its position reset, so the next sync loads the list afresh; local
 * entries (no Redis) are kept.
 */
rep_mirror_t *rep_mirror_open(const char *dir, diag_t *d);
void rep_mirror_close(rep_mirror_t *m);
/* How long a deleted shared entry is remembered (replay protection); default 30 days. */
void rep_mirror_set_tombstone_time(rep_mirror_t *m, long seconds);
/*
 * Applies stream operations in order inside one transaction, skipping
 * any whose id is not newer than the last applied one, and records the
 * last id. Operations with an empty id are local (no Redis). An
 * operation changes a target only if its stamp is newer than that of the
 * last operation applied to the target; a shared deletion leaves a
 * tombstone with its stamp, so a replayed older "add" stays ignored.
 * Returns the number applied, or -1.
 */
int rep_mirror_apply(rep_mirror_t *m, const rep_op_t *ops, size_t n);

/*
 * The chunked, resumable snapshot load. begin() records the stream id to
 * follow afterwards and a new generation; each chunk() stores verified
 * entries with that generation together with the scan cursor reached, in
 * one transaction; the chunk whose next cursor is "0" completes the
 * load: shared entries of older generations go, the position becomes the
 * base id. Until then the old entries keep answering lookups.
 */
typedef struct rep_load {
	char base[REP_ID_MAX_BYTES];
	char cursor[32];
	uint32_t gen;
	char server[48]; /* run id of the Redis process the cursor belongs to; "" unknown */
} rep_load_t;
int rep_mirror_load_begin(rep_mirror_t *m, const char *base_id);
/*
 * A scan cursor means something only to the Redis process that returned
 * it (each seeds its hash function at start): resumed on another (Redis
 * restarted, a failover, the replica instead of the primary) the scan skips
 * entries, which the end of the load would then drop. Records the run id of
 * the server answering now ("" when it will not say) and, when the scan's
 * cursor came from another one, starts the scan again (cursor 0, same
 * generation: what is stored stays). 1 restarted, 0 not, -1 error.
 */
int rep_mirror_load_server(rep_mirror_t *m, const char *run_id);
/* 1 and *out while a load is in progress, 0 if none, -1 on error. */
int rep_mirror_load_state(rep_mirror_t *m, rep_load_t *out);
/* Returns the number of entries stored (older ones than the mirror's are kept out), or -1. */
int rep_mirror_load_chunk(rep_mirror_t *m, const rep_entry_t *e, size_t n, const char *next_cursor);
/*
 * Compares the trust settings' fingerprint with the one the mirror was
 * built under; when it differs (or is new), records it and resets the
 * position so the next sync reloads everything. 1 changed, 0 same, -1 error.
 */
int rep_mirror_trust_changed(rep_mirror_t *m, const char *fingerprint);
/* Sets the last applied id without touching entries (Redis lost its data). */
int rep_mirror_set_last_id(rep_mirror_t *m, const char *id);
/* The id of the last applied stream entry, "0-0" if none. */
int rep_mirror_last_id(rep_mirror_t *m, char *buf, size_t size);
/*
 * The most specific live entry covering an address (the longest prefix)
 * or a domain (the longest suffix). 1 found, 0 none, -1 error.
 */
int rep_mirror_lookup_ip(rep_mirror_t *m, const rep_addr_t *a, int64_t now, rep_entry_t *out);
int rep_mirror_lookup_domain(rep_mirror_t *m, const char *domain, int64_t now, rep_entry_t *out);
/* Every entry (expired ones too, for listing); malloc'd array in *out. */
int rep_mirror_list(rep_mirror_t *m, rep_entry_t **out, size_t *n);
/* Drops expired entries and tombstones older than the tombstone time; returns how many. */
int rep_mirror_purge(rep_mirror_t *m, int64_t now);
/*
 * Reputation updates Redis never confirmed, kept across a restart: saved
 * at shutdown, taken back (and removed) at start. The mirror is the one
 * local store the module has, hence their home.
 */
int rep_mirror_save_pending(rep_mirror_t *m, const rep_witem_t *items, size_t n);
int rep_mirror_take_pending(rep_mirror_t *m, rep_witem_t **out, size_t *n);

/* ------------------------------------------------------------ stream (rep_sync.c) */

struct rep_signer; /* rep_sign.c, below */

/* The keys of the block list: "<prefix>{bl}:log" and "<prefix>{bl}:state". */
void rep_bl_keys(const char *prefix, char *log_key, char *state_key, size_t size);
/*
 * Publishes one operation signed by s (XADD of one field "o" holding
 * rep_sop_encode()'s bytes, + snapshot update, in MULTI); id_out gets the
 * stream id. op->e.stamp and op->e.by are set by the caller.
 */
int rep_bl_publish(rep_link_t *l, const char *prefix, const rep_op_t *op,
                   const struct rep_signer *s, long stream_max, char *id_out, size_t id_size);
/*
 * One step of mirror synchronisation. While a snapshot load is in
 * progress (a new mirror, one behind a trimmed stream, or new trust
 * settings), one HSCAN chunk of bc->batch entries; otherwise one XREAD
 * of up to bc->batch stream entries after the last applied id, waiting
 * up to block_ms for new ones (0: do not wait), or on a new connection
 * the same read without waiting, through a script that blanks values too
 * large to be signed entries (see rep_sync.c). Only entries signed by a
 * trusted key, and not too broad for it, are applied; the others are
 * logged (rate-limited) and skipped. Returns the number of entries read
 * and handled (applied or ignored), or -1 when Redis was not available.
 */
int rep_bl_sync(rep_link_t *l, rep_mirror_t *m, const char *prefix, const rep_bl_conf_t *bc,
                long block_ms);

/* ------------------------------------------------------------ signed operations (rep_sign.c) */

/*
 * A block-list operation travels as 64 signature bytes followed by the
 * payload "1|a|b|target|expire|stamp|name|reason" (op a/d, list b/a,
 * expire unix s or 0, stamp unix us, the publisher's key name; reason
 * last, it may hold '|'). The Ed25519 signature covers a context string
 * and the whole payload: everything the operation carries.
 */
enum { REP_SOP_MAX_BYTES = REP_SIG_BYTES + REP_DOMAIN_MAX_BYTES + REP_REASON_MAX_BYTES + 96 };

/* A publisher's secret key, loaded from block_signing_key. Wipe it after use. */
typedef struct rep_signer {
	char name[REP_KEYNAME_MAX_BYTES];
	uint8_t sk[64];
} rep_signer_t;

typedef enum {
	REP_SOP_OK,
	REP_SOP_UNSIGNED,    /* no signed operation in the entry at all */
	REP_SOP_MALFORMED,   /* cannot be parsed */
	REP_SOP_UNKNOWN_KEY, /* the publisher's name is not among the trusted keys */
	REP_SOP_BAD_SIG,     /* the signature does not verify with the named key */
	REP_SOP_TOO_BROAD,   /* a prefix or public suffix the key may not publish */
} rep_sop_status_t;

const char *rep_sop_status_text(rep_sop_status_t st);
/* Writes the signed operation into buf; returns its length, or -1. Reentrant. */
int rep_sop_encode(const rep_op_t *op, const rep_signer_t *s, char *buf, size_t size);
/*
 * Parses and checks an encoded operation against the trusted keys in bc;
 * on REP_SOP_OK *op holds it (id left empty). For other results op->e
 * holds what could be parsed (the target, for logging). Reentrant.
 */
rep_sop_status_t rep_sop_decode(const void *buf, size_t len, const rep_bl_conf_t *bc, rep_op_t *op);
/* True if t is broader than block_min_prefix4/6 or a public suffix ("com", "co.uk"). */
bool rep_target_too_broad(const rep_target_t *t, const rep_bl_conf_t *bc);
/*
 * Creates a new key file at path (mode 0600; refuses to overwrite) for
 * the publisher `name`, and writes the matching configuration line
 * "block_trusted_key = NAME BASE64" into line. 0, or -1 with err.
 */
int rep_sign_keygen(const char *path, const char *name, char *line, size_t size, char *err,
                    size_t errsize);
/* Loads a key file (which must not be accessible to others). 0, or -1 with err. */
int rep_signer_load(const char *path, rep_signer_t *s, char *err, size_t errsize);
void rep_signer_wipe(rep_signer_t *s);

/* ------------------------------------------------------------ reputation I/O (rep_io.c) */

/* The Lua script that applies one batch of increments, once per batch id. */
extern const char rep_incr_script[];
/* What the writer needs to build a batch's calls. */
typedef struct rep_wconf {
	const char *prefix;  /* redis_prefix, for the batch keys */
	const char *node_id; /* random per run: batch ids are "<node_id>.<seq>" */
	double half_life_s;
	long ttl_s;
	long window_ms; /* rep_write_window */
	bool force;     /* send what is queued without waiting for the window */
} rep_wconf_t;
/*
 * Sends the queue's current batch (see rep_wqueue_batch) and confirms it
 * when every call was answered. Returns the number of entities confirmed,
 * 0 when nothing was due, -1 when Redis was not available or did not
 * answer (the batch stays frozen and is re-sent with the same id).
 * *sent_bytes (if not NULL) gets the request bytes put on the wire.
 */
int rep_write_batch(rep_link_t *l, rep_wqueue_t *q, const rep_wconf_t *wc, size_t *sent_bytes);
/*
 * Reads n counter hashes in one pipeline; found[i] false for absent keys,
 * and for a key of another type or with counts that are no finite number
 * (one such key costs only its own entity). -1 on failure.
 */
int rep_read_counts(rep_link_t *l, size_t n, const char *const *keys, rep_counts_t *out,
                    bool *found);

#endif
