/*
 * test_export.c: export and import against the test PostgreSQL.
 *
 * The acceptance check: a database's votes exported as battles JSONL and
 * imported into an empty database give the same leaderboard, every
 * category and both methods (ratings and intervals within 1e-9, the same
 * counts), with per-visitor caps and prompt down-weighting on. Also: the
 * CSV round trip, DPO pairs, the filters, public-format files (both_bad,
 * the winner_model_a columns), and a bad file rolling back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_board_util.h"

struct fbuf {
    FILE *f;
};

static int to_file(void *user, const char *buf, size_t len)
{
    return fwrite(buf, 1, len, ((struct fbuf *)user)->f) != len;
}

static void out_path(char *buf, size_t n, const char *name)
{
    const char *dir = check_env("ARENA_TEST_OUT", "/tmp");
    mkdir(dir, 0755);
    snprintf(buf, n, "%s/export_%d_%s", dir, (int)getpid(), name);
}

/* Exports with o into path; returns the records, or -1. */
static long long export_to(struct db_conn *c, struct arena_export_opts *o,
                           const char *path)
{
    struct fbuf fb = {fopen(path, "w")};
    if (fb.f == NULL)
        return -1;
    uint64_t rows = 0;
    struct arena_err err = {{0}};
    int rc = arena_export_run(c, o, to_file, &fb, &rows, &err);
    fclose(fb.f);
    if (rc != ARENA_OK) {
        fprintf(stderr, "export: %s\n", err.msg);
        return -1;
    }
    return (long long)rows;
}

static long long count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long long n = 0;
    int ch;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

/* A server key for the judge hashes (made once in the output folder). */
static struct arena_keys *test_keys(void)
{
    char path[512];
    out_path(path, sizeof(path), "secret.key");
    struct arena_keys *k = NULL;
    struct arena_err err = {{0}};
    if (arena_keys_open(path, &k, &err) != ARENA_OK)
        fprintf(stderr, "keys: %s\n", err.msg);
    return k;
}

struct dbh {
    char conninfo[512], name[64];
    struct db_pool *pool;
    struct db_conn *conn;
};

static int dbh_open(struct dbh *d)
{
    memset(d, 0, sizeof(*d));
    if (tb_fresh_db(d->conninfo, sizeof(d->conninfo), d->name,
                    sizeof(d->name)) != 0)
        return -1;
    d->pool = tb_pool(d->conninfo, 1);
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

static struct arena_board_snap *board(struct db_conn *c, uint32_t vcap,
                                      uint32_t pcap)
{
    struct arena_board_opts o;
    arena_board_opts_init(&o);
    o.visitor_cap = vcap;
    o.prompt_cap = pcap;
    o.bootstrap = 40;
    o.min_battles = 100;
    struct arena_board_snap *s = NULL;
    struct arena_err err = {{0}};
    if (arena_board_build_once(c, &o, &s, &err) != ARENA_OK) {
        fprintf(stderr, "board: %s\n", err.msg);
        return NULL;
    }
    return s;
}

#define N_BATTLES 1200

TEST(battles_round_trip_same_leaderboard)
{
    struct dbh a, b;
    if (dbh_open(&a) != 0 || dbh_open(&b) != 0) {
        dbh_close(&a);
        check_skip("no test PostgreSQL");
    }
    CHECK_EQ(tb_populate(a.conn, N_BATTLES), 0);
    char path[512];
    struct arena_keys *keys = test_keys();
    CHECK(keys != NULL);
    out_path(path, sizeof(path), "battles.jsonl");
    struct arena_export_opts o = {.format = ARENA_EXPORT_BATTLES, .keys = keys};
    CHECK_EQ(export_to(a.conn, &o, path), N_BATTLES);
    CHECK_EQ(count_lines(path), N_BATTLES);
    uint64_t rows = 0, skipped = 0;
    struct arena_err err = {{0}};
    int rc = arena_import_file(b.conn, path, NULL, &rows, &skipped, &err);
    if (rc != ARENA_OK)
        fprintf(stderr, "import: %s\n", err.msg);
    CHECK_EQ(rc, ARENA_OK);
    CHECK_EQ(rows, N_BATTLES);
    CHECK_EQ(skipped, 0);
    CHECK_EQ(tb_scalar(b.conn, "SELECT count(*) FROM votes"), N_BATTLES);
    /* The conversations came back: same user prompts, same live answers. */
    CHECK_EQ(tb_scalar(a.conn, "SELECT count(*) FROM messages WHERE role "
                               "= 'user'"),
             tb_scalar(b.conn, "SELECT count(*) FROM messages WHERE role "
                               "= 'user'"));
    CHECK_EQ(tb_scalar(b.conn, "SELECT count(*) FROM votes WHERE winner = "
                               "'tie (bothbad)'"),
             tb_scalar(a.conn, "SELECT count(*) FROM votes WHERE winner = "
                               "'tie (bothbad)'"));

    /* Caps on (visitor 1 casts 40%: weights 100/480; the shared prompt
     * weighs 20 of its 400 battles). */
    struct arena_board_snap *sa = board(a.conn, 100, 20);
    struct arena_board_snap *sb = board(b.conn, 100, 20);
    CHECK(sa != NULL && sb != NULL);
    if (sa != NULL && sb != NULL) {
        CHECK_EQ(arena_board_snap_votes(sa), N_BATTLES);
        CHECK_EQ(tb_compare_snaps(sa, sb, 1e-9), 0);
        /* The caps matter: without them the ratings differ. */
        struct arena_board_snap *sn = board(a.conn, 0, 0);
        size_t l1, l2;
        const char *t1 = arena_board_leaderboard(sa, "overall", "bt", &l1);
        const char *t2 = arena_board_leaderboard(sn, "overall", "bt", &l2);
        CHECK(t1 != NULL && t2 != NULL && tb_compare_board(t1, t2, 1e-3) > 0);
        arena_board_release(sn);
    }
    arena_board_release(sa);
    arena_board_release(sb);
    arena_keys_free(keys);
    dbh_close(&a);
    dbh_close(&b);
}

TEST(csv_round_trip_and_dpo)
{
    struct dbh a, b;
    if (dbh_open(&a) != 0 || dbh_open(&b) != 0) {
        dbh_close(&a);
        check_skip("no test PostgreSQL");
    }
    CHECK_EQ(tb_populate(a.conn, 600), 0);
    char path[512];
    struct arena_keys *keys = test_keys();
    out_path(path, sizeof(path), "battles.csv");
    struct arena_export_opts o = {.format = ARENA_EXPORT_CSV, .keys = keys};
    CHECK_EQ(export_to(a.conn, &o, path), 600);
    CHECK_EQ(count_lines(path), 601); /* with the header */
    uint64_t rows = 0, skipped = 0;
    struct arena_err err = {{0}};
    CHECK_EQ(arena_import_file(b.conn, path, "csv", &rows, &skipped, &err),
             ARENA_OK);
    CHECK_EQ(rows, 600);
    /* CSV has no prompts: compare with the prompt weights off. */
    struct arena_board_snap *sa = board(a.conn, 100, 0);
    struct arena_board_snap *sb = board(b.conn, 100, 0);
    CHECK(sa != NULL && sb != NULL);
    if (sa != NULL && sb != NULL)
        CHECK_EQ(tb_compare_snaps(sa, sb, 1e-9), 0);
    arena_board_release(sa);
    arena_board_release(sb);

    /* DPO: one pair per decisive vote; chosen is the winner's answer. */
    out_path(path, sizeof(path), "dpo.jsonl");
    o.format = ARENA_EXPORT_DPO;
    long long decisive = tb_scalar(a.conn, "SELECT count(*) FROM votes WHERE "
                                           "winner IN ('model_a', 'model_b')");
    CHECK_EQ(export_to(a.conn, &o, path), decisive);
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    int checked = 0;
    while (f != NULL && getline(&line, &cap, f) > 0) {
        json_t *r = json_loads(line, 0, NULL);
        CHECK(json_is_array(json_object_get(r, "prompt")));
        json_t *ch = json_object_get(r, "chosen");
        json_t *rj = json_object_get(r, "rejected");
        CHECK(json_array_size(ch) >= 1 && json_array_size(rj) >= 1);
        const char *content = json_string_value(
            json_object_get(json_array_get(ch, 0), "content"));
        /* "answer <side><battle id>/..." : the side that won. */
        char q[256];
        snprintf(q, sizeof(q),
                 "SELECT count(*) FROM votes v JOIN battles b ON b.id = "
                 "v.battle_id WHERE replace(b.public_id::text, '-', '') = "
                 "'%.64s' AND v.winner = 'model_%c'",
                 json_string_value(json_object_get(r, "question_id")),
                 content != NULL ? content[7] : '?');
        if (checked++ < 20)
            CHECK_EQ(tb_scalar(a.conn, q), 1);
        json_decref(r);
    }
    free(line);
    if (f)
        fclose(f);
    CHECK(checked > 0);
    arena_keys_free(keys);
    dbh_close(&a);
    dbh_close(&b);
}

TEST(filters)
{
    struct dbh a;
    if (dbh_open(&a) != 0)
        check_skip("no test PostgreSQL");
    CHECK_EQ(tb_populate(a.conn, 600), 0);
    char path[512];
    out_path(path, sizeof(path), "filtered.jsonl");
    struct arena_export_opts o = {.format = ARENA_EXPORT_BATTLES,
                                  .model = "m2"};
    CHECK_EQ(export_to(a.conn, &o, path),
             tb_scalar(a.conn, "SELECT count(*) FROM votes v JOIN models m "
                               "ON m.id IN (v.model_a, v.model_b) WHERE "
                               "m.name = 'm2'"));
    o.model = NULL;
    o.from = "2026-01-01T10:00:00Z";
    o.to = "2026-01-02";
    CHECK_EQ(export_to(a.conn, &o, path),
             tb_scalar(a.conn, "SELECT count(*) FROM votes WHERE created_at "
                               ">= '2026-01-01T10:00:00Z' AND created_at < "
                               "'2026-01-02'"));
    o.from = o.to = NULL;
    /* A category exports what the board counts in it. */
    struct arena_board_snap *s = board(a.conn, 0, 0);
    CHECK(s != NULL);
    const char *cats[] = {"overall",         "coding",  "multi_turn", "no_ties",
                          "include_flagged", "lang:fr", "math"};
    for (size_t i = 0; s != NULL && i < sizeof(cats) / sizeof(cats[0]); i++) {
        o.category = cats[i];
        size_t len;
        json_t *b = json_loads(arena_board_leaderboard(s, cats[i], "bt", &len),
                               0, NULL);
        CHECK_EQ(export_to(a.conn, &o, path),
                 json_integer_value(json_object_get(b, "votes")));
        json_decref(b);
    }
    arena_board_release(s);
    /* Bad options. */
    struct arena_err err = {{0}};
    o.category = "no-such";
    CHECK_EQ(arena_export_check(&o, &err), ARENA_ERR_INVALID);
    o.category = NULL;
    o.from = "not a time";
    uint64_t rows = 9;
    struct fbuf fb = {fopen(path, "w")};
    CHECK_EQ(arena_export_run(a.conn, &o, to_file, &fb, &rows, &err),
             ARENA_ERR_INVALID);
    fclose(fb.f);
    CHECK_EQ(rows, 0);
    CHECK(strstr(err.msg, "from/to") != NULL);
    dbh_close(&a);
}

TEST(public_files)
{
    struct dbh a;
    if (dbh_open(&a) != 0)
        check_skip("no test PostgreSQL");
    char path[512];
    out_path(path, sizeof(path), "public.jsonl");
    FILE *f = fopen(path, "w");
    fputs("{\"question_id\":\"q1\",\"model_a\":\"gpt-4\",\"model_b\":"
          "\"claude-2\",\"winner\":\"both_bad\",\"judge\":\"arena_user_1\","
          "\"conversation_a\":[{\"role\":\"user\",\"content\":\"hi\"},"
          "{\"role\":\"assistant\",\"content\":\"hello\"}],"
          "\"conversation_b\":[{\"role\":\"user\",\"content\":\"hi\"},"
          "{\"role\":\"assistant\",\"content\":\"hey\"}],\"turn\":1,"
          "\"anony\":true,\"language\":\"English\",\"tstamp\":1682351591.1}\n"
          "\n"
          "{\"model_a\":\"gpt-4\",\"model_b\":\"vicuna-13b\","
          "\"winner\":\"model_b\"}\n"
          "{\"model_a\":\"gpt-4\",\"model_b\":\"gpt-4\",\"winner\":\"tie\"}\n"
          "{\"model_a\":\"gpt-4\",\"model_b\":\"x\",\"winner\":\"maybe\"}\n"
          "{\"model_a\":\"bad name!\",\"model_b\":\"x\",\"winner\":\"tie\"}\n",
          f);
    fclose(f);
    uint64_t rows = 0, skipped = 0;
    struct arena_err err = {{0}};
    CHECK_EQ(arena_import_file(a.conn, path, NULL, &rows, &skipped, &err),
             ARENA_OK);
    CHECK_EQ(rows, 2);
    CHECK_EQ(skipped, 3);
    CHECK_EQ(tb_scalar(a.conn, "SELECT count(*) FROM votes WHERE winner = "
                               "'tie (bothbad)'"),
             1);
    CHECK_EQ(tb_scalar(a.conn, "SELECT count(*) FROM models WHERE NOT "
                               "enabled AND name IN ('gpt-4', 'claude-2', "
                               "'vicuna-13b')"),
             3);
    CHECK_EQ(tb_scalar(a.conn, "SELECT count(*) FROM messages"), 3);
    CHECK_EQ(tb_scalar(a.conn, "SELECT count(*) FROM visitors"), 1);

    /* The arena-human-preference CSV: winner columns, JSON lists. */
    out_path(path, sizeof(path), "public.csv");
    f = fopen(path, "w");
    fputs("id,model_a,model_b,prompt,response_a,response_b,winner_model_a,"
          "winner_model_b,winner_tie\r\n"
          "30192,gpt-4,claude-2,\"[\"\"Is it, \\\"\"quoted\\\"\"?\"\"]\","
          "\"[\"\"Yes\"\"]\",\"[\"\"No\\nreally\"\"]\",1,0,0\r\n"
          "53567,claude-2,vicuna-13b,\"[\"\"a\"\"]\",\"[\"\"b\"\"]\","
          "\"[\"\"c\"\"]\",0,0,1\r\n",
          f);
    fclose(f);
    CHECK_EQ(arena_import_file(a.conn, path, NULL, &rows, &skipped, &err),
             ARENA_OK);
    CHECK_EQ(rows, 2);
    CHECK_EQ(tb_scalar(a.conn, "SELECT count(*) FROM messages WHERE content "
                               "= 'Is it, \"quoted\"?'"),
             1);
    CHECK_EQ(tb_scalar(a.conn, "SELECT count(*) FROM messages WHERE content "
                               "= E'No\\nreally'"),
             1);

    /* A malformed line: nothing of the file stays. */
    out_path(path, sizeof(path), "broken.jsonl");
    f = fopen(path, "w");
    fputs("{\"model_a\":\"m-x\",\"model_b\":\"m-y\",\"winner\":\"tie\"}\n"
          "{\"model_a\": oops}\n",
          f);
    fclose(f);
    long long before = tb_scalar(a.conn, "SELECT count(*) FROM votes");
    CHECK_EQ(arena_import_file(a.conn, path, NULL, &rows, &skipped, &err),
             ARENA_ERR_PARSE);
    CHECK(strstr(err.msg, "line 2") != NULL);
    CHECK_EQ(tb_scalar(a.conn, "SELECT count(*) FROM votes"), before);
    CHECK_EQ(tb_scalar(a.conn, "SELECT count(*) FROM models WHERE name = "
                               "'m-x'"),
             0);
    dbh_close(&a);
}

static const struct check_test tests[] = {
    TEST_ENTRY(battles_round_trip_same_leaderboard),
    TEST_ENTRY(csv_round_trip_and_dpo),
    TEST_ENTRY(filters),
    TEST_ENTRY(public_files),
};
CHECK_MAIN(tests)
