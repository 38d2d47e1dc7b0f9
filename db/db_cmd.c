/*
 * db_cmd.c: `arena migrate`, which applies the embedded migrations and
 * exits. Like `arena serve`, it uses a database URL when one is set and
 * otherwise the embedded cluster of the data directory (started for the
 * occasion, and stopped again). Both settings come, as for serve, from the
 * flag, else the environment, else serve's JSON config file (--config or
 * ARENA_CONFIG; its other keys are serve's and ignored here).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db.h"

static void log_stderr(void *user, enum db_log_level level, const char *msg)
{
    (void)user;
    if (level <= DB_LOG_INFO)
        fprintf(stderr, "arena migrate: %s\n", msg);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: arena migrate [--database-url URL] [--data-dir DIR] "
               "[--config FILE]\n"
               "\n"
               "Applies the database migrations built into this binary and "
               "exits.\n"
               "  --database-url URL  libpq connection string or URI "
               "(env DATABASE_URL);\n"
               "                      without it, the embedded cluster of "
               "DIR/pg is used\n"
               "  --data-dir DIR      data directory (env ARENA_DATA_DIR, "
               "default ./var)\n"
               "  --config FILE       serve's JSON config file (env "
               "ARENA_CONFIG): its\n"
               "                      database_url and data_dir, below "
               "flags and env\n"
               "  --status            only say how many migrations are "
               "pending (exit 1 if any)\n");
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

/* key of the config file root, if a non-empty string: the file's value. */
static const char *file_str(json_t *root, const char *key, const char *path,
                            int *bad)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        fprintf(stderr,
                "arena: migrate: config file %s: %s: a string is "
                "expected\n",
                path, key);
        *bad = 1;
        return NULL;
    }
    return json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

int db_cmd_migrate(int argc, char **argv)
{
    /* Flags first (so that --config is known), then env, file, default. */
    const char *url = NULL, *data_dir = NULL;
    const char *config = env_or("ARENA_CONFIG", NULL);
    int status_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--status") == 0) {
            status_only = 1;
        } else if (strcmp(argv[i], "--database-url") == 0 && i + 1 < argc) {
            url = argv[++i];
        } else if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
            data_dir = argv[++i];
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else {
            fprintf(stderr,
                    "arena: migrate: unknown option '%s'; see "
                    "'arena migrate --help'\n",
                    argv[i]);
            return 2;
        }
    }
    if (url == NULL)
        url = env_or("DATABASE_URL", NULL);
    if (data_dir == NULL)
        data_dir = env_or("ARENA_DATA_DIR", NULL);
    json_t *file = NULL;
    if (config != NULL && (url == NULL || data_dir == NULL)) {
        json_error_t jerr;
        file = json_load_file(config, 0, &jerr);
        int bad = 0;
        if (file == NULL || !json_is_object(file)) {
            fprintf(stderr, "arena: migrate: config file %s: %s\n", config,
                    file == NULL ? jerr.text : "not a JSON object");
            bad = 1;
        }
        if (!bad && url == NULL)
            url = file_str(file, "database_url", config, &bad);
        if (!bad && data_dir == NULL)
            data_dir = file_str(file, "data_dir", config, &bad);
        if (bad) {
            json_decref(file);
            return 2;
        }
    }
    if (data_dir == NULL)
        data_dir = "./var";
    db_log_set(log_stderr, NULL);

    struct db_err err = {0};
    struct db_cluster *cluster = NULL;
    struct db_pool *pool = NULL;
    struct db_conn *conn = NULL;
    int rc = DB_OK, n = 0;
    if (url == NULL) {
        rc = db_cluster_start(data_dir, 60, &cluster, &err);
        if (rc == DB_OK)
            url = db_cluster_conninfo(cluster);
    }
    struct db_pool_config pc = {
        .conninfo = url, .size = 1, .connect_timeout_s = 10};
    if (rc == DB_OK)
        rc = db_pool_new(&pc, &pool, &err);
    if (rc == DB_OK)
        rc = db_pool_acquire(pool, 10000, &conn, &err);
    if (rc == DB_OK && status_only)
        rc = db_migrate_pending(conn, &n, &err);
    else if (rc == DB_OK)
        rc = db_migrate(conn, &n, &err);
    db_pool_release(pool, conn);
    db_pool_free(pool);
    struct db_err serr;
    if (db_cluster_stop(cluster, &serr) != DB_OK && rc == DB_OK) {
        err = serr;
        rc = DB_ERR_CLUSTER;
    }
    json_decref(file); /* url and data_dir may point into it until here */
    if (rc != DB_OK) {
        fprintf(stderr, "arena: migrate: %s\n", err.msg);
        return 1;
    }
    size_t total;
    db_migrations(&total);
    if (status_only) {
        printf("%d of %zu migrations pending\n", n, total);
        return n > 0 ? 1 : 0;
    }
    printf("%d migrations applied, %zu in all\n", n, total);
    return 0;
}
