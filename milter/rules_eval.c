/*
 * rules_eval.c - SpamAssassin's "eval:" tests: the one registration table
 * the parser looks functions up in, why the others are skipped (for lint),
 * and the per-message helpers the families (rules_eval_*.c) share: header
 * values as SpamAssassin's get() returns them, the parsed relay lists,
 * RFC 822 dates and cached regexes.
 */
#include <ctype.h>
#include <pthread.h>
#include <time.h>

#include <openssl/evp.h>

#include "rules_int.h"

/*
 * Shortcircuit's rule SHORTCIRCUIT: it never hits by itself; the cut adds
 * a hit of that name when a shortcircuit rule hits (rules.c), as the
 * plugin does.
 */
static long check_shortcircuit(struct rules_evalenv *e, const struct rule *ru)
{
	(void)e;
	(void)ru;
	return 0;
}

static const struct rules_evaldef shortcircuit_defs[] = {
    {"check_shortcircuit", check_shortcircuit, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};

static const struct rules_evaldef *const families[] = {
    rules_eval_header_defs,  rules_eval_relay_defs,    rules_eval_mime_defs,
    rules_eval_html_defs,    rules_eval_freemail_defs, rules_eval_body_defs,
    rules_eval_wlbl_defs,    rules_eval_auth_defs,     rules_eval_dns_defs,
    rules_eval_image_defs,   rules_eval_fromname_defs, rules_eval_antivirus_defs,
    rules_eval_vbounce_defs, rules_eval_shorturl_defs, rules_eval_textcat_defs,
    shortcircuit_defs,
};

const struct rules_evaldef *rules_eval_lookup(const char *name)
{
	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++)
		for (const struct rules_evaldef *d = families[f]; d->name; d++)
			if (strcmp(d->name, name) == 0)
				return d;
	return NULL;
}

/* Prefix -> reason, first match wins: what lint prints next to a skipped eval. */
static const struct {
	const char *prefix;
	const char *why;
} skip_reasons[] = {
    {"check_razor2", "Razor: an external service, not run"},
    {"check_pyzor", "Pyzor: an external service, not run"},
    {"check_dcc", "DCC: an external service, not run"},
    {"check_dmarc_",
     "DMARC: not implemented (auth answers pass, missing, reject, quarantine, none)"},
    {"check_arc_", "ARC: no ARC library in Debian 12, not validated"},
    {"check_rbl", "DNS list: this form is not run through Sift's DNS service yet"},
    {"check_uridnsbl", "DNS list: this form is not run through Sift's DNS service yet"},
    {"check_hashbl", "HashBL: only check_hashbl_bodyre is run"},
    {"check_bayes", "Bayes: Sift's own classifier scores instead"},
    {"check_from_in_auto", "AWL/TxRep: no per-sender history"},
    {"check_senders_reputation", "AWL/TxRep: no per-sender history"},
    {"check_access_database", "access database: not run"},
    {"short_url_", "DecodeShortURLs: asks the shortener over HTTP (an outside service), not run"},
    {"html_", "HTML rendering facts (colours, fonts, text): not implemented yet"},
};

const char *rules_eval_skip_reason(const char *name)
{
	for (size_t i = 0; i < sizeof(skip_reasons) / sizeof(skip_reasons[0]); i++)
		if (strncmp(name, skip_reasons[i].prefix, strlen(skip_reasons[i].prefix)) == 0)
			return skip_reasons[i].why;
	return NULL;
}

void rules_eval_env_init(struct rules_evalenv *e, const rules_t *r, msg_t *m, const mime_t *mi)
{
	memset(e, 0, sizeof(*e));
	e->r = r;
	e->m = m;
	e->mi = mi;
	e->a = msg_arena(m);
}

const char *rules_eval_field_decoded(struct rules_evalenv *e, size_t i)
{
	if (e->decoded == NULL)
		e->decoded = arena_zalloc(e->a, (msg_header_count(e->m) + 1) * sizeof(*e->decoded));
	if (e->decoded[i] == NULL)
		e->decoded[i] = mime_decode_header(e->a, msg_header_value(e->m, i));
	return e->decoded[i];
}

bool rules_eval_digest_hex(const char *alg, const void *d, size_t n, bool upper, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	size_t len = 0;
	out[0] = '\0';
	/* EVP_Q_digest fetches the algorithm per call: these digests are rare
	 * (a HashBL rule's few strings, a PDF's data), not per-rule work */
	if (EVP_Q_digest(NULL, alg, NULL, d, n, md, &len) != 1 ||
	    len * 2 >= RULES_EVAL_DIGEST_HEX_MAX)
		return false;
	const char *xd = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = xd[md[i] >> 4];
		out[2 * i + 1] = xd[md[i] & 15];
	}
	out[2 * len] = '\0';
	return true;
}

const char *rules_eval_strcasestr(const char *h, const char *n)
{
	size_t nl = strlen(n);
	for (; *h; h++)
		if (strncasecmp(h, n, nl) == 0)
			return h;
	return NULL;
}

/*
 * SpamAssassin's is_domain_valid(): the last label is a top-level domain
 * it knows, asked of the program's one Public Suffix List (dns.h).
 */
bool rules_eval_domain_valid(const char *domain)
{
	return dns_tld_known(domain);
}

/* ---------------------------------------------------------------- header values */

/*
 * SpamAssassin's get(): every occurrence, unfolded, each ending in "\n";
 * decoded (RFC 2047) unless raw. NULL when the field is absent.
 */
static const char *header_build(struct rules_evalenv *e, const char *name, bool raw)
{
	size_t pos = 0;
	const char *v = msg_header_next(e->m, name, &pos);
	if (v == NULL)
		return NULL;
	abuf_t b;
	abuf_init(&b, e->a, 128);
	for (; v != NULL; v = msg_header_next(e->m, name, &pos)) {
		/* pos is past the field found */
		rules_eval_unfold(&b, raw ? v : rules_eval_field_decoded(e, pos - 1), false);
		abuf_append(&b, "\n", 1);
	}
	return b.data;
}

void rules_eval_unfold(abuf_t *b, const char *s, bool indent_as_space)
{
	while (*s) {
		size_t run = strcspn(s, "\r\n");
		abuf_append(b, s, run);
		s += run;
		if (*s == '\r') {
			s++;
		} else if (*s == '\n') {
			bool fold = s[1] == ' ' || s[1] == '\t';
			s++;
			if (!fold)
				abuf_append(b, "\n", 1);
			else if (indent_as_space) {
				while (*s == ' ' || *s == '\t')
					s++;
				abuf_append(b, " ", 1);
			}
		}
	}
}

static const char *header_get(struct rules_evalenv *e, const char *name, bool raw)
{
	for (size_t i = 0; i < e->nfields; i++)
		if (e->fields[i].raw == raw && strcasecmp(e->fields[i].name, name) == 0)
			return e->fields[i].value;
	const char *v = header_build(e, name, raw);
	if (e->nfields < RULES_EVAL_FIELDS)
		e->fields[e->nfields++] =
		    (struct rules_eval_field){arena_strdup(e->a, name), raw, v};
	return v;
}

const char *rules_eval_header(struct rules_evalenv *e, const char *name)
{
	return header_get(e, name, false);
}

const char *rules_eval_header_raw(struct rules_evalenv *e, const char *name)
{
	return header_get(e, name, true);
}

/* ---------------------------------------------------------------- envelope sender */

/* Whether some Received field comes before a field called name. */
static bool after_received(msg_t *m, const char *name)
{
	bool rcvd = false;
	for (size_t i = 0; i < msg_header_count(m); i++) {
		const char *n = msg_header_name(m, i);
		if (strcasecmp(n, "Received") == 0)
			rcvd = true;
		else if (rcvd && strcasecmp(n, name) == 0)
			return true;
	}
	return false;
}

static const char *first_addr(struct rules_evalenv *e, const char *name)
{
	const char *v = msg_header_get(e->m, name, 0);
	if (v == NULL)
		return NULL;
	const char **list;
	return rules_eval_addrs(e->a, mime_decode_header(e->a, v), &list) ? list[0] : "";
}

/*
 * SpamAssassin's EnvelopeFrom: the SMTP sender when Sift has it (the
 * milter); in a file, the envelope-from of the last relay's Received
 * field, else a field the delivering MTA added above every Received field
 * (X-Envelope-From, Envelope-Sender, Return-Path), none when fetchmail
 * relayed a message with X-Sender. NULL when unknown.
 */
const char *rules_eval_envelope_from(struct rules_evalenv *e)
{
	const char *f = msg_mail_from(e->m);
	if (f != NULL)
		return f;
	/* the envelope-from the newest untrusted (else the oldest trusted) relay recorded */
	rules_eval_relays(e);
	const struct rules_relay *hop = e->nuntrusted ? &e->untrusted[0]
	                                : e->ntrusted ? &e->trusted[e->ntrusted - 1]
	                                              : NULL;
	if (hop != NULL && strchr(hop->envfrom, '@') != NULL && hop->envfrom[0] != '@')
		return hop->envfrom;
	const char *xs = first_addr(e, "X-Sender");
	if (xs != NULL && strchr(xs, '@') != NULL) {
		const char *v;
		for (size_t pos = 0; (v = msg_header_next(e->m, "Received", &pos)) != NULL;)
			if (strstr(v, "(fetchmail") != NULL)
				return NULL;
	}
	static const char *const names[] = {"X-Envelope-From", "Envelope-Sender", "Return-Path"};
	for (size_t k = 0; k < 3; k++) {
		const char *a = first_addr(e, names[k]);
		if (a == NULL)
			continue;
		if (!after_received(e->m, names[k]))
			return a;
		if (k == 0)
			return NULL;
	}
	return NULL;
}

static void push_addr(arena_t *a, const char ***all, size_t *n, size_t *cap, const char *addr)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 8;
		const char **nl = arena_alloc(a, nc * sizeof(char *));
		if (*n > 0)
			memcpy(nl, *all, *n * sizeof(char *));
		*all = nl;
		*cap = nc;
	}
	(*all)[(*n)++] = addr;
}

size_t rules_eval_all_from_addrs(struct rules_evalenv *e, const char ***out)
{
	const char *rf = msg_header_get(e->m, "Resent-From", 0);
	if (rf != NULL)
		return rules_eval_addrs(e->a, mime_decode_header(e->a, rf), out) > 0;
	static const char *const fields[] = {"From", "Envelope-Sender", "Resent-Sender",
	                                     "X-Envelope-From"};
	const char **all = NULL;
	size_t n = 0, cap = 0;
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		const char *v;
		for (size_t pos = 0; (v = msg_header_next(e->m, fields[f], &pos)) != NULL;) {
			const char **list;
			size_t k = rules_eval_addrs(e->a, mime_decode_header(e->a, v), &list);
			for (size_t i = 0; i < k; i++)
				push_addr(e->a, &all, &n, &cap, list[i]);
		}
	}
	const char *env = rules_eval_envelope_from(e);
	if (env != NULL && *env != '\0')
		push_addr(e->a, &all, &n, &cap, env);
	*out = all;
	return n;
}

/* ---------------------------------------------------------------- relays */

static char *relay_field(arena_t *a, const char *s, size_t n, const char *key)
{
	size_t kl = strlen(key);
	for (size_t i = 0; i + kl <= n; i++) {
		if ((i == 0 || s[i - 1] == ' ') && strncmp(s + i, key, kl) == 0 &&
		    s[i + kl] == '=') {
			const char *v = s + i + kl + 1;
			size_t vl = 0;
			while (v + vl < s + n && v[vl] != ' ')
				vl++;
			return arena_strndup(a, v, vl);
		}
	}
	return arena_strdup(a, "");
}

static struct rules_relay *parse_relays(arena_t *a, const char *s, size_t *n)
{
	*n = 0;
	if (s == NULL)
		return NULL;
	size_t cap = 0;
	for (const char *p = s; (p = strchr(p, '[')) != NULL; p++)
		cap++;
	struct rules_relay *v = arena_zalloc(a, (cap ? cap : 1) * sizeof(*v));
	for (const char *p = s; (p = strchr(p, '[')) != NULL && *n < cap;) {
		const char *end = strchr(p, ']');
		if (end == NULL)
			break;
		size_t len = (size_t)(end - p);
		struct rules_relay *r = &v[(*n)++];
		r->ip = relay_field(a, p, len, "ip");
		r->rdns = relay_field(a, p, len, "rdns");
		r->helo = relay_field(a, p, len, "helo");
		r->by = relay_field(a, p, len, "by");
		r->ident = relay_field(a, p, len, "ident");
		r->envfrom = relay_field(a, p, len, "envfrom");
		r->id = relay_field(a, p, len, "id");
		r->auth = relay_field(a, p, len, "auth");
		p = end + 1;
	}
	return v;
}

void rules_eval_relays(struct rules_evalenv *e)
{
	if (e->relays_done)
		return;
	e->relays_done = true;
	const char *t = NULL, *u = NULL;
	rules_relays(e->a, e->m, &t, &u, &e->rcvd_trusted, &e->untrusted_no_rdns,
	             &e->relays_unparseable);
	e->trusted_str = t ? t : "";
	e->untrusted_str = u ? u : "";
	e->trusted = parse_relays(e->a, t, &e->ntrusted);
	e->untrusted = parse_relays(e->a, u, &e->nuntrusted);
}

/* ---------------------------------------------------------------- regexes */

/*
 * Fixed patterns of the eval functions, compiled on first use and kept
 * for the life of the process (they never change). The lock is taken
 * only until the pattern is compiled.
 */
static pthread_mutex_t re_lock = PTHREAD_MUTEX_INITIALIZER;

static pcre2_code *re_code(struct rules_eval_re *re)
{
	pcre2_code *code = atomic_load_explicit(&re->code, memory_order_acquire);
	if (code != NULL)
		return code;
	pthread_mutex_lock(&re_lock);
	code = atomic_load_explicit(&re->code, memory_order_relaxed);
	if (code == NULL) {
		int err;
		PCRE2_SIZE off;
		/* a built-in pattern that fails to compile is a bug: it never matches */
		code = rules_re_compile(re->pattern, PCRE2_ZERO_TERMINATED, re->options, NULL, &err,
		                        &off);
		if (code != NULL) {
			/* JIT when available and right; pcre2_match() uses it by itself */
			(void)rules_re_jit(code, re->pattern, PCRE2_ZERO_TERMINATED);
			atomic_store_explicit(&re->code, code, memory_order_release);
		}
	}
	pthread_mutex_unlock(&re_lock);
	return code;
}

static int re_run(struct rules_eval_re *re, const char *s, size_t n, PCRE2_SIZE g[2])
{
	pcre2_code *code = re_code(re);
	if (code == NULL)
		return -1;
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
	int rc = pcre2_match(code, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
	if (rc > 1 && g != NULL) {
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		g[0] = ov[2];
		g[1] = ov[3];
	}
	pcre2_match_data_free(md);
	return rc;
}

bool rules_eval_re_find(struct rules_eval_re *re, const char *s, size_t n, size_t from,
                        size_t *start, size_t *len)
{
	pcre2_code *code = re_code(re);
	if (code == NULL)
		return false;
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
	int rc = pcre2_match(code, (PCRE2_SPTR)s, n, from, 0, md, NULL);
	if (rc > 0) {
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		int g = rc > 1 && ov[2] != PCRE2_UNSET ? 1 : 0;
		*start = ov[2 * g];
		*len = ov[2 * g + 1] - ov[2 * g];
		if (g == 1 && ov[1] > ov[3])
			*len = ov[3] - ov[2];
	}
	pcre2_match_data_free(md);
	return rc > 0;
}

void rules_eval_re_blank(struct rules_eval_re *re, char *s, size_t n)
{
	pcre2_code *code = re_code(re);
	if (code == NULL)
		return;
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
	for (size_t off = 0; off < n;) {
		if (pcre2_match(code, (PCRE2_SPTR)s, n, off, 0, md, NULL) <= 0)
			break;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		memset(s + ov[0], ' ', ov[1] - ov[0]);
		off = ov[1] > off ? ov[1] : off + 1;
	}
	pcre2_match_data_free(md);
}

bool rules_eval_re(struct rules_eval_re *re, const char *s, size_t n)
{
	return re_run(re, s, n, NULL) > 0;
}

const char *rules_eval_re_group(struct rules_eval_re *re, const char *s, size_t n, arena_t *a)
{
	PCRE2_SIZE g[2];
	if (re_run(re, s, n, g) < 2 || g[0] == PCRE2_UNSET)
		return NULL;
	return arena_strndup(a, s + g[0], g[1] - g[0]);
}

bool rules_eval_word(const char **p, const char **w, size_t *n)
{
	const char *s = *p + strspn(*p, " \t");
	size_t l = strcspn(s, " \t");
	*p = s + l;
	if (l == 0)
		return false;
	*w = s;
	*n = l;
	return true;
}

char *rules_eval_lower_dup(const char *s, size_t n)
{
	char *d = xalloc_strndup(s, n);
	for (char *q = d; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	return d;
}

bool rules_eval_re_once(const char *pattern, uint32_t options, const char *s)
{
	int err;
	PCRE2_SIZE off;
	pcre2_code *c = rules_re_compile(pattern, PCRE2_ZERO_TERMINATED, options, NULL, &err, &off);
	if (c == NULL)
		return false;
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(c, NULL);
	int rc = pcre2_match(c, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
	pcre2_match_data_free(md);
	pcre2_code_free(c);
	return rc > 0;
}

/* ---------------------------------------------------------------- dates */

static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                     "jul", "aug", "sep", "oct", "nov", "dec"};

static int month_of(const char *t, size_t n)
{
	if (n != 3)
		return 0;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(t, months[i], 3) == 0)
			return i + 1;
	return 0;
}

static const struct {
	const char *name;
	int off; /* +HHMM */
} zones[] = {
    {"UT", 0},     {"UTC", 0},     {"GMT", 0},     {"EST", -500},  {"EDT", -400},  {"CST", -600},
    {"CDT", -500}, {"MST", -700},  {"MDT", -600},  {"PST", -800},  {"PDT", -700},  {"BST", 100},
    {"CET", 100},  {"CEST", 200},  {"MET", 100},   {"MEST", 200},  {"EET", 200},   {"EEST", 300},
    {"WET", 0},    {"WEST", 100},  {"JST", 900},   {"KST", 900},   {"HKT", 800},   {"SGT", 800},
    {"IST", 530},  {"AEST", 1000}, {"AEDT", 1100}, {"NZST", 1200}, {"NZDT", 1300}, {"AST", -400},
    {"ADT", -300}, {"HST", -1000}, {"AKST", -900}, {"AKDT", -800}, {"MSK", 300},
};

static bool all_digits(const char *t, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)t[i]))
			return false;
	return true;
}

static bool is_hms(const char *t, size_t n, int *h, int *m, int *s)
{
	int a, b, c = 0, used = 0;
	char buf[16];
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, t, n);
	buf[n] = '\0';
	/* as SpamAssassin reads a time: h or hh, then two-digit minutes and seconds */
	size_t hl = buf[1] == ':' ? 1 : 2;
	if (!(n == hl + 3 || n == hl + 6) || buf[hl] != ':' || (n == hl + 6 && buf[hl + 3] != ':'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (buf[i] != ':' && !isdigit((unsigned char)buf[i]))
			return false;
	if (sscanf(buf, "%2d:%2d:%2d%n", &a, &b, &c, &used) == 3 && (size_t)used == n) {
	} else if (sscanf(buf, "%2d:%2d%n", &a, &b, &used) == 2 && (size_t)used == n) {
		c = 0;
	} else {
		return false;
	}
	if (!isdigit((unsigned char)buf[0]) || buf[n - 1] == ':')
		return false;
	*h = a;
	*m = b;
	*s = c;
	return true;
}

/*
 * SpamAssassin's parse_rfc822_date(): lenient, token by token ("Thu, 5
 * Dec 2002 10:00:00 -0800", "Dec  5 10:00:00 2002", two-digit years).
 * Returns false when no date part is found.
 */
bool rules_eval_parse_date(const char *s, int64_t *out)
{
	char buf[256];
	size_t bn = 0;
	/* ", *" becomes " ", runs of white space one space; parentheses split words */
	for (const char *p = s; *p && bn < sizeof(buf) - 2; p++) {
		char c = *p;
		if (c == ',' || c == '(' || c == ')' || isspace((unsigned char)c))
			c = ' ';
		if (c == ' ' && (bn == 0 || buf[bn - 1] == ' '))
			continue;
		buf[bn++] = c;
	}
	buf[bn] = '\0';
	const char *tok[32];
	size_t tl[32];
	bool used[32] = {false};
	size_t nt = 0;
	for (char *p = buf; *p && nt < 32;) {
		size_t l = strcspn(p, " ");
		tok[nt] = p;
		tl[nt++] = l;
		p += l;
		while (*p == ' ')
			p++;
	}
	int dd = 0, mon = 0, yyyy = -1, ylen = 0;
	for (size_t i = 0; i + 2 < nt && mon == 0; i++)
		if (all_digits(tok[i], tl[i]) && month_of(tok[i + 1], tl[i + 1]) &&
		    all_digits(tok[i + 2], tl[i + 2]) && tl[i + 2] == 4) {
			dd = atoi(tok[i]);
			mon = month_of(tok[i + 1], tl[i + 1]);
			yyyy = atoi(tok[i + 2]);
			ylen = 4;
			used[i] = used[i + 1] = used[i + 2] = true;
		}
	for (size_t i = 0; i + 3 < nt && mon == 0; i++) {
		int h, m, sec;
		if (month_of(tok[i], tl[i]) && all_digits(tok[i + 1], tl[i + 1]) &&
		    is_hms(tok[i + 2], tl[i + 2], &h, &m, &sec) && tl[i + 2] >= 5 &&
		    all_digits(tok[i + 3], tl[i + 3]) && tl[i + 3] == 4) {
			mon = month_of(tok[i], tl[i]);
			dd = atoi(tok[i + 1]);
			yyyy = atoi(tok[i + 3]);
			ylen = 4;
			used[i] = used[i + 1] = used[i + 3] = true;
		}
	}
	for (size_t i = 0; i + 2 < nt && mon == 0; i++)
		if (all_digits(tok[i], tl[i]) && month_of(tok[i + 1], tl[i + 1]) &&
		    all_digits(tok[i + 2], tl[i + 2]) && (tl[i + 2] == 2 || tl[i + 2] == 3)) {
			dd = atoi(tok[i]);
			mon = month_of(tok[i + 1], tl[i + 1]);
			yyyy = atoi(tok[i + 2]);
			ylen = (int)tl[i + 2];
			used[i] = used[i + 1] = used[i + 2] = true;
		}
	if (mon == 0)
		return false;
	if (ylen == 2 && yyyy < 50)
		yyyy += 2000;
	else if (ylen != 4)
		yyyy += 1900;
	int hh = 0, mm = 0, ss = 0;
	for (size_t i = 0; i < nt; i++)
		if (!used[i] && tl[i] <= 8 && is_hms(tok[i], tl[i], &hh, &mm, &ss)) {
			used[i] = true;
			break;
		}
	int tz = 0;
	bool tz_found = false;
	for (size_t i = 0; i < nt && !tz_found; i++)
		if (!used[i] && tl[i] == 5 && (tok[i][0] == '+' || tok[i][0] == '-') &&
		    all_digits(tok[i] + 1, 4)) {
			tz = atoi(tok[i] + 1);
			if (tok[i][0] == '-')
				tz = -tz;
			tz_found = true;
		}
	for (size_t i = 0; i < nt && !tz_found; i++) {
		if (used[i] || tl[i] < 2 || tl[i] > 8)
			continue;
		for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++)
			if (strlen(zones[z].name) == tl[i] &&
			    strncmp(zones[z].name, tok[i], tl[i]) == 0) {
				tz = zones[z].off;
				tz_found = true;
				break;
			}
	}
	if (ss > 59)
		ss = 59;
	if (mm > 59)
		mm = 59;
	if (hh > 23)
		hh = 23;
	int max_dd = 31;
	if (mon == 4 || mon == 6 || mon == 9 || mon == 11)
		max_dd = 30;
	else if (mon == 2)
		max_dd = (!(yyyy % 4) && ((yyyy % 100) || !(yyyy % 400))) ? 29 : 28;
	if (dd > max_dd) {
		dd = 1;
		if (++mon > 12) {
			mon = 1;
			yyyy++;
		}
	}
	if (dd < 1)
		dd = 1;
	struct tm t = {.tm_year = yyyy - 1900,
	               .tm_mon = mon - 1,
	               .tm_mday = dd,
	               .tm_hour = hh,
	               .tm_min = mm,
	               .tm_sec = ss};
	int64_t v = (int64_t)timegm(&t);
	int sign = tz < 0 ? -1 : 1;
	int az = tz * sign;
	v -= sign * ((az / 100) * 3600 + (az % 100) * 60);
	*out = v;
	return true;
}

/* ---------------------------------------------------------------- addresses */

/*
 * The addresses of a header value as SpamAssassin's ":addr" lists them:
 * each comma-separated mailbox's <angle> part, else its bare word with an
 * "@". Groups and comments are stepped over.
 */
size_t rules_eval_addrs(arena_t *a, const char *v, const char ***out)
{
	size_t cap = 8, n = 0;
	const char **list = arena_alloc(a, cap * sizeof(char *));
	const char *p = v;
	while (p && *p) {
		/* one mailbox: up to a comma outside quotes, angles and comments */
		const char *s = p;
		int depth = 0;
		bool q = false, ang = false;
		for (; *p; p++) {
			if (q) {
				if (*p == '\\' && p[1])
					p++;
				else if (*p == '"')
					q = false;
			} else if (*p == '"')
				q = true;
			else if (*p == '(')
				depth++;
			else if (*p == ')' && depth > 0)
				depth--;
			else if (*p == '<' && depth == 0)
				ang = true;
			else if (*p == '>' && depth == 0)
				ang = false;
			else if ((*p == ',' || *p == ';' || *p == '\n') && depth == 0 && !ang)
				break;
		}
		const char *e = p;
		if (*p)
			p++;
		const char *lt = memchr(s, '<', (size_t)(e - s));
		const char *as = NULL, *ae = NULL;
		if (lt) {
			const char *gt = memchr(lt, '>', (size_t)(e - lt));
			if (gt) {
				as = lt + 1;
				ae = gt;
			}
		} else {
			const char *at = memchr(s, '@', (size_t)(e - s));
			if (at) {
				as = at;
				while (as > s && !isspace((unsigned char)as[-1]) && as[-1] != ':' &&
				       as[-1] != '"' && as[-1] != ')')
					as--;
				ae = at;
				while (ae < e && !isspace((unsigned char)*ae) && *ae != '(')
					ae++;
			}
		}
		if (as == NULL || ae <= as)
			continue;
		while (as < ae && isspace((unsigned char)*as))
			as++;
		while (ae > as && isspace((unsigned char)ae[-1]))
			ae--;
		if (ae == as)
			continue;
		if (n == cap) {
			const char **nl = arena_alloc(a, cap * 2 * sizeof(char *));
			memcpy(nl, list, cap * sizeof(char *));
			list = nl;
			cap *= 2;
		}
		list[n++] = arena_strndup(a, as, (size_t)(ae - as));
	}
	*out = list;
	return n;
}

/*
 * IPv4 dotted quad as SpamAssassin's IS_IPV4_ADDRESS: four octets of at
 * most 255 without leading zeros ("46.34.15.06" is a name, not an address).
 */
bool rules_eval_is_ipv4(const char *s)
{
	for (int part = 0; part < 4; part++) {
		if (part > 0 && *s++ != '.')
			return false;
		if (!isdigit((unsigned char)s[0]))
			return false;
		unsigned v = 0;
		size_t n = 0;
		while (isdigit((unsigned char)s[n]) && n < 4)
			v = v * 10 + (unsigned)(s[n++] - '0');
		if (n > 3 || v > 255 || (n > 1 && s[0] == '0'))
			return false;
		s += n;
	}
	return *s == '\0';
}

/* SpamAssassin's IP_PRIVATE for IPv4: RFC 1918, loopback, link-local, CGNAT, 0/8. */
bool rules_eval_ip_private(const char *ip)
{
	unsigned a, b;
	if (sscanf(ip, "%u.%u.", &a, &b) != 2)
		return strncasecmp(ip, "fe80:", 5) == 0 || strcmp(ip, "::1") == 0 ||
		       strncasecmp(ip, "fc", 2) == 0 || strncasecmp(ip, "fd", 2) == 0;
	return a == 10 || a == 127 || a == 0 || (a == 172 && b >= 16 && b <= 31) ||
	       (a == 192 && b == 168) || (a == 169 && b == 254) ||
	       (a == 100 && b >= 64 && b <= 127);
}
