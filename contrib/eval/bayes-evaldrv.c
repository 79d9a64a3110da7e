/*
 * bayes-evaldrv.c - a minimal stand-in for `sift learn` / `sift check --tsv`
 * restricted to Bayes, for measuring tokenizer and classifier changes
 * without the rest of the pipeline (see bayes-eval.sh).
 *
 *   bayes-evaldrv DBDIR learn --spam|--ham FILE|DIR|MBOX...
 *   bayes-evaldrv DBDIR check [KEY=VALUE...] < list-of-files
 *	prints "file<TAB>P(spam)"; KEY=VALUE override configuration keys
 *	(bayes_robs=0.1, ...) to try classifier settings on one learned store.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bayes.h"
#include "hits.h"

static char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (fp == NULL)
		return NULL;
	fseek(fp, 0, SEEK_END);
	long n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	*len = fread(buf, 1, (size_t)n, fp);
	fclose(fp);
	return buf;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: bayes-evaldrv DBDIR learn|check ...\n");
		return 2;
	}
	diag_t *d = diag_new();
	conf_t *c = conf_new();
	conf_override(c, "bayes_db", argv[1]);
	if (strcmp(argv[2], "learn") == 0) {
		cli_ctx_t ctx = {.conf = c, .state_dir = "/nonexistent", .diag = d};
		return bayes_cmd_learn(&ctx, argc - 2, argv + 2);
	}
	for (int i = 3; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (eq == NULL) {
			fprintf(stderr, "bayes-evaldrv: expected KEY=VALUE: %s\n", argv[i]);
			return 2;
		}
		*eq = '\0';
		conf_override(c, argv[i], eq + 1);
	}
	ev_env_t env = {.state_dir = "/nonexistent", .offline = true};
	void *shared = bayes_evidence.load(c, NULL, &env, d);
	if (shared == NULL) {
		diag_print(d, stderr, 1);
		return 1;
	}
	char line[4096];
	while (fgets(line, sizeof(line), stdin) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		size_t len;
		char *raw = slurp(line, &len);
		if (raw == NULL) {
			perror(line);
			continue;
		}
		msg_t *m = msg_new(10u << 20);
		msg_parse_raw(m, raw, len);
		free(raw);
		const mime_t *mi = mime_parse(m, NULL); /* the daemon's default limits */
		hits_t *h = hits_new(msg_arena(m));
		ev_score_ctx_t sc = {.explain = getenv("EXPLAIN") != NULL};
		bayes_evidence.score(shared, NULL, m, mi, h, &sc);
		double p = -1;
		hits_metric(h, "bayes_prob", &p);
		printf("%s\t%.17g\n", line, p);
		for (size_t i = 0; sc.explain && i < hits_note_count(h); i++)
			printf("  %s\n", hits_note_at(h, i, NULL));
		msg_free(m);
	}
	bayes_evidence.release(shared);
	conf_free(c);
	diag_free(d);
	return 0;
}
