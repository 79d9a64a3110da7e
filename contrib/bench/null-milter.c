/*
 * null-milter - a libmilter filter that does no filtering. With no options
 * it takes every stage and accepts every message: the protocol floor that
 * bench.sh --baseline measures sift-milter against. The options make it
 * exercise the client side of the protocol (tests/it_mclient.sh): report
 * what it received in added headers, reject, quarantine, delete a header,
 * or negotiate "no reply" for every stage.
 *
 * usage: null-milter -p SOCKET [-c] [-r] [-q] [-d] [-g|-n] [-s] [-t TIMEOUT_S]
 *   -c  add X-Null-* headers counting what was received
 *   -r  reject every message at end of message with "550 5.7.1 null says no"
 *   -q  quarantine every message
 *   -d  delete the first Subject header (chgheader with no value)
 *   -g  negotiate what sift-milter's glue does: no replies to headers and
 *       body chunks (SMFIP_NR_HDR, SMFIP_NR_BODY), the fair baseline
 *   -n  negotiate SMFIP_NR_* (no replies before end of message)
 *   -s  answer the first body chunk with SMFIS_SKIP
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

/* Set once in main() before smfi_main() starts threads, then only read. */
static struct {
	bool count, reject, quarantine, del_subject, no_reply, glue_like, skip;
} opt;

/* Per SMTP connection (libmilter private data). */
struct conn {
	unsigned messages; /* ends of message seen */
	unsigned aborts;
	unsigned headers; /* in the current message */
	unsigned long body_bytes;
	unsigned chunks;
	unsigned rcpts;
	char from[256];
	char qid[64];
	char client[128];
	char helo[128];
};

static sfsistat stage_ok(void)
{
	return opt.no_reply ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

/* Headers and body chunks: no reply under -n and -g. */
static sfsistat content_ok(void)
{
	return (opt.no_reply || opt.glue_like) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static void reset_msg(struct conn *c)
{
	c->headers = 0;
	c->body_bytes = 0;
	c->chunks = 0;
	c->rcpts = 0;
	c->from[0] = 0;
	c->qid[0] = 0;
}

static sfsistat nm_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
	*pf0 = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE;
	*pf1 = 0;
	if (opt.no_reply)
		*pf1 |= f1 & (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT |
		              SMFIP_NR_DATA | SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY |
		              SMFIP_NR_UNKN);
	if (opt.glue_like)
		*pf1 |= f1 & (SMFIP_NOUNKNOWN | SMFIP_NR_HDR | SMFIP_NR_BODY);
	if (opt.skip)
		*pf1 |= f1 & SMFIP_SKIP;
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

static sfsistat nm_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return SMFIS_TEMPFAIL;
	const char *addr = smfi_getsymval(ctx, "{client_addr}");
	snprintf(c->client, sizeof(c->client), "%s/%s", host ? host : "?", addr ? addr : "?");
	smfi_setpriv(ctx, c);
	return stage_ok();
}

static sfsistat nm_helo(SMFICTX *ctx, char *helo)
{
	struct conn *c = smfi_getpriv(ctx);
	snprintf(c->helo, sizeof(c->helo), "%s", helo);
	return stage_ok();
}

static sfsistat nm_envfrom(SMFICTX *ctx, char **argv)
{
	struct conn *c = smfi_getpriv(ctx);
	reset_msg(c);
	snprintf(c->from, sizeof(c->from), "%s", argv[0]);
	const char *qid = smfi_getsymval(ctx, "i");
	snprintf(c->qid, sizeof(c->qid), "%s", qid ? qid : "");
	return stage_ok();
}

static sfsistat nm_envrcpt(SMFICTX *ctx, char **argv)
{
	struct conn *c = smfi_getpriv(ctx);
	c->rcpts++;
	return stage_ok();
}

static sfsistat nm_data(SMFICTX *ctx)
{
	return stage_ok();
}

static sfsistat nm_header(SMFICTX *ctx, char *name, char *value)
{
	struct conn *c = smfi_getpriv(ctx);
	c->headers++;
	return content_ok();
}

static sfsistat nm_eoh(SMFICTX *ctx)
{
	return stage_ok();
}

static sfsistat nm_body(SMFICTX *ctx, unsigned char *p, size_t n)
{
	struct conn *c = smfi_getpriv(ctx);
	c->body_bytes += n;
	c->chunks++;
	if (opt.skip)
		return SMFIS_SKIP;
	return content_ok();
}

static sfsistat nm_eom(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);
	c->messages++;
	if (opt.count) {
		char buf[1024];
		snprintf(buf, sizeof(buf),
		         "messages=%u aborts=%u headers=%u body=%lu chunks=%u rcpts=%u",
		         c->messages, c->aborts, c->headers, c->body_bytes, c->chunks, c->rcpts);
		smfi_addheader(ctx, "X-Null-Count", buf);
		snprintf(buf, sizeof(buf), "from=%s qid=%s client=%s helo=%s", c->from, c->qid,
		         c->client, c->helo);
		smfi_addheader(ctx, "X-Null-Env", buf);
	}
	if (opt.del_subject)
		smfi_chgheader(ctx, "Subject", 1, NULL);
	if (opt.quarantine)
		smfi_quarantine(ctx, "null quarantine");
	if (opt.reject) {
		smfi_setreply(ctx, "550", "5.7.1", "null says no");
		return SMFIS_REJECT;
	}
	return SMFIS_ACCEPT;
}

static sfsistat nm_abort(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);
	if (c != NULL)
		c->aborts++;
	return SMFIS_CONTINUE;
}

static sfsistat nm_close(SMFICTX *ctx)
{
	free(smfi_getpriv(ctx));
	smfi_setpriv(ctx, NULL);
	return SMFIS_CONTINUE;
}

int main(int argc, char **argv)
{
	const char *sock = NULL;
	int timeout_s = 30;
	int ch;
	while ((ch = getopt(argc, argv, "p:crqdgnst:")) != -1) {
		switch (ch) {
		case 'p': sock = optarg; break;
		case 'c': opt.count = true; break;
		case 'r': opt.reject = true; break;
		case 'q': opt.quarantine = true; break;
		case 'd': opt.del_subject = true; break;
		case 'g': opt.glue_like = true; break;
		case 'n': opt.no_reply = true; break;
		case 's': opt.skip = true; break;
		case 't': timeout_s = atoi(optarg); break;
		default:
			fputs("usage: null-milter -p SOCKET [-c] [-r] [-q] [-d] [-g|-n] [-s] [-t "
			      "SECONDS]\n",
			      stderr);
			return 2;
		}
	}
	if (sock == NULL) {
		fputs("null-milter: -p SOCKET is required\n", stderr);
		return 2;
	}
	struct smfiDesc desc = {
	    .xxfi_name = "null-milter",
	    .xxfi_version = SMFI_VERSION,
	    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE,
	    .xxfi_connect = nm_connect,
	    .xxfi_helo = nm_helo,
	    .xxfi_envfrom = nm_envfrom,
	    .xxfi_envrcpt = nm_envrcpt,
	    .xxfi_header = nm_header,
	    .xxfi_eoh = nm_eoh,
	    .xxfi_body = nm_body,
	    .xxfi_eom = nm_eom,
	    .xxfi_abort = nm_abort,
	    .xxfi_close = nm_close,
	    .xxfi_data = nm_data,
	    .xxfi_negotiate = nm_negotiate,
	};
	if (strncmp(sock, "unix:", 5) == 0)
		unlink(sock + 5);
	if (smfi_setconn((char *)sock) == MI_FAILURE || smfi_settimeout(timeout_s) == MI_FAILURE ||
	    smfi_register(desc) == MI_FAILURE) {
		fputs("null-milter: libmilter set-up failed\n", stderr);
		return 1;
	}
	/* smfi_main() returns on SIGTERM/SIGINT after closing the socket. */
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
