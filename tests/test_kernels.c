/*
 * test_kernels.c: conversions, (de)quantisation round trips, activation
 * quantisers, every matmul kernel of every kernel set this CPU runs against
 * a float64 reference, the thread pool, the samplers and stop strings.
 *
 * Tolerances (stated once, used below):
 *   kernel vs float64 of the same quantised inputs:
 *       |y - ref| <= 2e-5 * sum|w_i x_i| + 1e-6    (float rounding only)
 *   kernel vs float64 of the float activations (activation quantisation):
 *       |y - ref| <= 2e-2 * sum|w_i x_i| + 1e-6
 *   round trip RMS error / RMS value: F16 1e-3, BF16 5e-3, Q8_0 1e-2,
 *       Q6_K 3e-2, Q5_0, Q5_1 and Q5_K 6e-2, Q4_0 and Q4_K 1.2e-1
 */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer_kernels.h"
#include "infer_model.h"

static uint64_t rng_state = 88172645463325252ull;

static double urand(void) /* [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 4503599627370496.0 - 1.0;
}

static void fill(float *x, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(urand() * scale);
}

/* The next kernel set this CPU runs from infer_kernel_names[*i] on, or
 * NULL: for (int i = 0; (ks = next_set(&i)) != NULL;) visits them all
 * (i = 1: the SIMD ones). */
static const struct infer_kernels *next_set(int *i)
{
    while (infer_kernel_names[*i] != NULL) {
        const struct infer_kernels *ks =
            infer_kernels_get(infer_kernel_names[(*i)++]);
        if (ks != NULL)
            return ks;
    }
    return NULL;
}

/* Random halves, as the KV cache holds them. */
static void fill_half(uint16_t *x, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = infer_f32_to_fp16((float)(urand() * scale));
}

static const uint32_t all_types[] = {
    INFER_TYPE_F32,  INFER_TYPE_F16,  INFER_TYPE_BF16, INFER_TYPE_Q8_0,
    INFER_TYPE_Q4_0, INFER_TYPE_Q5_0, INFER_TYPE_Q5_1, INFER_TYPE_Q4_K,
    INFER_TYPE_Q5_K, INFER_TYPE_Q6_K};
#define N_TYPES (sizeof(all_types) / sizeof(all_types[0]))

/* ---- conversions ------------------------------------------------------------
 */

TEST(fp16_all_values_round_trip)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = infer_fp16_to_f32((uint16_t)h);
        if (isnan(f)) {
            CHECK(isnan(infer_fp16_to_f32(infer_f32_to_fp16(f))));
            continue;
        }
        CHECK_EQ(infer_f32_to_fp16(f), h);
    }
    CHECK_EQ(infer_f32_to_fp16(1.0f), 0x3c00);
    CHECK_EQ(infer_f32_to_fp16(65504.0f), 0x7bff);
    CHECK_EQ(infer_f32_to_fp16(1e6f), 0x7c00);
    CHECK_NEAR(infer_fp16_to_f32(0x0001), 5.960464477539063e-08, 1e-15);
}

/* f32 -> f16/bf16 rounds to the nearest representable value. */
TEST(fp16_bf16_round_to_nearest)
{
    for (int i = 0; i < 200000; i++) {
        float x = (float)(urand() * pow(2.0, (int)(urand() * 17) - 2));
        uint16_t h = infer_f32_to_fp16(x);
        double e = fabs(infer_fp16_to_f32(h) - (double)x);
        for (int d = -1; d <= 1; d += 2) {
            uint16_t n = (uint16_t)(h + d);
            if ((n & 0x7c00) == 0x7c00 || ((h ^ n) & 0x8000))
                continue;
            CHECK(e <= fabs(infer_fp16_to_f32(n) - (double)x));
        }
        uint16_t b = infer_f32_to_bf16(x);
        double eb = fabs(infer_bf16_to_f32(b) - (double)x);
        CHECK(eb <= fabs(infer_bf16_to_f32((uint16_t)(b + 1)) - (double)x));
        CHECK(eb <= fabs(infer_bf16_to_f32((uint16_t)(b - 1)) - (double)x));
    }
}

/* ---- quantisation round trips -----------------------------------------------
 */

static double rt_tolerance(uint32_t t)
{
    switch (t) {
    case INFER_TYPE_F32:
        return 0;
    case INFER_TYPE_F16:
        return 1e-3;
    case INFER_TYPE_BF16:
        return 5e-3;
    case INFER_TYPE_Q8_0:
        return 1e-2;
    case INFER_TYPE_Q6_K:
        return 3e-2;
    case INFER_TYPE_Q5_0:
    case INFER_TYPE_Q5_1:
    case INFER_TYPE_Q5_K:
        return 6e-2;
    default:
        return 1.2e-1;
    }
}

TEST(quantize_round_trip_every_type)
{
    enum { K = 1024 };
    static float x[K], y[K];
    static unsigned char q[K * 4];
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        uint32_t t = all_types[ti];
        for (int trial = 0; trial < 20; trial++) {
            fill(x, K, trial % 2 ? 3.0 : 0.01);
            if (trial == 3) /* an all-zero block must stay zero */
                for (int i = 0; i < 256; i++)
                    x[i] = 0;
            infer_quantize_row(t, x, q, K);
            infer_dequantize_row(t, q, y, K);
            double se = 0, sv = 0;
            for (int i = 0; i < K; i++) {
                se += (double)(y[i] - x[i]) * (y[i] - x[i]);
                sv += (double)x[i] * x[i];
                CHECK(isfinite(y[i]));
            }
            if (trial == 3)
                for (int i = 0; i < 256; i++)
                    CHECK_EQ(y[i], 0);
            double rel = sqrt(se / sv);
            if (!(rel <= rt_tolerance(t)))
                CHECK_FAIL_("type %s: RMS error %.4g > %.4g",
                            infer_type_name(t), rel, rt_tolerance(t));
        }
    }
}

TEST(row_bytes_and_block_layouts)
{
    CHECK_EQ(infer_row_bytes(INFER_TYPE_Q8_0, 64), 68);
    CHECK_EQ(infer_row_bytes(INFER_TYPE_Q4_0, 64), 36);
    CHECK_EQ(infer_row_bytes(INFER_TYPE_Q4_K, 512), 288);
    CHECK_EQ(infer_row_bytes(INFER_TYPE_Q6_K, 256), 210);
    CHECK_EQ(infer_row_bytes(INFER_TYPE_Q6_K, 100), 0);
    CHECK_EQ(infer_row_bytes(INFER_TYPE_BF16, 3), 6);
    /* A hand-built Q4_0 block: d = 0.5, q = j % 16 -> (q - 8) / 2. */
    struct infer_block_q4_0 b;
    b.d = infer_f32_to_fp16(0.5f);
    for (int j = 0; j < 16; j++)
        b.qs[j] = (uint8_t)((j % 16) | ((15 - j) << 4));
    float y[32];
    infer_dequantize_row(INFER_TYPE_Q4_0, &b, y, 32);
    CHECK_NEAR(y[3], (3 - 8) * 0.5, 0);
    CHECK_NEAR(y[16 + 3], (12 - 8) * 0.5, 0);
}

TEST(activation_quantizers)
{
    enum { K = 512 };
    float x[K];
    struct infer_q8a a[K / 32];
    struct infer_q8k k8[K / 256];
    fill(x, K, 2.0);
    infer_quantize_q8a(x, a, K);
    infer_quantize_q8k(x, k8, K);
    for (int i = 0; i < K; i++) {
        const struct infer_q8a *b = &a[i / 32];
        CHECK(fabs(b->d * b->qs[i % 32] - x[i]) <= b->d * 0.5001 + 1e-7);
        const struct infer_q8k *c = &k8[i / 256];
        CHECK(fabs(c->d * c->qs[i % 256] - x[i]) <= c->d * 0.5001 + 1e-7);
    }
    for (int j = 0; j < K / 32; j++) {
        int s = 0;
        for (int i = 0; i < 32; i++)
            s += a[j].qs[i];
        CHECK_EQ(-128 * s, a[j].nsum128);
    }
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int i = 0; i < 16; i++)
            s += k8[0].qs[16 * g + i];
        CHECK_EQ(s, k8[0].bsums[g]);
    }
}

/* ---- matmul kernels
 * ---------------------------------------------------------- */

/* Checks kernel set ks on type t with k columns and nb activation rows. */
static int check_mm(const struct infer_kernels *ks, uint32_t t, int64_t k,
                    int nb)
{
    enum { R = 7 };
    size_t rb = infer_row_bytes(t, k);
    enum infer_act_kind kind = infer_act_kind_of(t);
    size_t ab = infer_act_row_bytes(kind, k);
    float *w = malloc(sizeof(float) * R * k), *wd = malloc(sizeof(float) * k);
    float *x = malloc(sizeof(float) * nb * k), *xd = malloc(sizeof(float) * k);
    unsigned char *wq = malloc(rb * R), *xa = malloc(ab * nb);
    float *y = malloc(sizeof(float) * nb * R);
    int bad = 0;
    fill(w, R * k, 0.5);
    fill(x, nb * k, 2.0);
    for (int r = 0; r < R; r++)
        infer_quantize_row(t, w + r * k, wq + r * rb, k);
    for (int b = 0; b < nb; b++)
        infer_quantize_act(kind, x + b * k, xa + b * ab, k);
    for (int i = 0; i < nb * R; i++)
        y[i] = NAN; /* poison: rows outside [2, 6) must stay NaN */
    ks->mm[t](wq, rb, k, 2, 6, xa, ab, nb, y, R);
    for (int b = 0; b < nb; b++) {
        /* The activations as the kernel sees them. */
        if (kind == INFER_ACT_Q8A)
            for (int64_t i = 0; i < k; i++) {
                const struct infer_q8a *q =
                    (const struct infer_q8a *)(xa + b * ab) + i / 32;
                xd[i] = q->d * q->qs[i % 32];
            }
        else if (kind == INFER_ACT_Q8K)
            for (int64_t i = 0; i < k; i++) {
                const struct infer_q8k *q =
                    (const struct infer_q8k *)(xa + b * ab) + i / 256;
                xd[i] = q->d * q->qs[i % 256];
            }
        else
            memcpy(xd, x + b * k, sizeof(float) * k);
        for (int r = 0; r < R; r++) {
            float got = y[b * R + r];
            if (r < 2 || r >= 6) {
                bad += !isnan(got);
                continue;
            }
            infer_dequantize_row(t, wq + r * rb, wd, k);
            double ref = 0, ref_f = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                ref += (double)wd[i] * xd[i];
                ref_f += (double)wd[i] * x[b * k + i];
                mag += fabs((double)wd[i] * x[b * k + i]);
            }
            if (fabs(got - ref) > 2e-5 * mag + 1e-6 ||
                fabs(got - ref_f) > 2e-2 * mag + 1e-6) {
                fprintf(stderr,
                        "%s %s k=%lld nb=%d b=%d r=%d: got %.7g ref %.7g "
                        "(float acts %.7g, mag %.4g)\n",
                        ks->name, infer_type_name(t), (long long)k, nb, b, r,
                        got, ref, ref_f, mag);
                bad++;
            }
        }
    }
    free(w);
    free(wd);
    free(x);
    free(xd);
    free(wq);
    free(xa);
    free(y);
    return bad;
}

TEST(matmul_every_set_every_type)
{
    static const int nbs[] = {1, 3, 4, 5, 9};
    int sets = 0;
    for (int s = 0; infer_kernel_names[s] != NULL; s++) {
        const struct infer_kernels *ks =
            infer_kernels_get(infer_kernel_names[s]);
        if (ks == NULL) {
            fprintf(stderr, "kernel set %s: not on this CPU\n",
                    infer_kernel_names[s]);
            continue;
        }
        sets++;
        for (size_t ti = 0; ti < N_TYPES; ti++) {
            uint32_t t = all_types[ti];
            int blk = infer_type_block(t);
            /* K-quants need 256-multiples; float types also get tails. */
            int64_t ks_[3] = {512, blk == 256 ? 768 : 96,
                              blk == 1 ? 100 : 1024};
            for (int ki = 0; ki < 3; ki++)
                for (size_t n = 0; n < sizeof(nbs) / sizeof(nbs[0]); n++)
                    CHECK_EQ(check_mm(ks, t, ks_[ki], nbs[n]), 0);
        }
    }
    fprintf(stderr, "checked %d kernel sets (best here: %s)\n", sets,
            infer_kernels_best()->name);
    CHECK(sets >= 1);
}

/* SIMD sets must agree with the scalar set on identical inputs. */
TEST(simd_matches_scalar)
{
    enum { K = 1024, NB = 6, R = 5 };
    static float w[R * K], x[NB * K];
    static unsigned char wq[R * K * 4], xa[NB * K * 4];
    fill(w, R * K, 1.0);
    fill(x, NB * K, 1.0);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        uint32_t t = all_types[ti];
        size_t rb = infer_row_bytes(t, K);
        enum infer_act_kind kind = infer_act_kind_of(t);
        size_t ab = infer_act_row_bytes(kind, K);
        for (int r = 0; r < R; r++)
            infer_quantize_row(t, w + r * K, wq + r * rb, K);
        for (int b = 0; b < NB; b++)
            infer_quantize_act(kind, x + b * K, xa + b * ab, K);
        float ys[NB * R], yv[NB * R];
        infer_kernels_scalar.mm[t](wq, rb, K, 0, R, xa, ab, NB, ys, R);
        const struct infer_kernels *ks;
        for (int s = 1; (ks = next_set(&s)) != NULL;) {
            ks->mm[t](wq, rb, K, 0, R, xa, ab, NB, yv, R);
            for (int i = 0; i < NB * R; i++)
                CHECK_NEAR(yv[i], ys[i], 1e-4 * (fabs(ys[i]) + 1));
        }
    }
}

/* Each output element is computed the same way whatever tile it falls in:
 * the full product (all rows, nb activation rows at once) equals, bit for
 * bit, every element computed alone (one weight row, one activation row)
 * and row ranges that start or end inside a tile. This is the kernel side
 * of "a sequence's logits do not depend on the batch it runs in". */
static int check_tile_invariance(const struct infer_kernels *ks, uint32_t t,
                                 int64_t k)
{
    enum { R = 11, NB = 13 };
    size_t rb = infer_row_bytes(t, k);
    enum infer_act_kind kind = infer_act_kind_of(t);
    size_t ab = infer_act_row_bytes(kind, k);
    float *w = malloc(sizeof(float) * R * k),
          *x = malloc(sizeof(float) * NB * k);
    unsigned char *wq = malloc(rb * R), *xa = malloc(ab * NB);
    float *all = malloc(sizeof(float) * NB * R),
          *part = malloc(sizeof(float) * NB * R);
    int bad = 0;
    fill(w, R * k, 0.7);
    fill(x, NB * k, 1.5);
    for (int r = 0; r < R; r++)
        infer_quantize_row(t, w + r * k, wq + r * rb, k);
    for (int b = 0; b < NB; b++)
        infer_quantize_act(kind, x + b * k, xa + b * ab, k);
    ks->mm[t](wq, rb, k, 0, R, xa, ab, NB, all, R);
    /* One element at a time. */
    for (int r = 0; r < R; r++)
        for (int b = 0; b < NB; b++) {
            float one[R]; /* the kernel writes one[r] */
            ks->mm[t](wq, rb, k, r, r + 1, xa + b * ab, ab, 1, one, R);
            bad += memcmp(&one[r], &all[b * R + r], sizeof(float)) != 0;
        }
    /* Ragged row ranges and activation subsets: rows [r0, r1) against
     * activation rows [b0, b0 + n). */
    static const int cuts[][4] = {{1, 10, 2, 7},
                                  {3, 6, 0, 13},
                                  {5, 11, 11, 2},
                                  {0, 7, 6, 5},
                                  {2, 3, 1, 3}};
    for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
        int r0 = cuts[c][0], r1 = cuts[c][1], b0 = cuts[c][2], n = cuts[c][3];
        ks->mm[t](wq, rb, k, r0, r1, xa + b0 * ab, ab, n, part, R);
        for (int b = 0; b < n; b++)
            for (int r = r0; r < r1; r++)
                bad += memcmp(&part[b * R + r], &all[(b0 + b) * R + r],
                              sizeof(float)) != 0;
    }
    if (bad)
        fprintf(stderr, "%s %s k=%lld: %d elements depend on the tile\n",
                ks->name, infer_type_name(t), (long long)k, bad);
    free(w);
    free(x);
    free(wq);
    free(xa);
    free(all);
    free(part);
    return bad;
}

TEST(matmul_result_independent_of_tiling)
{
    const struct infer_kernels *ks;
    for (int s = 0; (ks = next_set(&s)) != NULL;) {
        for (size_t ti = 0; ti < N_TYPES; ti++) {
            uint32_t t = all_types[ti];
            int blk = infer_type_block(t);
            /* An even and an odd number of blocks (and a float tail). */
            CHECK_EQ(check_tile_invariance(ks, t, blk == 256 ? 512 : 576), 0);
            CHECK_EQ(check_tile_invariance(ks, t,
                                           blk == 256 ? 768
                                           : blk == 1 ? 100
                                                      : 96),
                     0);
        }
    }
}

/* How many ways the packed kernel fn over wp (48 rows, k columns) fails to
 * give ys (nb activation rows at xa, ab bytes apart; y rows of 48): the
 * whole product, each 16-row group against each activation row alone (the
 * first cold), and the middle group against activation rows [1, nb). */
static int packed_mismatches(infer_mm_packed_fn fn, const void *wp, int64_t k,
                             const unsigned char *xa, size_t ab, int nb,
                             const float *ys)
{
    enum { R = 48 };
    float *yv = malloc(sizeof(float) * nb * R);
    fn(wp, k, 0, R, R, true, xa, ab, nb, yv, R);
    int bad = memcmp(yv, ys, sizeof(float) * nb * R) != 0;
    for (int g = 0; g < R / 16; g++)
        for (int b = 0; b < nb; b++) {
            float one[R];
            fn(wp, k, 16 * g, 16 * g + 16, R, g == 0, xa + b * ab, ab, 1, one,
               R);
            bad += memcmp(one + 16 * g, ys + b * R + 16 * g,
                          16 * sizeof(float)) != 0;
        }
    if (nb > 1) {
        fn(wp, k, 16, 32, 32, false, xa + ab, ab, nb - 1, yv, R);
        for (int b = 0; b < nb - 1; b++)
            bad += memcmp(yv + b * R + 16, ys + (b + 1) * R + 16,
                          16 * sizeof(float)) != 0;
    }
    free(yv);
    return bad;
}

/* The Q8R layout (Q8_0, 16 rows interleaved): every set that has the
 * packed kernel gives the scalar reference's bits, within float rounding
 * of a float64 product of the same quantised values, and the same bits
 * for any row group and activation subset (batch independence). k = 96
 * ends on a lone block, 576 and 1536 are SmolLM2's widths. */
static int check_q8r(int64_t k, int nb)
{
    enum { R = 48 };
    size_t rb = infer_row_bytes(INFER_TYPE_Q8_0, k);
    size_t ab = infer_act_row_bytes(INFER_ACT_Q8A, k);
    size_t pb = (size_t)(R / INFER_Q8R_ROWS) * infer_q8r_group_bytes(k);
    float *w = malloc(sizeof(float) * R * k),
          *x = malloc(sizeof(float) * nb * k);
    float *wd = malloc(sizeof(float) * R * k);
    unsigned char *wq = malloc(rb * R), *xa = malloc(ab * nb);
    void *wp = aligned_alloc(64, (pb + 63) / 64 * 64);
    float *ys = malloc(sizeof(float) * nb * R);
    int bad = 0;
    fill(w, R * k, 0.7);
    fill(x, nb * k, 1.5);
    for (int r = 0; r < R; r++) {
        infer_quantize_row(INFER_TYPE_Q8_0, w + r * k, wq + r * rb, k);
        infer_dequantize_row(INFER_TYPE_Q8_0, wq + r * rb, wd + r * k, k);
    }
    for (int b = 0; b < nb; b++)
        infer_quantize_q8a(x + b * k, (void *)(xa + b * ab), k);
    infer_pack_q8r(wq, rb, R, k, wp);
    infer_kernels_scalar.mm_q8r(wp, k, 0, R, R, true, xa, ab, nb, ys, R);
    for (int b = 0; b < nb; b++) {
        const struct infer_q8a *xb = (const void *)(xa + b * ab);
        for (int r = 0; r < R; r++) {
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                double p = (double)wd[r * k + i] * xb[i / 32].d *
                           xb[i / 32].qs[i % 32];
                ref += p;
                mag += fabs(p);
            }
            if (fabs(ys[b * R + r] - ref) > 2e-5 * mag + 1e-6)
                bad++;
        }
    }
    const struct infer_kernels *ks;
    for (int s = 1; (ks = next_set(&s)) != NULL;) {
        if (ks->mm_q8r == NULL)
            continue;
        bad += packed_mismatches(ks->mm_q8r, wp, k, xa, ab, nb, ys);
    }
    if (bad)
        fprintf(stderr, "q8r k=%lld nb=%d: %d mismatches\n", (long long)k, nb,
                bad);
    free(w);
    free(x);
    free(wd);
    free(wq);
    free(xa);
    free(wp);
    free(ys);
    return bad;
}

TEST(q8r_packed_kernels)
{
    static const int64_t ks[] = {96, 576, 1536};
    static const int nbs[] = {1, 2, 7, 8, 13, 17, 32};
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
        for (size_t j = 0; j < sizeof(nbs) / sizeof(nbs[0]); j++)
            CHECK_EQ(check_q8r(ks[i], nbs[j]), 0);
}

/* The K-quant layouts (Q4KR, Q5KR, Q6KR) and Q51R: every set with a packed
 * kernel gives
 * the scalar set's row-major bits, for the whole matrix and for any one
 * group against any one activation row (batch independence). k = 256 is
 * one super-block, 1536 is SmolLM2's hidden width. */
static int check_kr(uint32_t t, int64_t k, int nb)
{
    enum { R = 48 };
    size_t rb = infer_row_bytes(t, k);
    enum infer_act_kind kind = infer_act_kind_of(t);
    size_t ab = infer_act_row_bytes(kind, k);
    size_t pb = (size_t)(R / INFER_Q8R_ROWS) * infer_packed_group_bytes(t, k);
    float *w = malloc(sizeof(float) * R * k),
          *x = malloc(sizeof(float) * nb * k);
    unsigned char *wq = malloc(rb * R), *xa = malloc(ab * nb);
    void *wp = aligned_alloc(64, (pb + 63) / 64 * 64);
    float *ys = malloc(sizeof(float) * nb * R);
    int bad = 0, sets = 0;
    fill(w, R * k, 0.7);
    fill(x, nb * k, 1.5);
    for (int r = 0; r < R; r++)
        infer_quantize_row(t, w + r * k, wq + r * rb, k);
    for (int b = 0; b < nb; b++)
        infer_quantize_act(kind, x + b * k, xa + b * ab, k);
    infer_pack(t, wq, rb, R, k, wp);
    infer_kernels_scalar.mm[t](wq, rb, k, 0, R, xa, ab, nb, ys, R);
    const struct infer_kernels *ks;
    for (int s = 1; (ks = next_set(&s)) != NULL;) {
        infer_mm_packed_fn fn = infer_packed_fn(ks, t);
        if (fn == NULL)
            continue;
        sets++;
        bad += packed_mismatches(fn, wp, k, xa, ab, nb, ys);
    }
    if (bad)
        fprintf(stderr, "%s k=%lld nb=%d: %d mismatches\n", infer_type_name(t),
                (long long)k, nb, bad);
    else if (sets == 0 && k == 256 && nb == 1)
        fprintf(stderr, "no set here packs %s\n", infer_type_name(t));
    free(w);
    free(x);
    free(wq);
    free(xa);
    free(wp);
    free(ys);
    return bad;
}

/* Q4R (Q4_0, two blocks a byte): every set with the kernel gives the bits
 * the scalar Q8R reference gives for the same matrix widened to Q8_0
 * (scale d, quants q - 8), whole and per group and activation row; k = 96
 * ends on a lone block. */
static int check_q4r(int64_t k, int nb)
{
    enum { R = 48 };
    const int64_t nblk = k / INFER_QK;
    size_t rb = infer_row_bytes(INFER_TYPE_Q4_0, k);
    size_t rb8 = infer_row_bytes(INFER_TYPE_Q8_0, k);
    size_t ab = infer_act_row_bytes(INFER_ACT_Q8A, k);
    size_t pb = (size_t)(R / INFER_Q8R_ROWS) *
                infer_packed_group_bytes(INFER_TYPE_Q4_0, k);
    size_t pb8 = (size_t)(R / INFER_Q8R_ROWS) * infer_q8r_group_bytes(k);
    float *w = malloc(sizeof(float) * R * k),
          *x = malloc(sizeof(float) * nb * k);
    unsigned char *wq = malloc(rb * R), *w8 = malloc(rb8 * R),
                  *xa = malloc(ab * nb);
    void *wp = aligned_alloc(64, (pb + 63) / 64 * 64),
         *wp8 = aligned_alloc(64, (pb8 + 63) / 64 * 64);
    float *ys = malloc(sizeof(float) * nb * R);
    int bad = 0;
    fill(w, R * k, 0.7);
    fill(x, nb * k, 1.5);
    for (int r = 0; r < R; r++) {
        infer_quantize_row(INFER_TYPE_Q4_0, w + r * k, wq + r * rb, k);
        const struct infer_block_q4_0 *a = (const void *)(wq + r * rb);
        struct infer_block_q8_0 *b = (void *)(w8 + r * rb8);
        for (int64_t i = 0; i < nblk; i++) {
            b[i].d = a[i].d;
            for (int j = 0; j < 16; j++) {
                b[i].qs[j] = (int8_t)((a[i].qs[j] & 0xf) - 8);
                b[i].qs[j + 16] = (int8_t)((a[i].qs[j] >> 4) - 8);
            }
        }
    }
    for (int b = 0; b < nb; b++)
        infer_quantize_q8a(x + b * k, (void *)(xa + b * ab), k);
    infer_pack(INFER_TYPE_Q4_0, wq, rb, R, k, wp);
    infer_pack_q8r(w8, rb8, R, k, wp8);
    infer_kernels_scalar.mm_q8r(wp8, k, 0, R, R, true, xa, ab, nb, ys, R);
    const struct infer_kernels *ks;
    for (int s = 1; (ks = next_set(&s)) != NULL;) {
        if (ks->mm_q4r == NULL)
            continue;
        bad += packed_mismatches(ks->mm_q4r, wp, k, xa, ab, nb, ys);
    }
    if (bad)
        fprintf(stderr, "q4r k=%lld nb=%d: %d mismatches\n", (long long)k, nb,
                bad);
    free(w);
    free(x);
    free(wq);
    free(w8);
    free(xa);
    free(wp);
    free(wp8);
    free(ys);
    return bad;
}

TEST(q4r_packed_kernels)
{
    static const int64_t ks[] = {96, 576, 1536};
    static const int nbs[] = {1, 2, 5, 6, 7, 13, 32};
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
        for (size_t j = 0; j < sizeof(nbs) / sizeof(nbs[0]); j++)
            CHECK_EQ(check_q4r(ks[i], nbs[j]), 0);
}

/* Q5_0 packs into Q8R as the Q8_0 blocks of the same scale and quants - 16,
 * byte for byte (k = 96 ends on a lone block); the packed kernels then
 * agree with the scalar row-major Q5_0 kernel within float rounding. */
TEST(q5_0_packs_as_q8r)
{
    enum { R = 32, K = 96, NB = 3 };
    const int64_t nblk = K / INFER_QK;
    static float w[R * K], x[NB * K];
    static struct infer_block_q5_0 wq[R * (K / INFER_QK)];
    static struct infer_block_q8_0 w8[R * (K / INFER_QK)];
    static struct infer_q8a xa[NB * (K / INFER_QK)];
    fill(w, R * K, 0.7);
    fill(x, NB * K, 1.5);
    for (int r = 0; r < R; r++)
        infer_quantize_row(INFER_TYPE_Q5_0, w + r * K, wq + r * nblk, K);
    for (int64_t i = 0; i < R * nblk; i++) {
        uint32_t qh;
        memcpy(&qh, wq[i].qh, 4);
        w8[i].d = wq[i].d;
        for (int j = 0; j < 32; j++) {
            int lo = j < 16 ? wq[i].qs[j] & 0xf : wq[i].qs[j - 16] >> 4;
            w8[i].qs[j] = (int8_t)((lo | (int)((qh >> j) & 1) << 4) - 16);
        }
    }
    for (int b = 0; b < NB; b++)
        infer_quantize_q8a(x + b * K, xa + b * nblk, K);
    size_t pb = (size_t)(R / INFER_Q8R_ROWS) *
                infer_packed_group_bytes(INFER_TYPE_Q5_0, K);
    CHECK_EQ(pb, (size_t)(R / INFER_Q8R_ROWS) * infer_q8r_group_bytes(K));
    unsigned char *p5 = aligned_alloc(64, pb), *p8 = aligned_alloc(64, pb);
    infer_pack(INFER_TYPE_Q5_0, wq, nblk * sizeof(*wq), R, K, p5);
    infer_pack_q8r(w8, nblk * sizeof(*w8), R, K, p8);
    CHECK(memcmp(p5, p8, pb) == 0);
    float yp[NB * R], ys[NB * R];
    infer_kernels_best()->mm_q8r(p5, K, 0, R, R, true, xa, nblk * sizeof(*xa),
                                 NB, yp, R);
    infer_kernels_scalar.mm[INFER_TYPE_Q5_0](wq, nblk * sizeof(*wq), K, 0, R,
                                             xa, nblk * sizeof(*xa), NB, ys, R);
    for (int i = 0; i < NB * R; i++)
        CHECK_NEAR(yp[i], ys[i], 1e-5 * (fabs(ys[i]) + 1));
    free(p5);
    free(p8);
}

TEST(kquant_packed_kernels)
{
    static const int64_t ks[] = {256, 1536};
    static const int nbs[] = {1, 2, 5, 6, 7, 13, 32};
    static const uint32_t ts[] = {INFER_TYPE_Q4_K, INFER_TYPE_Q5_K,
                                  INFER_TYPE_Q6_K};
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
            for (size_t j = 0; j < sizeof(nbs) / sizeof(nbs[0]); j++)
                CHECK_EQ(check_kr(ts[ti], ks[i], nbs[j]), 0);
}

/* Q51R (Q5_1) the same way: the scalar row-major bits; k = 96 ends on a
 * lone block. */
TEST(q51r_packed_kernels)
{
    static const int64_t ks[] = {96, 576};
    static const int nbs[] = {1, 2, 5, 6, 7, 13};
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
        for (size_t j = 0; j < sizeof(nbs) / sizeof(nbs[0]); j++)
            CHECK_EQ(check_kr(INFER_TYPE_Q5_1, ks[i], nbs[j]), 0);
}

/* Attention scores, every set against float64: head sizes with and without
 * a SIMD tail, 1 to 37 positions (partial and several 16-groups) of a
 * block of 40 and of 16 (K stored by dimension, in halves), 1 to 5 heads. */
TEST(attn_qk_every_set)
{
    static const int hds[] = {64, 128, 24, 100, 5};
    static const int bss[] = {40, 16};
    enum { LDS = 41, MAXH = 5 };
    static float q[MAXH * 128], s[MAXH * LDS];
    static uint16_t kt[40 * 128];
    const struct infer_kernels *ks;
    for (int si = 0; (ks = next_set(&si)) != NULL;) {
        for (size_t hi = 0; hi < sizeof(hds) / sizeof(hds[0]); hi++)
            for (size_t bi = 0; bi < 2; bi++)
                for (int nh = 1; nh <= MAXH; nh += 2) {
                    int hd = hds[hi], bs = bss[bi];
                    for (int cnt = 1; cnt <= bs && cnt <= 37; cnt += 4) {
                        fill(q, MAXH * 128, 1.0);
                        fill_half(kt, 40 * 128, 1.0);
                        for (int i = 0; i < MAXH * LDS; i++)
                            s[i] = NAN;
                        ks->attn_qk(q, nh, kt, bs, cnt, hd, s, LDS);
                        for (int h = 0; h < MAXH; h++)
                            for (int p = 0; p < LDS; p++) {
                                if (p >= cnt || h >= nh) { /* untouched */
                                    CHECK(isnan(s[h * LDS + p]));
                                    continue;
                                }
                                double ref = 0, mag = 0;
                                for (int j = 0; j < hd; j++) {
                                    double t =
                                        (double)q[h * hd + j] *
                                        infer_fp16_to_f32(kt[j * bs + p]);
                                    ref += t;
                                    mag += fabs(t);
                                }
                                CHECK_NEAR(s[h * LDS + p], ref,
                                           2e-6 * mag + 1e-6);
                            }
                    }
                }
    }
}

/* Float to half for the KV cache, every set against infer_f32_to_fp16 bit
 * for bit: magnitudes from below the smallest subnormal to past the
 * largest half (rounding to infinity), exact ties, signed zeros, lengths
 * with and without a SIMD tail. */
TEST(to_half_every_set)
{
    enum { N = 1000 };
    static float x[N];
    static uint16_t y[N + 1];
    for (int i = 0; i < N; i++) {
        double mag = pow(2.0, -30 + 47 * (urand() + 1) / 2); /* 2^-30..2^17 */
        x[i] = (float)(urand() * mag);
    }
    static const float edge[] = {
        0.0f,    -0.0f,    65504.0f, 65519.0f,        65520.0f,       -65520.0f,
        6.1e-5f, 5.96e-8f, 2.98e-8f, 1.0f + 0x1p-11f, 1.0f + 0x3p-11f};
    memcpy(x, edge, sizeof(edge));
    const struct infer_kernels *ks;
    for (int si = 0; (ks = next_set(&si)) != NULL;) {
        static const int ns[] = {N, 1, 7, 16, 37};
        for (size_t t = 0; t < sizeof(ns) / sizeof(ns[0]); t++) {
            y[ns[t]] = 0xabcd;
            ks->to_half(x, y, ns[t]);
            for (int i = 0; i < ns[t]; i++)
                if (y[i] != infer_f32_to_fp16(x[i]))
                    CHECK_EQ(y[i], infer_f32_to_fp16(x[i]));
            CHECK_EQ(y[ns[t]], 0xabcd); /* nothing past the end */
        }
    }
}

/* Softmax, every set against float64: lengths with and without a SIMD
 * tail, a scale, large and negative scores. */
TEST(softmax_every_set)
{
    static const int ns[] = {1, 7, 16, 33, 300};
    static float s[300];
    static double ref[300];
    const struct infer_kernels *ks;
    for (int si = 0; (ks = next_set(&si)) != NULL;) {
        for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
            int n = ns[i];
            fill(s, n, 40.0);
            double mx = -INFINITY, t = 0;
            for (int p = 0; p < n; p++)
                mx = fmax(mx, 0.125 * s[p]);
            for (int p = 0; p < n; p++)
                t += ref[p] = exp(0.125 * s[p] - mx);
            float stat[2];
            ks->softmax(s, n, 0.125f, stat);
            CHECK(stat[0] == (float)mx); /* 0.125 s[p] is exact */
            CHECK_NEAR(stat[1], t, 1e-5 * t);
            double sum = 0;
            for (int p = 0; p < n; p++) {
                CHECK_NEAR(s[p], ref[p] / t, 1e-6 * (ref[p] / t) + 1e-9);
                sum += s[p];
            }
            CHECK_NEAR(sum, 1.0, 1e-5);
        }
    }
}

/* Attention's weighted V sums (V in halves), every set against float64,
 * head sizes with and without a SIMD tail. */
TEST(attn_v_every_set)
{
    static const int hds[] = {64, 128, 24, 100, 5};
    enum { NH = 3, CNT = 16, LDA = 19 };
    const struct infer_kernels *ks;
    for (int s = 0; (ks = next_set(&s)) != NULL;) {
        for (size_t hi = 0; hi < sizeof(hds) / sizeof(hds[0]); hi++) {
            int hd = hds[hi];
            for (int cnt = 1; cnt <= CNT; cnt += 5) {
                float a[NH * LDA], o[NH * 128];
                uint16_t v[CNT * 128];
                fill(a, NH * LDA, 1.0);
                fill_half(v, CNT * 128, 2.0);
                fill(o, NH * 128, 1.0);
                double ref[NH * 128];
                for (int h = 0; h < NH; h++)
                    for (int j = 0; j < hd; j++) {
                        ref[h * hd + j] = o[h * hd + j];
                        for (int p = 0; p < cnt; p++)
                            ref[h * hd + j] += (double)a[h * LDA + p] *
                                               infer_fp16_to_f32(v[p * hd + j]);
                    }
                float guard = o[NH * hd < NH * 128 ? NH * hd : 0];
                ks->attn_v(a, LDA, NH, v, cnt, hd, o);
                for (int i = 0; i < NH * hd; i++)
                    CHECK_NEAR(o[i], ref[i], 1e-5 * (fabs(ref[i]) + 1));
                if (NH * hd < NH * 128) /* nothing past the output */
                    CHECK(memcmp(&guard, &o[NH * hd], sizeof(float)) == 0);
            }
        }
    }
}

/* The activation quantisers of every set give the reference's bits; its
 * SwiGLU matches float64 within 1e-6 relative. */
/* RMSNorm, every set against float64: lengths with and without a SIMD
 * tail; nothing written past n. */
TEST(rmsnorm_every_set)
{
    enum { K = 600 };
    static float x[K], w[K], o[K + 1];
    fill(x, K, 5.0);
    fill(w, K, 1.0);
    static const int ns[] = {1, 15, 16, 64, 576, 599};
    const struct infer_kernels *ks;
    for (int si = 0; (ks = next_set(&si)) != NULL;) {
        for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
            int n = ns[i];
            o[n] = 12345.0f;
            ks->rmsnorm(o, x, w, n, 1e-5f);
            double ss = 0;
            for (int j = 0; j < n; j++)
                ss += (double)x[j] * x[j];
            double r = 1 / sqrt(ss / n + 1e-5);
            for (int j = 0; j < n; j++)
                CHECK_NEAR(o[j], x[j] * r * w[j],
                           1e-6 * fabs(x[j] * r * w[j]) + 1e-12);
            CHECK(o[n] == 12345.0f);
        }
    }
}

TEST(quant_and_silu_every_set)
{
    enum { K = 1024 };
    static float x[K], g[K], g0[K], u[K];
    static struct infer_q8a ref[K / 32], got[K / 32];
    static struct infer_q8k refk[K / 256], gotk[K / 256];
    fill(x, K, 3.0);
    for (int i = 0; i < 32; i++)
        x[64 + i] = 0; /* an all-zero block */
    x[5] = 1e6f;
    x[200] = -1e-30f;
    x[300] = NAN; /* broken activations: NaN and inf quantise to 0 */
    x[333] = INFINITY;
    x[334] = 2.0f;
    x[400] = -INFINITY;
    infer_quantize_q8a(x, ref, K);
    memset(refk, 0x55, sizeof(refk)); /* the same padding bytes as gotk */
    infer_quantize_q8k(x, refk, K);
    for (int i = 0; i < K; i++) {
        g0[i] = (float)(urand() * 30); /* SiLU's useful range and beyond */
        u[i] = (float)urand();
    }
    g0[0] = -100;
    g0[1] = 100;
    g0[2] = 0;
    const struct infer_kernels *ks;
    for (int s = 0; (ks = next_set(&s)) != NULL;) {
        memset(got, 0x55, sizeof(got));
        ks->quant_q8a(x, got, K);
        CHECK(memcmp(got, ref, sizeof(ref)) == 0);
        memset(gotk, 0x55, sizeof(gotk));
        ks->quant_q8k(x, gotk, K);
        CHECK(memcmp(gotk, refk, sizeof(refk)) == 0);
        for (int n = 1; n <= K; n = n * 3 + 1) { /* odd lengths too */
            memcpy(g, g0, sizeof(g));
            ks->silu_mul(g, u, n);
            for (int i = 0; i < K; i++) {
                if (i >= n) {
                    CHECK(memcmp(&g[i], &g0[i], sizeof(float)) == 0);
                    continue;
                }
                double want = g0[i] / (1 + exp(-(double)g0[i])) * u[i];
                CHECK_NEAR(g[i], want, 1e-6 * fabs(want) + 1e-30);
            }
        }
    }
}

/* ---- thread pool
 * ---------------------------------------------------------------- */

struct pool_job {
    atomic_int phase_count[50];
    int bad;
    struct infer_pool *p;
};

static void pool_fn(void *arg, int ith, int nth)
{
    struct pool_job *j = arg;
    (void)ith;
    struct infer_pool *p = j->p;
    for (int ph = 0; ph < 50; ph++) {
        atomic_fetch_add(&j->phase_count[ph], 1);
        infer_pool_barrier(p);
        /* After the barrier every thread has counted this phase. */
        if (atomic_load(&j->phase_count[ph]) != nth)
            j->bad = 1;
        infer_pool_barrier(p);
    }
}

TEST(pool_runs_all_threads_with_barriers)
{
    for (int n = 1; n <= 4; n++) {
        struct infer_pool *p = infer_pool_new(n);
        CHECK(p != NULL);
        CHECK_EQ(infer_pool_size(p), n);
        static struct pool_job j;
        for (int run = 0; run < 20; run++) {
            memset(&j, 0, sizeof(j));
            j.p = p;
            infer_pool_run(p, pool_fn, &j);
            CHECK_EQ(j.bad, 0);
            CHECK_EQ(atomic_load(&j.phase_count[49]), n);
        }
        infer_pool_free(p);
    }
}

/* ---- sampling
 * ------------------------------------------------------------------- */

TEST(sampler_greedy_and_seeded)
{
    enum { V = 50 };
    float logits[V], l2[V];
    fill(logits, V, 3.0);
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best])
            best = i;
    struct infer_sampler_params p = {.temperature = 0, .repeat_penalty = 1};
    struct infer_sampler *s;
    CHECK_EQ(infer_sampler_new(&p, V, &s), INFER_OK);
    memcpy(l2, logits, sizeof(l2));
    CHECK_EQ(infer_sampler_sample(s, l2), best);
    infer_sampler_free(s);
    /* top_k 1 at any temperature is greedy. */
    p = (struct infer_sampler_params){
        .temperature = 1.5f, .top_k = 1, .repeat_penalty = 1, .seed = 7};
    CHECK_EQ(infer_sampler_new(&p, V, &s), INFER_OK);
    memcpy(l2, logits, sizeof(l2));
    CHECK_EQ(infer_sampler_sample(s, l2), best);
    infer_sampler_free(s);
    /* Same seed, same sequence; another seed, another one. */
    int seq[2][3][40];
    uint64_t seeds[3] = {42, 42, 43};
    for (int r = 0; r < 3; r++) {
        p = (struct infer_sampler_params){.temperature = 1.0f,
                                          .top_p = 1,
                                          .repeat_penalty = 1,
                                          .seed = seeds[r]};
        CHECK_EQ(infer_sampler_new(&p, V, &s), INFER_OK);
        for (int i = 0; i < 40; i++) {
            memcpy(l2, logits, sizeof(l2));
            seq[0][r][i] = infer_sampler_sample(s, l2);
        }
        infer_sampler_free(s);
    }
    CHECK(memcmp(seq[0][0], seq[0][1], sizeof(seq[0][0])) == 0);
    CHECK(memcmp(seq[0][0], seq[0][2], sizeof(seq[0][0])) != 0);
}

TEST(sampler_distribution_and_filters)
{
    /* Four tokens with probabilities 0.5 0.25 0.15 0.10 at T = 1. */
    const double pr[4] = {0.5, 0.25, 0.15, 0.10};
    float base[4];
    for (int i = 0; i < 4; i++)
        base[i] = (float)log(pr[i]);
    struct infer_sampler_params p = {
        .temperature = 1, .top_p = 1, .repeat_penalty = 1, .seed = 3};
    struct infer_sampler *s;
    CHECK_EQ(infer_sampler_new(&p, 4, &s), INFER_OK);
    int count[4] = {0};
    enum { N = 40000 };
    for (int i = 0; i < N; i++) {
        float l[4];
        memcpy(l, base, sizeof(l));
        count[infer_sampler_sample(s, l)]++;
    }
    infer_sampler_free(s);
    for (int i = 0; i < 4; i++) /* 5 sigma of a binomial */
        CHECK_NEAR(count[i] / (double)N, pr[i],
                   5 * sqrt(pr[i] * (1 - pr[i]) / N));
    /* top_p 0.7 keeps {0, 1}; min_p 0.4 keeps {0, 1} too; top_k 3. */
    struct {
        struct infer_sampler_params p;
        int allowed;
    } cases[] = {
        {{.temperature = 1, .top_p = 0.7f, .repeat_penalty = 1}, 2},
        {{.temperature = 1, .top_p = 1, .min_p = 0.4f, .repeat_penalty = 1}, 2},
        {{.temperature = 1, .top_k = 3, .top_p = 1, .repeat_penalty = 1}, 3},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        CHECK_EQ(infer_sampler_new(&cases[c].p, 4, &s), INFER_OK);
        int seen[4] = {0};
        for (int i = 0; i < 5000; i++) {
            float l[4];
            memcpy(l, base, sizeof(l));
            seen[infer_sampler_sample(s, l)]++;
        }
        infer_sampler_free(s);
        for (int i = 0; i < 4; i++)
            CHECK(i < cases[c].allowed ? seen[i] > 0 : seen[i] == 0);
    }
}

TEST(sampler_repetition_penalty)
{
    float l[3] = {2.0f, 1.9f, -1.0f};
    struct infer_sampler_params p = {
        .temperature = 0, .repeat_penalty = 1.5f, .repeat_last_n = 2};
    struct infer_sampler *s;
    CHECK_EQ(infer_sampler_new(&p, 3, &s), INFER_OK);
    infer_sampler_accept(s, 0, false);
    CHECK_EQ(infer_sampler_sample(s, l), 1); /* 2.0 / 1.5 < 1.9 */
    /* The window holds 2: after two more tokens, 0 is no longer in it. */
    infer_sampler_accept(s, 2, true);
    infer_sampler_accept(s, 2, true);
    float l2[3] = {2.0f, 1.9f, -1.0f};
    CHECK_EQ(infer_sampler_sample(s, l2), 0);
    CHECK_NEAR(l2[2], -1.5, 1e-6); /* negative logits are multiplied */
    infer_sampler_free(s);
}

/* OpenAI's penalties: only generated tokens count, presence once,
 * frequency per occurrence; reset forgets the counts. */
TEST(sampler_presence_frequency)
{
    struct infer_sampler_params p = {.temperature = 0,
                                     .repeat_penalty = 1,
                                     .presence_penalty = 0.25f,
                                     .frequency_penalty = 0.5f};
    struct infer_sampler *s;
    CHECK_EQ(infer_sampler_new(&p, 4, &s), INFER_OK);
    infer_sampler_accept(s, 0, false); /* a prompt token: not counted */
    float l[4] = {3.0f, 2.0f, 1.5f, -1.0f};
    CHECK_EQ(infer_sampler_sample(s, l), 0);
    CHECK_NEAR(l[0], 3.0, 1e-6);
    infer_sampler_accept(s, 0, true);
    float l1[4] = {3.0f, 2.0f, 1.5f, -1.0f};
    CHECK_EQ(infer_sampler_sample(s, l1), 0); /* 3 - 0.5 - 0.25 = 2.25 */
    CHECK_NEAR(l1[0], 2.25, 1e-6);
    infer_sampler_accept(s, 0, true);
    infer_sampler_accept(s, 3, true);
    float l2[4] = {3.0f, 2.0f, 1.5f, -1.0f};
    CHECK_EQ(infer_sampler_sample(s, l2), 1); /* 3 - 1.0 - 0.25 = 1.75 */
    CHECK_NEAR(l2[0], 1.75, 1e-6);
    CHECK_NEAR(l2[3], -1.75, 1e-6);
    CHECK_NEAR(l2[2], 1.5, 1e-6); /* never generated: untouched */
    infer_sampler_reset(s);
    float l3[4] = {3.0f, 2.0f, 1.5f, -1.0f};
    CHECK_EQ(infer_sampler_sample(s, l3), 0);
    CHECK_NEAR(l3[0], 3.0, 1e-6);
    infer_sampler_free(s);

    /* Negative values encourage repeats, as OpenAI allows. */
    p.presence_penalty = -2;
    p.frequency_penalty = 0;
    CHECK_EQ(infer_sampler_new(&p, 4, &s), INFER_OK);
    infer_sampler_accept(s, 2, true);
    float l4[4] = {3.0f, 2.0f, 1.5f, -1.0f};
    CHECK_EQ(infer_sampler_sample(s, l4), 2);
    infer_sampler_free(s);
}

/* logit_bias is added before sampling, greedy included; the sampler keeps
 * its own copy, and refuses tokens outside the vocabulary. */
TEST(sampler_logit_bias)
{
    struct infer_logit_bias b[2] = {{0, -100}, {2, 0.75f}};
    struct infer_sampler_params p = {
        .temperature = 0, .logit_bias = b, .n_logit_bias = 2};
    struct infer_sampler *s;
    CHECK_EQ(infer_sampler_new(&p, 4, &s), INFER_OK);
    b[1].bias = -50; /* the caller's array may change after new */
    float l[4] = {3.0f, 2.0f, 1.5f, -1.0f};
    CHECK_EQ(infer_sampler_sample(s, l), 2); /* 1.5 + 0.75 > 2.0 */
    CHECK_NEAR(l[0], -97.0, 1e-4);
    infer_sampler_free(s);
    /* With temperature, a banned token is never drawn. */
    b[1].bias = 0;
    p = (struct infer_sampler_params){.temperature = 1,
                                      .top_p = 1,
                                      .logit_bias = b,
                                      .n_logit_bias = 1,
                                      .seed = 5};
    CHECK_EQ(infer_sampler_new(&p, 4, &s), INFER_OK);
    int hits = 0;
    for (int i = 0; i < 2000; i++) {
        float l2[4] = {3.0f, 2.0f, 1.5f, -1.0f};
        hits += infer_sampler_sample(s, l2) == 0;
    }
    CHECK_EQ(hits, 0);
    infer_sampler_free(s);
    b[0].token = 4;
    CHECK_EQ(infer_sampler_new(&p, 4, &s), INFER_ERR_ARG);
    CHECK(s == NULL);
}

TEST(stop_strings)
{
    const char *stops[] = {"</s>", "\n\nUser:"};
    size_t hold;
    CHECK_EQ(infer_stop_find("hello </s> x", 12, stops, 2, &hold), 6);
    CHECK_EQ(infer_stop_find("hello </", 8, stops, 2, &hold), -1);
    CHECK_EQ(hold, 2);
    CHECK_EQ(infer_stop_find("a\n\nUs", 5, stops, 2, &hold), -1);
    CHECK_EQ(hold, 4);
    CHECK_EQ(infer_stop_find("plain", 5, stops, 2, &hold), -1);
    CHECK_EQ(hold, 0);
    CHECK_EQ(infer_stop_find("x\n\nUser: y", 10, stops, 2, &hold), 1);
}

static const struct check_test tests[] = {
    TEST_ENTRY(fp16_all_values_round_trip),
    TEST_ENTRY(fp16_bf16_round_to_nearest),
    TEST_ENTRY(quantize_round_trip_every_type),
    TEST_ENTRY(row_bytes_and_block_layouts),
    TEST_ENTRY(activation_quantizers),
    TEST_ENTRY(matmul_every_set_every_type),
    TEST_ENTRY(simd_matches_scalar),
    TEST_ENTRY(matmul_result_independent_of_tiling),
    TEST_ENTRY(q8r_packed_kernels),
    TEST_ENTRY(q4r_packed_kernels),
    TEST_ENTRY(q5_0_packs_as_q8r),
    TEST_ENTRY(kquant_packed_kernels),
    TEST_ENTRY(q51r_packed_kernels),
    TEST_ENTRY(attn_qk_every_set),
    TEST_ENTRY(to_half_every_set),
    TEST_ENTRY(softmax_every_set),
    TEST_ENTRY(attn_v_every_set),
    TEST_ENTRY(rmsnorm_every_set),
    TEST_ENTRY(quant_and_silu_every_set),
    TEST_ENTRY(pool_runs_all_threads_with_barriers),
    TEST_ENTRY(sampler_greedy_and_seeded),
    TEST_ENTRY(sampler_distribution_and_filters),
    TEST_ENTRY(sampler_repetition_penalty),
    TEST_ENTRY(sampler_presence_frequency),
    TEST_ENTRY(sampler_logit_bias),
    TEST_ENTRY(stop_strings),
};

CHECK_MAIN(tests)
