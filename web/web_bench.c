/*
 * web_bench.c: the vote load test.
 *
 * Server side, admin only: POST /api/admin/bench/battles {"count": N}
 * makes a fresh visitor and N anonymous battles already in state `ready`
 * (no generation; excluded_reason 'bench', so they never count), and
 * answers {"cookie": "arena_vid=...", "battles": ["b_...", ...]}.
 *
 * Client side: `arena bench votes --url http://127.0.0.1:PORT [--clients 8]
 * [--seconds 10] [--battles N] [--token T]`: each client thread gets its
 * own visitor and battles, then votes on them one after another over one
 * keep-alive connection (libcurl) until the time is up or its battles run
 * out, and records each vote's latency. Prints votes per second and the
 * latency percentiles. The server should run with the vote rate limits
 * and the daily cap off (--limit-votes 0 --limit-ip-votes 0
 * --daily-votes 0), or they are what gets measured.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <civetweb.h>
#include <curl/curl.h>
#include <jansson.h>

#include "arena.h"
#include "web_internal.h"

/* ---------------------------------------------------------------------- */
/* Server: the battle factory                                             */

static void bench_battles(struct web_req *r)
{
    if (!web_auth_require_admin(r))
        return;
    struct arena *a = web_battle_arena();
    const struct arena_keys *k = web_auth_keys();
    if (a == NULL || k == NULL) {
        web_reply_error(r, 503, NULL, "the arena is not running");
        return;
    }
    json_t *body = web_req_json(r);
    if (body == NULL)
        return;
    json_t *count = json_object_get(body, "count");
    if (!json_is_integer(count)) {
        web_reply_error(r, 400, "invalid_field", "count: an integer");
        return;
    }
    struct arena_visitor v;
    char cookie[64];
    arena_visitor_ip(k, web_req_client_ip(r), &v);
    if (arena_visitor_cookie_new(k, cookie, sizeof(cookie), &v) != ARENA_OK) {
        web_reply_error(r, 500, NULL, "no randomness");
        return;
    }
    json_t *ids = NULL;
    struct arena_err err = {{0}};
    int rc = arena_battle_bench_create(a, &v, (int)json_integer_value(count),
                                       &ids, &err);
    if (rc != ARENA_OK) {
        web_reply_error(r,
                        rc == ARENA_ERR_INVALID ? 400
                        : rc == ARENA_ERR_NOMEM ? 500
                                                : 503,
                        arena_status_code(rc), "%s", err.msg);
        return;
    }
    char hdr[96];
    snprintf(hdr, sizeof(hdr), "arena_vid=%s", cookie);
    json_t *out = json_pack("{s:s,s:o}", "cookie", hdr, "battles", ids);
    web_reply_json(r, 200, out);
    json_decref(out);
}

int web__bench_init(struct web_server *s, void **state, struct web_err *err)
{
    *state = NULL;
    if (web_route(s, "POST", "/api/admin/bench/battles", bench_battles, NULL) !=
        WEB_OK) {
        snprintf(err->msg, sizeof(err->msg), "cannot add routes");
        return WEB_ERR;
    }
    return WEB_OK;
}

/* ---------------------------------------------------------------------- */
/* Client: arena bench votes                                              */

struct buf {
    char *p;
    size_t n;
};

static size_t buf_write(char *data, size_t size, size_t nmemb, void *user)
{
    struct buf *b = user;
    size_t len = size * nmemb;
    char *np = realloc(b->p, b->n + len + 1);
    if (np == NULL)
        return 0;
    memcpy(np + b->n, data, len);
    b->n += len;
    np[b->n] = '\0';
    b->p = np;
    return len;
}

struct client {
    pthread_t thread;
    const char *url;
    double seconds;
    char cookie[128];
    json_t *battles; /* array of ids */
    double *lat_ms;  /* (n_done,) */
    size_t n_done, n_ok, n_err;
    long last_status;
    double t0;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    CURL *h = curl_easy_init();
    if (h == NULL)
        return NULL;
    static const char *const winners[] = {"model_a", "model_b", "tie",
                                          "tie (bothbad)"};
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    char cookie_hdr[160];
    snprintf(cookie_hdr, sizeof(cookie_hdr), "Cookie: %s", c->cookie);
    hdrs = curl_slist_append(hdrs, cookie_hdr);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
    struct buf b = {0};
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    size_t n = json_array_size(c->battles);
    c->lat_ms = calloc(n > 0 ? n : 1, sizeof(double));
    double end = c->t0 + c->seconds;
    for (size_t i = 0; i < n && c->lat_ms != NULL; i++) {
        double t = now_s();
        if (t >= end)
            break;
        char url[512], body[64];
        snprintf(url, sizeof(url), "%s/api/battles/%s/vote", c->url,
                 json_string_value(json_array_get(c->battles, i)));
        snprintf(body, sizeof(body), "{\"winner\":\"%s\"}", winners[i % 4]);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        b.n = 0;
        CURLcode rc = curl_easy_perform(h);
        double dt = (now_s() - t) * 1e3;
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        c->lat_ms[c->n_done++] = dt;
        if (rc == CURLE_OK && status == 200) {
            c->n_ok++;
        } else {
            c->n_err++;
            c->last_status = rc == CURLE_OK ? status : -(long)rc;
        }
    }
    free(b.p);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return NULL;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static int make_battles(const char *url, const char *token, int count,
                        struct client *c)
{
    CURL *h = curl_easy_init();
    if (h == NULL)
        return -1;
    char u[512], auth[512], body[64];
    snprintf(u, sizeof(u), "%s/api/admin/bench/battles", url);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    snprintf(body, sizeof(body), "{\"count\":%d}", count);
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    struct buf b = {0};
    curl_easy_setopt(h, CURLOPT_URL, u);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 120000L);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    int ret = -1;
    if (rc != CURLE_OK) {
        fprintf(stderr, "arena bench votes: %s: %s\n", u,
                curl_easy_strerror(rc));
    } else if (status != 200) {
        fprintf(stderr, "arena bench votes: %s answered %ld: %s\n", u, status,
                b.p ? b.p : "");
    } else {
        json_t *root = json_loads(b.p, 0, NULL);
        const char *ck = json_string_value(json_object_get(root, "cookie"));
        json_t *ids = json_object_get(root, "battles");
        if (ck != NULL && json_is_array(ids)) {
            snprintf(c->cookie, sizeof(c->cookie), "%s", ck);
            c->battles = json_incref(ids);
            ret = 0;
        }
        json_decref(root);
    }
    free(b.p);
    return ret;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: arena bench votes --url http://HOST:PORT [--clients 8] "
               "[--seconds 10]\n"
               "                         [--battles N] [--token T]\n"
               "Votes as fast as CLIENTS connections can on battles made "
               "ready by\n"
               "POST /api/admin/bench/battles (admin token: --token or "
               "ARENA_ADMIN_TOKEN),\n"
               "and reports votes per second and latency percentiles.\n");
}

int web_cmd_bench_votes(int argc, char **argv)
{
    const char *url = NULL;
    const char *token = getenv("ARENA_ADMIN_TOKEN");
    int clients = 8, battles = 0;
    double seconds = 10;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (val == NULL) {
            fprintf(stderr, "arena bench votes: %s needs a value\n", arg);
            return 2;
        }
        if (strcmp(arg, "--url") == 0)
            url = val;
        else if (strcmp(arg, "--token") == 0)
            token = val;
        else if (strcmp(arg, "--clients") == 0)
            clients = atoi(val);
        else if (strcmp(arg, "--seconds") == 0)
            seconds = atof(val);
        else if (strcmp(arg, "--battles") == 0)
            battles = atoi(val);
        else {
            fprintf(stderr, "arena bench votes: unknown option %s\n", arg);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (url == NULL || token == NULL || token[0] == '\0' || clients < 1 ||
        clients > 1024 || !(seconds > 0)) {
        usage(stderr);
        return 2;
    }
    if (battles <= 0)
        /* More than one client can vote (8 clients: 12,000/s), not many
         * more: every battle made is counted again by the leaderboard's
         * battles-over-time refresh during the run. */
        battles = (int)(seconds * 1500) + 100;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct client *cs = calloc((size_t)clients, sizeof(*cs));
    if (cs == NULL)
        return 1;
    int rc = 0;
    for (int i = 0; i < clients && rc == 0; i++) {
        cs[i].url = url;
        cs[i].seconds = seconds;
        if (make_battles(url, token, battles, &cs[i]) != 0)
            rc = 1;
    }
    double t0 = now_s();
    for (int i = 0; i < clients && rc == 0; i++) {
        cs[i].t0 = t0;
        pthread_create(&cs[i].thread, NULL, client_main, &cs[i]);
    }
    size_t total = 0, ok = 0, errs = 0;
    long last_status = 0;
    for (int i = 0; i < clients && rc == 0; i++) {
        pthread_join(cs[i].thread, NULL);
        total += cs[i].n_done;
        ok += cs[i].n_ok;
        errs += cs[i].n_err;
        if (cs[i].last_status != 0)
            last_status = cs[i].last_status;
    }
    double elapsed = now_s() - t0;
    if (rc == 0) {
        double *all = malloc((total > 0 ? total : 1) * sizeof(double));
        size_t k = 0;
        for (int i = 0; all != NULL && i < clients; i++)
            for (size_t j = 0; j < cs[i].n_done; j++)
                all[k++] = cs[i].lat_ms[j];
        if (all != NULL && k > 0) {
            qsort(all, k, sizeof(double), cmp_double);
            double sum = 0;
            for (size_t j = 0; j < k; j++)
                sum += all[j];
#define PCT(p) all[(size_t)fmin((double)(k - 1), floor((p) * (double)k))]
            printf("votes: %zu ok, %zu errors in %.2f s with %d clients\n", ok,
                   errs, elapsed, clients);
            printf("rate: %.0f votes/s\n", (double)ok / elapsed);
            printf("latency ms: mean %.2f p50 %.2f p90 %.2f p99 %.2f "
                   "max %.2f\n",
                   sum / (double)k, PCT(0.50), PCT(0.90), PCT(0.99),
                   all[k - 1]);
#undef PCT
            if (errs > 0)
                printf("last error: status %ld\n", last_status);
        }
        free(all);
        if (errs > 0)
            rc = 1;
    }
    for (int i = 0; i < clients; i++) {
        json_decref(cs[i].battles);
        free(cs[i].lat_ms);
    }
    free(cs);
    curl_global_cleanup();
    return rc;
}
