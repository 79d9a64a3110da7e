/*
 * NAME
 *	mclient - the MTA side of the milter protocol, for tests and benchmarks
 * SYNOPSIS
 *	#include "mclient.h"
 *	mclient_t *c = mclient_open("unix:/run/sift/s", &opts, err, sizeof(err));
 *	mclient_smtp_connect(c, &session, arena, &r);	   CONNECT + HELO
 *	mclient_message(c, &env, raw, raw_len, arena, &r); MAIL .. end of message
 *	mclient_message(c, &env, raw2, raw2_len, arena, &r);
 *	mclient_quit(c);
 * DESCRIPTION
 *	mclient speaks to a mail filter the way Postfix's milter8 client does:
 *	it negotiates protocol version 6 offering every action, then sends
 *	CONNECT (family, port, address), HELO, MAIL, RCPT, DATA, each header,
 *	EOH, the body in chunks of at most MCLIENT_CHUNK_BYTES and end of
 *	message, each preceded by the macros an MTA would define for that stage
 *	({client_addr}, i, {mail_addr}, {auth_authen}, {rcpt_addr}, ...).
 *
 *	It honours what the filter negotiated: stages the filter asked not to
 *	see (SMFIP_NO*) are not sent, stages it will not answer (SMFIP_NR_*)
 *	are not waited for, SMFIR_SKIP ends the body early, and
 *	SMFIP_HDR_LEADSPC decides whether header values keep their leading
 *	space. Several messages may follow one CONNECT (like several SMTP
 *	transactions on one connection), and a transaction may be aborted part
 *	way (SMFIC_ABORT) to test the filter's clean-up.
 *
 *	Every reply is handled: accept, continue, reject, tempfail, discard,
 *	replycode, the header changes (add, insert, change/delete), quarantine,
 *	recipient and sender changes, body replacement and progress. The result
 *	of a message is its final action, the SMTP reply the filter chose, the
 *	list of modifications in the order they arrived, and the latency from
 *	MAIL to the final reply.
 *
 *	The raw message is split as an MTA would: the header block ends at the
 *	first empty line (or the first line that is not a header field),
 *	folded fields are sent as one value with "\n" between the lines (as
 *	Postfix does), and the body is sent with CRLF line ends.
 * DIAGNOSTICS
 *	Functions return 0 on success and -1 on an I/O error, a timeout or a
 *	protocol violation by the filter; mclient_error() then says which, and
 *	the connection is unusable (mclient_close() it). A filter's reject or
 *	tempfail is a successful result, not an error.
 * LIMITS
 *	Every read and write waits at most opts->timeout_ms (poll); a progress
 *	reply restarts the wait, at most MCLIENT_MAX_PROGRESS times per
 *	message. A reply packet longer than MCLIENT_MAX_PACKET_BYTES and more
 *	than MCLIENT_MAX_MODS modifications per message are protocol errors.
 * THREADS
 *	An mclient_t belongs to one thread at a time; distinct connections may
 *	be used from distinct threads. Results live in the arena the caller
 *	passes, which is not synchronised either.
 */
#ifndef SIFT_MCLIENT_H
#define SIFT_MCLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"

#define MCLIENT_CHUNK_BYTES      65535         /* largest SMFIC_BODY payload */
#define MCLIENT_MAX_PACKET_BYTES (1024 * 1024) /* largest reply accepted (SMFIP_MDS_1M) */
#define MCLIENT_MAX_MODS         10000         /* modifications per message */
#define MCLIENT_MAX_PROGRESS     10000         /* progress replies per wait */
#define MCLIENT_MAX_RCPTS        1000

typedef struct mclient mclient_t;

typedef struct mclient_opts {
	long timeout_ms;         /* per read or write; <= 0 means 10000 */
	long connect_timeout_ms; /* <= 0 means timeout_ms */
} mclient_opts_t;

/* The SMTP session as the MTA saw it: sent with CONNECT and HELO. */
typedef struct mclient_session {
	const char *client_ip;   /* "192.0.2.1", "2001:db8::1"; NULL: family unknown */
	const char *client_name; /* reverse name; NULL: "unknown" */
	unsigned client_port;    /* 0 for a default */
	const char *helo;        /* NULL: no HELO sent */
	const char *mta_name;    /* macro j; NULL: "mx.sift.test" */
} mclient_session_t;

/* Where a transaction is cut short with SMFIC_ABORT (tests of clean-up). */
typedef enum {
	MCLIENT_ABORT_NONE = 0,
	MCLIENT_ABORT_AFTER_RCPT,
	MCLIENT_ABORT_AFTER_HEADERS,
	MCLIENT_ABORT_AFTER_BODY, /* after the body chunks, before end of message */
} mclient_abort_t;

/* One transaction's envelope. */
typedef struct mclient_env {
	const char *queue_id;  /* macro i; NULL: none sent */
	const char *mail_from; /* without angle brackets; "" for the null sender */
	const char *const *rcpts;
	size_t nrcpts;           /* at least 1 */
	const char *auth_authen; /* macro {auth_authen} when set */
	mclient_abort_t abort_at;
} mclient_env_t;

typedef enum {
	MCLIENT_ACCEPT = 0, /* accept or continue at the end */
	MCLIENT_REJECT,     /* reject, or a 5xx replycode */
	MCLIENT_TEMPFAIL,   /* tempfail, or a 4xx replycode */
	MCLIENT_DISCARD,
	MCLIENT_ABORTED,   /* the client aborted the transaction itself */
	MCLIENT_CONN_FAIL, /* the filter asked to drop the SMTP connection */
} mclient_action_t;

/* One modification request, in arrival order. */
typedef struct mclient_mod {
	char type;         /* the SMFIR_* code: 'h' 'i' 'm' 'q' '+' '-' '2' 'e' 'b' */
	unsigned index;    /* 'i' and 'm': the header index the filter sent */
	const char *name;  /* header name, recipient, sender or quarantine reason */
	const char *value; /* header value ("" deletes for 'm'), ESMTP args, body chunk */
	size_t value_len;  /* for 'b' (may hold NULs) */
} mclient_mod_t;

typedef struct mclient_result {
	mclient_action_t action;
	char stage;        /* the SMFIC_* command that got the final reply, 0 if none */
	const char *reply; /* "550 5.7.1 text" from SMFIR_REPLYCODE, else NULL */
	bool quarantined;  /* an SMFIR_QUARANTINE was among the mods */
	bool body_skipped; /* the filter answered SMFIR_SKIP to a body chunk */
	size_t rcpts_rejected;
	mclient_mod_t *mods;
	size_t nmods;
	double latency_ms; /* from MAIL (or CONNECT) to the final reply */
} mclient_result_t;

/*
 * Connects to "unix:/path", "local:/path", "/path", "inet:port@host" or
 * "inet6:port@host" and negotiates. NULL with a message in err on failure.
 */
mclient_t *mclient_open(const char *spec, const mclient_opts_t *o, char *err, size_t errlen);
/* The filter's answer to the negotiation. */
unsigned long mclient_filter_actions(const mclient_t *c);
unsigned long mclient_filter_protocol(const mclient_t *c);

/*
 * Sends CONNECT and HELO. A filter that rejects or accepts the whole
 * connection here makes every later mclient_message() return that action
 * without sending anything (as an MTA would not consult it again).
 */
int mclient_smtp_connect(mclient_t *c, const mclient_session_t *s, arena_t *a, mclient_result_t *r);

/* One transaction; raw is the message as stored (LF or CRLF line ends). */
int mclient_message(mclient_t *c, const mclient_env_t *env, const char *raw, size_t len, arena_t *a,
                    mclient_result_t *r);

/* Sends SMFIC_QUIT and closes. */
void mclient_quit(mclient_t *c);
/* Closes without a word (to test a filter's handling of a lost MTA). */
void mclient_close(mclient_t *c);

/* The last error, "" if none. Valid until the next call on c. */
const char *mclient_error(const mclient_t *c);

/* "accept", "reject", "tempfail", "discard", "aborted", "conn_fail". */
const char *mclient_action_name(mclient_action_t a);

#endif
