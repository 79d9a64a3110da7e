/*
 * fuzz_conf.c - libFuzzer target for the configuration parser (conf.c),
 * its typed getters and the policy checks that read its values
 * (verdict.c). Any byte string is written to a file and loaded as
 * sift.conf, since conf_load() is what reads an administrator's file
 * (NUL bytes, byte order marks, a last line without a newline).
 *
 * Besides "no crash, no leak, no undefined behaviour" it holds the parser
 * to its promise, "file:line: what is wrong": every diagnostic names the
 * file and a line that exists in it; a getter either gives a value in its
 * range or records an error; a policy that loads has replies an MTA can
 * send and a header prefix that makes valid field names; a line hidden by
 * a command-line override is still found.
 * Build and run with tests/fuzz/run.sh conf SECONDS.
 */
#include "config.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "diag.h"
#include "verdict.h"

/* Longer files only repeat lines the parser reads one at a time. */
#define FUZZ_MAX_INPUT_BYTES 16384

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_path[64];

static void fuzz_fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_conf: %s: %s\n", what, detail);
	abort();
}

/* Each diagnostic is "PATH:LINE: ..." with LINE one of the file's lines. */
static void check_diag(const diag_t *d, unsigned nlines)
{
	size_t pl = strlen(fuzz_path);
	for (size_t i = 0; i < diag_count(d); i++) {
		const char *t = diag_text(d, i);
		if (strncmp(t, fuzz_path, pl) != 0 || t[pl] != ':')
			fuzz_fail("a diagnostic without its file", t);
		char *end;
		unsigned long line = strtoul(t + pl + 1, &end, 10);
		if (end == t + pl + 1 || *end != ':' || line < 1 || line > nlines)
			fuzz_fail("a diagnostic without a line of the file", t);
	}
}

static void check_reply(const char *r, char cls)
{
	if (r[0] != cls || !isdigit((unsigned char)r[1]) || !isdigit((unsigned char)r[2]) ||
	    r[3] != ' ')
		fuzz_fail("an accepted reply an MTA cannot send", r);
	for (const char *s = r; *s; s++)
		if (*s == '%' || (iscntrl((unsigned char)*s) && *s != '\t'))
			fuzz_fail("an accepted reply with '%' or a control character", r);
}

/* Reads the keys every way a module does; each either gives a value or an error. */
static void read_all(conf_t *c, diag_t *d)
{
	const char *s;
	bool b;
	long l;
	double x;
	uint64_t u;
	int e;
	size_t before;
	static const char *const choices[] = {"accept", "tempfail", NULL};

	conf_str(c, "socket", "inet:11337@127.0.0.1", &s, d);
	if (s == NULL)
		fuzz_fail("conf_str", "NULL value");
	conf_bool(c, "foreground", false, &b, d);
	before = diag_errors(d);
	if (conf_long(c, "max_header_fields", 1000, 10, 10000000, &l, d) == 0 &&
	    diag_errors(d) == before && (l < 10 || l > 10000000))
		fuzz_fail("conf_long", "a value out of its range without an error");
	before = diag_errors(d);
	if (conf_double(c, "bayes_weight", 1.0, -100, 100, &x, d) == 0 &&
	    diag_errors(d) == before && !(x >= -100 && x <= 100))
		fuzz_fail("conf_double", "a value out of its range without an error");
	conf_double_or_off(c, "quarantine_score", INFINITY, INFINITY, &x, d);
	before = diag_errors(d);
	if (conf_size(c, "max_message_size", 10 << 20, 1024, (uint64_t)1 << 31, &u, d) == 0 &&
	    diag_errors(d) == before && (u < 1024 || u > (uint64_t)1 << 31))
		fuzz_fail("conf_size", "a value out of its range without an error");
	before = diag_errors(d);
	if (conf_ms(c, "deadline", 2000, 10, 600000, &l, d) == 0 && diag_errors(d) == before &&
	    (l < 10 || l > 600000))
		fuzz_fail("conf_ms", "a value out of its range without an error");
	conf_enum(c, "on_error", choices, 0, &e, d);
	if (e < 0 || e > 1)
		fuzz_fail("conf_enum", "a choice that is not one");
	conf_filename(c, "state_dir", "/var/lib/sift", &s, d);
	for (size_t i = 0, n = conf_count(c, "rules"); i < n; i++) {
		const char *file;
		unsigned line;
		if (conf_filename_at(c, "rules", i, &file, &line, d) == NULL)
			fuzz_fail("conf_filename_at", "a counted value is missing");
	}

	verdict_policy_t p;
	before = diag_errors(d);
	if (verdict_policy_read(c, &p, d) == 0 && diag_errors(d) == before) {
		check_reply(p.reject_reply, '5');
		check_reply(p.tempfail_reply, '4');
		if (p.header_prefix[0] == '\0')
			fuzz_fail("an accepted header_prefix", "empty");
		for (const char *t = p.header_prefix; *t; t++)
			if (!isalnum((unsigned char)*t) && *t != '-')
				fuzz_fail("an accepted header_prefix", p.header_prefix);
		for (double score = -20; score <= 20; score += 2.5)
			(void)verdict_decide(&p, score);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_MAX_INPUT_BYTES)
		return 0;
	if (fuzz_path[0] == '\0')
		snprintf(fuzz_path, sizeof(fuzz_path), "/tmp/sift-fuzz-conf.%ld", (long)getpid());
	FILE *f = fopen(fuzz_path, "w");
	if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
		abort(); /* the machine's fault, not the parser's */
	unsigned nlines = 1;
	for (size_t i = 0; i < size; i++)
		nlines += data[i] == '\n';

	diag_t *d = diag_new();
	conf_t *c = conf_load(fuzz_path, d);
	unlink(fuzz_path);
	if (c == NULL && diag_errors(d) == 0)
		fuzz_fail("conf_load", "failed without saying why");
	if (c != NULL) {
		conf_set_base_dir(c, "/etc/sift");
		read_all(c, d);
		/* an override hides the file's line from the getters, not from the checks */
		const char *file = NULL, *v;
		unsigned line = 0;
		bool had = conf_count(c, "socket") > 0;
		conf_override(c, "socket", "inet:11337@127.0.0.1");
		v = conf_hidden(c, "socket", &file, &line);
		if (had != (v != NULL) || (v != NULL && (line < 1 || line > nlines)))
			fuzz_fail("conf_hidden",
			          had ? "the hidden line is lost" : "a line from nowhere");
		read_all(c, d);
		conf_check_unknown(c, d);
		conf_free(c);
	}
	check_diag(d, nlines);
	diag_free(d);
	return 0;
}
