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
