/*
 * sa-received.c - the helper behind contrib/sa-received.sh: reads one
 * unfolded Received field value per line on stdin and prints, per line,
 * the relay Sift's parser makes of it, or UNPARSEABLE or IGNORED.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "rules_int.h"

int main(void)
{
	static char line[1 << 16];
	char out[4096];
	while (fgets(line, sizeof(line), stdin) != NULL) {
		size_t n = strcspn(line, "\n");
		if (line[n] == '\0') /* longer than the buffer: read on to the line's end */
			for (int c; (c = getchar()) != EOF && c != '\n';)
				;
		line[n] = '\0';
		int rc = rules_relays_parse_one(line, out, sizeof(out));
		puts(rc > 0 ? out : rc == 0 ? "IGNORED" : "UNPARSEABLE");
	}
	return 0;
}
