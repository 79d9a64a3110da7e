/*
 * fuzz_rules.c - libFuzzer target for the rules engine: any byte string is
 * loaded as a rule file; when it loads, its rules are run on a small fixed
 * message (with a low match limit, so catastrophic patterns end quickly).
 * The input is also read as one regex: its ASCII form (rules_ascii.c) must
 * compile whenever it does, and match ASCII text exactly as it does, and
 * its repeat gate (rules_repeat_gate()) must name items inside it; read
 * as a capture rule's pattern and a text, it checks rules_tags_required()
 * (see fuzz_tags). Every
 * other input also builds the Vectorscan prefilter database (rules_hs.c,
 * with its repeat gates) before the rules run: a build costs milliseconds,
 * so half the inputs keep the rate up. Not for inputs with large counted
 * repeats (hs_build_cheap()): Vectorscan compiles a count as that many
 * copies, and one 216-byte rule with a {33} took 6 to 10 s to build, past
 * the fuzzer's timeout (corpus_rules/hs_slow_repeat; {16} of the same
 * group builds in 50 ms). The build is the daemon's background thread's,
 * never a message's, and such rules still load and run here. Counts that
 * pass that test can still be slow ({16} of a group of long alternatives,
 * corpus_rules/hs_slow_group16: 45 s), so each compile is also bounded
 * by regex_prefilter_build_cpu, at 1 s here: the daemon's own bound,
 * whose rule left out of the database is then what gets fuzzed.
 * Build and run with tests/fuzz/run.sh rules SECONDS.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "hits.h"
#include "mime.h"
#include "msg.h"
#include "rules.h"
#include "rules_int.h" /* rules_ascii_reduce() */

/* Large inputs only make slow regex compiles, not new paths. */
#define FUZZ_MAX_INPUT_BYTES 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_msg[] =
    "From: \"Fuzz\" <fuzz@example.com>\nTo: a@example.org, b@example.net\n"
    "Subject: =?utf-8?q?caf=C3=A9?= FREE money!!!\nMessage-ID: <1@example.com>\n"
    "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"b\"\n\n"
    "--b\nContent-Type: text/plain\n\nclick here http://192.0.2.1/x and www.example.com\n\n"
    "second paragraph \xc9T\xc9\n\nYour name: ___ address: ___ phone: ___\n"
    "--b\nContent-Type: text/html\n\n<p>hello <b>world</b></p>\n"
    /* a redirector's link, for redirector_pattern lines */
    "<a href=\"https://www.google.com/url?q=evil.example/pay&amp;u=http://x.example/\">a</a>\n"
    /* an image and a PDF (with document details) for the ImageInfo and PDFInfo tests */
    "--b\nContent-Type: image/gif; name=\"image001.gif\"\nContent-Transfer-Encoding: base64\n\n"
    "R0lGODlhIANYAvcAAA==\n--b\nContent-Type: application/pdf; name=\"a.pdf\"\n"
    "Content-Transfer-Encoding: base64\n\n"
    "JVBERi0xLjQKL0VuY3J5cHQKL0ltYWdlL1dpZHRoIDQvSGVpZ2h0IDMKMiAwIDAgNSAwIDAgY20K"
    "PDwvUHJvZHVjZXIoR1BMIFwoeFwpIFwzNzZcMzc3KS9UaXRsZTxGRUZGMDA0MT4vQ3JlYXRpb25EYXRlKEQ6\n"
    "MjAwNyk+Pgo=\n"
    "--b--\n";

static pcre2_code *fuzz_compile(const char *pat, size_t n, uint32_t opts)
{
	int err;
	PCRE2_SIZE off;
	pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
	pcre2_set_character_tables(cc, rules_latin1_tables());
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)pat, n, opts, &err, &off, cc);
	pcre2_compile_context_free(cc);
	return c;
}

/* Up to 16 matches as (start, end) pairs; -1 after a limit error. */
static int fuzz_matches(pcre2_code *code, const char *s, size_t len, pcre2_match_context *mc,
                        size_t *ov_out)
{
	pcre2_match_data *md = pcre2_match_data_create(16, NULL);
	size_t start = 0;
	int k = 0;
	for (; k < 16 && start <= len; k++) {
		int rc = pcre2_match(code, (PCRE2_SPTR)s, len, start, 0, md, mc);
		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0) {
			k = -1;
			break;
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		ov_out[2 * k] = ov[0];
		ov_out[2 * k + 1] = ov[1];
		start = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
	}
	pcre2_match_data_free(md);
	return k;
}

static void fuzz_ascii_form(const char *pat, size_t n)
{
	static const char *const fixed[] = {"click here http://192.0.2.1/x and www.example.com",
	                                    "FREE money!!! v1@gra c4f3 (caf&#233;)", ""};
	static const uint32_t optsets[] = {0, PCRE2_CASELESS | PCRE2_MULTILINE | PCRE2_DOTALL};
	if (n > 1024)
		return;
	/* the input itself with the high bits cleared: text the pattern may well match */
	char own[1024];
	for (size_t i = 0; i < n; i++)
		own[i] = (char)(pat[i] & 0x7f);
	pcre2_match_context *mc = pcre2_match_context_create(NULL);
	pcre2_set_match_limit(mc, 10000);
	pcre2_set_depth_limit(mc, 1000);
	for (size_t o = 0; o < sizeof(optsets) / sizeof(*optsets); o++) {
		char *a = rules_ascii_reduce(pat, n, optsets[o], rules_latin1_tables());
		if (a == NULL)
			continue;
		pcre2_code *full = fuzz_compile(pat, n, optsets[o]);
		pcre2_code *small = full ? fuzz_compile(a, strlen(a), optsets[o]) : NULL;
		if (full != NULL && small == NULL)
			__builtin_trap(); /* a pattern that compiles has an ASCII form that does */
		for (size_t s = 0; full != NULL && s <= sizeof(fixed) / sizeof(*fixed); s++) {
			const char *t = s < 3 ? fixed[s] : own;
			size_t tl = s < 3 ? strlen(fixed[s]) : n;
			size_t o1[32], o2[32];
			int k1 = fuzz_matches(full, t, tl, mc, o1);
			int k2 = fuzz_matches(small, t, tl, mc, o2);
			if (k1 < 0 || k2 < 0)
				continue; /* a limit: either may give up first */
			if (k1 != k2 || memcmp(o1, o2, 2 * (size_t)k1 * sizeof(size_t)) != 0)
				__builtin_trap();
		}
		pcre2_code_free(full);
		pcre2_code_free(small);
		free(a);
	}
	pcre2_match_context_free(mc);
}

/*
 * An input whose first line holds %{T} is a capture rule's pattern, the
 * rest a text. Where rules_tags_required() says every match holds T's
 * value, a text the pattern (the value quoted in, as rules.c does) matches
 * must hold the value, compared without case as PCRE2 compares: the rule
 * is skipped on texts without it.
 */
static void fuzz_tags(const char *in, size_t n)
{
	static const char value[] = "v@x.Example";
	const char *nl = memchr(in, '\n', n);
	size_t line = nl ? (size_t)(nl - in) : n;
	size_t pl = strnlen(in, line); /* a rule's pattern is a C string, as rules.c compiles it */
	if (pl > 512 || memmem(in, pl, "%{T}", 4) == NULL)
		return;
	char pat[512 * 8];
	size_t k = 0;
	for (size_t i = 0; i < pl;) {
		if (i + 4 <= pl && memcmp(in + i, "%{T}", 4) == 0) {
			for (const char *v = value; *v; v++) {
				if (!((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z')))
					pat[k++] = '\\';
				pat[k++] = *v;
			}
			i += 4;
		} else {
			pat[k++] = in[i++];
		}
	}
	char *p0 = strndup(in, pl);
	const char *subj = nl ? nl + 1 : "";
	size_t sl = nl ? n - line - 1 : 0;
	const uint8_t *fcc = rules_latin1_tables() + 256;
	bool has = false;
	for (size_t i = 0; !has && sl >= sizeof(value) - 1 && i <= sl - (sizeof(value) - 1); i++) {
		size_t j = 0;
		while (j < sizeof(value) - 1 && ((uint8_t)subj[i + j] == (uint8_t)value[j] ||
		                                 fcc[(uint8_t)subj[i + j]] == (uint8_t)value[j]))
			j++;
		has = j == sizeof(value) - 1;
	}
	static const uint32_t optsets[] = {0, PCRE2_CASELESS, PCRE2_MULTILINE | PCRE2_DOTALL};
	pcre2_match_context *mc = pcre2_match_context_create(NULL);
	pcre2_set_match_limit(mc, 10000);
	pcre2_set_depth_limit(mc, 1000);
	for (size_t o = 0; o < sizeof(optsets) / sizeof(*optsets) && !has; o++) {
		if (!rules_tags_required(p0, optsets[o]))
			continue;
		pcre2_code *c = fuzz_compile(pat, k, optsets[o]);
		if (c == NULL)
			continue;
		size_t ov[32];
		if (fuzz_matches(c, subj, sl, mc, ov) > 0)
			__builtin_trap(); /* a match without the value it was said to need */
		pcre2_code_free(c);
	}
	pcre2_match_context_free(mc);
	free(p0);
}

/*
 * Whether the input's counted repeats are small enough for a database
 * build to stay well inside the timeout: no count above 16 ({n}, {n,},
 * {n,m}: the larger) and their counts together at most 64.
 */
static bool hs_build_cheap(const char *in)
{
	unsigned long total = 0;
	for (const char *p = strchr(in, '{'); p != NULL; p = strchr(p + 1, '{')) {
		char *e;
		if (p[1] < '0' || p[1] > '9')
			continue;
		unsigned long n = strtoul(p + 1, &e, 10), m = n;
		if (*e == ',' && e[1] >= '0' && e[1] <= '9')
			m = strtoul(e + 1, &e, 10);
		unsigned long c = m > n ? m : n;
		if (c > 16)
			return false;
		total += c;
	}
	return total <= 64;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_MAX_INPUT_BYTES)
		return 0;
	char *text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	fuzz_ascii_form(text, size);
	fuzz_tags(text, size);
	size_t off[8], len[8];
	unsigned min;
	size_t ng = rules_repeat_gate(text, size, off, len, 8, &min);
	for (size_t k = 0; k < ng; k++)
		if (off[k] >= size || len[k] == 0 || len[k] > size - off[k] || min < 2)
			__builtin_trap();
	rules_opts_t o;
	rules_opts_default(&o);
	o.match_limit = 10000;
	o.depth_limit = 1000;
	o.jit_stack_bytes = 64 * 1024;
	o.build_cpu = 1;
	diag_t *d = diag_new();
	rules_t *r = rules_load_text("fuzz.cf", text, &o, d);
	/* every diagnostic is a formatted, NUL-terminated line */
	for (size_t i = 0; i < diag_count(d); i++)
		if (strlen(diag_text(d, i)) == 0)
			__builtin_trap();
	if (r != NULL) {
		if (diag_errors(d) != 0)
			__builtin_trap(); /* a set with errors must not load */
		msg_t *m = msg_new(1 << 16);
		msg_parse_raw(m, fuzz_msg, sizeof(fuzz_msg) - 1);
		mime_limits_t lim = {.max_depth = 8,
		                     .max_parts = 32,
		                     .max_text_bytes = 65536,
		                     .body_part_scan_bytes = 4096,
		                     .rawbody_part_scan_bytes = 16384};
		mime_t *mi = mime_parse(m, &lim);
		if (size > 0 && (data[0] & 1) && hs_build_cheap(text))
			rules_prefilter_db_start(r, NULL, RULES_DB_NOW);
		hits_t *h1 = hits_new(msg_arena(m));
		hits_t *h2 = hits_new(msg_arena(m));
		int e1 = rules_eval(r, m, mi, h1, RULES_EVAL_EXPLAIN);
		int e2 = rules_eval(r, m, mi, h2, RULES_EVAL_NO_PREFILTER);
		/* the prefilter never changes the outcome */
		if (e1 == 0 && e2 == 0 && !hits_same_names(h1, h2))
			__builtin_trap();
		msg_free(m);
		rules_free(r);
	}
	diag_free(d);
	free(text);
	return 0;
}
