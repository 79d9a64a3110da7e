/*
 * fuzz_dnsbl_file.c - libFuzzer target for the local list files
 * (dnsbl_file.c): rbldnsd ip4set and dnset data that sites on thin links
 * rsync from a list's operator, so whatever a cut transfer or a bad mirror
 * leaves in them. The input is written to a file and loaded in the format
 * its first byte picks; the names and addresses of its lines are then
 * looked up.
 *
 * Checks besides crashes: a file that does not load says why (a
 * diagnostic naming the file), a loaded one never returns a TXT longer
 * than asked for, and an ip4set line holding just an address lists it
 * (no exclusions or values in the file: the default answer 127.0.0.2).
 * Build and run with tests/fuzz/run.sh dnsbl_file SECONDS.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diag.h"
#include "dnsbl.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(fuzz_path, sizeof(fuzz_path), "/tmp/sift-fuzz-list.%ld", (long)getpid());
	return 0;
}

/* Looks up each line's first word as given, and with a label put before it. */
static void look_up_lines(dnsbl_file_t *f, const char *text, int format, bool plain)
{
	const char *p = text;
	for (int lines = 0; *p && lines < 64; lines++) {
		size_t n = strcspn(p, " \t:\r\n");
		char key[300], txt[16];
		if (n > 0 && n < 250) {
			memcpy(key, p, n);
			key[n] = '\0';
			uint32_t code = 0;
			memset(txt, 'x', sizeof(txt));
			int listed = dnsbl_file_lookup(f, key, &code, txt, 8);
			if (listed && memchr(txt, '\0', 8) == NULL)
				__builtin_trap(); /* a TXT beyond the buffer it was given */
			struct in_addr a;
			if (plain && format == DNSBL_FILE_IP4SET &&
			    inet_pton(AF_INET, key, &a) == 1 && (!listed || code != 0x7f000002u))
				__builtin_trap(); /* a listed address that is not found */
			char sub[310];
			snprintf(sub, sizeof(sub), "x.%s", key);
			(void)dnsbl_file_lookup(f, sub, &code, NULL, 0);
		}
		const char *nl = strchr(p, '\n');
		if (nl == NULL)
			break;
		p = nl + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 16384)
		return 0;
	int format = (data[0] & 1) ? DNSBL_FILE_DNSET : DNSBL_FILE_IP4SET;
	FILE *fp = fopen(fuzz_path, "w");
	if (fp == NULL)
		return 0;
	fwrite(data + 1, 1, size - 1, fp);
	fclose(fp);
	char *text = malloc(size);
	if (text == NULL)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	/* only addresses, one a line: each one must be listed with the default code */
	bool plain = strspn(text, "0123456789.\n") == strlen(text) && strlen(text) == size - 1;
	diag_t *d = diag_new();
	dnsbl_file_t *f = dnsbl_file_open(fuzz_path, format, 0, d);
	if (f == NULL) {
		if (diag_count(d) == 0 || strstr(diag_text(d, 0), fuzz_path) == NULL)
			__builtin_trap(); /* refused without saying where */
	} else {
		look_up_lines(f, text, format, plain);
		dnsbl_file_free(f);
	}
	diag_free(d);
	free(text);
	unlink(fuzz_path);
	return 0;
}
