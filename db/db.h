/*
 * db.h: the database module's one public header.
 *
 * db/ owns the libpq connection pool, the migrations, the managed PostgreSQL
 * cluster of the embedded default, and the queries. It knows nothing of HTTP
 * or models, and it never prints: it reports through the log callback set
 * with db_log_set().
 *
 * Objects and threads:
 * - struct db_pool: a fixed number of PGconn slots; any thread may acquire
 *   and release (mutex + condvar inside). A struct db_conn is used by one
 *   thread at a time, between db_pool_acquire() and db_pool_release().
 * - struct db_cluster: a postgres child process; start and stop it from the
 *   same thread (the process's main thread: PR_SET_PDEATHSIG is tied to the
 *   thread that forked).
 * Errors: functions return enum db_status (DB_OK = 0, negative on failure)
 * and fill a caller-owned struct db_err with one line of human-readable
 * detail (the libpq text is copied there at once; newlines are flattened).
 * Queries with values use only PQexecParams/PQprepare: never build SQL text
 * from data.
 */
#ifndef DB_H
#define DB_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

enum db_status {
    DB_OK = 0,
    DB_ERR = -1,          /* anything else (bad argument, internal) */
    DB_ERR_NOMEM = -2,    /* out of memory */
    DB_ERR_CONNECT = -3,  /* cannot connect, or the connection broke */
    DB_ERR_TIMEOUT = -4,  /* no free connection within the wait */
    DB_ERR_QUERY = -5,    /* the server rejected a statement (see sqlstate) */
    DB_ERR_CONFLICT = -6, /* unique or exclusion violation (23505, 23P01) */
    DB_ERR_CLUSTER = -7,  /* the managed PostgreSQL failed */
    DB_ERR_BUSY = -8,     /* data directory used by another arena process */
};

/* One line of detail for a human. sqlstate is "" unless the server said. */
struct db_err {
    char msg[256];
    char sqlstate[6];
};

/* A static string naming a status ("connection failed", ...). */
const char *db_strerror(int status);

/* ---------------------------------------------------------------------- */
/* Logging                                                                */

enum db_log_level { DB_LOG_ERROR, DB_LOG_WARN, DB_LOG_INFO, DB_LOG_DEBUG };
typedef void (*db_log_fn)(void *user, enum db_log_level level, const char *msg);

/* Installs the logger for the whole module (NULL: discard). Call it once at
 * start, before any other thread uses db/. Cannot fail. */
void db_log_set(db_log_fn fn, void *user);

/* ---------------------------------------------------------------------- */
/* Connection pool                                                        */

struct db_pool;
struct db_conn;

struct db_pool_config {
    const char *conninfo;     /* libpq connection string or URI */
    int size;                 /* connections, 1..1000 */
    int statement_timeout_ms; /* 0 = none; set on every connection */
    int connect_timeout_s;    /* libpq connect_timeout; 0 = libpq default */
    const char *search_path;  /* pinned at connect; NULL = "public" */
    const char *app_name;     /* application_name; NULL = "arena" */
};

/* Creates a pool. Connections are made lazily, at first acquire. Checks the
 * conninfo's syntax only. Returns DB_OK and *out (free with db_pool_free),
 * or DB_ERR (bad conninfo or size) / DB_ERR_NOMEM with err filled. */
int db_pool_new(const struct db_pool_config *cfg, struct db_pool **out,
                struct db_err *err);

/* Closes every connection and frees the pool. All connections must have
 * been released. NULL is a no-op. */
void db_pool_free(struct db_pool *pool);

/* Takes a connection for the calling thread, waiting up to wait_ms for a
 * free one. A connection found broken (or closed by the server while idle)
 * is reconnected first, with the pool's settings (statement_timeout,
 * search_path). Returns DB_OK and *out, DB_ERR_TIMEOUT when none came free,
 * or DB_ERR_CONNECT with the libpq error in err. */
int db_pool_acquire(struct db_pool *pool, int wait_ms, struct db_conn **out,
                    struct db_err *err);

/* Gives a connection back. A connection left inside a transaction is rolled
 * back; one found broken is closed (reconnected at a later acquire). NULL is
 * a no-op. Cannot fail. */
void db_pool_release(struct db_pool *pool, struct db_conn *conn);

/* Number of slots, and how many are checked out right now. */
int db_pool_size(const struct db_pool *pool);
int db_pool_in_use(struct db_pool *pool);

/* The libpq connection, borrowed for the time the conn is held (for
 * pipeline mode, COPY, prepared statements). Whoever uses it directly must
 * leave it idle (no transaction, no pending results) before release, or
 * call db_conn_mark_broken(). */
PGconn *db_conn_pg(struct db_conn *conn);

/* Makes release close this connection instead of pooling it. */
void db_conn_mark_broken(struct db_conn *conn);

/* Runs one statement with text parameters ($1..$n; NULL values are SQL
 * NULL). On DB_OK, *res (if res is not NULL) holds the result, which the
 * caller frees with PQclear; otherwise nothing is left to free. Returns
 * DB_ERR_QUERY (sqlstate in err), DB_ERR_CONFLICT for a unique violation,
 * or DB_ERR_CONNECT when the connection broke (it is then marked broken). */
int db_exec(struct db_conn *conn, const char *sql, int n_params,
            const char *const *params, PGresult **res, struct db_err *err);

/* BEGIN, COMMIT, ROLLBACK. */
int db_begin(struct db_conn *conn, struct db_err *err);
int db_commit(struct db_conn *conn, struct db_err *err);
int db_rollback(struct db_conn *conn, struct db_err *err);

/* Copies the error of a failed result or of the connection into err and
 * returns the matching status. res may be NULL. For code that drives the
 * PGconn directly. */
int db_err_from_result(struct db_conn *conn, const PGresult *res,
                       struct db_err *err);

/* ---------------------------------------------------------------------- */
/* Migrations                                                             */

/* One embedded migration: db/migrations/NNNN_name.sql, built into the
 * binary (the build generates the table from that folder). */
struct db_migration {
    int version;      /* NNNN, strictly increasing */
    const char *name; /* the part after NNNN_, without .sql */
    const char *sql;  /* the whole file */
};

/* The embedded migrations, in order, and their count. Cannot fail. */
const struct db_migration *db_migrations(size_t *count);

/* Applies every migration not yet recorded in schema_migrations, in order,
 * each in its own transaction, holding a session advisory lock so that two
 * processes migrating at once take turns. *applied (may be NULL) gets how
 * many ran. Returns DB_OK, or the failing status with the migration named
 * in err (that migration is rolled back; earlier ones stay). */
int db_migrate(struct db_conn *conn, int *applied, struct db_err *err);

/* Tells whether every embedded migration is recorded. One round trip.
 * *pending gets how many are missing (all of them if schema_migrations
 * does not exist yet). Returns DB_OK or the failing status. */
int db_migrate_pending(struct db_conn *conn, int *pending, struct db_err *err);

/* ---------------------------------------------------------------------- */
/* Managed PostgreSQL (the embedded default)                              */

struct db_cluster;

/* Starts (creating it on first use) the PostgreSQL cluster of data_dir:
 * the cluster lives in data_dir/pg, listens only on a Unix socket in that
 * directory, and logs to data_dir/pg.log. As root, initdb and postgres run
 * as the unprivileged `postgres` account. Holds data_dir/arena.lock for the
 * cluster's life (a second arena on the same data_dir gets DB_ERR_BUSY);
 * a server left over from a crashed arena is stopped first. Creates the
 * database `arena`. Waits up to wait_s seconds for it to accept
 * connections. Returns DB_OK and *out (stop and free with db_cluster_stop),
 * or DB_ERR_CLUSTER / DB_ERR_BUSY with err filled. */
int db_cluster_start(const char *data_dir, int wait_s, struct db_cluster **out,
                     struct db_err *err);

/* The libpq conninfo of the cluster's `arena` database. Borrowed. */
const char *db_cluster_conninfo(const struct db_cluster *cluster);

/* The postgres server's process id. */
int db_cluster_pid(const struct db_cluster *cluster);

/* Stops the server (fast shutdown: sessions are cut, data is safe), waits
 * for it to exit (up to 30 s, then harder signals), releases the lock and
 * frees the object. NULL is a no-op. Returns DB_OK or DB_ERR_CLUSTER. */
int db_cluster_stop(struct db_cluster *cluster, struct db_err *err);

/* ---------------------------------------------------------------------- */
/* Commands                                                               */

int db_cmd_migrate(int argc, char **argv);

#endif
