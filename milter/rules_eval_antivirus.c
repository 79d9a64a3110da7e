/*
 * rules_eval_antivirus.c - SpamAssassin's AntiVirus plugin: a leaf part
 * named or shaped like a Windows executable (check_microsoft_executable),
 * and a part whose name's extension does not fit its Content-Type
 * (check_suspect_name). Local checks of the MIME parts; no scanner is run.
 */
#include <ctype.h>

#include "rules_int.h"

/*
 * The last Content-Type field of a part's header block, unfolded and its
 * encoded words decoded, as SpamAssassin's get_header() gives it; NULL
 * when there is none.
 */
static const char *part_content_type(arena_t *a, const char *headers)
{
	const char *found = NULL;
	size_t flen = 0;
	for (const char *p = headers; p != NULL && *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (n > 13 && strncasecmp(p, "content-type:", 13) == 0) {
			found = p + 13;
			flen = n - 13;
			/* the continuation lines of a folded field */
			const char *q = nl;
			while (q != NULL && (q[1] == ' ' || q[1] == '\t')) {
				const char *nl2 = strchr(q + 1, '\n');
				flen = (size_t)((nl2 ? nl2 : q + 1 + strlen(q + 1)) - found);
				q = nl2;
			}
		}
		p = nl ? nl + 1 : p + n;
	}
	if (found == NULL)
		return NULL;
	char *v = arena_alloc(a, flen + 1);
	size_t k = 0;
	for (size_t i = 0; i < flen; i++)
		if (found[i] != '\n' && found[i] != '\r')
			v[k++] = found[i];
	v[k] = '\0';
	return mime_decode_header(a, v);
}

/* The "name" (or "filename") parameter of a Content-Type value, lower-case; "" if none. */
static const char *ct_name(arena_t *a, const char *ct)
{
	static struct rules_eval_re name = {.pattern =
	                                        "\\b(?:file)?name\\s*=\\s*[\"']?(.*?)[\"']?(?:;|$)",
	                                    .options = PCRE2_CASELESS};
	const char *v = ct ? rules_eval_re_group(&name, ct, strlen(ct), a) : NULL;
	if (v == NULL)
		return "";
	char *l = arena_strdup(a, v);
	for (char *q = l; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	return l;
}

static bool re(struct rules_eval_re *r, const char *s)
{
	return rules_eval_re(r, s, strlen(s));
}

/* The raw body's first line, or each line of it, against pattern r. */
static bool raw_lines(struct rules_eval_re *r, const mime_part_t *p, bool first_only)
{
	if (p->raw == NULL)
		return false;
	const char *s = p->raw, *end = p->raw + p->raw_len;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (rules_eval_re(r, s, n))
			return true;
		if (first_only)
			break;
		s = nl ? nl + 1 : end;
	}
	return false;
}

static bool is_executable(const mime_part_t *p, const char *name)
{
	static struct rules_eval_re ext = {
	    .pattern = "\\.(?:ade|adp|asx|bas|bat|chm|cmd|com|cpl|crt|dll|exe|hlp|hta|inf|ins|isp|"
	               "js|jse|lnk|mda|mdb|mde|mdt|mdw|mdz|msc|msi|msp|mst|nws|ops|pcd|pif|prf|"
	               "reg|scf|scr\\??|sct|shb|shs|shm|swf|url|vb|vbe|vbs|vbx|vxd|wsc|wsf|wsh)$"};
	/* "MZ" and a PE header's first bytes, base64-encoded */
	static struct rules_eval_re b64 = {.pattern = "^TV[opqr].A..[AB].[AQgw][A-H].A"};
	static struct rules_eval_re uue = {.pattern = "^M35[GHIJK].`..`..*````"};
	if (*name && re(&ext, name))
		return true;
	if (p->encoding != NULL && strstr(p->encoding, "base64") != NULL && p->raw_len > 0 &&
	    raw_lines(&b64, p, true))
		return true;
	const char *ct = p->content_type ? p->content_type : "text/plain";
	if (strncmp(ct, "text", 4) == 0 && !isalnum((unsigned char)ct[4]) && ct[4] != '_')
		return raw_lines(&uue, p, false);
	return false;
}

static bool is_suspect_name(const mime_part_t *p, arena_t *a, const char *name)
{
	const char *ct = p->content_type ? p->content_type : "text/plain";
	if (*name == '\0' || strcmp(ct, "application/octet-stream") == 0)
		return false;
	const char *dot = strrchr(name, '.');
	const char *ext = dot ? dot + 1 : name;
	/* application/x-foo and application/vnd.foo count as application/foo */
	const char *slash = strchr(ct, '/');
	if (slash != NULL &&
	    (strncmp(slash + 1, "x-", 2) == 0 || strncmp(slash + 1, "vnd.", 4) == 0))
		ct = arena_sprintf(a, "%.*s/%s", (int)(slash - ct), ct,
		                   slash + 1 + (slash[1] == 'x' ? 2 : 4));
	static struct rules_eval_re text_ext = {.pattern = "^(?:txt|[px]?html?|xml)$"};
	static struct rules_eval_re text_ct = {
	    .pattern = "^(?:text/(?:plain|[px]?html?|english|sgml|xml|enriched|richtext)|"
	               "message/external-body)"};
	static struct rules_eval_re image_ext = {.pattern = "^(?:jpe?g|tiff?|gif|png)$"};
	static struct rules_eval_re image_ct = {.pattern = "^(?:image/|application/mac-binhex)"};
	static struct rules_eval_re app_ext = {.pattern = "^(?:bat|com|exe|pif|scr|swf|vbs)$"};
	static struct rules_eval_re app_ct = {.pattern = "^application/"};
	static struct rules_eval_re word_ct = {.pattern = "^application/.*word$"};
	static struct rules_eval_re ppt_ct = {.pattern = "^application/.*(?:powerpoint|ppt)$"};
	static struct rules_eval_re xls_ct = {.pattern = "^application/.*excel$"};
	return (re(&text_ext, ext) && !re(&text_ct, ct)) ||
	       (re(&image_ext, ext) && !re(&image_ct, ct)) ||
	       (strcmp(ext, "vcf") == 0 && strcmp(ct, "text/vcard") != 0) ||
	       (re(&app_ext, ext) && !re(&app_ct, ct)) ||
	       (strcmp(ext, "doc") == 0 && !re(&word_ct, ct)) ||
	       (strcmp(ext, "ppt") == 0 && !re(&ppt_ct, ct)) ||
	       (strcmp(ext, "xls") == 0 && !re(&xls_ct, ct));
}

/* Which of the two a message has, over its leaf parts (SpamAssassin's _check_attachments). */
static void check_parts(struct rules_evalenv *e, bool *exe, bool *suspect)
{
	*exe = *suspect = false;
	if (e->mi == NULL)
		return;
	size_t np = mime_part_count(e->mi);
	for (size_t i = 0; i < np; i++) {
		const mime_part_t *p = mime_part(e->mi, i);
		bool leaf = i + 1 >= np || mime_part(e->mi, i + 1)->depth <= p->depth;
		if (!leaf)
			continue;
		/* only Content-Type's name: SpamAssassin reads no Content-Disposition here */
		const char *name = ct_name(e->a, part_content_type(e->a, p->headers));
		*exe = *exe || is_executable(p, name);
		*suspect = *suspect || is_suspect_name(p, e->a, name);
	}
}

static long microsoft_executable(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	bool exe, suspect;
	check_parts(e, &exe, &suspect);
	return exe;
}

static long suspect_name(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	bool exe, suspect;
	check_parts(e, &exe, &suspect);
	return suspect;
}

const struct rules_evaldef rules_eval_antivirus_defs[] = {
    {"check_microsoft_executable", microsoft_executable, 0, 0, NULL},
    {"check_suspect_name", suspect_name, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
