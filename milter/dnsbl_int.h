/*
 * dnsbl_int.h - what dnsbl.c and the local list files (dnsbl_file.c)
 * share: a list's answer to one name. DNS itself is the shared service
 * (dns.h). Not for other modules: they use dnsbl.h.
 */
#ifndef SIFT_DNSBL_INT_H
#define SIFT_DNSBL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns.h"

/* A list answers with a handful of codes; more are ignored. */
#define DNSBL_MAX_CODES 8
/* Reject texts are for people; longer ones are cut. */
#define DNSBL_TXT_MAX_BYTES   512
#define DNSBL_QNAME_MAX_BYTES DNS_QNAME_MAX_BYTES

/* What one name's lookup came to. */
enum dnsbl_status {
	DQ_PENDING = 0,
	DQ_LISTED,     /* NOERROR with A records (codes below) */
	DQ_NOT_LISTED, /* NXDOMAIN or NOERROR without A records */
	DQ_FAILED,     /* SERVFAIL, REFUSED, timeout, ... */
};

enum dnsbl_source { DQ_SRC_DNS = 0, DQ_SRC_CACHE, DQ_SRC_FILE };

typedef struct dnsbl_answer {
	int status;
	unsigned ncodes;
	uint32_t codes[DNSBL_MAX_CODES]; /* host byte order */
	bool has_txt;
	char txt[DNSBL_TXT_MAX_BYTES];
} dnsbl_answer_t;

/* Milliseconds on the CLOCK_MONOTONIC scale (the scale of deadline_ms). */
static inline long dnsbl_now_ms(void)
{
	return dns_now_ms();
}

#endif
