/*
 * auth_int.h - the auth module's internal pieces: the DNS adapters of
 * libspf2 and libopendkim onto the shared DNS service (auth_dns.c). Not
 * for other modules: they use auth.h.
 */
#ifndef SIFT_AUTH_INT_H
#define SIFT_AUTH_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <opendkim/dkim.h>
#include <spf2/spf.h>

#include "auth.h"
#include "dns.h"

/* The calling thread's lookups end by deadline_ms from now on; clears the failure count. */
void auth_dns_begin(long deadline_ms);
/* Lookups of this thread that timed out or failed (SERVFAIL) since auth_dns_begin(). */
unsigned auth_dns_failures(void);

/*
 * Starts counting the DNS questions of one SPF check by srv; whether it
 * went past RFC 7208's limits (10 DNS-querying terms, 2 void lookups):
 * permerror. auth_spf_end() frees what the check made (records split to
 * fit libspf2, see auth_dns.c).
 */
void auth_spf_begin(SPF_server_t *srv);
bool auth_spf_over_limit(void);
void auth_spf_end(void);

/* A libspf2 resolver layer asking dns; freed with auth_spf_dns_free() after its server. */
SPF_dns_server_t *auth_spf_dns_new(dns_t *dns);
void auth_spf_dns_free(SPF_dns_server_t *s);

/* Points libopendkim's DNS at dns (dns must outlive lib). */
void auth_dkim_dns_install(DKIM_LIB *lib, dns_t *dns);

/*
 * The answer a as a wire-format DNS reply to qname/qtype in buf (TXT
 * records only; what does not fit is left out). Returns its length, 0 when
 * not even the question fits. Exposed for the tests.
 */
size_t auth_dns_wire(const char *qname, int qtype, const dns_answer_t *a, unsigned char *buf,
                     size_t cap);

#endif
