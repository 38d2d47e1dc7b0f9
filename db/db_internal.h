/*
 * db_internal.h: helpers shared by the files of db/, not for other modules.
 */
#ifndef DB_INTERNAL_H
#define DB_INTERNAL_H

#include <stdarg.h>

#include "db.h"

/* Formats and sends a message to the installed logger, if any. */
void db__log(enum db_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Fills err->msg (one line: newlines and tabs become spaces, runs of
 * spaces collapse, trailing space is cut) and clears err->sqlstate.
 * err may be NULL. Cannot fail. */
void db__err_set(struct db_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Rewrites s in place as one line (see db__err_set). */
void db__one_line(char *s);

#endif
