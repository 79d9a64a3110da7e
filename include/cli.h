/*
 * NAME
 *	cli - the subcommands of the `sift` command-line tool
 * DESCRIPTION
 *	`sift [-c FILE] [-d DIR] COMMAND [ARGS...]` dispatches to one function
 *	per command. Each module that owns a command (bayes: learn, bayes;
 *	rep: block) implements it in its own *_cli.c file with this
 *	signature, and sift.c lists it. A command prints its results on stdout,
 *	its errors on stderr, and returns the process exit status (0 success,
 *	1 failure or "found problems", 2 usage error).
 * THREADS
 *	Commands run on the main thread.
 */
#ifndef SIFT_CLI_H
#define SIFT_CLI_H

#include "conf.h"
#include "diag.h"

typedef struct cli_ctx {
	conf_t *conf;          /* the loaded configuration, flags applied */
	const char *state_dir; /* from -d, else the configuration's state_dir */
	diag_t *diag;          /* for load errors; the command prints them */
} cli_ctx_t;

/* argv[0] is the command name; getopt may be used (optind is reset). */
typedef int (*cli_cmd_fn)(cli_ctx_t *ctx, int argc, char **argv);

#endif
