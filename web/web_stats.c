/*
 * web_stats.c: GET /api/admin/dashboard (admin only; docs/api.md).
 *
 * The answer is whole-table SQL (arena_board_dashboard), so it is kept for
 * CACHE_S seconds: requests in that window get the same text. Before each
 * recompute the anomalous-visitor signals run (arena_board_flag_visitors),
 * so the flagged list is as fresh as the rest. One recompute at a time
 * (the mutex is held through it: admins are few, and a second admin
 * arriving meanwhile waits for the fresh answer instead of running the same
 * SQL again).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "arena.h"
#include "web_internal.h"

#define CACHE_S 10

struct stats {
    pthread_mutex_t mu;
    char *text; /* cached answer */
    size_t len;
    double at; /* monotonic seconds */
};

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Recomputes into st (mu held). Returns 0, or an HTTP status. */
static int recompute(struct web_req *r, struct stats *st, char *msg, size_t n)
{
    struct db_conn *c = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_pool_acquire(r->db, r->cfg->db_wait_ms, &c, &derr) != DB_OK) {
        snprintf(msg, n, "database: %s", derr.msg);
        return 503;
    }
    struct arena_err err = {{0}};
    struct arena_flag_opts fo;
    arena_flag_opts_init(&fo);
    int flagged = 0;
    if (arena_board_flag_visitors(c, &fo, &flagged, &err) != ARENA_OK)
        web_log(WEB_LOG_WARN, "dashboard: %s", err.msg);
    else if (flagged > 0)
        web_log(WEB_LOG_INFO, "dashboard: %d visitors flagged", flagged);
    struct arena_board *b = web_leaderboard_board();
    struct arena_board_snap *snap = b ? arena_board_acquire(b) : NULL;
    json_t *out = NULL;
    int rc = arena_board_dashboard(c, snap, 1024, &out, &err);
    arena_board_release(snap);
    db_pool_release(r->db, c);
    if (rc != ARENA_OK) {
        snprintf(msg, n, "%s", err.msg);
        return 503;
    }
    char *text = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(out);
    if (text == NULL) {
        snprintf(msg, n, "out of memory");
        return 500;
    }
    free(st->text);
    st->text = text;
    st->len = strlen(text);
    st->at = mono();
    return 0;
}

static void get_dashboard(struct web_req *r)
{
    if (!web_auth_require_admin(r))
        return;
    if (r->db == NULL) {
        web_reply_error(r, 503, "unavailable", "no database");
        return;
    }
    struct stats *st = r->user;
    char msg[300];
    pthread_mutex_lock(&st->mu);
    int status = 0;
    if (st->text == NULL || mono() - st->at >= CACHE_S)
        status = recompute(r, st, msg, sizeof(msg));
    if (status != 0) {
        pthread_mutex_unlock(&st->mu);
        web_reply_error(r, status, NULL, "%s", msg);
        return;
    }
    /* Send a copy: the cache may be replaced once the mutex is let go. */
    char *copy = malloc(st->len + 1);
    size_t len = st->len;
    if (copy != NULL)
        memcpy(copy, st->text, len + 1);
    pthread_mutex_unlock(&st->mu);
    if (copy == NULL) {
        web_reply_error(r, 500, NULL, "out of memory");
        return;
    }
    web_header_add(r, "Cache-Control", "no-store");
    web_reply(r, 200, "application/json", copy, len);
    free(copy);
}

int web__stats_init(struct web_server *s, void **state, struct web_err *err)
{
    struct stats *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return WEB_ERR;
    }
    pthread_mutex_init(&st->mu, NULL);
    if (web_route(s, "GET", "/api/admin/dashboard", get_dashboard, st) !=
        WEB_OK) {
        pthread_mutex_destroy(&st->mu);
        free(st);
        snprintf(err->msg, sizeof(err->msg), "cannot add routes");
        return WEB_ERR;
    }
    *state = st;
    return WEB_OK;
}

void web__stats_cleanup(void *state)
{
    struct stats *st = state;
    if (st == NULL)
        return;
    pthread_mutex_destroy(&st->mu);
    free(st->text);
    free(st);
}
