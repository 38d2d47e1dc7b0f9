/*
 * web_health.c: GET /healthz (the process is up) and GET /readyz (a pooled
 * database connection answers and every migration is applied). Both are
 * cheap enough for a load balancer to poll every second.
 */
#include <jansson.h>

#include "web_internal.h"

/* How long /readyz waits for a pooled connection before saying 503. */
#define READYZ_WAIT_MS 1000

static void get_healthz(struct web_req *r)
{
    json_t *body = json_pack("{s:s}", "status", "ok");
    web_reply_json(r, 200, body);
    json_decref(body);
}

static void get_readyz(struct web_req *r)
{
    if (r->db == NULL) {
        web_reply_error(r, 503, NULL, "no database configured");
        return;
    }
    if (web_server_stopping(r->srv)) {
        web_reply_error(r, 503, NULL, "shutting down");
        return;
    }
    struct db_conn *conn = NULL;
    struct db_err err = {{0}, {0}};
    int pending = 0;
    int rc = db_pool_acquire(r->db, READYZ_WAIT_MS, &conn, &err);
    if (rc == DB_OK)
        rc = db_migrate_pending(conn, &pending, &err);
    db_pool_release(r->db, conn);
    if (rc != DB_OK) {
        web_reply_error(r, 503, NULL, "database: %s", err.msg);
        return;
    }
    if (pending > 0) {
        web_reply_error(r, 503, NULL, "%d database migrations pending",
                        pending);
        return;
    }
    size_t total;
    db_migrations(&total);
    json_t *body =
        json_pack("{s:s,s:i}", "status", "ready", "migrations", (int)total);
    web_reply_json(r, 200, body);
    json_decref(body);
}

int web__health_init(struct web_server *s, void **state, struct web_err *err)
{
    (void)err;
    *state = NULL;
    if (web_route(s, "GET", "/healthz", get_healthz, NULL) != WEB_OK ||
        web_route(s, "GET", "/readyz", get_readyz, NULL) != WEB_OK)
        return WEB_ERR;
    return WEB_OK;
}
