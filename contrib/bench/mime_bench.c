/*
 * mime_bench.c - MIME parsing speed over a set of raw messages.
 *
 * Loads every file named on the command line into memory, then times
 * msg_parse_raw() + mime_parse() over all of them, ROUNDS times, and
 * prints MB/s and microseconds per message (the best round, so a busy
 * shared machine disturbs the figure less). Not built by `make`:
 *
 *   gcc -O2 -Iinclude -I$BUILDDIR contrib/bench/mime_bench.c milter/mime.c \
 *       milter/mime_html.c milter/msg.c milter/arena.c milter/xalloc.c -o /tmp/mime_bench
 *   /tmp/mime_bench [-r ROUNDS] /tmp/corpus/spamassassin/ham/x.eml ...
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mime.h"
#include "msg.h"

#define BENCH_MAX_FILE_BYTES (10u << 20)

struct input {
	char *data;
	size_t len;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int load(const char *path, struct input *in)
{
	FILE *fp = fopen(path, "rb");
	if (fp == NULL)
		return -1;
	fseek(fp, 0, SEEK_END);
	long size = ftell(fp);
	rewind(fp);
	if (size < 0 || (unsigned long)size > BENCH_MAX_FILE_BYTES) {
		fclose(fp);
		return -1;
	}
	in->data = malloc((size_t)size + 1);
	in->len = in->data ? fread(in->data, 1, (size_t)size, fp) : 0;
	fclose(fp);
	return in->data ? 0 : -1;
}

int main(int argc, char **argv)
{
	int rounds = 5, opt;
	while ((opt = getopt(argc, argv, "r:")) != -1) {
		if (opt == 'r')
			rounds = atoi(optarg);
		else
			return 2;
	}
	int n = argc - optind;
	if (n <= 0 || rounds <= 0) {
		fprintf(stderr, "usage: %s [-r ROUNDS] FILE...\n", argv[0]);
		return 2;
	}
	struct input *in = calloc((size_t)n, sizeof(*in));
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		if (load(argv[optind + i], &in[i]) < 0) {
			perror(argv[optind + i]);
			return 1;
		}
		total += in[i].len;
	}

	double best_all = 1e30, best_split = 1e30;
	size_t parts = 0, uris = 0, body_bytes = 0;
	for (int r = 0; r < rounds; r++) {
		double split = 0, t0 = now_s();
		parts = uris = body_bytes = 0;
		for (int i = 0; i < n; i++) {
			double s0 = now_s();
			msg_t *m = msg_new(10u << 20);
			msg_parse_raw(m, in[i].data, in[i].len);
			split += now_s() - s0;
			mime_t *mi = mime_parse(m, NULL); /* the daemon's default limits */
			size_t bl;
			mime_body(mi, &bl);
			body_bytes += bl;
			parts += mime_part_count(mi);
			uris += mime_uri_count(mi);
			msg_free(m);
		}
		double all = now_s() - t0;
		if (all < best_all) {
			best_all = all;
			best_split = split;
		}
	}
	double mb = (double)total / 1e6;
	printf("messages %d, %.1f MB, %zu parts, %zu URIs, %.1f MB of body view\n", n, mb, parts,
	       uris, (double)body_bytes / 1e6);
	printf("msg_parse_raw+mime_parse: %.3f s, %.1f MB/s, %.1f us/message\n", best_all,
	       mb / best_all, best_all * 1e6 / n);
	printf("mime_parse alone:         %.3f s, %.1f MB/s, %.1f us/message\n",
	       best_all - best_split, mb / (best_all - best_split),
	       (best_all - best_split) * 1e6 / n);
	return 0;
}
