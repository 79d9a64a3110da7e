/*
 * rules_ascii.c - a rule's pattern as it stands on pure-ASCII text.
 * SpamAssassin's ReplaceTags rules spell every letter as a class of
 * look-alikes, mostly multi-byte UTF-8 sequences: tens of KB a rule, cut
 * into a score of pieces for PCRE2, each run over every paragraph. On a
 * paragraph with no byte above 0x7f no branch that needs one can match,
 * so a copy without those branches gives the same answer there, is a
 * fraction of the size, and runs several times faster.
 *
 * Written by hand because PCRE2 offers no way to rewrite a pattern. The
 * reduction is conservative: it only drops a branch, a class member or
 * an optional atom that needs a byte above 0x7f, copies everything else
 * as written, and gives up (NULL) on any construct whose meaning it does
 * not follow (backreferences, named groups, \Q, extended mode,
 * conditionals, verbs, a quantifier after a comment) and on what PCRE2
 * 10.42's auto-possessification gets wrong, since a changed copy would
 * not get it wrong the same way: possessive quantifiers (see
 * quantifier()), atomic groups and \R. An option setting such as (?i)
 * holds to the end of its group, across '|' (PCRE2's "(a(?i)b|c)"
 * matches "C"), so the settings of a dropped branch are kept where the
 * branch was. Group numbers may change, so it is used only for
 * match/no-match and the whole match, never for captures. The unit tests
 * (random patterns among them) and the rules fuzzer check that both
 * patterns agree on ASCII text.
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "rules_int.h"

struct red {
	const char *p;
	size_t n, i;
	char *out;
	size_t on, ocap;
	bool bail;
	bool changed;
	int depth;
	/* the option settings of the branches being read, in order (a stack:
	 * each branch reads from where it started; see alt()) */
	char *opts;
	size_t optn, optcap;
};

#define RED_MAX_DEPTH 200

/* Appends s to the growing buffer *buf (*len bytes used, *cap allocated),
 * leaving room for a NUL. */
static void put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*buf = xalloc_realloc(*buf, *cap);
	}
	memcpy(*buf + *len, s, n);
	*len += n;
}

static void emit(struct red *r, const char *s, size_t n)
{
	put(&r->out, &r->on, &r->ocap, s, n);
}

/*
 * An escape at r->i (just after the backslash is r->i + 1). Sets *val to
 * the byte it stands for (-1: not one byte - a class escape, an
 * assertion) and advances past it; sets r->bail on escapes whose meaning
 * the reduction does not follow.
 */
static void escape(struct red *r, long *val, bool in_class)
{
	size_t i = r->i + 1;
	*val = -1;
	if (i >= r->n) {
		r->bail = true;
		return;
	}
	char c = r->p[i++];
	switch (c) {
	case 'x':
		if (i < r->n && r->p[i] == '{') {
			long v = 0;
			size_t j = i + 1;
			for (; j < r->n && r->p[j] != '}'; j++) {
				int h = rules_hexval(r->p[j]);
				if (h < 0 || v > 0xffff) {
					r->bail = true;
					return;
				}
				v = v * 16 + h;
			}
			if (j >= r->n || j == i + 1) {
				r->bail = true;
				return;
			}
			*val = v;
			i = j + 1;
		} else {
			long v = 0;
			int k = 0;
			for (; k < 2 && i < r->n && rules_hexval(r->p[i]) >= 0; k++)
				v = v * 16 + rules_hexval(r->p[i++]);
			*val = v; /* "\x" alone is NUL */
		}
		break;
	case '0': {
		long v = 0;
		for (int k = 0; k < 2 && i < r->n && r->p[i] >= '0' && r->p[i] <= '7'; k++)
			v = v * 8 + (r->p[i++] - '0');
		*val = v;
	} break;
	case 'n': *val = '\n'; break;
	case 't': *val = '\t'; break;
	case 'r': *val = '\r'; break;
	case 'f': *val = '\f'; break;
	case 'e': *val = 27; break;
	case 'a': *val = 7; break;
	case 'c':
		if (i >= r->n) {
			r->bail = true;
			return;
		}
		*val = toupper((unsigned char)r->p[i++]) ^ 0x40;
		break;
	case 'p':
	case 'P':
		if (i < r->n && r->p[i] == '{') {
			const char *e = memchr(r->p + i, '}', r->n - i);
			if (e == NULL) {
				r->bail = true;
				return;
			}
			i = (size_t)(e - r->p) + 1;
		} else {
			i++;
		}
		break;
	case 'd':
	case 'D':
	case 'w':
	case 'W':
	case 's':
	case 'S':
	case 'h':
	case 'H':
	case 'v':
	case 'V': break;
	case 'R':
		/* PCRE2 10.42 makes \R* possessive before \s ("a\R*\s" misses "a\nb"):
		 * as with possessive quantifiers (see quantifier()), not followed */
		r->bail = true;
		return;
	case 'b':
	case 'B':
	case 'A':
	case 'z':
	case 'Z':
	case 'G':
	case 'K':
	case 'X':
		if (in_class && c != 'b') /* in a class only \b (backspace) of these means a byte */
			r->bail = true;
		if (in_class)
			*val = 8;
		break;
	case 'E': break; /* \E without \Q: nothing */
	default:
		/* \1-\9, \g, \k (backreferences), \Q, \N, \o, \u and the like: not followed */
		if (isalnum((unsigned char)c)) {
			r->bail = true;
			return;
		}
		*val = (unsigned char)c; /* an escaped punctuation byte stands for itself */
	}
	if (*val > 0xff)
		r->bail = true; /* PCRE2 refuses it without UTF anyway */
	r->i = i;
}

/* A quantifier at r->i: its minimum in *min; false if none is there. */
static bool quantifier(struct red *r, unsigned *min)
{
	if (r->i >= r->n)
		return false;
	char c = r->p[r->i];
	size_t i = r->i + 1;
	if (c == '*' || c == '?')
		*min = 0;
	else if (c == '+')
		*min = 1;
	else if (c == '{') {
		size_t j = i;
		unsigned long v = 0;
		while (j < r->n && isdigit((unsigned char)r->p[j]) && v < 100000)
			v = v * 10 + (unsigned long)(r->p[j++] - '0');
		if (j == i)
			return false; /* "{,n}" and "{x" are literal in PCRE2 10.42 */
		if (j < r->n && r->p[j] == ',') {
			j++;
			while (j < r->n && isdigit((unsigned char)r->p[j]))
				j++;
		}
		if (j >= r->n || r->p[j] != '}')
			return false;
		*min = (unsigned)v;
		i = j + 1;
	} else {
		return false;
	}
	if (i < r->n && r->p[i] == '+') {
		/*
		 * PCRE2 10.42's auto-possessification reads an optional
		 * possessive group as if it had to match: in "x?(?:b)?+x" it
		 * makes x? possessive (b cannot start with x), so the pattern
		 * never matches a lone "x"; what it decides then hangs on the
		 * group's contents. A copy with other contents (or without the
		 * group) would match where the pattern does not, so a pattern
		 * with a possessive quantifier keeps no ASCII form.
		 */
		r->bail = true;
		return false;
	}
	if (i < r->n && r->p[i] == '?')
		i++;
	emit(r, r->p + r->i, i - r->i);
	r->i = i;
	return true;
}

static void emit_byte(struct red *r, long v)
{
	if (isalnum((int)v)) { /* v < 0x80 here */
		char c = (char)v;
		emit(r, &c, 1);
		return;
	}
	static const char hex[] = "0123456789abcdef";
	char b[4] = {'\\', 'x', hex[(v >> 4) & 0xf], hex[v & 0xf]};
	emit(r, b, sizeof(b));
}

/* A class at r->i ('['); returns false if it can match no ASCII byte. */
static bool class(struct red *r)
{
	size_t start = r->i;
	size_t i = r->i + 1;
	bool neg = i < r->n && r->p[i] == '^';
	if (neg)
		i++;
	size_t mark = r->on;
	emit(r, "[", 1);
	if (neg)
		emit(r, "^", 1);
	bool any = false, first = true;
	while (i < r->n && !r->bail) {
		char c = r->p[i];
		if (c == ']' && !first)
			break;
		first = false;
		if (c == '[' && i + 1 < r->n &&
		    (r->p[i + 1] == ':' || r->p[i + 1] == '.' || r->p[i + 1] == '=')) {
			/* a POSIX class: kept as written */
			const char *e =
			    r->p[i + 1] == ':' ? memmem(r->p + i + 2, r->n - i - 2, ":]", 2) : NULL;
			if (e == NULL) {
				r->bail = true;
				break;
			}
			emit(r, r->p + i, (size_t)(e - r->p) + 2 - i);
			i = (size_t)(e - r->p) + 2;
			any = true;
			continue;
		}
		long lo;
		size_t mstart = i;
		if (c == '\\') {
			r->i = i;
			escape(r, &lo, true);
			i = r->i;
		} else {
			lo = (unsigned char)c;
			i++;
		}
		if (r->bail)
			break;
		if (lo < 0) { /* \d, \w, \p{..}: kept as written */
			emit(r, r->p + mstart, i - mstart);
			any = true;
			continue;
		}
		long hi = lo;
		if (i + 1 < r->n && r->p[i] == '-' && r->p[i + 1] != ']') {
			size_t j = i + 1;
			if (r->p[j] == '\\') {
				r->i = j;
				escape(r, &hi, true);
				j = r->i;
				if (hi < 0) {
					r->bail = true; /* "a-\d" */
					break;
				}
			} else if (r->p[j] == '[') {
				r->bail = true;
				break;
			} else {
				hi = (unsigned char)r->p[j++];
			}
			i = j;
			if (hi < lo) {
				r->bail = true;
				break;
			}
		}
		if (neg || lo < 0x80) {
			/* a negated class keeps every member; a range reaching above 0x7f keeps its
			 * ASCII end only */
			emit_byte(r, lo);
			if (hi != lo) {
				emit(r, "-", 1);
				emit_byte(r, neg || hi < 0x80 ? hi : 0x7f);
			}
			any = true;
		}
		if (!neg && hi >= 0x80)
			r->changed = true;
	}
	if (r->bail || i >= r->n) {
		r->bail = true;
		return false;
	}
	emit(r, "]", 1);
	r->i = i + 1;
	if (!neg && !any) {
		r->on = mark;
		return false;
	}
	(void)start;
	return true;
}

static bool alt(struct red *r);

/* A group at r->i ('('); returns false if it cannot match on ASCII. */
static bool group(struct red *r)
{
	size_t i = r->i + 1;
	const char *p = r->p;
	bool negative = false;
	size_t open = 1;
	if (i < r->n && p[i] == '*') {
		r->bail = true; /* (*VERB) */
		return false;
	}
	if (i < r->n && p[i] == '?') {
		if (i + 1 >= r->n) {
			r->bail = true;
			return false;
		}
		char c = p[i + 1];
		if (c == '>') {
			/* atomic: PCRE2 10.42 makes \s* possessive before (?>(?:X)*?), as it
			 * does before possessive quantifiers (see quantifier()) */
			r->bail = true;
			return false;
		}
		if (c == ':' || c == '=') {
			open = 3;
		} else if (c == '!') {
			open = 3;
			negative = true;
		} else if (c == '<' && i + 2 < r->n && (p[i + 2] == '=' || p[i + 2] == '!')) {
			open = 4;
			negative = p[i + 2] == '!';
		} else if (c == '#') {
			const char *e = memchr(p + i, ')', r->n - i);
			if (e == NULL) {
				r->bail = true;
				return false;
			}
			r->i = (size_t)(e - p) + 1; /* a comment: dropped */
			/* a quantifier after it quantifies the item before it */
			if (r->i < r->n && strchr("*+?{", p[r->i]) != NULL)
				r->bail = true;
			return !r->bail;
		} else {
			/* option settings (?i) (?s-m) (?i:...); anything else is not followed */
			size_t j = i + 1;
			while (j < r->n &&
			       (p[j] == 'i' || p[j] == 'm' || p[j] == 's' || p[j] == 'U' ||
			        p[j] == 'J' || p[j] == 'n' || p[j] == '-'))
				j++;
			if (j == i + 1 || j >= r->n || (p[j] != ')' && p[j] != ':')) {
				r->bail = true;
				return false;
			}
			if (p[j] == ')') {
				emit(r, p + r->i, j + 1 - r->i);
				put(&r->opts, &r->optn, &r->optcap, p + r->i, j + 1 - r->i);
				r->i = j + 1;
				return true;
			}
			open = j + 1 - r->i;
		}
	}
	if (++r->depth > RED_MAX_DEPTH) {
		r->bail = true;
		return false;
	}
	size_t start = r->i, mark = r->on;
	bool changed = r->changed;
	emit(r, p + r->i, open);
	r->i += open;
	bool ok = alt(r);
	r->depth--;
	if (r->bail || r->i >= r->n || p[r->i] != ')') {
		r->bail = true;
		return false;
	}
	r->i++;
	if (negative) {
		/* (?!X) kept as written means on ASCII text what it meant: whatever X
		 * reduces to, the assertion holds where it held */
		r->on = mark;
		r->changed = changed;
		emit(r, p + start, r->i - start);
		return true;
	}
	emit(r, ")", 1);
	if (!ok)
		r->on = mark;
	return ok;
}

/* A sequence up to '|', ')' or the end; false if some mandatory atom cannot match. */
static bool seq(struct red *r)
{
	bool ok = true;
	while (r->i < r->n && !r->bail) {
		char c = r->p[r->i];
		if (c == '|' || c == ')')
			break;
		size_t mark = r->on;
		bool atom;
		if (c == '(') {
			atom = group(r);
		} else if (c == '[') {
			atom = class(r);
		} else if (c == '\\') {
			size_t s = r->i;
			long v;
			escape(r, &v, false);
			atom = v < 0x80;
			if (atom)
				emit(r, r->p + s, r->i - s);
		} else if (c == '*' || c == '+' || c == '?' || c == '{') {
			/* a quantifier with nothing before it (after a dropped atom: handled
			 * below) or a literal "{" */
			unsigned m;
			if (c != '{' || quantifier(r, &m)) {
				r->bail = true;
				break;
			}
			emit(r, "{", 1);
			r->i++;
			atom = true;
		} else {
			atom = (unsigned char)c < 0x80;
			if (atom)
				emit(r, &c, 1);
			r->i++;
		}
		if (r->bail)
			break;
		unsigned min = 1;
		bool q = quantifier(r, &min);
		if (r->bail)
			break;
		if (!atom) {
			r->changed = true;
			r->on = mark; /* the atom (and its quantifier) go */
			if (!q || min > 0)
				ok = false;
		}
	}
	return ok;
}

/*
 * Branches up to the group's ')' or the end. The option settings a
 * dropped branch held at this level (r->opts past base: a nested group's
 * are gone by the time it ends) stay where the branch was: set at the end
 * of the branch before, or at the head of the group, they hold for the
 * branches after it as they did.
 */
static bool alt(struct red *r)
{
	bool any = false, first = true;
	for (;;) {
		size_t mark = r->on, base = r->optn;
		if (!first && any)
			emit(r, "|", 1);
		bool ok = seq(r);
		if (r->bail)
			return false;
		if (ok)
			any = true;
		else {
			r->on = mark; /* the branch goes, with its "|" */
			if (r->optn > base)
				emit(r, r->opts + base, r->optn - base);
			r->changed = true;
		}
		r->optn = base;
		first = false;
		if (r->i < r->n && r->p[r->i] == '|') {
			r->i++;
			continue;
		}
		return any;
	}
}

char *rules_ascii_reduce(const char *pat, size_t len, uint32_t options, const uint8_t *tables)
{
	/* the result is a C string: a NUL in the pattern would cut it */
	if ((options & (PCRE2_EXTENDED | PCRE2_EXTENDED_MORE | PCRE2_LITERAL | PCRE2_UTF)) ||
	    memchr(pat, '\0', len) != NULL)
		return NULL;
	/* caseless matching must not pair an ASCII byte with a high one */
	const uint8_t *fcc = tables + 256;
	for (int c = 0; c < 256; c++)
		if ((c < 0x80) != (fcc[c] < 0x80))
			return NULL;
	struct red r = {.p = pat, .n = len};
	bool ok = alt(&r);
	free(r.opts);
	if (r.bail || r.i != len || !r.changed) {
		free(r.out);
		return NULL;
	}
	if (!ok) {
		/* nothing can match on ASCII text: a pattern that never matches */
		r.on = 0;
		emit(&r, "(?!)", 4);
	}
	r.out[r.on] = '\0';
	return r.out;
}
