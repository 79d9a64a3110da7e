/*
 * rules_parse.c - the rule-file language: SpamAssassin's .cf syntax as far
 * as a regex engine can honour it (see rules.h for what is supported).
 * Lines become struct rule records in the rules_t; regexes are compiled
 * later, once every file is read, because ReplaceTags (like SpamAssassin's
 * plugin) rewrites patterns with tags that may be defined after the rule.
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "rules_int.h"

#define RULES_MAX_NESTING       64
#define RULES_MAX_INCLUDE_DEPTH 16
#define RULES_MAX_FILE_BYTES    (64u * 1024 * 1024)
#define RULES_REPLACE_PASSES    6
/* SpamAssassin's largest pattern after ReplaceTags is ~90 KiB; tags that
 * expand into tags could otherwise grow a pattern without bound. */
#define RULES_MAX_PATTERN_BYTES (512u * 1024)

/* What "if" expressions see (SpamAssassin 4.0.1 on Perl 5.36). */
#define RULES_SA_VERSION   4.000001
#define RULES_PERL_VERSION 5.036000

static const char *const provided_plugins[] = {
    "Mail::SpamAssassin::Plugin::ReplaceTags",
    "Mail::SpamAssassin::Plugin::MIMEHeader",
    /* partly: the eval tests listed in rules_eval*.c run, the others are skipped */
    "Mail::SpamAssassin::Plugin::HeaderEval",
    "Mail::SpamAssassin::Plugin::RelayEval",
    "Mail::SpamAssassin::Plugin::MIMEEval",
    "Mail::SpamAssassin::Plugin::HTMLEval",
    /* check_https_ip_mismatch, check_uri_truncated; check_https_http_mismatch */
    "Mail::SpamAssassin::Plugin::URIEval",
    "Mail::SpamAssassin::Plugin::HTTPSMismatch",
    "Mail::SpamAssassin::Plugin::FreeMail",
    "Mail::SpamAssassin::Plugin::BodyEval",
    "Mail::SpamAssassin::Plugin::WLBLEval",
    "Mail::SpamAssassin::Plugin::WelcomeListSubject",
    /* welcomelist_bounce_relays and its evals (rules_eval_vbounce.c); v320.pre loads it */
    "Mail::SpamAssassin::Plugin::VBounce",
    /* check_rbl, check_rbl_txt and check_rbl_sub ask Sift's DNS service (rules_eval_dns.c) */
    "Mail::SpamAssassin::Plugin::DNSEval",
    /*
     * check_uridnsbl over urirhssub/urirhsbl (the hosts' domains), uridnssub/uridnsbl
     * (the hosts' and their name servers' addresses), urinsrhssub/urinsrhsbl and
     * urifullnsrhssub/urifullnsrhsbl (the name servers' names)
     */
    "Mail::SpamAssassin::Plugin::URIDNSBL",
    /* askdns with the sender's, author's and last external relay's names */
    "Mail::SpamAssassin::Plugin::AskDNS",
    /* check_hashbl_bodyre, raw and sha256 (rules_eval_dns.c); v342.pre loads it */
    "Mail::SpamAssassin::Plugin::HashBL",
    /* ImageInfo; PDFInfo without the MD5 tests */
    "Mail::SpamAssassin::Plugin::ImageInfo",
    "Mail::SpamAssassin::Plugin::PDFInfo",
    /* shortcircuit on/off/spam/ham (rules.c: the cut by priority) */
    "Mail::SpamAssassin::Plugin::Shortcircuit",
    /* uri_detail rules (rules_eval_html.c) */
    "Mail::SpamAssassin::Plugin::URIDetail",
    /* check_language and check_body_8bits, ok_languages and friends (rules_eval_textcat.c) */
    "Mail::SpamAssassin::Plugin::TextCat",
    NULL,
};

/* Read when the auth module runs (auth_enable): it answers their SPF, DKIM and DMARC tests. */
static const char *const auth_plugins[] = {
    "Mail::SpamAssassin::Plugin::SPF",
    "Mail::SpamAssassin::Plugin::DKIM",
    "Mail::SpamAssassin::Plugin::Dmarc",
    NULL,
};

static const char *const provided_features[] = {
    "Mail::SpamAssassin::Conf::feature_bug6558_free",
    "Mail::SpamAssassin::Conf::perl_min_version_5010000",
    "Mail::SpamAssassin::Conf::feature_yesno_takes_args",
    "Mail::SpamAssassin::Conf::feature_registryboundaries",
    "Mail::SpamAssassin::Conf::feature_capture_rules",
    "Mail::SpamAssassin::Plugin::MIMEEval::has_check_for_ascii_text_illegal",
    "Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length",
    "Mail::SpamAssassin::Conf::feature_welcomelist_blocklist",
    "Mail::SpamAssassin::Plugin::URIDetail::has_host_key",
    /*
     * tflags domains_only, ips_only, notrim, a and ns, N1-N2 subtests
     * (rules_eval_dns.c)
     */
    "Mail::SpamAssassin::Plugin::URIDNSBL::has_tflags_domains_only",
    /* and the same for DNSEval's name forms (check_rbl_from_host...) */
    "Mail::SpamAssassin::Plugin::DNSEval::has_tflags_domains_only",
    "Mail::SpamAssassin::Plugin::DNSEval::has_tflags_ips_only",
    "Mail::SpamAssassin::Plugin::URIDNSBL::has_uridnsbl_for_a",
    "Mail::SpamAssassin::Plugin::URIDNSBL::has_uridnsbl_a_ns",
    "Mail::SpamAssassin::Plugin::URIDNSBL::has_subtest_for_ranges",
    "Mail::SpamAssassin::Plugin::URIDNSBL::has_tflags_notrim",
    "Mail::SpamAssassin::Plugin::MIMEEval::has_check_abundant_unicode_ratio",
    "Mail::SpamAssassin::Conf::has_tflags_nosubject",
    /* dns_block_rule: a refusing list is not asked for dns_block_time (rules_eval_dns.c) */
    "Mail::SpamAssassin::Conf::feature_dns_block_rule",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_bodyre",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_bodyre_num",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_sha256",
    NULL,
};

/*
 * Features of plugins SpamAssassin's default install does not load
 * (DecodeShortURLs: v400.pre), so that its stock files take their
 * fallbacks; true with rules_all_plugins, as the plugin's blocks are.
 */
static const char *const optional_features[] = {
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_short_url",
    /* short_url() hits from the url_shortener lists alone (rules_eval_shorturl.c) */
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_short_url_redir",
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_get",
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_clear",
    NULL,
};

struct kv {
	char *k, *v;
};

struct kvlist {
	struct kv *v;
	size_t n, cap;
};

struct cond {
	bool active; /* lines inside are read */
	bool parent; /* the enclosing block was active */
	bool seen_else;
};

struct pstate {
	struct cond cond[RULES_MAX_NESTING];
	int ncond;
	int depth; /* include nesting */
	char **warned;
	size_t nwarned, capwarned;
	struct kvlist tags, pre, post, inter;
	char **replace_rules;
	size_t nreplace, capreplace;
	char *start, *end;
	/* skipped eval tests, grouped by reason for one warning per group */
	struct skipgroup {
		const char *why; /* static text */
		const char *file;
		unsigned line;
		char **names;
		size_t n;
	} * skips;
	size_t nskips;
};

/* Records a skipped eval test; rules_parse_end() warns once per reason. */
static void note_skip(struct pstate *ps, const char *file, unsigned line, const char *name,
                      const char *why)
{
	struct skipgroup *g = NULL;
	for (size_t i = 0; i < ps->nskips && g == NULL; i++)
		if (strcmp(ps->skips[i].why, why) == 0)
			g = &ps->skips[i];
	if (g == NULL) {
		ps->skips = xalloc_realloc(ps->skips, (ps->nskips + 1) * sizeof(*ps->skips));
		g = &ps->skips[ps->nskips++];
		*g = (struct skipgroup){.why = why, .file = file, .line = line};
	}
	for (size_t i = 0; i < g->n; i++)
		if (strcmp(g->names[i], name) == 0)
			return;
	g->names = xalloc_realloc(g->names, (g->n + 1) * sizeof(char *));
	g->names[g->n++] = xalloc_strdup(name);
}

static void warn_skips(struct pstate *ps, diag_t *d)
{
	for (size_t i = 0; i < ps->nskips; i++) {
		struct skipgroup *g = &ps->skips[i];
		if (g->n == 1) {
			diag_warn(d, g->file, g->line, "skipped eval test %s (%s)", g->names[0],
			          g->why);
		} else {
			char list[400] = "";
			size_t k = 0, used = 0;
			for (; k < g->n; k++) {
				size_t nl = strlen(g->names[k]);
				if (used + nl + 2 >= sizeof(list) - 16)
					break;
				used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
				                         k ? ", " : "", g->names[k]);
			}
			if (k < g->n)
				snprintf(list + used, sizeof(list) - used, " and %zu more",
				         g->n - k);
			diag_warn(d, g->file, g->line, "skipped %zu eval tests (%s): %s", g->n,
			          g->why, list);
		}
		for (size_t k = 0; k < g->n; k++)
			free(g->names[k]);
		free(g->names);
	}
	free(ps->skips);
	ps->skips = NULL;
	ps->nskips = 0;
}

/* Warns once per key: unsupported constructs would otherwise flood lint. */
static void warn_once(struct pstate *ps, diag_t *d, const char *file, unsigned line,
                      const char *key, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void warn_once(struct pstate *ps, diag_t *d, const char *file, unsigned line,
                      const char *key, const char *fmt, ...)
{
	for (size_t i = 0; i < ps->nwarned; i++)
		if (strcmp(ps->warned[i], key) == 0)
			return;
	if (ps->nwarned == ps->capwarned) {
		ps->capwarned = ps->capwarned ? ps->capwarned * 2 : 32;
		ps->warned = xalloc_realloc(ps->warned, ps->capwarned * sizeof(char *));
	}
	ps->warned[ps->nwarned++] = xalloc_strdup(key);
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	diag_warn(d, file, line, "%s", msg);
}

static void kv_set(struct kvlist *l, const char *k, const char *v)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].k, k) == 0) {
			free(l->v[i].v);
			l->v[i].v = xalloc_strdup(v);
			return;
		}
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xalloc_realloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n].k = xalloc_strdup(k);
	l->v[l->n].v = xalloc_strdup(v);
	l->n++;
}

static const char *kv_get(const struct kvlist *l, const char *k, size_t klen)
{
	for (size_t i = 0; i < l->n; i++)
		if (strlen(l->v[i].k) == klen && memcmp(l->v[i].k, k, klen) == 0)
			return l->v[i].v;
	return NULL;
}

static void kv_free(struct kvlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].k);
		free(l->v[i].v);
	}
	free(l->v);
}

void *rules_parse_begin(rules_t *r)
{
	(void)r;
	struct pstate *ps = xalloc_calloc(1, sizeof(*ps));
	ps->start = xalloc_strdup("<");
	ps->end = xalloc_strdup(">");
	return ps;
}

static bool cond_active(const struct pstate *ps)
{
	return ps->ncond == 0 || ps->cond[ps->ncond - 1].active;
}

static const char *skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* Copies the next blank-delimited token; returns the rest (blanks skipped). */
static const char *next_token(const char *s, char *out, size_t outlen)
{
	s = skip_ws(s);
	size_t n = 0;
	while (*s && *s != ' ' && *s != '\t') {
		if (n + 1 < outlen)
			out[n++] = *s;
		s++;
	}
	out[n] = '\0';
	return skip_ws(s);
}

static bool valid_rule_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return false;
	return true;
}

/* ---------------------------------------------------------------- if expressions */

struct ifx {
	const char *p;
	bool error;
	struct pstate *ps;
	diag_t *d;
	const char *file;
	unsigned line;
	bool all_plugins;
	bool auth_plugins;
};

static double ifx_or(struct ifx *x);

static bool in_list(const char *const *list, const char *s, size_t n)
{
	for (size_t i = 0; list[i]; i++)
		if (strlen(list[i]) == n && strncmp(list[i], s, n) == 0)
			return true;
	return false;
}

static double ifx_primary(struct ifx *x)
{
	x->p = skip_ws(x->p);
	if (*x->p == '(') {
		x->p++;
		double v = ifx_or(x);
		x->p = skip_ws(x->p);
		if (*x->p != ')') {
			x->error = true;
			return 0;
		}
		x->p++;
		return v;
	}
	if (isdigit((unsigned char)*x->p)) {
		char *end;
		double v = strtod(x->p, &end);
		x->p = end;
		return v;
	}
	const char *w = x->p;
	while (isalnum((unsigned char)*x->p) || *x->p == '_')
		x->p++;
	size_t wn = (size_t)(x->p - w);
	if (wn == 0) {
		x->error = true;
		return 0;
	}
	if (wn == 7 && strncmp(w, "version", 7) == 0)
		return RULES_SA_VERSION;
	if (wn == 12 && strncmp(w, "perl_version", 12) == 0)
		return RULES_PERL_VERSION;
	if (wn == 4 && strncmp(w, "true", 4) == 0)
		return 1;
	if (wn == 5 && strncmp(w, "false", 5) == 0)
		return 0;
	bool is_can = wn == 3 && strncmp(w, "can", 3) == 0;
	bool is_plugin = wn == 6 && strncmp(w, "plugin", 6) == 0;
	if (!is_can && !is_plugin) {
		char word[64];
		snprintf(word, sizeof(word), "%.*s", (int)(wn < 60 ? wn : 60), w);
		char key[96];
		snprintf(key, sizeof(key), "if-word %s", word);
		warn_once(x->ps, x->d, x->file, x->line, key,
		          "unknown word '%s' in if expression (treated as false)", word);
		return 0;
	}
	x->p = skip_ws(x->p);
	if (*x->p != '(') {
		x->error = true;
		return 0;
	}
	const char *arg = skip_ws(x->p + 1);
	const char *close = strchr(arg, ')');
	if (close == NULL) {
		x->error = true;
		return 0;
	}
	size_t an = (size_t)(close - arg);
	while (an > 0 && (arg[an - 1] == ' ' || arg[an - 1] == '\t'))
		an--;
	x->p = close + 1;
	if (is_plugin && x->all_plugins)
		return 1;
	/* a plugin SpamAssassin's default install leaves unloaded: its features with its blocks */
	if (is_can && x->all_plugins && in_list(optional_features, arg, an))
		return 1;
	if (is_plugin && x->auth_plugins && in_list(auth_plugins, arg, an))
		return 1;
	return in_list(is_can ? provided_features : provided_plugins, arg, an) ? 1 : 0;
}

static double ifx_unary(struct ifx *x)
{
	x->p = skip_ws(x->p);
	if (*x->p == '!' && x->p[1] != '=') {
		x->p++;
		return ifx_unary(x) == 0 ? 1 : 0;
	}
	return ifx_primary(x);
}

static double ifx_cmp(struct ifx *x)
{
	double a = ifx_unary(x);
	x->p = skip_ws(x->p);
	const char *p = x->p;
	int op = 0;
	if (strncmp(p, ">=", 2) == 0)
		op = 1;
	else if (strncmp(p, "<=", 2) == 0)
		op = 2;
	else if (strncmp(p, "==", 2) == 0)
		op = 3;
	else if (strncmp(p, "!=", 2) == 0)
		op = 4;
	else if (*p == '>')
		op = 5;
	else if (*p == '<')
		op = 6;
	if (op == 0)
		return a;
	x->p += op <= 4 ? 2 : 1;
	double b = ifx_unary(x);
	switch (op) {
	case 1: return a >= b;
	case 2: return a <= b;
	case 3: return a == b;
	case 4: return a != b;
	case 5: return a > b;
	default: return a < b;
	}
}

static double ifx_and(struct ifx *x)
{
	double v = ifx_cmp(x);
	for (;;) {
		x->p = skip_ws(x->p);
		if (strncmp(x->p, "&&", 2) != 0)
			return v;
		x->p += 2;
		double w = ifx_cmp(x);
		v = (v != 0 && w != 0);
	}
}

static double ifx_or(struct ifx *x)
{
	double v = ifx_and(x);
	for (;;) {
		x->p = skip_ws(x->p);
		if (strncmp(x->p, "||", 2) != 0)
			return v;
		x->p += 2;
		double w = ifx_and(x);
		v = (v != 0 || w != 0);
	}
}

/* ---------------------------------------------------------------- regex syntax */

static char closing_delim(char open)
{
	switch (open) {
	case '{': return '}';
	case '(': return ')';
	case '[': return ']';
	case '<': return '>';
	default: return open;
	}
}

/* "/re/flags" or "m{re}flags" (rules_int.h). */
int rules_parse_regex(const char *s, char **pat, uint32_t *opts, const char **end, char *err,
                      size_t errlen)
{
	char open;
	if (*s == '/') {
		open = '/';
		s++;
	} else if (*s == 'm' && s[1] && !isalnum((unsigned char)s[1]) && s[1] != ' ' &&
	           s[1] != '\t' && s[1] != '_') {
		open = s[1];
		s += 2;
	} else {
		snprintf(err, errlen, "expected a regex such as /.../ or m{...}");
		return -1;
	}
	char close = closing_delim(open);
	int depth = 0;
	const char *p = s;
	for (; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (open != close && *p == open) {
			depth++;
		} else if (*p == close) {
			if (depth == 0)
				break;
			depth--;
		}
	}
	if (*p != close) {
		snprintf(err, errlen, "unterminated regex (no closing '%c')", close);
		return -1;
	}
	*pat = xalloc_strndup(s, (size_t)(p - s));
	p++;
	uint32_t o = 0;
	for (; isalpha((unsigned char)*p); p++) {
		switch (*p) {
		case 'i': o |= PCRE2_CASELESS; break;
		case 's': o |= PCRE2_DOTALL; break;
		case 'm': o |= PCRE2_MULTILINE; break;
		case 'x': o |= PCRE2_EXTENDED; break;
		case 'g': /* FALLTHROUGH: meaningless for a test */
		case 'o': break;
		default:
			snprintf(err, errlen, "unknown regex flag '%c'", *p);
			free(*pat);
			*pat = NULL;
			return -1;
		}
	}
	*opts = o;
	*end = skip_ws(p);
	return 0;
}

/* ---------------------------------------------------------------- directives */

struct ctx {
	rules_t *r;
	struct pstate *ps;
	diag_t *d;
	const char *file; /* interned */
	unsigned line;
};

static const char *type_word(int type)
{
	return rules_type_name(type);
}

/* Resets a rule for a (re)definition: SpamAssassin lets a later line win. */
static struct rule *define_rule(struct ctx *c, const char *name, int type)
{
	size_t i = rules_intern_rule(c->r, name); /* may move c->r->v */
	struct rule *ru = &c->r->v[i];
	free(ru->pattern);
	free(ru->hdr_name);
	free(ru->if_unset);
	free(ru->meta_src);
	ru->pattern = ru->hdr_name = ru->if_unset = ru->meta_src = NULL;
	ru->type = type;
	ru->defined = true;
	ru->skipped = false;
	ru->evaldef = NULL;
	ru->negate = false;
	ru->hdr_exists = false;
	ru->hdr_mods = 0;
	ru->re_options = 0;
	ru->file = (char *)c->file;
	ru->line = c->line;
	return ru;
}

/*
 * "eval:func('a', 2, undef)": the function and its arguments as Perl
 * would see them (quotes removed). Returns the count of arguments, or -1
 * when the list does not parse.
 */
static int eval_args(const char *p, char ***out)
{
	*out = NULL;
	p = skip_ws(p);
	if (*p == '\0')
		return 0;
	if (*p != '(')
		return -1;
	p = skip_ws(p + 1);
	int n = 0;
	char **v = NULL;
	while (*p && *p != ')') {
		const char *s = p, *e;
		if (*p == '\'' || *p == '"') {
			char q = *p++;
			s = p;
			while (*p && *p != q)
				p++;
			if (*p != q)
				goto bad;
			e = p++;
		} else {
			while (*p && *p != ',' && *p != ')')
				p++;
			e = p;
			while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
		}
		v = xalloc_realloc(v, (size_t)(n + 1) * sizeof(char *));
		v[n++] = xalloc_strndup(s, (size_t)(e - s));
		p = skip_ws(p);
		if (*p == ',')
			p = skip_ws(p + 1);
		else if (*p != ')')
			goto bad;
	}
	if (*p != ')' || *skip_ws(p + 1))
		goto bad;
	*out = v;
	return n;
bad:
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return -1;
}

static int def_eval(struct ctx *c, const char *name, int type, const char *spec)
{
	struct rule *ru = define_rule(c, name, type);
	const char *fn = spec + 5;
	size_t n = strcspn(fn, "( \t");
	char func[128];
	snprintf(func, sizeof(func), "%.*s", (int)(n < 120 ? n : 120), fn);
	const struct rules_evaldef *def = rules_eval_lookup(func);
	char **args = NULL;
	int na = def ? eval_args(fn + n, &args) : 0;
	if (def != NULL &&
	    (na < 0 || (unsigned)na < def->min_args || (unsigned)na > def->max_args)) {
		diag_error(c->d, c->file, c->line, "%s rule %s: bad arguments for eval:%s",
		           type_word(type), name, func);
		ru->skipped = true;
		for (int i = 0; i < na; i++)
			free(args[i]);
		free(args);
		return -1;
	}
	if (def == NULL) {
		ru->skipped = true;
		const char *why = rules_eval_skip_reason(func);
		note_skip(c->ps, c->file, c->line, func, why ? why : "not implemented");
		return 0;
	}
	for (size_t i = 0; i < ru->neargs; i++)
		free(ru->eargs[i]);
	free(ru->eargs);
	ru->evaldef = def;
	ru->eargs = args;
	ru->neargs = (size_t)na;
	const char *err = def->check ? def->check(ru) : NULL;
	if (err != NULL && err[0] == '~') {
		/* a form of the test this engine does not compute: skipped, not an error */
		ru->skipped = true;
		ru->evaldef = NULL;
		char full[200];
		snprintf(full, sizeof(full), "%s(%s)", func, ru->neargs ? ru->eargs[0] : "");
		note_skip(c->ps, c->file, c->line, full, err + 1);
		return 0;
	}
	if (err != NULL) {
		diag_error(c->d, c->file, c->line, "%s rule %s: eval:%s: %s", type_word(type), name,
		           func, err);
		ru->skipped = true;
		return -1;
	}
	return 0;
}

/*
 * "askdns NAME TEMPLATE [TYPE [SUBTEST]]" (AskDNS): a rule of its own,
 * run as the eval test askdns(TEMPLATE, TYPE, SUBTEST) of rules_eval_dns.c.
 */
static int def_askdns(struct ctx *c, const char *rest)
{
	char name[256], tmpl[512], type[32] = "A";
	const char *p = next_token(rest, name, sizeof(name));
	p = next_token(p, tmpl, sizeof(tmpl));
	if (*skip_ws(p))
		p = next_token(p, type, sizeof(type));
	const char *sub = skip_ws(p);
	size_t sl = strlen(sub);
	while (sl > 0 && (sub[sl - 1] == ' ' || sub[sl - 1] == '\t'))
		sl--;
	char q = memchr(sub, '\'', sl) ? '"' : '\'';
	if (name[0] == '\0' || tmpl[0] == '\0' || memchr(sub, q, sl) ||
	    memchr(tmpl, q, strlen(tmpl))) {
		diag_error(c->d, c->file, c->line,
		           "askdns: expected NAME TEMPLATE [TYPE [SUBTEST]]");
		return -1;
	}
	char spec[1400];
	snprintf(spec, sizeof(spec), "eval:askdns(%c%s%c, %c%s%c, %c%.*s%c)", q, tmpl, q, q, type,
	         q, q, (int)sl, sub, q);
	return def_eval(c, name, RULES_T_HEADER, spec);
}

/*
 * "uri_detail NAME KEY =~ /re/flags [KEY !~ /re/ ...]" (URIDetail): a rule
 * of its own, run as the eval test check_uri_detail of rules_eval_html.c
 * with four arguments a criterion: the key, the operator, the pattern and
 * its PCRE2 options in decimal. A key given twice keeps its last criterion,
 * as SpamAssassin's hash of them does.
 */
static int def_uri_detail(struct ctx *c, const char *rest)
{
	static const char *const keys[] = {"raw", "type", "cleaned", "text", "domain", "host"};
	char name[256];
	const char *p = next_token(rest, name, sizeof(name));
	char *crit[6][3] = {{NULL}};
	uint32_t copts[6] = {0};
	int rc = -1, ncrit = 0;
	if (name[0] == '\0') {
		diag_error(c->d, c->file, c->line, "uri_detail: expected NAME KEY =~ /re/ ...");
		return -1;
	}
	while (*(p = skip_ws(p)) != '\0') {
		size_t kl = 0;
		while (isalnum((unsigned char)p[kl]) || p[kl] == '_')
			kl++;
		size_t k = 0;
		while (k < 6 && (strlen(keys[k]) != kl || strncmp(keys[k], p, kl) != 0))
			k++;
		if (k == 6) {
			diag_error(c->d, c->file, c->line,
			           "uri_detail %s: unknown key '%.*s' (raw, type, cleaned, text,"
			           " domain or host)",
			           name, (int)(kl ? kl : strcspn(p, " \t")), p);
			goto out;
		}
		const char *op = skip_ws(p + kl);
		if ((op[0] != '=' && op[0] != '!') || op[1] != '~') {
			diag_error(c->d, c->file, c->line, "uri_detail %s: %s: expected =~ or !~",
			           name, keys[k]);
			goto out;
		}
		char err[160], *pat;
		uint32_t opts;
		const char *end;
		if (rules_parse_regex(skip_ws(op + 2), &pat, &opts, &end, err, sizeof(err)) < 0) {
			diag_error(c->d, c->file, c->line, "uri_detail %s: %s: %s", name, keys[k],
			           err);
			goto out;
		}
		if (end > p && !isspace((unsigned char)end[-1]) && *end != '\0') {
			diag_error(c->d, c->file, c->line,
			           "uri_detail %s: %s: text after the regex: '%s'", name, keys[k],
			           end);
			free(pat);
			goto out;
		}
		if (crit[k][0] == NULL)
			ncrit++;
		for (int j = 0; j < 3; j++)
			free(crit[k][j]);
		crit[k][0] = xalloc_strdup(keys[k]);
		crit[k][1] = xalloc_strndup(op, 2);
		crit[k][2] = pat;
		copts[k] = opts;
		p = end;
	}
	if (ncrit == 0) {
		diag_error(c->d, c->file, c->line, "uri_detail %s: no KEY =~ /re/ criterion", name);
		goto out;
	}
	struct rule *ru = define_rule(c, name, RULES_T_BODY);
	for (size_t i = 0; i < ru->neargs; i++)
		free(ru->eargs[i]);
	free(ru->eargs);
	ru->eargs = xalloc_malloc((size_t)ncrit * 4 * sizeof(char *));
	ru->neargs = 0;
	for (int k = 0; k < 6; k++) {
		if (crit[k][0] == NULL)
			continue;
		for (int j = 0; j < 3; j++) {
			ru->eargs[ru->neargs++] = crit[k][j];
			crit[k][j] = NULL;
		}
		char o[16];
		snprintf(o, sizeof(o), "%u", (unsigned)copts[k]);
		ru->eargs[ru->neargs++] = xalloc_strdup(o);
	}
	ru->evaldef = rules_eval_lookup("check_uri_detail");
	const char *err = ru->evaldef && ru->evaldef->check ? ru->evaldef->check(ru) : NULL;
	if (err != NULL) {
		diag_error(c->d, c->file, c->line, "uri_detail %s: %s", name, err);
		ru->skipped = true;
		ru->evaldef = NULL;
		goto out;
	}
	rc = 0;
out:
	for (int k = 0; k < 6; k++)
		for (int j = 0; j < 3; j++)
			free(crit[k][j]);
	return rc;
}

static int parse_header_spec(struct ctx *c, struct rule *ru, const char *spec)
{
	/* Name[:mod[:mod]] */
	char *colon = strchr(spec, ':');
	size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
	ru->hdr_name = xalloc_strndup(spec, n);
	while (colon != NULL) {
		const char *m = colon + 1;
		colon = strchr(m, ':');
		size_t mn = colon ? (size_t)(colon - m) : strlen(m);
		if (mn == 3 && strncmp(m, "raw", 3) == 0)
			ru->hdr_mods |= HM_RAW;
		else if (mn == 4 && strncmp(m, "addr", 4) == 0)
			ru->hdr_mods |= HM_ADDR;
		else if (mn == 4 && strncmp(m, "name", 4) == 0)
			ru->hdr_mods |= HM_NAME;
		else if (mn == 5 && strncmp(m, "first", 5) == 0)
			ru->hdr_mods |= HM_FIRST;
		else if (mn == 4 && strncmp(m, "last", 4) == 0)
			ru->hdr_mods |= HM_LAST;
		else if (mn == 4 && strncmp(m, "host", 4) == 0)
			ru->hdr_mods |= HM_HOST;
		else if (mn == 6 && strncmp(m, "domain", 6) == 0)
			ru->hdr_mods |= HM_DOMAIN | HM_HOST;
		else {
			diag_error(c->d, c->file, c->line,
			           "header rule %s: unknown modifier ':%.*s'", ru->name, (int)mn,
			           m);
			return -1;
		}
	}
	if (ru->hdr_name[0] == '\0') {
		diag_error(c->d, c->file, c->line, "header rule %s: missing header name", ru->name);
		return -1;
	}
	return 0;
}

static int def_header(struct ctx *c, const char *name, int type, const char *rest)
{
	if (strncmp(rest, "eval:", 5) == 0)
		return def_eval(c, name, type, rest);
	struct rule *ru = define_rule(c, name, type);
	const char *tw = type_word(type);
	if (strncmp(rest, "exists:", 7) == 0) {
		char spec[256];
		const char *after = next_token(rest + 7, spec, sizeof(spec));
		if (*after) {
			diag_error(c->d, c->file, c->line, "%s rule %s: trailing text '%s'", tw,
			           name, after);
			return -1;
		}
		ru->hdr_exists = true;
		return parse_header_spec(c, ru, spec);
	}
	char spec[256], op[8];
	const char *p = next_token(rest, spec, sizeof(spec));
	if (spec[0] == '\0') {
		diag_error(c->d, c->file, c->line, "%s rule %s: missing header name", tw, name);
		return -1;
	}
	if (parse_header_spec(c, ru, spec) < 0)
		return -1;
	/* The operator may be glued to the regex: "Subject =~/x/". */
	op[0] = p[0];
	op[1] = p[0] ? p[1] : '\0';
	op[2] = '\0';
	if (strcmp(op, "=~") == 0) {
		ru->negate = false;
	} else if (strcmp(op, "!~") == 0) {
		ru->negate = true;
	} else {
		diag_error(c->d, c->file, c->line, "%s rule %s: expected =~ or !~ after '%s'", tw,
		           name, spec);
		return -1;
	}
	p = skip_ws(p + 2);
	char err[160];
	const char *end;
	if (rules_parse_regex(p, &ru->pattern, &ru->re_options, &end, err, sizeof(err)) < 0) {
		diag_error(c->d, c->file, c->line, "%s rule %s: %s", tw, name, err);
		return -1;
	}
	if (*end == '[') {
		static const char unset[] = "[if-unset:";
		if (strncmp(end, unset, sizeof(unset) - 1) != 0) {
			diag_error(c->d, c->file, c->line, "%s rule %s: unknown option '%s'", tw,
			           name, end);
			return -1;
		}
		const char *v = skip_ws(end + sizeof(unset) - 1);
		const char *close = strrchr(v, ']');
		if (close == NULL) {
			diag_error(c->d, c->file, c->line,
			           "%s rule %s: unterminated [if-unset:", tw, name);
			return -1;
		}
		size_t vn = (size_t)(close - v);
		while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
			vn--;
		ru->if_unset = xalloc_strndup(v, vn);
		end = skip_ws(close + 1);
	}
	if (*end) {
		diag_error(c->d, c->file, c->line, "%s rule %s: trailing text '%s'", tw, name, end);
		return -1;
	}
	return 0;
}

static int def_regex(struct ctx *c, const char *name, int type, const char *rest)
{
	if (strncmp(rest, "eval:", 5) == 0)
		return def_eval(c, name, type, rest);
	struct rule *ru = define_rule(c, name, type);
	char err[160];
	const char *end;
	if (rules_parse_regex(rest, &ru->pattern, &ru->re_options, &end, err, sizeof(err)) < 0) {
		diag_error(c->d, c->file, c->line, "%s rule %s: %s", type_word(type), name, err);
		return -1;
	}
	if (*end) {
		diag_error(c->d, c->file, c->line, "%s rule %s: trailing text '%s'",
		           type_word(type), name, end);
		return -1;
	}
	return 0;
}

static int def_meta(struct ctx *c, const char *name, const char *rest)
{
	if (*rest == '\0') {
		diag_error(c->d, c->file, c->line, "meta rule %s: missing expression", name);
		return -1;
	}
	struct rule *ru = define_rule(c, name, RULES_T_META);
	ru->meta_src = xalloc_strdup(rest);
	return 0;
}

static int set_score(struct ctx *c, const char *name, const char *rest)
{
	double v[4];
	int n = 0;
	const char *p = rest;
	while (*p && n < 4) {
		char *end;
		/* SpamAssassin tolerates "(1.5)" in generated score files. */
		if (*p == '(')
			p++;
		v[n] = strtod(p, &end);
		if (end == p || !isfinite(v[n])) {
			diag_error(c->d, c->file, c->line, "score %s: bad number '%s'", name, p);
			return -1;
		}
		/* Bounded so that no sum of scores can reach infinity (see hits.h). */
		if (fabs(v[n]) > HITS_MAX_SCORE) {
			diag_error(c->d, c->file, c->line,
			           "score %s: %.*s is out of range (-%g to %g)", name,
			           (int)(end - p), p, HITS_MAX_SCORE, HITS_MAX_SCORE);
			return -1;
		}
		n++;
		p = end;
		if (*p == ')')
			p++;
		p = skip_ws(p);
	}
	if (n == 0 || *p) {
		diag_error(c->d, c->file, c->line, "score %s: expected 1 to 4 numbers", name);
		return -1;
	}
	size_t idx = rules_intern_rule(c->r, name); /* may move c->r->v */
	struct rule *ru = &c->r->v[idx];
	ru->has_score = true;
	ru->score_file = c->file;
	ru->score_line = c->line;
	/* SpamAssassin's score set for what is configured (rules_opts_t.score_set). */
	ru->score = n == 4 ? v[c->r->opts.score_set & 3] : v[0];
	return 0;
}

static int set_tflags(struct ctx *c, const char *name, const char *rest)
{
	size_t idx = rules_intern_rule(c->r, name); /* may move c->r->v */
	struct rule *ru = &c->r->v[idx];
	ru->tflags = 0;
	ru->maxhits = 0;
	char tok[64];
	const char *p = rest;
	while (*p) {
		p = next_token(p, tok, sizeof(tok));
		if (strcmp(tok, "multiple") == 0) {
			ru->tflags |= TF_MULTIPLE;
		} else if (strcmp(tok, "nice") == 0) {
			ru->tflags |= TF_NICE;
		} else if (strcmp(tok, "net") == 0) {
			ru->tflags |= TF_NET;
		} else if (strcmp(tok, "learn") == 0) {
			ru->tflags |= TF_LEARN;
		} else if (strcmp(tok, "domains_only") == 0) {
			ru->tflags |= TF_DOMAINS_ONLY;
		} else if (strcmp(tok, "ips_only") == 0) {
			ru->tflags |= TF_IPS_ONLY;
		} else if (strcmp(tok, "notrim") == 0) {
			ru->tflags |= TF_NOTRIM;
		} else if (strcmp(tok, "nosubject") == 0) {
			ru->tflags |= TF_NOSUBJECT;
		} else if (strcmp(tok, "a") == 0) {
			ru->tflags |= TF_A;
		} else if (strcmp(tok, "ns") == 0) {
			ru->tflags |= TF_NS;
		} else if (strncmp(tok, "maxhits=", 8) == 0) {
			char *end;
			long v = strtol(tok + 8, &end, 10);
			if (*end || v < 1) {
				diag_error(c->d, c->file, c->line, "tflags %s: bad maxhits '%s'",
				           name, tok + 8);
				return -1;
			}
			ru->maxhits = (unsigned)v;
		}
		/* userconf, noautolearn, publish, range=... do not change matching. */
	}
	return 0;
}

static int do_include(struct ctx *c, const char *rest);

/* "redirector_pattern /re/flags": group 1 is the link a redirector carries (rules_uri.c). */
static int def_redirector(struct ctx *c, const char *rest)
{
	char err[160], *pat;
	uint32_t opts;
	const char *end;
	if (rules_parse_regex(rest, &pat, &opts, &end, err, sizeof(err)) < 0) {
		diag_error(c->d, c->file, c->line, "redirector_pattern: %s", err);
		return -1;
	}
	if (*end) {
		diag_error(c->d, c->file, c->line, "redirector_pattern: trailing text '%s'", end);
		free(pat);
		return -1;
	}
	rules_t *r = c->r;
	r->redir = xalloc_realloc(r->redir, (r->nredir + 1) * sizeof(*r->redir));
	r->redir[r->nredir++] = (struct rules_redirector){
	    .pattern = pat, .options = opts, .file = c->file, .line = c->line};
	return 0;
}

/*
 * SpamAssassin's Shortcircuit plugin. "shortcircuit NAME on|off|spam|ham":
 * spam and ham also give the rule priority -200 when it has none (as
 * SpamAssassin 4 does), ham the nice flag; "shortcircuit_spam_score N" and
 * "shortcircuit_ham_score N" the points of those types. The total-score
 * forms (shortcircuit_min_ham_score, _max_spam_score) depend on the order
 * hits arrive in, which Sift's batched matching does not have: skipped.
 */
static int def_shortcircuit(struct pstate *ps, struct ctx *c, const char *dir, const char *rest)
{
	char name[256], type[16], extra[8];
	if (strcmp(dir, "shortcircuit_spam_score") == 0 ||
	    strcmp(dir, "shortcircuit_ham_score") == 0) {
		char *end;
		double v = strtod(rest, &end);
		if (end == rest || *skip_ws(end) || !isfinite(v) || fabs(v) > HITS_MAX_SCORE) {
			diag_error(c->d, c->file, c->line, "%s: bad score '%s'", dir, rest);
			return -1;
		}
		*(dir[13] == 's' ? &c->r->sc_spam_score : &c->r->sc_ham_score) = v;
		return 0;
	}
	if (strcmp(dir, "shortcircuit") != 0) {
		char key[96];
		snprintf(key, sizeof(key), "dir %.80s", dir);
		warn_once(ps, c->d, c->file, c->line, key,
		          "skipped directive %s (a cut on the running total)", dir);
		return 0;
	}
	rest = next_token(rest, name, sizeof(name));
	rest = next_token(rest, type, sizeof(type));
	next_token(rest, extra, sizeof(extra));
	if (!valid_rule_name(name)) {
		diag_error(c->d, c->file, c->line, "shortcircuit: bad rule name '%s'", name);
		return -1;
	}
	static const char *const types[] = {"off", "on", "spam", "ham"};
	int t = -1;
	for (int k = 0; k < 4; k++)
		if (strcmp(type, types[k]) == 0)
			t = k;
	if (t < 0 || extra[0] != '\0') {
		diag_error(c->d, c->file, c->line,
		           "shortcircuit %s: want one of on, off, spam, ham, not '%s'", name, type);
		return -1;
	}
	size_t idx = rules_intern_rule(c->r, name); /* may move c->r->v */
	struct rule *ru = &c->r->v[idx];
	ru->sc = (uint8_t)t; /* the RULES_SC_* order */
	if (t == RULES_SC_SPAM || t == RULES_SC_HAM) {
		if (ru->priority == 0)
			ru->priority = -200;
		if (t == RULES_SC_HAM)
			ru->tflags |= TF_NICE;
	}
	return 0;
}

/*
 * What an eval family's directive reader answered: NULL (taken), "~why"
 * (skipped: warned once per directive) or an error for file:line.
 */
static int family_directive_done(struct pstate *ps, struct ctx *c, const char *dir, const char *err)
{
	if (err == NULL)
		return 0;
	if (err[0] != '~') {
		diag_error(c->d, c->file, c->line, "%s: %s", dir, err);
		return -1;
	}
	char key[96];
	snprintf(key, sizeof(key), "dir %.80s", dir);
	warn_once(ps, c->d, c->file, c->line, key, "skipped directive %s (%s)", dir, err + 1);
	return 0;
}

static int directive(struct ctx *c, char *line)
{
	struct pstate *ps = c->ps;
	char dir[64], name[256];
	const char *rest = next_token(line, dir, sizeof(dir));

	/* Conditionals are tracked even inside inactive blocks, for nesting. */
	if (strcmp(dir, "if") == 0 || strcmp(dir, "ifplugin") == 0) {
		if (ps->ncond == RULES_MAX_NESTING) {
			diag_error(c->d, c->file, c->line, "if blocks nested too deeply");
			return -1;
		}
		bool parent = cond_active(ps);
		bool v = false;
		if (parent) {
			if (dir[2] == 'p') {
				size_t pn = strcspn(rest, " \t");
				v = c->r->opts.all_plugins || in_list(provided_plugins, rest, pn) ||
				    (c->r->opts.auth_plugins && in_list(auth_plugins, rest, pn));
			} else {
				struct ifx x = {.p = rest,
				                .ps = ps,
				                .d = c->d,
				                .file = c->file,
				                .line = c->line,
				                .all_plugins = c->r->opts.all_plugins,
				                .auth_plugins = c->r->opts.auth_plugins};
				v = ifx_or(&x) != 0;
				x.p = skip_ws(x.p);
				if (x.error || *x.p) {
					diag_error(c->d, c->file, c->line,
					           "cannot parse if expression '%s'", rest);
					return -1;
				}
			}
		}
		ps->cond[ps->ncond++] = (struct cond){.active = parent && v, .parent = parent};
		return 0;
	}
	if (strcmp(dir, "else") == 0) {
		if (ps->ncond == 0 || ps->cond[ps->ncond - 1].seen_else) {
			diag_error(c->d, c->file, c->line, "else without if");
			return -1;
		}
		struct cond *cd = &ps->cond[ps->ncond - 1];
		cd->seen_else = true;
		cd->active = cd->parent && !cd->active;
		return 0;
	}
	if (strcmp(dir, "endif") == 0) {
		if (ps->ncond == 0) {
			diag_error(c->d, c->file, c->line, "endif without if");
			return -1;
		}
		ps->ncond--;
		return 0;
	}
	static const struct {
		const char *word;
		int type;
	} types[] = {{"header", RULES_T_HEADER},   {"body", RULES_T_BODY},
	             {"rawbody", RULES_T_RAWBODY}, {"uri", RULES_T_URI},
	             {"full", RULES_T_FULL},       {"mimeheader", RULES_T_MIMEHEADER},
	             {"meta", RULES_T_META}};
	if (!cond_active(ps)) {
		/*
		 * SpamAssassin's score files score rules that live in ifplugin
		 * blocks of plugins not loaded here; remembering those names
		 * keeps lint from calling their scores undefined.
		 */
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strcmp(dir, types[i].word) == 0) {
				next_token(rest, name, sizeof(name));
				if (valid_rule_name(name)) {
					/* may move c->r->v */
					size_t idx = rules_intern_rule(c->r, name);
					c->r->v[idx].seen_inactive = true;
				}
				break;
			}
		return 0;
	}

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(dir, types[i].word) != 0)
			continue;
		rest = next_token(rest, name, sizeof(name));
		if (!valid_rule_name(name)) {
			diag_error(c->d, c->file, c->line, "%s: bad rule name '%s'", dir, name);
			return -1;
		}
		int t = types[i].type;
		int rc = t == RULES_T_META ? def_meta(c, name, rest)
		         : t == RULES_T_HEADER || t == RULES_T_MIMEHEADER
		             ? def_header(c, name, t, rest)
		             : def_regex(c, name, t, rest);
		long idx = rc < 0 ? rules_lookup(c->r, name) : -1;
		if (idx >= 0 && c->r->v[idx].defined && c->r->v[idx].line == c->line &&
		    c->r->v[idx].file == c->file)
			/*
			 * Half a definition: the load fails anyway, but the checks
			 * after parsing (regexes, metas) still run to report every
			 * error at once, and must not trip over it.
			 */
			c->r->v[idx].skipped = true;
		return rc;
	}
	if (strcmp(dir, "score") == 0 || strcmp(dir, "describe") == 0 ||
	    strcmp(dir, "tflags") == 0 || strcmp(dir, "priority") == 0) {
		rest = next_token(rest, name, sizeof(name));
		if (!valid_rule_name(name)) {
			diag_error(c->d, c->file, c->line, "%s: bad rule name '%s'", dir, name);
			return -1;
		}
		if (dir[0] == 's')
			return set_score(c, name, rest);
		if (dir[0] == 't')
			return set_tflags(c, name, rest);
		size_t idx = rules_intern_rule(c->r, name); /* may move c->r->v */
		struct rule *ru = &c->r->v[idx];
		if (dir[0] == 'd') {
			free(ru->desc);
			ru->desc = xalloc_strdup(rest);
			return 0;
		}
		char *end;
		long v = strtol(rest, &end, 10);
		if (end == rest || *skip_ws(end)) {
			diag_error(c->d, c->file, c->line, "priority %s: bad number '%s'", name,
			           rest);
			return -1;
		}
		ru->priority = (int)v;
		return 0;
	}
	if (strncmp(dir, "replace_", 8) == 0) {
		const char *what = dir + 8;
		if (strcmp(what, "start") == 0 || strcmp(what, "end") == 0) {
			if (*rest == '\0') {
				diag_error(c->d, c->file, c->line, "%s: missing value", dir);
				return -1;
			}
			char **slot = what[0] == 's' ? &ps->start : &ps->end;
			free(*slot);
			*slot = xalloc_strdup(rest);
			return 0;
		}
		if (strcmp(what, "rules") == 0) {
			while (*rest) {
				rest = next_token(rest, name, sizeof(name));
				if (ps->nreplace == ps->capreplace) {
					ps->capreplace = ps->capreplace ? ps->capreplace * 2 : 64;
					ps->replace_rules = xalloc_realloc(
					    ps->replace_rules, ps->capreplace * sizeof(char *));
				}
				ps->replace_rules[ps->nreplace++] = xalloc_strdup(name);
			}
			return 0;
		}
		struct kvlist *l = strcmp(what, "tag") == 0     ? &ps->tags
		                   : strcmp(what, "pre") == 0   ? &ps->pre
		                   : strcmp(what, "post") == 0  ? &ps->post
		                   : strcmp(what, "inter") == 0 ? &ps->inter
		                                                : NULL;
		if (l == NULL) {
			diag_error(c->d, c->file, c->line, "unknown directive '%s'", dir);
			return -1;
		}
		rest = next_token(rest, name, sizeof(name));
		if (name[0] == '\0') {
			diag_error(c->d, c->file, c->line, "%s: missing tag name", dir);
			return -1;
		}
		kv_set(l, name, rest);
		return 0;
	}
	if (strcmp(dir, "include") == 0)
		return do_include(c, rest);
	if (strcmp(dir, "lang") == 0 || strcmp(dir, "require_version") == 0 ||
	    strcmp(dir, "test") == 0)
		return 0; /* translations, version pins and self-tests change nothing here */
	char key[96];
	if (strcmp(dir, "loadplugin") == 0 || strcmp(dir, "tryplugin") == 0) {
		char plugin[200];
		next_token(rest, plugin, sizeof(plugin));
		snprintf(key, sizeof(key), "plugin %.80s", plugin);
		warn_once(ps, c->d, c->file, c->line, key, "skipped plugin directive loadplugin %s",
		          plugin);
		return 0;
	}
	if (strncmp(dir, "shortcircuit", 12) == 0)
		return def_shortcircuit(ps, c, dir, rest);
	if (strcmp(dir, "redirector_pattern") == 0)
		return def_redirector(c, rest);
	if (strcmp(dir, "ok_locales") == 0) {
		free(c->r->ok_locales); /* the last line wins, as in SpamAssassin */
		c->r->ok_locales = xalloc_strdup(rest);
		return 0;
	}
	if (strcmp(dir, "ok_languages") == 0 || strcmp(dir, "inactive_languages") == 0 ||
	    strncmp(dir, "textcat_", 8) == 0) {
		int rc = rules_textcat_directive(c->r, dir, rest, c->d, c->file, c->line);
		if (rc != 0)
			return rc < 0 ? -1 : 0;
	}
	const char *wlbl_err;
	if (rules_wlbl_directive(c->r, dir, rest, &wlbl_err)) {
		if (wlbl_err == NULL)
			return 0;
		diag_error(c->d, c->file, c->line, "%s: %s", dir, wlbl_err);
		return -1;
	}
	if (strcmp(dir, "askdns") == 0)
		return def_askdns(c, rest);
	if (strcmp(dir, "uri_detail") == 0)
		return def_uri_detail(c, rest);
	if (strncmp(dir, "uri", 3) == 0 || strncmp(dir, "clear_uri", 9) == 0 ||
	    strncmp(dir, "dns_block_", 10) == 0 || strcmp(dir, "rbl_headers") == 0 ||
	    strcmp(dir, "hashbl_ignore") == 0) {
		const char *err = NULL;
		if (rules_uridnsbl_directive(c->r, dir, rest, &err))
			return family_directive_done(ps, c, dir, err);
	}
	if (strncmp(dir, "freemail_", 9) == 0) {
		const char *err = rules_freemail_directive(c->r, dir, rest);
		if (err != NULL && err[0] != '~') {
			diag_error(c->d, c->file, c->line, "%s: %s", dir, err);
			return -1;
		}
		if (err == NULL)
			return 0;
	}
	if (strcmp(dir, "url_shortener") == 0 || strcmp(dir, "url_shortener_get") == 0 ||
	    strcmp(dir, "clear_url_shortener") == 0)
		return family_directive_done(ps, c, dir, rules_shorturl_directive(c->r, dir, rest));
	if (strncmp(dir, "fns_", 4) == 0)
		return family_directive_done(ps, c, dir, rules_fromname_directive(c->r, dir, rest));
	snprintf(key, sizeof(key), "dir %.80s", dir);
	warn_once(ps, c->d, c->file, c->line, key, "skipped directive %s", dir);
	return 0;
}

/* Cuts a SpamAssassin comment: '#' not preceded by a backslash. */
static void strip_comment(char *s)
{
	for (char *p = s; *p; p++)
		if (*p == '#' && (p == s || p[-1] != '\\')) {
			*p = '\0';
			return;
		}
}

int rules_parse_text(rules_t *r, void *state, const char *name, const char *text, diag_t *d)
{
	struct pstate *ps = state;
	struct ctx c = {.r = r, .ps = ps, .d = d, .file = rules_intern_file(r, name)};
	size_t before = diag_errors(d);
	int ncond_at_start = ps->ncond;
	char *buf = NULL;
	size_t cap = 0;
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		c.line++;
		if (len + 1 > cap) {
			cap = len + 1 > 256 ? len + 1 : 256;
			buf = xalloc_realloc(buf, cap);
		}
		memcpy(buf, p, len);
		buf[len] = '\0';
		p += len;
		if (*p == '\n')
			p++;
		strip_comment(buf);
		char *s = buf;
		size_t n = strlen(s);
		while (n > 0 && isspace((unsigned char)s[n - 1]))
			s[--n] = '\0';
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			continue;
		directive(&c, s);
	}
	free(buf);
	if (ps->ncond > ncond_at_start) {
		diag_error(d, c.file, c.line, "%d if block(s) not closed by endif",
		           ps->ncond - ncond_at_start);
		ps->ncond = ncond_at_start;
	}
	return diag_errors(d) > before ? -1 : 0;
}

static char *read_file(const char *path, diag_t *d)
{
	FILE *fp = fopen(path, "r");
	if (fp == NULL) {
		diag_error(d, path, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	char *text = NULL;
	size_t len = 0, cap = 0, n;
	char chunk[16384];
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			text = xalloc_realloc(text, cap);
		}
		memcpy(text + len, chunk, n);
		len += n;
		if (len > RULES_MAX_FILE_BYTES) {
			diag_error(d, path, 0, "rule file larger than %u bytes",
			           RULES_MAX_FILE_BYTES);
			fclose(fp);
			free(text);
			return NULL;
		}
	}
	int err = ferror(fp);
	fclose(fp);
	if (err) {
		diag_error(d, path, 0, "read error");
		free(text);
		return NULL;
	}
	if (text == NULL)
		text = xalloc_strdup("");
	else
		text[len] = '\0';
	/* A NUL ends the text early; rule files are text, so say so. */
	if (strlen(text) != len)
		diag_warn(d, path, 0, "NUL byte in rule file: the rest is ignored");
	return text;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int rules_parse_file(rules_t *r, void *state, const char *path, diag_t *d)
{
	struct pstate *ps = state;
	struct stat st;
	if (stat(path, &st) < 0) {
		diag_error(d, path, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		DIR *dir = opendir(path);
		if (dir == NULL) {
			diag_error(d, path, 0, "cannot open directory: %s", strerror(errno));
			return -1;
		}
		char **names = NULL;
		size_t n = 0, cap = 0;
		struct dirent *de;
		while ((de = readdir(dir)) != NULL) {
			size_t l = strlen(de->d_name);
			if (l < 4 || strcmp(de->d_name + l - 3, ".cf") != 0 || de->d_name[0] == '.')
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				names = xalloc_realloc(names, cap * sizeof(char *));
			}
			names[n++] = xalloc_strdup(de->d_name);
		}
		closedir(dir);
		if (n > 1) /* not with names NULL: qsort's array must be valid even for 0 */
			qsort(names, n, sizeof(char *), cmp_str);
		int rc = 0;
		for (size_t i = 0; i < n; i++) {
			size_t pl = strlen(path) + strlen(names[i]) + 2;
			char *full = xalloc_realloc(NULL, pl);
			snprintf(full, pl, "%s/%s", path, names[i]);
			if (rules_parse_file(r, ps, full, d) < 0)
				rc = -1;
			free(full);
			free(names[i]);
		}
		free(names);
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		/* a FIFO or device would block or never end */
		diag_error(d, path, 0, "not a regular file or directory");
		return -1;
	}
	char *text = read_file(path, d);
	if (text == NULL)
		return -1;
	int rc = rules_parse_text(r, ps, path, text, d);
	free(text);
	return rc;
}

static int do_include(struct ctx *c, const char *rest)
{
	if (*rest == '\0') {
		diag_error(c->d, c->file, c->line, "include: missing file name");
		return -1;
	}
	if (c->ps->depth >= RULES_MAX_INCLUDE_DEPTH) {
		diag_error(c->d, c->file, c->line, "include nested more than %d deep",
		           RULES_MAX_INCLUDE_DEPTH);
		return -1;
	}
	char *path;
	const char *slash = strrchr(c->file, '/');
	if (rest[0] == '/' || slash == NULL) {
		path = xalloc_strdup(rest);
	} else {
		size_t n = (size_t)(slash - c->file) + strlen(rest) + 2;
		path = xalloc_realloc(NULL, n);
		snprintf(path, n, "%.*s/%s", (int)(slash - c->file), c->file, rest);
	}
	c->ps->depth++;
	unsigned line = c->line;
	const char *file = c->file;
	int rc = rules_parse_file(c->r, c->ps, path, c->d);
	c->ps->depth--;
	c->line = line;
	c->file = file;
	if (rc < 0)
		diag_error(c->d, c->file, c->line, "in file included from here");
	free(path);
	return rc;
}

/* ---------------------------------------------------------------- ReplaceTags */

struct strbuf {
	char *s;
	size_t n, cap;
};

static void sb_add(struct strbuf *b, const char *p, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->s = xalloc_realloc(b->s, b->cap);
	}
	memcpy(b->s + b->n, p, n);
	b->n += n;
	b->s[b->n] = '\0';
}

/* Finds "<word ARG>" (start/end strings), removes it, returns ARG (malloc'd). */
static char *take_modifier(struct pstate *ps, char **re, const char *word)
{
	/* one search for the whole opening ("<pre "), so this stays linear */
	size_t sl = strlen(ps->start), wl = strlen(word);
	char *needle = xalloc_realloc(NULL, sl + wl + 2);
	snprintf(needle, sl + wl + 2, "%s%s ", ps->start, word);
	char *p = strstr(*re, needle);
	free(needle);
	if (p == NULL)
		return NULL;
	char *arg = p + sl + wl + 1;
	char *e = *arg ? strstr(arg + 1, ps->end) : NULL;
	if (e == NULL)
		return NULL;
	char *val = xalloc_strndup(arg, (size_t)(e - arg));
	memmove(p, e + strlen(ps->end), strlen(e + strlen(ps->end)) + 1);
	return val;
}

/* Is the piece [s, s+n) exactly start + NAME + end? Then NAME's length. */
static bool tag_name(struct pstate *ps, const char *s, size_t n, size_t *name_len)
{
	size_t sl = strlen(ps->start), el = strlen(ps->end);
	if (n < sl + el + 1 || strncmp(s, ps->start, sl) != 0 ||
	    strncmp(s + n - el, ps->end, el) != 0)
		return false;
	*name_len = n - sl - el;
	return true;
}

/*
 * One pattern through SpamAssassin's ReplaceTags algorithm: the pattern
 * is split into text and "<tag>" pieces; <pre X>/<post X> text goes
 * before/after every tag, <inter X> into each empty piece (between two
 * adjacent tags, or before a leading tag); tags are then replaced, for up
 * to six passes while replacements bring new tags.
 */
static char *replace_tags(struct pstate *ps, const char *pattern)
{
	char *re = xalloc_strdup(pattern);
	for (int pass = 0; pass < RULES_REPLACE_PASSES; pass++) {
		char *pre_name = take_modifier(ps, &re, "pre");
		char *post_name = take_modifier(ps, &re, "post");
		char *inter_name = take_modifier(ps, &re, "inter");
		const char *pre = pre_name ? kv_get(&ps->pre, pre_name, strlen(pre_name)) : NULL;
		const char *post =
		    post_name ? kv_get(&ps->post, post_name, strlen(post_name)) : NULL;
		const char *inter =
		    inter_name ? kv_get(&ps->inter, inter_name, strlen(inter_name)) : NULL;
		free(pre_name);
		free(post_name);
		free(inter_name);

		/* Split like Perl's split(/(<[^<>]+>)/): text, tag, text, ... */
		struct strbuf out = {0};
		bool again = false;
		const char *p = re;
		bool first = true;
		/* Checked within the pass too: one pass multiplies the length by up
		 * to a tag value's length, and several passes compound that. */
		while (*p && out.n <= RULES_MAX_PATTERN_BYTES) {
			const char *t = p;
			for (; *t; t++) {
				if (*t != '<')
					continue;
				size_t k = 1;
				while (t[k] && t[k] != '<' && t[k] != '>')
					k++;
				if (t[k] == '>' && k > 1)
					break;
			}
			/* text piece [p, t) */
			if (t == p && first && inter)
				sb_add(&out, inter, strlen(inter));
			else if (t > p)
				sb_add(&out, p, (size_t)(t - p));
			first = false;
			if (*t == '\0')
				break;
			size_t tl = strcspn(t, ">") + 1;
			/* tag piece [t, t+tl) */
			if (pre)
				sb_add(&out, pre, strlen(pre));
			size_t name_len;
			const char *rep = NULL;
			if (tag_name(ps, t, tl, &name_len))
				rep = kv_get(&ps->tags, t + strlen(ps->start), name_len);
			if (rep != NULL && *rep) {
				sb_add(&out, rep, strlen(rep));
				const char *q = strchr(rep, '<');
				if (q && strchr(q, '>'))
					again = true;
			} else {
				sb_add(&out, t, tl);
			}
			if (post)
				sb_add(&out, post, strlen(post));
			p = t + tl;
			/* An empty text piece between this tag and a following one. */
			if (inter && *p == '<') {
				size_t k = 1;
				while (p[k] && p[k] != '<' && p[k] != '>')
					k++;
				if (p[k] == '>' && k > 1)
					sb_add(&out, inter, strlen(inter));
			}
		}
		free(re);
		re = out.s ? out.s : xalloc_strdup("");
		if (!again || out.n > RULES_MAX_PATTERN_BYTES)
			break;
	}
	return re;
}

int rules_parse_end(rules_t *r, void *state, diag_t *d)
{
	struct pstate *ps = state;
	int rc = 0;
	for (size_t i = 0; i < ps->nreplace; i++) {
		long idx = rules_lookup(r, ps->replace_rules[i]);
		if (idx < 0)
			continue;
		struct rule *ru = &r->v[idx];
		if (!ru->defined || ru->skipped || ru->pattern == NULL)
			continue;
		char *np = replace_tags(ps, ru->pattern);
		free(ru->pattern);
		ru->pattern = np;
		if (strlen(np) > RULES_MAX_PATTERN_BYTES) {
			diag_error(d, ru->file, ru->line,
			           "%s rule %s: pattern longer than %u bytes after tag replacement",
			           rules_type_name(ru->type), ru->name, RULES_MAX_PATTERN_BYTES);
			rc = -1;
		}
	}
	warn_skips(ps, d);
	for (size_t i = 0; i < ps->nwarned; i++)
		free(ps->warned[i]);
	free(ps->warned);
	for (size_t i = 0; i < ps->nreplace; i++)
		free(ps->replace_rules[i]);
	free(ps->replace_rules);
	kv_free(&ps->tags);
	kv_free(&ps->pre);
	kv_free(&ps->post);
	kv_free(&ps->inter);
	free(ps->start);
	free(ps->end);
	free(ps);
	return rc;
}

/* ---------------------------------------------------------------- meta expressions */

struct mparse {
	rules_t *r;
	const char *p;
	struct meta_op *prog;
	size_t n, cap;
	double *nums;
	size_t nnums, numcap;
	const char *err;
	size_t self;
	diag_t *d;
};

static void emit(struct mparse *m, enum meta_opcode op, double num, size_t rule)
{
	if (m->n + 1 >= RULES_META_OPS_MAX || rule > UINT32_MAX) {
		if (!m->err)
			m->err = "expression too long";
		return;
	}
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 16;
		m->prog = xalloc_realloc(m->prog, m->cap * sizeof(*m->prog));
	}
	uint32_t arg = (uint32_t)rule;
	if (op == MOP_NUM) {
		if (m->nnums == m->numcap) {
			m->numcap = m->numcap ? m->numcap * 2 : 4;
			m->nums = xalloc_realloc(m->nums, m->numcap * sizeof(*m->nums));
		}
		arg = (uint32_t)m->nnums;
		m->nums[m->nnums++] = num;
	}
	m->prog[m->n++] = (struct meta_op){.op = op, .arg = arg};
}

static void mp_expr(struct mparse *m, int min_prec);

static void mp_primary(struct mparse *m)
{
	m->p = skip_ws(m->p);
	if (m->err)
		return;
	if (*m->p == '(') {
		m->p++;
		mp_expr(m, 0);
		m->p = skip_ws(m->p);
		if (*m->p != ')') {
			if (!m->err)
				m->err = "missing ')'";
			return;
		}
		m->p++;
		return;
	}
	if (*m->p == '!') {
		m->p++;
		mp_primary(m);
		emit(m, MOP_NOT, 0, 0);
		return;
	}
	if (*m->p == '-') {
		m->p++;
		mp_primary(m);
		emit(m, MOP_NEG, 0, 0);
		return;
	}
	if (isdigit((unsigned char)*m->p) || *m->p == '.') {
		char *end;
		double v = strtod(m->p, &end);
		m->p = end;
		emit(m, MOP_NUM, v, 0);
		return;
	}
	if (isalpha((unsigned char)*m->p) || *m->p == '_') {
		const char *s = m->p;
		while (isalnum((unsigned char)*m->p) || *m->p == '_')
			m->p++;
		char name[256];
		size_t n = (size_t)(m->p - s);
		if (n >= sizeof(name)) {
			m->err = "rule name too long";
			return;
		}
		memcpy(name, s, n);
		name[n] = '\0';
		size_t idx = rules_intern_rule(m->r, name);
		emit(m, MOP_RULE, 0, idx);
		return;
	}
	m->err = *m->p ? "unexpected character" : "unexpected end of expression";
}

static int binop(const char *p, enum meta_opcode *op, int *prec, size_t *len)
{
	static const struct {
		const char *s;
		enum meta_opcode op;
		int prec;
	} ops[] = {{"||", MOP_OR, 1}, {"&&", MOP_AND, 2}, {"==", MOP_EQ, 3}, {"!=", MOP_NE, 3},
	           {">=", MOP_GE, 4}, {"<=", MOP_LE, 4},  {">", MOP_GT, 4},  {"<", MOP_LT, 4},
	           {"+", MOP_ADD, 5}, {"-", MOP_SUB, 5},  {"*", MOP_MUL, 6}, {"/", MOP_DIV, 6}};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		size_t l = strlen(ops[i].s);
		if (strncmp(p, ops[i].s, l) == 0) {
			*op = ops[i].op;
			*prec = ops[i].prec;
			*len = l;
			return 1;
		}
	}
	return 0;
}

/* Precedence climbing; Perl's precedence for the operators metas use. */
static void mp_expr(struct mparse *m, int min_prec)
{
	mp_primary(m);
	for (;;) {
		if (m->err)
			return;
		m->p = skip_ws(m->p);
		enum meta_opcode op;
		int prec;
		size_t len;
		if (!binop(m->p, &op, &prec, &len) || prec <= min_prec - 1 || prec < min_prec)
			return;
		m->p += len;
		mp_expr(m, prec + 1);
		emit(m, op, 0, 0);
	}
}

int rules_meta_compile(rules_t *r, struct rule *ru_in, diag_t *d)
{
	size_t self = (size_t)(ru_in - r->v);
	struct mparse m = {.r = r, .p = ru_in->meta_src, .self = self, .d = d};
	mp_expr(&m, 0);
	m.p = skip_ws(m.p);
	struct rule *ru = &r->v[self]; /* r->v may have moved */
	if (!m.err && *m.p)
		m.err = "unexpected text";
	if (m.err) {
		diag_error(d, ru->file, ru->line, "meta rule %s: %s at '%.20s'", ru->name, m.err,
		           m.p);
		free(m.prog);
		free(m.nums);
		return -1;
	}
	ru->prog = m.prog;
	ru->nprog = m.n;
	ru->nums = m.nums;
	/*
	 * In postfix form each op ends the subexpression rooted at it, so each
	 * has one parent: an op's jump is that parent when it is an && or ||
	 * and the subexpression is its left operand (the right one starts just
	 * after). The stack the evaluators use is bounded; deeper nesting is an
	 * error here rather than a meta that silently never hits.
	 */
	uint32_t start[RULES_META_STACK];
	size_t sp = 0;
	for (size_t k = 0; k < m.n; k++) {
		enum meta_opcode op = m.prog[k].op;
		m.prog[k].jump = 0;
		if (op == MOP_NUM || op == MOP_RULE) {
			if (sp == RULES_META_STACK) {
				diag_error(d, ru->file, ru->line,
				           "meta rule %s: nested too deeply (more than %d operands "
				           "pending)",
				           ru->name, (int)RULES_META_STACK);
				free(ru->prog);
				free(ru->nums);
				ru->prog = NULL;
				ru->nums = NULL;
				ru->nprog = 0;
				return -1;
			}
			start[sp++] = (uint32_t)k;
		} else if (op != MOP_NOT && op != MOP_NEG && sp >= 2) {
			uint32_t right = start[--sp];
			if ((op == MOP_AND || op == MOP_OR) && right > 0)
				m.prog[right - 1].jump = (uint32_t)k;
		}
	}
	return 0;
}
