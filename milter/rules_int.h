/*
 * rules_int.h - what the rules engine's files (rules.c: compile and match;
 * rules_parse.c: the rule-file language; rules_lit.c: the literal
 * prefilter) share. Not a public interface: see include/rules.h.
 */
#ifndef SIFT_RULES_INT_H
#define SIFT_RULES_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "dns.h"
#include "log.h"
#include "rules.h"
#include "xalloc.h"

/* SpamAssassin's MAX_BODY_LINE_LENGTH: body pieces and rawbody chunks. */
#define RULES_LINE_MAX_BYTES 2048

/* Header-name modifiers (":raw" etc.) */
enum {
	HM_RAW = 1u << 0,
	HM_ADDR = 1u << 1,
	HM_NAME = 1u << 2,
	HM_FIRST = 1u << 3,
	HM_LAST = 1u << 4,
	HM_HOST = 1u << 5,
	HM_DOMAIN = 1u << 6,
};

enum {
	TF_MULTIPLE = 1u << 0,
	TF_NICE = 1u << 1,
	TF_NET = 1u << 2,   /* a network test: off in score sets 0 and 2 */
	TF_LEARN = 1u << 3, /* a Bayes test: off in score sets 0 and 1 */
	/* URIDNSBL: ask only about host names, only about IP literals, the host unreduced */
	TF_DOMAINS_ONLY = 1u << 4,
	TF_IPS_ONLY = 1u << 5,
	TF_NOTRIM = 1u << 6,
	TF_NOSUBJECT = 1u << 7, /* body: not the Subject line the body view starts with */
	/* uridnsbl/uridnssub: ask about the hosts' addresses, their name servers' (the default) */
	TF_A = 1u << 8,
	TF_NS = 1u << 9,
};

struct rules_evaldef;

/* Meta program: a tiny RPN machine. */
enum meta_opcode {
	MOP_NUM,
	MOP_RULE,
	MOP_NOT,
	MOP_NEG,
	MOP_AND,
	MOP_OR,
	MOP_ADD,
	MOP_SUB,
	MOP_MUL,
	MOP_DIV,
	MOP_GT,
	MOP_GE,
	MOP_LT,
	MOP_LE,
	MOP_EQ,
	MOP_NE,
	/*
	 * Only in rules_t.mcode, and last (op >= MOP_SUM tests for both): a
	 * chain of rules added up or or-ed, arg its index in rules_t.mchain.
	 */
	MOP_SUM,
	MOP_ANY,
};

/* The evaluation stack of a meta: rules_meta_compile() rejects deeper expressions. */
enum { RULES_META_STACK = 64 };
/* Metas over metas deeper than this are evaluated eagerly (see mark_deferred). */
enum { RULES_LAZY_MAX_DEPTH = 64 };
/*
 * A pending rule's cost on a message is its pattern's cost times
 * (1 + bytes / RULES_LAZY_COST_BYTES): the 1 for the run itself. A header
 * rule whose field's value is not built yet is taken to read
 * RULES_LAZY_FIELD_BYTES.
 */
enum { RULES_LAZY_COST_BYTES = 8, RULES_LAZY_FIELD_BYTES = 128 };

struct meta_op {
	uint32_t op : 8; /* enum meta_opcode */
	/* the && or || whose left operand ends at this op (0: none; op 0 is
	 * never one), so an evaluator that finds it decisive skips the right
	 * one (a meta has fewer than RULES_META_OPS_MAX ops) */
	uint32_t jump : 24;
	uint32_t arg; /* MOP_RULE: the rule's index; MOP_NUM: the number's in the rule's nums */
};
/*
 * Eight bytes an op: a message's metas read some fourteen thousand of them
 * (SpamAssassin's set), and their loads were the lazy evaluator's largest
 * cost at 24 bytes each.
 */
_Static_assert(sizeof(struct meta_op) == 8, "a meta op is two words");
enum { RULES_META_OPS_MAX = 1 << 24 };

/*
 * A meta's program as the evaluator reads it (rules_t.mcode): the ops and
 * numbers of every meta packed in one block in evaluation order, so a
 * message's metas are read as one stream, not from a heap allocation and
 * a rule record each (their cache misses were most of the lazy
 * evaluator's time).
 */
struct meta_code {
	const struct meta_op *prog;
	const double *nums;
	uint32_t nprog;
};

/*
 * A chain of rules added up, "__A + __B + ... + __Z", or or-ed, "__A ||
 * __B || ... || __Z", packed into one MOP_SUM or MOP_ANY op (meta_pack).
 * SpamAssassin's four __ADVANCE_FEE_{2..5}_NEW sum the same seventy-odd
 * rules and differ in the threshold only: one mchain serves the four, so
 * the lazy evaluator adds them up once for the four metas each time one of
 * their rules settles, not four times through the meta's program; and it
 * goes through RDNS_DYNAMIC's two dozen header rules or-ed, after each of
 * them runs, in a loop over the rules rather than through the bounds.
 * Chains shorter than RULES_META_CHAIN_MIN rules stay ops: packing those of
 * two measured the same, leaving those under four or eight cost more.
 */
struct meta_chain {
	uint32_t off; /* the rules' indices, rules_t.mchain_rules[off .. off + n) */
	uint32_t n;
	uint32_t op; /* MOP_SUM or MOP_ANY */
};
enum { RULES_META_CHAIN_MIN = 3 };

/* shortcircuit NAME on|spam|ham (off: none) */
enum { RULES_SC_NONE, RULES_SC_ON, RULES_SC_SPAM, RULES_SC_HAM };

struct rule {
	char *name;
	char *desc;
	char *file; /* where it was defined (interned in the rules_t) */
	unsigned line;
	int type;     /* RULES_T_*, -1 while only score/describe lines were seen */
	bool defined; /* a rule line was seen */
	bool skipped; /* eval: or otherwise unsupported: never hits */
	bool has_score;
	bool disabled;          /* score 0 */
	bool seen_inactive;     /* a rule line for it sits in an inactive if/ifplugin block */
	const char *score_file; /* the score line that set score (interned), for lint */
	unsigned score_line;
	bool report; /* not __, score != 0: added to the hits */
	bool unused; /* no scored rule depends on it: compiled (for lint), never run */
	double score;
	unsigned tflags;
	unsigned maxhits; /* 0: unlimited */
	int priority;
	/*
	 * SpamAssassin's Shortcircuit plugin: what a hit of this rule does
	 * (RULES_SC_*), and the priority it counts at for the cut - its own,
	 * lowered to that of any meta that reads it, as SpamAssassin's
	 * fix_priorities() does, so a meta always has its operands.
	 */
	uint8_t sc;
	int sc_priority;

	/* Regex rules. */
	char *pattern;       /* after ReplaceTags */
	uint32_t re_options; /* PCRE2 compile options from the flags */
	bool negate;         /* header !~ */
	pcre2_code **codes;  /* more than one when split */
	size_t ncodes;
	bool *jit; /* per code: JIT-compiled */
	/* when split: each code's pattern text (rules_hs.c compiles the pieces) */
	char **pieces;
	size_t *piecelen;
	size_t npieces;

	/* the pattern as it stands on text with no byte above 0x7f (rules_ascii.c),
	 * when that is much smaller: run instead of codes on such text */
	pcre2_code **acodes;
	bool *ajit;
	size_t nacodes;
	char *apattern; /* its text: what the prefilter database holds for the rule */
	char **apieces; /* when split: each code's text */
	size_t *apiecelen;
	size_t napieces;

	/* header / mimeheader */
	char *hdr_name;
	unsigned hdr_mods;
	bool hdr_exists;
	char *if_unset; /* NULL: absent field matches as "" */
	size_t hkey;    /* index into rules_t.hkeys */

	/* eval: tests this engine implements (rules_eval*.c); NULL for the rest */
	const struct rules_evaldef *evaldef;
	char **eargs; /* the arguments, unquoted */
	size_t neargs;
	/*
	 * strtod() of each argument, taken once at load: the tests that
	 * compare with a number read it here, not by a strtod() every
	 * message. The C locale throughout, so the same number either way.
	 */
	double *eargn;

	/* meta */
	char *meta_src;
	struct meta_op *prog;
	size_t nprog;
	double *nums; /* the numbers MOP_NUM ops name */

	/*
	 * Lazy sub-rules (rules.c): a __ regex rule of the header or a body-like
	 * view is only read by metas, so it runs when a meta's value turns on
	 * it. lazy_cost estimates what settling it costs per byte of text it
	 * reads (a meta's: the sum of its operands', only tested for > 0),
	 * so a meta settles its cheaper operands first.
	 */
	bool deferred;
	double lazy_cost;

	/* SpamAssassin 4 capture rules */
	bool capture_dep; /* uses %{TAG}: compiled per message with the captured value */
	bool tags_needed; /* every match holds each %{TAG}'s value (rules_tags_required) */
	bool captures;    /* names a group (?<TAG>...) that some %{TAG} uses */

	/* prefilter: the rule may match only if one of these occurs */
	char **lits; /* lower-case */
	size_t *litlen;
	size_t nlits;

	_Atomic uint64_t errors;
	_Atomic uint64_t cpu_ns;
	_Atomic uint64_t evals;
	_Atomic uint64_t hits; /* messages it hit (reported rules), for the metrics */
};

/* rules_t.hot's bits, set by rules_finish() */
enum {
	RULES_HOT_DEFERRED = 1, /* rule.deferred */
	RULES_HOT_LAZY = 2,     /* rule.lazy_cost > 0: a meta settled lazily */
	RULES_HOT_MANY = 4,     /* not a meta, tflags multiple: counts, not 0/1 */
	RULES_HOT_REPORT = 8,   /* rule.report */
};

/* A distinct header query shared by the header rules that use it. */
struct hkey {
	char *name;   /* as written, without modifiers */
	uint32_t key; /* msg_header_key(name), for msg_header_next_key() */
	unsigned mods;
	bool mime;    /* for mimeheader rules */
	uint8_t kind; /* RULES_HK_*, from the name once (rules.c's hkey_kind) */
};

/* What an hkey's name stands for: a field, or one of SpamAssassin's pseudo-fields. */
enum {
	RULES_HK_FIELD,
	RULES_HK_ALL,
	RULES_HK_ALL_INNER, /* ALL-TRUSTED, ALL-INTERNAL */
	RULES_HK_ALL_OUTER, /* ALL-UNTRUSTED, ALL-EXTERNAL */
	RULES_HK_TOCC,
	RULES_HK_MESSAGEID,
	RULES_HK_ENVFROM,
	RULES_HK_RELAYS_INNER, /* X-Spam-Relays-Trusted, -Internal */
	RULES_HK_RELAYS_OUTER, /* X-Spam-Relays-Untrusted, -External */
	RULES_HK_SIFT_MIME,
};

struct rules_prefilter;

struct rules {
	struct rule *v;
	size_t n, cap;
	/* name -> index + 1, open addressing */
	size_t *hash;
	size_t hcap;

	struct hkey *hkeys;
	size_t nhkeys;
	/* the header literal prefilter: which hkeys some prefiltered header rule
	 * reads, and each header rule's hkey (per rule index) */
	uint8_t *hkey_lit;
	uint32_t *rule_hkey;

	/* evaluation order */
	size_t *order[RULES_T_N];
	size_t norder[RULES_T_N];
	size_t *late; /* capture dependents, run after every other regex rule */
	size_t nlate;
	size_t *evals; /* eval: tests, run after the regex rules, before the metas */
	size_t nevals;
	/*
	 * Per rule, what the evaluation loops test of every rule on every
	 * message (RULES_HOT_*): a byte each, so those loops do not pull each
	 * rule's record, hundreds of bytes, into the cache to read one flag.
	 */
	uint8_t *hot;
	struct meta_code *mcode;         /* per rule, the metas' (zero for the others) */
	void *mblock;                    /* what mcode points into */
	struct meta_chain *mchain;       /* the MOP_SUM and MOP_ANY ops', each distinct once */
	uint32_t *mchain_rules;          /* their rules */
	size_t nmchain;
	double *lazy_cost;               /* per rule, rule.lazy_cost, for the same reason as hot */
	/*
	 * The lazily settled metas that read each rule, and the chains: rule i's
	 * from lazy_parent[lazy_parent_off[i]] to [lazy_parent_off[i + 1]];
	 * mchain k is node n + k, under each of its rules, its metas under it
	 * (n + nmchain + 1 offsets).
	 */
	uint32_t *lazy_parent;
	uint32_t *lazy_parent_off;
	struct rules_freemail *freemail; /* freemail_domains and friends, NULL if none */
	struct rules_wlbl *wlbl;         /* welcomelist_from and friends, NULL if none */
	struct rules_fromname *fromname; /* the fns_* directives, NULL if none */
	struct rules_shorturl *shorturl; /* url_shortener domains, NULL if none */
	dns_t *dns; /* the shared DNS service for check_rbl (a reference), NULL: no lookups */
	struct rules_uridnsbl *uridnsbl;     /* urirhssub and friends, NULL if none */
	struct rules_dns_zones *dns_zones;   /* check_rbl zones and their probe state */
	struct rules_dns_blocks *dns_blocks; /* dns_block_rule lines and what they block */
	struct rules_dns_res *dns_res;       /* their regex subtests, compiled */
	char *rbl_headers; /* DNSEval's rbl_headers for check_rbl_headers, NULL: its default */
	char **tags;       /* capture tags that some rule uses */
	size_t ntags;
	/* the last ok_locales line; NULL: SpamAssassin's default, "all" */
	char *ok_locales;
	/* TextCat's directives and language profiles, NULL if no directive was seen */
	struct rules_textcat *textcat;
	/* redirector_pattern lines, in file order (rules_uri.c) */
	struct rules_redirector {
		char *pattern;
		uint32_t options;
		const char *file; /* interned */
		unsigned line;
		pcre2_code *code; /* compiled by rules_finish() */
	} * redir;
	size_t nredir;
	/* rules with a shortcircuit type, in file order; the points of the spam and ham types */
	size_t *sc;
	size_t nsc;
	double sc_spam_score, sc_ham_score;

	char **files; /* interned file names */
	size_t nfiles;

	rules_opts_t opts;
	uint64_t generation; /* distinguishes rule sets in the thread cache */
	const uint8_t *tables;
	pcre2_compile_context *cctx;

	struct rules_prefilter *pf;
	struct rules_hs *hs; /* the prefilter database of rules without literals, or NULL */
	rules_stats_t stats;
	/* Written by matching threads: pointers, so a const rules_t still updates them. */
	log_ratelimit_t *error_log;
	_Atomic uint64_t *errors_total;
	/* RULES_EVAL_TIMING: per view, CPU ns building it and scanning it for the
	 * prefilter ([type * 2] and [type * 2 + 1]) */
	_Atomic uint64_t *view_ns;
};

#ifdef HAVE_VECTORSCAN
#include <hs/hs.h>
#include <pthread.h>

/*
 * Vectorscan scratch space for one set of databases, shared by the
 * threads that scan with it (rules_lit.c). libmilter runs a thread per
 * connection: a scratch made per thread was made again for every
 * connection (with SpamAssassin's rules the pool holds the daemon's peak
 * RSS 4 MiB lower in the benchmark). get() takes a free one or makes one
 * that fits every database in dbs[0..n) (NULL ones skipped), NULL if
 * that fails; put() gives it back. Any thread.
 */
struct rules_scratch_pool {
	pthread_mutex_t lock;
	hs_scratch_t **free;
	size_t n, cap;
};
void rules_scratch_pool_init(struct rules_scratch_pool *p);
void rules_scratch_pool_fini(struct rules_scratch_pool *p);
hs_scratch_t *rules_scratch_get(struct rules_scratch_pool *p, hs_database_t *const *dbs, size_t n);
void rules_scratch_put(struct rules_scratch_pool *p, hs_scratch_t *s);

/*
 * A Vectorscan scanner the prefilter may use (rules_hs.c): its scan
 * function and the platform its databases are compiled for (NULL: this
 * CPU's). Static, read-only once chosen.
 */
struct rules_hs_engine {
	hs_error_t (*scan)(const hs_database_t *db, const char *data, unsigned int length,
	                   unsigned int flags, hs_scratch_t *scratch, match_event_handler on_event,
	                   void *ctx);
	const hs_platform_info_t *platform;
	const char *name;
};
/*
 * The scanner r's prefilter uses: the first that finds every match of the
 * probes (rules_hs.c), or the dispatched one when forced
 * (regex_prefilter_engine = vectorscan); NULL: none, go without.
 */
const struct rules_hs_engine *rules_hs_engine(const rules_t *r);
#endif

/* rules.c */
/*
 * The body view's lines joined by "\n" (SpamAssassin's rendered body
 * array as TextCat reads it), in arena a; its length in *len.
 */
const char *rules_body_joined(arena_t *a, msg_t *m, const mime_t *mi, size_t *len);
size_t rules_intern_rule(rules_t *r, const char *name);
long rules_lookup(const rules_t *r, const char *name);
const char *rules_intern_file(rules_t *r, const char *file);
const uint8_t *rules_latin1_tables(void);
int rules_compile_rule(rules_t *r, struct rule *ru, diag_t *d);
/*
 * pcre2_compile() for a pattern from a rules file (any rule or eval
 * argument): one with a possessive quantifier, an atomic group or \R is
 * compiled without auto-possessification, where PCRE2 10.42 goes wrong.
 * len may be PCRE2_ZERO_TERMINATED.
 */
pcre2_code *rules_re_compile(const char *pat, size_t len, uint32_t opts, pcre2_compile_context *cc,
                             int *err, PCRE2_SIZE *off);
/* JIT-compiles code, compiled from pat, unless its JIT would go wrong (above); whether it did. */
bool rules_re_jit(pcre2_code *code, const char *pat, size_t len);

/* rules_parse.c */
int rules_parse_file(rules_t *r, void *parse_state, const char *path, diag_t *d);
void *rules_parse_begin(rules_t *r);
int rules_parse_text(rules_t *r, void *parse_state, const char *name, const char *text, diag_t *d);
int rules_parse_end(rules_t *r, void *parse_state, diag_t *d);
int rules_meta_compile(rules_t *r, struct rule *ru, diag_t *d);
/*
 * Parses "/re/flags" or "m{re}flags" (any m-delimiter): on success sets
 * *pat (malloc'd), *opts (PCRE2 options of the flags i, s, m, x) and *end
 * (past the flags and any blanks) and returns 0; -1 with err otherwise.
 */
int rules_parse_regex(const char *s, char **pat, uint32_t *opts, const char **end, char *err,
                      size_t errlen);

/*
 * rules_uri.c: the URI list uri rules run over (SpamAssassin's): the MIME
 * module's links, the addresses written in the text as mailto: links,
 * and their canonical variants, redirect targets by r's redirector_pattern
 * lines (matched under mc's limits) or else SpamAssassin's generic form;
 * each once, bounded, in arena a.
 */
size_t rules_uri_list(arena_t *a, const mime_t *mi, const rules_t *r, pcre2_match_context *mc,
                      const char ***out);
/*
 * The same links one by one, as SpamAssassin's uri_detail rules see them:
 * each link (a "www." one with "http://" before it) and address written in
 * the text, where it was found (MIME_URI_* bits), and its cleaned list (the
 * link itself, then its variants and redirect targets as above).
 */
struct rules_uri_detail {
	const char *raw;
	uint32_t types;
	bool schemeless; /* found in the text as "www.", without its scheme */
	const char **cleaned;
	size_t ncleaned;
};
size_t rules_uri_details(arena_t *a, const mime_t *mi, const rules_t *r, pcre2_match_context *mc,
                         struct rules_uri_detail **out);

/*
 * rules_relays.c: the X-Spam-Relays-Trusted and -Untrusted values (arena
 * strings), and in *rcvd_trusted how many Received fields from the top
 * the trusted relays account for (SpamAssassin's last_trusted_relay_index
 * + 1: the index of the Received field that starts ALL-UNTRUSTED), and
 * in *no_rdns, per untrusted relay in order, whether its MTA looked up
 * reverse DNS and found none (SpamAssassin's no_reverse_dns), and in
 * *unparseable how many Received fields no MTA form reads (SpamAssassin's
 * num_relays_unparseable; they are not in the lists).
 */
void rules_relays(arena_t *a, msg_t *m, const char **trusted, const char **untrusted,
                  size_t *rcvd_trusted, const bool **no_rdns, size_t *unparseable);
/*
 * One Received field value read as the relay parser reads it, for the
 * tests and contrib/sa-received.sh: 1 with the relay written to out as
 * "ip=... rdns=... helo=... by=... ident=... envfrom=... id=... auth=...
 * no_rdns=N", 0 for a field the parser ignores on purpose (a mail
 * fetcher's marker, "invoked by uid"...), -1 for one it cannot read.
 * Thread-safe.
 */
int rules_relays_parse_one(const char *field, char *out, size_t outlen);
/*
 * Compiles the relay parser's built-in patterns now rather than on the
 * first Received field read (about 10 ms of PCRE2 JIT), so the daemon's
 * first message does not wait for it. Once per process; thread-safe.
 */
void rules_relays_prepare(void);

/*
 * Eval tests (rules_eval.c and its families rules_eval_*.c). One table,
 * rules_evaldefs, names every eval function implemented; a family file
 * exports its own table, joined in rules_eval.c. A function sees the
 * message through a rules_evalenv made once per message and returns the
 * hit count (0: no hit) or -1 when it could not decide (counted as an
 * error, no hit). check(), when set, validates the arguments at load and
 * returns an error text, or NULL; a text starting with '~' skips the rule
 * with that warning instead (a form of the test not implemented).
 */
struct rules_relay {
	const char *ip, *rdns, *helo, *by, *ident, *envfrom, *id, *auth;
};

enum {
	RULES_EVAL_CACHE_DATEDIFF,
	RULES_EVAL_CACHE_HOTMAIL,
	RULES_EVAL_CACHE_RCVD_FLAT, /* rules_eval_header.c: received_flat() */
	RULES_EVAL_CACHE_RECIPS,
	RULES_EVAL_CACHE_MIME,
	RULES_EVAL_CACHE_MADIFF,
	RULES_EVAL_CACHE_FMBODY,
	RULES_EVAL_CACHE_DNS,   /* rules_eval_dns.c: the message's lookups */
	RULES_EVAL_CACHE_IMAGE, /* rules_eval_image.c: images and PDFs */
	RULES_EVAL_CACHE_PDF,
	RULES_EVAL_CACHE_PDF_MD5, /* rules_eval_image.c: PDFInfo's digests, when asked */
	RULES_EVAL_CACHE_UPPER, /* rules_eval_mime.c: check_for_uppercase's percent */
	/* rules_eval_fromname.c: the From name's facts */
	RULES_EVAL_CACHE_FROMNAME,
	/* rules_eval_wlbl.c: host names written without a scheme */
	RULES_EVAL_CACHE_SCHEMELESS,
	/* rules_eval_html.c: the links as uri_detail rules see them */
	RULES_EVAL_CACHE_URIDETAIL,
	/* rules_eval_textcat.c: the body text as TextCat reads it, and its guess */
	RULES_EVAL_CACHE_TEXTCAT,
	RULES_EVAL_CACHE_N
};

enum { RULES_EVAL_FIELDS = 32 };

struct rules_evalenv {
	const rules_t *r;
	msg_t *m;
	const mime_t *mi;
	arena_t *a;
	bool relays_done;
	const char *trusted_str, *untrusted_str; /* X-Spam-Relays-Trusted, -Untrusted */
	size_t rcvd_trusted;           /* Received fields from the top added by trusted relays */
	size_t relays_unparseable;     /* Received fields no MTA form reads */
	const bool *untrusted_no_rdns; /* per untrusted relay: looked up, none found */
	struct rules_relay *untrusted; /* newest first */
	size_t nuntrusted;
	struct rules_relay *trusted;
	size_t ntrusted;
	const hits_t *h;    /* the hits so far: the auth module's results (rules_eval_auth.c) */
	void *html;         /* rules_eval_html.c's per-message facts */
	const char *detail; /* set by a test that hit: what it found, for explanations */
	/* facts several rules of a family share, computed once per message */
	void *cache[RULES_EVAL_CACHE_N];
	/* the fields read through rules_eval_header(_raw), each built once:
	 * on the test folds a message's evals ask some forty times for about
	 * eighteen distinct (name, raw) pairs; none came near the bound */
	struct rules_eval_field {
		const char *name; /* a copy in the arena */
		bool raw;
		const char *value; /* NULL: absent */
	} fields[RULES_EVAL_FIELDS];
	size_t nfields;
	/* per field index, its value decoded: rules_eval_field_decoded() */
	const char **decoded;
};

typedef long (*rules_eval_fn)(struct rules_evalenv *e, const struct rule *ru);

struct rules_evaldef {
	const char *name;
	rules_eval_fn fn;
	unsigned min_args, max_args;
	const char *(*check)(const struct rule *ru);
};

extern const struct rules_evaldef rules_eval_header_defs[];
extern const struct rules_evaldef rules_eval_relay_defs[];
extern const struct rules_evaldef rules_eval_mime_defs[];
extern const struct rules_evaldef rules_eval_html_defs[];
extern const struct rules_evaldef rules_eval_freemail_defs[];
extern const struct rules_evaldef rules_eval_body_defs[];
extern const struct rules_evaldef rules_eval_wlbl_defs[];
extern const struct rules_evaldef rules_eval_auth_defs[];
extern const struct rules_evaldef rules_eval_dns_defs[];
extern const struct rules_evaldef rules_eval_image_defs[];
extern const struct rules_evaldef rules_eval_fromname_defs[];
extern const struct rules_evaldef rules_eval_antivirus_defs[];
extern const struct rules_evaldef rules_eval_vbounce_defs[];
extern const struct rules_evaldef rules_eval_shorturl_defs[];
extern const struct rules_evaldef rules_eval_textcat_defs[];
/*
 * rules_eval_dns.c: starts the lookups of every check_rbl rule that runs,
 * in one batch on dns (nothing when dns is NULL), before the other rules;
 * the tests wait for it once, until deadline_ms. _end() releases it and
 * returns the lookups not answered by the deadline.
 */
void rules_eval_dns_begin(struct rules_evalenv *e, dns_t *dns, long deadline_ms);
unsigned rules_eval_dns_end(struct rules_evalenv *e);
/* After load: the check_rbl zones to probe (rules_eval_dns_free() frees them). */
void rules_eval_dns_finish(rules_t *r);
void rules_eval_dns_free(rules_t *r);
/*
 * The URIDNSBL directives (urirhssub, urirhsbl, uridnsbl_skip_domain...),
 * dns_block_rule / dns_block_time and DNSEval's rbl_headers: false when
 * dir is none of them;
 * else true with *err NULL, an error, or '~' and the reason the directive
 * is skipped.
 */
struct rules_uridnsbl;
bool rules_uridnsbl_directive(rules_t *r, const char *dir, const char *rest, const char **err);
void rules_uridnsbl_free(struct rules_uridnsbl *u);
/*
 * Whether d is answered from the auth module's results: such a rule and
 * auth's hit of the same name (SPF_PASS, DKIM_VALID, ...) are one fact,
 * scored once (auth's hit stands; the rule still counts in metas).
 */
bool rules_eval_is_auth(const struct rules_evaldef *d);

/*
 * rules_eval_wlbl.c: welcomelist_from and friends; 1 when dir is one of
 * them, with *err set when its line is wrong (else NULL).
 */
struct rules_wlbl;
int rules_wlbl_directive(rules_t *r, const char *dir, const char *rest, const char **err);
void rules_wlbl_free(struct rules_wlbl *w);
/* VBounce's welcomelist_bounce_relays: any listed; host (n bytes) matches one (ASCII case folded)
 */
bool rules_wlbl_have_bounce_relays(const rules_t *r);
bool rules_wlbl_bounce_relay(const rules_t *r, const char *host, size_t n);
/* DKIM's adsp_override for domain (itself, then *.parent ... *): N/U/A/D/1/2/3, 0 if none */
char rules_wlbl_adsp_override(const rules_t *r, const char *domain);

/* rules_eval_freemail.c: the freemail_* directives (NULL, an error, or '~' and a skip reason) */
struct rules_freemail;
const char *rules_freemail_directive(rules_t *r, const char *dir, const char *rest);
void rules_freemail_finish(rules_t *r);
void rules_freemail_free(struct rules_freemail *f);
/*
 * rules_eval_shorturl.c: url_shortener, url_shortener_get and
 * clear_url_shortener (NULL, an error, or '~' and a skip reason)
 */
struct rules_shorturl;
const char *rules_shorturl_directive(rules_t *r, const char *dir, const char *rest);
void rules_shorturl_free(struct rules_shorturl *s);
/*
 * rules_eval_textcat.c: the TextCat directives (ok_languages,
 * inactive_languages, textcat_*): 0 when dir is none of them, 1 when taken,
 * -1 with the error reported at file:line. _finish() reads the language
 * profiles once per load, from the "languages" file in the first of paths
 * (a rules directory, or beside a rules file) that has one, and only when
 * a rule that runs calls check_language and ok_languages is not all;
 * a missing or empty file warns at that rule and the test never hits.
 */
struct rules_textcat;
int rules_textcat_directive(rules_t *r, const char *dir, const char *rest, diag_t *d,
                            const char *file, unsigned line);
void rules_textcat_finish(rules_t *r, const char *const *paths, size_t npaths, diag_t *d);
void rules_textcat_free(struct rules_textcat *t);
/* rules_eval_fromname.c: the fns_* directives (NULL, an error, or '~' and a skip reason) */
struct rules_fromname;
const char *rules_fromname_directive(rules_t *r, const char *dir, const char *rest);
void rules_fromname_free(struct rules_fromname *f);

/* A fixed pattern of an eval function, compiled on first use (thread-safe). */
struct rules_eval_re {
	const char *pattern;
	uint32_t options;
	_Atomic(pcre2_code *) code;
};
bool rules_eval_re(struct rules_eval_re *re, const char *s, size_t n);
/* The first match at or after from: group 1 when the pattern has one, else the whole. */
bool rules_eval_re_find(struct rules_eval_re *re, const char *s, size_t n, size_t from,
                        size_t *start, size_t *len);
/* Overwrites every match in s with spaces. */
void rules_eval_re_blank(struct rules_eval_re *re, char *s, size_t n);
/* The text of group 1 of the first match (arena string), or NULL. */
const char *rules_eval_re_group(struct rules_eval_re *re, const char *s, size_t n, arena_t *a);
/*
 * A pattern compiled for one match: built from the message (an address
 * quoted into it) or an eval's argument in the few rules that take one.
 * A pattern that does not compile never matches.
 */
bool rules_eval_re_once(const char *pattern, uint32_t options, const char *s);
/*
 * The match context of the evaluation the calling thread is running: the
 * match and depth limits and the JIT stack the regex rules run under
 * (rules.c takes one from its pool per evaluation), for the eval tests that
 * match a rules file's pattern. Inside rules_eval() never NULL (outside it
 * NULL: PCRE2's default limits); not to be freed.
 */
pcre2_match_context *rules_match_context(const rules_t *r);
bool rules_eval_parse_date(const char *s, int64_t *out);
size_t rules_eval_addrs(arena_t *a, const char *v, const char ***out);
bool rules_eval_is_ipv4(const char *s);
bool rules_eval_ip_private(const char *ip);

const struct rules_evaldef *rules_eval_lookup(const char *name);
/* Why an eval function is not run (for lint), or NULL if it is unknown. */
const char *rules_eval_skip_reason(const char *name);
void rules_eval_env_init(struct rules_evalenv *e, const rules_t *r, msg_t *m, const mime_t *mi);
/*
 * Field i of the message (msg_header_value()) decoded by
 * mime_decode_header(), once a message: ALL, the header rules on a field
 * by its name and the evals' get() all read the same fields decoded, and
 * each decoded them again. In the message's arena.
 */
const char *rules_eval_field_decoded(struct rules_evalenv *e, size_t i);
void rules_eval_relays(struct rules_evalenv *e);
/* The decoded, unfolded values of field name joined by "\n" (NULL if absent). */
const char *rules_eval_header(struct rules_evalenv *e, const char *name);
const char *rules_eval_header_raw(struct rules_evalenv *e, const char *name);
/*
 * Appends s unfolded to b: CRs dropped and a line break followed by blank
 * space removed, the blank kept (SpamAssassin's get()), or with
 * indent_as_space the break and its indent made one space.
 */
void rules_eval_unfold(abuf_t *b, const char *s, bool indent_as_space);
/*
 * rules_eval_header.c: whether a MIME charset name is one of ok_locales'
 * (SpamAssassin's Locales.pm: ASCII, ISO-8859, Unicode and Windows code
 * pages always are; with "all", every charset is).
 */
bool rules_eval_charset_ok(const rules_t *r, const char *charset);
/*
 * rules_eval_wlbl.c: an address list's glob as SpamAssassin reads it
 * (* is .*, ? is ., anchored at both ends; the lists keep it lower case)
 * matched against s without regard to case: rules_eval_glob_within()
 * with no stops and RULES_GLOB_FOLD. Pure.
 */
bool rules_eval_glob(const char *pat, const char *s);
/*
 * Globs in general: '*' and '?' may not match star_stop and any_stop
 * ('\0': they match any byte); freemail_domains' '*' stays within a
 * label, welcomelist_subject's stay within a line. RULES_GLOB_FOLD
 * compares s lower-cased; RULES_GLOB_ANYWHERE matches pat against any
 * run of s that starts before its end (s must not be empty). At worst
 * len(pat) x len(s) steps, whatever the stars. Pure.
 */
enum { RULES_GLOB_FOLD = 1, RULES_GLOB_ANYWHERE = 2 };
bool rules_eval_glob_within(const char *pat, const char *s, char star_stop, char any_stop,
                            unsigned flags);
/* A domain under a top-level domain SpamAssassin would know (is_domain_valid). */
bool rules_eval_domain_valid(const char *domain);
/* SpamAssassin's EnvelopeFrom (arena or message string), NULL when unknown. */
const char *rules_eval_envelope_from(struct rules_evalenv *e);
/*
 * SpamAssassin's all_from_addrs (arena strings): Resent-From's first
 * address when present, else the addresses of From, Envelope-Sender,
 * Resent-Sender and X-Envelope-From, and the envelope sender.
 */
size_t rules_eval_all_from_addrs(struct rules_evalenv *e, const char ***out);
/*
 * The hex digest of d[0..n) with OpenSSL's algorithm alg ("MD5", "SHA1"),
 * lower case unless upper, NUL-terminated in out (at least
 * RULES_EVAL_DIGEST_HEX_MAX bytes); false, and out empty, when libcrypto
 * cannot give it (a FIPS-only provider refusing MD5, say). Thread-safe.
 */
#define RULES_EVAL_DIGEST_HEX_MAX 129
bool rules_eval_digest_hex(const char *alg, const void *d, size_t n, bool upper, char *out);
/* ASCII case-insensitive substring search. */
const char *rules_eval_strcasestr(const char *h, const char *n);
/*
 * The directive parsers' words: the next blank-separated word at *p, its
 * start in *w and length in *n, *p moved past it; false when none is left.
 */
bool rules_eval_word(const char **p, const char **w, size_t *n);
/* A lower-case copy of s[0..n), malloc'd (the directive lists keep them). */
char *rules_eval_lower_dup(const char *s, size_t n);

/*
 * rules_ascii.c: pat (len bytes, compiled with options and the character
 * tables) reduced to what can match text with no byte above 0x7f; NULL
 * when nothing can be dropped or a construct is not understood. Group
 * numbers may differ: for match/no-match and the whole match only.
 */
char *rules_ascii_reduce(const char *pat, size_t len, uint32_t options, const uint8_t *tables);
/* No byte above 0x7f in s: a rule with an ASCII form runs that form. */
bool rules_text_is_ascii(const char *s, size_t len);
/*
 * The repeat gate of a pattern (rules_hs.c): when the pattern must match
 * a group at least *min (>= 2) times in a row ("(?:G){5}" at its top
 * level, no '|' beside it), the items of G's body every pass must match
 * (no optional quantifier; no '|' in that body): up to max of them, their
 * places in p in h_off[] and h_len[], in order. Returns how many, 0 for
 * none. A match holds *min disjoint matches of each such item, whose
 * ends lie at least the item's shortest width apart. 0 also on
 * back-references, inline options and what this reading does not follow.
 */
size_t rules_repeat_gate(const char *p, size_t n, size_t *h_off, size_t *h_len, size_t max,
                         unsigned *min);

/* FNV-1a over n bytes, for the rules' small hash sets of words and URIs. */
static inline size_t rules_hash_bytes(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
	return (size_t)h;
}

/*
 * For the pattern readers (rules_ascii.c, rules_lit.c, rules_hs.c): the
 * value of a hex digit in an escape (\x41, \x{263a}), or -1.
 */
static inline int rules_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* rules_lit.c */
void rules_lit_extract(struct rule *ru);
struct rules_prefilter *rules_prefilter_build(rules_t *r);
void rules_prefilter_free(struct rules_prefilter *pf);
/*
 * What a prefilter scan of one view found. Views are lists of spans inside
 * one text; for each rule, want[] says whether to run it at all and, for
 * rules with literals, the linked list from head[] names the only spans
 * that contain one (a match must contain its literal, within its span).
 */
struct pf_node {
	uint32_t span;
	uint32_t next; /* index + 1, 0 ends */
};

struct pf_result {
	uint8_t *want;  /* per rule: 0 skip, 1 run on the listed spans, 2 run on all */
	uint32_t *head; /* per rule: first node index + 1 */
	uint32_t *tail;
	struct pf_node *nodes;
	size_t nnodes, cap;
	arena_t *a;
	const size_t *span_off; /* start of each span in the text, ascending */
	const size_t *span_len;
	size_t nspans;
	/* header rules: a rule's literals count only in its own span (its field's
	 * value; per rule index), NULL for the other views */
	const uint32_t *rule_span;
};

enum { PF_SKIP = 0, PF_LISTED = 1, PF_ALL = 2 };

void rules_prefilter_scan(const rules_t *r, int type, const char *text, size_t len,
                          struct pf_result *res);
/* Lists span k for rule ri (spans must come in ascending order per rule). */
void rules_pf_list(struct pf_result *res, size_t ri, uint32_t k);

/*
 * rules_hs.c: the second stage, a Vectorscan prefilter-mode database of
 * the rules the literal stage must run everywhere (see rules_hs.c).
 * prepare() picks the rules and hashes them, at load, without compiling
 * (NULL: none, or the stage is off); rules_prefilter_db_start() (rules.h)
 * loads or builds the database. release() may run while a build does:
 * the builder holds its own reference. rules_hs_scan() runs after the
 * literal scan of a view: it turns the covered rules it has a database
 * for from "run everywhere" into "run on the spans it reports".
 */
struct rules_hs *rules_hs_prepare(rules_t *r);
void rules_hs_release(struct rules_hs *h);
/*
 * Whether one of this process's Vectorscan scanners finds every match of
 * the probes (see rules_hs.c); checked once, any thread. Without one no
 * database is built.
 */
bool rules_hs_engine_sound(void);
void rules_hs_scan(const rules_t *r, int type, const char *text, struct pf_result *res);
/* Whether rule is in the published prefilter database (tests); any thread. */
bool rules_hs_in_db(const rules_t *r, const char *rule);
/*
 * Whether every match of rule (one using %{TAG}) holds each captured
 * value as it is, so that a message whose text lacks one is no hit without
 * compiling the rule (tests); any thread.
 */
bool rules_tags_needed(const rules_t *r, const char *rule);
/* The test behind tags_needed, on a pattern and its PCRE2 options (rules.c; the fuzz target). */
bool rules_tags_required(const char *pattern, uint32_t options);

#endif
