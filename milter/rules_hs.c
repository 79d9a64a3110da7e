/*
 * rules_hs.c - the second prefilter stage: a Vectorscan database, in
 * prefilter mode, of the body rules for which the
 * literal prefilter (rules_lit.c) found no literal and which therefore
 * would run on every message. Such a database takes from seconds to
 * minutes to build, so it is built in a background thread after a load
 * (the rules run as before until it is published), cached in the state
 * directory under a hash of its patterns and read from there next time.
 *
 * Safety: Vectorscan's prefilter mode reports a superset of the matches
 * of a pattern (it widens what it cannot model: lookarounds are dropped,
 * back-references become a copy of their group or .*), so a rule the database does not report on
 * a piece of a view cannot match that piece and is not run there; PCRE2
 * still decides every hit. Each piece (paragraph, chunk, URI) is scanned
 * on its own, as PCRE2 sees it, so anchors and \b mean the same thing to
 * both engines. Under /i PCRE2 folds Latin-1 letters here (rules.c's
 * tables) and Vectorscan only ASCII, so each byte >= 0x80 a pattern names
 * is given its Latin-1 case partner (hs_translate()). What the engines
 * could read differently is left out: options other than i, m and s,
 * verbs "(*...)", octal and code-point escapes, \Q...\E.
 * tests/test_rules_hs.c checks that PCRE2's character classes are
 * Vectorscan's, byte for byte, and that hits are the same with the stage.
 *
 * Repeat gates: a rule "(?:...G...){n}" whose group G always matches a
 * part H also gets H, in prefilter mode, reporting every end; on a piece
 * where fewer than n ends of H lie at least H's shortest width apart the
 * rule cannot match (its n passes match n disjoint H's) and is not run,
 * even when Vectorscan cannot take the rule itself.
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#ifdef HAVE_VECTORSCAN
#include <hs/hs.h>
#endif

#include "evidence.h"
#include "rules_int.h"

#define HS_CACHE_PREFIX    "rules-hs-"
#define HS_CACHE_SUFFIX    ".db"
#define HS_CACHE_KEEP      3 /* cache files kept, the current one included */
#define HS_CACHE_MAX_BYTES ((uint64_t)1 << 30)
#define HS_FILE_MAGIC      "SIFTHSDB"
#define HS_FILE_FORMAT     4u /* 4: dense reporters out; 3: unselective rules out; 2: gates */
#define HS_DENSE_BYTES     4  /* drop_unselective(): a report per this many bytes or more */
#define HS_GATES_MAX       32
#define HS_KEY_BYTES       32

#ifdef HAVE_VECTORSCAN

/*
 * A repeat gate (rules_repeat_gate()): rule `rule` (a local id) can match
 * a piece only where gate pattern `pat` ends at least `min` times, each
 * end at least that pattern's shortest width past the last one counted.
 * A pattern such as SpamAssassin's __FILL_THIS_FORM_LONG2,
 * "(?:<YOUR><ALL><SUFFIX>(?:<BLANK>|<ANDOR>)){5}", is beyond Vectorscan
 * (too large, or a subroutine call after PCRE2's rewrite) and otherwise
 * ran on every paragraph, a millisecond a message; <ALL>, the one part
 * every pass must match, compiles, and few paragraphs hold five of it.
 */
struct hs_gate {
	size_t rule;
	unsigned pat; /* its pattern's local id is nrule + pat */
	unsigned min;
	bool from_ascii; /* taken from the rule's ASCII form: holds on ASCII pieces only */
};

/* One view's database: what it covers (local id -> rule) and what it is. */
struct hs_view {
	size_t *rule; /* local id -> rule index */
	char **name;  /* local id -> rule name, for the log */
	size_t nrule;
	char **expr; /* the patterns (split pieces included), owned */
	unsigned *flags;
	unsigned *ids; /* local id of each pattern */
	size_t nexpr;
	/* local ids of the rules whose ASCII form is in the database: on a piece
	 * of text with a byte above 0x7f they run whatever the scan says */
	size_t *ascii;
	size_t nascii;
	struct hs_gate *gate;
	size_t ngate;
	unsigned *gate_width; /* per gate pattern: its shortest match, >= 1 */
	size_t ngpat;         /* gate patterns: local ids nrule .. nrule + ngpat - 1 */
	uint32_t *gate_of;    /* per rule (local id): its gate's index + 1, or 0 */
};

/* A published set of databases: immutable once published, but for its (locked) scratch pool. */
struct hs_dbs {
	struct rules_scratch_pool pool; /* scratch space for these databases */
	hs_database_t *db[RULES_T_N];
	/* per local id: the rule (or gate pattern) is in db; a rule that is not runs anyway */
	uint8_t *in_db[RULES_T_N];
	size_t bytes;
};

struct rules_hs {
	_Atomic int refs;
	_Atomic bool cancelled; /* its rules_t is gone: a queued build is dropped */
	bool started;           /* rules_prefilter_db_start() ran (the loading thread's) */
	struct hs_view v[RULES_T_N];
	size_t covered; /* candidate rules in all views */
	uint8_t key[HS_KEY_BYTES];
	char hex[2 * HS_KEY_BYTES + 1];
	char *dir;                         /* the state directory, or NULL: no cache */
	const struct rules_hs_engine *eng; /* the scanner, and the platform its database is for */
	_Atomic(struct hs_dbs *) dbs;
	_Atomic int state; /* RULES_DB_* */
	_Atomic uint64_t build_ms;
	uint64_t build_memory; /* a compile's bounds (regex_prefilter_build_memory, _cpu) */
	uint32_t build_cpu;
};

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- choosing rules */

/* PCRE2's case partner of a byte under rules.c's Latin-1 tables, or -1. */
static int latin1_partner(unsigned c)
{
	if (c == 0xD7 || c == 0xF7)
		return -1;
	if (c >= 0xC0 && c <= 0xDE)
		return (int)c + 0x20;
	if (c >= 0xE0 && c <= 0xFE)
		return (int)c - 0x20;
	return -1;
}

struct xl {
	const char *p;
	size_t n, i;
	struct wtext {
		char *s;
		size_t n, cap;
	} out;
	bool fold;     /* add Latin-1 case partners */
	bool added;    /* some were added */
	bool in_class; /* reading a character class */
	bool bad;
};

static void xl_put(struct xl *x, const char *s, size_t n)
{
	if (x->out.n + n + 1 > x->out.cap) {
		x->out.cap = (x->out.n + n + 1) * 2;
		x->out.s = xalloc_realloc(x->out.s, x->out.cap);
	}
	memcpy(x->out.s + x->out.n, s, n);
	x->out.n += n;
	x->out.s[x->out.n] = '\0';
}

static void xl_byte(struct xl *x, unsigned c)
{
	static const char hex[] = "0123456789ABCDEF";
	char b[4] = {'\\', 'x', hex[(c >> 4) & 15], hex[c & 15]};
	xl_put(x, b, 4);
}

/*
 * Reads one byte-valued escape or byte at x->i (a class member or an
 * atom): returns its value, or -1 for anything else (a class escape like
 * \d, which the caller copies as written). Rejects what Vectorscan might
 * read otherwise: octal and code-point escapes, properties, \Q...\E.
 */
static int xl_value(struct xl *x, size_t *end)
{
	const char *p = x->p;
	size_t i = x->i;
	if (p[i] != '\\') {
		*end = i + 1;
		return (unsigned char)p[i];
	}
	if (i + 1 >= x->n) {
		x->bad = true;
		return -1;
	}
	char e = p[i + 1];
	*end = i + 2;
	switch (e) {
	case 't': return '\t';
	case 'n': return '\n';
	case 'r': return '\r';
	case 'f': return '\f';
	case 'e': return 0x1b;
	case 'a': return 0x07;
	default: break;
	}
	if (e == 'x') {
		if (i + 2 < x->n && p[i + 2] == '{') {
			x->bad = true;
			return -1;
		}
		int v = 0;
		size_t k = i + 2;
		while (k < x->n && k < i + 4 && rules_hexval(p[k]) >= 0)
			v = v * 16 + rules_hexval(p[k++]);
		*end = k;
		return v;
	}
	/*
	 * \1 to \9 outside a class are back-references, which prefilter mode
	 * widens (to a copy of the group or to .*); \10 may be octal.
	 */
	if (!x->in_class && e >= '1' && e <= '9' &&
	    (i + 2 >= x->n || !isdigit((unsigned char)p[i + 2])))
		return -1;
	if (e == 'o' || e == 'N' || e == 'p' || e == 'P' || e == 'Q' || e == 'E' || e == 'c' ||
	    (e >= '0' && e <= '9')) {
		x->bad = true;
		return -1;
	}
	if (!((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')))
		return (unsigned char)e; /* an escaped punctuation byte */
	return -1;                       /* \d, \w, \b, \n ...: copied as written */
}

/* A character class at x->i ('['): copied, high bytes as \xHH, partners added. */
static void xl_class(struct xl *x)
{
	bool member[256] = {false};
	size_t i = x->i + 1;
	x->in_class = true;
	xl_put(x, "[", 1);
	bool neg = i < x->n && x->p[i] == '^';
	if (neg) {
		xl_put(x, "^", 1);
		i++;
	}
	bool first = true;
	while (i < x->n && !x->bad) {
		char c = x->p[i];
		if (c == ']' && !first) {
			break;
		}
		first = false;
		if (c == '[' && i + 1 < x->n && x->p[i + 1] == ':') {
			const char *e = memmem(x->p + i + 2, x->n - i - 2, ":]", 2);
			if (e == NULL) {
				x->bad = true;
				return;
			}
			size_t len = (size_t)(e + 2 - (x->p + i));
			xl_put(x, x->p + i, len);
			i += len;
			continue;
		}
		x->i = i;
		size_t end;
		int lo = xl_value(x, &end);
		if (x->bad)
			return;
		if (lo < 0) {
			xl_put(x, x->p + i, end - i);
			i = end;
			continue;
		}
		int hi = lo;
		if (end + 1 < x->n && x->p[end] == '-' && x->p[end + 1] != ']') {
			x->i = end + 1;
			size_t end2;
			hi = xl_value(x, &end2);
			if (x->bad || hi < 0 || hi < lo) {
				x->bad = true; /* "[a-\d]" and reversed ranges: not modelled */
				return;
			}
			end = end2;
		}
		if (lo >= 0x80 || hi >= 0x80 || !(isalnum(lo) || lo == ' ')) {
			xl_byte(x, (unsigned)lo);
			if (hi != lo) {
				xl_put(x, "-", 1);
				xl_byte(x, (unsigned)hi);
			}
		} else {
			xl_put(x, x->p + i, end - i);
		}
		for (int b = lo; b <= hi; b++)
			member[b] = true;
		i = end;
	}
	if (i >= x->n) {
		x->bad = true;
		return;
	}
	/*
	 * PCRE2 matches a byte's Latin-1 case partner too; a negated class then
	 * matches less than Vectorscan's reading of it, which is safe as it is.
	 */
	if (x->fold && !neg)
		for (int b = 0x80; b < 256; b++) {
			int q = latin1_partner((unsigned)b);
			if (member[b] && q >= 0 && !member[q]) {
				xl_byte(x, (unsigned)q);
				x->added = true;
			}
		}
	xl_put(x, "]", 1);
	x->i = i + 1;
	x->in_class = false;
}

/*
 * The pattern as Vectorscan should read it, or NULL to leave the rule out
 * (see the top): bytes >= 0x80 written as \xHH and, when the pattern may
 * be caseless, each such byte matched with its Latin-1 case partner too.
 */
static char *hs_translate(const char *p, size_t n, bool caseless)
{
	struct xl x = {.p = p, .n = n, .fold = caseless};
	xl_put(&x, "", 0);
	while (x.i < n && !x.bad) {
		char c = p[x.i];
		if (c == '[') {
			xl_class(&x);
			continue;
		}
		if (c == '(' && x.i + 1 < n && p[x.i + 1] == '*') {
			x.bad = true; /* verbs: (*UTF), (*CRLF), (*SKIP) ... */
			break;
		}
		size_t end;
		int v = xl_value(&x, &end);
		if (x.bad)
			break;
		if (v >= 0x80) {
			int q = x.fold ? latin1_partner((unsigned)v) : -1;
			if (q >= 0) {
				xl_put(&x, "[", 1);
				xl_byte(&x, (unsigned)v);
				xl_byte(&x, (unsigned)q);
				xl_put(&x, "]", 1);
				x.added = true;
			} else {
				xl_byte(&x, (unsigned)v);
			}
		} else {
			xl_put(&x, p + x.i, end - x.i);
		}
		x.i = end;
	}
	/*
	 * Partners added inside a negative lookaround would make it refuse
	 * more, but prefilter mode drops every lookaround (Vectorscan's
	 * src/parser/prefilter.cpp replaces assertions with an empty sequence).
	 */
	if (x.bad || memchr(x.out.s, '\0', x.out.n) != NULL) {
		free(x.out.s);
		return NULL;
	}
	return x.out.s;
}

/* Whether an inline option group may turn on /i: "(?i)", "(?mi:", "(?^i)"... */
static bool inline_caseless(const char *p, size_t n)
{
	for (size_t i = 0; i + 2 < n; i++) {
		if (p[i] == '\\') {
			i++;
			continue;
		}
		if (p[i] != '(' || p[i + 1] != '?')
			continue;
		for (size_t k = i + 2;
		     k < n && (isalpha((unsigned char)p[k]) || p[k] == '-' || p[k] == '^'); k++)
			if (p[k] == 'i')
				return true;
	}
	return false;
}

/* Piece k of the rule's pattern, or of its ASCII form; the whole when it is not cut. */
static const char *piece(const struct rule *ru, bool ascii, size_t k, size_t *len)
{
	if (ascii) {
		*len = ru->napieces ? ru->apiecelen[k] : strlen(ru->apattern);
		return ru->napieces ? ru->apieces[k] : ru->apattern;
	}
	*len = ru->npieces ? ru->piecelen[k] : strlen(ru->pattern);
	return ru->npieces ? ru->pieces[k] : ru->pattern;
}

struct exlist {
	char **s;
	size_t n;
};

/*
 * Vectorscan refuses patterns longer than this. SpamAssassin's largest
 * ReplaceTags rules are tens of KB a piece; a database with them took
 * over ten minutes of CPU to build instead of one. Their ASCII forms
 * (rules_ascii.c), a tenth of the size, fit and build in seconds.
 */
#define HS_PATTERN_MAX_BYTES 16000

static bool add_piece(struct exlist *ex, const char *p, size_t len, bool ci)
{
	char *t = hs_translate(p, len, ci);
	if (t == NULL)
		return false;
	if (strlen(t) > HS_PATTERN_MAX_BYTES) {
		free(t);
		return false;
	}
	ex->s = xalloc_realloc(ex->s, (ex->n + 1) * sizeof(*ex->s));
	ex->s[ex->n++] = t;
	return true;
}

/* Adds rule ri with its translated pieces (taken over). */
static void view_add(struct hs_view *v, size_t ri, const char *name, char **ex, size_t np,
                     unsigned flags)
{
	v->rule[v->nrule] = ri;
	v->name[v->nrule] = xalloc_strdup(name);
	v->expr = xalloc_realloc(v->expr, (v->nexpr + np) * sizeof(*v->expr));
	v->flags = xalloc_realloc(v->flags, (v->nexpr + np) * sizeof(*v->flags));
	v->ids = xalloc_realloc(v->ids, (v->nexpr + np) * sizeof(*v->ids));
	for (size_t k = 0; k < np; k++) {
		v->expr[v->nexpr] = ex[k];
		v->flags[v->nexpr] = flags;
		v->ids[v->nexpr] = (unsigned)v->nrule;
		v->nexpr++;
	}
	v->nrule++;
}

static void hash_u64(crypto_generichash_state *st, uint64_t v)
{
	crypto_generichash_update(st, (const uint8_t *)&v, sizeof(v));
}

/* Gates found while the view's rules are added; their patterns get ids once all are in. */
struct gate_list {
	struct hs_gate g[HS_GATES_MAX];
	char *expr[HS_GATES_MAX];
	unsigned flags[HS_GATES_MAX], width[HS_GATES_MAX];
	size_t ng, np;
};

/*
 * A gate's part must be a group whose shortest match is this long. A part
 * that may match nothing proves nothing; a class or a short part ("[a-z]",
 * "[\s.]", "\d{1,2}", all in SpamAssassin's counted groups) ends at
 * nearly every byte, and its reports cost more than the runs they spare
 * (the rawbody scan took six times as long with such gates).
 */
#define HS_GATE_MIN_WIDTH 3

/*
 * Gives the rule about to be added as local id v->nrule a repeat gate,
 * when it has one: of the groups every pass must match, the one whose
 * shortest match Vectorscan reads as the longest (the most telling).
 */
static void gate_add(const struct hs_view *v, struct gate_list *gl, const char *whole, bool ci,
                     unsigned rule_flags, bool ascii)
{
	size_t off[16], len[16];
	unsigned min;
	size_t nc =
	    gl->ng < HS_GATES_MAX ? rules_repeat_gate(whole, strlen(whole), off, len, 16, &min) : 0;
	/* every end is wanted, not the first; widened as the rules' patterns are */
	unsigned flags =
	    (rule_flags & ~(HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY)) | HS_FLAG_PREFILTER;
	char *best = NULL;
	unsigned best_w = 0;
	for (size_t k = 0; k < nc; k++) {
		if (whole[off[k]] != '(')
			continue;
		char *t = hs_translate(whole + off[k], len[k], ci);
		hs_expr_info_t *info = NULL;
		hs_compile_error_t *err = NULL;
		if (t != NULL && strlen(t) <= HS_PATTERN_MAX_BYTES &&
		    hs_expression_info(t, flags, &info, &err) == HS_SUCCESS && info != NULL &&
		    info->min_width >= HS_GATE_MIN_WIDTH && info->min_width > best_w) {
			free(best);
			best = t;
			t = NULL;
			best_w = info->min_width;
		}
		free(t);
		hs_free_compile_error(err);
		free(info); /* hs's default allocator is malloc() */
	}
	if (best == NULL)
		return;
	size_t p = 0;
	while (p < gl->np && (gl->flags[p] != flags || strcmp(gl->expr[p], best) != 0))
		p++;
	if (p == gl->np) {
		if (gl->np == HS_GATES_MAX) {
			free(best);
			return;
		}
		gl->expr[p] = best;
		gl->flags[p] = flags;
		gl->width[p] = best_w;
		gl->np++;
	} else
		free(best);
	gl->g[gl->ng++] =
	    (struct hs_gate){.rule = v->nrule, .pat = (unsigned)p, .min = min, .from_ascii = ascii};
}

/* Appends the gate patterns after the rules' (ids nrule + k) and indexes the gates. */
static void gates_close(struct hs_view *v, struct gate_list *gl)
{
	if (gl->ng == 0)
		return;
	v->gate = xalloc_calloc(gl->ng, sizeof(*v->gate));
	memcpy(v->gate, gl->g, gl->ng * sizeof(*v->gate));
	v->ngate = gl->ng;
	v->gate_of = xalloc_calloc(v->nrule + 1, sizeof(*v->gate_of));
	for (size_t k = 0; k < gl->ng; k++)
		v->gate_of[gl->g[k].rule] = (uint32_t)k + 1;
	v->gate_width = xalloc_calloc(gl->np, sizeof(*v->gate_width));
	v->name = xalloc_realloc(v->name, (v->nrule + gl->np) * sizeof(*v->name));
	v->expr = xalloc_realloc(v->expr, (v->nexpr + gl->np) * sizeof(*v->expr));
	v->flags = xalloc_realloc(v->flags, (v->nexpr + gl->np) * sizeof(*v->flags));
	v->ids = xalloc_realloc(v->ids, (v->nexpr + gl->np) * sizeof(*v->ids));
	for (size_t p = 0; p < gl->np; p++) {
		size_t first = 0;
		while (gl->g[first].pat != p)
			first++;
		char name[160];
		snprintf(name, sizeof(name), "%s's repeat gate", v->name[gl->g[first].rule]);
		v->name[v->nrule + p] = xalloc_strdup(name);
		v->gate_width[p] = gl->width[p];
		v->expr[v->nexpr] = gl->expr[p];
		v->flags[v->nexpr] = gl->flags[p];
		v->ids[v->nexpr] = (unsigned)(v->nrule + p);
		v->nexpr++;
	}
	v->ngpat = gl->np;
}

/*
 * Vectorscan 5.4.9 (Debian 12) on a CPU with AVX-512 misses matches of
 * ordinary patterns past a scan's first 64 bytes: "x.*z" on text holding
 * "xbz" at most places from there on, "[a-z]x" and "Y.*" at some (its later
 * releases mend these accelerators). A database that misses keeps rules
 * that match from running, and so does its literal matcher, which missed
 * literals in a scan's last partial 64-byte vector. So before either is
 * used, the engine scans probes whose matches are known, once per
 * process.
 *
 * The misses are in the AVX-512 build of the scanner only. Debian's
 * library is a "fat runtime": hs_scan() dispatches, by CPU, to one of
 * several builds of the scanner, each also exported under its own name
 * (avx2_hs_scan, corei7_hs_scan). Where the dispatched scanner misses a
 * probe, the next build down is looked up (dlsym: a library without such
 * names just has none) and checked the same way, its databases compiled
 * for its platform; the first that finds every match is used. If none
 * does, the prefilter runs as without Vectorscan (memmem for the
 * literals, the rules without literals on every message): slower, never
 * wrong. The choice is a fact about the library and the CPU, made once
 * (pthread_once) and only read after.
 */
static const char *const hs_probe_expr[] = {"x.*z", "[a-z]x", "Y.*", "x[^\\n]*z", "Qr"};
static const char *const hs_probe_plant[] = {"xbz", "bx", "Y", "xbz", "Qr"};
#define HS_PROBES 5

/* The candidates, best first; [0] is the dispatched scanner. */
static const hs_platform_info_t hs_platform_avx2 = {.tune = HS_TUNE_FAMILY_HSW,
                                                    .cpu_features = HS_CPU_FEATURES_AVX2};
static const hs_platform_info_t hs_platform_sse42 = {.tune = HS_TUNE_FAMILY_GENERIC};
enum hs_needs { HS_NEEDS_NOTHING, HS_NEEDS_AVX2, HS_NEEDS_SSE42 };
static const struct {
	const char *symbol; /* NULL: hs_scan */
	const hs_platform_info_t *platform;
	enum hs_needs needs; /* what the CPU must have to run it */
	const char *name;
} hs_candidates[] = {
    {NULL, NULL, HS_NEEDS_NOTHING, "the scanner for this CPU"},
    {"avx2_hs_scan", &hs_platform_avx2, HS_NEEDS_AVX2, "the AVX2 scanner"},
    {"corei7_hs_scan", &hs_platform_sse42, HS_NEEDS_SSE42, "the SSE4.2 scanner"},
};
#define HS_CANDIDATES (sizeof(hs_candidates) / sizeof(hs_candidates[0]))

static pthread_once_t hs_engine_once = PTHREAD_ONCE_INIT;
static struct rules_hs_engine hs_engine_all[HS_CANDIDATES];
static const struct rules_hs_engine *hs_engine_chosen; /* NULL: none passed */

/* Counts ctx[id]'s reports: which patterns a scan reported, and how often. */
static int count_match(unsigned int id, unsigned long long from, unsigned long long to,
                       unsigned int flags, void *ctx)
{
	(void)from;
	(void)to;
	(void)flags;
	((uint32_t *)ctx)[id]++;
	return 0;
}

/*
 * Plants plant at every place of a text of len bytes of fill and scans it:
 * the first place where db reports nothing, or -1 when it finds them all.
 */
static long probe_scan(const struct rules_hs_engine *e, const hs_database_t *db, hs_scratch_t *sc,
                       const char *plant, size_t len, char fill)
{
	char buf[257];
	size_t pl = strlen(plant);
	for (size_t pos = 0; pos + pl <= len && len <= sizeof(buf); pos++) {
		memset(buf, fill, len);
		memcpy(buf + pos, plant, pl);
		uint32_t seen[2] = {0, 0}; /* the probes' ids are 0 and 1 */
		if (e->scan(db, buf, (unsigned)len, 0, sc, count_match, seen) != HS_SUCCESS ||
		    (seen[0] | seen[1]) == 0)
			return (long)pos;
	}
	return -1;
}

/* Checks one scanner against the probes: what it missed in what, or what[0] == 0. */
static void hs_engine_probe(const struct rules_hs_engine *e, char *what, size_t wsz)
{
	static const size_t lens[] = {70, 100, 130, 200, 257};
	static const char fills[] = {'.', ' '};
	long miss;
	what[0] = '\0';
	/* each probe in a database of its own: in one of all five, 5.4.9 took another path */
	for (unsigned k = 0; k < HS_PROBES && what[0] == '\0'; k++) {
		hs_database_t *db = NULL;
		hs_scratch_t *sc = NULL;
		hs_compile_error_t *err = NULL;
		if (hs_compile(hs_probe_expr[k], HS_FLAG_PREFILTER | HS_FLAG_ALLOWEMPTY,
		               HS_MODE_BLOCK, e->platform, &db, &err) != HS_SUCCESS ||
		    hs_alloc_scratch(db, &sc) != HS_SUCCESS) {
			hs_free_compile_error(err);
			snprintf(what, wsz, "/%s/ does not compile", hs_probe_expr[k]);
		}
		for (size_t f = 0; f < sizeof(fills) && what[0] == '\0'; f++)
			for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]) && what[0] == '\0';
			     l++)
				if ((miss = probe_scan(e, db, sc, hs_probe_plant[k], lens[l],
				                       fills[f])) >= 0)
					snprintf(what, wsz, "/%s/ missed \"%s\" at byte %ld of %zu",
					         hs_probe_expr[k], hs_probe_plant[k], miss,
					         lens[l]);
		hs_free_scratch(sc);
		hs_free_database(db);
	}
	/* and two literals as the literal stage compiles them (5.4.9 missed with two) */
	static const char *const lit[] = {"_:v: x_", "qwv"};
	const unsigned lfl[] = {HS_FLAG_CASELESS, HS_FLAG_CASELESS}, lid[] = {0, 1};
	const size_t llen[] = {7, 3};
	hs_database_t *ldb = NULL;
	hs_scratch_t *lsc = NULL;
	hs_compile_error_t *lerr = NULL;
	if (what[0] == '\0' && (hs_compile_lit_multi(lit, lfl, lid, llen, 2, HS_MODE_BLOCK,
	                                             e->platform, &ldb, &lerr) != HS_SUCCESS ||
	                        hs_alloc_scratch(ldb, &lsc) != HS_SUCCESS)) {
		hs_free_compile_error(lerr);
		snprintf(what, wsz, "its literal probes do not compile");
	}
	for (size_t f = 0; f < 2 && what[0] == '\0'; f++)
		for (size_t len = 60; len <= 200 && what[0] == '\0'; len += 5)
			for (size_t k = 0; k < 2 && what[0] == '\0'; k++)
				if ((miss = probe_scan(e, ldb, lsc, lit[k], len, f ? '.' : 'a')) >=
				    0)
					snprintf(what, wsz,
					         "literal \"%s\" missed at byte %ld of %zu", lit[k],
					         miss, len);
	hs_free_scratch(lsc);
	hs_free_database(ldb);
}

/* Whether this CPU can run a build of the scanner: one it cannot would die of SIGILL. */
static bool hs_cpu_has(enum hs_needs n, const hs_platform_info_t *host)
{
	switch (n) {
	case HS_NEEDS_NOTHING: return true;
	case HS_NEEDS_AVX2: /* Vectorscan's own test, with the OS's support for the registers */
		return (host->cpu_features & HS_CPU_FEATURES_AVX2) != 0;
	case HS_NEEDS_SSE42: /* its "corei7" build: SSE4.2 and POPCNT */
#if defined(__x86_64__) || defined(__i386__)
		return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt");
#else
		return false;
#endif
	}
	return false;
}

/* The library's version for a log line: 5.4.9 gives "5.4.9 ", with a blank. */
static int hs_version_len(void)
{
	const char *v = hs_version();
	size_t n = strlen(v);
	while (n > 0 && v[n - 1] == ' ')
		n--;
	return (int)n;
}

static void hs_engine_check(void)
{
	hs_platform_info_t host;
	if (hs_populate_platform(&host) != HS_SUCCESS)
		memset(&host, 0, sizeof(host));
	char first[160] = "";
	for (size_t i = 0; i < HS_CANDIDATES; i++) {
		struct rules_hs_engine *e = &hs_engine_all[i];
		e->name = hs_candidates[i].name;
		e->platform = hs_candidates[i].platform;
		if (hs_candidates[i].symbol == NULL)
			e->scan = hs_scan;
		else if (hs_cpu_has(hs_candidates[i].needs, &host))
			/* a function's address through dlsym's void *: POSIX's own idiom */
			*(void **)&e->scan = dlsym(RTLD_DEFAULT, hs_candidates[i].symbol);
		if (e->scan == NULL)
			continue;
		char what[160];
		hs_engine_probe(e, what, sizeof(what));
		if (what[0] == '\0') {
			hs_engine_chosen = e;
			break;
		}
		if (i == 0)
			snprintf(first, sizeof(first), "%s", what);
	}
	if (hs_engine_chosen == &hs_engine_all[0])
		return;
	if (hs_engine_chosen != NULL)
		log_msg(
		    LOG_L_NOTICE,
		    "rules prefilter: Vectorscan %.*s misses matches on this CPU (%s); %s finds "
		    "them all and is used",
		    hs_version_len(), hs_version(), first, hs_engine_chosen->name);
	else
		log_msg(
		    LOG_L_WARNING,
		    "rules prefilter: Vectorscan %.*s misses matches on this CPU (%s): not used; "
		    "literals are found with memmem and the rules without literals run on "
		    "every message",
		    hs_version_len(), hs_version(), first);
}

bool rules_hs_engine_sound(void)
{
	pthread_once(&hs_engine_once, hs_engine_check);
	return hs_engine_chosen != NULL;
}

const struct rules_hs_engine *rules_hs_engine(const rules_t *r)
{
	pthread_once(&hs_engine_once, hs_engine_check);
	return r->opts.vectorscan_unchecked ? &hs_engine_all[0] : hs_engine_chosen;
}

struct rules_hs *rules_hs_prepare(rules_t *r)
{
	if (!r->opts.prefilter || r->opts.prefilter_memmem || !r->opts.prefilter_db ||
	    r->pf == NULL)
		return NULL;
	/*
	 * PCRE2's "$" and "." follow its newline convention; Vectorscan's are
	 * LF's. Debian builds PCRE2 with LF; any other build goes without.
	 */
	uint32_t nl = 0;
	if (pcre2_config(PCRE2_CONFIG_NEWLINE, &nl) < 0 || nl != PCRE2_NEWLINE_LF)
		return NULL;
	const struct rules_hs_engine *eng = rules_hs_engine(r);
	if (eng == NULL)
		return NULL;
	const uint32_t allowed = PCRE2_CASELESS | PCRE2_MULTILINE | PCRE2_DOTALL;
	struct rules_hs *h = xalloc_calloc(1, sizeof(*h));
	atomic_init(&h->refs, 1);
	h->eng = eng;
	h->build_memory = r->opts.build_memory;
	h->build_cpu = r->opts.build_cpu;
	/*
	 * Body only. Measured with SpamAssassin's rules, rules_eval CPU of
	 * each view with its database against without (`sift check --timing`):
	 * on the test folds, uri and full +0.05 ms a message each - their rules
	 * without literals are cheap in PCRE2, and a scan of every URI, or of
	 * the whole message, costs more than the runs it spares. On 2,167
	 * training-fold messages, with the AVX2 scanner: body 2,093 ms against
	 * 2,343, rawbody 357 against 168 (its pieces are many and short, each
	 * scan's start-up cost the same; the runs it spared were 73 ms).
	 */
	int last = r->opts.prefilter_db_rawbody ? RULES_T_RAWBODY : RULES_T_BODY;
	for (int type = RULES_T_BODY; type <= last; type++) {
		struct hs_view *v = &h->v[type];
		v->rule = xalloc_calloc(r->norder[type] + 1, sizeof(size_t));
		v->name = xalloc_calloc(r->norder[type] + 1, sizeof(char *));
		struct gate_list gates = {0};
		for (size_t oi = 0; oi < r->norder[type]; oi++) {
			size_t ri = r->order[type][oi];
			const struct rule *ru = &r->v[ri];
			if (ru->nlits > 0 || ru->capture_dep || ru->pattern == NULL ||
			    ru->ncodes == 0 || (ru->re_options & ~allowed) != 0)
				continue;
			/*
			 * A rule with an ASCII form is represented by that form: it is
			 * what runs on ASCII text, and a fraction of the size - with
			 * SpamAssassin's rules the database shrinks from 22 to 8 MB
			 * and builds in a third of the time.
			 */
			bool ascii = ru->apattern != NULL;
			size_t np = ascii ? ru->napieces : ru->npieces;
			const char *whole = ascii ? ru->apattern : ru->pattern;
			bool ci = (ru->re_options & PCRE2_CASELESS) ||
			          inline_caseless(whole, strlen(whole));
			struct exlist ex = {0};
			bool ok = true;
			for (size_t k = 0; k < (np ? np : 1) && ok; k++) {
				size_t len;
				const char *p = piece(ru, ascii, k, &len);
				ok = add_piece(&ex, p, len, ci);
			}
			if (!ok) {
				for (size_t k = 0; k < ex.n; k++)
					free(ex.s[k]);
				free(ex.s);
				continue;
			}
			/*
			 * Every match is reported, not the first alone: with
			 * HS_FLAG_SINGLEMATCH, Vectorscan 5.4.9 (Debian 12, its AVX-512
			 * path) misses matches past a piece's 64th byte for patterns it
			 * scans as one byte, such as /Y/ or /x.*z/, and those rules never
			 * ran there. rules_pf_list() takes a piece once, so repeats cost
			 * a compare.
			 */
			unsigned flags = HS_FLAG_PREFILTER | HS_FLAG_ALLOWEMPTY;
			if (ru->re_options & PCRE2_CASELESS)
				flags |= HS_FLAG_CASELESS;
			if (ru->re_options & PCRE2_MULTILINE)
				flags |= HS_FLAG_MULTILINE;
			if (ru->re_options & PCRE2_DOTALL)
				flags |= HS_FLAG_DOTALL;
			if (ascii) {
				v->ascii =
				    xalloc_realloc(v->ascii, (v->nascii + 1) * sizeof(size_t));
				v->ascii[v->nascii++] = v->nrule;
			}
			gate_add(v, &gates, whole, ci, flags, ascii);
			view_add(v, ri, ru->name, ex.s, ex.n, flags);
			free(ex.s);
		}
		gates_close(v, &gates);
		h->covered += v->nrule;
	}
	if (h->covered == 0) {
		rules_hs_release(h);
		return NULL;
	}
	/*
	 * The cache key: every pattern with its flags and ids, the engine's
	 * version and the scanner's platform the database is compiled for.
	 */
	crypto_generichash_state st;
	crypto_generichash_init(&st, NULL, 0, HS_KEY_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)HS_FILE_MAGIC, strlen(HS_FILE_MAGIC));
	hash_u64(&st, HS_FILE_FORMAT);
	crypto_generichash_update(&st, (const uint8_t *)hs_version(), strlen(hs_version()) + 1);
	crypto_generichash_update(&st, (const uint8_t *)eng->name, strlen(eng->name) + 1);
	for (int type = 0; type < RULES_T_N; type++) {
		const struct hs_view *v = &h->v[type];
		hash_u64(&st, (uint64_t)type);
		hash_u64(&st, v->nrule);
		hash_u64(&st, v->nexpr);
		for (size_t i = 0; i < v->nexpr; i++) {
			size_t len = strlen(v->expr[i]);
			hash_u64(&st, v->ids[i]);
			hash_u64(&st, v->flags[i]);
			hash_u64(&st, len);
			crypto_generichash_update(&st, (const uint8_t *)v->expr[i], len);
		}
	}
	crypto_generichash_final(&st, h->key, HS_KEY_BYTES);
	sodium_bin2hex(h->hex, sizeof(h->hex), h->key, HS_KEY_BYTES);
	atomic_init(&h->state, RULES_DB_PENDING);
	return h;
}

/* ---------------------------------------------------------------- databases */

static void dbs_free(struct hs_dbs *d)
{
	if (d == NULL)
		return;
	rules_scratch_pool_fini(&d->pool);
	for (int t = 0; t < RULES_T_N; t++) {
		hs_free_database(d->db[t]);
		free(d->in_db[t]);
	}
	free(d);
}

static struct hs_dbs *dbs_new(void)
{
	struct hs_dbs *d = xalloc_calloc(1, sizeof(*d));
	rules_scratch_pool_init(&d->pool);
	return d;
}

static void hs_unref(struct rules_hs *h)
{
	if (h == NULL || atomic_fetch_sub(&h->refs, 1) != 1)
		return;
	for (int t = 0; t < RULES_T_N; t++) {
		struct hs_view *v = &h->v[t];
		for (size_t i = 0; i < v->nexpr; i++)
			free(v->expr[i]);
		free(v->expr);
		free(v->flags);
		free(v->ids);
		free(v->rule);
		for (size_t i = 0; i < v->nrule + v->ngpat; i++)
			free(v->name[i]);
		free(v->name);
		free(v->ascii);
		free(v->gate);
		free(v->gate_of);
		free(v->gate_width);
	}
	dbs_free(atomic_load(&h->dbs));
	free(h->dir);
	free(h);
}

/* ---------------------------------------------------------------- a compile's bounds */

/*
 * Vectorscan's compiler puts no bound of its own on what one pattern may
 * cost: a counted group is compiled as that many copies, so
 * "(?:(?:your\s)?(?:ad+re?s+|n'a[mn]e|pho?ne?)(?:[-_.:\s]{1,9}|\sor\s)){400}"
 * took the daemon's builder 22 s and 540 MB, and {800} 36 s and 1 GB before
 * the compiler refused it: one line of a rules file, or of an sa-update
 * channel, could push the daemon out of memory. So each compile runs in a
 * child process (fork without exec: the patterns are already in memory),
 * its data segment allowed to grow by regex_prefilter_build_memory
 * (RLIMIT_DATA) and its CPU time bounded by regex_prefilter_build_cpu
 * (RLIMIT_CPU). The child writes the serialized database, or the
 * compiler's error, to a pipe and exits. When it runs out, each pattern is
 * compiled alone under the same bounds and those that exceed them are left
 * out: their rules run on every message, as those Vectorscan refuses do.
 *
 * The child of a threaded process may rely only on what fork leaves
 * consistent: it calls the compiler (malloc, which glibc's fork leaves
 * usable; the compiler's own static state was set up by the compiles that
 * ran before any fork, the probes and the literal database), the
 * serializer, write() and _exit(); it takes none of Sift's locks and logs
 * nothing. Where fork fails (a strict overcommit policy, say) the compile
 * runs in the process, unbounded, as it did before.
 */
enum iso_outcome {
	ISO_BUILT,
	ISO_REFUSED,  /* the compiler's error: bad is the pattern, or -1 */
	ISO_EXCEEDED, /* out of memory or CPU time, or the child died */
	ISO_CANCELLED /* the rules were freed meanwhile */
};

struct iso_result {
	enum iso_outcome what;
	hs_database_t *db; /* ISO_BUILT */
	int bad;
	char why[160];
};

/* What the child writes first; a database of len bytes follows when ok. */
struct iso_head {
	uint32_t ok;
	int32_t bad;
	uint64_t len;
	char msg[160];
};

static bool write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		c += w;
		n -= (size_t)w;
	}
	return true;
}

/* This process's data segment in bytes (VmData), or 0 when /proc cannot say. */
static uint64_t vm_data_bytes(void)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	const char *p = strstr(buf, "\nVmData:");
	return p ? strtoull(p + 8, NULL, 10) * 1024 : 0;
}

/* Lowers a limit to want (never above the hard limit it inherited). */
static void limit(int resource, uint64_t want, uint64_t hard_extra)
{
	struct rlimit rl;
	if (getrlimit(resource, &rl) != 0)
		return;
	rlim_t cur = (rlim_t)want, max = (rlim_t)(want + hard_extra);
	if (rl.rlim_max != RLIM_INFINITY && max > rl.rlim_max)
		max = rl.rlim_max;
	if (cur > max)
		cur = max;
	rl.rlim_cur = cur;
	rl.rlim_max = max;
	(void)setrlimit(resource, &rl);
}

static _Noreturn void iso_child(int fd, pid_t parent, const char *const *ex, const unsigned *fl,
                                const unsigned *id, unsigned n, const hs_platform_info_t *pl,
                                uint64_t memory, uint32_t cpu)
{
	/* the builder thread waits for it; if the daemon dies, so does the child */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	limit(RLIMIT_CORE, 0, 0);
	/* SIGXCPU at the soft limit, SIGKILL five seconds of CPU later */
	limit(RLIMIT_CPU, cpu, 5);
	uint64_t data = vm_data_bytes();
	if (data > 0)
		limit(RLIMIT_DATA, data + memory, 0);
	struct iso_head head;
	memset(&head, 0, sizeof(head));
	hs_database_t *db = NULL;
	hs_compile_error_t *err = NULL;
	char *bytes = NULL;
	if (hs_compile_multi(ex, fl, id, n, HS_MODE_BLOCK, pl, &db, &err) != HS_SUCCESS) {
		head.bad = err ? err->expression : -1;
		snprintf(head.msg, sizeof(head.msg), "%s",
		         err && err->message ? err->message : "compile failed");
		_exit(write_all(fd, &head, sizeof(head)) ? 0 : 1);
	}
	size_t len = 0;
	if (hs_serialize_database(db, &bytes, &len) != HS_SUCCESS) {
		head.bad = -1;
		snprintf(head.msg, sizeof(head.msg), "cannot serialize the database");
		_exit(write_all(fd, &head, sizeof(head)) ? 0 : 1);
	}
	head.ok = 1;
	head.len = len;
	_exit(write_all(fd, &head, sizeof(head)) && write_all(fd, bytes, len) ? 0 : 1);
}

/* The compile in this process, unbounded: where no child can be made. */
static void iso_in_process(const char *const *ex, const unsigned *fl, const unsigned *id,
                           unsigned n, const hs_platform_info_t *pl, struct iso_result *res)
{
	hs_compile_error_t *err = NULL;
	if (hs_compile_multi(ex, fl, id, n, HS_MODE_BLOCK, pl, &res->db, &err) == HS_SUCCESS) {
		res->what = ISO_BUILT;
		return;
	}
	res->db = NULL;
	res->what = ISO_REFUSED;
	res->bad = err ? err->expression : -1;
	snprintf(res->why, sizeof(res->why), "%s",
	         err && err->message ? err->message : "compile failed");
	hs_free_compile_error(err);
}

/*
 * A compiler computes: one that sleeps this long without using CPU time is
 * stuck (AddressSanitizer's builds, out of memory, hang in their report;
 * a lock held across the fork would do the same) and is stopped.
 */
#define ISO_STUCK_SECONDS 10

/* The child's CPU time in ticks and its state letter (R running or ready to run). */
static bool child_progress(pid_t pid, unsigned long long *ticks, char *state)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')'); /* the command name may hold anything */
	unsigned long long ut, st;
	if (p == NULL || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	                        state, &ut, &st) != 3)
		return false;
	*ticks = ut + st;
	return true;
}

struct iso_watch {
	pid_t pid;
	const _Atomic bool *cancelled;
	unsigned long long ticks;
	unsigned idle; /* seconds asleep without CPU progress */
	bool stop, stuck;
};

/*
 * Reads up to n bytes from fd into p, polling once a second so that a
 * build whose rules were freed, or a stuck compiler, is stopped; the bytes
 * read.
 */
static size_t iso_read(int fd, void *p, size_t n, struct iso_watch *w)
{
	size_t got = 0;
	while (got < n && !w->stop) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = poll(&pfd, 1, 1000);
		if (r < 0 && errno != EINTR)
			break;
		if (atomic_load(w->cancelled)) {
			w->stop = true;
			break;
		}
		if (r == 0) {
			unsigned long long t;
			char state;
			if (!child_progress(w->pid, &t, &state)) {
				/* /proc could not say (t unset): no evidence either way */
				w->idle = 0;
			} else if (state != 'R' && t == w->ticks) {
				if (++w->idle >= ISO_STUCK_SECONDS)
					w->stop = w->stuck = true;
			} else {
				w->idle = 0;
				w->ticks = t;
			}
		}
		if (r <= 0)
			continue;
		ssize_t k = read(fd, (char *)p + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	return got;
}

static void iso_compile(const struct rules_hs *h, const char *const *ex, const unsigned *fl,
                        const unsigned *id, unsigned n, const hs_platform_info_t *pl,
                        struct iso_result *res)
{
	memset(res, 0, sizeof(*res));
	int p[2];
	pid_t pid = -1;
	pid_t parent = getpid();
	if (pipe2(p, O_CLOEXEC) == 0) {
		pid = fork();
		if (pid == 0) {
			close(p[0]);
			iso_child(p[1], parent, ex, fl, id, n, pl, h->build_memory, h->build_cpu);
		}
		int e = errno;
		close(p[1]);
		if (pid < 0)
			close(p[0]);
		errno = e;
	}
	if (pid < 0) {
		log_msg(LOG_L_WARNING,
		        "rules prefilter database: cannot start the compiler's process (%s); "
		        "compiling without its bounds",
		        strerror(errno));
		iso_in_process(ex, fl, id, n, pl, res);
		return;
	}
	struct iso_head head;
	struct iso_watch w = {.pid = pid, .cancelled = &h->cancelled};
	char *bytes = NULL;
	bool whole = iso_read(p[0], &head, sizeof(head), &w) == sizeof(head);
	if (whole && head.ok && head.len <= HS_CACHE_MAX_BYTES) {
		bytes = xalloc_malloc(head.len ? head.len : 1);
		whole = iso_read(p[0], bytes, head.len, &w) == head.len;
	} else if (whole && head.ok) {
		whole = false;
	}
	close(p[0]);
	if (w.stop)
		kill(pid, SIGKILL);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (w.stuck) {
		res->what = ISO_EXCEEDED;
		snprintf(res->why, sizeof(res->why),
		         "stalled (the compiler slept %d s without using CPU; stopped)",
		         ISO_STUCK_SECONDS);
	} else if (w.stop) {
		res->what = ISO_CANCELLED;
	} else if (!whole) {
		res->what = ISO_EXCEEDED;
		if (WIFSIGNALED(st) && (WTERMSIG(st) == SIGXCPU || WTERMSIG(st) == SIGKILL))
			snprintf(res->why, sizeof(res->why),
			         "needs more than regex_prefilter_build_cpu (%" PRIu32
			         " s of CPU), or the compiler was killed",
			         h->build_cpu);
		else if (WIFSIGNALED(st))
			snprintf(res->why, sizeof(res->why), "killed the compiler (signal %d)",
			         WTERMSIG(st));
		else
			snprintf(res->why, sizeof(res->why), "stopped the compiler (status %d)",
			         WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	} else if (!head.ok) {
		head.msg[sizeof(head.msg) - 1] = '\0';
		/* a C++ allocation failure, which the compiler reports as this */
		bool memory = strstr(head.msg, "allocate") != NULL;
		res->what = memory ? ISO_EXCEEDED : ISO_REFUSED;
		res->bad = head.bad;
		if (memory)
			snprintf(res->why, sizeof(res->why),
			         "needs more than regex_prefilter_build_memory (%" PRIu64 " MB)",
			         h->build_memory >> 20);
		else
			snprintf(res->why, sizeof(res->why), "%s", head.msg);
	} else if (hs_deserialize_database(bytes, head.len, &res->db) == HS_SUCCESS) {
		res->what = ISO_BUILT;
	} else {
		res->db = NULL;
		res->what = ISO_REFUSED;
		res->bad = -1;
		snprintf(res->why, sizeof(res->why), "the compiler's database does not read back");
	}
	free(bytes);
}

/*
 * After a compile of the whole view ran out: compiles each pattern alone
 * and takes out of in_db the rules (or gate patterns) whose pattern alone
 * exceeds the bounds; how many patterns were taken out.
 */
static size_t drop_costly(const struct rules_hs *h, const struct hs_view *v,
                          const hs_platform_info_t *pl, uint8_t *in_db, const char *what,
                          const char **ex, const unsigned *fl, const unsigned *id, size_t n)
{
	size_t out = 0;
	for (size_t i = 0; i < n && !atomic_load(&h->cancelled); i++) {
		if (!in_db[id[i]])
			continue; /* another piece of a rule already out */
		struct iso_result res;
		iso_compile(h, &ex[i], &fl[i], &id[i], 1, pl, &res);
		if (res.what == ISO_BUILT)
			hs_free_database(res.db);
		if (res.what != ISO_EXCEEDED)
			continue;
		/* a gate's name is "RULE's repeat gate" */
		log_msg(LOG_L_WARNING,
		        "rules prefilter database (%s): %s left out (it runs on every message): "
		        "building it %s",
		        what, v->name[id[i]], res.why);
		in_db[id[i]] = 0;
		out++;
	}
	return out;
}

/*
 * Compiles one view's patterns, those in_db still holds (the caller sets
 * it), within the build's bounds (iso_compile()). A pattern Vectorscan
 * rejects (too large, an anchor it does not support), or whose build alone
 * exceeds the bounds, takes its rule out of the database - every piece of
 * it - and the rest is compiled again; such a rule runs everywhere.
 */
static hs_database_t *compile_view(const struct rules_hs *h, const struct hs_view *v,
                                   uint8_t *in_db, const char *what)
{
	const hs_platform_info_t *platform = h->eng->platform;
	const char **ex = xalloc_calloc(v->nexpr + 1, sizeof(*ex));
	unsigned *fl = xalloc_calloc(v->nexpr + 1, sizeof(*fl));
	unsigned *id = xalloc_calloc(v->nexpr + 1, sizeof(*id));
	hs_database_t *db = NULL;
	size_t dropped = 0;
	/*
	 * Most rejections (a pattern too long, an anchor Vectorscan does not
	 * support) show in a parse of each pattern alone, in milliseconds; a
	 * rejection by the whole compilation costs a whole compilation.
	 */
	for (size_t i = 0; i < v->nexpr; i++) {
		hs_expr_info_t *info = NULL;
		hs_compile_error_t *err = NULL;
		if (!in_db[v->ids[i]])
			continue;
		if (hs_expression_info(v->expr[i], v->flags[i], &info, &err) != HS_SUCCESS) {
			log_msg(LOG_L_DEBUG, "rules prefilter database (%s): rule %s left out: %s",
			        what, v->name[v->ids[i]], err && err->message ? err->message : "?");
			in_db[v->ids[i]] = 0;
			dropped += v->ids[i] < v->nrule;
		}
		hs_free_compile_error(err);
		free(info); /* hs's default allocator is malloc() */
	}
	for (;;) {
		size_t n = 0;
		for (size_t i = 0; i < v->nexpr; i++) {
			if (!in_db[v->ids[i]])
				continue;
			ex[n] = v->expr[i];
			fl[n] = v->flags[i];
			id[n] = v->ids[i];
			n++;
		}
		if (n == 0)
			break;
		struct iso_result res;
		iso_compile(h, ex, fl, id, (unsigned)n, platform, &res);
		if (res.what == ISO_BUILT) {
			db = res.db;
			break;
		}
		if (res.what == ISO_CANCELLED) {
			memset(in_db, 0, v->nrule + v->ngpat);
			break;
		}
		if (res.what == ISO_EXCEEDED) {
			if (drop_costly(h, v, platform, in_db, what, ex, fl, id, n) > 0)
				continue;
			if (!atomic_load(&h->cancelled))
				log_msg(LOG_L_WARNING,
				        "rules prefilter database (%s): building it %s, though no "
				        "pattern alone does: not built (the rules run without it)",
				        what, res.why);
			memset(in_db, 0, v->nrule + v->ngpat);
			break;
		}
		int bad = res.bad;
		if (bad < 0 || (size_t)bad >= n) {
			log_msg(LOG_L_WARNING, "rules prefilter database (%s): vectorscan: %s",
			        what, res.why);
			memset(in_db, 0, v->nrule + v->ngpat);
			break;
		}
		log_msg(LOG_L_DEBUG, "rules prefilter database (%s): rule %s left out: %s", what,
		        v->name[id[bad]], res.why);
		in_db[id[bad]] = 0;
		dropped += id[bad] < v->nrule;
	}
	if (dropped)
		log_msg(LOG_L_INFO,
		        "rules prefilter database (%s): %zu rule(s) Vectorscan cannot compile run "
		        "on every message",
		        what, dropped);
	free(ex);
	free(fl);
	free(id);
	return db;
}

/*
 * Paragraphs of ordinary mail. A rule whose pattern, widened as prefilter
 * mode widens it, matches every one of them matches nearly every
 * paragraph of real mail: the database reports it everywhere, so it
 * spares no run, and such patterns are among its costliest to scan. On
 * 2,167 training-fold messages with SpamAssassin's rules (AVX2 scanner,
 * each pattern alone over the 24,557 body paragraphs), the rules that
 * match all four below are the seven reported on 89-99.9% of paragraphs
 * (__FILL_THIS_FORM_PARTIAL, _FRAUD_PHISH1 and _SHORT2, __NONEMPTY_BODY,
 * __E_LIKE_LETTER, __LOWER_E, __BODY_TEXT_LINE), a third of the
 * database's scan time, and no other.
 */
static const char *const hs_ordinary[] = {
    "Hi John, thanks for sending the report over. I had a look at the figures this "
    "morning and they match what we discussed on Tuesday. Let me know when you are free "
    "to go through the next steps with the team.",
    "On Mon, 12 Aug 2002, Bob Smith wrote: I think the patch breaks the build on older "
    "compilers. It does; I have a fix queued and will push it once the tests pass on all "
    "three machines.",
    "This week in the project: the release candidate is out, the documentation has been "
    "updated, and the meeting has moved to Thursday at 10am in room 4. See the web site "
    "for the full schedule and the notes.",
    "Dear customer, your order 10442 has been shipped and should arrive within five "
    "working days. You can follow its progress on our site, and reply to this message if "
    "anything is missing or damaged.",
};

/*
 * Takes out of in_db the rules db reports on every ordinary paragraph, or
 * densely (at least once per HS_DENSE_BYTES bytes of them all): they run
 * everywhere instead, as they nearly did, or where their repeat gate lets
 * them; their number. A report that dense comes from a pattern whose
 * widened form lost its shape: SpamAssassin's __FILL_THIS_FORM_SHORT1
 * ("(?:<LNNO><YOUR><ALL><SUFFIX><BLANK>){3}") reports at one byte in three
 * of ordinary prose and two million times over the test folds' 19,405
 * body paragraphs, a sixth of the database's scan time there (242 ms
 * against 202 without it), where PCRE2 runs it on the few paragraphs its
 * gate passes (three <ALL> or more) in 10 ms. Gate patterns stay: a gate
 * counts ends, which says more than a report.
 */
static size_t drop_unselective(const struct hs_view *v, const struct rules_hs_engine *e,
                               const hs_database_t *db, uint8_t *in_db)
{
	hs_scratch_t *sc = NULL;
	if (hs_alloc_scratch(db, &sc) != HS_SUCCESS)
		return 0;
	size_t n = v->nrule + v->ngpat, dropped = 0, bytes = 0;
	uint8_t *every = xalloc_malloc(n);
	uint32_t *reports = xalloc_calloc(n, sizeof(*reports));
	uint32_t *here = xalloc_malloc(n * sizeof(*here));
	memset(every, 1, n);
	bool ok = true;
	for (size_t k = 0; k < sizeof(hs_ordinary) / sizeof(hs_ordinary[0]) && ok; k++) {
		memset(here, 0, n * sizeof(*here));
		size_t len = strlen(hs_ordinary[k]);
		ok = e->scan(db, hs_ordinary[k], (unsigned)len, 0, sc, count_match, here) ==
		     HS_SUCCESS;
		bytes += len;
		for (size_t i = 0; i < n; i++) {
			every[i] &= here[i] != 0;
			reports[i] += here[i];
		}
	}
	for (size_t i = 0; i < v->nrule && ok; i++)
		if (in_db[i] && (every[i] || (size_t)reports[i] * HS_DENSE_BYTES >= bytes)) {
			in_db[i] = 0;
			dropped++;
		}
	free(every);
	free(reports);
	free(here);
	hs_free_scratch(sc);
	return dropped;
}

static struct hs_dbs *build_all(struct rules_hs *h)
{
	struct hs_dbs *d = dbs_new();
	for (int t = 0; t < RULES_T_N; t++) {
		if (h->v[t].nrule == 0)
			continue;
		if (atomic_load(&h->cancelled)) {
			dbs_free(d);
			return NULL;
		}
		const struct hs_view *v = &h->v[t];
		d->in_db[t] = xalloc_malloc(v->nrule + v->ngpat);
		memset(d->in_db[t], 1, v->nrule + v->ngpat);
		d->db[t] = compile_view(h, v, d->in_db[t], rules_type_name(t));
		size_t dropped = d->db[t] ? drop_unselective(v, h->eng, d->db[t], d->in_db[t]) : 0;
		if (dropped > 0) {
			log_msg(
			    LOG_L_INFO,
			    "rules prefilter database (%s): %zu rule(s) that match any ordinary "
			    "paragraph there, or most of its places, run without it instead",
			    rules_type_name(t), dropped);
			hs_free_database(d->db[t]);
			d->db[t] = compile_view(h, v, d->in_db[t], rules_type_name(t));
		}
		size_t sz = 0;
		if (d->db[t] != NULL && hs_database_size(d->db[t], &sz) == HS_SUCCESS)
			d->bytes += sz;
	}
	return d;
}

/* ---------------------------------------------------------------- the cache file */

static char *cache_path(const struct rules_hs *h, const char *suffix)
{
	size_t n = strlen(h->dir) + strlen(HS_CACHE_PREFIX) + strlen(h->hex) + strlen(suffix) + 2;
	char *p = xalloc_malloc(n);
	snprintf(p, n, "%s/%s%s%s", h->dir, HS_CACHE_PREFIX, h->hex, suffix);
	return p;
}

struct wbuf {
	uint8_t *p;
	size_t n, cap;
};

static void wb_put(struct wbuf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2;
		b->p = xalloc_realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void wb_u32(struct wbuf *b, uint32_t v)
{
	wb_put(b, &v, sizeof(v));
}

static void wb_u64(struct wbuf *b, uint64_t v)
{
	wb_put(b, &v, sizeof(v));
}

/*
 * The file: magic, format, the key, then per view its type, the number
 * of rules and which are in the database, and the serialized database;
 * last a hash of all that, so a torn or altered file is never read.
 * Written to a temporary name, then renamed: readers see all or nothing.
 */
static int cache_write(const struct rules_hs *h, const struct hs_dbs *d)
{
	struct wbuf b = {0};
	wb_put(&b, HS_FILE_MAGIC, 8);
	wb_u32(&b, HS_FILE_FORMAT);
	wb_put(&b, h->key, HS_KEY_BYTES);
	uint32_t nv = 0;
	for (int t = 0; t < RULES_T_N; t++)
		nv += d->db[t] != NULL;
	wb_u32(&b, nv);
	for (int t = 0; t < RULES_T_N; t++) {
		if (d->db[t] == NULL)
			continue;
		char *bytes = NULL;
		size_t len = 0;
		if (hs_serialize_database(d->db[t], &bytes, &len) != HS_SUCCESS) {
			free(b.p);
			log_msg(LOG_L_WARNING, "rules prefilter database: cannot serialize");
			return -1;
		}
		wb_u32(&b, (uint32_t)t);
		wb_u64(&b, h->v[t].nrule + h->v[t].ngpat);
		wb_put(&b, d->in_db[t], h->v[t].nrule + h->v[t].ngpat);
		wb_u64(&b, len);
		wb_put(&b, bytes, len);
		free(bytes); /* hs's default allocator is malloc() */
	}
	uint8_t sum[HS_KEY_BYTES];
	crypto_generichash(sum, sizeof(sum), b.p, b.n, NULL, 0);
	wb_put(&b, sum, sizeof(sum));

	char tmp_suffix[64];
	snprintf(tmp_suffix, sizeof(tmp_suffix), HS_CACHE_SUFFIX ".tmp%ld", (long)getpid());
	char *tmp = cache_path(h, tmp_suffix);
	char *path = cache_path(h, HS_CACHE_SUFFIX);
	int rc = -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	/*
	 * A regex_prefilter_db_dir named but not made yet is made here, one
	 * level as the daemon makes its state directory: left to a warning,
	 * every start would pay the whole build again.
	 */
	if (fd < 0 && errno == ENOENT && mkdir(h->dir, 0750) == 0)
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd >= 0) {
		size_t off = 0;
		while (off < b.n) {
			ssize_t w = write(fd, b.p + off, b.n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			off += (size_t)w;
		}
		if (off == b.n && fsync(fd) == 0 && close(fd) == 0) {
			fd = -1;
			rc = rename(tmp, path);
		}
		if (fd >= 0)
			close(fd);
	}
	if (rc < 0) {
		log_msg(LOG_L_WARNING, "rules prefilter database: cannot write %s: %s", path,
		        strerror(errno));
		unlink(tmp);
	}
	free(tmp);
	free(path);
	free(b.p);
	return rc;
}

struct rbuf {
	const uint8_t *p;
	size_t n, off;
	bool bad;
};

static const void *rb_get(struct rbuf *b, size_t n)
{
	if (b->bad || n > b->n - b->off) {
		b->bad = true;
		return NULL;
	}
	const void *p = b->p + b->off;
	b->off += n;
	return p;
}

static uint64_t rb_u(struct rbuf *b, size_t n)
{
	const void *p = rb_get(b, n);
	uint64_t v = 0;
	if (p == NULL)
		return 0;
	if (n == 4) {
		uint32_t v32;
		memcpy(&v32, p, 4);
		v = v32;
	} else {
		memcpy(&v, p, 8);
	}
	return v;
}

static uint8_t *slurp(const char *path, size_t *len, bool *absent)
{
	*absent = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*absent = errno == ENOENT;
		return NULL;
	}
	struct stat sb;
	uint8_t *p = NULL;
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 &&
	    (uint64_t)sb.st_size <= HS_CACHE_MAX_BYTES) {
		size_t n = (size_t)sb.st_size, off = 0;
		p = xalloc_malloc(n);
		while (off < n) {
			ssize_t r = read(fd, p + off, n - off);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			off += (size_t)r;
		}
		if (off != n) {
			free(p);
			p = NULL;
		}
		*len = n;
		/* a cache in use is recent: the sweep of old files keeps it */
		futimens(fd, NULL);
	}
	close(fd);
	return p;
}

/*
 * Reads the cache file of h's key. NULL when there is none (*why NULL)
 * or when it cannot be used (*why says why: the caller logs it and builds).
 */
static struct hs_dbs *cache_read(const struct rules_hs *h, const char **why)
{
	*why = NULL;
	char *path = cache_path(h, HS_CACHE_SUFFIX);
	size_t len = 0;
	bool absent;
	uint8_t *p = slurp(path, &len, &absent);
	free(path);
	if (p == NULL) {
		if (!absent)
			*why = "unreadable or empty";
		return NULL;
	}
	struct hs_dbs *d = dbs_new();
	struct rbuf b = {.p = p, .n = len};
	uint8_t sum[HS_KEY_BYTES];
	if (len < 8 + 4 + HS_KEY_BYTES + 4 + HS_KEY_BYTES) {
		*why = "truncated";
		goto bad;
	}
	crypto_generichash(sum, sizeof(sum), p, len - HS_KEY_BYTES, NULL, 0);
	if (sodium_memcmp(sum, p + len - HS_KEY_BYTES, HS_KEY_BYTES) != 0) {
		*why = "checksum mismatch (corrupt)";
		goto bad;
	}
	b.n = len - HS_KEY_BYTES;
	const void *magic = rb_get(&b, 8);
	if (magic == NULL || memcmp(magic, HS_FILE_MAGIC, 8) != 0 ||
	    rb_u(&b, 4) != HS_FILE_FORMAT) {
		*why = "not a cache file of this version";
		goto bad;
	}
	const void *key = rb_get(&b, HS_KEY_BYTES);
	if (key == NULL || memcmp(key, h->key, HS_KEY_BYTES) != 0) {
		*why = "built for other patterns";
		goto bad;
	}
	uint64_t nv = rb_u(&b, 4);
	for (uint64_t i = 0; i < nv && !b.bad; i++) {
		uint64_t t = rb_u(&b, 4);
		uint64_t nr = rb_u(&b, 8);
		if (b.bad || t >= RULES_T_N || d->db[t] != NULL ||
		    nr != h->v[t].nrule + h->v[t].ngpat || h->v[t].nrule == 0) {
			*why = "views do not match the rules";
			goto bad;
		}
		const uint8_t *in = rb_get(&b, nr);
		uint64_t dl = rb_u(&b, 8);
		const char *bytes = rb_get(&b, dl);
		if (in == NULL || bytes == NULL) {
			*why = "truncated";
			goto bad;
		}
		d->in_db[t] = xalloc_malloc(nr);
		memcpy(d->in_db[t], in, nr);
		hs_error_t e = hs_deserialize_database(bytes, dl, &d->db[t]);
		if (e != HS_SUCCESS) {
			char *info = NULL;
			if (hs_serialized_database_info(bytes, dl, &info) == HS_SUCCESS && info)
				log_msg(LOG_L_NOTICE,
				        "rules prefilter database: cached file is %s, "
				        "this is Vectorscan %.*s",
				        info, hs_version_len(), hs_version());
			free(info);
			d->db[t] = NULL;
			*why = e == HS_DB_VERSION_ERROR    ? "made by another Vectorscan version"
			       : e == HS_DB_PLATFORM_ERROR ? "made for another CPU"
			                                   : "rejected by Vectorscan";
			goto bad;
		}
		size_t sz = 0;
		if (hs_database_size(d->db[t], &sz) == HS_SUCCESS)
			d->bytes += sz;
	}
	if (b.bad || b.off != b.n) {
		*why = "malformed";
		goto bad;
	}
	free(p);
	return d;
bad:
	free(p);
	dbs_free(d);
	return NULL;
}

struct cfile {
	char *name;
	time_t mtime;
};

static int cmp_newest(const void *a, const void *b)
{
	const struct cfile *x = a, *y = b;
	return x->mtime < y->mtime ? 1 : x->mtime > y->mtime ? -1 : strcmp(x->name, y->name);
}

/* Removes the cache files of other keys beyond the HS_CACHE_KEEP - 1 newest. */
static void cache_sweep(const struct rules_hs *h)
{
	DIR *dir = opendir(h->dir);
	if (dir == NULL)
		return;
	struct cfile *v = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		if (strncmp(de->d_name, HS_CACHE_PREFIX, strlen(HS_CACHE_PREFIX)) != 0 ||
		    strncmp(de->d_name + strlen(HS_CACHE_PREFIX), h->hex, strlen(h->hex)) == 0)
			continue;
		struct stat sb;
		if (fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(sb.st_mode))
			continue;
		v = xalloc_realloc(v, (n + 1) * sizeof(*v));
		v[n].name = xalloc_strdup(de->d_name);
		v[n].mtime = sb.st_mtime;
		n++;
	}
	if (n > 0)
		qsort(v, n, sizeof(*v), cmp_newest);
	for (size_t i = 0; i < n; i++) {
		if (i >= HS_CACHE_KEEP - 1 && unlinkat(dirfd(dir), v[i].name, 0) == 0)
			log_msg(LOG_L_INFO, "rules prefilter database: removed old %s", v[i].name);
		free(v[i].name);
	}
	free(v);
	closedir(dir);
}

/* ---------------------------------------------------------------- building and publishing */

static void publish(struct rules_hs *h, struct hs_dbs *d, int state)
{
	struct hs_dbs *old = atomic_exchange(&h->dbs, d);
	dbs_free(old); /* never set twice: old is NULL */
	atomic_store(&h->state, state);
}

/* Publishes d if the cache had it; logs why a cache file was not used. */
static bool cache_outcome(struct rules_hs *h, struct hs_dbs *d, const char *why, bool may_build)
{
	if (d != NULL) {
		log_msg(LOG_L_INFO,
		        "rules prefilter database: loaded %s/%s%s%s (%zu rules, %zu bytes)", h->dir,
		        HS_CACHE_PREFIX, h->hex, HS_CACHE_SUFFIX, h->covered, d->bytes);
		publish(h, d, RULES_DB_LOADED);
		return true;
	}
	if (why != NULL)
		log_msg(LOG_L_WARNING, "rules prefilter database: %s/%s%s%s: %s; %s", h->dir,
		        HS_CACHE_PREFIX, h->hex, HS_CACHE_SUFFIX, why,
		        may_build ? "rebuilding" : "not used");
	return false;
}

/* Cache first, then a build (written back to the cache when there is a directory). */
static void build_or_load(struct rules_hs *h, bool may_build)
{
	const char *why = NULL;
	struct hs_dbs *d = h->dir ? cache_read(h, &why) : NULL;
	if (cache_outcome(h, d, why, may_build))
		return;
	if (!may_build)
		return; /* stays pending: the rules run as with the literal prefilter alone */
	double t0 = now_s();
	d = build_all(h);
	if (d == NULL) {
		atomic_store(&h->state, RULES_DB_FAILED);
		return;
	}
	double secs = now_s() - t0;
	atomic_store(&h->build_ms, (uint64_t)(secs * 1000));
	/*
	 * Logged once the cache file is in place: whoever reads "built" (an
	 * operator's script, the tests) finds the file there too.
	 */
	bool cached = h->dir != NULL && cache_write(h, d) == 0;
	if (cached)
		cache_sweep(h);
	log_msg(LOG_L_INFO, "rules prefilter database: built for %zu rules in %.1f s (%zu bytes)%s",
	        h->covered, secs, d->bytes, cached ? ", cached" : "");
	publish(h, d, RULES_DB_BUILT);
}

/*
 * One builder per process: a reload storm queues at most one build (the
 * newest generation's; an older queued one is dropped), and a build whose
 * rules were freed meanwhile is abandoned between views.
 */
static pthread_mutex_t bm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rules_hs *bm_pending;
static bool bm_running;

static void *builder_main(void *arg)
{
	(void)arg;
	/*
	 * A build takes a core for a minute with SpamAssassin's rules: it runs
	 * only on CPU time the mail flow leaves (SCHED_IDLE, else the lowest
	 * nice value), so a start or reload never delays a message.
	 */
	struct sched_param sp = {.sched_priority = 0};
	if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
		(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
	for (;;) {
		pthread_mutex_lock(&bm_lock);
		struct rules_hs *h = bm_pending;
		bm_pending = NULL;
		if (h == NULL)
			bm_running = false;
		pthread_mutex_unlock(&bm_lock);
		if (h == NULL)
			return NULL;
		if (!atomic_load(&h->cancelled))
			build_or_load(h, true);
		hs_unref(h);
		/* what the compiler freed goes back to the system (see sift-milter.c) */
		malloc_trim(0);
	}
}

static void bm_submit(struct rules_hs *h)
{
	atomic_fetch_add(&h->refs, 1);
	pthread_mutex_lock(&bm_lock);
	struct rules_hs *old = bm_pending;
	bm_pending = h;
	bool start = !bm_running;
	if (start)
		bm_running = true;
	pthread_mutex_unlock(&bm_lock);
	if (old != NULL)
		hs_unref(old);
	if (start) {
		pthread_t t;
		if (ev_thread_start(&t, "sift-rules-db", builder_main, NULL) == 0) {
			pthread_detach(t);
		} else {
			log_msg(LOG_L_WARNING, "rules prefilter database: cannot start a thread");
			pthread_mutex_lock(&bm_lock);
			old = bm_pending;
			bm_pending = NULL;
			bm_running = false;
			pthread_mutex_unlock(&bm_lock);
			if (old != NULL)
				hs_unref(old);
		}
	}
}

void rules_hs_release(struct rules_hs *h)
{
	if (h == NULL)
		return;
	atomic_store(&h->cancelled, true);
	hs_unref(h);
}

int rules_prefilter_db_start(rules_t *r, const char *state_dir, rules_db_mode_t mode)
{
	struct rules_hs *h = r->hs;
	if (h == NULL)
		return 0;
	if (h->started)
		return 0;
	h->started = true;
	/* the cache directory: regex_prefilter_db_dir, else the state directory */
	if (r->opts.db_dir != NULL && r->opts.db_dir[0] != '\0')
		state_dir = r->opts.db_dir;
	if (state_dir != NULL && state_dir[0] != '\0')
		h->dir = xalloc_strdup(state_dir);
	switch (mode) {
	case RULES_DB_CACHED: build_or_load(h, false); break;
	case RULES_DB_NOW: build_or_load(h, true); break;
	case RULES_DB_BACKGROUND: {
		/* a cached database is read now (milliseconds), before any message */
		const char *why = NULL;
		struct hs_dbs *d = h->dir ? cache_read(h, &why) : NULL;
		if (!cache_outcome(h, d, why, true)) {
			/* said, so that whoever measures the daemon waits for "built" */
			log_msg(
			    LOG_L_INFO,
			    "rules prefilter database: building for %zu rules in the background "
			    "(until then they run without it)",
			    h->covered);
			bm_submit(h);
		}
		break;
	}
	}
	return 0;
}

rules_db_state_t rules_prefilter_db_state(const rules_t *r, size_t *covered, size_t *bytes)
{
	const struct rules_hs *h = r->hs;
	if (covered)
		*covered = h ? h->covered : 0;
	if (bytes) {
		const struct hs_dbs *d = h ? atomic_load(&h->dbs) : NULL;
		*bytes = d ? d->bytes : 0;
	}
	return h ? (rules_db_state_t)atomic_load(&h->state) : RULES_DB_OFF;
}

bool rules_hs_in_db(const rules_t *r, const char *rule)
{
	const struct rules_hs *h = r->hs;
	const struct hs_dbs *d = h ? atomic_load(&h->dbs) : NULL;
	long ri = rules_lookup(r, rule);
	for (int t = 0; d != NULL && ri >= 0 && t < RULES_T_N; t++)
		for (size_t i = 0; d->in_db[t] != NULL && i < h->v[t].nrule; i++)
			if (h->v[t].rule[i] == (size_t)ri)
				return d->db[t] != NULL && d->in_db[t][i];
	return false;
}

bool rules_prefilter_db_wait(const rules_t *r, long timeout_ms)
{
	const struct rules_hs *h = r->hs;
	for (long waited = 0; h != NULL; waited += 10) {
		int s = atomic_load(&h->state);
		if (s == RULES_DB_BUILT || s == RULES_DB_LOADED)
			return true;
		if (s == RULES_DB_FAILED || waited >= timeout_ms)
			return false;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return false;
}

/* ---------------------------------------------------------------- scanning */

struct scan_ctx {
	const struct hs_view *v;
	const uint8_t *in_db;
	struct pf_result *res;
	uint32_t span;
	/* the repeat gates on this piece: what the rule's own pattern said, and
	 * per gate pattern the ends counted and the last one */
	bool seen[HS_GATES_MAX];
	unsigned count[HS_GATES_MAX];
	unsigned long long last[HS_GATES_MAX];
};

/* Whether gate k decides for its rule: its pattern is in the database. */
static bool gate_on(const struct hs_view *v, const uint8_t *in_db, size_t k)
{
	return in_db[v->nrule + v->gate[k].pat] != 0;
}

static int on_match(unsigned int id, unsigned long long from, unsigned long long to,
                    unsigned int flags, void *ctx)
{
	(void)from;
	(void)flags;
	struct scan_ctx *c = ctx;
	const struct hs_view *v = c->v;
	if (id >= v->nrule) {
		/*
		 * Greedy over ends in order: the most ends pairwise at least the
		 * width apart. An end out of order is counted: more is safe.
		 */
		size_t p = id - v->nrule;
		if (p < v->ngpat &&
		    (c->count[p] == 0 || to < c->last[p] || to - c->last[p] >= v->gate_width[p])) {
			c->count[p]++;
			if (to > c->last[p])
				c->last[p] = to;
		}
		return 0;
	}
	if (!c->in_db[id])
		return 0;
	uint32_t g = v->gate_of ? v->gate_of[id] : 0;
	if (g != 0 && gate_on(v, c->in_db, g - 1))
		c->seen[g - 1] = true;
	else
		rules_pf_list(c->res, v->rule[id], c->span);
	return 0;
}

void rules_hs_scan(const rules_t *r, int type, const char *text, struct pf_result *res)
{
	const struct rules_hs *h = r->hs;
	if (h == NULL || type < 0 || type >= RULES_T_N || h->v[type].nrule == 0)
		return;
	struct hs_dbs *d = atomic_load_explicit(&h->dbs, memory_order_acquire);
	if (d == NULL || d->db[type] == NULL)
		return; /* not built yet: these rules stay marked to run everywhere */
	hs_scratch_t *sc = rules_scratch_get(&d->pool, d->db, RULES_T_N);
	if (sc == NULL)
		return;
	const struct hs_view *v = &h->v[type];
	const uint8_t *in = d->in_db[type];
	for (size_t i = 0; i < v->nrule; i++)
		if (in[i])
			res->want[v->rule[i]] = PF_SKIP;
	/* a rule Vectorscan cannot take runs only where its gate lets it */
	for (size_t g = 0; g < v->ngate; g++)
		if (gate_on(v, in, g))
			res->want[v->rule[v->gate[g].rule]] = PF_SKIP;
	struct scan_ctx c = {.v = v, .in_db = in, .res = res};
	/* each piece on its own: anchors and \b then see what PCRE2 sees */
	for (size_t k = 0; k < res->nspans; k++) {
		c.span = (uint32_t)k;
		/* a gate from an ASCII form is a rule in v->ascii: none there, nothing to check */
		bool ascii_piece = v->nascii == 0 ||
		                   rules_text_is_ascii(text + res->span_off[k], res->span_len[k]);
		if (!ascii_piece)
			for (size_t i = 0; i < v->nascii; i++)
				if (in[v->ascii[i]])
					rules_pf_list(res, v->rule[v->ascii[i]], c.span);
		memset(c.seen, 0, v->ngate * sizeof(c.seen[0]));
		memset(c.count, 0, v->ngpat * sizeof(c.count[0]));
		memset(c.last, 0, v->ngpat * sizeof(c.last[0]));
		if (h->eng->scan(d->db[type], text + res->span_off[k], (unsigned)res->span_len[k],
		                 0, sc, on_match, &c) != HS_SUCCESS) {
			for (size_t i = 0; i < v->nrule; i++)
				if (in[i] || (v->gate_of && v->gate_of[i]))
					res->want[v->rule[i]] = PF_ALL;
			break;
		}
		for (size_t g = 0; g < v->ngate; g++) {
			const struct hs_gate *gt = &v->gate[g];
			if (!gate_on(v, in, g))
				continue;
			/* an ASCII form's gate says nothing of a piece with other bytes */
			bool pass = (gt->from_ascii && !ascii_piece) ||
			            ((c.seen[g] || !in[gt->rule]) && c.count[gt->pat] >= gt->min);
			if (pass)
				rules_pf_list(res, v->rule[gt->rule], c.span);
		}
	}
	rules_scratch_put(&d->pool, sc);
}

#else /* !HAVE_VECTORSCAN */

bool rules_hs_engine_sound(void)
{
	return false;
}

struct rules_hs *rules_hs_prepare(rules_t *r)
{
	(void)r;
	return NULL;
}

void rules_hs_release(struct rules_hs *h)
{
	(void)h;
}

void rules_hs_scan(const rules_t *r, int type, const char *text, struct pf_result *res)
{
	(void)r;
	(void)type;
	(void)text;
	(void)res;
}

int rules_prefilter_db_start(rules_t *r, const char *state_dir, rules_db_mode_t mode)
{
	(void)r;
	(void)state_dir;
	(void)mode;
	return 0;
}

rules_db_state_t rules_prefilter_db_state(const rules_t *r, size_t *covered, size_t *bytes)
{
	(void)r;
	if (covered)
		*covered = 0;
	if (bytes)
		*bytes = 0;
	return RULES_DB_OFF;
}

bool rules_prefilter_db_wait(const rules_t *r, long timeout_ms)
{
	(void)r;
	(void)timeout_ms;
	return false;
}

bool rules_hs_in_db(const rules_t *r, const char *rule)
{
	(void)r;
	(void)rule;
	return false;
}

#endif
