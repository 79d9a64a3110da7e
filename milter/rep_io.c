/*
 * rep_io.c - reading and writing the reputation counters: one pipelined
 * round trip for a batch of reads, one idempotent script call per batch of
 * aggregated writes (one per hash slot on a Redis Cluster).
 */
#include "config.h"

#include "rep.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * One call applies a whole batch, at most once per batch id. Done in Lua
 * rather than as HINCRBYFLOAT because the decay needs the stored time: a
 * client read-modify-write would race with the other nodes. The batch key
 * is set first (SET NX EX): a batch re-sent after a lost reply finds it
 * and changes nothing, so a cut link never counts twice; it lives a day,
 * longer than any re-send of a frozen batch is expected to take. An
 * increment older than the stored clock (a replay after an outage) is
 * added already decayed, so replays count as much as they would have on
 * time.
 *   KEYS[1] the batch key, KEYS[2..] the entities;
 *   ARGV[1] the batch's time (unix s), ARGV[2] half-life s, ARGV[3] ttl s,
 *   ARGV[4..] the increments of the keys in order, as runs: "spam:ham"
 *   for one key (an empty side is 0: "3" is three spam, ":1" one ham),
 *   "<n>*spam:ham" for the next n keys. Most entities of a window get the
 *   same "1" or ":1", so the keys are sorted by increment and a run costs
 *   a few bytes whatever its length.
 * A key that holds another type is skipped (pcall): redis.call would end
 * the script there, after the batch key, and the batch counts as applied,
 * so every entity after it in the batch lost its increments.
 */
const char rep_incr_script[] =
    "if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', 86400) then return 0 end\n"
    "local at = tonumber(ARGV[1])\n"
    "local hl = tonumber(ARGV[2])\n"
    "local k = 2\n"
    "for r = 4, #ARGV do\n"
    "  local cnt, inc = string.match(ARGV[r], '^(%d+)%*(.*)$')\n"
    "  if not cnt then cnt, inc = 1, ARGV[r] end\n"
    "  local a, b = string.match(inc, '^([^:]*):?(.*)$')\n"
    "  local ds = tonumber(a) or 0\n"
    "  local dh = tonumber(b) or 0\n"
    "  for j = 1, tonumber(cnt) do\n"
    "    local v = redis.pcall('HMGET', KEYS[k], 's', 'h', 't')\n"
    "    if not v.err then\n"
    "    local s = tonumber(v[1]) or 0\n"
    "    local h = tonumber(v[2]) or 0\n"
    "    local t = tonumber(v[3]) or at\n"
    "    if at >= t then\n"
    "      local f = 2 ^ (-(at - t) / hl)\n"
    "      s = s * f + ds\n"
    "      h = h * f + dh\n"
    "      t = at\n"
    "    else\n"
    "      local f = 2 ^ (-(t - at) / hl)\n"
    "      s = s + ds * f\n"
    "      h = h + dh * f\n"
    "    end\n"
    "    redis.call('HSET', KEYS[k], 's', string.format('%.6f', s), 'h',"
    " string.format('%.6f', h), 't', string.format('%d', t))\n"
    "    redis.call('EXPIRE', KEYS[k], ARGV[3])\n"
    "    end\n"
    "    k = k + 1\n"
    "  end\n"
    "end\n"
    "return k - 2\n";

/* The hash tag of a key with its braces ("{ip:192.0.2.1}"), or the whole key. */
static void key_tag(const char *key, char *buf, size_t size)
{
	const char *o = strchr(key, '{'), *c = o ? strchr(o + 1, '}') : NULL;
	size_t n;
	if (c && c > o + 1) {
		n = (size_t)(c - o + 1);
		if (n >= size)
			n = size - 1;
		memcpy(buf, o, n);
		buf[n] = '\0';
		return;
	}
	n = strlen(key);
	if (n + 3 > size)
		n = size - 3;
	buf[0] = '{';
	memcpy(buf + 1, key, n);
	buf[n + 1] = '}';
	buf[n + 2] = '\0';
}

/* A count in as few bytes as it takes: "3", "0.5", "2.125" (three decimals at most). */
static void fmt_count(char *buf, size_t size, double v)
{
	snprintf(buf, size, "%.3f", v);
	char *dot = strchr(buf, '.');
	if (dot) {
		char *e = buf + strlen(buf) - 1;
		while (e > dot && *e == '0')
			*e-- = '\0';
		if (e == dot)
			*e = '\0';
	}
}

/* "spam:ham", leaving out what is zero: "3", ":1", "2:1". */
static void fmt_incr(char *buf, size_t size, double spam, double ham)
{
	char s[24] = "", h[24] = "";
	if (spam >= 0.0005)
		fmt_count(s, sizeof(s), spam);
	if (ham >= 0.0005)
		fmt_count(h, sizeof(h), ham);
	if (h[0] == '\0')
		snprintf(buf, size, "%s", s[0] ? s : "0");
	else
		snprintf(buf, size, "%s:%s", s, h);
}

struct wslot {
	unsigned slot;
	size_t idx;
	const char *incr;
};

/* By slot (one call each), then by increment (runs), then as queued: deterministic. */
static int by_slot(const void *a, const void *b)
{
	const struct wslot *x = a, *y = b;
	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	int c = strcmp(x->incr, y->incr);
	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static size_t resp_bytes(int argc, const size_t *len)
{
	char tmp[32];
	size_t n = (size_t)snprintf(tmp, sizeof(tmp), "*%d\r\n", argc);
	for (int i = 0; i < argc; i++)
		n += (size_t)snprintf(tmp, sizeof(tmp), "$%zu\r\n", len[i]) + len[i] + 2;
	return n;
}

int rep_write_batch(rep_link_t *l, rep_wqueue_t *q, const rep_wconf_t *wc, size_t *sent_bytes)
{
	enum { FIXED_ARGS = 8 }; /* EVALSHA sha numkeys batchkey ... now hl ttl */
	rep_wentry_t *e;
	uint64_t seq;
	int64_t at;
	size_t n;

	if (sent_bytes)
		*sent_bytes = 0;
	if (rep_wqueue_due_ms(q, wc->window_ms) != 0 && !(wc->force && rep_wqueue_len(q) > 0))
		return 0;
	if (rep_link_get(l) == NULL)
		return -1;
	/* Writer thread only, one batch at a time: the milter threads never get here. */
	e = malloc(REP_WRITE_BATCH_MAX * sizeof(*e));
	if (e == NULL)
		return -1;
	n = rep_wqueue_batch(q, wc->window_ms, wc->force, e, REP_WRITE_BATCH_MAX, &seq, &at);
	if (n == 0) {
		free(e);
		return 0;
	}
	/* Everything below is a pure function of the frozen batch: a re-send is the same call. */
	struct wslot *ws = malloc(n * sizeof(*ws));
	char(*incr)[48] = malloc(n * sizeof(*incr));
	char(*runs)[64] = malloc(n * sizeof(*runs));
	size_t nrun = 0;
	size_t maxargs = 2 * n + FIXED_ARGS * n;
	const char **argv = malloc(maxargs * sizeof(*argv));
	size_t *len = malloc(maxargs * sizeof(*len));
	rep_cmd_t *cmds = malloc(n * sizeof(*cmds));
	redisReply **replies = malloc(n * sizeof(*replies));
	char(*bkey)[2 * REP_KEY_MAX_BYTES] = malloc(n * sizeof(*bkey));
	int rc = -1;
	if (!ws || !incr || !runs || !argv || !len || !cmds || !replies || !bkey)
		goto out;
	bool cluster = rep_link_is_cluster(l);
	for (size_t i = 0; i < n; i++) {
		rep_counts_t c = e[i].c;
		rep_counts_decay(&c, at, wc->half_life_s);
		fmt_incr(incr[i], sizeof(incr[i]), c.spam, c.ham);
		ws[i].slot = cluster ? rep_key_slot(e[i].key, strlen(e[i].key)) : 0;
		ws[i].idx = i;
		ws[i].incr = incr[i];
	}
	qsort(ws, n, sizeof(*ws), by_slot);
	char now_s[24], hl_s[24], ttl_s[24];
	snprintf(now_s, sizeof(now_s), "%" PRId64, at);
	snprintf(hl_s, sizeof(hl_s), "%.0f", wc->half_life_s > 1 ? wc->half_life_s : 1);
	snprintf(ttl_s, sizeof(ttl_s), "%ld", wc->ttl_s > 0 ? wc->ttl_s : 1);
	const char *sha = rep_link_script_sha(l);
	size_t ng = 0, na = 0, bytes = 0;
#define ARG(s, n_) (argv[na] = (s), len[na] = (n_), na++)
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && ws[j].slot == ws[i].slot)
			j++;
		/* One call per hash slot (all of them in one on a single Redis). */
		char tag[REP_KEY_MAX_BYTES + 4], nk[16];
		key_tag(e[ws[i].idx].key, tag, sizeof(tag));
		snprintf(bkey[ng], sizeof(bkey[ng]), "%sb:%s:%s.%" PRIu64, wc->prefix, tag,
		         wc->node_id, seq);
		size_t first = na;
		if (sha[0]) {
			ARG("EVALSHA", 7);
			ARG(sha, strlen(sha));
		} else {
			ARG("EVAL", 4);
			ARG(rep_incr_script, strlen(rep_incr_script));
		}
		snprintf(nk, sizeof(nk), "%zu", j - i + 1);
		argv[na] = NULL; /* numkeys: filled below */
		size_t nk_at = na++;
		ARG(bkey[ng], strlen(bkey[ng]));
		for (size_t k = i; k < j; k++)
			ARG(e[ws[k].idx].key, strlen(e[ws[k].idx].key));
		ARG(now_s, strlen(now_s));
		ARG(hl_s, strlen(hl_s));
		ARG(ttl_s, strlen(ttl_s));
		for (size_t k = i; k < j;) {
			size_t r = k;
			while (r < j && strcmp(ws[r].incr, ws[k].incr) == 0)
				r++;
			char *run = runs[nrun++];
			if (r - k == 1)
				snprintf(run, sizeof(runs[0]), "%s", ws[k].incr);
			else
				snprintf(run, sizeof(runs[0]), "%zu*%s", r - k, ws[k].incr);
			ARG(run, strlen(run));
			k = r;
		}
		/* numkeys lives in the group's batch-key buffer, past the key's terminator. */
		size_t bl = strlen(bkey[ng]);
		char *nkbuf = bkey[ng] + bl + 1;
		snprintf(nkbuf, sizeof(bkey[ng]) - bl - 1, "%s", nk);
		argv[nk_at] = nkbuf;
		len[nk_at] = strlen(nkbuf);
		cmds[ng].argc = (int)(na - first);
		cmds[ng].xargv = &argv[first];
		cmds[ng].xlen = &len[first];
		bytes += resp_bytes(cmds[ng].argc, &len[first]);
		ng++;
		i = j;
	}
#undef ARG
	int got = rep_link_pipeline(l, ng, cmds, replies);
	/*
	 * TRYAGAIN: a Redis Cluster slot is being migrated and the batch key
	 * is not on the importing node yet. Not a failure of the link; the
	 * batch stays frozen and goes again once the slot has moved (the
	 * script applies each group once, so groups that did run are safe).
	 */
	bool again = false;
	for (int i = 0; i < got; i++)
		if (replies[i] && replies[i]->type == REDIS_REPLY_ERROR && replies[i]->str &&
		    strncmp(replies[i]->str, "TRYAGAIN", 8) == 0)
			again = true;
	rep_link_free_replies(ng, replies);
	if (again) {
		rc = 0;
		goto out;
	}
	if (sent_bytes)
		*sent_bytes = got >= 0 ? bytes : 0;
	/*
	 * Every call answered: the batch is done. An error reply (WRONGTYPE on a
	 * foreign key, say) counts as answered too, or one bad key would block
	 * the queue forever; the batch key was set first, so a re-send would
	 * change nothing anyway. Anything less: the batch stays frozen.
	 */
	if (got == (int)ng) {
		rep_wqueue_confirm(q, seq);
		rc = (int)n;
	}
out:
	free(ws);
	free(incr);
	free(runs);
	free(argv);
	free(len);
	free(cmds);
	free(replies);
	free(bkey);
	free(e);
	return rc;
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
		/*
		 * An error for one key (WRONGTYPE: someone else's key under our
		 * prefix) says nothing of the others read with it: that entity is
		 * unknown, the rest of the pipeline stands.
		 */
		if (r[i]->type == REDIS_REPLY_ERROR)
			continue;
		if (r[i]->type != REDIS_REPLY_ARRAY || r[i]->elements != 3) {
			rc = -1;
			continue;
		}
		redisReply **e = r[i]->element;
		if (e[0]->type != REDIS_REPLY_STRING && e[1]->type != REDIS_REPLY_STRING)
			continue;
		out[i].spam = e[0]->type == REDIS_REPLY_STRING ? strtod(e[0]->str, NULL) : 0;
		out[i].ham = e[1]->type == REDIS_REPLY_STRING ? strtod(e[1]->str, NULL) : 0;
		out[i].t = e[2]->type == REDIS_REPLY_STRING ? strtoll(e[2]->str, NULL, 10) : 0;
		/* "nan" or "inf" counts would make a NaN score that escapes rep_max_score. */
		if (!isfinite(out[i].spam) || !isfinite(out[i].ham)) {
			memset(&out[i], 0, sizeof(out[i]));
			continue;
		}
		found[i] = true;
	}
	rep_link_free_replies(n, r);
	free(cmds);
	free(r);
	return rc;
}
