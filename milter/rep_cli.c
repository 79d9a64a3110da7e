/*
 * rep_cli.c - `sift block`: publish block/allow entries to the shared list,
 * list the local mirror, export it for rbldnsd. With Redis configured an
 * entry goes to the stream first (every node, this one included, applies it
 * from there); without Redis it goes straight into the local mirror.
 */
#include "config.h"

#include "rep.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int usage(void)
{
	fprintf(
	    stderr,
	    "usage: sift block add IP|CIDR|DOMAIN [--reason TEXT] [--expire DURATION] [--allow]\n"
	    "       sift block del IP|CIDR|DOMAIN\n"
	    "       sift block list [--all]\n"
	    "       sift block export --rbldnsd [FILE]\n"
	    "       sift block sync\n");
	return 2;
}

static rep_mirror_t *open_mirror(const rep_config_t *rc, bool create)
{
	struct stat st;
	if (!create && stat(rc->mirror_dir, &st) != 0) {
		fprintf(stderr, "sift block: no block list mirror at %s\n", rc->mirror_dir);
		return NULL;
	}
	diag_t *d = diag_new();
	rep_mirror_t *m = rep_mirror_open(rc->mirror_dir, d);
	if (m == NULL)
		diag_print(d, stderr, 0);
	diag_free(d);
	return m;
}

static rep_link_t *open_link(const rep_config_t *rc, bool primary)
{
	rep_link_conf_t lc;
	rep_config_link(rc, !primary && rc->replica != NULL, &lc);
	lc.want_primary = primary;
	/* One attempt is all a command-line tool should spend. */
	lc.breaker_failures = 1;
	return rep_link_new(&lc);
}

/* Brings the mirror up to date without waiting for new entries; quiet on failure. */
static void catch_up(const rep_config_t *rc, rep_link_t *l, rep_mirror_t *m)
{
	for (int i = 0; i < 100; i++)
		if (rep_bl_sync(l, m, rc->prefix, 0) <= 0)
			break;
}

static void fmt_time(int64_t t, char *buf, size_t size)
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (t == 0) {
		snprintf(buf, size, "never");
		return;
	}
	gmtime_r(&tt, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int cmd_change(const rep_config_t *rc, int argc, char **argv, bool del)
{
	static const struct option opts[] = {{"reason", required_argument, NULL, 'r'},
	                                     {"expire", required_argument, NULL, 'e'},
	                                     {"allow", no_argument, NULL, 'a'},
	                                     {NULL, 0, NULL, 0}};
	rep_op_t op;
	char err[200], tgt[REP_DOMAIN_MAX_BYTES];
	int64_t dur = 0;
	int ch;

	memset(&op, 0, sizeof(op));
	op.del = del;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "r:e:a", opts, NULL)) != -1) {
		switch (ch) {
		case 'r': snprintf(op.e.reason, sizeof(op.e.reason), "%s", optarg); break;
		case 'e':
			if (rep_parse_duration(optarg, &dur) < 0) {
				fprintf(stderr,
				        "sift block: bad duration '%s' (e.g. 30m, 12h, 7d)\n",
				        optarg);
				return 2;
			}
			break;
		case 'a': op.e.allow = true; break;
		default: return usage();
		}
	}
	if (optind + 1 != argc)
		return usage();
	if (rep_target_parse(argv[optind], &op.e.target, err, sizeof(err)) < 0) {
		fprintf(stderr, "sift block: %s\n", err);
		return 2;
	}
	rep_target_format(&op.e.target, tgt, sizeof(tgt));
	op.e.added = time(NULL);
	op.e.expire = dur ? op.e.added + dur : 0;
	if (gethostname(op.e.by, sizeof(op.e.by)) != 0)
		snprintf(op.e.by, sizeof(op.e.by), "unknown");
	op.e.by[sizeof(op.e.by) - 1] = '\0';
	/* '|' separates the encoded fields; the reason is last and may hold it, "by" may not. */
	for (char *p = op.e.by; *p; p++)
		if (*p == '|')
			*p = '_';

	if (!rep_config_has_redis(rc)) {
		rep_mirror_t *m = open_mirror(rc, true);
		if (m == NULL)
			return 1;
		int n = rep_mirror_apply(m, &op, 1);
		rep_mirror_close(m);
		if (n < 0) {
			fprintf(stderr, "sift block: cannot update %s\n", rc->mirror_dir);
			return 1;
		}
		printf("%s %s (local mirror only: no Redis configured)\n",
		       del ? "deleted" : "added", tgt);
		return 0;
	}
	rep_link_t *l = open_link(rc, true);
	char id[REP_ID_MAX_BYTES];
	if (rep_bl_publish(l, rc->prefix, &op, rc->stream_max, id, sizeof(id)) < 0) {
		fprintf(stderr, "sift block: not published, Redis unavailable: %s\n",
		        rep_link_error(l)[0] ? rep_link_error(l) : "unexpected reply");
		rep_link_free(l);
		return 1;
	}
	printf("%s %s (stream id %s)\n", del ? "deleted" : "added", tgt, id);
	/* Our own mirror follows the stream like every node's; catch up now if we can. */
	struct stat st;
	if (stat(rc->mirror_dir, &st) == 0) {
		rep_mirror_t *m = open_mirror(rc, false);
		if (m) {
			catch_up(rc, l, m);
			rep_mirror_close(m);
		}
	}
	rep_link_free(l);
	return 0;
}

static int cmd_list(const rep_config_t *rc, int argc, char **argv)
{
	bool all = argc > 1 && strcmp(argv[1], "--all") == 0;
	rep_mirror_t *m = open_mirror(rc, false);
	rep_entry_t *e;
	size_t n;
	int64_t now = time(NULL);
	char last[REP_ID_MAX_BYTES];

	if (m == NULL)
		return 1;
	if (rep_config_has_redis(rc)) {
		rep_link_t *l = open_link(rc, false);
		catch_up(rc, l, m);
		rep_link_free(l);
	}
	if (rep_mirror_list(m, &e, &n) < 0) {
		rep_mirror_close(m);
		return 1;
	}
	rep_mirror_last_id(m, last, sizeof(last));
	printf("# target\tlist\texpires\tadded\tby\treason   (mirror at stream id %s)\n", last);
	for (size_t i = 0; i < n; i++) {
		char tgt[REP_DOMAIN_MAX_BYTES], exp[32], add[32];
		bool expired = rep_entry_expired(&e[i], now);
		if (expired && !all)
			continue;
		rep_target_format(&e[i].target, tgt, sizeof(tgt));
		fmt_time(e[i].expire, exp, sizeof(exp));
		fmt_time(e[i].added, add, sizeof(add));
		printf("%s\t%s\t%s%s\t%s\t%s\t%s\n", tgt, e[i].allow ? "allow" : "block", exp,
		       expired ? " (expired)" : "", add, e[i].by, e[i].reason);
	}
	free(e);
	rep_mirror_close(m);
	return 0;
}

static int cmd_export(const rep_config_t *rc, int argc, char **argv)
{
	const char *file = NULL;
	bool rbldnsd = false;
	rep_entry_t *e;
	size_t n;
	int rc_out;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--rbldnsd") == 0)
			rbldnsd = true;
		else if (argv[i][0] != '-' && file == NULL)
			file = argv[i];
		else
			return usage();
	}
	if (!rbldnsd)
		return usage(); /* the one format so far; the flag keeps room for others */
	rep_mirror_t *m = open_mirror(rc, false);
	if (m == NULL)
		return 1;
	if (rep_mirror_list(m, &e, &n) < 0) {
		rep_mirror_close(m);
		return 1;
	}
	rep_mirror_close(m);
	if (file == NULL || strcmp(file, "-") == 0) {
		rc_out = rep_export_rbldnsd(stdout, e, n, time(NULL));
	} else {
		/* Written beside and renamed: rbldnsd reloading meanwhile never sees half a file.
		 */
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", file, (long)getpid());
		FILE *fp = fopen(tmp, "w");
		if (fp == NULL) {
			perror(tmp);
			free(e);
			return 1;
		}
		rc_out = rep_export_rbldnsd(fp, e, n, time(NULL));
		if (fclose(fp) != 0)
			rc_out = -1;
		if (rc_out == 0 && rename(tmp, file) != 0) {
			perror(file);
			rc_out = -1;
		}
		if (rc_out != 0)
			unlink(tmp);
	}
	free(e);
	return rc_out == 0 ? 0 : 1;
}

static int cmd_sync(const rep_config_t *rc)
{
	if (!rep_config_has_redis(rc)) {
		fprintf(stderr, "sift block: no Redis configured\n");
		return 1;
	}
	rep_mirror_t *m = open_mirror(rc, true);
	if (m == NULL)
		return 1;
	rep_link_t *l = open_link(rc, false);
	int total = 0, n;
	while ((n = rep_bl_sync(l, m, rc->prefix, 0)) > 0 && total < 10000000)
		total += n;
	char last[REP_ID_MAX_BYTES];
	rep_mirror_last_id(m, last, sizeof(last));
	if (n < 0)
		fprintf(stderr, "sift block: Redis unavailable: %s\n", rep_link_error(l));
	else
		printf("applied %d operations, mirror at stream id %s\n", total, last);
	rep_link_free(l);
	rep_mirror_close(m);
	return n < 0 ? 1 : 0;
}

int rep_cmd_block(cli_ctx_t *ctx, int argc, char **argv)
{
	rep_config_t rc;

	if (argc < 2)
		return usage();
	if (rep_config_read(ctx->conf, ctx->state_dir, &rc, ctx->diag) < 0) {
		diag_print(ctx->diag, stderr, 0);
		return 1;
	}
	const char *sub = argv[1];
	if (strcmp(sub, "add") == 0)
		return cmd_change(&rc, argc - 1, argv + 1, false);
	if (strcmp(sub, "del") == 0)
		return cmd_change(&rc, argc - 1, argv + 1, true);
	if (strcmp(sub, "list") == 0)
		return cmd_list(&rc, argc - 1, argv + 1);
	if (strcmp(sub, "export") == 0)
		return cmd_export(&rc, argc - 1, argv + 1);
	if (strcmp(sub, "sync") == 0)
		return cmd_sync(&rc);
	return usage();
}
