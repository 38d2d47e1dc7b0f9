/*
 * infer_kernels_x86.h: helpers shared by the x86 SIMD kernel files. Only
 * included from files compiled with at least -mavx2 -mfma -mf16c.
 */
#ifndef INFER_KERNELS_X86_H
#define INFER_KERNELS_X86_H

#include <immintrin.h>

#include "infer_kernels.h"

#define MM_TILE 4 /* activation rows per pass over a weight row */

static inline float infer__hsum256(__m256 v)
{
    __m128 s =
        _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Defines an infer_mm_fn from a per-row kernel
 * ROW(const WTY *w, int64_t k, const char *xa, size_t xa_stride, int nb,
 *     float *out) that handles nb <= MM_TILE activation rows. */
#define MM_DRIVER(QUAL, name, ROW, WTY)                                        \
    QUAL void name(const void *w, size_t w_stride, int64_t k, int64_t r0,      \
                   int64_t r1, const void *xa, size_t xa_stride, int nb,       \
                   float *y, int64_t ldy)                                      \
    {                                                                          \
        for (int64_t r = r0; r < r1; r++) {                                    \
            const WTY *wr = (const WTY *)((const char *)w + r * w_stride);     \
            for (int b0 = 0; b0 < nb; b0 += MM_TILE) {                         \
                int n = nb - b0 < MM_TILE ? nb - b0 : MM_TILE;                 \
                float out[MM_TILE];                                            \
                ROW(wr, k, (const char *)xa + (size_t)b0 * xa_stride,          \
                    xa_stride, n, out);                                        \
                for (int b = 0; b < n; b++)                                    \
                    y[(b0 + b) * ldy + r] = out[b];                            \
            }                                                                  \
        }                                                                      \
    }

/* The Q8R matmul (infer_mm_packed_fn) from a file's tile dispatcher
 * TILES(gp, nblk, xb, xa_stride, ns, yb, ldy, pf, pf_lines): one group of
 * 16 rows at gp against 1 <= ns <= S activation rows, prefetching pf_lines
 * lines at pf along the way. Groups go one after another, each against
 * the activation rows in passes of near-equal size (12 rows and S = 8 are
 * 6 + 6, not 8 + 4). While a group computes, the weights `ahead` bytes
 * further on (at least a group: one pass then has the time of the whole
 * group to fetch them; never past pf_end) are prefetched, in parts, one
 * per pass; AHEAD is the distance when the passes are short. */
#define Q8R_PAIR 1088 /* bytes of a pair of blocks of a group */
#define Q8R_DRIVER(name, TILES, S, AHEAD)                                      \
    static void name(const void *wp, int64_t k, int64_t r0, int64_t r1,        \
                     int64_t pf_end, bool cold, const void *xa,                \
                     size_t xa_stride, int nb, float *y, int64_t ldy)          \
    {                                                                          \
        const int64_t nblk = k / INFER_QK;                                     \
        const size_t gb = infer_q8r_group_bytes(k);                            \
        const int passes = (nb + (S)-1) / (S);                                 \
        const size_t ahead = passes > 1 || gb > (AHEAD) ? gb : (AHEAD);        \
        if (pf_end < r1)                                                       \
            pf_end = r1;                                                       \
        const char *end =                                                      \
            (const char *)wp + (size_t)(pf_end / INFER_Q8R_ROWS) * gb;         \
        /* The first `ahead` bytes nobody prefetched: ask for them all. */     \
        const char *start =                                                    \
            (const char *)wp + (size_t)(r0 / INFER_Q8R_ROWS) * gb;             \
        for (const char *p = start; cold && p < start + ahead && p < end;      \
             p += 64)                                                          \
            _mm_prefetch(p, _MM_HINT_T0);                                      \
        for (int64_t r = r0; r < r1; r += INFER_Q8R_ROWS) {                    \
            const uint8_t *gp =                                                \
                (const uint8_t *)wp + (size_t)(r / INFER_Q8R_ROWS) * gb;       \
            /* This group's share: the bytes [gp + ahead, + gb). */            \
            const char *pf = (const char *)gp + ahead;                         \
            size_t pf_bytes = pf + gb <= end ? gb                              \
                              : pf < end     ? (size_t)(end - pf)              \
                                             : 0;                                  \
            for (int p = 0, b = 0; p < passes; p++) {                          \
                int ns = (nb - b) / (passes - p);                              \
                const char *xb = (const char *)xa + (size_t)b * xa_stride;     \
                float *yb = y + (int64_t)b * ldy + r;                          \
                size_t l0 = pf_bytes / 64 * (size_t)p / (size_t)passes;        \
                size_t l1 = pf_bytes / 64 * (size_t)(p + 1) / (size_t)passes;  \
                TILES(gp, nblk, xb, xa_stride, ns, yb, ldy, pf + 64 * l0,      \
                      l1 - l0);                                                \
                b += ns;                                                       \
            }                                                                  \
        }                                                                      \
    }

/* The K-quant kernels of the AVX2 file, reused by the AVX-512 set. */
void infer__mm_q4_k_avx2(const void *w, size_t w_stride, int64_t k, int64_t r0,
                         int64_t r1, const void *xa, size_t xa_stride, int nb,
                         float *y, int64_t ldy);
void infer__mm_q6_k_avx2(const void *w, size_t w_stride, int64_t k, int64_t r0,
                         int64_t r1, const void *xa, size_t xa_stride, int nb,
                         float *y, int64_t ldy);

/* The scalar SwiGLU and softmax of infer_quant.c (the AVX2 set uses
 * them). */
void infer__silu_mul_scalar(float *g, const float *u, int64_t n);
void infer__softmax_scalar(float *s, int n, float scale, float *stat);
void infer__rmsnorm_scalar(float *o, const float *x, const float *w, int n,
                           float eps);

#endif
