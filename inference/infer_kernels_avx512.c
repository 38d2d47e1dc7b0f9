/*
 * infer_kernels_avx512.c: the matmul kernels for AVX-512 F/BW/VL + VNNI.
 * This file alone is compiled with those flags (inference/CMakeLists.txt);
 * nothing here runs unless infer_kernels_get() saw them in CPUID.
 *
 * Float weights use 16-wide FMA; Q8_0 and Q4_0 (row-major, and packed:
 * Q8R, Q4R) and the packed K-quants (Q4KR, Q6KR) use VPDPBUSD (u8 x s8
 * summed straight into int32), which replaces AVX2's maddubs + madd pair.
 * The row-major K-quant kernels are the AVX2 ones. Also attention scores
 * and V sums, softmax, RMSNorm, the activation quantiser and SwiGLU.
 */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

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
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

static inline float id_f32(float v)
{
    return v;
}

#define FLOAT_ROW16(name, wty, LOAD, CONV)                                     \
    static void name(const wty *w, int64_t k, const char *xa,                  \
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
                acc[b] =                                                       \
                    _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[b] + i), acc[b]);    \
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

/* ---- Q8_0 and Q4_0: register-blocked tiles ------------------------------
 *
 * A tile is TW weight rows x TB activation rows (at most 4 x 4, 16 zmm
 * accumulators), walked two 32-blocks (64 bytes) at a time. VPDPBUSD wants
 * an unsigned operand: the activations are made unsigned by flipping their
 * sign bit (xu = x + 128), and the accumulator starts at -128 * w summed
 * over the same lanes, so each lane ends with the exact signed dot of its
 * 4 bytes: VPDPBUSD(-128 w, x + 128, w) = x w. For Q4_0 the weights are
 * the unsigned nibbles (q = w + 8) and the start is -8 x. The int32 lanes
 * of each block are then scaled by d_w * d_x in float.
 *
 * Every output element goes through the same operations in the same order
 * whatever the tile shape it falls in (the tile shape only decides which
 * elements share loads), so a sequence's results do not depend on the
 * batch it runs in. An odd last block is a pair whose upper half is zero. */

#define TW     4 /* weight rows per tile */
#define TB     4 /* activation rows per tile */
/* Prefetch distance in tiles: the next tile when several activation tiles
 * pass over each (plenty of time), PF_FAR tiles ahead when only one does
 * and the loop is bound by memory latency (one thread then streams ~36
 * instead of ~25 GB/s here). */
#define PF_FAR 4

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* 16 floats: lo in lanes 0-7, hi in lanes 8-15. */
ALWAYS_INLINE __m512 scale_pair(float lo, float hi)
{
    return _mm512_castpd_ps(
        _mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(lo)),
                           _mm256_castps_pd(_mm256_set1_ps(hi)), 1));
}

ALWAYS_INLINE __m512 scale_pair_h(uint16_t lo, uint16_t hi)
{
    __m256i h = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_set1_epi16((short)lo)),
        _mm_set1_epi16((short)hi), 1);
    return _mm512_cvtph_ps(h);
}

/* The 32 quants of blocks a and b (b NULL: zeros) in one register. */
ALWAYS_INLINE __m512i load_pair(const int8_t *a, const int8_t *b)
{
    __m512i v = _mm512_zextsi256_si512(_mm256_loadu_si256((const void *)a));
    return b != NULL
               ? _mm512_inserti64x4(v, _mm256_loadu_si256((const void *)b), 1)
               : v;
}

/* Q4_0: the 32 nibbles of a block in quant order (low nibbles are elements
 * 0-15, high ones 16-31), unsigned 0..15. */
ALWAYS_INLINE __m256i q4_nibbles(const uint8_t *qs)
{
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q),
                            _mm256_set1_epi8(0xf));
}

/* One pair of blocks (i, i + 1; the second absent if `odd`) of a tile:
 * acc[r][b] += cvt(dot(w_r, x_b)) * d_w * d_x per lane. */
/* What a weight row's pair of blocks contributes to every activation
 * row: the quants, the accumulator start and the scales. A tile that
 * several activation tiles pass over derives them in the first pass
 * (mode WC_FILL) and loads them in the others (WC_USE). */
struct wcache {
    __m512i w, start;
    __m512 d;
};
enum { WC_NONE = 0, WC_FILL, WC_USE };
#define WC_MAX_PAIRS 64 /* rows of up to 4096 columns use the cache */

ALWAYS_INLINE void q8_0_pair(const char *w, size_t w_stride, int64_t i,
                             bool odd, const char *xa, size_t xa_stride, int nw,
                             int nx, __m512 acc[TW][TB], int mode,
                             struct wcache *wc)
{
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i wv[TW], start[TW];
    __m512 dw[TW];
    for (int r = 0; r < nw; r++) {
        if (mode == WC_USE) {
            wv[r] = wc[r].w;
            start[r] = wc[r].start;
            dw[r] = wc[r].d;
            continue;
        }
        const struct infer_block_q8_0 *wb =
            (const struct infer_block_q8_0 *)(w + (size_t)r * w_stride) + i;
        wv[r] = load_pair(wb[0].qs, odd ? NULL : wb[1].qs);
        start[r] = _mm512_sub_epi32(
            _mm512_setzero_si512(),
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), flip, wv[r]));
        dw[r] = scale_pair_h(wb[0].d, odd ? 0 : wb[1].d);
        if (mode == WC_FILL)
            wc[r] = (struct wcache){wv[r], start[r], dw[r]};
    }
    for (int b = 0; b < nx; b++) {
        const struct infer_q8a *xb =
            (const struct infer_q8a *)(xa + (size_t)b * xa_stride) + i;
        __m512i xu =
            _mm512_xor_si512(load_pair(xb[0].qs, odd ? NULL : xb[1].qs), flip);
        __m512 dx = scale_pair(xb[0].d, odd ? 0 : xb[1].d);
        for (int r = 0; r < nw; r++) {
            __m512i p = _mm512_dpbusd_epi32(start[r], xu, wv[r]);
            acc[r][b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p),
                                        _mm512_mul_ps(dw[r], dx), acc[r][b]);
        }
    }
}

ALWAYS_INLINE void q4_0_pair(const char *w, size_t w_stride, int64_t i,
                             bool odd, const char *xa, size_t xa_stride, int nw,
                             int nx, __m512 acc[TW][TB], int mode,
                             struct wcache *wc)
{
    (void)mode; /* Q4_0 derives little per weight row: no cache */
    (void)wc;
    const __m512i eight = _mm512_set1_epi8(8);
    __m512i wv[TW];
    __m512 dw[TW];
    for (int r = 0; r < nw; r++) {
        const struct infer_block_q4_0 *wb =
            (const struct infer_block_q4_0 *)(w + (size_t)r * w_stride) + i;
        __m512i v = _mm512_zextsi256_si512(q4_nibbles(wb[0].qs));
        wv[r] = odd ? v : _mm512_inserti64x4(v, q4_nibbles(wb[1].qs), 1);
        dw[r] = scale_pair_h(wb[0].d, odd ? 0 : wb[1].d);
    }
    for (int b = 0; b < nx; b++) {
        const struct infer_q8a *xb =
            (const struct infer_q8a *)(xa + (size_t)b * xa_stride) + i;
        __m512i xv = load_pair(xb[0].qs, odd ? NULL : xb[1].qs);
        __m512i start = _mm512_sub_epi32(
            _mm512_setzero_si512(),
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, xv));
        __m512 dx = scale_pair(xb[0].d, odd ? 0 : xb[1].d);
        for (int r = 0; r < nw; r++) {
            __m512i p = _mm512_dpbusd_epi32(start, wv[r], xv);
            acc[r][b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p),
                                        _mm512_mul_ps(dw[r], dx), acc[r][b]);
        }
    }
}

/* One nw x nx tile over all blocks; writes y[b * ldy + r]. pf (or NULL):
 * the next tile's weight rows (pf_bytes), fetched into L1 along the way so
 * that they arrive from memory while this tile computes. */
#define QTILE(name, PAIR)                                                      \
    ALWAYS_INLINE void name(const char *w, size_t w_stride, int64_t nblk,      \
                            const char *xa, size_t xa_stride, int nw, int nx,  \
                            float *y, int64_t ldy, const char *pf,             \
                            size_t pf_bytes, int mode, struct wcache *wc)      \
    {                                                                          \
        __m512 acc[TW][TB];                                                    \
        for (int r = 0; r < nw; r++)                                           \
            for (int b = 0; b < nx; b++)                                       \
                acc[r][b] = _mm512_setzero_ps();                               \
        const size_t np = (size_t)(nblk + 1) / 2, lines = pf_bytes / 64;       \
        size_t next = 0;                                                       \
        int64_t i = 0;                                                         \
        for (size_t j = 1; i + 2 <= nblk; i += 2, j++) {                       \
            if (pf != NULL)                                                    \
                for (; next < j * lines / np; next++)                          \
                    _mm_prefetch(pf + 64 * next, _MM_HINT_T0);                 \
            PAIR(w, w_stride, i, false, xa, xa_stride, nw, nx, acc, mode,      \
                 wc + (i / 2) * TW);                                           \
        }                                                                      \
        if (i < nblk)                                                          \
            PAIR(w, w_stride, i, true, xa, xa_stride, nw, nx, acc, mode,       \
                 wc + (i / 2) * TW);                                           \
        for (int r = 0; r < nw; r++)                                           \
            for (int b = 0; b < nx; b++)                                       \
                y[b * ldy + r] = _mm512_reduce_add_ps(acc[r][b]);              \
    }

QTILE(q8_0_tile, q8_0_pair)
QTILE(q4_0_tile, q4_0_pair)

/* One tile of nw (4 or 1) weight rows by nx (1-4) activation rows; the
 * switch makes both compile-time constants (one specialised body each). */
#define TILE_SWITCH(TILE, NW, ...)                                             \
    switch (nx) {                                                              \
    case 4:                                                                    \
        TILE(wr, w_stride, nblk, xb, xa_stride, NW, 4, __VA_ARGS__);           \
        break;                                                                 \
    case 3:                                                                    \
        TILE(wr, w_stride, nblk, xb, xa_stride, NW, 3, __VA_ARGS__);           \
        break;                                                                 \
    case 2:                                                                    \
        TILE(wr, w_stride, nblk, xb, xa_stride, NW, 2, __VA_ARGS__);           \
        break;                                                                 \
    default:                                                                   \
        TILE(wr, w_stride, nblk, xb, xa_stride, NW, 1, __VA_ARGS__);           \
    }

/* The matmul: weight rows in groups of TW (then single rows), each group
 * against the activation rows TB at a time, so the group stays in L1 while
 * every activation row passes over it; with CACHE, what the group's rows
 * contribute is derived in the first pass and reloaded in the others. */
#define QMM(name, TILE, CACHE)                                                 \
    static void name(const void *w, size_t w_stride, int64_t k, int64_t r0,    \
                     int64_t r1, const void *xa, size_t xa_stride, int nb,     \
                     float *y, int64_t ldy)                                    \
    {                                                                          \
        const int64_t nblk = k / INFER_QK;                                     \
        const bool cache = CACHE && nb > TB && (nblk + 1) / 2 <= WC_MAX_PAIRS; \
        struct wcache wc[cache ? WC_MAX_PAIRS * TW : 1];                       \
        for (int64_t r = r0; r < r1; r += TW) {                                \
            const char *row = (const char *)w + (size_t)r * w_stride;          \
            /* The next group of rows, fetched during the first pass. */       \
            const int64_t ahead = (nb <= TB ? PF_FAR : 1) * TW;                \
            const char *pf = r + ahead < r1 ? row + ahead * w_stride : NULL;   \
            size_t pfb = (size_t)(r1 - r - ahead < TW ? r1 - r - ahead : TW) * \
                         w_stride;                                             \
            for (int b = 0; b < nb; b += TB, pf = NULL) {                      \
                const char *xb = (const char *)xa + (size_t)b * xa_stride;     \
                float *yb = y + b * ldy + r;                                   \
                int nx = nb - b < TB ? nb - b : TB;                            \
                if (r + TW <= r1) {                                            \
                    const char *wr = row;                                      \
                    if (!cache)                                                \
                        TILE_SWITCH(TILE, 4, yb, ldy, pf, pfb, WC_NONE, wc)    \
                    else if (b == 0)                                           \
                        TILE_SWITCH(TILE, 4, yb, ldy, pf, pfb, WC_FILL, wc)    \
                    else                                                       \
                        TILE_SWITCH(TILE, 4, yb, ldy, pf, pfb, WC_USE, wc)     \
                    continue;                                                  \
                }                                                              \
                for (int64_t q = 0; q < r1 - r; q++) {                         \
                    const char *wr = row + (size_t)q * w_stride;               \
                    TILE_SWITCH(TILE, 1, yb + q, ldy, NULL, 0, WC_NONE, wc)    \
                }                                                              \
            }                                                                  \
        }                                                                      \
    }

QMM(mm_q8_0, q8_0_tile, true)
QMM(mm_q4_0, q4_0_tile, false)

/* ---- Q8R: Q8_0 with 16 rows interleaved (layout in infer_kernels.h) ----
 *
 * A tile is one group of 16 weight rows by up to Q8R_S activation rows.
 * Per block: the 16 rows' scales (one VCVTPH2PS), then for each of the 8
 * quads one 64-byte load that every activation row multiplies by its 4
 * bytes broadcast (VPDPBUSD, weights + 128 as the unsigned side, so the
 * accumulator starts at -128 * sum(x) of the block), then one convert,
 * multiply and FMA per activation row into its 16 row sums. */

#define Q8R_S     8    /* activation rows per pass over a group */
#define Q8R_AHEAD 8192 /* prefetch distance, bytes, when passes are short */

/* Block i of the tile: q its 512 bytes of quants, dw its 16 scales. With
 * one activation row, two accumulators halve the VPDPBUSD chain (integer
 * sums: the same result). */
ALWAYS_INLINE void q8r_block(const uint8_t *q, __m512 dw,
                             const struct infer_q8a *const *x, int64_t i,
                             int ns, __m512 *facc)
{
    __m512i acc[Q8R_S], acc2 = _mm512_setzero_si512();
    for (int s = 0; s < ns; s++)
        acc[s] = _mm512_set1_epi32(x[s][i].nsum128);
    for (int j = 0; j < 8; j++) {
        __m512i wv = _mm512_loadu_si512((const void *)(q + 64 * j));
        if (ns == 1 && j % 2 == 1) {
            acc2 = _mm512_dpbusd_epi32(
                acc2, wv,
                _mm512_set1_epi32(infer__load_i32(x[0][i].qs + 4 * j)));
            continue;
        }
        for (int s = 0; s < ns; s++)
            acc[s] = _mm512_dpbusd_epi32(
                acc[s], wv,
                _mm512_set1_epi32(infer__load_i32(x[s][i].qs + 4 * j)));
    }
    if (ns == 1)
        acc[0] = _mm512_add_epi32(acc[0], acc2);
    for (int s = 0; s < ns; s++)
        facc[s] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[s]),
                                  _mm512_mul_ps(dw, _mm512_set1_ps(x[s][i].d)),
                                  facc[s]);
}

/* One group (at gp) by ns activation rows; fetches the pf_lines cache
 * lines at pf into L1 along the way, spread over the blocks, so that a
 * later tile's weights arrive from memory while this one computes. */
ALWAYS_INLINE void q8r_tile(const uint8_t *gp, int64_t nblk, const char *xa,
                            size_t xa_stride, int ns, float *y, int64_t ldy,
                            const char *pf, size_t pf_lines)
{
    __m512 facc[Q8R_S];
    const struct infer_q8a *x[Q8R_S];
    for (int s = 0; s < ns; s++) {
        facc[s] = _mm512_setzero_ps();
        x[s] = (const struct infer_q8a *)(xa + (size_t)s * xa_stride);
    }
    size_t due = 0; /* pf_lines per block, in nblk-ths of a line */
    for (int64_t i = 0; i < nblk; i++) {
        const uint8_t *pair = gp + (size_t)(i / 2) * Q8R_PAIR;
        infer__q8r_prefetch(&due, pf_lines, nblk, &pf);
        __m512 dw = _mm512_cvtph_ps(
            _mm256_loadu_si256((const void *)(pair + 32 * (i % 2))));
        q8r_block(pair + 64 + 512 * (i % 2), dw, x, i, ns, facc);
    }
    for (int s = 0; s < ns; s++)
        _mm512_storeu_ps(y + (size_t)s * ldy, facc[s]);
}

/* q8r_tile with ns a compile-time constant (1 to Q8R_S). */
ALWAYS_INLINE void q8r_tiles(const uint8_t *gp, int64_t nblk, const char *xb,
                             size_t xa_stride, int ns, float *yb, int64_t ldy,
                             const char *pf, size_t pf_lines)
{
    switch (ns) {
#define Q8R_CASE(N)                                                            \
    case N:                                                                    \
        q8r_tile(gp, nblk, xb, xa_stride, N, yb, ldy, pf, pf_lines);           \
        break;
        Q8R_CASE(1)
        Q8R_CASE(2)
        Q8R_CASE(3)
        Q8R_CASE(4)
        Q8R_CASE(5)
        Q8R_CASE(6)
        Q8R_CASE(7)
        Q8R_CASE(8)
#undef Q8R_CASE
    }
}

Q8R_DRIVER(mm_q8r, q8r_tiles, Q8R_S, Q8R_AHEAD)

/* ---- Q4R: Q4_0 with 16 rows interleaved, two blocks a byte --------------
 *
 * As Q8R, for a pair of blocks per pass over its 8 quad lines: the low
 * nibbles (block 2p) and the high nibbles as they lie (16 x block 2p + 1's
 * quants) each by VPDPBUSD, the sums starting at -8 x and -128 x the
 * blocks' activation sums; the second is then shifted back (exact) and
 * both take Q8R's float steps: Q8R's bits for the same values. */

#define Q4R_S 6 /* activation rows per pass: 3 sums a row */

ALWAYS_INLINE void q4r_tile(const uint8_t *gp, int64_t nblk, const char *xa,
                            size_t xa_stride, int ns, float *y, int64_t ldy,
                            const char *pf, size_t pf_lines)
{
    __m512 facc[Q4R_S];
    const struct infer_q8a *x[Q4R_S];
    for (int s = 0; s < ns; s++) {
        facc[s] = _mm512_setzero_ps();
        x[s] = (const struct infer_q8a *)(xa + (size_t)s * xa_stride);
    }
    const __m512i lo4 = _mm512_set1_epi8(0x0f), hi4 = _mm512_set1_epi8(-16);
    size_t due = 0;
    for (int64_t i = 0; i < nblk; i += 2) {
        const uint8_t *pair = gp + (size_t)(i / 2) * INFER_Q4R_PAIR;
        const bool two = i + 1 < nblk;
        infer__q8r_prefetch(&due, pf_lines, nblk, &pf);
        if (two)
            infer__q8r_prefetch(&due, pf_lines, nblk, &pf);
        __m512i alo[Q4R_S], ahi[Q4R_S];
        for (int s = 0; s < ns; s++) {
            alo[s] = _mm512_set1_epi32(x[s][i].nsum128 / 16);
            ahi[s] = two ? _mm512_set1_epi32(x[s][i + 1].nsum128)
                         : _mm512_setzero_si512();
        }
        for (int j = 0; j < 8; j++) {
            __m512i v = _mm512_loadu_si512((const void *)(pair + 64 + 64 * j));
            __m512i wl = _mm512_and_si512(v, lo4);
            for (int s = 0; s < ns; s++)
                alo[s] = _mm512_dpbusd_epi32(
                    alo[s], wl,
                    _mm512_set1_epi32(infer__load_i32(x[s][i].qs + 4 * j)));
            if (!two)
                continue;
            __m512i wh = _mm512_and_si512(v, hi4);
            for (int s = 0; s < ns; s++)
                ahi[s] = _mm512_dpbusd_epi32(
                    ahi[s], wh,
                    _mm512_set1_epi32(infer__load_i32(x[s][i + 1].qs + 4 * j)));
        }
        __m512 dw0 = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)pair));
        for (int s = 0; s < ns; s++)
            facc[s] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(alo[s]),
                _mm512_mul_ps(dw0, _mm512_set1_ps(x[s][i].d)), facc[s]);
        if (!two)
            continue;
        __m512 dw1 =
            _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(pair + 32)));
        for (int s = 0; s < ns; s++)
            facc[s] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(_mm512_srai_epi32(ahi[s], 4)),
                _mm512_mul_ps(dw1, _mm512_set1_ps(x[s][i + 1].d)), facc[s]);
    }
    for (int s = 0; s < ns; s++)
        _mm512_storeu_ps(y + (size_t)s * ldy, facc[s]);
}

/* ---- Q51R: Q5_1, 16 rows interleaved, a byte a quant ---------------------
 *
 * Per block and activation row: VPDPBUSD of the unsigned quants (sums
 * start at 0), Q8R's convert and FMA by d_w * d_x, then an FMA of the 16
 * rows' minimums by d_x * sum(x): the scalar dot's steps, so its bits. */

#define Q51R_S 6

ALWAYS_INLINE void q51r_tile(const uint8_t *gp, int64_t nblk, const char *xa,
                             size_t xa_stride, int ns, float *y, int64_t ldy,
                             const char *pf, size_t pf_lines)
{
    __m512 facc[Q51R_S];
    const struct infer_q8a *x[Q51R_S];
    for (int s = 0; s < ns; s++) {
        facc[s] = _mm512_setzero_ps();
        x[s] = (const struct infer_q8a *)(xa + (size_t)s * xa_stride);
    }
    size_t due = 0;
    for (int64_t i = 0; i < nblk; i++) {
        const uint8_t *pair = gp + (size_t)(i / 2) * INFER_Q51R_PAIR;
        const uint8_t *q = pair + 128 + 512 * (i % 2);
        infer__q8r_prefetch(&due, pf_lines, nblk, &pf);
        __m512i acc[Q51R_S];
        for (int s = 0; s < ns; s++)
            acc[s] = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++) {
            __m512i wv = _mm512_loadu_si512((const void *)(q + 64 * j));
            for (int s = 0; s < ns; s++)
                acc[s] = _mm512_dpbusd_epi32(
                    acc[s], wv,
                    _mm512_set1_epi32(infer__load_i32(x[s][i].qs + 4 * j)));
        }
        __m512 dw = _mm512_cvtph_ps(
            _mm256_loadu_si256((const void *)(pair + 32 * (i % 2))));
        __m512 mw = _mm512_cvtph_ps(
            _mm256_loadu_si256((const void *)(pair + 64 + 32 * (i % 2))));
        for (int s = 0; s < ns; s++) {
            float sx = x[s][i].d * (float)(-x[s][i].nsum128 / 128);
            facc[s] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(acc[s]),
                _mm512_mul_ps(dw, _mm512_set1_ps(x[s][i].d)), facc[s]);
            facc[s] = _mm512_fmadd_ps(mw, _mm512_set1_ps(sx), facc[s]);
        }
    }
    for (int s = 0; s < ns; s++)
        _mm512_storeu_ps(y + (size_t)s * ldy, facc[s]);
}

/* ---- Q4KR and Q6KR: K-quants with 16 rows interleaved --------------------
 *
 * A tile is one group of 16 rows by up to KR_S activation rows, per
 * super-block: each sub-block's quads by VPDPBUSD (quants 0-15 or 0-63 as
 * the unsigned side, so the sums start at 0) into int32 lanes, one per
 * row, times the rows' sub-block scales (VPMULLD: exact integers); the
 * minimums (Q4_K) or the -32 offsets (Q6_K) by VPDPWSSD of the scale or
 * min pairs against pairs of activation sums; then the scalar dot's float
 * steps, in its order, on 16 rows at once. The same bits as the scalar
 * set's row-major kernels, whatever the batch. */

#define KR_S  6 /* activation rows per pass over a Q6KR group */
#define K45_S 4 /* and a Q4KR or Q5KR group (two sums per sub-block pair) */

/* Two int16 in one int32 lane: a low, b high (a VPDPWSSD pair). */
ALWAYS_INLINE __m512i pair16(int a, int b)
{
    return _mm512_set1_epi32(
        (int32_t)(((uint32_t)(uint16_t)a) | ((uint32_t)(uint16_t)b << 16)));
}

/* Q4KR (nib: two sub-blocks a byte, the second masked in place, so 16 x
 * its quants) and Q5KR (a byte a quant), sub-blocks 2c and 2c + 1 at a
 * time; the same scales, mins and float steps. */
ALWAYS_INLINE void k45_tile(const uint8_t *gp, int64_t nsb, const char *xa,
                            size_t xa_stride, int ns, float *y, int64_t ldy,
                            const char *pf, size_t pf_lines, bool nib)
{
    const size_t sbb = nib ? INFER_Q4KR_SB : INFER_Q5KR_SB;
    __m512 facc[K45_S];
    const struct infer_q8k *x[K45_S];
    for (int s = 0; s < ns; s++) {
        facc[s] = _mm512_setzero_ps();
        x[s] = (const struct infer_q8k *)(xa + (size_t)s * xa_stride);
    }
    const __m512i lo4 = _mm512_set1_epi8(0x0f), hi4 = _mm512_set1_epi8(-16);
    size_t due = 0;
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *sb = gp + (size_t)i * sbb;
        infer__q8r_prefetch(&due, pf_lines, nsb, &pf);
        const uint8_t *q = sb + 320;
        __m512i sumi[K45_S], sumi2[K45_S], summ[K45_S];
        for (int s = 0; s < ns; s++)
            sumi[s] = sumi2[s] = summ[s] = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) { /* sub-blocks 2c, 2c + 1 */
            __m512i alo[K45_S], ahi[K45_S];
            for (int s = 0; s < ns; s++)
                alo[s] = ahi[s] = _mm512_setzero_si512();
            for (int t = 0; t < 8; t++) {
                __m512i wl, wh;
                if (nib) {
                    __m512i v = _mm512_loadu_si512(
                        (const void *)(q + 512 * c + 64 * t));
                    wl = _mm512_and_si512(v, lo4);
                    wh = _mm512_and_si512(v, hi4); /* 16 x quant */
                } else {
                    wl = _mm512_loadu_si512(
                        (const void *)(q + 1024 * c + 64 * t));
                    wh = _mm512_loadu_si512(
                        (const void *)(q + 1024 * c + 512 + 64 * t));
                }
                for (int s = 0; s < ns; s++) {
                    const int8_t *xq = x[s][i].qs + 64 * c + 4 * t;
                    alo[s] = _mm512_dpbusd_epi32(
                        alo[s], wl, _mm512_set1_epi32(infer__load_i32(xq)));
                    ahi[s] = _mm512_dpbusd_epi32(
                        ahi[s], wh,
                        _mm512_set1_epi32(infer__load_i32(xq + 32)));
                }
            }
            __m512i sc0 = _mm512_cvtepu8_epi32(
                _mm_loadu_si128((const __m128i *)(sb + 64 + 32 * c)));
            __m512i sc1 = _mm512_cvtepu8_epi32(
                _mm_loadu_si128((const __m128i *)(sb + 80 + 32 * c)));
            for (int s = 0; s < ns; s++) {
                sumi[s] =
                    _mm512_add_epi32(sumi[s], _mm512_mullo_epi32(alo[s], sc0));
                sumi2[s] =
                    _mm512_add_epi32(sumi2[s], _mm512_mullo_epi32(ahi[s], sc1));
            }
        }
        for (int s = 0; s < ns; s++) /* exact: 16 x an integer if nib */
            sumi[s] = _mm512_add_epi32(
                sumi[s], nib ? _mm512_srai_epi32(sumi2[s], 4) : sumi2[s]);
        for (int t = 0; t < 4; t++) {
            __m512i mt = _mm512_cvtepu8_epi16(
                _mm256_loadu_si256((const __m256i *)(sb + 192 + 32 * t)));
            for (int s = 0; s < ns; s++) {
                const int16_t *bs = x[s][i].bsums + 4 * t;
                summ[s] = _mm512_dpwssd_epi32(
                    summ[s], mt, pair16(bs[0] + bs[1], bs[2] + bs[3]));
            }
        }
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)sb));
        __m512 dmin =
            _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(sb + 32)));
        for (int s = 0; s < ns; s++) {
            __m512 a = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sumi[s]));
            __m512 b = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(summ[s]));
            facc[s] =
                _mm512_add_ps(facc[s], _mm512_mul_ps(_mm512_set1_ps(x[s][i].d),
                                                     _mm512_sub_ps(a, b)));
        }
    }
    for (int s = 0; s < ns; s++)
        _mm512_storeu_ps(y + (size_t)s * ldy, facc[s]);
}

#define Q4KR_TILE(gp, nsb, xa, st, ns, y, ldy, pf, pl)                         \
    k45_tile(gp, nsb, xa, st, ns, y, ldy, pf, pl, true)
#define Q5KR_TILE(gp, nsb, xa, st, ns, y, ldy, pf, pl)                         \
    k45_tile(gp, nsb, xa, st, ns, y, ldy, pf, pl, false)

ALWAYS_INLINE void q6kr_tile(const uint8_t *gp, int64_t nsb, const char *xa,
                             size_t xa_stride, int ns, float *y, int64_t ldy,
                             const char *pf, size_t pf_lines)
{
    __m512 facc[KR_S];
    const struct infer_q8k *x[KR_S];
    for (int s = 0; s < ns; s++) {
        facc[s] = _mm512_setzero_ps();
        x[s] = (const struct infer_q8k *)(xa + (size_t)s * xa_stride);
    }
    size_t due = 0;
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *sb = gp + (size_t)i * INFER_Q6KR_SB;
        infer__q8r_prefetch(&due, pf_lines, nsb, &pf);
        const uint8_t *q = sb + 576;
        __m512i sumi[KR_S], off[KR_S];
        for (int s = 0; s < ns; s++)
            sumi[s] = off[s] = _mm512_setzero_si512();
        for (int g = 0; g < 16; g++) {
            __m512i acc[KR_S];
            for (int s = 0; s < ns; s++)
                acc[s] = _mm512_setzero_si512();
            for (int t = 0; t < 4; t++) {
                __m512i wv =
                    _mm512_loadu_si512((const void *)(q + 256 * g + 64 * t));
                for (int s = 0; s < ns; s++)
                    acc[s] =
                        _mm512_dpbusd_epi32(acc[s], wv,
                                            _mm512_set1_epi32(infer__load_i32(
                                                x[s][i].qs + 16 * g + 4 * t)));
            }
            __m512i scg = _mm512_cvtepi8_epi32(
                _mm_loadu_si128((const __m128i *)(sb + 64 + 16 * g)));
            for (int s = 0; s < ns; s++)
                sumi[s] =
                    _mm512_add_epi32(sumi[s], _mm512_mullo_epi32(acc[s], scg));
        }
        for (int t = 0; t < 8; t++) {
            __m512i st = _mm512_cvtepi8_epi16(
                _mm256_loadu_si256((const __m256i *)(sb + 320 + 32 * t)));
            for (int s = 0; s < ns; s++) {
                const int16_t *bs = x[s][i].bsums + 2 * t;
                off[s] = _mm512_dpwssd_epi32(off[s], st, pair16(bs[0], bs[1]));
            }
        }
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)sb));
        for (int s = 0; s < ns; s++) {
            __m512i v = _mm512_sub_epi32(sumi[s], _mm512_slli_epi32(off[s], 5));
            __m512 dd = _mm512_mul_ps(_mm512_set1_ps(x[s][i].d), d);
            facc[s] = _mm512_add_ps(facc[s],
                                    _mm512_mul_ps(dd, _mm512_cvtepi32_ps(v)));
        }
    }
    for (int s = 0; s < ns; s++)
        _mm512_storeu_ps(y + (size_t)s * ldy, facc[s]);
}

/* A tile with ns a compile-time constant (1 to S; the driver never asks
 * for more, and larger cases are folded to S). */
#define KR_CASE(TILE, N, S)                                                    \
    case N:                                                                    \
        TILE(gp, nsb, xb, xa_stride, (N) < (S) ? (N) : (S), yb, ldy, pf,       \
             pf_lines);                                                        \
        break;
#define KR_TILES(name, TILE, S)                                                \
    ALWAYS_INLINE void name(const uint8_t *gp, int64_t nsb, const char *xb,    \
                            size_t xa_stride, int ns, float *yb, int64_t ldy,  \
                            const char *pf, size_t pf_lines)                   \
    {                                                                          \
        switch (ns) {                                                          \
            KR_CASE(TILE, 1, S)                                                \
            KR_CASE(TILE, 2, S)                                                \
            KR_CASE(TILE, 3, S)                                                \
            KR_CASE(TILE, 4, S)                                                \
            KR_CASE(TILE, 5, S)                                                \
            KR_CASE(TILE, 6, S)                                                \
        }                                                                      \
    }
KR_TILES(q4r_tiles, q4r_tile, Q4R_S)
KR_TILES(q51r_tiles, q51r_tile, Q51R_S)
KR_TILES(q4kr_tiles, Q4KR_TILE, K45_S)
KR_TILES(q5kr_tiles, Q5KR_TILE, K45_S)
KR_TILES(q6kr_tiles, q6kr_tile, KR_S)
PACKED_DRIVER(mm_q4r, q4r_tiles, Q4R_S, Q8R_AHEAD, INFER_TYPE_Q4_0, INFER_QK)
PACKED_DRIVER(mm_q51r, q51r_tiles, Q51R_S, Q8R_AHEAD, INFER_TYPE_Q5_1, INFER_QK)
PACKED_DRIVER(mm_q4kr, q4kr_tiles, K45_S, Q8R_AHEAD, INFER_TYPE_Q4_K,
              INFER_QK_K)
PACKED_DRIVER(mm_q5kr, q5kr_tiles, K45_S, Q8R_AHEAD, INFER_TYPE_Q5_K,
              INFER_QK_K)
PACKED_DRIVER(mm_q6kr, q6kr_tiles, KR_S, Q8R_AHEAD, INFER_TYPE_Q6_K, INFER_QK_K)

MM_DRIVER(static, mm_f32, row_f32, float)
MM_DRIVER(static, mm_f16, row_f16, uint16_t)
MM_DRIVER(static, mm_bf16, row_bf16, uint16_t)

/* Up to 16 halves of the KV cache (those in m) as floats. */
ALWAYS_INLINE __m512 load_h16(__mmask16 m, const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

/* Scores of up to 4 heads (NH) for up to 16 positions: per dimension j,
 * one load of K's row j (16 positions) times each head's q[j] broadcast;
 * even and odd j go to separate accumulators (shorter FMA chains). */
ALWAYS_INLINE void attn_qk_tile(const float *q, int nh, const uint16_t *kt,
                                int bs, int hd, __mmask16 m, float *s,
                                int64_t lds)
{
    __m512 a0[4], a1[4];
    for (int h = 0; h < nh; h++)
        a0[h] = a1[h] = _mm512_setzero_ps();
    int j = 0;
    for (; j + 2 <= hd; j += 2) {
        __m512 k0 = load_h16(m, kt + (size_t)j * bs);
        __m512 k1 = load_h16(m, kt + (size_t)(j + 1) * bs);
        for (int h = 0; h < nh; h++) {
            a0[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[h * hd + j]), k0, a0[h]);
            a1[h] =
                _mm512_fmadd_ps(_mm512_set1_ps(q[h * hd + j + 1]), k1, a1[h]);
        }
    }
    if (j < hd) {
        __m512 k0 = load_h16(m, kt + (size_t)j * bs);
        for (int h = 0; h < nh; h++)
            a0[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[h * hd + j]), k0, a0[h]);
    }
    for (int h = 0; h < nh; h++)
        _mm512_mask_storeu_ps(s + h * lds, m, _mm512_add_ps(a0[h], a1[h]));
}

static void attn_qk(const float *q, int nh, const uint16_t *kt, int bs, int cnt,
                    int hd, float *s, int64_t lds)
{
    for (int p0 = 0; p0 < cnt; p0 += 16) {
        __mmask16 m =
            cnt - p0 >= 16 ? 0xffff : (__mmask16)((1u << (cnt - p0)) - 1);
        for (int h = 0; h < nh; h += 4) {
            const float *qh = q + h * hd;
            float *sh = s + h * lds + p0;
            switch (nh - h) {
            case 1:
                attn_qk_tile(qh, 1, kt + p0, bs, hd, m, sh, lds);
                break;
            case 2:
                attn_qk_tile(qh, 2, kt + p0, bs, hd, m, sh, lds);
                break;
            case 3:
                attn_qk_tile(qh, 3, kt + p0, bs, hd, m, sh, lds);
                break;
            default:
                attn_qk_tile(qh, 4, kt + p0, bs, hd, m, sh, lds);
            }
        }
    }
}

/* Up to 4 heads (NH) by 64 columns: each V row is loaded once for all
 * the heads; every output element adds its terms in order of p. */
ALWAYS_INLINE void attn_v_tile(const float *a, int64_t lda, int nh,
                               const uint16_t *v, int cnt, int hd, float *o,
                               int j0)
{
    __mmask16 m[4];
    __m512 acc[4][4];
    for (int t = 0; t < 4; t++) {
        int left = hd - j0 - 16 * t;
        m[t] = left >= 16 ? 0xffff
               : left > 0 ? (__mmask16)((1u << left) - 1)
                          : 0;
        for (int h = 0; h < nh; h++)
            acc[h][t] = _mm512_maskz_loadu_ps(m[t], o + h * hd + j0 + 16 * t);
    }
    for (int p = 0; p < cnt; p++) {
        const uint16_t *vp = v + (size_t)p * hd + j0;
        __m512 vv[4];
        for (int t = 0; t < 4; t++)
            vv[t] = load_h16(m[t], vp + 16 * t);
        for (int h = 0; h < nh; h++) {
            __m512 w = _mm512_set1_ps(a[h * lda + p]);
            for (int t = 0; t < 4; t++)
                acc[h][t] = _mm512_fmadd_ps(w, vv[t], acc[h][t]);
        }
    }
    for (int h = 0; h < nh; h++)
        for (int t = 0; t < 4; t++)
            _mm512_mask_storeu_ps(o + h * hd + j0 + 16 * t, m[t], acc[h][t]);
}

static void attn_v(const float *a, int64_t lda, int nh, const uint16_t *v,
                   int cnt, int hd, float *o)
{
    for (int h = 0; h < nh; h += 4) {
        const float *ah = a + h * lda;
        float *oh = o + h * hd;
        for (int j0 = 0; j0 < hd; j0 += 64)
            switch (nh - h) {
            case 1:
                attn_v_tile(ah, lda, 1, v, cnt, hd, oh, j0);
                break;
            case 2:
                attn_v_tile(ah, lda, 2, v, cnt, hd, oh, j0);
                break;
            case 3:
                attn_v_tile(ah, lda, 3, v, cnt, hd, oh, j0);
                break;
            default:
                attn_v_tile(ah, lda, 4, v, cnt, hd, oh, j0);
            }
    }
}

/* The largest |x| of n floats (a multiple of 16); max(|a|, m) keeps m
 * when |a| is NaN, as the reference's compare does. */
static inline float abs_max16(const float *x, int n)
{
    __m512 m = _mm512_setzero_ps();
    for (int c = 0; c < n; c += 16)
        m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + c)), m);
    return _mm512_reduce_max_ps(m);
}

/* 16 floats times id, rounded to nearest even (cvtps2dq in the default
 * rounding mode, as lrintf), NaN or out-of-range products as 0, stored to
 * q as int8 by truncation (as the reference's cast); returns the ints. */
static inline __m512i quant16(const float *x, __m512 id, int8_t *q)
{
    __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x), id);
    __mmask16 ok = _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(127.5f),
                                      _CMP_LE_OQ);
    __m512i r = _mm512_maskz_cvtps_epi32(ok, v);
    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(r));
    return r;
}

/* infer_quantize_q8a and infer_quantize_q8k with the helpers above: the
 * same max, the same division, the same rounding: the same bits. */
static void quant_q8a(const float *x, struct infer_q8a *y, int64_t k)
{
    for (int64_t i = 0; i < k / INFER_QK; i++, x += INFER_QK) {
        float d = abs_max16(x, INFER_QK) / 127, id = d > 0 ? 1 / d : 0;
        __m512 vid = _mm512_set1_ps(id);
        __m512i qa = quant16(x, vid, y[i].qs);
        __m512i qb = quant16(x + 16, vid, y[i].qs + 16);
        y[i].d = d;
        y[i].nsum128 = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
    }
}

static void quant_q8k(const float *x, struct infer_q8k *y, int64_t k)
{
    for (int64_t i = 0; i < k / INFER_QK_K; i++, x += INFER_QK_K) {
        float d = abs_max16(x, INFER_QK_K) / 127, id = d > 0 ? 1 / d : 0;
        for (int g = 0; g < 16; g++)
            y[i].bsums[g] = (int16_t)_mm512_reduce_add_epi32(
                quant16(x + 16 * g, _mm512_set1_ps(id), y[i].qs + 16 * g));
        y[i].d = d;
    }
}

/* exp(x) for 16 lanes: x = n ln2 + r, |r| <= ln2 / 2, a degree-6
 * polynomial for e^r, times 2^n; clamped like expf (0 below -103.9, inf
 * above 88.7). Within 2 ulp of expf over the range SiLU uses. */
static inline __m512 exp16(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(89.0f));
    __m512 n = _mm512_roundscale_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r),
                        _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* VCVTPS2PH rounds to nearest even, as infer_f32_to_fp16 does. */
static void to_half(const float *x, uint16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(
            y + i, m,
            _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i),
                            _MM_FROUND_TO_NEAREST_INT));
    }
}

static void silu_mul(float *g, const float *u, int64_t n)
{
    int64_t j = 0;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; j < n; j += 16) {
        __mmask16 m = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, g + j);
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(
            g + j, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, u + j)));
    }
}

/* infer__rmsnorm_scalar with the squares summed in 8 double lanes. */
static void rmsnorm(float *o, const float *x, const float *w, int n, float eps)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512d lo = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        __m512d hi = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
        a0 = _mm512_fmadd_pd(lo, lo, a0);
        a1 = _mm512_fmadd_pd(hi, hi, a1);
    }
    double ss = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    for (int j = i; j < n; j++)
        ss += (double)x[j] * x[j];
    const float r = (float)(1.0 / sqrt(ss / n + eps));
    const __m512 vr = _mm512_set1_ps(r);
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(
            o + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vr),
                                 _mm512_loadu_ps(w + i)));
    for (; i < n; i++)
        o[i] = x[i] * r * w[i];
}

/* infer__softmax_scalar with exp16: the scaled maximum, then the exps and
 * their sum, then the division. */
static void softmax(float *s, int n, float scale, float *stat)
{
    const __m512 vs = _mm512_set1_ps(scale);
    __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
    for (int p = 0; p < n; p += 16) {
        __mmask16 m = n - p >= 16 ? 0xffff : (__mmask16)((1u << (n - p)) - 1);
        mx = _mm512_mask_max_ps(
            mx, m, mx, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + p), vs));
    }
    const __m512 vm = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    for (int p = 0; p < n; p += 16) {
        __mmask16 m = n - p >= 16 ? 0xffff : (__mmask16)((1u << (n - p)) - 1);
        __m512 e =
            exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, s + p), vs, vm));
        e = _mm512_maskz_mov_ps(m, e);
        sum = _mm512_add_ps(sum, e);
        _mm512_mask_storeu_ps(s + p, m, e);
    }
    const __m512 vt = _mm512_set1_ps(_mm512_reduce_add_ps(sum));
    for (int p = 0; p < n; p += 16) {
        __mmask16 m = n - p >= 16 ? 0xffff : (__mmask16)((1u << (n - p)) - 1);
        _mm512_mask_storeu_ps(
            s + p, m, _mm512_div_ps(_mm512_maskz_loadu_ps(m, s + p), vt));
    }
    if (stat != NULL) {
        stat[0] = _mm512_cvtss_f32(vm);
        stat[1] = _mm512_cvtss_f32(vt);
    }
}

const struct infer_kernels infer_kernels_avx512 = {
    .name = "avx512",
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
