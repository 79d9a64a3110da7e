/*
 * NAME
 *	scan - one configuration generation and the per-message pipeline
 * SYNOPSIS
 *	scan_gen_t *g = scan_gen_load(conf, prev, &env, diag);
 *	scan_gen_start(g, &env, diag);	(after fork and privilege drop)
 *	scan_conn_t *c = scan_conn_begin(g, &conn_info);
 *	  msg_t *m = scan_msg_new(c); ... fill envelope ... scan_envelope(c, m);
 *	  scan_header(c, m, name, value) per field, msg_append_body() per chunk
 *	    (or scan_msg_raw(c, m, data, len) for a whole file);
 *	  scan_result_t *r = scan_score(c, m, &opts);
 *	  scan_verdict_done(c, m, r); msg_free(m);
 *	scan_conn_end(c);
 * DESCRIPTION
 *	A generation holds everything built from one configuration: the core
 *	settings, the verdict policy and each evidence source's shared state.
 *	The daemon keeps the current generation in an atomically swapped,
 *	reference-counted pointer (scan_gen_acquire()); a reload builds a new
 *	generation beside the old one, and connections opened before it
 *	finish on the old one. The same calls run `sift check` and `sift
 *	learn`, so the CLI and the daemon score identically: what happens to
 *	a message before it is scored lives here, not in the callers. Header
 *	fields that claim to be our own verdict (verdict_is_own_header()) are
 *	never scored nor learned, whoever delivers them; the body is cut at
 *	max_message_size (scan_msg_new()) and MIME text at mime_max_text.
 *
 *	The data flows one way: connection -> message -> evidence (rules,
 *	bayes, dnsbl, reputation) -> verdict.
 * THREADS
 *	A generation is shared read-only by all threads. A scan_conn_t and the
 *	messages made from it belong to one thread.
 */
#ifndef SIFT_SCAN_H
#define SIFT_SCAN_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "diag.h"
#include "evidence.h"
#include "hits.h"
#include "mime.h"
#include "msg.h"
#include "verdict.h"

/* Core settings every part of the program reads from one generation. */
typedef struct scan_settings {
	const char *state_dir;
	/*
	 * In libmilter's syntax, checked strictly when read: unix:/abs/path or
	 * local:/abs/path; inet:PORT@HOST or inet6:PORT@HOST with PORT 1-65535
	 * in digits and HOST an IP literal of the family or a host name.
	 * Refused, with file:line and the right form named where there is one:
	 * what libmilter would misread (Postfix's inet:HOST:PORT binds port
	 * HOST's first number on every interface) and a missing host (every
	 * interface: write 0.0.0.0 or :: for that).
	 */
	const char *socket;
	unsigned socket_mode;     /* of a unix socket */
	const char *socket_group; /* of a unix socket; "" keeps the daemon's */
	const char *pid_file;     /* absolute */
	const char *user, *group;
	bool foreground;
	const char *log_sink, *log_facility;
	int log_level;
	uint64_t max_message_bytes;
	/* header kept for scoring: msg_set_header_limits() */
	size_t max_header_fields;
	uint64_t max_header_bytes;
	mime_limits_t mime;
	long deadline_ms; /* per-message budget for network evidence */
	long milter_timeout_ms;
	long stop_timeout_ms;       /* SIGTERM: how long messages in flight may take to finish */
	int log_format;             /* of the per-message line: msglog_format_t (0 kv, 1 json) */
	unsigned log_top_rules;     /* hits named in the per-message line */
	const char *metrics_listen; /* "" off; PORT, HOST:PORT, [IPV6]:PORT (metrics.h) */
} scan_settings_t;

typedef struct scan_gen scan_gen_t;
typedef struct scan_conn scan_conn_t;

/* Evidence sources a generation can run: rules, bayes, rep, auth, dnsbl. */
#define SCAN_MAX_SOURCES 8

/* One source's share of scan_score(): the per-message log line reports it. */
typedef struct scan_timing {
	const char *source; /* static: the source's name */
	double ms;
} scan_timing_t;

typedef struct scan_result {
	double score;
	verdict_action_t action;
	hits_t *hits;         /* sorted, in the message arena */
	const mime_t *mime;   /* the parsed views */
	double elapsed_ms;    /* wall time of scan_score() */
	const char *failed;   /* sources whose score() returned EV_ERROR, "a,b"; NULL if none */
	const char *degraded; /* sources that returned EV_DEGRADED, "a,b"; NULL if none */
	scan_timing_t timings[SCAN_MAX_SOURCES]; /* the sources run, in order */
	size_t n_timings;
	verdict_fields_t fields; /* header fields the sources add or remove (verdict.h) */
} scan_result_t;

typedef struct scan_opts {
	bool explain;
	bool timing;
} scan_opts_t;

/*
 * The order the sources' score() runs in (order[0..n), indexes into
 * mods): list order, except that a source comes after every source its
 * `after` names (evidence.h). Unknown names are ignored; a cycle is
 * broken in list order. n is at most SCAN_MAX_SOURCES. For the tests.
 */
void scan_order_sources(const evidence_ops_t *const *mods, size_t n, size_t *order);

/*
 * Builds a generation: reads every module's keys from c, loads rules and
 * checks files; stores open and threads start in scan_gen_start(). prev (may be NULL) lends
 * long-lived resources. Returns NULL with errors in d (unknown keys included). Takes ownership of
 * c.
 */
scan_gen_t *scan_gen_load(conf_t *c, scan_gen_t *prev, const ev_env_t *env, diag_t *d);
/*
 * Starts what load left for later (threads, connections, LMDB environments;
 * see evidence.h): in the daemon after fork and privilege drop, and after
 * each reload's scan_gen_load(). Resources carried over from the previous
 * generation are running already and are left alone. Returns 0, or -1 with
 * errors in d; the caller then drops the generation with scan_gen_unref().
 */
int scan_gen_start(scan_gen_t *g, const ev_env_t *env, diag_t *d);
/*
 * The pipeline alone, for `sift learn`: the same core settings (message
 * and MIME bounds) and header policy as scan_gen_load() reads, with no
 * evidence source loaded (so learning needs no rules) and keys of other
 * modules left unchecked. Borrows c, which must outlive the generation.
 */
scan_gen_t *scan_gen_load_pipeline(conf_t *c, diag_t *d);
const scan_settings_t *scan_gen_settings(const scan_gen_t *g);
const verdict_policy_t *scan_gen_policy(const scan_gen_t *g);
conf_t *scan_gen_conf(const scan_gen_t *g);
/* The evidence source's shared state by name ("rules", "bayes", ...), or NULL. */
void *scan_gen_module(const scan_gen_t *g, const char *name);
scan_gen_t *scan_gen_ref(scan_gen_t *g);
void scan_gen_unref(scan_gen_t *g);

/* The daemon's current generation (process-wide, the one shared-state pointer). */
/*
 * Takes a reference; drops the old one's. NULL retires the published
 * generation (at shutdown): once the last connection lets go of it, its
 * modules are released, which stops their threads and saves their state.
 */
void scan_gen_publish(scan_gen_t *g);
scan_gen_t *scan_gen_acquire(void); /* returns a new reference, or NULL */

scan_conn_t *scan_conn_begin(scan_gen_t *g, const ev_conn_info_t *ci);
scan_gen_t *scan_conn_gen(scan_conn_t *c);
void scan_conn_end(scan_conn_t *c);
/* A message whose body is kept up to max_message_size, for this connection's client. */
msg_t *scan_msg_new(scan_conn_t *c);
void scan_envelope(scan_conn_t *c, msg_t *m);
/*
 * Adds one incoming header field to m, unless it is a copy of one of our
 * verdict fields (the generation's header_prefix): those are foreign,
 * never scored, and false is returned so the daemon can remove or rename
 * them at end of message as foreign_headers says. True when added.
 */
bool scan_header(scan_conn_t *c, msg_t *m, const char *name, const char *value);
/*
 * Fills m from a raw message file (header block, blank line, body; a
 * leading mbox "From " line is skipped), every field through
 * scan_header(): the CLI's one way to read a message.
 */
void scan_msg_raw(scan_conn_t *c, msg_t *m, const char *data, size_t len);
/* The MIME views of m under the generation's mime_max_* limits (arena of m). */
const mime_t *scan_mime(scan_conn_t *c, msg_t *m);
/*
 * Runs every source and decides the action. When a source fails (EV_ERROR,
 * see evidence.h) the result names it in failed and on_error decides:
 * "tempfail" makes the action VERDICT_TEMPFAIL whatever the score;
 * "accept" keeps the action the other sources' score earns, and the
 * daemon adds verdict_error_header() to a delivered message. Never NULL.
 */
scan_result_t *scan_score(scan_conn_t *c, msg_t *m, const scan_opts_t *o);
/* Messages scan_score() found a failed source in, since the process started. */
uint64_t scan_failed_total(void);
/* The metrics collector (metrics.h): every module's metrics hook on the live generation. */
void scan_metrics_collect(metrics_out_t *o);
/*
 * Lets each source see the final verdict (autolearn, reputation), unless
 * a source failed: a partial judgement teaches nothing.
 */
void scan_verdict_done(scan_conn_t *c, msg_t *m, const scan_result_t *r);

/* Reads a whole file (for the CLI and tests); NULL + errno on failure. */
char *scan_read_file(const char *path, size_t *len);

/*
 * Calls visit() for path if it is a file, or for every file below it if it
 * is a directory: entries in sorted (strcmp) order, dot files skipped, at
 * most max_depth directories deep. Problems (a missing path, an unreadable
 * or too deep directory) go to fail() with an errno value (ELOOP for too
 * deep). Stops early when visit() returns non-zero, and returns that value.
 */
typedef int (*scan_visit_fn)(const char *file, void *ud);
typedef void (*scan_fail_fn)(const char *path, int err, void *ud);
int scan_walk(const char *path, unsigned max_depth, scan_visit_fn visit, scan_fail_fn fail,
              void *ud);

#endif
