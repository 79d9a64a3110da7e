/*
 * NAME
 *	log - the daemon's and the CLI's one logging sink
 * DESCRIPTION
 *	Messages go to syslog (facility configurable) or to stderr with a
 *	timestamp. Levels follow syslog's. Rate limiting of noisy error
 *	classes is the caller's business (see log_ratelimit()).
 *
 *	Every line is escaped as a whole before it is written: control
 *	characters, DEL and bytes above 0x7e become \xNN, so a field from
 *	outside (a queue id, a HELO name) can neither end the line nor
 *	carry terminal escapes. A line is cut at LOG_MAX_LINE_BYTES before
 *	escaping.
 * THREADS
 *	log_msg() is safe from any thread. log_setup() is called by main()
 *	before threads start and on reload (it takes a lock).
 */
#ifndef SIFT_LOG_H
#define SIFT_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { LOG_L_ERR = 3, LOG_L_WARNING = 4, LOG_L_NOTICE = 5, LOG_L_INFO = 6, LOG_L_DEBUG = 7 };

/* sink: "stderr" or "syslog"; facility: "mail", "local0".."local7", "daemon". */
int log_setup(const char *ident, const char *sink, const char *facility, int level);
int log_level_parse(const char *name);    /* -1 if unknown */
int log_facility_parse(const char *name); /* -1 if unknown */
bool log_enabled(int level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_MAX_LINE_BYTES 2048
/*
 * Copies in to out as log_msg() writes it: printable ASCII as is, every
 * other byte as \xNN. Stops before a byte whose escape would not fit, so
 * out is always NUL-terminated (when out_len > 0). Returns the length.
 */
size_t log_escape(char *out, size_t out_len, const char *in);

/*
 * A rate limiter for one class of messages: at most `burst` per
 * `window_s` seconds; returns true if this one may be logged and counts
 * the suppressed ones so the next logged line can say how many were lost.
 */
typedef struct log_ratelimit {
	int64_t window_start_s;
	unsigned count;
	unsigned suppressed;
} log_ratelimit_t;
bool log_ratelimit(log_ratelimit_t *rl, unsigned burst, unsigned window_s,
                   unsigned *suppressed_out);

#endif
