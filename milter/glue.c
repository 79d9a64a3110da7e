/*
 * glue.c - libmilter callbacks driving the scan pipeline (see glue.h).
 * Per-connection state lives in struct glue_conn (smfi_setpriv); the
 * message being received lives in its own msg_t arena.
 */
#include "config.h"

#include "glue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmilter/mfapi.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "log.h"

#define GLUE_MAX_OWN_HEADERS 32
#define GLUE_LOG_TOP_RULES   5

struct glue_own_header {
	char *name;  /* as it arrived, for smfi_chgheader */
	int index;   /* 1-based among fields of that name */
	char *value; /* for renaming */
};

struct glue_conn {
	scan_conn_t *sc;
	msg_t *m;
	char *helo;
	bool nr_hdr, nr_body; /* the MTA takes no reply for these stages */
	struct glue_own_header own[GLUE_MAX_OWN_HEADERS];
	size_t n_own;
	size_t n_own_dropped;
};

static glue_reload_fn glue_reload;

static struct glue_conn *glue_get(SMFICTX *ctx)
{
	return smfi_getpriv(ctx);
}

static void glue_reset_msg(struct glue_conn *gc)
{
	msg_free(gc->m);
	gc->m = NULL;
	for (size_t i = 0; i < gc->n_own; i++) {
		free(gc->own[i].name);
		free(gc->own[i].value);
	}
	gc->n_own = 0;
	gc->n_own_dropped = 0;
}

static sfsistat glue_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                               unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                               unsigned long *pf2, unsigned long *pf3)
{
	struct glue_conn *gc = calloc(1, sizeof(*gc));
	if (gc == NULL)
		return SMFIS_TEMPFAIL;
	smfi_setpriv(ctx, gc);
	*pf0 = (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE) & f0;
	/*
	 * Header and body chunks need no answer: asking the MTA not to wait
	 * for one saves a round trip per header and per chunk.
	 */
	unsigned long want = SMFIP_NOUNKNOWN | SMFIP_NR_HDR | SMFIP_NR_BODY;
	*pf1 = want & f1;
	gc->nr_hdr = (*pf1 & SMFIP_NR_HDR) != 0;
	gc->nr_body = (*pf1 & SMFIP_NR_BODY) != 0;
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

static const char *glue_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	if (sa == NULL)
		return NULL;
	if (sa->sa_family == AF_INET)
		return inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf,
		                 (socklen_t)len);
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		/* An IPv4-mapped client is an IPv4 client for every list. */
		if (IN6_IS_ADDR_V4MAPPED(a6))
			return inet_ntop(AF_INET, &a6->s6_addr[12], buf, (socklen_t)len);
		return inet_ntop(AF_INET6, a6, buf, (socklen_t)len);
	}
	return NULL;
}

static sfsistat glue_connect(SMFICTX *ctx, char *hostname, struct sockaddr *hostaddr)
{
	struct glue_conn *gc = glue_get(ctx);
	if (gc == NULL) { /* an MTA that skipped negotiation callbacks */
		gc = calloc(1, sizeof(*gc));
		if (gc == NULL)
			return SMFIS_TEMPFAIL;
		smfi_setpriv(ctx, gc);
	}
	scan_gen_t *g = scan_gen_acquire();
	if (g == NULL)
		return SMFIS_TEMPFAIL;
	char ip[INET6_ADDRSTRLEN];
	ev_conn_info_t ci = {glue_addr(hostaddr, ip, sizeof(ip)), hostname};
	gc->sc = scan_conn_begin(g, &ci);
	scan_gen_unref(g);
	return SMFIS_CONTINUE;
}

static sfsistat glue_helo(SMFICTX *ctx, char *helo)
{
	struct glue_conn *gc = glue_get(ctx);
	free(gc->helo);
	gc->helo = helo ? strdup(helo) : NULL;
	return SMFIS_CONTINUE;
}

static sfsistat glue_envfrom(SMFICTX *ctx, char **argv)
{
	struct glue_conn *gc = glue_get(ctx);
	if (gc == NULL || gc->sc == NULL)
		return SMFIS_TEMPFAIL;
	glue_reset_msg(gc);
	gc->m = scan_msg_new(gc->sc);
	msg_set_helo(gc->m, gc->helo);
	msg_set_mail_from(gc->m, argv[0]);
	msg_set_queue_id(gc->m, smfi_getsymval(ctx, "i"));
	msg_set_auth(gc->m, smfi_getsymval(ctx, "{auth_authen}"));
	scan_envelope(gc->sc, gc->m);
	return SMFIS_CONTINUE;
}

static sfsistat glue_envrcpt(SMFICTX *ctx, char **argv)
{
	struct glue_conn *gc = glue_get(ctx);
	if (gc->m != NULL)
		msg_add_rcpt(gc->m, argv[0]);
	return SMFIS_CONTINUE;
}

static sfsistat glue_header(SMFICTX *ctx, char *name, char *value)
{
	struct glue_conn *gc = glue_get(ctx);
	sfsistat ok = gc->nr_hdr ? SMFIS_NOREPLY : SMFIS_CONTINUE;
	if (gc->m == NULL)
		return ok;
	if (scan_header(gc->sc, gc->m, name, value))
		return ok;
	const verdict_policy_t *p = scan_gen_policy(scan_conn_gen(gc->sc));
	if (p->foreign != VERDICT_FOREIGN_KEEP) {
		/*
		 * A field that claims to be our verdict came from outside: the
		 * pipeline did not score it, and it is not left in place either,
		 * so no sender can pre-set it.
		 */
		int index = 1;
		for (size_t i = 0; i < gc->n_own; i++)
			if (strcasecmp(gc->own[i].name, name) == 0)
				index++;
		if (gc->n_own < GLUE_MAX_OWN_HEADERS) {
			gc->own[gc->n_own].name = strdup(name);
			gc->own[gc->n_own].value = strdup(value);
			gc->own[gc->n_own].index = index;
			gc->n_own++;
		} else {
			gc->n_own_dropped++;
		}
	}
	return ok;
}

static sfsistat glue_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct glue_conn *gc = glue_get(ctx);
	if (gc->m != NULL)
		msg_append_body(gc->m, chunk, len);
	return gc->nr_body ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

/* Removes (or renames) the foreign copies of our fields, last first so indexes hold. */
static void glue_strip_foreign(SMFICTX *ctx, struct glue_conn *gc, const verdict_policy_t *p)
{
	for (size_t i = gc->n_own; i-- > 0;) {
		struct glue_own_header *o = &gc->own[i];
		if (smfi_chgheader(ctx, o->name, o->index, NULL) != MI_SUCCESS)
			log_msg(LOG_L_WARNING, "%s: cannot remove foreign %s header",
			        msg_queue_id(gc->m), o->name);
		if (p->foreign == VERDICT_FOREIGN_RENAME) {
			char renamed[256];
			snprintf(renamed, sizeof(renamed), "X-Foreign-%s", o->name);
			smfi_addheader(ctx, renamed, o->value);
		}
	}
}

static void glue_log(struct glue_conn *gc, const scan_result_t *r)
{
	char top[512] = "";
	size_t n = hits_count(r->hits), used = 0;
	for (size_t i = 0; i < n && i < GLUE_LOG_TOP_RULES; i++) {
		const hit_t *h = hits_at(r->hits, i);
		int w = snprintf(top + used, sizeof(top) - used, "%s%s(%.1f)", i ? "," : "",
		                 h->name, h->score);
		if (w < 0 || (size_t)w >= sizeof(top) - used)
			break;
		used += (size_t)w;
	}
	const char *ip = msg_client_ip(gc->m);
	log_msg(LOG_L_INFO, "queue_id=%s ip=%s score=%.2f action=%s rules=%s%s ms=%.1f",
	        msg_queue_id(gc->m), ip ? ip : "-", r->score, verdict_action_name(r->action),
	        used ? top : "-", n > GLUE_LOG_TOP_RULES ? ",..." : "", r->elapsed_ms);
}

#define GLUE_REASON_MAX_BYTES 200

/*
 * Splits a configured reply into its code, enhanced status code and text,
 * appending reason (a DNS list's TXT text) when evidence offered one. The
 * reason comes from outside: only printable ASCII without '%' (libmilter
 * formats the text) is kept, and at most GLUE_REASON_MAX_BYTES of it.
 */
static sfsistat glue_reply(SMFICTX *ctx, const char *reply, const char *reason, sfsistat status)
{
	char code[4], xcode[16] = "", text[512];
	memcpy(code, reply, 3);
	code[3] = '\0';
	const char *t = reply + 4;
	size_t xl = strspn(t, "0123456789.");
	if (xl > 0 && xl < sizeof(xcode) && t[xl] == ' ') {
		memcpy(xcode, t, xl);
		xcode[xl] = '\0';
		t += xl + 1;
	}
	size_t n = (size_t)snprintf(text, sizeof(text), "%s", t);
	if (reason != NULL && n + 3 < sizeof(text)) {
		text[n++] = ':';
		text[n++] = ' ';
		for (size_t i = 0; reason[i] && i < GLUE_REASON_MAX_BYTES && n + 1 < sizeof(text);
		     i++) {
			unsigned char c = (unsigned char)reason[i];
			text[n++] = (c >= 32 && c < 127 && c != '%') ? (char)c : ' ';
		}
		text[n] = '\0';
	}
	if (smfi_setreply(ctx, code, xcode[0] ? xcode : NULL, text) != MI_SUCCESS)
		log_msg(LOG_L_WARNING, "cannot set reply '%s'", reply);
	return status;
}

static sfsistat glue_eom(SMFICTX *ctx)
{
	struct glue_conn *gc = glue_get(ctx);
	if (gc == NULL || gc->m == NULL || gc->sc == NULL)
		return SMFIS_CONTINUE;
	const char *qid = smfi_getsymval(ctx, "i");
	if (qid != NULL)
		msg_set_queue_id(gc->m, qid);
	const verdict_policy_t *p = scan_gen_policy(scan_conn_gen(gc->sc));
	scan_result_t *r = scan_score(gc->sc, gc->m, NULL);
	if (r->failed != NULL)
		log_msg(LOG_L_ERR, "%s: internal error in %s; on_error=%s (%llu message(s) so far)",
		        msg_queue_id(gc->m), r->failed,
		        p->on_error == VERDICT_ERR_TEMPFAIL ? "tempfail" : "accept",
		        (unsigned long long)scan_failed_total());
	glue_log(gc, r);
	sfsistat st = SMFIS_ACCEPT;
	switch (r->action) {
	case VERDICT_REJECT:
		st = glue_reply(ctx, p->reject_reply, hits_reason(r->hits), SMFIS_REJECT);
		break;
	case VERDICT_TEMPFAIL:
		st = glue_reply(ctx, p->tempfail_reply, r->failed ? NULL : hits_reason(r->hits),
		                SMFIS_TEMPFAIL);
		break;
	case VERDICT_QUARANTINE: {
		char reason[64];
		snprintf(reason, sizeof(reason), "spam score %.1f", r->score);
		if (smfi_quarantine(ctx, reason) != MI_SUCCESS)
			log_msg(LOG_L_WARNING, "%s: quarantine refused by the MTA",
			        msg_queue_id(gc->m));
	}
		/* a held message still carries the verdict headers */
		/* fall through */
	case VERDICT_ADD_HEADER:
	case VERDICT_ACCEPT:
	default:
		if (p->foreign != VERDICT_FOREIGN_KEEP)
			glue_strip_foreign(ctx, gc, p);
		verdict_header_t hv[5];
		size_t n = verdict_headers(p, msg_arena(gc->m), r->score, r->action, r->hits, hv);
		n += verdict_error_header(r->failed, msg_arena(gc->m), &hv[n]);
		for (size_t i = 0; i < n; i++)
			if (smfi_addheader(ctx, (char *)hv[i].name, (char *)hv[i].value) !=
			    MI_SUCCESS)
				log_msg(LOG_L_WARNING, "%s: cannot add %s", msg_queue_id(gc->m),
				        hv[i].name);
		break;
	}
	scan_verdict_done(gc->sc, gc->m, r);
	glue_reset_msg(gc);
	return st;
}

static sfsistat glue_abort(SMFICTX *ctx)
{
	struct glue_conn *gc = glue_get(ctx);
	if (gc != NULL)
		glue_reset_msg(gc);
	return SMFIS_CONTINUE;
}

static sfsistat glue_close(SMFICTX *ctx)
{
	struct glue_conn *gc = glue_get(ctx);
	if (gc == NULL)
		return SMFIS_CONTINUE;
	glue_reset_msg(gc);
	scan_conn_end(gc->sc);
	free(gc->helo);
	free(gc);
	smfi_setpriv(ctx, NULL);
	return SMFIS_CONTINUE;
}

static struct smfiDesc glue_desc = {
    .xxfi_name = "sift",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE,
    .xxfi_connect = glue_connect,
    .xxfi_helo = glue_helo,
    .xxfi_envfrom = glue_envfrom,
    .xxfi_envrcpt = glue_envrcpt,
    .xxfi_header = glue_header,
    .xxfi_body = glue_body,
    .xxfi_eom = glue_eom,
    .xxfi_abort = glue_abort,
    .xxfi_close = glue_close,
    .xxfi_negotiate = glue_negotiate,
};

/*
 * libmilter writes each header change and the final reply as separate
 * small writes; on TCP, Nagle's algorithm holds the later ones until the
 * MTA's delayed ACK, about 40 ms per message. libmilter does not expose its
 * listening socket, so it is found among the open descriptors; sockets it
 * accepts inherit TCP_NODELAY from it (Linux).
 */
#define GLUE_MAX_FD_SCAN 1024
static void glue_nodelay_listener(void)
{
	for (int fd = 3; fd < GLUE_MAX_FD_SCAN; fd++) {
		int listening = 0, one = 1;
		socklen_t l = sizeof(listening);
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) < 0 || !listening)
			continue;
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
		    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
			continue;
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
			log_msg(LOG_L_WARNING, "cannot set TCP_NODELAY on the milter socket: %s",
			        strerror(errno));
	}
}

int glue_open(const scan_settings_t *s, char *err, size_t err_len)
{
	if (smfi_setconn((char *)s->socket) != MI_SUCCESS) {
		snprintf(err, err_len, "bad socket '%s'", s->socket);
		return -1;
	}
	if (smfi_settimeout((int)(s->milter_timeout_ms / 1000)) != MI_SUCCESS) {
		snprintf(err, err_len, "bad milter_timeout");
		return -1;
	}
	if (smfi_register(glue_desc) != MI_SUCCESS) {
		snprintf(err, err_len, "libmilter refused to register the filter");
		return -1;
	}
	if (smfi_opensocket(1) != MI_SUCCESS) {
		snprintf(err, err_len, "cannot open socket '%s': %s", s->socket, strerror(errno));
		return -1;
	}
	glue_nodelay_listener();
	return 0;
}

int glue_run(glue_reload_fn reload)
{
	glue_reload = reload;
	return smfi_main() == MI_SUCCESS ? 0 : -1;
}

/*
 * libmilter's signal thread sigwait()s for SIGHUP, SIGTERM and SIGINT and
 * stops the filter on any of them; it has no hook, and a second thread
 * waiting for SIGHUP would race it for the signal. Administrators expect
 * SIGHUP to reload, so the program provides sigwait() itself: the linker
 * binds libmilter's call to this definition, which runs the reload for
 * SIGHUP and hands every other signal back unchanged.
 */
int sigwait(const sigset_t *set, int *sig)
{
	for (;;) {
		int s = sigwaitinfo(set, NULL);
		if (s < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (s == SIGHUP && glue_reload != NULL) {
			glue_reload();
			continue;
		}
		*sig = s;
		return 0;
	}
}
