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
            snprintf(err->msg, sizeof(err->msg), "leaderboard: %s", aerr.msg);
            return WEB_ERR;
        }
    }
    if (web_route(s, "GET", "/api/leaderboard", get_leaderboard, b) != WEB_OK ||
        web_route(s, "GET", "/api/leaderboard/categories", get_categories, b) !=
            WEB_OK ||
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

/* ---------------------------------------------------------------------- */
/* arena bench leaderboard: GET latency under concurrent readers          */

#include <pthread.h>
#include <time.h>

#include <curl/curl.h>

struct lb_client {
    pthread_t thread;
    const char *url;
    double seconds;
    double *lat_ms; /* (n,) */
    size_t n, cap, errors, bytes;
};

static double lb_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static size_t lb_sink(char *data, size_t size, size_t nmemb, void *user)
{
    (void)data;
    *(size_t *)user += size * nmemb;
    return size * nmemb;
}

/* One keep-alive connection, one request after another. */
static void *lb_run(void *arg)
{
    struct lb_client *c = arg;
    CURL *h = curl_easy_init();
    if (h == NULL)
        return NULL;
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, lb_sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &c->bytes);
    double end = lb_now() + c->seconds;
    while (lb_now() < end) {
        double t0 = lb_now();
        CURLcode rc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        double ms = (lb_now() - t0) * 1e3;
        if (rc != CURLE_OK || status != 200) {
            c->errors++;
            continue;
        }
        if (c->n == c->cap) {
            size_t nc = c->cap ? c->cap * 2 : 4096;
            double *p = realloc(c->lat_ms, nc * sizeof(*p));
            if (p == NULL)
                break;
            c->lat_ms = p;
            c->cap = nc;
        }
        c->lat_ms[c->n++] = ms;
    }
    curl_easy_cleanup(h);
    return NULL;
}

static int lb_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* --db: one load and build without a server, timed. */
static int lb_build(const char *conninfo, int rounds)
{
    struct db_pool_config pc = {.conninfo = conninfo, .size = 1};
    struct db_pool *pool = NULL;
    struct db_conn *c = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_pool_new(&pc, &pool, &derr) != DB_OK ||
        db_pool_acquire(pool, 10000, &c, &derr) != DB_OK) {
        fprintf(stderr, "arena bench leaderboard: %s\n", derr.msg);
        db_pool_free(pool);
        return 1;
    }
    struct arena_board_opts o;
    arena_board_opts_init(&o);
    if (rounds >= 0)
        o.bootstrap = rounds;
    struct arena_board_snap *s = NULL;
    struct arena_err err = {{0}};
    double t0 = lb_now();
    int rc = arena_board_build_once(c, &o, &s, &err);
    double t1 = lb_now();
    db_pool_release(pool, c);
    db_pool_free(pool);
    if (rc != ARENA_OK) {
        fprintf(stderr, "arena bench leaderboard: %s\n", err.msg);
        return 1;
    }
    size_t len = 0;
    arena_board_categories(s, &len);
    printf("%llu votes: load %.2f s, build %.2f s (every category, %d "
           "bootstrap rounds, 1 thread)\n",
           (unsigned long long)arena_board_snap_votes(s),
           t1 - t0 - arena_board_snap_compute_s(s),
           arena_board_snap_compute_s(s), o.bootstrap);
    arena_board_release(s);
    return 0;
}

int web_cmd_bench_leaderboard(int argc, char **argv)
{
    const char *url = NULL, *path = "/api/leaderboard?category=overall";
    const char *db = NULL;
    int rounds = -1;
    int clients = 4;
    double seconds = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: arena bench leaderboard --url http://HOST:PORT "
                   "[--path P] [--clients N] [--seconds S]\n\n"
                   "GETs PATH (default %s) from N keep-alive clients (4) "
                   "for S seconds (5)\nand prints requests per second and "
                   "the latency percentiles.\n\n"
                   "arena bench leaderboard --db CONNINFO [--bootstrap N]: "
                   "times one load of\nevery vote and one build of every "
                   "category, without a server.\n",
                   path);
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "arena bench leaderboard: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--url") == 0)
            url = v;
        else if (strcmp(a, "--db") == 0)
            db = v;
        else if (strcmp(a, "--bootstrap") == 0)
            rounds = atoi(v);
        else if (strcmp(a, "--path") == 0)
            path = v;
        else if (strcmp(a, "--clients") == 0)
            clients = atoi(v);
        else if (strcmp(a, "--seconds") == 0)
            seconds = atof(v);
        else {
            fprintf(stderr, "arena bench leaderboard: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (db != NULL)
        return lb_build(db, rounds);
    if (url == NULL || clients < 1 || clients > 256 || !(seconds > 0)) {
        fprintf(stderr, "arena bench leaderboard: --url is required; "
                        "--clients 1..256, --seconds > 0\n");
        return 2;
    }
    char full[2048];
    snprintf(full, sizeof(full), "%s%s", url, path);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct lb_client *c = calloc((size_t)clients, sizeof(*c));
    if (c == NULL)
        return 1;
    double t0 = lb_now();
    for (int i = 0; i < clients; i++) {
        c[i].url = full;
        c[i].seconds = seconds;
        pthread_create(&c[i].thread, NULL, lb_run, &c[i]);
    }
    size_t n = 0, errors = 0, bytes = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(c[i].thread, NULL);
        n += c[i].n;
        errors += c[i].errors;
        bytes += c[i].bytes;
    }
    double wall = lb_now() - t0;
    double *all = malloc((n ? n : 1) * sizeof(*all));
    size_t k = 0;
    for (int i = 0; i < clients && all != NULL; i++) {
        memcpy(all + k, c[i].lat_ms, c[i].n * sizeof(*all));
        k += c[i].n;
        free(c[i].lat_ms);
    }
    free(c);
    curl_global_cleanup();
    if (all == NULL || n == 0) {
        fprintf(stderr,
                "arena bench leaderboard: no successful request "
                "(%zu errors)\n",
                errors);
        free(all);
        return 1;
    }
    qsort(all, n, sizeof(*all), lb_cmp);
#define PCT(p) all[(size_t)((double)(n - 1) * (p))]
    printf("GET %s: %zu requests in %.1f s from %d clients: %.0f/s, "
           "%.0f bytes each, %zu errors\n"
           "latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
           path, n, wall, clients, (double)n / wall, (double)bytes / n, errors,
           PCT(0.5), PCT(0.9), PCT(0.99), PCT(0.999), all[n - 1]);
#undef PCT
    free(all);
    return errors > 0;
}
