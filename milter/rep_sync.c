/*
 * rep_sync.c - the shared block list as a Redis stream: publishing an
 * operation, and bringing a local mirror up to date (snapshot when it is
 * new or fell behind a trimmed stream, then the stream from the last
 * applied id).
 */
#include "config.h"

#include "rep.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum { SYNC_BATCH = 1000 };

void rep_bl_keys(const char *prefix, char *log_key, char *state_key, size_t size)
{
	/* One hash tag for both, so MULTI over them is legal on a Redis Cluster. */
	snprintf(log_key, size, "%s{bl}:log", prefix);
	snprintf(state_key, size, "%s{bl}:state", prefix);
}

int rep_bl_publish(rep_link_t *l, const char *prefix, const rep_op_t *op, long stream_max,
                   char *id_out, size_t id_size)
{
	char logk[REP_KEY_MAX_BYTES], statek[REP_KEY_MAX_BYTES], tgt[REP_DOMAIN_MAX_BYTES];
	char enc[512], maxlen[32];
	rep_cmd_t c[4];
	redisReply *r[4];
	int rc = -1;

	rep_bl_keys(prefix, logk, statek, sizeof(logk));
	if (rep_target_format(&op->e.target, tgt, sizeof(tgt)) < 0 ||
	    rep_entry_encode(&op->e, enc, sizeof(enc)) < 0)
		return -1;
	snprintf(maxlen, sizeof(maxlen), "%ld", stream_max > 0 ? stream_max : 100000);
	rep_cmd_init(&c[0], "MULTI");
	rep_cmd_init(&c[1], "XADD");
	rep_cmd_arg(&c[1], logk);
	/* "~": trim in whole macro nodes, cheap; nodes that fall behind use the snapshot. */
	rep_cmd_arg(&c[1], "MAXLEN");
	rep_cmd_arg(&c[1], "~");
	rep_cmd_arg(&c[1], maxlen);
	rep_cmd_arg(&c[1], "*");
	rep_cmd_arg(&c[1], "op");
	rep_cmd_arg(&c[1], op->del ? "del" : "add");
	rep_cmd_arg(&c[1], "target");
	rep_cmd_arg(&c[1], tgt);
	rep_cmd_arg(&c[1], "entry");
	rep_cmd_arg(&c[1], enc);
	rep_cmd_init(&c[2], op->del ? "HDEL" : "HSET");
	rep_cmd_arg(&c[2], statek);
	rep_cmd_arg(&c[2], tgt);
	if (!op->del)
		rep_cmd_arg(&c[2], enc);
	rep_cmd_init(&c[3], "EXEC");
	if (rep_link_pipeline(l, 4, c, r) == 4 && r[3]->type == REDIS_REPLY_ARRAY &&
	    r[3]->elements == 2 && r[3]->element[0]->type == REDIS_REPLY_STRING) {
		snprintf(id_out, id_size, "%s", r[3]->element[0]->str);
		rc = 0;
	}
	rep_link_free_replies(4, r);
	return rc;
}

/* A stream entry [id, [field, value, ...]] to an operation; -1 if malformed. */
static int parse_entry(const redisReply *e, rep_op_t *op)
{
	const char *opname = NULL, *target = NULL, *enc = NULL;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
		return -1;
	memset(op, 0, sizeof(*op));
	snprintf(op->id, sizeof(op->id), "%s", e->element[0]->str);
	const redisReply *f = e->element[1];
	for (size_t i = 0; i + 1 < f->elements; i += 2) {
		if (f->element[i]->type != REDIS_REPLY_STRING ||
		    f->element[i + 1]->type != REDIS_REPLY_STRING)
			continue;
		const char *k = f->element[i]->str, *v = f->element[i + 1]->str;
		if (strcmp(k, "op") == 0)
			opname = v;
		else if (strcmp(k, "target") == 0)
			target = v;
		else if (strcmp(k, "entry") == 0)
			enc = v;
	}
	if (opname == NULL || target == NULL)
		return -1;
	op->del = strcmp(opname, "del") == 0;
	if (op->del) {
		char err[128];
		return rep_target_parse(target, &op->e.target, err, sizeof(err));
	}
	return enc ? rep_entry_decode(target, enc, &op->e) : -1;
}

/* The id of a one-entry XRANGE/XREVRANGE reply into buf; false if the stream is empty. */
static bool range_id(const redisReply *r, char *buf, size_t size)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0)
		return false;
	const redisReply *e = r->element[0];
	if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
	    e->element[0]->type != REDIS_REPLY_STRING)
		return false;
	snprintf(buf, size, "%s", e->element[0]->str);
	return true;
}

static int load_snapshot(rep_link_t *l, rep_mirror_t *m, const char *logk, const char *statek)
{
	rep_cmd_t c[2];
	redisReply *r[2];
	char top[REP_ID_MAX_BYTES] = "0-0";
	int rc = -1;

	/* The id first: whatever is added after it is replayed from the stream, harmlessly. */
	rep_cmd_init(&c[0], "XREVRANGE");
	rep_cmd_arg(&c[0], logk);
	rep_cmd_arg(&c[0], "+");
	rep_cmd_arg(&c[0], "-");
	rep_cmd_arg(&c[0], "COUNT");
	rep_cmd_arg(&c[0], "1");
	rep_cmd_init(&c[1], "HGETALL");
	rep_cmd_arg(&c[1], statek);
	if (rep_link_pipeline(l, 2, c, r) != 2 || r[1]->type != REDIS_REPLY_ARRAY) {
		rep_link_free_replies(2, r);
		return -1;
	}
	range_id(r[0], top, sizeof(top));
	size_t n = r[1]->elements / 2, k = 0;
	rep_entry_t *e = calloc(n ? n : 1, sizeof(*e));
	if (e != NULL) {
		for (size_t i = 0; i < n; i++) {
			const redisReply *kk = r[1]->element[2 * i], *vv = r[1]->element[2 * i + 1];
			if (kk->type == REDIS_REPLY_STRING && vv->type == REDIS_REPLY_STRING &&
			    rep_entry_decode(kk->str, vv->str, &e[k]) == 0)
				k++;
		}
		rc = rep_mirror_load_snapshot(m, e, k, top) == 0 ? (int)k : -1;
		free(e);
	}
	rep_link_free_replies(2, r);
	return rc;
}

/*
 * On a fresh connection: compare the mirror's position with the stream.
 * Costs one round trip per (re)connection, not per sync round.
 */
static int check_position(rep_link_t *l, rep_mirror_t *m, const char *logk, const char *statek,
                          const char *last)
{
	rep_cmd_t c[3];
	redisReply *r[3];
	char first[REP_ID_MAX_BYTES], top[REP_ID_MAX_BYTES];
	bool have_first, have_top;
	long long hlen;

	rep_cmd_init(&c[0], "XRANGE");
	rep_cmd_arg(&c[0], logk);
	rep_cmd_arg(&c[0], "-");
	rep_cmd_arg(&c[0], "+");
	rep_cmd_arg(&c[0], "COUNT");
	rep_cmd_arg(&c[0], "1");
	rep_cmd_init(&c[1], "XREVRANGE");
	rep_cmd_arg(&c[1], logk);
	rep_cmd_arg(&c[1], "+");
	rep_cmd_arg(&c[1], "-");
	rep_cmd_arg(&c[1], "COUNT");
	rep_cmd_arg(&c[1], "1");
	rep_cmd_init(&c[2], "HLEN");
	rep_cmd_arg(&c[2], statek);
	if (rep_link_pipeline(l, 3, c, r) != 3) {
		rep_link_free_replies(3, r);
		return -1;
	}
	have_first = range_id(r[0], first, sizeof(first));
	have_top = range_id(r[1], top, sizeof(top));
	hlen = r[2]->type == REDIS_REPLY_INTEGER ? r[2]->integer : 0;
	rep_link_free_replies(3, r);

	if (strcmp(last, "0-0") == 0)
		return hlen > 0 ? load_snapshot(l, m, logk, statek) : 0;
	if (!have_top || rep_id_cmp(last, top) > 0) {
		/*
		 * Redis lost data (restarted without persistence, or a failover to
		 * a stale replica). Our mirror is the better copy: keep it, and
		 * follow whatever is appended from now on.
		 */
		return rep_mirror_set_last_id(m, have_top ? top : "0-1");
	}
	if (have_first && rep_id_cmp(last, first) < 0)
		return load_snapshot(l, m, logk, statek); /* trimmed past our position */
	return 0;
}

int rep_bl_sync(rep_link_t *l, rep_mirror_t *m, const char *prefix, long block_ms)
{
	char logk[REP_KEY_MAX_BYTES], statek[REP_KEY_MAX_BYTES], last[REP_ID_MAX_BYTES];
	char count[16], block[32];
	bool fresh;
	rep_cmd_t c;
	redisReply *r;
	int applied = 0;

	rep_bl_keys(prefix, logk, statek, sizeof(logk));
	if (rep_link_get(l) == NULL)
		return -1;
	fresh = rep_link_take_fresh(l);
	if (rep_mirror_last_id(m, last, sizeof(last)) < 0)
		return -1;
	if (fresh) {
		int s = check_position(l, m, logk, statek, last);
		if (s < 0) {
			/* The failure failed the link too: the next connection checks again. */
			return -1;
		}
		applied += s;
		rep_mirror_last_id(m, last, sizeof(last));
	}
	snprintf(count, sizeof(count), "%d", SYNC_BATCH);
	snprintf(block, sizeof(block), "%ld", block_ms);
	rep_cmd_init(&c, "XREAD");
	rep_cmd_arg(&c, "COUNT");
	rep_cmd_arg(&c, count);
	if (block_ms > 0) { /* BLOCK 0 would mean forever */
		rep_cmd_arg(&c, "BLOCK");
		rep_cmd_arg(&c, block);
	}
	rep_cmd_arg(&c, "STREAMS");
	rep_cmd_arg(&c, logk);
	rep_cmd_arg(&c, last);
	if (rep_link_pipeline(l, 1, &c, &r) != 1)
		return -1;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2 &&
	    r->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
		const redisReply *es = r->element[0]->element[1];
		rep_op_t *ops = calloc(es->elements ? es->elements : 1, sizeof(*ops));
		size_t k = 0;
		if (ops == NULL) {
			freeReplyObject(r);
			return -1;
		}
		for (size_t i = 0; i < es->elements; i++) {
			if (parse_entry(es->element[i], &ops[k]) == 0) {
				k++;
			} else if (es->element[i]->type == REDIS_REPLY_ARRAY &&
			           es->element[i]->elements > 0 &&
			           es->element[i]->element[0]->type == REDIS_REPLY_STRING) {
				/* Skip a malformed entry but move past it, or we would read it
				 * forever. */
				memset(&ops[k], 0, sizeof(ops[k]));
				snprintf(ops[k].id, sizeof(ops[k].id), "%s",
				         es->element[i]->element[0]->str);
				ops[k].del = true;
				ops[k].e.target.kind = REP_T_DOMAIN;
				snprintf(ops[k].e.target.domain, sizeof(ops[k].e.target.domain),
				         "invalid.invalid");
				k++;
			}
		}
		int a = rep_mirror_apply(m, ops, k);
		free(ops);
		if (a < 0) {
			freeReplyObject(r);
			return -1;
		}
		applied += a;
	}
	freeReplyObject(r);
	return applied;
}
