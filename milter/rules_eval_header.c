/*
 * rules_eval_header.c - SpamAssassin's HeaderEval tests in C: Message-ID
 * forms, Date against Received, recipient lists, Subject shapes, counts of
 * fields and illegal bytes, ratware marks, forged webmail relays and
 * far-away charsets. Behaviour follows SpamAssassin 4.0's plugin
 * (Mail::SpamAssassin::Plugin::HeaderEval), written anew for Sift.
 */
#include <ctype.h>
#include <math.h>

#include "rules_int.h"

static const char *hget(struct rules_evalenv *e, const char *name)
{
	const char *v = rules_eval_header(e, name);
	return v ? v : "";
}

/* SpamAssassin's MESSAGEID: the four fields that may carry the real one. */
static const char *message_ids(struct rules_evalenv *e)
{
	static const char *const names[] = {"X-Message-Id", "Resent-Message-Id",
	                                    "X-Original-Message-ID", "Message-Id"};
	abuf_t b;
	abuf_init(&b, e->a, 128);
	for (size_t i = 0; i < 4; i++) {
		const char *v;
		for (size_t pos = 0; (v = msg_header_next(e->m, names[i], &pos)) != NULL;) {
			while (isspace((unsigned char)*v))
				v++;
			if (*v == '\0')
				continue;
			abuf_puts(&b, v);
			abuf_append(&b, "\n", 1);
		}
	}
	abuf_append(&b, "", 1);
	return b.data;
}

static bool parse_number(const char *s, double *v)
{
	char *end;
	*v = strtod(s, &end);
	return end != s && *end == '\0' && isfinite(*v);
}

/* Arguments that are numbers or 'undef'. */
static const char *check_range_args(const struct rule *ru)
{
	for (size_t i = 0; i < ru->neargs; i++) {
		double v;
		if (strcmp(ru->eargs[i], "undef") != 0 && !parse_number(ru->eargs[i], &v))
			return "expected numbers or undef";
	}
	return NULL;
}

/* v within ru's arguments 0 and 1 (each a bound unless "undef"), in units of unit. */
static bool in_range(double v, const struct rule *ru, double unit)
{
	return (strcmp(ru->eargs[0], "undef") == 0 || v >= ru->eargn[0] * unit) &&
	       (strcmp(ru->eargs[1], "undef") == 0 || v < ru->eargn[1] * unit);
}

/* ---------------------------------------------------------------- Outlook Message-ID */

/*
 * Outlook Express built its Message-ID from the sending time: the second
 * hex group tracks Date (or, failing that, the first Received date). A
 * token too far from both is a forgery.
 */
static long outlook_message_id(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const char *id = message_ids(e);
	static const char hex[] = "0123456789abcdef";
	if (id[0] != '<')
		return 0;
	const char *p = id + 1;
	for (int i = 0; i < 12; i++)
		if (p[i] == '\0' || strchr(hex, p[i]) == NULL)
			return 0;
	for (int g = 0; g < 2; g++) {
		const char *q = p + 12 + g * 9;
		if (q[0] != '$')
			return 0;
		for (int i = 1; i <= 8; i++)
			if (q[i] == '\0' || strchr(hex, q[i]) == NULL)
				return 0;
	}
	if (p[30] != '@')
		return 0;
	char tok[9];
	memcpy(tok, p + 4, 8);
	tok[8] = '\0';
	double timetoken = (double)strtoul(tok, NULL, 16);
	const double x = 0.0023283064365387, y = 27111902.8329849, fudge = 250;
	int64_t t = 0;
	if (!rules_eval_parse_date(hget(e, "Date"), &t))
		t = 0;
	double expected = floor((double)t * x + y);
	if (fabs(timetoken - expected) < fudge)
		return 0;
	/* the date of the newest Received field */
	static struct rules_eval_re rcvd_date = {
	    .pattern = "(\\s.?\\d+ \\S\\S\\S \\d+ \\d+:\\d+:\\d+ \\S+).*?$"};
	const char *rc = hget(e, "Received");
	const char *d = rules_eval_re_group(&rcvd_date, rc, strlen(rc), e->a);
	if (d == NULL || !rules_eval_parse_date(d, &t))
		t = 0;
	expected = floor((double)t * x + y);
	return fabs(timetoken - expected) >= fudge;
}

/* ---------------------------------------------------------------- Date vs Received */

struct datediff {
	bool done;
	double diff; /* seconds, Date minus the nearest Received date */
};

static bool received_date(arena_t *a, const char *line, int64_t *t)
{
	static struct rules_eval_re re = {.pattern =
	                                      "(\\s.?\\d+ \\S\\S\\S \\d+ \\d+:\\d+:\\d+ \\S+)"};
	const char *d = rules_eval_re_group(&re, line, strlen(line), a);
	return d != NULL && rules_eval_parse_date(d, t);
}

static double date_diff(struct rules_evalenv *e)
{
	int64_t date = 0;
	bool have = false;
	static const char *const fields[] = {"Resent-Date", "Date"};
	for (size_t f = 0; f < 2 && !have; f++) {
		const char *v;
		for (size_t pos = 0; !have && (v = msg_header_next(e->m, fields[f], &pos)) != NULL;)
			if (*v)
				have = rules_eval_parse_date(mime_decode_header(e->a, v), &date);
	}
	if (!have)
		return 0;
	/* Received lines, newest first; fetchmail's local hops set aside */
	size_t n = 0;
	const char *v;
	for (size_t pos = 0; msg_header_next(e->m, "Received", &pos) != NULL;)
		n++;
	if (n == 0)
		return 0;
	const char **lines = arena_alloc(e->a, n * sizeof(char *));
	size_t nl = 0;
	for (size_t pos = 0; (v = msg_header_next(e->m, "Received", &pos)) != NULL;) {
		abuf_t b;
		abuf_init(&b, e->a, 128);
		/* unfolded as SpamAssassin unfolds: a line break and its indent are one blank */
		rules_eval_unfold(&b, v, true);
		const char *s = b.data;
		bool blank = true;
		for (const char *p = s; *p; p++)
			if (!isspace((unsigned char)*p))
				blank = false;
		if (!blank)
			lines[nl++] = s;
	}
	size_t first = 0;
	static struct rules_eval_re local1 = {
	    .pattern = "\\bfrom (?:localhost\\s|(?:\\S+ ){1,2}\\S*\\b127\\.0\\.0\\.1\\b)"};
	static struct rules_eval_re local2 = {.pattern = "qmail \\d+ invoked by uid \\d+"};
	static struct rules_eval_re fetchmail = {
	    .pattern = "\\bby localhost with \\w+ \\(fetchmail-[\\d.]+"};
	if (nl > 0 && (rules_eval_re(&local1, lines[0], strlen(lines[0])) ||
	               rules_eval_re(&local2, lines[0], strlen(lines[0])))) {
		if (nl > 1 && rules_eval_re(&fetchmail, lines[1], strlen(lines[1])))
			first = 2;
		/* else the local line goes back in front: nothing set aside */
	} else if (nl > 0 && rules_eval_re(&fetchmail, lines[0], strlen(lines[0]))) {
		first = 1;
	}
	double *diffs = arena_alloc(e->a, (nl ? nl : 1) * sizeof(double));
	size_t nd = 0;
	for (size_t i = first; i < nl; i++) {
		int64_t t;
		if (received_date(e->a, lines[i], &t))
			diffs[nd++] = (double)(date - t);
	}
	if (nd == 0)
		return 0;
	if (nd > 1 && diffs[nd - 1] == 0)
		nd--;
	double best = diffs[0];
	for (size_t i = 1; i < nd; i++)
		if (fabs(diffs[i]) < fabs(best))
			best = diffs[i];
	return best;
}

static long shifted_date(struct rules_evalenv *e, const struct rule *ru)
{
	double *c = e->cache[RULES_EVAL_CACHE_DATEDIFF];
	if (c == NULL) {
		c = arena_alloc(e->a, sizeof(*c));
		*c = date_diff(e);
		e->cache[RULES_EVAL_CACHE_DATEDIFF] = c;
	}
	double d = *c;
	return in_range(d, ru, 3600);
}

/* ---------------------------------------------------------------- Subject */

static long subject_all_caps(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const char *s = rules_eval_header(e, "Subject");
	if (s == NULL)
		return 0;
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	/* (?:(?:Re|Fwd|Fw|Aw|Antwort|WG|SV|VB|VS|VL):\s*)+ */
	static const char *const pre[] = {"re", "fwd", "fw", "aw", "antwort",
	                                  "wg", "sv",  "vb", "vs", "vl"};
	for (bool again = true; again;) {
		again = false;
		for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++) {
			size_t pl = strlen(pre[i]);
			if (n > pl && strncasecmp(s, pre[i], pl) == 0 && s[pl] == ':') {
				s += pl + 1;
				n -= pl + 1;
				while (n > 0 && isspace((unsigned char)*s)) {
					s++;
					n--;
				}
				again = true;
				break;
			}
		}
	}
	bool space = false;
	for (size_t i = 0; i < n; i++)
		if (isspace((unsigned char)s[i]))
			space = true;
	if (!space || n < 10)
		return 0;
	const char *raw = rules_eval_header_raw(e, "Subject");
	static struct rules_eval_re fp_charset = {
	    .pattern = "=\\?[-_a-z0-9]*(?:koi|jp|jis|euc|gb|big5|isoir|cp1251|windows-1251|"
	               "georgianps|pt154|tis)[-_a-z0-9]*\\?",
	    .options = PCRE2_CASELESS};
	if (raw && rules_eval_re(&fp_charset, raw, strlen(raw)))
		return 0;
	size_t letters = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 128 && isalpha(c)) {
			letters++;
			if (islower(c))
				return 0;
		}
	}
	return letters > 0;
}

/* ---------------------------------------------------------------- recipients */

struct recips {
	bool sorted;
	double similar;
};

static struct recips recipients(struct rules_evalenv *e)
{
	struct recips r = {false, 0};
	const char **addr = arena_alloc(e->a, 256 * sizeof(char *));
	size_t n = 0;
	const char *prev = "";
	static const char *const sets[2][2] = {{"To", "Cc"}, {"Bcc", NULL}};
	size_t ninputs = 0;
	for (int s = 0; s < 2; s++) {
		for (int f = 0; f < 2 && sets[s][f]; f++) {
			const char *v;
			for (size_t pos = 0;
			     (v = msg_header_next(e->m, sets[s][f], &pos)) != NULL;) {
				const char **list;
				size_t nl =
				    rules_eval_addrs(e->a, mime_decode_header(e->a, v), &list);
				for (size_t i = 0; i < nl; i++) {
					ninputs++;
					if (strcasecmp(list[i], prev) != 0 && n < 256)
						addr[n++] = prev = list[i];
				}
			}
		}
		if (ninputs >= 5)
			break;
	}
	if (n >= 7) {
		r.sorted = true;
		for (size_t i = 1; i < n; i++)
			if (strcmp(addr[i - 1], addr[i]) > 0)
				r.sorted = false;
	}
	if (n >= 5) {
		size_t hits = 0, comb = 0;
		for (size_t i = 0; i < n; i++) {
			const char *ai = strchr(addr[i], '@');
			for (size_t j = i + 1; j < n; j++) {
				const char *aj = strchr(addr[j], '@');
				if (strncmp(addr[i], addr[j], 2) == 0 &&
				    (strlen(addr[i]) >= 2) == (strlen(addr[j]) >= 2))
					hits++;
				const char *hi = ai ? ai + 1 : "", *hj = aj ? aj + 1 : "";
				if (strncmp(hi, hj, 2) == 0 && strcmp(hi, hj) != 0)
					hits++;
				comb++;
			}
		}
		r.similar = (double)hits / (double)comb;
	}
	return r;
}

static struct recips recipients_cached(struct rules_evalenv *e)
{
	struct recips *c = e->cache[RULES_EVAL_CACHE_RECIPS];
	if (c == NULL) {
		c = arena_alloc(e->a, sizeof(*c));
		*c = recipients(e);
		e->cache[RULES_EVAL_CACHE_RECIPS] = c;
	}
	return *c;
}

static long similar_recipients(struct rules_evalenv *e, const struct rule *ru)
{
	struct recips r = recipients_cached(e);
	return in_range(r.similar, ru, 1);
}

static long sorted_recipients(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return recipients_cached(e).sorted;
}

static long missing_to(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const char *to = rules_eval_header(e, "To");
	/* SpamAssassin's get() keeps the newline: an empty To: is not a missing one */
	if (to == NULL)
		to = rules_eval_header(e, "Apparently-To");
	return to == NULL;
}

/* ---------------------------------------------------------------- gated lists, Yahoo */

static bool gated(struct rules_evalenv *e)
{
	const char *ml = rules_eval_header(e, "Mailing-List");
	static struct rules_eval_re ezmlm = {.pattern = "^contact \\S+\\@\\S+\\; run by ezmlm$",
	                                     .options = PCRE2_MULTILINE};
	static struct rules_eval_re dl = {.pattern = "^mailing list \\S+\\@\\S+",
	                                  .options = PCRE2_MULTILINE};
	static struct rules_eval_re qmail = {
	    .pattern = "qmail \\d+ invoked (?:from network|by .{3,20})\\); \\d+ ... \\d+"};
	const char *rcvd = rules_eval_header(e, "Received");
	if (ml && rules_eval_re(&ezmlm, ml, strlen(ml))) {
		const char *dlto = hget(e, "Delivered-To");
		const char *r = rcvd ? rcvd : "";
		if (rules_eval_re(&dl, dlto, strlen(dlto)) && rules_eval_re(&qmail, r, strlen(r)))
			return true;
	}
	if (rcvd == NULL)
		return true;
	static struct rules_eval_re msn = {.pattern =
	                                       "from groups\\.msn\\.com \\(\\S+\\.msn\\.com "};
	return rules_eval_re(&msn, rcvd, strlen(rcvd));
}

static long gated_through(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return gated(e);
}

static const char *from_addr(struct rules_evalenv *e)
{
	const char *v = rules_eval_header(e, "From");
	if (v == NULL)
		return "";
	const char **list;
	return rules_eval_addrs(e->a, v, &list) ? list[0] : "";
}

/* Every run of white space as one space: SpamAssassin's s/\s+/ /gs. */
static char *squeeze_space(arena_t *a, const char *s)
{
	char *out = arena_strdup(a, s), *w = out;
	for (const char *p = s; *p;) {
		if (isspace((unsigned char)*p)) {
			*w++ = ' ';
			while (isspace((unsigned char)*p))
				p++;
		} else
			*w++ = *p++;
	}
	*w = '\0';
	return out;
}

static bool ends_with_ci(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

static long forged_yahoo(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const char *from = from_addr(e);
	/* \byahoo\.com$ */
	if (!ends_with_ci(from, "yahoo.com"))
		return 0;
	size_t fl = strlen(from);
	if (fl > 9 && (isalnum((unsigned char)from[fl - 10]) || from[fl - 10] == '_'))
		return 0; /* \byahoo\.com$ */
	const char *rcvd = hget(e, "Received");
	if (*hget(e, "Resent-From") && *hget(e, "Resent-To")) {
		const char *x = hget(e, "X-Received");
		if (*x)
			rcvd = x;
	}
	const char *r = squeeze_space(e->a, rcvd);
	size_t rl = strlen(r);
	if (gated(e))
		return 0;
	rules_eval_relays(e);
	static struct rules_eval_re tr = {.pattern = " rdns=\\S+\\.yahoo\\.com "};
	static struct rules_eval_re ur = {.pattern = "^[^\\]]+ rdns=\\S+\\.yahoo\\.com "};
	if (rules_eval_re(&tr, e->trusted_str, strlen(e->trusted_str)) ||
	    rules_eval_re(&ur, e->untrusted_str, strlen(e->untrusted_str)))
		return 0;
	static struct rules_eval_re ok[] = {
	    {.pattern = "by web\\S+\\.mail\\S*\\.yahoo\\.com via HTTP"},
	    {.pattern = "by sonic\\S+\\.consmr\\.mail\\S*\\.yahoo\\.com with HTTP"},
	    {.pattern = "by smtp\\S+\\.yahoo\\.com with SMTP"},
	    {.pattern = "from \\[[0-9a-fA-F.:]+\\] by \\S+\\.(?:groups|scd|dcn)\\.yahoo\\.com with "
	                "NNFMP"},
	    {.pattern =
	         "by \\w+\\.\\w+\\.yahoo\\.com \\(\\d+\\.\\d+\\.\\d+/\\d+\\.\\d+\\.\\d+\\)(?: "
	         "with ESMTP)? id \\w+"},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (rules_eval_re(&ok[i], r, rl))
			return 0;
	static struct rules_eval_re bulk = {.pattern =
	                                        "\\bmailer\\d+\\.bulk\\.scd\\.yahoo\\.com\\b"};
	if (rules_eval_re(&bulk, r, rl) && ends_with_ci(from, "@reply.yahoo.com"))
		return 0;
	return 1;
}

/* ---------------------------------------------------------------- Hotmail */

/* Every Received field, white space runs made one space. */
static const char *received_flat(struct rules_evalenv *e)
{
	char *f = e->cache[RULES_EVAL_CACHE_RCVD_FLAT];
	if (f == NULL) {
		f = squeeze_space(e->a, hget(e, "Received"));
		e->cache[RULES_EVAL_CACHE_RCVD_FLAT] = f;
	}
	return f;
}

static bool msn_groups(struct rules_evalenv *e, const char *rcvd)
{
	static struct rules_eval_re to_re = {.pattern = "<(\\S+)\\@groups\\.msn\\.com>",
	                                     .options = PCRE2_CASELESS};
	static struct rules_eval_re pickup = {
	    .pattern = "from mail pickup service by ((?:p\\d\\d\\.)groups\\.msn\\.com)\\b"};
	const char *to = hget(e, "To");
	const char *list = rules_eval_re_group(&to_re, to, strlen(to), e->a);
	if (list == NULL)
		return false;
	const char *server = rules_eval_re_group(&pickup, rcvd, strlen(rcvd), e->a);
	if (server == NULL)
		return false;
	const char *mid = hget(e, "Message-Id");
	while (isspace((unsigned char)*mid))
		mid++;
	char *want;
	if (strcmp(list, "notifications") == 0) {
		want = arena_sprintf(e->a, "@%s>", server);
	} else {
		want = arena_sprintf(e->a, "<%s-", list);
		if (strncmp(mid, want, strlen(want)) != 0)
			return false;
		want = "@groups.msn.com>";
	}
	return rules_eval_strcasestr(mid, want) != NULL;
}

/*
 * 1: a Received field names hotmail.com but is not Hotmail's own; 2: From
 * is at hotmail.com and no Received field of Hotmail's is there; 0 else.
 */
static int hotmail(struct rules_evalenv *e)
{
	const char *rcvd = received_flat(e);
	size_t rl = strlen(rcvd);
	static struct rules_eval_re pickup = {
	    .pattern = "from mail pickup service by hotmail\\.com with Microsoft SMTPSVC;"};
	if (rules_eval_re(&pickup, rcvd, rl) || msn_groups(e, rcvd) || gated(e))
		return 0;
	const char *xip = rules_eval_header(e, "X-Originating-Ip");
	const char *xorg = rules_eval_header(e, "X-OriginatorOrg");
	static struct rules_eval_re ipre = {.pattern =
	                                        "\\d+\\.\\d+\\.\\d+\\.\\d+|[0-9a-f:]*:[0-9a-f:]+",
	                                    .options = PCRE2_CASELESS};
	static struct rules_eval_re orgre = {.pattern = "hotmail\\.com|msonline\\-outlook"};
	bool ip = xip && rules_eval_re(&ipre, xip, strlen(xip));
	bool org = xorg && rules_eval_re(&orgre, xorg, strlen(xorg));
	static struct rules_eval_re real_ip[] = {
	    {.pattern = "from (?:\\S*\\.)?hotmail.com \\(\\S+\\.hotmail(?:\\.msn)?\\.com[ \\)]"},
	    {.pattern = "from \\S*\\.hotmail.com \\(\\[[0-9a-fA-F.:]+\\][ \\):]"},
	    {.pattern = "from \\S+ by \\S+\\.hotmail(?:\\.msn)?\\.com with HTTP\\;"},
	    {.pattern = "from \\[66\\.218.\\S+\\] by \\S+\\.yahoo\\.com"},
	};
	static struct rules_eval_re real_org[] = {
	    {.pattern = "from \\S*\\.outbound\\.protection\\.outlook\\.com "
	                "\\(\\S+\\.outbound\\.protection\\.outlook\\.com[ \\)]"},
	    {.pattern =
	         "from \\S*\\.(?:eur|nam)prd\\d+\\.prod\\.outlook\\.com \\([0-9a-fA-F.:]+\\)"},
	};
	for (size_t i = 0; ip && i < sizeof(real_ip) / sizeof(real_ip[0]); i++)
		if (rules_eval_re(&real_ip[i], rcvd, rl))
			return 0;
	for (size_t i = 0; org && i < sizeof(real_org) / sizeof(real_org[0]); i++)
		if (rules_eval_re(&real_org[i], rcvd, rl))
			return 0;
	static struct rules_eval_re helo = {.pattern = "(?:from |HELO |helo=)\\S*hotmail\\.com\\b"};
	if (rules_eval_re(&helo, rcvd, rl))
		return 1;
	const char *from = from_addr(e);
	size_t fl = strlen(from);
	if (!ends_with_ci(from, "hotmail.com") ||
	    (fl > 11 && (isalnum((unsigned char)from[fl - 12]) || from[fl - 12] == '_')))
		return 0;
	return 2;
}

static int hotmail_cached(struct rules_evalenv *e)
{
	int *c = e->cache[RULES_EVAL_CACHE_HOTMAIL];
	if (c == NULL) {
		c = arena_alloc(e->a, sizeof(*c));
		*c = hotmail(e);
		e->cache[RULES_EVAL_CACHE_HOTMAIL] = c;
	}
	return *c;
}

static long forged_hotmail(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return hotmail_cached(e) == 1;
}

static long no_hotmail_received(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return hotmail_cached(e) == 2;
}

/* ---------------------------------------------------------------- From vs EnvelopeFrom */

/* The last two labels of the domain of an address ("" when there is none). */
static const char *two_labels(const char *addr)
{
	const char *at = strrchr(addr, '@');
	if (at == NULL || at[1] == '\0')
		return "";
	const char *d = at + 1, *last = strrchr(d, '.');
	if (last == NULL)
		return d;
	for (const char *p = last - 1; p > d; p--)
		if (*p == '.')
			return p + 1 < last ? p + 1 : d;
	return d;
}

static long equal_from_domains(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const char *fd = two_labels(from_addr(e));
	if (*fd == '\0')
		return 0;
	const char *env = rules_eval_envelope_from(e);
	const char *ed = two_labels(env ? env : "");
	if (*ed == '\0')
		return 0;
	return strcasecmp(fd, ed) != 0;
}

/* The envelope sender is the From: address (two blanks match, as in SpamAssassin). */
static long matching_env_and_hdr_from(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const char *env = rules_eval_envelope_from(e);
	return strcasecmp(env ? env : "", from_addr(e)) == 0;
}

/* ---------------------------------------------------------------- counts */

static const char *check_count_args(const struct rule *ru)
{
	double v;
	if (!parse_number(ru->eargs[1], &v) || !parse_number(ru->eargs[2], &v))
		return "expected a field name and two numbers";
	return NULL;
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static long header_count_range(struct rules_evalenv *e, const struct rule *ru)
{
	/* distinct values of the field: sorted, so thousands of copies cost n log n */
	const char **vals = NULL, *v;
	size_t count = 0, cap = 0;
	for (size_t pos = 0; (v = msg_header_next(e->m, ru->eargs[0], &pos)) != NULL;) {
		if (count == cap)
			vals = arena_grow(e->a, vals, count, &cap, sizeof(*vals), 16);
		vals[count++] = v;
	}
	if (count > 1)
		qsort(vals, count, sizeof(*vals), cmp_str);
	size_t n = 0;
	for (size_t k = 0; k < count; k++)
		n += k == 0 || strcmp(vals[k - 1], vals[k]) != 0;
	return (double)n >= ru->eargn[1] && (double)n <= ru->eargn[2];
}

static bool valid_utf8(const unsigned char *s)
{
	while (*s) {
		int n = *s < 0x80             ? 0
		        : (*s & 0xE0) == 0xC0 ? 1
		        : (*s & 0xF0) == 0xE0 ? 2
		        : (*s & 0xF8) == 0xF0 ? 3
		                              : -1;
		if (n < 0 || (n == 1 && *s < 0xC2))
			return false;
		s++;
		for (int i = 0; i < n; i++, s++)
			if ((*s & 0xC0) != 0x80)
				return false;
	}
	return true;
}

static long illegal_chars(struct rules_evalenv *e, const struct rule *ru)
{
	char name[128];
	snprintf(name, sizeof(name), "%s", ru->eargs[0]);
	char *colon = strstr(name, ":raw");
	if (colon)
		*colon = '\0';
	const char *s = rules_eval_header_raw(e, name);
	if (s == NULL)
		return 0;
	bool nonblank = false, nonascii = false, controls = false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (!isspace(*p))
			nonblank = true;
		if (*p >= 0x80)
			nonascii = true;
		if (*p <= 0x08 || *p == 0x0b || *p == 0x0c || (*p >= 0x0e && *p <= 0x1f))
			controls = true;
	}
	if (!nonblank)
		return 0;
	if (nonascii && valid_utf8((const unsigned char *)s) && !controls)
		return 0;
	size_t illegal = 0, exempt = 0, len = strlen(s);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p <= 0x08 || *p == 0x0b || *p == 0x0c || (*p >= 0x0e && *p <= 0x1f) ||
		    *p >= 0x7f)
			illegal++;
		if (*p == 0xa2 || *p == 0xa3 || *p == 0xae)
			exempt++;
	}
	if (illegal > 0 && strcasecmp(name, "subject") == 0 && exempt == 1)
		illegal--;
	return (double)illegal / (double)len >= ru->eargn[1] && (double)illegal >= ru->eargn[2];
}

static const char *check_illegal_args(const struct rule *ru)
{
	double v;
	if (!parse_number(ru->eargs[1], &v) || !parse_number(ru->eargs[2], &v))
		return "expected a field name, a ratio and a count";
	return NULL;
}

static long unresolved_template(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	static struct rules_eval_re tmpl = {.pattern = "%[A-Z][A-Z_-]"};
	static struct rules_eval_re skip = {
	    .pattern = "^(?:X-VMS-To|X-UIDL|X-Face|To|Cc|From|Subject|References|In-Reply-To|"
	               "(?:X-|Resent-|X-Original-)?Message-Id):",
	    .options = PCRE2_CASELESS};
	for (size_t i = 0; i < msg_header_count(e->m); i++) {
		const char *name = msg_header_name(e->m, i), *raw = msg_header_value(e->m, i);
		/* decoding makes a '%' only out of an encoded word: most fields
		 * cannot match and are not decoded */
		if (strchr(name, '%') == NULL && strchr(raw, '%') == NULL &&
		    strstr(raw, "=?") == NULL)
			continue;
		const char *line =
		    arena_sprintf(e->a, "%s: %s", name, mime_decode_header(e->a, raw));
		/* SpamAssassin splits ALL at newlines: the first line of each field */
		size_t n = strcspn(line, "\n");
		if (rules_eval_re(&tmpl, line, n) && !rules_eval_re(&skip, line, n))
			return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- To in Subject, ratware */

/* The first address of a field as SpamAssassin's get('Name:addr') gives it, "" if none. */
static const char *field_addr(struct rules_evalenv *e, const char *name)
{
	const char *v = rules_eval_header_raw(e, name);
	const char **list;
	return v != NULL && rules_eval_addrs(e->a, v, &list) ? list[0] : "";
}

/* s with every byte a regex could read as syntax escaped, as Perl's \Q...\E. */
static const char *re_quote(arena_t *a, const char *s)
{
	abuf_t b;
	abuf_init(&b, a, 2 * strlen(s) + 1);
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && (unsigned char)*s < 0x80)
			abuf_append(&b, "\\", 1);
		abuf_append(&b, s, 1);
	}
	abuf_append(&b, "", 1);
	return b.data;
}

/*
 * check_for_to_in_subject: the recipient's address ('address'), or its
 * local part in the shapes mass mailers give it ('user': "Re: bob",
 * "bob, ...", "..., bob!"), in Subject.
 */
static long to_in_subject(struct rules_evalenv *e, const struct rule *ru)
{
	const char *to = field_addr(e, "To");
	if (*to == '\0')
		return 0;
	const char *subject = hget(e, "Subject");
	/*
	 * Every pattern below holds the address (or user) as written, matched
	 * without case at the most, and is compiled for this message alone:
	 * a subject without it is answered without compiling one.
	 */
	if (strcmp(ru->eargs[0], "address") == 0)
		return rules_eval_strcasestr(subject, to) != NULL &&
		       rules_eval_re_once(arena_sprintf(e->a, "\\b%s\\b", re_quote(e->a, to)),
		                          PCRE2_CASELESS, subject);
	if (strcmp(ru->eargs[0], "user") != 0)
		return 0;
	const char *at = strchr(to, '@');
	const char *user = at ? arena_strndup(e->a, to, (size_t)(at - to)) : to;
	if (*user != '\0' && rules_eval_strcasestr(subject, user) == NULL)
		return 0;
	const char *q = re_quote(e->a, user);
	return rules_eval_re_once(
	    arena_sprintf(e->a,
	                  "^(?:(?:re|fw):\\s*(?:\\w+\\s+)?%s$"
	                  "|(?-i:%s)\\s*[,:;!?-](?:$|\\s)|%s$|,\\s*%s[,:;!?-]$)",
	                  q, q, q, q),
	    PCRE2_CASELESS, subject);
}

static const char *check_to_in_subject_args(const struct rule *ru)
{
	if (strcmp(ru->eargs[0], "address") != 0 && strcmp(ru->eargs[0], "user") != 0)
		return "expected 'address' or 'user'";
	return NULL;
}

/*
 * A ratware's Message-ID: 28 capitals, a dot, and the address the From
 * field then quotes with a display name ("Name" <that address>).
 */
static long ratware_name_id(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	static struct rules_eval_re mid = {.pattern = "<[A-Z]{28}\\.([^>]+?)>"};
	const char *ids = message_ids(e);
	const char *g = rules_eval_re_group(&mid, ids, strlen(ids), e->a);
	if (g == NULL)
		return 0;
	return rules_eval_re_once(arena_sprintf(e->a, "\"[^\"]+\"\\s*<%s>", re_quote(e->a, g)), 0,
	                          hget(e, "From"));
}

/*
 * A ratware's envelope sender built from the recipient: "domain.user@"
 * for user@domain (the registered domain; any byte between the two).
 */
static long ratware_envelope_from(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const char *to = field_addr(e, "To");
	const char *env = rules_eval_envelope_from(e);
	const char **list;
	const char *from = env != NULL && rules_eval_addrs(e->a, env, &list) ? list[0] : "";
	if (*from == '\0' || *to == '\0')
		return 0;
	static struct rules_eval_re srs = {.pattern = "^SRS\\d[=+-]", .options = PCRE2_CASELESS};
	if (rules_eval_re(&srs, from, strlen(from)))
		return 0;
	const char *at = strchr(to, '@');
	if (at == NULL || at == to || at[1] == '\0')
		return 0;
	char dom[256];
	if (dns_registered_domain(at + 1, dom, sizeof(dom)) == NULL ||
	    !rules_eval_domain_valid(dom))
		return 0; /* as SpamAssassin's is_domain_valid() */
	const char *user = arena_strndup(e->a, to, (size_t)(at - to));
	if (rules_eval_strcasestr(from, user) == NULL)
		return 0; /* the pattern, built for this message, holds the user */
	return rules_eval_re_once(
	    arena_sprintf(e->a, "\\b%s.%s@", re_quote(e->a, dom), re_quote(e->a, user)),
	    PCRE2_CASELESS, from);
}

/* ---------------------------------------------------------------- forged webmail relays */

/* SpamAssassin's IP_ADDRESS (as in rules_relays.c): a dotted quad, or IPv6. */
#define OCTET "(?:1\\d\\d|2[0-4]\\d|25[0-5]|[1-9]\\d|\\d)"
#define QUAD  OCTET "\\." OCTET "\\." OCTET "\\." OCTET "\\b"
#define IP_ADDRESS                                                                                 \
	"(?:\\b(?<!:)" QUAD "|(?i:(?:IPv6:|(?<![a-f0-9:]))(?=[a-f0-9:.]*::|(?:[a-f0-9]{1,4}:){7})" \
	"(?:[a-f0-9]{0,4}:){2,7}(?:" QUAD "|[a-f0-9]{1,4})?(?![a-f0-9:])))"

/* addr =~ /\bdomain$/i */
static bool addr_in_domain(const char *addr, const char *domain)
{
	size_t n = strlen(addr), k = strlen(domain);
	if (n < k || strcasecmp(addr + n - k, domain) != 0)
		return false;
	/* \b before the domain's first letter: no word byte in front */
	return n == k || !(isalnum((unsigned char)addr[n - k - 1]) || addr[n - k - 1] == '_');
}

/*
 * Gmail's own mail carries Google's internal X-Received hop, or its
 * submission server's Received field, or both of its long tracking fields.
 */
static long forged_gmail(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	if (!addr_in_domain(field_addr(e, "From"), "gmail.com"))
		return 0;
	static struct rules_eval_re x10 = {.pattern = "by 10\\.\\S+ with SMTP id \\S+"};
	static struct rules_eval_re x2002 = {
	    .pattern = "by 2002\\:a\\d\\d\\:\\w+\\:\\S+ with SMTP id \\S+"};
	static struct rules_eval_re gm = {.pattern =
	                                      "by smtp\\.googlemail\\.com with ESMTPSA id \\S+"};
	const char *xr = hget(e, "X-Received"), *rc = hget(e, "Received");
	if (rules_eval_re(&x10, xr, strlen(xr)) || rules_eval_re(&x2002, xr, strlen(xr)) ||
	    rules_eval_re(&gm, rc, strlen(rc)))
		return 0;
	return !(strlen(hget(e, "X-Gm-Message-State")) >= 60 &&
	         strlen(hget(e, "X-Google-Smtp-Source")) >= 60);
}

/* Juno's mail: its relays in Received and its mailer's name, by the two generations of it. */
static long forged_juno(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	if (!addr_in_domain(field_addr(e, "From"), "juno.com") || gated(e))
		return 0;
	const char *xorig = hget(e, "X-Originating-IP"), *xmailer = hget(e, "X-Mailer");
	const char *rc = hget(e, "Received");
	static struct rules_eval_re old_rcvd = {
	    .pattern = "from.*\\b(?:juno|untd)\\.com.*[\\[\\(]" IP_ADDRESS "[\\]\\)].*by"};
	static struct rules_eval_re cookie = {.pattern = " cookie\\.(?:juno|untd)\\.com "};
	static struct rules_eval_re mailcom = {.pattern =
	                                           "from.*\\bmail\\.com.*\\[" IP_ADDRESS "\\].*by"};
	static struct rules_eval_re webmail = {
	    .pattern = "from (webmail\\S+\\.untd\\.com) \\(\\1 \\[" IP_ADDRESS "\\]\\) by"};
	static struct rules_eval_re xm_mailcom = {.pattern = "\\bmail\\.com"};
	static struct rules_eval_re xm_webmail = {.pattern = "^Webmail Version \\d"};
	static struct rules_eval_re ip = {.pattern = IP_ADDRESS};
	if (*xorig != '\0') {
		if (!rules_eval_re(&old_rcvd, rc, strlen(rc)) &&
		    !rules_eval_re(&cookie, rc, strlen(rc)))
			return 1;
		if (strstr(xmailer, "Juno ") == NULL)
			return 1;
	} else {
		if (rules_eval_re(&mailcom, rc, strlen(rc))) {
			if (!rules_eval_re(&xm_mailcom, xmailer, strlen(xmailer)))
				return 1;
		} else if (rules_eval_re(&webmail, rc, strlen(rc))) {
			if (!rules_eval_re(&xm_webmail, xmailer, strlen(xmailer)))
				return 1;
		} else
			return 1;
		/* as in SpamAssassin: X-Originating-IP is empty here, so this always hits */
		if (!rules_eval_re(&ip, xorig, strlen(xorig)))
			return 1;
	}
	return 0;
}

/* Eudora's web mail: received by whowhere.com, with the sender's IP in X-Sender-Ip. */
static long forged_eudoramail(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	if (!addr_in_domain(field_addr(e, "From"), "eudoramail.com"))
		return 0;
	const char *rc = received_flat(e);
	const char *xip = rules_eval_header(e, "X-Sender-Ip");
	static struct rules_eval_re ip = {.pattern = IP_ADDRESS};
	bool has_ip = xip != NULL && rules_eval_re(&ip, xip, strlen(xip));
	if (gated(e))
		return 0;
	static struct rules_eval_re whowhere = {.pattern = "by \\S*whowhere.com\\;"};
	return !(rules_eval_re(&whowhere, rc, strlen(rc)) && has_ip);
}

/*
 * AOL's relay names (rly-xx01.) in Received, without the marks of AOL's own
 * relays: spammers forge the name, and some make up hosts to go with it.
 */
static long fake_aol_relay(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const char *rc = received_flat(e);
	static struct rules_eval_re rly = {.pattern = " rly-[a-z][a-z]\\d\\d\\.",
	                                   .options = PCRE2_CASELESS};
	static struct rules_eval_re aol = {.pattern = "/AOL-\\d+\\.\\d+\\.\\d+\\)"};
	static struct rules_eval_re esmtp = {.pattern = "ESMTP id (?:RELAY|MAILRELAY|MAILIN)"};
	size_t n = strlen(rc);
	return rules_eval_re(&rly, rc, n) && !rules_eval_re(&aol, rc, n) &&
	       !rules_eval_re(&esmtp, rc, n);
}

/* ---------------------------------------------------------------- far-away charsets */

/* SpamAssassin's Locales.pm: the charsets each locale reads, beyond the universal ones. */
static const struct {
	const char *locale;
	const char *charsets; /* upper case, alphanumerics only, one space apart */
} charsets_for_locale[] = {
    {"ja", "EUCJP JISX020119760 JISX020819830 JISX020819900 JISX020819970 JISX021219900 "
           "JISX021320001 JISX021320002 SHIFT_JIS SHIFTJIS ISO2022JP SJIS JIS7 JISX0201 "
           "JISX0208 JISX0212"},
    {"ko", "EUCKR KSC56011987"},
    {"ru", "KOI8R KOI8U KOI8T ISOIR111 CP1251 GEORGIANPS CP1251 PT154 CP866"},
    {"ka", "KOI8R KOI8U KOI8T ISOIR111 CP1251 GEORGIANPS CP1251 PT154 CP866"},
    {"tg", "KOI8R KOI8U KOI8T ISOIR111 CP1251 GEORGIANPS CP1251 PT154 CP866"},
    {"be", "KOI8R KOI8U KOI8T ISOIR111 CP1251 GEORGIANPS CP1251 PT154 CP866"},
    {"uk", "KOI8R KOI8U KOI8T ISOIR111 CP1251 GEORGIANPS CP1251 PT154 CP866"},
    {"bg", "KOI8R KOI8U KOI8T ISOIR111 CP1251 GEORGIANPS CP1251 PT154 CP866"},
    {"th", "TIS620"},
    {"zh", "GB1988 GB2312 GB231219800 GB18030 GBK BIG5HKSCS BIG5 EUCTW ISO2022CN"},
};

static bool has_word(const char *list, const char *w)
{
	size_t n = strlen(w);
	for (const char *p = list; (p = strstr(p, w)) != NULL; p++)
		if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
			return true;
	return false;
}

/*
 * As SpamAssassin's is_charset_ok_for_locales(), with ok_locales' words
 * (SpamAssassin adds the process's LANG and friends to them; a daemon's
 * environment should not change its verdicts, so Sift does not).
 */
bool rules_eval_charset_ok(const rules_t *r, const char *charset)
{
	const char *locales = r->ok_locales ? r->ok_locales : "all";
	const char *w;
	size_t n;
	for (const char *p = locales; rules_eval_word(&p, &w, &n);)
		if (n == 3 && strncmp(w, "all", 3) == 0)
			return true;
	char cs[128];
	size_t k = 0;
	for (const char *p = charset; *p && k + 1 < sizeof(cs); p++)
		if (isalnum((unsigned char)*p))
			cs[k++] = (char)toupper((unsigned char)*p);
	cs[k] = '\0';
	const char *c = strncmp(cs, "3D", 2) == 0 ? cs + 2 : cs; /* quoted-printable's "=3D" */
	static const char *const always_prefix[] = {"ISO8859",       "ISO10646",     "UTF",
	                                            "UCS",           "CP125",        "WINDOWS",
	                                            "UNICODE11UTF7", "UNICODE11UTF8"};
	static const char *const always[] = {"USASCII", "ASCII", "IBM852", "XUNKNOWN", "ISO"};
	for (size_t i = 0; i < sizeof(always) / sizeof(always[0]); i++)
		if (strcmp(c, always[i]) == 0)
			return true;
	for (size_t i = 0; i < sizeof(always_prefix) / sizeof(always_prefix[0]); i++)
		if (strncmp(c, always_prefix[i], strlen(always_prefix[i])) == 0)
			return true;
	for (const char *p = locales; rules_eval_word(&p, &w, &n);) {
		/* "zh_TW" and "zh.big5" are zh: the first two letters when they are lower case */
		char loc[3] = "en";
		if (n >= 2 && islower((unsigned char)w[0]) && islower((unsigned char)w[1]))
			memcpy(loc, w, 2);
		else if (!(n == 1 && w[0] == 'C'))
			snprintf(loc, sizeof(loc), "%.*s", (int)(n < 2 ? n : 2), w);
		for (size_t i = 0; i < sizeof(charsets_for_locale) / sizeof(charsets_for_locale[0]);
		     i++)
			if (strcmp(loc, charsets_for_locale[i].locale) == 0 &&
			    has_word(charsets_for_locale[i].charsets, c))
				return true;
	}
	return false;
}

/* An RFC 2047 word in From or Subject whose charset no ok_locales locale reads. */
static long faraway_charset_in_headers(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	if (e->r->ok_locales == NULL)
		return 0;
	/* each whole word, as Perl's //g steps, then its charset */
	static struct rules_eval_re word = {.pattern = "=\\?.+?\\?.\\?.*?\\?="};
	static struct rules_eval_re charset = {.pattern = "^=\\?(.+?)\\?.\\?.*?\\?="};
	static const char *const names[] = {"From", "Subject"};
	for (size_t f = 0; f < 2; f++) {
		const char *v;
		for (size_t pos = 0; (v = msg_header_next(e->m, names[f], &pos)) != NULL;) {
			size_t n = strlen(v), from = 0, start, len;
			while (from <= n && rules_eval_re_find(&word, v, n, from, &start, &len)) {
				const char *cs =
				    rules_eval_re_group(&charset, v + start, len, e->a);
				if (cs != NULL && !rules_eval_charset_ok(e->r, cs))
					return 1;
				from = start + (len ? len : 1);
			}
		}
	}
	return 0;
}

const struct rules_evaldef rules_eval_header_defs[] = {
    {"check_outlook_message_id", outlook_message_id, 0, 0, NULL},
    {"check_for_shifted_date", shifted_date, 2, 2, check_range_args},
    {"subject_is_all_caps", subject_all_caps, 0, 0, NULL},
    {"similar_recipients", similar_recipients, 2, 2, check_range_args},
    {"sorted_recipients", sorted_recipients, 0, 0, NULL},
    {"check_for_missing_to_header", missing_to, 0, 0, NULL},
    {"gated_through_received_hdr_remover", gated_through, 0, 0, NULL},
    {"check_for_forged_yahoo_received_headers", forged_yahoo, 0, 0, NULL},
    {"check_header_count_range", header_count_range, 3, 3, check_count_args},
    {"check_illegal_chars", illegal_chars, 3, 3, check_illegal_args},
    {"check_unresolved_template", unresolved_template, 0, 0, NULL},
    {"check_for_forged_hotmail_received_headers", forged_hotmail, 0, 0, NULL},
    {"check_for_no_hotmail_received_headers", no_hotmail_received, 0, 0, NULL},
    {"check_equal_from_domains", equal_from_domains, 0, 0, NULL},
    {"check_for_matching_env_and_hdr_from", matching_env_and_hdr_from, 0, 0, NULL},
    {"check_for_to_in_subject", to_in_subject, 1, 1, check_to_in_subject_args},
    {"check_ratware_name_id", ratware_name_id, 0, 0, NULL},
    {"check_ratware_envelope_from", ratware_envelope_from, 0, 0, NULL},
    {"check_for_forged_gmail_received_headers", forged_gmail, 0, 0, NULL},
    {"check_for_forged_juno_received_headers", forged_juno, 0, 0, NULL},
    {"check_for_forged_eudoramail_received_headers", forged_eudoramail, 0, 0, NULL},
    {"check_for_fake_aol_relay_in_rcvd", fake_aol_relay, 0, 0, NULL},
    {"check_for_faraway_charset_in_headers", faraway_charset_in_headers, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
