/*
 * rep_key.c - the pure parts of the reputation module: the key schema,
 * address / network / domain matching, the decay maths, durations, and the
 * rbldnsd export. No I/O besides the export's FILE, no state.
 */
#include "config.h"

#include "rep.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const ent_tags[REP_ENT_N] = {"ip", "net", "mf", "fd", "ud"};
static const char *const ent_labels[REP_ENT_N] = {"IP", "NET", "MAILFROM", "FROM", "URL"};

const char *rep_ent_tag(rep_ent_t kind)
{
	return (unsigned)kind < REP_ENT_N ? ent_tags[kind] : "?";
}

const char *rep_ent_label(rep_ent_t kind)
{
	return (unsigned)kind < REP_ENT_N ? ent_labels[kind] : "?";
}

int rep_key(char *buf, size_t size, const char *prefix, rep_ent_t kind, const char *value)
{
	int n = snprintf(buf, size, "%sr:{%s:%s}", prefix, rep_ent_tag(kind), value);
	return (n < 0 || (size_t)n >= size) ? -1 : n;
}

int rep_addr_parse(const char *s, rep_addr_t *out)
{
	char tmp[64];
	size_t n;

	if (s == NULL)
		return -1;
	/* Sendmail and Postfix hand out "IPv6:..." and sometimes "[...]". */
	if (strncasecmp(s, "IPv6:", 5) == 0)
		s += 5;
	n = strlen(s);
	if (n > 0 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, tmp, out->a) == 1) {
		out->family = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, tmp, out->a) == 1) {
		out->family = 6;
		return 0;
	}
	return -1;
}

int rep_addr_format(const rep_addr_t *a, char *buf, size_t size)
{
	if (inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->a, buf, (socklen_t)size) == NULL)
		return -1;
	return 0;
}

static void mask_addr(rep_addr_t *a, unsigned plen)
{
	unsigned bytes = a->family == 4 ? 4 : 16;
	for (unsigned i = 0; i < bytes; i++) {
		unsigned bit0 = i * 8;
		if (bit0 >= plen)
			a->a[i] = 0;
		else if (plen - bit0 < 8)
			a->a[i] &= (uint8_t)(0xff00u >> (plen - bit0));
	}
}

int rep_addr_net(const rep_addr_t *a, char *buf, size_t size)
{
	rep_addr_t n = *a;
	unsigned plen = a->family == 4 ? 24 : 64;
	char txt[64];

	mask_addr(&n, plen);
	if (rep_addr_format(&n, txt, sizeof(txt)) < 0)
		return -1;
	int r = snprintf(buf, size, "%s/%u", txt, plen);
	return (r < 0 || (size_t)r >= size) ? -1 : 0;
}

int rep_domain_norm(const char *s, char *buf, size_t size)
{
	size_t n = strlen(s), label = 0;

	while (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n >= size || n >= REP_DOMAIN_MAX_BYTES)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return -1;
		} else {
			return -1;
		}
		buf[i] = (char)tolower(c);
	}
	buf[n] = '\0';
	return 0;
}

int rep_addr_domain(const char *mailbox, char *buf, size_t size)
{
	const char *at, *end;
	char tmp[REP_DOMAIN_MAX_BYTES + 2];

	if (mailbox == NULL)
		return -1;
	at = strrchr(mailbox, '@');
	if (at == NULL)
		return -1;
	at++;
	end = at;
	while (*end && *end != '>' && *end != ' ' && *end != '\t' && *end != '\n' && *end != ')' &&
	       *end != ',' && *end != ';' && *end != '"')
		end++;
	if (end == at || (size_t)(end - at) >= sizeof(tmp))
		return -1;
	memcpy(tmp, at, (size_t)(end - at));
	tmp[end - at] = '\0';
	return rep_domain_norm(tmp, buf, size);
}

int rep_target_parse(const char *s, rep_target_t *t, char *err, size_t errsize)
{
	char tmp[REP_DOMAIN_MAX_BYTES + 8];
	const char *slash;

	memset(t, 0, sizeof(*t));
	if (s == NULL || *s == '\0' || strlen(s) >= sizeof(tmp)) {
		snprintf(err, errsize, "empty or too long");
		return -1;
	}
	slash = strchr(s, '/');
	if (slash != NULL) {
		char *end;
		memcpy(tmp, s, (size_t)(slash - s));
		tmp[slash - s] = '\0';
		if (rep_addr_parse(tmp, &t->addr) < 0) {
			snprintf(err, errsize, "'%s' is not an IP address", tmp);
			return -1;
		}
		errno = 0;
		unsigned long p = strtoul(slash + 1, &end, 10);
		unsigned max = t->addr.family == 4 ? 32 : 128;
		if (errno || *end || end == slash + 1 || p > max) {
			snprintf(err, errsize, "bad prefix length '%s'", slash + 1);
			return -1;
		}
		t->plen = (unsigned)p;
		mask_addr(&t->addr, t->plen);
		t->kind = t->plen == max ? REP_T_IP : REP_T_CIDR;
		return 0;
	}
	if (rep_addr_parse(s, &t->addr) == 0) {
		t->kind = REP_T_IP;
		t->plen = t->addr.family == 4 ? 32 : 128;
		return 0;
	}
	/*
	 * No top-level domain is all digits. Such a name ("192.0.2.1.") would
	 * otherwise be a domain whose canonical text, the entry's name in the
	 * stream and the mirror, reads back as an address.
	 */
	const char *top = NULL;
	if (rep_domain_norm(s, t->domain, sizeof(t->domain)) < 0 ||
	    (top = strrchr(t->domain, '.')) == NULL ||
	    strspn(top + 1, "0123456789") == strlen(top + 1)) {
		snprintf(err, errsize, "'%s' is neither an IP address, a CIDR nor a domain", s);
		return -1;
	}
	t->kind = REP_T_DOMAIN;
	return 0;
}

int rep_target_format(const rep_target_t *t, char *buf, size_t size)
{
	char txt[64];
	int n;

	if (t->kind == REP_T_DOMAIN) {
		n = snprintf(buf, size, "%s", t->domain);
	} else {
		if (rep_addr_format(&t->addr, txt, sizeof(txt)) < 0)
			return -1;
		if (t->kind == REP_T_IP)
			n = snprintf(buf, size, "%s", txt);
		else
			n = snprintf(buf, size, "%s/%u", txt, t->plen);
	}
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

bool rep_cidr_contains(const rep_target_t *net, const rep_addr_t *a)
{
	rep_addr_t m;

	if (net->kind == REP_T_DOMAIN || net->addr.family != a->family)
		return false;
	m = *a;
	mask_addr(&m, net->plen);
	return memcmp(m.a, net->addr.a, a->family == 4 ? 4 : 16) == 0;
}

bool rep_domain_covers(const char *entry, const char *domain)
{
	size_t le = strlen(entry), ld = strlen(domain);

	if (le == 0 || ld < le)
		return false;
	if (strcasecmp(domain + ld - le, entry) != 0)
		return false;
	/* "ample.com" must not cover "example.com": the match starts at a label. */
	return ld == le || domain[ld - le - 1] == '.';
}

double rep_decay_factor(double age_s, double half_life_s)
{
	if (age_s <= 0 || half_life_s <= 0)
		return 1.0;
	return exp2(-age_s / half_life_s);
}

void rep_counts_decay(rep_counts_t *c, int64_t now, double half_life_s)
{
	if (now <= c->t)
		return;
	double f = rep_decay_factor((double)(now - c->t), half_life_s);
	c->spam *= f;
	c->ham *= f;
	c->t = now;
}

void rep_counts_add(rep_counts_t *c, int64_t at, double spam, double ham, double half_life_s)
{
	if (at >= c->t) {
		rep_counts_decay(c, at, half_life_s);
		c->spam += spam;
		c->ham += ham;
	} else {
		/* A replayed, older observation counts as much as it would have decayed to. */
		double f = rep_decay_factor((double)(c->t - at), half_life_s);
		c->spam += spam * f;
		c->ham += ham * f;
	}
}

double rep_score(double spam, double ham, double min_obs, double max_score)
{
	double n = spam + ham;

	if (n <= 0 || n < min_obs)
		return 0.0;
	double p = spam / n;
	if (p > 0.35 && p < 0.65)
		return 0.0;
	return max_score * (2.0 * p - 1.0) * n / (n + (min_obs > 0 ? min_obs : 1.0));
}

int rep_parse_duration(const char *s, int64_t *out_s)
{
	char *end;
	double v;
	int64_t mult = 1;

	if (s == NULL || *s == '\0')
		return -1;
	if (strcasecmp(s, "never") == 0) {
		*out_s = 0;
		return 0;
	}
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0 || !isfinite(v))
		return -1;
	if (*end != '\0') {
		switch (tolower((unsigned char)*end)) {
		case 's': mult = 1; break;
		case 'm': mult = 60; break;
		case 'h': mult = 3600; break;
		case 'd': mult = 86400; break;
		case 'w': mult = 7 * 86400; break;
		default: return -1;
		}
		if (end[1] != '\0')
			return -1;
	}
	if (v * (double)mult > 100.0 * 365 * 86400)
		return -1;
	*out_s = (int64_t)(v * (double)mult + 0.5);
	return 0;
}

int rep_id_cmp(const char *a, const char *b)
{
	unsigned long long ams = 0, aseq = 0, bms = 0, bseq = 0;

	sscanf(a, "%llu-%llu", &ams, &aseq);
	sscanf(b, "%llu-%llu", &bms, &bseq);
	if (ams != bms)
		return ams < bms ? -1 : 1;
	if (aseq != bseq)
		return aseq < bseq ? -1 : 1;
	return 0;
}

bool rep_entry_expired(const rep_entry_t *e, int64_t now)
{
	return e->expire != 0 && e->expire <= now;
}

int rep_entry_encode(const rep_entry_t *e, char *buf, size_t size)
{
	int n =
	    snprintf(buf, size, "%s|%" PRId64 "|%" PRId64 "|%s|%" PRIu64 "|%s",
	             e->allow ? "allow" : "block", e->expire, e->added, e->by, e->stamp, e->reason);
	return (n < 0 || (size_t)n >= size) ? -1 : n;
}

/* Copies the text up to the next '|' (or the end) into dst; returns the rest or NULL. */
static const char *field(const char *p, char *dst, size_t size, bool last)
{
	const char *bar = last ? NULL : strchr(p, '|');
	size_t n = bar ? (size_t)(bar - p) : strlen(p);
	if (!last && bar == NULL)
		return NULL;
	if (n >= size)
		n = size - 1;
	memcpy(dst, p, n);
	dst[n] = '\0';
	return bar ? bar + 1 : p + strlen(p);
}

int rep_entry_decode(const char *target, const char *v, rep_entry_t *e)
{
	char list[16], num[32], err[128];

	memset(e, 0, sizeof(*e));
	if (rep_target_parse(target, &e->target, err, sizeof(err)) < 0)
		return -1;
	if ((v = field(v, list, sizeof(list), false)) == NULL)
		return -1;
	e->allow = strcmp(list, "allow") == 0;
	if ((v = field(v, num, sizeof(num), false)) == NULL)
		return -1;
	e->expire = strtoll(num, NULL, 10);
	if ((v = field(v, num, sizeof(num), false)) == NULL)
		return -1;
	e->added = strtoll(num, NULL, 10);
	if ((v = field(v, e->by, sizeof(e->by), false)) == NULL)
		return -1;
	if ((v = field(v, num, sizeof(num), false)) == NULL)
		return -1;
	e->stamp = strtoull(num, NULL, 10);
	field(v, e->reason, sizeof(e->reason), true);
	return 0;
}

/* rbldnsd takes the rest of the line as TXT text: keep it on one line and printable. */
static void txt_clean(const char *in, char *out, size_t size)
{
	size_t j = 0;
	for (size_t i = 0; in[i] && j + 1 < size; i++) {
		unsigned char c = (unsigned char)in[i];
		out[j++] = (c < 0x20 || c == 0x7f || c == '$') ? ' ' : (char)c;
	}
	out[j] = '\0';
}

static int export_set(FILE *fp, const rep_entry_t *e, size_t n, int64_t now, int which)
{
	char txt[80], reason[REP_REASON_MAX_BYTES];

	for (size_t i = 0; i < n; i++) {
		const rep_target_t *t = &e[i].target;
		int kind = t->kind == REP_T_DOMAIN ? 0 : t->addr.family;
		if (kind != which || rep_entry_expired(&e[i], now))
			continue;
		if (rep_target_format(t, txt, sizeof(txt)) < 0)
			continue;
		txt_clean(e[i].reason, reason, sizeof(reason));
		if (e[i].allow) {
			/* An exclusion: never listed, even inside a listed network. */
			if (fprintf(fp, "!%s\n", txt) < 0)
				return -1;
			if (which == 0 && fprintf(fp, "!*.%s\n", txt) < 0)
				return -1;
			continue;
		}
		if (fprintf(fp, "%s :127.0.0.2:%s\n", txt, reason[0] ? reason : "listed") < 0)
			return -1;
		if (which == 0 &&
		    fprintf(fp, "*.%s :127.0.0.2:%s\n", txt, reason[0] ? reason : "listed") < 0)
			return -1;
	}
	return 0;
}

int rep_export_rbldnsd(FILE *fp, const rep_entry_t *entries, size_t n, int64_t now)
{
	static const struct {
		const char *header;
		int which;
	} sets[] = {{"$DATASET ip4set @", 4}, {"$DATASET ip6trie @", 6}, {"$DATASET dnset @", 0}};

	if (fprintf(fp, "# sift block list, rbldnsd combined dataset (%zu entries)\n", n) < 0)
		return -1;
	for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
		if (fprintf(fp, "%s\n", sets[s].header) < 0)
			return -1;
		if (export_set(fp, entries, n, now, sets[s].which) < 0)
			return -1;
	}
	return fflush(fp) == 0 ? 0 : -1;
}
