/*
 * sift.c - the command-line tool: global options, then one subcommand.
 * `sift check` builds the same generation as the daemon (scan.h) and
 * drives the same calls, so its score is the daemon's score.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bayes.h"
#include "cli.h"
#include "conf.h"
#include "diag.h"
#include "log.h"
#include "rep.h"
#include "rules.h"
#include "rules_qa.h"
#include "scan.h"
#include "stats.h"

#define SIFT_MAX_CLI_RULE_PATHS 64
#define SIFT_MAX_WALK_DEPTH     16
#define SIFT_TIMING_TOP_N       30
#define SIFT_CHECK_MAX_RCPTS    1000 /* --rcpt given more often (Postfix's default limit) */

struct global_opts {
	const char *conf_path;
	const char *state_dir;
};

static void usage(FILE *fp)
{
	fprintf(fp,
	        "usage: sift [-c FILE] [-d DIR] COMMAND [ARGS...]\n"
	        "commands:\n"
	        "  check [--tsv] [--timing] [-r PATH]... [--ip IP] [--helo NAME] [--from ADDR] "
	        "[--client-name NAME]\n"
	        "        [--rcpt ADDR]... FILE|DIR...\n"
	        "                     score messages offline and explain every point\n"
	        "  rules qa|fit [-r PATH]... (--manifest FILE --root DIR [--folds 0-6] | "
	        "--spam DIR --ham DIR)\n"
	        "                     rule QA on labelled mail; fit the scores to it\n"
	        "  lint [FILE|DIR...] validate the configuration and rules (default: the "
	        "configured ones)\n"
	        "  learn [--mode MODE] --spam|--ham|--forget FILE|DIR|MBOX... [--ham|--spam ...]\n"
	        "                     train the Bayes store (both classes in one run are\n"
	        "                     interleaved), or forget messages\n"
	        "  bayes stats|dump|load|expire|compact\n"
	        "                     maintain the Bayes store\n"
	        "  block add|del|list|export ...\n"
	        "                     manage the shared block and allow lists\n"
	        "  stats [--url URL] [--watch SECONDS [--count N]] [--raw]\n"
	        "                     the running daemon's figures (from metrics_listen)\n"
	        "  version            print the version\n");
}

/* Loads the configuration named by -c (or the defaults) with -d applied. */
static conf_t *load_conf(const struct global_opts *g, diag_t *d)
{
	conf_t *c = g->conf_path ? conf_load(g->conf_path, d) : conf_new();
	if (c != NULL && g->state_dir)
		conf_override(c, "state_dir", g->state_dir);
	return c;
}

static scan_gen_t *load_gen(conf_t *c, diag_t *d)
{
	ev_env_t env = {.state_dir = NULL, .offline = true};
	scan_gen_t *g = scan_gen_load(c, NULL, &env, d);
	if (g != NULL && scan_gen_start(g, &env, d) != 0) {
		scan_gen_unref(g);
		return NULL;
	}
	return g;
}

struct check_opts {
	bool tsv, timing;
	const char *ip, *helo, *from;
	const char *client_name; /* the client's reverse name, as the MTA gives it */
	/* RCPT TO: the daemon's rules read them (welcomelist_to, more_spam_to) */
	const char *rcpts[SIFT_CHECK_MAX_RCPTS];
	size_t n_rcpts;
	int failures;
};

struct check_walk {
	scan_gen_t *g;
	struct check_opts *o;
};

static void print_explained(const char *file, const scan_result_t *r)
{
	printf("%s: score %.2f, action %s (%.1f ms)\n", file, r->score,
	       verdict_action_name(r->action), r->elapsed_ms);
	if (r->failed)
		printf("  failed   %s: internal error, scored without (on_error applies)\n",
		       r->failed);
	if (r->degraded)
		printf("  degraded %s: judged on less evidence (see the notes)\n", r->degraded);
	for (size_t i = 0; i < hits_count(r->hits); i++) {
		const hit_t *h = hits_at(r->hits, i);
		printf("  %7.2f  %-6s %-28s %s\n", h->score, h->source, h->name,
		       h->desc ? h->desc : "");
		if (h->detail)
			printf("%20s %s\n", "", h->detail);
	}
	for (size_t i = 0; i < hits_note_count(r->hits); i++) {
		const char *src;
		const char *t = hits_note_at(r->hits, i, &src);
		printf("  note   %-6s %s\n", src, t);
	}
	/* The fields the daemon would add to (+) or remove from (-) the message. */
	for (size_t i = 0; i < r->fields.n; i++) {
		const verdict_field_t *f = &r->fields.v[i];
		if (f->value)
			printf("  field  + %s: %s\n", f->name, f->value);
		else
			printf("  field  - %s #%u\n", f->name, f->index);
	}
}

static void print_tsv(const char *file, const scan_result_t *r)
{
	printf("%s\t%.2f\t%s\t", file, r->score, verdict_action_name(r->action));
	for (size_t i = 0; i < hits_count(r->hits); i++)
		printf("%s%s", i ? "," : "", hits_at(r->hits, i)->name);
	if (hits_count(r->hits) == 0)
		printf("-");
	double p;
	if (hits_metric(r->hits, "bayes_prob", &p))
		printf("\t%.9g", p);
	else
		printf("\t-");
	printf("\t%.3f\t%s\n", r->elapsed_ms, r->failed ? r->failed : "-");
}

static void check_one(scan_gen_t *g, const char *path, struct check_opts *o)
{
	size_t len;
	char *data = scan_read_file(path, &len);
	if (data == NULL) {
		fprintf(stderr, "sift: %s: %s\n", path, strerror(errno));
		o->failures++;
		return;
	}
	ev_conn_info_t ci = {o->ip, o->client_name};
	scan_conn_t *c = scan_conn_begin(g, &ci);
	msg_t *m = scan_msg_new(c);
	msg_set_helo(m, o->helo);
	scan_msg_raw(c, m, data, len);
	free(data);
	if (o->from != NULL) {
		msg_set_mail_from(m, o->from);
	} else {
		/* Offline, the envelope sender is the Return-Path the MTA recorded. */
		const char *rp = msg_header_get(m, "Return-Path", 0);
		if (rp != NULL)
			msg_set_mail_from(m, rp);
	}
	for (size_t i = 0; i < o->n_rcpts; i++)
		msg_add_rcpt(m, o->rcpts[i]);
	scan_envelope(c, m);
	scan_opts_t so = {.explain = !o->tsv, .timing = o->timing};
	scan_result_t *r = scan_score(c, m, &so);
	if (o->tsv)
		print_tsv(path, r);
	else
		print_explained(path, r);
	if (r->failed) {
		/* The daemon would have applied on_error: not a clean result. */
		fprintf(stderr, "sift: %s: internal error in %s\n", path, r->failed);
		o->failures++;
	}
	msg_free(m);
	scan_conn_end(c);
}

static int check_visit(const char *file, void *ud)
{
	struct check_walk *w = ud;
	check_one(w->g, file, w->o);
	return 0;
}

static void check_fail(const char *path, int err, void *ud)
{
	struct check_walk *w = ud;
	fprintf(stderr, "sift: %s: %s\n", path,
	        err == ELOOP ? "directories nested too deep" : strerror(err));
	w->o->failures++;
}

static int cmd_check(cli_ctx_t *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {{"tsv", no_argument, NULL, 't'},
	                                         {"timing", no_argument, NULL, 'T'},
	                                         {"rules", required_argument, NULL, 'r'},
	                                         {"ip", required_argument, NULL, 'i'},
	                                         {"helo", required_argument, NULL, 'H'},
	                                         {"from", required_argument, NULL, 'f'},
	                                         {"rcpt", required_argument, NULL, 'R'},
	                                         {"client-name", required_argument, NULL, 'N'},
	                                         {NULL, 0, NULL, 0}};
	struct check_opts o = {0};
	int ch;
	optind = 0; /* argv[0] is the command; 0 also resets glibc's getopt state */
	while ((ch = getopt_long(argc, argv, "r:", longopts, NULL)) != -1) {
		switch (ch) {
		case 't': o.tsv = true; break;
		case 'T': o.timing = true; break;
		case 'r': conf_override(ctx->conf, "rules", optarg); break;
		case 'i': o.ip = optarg; break;
		case 'H': o.helo = optarg; break;
		case 'f': o.from = optarg; break;
		case 'N': o.client_name = optarg; break;
		case 'R':
			if (o.n_rcpts == SIFT_CHECK_MAX_RCPTS) {
				fprintf(stderr, "sift check: more than %d --rcpt\n",
				        SIFT_CHECK_MAX_RCPTS);
				return 2;
			}
			o.rcpts[o.n_rcpts++] = optarg;
			break;
		default: usage(stderr); return 2;
		}
	}
	if (optind == argc) {
		fprintf(stderr, "sift check: no message files given\n");
		return 2;
	}
	scan_gen_t *g = load_gen(ctx->conf, ctx->diag);
	ctx->conf = NULL; /* the generation owns it now */
	diag_print(ctx->diag, stderr, 0);
	if (g == NULL)
		return 1;
	struct check_walk w = {g, &o};
	for (int i = optind; i < argc; i++)
		scan_walk(argv[i], SIFT_MAX_WALK_DEPTH, check_visit, check_fail, &w);
	rules_t *rs = scan_gen_module(g, "rules");
	if (o.timing && rs != NULL) {
		/* On stderr with --tsv, so the TSV stays one line per message. */
		FILE *out = o.tsv ? stderr : stdout;
		fprintf(out, "rule CPU time over all messages, most expensive first:\n");
		rules_print_timing(rs, out, SIFT_TIMING_TOP_N);
	}
	if (rs != NULL && rules_errors_total(rs) > 0)
		fprintf(stderr, "sift: %llu rule evaluation(s) hit a regex limit (see the log)\n",
		        (unsigned long long)rules_errors_total(rs));
	scan_gen_unref(g);
	return o.failures ? 1 : 0;
}

static bool is_rules_path(const char *p)
{
	struct stat st;
	size_t n = strlen(p);
	if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
		return true;
	return n > 3 && strcmp(p + n - 3, ".cf") == 0;
}

static int cmd_lint(cli_ctx_t *ctx, int argc, char **argv)
{
	conf_t *c = ctx->conf;
	/* A *.cf file or a directory is rules; anything else a configuration file. */
	for (int i = 1; i < argc; i++) {
		if (is_rules_path(argv[i]))
			continue;
		conf_free(c);
		c = conf_load(argv[i], ctx->diag);
		if (c == NULL)
			break;
		if (ctx->state_dir)
			conf_override(c, "state_dir", ctx->state_dir);
	}
	ctx->conf = NULL;
	if (c != NULL)
		for (int i = 1; i < argc; i++)
			if (is_rules_path(argv[i]))
				conf_override(c, "rules", argv[i]);
	scan_gen_t *g = c ? load_gen(c, ctx->diag) : NULL;
	diag_print(ctx->diag, stdout, 1);
	if (g != NULL && scan_gen_module(g, "rules") != NULL)
		rules_print_stats(scan_gen_module(g, "rules"), stdout);
	printf("%zu error(s), %zu warning(s)\n", diag_errors(ctx->diag), diag_warnings(ctx->diag));
	int rc = g != NULL && diag_errors(ctx->diag) == 0 ? 0 : 1;
	scan_gen_unref(g);
	return rc;
}

static int cmd_version(cli_ctx_t *ctx, int argc, char **argv)
{
	printf("sift %s\n", PACKAGE_VERSION);
	return 0;
}

static const struct {
	const char *name;
	cli_cmd_fn fn;
} commands[] = {
    {"check", cmd_check},       {"lint", cmd_lint},         {"learn", bayes_cmd_learn},
    {"bayes", bayes_cmd_bayes}, {"block", rep_cmd_block},   {"version", cmd_version},
    {"stats", stats_cmd_stats}, {"rules", rules_cmd_rules},
};

int main(int argc, char **argv)
{
	struct global_opts g = {0};
	int ch;
	/* '+' stops at the subcommand, as git does. */
	while ((ch = getopt(argc, argv, "+c:d:hV")) != -1) {
		switch (ch) {
		case 'c': g.conf_path = optarg; break;
		case 'd': g.state_dir = optarg; break;
		case 'V': printf("sift %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	log_setup("sift", "stderr", "mail", LOG_L_WARNING);
	const char *name = argv[optind];
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(name, commands[i].name) != 0)
			continue;
		cli_ctx_t ctx = {.diag = diag_new(), .state_dir = g.state_dir};
		ctx.conf = load_conf(&g, ctx.diag);
		if (ctx.conf == NULL) {
			diag_print(ctx.diag, stderr, 0);
			return 1;
		}
		if (ctx.state_dir == NULL)
			conf_str(ctx.conf, "state_dir", SIFT_STATEDIR, &ctx.state_dir, ctx.diag);
		int rc = commands[i].fn(&ctx, argc - optind, argv + optind);
		conf_free(ctx.conf);
		diag_free(ctx.diag);
		return rc;
	}
	fprintf(stderr, "sift: unknown command '%s'\n", name);
	usage(stderr);
	return 2;
}
