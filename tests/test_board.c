/*
 * test_board.c: the leaderboard cache against the test PostgreSQL.
 *
 * - what a snapshot holds: category counts equal to SQL counts, overall
 *   ratings equal to the rating module run by hand on the same votes with
 *   the same caps, Elo ranks, matrices, unknown names refused;
 * - the thread: new votes from "another process" (plain SQL) show up
 *   through the poll; a vote committed late (lower id than one already
 *   read) is caught by the poll's window count; arena_board_touch() wakes
 *   the thread at once even with a slow poll; readers never block.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_board_util.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct dbh {
    char conninfo[512], name[64];
    struct db_pool *pool;
    struct db_conn *conn;
};

static int dbh_open(struct dbh *d, int pool_size)
{
    memset(d, 0, sizeof(*d));
    if (tb_fresh_db(d->conninfo, sizeof(d->conninfo), d->name,
                    sizeof(d->name)) != 0)
        return -1;
    d->pool = tb_pool(d->conninfo, pool_size);
    struct db_err err;
    if (d->pool == NULL ||
        db_pool_acquire(d->pool, 5000, &d->conn, &err) != DB_OK ||
        db_migrate(d->conn, NULL, &err) != DB_OK)
        return -1;
    return 0;
}

static void dbh_close(struct dbh *d)
{
    if (d->conn)
        db_pool_release(d->pool, d->conn);
    db_pool_free(d->pool);
    if (d->name[0])
        tb_drop_db(d->name);
}

static long long json_votes(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    long long v = json_integer_value(json_object_get(j, "votes"));
    json_decref(j);
    return v;
}

TEST(snapshot_contents)
{
    struct dbh d;
    if (dbh_open(&d, 1) != 0) {
        dbh_close(&d);
        check_skip("no test PostgreSQL");
    }
    CHECK_EQ(tb_populate(d.conn, 900), 0);
    struct arena_board_opts o;
    arena_board_opts_init(&o);
    o.visitor_cap = 80;
    o.prompt_cap = 15;
    o.bootstrap = 50;
    o.seed = 7;
    o.min_battles = 200;
    struct arena_board_snap *s = NULL;
    struct arena_err err = {{0}};
    CHECK_EQ(arena_board_build_once(d.conn, &o, &s, &err), ARENA_OK);
    if (s == NULL) {
        dbh_close(&d);
        return;
    }
    CHECK_EQ(arena_board_snap_votes(s), 900);
    CHECK(arena_board_snap_time(s) > 1.7e9);
    /* Counts per category, against SQL. */
    static const struct {
        const char *cat, *sql;
    } counts[] = {
        {"overall", "SELECT count(*) FROM votes WHERE counted"},
        {"include_flagged", "SELECT count(*) FROM votes"},
        {"coding", "SELECT count(*) FROM votes v JOIN battles b ON b.id = "
                   "v.battle_id WHERE v.counted AND b.has_code"},
        {"multi_turn", "SELECT count(*) FROM votes WHERE counted AND "
                       "turns > 1"},
        {"long_prompt", "SELECT count(*) FROM votes v JOIN battles b ON "
                        "b.id = v.battle_id WHERE v.counted AND "
                        "b.prompt_len > 1024"},
        {"math", "SELECT count(*) FROM votes v JOIN battles b ON b.id = "
                 "v.battle_id WHERE v.counted AND b.tags ? 'math'"},
        {"no_ties", "SELECT count(*) FROM votes WHERE counted AND winner IN "
                    "('model_a', 'model_b')"},
        {"lang:fr", "SELECT count(*) FROM votes v JOIN battles b ON b.id = "
                    "v.battle_id WHERE v.counted AND b.language = 'fr'"},
    };
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        size_t len = 0;
        const char *t = arena_board_leaderboard(s, counts[i].cat, "bt", &len);
        CHECK(t != NULL && len == strlen(t));
        if (t != NULL)
            CHECK_EQ(json_votes(t), tb_scalar(d.conn, counts[i].sql));
    }
    /* Unknown names. */
    size_t len;
    CHECK(arena_board_leaderboard(s, "nope", "bt", &len) == NULL);
    CHECK(arena_board_leaderboard(s, "overall", "glicko", &len) == NULL);
    CHECK(arena_board_leaderboard(s, "lang:xx", "bt", &len) == NULL);
    CHECK(arena_board_matrices(s, "nope", &len) == NULL);
    CHECK(arena_board_votes(s, "week", &len) == NULL);
    CHECK(arena_board_leaderboard(s, NULL, NULL, &len) != NULL);

    /* The overall BT ratings are the rating module's on the same votes,
     * caps and options. */
    struct arena_battles *set = arena_battles_new();
    CHECK_EQ(arena_board_load_battles(d.conn, 1024, set, &err), ARENA_OK);
    CHECK_EQ(arena_battles_apply_caps(set, 80, 15), ARENA_OK);
    struct arena_rating_filter f = {0, ARENA_TAG_IDENTITY_LEAK, 0, 0};
    struct arena_pairs *pairs = arena_pairs_from_battles(set, &f);
    struct arena_rating_opts ro;
    arena_rating_opts_init(&ro);
    ro.bootstrap = 50;
    ro.seed = 7;
    ro.n_threads = 1;
    ro.min_battles = 200;
    struct arena_ratings *r = NULL;
    CHECK_EQ(arena_ratings_bt(pairs, &ro, &r, &err), ARENA_OK);
    json_t *board =
        json_loads(arena_board_leaderboard(s, "overall", "bt", &len), 0, NULL);
    json_t *models = json_object_get(board, "models");
    CHECK_EQ(json_array_size(models), r->n_ranked);
    for (size_t k = 0; k < r->n_ranked && k < json_array_size(models); k++) {
        json_t *m = json_array_get(models, k);
        uint32_t id = r->order[k];
        CHECK_STREQ(json_string_value(json_object_get(m, "model")),
                    arena_battles_model_name(set, id));
        CHECK_NEAR(json_real_value(json_object_get(m, "rating")),
                   r->models[id].rating, 1e-9);
        CHECK_NEAR(json_real_value(json_object_get(m, "ci_low")),
                   r->models[id].ci_low, 1e-9);
        CHECK_EQ(json_integer_value(json_object_get(m, "rank_ub")),
                 r->models[id].rank_ub);
        CHECK_EQ(json_is_true(json_object_get(m, "provisional")),
                 r->models[id].provisional);
        /* Metadata and speed come along. */
        CHECK_STREQ(json_string_value(json_object_get(m, "license")), "open");
        CHECK(json_real_value(json_object_get(m, "price_in")) > 0);
        CHECK(json_real_value(json_object_get(m, "tokens_per_s")) > 0);
        CHECK(json_real_value(json_object_get(m, "ttft_ms")) >= 10);
    }
    /* The weakest synthetic model comes last. */
    CHECK_STREQ(
        json_string_value(json_object_get(
            json_array_get(models, json_array_size(models) - 1), "model")),
        "m1");
    json_decref(board);
    arena_ratings_free(r);
    arena_pairs_free(pairs);
    arena_battles_free(set);

    /* Elo: no intervals, plain ranks 1..n. */
    json_t *elo =
        json_loads(arena_board_leaderboard(s, "overall", "elo", &len), 0, NULL);
    json_t *em = json_object_get(elo, "models");
    for (size_t k = 0; k < json_array_size(em); k++) {
        CHECK(json_is_null(json_object_get(json_array_get(em, k), "ci_low")));
        CHECK_EQ(json_integer_value(
                     json_object_get(json_array_get(em, k), "rank_ub")),
                 (long long)k + 1);
    }
    json_decref(elo);
    /* Matrices: n x n, predicted(a, b) + predicted(b, a) = 1. */
    json_t *mx = json_loads(arena_board_matrices(s, "overall", &len), 0, NULL);
    size_t n = json_array_size(json_object_get(mx, "models"));
    CHECK_EQ(n, 6);
    json_t *pred = json_object_get(mx, "predicted");
    CHECK_EQ(json_array_size(pred), n);
    CHECK_NEAR(json_real_value(json_array_get(json_array_get(pred, 0), 1)) +
                   json_real_value(json_array_get(json_array_get(pred, 1), 0)),
               1.0, 1e-12);
    CHECK_EQ(json_array_size(json_object_get(mx, "battles")), n);
    json_decref(mx);
    /* Categories list: overall first; vote volume has buckets. */
    json_t *cats = json_loads(arena_board_categories(s, &len), 0, NULL);
    CHECK_STREQ(
        json_string_value(json_object_get(
            json_array_get(json_object_get(cats, "categories"), 0), "name")),
        "overall");
    json_decref(cats);
    arena_board_release(s);
    dbh_close(&d);
}

/* Inserts k new battles with votes, each its own statement (its own
 * transaction). */
static void add_votes(struct db_conn *c, int k)
{
    for (int i = 0; i < k; i++)
        tb_exec(c, "WITH b AS (INSERT INTO battles (mode, model_a, "
                   "model_b, state, turns) SELECT 'anonymous', "
                   "(SELECT id FROM models WHERE name = 'm1'), (SELECT id "
                   "FROM models WHERE name = 'm2'), 'voted', 1 RETURNING id, "
                   "model_a, model_b) INSERT INTO votes (battle_id, model_a, "
                   "model_b, winner, mode) SELECT id, model_a, model_b, "
                   "'model_a', 'anonymous' FROM b");
}

/* Waits until the board's snapshot holds want votes; returns the seconds
 * it took, or -1 after limit seconds. */
static double wait_votes(struct arena_board *b, uint64_t want, double limit)
{
    double t0 = now_s();
    while (now_s() - t0 < limit) {
        struct arena_board_snap *s = arena_board_acquire(b);
        uint64_t v = arena_board_snap_votes(s);
        arena_board_release(s);
        if (v == want)
            return now_s() - t0;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

TEST(thread_follows_votes)
{
    struct dbh d;
    if (dbh_open(&d, 4) != 0) {
        dbh_close(&d);
        check_skip("no test PostgreSQL");
    }
    CHECK_EQ(tb_populate(d.conn, 300), 0);
    struct arena_board_opts o;
    arena_board_opts_init(&o);
    o.db = d.pool;
    o.bootstrap = 20;
    o.poll_ms = 200;
    o.debounce_ms = 50;
    o.reconcile_s = 3600; /* only the poll and the touch here */
    struct arena_board *b = NULL;
    struct arena_err err = {{0}};
    CHECK_EQ(arena_board_new(&o, &b, &err), ARENA_OK);
    if (b == NULL) {
        dbh_close(&d);
        return;
    }
    /* The first snapshot is there at once (empty), the loaded one soon. */
    struct arena_board_snap *s0 = arena_board_acquire(b);
    CHECK(s0 != NULL);
    arena_board_release(s0);
    double t = wait_votes(b, 300, 30);
    CHECK(t >= 0);
    /* Votes written by "another process": the poll finds them. */
    add_votes(d.conn, 5);
    t = wait_votes(b, 305, 10);
    fprintf(stderr, "5 votes from outside seen after %.2f s\n", t);
    CHECK(t >= 0 && t < 5);

    /* A late commit: a vote whose id is below one already read. */
    struct db_conn *late = NULL;
    struct db_err derr;
    CHECK_EQ(db_pool_acquire(d.pool, 5000, &late, &derr), DB_OK);
    CHECK_EQ(tb_exec(late, "BEGIN"), 0);
    add_votes(late, 1);   /* takes an id, not committed */
    add_votes(d.conn, 1); /* a higher id, committed */
    t = wait_votes(b, 306, 10);
    CHECK(t >= 0);
    CHECK_EQ(tb_exec(late, "COMMIT"), 0);
    db_pool_release(d.pool, late);
    t = wait_votes(b, 307, 10);
    fprintf(stderr, "late commit seen after %.2f s\n", t);
    CHECK(t >= 0 && t < 5);

    /* Readers during recomputes: many acquires, none blocks long. */
    add_votes(d.conn, 3);
    double worst = 0;
    double t0 = now_s();
    while (now_s() - t0 < 1.5) {
        double a = now_s();
        struct arena_board_snap *s = arena_board_acquire(b);
        size_t len;
        CHECK(arena_board_leaderboard(s, "overall", "bt", &len) != NULL);
        arena_board_release(s);
        if (now_s() - a > worst)
            worst = now_s() - a;
    }
    fprintf(stderr, "slowest acquire during recomputes: %.3f ms\n",
            worst * 1e3);
    CHECK(worst < 0.25); /* scheduling noise on a loaded machine, not a
                            recompute (which takes longer) */
    CHECK(wait_votes(b, 310, 10) >= 0);
    arena_board_free(b);

    /* The touch: with a one-minute poll, only arena_board_touch() can
     * bring the next votes in quickly. */
    o.poll_ms = 60000;
    b = NULL;
    CHECK_EQ(arena_board_new(&o, &b, &err), ARENA_OK);
    CHECK(wait_votes(b, 310, 30) >= 0);
    add_votes(d.conn, 2);
    arena_board_touch();
    t = wait_votes(b, 312, 10);
    fprintf(stderr, "touched votes seen after %.2f s\n", t);
    CHECK(t >= 0 && t < 3);
    arena_board_free(b);
    dbh_close(&d);
}

static const struct check_test tests[] = {
    TEST_ENTRY(snapshot_contents),
    TEST_ENTRY(thread_follows_votes),
};
CHECK_MAIN(tests)
