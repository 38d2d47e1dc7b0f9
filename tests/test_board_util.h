/*
 * test_board_util.h: helpers shared by test_board.c and test_export.c
 * (databases of their own on the test cluster, a known data set, and a
 * comparison of two leaderboard snapshots).
 */
#ifndef TEST_BOARD_UTIL_H
#define TEST_BOARD_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "arena.h"
#include "check.h"
#include "db.h"

static int tb_serial;

/* Creates a database (migrated) and fills conninfo. 0, or -1 when there
 * is no test cluster. */
static inline int tb_fresh_db(char *conninfo, size_t n, char *name,
                              size_t name_n)
{
    const char *base = getenv("ARENA_TEST_PGCONN");
    if (base == NULL || base[0] == '\0')
        return -1;
    snprintf(name, name_n, "board_%d_%d", (int)getpid(), ++tb_serial);
    PGconn *pg = PQconnectdb(base);
    if (PQstatus(pg) != CONNECTION_OK) {
        PQfinish(pg);
        return -1;
    }
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    PQfinish(pg);
    snprintf(conninfo, n, "%s dbname=%s", base, name);
    if (!ok)
        return -1;
    PGconn *c = PQconnectdb(conninfo);
    ok = PQstatus(c) == CONNECTION_OK;
    PQfinish(c);
    return ok ? 0 : -1;
}

static inline void tb_drop_db(const char *name)
{
    PGconn *pg = PQconnectdb(getenv("ARENA_TEST_PGCONN"));
    char sql[160];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    PQclear(PQexec(pg, sql));
    PQfinish(pg);
}

static inline struct db_pool *tb_pool(const char *conninfo, int size)
{
    struct db_pool_config pc = {
        .conninfo = conninfo, .size = size, .connect_timeout_s = 5};
    struct db_pool *p = NULL;
    struct db_err err;
    if (db_pool_new(&pc, &p, &err) != DB_OK)
        return NULL;
    return p;
}

/* Runs sql (no parameters); returns 0 or -1 (printing the error). */
static inline int tb_exec(struct db_conn *c, const char *sql)
{
    struct db_err err = {{0}, {0}};
    if (db_exec(c, sql, 0, NULL, NULL, &err) != DB_OK) {
        fprintf(stderr, "SQL failed: %s\n  in: %.200s\n", err.msg, sql);
        return -1;
    }
    return 0;
}

/* One integer from a query; -1 on failure. */
static inline long long tb_scalar(struct db_conn *c, const char *sql)
{
    PGresult *res = NULL;
    struct db_err err = {{0}, {0}};
    if (db_exec(c, sql, 0, NULL, &res, &err) != DB_OK) {
        fprintf(stderr, "SQL failed: %s\n", err.msg);
        return -1;
    }
    long long v = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

/* A known data set: 6 models, 12 visitors (one casting 40% of the votes),
 * n battles with conversations (a third share one prompt text; every
 * fourth has two turns; every seventh was regenerated), tags, languages,
 * 2% flagged, and their votes (model mK beats mJ more often when K > J). */
static inline int tb_populate(struct db_conn *c, int n)
{
    char sql[4096];
    if (tb_exec(c, "INSERT INTO models (name, display_name, organisation, "
                   "licence, backend, path, price_input_per_mtok, "
                   "price_output_per_mtok) SELECT 'm' || g, 'Model ' || g, "
                   "'org' || g % 2, 'open', 'local', '/x', g, 2 * g "
                   "FROM generate_series(1, 6) g") != 0 ||
        tb_exec(c, "INSERT INTO visitors (cookie_hash) SELECT "
                   "decode(md5('visitor' || g), 'hex') "
                   "FROM generate_series(1, 12) g") != 0)
        return -1;
    snprintf(sql, sizeof(sql),
             "INSERT INTO battles (mode, model_a, model_b, visitor_id, "
             "state, excluded_reason, language, has_code, turns, "
             "prompt_len, tags, created_at) "
             "SELECT CASE WHEN g %% 9 = 0 THEN 'named' ELSE 'anonymous' END, "
             "(SELECT id FROM models WHERE name = 'm' || (1 + g %% 6)), "
             "(SELECT id FROM models WHERE name = 'm' || "
             "(1 + (g + 1 + (g / 6) %% 5) %% 6)), "
             "(SELECT min(id) FROM visitors) + CASE WHEN g %% 5 < 2 THEN 0 "
             "ELSE 1 + g %% 11 END, 'voted', "
             "CASE WHEN g %% 50 = 0 THEN 'identity_leak' END, "
             "(ARRAY['en', 'en', 'fr', 'zh'])[1 + g %% 4], g %% 3 = 1, "
             "1 + (g %% 4 = 0)::int, (g * 53) %% 2500, "
             "CASE WHEN g %% 50 = 0 THEN '{\"identity_leak\": true}' "
             "WHEN g %% 10 = 3 THEN '{\"math\": true}' "
             "ELSE '{}' END::jsonb, "
             "timestamptz '2026-01-01 00:00:00+00' + g * interval '7 min' "
             "FROM generate_series(1, %d) g",
             n);
    if (tb_exec(c, sql) != 0)
        return -1;
    /* Prompts: turn 1 for all, turn 2 for two-turn battles. */
    if (tb_exec(c,
                "INSERT INTO messages (battle_id, turn, attempt, side, role, "
                "content) SELECT b.id, t, 0, 'both', 'user', "
                "CASE WHEN t = 1 AND b.id % 3 = 0 THEN 'the same prompt' "
                "ELSE 'prompt ' || b.id || ' turn ' || t || E'\\twith \"tab\"'"
                " END FROM battles b, generate_series(1, 2) t "
                "WHERE t <= b.turns") != 0 ||
        tb_exec(c,
                "INSERT INTO messages (battle_id, turn, attempt, side, role, "
                "model_id, content, tokens_in, tokens_out, ttft_ms, gen_ms, "
                "cost) SELECT b.id, t, a, s, 'assistant', "
                "CASE s WHEN 'a' THEN b.model_a ELSE b.model_b END, "
                "'answer ' || s || b.id || '/' || t || '#' || a || E'\\n', "
                "10, 20 + b.id % 7, 10 + b.id % 30, 100 + b.id % 50, "
                "0.000123 FROM battles b, generate_series(1, 2) t, "
                "(VALUES ('a'), ('b')) x(s), generate_series(0, 1) a "
                "WHERE t <= b.turns AND (a = 0 OR b.id % 7 = 0)") != 0)
        return -1;
    return tb_exec(c, "INSERT INTO votes (battle_id, model_a, model_b, winner, "
                      "mode, counted, visitor_id, turns, ms_to_vote, "
                      "created_at) SELECT b.id, b.model_a, b.model_b, "
                      "CASE WHEN h < 10 THEN 'tie' WHEN h < 14 THEN "
                      "'tie (bothbad)' WHEN h < 57 + 6 * (ma.id - mb.id) "
                      "THEN 'model_a' ELSE 'model_b' END, b.mode, "
                      "b.excluded_reason IS NULL, b.visitor_id, b.turns, "
                      "2000 + b.id % 900, b.created_at + interval '2 min' "
                      "FROM (SELECT *, abs(hashint4(id::int)) % 100 AS h "
                      "FROM battles) b JOIN models ma ON ma.id = b.model_a "
                      "JOIN models mb ON mb.id = b.model_b ORDER BY b.id");
}

/* Compares two leaderboard answers: same category, vote count, models in
 * the same order with the same battles, rank and ratings/intervals within
 * tol. Returns the number of differences (printed). */
static inline int tb_compare_board(const char *ta, const char *tb, double tol)
{
    json_t *a = json_loads(ta, 0, NULL), *b = json_loads(tb, 0, NULL);
    int diffs = 0;
    if (a == NULL || b == NULL) {
        fprintf(stderr, "unparseable answer\n");
        json_decref(a);
        json_decref(b);
        return 1;
    }
    if (json_integer_value(json_object_get(a, "votes")) !=
        json_integer_value(json_object_get(b, "votes"))) {
        fprintf(stderr, "votes differ\n");
        diffs++;
    }
    json_t *ma = json_object_get(a, "models"),
           *mb = json_object_get(b, "models");
    if (json_array_size(ma) != json_array_size(mb)) {
        fprintf(stderr, "model counts differ: %zu, %zu\n", json_array_size(ma),
                json_array_size(mb));
        diffs++;
    }
    for (size_t i = 0; i < json_array_size(ma) && i < json_array_size(mb);
         i++) {
        json_t *x = json_array_get(ma, i), *y = json_array_get(mb, i);
        const char *nx = json_string_value(json_object_get(x, "model"));
        const char *ny = json_string_value(json_object_get(y, "model"));
        if (nx == NULL || ny == NULL || strcmp(nx, ny) != 0) {
            fprintf(stderr, "row %zu: %s vs %s\n", i, nx, ny);
            diffs++;
            continue;
        }
        const char *nums[] = {"rating", "ci_low", "ci_high"};
        for (int k = 0; k < 3; k++) {
            json_t *vx = json_object_get(x, nums[k]);
            json_t *vy = json_object_get(y, nums[k]);
            if (json_is_null(vx) && json_is_null(vy))
                continue;
            double d = fabs(json_number_value(vx) - json_number_value(vy));
            if (!(d <= tol)) {
                fprintf(stderr, "%s %s: %.12f vs %.12f\n", nx, nums[k],
                        json_number_value(vx), json_number_value(vy));
                diffs++;
            }
        }
        const char *ints[] = {"battles", "rank_ub"};
        for (int k = 0; k < 2; k++)
            if (json_integer_value(json_object_get(x, ints[k])) !=
                json_integer_value(json_object_get(y, ints[k]))) {
                fprintf(stderr, "%s %s differ\n", nx, ints[k]);
                diffs++;
            }
        if (json_is_true(json_object_get(x, "provisional")) !=
            json_is_true(json_object_get(y, "provisional")))
            diffs++;
    }
    json_decref(a);
    json_decref(b);
    return diffs;
}

/* Compares every category (both methods) of two snapshots; the category
 * lists must be identical. Returns the differences. */
static inline int tb_compare_snaps(const struct arena_board_snap *a,
                                   const struct arena_board_snap *b, double tol)
{
    size_t la = 0, lb = 0;
    const char *ca = arena_board_categories(a, &la);
    const char *cb = arena_board_categories(b, &lb);
    if (la != lb || strcmp(ca, cb) != 0) {
        fprintf(stderr, "categories differ:\n  %s\n  %s\n", ca, cb);
        return 1;
    }
    json_t *root = json_loads(ca, 0, NULL);
    json_t *cats = json_object_get(root, "categories");
    int diffs = 0;
    size_t i;
    json_t *c;
    json_array_foreach(cats, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *methods[] = {"bt", "elo"};
        for (int m = 0; m < 2; m++) {
            size_t l1, l2;
            const char *t1 = arena_board_leaderboard(a, name, methods[m], &l1);
            const char *t2 = arena_board_leaderboard(b, name, methods[m], &l2);
            if (t1 == NULL || t2 == NULL) {
                diffs++;
                continue;
            }
            int d = tb_compare_board(t1, t2, tol);
            if (d)
                fprintf(stderr, "  in %s/%s\n", name, methods[m]);
            diffs += d;
        }
    }
    json_decref(root);
    return diffs;
}

#endif
