/*
 * metrics_http.c - the HTTP endpoint of the metrics (see metrics.h): a
 * libmicrohttpd server in its own thread answering GET /metrics. Apart
 * from metrics.c so that only sift-milter links libmicrohttpd.
 *
 * The thread is ours, not libmicrohttpd's: its timeout is one of
 * inactivity, so a client sending a byte every few seconds kept a slot
 * for good, and eight of them the whole endpoint. Between two rounds of
 * the server the thread cuts every connection older than
 * METRICS_TIMEOUT_S, from the thread that also closes them, so a cut
 * descriptor is always still the connection's.
 */
#include "config.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "metrics.h"
#include "xalloc.h"

/*
 * The server's state, which the main thread and the reload (signal) thread
 * start and stop: never at once, but only this lock orders their writes
 * and reads for the memory model (the stop reaches the main thread through
 * libmilter's unsynchronised stop flag).
 */
static pthread_mutex_t metrics_life_lock = PTHREAD_MUTEX_INITIALIZER;
static struct MHD_Daemon *metrics_daemon;
static char *metrics_spec;
static metrics_collect_fn metrics_collect;
static pthread_t metrics_thread;
static atomic_bool metrics_quit;

/* How often the server's thread looks for connections past their time (and a stop). */
#define METRICS_TICK_MS 200

/* The open connections and when each came; only the server's thread touches them. */
static struct metrics_conn {
	struct MHD_Connection *c;
	int fd;
	bool cut;
	long opened_ms;
} metrics_conns[METRICS_MAX_CONNECTIONS];

static long metrics_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void metrics_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                           enum MHD_ConnectionNotificationCode toe)
{
	(void)cls, (void)socket_context;
	for (size_t i = 0; i < METRICS_MAX_CONNECTIONS; i++) {
		struct metrics_conn *mc = &metrics_conns[i];
		if (toe == MHD_CONNECTION_NOTIFY_CLOSED && mc->c == c) {
			mc->c = NULL;
			return;
		}
		if (toe == MHD_CONNECTION_NOTIFY_STARTED && mc->c == NULL) {
			const union MHD_ConnectionInfo *ci =
			    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
			if (ci == NULL)
				return;
			*mc = (struct metrics_conn){.c = c,
			                            .fd = ci->connect_fd,
			                            .cut = false,
			                            .opened_ms = metrics_now_ms()};
			return;
		}
	}
}

static void *metrics_serve(void *arg)
{
	(void)arg;
	while (!atomic_load(&metrics_quit)) {
		MHD_run_wait(metrics_daemon, METRICS_TICK_MS);
		long now = metrics_now_ms();
		for (size_t i = 0; i < METRICS_MAX_CONNECTIONS; i++) {
			struct metrics_conn *mc = &metrics_conns[i];
			if (mc->c != NULL && !mc->cut &&
			    now - mc->opened_ms >= METRICS_TIMEOUT_S * 1000L) {
				/* The server sees the end at its next round and closes it. */
				shutdown(mc->fd, SHUT_RDWR);
				mc->cut = true;
			}
		}
	}
	return NULL;
}

static enum MHD_Result metrics_answer(void *cls, struct MHD_Connection *c, const char *url,
                                      const char *method, const char *version, const char *upload,
                                      size_t *upload_len, void **state)
{
	(void)cls, (void)version, (void)upload, (void)state;
	struct MHD_Response *r;
	unsigned status;
	if (*upload_len != 0)
		return MHD_NO; /* nothing accepts a body */
	if (strcmp(method, "GET") == 0 && strcmp(url, "/metrics") == 0) {
		size_t len;
		char *text = metrics_render(metrics_collect, &len);
		r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
		MHD_add_response_header(r, "Content-Type",
		                        "text/plain; version=0.0.4; charset=utf-8");
		status = MHD_HTTP_OK;
	} else {
		static const char nf[] = "not found: GET /metrics\n";
		r = MHD_create_response_from_buffer(sizeof(nf) - 1, (void *)nf,
		                                    MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_NOT_FOUND;
	}
	enum MHD_Result rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static int start_locked(const char *spec, metrics_collect_fn collect, char *err, size_t err_len)
{
	struct sockaddr_storage sa;
	if (metrics_listen_parse(spec, &sa, err, err_len) < 0)
		return -1;
	metrics_collect = collect;
	/*
	 * epoll: libmicrohttpd takes poll() only with its own thread, and
	 * select() fails on a descriptor past FD_SETSIZE, which a daemon
	 * with many MTA connections reaches.
	 */
	unsigned flags = MHD_USE_EPOLL;
	if (sa.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The server's thread inherits this mask: the daemon's signals stay with the daemon. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGPIPE);
	memset(metrics_conns, 0, sizeof(metrics_conns));
	atomic_store(&metrics_quit, false);
	metrics_daemon = MHD_start_daemon(
	    flags, 0, NULL, NULL, metrics_answer, NULL, MHD_OPTION_SOCK_ADDR,
	    (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CONNECTIONS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768, MHD_OPTION_NOTIFY_CONNECTION,
	    metrics_notify, NULL, MHD_OPTION_END);
	if (metrics_daemon == NULL) {
		snprintf(err, err_len, "metrics_listen: cannot listen on %s", spec);
		return -1;
	}
	pthread_sigmask(SIG_BLOCK, &block, &old);
	int rc = pthread_create(&metrics_thread, NULL, metrics_serve, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		MHD_stop_daemon(metrics_daemon);
		metrics_daemon = NULL;
		snprintf(err, err_len, "metrics_listen: cannot start its thread: %s", strerror(rc));
		return -1;
	}
	metrics_spec = xalloc_strdup(spec);
	return 0;
}

int metrics_start(const char *spec, metrics_collect_fn collect, char *err, size_t err_len)
{
	pthread_mutex_lock(&metrics_life_lock);
	int rc = start_locked(spec, collect, err, err_len);
	pthread_mutex_unlock(&metrics_life_lock);
	return rc;
}

void metrics_stop(void)
{
	pthread_mutex_lock(&metrics_life_lock);
	if (metrics_daemon != NULL) {
		atomic_store(&metrics_quit, true);
		pthread_join(metrics_thread, NULL);
		MHD_stop_daemon(metrics_daemon);
	}
	metrics_daemon = NULL;
	free(metrics_spec);
	metrics_spec = NULL;
	pthread_mutex_unlock(&metrics_life_lock);
}

bool metrics_serves(const char *spec)
{
	pthread_mutex_lock(&metrics_life_lock);
	bool r = metrics_spec != NULL && (spec == NULL || strcmp(metrics_spec, spec) == 0);
	pthread_mutex_unlock(&metrics_life_lock);
	return r;
}
