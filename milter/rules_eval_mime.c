/*
 * rules_eval_mime.c - SpamAssassin's MIMEEval tests in C over Sift's parsed
 * MIME tree: counts of HTML and text parts, transfer encodings and
 * attachments. Follows Mail::SpamAssassin::Plugin::MIMEEval.
 */
#include <ctype.h>

#include "rules_int.h"

struct mimefacts {
	unsigned html, text, base64, qp, attachment;
	bool base64_text, bad_iso_charset, ascii_text_illegal, qp_long_line, ma_non_text;
	bool faraway_charset;   /* a part's charset outside ok_locales */
	long qp_excess;         /* needlessly encoded characters in the QP lines */
	size_t base64_line;     /* the longest raw line of a base64 part, its break included */
	double unicode_ratio;   /* "&#xHHHH;" escapes per character of unencoded text/plain */
	double multipart_ratio; /* text/plain bytes per text/html byte of an alternative */
};

/*
 * SpamAssassin's count of characters a quoted-printable line encodes that
 * need not be (=20 inside a line, =41 ...), less the trailing white space
 * QP must encode.
 */
static long qp_excess_line(const char *line, size_t len)
{
	static struct rules_eval_re enc = {.pattern =
	                                       "=(?:09|3[0-9ABCEF]|[2456][0-9A-F]|7[0-9A-E])"};
	static struct rules_eval_re trail = {.pattern = "((?:=09|=20)+)\\s*$"};
	if (memchr(line, '=', len) == NULL)
		return 0;
	long c = 0;
	size_t s, l;
	for (size_t from = 0; from < len && rules_eval_re_find(&enc, line, len, from, &s, &l);
	     from = s + l)
		c++;
	if (c && rules_eval_re_find(&trail, line, len, 0, &s, &l))
		c -= (long)(l / 3);
	return c;
}

/* The "&#xHHHH;" escapes (capital hex digits) in a line. */
static size_t unicode_escapes(const char *line, size_t len)
{
	size_t subs = 0;
	for (size_t i = 0; i + 8 <= len; i++) {
		if (line[i] != '&' || line[i + 1] != '#' || line[i + 2] != 'x' ||
		    line[i + 7] != ';')
			continue;
		size_t k = 3;
		while (k < 7 && (isdigit((unsigned char)line[i + k]) ||
		                 (line[i + k] >= 'A' && line[i + k] <= 'F')))
			k++;
		if (k == 7) {
			subs++;
			i += 7;
		}
	}
	return subs;
}

/* The Content-Disposition of a part's own header block, lower-cased ("" if none). */
static const char *disposition(arena_t *a, const char *headers)
{
	for (const char *p = headers; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (n > 20 && strncasecmp(p, "Content-Disposition:", 20) == 0) {
			char *v = arena_strndup(a, p + 20, n - 20);
			for (char *q = v; *q; q++)
				*q = (char)tolower((unsigned char)*q);
			while (*v == ' ' || *v == '\t')
				v++;
			return v;
		}
		p = nl ? nl + 1 : p + n;
	}
	return "";
}

static struct mimefacts compute(struct rules_evalenv *e);

/* A part with no children: the next part, if any, is not deeper. */
static bool is_leaf(const mime_t *mi, size_t i)
{
	return i + 1 >= mime_part_count(mi) ||
	       mime_part(mi, i + 1)->depth <= mime_part(mi, i)->depth;
}

/*
 * check_ma_non_text: a direct child of multipart/alternative i that is a
 * leaf but not text (nor RTF, which ham sends).
 */
static bool ma_non_text(const mime_t *mi, size_t i)
{
	unsigned d = mime_part(mi, i)->depth;
	for (size_t j = i + 1; j < mime_part_count(mi) && mime_part(mi, j)->depth > d; j++) {
		const mime_part_t *c = mime_part(mi, j);
		const char *ct = c->content_type ? c->content_type : "text/plain";
		if (c->depth != d + 1 || !is_leaf(mi, j))
			continue;
		if (strcmp(ct, "multipart/related") != 0 && strcmp(ct, "application/rtf") != 0 &&
		    strncmp(ct, "text/", 5) != 0)
			return true;
	}
	return false;
}

/*
 * What _check_attachments and _check_base64_length read from a leaf's
 * raw lines: QP line lengths and needless escapes, base64 line lengths,
 * and unicode escapes in unencoded text/plain.
 */
static void leaf_lines(struct mimefacts *f, const mime_part_t *p, const char *ct, const char *cte,
                       size_t *normal, size_t *unicode)
{
	bool qp = strcmp(cte, "quoted-printable") == 0;
	bool b64 = strcmp(cte, "base64") == 0 && strcmp(ct, "application/ics") != 0;
	bool plain = strcmp(ct, "text/plain") == 0 &&
	             (*cte == '\0' || strcmp(cte, "7bit") == 0 || strcmp(cte, "8bit") == 0);
	if (!qp && !b64 && !plain)
		return;
	const char *end = p->raw + p->raw_len;
	for (const char *line = p->raw, *nl; line < end; line = nl ? nl + 1 : end) {
		/* a line as SpamAssassin's raw() has it: with its break, the last may lack one */
		nl = memchr(line, '\n', (size_t)(end - line));
		size_t len = nl ? (size_t)(nl - line) + 1 : (size_t)(end - line);
		if (qp && !(len >= 6 && memcmp(line, "SPAM: ", 6) == 0)) {
			/* RFC 5322's 78 characters and the line break (Apple Mail exceeds 76) */
			if (len > 79)
				f->qp_long_line = true;
			f->qp_excess += qp_excess_line(line, len);
		}
		if (b64 && len > f->base64_line)
			f->base64_line = len;
		if (plain) {
			size_t subs = unicode_escapes(line, len);
			*normal += len - 8 * subs;
			*unicode += subs;
		}
	}
}

static struct mimefacts facts(struct rules_evalenv *e)
{
	struct mimefacts *c = e->cache[RULES_EVAL_CACHE_MIME];
	if (c == NULL) {
		c = arena_alloc(e->a, sizeof(*c));
		*c = compute(e);
		e->cache[RULES_EVAL_CACHE_MIME] = c;
	}
	return *c;
}

static struct mimefacts compute(struct rules_evalenv *e)
{
	struct mimefacts f = {.multipart_ratio = 1.0};
	size_t np = e->mi ? mime_part_count(e->mi) : 0;
	bool alternative = false;
	long text_bytes = -1, html_bytes = -1;
	size_t normal_chars = 0, unicode_chars = 0;
	static struct rules_eval_re ascii = {
	    .pattern = "(?:us-ascii|ansi_x3\\.4-1968|iso-ir-6|ansi_x3\\.4-1986|iso_646\\.irv:1991|"
	               "ascii|iso646-us|us|ibm367|cp367|csascii)"};
	static struct rules_eval_re iso = {.pattern = "iso-\\S+-\\S+\\b",
	                                   .options = PCRE2_CASELESS};
	static struct rules_eval_re iso_ok = {.pattern = "iso-(?:8859-\\d{1,2}|2022-(?:jp|kr))\\b"};
	for (size_t i = 0; i < np; i++) {
		const mime_part_t *p = mime_part(e->mi, i);
		const char *ct = p->content_type ? p->content_type : "text/plain";
		const char *cte = p->encoding ? p->encoding : "";
		const char *cs = p->charset ? p->charset : "";
		const char *cd = disposition(e->a, p->headers);
		if (strcmp(ct, "multipart/alternative") == 0) {
			alternative = true;
			if (ma_non_text(e->mi, i))
				f.ma_non_text = true;
		}
		if (is_leaf(e->mi, i))
			leaf_lines(&f, p, ct, cte, &normal_chars, &unicode_chars);
		if (is_leaf(e->mi, i) && strstr(cd, "attachment") == NULL) {
			/* SpamAssassin's bytes of the last text/plain and text/html parts */
			long bytes = alternative ? (long)p->raw_len : 0;
			if (strcmp(ct, "text/html") == 0)
				html_bytes = bytes;
			else if (strcmp(ct, "text/plain") == 0)
				text_bytes = bytes;
		}
		if (strcmp(ct, "text/html") == 0)
			f.html++;
		else if (strncmp(ct, "text", 4) == 0)
			f.text++;
		bool b64 = strstr(cte, "base64") != NULL;
		if (b64)
			f.base64++;
		else if (strstr(cte, "quoted-printable"))
			f.qp++;
		if (strstr(cd, "attachment"))
			f.attachment++;
		if (strncmp(ct, "text", 4) == 0 && b64 &&
		    (*cs == '\0' || rules_eval_re(&ascii, cs, strlen(cs))) &&
		    strncmp(cd, "attachment", 10) != 0 && strncmp(cd, "inline", 6) != 0)
			f.base64_text = true;
		if (rules_eval_re(&iso, cs, strlen(cs)) && !rules_eval_re(&iso_ok, cs, strlen(cs)))
			f.bad_iso_charset = true;
		if (strpbrk(cs, "abcdefghijklmnopqrstuvwxyz") && !rules_eval_charset_ok(e->r, cs))
			f.faraway_charset = true;
		/*
		 * text/plain declared (or defaulted) us-ascii whose raw lines hold
		 * 8-bit bytes, NUL or a carriage return (the message's line ends are
		 * already plain newlines). A message of one part is its raw body;
		 * in a multipart message an encoded part's raw lines are ASCII, so
		 * only unencoded parts count, by their decoded text.
		 */
		if (strcmp(ct, "text/plain") == 0 && (*cs == '\0' || strcmp(cs, "us-ascii") == 0)) {
			size_t n = 0;
			const char *t = NULL;
			if (np == 1)
				t = msg_body(e->m, &n);
			else if (!b64 && strstr(cte, "quoted-printable") == NULL) {
				t = p->decoded;
				n = t ? p->decoded_len : 0;
			}
			for (size_t k = 0; t != NULL && k < n; k++)
				if ((unsigned char)t[k] >= 0x80 || t[k] == '\0' || t[k] == '\r') {
					f.ascii_text_illegal = true;
					break;
				}
		}
	}
	if (normal_chars > 0)
		f.unicode_ratio = (double)unicode_chars / (double)normal_chars;
	if (alternative && text_bytes >= 0 && html_bytes > 0)
		f.multipart_ratio = (double)text_bytes / (double)html_bytes;
	return f;
}

static const char *const mime_tests[] = {
    "mime_base64_count",        "mime_qp_count",           "mime_attachment",
    "mime_base64_encoded_text", "mime_bad_iso_charset",    "mime_qp_long_line",
    "mime_faraway_charset",     "mimepart_limit_exceeded", NULL};

static const char *check_mime_arg(const struct rule *ru)
{
	/* SpamAssassin's check_for_mime takes the test as its only argument */
	for (size_t i = 0; mime_tests[i]; i++)
		if (strcmp(ru->eargs[0], mime_tests[i]) == 0)
			return NULL;
	return "~not implemented";
}

static long for_mime(struct rules_evalenv *e, const struct rule *ru)
{
	struct mimefacts f = facts(e);
	const char *t = ru->eargs[0];
	if (strcmp(t, "mime_base64_count") == 0)
		return f.base64 > 0;
	if (strcmp(t, "mime_qp_count") == 0)
		return f.qp_excess > 0; /* SpamAssassin's count, overwritten by the excess */
	if (strcmp(t, "mime_attachment") == 0)
		return f.attachment > 0;
	if (strcmp(t, "mime_base64_encoded_text") == 0)
		return f.base64_text;
	if (strcmp(t, "mime_qp_long_line") == 0)
		return f.qp_long_line;
	if (strcmp(t, "mime_faraway_charset") == 0)
		return f.faraway_charset;
	/*
	 * SpamAssassin looks the part limit up among the test results while
	 * the parser records it on the message, so it never hits there either.
	 */
	if (strcmp(t, "mimepart_limit_exceeded") == 0)
		return 0;
	return f.bad_iso_charset;
}

/* check_msg_parse_flags(flag): the parser's record of a malformed structure. */
static const struct {
	const char *name;
	unsigned flag;
} parse_flags[] = {
    {"mime_epilogue_exists", MIME_F_EPILOGUE},
    {"missing_mime_headers", MIME_F_PART_NO_HEADERS},
    {"missing_mime_head_body_separator", MIME_F_PART_NO_SEPARATOR},
    /* SpamAssassin stops at 1000 parts of one multipart, Sift at max_parts in all */
    {"mimepart_limit_exceeded", MIME_F_PART_LIMIT},
};

#define SA_HEADER_KEY_BYTES   256   /* SpamAssassin cuts a field name here, */
#define SA_HEADER_VALUE_BYTES 8192  /* a field's value here */
#define SA_HEADER_BYTES       65536 /* and the whole header section here */

/*
 * truncated_header: a field SpamAssassin would cut, or a header section
 * beyond its limit (each field counted as name, ": " and value).
 */
static bool truncated_header(msg_t *m)
{
	size_t total = 0;
	for (size_t i = 0; i < msg_header_count(m); i++) {
		size_t nl = strlen(msg_header_name(m, i)), vl = strlen(msg_header_value(m, i));
		if (nl > SA_HEADER_KEY_BYTES || vl > SA_HEADER_VALUE_BYTES)
			return true;
		total += nl + vl + 2;
	}
	return total > SA_HEADER_BYTES;
}

static const char *check_parse_flag(const struct rule *ru)
{
	if (strcmp(ru->eargs[0], "truncated_header") == 0)
		return NULL;
	for (size_t i = 0; i < sizeof(parse_flags) / sizeof(parse_flags[0]); i++)
		if (strcmp(ru->eargs[0], parse_flags[i].name) == 0)
			return NULL;
	/*
	 * missing_head_body_separator: a file whose header section does not end
	 * in an empty line. The milter gets header and body apart from the MTA.
	 */
	return "~not implemented";
}

static long msg_parse_flags(struct rules_evalenv *e, const struct rule *ru)
{
	if (strcmp(ru->eargs[0], "truncated_header") == 0)
		return truncated_header(e->m);
	unsigned flags = e->mi ? mime_flags(e->mi) : 0;
	for (size_t i = 0; i < sizeof(parse_flags) / sizeof(parse_flags[0]); i++)
		if (strcmp(ru->eargs[0], parse_flags[i].name) == 0)
			return (flags & parse_flags[i].flag) != 0;
	return 0;
}

/* check_base64_length(min[, max]): the longest base64 line, its break counted. */
static long base64_length(struct rules_evalenv *e, const struct rule *ru)
{
	double len = (double)facts(e).base64_line;
	if (ru->neargs > 1 && len > ru->eargn[1])
		return 0;
	return len >= ru->eargn[0];
}

/* check_abundant_unicode_ratio(ratio): "&#xHHHH;" per character of plain text. */
static long abundant_unicode(struct rules_evalenv *e, const struct rule *ru)
{
	return facts(e).unicode_ratio >= ru->eargn[0];
}

static const char *check_ratio(const struct rule *ru)
{
	/* SpamAssassin's own check: the test never hits otherwise */
	static struct rules_eval_re ok = {.pattern = "^\\d{0,3}\\.\\d{1,3}$"};
	return rules_eval_re(&ok, ru->eargs[0], strlen(ru->eargs[0])) ? NULL : "expected a ratio";
}

static long ma_non_text_eval(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return facts(e).ma_non_text;
}

/* check_mime_multipart_ratio(min, max): min <= text/html bytes < max. */
static long multipart_ratio(struct rules_evalenv *e, const struct rule *ru)
{
	double r = facts(e).multipart_ratio;
	return r >= ru->eargn[0] && r < ru->eargn[1];
}

/*
 * check_for_faraway_charset: the top Content-Type's charset is outside
 * ok_locales and the body is mostly non-ASCII (koi8-r and the like also
 * hold ASCII). SpamAssassin counts the undecoded bytes; Sift's body is
 * UTF-8, so characters are counted (the same for one-byte charsets).
 */
static long faraway_charset(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	static struct rules_eval_re cs_re = {.pattern = "charset=(?|\"([^\"]+)\"|'([^']+)'|(\\S+))",
	                                     .options = PCRE2_CASELESS};
	const char *ct = rules_eval_header(e, "Content-Type");
	const char *cs = ct ? rules_eval_re_group(&cs_re, ct, strlen(ct), e->a) : NULL;
	if (cs == NULL || rules_eval_charset_ok(e->r, cs))
		return 0;
	size_t n = 0, his = 0, los = 0;
	const char *b = e->mi ? mime_body(e->mi, &n) : NULL;
	for (size_t i = 0; b != NULL && i < n; i++) {
		unsigned char c = (unsigned char)b[i];
		if (c < 0x80)
			los++;
		else if ((c & 0xc0) != 0x80) /* a lead byte: one character */
			his++;
	}
	return los <= his && his > 3;
}

static bool top_is_html(struct rules_evalenv *e)
{
	const char *ct = rules_eval_header(e, "Content-Type");
	return ct && strncasecmp(ct, "text/html", 9) == 0;
}

static long mime_html(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return top_is_html(e) || facts(e).html > 0;
}

static long mime_html_only(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	if (top_is_html(e))
		return 1;
	struct mimefacts f = facts(e);
	return f.html > 0 && f.text == 0;
}

static long ascii_text_illegal(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return facts(e).ascii_text_illegal;
}

/*
 * Charsets whose text is mostly capitals or whose bytes read as capitals
 * (Cyrillic, Japanese, Chinese, Georgian, Thai): SpamAssassin does not
 * count capitals in them.
 */
static bool charset_caps_fp(const char *cs)
{
	static struct rules_eval_re fp = {
	    .pattern = "^[-_a-z0-9]*(?:koi|jp|jis|euc|gb|big5|isoir|cp1251|windows-1251|"
	               "georgianps|pt154|tis)[-_a-z0-9]*$",
	    .options = PCRE2_CASELESS};
	return cs != NULL && rules_eval_re(&fp, cs, strlen(cs));
}

/* Two runs of 60-76 base64 characters, each followed by a space: a forwarded attachment. */
static bool base64_start(const char *p, const char *end)
{
	for (int k = 0; k < 2; k++) {
		size_t run = 0;
		while (p < end &&
		       (isalnum((unsigned char)*p) || *p == '+' || *p == '/' || *p == '=')) {
			run++;
			p++;
		}
		if (run < 60 || run > 76 || p >= end || *p != ' ')
			return false;
		p++;
	}
	return true;
}

/*
 * The percent of capitals among the letters and digits of the body's
 * paragraphs that hold an inner space (white space collapsed, as body
 * rules see them), or 0 below 200 characters or in a charset above.
 */
static double uppercase_percent(struct rules_evalenv *e)
{
	for (size_t i = 0; e->mi != NULL && i < mime_part_count(e->mi); i++) {
		const mime_part_t *p = mime_part(e->mi, i);
		if ((i == 0 || p->is_html) && charset_caps_fp(p->charset))
			return 0;
	}
	size_t n = 0;
	const char *s = e->mi ? mime_body(e->mi, &n) : NULL;
	size_t len = 0, lower = 0, upper = 0;
	char *line = arena_alloc(e->a, n + 1);
	for (size_t i = 0; s != NULL && i < n;) {
		/* one paragraph, white space made single spaces, up to a blank line */
		size_t ln = 0, lo = 0, up = 0;
		bool inner = false, space = false;
		for (; i < n; i++) {
			unsigned char c = (unsigned char)s[i];
			if (isspace(c)) {
				if (c == '\n') {
					size_t j = i + 1;
					while (j < n && s[j] != '\n' &&
					       isspace((unsigned char)s[j]))
						j++;
					if (j < n && s[j] == '\n') {
						i = j + 1;
						break;
					}
				}
				space = ln > 0;
				continue;
			}
			if (space) {
				line[ln++] = ' ';
				inner = true;
				space = false;
			}
			line[ln++] = (char)c;
			lo += islower(c) || isdigit(c);
			up += isupper(c) != 0;
		}
		if (!inner || base64_start(line, line + ln))
			continue;
		len += ln + 1; /* and the line's end */
		lower += lo;
		upper += up;
	}
	if (len < 200 || upper + lower == 0)
		return 0;
	return 100.0 * (double)upper / (double)(upper + lower);
}

/* check_for_uppercase(min, max): min < percent of capitals <= max. */
static long uppercase(struct rules_evalenv *e, const struct rule *ru)
{
	double *pct = e->cache[RULES_EVAL_CACHE_UPPER];
	if (pct == NULL) {
		pct = arena_alloc(e->a, sizeof(*pct));
		*pct = uppercase_percent(e);
		e->cache[RULES_EVAL_CACHE_UPPER] = pct;
	}
	return *pct > ru->eargn[0] && *pct <= ru->eargn[1];
}

static const char *check_two_numbers(const struct rule *ru)
{
	for (size_t i = 0; i < ru->neargs; i++) {
		char *end;
		strtod(ru->eargs[i], &end);
		if (end == ru->eargs[i] || *end != '\0')
			return "expected two numbers";
	}
	return NULL;
}

const struct rules_evaldef rules_eval_mime_defs[] = {
    {"check_for_ascii_text_illegal", ascii_text_illegal, 0, 0, NULL},
    {"check_for_mime", for_mime, 1, 1, check_mime_arg},
    {"check_for_mime_html", mime_html, 0, 0, NULL},
    {"check_for_mime_html_only", mime_html_only, 0, 0, NULL},
    {"check_for_uppercase", uppercase, 2, 2, check_two_numbers},
    {"check_msg_parse_flags", msg_parse_flags, 1, 1, check_parse_flag},
    {"check_base64_length", base64_length, 1, 2, check_two_numbers},
    {"check_abundant_unicode_ratio", abundant_unicode, 1, 1, check_ratio},
    {"check_ma_non_text", ma_non_text_eval, 0, 0, NULL},
    {"check_mime_multipart_ratio", multipart_ratio, 2, 2, check_two_numbers},
    {"check_for_faraway_charset", faraway_charset, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
