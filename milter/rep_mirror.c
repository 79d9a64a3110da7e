/*
 * rep_mirror.c - the local LMDB mirror of the shared block/allow list.
 * Lookups never touch the network; the last applied stream id is stored
 * in the same transaction as the entries it produced, so resuming after a
 * crash, a restart or a link cut neither skips nor repeats an operation.
 */
#include "config.h"

#include "log.h"
#include "rep.h"
#include "xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum {
	MIRROR_MAP_BYTES = 256u << 20, /* room for millions of entries */
	MIRROR_KEY_MAX_BYTES = REP_DOMAIN_MAX_BYTES + 2,
	MIRROR_VAL_MAX_BYTES = 1024, /* a record is at most ~600 bytes */
};

struct rep_mirror {
	MDB_env *env;
	MDB_dbi entries; /* binary target key -> record (see put_rec) */
	MDB_dbi meta;    /* "schema", "last_id", "gen", "load", "trust"; "plen4"/"plen6":
	                    bitmaps of prefix lengths in use */
	MDB_dbi pending; /* reputation updates not written at shutdown: "t|s|h|key" */
	/* how long a tombstone is kept; atomic: across a reload two runtimes' sync threads set it */
	_Atomic long tomb_s;
};

/*
 * Schema 2: records "K|gen\ttarget\tentry" with K 'l' (local), 's' (shared,
 * verified) or 't' (tombstone of a deleted shared entry). Schema 1 (no
 * "schema" key) held unsigned shared entries as "target\tentry".
 */
static const char schema_version[] = "2";
enum { TOMBSTONE_DEFAULT_S = 30 * 86400 };

/* A decoded record. */
struct rec {
	char kind;
	uint32_t gen;
	rep_entry_t e;
};

static int mkdirs(const char *dir)
{
	char tmp[4096];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof(tmp))
		return -1;
	memcpy(tmp, dir, n + 1);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int upgrade(rep_mirror_t *m, MDB_txn *txn);

rep_mirror_t *rep_mirror_open(const char *dir, diag_t *d)
{
	rep_mirror_t *m = xalloc_calloc(1, sizeof(*m));
	MDB_txn *txn = NULL;
	int rc;

	if (mkdirs(dir) < 0) {
		diag_error(d, dir, 0, "cannot create the block mirror directory: %s",
		           strerror(errno));
		free(m);
		return NULL;
	}
	if ((rc = mdb_env_create(&m->env)) != 0)
		goto fail;
	mdb_env_set_maxdbs(m->env, 4);
	mdb_env_set_mapsize(m->env, MIRROR_MAP_BYTES);
	/* NOTLS: read transactions are opened by many milter threads, briefly. */
	if ((rc = mdb_env_open(m->env, dir, MDB_NOTLS, 0640)) != 0)
		goto fail;
	if ((rc = mdb_txn_begin(m->env, NULL, 0, &txn)) != 0)
		goto fail;
	if ((rc = mdb_dbi_open(txn, "entries", MDB_CREATE, &m->entries)) != 0 ||
	    (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &m->meta)) != 0 ||
	    (rc = mdb_dbi_open(txn, "pending", MDB_CREATE | MDB_INTEGERKEY, &m->pending)) != 0 ||
	    (rc = upgrade(m, txn)) != 0) {
		mdb_txn_abort(txn);
		goto fail;
	}
	m->tomb_s = TOMBSTONE_DEFAULT_S;
	if ((rc = mdb_txn_commit(txn)) != 0)
		goto fail;
	return m;
fail:
	diag_error(d, dir, 0, "cannot open the block mirror: %s", mdb_strerror(rc));
	if (m->env)
		mdb_env_close(m->env);
	free(m);
	return NULL;
}

void rep_mirror_close(rep_mirror_t *m)
{
	if (m == NULL)
		return;
	mdb_env_close(m->env);
	free(m);
}

/* Binary keys: family, prefix length, masked address; or 'd' and the domain. */
static size_t target_key(const rep_target_t *t, uint8_t *k)
{
	if (t->kind == REP_T_DOMAIN) {
		size_t n = strlen(t->domain);
		k[0] = 'd';
		memcpy(k + 1, t->domain, n);
		return n + 1;
	}
	size_t bytes = t->addr.family == 4 ? 4 : 16;
	k[0] = (uint8_t)t->addr.family;
	k[1] = (uint8_t)t->plen;
	memcpy(k + 2, t->addr.a, bytes);
	return bytes + 2;
}

static int decode_rec(const MDB_val *v, struct rec *r)
{
	char buf[MIRROR_VAL_MAX_BYTES + 1];
	size_t n = v->mv_size < MIRROR_VAL_MAX_BYTES ? v->mv_size : MIRROR_VAL_MAX_BYTES;
	memcpy(buf, v->mv_data, n);
	buf[n] = '\0';
	char *t1 = strchr(buf, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
	if (n < 4 || buf[1] != '|' || t2 == NULL || strchr("lst", buf[0]) == NULL)
		return -1;
	*t2 = '\0';
	r->kind = buf[0];
	r->gen = (uint32_t)strtoul(buf + 2, NULL, 10);
	if (rep_entry_decode(t1 + 1, t2 + 1, &r->e) < 0)
		return -1;
	r->e.local = r->kind == 'l';
	return 0;
}

/* A live entry (not a tombstone); -1 otherwise. */
static int decode_val(const MDB_val *v, rep_entry_t *e)
{
	struct rec r;
	if (decode_rec(v, &r) < 0 || r.kind == 't')
		return -1;
	*e = r.e;
	return 0;
}

static int put_rec(rep_mirror_t *m, MDB_txn *txn, const rep_entry_t *e, char kind, uint32_t gen)
{
	uint8_t k[MIRROR_KEY_MAX_BYTES];
	char val[MIRROR_VAL_MAX_BYTES], tgt[REP_DOMAIN_MAX_BYTES];
	MDB_val key, data;
	int rc;

	if (rep_target_format(&e->target, tgt, sizeof(tgt)) < 0)
		return EINVAL;
	int n = snprintf(val, sizeof(val), "%c|%" PRIu32 "\t%s\t", kind, gen, tgt);
	if (rep_entry_encode(e, val + n, sizeof(val) - (size_t)n) < 0)
		return EINVAL;
	key.mv_size = target_key(&e->target, k);
	key.mv_data = k;
	data.mv_size = strlen(val);
	data.mv_data = val;
	if ((rc = mdb_put(txn, m->entries, &key, &data, 0)) != 0)
		return rc;
	if (e->target.kind != REP_T_DOMAIN && kind != 't') {
		/* Remember which prefix lengths exist, so a lookup probes only those. */
		uint8_t bits[17] = {0};
		const char *name = e->target.addr.family == 4 ? "plen4" : "plen6";
		MDB_val mk = {.mv_size = strlen(name), .mv_data = (void *)name}, mv;
		if (mdb_get(txn, m->meta, &mk, &mv) == 0 && mv.mv_size == sizeof(bits))
			memcpy(bits, mv.mv_data, sizeof(bits));
		bits[e->target.plen / 8] |= (uint8_t)(1u << (e->target.plen % 8));
		mv.mv_size = sizeof(bits);
		mv.mv_data = bits;
		if ((rc = mdb_put(txn, m->meta, &mk, &mv, 0)) != 0)
			return rc;
	}
	return 0;
}

/* 1 and *r if the target has a record (live or tombstone), 0 if none. */
static int get_rec(rep_mirror_t *m, MDB_txn *txn, const rep_target_t *t, struct rec *r)
{
	uint8_t k[MIRROR_KEY_MAX_BYTES];
	MDB_val key = {.mv_size = target_key(t, k), .mv_data = k}, v;
	return mdb_get(txn, m->entries, &key, &v) == 0 && decode_rec(&v, r) == 0;
}

static int del_entry(rep_mirror_t *m, MDB_txn *txn, const rep_target_t *t)
{
	uint8_t k[MIRROR_KEY_MAX_BYTES];
	MDB_val key = {.mv_size = target_key(t, k), .mv_data = k};
	int rc = mdb_del(txn, m->entries, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static bool meta_get(rep_mirror_t *m, MDB_txn *txn, const char *name, char *buf, size_t size)
{
	MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name}, v;
	if (mdb_get(txn, m->meta, &k, &v) == 0 && v.mv_size < size) {
		memcpy(buf, v.mv_data, v.mv_size);
		buf[v.mv_size] = '\0';
		return true;
	}
	if (size)
		buf[0] = '\0';
	return false;
}

static int meta_put(rep_mirror_t *m, MDB_txn *txn, const char *name, const char *val)
{
	MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name};
	MDB_val v = {.mv_size = strlen(val), .mv_data = (void *)val};
	return mdb_put(txn, m->meta, &k, &v, 0);
}

static int meta_del(rep_mirror_t *m, MDB_txn *txn, const char *name)
{
	MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name};
	int rc = mdb_del(txn, m->meta, &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static void get_last_id(rep_mirror_t *m, MDB_txn *txn, char *buf, size_t size)
{
	if (!meta_get(m, txn, "last_id", buf, size))
		snprintf(buf, size, "0-0");
}

static int put_last_id(rep_mirror_t *m, MDB_txn *txn, const char *id)
{
	return meta_put(m, txn, "last_id", id);
}

static uint32_t get_gen(rep_mirror_t *m, MDB_txn *txn)
{
	char buf[32];
	return meta_get(m, txn, "gen", buf, sizeof(buf)) ? (uint32_t)strtoul(buf, NULL, 10) : 0;
}

/*
 * Schema 1 to 2. A mirror that ever followed Redis held entries nobody
 * verified: drop them all and start over from the (signed) list. One that
 * never did (last_id 0-0) holds only local entries: keep them.
 */
static int upgrade(rep_mirror_t *m, MDB_txn *txn)
{
	char ver[8], last[REP_ID_MAX_BYTES];
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = 0;
	size_t dropped = 0, kept = 0;

	if (meta_get(m, txn, "schema", ver, sizeof(ver)))
		return strcmp(ver, schema_version) == 0 ? 0 : EINVAL;
	get_last_id(m, txn, last, sizeof(last));
	bool shared = strcmp(last, "0-0") != 0;
	if ((rc = mdb_cursor_open(txn, m->entries, &cur)) != 0)
		return rc;
	for (int op = MDB_FIRST; rc == 0 && mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
		char buf[MIRROR_VAL_MAX_BYTES + 1], conv[MIRROR_VAL_MAX_BYTES + 32];
		rep_entry_t e;
		size_t n = v.mv_size < MIRROR_VAL_MAX_BYTES ? v.mv_size : MIRROR_VAL_MAX_BYTES;
		memcpy(buf, v.mv_data, n);
		buf[n] = '\0';
		char *tab = strchr(buf, '\t');
		/* Old entry: "list|expire|added|by|reason"; the stamp goes before the reason. */
		char *p = tab;
		for (int i = 0; p && i < 4; i++)
			p = strchr(p + 1, '|');
		if (shared || tab == NULL || p == NULL) {
			rc = mdb_cursor_del(cur, 0);
			dropped++;
			continue;
		}
		*tab = '\0';
		*p = '\0';
		snprintf(conv, sizeof(conv), "%s|0|%s", tab + 1, p + 1);
		if (rep_entry_decode(buf, conv, &e) < 0) {
			rc = mdb_cursor_del(cur, 0);
			dropped++;
			continue;
		}
		e.stamp = (uint64_t)e.added * 1000000u;
		rc = put_rec(m, txn, &e, 'l', 0);
		kept++;
	}
	mdb_cursor_close(cur);
	if (rc == 0 && shared) {
		rc = put_last_id(m, txn, "0-0");
		if (rc == 0)
			rc = meta_del(m, txn, "plen4");
		if (rc == 0)
			rc = meta_del(m, txn, "plen6");
	}
	if (rc == 0)
		rc = meta_put(m, txn, "schema", schema_version);
	if (rc == 0 && (dropped || kept))
		log_msg(LOG_L_NOTICE,
		        "rep: block list mirror converted to signed entries: %zu unverified shared "
		        "entries dropped (reloaded at the next sync), %zu local entries kept",
		        dropped, kept);
	return rc;
}

void rep_mirror_set_tombstone_time(rep_mirror_t *m, long seconds)
{
	atomic_store_explicit(&m->tomb_s, seconds > 0 ? seconds : TOMBSTONE_DEFAULT_S,
	                      memory_order_relaxed);
}

int rep_mirror_apply(rep_mirror_t *m, const rep_op_t *ops, size_t n)
{
	MDB_txn *txn;
	char last[REP_ID_MAX_BYTES];
	int applied = 0, rc = 0;
	bool moved = false;

	if (mdb_txn_begin(m->env, NULL, 0, &txn) != 0)
		return -1;
	get_last_id(m, txn, last, sizeof(last));
	uint32_t gen = get_gen(m, txn);
	for (size_t i = 0; i < n && rc == 0; i++) {
		const rep_op_t *o = &ops[i];
		bool shared = o->id[0] != '\0';
		struct rec old;
		/* Another process (the CLI, an older generation) may have applied it already. */
		if (shared && rep_id_cmp(o->id, last) <= 0)
			continue;
		if (shared) {
			snprintf(last, sizeof(last), "%s", o->id);
			moved = true;
		}
		if (o->skip)
			continue;
		/*
		 * Per target, the newest operation wins, whatever order they arrive
		 * in: a replayed old "add" (or "del") signed long ago changes nothing.
		 */
		if (get_rec(m, txn, &o->e.target, &old) == 1 && old.e.stamp >= o->e.stamp)
			continue;
		if (o->del)
			rc = shared ? put_rec(m, txn, &o->e, 't', gen)
			            : del_entry(m, txn, &o->e.target);
		else
			rc = put_rec(m, txn, &o->e, shared ? 's' : 'l', gen);
		applied++;
	}
	if (rc == 0 && moved)
		rc = put_last_id(m, txn, last);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return -1;
	}
	return mdb_txn_commit(txn) == 0 ? applied : -1;
}

static bool load_get(rep_mirror_t *m, MDB_txn *txn, rep_load_t *out)
{
	char buf[160];
	memset(out, 0, sizeof(*out));
	if (!meta_get(m, txn, "load", buf, sizeof(buf)))
		return false;
	unsigned long gen;
	/* The server's run id is a later addition: a record without one is "unknown". */
	if (sscanf(buf, "%47[0-9-]|%31[0-9]|%lu|%47[0-9a-f]", out->base, out->cursor, &gen,
	           out->server) < 3)
		return false;
	out->gen = (uint32_t)gen;
	return true;
}

static int load_put(rep_mirror_t *m, MDB_txn *txn, const rep_load_t *l)
{
	char buf[160];
	snprintf(buf, sizeof(buf), "%s|%s|%" PRIu32 "|%s", l->base, l->cursor, l->gen, l->server);
	return meta_put(m, txn, "load", buf);
}

int rep_mirror_load_begin(rep_mirror_t *m, const char *base_id)
{
	MDB_txn *txn;
	rep_load_t l;

	if (mdb_txn_begin(m->env, NULL, 0, &txn) != 0)
		return -1;
	memset(&l, 0, sizeof(l));
	snprintf(l.base, sizeof(l.base), "%s", base_id);
	snprintf(l.cursor, sizeof(l.cursor), "0");
	l.gen = get_gen(m, txn) + 1;
	if (load_put(m, txn, &l) != 0) {
		mdb_txn_abort(txn);
		return -1;
	}
	return mdb_txn_commit(txn) == 0 ? 0 : -1;
}

int rep_mirror_load_server(rep_mirror_t *m, const char *run_id)
{
	MDB_txn *txn;
	rep_load_t l;
	int restarted = 0;

	if (mdb_txn_begin(m->env, NULL, 0, &txn) != 0)
		return -1;
	if (!load_get(m, txn, &l) || strcmp(l.server, run_id) == 0) {
		mdb_txn_abort(txn);
		return 0;
	}
	if (strcmp(l.cursor, "0") != 0) {
		snprintf(l.cursor, sizeof(l.cursor), "0");
		restarted = 1;
	}
	snprintf(l.server, sizeof(l.server), "%s", run_id);
	if (load_put(m, txn, &l) != 0) {
		mdb_txn_abort(txn);
		return -1;
	}
	return mdb_txn_commit(txn) == 0 ? restarted : -1;
}

int rep_mirror_load_state(rep_mirror_t *m, rep_load_t *out)
{
	MDB_txn *txn;
	if (mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn) != 0)
		return -1;
	bool in = load_get(m, txn, out);
	mdb_txn_abort(txn);
	return in ? 1 : 0;
}

/* The end of a load: what the snapshot no longer has goes; tombstones and local entries stay. */
static int load_finish(rep_mirror_t *m, MDB_txn *txn, const rep_load_t *l)
{
	MDB_cursor *cur;
	MDB_val k, v;
	char gen[16];
	int rc;

	if ((rc = mdb_cursor_open(txn, m->entries, &cur)) != 0)
		return rc;
	for (int op = MDB_FIRST; rc == 0 && mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
		struct rec r;
		if (decode_rec(&v, &r) < 0 || (r.kind == 's' && r.gen != l->gen))
			rc = mdb_cursor_del(cur, 0);
	}
	mdb_cursor_close(cur);
	snprintf(gen, sizeof(gen), "%" PRIu32, l->gen);
	if (rc == 0)
		rc = meta_put(m, txn, "gen", gen);
	if (rc == 0)
		rc = put_last_id(m, txn, l->base);
	if (rc == 0)
		rc = meta_del(m, txn, "load");
	return rc;
}

int rep_mirror_load_chunk(rep_mirror_t *m, const rep_entry_t *e, size_t n, const char *next_cursor)
{
	MDB_txn *txn;
	rep_load_t l;
	int rc = 0, stored = 0;

	if (mdb_txn_begin(m->env, NULL, 0, &txn) != 0)
		return -1;
	if (!load_get(m, txn, &l)) {
		mdb_txn_abort(txn);
		return -1;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct rec old;
		if (get_rec(m, txn, &e[i].target, &old) == 1 && old.e.stamp > e[i].stamp) {
			/*
			 * The mirror knows a newer operation (the snapshot holds a replayed
			 * older entry): keep ours, and keep it through this load.
			 */
			if (old.kind == 's')
				rc = put_rec(m, txn, &old.e, 's', l.gen);
			continue;
		}
		rep_entry_t x = e[i];
		x.local = false;
		rc = put_rec(m, txn, &x, 's', l.gen);
		stored++;
	}
	if (rc == 0) {
		snprintf(l.cursor, sizeof(l.cursor), "%s", next_cursor);
		rc = strcmp(next_cursor, "0") == 0 ? load_finish(m, txn, &l) : load_put(m, txn, &l);
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		return -1;
	}
	return mdb_txn_commit(txn) == 0 ? stored : -1;
}

int rep_mirror_trust_changed(rep_mirror_t *m, const char *fingerprint)
{
	MDB_txn *txn;
	char old[128];
	int rc = 0;

	/* Called every sync step: look first, without taking the writers' lock. */
	if (mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn) != 0)
		return -1;
	bool same = meta_get(m, txn, "trust", old, sizeof(old)) && strcmp(old, fingerprint) == 0;
	mdb_txn_abort(txn);
	if (same)
		return 0;
	if (mdb_txn_begin(m->env, NULL, 0, &txn) != 0)
		return -1;
	/* What was refused may now be accepted and the reverse: load everything again. */
	rc = meta_put(m, txn, "trust", fingerprint);
	if (rc == 0)
		rc = put_last_id(m, txn, "0-0");
	if (rc == 0)
		rc = meta_del(m, txn, "load");
	if (rc != 0) {
		mdb_txn_abort(txn);
		return -1;
	}
	return mdb_txn_commit(txn) == 0 ? 1 : -1;
}

int rep_mirror_set_last_id(rep_mirror_t *m, const char *id)
{
	MDB_txn *txn;
	if (mdb_txn_begin(m->env, NULL, 0, &txn) != 0)
		return -1;
	if (put_last_id(m, txn, id) != 0) {
		mdb_txn_abort(txn);
		return -1;
	}
	return mdb_txn_commit(txn) == 0 ? 0 : -1;
}

int rep_mirror_last_id(rep_mirror_t *m, char *buf, size_t size)
{
	MDB_txn *txn;
	if (mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn) != 0)
		return -1;
	get_last_id(m, txn, buf, size);
	mdb_txn_abort(txn);
	return 0;
}

int rep_mirror_lookup_ip(rep_mirror_t *m, const rep_addr_t *a, int64_t now, rep_entry_t *out)
{
	MDB_txn *txn;
	uint8_t bits[17] = {0};
	const char *name = a->family == 4 ? "plen4" : "plen6";
	MDB_val mk = {.mv_size = strlen(name), .mv_data = (void *)name}, mv;
	int found = 0;

	if (mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn) != 0)
		return -1;
	if (mdb_get(txn, m->meta, &mk, &mv) == 0 && mv.mv_size == sizeof(bits))
		memcpy(bits, mv.mv_data, sizeof(bits));
	for (int plen = a->family == 4 ? 32 : 128; plen >= 0 && !found; plen--) {
		if (!(bits[plen / 8] & (1u << (plen % 8))))
			continue;
		char txt[64], err[64];
		rep_target_t t;
		uint8_t k[MIRROR_KEY_MAX_BYTES];
		if (rep_addr_format(a, txt, sizeof(txt)) < 0)
			break;
		snprintf(txt + strlen(txt), sizeof(txt) - strlen(txt), "/%d", plen);
		if (rep_target_parse(txt, &t, err, sizeof(err)) < 0)
			continue;
		MDB_val key = {.mv_size = target_key(&t, k), .mv_data = k}, v;
		if (mdb_get(txn, m->entries, &key, &v) == 0 && decode_val(&v, out) == 0 &&
		    !rep_entry_expired(out, now))
			found = 1;
	}
	mdb_txn_abort(txn);
	return found;
}

int rep_mirror_lookup_domain(rep_mirror_t *m, const char *domain, int64_t now, rep_entry_t *out)
{
	MDB_txn *txn;
	char norm[REP_DOMAIN_MAX_BYTES];
	int found = 0;

	if (rep_domain_norm(domain, norm, sizeof(norm)) < 0)
		return 0;
	if (mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn) != 0)
		return -1;
	/* The longest listed suffix wins: an allowed subdomain of a blocked domain stays allowed.
	 */
	for (const char *p = norm; p && *p && !found;
	     p = strchr(p, '.') ? strchr(p, '.') + 1 : NULL) {
		uint8_t k[MIRROR_KEY_MAX_BYTES];
		size_t n = strlen(p);
		k[0] = 'd';
		memcpy(k + 1, p, n);
		MDB_val key = {.mv_size = n + 1, .mv_data = k}, v;
		if (mdb_get(txn, m->entries, &key, &v) == 0 && decode_val(&v, out) == 0 &&
		    !rep_entry_expired(out, now))
			found = 1;
	}
	mdb_txn_abort(txn);
	return found;
}

int rep_mirror_list(rep_mirror_t *m, rep_entry_t **out, size_t *n)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	size_t cap = 64, len = 0;
	rep_entry_t *arr = xalloc_malloc(cap * sizeof(*arr));

	*out = NULL;
	*n = 0;
	if (mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn) != 0) {
		free(arr);
		return -1;
	}
	if (mdb_cursor_open(txn, m->entries, &cur) != 0) {
		mdb_txn_abort(txn);
		free(arr);
		return -1;
	}
	for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
		if (len == cap) {
			/* Never a silent cut: `block export` would publish a list without them. */
			arr = xalloc_realloc(arr, 2 * cap * sizeof(*arr));
			cap *= 2;
		}
		if (decode_val(&v, &arr[len]) == 0)
			len++;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	*out = arr;
	*n = len;
	return 0;
}

int rep_mirror_purge(rep_mirror_t *m, int64_t now)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int purged = 0;

	if (mdb_txn_begin(m->env, NULL, 0, &txn) != 0)
		return -1;
	if (mdb_cursor_open(txn, m->entries, &cur) != 0) {
		mdb_txn_abort(txn);
		return -1;
	}
	long tomb_s = atomic_load_explicit(&m->tomb_s, memory_order_relaxed);
	for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
		struct rec r;
		if (decode_rec(&v, &r) < 0)
			continue;
		bool gone = r.kind == 't' ? r.e.added + tomb_s <= now : rep_entry_expired(&r.e, now);
		if (gone && mdb_cursor_del(cur, 0) == 0)
			purged++;
	}
	mdb_cursor_close(cur);
	if (mdb_txn_commit(txn) != 0)
		return -1;
	return purged;
}

int rep_mirror_save_pending(rep_mirror_t *m, const rep_witem_t *items, size_t n)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	size_t next = 0;
	int rc = 0;

	if (n == 0)
		return 0;
	if (mdb_txn_begin(m->env, NULL, 0, &txn) != 0)
		return -1;
	/* Appended after whatever an earlier shutdown left, in order. */
	if (mdb_cursor_open(txn, m->pending, &cur) == 0) {
		if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == sizeof(size_t)) {
			memcpy(&next, k.mv_data, sizeof(next));
			next++;
		}
		mdb_cursor_close(cur);
	}
	for (size_t i = 0; i < n && rc == 0; i++, next++) {
		char val[REP_KEY_MAX_BYTES + 64];
		int len = snprintf(val, sizeof(val), "%" PRId64 "|%u|%u|%s", items[i].t,
		                   items[i].spam, items[i].ham, items[i].key);
		if (len < 0 || (size_t)len >= sizeof(val))
			continue;
		k.mv_size = sizeof(next);
		k.mv_data = &next;
		v.mv_size = (size_t)len;
		v.mv_data = val;
		rc = mdb_put(txn, m->pending, &k, &v, 0);
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		return -1;
	}
	return mdb_txn_commit(txn) == 0 ? 0 : -1;
}

int rep_mirror_take_pending(rep_mirror_t *m, rep_witem_t **out, size_t *n)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	size_t cap = 0, len = 0;
	rep_witem_t *arr = NULL;

	*out = NULL;
	*n = 0;
	if (mdb_txn_begin(m->env, NULL, 0, &txn) != 0)
		return -1;
	if (mdb_cursor_open(txn, m->pending, &cur) != 0) {
		mdb_txn_abort(txn);
		return -1;
	}
	for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
		char val[REP_KEY_MAX_BYTES + 64];
		long long t;
		unsigned sp, hm;
		int off = 0;
		if (v.mv_size >= sizeof(val))
			continue;
		memcpy(val, v.mv_data, v.mv_size);
		val[v.mv_size] = '\0';
		if (sscanf(val, "%lld|%u|%u|%n", &t, &sp, &hm, &off) != 3 || off == 0)
			continue;
		if (len == cap) {
			size_t nc = cap ? 2 * cap : 256;
			/* Never a silent cut: the whole pending table is dropped below. */
			arr = xalloc_realloc(arr, nc * sizeof(*arr));
			cap = nc;
		}
		memset(&arr[len], 0, sizeof(arr[len]));
		arr[len].t = t;
		arr[len].spam = (uint8_t)sp;
		arr[len].ham = (uint8_t)hm;
		snprintf(arr[len].key, sizeof(arr[len].key), "%s", val + off);
		len++;
	}
	mdb_cursor_close(cur);
	if (mdb_drop(txn, m->pending, 0) != 0 || mdb_txn_commit(txn) != 0) {
		free(arr);
		return -1;
	}
	*out = arr;
	*n = len;
	return 0;
}
