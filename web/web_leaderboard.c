/*
 * web_leaderboard.c: the public leaderboard API (docs/api.md), served from
 * the leaderboard cache (arena_board*.c) without touching the database.
 *
 *   GET /api/leaderboard?category=overall&method=bt|elo
 *   GET /api/leaderboard/categories
 *   GET /api/leaderboard/matrices?category=overall
 *   GET /api/stats/votes?bucket=hour|day
 *
 * Each answer is text prebuilt by the board's thread; a handler takes a
 * reference to the current snapshot, writes the text and lets go. An
 * unknown category, method or bucket is a 400 invalid_field naming the
 * parameter. Without a database the routes answer 503.
 *
 * State: one board per process, created by this feature's init and freed
 * by its cleanup (after the server stopped, so no handler holds it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "web_internal.h"

static struct arena_board *g_board;

struct arena_board *web_leaderboard_board(void)
{
    return g_board;
}

/* Replies with a snapshot's text, or 400 naming the parameter. */
static void reply_text(struct web_req *r, const char *text, size_t len,
                       const char *param, const char *value)
{
    if (text == NULL) {
        web_reply_error(r, 400, "invalid_field", "%s: unknown value '%s'",
                        param, value);
        return;
    }
    web_header_add(r, "Cache-Control", "no-cache");
    web_reply(r, 200, "application/json", text, len);
}

static struct arena_board *board_or_503(struct web_req *r)
{
    struct arena_board *b = r->user;
    if (b == NULL)
        web_reply_error(r, 503, "unavailable", "no database");
    return b;
}

/* Reads query parameter name into buf; "" when absent. False (after a 400)
 * when it does not fit. */
static bool query(struct web_req *r, const char *name, char *buf, size_t n)
{
    int l = web_req_query(r, name, buf, n);
    if (l == -2) {
        web_reply_error(r, 400, "invalid_field", "%s: too long", name);
        return false;
    }
    if (l < 0)
        buf[0] = '\0';
    return true;
}

static void get_leaderboard(struct web_req *r)
{
    struct arena_board *b = board_or_503(r);
    char cat[64], method[16];
    if (b == NULL || !query(r, "category", cat, sizeof(cat)) ||
        !query(r, "method", method, sizeof(method)))
        return;
    struct arena_board_snap *s = arena_board_acquire(b);
    size_t len = 0;
    const char *text = arena_board_leaderboard(s, cat, method, &len);
    if (text == NULL && arena_board_leaderboard(s, cat, "bt", &len) != NULL)
        reply_text(r, NULL, 0, "method", method);
    else
        reply_text(r, text, len, "category", cat);
    arena_board_release(s);
}

static void get_categories(struct web_req *r)
{
    struct arena_board *b = board_or_503(r);
    if (b == NULL)
        return;
    struct arena_board_snap *s = arena_board_acquire(b);
    size_t len = 0;
    const char *text = arena_board_categories(s, &len);
    reply_text(r, text, len, "category", "");
    arena_board_release(s);
}

static void get_matrices(struct web_req *r)
{
    struct arena_board *b = board_or_503(r);
    char cat[64];
    if (b == NULL || !query(r, "category", cat, sizeof(cat)))
        return;
    struct arena_board_snap *s = arena_board_acquire(b);
    size_t len = 0;
    const char *text = arena_board_matrices(s, cat, &len);
    reply_text(r, text, len, "category", cat);
    arena_board_release(s);
}

static void get_votes(struct web_req *r)
{
    struct arena_board *b = board_or_503(r);
    char bucket[16];
    if (b == NULL || !query(r, "bucket", bucket, sizeof(bucket)))
        return;
    struct arena_board_snap *s = arena_board_acquire(b);
    size_t len = 0;
    const char *text = arena_board_votes(s, bucket, &len);
    reply_text(r, text, len, "bucket", bucket);
    arena_board_release(s);
}

int web__leaderboard_init(struct web_server *s, void **state,
                          struct web_err *err)
{
    const struct web_config *cfg = web_server_config(s);
    struct db_pool *db = web_server_db(s);
    struct arena_board *b = NULL;
    if (db != NULL) {
        struct arena_board_opts o;
        arena_board_opts_init(&o);
        o.db = db;
        o.visitor_cap = (uint32_t)cfg->board_visitor_cap;
        o.prompt_cap = (uint32_t)cfg->board_prompt_cap;
        o.bootstrap = cfg->board_bootstrap;
        o.min_battles = (uint64_t)cfg->board_min_battles;
        o.debounce_ms = cfg->board_debounce_ms;
        o.poll_ms = cfg->board_poll_ms;
        o.db_wait_ms = cfg->db_wait_ms;
        struct arena_err aerr = {{0}};
        if (arena_board_new(&o, &b, &aerr) != ARENA_OK) {
            snprintf(err->msg, sizeof(err->msg), "leaderboard: %s",
                     aerr.msg);
            return WEB_ERR;
        }
    }
    if (web_route(s, "GET", "/api/leaderboard", get_leaderboard, b) !=
            WEB_OK ||
        web_route(s, "GET", "/api/leaderboard/categories", get_categories,
                  b) != WEB_OK ||
        web_route(s, "GET", "/api/leaderboard/matrices", get_matrices, b) !=
            WEB_OK ||
        web_route(s, "GET", "/api/stats/votes", get_votes, b) != WEB_OK) {
        arena_board_free(b);
        snprintf(err->msg, sizeof(err->msg), "cannot add routes");
        return WEB_ERR;
    }
    g_board = b;
    *state = b;
    return WEB_OK;
}

void web__leaderboard_cleanup(void *state)
{
    if (g_board == state)
        g_board = NULL;
    arena_board_free(state);
}
