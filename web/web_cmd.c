/*
 * web_cmd.c: `arena serve`, the process's life from start to exit:
 *
 *   settings -> database (the embedded cluster unless DATABASE_URL) ->
 *   pool -> migrations -> HTTP server -> wait for SIGINT/SIGTERM ->
 *   stop accepting, finish in-flight requests (bounded) -> close the pool
 *   -> stop the embedded cluster -> exit 0.
 *
 * SIGINT and SIGTERM are blocked in every thread (the mask is set before
 * any thread starts, and threads inherit it); the main thread takes them
 * with sigwait(), so no handler runs in a random thread.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infer.h"
#include "web.h"

static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -1;
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

/* Bounds the whole shutdown: web_server_stop() gives in-flight requests
 * shutdown_timeout seconds; if closing still hangs well past that, exit
 * anyway. The embedded postgres then gets its parent-death signal and
 * shuts down by itself. */
static void *watchdog(void *arg)
{
    int seconds = *(const int *)arg + 20;
    sleep((unsigned)seconds);
    web_log(WEB_LOG_ERROR,
            "serve: requests still running after %d s; exiting anyway",
            seconds);
    _exit(1);
    return NULL;
}

struct serve {
    struct web_config cfg;
    struct db_cluster *cluster;
    struct db_pool *pool;
    struct web_server *server;
    struct infer_hub *hub; /* the engines: --models-dir, then the arena */
};

/* Database: the cluster if needed, the pool, the migrations. */
static int serve_db(struct serve *sv)
{
    struct db_err err = {{0}, {0}};
    const char *url = sv->cfg.database_url;
    int rc = DB_OK;
    if (url[0] == '\0') {
        rc = db_cluster_start(sv->cfg.data_dir, 60, &sv->cluster, &err);
        if (rc != DB_OK) {
            fprintf(stderr, "arena: embedded PostgreSQL: %s\n", err.msg);
            return 1;
        }
        url = db_cluster_conninfo(sv->cluster);
    }
    struct db_pool_config pc = {
        .conninfo = url,
        .size = sv->cfg.db_pool_size,
        .statement_timeout_ms = sv->cfg.statement_timeout_ms,
        .connect_timeout_s = 10,
    };
    rc = db_pool_new(&pc, &sv->pool, &err);
    if (rc != DB_OK) {
        fprintf(stderr, "arena: --database-url: %s\n", err.msg);
        return 2;
    }
    struct db_conn *conn = NULL;
    int applied = 0;
    rc = db_pool_acquire(sv->pool, sv->cfg.db_wait_ms, &conn, &err);
    if (rc != DB_OK) {
        fprintf(stderr, "arena: cannot connect to the database: %s\n", err.msg);
        return 1;
    }
    rc = db_migrate(conn, &applied, &err);
    db_pool_release(sv->pool, conn);
    if (rc != DB_OK) {
        fprintf(stderr, "arena: %s\n", err.msg);
        return 1;
    }
    web_log(WEB_LOG_INFO, "serve: database ready (%d migrations applied now)",
            applied);
    return 0;
}

/* The inference core logs through the server's logger. */
static void infer_logger(enum infer_log_level level, const char *msg,
                         void *user)
{
    (void)user;
    web_log((enum web_log_level)level, "%s", msg);
}

/* The hub of engines, with the models found under --models-dir. */
static int serve_models(struct serve *sv)
{
    infer_log_set(infer_logger, NULL, (enum infer_log_level)sv->cfg.log_level);
    sv->hub = infer_hub_new(NULL);
    if (sv->hub == NULL) {
        fprintf(stderr, "arena: out of memory\n");
        return 1;
    }
    if (sv->cfg.models_dir[0] == '\0')
        return 0;
    struct infer_err err = {{0}};
    int n = infer_hub_scan_dir(sv->hub, sv->cfg.models_dir, &err);
    if (n < 0) {
        fprintf(stderr, "arena: --models-dir: %s\n", err.msg);
        return 2;
    }
    web_log(WEB_LOG_INFO, "serve: %d models from %s", n, sv->cfg.models_dir);
    return 0;
}

static int serve_http(struct serve *sv)
{
    struct web_err err = {{0}};
    struct stat st;
    if (stat(sv->cfg.static_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        web_log(WEB_LOG_WARN, "serve: static directory %s not found",
                sv->cfg.static_dir);
    sv->server = web_server_new(&sv->cfg, sv->pool, &err);
    if (sv->server != NULL)
        web_server_set_hub(sv->server, sv->hub);
    if (sv->server == NULL ||
        web_server_add_features(sv->server, &err) != WEB_OK ||
        web_server_start(sv->server, &err) != WEB_OK) {
        fprintf(stderr, "arena: %s\n", err.msg);
        return 1;
    }
    /* CivetWeb sets SIGCHLD to SIG_IGN, which would make the kernel reap
     * the embedded postgres behind our back; we wait for it ourselves. */
    signal(SIGCHLD, SIG_DFL);
    int port = web_server_port(sv->server);
    if (sv->cfg.port_file[0] != '\0' &&
        write_port_file(sv->cfg.port_file, port) != 0) {
        fprintf(stderr, "arena: --port-file %s: %s\n", sv->cfg.port_file,
                strerror(errno));
        return 1;
    }
    web_log(WEB_LOG_INFO, "serve: listening on http://%s:%d/ (%d threads)",
            sv->cfg.listen, port, sv->cfg.threads);
    return 0;
}

static int serve_shutdown(struct serve *sv, int status)
{
    if (sv->server != NULL) {
        pthread_t t;
        if (pthread_create(&t, NULL, watchdog, &sv->cfg.shutdown_timeout_s) ==
            0)
            pthread_detach(t);
    }
    web_server_free(sv->server); /* waits for in-flight requests */
    infer_hub_free(sv->hub);
    db_pool_free(sv->pool);
    struct db_err err;
    if (db_cluster_stop(sv->cluster, &err) != DB_OK) {
        web_log(WEB_LOG_ERROR, "serve: %s", err.msg);
        status = status != 0 ? status : 1;
    }
    web_config_cleanup(&sv->cfg);
    return status;
}

int web_cmd_serve(int argc, char **argv)
{
    struct serve sv = {0};
    web_config_init(&sv.cfg);
    char msg[512];
    int rc = web_config_parse(&sv.cfg, argc, argv, msg, sizeof(msg));
    if (rc != 0) {
        if (rc == 2)
            fprintf(stderr, "arena: %s\n", msg);
        web_config_cleanup(&sv.cfg);
        return rc == 1 ? 0 : 2;
    }
    if (sv.cfg.secret_key_file[0] == '\0') {
        char path[4096];
        snprintf(path, sizeof(path), "%s/secret.key", sv.cfg.data_dir);
        free(sv.cfg.secret_key_file);
        sv.cfg.secret_key_file = strdup(path);
        if (sv.cfg.secret_key_file == NULL)
            abort();
    }
    web_log_init((enum web_log_level)sv.cfg.log_level);

    /* A shell starting us in the background without job control leaves
     * SIGINT ignored; whether an ignored, blocked signal still reaches
     * sigwait() is up to the system (Linux: yes), so reset it. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    rc = serve_db(&sv);
    if (rc == 0)
        rc = serve_models(&sv);
    if (rc == 0)
        rc = serve_http(&sv);
    if (rc != 0)
        return serve_shutdown(&sv, rc);

    int sig = 0;
    sigwait(&stop, &sig);
    web_log(WEB_LOG_INFO, "serve: %s received, shutting down",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    rc = serve_shutdown(&sv, 0);
    if (rc == 0)
        web_log(WEB_LOG_INFO, "serve: stopped");
    return rc;
}
