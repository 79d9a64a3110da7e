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
 * THREADS
 *	libmilter runs one thread per connection; the callbacks keep all
 *	their state in the connection's private data.
 */
#ifndef SIFT_GLUE_H
#define SIFT_GLUE_H

#include "scan.h"

typedef void (*glue_reload_fn)(void);

/*
 * Opens the socket (removing a stale unix socket) so main can drop
 * privileges afterwards. Returns 0, or -1 with a message in err.
 */
int glue_open(const scan_settings_t *s, char *err, size_t err_len);
/*
 * Runs until stopped; returns 0 on a clean stop. SIGTERM and SIGINT close
 * the listening socket at once (new connections are refused), let the
 * messages in flight finish for up to the live generation's stop_timeout,
 * then end libmilter's loop. The calling thread must leave SIGUSR1
 * unblocked (glue.c uses it to wake libmilter's loop).
 */
int glue_run(glue_reload_fn reload);

#endif
