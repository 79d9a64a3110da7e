/*
 * conf.c - strict "key = value" configuration parsing (see conf.h).
 * Values stay strings until a module asks for them with a type, so each
 * module owns the meaning and the limits of its keys.
 */
#include "config.h"

#include "conf.h"
#include "xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_MAX_LINE_BYTES 8192

struct conf_item {
	char *key;
	char *value;
	char *file;
	unsigned line;
	bool used;
	bool override;
};

struct conf {
	struct conf_item *v;
	size_t n, cap;
	char *path;
	char *base_dir; /* relative file names are joined to it (conf_filename()) */
};

conf_t *conf_new(void)
{
	conf_t *c = xalloc_calloc(1, sizeof(*c));
	c->path = xalloc_strdup("");
	return c;
}

void conf_free(conf_t *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].key);
		free(c->v[i].value);
		free(c->v[i].file);
	}
	free(c->v);
	free(c->path);
	free(c->base_dir);
	free(c);
}

const char *conf_path(const conf_t *c)
{
	return c->path;
}

static void conf_push(conf_t *c, const char *key, const char *value, const char *file,
                      unsigned line, bool override)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 32;
		c->v = xalloc_realloc(c->v, c->cap * sizeof(*c->v));
	}
	struct conf_item *it = &c->v[c->n++];
	it->key = xalloc_strdup(key);
	it->value = xalloc_strdup(value);
	it->file = xalloc_strdup(file);
	it->line = line;
	it->used = false;
	it->override = override;
}

void conf_override(conf_t *c, const char *key, const char *value)
{
	conf_push(c, key, value, "command line", 0, true);
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 &&
	       (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

static int conf_parse_line(conf_t *c, const char *name, unsigned lineno, char *line, diag_t *d)
{
	char *s = trim(line);
	if (*s == '\0' || *s == '#')
		return 0;
	char *eq = strchr(s, '=');
	if (eq == NULL) {
		diag_error(d, name, lineno, "expected 'key = value'");
		return -1;
	}
	*eq = '\0';
	char *key = trim(s);
	char *value = trim(eq + 1);
	if (*key == '\0') {
		diag_error(d, name, lineno, "missing key before '='");
		return -1;
	}
	for (const char *k = key; *k; k++)
		if (!(islower((unsigned char)*k) || isdigit((unsigned char)*k) || *k == '_')) {
			diag_error(d, name, lineno,
			           "bad key '%s': keys are lower-case letters, digits and '_'",
			           key);
			return -1;
		}
	if (*value == '"') {
		/*
		 * The closing quote is the last one before the end or before a
		 * " #" comment, as for an unquoted value: a reply may hold quotes.
		 */
		char *end = value + strlen(value);
		if (end[-1] != '"' || end == value + 1) {
			char *q = NULL;
			for (char *h = value + 1; (h = strchr(h, '#')) != NULL; h++) {
				if (h[-1] != ' ' && h[-1] != '\t')
					continue;
				char *t = h;
				while (t > value + 1 && (t[-1] == ' ' || t[-1] == '\t'))
					t--;
				if (t > value + 1 && t[-1] == '"') {
					q = t;
					break;
				}
			}
			if (q == NULL) {
				diag_error(d, name, lineno,
				           strchr(value + 1, '"') != NULL
				               ? "text after the closing quote of '%s' (a comment"
				                 " starts with \" #\")"
				               : "unterminated quoted value for '%s'",
				           key);
				return -1;
			}
			*q = '\0';
			end = q;
		}
		end[-1] = '\0';
		value++;
	} else {
		/* An unquoted value ends at a " #" comment. */
		char *hash = strstr(value, " #");
		if (hash == NULL)
			hash = strstr(value, "\t#");
		if (hash != NULL) {
			*hash = '\0';
			value = trim(value);
		}
	}
	conf_push(c, key, value, name, lineno, false);
	return 0;
}

conf_t *conf_parse(const char *name, const char *text, diag_t *d)
{
	conf_t *c = conf_new();
	free(c->path);
	c->path = xalloc_strdup(name);
	unsigned lineno = 0;
	size_t before = diag_errors(d);
	const char *p = text;
	/* A byte order mark, as some Windows editors write, is not part of a key. */
	if (strncmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		lineno++;
		if (len >= CONF_MAX_LINE_BYTES) {
			diag_error(d, name, lineno, "line longer than %d bytes",
			           CONF_MAX_LINE_BYTES);
		} else {
			char buf[CONF_MAX_LINE_BYTES];
			memcpy(buf, p, len);
			buf[len] = '\0';
			if (memchr(buf, '\0', len) != NULL)
				diag_error(d, name, lineno, "NUL byte in line");
			else
				conf_parse_line(c, name, lineno, buf, d);
		}
		p += len;
		if (*p == '\n')
			p++;
	}
	if (diag_errors(d) > before) {
		conf_free(c);
		return NULL;
	}
	return c;
}

conf_t *conf_load(const char *path, diag_t *d)
{
	/*
	 * Non-blocking and checked before any read: a FIFO would block the
	 * open (and a reload's signal thread) for good, /dev/zero would be
	 * read until memory runs out, a directory gives only "read error".
	 */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		diag_error(d, path, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	struct stat st = {.st_mode = 0};
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		diag_error(d, path, 0, "not a regular file%s",
		           S_ISDIR(st.st_mode) ? " (a directory)" : "");
		close(fd);
		return NULL;
	}
	FILE *fp = fdopen(fd, "r");
	if (fp == NULL) {
		diag_error(d, path, 0, "cannot open: %s", strerror(errno));
		close(fd);
		return NULL;
	}
	char *text = NULL;
	size_t len = 0, cap = 0;
	char buf[8192];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), fp)) > 0) {
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			text = xalloc_realloc(text, cap);
		}
		memcpy(text + len, buf, n);
		len += n;
	}
	int err = ferror(fp);
	fclose(fp);
	if (err) {
		free(text);
		diag_error(d, path, 0, "read error");
		return NULL;
	}
	if (text == NULL)
		text = xalloc_calloc(1, 1);
	text[len] = '\0';
	if (strlen(text) != len) {
		unsigned line = 1;
		for (const char *t = text; *t; t++)
			line += *t == '\n';
		free(text);
		diag_error(d, path, line, "NUL byte in line");
		return NULL;
	}
	conf_t *c = conf_parse(path, text, d);
	free(text);
	return c;
}

/*
 * Finds the single value of key: an override wins over file lines; two
 * file lines for a single-valued key are an error pointing at the second.
 */
static struct conf_item *conf_single(conf_t *c, const char *key, diag_t *d, int *dup)
{
	struct conf_item *found = NULL, *ovr = NULL;
	*dup = 0;
	for (size_t i = 0; i < c->n; i++) {
		struct conf_item *it = &c->v[i];
		if (strcmp(it->key, key) != 0)
			continue;
		it->used = true;
		if (it->override) {
			ovr = it;
		} else if (found != NULL) {
			diag_error(d, it->file, it->line, "'%s' given twice (first at line %u)",
			           key, found->line);
			*dup = 1;
		} else {
			found = it;
		}
	}
	return ovr ? ovr : found;
}

/*
 * strtod also reads C's hexadecimal forms ("0x10" as 16, "0x1p3" as 8):
 * sift.conf(5) numbers are decimal, and a duration or score written so is
 * a mistake to report, not a value to take.
 */
static double conf_strtod(const char *s, char **end)
{
	if (strpbrk(s, "xX") != NULL) {
		*end = (char *)s;
		return 0;
	}
	return strtod(s, end);
}

static void conf_bad(diag_t *d, const struct conf_item *it, const char *what)
{
	diag_error(d, it->file, it->line, "%s: %s, got '%s'", it->key, what, it->value);
}

int conf_str(conf_t *c, const char *key, const char *def, const char **out, diag_t *d)
{
	int dup;
	struct conf_item *it = conf_single(c, key, d, &dup);
	*out = it ? it->value : def;
	return dup ? -1 : 0;
}

void conf_set_base_dir(conf_t *c, const char *dir)
{
	free(c->base_dir);
	c->base_dir = dir != NULL && dir[0] != '\0' ? xalloc_strdup(dir) : NULL;
}

char *conf_resolve(const conf_t *c, const char *key, const char *name, const char *file,
                   unsigned line, diag_t *d)
{
	if (name[0] == '/' || name[0] == '\0' || c->base_dir == NULL)
		return xalloc_strdup(name);
	if (strcmp(c->base_dir, "/") == 0 && d != NULL)
		diag_warn(d, file, line,
		          "%s: the relative path '%s' is taken from /, the directory sift-milter "
		          "started in; write it absolute",
		          key, name);
	size_t bl = strlen(c->base_dir), n = bl + strlen(name) + 2;
	char *abs = xalloc_malloc(n);
	snprintf(abs, n, "%s%s%s", c->base_dir, c->base_dir[bl - 1] == '/' ? "" : "/", name);
	return abs;
}

/* Joins a relative value to the base directory in place: later reads see the same. */
static void conf_item_resolve(const conf_t *c, struct conf_item *it, diag_t *d)
{
	if (it->value[0] == '/' || c->base_dir == NULL)
		return;
	char *abs = conf_resolve(c, it->key, it->value, it->file, it->line, d);
	free(it->value);
	it->value = abs;
}

int conf_filename(conf_t *c, const char *key, const char *def, const char **out, diag_t *d)
{
	int dup;
	struct conf_item *it = conf_single(c, key, d, &dup);
	if (it != NULL)
		conf_item_resolve(c, it, d);
	*out = it ? it->value : def;
	return dup ? -1 : 0;
}

int conf_parse_bool(const char *s, bool *out)
{
	static const char *yes[] = {"yes", "true", "on", "1"};
	static const char *no[] = {"no", "false", "off", "0"};
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

int conf_bool(conf_t *c, const char *key, bool def, bool *out, diag_t *d)
{
	int dup;
	struct conf_item *it = conf_single(c, key, d, &dup);
	*out = def;
	if (it == NULL)
		return dup ? -1 : 0;
	if (conf_parse_bool(it->value, out) < 0) {
		*out = def;
		conf_bad(d, it, "expected yes or no");
		return -1;
	}
	return dup ? -1 : 0;
}

int conf_long(conf_t *c, const char *key, long def, long min, long max, long *out, diag_t *d)
{
	int dup;
	struct conf_item *it = conf_single(c, key, d, &dup);
	*out = def;
	if (it == NULL)
		return dup ? -1 : 0;
	char *end;
	errno = 0;
	long v = strtol(it->value, &end, 10);
	if (errno || end == it->value || *end != '\0') {
		conf_bad(d, it, "expected an integer");
		return -1;
	}
	if (v < min || v > max) {
		char what[96];
		snprintf(what, sizeof(what), "must be between %ld and %ld", min, max);
		conf_bad(d, it, what);
		return -1;
	}
	*out = v;
	return dup ? -1 : 0;
}

int conf_double(conf_t *c, const char *key, double def, double min, double max, double *out,
                diag_t *d)
{
	int dup;
	struct conf_item *it = conf_single(c, key, d, &dup);
	*out = def;
	if (it == NULL)
		return dup ? -1 : 0;
	char *end;
	errno = 0;
	double v = conf_strtod(it->value, &end);
	if (errno || end == it->value || *end != '\0' || !isfinite(v)) {
		conf_bad(d, it, "expected a number");
		return -1;
	}
	if (v < min || v > max) {
		char what[96];
		snprintf(what, sizeof(what), "must be between %g and %g", min, max);
		conf_bad(d, it, what);
		return -1;
	}
	*out = v;
	return dup ? -1 : 0;
}

int conf_double_or_off(conf_t *c, const char *key, double def, double off_value, double *out,
                       diag_t *d)
{
	int dup;
	struct conf_item *it = conf_single(c, key, d, &dup);
	*out = def;
	if (it == NULL)
		return dup ? -1 : 0;
	if (strcasecmp(it->value, "off") == 0) {
		*out = off_value;
		return dup ? -1 : 0;
	}
	char *end;
	errno = 0;
	double v = conf_strtod(it->value, &end);
	if (errno || end == it->value || *end != '\0' || !isfinite(v)) {
		conf_bad(d, it, "expected a number or 'off'");
		return -1;
	}
	*out = v;
	return dup ? -1 : 0;
}

int conf_parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	uint64_t mul = 1;
	if (*end != '\0') {
		switch (toupper((unsigned char)*end)) {
		case 'K': mul = 1024ULL; break;
		case 'M': mul = 1024ULL * 1024; break;
		case 'G': mul = 1024ULL * 1024 * 1024; break;
		default: return -1;
		}
		end++;
		if (toupper((unsigned char)*end) == 'B')
			end++;
		if (*end != '\0')
			return -1;
	}
	if (v > UINT64_MAX / mul)
		return -1;
	*out = (uint64_t)v * mul;
	return 0;
}

int conf_size(conf_t *c, const char *key, uint64_t def, uint64_t min, uint64_t max, uint64_t *out,
              diag_t *d)
{
	int dup;
	struct conf_item *it = conf_single(c, key, d, &dup);
	*out = def;
	if (it == NULL)
		return dup ? -1 : 0;
	uint64_t v;
	if (conf_parse_size(it->value, &v) < 0) {
		conf_bad(d, it, "expected a size such as 512K, 10M or 1G");
		return -1;
	}
	if (v < min || v > max) {
		char what[96];
		snprintf(what, sizeof(what), "must be between %llu and %llu bytes",
		         (unsigned long long)min, (unsigned long long)max);
		conf_bad(d, it, what);
		return -1;
	}
	*out = v;
	return dup ? -1 : 0;
}

int conf_parse_ms(const char *s, long *out)
{
	char *end;
	errno = 0;
	if (*s == '-')
		return -1;
	double v = conf_strtod(s, &end);
	if (errno || end == s || !isfinite(v))
		return -1;
	double mul;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mul = 1000; /* a bare number is seconds, like most MTAs' settings */
	else if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else if (strcmp(end, "d") == 0)
		mul = 86400000;
	else
		return -1;
	double ms = v * mul;
	if (ms > 1e15)
		return -1;
	*out = (long)ms;
	return 0;
}

int conf_ms(conf_t *c, const char *key, long def_ms, long min_ms, long max_ms, long *out, diag_t *d)
{
	int dup;
	struct conf_item *it = conf_single(c, key, d, &dup);
	*out = def_ms;
	if (it == NULL)
		return dup ? -1 : 0;
	long v;
	if (conf_parse_ms(it->value, &v) < 0) {
		conf_bad(d, it, "expected a duration such as 500ms, 2s or 5m");
		return -1;
	}
	if (v < min_ms || v > max_ms) {
		char what[96];
		snprintf(what, sizeof(what), "must be between %ldms and %ldms", min_ms, max_ms);
		conf_bad(d, it, what);
		return -1;
	}
	*out = v;
	return dup ? -1 : 0;
}

int conf_enum(conf_t *c, const char *key, const char *const *choices, int def, int *out, diag_t *d)
{
	int dup;
	struct conf_item *it = conf_single(c, key, d, &dup);
	*out = def;
	if (it == NULL)
		return dup ? -1 : 0;
	for (int i = 0; choices[i] != NULL; i++)
		if (strcasecmp(it->value, choices[i]) == 0) {
			*out = i;
			return dup ? -1 : 0;
		}
	char what[256] = "expected one of";
	for (int i = 0; choices[i] != NULL; i++) {
		strncat(what, i ? ", " : " ", sizeof(what) - strlen(what) - 1);
		strncat(what, choices[i], sizeof(what) - strlen(what) - 1);
	}
	conf_bad(d, it, what);
	return -1;
}

size_t conf_count(conf_t *c, const char *key)
{
	size_t n = 0;
	bool any_override = false;
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i].key, key) == 0 && c->v[i].override)
			any_override = true;
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i].key, key) == 0) {
			c->v[i].used = true;
			if (c->v[i].override == any_override)
				n++;
		}
	return n;
}

/* Value idx of a list key (the overrides when there are any), or NULL; marks them used. */
static struct conf_item *conf_item_at(conf_t *c, const char *key, size_t idx, const char **file,
                                      unsigned *line)
{
	bool any_override = false;
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i].key, key) == 0 && c->v[i].override)
			any_override = true;
	size_t n = 0;
	for (size_t i = 0; i < c->n; i++) {
		struct conf_item *it = &c->v[i];
		if (strcmp(it->key, key) != 0 || it->override != any_override)
			continue;
		it->used = true;
		if (n++ == idx) {
			if (file)
				*file = it->file;
			if (line)
				*line = it->line;
			return it;
		}
	}
	return NULL;
}

const char *conf_value_at(conf_t *c, const char *key, size_t idx, const char **file, unsigned *line)
{
	struct conf_item *it = conf_item_at(c, key, idx, file, line);
	return it ? it->value : NULL;
}

const char *conf_filename_at(conf_t *c, const char *key, size_t idx, const char **file,
                             unsigned *line, diag_t *d)
{
	struct conf_item *it = conf_item_at(c, key, idx, file, line);
	if (it == NULL)
		return NULL;
	if (it->value[0] == '\0' && d != NULL)
		diag_error(d, it->file, it->line, "%s: empty file name", key);
	conf_item_resolve(c, it, d);
	return it->value;
}

void conf_key_error(conf_t *c, const char *key, diag_t *d, const char *fmt, ...)
{
	char buf[1024];
	const char *file = c->path;
	unsigned line = 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	conf_item_at(c, key, 0, &file, &line);
	diag_error(d, file, line, "%s", buf);
}

const char *conf_hidden(conf_t *c, const char *key, const char **file, unsigned *line)
{
	const struct conf_item *hidden = NULL;
	bool any_override = false;
	for (size_t i = 0; i < c->n; i++) {
		if (strcmp(c->v[i].key, key) != 0)
			continue;
		if (c->v[i].override)
			any_override = true;
		else
			hidden = &c->v[i];
	}
	if (!any_override || hidden == NULL)
		return NULL;
	*file = hidden->file;
	*line = hidden->line;
	return hidden->value;
}

size_t conf_check_unknown(const conf_t *c, diag_t *d)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n; i++)
		if (!c->v[i].used) {
			diag_error(d, c->v[i].file, c->v[i].line, "unknown key '%s'", c->v[i].key);
			n++;
		}
	return n;
}
