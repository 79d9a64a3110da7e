/*
 * utf8_check.h - an independent UTF-8 validator for the MIME tests and the
 * MIME fuzz target: written apart from mime.c's own on purpose, so that a
 * mistake there is not mirrored in the check that is meant to catch it.
 */
#ifndef SIFT_TEST_UTF8_CHECK_H
#define SIFT_TEST_UTF8_CHECK_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..n) is valid UTF-8 (no overlong, surrogate or >U+10FFFF forms). */
static inline bool test_utf8_strict(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i], k, lo = 0x80, hi = 0xbf;
		if (c < 0x80)
			k = 1;
		else if (c >= 0xc2 && c <= 0xdf)
			k = 2;
		else if (c >= 0xe0 && c <= 0xef)
			k = 3;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 4;
		else
			return false;
		if (i + k > n)
			return false;
		/* The second byte's range rules out overlong forms, surrogates
		 * (U+D800-DFFF) and values past U+10FFFF. */
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
		else if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
		if (k > 1 && (s[i + 1] < lo || s[i + 1] > hi))
			return false;
		for (unsigned j = 2; j < k; j++)
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
		i += k;
	}
	return true;
}

#endif
