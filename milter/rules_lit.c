/*
 * rules_lit.c - the literal prefilter. Most rule patterns can only match
 * text that contains one of a few fixed strings ("viagra", "click here"),
 * so instead of running ~1,500 regexes on every view we search each view
 * once for all those strings and run only the rules whose strings occur.
 *
 * Why literals first and Vectorscan's prefilter mode over whole patterns
 * only for the rest (rules_hs.c): a prefilter database of SpamAssassin's
 * rules takes about a minute to build (so it is built in the background
 * and cached on disk), while a literal database builds in well under a
 * second at every load and serves from the first message.
 *
 * Safety: a literal is taken only from parts of the pattern every match
 * must pass through (not under ?, *, {0,}, lookarounds or one branch of an
 * alternation), and compared case-insensitively; bytes that fold under
 * Latin-1 end a literal. So the prefilter can only let too many rules
 * through, never too few.
 */
#include "config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_VECTORSCAN
#include <hs/hs.h>
#endif

#include "rules_int.h"

#define LIT_MIN_BYTES 3  /* shorter literals pass too much to be worth it */
#define LIT_MAX_BYTES 64 /* longer ones are cut: a prefix is as selective */
#define LIT_MAX_SET   32 /* alternatives per rule before giving up */

struct litset {
	bool valid; /* false: no constraint known */
	char **s;
	size_t *n;
	size_t count;
};

static void ls_free(struct litset *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->s[i]);
	free(l->s);
	free(l->n);
	memset(l, 0, sizeof(*l));
}

static void ls_add(struct litset *l, const char *s, size_t n)
{
	if (n > LIT_MAX_BYTES)
		n = LIT_MAX_BYTES;
	for (size_t i = 0; i < l->count; i++)
		if (l->n[i] == n && memcmp(l->s[i], s, n) == 0)
			return;
	l->s = xalloc_realloc(l->s, (l->count + 1) * sizeof(char *));
	l->n = xalloc_realloc(l->n, (l->count + 1) * sizeof(size_t));
	l->s[l->count] = xalloc_malloc(n + 1);
	memcpy(l->s[l->count], s, n);
	l->s[l->count][n] = '\0';
	l->n[l->count] = n;
	l->count++;
	l->valid = true;
}

static size_t ls_min(const struct litset *l)
{
	size_t m = (size_t)-1;
	for (size_t i = 0; i < l->count; i++)
		if (l->n[i] < m)
			m = l->n[i];
	return m;
}

/* Is b better than a as a filter? Longer shortest literal, then fewer literals. */
static bool ls_better(const struct litset *b, const struct litset *a)
{
	if (!b->valid || b->count == 0)
		return false;
	if (!a->valid || a->count == 0)
		return true;
	size_t mb = ls_min(b), ma = ls_min(a);
	if (mb != ma)
		return mb > ma;
	return b->count < a->count;
}

struct lex {
	const char *p, *end;
	bool x;    /* extended: blanks and #-comments are not pattern */
	bool fail; /* a construct we do not model: no literal for the rule */
};

/* The C library's tolower() follows the locale; the prefilter must not. */
static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static bool foldable_high(unsigned char c)
{
	return (c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0xE0 && c <= 0xFE && c != 0xF7);
}

static void skip_x(struct lex *lx)
{
	if (!lx->x)
		return;
	while (lx->p < lx->end) {
		if (isspace((unsigned char)*lx->p)) {
			lx->p++;
		} else if (*lx->p == '#') {
			while (lx->p < lx->end && *lx->p != '\n')
				lx->p++;
		} else {
			break;
		}
	}
}

/*
 * Reads a quantifier at p, if any: *min is its minimum (1 when none).
 * Returns true when there was one.
 */
static bool quantifier(struct lex *lx, unsigned *min)
{
	skip_x(lx);
	*min = 1;
	if (lx->p >= lx->end)
		return false;
	char c = *lx->p;
	bool q = false;
	if (c == '?' || c == '*') {
		*min = 0;
		lx->p++;
		q = true;
	} else if (c == '+') {
		lx->p++;
		q = true;
	} else if (c == '{') {
		const char *s = lx->p + 1;
		if (s < lx->end && isdigit((unsigned char)*s)) {
			unsigned v = 0;
			while (s < lx->end && isdigit((unsigned char)*s))
				v = v * 10 + (unsigned)(*s++ - '0');
			if (s < lx->end && *s == ',')
				s++;
			while (s < lx->end && isdigit((unsigned char)*s))
				s++;
			if (s < lx->end && *s == '}') {
				*min = v;
				lx->p = s + 1;
				q = true;
			}
		}
	}
	if (q && lx->p < lx->end && (*lx->p == '?' || *lx->p == '+'))
		lx->p++; /* lazy or possessive */
	return q;
}

/* Atom kinds */
enum { A_LIT, A_CHARTYPE, A_ZERO, A_GROUP_DONE, A_END };

static struct litset parse_alt(struct lex *lx, int depth);

static void flush(struct litset *best, char *run, size_t *rn)
{
	if (*rn > 0) {
		struct litset one = {0};
		ls_add(&one, run, *rn);
		if (ls_better(&one, best)) {
			ls_free(best);
			*best = one;
		} else {
			ls_free(&one);
		}
	}
	*rn = 0;
}

/* Reads one escape after '\\'; *lit set when it is a literal byte. */
static int escape(struct lex *lx, int *lit)
{
	if (lx->p >= lx->end) {
		lx->fail = true;
		return A_END;
	}
	char c = *lx->p++;
	if (!isalnum((unsigned char)c)) {
		*lit = (unsigned char)c;
		return A_LIT;
	}
	switch (c) {
	case 't': *lit = '\t'; return A_LIT;
	case 'n': *lit = '\n'; return A_LIT;
	case 'r': *lit = '\r'; return A_LIT;
	case 'f': *lit = '\f'; return A_LIT;
	case 'e': *lit = 0x1b; return A_LIT;
	case 'a': *lit = 0x07; return A_LIT;
	case 'x': {
		int v = 0;
		if (lx->p < lx->end && *lx->p == '{') {
			const char *s = lx->p + 1;
			while (s < lx->end && rules_hexval(*s) >= 0) {
				v = v * 16 + rules_hexval(*s++);
				if (v > 0xFF) {
					lx->fail = true;
					return A_END;
				}
			}
			if (s >= lx->end || *s != '}') {
				lx->fail = true;
				return A_END;
			}
			lx->p = s + 1;
		} else {
			for (int k = 0; k < 2 && lx->p < lx->end && rules_hexval(*lx->p) >= 0; k++)
				v = v * 16 + rules_hexval(*lx->p++);
		}
		*lit = v;
		return A_LIT;
	}
	case 'd':
	case 'D':
	case 'w':
	case 'W':
	case 's':
	case 'S':
	case 'h':
	case 'H':
	case 'v':
	case 'V':
	case 'N':
	case 'R':
	case 'X':
	case 'C': return A_CHARTYPE;
	case 'p':
	case 'P':
		if (lx->p < lx->end && *lx->p == '{') {
			while (lx->p < lx->end && *lx->p != '}')
				lx->p++;
			if (lx->p < lx->end)
				lx->p++;
		} else if (lx->p < lx->end) {
			lx->p++;
		}
		return A_CHARTYPE;
	case 'c':
		if (lx->p < lx->end)
			lx->p++;
		return A_CHARTYPE;
	case 'b':
	case 'B':
	case 'A':
	case 'z':
	case 'Z':
	case 'G':
	case 'K': return A_ZERO;
	default:
		if (c >= '0' && c <= '9') {
			while (lx->p < lx->end && isdigit((unsigned char)*lx->p))
				lx->p++;
			return A_CHARTYPE; /* back-reference or octal: not modelled */
		}
		lx->fail = true; /* \Q, \g, \k, \E ...: give up */
		return A_END;
	}
}

static void skip_class(struct lex *lx)
{
	/* at the byte after '[' */
	if (lx->p < lx->end && *lx->p == '^')
		lx->p++;
	if (lx->p < lx->end && *lx->p == ']')
		lx->p++;
	while (lx->p < lx->end && *lx->p != ']') {
		if (*lx->p == '\\')
			lx->p += 2;
		else if (*lx->p == '[' && lx->p + 1 < lx->end && lx->p[1] == ':') {
			const char *e = memmem(lx->p + 2, (size_t)(lx->end - lx->p - 2), ":]", 2);
			lx->p = e ? e + 2 : lx->p + 1;
		} else
			lx->p++;
	}
	if (lx->p < lx->end)
		lx->p++;
	else
		lx->fail = true;
}

/* A sequence up to '|' or ')' (not consumed) or the end. */
static struct litset parse_seq(struct lex *lx, int depth)
{
	struct litset best = {0};
	char run[LIT_MAX_BYTES + 1];
	size_t rn = 0;
	while (!lx->fail) {
		skip_x(lx);
		if (lx->p >= lx->end || *lx->p == '|' || *lx->p == ')')
			break;
		char c = *lx->p++;
		int lit = -1;
		int kind;
		struct litset sub = {0};
		if (c == '\\') {
			kind = escape(lx, &lit);
		} else if (c == '[') {
			skip_class(lx);
			kind = A_CHARTYPE;
		} else if (c == '.') {
			kind = A_CHARTYPE;
		} else if (c == '^' || c == '$') {
			kind = A_ZERO;
		} else if (c == '(') {
			bool cuttable = true, zero = false;
			if (lx->p < lx->end && *lx->p == '?') {
				const char *s = lx->p + 1;
				if (s >= lx->end) {
					lx->fail = true;
					break;
				}
				if (*s == '#') {
					while (lx->p < lx->end && *lx->p != ')')
						lx->p++;
					if (lx->p < lx->end)
						lx->p++;
					continue; /* a comment is nothing */
				}
				if (*s == ':') {
					lx->p = s + 1;
				} else if (*s == '=' || *s == '!') {
					lx->p = s + 1;
					zero = true;
				} else if (*s == '<' && s + 1 < lx->end &&
				           (s[1] == '=' || s[1] == '!')) {
					lx->p = s + 2;
					zero = true;
				} else if (*s == '<' || *s == '\'' ||
				           (*s == 'P' && s + 1 < lx->end && s[1] == '<')) {
					char close = *s == '\'' ? '\'' : '>';
					while (s < lx->end && *s != close)
						s++;
					lx->p = s + 1;
				} else if (*s == '>') {
					lx->p = s + 1;
				} else if (*s == '|') {
					lx->p = s + 1;
					cuttable = false;
				} else if (isalpha((unsigned char)*s) || *s == '-' || *s == '^') {
					const char *t = s;
					while (t < lx->end && (isalpha((unsigned char)*t) ||
					                       *t == '-' || *t == '^'))
						t++;
					if (memchr(s, 'x', (size_t)(t - s)) != NULL) {
						lx->fail =
						    true; /* (?x) changes how to read the rest */
						break;
					}
					if (t < lx->end && *t == ')') {
						lx->p =
						    t + 1; /* "(?i)": an option switch, no atom */
						continue;
					}
					if (t >= lx->end || *t != ':') {
						lx->fail = true;
						break;
					}
					lx->p = t + 1;
				} else {
					lx->fail = true; /* recursion, conditionals, callouts */
					break;
				}
			}
			sub = parse_alt(lx, depth + 1);
			if (lx->p >= lx->end || *lx->p != ')')
				lx->fail = true;
			else
				lx->p++;
			if (zero || !cuttable) {
				ls_free(&sub);
				kind = A_ZERO;
			} else {
				kind = A_GROUP_DONE;
			}
		} else {
			lit = (unsigned char)c;
			kind = A_LIT;
		}
		if (lx->fail) {
			ls_free(&sub);
			break;
		}
		unsigned min;
		bool quant = quantifier(lx, &min);
		if (kind == A_LIT && foldable_high((unsigned char)lit))
			kind = A_CHARTYPE;
		switch (kind) {
		case A_LIT:
			if (quant && min == 0) {
				flush(&best, run, &rn);
			} else {
				if (rn < LIT_MAX_BYTES)
					run[rn++] = ascii_lower((char)lit);
				if (quant)
					flush(&best, run, &rn);
			}
			break;
		case A_GROUP_DONE:
			flush(&best, run, &rn);
			if (!(quant && min == 0) && ls_better(&sub, &best)) {
				ls_free(&best);
				best = sub;
			} else {
				ls_free(&sub);
			}
			break;
		default: flush(&best, run, &rn); break;
		}
	}
	flush(&best, run, &rn);
	return best;
}

static struct litset parse_alt(struct lex *lx, int depth)
{
	struct litset all = {0};
	bool ok = depth < 32;
	for (;;) {
		struct litset one = parse_seq(lx, depth);
		if (!one.valid || one.count == 0 || lx->fail)
			ok = false;
		if (ok) {
			for (size_t i = 0; i < one.count; i++)
				ls_add(&all, one.s[i], one.n[i]);
			if (all.count > LIT_MAX_SET)
				ok = false;
		}
		ls_free(&one);
		if (lx->fail || lx->p >= lx->end || *lx->p != '|')
			break;
		lx->p++;
	}
	if (!ok)
		ls_free(&all);
	return all;
}

void rules_lit_extract(struct rule *ru)
{
	if (ru->pattern == NULL || ru->type == RULES_T_MIMEHEADER || ru->type == RULES_T_META)
		return;
	size_t n = strlen(ru->pattern);
	struct lex lx = {
	    .p = ru->pattern, .end = ru->pattern + n, .x = (ru->re_options & PCRE2_EXTENDED) != 0};
	struct litset l = parse_alt(&lx, 0);
	if (lx.fail || lx.p != lx.end || !l.valid || l.count == 0 || ls_min(&l) < LIT_MIN_BYTES) {
		ls_free(&l);
		return;
	}
	ru->lits = l.s;
	ru->litlen = l.n;
	ru->nlits = l.count;
}

/* ---------------------------------------------------------------- prefilter */

struct pf_type {
	/* rules of this type with literals, and the flat literal table */
	size_t *lit_rule; /* literal i belongs to rule lit_rule[i] */
	const char **lit;
	size_t *litlen;
	size_t nlit;
	size_t *always; /* rules without literals */
	size_t nalways;
#ifdef HAVE_VECTORSCAN
	hs_database_t *db;
#endif
};

struct rules_prefilter {
	struct pf_type t[RULES_T_N];
#ifdef HAVE_VECTORSCAN
	hs_database_t *dbs[RULES_T_N];     /* the literal databases, for the scratch pool */
	const struct rules_hs_engine *eng; /* their scanner */
	struct rules_scratch_pool pool;
#endif
};

#ifdef HAVE_VECTORSCAN
void rules_scratch_pool_init(struct rules_scratch_pool *p)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
}

void rules_scratch_pool_fini(struct rules_scratch_pool *p)
{
	for (size_t i = 0; i < p->n; i++)
		hs_free_scratch(p->free[i]);
	free(p->free);
	pthread_mutex_destroy(&p->lock);
}

hs_scratch_t *rules_scratch_get(struct rules_scratch_pool *p, hs_database_t *const *dbs, size_t n)
{
	hs_scratch_t *s = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->n > 0)
		s = p->free[--p->n];
	pthread_mutex_unlock(&p->lock);
	if (s != NULL)
		return s;
	for (size_t i = 0; i < n; i++)
		if (dbs[i] != NULL && hs_alloc_scratch(dbs[i], &s) != HS_SUCCESS) {
			hs_free_scratch(s);
			return NULL;
		}
	return s;
}

void rules_scratch_put(struct rules_scratch_pool *p, hs_scratch_t *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 8;
		p->free = xalloc_realloc(p->free, p->cap * sizeof(*p->free));
	}
	p->free[p->n++] = s;
	pthread_mutex_unlock(&p->lock);
}

static int on_match(unsigned int id, unsigned long long from, unsigned long long to,
                    unsigned int flags, void *ctx);
#endif

/* The span that wholly contains [from, to), or -1. */
static long span_of(const struct pf_result *res, size_t from, size_t to)
{
	size_t lo = 0, hi = res->nspans;
	while (lo < hi) { /* first span starting after `from` */
		size_t mid = (lo + hi) / 2;
		if (res->span_off[mid] <= from)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return -1;
	size_t k = lo - 1;
	return to <= res->span_off[k] + res->span_len[k] ? (long)k : -1;
}

/*
 * Records that literal `lit` occurs at [from, to) of the text. Occurrences
 * must come in text order per rule (Vectorscan reports by end offset; the
 * memmem path lists one literal's occurrences in order).
 */
static void found(const struct pf_type *pt, struct pf_result *res, size_t lit, size_t from,
                  size_t to)
{
	size_t ri = pt->lit_rule[lit];
	if (res->want[ri] == PF_ALL)
		return;
	long k = span_of(res, from, to);
	if (k < 0 || (res->rule_span != NULL && res->rule_span[ri] != (uint32_t)k))
		return;
	rules_pf_list(res, ri, (uint32_t)k);
}

void rules_pf_list(struct pf_result *res, size_t ri, uint32_t k)
{
	if (res->want[ri] == PF_ALL)
		return;
	if (res->want[ri] == PF_LISTED && res->nodes[res->tail[ri] - 1].span >= k)
		return; /* occurrences come in text order: already listed */
	if (res->nnodes == res->cap)
		res->nodes = arena_grow(res->a, res->nodes, res->nnodes, &res->cap,
		                        sizeof(*res->nodes), 256);
	res->nodes[res->nnodes] = (struct pf_node){.span = k, .next = 0};
	uint32_t id = (uint32_t)++res->nnodes;
	if (res->want[ri] == PF_LISTED)
		res->nodes[res->tail[ri] - 1].next = id;
	else
		res->head[ri] = id;
	res->tail[ri] = id;
	res->want[ri] = PF_LISTED;
}

#ifdef HAVE_VECTORSCAN
struct hs_ctx {
	const struct pf_type *pt;
	struct pf_result *res;
};

static int on_match(unsigned int id, unsigned long long from, unsigned long long to,
                    unsigned int flags, void *ctx)
{
	struct hs_ctx *c = ctx;
	size_t n = c->pt->litlen[id];
	found(c->pt, c->res, id, (size_t)to - n, (size_t)to);
	return 0;
}
#endif

struct rules_prefilter *rules_prefilter_build(rules_t *r)
{
	struct rules_prefilter *pf = xalloc_calloc(1, sizeof(*pf));
#ifdef HAVE_VECTORSCAN
	rules_scratch_pool_init(&pf->pool);
#endif
	/* a Vectorscan that misses its probes' matches would skip matching rules */
	bool use_hs = false, hs_ok = true;
#ifdef HAVE_VECTORSCAN
	if (!r->opts.prefilter_memmem)
		pf->eng = rules_hs_engine(r);
	use_hs = pf->eng != NULL;
#endif
	for (int type = 0; type < RULES_T_META; type++) {
		if (type == RULES_T_MIMEHEADER)
			continue;
		struct pf_type *pt = &pf->t[type];
		size_t nl = 0;
		for (size_t oi = 0; oi < r->norder[type]; oi++)
			nl += r->v[r->order[type][oi]].nlits;
		pt->lit_rule = xalloc_calloc(nl + 1, sizeof(size_t));
		pt->lit = xalloc_calloc(nl + 1, sizeof(char *));
		pt->litlen = xalloc_calloc(nl + 1, sizeof(size_t));
		pt->always = xalloc_calloc(r->norder[type] + 1, sizeof(size_t));
		for (size_t oi = 0; oi < r->norder[type]; oi++) {
			size_t ri = r->order[type][oi];
			struct rule *ru = &r->v[ri];
			/*
			 * A header rule that hits when its pattern does not match (!~),
			 * or that matches a stand-in for an absent field, runs anyway.
			 */
			if (ru->nlits == 0 || ru->negate || ru->if_unset != NULL) {
				pt->always[pt->nalways++] = ri;
				continue;
			}
			if (type == RULES_T_HEADER) {
				if (r->hkey_lit == NULL) {
					r->hkey_lit = xalloc_calloc(r->nhkeys + 1, 1);
					r->rule_hkey = xalloc_calloc(r->n + 1, sizeof(uint32_t));
				}
				r->hkey_lit[ru->hkey] = 1;
				r->rule_hkey[ri] = (uint32_t)ru->hkey;
			}
			for (size_t k = 0; k < ru->nlits; k++) {
				pt->lit_rule[pt->nlit] = ri;
				pt->lit[pt->nlit] = ru->lits[k];
				pt->litlen[pt->nlit] = ru->litlen[k];
				pt->nlit++;
			}
		}
#ifdef HAVE_VECTORSCAN
		if (pt->nlit > 0 && use_hs) {
			unsigned *flags = xalloc_calloc(pt->nlit, sizeof(unsigned));
			unsigned *ids = xalloc_calloc(pt->nlit, sizeof(unsigned));
			for (size_t i = 0; i < pt->nlit; i++) {
				/* every occurrence: each one names a span to run the rule on */
				flags[i] = HS_FLAG_CASELESS;
				ids[i] = (unsigned)i;
			}
			hs_compile_error_t *err = NULL;
			if (hs_compile_lit_multi(pt->lit, flags, ids, pt->litlen,
			                         (unsigned)pt->nlit, HS_MODE_BLOCK,
			                         pf->eng->platform, &pt->db, &err) != HS_SUCCESS) {
				log_msg(LOG_L_WARNING, "rules prefilter: vectorscan: %s",
				        err && err->message ? err->message : "compile failed");
				hs_free_compile_error(err);
				pt->db = NULL;
				hs_ok = false;
			}
			free(flags);
			free(ids);
		}
#endif
	}
#ifdef HAVE_VECTORSCAN
	for (int t = 0; t < RULES_T_N; t++)
		pf->dbs[t] = pf->t[t].db;
	r->stats.vectorscan = use_hs && hs_ok;
	r->stats.scanner = r->stats.vectorscan ? pf->eng->name : NULL;
#else
	(void)hs_ok;
	(void)use_hs;
#endif
	return pf;
}

void rules_prefilter_free(struct rules_prefilter *pf)
{
	if (pf == NULL)
		return;
#ifdef HAVE_VECTORSCAN
	rules_scratch_pool_fini(&pf->pool);
#endif
	for (int t = 0; t < RULES_T_N; t++) {
		free(pf->t[t].lit_rule);
		free(pf->t[t].lit);
		free(pf->t[t].litlen);
		free(pf->t[t].always);
#ifdef HAVE_VECTORSCAN
		hs_free_database(pf->t[t].db);
#endif
	}
	free(pf);
}

static void lit_scan(const rules_t *r, int type, const char *text, size_t len,
                     struct pf_result *res);

void rules_prefilter_scan(const rules_t *r, int type, const char *text, size_t len,
                          struct pf_result *res)
{
	lit_scan(r, type, text, len, res);
	rules_hs_scan(r, type, text, res); /* the rules without literals, once it is built */
}

static void lit_scan(const rules_t *r, int type, const char *text, size_t len,
                     struct pf_result *res)
{
	const struct pf_type *pt = &r->pf->t[type];
	for (size_t i = 0; i < pt->nalways; i++)
		res->want[pt->always[i]] = PF_ALL;
	if (pt->nlit == 0)
		return;
#ifdef HAVE_VECTORSCAN
	if (pt->db != NULL) {
		hs_scratch_t *sc = rules_scratch_get(&r->pf->pool, r->pf->dbs, RULES_T_N);
		if (sc == NULL)
			goto fallback;
		struct hs_ctx ctx = {.pt = pt, .res = res};
		hs_error_t rc =
		    r->pf->eng->scan(pt->db, text, (unsigned)len, 0, sc, on_match, &ctx);
		rules_scratch_put(&r->pf->pool, sc);
		if (rc == HS_SUCCESS)
			return;
		/* a failed scan may have listed only some spans: run these rules everywhere */
		for (size_t i = 0; i < pt->nlit; i++)
			res->want[pt->lit_rule[i]] = PF_ALL;
		return;
	}
fallback :
#endif
{
	/* memmem over a lower-cased copy (ASCII: literals hold no foldable high bytes) */
	char *low = arena_alloc(res->a, len + 1);
	for (size_t i = 0; i < len; i++)
		low[i] = ascii_lower(text[i]);
	for (size_t i = 0; i < pt->nlit; i++) {
		size_t n = pt->litlen[i];
		const char *p = low;
		const char *end = low + len;
		while ((size_t)(end - p) >= n) {
			const char *q = memmem(p, (size_t)(end - p), pt->lit[i], n);
			if (q == NULL)
				break;
			size_t ri = pt->lit_rule[i];
			if ((i + 1 < pt->nlit && pt->lit_rule[i + 1] == ri) ||
			    (i > 0 && pt->lit_rule[i - 1] == ri)) {
				/* several literals: occurrences would come out of text order */
				res->want[ri] = PF_ALL;
				break;
			}
			found(pt, res, i, (size_t)(q - low), (size_t)(q - low) + n);
			p = q + 1;
		}
	}
}
}
