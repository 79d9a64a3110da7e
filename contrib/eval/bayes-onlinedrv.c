/*
 * bayes-onlinedrv.c - the on-line (TREC spam track) protocol for Sift's
 * Bayes, in one process: each message of a stream is scored, then learned
 * with its true label (see online-eval.sh).
 *
 *   bayes-onlinedrv DBDIR [KEY=VALUE...] < stream
 *	stream lines: "spam|ham<TAB>path[<TAB>epoch]" (the epoch dates what
 *	the message teaches, for expiry); a label prefixed "warm-"
 *	(warm-spam, warm-ham) is learned without being scored (the warm-up
 *	set). KEY=VALUE override configuration keys (bayes_robs=0.1, ...);
 *	besides those: mode=always|error|until (learn every message; only
 *	those misclassified or inside the margin; error-driven passes over the
 *	stream until none learns, no figures), margin=Z (log-odds, default
 *	bayes_train_margin), every=N (print the store's size every N messages).
 *	prints one line per scored message: "label<TAB>score<TAB>P<TAB>score
 *	us<TAB>learn us<TAB>learned (0|1)<TAB>Bayes<TAB>regression", the
 *	score being the classifier's log-odds (P saturates at 0 and 1), the
 *	last two its parts in natural log-odds, Bayes's and the regression's
 *	unclipped sum (0 without bayes_lr), so that other ways of combining
 *	them can be replayed (combine-replay.py); store sizes on "#" lines.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bayes.h"

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

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

typedef struct item {
	int label;    /* 1 spam, 0 ham */
	uint32_t day; /* from the stream's third column (epoch seconds), else 0 */
	bool warm;
	char *path;
} item_t;

static void print_size(bayes_store_t *s, size_t n)
{
	bayes_stats_t st;
	if (bayes_store_stats(s, &st) == BAYES_OK)
		printf("# after %zu: tokens %llu used %llu bytes\n", n,
		       (unsigned long long)st.tokens, (unsigned long long)st.used_bytes);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bayes-onlinedrv DBDIR [KEY=VALUE...] < stream\n");
		return 2;
	}
	diag_t *d = diag_new();
	conf_t *c = conf_new();
	conf_override(c, "bayes_db", argv[1]);
	const char *mode = "always";
	double margin = -1;
	long every = 1000;
	bool learn_scored = true;
	uint64_t expire = 0;
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (eq == NULL) {
			fprintf(stderr, "bayes-onlinedrv: expected KEY=VALUE: %s\n", argv[i]);
			return 2;
		}
		*eq = '\0';
		if (strcmp(argv[i], "mode") == 0)
			mode = eq + 1;
		else if (strcmp(argv[i], "margin") == 0)
			margin = atof(eq + 1);
		else if (strcmp(argv[i], "expire") == 0)
			expire = strtoull(eq + 1, NULL, 10);
		else if (strcmp(argv[i], "learn") == 0)
			learn_scored = atoi(eq + 1) != 0;
		else if (strcmp(argv[i], "every") == 0)
			every = atol(eq + 1);
		else
			conf_override(c, argv[i], eq + 1);
	}
	bayes_settings_t set;
	if (bayes_settings_read(c, "/nonexistent", &set, d) != 0) {
		diag_print(d, stderr, 1);
		return 1;
	}
	if (margin < 0)
		margin = set.train_margin;
	int err;
	bayes_store_t *s = bayes_store_open(set.db_path, set.map_bytes,
	                                    BAYES_OPEN_CREATE | BAYES_OPEN_NOSYNC, &err);
	if (s == NULL) {
		fprintf(stderr, "bayes-onlinedrv: %s: %s\n", set.db_path, bayes_strerror(err));
		return 1;
	}
	if (expire > 0)
		bayes_store_set_bound(s, expire);
	item_t *items = NULL;
	size_t n = 0, cap = 0;
	char line[8192];
	while (fgets(line, sizeof(line), stdin) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		char *tab = strchr(line, '\t');
		if (tab == NULL)
			continue;
		*tab = '\0';
		char *path = tab + 1;
		char *more = strchr(path, '\t');
		uint32_t day = 0;
		if (more != NULL) {
			*more++ = '\0';
			day = (uint32_t)(strtoull(more, NULL, 10) / 86400);
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			items = realloc(items, cap * sizeof(*items));
		}
		bool warm = strncmp(line, "warm-", 5) == 0;
		const char *lab = warm ? line + 5 : line;
		items[n++] = (item_t){strcmp(lab, "spam") == 0, day, warm, strdup(path)};
	}
	bool until = strcmp(mode, "until") == 0;
	bool on_error = until || strcmp(mode, "error") == 0;
	for (int pass = 0; pass < (until ? 20 : 1); pass++) {
		size_t learned_now = 0, scored = 0;
		for (size_t i = 0; i < n; i++) {
			size_t len;
			char *raw = slurp(items[i].path, &len);
			if (raw == NULL) {
				perror(items[i].path);
				continue;
			}
			/* Tokens dated by the message, so that expiry ages them by the
			 * stream's time, not the replay's. */
			bayes_store_set_day(s, items[i].day);
			double t0 = now_us();
			msg_t *m = msg_new(10u << 20);
			msg_parse_raw(m, raw, len);
			free(raw);
			const mime_t *mi = mime_parse(m, NULL); /* the daemon's default limits */
			bayes_tokens_t tok;
			bayes_tokenize(m, mi, false, &tok);
			bayes_score_t sc = {0};
			/* The logistic regression's step needs the score, warm-up or not. */
			bool scoring = !items[i].warm || until || set.lr;
			if (scoring && bayes_score_tokens(s, &set, &tok, msg_arena(m), NULL, &sc) !=
			                   BAYES_OK) {
				fprintf(stderr, "bayes-onlinedrv: lookup failed\n");
				return 1;
			}
			double t1 = now_us();
			bool learn = items[i].warm ||
			             (learn_scored || until) &&
			                 bayes_train_wanted(
			                     on_error ? BAYES_TRAIN_ON_ERROR : BAYES_TRAIN_ALWAYS,
			                     sc.voted, sc.log_odds, items[i].label, margin);
			if (learn) {
				bayes_learn_item_t it = {
				    .op = items[i].label ? BAYES_LEARN_SPAM : BAYES_LEARN_HAM,
				    .keys = tok.keys,
				    .n = tok.n,
				    .lr_delta = bayes_lr_delta(&set, &sc, items[i].label)};
				bayes_mix_step(&set, &sc, items[i].label, &it.mix);
				memcpy(it.digest, tok.digest, sizeof(it.digest));
				bayes_apply_result_t r;
				if (bayes_store_apply(s, &it, 1, &r) != BAYES_OK) {
					fprintf(stderr, "bayes-onlinedrv: learning failed\n");
					return 1;
				}
				learned_now += r.learned + r.relearned;
			}
			double t2 = now_us();
			msg_free(m);
			if (!until && !items[i].warm) {
				printf("%s\t%.10g\t%.6g\t%.1f\t%.1f\t%d\t%.10g\t%.10g\n",
				       items[i].label ? "spam" : "ham", sc.log_odds, sc.prob,
				       t1 - t0, learn ? t2 - t1 : 0.0, learn,
				       set.params.fisher_scale * sc.bayes_log_odds, sc.lr_log_odds);
				scored++;
				if (every > 0 && scored % (size_t)every == 0)
					print_size(s, scored);
			}
		}
		if (until) {
			printf("# pass %d: learned %zu\n", pass + 1, learned_now);
			if (learned_now == 0)
				break;
		}
	}
	print_size(s, n);
	bayes_store_unref(s);
	for (size_t i = 0; i < n; i++)
		free(items[i].path);
	free(items);
	conf_free(c);
	diag_free(d);
	return 0;
}
