/*
 * dnsbl_file.c - lists served from local rbldnsd data files (ip4set,
 * dnset), for sites on thin links that rsync the operator's data instead
 * of asking over DNS. The data is indexed in memory: sorted arrays per
 * prefix length for addresses, sorted name arrays for domains, so a
 * lookup is a few binary searches and the index costs about 8 bytes per
 * address entry.
 */
#include "config.h"

#include "dnsbl.h"
#include "dnsbl_int.h"
#include "log.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define FILE_MAX_LINE_BYTES 4096
#define EXCL_BIT            0x80000000u
/* rbldnsd's default answer for an entry without a value. */
#define DEFAULT_CODE 0x7f000002u

struct fvalue {
	uint32_t code;
	char *txt; /* may be NULL */
};

struct ip_entry {
	uint32_t net;
	uint32_t val; /* index into values, EXCL_BIT for exclusions */
};

struct name_entry {
	char *name;
	uint32_t val;
};

/* One loaded version of the file; lookups hold a reference while they read it. */
struct snapshot {
	unsigned refs; /* guarded by the owner's lock */
	unsigned generation;
	size_t entries;
	struct fvalue *values;
	size_t nvalues, cap_values;
	/* ip4set: one sorted array per prefix length */
	struct ip_entry *ip[33];
	size_t nip[33], cap_ip[33];
	/* dnset: exact names and wildcard parents, sorted */
	struct name_entry *names[2];
	size_t nnames[2], cap_names[2];
};

struct dnsbl_file {
	char *path;
	int format;
	long check_ms;
	pthread_mutex_t lock;
	struct snapshot *cur;
	long last_check_ms;
	struct stat st; /* of the loaded file */
	bool reloading;
};

static void snapshot_free(struct snapshot *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nvalues; i++)
		free(s->values[i].txt);
	free(s->values);
	for (int i = 0; i <= 32; i++)
		free(s->ip[i]);
	for (int k = 0; k < 2; k++) {
		for (size_t i = 0; i < s->nnames[k]; i++)
			free(s->names[k][i].name);
		free(s->names[k]);
	}
	free(s);
}

static uint32_t add_value(struct snapshot *s, uint32_t code, const char *txt)
{
	/* Consecutive entries usually share their value: reuse the last one. */
	if (s->nvalues > 0) {
		struct fvalue *l = &s->values[s->nvalues - 1];
		if (l->code == code && ((l->txt == NULL && txt == NULL) ||
		                        (l->txt && txt && strcmp(l->txt, txt) == 0)))
			return (uint32_t)(s->nvalues - 1);
	}
	if (s->nvalues == s->cap_values) {
		s->cap_values = s->cap_values ? s->cap_values * 2 : 16;
		s->values = xalloc_realloc(s->values, s->cap_values * sizeof(*s->values));
	}
	s->values[s->nvalues].code = code;
	s->values[s->nvalues].txt = txt ? xalloc_strdup(txt) : NULL;
	return (uint32_t)s->nvalues++;
}

static void add_ip(struct snapshot *s, uint32_t net, unsigned plen, uint32_t val)
{
	if (s->nip[plen] == s->cap_ip[plen]) {
		s->cap_ip[plen] = s->cap_ip[plen] ? s->cap_ip[plen] * 2 : 16;
		s->ip[plen] =
		    xalloc_realloc(s->ip[plen], s->cap_ip[plen] * sizeof(struct ip_entry));
	}
	s->ip[plen][s->nip[plen]++] = (struct ip_entry){net, val};
}

static void add_name(struct snapshot *s, int wild, const char *name, uint32_t val)
{
	if (s->nnames[wild] == s->cap_names[wild]) {
		s->cap_names[wild] = s->cap_names[wild] ? s->cap_names[wild] * 2 : 16;
		s->names[wild] =
		    xalloc_realloc(s->names[wild], s->cap_names[wild] * sizeof(struct name_entry));
	}
	s->names[wild][s->nnames[wild]++] = (struct name_entry){xalloc_strdup(name), val};
}

static uint32_t mask_of(unsigned plen)
{
	return plen == 0 ? 0 : 0xffffffffu << (32 - plen);
}

/* Splits [lo, hi] into CIDR blocks. */
static void add_range(struct snapshot *s, uint32_t lo, uint32_t hi, uint32_t val)
{
	uint64_t cur = lo;
	while (cur <= hi) {
		unsigned plen = 32;
		while (plen > 0) {
			uint32_t m = mask_of(plen - 1);
			uint64_t end = (cur & m) + ((uint64_t)~m & 0xffffffffu);
			if ((cur & m) != cur || end > hi)
				break;
			plen--;
		}
		add_ip(s, (uint32_t)cur, plen, val);
		cur += (uint64_t)1 << (32 - plen);
	}
}

/*
 * A value is ":A:text", ":A", or a bare text; A may be "2" for 127.0.0.2
 * or empty for the default. Returns -1 for an A that is not an address.
 */
static int parse_value(char *v, uint32_t def_code, uint32_t *code, char **txt)
{
	*code = def_code;
	*txt = NULL;
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v == '\0')
		return 0;
	if (*v != ':') {
		*txt = v;
		return 0;
	}
	v++;
	char *end = strchr(v, ':');
	if (end)
		*end = '\0';
	if (*v) {
		struct in_addr a;
		char *e;
		unsigned long n = strtoul(v, &e, 10);
		if (*e == '\0' && n <= 255)
			*code = 0x7f000000u | (uint32_t)n;
		else if (inet_pton(AF_INET, v, &a) == 1)
			*code = ntohl(a.s_addr);
		else
			return -1;
	}
	if (end && end[1])
		*txt = end + 1;
	return 0;
}

/* "1.2.3.4", "1.2.3" (a /24), "1.2" (a /16): returns the prefix length or -1. */
static int parse_partial_ip4(const char *s, uint32_t *out)
{
	uint32_t v = 0;
	int octets = 0;
	const char *p = s;
	while (*p) {
		if (!isdigit((unsigned char)*p))
			return -1;
		unsigned long n = 0;
		int digits = 0;
		while (isdigit((unsigned char)*p) && digits < 4) {
			n = n * 10 + (unsigned long)(*p++ - '0');
			digits++;
		}
		if (n > 255 || octets == 4)
			return -1;
		v = v << 8 | (uint32_t)n;
		octets++;
		if (*p == '.')
			p++;
		else if (*p != '\0')
			return -1;
	}
	if (octets == 0)
		return -1;
	*out = v << (8 * (4 - octets));
	return octets * 8;
}

static int parse_ip4set_entry(struct snapshot *s, char *key, uint32_t val)
{
	char *slash = strchr(key, '/');
	char *dash = strchr(key, '-');
	uint32_t a, b;
	int plen;
	if (slash) {
		*slash = '\0';
		char *e;
		long l = strtol(slash + 1, &e, 10);
		if (*e || l < 0 || l > 32 || parse_partial_ip4(key, &a) < 0)
			return -1;
		add_ip(s, a & mask_of((unsigned)l), (unsigned)l, val);
		return 0;
	}
	if (dash) {
		*dash = '\0';
		const char *rhs = dash + 1;
		if (parse_partial_ip4(key, &a) != 32)
			return -1;
		if (strchr(rhs, '.') == NULL) {
			char *e;
			unsigned long last = strtoul(rhs, &e, 10);
			if (*e || *rhs == '\0' || last > 255)
				return -1;
			b = (a & 0xffffff00u) | (uint32_t)last;
		} else if ((plen = parse_partial_ip4(rhs, &b)) < 0) {
			return -1;
		} else {
			b |= ~mask_of((unsigned)plen); /* "1.2.3.0-1.2.4" ends at 1.2.4.255 */
		}
		if (b < a)
			return -1;
		add_range(s, a, b, val);
		return 0;
	}
	if ((plen = parse_partial_ip4(key, &a)) < 0)
		return -1;
	add_ip(s, a, (unsigned)plen, val);
	return 0;
}

static int parse_dnset_entry(struct snapshot *s, char *key, uint32_t val)
{
	int mode = 0; /* 0 exact, 1 subdomains only, 2 both */
	if (key[0] == '*' && key[1] == '.') {
		mode = 1;
		key += 2;
	} else if (key[0] == '.') {
		mode = 2;
		key += 1;
	}
	size_t n = strlen(key);
	while (n > 0 && key[n - 1] == '.')
		key[--n] = '\0';
	if (n == 0 || n >= DNSBL_QNAME_MAX_BYTES)
		return -1;
	for (char *p = key; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (!(isalnum(c) || c == '-' || c == '.' || c == '_'))
			return -1;
		*p = (char)tolower(c);
	}
	if (mode != 1)
		add_name(s, 0, key, val);
	if (mode != 0)
		add_name(s, 1, key, val);
	return 0;
}

static int cmp_ip(const void *a, const void *b)
{
	uint32_t x = ((const struct ip_entry *)a)->net, y = ((const struct ip_entry *)b)->net;
	return x < y ? -1 : x > y;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct name_entry *)a)->name, ((const struct name_entry *)b)->name);
}

static struct snapshot *load_snapshot(const char *path, int format, diag_t *d)
{
	FILE *fp = fopen(path, "r");
	if (fp == NULL) {
		if (d)
			diag_error(d, path, 0, "cannot open list file: %s", strerror(errno));
		return NULL;
	}
	struct snapshot *s = xalloc_calloc(1, sizeof(*s));
	uint32_t def_code = DEFAULT_CODE;
	char *def_txt = NULL;
	char line[FILE_MAX_LINE_BYTES];
	unsigned lineno = 0;
	int errors = 0;
	while (fgets(line, sizeof(line), fp)) {
		lineno++;
		size_t n = strlen(line);
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '#' || *p == ';' || *p == '$')
			continue; /* comments; $TTL/$SOA/$NS matter only to a DNS server */
		if (*p == ':') {
			uint32_t c;
			char *t;
			if (parse_value(p, DEFAULT_CODE, &c, &t) < 0) {
				if (d && errors++ < 10)
					diag_error(d, path, lineno, "bad default value");
				continue;
			}
			def_code = c;
			free(def_txt);
			def_txt = t ? xalloc_strdup(t) : NULL;
			continue;
		}
		bool excl = false;
		if (*p == '!') {
			excl = true;
			p++;
		}
		char *key = p;
		while (*p && *p != ' ' && *p != '\t' && *p != ':')
			p++;
		char *rest = p;
		if (*p) {
			if (*p != ':')
				*p++ = '\0';
			rest = p;
		}
		/* the value may follow the key with or without blanks (":A:text") */
		char keybuf[DNSBL_QNAME_MAX_BYTES];
		size_t klen = (size_t)(rest - key);
		if (klen >= sizeof(keybuf))
			klen = sizeof(keybuf) - 1;
		memcpy(keybuf, key, klen);
		keybuf[klen] = '\0';
		klen = strlen(keybuf);
		while (klen > 0 && (keybuf[klen - 1] == ' ' || keybuf[klen - 1] == '\t'))
			keybuf[--klen] = '\0';
		uint32_t code;
		char *txt;
		if (parse_value(rest, def_code, &code, &txt) < 0) {
			if (d && errors++ < 10)
				diag_error(d, path, lineno, "bad value for \"%s\"", keybuf);
			continue;
		}
		if (txt == NULL)
			txt = def_txt;
		uint32_t val = excl ? EXCL_BIT : add_value(s, code, txt);
		int rc = format == DNSBL_FILE_IP4SET ? parse_ip4set_entry(s, keybuf, val)
		                                     : parse_dnset_entry(s, keybuf, val);
		if (rc < 0) {
			if (d && errors++ < 10)
				diag_error(d, path, lineno, "bad %s entry \"%s\"",
				           format == DNSBL_FILE_IP4SET ? "ip4set" : "dnset",
				           keybuf);
			continue;
		}
		s->entries++;
	}
	free(def_txt);
	fclose(fp);
	if (errors) {
		snapshot_free(s);
		return NULL;
	}
	for (int i = 0; i <= 32; i++)
		if (s->nip[i])
			qsort(s->ip[i], s->nip[i], sizeof(struct ip_entry), cmp_ip);
	for (int k = 0; k < 2; k++)
		if (s->nnames[k])
			qsort(s->names[k], s->nnames[k], sizeof(struct name_entry), cmp_name);
	return s;
}

dnsbl_file_t *dnsbl_file_open(const char *path, int format, long check_ms, diag_t *d)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		diag_error(d, path, 0, "cannot open list file: %s", strerror(errno));
		return NULL;
	}
	struct snapshot *s = load_snapshot(path, format, d);
	if (s == NULL)
		return NULL;
	dnsbl_file_t *f = xalloc_calloc(1, sizeof(*f));
	f->path = xalloc_strdup(path);
	f->format = format;
	f->check_ms = check_ms;
	pthread_mutex_init(&f->lock, NULL);
	s->refs = 1;
	s->generation = 1;
	f->cur = s;
	f->st = st;
	f->last_check_ms = dnsbl_now_ms();
	return f;
}

void dnsbl_file_free(dnsbl_file_t *f)
{
	if (f == NULL)
		return;
	snapshot_free(f->cur);
	pthread_mutex_destroy(&f->lock);
	free(f->path);
	free(f);
}

static void snapshot_unref(dnsbl_file_t *f, struct snapshot *s)
{
	pthread_mutex_lock(&f->lock);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&f->lock);
	if (last)
		snapshot_free(s);
}

/*
 * Re-reads the file when it changed. One thread reloads while the others
 * go on with the old data; a file that fails to parse keeps the old data
 * (and is logged) so a half-written rsync never empties a list.
 */
static void maybe_reload(dnsbl_file_t *f)
{
	long now = dnsbl_now_ms();
	pthread_mutex_lock(&f->lock);
	if (f->reloading || now - f->last_check_ms < f->check_ms) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	f->last_check_ms = now;
	struct stat st;
	if (stat(f->path, &st) < 0 || (st.st_mtim.tv_sec == f->st.st_mtim.tv_sec &&
	                               st.st_mtim.tv_nsec == f->st.st_mtim.tv_nsec &&
	                               st.st_size == f->st.st_size && st.st_ino == f->st.st_ino)) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	f->reloading = true;
	unsigned gen = f->cur->generation;
	pthread_mutex_unlock(&f->lock);

	diag_t *d = diag_new();
	struct snapshot *s = load_snapshot(f->path, f->format, d);
	if (s == NULL && diag_count(d) > 0)
		log_msg(LOG_L_ERR, "dnsbl: keeping the old data of %s: %s", f->path,
		        diag_text(d, 0));
	diag_free(d);

	struct snapshot *old = NULL;
	pthread_mutex_lock(&f->lock);
	f->reloading = false;
	f->st = st;
	if (s) {
		s->refs = 1;
		s->generation = gen + 1;
		old = f->cur;
		f->cur = s;
		old->refs--;
		if (old->refs != 0)
			old = NULL; /* the last reader frees it */
	}
	pthread_mutex_unlock(&f->lock);
	snapshot_free(old);
	if (s)
		log_msg(LOG_L_INFO, "dnsbl: reloaded %s (%zu entries)", f->path, s->entries);
}

static struct snapshot *snapshot_get(dnsbl_file_t *f)
{
	maybe_reload(f);
	pthread_mutex_lock(&f->lock);
	struct snapshot *s = f->cur;
	s->refs++;
	pthread_mutex_unlock(&f->lock);
	return s;
}

size_t dnsbl_file_entries(dnsbl_file_t *f, unsigned *generation)
{
	struct snapshot *s = snapshot_get(f);
	size_t n = s->entries;
	if (generation)
		*generation = s->generation;
	snapshot_unref(f, s);
	return n;
}

static const struct ip_entry *find_ip(const struct snapshot *s, uint32_t ip)
{
	/* The most specific entry wins, as in rbldnsd: longest prefix first. */
	for (int plen = 32; plen >= 0; plen--) {
		if (s->nip[plen] == 0)
			continue;
		struct ip_entry key = {ip & mask_of((unsigned)plen), 0};
		const struct ip_entry *e =
		    bsearch(&key, s->ip[plen], s->nip[plen], sizeof(key), cmp_ip);
		if (e)
			return e;
	}
	return NULL;
}

static const struct name_entry *find_name(const struct snapshot *s, int wild, const char *name)
{
	if (s->nnames[wild] == 0)
		return NULL;
	struct name_entry key = {(char *)name, 0};
	return bsearch(&key, s->names[wild], s->nnames[wild], sizeof(key), cmp_name);
}

static void expand_txt(const char *t, const char *subst, char *out, size_t n)
{
	size_t o = 0;
	for (; *t && o + 1 < n; t++) {
		if (*t == '$') {
			for (const char *q = subst; *q && o + 1 < n; q++)
				out[o++] = *q;
		} else {
			out[o++] = *t;
		}
	}
	out[o] = '\0';
}

int dnsbl_file_lookup(dnsbl_file_t *f, const char *key, uint32_t *code, char *txt, size_t txt_bytes)
{
	struct snapshot *s = snapshot_get(f);
	uint32_t val = EXCL_BIT;
	bool found = false;
	if (f->format == DNSBL_FILE_IP4SET) {
		struct in_addr a;
		if (inet_pton(AF_INET, key, &a) == 1) {
			const struct ip_entry *e = find_ip(s, ntohl(a.s_addr));
			if (e) {
				found = true;
				val = e->val;
			}
		}
	} else {
		const struct name_entry *e = find_name(s, 0, key);
		for (const char *p = key; e == NULL && p != NULL;) {
			p = strchr(p, '.');
			if (p)
				e = find_name(s, 1, ++p);
		}
		if (e) {
			found = true;
			val = e->val;
		}
	}
	int listed = found && !(val & EXCL_BIT);
	if (listed) {
		*code = s->values[val].code;
		if (txt && txt_bytes)
			expand_txt(s->values[val].txt ? s->values[val].txt : "", key, txt,
			           txt_bytes);
	}
	snapshot_unref(f, s);
	return listed;
}
