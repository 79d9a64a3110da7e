/* Tests of the pipeline: generations, scoring end to end, reload rules. */
#define _GNU_SOURCE /* pthread_getname_np, RTLD_NEXT */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include <unistd.h>

#include "bayes.h"
#include "hits_check.h"
#include "scan.h"
#include "unit_util.h"

static char state_dir[UNIT_DIR_MAX];

static void setup(void)
{
	unit_mkdtemp(state_dir, sizeof(state_dir), "sift-test-scan");
}

static void teardown(void)
{
	char cmd[UNIT_PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state_dir);
	cr_assert_eq(system(cmd), 0);
}

static bool gen_online; /* build the daemon's generation, not sift check's */

static scan_gen_t *gen_from(const char *text, diag_t *d)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "state_dir = %s\nrules = %s/scan/test.cf\n%s", state_dir,
	         TEST_DATADIR, text);
	conf_t *c = conf_parse("test.conf", buf, d);
	cr_assert_not_null(c);
	ev_env_t env = {.state_dir = NULL, .offline = !gen_online};
	scan_gen_t *g = scan_gen_load(c, NULL, &env, d);
	if (g != NULL && scan_gen_start(g, &env, d) != 0) {
		scan_gen_unref(g);
		return NULL;
	}
	return g;
}

static scan_result_t *score_file(scan_gen_t *g, const char *name, msg_t **mp)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/scan/%s", TEST_DATADIR, name);
	size_t len;
	char *data = scan_read_file(path, &len);
	cr_assert_not_null(data, "%s", path);
	ev_conn_info_t ci = {"192.0.2.1", NULL};
	scan_conn_t *c = scan_conn_begin(g, &ci);
	msg_t *m = scan_msg_new(c);
	scan_msg_raw(c, m, data, len);
	free(data);
	scan_envelope(c, m);
	scan_opts_t o = {.explain = true};
	scan_result_t *r = scan_score(c, m, &o);
	scan_conn_end(c);
	*mp = m;
	return r;
}

Test(scan, spam_scores_rules_and_meta_then_rejects, .init = setup, .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g = gen_from("reject_score = 15\n", d);
	cr_assert_not_null(g, "%s", diag_count(d) ? diag_text(d, 0) : "");
	msg_t *m;
	scan_result_t *r = score_file(g, "spam.eml", &m);
	cr_assert(hits_has(r->hits, "SCAN_SUBJ_WIN"));
	cr_assert(hits_has(r->hits, "SCAN_BODY_CASH"));
	cr_assert(hits_has(r->hits, "SCAN_BOTH"));
	cr_assert_geq(r->score, 16.0);
	cr_assert_eq(r->action, VERDICT_REJECT);
	/* Hits come sorted by weight: the meta first. */
	cr_assert_str_eq(hits_at(r->hits, 0)->name, "SCAN_BOTH");
	msg_free(m);
	scan_gen_unref(g);
	diag_free(d);
}

Test(scan, ham_is_accepted, .init = setup, .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g = gen_from("", d);
	cr_assert_not_null(g);
	msg_t *m;
	scan_result_t *r = score_file(g, "ham.eml", &m);
	cr_assert_not(hits_has(r->hits, "SCAN_BODY_CASH"));
	cr_assert_lt(r->score, 5.0);
	cr_assert_eq(r->action, VERDICT_ACCEPT);
	msg_free(m);
	scan_gen_unref(g);
	diag_free(d);
}

/*
 * body_part_scan_size reaches the body rules: cut after the first line,
 * the text asking to claim cash is not scanned; by default it is.
 */
Test(scan, body_part_scan_size_bounds_what_body_rules_see, .init = setup, .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g = gen_from("body_part_scan_size = 20\n", d);
	cr_assert_not_null(g, "%s", diag_count(d) ? diag_text(d, 0) : "");
	msg_t *m;
	scan_result_t *r = score_file(g, "late_cash.eml", &m);
	cr_assert_not(hits_has(r->hits, "SCAN_BODY_CASH"));
	cr_assert(hits_note_says(r->hits, "body_part_scan_size"), "the cut is said");
	msg_free(m);
	scan_gen_unref(g);

	g = gen_from("", d);
	cr_assert_not_null(g);
	r = score_file(g, "late_cash.eml", &m);
	cr_assert(hits_has(r->hits, "SCAN_BODY_CASH"));
	cr_assert_not(hits_note_says(r->hits, "body_part_scan_size"));
	msg_free(m);
	scan_gen_unref(g);

	cr_assert_null(gen_from("rawbody_part_scan_size = lots\n", d));
	cr_assert_gt(diag_count(d), 0);
	cr_assert(strstr(diag_text(d, diag_count(d) - 1), "test.conf:3:") != NULL, "%s",
	          diag_text(d, diag_count(d) - 1));
	diag_free(d);
}

/*
 * A sender may write tens of thousands of fields (an MTA limits only the
 * hops): past max_header_fields they are passed on, counted and said, not
 * scored, so SpamAssassin's rules that pair one field with every later one
 * cost the square of the limit, not of what the sender wrote.
 */
Test(scan, header_past_max_header_fields_or_size_is_said_and_not_scored, .init = setup,
     .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g = gen_from("max_header_fields = 12\n", d);
	cr_assert_not_null(g, "%s", diag_count(d) ? diag_text(d, 0) : "");
	char raw[8192];
	size_t n = 0;
	for (int i = 0; i < 20; i++)
		n += (size_t)snprintf(raw + n, sizeof(raw) - n, "X-Pad-%d: %d\n", i, i);
	snprintf(raw + n, sizeof(raw) - n, "Subject: you are a winner\n\nclaim your cash\n");
	ev_conn_info_t ci = {"192.0.2.1", NULL};
	scan_conn_t *c = scan_conn_begin(g, &ci);
	msg_t *m = scan_msg_new(c);
	scan_msg_raw(c, m, raw, strlen(raw));
	scan_opts_t o = {.explain = true};
	scan_result_t *r = scan_score(c, m, &o);
	cr_assert(hits_has(r->hits, "SCAN_BODY_CASH"), "the body is scored");
	cr_assert_not(hits_has(r->hits, "SCAN_SUBJ_WIN"), "the 21st field is not");
	cr_assert(hits_note_says(r->hits, "9 header field(s) past max_header_fields (12)"));
	cr_assert(mime_flags(r->mime) & MIME_F_FIELD_LIMIT);
	scan_conn_end(c);
	msg_free(m);
	scan_gen_unref(g);

	g = gen_from("", d);
	cr_assert_not_null(g);
	msg_t *m2;
	r = score_file(g, "spam.eml", &m2);
	cr_assert_not(hits_note_says(r->hits, "max_header_fields"), "1000 by default");
	msg_free(m2);
	scan_gen_unref(g);

	/* bytes: a 2 KB field past a 1 KB limit, and the Subject after it */
	g = gen_from("max_header_size = 1K\n", d);
	cr_assert_not_null(g);
	n = (size_t)snprintf(raw, sizeof(raw), "X-Big: ");
	memset(raw + n, 'x', 2048);
	n += 2048;
	snprintf(raw + n, sizeof(raw) - n, "\nSubject: you are a winner\n\nclaim your cash\n");
	c = scan_conn_begin(g, &ci);
	m = scan_msg_new(c);
	scan_msg_raw(c, m, raw, strlen(raw));
	r = scan_score(c, m, &o);
	cr_assert(hits_has(r->hits, "SCAN_BODY_CASH"));
	cr_assert_not(hits_has(r->hits, "SCAN_SUBJ_WIN"));
	cr_assert(hits_note_says(r->hits, "max_header_size (1024 bytes)"));
	scan_conn_end(c);
	msg_free(m);
	scan_gen_unref(g);

	cr_assert_null(gen_from("max_header_fields = 5\n", d), "fewer than 10 is refused");
	cr_assert(strstr(diag_text(d, diag_count(d) - 1), "test.conf:3:") != NULL, "%s",
	          diag_text(d, diag_count(d) - 1));
	cr_assert_null(gen_from("max_header_size = 100\n", d), "less than 1K is refused");
	cr_assert(strstr(diag_text(d, diag_count(d) - 1), "test.conf:3: max_header_size") != NULL,
	          "%s", diag_text(d, diag_count(d) - 1));
	diag_free(d);
}

Test(scan, unknown_key_fails_the_generation_with_its_line, .init = setup, .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g = gen_from("reject_scroe = 3\n", d);
	cr_assert_null(g);
	bool found = false;
	for (size_t i = 0; i < diag_count(d); i++)
		if (strstr(diag_text(d, i), "test.conf:3: unknown key 'reject_scroe'"))
			found = true;
	cr_assert(found);
	diag_free(d);
}

Test(scan, published_generation_outlives_its_replacement_while_referenced, .init = setup,
     .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g1 = gen_from("", d);
	scan_gen_publish(g1);
	scan_gen_unref(g1);
	scan_gen_t *held = scan_gen_acquire();
	cr_assert_eq(held, g1);
	scan_gen_t *g2 = gen_from("add_header_score = 1\n", d);
	scan_gen_publish(g2);
	scan_gen_unref(g2);
	/* The connection that took g1 still scores with g1's policy. */
	msg_t *m;
	scan_result_t *r = score_file(held, "ham.eml", &m);
	cr_assert_eq(r->action, VERDICT_ACCEPT);
	msg_free(m);
	scan_gen_unref(held);
	scan_gen_t *now = scan_gen_acquire();
	cr_assert_eq(now, g2);
	cr_assert_float_eq(scan_gen_policy(now)->threshold[VERDICT_ADD_HEADER], 1.0, 1e-9);
	scan_gen_unref(now);
	diag_free(d);
}

Test(scan, relative_pid_file_lives_in_the_state_dir, .init = setup, .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g = gen_from("pid_file = my.pid\n", d);
	cr_assert_not_null(g);
	char want[512];
	snprintf(want, sizeof(want), "%s/my.pid", state_dir);
	cr_assert_str_eq(scan_gen_settings(g)->pid_file, want);
	scan_gen_unref(g);
	diag_free(d);
}

Test(scan, every_error_is_reported_not_just_the_first, .init = setup, .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g = gen_from("rules = /nonexistent/rules.cf\nno_such_key = 1\n", d);
	cr_assert_null(g);
	bool rules_err = false, key_err = false;
	for (size_t i = 0; i < diag_count(d); i++) {
		if (strstr(diag_text(d, i), "/nonexistent/rules.cf"))
			rules_err = true;
		if (strstr(diag_text(d, i), "test.conf:4: unknown key 'no_such_key'"))
			key_err = true;
	}
	cr_assert(rules_err);
	cr_assert(key_err);
	diag_free(d);
}

struct walk_log {
	char seen[8][256];
	int n, fails, last_err;
};

static int walk_visit(const char *file, void *ud)
{
	struct walk_log *w = ud;
	if (w->n < 8)
		snprintf(w->seen[w->n], sizeof(w->seen[0]), "%s", file + strlen(state_dir));
	w->n++;
	return 0;
}

static void walk_fail(const char *path, int err, void *ud)
{
	struct walk_log *w = ud;
	w->fails++;
	w->last_err = err;
}

static void touch(const char *rel)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", state_dir, rel);
	FILE *fp = fopen(p, "w");
	cr_assert_not_null(fp, "%s", p);
	fclose(fp);
}

/*
 * fstat() as libsift calls it (the headers give both the same symbol, fstat64 under
 * _FILE_OFFSET_BITS=64); when asked, the next call fails with EIO after leaving a
 * directory's mode in the buffer, as stack garbage might.
 */
static int fstat_fail_next;

int fstat(int fd, struct stat *st)
{
	if (fstat_fail_next) {
		fstat_fail_next = 0;
		st->st_mode = S_IFDIR | 0755;
		errno = EIO;
		return -1;
	}
#if defined(_FILE_OFFSET_BITS) && _FILE_OFFSET_BITS == 64
	static const char real_name[] = "fstat64";
#else
	static const char real_name[] = "fstat";
#endif
	int (*real)(int, struct stat *) = (int (*)(int, struct stat *))dlsym(RTLD_NEXT, real_name);
	return real(fd, st);
}

Test(scan, read_file_reports_the_fstat_error_not_a_stale_mode)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/scan/test.cf", TEST_DATADIR);
	size_t len;
	fstat_fail_next = 1;
	errno = 0;
	char *data = scan_read_file(path, &len);
	int e = errno;
	cr_assert_eq(fstat_fail_next, 0, "scan_read_file did not call fstat");
	cr_assert_null(data);
	cr_assert_eq(e, EIO, "errno %d (%s), want EIO", e, strerror(e));
	data = scan_read_file(path, &len);
	cr_assert_not_null(data, "a working fstat reads the file");
	free(data);
	errno = 0;
	cr_assert_null(scan_read_file("/dev/null", &len));
	cr_assert_eq(errno, EINVAL, "not a regular file: errno %d", errno);
}

Test(scan, walk_visits_files_sorted_skipping_dot_files_and_bounds_depth, .init = setup,
     .fini = teardown)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/b", state_dir);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/b/deep", state_dir);
	cr_assert_eq(mkdir(p, 0755), 0);
	touch("c.eml");
	touch("a.eml");
	touch(".hidden");
	touch("b/x.eml");
	touch("b/deep/y.eml");
	struct walk_log w = {0};
	scan_walk(state_dir, 2, walk_visit, walk_fail, &w);
	cr_assert_eq(w.n, 3);
	cr_assert_str_eq(w.seen[0], "/a.eml");
	cr_assert_str_eq(w.seen[1], "/b/x.eml");
	cr_assert_str_eq(w.seen[2], "/c.eml");
	/* b/deep is a third level: refused, and said so. */
	cr_assert_eq(w.fails, 1);
	cr_assert_eq(w.last_err, ELOOP);
	struct walk_log m = {0};
	snprintf(p, sizeof(p), "%s/missing", state_dir);
	scan_walk(p, 2, walk_visit, walk_fail, &m);
	cr_assert_eq(m.n, 0);
	cr_assert_eq(m.last_err, ENOENT);
}

/*
 * A directory with nothing to visit (empty, or dot-files only) is no
 * error. It once went to qsort() as a null array of 0 names, which C
 * leaves undefined; the sanitizer build stopped on it.
 */
Test(scan, walk_of_a_directory_with_nothing_to_visit_visits_nothing, .init = setup,
     .fini = teardown)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/empty", state_dir);
	cr_assert_eq(mkdir(p, 0755), 0);
	struct walk_log w = {0};
	scan_walk(p, 2, walk_visit, walk_fail, &w);
	cr_assert_eq(w.n, 0);
	cr_assert_eq(w.fails, 0);
	touch("empty/.hidden");
	struct walk_log h = {0};
	scan_walk(p, 2, walk_visit, walk_fail, &h);
	cr_assert_eq(h.n, 0);
	cr_assert_eq(h.fails, 0);
}

/* What a module thread sees: its signal mask and its name. */
struct thread_view {
	sigset_t mask;
	char name[32];
};

static void *thread_look(void *arg)
{
	struct thread_view *v = arg;
	pthread_sigmask(SIG_BLOCK, NULL, &v->mask);
	pthread_getname_np(pthread_self(), v->name, sizeof(v->name));
	return NULL;
}

Test(threads, module_threads_block_the_daemons_signals_and_carry_a_name)
{
	/* The caller blocks nothing, as main did before it blocked its signals. */
	sigset_t none, before, after;
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, &before);
	struct thread_view v;
	pthread_t t;
	cr_assert_eq(ev_thread_start(&t, "sift-test-thr", thread_look, &v), 0);
	pthread_join(t, NULL);
	int sigs[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		cr_assert(sigismember(&v.mask, sigs[i]), "signal %d reaches the thread", sigs[i]);
	cr_assert_str_eq(v.name, "sift-test-thr");
	pthread_sigmask(SIG_SETMASK, NULL, &after);
	cr_assert_not(sigismember(&after, SIGHUP), "the caller's mask changed");
	pthread_sigmask(SIG_SETMASK, &before, NULL);
}

/* ------------------------------------------------------------ one pipeline */

Test(scan, forged_verdict_field_in_a_file_is_not_scored, .init = setup, .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g = gen_from("", d);
	cr_assert_not_null(g);
	msg_t *m;
	scan_result_t *r = score_file(g, "forged.eml", &m);
	/* The daemon never lets X-Spam-Flag reach the rules; the file path must not either. */
	cr_assert_not(hits_has(r->hits, "SCAN_FORGED_FLAG"));
	cr_assert_float_eq(r->score, 0.0, 1e-9);
	cr_assert_null(msg_header_get(m, "X-Spam-Flag", 0));
	cr_assert_null(msg_header_get(m, "X-Spam-Status", 0));
	cr_assert_str_eq(msg_header_get(m, "Subject", 0), "Pre-judged, as the sender would like");
	msg_free(m);
	scan_gen_unref(g);
	diag_free(d);
}

Test(scan, header_policy_follows_the_configured_prefix, .init = setup, .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g = gen_from("header_prefix = X-Sift\n", d);
	cr_assert_not_null(g);
	scan_conn_t *c = scan_conn_begin(g, NULL);
	msg_t *m = scan_msg_new(c);
	/* The milter's path: one field at a time, told which ones are ours. */
	cr_assert_not(scan_header(c, m, "X-Sift-Flag", "YES"));
	cr_assert_not(scan_header(c, m, "x-sift-status", "No"));
	cr_assert(scan_header(c, m, "X-Spam-Flag", "YES"));
	cr_assert(scan_header(c, m, "Subject", "hello"));
	cr_assert_eq(msg_header_count(m), 2);
	scan_opts_t o = {0};
	scan_result_t *r = scan_score(c, m, &o);
	/* Under another prefix X-Spam-Flag is anybody's field, and scored. */
	cr_assert(hits_has(r->hits, "SCAN_FORGED_FLAG"));
	msg_free(m);
	scan_conn_end(c);
	scan_gen_unref(g);
	diag_free(d);
}

/* A message whose body runs far past max_message_size = 1K. */
static void write_big(const char *path)
{
	FILE *fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fprintf(fp, "From: a@example.org\nTo: b@example.net\nSubject: big\n"
	            "X-Spam-Flag: YES\n\n");
	for (int i = 0; i < 400; i++)
		fprintf(fp, "word%04d filler%04d\n", i, i);
	fclose(fp);
}

static int learn_as(const char *conf_text, const char *class, const char *file, diag_t *d)
{
	conf_t *c = conf_parse("learn.conf", conf_text, d);
	cr_assert_not_null(c);
	cli_ctx_t ctx = {.conf = c, .state_dir = state_dir, .diag = d};
	char *argv[] = {"learn", (char *)class, (char *)file, NULL};
	optind = 0;
	int rc = bayes_cmd_learn(&ctx, 3, argv);
	conf_free(ctx.conf);
	return rc;
}

static int learn(const char *conf_text, const char *file, diag_t *d)
{
	return learn_as(conf_text, "--spam", file, d);
}

Test(scan, learn_tokens_are_the_scored_tokens_of_a_cut_message, .init = setup, .fini = teardown)
{
	char conf[1024], big[512];
	snprintf(big, sizeof(big), "%s/big.eml", state_dir);
	write_big(big);
	snprintf(conf, sizeof(conf),
	         "state_dir = %s\nrules = %s/scan/test.cf\nmax_message_size = 1K\n"
	         "mime_max_text = 1K\nbayes_map_size = 1M\n",
	         state_dir, TEST_DATADIR);
	diag_t *d = diag_new();
	cr_assert_eq(learn(conf, big, d), 0, "%s", diag_count(d) ? diag_text(d, 0) : "");

	/* What scoring sees of the same file under the same configuration. */
	scan_gen_t *g = gen_from("max_message_size = 1K\nmime_max_text = 1K\n", d);
	cr_assert_not_null(g);
	scan_conn_t *c = scan_conn_begin(g, NULL);
	msg_t *m = scan_msg_new(c);
	size_t len;
	char *data = scan_read_file(big, &len);
	scan_msg_raw(c, m, data, len);
	free(data);
	cr_assert(msg_truncated(m));
	bayes_tokens_t tok;
	bayes_tokenize(m, scan_mime(c, m), false, &tok);

	char db[512];
	snprintf(db, sizeof(db), "%s/bayes", state_dir);
	int err;
	bayes_store_t *s = bayes_store_open(db, 1 << 20, 0, &err);
	cr_assert_not_null(s, "%s", bayes_strerror(err));
	bayes_stats_t st;
	cr_assert_eq(bayes_store_stats(s, &st), BAYES_OK);
	cr_assert_eq(st.totals.spam, 1);
	cr_assert_eq(st.tokens, tok.n, "learned %llu tokens, scoring sees %zu",
	             (unsigned long long)st.tokens, tok.n);
	bayes_store_unref(s);
	msg_free(m);
	scan_conn_end(c);
	scan_gen_unref(g);
	diag_free(d);
}

Test(scan, learn_refuses_what_scoring_refuses, .init = setup, .fini = teardown)
{
	char big[512];
	snprintf(big, sizeof(big), "%s/big.eml", state_dir);
	write_big(big);
	static const char *const keys[] = {"max_message_size = 3G", "mime_max_text = 3G"};
	for (size_t i = 0; i < 2; i++) {
		char conf[1024];
		snprintf(conf, sizeof(conf), "state_dir = %s\nrules = %s/scan/test.cf\n%s\n",
		         state_dir, TEST_DATADIR, keys[i]);
		diag_t *dl = diag_new(), *dc = diag_new();
		scan_gen_t *g = gen_from(keys[i], dc);
		cr_assert_null(g, "scoring accepts %s", keys[i]);
		cr_assert_eq(learn(conf, big, dl), 1, "learning accepts %s", keys[i]);
		cr_assert_gt(diag_count(dl), 0);
		diag_free(dl);
		diag_free(dc);
	}
}

/*
 * A generation over a store that learned one spam (fixture file) and must
 * learn one of each class to vote; conf gets the configuration learning uses.
 */
static scan_gen_t *gen_silent_store(const char *file, const char *extra, char *conf,
                                    size_t conf_size, diag_t *d)
{
	char path[512], text[512];
	snprintf(conf, conf_size, "state_dir = %s\nrules = %s/scan/test.cf\nbayes_map_size = 1M\n",
	         state_dir, TEST_DATADIR);
	snprintf(path, sizeof(path), "%s/scan/%s", TEST_DATADIR, file);
	cr_assert_eq(learn(conf, path, d), 0, "%s", diag_count(d) ? diag_text(d, 0) : "");
	snprintf(text, sizeof(text),
	         "bayes_min_spam = 1\nbayes_min_ham = 1\nbayes_map_size = 1M\n%s", extra);
	scan_gen_t *g = gen_from(text, d);
	cr_assert_not_null(g, "%s", diag_count(d) ? diag_text(d, 0) : "");
	return g;
}

/*
 * A store that cannot vote yet is not tokenized against message after
 * message (bayes.c looks at its totals first): once it has learned enough,
 * the next message must see it vote, with no reload in between.
 */
Test(scan, a_store_that_could_not_vote_votes_as_soon_as_it_can, .init = setup, .fini = teardown)
{
	char conf[1024], ham[512];
	snprintf(ham, sizeof(ham), "%s/scan/ham.eml", TEST_DATADIR);
	diag_t *d = diag_new();
	scan_gen_t *g = gen_silent_store("spam.eml", "", conf, sizeof(conf), d);
	for (int i = 0; i < 3; i++) {
		msg_t *m;
		scan_result_t *r = score_file(g, "ham.eml", &m);
		cr_assert_null(r->failed);
		double p;
		cr_assert_not(hits_metric(r->hits, "bayes_prob", &p),
		              "voted with no ham learned (%d)", i);
		cr_assert(hits_note_says(r->hits, "not voting: learned 1 spam and 0 ham"),
		          "message %d: no note of why Bayes is silent", i);
		msg_free(m);
	}
	cr_assert_eq(learn_as(conf, "--ham", ham, d), 0, "%s",
	             diag_count(d) ? diag_text(d, 0) : "");
	msg_t *m;
	scan_result_t *r = score_file(g, "ham.eml", &m);
	cr_assert_null(r->failed);
	double p;
	cr_assert(hits_metric(r->hits, "bayes_prob", &p),
	          "the store learned a ham and still does not vote");
	cr_assert_lt(p, 0.5, "ham.eml, learned as ham, scored P(spam) %g", p);
	msg_free(m);
	scan_gen_unref(g);
	diag_free(d);
}

/*
 * A store made by another tokenizer (here loaded from a dump that says so)
 * does not vote and says why, on the message that finds it so and on the
 * next ones, which read its totals alone.
 */
Test(scan, a_store_of_another_tokenizer_does_not_vote_and_says_why, .init = setup,
     .fini = teardown)
{
	char db[512];
	snprintf(db, sizeof(db), "%s/bayes", state_dir);
	int err;
	bayes_store_t *s = bayes_store_open(db, 1 << 20, BAYES_OPEN_CREATE, &err);
	cr_assert_not_null(s, "%s", bayes_strerror(err));
	static char dump[] = "sift-bayes-dump 1 tokenizer 999999\ntotals 5 5\n";
	FILE *fp = fmemopen(dump, strlen(dump), "r");
	cr_assert_not_null(fp);
	diag_t *d = diag_new();
	cr_assert_eq(bayes_store_load(s, fp, "dump", false, d), BAYES_OK, "%s",
	             diag_count(d) ? diag_text(d, 0) : "");
	fclose(fp);
	bayes_store_unref(s);
	scan_gen_t *g = gen_from("bayes_min_spam = 1\nbayes_min_ham = 1\nbayes_map_size = 1M\n", d);
	cr_assert_not_null(g, "%s", diag_count(d) ? diag_text(d, 0) : "");
	for (int i = 0; i < 2; i++) {
		msg_t *m;
		scan_result_t *r = score_file(g, "ham.eml", &m);
		cr_assert_null(r->failed);
		double p;
		cr_assert_not(hits_metric(r->hits, "bayes_prob", &p), "message %d: voted", i);
		cr_assert(hits_note_says(r->hits, "another tokenizer version"),
		          "message %d: no note of the other tokenizer", i);
		msg_free(m);
	}
	scan_gen_unref(g);
	diag_free(d);
}

/* The same silent store under autolearn: the verdict tokenizes what it learns itself. */
Test(scan, autolearn_learns_while_the_store_cannot_vote, .init = setup, .fini = teardown)
{
	char conf[1024];
	diag_t *d = diag_new();
	gen_online = true; /* autolearn runs in the daemon only */
	/* spam.eml scores 16 on the rules alone; nothing is learned as ham */
	scan_gen_t *g = gen_silent_store("late_cash.eml",
	                                 "bayes_autolearn = yes\nbayes_autolearn_spam_score = 5\n"
	                                 "bayes_autolearn_ham_score = -100\n",
	                                 conf, sizeof(conf), d);
	ev_conn_info_t ci = {"192.0.2.1", NULL};
	/* ham.eml finds the store silent; spam.eml is then scored without reading its tokens */
	static const char *const files[] = {"ham.eml", "spam.eml"};
	for (int i = 0; i < 2; i++) {
		msg_t *m;
		scan_result_t *r = score_file(g, files[i], &m);
		cr_assert_null(r->failed);
		double p;
		cr_assert_not(hits_metric(r->hits, "bayes_prob", &p), "%s: voted", files[i]);
		scan_conn_t *c = scan_conn_begin(g, &ci);
		scan_verdict_done(c, m, r);
		scan_conn_end(c);
		msg_free(m);
	}
	char db[512];
	snprintf(db, sizeof(db), "%s/bayes", state_dir);
	int err;
	bayes_store_t *s = bayes_store_open(db, 1 << 20, 0, &err);
	cr_assert_not_null(s, "%s", bayes_strerror(err));
	bayes_store_flush(s);
	bayes_stats_t st;
	cr_assert_eq(bayes_store_stats(s, &st), BAYES_OK);
	cr_assert_eq(st.totals.spam, 2, "learned %llu spam: autolearn lost spam.eml",
	             (unsigned long long)st.totals.spam);
	cr_assert_eq(st.totals.ham, 0);
	bayes_store_unref(s);
	scan_gen_unref(g);
	diag_free(d);
}

/* ------------------------------------------------------------ internal errors */

/*
 * Overwrites every page of the store's data file but the two meta pages
 * with zeros, keeping its size: LMDB then finds pages of no known type and
 * reports MDB_CORRUPTED to readers (the store "becomes unreadable").
 */
static void wreck_store(void)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/bayes/data.mdb", state_dir);
	FILE *fp = fopen(path, "r+");
	cr_assert_not_null(fp, "%s", path);
	cr_assert_eq(fseek(fp, 0, SEEK_END), 0);
	long size = ftell(fp);
	long page = sysconf(_SC_PAGESIZE);
	cr_assert_gt(size, 2 * page);
	cr_assert_eq(fseek(fp, 2 * page, SEEK_SET), 0);
	for (long i = 2 * page; i < size; i++)
		fputc(0, fp);
	cr_assert_eq(fclose(fp), 0);
}

static scan_gen_t *gen_with_store(const char *extra, diag_t *d)
{
	char big[512], conf[1024], text[512];
	snprintf(big, sizeof(big), "%s/big.eml", state_dir);
	write_big(big);
	snprintf(conf, sizeof(conf),
	         "state_dir = %s\nrules = %s/scan/test.cf\nbayes_map_size = 1M\n", state_dir,
	         TEST_DATADIR);
	cr_assert_eq(learn(conf, big, d), 0);
	snprintf(text, sizeof(text),
	         "bayes_min_spam = 0\nbayes_min_ham = 0\nbayes_map_size = 1M\n%s", extra);
	scan_gen_t *g = gen_from(text, d);
	cr_assert_not_null(g, "%s", diag_count(d) ? diag_text(d, 0) : "");
	return g;
}

Test(scan, unreadable_bayes_store_fails_the_source_and_tempfails_by_policy, .init = setup,
     .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g = gen_with_store("on_error = tempfail\n", d);
	msg_t *m;
	scan_result_t *r = score_file(g, "spam.eml", &m);
	cr_assert_null(r->failed, "failed before the store broke: %s", r->failed);
	cr_assert(hits_has(r->hits, "BAYES_999") || hits_has(r->hits, "BAYES_99"));
	cr_assert_eq(r->action, VERDICT_REJECT);
	msg_free(m);

	wreck_store();
	uint64_t before = scan_failed_total();
	r = score_file(g, "spam.eml", &m);
	cr_assert_not_null(r->failed);
	cr_assert_str_eq(r->failed, "bayes");
	/* The rules still scored; the policy, not the score, decides. */
	cr_assert(hits_has(r->hits, "SCAN_SUBJ_WIN"));
	cr_assert_eq(r->action, VERDICT_TEMPFAIL);
	cr_assert_eq(scan_failed_total(), before + 1);
	msg_free(m);
	scan_gen_unref(g);
	diag_free(d);
}

Test(scan, unreadable_bayes_store_under_accept_keeps_the_verdict_and_says_so, .init = setup,
     .fini = teardown)
{
	diag_t *d = diag_new();
	scan_gen_t *g = gen_with_store("", d);
	wreck_store();
	msg_t *m;
	scan_result_t *r = score_file(g, "ham.eml", &m);
	cr_assert_str_eq(r->failed, "bayes");
	cr_assert_eq(r->action, VERDICT_ACCEPT);
	verdict_header_t hv;
	cr_assert(verdict_error_header(r->failed, msg_arena(m), &hv));
	cr_assert_str_eq(hv.name, "X-Sift-Error");
	cr_assert(strstr(hv.value, "bayes") != NULL);
	/* and a forged one is not scored nor kept: it is one of ours */
	cr_assert(verdict_is_own_header(scan_gen_policy(g), "x-sift-error"));
	msg_free(m);
	scan_gen_unref(g);
	diag_free(d);
}

Test(scan, a_verdict_with_a_failed_source_teaches_nothing, .init = setup, .fini = teardown)
{
	diag_t *d = diag_new();
	gen_online = true; /* autolearn runs in the daemon only */
	/* Autolearn as spam on the rules' score alone (spam.eml scores 16). */
	scan_gen_t *g =
	    gen_with_store("bayes_autolearn = yes\nbayes_autolearn_spam_score = 5\n", d);
	/*
	 * The daemon's generation starts a key-filter build that walks the
	 * store; wrecking the file under that walk trips LMDB's assertion
	 * (IS_LEAF(mp) in mdb_cursor_next(), seen once under CI's load), so
	 * the build must end first.
	 */
	char db[512];
	snprintf(db, sizeof(db), "%s/bayes", state_dir);
	int err;
	bayes_store_t *live = bayes_store_open(db, 1 << 20, 0, &err);
	cr_assert_not_null(live);
	bayes_store_filter_wait(live);
	bayes_store_unref(live);
	wreck_store();
	msg_t *m;
	scan_result_t *r = score_file(g, "spam.eml", &m);
	cr_assert_str_eq(r->failed, "bayes");
	ev_conn_info_t ci = {"192.0.2.1", NULL};
	scan_conn_t *c = scan_conn_begin(g, &ci);
	scan_verdict_done(c, m, r);
	scan_conn_end(c);
	bayes_store_t *s = bayes_store_open(db, 1 << 20, 0, &err);
	cr_assert_not_null(s);
	/* The store cannot be read any more, but the writer's queue count is ours. */
	bayes_stats_t st;
	memset(&st, 0, sizeof(st));
	(void)bayes_store_stats(s, &st);
	cr_assert_eq(st.queued, 0, "queued %llu for autolearn", (unsigned long long)st.queued);
	bayes_store_unref(s);
	msg_free(m);
	scan_gen_unref(g);
	diag_free(d);
}

/* ------------------------------------------------------------ evidence v2: the order of the
 * sources */

static const char *const after_b[] = {"b", NULL};
static const char *const after_c_and_ghost[] = {"c", "no-such-source", NULL};
static const char *const after_a[] = {"a", NULL};

Test(order, a_source_runs_after_the_sources_it_names)
{
	/* a needs b; b needs c (and a name that is no source); c and d need nothing */
	const evidence_ops_t a = {.name = "a", .after = after_b};
	const evidence_ops_t b = {.name = "b", .after = after_c_and_ghost};
	const evidence_ops_t c = {.name = "c"};
	const evidence_ops_t d = {.name = "d"};
	const evidence_ops_t *const mods[] = {&a, &b, &c, &d};
	size_t order[4];
	scan_order_sources(mods, 4, order);
	cr_assert_eq(order[0], 2, "c first");
	cr_assert_eq(order[1], 1, "then b");
	cr_assert_eq(order[2], 0, "then a");
	cr_assert_eq(order[3], 3, "d keeps its place at the end");
}

Test(order, without_dependencies_the_list_order_stands_and_a_cycle_is_broken)
{
	const evidence_ops_t a = {.name = "a"}, b = {.name = "b"};
	const evidence_ops_t *const mods[] = {&a, &b};
	size_t order[2];
	scan_order_sources(mods, 2, order);
	cr_assert_eq(order[0], 0);
	cr_assert_eq(order[1], 1);
	const evidence_ops_t x = {.name = "a", .after = after_b},
	                     y = {.name = "b", .after = after_a};
	const evidence_ops_t *const cyc[] = {&x, &y};
	scan_order_sources(cyc, 2, order);
	cr_assert(order[0] != order[1], "each source runs once");
}

/* An empty state_dir was the working directory; an empty pid_file the state directory. */
Test(scan, empty_state_dir_and_pid_file_are_refused_at_their_line)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("test.conf", "state_dir =\npid_file = \"\"\n", d);
	cr_assert_not_null(c);
	cr_assert_null(scan_gen_load_pipeline(c, d));
	bool sd = false, pf = false;
	for (size_t i = 0; i < diag_count(d); i++) {
		sd |= strstr(diag_text(d, i), "test.conf:1: state_dir: empty") != NULL;
		pf |= strstr(diag_text(d, i), "test.conf:2: pid_file: empty") != NULL;
	}
	cr_assert(sd && pf, "%s", diag_count(d) ? diag_text(d, 0) : "no error");
	conf_free(c);
	diag_free(d);
}
