/*
 * fuzz_rep.c - libFuzzer target for what the shared reputation reads from
 * other nodes and from its own mirror: a signed block/allow-list operation
 * as it comes out of the Redis stream (rep_sop_decode()), a mirror record
 * (rep_entry_decode()), an entry's target ("192.0.2.0/24", "example.com",
 * rep_target_parse()), an address, a domain, a duration and two stream ids.
 * A node on a thin link trusts these decoders with whatever the link or a
 * misbehaving peer delivers.
 *
 * Besides crashes it checks the round trips the stream relies on: an
 * operation that parses, signed again with the target's own key, decodes
 * to the same operation; a target, an address and a record come back the
 * same from their canonical text; domain normalisation is idempotent;
 * stream ids compare antisymmetrically.
 * Build and run with tests/fuzz/run.sh rep SECONDS.
 */
#include "config.h"

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rep.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One publisher the decoder trusts, with a key made from a fixed seed. */
static rep_signer_t fuzz_signer;
static rep_bl_conf_t fuzz_bc;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (sodium_init() < 0)
		abort();
	uint8_t seed[crypto_sign_SEEDBYTES] = {1, 2, 3};
	uint8_t pk[crypto_sign_PUBLICKEYBYTES];
	crypto_sign_seed_keypair(pk, fuzz_signer.sk, seed);
	snprintf(fuzz_signer.name, sizeof(fuzz_signer.name), "fuzz");
	snprintf(fuzz_bc.trusted[0].name, sizeof(fuzz_bc.trusted[0].name), "fuzz");
	memcpy(fuzz_bc.trusted[0].pk, pk, sizeof(pk));
	fuzz_bc.n_trusted = 1;
	fuzz_bc.min_prefix4 = 16;
	fuzz_bc.min_prefix6 = 32;
	return 0;
}

static void same_target(const rep_target_t *a, const rep_target_t *b)
{
	char ta[REP_DOMAIN_MAX_BYTES], tb[REP_DOMAIN_MAX_BYTES];
	if (rep_target_format(a, ta, sizeof(ta)) < 0 || rep_target_format(b, tb, sizeof(tb)) < 0 ||
	    strcmp(ta, tb) != 0 || a->kind != b->kind || a->plen != b->plen)
		__builtin_trap();
}

/* A parsed operation, signed again by the trusted key, decodes the same. */
static void sop_round_trip(const uint8_t *data, size_t size)
{
	rep_op_t op;
	rep_sop_status_t st = rep_sop_decode(data, size, &fuzz_bc, &op);
	if (st == REP_SOP_UNSIGNED || st == REP_SOP_MALFORMED)
		return;
	snprintf(op.e.by, sizeof(op.e.by), "%s", fuzz_signer.name);
	char buf[4096];
	int n = rep_sop_encode(&op, &fuzz_signer, buf, sizeof(buf));
	if (n < 0)
		return; /* e.g. a reason the payload's size bound leaves no room for */
	rep_op_t back;
	st = rep_sop_decode(buf, (size_t)n, &fuzz_bc, &back);
	if (st != REP_SOP_OK && st != REP_SOP_TOO_BROAD)
		__builtin_trap();
	same_target(&op.e.target, &back.e.target);
	if (back.del != op.del || back.e.allow != op.e.allow || back.e.expire != op.e.expire ||
	    back.e.stamp != op.e.stamp || strcmp(back.e.by, op.e.by) != 0 ||
	    (!op.del && strcmp(back.e.reason, op.e.reason) != 0))
		__builtin_trap();
}

/* "TARGET\tRECORD": a mirror record read back, encoded and read again. */
static void entry_round_trip(const char *s)
{
	const char *tab = strchr(s, '\t');
	if (tab == NULL)
		return;
	char target[REP_DOMAIN_MAX_BYTES];
	size_t tl = (size_t)(tab - s);
	if (tl >= sizeof(target))
		return;
	memcpy(target, s, tl);
	target[tl] = '\0';
	rep_entry_t e, back;
	if (rep_entry_decode(target, tab + 1, &e) < 0)
		return;
	char buf[4096];
	if (rep_entry_encode(&e, buf, sizeof(buf)) < 0)
		return;
	if (rep_entry_decode(target, buf, &back) < 0)
		__builtin_trap();
	same_target(&e.target, &back.target);
	if (back.allow != e.allow || back.added != e.added || back.expire != e.expire ||
	    back.stamp != e.stamp || back.local != e.local || strcmp(back.reason, e.reason) != 0 ||
	    strcmp(back.by, e.by) != 0)
		__builtin_trap();
}

static void text_forms(const char *s)
{
	char err[128], buf[REP_DOMAIN_MAX_BYTES], buf2[REP_DOMAIN_MAX_BYTES];
	rep_target_t t, t2;
	err[0] = '\0';
	if (rep_target_parse(s, &t, err, sizeof(err)) == 0) {
		if (rep_target_format(&t, buf, sizeof(buf)) < 0 ||
		    rep_target_parse(buf, &t2, err, sizeof(err)) < 0)
			__builtin_trap(); /* a canonical text that does not parse */
		same_target(&t, &t2);
		(void)rep_target_too_broad(&t, &fuzz_bc);
	} else if (err[0] == '\0') {
		__builtin_trap(); /* a refusal without a reason */
	}
	rep_addr_t a, a2;
	if (rep_addr_parse(s, &a) == 0) {
		if (rep_addr_format(&a, buf, sizeof(buf)) < 0 || rep_addr_parse(buf, &a2) < 0 ||
		    a.family != a2.family || memcmp(a.a, a2.a, sizeof(a.a)) != 0)
			__builtin_trap();
		(void)rep_addr_net(&a, buf, sizeof(buf));
	}
	if (rep_domain_norm(s, buf, sizeof(buf)) >= 0 &&
	    (rep_domain_norm(buf, buf2, sizeof(buf2)) < 0 || strcmp(buf, buf2) != 0))
		__builtin_trap(); /* normalising twice changes the name */
	(void)rep_addr_domain(s, buf, sizeof(buf));
	int64_t secs;
	(void)rep_parse_duration(s, &secs);
	const char *nl = strchr(s, '\n');
	if (nl != NULL) {
		char *first = strndup(s, (size_t)(nl - s));
		if (first != NULL) {
			int ab = rep_id_cmp(first, nl + 1), ba = rep_id_cmp(nl + 1, first);
			if ((ab < 0 && ba <= 0) || (ab > 0 && ba >= 0) || (ab == 0 && ba != 0))
				__builtin_trap();
			(void)rep_domain_covers(first, nl + 1);
			free(first);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 8192)
		return 0;
	sop_round_trip(data, size);
	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	entry_round_trip(s);
	text_forms(s);
	free(s);
	return 0;
}
