/*
 * NAME
 *	stats - `sift stats`: the running daemon's figures on a terminal
 * DESCRIPTION
 *	Fetches the daemon's Prometheus endpoint (metrics_listen, or --url)
 *	over plain HTTP/1.0 with a short timeout, parses it with promtext.h
 *	and prints a summary: messages by action and per second, the top
 *	rules, each evidence source's mean latency and errors, the Redis,
 *	DNSBL and Bayes gauges, reloads, and every other metric under
 *	"other", so new metrics show without a change here.
 * THREADS
 *	Main thread only, like every command (cli.h).
 */
#ifndef SIFT_STATS_H
#define SIFT_STATS_H

#include "cli.h"

int stats_cmd_stats(cli_ctx_t *ctx, int argc, char **argv);

#endif
