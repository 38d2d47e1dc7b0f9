/*
 * infer_kernels_x86.h: helpers shared by the x86 SIMD kernel files. Only
 * included from files compiled with at least -mavx2 -mfma -mf16c.
 */
#ifndef INFER_KERNELS_X86_H
#define INFER_KERNELS_X86_H

#include <immintrin.h>
#include <string.h>

#include "infer_kernels.h"

#define MM_TILE 4 /* activation rows per pass over a weight row */

/* 4 bytes as one int32 (to broadcast an activation quad). */
static inline int32_t infer__load_i32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

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
    PACKED_DRIVER(name, TILES, S, AHEAD, INFER_TYPE_Q8_0, INFER_QK)
/* The same for any packed type: TILES gets nblk = k / QKB blocks (Q4KR and
 * Q6KR: super-blocks) and spreads its prefetches over them. */
#define PACKED_DRIVER(name, TILES, S, AHEAD, TYPE, QKB)                        \
    static void name(const void *wp, int64_t k, int64_t r0, int64_t r1,        \
                     int64_t pf_end, bool cold, const void *xa,                \
                     size_t xa_stride, int nb, float *y, int64_t ldy)          \
    {                                                                          \
        const int64_t nblk = k / (QKB);                                        \
        const size_t gb = infer_packed_group_bytes((TYPE), k);                 \
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

/* A Q8R tile's share of the driver's prefetch: pf_lines lines spread over
 * nblk blocks, called once per block (due counts nblk-ths of a line). */
static inline __attribute__((always_inline)) void
infer__q8r_prefetch(size_t *due, size_t pf_lines, int64_t nblk, const char **pf)
{
    for (*due += pf_lines; *due >= (size_t)nblk; *due -= (size_t)nblk) {
        _mm_prefetch(*pf, _MM_HINT_T0);
        *pf += 64;
    }
}

/* The Q8R tile with 256-bit registers (the AVX2 and AVX-VNNI sets): one
 * group at gp by 1 <= ns <= 3 activation rows. A quad's 64 bytes are two
 * halves of 8 rows. In a file built with -mavxvnni each half and
 * activation row is one VPDPBUSD, the sums starting at -128 x the block's
 * activation sum (the weights are stored + 128); otherwise the weights go
 * back to int8 by a flip of the top bit and the sign trick makes the
 * products (maddubs of |w| by sign(w) * x: int16 pairs of at most
 * 2 * 128 * 127, no saturation). Either way the integer sums are exact and
 * the float steps are the AVX-512 kernel's: all Q8R kernels give the same
 * bits. */
static inline __attribute__((always_inline)) void
infer__q8r256_tile(const uint8_t *gp, int64_t nblk, const char *xa,
                   size_t xa_stride, int ns, float *y, int64_t ldy,
                   const char *pf, size_t pf_lines)
{
    __m256 facc[3][2];
    const struct infer_q8a *x[3];
    for (int s = 0; s < ns; s++) {
        facc[s][0] = facc[s][1] = _mm256_setzero_ps();
        x[s] = (const struct infer_q8a *)(xa + (size_t)s * xa_stride);
    }
    size_t due = 0;
    for (int64_t i = 0; i < nblk; i++) {
        const uint8_t *pair = gp + (size_t)(i / 2) * Q8R_PAIR;
        infer__q8r_prefetch(&due, pf_lines, nblk, &pf);
        const uint8_t *sc = pair + 32 * (i % 2), *q = pair + 64 + 512 * (i % 2);
        __m256i acc[3][2];
        for (int s = 0; s < ns; s++)
#if defined(__AVXVNNI__)
            acc[s][0] = acc[s][1] = _mm256_set1_epi32(x[s][i].nsum128);
#else
            acc[s][0] = acc[s][1] = _mm256_setzero_si256();
#endif
        for (int j = 0; j < 8; j++) {
            __m256i xv[3];
            for (int s = 0; s < ns; s++)
                xv[s] = _mm256_set1_epi32(infer__load_i32(x[s][i].qs + 4 * j));
            for (int h = 0; h < 2; h++) {
                __m256i w =
                    _mm256_loadu_si256((const __m256i *)(q + 64 * j + 32 * h));
#if defined(__AVXVNNI__)
                for (int s = 0; s < ns; s++)
                    acc[s][h] = _mm256_dpbusd_avx_epi32(acc[s][h], w, xv[s]);
#else
                w = _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80));
                __m256i aw = _mm256_sign_epi8(w, w);
                for (int s = 0; s < ns; s++)
                    acc[s][h] = _mm256_add_epi32(
                        acc[s][h],
                        _mm256_madd_epi16(_mm256_maddubs_epi16(
                                              aw, _mm256_sign_epi8(xv[s], w)),
                                          _mm256_set1_epi16(1)));
#endif
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

/* The K-quant kernels of the AVX2 file, reused by the AVX-512 set. */
void infer__mm_q4_k_avx2(const void *w, size_t w_stride, int64_t k, int64_t r0,
                         int64_t r1, const void *xa, size_t xa_stride, int nb,
                         float *y, int64_t ldy);
void infer__mm_q6_k_avx2(const void *w, size_t w_stride, int64_t k, int64_t r0,
                         int64_t r1, const void *xa, size_t xa_stride, int nb,
                         float *y, int64_t ldy);

/* The scalar Q5_0, Q5_1 and Q5_K matmuls of infer_quant.c (every set's, for the
 * rare matrix that is not packed). */
void infer__mm_q5_0_scalar(const void *w, size_t w_stride, int64_t k,
                           int64_t r0, int64_t r1, const void *xa,
                           size_t xa_stride, int nb, float *y, int64_t ldy);

void infer__mm_q5_1_scalar(const void *w, size_t w_stride, int64_t k,
                           int64_t r0, int64_t r1, const void *xa,
                           size_t xa_stride, int nb, float *y, int64_t ldy);
void infer__mm_q5_k_scalar(const void *w, size_t w_stride, int64_t k,
                           int64_t r0, int64_t r1, const void *xa,
                           size_t xa_stride, int nb, float *y, int64_t ldy);

/* The scalar SwiGLU and softmax of infer_quant.c (the AVX2 set uses
 * them). */
void infer__silu_mul_scalar(float *g, const float *u, int64_t n);
void infer__softmax_scalar(float *s, int n, float scale, float *stat);
void infer__rmsnorm_scalar(float *o, const float *x, const float *w, int n,
                           float eps);

#endif
