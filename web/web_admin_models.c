/*
 * web_admin_models.c: the models admin API (docs/api.md, "Admin"):
 *
 *   GET   /api/admin/models          every model with all its settings
 *   POST  /api/admin/models          add one (local file or remote)
 *   PATCH /api/admin/models/{name}   update fields
 *
 * Every route requires an admin (web_auth_require_admin). The registry
 * itself is arena/'s (arena_registry.c).
 */
#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "arena.h"
#include "web_internal.h"

static void reply_rc(struct web_req *r, int rc, const struct arena_err *err)
{
    int status = rc == ARENA_ERR_INVALID     ? 400
                 : rc == ARENA_ERR_NOT_FOUND ? 404
                 : rc == ARENA_ERR_CONFLICT  ? 409
                 : rc == ARENA_ERR_DB        ? 503
                                             : 500;
    web_reply_error(r, status, arena_status_code(rc), "%s", err->msg);
}

static struct arena *arena_or_503(struct web_req *r)
{
    struct arena *a = web_battle_arena();
    if (a == NULL)
        web_reply_error(r, 503, NULL, "the arena is not running");
    return a;
}

static void models_get(struct web_req *r)
{
    struct arena *a;
    if (!web_auth_require_admin(r) || (a = arena_or_503(r)) == NULL)
        return;
    json_t *out = arena_models_admin(a);
    if (out == NULL) {
        web_reply_error(r, 500, NULL, "out of memory");
        return;
    }
    web_reply_json(r, 200, out);
    json_decref(out);
}

/* POST (add) and PATCH (update): the same checks and replies. */
static void models_write(struct web_req *r, bool add)
{
    struct arena *a;
    if (!web_auth_require_admin(r) || (a = arena_or_503(r)) == NULL)
        return;
    json_t *body = web_req_json(r);
    if (body == NULL)
        return;
    json_t *out = NULL;
    struct arena_err err = {{0}};
    int rc =
        add ? arena_model_add(a, body, &out, &err)
            : arena_model_update(a, web_req_param(r, "name"), body, &out, &err);
    if (rc != ARENA_OK) {
        reply_rc(r, rc, &err);
        return;
    }
    web_reply_json(r, add ? 201 : 200, out);
    json_decref(out);
}

static void models_add(struct web_req *r)
{
    models_write(r, true);
}

static void models_patch(struct web_req *r)
{
    models_write(r, false);
}

int web__admin_models_init(struct web_server *s, void **state,
                           struct web_err *err)
{
    *state = NULL;
    if (web_route(s, "GET", "/api/admin/models", models_get, NULL) != WEB_OK ||
        web_route(s, "POST", "/api/admin/models", models_add, NULL) != WEB_OK ||
        web_route(s, "PATCH", "/api/admin/models/{name}", models_patch, NULL) !=
            WEB_OK) {
        snprintf(err->msg, sizeof(err->msg), "cannot add routes");
        return WEB_ERR;
    }
    return WEB_OK;
}
