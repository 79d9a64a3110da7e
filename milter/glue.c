/*
 * glue.c - libmilter callbacks driving the scan pipeline (see glue.h).
 * Per-connection state lives in struct glue_conn (smfi_setpriv); the
 * message being received lives in its own msg_t arena.
 */
#include "config.h"

#include "glue.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <libmilter/mfapi.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "msglog.h"
#include "xalloc.h"

/*
 * Incoming fields that claim to be our verdict. Removing them needs only
 * each name and how many copies arrived (smfi_chgheader counts copies of a
 * name case-insensitively, as the MTA does); renaming also needs the
 * values. Both live in the message's arena: the names are a handful (one
 * per verdict field), and the values are kept up to the message size
 * limit, past which the copies are still removed, just not renamed.
 */
struct glue_own_name {
	const char *name; /* as it first arrived */
	unsigned count;   /* copies seen, of any case */
};
struct glue_own_value {
	size_t name_index; /* into glue_conn.own_names */
	const char *value;
};

struct glue_conn {
	scan_conn_t *sc;
	msg_t *m;
	char *helo;
	bool nr_hdr, nr_body; /* the MTA takes no reply for these stages */
	bool leadspc;         /* header values come (and go) with their leading space */
	struct glue_own_name *own_names;
	size_t n_own_names, cap_own_names;
	struct glue_own_value *own_values;
	size_t n_own_values, cap_own_values;
	uint64_t own_value_bytes;
	unsigned long own_not_renamed;
};

static glue_reload_fn glue_reload;

/*
 * Messages between MAIL FROM and the end of their last callback: what a
 * stop waits for (glue_drain) before the process exits under them.
 */
static atomic_int glue_in_flight;
/*
 * Connections holding a scanning connection, and so a reference to their
 * generation: the modules stop (reputation updates saved, the Bayes queue
 * written) only when the last reference goes, so a stop ends them first
 * (glue_end_sessions).
 */
static atomic_int glue_open_conns;

/*
 * libmilter calls the callbacks in the order the client sends commands,
 * and lets through orders no MTA uses (HELO or ABORT before negotiation,
 * CONNECT twice, a second negotiation, headers with no MAIL). So every
 * callback takes the state as it finds it: glue_conn() makes it when a
 * callback that may start a connection finds none, and the others do
 * nothing (or refuse the message) without it.
 */
static struct glue_conn *glue_get(SMFICTX *ctx)
{
	return smfi_getpriv(ctx);
}

static struct glue_conn *glue_conn(SMFICTX *ctx)
{
	struct glue_conn *gc = glue_get(ctx);
	if (gc != NULL)
		return gc;
	gc = calloc(1, sizeof(*gc));
	if (gc == NULL)
		return NULL;
	if (smfi_setpriv(ctx, gc) != MI_SUCCESS) {
		free(gc);
		return NULL;
	}
	return gc;
}

static void glue_reset_msg(struct glue_conn *gc)
{
	if (gc->m != NULL)
		atomic_fetch_sub(&glue_in_flight, 1);
	msg_free(gc->m);
	gc->m = NULL;
	gc->own_names = NULL;
	gc->n_own_names = gc->cap_own_names = 0;
	gc->own_values = NULL;
	gc->n_own_values = gc->cap_own_values = 0;
	gc->own_value_bytes = 0;
	gc->own_not_renamed = 0;
}

/* Ends the message and the scanning connection, keeping the private data. */
static void glue_reset_conn(struct glue_conn *gc)
{
	glue_reset_msg(gc);
	if (gc->sc == NULL)
		return;
	scan_conn_end(gc->sc);
	gc->sc = NULL;
	atomic_fetch_sub(&glue_open_conns, 1);
}

static sfsistat glue_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                               unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                               unsigned long *pf2, unsigned long *pf3)
{
	(void)f2;
	(void)f3;
	/* A repeated negotiation keeps the connection it finds. */
	struct glue_conn *gc = glue_conn(ctx);
	if (gc == NULL)
		return SMFIS_TEMPFAIL;
	*pf0 = (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE) & f0;
	/*
	 * Header and body chunks need no answer: asking the MTA not to wait
	 * for one saves a round trip per header and per chunk.
	 */
	/*
	 * SMFIP_HDR_LEADSPC: without it the MTA drops the space after the
	 * colon, and DKIM's "simple" header canonicalisation needs the field
	 * byte-exact (the raw copy, msg.h). With it, the fields we add must
	 * bring their own space (glue_addheader()).
	 */
	unsigned long want = SMFIP_NOUNKNOWN | SMFIP_NR_HDR | SMFIP_NR_BODY | SMFIP_HDR_LEADSPC;
	*pf1 = want & f1;
	gc->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
	gc->nr_hdr = (*pf1 & SMFIP_NR_HDR) != 0;
	gc->nr_body = (*pf1 & SMFIP_NR_BODY) != 0;
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

/* A macro's value for debug lines: "-" when the MTA did not send it. */
static const char *glue_sym(SMFICTX *ctx, const char *name)
{
	const char *v = smfi_getsymval(ctx, (char *)name);
	return v != NULL ? v : "-";
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
	struct glue_conn *gc = glue_conn(ctx);
	if (gc == NULL)
		return SMFIS_TEMPFAIL;
	/* A second CONNECT starts over: the client may be another one now. */
	glue_reset_conn(gc);
	scan_gen_t *g = scan_gen_acquire();
	if (g == NULL)
		return SMFIS_TEMPFAIL;
	char ip[INET6_ADDRSTRLEN];
	ev_conn_info_t ci = {glue_addr(hostaddr, ip, sizeof(ip)), hostname};
	gc->sc = scan_conn_begin(g, &ci);
	atomic_fetch_add(&glue_open_conns, 1);
	scan_gen_unref(g);
	if (log_enabled(LOG_L_DEBUG))
		log_msg(LOG_L_DEBUG, "connect from %s [%s] daemon=%s mta=%s",
		        hostname ? hostname : "-", ci.client_ip ? ci.client_ip : "-",
		        glue_sym(ctx, "{daemon_name}"), glue_sym(ctx, "j"));
	return SMFIS_CONTINUE;
}

static sfsistat glue_helo(SMFICTX *ctx, char *helo)
{
	struct glue_conn *gc = glue_conn(ctx);
	if (gc == NULL)
		return SMFIS_TEMPFAIL;
	free(gc->helo);
	gc->helo = helo ? xalloc_strdup(helo) : NULL;
	if (log_enabled(LOG_L_DEBUG))
		log_msg(LOG_L_DEBUG, "helo %s tls=%s", helo ? helo : "-",
		        glue_sym(ctx, "{tls_version}"));
	return SMFIS_CONTINUE;
}

static sfsistat glue_envfrom(SMFICTX *ctx, char **argv)
{
	struct glue_conn *gc = glue_get(ctx);
	/* No message without a connection: the MTA must start with CONNECT. */
	if (gc == NULL || gc->sc == NULL)
		return SMFIS_TEMPFAIL;
	glue_reset_msg(gc);
	gc->m = scan_msg_new(gc->sc);
	atomic_fetch_add(&glue_in_flight, 1);
	msg_set_helo(gc->m, gc->helo);
	msg_set_mail_from(gc->m, argv != NULL && argv[0] != NULL ? argv[0] : "");
	msg_set_queue_id(gc->m, smfi_getsymval(ctx, "i"));
	msg_set_auth(gc->m, smfi_getsymval(ctx, "{auth_authen}"));
	if (log_enabled(LOG_L_DEBUG))
		log_msg(LOG_L_DEBUG, "%s: mail from=%s args=%s auth=%s mail_addr=%s",
		        msg_queue_id(gc->m), argv != NULL && argv[0] != NULL ? argv[0] : "-",
		        argv != NULL && argv[0] != NULL && argv[1] != NULL ? argv[1] : "-",
		        glue_sym(ctx, "{auth_authen}"), glue_sym(ctx, "{mail_addr}"));
	scan_envelope(gc->sc, gc->m);
	return SMFIS_CONTINUE;
}

static sfsistat glue_envrcpt(SMFICTX *ctx, char **argv)
{
	struct glue_conn *gc = glue_get(ctx);
	if (gc == NULL || gc->m == NULL || argv == NULL || argv[0] == NULL)
		return SMFIS_CONTINUE;
	msg_add_rcpt(gc->m, argv[0]);
	if (log_enabled(LOG_L_DEBUG))
		log_msg(LOG_L_DEBUG, "%s: rcpt to=%s", msg_queue_id(gc->m), argv[0]);
	return SMFIS_CONTINUE;
}

/* Notes one incoming copy of a verdict field, for glue_strip_foreign(). */
static void glue_note_own(struct glue_conn *gc, const verdict_policy_t *p, const char *name,
                          const char *value)
{
	arena_t *a = msg_arena(gc->m);
	size_t k = 0;
	while (k < gc->n_own_names && strcasecmp(gc->own_names[k].name, name) != 0)
		k++;
	if (k == gc->n_own_names) {
		if (gc->n_own_names == gc->cap_own_names)
			gc->own_names = arena_grow(a, gc->own_names, gc->n_own_names,
			                           &gc->cap_own_names, sizeof(*gc->own_names), 4);
		gc->own_names[k] = (struct glue_own_name){arena_strdup(a, name), 0};
		gc->n_own_names++;
	}
	gc->own_names[k].count++;
	if (p->foreign != VERDICT_FOREIGN_RENAME)
		return;
	const scan_settings_t *s = scan_gen_settings(scan_conn_gen(gc->sc));
	size_t vlen = strlen(value);
	if (gc->own_value_bytes + vlen > s->max_message_bytes) {
		gc->own_not_renamed++;
		return;
	}
	if (gc->n_own_values == gc->cap_own_values)
		gc->own_values = arena_grow(a, gc->own_values, gc->n_own_values,
		                            &gc->cap_own_values, sizeof(*gc->own_values), 8);
	gc->own_values[gc->n_own_values++] =
	    (struct glue_own_value){k, arena_strndup(a, value, vlen)};
	gc->own_value_bytes += vlen;
}

static sfsistat glue_header(SMFICTX *ctx, char *name, char *value)
{
	struct glue_conn *gc = glue_get(ctx);
	if (gc == NULL)
		return SMFIS_CONTINUE;
	sfsistat ok = gc->nr_hdr ? SMFIS_NOREPLY : SMFIS_CONTINUE;
	if (gc->m == NULL || gc->sc == NULL || name == NULL)
		return ok;
	if (value == NULL)
		value = "";
	/*
	 * The pipeline takes values as they stand after the colon; an MTA
	 * that did not negotiate SMFIP_HDR_LEADSPC took the one space away
	 * (Postfix and Sendmail both drop a single one).
	 */
	if (!gc->leadspc)
		value = arena_sprintf(msg_arena(gc->m), " %s", value);
	if (scan_header(gc->sc, gc->m, name, value))
		return ok;
	const verdict_policy_t *p = scan_gen_policy(scan_conn_gen(gc->sc));
	if (p->foreign != VERDICT_FOREIGN_KEEP) {
		/*
		 * A field that claims to be our verdict came from outside: the
		 * pipeline did not score it, and it is not left in place either,
		 * so no sender can pre-set it.
		 */
		glue_note_own(gc, p, name, value);
	}
	return ok;
}

static sfsistat glue_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct glue_conn *gc = glue_get(ctx);
	if (gc == NULL)
		return SMFIS_CONTINUE;
	if (gc->m != NULL && chunk != NULL)
		msg_append_body(gc->m, chunk, len);
	return gc->nr_body ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

/*
 * Adds a field (at the top when index is 0, at the end when it is -1)
 * with the one leading space the MTA expects from us: none when it adds
 * its own (no SMFIP_HDR_LEADSPC), else exactly one.
 */
static int glue_addheader(SMFICTX *ctx, struct glue_conn *gc, const char *name, const char *value,
                          int index)
{
	bool has = value[0] == ' ' || value[0] == '\t';
	const char *v = value;
	if (gc->leadspc && !has)
		v = arena_sprintf(msg_arena(gc->m), " %s", value);
	else if (!gc->leadspc && has)
		v = value + 1;
	if (index >= 0)
		return smfi_insheader(ctx, index, (char *)name, (char *)v);
	return smfi_addheader(ctx, (char *)name, (char *)v);
}

/* What the sources asked: removals (highest copy of a name first), then additions. */
static void glue_apply_fields(SMFICTX *ctx, struct glue_conn *gc, const verdict_fields_t *f)
{
	for (size_t i = f->n; i > 0; i--) {
		const verdict_field_t *v = &f->v[i - 1];
		if (v->value == NULL &&
		    smfi_chgheader(ctx, (char *)v->name, (int)v->index, NULL) != MI_SUCCESS)
			log_msg(LOG_L_WARNING, "%s: cannot remove %s #%u", msg_queue_id(gc->m),
			        v->name, v->index);
	}
	for (size_t i = 0; i < f->n; i++) {
		const verdict_field_t *v = &f->v[i];
		if (v->value != NULL &&
		    glue_addheader(ctx, gc, v->name, v->value, v->prepend ? 0 : -1) != MI_SUCCESS)
			log_msg(LOG_L_WARNING, "%s: cannot add %s", msg_queue_id(gc->m), v->name);
	}
}

/*
 * Removes every foreign copy of our fields, last copy first so the indexes
 * of the others hold, then (rename policy) adds them back under
 * X-Foreign-.
 */
static void glue_strip_foreign(SMFICTX *ctx, struct glue_conn *gc, const verdict_policy_t *p)
{
	for (size_t k = 0; k < gc->n_own_names; k++) {
		struct glue_own_name *o = &gc->own_names[k];
		for (unsigned i = o->count; i > 0; i--)
			if (smfi_chgheader(ctx, (char *)o->name, (int)i, NULL) != MI_SUCCESS) {
				log_msg(LOG_L_WARNING, "%s: cannot remove foreign %s header",
				        msg_queue_id(gc->m), o->name);
				break;
			}
	}
	if (p->foreign != VERDICT_FOREIGN_RENAME)
		return;
	for (size_t i = 0; i < gc->n_own_values; i++) {
		struct glue_own_value *v = &gc->own_values[i];
		char renamed[256];
		snprintf(renamed, sizeof(renamed), "X-Foreign-%s",
		         gc->own_names[v->name_index].name);
		glue_addheader(ctx, gc, renamed, v->value, -1);
	}
	if (gc->own_not_renamed > 0)
		log_msg(LOG_L_WARNING,
		        "%s: %lu foreign verdict fields removed, not renamed (size limit)",
		        msg_queue_id(gc->m), gc->own_not_renamed);
}

/* The per-message line, in the format the generation's settings ask for (msglog.h). */
static void glue_log(struct glue_conn *gc, const scan_result_t *r)
{
	const scan_settings_t *set = scan_gen_settings(scan_conn_gen(gc->sc));
	msglog_timing_t t[SCAN_MAX_SOURCES];
	for (size_t i = 0; i < r->n_timings; i++)
		t[i] = (msglog_timing_t){r->timings[i].source, r->timings[i].ms};
	msglog_fields_t f = {
	    .queue_id = msg_queue_id(gc->m),
	    .ip = msg_client_ip(gc->m),
	    .helo = msg_helo(gc->m),
	    .client_name = msg_client_name(gc->m),
	    .action = verdict_action_name(r->action),
	    .score = r->score,
	    .hits = r->hits,
	    .timings = t,
	    .n_timings = r->n_timings,
	    .degraded = r->degraded,
	    .failed = r->failed,
	    .size_bytes = msg_body_size(gc->m),
	    .ms = r->elapsed_ms,
	};
	char line[MSGLOG_LINE_BYTES];
	msglog_format(line, sizeof(line), (msglog_format_t)set->log_format, set->log_top_rules, &f);
	log_msg(LOG_L_INFO, "%s", line);
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
		glue_apply_fields(ctx, gc, &r->fields);
		verdict_header_t hv[5];
		size_t n = verdict_headers(p, msg_arena(gc->m), r->score, r->action, r->hits, hv);
		n += verdict_error_header(r->failed, msg_arena(gc->m), &hv[n]);
		for (size_t i = 0; i < n; i++)
			if (glue_addheader(ctx, gc, hv[i].name, hv[i].value, -1) != MI_SUCCESS)
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
	glue_reset_conn(gc);
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

const struct smfiDesc *glue_callbacks(void)
{
	return &glue_desc;
}

/*
 * libmilter does not expose its listening socket, so it is found among the
 * open descriptors: the only one that listens.
 */
#define GLUE_MAX_FD_SCAN 1024
static int glue_listener(struct sockaddr_storage *ss, socklen_t *sl)
{
	for (int fd = 3; fd < GLUE_MAX_FD_SCAN; fd++) {
		int listening = 0;
		socklen_t l = sizeof(listening);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) < 0 || !listening)
			continue;
		*sl = sizeof(*ss);
		if (getsockname(fd, (struct sockaddr *)ss, sl) < 0)
			continue;
		return fd;
	}
	return -1;
}

static int glue_listen_fd = -1; /* closed first of all at SIGTERM */
/* The unix socket file we bound: a stop unlinks that one only, not a successor's. */
static dev_t glue_sock_dev;
static ino_t glue_sock_ino;
static bool glue_sock_known;
static char glue_listen_desc[sizeof(struct sockaddr_storage) + 16] = "?";
/* Its address, which every session libmilter accepted on it has as its own. */
static struct sockaddr_storage glue_listen_ss;

const char *glue_listening(void)
{
	return glue_listen_desc;
}

/*
 * libmilter creates the unix socket with the process umask; the MTA runs
 * as another user, so the mode and group it needs are set here, before
 * privileges are dropped (a group the daemon is not in needs root).
 */
static int glue_socket_perms(const scan_settings_t *s, const char *path, char *err, size_t err_len)
{
	if (chmod(path, (mode_t)s->socket_mode) < 0) {
		snprintf(err, err_len, "chmod %s: %s", path, strerror(errno));
		return -1;
	}
	if (s->socket_group[0] == '\0')
		return 0;
	struct group *gr = getgrnam(s->socket_group);
	if (gr == NULL) {
		snprintf(err, err_len, "socket_group: unknown group '%s'", s->socket_group);
		return -1;
	}
	if (chown(path, (uid_t)-1, gr->gr_gid) < 0) {
		snprintf(err, err_len, "chown %s to group %s: %s", path, s->socket_group,
		         strerror(errno));
		return -1;
	}
	return 0;
}

int glue_open(const scan_settings_t *s, char *err, size_t err_len)
{
	/* s->socket passed scan's strict check when the generation was loaded. */
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
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd = glue_listener(&ss, &sl);
	if (fd < 0) {
		snprintf(err, err_len, "socket '%s': libmilter opened no listening socket",
		         s->socket);
		return -1;
	}
	glue_listen_fd = fd;
	glue_listen_ss = ss;
	if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *su = (const struct sockaddr_un *)&ss;
		snprintf(glue_listen_desc, sizeof(glue_listen_desc), "unix:%s", su->sun_path);
		if (glue_socket_perms(s, su->sun_path, err, err_len) < 0)
			return -1;
		struct stat st;
		if (lstat(su->sun_path, &st) == 0) {
			glue_sock_dev = st.st_dev;
			glue_sock_ino = st.st_ino;
			glue_sock_known = true;
		}
	} else if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
		char ip[INET6_ADDRSTRLEN] = "?";
		unsigned port;
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *si = (const struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &si->sin_addr, ip, sizeof(ip));
			port = ntohs(si->sin_port);
		} else {
			const struct sockaddr_in6 *si = (const struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &si->sin6_addr, ip, sizeof(ip));
			port = ntohs(si->sin6_port);
		}
		snprintf(glue_listen_desc, sizeof(glue_listen_desc),
		         ss.ss_family == AF_INET ? "%s:%u" : "[%s]:%u", ip, port);
		/*
		 * libmilter writes each header change and the final reply as
		 * separate small writes; with Nagle's algorithm the later ones
		 * wait for the MTA's delayed ACK, about 40 ms per message.
		 * Sockets it accepts inherit TCP_NODELAY from the listener (Linux).
		 */
		int one = 1;
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
			log_msg(LOG_L_WARNING, "cannot set TCP_NODELAY on the milter socket: %s",
			        strerror(errno));
	}
	return 0;
}

/*
 * libmilter's listener retries accept() at once when it fails for want of
 * descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM): the
 * connection still queued keeps the listening socket readable, so the
 * listener spins on poll() and accept() at 100% of a CPU, saying nothing,
 * until a descriptor is freed. The linker binds libmilter's accept() to
 * this definition (as it does sigwait(), below): on the listening socket
 * such a failure is logged (once a minute) and followed by a pause, so the
 * wait costs no CPU and is not silent. The SIGUSR1 of a stop
 * (glue_stop_libmilter) cuts the pause short.
 */
#define GLUE_ACCEPT_PAUSE_MS 100
static log_ratelimit_t glue_accept_rl;

int accept(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len)
{
	int c = accept4(fd, addr, len, 0);
	if (c >= 0 || fd != glue_listen_fd)
		return c;
	int e = errno;
	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		unsigned lost = 0;
		if (log_ratelimit(&glue_accept_rl, 1, 60, &lost)) {
			struct rlimit rl;
			unsigned long long lim = 0;
			if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
				lim = (unsigned long long)rl.rlim_cur;
			char more[64] = "";
			if (lost > 0)
				snprintf(more, sizeof(more), " (%u more since the last line)",
				         lost);
			log_msg(LOG_L_ERR,
			        "cannot accept a connection: %s (open files limit %llu); new "
			        "connections wait until descriptors are freed%s",
			        strerror(e), lim, more);
		}
		struct timespec ts = {.tv_sec = 0, .tv_nsec = GLUE_ACCEPT_PAUSE_MS * 1000000L};
		nanosleep(&ts, NULL); /* EINTR (a stop's SIGUSR1) ends it early */
	}
	errno = e;
	return -1;
}

/* The thread that runs smfi_main(), and so libmilter's listener loop. */
static pthread_t glue_listener_thread;
/* Set once SIGTERM or SIGINT asked for an orderly stop. */
static atomic_bool glue_stopping;

static void glue_kick(int sig)
{
	(void)sig; /* only there so that SIGUSR1 interrupts poll() */
}

int glue_run(glue_reload_fn reload)
{
	glue_reload = reload;
	glue_listener_thread = pthread_self();
	/* poll() returns EINTR even with SA_RESTART; every other call is resumed. */
	struct sigaction sa = {.sa_handler = glue_kick, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	int rc = smfi_main();
	/*
	 * After an orderly stop the listener may still complain that its socket
	 * went away under it (see glue_stop_libmilter); that is no failure.
	 */
	return rc == MI_SUCCESS || atomic_load(&glue_stopping) ? 0 : -1;
}

#define GLUE_KICK_EVERY_MS   5
#define GLUE_DRAIN_POLL_MS   10
#define GLUE_REPLY_SETTLE_MS 100

static void glue_sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * Removes the unix socket file at path if it is still the one we bound:
 * another instance started on the same path has replaced it (libmilter
 * removes an existing socket file), and removing that one would leave the
 * running daemon unreachable.
 */
static void glue_unlink_own(const char *path)
{
	struct stat st;
	if (glue_sock_known && lstat(path, &st) == 0 && st.st_dev == glue_sock_dev &&
	    st.st_ino == glue_sock_ino)
		unlink(path);
}

/* Whether the listening socket is a unix one with a path, filled into *su. */
static bool glue_unix_path(struct sockaddr_un *su)
{
	socklen_t sl = sizeof(*su);
	return getsockname(glue_listen_fd, (struct sockaddr *)su, &sl) == 0 &&
	       su->sun_family == AF_UNIX && sl > sizeof(su->sun_family) && su->sun_path[0];
}

/*
 * Stops new connections without telling libmilter: its stop flag would also
 * end its worker pool, and with it every session waiting for its next
 * command, message in flight or not. So the listening socket is swapped,
 * under libmilter's feet, for the read end of a pipe that never becomes
 * readable, and then shut down: new connections are refused from here on
 * (those the kernel had queued but nobody accepted yet are reset, as with
 * any close of a listening socket), and libmilter's listener, woken once,
 * fails one accept() (logged by libmilter) and then waits on the pipe.
 */
static void glue_stop_listening(void)
{
	int p[2];
	if (glue_listen_fd < 0 || pipe(p) < 0)
		return;
	struct sockaddr_un su;
	bool is_unix = glue_unix_path(&su);
	int old = dup(glue_listen_fd);
	if (old < 0 || dup2(p[0], glue_listen_fd) < 0) {
		log_msg(LOG_L_WARNING, "cannot close the listening socket: %s", strerror(errno));
		if (old >= 0)
			close(old);
		close(p[0]);
		close(p[1]);
		return;
	}
	close(p[0]); /* p[1] stays open: the pipe never reads end-of-file */
	shutdown(old, SHUT_RDWR);
	close(old);
	if (is_unix)
		glue_unlink_own(su.sun_path);
}

void glue_unbind(void)
{
	if (glue_listen_fd < 0)
		return;
	struct sockaddr_un su;
	if (glue_unix_path(&su))
		glue_unlink_own(su.sun_path);
	close(glue_listen_fd);
	glue_listen_fd = -1;
}

/* Messages between MAIL FROM and the end of their last callback. */
static int glue_drain(long timeout_ms)
{
	long waited = 0;
	int n = atomic_load(&glue_in_flight);
	if (n > 0)
		log_msg(LOG_L_NOTICE, "stopping: %d message(s) in flight, waiting up to %ld ms", n,
		        timeout_ms);
	/*
	 * The count drops when the end-of-message callback returns; libmilter
	 * writes the reply just after, and a session accepted just before the
	 * socket closed reaches MAIL FROM only a moment later. So the count
	 * must stay at zero for GLUE_REPLY_SETTLE_MS before libmilter stops.
	 */
	for (;;) {
		while ((n = atomic_load(&glue_in_flight)) > 0 && waited < timeout_ms) {
			glue_sleep_ms(GLUE_DRAIN_POLL_MS);
			waited += GLUE_DRAIN_POLL_MS;
		}
		if (n > 0)
			return n;
		glue_sleep_ms(GLUE_REPLY_SETTLE_MS);
		waited += GLUE_REPLY_SETTLE_MS;
		if ((n = atomic_load(&glue_in_flight)) == 0 || waited >= timeout_ms)
			return n;
	}
}

/* Whether fd is a session accepted on the listening socket: its own address is the listener's. */
static bool glue_is_session(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int listening = 0;
	socklen_t ll = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) < 0 || listening ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    ss.ss_family != glue_listen_ss.ss_family)
		return false;
	if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *a = (const struct sockaddr_un *)&ss;
		const struct sockaddr_un *l = (const struct sockaddr_un *)&glue_listen_ss;
		return sl > sizeof(a->sun_family) && a->sun_path[0] != '\0' &&
		       strcmp(a->sun_path, l->sun_path) == 0;
	}
	if (ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&ss)->sin_port ==
		       ((const struct sockaddr_in *)&glue_listen_ss)->sin_port;
	if (ss.ss_family == AF_INET6)
		return ((const struct sockaddr_in6 *)&ss)->sin6_port ==
		       ((const struct sockaddr_in6 *)&glue_listen_ss)->sin6_port;
	return false;
}

/*
 * With no message left in flight, the connections still open are MTA
 * sessions waiting between messages (Postfix holds one for each SMTP
 * client). Each holds its generation, whose modules stop only when the
 * last reference goes: left open, the process would exit with the
 * reputation updates Redis never confirmed (which a stop keeps for the
 * next start) and the queued Bayes autolearn batch lost, unsaid. libmilter
 * neither lists its sessions nor ends them (smfi_stop() leaves them
 * running), so their sockets are found among the open descriptors and shut
 * down: each session thread reads end-of-file and runs the close callback,
 * which releases its generation. Those sessions would end with the process
 * anyway; the MTA applies its milter_default_action to their next message.
 */
#define GLUE_SESSION_END_MS 1000

static void glue_end_sessions(void)
{
	if (atomic_load(&glue_open_conns) == 0)
		return;
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return;
	int self = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		if (fd > 2 && fd != self && glue_is_session(fd))
			shutdown(fd, SHUT_RDWR);
	}
	closedir(d);
	long waited = 0;
	while (atomic_load(&glue_open_conns) > 0 && waited < GLUE_SESSION_END_MS) {
		glue_sleep_ms(GLUE_DRAIN_POLL_MS);
		waited += GLUE_DRAIN_POLL_MS;
	}
}

static void *glue_stopper(void *arg)
{
	smfi_stop();
	atomic_store((atomic_bool *)arg, true);
	return NULL;
}

/*
 * Ends libmilter's loop at once. smfi_stop() takes the listener's lock to
 * close its socket, but the listener holds that lock across a poll() of up
 * to 5 s. So smfi_stop() runs in a helper thread while this one interrupts
 * the listener's poll() with a no-op SIGUSR1 until it has returned.
 */
static void glue_stop_libmilter(void)
{
	atomic_bool done = false;
	pthread_t t;
	if (pthread_create(&t, NULL, glue_stopper, &done) != 0) {
		smfi_stop();
		return;
	}
	while (!atomic_load(&done)) {
		pthread_kill(glue_listener_thread, SIGUSR1);
		glue_sleep_ms(GLUE_KICK_EVERY_MS);
	}
	pthread_join(t, NULL);
}

/* SIGTERM, SIGINT: refuse new connections, let messages finish, then stop. */
static void glue_stop(int sig)
{
	atomic_store(&glue_stopping, true);
	log_msg(LOG_L_NOTICE, "%s: no longer accepting connections",
	        sig == SIGTERM ? "SIGTERM" : "SIGINT");
	glue_stop_listening();
	scan_gen_t *g = scan_gen_acquire();
	long timeout_ms = g ? scan_gen_settings(g)->stop_timeout_ms : 0;
	scan_gen_unref(g);
	int left = glue_drain(timeout_ms);
	if (left > 0)
		log_msg(LOG_L_WARNING, "stop_timeout: %d message(s) still in flight are dropped",
		        left);
	else
		glue_end_sessions();
	glue_stop_libmilter();
}

/*
 * libmilter's signal thread sigwait()s for SIGHUP, SIGTERM and SIGINT and
 * stops the filter on any of them; it has no hook, and a second thread
 * waiting for SIGHUP would race it for the signal. Administrators expect
 * SIGHUP to reload, so the program provides sigwait() itself: the linker
 * binds libmilter's call to this definition, which runs the reload for
 * SIGHUP, and for SIGTERM and SIGINT runs the orderly stop (glue_stop)
 * before handing libmilter SIGTERM, by then a formality (its own SIGINT
 * handling would abort the sessions).
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
		if ((s == SIGTERM || s == SIGINT) && glue_reload != NULL) {
			glue_stop(s);
			s = SIGTERM;
		}
		*sig = s;
		return 0;
	}
}
