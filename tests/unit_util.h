/*
 * unit_util.h - helpers the Criterion suites share: a private temporary
 * directory that honours $TMPDIR, "does a diagnostic say this", and "does
 * this message hit that rule". One copy here rather than one per suite, so
 * a change to how a message is scored in a test (its MIME limits, its
 * flags) is made once.
 *
 * Static inline: each suite is one program, and a helper it does not call
 * costs nothing. Not thread-safe beyond what the called modules are; the
 * suites call these from one thread.
 */
#ifndef SIFT_TEST_UNIT_UTIL_H
#define SIFT_TEST_UNIT_UTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"

/*
 * Buffers: UNIT_DIR_MAX for what unit_mkdtemp() and unit_mkstemps() make,
 * UNIT_PATH_MAX for a path inside such a directory ("dir/" and a name of
 * up to 250 bytes). A $TMPDIR too long for that fails the test, saying so,
 * rather than truncating a path.
 */
#define UNIT_DIR_MAX  256
#define UNIT_PATH_MAX 512

static inline const char *unit_tmp_base(void)
{
	const char *base = getenv("TMPDIR");
	return base == NULL || *base == '\0' ? "/tmp" : base;
}

/*
 * Makes a new private directory under $TMPDIR (or /tmp when it is unset or
 * empty) named "<name>.XXXXXX" into buf (cap >= UNIT_DIR_MAX bytes); the
 * test fails if it cannot.
 */
static inline char *unit_mkdtemp(char *buf, size_t cap, const char *name)
{
	cr_assert(cap >= UNIT_DIR_MAX);
	int n = snprintf(buf, UNIT_DIR_MAX, "%s/%s.XXXXXX", unit_tmp_base(), name);
	cr_assert(n > 0 && n < UNIT_DIR_MAX, "TMPDIR=%s is too long for the tests' paths",
	          unit_tmp_base());
	cr_assert_not_null(mkdtemp(buf), "mkdtemp %s: %s", buf, strerror(errno));
	return buf;
}

/* As unit_mkdtemp(), in a new allocation the caller frees. */
static inline char *unit_mkdtemp_dup(const char *name)
{
	char buf[UNIT_DIR_MAX];
	char *d = strdup(unit_mkdtemp(buf, sizeof(buf), name));
	cr_assert_not_null(d);
	return d;
}

/*
 * Creates a new private file "<name>.XXXXXX<suffix>" under $TMPDIR (or
 * /tmp), its path into buf (cap >= UNIT_DIR_MAX); returns it open for
 * reading and writing. The test fails if it cannot.
 */
static inline int unit_mkstemps(char *buf, size_t cap, const char *name, const char *suffix)
{
	cr_assert(cap >= UNIT_DIR_MAX);
	int n = snprintf(buf, UNIT_DIR_MAX, "%s/%s.XXXXXX%s", unit_tmp_base(), name, suffix);
	cr_assert(n > 0 && n < UNIT_DIR_MAX, "TMPDIR=%s is too long for the tests' paths",
	          unit_tmp_base());
	int fd = mkstemps(buf, (int)strlen(suffix));
	cr_assert_geq(fd, 0, "mkstemps %s: %s", buf, strerror(errno));
	return fd;
}

/* True if one of d's diagnostics contains needle. */
static inline bool unit_diag_has(const diag_t *d, const char *needle)
{
	for (size_t i = 0; i < diag_count(d); i++)
		if (strstr(diag_text(d, i), needle) != NULL)
			return true;
	return false;
}

#ifdef SIFT_UNIT_RULES
#include "hits.h"
#include "mime.h"
#include "msg.h"
#include "rules.h"

/*
 * True if raw, parsed with the default MIME limits and scored by r alone
 * (no flags), hits rule name. Define SIFT_UNIT_RULES before including this
 * header to get it: suites without the rules module link without it.
 */
static inline bool unit_rules_hits(rules_t *r, const char *raw, const char *name)
{
	msg_t *m = msg_new(1 << 20);
	cr_assert_not_null(m);
	msg_parse_raw(m, raw, strlen(raw));
	mime_t *mi = mime_parse(m, NULL);
	hits_t *h = hits_new(msg_arena(m));
	rules_eval(r, m, mi, h, 0);
	bool v = hits_has(h, name);
	msg_free(m);
	return v;
}
#endif

#endif
