/*
 * fuzz_authres.c - libFuzzer target for the auth module's header readers
 * (auth_ar.c, written by hand: none of the libraries Sift links exports a
 * reader of RFC 8601's grammar): any byte string is read as an
 * Authentication-Results value (its authserv-id, each method's results and
 * properties, one at a time and all in one pass) and as a From field
 * value. Outputs must stay
 * NUL-terminated inside their buffers, results must be known ones, and the
 * one-pass reader must agree with the nth reader.
 * Build and run with tests/fuzz/run.sh authres SECONDS.
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "evidence.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* dns.c (host names) links the resolver, whose thread is never started here. */
int ev_thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg)
{
	(void)t, (void)name, (void)fn, (void)arg;
	return -1;
}

/* Small buffers, so the "does not fit" paths are reached. */
#define OUT_BYTES 24

static void check_out(const char *out, size_t cap)
{
	if (memchr(out, '\0', cap) == NULL)
		__builtin_trap();
}

struct each_ud {
	const char *value, *method, *prop;
	size_t n;
};

/* Every result auth_ar_each() gives must be the one auth_ar_result() reads at that place. */
static bool each_check(auth_result_t r, const char *prop_value, void *ud)
{
	struct each_ud *u = ud;
	char out[OUT_BYTES];
	if (r >= AUTH_N_RESULTS || strlen(prop_value) >= OUT_BYTES)
		__builtin_trap();
	auth_result_t nth = auth_ar_result(u->value, u->method, u->n, u->prop, out, sizeof(out));
	if (nth != r || strcmp(out, prop_value) != 0)
		__builtin_trap();
	u->n++;
	return u->n < 16;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *v = malloc(size + 1);
	if (v == NULL)
		return 0;
	memcpy(v, data, size);
	v[size] = '\0';
	char out[OUT_BYTES];
	memset(out, 'x', sizeof(out));
	if (auth_ar_servid(v, out, sizeof(out)) != NULL)
		check_out(out, sizeof(out));
	static const char *const methods[] = {"spf", "dkim", "dmarc"};
	static const char *const props[] = {NULL, "header.d", "header.from", "smtp.mailfrom"};
	for (size_t m = 0; m < 3; m++) {
		for (size_t p = 0; p < 4; p++) {
			memset(out, 'x', sizeof(out));
			auth_result_t r = auth_ar_result(v, methods[m], 0, props[p],
			                                 props[p] ? out : NULL, sizeof(out));
			if (r > AUTH_N_RESULTS)
				__builtin_trap();
			if (props[p] != NULL)
				check_out(out, sizeof(out));
			if (props[p] == NULL)
				continue;
			struct each_ud u = {.value = v, .method = methods[m], .prop = props[p]};
			size_t n =
			    auth_ar_each(v, methods[m], props[p], out, sizeof(out), each_check, &u);
			if (n != u.n)
				__builtin_trap();
		}
	}
	memset(out, 'x', sizeof(out));
	if (auth_from_domain(v, out, sizeof(out)) != NULL)
		check_out(out, sizeof(out));
	free(v);
	return 0;
}
