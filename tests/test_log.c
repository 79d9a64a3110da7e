/* Tests of the log sink: what reaches stderr is escaped, one line per call. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs log_msg(level, "%s", field) with stderr sent to a file; returns what it wrote. */
static char *logged(int threshold, int level, const char *field)
{
	static char out[16384];
	FILE *tmp = tmpfile();
	cr_assert_not_null(tmp);
	int saved = dup(STDERR_FILENO);
	cr_assert_geq(saved, 0);
	fflush(stderr);
	cr_assert_geq(dup2(fileno(tmp), STDERR_FILENO), 0);
	cr_assert_eq(log_setup("t", "stderr", "mail", threshold), 0);
	log_msg(level, "queue_id=%s end", field);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	size_t n = fread(out, 1, sizeof(out) - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
	return out;
}

Test(log, control_characters_in_a_field_are_escaped)
{
	char *out = logged(LOG_L_INFO, LOG_L_INFO, "Q1\r\nsift-milter[info]: forged\x1b[31m\x7f");
	cr_assert_not_null(
	    strstr(out, "queue_id=Q1\\x0d\\x0asift-milter[info]: forged\\x1b[31m\\x7f end"),
	    "got: %s", out);
	/* one line: the only newline is the one log_msg ends it with */
	cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "got: %s", out);
	for (const char *p = out; *p != '\n'; p++)
		cr_assert((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f, "raw byte 0x%02x",
		          (unsigned char)*p);
}

Test(log, bytes_above_ascii_are_escaped)
{
	char *out = logged(LOG_L_INFO, LOG_L_INFO, "caf\xc3\xa9");
	cr_assert_not_null(strstr(out, "queue_id=caf\\xc3\\xa9 end"), "got: %s", out);
}

Test(log, plain_text_is_unchanged)
{
	char *out = logged(LOG_L_INFO, LOG_L_INFO, "ABC123 <a@example.org> 100% \\ ok");
	cr_assert_not_null(strstr(out, "queue_id=ABC123 <a@example.org> 100% \\ ok end"), "got: %s",
	                   out);
}

Test(log, below_the_threshold_nothing_is_written)
{
	cr_assert_str_eq(logged(LOG_L_INFO, LOG_L_DEBUG, "x"), "");
	cr_assert_neq(logged(LOG_L_DEBUG, LOG_L_DEBUG, "x")[0], '\0');
}

Test(log, escape_never_overflows_and_never_splits_an_escape)
{
	char out[8];
	/* "ab" fits, the escape of \x01 (4 bytes) would not: it is left out whole */
	cr_assert_eq(log_escape(out, sizeof(out), "ab\x01\x02"), 6);
	cr_assert_str_eq(out, "ab\\x01");
	cr_assert_eq(log_escape(out, 4, "\x01"), 0);
	cr_assert_str_eq(out, "");
	cr_assert_eq(log_escape(out, sizeof(out), "abcdefghij"), 7);
	cr_assert_str_eq(out, "abcdefg");
}
