/*
 * NAME
 *	auth - sender authentication (SPF, DKIM, DMARC) as evidence, and the
 *	Authentication-Results field
 * SYNOPSIS
 *	#include "auth.h"
 *	extern const evidence_ops_t auth_evidence;
 * DESCRIPTION
 *	Off unless auth_enable = yes. Then, per message:
 *	  SPF (libspf2) of the MAIL FROM identity (of postmaster@HELO for the
 *	      null sender) and of the HELO identity, for the client address;
 *	  DKIM (libopendkim) of every DKIM-Signature, over the raw message
 *	      (msg_raw(): byte-exact, CRLF, up to max_message_size; a longer
 *	      message is not verified and says so);
 *	  DMARC (libopendmarc) of the From domain, with the SPF and DKIM
 *	      results above: the _dmarc record is asked by this module (of
 *	      the From domain, then of its organisational domain by the Public
 *	      Suffix List) and handed to libopendmarc, which judges alignment
 *	      and the policy.
 *	Every DNS question of the three goes through the shared DNS service
 *	(dns.h) and ends by the message deadline: libspf2 through its own
 *	resolver layer (an SPF_dns_server_t whose lookup asks dns.h),
 *	libopendkim through its query callbacks. A question that is not
 *	answered in time makes that check a temperror, and score() returns
 *	EV_DEGRADED.
 *
 *	Hits, named as SpamAssassin's rules: SPF_PASS, SPF_FAIL, SPF_SOFTFAIL,
 *	SPF_NEUTRAL, SPF_NONE, T_SPF_TEMPERROR, T_SPF_PERMERROR, the same with
 *	SPF_HELO_ for HELO; DKIM_SIGNED, DKIM_VALID, DKIM_VALID_AU (a valid
 *	signature of the From domain), DKIM_INVALID (signed, none valid);
 *	DMARC_PASS, DMARC_REJECT, DMARC_QUAR, DMARC_NONE (failed under p=
 *	reject, quarantine, none), DMARC_MISSING (no record),
 *	T_DMARC_TEMPERROR, T_DMARC_PERMERROR. Default scores are in auth.c
 *	(auth_default_score()); auth_score = NAME SCORE (repeatable) changes one.
 *
 *	A message that fails DMARC under p=reject or p=quarantine gets the
 *	action auth_dmarc_action says (reject: reject and quarantine as the
 *	policy says; quarantine: both quarantined; score: the hits only),
 *	whatever its score.
 *
 *	An Authentication-Results field (RFC 8601) is added on top of the
 *	message with auth_serv_id (default: the host name); incoming fields
 *	that claim that authserv-id are removed. With auth_trust_authserv_id
 *	= ID, a message that carries Authentication-Results from ID (an
 *	opendkim or opendmarc milter earlier in the chain) is not verified
 *	again: its spf, dkim and dmarc results are taken as they stand.
 *
 *	ARC is not validated: Debian 12 has no maintained ARC library
 *	(OpenARC, its one candidate, is not packaged).
 * THREADS
 *	The shared state is immutable after load; libopendkim's library
 *	handle is shared (it is made for that), libspf2's server and
 *	libopendmarc's policy context are made per message. libopendmarc's
 *	one process-wide initialisation (the suffix list) happens once.
 */
#ifndef SIFT_AUTH_H
#define SIFT_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "evidence.h"

extern const evidence_ops_t auth_evidence;

/*
 * SpamAssassin's eval tests of its SPF, DKIM and DMARC plugins, answered
 * from this module's results of the message, which score() leaves in h's
 * metrics (auth_spf, auth_spf_helo, auth_dkim, auth_dmarc, auth_dmarc_p).
 * For a rules module that runs after "auth" (evidence.h `after`): true
 * with *answer set when func is one of check_for_spf_{pass,fail,softfail,
 * neutral,none,permerror,temperror}, the same with check_for_spf_helo_,
 * check_dkim_signed, check_dkim_valid, check_dkim_valid_author_sig,
 * check_dmarc_{pass,reject,quarantine,none,missing}; false when func is
 * none of them or auth did not judge the message. A rule that takes its
 * answer here is the same fact as auth's hit of the same name: the rules
 * module (rules_eval_auth.c) then keeps auth's hit and adds no second one.
 */
bool auth_eval(const hits_t *h, const char *func, bool *answer);

/*
 * Whether a DKIM signature whose signing domain (d=) is sdid verified;
 * with subdomains, one of a domain below sdid instead (not sdid itself).
 * ASCII case-insensitive; false when auth did not judge the message.
 * check_dkim_dependable is also answered by auth_eval(): DKIM was
 * verified (not skipped for the message's size).
 */
bool auth_dkim_valid_sdid(const hits_t *h, const char *sdid, bool subdomains);

/*
 * Calls fn with the signing domain (d=, n bytes, not NUL-terminated) of
 * each DKIM signature that verified, in the message's order, until fn
 * returns false: SpamAssassin's _DKIMDOMAIN_ for askdns templates.
 */
typedef bool (*auth_sdid_fn)(const char *sdid, size_t n, void *ud);
void auth_dkim_valid_each(const hits_t *h, auth_sdid_fn fn, void *ud);

/* The results of one method, as RFC 8601 names them. */
typedef enum {
	AUTH_NONE = 0,
	AUTH_PASS,
	AUTH_FAIL,
	AUTH_SOFTFAIL,
	AUTH_NEUTRAL,
	AUTH_TEMPERROR,
	AUTH_PERMERROR,
	AUTH_N_RESULTS
} auth_result_t;

const char *auth_result_name(auth_result_t r);
/* The result a name stands for ("pass", ...; "hardfail" is fail); AUTH_N_RESULTS if none. */
auth_result_t auth_result_parse(const char *s, size_t n);

/* The score a hit name has unless auth_score changes it; NAN for an unknown name. */
double auth_default_score(const char *name);

/*
 * The authserv-id of an Authentication-Results value (comments and
 * leading blanks skipped), lower-cased into out. NULL when there is none
 * or it does not fit.
 */
const char *auth_ar_servid(const char *value, char *out, size_t out_bytes);

/*
 * The result of the first resinfo of method ("spf", "dkim", "dmarc") in
 * an Authentication-Results value; AUTH_N_RESULTS when the method is
 * not there. With out (may be NULL), the value of property prop
 * ("header.d") of that resinfo, lower-cased, "" when absent. nth picks
 * the nth (0-based) resinfo of the method (several dkim= ones).
 */
auth_result_t auth_ar_result(const char *value, const char *method, size_t nth, const char *prop,
                             char *out, size_t out_bytes);

/*
 * Each resinfo of method in an Authentication-Results value, in order, to
 * fn with its result and, with out, the value of its property prop as
 * auth_ar_result() gives it (in out; "" when absent), until fn returns
 * false or a result is not one auth_result_parse() knows. One pass over
 * the value, where reading results by nth copies and splits it again for
 * each. Returns how many results went to fn.
 */
typedef bool (*auth_ar_fn)(auth_result_t r, const char *prop_value, void *ud);
size_t auth_ar_each(const char *value, const char *method, const char *prop, char *out,
                    size_t out_bytes, auth_ar_fn fn, void *ud);

/*
 * The domain of the one address in a From field value, lower-cased into
 * out; NULL when there is no address, more than one, or the domain is not
 * a host name (DMARC then does not apply).
 */
const char *auth_from_domain(const char *value, char *out, size_t out_bytes);

#endif
