/*
 * NAME
 *	verdict - from a score to an action and the headers that report it
 * DESCRIPTION
 *	The policy maps a score to the action of the highest threshold it
 *	reaches (thresholds may be "off"), and names the SMTP replies and the
 *	header fields. verdict_headers() builds the X-Spam-* style fields;
 *	verdict_is_own_header() tells which incoming fields claim to be ours,
 *	so the glue can remove or rename them before adding its own.
 * THREADS
 *	A policy is immutable after verdict_policy_read().
 */
#ifndef SIFT_VERDICT_H
#define SIFT_VERDICT_H

#include <stdbool.h>

#include "arena.h"
#include "conf.h"
#include "diag.h"
#include "hits.h"

typedef enum {
	VERDICT_ACCEPT = 0, /* deliver; headers still added if configured */
	VERDICT_ADD_HEADER, /* deliver marked as spam */
	VERDICT_QUARANTINE, /* hold in the MTA's quarantine (Postfix hold queue) */
	VERDICT_TEMPFAIL,   /* 4xx */
	VERDICT_REJECT,     /* 5xx */
	VERDICT_N_ACTIONS
} verdict_action_t;

typedef enum { VERDICT_ERR_ACCEPT, VERDICT_ERR_TEMPFAIL } verdict_on_error_t;
typedef enum {
	VERDICT_FOREIGN_REMOVE,
	VERDICT_FOREIGN_RENAME,
	VERDICT_FOREIGN_KEEP
} verdict_foreign_t;
typedef enum { VERDICT_HDR_ALL, VERDICT_HDR_SPAM, VERDICT_HDR_NONE } verdict_add_headers_t;

typedef struct verdict_policy {
	double threshold[VERDICT_N_ACTIONS]; /* INFINITY when off; [ACCEPT] unused */
	const char *reject_reply;            /* "550 5.7.1 text" */
	const char *tempfail_reply;          /* "451 4.7.1 text" */
	const char *header_prefix;           /* "X-Spam" */
	verdict_add_headers_t add_headers;
	verdict_foreign_t foreign;
	verdict_on_error_t on_error;
	unsigned max_rules_in_header;
} verdict_policy_t;

int verdict_policy_read(conf_t *c, verdict_policy_t *p, diag_t *d);
verdict_action_t verdict_decide(const verdict_policy_t *p, double score);
const char *verdict_action_name(verdict_action_t a);
/* The spam threshold: the lowest threshold that is not accept. */
double verdict_spam_threshold(const verdict_policy_t *p);

typedef struct verdict_header {
	const char *name;
	const char *value;
} verdict_header_t;

/* Fills up to 4 headers; returns how many. Strings in arena a. */
size_t verdict_headers(const verdict_policy_t *p, arena_t *a, double score, verdict_action_t action,
                       const hits_t *h, verdict_header_t out[4]);
/*
 * The field that tells a delivered message was judged without the failed
 * sources (on_error = accept): X-Sift-Error: "failed" names them. Added
 * whatever add_headers says, as it reports a fault, not a verdict. False
 * when failed is NULL.
 */
#define VERDICT_ERROR_HEADER "X-Sift-Error"
bool verdict_error_header(const char *failed, arena_t *a, verdict_header_t *out);
/* Our verdict fields under p's prefix, and X-Sift-Error. */
bool verdict_is_own_header(const verdict_policy_t *p, const char *name);

/*
 * Header fields a source of evidence asks to add to, or remove from, the
 * delivered message (Authentication-Results; incoming copies that claim
 * our authserv-id). The glue applies them with libmilter when the message
 * is delivered (removals first, the highest copy first); `sift check`
 * prints them. Strings live in the message arena.
 */
typedef struct verdict_field {
	const char *name;
	const char *value; /* NULL: remove copy `index` */
	unsigned index;    /* removal: 1-based, among the incoming fields of that name */
	bool prepend;      /* add above every other field (trace fields, RFC 8601 5) */
} verdict_field_t;

typedef struct verdict_fields {
	arena_t *a;
	verdict_field_t *v;
	size_t n, cap;
} verdict_fields_t;

void verdict_fields_init(verdict_fields_t *f, arena_t *a);
/* Copies name and value into the arena. */
void verdict_field_add(verdict_fields_t *f, const char *name, const char *value, bool prepend);
void verdict_field_remove(verdict_fields_t *f, const char *name, unsigned index);

#endif
