/*
 * db_migrate.c: applies the embedded migrations (db/migrations/NNNN_*.sql).
 *
 * The SQL files are compiled into the binary by the build (the generated
 * db_migrations_gen.c defines db__migrations[]), so a deployed binary needs
 * nothing beside it. Applied versions are recorded in schema_migrations.
 *
 * Concurrency: two processes starting at once both call db_migrate(); a
 * session-level advisory lock makes the second wait, and it then re-reads
 * the applied versions and finds nothing left to do.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db_internal.h"

/* Generated from db/migrations by db/embed_migrations.cmake. */
extern const struct db_migration db__migrations[];
extern const size_t db__migrations_count;

/* Any constant, the same in every Arena process: "arena" in ASCII. */
#define MIGRATE_LOCK_KEY "418531077729"

const struct db_migration *db_migrations(size_t *count)
{
    *count = db__migrations_count;
    return db__migrations;
}

static int ensure_table(struct db_conn *c, struct db_err *err)
{
    return db_exec(c,
                   "CREATE TABLE IF NOT EXISTS schema_migrations ("
                   " version integer PRIMARY KEY,"
                   " name text NOT NULL,"
                   " applied_at timestamptz NOT NULL DEFAULT now())",
                   0, NULL, NULL, err);
}

/* Whether version v is recorded. *done gets the answer. */
static int is_applied(struct db_conn *c, int v, bool *done, struct db_err *err)
{
    char vs[16];
    snprintf(vs, sizeof(vs), "%d", v);
    const char *params[] = {vs};
    PGresult *r = NULL;
    int rc = db_exec(c, "SELECT 1 FROM schema_migrations WHERE version = $1", 1,
                     params, &r, err);
    if (rc == DB_OK)
        *done = PQntuples(r) > 0;
    PQclear(r);
    return rc;
}

/* Runs one migration in its own transaction. The file may hold many
 * statements, so it goes through the simple query protocol (PQexec); it is
 * trusted text from the binary, never data. */
static int apply_one(struct db_conn *c, const struct db_migration *m,
                     struct db_err *err)
{
    int rc = db_begin(c, err);
    if (rc != DB_OK)
        return rc;
    PGresult *r = PQexec(db_conn_pg(c), m->sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK &&
        PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = db_err_from_result(c, r, err);
        PQclear(r);
        goto fail;
    }
    PQclear(r);
    char vs[16];
    snprintf(vs, sizeof(vs), "%d", m->version);
    const char *params[] = {vs, m->name};
    rc = db_exec(c,
                 "INSERT INTO schema_migrations (version, name)"
                 " VALUES ($1, $2)",
                 2, params, NULL, err);
    if (rc != DB_OK)
        goto fail;
    rc = db_commit(c, err);
    if (rc != DB_OK)
        goto fail;
    return DB_OK;
fail:
    if (err != NULL) {
        char detail[sizeof(err->msg)];
        snprintf(detail, sizeof(detail), "%s", err->msg);
        char state[sizeof(err->sqlstate)];
        memcpy(state, err->sqlstate, sizeof(state));
        db__err_set(err, "migration %04d_%s failed: %s", m->version, m->name,
                    detail);
        memcpy(err->sqlstate, state, sizeof(state));
    }
    db_rollback(c, NULL);
    return rc;
}

int db_migrate(struct db_conn *c, int *applied, struct db_err *err)
{
    if (applied != NULL)
        *applied = 0;
    int rc = db_exec(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0,
                     NULL, NULL, err);
    if (rc != DB_OK)
        return rc;
    rc = ensure_table(c, err);
    for (size_t i = 0; rc == DB_OK && i < db__migrations_count; i++) {
        const struct db_migration *m = &db__migrations[i];
        bool done = false;
        rc = is_applied(c, m->version, &done, err);
        if (rc != DB_OK || done)
            continue;
        rc = apply_one(c, m, err);
        if (rc == DB_OK) {
            db__log(DB_LOG_INFO, "db: applied migration %04d_%s", m->version,
                    m->name);
            if (applied != NULL)
                (*applied)++;
        }
    }
    /* Closing the session would release the lock too; unlock explicitly
     * because the connection goes back to the pool. */
    struct db_err uerr;
    if (db_exec(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", 0, NULL,
                NULL, &uerr) != DB_OK)
        db_conn_mark_broken(c);
    return rc;
}

int db_migrate_pending(struct db_conn *c, int *pending, struct db_err *err)
{
    *pending = (int)db__migrations_count;
    /* (count) versions as a PostgreSQL array literal: "{1,2,3}". */
    char list[2048];
    size_t n = 0;
    list[n++] = '{';
    for (size_t i = 0; i < db__migrations_count && n < sizeof(list) - 16; i++)
        n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%d", i ? "," : "",
                              db__migrations[i].version);
    snprintf(list + n, sizeof(list) - n, "}");
    const char *params[] = {list};
    PGresult *r = NULL;
    struct db_err e;
    int rc = db_exec(c,
                     "SELECT count(*) FROM schema_migrations"
                     " WHERE version = ANY($1::int[])",
                     1, params, &r, &e);
    if (rc == DB_ERR_QUERY && strcmp(e.sqlstate, "42P01") == 0)
        return DB_OK; /* no schema_migrations yet: everything pending */
    if (rc != DB_OK) {
        if (err != NULL)
            *err = e;
        return rc;
    }
    long have = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    *pending = (int)db__migrations_count - (int)have;
    return DB_OK;
}
