/*
 * fuzz_evals.c - libFuzzer target for the eval tests: the input is a
 * message, scored by SpamAssassin's stock rules files (Debian's
 * spamassassin package, /usr/share/spamassassin, every plugin block read),
 * whose 170-odd eval functions parse what a sender controls and the shipped
 * rules never reach: image headers (ImageInfo), PDF objects (PDFInfo),
 * HTML's fonts, colours and forms, Received fields of every MTA form,
 * dates, encoded words, uuencoded and multipart bodies, the languages of
 * the text (TextCat). fuzz_rules varies the rules over one fixed message;
 * this target varies the message under a large fixed set of rules.
 *
 * Each message is scored twice, with the literal prefilter and without it:
 * the prefilter never changes which rules hit (as in fuzz_rules, here over
 * the messages the stock rules were written for). Bayes's tokenizer reads
 * the same message: its keys must come sorted and distinct, as the store's
 * cursor walk relies on.
 * Build and run with tests/fuzz/run.sh evals SECONDS; it needs the rules
 * files (run.sh skips without them).
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bayes.h"
#include "diag.h"
#include "hits.h"
#include "mime.h"
#include "msg.h"
#include "rules.h"

/* Most parsers only look at the first tens of kilobytes of a part; larger
 * inputs make slow runs, not new paths. */
#define FUZZ_MAX_INPUT_BYTES (64 * 1024)

#ifndef FUZZ_SA_RULES
#define FUZZ_SA_RULES "/usr/share/spamassassin"
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Loaded once: the load takes a second or more, the runs milliseconds. */
static rules_t *fuzz_rules;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *dir = getenv("SIFT_FUZZ_SA_RULES");
	if (dir == NULL || *dir == '\0')
		dir = FUZZ_SA_RULES;
	rules_opts_t o;
	rules_opts_default(&o);
	o.paths[0] = dir;
	o.npaths = 1;
	/* every plugin block, so TextCat's and DecodeShortURLs' rules load too */
	o.all_plugins = true;
	diag_t *d = diag_new();
	fuzz_rules = rules_load(o.paths, o.npaths, &o, d);
	if (fuzz_rules == NULL) {
		/* a target that silently fuzzes nothing would pass: fail loudly */
		for (size_t i = 0; i < diag_count(d); i++)
			fprintf(stderr, "%s\n", diag_text(d, i));
		fprintf(stderr, "fuzz_evals: the rules in %s did not load\n", dir);
		abort();
	}
	diag_free(d);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_MAX_INPUT_BYTES)
		return 0;
	msg_t *m = msg_new(1 << 20);
	msg_parse_raw(m, (const char *)data, size);
	mime_t *mi = mime_parse(m, NULL); /* the daemon's default limits */
	hits_t *h1 = hits_new(msg_arena(m));
	hits_t *h2 = hits_new(msg_arena(m));
	int e1 = rules_eval(fuzz_rules, m, mi, h1, RULES_EVAL_EXPLAIN);
	int e2 = rules_eval(fuzz_rules, m, mi, h2, RULES_EVAL_NO_PREFILTER);
	/* a hit's name and detail are C strings a log line and a header carry
	 * (strlen() lets ASan see an unterminated one) */
	for (size_t i = 0; i < hits_count(h1); i++) {
		const hit_t *h = hits_at(h1, i);
		if (h->name == NULL || strlen(h->name) == 0 ||
		    (h->detail != NULL && strlen(h->detail) > FUZZ_MAX_INPUT_BYTES * 8))
			__builtin_trap();
	}
	/* the prefilter never changes the outcome */
	if (e1 == 0 && e2 == 0 && !hits_same_names(h1, h2))
		__builtin_trap();
	bayes_tokens_t tok;
	bayes_tokenize(m, mi, true, &tok);
	for (size_t i = 0; i < tok.n; i++)
		if ((i > 0 && tok.keys[i - 1] >= tok.keys[i]) || tok.text[i] == NULL)
			__builtin_trap();
	msg_free(m);
	return 0;
}
