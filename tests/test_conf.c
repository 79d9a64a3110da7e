/* Tests of the strict configuration parser and its typed getters. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "unit_util.h"

Test(conf, values_comments_and_quotes)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("t.conf",
	                       "# comment\n\nsocket = unix:/run/s.sock  # trailing\n"
	                       "reject_reply = \"550 5.7.1 no # thanks \"\n",
	                       d);
	cr_assert_not_null(c);
	const char *v;
	conf_str(c, "socket", NULL, &v, d);
	cr_assert_str_eq(v, "unix:/run/s.sock");
	conf_str(c, "reject_reply", NULL, &v, d);
	cr_assert_str_eq(v, "550 5.7.1 no # thanks ");
	cr_assert_eq(diag_errors(d), 0);
	conf_free(c);
	diag_free(d);
}

Test(conf, syntax_errors_name_file_and_line)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("bad.conf", "a = 1\nthis line has no equals\n", d);
	cr_assert_null(c);
	cr_assert(unit_diag_has(d, "bad.conf:2: expected 'key = value'"), "%s", diag_text(d, 0));
	diag_free(d);
}

Test(conf, unknown_keys_are_errors_with_location)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("x.conf", "socket = inet:1@127.0.0.1\nsokcet = typo\n", d);
	const char *v;
	conf_str(c, "socket", NULL, &v, d);
	cr_assert_eq(conf_check_unknown(c, d), 1);
	cr_assert(unit_diag_has(d, "x.conf:2: unknown key 'sokcet'"));
	conf_free(c);
	diag_free(d);
}

Test(conf, typed_values_and_ranges)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("t.conf",
	                       "size = 10M\nms = 250ms\nsecs = 2\nflag = yes\nn = 12\nbadn = 12x\n"
	                       "big = 99\nscore = off\nf = 2.5\n",
	                       d);
	uint64_t sz;
	long ms, n;
	bool b;
	double f, off;
	cr_assert_eq(conf_size(c, "size", 0, 0, UINT64_MAX, &sz, d), 0);
	cr_assert_eq(sz, 10u << 20);
	conf_ms(c, "ms", 0, 0, 100000, &ms, d);
	cr_assert_eq(ms, 250);
	conf_ms(c, "secs", 0, 0, 100000, &ms, d);
	cr_assert_eq(ms, 2000);
	conf_bool(c, "flag", false, &b, d);
	cr_assert(b);
	conf_long(c, "n", 0, 0, 100, &n, d);
	cr_assert_eq(n, 12);
	cr_assert_eq(conf_long(c, "badn", 7, 0, 100, &n, d), -1);
	cr_assert_eq(n, 7);
	cr_assert(unit_diag_has(d, "t.conf:6: badn: expected an integer"));
	cr_assert_eq(conf_long(c, "big", 0, 0, 10, &n, d), -1);
	cr_assert(unit_diag_has(d, "t.conf:7: big: must be between 0 and 10"));
	conf_double_or_off(c, "score", 5, INFINITY, &off, d);
	cr_assert(isinf(off));
	conf_double(c, "f", 0, 0, 10, &f, d);
	cr_assert_float_eq(f, 2.5, 1e-9);
	conf_free(c);
	diag_free(d);
}

Test(conf, durations_and_scores_are_decimal)
{
	/* strtod's hexadecimal forms are not sift.conf(5) numbers: 0x10 is not 16 s */
	long ms;
	cr_assert_eq(conf_parse_ms("0x10", &ms), -1);
	cr_assert_eq(conf_parse_ms("0x1p3s", &ms), -1);
	cr_assert_eq(conf_parse_ms("1.5s", &ms), 0);
	cr_assert_eq(ms, 1500);
	diag_t *d = diag_new();
	conf_t *c = conf_parse("t.conf", "deadline = 0X10\nreject_score = 0x10\nf = 0x1p1\n", d);
	double v;
	cr_assert_eq(conf_ms(c, "deadline", 2000, 10, 600000, &ms, d), -1);
	cr_assert(unit_diag_has(d, "t.conf:1: deadline: expected a duration"));
	cr_assert_eq(conf_double_or_off(c, "reject_score", 15, INFINITY, &v, d), -1);
	cr_assert(unit_diag_has(d, "t.conf:2: reject_score: expected a number or 'off'"));
	cr_assert_eq(conf_double(c, "f", 0, 0, 10, &v, d), -1);
	cr_assert(unit_diag_has(d, "t.conf:3: f: expected a number"));
	conf_free(c);
	diag_free(d);
}

Test(conf, single_valued_key_given_twice_is_an_error)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("t.conf", "socket = a\nsocket = b\n", d);
	const char *v;
	cr_assert_eq(conf_str(c, "socket", NULL, &v, d), -1);
	cr_assert(unit_diag_has(d, "t.conf:2: 'socket' given twice"));
	conf_free(c);
	diag_free(d);
}

Test(conf, overrides_hide_file_values_and_lists_repeat)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("t.conf", "rules = /a\nrules = /b\nstate_dir = /var/x\n", d);
	cr_assert_eq(conf_count(c, "rules"), 2);
	const char *file;
	unsigned line;
	cr_assert_str_eq(conf_value_at(c, "rules", 1, &file, &line), "/b");
	cr_assert_eq(line, 2);
	conf_override(c, "rules", "/cli");
	cr_assert_eq(conf_count(c, "rules"), 1);
	cr_assert_str_eq(conf_value_at(c, "rules", 0, NULL, NULL), "/cli");
	conf_override(c, "state_dir", "/tmp/s");
	const char *sd;
	cr_assert_eq(conf_str(c, "state_dir", NULL, &sd, d), 0);
	cr_assert_str_eq(sd, "/tmp/s");
	/* the hidden file line is still there to be checked, with its place */
	cr_assert_str_eq(conf_hidden(c, "state_dir", &file, &line), "/var/x");
	cr_assert_str_eq(file, "t.conf");
	cr_assert_eq(line, 3);
	cr_assert_null(conf_hidden(c, "socket", &file, &line), "no line, nothing hidden");
	cr_assert_eq(diag_errors(d), 0);
	conf_free(c);
	diag_free(d);
}

Test(conf, enum_lists_the_choices)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("t.conf", "on_error = explode\n", d);
	static const char *const ch[] = {"accept", "tempfail", NULL};
	int v;
	cr_assert_eq(conf_enum(c, "on_error", ch, 0, &v, d), -1);
	cr_assert(unit_diag_has(d, "expected one of accept, tempfail"));
	conf_free(c);
	diag_free(d);
}

/*
 * The daemon reads its configuration again at every reload after it has
 * moved to "/": relative file names are joined to the directory it
 * started in, absolute ones and other values are left alone.
 */
Test(conf, relative_file_names_are_taken_from_the_base_dir)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("t.conf",
	                       "rules = rules\nrules = /usr/share/sift/rules\n"
	                       "bayes_db = var/bayes\nredis_password_file = /etc/sift/redis.pw\n"
	                       "header_prefix = X-Rel\n",
	                       d);
	cr_assert_not_null(c);
	const char *v;
	/* no base directory (the command-line tool): values as written */
	conf_filename(c, "bayes_db", NULL, &v, d);
	cr_assert_str_eq(v, "var/bayes");
	char *r = conf_resolve(c, "dnsbl_list", "lists/bl.txt", "t.conf", 9, d);
	cr_assert_str_eq(r, "lists/bl.txt");
	free(r);

	conf_set_base_dir(c, "/etc/sift");
	cr_assert_str_eq(conf_filename_at(c, "rules", 0, NULL, NULL, d), "/etc/sift/rules");
	cr_assert_str_eq(conf_filename_at(c, "rules", 1, NULL, NULL, d), "/usr/share/sift/rules");
	cr_assert_null(conf_filename_at(c, "rules", 2, NULL, NULL, d));
	conf_filename(c, "bayes_db", NULL, &v, d);
	cr_assert_str_eq(v, "/etc/sift/var/bayes");
	/* a second read (a module reading it again) is not joined twice */
	conf_filename(c, "bayes_db", NULL, &v, d);
	cr_assert_str_eq(v, "/etc/sift/var/bayes");
	conf_filename(c, "redis_password_file", NULL, &v, d);
	cr_assert_str_eq(v, "/etc/sift/redis.pw");
	conf_filename(c, "block_signing_key", "keys/k", &v, d);
	cr_assert_str_eq(v, "keys/k", "a default is used as given");
	conf_str(c, "header_prefix", NULL, &v, d);
	cr_assert_str_eq(v, "X-Rel", "conf_str() does not treat values as file names");
	r = conf_resolve(c, "dnsbl_list", "lists/bl.txt", "t.conf", 9, d);
	cr_assert_str_eq(r, "/etc/sift/lists/bl.txt");
	free(r);
	r = conf_resolve(c, "dnsbl_list", "/abs/bl.txt", "t.conf", 9, d);
	cr_assert_str_eq(r, "/abs/bl.txt");
	free(r);
	/* a command-line override is joined the same way */
	conf_override(c, "bayes_db", "other/bayes");
	conf_filename(c, "bayes_db", NULL, &v, d);
	cr_assert_str_eq(v, "/etc/sift/other/bayes");
	cr_assert_eq(diag_errors(d), 0);
	cr_assert_eq(diag_warnings(d), 0, "a base other than / is not warned about");
	conf_free(c);
	diag_free(d);
}

/* Under systemd the daemon starts in "/": a relative name there is all but surely a slip. */
Test(conf, relative_file_names_taken_from_the_root_are_warned_about)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse(
	    "t.conf", "rules = /usr/share/sift/rules\nrules = local\nbayes_db = bayes\n", d);
	cr_assert_not_null(c);
	conf_set_base_dir(c, "/");
	cr_assert_str_eq(conf_filename_at(c, "rules", 0, NULL, NULL, d), "/usr/share/sift/rules");
	cr_assert_eq(diag_warnings(d), 0, "an absolute name is not warned about");
	cr_assert_str_eq(conf_filename_at(c, "rules", 1, NULL, NULL, d), "/local");
	cr_assert_eq(diag_warnings(d), 1);
	cr_assert(strstr(diag_text(d, 0), "t.conf:2:") != NULL, "%s", diag_text(d, 0));
	cr_assert(strstr(diag_text(d, 0), "'local'") != NULL, "%s", diag_text(d, 0));
	const char *v;
	conf_filename(c, "bayes_db", NULL, &v, d);
	cr_assert_eq(diag_warnings(d), 2);
	cr_assert(strstr(diag_text(d, 1), "t.conf:3: ") != NULL, "%s", diag_text(d, 1));
	/* read again (the value is joined now): not warned twice */
	conf_filename(c, "bayes_db", NULL, &v, d);
	cr_assert_eq(diag_warnings(d), 2);
	cr_assert_eq(diag_errors(d), 0);
	conf_free(c);
	diag_free(d);
}

/* What is not a regular file is refused at once: a FIFO blocked the open, /dev/zero ate memory. */
Test(conf, load_refuses_what_is_not_a_regular_file, .timeout = 10)
{
	char dir[UNIT_DIR_MAX];
	unit_mkdtemp(dir, sizeof(dir), "sift-conf");
	char fifo[UNIT_PATH_MAX];
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	diag_t *d = diag_new();
	cr_assert_null(conf_load(dir, d));
	cr_assert(unit_diag_has(d, "not a regular file (a directory)"), "%s", diag_text(d, 0));
	cr_assert_null(conf_load(fifo, d));
	cr_assert_null(conf_load("/dev/zero", d));
	cr_assert_eq(diag_errors(d), 3);
	diag_free(d);
	unlink(fifo);
	rmdir(dir);
}

Test(conf, a_quoted_value_may_carry_a_comment_and_quotes)
{
	/* Refused as "unterminated" before, though an unquoted value may carry one. */
	diag_t *d = diag_new();
	conf_t *c = conf_parse("q.conf",
	                       "reject_reply = \"550 5.7.1 no\"  # our wording\n"
	                       "tempfail_reply = \"451 4.7.1 \"later\" please\" # said twice\n",
	                       d);
	cr_assert_not_null(c, "%s", diag_count(d) ? diag_text(d, 0) : "");
	const char *v;
	conf_str(c, "reject_reply", NULL, &v, d);
	cr_assert_str_eq(v, "550 5.7.1 no");
	conf_str(c, "tempfail_reply", NULL, &v, d);
	cr_assert_str_eq(v, "451 4.7.1 \"later\" please");
	conf_free(c);
	cr_assert_null(conf_parse("q.conf", "\nreject_reply = \"550 no\" extra\n", d));
	cr_assert(unit_diag_has(d, "q.conf:2: text after the closing quote of 'reject_reply'"),
	          "%s", diag_text(d, 0));
	cr_assert_null(conf_parse("q.conf", "reject_reply = \"550 no\n", d));
	cr_assert(unit_diag_has(d, "q.conf:1: unterminated quoted value for 'reject_reply'"));
	cr_assert_null(conf_parse("q.conf", "reject_reply = \"\n", d));
	cr_assert_eq(diag_errors(d), 3);
	diag_free(d);
}

Test(conf, a_byte_order_mark_is_skipped_and_a_nul_byte_has_its_line)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("bom.conf", "\xef\xbb\xbfsocket = unix:/s\n", d);
	cr_assert_not_null(c, "%s", diag_count(d) ? diag_text(d, 0) : "");
	const char *v;
	conf_str(c, "socket", NULL, &v, d);
	cr_assert_str_eq(v, "unix:/s");
	conf_free(c);
	char path[UNIT_DIR_MAX];
	int fd = unit_mkstemps(path, sizeof(path), "sift-conf-nul", "");
	static const char text[] = "socket = unix:/s\n\nlog_level = in\0fo\n";
	cr_assert_eq(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
	close(fd);
	cr_assert_null(conf_load(path, d));
	char want[UNIT_PATH_MAX + 32];
	snprintf(want, sizeof(want), "%s:3: NUL byte in line", path);
	cr_assert(unit_diag_has(d, want), "%s", diag_text(d, 0));
	unlink(path);
	diag_free(d);
}

Test(conf, an_empty_file_name_is_an_error_at_its_line)
{
	diag_t *d = diag_new();
	conf_t *c = conf_parse("e.conf", "rules = /a\nrules =\n", d);
	cr_assert_not_null(c);
	cr_assert_str_eq(conf_filename_at(c, "rules", 0, NULL, NULL, d), "/a");
	cr_assert_eq(diag_errors(d), 0);
	conf_filename_at(c, "rules", 1, NULL, NULL, d);
	cr_assert(unit_diag_has(d, "e.conf:2: rules: empty file name"), "%s", diag_text(d, 0));
	conf_free(c);
	diag_free(d);
}
