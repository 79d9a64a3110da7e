/*
 * rules_qa.c - labelled mail through the whole pipeline, in parallel, and
 * the per-rule report of `sift rules qa` (SpamAssassin's masscheck and
 * hit-frequencies, built in). `sift rules fit` (rules_fit.c) fits scores to
 * the same per-message evidence.
 */
#include "config.h"

#include "rules_qa.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rules_fit.h"
#include "xalloc.h"

#define QA_MAX_WALK_DEPTH 16
#define QA_MAX_THREADS    256
#define QA_LINE_BYTES     8192

rules_qa_set_t *rules_qa_set_new(void)
{
	return xalloc_calloc(1, sizeof(rules_qa_set_t));
}

void rules_qa_set_free(rules_qa_set_t *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->msg[i].path);
		free(s->msg[i].feat);
	}
	for (size_t j = 0; j < s->nfeat; j++) {
		free(s->feat[j].name);
		free(s->feat[j].source);
	}
	free(s->msg);
	free(s->feat);
	free(s);
}

static void add_msg(rules_qa_set_t *s, const char *path, bool spam, int fold)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 256;
		s->msg = xalloc_realloc(s->msg, s->cap * sizeof(*s->msg));
	}
	rules_qa_msg_t *m = &s->msg[s->n++];
	memset(m, 0, sizeof(*m));
	m->path = xalloc_strdup(path);
	m->spam = spam;
	m->fold = fold;
	m->bayes_p = NAN;
}

int rules_qa_parse_folds(const char *spec, unsigned long long *mask)
{
	*mask = 0;
	const char *p = spec;
	while (*p) {
		char *end;
		long a = strtol(p, &end, 10), b;
		if (end == p || a < 0 || a > 63)
			return -1;
		b = a;
		p = end;
		if (*p == '-') {
			b = strtol(p + 1, &end, 10);
			if (end == p + 1 || b < a || b > 63)
				return -1;
			p = end;
		}
		for (long f = a; f <= b; f++)
			*mask |= 1ULL << f;
		if (*p == ',')
			p++;
		else if (*p)
			return -1;
	}
	return *mask ? 0 : -1;
}

/* Whether name is one of the comma-separated words of list. */
static bool in_list(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && strncmp(p, name, n) == 0)
			return true;
		p += len + (e != NULL);
	}
	return false;
}

int rules_qa_add_manifest(rules_qa_set_t *s, const char *manifest, const char *root,
                          const char *folds, const char *groups, char *err, size_t errlen)
{
	unsigned long long mask = ~0ULL;
	if (folds != NULL && rules_qa_parse_folds(folds, &mask) < 0) {
		snprintf(err, errlen, "bad fold list '%s' (e.g. 0-6 or 1,3,5-7)", folds);
		return -1;
	}
	FILE *fp = fopen(manifest, "r");
	if (fp == NULL) {
		snprintf(err, errlen, "%s: %s", manifest, strerror(errno));
		return -1;
	}
	char line[QA_LINE_BYTES], path[QA_LINE_BYTES];
	unsigned ln = 0;
	int rc = 0;
	while (fgets(line, sizeof(line), fp) != NULL) {
		ln++;
		line[strcspn(line, "\r\n")] = '\0';
		if (ln == 1 && strncmp(line, "path\t", 5) == 0)
			continue;
		if (line[0] == '\0' || line[0] == '#')
			continue;
		char *f[6];
		size_t nf = 0;
		for (char *p = line; nf < 6;) {
			f[nf++] = p;
			p = strchr(p, '\t');
			if (p == NULL)
				break;
			*p++ = '\0';
		}
		char *end;
		long fold = nf == 6 ? strtol(f[5], &end, 10) : -1;
		if (nf < 6 || end == f[5] || *end || fold < 0 || fold > 63 ||
		    (strcmp(f[1], "spam") != 0 && strcmp(f[1], "ham") != 0)) {
			snprintf(
			    err, errlen,
			    "%s:%u: expected 'path label group bytes md5 fold' (label spam|ham, "
			    "fold 0-63)",
			    manifest, ln);
			rc = -1;
			break;
		}
		if (!(mask & (1ULL << fold)) || (groups != NULL && !in_list(groups, f[2])))
			continue;
		snprintf(path, sizeof(path), "%s/%s", root, f[0]);
		add_msg(s, path, f[1][0] == 's', (int)fold);
	}
	fclose(fp);
	return rc;
}

struct dir_walk {
	rules_qa_set_t *s;
	bool spam;
	char *err;
	size_t errlen;
	int rc;
};

static int dir_visit(const char *file, void *ud)
{
	struct dir_walk *w = ud;
	add_msg(w->s, file, w->spam, -1);
	return 0;
}

static void dir_fail(const char *path, int e, void *ud)
{
	struct dir_walk *w = ud;
	snprintf(w->err, w->errlen, "%s: %s", path,
	         e == ELOOP ? "directories nested too deep" : strerror(e));
	w->rc = -1;
}

int rules_qa_add_dir(rules_qa_set_t *s, const char *dir, bool spam, char *err, size_t errlen)
{
	struct dir_walk w = {s, spam, err, errlen, 0};
	scan_walk(dir, QA_MAX_WALK_DEPTH, dir_visit, dir_fail, &w);
	return w.rc;
}

/* ------------------------------------------------------------ the run */

struct run {
	rules_qa_set_t *s;
	scan_gen_t *g;
	bool timing;
	atomic_size_t next;
};

static void score_one(struct run *run, rules_qa_msg_t *qm)
{
	size_t len;
	char *data = scan_read_file(qm->path, &len);
	if (data == NULL)
		return;
	ev_conn_info_t ci = {NULL, NULL};
	scan_conn_t *c = scan_conn_begin(run->g, &ci);
	msg_t *m = scan_msg_new(c);
	scan_msg_raw(c, m, data, len);
	free(data);
	/* As `sift check` does offline: the envelope sender is the recorded Return-Path. */
	const char *rp = msg_header_get(m, "Return-Path", 0);
	if (rp != NULL)
		msg_set_mail_from(m, rp);
	scan_envelope(c, m);
	scan_opts_t so = {.explain = false, .timing = run->timing};
	scan_result_t *r = scan_score(c, m, &so);
	qm->score = r->score;
	double p;
	if (hits_metric(r->hits, "bayes_prob", &p))
		qm->bayes_p = p;
	size_t n = hits_count(r->hits);
	qm->names = xalloc_calloc(n + 1, sizeof(char *));
	qm->sources = xalloc_calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		const hit_t *h = hits_at(r->hits, i);
		qm->names[i] = xalloc_strdup(h->name);
		qm->sources[i] = xalloc_strdup(h->source);
	}
	qm->nnames = n;
	qm->ok = true;
	msg_free(m);
	scan_conn_end(c);
}

static void *worker(void *arg)
{
	struct run *run = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&run->next, 1);
		if (i >= run->s->n)
			break;
		score_one(run, &run->s->msg[i]);
	}
	return NULL;
}

/* Open-addressing name -> feature index, for interning after the run. */
struct intern {
	size_t *slot; /* index + 1, 0 empty */
	size_t cap;
};

static size_t hash_str(const char *s)
{
	size_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static size_t intern(rules_qa_set_t *s, struct intern *t, const char *name, const char *source)
{
	if (2 * (s->nfeat + 1) > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 1024;
		size_t *slot = xalloc_calloc(cap, sizeof(size_t));
		for (size_t j = 0; j < s->nfeat; j++) {
			size_t k = hash_str(s->feat[j].name) & (cap - 1);
			while (slot[k])
				k = (k + 1) & (cap - 1);
			slot[k] = j + 1;
		}
		free(t->slot);
		t->slot = slot;
		t->cap = cap;
	}
	size_t k = hash_str(name) & (t->cap - 1);
	while (t->slot[k]) {
		if (strcmp(s->feat[t->slot[k] - 1].name, name) == 0)
			return t->slot[k] - 1;
		k = (k + 1) & (t->cap - 1);
	}
	if (s->nfeat == s->capfeat) {
		s->capfeat = s->capfeat ? s->capfeat * 2 : 256;
		s->feat = xalloc_realloc(s->feat, s->capfeat * sizeof(*s->feat));
	}
	s->feat[s->nfeat].name = xalloc_strdup(name);
	s->feat[s->nfeat].source = xalloc_strdup(source);
	t->slot[k] = ++s->nfeat;
	return s->nfeat - 1;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

int rules_qa_run(rules_qa_set_t *s, scan_gen_t *g, unsigned nthreads, bool timing)
{
	if (nthreads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		nthreads = n > 0 ? (unsigned)n : 1;
	}
	if (nthreads > QA_MAX_THREADS)
		nthreads = QA_MAX_THREADS;
	struct run run = {.s = s, .g = g, .timing = timing};
	atomic_init(&run.next, 0);
	pthread_t th[QA_MAX_THREADS];
	unsigned started = 0;
	for (unsigned i = 1; i < nthreads; i++)
		if (pthread_create(&th[started], NULL, worker, &run) == 0)
			started++;
	worker(&run); /* the calling thread works too */
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);

	struct intern t = {0};
	s->failed = 0;
	for (size_t i = 0; i < s->n; i++) {
		rules_qa_msg_t *m = &s->msg[i];
		if (!m->ok) {
			s->failed++;
			continue;
		}
		m->feat = xalloc_calloc(m->nnames + 1, sizeof(size_t));
		for (size_t k = 0; k < m->nnames; k++) {
			m->feat[m->nfeat++] = intern(s, &t, m->names[k], m->sources[k]);
			free(m->names[k]);
			free(m->sources[k]);
		}
		free(m->names);
		free(m->sources);
		m->names = m->sources = NULL;
		qsort(m->feat, m->nfeat, sizeof(size_t), cmp_size);
	}
	free(t.slot);
	return 0;
}

bool rules_qa_has(const rules_qa_set_t *s, size_t i, size_t j)
{
	const rules_qa_msg_t *m = &s->msg[i];
	return bsearch(&j, m->feat, m->nfeat, sizeof(size_t), cmp_size) != NULL;
}

/* ------------------------------------------------------------ the report */

struct row {
	const char *name;
	long feat; /* index into the set's features, or -1: never hit */
	double score;
	size_t spam, ham;
	double spam_pct, ham_pct, so, rank;
	const char *overlap;
	double jaccard;
	double cpu_ms;
	unsigned long long errors;
};

static const struct row *sort_rows;

/* For the rank: a permutation sorted by one key, best first. */
static int by_so(const void *a, const void *b)
{
	const struct row *x = &sort_rows[*(const size_t *)a], *y = &sort_rows[*(const size_t *)b];
	double kx = x->score < 0 ? 1 - x->so : x->so, ky = y->score < 0 ? 1 - y->so : y->so;
	return kx > ky ? -1 : kx < ky;
}

static int by_rate(const void *a, const void *b)
{
	const struct row *x = &sort_rows[*(const size_t *)a], *y = &sort_rows[*(const size_t *)b];
	double kx = x->score < 0 ? x->ham_pct : x->spam_pct;
	double ky = y->score < 0 ? y->ham_pct : y->spam_pct;
	return kx > ky ? -1 : kx < ky;
}

static int by_rank(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	if (x->rank != y->rank)
		return x->rank > y->rank ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Ranks rows[idx[0..n)] (one sign) by S/O and by hit rate, averaged, 1 best. */
static void rank_group(struct row *rows, size_t *idx, size_t n)
{
	if (n == 0)
		return;
	sort_rows = rows;
	size_t *tmp = xalloc_calloc(n, sizeof(size_t));
	memcpy(tmp, idx, n * sizeof(size_t));
	qsort(tmp, n, sizeof(size_t), by_so);
	for (size_t k = 0; k < n; k++)
		rows[tmp[k]].rank = n > 1 ? 1.0 - (double)k / (n - 1) : 1.0;
	memcpy(tmp, idx, n * sizeof(size_t));
	qsort(tmp, n, sizeof(size_t), by_rate);
	for (size_t k = 0; k < n; k++)
		rows[tmp[k]].rank =
		    (rows[tmp[k]].rank + (n > 1 ? 1.0 - (double)k / (n - 1) : 1.0)) / 2;
	free(tmp);
}

void rules_qa_report(const rules_qa_set_t *s, const rules_t *r, FILE *fp, bool tsv)
{
	size_t nspam = 0, nham = 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->msg[i].ok)
			s->msg[i].spam ? nspam++ : nham++;
	/* Message sets per feature as bitsets, for hit counts and overlaps. */
	size_t words = (s->n + 63) / 64;
	uint64_t *bits = xalloc_calloc(s->nfeat * words + 1, sizeof(uint64_t));
	size_t *fspam = xalloc_calloc(s->nfeat + 1, sizeof(size_t));
	size_t *fham = xalloc_calloc(s->nfeat + 1, sizeof(size_t));
	for (size_t i = 0; i < s->n; i++)
		for (size_t k = 0; k < s->msg[i].nfeat; k++) {
			size_t j = s->msg[i].feat[k];
			bits[j * words + i / 64] |= 1ULL << (i % 64);
			s->msg[i].spam ? fspam[j]++ : fham[j]++;
		}
	size_t nr = r ? rules_count(r) : 0, nrows = 0;
	struct row *rows = xalloc_calloc(nr + s->nfeat + 1, sizeof(struct row));
	long *feat_row = xalloc_calloc(s->nfeat + 1, sizeof(long));
	for (size_t j = 0; j < s->nfeat; j++)
		feat_row[j] = -1;
	/* Every rule that runs and is reported, then every other hit name seen. */
	for (size_t i = 0; i < nr; i++) {
		const char *name = rules_name(r, i);
		if (!rules_runs(r, i) || strncmp(name, "__", 2) == 0 || rules_score(r, i) == 0)
			continue;
		rows[nrows] = (struct row){.name = name, .feat = -1, .score = rules_score(r, i)};
		rows[nrows].errors = rules_errors(r, i);
		nrows++;
	}
	for (size_t j = 0; j < s->nfeat; j++) {
		long ri = -1;
		if (strcmp(s->feat[j].source, "rules") == 0)
			for (size_t k = 0; k < nrows; k++)
				if (strcmp(rows[k].name, s->feat[j].name) == 0) {
					ri = (long)k;
					break;
				}
		if (ri < 0) {
			ri = (long)nrows++;
			rows[ri] = (struct row){.name = s->feat[j].name, .score = NAN};
		}
		rows[ri].feat = (long)j;
		feat_row[j] = ri;
	}
	if (r != NULL) {
		size_t nt = rules_count(r);
		rules_time_t *t = xalloc_calloc(nt + 1, sizeof(*t));
		size_t got = rules_slowest(r, t, nt);
		for (size_t k = 0; k < got; k++)
			for (size_t q = 0; q < nrows; q++)
				if (strcmp(rows[q].name, t[k].name) == 0) {
					rows[q].cpu_ms = t[k].cpu_ns / 1e6;
					break;
				}
		free(t);
	}
	for (size_t q = 0; q < nrows; q++) {
		struct row *w = &rows[q];
		if (w->feat >= 0) {
			w->spam = fspam[w->feat];
			w->ham = fham[w->feat];
		}
		w->spam_pct = nspam ? 100.0 * w->spam / nspam : 0;
		w->ham_pct = nham ? 100.0 * w->ham / nham : 0;
		w->so =
		    w->spam_pct + w->ham_pct > 0 ? w->spam_pct / (w->spam_pct + w->ham_pct) : 0.5;
		if (w->feat < 0)
			continue;
		/* The rule whose message set is most like this one's. */
		const uint64_t *a = &bits[w->feat * words];
		for (size_t j = 0; j < s->nfeat; j++) {
			if ((long)j == w->feat)
				continue;
			const uint64_t *b = &bits[j * words];
			size_t in = 0, un = 0;
			for (size_t k = 0; k < words; k++) {
				in += (size_t)__builtin_popcountll(a[k] & b[k]);
				un += (size_t)__builtin_popcountll(a[k] | b[k]);
			}
			double jac = un ? (double)in / un : 0;
			if (jac > w->jaccard) {
				w->jaccard = jac;
				w->overlap = s->feat[j].name;
			}
		}
	}
	size_t *pos = xalloc_calloc(nrows + 1, sizeof(size_t));
	size_t *neg = xalloc_calloc(nrows + 1, sizeof(size_t));
	size_t np = 0, nn = 0;
	for (size_t q = 0; q < nrows; q++) {
		if (rows[q].score < 0)
			neg[nn++] = q;
		else
			pos[np++] = q;
	}
	rank_group(rows, pos, np);
	rank_group(rows, neg, nn);
	qsort(rows, nrows, sizeof(*rows), by_rank);

	if (tsv)
		fprintf(fp, "name\tscore\tspam_hits\tham_hits\tspam_pct\tham_pct\tso\trank\toverlap"
		            "\tjaccard\tcpu_ms\terrors\n");
	else
		fprintf(fp,
		        "# %zu spam, %zu ham, %zu unreadable\n"
		        "%8s %8s %6s %5s %7s %6s %6s  %-28s %-24s %5s %8s %s\n",
		        nspam, nham, s->failed, "SPAM%", "HAM%", "S/O", "RANK", "SCORE", "SPAM",
		        "HAM", "NAME", "OVERLAP", "JACC", "CPU_ms", "ERR");
	for (size_t q = 0; q < nrows; q++) {
		const struct row *w = &rows[q];
		if (tsv)
			fprintf(fp,
			        "%s\t%g\t%zu\t%zu\t%.4f\t%.4f\t%.4f\t%.4f\t%s\t%.4f\t%.3f\t%llu\n",
			        w->name, w->score, w->spam, w->ham, w->spam_pct, w->ham_pct, w->so,
			        w->rank, w->overlap ? w->overlap : "-", w->jaccard, w->cpu_ms,
			        w->errors);
		else if (isnan(w->score)) /* another source's hit: its points are not a rule's */
			fprintf(
			    fp,
			    "%8.3f %8.3f %6.3f %5.2f %7s %6zu %6zu  %-28s %-24s %5.2f %8.2f %llu\n",
			    w->spam_pct, w->ham_pct, w->so, w->rank, "-", w->spam, w->ham, w->name,
			    w->overlap ? w->overlap : "-", w->jaccard, w->cpu_ms, w->errors);
		else
			fprintf(fp,
			        "%8.3f %8.3f %6.3f %5.2f %7.3g %6zu %6zu  %-28s %-24s %5.2f %8.2f "
			        "%llu\n",
			        w->spam_pct, w->ham_pct, w->so, w->rank, w->score, w->spam, w->ham,
			        w->name, w->overlap ? w->overlap : "-", w->jaccard, w->cpu_ms,
			        w->errors);
	}
	free(pos);
	free(neg);
	free(rows);
	free(feat_row);
	free(bits);
	free(fspam);
	free(fham);
}

/* ------------------------------------------------------------ the command */

static void rules_usage(FILE *fp)
{
	fprintf(fp,
	        "usage: sift rules qa [-r PATH]... [--tsv] [-j N] INPUT\n"
	        "       sift rules fit [-r PATH]... [-j N] [-o FILE] [--lock FILE]\n"
	        "                      [--bayes-oof FILE] [--fpr RATE] [--k N] [--bayes-clip C]\n"
	        "                      [--held-out FILE] INPUT\n"
	        "  INPUT: --manifest MANIFEST.tsv --root DIR [--folds 0-6] [--groups G,...]\n"
	        "         or --spam DIR --ham DIR (repeatable)\n");
}

int rules_qa_cli_input(rules_qa_cli_t *in, int argc, char **argv, cli_ctx_t *ctx,
                       const struct option *extra, int (*on_extra)(int, const char *, void *),
                       void *ud)
{
	static const struct option base[] = {
	    {"rules", required_argument, NULL, 'r'},  {"manifest", required_argument, NULL, 'M'},
	    {"root", required_argument, NULL, 'R'},   {"folds", required_argument, NULL, 'F'},
	    {"groups", required_argument, NULL, 'G'}, {"spam", required_argument, NULL, 'S'},
	    {"ham", required_argument, NULL, 'H'},    {"jobs", required_argument, NULL, 'j'},
	    {"tsv", no_argument, NULL, 't'}};
	struct option all[32];
	size_t n = 0;
	for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
		all[n++] = base[i];
	for (size_t i = 0; extra && extra[i].name && n < 31; i++)
		all[n++] = extra[i];
	memset(&all[n], 0, sizeof(all[n]));
	memset(in, 0, sizeof(*in));
	in->set = rules_qa_set_new();
	char err[512];
	const char *manifest = NULL, *root = NULL, *folds = NULL, *groups = NULL;
	int ch;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "r:j:o:", all, NULL)) != -1) {
		switch (ch) {
		case 'r': conf_override(ctx->conf, "rules", optarg); break;
		case 'M': manifest = optarg; break;
		case 'R': root = optarg; break;
		case 'F': folds = optarg; break;
		case 'G': groups = optarg; break;
		case 'S':
		case 'H':
			if (rules_qa_add_dir(in->set, optarg, ch == 'S', err, sizeof(err)) < 0) {
				fprintf(stderr, "sift rules: %s\n", err);
				return 1;
			}
			in->dirs = true;
			break;
		case 'j': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > QA_MAX_THREADS) {
				fprintf(stderr, "sift rules: -j wants 1 to %d\n", QA_MAX_THREADS);
				return 2;
			}
			in->threads = (unsigned)v;
			break;
		}
		case 't': in->tsv = true; break;
		default:
			if (on_extra != NULL && ch != '?' && on_extra(ch, optarg, ud) == 0)
				break;
			rules_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		rules_usage(stderr);
		return 2;
	}
	if (manifest != NULL) {
		if (root == NULL) {
			fprintf(stderr, "sift rules: --manifest needs --root\n");
			return 2;
		}
		if (rules_qa_add_manifest(in->set, manifest, root, folds, groups, err,
		                          sizeof(err)) < 0) {
			fprintf(stderr, "sift rules: %s\n", err);
			return 1;
		}
	} else if (folds != NULL || groups != NULL) {
		fprintf(stderr, "sift rules: --folds and --groups select manifest lines\n");
		return 2;
	}
	if (in->set->n == 0) {
		fprintf(stderr, "sift rules: no messages (give --manifest or --spam/--ham)\n");
		return 2;
	}
	return 0;
}

static scan_gen_t *load_gen(cli_ctx_t *ctx)
{
	ev_env_t env = {.state_dir = NULL, .offline = true};
	scan_gen_t *g = scan_gen_load(ctx->conf, NULL, &env, ctx->diag);
	ctx->conf = NULL; /* the generation owns it now, even on failure */
	if (g != NULL && scan_gen_start(g, &env, ctx->diag) != 0) {
		scan_gen_unref(g);
		g = NULL;
	}
	diag_print(ctx->diag, stderr, 0);
	return g;
}

int rules_qa_cli_score(rules_qa_cli_t *in, cli_ctx_t *ctx, bool timing)
{
	in->gen = load_gen(ctx);
	if (in->gen == NULL)
		return 1;
	rules_qa_run(in->set, in->gen, in->threads, timing);
	if (in->set->failed > 0)
		fprintf(stderr, "sift rules: %zu message(s) could not be read\n", in->set->failed);
	return 0;
}

void rules_qa_cli_done(rules_qa_cli_t *in)
{
	rules_qa_set_free(in->set);
	if (in->gen != NULL)
		scan_gen_unref(in->gen);
}

static int cmd_qa(cli_ctx_t *ctx, int argc, char **argv)
{
	rules_qa_cli_t in;
	int rc = rules_qa_cli_input(&in, argc, argv, ctx, NULL, NULL, NULL);
	if (rc == 0)
		rc = rules_qa_cli_score(&in, ctx, true);
	if (rc == 0) {
		rules_t *r = scan_gen_module(in.gen, "rules");
		rules_qa_report(in.set, r, stdout, in.tsv);
		if (in.set->failed > 0)
			rc = 1;
	}
	rules_qa_cli_done(&in);
	return rc;
}

int rules_cmd_rules(cli_ctx_t *ctx, int argc, char **argv)
{
	if (argc < 2) {
		rules_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "qa") == 0)
		return cmd_qa(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "fit") == 0)
		return rules_fit_cmd(ctx, argc - 1, argv + 1);
	fprintf(stderr, "sift rules: unknown subcommand '%s'\n", argv[1]);
	rules_usage(stderr);
	return 2;
}
