/*
 * check.h: the assertions and runner every test binary uses.
 *
 * A test binary defines its tests with TEST(name) { ... } and lists them in
 * a table passed to check_main(). Run with no argument it runs them all; with
 * a name it runs that one only. A failed CHECK prints the expression and both
 * values, marks the test failed and returns from it. A test may call
 * check_skip() to report that something it needs is missing; if every test
 * that ran skipped, the binary exits 77, which ctest reports as skipped.
 */
#ifndef ARENA_CHECK_H
#define ARENA_CHECK_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct check_test {
    const char *name;
    void (*fn)(void);
};

static int check_failed;  /* the current test failed */
static int check_skipped; /* the current test skipped itself */

#define TEST(name) static void name(void)
#define TEST_ENTRY(name)                                                       \
    {                                                                          \
#name, name                                                            \
    }

#define CHECK_FAIL_(...)                                                       \
    do {                                                                       \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                        \
        fprintf(stderr, __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                   \
        check_failed = 1;                                                      \
        return;                                                                \
    } while (0)

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            CHECK_FAIL_("CHECK(%s) failed", #cond);                            \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        if (a_ != b_)                                                          \
            CHECK_FAIL_("CHECK_EQ(%s, %s): %lld != %lld", #a, #b, a_, b_);     \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                  \
    do {                                                                       \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);         \
        if (!(fabs(a_ - b_) <= t_))                                            \
            CHECK_FAIL_("CHECK_NEAR(%s, %s, %s): %.9g vs %.9g (diff %.3g)",    \
                        #a, #b, #tol, a_, b_, fabs(a_ - b_));                  \
    } while (0)

#define CHECK_STREQ(a, b)                                                      \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                   \
            CHECK_FAIL_("CHECK_STREQ(%s, %s): \"%s\" != \"%s\"", #a, #b,       \
                        a_ ? a_ : "(null)", b_ ? b_ : "(null)");               \
    } while (0)

/* Marks the current test skipped, with a reason, and returns from it. */
#define check_skip(...)                                                        \
    do {                                                                       \
        fprintf(stderr, "skip: ");                                             \
        fprintf(stderr, __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                   \
        check_skipped = 1;                                                     \
        return;                                                                \
    } while (0)

/* Environment variable or the fallback. */
static inline const char *check_env(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

static inline int check_main(int argc, char **argv,
                             const struct check_test *tests, size_t n)
{
    int passed = 0, failed = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
            continue;
        check_failed = 0;
        check_skipped = 0;
        tests[i].fn();
        if (check_failed) {
            failed++;
            fprintf(stderr, "FAIL %s\n", tests[i].name);
        } else if (check_skipped) {
            skipped++;
            fprintf(stderr, "SKIP %s\n", tests[i].name);
        } else {
            passed++;
            fprintf(stderr, "ok   %s\n", tests[i].name);
        }
    }
    fprintf(stderr, "%d passed, %d failed, %d skipped\n", passed, failed,
            skipped);
    if (failed > 0)
        return 1;
    if (passed == 0 && skipped > 0)
        return 77;
    if (passed == 0 && argc > 1) {
        fprintf(stderr, "no test named %s\n", argv[1]);
        return 2;
    }
    return 0;
}

#define CHECK_MAIN(table)                                                      \
    int main(int argc, char **argv)                                            \
    {                                                                          \
        return check_main(argc, argv, table,                                   \
                          sizeof(table) / sizeof(table[0]));                   \
    }

#endif
