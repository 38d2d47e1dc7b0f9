/*
 * test_battle_http.h: what the arena tests share: a fresh database in the
 * test cluster, an `arena serve` child process on it, an HTTP client
 * (libcurl, one cookie jar per visitor) that keeps every byte received,
 * and a Server-Sent Events parser. Static functions: each test binary
 * includes it once.
 */
#ifndef TEST_BATTLE_HTTP_H
#define TEST_BATTLE_HTTP_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>

/* ---------------------------------------------------------------------- */
/* A fresh database                                                       */

static int tb_db_serial;

/* Creates a database; fills conninfo and name. Returns 0 or -1 (no test
 * cluster: skip). */
static int tb_fresh_db(char *conninfo, size_t n, char *name, size_t name_n)
{
    const char *base = getenv("ARENA_TEST_PGCONN");
    if (base == NULL || base[0] == '\0')
        return -1;
    snprintf(name, name_n, "test_arena_%d_%d", (int)getpid(), ++tb_db_serial);
    PGconn *pg = PQconnectdb(base);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "test cluster: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return -1;
    }
    char sql[160];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    PQfinish(pg);
    snprintf(conninfo, n, "%s dbname=%s", base, name);
    return ok ? 0 : -1;
}

static void tb_drop_db(const char *name)
{
    PGconn *pg = PQconnectdb(getenv("ARENA_TEST_PGCONN"));
    char sql[160];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    PQclear(PQexec(pg, sql));
    PQfinish(pg);
}

/* One value from a query on conninfo (first row, first column) as a long
 * long; -1 on error or no row. */
static long long tb_sql_ll(const char *conninfo, const char *sql)
{
    PGconn *pg = PQconnectdb(conninfo);
    long long v = -1;
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 &&
        !PQgetisnull(r, 0, 0))
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "sql: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(pg);
    return v;
}

/* ---------------------------------------------------------------------- */
/* The server                                                             */

struct tb_server {
    pid_t pid;
    int port;
    char url[64];
    char dir[512]; /* data dir, port file, log */
};

static double tb_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Starts `arena serve` on conninfo with extra flags (NULL-terminated).
 * Returns 0 once it listens, -1 on failure (its log printed). */
static int tb_server_start(struct tb_server *s, const char *conninfo,
                           const char *tag, const char *const *extra)
{
    const char *bin = getenv("ARENA_BIN");
    const char *shared = getenv("ARENA_SHARED");
    const char *out = getenv("ARENA_TEST_OUT");
    if (bin == NULL || shared == NULL)
        return -1;
    snprintf(s->dir, sizeof(s->dir), "%s/%s-%d", out ? out : "/tmp", tag,
             (int)getpid());
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", s->dir);
    if (system(cmd) != 0)
        return -1;
    char port_file[600], log[600], models[600];
    snprintf(port_file, sizeof(port_file), "%s/port", s->dir);
    snprintf(log, sizeof(log), "%s/serve.log", s->dir);
    snprintf(models, sizeof(models), "%s/models", shared);
    unlink(port_file);
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "serve";
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    argv[n++] = "--models-dir";
    argv[n++] = models;
    argv[n++] = "--data-dir";
    argv[n++] = s->dir;
    argv[n++] = "--admin-token";
    argv[n++] = "test-token";
    argv[n++] = "--admin-password";
    argv[n++] = "test-password";
    argv[n++] = "--access-log";
    argv[n++] = "off";
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setenv("DATABASE_URL", conninfo, 1);
        FILE *f = freopen(log, "a", stderr);
        (void)f;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    double t0 = tb_now();
    while (tb_now() - t0 < 120) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            int port = 0;
            int got = fscanf(f, "%d", &port);
            fclose(f);
            if (got == 1 && port > 0) {
                s->port = port;
                snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", port);
                return 0;
            }
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            break;
        }
        usleep(50000);
    }
    snprintf(cmd, sizeof(cmd), "cat '%s' >&2", log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
    if (s->pid > 0)
        kill(s->pid, SIGKILL), waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

/* SIGTERM and wait; returns the exit status (0 = clean, no sanitizer
 * report), or -1. With hard, SIGKILL (returns 0 when it died of it). */
static int tb_server_stop(struct tb_server *s, bool hard)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, hard ? SIGKILL : SIGTERM);
    int st = 0;
    waitpid(s->pid, &st, 0);
    s->pid = 0;
    if (hard)
        return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 0 : -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "tail -n 60 '%s/serve.log' >&2", s->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* HTTP                                                                   */

struct tb_bytes {
    char *p;
    size_t n;
};

static void tb_bytes_add(struct tb_bytes *b, const char *s, size_t n)
{
    char *np = realloc(b->p, b->n + n + 1);
    if (np == NULL)
        abort();
    memcpy(np + b->n, s, n);
    b->n += n;
    np[b->n] = '\0';
    b->p = np;
}

/* A visitor: its own cookie jar and connection. */
struct tb_client {
    CURL *h;
    const char *base;
    struct tb_bytes *transcript; /* every byte received, or NULL */
    char auth[256];              /* extra header, or "" */
};

struct tb_res {
    long status;
    struct tb_bytes head, body;
    json_t *json; /* parsed body, or NULL */
};

static void tb_res_free(struct tb_res *r)
{
    free(r->head.p);
    free(r->body.p);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static size_t tb_on_body(char *d, size_t size, size_t n, void *u)
{
    tb_bytes_add(u, d, size * n);
    return size * n;
}

static void tb_client_init(struct tb_client *c, const char *base)
{
    memset(c, 0, sizeof(*c));
    c->h = curl_easy_init();
    c->base = base;
    curl_easy_setopt(c->h, CURLOPT_COOKIEFILE, ""); /* in-memory jar */
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, 120000L);
}

static void tb_client_cleanup(struct tb_client *c)
{
    if (c->h != NULL)
        curl_easy_cleanup(c->h);
    c->h = NULL;
}

/* Sends method path with body (NULL: none). Returns the status (0 when
 * the request failed). */
static long tb_http(struct tb_client *c, const char *method, const char *path,
                    const char *body, struct tb_res *r)
{
    memset(r, 0, sizeof(*r));
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", c->base, path);
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL) {
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, "");
    }
    curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    struct curl_slist *hdrs =
        curl_slist_append(NULL, "Content-Type: application/json");
    if (c->auth[0] != '\0')
        hdrs = curl_slist_append(hdrs, c->auth);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, tb_on_body);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, tb_on_body);
    curl_easy_setopt(c->h, CURLOPT_HEADERDATA, &r->head);
    CURLcode rc = curl_easy_perform(c->h);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK) {
        fprintf(stderr, "%s %s: %s\n", method, url, curl_easy_strerror(rc));
        return 0;
    }
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &r->status);
    if (c->transcript != NULL) {
        if (r->head.p != NULL)
            tb_bytes_add(c->transcript, r->head.p, r->head.n);
        if (r->body.p != NULL)
            tb_bytes_add(c->transcript, r->body.p, r->body.n);
    }
    if (r->body.p != NULL)
        r->json = json_loadb(r->body.p, r->body.n, 0, NULL);
    return r->status;
}

/* A response header's value (case-insensitive name) into buf; false if
 * absent. */
static bool tb_header(const struct tb_res *r, const char *name, char *buf,
                      size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = r->head.p; p != NULL && *p;) {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = len - (size_t)(v - p);
            snprintf(buf, n, "%.*s", (int)vl, v);
            return true;
        }
        p = eol ? eol + 2 : p + len;
    }
    return false;
}

/* The error code of a JSON error answer, or "". */
static const char *tb_code(const struct tb_res *r)
{
    const char *c = json_string_value(
        json_object_get(json_object_get(r->json, "error"), "code"));
    return c != NULL ? c : "";
}

/* ---------------------------------------------------------------------- */
/* Server-Sent Events                                                     */

struct tb_event {
    char name[32];
    json_t *data;
};

struct tb_events {
    struct tb_event ev[4096];
    int n;
};

static void tb_events_free(struct tb_events *e)
{
    for (int i = 0; i < e->n; i++)
        json_decref(e->ev[i].data);
    e->n = 0;
}

/* Parses a whole event stream (event:/data: lines, blank line ends). */
static void tb_sse_parse(const char *text, struct tb_events *e)
{
    e->n = 0;
    char name[32] = "message";
    struct tb_bytes data = {0};
    const char *p = text != NULL ? text : "";
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len == 0) {
            if (data.n > 0 && e->n < 4096) {
                snprintf(e->ev[e->n].name, 32, "%s", name);
                e->ev[e->n].data = json_loadb(data.p, data.n, 0, NULL);
                e->n++;
            }
            free(data.p);
            data = (struct tb_bytes){0};
            snprintf(name, sizeof(name), "message");
        } else if (strncmp(p, "event: ", 7) == 0) {
            snprintf(name, sizeof(name), "%.*s", (int)len - 7, p + 7);
        } else if (strncmp(p, "data: ", 6) == 0) {
            if (data.n > 0)
                tb_bytes_add(&data, "\n", 1);
            tb_bytes_add(&data, p + 6, len - 6);
        }
        p = eol ? eol + 1 : p + len;
    }
    free(data.p);
}

/* Counts events named name (and, if side is not NULL, of that side). */
static int tb_count(const struct tb_events *e, const char *name,
                    const char *side)
{
    int n = 0;
    for (int i = 0; i < e->n; i++) {
        if (strcmp(e->ev[i].name, name) != 0)
            continue;
        const char *s =
            json_string_value(json_object_get(e->ev[i].data, "side"));
        if (side == NULL || (s != NULL && strcmp(s, side) == 0))
            n++;
    }
    return n;
}

#endif
