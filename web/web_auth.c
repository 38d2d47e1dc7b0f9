/*
 * web_auth.c: who is asking. Admin sign-in (password -> signed, expiring
 * `arena_admin` cookie; or `Authorization: Bearer <admin token>`), and the
 * visitor cookie `arena_vid` every arena request carries.
 *
 * Routes: POST /api/admin/login, POST /api/admin/logout.
 * For other features (declared in web_internal.h):
 *   web_auth_require_admin(r)  true when admin, else replies 401;
 *   web_auth_visitor(r, v)     the visitor's keyed hashes, setting the
 *                              cookie on a first visit;
 *   web_auth_keys()            the process's secret key.
 * State: one key and one limiter (for sign-in attempts) per process, set
 * by this feature's init before any request runs and read-only after, so
 * a plain static pointer is enough (one server per process).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <civetweb.h>
#include <jansson.h>

#include "arena.h"
#include "web_internal.h"

#define ADMIN_SESSION_S     (12 * 3600)
#define LOGIN_TRIES_PER_MIN 10

struct auth {
    struct arena_keys *keys;
    struct arena_limiter *limiter;
};

static struct auth *g_auth;

const struct arena_keys *web_auth_keys(void)
{
    return g_auth != NULL ? g_auth->keys : NULL;
}

static double mono_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The value of cookie name in the request, or false. */
static bool cookie_get(const struct web_req *r, const char *name, char *buf,
                       size_t n)
{
    const char *hdr = web_req_header(r, "Cookie");
    return hdr != NULL && mg_get_cookie(hdr, name, buf, n) > 0;
}

static bool is_admin(struct web_req *r)
{
    if (g_auth == NULL)
        return false;
    const char *authz = web_req_header(r, "Authorization");
    if (authz != NULL && strncasecmp(authz, "Bearer ", 7) == 0 &&
        r->cfg->admin_token[0] != '\0')
        return arena_secret_equal(g_auth->keys, authz + 7, r->cfg->admin_token);
    char val[64];
    if (cookie_get(r, "arena_admin", val, sizeof(val)))
        return arena_admin_cookie_check(g_auth->keys, val,
                                        (long long)time(NULL));
    return false;
}

bool web_auth_v1(struct web_req *r)
{
    const char *keys = r->cfg->v1_keys;
    if (keys[0] == '\0') {
        const char *ip = web_req_client_ip(r);
        return strcmp(ip, "127.0.0.1") == 0 || strcmp(ip, "::1") == 0 ||
               strcmp(ip, "::ffff:127.0.0.1") == 0;
    }
    const char *authz = web_req_header(r, "Authorization");
    if (g_auth == NULL || authz == NULL || strncasecmp(authz, "Bearer ", 7))
        return false;
    bool ok = false;
    for (const char *p = keys; *p != '\0';) {
        size_t n = strcspn(p, ","), a = 0, b = n;
        while (a < b && p[a] == ' ')
            a++;
        while (b > a && p[b - 1] == ' ')
            b--;
        char key[256];
        if (b > a && b - a < sizeof(key)) {
            memcpy(key, p + a, b - a);
            key[b - a] = '\0';
            /* every key compared, so the time says nothing of which */
            ok |= arena_secret_equal(g_auth->keys, authz + 7, key);
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return ok;
}

bool web_auth_require_admin(struct web_req *r)
{
    if (is_admin(r))
        return true;
    web_reply_error(r, 401, "unauthorized",
                    "sign in as admin (POST /api/admin/login) or send "
                    "Authorization: Bearer <admin token>");
    return false;
}

int web_auth_visitor(struct web_req *r, struct arena_visitor *v)
{
    memset(v, 0, sizeof(*v));
    if (g_auth == NULL)
        return WEB_ERR;
    arena_visitor_ip(g_auth->keys, web_req_client_ip(r), v);
    char got[64], val[48];
    if (cookie_get(r, "arena_vid", got, sizeof(got)) &&
        arena_visitor_cookie_check(g_auth->keys, got, v))
        return WEB_OK;
    if (arena_visitor_cookie_new(g_auth->keys, val, sizeof(val), v) != ARENA_OK)
        return WEB_ERR;
    char hdr[128];
    snprintf(hdr, sizeof(hdr),
             "arena_vid=%s; Path=/; Max-Age=31536000; HttpOnly; "
             "SameSite=Lax%s",
             val, web_req_https(r) ? "; Secure" : "");
    web_header_add(r, "Set-Cookie", hdr);
    return WEB_OK;
}

/* POST /api/admin/login {"password": "..."} */
static void login(struct web_req *r)
{
    struct auth *a = r->user;
    struct arena_visitor v;
    arena_visitor_ip(a->keys, web_req_client_ip(r), &v);
    int wait = arena_limiter_take(a->limiter, ARENA_LIMIT_IP_BATTLE, v.ip_hash,
                                  LOGIN_TRIES_PER_MIN, mono_now());
    if (wait > 0) {
        char s[16];
        snprintf(s, sizeof(s), "%d", wait);
        web_header_add(r, "Retry-After", s);
        web_reply_error(r, 429, "rate_limited",
                        "too many sign-in attempts; retry in %d s", wait);
        return;
    }
    json_t *body = web_req_json(r);
    if (body == NULL)
        return;
    const char *pw = json_string_value(json_object_get(body, "password"));
    if (pw == NULL) {
        web_reply_error(r, 400, "invalid_field",
                        "password: a string is required");
        return;
    }
    const char *want = r->cfg->admin_password;
    if (want[0] == '\0' || !arena_secret_equal(a->keys, pw, want)) {
        web_reply_error(r, 401, "unauthorized",
                        want[0] == '\0' ? "sign-in is disabled "
                                          "(no --admin-password)"
                                        : "wrong password");
        return;
    }
    long long exp = (long long)time(NULL) + ADMIN_SESSION_S;
    char val[48], hdr[128];
    arena_admin_cookie_new(a->keys, exp, val, sizeof(val));
    snprintf(hdr, sizeof(hdr),
             "arena_admin=%s; Path=/; Max-Age=%d; HttpOnly; "
             "SameSite=Strict%s",
             val, ADMIN_SESSION_S, web_req_https(r) ? "; Secure" : "");
    web_header_add(r, "Set-Cookie", hdr);
    json_t *out =
        json_pack("{s:b,s:I}", "ok", 1, "expires_at", (json_int_t)exp);
    web_reply_json(r, 200, out);
    json_decref(out);
}

static void logout(struct web_req *r)
{
    web_header_add(r, "Set-Cookie",
                   web_req_https(r) ? "arena_admin=; Path=/; Max-Age=0; "
                                      "HttpOnly; SameSite=Strict; Secure"
                                    : "arena_admin=; Path=/; Max-Age=0; "
                                      "HttpOnly; SameSite=Strict");
    json_t *out = json_pack("{s:b}", "ok", 1);
    web_reply_json(r, 200, out);
    json_decref(out);
}

int web__auth_init(struct web_server *s, void **state, struct web_err *err)
{
    const struct web_config *cfg = web_server_config(s);
    struct auth *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return WEB_ERR;
    }
    struct arena_err aerr = {{0}};
    if (arena_keys_open(cfg->secret_key_file, &a->keys, &aerr) != ARENA_OK) {
        snprintf(err->msg, sizeof(err->msg), "secret key: %s", aerr.msg);
        free(a);
        return WEB_ERR;
    }
    a->limiter = arena_limiter_new();
    if (a->limiter == NULL) {
        arena_keys_free(a->keys);
        free(a);
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return WEB_ERR;
    }
    if (web_route(s, "POST", "/api/admin/login", login, a) != WEB_OK ||
        web_route(s, "POST", "/api/admin/logout", logout, a) != WEB_OK) {
        snprintf(err->msg, sizeof(err->msg), "cannot add routes");
        arena_limiter_free(a->limiter);
        arena_keys_free(a->keys);
        free(a);
        return WEB_ERR;
    }
    g_auth = a;
    *state = a;
    return WEB_OK;
}

void web__auth_cleanup(void *state)
{
    struct auth *a = state;
    if (a == NULL)
        return;
    if (g_auth == a)
        g_auth = NULL;
    arena_limiter_free(a->limiter);
    arena_keys_free(a->keys);
    free(a);
}
