/*
 * NAME
 *	evidence - the interface every source of evidence implements
 * DESCRIPTION
 *	The pipeline (scan.c) knows the sources of evidence only through this
 *	table of operations, so a new source is one file and one line in
 *	scan.c's list, and none of them knows libmilter or each other.
 *
 *	Lifetimes. load() builds a module's shared state for one generation
 *	of the configuration (start-up, then each reload): it reads keys,
 *	compiles, checks files, and may run as root before the daemon forks.
 *	It receives the previous generation's state so long-lived resources
 *	(an LMDB environment, which LMDB allows once per process; a Redis
 *	link; a DNS cache) are carried over rather than reopened. A module
 *	that is not configured returns its state anyway (with nothing to do)
 *	or NULL; the other hooks are not called with a NULL shared state.
 *
 *	start() then brings up what must not cross a fork() or must belong to
 *	the unprivileged user: threads, connections, LMDB environments. The
 *	daemon calls it after daemonizing and dropping privileges (at start-up)
 *	or right after load() (on reload, where carried-over resources are
 *	already running and are left alone); `sift check` calls it too. It
 *	returns 0, or -1 with errors in d, and the generation is then dropped.
 *	release() must cope with a state whose start() failed or never ran.
 *
 *	Per connection, conn_begin() may start work that overlaps the SMTP
 *	dialogue (DNS lookups of the client address, a Redis read). Per
 *	message, envelope() runs once MAIL FROM and RCPT TO are known, and
 *	score() at end of message adds hits and must return by the deadline
 *	given in the context. verdict() sees the final score and action
 *	(to learn, or to record reputation) and must not block.
 *
 *	score() says how it went (ev_status_t). EV_DEGRADED is ordinary
 *	operation with less evidence: something outside Sift did not answer
 *	(a DNS list timed out or failed, Redis is down or slow) or the input
 *	itself stopped a check (a rule at its regex match, depth or heap
 *	limit: the rule is not applied and is counted). Retrying would not
 *	help, so the verdict stands on the rest and on_error does not apply.
 *	EV_ERROR is an internal error: the source could not judge the message
 *	for a fault on Sift's side (the Bayes store could not be read). The
 *	pipeline names the failed sources in its result and applies on_error
 *	(see scan.h). A source with an error also adds a note saying why.
 *
 *	Version 2 (all optional; a module that leaves them zero works as
 *	before): `after` names the sources whose score() must run before this
 *	one's (DMARC needs SPF and DKIM; the rules' eval tests read the
 *	authentication results), and scan.c runs score() in that order.
 *	msg_state_bytes asks for per-message state: zeroed memory from the
 *	message arena, handed to score() as ctx->state, gone with the message.
 *	score() adds header fields to the delivered message through
 *	ctx->fields (verdict.h); libmilter stays in the glue; and may raise
 *	the message's action whatever its score through ctx->action_floor. EV_F_RAW asks
 *	for the raw message (msg_raw(): header and body byte-exact with CRLF
 *	line ends, up to the size limit) for signature checks. Shared
 *	services (DNS) come in env, see ev_env_t; per-message facts computed
 *	once come with the message (msg_received(): the Received: chain).
 *
 *	metrics() (may be NULL) writes the module's own figures for the
 *	Prometheus endpoint (metrics.h: families and samples) from a scraping
 *	thread, while messages run; it reads only atomics or what it locks
 *	itself, and the module's internals stay private.
 * THREADS
 *	The shared state is used by every worker thread at once and must be
 *	immutable or internally synchronised. Per-connection state belongs to
 *	the connection's thread. A module starts its threads with
 *	ev_thread_start(), so that the signals the daemon handles (SIGHUP,
 *	SIGTERM, SIGINT, SIGUSR1) never reach them: a signal the kernel gave to
 *	such a thread would take its default action and end the process.
 */
#ifndef SIFT_EVIDENCE_H
#define SIFT_EVIDENCE_H

#include <pthread.h>
#include <stdbool.h>

#include "conf.h"
#include "diag.h"
#include "hits.h"
#include "metrics.h"
#include "mime.h"
#include "msg.h"
#include "verdict.h"

/*
 * Shared services: built once per generation by scan.c, lent to every
 * module (take a reference to keep one past load()).
 */
typedef struct ev_env {
	const char *state_dir; /* where the module's files live unless configured */
	bool offline;          /* `sift check`: no background threads needed */
	struct dns *dns;       /* the DNS service (dns.h); NULL outside scan.c */
	/*
	 * The directory relative file names in the configuration (state_dir,
	 * rules, bayes_db, list files...) are taken from; NULL: the current
	 * one. The daemon passes the one it started in, since it moves to "/"
	 * when it detaches and a reload must find the same files.
	 */
	const char *base_dir;
} ev_env_t;

typedef struct ev_conn_info {
	const char *client_ip;   /* text form, NULL if not an IP connection */
	const char *client_name; /* reverse name as the MTA saw it, may be NULL */
} ev_conn_info_t;

typedef struct ev_score_ctx {
	long deadline_ms;    /* absolute, on the CLOCK_MONOTONIC scale */
	bool explain;        /* gather notes for `sift check` */
	bool timing;         /* measure per-rule CPU time (`sift check --timing`) */
	double score_so_far; /* the sum of the hits before this module */
	/* v2 */
	void *state;              /* msg_state_bytes of per-message state, or NULL */
	verdict_fields_t *fields; /* header fields to add or remove at delivery */
	/*
	 * The least action the message gets whatever its score; a source may
	 * raise it (a DMARC p=reject failure), never lower it.
	 */
	verdict_action_t *action_floor;
} ev_score_ctx_t;

typedef enum {
	EV_OK = 0,   /* judged the message (with or without hits) */
	EV_DEGRADED, /* judged on less: an outside service or an input limit */
	EV_ERROR     /* could not judge: an internal error (on_error applies) */
} ev_status_t;

typedef struct evidence_ops {
	const char *name;
	void *(*load)(conf_t *c, void *prev, const ev_env_t *env, diag_t *d);
	int (*start)(void *shared, const ev_env_t *env, diag_t *d); /* may be NULL */
	void (*release)(void *shared);
	void *(*conn_begin)(void *shared, const ev_conn_info_t *ci);
	void (*envelope)(void *shared, void *conn, msg_t *m);
	ev_status_t (*score)(void *shared, void *conn, msg_t *m, const mime_t *mi, hits_t *h,
	                     const ev_score_ctx_t *ctx);
	void (*verdict)(void *shared, void *conn, msg_t *m, const mime_t *mi, const hits_t *h,
	                double score, int action);
	void (*conn_end)(void *shared, void *conn);
	void (*metrics)(void *shared, metrics_out_t *out); /* may be NULL */
	/* v2 */
	const char *const *after; /* NULL-terminated source names that score first, or NULL */
	size_t msg_state_bytes;   /* per-message state for score() (ctx->state) */
	unsigned flags;           /* EV_F_* */
} evidence_ops_t;

enum { EV_F_RAW = 1 /* keep the raw message for this source (msg_raw()) */ };

/* Monotonic milliseconds, the scale of deadline_ms. */
long ev_now_ms(void);

/*
 * Starts fn(arg) in a new thread that blocks SIGHUP, SIGTERM, SIGINT and
 * SIGUSR1 (the daemon's signals; see THREADS above), named name (at most
 * 15 bytes, shown by ps -T and in /proc/PID/task/TID/comm). Returns 0 or
 * pthread_create()'s error. The caller's own signal mask is unchanged.
 */
int ev_thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg);

#endif
