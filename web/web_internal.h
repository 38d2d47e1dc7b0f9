/*
 * web_internal.h: declarations shared by the files of web/, not for other
 * modules. Each feature's init and cleanup (listed in web_routes.c) are
 * declared here.
 */
#ifndef WEB_INTERNAL_H
#define WEB_INTERNAL_H

#include "web.h"

/* web_health.c: GET /healthz, GET /readyz. */
int web__health_init(struct web_server *s, void **state, struct web_err *err);

/* web_v1.c: the OpenAI-compatible /v1 API over web_server_hub(). */
int web__v1_init(struct web_server *s, void **state, struct web_err *err);

/* web_auth.c: admin sign-in and the visitor cookie (see its comment). */
struct arena_keys;
struct arena_visitor;
int web__auth_init(struct web_server *s, void **state, struct web_err *err);
void web__auth_cleanup(void *state);
/* True when the request is an admin's (session cookie or bearer token);
 * otherwise replies 401 and returns false. */
bool web_auth_require_admin(struct web_req *r);
/* Whether r may use the /v1 API: with cfg->v1_keys, its bearer token is
 * one of them (compared in constant time); without, the client is on this
 * machine (a loopback address, after --trusted-proxies). */
bool web_auth_v1(struct web_req *r);
/* Fills v from the request's arena_vid cookie, or makes a new visitor
 * (Set-Cookie added to the reply); the IP hash always. WEB_ERR only if
 * auth is not initialised or randomness failed. */
int web_auth_visitor(struct web_req *r, struct arena_visitor *v);
/* The process's secret key (NULL before the auth feature's init). */
const struct arena_keys *web_auth_keys(void);

/* web_battle.c: the arena API; web_admin_models.c: the models admin API;
 * web_bench.c: the bench-only battle factory. */
struct arena;
int web__battle_init(struct web_server *s, void **state, struct web_err *err);
void web__battle_cleanup(void *state);
/* The arena of this process (NULL before web__battle_init). */
struct arena *web_battle_arena(void);
int web__admin_models_init(struct web_server *s, void **state,
                           struct web_err *err);
int web__bench_init(struct web_server *s, void **state, struct web_err *err);

/* web_leaderboard.c: the leaderboard API over the board's snapshots;
 * web_export.c: the admin export; web_stats.c: the admin dashboard. */
struct arena_board;
int web__leaderboard_init(struct web_server *s, void **state,
                          struct web_err *err);
void web__leaderboard_cleanup(void *state);
/* The board of this process (NULL before its init, or without a db). */
struct arena_board *web_leaderboard_board(void);
int web__export_init(struct web_server *s, void **state, struct web_err *err);
int web__stats_init(struct web_server *s, void **state, struct web_err *err);
void web__stats_cleanup(void *state);

#endif
