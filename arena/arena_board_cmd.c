/*
 * arena_board_cmd.c: `arena export` and `arena import`, and the database
 * opener they share with `arena ratings` (without --input).
 *
 * The database: --db URL, else DATABASE_URL, else the embedded cluster of
 * --data-dir (default ./var; it cannot be opened while `arena serve` runs
 * on the same directory: use DATABASE_URL then).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "arena_board_internal.h"
#include "db.h"

int arena__cmd_db_open(const char *cmd, const char *url, const char *data_dir,
                       struct arena__cmd_db *d)
{
    memset(d, 0, sizeof(*d));
    struct db_err err = {{0}, {0}};
    if (url == NULL || url[0] == '\0')
        url = getenv("DATABASE_URL");
    if (url == NULL || url[0] == '\0') {
        if (data_dir == NULL)
            data_dir = "./var";
        if (db_cluster_start(data_dir, 60, &d->cluster, &err) != DB_OK) {
            fprintf(stderr, "arena %s: embedded PostgreSQL in %s: %s\n", cmd,
                    data_dir, err.msg);
            return 1;
        }
        url = db_cluster_conninfo(d->cluster);
    }
    struct db_pool_config pc = {
        .conninfo = url, .size = 1, .connect_timeout_s = 10};
    if (db_pool_new(&pc, &d->pool, &err) != DB_OK ||
        db_pool_acquire(d->pool, 10000, &d->conn, &err) != DB_OK) {
        fprintf(stderr, "arena %s: cannot connect to the database: %s\n", cmd,
                err.msg);
        arena__cmd_db_close(d);
        return 1;
    }
    return 0;
}

void arena__cmd_db_close(struct arena__cmd_db *d)
{
    if (d->conn != NULL)
        db_pool_release(d->pool, d->conn);
    db_pool_free(d->pool);
    struct db_err err;
    db_cluster_stop(d->cluster, &err);
    memset(d, 0, sizeof(*d));
}

/* ------------------------------------------------------------------------
 * arena export
 * ---------------------------------------------------------------------- */

static const char export_help[] =
    "usage: arena export [--format battles|dpo|csv] [options]\n"
    "\n"
    "Write the votes with their battles: JSONL in the public Chatbot Arena\n"
    "schema (battles), chosen/rejected pairs for DPO (dpo; ties left out),\n"
    "or CSV. Streams in vote order; memory stays flat.\n"
    "\n"
    "  --format F          battles (default), dpo or csv\n"
    "  --from T, --to T    vote time range [from, to), e.g. 2026-11-01 or\n"
    "                      2026-11-01T12:00:00Z\n"
    "  --category C        a leaderboard category (overall, coding, lang:en,\n"
    "                      ...); default: every vote, flagged ones too\n"
    "  --model M           votes with model M on either side\n"
    "  --out FILE          default: standard output\n"
    "  --db URL            libpq URL (default DATABASE_URL, else the\n"
    "                      embedded cluster of --data-dir)\n"
    "  --data-dir DIR      default ./var\n"
    "  --secret-key-file F key for the judge hash (default DATA_DIR/\n"
    "                      secret.key; without it judges are null)\n"
    "  -h, --help          this help\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 bad usage.\n";

static int write_file(void *user, const char *buf, size_t len)
{
    return fwrite(buf, 1, len, user) == len ? 0 : 1;
}

int arena_cmd_export(int argc, char **argv)
{
    const char *fmt = NULL, *out = NULL, *url = NULL, *data_dir = NULL;
    const char *key_file = NULL;
    struct arena_export_opts o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(export_help, stdout);
            return 0;
        }
        const char **dst = strcmp(a, "--format") == 0            ? &fmt
                           : strcmp(a, "--from") == 0            ? &o.from
                           : strcmp(a, "--to") == 0              ? &o.to
                           : strcmp(a, "--category") == 0        ? &o.category
                           : strcmp(a, "--model") == 0           ? &o.model
                           : strcmp(a, "--out") == 0             ? &out
                           : strcmp(a, "--db") == 0              ? &url
                           : strcmp(a, "--data-dir") == 0        ? &data_dir
                           : strcmp(a, "--secret-key-file") == 0 ? &key_file
                                                                 : NULL;
        if (dst == NULL || i + 1 >= argc) {
            fprintf(
                stderr, "arena export: %s '%s'; see 'arena export --help'\n",
                dst == NULL ? "unknown option" : "a value is needed for", a);
            return 2;
        }
        *dst = argv[++i];
    }
    int f = arena_export_format_parse(fmt);
    if (f < 0) {
        fprintf(stderr, "arena export: --format takes battles, dpo or csv\n");
        return 2;
    }
    o.format = (enum arena_export_format)f;
    struct arena_err err = {{0}};
    if (arena_export_check(&o, &err) != ARENA_OK) {
        fprintf(stderr, "arena export: --%s\n", err.msg);
        return 2;
    }
    char keybuf[4096];
    if (key_file == NULL) {
        snprintf(keybuf, sizeof(keybuf), "%s/secret.key",
                 data_dir ? data_dir : "./var");
        key_file = keybuf;
    }
    struct arena_keys *keys = NULL;
    if (access(key_file, R_OK) == 0 &&
        arena_keys_open(key_file, &keys, &err) != ARENA_OK) {
        fprintf(stderr, "arena export: %s: %s\n", key_file, err.msg);
        return 1;
    }
    o.keys = keys;
    struct arena__cmd_db d;
    if (arena__cmd_db_open("export", url, data_dir, &d) != 0) {
        arena_keys_free(keys);
        return 1;
    }
    FILE *fo = out != NULL ? fopen(out, "w") : stdout;
    int rc = 1;
    if (fo == NULL) {
        fprintf(stderr, "arena export: %s: cannot create\n", out);
    } else {
        uint64_t rows = 0;
        int erc = arena_export_run(d.conn, &o, write_file, fo, &rows, &err);
        if (fo != stdout && fclose(fo) != 0 && erc == ARENA_OK) {
            fprintf(stderr, "arena export: %s: write failed\n", out);
        } else if (erc != ARENA_OK) {
            fprintf(stderr, "arena export: %s\n", err.msg);
            rc = erc == ARENA_ERR_INVALID ? 2 : 1;
        } else {
            if (fo == stdout)
                fflush(stdout);
            fprintf(stderr, "arena export: %llu records%s%s\n",
                    (unsigned long long)rows,
                    keys ? ""
                         : " (no key: judges "
                           "are null)",
                    "");
            rc = 0;
        }
    }
    arena__cmd_db_close(&d);
    arena_keys_free(keys);
    return rc;
}

/* ------------------------------------------------------------------------
 * arena import
 * ---------------------------------------------------------------------- */

static const char import_help[] =
    "usage: arena import FILE [--format jsonl|csv] [--db URL] "
    "[--data-dir DIR]\n"
    "\n"
    "Load a battle file into the database in one transaction: Arena's own\n"
    "export (JSONL or CSV) or public Chatbot Arena files (winner model_a,\n"
    "model_b, tie, tie (bothbad) or both_bad; the arena-human-preference\n"
    "CSV columns winner_model_a/winner_model_b/winner_tie also work).\n"
    "Models are created as needed (disabled, no file); votes keep the\n"
    "file's order. FILE - reads standard input. Runs the migrations first.\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 bad usage.\n";

int arena_cmd_import(int argc, char **argv)
{
    const char *path = NULL, *fmt = NULL, *url = NULL, *data_dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(import_help, stdout);
            return 0;
        }
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            if (path != NULL) {
                fprintf(stderr, "arena import: one FILE only\n");
                return 2;
            }
            path = a;
            continue;
        }
        const char **dst = strcmp(a, "--format") == 0     ? &fmt
                           : strcmp(a, "--db") == 0       ? &url
                           : strcmp(a, "--data-dir") == 0 ? &data_dir
                                                          : NULL;
        if (dst == NULL || i + 1 >= argc) {
            fprintf(
                stderr, "arena import: %s '%s'; see 'arena import --help'\n",
                dst == NULL ? "unknown option" : "a value is needed for", a);
            return 2;
        }
        *dst = argv[++i];
    }
    if (path == NULL) {
        fprintf(stderr, "arena import: FILE is required; see 'arena import "
                        "--help'\n");
        return 2;
    }
    if (fmt != NULL && strcmp(fmt, "csv") != 0 && strcmp(fmt, "jsonl") != 0) {
        fprintf(stderr, "arena import: --format takes jsonl or csv\n");
        return 2;
    }
    if (strcmp(path, "-") != 0 && access(path, R_OK) != 0) {
        fprintf(stderr, "arena import: %s: cannot read\n", path);
        return 1;
    }
    struct arena__cmd_db d;
    if (arena__cmd_db_open("import", url, data_dir, &d) != 0)
        return 1;
    struct db_err derr = {{0}, {0}};
    struct arena_err err = {{0}};
    int rc = 1;
    if (db_migrate(d.conn, NULL, &derr) != DB_OK) {
        fprintf(stderr, "arena import: %s\n", derr.msg);
    } else {
        uint64_t rows = 0, skipped = 0;
        double t0 = arena__now();
        int irc = arena_import_file(d.conn, path, fmt, &rows, &skipped, &err);
        if (irc != ARENA_OK) {
            fprintf(stderr, "arena import: %s: %s\n", path, err.msg);
        } else {
            fprintf(stderr,
                    "arena import: %llu votes imported, %llu records "
                    "skipped, %.2f s\n",
                    (unsigned long long)rows, (unsigned long long)skipped,
                    arena__now() - t0);
            rc = 0;
        }
    }
    arena__cmd_db_close(&d);
    return rc;
}
