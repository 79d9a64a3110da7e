/*
 * NAME
 *	conf - the configuration file: strict "key = value" lines
 * SYNOPSIS
 *	#include "conf.h"
 * DESCRIPTION
 *	The format is one "key = value" per line; '#' starts a comment line;
 *	blank lines are ignored; a value may be wrapped in double quotes to keep
 *	leading or trailing blanks or a '#'. A key may repeat only where the
 *	module reading it says so (lists: rules paths, DNS lists, ...).
 *
 *	conf_load() checks syntax only. Each module then reads its own keys
 *	with the typed getters below, which record "file:line: ..." errors for
 *	bad values in a diag_t. After every module has read its keys,
 *	conf_check_unknown() reports each key nobody asked for, so a typo in a
 *	key name fails the load instead of being silently ignored.
 *
 *	Command-line flags are applied with conf_override(): an override hides
 *	every file line of the same key.
 *
 *	Sizes accept K, M and G suffixes (powers of 1024); durations accept
 *	ms, s, m and h suffixes and are returned in milliseconds; booleans are
 *	yes/no, true/false, on/off, 1/0.
 * THREADS
 *	A conf_t is built and read by one thread, then only read. The file
 *	name getters join a relative value in place, so they too are called
 *	only by the loading thread.
 */
#ifndef SIFT_CONF_H
#define SIFT_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"

typedef struct conf conf_t;

/* An empty configuration (the shipped defaults apply everywhere). */
conf_t *conf_new(void);
/* Parses path; returns NULL and records errors in d on failure. */
conf_t *conf_load(const char *path, diag_t *d);
/* Parses an in-memory text, with name used in diagnostics (tests). */
conf_t *conf_parse(const char *name, const char *text, diag_t *d);
void conf_free(conf_t *c);
void conf_override(conf_t *c, const char *key, const char *value);
/* The file the configuration came from ("" for defaults). */
const char *conf_path(const conf_t *c);

/*
 * File names in values. The daemon leaves its start directory for "/"
 * when it detaches and reads the configuration again at every reload, so
 * a relative file name must not depend on the working directory at the
 * time of the read: conf_set_base_dir() names the directory relative
 * names are taken from (sift-milter: the one it started in), and the
 * getters below return each relative value joined to it. Without a base
 * directory, or for an absolute value, the value is returned as it is
 * (the command-line tool reads from its working directory). The joined
 * strings belong to c. A relative name joined to "/" (a daemon started
 * by systemd or an init script) is almost always a mistake: it is joined
 * all the same, with a warning in d at the value's file:line.
 */
void conf_set_base_dir(conf_t *c, const char *dir);
int conf_filename(conf_t *c, const char *key, const char *def, const char **out, diag_t *d);
const char *conf_filename_at(conf_t *c, const char *key, size_t idx, const char **file,
                             unsigned *line, diag_t *d);
/* A name found in key's value at file:line (a list's file=...), joined the same way; malloc'd. */
char *conf_resolve(const conf_t *c, const char *key, const char *name, const char *file,
                   unsigned line, diag_t *d);

/*
 * Typed getters: when key is absent *out = def and 0 is returned. When it
 * is present but invalid, an error is added to d, *out = def and -1 is
 * returned. A key given twice is an error for these single-valued getters.
 */
int conf_str(conf_t *c, const char *key, const char *def, const char **out, diag_t *d);
int conf_bool(conf_t *c, const char *key, bool def, bool *out, diag_t *d);
int conf_long(conf_t *c, const char *key, long def, long min, long max, long *out, diag_t *d);
int conf_double(conf_t *c, const char *key, double def, double min, double max, double *out,
                diag_t *d);
int conf_size(conf_t *c, const char *key, uint64_t def, uint64_t min, uint64_t max, uint64_t *out,
              diag_t *d);
int conf_ms(conf_t *c, const char *key, long def_ms, long min_ms, long max_ms, long *out,
            diag_t *d);
/* One of the NULL-terminated choices; *out is the index. */
int conf_enum(conf_t *c, const char *key, const char *const *choices, int def, int *out, diag_t *d);
/* A double or the word "off" (returned as def_off, usually NAN or INFINITY). */
int conf_double_or_off(conf_t *c, const char *key, double def, double off_value, double *out,
                       diag_t *d);

/*
 * Repeated keys: the number of values, and each value with its location
 * (for diagnostics that point at the exact line).
 */
size_t conf_count(conf_t *c, const char *key);
const char *conf_value_at(conf_t *c, const char *key, size_t i, const char **file, unsigned *line);

/*
 * An error about key's value, found by a check beyond the getters' (a
 * socket's syntax, a reply's code), at the file:line of the value they
 * gave: "command line" for an override, the file alone for a default.
 */
void conf_key_error(conf_t *c, const char *key, diag_t *d, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * The file line of a single-valued key that a command-line override hides
 * (the last such line), or NULL. Its value is never used, but it is still
 * checked: `sift lint` reports it, and a daemon started with the flag
 * would otherwise load a file that fails the first start without it.
 */
const char *conf_hidden(conf_t *c, const char *key, const char **file, unsigned *line);

/* Errors for every key that no getter asked for. Returns their number. */
size_t conf_check_unknown(const conf_t *c, diag_t *d);

/* Helpers shared with the getters, usable on values from conf_value_at. */
int conf_parse_size(const char *s, uint64_t *out);
int conf_parse_ms(const char *s, long *out);
int conf_parse_bool(const char *s, bool *out);

#endif
