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
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

enum {
	REJECT_LOG_BURST = 20,     /* lines about ignored entries per window */
	REJECT_LOG_WINDOW_S = 300, /* the window */
	LOG_TARGET_MAX_BYTES = 80, /* what of a (possibly huge, hostile) entry a log line shows */
};

/*
 * Reads whose replies are bounded. Anyone who can write to Redis can add a
 * stream entry or a snapshot field of any size: the signature keeps it from
 * being applied, not from being read, and a reply over the link's bound
 * fails the link. The same XREAD or HSCAN chunk then failed again after
 * every reconnection, and no later entry was ever applied. These scripts
 * blank what is longer than any signed entry (ARGV[3]), so such an entry is
 * read as a rejected one and passed over. The stream is read this way on
 * each new connection (the one after a failure among them), the snapshot
 * always; a blocking XREAD serves the rest.
 */
static const char stream_read_script[] =
    "local r = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])\n"
    "local max = tonumber(ARGV[3])\n"
    "for i = 1, #r do\n"
    "  local f, o = r[i][2], ''\n"
    "  for j = 1, #f - 1, 2 do\n"
    "    if f[j] == 'o' then o = f[j + 1] end\n"
    "  end\n"
    "  if #o > max then o = '' end\n"
    "  r[i][2] = {'o', o}\n"
    "end\n"
    "return r\n";
static const char snapshot_scan_script[] =
    "local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])\n"
    "local kv, max = r[2], tonumber(ARGV[3])\n"
    "for j = 1, #kv - 1, 2 do\n"
    "  if #kv[j] > max or #kv[j + 1] > max then kv[j], kv[j + 1] = '', '' end\n"
    "end\n"
    "return r\n";

void rep_bl_keys(const char *prefix, char *log_key, char *state_key, size_t size)
{
	/* One hash tag for both, so MULTI over them is legal on a Redis Cluster. */
	snprintf(log_key, size, "%s{bl}:log", prefix);
	snprintf(state_key, size, "%s{bl}:state", prefix);
}

int rep_bl_publish(rep_link_t *l, const char *prefix, const rep_op_t *op,
                   const struct rep_signer *s, long stream_max, char *id_out, size_t id_size)
{
	char logk[REP_KEY_MAX_BYTES], statek[REP_KEY_MAX_BYTES], tgt[REP_DOMAIN_MAX_BYTES];
	char enc[REP_SOP_MAX_BYTES], maxlen[32];
	rep_cmd_t c[4];
	redisReply *r[4];
	int rc = -1, n;

	rep_bl_keys(prefix, logk, statek, sizeof(logk));
	if (rep_target_format(&op->e.target, tgt, sizeof(tgt)) < 0 ||
	    (n = rep_sop_encode(op, s, enc, sizeof(enc))) < 0)
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
	/* One short field: on a 64 kbit/s link every byte of every entry is paid by every node. */
	rep_cmd_arg(&c[1], "o");
	rep_cmd_argn(&c[1], enc, (size_t)n);
	rep_cmd_init(&c[2], op->del ? "HDEL" : "HSET");
	rep_cmd_arg(&c[2], statek);
	rep_cmd_arg(&c[2], tgt);
	if (!op->del)
		rep_cmd_argn(&c[2], enc, (size_t)n);
	rep_cmd_init(&c[3], "EXEC");
	if (rep_link_pipeline(l, 4, c, r) == 4 && r[3]->type == REDIS_REPLY_ARRAY &&
	    r[3]->elements == 2 && r[3]->element[0]->type == REDIS_REPLY_STRING) {
		snprintf(id_out, id_size, "%s", r[3]->element[0]->str);
		rc = 0;
	}
	rep_link_free_replies(4, r);
	return rc;
}

/*
 * One log line per ignored entry, rate-limited; never more than a bounded
 * part of it. name is the stream id, or the snapshot's field (the target).
 */
static void note_reject(bool stream, const char *name, const rep_op_t *op, rep_sop_status_t st)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static log_ratelimit_t rl;
	unsigned lost = 0;
	char tgt[REP_DOMAIN_MAX_BYTES] = "", more[48] = "", who[REP_DOMAIN_MAX_BYTES + 80] = "";

	pthread_mutex_lock(&mu);
	bool ok = log_ratelimit(&rl, REJECT_LOG_BURST, REJECT_LOG_WINDOW_S, &lost);
	pthread_mutex_unlock(&mu);
	if (!ok)
		return;
	if (lost)
		snprintf(more, sizeof(more), " (%u more not logged)", lost);
	/* Unparsed entries have no target or publisher worth showing. */
	if (st != REP_SOP_UNSIGNED && st != REP_SOP_MALFORMED) {
		if (stream && rep_target_format(&op->e.target, tgt, sizeof(tgt)) == 0)
			snprintf(who, sizeof(who), " (%s by '%s')", tgt, op->e.by);
		else
			snprintf(who, sizeof(who), " (by '%s')", op->e.by);
	}
	log_msg(LOG_L_WARNING, "rep: block list: ignored %s entry %.*s%s: %s%s",
	        stream ? "stream" : "snapshot", LOG_TARGET_MAX_BYTES, name, who,
	        rep_sop_status_text(st), more);
}

/* Once per process: with no trusted key nothing shared is accepted, said once, not per entry. */
static bool trust_nothing(const rep_bl_conf_t *bc)
{
	static int warned;
	if (bc->n_trusted > 0)
		return false;
	if (__atomic_exchange_n(&warned, 1, __ATOMIC_ACQ_REL) == 0)
		log_msg(LOG_L_WARNING,
		        "rep: no block_trusted_key configured: shared block and allow "
		        "list entries are ignored (local ones still apply)");
	return true;
}

/* A stream entry [id, [field, value, ...]] to an operation; st says whether to apply it. */
static int parse_entry(const redisReply *e, const rep_bl_conf_t *bc, rep_op_t *op)
{
	const redisReply *enc = NULL;
	rep_sop_status_t st;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING)
		return -1;
	const redisReply *f = e->element[1];
	for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2)
		if (f->element[i]->type == REDIS_REPLY_STRING &&
		    f->element[i + 1]->type == REDIS_REPLY_STRING &&
		    strcmp(f->element[i]->str, "o") == 0)
			enc = f->element[i + 1];
	st = enc ? rep_sop_decode(enc->str, enc->len, bc, op) : REP_SOP_UNSIGNED;
	if (st != REP_SOP_OK) {
		if (!trust_nothing(bc))
			note_reject(true, e->element[0]->str, op, st);
		memset(op, 0, sizeof(*op));
		op->skip = true;
	}
	snprintf(op->id, sizeof(op->id), "%s", e->element[0]->str);
	return 0;
}

/*
 * A reply the sync cannot use: an error (WRONGTYPE, the key holding
 * something else) or a type no Redis sends. It fails the link, so the sync
 * waits out the backoff and says why. Taken for "nothing new" it had the
 * sync thread send the same read again at once, in a tight loop over the
 * link, and taken for an empty stream it rewound the mirror's position.
 */
static int refuse(rep_link_t *l, redisReply *r, const char *cmd)
{
	char why[400];
	snprintf(why, sizeof(why), "%s: %s: %.200s", rep_link_addr(l), cmd,
	         r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected reply");
	freeReplyObject(r);
	rep_link_fail(l, why);
	return -1;
}

/* Whether a reply to XRANGE, XREVRANGE or XREAD is one the sync can read. */
static bool usable(const redisReply *r)
{
	return r->type == REDIS_REPLY_ARRAY || r->type == REDIS_REPLY_NIL;
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

/*
 * Starts a snapshot load: the stream's newest id first, so whatever is
 * added during the load is replayed from the stream afterwards (operations
 * carry stamps, so replaying what the snapshot already had changes nothing).
 */
static int begin_load(rep_link_t *l, rep_mirror_t *m, const char *logk)
{
	rep_cmd_t c;
	redisReply *r;
	char top[REP_ID_MAX_BYTES];

	rep_cmd_init(&c, "XREVRANGE");
	rep_cmd_arg(&c, logk);
	rep_cmd_arg(&c, "+");
	rep_cmd_arg(&c, "-");
	rep_cmd_arg(&c, "COUNT");
	rep_cmd_arg(&c, "1");
	if (rep_link_pipeline(l, 1, &c, &r) != 1)
		return -1;
	if (!usable(r))
		return refuse(l, r, "XREVRANGE");
	/* An empty stream: "0-1", not "0-0", which means "never loaded". */
	if (!range_id(r, top, sizeof(top)))
		snprintf(top, sizeof(top), "0-1");
	freeReplyObject(r);
	return rep_mirror_load_begin(m, top);
}

/* The run id in a reply to INFO server, "" when there is none (INFO denied by an ACL). */
static void run_id_of(const redisReply *r, char *buf, size_t size)
{
	const char *p = r->type == REDIS_REPLY_STRING && r->str ? strstr(r->str, "run_id:") : NULL;
	size_t n = p ? strspn(p + 7, "0123456789abcdef") : 0;
	if (n >= size)
		n = 0;
	memcpy(buf, p ? p + 7 : "", n);
	buf[n] = '\0';
}

/*
 * One HSCAN chunk of the snapshot into the mirror, with the cursor reached.
 * A cursor is good only on the Redis process that gave it (see
 * rep_mirror_load_server). A connection stays with one process, so on a
 * new one (fresh) INFO server goes in the same round trip as the chunk,
 * and a chunk from another process than the cursor's is dropped and the
 * scan starts again; the other chunks cost no more than before (INFO's
 * reply is about a kilobyte, on links where that counts).
 */
static int load_chunk(rep_link_t *l, rep_mirror_t *m, const char *statek, const rep_bl_conf_t *bc,
                      const rep_load_t *ls, bool fresh)
{
	rep_cmd_t cs[2];
	redisReply *rs[2] = {NULL, NULL}, *r;
	char count[16], max[16], id[sizeof(ls->server)];
	int rc = -1, moved, nc = fresh ? 2 : 1;
	rep_cmd_t *scan = &cs[nc - 1];

	snprintf(count, sizeof(count), "%ld", bc->batch);
	snprintf(max, sizeof(max), "%d", (int)REP_SOP_MAX_BYTES);
	if (fresh) {
		rep_cmd_init(&cs[0], "INFO");
		rep_cmd_arg(&cs[0], "server");
	}
	rep_cmd_init(scan, "EVAL");
	rep_cmd_arg(scan, snapshot_scan_script);
	rep_cmd_arg(scan, "1");
	rep_cmd_arg(scan, statek);
	rep_cmd_arg(scan, ls->cursor);
	rep_cmd_arg(scan, count);
	rep_cmd_arg(scan, max);
	if (rep_link_pipeline(l, (size_t)nc, cs, rs) != nc) {
		rep_link_free_replies((size_t)nc, rs);
		return -1;
	}
	r = rs[nc - 1];
	if (fresh) {
		run_id_of(rs[0], id, sizeof(id));
		freeReplyObject(rs[0]);
		if ((moved = rep_mirror_load_server(m, id)) != 0) {
			if (moved > 0)
				log_msg(LOG_L_NOTICE,
				        "rep: block list load: another Redis process answers (%s): "
				        "the snapshot scan starts again",
				        rep_link_addr(l));
			freeReplyObject(r);
			return moved > 0 ? 0 : -1;
		}
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY)
		return refuse(l, r, "HSCAN");
	const redisReply *kv = r->element[1];
	size_t n = kv->elements / 2, k = 0;
	rep_entry_t *e = calloc(n ? n : 1, sizeof(*e));
	if (e != NULL) {
		for (size_t i = 0; i < n; i++) {
			const redisReply *kk = kv->element[2 * i], *vv = kv->element[2 * i + 1];
			char tgt[REP_DOMAIN_MAX_BYTES];
			rep_op_t op;
			rep_sop_status_t st;
			if (kk->type != REDIS_REPLY_STRING || vv->type != REDIS_REPLY_STRING)
				continue;
			st = rep_sop_decode(vv->str, vv->len, bc, &op);
			/* The field must name what the signed entry names: no borrowed signatures.
			 */
			if (st == REP_SOP_OK &&
			    (op.del || rep_target_format(&op.e.target, tgt, sizeof(tgt)) < 0 ||
			     strcmp(tgt, kk->str) != 0))
				st = REP_SOP_MALFORMED;
			if (st == REP_SOP_OK)
				e[k++] = op.e;
			else if (!trust_nothing(bc))
				note_reject(false, kk->str, &op, st);
		}
		rc = rep_mirror_load_chunk(m, e, k, r->element[0]->str) < 0 ? -1 : (int)n;
		free(e);
	}
	freeReplyObject(r);
	return rc;
}

/* Applies stream entries ([id, [field, value, ...]] each); the number handled, or -1. */
static int apply_entries(rep_mirror_t *m, const redisReply *es, const rep_bl_conf_t *bc)
{
	rep_op_t *ops = calloc(es->elements ? es->elements : 1, sizeof(*ops));
	size_t k = 0;
	if (ops == NULL)
		return -1;
	/* A rejected entry is still passed on (as a skip), or we would read it forever. */
	for (size_t i = 0; i < es->elements; i++)
		if (parse_entry(es->element[i], bc, &ops[k]) == 0)
			k++;
	int a = rep_mirror_apply(m, ops, k);
	free(ops);
	return a < 0 ? -1 : (int)k;
}

/* The entries after last, without waiting, through stream_read_script. */
static int read_bounded(rep_link_t *l, rep_mirror_t *m, const char *logk, const rep_bl_conf_t *bc,
                        const char *last)
{
	unsigned long long ms = 0, seq = 0;
	char from[REP_ID_MAX_BYTES + 8], count[16], max[16];
	rep_cmd_t c;
	redisReply *r;
	int handled = 0;

	/* The first id after last ("(" exclusive ranges need Redis 6.2). */
	sscanf(last, "%llu-%llu", &ms, &seq);
	if (seq == ULLONG_MAX)
		snprintf(from, sizeof(from), "%llu-0", ms + 1);
	else
		snprintf(from, sizeof(from), "%llu-%llu", ms, seq + 1);
	snprintf(count, sizeof(count), "%ld", bc->batch);
	snprintf(max, sizeof(max), "%d", (int)REP_SOP_MAX_BYTES);
	rep_cmd_init(&c, "EVAL");
	rep_cmd_arg(&c, stream_read_script);
	rep_cmd_arg(&c, "1");
	rep_cmd_arg(&c, logk);
	rep_cmd_arg(&c, from);
	rep_cmd_arg(&c, count);
	rep_cmd_arg(&c, max);
	if (rep_link_pipeline(l, 1, &c, &r) != 1)
		return -1;
	if (r->type == REDIS_REPLY_ARRAY)
		handled = apply_entries(m, r, bc);
	freeReplyObject(r);
	return handled;
}

/*
 * Whether the stream still holds every entry ever added to it (XINFO
 * STREAM, Redis 7: entries-added equals length): 1 yes, 0 no or unknown
 * (an older Redis), -1 when the link failed.
 */
static int stream_whole(rep_link_t *l, const char *logk)
{
	rep_cmd_t c;
	redisReply *r;
	long long added = -1, len = -2;

	rep_cmd_init(&c, "XINFO");
	rep_cmd_arg(&c, "STREAM");
	rep_cmd_arg(&c, logk);
	c.key = 2;
	if (rep_link_pipeline(l, 1, &c, &r) != 1)
		return -1;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_INTEGER)
			continue;
		if (strcmp(k->str, "entries-added") == 0)
			added = v->integer;
		else if (strcmp(k->str, "length") == 0)
			len = v->integer;
	}
	freeReplyObject(r);
	return added == len;
}

/*
 * On a fresh connection: compare the mirror's position with the stream.
 * Costs one round trip per (re)connection, not per sync round.
 */
static int check_position(rep_link_t *l, rep_mirror_t *m, const char *logk, const char *last)
{
	rep_cmd_t c[2];
	redisReply *r[2];
	char first[REP_ID_MAX_BYTES], top[REP_ID_MAX_BYTES];
	bool have_first, have_top;

	if (strcmp(last, "0-0") == 0)
		return begin_load(l, m, logk);
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
	if (rep_link_pipeline(l, 2, c, r) != 2) {
		rep_link_free_replies(2, r);
		return -1;
	}
	for (int i = 0; i < 2; i++)
		if (!usable(r[i])) {
			freeReplyObject(r[1 - i]);
			return refuse(l, r[i], i ? "XREVRANGE" : "XRANGE");
		}
	have_first = range_id(r[0], first, sizeof(first));
	have_top = range_id(r[1], top, sizeof(top));
	rep_link_free_replies(2, r);

	if (!have_top || rep_id_cmp(last, top) > 0) {
		/*
		 * Redis lost data (restarted without persistence, or a failover to
		 * a stale replica). Our mirror is the better copy: keep it, and
		 * follow whatever is appended from now on.
		 */
		return rep_mirror_set_last_id(m, have_top ? top : "0-1");
	}
	if (have_first && rep_id_cmp(last, first) < 0) {
		/*
		 * The stream starts after our position. Trimmed past it: load the
		 * snapshot. But a stream that never lost an entry was not trimmed:
		 * Redis lost its data and publishers have begun a new stream, whose
		 * snapshot holds only what came since; loading it would drop every
		 * other entry of the mirror. Keep the mirror and read the new stream
		 * from its start (all its ids are past ours).
		 */
		int whole = stream_whole(l, logk);
		if (whole < 0)
			return -1;
		if (whole == 0)
			return begin_load(l, m, logk);
	}
	return 0;
}

int rep_bl_sync(rep_link_t *l, rep_mirror_t *m, const char *prefix, const rep_bl_conf_t *bc,
                long block_ms)
{
	char logk[REP_KEY_MAX_BYTES], statek[REP_KEY_MAX_BYTES], last[REP_ID_MAX_BYTES];
	char count[16], block[32], fp[64];
	bool fresh;
	rep_cmd_t c;
	redisReply *r;
	rep_load_t ls;
	int handled = 0, st;

	rep_bl_keys(prefix, logk, statek, sizeof(logk));
	rep_mirror_set_tombstone_time(m, bc->tombstone_s);
	trust_nothing(bc);
	if (rep_link_get(l) == NULL)
		return -1;
	fresh = rep_link_take_fresh(l);
	rep_bl_conf_fingerprint(bc, fp, sizeof(fp));
	if (rep_mirror_trust_changed(m, fp) == 1)
		fresh = true;
	if ((st = rep_mirror_load_state(m, &ls)) < 0 ||
	    rep_mirror_last_id(m, last, sizeof(last)) < 0)
		return -1;
	if (st == 0 && fresh) {
		/* A failure failed the link too: the next connection checks again. */
		if (check_position(l, m, logk, last) < 0 ||
		    (st = rep_mirror_load_state(m, &ls)) < 0)
			return -1;
		rep_mirror_last_id(m, last, sizeof(last));
	}
	/* Loading: one chunk per step, so a cut costs at most one chunk. */
	if (st == 1)
		return load_chunk(l, m, statek, bc, &ls, fresh);
	if (fresh)
		return read_bounded(l, m, logk, bc, last);

	snprintf(count, sizeof(count), "%ld", bc->batch);
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
	if (!usable(r))
		return refuse(l, r, "XREAD");
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2 &&
	    r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
		handled = apply_entries(m, r->element[0]->element[1], bc);
	freeReplyObject(r);
	return handled;
}
