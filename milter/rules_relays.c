/*
 * rules_relays.c - SpamAssassin's X-Spam-Relays-* pseudo-fields: the
 * Received chain parsed into "[ ip=... rdns=... helo=... by=... ]"
 * entries, newest first, split at the trust boundary. About a hundred of
 * SpamAssassin's rules (RDNS_NONE, the dynamic-rDNS family...) read them.
 *
 * Trust is inferred as SpamAssassin does without trusted_networks: relays
 * at the top of the chain whose sending address is private (loopback,
 * RFC 1918, link-local) or that authenticated are trusted; the first
 * public, unauthenticated one and everything below it is untrusted (and,
 * with nothing configured, internal equals trusted, external untrusted).
 * The parser covers the common "from HELO (RDNS [IP]) by HOST ... id ID"
 * forms of Postfix, Sendmail, Exim, qmail and Exchange; a Received field
 * it cannot read is skipped, as SpamAssassin skips unparseable ones, and
 * a mail fetcher's line (fetchmail, POP3, IMAP) restarts the trusted part.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "rules_int.h"

#define RELAY_TOKEN_BYTES 256
#define RELAYS_MAX        32 /* Received fields read; more are a loop or an attack */

struct relay {
	char ip[64], rdns[RELAY_TOKEN_BYTES], helo[RELAY_TOKEN_BYTES], by[RELAY_TOKEN_BYTES];
	char id[RELAY_TOKEN_BYTES], auth[32], envfrom[RELAY_TOKEN_BYTES];
	/* the MTA's form shows it asked for reverse DNS: an empty rdns means there is none */
	bool looked_up;
};

/* Copies the token at p (up to a blank, ';', '(' or ')') into out. */
static void token(const char *p, char *out, size_t outlen)
{
	size_t n = 0;
	while (*p == ' ')
		p++;
	while (*p && !isspace((unsigned char)*p) && *p != ';' && *p != '(' && *p != ')' &&
	       n + 1 < outlen)
		out[n++] = *p++;
	out[n] = '\0';
}

static const char *find_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (const char *p = hay; *p; p++)
		if (strncasecmp(p, needle, n) == 0)
			return p;
	return NULL;
}

/* An IPv4 or IPv6 literal at p (after "[", "(" or "IPv6:"); length or 0. */
static size_t ip_literal(const char *p, char *out, size_t outlen)
{
	if (strncasecmp(p, "IPv6:", 5) == 0)
		p += 5;
	size_t n = 0, dots = 0, colons = 0;
	while (isxdigit((unsigned char)p[n]) || p[n] == '.' || p[n] == ':') {
		dots += p[n] == '.';
		colons += p[n] == ':';
		n++;
	}
	if (n == 0 || n + 1 > outlen || (dots != 3 && colons < 2))
		return 0;
	if (dots == 3 && colons == 0)
		for (size_t i = 0; i < n; i++)
			if (!isdigit((unsigned char)p[i]) && p[i] != '.')
				return 0;
	memcpy(out, p, n);
	out[n] = '\0';
	return n;
}

static bool ip_private(const char *ip)
{
	unsigned a, b;
	if (strchr(ip, ':') != NULL)
		return strcmp(ip, "::1") == 0 || strncasecmp(ip, "fe80:", 5) == 0 ||
		       strncasecmp(ip, "fc", 2) == 0 || strncasecmp(ip, "fd", 2) == 0;
	if (sscanf(ip, "%u.%u", &a, &b) != 2)
		return false;
	return a == 10 || a == 127 || (a == 172 && b >= 16 && b <= 31) || (a == 192 && b == 168) ||
	       (a == 169 && b == 254);
}

/*
 * Whether the MTA that wrote the field looks up reverse DNS, so that an
 * empty rdns means the client has none (SpamAssassin's
 * mta_looked_up_dns, which NO_RDNS_DOTCOM_HELO needs): sendmail's and
 * Postfix's "(RDNS [IP])" and "([IP])" forms say so; Exchange's SMTPSVC,
 * Lotus Domino, exim's "helo=" form and web mailers ("with HTTP") never
 * record one; qmail records what tcpserver passed, so only a name other
 * than "unknown" shows a lookup. line is the unfolded field after any
 * leading blanks, part its "from ..." clause up to " by ".
 */
static bool mta_looked_up(const char *line, const char *part, const char *from)
{
	if (find_ci(line, " SMTPSVC") || find_ci(line, "(Lotus Domino") ||
	    find_ci(part, "softdnserr") || find_ci(part, "helo=") || find_ci(line, " with HTTP"))
		return false;
	if (find_ci(part, "(HELO ") || find_ci(part, "(EHLO ") || find_ci(line, "(qmail"))
		return strcasecmp(from, "unknown") != 0;
	if (find_ci(line, "(Postfix)"))
		return true;
	/* "from HELO (RDNS [IP])", "from HELO ([IP])", "(RDNS[IP])" */
	const char *open = strchr(part, '(');
	return open != NULL && strchr(open, '[') != NULL && strchr(open, ')') != NULL;
}

static bool parse_received(const char *raw, struct relay *r)
{
	char line[2048];
	size_t n = 0;
	/* unfolded, one line */
	for (const char *p = raw; *p && n + 1 < sizeof(line); p++)
		line[n++] = (*p == '\n' || *p == '\t' || *p == '\r') ? ' ' : *p;
	line[n] = '\0';
	const char *p = line;
	while (*p == ' ')
		p++;
	if (strncasecmp(p, "from ", 5) != 0)
		return false;
	memset(r, 0, sizeof(*r));
	char from[RELAY_TOKEN_BYTES];
	token(p + 5, from, sizeof(from));
	const char *by = find_ci(p, " by ");
	size_t fromlen = by ? (size_t)(by - p) : strlen(p);
	char part[2048];
	snprintf(part, sizeof(part), "%.*s", (int)fromlen, p);
	if (by)
		token(by + 4, r->by, sizeof(r->by));
	const char *id = find_ci(p, " id ");
	if (id)
		token(id + 4, r->id, sizeof(r->id));
	/* sendmail's and exim's "(envelope-from <a@b>)": SpamAssassin's envfrom= */
	const char *ef = find_ci(p, "envelope-from ");
	if (ef) {
		char t[RELAY_TOKEN_BYTES];
		token(ef + 14, t, sizeof(t));
		size_t tl = strlen(t);
		size_t s0 = t[0] == '<', e0 = tl > s0 && t[tl - 1] == '>';
		if (tl > s0 + e0 && memchr(t, '@', tl) != NULL)
			snprintf(r->envfrom, sizeof(r->envfrom), "%.*s", (int)(tl - s0 - e0),
			         t + s0);
	}
	if (find_ci(p, " with ESMTPA") || find_ci(p, " with ESMTPSA") ||
	    find_ci(p, " with LMTPA") || find_ci(part, "(authenticated"))
		snprintf(r->auth, sizeof(r->auth), "%s",
		         find_ci(p, " with ESMTPSA") ? "ESMTPSA" : "ESMTPA");

	/* the sending address: "[IP]" first, then "(IP)", then a bare "from IP" */
	for (const char *q = part; *q && !r->ip[0]; q++)
		if (*q == '[')
			ip_literal(q + 1, r->ip, sizeof(r->ip));
	for (const char *q = part; *q && !r->ip[0]; q++)
		if (*q == '(' || *q == '@')
			ip_literal(q + 1, r->ip, sizeof(r->ip));
	if (!r->ip[0])
		ip_literal(from, r->ip, sizeof(r->ip));
	if (!r->ip[0])
		return false;

	const char *h;
	if ((h = find_ci(part, "(HELO ")) != NULL) { /* qmail: from RDNS (HELO helo) (IP) */
		token(h + 6, r->helo, sizeof(r->helo));
		snprintf(r->rdns, sizeof(r->rdns), "%s", from);
	} else if ((h = find_ci(part, "helo=")) != NULL) { /* exim: from RDNS ([IP] helo=X) */
		token(h + 5, r->helo, sizeof(r->helo));
		snprintf(r->rdns, sizeof(r->rdns), "%s", from);
	} else {
		/* sendmail, Postfix: from HELO (RDNS [IP]); no RDNS: from HELO ([IP]) */
		snprintf(r->helo, sizeof(r->helo), "%s", from);
		const char *open = strchr(part + 5, '(');
		if (open != NULL && open[1] != '[') {
			token(open + 1, r->rdns, sizeof(r->rdns));
			if (r->rdns[0] == '[')
				r->rdns[0] = '\0';
		}
	}
	size_t hl = strlen(r->helo);
	if (r->helo[0] == '[' && hl > 1 && r->helo[hl - 1] == ']') {
		memmove(r->helo, r->helo + 1, hl - 2);
		r->helo[hl - 2] = '\0';
	}
	char *at = strchr(r->rdns, '@'); /* sendmail's "ident@host" */
	if (at != NULL)
		memmove(r->rdns, at + 1, strlen(at + 1) + 1);
	/* as SpamAssassin: "unknown" and "[...]" are no name; a trailing dot goes */
	size_t rl = strlen(r->rdns);
	while (rl > 0 && r->rdns[rl - 1] == '.')
		r->rdns[--rl] = '\0';
	if (strcasecmp(r->rdns, "unknown") == 0 || r->rdns[0] == '[')
		r->rdns[0] = '\0';
	r->looked_up = mta_looked_up(p, part, from);
	return true;
}

static void relay_str(abuf_t *b, const struct relay *r, bool internal)
{
	if (b->len)
		abuf_putc(b, ' ');
	abuf_printf(b,
	            "[ ip=%s rdns=%s helo=%s by=%s ident= envfrom=%s intl=%d id=%s auth=%s msa=0 ]",
	            r->ip, r->rdns, r->helo, r->by, r->envfrom, internal ? 1 : 0, r->id, r->auth);
}

void rules_relays(arena_t *a, msg_t *m, const char **trusted, const char **untrusted,
                  size_t *rcvd_trusted, const bool **no_rdns)
{
	*rcvd_trusted = 0;
	bool *nr = arena_zalloc(a, (RELAYS_MAX + 1) * sizeof(*nr));
	size_t nu = 0;
	*no_rdns = nr;
	abuf_t t, u;
	abuf_init(&t, a, 128);
	abuf_init(&u, a, 256);
	bool in_trusted = true;
	struct relay r;
	const char *cip = msg_client_ip(m);
	size_t k = 0;
	if (cip != NULL) {
		/* the milter knows the client first-hand; skip the MTA's own Received for it */
		memset(&r, 0, sizeof(r));
		snprintf(r.ip, sizeof(r.ip), "%s", cip);
		const char *name = msg_client_name(m);
		if (name && strcasecmp(name, "unknown") != 0 && name[0] != '[')
			snprintf(r.rdns, sizeof(r.rdns), "%s", name);
		if (msg_helo(m))
			snprintf(r.helo, sizeof(r.helo), "%s", msg_helo(m));
		if (msg_auth(m))
			snprintf(r.auth, sizeof(r.auth), "%s", "ESMTPA");
		const char *top = msg_header_get(m, "Received", 0);
		struct relay first;
		if (top && parse_received(top, &first) && strcmp(first.ip, r.ip) == 0) {
			snprintf(r.by, sizeof(r.by), "%s", first.by);
			snprintf(r.id, sizeof(r.id), "%s", first.id);
			k = 1;
		}
		in_trusted = ip_private(r.ip) || r.auth[0];
		relay_str(in_trusted ? &t : &u, &r, in_trusted);
		if (!in_trusted) /* the MTA that tells the milter its client looked it up */
			nr[nu++] = r.rdns[0] == '\0';
		if (in_trusted)
			*rcvd_trusted = k; /* the MTA's own field, if it wrote one */
	}
	for (const char *v; k < RELAYS_MAX && (v = msg_header_get(m, "Received", k)) != NULL; k++) {
		if (find_ci(v, "(fetchmail") != NULL || find_ci(v, "with POP3") != NULL ||
		    find_ci(v, "with IMAP") != NULL) {
			/*
			 * A mail fetcher's marker: the relays above it are the local
			 * delivery. Inside the trusted part, start again below it.
			 */
			if (in_trusted) {
				t.len = 0;
				t.data[0] = '\0';
				*rcvd_trusted = k + 1;
			}
			continue;
		}
		if (!parse_received(v, &r)) {
			/* SpamAssassin counts an unreadable field on the side it sits */
			if (in_trusted)
				*rcvd_trusted = k + 1;
			continue;
		}
		if (in_trusted && !ip_private(r.ip) && !r.auth[0])
			in_trusted = false;
		relay_str(in_trusted ? &t : &u, &r, in_trusted);
		if (!in_trusted)
			nr[nu++] = r.looked_up && r.rdns[0] == '\0';
		if (in_trusted)
			*rcvd_trusted = k + 1;
	}
	*trusted = t.data;
	*untrusted = u.data;
}

int rules_relays_parse_one(const char *field, char *out, size_t outlen)
{
	struct relay r;
	if (find_ci(field, "(fetchmail") != NULL || find_ci(field, "with POP3") != NULL ||
	    find_ci(field, "with IMAP") != NULL)
		return 0;
	if (!parse_received(field, &r))
		return -1;
	snprintf(out, outlen,
	         "ip=%s rdns=%s helo=%s by=%s ident= envfrom=%s id=%s auth=%s no_rdns=%d", r.ip,
	         r.rdns, r.helo, r.by, r.envfrom, r.id, r.auth, r.looked_up && r.rdns[0] == '\0');
	return 1;
}
