/*
 * sift-mclient - drives a milter with messages from files, as an MTA would,
 * and reports each message's outcome and the latency distribution. Used
 * by the integration tests (one message at a time, --tsv) and by the
 * benchmark (many threads, many messages, summary only).
 */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "arena.h"
#include "mclient.h"
#include "xalloc.h"

#define MAX_DIR_DEPTH     16 /* directory recursion when collecting files */
#define MAX_RCPTS         64 /* -r given more often is a usage error */
#define MAX_THREADS       256
#define ARENA_CHUNK_BYTES 65536

struct file {
	const char *path;
	char *data;
	size_t len;
};

struct options {
	const char *socket;
	unsigned threads;
	unsigned long repeat;
	unsigned long per_conn; /* messages per milter connection */
	const char *client_ip;
	const char *client_name;
	const char *helo;
	const char *from;
	const char *rcpts[MAX_RCPTS];
	size_t nrcpts;
	const char *auth;
	const char *qid_prefix;
	long timeout_ms;
	const char *ext; /* only files ending so when walking directories */
	bool tsv, quiet, abort_first;
	unsigned long ip_count; /* connections cycle through this many addresses from client_ip */
};

/* What the worker threads share; the counters are the only mutable part. */
struct run {
	const struct options *o;
	const struct file *files;
	size_t nfiles;
	size_t njobs;
	atomic_size_t next_job;
	double *latency_ms; /* per job, NAN when it failed */
	mclient_action_t *action;
	bool *quarantined;
	bool *flagged; /* an added "*-Flag: YES" field (X-Spam-Flag) */
	atomic_size_t errors;
	pthread_mutex_t out_lock; /* one output line at a time */
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void usage(FILE *fp)
{
	fputs("usage: sift-mclient -s SOCKET [-j CONCURRENCY] [-n REPEAT] [-i CLIENT_IP]\n"
	      "         [-N CLIENT_NAME] [-H HELO] [-f FROM] [-r RCPT]... [-a AUTH_USER]\n"
	      "         [-t TIMEOUT_MS] [-e EXT] [--per-conn N] [--abort-first] [--tsv] [-q]\n"
	      "         [--ip-count N]\n"
	      "         FILE|DIR...\n"
	      "  SOCKET       unix:/path or inet:port@host\n"
	      "  --per-conn N messages per milter connection (default 1; 0: unlimited)\n"
	      "  --abort-first the first message of each connection is aborted after its\n"
	      "               headers (SMFIC_ABORT); the next ones are sent in full\n"
	      "  --tsv        per message: file action reply headers mods ms\n"
	      "  --ip-count N each connection comes from one of N consecutive IPv4\n"
	      "               addresses starting at -i CLIENT_IP\n"
	      "  -q           no per-message output, only the summary (on stderr)\n",
	      fp);
}

/* ------------------------------------------------------------- files */

static char *read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (fp == NULL)
		return NULL;
	size_t cap = 65536, n = 0;
	char *buf = xalloc_malloc(cap);
	for (;;) {
		size_t r = fread(buf + n, 1, cap - n, fp);
		n += r;
		if (n < cap)
			break;
		cap *= 2;
		buf = xalloc_realloc(buf, cap);
	}
	int err = ferror(fp);
	fclose(fp);
	if (err) {
		free(buf);
		errno = EIO;
		return NULL;
	}
	*len = n;
	return buf;
}

struct file_list {
	struct file *v;
	size_t n, cap;
};

static int add_file(struct file_list *fl, const char *path)
{
	size_t len;
	char *data = read_file(path, &len);
	if (data == NULL) {
		fprintf(stderr, "sift-mclient: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fl->n == fl->cap) {
		size_t cap = fl->cap ? fl->cap * 2 : 64;
		fl->v = xalloc_realloc(fl->v, cap * sizeof(*fl->v));
		fl->cap = cap;
	}
	fl->v[fl->n++] = (struct file){.path = xalloc_strdup(path), .data = data, .len = len};
	return 0;
}

static void free_files(struct file_list *fl)
{
	for (size_t i = 0; i < fl->n; i++) {
		free((char *)fl->v[i].path);
		free(fl->v[i].data);
	}
	free(fl->v);
	*fl = (struct file_list){0};
}

static bool has_ext(const char *name, const char *ext)
{
	size_t n = strlen(name), e = strlen(ext);
	return n >= e && strcmp(name + n - e, ext) == 0;
}

/* Files in sorted order, directories recursively; hidden entries skipped. */
static int collect(struct file_list *fl, const char *path, const char *ext, int depth)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		fprintf(stderr, "sift-mclient: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return add_file(fl, path);
	if (depth >= MAX_DIR_DEPTH) {
		fprintf(stderr, "sift-mclient: %s: directories nested too deep\n", path);
		return -1;
	}
	struct dirent **ents;
	int n = scandir(path, &ents, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "sift-mclient: %s: %s\n", path, strerror(errno));
		return -1;
	}
	int rc = 0;
	for (int i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		if (rc == 0 && name[0] != '.') {
			size_t plen = strlen(path) + strlen(name) + 2;
			char *sub = xalloc_malloc(plen);
			snprintf(sub, plen, "%s/%s", path, name);
			struct stat sst;
			if (stat(sub, &sst) == 0 && S_ISDIR(sst.st_mode))
				rc = collect(fl, sub, ext, depth + 1);
			else if (ext == NULL || has_ext(name, ext))
				rc = collect(fl, sub, ext, depth + 1);
			free(sub);
		}
		free(ents[i]);
	}
	free(ents);
	return rc;
}

/* ------------------------------------------------------------ output */

/* Appends s with tabs and line breaks made blanks, so a TSV field stays one field. */
static void put_field(abuf_t *b, const char *s)
{
	for (; s && *s; s++)
		abuf_putc(b, (*s == '\t' || *s == '\n' || *s == '\r') ? ' ' : *s);
}

static void put_mods(abuf_t *b, const mclient_result_t *r, bool headers_only)
{
	bool first = true;
	for (size_t i = 0; i < r->nmods; i++) {
		const mclient_mod_t *m = &r->mods[i];
		bool is_add = m->type == 'h' || m->type == 'i';
		if (headers_only && !is_add)
			continue;
		if (!first)
			abuf_putc(b, ';');
		first = false;
		if (!headers_only) {
			switch (m->type) {
			case 'h': abuf_puts(b, "add "); break;
			case 'i': abuf_printf(b, "ins[%u] ", m->index); break;
			case 'm': abuf_printf(b, "chg[%u] ", m->index); break;
			case 'q': abuf_puts(b, "quarantine "); break;
			case '+':
			case '2': abuf_puts(b, "addrcpt "); break;
			case '-': abuf_puts(b, "delrcpt "); break;
			case 'e': abuf_puts(b, "chgfrom "); break;
			case 'b': abuf_printf(b, "replbody %zu bytes", m->value_len); continue;
			}
		}
		put_field(b, m->name);
		if (m->type == 'h' || m->type == 'i' || m->type == 'm') {
			/*
			 * As the MTA writes the field: a filter that negotiated
			 * SMFIP_HDR_LEADSPC sends the space after the colon itself.
			 */
			abuf_putc(b, ':');
			if (m->value == NULL || (m->value[0] != ' ' && m->value[0] != '\t'))
				abuf_putc(b, ' ');
			put_field(b, m->value);
		} else if (m->value && *m->value) {
			abuf_putc(b, ' ');
			put_field(b, m->value);
		}
	}
}

static const char *outcome_name(const mclient_result_t *r)
{
	/* A quarantined message is accepted into the hold queue. */
	if (r->quarantined && r->action == MCLIENT_ACCEPT)
		return "quarantine";
	return mclient_action_name(r->action);
}

static void report(struct run *run, arena_t *a, const char *path, const mclient_result_t *r,
                   const char *error)
{
	const struct options *o = run->o;
	if (o->quiet)
		return;
	abuf_t b;
	abuf_init(&b, a, 512);
	if (o->tsv) {
		put_field(&b, path);
		abuf_putc(&b, '\t');
		abuf_puts(&b, error ? "error" : outcome_name(r));
		abuf_putc(&b, '\t');
		put_field(&b, error ? error : r->reply);
		abuf_putc(&b, '\t');
		if (!error)
			put_mods(&b, r, true);
		abuf_putc(&b, '\t');
		if (!error)
			put_mods(&b, r, false);
		abuf_printf(&b, "\t%.3f\n", error ? 0.0 : r->latency_ms);
	} else if (error) {
		abuf_printf(&b, "%s: error: %s\n", path, error);
	} else {
		abuf_printf(&b, "%s: %s", path, outcome_name(r));
		if (r->reply)
			abuf_printf(&b, " \"%s\"", r->reply);
		abuf_printf(&b, " (%zu changes, %.3f ms)\n", r->nmods, r->latency_ms);
	}
	pthread_mutex_lock(&run->out_lock);
	fputs(b.data, stdout);
	pthread_mutex_unlock(&run->out_lock);
}

/* ------------------------------------------------------------ workers */

/* Did the filter mark the message as spam with an added "...-Flag: YES"? */
static bool has_flag(const mclient_result_t *r)
{
	for (size_t i = 0; i < r->nmods; i++) {
		const mclient_mod_t *m = &r->mods[i];
		size_t n = strlen(m->name);
		if ((m->type == 'h' || m->type == 'i') && n >= 5 &&
		    strcasecmp(m->name + n - 5, "-Flag") == 0 &&
		    strncasecmp(m->value + strspn(m->value, " \t"), "YES", 3) == 0)
			return true;
	}
	return false;
}

static void job_failed(struct run *run, arena_t *a, size_t job, const char *error)
{
	atomic_fetch_add(&run->errors, 1);
	run->latency_ms[job] = NAN;
	report(run, a, run->files[job % run->nfiles].path, NULL, error);
}

static void *worker(void *arg)
{
	struct run *run = arg;
	const struct options *o = run->o;
	arena_t *a = arena_new(ARENA_CHUNK_BYTES);
	mclient_opts_t mo = {.timeout_ms = o->timeout_ms};
	mclient_session_t sess = {
	    .client_ip = o->client_ip, .client_name = o->client_name, .helo = o->helo};
	size_t job = atomic_fetch_add(&run->next_job, 1);

	while (job < run->njobs) {
		char err[256];
		mclient_result_t r;
		arena_reset(a);
		mclient_t *c = mclient_open(o->socket, &mo, err, sizeof(err));
		if (c == NULL) {
			job_failed(run, a, job, err);
			job = atomic_fetch_add(&run->next_job, 1);
			continue;
		}
		char ipbuf[INET_ADDRSTRLEN];
		struct in_addr ia;
		/* Distinct clients, as a real MTA sees them (reputation keys per IP and /24). */
		if (o->ip_count > 1 && inet_pton(AF_INET, o->client_ip, &ia) == 1) {
			ia.s_addr = htonl(ntohl(ia.s_addr) + (uint32_t)(job % o->ip_count));
			sess.client_ip = inet_ntop(AF_INET, &ia, ipbuf, sizeof(ipbuf));
		}
		if (mclient_smtp_connect(c, &sess, a, &r) < 0) {
			job_failed(run, a, job, mclient_error(c));
			mclient_close(c);
			job = atomic_fetch_add(&run->next_job, 1);
			continue;
		}
		bool first = true, failed = false;
		for (unsigned long k = 0; job < run->njobs && (o->per_conn == 0 || k < o->per_conn);
		     k++) {
			const struct file *f = &run->files[job % run->nfiles];
			mclient_env_t env = {.mail_from = o->from,
			                     .rcpts = o->rcpts,
			                     .nrcpts = o->nrcpts,
			                     .auth_authen = o->auth};
			arena_reset(a);
			env.queue_id = arena_sprintf(a, "%s%08zX", o->qid_prefix, job);
			/* The abort test: this transaction ends with SMFIC_ABORT. */
			if (first && o->abort_first)
				env.abort_at = MCLIENT_ABORT_AFTER_HEADERS;
			first = false;
			if (mclient_message(c, &env, f->data, f->len, a, &r) < 0) {
				failed = true;
				break;
			}
			run->latency_ms[job] = r.latency_ms;
			run->action[job] = r.action;
			run->quarantined[job] = r.quarantined;
			run->flagged[job] = has_flag(&r);
			report(run, a, f->path, &r, NULL);
			job = atomic_fetch_add(&run->next_job, 1);
		}
		if (failed) {
			/* The message in hand failed: count it, start a new connection. */
			job_failed(run, a, job, mclient_error(c));
			mclient_close(c);
			job = atomic_fetch_add(&run->next_job, 1);
		} else {
			mclient_quit(c);
		}
	}
	arena_free(a);
	return NULL;
}

/* Frees what main allocated, so a leak checker sees a clean exit. */
static void free_run(struct run *run, struct file_list *fl)
{
	free(run->latency_ms);
	free(run->action);
	free(run->quarantined);
	free(run->flagged);
	free_files(fl);
}

/* ------------------------------------------------------------ summary */

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

/* Nearest-rank percentile of a sorted array. */
static double percentile(const double *v, size_t n, double p)
{
	if (n == 0)
		return NAN;
	size_t rank = (size_t)ceil(p / 100.0 * (double)n);
	if (rank < 1)
		rank = 1;
	return v[rank - 1];
}

static void summary(const struct run *run, double elapsed_ms)
{
	double *v = xalloc_malloc((run->njobs + 1) * sizeof(*v));
	size_t n = 0, count[MCLIENT_CONN_FAIL + 1] = {0}, quarantined = 0, flagged = 0;
	for (size_t i = 0; i < run->njobs; i++) {
		if (isnan(run->latency_ms[i]))
			continue;
		v[n++] = run->latency_ms[i];
		if (run->quarantined[i])
			quarantined++;
		if (run->flagged[i])
			flagged++;
		count[run->action[i]]++;
	}
	qsort(v, n, sizeof(*v), cmp_double);
	double secs = elapsed_ms / 1e3;
	fprintf(stderr,
	        "messages=%zu errors=%zu elapsed_s=%.3f msgs_per_s=%.1f "
	        "p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f max_ms=%.3f "
	        "accept=%zu reject=%zu tempfail=%zu discard=%zu quarantine=%zu aborted=%zu "
	        "flagged=%zu\n",
	        n, atomic_load(&run->errors), secs, secs > 0 ? (double)n / secs : 0.0,
	        percentile(v, n, 50), percentile(v, n, 95), percentile(v, n, 99),
	        n ? v[n - 1] : NAN, count[MCLIENT_ACCEPT], count[MCLIENT_REJECT],
	        count[MCLIENT_TEMPFAIL], count[MCLIENT_DISCARD], quarantined,
	        count[MCLIENT_ABORTED], flagged);
	free(v);
}

/* --------------------------------------------------------------- main */

static bool parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max || s[0] == '-')
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	struct options o = {.threads = 1,
	                    .repeat = 1,
	                    .per_conn = 1,
	                    .client_ip = "127.0.0.1",
	                    .helo = "client.sift.test",
	                    .from = "sender@sift.test",
	                    .qid_prefix = "MC",
	                    .timeout_ms = 10000};
	enum { OPT_PER_CONN = 256, OPT_TSV, OPT_ABORT_FIRST, OPT_IP_COUNT };
	static const struct option longopts[] = {
	    {"per-conn", required_argument, NULL, OPT_PER_CONN},
	    {"tsv", no_argument, NULL, OPT_TSV},
	    {"abort-first", no_argument, NULL, OPT_ABORT_FIRST},
	    {"ip-count", required_argument, NULL, OPT_IP_COUNT},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch;
	unsigned long ul;
	while ((ch = getopt_long(argc, argv, "s:j:n:i:N:H:f:r:a:t:e:Q:qh", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': o.socket = optarg; break;
		case 'j':
			if (!parse_ulong(optarg, MAX_THREADS, &ul) || ul == 0)
				goto bad;
			o.threads = (unsigned)ul;
			break;
		case 'n':
			if (!parse_ulong(optarg, 1000000, &ul) || ul == 0)
				goto bad;
			o.repeat = ul;
			break;
		case 'i': o.client_ip = strcmp(optarg, "unknown") == 0 ? NULL : optarg; break;
		case 'N': o.client_name = optarg; break;
		case 'H': o.helo = optarg; break;
		case 'f': o.from = optarg; break;
		case 'r':
			if (o.nrcpts == MAX_RCPTS)
				goto bad;
			o.rcpts[o.nrcpts++] = optarg;
			break;
		case 'a': o.auth = optarg; break;
		case 't':
			if (!parse_ulong(optarg, 3600000, &ul) || ul == 0)
				goto bad;
			o.timeout_ms = (long)ul;
			break;
		case 'e': o.ext = optarg; break;
		case 'Q': o.qid_prefix = optarg; break;
		case 'q': o.quiet = true; break;
		case OPT_PER_CONN:
			if (!parse_ulong(optarg, 1000000000, &ul))
				goto bad;
			o.per_conn = ul;
			break;
		case OPT_TSV: o.tsv = true; break;
		case OPT_ABORT_FIRST: o.abort_first = true; break;
		case OPT_IP_COUNT:
			if (!parse_ulong(optarg, 1UL << 24, &o.ip_count) || o.ip_count == 0)
				goto bad;
			break;
		case 'h': usage(stdout); return 0;
		default: goto bad;
		}
	}
	if (o.socket == NULL || optind == argc)
		goto bad;
	if (o.nrcpts == 0)
		o.rcpts[o.nrcpts++] = "rcpt@sift.test";
	if (o.client_name == NULL)
		o.client_name = (o.client_ip && (strcmp(o.client_ip, "127.0.0.1") == 0 ||
		                                 strcmp(o.client_ip, "::1") == 0))
		                    ? "localhost"
		                    : "unknown";

	struct file_list fl = {0};
	for (int i = optind; i < argc; i++) {
		if (collect(&fl, argv[i], o.ext, 0) < 0) {
			free_files(&fl);
			return 1;
		}
	}
	if (fl.n == 0) {
		fputs("sift-mclient: no message files\n", stderr);
		free_files(&fl);
		return 1;
	}

	struct run run = {.o = &o, .files = fl.v, .nfiles = fl.n};
	run.njobs = fl.n * o.repeat;
	run.latency_ms = xalloc_calloc(run.njobs, sizeof(*run.latency_ms));
	run.action = xalloc_calloc(run.njobs, sizeof(*run.action));
	run.quarantined = xalloc_calloc(run.njobs, sizeof(*run.quarantined));
	run.flagged = xalloc_calloc(run.njobs, sizeof(*run.flagged));
	for (size_t i = 0; i < run.njobs; i++)
		run.latency_ms[i] = NAN;
	atomic_init(&run.next_job, 0);
	atomic_init(&run.errors, 0);
	pthread_mutex_init(&run.out_lock, NULL);
	if (o.tsv && !o.quiet)
		puts("#file\taction\treply\theaders\tmods\tms");

	unsigned nthreads = o.threads;
	if (nthreads > run.njobs)
		nthreads = (unsigned)run.njobs;
	pthread_t tids[MAX_THREADS];
	double t0 = now_ms();
	unsigned started = 0;
	for (; started < nthreads; started++)
		if (pthread_create(&tids[started], NULL, worker, &run) != 0)
			break;
	if (started == 0) {
		fputs("sift-mclient: cannot start threads\n", stderr);
		pthread_mutex_destroy(&run.out_lock);
		free_run(&run, &fl);
		return 1;
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	double elapsed = now_ms() - t0;
	fflush(stdout);
	summary(&run, elapsed);
	int rc = atomic_load(&run.errors) ? 1 : 0;
	pthread_mutex_destroy(&run.out_lock);
	free_run(&run, &fl);
	return rc;

bad:
	usage(stderr);
	return 2;
}
