/*
 * NAME
 *	metrics - process-wide counters and the Prometheus text endpoint
 * DESCRIPTION
 *	The counters the pipeline keeps for every message (messages by action,
 *	whole-message and per-source latency histograms, source errors,
 *	timeouts, skips), for the daemon (reloads, generation, connections in
 *	flight), and an HTTP server (libmicrohttpd) that answers GET /metrics
 *	with them in the Prometheus text exposition format (version 0.0.4).
 *	Every other path gets 404; the server keeps at most
 *	METRICS_MAX_CONNECTIONS connections and drops each one
 *	METRICS_TIMEOUT_S after it came, idle or trickling, so a slow
 *	scraper never holds a mail thread nor a slot for good.
 *
 *	Modules add their own figures through evidence_ops_t.metrics, which
 *	writes families with metrics_out_family() and samples with
 *	metrics_out_value(); the collector (scan_metrics_collect) calls it on
 *	the scraping thread with the live generation.
 *
 *	metrics_listen: "PORT" (binds 127.0.0.1), "HOST:PORT" with a numeric
 *	IPv4 address, or "[IPV6]:PORT".
 * THREADS
 *	The counters are the process's shared state and live in one place,
 *	metrics.c's `metrics_g`. They are relaxed atomics: the message path
 *	takes no lock, and a scrape may see one counter a message ahead of
 *	another. metrics_start/metrics_stop are for the main thread and the
 *	reload (signal) thread, which never run them at the same time; a
 *	lock orders what one leaves for the other.
 */
#ifndef SIFT_METRICS_H
#define SIFT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define METRICS_MAX_SOURCES     8
#define METRICS_MAX_CONNECTIONS 8
#define METRICS_TIMEOUT_S       5

typedef struct metrics_out metrics_out_t;

/* ---- the message path: cheap, lock-free */

/* One message judged: its action (verdict_action_t) and wall time. */
void metrics_message(int action, double seconds);
/*
 * One source's score() on one message: idx is its place in the pipeline
 * (name a static string), status an ev_status_t, late when it returned
 * after the message's deadline.
 */
void metrics_source(size_t idx, const char *name, int status, bool late, double seconds);
/* A configured source that had nothing to do for a message. */
void metrics_source_skip(size_t idx, const char *name);
void metrics_conn_open(void);
void metrics_conn_close(void);

/* ---- the daemon */
void metrics_reload(bool ok);
void metrics_generation(uint64_t gen);

/* ---- output: for the collector and the modules' metrics hooks */

/* Starts a family: HELP and TYPE lines. type is "counter" or "gauge". */
void metrics_out_family(metrics_out_t *o, const char *name, const char *type, const char *help);
/*
 * One sample of the current family. label may be NULL (no labels); the
 * label value is escaped (backslash, double quote, newline).
 */
void metrics_out_value(metrics_out_t *o, const char *name, const char *label,
                       const char *label_value, double v);

typedef void (*metrics_collect_fn)(metrics_out_t *o);

/*
 * The whole exposition: the process-wide counters, then collect(o) (may
 * be NULL). Returns a malloc'd NUL-terminated text; *len its length.
 */
char *metrics_render(metrics_collect_fn collect, size_t *len);

/* Label values escaped as the text format wants; returns bytes written (cap > 0). */
size_t metrics_escape(const char *in, char *out, size_t cap);

/*
 * Parses a metrics_listen value into sa. Returns 0, or -1 with a message
 * in err.
 */
int metrics_listen_parse(const char *spec, struct sockaddr_storage *sa, char *err, size_t err_len);

/*
 * Starts the server on spec (see above) with collect as the collector.
 * Returns 0, or -1 with a message in err. The server's thread blocks the
 * daemon's signals. metrics_stop() is a no-op when nothing runs.
 */
int metrics_start(const char *spec, metrics_collect_fn collect, char *err, size_t err_len);
void metrics_stop(void);
/*
 * Whether a server runs started with spec, or with any spec when spec is
 * NULL. The comparison is made under the lock that metrics_stop() takes:
 * a pointer to the running spec, handed out, would be freed under a
 * caller that a stop in another thread overtakes.
 */
bool metrics_serves(const char *spec);

#endif
