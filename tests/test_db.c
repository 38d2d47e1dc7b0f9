/*
 * test_db.c: the pool, migrations and the first schema, against the real
 * PostgreSQL of the test run (ARENA_TEST_PGCONN; skipped without it).
 * Each test works in a database of its own, created for it and dropped
 * after, so tests never share schema state.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "check.h"
#include "db.h"

/* ---------------------------------------------------------------------- */
/* A fresh database per test                                              */

static int db_serial;

/* Creates a database and writes its conninfo into out. Returns 0, or -1
 * when there is no test cluster (the test should skip). */
static int fresh_db(char *out, size_t n, char *name, size_t name_n)
{
    const char *base = getenv("ARENA_TEST_PGCONN");
    if (base == NULL || base[0] == '\0')
        return -1;
    snprintf(name, name_n, "test_db_%d_%d", (int)getpid(), ++db_serial);
    PGconn *pg = PQconnectdb(base);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "test cluster: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return -1;
    }
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "%s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(pg);
    snprintf(out, n, "%s dbname=%s", base, name);
    return ok ? 0 : -1;
}

static void drop_db(const char *name)
{
    PGconn *pg = PQconnectdb(getenv("ARENA_TEST_PGCONN"));
    char sql[160];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    PQclear(PQexec(pg, sql));
    PQfinish(pg);
}

static struct db_pool *pool_for(const char *conninfo, int size,
                                int stmt_timeout_ms)
{
    struct db_pool_config pc = {.conninfo = conninfo,
                                .size = size,
                                .statement_timeout_ms = stmt_timeout_ms,
                                .connect_timeout_s = 5};
    struct db_pool *p = NULL;
    struct db_err err;
    if (db_pool_new(&pc, &p, &err) != DB_OK)
        fprintf(stderr, "db_pool_new: %s\n", err.msg);
    return p;
}

#define FRESH(conninfo, name)                                                  \
    char conninfo[1024], name[64];                                             \
    if (fresh_db(conninfo, sizeof(conninfo), name, sizeof(name)) != 0)         \
        check_skip("no test PostgreSQL (ARENA_TEST_PGCONN)");

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* ---------------------------------------------------------------------- */
/* Statements                                                             */

TEST(exec_round_trip)
{
    FRESH(ci, name);
    struct db_pool *p = pool_for(ci, 2, 0);
    struct db_conn *c = NULL;
    struct db_err err;
    CHECK_EQ(db_pool_acquire(p, 1000, &c, &err), DB_OK);
    /* Values that would break naive quoting travel as parameters. */
    const char *params[] = {"it's a \"test\"; DROP TABLE x; --", "41", NULL,
                            "żółw 🐢"};
    PGresult *r = NULL;
    CHECK_EQ(db_exec(c,
                     "SELECT $1::text, $2::int + 1, $3::text IS NULL,"
                     " length($4::text), current_setting('search_path')",
                     4, params, &r, &err),
             DB_OK);
    CHECK_STREQ(PQgetvalue(r, 0, 0), params[0]);
    CHECK_STREQ(PQgetvalue(r, 0, 1), "42");
    CHECK_STREQ(PQgetvalue(r, 0, 2), "t");
    CHECK_STREQ(PQgetvalue(r, 0, 3), "6");
    CHECK_STREQ(PQgetvalue(r, 0, 4), "public");
    PQclear(r);
    /* A syntax error: DB_ERR_QUERY with its SQLSTATE, one line. */
    CHECK_EQ(db_exec(c, "SELEC 1", 0, NULL, NULL, &err), DB_ERR_QUERY);
    CHECK_STREQ(err.sqlstate, "42601");
    CHECK(strchr(err.msg, '\n') == NULL);
    /* COMMIT of a failed transaction is a failure. */
    CHECK_EQ(db_begin(c, &err), DB_OK);
    CHECK_EQ(db_exec(c, "SELECT 1/0", 0, NULL, NULL, &err), DB_ERR_QUERY);
    CHECK_EQ(db_commit(c, &err), DB_ERR_QUERY);
    db_pool_release(p, c);
    db_pool_free(p);
    drop_db(name);
}

TEST(statement_timeout)
{
    FRESH(ci, name);
    struct db_pool *p = pool_for(ci, 1, 100);
    struct db_conn *c = NULL;
    struct db_err err;
    CHECK_EQ(db_pool_acquire(p, 1000, &c, &err), DB_OK);
    double t0 = now_ms();
    CHECK_EQ(db_exec(c, "SELECT pg_sleep(3)", 0, NULL, NULL, &err),
             DB_ERR_QUERY);
    CHECK_STREQ(err.sqlstate, "57014"); /* query_canceled */
    CHECK(now_ms() - t0 < 2000);
    /* The connection is still good afterwards. */
    CHECK_EQ(db_exec(c, "SELECT 1", 0, NULL, NULL, &err), DB_OK);
    db_pool_release(p, c);
    db_pool_free(p);
    drop_db(name);
}

/* ---------------------------------------------------------------------- */
/* Pool                                                                   */

struct worker {
    struct db_pool *pool;
    atomic_int *holding, *max_holding, *failures;
    int iterations;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->iterations; i++) {
        struct db_conn *c = NULL;
        struct db_err err;
        if (db_pool_acquire(w->pool, 10000, &c, &err) != DB_OK) {
            atomic_fetch_add(w->failures, 1);
            continue;
        }
        int now = atomic_fetch_add(w->holding, 1) + 1;
        int seen = atomic_load(w->max_holding);
        while (now > seen &&
               !atomic_compare_exchange_weak(w->max_holding, &seen, now))
            ;
        char v[16];
        snprintf(v, sizeof(v), "%d", i);
        const char *params[] = {v};
        PGresult *r = NULL;
        if (db_exec(c, "SELECT $1::int * 2", 1, params, &r, &err) != DB_OK ||
            atoi(PQgetvalue(r, 0, 0)) != 2 * i)
            atomic_fetch_add(w->failures, 1);
        PQclear(r);
        atomic_fetch_sub(w->holding, 1);
        db_pool_release(w->pool, c);
    }
    return NULL;
}

TEST(pool_threads)
{
    FRESH(ci, name);
    struct db_pool *p = pool_for(ci, 3, 0);
    atomic_int holding = 0, max_holding = 0, failures = 0;
    struct worker w = {p, &holding, &max_holding, &failures, 40};
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, worker_run, &w);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(atomic_load(&failures), 0);
    CHECK(atomic_load(&max_holding) <= 3);
    CHECK(atomic_load(&max_holding) >= 2); /* they did overlap */
    CHECK_EQ(db_pool_in_use(p), 0);
    db_pool_free(p);
    drop_db(name);
}

TEST(pool_timeout)
{
    FRESH(ci, name);
    struct db_pool *p = pool_for(ci, 2, 0);
    struct db_conn *a = NULL, *b = NULL, *c = NULL;
    struct db_err err;
    CHECK_EQ(db_pool_acquire(p, 1000, &a, &err), DB_OK);
    CHECK_EQ(db_pool_acquire(p, 1000, &b, &err), DB_OK);
    CHECK(a != b);
    double t0 = now_ms();
    CHECK_EQ(db_pool_acquire(p, 150, &c, &err), DB_ERR_TIMEOUT);
    double waited = now_ms() - t0;
    CHECK(waited >= 140 && waited < 1500);
    CHECK(c == NULL);
    db_pool_release(p, a);
    CHECK_EQ(db_pool_acquire(p, 150, &c, &err), DB_OK);
    CHECK(c == a); /* the released slot, still connected */
    db_pool_release(p, b);
    db_pool_release(p, c);
    db_pool_free(p);
    drop_db(name);
}

TEST(bad_conninfo)
{
    struct db_pool *p = NULL;
    struct db_err err;
    struct db_pool_config pc = {.conninfo = "host=", .size = 0};
    CHECK_EQ(db_pool_new(&pc, &p, &err), DB_ERR);
    pc.size = 1;
    pc.conninfo = "this is not=a valid conninfo '";
    CHECK_EQ(db_pool_new(&pc, &p, &err), DB_ERR);
    CHECK(strstr(err.msg, "bad database URL") != NULL);
    /* Syntax fine, nobody there: the failure comes at acquire. */
    pc.conninfo = "host=/nonexistent-arena-socket-dir dbname=x";
    CHECK_EQ(db_pool_new(&pc, &p, &err), DB_OK);
    struct db_conn *c = NULL;
    CHECK_EQ(db_pool_acquire(p, 1000, &c, &err), DB_ERR_CONNECT);
    CHECK(strstr(err.msg, "nonexistent-arena-socket-dir") != NULL);
    CHECK(strchr(err.msg, '\n') == NULL);
    CHECK_EQ(db_pool_in_use(p), 0);
    db_pool_free(p);
}

/* The backend pid of a pooled connection. */
static int backend_pid(struct db_conn *c)
{
    PGresult *r = NULL;
    struct db_err err;
    if (db_exec(c, "SELECT pg_backend_pid()", 0, NULL, &r, &err) != DB_OK)
        return -1;
    int pid = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return pid;
}

static void terminate_backend(const char *ci, int pid)
{
    PGconn *pg = PQconnectdb(ci);
    char v[16];
    snprintf(v, sizeof(v), "%d", pid);
    const char *params[] = {v};
    PQclear(PQexecParams(pg, "SELECT pg_terminate_backend($1::int)", 1, NULL,
                         params, NULL, NULL, 0));
    PQfinish(pg);
    usleep(100 * 1000); /* the backend's goodbye reaches our socket */
}

TEST(reconnect)
{
    FRESH(ci, name);
    struct db_pool *p = pool_for(ci, 1, 0);
    struct db_conn *c = NULL;
    struct db_err err;
    /* Killed while idle in the pool: the next acquire reconnects. */
    CHECK_EQ(db_pool_acquire(p, 1000, &c, &err), DB_OK);
    int pid1 = backend_pid(c);
    db_pool_release(p, c);
    terminate_backend(ci, pid1);
    CHECK_EQ(db_pool_acquire(p, 1000, &c, &err), DB_OK);
    int pid2 = backend_pid(c);
    CHECK(pid2 > 0 && pid2 != pid1);
    /* Killed while held: the query fails as a connection error, and the
     * slot comes back fresh at the next acquire. */
    terminate_backend(ci, pid2);
    CHECK_EQ(db_exec(c, "SELECT 1", 0, NULL, NULL, &err), DB_ERR_CONNECT);
    db_pool_release(p, c);
    CHECK_EQ(db_pool_acquire(p, 1000, &c, &err), DB_OK);
    int pid3 = backend_pid(c);
    CHECK(pid3 > 0 && pid3 != pid2);
    db_pool_release(p, c);
    db_pool_free(p);
    drop_db(name);
}

TEST(release_rolls_back)
{
    FRESH(ci, name);
    struct db_pool *p = pool_for(ci, 1, 0);
    struct db_conn *c = NULL;
    struct db_err err;
    CHECK_EQ(db_pool_acquire(p, 1000, &c, &err), DB_OK);
    CHECK_EQ(db_exec(c, "CREATE TABLE t (x int)", 0, NULL, NULL, &err), DB_OK);
    CHECK_EQ(db_begin(c, &err), DB_OK);
    CHECK_EQ(db_exec(c, "INSERT INTO t VALUES (1)", 0, NULL, NULL, &err),
             DB_OK);
    db_pool_release(p, c); /* forgot to commit */
    CHECK_EQ(db_pool_acquire(p, 1000, &c, &err), DB_OK);
    PGresult *r = NULL;
    CHECK_EQ(db_exec(c, "SELECT count(*) FROM t", 0, NULL, &r, &err), DB_OK);
    CHECK_STREQ(PQgetvalue(r, 0, 0), "0");
    PQclear(r);
    db_pool_release(p, c);
    db_pool_free(p);
    drop_db(name);
}

/* ---------------------------------------------------------------------- */
/* Migrations and schema                                                  */

TEST(migrations_embedded)
{
    size_t n;
    const struct db_migration *m = db_migrations(&n);
    CHECK(n >= 1);
    CHECK_EQ(m[0].version, 1);
    CHECK_STREQ(m[0].name, "init");
    CHECK(strstr(m[0].sql, "CREATE TABLE votes") != NULL);
    for (size_t i = 1; i < n; i++)
        CHECK(m[i].version > m[i - 1].version);
}

TEST(migrate_idempotent)
{
    FRESH(ci, name);
    struct db_pool *p = pool_for(ci, 1, 0);
    struct db_conn *c = NULL;
    struct db_err err;
    size_t total;
    db_migrations(&total);
    CHECK_EQ(db_pool_acquire(p, 1000, &c, &err), DB_OK);
    int pending = -1, applied = -1;
    CHECK_EQ(db_migrate_pending(c, &pending, &err), DB_OK);
    CHECK_EQ(pending, (int)total);
    CHECK_EQ(db_migrate(c, &applied, &err), DB_OK);
    CHECK_EQ(applied, (int)total);
    CHECK_EQ(db_migrate_pending(c, &pending, &err), DB_OK);
    CHECK_EQ(pending, 0);
    CHECK_EQ(db_migrate(c, &applied, &err), DB_OK);
    CHECK_EQ(applied, 0);
    PGresult *r = NULL;
    CHECK_EQ(db_exec(c,
                     "SELECT count(*), min(version), bool_and(applied_at <="
                     " now()), string_agg(name, ',' ORDER BY version)"
                     " FROM schema_migrations",
                     0, NULL, &r, &err),
             DB_OK);
    CHECK_EQ(atoi(PQgetvalue(r, 0, 0)), (int)total);
    CHECK_STREQ(PQgetvalue(r, 0, 1), "1");
    CHECK_STREQ(PQgetvalue(r, 0, 2), "t");
    CHECK(strncmp(PQgetvalue(r, 0, 3), "init", 4) == 0);
    PQclear(r);
    db_pool_release(p, c);
    db_pool_free(p);
    drop_db(name);
}

struct migrator {
    const char *conninfo;
    int applied;
    int rc;
};

static void *migrate_run(void *arg)
{
    struct migrator *m = arg;
    struct db_pool *p = pool_for(m->conninfo, 1, 0);
    struct db_conn *c = NULL;
    struct db_err err;
    m->rc = db_pool_acquire(p, 5000, &c, &err);
    if (m->rc == DB_OK)
        m->rc = db_migrate(c, &m->applied, &err);
    if (m->rc != DB_OK)
        fprintf(stderr, "migrate: %s\n", err.msg);
    db_pool_release(p, c);
    db_pool_free(p);
    return NULL;
}

TEST(migrate_concurrent)
{
    FRESH(ci, name);
    size_t total;
    db_migrations(&total);
    struct migrator m[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        m[i] = (struct migrator){ci, -1, -1};
        pthread_create(&t[i], NULL, migrate_run, &m[i]);
    }
    int sum = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(m[i].rc, DB_OK);
        sum += m[i].applied;
    }
    CHECK_EQ(sum, (int)total); /* each migration ran exactly once */
    drop_db(name);
}

/* Runs sql with params, expecting status want. */
static int run(struct db_conn *c, const char *sql, int n,
               const char *const *params, PGresult **r)
{
    struct db_err err;
    int rc = db_exec(c, sql, n, params, r, &err);
    if (rc != DB_OK)
        fprintf(stderr, "(%s) %s\n", err.sqlstate, err.msg);
    return rc;
}

TEST(schema_one_vote_per_battle)
{
    FRESH(ci, name);
    struct db_pool *p = pool_for(ci, 1, 0);
    struct db_conn *c = NULL;
    struct db_err err;
    CHECK_EQ(db_pool_acquire(p, 1000, &c, &err), DB_OK);
    CHECK_EQ(db_migrate(c, NULL, &err), DB_OK);
    CHECK_EQ(run(c,
                 "INSERT INTO models (name, display_name, backend, path)"
                 " VALUES ('m1', 'M1', 'local', '/m1.gguf'),"
                 " ('m2', 'M2', 'local', '/m2.gguf')",
                 0, NULL, NULL),
             DB_OK);
    PGresult *r = NULL;
    CHECK_EQ(run(c,
                 "INSERT INTO battles (mode, model_a, model_b)"
                 " SELECT 'anonymous', a.id, b.id FROM models a, models b"
                 " WHERE a.name = 'm1' AND b.name = 'm2'"
                 " RETURNING id, public_id",
                 0, NULL, &r),
             DB_OK);
    const char *battle = PQgetvalue(r, 0, 0);
    CHECK_EQ(strlen(PQgetvalue(r, 0, 1)), 36); /* a uuid */
    const char *params[] = {battle, "model_a"};
    const char *vote =
        "INSERT INTO votes (battle_id, model_a, model_b, winner, mode)"
        " SELECT id, model_a, model_b, $2, mode FROM battles WHERE id = $1";
    CHECK_EQ(run(c, vote, 2, params, NULL), DB_OK);
    /* A second vote on the same battle: refused by the database. */
    params[1] = "model_b";
    CHECK_EQ(db_exec(c, vote, 2, params, NULL, &err), DB_ERR_CONFLICT);
    CHECK_STREQ(err.sqlstate, "23505");
    PQclear(r);
    /* Constraints: no winner outside the set, no self-pair, no key. */
    CHECK_EQ(db_exec(c,
                     "INSERT INTO battles (mode, model_a, model_b)"
                     " SELECT 'named', id, id FROM models LIMIT 1",
                     0, NULL, NULL, &err),
             DB_ERR_QUERY);
    CHECK_STREQ(err.sqlstate, "23514"); /* check_violation */
    CHECK_EQ(db_exec(c,
                     "INSERT INTO models (name, display_name, backend,"
                     " base_url, api_key_env) VALUES ('r', 'R', 'remote',"
                     " 'https://x/v1', 'sk-not-a-variable-name!')",
                     0, NULL, NULL, &err),
             DB_ERR_QUERY);
    CHECK_STREQ(err.sqlstate, "23514");
    /* A direct chat has no model_b. */
    CHECK_EQ(run(c,
                 "INSERT INTO battles (mode, model_a) SELECT 'direct', id"
                 " FROM models WHERE name = 'm1'",
                 0, NULL, NULL),
             DB_OK);
    db_pool_release(p, c);
    db_pool_free(p);
    drop_db(name);
}

static const struct check_test tests[] = {
    TEST_ENTRY(migrations_embedded),
    TEST_ENTRY(bad_conninfo),
    TEST_ENTRY(exec_round_trip),
    TEST_ENTRY(statement_timeout),
    TEST_ENTRY(pool_threads),
    TEST_ENTRY(pool_timeout),
    TEST_ENTRY(reconnect),
    TEST_ENTRY(release_rolls_back),
    TEST_ENTRY(migrate_idempotent),
    TEST_ENTRY(migrate_concurrent),
    TEST_ENTRY(schema_one_vote_per_battle),
};

CHECK_MAIN(tests)
