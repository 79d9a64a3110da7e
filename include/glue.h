/*
 * NAME
 *	glue - the libmilter callbacks: the only code that knows libmilter
 * DESCRIPTION
 *	glue_open() registers the callbacks and opens the socket; glue_run()
 *	runs libmilter's main loop until SIGTERM/SIGINT, and lets the messages
 *	in flight finish before it returns. Each connection takes a
 *	reference to the generation current when it opens (scan_gen_acquire)
 *	and keeps it to its end, so a reload never changes the rules under a
 *	message in flight.
 *
 *	SIGHUP: libmilter's own signal thread would treat SIGHUP as "stop".
 *	glue_run() makes it call the reload function instead (see glue.c).
 *
 *	The callbacks take commands in any order libmilter lets through (HELO
 *	or ABORT before negotiation, CONNECT twice, headers with no MAIL, empty
 *	arguments): they do nothing or refuse the message, never crash.
 *	tests/fuzz/fuzz_milter.c drives them with arbitrary packet sequences.
 * THREADS
 *	libmilter hands each command to a thread of its worker pool (Debian
 *	builds it with the pool), so one connection's callbacks may run on
 *	different threads, one at a time: the callbacks keep all their state
 *	in the connection's private data, none in the thread.
 */
#ifndef SIFT_GLUE_H
#define SIFT_GLUE_H

#include "scan.h"

struct smfiDesc; /* <libmilter/mfapi.h> */

typedef void (*glue_reload_fn)(void);

/*
 * Opens the socket, removing a stale unix socket (the spec was checked
 * strictly when the settings were read, see scan.h), gives a unix socket
 * s->socket_mode and s->socket_group, so main can drop privileges
 * afterwards. Returns 0, or -1 with a message in err.
 */
int glue_open(const scan_settings_t *s, char *err, size_t err_len);

/* What glue_open() bound, from the socket itself: "127.0.0.1:11337", "unix:/path". */
const char *glue_listening(void);
/* A start that fails after glue_open(): closes the socket and removes the unix socket file it made.
 */
void glue_unbind(void);

/*
 * The callback table glue_open() registers, for a harness that plays
 * libmilter (the protocol fuzzer). The callbacks need a published
 * generation (scan_gen_publish) and the smfi_* calls they make.
 */
const struct smfiDesc *glue_callbacks(void);
/*
 * Runs until stopped; returns 0 on a clean stop. SIGTERM and SIGINT close
 * the listening socket at once (new connections are refused), let the
 * messages in flight finish for up to the live generation's stop_timeout,
 * then end libmilter's loop. The calling thread must leave SIGUSR1
 * unblocked (glue.c uses it to wake libmilter's loop).
 */
int glue_run(glue_reload_fn reload);

#endif
