/*
 * test_fair.c: the fair-play primitives and the category tags, in memory:
 * the secret key file, signed cookies (visitor and admin), keyed IP
 * hashes, token buckets and the daily cap at their configured numbers,
 * identity-leak search, language and code detection, the active sampling
 * weight.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "arena_internal.h"
#include "check.h"

static struct arena_keys *keys_in(const char *tag, char *path, size_t n)
{
    snprintf(path, n, "%s/fair-%s-%d/sub/secret.key",
             check_env("ARENA_TEST_OUT", "/tmp"), tag, (int)getpid());
    unlink(path);
    struct arena_keys *k = NULL;
    struct arena_err err = {{0}};
    if (arena_keys_open(path, &k, &err) != ARENA_OK)
        fprintf(stderr, "arena_keys_open: %s\n", err.msg);
    return k;
}

TEST(key_file)
{
    char path[512];
    struct arena_keys *k1 = keys_in("key", path, sizeof(path));
    CHECK(k1 != NULL);
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    CHECK_EQ(st.st_size, 65);
    /* Opening again reads the same key: same MACs. */
    struct arena_keys *k2 = NULL;
    struct arena_err err;
    CHECK_EQ(arena_keys_open(path, &k2, &err), ARENA_OK);
    uint8_t m1[32], m2[32];
    arena_keys_mac(k1, "p", "data", 4, m1);
    arena_keys_mac(k2, "p", "data", 4, m2);
    CHECK(memcmp(m1, m2, 32) == 0);
    /* The purpose separates MACs. */
    arena_keys_mac(k1, "q", "data", 4, m2);
    CHECK(memcmp(m1, m2, 32) != 0);
    arena_keys_free(k2);
    /* A corrupt file is refused. */
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("not hex\n", f);
    fclose(f);
    CHECK_EQ(arena_keys_open(path, &k2, &err), ARENA_ERR_PARSE);
    arena_keys_free(k1);
}

TEST(visitor_cookie)
{
    char path[512];
    struct arena_keys *k = keys_in("cookie", path, sizeof(path));
    CHECK(k != NULL);
    char val[64];
    struct arena_visitor v1, v2;
    CHECK_EQ(arena_visitor_cookie_new(k, val, sizeof(val), &v1), ARENA_OK);
    CHECK_EQ(strlen(val), 45);
    CHECK_EQ(arena_visitor_cookie_check(k, val, &v2), 1);
    CHECK(memcmp(v1.hash, v2.hash, 32) == 0);
    /* Any change to id or MAC breaks it. */
    for (size_t i = 0; i < 45; i++) {
        if (i == 22)
            continue;
        char bad[64];
        snprintf(bad, sizeof(bad), "%s", val);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        CHECK_EQ(arena_visitor_cookie_check(k, bad, &v2), 0);
    }
    CHECK_EQ(arena_visitor_cookie_check(k, "", &v2), 0);
    CHECK_EQ(arena_visitor_cookie_check(k, NULL, &v2), 0);
    /* Two visitors differ. */
    char val2[64];
    CHECK_EQ(arena_visitor_cookie_new(k, val2, sizeof(val2), &v2), ARENA_OK);
    CHECK(strcmp(val, val2) != 0);
    CHECK(memcmp(v1.hash, v2.hash, 32) != 0);
    /* IP hashes: keyed, stable, different per address. */
    arena_visitor_ip(k, "10.0.0.1", &v1);
    arena_visitor_ip(k, "10.0.0.1", &v2);
    CHECK(memcmp(v1.ip_hash, v2.ip_hash, 32) == 0);
    arena_visitor_ip(k, "10.0.0.2", &v2);
    CHECK(memcmp(v1.ip_hash, v2.ip_hash, 32) != 0);
    arena_keys_free(k);
}

TEST(admin_cookie)
{
    char path[512];
    struct arena_keys *k = keys_in("admin", path, sizeof(path));
    CHECK(k != NULL);
    char val[64];
    arena_admin_cookie_new(k, 2000, val, sizeof(val));
    CHECK_EQ(arena_admin_cookie_check(k, val, 1999), 1);
    CHECK_EQ(arena_admin_cookie_check(k, val, 2000), 0); /* expired */
    /* Extending the expiry breaks the MAC. */
    char forged[80];
    snprintf(forged, sizeof(forged), "9%s", val);
    CHECK_EQ(arena_admin_cookie_check(k, forged, 1999), 0);
    CHECK_EQ(arena_admin_cookie_check(k, "2000.", 1), 0);
    CHECK_EQ(arena_secret_equal(k, "secret", "secret"), 1);
    CHECK_EQ(arena_secret_equal(k, "secret", "secreT"), 0);
    CHECK_EQ(arena_secret_equal(k, "secret", "secret2"), 0);
    arena_keys_free(k);
}

TEST(token_buckets)
{
    struct arena_limiter *l = arena_limiter_new();
    CHECK(l != NULL);
    uint8_t key[32] = {1}, other[32] = {2};
    /* 5 per minute: 5 at once, the 6th waits 12 s. */
    for (int i = 0; i < 5; i++)
        CHECK_EQ(arena_limiter_take(l, ARENA_LIMIT_VOTE, key, 5, 100.0), 0);
    CHECK_EQ(arena_limiter_take(l, ARENA_LIMIT_VOTE, key, 5, 100.0), 12);
    /* Another key, another kind: their own buckets. */
    CHECK_EQ(arena_limiter_take(l, ARENA_LIMIT_VOTE, other, 5, 100.0), 0);
    CHECK_EQ(arena_limiter_take(l, ARENA_LIMIT_TURN, key, 5, 100.0), 0);
    /* 6 s later: still 6 s to wait; 12 s later: one token. */
    CHECK_EQ(arena_limiter_take(l, ARENA_LIMIT_VOTE, key, 5, 106.0), 6);
    CHECK_EQ(arena_limiter_take(l, ARENA_LIMIT_VOTE, key, 5, 112.0), 0);
    CHECK_EQ(arena_limiter_take(l, ARENA_LIMIT_VOTE, key, 5, 112.0), 12);
    /* 0 = unlimited. */
    for (int i = 0; i < 100; i++)
        CHECK_EQ(arena_limiter_take(l, ARENA_LIMIT_BATTLE, key, 0, 1.0), 0);
    /* Many keys: the shards grow and keep working. */
    for (int i = 0; i < 20000; i++) {
        uint8_t k[32] = {0};
        memcpy(k, &i, sizeof(i));
        k[31] = 7;
        CHECK_EQ(arena_limiter_take(l, ARENA_LIMIT_IP_VOTE, k, 1, 5.0), 0);
    }
    arena_limiter_free(l);
}

TEST(daily_cap)
{
    struct arena_limiter *l = arena_limiter_new();
    CHECK(l != NULL);
    uint8_t key[32] = {9};
    long long day = 20000LL * 86400, t = day + 3600;
    for (int i = 0; i < 3; i++)
        CHECK_EQ(arena_limiter_daily_take(l, key, 3, t), 0);
    /* The 4th waits until midnight UTC: 23 h. */
    CHECK_EQ(arena_limiter_daily_take(l, key, 3, t), 23 * 3600);
    /* A vote that failed gives its count back. */
    arena_limiter_daily_undo(l, key, t);
    CHECK_EQ(arena_limiter_daily_take(l, key, 3, t), 0);
    CHECK(arena_limiter_daily_take(l, key, 3, t) > 0);
    /* The next day starts at zero. */
    CHECK_EQ(arena_limiter_daily_take(l, key, 3, day + 86400), 0);
    arena_limiter_free(l);
}

TEST(identity_leak)
{
    const char *terms[] = {"GPT-4", "OpenAI", "", "Llama"};
    const char *t = "Hello! I am a model trained by openai, nice.";
    CHECK_EQ(arena_leak_find(t, strlen(t), terms, 4), 1);
    t = "Llamas are animals.";
    CHECK_EQ(arena_leak_find(t, strlen(t), terms, 4), -1); /* whole word */
    t = "As gpt-4, I think";
    CHECK_EQ(arena_leak_find(t, strlen(t), terms, 4), 0);
    t = "Nothing to see";
    CHECK_EQ(arena_leak_find(t, strlen(t), terms, 4), -1);
    t = "llama";
    CHECK_EQ(arena_leak_find(t, strlen(t), terms, 4), 3);
}

TEST(tags)
{
    struct arena_text_tags tt;
    const char *en = "What is the best way to learn a new language?";
    arena_tags_detect(en, strlen(en), &tt);
    CHECK_STREQ(tt.language, "en");
    CHECK_EQ(tt.has_code, 0);
    const char *story = "Once upon a time";
    arena_tags_detect(story, strlen(story), &tt);
    CHECK_STREQ(tt.language, "en");
    const char *pt = "Qual é a melhor forma de aprender uma nova língua?";
    arena_tags_detect(pt, strlen(pt), &tt);
    CHECK_STREQ(tt.language, "pt");
    const char *fr = "Quelle est la meilleure façon de dormir dans le train?";
    arena_tags_detect(fr, strlen(fr), &tt);
    CHECK_STREQ(tt.language, "fr");
    const char *de = "Wie ist das Wetter und was ist nicht gut?";
    arena_tags_detect(de, strlen(de), &tt);
    CHECK_STREQ(tt.language, "de");
    const char *zh = "请写一首关于春天的诗";
    arena_tags_detect(zh, strlen(zh), &tt);
    CHECK_STREQ(tt.language, "zh");
    const char *ja = "今日はいい天気ですね";
    arena_tags_detect(ja, strlen(ja), &tt);
    CHECK_STREQ(tt.language, "ja");
    const char *ru = "Привет, как дела?";
    arena_tags_detect(ru, strlen(ru), &tt);
    CHECK_STREQ(tt.language, "ru");
    const char *code = "Fix this:\n```c\nint main() { return 0; }\n```";
    arena_tags_detect(code, strlen(code), &tt);
    CHECK_EQ(tt.has_code, 1);
    CHECK(tt.flags & ARENA_TAG_CODING);
    const char *math = "Solve 3 + 4 * x = 19";
    arena_tags_detect(math, strlen(math), &tt);
    CHECK(tt.flags & ARENA_TAG_MATH);
    arena_tags_detect("", 0, &tt);
    CHECK_STREQ(tt.language, "");
    /* Invalid UTF-8 does not trip it. */
    const char bad[] = "\xff\xfe\xc3 abc \xe4\xb8";
    arena_tags_detect(bad, sizeof(bad) - 1, &tt);
}

TEST(active_weight)
{
    /* A pair never seen outweighs one seen often; the weight falls as
     * votes accumulate; model weights multiply; weight 0 excludes. */
    double w0 = arena__active_weight(0, 0, 1, 1);
    double w10 = arena__active_weight(10, 5, 1, 1);
    double w1000 = arena__active_weight(1000, 500, 1, 1);
    CHECK(w0 > w10 && w10 > w1000 && w1000 > 0);
    CHECK_NEAR(arena__active_weight(10, 5, 2, 3), 6 * w10, 1e-12);
    CHECK_EQ(arena__active_weight(10, 5, 0, 1), 0);
    /* A lopsided pair (p near 1) has less variance to remove. */
    CHECK(arena__active_weight(100, 99, 1, 1) <
          arena__active_weight(100, 50, 1, 1));
    /* The value is the interval-width reduction sqrt(v/(n+1)) -
     * sqrt(v/(n+2)) with v = p(1-p), p = (s+1)/(n+2). */
    double p = 6.0 / 12.0, v = p * (1 - p);
    CHECK_NEAR(w10, sqrt(v / 11) - sqrt(v / 12), 1e-12);
}

static const struct check_test tests[] = {
    TEST_ENTRY(key_file),     TEST_ENTRY(visitor_cookie),
    TEST_ENTRY(admin_cookie), TEST_ENTRY(token_buckets),
    TEST_ENTRY(daily_cap),    TEST_ENTRY(identity_leak),
    TEST_ENTRY(tags),         TEST_ENTRY(active_weight),
};
CHECK_MAIN(tests)
