/*
 * fuzz_dns.c - libFuzzer target for the DNS module's response parser
 * (dns_parse_response(), written here rather than taken from c-ares's
 * per-type parsers so that one pass keeps every type's records and the
 * negative TTL): the first byte picks the type asked, the rest is the
 * response as it came off the wire. The module's promises are checked:
 * a status the header allows, records only of answers that parsed, each
 * within the data bounds and NUL-terminated, the TTL never negative for
 * an answer with records. Build and run with tests/fuzz/run.sh dns SECONDS.
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dns.h"
#include "evidence.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The resolver's thread is never started here; its starter lives in
 * scan.c, which would bring the whole pipeline into the target.
 */
int ev_thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg)
{
	(void)t, (void)name, (void)fn, (void)arg;
	return ENOSYS;
}

static const int qtypes[] = {DNS_T_A,  DNS_T_AAAA, DNS_T_TXT, DNS_T_MX,
                             DNS_T_NS, DNS_T_PTR,  6 /* SOA */};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int qtype = qtypes[data[0] % (sizeof(qtypes) / sizeof(qtypes[0]))];
	static dns_answer_t a; /* 17 KiB: not on the fuzzer's stack */
	long ttl = 0;
	if (dns_parse_response(data + 1, size - 1, qtype, &a, &ttl) != 0)
		return 0;
	if (a.status != DNS_NOERROR && a.status != DNS_NXDOMAIN && a.status != DNS_NODATA &&
	    a.status != DNS_SERVFAIL)
		__builtin_trap();
	if ((a.status == DNS_NOERROR) != (a.nrr > 0) || a.nrr > DNS_MAX_RR ||
	    a.used > sizeof(a.data))
		__builtin_trap();
	if (a.status == DNS_NOERROR && ttl < 0)
		__builtin_trap();
	int rc = dns_answer_rcode(&a);
	if (rc != -1 && rc != 0 && rc != 3)
		__builtin_trap();
	size_t sum = 0;
	for (unsigned i = 0; i < a.nrr; i++) {
		size_t len;
		const char *d = dns_answer_rr(&a, i, &len);
		if (d == NULL || d < a.data || d + len >= a.data + sizeof(a.data) || d[len] != '\0')
			__builtin_trap();
		if ((qtype == DNS_T_A && len != 4) || (qtype == DNS_T_AAAA && len != 16))
			__builtin_trap();
		/* names and texts are C strings the rules read with strlen() */
		if (qtype != DNS_T_A && qtype != DNS_T_AAAA && qtype != DNS_T_TXT &&
		    strlen(d) != len)
			__builtin_trap();
		sum += len;
	}
	if (dns_answer_rr(&a, a.nrr, &sum) != NULL)
		__builtin_trap();
	return 0;
}
