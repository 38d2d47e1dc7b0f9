/*
 * infer_kernels_avx512.c: the matmul kernels for AVX-512 F/BW/VL + VNNI.
 * This file alone is compiled with those flags (inference/CMakeLists.txt);
 * nothing here runs unless infer_kernels_get() saw them in CPUID.
 *
 * Float weights use 16-wide FMA; Q8_0 and Q4_0 use VPDPBUSD (u8 x s8 summed
 * straight into int32), which replaces AVX2's maddubs + madd pair. The
 * K-quant kernels are the AVX2 ones.
 */
#include <immintrin.h>

#include "infer_kernels.h"
#include "infer_kernels_x86.h"

static inline __m512 load_f32x16(const float *p)
{
    return _mm512_loadu_ps(p);
}

static inline __m512 load_f16x16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 load_bf16x16(const uint16_t *p)
{
    __m512i v =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

static inline float id_f32(float v)
{
    return v;
}

#define FLOAT_ROW16(name, wty, LOAD, CONV)                                     \
    static void name(const wty *w, int64_t k, const char *xa,                 \
                     size_t xa_stride, int nb, float *out)                     \
    {                                                                          \
        __m512 acc[MM_TILE];                                                   \
        const float *x[MM_TILE];                                               \
        for (int b = 0; b < nb; b++) {                                         \
            acc[b] = _mm512_setzero_ps();                                      \
            x[b] = (const float *)(xa + (size_t)b * xa_stride);                \
        }                                                                      \
        int64_t i = 0;                                                         \
        for (; i + 16 <= k; i += 16) {                                         \
            __m512 wv = LOAD(w + i);                                           \
            for (int b = 0; b < nb; b++)                                       \
                acc[b] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[b] + i),        \
                                         acc[b]);                              \
        }                                                                      \
        for (int b = 0; b < nb; b++) {                                         \
            float s = _mm512_reduce_add_ps(acc[b]);                            \
            for (int64_t j = i; j < k; j++)                                    \
                s += CONV(w[j]) * x[b][j];                                     \
            out[b] = s;                                                        \
        }                                                                      \
    }

FLOAT_ROW16(row_f32, float, load_f32x16, id_f32)
FLOAT_ROW16(row_f16, uint16_t, load_f16x16, infer_fp16_to_f32)
FLOAT_ROW16(row_bf16, uint16_t, load_bf16x16, infer_bf16_to_f32)

/* Two blocks per 512-bit register: |w| (u8) times sign(w) * x (s8) summed
 * into 16 int32 lanes by one VPDPBUSD, then scaled per block half. */
static inline __m512i load2(const int8_t *a, const int8_t *b)
{
    return _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
        _mm256_loadu_si256((const __m256i *)b), 1);
}

static inline __m512 scale2(float lo, float hi)
{
    return _mm512_castsi512_ps(_mm512_inserti64x4(
        _mm512_castps_si512(_mm512_set1_ps(lo)),
        _mm256_castps_si256(_mm256_set1_ps(hi)), 1));
}

static void row_q8_0(const struct infer_block_q8_0 *w, int64_t k,
                     const char *xa, size_t xa_stride, int nb, float *out)
{
    __m512 acc[MM_TILE];
    const struct infer_q8a *x[MM_TILE];
    for (int b = 0; b < nb; b++) {
        acc[b] = _mm512_setzero_ps();
        x[b] = (const struct infer_q8a *)(xa + (size_t)b * xa_stride);
    }
    const int64_t nblk = k / INFER_QK;
    int64_t i = 0;
    for (; i + 2 <= nblk; i += 2) {
        __m512i wq = load2(w[i].qs, w[i + 1].qs);
        __m512i aw = _mm512_abs_epi8(wq);
        __mmask64 neg = _mm512_movepi8_mask(wq);
        float d0 = _cvtsh_ss(w[i].d), d1 = _cvtsh_ss(w[i + 1].d);
        for (int b = 0; b < nb; b++) {
            __m512i xq = load2(x[b][i].qs, x[b][i + 1].qs);
            /* sign(w) * x: negate x where w < 0 (w = 0 gives |w| = 0). */
            __m512i sx = _mm512_mask_sub_epi8(xq, neg,
                                              _mm512_setzero_si512(), xq);
            __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, sx);
            acc[b] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(p),
                scale2(d0 * x[b][i].d, d1 * x[b][i + 1].d), acc[b]);
        }
    }
    for (int b = 0; b < nb; b++) {
        float s = _mm512_reduce_add_ps(acc[b]);
        for (int64_t j = i; j < nblk; j++) {
            int sum = 0;
            for (int t = 0; t < INFER_QK; t++)
                sum += w[j].qs[t] * x[b][j].qs[t];
            s += _cvtsh_ss(w[j].d) * x[b][j].d * (float)sum;
        }
        out[b] = s;
    }
}

static void row_q4_0(const struct infer_block_q4_0 *w, int64_t k,
                     const char *xa, size_t xa_stride, int nb, float *out)
{
    __m256 acc[MM_TILE];
    float corr[MM_TILE];
    const struct infer_q8a *x[MM_TILE];
    for (int b = 0; b < nb; b++) {
        acc[b] = _mm256_setzero_ps();
        corr[b] = 0;
        x[b] = (const struct infer_q8a *)(xa + (size_t)b * xa_stride);
    }
    const __m256i m4 = _mm256_set1_epi8(0xf), zero = _mm256_setzero_si256();
    for (int64_t i = 0; i < k / INFER_QK; i++) {
        __m128i q = _mm_loadu_si128((const __m128i *)w[i].qs);
        __m256i wq = _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
        float dw = _cvtsh_ss(w[i].d);
        for (int b = 0; b < nb; b++) {
            __m256i xq = _mm256_loadu_si256((const __m256i *)x[b][i].qs);
            float s = dw * x[b][i].d;
            acc[b] = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(zero, wq, xq)),
                _mm256_set1_ps(s), acc[b]);
            corr[b] += s * (float)(8 * x[b][i].sum);
        }
    }
    for (int b = 0; b < nb; b++)
        out[b] = infer__hsum256(acc[b]) - corr[b];
}

MM_DRIVER(static, mm_f32, row_f32, float)
MM_DRIVER(static, mm_f16, row_f16, uint16_t)
MM_DRIVER(static, mm_bf16, row_bf16, uint16_t)
MM_DRIVER(static, mm_q8_0, row_q8_0, struct infer_block_q8_0)
MM_DRIVER(static, mm_q4_0, row_q4_0, struct infer_block_q4_0)

const struct infer_kernels infer_kernels_avx512 = {
    .name = "avx512",
    .mm =
        {
            [INFER_TYPE_F32] = mm_f32,
            [INFER_TYPE_F16] = mm_f16,
            [INFER_TYPE_BF16] = mm_bf16,
            [INFER_TYPE_Q8_0] = mm_q8_0,
            [INFER_TYPE_Q4_0] = mm_q4_0,
            [INFER_TYPE_Q4_K] = infer__mm_q4_k_avx2,
            [INFER_TYPE_Q6_K] = infer__mm_q6_k_avx2,
        },
};

double infer__fma_loop_avx512(long iters)
{
    __m512 acc[12];
    for (int j = 0; j < 12; j++)
        acc[j] = _mm512_set1_ps((float)j);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 12; j++)
            acc[j] = _mm512_fmadd_ps(acc[j], a, b);
    float sink = 0;
    for (int j = 0; j < 12; j++)
        sink += _mm512_reduce_add_ps(acc[j]);
    volatile float keep = sink;
    (void)keep;
    return (double)iters * 12 * 16 * 2;
}
