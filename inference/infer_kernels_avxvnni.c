/*
 * infer_kernels_avxvnni.c: the Q8R matmul for CPUs with AVX-VNNI (the VEX,
 * 256-bit VPDPBUSD) but not AVX-512 VNNI: Intel's Alder Lake and later
 * client cores and its E-core servers (Sierra Forest). This file alone is
 * compiled with -mavx2 -mfma -mf16c -mavxvnni; the "avxvnni" set is the
 * AVX2 set with this kernel (infer_kernels_get builds it after CPUID).
 *
 * The layout and driver are the AVX-512 kernel's (infer_kernels_x86.h):
 * each 64-byte quad of 16 rows is two halves of 8 rows, multiplied by an
 * activation row's 4 bytes broadcast with one VPDPBUSD each, the sums
 * starting at -128 x the block's activation sum (the weights are stored
 * + 128). Integer sums are exact and the float steps are those of the
 * other Q8R kernels, so all give the same bits.
 */
#include <immintrin.h>
#include <string.h>

#include "infer_kernels.h"
#include "infer_kernels_x86.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

#define Q8R_S     3    /* activation rows per pass: 2 x 3 int and float sums */
#define Q8R_AHEAD 8192 /* prefetch distance, bytes, when passes are short */

ALWAYS_INLINE int32_t load_i32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* One group (at gp) by ns activation rows, prefetching pf_lines lines at
 * pf spread over the blocks. */
ALWAYS_INLINE void q8r_tile(const uint8_t *gp, int64_t nblk, const char *xa,
                            size_t xa_stride, int ns, float *y, int64_t ldy,
                            const char *pf, size_t pf_lines)
{
    __m256 facc[Q8R_S][2];
    const struct infer_q8a *x[Q8R_S];
    for (int s = 0; s < ns; s++) {
        facc[s][0] = facc[s][1] = _mm256_setzero_ps();
        x[s] = (const struct infer_q8a *)(xa + (size_t)s * xa_stride);
    }
    size_t due = 0; /* pf_lines per block, in nblk-ths of a line */
    for (int64_t i = 0; i < nblk; i++) {
        const uint8_t *pair = gp + (size_t)(i / 2) * Q8R_PAIR;
        for (due += pf_lines; due >= (size_t)nblk; due -= (size_t)nblk) {
            _mm_prefetch(pf, _MM_HINT_T0);
            pf += 64;
        }
        const uint8_t *sc = pair + 32 * (i % 2), *q = pair + 64 + 512 * (i % 2);
        __m256i acc[Q8R_S][2];
        for (int s = 0; s < ns; s++)
            acc[s][0] = acc[s][1] = _mm256_set1_epi32(x[s][i].nsum128);
        for (int j = 0; j < 8; j++) {
            __m256i xv[Q8R_S];
            for (int s = 0; s < ns; s++)
                xv[s] = _mm256_set1_epi32(load_i32(x[s][i].qs + 4 * j));
            for (int h = 0; h < 2; h++) {
                __m256i w =
                    _mm256_loadu_si256((const __m256i *)(q + 64 * j + 32 * h));
                for (int s = 0; s < ns; s++)
                    acc[s][h] = _mm256_dpbusd_avx_epi32(acc[s][h], w, xv[s]);
            }
        }
        __m256 dw[2] = {
            _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sc)),
            _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sc + 16)))};
        for (int s = 0; s < ns; s++)
            for (int h = 0; h < 2; h++)
                facc[s][h] = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(acc[s][h]),
                    _mm256_mul_ps(dw[h], _mm256_set1_ps(x[s][i].d)),
                    facc[s][h]);
    }
    for (int s = 0; s < ns; s++) {
        _mm256_storeu_ps(y + (size_t)s * ldy, facc[s][0]);
        _mm256_storeu_ps(y + (size_t)s * ldy + 8, facc[s][1]);
    }
}

ALWAYS_INLINE void q8r_tiles(const uint8_t *gp, int64_t nblk, const char *xb,
                             size_t xa_stride, int ns, float *yb, int64_t ldy,
                             const char *pf, size_t pf_lines)
{
    switch (ns) {
    case 1:
        q8r_tile(gp, nblk, xb, xa_stride, 1, yb, ldy, pf, pf_lines);
        break;
    case 2:
        q8r_tile(gp, nblk, xb, xa_stride, 2, yb, ldy, pf, pf_lines);
        break;
    default:
        q8r_tile(gp, nblk, xb, xa_stride, 3, yb, ldy, pf, pf_lines);
        break;
    }
}

Q8R_DRIVER(mm_q8r, q8r_tiles, Q8R_S, Q8R_AHEAD)

const infer_mm_packed_fn infer__mm_q8r_avxvnni = mm_q8r;
