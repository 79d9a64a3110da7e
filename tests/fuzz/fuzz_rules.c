/*
 * fuzz_rules.c - libFuzzer target for the rules engine: any byte string is
 * loaded as a rule file; when it loads, its rules are run on a small fixed
 * message (with a low match limit, so catastrophic patterns end quickly).
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

/* Large inputs only make slow regex compiles, not new paths. */
#define FUZZ_MAX_INPUT_BYTES 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_msg[] =
    "From: \"Fuzz\" <fuzz@example.com>\nTo: a@example.org, b@example.net\n"
    "Subject: =?utf-8?q?caf=C3=A9?= FREE money!!!\nMessage-ID: <1@example.com>\n"
    "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"b\"\n\n"
    "--b\nContent-Type: text/plain\n\nclick here http://192.0.2.1/x and www.example.com\n\n"
    "second paragraph \xc9T\xc9\n--b\nContent-Type: text/html\n\n<p>hello <b>world</b></p>\n"
    /* an image and a PDF for the ImageInfo and PDFInfo tests */
    "--b\nContent-Type: image/gif; name=\"image001.gif\"\nContent-Transfer-Encoding: base64\n\n"
    "R0lGODlhIANYAvcAAA==\n--b\nContent-Type: application/pdf; name=\"a.pdf\"\n"
    "Content-Transfer-Encoding: base64\n\n"
    "JVBERi0xLjQKL0VuY3J5cHQKL0ltYWdlL1dpZHRoIDQvSGVpZ2h0IDMKMiAwIDAgNSAwIDAgY20K\n"
    "--b--\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_MAX_INPUT_BYTES)
		return 0;
	char *text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	rules_opts_t o;
	rules_opts_default(&o);
	o.match_limit = 10000;
	o.depth_limit = 1000;
	o.jit_stack_bytes = 64 * 1024;
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
		mime_limits_t lim = {.max_depth = 8, .max_parts = 32, .max_text_bytes = 65536};
		mime_t *mi = mime_parse(m, &lim);
		hits_t *h1 = hits_new(msg_arena(m));
		hits_t *h2 = hits_new(msg_arena(m));
		int e1 = rules_eval(r, m, mi, h1, RULES_EVAL_EXPLAIN);
		int e2 = rules_eval(r, m, mi, h2, RULES_EVAL_NO_PREFILTER);
		/* the prefilter never changes the outcome */
		if (e1 == 0 && e2 == 0) {
			if (hits_count(h1) != hits_count(h2))
				__builtin_trap();
			for (size_t i = 0; i < hits_count(h1); i++)
				if (!hits_has(h2, hits_at(h1, i)->name))
					__builtin_trap();
		}
		msg_free(m);
		rules_free(r);
	}
	diag_free(d);
	free(text);
	return 0;
}
