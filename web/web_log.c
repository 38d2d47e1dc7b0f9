/*
 * web_log.c: the process's logger: one line per message on stderr,
 * "2026-01-02T03:04:05.678Z info  message". db/ logs through it too.
 *
 * The level is a process-wide setting written once at start (before any
 * thread), then only read. Each line goes out in one fputs on a stream
 * whose lock makes concurrent lines not interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "web.h"

static enum web_log_level log_level = WEB_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static void vlog(enum web_log_level level, const char *fmt, va_list ap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[1024];
    int n = snprintf(
        line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
        tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
    if (n < 0)
        return;
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    size_t len = 0;
    while (line[len] != '\0')
        len++;
    line[len] = '\n';
    line[len + 1] = '\0';
    fputs(line, stderr);
}

void web_log(enum web_log_level level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

static void db_logger(void *user, enum db_log_level level, const char *msg)
{
    (void)user;
    /* The two enums have the same order. */
    web_log((enum web_log_level)level, "%s", msg);
}

void web_log_init(enum web_log_level level)
{
    log_level = level;
    setvbuf(stderr, NULL, _IOLBF, 0);
    db_log_set(db_logger, NULL);
}
