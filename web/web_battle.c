/*
 * web_battle.c: the arena API (docs/api.md, "The arena"):
 *
 *   GET  /api/models
 *   POST /api/battles
 *   GET  /api/battles/{id}
 *   POST /api/battles/{id}/turns        (Server-Sent Events)
 *   POST /api/battles/{id}/regenerate   (Server-Sent Events)
 *   POST /api/battles/{id}/vote
 *
 * HTTP only: the visitor (web_auth.c), rate limits and the daily vote cap
 * (arena_limiter, answered 429 with Retry-After), bodies, and the mapping
 * of arena statuses to answers. The flow itself is arena/'s.
 * The feature owns the process's struct arena (the models admin API and
 * the bench reach it through web_battle_arena()).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <civetweb.h>
#include <jansson.h>

#include "arena.h"
#include "infer.h"
#include "web_internal.h"

struct battle_api {
    struct arena *arena;
    struct arena_limiter *limiter;
    const struct web_config *cfg;
};

static struct battle_api *g_battle;

struct arena *web_battle_arena(void)
{
    return g_battle != NULL ? g_battle->arena : NULL;
}

static double mono_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Replies with the answer for an arena status. */
static void reply_status(struct web_req *r, int rc, const struct arena_err *err)
{
    int status;
    switch (rc) {
    case ARENA_ERR_INVALID:
    case ARENA_ERR_PARSE:
        status = 400;
        break;
    case ARENA_ERR_NO_VOTE:
        status = 400;
        break;
    case ARENA_ERR_NOT_FOUND:
        status = 404;
        break;
    case ARENA_ERR_NOT_YOURS:
        status = 403;
        break;
    case ARENA_ERR_ALREADY_VOTED:
    case ARENA_ERR_NOT_READY:
    case ARENA_ERR_FAILED:
    case ARENA_ERR_TURN_LIMIT:
    case ARENA_ERR_BUSY:
    case ARENA_ERR_VOTED:
    case ARENA_ERR_CONFLICT:
        status = 409;
        break;
    case ARENA_ERR_TOO_LARGE:
        status = 413;
        break;
    case ARENA_ERR_DB:
    case ARENA_ERR_NO_MODELS:
        status = 503;
        break;
    case ARENA_ERR_OVERLOADED:
        status = 503;
        web_header_add(r, "Retry-After", "2");
        break;
    default:
        status = 500;
        break;
    }
    web_reply_error(r, status, arena_status_code(rc), "%s",
                    err->msg[0] ? err->msg : arena_status_code(rc));
}

/* Takes a token from the visitor's and the IP's bucket of an action.
 * Returns true when allowed; else has replied 429. */
static bool limit(struct web_req *r, const struct arena_visitor *v,
                  enum arena_limit_kind kind, int per_min,
                  enum arena_limit_kind ip_kind, int ip_per_min,
                  const char *what)
{
    struct battle_api *b = r->user;
    double now = mono_now();
    int wait = arena_limiter_take(b->limiter, kind, v->hash, per_min, now);
    if (wait == 0)
        wait = arena_limiter_take(b->limiter, ip_kind, v->ip_hash, ip_per_min,
                                  now);
    if (wait == 0)
        return true;
    char s[16];
    snprintf(s, sizeof(s), "%d", wait);
    web_header_add(r, "Retry-After", s);
    web_reply_error(r, 429, "rate_limited", "too many %s; retry in %d s", what,
                    wait);
    return false;
}

static bool visitor(struct web_req *r, struct arena_visitor *v)
{
    if (web_auth_visitor(r, v) == WEB_OK)
        return true;
    web_reply_error(r, 500, NULL, "cannot identify the visitor");
    return false;
}

/* GET /api/models */
static void models_list(struct web_req *r)
{
    struct battle_api *b = r->user;
    struct arena_visitor v;
    if (!visitor(r, &v))
        return;
    json_t *out = arena_models_public(b->arena);
    if (out == NULL) {
        web_reply_error(r, 500, NULL, "out of memory");
        return;
    }
    web_reply_json(r, 200, out);
    json_decref(out);
}

/* POST /api/battles */
static void battle_create(struct web_req *r)
{
    struct battle_api *b = r->user;
    struct arena_visitor v;
    if (!visitor(r, &v) ||
        !limit(r, &v, ARENA_LIMIT_BATTLE, b->cfg->limit_battles,
               ARENA_LIMIT_IP_BATTLE, b->cfg->limit_ip_battles, "new battles"))
        return;
    json_t *body = web_req_json(r);
    if (body == NULL)
        return;
    json_t *out = NULL;
    struct arena_err err = {{0}};
    int rc = arena_battle_create(b->arena, &v, body, &out, &err);
    if (rc != ARENA_OK) {
        reply_status(r, rc, &err);
        return;
    }
    web_reply_json(r, 201, out);
    json_decref(out);
}

/* GET /api/battles/{id} */
static void battle_get(struct web_req *r)
{
    struct battle_api *b = r->user;
    struct arena_visitor v;
    if (!visitor(r, &v))
        return;
    json_t *out = NULL;
    struct arena_err err = {{0}};
    int rc = arena_battle_get(b->arena, &v, web_req_param(r, "id"), &out, &err);
    if (rc != ARENA_OK) {
        reply_status(r, rc, &err);
        return;
    }
    web_reply_json(r, 200, out);
    json_decref(out);
}

static int sse_start(void *user)
{
    struct web_req *r = user;
    /* The stream has no length: only closing the connection ends it for
     * the client (otherwise it waits out the keep-alive timeout). */
    mg_disable_keep_alive(r->conn);
    return web_sse_start(r) == WEB_OK ? 0 : 1;
}

static int sse_event(void *user, const char *name, const json_t *data)
{
    struct web_req *r = user;
    if (name == NULL)
        return web_sse_ping(r) == WEB_OK ? 0 : 1;
    if (data == NULL)
        return 0; /* out of memory building it: skip the event */
    return web_sse_json(r, name, data) == WEB_OK ? 0 : 1;
}

static void run_turn(struct web_req *r, const char *prompt,
                     const struct arena_visitor *v)
{
    struct battle_api *b = r->user;
    struct arena_turn_io io = {sse_start, sse_event, r};
    struct arena_err err = {{0}};
    int rc = arena_battle_turn(b->arena, v, web_req_param(r, "id"), prompt, &io,
                               &err);
    if (rc != ARENA_OK && r->status == 0)
        reply_status(r, rc, &err);
}

/* The visitor of a turn or a regenerate, within the turn limits; false
 * once it has answered (no cookie secret, 429). */
static bool turn_admit(struct web_req *r, struct arena_visitor *v)
{
    struct battle_api *b = r->user;
    return visitor(r, v) &&
           limit(r, v, ARENA_LIMIT_TURN, b->cfg->limit_turns,
                 ARENA_LIMIT_IP_TURN, b->cfg->limit_ip_turns, "turns");
}

/* POST /api/battles/{id}/turns {"prompt": "..."} */
static void battle_turn(struct web_req *r)
{
    struct arena_visitor v;
    if (!turn_admit(r, &v))
        return;
    json_t *body = web_req_json(r);
    if (body == NULL)
        return;
    const char *prompt = json_string_value(json_object_get(body, "prompt"));
    if (prompt == NULL) {
        web_reply_error(r, 400, "invalid_field",
                        "prompt: a string is required");
        return;
    }
    run_turn(r, prompt, &v);
}

/* POST /api/battles/{id}/regenerate */
static void battle_regenerate(struct web_req *r)
{
    struct arena_visitor v;
    if (!turn_admit(r, &v))
        return;
    run_turn(r, NULL, &v);
}

/* POST /api/battles/{id}/vote {"winner": ...} */
static void battle_vote(struct web_req *r)
{
    struct battle_api *b = r->user;
    struct arena_visitor v;
    if (!visitor(r, &v) ||
        !limit(r, &v, ARENA_LIMIT_VOTE, b->cfg->limit_votes,
               ARENA_LIMIT_IP_VOTE, b->cfg->limit_ip_votes, "votes"))
        return;
    json_t *body = web_req_json(r);
    if (body == NULL)
        return;
    const char *winner = json_string_value(json_object_get(body, "winner"));
    if (winner == NULL) {
        web_reply_error(r, 400, "invalid_field",
                        "winner: one of \"model_a\", \"model_b\", \"tie\", "
                        "\"tie (bothbad)\"");
        return;
    }
    long long now = (long long)time(NULL);
    int wait =
        arena_limiter_daily_take(b->limiter, v.hash, b->cfg->daily_votes, now);
    if (wait > 0) {
        char s[16];
        snprintf(s, sizeof(s), "%d", wait);
        web_header_add(r, "Retry-After", s);
        web_reply_error(r, 429, "daily_cap",
                        "the daily limit of %d votes is reached; retry in "
                        "%d s",
                        b->cfg->daily_votes, wait);
        return;
    }
    json_t *out = NULL;
    struct arena_err err = {{0}};
    int rc = arena_battle_vote(b->arena, &v, web_req_param(r, "id"), winner,
                               &out, &err);
    if (rc != ARENA_OK) {
        arena_limiter_daily_undo(b->limiter, v.hash, now);
        reply_status(r, rc, &err);
        return;
    }
    web_reply_json(r, 200, out);
    json_decref(out);
}

int web__battle_init(struct web_server *s, void **state, struct web_err *err)
{
    const struct web_config *cfg = web_server_config(s);
    struct db_pool *db = web_server_db(s);
    struct infer_hub *hub = web_server_hub(s);
    if (db == NULL || hub == NULL) {
        /* Without a database or models there is no arena: the routes
         * are simply absent (404). */
        *state = NULL;
        return WEB_OK;
    }
    struct battle_api *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return WEB_ERR;
    }
    b->cfg = cfg;
    b->limiter = arena_limiter_new();
    struct arena_opts o = {
        .db = db,
        .hub = hub,
        .models = json_object_get(cfg->file, "models"),
        .leak_terms = json_object_get(cfg->file, "leak_terms"),
        .models_dir = cfg->models_dir,
        .max_turns = cfg->battle_max_turns,
        .max_prompt_bytes = cfg->prompt_max_bytes,
        .max_tokens = cfg->answer_max_tokens,
        .sampling = strcmp(cfg->sampling, "active") == 0
                        ? ARENA_SAMPLE_ACTIVE
                        : ARENA_SAMPLE_WEIGHTED,
        .vote_writers = cfg->vote_writers,
        .vote_batch = cfg->vote_batch,
        .db_wait_ms = cfg->db_wait_ms,
    };
    if (strcmp(cfg->sampling, "active") != 0 &&
        strcmp(cfg->sampling, "weighted") != 0) {
        snprintf(err->msg, sizeof(err->msg),
                 "--sampling takes weighted or active");
        arena_limiter_free(b->limiter);
        free(b);
        return WEB_ERR;
    }
    struct arena_err aerr = {{0}};
    if (b->limiter == NULL || arena_new(&o, &b->arena, &aerr) != ARENA_OK) {
        snprintf(err->msg, sizeof(err->msg), "arena: %s",
                 b->limiter == NULL ? "out of memory" : aerr.msg);
        arena_limiter_free(b->limiter);
        free(b);
        return WEB_ERR;
    }
    if (web_route(s, "GET", "/api/models", models_list, b) != WEB_OK ||
        web_route(s, "POST", "/api/battles", battle_create, b) != WEB_OK ||
        web_route(s, "GET", "/api/battles/{id}", battle_get, b) != WEB_OK ||
        web_route(s, "POST", "/api/battles/{id}/turns", battle_turn, b) !=
            WEB_OK ||
        web_route(s, "POST", "/api/battles/{id}/regenerate", battle_regenerate,
                  b) != WEB_OK ||
        web_route(s, "POST", "/api/battles/{id}/vote", battle_vote, b) !=
            WEB_OK) {
        snprintf(err->msg, sizeof(err->msg), "cannot add routes");
        web__battle_cleanup(b);
        return WEB_ERR;
    }
    g_battle = b;
    *state = b;
    return WEB_OK;
}

void web__battle_cleanup(void *state)
{
    struct battle_api *b = state;
    if (b == NULL)
        return;
    if (g_battle == b)
        g_battle = NULL;
    arena_free(b->arena);
    arena_limiter_free(b->limiter);
    free(b);
}
