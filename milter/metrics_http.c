/*
 * metrics_http.c - the HTTP endpoint of the metrics (see metrics.h): a
 * libmicrohttpd server in its own thread answering GET /metrics. Apart
 * from metrics.c so that only sift-milter links libmicrohttpd.
 */
#include "config.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "xalloc.h"

static struct MHD_Daemon *metrics_daemon;
static char *metrics_spec;
static metrics_collect_fn metrics_collect;

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

int metrics_start(const char *spec, metrics_collect_fn collect, char *err, size_t err_len)
{
	struct sockaddr_storage sa;
	if (metrics_listen_parse(spec, &sa, err, err_len) < 0)
		return -1;
	metrics_collect = collect;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
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
	pthread_sigmask(SIG_BLOCK, &block, &old);
	metrics_daemon = MHD_start_daemon(
	    flags, 0, NULL, NULL, metrics_answer, NULL, MHD_OPTION_SOCK_ADDR,
	    (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CONNECTIONS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (metrics_daemon == NULL) {
		snprintf(err, err_len, "metrics_listen: cannot listen on %s", spec);
		return -1;
	}
	metrics_spec = xalloc_strdup(spec);
	return 0;
}

void metrics_stop(void)
{
	if (metrics_daemon != NULL)
		MHD_stop_daemon(metrics_daemon);
	metrics_daemon = NULL;
	free(metrics_spec);
	metrics_spec = NULL;
}

const char *metrics_running(void)
{
	return metrics_spec;
}
