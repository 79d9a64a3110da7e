/*
 * NAME
 *	mime - MIME structure, decoding, charsets, HTML to text, URLs
 * SYNOPSIS
 *	#include "mime.h"
 *	mime_t *mi = mime_parse(msg, &limits);
 * DESCRIPTION
 *	mime_parse() walks the message's MIME tree (multipart at any depth up
 *	to limits->max_depth, at most limits->max_parts parts), decodes
 *	base64 and quoted-printable, converts text parts to UTF-8 (iconv),
 *	renders HTML to text, and extracts URLs and their host names from
 *	text and HTML. Everything it returns lives in the message arena.
 *
 *	It never fails: malformed input (bad boundaries, broken base64, an
 *	unknown charset, limits reached) is parsed as far as it sensibly can
 *	and recorded in mime_flags(), which rules can score.
 *
 *	The views follow SpamAssassin's so its rules match the same text:
 *	  body     the Subject, then every text part decoded, HTML rendered to
 *	           text, UTF-8, line breaks kept;
 *	  rawbody  every text part transfer-decoded and in UTF-8 but with HTML
 *	           left as is;
 *	  (in both, as in SpamAssassin, each text part brings at most its scan
 *	  size, limits->body_part_scan_bytes or rawbody_part_scan_bytes: the
 *	  cut goes to the first line break at or past that size when one comes
 *	  within MIME_SCAN_CUT_SLACK bytes, else (rawbody) the first '>', else
 *	  the first blank, else the size itself, backed off to a character
 *	  boundary; it sets MIME_F_SCAN_CUT. The URIs, the parts' decoded text,
 *	  mime_body_whole() and the limit on the text kept per message see the
 *	  whole part. A huge text part thus costs the rules what its first
 *	  50 KB do.)
 *	  uris     every URL found, as written after entity decoding; schemes
 *	           http, https, ftp, mailto and bare "www." hosts.
 *
 *	Part 0 is the message itself; the others follow in document order
 *	(a container before its children). A part's decoded bytes are
 *	NUL-terminated for text parts; a non-text part without a transfer
 *	encoding points straight into the message body (no copy is made), so
 *	use decoded_len, not strlen(), on those.
 *
 *	Both lists are bounded (MIME_MAX_URIS, MIME_MAX_DOMAINS) and hold
 *	distinct entries in the order found.
 *
 *	Choices made on the way, for rule writers:
 *	- a multipart with no boundary parameter, or whose boundary never
 *	  occurs, is read as one text part (MIME_F_BAD_BOUNDARY);
 *	- preamble and epilogue are not text; a missing close delimiter
 *	  ends the last part at the end of its parent (MIME_F_BAD_BOUNDARY);
 *	- undeclared or us-ascii text with 8-bit bytes is UTF-8 when valid,
 *	  else windows-1252, unflagged; iso-8859-1 is read as windows-1252
 *	  (as browsers do); unknown charsets fall back to windows-1252 and
 *	  set MIME_F_BAD_CHARSET, as do invalid sequences (made U+FFFD);
 *	- filenames come from RFC 2231 parameters (continuations, charsets)
 *	  or plain ones, with RFC 2047 words inside quotes decoded;
 *	- HTML: script, style, title and head contents are dropped (an
 *	  unclosed <head> is ignored rather than hiding the message), comments
 *	  too; block elements end lines, inline ones join text ("V<b>i</b>agra"
 *	  is "Viagra"); &nbsp; is a space; numeric references 128-159 are
 *	  windows-1252, as in browsers;
 *	- the body ends each part on a line break; rawbody is the one text
 *	  part's own decoded text when there is only one.
 * THREADS
 *	Reentrant; each call works on its own message. Charset converters
 *	(iconv descriptors) are cached per thread, so a thread converts
 *	without locks; the cache is released when the thread exits. A thread
 *	keeps MIME_ICONV_MAX charsets open; text in a further charset is
 *	treated as in one iconv does not know (see mime.c, ic_get).
 */
#ifndef SIFT_MIME_H
#define SIFT_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "msg.h"

/* Bounds of the URI and domain lists, and of one URI kept in them. */
#define MIME_MAX_URIS    1000
#define MIME_MAX_DOMAINS 1000
/* Hosts of links carried inside URIs (mime_lookup_domain()) beyond those. */
#define MIME_MAX_TARGET_DOMAINS 200
/* Host names written in the text without a scheme (mime_text_domain()). */
#define MIME_MAX_TEXT_DOMAINS 100
#define MIME_MAX_URI_BYTES    2048
/*
 * Nesting is capped here whatever the configuration says: the walk
 * recurses once per level, and a thread's stack is the real bound.
 */
#define MIME_DEPTH_CAP 200
/* Charsets a thread keeps converters open for (mime.c, ic_get). */
#define MIME_ICONV_MAX 192

/* Defaults used when mime_parse() is given no limits. */
#define MIME_DEFAULT_MAX_DEPTH      20
#define MIME_DEFAULT_MAX_PARTS      500
#define MIME_DEFAULT_MAX_TEXT_BYTES (4u << 20)
/* SpamAssassin's body_part_scan_size and rawbody_part_scan_size defaults. */
#define MIME_DEFAULT_BODY_PART_SCAN    50000
#define MIME_DEFAULT_RAWBODY_PART_SCAN 500000
/* How far past a scan limit a cut may look for a line break or a blank. */
#define MIME_SCAN_CUT_SLACK 1024

typedef struct mime_limits {
	unsigned max_depth;      /* nesting of multiparts, e.g. 20 */
	unsigned max_parts;      /* leaf and container parts, e.g. 500 */
	uint64_t max_text_bytes; /* decoded text kept per message, e.g. 4M */
	/* each text part's share of the body and rawbody views, 0: all of it */
	uint64_t body_part_scan_bytes;
	uint64_t rawbody_part_scan_bytes;
} mime_limits_t;

enum {
	MIME_F_TRUNCATED = 1u << 0,    /* body was cut at the size limit */
	MIME_F_DEPTH_LIMIT = 1u << 1,  /* deeper parts were not descended into */
	MIME_F_PART_LIMIT = 1u << 2,   /* further parts were not parsed */
	MIME_F_BAD_BOUNDARY = 1u << 3, /* multipart without boundary or closing boundary */
	MIME_F_BAD_BASE64 = 1u << 4,   /* invalid base64 characters or length */
	MIME_F_BAD_QP = 1u << 5,       /* invalid quoted-printable escapes */
	MIME_F_BAD_CHARSET = 1u << 6,  /* unknown charset or invalid bytes in it */
	MIME_F_TEXT_LIMIT = 1u << 7,   /* decoded text beyond max_text_bytes dropped */
	MIME_F_BAD_HEADER = 1u << 8,   /* malformed MIME header (Content-Type etc.) */
	/*
	 * SpamAssassin's parse flags (Message.pm): text other than blanks and
	 * dots after a close delimiter; a delimiter not followed by a header
	 * line; a part's headers not ended by an empty line.
	 */
	MIME_F_EPILOGUE = 1u << 9,
	MIME_F_PART_NO_HEADERS = 1u << 10,
	MIME_F_PART_NO_SEPARATOR = 1u << 11,
	/* a URL longer than MIME_LONG_URI_BYTES, where SpamAssassin cuts them */
	MIME_F_LONG_URI = 1u << 12,
	/* a text part was cut to its scan size in the body or rawbody view */
	MIME_F_SCAN_CUT = 1u << 13,
	/* header fields past max_header_fields or max_header_size were not kept */
	MIME_F_FIELD_LIMIT = 1u << 14,
};
#define MIME_LONG_URI_BYTES 8192

typedef struct mime_part {
	unsigned depth;           /* 0 for the message itself */
	const char *content_type; /* lower-case "type/subtype", default text/plain */
	const char *charset;      /* lower-case, NULL if none */
	const char *encoding;     /* lower-case Content-Transfer-Encoding, NULL if none */
	const char *filename;     /* from Content-Disposition or Content-Type name, UTF-8 */
	bool is_attachment;       /* disposition attachment, or a named non-text part */
	bool is_text;             /* text/... and not an attachment */
	bool is_html;
	/* Transfer-decoded content; converted to UTF-8 for text parts. */
	const char *decoded;
	size_t decoded_len;
	/* This part's own header block ("Name: value\n" lines), for mimeheader rules. */
	const char *headers;
	/*
	 * The body as written (still transfer-encoded), a slice of the message
	 * (or of a decoded embedded message), not NUL-terminated; the line
	 * break before a delimiter is not in it. Empty for multiparts.
	 */
	const char *raw;
	size_t raw_len;
} mime_part_t;

typedef struct mime mime_t;

/* limits may be NULL (the MIME_DEFAULT_* values apply). */
mime_t *mime_parse(msg_t *m, const mime_limits_t *limits);
/* The decoded Subject (UTF-8, unfolded), "" when there is none. */
const char *mime_subject(const mime_t *mi);
const char *mime_body(const mime_t *mi, size_t *len);
/*
 * The body with no part cut to its scan size, for Bayes: its tokenizer
 * bounds its own work, and was tuned on whole messages.
 */
const char *mime_body_whole(const mime_t *mi, size_t *len);
const char *mime_rawbody(const mime_t *mi, size_t *len);
size_t mime_part_count(const mime_t *mi);
const mime_part_t *mime_part(const mime_t *mi, size_t i);
size_t mime_uri_count(const mime_t *mi);
const char *mime_uri(const mime_t *mi, size_t i);
/*
 * Where URI i was found, as SpamAssassin's uri_detail "type" names it: bit
 * MIME_URI_PARSED for text (plain or rendered HTML), and the tag for the
 * HTML attributes SpamAssassin takes links from (a, area, link and base
 * href; img, frame, iframe, embed, script and bgsound src; form action;
 * body, table, tr and td background). A link in some other attribute
 * Sift reads (a div's background) has no type bit. mime_uri_type_name()
 * names bit b (1u << b), NULL past the last; mime_uri_type_of() is the bit
 * of a lower-case tag and attribute, 0 for pairs not above.
 */
enum {
	MIME_URI_PARSED = 1u << 0,
	MIME_URI_A = 1u << 1,
	MIME_URI_AREA = 1u << 2,
	MIME_URI_LINK = 1u << 3,
	MIME_URI_IMG = 1u << 4,
	MIME_URI_FRAME = 1u << 5,
	MIME_URI_IFRAME = 1u << 6,
	MIME_URI_EMBED = 1u << 7,
	MIME_URI_SCRIPT = 1u << 8,
	MIME_URI_BGSOUND = 1u << 9,
	MIME_URI_FORM = 1u << 10,
	MIME_URI_BODY = 1u << 11,
	MIME_URI_TABLE = 1u << 12,
	MIME_URI_TR = 1u << 13,
	MIME_URI_TD = 1u << 14,
	MIME_URI_BASE = 1u << 15,
	MIME_URI_NTYPES = 16
};
uint32_t mime_uri_types(const mime_t *mi, size_t i);
const char *mime_uri_type_name(unsigned b);
uint32_t mime_uri_type_of(const char *tag, const char *attr);
/*
 * The link the module keeps for the value of an HTML href (or src, ...)
 * attribute, v[0..n): entities decoded as the renderer decodes them,
 * blanks and line breaks dropped as mime_add_uri() drops them; in a's
 * memory, NULL when it keeps none. So another module can find the link
 * an anchor points to in mime_uri()'s list.
 */
const char *mime_href_uri(arena_t *a, const char *v, size_t n);
/* Distinct lower-case host names of the URIs (and of mailto: addresses). */
size_t mime_domain_count(const mime_t *mi);
const char *mime_domain(const mime_t *mi, size_t i);
/*
 * What the DNS lists and reputation look up: the same hosts, then those of
 * the links the URIs carry after their host, as redirectors take them
 * ("https://r.example/url?q=https%3A%2F%2Ft.example%2F" gives t.example;
 * %-escapes undone, up to four a URI, each holding a dot, none already a
 * URI's host; at most MIME_MAX_TARGET_DOMAINS). Bayes reads mime_domain()
 * only, so its tokens stay those its store learned.
 */
size_t mime_lookup_domain_count(const mime_t *mi);
const char *mime_lookup_domain(const mime_t *mi, size_t i);
/*
 * Host names written in the text without a scheme or "www." ("visit
 * shop.example today"), which SpamAssassin's URI DNS lists ask about too:
 * two or more labels, the last 2-63 letters (or xn--), lower-cased, none in
 * the lists above, not an address's; at most MIME_MAX_TEXT_DOMAINS. Not
 * links, so only the DNS lists read them (the lookup decides with the
 * Public Suffix List whether the name has a registered domain at all).
 */
size_t mime_text_domain_count(const mime_t *mi);
const char *mime_text_domain(const mime_t *mi, size_t i);
unsigned mime_flags(const mime_t *mi);

/*
 * Unfolds a header value and decodes RFC 2047 encoded words to UTF-8
 * (unknown charsets are kept as the raw word). Result in arena a.
 */
char *mime_decode_header(arena_t *a, const char *raw);
/* Converts n bytes in charset to UTF-8 in arena a; NULL if unknown charset. */
char *mime_to_utf8(arena_t *a, const char *charset, const char *p, size_t n, size_t *out_len);

/*
 * The two halves of the module (mime.c, mime_html.c) meet here; other
 * modules should not need these.
 *
 * mime_html_render() appends the text of n bytes of UTF-8 HTML to out:
 * script, style and head contents dropped, block elements as line breaks,
 * entities decoded, white space collapsed. The URLs of href, src, action
 * and background attributes go to mi's lists (mi may be NULL).
 *
 * mime_scan_uris() finds URLs written in text and adds them; mime_add_uri()
 * adds one (after checking its scheme, trimming and lower-casing its host)
 * found as types says (MIME_URI_* bits, added to those of an earlier find).
 */
void mime_html_render(mime_t *mi, const char *html, size_t n, abuf_t *out);
void mime_scan_uris(mime_t *mi, const char *text, size_t n);
void mime_add_uri(mime_t *mi, const char *p, size_t n, uint32_t types);
/*
 * The form mime_add_uri() keeps of p[0..n) in buf (MIME_MAX_URI_BYTES):
 * its length, 0 when it is no link; *too_long (may be NULL) when p ran
 * past MIME_LONG_URI_BYTES.
 */
size_t mime_uri_form(const char *p, size_t n, char *buf, bool *too_long);
/* Appends the UTF-8 form of code point cp (U+FFFD for invalid ones). */
void mime_put_utf8(abuf_t *out, uint32_t cp);

#endif
