/*
 * test_rating.c: the rating module (arena/arena_rating*.c): readers, Elo
 * and Bradley-Terry against llmfao's golden file, bootstrap coverage on
 * synthetic battles from known ratings, anchoring, reproducibility, thread
 * independence, degenerate data, matrices, caps, and the JSON output of
 * `arena ratings`.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "arena.h"
#include "check.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

static char out_dir[512];

static const char *test_dir(void)
{
    if (out_dir[0] == '\0') {
        snprintf(out_dir, sizeof(out_dir), "%s/rating",
                 check_env("ARENA_TEST_OUT", "/tmp/arena-test-out"));
        char parent[512];
        snprintf(parent, sizeof(parent), "%s",
                 check_env("ARENA_TEST_OUT", "/tmp/arena-test-out"));
        mkdir(parent, 0755);
        mkdir(out_dir, 0755);
    }
    return out_dir;
}

/* Writes text to a file in the test directory; returns its path (static
 * buffer, one at a time). */
static const char *write_file(const char *name, const char *text, size_t len)
{
    static char path[600];
    snprintf(path, sizeof(path), "%s/%s", test_dir(), name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return NULL;
    fwrite(text, 1, len, f);
    fclose(f);
    return path;
}

static const char *write_text(const char *name, const char *text)
{
    return write_file(name, text, strlen(text));
}

static const char *llmfao_path(void)
{
    static char p[600];
    snprintf(p, sizeof(p), "%s/data/llmfao.csv",
             check_env("ARENA_SHARED", "../shared"));
    return p;
}

/* Golden scores for one algorithm: name -> score, looked up linearly. */
struct golden {
    char name[64][80];
    double score[64];
    int n;
};

static int golden_load(struct golden *g, const char *algorithm)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/data/llmfao-golden.csv",
             check_env("ARENA_SHARED", "../shared"));
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[512];
    g->n = 0;
    while (fgets(line, sizeof(line), f) != NULL && g->n < 64) {
        /* algorithm,item,score; items here have no commas or quotes. */
        char *c1 = strchr(line, ','), *c2 = c1 ? strrchr(line, ',') : NULL;
        if (c1 == NULL || c2 == c1)
            continue;
        *c1 = '\0';
        *c2 = '\0';
        if (strcmp(line, algorithm) != 0)
            continue;
        snprintf(g->name[g->n], sizeof(g->name[0]), "%s", c1 + 1);
        g->score[g->n++] = strtod(c2 + 1, NULL);
    }
    fclose(f);
    return 0;
}

/* xorshift64* for the generators. */
static uint64_t rng_state = 88172645463325252ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static double rnd01(void)
{
    return (double)(rnd() >> 11) * 0x1.0p-53;
}

/* Synthetic battles from known ratings (Elo scale, mean 1000): pairs
 * uniform, outcome from Bradley-Terry, with a share of ties taken
 * symmetrically so that the expected score is still the BT probability. */
static struct arena_battles *synth(int models, int battles,
                                   const double *rating)
{
    struct arena_battles *set = arena_battles_new();
    for (int i = 0; i < models; i++) {
        char name[32];
        snprintf(name, sizeof(name), "m%02d", i);
        arena_battles_intern(set, name, strlen(name));
    }
    for (int k = 0; k < battles; k++) {
        uint32_t a = (uint32_t)(rnd() % (uint64_t)models);
        uint32_t b = (uint32_t)(rnd() % (uint64_t)(models - 1));
        if (b >= a)
            b++;
        double p = 1 / (1 + pow(10, (rating[b] - rating[a]) / 400));
        double tie = 0.3 * (p < 0.5 ? p : 1 - p);
        double u = rnd01();
        struct arena_battle x = {.model_a = a, .model_b = b, .weight = 1};
        x.winner = u < p - tie / 2   ? ARENA_WINNER_A
                   : u < p + tie / 2 ? ARENA_WINNER_TIE
                                     : ARENA_WINNER_B;
        arena_battles_add(set, &x);
    }
    return set;
}

/* ------------------------------------------------------------------------
 * Golden values (llmfao)
 * ---------------------------------------------------------------------- */

TEST(golden_elo)
{
    struct golden g;
    if (golden_load(&g, "elo") != 0 || g.n == 0)
        check_skip("no llmfao-golden.csv under ARENA_SHARED");
    struct arena_battles *set = arena_battles_new();
    struct arena_err err = {{0}};
    CHECK_EQ(arena_battles_read_csv(set, llmfao_path(), 1, &err), ARENA_OK);
    CHECK_EQ(arena_battles_count(set), 8931);
    CHECK_EQ(arena_battles_n_models(set), 59);
    struct arena_rating_opts o;
    arena_rating_opts_init(&o);
    struct arena_ratings *r = NULL;
    CHECK_EQ(arena_ratings_elo(set, NULL, &o, &r, &err), ARENA_OK);
    CHECK_EQ(g.n, 59);
    double worst = 0;
    for (int i = 0; i < g.n; i++) {
        int32_t id = arena_battles_find(set, g.name[i]);
        CHECK(id >= 0);
        double d = fabs(r->models[id].rating - g.score[i]);
        worst = d > worst ? d : worst;
    }
    fprintf(stderr, "  elo: worst difference %.3g points\n", worst);
    CHECK(worst < 0.01);
    arena_ratings_free(r);
    arena_battles_free(set);
}

TEST(golden_bt)
{
    struct golden g;
    if (golden_load(&g, "bradley_terry") != 0 || g.n == 0)
        check_skip("no llmfao-golden.csv under ARENA_SHARED");
    struct arena_battles *set = arena_battles_new();
    struct arena_err err = {{0}};
    CHECK_EQ(arena_battles_read_csv(set, llmfao_path(), 2, &err), ARENA_OK);
    struct arena_pairs *pairs = arena_pairs_from_battles(set, NULL);
    struct arena_rating_opts o;
    arena_rating_opts_init(&o);
    o.bootstrap = 0;
    struct arena_ratings *r = NULL;
    CHECK_EQ(arena_ratings_bt(pairs, &o, &r, &err), ARENA_OK);
    CHECK_EQ(r->prior_used, 0);
    /* Strengths exp(beta) normalised to sum 1, as in the golden file. */
    double sum = 0;
    for (size_t i = 0; i < r->n_models; i++)
        sum += exp(r->beta[i]);
    double worst = 0;
    for (int i = 0; i < g.n; i++) {
        int32_t id = arena_battles_find(set, g.name[i]);
        CHECK(id >= 0);
        double rel = fabs(exp(r->beta[id]) / sum - g.score[i]) / g.score[i];
        worst = rel > worst ? rel : worst;
        /* The rating is the same number on the Elo scale. */
        CHECK_NEAR(r->models[id].rating, 1000 + 400 * r->beta[id] / log(10),
                   1e-9);
    }
    fprintf(stderr, "  bt: worst relative difference %.3g (%d Newton steps)\n",
            worst, r->iterations);
    CHECK(worst < 1e-4);
    arena_ratings_free(r);
    arena_pairs_free(pairs);
    arena_battles_free(set);
}

/* ------------------------------------------------------------------------
 * CSV and JSONL readers
 * ---------------------------------------------------------------------- */

TEST(csv_quoted_crlf)
{
    const char *text =
        "id,model_a,\"model_b\",notes,winner,weight\r\n"
        "1,\"gpt, the \"\"big\"\" one\",small,\"a\r\nmulti-line, note\","
        "model_a,2.5\r\n"
        "\r\n"
        "2,small,\"gpt, the \"\"big\"\" one\",,tie (bothbad),\r\n"
        "3,small,third,\"\",both_bad,1\r\n"
        "4,third,small,x,\"tie\",0.5\r\n"
        "5,third,\"gpt, the \"\"big\"\" one\",x,model_b"; /* no newline */
    const char *path = write_text("quoted.csv", text);
    struct arena_battles *set = arena_battles_new();
    struct arena_err err = {{0}};
    int rc = arena_battles_read_csv(set, path, 1, &err);
    if (rc != ARENA_OK)
        fprintf(stderr, "  %s\n", err.msg);
    CHECK_EQ(rc, ARENA_OK);
    CHECK_EQ(arena_battles_count(set), 5);
    CHECK_EQ(arena_battles_n_models(set), 3);
    CHECK_STREQ(arena_battles_model_name(set, 0), "gpt, the \"big\" one");
    CHECK_STREQ(arena_battles_model_name(set, 1), "small");
    CHECK_STREQ(arena_battles_model_name(set, 2), "third");
    const struct arena_battle *b = arena_battles_items(set);
    CHECK_EQ(b[0].winner, ARENA_WINNER_A);
    CHECK_NEAR(b[0].weight, 2.5, 1e-6);
    CHECK_EQ(b[1].winner, ARENA_WINNER_BOTHBAD);
    CHECK_NEAR(b[1].weight, 1.0, 0); /* empty weight: 1 */
    CHECK_EQ(b[2].winner, ARENA_WINNER_BOTHBAD);
    CHECK_EQ(b[3].winner, ARENA_WINNER_TIE);
    CHECK_NEAR(b[3].weight, 0.5, 1e-6);
    CHECK_EQ(b[4].model_a, 2);
    CHECK_EQ(b[4].model_b, 0);
    CHECK_EQ(b[4].winner, ARENA_WINNER_B);
    arena_battles_free(set);
}

TEST(csv_left_right)
{
    /* llmfao's layout: model_x/model_y are ids; left/right the names
     * (here left comes first, after a byte order mark). */
    const char *path = write_text("lr.csv", "\xef\xbb\xbf"
                                            "left,model_x,model_y,winner,"
                                            "right\n"
                                            "A,7,9,left,B\n"
                                            "B,9,7,right,A\n"
                                            "B,9,7,tie,A\n");
    struct arena_battles *set = arena_battles_new();
    struct arena_err err = {{0}};
    CHECK_EQ(arena_battles_read_csv(set, path, 1, &err), ARENA_OK);
    CHECK_EQ(arena_battles_count(set), 3);
    const struct arena_battle *b = arena_battles_items(set);
    CHECK_STREQ(arena_battles_model_name(set, b[0].model_a), "A");
    CHECK_EQ(b[0].winner, ARENA_WINNER_A);
    CHECK_STREQ(arena_battles_model_name(set, b[1].model_a), "B");
    CHECK_EQ(b[1].winner, ARENA_WINNER_B);
    CHECK_EQ(b[2].winner, ARENA_WINNER_TIE);
    arena_battles_free(set);
}

/* Model names of every length from 1 to 40, some sharing their first 16
 * bytes, the last one ending the file: interned once each, read back
 * intact (the reader compares short names as two words). */
TEST(csv_name_lengths)
{
    char text[8192], names[41][48];
    size_t len = (size_t)snprintf(text, sizeof(text), "winner,model_a,model_b");
    for (int n = 1; n <= 40; n++) {
        for (int i = 0; i < n; i++)
            names[n][i] = (char)('a' + (i < 16 ? 0 : n % 26));
        names[n][n] = '\0';
        if (n > 1)
            names[n][n - 1] = (char)('A' + n % 26);
    }
    for (int rep = 0; rep < 2; rep++)
        for (int n = 1; n <= 40; n++)
            len +=
                (size_t)snprintf(text + len, sizeof(text) - len, "\ntie,%s,%s",
                                 names[n], names[n == 40 ? 1 : n + 1]);
    const char *path = write_file("names.csv", text, len);
    struct arena_battles *set = arena_battles_new();
    struct arena_err err = {{0}};
    CHECK_EQ(arena_battles_read_csv(set, path, 1, &err), ARENA_OK);
    CHECK_EQ(arena_battles_count(set), 80);
    CHECK_EQ(arena_battles_n_models(set), 40);
    for (int n = 1; n <= 40; n++) {
        int32_t id = arena_battles_find(set, names[n]);
        CHECK(id >= 0);
        CHECK_STREQ(arena_battles_model_name(set, (uint32_t)id), names[n]);
        CHECK_EQ(strlen(arena_battles_model_name(set, (uint32_t)id)),
                 (size_t)n);
    }
    const struct arena_battle *b = arena_battles_items(set);
    for (int k = 0; k < 40; k++) {
        CHECK_EQ(b[k].model_a, b[k + 40].model_a);
        CHECK_EQ(b[k].model_b, b[k + 40].model_b);
    }
    arena_battles_free(set);
}

/* Reads text as CSV and expects a parse error whose message contains
 * want. */
static int csv_error_is(const char *text, const char *want)
{
    const char *path = write_text("bad.csv", text);
    struct arena_battles *set = arena_battles_new();
    struct arena_err err = {{0}};
    int rc = arena_battles_read_csv(set, path, 1, &err);
    size_t n = arena_battles_count(set);
    arena_battles_free(set);
    if (rc != ARENA_ERR_PARSE || n != 0 || strstr(err.msg, want) == NULL) {
        fprintf(stderr, "  rc %d, %zu battles, message '%s', want '%s'\n", rc,
                n, err.msg, want);
        return 0;
    }
    return 1;
}

TEST(csv_errors)
{
    CHECK(csv_error_is("model_a,model_b,winner\nx,y,model_a\nx,y\n",
                       "line 3: expected at least 3 fields, found 2"));
    CHECK(csv_error_is("model_a,model_b,winner\r\nx,y,model_a\r\n"
                       "\"x\ny\",z,tie\r\nx,y,draw\r\n",
                       "line 5: unknown winner 'draw'"));
    CHECK(csv_error_is("model_a,model_b,result\nx,y,model_a\n",
                       "line 1: no winner column"));
    CHECK(csv_error_is("a,b,winner\nx,y,model_a\n",
                       "line 1: no model_a and model_b"));
    CHECK(csv_error_is("model_a,model_b,winner\nx,\"y,model_a\n",
                       "line 2: unterminated quoted field"));
    CHECK(csv_error_is("model_a,model_b,winner\nx,\"y\"z,model_a\n",
                       "line 2: unexpected character after a closing quote"));
    CHECK(csv_error_is("model_a,model_b,winner\nx,x,model_a\n",
                       "line 2: model_a and model_b are the same"));
    CHECK(csv_error_is("model_a,model_b,winner\n,x,model_a\n",
                       "line 2: empty model name"));
    CHECK(csv_error_is("model_a,model_b,winner,weight\nx,y,tie,-1\n",
                       "line 2: weight must be >= 0"));
    CHECK(csv_error_is("", "empty file"));
    struct arena_battles *set = arena_battles_new();
    struct arena_err err = {{0}};
    CHECK_EQ(arena_battles_read_csv(set, "/nonexistent/x.csv", 1, &err),
             ARENA_ERR_IO);
    CHECK(strstr(err.msg, "No such file") != NULL);
    arena_battles_free(set);
}

/* A file of a few MiB with quoted multi-line fields everywhere, so the
 * thread split falls inside quotes; every thread count must give the same
 * records, and an error far down must name the same line. */
TEST(csv_threads_identical)
{
    size_t cap = 6u << 20, len = 0;
    char *buf = malloc(cap);
    len += (size_t)snprintf(buf, cap, "note,model_a,model_b,winner\n");
    size_t lines = 1;
    for (int k = 0; len + 200 < cap - 4096; k++) {
        int a = (int)(rnd() % 40), b = (a + 1 + (int)(rnd() % 39)) % 40;
        static const char *w[] = {"model_a", "model_b", "tie", "tie (bothbad)"};
        len += (size_t)snprintf(buf + len, cap - len,
                                "\"line one, \"\"quoted\"\"\n%d\n\",m%d,"
                                "\"m%d\",%s\n",
                                k, a, b, w[rnd() % 4]);
        lines += 3;
    }
    const char *path = write_file("big.csv", buf, len);
    struct arena_battles *ref = arena_battles_new();
    struct arena_err err = {{0}};
    CHECK_EQ(arena_battles_read_csv(ref, path, 1, &err), ARENA_OK);
    CHECK_EQ(arena_battles_count(ref), (lines - 1) / 3);
    for (int t = 2; t <= 5; t++) {
        struct arena_battles *set = arena_battles_new();
        CHECK_EQ(arena_battles_read_csv(set, path, t, &err), ARENA_OK);
        CHECK_EQ(arena_battles_count(set), arena_battles_count(ref));
        CHECK_EQ(arena_battles_n_models(set), arena_battles_n_models(ref));
        for (size_t i = 0; i < arena_battles_n_models(ref); i++)
            CHECK_STREQ(arena_battles_model_name(set, (uint32_t)i),
                        arena_battles_model_name(ref, (uint32_t)i));
        CHECK(memcmp(arena_battles_items(set), arena_battles_items(ref),
                     arena_battles_count(ref) * sizeof(struct arena_battle)) ==
              0);
        arena_battles_free(set);
    }
    arena_battles_free(ref);
    /* An unknown winner near the end: the same line from every split. */
    len += (size_t)snprintf(buf + len, cap - len, "\"x\n\",m1,m2,nobody\n");
    path = write_file("big-bad.csv", buf, len);
    /* The record starts on line lines + 1; its winner is on the next. */
    char want[64];
    snprintf(want, sizeof(want), "line %zu: unknown winner 'nobody'",
             lines + 2);
    for (int t = 1; t <= 4; t++) {
        struct arena_battles *set = arena_battles_new();
        CHECK_EQ(arena_battles_read_csv(set, path, t, &err), ARENA_ERR_PARSE);
        if (strstr(err.msg, want) == NULL)
            fprintf(stderr, "  %d threads: '%s', want '%s'\n", t, err.msg,
                    want);
        CHECK(strstr(err.msg, want) != NULL);
        CHECK_EQ(arena_battles_count(set), 0);
        arena_battles_free(set);
    }
    free(buf);
}

TEST(jsonl_reader)
{
    const char *text =
        "{\"question_id\": \"q1\", \"model_a\": \"alpha\", \"model_b\": "
        "\"be\\u0074a\", \"winner\": \"model_a\", \"conversation_a\": "
        "[{\"role\": \"user\", \"content\": \"hi, \\\"there\\\"\"}], "
        "\"language\": \"en\", \"tags\": [\"coding\", \"multi_turn\"], "
        "\"weight\": 0.25, \"anony\": true, \"tstamp\": 1.7e9}\n"
        "\n"
        "{\"model_a\":\"beta\",\"model_b\":\"\\u00e9t\\u00e9 \\ud83d\\ude00\","
        "\"winner\":\"tie (bothbad)\",\"language\":\"fr\",\"weight\":null}\n";
    const char *path = write_text("battles.jsonl", text);
    struct arena_battles *set = arena_battles_new();
    struct arena_err err = {{0}};
    int rc = arena_battles_read_jsonl(set, path, &err);
    if (rc != ARENA_OK)
        fprintf(stderr, "  %s\n", err.msg);
    CHECK_EQ(rc, ARENA_OK);
    CHECK_EQ(arena_battles_count(set), 2);
    CHECK_STREQ(arena_battles_model_name(set, 1), "beta");
    CHECK_STREQ(arena_battles_model_name(set, 2),
                "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80");
    const struct arena_battle *b = arena_battles_items(set);
    CHECK_EQ(b[0].tags, ARENA_TAG_CODING | ARENA_TAG_MULTI_TURN);
    CHECK_NEAR(b[0].weight, 0.25, 1e-7);
    CHECK_EQ(b[0].lang, arena_battles_find_lang(set, "en"));
    CHECK_EQ(b[1].winner, ARENA_WINNER_BOTHBAD);
    CHECK_EQ(b[1].lang, arena_battles_find_lang(set, "fr"));
    CHECK_NEAR(b[1].weight, 1.0, 0);
    arena_battles_free(set);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"{\"model_a\":\"x\",\"model_b\":\"y\"}\n",
         "line 1: missing \"winner\""},
        {"{\"model_a\":\"x\",\"model_b\":\"y\",\"winner\":\"model_a\"}\n"
         "{\"model_a\":\"x\",\"model_b\":\"y\",\"winner\":\"left-ish\"}\n",
         "line 2: unknown winner 'left-ish'"},
        {"{\"model_a\":\"x\",\"model_b\":\"y\",\"winner\":\"model_a\"\n",
         "line 1: unterminated object"},
        {"[1,2]\n", "line 1: expected a JSON object"},
        {"{\"model_a\":1,\"model_b\":\"y\",\"winner\":\"tie\"}\n",
         "\"model_a\" must be a string"},
        {"{\"model_a\":\"x\\q\",\"model_b\":\"y\",\"winner\":\"tie\"}\n",
         "bad escape"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        path = write_text("bad.jsonl", bad[i].text);
        set = arena_battles_new();
        CHECK_EQ(arena_battles_read_jsonl(set, path, &err), ARENA_ERR_PARSE);
        if (strstr(err.msg, bad[i].want) == NULL)
            fprintf(stderr, "  '%s', want '%s'\n", err.msg, bad[i].want);
        CHECK(strstr(err.msg, bad[i].want) != NULL);
        arena_battles_free(set);
    }
}

/* Untrusted input: mutated CSV and JSONL files (bytes replaced by quotes,
 * commas, newlines, backslashes, NULs or anything) must give ARENA_OK or
 * ARENA_ERR_PARSE with a message, never a crash (this runs under ASan). */
TEST(readers_mutated_input)
{
    static const char csv[] = "model_a,model_b,winner,weight\n"
                              "\"a, \"\"x\"\"\",b,model_a,1\r\n"
                              "b,c,tie (bothbad),0.5\n"
                              "c,a,both_bad,\n";
    static const char jsonl[] =
        "{\"model_a\":\"a\\u00e9\",\"model_b\":\"b\",\"winner\":\"tie\","
        "\"tags\":[\"coding\"],\"x\":[{\"y\":[1,2,{\"z\":null}]}]}\n"
        "{\"model_a\":\"b\",\"model_b\":\"c\",\"winner\":\"model_b\","
        "\"weight\":2}\n";
    static const char noise[] = "\",\n\r\\{}[]:u0\x00\xff";
    rng_state = 2024;
    int ok = 0, bad = 0;
    for (int round = 0; round < 1000; round++) {
        int is_csv = round % 2 == 0;
        char buf[512];
        size_t len = is_csv ? sizeof(csv) - 1 : sizeof(jsonl) - 1;
        memcpy(buf, is_csv ? csv : jsonl, len);
        int edits = 1 + (int)(rnd() % 2);
        for (int e = 0; e < edits; e++) {
            size_t at = rnd() % len;
            buf[at] = rnd() % 4 == 0 ? (char)(rnd() & 0xff)
                                     : noise[rnd() % (sizeof(noise) - 1)];
        }
        if (rnd() % 3 == 0)
            len -= rnd() % len; /* cut short */
        const char *path =
            write_file(is_csv ? "mut.csv" : "mut.jsonl", buf, len);
        struct arena_battles *set = arena_battles_new();
        struct arena_err err = {{0}};
        int rc = is_csv ? arena_battles_read_csv(set, path, 1 + round % 3, &err)
                        : arena_battles_read_jsonl(set, path, &err);
        CHECK(rc == ARENA_OK || rc == ARENA_ERR_PARSE);
        if (rc != ARENA_OK)
            CHECK(err.msg[0] != '\0');
        ok += rc == ARENA_OK;
        bad += rc != ARENA_OK;
        arena_battles_free(set);
    }
    fprintf(stderr, "  %d read, %d refused\n", ok, bad);
    CHECK(ok > 20 && bad > 20);
}

/* ------------------------------------------------------------------------
 * Bradley-Terry on synthetic data
 * ---------------------------------------------------------------------- */

/* Over many data sets drawn from known ratings, the 95% intervals must
 * contain the true rating (in the same gauge: mean 1000) about 95% of the
 * time. 30 sets x 16 models = 480 intervals; a correct implementation sits
 * near 0.95 with a standard error of about 0.01 (more, as intervals of one
 * set are correlated), so the band is [0.90, 0.985]. */
TEST(bt_coverage)
{
    enum { SETS = 30, M = 16, BATTLES = 4000 };
    int inside = 0, total = 0;
    double worst_z = 0;
    rng_state = 12345;
    for (int s = 0; s < SETS; s++) {
        double rating[M], mean = 0;
        for (int i = 0; i < M; i++) {
            rating[i] = 700 + 600 * rnd01();
            mean += rating[i] / M;
        }
        for (int i = 0; i < M; i++)
            rating[i] += 1000 - mean;
        struct arena_battles *set = synth(M, BATTLES, rating);
        struct arena_pairs *pairs = arena_pairs_from_battles(set, NULL);
        struct arena_rating_opts o;
        arena_rating_opts_init(&o);
        o.bootstrap = 400;
        o.seed = (uint64_t)s + 1;
        struct arena_ratings *r = NULL;
        struct arena_err err;
        CHECK_EQ(arena_ratings_bt(pairs, &o, &r, &err), ARENA_OK);
        CHECK_EQ(r->rounds_fallback, 0);
        for (int i = 0; i < M; i++) {
            const struct arena_rating *x = &r->models[i];
            CHECK(x->ci_low <= x->rating && x->rating <= x->ci_high);
            inside += x->ci_low <= rating[i] && rating[i] <= x->ci_high;
            total++;
            /* Half width ~ 1.96 sd: the error in sds. */
            double z =
                fabs(x->rating - rating[i]) / ((x->ci_high - x->ci_low) / 3.92);
            worst_z = z > worst_z ? z : worst_z;
        }
        arena_ratings_free(r);
        arena_pairs_free(pairs);
        arena_battles_free(set);
    }
    double cov = (double)inside / total;
    fprintf(stderr, "  coverage %.3f over %d intervals, worst error %.2f sd\n",
            cov, total, worst_z);
    CHECK(cov >= 0.90 && cov <= 0.985);
    CHECK(worst_z < 4.5);
}

/* Same seed: the same intervals whatever the thread count; another seed:
 * different intervals. */
TEST(bt_reproducible)
{
    double rating[12];
    rng_state = 777;
    for (int i = 0; i < 12; i++)
        rating[i] = 800 + 40 * i;
    struct arena_battles *set = synth(12, 3000, rating);
    struct arena_pairs *pairs = arena_pairs_from_battles(set, NULL);
    struct arena_rating_opts o;
    arena_rating_opts_init(&o);
    o.bootstrap = 300;
    o.seed = 42;
    struct arena_ratings *ref = NULL, *r = NULL;
    struct arena_err err;
    o.n_threads = 1;
    CHECK_EQ(arena_ratings_bt(pairs, &o, &ref, &err), ARENA_OK);
    for (int t = 2; t <= 5; t++) {
        o.n_threads = t;
        CHECK_EQ(arena_ratings_bt(pairs, &o, &r, &err), ARENA_OK);
        for (int i = 0; i < 12; i++) {
            CHECK(r->models[i].ci_low == ref->models[i].ci_low);
            CHECK(r->models[i].ci_high == ref->models[i].ci_high);
            CHECK(r->models[i].rank_ub == ref->models[i].rank_ub);
        }
        arena_ratings_free(r);
        r = NULL;
    }
    o.seed = 43;
    CHECK_EQ(arena_ratings_bt(pairs, &o, &r, &err), ARENA_OK);
    int differ = 0;
    for (int i = 0; i < 12; i++) {
        differ += r->models[i].ci_low != ref->models[i].ci_low;
        CHECK(r->models[i].rating == ref->models[i].rating);
    }
    CHECK(differ > 0);
    arena_ratings_free(r);
    arena_ratings_free(ref);
    arena_pairs_free(pairs);
    arena_battles_free(set);
}

/* Anchoring shifts every rating by the same amount, fixes the anchor, and
 * measures every interval relative to it (the anchor's own is a point). */
TEST(bt_anchor)
{
    double rating[8];
    rng_state = 99;
    for (int i = 0; i < 8; i++)
        rating[i] = 900 + 30 * i;
    struct arena_battles *set = synth(8, 2000, rating);
    struct arena_pairs *pairs = arena_pairs_from_battles(set, NULL);
    struct arena_rating_opts o;
    arena_rating_opts_init(&o);
    o.bootstrap = 200;
    struct arena_ratings *plain = NULL, *anch = NULL;
    struct arena_err err;
    CHECK_EQ(arena_ratings_bt(pairs, &o, &plain, &err), ARENA_OK);
    o.anchor = 3;
    o.anchor_rating = 1250;
    CHECK_EQ(arena_ratings_bt(pairs, &o, &anch, &err), ARENA_OK);
    CHECK_NEAR(anch->models[3].rating, 1250, 1e-9);
    CHECK_NEAR(anch->models[3].ci_low, 1250, 1e-9);
    CHECK_NEAR(anch->models[3].ci_high, 1250, 1e-9);
    double shift = 1250 - plain->models[3].rating;
    for (int i = 0; i < 8; i++) {
        CHECK_NEAR(anch->models[i].rating, plain->models[i].rating + shift,
                   1e-6);
        CHECK(anch->models[i].ci_low <= anch->models[i].rating);
        CHECK(anch->models[i].ci_high >= anch->models[i].rating);
    }
    arena_ratings_free(anch);
    anch = NULL;
    /* Elo too; and an anchor without battles is refused. */
    CHECK_EQ(arena_ratings_elo(set, NULL, &o, &anch, &err), ARENA_OK);
    CHECK_NEAR(anch->models[3].rating, 1250, 1e-9);
    arena_ratings_free(anch);
    arena_battles_intern(set, "idle", 4);
    arena_pairs_free(pairs);
    pairs = arena_pairs_from_battles(set, NULL);
    o.anchor = arena_battles_find(set, "idle");
    anch = NULL;
    CHECK_EQ(arena_ratings_bt(pairs, &o, &anch, &err), ARENA_ERR_INVALID);
    CHECK(strstr(err.msg, "no battles") != NULL);
    CHECK(anch == NULL);
    arena_ratings_free(plain);
    arena_pairs_free(pairs);
    arena_battles_free(set);
}

/* No finite MLE: a model that never lost, a model that never won, and a
 * group that never met the others. The prior keeps everything finite, the
 * undefeated model on top, and a model without battles out. */
TEST(bt_degenerate)
{
    struct arena_pairs *p = arena_pairs_new(6);
    /* 0 beats 1 and 2 always; 1 and 2 split; 3 always loses to 1. */
    arena_pairs_add(p, 0, 1, ARENA_WINNER_A, 10, 10);
    arena_pairs_add(p, 2, 0, ARENA_WINNER_B, 10, 10);
    arena_pairs_add(p, 1, 2, ARENA_WINNER_A, 5, 5);
    arena_pairs_add(p, 1, 2, ARENA_WINNER_B, 5, 5);
    arena_pairs_add(p, 1, 3, ARENA_WINNER_A, 7, 7);
    /* 4 only ever tied 1 (a tie is half a win both ways): connected. */
    arena_pairs_add(p, 4, 1, ARENA_WINNER_TIE, 3, 3);
    /* 5: no battles. */
    CHECK_EQ(arena_pairs_add(p, 5, 5, ARENA_WINNER_A, 1, 1), ARENA_ERR_INVALID);
    struct arena_rating_opts o;
    arena_rating_opts_init(&o);
    o.bootstrap = 100;
    o.min_battles = 10;
    struct arena_ratings *r = NULL;
    struct arena_err err;
    CHECK_EQ(arena_ratings_bt(p, &o, &r, &err), ARENA_OK);
    CHECK_EQ(r->prior_used, 1);
    CHECK_EQ(r->n_ranked, 5);
    CHECK_EQ(r->order[0], 0);
    CHECK_EQ(r->order[4], 3);
    CHECK(isnan(r->models[5].rating));
    CHECK_EQ(r->models[5].battles, 0);
    for (int i = 0; i < 5; i++) {
        CHECK(isfinite(r->models[i].rating));
        CHECK(isfinite(r->models[i].ci_low) && isfinite(r->models[i].ci_high));
    }
    CHECK_EQ(r->models[4].provisional, 1); /* 3 battles < 10 */
    CHECK_EQ(r->models[1].provisional, 0);
    CHECK_NEAR(r->models[1].rating, r->models[2].rating, 60);
    arena_ratings_free(r);
    r = NULL;
    o.prior = 0;
    CHECK_EQ(arena_ratings_bt(p, &o, &r, &err), ARENA_ERR_INVALID);
    arena_pairs_free(p);

    /* Nothing at all: no rating, no failure. */
    p = arena_pairs_new(3);
    o.prior = 1;
    CHECK_EQ(arena_ratings_bt(p, &o, &r, &err), ARENA_OK);
    CHECK_EQ(r->n_ranked, 0);
    arena_ratings_free(r);
    arena_pairs_free(p);
}

/* Little data with a finite MLE: many bootstrap rounds lose an edge of the
 * graph and with it their MLE. Those rounds must take the slow path with
 * the prior rather than creep off towards infinity. */
TEST(bt_sparse_bootstrap)
{
    struct arena_pairs *p = arena_pairs_new(4);
    for (uint32_t i = 0; i < 4; i++) {
        uint32_t j = (i + 1) % 4;
        arena_pairs_add(p, i, j, ARENA_WINNER_A, 2, 2);
        arena_pairs_add(p, i, j, ARENA_WINNER_B, 1, 1);
    }
    struct arena_rating_opts o;
    arena_rating_opts_init(&o);
    o.bootstrap = 500;
    struct arena_ratings *r = NULL;
    struct arena_err err;
    CHECK_EQ(arena_ratings_bt(p, &o, &r, &err), ARENA_OK);
    CHECK_EQ(r->prior_used, 0);
    CHECK(r->rounds_fallback > 50);
    for (int i = 0; i < 4; i++) {
        /* A cycle of equal records: everyone at 1000. */
        CHECK_NEAR(r->models[i].rating, 1000, 1e-6);
        CHECK(isfinite(r->models[i].ci_low) && isfinite(r->models[i].ci_high));
        /* The prior bounds what a round can say (a model winning all of its
         * 6 battles under one virtual tie lands a few hundred points up). */
        CHECK(r->models[i].ci_high < 1800 && r->models[i].ci_low > 200);
    }
    fprintf(stderr,
            "  %d of 500 rounds on the slow path; interval %.0f..%.0f\n",
            r->rounds_fallback, r->models[0].ci_low, r->models[0].ci_high);
    arena_ratings_free(r);
    arena_pairs_free(p);
}

/* The MLE makes the observed score of each model equal its expected
 * score; the matrices must agree with it. */
TEST(bt_matrices)
{
    double rating[6] = {900, 950, 1000, 1000, 1050, 1100};
    rng_state = 5;
    struct arena_battles *set = synth(6, 3000, rating);
    struct arena_pairs *pairs = arena_pairs_from_battles(set, NULL);
    struct arena_rating_opts o;
    arena_rating_opts_init(&o);
    o.bootstrap = 0;
    struct arena_ratings *r = NULL;
    struct arena_err err;
    CHECK_EQ(arena_ratings_bt(pairs, &o, &r, &err), ARENA_OK);
    double n[36], w[36], pr[36];
    arena_ratings_matrices(pairs, r, n, w, pr);
    for (int i = 0; i < 6; i++) {
        double obs = 0, exp_ = 0;
        CHECK(isnan(w[i * 6 + i]) && n[i * 6 + i] == 0);
        for (int j = 0; j < 6; j++) {
            if (i == j)
                continue;
            CHECK_NEAR(n[i * 6 + j], n[j * 6 + i], 0);
            CHECK_NEAR(w[i * 6 + j] + w[j * 6 + i], 1, 1e-12);
            CHECK_NEAR(pr[i * 6 + j] + pr[j * 6 + i], 1, 1e-12);
            obs += n[i * 6 + j] * w[i * 6 + j];
            exp_ += n[i * 6 + j] * pr[i * 6 + j];
        }
        CHECK_NEAR(obs, exp_, 1e-6);
    }
    size_t total = 0;
    for (int i = 0; i < 36; i++)
        total += (size_t)n[i];
    CHECK_EQ(total, 2 * 3000);
    arena_ratings_free(r);
    arena_pairs_free(pairs);
    arena_battles_free(set);
}

/* Filters, caps and weights: a capped visitor counts as cap votes, a
 * repeated prompt as cap battles; weights scale what BT sees. */
TEST(filters_caps)
{
    struct arena_battles *set = arena_battles_new();
    arena_battles_intern(set, "a", 1);
    arena_battles_intern(set, "b", 1);
    int32_t en = arena_battles_intern_lang(set, "en", 2);
    for (int k = 0; k < 40; k++) {
        struct arena_battle x = {.model_a = 0, .model_b = 1, .weight = 1};
        x.winner = k < 30 ? ARENA_WINNER_A : ARENA_WINNER_TIE;
        x.tags = k % 2 ? ARENA_TAG_CODING : 0;
        x.visitor = k < 20 ? 7 : (uint32_t)(100 + k);
        x.prompt = k < 30 ? 0 : 55;
        x.lang = k < 10 ? (uint16_t)en : 0;
        CHECK_EQ(arena_battles_add(set, &x), ARENA_OK);
    }
    struct arena_battle bad = {.model_a = 0, .model_b = 0, .weight = 1};
    CHECK_EQ(arena_battles_add(set, &bad), ARENA_ERR_INVALID);
    struct arena_rating_filter f = {.require_tags = ARENA_TAG_CODING};
    struct arena_pairs *p = arena_pairs_from_battles(set, &f);
    CHECK_EQ(arena_pairs_model_battles(p, 0), 20);
    arena_pairs_free(p);
    f = (struct arena_rating_filter){.exclude_ties = 1, .lang = (uint16_t)en};
    p = arena_pairs_from_battles(set, &f);
    CHECK_EQ(arena_pairs_model_battles(p, 1), 10);
    arena_pairs_free(p);
    CHECK_EQ(arena_battles_apply_caps(set, 5, 2), ARENA_OK);
    const struct arena_battle *b = arena_battles_items(set);
    double vw = 0, pw = 0;
    for (int k = 0; k < 40; k++) {
        if (b[k].visitor == 7)
            vw += b[k].weight;
        if (b[k].prompt == 55)
            pw += b[k].weight;
    }
    CHECK_NEAR(vw, 5, 1e-5);
    CHECK_NEAR(pw, 2, 1e-5);
    CHECK_EQ(arena_tag_from_name("identity_leak"), ARENA_TAG_IDENTITY_LEAK);
    CHECK_STREQ(arena_tag_name(ARENA_TAG_LONG_PROMPT), "long_prompt");
    CHECK_EQ(arena_tag_from_name("nope"), 0);
    arena_battles_free(set);
}

/* ------------------------------------------------------------------------
 * The command's JSON
 * ---------------------------------------------------------------------- */

static json_t *run_json(const char *args)
{
    const char *bin = getenv("ARENA_BIN");
    if (bin == NULL)
        return NULL;
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "'%s' ratings %s", bin, args);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return NULL;
    json_error_t e;
    json_t *root = json_loadf(f, 0, &e);
    if (pclose(f) != 0 || root == NULL) {
        fprintf(stderr, "  %s: %s\n", cmd, root ? "exit status" : e.text);
        json_decref(root);
        return NULL;
    }
    return root;
}

TEST(cli_json_shape)
{
    if (getenv("ARENA_BIN") == NULL)
        check_skip("ARENA_BIN not set");
    char args[1024];
    snprintf(args, sizeof(args),
             "--input '%s' --json --bootstrap 100 --seed 3 --matrices "
             "--anchor 'GPT 4=1300'",
             llmfao_path());
    json_t *root = run_json(args);
    CHECK(root != NULL);
    CHECK_STREQ(json_string_value(json_object_get(root, "method")), "bt");
    json_t *models = json_object_get(root, "models");
    CHECK(json_is_array(models));
    CHECK_EQ(json_array_size(models), 59);
    double prev = INFINITY;
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m)
    {
        CHECK(json_is_string(json_object_get(m, "model")));
        CHECK(json_is_real(json_object_get(m, "rating")));
        CHECK(json_is_real(json_object_get(m, "ci_low")));
        CHECK(json_is_real(json_object_get(m, "ci_high")));
        CHECK(json_is_integer(json_object_get(m, "battles")));
        CHECK(json_is_integer(json_object_get(m, "rank_ub")));
        CHECK(json_is_boolean(json_object_get(m, "provisional")));
        double r = json_real_value(json_object_get(m, "rating"));
        CHECK(r <= prev);
        prev = r;
        CHECK(json_integer_value(json_object_get(m, "rank_ub")) >= 1);
        if (strcmp(json_string_value(json_object_get(m, "model")), "GPT 4") ==
            0) {
            CHECK_NEAR(r, 1300, 1e-6);
            CHECK_NEAR(json_real_value(json_object_get(m, "ci_low")), 1300,
                       1e-6);
        }
    }
    json_t *wr = json_object_get(root, "win_rate");
    CHECK(json_is_array(wr) && json_array_size(wr) == 59);
    CHECK(json_array_size(json_array_get(wr, 0)) == 59);
    CHECK(json_is_null(json_array_get(json_array_get(wr, 0), 0)));
    CHECK(json_is_array(json_object_get(root, "battles")));
    CHECK(json_is_array(json_object_get(root, "predicted")));
    json_decref(root);

    snprintf(args, sizeof(args), "--input '%s' --json --method elo",
             llmfao_path());
    root = run_json(args);
    CHECK(root != NULL);
    CHECK_STREQ(json_string_value(json_object_get(root, "method")), "elo");
    m = json_array_get(json_object_get(root, "models"), 0);
    CHECK(json_is_null(json_object_get(m, "ci_low")));
    CHECK_EQ(json_integer_value(json_object_get(m, "rank_ub")), 1);
    json_decref(root);
}

static const struct check_test tests[] = {
    TEST_ENTRY(golden_elo),
    TEST_ENTRY(golden_bt),
    TEST_ENTRY(csv_quoted_crlf),
    TEST_ENTRY(csv_left_right),
    TEST_ENTRY(csv_errors),
    TEST_ENTRY(csv_name_lengths),
    TEST_ENTRY(csv_threads_identical),
    TEST_ENTRY(jsonl_reader),
    TEST_ENTRY(readers_mutated_input),
    TEST_ENTRY(bt_coverage),
    TEST_ENTRY(bt_reproducible),
    TEST_ENTRY(bt_anchor),
    TEST_ENTRY(bt_degenerate),
    TEST_ENTRY(bt_sparse_bootstrap),
    TEST_ENTRY(bt_matrices),
    TEST_ENTRY(filters_caps),
    TEST_ENTRY(cli_json_shape),
};

CHECK_MAIN(tests)
