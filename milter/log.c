/*
 * log.c - syslog or stderr logging with a level threshold (see log.h).
 */
#include "config.h"

#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

/*
 * The logging configuration is process-wide by nature (syslog itself is).
 * log_setup() writes it under the lock, at start-up and again at each
 * reload while workers log; log_msg() reads it without the lock, so the
 * switches are atomics and the ident is rewritten only when it changes
 * (never on a reload: the program's name stays), as syslog() and the
 * workers read it in place.
 */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int log_use_syslog;
static _Atomic int log_threshold = LOG_L_INFO;
static char log_ident[32] = "sift";

static const struct {
	const char *name;
	int value;
} log_levels[] = {{"err", LOG_L_ERR},       {"error", LOG_L_ERR}, {"warning", LOG_L_WARNING},
                  {"notice", LOG_L_NOTICE}, {"info", LOG_L_INFO}, {"debug", LOG_L_DEBUG}};

static const struct {
	const char *name;
	int value;
} log_facilities[] = {{"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"user", LOG_USER},
                      {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
                      {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
                      {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7}};

int log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++)
		if (strcasecmp(name, log_levels[i].name) == 0)
			return log_levels[i].value;
	return -1;
}

int log_facility_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(log_facilities) / sizeof(log_facilities[0]); i++)
		if (strcasecmp(name, log_facilities[i].name) == 0)
			return log_facilities[i].value;
	return -1;
}

int log_setup(const char *ident, const char *sink, const char *facility, int level)
{
	int fac = log_facility_parse(facility ? facility : "mail");
	if (fac < 0)
		return -1;
	pthread_mutex_lock(&log_lock);
	if (strncmp(log_ident, ident, sizeof(log_ident) - 1) != 0)
		snprintf(log_ident, sizeof(log_ident), "%s", ident);
	atomic_store(&log_threshold, level);
	if (sink != NULL && strcmp(sink, "syslog") == 0) {
		openlog(log_ident, LOG_PID | LOG_NDELAY, fac);
		atomic_store(&log_use_syslog, 1);
	} else {
		atomic_store(&log_use_syslog, 0);
	}
	pthread_mutex_unlock(&log_lock);
	return 0;
}

bool log_enabled(int level)
{
	return level <= log_threshold;
}

size_t log_escape(char *out, size_t out_len, const char *in)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;
	if (out_len == 0)
		return 0;
	for (const unsigned char *p = (const unsigned char *)in; *p != '\0'; p++) {
		bool plain = *p >= 0x20 && *p < 0x7f;
		size_t need = plain ? 1 : 4;
		if (n + need >= out_len)
			break;
		if (plain) {
			out[n++] = (char)*p;
		} else {
			out[n++] = '\\';
			out[n++] = 'x';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = '\0';
	return n;
}

void log_msg(int level, const char *fmt, ...)
{
	if (level > log_threshold)
		return;
	char raw[LOG_MAX_LINE_BYTES], buf[LOG_MAX_LINE_BYTES * 4];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/*
	 * Fields come from outside (queue ids, HELO names, addresses, DNS
	 * text): escaping the whole line here means no caller can forget to,
	 * and no field can start a forged line or carry terminal escapes.
	 */
	log_escape(buf, sizeof(buf), raw);
	if (log_use_syslog) {
		syslog(level, "%s", buf);
		return;
	}
	struct timespec ts;
	struct tm tm;
	char when[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	static const char *names[] = {"emerg",   "alert",  "crit", "error",
	                              "warning", "notice", "info", "debug"};
	/* One fprintf per line keeps lines from different threads whole. */
	fprintf(stderr, "%s.%03ld %s[%s]: %s\n", when, ts.tv_nsec / 1000000, log_ident,
	        names[level & 7], buf);
}

bool log_ratelimit(log_ratelimit_t *rl, unsigned burst, unsigned window_s, unsigned *suppressed_out)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	bool ok;
	pthread_mutex_lock(&log_lock);
	if (ts.tv_sec - rl->window_start_s >= (int64_t)window_s) {
		rl->window_start_s = ts.tv_sec;
		rl->count = 0;
	}
	ok = rl->count < burst;
	if (ok) {
		rl->count++;
		if (suppressed_out)
			*suppressed_out = rl->suppressed;
		rl->suppressed = 0;
	} else {
		rl->suppressed++;
	}
	pthread_mutex_unlock(&log_lock);
	return ok;
}
