/*
 * rep_sign.c - authorised publishers of the shared block list: Ed25519
 * keys (libsodium), the one encoding of a signed operation that travels
 * through Redis, its verification against the trusted keys, and the rule
 * that refuses overly broad entries unless the publisher's key allows them.
 */
#include "config.h"

#include "rep.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpsl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Signed with the payload: a signature made for anything else never verifies here. */
static const char sign_context[] = "sift-block-v1\n";
enum { SEED_BYTES = 32, B64_KEY_BYTES = 45 /* 44 + NUL */, PAYLOAD_MAX_BYTES = 600 };

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= REP_KEYNAME_MAX_BYTES)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int b64_decode(const char *s, uint8_t *out, size_t want)
{
	size_t len = 0;
	if (sodium_base642bin(out, want, s, strlen(s), NULL, &len, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    len != want)
		return -1;
	return 0;
}

/* ------------------------------------------------------------ configuration */

static int parse_trusted(const char *v, rep_pubkey_t *k, char *err, size_t errsize)
{
	char name[64], key[128], flag[32], extra[8];
	int n = sscanf(v, "%63s %127s %31s %7s", name, key, flag, extra);

	memset(k, 0, sizeof(*k));
	if (n < 2 || n > 3) {
		snprintf(err, errsize, "expected NAME PUBLIC-KEY [broad]");
		return -1;
	}
	if (!name_ok(name)) {
		snprintf(err, errsize,
		         "bad publisher name '%.40s' (letters, digits, . _ -; at most %d)", name,
		         REP_KEYNAME_MAX_BYTES - 1);
		return -1;
	}
	if (b64_decode(key, k->pk, sizeof(k->pk)) < 0) {
		snprintf(err, errsize, "'%.60s' is not a base64 Ed25519 public key (44 characters)",
		         key);
		return -1;
	}
	if (n == 3) {
		if (strcmp(flag, "broad") != 0) {
			snprintf(err, errsize, "unknown flag '%.20s' (the one flag is 'broad')",
			         flag);
			return -1;
		}
		k->broad = true;
	}
	memcpy(k->name, name, strlen(name) + 1); /* name_ok(): it fits */
	return 0;
}

int rep_bl_config_read(conf_t *c, rep_bl_conf_t *bc, diag_t *d)
{
	int bad = 0;
	long v;

	if (sodium_init() < 0) {
		diag_error(d, conf_path(c), 0, "libsodium cannot be initialised");
		return -1;
	}
	memset(bc, 0, sizeof(*bc));
	bad |= conf_filename(c, "block_signing_key", NULL, &bc->signing_key, d);
	bad |= conf_long(c, "block_min_prefix4", 16, 0, 32, &bc->min_prefix4, d);
	bad |= conf_long(c, "block_min_prefix6", 32, 0, 128, &bc->min_prefix6, d);
	bad |= conf_long(c, "block_sync_batch", 200, 1, 100000, &bc->batch, d);
	bad |=
	    conf_ms(c, "block_tombstone_time", 30L * 86400000L, 60000L, 3650L * 86400000L, &v, d);
	bc->tombstone_s = v / 1000;
	if (bc->signing_key != NULL) {
		const char *f = NULL;
		unsigned line = 0;
		struct stat st;
		conf_value_at(c, "block_signing_key", 0, &f, &line);
		if (stat(bc->signing_key, &st) != 0) {
			diag_error(d, f, line, "block_signing_key: %s: %s", bc->signing_key,
			           strerror(errno));
			bad = -1;
		} else if (st.st_mode & (S_IRWXG | S_IRWXO)) {
			diag_error(
			    d, f, line,
			    "block_signing_key: %s is accessible to group or others (chmod 600 "
			    "it): a secret key must not be",
			    bc->signing_key);
			bad = -1;
		}
	}
	size_t n = conf_count(c, "block_trusted_key");
	for (size_t i = 0; i < n; i++) {
		const char *f = NULL, *val;
		unsigned line = 0;
		char err[160];
		val = conf_value_at(c, "block_trusted_key", i, &f, &line);
		if (bc->n_trusted == REP_MAX_TRUSTED) {
			diag_error(d, f, line, "block_trusted_key: at most %d keys",
			           REP_MAX_TRUSTED);
			bad = -1;
			break;
		}
		rep_pubkey_t *k = &bc->trusted[bc->n_trusted];
		if (parse_trusted(val, k, err, sizeof(err)) < 0) {
			diag_error(d, f, line, "block_trusted_key: %s", err);
			bad = -1;
			continue;
		}
		for (size_t j = 0; j < bc->n_trusted; j++)
			if (strcmp(bc->trusted[j].name, k->name) == 0) {
				diag_error(d, f, line, "block_trusted_key: '%s' is listed twice",
				           k->name);
				bad = -1;
			}
		bc->n_trusted++;
	}
	return bad ? -1 : 0;
}

void rep_bl_conf_fingerprint(const rep_bl_conf_t *bc, char *buf, size_t size)
{
	crypto_generichash_state st;
	uint8_t h[16];
	char num[64];

	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	snprintf(num, sizeof(num), "v1|%ld|%ld|%zu", bc->min_prefix4, bc->min_prefix6,
	         bc->n_trusted);
	crypto_generichash_update(&st, (const uint8_t *)num, strlen(num));
	for (size_t i = 0; i < bc->n_trusted; i++) {
		const rep_pubkey_t *k = &bc->trusted[i];
		crypto_generichash_update(&st, (const uint8_t *)k->name, strlen(k->name) + 1);
		crypto_generichash_update(&st, k->pk, sizeof(k->pk));
		crypto_generichash_update(&st, (const uint8_t *)(k->broad ? "B" : "-"), 1);
	}
	crypto_generichash_final(&st, h, sizeof(h));
	if (size < 2 * sizeof(h) + 1) {
		if (size)
			buf[0] = '\0';
		return;
	}
	sodium_bin2hex(buf, size, h, sizeof(h));
}

/* ------------------------------------------------------------ keys */

int rep_sign_keygen(const char *path, const char *name, char *line, size_t size, char *err,
                    size_t errsize)
{
	uint8_t seed[SEED_BYTES], pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	char seed64[B64_KEY_BYTES], pk64[B64_KEY_BYTES], text[256];

	if (sodium_init() < 0) {
		snprintf(err, errsize, "libsodium cannot be initialised");
		return -1;
	}
	if (!name_ok(name)) {
		snprintf(err, errsize, "bad name '%.40s' (letters, digits, . _ -; at most %d)",
		         name, REP_KEYNAME_MAX_BYTES - 1);
		return -1;
	}
	/* O_EXCL: an existing key is never overwritten, whatever the caller meant. */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errsize, "%s: %s", path, strerror(errno));
		return -1;
	}
	randombytes_buf(seed, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	sodium_bin2base64(seed64, sizeof(seed64), seed, sizeof(seed),
	                  sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(pk64, sizeof(pk64), pk, sizeof(pk), sodium_base64_VARIANT_ORIGINAL);
	int n = snprintf(text, sizeof(text),
	                 "# sift block list signing key: secret, keep it mode 0600\n"
	                 "name %s\nseed %s\n# public: block_trusted_key = %s %s\n",
	                 name, seed64, name, pk64);
	bool ok = fchmod(fd, 0600) == 0 && write(fd, text, (size_t)n) == n && fsync(fd) == 0;
	int e = errno;
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(seed64, sizeof(seed64));
	sodium_memzero(text, sizeof(text));
	if (close(fd) != 0 && ok) {
		ok = false;
		e = errno;
	}
	if (!ok) {
		unlink(path);
		snprintf(err, errsize, "%s: %s", path, strerror(e));
		return -1;
	}
	snprintf(line, size, "block_trusted_key = %s %s", name, pk64);
	return 0;
}

int rep_signer_load(const char *path, rep_signer_t *s, char *err, size_t errsize)
{
	char buf[512], name[64] = "", seed64[128] = "";
	uint8_t seed[SEED_BYTES], pk[crypto_sign_PUBLICKEYBYTES];
	struct stat st;
	ssize_t n;

	memset(s, 0, sizeof(*s));
	if (sodium_init() < 0) {
		snprintf(err, errsize, "libsodium cannot be initialised");
		return -1;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, errsize, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		close(fd);
		snprintf(err, errsize, "%s is accessible to group or others (chmod 600 it)", path);
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0) {
		snprintf(err, errsize, "%s: cannot read the key", path);
		return -1;
	}
	buf[n] = '\0';
	for (char *ln = strtok(buf, "\n"); ln; ln = strtok(NULL, "\n")) {
		if (strncmp(ln, "name ", 5) == 0)
			snprintf(name, sizeof(name), "%s", ln + 5);
		else if (strncmp(ln, "seed ", 5) == 0)
			snprintf(seed64, sizeof(seed64), "%s", ln + 5);
	}
	int rc = 0;
	if (!name_ok(name) || b64_decode(seed64, seed, sizeof(seed)) < 0) {
		snprintf(err, errsize, "%s: not a sift block signing key (see sift block keygen)",
		         path);
		rc = -1;
	} else {
		crypto_sign_seed_keypair(pk, s->sk, seed);
		memcpy(s->name, name, strlen(name) + 1); /* name_ok(): it fits */
	}
	sodium_memzero(buf, sizeof(buf));
	sodium_memzero(seed64, sizeof(seed64));
	sodium_memzero(seed, sizeof(seed));
	return rc;
}

void rep_signer_wipe(rep_signer_t *s)
{
	sodium_memzero(s, sizeof(*s));
}

/* ------------------------------------------------------------ operations */

const char *rep_sop_status_text(rep_sop_status_t st)
{
	switch (st) {
	case REP_SOP_OK: return "ok";
	case REP_SOP_UNSIGNED: return "unsigned";
	case REP_SOP_MALFORMED: return "malformed";
	case REP_SOP_UNKNOWN_KEY: return "signed by an unknown key";
	case REP_SOP_BAD_SIG: return "bad signature";
	case REP_SOP_TOO_BROAD: return "too broad for its publisher's key";
	}
	return "?";
}

bool rep_target_too_broad(const rep_target_t *t, const rep_bl_conf_t *bc)
{
	if (t->kind == REP_T_DOMAIN) {
		/* "com", "co.uk", "github.io": an entry there covers unrelated owners. */
		return psl_is_public_suffix(psl_builtin(), t->domain) != 0;
	}
	long min = t->addr.family == 4 ? bc->min_prefix4 : bc->min_prefix6;
	return (long)t->plen < min;
}

static int payload(const rep_op_t *op, char *buf, size_t size)
{
	char tgt[REP_DOMAIN_MAX_BYTES];
	if (rep_target_format(&op->e.target, tgt, sizeof(tgt)) < 0 || strchr(op->e.by, '|'))
		return -1;
	int n = snprintf(buf, size, "1|%c|%c|%s|%" PRId64 "|%" PRIu64 "|%s|%s", op->del ? 'd' : 'a',
	                 op->e.allow ? 'a' : 'b', tgt, op->e.expire, op->e.stamp, op->e.by,
	                 op->del ? "" : op->e.reason);
	return (n < 0 || (size_t)n >= size) ? -1 : n;
}

static void signed_message(const char *pl, size_t len, uint8_t *msg, size_t *mlen)
{
	memcpy(msg, sign_context, sizeof(sign_context) - 1);
	memcpy(msg + sizeof(sign_context) - 1, pl, len);
	*mlen = sizeof(sign_context) - 1 + len;
}

int rep_sop_encode(const rep_op_t *op, const rep_signer_t *s, char *buf, size_t size)
{
	char pl[PAYLOAD_MAX_BYTES];
	uint8_t msg[PAYLOAD_MAX_BYTES + sizeof(sign_context)];
	size_t mlen;

	int n = payload(op, pl, sizeof(pl));
	if (n < 0 || strcmp(op->e.by, s->name) != 0 || size < (size_t)n + REP_SIG_BYTES)
		return -1;
	signed_message(pl, (size_t)n, msg, &mlen);
	crypto_sign_detached((uint8_t *)buf, NULL, msg, mlen, s->sk);
	memcpy(buf + REP_SIG_BYTES, pl, (size_t)n);
	return REP_SIG_BYTES + n;
}

/* Splits off the next '|'-separated field of the payload; NULL at the end. */
static char *next_field(char **p)
{
	char *s = *p, *bar;
	if (s == NULL)
		return NULL;
	bar = strchr(s, '|');
	if (bar) {
		*bar = '\0';
		*p = bar + 1;
	} else {
		*p = NULL;
	}
	return s;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

rep_sop_status_t rep_sop_decode(const void *buf, size_t len, const rep_bl_conf_t *bc, rep_op_t *op)
{
	char pl[PAYLOAD_MAX_BYTES], err[128];
	const uint8_t *b = buf;
	char *p = pl;
	uint64_t expire, stamp;

	memset(op, 0, sizeof(*op));
	/* The unsigned entries of earlier versions: "block|..." or "allow|...". */
	if (len >= 6 && (memcmp(b, "block|", 6) == 0 || memcmp(b, "allow|", 6) == 0))
		return REP_SOP_UNSIGNED;
	if (len <= REP_SIG_BYTES || len - REP_SIG_BYTES >= sizeof(pl))
		return REP_SOP_MALFORMED;
	size_t plen = len - REP_SIG_BYTES;
	memcpy(pl, b + REP_SIG_BYTES, plen);
	pl[plen] = '\0';
	if (strlen(pl) != plen)
		return REP_SOP_MALFORMED;
	const char *ver = next_field(&p), *opc = next_field(&p), *list = next_field(&p);
	const char *tgt = next_field(&p), *exp = next_field(&p), *stp = next_field(&p);
	const char *by = next_field(&p), *reason = p ? p : NULL;
	if (reason == NULL || strcmp(ver, "1") != 0 || opc == NULL || list == NULL ||
	    (strcmp(opc, "a") != 0 && strcmp(opc, "d") != 0) ||
	    (strcmp(list, "a") != 0 && strcmp(list, "b") != 0) || tgt == NULL ||
	    rep_target_parse(tgt, &op->e.target, err, sizeof(err)) < 0 ||
	    !parse_u64(exp, &expire) || !parse_u64(stp, &stamp) || !name_ok(by) ||
	    strlen(reason) >= sizeof(op->e.reason) || expire > INT64_MAX)
		return REP_SOP_MALFORMED;
	op->del = opc[0] == 'd';
	op->e.allow = list[0] == 'a';
	op->e.expire = (int64_t)expire;
	op->e.stamp = stamp;
	op->e.added = (int64_t)(stamp / 1000000);
	snprintf(op->e.by, sizeof(op->e.by), "%s", by);
	snprintf(op->e.reason, sizeof(op->e.reason), "%s", reason);

	const rep_pubkey_t *k = NULL;
	for (size_t i = 0; i < bc->n_trusted && k == NULL; i++)
		if (strcmp(bc->trusted[i].name, by) == 0)
			k = &bc->trusted[i];
	if (k == NULL)
		return REP_SOP_UNKNOWN_KEY;
	uint8_t msg[PAYLOAD_MAX_BYTES + sizeof(sign_context)];
	size_t mlen;
	signed_message((const char *)b + REP_SIG_BYTES, plen, msg, &mlen);
	if (crypto_sign_verify_detached(b, msg, mlen, k->pk) != 0)
		return REP_SOP_BAD_SIG;
	/* A deletion of a broad entry is harmless: it can only narrow what is listed. */
	if (!op->del && !k->broad && rep_target_too_broad(&op->e.target, bc))
		return REP_SOP_TOO_BROAD;
	return REP_SOP_OK;
}
