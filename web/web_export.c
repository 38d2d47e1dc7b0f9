/*
 * web_export.c: GET /api/admin/export?format=battles|dpo|csv&from=&to=
 * &category=&model= (admin only: 401 without a session or token).
 *
 * Streams arena_export_run()'s output with chunked transfer as it comes
 * (application/x-ndjson or text/csv, as an attachment). The stream starts
 * at the first record, so a bad parameter or time value still gets a
 * plain 400; an empty export is an empty 200. The judge hash uses the
 * server's secret key. One pooled connection is held for the export's
 * whole length; the queries are keyset pages, so no transaction is.
 */
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "web_internal.h"

struct sink {
    struct web_req *r;
    const char *ctype;
    int started;
};

static int sink_write(void *user, const char *buf, size_t len)
{
    struct sink *s = user;
    if (!s->started) {
        s->started = 1;
        if (web_stream_start(s->r, 200, s->ctype) != WEB_OK)
            return 1;
    }
    return web_stream_write(s->r, buf, len) != WEB_OK;
}

static bool param(struct web_req *r, const char *name, char *buf, size_t n)
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

static void get_export(struct web_req *r)
{
    if (!web_auth_require_admin(r))
        return;
    if (r->db == NULL) {
        web_reply_error(r, 503, "unavailable", "no database");
        return;
    }
    char fmt[16], from[64], to[64], cat[64], model[160];
    if (!param(r, "format", fmt, sizeof(fmt)) ||
        !param(r, "from", from, sizeof(from)) ||
        !param(r, "to", to, sizeof(to)) ||
        !param(r, "category", cat, sizeof(cat)) ||
        !param(r, "model", model, sizeof(model)))
        return;
    int f = arena_export_format_parse(fmt);
    if (f < 0) {
        web_reply_error(r, 400, "invalid_field", "format: battles, dpo or csv");
        return;
    }
    struct arena_export_opts o = {
        .format = (enum arena_export_format)f,
        .from = from,
        .to = to,
        .category = cat[0] ? cat : NULL,
        .model = model,
        .keys = web_auth_keys(),
    };
    struct arena_err err = {{0}};
    if (arena_export_check(&o, &err) != ARENA_OK) {
        web_reply_error(r, 400, "invalid_field", "%s", err.msg);
        return;
    }
    struct db_conn *c = NULL;
    struct db_err derr = {{0}, {0}};
    if (db_pool_acquire(r->db, r->cfg->db_wait_ms, &c, &derr) != DB_OK) {
        web_reply_error(r, 503, "unavailable", "database: %s", derr.msg);
        return;
    }
    const char *ext = f == ARENA_EXPORT_CSV ? "csv" : "jsonl";
    char disp[96];
    snprintf(disp, sizeof(disp), "attachment; filename=\"arena-%s.%s\"",
             f == ARENA_EXPORT_DPO   ? "dpo"
             : f == ARENA_EXPORT_CSV ? "battles"
                                     : "battles",
             ext);
    web_header_add(r, "Content-Disposition", disp);
    web_header_add(r, "Cache-Control", "no-store");
    struct sink s = {
        .r = r,
        .ctype = f == ARENA_EXPORT_CSV ? "text/csv; charset=utf-8"
                                       : "application/x-ndjson",
    };
    uint64_t rows = 0;
    int rc = arena_export_run(c, &o, sink_write, &s, &rows, &err);
    db_pool_release(r->db, c);
    if (s.started) {
        if (rc == ARENA_OK)
            web_stream_end(r);
        else
            /* Cut short: the missing last chunk tells the client. */
            web_log(WEB_LOG_WARN, "export stopped after %llu records: %s",
                    (unsigned long long)rows, err.msg);
        return;
    }
    if (rc == ARENA_OK)
        web_reply(r, 200, s.ctype, "", 0);
    else if (rc == ARENA_ERR_INVALID)
        web_reply_error(r, 400, "invalid_field", "%s", err.msg);
    else
        web_reply_error(r, 503, "unavailable", "%s", err.msg);
}

int web__export_init(struct web_server *s, void **state, struct web_err *err)
{
    *state = NULL;
    if (web_route(s, "GET", "/api/admin/export", get_export, NULL) != WEB_OK) {
        snprintf(err->msg, sizeof(err->msg), "cannot add routes");
        return WEB_ERR;
    }
    return WEB_OK;
}
