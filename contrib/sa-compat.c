/*
 * sa-compat.c - the helper behind contrib/sa-compat.sh: loads a rule
 * directory (SpamAssassin's, typically) the way the daemon would, prints
 * lint-style counts, and optionally scores messages to compare hit lists.
 *
 *	sa-compat [-a] [-s SET] [-r RUNNABLE_OUT] RULES [FILE...]
 *
 * -a reads every ifplugin block (rules_all_plugins); -s picks
 * SpamAssassin's score set (0-3, default 3); -T FILE writes each rule's
 * CPU time over the messages ("name<TAB>type<TAB>ns<TAB>evals"). With FILEs, prints
 * "FILE<TAB>RULE,RULE,...<TAB>SCORE" per message (reported rules only).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "diag.h"
#include "hits.h"
#include "mime.h"
#include "msg.h"
#include "rules.h"
#include "scan.h"

int main(int argc, char **argv)
{
	rules_opts_t o;
	rules_opts_default(&o);
	const char *runnable = NULL, *timing = NULL;
	int ch;
	while ((ch = getopt(argc, argv, "ar:s:T:")) != -1) {
		switch (ch) {
		case 'a': o.all_plugins = true; break;
		case 's': o.score_set = atoi(optarg) & 3; break;
		case 'T': timing = optarg; break;
		case 'r': runnable = optarg; break;
		default:
			fprintf(stderr, "usage: sa-compat [-a] [-s SET] [-r FILE] [-T FILE] RULES [MSG...]\n");
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: sa-compat [-a] [-s SET] [-r FILE] [-T FILE] RULES [MSG...]\n");
		return 2;
	}
	const char *paths[1] = {argv[optind++]};
	diag_t *d = diag_new();
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rules_t *r = rules_load(paths, 1, &o, d);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	diag_print(d, stderr, 1);
	fprintf(stderr, "%zu error(s), %zu warning(s), loaded in %.0f ms\n", diag_errors(d),
	        diag_warnings(d), (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
	if (r == NULL)
		return 1;
	/* with messages, stdout carries only their lines */
	rules_print_stats(r, optind < argc ? stderr : stdout);
	if (runnable != NULL) {
		FILE *fp = fopen(runnable, "w");
		if (fp == NULL) {
			perror(runnable);
			return 1;
		}
		for (size_t i = 0; rules_name(r, i) != NULL; i++)
			if (rules_runs(r, i))
				fprintf(fp, "%s\t%s\n", rules_name(r, i),
				        rules_type_name(rules_type(r, i)));
		fclose(fp);
	}
	for (; optind < argc; optind++) {
		size_t n;
		char *raw = scan_read_file(argv[optind], &n);
		if (raw == NULL) {
			perror(argv[optind]);
			continue;
		}
		msg_t *m = msg_new(10u << 20);
		msg_parse_raw(m, raw, n);
		hits_t *h = hits_new(msg_arena(m));
		/* mime.h's limits, the daemon's defaults (scan sizes: SpamAssassin's) */
		rules_eval(r, m, mime_parse(m, NULL), h, timing ? RULES_EVAL_TIMING : 0);
		hits_sort(h);
		printf("%s\t", argv[optind]);
		double total = 0;
		for (size_t i = 0; i < hits_count(h); i++) {
			printf("%s%s", i ? "," : "", hits_at(h, i)->name);
			total += hits_at(h, i)->score;
		}
		printf("\t%.3f\n", total);
		msg_free(m);
		free(raw);
	}
	if (timing != NULL) {
		FILE *fp = fopen(timing, "w");
		if (fp == NULL) {
			perror(timing);
			return 1;
		}
		size_t n = rules_count(r);
		rules_time_t *t = calloc(n ? n : 1, sizeof(*t));
		size_t k = t ? rules_slowest(r, t, n) : 0;
		for (size_t i = 0; i < k; i++)
			fprintf(fp, "%s\t%s\t%llu\t%llu\n", t[i].name, rules_type_name(t[i].type),
			        (unsigned long long)t[i].cpu_ns, (unsigned long long)t[i].evals);
		free(t);
		fclose(fp);
	}
	rules_free(r);
	diag_free(d);
	return 0;
}
