/*
 * NAME
 *	msglog - the one structured line logged per scanned message
 * SYNOPSIS
 *	char line[MSGLOG_LINE_BYTES];
 *	msglog_format(line, sizeof(line), MSGLOG_KV, top_rules, &fields);
 *	log_msg(LOG_L_INFO, "%s", line);
 * DESCRIPTION
 *	Formats a message's verdict as key=value pairs or as one JSON
 *	object; the fields and their order are documented in sift-milter(8)
 *	(LOG FORMAT). Every string value is escaped so that whatever the
 *	input (a hostile HELO name or queue id) the result is one line of
 *	printable ASCII that parses back into the same fields:
 *	  kv: a value that is empty or holds a space, '"', '=', '\' or a byte
 *	    outside printable ASCII is written in double quotes, with '"' and
 *	    '\' backslash-escaped and other bytes as \xNN;
 *	  json: RFC 8259 strings, with every non-ASCII character as \uXXXX
 *	    and every byte that is not valid UTF-8 as \ufffd.
 *	A string value is cut at MSGLOG_VALUE_MAX_BYTES of output; the top
 *	rules are cut where the line would pass the buffer, so the line is
 *	always whole (a kv "rules" list then ends in ",...", a JSON object
 *	carries "rules_cut":true).
 * THREADS
 *	Pure functions: safe from any thread.
 */
#ifndef SIFT_MSGLOG_H
#define SIFT_MSGLOG_H

#include <stddef.h>
#include <stdint.h>

#include "hits.h"

typedef enum { MSGLOG_KV = 0, MSGLOG_JSON = 1 } msglog_format_t;

/* Fits log_msg()'s LOG_MAX_LINE_BYTES, so the line is never cut there. */
#define MSGLOG_LINE_BYTES        2000
#define MSGLOG_VALUE_MAX_BYTES   256
#define MSGLOG_TOP_RULES_DEFAULT 10
#define MSGLOG_TOP_RULES_MAX     100

typedef struct msglog_timing {
	const char *source; /* "rules", "bayes", "dnsbl", "rep" */
	double ms;
} msglog_timing_t;

/* Borrowed for the call; NULL strings are logged as unknown ("-" / null). */
typedef struct msglog_fields {
	const char *queue_id, *ip, *helo, *client_name, *action;
	double score;
	const hits_t *hits; /* sorted, highest first */
	const msglog_timing_t *timings;
	size_t n_timings;
	const char *degraded, *failed; /* "a,b"; NULL if none */
	uint64_t size_bytes;
	double ms;
} msglog_fields_t;

/* "kv" or "json"; -1 if neither. */
int msglog_format_parse(const char *name);
/*
 * Writes the line into out (NUL-terminated, at most out_len - 1 bytes;
 * out_len should be MSGLOG_LINE_BYTES, and must be at least 1024 so that
 * the bounded fields fit) with at most top_rules hits. Returns the length.
 */
size_t msglog_format(char *out, size_t out_len, msglog_format_t fmt, unsigned top_rules,
                     const msglog_fields_t *f);

#endif
