/*
 * auth.c - sender authentication as a source of evidence (see auth.h):
 * configuration, the per-message checks (SPF, DKIM, DMARC, or the trusted
 * upstream's Authentication-Results), their hits, the action a DMARC
 * policy asks for and our Authentication-Results field. The libraries'
 * DNS is in auth_dns.c, the text parsing in auth_ar.c.
 */
#include "config.h"

#include "auth_int.h"
#include "log.h"
#include "xalloc.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <opendmarc/dmarc.h>

#define AUTH_SERVID_MAX_BYTES 256
#define AUTH_DOMAIN_MAX_BYTES 256
#define AUTH_MAX_SIGS         16
/*
 * Tags of one DKIM-Signature shown to libopendkim (see dkim_header_capped()):
 * RFC 6376 defines 14, and real signers use about ten.
 */
#define AUTH_MAX_SIG_TAGS 64
/* The Public Suffix List file libpsl reads too (Debian's publicsuffix). */
#define AUTH_PSL_FILE "/usr/share/publicsuffix/public_suffix_list.dat"

enum { DMARC_ACT_REJECT, DMARC_ACT_QUARANTINE, DMARC_ACT_SCORE };
static const char *const dmarc_actions[] = {"reject", "quarantine", "score", NULL};

/* The hits and their default scores (close to SpamAssassin's where it has them). */
static const struct {
	const char *name;
	double score;
	const char *desc;
} auth_rules[] = {
    {"SPF_PASS", -0.001, "SPF: sender matches SPF record"},
    {"SPF_FAIL", 0.919, "SPF: sender does not match SPF record (fail)"},
    {"SPF_SOFTFAIL", 0.665, "SPF: sender does not match SPF record (softfail)"},
    {"SPF_NEUTRAL", 0.652, "SPF: sender does not match SPF record (neutral)"},
    {"SPF_NONE", 0.001, "SPF: sender does not publish an SPF record"},
    {"T_SPF_TEMPERROR", 0.01, "SPF: test of record failed (temperror)"},
    {"T_SPF_PERMERROR", 0.01, "SPF: test of record failed (permerror)"},
    {"SPF_HELO_PASS", -0.001, "SPF: HELO matches SPF record"},
    {"SPF_HELO_FAIL", 0.001, "SPF: HELO does not match SPF record (fail)"},
    {"SPF_HELO_SOFTFAIL", 0.732, "SPF: HELO does not match SPF record (softfail)"},
    {"SPF_HELO_NEUTRAL", 0.001, "SPF: HELO does not match SPF record (neutral)"},
    {"SPF_HELO_NONE", 0.001, "SPF: HELO does not publish an SPF record"},
    {"T_SPF_HELO_TEMPERROR", 0.01, "SPF: test of HELO record failed (temperror)"},
    {"T_SPF_HELO_PERMERROR", 0.01, "SPF: test of HELO record failed (permerror)"},
    {"DKIM_SIGNED", 0.1, "Message has a DKIM or DK signature, not necessarily valid"},
    {"DKIM_VALID", -0.1, "Message has at least one valid DKIM or DK signature"},
    {"DKIM_VALID_AU", -0.1, "Message has a valid DKIM or DK signature from author's domain"},
    {"DKIM_INVALID", 0.1, "DKIM or DK signature exists, but is not valid"},
    {"DMARC_PASS", -0.001, "DMARC pass policy"},
    {"DMARC_REJECT", 5.0, "DMARC reject policy"},
    {"DMARC_QUAR", 2.5, "DMARC quarantine policy"},
    {"DMARC_NONE", 0.1, "DMARC none policy"},
    {"DMARC_MISSING", 0.0, "Missing DMARC policy"},
    {"T_DMARC_TEMPERROR", 0.01, "DMARC: policy lookup failed (temperror)"},
    {"T_DMARC_PERMERROR", 0.01, "DMARC: record unusable (permerror)"},
};
#define AUTH_N_RULES (sizeof(auth_rules) / sizeof(auth_rules[0]))

double auth_default_score(const char *name)
{
	for (size_t i = 0; i < AUTH_N_RULES; i++)
		if (strcmp(auth_rules[i].name, name) == 0)
			return auth_rules[i].score;
	return NAN;
}

typedef struct auth {
	char *servid, *trust;
	int dmarc_action;
	bool spf_helo;
	double score[AUTH_N_RULES];
	dns_t *dns;
	DKIM_LIB *dkim;
	SPF_dns_server_t *spf_dns;
} auth_t;

/* ------------------------------------------------------------ process-wide library set-up */

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void spf_log(const char *file, int line, const char *msg)
{
	(void)file;
	(void)line;
	log_msg(LOG_L_DEBUG, "spf: %s", msg);
}

static void libs_init_once(void)
{
	/* libspf2 prints its warnings to stdout/stderr unless told otherwise. */
	SPF_warning_handler = spf_log;
	SPF_info_handler = spf_log;
	SPF_debug_handler = spf_log;
	/*
	 * libopendmarc judges alignment by organisational domains from a
	 * suffix list it reads once per process: the same file libpsl reads
	 * (dns_registered_domain()), when installed.
	 */
	OPENDMARC_LIB_T lib;
	memset(&lib, 0, sizeof(lib));
	if (access(AUTH_PSL_FILE, R_OK) == 0) {
		lib.tld_type = OPENDMARC_TLD_TYPE_MOZILLA;
		snprintf((char *)lib.tld_source_file, sizeof(lib.tld_source_file), "%s",
		         AUTH_PSL_FILE);
	}
	opendmarc_policy_library_init(&lib);
}

/* ------------------------------------------------------------ configuration */

static void auth_release(void *p)
{
	auth_t *a = p;
	if (a == NULL)
		return;
	if (a->dkim)
		dkim_close(a->dkim);
	auth_spf_dns_free(a->spf_dns);
	dns_unref(a->dns);
	free(a->servid);
	free(a->trust);
	free(a);
}

static void *auth_load(conf_t *c, void *prev, const ev_env_t *env, diag_t *d)
{
	(void)prev;
	size_t errors0 = diag_errors(d);
	bool enable, spf_helo;
	const char *servid, *trust;
	int action;
	char host[AUTH_SERVID_MAX_BYTES] = "localhost";
	gethostname(host, sizeof(host) - 1);
	conf_bool(c, "auth_enable", false, &enable, d);
	conf_str(c, "auth_serv_id", host, &servid, d);
	conf_str(c, "auth_trust_authserv_id", "", &trust, d);
	conf_enum(c, "auth_dmarc_action", dmarc_actions, DMARC_ACT_REJECT, &action, d);
	conf_bool(c, "auth_spf_helo", true, &spf_helo, d);
	auth_t *a = xalloc_calloc(1, sizeof(*a));
	for (size_t i = 0; i < AUTH_N_RULES; i++)
		a->score[i] = auth_rules[i].score;
	size_t ns = conf_count(c, "auth_score");
	for (size_t k = 0; k < ns; k++) {
		const char *file;
		unsigned line;
		const char *v = conf_value_at(c, "auth_score", k, &file, &line);
		char name[64];
		double sc;
		int used = 0;
		size_t i = AUTH_N_RULES;
		if (sscanf(v, "%63s %lf %n", name, &sc, &used) == 2 && v[used] == '\0')
			for (i = 0; i < AUTH_N_RULES && strcmp(auth_rules[i].name, name) != 0; i++)
				;
		if (i == AUTH_N_RULES || !isfinite(sc) || fabs(sc) > HITS_MAX_SCORE)
			diag_error(d, file, line,
			           "auth_score: expected NAME SCORE with NAME one of the auth"
			           " hits (SPF_PASS, DKIM_VALID, DMARC_REJECT, ...) and |SCORE| <="
			           " %g, got \"%s\"",
			           HITS_MAX_SCORE, v);
		else
			a->score[i] = sc;
	}
	if (servid[0] == '\0' || strpbrk(servid, " \t;()") != NULL) {
		const char *file = conf_path(c);
		unsigned line = 0;
		conf_value_at(c, "auth_serv_id", 0, &file, &line);
		diag_error(d, file, line, "auth_serv_id: \"%s\" is not a token%s", servid,
		           line ? "" : " (the host name, taken as default)");
	}
	if (diag_errors(d) > errors0 || !enable) {
		auth_release(a);
		return NULL;
	}
	if (env == NULL || env->dns == NULL) {
		diag_error(d, conf_path(c), 0, "auth: no DNS service");
		auth_release(a);
		return NULL;
	}
	pthread_once(&lib_once, libs_init_once);
	a->servid = xalloc_strdup(servid);
	a->trust = trust[0] ? xalloc_strdup(trust) : NULL;
	a->dmarc_action = action;
	a->spf_helo = spf_helo;
	a->dns = dns_ref(env->dns);
	a->spf_dns = auth_spf_dns_new(a->dns);
	a->dkim = dkim_init(NULL, NULL);
	if (a->spf_dns == NULL || a->dkim == NULL) {
		diag_error(d, conf_path(c), 0, "auth: cannot initialise libspf2 or libopendkim");
		auth_release(a);
		return NULL;
	}
	auth_dkim_dns_install(a->dkim, a->dns);
	return a;
}

static int auth_start(void *shared, const ev_env_t *env, diag_t *d)
{
	auth_t *a = shared;
	if (env->offline)
		return 0;
	int rc = dns_start(a->dns);
	if (rc != 0) {
		diag_error(d, NULL, 0, "auth: cannot start the DNS thread: %s", strerror(rc));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ the checks */

struct sig {
	char domain[AUTH_DOMAIN_MAX_BYTES];
	char selector[64];
	char b[16]; /* the first bytes of b=, to tell signatures apart (RFC 6008) */
	auth_result_t r;
	const char *why;
};

/* What one message's checks found; in the message arena. */
struct auth_msg {
	auth_result_t spf, helo, dmarc;
	const char *spf_identity; /* the address (or postmaster@helo) checked */
	struct sig sig[AUTH_MAX_SIGS];
	size_t nsig;
	const char *dkim_skipped; /* why DKIM was not verified (a size limit), or NULL */
	char from[AUTH_DOMAIN_MAX_BYTES];
	bool has_from;
	int policy; /* 'r', 'q', 'n' or 0 */
	bool trusted;
};

static auth_result_t spf_map(SPF_result_t r)
{
	switch (r) {
	case SPF_RESULT_PASS: return AUTH_PASS;
	case SPF_RESULT_FAIL: return AUTH_FAIL;
	case SPF_RESULT_SOFTFAIL: return AUTH_SOFTFAIL;
	case SPF_RESULT_NEUTRAL: return AUTH_NEUTRAL;
	case SPF_RESULT_TEMPERROR: return AUTH_TEMPERROR;
	case SPF_RESULT_PERMERROR: return AUTH_PERMERROR;
	default: return AUTH_NONE;
	}
}

/* SPF of sender ("" for the null sender: postmaster@helo) for ip. */
static auth_result_t spf_check(SPF_server_t *srv, const char *ip, const char *helo,
                               const char *sender)
{
	SPF_request_t *req = SPF_request_new(srv);
	if (req == NULL)
		return AUTH_TEMPERROR;
	auth_result_t res = AUTH_NONE;
	SPF_errcode_t e =
	    strchr(ip, ':') ? SPF_request_set_ipv6_str(req, ip) : SPF_request_set_ipv4_str(req, ip);
	if (helo && helo[0])
		SPF_request_set_helo_dom(req, helo);
	if (e == SPF_E_SUCCESS && SPF_request_set_env_from(req, sender) == 0) {
		unsigned failed = auth_dns_failures();
		SPF_response_t *resp = NULL;
		auth_spf_begin(srv);
		SPF_request_query_mailfrom(req, &resp);
		auth_spf_end();
		if (resp != NULL) {
			/*
			 * libspf2 leaves the result unset (invalid) for a record it
			 * could not fetch or failed to compile.
			 */
			SPF_result_t sr = SPF_response_result(resp);
			res = sr == SPF_RESULT_INVALID ? AUTH_N_RESULTS : spf_map(sr);
			SPF_response_free(resp);
		}
		if (auth_spf_over_limit())
			res = AUTH_PERMERROR; /* RFC 7208 4.6.4 */
		/*
		 * A record libspf2 could not fetch is reported as "none" or left
		 * unset: RFC 7208 2.6.6 calls that temperror. One it failed to
		 * compile is a permerror (4.6).
		 */
		if ((res == AUTH_NONE || res == AUTH_N_RESULTS) && auth_dns_failures() > failed)
			res = AUTH_TEMPERROR;
		else if (res == AUTH_N_RESULTS)
			res = AUTH_PERMERROR;
	}
	SPF_request_free(req);
	return res;
}

static const char dkim_sig_name[] = "DKIM-Signature";
#define DKIM_SIG_NAME_BYTES (sizeof(dkim_sig_name) - 1)

/* Whether the line at p (left bytes to the end) starts a DKIM-Signature field. */
static bool dkim_sig_at(const char *p, size_t left)
{
	return left > DKIM_SIG_NAME_BYTES &&
	       strncasecmp(p, dkim_sig_name, DKIM_SIG_NAME_BYTES) == 0 &&
	       (p[DKIM_SIG_NAME_BYTES] == ':' || p[DKIM_SIG_NAME_BYTES] == ' ' ||
	        p[DKIM_SIG_NAME_BYTES] == '\t');
}

/*
 * Walks the header of raw (len bytes) and returns its length through the
 * blank line. *hidden gets the number of DKIM-Signature fields libopendkim
 * is not to see; with w (a copy of the header) they are renamed there to a
 * field of the same length. Hidden are a field of more than
 * AUTH_MAX_SIG_TAGS tags and every one after the first AUTH_MAX_SIGS shown.
 */
static size_t dkim_sigs_walk(const char *raw, size_t len, char *w, size_t *hidden)
{
	static const char other[] = "X-DKIM-Skipped"; /* as long as dkim_sig_name */
	size_t shown = 0, end = len;
	*hidden = 0;
	for (size_t p = 0; p < len;) {
		const char *eol = memchr(raw + p, '\n', len - p);
		size_t next = eol ? (size_t)(eol - raw) + 1 : len;
		if (next - p <= 2 && (raw[p] == '\r' || raw[p] == '\n')) {
			end = next; /* the blank line */
			break;
		}
		if (!dkim_sig_at(raw + p, len - p)) {
			p = next;
			continue;
		}
		/* The whole field, its folded lines too; a tag-value holds no ';'. */
		size_t tags = 1;
		for (size_t q = p; q < next; q++)
			tags += raw[q] == ';';
		while (next < len && (raw[next] == ' ' || raw[next] == '\t')) {
			eol = memchr(raw + next, '\n', len - next);
			size_t after = eol ? (size_t)(eol - raw) + 1 : len;
			for (size_t q = next; q < after; q++)
				tags += raw[q] == ';';
			next = after;
		}
		if (tags > AUTH_MAX_SIG_TAGS || shown == AUTH_MAX_SIGS) {
			(*hidden)++;
			if (w != NULL)
				memcpy(w + p, other, DKIM_SIG_NAME_BYTES);
		} else {
			shown++;
		}
		p = next;
	}
	return end;
}

/*
 * libopendkim hashes and verifies every DKIM-Signature of the header, the
 * fields past max_header_size too, before any callback can drop one: each
 * costs a key lookup, a public-key operation (milliseconds under a key
 * with a huge exponent) and, with its own l= or c=, a pass over the body.
 * Only the first AUTH_MAX_SIGS are reported, so only they are shown to it.
 * Nor is a signature of more than AUTH_MAX_SIG_TAGS tags: it files a
 * signature's tags in chains by their first letter and looks each new one
 * up in its chain, so n tags of one letter cost n^2/2 compares; sixteen
 * signatures of 7,000 tags (1 MB) took 1.9 s of CPU. A copy of the header
 * (raw[0 .. *hlen], through its blank line) with those renamed; NULL when
 * none is.
 */
static char *dkim_header_capped(const char *raw, size_t len, size_t *hlen)
{
	size_t hidden;
	size_t end = dkim_sigs_walk(raw, len, NULL, &hidden);
	if (hidden == 0)
		return NULL;
	char *h = xalloc_malloc(end);
	memcpy(h, raw, end);
	dkim_sigs_walk(raw, end, h, &hidden);
	*hlen = end;
	return h;
}

static void dkim_verify_all(auth_t *a, msg_t *m, struct auth_msg *r)
{
	size_t len;
	bool cut;
	const char *raw = msg_raw(m, &len, &cut);
	if (raw == NULL || msg_header_get(m, "DKIM-Signature", 0) == NULL)
		return;
	if (cut) {
		r->dkim_skipped = "message over the size limit";
		return;
	}
	/*
	 * Nor past the header limits: libopendkim gets the raw header whole,
	 * the fields past them too, and for each of a signature's h= names (up
	 * to about 2,000) walks every field. With a key published for them,
	 * sixteen signatures naming 900 fields over a header of 128,000 short
	 * fields (1 MB) took 16 s of CPU; at max_header_fields (1000), 0.1 s.
	 */
	if (msg_fields_dropped(m) > 0) {
		r->dkim_skipped = "header over the size limits";
		return;
	}
	DKIM_STAT st;
	DKIM *dk = dkim_verify(a->dkim, (const unsigned char *)msg_queue_id(m), NULL, &st);
	if (dk == NULL)
		return;
	/* The library splits header and body itself. */
	size_t hlen = 0;
	char *capped = dkim_header_capped(raw, len, &hlen);
	if (capped != NULL) {
		dkim_chunk(dk, (unsigned char *)capped, hlen);
		free(capped);
		if (len > hlen)
			dkim_chunk(dk, (unsigned char *)raw + hlen, len - hlen);
	} else {
		dkim_chunk(dk, (unsigned char *)raw, len);
	}
	dkim_chunk(dk, NULL, 0);
	dkim_eom(dk, NULL);
	DKIM_SIGINFO **sigs = NULL;
	int nsigs = 0;
	if (dkim_getsiglist(dk, &sigs, &nsigs) == DKIM_STAT_OK) {
		for (int i = 0; i < nsigs && r->nsig < AUTH_MAX_SIGS; i++) {
			struct sig *s = &r->sig[r->nsig++];
			const unsigned char *dom = dkim_sig_getdomain(sigs[i]);
			const unsigned char *sel = dkim_sig_getselector(sigs[i]);
			snprintf(s->domain, sizeof(s->domain), "%s", dom ? (const char *)dom : "");
			for (char *p = s->domain; *p; p++)
				*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
			snprintf(s->selector, sizeof(s->selector), "%s",
			         sel ? (const char *)sel : "");
			unsigned int flags = dkim_sig_getflags(sigs[i]);
			int err = dkim_sig_geterror(sigs[i]);
			if ((flags & DKIM_SIGFLAG_PASSED) &&
			    dkim_sig_getbh(sigs[i]) == DKIM_SIGBH_MATCH) {
				s->r = AUTH_PASS;
			} else if (err == DKIM_SIGERROR_KEYFAIL) {
				/* The key's lookup failed: another try may do. A key
				 * record that is not one (DNSSYNTAX) is permanent
				 * (RFC 6376 6.1.2), as the signer's zone says so. */
				s->r = AUTH_TEMPERROR;
			} else if (err == DKIM_SIGERROR_BADSIG ||
			           dkim_sig_getbh(sigs[i]) == DKIM_SIGBH_MISMATCH) {
				s->r = AUTH_FAIL;
			} else {
				s->r = AUTH_PERMERROR;
			}
			if (s->r != AUTH_PASS)
				s->why = dkim_sig_geterrorstr(err);
			if (s->r == AUTH_PASS && dkim_sig_getbh(sigs[i]) == DKIM_SIGBH_MISMATCH)
				s->r = AUTH_FAIL;
			if (s->why == NULL && dkim_sig_getbh(sigs[i]) == DKIM_SIGBH_MISMATCH)
				s->why = "body hash mismatch";
		}
	}
	dkim_free(dk);
}

/* The one v=DMARC1 record among the TXT records of _dmarc.domain; see dmarc_check(). */
static int dmarc_record(auth_t *a, const char *domain, long deadline_ms, char *out, size_t cap)
{
	char q[DNS_QNAME_MAX_BYTES];
	if (snprintf(q, sizeof(q), "_dmarc.%s", domain) >= (int)sizeof(q))
		return DNS_NXDOMAIN;
	dns_answer_t *ans = xalloc_malloc(sizeof(*ans));
	int st = dns_lookup(a->dns, q, DNS_T_TXT, deadline_ms, ans);
	int found = 0;
	for (unsigned i = 0; st == DNS_NOERROR && i < ans->nrr; i++) {
		const char *t = dns_answer_rr(ans, i, NULL);
		if (strncasecmp(t, "v=DMARC1", 8) != 0 || (t[8] != ';' && t[8] != ' ' && t[8]))
			continue;
		if (found++ == 0)
			snprintf(out, cap, "%s", t);
	}
	free(ans);
	if (st == DNS_NOERROR)
		/* RFC 7489 6.6.3: none, or more than one, is no policy. */
		return found == 1 ? DNS_NOERROR : DNS_NODATA;
	return st;
}

static void dmarc_check(auth_t *a, msg_t *m, struct auth_msg *r, long deadline_ms)
{
	const char *from_hdr = msg_header_get(m, "From", 0);
	if (from_hdr == NULL || msg_header_get(m, "From", 1) != NULL ||
	    auth_from_domain(from_hdr, r->from, sizeof(r->from)) == NULL) {
		r->dmarc = AUTH_NONE; /* no single author domain: DMARC does not apply */
		return;
	}
	r->has_from = true;
	char org[AUTH_DOMAIN_MAX_BYTES] = "";
	dns_registered_domain(r->from, org, sizeof(org));
	char rec[2048];
	int st = dmarc_record(a, r->from, deadline_ms, rec, sizeof(rec));
	const char *used = r->from;
	if ((st == DNS_NXDOMAIN || st == DNS_NODATA) && org[0] && strcmp(org, r->from) != 0) {
		st = dmarc_record(a, org, deadline_ms, rec, sizeof(rec));
		used = org;
	}
	if (st == DNS_TIMEOUT || st == DNS_SERVFAIL) {
		r->dmarc = AUTH_TEMPERROR;
		return;
	}
	if (st != DNS_NOERROR) {
		r->dmarc = AUTH_NONE;
		return;
	}
	const char *ip = msg_client_ip(m);
	DMARC_POLICY_T *p = opendmarc_policy_connect_init(
	    (u_char *)(ip ? ip : "0.0.0.0"),
	    ip && strchr(ip, ':') ? DMARC_POLICY_IP_TYPE_IPV6 : DMARC_POLICY_IP_TYPE_IPV4);
	if (p == NULL) {
		r->dmarc = AUTH_TEMPERROR;
		return;
	}
	opendmarc_policy_store_from_domain(p, (u_char *)r->from);
	/* SPF as DMARC sees it: of MAIL FROM, or of HELO for the null sender. */
	const char *mf = msg_mail_from(m);
	const char *at = mf ? strrchr(mf, '@') : NULL;
	const char *spf_dom = at ? at + 1 : msg_helo(m);
	if (spf_dom != NULL) {
		int oc = r->spf == AUTH_PASS        ? DMARC_POLICY_SPF_OUTCOME_PASS
		         : r->spf == AUTH_TEMPERROR ? DMARC_POLICY_SPF_OUTCOME_TMPFAIL
		         : r->spf == AUTH_NONE      ? DMARC_POLICY_SPF_OUTCOME_NONE
		                                    : DMARC_POLICY_SPF_OUTCOME_FAIL;
		opendmarc_policy_store_spf(
		    p, (u_char *)spf_dom, oc,
		    at ? DMARC_POLICY_SPF_ORIGIN_MAILFROM : DMARC_POLICY_SPF_ORIGIN_HELO, NULL);
	}
	for (size_t i = 0; i < r->nsig; i++) {
		const struct sig *s = &r->sig[i];
		int oc = s->r == AUTH_PASS        ? DMARC_POLICY_DKIM_OUTCOME_PASS
		         : s->r == AUTH_TEMPERROR ? DMARC_POLICY_DKIM_OUTCOME_TMPFAIL
		                                  : DMARC_POLICY_DKIM_OUTCOME_FAIL;
		if (s->domain[0])
			opendmarc_policy_store_dkim(p, (u_char *)s->domain, (u_char *)s->selector,
			                            oc, NULL);
	}
	if (opendmarc_policy_store_dmarc(p, (u_char *)rec, (u_char *)r->from,
	                                 used == org ? (u_char *)org : NULL) != DMARC_PARSE_OKAY) {
		r->dmarc = AUTH_PERMERROR;
		opendmarc_policy_connect_shutdown(p);
		return;
	}
	int pol = opendmarc_get_policy_to_enforce(p);
	int pv = 0;
	/* A subdomain without its own record is judged by the organisation's sp=. */
	if (opendmarc_get_policy_token_used(p) == DMARC_USED_POLICY_IS_SP)
		opendmarc_policy_fetch_sp(p, &pv);
	else
		opendmarc_policy_fetch_p(p, &pv);
	r->policy = pv == DMARC_RECORD_P_REJECT       ? 'r'
	            : pv == DMARC_RECORD_P_QUARANTINE ? 'q'
	            : pv == DMARC_RECORD_P_NONE       ? 'n'
	                                              : 0;
	switch (pol) {
	case DMARC_POLICY_PASS: r->dmarc = AUTH_PASS; break;
	case DMARC_POLICY_REJECT:
	case DMARC_POLICY_QUARANTINE:
	case DMARC_POLICY_NONE: r->dmarc = AUTH_FAIL; break;
	case DMARC_POLICY_ABSENT: r->dmarc = AUTH_NONE; break;
	default: r->dmarc = AUTH_PERMERROR; break;
	}
	opendmarc_policy_connect_shutdown(p);
}

/* One dkim= result of the trusted upstream's field: a signature, unless "none". */
static bool upstream_sig(auth_result_t x, const char *d, void *ud)
{
	struct auth_msg *r = ud;
	if (x == AUTH_NONE)
		return true;
	struct sig *s = &r->sig[r->nsig++];
	s->r = x;
	snprintf(s->domain, sizeof(s->domain), "%s", d);
	return r->nsig < AUTH_MAX_SIGS;
}

/* Takes the results of the trusted upstream's field instead of checking. */
static void from_upstream(const char *v, struct auth_msg *r, msg_t *m)
{
	r->trusted = true;
	auth_result_t x = auth_ar_result(v, "spf", 0, NULL, NULL, 0);
	r->spf = x == AUTH_N_RESULTS ? AUTH_NONE : x;
	/*
	 * In one pass: read by index, each result cost a copy and a split of
	 * the whole value, and "dkim=none" ones take no slot, so 20,000 of
	 * them (220 KB) made 20,000 passes, 19 s of CPU.
	 */
	char d[AUTH_DOMAIN_MAX_BYTES];
	auth_ar_each(v, "dkim", "header.d", d, sizeof(d), upstream_sig, r);
	x = auth_ar_result(v, "dmarc", 0, "header.from", r->from, sizeof(r->from));
	r->dmarc = x == AUTH_N_RESULTS ? AUTH_NONE : x;
	r->has_from = r->from[0] != '\0';
	if (!r->has_from) {
		const char *fh = msg_header_get(m, "From", 0);
		r->has_from = fh && auth_from_domain(fh, r->from, sizeof(r->from)) != NULL;
	}
	/* The policy is in a comment, "dmarc=fail (p=reject dis=none)"; read it there. */
	const char *pp = strcasestr(v, "p=");
	while (pp && pp > v && pp[-1] != '(' && pp[-1] != ' ')
		pp = strcasestr(pp + 2, "p=");
	if (pp)
		r->policy = tolower((unsigned char)pp[2]) == 'r'   ? 'r'
		            : tolower((unsigned char)pp[2]) == 'q' ? 'q'
		                                                   : 'n';
}

/* ------------------------------------------------------------ hits and the field */

static void hit(const auth_t *a, hits_t *h, const char *name, const char *detail)
{
	for (size_t i = 0; i < AUTH_N_RULES; i++)
		if (strcmp(auth_rules[i].name, name) == 0) {
			hits_add(h, "auth", name, a->score[i], auth_rules[i].desc, detail);
			return;
		}
}

static void spf_hit(const auth_t *a, hits_t *h, auth_result_t r, bool helo, const char *who)
{
	static const char *const mf[] = {"SPF_NONE",       "SPF_PASS",    "SPF_FAIL",
	                                 "SPF_SOFTFAIL",   "SPF_NEUTRAL", "T_SPF_TEMPERROR",
	                                 "T_SPF_PERMERROR"};
	static const char *const he[] = {
	    "SPF_HELO_NONE",    "SPF_HELO_PASS",        "SPF_HELO_FAIL",       "SPF_HELO_SOFTFAIL",
	    "SPF_HELO_NEUTRAL", "T_SPF_HELO_TEMPERROR", "T_SPF_HELO_PERMERROR"};
	if (r < AUTH_N_RESULTS)
		hit(a, h, helo ? he[r] : mf[r],
		    arena_sprintf(hits_arena(h), "spf=%s %s", auth_result_name(r), who));
}

static void add_ar(const auth_t *a, msg_t *m, const struct auth_msg *r, const ev_score_ctx_t *ctx)
{
	abuf_t b;
	arena_t *ar = msg_arena(m);
	abuf_init(&b, ar, 512);
	abuf_puts(&b, a->servid);
	const char *helo = msg_helo(m);
	if (r->spf_identity)
		abuf_printf(&b, ";\n\tspf=%s smtp.mailfrom=%s", auth_result_name(r->spf),
		            r->spf_identity);
	if (r->helo != AUTH_N_RESULTS && helo)
		abuf_printf(&b, ";\n\tspf=%s smtp.helo=%s", auth_result_name(r->helo), helo);
	if (r->nsig == 0 && r->dkim_skipped)
		abuf_printf(&b, ";\n\tdkim=none (not verified: %s)", r->dkim_skipped);
	else if (r->nsig == 0)
		abuf_puts(&b, ";\n\tdkim=none");
	for (size_t i = 0; i < r->nsig; i++) {
		const struct sig *s = &r->sig[i];
		abuf_printf(&b, ";\n\tdkim=%s", auth_result_name(s->r));
		if (s->why)
			abuf_printf(&b, " (%s)", s->why);
		abuf_printf(&b, " header.d=%s header.s=%s", s->domain[0] ? s->domain : "invalid",
		            s->selector[0] ? s->selector : "invalid");
	}
	if (r->has_from) {
		abuf_printf(&b, ";\n\tdmarc=%s", auth_result_name(r->dmarc));
		if (r->policy)
			abuf_printf(&b, " (p=%s)",
			            r->policy == 'r'   ? "reject"
			            : r->policy == 'q' ? "quarantine"
			                               : "none");
		abuf_printf(&b, " header.from=%s", r->from);
	} else {
		abuf_puts(&b, ";\n\tdmarc=none");
	}
	verdict_field_add(ctx->fields, "Authentication-Results", b.data, true);
}

static ev_status_t auth_score(void *shared, void *conn, msg_t *m, const mime_t *mi, hits_t *h,
                              const ev_score_ctx_t *ctx)
{
	(void)conn;
	(void)mi;
	auth_t *a = shared;
	struct auth_msg *r = ctx->state;
	r->helo = AUTH_N_RESULTS;
	char id[AUTH_SERVID_MAX_BYTES];
	const char *upstream = NULL;
	/* Fields that claim our authserv-id came from outside: removed, never believed. */
	const char *v;
	size_t pos = 0, k = 0;
	for (; (v = msg_header_next(m, "Authentication-Results", &pos)) != NULL; k++) {
		if (auth_ar_servid(v, id, sizeof(id)) == NULL)
			continue;
		if (strcasecmp(id, a->servid) == 0)
			verdict_field_remove(ctx->fields, "Authentication-Results",
			                     (unsigned)k + 1);
		else if (a->trust && upstream == NULL && strcasecmp(id, a->trust) == 0)
			upstream = v;
	}
	/* past the header limits: not evidence, but a forged one still goes */
	for (size_t i = 0; (v = msg_dropped_auth_results(m, i)) != NULL; i++, k++)
		if (auth_ar_servid(v, id, sizeof(id)) != NULL && strcasecmp(id, a->servid) == 0)
			verdict_field_remove(ctx->fields, "Authentication-Results",
			                     (unsigned)k + 1);
	if (upstream != NULL) {
		from_upstream(upstream, r, m);
		if (ctx->explain)
			hits_note(h, "auth", "results taken from the trusted %s field", a->trust);
	} else {
		auth_dns_begin(ctx->deadline_ms);
		const char *ip = msg_client_ip(m), *helo = msg_helo(m), *mf = msg_mail_from(m);
		if (ip != NULL && (mf != NULL || helo != NULL)) {
			SPF_server_t *srv = SPF_server_new_dns(a->spf_dns, 0);
			if (srv != NULL) {
				if (mf != NULL && (mf[0] != '\0' || helo != NULL)) {
					r->spf = spf_check(srv, ip, helo, mf);
					r->spf_identity =
					    mf[0] ? mf
					          : arena_sprintf(msg_arena(m), "postmaster@%s",
					                          helo);
				}
				if (a->spf_helo && helo != NULL && dns_valid_hostname(helo))
					r->helo = spf_check(srv, ip, helo, helo);
				SPF_server_free(srv);
			}
		}
		dkim_verify_all(a, m, r);
		dmarc_check(a, m, r, ctx->deadline_ms);
	}

	if (r->spf_identity || r->trusted)
		spf_hit(a, h, r->spf, false, r->spf_identity ? r->spf_identity : "(upstream)");
	if (r->helo != AUTH_N_RESULTS)
		spf_hit(a, h, r->helo, true, msg_helo(m));
	bool valid = false, valid_au = false;
	for (size_t i = 0; i < r->nsig; i++) {
		valid |= r->sig[i].r == AUTH_PASS;
		valid_au |= r->sig[i].r == AUTH_PASS && r->has_from &&
		            strcasecmp(r->sig[i].domain, r->from) == 0;
	}
	if (r->nsig > 0) {
		hit(a, h, "DKIM_SIGNED", NULL);
		/*
		 * DKIM_VALID's detail names every signing domain that verified:
		 * auth_dkim_valid_sdid() reads it back for the welcomelists.
		 */
		const char *det = arena_sprintf(hits_arena(h), "d=%s: dkim=%s", r->sig[0].domain,
		                                auth_result_name(r->sig[0].r));
		if (valid) {
			det = "d=";
			for (size_t i = 0; i < r->nsig; i++)
				if (r->sig[i].r == AUTH_PASS)
					det = arena_sprintf(hits_arena(h), "%s%s%s", det,
					                    det[2] ? "," : "", r->sig[i].domain);
			det = arena_sprintf(hits_arena(h), "%s: dkim=pass", det);
		}
		hit(a, h, valid ? "DKIM_VALID" : "DKIM_INVALID", det);
	}
	if (valid_au)
		hit(a, h, "DKIM_VALID_AU", r->from);
	if (r->has_from) {
		const char *pname = r->policy == 'r'   ? "reject"
		                    : r->policy == 'q' ? "quarantine"
		                                       : "none";
		const char *det = arena_sprintf(hits_arena(h), "dmarc=%s p=%s header.from=%s",
		                                auth_result_name(r->dmarc), pname, r->from);
		switch (r->dmarc) {
		case AUTH_PASS: hit(a, h, "DMARC_PASS", det); break;
		case AUTH_FAIL:
			hit(a, h,
			    r->policy == 'r'   ? "DMARC_REJECT"
			    : r->policy == 'q' ? "DMARC_QUAR"
			                       : "DMARC_NONE",
			    det);
			break;
		case AUTH_TEMPERROR: hit(a, h, "T_DMARC_TEMPERROR", det); break;
		case AUTH_PERMERROR: hit(a, h, "T_DMARC_PERMERROR", det); break;
		default: hit(a, h, "DMARC_MISSING", r->from); break;
		}
		/* The domain owner's policy, carried out as configured. */
		if (r->dmarc == AUTH_FAIL && (r->policy == 'r' || r->policy == 'q') &&
		    a->dmarc_action != DMARC_ACT_SCORE && ctx->action_floor != NULL) {
			verdict_action_t want =
			    r->policy == 'r' && a->dmarc_action == DMARC_ACT_REJECT
			        ? VERDICT_REJECT
			        : VERDICT_QUARANTINE;
			if (*ctx->action_floor < want)
				*ctx->action_floor = want;
			if (want == VERDICT_REJECT)
				hits_offer_reason(h, HITS_MAX_SCORE,
				                  arena_sprintf(hits_arena(h),
				                                "DMARC policy of %s: reject",
				                                r->from));
		}
	}
	hits_set_metric(h, "auth_spf", r->spf_identity || r->trusted ? (double)r->spf : -1.0);
	hits_set_metric(h, "auth_spf_helo", r->helo != AUTH_N_RESULTS ? (double)r->helo : -1.0);
	hits_set_metric(h, "auth_dkim",
	                (r->nsig > 0) | valid << 1 | valid_au << 2 |
	                    (r->dkim_skipped != NULL) << 3);
	hits_set_metric(h, "auth_dmarc", r->has_from ? (double)r->dmarc : -1.0);
	hits_set_metric(h, "auth_dmarc_p", r->policy);
	if (r->dkim_skipped && ctx->explain)
		hits_note(h, "auth",
		          "DKIM not verified: %s (max_message_size, max_header_fields, "
		          "max_header_size)",
		          r->dkim_skipped);
	if (!r->trusted)
		add_ar(a, m, r, ctx);
	return !r->trusted && auth_dns_failures() > 0 ? EV_DEGRADED : EV_OK;
}

bool auth_eval(const hits_t *h, const char *func, bool *answer)
{
	static const struct {
		const char *func, *metric;
		int value; /* the result, or the dkim bit, or the dmarc policy */
	} evals[] = {
	    {"check_for_spf_pass", "auth_spf", AUTH_PASS},
	    {"check_for_spf_fail", "auth_spf", AUTH_FAIL},
	    {"check_for_spf_softfail", "auth_spf", AUTH_SOFTFAIL},
	    {"check_for_spf_neutral", "auth_spf", AUTH_NEUTRAL},
	    {"check_for_spf_none", "auth_spf", AUTH_NONE},
	    {"check_for_spf_permerror", "auth_spf", AUTH_PERMERROR},
	    {"check_for_spf_temperror", "auth_spf", AUTH_TEMPERROR},
	    {"check_for_spf_helo_pass", "auth_spf_helo", AUTH_PASS},
	    {"check_for_spf_helo_fail", "auth_spf_helo", AUTH_FAIL},
	    {"check_for_spf_helo_softfail", "auth_spf_helo", AUTH_SOFTFAIL},
	    {"check_for_spf_helo_neutral", "auth_spf_helo", AUTH_NEUTRAL},
	    {"check_for_spf_helo_none", "auth_spf_helo", AUTH_NONE},
	    {"check_for_spf_helo_permerror", "auth_spf_helo", AUTH_PERMERROR},
	    {"check_for_spf_helo_temperror", "auth_spf_helo", AUTH_TEMPERROR},
	    {"check_dkim_signed", "auth_dkim", 1},
	    {"check_dkim_valid", "auth_dkim", 2},
	    {"check_dkim_valid_author_sig", "auth_dkim", 4},
	    {"check_dkim_dependable", "auth_dkim", 8},
	    {"check_dmarc_pass", "auth_dmarc", AUTH_PASS},
	    {"check_dmarc_missing", "auth_dmarc", AUTH_NONE},
	    {"check_dmarc_reject", "auth_dmarc_p", 'r'},
	    {"check_dmarc_quarantine", "auth_dmarc_p", 'q'},
	    {"check_dmarc_none", "auth_dmarc_p", 'n'},
	};
	for (size_t i = 0; i < sizeof(evals) / sizeof(evals[0]); i++) {
		if (strcmp(evals[i].func, func) != 0)
			continue;
		double v, dmarc;
		if (!hits_metric(h, evals[i].metric, &v) || !hits_metric(h, "auth_dmarc", &dmarc))
			return false;    /* auth did not judge this message */
		if (evals[i].value == 8) /* verified, not skipped for its size */
			*answer = ((int)v & 8) == 0;
		else if (strcmp(evals[i].metric, "auth_dkim") == 0)
			*answer = ((int)v & evals[i].value) != 0;
		else if (strcmp(evals[i].metric, "auth_dmarc_p") == 0)
			/* SpamAssassin's: the message failed DMARC under that policy */
			*answer = (int)dmarc == AUTH_FAIL && (int)v == evals[i].value;
		else
			*answer = (int)v == evals[i].value;
		return true;
	}
	return false;
}

void auth_dkim_valid_each(const hits_t *h, auth_sdid_fn fn, void *ud)
{
	for (size_t i = 0; i < hits_count(h); i++) {
		const hit_t *x = hits_at(h, i);
		if (strcmp(x->source, "auth") != 0 || strcmp(x->name, "DKIM_VALID") != 0 ||
		    x->detail == NULL || strncmp(x->detail, "d=", 2) != 0)
			continue;
		/* "d=a.example,b.example: dkim=pass" */
		for (const char *p = x->detail + 2; *p && *p != ':';) {
			size_t n = strcspn(p, ",:");
			if (n > 0 && !fn(p, n, ud))
				return;
			p += n + (p[n] == ',');
		}
	}
}

struct sdid_find {
	const char *sdid;
	size_t len;
	bool subdomains, found;
};

static bool sdid_is(const char *p, size_t n, void *ud)
{
	struct sdid_find *f = ud;
	size_t sl = f->len;
	f->found = f->subdomains
	               ? n > sl && p[n - sl - 1] == '.' && strncasecmp(p + n - sl, f->sdid, sl) == 0
	               : n == sl && strncasecmp(p, f->sdid, sl) == 0;
	return !f->found;
}

bool auth_dkim_valid_sdid(const hits_t *h, const char *sdid, bool subdomains)
{
	struct sdid_find f = {.sdid = sdid, .len = strlen(sdid), .subdomains = subdomains};
	auth_dkim_valid_each(h, sdid_is, &f);
	return f.found;
}

const evidence_ops_t auth_evidence = {
    .name = "auth",
    .load = auth_load,
    .start = auth_start,
    .release = auth_release,
    .score = auth_score,
    .msg_state_bytes = sizeof(struct auth_msg),
    .flags = EV_F_RAW,
};
