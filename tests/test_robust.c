/*
 * test_robust.c: damaged numbers never become undefined behaviour.
 *
 * A model file may hold NaN or infinite weights; the activations they make
 * reach the 8-bit activation quantisers, where a float-to-int conversion of
 * NaN or infinity is undefined (UBSan aborts on it in the sanitizer build).
 * The quantisers must map such values to 0 and keep the finite ones.
 */
#include <math.h>

#include "check.h"
#include "infer_kernels.h"

TEST(q8a_nonfinite)
{
    float x[2 * INFER_QK];
    for (int i = 0; i < 2 * INFER_QK; i++)
        x[i] = (float)(i % 7) - 3.0f;
    x[3] = NAN;
    x[5] = INFINITY;       /* the first block's scale becomes inf */
    x[INFER_QK + 1] = NAN; /* the second block keeps a finite scale */
    struct infer_q8a y[2];
    infer_quantize_q8a(x, y, 2 * INFER_QK);
    CHECK_EQ(y[0].qs[3], 0);
    CHECK_EQ(y[1].qs[1], 0);
    /* finite values of the second block are quantised as usual */
    CHECK(y[1].d > 0 && isfinite(y[1].d));
    CHECK_EQ(y[1].qs[0], (int)lrintf(x[INFER_QK] / y[1].d));
}

TEST(q8k_nonfinite)
{
    float x[INFER_QK_K];
    for (int i = 0; i < INFER_QK_K; i++)
        x[i] = (float)(i % 5) - 2.0f;
    x[0] = NAN;
    x[17] = -INFINITY;
    struct infer_q8k y[1];
    infer_quantize_q8k(x, y, INFER_QK_K);
    CHECK_EQ(y[0].qs[0], 0);
    CHECK_EQ(y[0].qs[17], 0);
}

static const struct check_test tests[] = {
    TEST_ENTRY(q8a_nonfinite),
    TEST_ENTRY(q8k_nonfinite),
};
CHECK_MAIN(tests)
