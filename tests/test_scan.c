/* Tests of the pipeline: generations, scoring end to end, reload rules. */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scan.h"

static char state_dir[] = "/tmp/sift-test-scan-XXXXXX";

static void setup(void)
{
	cr_assert_not_null(mkdtemp(state_dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state_dir);
	cr_assert_eq(system(cmd), 0);
}

static scan_gen_t *gen_from(const char *text, diag_t *d)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "state_dir = %s\nrules = %s/scan/test.cf\n%s", state_dir,
	         TEST_DATADIR, text);
	conf_t *c = conf_parse("test.conf", buf, d);
	cr_assert_not_null(c);
	ev_env_t env = {.state_dir = NULL, .offline = true};
	return scan_gen_load(c, NULL, &env, d);
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
	msg_parse_raw(m, data, len);
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
