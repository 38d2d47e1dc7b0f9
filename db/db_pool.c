/*
 * db_pool.c: a fixed-size pool of libpq connections.
 *
 * Each slot holds at most one PGconn, made lazily at its first acquire.
 * The mutex guards only the slots' busy flags and the in-use count; every
 * network round trip (connect, reconnect, the setup query, ROLLBACK at
 * release) happens outside it, by the thread that owns the slot. Waiters
 * sleep on the condvar, which uses CLOCK_MONOTONIC so a clock change does
 * not stretch a wait.
 *
 * Broken connections: a query that fails with CONNECTION_BAD marks the
 * slot; at acquire, a slot whose socket turned readable while idle (the
 * server closed it, e.g. on restart) is closed and reconnected. So after a
 * database restart the next acquire hands out a fresh connection, with no
 * restart of Arena.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "db_internal.h"

struct db_conn {
    PGconn *pg;  /* NULL until connected; owned by the slot */
    bool busy;   /* checked out (guarded by pool->mu) */
    bool broken; /* close at release (only the holder touches it) */
    int index;
};

struct db_pool {
    pthread_mutex_t mu;
    pthread_cond_t freed; /* signalled when a slot is released */
    int size;
    int in_use; /* guarded by mu */
    char *conninfo;
    char search_path[128];
    char app_name[64];
    char statement_timeout[24]; /* e.g. "5000" (ms), "0" = none */
    char connect_timeout[16];   /* seconds, "" = libpq default */
    struct db_conn *slots;      /* (size) */
};

/* ---------------------------------------------------------------------- */
/* Logging and errors                                                     */

static db_log_fn log_fn;
static void *log_user;

void db_log_set(db_log_fn fn, void *user)
{
    log_fn = fn;
    log_user = user;
}

void db__log(enum db_log_level level, const char *fmt, ...)
{
    if (log_fn == NULL)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    db__one_line(msg);
    log_fn(log_user, level, msg);
}

void db__one_line(char *s)
{
    char *w = s;
    for (const char *r = s; *r != '\0'; r++) {
        char c = *r;
        if (c == '\n' || c == '\r' || c == '\t')
            c = ' ';
        if (c == ' ' && (w == s || w[-1] == ' '))
            continue;
        *w++ = c;
    }
    while (w > s && w[-1] == ' ')
        w--;
    *w = '\0';
}

void db__err_set(struct db_err *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    db__one_line(err->msg);
    err->sqlstate[0] = '\0';
}

const char *db_strerror(int status)
{
    switch (status) {
    case DB_OK:
        return "ok";
    case DB_ERR_NOMEM:
        return "out of memory";
    case DB_ERR_CONNECT:
        return "database connection failed";
    case DB_ERR_TIMEOUT:
        return "no database connection free in time";
    case DB_ERR_QUERY:
        return "database query failed";
    case DB_ERR_CONFLICT:
        return "conflicting row";
    case DB_ERR_CLUSTER:
        return "managed PostgreSQL failed";
    case DB_ERR_BUSY:
        return "data directory in use";
    default:
        return "database error";
    }
}

/* ---------------------------------------------------------------------- */
/* Pool                                                                   */

int db_pool_new(const struct db_pool_config *cfg, struct db_pool **out,
                struct db_err *err)
{
    *out = NULL;
    if (cfg->size < 1 || cfg->size > 1000) {
        db__err_set(err, "pool size %d is not between 1 and 1000", cfg->size);
        return DB_ERR;
    }
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(cfg->conninfo, &perr);
    if (opts == NULL) {
        db__err_set(err, "bad database URL: %s",
                    perr != NULL ? perr : "out of memory");
        PQfreemem(perr);
        return DB_ERR;
    }
    PQconninfoFree(opts);

    struct db_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto nomem;
    p->size = cfg->size;
    p->slots = calloc((size_t)cfg->size, sizeof(*p->slots));
    p->conninfo = strdup(cfg->conninfo);
    if (p->slots == NULL || p->conninfo == NULL)
        goto nomem;
    for (int i = 0; i < p->size; i++)
        p->slots[i].index = i;
    snprintf(p->search_path, sizeof(p->search_path), "%s",
             cfg->search_path != NULL ? cfg->search_path : "public");
    snprintf(p->app_name, sizeof(p->app_name), "%s",
             cfg->app_name != NULL ? cfg->app_name : "arena");
    snprintf(p->statement_timeout, sizeof(p->statement_timeout), "%d",
             cfg->statement_timeout_ms > 0 ? cfg->statement_timeout_ms : 0);
    if (cfg->connect_timeout_s > 0)
        snprintf(p->connect_timeout, sizeof(p->connect_timeout), "%d",
                 cfg->connect_timeout_s);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->freed, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return DB_OK;

nomem:
    if (p != NULL) {
        free(p->slots);
        free(p->conninfo);
        free(p);
    }
    db__err_set(err, "out of memory");
    return DB_ERR_NOMEM;
}

void db_pool_free(struct db_pool *pool)
{
    if (pool == NULL)
        return;
    for (int i = 0; i < pool->size; i++) {
        if (pool->slots[i].busy)
            db__log(DB_LOG_WARN, "db: pool freed with connection %d held", i);
        PQfinish(pool->slots[i].pg);
    }
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->freed);
    free(pool->slots);
    free(pool->conninfo);
    free(pool);
}

int db_pool_size(const struct db_pool *pool)
{
    return pool->size;
}

int db_pool_in_use(struct db_pool *pool)
{
    pthread_mutex_lock(&pool->mu);
    int n = pool->in_use;
    pthread_mutex_unlock(&pool->mu);
    return n;
}

/* Whether an idle connection is still usable. An idle connection has
 * nothing to read: input waiting means the server spoke first, which in
 * practice is the goodbye of a backend that was terminated (restart,
 * pg_terminate_backend) with the EOF right behind it. Such a connection is
 * dropped and remade rather than probed: reconnecting is cheap and always
 * right, while PQconsumeInput may read the message and not yet the EOF. */
static bool conn_alive(PGconn *pg)
{
    if (PQstatus(pg) != CONNECTION_OK ||
        PQtransactionStatus(pg) != PQTRANS_IDLE)
        return false;
    struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};
    if (pfd.fd < 0)
        return false;
    return poll(&pfd, 1, 0) == 0;
}

/* Server notices (e.g. "relation already exists, skipping") go to the
 * log, not to stderr as libpq's default processor would. */
static void on_notice(void *arg, const char *msg)
{
    (void)arg;
    db__log(DB_LOG_DEBUG, "db: server notice: %s", msg);
}

/* Connects slot c with the pool's settings. Runs without the mutex. */
static int conn_open(struct db_pool *p, struct db_conn *c, struct db_err *err)
{
    const char *keys[] = {"dbname", "application_name", "connect_timeout",
                          NULL};
    const char *vals[] = {p->conninfo, p->app_name,
                          p->connect_timeout[0] ? p->connect_timeout : NULL,
                          NULL};
    if (vals[2] == NULL)
        keys[2] = NULL;
    PQfinish(c->pg);
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (c->pg == NULL) {
        db__err_set(err, "out of memory");
        return DB_ERR_NOMEM;
    }
    if (PQstatus(c->pg) != CONNECTION_OK) {
        db__err_set(err, "%s", PQerrorMessage(c->pg));
        PQfinish(c->pg);
        c->pg = NULL;
        return DB_ERR_CONNECT;
    }
    PQsetNoticeProcessor(c->pg, on_notice, NULL);
    /* Pin the session settings with a parameterised call. The timeout
     * is in milliseconds when given without a unit. */
    const char *params[] = {p->search_path, p->statement_timeout};
    PGresult *r =
        PQexecParams(c->pg,
                     "SELECT pg_catalog.set_config('search_path', $1, false),"
                     " pg_catalog.set_config('statement_timeout', $2, false)",
                     2, NULL, params, NULL, NULL, 0);
    int rc = DB_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        db__err_set(err, "session setup failed: %s", PQresultErrorMessage(r));
        rc = DB_ERR_CONNECT;
        PQfinish(c->pg);
        c->pg = NULL;
    }
    PQclear(r);
    if (rc == DB_OK)
        db__log(DB_LOG_DEBUG, "db: connection %d opened", c->index);
    return rc;
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int db_pool_acquire(struct db_pool *pool, int wait_ms, struct db_conn **out,
                    struct db_err *err)
{
    *out = NULL;
    struct timespec deadline;
    deadline_after(&deadline, wait_ms > 0 ? wait_ms : 0);

    pthread_mutex_lock(&pool->mu);
    struct db_conn *c = NULL;
    for (;;) {
        /* Prefer a slot that is already connected. */
        for (int i = 0; i < pool->size; i++) {
            struct db_conn *s = &pool->slots[i];
            if (!s->busy && (c == NULL || (c->pg == NULL && s->pg != NULL)))
                c = s;
        }
        if (c != NULL)
            break;
        int rc = pthread_cond_timedwait(&pool->freed, &pool->mu, &deadline);
        if (rc == ETIMEDOUT) {
            pthread_mutex_unlock(&pool->mu);
            db__err_set(err, "all %d database connections busy for %d ms",
                        pool->size, wait_ms);
            return DB_ERR_TIMEOUT;
        }
    }
    c->busy = true;
    c->broken = false;
    pool->in_use++;
    pthread_mutex_unlock(&pool->mu);

    if (c->pg == NULL || !conn_alive(c->pg)) {
        if (c->pg != NULL)
            db__log(DB_LOG_INFO, "db: connection %d lost, reconnecting",
                    c->index);
        int rc = conn_open(pool, c, err);
        if (rc != DB_OK) {
            db_pool_release(pool, c);
            return rc;
        }
    }
    *out = c;
    return DB_OK;
}

void db_pool_release(struct db_pool *pool, struct db_conn *c)
{
    if (c == NULL)
        return;
    if (c->pg != NULL && !c->broken) {
        switch (PQtransactionStatus(c->pg)) {
        case PQTRANS_IDLE:
            break;
        case PQTRANS_INTRANS:
        case PQTRANS_INERROR: {
            PGresult *r = PQexec(c->pg, "ROLLBACK");
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                c->broken = true;
            PQclear(r);
            break;
        }
        default: /* a query still active, or the connection is bad */
            c->broken = true;
        }
        if (PQstatus(c->pg) != CONNECTION_OK)
            c->broken = true;
    }
    if (c->broken) {
        PQfinish(c->pg);
        c->pg = NULL;
        c->broken = false;
    }
    pthread_mutex_lock(&pool->mu);
    c->busy = false;
    pool->in_use--;
    pthread_cond_signal(&pool->freed);
    pthread_mutex_unlock(&pool->mu);
}

PGconn *db_conn_pg(struct db_conn *conn)
{
    return conn->pg;
}

void db_conn_mark_broken(struct db_conn *conn)
{
    conn->broken = true;
}

/* ---------------------------------------------------------------------- */
/* Statements                                                             */

int db_err_from_result(struct db_conn *conn, const PGresult *res,
                       struct db_err *err)
{
    const char *msg = res != NULL ? PQresultErrorMessage(res) : "";
    if (msg[0] == '\0')
        msg = PQerrorMessage(conn->pg);
    db__err_set(err, "%s", msg[0] != '\0' ? msg : "unknown error");
    if (PQstatus(conn->pg) != CONNECTION_OK) {
        conn->broken = true;
        return DB_ERR_CONNECT;
    }
    const char *state =
        res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (err != NULL && state != NULL)
        snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state);
    if (state != NULL &&
        (strcmp(state, "23505") == 0 || strcmp(state, "23P01") == 0))
        return DB_ERR_CONFLICT;
    return DB_ERR_QUERY;
}

int db_exec(struct db_conn *conn, const char *sql, int n_params,
            const char *const *params, PGresult **res, struct db_err *err)
{
    if (res != NULL)
        *res = NULL;
    PGresult *r =
        PQexecParams(conn->pg, sql, n_params, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (r == NULL || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)) {
        int rc = db_err_from_result(conn, r, err);
        PQclear(r);
        return rc;
    }
    if (res != NULL)
        *res = r;
    else
        PQclear(r);
    return DB_OK;
}

int db_begin(struct db_conn *conn, struct db_err *err)
{
    return db_exec(conn, "BEGIN", 0, NULL, NULL, err);
}

/* COMMIT of a transaction that already failed "succeeds" with the tag
 * ROLLBACK: report that as the failure it is. */
int db_commit(struct db_conn *conn, struct db_err *err)
{
    PGresult *r = NULL;
    int rc = db_exec(conn, "COMMIT", 0, NULL, &r, err);
    if (rc == DB_OK && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        db__err_set(err, "transaction was rolled back");
        rc = DB_ERR_QUERY;
    }
    PQclear(r);
    return rc;
}

int db_rollback(struct db_conn *conn, struct db_err *err)
{
    return db_exec(conn, "ROLLBACK", 0, NULL, NULL, err);
}
