/*
 * infer_kernels_avx2.c: the matmul kernels for AVX2 + FMA + F16C. This file
 * alone is compiled with -mavx2 -mfma -mf16c (inference/CMakeLists.txt);
 * nothing here runs unless infer_kernels_get() saw those in CPUID.
 *
 * Each kernel walks the weight rows and, for each, the activation rows in
 * groups of up to 4 (MM_TILE), so a weight block is loaded once per group
 * and the whole row stays in L1 across groups. Integer kernels use the
 * sign trick (|w| as u8 times sign(w)*x as s8, maddubs) as llama.cpp does.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "infer_kernels.h"
#include "infer_kernels_x86.h"

/* ---- float weights ------------------------------------------------------- */

static inline __m256 load_f16x8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load_bf16x8(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static inline __m256 load_f32x8(const float *p)
{
    return _mm256_loadu_ps(p);
}

/* One weight row (loaded 8 at a time by LOAD, scalar tail by CONV) against
 * nb <= 4 float rows. */
#define FLOAT_ROW(name, wty, LOAD, CONV)                                       \
    static void name(const wty *w, int64_t k, const char *xa,                  \
                     size_t xa_stride, int nb, float *out)                     \
    {                                                                          \
        __m256 acc[MM_TILE];                                                   \
        const float *x[MM_TILE];                                               \
        for (int b = 0; b < nb; b++) {                                         \
            acc[b] = _mm256_setzero_ps();                                      \
            x[b] = (const float *)(xa + (size_t)b * xa_stride);                \
        }                                                                      \
        int64_t i = 0;                                                         \
        for (; i + 8 <= k; i += 8) {                                           \
            __m256 wv = LOAD(w + i);                                           \
            for (int b = 0; b < nb; b++)                                       \
                acc[b] =                                                       \
                    _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[b] + i), acc[b]);    \
        }                                                                      \
        for (int b = 0; b < nb; b++) {                                         \
            float s = infer__hsum256(acc[b]);                                  \
            for (int64_t j = i; j < k; j++)                                    \
                s += CONV(w[j]) * x[b][j];                                     \
            out[b] = s;                                                        \
        }                                                                      \
    }

static inline float id_f32(float v)
{
    return v;
}

FLOAT_ROW(row_f32, float, load_f32x8, id_f32)
FLOAT_ROW(row_f16, uint16_t, load_f16x8, infer_fp16_to_f32)
FLOAT_ROW(row_bf16, uint16_t, load_bf16x8, infer_bf16_to_f32)

/* ---- Q8_0 and Q4_0 --------------------------------------------------------
 */

static inline __m256i dot_u8s8(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* Register-blocked tiles of TW weight rows x TB activation rows (8 ymm
 * accumulators), one 32-block at a time. Q8_0 uses the sign trick (|w| as
 * u8 times sign(w) * x as s8: maddubs cannot take x + 128, its 16-bit pair
 * sums would saturate); Q4_0's nibbles are already unsigned and the -8
 * offset is taken off in int32 (8 * sum x) before the block is scaled.
 * Each output element sees the same operations whatever its tile, so
 * results do not depend on the batch composition. */
#define TW 2
#define TB 4

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void q8_0_block(const char *w, size_t w_stride, int64_t i,
                              const char *xa, size_t xa_stride, int nw, int nx,
                              __m256 acc[TW][TB])
{
    __m256i wv[TW], aw[TW];
    __m256 dw[TW];
    for (int r = 0; r < nw; r++) {
        const struct infer_block_q8_0 *wb =
            (const struct infer_block_q8_0 *)(w + (size_t)r * w_stride) + i;
        wv[r] = _mm256_loadu_si256((const __m256i *)wb->qs);
        aw[r] = _mm256_sign_epi8(wv[r], wv[r]);
        dw[r] = _mm256_set1_ps(_cvtsh_ss(wb->d));
    }
    for (int b = 0; b < nx; b++) {
        const struct infer_q8a *xb =
            (const struct infer_q8a *)(xa + (size_t)b * xa_stride) + i;
        __m256i xv = _mm256_loadu_si256((const __m256i *)xb->qs);
        __m256 dx = _mm256_set1_ps(xb->d);
        for (int r = 0; r < nw; r++) {
            __m256i p = dot_u8s8(aw[r], _mm256_sign_epi8(xv, wv[r]));
            acc[r][b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),
                                        _mm256_mul_ps(dw[r], dx), acc[r][b]);
        }
    }
}

ALWAYS_INLINE void q4_0_block(const char *w, size_t w_stride, int64_t i,
                              const char *xa, size_t xa_stride, int nw, int nx,
                              __m256 acc[TW][TB])
{
    const __m256i m4 = _mm256_set1_epi8(0xf);
    __m256i wv[TW];
    __m256 dw[TW];
    for (int r = 0; r < nw; r++) {
        const struct infer_block_q4_0 *wb =
            (const struct infer_block_q4_0 *)(w + (size_t)r * w_stride) + i;
        __m128i q = _mm_loadu_si128((const __m128i *)wb->qs);
        wv[r] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
        dw[r] = _mm256_set1_ps(_cvtsh_ss(wb->d));
    }
    for (int b = 0; b < nx; b++) {
        const struct infer_q8a *xb =
            (const struct infer_q8a *)(xa + (size_t)b * xa_stride) + i;
        __m256i xv = _mm256_loadu_si256((const __m256i *)xb->qs);
        /* 8 * sum(x) spread over the lanes the same way as the dot. */
        __m256i off = dot_u8s8(_mm256_set1_epi8(8), xv);
        __m256 dx = _mm256_set1_ps(xb->d);
        for (int r = 0; r < nw; r++) {
            __m256i p = _mm256_sub_epi32(dot_u8s8(wv[r], xv), off);
            acc[r][b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),
                                        _mm256_mul_ps(dw[r], dx), acc[r][b]);
        }
    }
}

#define QTILE(name, BLOCK)                                                     \
    ALWAYS_INLINE void name(const char *w, size_t w_stride, int64_t nblk,      \
                            const char *xa, size_t xa_stride, int nw, int nx,  \
                            float *y, int64_t ldy)                             \
    {                                                                          \
        __m256 acc[TW][TB];                                                    \
        for (int r = 0; r < nw; r++)                                           \
            for (int b = 0; b < nx; b++)                                       \
                acc[r][b] = _mm256_setzero_ps();                               \
        for (int64_t i = 0; i < nblk; i++)                                     \
            BLOCK(w, w_stride, i, xa, xa_stride, nw, nx, acc);                 \
        for (int r = 0; r < nw; r++)                                           \
            for (int b = 0; b < nx; b++)                                       \
                y[b * ldy + r] = infer__hsum256(acc[r][b]);                    \
    }

QTILE(q8_0_tile, q8_0_block)
QTILE(q4_0_tile, q4_0_block)

/* Weight rows TW at a time (a last odd row alone), each group against the
 * activation rows TB at a time; tile shapes are compile-time constants. */
#define QMM(name, TILE)                                                        \
    static void name(const void *w, size_t w_stride, int64_t k, int64_t r0,    \
                     int64_t r1, const void *xa, size_t xa_stride, int nb,     \
                     float *y, int64_t ldy)                                    \
    {                                                                          \
        const int64_t nblk = k / INFER_QK;                                     \
        for (int64_t r = r0; r < r1; r += TW) {                                \
            const char *wr = (const char *)w + (size_t)r * w_stride;           \
            const int nw = r1 - r < TW ? (int)(r1 - r) : TW;                   \
            for (int b = 0; b < nb; b += TB) {                                 \
                const char *xb = (const char *)xa + (size_t)b * xa_stride;     \
                float *yb = y + b * ldy + r;                                   \
                const int nx = nb - b < TB ? nb - b : TB;                      \
                if (nw == TW && nx == TB)                                      \
                    TILE(wr, w_stride, nblk, xb, xa_stride, TW, TB, yb, ldy);  \
                else if (nw == TW)                                             \
                    for (int q = 0; q < nx; q++)                               \
                        TILE(wr, w_stride, nblk, xb + q * xa_stride,           \
                             xa_stride, TW, 1, yb + q * ldy, ldy);             \
                else                                                           \
                    for (int q = 0; q < nx; q++)                               \
                        TILE(wr, w_stride, nblk, xb + q * xa_stride,           \
                             xa_stride, 1, 1, yb + q * ldy, ldy);              \
            }                                                                  \
        }                                                                      \
    }

QMM(mm_q8_0, q8_0_tile)
QMM(mm_q4_0, q4_0_tile)

/* ---- Q8R: Q8_0 with 16 rows interleaved (layout in infer_kernels.h) ----
 *
 * The packed layout and driver of the AVX-512 set, with the 256-bit tile
 * of infer_kernels_x86.h (the sign trick: no VNNI here). Packed, the
 * weights stream with the driver's prefetches: row-major Q8_0 without
 * them read ~15 GB/s at batch 1 here, a quarter of the bandwidth. */
#define Q8R_S     2    /* activation rows per pass: 16 ymm hold 2 x 2 sums */
#define Q8R_AHEAD 8192 /* prefetch distance, bytes, when passes are short */

ALWAYS_INLINE void q8r_tiles(const uint8_t *gp, int64_t nblk, const char *xb,
                             size_t xa_stride, int ns, float *yb, int64_t ldy,
                             const char *pf, size_t pf_lines)
{
    if (ns == 1)
        infer__q8r256_tile(gp, nblk, xb, xa_stride, 1, yb, ldy, pf, pf_lines);
    else
        infer__q8r256_tile(gp, nblk, xb, xa_stride, 2, yb, ldy, pf, pf_lines);
}

Q8R_DRIVER(mm_q8r, q8r_tiles, Q8R_S, Q8R_AHEAD)

/* ---- Q4R, Q4KR and Q6KR (layouts in infer_kernels.h) ---------------------
 *
 * The AVX-512 kernels' integer and float steps on 256-bit halves (rows 0-7
 * and 8-15 of a 64-byte line), with maddubs + madd for VPDPBUSD: the
 * quants are unsigned and small (at most 63), so the int16 pair sums
 * cannot saturate, which is also why the high nibble is shifted down here
 * rather than masked in place. The same bits as the AVX-512 kernels. */

#define KR2_S 2 /* activation rows per pass: 16 ymm */

/* acc + the dot of each int32 lane's 4 bytes, u8 w (at most 63) by s8 x. */
ALWAYS_INLINE __m256i dot4u(__m256i acc, __m256i w, __m256i x)
{
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x),
                                                   _mm256_set1_epi16(1)));
}

ALWAYS_INLINE __m256i bcast4(const int8_t *p)
{
    return _mm256_set1_epi32(infer__load_i32(p));
}

ALWAYS_INLINE __m256 halfs8(const uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

ALWAYS_INLINE void q4r_tile(const uint8_t *gp, int64_t nblk, const char *xa,
                            size_t xa_stride, int ns, float *y, int64_t ldy,
                            const char *pf, size_t pf_lines)
{
    __m256 facc[KR2_S][2];
    const struct infer_q8a *x[KR2_S];
    for (int s = 0; s < ns; s++) {
        facc[s][0] = facc[s][1] = _mm256_setzero_ps();
        x[s] = (const struct infer_q8a *)(xa + (size_t)s * xa_stride);
    }
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
    size_t due = 0;
    for (int64_t i = 0; i < nblk; i += 2) {
        const uint8_t *pair = gp + (size_t)(i / 2) * INFER_Q4R_PAIR;
        const bool two = i + 1 < nblk;
        infer__q8r_prefetch(&due, pf_lines, nblk, &pf);
        if (two)
            infer__q8r_prefetch(&due, pf_lines, nblk, &pf);
        __m256i alo[KR2_S][2], ahi[KR2_S][2];
        for (int s = 0; s < ns; s++)
            for (int h = 0; h < 2; h++) {
                alo[s][h] = _mm256_set1_epi32(x[s][i].nsum128 / 16);
                ahi[s][h] = two ? _mm256_set1_epi32(x[s][i + 1].nsum128 / 16)
                                : _mm256_setzero_si256();
            }
        for (int j = 0; j < 8; j++)
            for (int h = 0; h < 2; h++) {
                __m256i v = _mm256_loadu_si256(
                    (const __m256i *)(pair + 64 + 64 * j + 32 * h));
                __m256i wl = _mm256_and_si256(v, lo4);
                __m256i wh = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
                for (int s = 0; s < ns; s++) {
                    alo[s][h] =
                        dot4u(alo[s][h], wl, bcast4(x[s][i].qs + 4 * j));
                    if (two)
                        ahi[s][h] = dot4u(ahi[s][h], wh,
                                          bcast4(x[s][i + 1].qs + 4 * j));
                }
            }
        for (int h = 0; h < 2; h++) {
            __m256 dw0 = halfs8(pair + 16 * h),
                   dw1 = halfs8(pair + 32 + 16 * h);
            for (int s = 0; s < ns; s++) {
                facc[s][h] = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(alo[s][h]),
                    _mm256_mul_ps(dw0, _mm256_set1_ps(x[s][i].d)), facc[s][h]);
                if (two)
                    facc[s][h] = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(ahi[s][h]),
                        _mm256_mul_ps(dw1, _mm256_set1_ps(x[s][i + 1].d)),
                        facc[s][h]);
            }
        }
    }
    for (int s = 0; s < ns; s++) {
        _mm256_storeu_ps(y + (size_t)s * ldy, facc[s][0]);
        _mm256_storeu_ps(y + (size_t)s * ldy + 8, facc[s][1]);
    }
}

/* Q51R (Q5_1): the AVX-512 kernel's steps on two halves. */
ALWAYS_INLINE void q51r_tile(const uint8_t *gp, int64_t nblk, const char *xa,
                             size_t xa_stride, int ns, float *y, int64_t ldy,
                             const char *pf, size_t pf_lines)
{
    __m256 facc[KR2_S][2];
    const struct infer_q8a *x[KR2_S];
    for (int s = 0; s < ns; s++) {
        facc[s][0] = facc[s][1] = _mm256_setzero_ps();
        x[s] = (const struct infer_q8a *)(xa + (size_t)s * xa_stride);
    }
    size_t due = 0;
    for (int64_t i = 0; i < nblk; i++) {
        const uint8_t *pair = gp + (size_t)(i / 2) * INFER_Q51R_PAIR;
        const uint8_t *q = pair + 128 + 512 * (i % 2);
        infer__q8r_prefetch(&due, pf_lines, nblk, &pf);
        __m256i acc[KR2_S][2];
        for (int s = 0; s < ns; s++)
            acc[s][0] = acc[s][1] = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++)
            for (int h = 0; h < 2; h++) {
                __m256i wv =
                    _mm256_loadu_si256((const __m256i *)(q + 64 * j + 32 * h));
                for (int s = 0; s < ns; s++)
                    acc[s][h] =
                        dot4u(acc[s][h], wv, bcast4(x[s][i].qs + 4 * j));
            }
        for (int h = 0; h < 2; h++) {
            __m256 dw = halfs8(pair + 32 * (i % 2) + 16 * h);
            __m256 mw = halfs8(pair + 64 + 32 * (i % 2) + 16 * h);
            for (int s = 0; s < ns; s++) {
                float sx = x[s][i].d * (float)(-x[s][i].nsum128 / 128);
                facc[s][h] = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(acc[s][h]),
                    _mm256_mul_ps(dw, _mm256_set1_ps(x[s][i].d)), facc[s][h]);
                facc[s][h] =
                    _mm256_fmadd_ps(mw, _mm256_set1_ps(sx), facc[s][h]);
            }
        }
    }
    for (int s = 0; s < ns; s++) {
        _mm256_storeu_ps(y + (size_t)s * ldy, facc[s][0]);
        _mm256_storeu_ps(y + (size_t)s * ldy + 8, facc[s][1]);
    }
}

/* Q4KR (nib: two sub-blocks a byte) and Q5KR (a byte a quant), as the
 * AVX-512 set's k45_tile. */
ALWAYS_INLINE void k45_tile(const uint8_t *gp, int64_t nsb, const char *xa,
                            size_t xa_stride, int ns, float *y, int64_t ldy,
                            const char *pf, size_t pf_lines, bool nib)
{
    const size_t sbb = nib ? INFER_Q4KR_SB : INFER_Q5KR_SB;
    __m256 facc[KR2_S][2];
    const struct infer_q8k *x[KR2_S];
    for (int s = 0; s < ns; s++) {
        facc[s][0] = facc[s][1] = _mm256_setzero_ps();
        x[s] = (const struct infer_q8k *)(xa + (size_t)s * xa_stride);
    }
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
    size_t due = 0;
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *sb = gp + (size_t)i * sbb;
        infer__q8r_prefetch(&due, pf_lines, nsb, &pf);
        const uint8_t *q = sb + 320;
        __m256i sumi[KR2_S][2];
        for (int s = 0; s < ns; s++)
            sumi[s][0] = sumi[s][1] = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) /* sub-blocks 2c (low), 2c + 1 */
            for (int h = 0; h < 2; h++) {
                __m256i alo[KR2_S], ahi[KR2_S];
                for (int s = 0; s < ns; s++)
                    alo[s] = ahi[s] = _mm256_setzero_si256();
                for (int t = 0; t < 8; t++) {
                    const uint8_t *l = nib ? q + 512 * c + 64 * t + 32 * h
                                           : q + 1024 * c + 64 * t + 32 * h;
                    __m256i wl = _mm256_loadu_si256((const __m256i *)l), wh;
                    if (nib) {
                        wh = _mm256_and_si256(_mm256_srli_epi16(wl, 4), lo4);
                        wl = _mm256_and_si256(wl, lo4);
                    } else {
                        wh = _mm256_loadu_si256((const __m256i *)(l + 512));
                    }
                    for (int s = 0; s < ns; s++) {
                        const int8_t *xq = x[s][i].qs + 64 * c + 4 * t;
                        alo[s] = dot4u(alo[s], wl, bcast4(xq));
                        ahi[s] = dot4u(ahi[s], wh, bcast4(xq + 32));
                    }
                }
                __m256i sc0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    (const __m128i *)(sb + 64 + 32 * c + 8 * h)));
                __m256i sc1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    (const __m128i *)(sb + 80 + 32 * c + 8 * h)));
                for (int s = 0; s < ns; s++)
                    sumi[s][h] = _mm256_add_epi32(
                        sumi[s][h],
                        _mm256_add_epi32(_mm256_mullo_epi32(alo[s], sc0),
                                         _mm256_mullo_epi32(ahi[s], sc1)));
            }
        for (int h = 0; h < 2; h++) {
            __m256i summ[KR2_S];
            for (int s = 0; s < ns; s++)
                summ[s] = _mm256_setzero_si256();
            for (int t = 0; t < 4; t++) {
                __m256i mt = _mm256_cvtepu8_epi16(_mm_loadu_si128(
                    (const __m128i *)(sb + 192 + 32 * t + 16 * h)));
                for (int s = 0; s < ns; s++) {
                    const int16_t *bs = x[s][i].bsums + 4 * t;
                    int32_t pr =
                        (int32_t)((uint32_t)(uint16_t)(bs[0] + bs[1]) |
                                  (uint32_t)(uint16_t)(bs[2] + bs[3]) << 16);
                    summ[s] = _mm256_add_epi32(
                        summ[s], _mm256_madd_epi16(mt, _mm256_set1_epi32(pr)));
                }
            }
            __m256 d = halfs8(sb + 16 * h), dmin = halfs8(sb + 32 + 16 * h);
            for (int s = 0; s < ns; s++) {
                __m256 a = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sumi[s][h]));
                __m256 b = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(summ[s]));
                facc[s][h] = _mm256_add_ps(
                    facc[s][h], _mm256_mul_ps(_mm256_set1_ps(x[s][i].d),
                                              _mm256_sub_ps(a, b)));
            }
        }
    }
    for (int s = 0; s < ns; s++) {
        _mm256_storeu_ps(y + (size_t)s * ldy, facc[s][0]);
        _mm256_storeu_ps(y + (size_t)s * ldy + 8, facc[s][1]);
    }
}

#define Q4KR_TILE(gp, nsb, xa, st, ns, y, ldy, pf, pl)                         \
    k45_tile(gp, nsb, xa, st, ns, y, ldy, pf, pl, true)
#define Q5KR_TILE(gp, nsb, xa, st, ns, y, ldy, pf, pl)                         \
    k45_tile(gp, nsb, xa, st, ns, y, ldy, pf, pl, false)

ALWAYS_INLINE void q6kr_tile(const uint8_t *gp, int64_t nsb, const char *xa,
                             size_t xa_stride, int ns, float *y, int64_t ldy,
                             const char *pf, size_t pf_lines)
{
    __m256 facc[KR2_S][2];
    const struct infer_q8k *x[KR2_S];
    for (int s = 0; s < ns; s++) {
        facc[s][0] = facc[s][1] = _mm256_setzero_ps();
        x[s] = (const struct infer_q8k *)(xa + (size_t)s * xa_stride);
    }
    size_t due = 0;
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *sb = gp + (size_t)i * INFER_Q6KR_SB;
        infer__q8r_prefetch(&due, pf_lines, nsb, &pf);
        const uint8_t *q = sb + 576;
        for (int h = 0; h < 2; h++) {
            __m256i sumi[KR2_S], off[KR2_S];
            for (int s = 0; s < ns; s++)
                sumi[s] = off[s] = _mm256_setzero_si256();
            for (int g = 0; g < 16; g++) {
                __m256i acc[KR2_S];
                for (int s = 0; s < ns; s++)
                    acc[s] = _mm256_setzero_si256();
                for (int t = 0; t < 4; t++) {
                    __m256i wv = _mm256_loadu_si256(
                        (const __m256i *)(q + 256 * g + 64 * t + 32 * h));
                    for (int s = 0; s < ns; s++)
                        acc[s] = dot4u(acc[s], wv,
                                       bcast4(x[s][i].qs + 16 * g + 4 * t));
                }
                __m256i scg = _mm256_cvtepi8_epi32(_mm_loadl_epi64(
                    (const __m128i *)(sb + 64 + 16 * g + 8 * h)));
                for (int s = 0; s < ns; s++)
                    sumi[s] = _mm256_add_epi32(sumi[s],
                                               _mm256_mullo_epi32(acc[s], scg));
            }
            for (int t = 0; t < 8; t++) {
                __m256i st = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                    (const __m128i *)(sb + 320 + 32 * t + 16 * h)));
                for (int s = 0; s < ns; s++) {
                    const int16_t *bs = x[s][i].bsums + 2 * t;
                    int32_t pr = (int32_t)((uint32_t)(uint16_t)bs[0] |
                                           (uint32_t)(uint16_t)bs[1] << 16);
                    off[s] = _mm256_add_epi32(
                        off[s], _mm256_madd_epi16(st, _mm256_set1_epi32(pr)));
                }
            }
            __m256 d = halfs8(sb + 16 * h);
            for (int s = 0; s < ns; s++) {
                __m256i v =
                    _mm256_sub_epi32(sumi[s], _mm256_slli_epi32(off[s], 5));
                __m256 dd = _mm256_mul_ps(_mm256_set1_ps(x[s][i].d), d);
                facc[s][h] = _mm256_add_ps(
                    facc[s][h], _mm256_mul_ps(dd, _mm256_cvtepi32_ps(v)));
            }
        }
    }
    for (int s = 0; s < ns; s++) {
        _mm256_storeu_ps(y + (size_t)s * ldy, facc[s][0]);
        _mm256_storeu_ps(y + (size_t)s * ldy + 8, facc[s][1]);
    }
}

#define KR2_TILES(name, TILE)                                                  \
    ALWAYS_INLINE void name(const uint8_t *gp, int64_t nblk, const char *xb,   \
                            size_t xa_stride, int ns, float *yb, int64_t ldy,  \
                            const char *pf, size_t pf_lines)                   \
    {                                                                          \
        if (ns == 1)                                                           \
            TILE(gp, nblk, xb, xa_stride, 1, yb, ldy, pf, pf_lines);           \
        else                                                                   \
            TILE(gp, nblk, xb, xa_stride, 2, yb, ldy, pf, pf_lines);           \
    }
KR2_TILES(q4r_tiles, q4r_tile)
KR2_TILES(q51r_tiles, q51r_tile)
KR2_TILES(q4kr_tiles, Q4KR_TILE)
KR2_TILES(q5kr_tiles, Q5KR_TILE)
KR2_TILES(q6kr_tiles, q6kr_tile)
PACKED_DRIVER(mm_q4r, q4r_tiles, KR2_S, Q8R_AHEAD, INFER_TYPE_Q4_0, INFER_QK)
PACKED_DRIVER(mm_q51r, q51r_tiles, KR2_S, Q8R_AHEAD, INFER_TYPE_Q5_1, INFER_QK)
PACKED_DRIVER(mm_q4kr, q4kr_tiles, KR2_S, Q8R_AHEAD, INFER_TYPE_Q4_K,
              INFER_QK_K)
PACKED_DRIVER(mm_q5kr, q5kr_tiles, KR2_S, Q8R_AHEAD, INFER_TYPE_Q5_K,
              INFER_QK_K)
PACKED_DRIVER(mm_q6kr, q6kr_tiles, KR2_S, Q8R_AHEAD, INFER_TYPE_Q6_K,
              INFER_QK_K)

/* ---- Q4_K and Q6_K --------------------------------------------------------
 */

static void k4_scales(const uint8_t *q, int16_t *sc, int16_t *m)
{
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            sc[j] = q[j] & 63;
            m[j] = q[j + 4] & 63;
        } else {
            sc[j] = (int16_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
            m[j] = (int16_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
    }
}

static void row_q4_k(const struct infer_block_q4_k *w, int64_t k,
                     const char *xa, size_t xa_stride, int nb, float *out)
{
    __m256 acc[MM_TILE];
    float corr[MM_TILE];
    const struct infer_q8k *x[MM_TILE];
    for (int b = 0; b < nb; b++) {
        acc[b] = _mm256_setzero_ps();
        corr[b] = 0;
        x[b] = (const struct infer_q8k *)(xa + (size_t)b * xa_stride);
    }
    const __m256i m4 = _mm256_set1_epi8(0xf);
    for (int64_t i = 0; i < k / INFER_QK_K; i++) {
        int16_t sc[8], m[8];
        k4_scales(w[i].scales, sc, m);
        float d = _cvtsh_ss(w[i].d), dmin = _cvtsh_ss(w[i].dmin);
        __m256i lo[4], hi[4];
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * c));
            lo[c] = _mm256_and_si256(q, m4);
            hi[c] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        }
        for (int b = 0; b < nb; b++) {
            const struct infer_q8k *y = &x[b][i];
            __m256i sumi = _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                __m256i y0 =
                    _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c));
                __m256i y1 =
                    _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c + 32));
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo[c], y0),
                                               _mm256_set1_epi16(sc[2 * c]));
                __m256i p1 =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(hi[c], y1),
                                      _mm256_set1_epi16(sc[2 * c + 1]));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            }
            int summ = 0;
            for (int j = 0; j < 8; j++)
                summ += m[j] * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
            acc[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi),
                                     _mm256_set1_ps(d * y->d), acc[b]);
            corr[b] += dmin * y->d * (float)summ;
        }
    }
    for (int b = 0; b < nb; b++)
        out[b] = infer__hsum256(acc[b]) - corr[b];
}

static void row_q6_k(const struct infer_block_q6_k *w, int64_t k,
                     const char *xa, size_t xa_stride, int nb, float *out)
{
    __m256 acc[MM_TILE];
    float corr[MM_TILE];
    const struct infer_q8k *x[MM_TILE];
    for (int b = 0; b < nb; b++) {
        acc[b] = _mm256_setzero_ps();
        corr[b] = 0;
        x[b] = (const struct infer_q8k *)(xa + (size_t)b * xa_stride);
    }
    const __m256i m4 = _mm256_set1_epi8(0xf), m2 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < k / INFER_QK_K; i++) {
        __m256i q[8], scv[8];
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h, *qh = w[i].qh + 32 * h;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hv = _mm256_loadu_si256((const __m256i *)qh);
            __m256i lo[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                             _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                             _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
            for (int t = 0; t < 4; t++) {
                __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hv, 2 * t), m2);
                q[4 * h + t] = _mm256_or_si256(lo[t], _mm256_slli_epi16(hb, 4));
                int g = 8 * h + 2 * t;
                scv[4 * h + t] =
                    _mm256_set_m128i(_mm_set1_epi16(w[i].scales[g + 1]),
                                     _mm_set1_epi16(w[i].scales[g]));
            }
        }
        float d = _cvtsh_ss(w[i].d);
        for (int b = 0; b < nb; b++) {
            const struct infer_q8k *y = &x[b][i];
            __m256i sumi = _mm256_setzero_si256();
            for (int c = 0; c < 8; c++) {
                __m256i yv =
                    _mm256_loadu_si256((const __m256i *)(y->qs + 32 * c));
                sumi = _mm256_add_epi32(
                    sumi,
                    _mm256_madd_epi16(_mm256_maddubs_epi16(q[c], yv), scv[c]));
            }
            int bs = 0;
            for (int g = 0; g < 16; g++)
                bs += w[i].scales[g] * y->bsums[g];
            acc[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi),
                                     _mm256_set1_ps(d * y->d), acc[b]);
            corr[b] += d * y->d * (float)(32 * bs);
        }
    }
    for (int b = 0; b < nb; b++)
        out[b] = infer__hsum256(acc[b]) - corr[b];
}

/* ---- drivers --------------------------------------------------------------
 */

MM_DRIVER(static, mm_f32, row_f32, float)
MM_DRIVER(static, mm_f16, row_f16, uint16_t)
MM_DRIVER(static, mm_bf16, row_bf16, uint16_t)
MM_DRIVER(, infer__mm_q4_k_avx2, row_q4_k, struct infer_block_q4_k)
MM_DRIVER(, infer__mm_q6_k_avx2, row_q6_k, struct infer_block_q6_k)

/* 8 halves of the KV cache as floats. */
static inline __m256 load_h8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* 32 columns (4 ymm accumulators) of one head at a time over all cnt rows;
 * a last part of a row shorter than 8 is done with scalar FMAs. */
static void attn_v(const float *a, int64_t lda, int nh, const uint16_t *v,
                   int cnt, int hd, float *o)
{
    for (int h = 0; h < nh; h++) {
        float *oh = o + h * hd;
        const float *ah = a + h * lda;
        int j0 = 0;
        while (hd - j0 >= 8) {
            int nv = (hd - j0) / 8 < 4 ? (hd - j0) / 8 : 4;
            __m256 acc[4];
            for (int t = 0; t < nv; t++)
                acc[t] = _mm256_loadu_ps(oh + j0 + 8 * t);
            for (int p = 0; p < cnt; p++) {
                __m256 w = _mm256_set1_ps(ah[p]);
                const uint16_t *vp = v + (size_t)p * hd + j0;
                for (int t = 0; t < nv; t++)
                    acc[t] = _mm256_fmadd_ps(w, load_h8(vp + 8 * t), acc[t]);
            }
            for (int t = 0; t < nv; t++)
                _mm256_storeu_ps(oh + j0 + 8 * t, acc[t]);
            j0 += 8 * nv;
        }
        for (int j = j0; j < hd; j++) {
            float s = oh[j];
            for (int p = 0; p < cnt; p++)
                s = fmaf(ah[p], infer_fp16_to_f32(v[(size_t)p * hd + j]), s);
            oh[j] = s;
        }
    }
}

static void mm_f32(const void *w, size_t w_stride, int64_t k, int64_t r0,
                   int64_t r1, const void *xa, size_t xa_stride, int nb,
                   float *y, int64_t ldy);

/* Scores as a small matmul: the K rows are the weights. */
/* 8 positions at a time: one row of K (by dimension) per step, times
 * each head's element broadcast; a partial last group is scalar. */
static void attn_qk(const float *q, int nh, const uint16_t *kt, int bs, int cnt,
                    int hd, float *s, int64_t lds)
{
    int p0 = 0;
    for (; p0 + 8 <= cnt; p0 += 8)
        for (int h = 0; h < nh; h++) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0;
            int j = 0;
            for (; j + 2 <= hd; j += 2) {
                a0 = _mm256_fmadd_ps(_mm256_set1_ps(q[h * hd + j]),
                                     load_h8(kt + (size_t)j * bs + p0), a0);
                a1 = _mm256_fmadd_ps(_mm256_set1_ps(q[h * hd + j + 1]),
                                     load_h8(kt + (size_t)(j + 1) * bs + p0),
                                     a1);
            }
            if (j < hd)
                a0 = _mm256_fmadd_ps(_mm256_set1_ps(q[h * hd + j]),
                                     load_h8(kt + (size_t)j * bs + p0), a0);
            _mm256_storeu_ps(s + h * lds + p0, _mm256_add_ps(a0, a1));
        }
    for (int h = 0; h < nh; h++)
        for (int p = p0; p < cnt; p++) {
            float acc = 0;
            for (int j = 0; j < hd; j++)
                acc +=
                    q[h * hd + j] * infer_fp16_to_f32(kt[(size_t)j * bs + p]);
            s[h * lds + p] = acc;
        }
}

/* ---- activations: quantiser, exp, SwiGLU, softmax, RMSNorm ---------------
 *
 * The AVX-512 set's, on 8 lanes; the quantiser gives the reference's bits,
 * the others are checked against float64 (tests/test_kernels.c). */

static inline float hmax256(__m256 v)
{
    __m128 m =
        _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline int32_t hsum256_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v),
                              _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* The largest |x| of n floats (a multiple of 8); max(|a|, m) keeps m when
 * |a| is NaN, as the reference's compare does. */
static inline float abs_max8(const float *x, int n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int c = 0; c < n; c += 8)
        m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + c)), m);
    return hmax256(m);
}

/* 8 floats times id, rounded to nearest even (cvtps2dq in the default
 * rounding mode), NaN or out-of-range products as 0, stored to q as int8
 * by truncation (the low byte, as the reference's cast); returns the ints. */
static inline __m256i quant8(const float *x, __m256 id, int8_t *q)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), lim = _mm256_set1_ps(127.5f);
    const __m256i low = _mm256_setr_epi8(
        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8,
        12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i two = _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1);
    __m256 p = _mm256_mul_ps(_mm256_loadu_ps(x), id);
    __m256 ok = _mm256_cmp_ps(_mm256_andnot_ps(sign, p), lim, _CMP_LE_OQ);
    __m256i v =
        _mm256_and_si256(_mm256_cvtps_epi32(p), _mm256_castps_si256(ok));
    __m256i b = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, low), two);
    _mm_storel_epi64((__m128i *)(void *)q, _mm256_castsi256_si128(b));
    return v;
}

/* infer_quantize_q8a and infer_quantize_q8k with the helpers above: the
 * same max, the same division, the same rounding: the same bits. */
static void quant_q8a(const float *x, struct infer_q8a *y, int64_t k)
{
    for (int64_t i = 0; i < k / INFER_QK; i++, x += INFER_QK) {
        float d = abs_max8(x, INFER_QK) / 127, id = d > 0 ? 1 / d : 0;
        __m256i sum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++)
            sum = _mm256_add_epi32(
                sum, quant8(x + 8 * c, _mm256_set1_ps(id), y[i].qs + 8 * c));
        y[i].d = d;
        y[i].nsum128 = -128 * hsum256_epi32(sum);
    }
}

static void quant_q8k(const float *x, struct infer_q8k *y, int64_t k)
{
    for (int64_t i = 0; i < k / INFER_QK_K; i++, x += INFER_QK_K) {
        float d = abs_max8(x, INFER_QK_K) / 127, id = d > 0 ? 1 / d : 0;
        for (int g = 0; g < 16; g++) {
            __m256i sum = _mm256_add_epi32(
                quant8(x + 16 * g, _mm256_set1_ps(id), y[i].qs + 16 * g),
                quant8(x + 16 * g + 8, _mm256_set1_ps(id),
                       y[i].qs + 16 * g + 8));
            y[i].bsums[g] = (int16_t)hsum256_epi32(sum);
        }
        y[i].d = d;
    }
}

/* exp(x) for 8 lanes as the AVX-512 set's exp16: x = n ln2 + r, a
 * degree-6 polynomial for e^r, times 2^n built in two halves (each a
 * normal float) so that tiny results come out subnormal and n = 128
 * infinite, as expf does; clamped to [-104, 89]. */
static inline __m256 exp8(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-104.0f));
    x = _mm256_min_ps(x, _mm256_set1_ps(89.0f));
    __m256 n =
        _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r),
                        _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 =
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 =
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

static void silu_mul(float *g, const float *u, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 x = _mm256_loadu_ps(g + j);
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        __m256 sv = _mm256_div_ps(x, _mm256_add_ps(one, e));
        _mm256_storeu_ps(g + j, _mm256_mul_ps(sv, _mm256_loadu_ps(u + j)));
    }
    if (j < n)
        infer__silu_mul_scalar(g + j, u + j, n - j);
}

/* infer__softmax_scalar with exp8 (the tail with expf): the scaled
 * maximum, then the exps and their sum, then the division. */
static void softmax(float *s, int n, float scale, float *stat)
{
    const __m256 vs = _mm256_set1_ps(scale);
    __m256 m8 = _mm256_set1_ps(-INFINITY);
    int p = 0;
    for (; p + 8 <= n; p += 8)
        m8 = _mm256_max_ps(m8, _mm256_mul_ps(_mm256_loadu_ps(s + p), vs));
    float mx = hmax256(m8);
    for (int q = p; q < n; q++)
        mx = s[q] * scale > mx ? s[q] * scale : mx;
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 sum8 = _mm256_setzero_ps();
    for (p = 0; p + 8 <= n; p += 8) {
        __m256 e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(s + p), vs, vm));
        sum8 = _mm256_add_ps(sum8, e);
        _mm256_storeu_ps(s + p, e);
    }
    float t = infer__hsum256(sum8);
    for (int q = p; q < n; q++) {
        s[q] = expf(s[q] * scale - mx);
        t += s[q];
    }
    const __m256 vt = _mm256_set1_ps(t);
    for (p = 0; p + 8 <= n; p += 8)
        _mm256_storeu_ps(s + p, _mm256_div_ps(_mm256_loadu_ps(s + p), vt));
    for (int q = p; q < n; q++)
        s[q] /= t;
    if (stat != NULL) {
        stat[0] = mx;
        stat[1] = t;
    }
}

/* infer__rmsnorm_scalar with the squares summed in 4 double lanes. */
static void rmsnorm(float *o, const float *x, const float *w, int n, float eps)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        __m256d hi = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        a0 = _mm256_fmadd_pd(lo, lo, a0);
        a1 = _mm256_fmadd_pd(hi, hi, a1);
    }
    __m256d a = _mm256_add_pd(a0, a1);
    __m128d h =
        _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    double ss = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (int j = i; j < n; j++)
        ss += (double)x[j] * x[j];
    const float r = (float)(1.0 / sqrt(ss / n + eps));
    const __m256 vr = _mm256_set1_ps(r);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(
            o + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vr),
                                 _mm256_loadu_ps(w + i)));
    for (; i < n; i++)
        o[i] = x[i] * r * w[i];
}

/* VCVTPS2PH rounds to nearest even, as infer_f32_to_fp16 does, for
 * normals, subnormals and overflow alike. */
static void to_half(const float *x, uint16_t *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(
            (__m128i *)(void *)(y + i),
            _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        y[i] = infer_f32_to_fp16(x[i]);
}

const struct infer_kernels infer_kernels_avx2 = {
    .name = "avx2",
    .attn_qk = attn_qk,
    .attn_v = attn_v,
    .softmax = softmax,
    .rmsnorm = rmsnorm,
    .quant_q8a = quant_q8a,
    .quant_q8k = quant_q8k,
    .silu_mul = silu_mul,
    .to_half = to_half,
    .mm_q8r = mm_q8r,
    .mm_q4r = mm_q4r,
    .mm_q51r = mm_q51r,
    .mm_q4kr = mm_q4kr,
    .mm_q5kr = mm_q5kr,
    .mm_q6kr = mm_q6kr,
    .mm =
        {
            [INFER_TYPE_F32] = mm_f32,
            [INFER_TYPE_F16] = mm_f16,
            [INFER_TYPE_BF16] = mm_bf16,
            [INFER_TYPE_Q8_0] = mm_q8_0,
            [INFER_TYPE_Q4_0] = mm_q4_0,
            [INFER_TYPE_Q5_0] = infer__mm_q5_0_scalar,
            [INFER_TYPE_Q5_1] = infer__mm_q5_1_scalar,
            [INFER_TYPE_Q5_K] = infer__mm_q5_k_scalar,
            [INFER_TYPE_Q4_K] = infer__mm_q4_k_avx2,
            [INFER_TYPE_Q6_K] = infer__mm_q6_k_avx2,
        },
};

/* ---- benchmark loops ------------------------------------------------------
 */

uint64_t infer__bw_read_avx2(const void *p, size_t bytes)
{
    const __m256i *v = p;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < bytes / 32; i += 8) {
        a0 = _mm256_xor_si256(a0, _mm256_load_si256(v + i));
        a1 = _mm256_xor_si256(a1, _mm256_load_si256(v + i + 2));
        a2 = _mm256_xor_si256(a2, _mm256_load_si256(v + i + 4));
        a3 = _mm256_xor_si256(a3, _mm256_load_si256(v + i + 6));
        a0 = _mm256_xor_si256(a0, _mm256_load_si256(v + i + 1));
        a1 = _mm256_xor_si256(a1, _mm256_load_si256(v + i + 3));
        a2 = _mm256_xor_si256(a2, _mm256_load_si256(v + i + 5));
        a3 = _mm256_xor_si256(a3, _mm256_load_si256(v + i + 7));
    }
    __m256i a =
        _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^
           (uint64_t)_mm256_extract_epi64(a, 3);
}

double infer__fma_loop_avx2(long iters)
{
    __m256 acc[12];
    for (int j = 0; j < 12; j++)
        acc[j] = _mm256_set1_ps((float)j);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 12; j++)
            acc[j] = _mm256_fmadd_ps(acc[j], a, b);
    float sink = 0;
    for (int j = 0; j < 12; j++)
        sink += infer__hsum256(acc[j]);
    volatile float keep = sink;
    (void)keep;
    return (double)iters * 12 * 8 * 2;
}
