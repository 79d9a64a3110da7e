/*
 * rep_io.c - reading and writing the reputation counters: one pipelined
 * round trip for a message's reads, one for a batch of queued writes.
 */
#include "config.h"

#include "rep.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum { IO_MAX_BATCH = 512 };

/*
 * Decay and increment in one atomic step on the server. Done in Lua rather
 * than as HINCRBYFLOAT because the decay needs the stored time: a client
 * read-modify-write would race with the other nodes. An observation older
 * than the stored clock (a replay after an outage) is added already
 * decayed, so replays count as much as they would have on time.
 *   KEYS[1] the entity; ARGV: at, half-life s, spam, ham, ttl s.
 */
const char rep_incr_script[] =
    "local v = redis.call('HMGET', KEYS[1], 's', 'h', 't')\n"
    "local at = tonumber(ARGV[1])\n"
    "local hl = tonumber(ARGV[2])\n"
    "local s = tonumber(v[1]) or 0\n"
    "local h = tonumber(v[2]) or 0\n"
    "local t = tonumber(v[3]) or at\n"
    "local ds = tonumber(ARGV[3])\n"
    "local dh = tonumber(ARGV[4])\n"
    "if at >= t then\n"
    "  local f = 2 ^ (-(at - t) / hl)\n"
    "  s = s * f + ds\n"
    "  h = h * f + dh\n"
    "  t = at\n"
    "else\n"
    "  local f = 2 ^ (-(t - at) / hl)\n"
    "  s = s + ds * f\n"
    "  h = h + dh * f\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 's', string.format('%.6f', s), 'h', string.format('%.6f', h),"
    " 't', string.format('%d', t))\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
    "return 1\n";

/* The argument strings of one EVALSHA, kept alive while the pipeline is built. */
struct wargs {
	char at[24], hl[32], s[32], h[32], ttl[24];
};

static int by_key(const void *a, const void *b)
{
	const rep_witem_t *x = *(const rep_witem_t *const *)a, *y = *(const rep_witem_t *const *)b;
	int c = strcmp(x->key, y->key);
	return c ? c : (x->seq < y->seq ? -1 : x->seq > y->seq);
}

int rep_write_batch(rep_link_t *l, rep_wqueue_t *q, size_t max_batch, double half_life_s,
                    long ttl_s)
{
	rep_witem_t *items, **sorted;
	struct wargs *args;
	rep_cmd_t *cmds;
	size_t *gstart;
	redisReply **replies;
	uint64_t *seqs;
	size_t n, ng = 0;
	int got;

	if (max_batch == 0 || max_batch > IO_MAX_BATCH)
		max_batch = IO_MAX_BATCH;
	if (rep_wqueue_len(q) == 0)
		return 0;
	if (rep_link_get(l) == NULL)
		return -1;
	/* One allocation per batch, in the writer thread only; the milter threads never get here.
	 */
	size_t one = sizeof(*items) + sizeof(*sorted) + sizeof(*args) + sizeof(*cmds) +
	             sizeof(*gstart) + sizeof(*replies) + sizeof(*seqs);
	char *mem = malloc(max_batch * one + 16 * 8), *p = mem;
	if (mem == NULL)
		return -1;
#define CARVE(ptr) (ptr = (void *)p, p += max_batch * sizeof(*ptr))
	CARVE(items);
	CARVE(cmds);
	CARVE(args);
	CARVE(sorted);
	CARVE(gstart);
	CARVE(replies);
	CARVE(seqs);
#undef CARVE
	n = rep_wqueue_peek(q, items, max_batch);
	if (n == 0) {
		free(mem);
		return 0;
	}
	/*
	 * Merge the updates of one entity into one call: after an outage, or in
	 * a spam wave from one network, most of a batch is the same few keys,
	 * and on a thin link the bytes are what costs. Each update is decayed to
	 * the group's newest time first, so merging changes no count.
	 */
	for (size_t i = 0; i < n; i++)
		sorted[i] = &items[i];
	qsort(sorted, n, sizeof(*sorted), by_key);
	const char *sha = rep_link_script_sha(l);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		int64_t at = sorted[i]->t;
		while (j < n && strcmp(sorted[j]->key, sorted[i]->key) == 0) {
			if (sorted[j]->t > at)
				at = sorted[j]->t;
			j++;
		}
		double ds = 0, dh = 0;
		for (size_t k = i; k < j; k++) {
			double f = rep_decay_factor((double)(at - sorted[k]->t), half_life_s);
			ds += sorted[k]->spam * f;
			dh += sorted[k]->ham * f;
		}
		struct wargs *a = &args[ng];
		rep_cmd_t *c = &cmds[ng];
		gstart[ng++] = i;
		snprintf(a->at, sizeof(a->at), "%" PRId64, at);
		snprintf(a->hl, sizeof(a->hl), "%.0f", half_life_s > 1 ? half_life_s : 1);
		snprintf(a->s, sizeof(a->s), "%.6f", ds);
		snprintf(a->h, sizeof(a->h), "%.6f", dh);
		snprintf(a->ttl, sizeof(a->ttl), "%ld", ttl_s > 0 ? ttl_s : 1);
		if (sha[0]) {
			rep_cmd_init(c, "EVALSHA");
			rep_cmd_arg(c, sha);
		} else {
			rep_cmd_init(c, "EVAL");
			rep_cmd_arg(c, rep_incr_script);
		}
		rep_cmd_arg(c, "1");
		rep_cmd_arg(c, sorted[i]->key);
		rep_cmd_arg(c, a->at);
		rep_cmd_arg(c, a->hl);
		rep_cmd_arg(c, a->s);
		rep_cmd_arg(c, a->h);
		rep_cmd_arg(c, a->ttl);
		i = j;
	}
	got = rep_link_pipeline(l, ng, cmds, replies);
	rep_link_free_replies(ng, replies);
	/*
	 * Replies come in order: the first `got` calls ran. A reply that is an
	 * error (WRONGTYPE on a foreign key, say) is acked too, or one bad key
	 * would block the queue forever. Calls sent but not answered stay
	 * queued and may be counted twice after a link cut: at-least-once.
	 */
	size_t nseq = 0;
	for (size_t g = 0; got > 0 && g < (size_t)got; g++) {
		size_t end = g + 1 < ng ? gstart[g + 1] : n;
		for (size_t k = gstart[g]; k < end; k++)
			seqs[nseq++] = sorted[k]->seq;
	}
	if (nseq > 0)
		rep_wqueue_ack_seqs(q, seqs, nseq);
	free(mem);
	return got == (int)ng ? (int)n : -1;
}

int rep_read_counts(rep_link_t *l, size_t n, const char *const *keys, rep_counts_t *out,
                    bool *found)
{
	rep_cmd_t *cmds;
	redisReply **r;
	int rc = 0;

	if (n == 0)
		return 0;
	/* The reader thread batches many connections' reads into one pipeline: size is free. */
	cmds = malloc(n * sizeof(*cmds));
	r = malloc(n * sizeof(*r));
	if (cmds == NULL || r == NULL) {
		free(cmds);
		free(r);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		rep_cmd_init(&cmds[i], "HMGET");
		rep_cmd_arg(&cmds[i], keys[i]);
		rep_cmd_arg(&cmds[i], "s");
		rep_cmd_arg(&cmds[i], "h");
		rep_cmd_arg(&cmds[i], "t");
		found[i] = false;
		memset(&out[i], 0, sizeof(out[i]));
	}
	if (rep_link_pipeline(l, n, cmds, r) != (int)n) {
		rep_link_free_replies(n, r);
		free(cmds);
		free(r);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (r[i]->type != REDIS_REPLY_ARRAY || r[i]->elements != 3) {
			rc = -1;
			continue;
		}
		redisReply **e = r[i]->element;
		if (e[0]->type != REDIS_REPLY_STRING && e[1]->type != REDIS_REPLY_STRING)
			continue;
		found[i] = true;
		out[i].spam = e[0]->type == REDIS_REPLY_STRING ? strtod(e[0]->str, NULL) : 0;
		out[i].ham = e[1]->type == REDIS_REPLY_STRING ? strtod(e[1]->str, NULL) : 0;
		out[i].t = e[2]->type == REDIS_REPLY_STRING ? strtoll(e[2]->str, NULL, 10) : 0;
	}
	rep_link_free_replies(n, r);
	free(cmds);
	free(r);
	return rc;
}
