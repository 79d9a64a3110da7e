/*
 * rules_eval_textcat.c - SpamAssassin's TextCat plugin in C: the n-gram
 * language guesser behind check_language (UNWANTED_LANGUAGE_BODY), its
 * directives and the language profiles of SpamAssassin's "languages"
 * file, read once per rules load; and check_body_8bits (BODY_8BITS).
 * Follows Mail::SpamAssassin::Plugin::TextCat (Cavnar and Trenkle's
 * out-of-place measure over the ranks of n-grams 1 to 5).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

#include "rules_int.h"

/* What the plugin reads of the body: enough for the guess, and bounded (TextCat.pm) */
#define TC_TEXT_MAX_BYTES 10000
/* Shorter text is not guessed at: the guesses were unreliable below it (TextCat.pm) */
#define TC_TEXT_MIN_BYTES 256
/* The n-grams compared: 1 to 5 bytes; profile lines longer than that can never match */
#define TC_GRAM_MAX_BYTES 5
/* A languages file larger than this is not a profile set (SpamAssassin's is 130 KB) */
#define TC_FILE_MAX_BYTES (16u << 20)
/* Bound on the whole-number settings, so a message's distance sums stay far from overflow */
#define TC_SETTING_MAX 1000000

/* SpamAssassin's defaults for the settings */
#define TC_DEFAULT_INACTIVE      "bs cy eo et eu fy ga gd is la lt lv rm sa sco sl yi"
#define TC_DEFAULT_MAX_LANGUAGES 3
#define TC_DEFAULT_MAX_NGRAMS    400
#define TC_DEFAULT_ACCEPTABLE    1.02

/* One language's profile: the n-grams of the file's block that the "0 NAME" line ends. */
struct tc_model {
	char *name;    /* as the file names it: "de", "de.utf8", "ru.koi8-r" */
	size_t result; /* its answer: xx and xx.utf8 are one language (results[]) */
	bool skip;     /* inactive_languages and not ok: never compared */
};

/* A distinct n-gram of the profiles and the (model, rank) pairs that hold it. */
struct tc_gram {
	char g[TC_GRAM_MAX_BYTES];
	uint8_t len;       /* 0: an empty slot */
	uint32_t first, n; /* its pairs: post[first .. first + n) */
};

struct tc_post {
	uint32_t model;
	uint32_t rank; /* the n-gram's line in its block, from 1 */
};

struct rules_textcat {
	/* the directives; the last line of each wins, as in SpamAssassin */
	char **ok; /* ok_languages' words; none: the default, "all" */
	size_t nok;
	bool ok_all;
	const char *ok_file; /* where ok_languages was set (interned), for lint */
	unsigned ok_line;
	char **inactive; /* inactive_languages' words; NULL: the default list */
	size_t ninactive;
	bool inactive_set;
	long max_languages, optimal_ngrams, max_ngrams;
	double acceptable;

	/* the profiles (rules_textcat_finish), NULL when none were read */
	char *path;
	struct tc_model *models;
	size_t nmodels;
	char **results; /* the answers' names, in the file's order of first appearance */
	size_t nresults;
	struct tc_gram *grams; /* open addressing, a power of two, at most half full */
	size_t gmask;
	struct tc_post *post;
};

static struct rules_textcat *get(rules_t *r)
{
	if (r->textcat == NULL) {
		struct rules_textcat *t = xalloc_calloc(1, sizeof(*t));
		t->ok_all = true;
		t->max_languages = TC_DEFAULT_MAX_LANGUAGES;
		t->max_ngrams = TC_DEFAULT_MAX_NGRAMS;
		t->acceptable = TC_DEFAULT_ACCEPTABLE;
		r->textcat = t;
	}
	return r->textcat;
}

static void free_words(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/*
 * A language as the profiles name them: two or three lower-case letters,
 * maybe a dot and an encoding ("zh.big5"). SpamAssassin takes any word and
 * never matches a misspelt one; a load error says so instead.
 */
static bool language_word(const char *w, size_t n)
{
	size_t i = 0;
	while (i < n && w[i] >= 'a' && w[i] <= 'z')
		i++;
	if (i < 2 || i > 3)
		return false;
	if (i == n)
		return true;
	if (w[i] != '.' || i + 1 == n)
		return false;
	for (i++; i < n; i++)
		if (!((w[i] >= 'a' && w[i] <= 'z') || (w[i] >= '0' && w[i] <= '9') || w[i] == '-' ||
		      w[i] == '_'))
			return false;
	return true;
}

/* A language list's words, checked; NULL with an error reported. */
static char **language_list(const char *dir, const char *rest, bool all_ok, size_t *nout, diag_t *d,
                            const char *file, unsigned line)
{
	if (*rest == '\0') {
		diag_error(d, file, line, "%s: missing value", dir);
		return NULL;
	}
	char **v = NULL;
	size_t n = 0;
	const char *w;
	size_t wl;
	for (const char *p = rest; rules_eval_word(&p, &w, &wl);) {
		bool all = wl == 3 && strncmp(w, "all", 3) == 0;
		/* inactive_languages all would read as "every language off", which it is not */
		if (all ? !all_ok : !language_word(w, wl)) {
			diag_error(
			    d, file, line,
			    "%s: '%.*s' is no language code (two or three lower-case letters, "
			    "as in the languages file%s)",
			    dir, (int)wl, w, all_ok ? ", or all" : "");
			free_words(v, n);
			return NULL;
		}
		v = xalloc_realloc(v, (n + 1) * sizeof(char *));
		v[n++] = xalloc_strndup(w, wl);
	}
	*nout = n;
	return v;
}

/* A whole number from min to TC_SETTING_MAX, written as SpamAssassin writes numbers. */
static bool whole_number(const char *s, long min, long *out)
{
	const char *p = s + (*s == '+');
	if (*p < '0' || *p > '9')
		return false;
	errno = 0;
	char *end;
	long v = strtol(p, &end, 10);
	/* "3." and "3.0" are SpamAssassin numbers too, and whole */
	if (*end == '.')
		for (end++; *end == '0'; end++)
			;
	if (*end != '\0' || errno != 0 || v < min || v > TC_SETTING_MAX)
		return false;
	*out = v;
	return true;
}

int rules_textcat_directive(rules_t *r, const char *dir, const char *rest, diag_t *d,
                            const char *file, unsigned line)
{
	if (strcmp(dir, "ok_languages") == 0 || strcmp(dir, "inactive_languages") == 0) {
		bool ok = dir[0] == 'o';
		size_t n = 0;
		char **v = language_list(dir, rest, ok, &n, d, file, line);
		if (v == NULL)
			return -1;
		struct rules_textcat *t = get(r);
		if (ok) {
			free_words(t->ok, t->nok);
			t->ok = v;
			t->nok = n;
			t->ok_all = false;
			/* SpamAssassin: "all" anywhere in the list allows every language */
			for (size_t i = 0; i < n; i++)
				if (strcmp(v[i], "all") == 0)
					t->ok_all = true;
			t->ok_file = file;
			t->ok_line = line;
		} else {
			free_words(t->inactive, t->ninactive);
			t->inactive = v;
			t->ninactive = n;
			t->inactive_set = true;
		}
		return 1;
	}
	static const struct {
		const char *name;
		long min;
		size_t off;
	} numbers[] = {
	    {"textcat_max_languages", 1, offsetof(struct rules_textcat, max_languages)},
	    {"textcat_optimal_ngrams", 0, offsetof(struct rules_textcat, optimal_ngrams)},
	    {"textcat_max_ngrams", 1, offsetof(struct rules_textcat, max_ngrams)},
	};
	for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
		if (strcmp(dir, numbers[i].name) != 0)
			continue;
		long v;
		if (*rest == '\0') {
			diag_error(d, file, line, "%s: missing value", dir);
			return -1;
		}
		if (!whole_number(rest, numbers[i].min, &v)) {
			diag_error(d, file, line,
			           "%s: expected a whole number from %ld to %d, not '%s'", dir,
			           numbers[i].min, TC_SETTING_MAX, rest);
			return -1;
		}
		*(long *)((char *)get(r) + numbers[i].off) = v;
		return 1;
	}
	if (strcmp(dir, "textcat_acceptable_score") == 0) {
		if (*rest == '\0') {
			diag_error(d, file, line, "%s: missing value", dir);
			return -1;
		}
		/* SpamAssassin's number syntax: digits, maybe a fraction; no exponent, no "inf" */
		const char *p = rest + (*rest == '+');
		size_t digits = strspn(p, "0123456789");
		const char *q = p + digits;
		if (*q == '.')
			q += 1 + strspn(q + 1, "0123456789");
		double v = digits ? strtod(p, NULL) : 0;
		if (digits == 0 || *q != '\0' || !isfinite(v) || v < 1) {
			diag_error(d, file, line,
			           "%s: expected a number of at least 1 (1.02: languages within "
			           "2%% of the best), not '%s'",
			           dir, rest);
			return -1;
		}
		get(r)->acceptable = v;
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- the profiles */

static struct tc_gram *gram_slot(struct tc_gram *tab, size_t mask, const char *g, size_t n)
{
	for (size_t i = rules_hash_bytes(g, n) & mask;; i = (i + 1) & mask)
		if (tab[i].len == 0 || (tab[i].len == n && memcmp(tab[i].g, g, n) == 0))
			return &tab[i];
}

static char *read_all(const char *path, size_t *len, const char **why)
{
	FILE *fp = fopen(path, "rb");
	if (fp == NULL) {
		*why = strerror(errno);
		return NULL;
	}
	char *text = NULL;
	size_t n = 0, cap = 0, got;
	char chunk[16384];
	while ((got = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		if (n + got > TC_FILE_MAX_BYTES) {
			*why = "larger than 16 MiB";
			free(text);
			fclose(fp);
			return NULL;
		}
		if (n + got + 1 > cap) {
			cap = (n + got + 1) * 2;
			text = xalloc_realloc(text, cap);
		}
		memcpy(text + n, chunk, got);
		n += got;
	}
	bool err = ferror(fp);
	fclose(fp);
	if (err) {
		*why = "read error";
		free(text);
		return NULL;
	}
	if (text == NULL)
		text = xalloc_strdup("");
	text[n] = '\0';
	*len = n;
	return text;
}

/* One n-gram line of a block, kept until the block's "0 NAME" line says whose it is. */
struct tc_line {
	const char *g;
	uint32_t len, model, rank;
};

/*
 * Reads the profiles: each block lists a language's n-grams most frequent
 * first, one a line (bytes, with NUL for a word's edge), and ends with
 * "0 NAME". Lines after the last such line belong to no language. Returns
 * the number of languages read, or -1 with *why set when the file cannot
 * be read.
 */
static long load_models(struct rules_textcat *t, const char *path, const char **why)
{
	size_t len = 0;
	char *text = read_all(path, &len, why);
	if (text == NULL)
		return -1;
	struct tc_line *lines = NULL;
	size_t nlines = 0, cap = 0;
	uint32_t rank = 1;
	for (size_t off = 0; off <= len;) {
		const char *s = text + off;
		const char *nl = memchr(s, '\n', len - off);
		size_t n = nl ? (size_t)(nl - s) : len - off;
		off += n + 1;
		if (n > 2 && s[0] == '0' && s[1] == ' ') {
			t->models =
			    xalloc_realloc(t->models, (t->nmodels + 1) * sizeof(*t->models));
			t->models[t->nmodels++] =
			    (struct tc_model){.name = xalloc_strndup(s + 2, n - 2)};
			rank = 1;
			continue;
		}
		/* every line takes a rank, even one that can never match */
		uint32_t rk = rank++;
		if (n == 0 || n > TC_GRAM_MAX_BYTES)
			continue;
		if (nlines == cap) {
			cap = cap ? cap * 2 : 4096;
			lines = xalloc_realloc(lines, cap * sizeof(*lines));
		}
		lines[nlines++] = (struct tc_line){s, (uint32_t)n, (uint32_t)t->nmodels, rk};
	}
	while (nlines > 0 && lines[nlines - 1].model == t->nmodels)
		nlines--;

	size_t slots = 16;
	while (slots < 2 * nlines)
		slots *= 2;
	t->grams = xalloc_calloc(slots, sizeof(*t->grams));
	t->gmask = slots - 1;
	for (size_t i = 0; i < nlines; i++) {
		struct tc_gram *g = gram_slot(t->grams, t->gmask, lines[i].g, lines[i].len);
		if (g->len == 0) {
			memcpy(g->g, lines[i].g, lines[i].len);
			g->len = (uint8_t)lines[i].len;
		}
		g->n++;
	}
	uint32_t at = 0;
	for (size_t i = 0; i <= t->gmask; i++) {
		t->grams[i].first = at;
		at += t->grams[i].n;
		t->grams[i].n = 0;
	}
	t->post = xalloc_calloc(at ? at : 1, sizeof(*t->post));
	for (size_t i = 0; i < nlines; i++) {
		struct tc_gram *g = gram_slot(t->grams, t->gmask, lines[i].g, lines[i].len);
		struct tc_post *last = g->n ? &t->post[g->first + g->n - 1] : NULL;
		/* a line repeated in a block: its last rank counts, as the plugin's hash keeps it
		 */
		if (last != NULL && last->model == lines[i].model)
			last->rank = lines[i].rank;
		else
			t->post[g->first + g->n++] =
			    (struct tc_post){lines[i].model, lines[i].rank};
	}
	free(lines);
	free(text);

	/* the answers: "xx.utf8" is xx; other encodings keep their name until check_language */
	for (size_t m = 0; m < t->nmodels; m++) {
		char *name = t->models[m].name;
		const char *utf8 = strstr(name, ".utf8");
		size_t rl = utf8 != NULL && utf8 > name ? strcspn(name, ".") : strlen(name);
		size_t k = 0;
		while (k < t->nresults &&
		       !(strlen(t->results[k]) == rl && strncmp(t->results[k], name, rl) == 0))
			k++;
		if (k == t->nresults) {
			t->results = xalloc_realloc(t->results, (k + 1) * sizeof(char *));
			t->results[t->nresults++] = xalloc_strndup(name, rl);
		}
		t->models[m].result = k;
	}
	return (long)t->nmodels;
}

static bool in_words(char *const *v, size_t n, const char *w, size_t wl)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(v[i]) == wl && strncmp(v[i], w, wl) == 0)
			return true;
	return false;
}

/* The inactive languages not made ok: their profiles are never compared. */
static void mark_skipped(struct rules_textcat *t)
{
	static const char *const defaults = TC_DEFAULT_INACTIVE;
	for (size_t m = 0; m < t->nmodels; m++) {
		const char *name = t->models[m].name;
		size_t sl = strcspn(name, ".");
		bool inactive = false;
		if (t->inactive_set) {
			inactive = in_words(t->inactive, t->ninactive, name, sl);
		} else {
			const char *w;
			size_t wl;
			for (const char *p = defaults; !inactive && rules_eval_word(&p, &w, &wl);)
				inactive = wl == sl && strncmp(w, name, sl) == 0;
		}
		t->models[m].skip = inactive && !in_words(t->ok, t->nok, name, sl);
	}
}

/* check_language, defined in this file, for finding the rules that call it. */
static long check_language(struct rules_evalenv *e, const struct rule *ru);

/*
 * The languages file SpamAssassin would read: in the rules directory being
 * loaded, or beside a rules file; the first path that has one wins.
 */
static char *find_languages(const char *const *paths, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (stat(paths[i], &st) < 0)
			continue;
		char *cand;
		if (S_ISDIR(st.st_mode)) {
			size_t l = strlen(paths[i]) + sizeof("/languages");
			cand = xalloc_realloc(NULL, l);
			snprintf(cand, l, "%s/languages", paths[i]);
		} else {
			const char *slash = strrchr(paths[i], '/');
			size_t dl = slash ? (size_t)(slash - paths[i]) + 1 : 0;
			size_t l = dl + sizeof("languages");
			cand = xalloc_realloc(NULL, l);
			snprintf(cand, l, "%.*slanguages", (int)dl, paths[i]);
		}
		if (stat(cand, &st) == 0 && S_ISREG(st.st_mode))
			return cand;
		free(cand);
	}
	return NULL;
}

void rules_textcat_finish(rules_t *r, const char *const *paths, size_t npaths, diag_t *d)
{
	/* the first rule that will run check_language, if any */
	const struct rule *user = NULL;
	for (size_t i = 0; i < r->n && user == NULL; i++) {
		const struct rule *ru = &r->v[i];
		if (ru->defined && !ru->skipped && !ru->disabled && !ru->unused && ru->evaldef &&
		    ru->evaldef->fn == check_language)
			user = ru;
	}
	struct rules_textcat *t = r->textcat;
	/* ok_languages all (the default): the guess is never asked for, so no profile is read */
	if (user == NULL || t == NULL || t->ok_all)
		return;
	char *path = find_languages(paths, npaths);
	if (path == NULL) {
		diag_warn(d, user->file, user->line,
		          "rule %s: no languages file in the rules directories: check_language "
		          "never hits",
		          user->name);
		return;
	}
	const char *why = NULL;
	long n = load_models(t, path, &why);
	if (n <= 0) {
		diag_warn(d, user->file, user->line, "rule %s: %s: %s: check_language never hits",
		          user->name, path, n < 0 ? why : "no language profiles");
		free(path);
		return;
	}
	t->path = path;
	mark_skipped(t);
	for (size_t i = 0; i < t->nok; i++) {
		size_t sl = strcspn(t->ok[i], ".");
		bool found = false;
		for (size_t m = 0; m < t->nmodels && !found; m++)
			found = strcspn(t->models[m].name, ".") == sl &&
			        strncmp(t->models[m].name, t->ok[i], sl) == 0;
		if (!found)
			diag_warn(d, t->ok_file, t->ok_line,
			          "ok_languages: %s has no profile for '%s': never guessed", path,
			          t->ok[i]);
	}
}

void rules_textcat_free(struct rules_textcat *t)
{
	if (t == NULL)
		return;
	free_words(t->ok, t->nok);
	free_words(t->inactive, t->ninactive);
	for (size_t m = 0; m < t->nmodels; m++)
		free(t->models[m].name);
	free(t->models);
	free_words(t->results, t->nresults);
	free(t->grams);
	free(t->post);
	free(t->path);
	free(t);
}

/* ---------------------------------------------------------------- the guess */

/*
 * The plugin's word bytes: all but digits, blanks and ASCII punctuation
 * other than "'" (spelt out: <ctype.h> would follow the locale).
 */
static bool word_byte(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return false;
	if (c == ' ' || (c >= '\t' && c <= '\r'))
		return false;
	return c == 0 || strchr("-!\"#$%&()*+,./:;<=>?@[\\]^_`{|}~", c) == NULL;
}

/* The letters of the plugin's ISO 8859-1 case folding: ASCII's and Latin-1's. */
static bool latin1_letter(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= 0xc0 && c <= 0xfe && c != 0xd7 && c != 0xf7 && c != 0xdf);
}

struct tc_count {
	char g[TC_GRAM_MAX_BYTES];
	uint8_t len;
	uint32_t count;
};

/*
 * The n-grams 1 to 5 of each word (with NUL at its two edges) counted.
 * The plugin reads the body as bytes (SpamAssassin hands it UTF-8), so a
 * word with an upper-case ASCII letter and four letters in a row is
 * lower-cased as ISO 8859-1, even where that turns a UTF-8 lead byte
 * into another one: the profiles were made and are matched that way.
 */
static size_t count_grams(arena_t *a, const char *s, size_t n, struct tc_count **out)
{
	size_t occurrences = 0;
	for (size_t i = 0; i < n;) {
		if (!word_byte((unsigned char)s[i])) {
			i++;
			continue;
		}
		size_t b = i;
		while (i < n && word_byte((unsigned char)s[i]))
			i++;
		size_t wl = i - b + 2;
		occurrences += wl < 5 ? wl * (wl + 1) / 2 : 5 * wl - 10;
	}
	size_t slots = 16;
	while (slots < 2 * occurrences)
		slots *= 2;
	size_t mask = slots - 1;
	struct tc_count *tab = arena_zalloc(a, slots * sizeof(*tab));
	size_t distinct = 0;
	char *word = arena_alloc(a, n + 2);
	for (size_t i = 0; i < n;) {
		if (!word_byte((unsigned char)s[i])) {
			i++;
			continue;
		}
		size_t b = i;
		bool upper = false;
		size_t run = 0, best_run = 0;
		while (i < n && word_byte((unsigned char)s[i])) {
			unsigned char c = (unsigned char)s[i];
			upper |= c >= 'A' && c <= 'Z';
			run = latin1_letter(c) ? run + 1 : 0;
			if (run > best_run)
				best_run = run;
			i++;
		}
		size_t wl = i - b;
		word[0] = '\0';
		for (size_t k = 0; k < wl; k++) {
			unsigned char c = (unsigned char)s[b + k];
			if (upper && best_run >= 4 &&
			    ((c >= 'A' && c <= 'Z') || (c >= 0xc0 && c <= 0xde && c != 0xd7)))
				c = (unsigned char)(c + 0x20);
			word[k + 1] = (char)c;
		}
		word[wl + 1] = '\0';
		wl += 2;
		for (size_t k = 0; k < wl; k++)
			for (size_t g = 1; g <= TC_GRAM_MAX_BYTES && k + g <= wl; g++) {
				struct tc_count *c = NULL;
				for (size_t h = rules_hash_bytes(word + k, g) & mask;;
				     h = (h + 1) & mask)
					if (tab[h].len == 0 ||
					    (tab[h].len == g &&
					     memcmp(tab[h].g, word + k, g) == 0)) {
						c = &tab[h];
						break;
					}
				if (c->len == 0) {
					memcpy(c->g, word + k, g);
					c->len = (uint8_t)g;
					distinct++;
				}
				c->count++;
			}
	}
	struct tc_count *v = arena_alloc(a, (distinct ? distinct : 1) * sizeof(*v));
	size_t k = 0;
	for (size_t h = 0; h < slots; h++)
		if (tab[h].len)
			v[k++] = tab[h];
	*out = v;
	return k;
}

/* Most frequent first; among equals in byte order (a prefix first), as the plugin sorts. */
static int cmp_count(const void *pa, const void *pb)
{
	const struct tc_count *a = pa, *b = pb;
	if (a->count != b->count)
		return a->count > b->count ? -1 : 1;
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->g, b->g, n);
	if (c != 0)
		return c;
	return (int)a->len - (int)b->len;
}

/* The body text as the plugin reads it, and its guess, once per message. */
struct tc_guess {
	const char *text; /* the body lines joined */
	size_t text_len;
	bool guessed;
	size_t len;           /* the guessed text's length (X-Languages-Length) */
	const char **answers; /* the languages within textcat_acceptable_score of the best */
	size_t nanswers;
};

static struct tc_guess *guess_state(struct rules_evalenv *e)
{
	struct tc_guess *g = e->cache[RULES_EVAL_CACHE_TEXTCAT];
	if (g == NULL) {
		g = arena_zalloc(e->a, sizeof(*g));
		g->text = rules_body_joined(e->a, e->m, e->mi, &g->text_len);
		e->cache[RULES_EVAL_CACHE_TEXTCAT] = g;
	}
	return g;
}

/* Appends s[0..n) with every match of re made one space. */
static size_t replace_all(struct rules_eval_re *re, const char *s, size_t n, char *out)
{
	size_t o = 0, from = 0, st, ml;
	while (from < n && rules_eval_re_find(re, s, n, from, &st, &ml)) {
		memcpy(out + o, s + from, st - from);
		o += st - from;
		out[o++] = ' ';
		from = st + (ml ? ml : 1);
	}
	if (from < n) {
		memcpy(out + o, s + from, n - from);
		o += n - from;
	}
	out[o] = '\0';
	return o;
}

static void guess(struct rules_evalenv *e, const struct rules_textcat *t, struct tc_guess *g)
{
	g->guessed = true;
	/* subject prefixes ("Re: Fwd:"), links and addresses say nothing of the language */
	static struct rules_eval_re prefix = {.pattern = "^(?:[a-z]{2,12}:\\s*){1,10}",
	                                      .options = PCRE2_CASELESS | PCRE2_ANCHORED};
	static struct rules_eval_re links[] = {
	    {.pattern = "https?(?::\\/\\/|:&#x2F;&#x2F;|%3A%2F%2F)\\S{1,1024}"},
	    {.pattern = "\\S{1,64}?@[a-zA-Z]\\S{1,128}"},
	    {.pattern = "\\bwww\\.\\S{1,128}"},
	};
	const char *s = g->text;
	size_t n = g->text_len, st, ml;
	if (rules_eval_re_find(&prefix, s, n, 0, &st, &ml)) {
		s += ml;
		n -= ml;
	}
	for (size_t k = 0; k < sizeof(links) / sizeof(links[0]); k++) {
		char *o = arena_alloc(e->a, n + 1);
		n = replace_all(&links[k], s, n, o);
		s = o;
	}
	if (n > TC_TEXT_MAX_BYTES)
		n = TC_TEXT_MAX_BYTES;
	g->len = n;
	if (n < TC_TEXT_MIN_BYTES || t->nmodels == 0)
		return;

	struct tc_count *v;
	size_t nv = count_grams(e->a, s, n, &v);
	if (t->optimal_ngrams > 0) {
		size_t k = 0;
		for (size_t i = 0; i < nv; i++)
			if (v[i].count > (uint32_t)t->optimal_ngrams)
				v[k++] = v[i];
		nv = k;
	}
	qsort(v, nv, sizeof(*v), cmp_count);
	if (nv > (size_t)t->max_ngrams)
		nv = (size_t)t->max_ngrams;

	/* out-of-place distance: |rank in the profile - rank here|, max_ngrams when absent */
	int64_t maxp = t->max_ngrams;
	int64_t *score = arena_alloc(e->a, t->nmodels * sizeof(*score));
	for (size_t m = 0; m < t->nmodels; m++)
		score[m] = (int64_t)nv * maxp;
	for (size_t i = 0; i < nv; i++) {
		const struct tc_gram *gr = gram_slot(t->grams, t->gmask, v[i].g, v[i].len);
		for (uint32_t k = 0; gr->len && k < gr->n; k++) {
			const struct tc_post *p = &t->post[gr->first + k];
			int64_t d = (int64_t)p->rank - (int64_t)i;
			score[p->model] += (d < 0 ? -d : d) - maxp;
		}
	}
	/* per answer, its best profile */
	int64_t *best = arena_alloc(e->a, t->nresults * sizeof(*best));
	bool *have = arena_zalloc(e->a, t->nresults * sizeof(*have));
	for (size_t m = 0; m < t->nmodels; m++) {
		if (t->models[m].skip)
			continue;
		size_t k = t->models[m].result;
		if (!have[k] || score[m] < best[k])
			best[k] = score[m];
		have[k] = true;
	}
	size_t *order = arena_alloc(e->a, t->nresults * sizeof(*order));
	size_t no = 0;
	for (size_t k = 0; k < t->nresults; k++) {
		if (!have[k])
			continue;
		/* insertion by score; equal scores keep the file's order */
		size_t at = no;
		while (at > 0 && best[order[at - 1]] > best[k]) {
			order[at] = order[at - 1];
			at--;
		}
		order[at] = k;
		no++;
	}
	if (no == 0)
		return;
	double limit = t->acceptable * (double)best[order[0]];
	size_t na = 1;
	while (na < no && (double)best[order[na]] < limit)
		na++;
	/* more than that many languages look alike: the language is unknown */
	if (na > (size_t)t->max_languages)
		return;
	g->answers = arena_alloc(e->a, na * sizeof(char *));
	for (size_t i = 0; i < na; i++)
		g->answers[i] = t->results[order[i]];
	g->nanswers = na;
}

/*
 * check_language(): none of the guessed languages is in ok_languages.
 * Never with ok_languages all (the default), without profiles, or when
 * no language was guessed (text too short, too many alike).
 */
static long check_language(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const struct rules_textcat *t = e->r->textcat;
	if (t == NULL || t->ok_all || t->nmodels == 0)
		return 0;
	struct tc_guess *g = guess_state(e);
	if (!g->guessed)
		guess(e, t, g);
	if (g->nanswers == 0)
		return 0;
	/* on short text the plugin takes Scots for English, which it is often mistaken for */
	bool sco_is_en = g->len < 1024 * g->nanswers;
	abuf_t detail;
	abuf_init(&detail, e->a, 64);
	abuf_puts(&detail, "Languages detected:");
	for (size_t i = 0; i < g->nanswers; i++) {
		size_t ml = strcspn(g->answers[i], ".");
		const char *match = g->answers[i];
		if (sco_is_en && ml == 3 && strncmp(match, "sco", 3) == 0) {
			match = "en";
			ml = 2;
		}
		for (size_t k = 0; k < t->nok; k++) {
			const char *ok =
			    sco_is_en && strcmp(t->ok[k], "sco") == 0 ? "en" : t->ok[k];
			if (strlen(ok) == ml && strncmp(ok, match, ml) == 0)
				return 0;
		}
		abuf_printf(&detail, " %.*s", (int)ml, match);
	}
	e->detail = detail.data;
	return 1;
}

/*
 * check_body_8bits(): eight bytes above 0x7f in a row in a body line,
 * unless ok_languages allows all, or a language whose text has such runs
 * (the plugin's list, which reads ok_languages; ok_locales plays no part).
 */
static long check_body_8bits(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	static const char *const eight_bit =
	    "am ar be bg cs el et fa fi he hi hy is ja ka ko mr pt ru ta th tr uk vi yi zh";
	const struct rules_textcat *t = e->r->textcat;
	if (t == NULL || t->ok_all)
		return 0;
	for (size_t k = 0; k < t->nok; k++) {
		const char *w;
		size_t wl;
		for (const char *p = eight_bit; rules_eval_word(&p, &w, &wl);)
			if (strlen(t->ok[k]) == wl && strncmp(t->ok[k], w, wl) == 0)
				return 0;
	}
	struct tc_guess *g = guess_state(e);
	size_t run = 0;
	for (size_t i = 0; i < g->text_len; i++) {
		run = (unsigned char)g->text[i] >= 0x80 ? run + 1 : 0;
		if (run == 8)
			return 1;
	}
	return 0;
}

const struct rules_evaldef rules_eval_textcat_defs[] = {
    {"check_language", check_language, 0, 0, NULL},
    {"check_body_8bits", check_body_8bits, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
