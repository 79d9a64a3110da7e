/*
 * NAME
 *	rules_qa - run the whole pipeline over labelled mail: rule QA (`sift
 *	rules qa`) and the evidence `sift rules fit` fits scores to
 * SYNOPSIS
 *	#include "rules_qa.h"
 *	rules_qa_set_t *s = rules_qa_set_new();
 *	rules_qa_add_manifest(s, "MANIFEST.tsv", root, folds, groups, err, len);
 *	rules_qa_add_dir(s, "spam/", true, err, len);
 *	rules_qa_run(s, gen, threads, true);
 *	... s->msg[i].feat / s->feat[j] ...
 *	rules_qa_report(s, rules, stdout, tsv);
 *	rules_qa_set_free(s);
 * DESCRIPTION
 *	A set is a list of labelled messages (spam or ham, a fold number from
 *	a manifest or -1). rules_qa_run() scores every message with the same
 *	calls as `sift check` (scan_msg_raw(), scan_envelope(), scan_score()),
 *	each worker thread with its own connection and message, and records
 *	per message the names of the hits (every source), Bayes's P(spam) and
 *	the score. Hit names are interned into s->feat in first-seen order of
 *	the message list (so runs are deterministic whatever the threads do).
 *
 *	A manifest is the corpus's MANIFEST.tsv: a header line, then "path
 *	label group bytes md5 fold" per line (label spam|ham), paths relative
 *	to root. folds ("0-6", "0,2,4", NULL for all) and groups ("spam-1,
 *	easy-ham-1", NULL for all) select lines.
 *
 *	The report, one line per rule that runs (not __*) and per other hit
 *	name seen, sorted as SpamAssassin's hit-frequencies by rank: SPAM%,
 *	HAM%, S/O = spam% / (spam% + ham%), RANK (0..1: the mean of the rule's
 *	normalised rank by S/O and by hit rate, within the rules of its sign;
 *	for nice rules S/O and hit rate count on ham), score, spam and ham
 *	hits, the rule it overlaps most (Jaccard of the sets of messages both
 *	hit, of the messages either hits), CPU milliseconds over the run and
 *	match-limit errors.
 * THREADS
 *	rules_qa_run() starts and joins its own threads; a set is used by one
 *	thread otherwise.
 */
#ifndef SIFT_RULES_QA_H
#define SIFT_RULES_QA_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cli.h"
#include "rules.h"
#include "scan.h"

typedef struct rules_qa_feat {
	char *name;
	char *source; /* "rules", "bayes", "dnsbl", "rep", ... */
} rules_qa_feat_t;

typedef struct rules_qa_msg {
	char *path;
	bool spam;
	int fold;     /* from the manifest, or -1 */
	bool ok;      /* scored (the file was read) */
	size_t *feat; /* indices into the set's feat, sorted */
	size_t nfeat;
	double bayes_p; /* NaN when Bayes did not vote */
	double score;   /* the acted-on score */
	char **names;   /* during the run only */
	char **sources;
	size_t nnames;
} rules_qa_msg_t;

typedef struct rules_qa_set {
	rules_qa_msg_t *msg;
	size_t n, cap;
	rules_qa_feat_t *feat;
	size_t nfeat, capfeat;
	size_t failed; /* messages that could not be read */
} rules_qa_set_t;

rules_qa_set_t *rules_qa_set_new(void);
void rules_qa_set_free(rules_qa_set_t *s);
/* Adds the manifest's selected lines; -1 with a message in err on a malformed line. */
int rules_qa_add_manifest(rules_qa_set_t *s, const char *manifest, const char *root,
                          const char *folds, const char *groups, char *err, size_t errlen);
/* Adds every file below dir (scan_walk() order) with the label; -1 with err. */
int rules_qa_add_dir(rules_qa_set_t *s, const char *dir, bool spam, char *err, size_t errlen);
/* Parses "0-6" or "1,3,5-7" into a mask of folds 0..63; -1 if malformed. */
int rules_qa_parse_folds(const char *spec, unsigned long long *mask);
/*
 * Scores every message with nthreads workers (0: the online CPUs); with
 * timing, rules accumulate per-rule CPU time (rules_slowest()).
 */
int rules_qa_run(rules_qa_set_t *s, scan_gen_t *g, unsigned nthreads, bool timing);
/* Whether message i hit feature j. */
bool rules_qa_has(const rules_qa_set_t *s, size_t i, size_t j);
/* The report described above; r may be NULL (then no rule-only columns). */
void rules_qa_report(const rules_qa_set_t *s, const rules_t *r, FILE *fp, bool tsv);

/*
 * The command-line input both subcommands share: rules_qa_cli_input()
 * parses -r, --manifest/--root/--folds/--groups, --spam/--ham, -j and
 * --tsv (plus extra options, handed to on_extra, which returns 0 when it
 * took one) and fills the set; rules_qa_cli_score() loads the generation
 * (taking ctx->conf) and runs it. Both return 0 or an exit status.
 */
typedef struct rules_qa_cli {
	rules_qa_set_t *set;
	scan_gen_t *gen;
	unsigned threads;
	bool tsv, dirs;
} rules_qa_cli_t;

int rules_qa_cli_input(rules_qa_cli_t *in, int argc, char **argv, cli_ctx_t *ctx,
                       const struct option *extra, int (*on_extra)(int, const char *, void *),
                       void *ud);
int rules_qa_cli_score(rules_qa_cli_t *in, cli_ctx_t *ctx, bool timing);
void rules_qa_cli_done(rules_qa_cli_t *in);

/* `sift rules qa|fit ...` (cli.h). */
int rules_cmd_rules(cli_ctx_t *ctx, int argc, char **argv);

#endif
