/*
 * rules_eval_image.c - SpamAssassin's ImageInfo and PDFInfo tests over the
 * message's base64 GIF, PNG and JPEG parts and its PDF parts: counts,
 * dimensions read from the image headers, pixel coverage, names, and the
 * few PDF facts SpamAssassin reads line by line (among them the document
 * details: author, creator, producer, title and the two dates) and the
 * MD5 digests its pdf_match_md5 and pdf_match_fuzzy_md5 compare. Follows
 * Mail::SpamAssassin::Plugin::ImageInfo and ::PDFInfo.
 */
#include <ctype.h>

#include "rules_int.h"

/* Distinct dimensions kept per message; more are not recorded (bounded memory). */
#define MAX_DIMS 256

enum { IMG_GIF, IMG_PNG, IMG_JPEG, IMG_ALL, IMG_N };
static const char *const type_names[IMG_N] = {"gif", "png", "jpeg", "all"};

struct dim {
	double h, w;
};

struct dimset {
	struct dim d[MAX_DIMS];
	size_t n;
};

struct imagefacts {
	double count[IMG_N], pc[IMG_N];
	struct dimset dims[IMG_N];
	const char **names; /* the named images whose size was read */
	size_t nnames;
};

/* Distinct values kept per PDF detail per message (bounded memory). */
#define PDF_DETAIL_MAX 32
/* SpamAssassin's details, in the order its PDFInfo reads them */
static const char *const pdf_detail_names[] = {"author",   "creator",  "created",
                                               "modified", "producer", "title"};
enum { PDF_DETAILS = sizeof(pdf_detail_names) / sizeof(pdf_detail_names[0]) };

/* PDFs whose digests are kept per message (bounded memory). */
#define PDF_DIGESTS_MAX 64

/* What PDFInfo's MD5 digests are taken of, for one PDF part. */
struct pdfsrc {
	const char *data, *fuzzy, *tags;
	size_t len, nfuzzy, ntags;
};

struct pdffacts {
	struct pdfsrc src[PDF_DIGESTS_MAX];
	size_t nsrc;
	double count, images, pc;
	bool encrypted, has_dims;
	struct dimset dims;
	const char **names;
	size_t nnames;
	const char *detail[PDF_DETAILS][PDF_DETAIL_MAX];
	size_t ndetail[PDF_DETAILS];
};

static void dims_add(struct dimset *s, double h, double w)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->d[i].h == h && s->d[i].w == w)
			return;
	if (s->n < MAX_DIMS)
		s->d[s->n++] = (struct dim){h, w};
}

static unsigned be16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static unsigned long be32(const unsigned char *p)
{
	return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 |
	       p[3];
}

/* GIF87a/89a: the logical screen's width and height, little-endian, after the magic. */
static bool gif_size(const unsigned char *d, size_t n, double *h, double *w)
{
	if (n < 10 || (memcmp(d, "GIF87a", 6) != 0 && memcmp(d, "GIF89a", 6) != 0))
		return false;
	*w = (unsigned)d[6] | (unsigned)d[7] << 8;
	*h = (unsigned)d[8] | (unsigned)d[9] << 8;
	return true;
}

/*
 * PNG: the IHDR chunk's width and height. SpamAssassin steps over chunk
 * headers only (8 bytes), not their data, until IHDR with length 13 or
 * IEND; IHDR comes first in a valid file, so the step only matters for
 * broken ones, where this does the same.
 */
static bool png_size(const unsigned char *d, size_t n, double *h, double *w)
{
	if (n < 8 || memcmp(d, "\x89PNG\r\n\x1a\n", 8) != 0)
		return false;
	for (size_t pos = 8; pos + 8 <= n; pos += 8) {
		if (memcmp(d + pos + 4, "IEND", 4) == 0)
			return false;
		if (memcmp(d + pos + 4, "IHDR", 4) == 0 && be32(d + pos) == 13) {
			if (pos + 16 > n)
				return false;
			*w = (double)be32(d + pos + 8);
			*h = (double)be32(d + pos + 12);
			return true;
		}
	}
	return false;
}

/* JPEG: the first start-of-frame segment's height and width, walking segments from SOI. */
static bool jpeg_size(const unsigned char *d, size_t n, double *h, double *w)
{
	if (n < 2 || d[0] != 0xFF || d[1] != 0xD8)
		return false;
	for (size_t pos = 2; pos + 4 <= n;) {
		unsigned mark = d[pos + 1], len = be16(d + pos + 2);
		if (d[pos] != 0xFF || mark == 0xDA || mark == 0xD9 || len < 2)
			return false;
		pos += 4;
		size_t blen = len - 2 <= n - pos ? len - 2 : n - pos;
		if ((mark >= 0xC0 && mark <= 0xC3) || (mark >= 0xC5 && mark <= 0xC7) ||
		    (mark >= 0xC9 && mark <= 0xCB) || (mark >= 0xCD && mark <= 0xCF)) {
			if (blen < 5)
				return false;
			*h = be16(d + pos + 1);
			*w = be16(d + pos + 3);
			return true;
		}
		pos += blen;
	}
	return false;
}

static void add_name(arena_t *a, const char ***names, size_t *n, size_t cap, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*names)[i], name) == 0)
			return;
	if (*names == NULL)
		*names = arena_alloc(a, cap * sizeof(**names));
	if (*n < cap)
		(*names)[(*n)++] = name;
}

static const struct imagefacts *image_facts(struct rules_evalenv *e)
{
	struct imagefacts *f = e->cache[RULES_EVAL_CACHE_IMAGE];
	if (f != NULL)
		return f;
	f = arena_alloc(e->a, sizeof(*f));
	memset(f, 0, sizeof(*f));
	e->cache[RULES_EVAL_CACHE_IMAGE] = f;
	size_t np = e->mi ? mime_part_count(e->mi) : 0;
	for (size_t i = 0; i < np; i++) {
		const mime_part_t *p = mime_part(e->mi, i);
		const char *ct = p->content_type;
		int t;
		if (ct == NULL || strncmp(ct, "image/", 6) != 0)
			continue;
		if (strcmp(ct + 6, "gif") == 0)
			t = IMG_GIF;
		else if (strcmp(ct + 6, "png") == 0)
			t = IMG_PNG;
		else if (strcmp(ct + 6, "jpeg") == 0 || strcmp(ct + 6, "jpg") == 0)
			t = IMG_JPEG;
		else
			continue;
		/* only base64 parts, as SpamAssassin reads them */
		if (p->encoding == NULL || strcmp(p->encoding, "base64") != 0)
			continue;
		f->count[t]++;
		const unsigned char *d = (const unsigned char *)p->decoded;
		size_t n = d ? p->decoded_len : 0;
		double h = 0, w = 0;
		bool ok = t == IMG_GIF   ? gif_size(d, n, &h, &w)
		          : t == IMG_PNG ? png_size(d, n, &h, &w)
		                         : jpeg_size(d, n, &h, &w);
		if (!ok || h == 0 || w == 0)
			continue;
		f->pc[t] += h * w;
		dims_add(&f->dims[t], h, w);
		dims_add(&f->dims[IMG_ALL], h, w);
		if (p->filename && *p->filename)
			add_name(e->a, &f->names, &f->nnames, np, p->filename);
	}
	for (int t = 0; t < IMG_ALL; t++) {
		f->count[IMG_ALL] += f->count[t];
		f->pc[IMG_ALL] += f->pc[t];
	}
	return f;
}

/* SpamAssassin's result_check: min <= value <= max, max itself excluded for ratios. */
static bool in_range(const struct rule *ru, size_t imin, double v, bool nomaxequal)
{
	double min = ru->eargn[imin];
	if (v < min)
		return false;
	if (ru->neargs > imin + 1) {
		double max = ru->eargn[imin + 1];
		if (v > max || (nomaxequal && v == max))
			return false;
	}
	return true;
}

static int img_type(const struct rule *ru)
{
	for (int t = 0; t < IMG_N; t++)
		if (strcmp(ru->eargs[0], type_names[t]) == 0)
			return t;
	return -1;
}

static const char *check_type(const struct rule *ru)
{
	/* SpamAssassin never hits on another type; say so at load instead */
	return img_type(ru) < 0 ? "~unknown image type (gif, png, jpeg or all)" : NULL;
}

static bool size_range(const struct dimset *s, const struct rule *ru, size_t i)
{
	double minh = ru->eargn[i], minw = ru->eargn[i + 1];
	bool hasmaxh = ru->neargs > i + 2, hasmaxw = ru->neargs > i + 3;
	double maxh = hasmaxh ? ru->eargn[i + 2] : 0;
	double maxw = hasmaxw ? ru->eargn[i + 3] : 0;
	for (size_t k = 0; k < s->n; k++) {
		const struct dim *d = &s->d[k];
		if (d->h < minh || d->w < minw || (hasmaxh && d->h > maxh) ||
		    (hasmaxw && d->w > maxw))
			continue;
		return true;
	}
	return false;
}

/* Some image of s is exactly ru's arguments i (height) and i + 1 (width). */
static bool size_exact(const struct dimset *s, const struct rule *ru, size_t i)
{
	double hh = ru->eargn[i], ww = ru->eargn[i + 1];
	for (size_t k = 0; k < s->n; k++)
		if (s->d[k].h == hh && s->d[k].w == ww)
			return true;
	return false;
}

/* The body's length as body tests see it: the Subject line, then the text. */
static size_t text_len(struct rules_evalenv *e)
{
	size_t n = 0;
	if (e->mi)
		(void)mime_body(e->mi, &n);
	return n;
}

static long image_count(struct rules_evalenv *e, const struct rule *ru)
{
	return in_range(ru, 1, image_facts(e)->count[img_type(ru)], false);
}

static long pixel_coverage(struct rules_evalenv *e, const struct rule *ru)
{
	return in_range(ru, 1, image_facts(e)->pc[img_type(ru)], false);
}

static long image_to_text_ratio(struct rules_evalenv *e, const struct rule *ru)
{
	double pc = image_facts(e)->pc[img_type(ru)];
	size_t n = text_len(e);
	return n > 0 && pc > 0 && in_range(ru, 1, (double)n / pc, true);
}

/* image_size_exact(type, height, width) */
static long image_size_exact(struct rules_evalenv *e, const struct rule *ru)
{
	return size_exact(&image_facts(e)->dims[img_type(ru)], ru, 1);
}

/* image_size_range(type, minheight, minwidth[, maxheight[, maxwidth]]) */
static long image_size_range(struct rules_evalenv *e, const struct rule *ru)
{
	return size_range(&image_facts(e)->dims[img_type(ru)], ru, 1);
}

static long image_named(struct rules_evalenv *e, const struct rule *ru)
{
	const struct imagefacts *f = image_facts(e);
	for (size_t i = 0; i < f->nnames; i++)
		if (strcmp(f->names[i], ru->eargs[0]) == 0)
			return 1;
	return 0;
}

/* ---------------------------------------------------------------- PDF */

/* A run of digits as a number, saturated (PDF numbers are text; Perl reads them as doubles). */
static size_t digits(const char *s, size_t n, double *v)
{
	size_t i = 0;
	*v = 0;
	while (i < n && isdigit((unsigned char)s[i]))
		*v = *v * 10 + (s[i++] - '0');
	return i;
}

/* Where the k bytes of key first occur in s[0..n), or NULL. */
static const char *mem_find(const char *s, size_t n, const char *key, size_t k)
{
	for (size_t i = 0; i + k <= n; i++)
		if (s[i] == key[0] && memcmp(s + i, key, k) == 0)
			return s + i;
	return NULL;
}

static size_t spaces(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && isspace((unsigned char)s[i]))
		i++;
	return i;
}

/* "W n n H n n cm" spanning the whole line: an image drawn at W x H. */
static bool cm_line(const char *s, size_t n, double *w, double *h)
{
	size_t i = 0;
	double v[6];
	for (int k = 0; k < 6; k++) {
		size_t dl = digits(s + i, n - i, &v[k]);
		if (dl == 0)
			return false;
		i += dl;
		size_t sl = spaces(s + i, n - i);
		if (sl == 0)
			return false;
		i += sl;
	}
	if (n - i != 2 || memcmp(s + i, "cm", 2) != 0)
		return false;
	*w = v[0];
	*h = v[3];
	return true;
}

/* "/Width W/Height H" anywhere in the line (one white-space character after each key). */
static bool width_height(const char *s, size_t n, double *w, double *h)
{
	for (const char *p = s; (p = mem_find(p, n - (size_t)(p - s), "/Width", 6)) != NULL; p++) {
		size_t i = (size_t)(p - s) + 6;
		if (i >= n || !isspace((unsigned char)s[i]))
			continue;
		i++;
		size_t dl = digits(s + i, n - i, w);
		if (dl == 0)
			continue;
		i += dl;
		if (n - i < 8 || memcmp(s + i, "/Height", 7) != 0 ||
		    !isspace((unsigned char)s[i + 7]))
			continue;
		i += 8;
		if (digits(s + i, n - i, h) > 0)
			return true;
	}
	return false;
}

/* The line starts with key, one white-space character and a digit. */
static bool key_number(const char *s, size_t n, const char *key)
{
	size_t k = strlen(key);
	return n >= k + 2 && memcmp(s, key, k) == 0 && isspace((unsigned char)s[k]) &&
	       isdigit((unsigned char)s[k + 1]);
}

/*
 * A string of a PDF dictionary as SpamAssassin's _parse_string reads it:
 * "<hex>" as the bytes of its digit pairs, "(text)" with its octal escapes
 * (not after a backslash) decoded and \( \) \\ unescaped; a UTF-16 byte
 * order mark dropped with every NUL after it; at most 256 bytes.
 */
static const char *pdf_string(arena_t *a, const char *s, size_t n)
{
	char *out = arena_alloc(a, n + 1);
	size_t o = 0;
	if (s[0] == '<') {
		int hi = -1;
		for (size_t i = 1; i + 1 < n; i++) {
			int v = isdigit((unsigned char)s[i])    ? s[i] - '0'
			        : isxdigit((unsigned char)s[i]) ? (s[i] | 0x20) - 'a' + 10
			                                        : -1;
			if (v < 0) {
				hi = -1; /* a pair is two digits in a row */
				continue;
			}
			if (hi < 0) {
				hi = v;
			} else {
				out[o++] = (char)(hi * 16 + v);
				hi = -1;
			}
		}
	} else {
		for (size_t i = 1; i + 1 < n; i++) {
			if (s[i] == '\\' && i + 4 <= n - 1 && s[i + 1] >= '0' && s[i + 1] <= '3' &&
			    s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' &&
			    s[i + 3] <= '7' && (i == 1 || s[i - 1] != '\\')) {
				out[o++] = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 +
				                  (s[i + 3] - '0'));
				i += 3;
			} else {
				out[o++] = s[i];
			}
		}
	}
	size_t k = 0;
	if (o >= 2 && (((unsigned char)out[0] == 0xfe && (unsigned char)out[1] == 0xff) ||
	               ((unsigned char)out[0] == 0xff && (unsigned char)out[1] == 0xfe))) {
		for (size_t i = 2; i < o; i++)
			if (out[i] != '\0')
				out[k++] = out[i];
		o = k;
	}
	if (s[0] != '<') {
		/* \( \) \\ after the octal escapes, as SpamAssassin does it */
		k = 0;
		for (size_t i = 0; i < o; i++) {
			if (out[i] == '\\' && i + 1 < o &&
			    (out[i + 1] == '(' || out[i + 1] == ')' || out[i + 1] == '\\'))
				i++;
			out[k++] = out[i];
		}
		o = k;
	}
	if (o > 256)
		o = 256;
	out[o] = '\0';
	return out;
}

/*
 * The detail after key on line s (SpamAssassin: "/Author\s{0,2}" and a
 * "(...)" string up to the first ')' not after a backslash, or a "<...>"
 * one; for the dates "(D:" and the digits after it), or NULL.
 */
static const char *pdf_detail(arena_t *a, const char *s, size_t n, const char *key, bool date)
{
	size_t k = strlen(key);
	for (const char *at = mem_find(s, n, key, k); at != NULL;
	     at = mem_find(at + 1, (size_t)(s + n - at - 1), key, k)) {
		const char *p = at + k, *end = s + n;
		for (int sp = 0; sp < 2 && p < end && isspace((unsigned char)*p); sp++)
			p++;
		if (date) {
			if (end - p < 4 || memcmp(p, "(D:", 3) != 0 ||
			    !isdigit((unsigned char)p[3]))
				continue;
			const char *d = p + 3;
			while (d < end && isdigit((unsigned char)*d))
				d++;
			size_t len = (size_t)(d - p - 3);
			return arena_strndup(a, p + 3, len > 256 ? 256 : len);
		}
		if (p < end && *p == '(') {
			for (const char *q = p + 1; q < end; q++)
				if (*q == ')' && q[-1] != '\\')
					return pdf_string(a, p, (size_t)(q + 1 - p));
		} else if (p < end && *p == '<') {
			const char *q = memchr(p, '>', (size_t)(end - p));
			if (q != NULL)
				return pdf_string(a, p, (size_t)(q + 1 - p));
		}
	}
	return NULL;
}

static void pdf_details(arena_t *a, struct pdffacts *f, const char *s, size_t n)
{
	static const char *const keys[PDF_DETAILS] = {"/Author",  "/Creator",  "/CreationDate",
	                                              "/ModDate", "/Producer", "/Title"};
	for (size_t k = 0; k < PDF_DETAILS; k++) {
		const char *v = pdf_detail(a, s, n, keys[k], k == 2 || k == 3);
		if (v == NULL)
			continue;
		bool seen = false;
		for (size_t i = 0; i < f->ndetail[k] && !seen; i++)
			seen = strcmp(f->detail[k][i], v) == 0;
		if (!seen && f->ndetail[k] < PDF_DETAIL_MAX)
			f->detail[k][f->ndetail[k]++] = v;
	}
}

/*
 * A PDF part's data as PDFInfo reads it: decoded, a UTF-8 byte order mark
 * dropped; false when the magic "%PDF-d.d" does not start within its first
 * 1025 bytes.
 */
static bool pdf_data(const mime_part_t *p, const char **data, size_t *len)
{
	const char *d = p->decoded;
	size_t n = d ? p->decoded_len : 0;
	if (n >= 3 && memcmp(d, "\xef\xbb\xbf", 3) == 0) {
		d += 3;
		n -= 3;
	}
	bool magic = false;
	for (size_t i = 0; i <= 1024 && i + 8 <= n && !magic; i++)
		magic = memcmp(d + i, "%PDF-", 5) == 0 && isdigit((unsigned char)d[i + 5]) &&
		        d[i + 6] == '.' && isdigit((unsigned char)d[i + 7]);
	*data = d;
	*len = n;
	return magic;
}

/*
 * The image size one line of a PDF gives once an /Image was seen: a "cm"
 * operator, or /Width and /Height together; a line starting with /Width or
 * /Height alone gives none. False when the line gives no size.
 */
static bool pdf_line_size(const char *s, size_t len, double *w, double *h)
{
	*w = *h = 0;
	if (cm_line(s, len, w, h)) {
	} else if (key_number(s, len, "/Width") || key_number(s, len, "/Height")) {
		*w = *h = 0;
	} else if (!width_height(s, len, w, h)) {
		*w = *h = 0;
	}
	return *w > 0 && *h > 0;
}

/* A line the fuzzy digest leaves out: a comment, or one giving a size or a box. */
static bool pdf_fuzzy_skipped(const char *s, size_t len)
{
	static const char *const keys[] = {"/Height", "/Width", "/MediaBox", "/CropBox"};
	double w, h;
	if (s[0] == '%' || cm_line(s, len, &w, &h))
		return true;
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		if (len >= strlen(keys[k]) && memcmp(s, keys[k], strlen(keys[k])) == 0)
			return true;
	return false;
}

/*
 * One PDF part, line by line as SpamAssassin reads it: the image sizes it
 * finds on one line (a "cm" operator, or /Width and /Height together) after
 * an /Image, the /Encrypt flag, the document details, and the name.
 */
static void pdf_part(struct rules_evalenv *e, struct pdffacts *f, const mime_part_t *p, size_t np)
{
	const char *d;
	size_t n;
	if (!pdf_data(p, &d, &n))
		return;
	if (p->filename && *p->filename)
		add_name(e->a, &f->names, &f->nnames, np, p->filename);
	struct pdfsrc *src = f->nsrc < PDF_DIGESTS_MAX ? &f->src[f->nsrc++] : NULL;
	abuf_t fuzzy, tags;
	if (src != NULL) {
		src->data = d;
		src->len = n;
		abuf_init(&fuzzy, e->a, 512);
		abuf_init(&tags, e->a, 128);
	}
	bool got_image = false, more_fuzzy = true;
	size_t lines = 0;
	double th = 0, tw = 0, area = 0;
	for (size_t off = 0; off < n;) {
		const char *nl = memchr(d + off, '\n', n - off);
		size_t len = nl ? (size_t)(nl - (d + off)) : n - off;
		const char *s = d + off;
		off += len + 1;
		if (len == 0)
			continue;
		if (more_fuzzy && ++lines < 70) {
			/* PDFInfo strips the trailing white space off the line itself,
			 * so that a "cm" line ended by CR gives its size here and not
			 * beyond the fuzzy digest's lines */
			if (!pdf_fuzzy_skipped(s, len)) {
				while (len > 0 && isspace((unsigned char)s[len - 1]))
					len--;
				if (src != NULL)
					abuf_append(&fuzzy, s, len);
			}
			if (mem_find(s, len, "stream", 6) != NULL)
				more_fuzzy = false;
		}
		if (mem_find(s, len, "/Image", 6) != NULL)
			got_image = true;
		if (len >= 8 && memcmp(s, "/Encrypt", 8) == 0)
			f->encrypted = true;
		if (memchr(s, '/', len) != NULL) {
			pdf_details(e->a, f, s, len);
			if (src != NULL && s[0] == '/') {
				size_t t = 1;
				while (t < len && isalpha((unsigned char)s[t]))
					t++;
				abuf_append(&tags, s + 1, t - 1);
			}
		}
		if (!got_image)
			continue;
		double w, h;
		if (pdf_line_size(s, len, &w, &h)) {
			th += h;
			tw += w;
			area += w * h;
			dims_add(&f->dims, h, w);
			f->has_dims = true;
			f->images++;
			got_image = false;
			more_fuzzy = false;
		}
	}
	if (src != NULL) {
		src->fuzzy = fuzzy.data;
		src->nfuzzy = fuzzy.len;
		src->tags = tags.data;
		src->ntags = tags.len;
	}
	if (th > 0 && tw > 0) {
		dims_add(&f->dims, th, tw);
		f->has_dims = true;
	}
	if (area > 0)
		f->pc = area; /* SpamAssassin keeps the last PDF's total */
}

static bool ends_pdf_name(const char *name)
{
	size_t l = name ? strlen(name) : 0;
	return l >= 4 && name[l - 4] == '.' &&
	       (tolower((unsigned char)name[l - 3]) == 'p' ||
	        tolower((unsigned char)name[l - 3]) == 'f') &&
	       tolower((unsigned char)name[l - 2]) == 'd' &&
	       tolower((unsigned char)name[l - 1]) == 'f';
}

/* A part PDFInfo reads: image/pdf or application/pdf, or an octet-stream named *.pdf. */
static bool pdf_candidate(const mime_part_t *p)
{
	const char *ct = p->content_type ? p->content_type : "";
	const char *sub = strncmp(ct, "image/", 6) == 0          ? ct + 6
	                  : strncmp(ct, "application/", 12) == 0 ? ct + 12
	                                                         : NULL;
	if (sub == NULL || (strcmp(sub, "pdf") != 0 && strcmp(sub, "octet-stream") != 0))
		return false;
	return strcmp(sub, "pdf") == 0 || ends_pdf_name(p->filename);
}

static const struct pdffacts *pdf_facts(struct rules_evalenv *e)
{
	struct pdffacts *f = e->cache[RULES_EVAL_CACHE_PDF];
	if (f != NULL)
		return f;
	f = arena_alloc(e->a, sizeof(*f));
	memset(f, 0, sizeof(*f));
	e->cache[RULES_EVAL_CACHE_PDF] = f;
	size_t np = e->mi ? mime_part_count(e->mi) : 0;
	for (size_t i = 0; i < np; i++) {
		const mime_part_t *p = mime_part(e->mi, i);
		if (!pdf_candidate(p))
			continue;
		pdf_part(e, f, p, np);
		f->count++;
	}
	return f;
}

/*
 * PDFInfo's MD5 digests (upper-case hex) of each PDF part: "md5" of its
 * data; among the "fuzzy" ones, one of its first 69 non-empty lines up to
 * the first that holds "stream" or gives an image size, leaving out
 * comments (%), size lines (/Height, /Width, /MediaBox, /CropBox, "cm")
 * and trailing white space, so that what differs between copies of one
 * spam run (the page's text, a picture's size) does not change it; and one
 * of its tag layout, the names starting its lines that hold a '/'.
 * pdf_part() gathers what they are taken of; the digests themselves are
 * worked out only when a rule asks (a PDF's data can be megabytes).
 */
struct pdfdigests {
	char md5[PDF_DIGESTS_MAX][33];
	char fuzzy[2 * PDF_DIGESTS_MAX][33];
	size_t nmd5, nfuzzy;
};

static void pdf_digest_add(char (*set)[33], size_t *n, size_t cap, const char *d, size_t len)
{
	char hex[RULES_EVAL_DIGEST_HEX_MAX];
	if (len == 0 || *n >= cap || !rules_eval_digest_hex("MD5", d, len, true, hex) ||
	    strlen(hex) != 32)
		return;
	memcpy(set[(*n)++], hex, 33);
}

static const struct pdfdigests *pdf_digests(struct rules_evalenv *e)
{
	struct pdfdigests *g = e->cache[RULES_EVAL_CACHE_PDF_MD5];
	if (g != NULL)
		return g;
	g = arena_zalloc(e->a, sizeof(*g));
	e->cache[RULES_EVAL_CACHE_PDF_MD5] = g;
	const struct pdffacts *f = pdf_facts(e);
	for (size_t i = 0; i < f->nsrc; i++) {
		const struct pdfsrc *s = &f->src[i];
		pdf_digest_add(g->md5, &g->nmd5, PDF_DIGESTS_MAX, s->data, s->len);
		pdf_digest_add(g->fuzzy, &g->nfuzzy, 2 * PDF_DIGESTS_MAX, s->fuzzy, s->nfuzzy);
		pdf_digest_add(g->fuzzy, &g->nfuzzy, 2 * PDF_DIGESTS_MAX, s->tags, s->ntags);
	}
	return g;
}

/* pdf_match_md5(HEX) and pdf_match_fuzzy_md5(HEX): a PDF's digest is HEX (any case). */
static long digest_in(struct rules_evalenv *e, const char (*set)[33], size_t n, const char *want)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(set[i], want) == 0) {
			e->detail = arena_strdup(e->a, set[i]);
			return 1;
		}
	return 0;
}

static long pdf_match_md5(struct rules_evalenv *e, const struct rule *ru)
{
	const struct pdfdigests *g = pdf_digests(e);
	return digest_in(e, g->md5, g->nmd5, ru->eargs[0]);
}

static long pdf_match_fuzzy_md5(struct rules_evalenv *e, const struct rule *ru)
{
	const struct pdfdigests *g = pdf_digests(e);
	return digest_in(e, g->fuzzy, g->nfuzzy, ru->eargs[0]);
}

static const char *check_md5_arg(const struct rule *ru)
{
	const char *s = ru->eargs[0];
	size_t n = 0;
	while (isxdigit((unsigned char)s[n]))
		n++;
	return n == 32 && s[n] == '\0' ? NULL : "expected an MD5 digest in hex (32 digits)";
}

static long pdf_count(struct rules_evalenv *e, const struct rule *ru)
{
	return in_range(ru, 0, pdf_facts(e)->count, false);
}

static long pdf_image_count(struct rules_evalenv *e, const struct rule *ru)
{
	return in_range(ru, 0, pdf_facts(e)->images, false);
}

static long pdf_pixel_coverage(struct rules_evalenv *e, const struct rule *ru)
{
	const struct pdffacts *f = pdf_facts(e);
	return f->pc > 0 && in_range(ru, 0, f->pc, false); /* undefined without images */
}

static long pdf_image_to_text_ratio(struct rules_evalenv *e, const struct rule *ru)
{
	double pc = pdf_facts(e)->pc;
	size_t n = text_len(e);
	return n > 0 && pc > 0 && in_range(ru, 0, (double)n / pc, true);
}

static long pdf_image_size_exact(struct rules_evalenv *e, const struct rule *ru)
{
	return size_exact(&pdf_facts(e)->dims, ru, 0);
}

static long pdf_image_size_range(struct rules_evalenv *e, const struct rule *ru)
{
	return size_range(&pdf_facts(e)->dims, ru, 0);
}

static long pdf_named(struct rules_evalenv *e, const struct rule *ru)
{
	const struct pdffacts *f = pdf_facts(e);
	for (size_t i = 0; i < f->nnames; i++)
		if (strcmp(f->names[i], ru->eargs[0]) == 0)
			return 1;
	return 0;
}

static long pdf_is_encrypted(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return pdf_facts(e)->encrypted;
}

/*
 * pdf_is_empty_body([bytes]): a PDF, and at most that many bytes (0 by
 * default) in the body's non-blank lines after the Subject line.
 */
static long pdf_is_empty_body(struct rules_evalenv *e, const struct rule *ru)
{
	if (pdf_facts(e)->count == 0)
		return 0;
	double min = ru->neargs > 0 ? ru->eargn[0] : 0;
	size_t n = 0;
	const char *s = e->mi ? mime_body(e->mi, &n) : NULL;
	double bytes = 0;
	bool first = true;
	for (size_t off = 0; s && off < n;) {
		const char *nl = memchr(s + off, '\n', n - off);
		size_t len = nl ? (size_t)(nl - (s + off)) + 1 : n - off;
		const char *line = s + off;
		off += len;
		if (first) {
			first = false;
			continue;
		}
		bool blank = true;
		for (size_t k = 0; k < len && blank; k++)
			blank = isspace((unsigned char)line[k]);
		if (blank)
			continue;
		bytes += (double)len;
		if (bytes > min)
			return 0;
	}
	return 1;
}

/*
 * A regex argument compiled as rules are, or NULL: PDFInfo's are written
 * "/re/flags", ImageInfo's image_name_regex takes the bare pattern.
 */
static pcre2_code *arg_regex(const rules_t *r, const char *arg, bool bare)
{
	char *pat, err[160];
	uint32_t opts = 0;
	const char *end = "";
	if (bare)
		pat = xalloc_strdup(arg);
	else if (rules_parse_regex(arg, &pat, &opts, &end, err, sizeof(err)) < 0)
		return NULL;
	int ec;
	PCRE2_SIZE off;
	pcre2_code *c = *end ? NULL
	                     : rules_re_compile(pat, PCRE2_ZERO_TERMINATED, opts,
	                                        r ? r->cctx : NULL, &ec, &off);
	free(pat);
	return c;
}

/* Some of vals matches arg's regex: 1, 0, or -1 at a match limit. */
static long match_any(struct rules_evalenv *e, const char *arg, bool bare, const char *const *vals,
                      size_t n)
{
	if (n == 0)
		return 0;
	/* compiled per message with such a part: few rules use these */
	pcre2_code *c = arg_regex(e->r, arg, bare);
	if (c == NULL)
		return -1;
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	pcre2_match_context *mc = rules_match_context(e->r);
	long hit = 0;
	for (size_t i = 0; i < n && hit == 0; i++) {
		int rc = pcre2_match(c, (PCRE2_SPTR)vals[i], strlen(vals[i]), 0, 0, md, mc);
		if (rc >= 0) {
			hit = 1;
			e->detail = arena_strdup(e->a, vals[i]);
		} else if (rc != PCRE2_ERROR_NOMATCH) {
			hit = -1;
		}
	}
	pcre2_match_data_free(md);
	pcre2_code_free(c);
	return hit;
}

static size_t pdf_detail_index(const char *name)
{
	size_t k = 0;
	while (k < PDF_DETAILS && strcmp(pdf_detail_names[k], name) != 0)
		k++;
	return k;
}

static const char *check_regex_arg(const char *arg, bool bare)
{
	pcre2_code *c = arg_regex(NULL, arg, bare);
	if (c == NULL)
		return bare ? "bad regex" : "bad regex (want /re/flags or m{re}flags)";
	pcre2_code_free(c);
	return NULL;
}

static const char *check_match_details(const struct rule *ru)
{
	if (pdf_detail_index(ru->eargs[0]) == PDF_DETAILS)
		return "unknown detail (author, creator, created, modified, producer or title)";
	return check_regex_arg(ru->eargs[1], false);
}

static const char *check_name_regex(const struct rule *ru)
{
	return check_regex_arg(ru->eargs[0], false);
}

static const char *check_image_name_regex(const struct rule *ru)
{
	return check_regex_arg(ru->eargs[0], true);
}

/* pdf_match_details(detail, /re/): some PDF's document detail matches. */
static long pdf_match_details(struct rules_evalenv *e, const struct rule *ru)
{
	const struct pdffacts *f = pdf_facts(e);
	size_t k = pdf_detail_index(ru->eargs[0]);
	return k < PDF_DETAILS ? match_any(e, ru->eargs[1], false, f->detail[k], f->ndetail[k]) : 0;
}

/* pdf_name_regex(/re/): some PDF's file name matches. */
static long pdf_name_regex(struct rules_evalenv *e, const struct rule *ru)
{
	const struct pdffacts *f = pdf_facts(e);
	return match_any(e, ru->eargs[0], false, f->names, f->nnames);
}

/* image_name_regex(re): some named image's name matches (the bare pattern, as ImageInfo takes it).
 */
static long image_name_regex(struct rules_evalenv *e, const struct rule *ru)
{
	const struct imagefacts *f = image_facts(e);
	return match_any(e, ru->eargs[0], true, f->names, f->nnames);
}

const struct rules_evaldef rules_eval_image_defs[] = {
    {"image_count", image_count, 2, 3, check_type},
    {"pixel_coverage", pixel_coverage, 2, 3, check_type},
    {"image_to_text_ratio", image_to_text_ratio, 3, 3, check_type},
    {"image_size_exact", image_size_exact, 3, 3, check_type},
    {"image_size_range", image_size_range, 3, 5, check_type},
    {"image_named", image_named, 1, 1, NULL},
    {"image_name_regex", image_name_regex, 1, 1, check_image_name_regex},
    {"pdf_count", pdf_count, 1, 2, NULL},
    {"pdf_image_count", pdf_image_count, 1, 2, NULL},
    {"pdf_pixel_coverage", pdf_pixel_coverage, 1, 2, NULL},
    {"pdf_image_to_text_ratio", pdf_image_to_text_ratio, 2, 2, NULL},
    {"pdf_image_size_exact", pdf_image_size_exact, 2, 2, NULL},
    {"pdf_image_size_range", pdf_image_size_range, 2, 4, NULL},
    {"pdf_named", pdf_named, 1, 1, NULL},
    {"pdf_is_encrypted", pdf_is_encrypted, 0, 0, NULL},
    {"pdf_is_empty_body", pdf_is_empty_body, 0, 1, NULL},
    {"pdf_match_details", pdf_match_details, 2, 2, check_match_details},
    {"pdf_name_regex", pdf_name_regex, 1, 1, check_name_regex},
    {"pdf_match_md5", pdf_match_md5, 1, 1, check_md5_arg},
    {"pdf_match_fuzzy_md5", pdf_match_fuzzy_md5, 1, 1, check_md5_arg},
    {NULL, NULL, 0, 0, NULL},
};
