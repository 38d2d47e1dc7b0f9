/*
 * web_server.c: the CivetWeb context, the router and the access log.
 *
 * One CivetWeb request handler on "/" receives every request and routes
 * it through our table; a request no route takes falls back to CivetWeb's
 * static file serving (GET and HEAD only) from cfg->static_dir. CivetWeb's
 * own errors (404 for a missing file, 400 for a malformed request) come
 * through the http_error callback and get the same JSON body as ours.
 *
 * Access log: CivetWeb calls log_access once per request, on the worker
 * thread that served it, with a combined-log line holding the status and
 * the bytes sent; begin_request, on the same thread, noted the start time
 * and made the request id. Those two live in thread-local storage because
 * a worker serves one request at a time from begin_request to log_access.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <civetweb.h>
#include <jansson.h>

#include "web.h"

#define MAX_ROUTES   128
#define MAX_FEATURES 32

/* Sent with every reply of ours; static files get them through CivetWeb's
 * additional_header. The pages load scripts and styles from 'self' only. */
#define SECURITY_HEADERS_N 4
static const char *const security_headers[SECURITY_HEADERS_N][2] = {
    {"X-Content-Type-Options", "nosniff"},
    {"X-Frame-Options", "DENY"},
    {"Referrer-Policy", "no-referrer"},
    {"Content-Security-Policy",
     "default-src 'self'; img-src 'self' data:; style-src 'self' "
     "'unsafe-inline'; frame-ancestors 'none'"},
};

/* Whether a static path (the decoded, normalised URI path) names one of
 * the files that static/ holds as the pages' source folder rather than as
 * pages: any dot file or folder, node_modules, the unbundled sources under
 * /src/, package and config JSON, build scripts, notes. Checked on the
 * URI, not with CivetWeb's hide_files_patterns, which match the whole file
 * system path, so that a static_dir under a dot folder (~/.local/share)
 * hid every page. */
static bool static_hidden(const char *path)
{
    static const char *const ext[] = {".json", ".mjs", ".cmake", ".md"};
    if (strncmp(path, "/src/", 5) == 0)
        return true;
    for (const char *p = path; *p != '\0';) {
        p += strspn(p, "/");
        size_t n = strcspn(p, "/");
        if ((n > 0 && p[0] == '.') ||
            (n == 12 && strncmp(p, "node_modules", 12) == 0))
            return true;
        p += n;
    }
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    if (strcmp(base, "CMakeLists.txt") == 0)
        return true;
    size_t len = strlen(base);
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        size_t el = strlen(ext[i]);
        if (len >= el && strcmp(base + len - el, ext[i]) == 0)
            return true;
    }
    return false;
}

struct route {
    char method[8];
    char pattern[128];
    web_handler_fn fn;
    void *user;
};

struct web_server {
    const struct web_config *cfg;
    struct db_pool *db;
    struct infer_hub *hub; /* borrowed, may be NULL */
    struct mg_context *ctx;
    int port;
    atomic_bool stopping;
    atomic_int active; /* requests between begin_request and end_request */
    int n_routes;
    struct route routes[MAX_ROUTES];
    int n_features;
    struct {
        const struct web_feature *f;
        void *state;
    } features[MAX_FEATURES];
};

/* Per worker thread: the request being served (see the file comment). */
static _Thread_local struct {
    bool active;
    struct timespec start;
    char id[17];
} cur;

/* ---------------------------------------------------------------------- */
/* Server lifecycle                                                       */

static void err_set(struct web_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void err_set(struct web_err *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

struct web_server *web_server_new(const struct web_config *cfg,
                                  struct db_pool *db, struct web_err *err)
{
    struct web_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        err_set(err, "out of memory");
        return NULL;
    }
    s->cfg = cfg;
    s->db = db;
    atomic_init(&s->stopping, false);
    atomic_init(&s->active, 0);
    return s;
}

static bool pattern_ok(const char *p)
{
    if (p[0] != '/')
        return false;
    for (const char *q = p; *q != '\0'; q++)
        if (*q == '*' && (q[-1] != '/' || q[1] != '\0'))
            return false;
    return true;
}

int web_route(struct web_server *s, const char *method, const char *pattern,
              web_handler_fn fn, void *user)
{
    if (s->n_routes >= MAX_ROUTES || strlen(method) >= 8 ||
        strlen(pattern) >= 128 || !pattern_ok(pattern) || fn == NULL)
        return WEB_ERR;
    struct route *r = &s->routes[s->n_routes++];
    snprintf(r->method, sizeof(r->method), "%s", method);
    snprintf(r->pattern, sizeof(r->pattern), "%s", pattern);
    r->fn = fn;
    r->user = user;
    return WEB_OK;
}

int web_server_add_features(struct web_server *s, struct web_err *err)
{
    for (size_t i = 0; i < web_features_count; i++) {
        const struct web_feature *f = &web_features[i];
        if (s->n_features >= MAX_FEATURES) {
            err_set(err, "too many features");
            return WEB_ERR;
        }
        void *state = NULL;
        struct web_err ferr = {{0}};
        if (f->init != NULL && f->init(s, &state, &ferr) != WEB_OK) {
            err_set(err, "%s: %s", f->name, ferr.msg);
            return WEB_ERR;
        }
        s->features[s->n_features].f = f;
        s->features[s->n_features].state = state;
        s->n_features++;
    }
    return WEB_OK;
}

const struct web_config *web_server_config(const struct web_server *s)
{
    return s->cfg;
}

void web_server_set_hub(struct web_server *s, struct infer_hub *h)
{
    s->hub = h;
}

struct infer_hub *web_server_hub(const struct web_server *s)
{
    return s->hub;
}

struct db_pool *web_server_db(const struct web_server *s)
{
    return s->db;
}

int web_server_port(const struct web_server *s)
{
    return s->port;
}

bool web_server_stopping(const struct web_server *s)
{
    return atomic_load(&s->stopping);
}

/* ---------------------------------------------------------------------- */
/* CivetWeb callbacks                                                     */

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 +
           (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Request ids: a per-thread splitmix64 sequence, seeded once from the
 * kernel (a getrandom call per request showed up in the vote profile).
 * They only tell log lines apart; they are not secrets. */
static void new_request_id(char out[17])
{
    static _Thread_local uint64_t state;
    static _Thread_local bool seeded;
    if (!seeded) {
        if (getrandom(&state, sizeof(state), GRND_NONBLOCK) != sizeof(state)) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            state = (uint64_t)t.tv_nsec * 0x9E3779B97F4A7C15ULL ^
                    (uint64_t)t.tv_sec ^ (uint64_t)(uintptr_t)&state;
        }
        seeded = true;
    }
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    snprintf(out, 17, "%016" PRIx64, z);
}

static void send_json_error(struct mg_connection *conn, int status,
                            const char *code, const char *message,
                            const char *id);

static int on_begin_request(struct mg_connection *conn)
{
    struct web_server *s = mg_get_user_data(mg_get_context(conn));
    atomic_fetch_add(&s->active, 1);
    cur.active = true;
    clock_gettime(CLOCK_MONOTONIC, &cur.start);
    new_request_id(cur.id);
    if (atomic_load(&s->stopping)) {
        /* Draining: in-flight requests finish, new ones are turned away
         * (a load balancer retries them elsewhere). */
        mg_disable_keep_alive(conn);
        send_json_error(conn, 503, "unavailable", "shutting down", cur.id);
        return 503;
    }
    return 0; /* go on: to our handler or to static files */
}

static void on_end_request(const struct mg_connection *conn, int status)
{
    (void)status;
    struct web_server *s = mg_get_user_data(mg_get_context(conn));
    atomic_fetch_sub(&s->active, 1);
}

/* Whether addr is one of the comma-separated addresses of list. */
static bool in_list(const char *list, const char *addr)
{
    size_t len = strlen(addr);
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ",");
        while (n > 0 && *p == ' ') {
            p++;
            n--;
        }
        size_t m = n;
        while (m > 0 && p[m - 1] == ' ')
            m--;
        if (m == len && strncmp(p, addr, len) == 0)
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

/* Copies the address token of s (the last comma-separated item if last,
 * else the first) into out if it looks like an IP address. */
static bool take_ip(const char *s, bool last, char *out, size_t n)
{
    if (s == NULL)
        return false;
    if (last && strrchr(s, ',') != NULL)
        s = strrchr(s, ',') + 1;
    s += strspn(s, " ");
    size_t len = strspn(s, "0123456789abcdefABCDEF.:");
    if (len == 0 || len >= n ||
        (s[len] != '\0' && s[len] != ' ' && s[len] != ','))
        return false;
    memcpy(out, s, len);
    out[len] = '\0';
    return true;
}

/* The client's address for conn (see web_req_client_ip). */
static void client_ip(const struct mg_connection *conn,
                      const struct web_config *cfg, char *out, size_t n)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    snprintf(out, n, "%s", ri->remote_addr);
    if (cfg->trusted_proxies[0] == '\0' ||
        !in_list(cfg->trusted_proxies, ri->remote_addr))
        return;
    struct mg_connection *c = (struct mg_connection *)conn;
    if (!take_ip(mg_get_header(c, "X-Real-IP"), false, out, n))
        take_ip(mg_get_header(c, "X-Forwarded-For"), true, out, n);
}

/* Finds "HTTP/<version>\" <status> <bytes>" in CivetWeb's access line. */
static void parse_access(const char *line, const char *version, int *status,
                         long long *bytes)
{
    char key[32];
    snprintf(key, sizeof(key), "HTTP/%s\" ", version != NULL ? version : "");
    const char *p = strstr(line, key);
    *status = 0;
    *bytes = -1;
    if (p != NULL)
        sscanf(p + strlen(key), "%d %lld", status, bytes);
}

static int on_log_access(const struct mg_connection *conn, const char *line)
{
    const struct mg_context *ctx = mg_get_context(conn);
    const struct web_server *s = mg_get_user_data(ctx);
    const struct mg_request_info *ri = mg_get_request_info(conn);
    bool active = cur.active;
    cur.active = false;
    if (s == NULL || !s->cfg->access_log || ri == NULL)
        return 1;
    int status;
    long long bytes;
    parse_access(line, ri->http_version, &status, &bytes);
    char ms[32] = "-";
    if (active)
        snprintf(ms, sizeof(ms), "%.1fms", ms_since(&cur.start));
    char ip[48];
    client_ip(conn, s->cfg, ip, sizeof(ip));
    web_log(WEB_LOG_INFO, "access %s %s %s %d %lldB %s id=%s", ip,
            ri->request_method ? ri->request_method : "-",
            ri->local_uri ? ri->local_uri : "-", status, bytes, ms,
            active ? cur.id : "-");
    return 1; /* CivetWeb itself writes nothing */
}

static int on_log_message(const struct mg_connection *conn, const char *msg)
{
    (void)conn;
    web_log(WEB_LOG_WARN, "civetweb: %s", msg);
    return 1;
}

/* CivetWeb's own errors (missing static file, malformed request, ...). */
static int on_http_error(struct mg_connection *conn, int status,
                         const char *msg)
{
    char text[256];
    snprintf(text, sizeof(text), "%s", msg != NULL && msg[0] ? msg : "");
    text[strcspn(text, "\r\n")] = '\0';
    if (text[0] == '\0')
        snprintf(text, sizeof(text), "%s",
                 mg_get_response_code_text(conn, status));
    send_json_error(conn, status, web_error_code(status), text,
                    cur.active ? cur.id : NULL);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Routing                                                                */

/* Matches path against pattern, filling r's params. */
static bool route_match(const char *pattern, const char *path,
                        struct web_req *r)
{
    r->n_params = 0;
    const char *p = pattern, *q = path;
    while (*p != '\0') {
        if (p[0] == '*' && p[1] == '\0')
            return true;
        if (*p == '{') {
            const char *close = strchr(p, '}');
            size_t seg = strcspn(q, "/");
            if (close == NULL || seg == 0 || r->n_params >= WEB_MAX_PARAMS ||
                seg >= sizeof(r->params[0].value))
                return false;
            r->params[r->n_params].name = p + 1;
            r->params[r->n_params].name_len = (size_t)(close - p - 1);
            memcpy(r->params[r->n_params].value, q, seg);
            r->params[r->n_params].value[seg] = '\0';
            r->n_params++;
            p = close + 1;
            q += seg;
            continue;
        }
        if (*p != *q)
            return false;
        p++;
        q++;
    }
    return *q == '\0';
}

static void req_finish(struct web_req *r)
{
    for (int i = r->n_defer - 1; i >= 0; i--)
        r->defer[i].fn(r->defer[i].p);
    r->n_defer = 0;
    json_decref(r->body);
    r->body = NULL;
}

static int dispatch(struct mg_connection *conn, void *cbdata)
{
    struct web_server *s = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    struct web_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        send_json_error(conn, 500, "internal", "out of memory", NULL);
        return 500;
    }
    r->conn = conn;
    r->ri = ri;
    r->srv = s;
    r->cfg = s->cfg;
    r->db = s->db;
    r->method = ri->request_method;
    r->path = ri->local_uri != NULL ? ri->local_uri : "/";
    r->id = cur.id;
    client_ip(conn, s->cfg, r->client_ip_buf, sizeof(r->client_ip_buf));
    r->client_ip = r->client_ip_buf;

    const char *allow[8];
    int n_allow = 0;
    const struct route *hit = NULL;
    for (int i = 0; i < s->n_routes && hit == NULL; i++) {
        const struct route *rt = &s->routes[i];
        if (!route_match(rt->pattern, r->path, r))
            continue;
        if (strcmp(rt->method, r->method) == 0)
            hit = rt;
        else if (n_allow < 8)
            allow[n_allow++] = rt->method;
    }
    bool is_get =
        strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
    if (ri->content_length > s->cfg->max_body) {
        web_reply_error(r, 413, NULL, "request body over %lld bytes",
                        s->cfg->max_body);
    } else if (hit != NULL) {
        r->user = hit->user;
        hit->fn(r);
        if (r->status == 0) {
            web_log(WEB_LOG_ERROR, "web: %s %s: handler sent no reply",
                    r->method, r->path);
            web_reply_error(r, 500, NULL, "no reply");
        }
    } else if (n_allow > 0) {
        char list[64] = "";
        for (int i = 0; i < n_allow; i++) {
            size_t len = strlen(list);
            snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
                     allow[i]);
        }
        web_header_add(r, "Allow", list);
        web_reply_error(r, 405, NULL, "%s is not allowed on %s", r->method,
                        r->path);
    } else if (!is_get || strncmp(r->path, "/api/", 5) == 0 ||
               static_hidden(r->path)) {
        web_reply_error(r, 404, NULL, "no such resource: %s %s", r->method,
                        r->path);
    } else {
        free(r);
        return 0; /* CivetWeb serves a static file (or a JSON 404) */
    }
    int status = r->status;
    req_finish(r);
    free(r);
    return status;
}

/* ---------------------------------------------------------------------- */
/* Start and stop                                                         */

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_init(void)
{
    mg_init_library(0);
}

int web_server_start(struct web_server *s, struct web_err *err)
{
    pthread_once(&lib_once, lib_init);
    const struct web_config *cfg = s->cfg;
    char ports[96], threads[16], timeout[16], headers[512];
    snprintf(ports, sizeof(ports), "%s:%d", cfg->listen, cfg->port);
    snprintf(threads, sizeof(threads), "%d", cfg->threads);
    snprintf(timeout, sizeof(timeout), "%d", cfg->request_timeout_ms);
    size_t h = 0;
    for (int i = 0; i < SECURITY_HEADERS_N; i++)
        h += (size_t)snprintf(headers + h, sizeof(headers) - h, "%s%s: %s",
                              i ? "\r\n" : "", security_headers[i][0],
                              security_headers[i][1]);
    const char *options[] = {
        "listening_ports",
        ports,
        "num_threads",
        threads,
        "request_timeout_ms",
        timeout,
        "document_root",
        cfg->static_dir,
        "enable_keep_alive",
        "yes",
        "keep_alive_timeout_ms",
        "5000",
        "enable_directory_listing",
        "no",
        "tcp_nodelay",
        "1",
        "additional_header",
        headers,
        NULL,
    };
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.begin_request = on_begin_request;
    cb.end_request = on_end_request;
    cb.log_access = on_log_access;
    cb.log_message = on_log_message;
    cb.http_error = on_http_error;
    struct mg_init_data init = {
        .callbacks = &cb, .user_data = s, .configuration_options = options};
    struct mg_error_data edata;
    char ebuf[256] = "";
    memset(&edata, 0, sizeof(edata));
    edata.text = ebuf;
    edata.text_buffer_size = sizeof(ebuf);
    s->ctx = mg_start2(&init, &edata);
    if (s->ctx == NULL) {
        err_set(err, "cannot listen on %s: %s", ports,
                ebuf[0] ? ebuf : "unknown error");
        return WEB_ERR_START;
    }
    mg_set_request_handler(s->ctx, "/", dispatch, s);
    struct mg_server_port sp[4];
    int n = mg_get_server_ports(s->ctx, 4, sp);
    s->port = n > 0 ? sp[0].port : cfg->port;
    return WEB_OK;
}

void web_server_stop(struct web_server *s)
{
    if (s == NULL || s->ctx == NULL)
        return;
    /* CivetWeb's mg_stop() makes every write fail at once, so first let
     * the requests in flight end (new ones get 503), up to the bound. */
    atomic_store(&s->stopping, true);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (atomic_load(&s->active) > 0 &&
           ms_since(&t0) < s->cfg->shutdown_timeout_s * 1000.0) {
        struct timespec tick = {0, 10 * 1000000L};
        nanosleep(&tick, NULL);
    }
    int left = atomic_load(&s->active);
    if (left > 0)
        web_log(WEB_LOG_WARN, "web: stopping with %d requests unfinished",
                left);
    mg_stop(s->ctx); /* closes the listeners and joins the workers */
    s->ctx = NULL;
}

void web_server_free(struct web_server *s)
{
    if (s == NULL)
        return;
    web_server_stop(s);
    for (int i = s->n_features - 1; i >= 0; i--)
        if (s->features[i].f->cleanup != NULL)
            s->features[i].f->cleanup(s->features[i].state);
    free(s);
}

/* ---------------------------------------------------------------------- */
/* Replies                                                                */

const char *web_error_code(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 408:
        return "request_timeout";
    case 409:
        return "conflict";
    case 413:
        return "too_large";
    case 415:
        return "unsupported_media_type";
    case 422:
        return "unprocessable";
    case 429:
        return "rate_limited";
    case 500:
        return "internal";
    case 501:
        return "not_implemented";
    case 503:
        return "unavailable";
    default:
        return status >= 500 ? "internal" : "bad_request";
    }
}

/* Status line and headers; length -1 means none (the connection closes
 * after the body, as for an event stream). */
static int send_head(struct mg_connection *conn, int status, const char *ctype,
                     long long length, const char *id, const struct web_req *r)
{
    if (mg_response_header_start(conn, status) != 0)
        return WEB_ERR_GONE;
    mg_response_header_add(conn, "Content-Type", ctype, -1);
    if (length >= 0) {
        char len[24];
        snprintf(len, sizeof(len), "%lld", length);
        mg_response_header_add(conn, "Content-Length", len, -1);
    }
    for (int i = 0; i < SECURITY_HEADERS_N; i++)
        mg_response_header_add(conn, security_headers[i][0],
                               security_headers[i][1], -1);
    if (id != NULL)
        mg_response_header_add(conn, "X-Request-Id", id, -1);
    for (int i = 0; r != NULL && i < r->n_headers; i++)
        mg_response_header_add(conn, r->headers[i][0], r->headers[i][1], -1);
    return mg_response_header_send(conn) == 0 ? WEB_OK : WEB_ERR_GONE;
}

static void send_json_error(struct mg_connection *conn, int status,
                            const char *code, const char *message,
                            const char *id)
{
    json_t *body =
        json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    const char *out = text != NULL ? text
                                   : "{\"error\":{\"code\":"
                                     "\"internal\",\"message\":"
                                     "\"out of memory\"}}";
    size_t len = strlen(out);
    if (send_head(conn, status, "application/json", (long long)len, id, NULL) ==
        WEB_OK)
        mg_write(conn, out, len);
    free(text);
    json_decref(body);
}

int web_header_add(struct web_req *r, const char *name, const char *value)
{
    if (r->n_headers >= WEB_MAX_HEADERS || strlen(name) >= 128 ||
        strlen(value) >= 128 || strpbrk(value, "\r\n") != NULL)
        return WEB_ERR;
    snprintf(r->headers[r->n_headers][0], 128, "%s", name);
    snprintf(r->headers[r->n_headers][1], 128, "%s", value);
    r->n_headers++;
    return WEB_OK;
}

/* Appends the text of fmt to buf[*n..cap); false when it does not fit. */
static bool head_add(char *buf, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool head_add(char *buf, size_t cap, size_t *n, const char *fmt, ...)
{
    if (*n >= cap)
        return false;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap - *n)
        return false;
    *n += (size_t)k;
    return true;
}

/* Whether CivetWeb keeps the connection open after this request: its own
 * rule (should_keep_alive in civetweb.c), as far as a handler can see it:
 * keep-alive is on (web_server_start), a 401 closes, and so does a
 * request that asks to close or is HTTP/1.0 without asking to keep it. */
static bool keeps_alive(const struct web_req *r, int status)
{
    if (status == 401)
        return false;
    const char *h = mg_get_header(r->conn, "Connection");
    if (h != NULL)
        return strcasestr(h, "keep-alive") != NULL;
    const char *v = r->ri->http_version;
    return v != NULL && strcmp(v, "1.1") == 0;
}

/* The status line and every header of a fixed-length reply, in buf.
 * Returns its length, or 0 when it does not fit in cap. */
static size_t head_build(const struct web_req *r, int status, const char *ctype,
                         size_t len, char *buf, size_t cap)
{
    size_t n = 0;
    const char *v = r->ri->http_version;
    bool ok =
        head_add(buf, cap, &n, "HTTP/%s %d %s\r\n", v != NULL ? v : "1.1",
                 status, mg_get_response_code_text(r->conn, status)) &&
        head_add(buf, cap, &n, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                 ctype, len);
    for (int i = 0; ok && i < SECURITY_HEADERS_N; i++)
        ok = head_add(buf, cap, &n, "%s: %s\r\n", security_headers[i][0],
                      security_headers[i][1]);
    if (ok && r->id != NULL)
        ok = head_add(buf, cap, &n, "X-Request-Id: %s\r\n", r->id);
    for (int i = 0; ok && i < r->n_headers; i++)
        ok = head_add(buf, cap, &n, "%s: %s\r\n", r->headers[i][0],
                      r->headers[i][1]);
    time_t now = time(NULL);
    struct tm tm;
    char date[64] = "";
    if (gmtime_r(&now, &tm) != NULL)
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (ok && date[0] != '\0')
        ok = head_add(buf, cap, &n, "Date: %s\r\n", date);
    if (ok)
        ok = head_add(buf, cap, &n, "Connection: %s\r\n\r\n",
                      keeps_alive(r, status) ? "keep-alive" : "close");
    return ok ? n : 0;
}

/* A fixed-length reply goes out in one write (head and body together):
 * CivetWeb's header API sends each header line with its own send(), which
 * on this kind of machine costs more than the rest of a small request.
 * CivetWeb takes the status for its log from the handler's return value
 * (dispatch returns r->status). Bodies over BODY_INLINE go in a second
 * write, from the caller's buffer. */
#define HEAD_MAX    4096
#define BODY_INLINE 16384

int web_reply(struct web_req *r, int status, const char *content_type,
              const void *body, size_t len)
{
    if (r->status != 0) {
        web_log(WEB_LOG_ERROR, "web: %s %s: second reply (%d after %d)",
                r->method, r->path, status, r->status);
        return WEB_ERR;
    }
    r->status = status;
    bool head_only = strcmp(r->method, "HEAD") == 0;
    size_t inline_len = head_only || len > BODY_INLINE ? 0 : len;
    char *buf = malloc(HEAD_MAX + inline_len);
    size_t n = buf != NULL
                   ? head_build(r, status, content_type, len, buf, HEAD_MAX)
                   : 0;
    if (n > 0) {
        if (inline_len > 0)
            memcpy(buf + n, body, inline_len);
        int wrote = mg_write(r->conn, buf, n + inline_len);
        int rc = wrote == (int)(n + inline_len) ? WEB_OK : WEB_ERR_GONE;
        free(buf);
        if (rc == WEB_OK && !head_only && len > inline_len &&
            mg_write(r->conn, body, len) != (int)len)
            rc = WEB_ERR_GONE;
        return rc;
    }
    free(buf);
    int rc = send_head(r->conn, status, content_type, (long long)len, r->id, r);
    if (rc == WEB_OK && len > 0 && strcmp(r->method, "HEAD") != 0 &&
        mg_write(r->conn, body, len) <= 0)
        rc = WEB_ERR_GONE;
    return rc;
}

int web_reply_json(struct web_req *r, int status, const json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL)
        return web_reply_error(r, 500, NULL, "cannot encode the reply");
    int rc = web_reply(r, status, "application/json", text, strlen(text));
    free(text);
    return rc;
}

int web_reply_error(struct web_req *r, int status, const char *code,
                    const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *body =
        json_pack("{s:{s:s,s:s}}", "error", "code",
                  code != NULL ? code : web_error_code(status), "message", msg);
    if (body == NULL) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\","
                                  "\"message\":\"out of memory\"}}";
        return web_reply(r, 500, "application/json", oom, sizeof(oom) - 1);
    }
    int rc = web_reply_json(r, status, body);
    json_decref(body);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Request accessors                                                      */

const char *web_req_param(const struct web_req *r, const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < r->n_params; i++)
        if (r->params[i].name_len == len &&
            strncmp(r->params[i].name, name, len) == 0)
            return r->params[i].value;
    return NULL;
}

const char *web_req_client_ip(const struct web_req *r)
{
    return r->client_ip;
}

bool web_req_https(const struct web_req *r)
{
    if (r->ri->is_ssl)
        return true;
    if (r->cfg->trusted_proxies[0] == '\0' ||
        !in_list(r->cfg->trusted_proxies, r->ri->remote_addr))
        return false;
    const char *proto = mg_get_header(r->conn, "X-Forwarded-Proto");
    return proto != NULL && strcasecmp(proto, "https") == 0;
}

const char *web_req_header(const struct web_req *r, const char *name)
{
    return mg_get_header(r->conn, name);
}

int web_req_query(const struct web_req *r, const char *name, char *buf,
                  size_t n)
{
    const char *qs = r->ri->query_string;
    if (qs == NULL)
        return -1;
    return mg_get_var(qs, strlen(qs), name, buf, n);
}

int web_req_defer(struct web_req *r, void (*fn)(void *), void *p)
{
    if (r->n_defer >= WEB_MAX_DEFER) {
        fn(p);
        return WEB_ERR;
    }
    r->defer[r->n_defer].fn = fn;
    r->defer[r->n_defer].p = p;
    r->n_defer++;
    return WEB_OK;
}

const char *web_req_body(struct web_req *r, size_t *len)
{
    long long max = r->cfg->max_body;
    long long cl = r->ri->content_length;
    *len = 0;
    if (cl > max) {
        web_reply_error(r, 413, NULL, "request body over %lld bytes", max);
        return NULL;
    }
    /* The buffer never grows past max + 1: a full buffer of max bytes
     * then tells whether one more byte follows. */
    size_t cap =
        cl >= 0 ? (size_t)cl + 1 : (max + 1 < 4096 ? (size_t)max + 1 : 4096);
    char *buf = malloc(cap);
    if (buf == NULL) {
        web_reply_error(r, 500, NULL, "out of memory");
        return NULL;
    }
    web_req_defer(r, free, buf);
    size_t n = 0;
    for (;;) {
        if (n + 1 >= cap) {
            if ((long long)n >= max) {
                /* One more byte would be over: it is too large. */
                char probe;
                if (mg_read(r->conn, &probe, 1) <= 0)
                    break;
                web_reply_error(r, 413, NULL, "request body over %lld bytes",
                                max);
                return NULL;
            }
            size_t ncap = cap * 2 > (size_t)max + 1 ? (size_t)max + 1 : cap * 2;
            char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                web_reply_error(r, 500, NULL, "out of memory");
                return NULL;
            }
            r->defer[r->n_defer - 1].p = nb; /* the deferred free */
            buf = nb;
            cap = ncap;
        }
        int got = mg_read(r->conn, buf + n, cap - 1 - n);
        if (got < 0) {
            web_reply_error(r, 400, NULL, "cannot read the request body");
            return NULL;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

json_t *web_req_json(struct web_req *r)
{
    size_t len;
    const char *text = web_req_body(r, &len);
    if (text == NULL)
        return NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        web_reply_error(r, 400, "bad_json",
                        "malformed JSON at line %d, column %d: %s", jerr.line,
                        jerr.column, jerr.text);
        return NULL;
    }
    json_decref(r->body);
    r->body = root;
    return root;
}

/* ---------------------------------------------------------------------- */
/* Server-Sent Events                                                     */

int web_stream_start(struct web_req *r, int status, const char *ctype)
{
    if (r->status != 0)
        return WEB_ERR;
    r->status = status;
    web_header_add(r, "Transfer-Encoding", "chunked");
    web_header_add(r, "X-Accel-Buffering", "no");
    return send_head(r->conn, status, ctype, -1, r->id, r);
}

int web_stream_write(struct web_req *r, const void *buf, size_t len)
{
    if (len == 0)
        return WEB_OK;
    return mg_send_chunk(r->conn, buf, (unsigned int)len) > 0 ? WEB_OK
                                                              : WEB_ERR_GONE;
}

int web_stream_end(struct web_req *r)
{
    return mg_send_chunk(r->conn, "", 0) >= 0 ? WEB_OK : WEB_ERR_GONE;
}

int web_sse_start(struct web_req *r)
{
    if (r->status != 0)
        return WEB_ERR;
    r->status = 200;
    r->sse = true;
    web_header_add(r, "Cache-Control", "no-cache, no-store");
    web_header_add(r, "X-Accel-Buffering", "no"); /* nginx: do not buffer */
    /* No length: the end of the body is the end of the connection, so it
     * must close when the handler returns (not idle in keep-alive). */
    mg_disable_keep_alive(r->conn);
    return send_head(r->conn, 200, "text/event-stream; charset=utf-8", -1,
                     r->id, r);
}

static int sse_write(struct web_req *r, const char *s, size_t len)
{
    return mg_write(r->conn, s, len) == (int)len ? WEB_OK : WEB_ERR_GONE;
}

int web_sse_send(struct web_req *r, const char *event, const char *data)
{
    if (!r->sse)
        return WEB_ERR;
    int rc = WEB_OK;
    if (event != NULL) {
        rc = sse_write(r, "event: ", 7);
        if (rc == WEB_OK)
            rc = sse_write(r, event, strcspn(event, "\r\n"));
        if (rc == WEB_OK)
            rc = sse_write(r, "\n", 1);
    }
    /* Each line of data is its own data: field; the client joins them
     * back with "\n". */
    const char *p = data != NULL ? data : "";
    do {
        size_t line = strcspn(p, "\r\n");
        if (rc == WEB_OK)
            rc = sse_write(r, "data: ", 6);
        if (rc == WEB_OK)
            rc = sse_write(r, p, line);
        if (rc == WEB_OK)
            rc = sse_write(r, "\n", 1);
        p += line;
        if (p[0] == '\r' && p[1] == '\n')
            p++;
        if (*p != '\0')
            p++;
        else
            break;
    } while (rc == WEB_OK);
    if (rc == WEB_OK)
        rc = sse_write(r, "\n", 1);
    return rc;
}

int web_sse_json(struct web_req *r, const char *event, const json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL)
        return WEB_ERR_NOMEM;
    int rc = web_sse_send(r, event, text);
    free(text);
    return rc;
}

int web_sse_ping(struct web_req *r)
{
    if (!r->sse)
        return WEB_ERR;
    return sse_write(r, ": ping\n\n", 8);
}
