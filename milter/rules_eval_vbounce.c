/*
 * rules_eval_vbounce.c - SpamAssassin's VBounce plugin: whether the site
 * listed its outgoing relays (welcomelist_bounce_relays, kept with the
 * welcomelists in rules_eval_wlbl.c), and whether a bounce quotes a
 * Received field naming one of them: then it answers mail really sent
 * from here and is no backscatter.
 */
#include "rules_int.h"

static long have_any_bounce_relays(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return rules_wlbl_have_bounce_relays(e->r);
}

/*
 * Each host-like word of s (n bytes) that pattern re's group 1 finds,
 * the next search starting after the whole match, as Perl's m//g does.
 */
static bool words_listed(struct rules_evalenv *e, struct rules_eval_re *re, const char *s, size_t n)
{
	size_t from = 0, start, len;
	while (from < n && rules_eval_re_find(re, s, n, from, &start, &len)) {
		if (rules_wlbl_bounce_relay(e->r, s + start, len))
			return true;
		from = start + len + 1; /* the blank after the word is part of the match */
	}
	return false;
}

/*
 * check_welcomelist_bounce_relays: a "Received:" line of the body text
 * (quoted with "> " or not) or of the message's body as sent (a bounced
 * message's header, its folded lines joined) with a word "x.y" that
 * welcomelist_bounce_relays lists.
 */
static long welcomelist_bounce_relays(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	static struct rules_eval_re rcvd = {.pattern = "^[> ]*Received:",
	                                    .options = PCRE2_CASELESS};
	static struct rules_eval_re word = {.pattern = " (\\S+\\.\\S+) "};
	static struct rules_eval_re word_ws = {.pattern = "\\s(\\S+\\.\\S+)\\s"};
	if (!rules_wlbl_have_bounce_relays(e->r))
		return 0;
	size_t blen = 0;
	const char *body = e->mi ? mime_body(e->mi, &blen) : NULL;
	for (const char *s = body, *end = body ? body + blen : NULL; s != NULL && s < end;) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
		if (rules_eval_re(&rcvd, s, n) && words_listed(e, &word, s, n))
			return 1;
		s = nl ? nl + 1 : end;
	}
	size_t plen = 0;
	const char *pristine = msg_body(e->m, &plen);
	static struct rules_eval_re any = {.pattern = "Received:", .options = PCRE2_CASELESS};
	/* the triage SpamAssassin makes; the body may hold NUL bytes */
	if (pristine == NULL || !rules_eval_re(&any, pristine, plen))
		return 0;
	/*
	 * The current field: a line, and the lines that continue it appended
	 * as they are (no blank put between), as SpamAssassin joins them.
	 */
	abuf_t field;
	abuf_init(&field, e->a, 256);
	bool found = false;
	for (const char *line = pristine, *end = pristine + plen; line < end;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t n = nl ? (size_t)(nl - line) : (size_t)(end - line);
		const char *next = nl ? nl + 1 : end;
		if (n > 0 && line[n - 1] == '\r')
			n--; /* the lines as a file with plain newlines gives them */
		if (!found && !rules_eval_re(&rcvd, line, n)) {
			line = next;
			continue;
		}
		found = true;
		if (n == 0 || !(line[0] == ' ' || line[0] == '\t' || line[0] == '\r' ||
		                line[0] == '\f' || line[0] == '\v'))
			field.len = 0;
		abuf_append(&field, line, n);
		if (rules_eval_re(&rcvd, field.data, field.len) &&
		    words_listed(e, &word_ws, field.data, field.len))
			return 1;
		line = next;
	}
	return 0;
}

const struct rules_evaldef rules_eval_vbounce_defs[] = {
    {"have_any_bounce_relays", have_any_bounce_relays, 0, 0, NULL},
    {"check_welcomelist_bounce_relays", welcomelist_bounce_relays, 0, 0, NULL},
    {"check_whitelist_bounce_relays", welcomelist_bounce_relays, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
