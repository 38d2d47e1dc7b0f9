/*
 * test_web.c: settings, the router, JSON and SSE helpers and error bodies,
 * over real HTTP: a web_server runs in this process on 127.0.0.1 with a few
 * test routes, and libcurl talks to it. (The real `arena serve` process is
 * tested by test_serve*.sh.)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "check.h"
#include "web.h"
#include "web_internal.h"

/* ---------------------------------------------------------------------- */
/* Settings                                                               */

static int parse(struct web_config *cfg, char *msg, size_t n, int argc,
                 char **argv)
{
    web_config_init(cfg);
    return web_config_parse(cfg, argc, argv, msg, n);
}

TEST(config_defaults)
{
    struct web_config cfg;
    char msg[256];
    char *argv[] = {"serve"};
    CHECK_EQ(parse(&cfg, msg, sizeof(msg), 1, argv), 0);
    CHECK_EQ(cfg.port, 8080);
    CHECK_STREQ(cfg.listen, "127.0.0.1");
    CHECK_STREQ(cfg.data_dir, "./var");
    CHECK_STREQ(cfg.database_url, "");
    CHECK_EQ(cfg.max_body, 1024 * 1024);
    CHECK_EQ(cfg.db_pool_size, 8);
    CHECK_EQ(cfg.log_level, WEB_LOG_INFO);
    CHECK(cfg.access_log);
    web_config_cleanup(&cfg);
}

TEST(config_precedence)
{
    char path[] = "/tmp/arena-test-config-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *text = "{\"port\": 7001, \"threads\": 7, \"max_body\": \"2k\","
                       " \"access_log\": false, \"models\": [{\"name\":"
                       " \"x\"}], \"db-pool-size\": 3}";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    setenv("ARENA_PORT", "7002", 1);
    setenv("ARENA_THREADS", "9", 1);
    setenv("DATABASE_URL", "postgresql:///from-env", 1);
    struct web_config cfg;
    char msg[256];
    char *argv[] = {"serve",  "--config", path,
                    "--port", "7003",     "--models-dir=/models"};
    int rc = parse(&cfg, msg, sizeof(msg), 6, argv);
    unsetenv("ARENA_PORT");
    unsetenv("ARENA_THREADS");
    unsetenv("DATABASE_URL");
    unlink(path);
    CHECK_EQ(rc, 0);
    CHECK_EQ(cfg.port, 7003);      /* flag over env over file */
    CHECK_EQ(cfg.threads, 9);      /* env over file */
    CHECK_EQ(cfg.max_body, 2048);  /* file over default */
    CHECK_EQ(cfg.db_pool_size, 3); /* file, '-' spelling */
    CHECK(!cfg.access_log);        /* file boolean */
    CHECK_STREQ(cfg.database_url, "postgresql:///from-env");
    CHECK_STREQ(cfg.models_dir, "/models");
    /* Sections for other modules are kept. */
    CHECK(json_is_array(json_object_get(cfg.file, "models")));
    web_config_cleanup(&cfg);
}

TEST(config_errors)
{
    static const struct {
        const char *args[4];
        const char *env; /* NAME=value or NULL */
        const char *want;
    } cases[] = {
        {{"--port", "notaport"},
         NULL,
         "--port takes a number between 0 and 65535"},
        {{"--port=70000"}, NULL, "--port takes a number between 0 and 65535"},
        {{"--threads", "1"},
         NULL,
         "--threads takes a number between 2 and 10000"},
        {{"--access-log", "maybe"}, NULL, "--access-log takes on or off"},
        {{"--log-level", "loud"},
         NULL,
         "--log-level takes error, warn, info or debug"},
        {{"--max-body", "12q"},
         NULL,
         "--max-body takes a size between 1 and 1073741824 bytes "
         "(k, m, g suffixes allowed)"},
        {{"--frobnicate", "1"},
         NULL,
         "unknown option '--frobnicate'; see 'arena serve --help'"},
        {{"--port"}, NULL, "--port needs a value"},
        {{NULL},
         "ARENA_DB_POOL_SIZE=0",
         "ARENA_DB_POOL_SIZE takes a number between 1 and 1000"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[5] = {"serve"};
        int argc = 1;
        for (int j = 0; j < 4 && cases[i].args[j] != NULL; j++)
            argv[argc++] = (char *)cases[i].args[j];
        char env[64] = "";
        if (cases[i].env != NULL) {
            snprintf(env, sizeof(env), "%s", cases[i].env);
            char *eq = strchr(env, '=');
            *eq = '\0';
            setenv(env, eq + 1, 1);
        }
        struct web_config cfg;
        char msg[256] = "";
        int rc = parse(&cfg, msg, sizeof(msg), argc, argv);
        if (env[0] != '\0')
            unsetenv(env);
        web_config_cleanup(&cfg);
        CHECK_EQ(rc, 2);
        CHECK_STREQ(msg, cases[i].want);
    }
}

TEST(config_file_errors)
{
    char path[] = "/tmp/arena-test-config-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *text = "{\"port\": 80,\n \"prot\": 81}";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    struct web_config cfg;
    char msg[256];
    char *argv[] = {"serve", "--config", path};
    int rc = parse(&cfg, msg, sizeof(msg), 3, argv);
    web_config_cleanup(&cfg);
    CHECK_EQ(rc, 2);
    CHECK(strstr(msg, "prot: unknown setting") != NULL);
    /* Malformed JSON names the line and column. */
    FILE *f = fopen(path, "w");
    fputs("{\"port\": 80,\n \"threads\" 4}", f);
    fclose(f);
    rc = parse(&cfg, msg, sizeof(msg), 3, argv);
    web_config_cleanup(&cfg);
    unlink(path);
    CHECK_EQ(rc, 2);
    CHECK(strstr(msg, "line 2, column") != NULL);
}

/* ---------------------------------------------------------------------- */
/* A server with test routes                                              */

static atomic_int sse_gone; /* set when the streaming handler saw EOF */

static void h_echo(struct web_req *r)
{
    json_t *body = web_req_json(r);
    if (body == NULL)
        return; /* already answered 400 or 413 */
    json_t *out = json_pack("{s:O,s:s}", "got", body, "method", r->method);
    web_reply_json(r, 201, out);
    json_decref(out);
}

static void h_params(struct web_req *r)
{
    char q[32] = "";
    web_req_query(r, "q", q, sizeof(q));
    json_t *out = json_pack("{s:s,s:s,s:s,s:s}", "id", web_req_param(r, "id"),
                            "name", web_req_param(r, "name"), "q", q, "user",
                            (const char *)r->user);
    web_header_add(r, "Retry-After", "7");
    web_reply_json(r, 200, out);
    json_decref(out);
}

static void h_rest(struct web_req *r)
{
    web_reply(r, 200, "text/plain", r->path, strlen(r->path));
}

static void h_silent(struct web_req *r)
{
    (void)r; /* forgets to reply: the router answers 500 */
}

static void h_sse(struct web_req *r)
{
    web_sse_start(r);
    web_sse_send(r, "token", "{\"side\":\"a\"}");
    web_sse_send(r, NULL, "two\nlines");
    json_t *j = json_pack("{s:i}", "n", 3);
    web_sse_json(r, "end", j);
    json_decref(j);
}

static void h_sse_forever(struct web_req *r)
{
    web_sse_start(r);
    for (int i = 0; i < 500; i++) { /* at most 5 s */
        if (web_sse_send(r, "tick", "x") == WEB_ERR_GONE) {
            atomic_store(&sse_gone, 1);
            return;
        }
        usleep(10 * 1000);
    }
}

static void h_ip(struct web_req *r)
{
    const char *ip = web_req_client_ip(r);
    web_reply(r, 200, "text/plain", ip, strlen(ip));
}

static void h_https(struct web_req *r)
{
    const char *s = web_req_https(r) ? "https" : "http";
    web_reply(r, 200, "text/plain", s, strlen(s));
}

static void h_slow(struct web_req *r)
{
    usleep(700 * 1000);
    web_reply(r, 200, "text/plain", "done", 4);
}

struct srv {
    struct web_config cfg;
    struct web_server *s;
    char base[64];
};

static const char *static_dir_override; /* else ARENA_SOURCE_DIR/static */

static int srv_start(struct srv *v)
{
    web_config_init(&v->cfg);
    v->cfg.port = 0;
    v->cfg.max_body = 1024;
    v->cfg.threads = 4;
    v->cfg.access_log = false;
    free(v->cfg.static_dir);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/static", check_env("ARENA_SOURCE_DIR", "."));
    v->cfg.static_dir =
        strdup(static_dir_override != NULL ? static_dir_override : dir);
    struct web_err err;
    v->s = web_server_new(&v->cfg, NULL, &err);
    /* Only the health feature: the others need a database and models. */
    void *state;
    if (v->s == NULL || web__health_init(v->s, &state, &err) != WEB_OK)
        return -1;
    web_route(v->s, "POST", "/api/echo", h_echo, NULL);
    web_route(v->s, "GET", "/api/items/{id}/sub/{name}", h_params, "u1");
    web_route(v->s, "GET", "/api/rest/*", h_rest, NULL);
    web_route(v->s, "GET", "/api/silent", h_silent, NULL);
    web_route(v->s, "GET", "/api/sse", h_sse, NULL);
    web_route(v->s, "GET", "/api/forever", h_sse_forever, NULL);
    web_route(v->s, "GET", "/api/slow", h_slow, NULL);
    web_route(v->s, "GET", "/api/ip", h_ip, NULL);
    web_route(v->s, "GET", "/api/https", h_https, NULL);
    if (web_server_start(v->s, &err) != WEB_OK) {
        fprintf(stderr, "start: %s\n", err.msg);
        return -1;
    }
    snprintf(v->base, sizeof(v->base), "http://127.0.0.1:%d",
             web_server_port(v->s));
    return 0;
}

static void srv_stop(struct srv *v)
{
    web_server_free(v->s);
    web_config_cleanup(&v->cfg);
}

/* ---------------------------------------------------------------------- */
/* A small HTTP client                                                    */

struct resp {
    long status;
    char body[8192];
    size_t len;
    char headers[4096];
    size_t hlen;
    size_t stop_after; /* abort the transfer after this many body bytes */
};

static size_t on_body(char *p, size_t sz, size_t n, void *u)
{
    struct resp *r = u;
    size_t len = sz * n;
    size_t room = sizeof(r->body) - 1 - r->len;
    memcpy(r->body + r->len, p, len < room ? len : room);
    r->len += len < room ? len : room;
    r->body[r->len] = '\0';
    if (r->stop_after > 0 && r->len >= r->stop_after)
        return 0; /* the client goes away */
    return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *u)
{
    struct resp *r = u;
    size_t len = sz * n;
    size_t room = sizeof(r->headers) - 1 - r->hlen;
    memcpy(r->headers + r->hlen, p, len < room ? len : room);
    r->hlen += len < room ? len : room;
    r->headers[r->hlen] = '\0';
    return len;
}

/* method, url, body (NULL: none), extra header (NULL: none). */
static int http(struct resp *r, const char *method, const char *url,
                const char *body, size_t body_len, const char *header)
{
    size_t stop = r->stop_after;
    memset(r, 0, sizeof(*r));
    r->stop_after = stop;
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    if (header != NULL)
        h = curl_slist_append(h, header);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return (int)rc;
}

/* The error code of a JSON error body, or "". */
static const char *error_code(const struct resp *r, char *buf, size_t n)
{
    json_t *j = json_loads(r->body, 0, NULL);
    const char *code =
        json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    snprintf(buf, n, "%s", code != NULL ? code : "");
    json_decref(j);
    return buf;
}

/* ---------------------------------------------------------------------- */
/* HTTP tests                                                             */

TEST(routes_and_errors)
{
    struct srv v;
    CHECK_EQ(srv_start(&v), 0);
    struct resp r = {0};
    char url[256], code[64];

    snprintf(url, sizeof(url), "%s/healthz", v.base);
    CHECK_EQ(http(&r, "GET", url, NULL, 0, NULL), CURLE_OK);
    CHECK_EQ(r.status, 200);
    CHECK_STREQ(r.body, "{\"status\":\"ok\"}");
    CHECK(strstr(r.headers, "X-Content-Type-Options: nosniff") != NULL);
    CHECK(strstr(r.headers, "X-Request-Id: ") != NULL);

    /* No database: not ready. */
    snprintf(url, sizeof(url), "%s/readyz", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 503);
    CHECK_STREQ(error_code(&r, code, sizeof(code)), "unavailable");

    snprintf(url, sizeof(url), "%s/api/items/42/sub/b%%20c?q=x%%26y", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 200);
    CHECK_STREQ(r.body, "{\"id\":\"42\",\"name\":\"b c\",\"q\":\"x&y\","
                        "\"user\":\"u1\"}");
    CHECK(strstr(r.headers, "Retry-After: 7") != NULL);

    snprintf(url, sizeof(url), "%s/api/rest/a/b/c", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_STREQ(r.body, "/api/rest/a/b/c");

    /* 404 from the router (under /api/) and from static files. */
    snprintf(url, sizeof(url), "%s/api/items/42", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 404);
    CHECK_STREQ(error_code(&r, code, sizeof(code)), "not_found");
    snprintf(url, sizeof(url), "%s/no-such-page.html", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 404);
    CHECK_STREQ(error_code(&r, code, sizeof(code)), "not_found");

    /* 405 names the allowed methods. */
    snprintf(url, sizeof(url), "%s/api/echo", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 405);
    CHECK_STREQ(error_code(&r, code, sizeof(code)), "method_not_allowed");
    CHECK(strstr(r.headers, "Allow: POST") != NULL);

    /* A handler that sends nothing: 500, not a hung client. */
    snprintf(url, sizeof(url), "%s/api/silent", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 500);
    CHECK_STREQ(error_code(&r, code, sizeof(code)), "internal");
    srv_stop(&v);
}

TEST(json_bodies)
{
    struct srv v;
    CHECK_EQ(srv_start(&v), 0);
    struct resp r = {0};
    char url[256], code[64];
    snprintf(url, sizeof(url), "%s/api/echo", v.base);

    const char *ok = "{\"a\": [1, 2, \"ü\"]}";
    http(&r, "POST", url, ok, strlen(ok), "Content-Type: application/json");
    CHECK_EQ(r.status, 201);
    CHECK_STREQ(r.body, "{\"got\":{\"a\":[1,2,\"ü\"]},\"method\":\"POST\"}");

    const char *bad = "{\"a\": 1,\n \"b\" 2}";
    http(&r, "POST", url, bad, strlen(bad), NULL);
    CHECK_EQ(r.status, 400);
    CHECK_STREQ(error_code(&r, code, sizeof(code)), "bad_json");
    CHECK(strstr(r.body, "line 2, column") != NULL);

    /* Over the 1024-byte limit: with a Content-Length, and chunked. */
    char big[3000];
    memset(big, ' ', sizeof(big));
    big[0] = '[';
    big[sizeof(big) - 1] = ']';
    http(&r, "POST", url, big, sizeof(big), NULL);
    CHECK_EQ(r.status, 413);
    CHECK_STREQ(error_code(&r, code, sizeof(code)), "too_large");
    http(&r, "POST", url, big, sizeof(big), "Transfer-Encoding: chunked");
    CHECK_EQ(r.status, 413);
    /* Exactly at the limit is fine. */
    http(&r, "POST", url, big, 1024 - 1, NULL);
    CHECK_EQ(r.status, 400); /* "[   ..." unterminated, but read whole */
    big[1023] = ']';
    http(&r, "POST", url, big, 1024, NULL);
    CHECK_EQ(r.status, 201);
    srv_stop(&v);
}

TEST(sse_events)
{
    struct srv v;
    CHECK_EQ(srv_start(&v), 0);
    struct resp r = {0};
    char url[256];
    snprintf(url, sizeof(url), "%s/api/sse", v.base);
    CHECK_EQ(http(&r, "GET", url, NULL, 0, NULL), CURLE_OK);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.headers, "Content-Type: text/event-stream") != NULL);
    CHECK(strstr(r.headers, "X-Accel-Buffering: no") != NULL);
    CHECK_STREQ(r.body, "event: token\ndata: {\"side\":\"a\"}\n\n"
                        "data: two\ndata: lines\n\n"
                        "event: end\ndata: {\"n\":3}\n\n");

    /* A client that leaves mid-stream is noticed by the handler. */
    atomic_store(&sse_gone, 0);
    snprintf(url, sizeof(url), "%s/api/forever", v.base);
    r.stop_after = 40;
    http(&r, "GET", url, NULL, 0, NULL);
    for (int i = 0; i < 300 && !atomic_load(&sse_gone); i++)
        usleep(10 * 1000);
    CHECK(atomic_load(&sse_gone));
    srv_stop(&v);
}

TEST(static_files)
{
    struct srv v;
    CHECK_EQ(srv_start(&v), 0);
    struct resp r = {0};
    char url[256];
    snprintf(url, sizeof(url), "%s/", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "<html") != NULL);
    CHECK(strstr(r.headers, "X-Frame-Options: DENY") != NULL);
    /* The build's files in static/ are not served. */
    snprintf(url, sizeof(url), "%s/CMakeLists.txt", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 404);
    snprintf(url, sizeof(url), "%s/package.json", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 404);
    /* nor the unbundled sources, node_modules or dot files */
    const char *hidden[] = {
        "/src/arena.js", "/node_modules/.package-lock.json", "/README.md",
        "/.gitignore",   "/dist/../src/common.js",           "/build.mjs"};
    for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++) {
        snprintf(url, sizeof(url), "%s%s", v.base, hidden[i]);
        http(&r, "GET", url, NULL, 0, NULL);
        if (r.status != 404)
            fprintf(stderr, "%s answered %ld\n", hidden[i], (long)r.status);
        CHECK_EQ(r.status, 404);
    }
    snprintf(url, sizeof(url), "%s/theme.js", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 200);
    /* No way out of the static directory. */
    snprintf(url, sizeof(url), "%s/%%2e%%2e/main.c", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 404);
    CHECK(strstr(r.body, "int main") == NULL);
    srv_stop(&v);
}

/* Pages under a dot folder (~/.local/share/arena/static) are served: the
 * hidden files are judged by their path below static_dir only. */
TEST(static_under_dot_folder)
{
    char dot[4096], link[4200], target[4096];
    snprintf(dot, sizeof(dot), "%s/.dotdir-%d",
             check_env("ARENA_TEST_OUT", "/tmp"), (int)getpid());
    snprintf(link, sizeof(link), "%s/static", dot);
    snprintf(target, sizeof(target), "%s/static",
             check_env("ARENA_SOURCE_DIR", "."));
    char abs[4096];
    CHECK(realpath(target, abs) != NULL);
    CHECK(mkdir(dot, 0755) == 0);
    CHECK(symlink(abs, link) == 0);
    static_dir_override = link;
    struct srv v;
    CHECK_EQ(srv_start(&v), 0);
    static_dir_override = NULL;
    struct resp r = {0};
    char url[256];
    snprintf(url, sizeof(url), "%s/", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 200);
    snprintf(url, sizeof(url), "%s/theme.js", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_EQ(r.status, 200);
    srv_stop(&v);
    unlink(link);
    rmdir(dot);
}

TEST(client_ip)
{
    struct srv v;
    CHECK_EQ(srv_start(&v), 0);
    struct resp r = {0};
    char url[256];
    snprintf(url, sizeof(url), "%s/api/ip", v.base);
    /* Not behind a trusted proxy: the headers are ignored. */
    http(&r, "GET", url, NULL, 0, "X-Real-IP: 203.0.113.7");
    CHECK_STREQ(r.body, "127.0.0.1");
    /* Requests read the setting each time; the test changes it between
     * requests, while no request runs. */
    free(v.cfg.trusted_proxies);
    v.cfg.trusted_proxies = strdup("10.0.0.1, 127.0.0.1");
    http(&r, "GET", url, NULL, 0, "X-Real-IP: 203.0.113.7");
    CHECK_STREQ(r.body, "203.0.113.7");
    http(&r, "GET", url, NULL, 0, "X-Forwarded-For: 1.2.3.4, 2001:db8::5");
    CHECK_STREQ(r.body, "2001:db8::5");
    http(&r, "GET", url, NULL, 0, "X-Real-IP: <script>");
    CHECK_STREQ(r.body, "127.0.0.1");
    srv_stop(&v);
}

/* HTTPS is believed from a trusted proxy's X-Forwarded-Proto only. */
TEST(https_behind_proxy)
{
    struct srv v;
    CHECK_EQ(srv_start(&v), 0);
    struct resp r = {0};
    char url[256];
    snprintf(url, sizeof(url), "%s/api/https", v.base);
    http(&r, "GET", url, NULL, 0, NULL);
    CHECK_STREQ(r.body, "http");
    http(&r, "GET", url, NULL, 0, "X-Forwarded-Proto: https");
    CHECK_STREQ(r.body, "http"); /* anyone can send the header */
    free(v.cfg.trusted_proxies);
    v.cfg.trusted_proxies = strdup("127.0.0.1");
    http(&r, "GET", url, NULL, 0, "X-Forwarded-Proto: https");
    CHECK_STREQ(r.body, "https");
    http(&r, "GET", url, NULL, 0, "X-Forwarded-Proto: http");
    CHECK_STREQ(r.body, "http");
    srv_stop(&v);
}

struct call {
    char url[256];
    struct resp r;
};

static void *call_run(void *arg)
{
    struct call *c = arg;
    http(&c->r, "GET", c->url, NULL, 0, NULL);
    return NULL;
}

TEST(stop_finishes_in_flight)
{
    struct srv v;
    CHECK_EQ(srv_start(&v), 0);
    static struct call c;
    memset(&c, 0, sizeof(c));
    snprintf(c.url, sizeof(c.url), "%s/api/slow", v.base);
    pthread_t t;
    pthread_create(&t, NULL, call_run, &c);
    usleep(200 * 1000); /* the request is in its handler */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    web_server_stop(v.s);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_join(t, NULL);
    CHECK(web_server_stopping(v.s));
    CHECK_EQ(c.r.status, 200);
    CHECK_STREQ(c.r.body, "done");
    double waited = (double)(t1.tv_sec - t0.tv_sec) +
                    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK(waited > 0.3); /* stop waited for the handler */
    srv_stop(&v);
}

static const struct check_test tests[] = {
    TEST_ENTRY(config_defaults),
    TEST_ENTRY(config_precedence),
    TEST_ENTRY(config_errors),
    TEST_ENTRY(config_file_errors),
    TEST_ENTRY(routes_and_errors),
    TEST_ENTRY(json_bodies),
    TEST_ENTRY(sse_events),
    TEST_ENTRY(static_files),
    TEST_ENTRY(stop_finishes_in_flight),
    TEST_ENTRY(static_under_dot_folder),
    TEST_ENTRY(client_ip),
    TEST_ENTRY(https_behind_proxy),
};

CHECK_MAIN(tests)
