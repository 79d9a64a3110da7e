/*
 * rep_cli.c - `sift block`: publish signed block/allow entries to the shared
 * list, list and export the local mirror, sync it explicitly, create a
 * publisher's key. With Redis configured an entry goes to the stream first
 * (every node, this one included, applies it from there); without Redis it
 * goes straight into the local mirror.
 */
#include "config.h"

#include "rep.h"
#include "xalloc.h"

#include <errno.h>
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
	    "       sift block add|del --from FILE [--reason TEXT] [--expire DURATION] [--allow]\n"
	    "       sift block del IP|CIDR|DOMAIN\n"
	    "       sift block list [--all] [--sync]\n"
	    "       sift block export --rbldnsd [FILE]\n"
	    "       sift block sync [--max-time DURATION]\n"
	    "       sift block keygen --out FILE [--name NAME]\n");
	return 2;
}

enum {
	SYNC_ATTEMPTS = 5,         /* consecutive failed steps before `block sync` gives up */
	SYNC_MAX_S_DEFAULT = 600,  /* its time bound: a 10,000-entry list at 64 kbit/s fits */
	SYNC_RETRY_MS = 500,       /* pause after a failed step */
	PUBLISH_CATCH_UP_STEPS = 3 /* own mirror after add/del: a few quick steps, no more */
};

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
	/* The CLI retries itself, boundedly; the link must not hold it in a long open circuit. */
	lc.breaker_failures = 1000;
	lc.breaker_open_ms = 0;
	return rep_link_new(&lc);
}

static long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Brings the mirror up to date without waiting for new entries: steps
 * until one brings nothing and no load is in progress, bounded by
 * max_steps, by `attempts` consecutive failures and by max_ms. Returns the
 * entries handled, or -1 if the last step failed.
 */
static long sync_until_done(const rep_config_t *rc, rep_link_t *l, rep_mirror_t *m, long max_steps,
                            int attempts, long max_ms)
{
	long total = 0, until = mono_ms() + max_ms;
	int fails = 0, n = 0;
	rep_load_t ls;

	for (long i = 0; i < max_steps && mono_ms() < until; i++) {
		n = rep_bl_sync(l, m, rc->prefix, &rc->bl, 0);
		if (n < 0) {
			if (++fails >= attempts)
				break;
			struct timespec ts = {.tv_sec = 0, .tv_nsec = SYNC_RETRY_MS * 1000000L};
			nanosleep(&ts, NULL);
			continue;
		}
		fails = 0;
		total += n;
		if (n == 0 && rep_mirror_load_state(m, &ls) == 0)
			break;
	}
	return n < 0 ? -1 : total;
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

/*
 * The targets of one add/del: the argument, or every line of --from FILE
 * ("-" for stdin; blank lines and # comments skipped). All are checked
 * before anything is published, so a list with a bad line changes nothing.
 */
struct targets {
	rep_target_t *t;
	size_t n, cap;
};

static int targets_add(struct targets *ts, const char *s, const char *file, unsigned line)
{
	char err[300];
	if (ts->n == ts->cap) {
		ts->cap = ts->cap ? 2 * ts->cap : 64;
		ts->t = xalloc_realloc(ts->t, ts->cap * sizeof(*ts->t));
	}
	if (rep_target_parse(s, &ts->t[ts->n], err, sizeof(err)) < 0) {
		if (file)
			fprintf(stderr, "%s:%u: %s\n", file, line, err);
		else
			fprintf(stderr, "sift block: %s\n", err);
		return -1;
	}
	ts->n++;
	return 0;
}

static int targets_read(struct targets *ts, const char *path)
{
	FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char buf[1024];
	unsigned line = 0;
	int bad = 0;
	if (fp == NULL) {
		fprintf(stderr, "sift block: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(buf, sizeof(buf), fp)) {
		line++;
		char *p = buf, *e;
		while (*p == ' ' || *p == '\t')
			p++;
		for (e = p; *e && *e != '\n' && *e != '\r' && *e != '#' && *e != ' ' && *e != '\t';
		     e++)
			;
		if (e == p)
			continue;
		*e = '\0';
		if (targets_add(ts, p, path, line) < 0)
			bad = -1;
	}
	if (fp != stdin)
		fclose(fp);
	return bad;
}

static int cmd_change(const rep_config_t *rc, int argc, char **argv, bool del)
{
	static const struct option opts[] = {{"reason", required_argument, NULL, 'r'},
	                                     {"expire", required_argument, NULL, 'e'},
	                                     {"allow", no_argument, NULL, 'a'},
	                                     {"from", required_argument, NULL, 'f'},
	                                     {NULL, 0, NULL, 0}};
	rep_op_t op;
	char err[300], tgt[REP_DOMAIN_MAX_BYTES];
	const char *from = NULL;
	struct targets ts = {0};
	int64_t dur = 0;
	int ch, rc_out = 0;

	memset(&op, 0, sizeof(op));
	op.del = del;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "r:e:af:", opts, NULL)) != -1) {
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
		case 'f': from = optarg; break;
		default: return usage();
		}
	}
	if (from ? optind != argc : optind + 1 != argc)
		return usage();
	if ((from ? targets_read(&ts, from) : targets_add(&ts, argv[optind], NULL, 0)) < 0) {
		free(ts.t);
		return 2;
	}
	if (ts.n == 0) {
		fprintf(stderr, "sift block: %s names no entry\n", from);
		free(ts.t);
		return 2;
	}
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	/* Each operation a stamp of its own: per target the newest stamp wins. */
	uint64_t stamp0 = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
	op.e.added = (int64_t)now.tv_sec;
	op.e.expire = dur ? op.e.added + dur : 0;
	if (strchr(op.e.reason, '\n') || strchr(op.e.reason, '\t')) {
		fprintf(stderr, "sift block: the reason must be one line\n");
		free(ts.t);
		return 2;
	}

	if (!rep_config_has_redis(rc)) {
		if (gethostname(op.e.by, sizeof(op.e.by)) != 0)
			snprintf(op.e.by, sizeof(op.e.by), "unknown");
		op.e.by[sizeof(op.e.by) - 1] = '\0';
		/* '|' separates the encoded fields; the reason is last and may hold it, "by" not.
		 */
		for (char *p = op.e.by; *p; p++)
			if (*p == '|')
				*p = '_';
		rep_mirror_t *m = open_mirror(rc, true);
		if (m == NULL) {
			free(ts.t);
			return 1;
		}
		for (size_t i = 0; i < ts.n && rc_out == 0; i++) {
			op.e.target = ts.t[i];
			op.e.stamp = stamp0 + i;
			if (rep_mirror_apply(m, &op, 1) < 0) {
				fprintf(stderr, "sift block: cannot update %s\n", rc->mirror_dir);
				rc_out = 1;
			} else if (from == NULL) {
				rep_target_format(&op.e.target, tgt, sizeof(tgt));
				printf("%s %s (local mirror only: no Redis configured)\n",
				       del ? "deleted" : "added", tgt);
			}
		}
		rep_mirror_close(m);
		if (from && rc_out == 0)
			printf("%s %zu entries (local mirror only: no Redis configured)\n",
			       del ? "deleted" : "added", ts.n);
		free(ts.t);
		return rc_out;
	}
	/* Shared entries are accepted by the other nodes only when signed. */
	if (rc->bl.signing_key == NULL) {
		fprintf(stderr, "sift block: publishing to the shared list needs block_signing_key "
		                "(create one with `sift block keygen`)\n");
		free(ts.t);
		return 1;
	}
	rep_signer_t signer;
	if (rep_signer_load(rc->bl.signing_key, &signer, err, sizeof(err)) < 0) {
		fprintf(stderr, "sift block: block_signing_key: %s\n", err);
		free(ts.t);
		return 1;
	}
	snprintf(op.e.by, sizeof(op.e.by), "%s", signer.name);
	bool known = false;
	for (size_t i = 0; i < rc->bl.n_trusted; i++)
		known |= strcmp(rc->bl.trusted[i].name, signer.name) == 0;
	if (!known)
		fprintf(stderr,
		        "sift block: warning: '%s' is not among this node's block_trusted_key "
		        "lines; nodes that do not trust it ignore the entry\n",
		        signer.name);
	rep_link_t *l = open_link(rc, true);
	char id[REP_ID_MAX_BYTES] = "";
	size_t done = 0;
	for (size_t i = 0; i < ts.n; i++) {
		op.e.target = ts.t[i];
		op.e.stamp = stamp0 + i;
		rep_target_format(&op.e.target, tgt, sizeof(tgt));
		if (known && !del && rep_target_too_broad(&op.e.target, &rc->bl))
			fprintf(
			    stderr,
			    "sift block: warning: %s is broader than block_min_prefix4/6 or a "
			    "public suffix; nodes ignore it unless they trust '%s' with 'broad'\n",
			    tgt, signer.name);
		if (rep_bl_publish(l, rc->prefix, &op, &signer, rc->stream_max, id, sizeof(id)) <
		    0) {
			fprintf(stderr,
			        "sift block: %s not published (%zu of %zu were), Redis "
			        "unavailable: %s\n",
			        tgt, done, ts.n,
			        rep_link_error(l)[0] ? rep_link_error(l) : "unexpected reply");
			rc_out = 1;
			break;
		}
		done++;
		if (from == NULL)
			printf("%s %s (stream id %s)\n", del ? "deleted" : "added", tgt, id);
	}
	rep_signer_wipe(&signer);
	free(ts.t);
	if (from && done > 0)
		printf("%s %zu entries (last stream id %s)\n", del ? "deleted" : "added", done, id);
	if (rc_out != 0) {
		rep_link_free(l);
		return rc_out;
	}
	/* Our own mirror follows the stream like every node's; catch up now if that is quick. */
	struct stat st;
	if (stat(rc->mirror_dir, &st) == 0) {
		rep_mirror_t *m = open_mirror(rc, false);
		if (m) {
			sync_until_done(rc, l, m, PUBLISH_CATCH_UP_STEPS, 1, 5000);
			rep_mirror_close(m);
		}
	}
	rep_link_free(l);
	return 0;
}

static int cmd_sync(const rep_config_t *rc, int argc, char **argv);

/* The local mirror only: listing never crosses the link unless asked to (--sync). */
static int cmd_list(const rep_config_t *rc, int argc, char **argv)
{
	bool all = false;
	rep_entry_t *e;
	size_t n;
	int64_t now = time(NULL);
	char last[REP_ID_MAX_BYTES];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0) {
			all = true;
		} else if (strcmp(argv[i], "--sync") == 0) {
			char *sargv[] = {"sync", NULL};
			int r = cmd_sync(rc, 1, sargv);
			if (r != 0)
				return r;
		} else {
			return usage();
		}
	}
	rep_mirror_t *m = open_mirror(rc, false);
	if (m == NULL)
		return 1;
	if (rep_mirror_list(m, &e, &n) < 0) {
		rep_mirror_close(m);
		return 1;
	}
	rep_mirror_last_id(m, last, sizeof(last));
	rep_load_t ls;
	bool loading = rep_mirror_load_state(m, &ls) == 1;
	printf("# target\tlist\texpires\tadded\tby\treason   (mirror at stream id %s%s)\n", last,
	       loading ? ", first load in progress" : "");
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

static int cmd_sync(const rep_config_t *rc, int argc, char **argv)
{
	int64_t max_s = SYNC_MAX_S_DEFAULT;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--max-time") == 0 && i + 1 < argc &&
		    rep_parse_duration(argv[i + 1], &max_s) == 0 && max_s > 0)
			i++;
		else
			return usage();
	}
	if (!rep_config_has_redis(rc)) {
		fprintf(stderr, "sift block: no Redis configured\n");
		return 1;
	}
	rep_mirror_t *m = open_mirror(rc, true);
	if (m == NULL)
		return 1;
	rep_link_t *l = open_link(rc, false);
	long total = sync_until_done(rc, l, m, 10000000L, SYNC_ATTEMPTS, (long)max_s * 1000);
	char last[REP_ID_MAX_BYTES];
	rep_load_t ls;
	rep_mirror_last_id(m, last, sizeof(last));
	bool loading = rep_mirror_load_state(m, &ls) == 1;
	if (total < 0)
		fprintf(stderr, "sift block: Redis unavailable: %s\n", rep_link_error(l));
	else
		printf("handled %ld entries, mirror at stream id %s%s\n", total, last,
		       loading ? " (snapshot load not finished: run again)" : "");
	rep_link_free(l);
	rep_mirror_close(m);
	return total < 0 || loading ? 1 : 0;
}

static int cmd_keygen(int argc, char **argv)
{
	static const struct option opts[] = {{"out", required_argument, NULL, 'o'},
	                                     {"name", required_argument, NULL, 'n'},
	                                     {NULL, 0, NULL, 0}};
	const char *out = NULL;
	char name[REP_KEYNAME_MAX_BYTES + 1] = "", line[200], err[300];
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "o:n:", opts, NULL)) != -1) {
		switch (ch) {
		case 'o': out = optarg; break;
		case 'n': snprintf(name, sizeof(name), "%s", optarg); break;
		default: return usage();
		}
	}
	if (out == NULL || optind != argc)
		return usage();
	if (name[0] == '\0') {
		/* The short host name: what an operator recognises in `block list`. */
		if (gethostname(name, sizeof(name)) != 0)
			snprintf(name, sizeof(name), "publisher");
		name[sizeof(name) - 1] = '\0';
		name[strcspn(name, ".")] = '\0';
	}
	if (rep_sign_keygen(out, name, line, sizeof(line), err, sizeof(err)) < 0) {
		fprintf(stderr, "sift block keygen: %s\n", err);
		return 1;
	}
	printf("# secret key written to %s; on this node: block_signing_key = %s\n"
	       "# on every node that is to accept this publisher's entries (append ' broad'\n"
	       "# to allow entries broader than block_min_prefix4/6 or public suffixes):\n%s\n",
	       out, out, line);
	return 0;
}

int rep_cmd_block(cli_ctx_t *ctx, int argc, char **argv)
{
	rep_config_t rc;

	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "keygen") == 0)
		return cmd_keygen(argc - 1, argv + 1); /* needs no configuration */
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
		return cmd_sync(&rc, argc - 1, argv + 1);
	return usage();
}
