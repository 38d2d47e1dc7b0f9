/*
 * web.h: the web module's one public header.
 *
 * web/ is the only module that speaks HTTP: configuration of `arena serve`,
 * the CivetWeb server, routing, JSON in and out, SSE, the access log,
 * health checks, static files and (later) the feature APIs.
 *
 * Objects and threads:
 * - struct web_config: parsed once by the main thread, then read-only.
 * - struct web_server: one CivetWeb context plus a route table. Routes are
 *   added before web_server_start() and never after. Handlers run on
 *   CivetWeb's worker threads, one request per thread at a time; a handler
 *   owns its struct web_req and is the only writer to its connection.
 * - Features (web_battle.c, web_v1.c, ...) plug in through the table in
 *   web_routes.c: an init that registers routes and returns a state
 *   pointer, and a cleanup run after the server stops.
 * Ownership: every pointer a web_req hands out (params, headers, the JSON
 * body) is borrowed and valid until the handler returns; a handler may hang
 * its own resources on the request with web_req_defer().
 */
#ifndef WEB_H
#define WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "db.h"

struct mg_connection;
struct mg_request_info;

enum web_status {
    WEB_OK = 0,
    WEB_ERR = -1,       /* bad argument, or failure detailed in web_err */
    WEB_ERR_NOMEM = -2, /* out of memory */
    WEB_ERR_GONE = -3,  /* the client closed the connection */
    WEB_ERR_START = -4, /* the server could not listen */
};

struct web_err {
    char msg[256];
};

/* ---------------------------------------------------------------------- */
/* Logging (the process's one logger; main-like code installs it)         */

enum web_log_level { WEB_LOG_ERROR, WEB_LOG_WARN, WEB_LOG_INFO, WEB_LOG_DEBUG };

/* Sets the level below which messages are dropped. Call before threads
 * start. Also routes db/'s log into this logger. Cannot fail. */
void web_log_init(enum web_log_level level);

/* Writes one line to stderr: time, level, message. Thread-safe. The level
 * is checked before the message is formatted. */
void web_log(enum web_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------------- */
/* Configuration                                                          */

/* Every setting of `arena serve`. Precedence: flag > environment > JSON
 * config file > default. To add one: a field here and a row in the table
 * of web_config.c (name, env, type, limits, default, help); --help, the
 * environment, the config file and validation follow from the row. */
struct web_config {
    /* network */
    char *listen;           /* address to bind, e.g. "127.0.0.1" */
    int port;               /* 0 = any free port */
    char *trusted_proxies;  /* "" or "a,b": peers whose X-Real-IP or
                               X-Forwarded-For names the client */
    char *port_file;        /* "" or a file to write the bound port to */
    int threads;            /* CivetWeb workers (open connections) */
    long long max_body;     /* bytes, request bodies */
    int request_timeout_ms; /* socket read/write timeout */
    int shutdown_timeout_s; /* bound on finishing in-flight requests */
    /* files */
    char *static_dir;      /* pages served under / */
    char *data_dir;        /* embedded database, keys */
    char *models_dir;      /* "" or the model files to offer (issue 5) */
    char *secret_key_file; /* cookie HMAC key; "" = DATA_DIR/secret.key */
    /* database */
    char *database_url; /* "" = the embedded cluster in DATA_DIR/pg */
    int db_pool_size;   /* connections */
    int db_wait_ms;     /* wait for a free connection */
    int statement_timeout_ms;
    /* administration */
    char *admin_token;    /* "" = admin API disabled */
    char *admin_password; /* "" = no sign-in with a password */
    char *v1_keys;        /* "" or "a,b": the /v1 API's keys (Authorization:
                             Bearer); "" = /v1 for clients on this machine only */
    /* the arena (issue 5) */
    int battle_max_turns;  /* turns per battle */
    int prompt_max_bytes;  /* bytes per prompt */
    int answer_max_tokens; /* tokens per answer, upper bound */
    char *sampling;        /* "weighted" or "active" */
    int limit_battles;     /* per visitor per minute; 0 = off */
    int limit_turns;
    int limit_votes;
    int limit_ip_battles; /* per IP address per minute; 0 = off */
    int limit_ip_turns;
    int limit_ip_votes;
    int daily_votes;  /* per visitor per UTC day; 0 = off */
    int vote_writers; /* vote writer threads */
    int vote_batch;   /* votes per transaction at most */
    /* the leaderboard (issue 6) */
    int board_visitor_cap; /* votes one visitor weighs at most; 0 = off */
    int board_prompt_cap;  /* battles one prompt weighs at most; 0 = off */
    int board_bootstrap;   /* bootstrap rounds per category */
    int board_min_battles; /* fewer: provisional */
    int board_debounce_ms; /* wait after a vote for more */
    int board_poll_ms;     /* max(votes.id) poll interval */
    /* logs */
    int log_level; /* enum web_log_level */
    bool access_log;
    /* the config file */
    char *config_file; /* "" = none */
    json_t *file;      /* its parsed root, or NULL: other modules
                          read their sections (objects, arrays) */
};

/* Fills cfg with the defaults. Cannot fail (aborts if out of memory). */
void web_config_init(struct web_config *cfg);

/* Applies the config file, the environment and argv (argv[0] is the
 * command name) over cfg. Returns 0 when the server should run, 1 when
 * --help was printed to stdout, 2 on a bad setting, with one line naming
 * it in msg (e.g. "--port takes a number between 0 and 65535"). */
int web_config_parse(struct web_config *cfg, int argc, char **argv, char *msg,
                     size_t msg_len);

/* Prints the settings: flag, environment variable, default, help. */
void web_config_usage(FILE *f);

/* Frees what cfg holds. */
void web_config_cleanup(struct web_config *cfg);

/* ---------------------------------------------------------------------- */
/* Server and routes                                                      */

struct web_server;
struct web_req;

typedef void (*web_handler_fn)(struct web_req *req);

/* A server for cfg, with db (may be NULL: /readyz then says 503). Both
 * must outlive it. Returns NULL (err filled) on failure. */
struct web_server *web_server_new(const struct web_config *cfg,
                                  struct db_pool *db, struct web_err *err);

/* Adds a route. method is "GET", "POST", ...; pattern is a path whose
 * segments may be {name} (one segment, read with web_req_param) and whose
 * last segment may be * (the rest of the path). user is handed to the
 * handler as req->user. Routes match in the order they were added.
 * Returns WEB_OK or WEB_ERR (bad pattern, table full). */
int web_route(struct web_server *s, const char *method, const char *pattern,
              web_handler_fn fn, void *user);

/* Runs every feature's init from web_routes.c (which add their routes).
 * Returns WEB_OK, or the first failure with err filled. */
int web_server_add_features(struct web_server *s, struct web_err *err);

/* Starts listening. Returns WEB_OK, or WEB_ERR_START with err filled (port
 * taken, bad address). */
int web_server_start(struct web_server *s, struct web_err *err);

/* The port it listens on (useful with port 0). */
int web_server_port(const struct web_server *s);

/* True once web_server_stop() began: long handlers (SSE) should end. */
bool web_server_stopping(const struct web_server *s);

/* Stops accepting, waits for in-flight requests to finish, closes. */
void web_server_stop(struct web_server *s);

/* Runs the features' cleanups (after stop) and frees. NULL: no-op. */
void web_server_free(struct web_server *s);

const struct web_config *web_server_config(const struct web_server *s);
struct db_pool *web_server_db(const struct web_server *s);

/* The engines this server offers (set by `arena serve` before the
 * features' init; NULL if none). Borrowed: the caller frees the hub after
 * web_server_free. */
struct infer_hub;
void web_server_set_hub(struct web_server *s, struct infer_hub *h);
struct infer_hub *web_server_hub(const struct web_server *s);

/* A feature: a group of routes with shared state, listed in web_routes.c.
 * init registers routes (passing its state as their user pointer) and
 * sets *state; cleanup(state) runs after the server stopped. */
struct web_feature {
    const char *name;
    int (*init)(struct web_server *s, void **state, struct web_err *err);
    void (*cleanup)(void *state);
};
extern const struct web_feature web_features[];
extern const size_t web_features_count;

/* ---------------------------------------------------------------------- */
/* Requests                                                               */

#define WEB_MAX_PARAMS  4
#define WEB_MAX_HEADERS 8
#define WEB_MAX_DEFER   8

struct web_req {
    /* read-only for handlers */
    struct mg_connection *conn;
    const struct mg_request_info *ri;
    struct web_server *srv;
    const struct web_config *cfg;
    struct db_pool *db;    /* may be NULL */
    void *user;            /* the route's user pointer */
    const char *method;    /* "GET", ... */
    const char *path;      /* decoded path, without the query string */
    const char *id;        /* request id (hex), sent as X-Request-Id */
    const char *client_ip; /* the visitor's address (see web_req_client_ip) */
    /* private */
    int status; /* 0 until a reply starts */
    bool sse;   /* an event stream was started */
    char client_ip_buf[48];
    int n_params;
    struct {
        const char *name; /* in the route's pattern, not terminated */
        size_t name_len;
        char value[256];
    } params[WEB_MAX_PARAMS];
    int n_headers;
    char headers[WEB_MAX_HEADERS][2][128]; /* (n, name/value, text) */
    json_t *body;
    int n_defer;
    struct {
        void (*fn)(void *);
        void *p;
    } defer[WEB_MAX_DEFER];
};

/* The value of path parameter {name}, or NULL. */
const char *web_req_param(const struct web_req *r, const char *name);

/* A request header's value, or NULL. */
const char *web_req_header(const struct web_req *r, const char *name);

/* The client's IP address: the peer's, or, when the peer is one of
 * cfg->trusted_proxies (nginx in front), the address in its X-Real-IP
 * header (else the last X-Forwarded-For entry). Use it, not
 * ri->remote_addr, for rate limits and IP hashes. Borrowed. */
const char *web_req_client_ip(const struct web_req *r);

/* Whether the visitor's connection is HTTPS: TLS here, or a trusted proxy
 * (see above) that terminated TLS and says "X-Forwarded-Proto: https".
 * Cookies get the Secure attribute then. */
bool web_req_https(const struct web_req *r);

/* Copies query parameter name (decoded) into buf. Returns its length, or
 * -1 if absent, -2 if it does not fit. */
int web_req_query(const struct web_req *r, const char *name, char *buf,
                  size_t n);

/* Reads the body, at most cfg->max_body bytes. Returns the bytes
 * (terminated with '\0', freed with the request) and their count in *len,
 * or NULL after replying 413 (too large) or 400 (read failed). */
const char *web_req_body(struct web_req *r, size_t *len);

/* Reads and parses a JSON body. Returns the root (borrowed, freed with the
 * request), or NULL after replying 413, or 400 with the parser's line,
 * column and reason. */
json_t *web_req_json(struct web_req *r);

/* Runs fn(p) when the request ends (after the reply), last added first.
 * Returns WEB_ERR if the table is full (fn is then run at once). */
int web_req_defer(struct web_req *r, void (*fn)(void *), void *p);

/* ---------------------------------------------------------------------- */
/* Replies (each request sends exactly one)                               */

/* Adds a header to the coming reply (Set-Cookie, Retry-After, ...).
 * Returns WEB_ERR if full or too long. */
int web_header_add(struct web_req *r, const char *name, const char *value);

/* Sends status, the security headers, the added headers and body. Returns
 * WEB_OK or WEB_ERR_GONE. */
int web_reply(struct web_req *r, int status, const char *content_type,
              const void *body, size_t len);

/* Sends body (borrowed) as compact JSON. */
int web_reply_json(struct web_req *r, int status, const json_t *body);

/* Sends {"error": {"code": code, "message": ...}}. code NULL: the usual
 * code for status (400 "bad_request", 404 "not_found", 405
 * "method_not_allowed", 413 "too_large", 500 "internal", 503
 * "unavailable", ...). */
int web_reply_error(struct web_req *r, int status, const char *code,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The code web_reply_error uses for status. */
const char *web_error_code(int status);

/* A streamed reply of unknown length (Transfer-Encoding: chunked), for
 * exports: start sends the status and headers, each write one chunk, end
 * the last (empty) chunk. Returns WEB_OK or WEB_ERR_GONE (client gone). */
int web_stream_start(struct web_req *r, int status, const char *ctype);
int web_stream_write(struct web_req *r, const void *buf, size_t len);
int web_stream_end(struct web_req *r);

/* ---------------------------------------------------------------------- */
/* Server-Sent Events                                                     */

/* Starts an event stream (200, text/event-stream, no caching or proxy
 * buffering; the connection closes at the end). */
int web_sse_start(struct web_req *r);

/* Sends one event: "event: NAME" (if event is not NULL), one "data:" line
 * per line of data, a blank line; then flushes. Returns WEB_OK, or
 * WEB_ERR_GONE when the client went away (stop generating then). */
int web_sse_send(struct web_req *r, const char *event, const char *data);

/* Sends body (borrowed) as compact JSON data. */
int web_sse_json(struct web_req *r, const char *event, const json_t *body);

/* Sends a comment line (": ping"), to keep proxies from timing out and to
 * find out whether the client is still there. */
int web_sse_ping(struct web_req *r);

/* ---------------------------------------------------------------------- */
/* Commands                                                               */

int web_cmd_serve(int argc, char **argv);
int web_cmd_bench_votes(int argc, char **argv);
int web_cmd_bench_leaderboard(int argc, char **argv);

#endif
