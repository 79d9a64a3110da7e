/*
 * NAME
 *	rules - SpamAssassin-style regex rules: parse, compile, match
 * SYNOPSIS
 *	#include "rules.h"
 *	rules_opts_t o; rules_opts_read(conf, &o, diag);
 *	rules_t *r = rules_load(o.paths, o.npaths, &o, diag);
 *	rules_eval(r, msg, mime, hits, 0);
 *	rules_free(r);
 * DESCRIPTION
 *	Rule files use SpamAssassin's syntax, so its rule sets load as they
 *	are: header, body, rawbody, uri, full, mimeheader and meta rules,
 *	score, describe, tflags (multiple, maxhits=N, nice, net, learn; others ignored),
 *	priority, shortcircuit, if/ifplugin/else/endif, include, require_version, lang and
 *	the ReplaceTags directives (replace_tag/pre/post/inter/start/end,
 *	replace_rules). A path given to rules_load() is a file or a directory
 *	whose *.cf files are read in sorted (strcmp) order.
 *
 *	Eval tests ("header NAME eval:check_foo(...)") run when this engine
 *	implements the function (rules_eval*.c: HeaderEval, RelayEval,
 *	MIMEEval, HTMLEval, BodyEval, WLBLEval and FreeMail tests;
 *	contrib/sa-evals.md lists them), with their arguments checked at
 *	load (a malformed list is an error). What is not supported only
 *	warns: skipped eval tests once per reason, naming the functions
 *	("skipped 3 eval tests (DNS list ...): check_rbl, ..."), other
 *	constructs once each ("skipped directive askdns"). The
 *	freemail_domains, freemail_welcomelist and freemail_max_body_*
 *	directives configure the FreeMail tests; welcomelist_from,
 *	blocklist_from, welcomelist_to, blocklist_to, more_spam_to,
 *	all_spam_to (and whitelist/blacklist names, un... forms),
 *	blocklist_uri_host and welcomelist_uri_host the WLBLEval ones. A
 *	skipped rule exists but never hits, so metas naming it still
 *	evaluate (with it as 0). A malformed line - a regex PCRE2 rejects, a
 *	bad score, a meta that does not parse, an unbalanced if/endif - is
 *	an error and fails the whole load, so a reload keeps the running
 *	set. Loading goes on after an error (regexes and metas are still
 *	compiled) so that every malformed line is reported at once.
 *
 *	ifplugin is true for the plugins whose rules this engine runs
 *	natively: Mail::SpamAssassin::Plugin::ReplaceTags, MIMEHeader,
 *	FreeMail, WLBLEval, TextCat, and HeaderEval, RelayEval, MIMEEval,
 *	HTMLEval and BodyEval (their eval tests in part; plugin(...)
 *	likewise; contrib/sa-evals.md has the whole list). "if"
 *	expressions see version = 4.000001 and perl_version = 5.036000;
 *	can() is true for Mail::SpamAssassin::Conf::feature_bug6558_free,
 *	perl_min_version_5010000, feature_yesno_takes_args,
 *	feature_registryboundaries, feature_capture_rules,
 *	feature_welcomelist_blocklist, feature_dns_block_rule and
 *	has_tflags_nosubject, for the eval helpers
 *	MIMEEval::has_check_for_ascii_text_illegal and
 *	has_check_abundant_unicode_ratio, BodyEval::has_check_body_length and
 *	URIDetail::has_host_key, and for URIDNSBL::has_tflags_domains_only,
 *	has_subtest_for_ranges, has_tflags_notrim, has_uridnsbl_for_a and
 *	has_uridnsbl_a_ns (the stock files keep the Spamhaus DBL rules behind
 *	the first); false for everything else. With
 *	rules_all_plugins, every ifplugin block is read (and "!plugin(...)"
 *	is false), and can() is true for DecodeShortURLs' features (a plugin
 *	SpamAssassin's default install leaves out: short_url then runs
 *	from the url_shortener lines): the regex and meta rules SpamAssassin keeps in its eval
 *	plugins' blocks then load and the eval tests warn. That is for lint
 *	and comparisons: a meta such as "__A && !__EVAL" would hit whenever
 *	__A does, so scoring should keep the default.
 *
 *	TextCat (SpamAssassin's plugin): check_language guesses the body's
 *	language from its n-grams and hits when no guess is in ok_languages
 *	(default all: never, and nothing is guessed); inactive_languages,
 *	textcat_max_languages, textcat_optimal_ngrams, textcat_max_ngrams
 *	and textcat_acceptable_score as in SpamAssassin, a bad value an error
 *	at its line. The language profiles are SpamAssassin's "languages"
 *	file, looked for in each path given to rules_load() in turn (in a
 *	directory, else beside a file) and read once at load, only when a
 *	rule that runs calls check_language and ok_languages is not all;
 *	without one that rule warns and never hits. check_body_8bits hits on
 *	eight bytes above 0x7f in a row in the body unless ok_languages is
 *	all or names a language written so (it reads ok_languages, as the
 *	plugin does, not ok_locales).
 *
 *	Shortcircuit (SpamAssassin's plugin): "shortcircuit NAME on|off|spam|ham".
 *	When such a scored rule hits, the rules of higher priority numbers
 *	than its own do not count (SpamAssassin stops after the priority at
 *	which it hit), after lowering each rule a meta reads to the meta's
 *	priority as SpamAssassin does; a hit SHORTCIRCUIT (RULES_SHORTCIRCUIT)
 *	names the rule and type. "on" keeps the rule's points (SHORTCIRCUIT
 *	scores +-0.0001); "spam" and "ham" add shortcircuit_spam_score (100) or
 *	shortcircuit_ham_score (-100) and set priority -200 if the rule had
 *	none, ham also tflags nice. Every rule is still matched (the cut drops
 *	hits, it saves no CPU); the other evidence sources still score;
 *	shortcircuit_min_ham_score and _max_spam_score are skipped.
 *
 *	Scores: "score NAME a b c d" gives SpamAssassin's four score sets;
 *	rules_opts_t.score_set picks the column (rules_score_set, by default
 *	chosen from bayes_enable and dnsbl_list; 3 for rules_opts_default()),
 *	the only one when one is given. As in SpamAssassin, an eval test with
 *	tflags net runs only in sets 1 and 3, one with tflags learn only in
 *	sets 2 and 3. A rule without a
 *	score line scores 1.0 (-1.0 with tflags nice, 0.01 for T_ rules); an
 *	explicit score of 0 disables the rule, as in SpamAssassin (metas then
 *	see it as not hit). Rules named __* are never reported or scored.
 *	A "multiple" rule scores once; its match count (up to maxhits) is
 *	what metas see. A score outside -HITS_MAX_SCORE..HITS_MAX_SCORE
 *	(1000), or not a finite number, is an error. A score for a rule
 *	defined nowhere warns, checked once all files are read (SpamAssassin's
 *	score files score rules of other files), unless a rule line for it
 *	sits in an inactive if/ifplugin block (a plugin not provided).
 *
 *	Views (what each rule type is matched against), as SpamAssassin does:
 *	  header      the named field's values, RFC 2047-decoded and unfolded,
 *	              each ending in "\n", all occurrences concatenated; ":raw"
 *	              skips decoding (folds become one space); ":addr",
 *	              ":name" the addresses or display names; ":first",
 *	              ":last" one occurrence. Pseudo-fields: ALL (the whole
 *	              decoded header block), ToCc, MESSAGEID, EnvelopeFrom and
 *	              X-Sift-Mime (below). An absent field matches as "" (so
 *	              "!~" hits) unless "[if-unset: TEXT]" gives a value.
 *	  body        the MIME body view (Subject, then the rendered text)
 *	              split into paragraphs at blank lines, every run of white
 *	              space inside a paragraph (line breaks included) made one
 *	              space, pieces cut at a space to at most 2048 bytes -
 *	              SpamAssassin's body "lines". A rule hits when any piece
 *	              matches, so a phrase may span line breaks but not
 *	              paragraphs.
 *	  rawbody     the raw-body view in chunks of 2-4 KiB cut at a newline,
 *	              '>' or space (SpamAssassin's rawbody paragraphs).
 *	  uri         each URI in turn: the MIME module's links, addresses in
 *	              the text as mailto: links, and each link's canonical
 *	              variants (rules_uri.c), among them a redirect's target:
 *	              group 1 of the first "redirector_pattern /re/flags" line
 *	              that matches the link and holds a dot, else a link
 *	              carried in its path or query, as SpamAssassin does.
 *	  uri_detail  "uri_detail NAME KEY =~ /re/ [KEY !~ /re/ ...]" (URIDetail)
 *	              hits when one link meets every criterion: some value of
 *	              KEY matches (=~) or does not (!~). Keys: raw (the link
 *	              as found; a "www." one with "http://" before it), type
 *	              (where: a, area, link, img, frame, iframe, embed,
 *	              script, bgsound, form, body, table, tr, td, base,
 *	              parsed for the text, schemeless for a "www." name
 *	              there), cleaned (the link and its canonical variants as
 *	              above), text (the texts of the <a> tags linking to it),
 *	              host and domain (of the cleaned links, only for names
 *	              whose top-level domain is one). A link found only in
 *	              the text counts when it has a domain, as in
 *	              SpamAssassin; relative links and schemes other than
 *	              http, https, ftp and mailto are not links here.
 *	  full        the whole message: header block, blank line, raw body.
 *	  mimeheader  the named field of each MIME part's own header block.
 *	Capture rules (SpamAssassin 4): a rule whose pattern names a group
 *	(?<TAG>...) records, on its first match, the text of that group; a
 *	rule whose pattern holds %{TAG} runs after all other regex rules, with
 *	%{TAG} replaced by the recorded text quoted as a literal, compiled for
 *	that message (no JIT); when TAG was not recorded it does not hit.
 *	X-Spam-Relays-Untrusted, -External, -Trusted and -Internal are
 *	SpamAssassin's pseudo-fields ("[ ip=... rdns=... helo=... by=...
 *	ident= envfrom= intl=0 id=... auth= msa=0 ]" per relay, newest
 *	first), built from the SMTP client (in the milter) and the Received
 *	fields, trust inferred as SpamAssassin does without trusted_networks
 *	(see rules_relays.c); real fields of these names are ignored.
 *	X-Sift-Mime is a pseudo-field (a real field of that name is ignored,
 *	so senders cannot forge it) holding space-separated words for the
 *	message's MIME facts: truncated, depth_limit, part_limit,
 *	bad_boundary, bad_base64, bad_qp, bad_charset, text_limit,
 *	bad_header, field_limit (mime_flags()), and html_only, has_attachment,
 *	exe_attachment, no_text.
 *
 *	Regexes are Perl's, compiled by PCRE2 (JIT when available) in byte
 *	mode with flags i, s, m, x. Under /i the bytes 0xC0-0xDE and
 *	0xE0-0xFE fold as Latin-1 letters (Perl's /aa on a byte string), from
 *	character tables built here; \w, \d, \s stay ASCII. A pattern too
 *	large for PCRE2's compiled-size limit is split at its top-level
 *	alternation (or at the alternation of an unquantified group) into
 *	several patterns OR'd together; for a "multiple" rule the counts of
 *	the pieces are added.
 *
 *	Limits: every match runs under regex_match_limit and, without JIT,
 *	regex_depth_limit; JIT matching uses a stack of at most
 *	regex_jit_stack bytes. A match that hits a limit is an error for that
 *	rule, never a silent miss: it is counted (rules_errors()), logged
 *	(rate-limited) and noted in the message's hits, and the rule does
 *	not hit.
 *
 *	Prefilter (regex_prefilter, default yes): at load each body,
 *	rawbody, uri and full rule gets, where its pattern allows, a set of
 *	literals one of which every match must contain (found by walking the
 *	regex). Per message each view is searched once for all literals
 *	(Vectorscan when built with it, else memmem() per literal on a
 *	lower-cased copy); a rule none of whose literals occur is not run,
 *	and one whose literals occur runs only on the pieces (paragraphs,
 *	URIs, chunks) that hold one. The literal database builds in
 *	milliseconds at every load. Literals are compared case-insensitively,
 *	so the prefilter can only let through more rules than needed, never
 *	fewer: PCRE2 stays the engine of record.
 *	Rules without a literal would run everywhere; with Vectorscan
 *	(regex_prefilter_db, default yes) the body ones go into
 *	a second database of whole patterns in Vectorscan's prefilter mode
 *	(a superset of PCRE2's matches), scanned per piece, so each runs
 *	only on the pieces where it may match (patterns over 16,000 bytes,
 *	which Vectorscan refuses, and the few it cannot compile run
 *	everywhere). That database takes seconds to minutes to build
 *	(SpamAssassin's set: about a minute), so it is built in a background
 *	thread after a load or reload while the literal prefilter serves,
 *	cached as state_dir/rules-hs-HASH.db (HASH of its patterns and the
 *	Vectorscan version; the three newest kept) and read from there at
 *	the next start; see rules_prefilter_db_start(). The compiler runs
 *	in a child process within build_memory and build_cpu; a pattern
 *	that alone exceeds them stays out and its rule runs everywhere.
 * CONFIGURATION
 *	rules = PATH                (repeatable; default SIFT_RULESDIR)
 *	regex_match_limit = N       (default 1000000)
 *	regex_depth_limit = N       (default 100000)
 *	regex_jit_stack = SIZE      (default 1M)
 *	regex_prefilter = yes|no    (default yes)
 *	regex_prefilter_engine = auto|memmem|vectorscan  (default auto: Vectorscan
 *	                            if built, with a build of its scanner that
 *	                            passes the start-up probes)
 *	regex_prefilter_db = yes|no (default yes; Vectorscan only)
 *	regex_prefilter_db_dir = DIR (default: the state directory)
 *	regex_prefilter_build_memory = SIZE (default 1G)
 *	regex_prefilter_build_cpu = SECONDS (default 600)
 *	rules_all_plugins = yes|no  (default no: see all_plugins below)
 *	rules_score_set = auto|0|1|2|3 (default auto)
 * THREADS
 *	A rules_t is built by one thread, then shared read-only by all;
 *	rules_eval() may run in any number of threads at once. The only
 *	things that change after load are per-rule atomic counters (errors,
 *	and CPU time when timing is asked for); TextCat's profiles, like
 *	every other list the directives fill, are only read. An evaluation
 *	takes its PCRE2 match data, match context and JIT stack from a
 *	process-wide pool (under a mutex, once a message) and gives them back:
 *	libmilter's worker threads come and go with the load (about one
 *	started per ten connections in contrib/bench), and state kept per
 *	thread was made again with each.
 * DIAGNOSTICS
 *	Load problems go to the diag_t as "file:line: ..." entries.
 */
#ifndef SIFT_RULES_H
#define SIFT_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "conf.h"
#include "diag.h"
#include "evidence.h"
#include "hits.h"
#include "mime.h"
#include "msg.h"

#define RULES_MAX_PATHS 64
/*
 * The hit a shortcircuit adds (see DESCRIPTION); autolearn skips a
 * message that carries it, as SpamAssassin does.
 */
#define RULES_SHORTCIRCUIT "SHORTCIRCUIT"

typedef struct rules rules_t;

typedef struct rules_opts {
	/* Strings are borrowed from the conf_t (or the caller). */
	const char *paths[RULES_MAX_PATHS];
	size_t npaths;
	uint32_t match_limit;
	uint32_t depth_limit;
	uint64_t jit_stack_bytes;
	bool prefilter;
	bool prefilter_memmem; /* memmem() even when Vectorscan is built in */
	bool prefilter_db;     /* the Vectorscan database of rules without literals */
	/* its rawbody rules too (not from the configuration: tests of its
	 * machinery on raw bytes; on mail it costs more than it spares) */
	bool prefilter_db_rawbody;
	/* regex_prefilter_engine = vectorscan: Vectorscan's dispatched scanner
	 * even where it failed its probes; auto uses the first build of the
	 * scanner that passed them, or none (rules_hs_engine()) */
	bool vectorscan_unchecked;
	const char *db_dir; /* where it is cached; NULL or "": the state directory */
	/* ifplugin/plugin() true for every plugin (regex rules of plugin blocks load, their
	 * eval tests are skipped): for lint and measurements, not for scoring. */
	bool all_plugins;
	bool auth_plugins; /* auth_enable: the SPF, DKIM and Dmarc plugin blocks are read */
	/* SpamAssassin's score set: 0 no Bayes, no network; 1 network; 2 Bayes; 3 both. */
	int score_set;
	/*
	 * Bytes of one field value (header and mimeheader rules) and of the
	 * ALL pseudo-fields the rules see; 0: no limit (header_value_scan_size,
	 * header_all_scan_size).
	 */
	uint64_t header_value_scan;
	uint64_t header_all_scan;
	/*
	 * What building the prefilter database may take: the compiler's memory
	 * (bytes) and CPU (seconds), in a child process; patterns that need more
	 * are left out of it (regex_prefilter_build_memory, _cpu).
	 */
	uint64_t build_memory;
	uint32_t build_cpu;
} rules_opts_t;

/* The defaults (SIFT_RULESDIR as the one path). */
void rules_opts_default(rules_opts_t *o);
/* Reads the keys listed above; returns -1 with errors in d. */
int rules_opts_read(conf_t *c, rules_opts_t *o, diag_t *d);

/* NULL with errors in d when any line is malformed. o may be NULL (defaults). */
rules_t *rules_load(const char *const *paths, size_t n, const rules_opts_t *o, diag_t *d);
/* Loads rules from one in-memory text (tests, fuzzing); name is used in diagnostics. */
rules_t *rules_load_text(const char *name, const char *text, const rules_opts_t *o, diag_t *d);
void rules_free(rules_t *r);

/* Rules defined (of every type, skipped ones included). */
size_t rules_count(const rules_t *r);
const char *rules_name(const rules_t *r, size_t i);
/* The index of a rule by name, or -1. */
long rules_find(const rules_t *r, const char *name);
double rules_score(const rules_t *r, size_t i);

enum {
	RULES_T_HEADER,
	RULES_T_BODY,
	RULES_T_RAWBODY,
	RULES_T_URI,
	RULES_T_FULL,
	RULES_T_MIMEHEADER,
	RULES_T_META,
	RULES_T_N
};

typedef struct rules_stats {
	size_t loaded[RULES_T_N];  /* compiled and run */
	size_t skipped[RULES_T_N]; /* eval: and other unsupported tests */
	size_t split_patterns;     /* patterns split to fit PCRE2's size limit */
	size_t jit_compiled;       /* patterns JIT-compiled */
	size_t prefiltered;        /* rules with prefilter literals */
	size_t unused;             /* compiled, but no scored rule depends on them: not run */
	size_t ascii_forms;        /* rules with a smaller form for pure-ASCII text */
	size_t lead_dropped;       /* rules run without an optional start (rules.c) */
	size_t strict_patterns;    /* run by PCRE2's interpreter, not its JIT (rules.c) */
	bool vectorscan;           /* prefilter uses Vectorscan */
	const char *scanner;       /* which build of its scanner (static), when it does */
} rules_stats_t;

void rules_stats(const rules_t *r, rules_stats_t *s);
/* Rule i's RULES_T_* type (-1 if only referenced), and whether it runs at all. */
int rules_type(const rules_t *r, size_t i);
bool rules_runs(const rules_t *r, size_t i);
const char *rules_type_name(int type);
/* Prints the per-type counts, one line each (for `sift lint`). */
void rules_print_stats(const rules_t *r, FILE *fp);

/*
 * The prefilter database (regex_prefilter_db): rules_load() only picks
 * its rules; this loads it from DIR/rules-hs-HASH.db (state_dir may be
 * NULL: no cache) or builds it: RULES_DB_CACHED only reads the cache
 * (`sift check`: short-lived), RULES_DB_BACKGROUND reads it or queues a
 * build in the process's one builder thread, RULES_DB_NOW builds in the
 * caller (tests). Until a database is published the rules run as with
 * the literal prefilter alone, with the same hits: the database only
 * spares PCRE2 runs that could not match. regex_prefilter_db_dir (an
 * absolute path), when set, is used instead of state_dir. Call it once per rule set,
 * from the thread that loaded it, after any fork; returns 0.
 */
typedef enum { RULES_DB_CACHED, RULES_DB_BACKGROUND, RULES_DB_NOW } rules_db_mode_t;
typedef enum {
	RULES_DB_OFF,     /* nothing to cover, no Vectorscan, or turned off */
	RULES_DB_PENDING, /* not started, not cached, or being built */
	RULES_DB_BUILT,
	RULES_DB_LOADED, /* from the cache file */
	RULES_DB_FAILED
} rules_db_state_t;
int rules_prefilter_db_start(rules_t *r, const char *state_dir, rules_db_mode_t mode);
/* The state, the rules it covers (in the database or not yet) and its size. Any thread. */
rules_db_state_t rules_prefilter_db_state(const rules_t *r, size_t *covered, size_t *bytes);
/* Waits up to timeout_ms for a database to be published (tests, benchmarks). */
bool rules_prefilter_db_wait(const rules_t *r, long timeout_ms);
const char *rules_db_state_name(rules_db_state_t s);

/* Flags for rules_eval(). */
enum {
	RULES_EVAL_TIMING = 1u << 0,       /* accumulate per-rule CPU time */
	RULES_EVAL_NO_PREFILTER = 1u << 1, /* run every rule (tests, measurements) */
	RULES_EVAL_EXPLAIN = 1u << 2,      /* put the matched text in each hit's detail */
	RULES_EVAL_EAGER = 1u << 3         /* run every sub-rule, even those no meta needs */
};

/*
 * Evaluates the rules on the message and adds a hit (source "rules")
 * for each non-__ rule with a non-zero score that hits. A __ regex rule
 * of the header, body, rawbody, uri or full view runs only when a meta's
 * value depends on it (unless RULES_EVAL_EAGER or RULES_EVAL_NO_PREFILTER):
 * the hits are the same. mi may be NULL
 * (then body, rawbody, uri and mimeheader rules see empty views).
 * Returns the number of rules that failed with a match-limit error.
 */
int rules_eval(const rules_t *r, msg_t *m, const mime_t *mi, hits_t *h, unsigned flags);

/* Match-limit errors of rule i so far, and of all rules. */
uint64_t rules_errors(const rules_t *r, size_t i);
uint64_t rules_errors_total(const rules_t *r);

/*
 * Timing (`sift check --timing`): CPU nanoseconds and evaluations of
 * each rule accumulated over every rules_eval() made with
 * RULES_EVAL_TIMING. rules_slowest() fills up to n entries, most
 * expensive first, and returns how many it filled.
 */
typedef struct rules_time {
	const char *name;
	int type;
	uint64_t cpu_ns;
	uint64_t evals;
} rules_time_t;

size_t rules_slowest(const rules_t *r, rules_time_t *out, size_t n);
void rules_print_timing(const rules_t *r, FILE *fp, size_t top_n);

/* The evidence source: shared state is the rules_t. */
extern const evidence_ops_t rules_evidence;

#endif
