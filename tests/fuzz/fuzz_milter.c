/*
 * fuzz_milter.c - libFuzzer target for the milter protocol glue: the input
 * is read as the packets an MTA sends (4-byte length, command, data) and
 * dispatched to sift-milter's real callbacks (glue_callbacks()) the way
 * libmilter's engine does, in whatever order they come: libmilter passes
 * many orders no MTA uses. The smfi_* calls the callbacks make are played
 * by a shim below that checks they are used as libmilter requires. A real
 * generation (the shipped rules, no network) is built once and published.
 * Build and run with tests/fuzz/run.sh milter SECONDS.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdbool.h> /* before mfapi.h, which has its own bool otherwise */
#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "conf.h"
#include "diag.h"
#include "glue.h"
#include "log.h"
#include "scan.h"

#ifndef FUZZ_SRCDIR
#define FUZZ_SRCDIR "."
#endif

#define FUZZ_MAX_INPUT_BYTES (256 * 1024)
#define FUZZ_MAX_MACROS      64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* ------------------------------------------------------------ the shim */

struct smfi_str {
	void *priv;
	char *mac_name[FUZZ_MAX_MACROS], *mac_value[FUZZ_MAX_MACROS];
	size_t n_mac;
	bool in_eom; /* libmilter allows message changes only in xxfi_eom */
	/*
	 * What the filter may do: its registered flags until a negotiation
	 * says otherwise; libmilter fails a call outside them (mi_sendok).
	 */
	unsigned long actions;
	/*
	 * Forged verdict fields: how many the filter was given since MAIL,
	 * how many it deleted in this xxfi_eom, and whether it added its own.
	 */
	size_t own_seen, own_deleted;
	bool verdict_added;
};

/* Whether name is one of our verdict fields under the published policy. */
static bool fuzz_is_own(const char *name)
{
	scan_gen_t *g = scan_gen_acquire();
	const verdict_policy_t *p = scan_gen_policy(g);
	bool own = p->foreign != VERDICT_FOREIGN_KEEP && verdict_is_own_header(p, name);
	scan_gen_unref(g);
	return own;
}

int smfi_setpriv(SMFICTX *ctx, void *p)
{
	if (ctx == NULL)
		__builtin_trap();
	ctx->priv = p;
	return MI_SUCCESS;
}

void *smfi_getpriv(SMFICTX *ctx)
{
	if (ctx == NULL)
		__builtin_trap();
	return ctx->priv;
}

/* libmilter finds "{x}" when asked for "x" and the other way round. */
static bool fuzz_macro_is(const char *have, const char *want)
{
	size_t hl = strlen(have), wl = strlen(want);
	if (strcmp(have, want) == 0)
		return true;
	if (hl == wl + 2 && have[0] == '{' && have[hl - 1] == '}')
		return strncmp(have + 1, want, wl) == 0;
	if (wl == hl + 2 && want[0] == '{' && want[wl - 1] == '}')
		return strncmp(want + 1, have, hl) == 0;
	return false;
}

char *smfi_getsymval(SMFICTX *ctx, char *name)
{
	if (ctx == NULL || name == NULL)
		__builtin_trap();
	for (size_t i = ctx->n_mac; i-- > 0;)
		if (fuzz_macro_is(ctx->mac_name[i], name))
			return ctx->mac_value[i];
	return NULL;
}

/* A header name as libmilter sends it on: printable, no ':' or space. */
static void fuzz_check_header(const char *name, const char *value)
{
	if (name == NULL || name[0] == '\0')
		__builtin_trap();
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 127 || *p == ':')
			__builtin_trap();
	(void)value;
}

int smfi_addheader(SMFICTX *ctx, char *name, char *value)
{
	if (!ctx->in_eom || value == NULL)
		__builtin_trap();
	fuzz_check_header(name, value);
	if (fuzz_is_own(name))
		ctx->verdict_added = true;
	return ctx->actions & SMFIF_ADDHDRS ? MI_SUCCESS : MI_FAILURE;
}

int smfi_insheader(SMFICTX *ctx, int index, char *name, char *value)
{
	if (!ctx->in_eom || value == NULL || index < 0)
		__builtin_trap();
	fuzz_check_header(name, value);
	return ctx->actions & SMFIF_ADDHDRS ? MI_SUCCESS : MI_FAILURE;
}

int smfi_chgheader(SMFICTX *ctx, char *name, int index, char *value)
{
	if (!ctx->in_eom || index < 1)
		__builtin_trap();
	fuzz_check_header(name, value);
	if (value == NULL && fuzz_is_own(name))
		ctx->own_deleted++;
	return ctx->actions & SMFIF_CHGHDRS ? MI_SUCCESS : MI_FAILURE;
}

int smfi_quarantine(SMFICTX *ctx, char *reason)
{
	if (!ctx->in_eom || reason == NULL || reason[0] == '\0')
		__builtin_trap();
	return ctx->actions & SMFIF_QUARANTINE ? MI_SUCCESS : MI_FAILURE;
}

/* libmilter refuses a code that is not 4xx/5xx and text with CR or LF. */
int smfi_setreply(SMFICTX *ctx, char *rcode, char *xcode, char *message)
{
	(void)ctx;
	if (rcode == NULL || strlen(rcode) != 3 || (rcode[0] != '4' && rcode[0] != '5'))
		__builtin_trap();
	if (xcode != NULL && strspn(xcode, "0123456789.") != strlen(xcode))
		__builtin_trap();
	if (message != NULL && strpbrk(message, "\r\n") != NULL)
		__builtin_trap();
	return MI_SUCCESS;
}

/* glue_open() and glue_run() are not driven here, but they link. */
int smfi_setconn(char *c)
{
	(void)c;
	return MI_FAILURE;
}
int smfi_settimeout(int t)
{
	(void)t;
	return MI_FAILURE;
}
int smfi_register(struct smfiDesc d)
{
	(void)d;
	return MI_FAILURE;
}
int smfi_opensocket(bool rm)
{
	(void)rm;
	return MI_FAILURE;
}
int smfi_main(void)
{
	return MI_FAILURE;
}
int smfi_stop(void)
{
	return MI_FAILURE;
}

/* ------------------------------------------------------------ engine */

/* libmilter's dec_argv(): the NUL-terminated strings of buf, NULL-ended. */
static char **fuzz_argv(char *buf, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		if (buf[i] == '\0')
			n++;
	char **argv = calloc(n + 1, sizeof(*argv));
	if (argv == NULL)
		abort();
	size_t k = 0, start = 0;
	for (size_t i = 0; i < len && k < n; i++)
		if (buf[i] == '\0') {
			argv[k++] = buf + start;
			start = i + 1;
		}
	return argv;
}

static void fuzz_clear_macros(SMFICTX *ctx)
{
	for (size_t i = 0; i < ctx->n_mac; i++) {
		free(ctx->mac_name[i]);
		free(ctx->mac_value[i]);
	}
	ctx->n_mac = 0;
}

static void fuzz_macros(SMFICTX *ctx, char *buf, size_t len)
{
	if (len < 1)
		return;
	char **argv = fuzz_argv(buf + 1, len - 1);
	for (size_t i = 0; argv[i] != NULL && argv[i + 1] != NULL; i += 2) {
		if (ctx->n_mac == FUZZ_MAX_MACROS)
			break;
		ctx->mac_name[ctx->n_mac] = strdup(argv[i]);
		ctx->mac_value[ctx->n_mac] = strdup(argv[i + 1]);
		ctx->n_mac++;
	}
	free(argv);
}

/* libmilter's st_connect(): hostname, family, port, address. */
static sfsistat fuzz_connect(const struct smfiDesc *d, SMFICTX *ctx, char *buf, size_t len)
{
	char *host = buf, *nul = memchr(buf, '\0', len);
	if (nul == NULL)
		return SMFIS_TEMPFAIL; /* libmilter drops the connection */
	size_t off = (size_t)(nul - buf) + 1;
	if (off >= len)
		return SMFIS_TEMPFAIL;
	char family = buf[off++];
	union {
		struct sockaddr sa;
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
		struct sockaddr_un sun;
	} u;
	memset(&u, 0, sizeof(u));
	struct sockaddr *sa = NULL;
	if (family != SMFIA_UNKNOWN) {
		if (off + 2 > len)
			return SMFIS_TEMPFAIL;
		uint16_t port;
		memcpy(&port, buf + off, 2);
		off += 2;
		char *addr = buf + off;
		if (off >= len || memchr(addr, '\0', len - off) == NULL)
			return SMFIS_TEMPFAIL;
		if (family == SMFIA_INET) {
			u.sin.sin_family = AF_INET;
			u.sin.sin_port = port;
			if (inet_pton(AF_INET, addr, &u.sin.sin_addr) != 1)
				return SMFIS_TEMPFAIL;
		} else if (family == SMFIA_INET6) {
			u.sin6.sin6_family = AF_INET6;
			u.sin6.sin6_port = port;
			if (inet_pton(AF_INET6, addr, &u.sin6.sin6_addr) != 1)
				return SMFIS_TEMPFAIL;
		} else if (family == SMFIA_UNIX) {
			u.sun.sun_family = AF_UNIX;
			snprintf(u.sun.sun_path, sizeof(u.sun.sun_path), "%s", addr);
		} else {
			return SMFIS_TEMPFAIL;
		}
		sa = &u.sa;
	}
	ctx->own_seen = 0; /* a new connection starts over */
	return d->xxfi_connect(ctx, host, sa);
}

/* Runs the input as one session (QUIT_NC lets it hold several connections). */
static void fuzz_session(const struct smfiDesc *d, SMFICTX *ctx, const uint8_t *data, size_t size)
{
	size_t pos = 0;
	bool open = true;
	while (pos + 5 <= size) {
		uint32_t n;
		memcpy(&n, data + pos, 4);
		n = ntohl(n);
		pos += 4;
		if (n == 0 || n > size - pos)
			n = (uint32_t)(size - pos); /* the rest: a truncated last packet */
		char cmd = (char)data[pos];
		size_t len = n - 1;
		/* a private, NUL-terminated copy: ASan sees reads past the packet */
		char *buf = malloc(len + 1);
		if (buf == NULL)
			abort();
		memcpy(buf, data + pos + 1, len);
		buf[len] = '\0';
		pos += n;
		char **argv = NULL;
		switch (cmd) {
		case SMFIC_OPTNEG:
			if (len >= MILTER_OPTLEN) {
				uint32_t v[3];
				memcpy(v, buf, sizeof(v));
				unsigned long f0 = ntohl(v[1]), f1 = ntohl(v[2]), p0 = 0, p1 = 0,
				              p2 = 0, p3 = 0;
				if (d->xxfi_negotiate(ctx, f0, f1, 0, 0, &p0, &p1, &p2, &p3) ==
				    SMFIS_CONTINUE) {
					if ((p0 & ~f0) != 0 || (p1 & ~f1) != 0)
						__builtin_trap(); /* asked for more than offered */
					ctx->actions = p0;
				}
			}
			break;
		case SMFIC_MACRO: fuzz_macros(ctx, buf, len); break;
		case SMFIC_CONNECT:
			fuzz_connect(d, ctx, buf, len);
			break;
		case SMFIC_HELO:
			if (len > 0 && buf[len - 1] == '\0')
				d->xxfi_helo(ctx, buf);
			break;
		case SMFIC_MAIL:
			ctx->own_seen = 0;
			argv = fuzz_argv(buf, len);
			d->xxfi_envfrom(ctx, argv);
			break;
		case SMFIC_RCPT:
			argv = fuzz_argv(buf, len);
			d->xxfi_envrcpt(ctx, argv);
			break;
		case SMFIC_HEADER:
			argv = fuzz_argv(buf, len);
			if (argv[0] != NULL && argv[1] != NULL) {
				d->xxfi_header(ctx, argv[0], argv[1]);
				if (fuzz_is_own(argv[0]))
					ctx->own_seen++;
			}
			break;
		case SMFIC_EOH:
			if (d->xxfi_eoh != NULL)
				d->xxfi_eoh(ctx);
			break;
		case SMFIC_BODY: d->xxfi_body(ctx, (unsigned char *)buf, len); break;
		case SMFIC_BODYEOB:
			if (len > 0)
				d->xxfi_body(ctx, (unsigned char *)buf, len);
			ctx->in_eom = true;
			ctx->own_deleted = 0;
			ctx->verdict_added = false;
			d->xxfi_eom(ctx);
			ctx->in_eom = false;
			/*
			 * A message that leaves with our verdict leaves with no forged
			 * copy: each one the filter was given is deleted (when the MTA
			 * lets it change headers).
			 */
			if (ctx->verdict_added && (ctx->actions & SMFIF_CHGHDRS) &&
			    ctx->own_deleted != ctx->own_seen)
				__builtin_trap();
			ctx->own_seen = 0;
			break;
		case SMFIC_ABORT:
			d->xxfi_abort(ctx);
			ctx->own_seen = 0;
			break;
		case SMFIC_QUIT_NC: /* a new connection follows on the same context */
			d->xxfi_close(ctx);
			fuzz_clear_macros(ctx);
			ctx->actions = d->xxfi_flags;
			ctx->own_seen = 0;
			break;
		case SMFIC_QUIT:
			d->xxfi_close(ctx);
			open = false;
			break;
		default: break; /* DATA, UNKNOWN: no callback registered */
		}
		free(argv);
		free(buf);
		if (!open)
			break;
	}
	/* libmilter calls xxfi_close however the session ends */
	if (open)
		d->xxfi_close(ctx);
	if (ctx->priv != NULL)
		__builtin_trap(); /* close must release the connection's state */
}

/* ------------------------------------------------------------ setup */

static char fuzz_state_dir[] = "/tmp/sift-fuzz-milter-XXXXXX";

static void fuzz_cleanup(void)
{
	char cmd[sizeof(fuzz_state_dir) + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_state_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_milter: cannot remove %s\n", fuzz_state_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* SIFT_FUZZ_LOG=debug shows what the callbacks log; quiet otherwise */
	const char *lvl = getenv("SIFT_FUZZ_LOG");
	log_setup("fuzz_milter", "stderr", "mail",
	          lvl != NULL && log_level_parse(lvl) >= 0 ? log_level_parse(lvl) : LOG_L_ERR);
	if (mkdtemp(fuzz_state_dir) == NULL) {
		perror("fuzz_milter: mkdtemp");
		abort();
	}
	atexit(fuzz_cleanup);
	/*
	 * Low thresholds so random input reaches every action, rename so the
	 * foreign fields' values are kept too, a small size limit so that
	 * bound is reached.
	 */
	char text[1024];
	snprintf(text, sizeof(text),
	         "state_dir = %s\nrules = %s/rules\nadd_header_score = 0.5\n"
	         "quarantine_score = 2\ntempfail_score = 4\nreject_score = 6\n"
	         "foreign_headers = rename\nmax_message_size = 4K\n"
	         "reject_reply = \"550 5.7.1 no\"\n",
	         fuzz_state_dir, FUZZ_SRCDIR);
	diag_t *d = diag_new();
	conf_t *c = conf_parse("fuzz.conf", text, d);
	ev_env_t env = {.state_dir = fuzz_state_dir, .offline = false};
	scan_gen_t *g = c != NULL ? scan_gen_load(c, NULL, &env, d) : NULL;
	if (g != NULL && scan_gen_start(g, &env, d) != 0) {
		scan_gen_unref(g);
		g = NULL;
	}
	if (g == NULL) {
		diag_print(d, stderr, 1);
		fprintf(stderr, "fuzz_milter: cannot build a generation\n");
		abort();
	}
	diag_free(d);
	scan_gen_publish(g);
	scan_gen_unref(g);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_MAX_INPUT_BYTES)
		return 0;
	SMFICTX ctx;
	memset(&ctx, 0, sizeof(ctx));
	ctx.actions = glue_callbacks()->xxfi_flags;
	fuzz_session(glue_callbacks(), &ctx, data, size);
	fuzz_clear_macros(&ctx);
	return 0;
}
