/*
 * infer_quant.c: fp16/bf16 conversions, the ggml block (de)quantisers, the
 * activation quantisers, the portable scalar matmul kernels (the reference
 * every SIMD set is tested against) and the run-time choice of kernel set.
 */
#include <cpuid.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "infer_kernels.h"

_Static_assert(sizeof(struct infer_block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(struct infer_block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(struct infer_block_q4_k) == 144, "q4_k layout");
_Static_assert(sizeof(struct infer_block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(struct infer_block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(struct infer_block_q5_k) == 176, "q5_k layout");
_Static_assert(sizeof(struct infer_block_q6_k) == 210, "q6_k layout");

/* ---- fp16 / bf16 ------------------------------------------------------------
 */

float infer_fp16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf / nan */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while ((man & 0x400) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t infer_f32_to_fp16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* below the smallest normal: subnormal */
        if (ax < 0x33000000u)
            return (uint16_t)sign; /* below half the smallest subnormal */
        uint32_t e = ax >> 23;
        uint32_t man = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((ax >> 13) - (112u << 10));
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
        r++;
    return (uint16_t)(sign | r);
}

float infer_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t infer_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- rows -------------------------------------------------------------------
 */

int infer_type_supported(uint32_t type)
{
    switch (type) {
    case INFER_TYPE_F32:
    case INFER_TYPE_F16:
    case INFER_TYPE_BF16:
    case INFER_TYPE_Q8_0:
    case INFER_TYPE_Q4_0:
    case INFER_TYPE_Q5_0:
    case INFER_TYPE_Q5_1:
    case INFER_TYPE_Q4_K:
    case INFER_TYPE_Q5_K:
    case INFER_TYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

size_t infer_row_bytes(uint32_t type, int64_t k)
{
    int blk = infer_type_block(type);
    if (blk == 0 || k < 0 || k % blk != 0)
        return 0;
    return (size_t)(k / blk) * infer_type_size(type);
}

static void k4_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* The 5-bit value (0..31) of element e of a Q5_0 or Q5_1 block. */
static int q5_bits(const uint8_t *qh4, const uint8_t *qs, int e)
{
    uint32_t qh = (uint32_t)qh4[0] | (uint32_t)qh4[1] << 8 |
                  (uint32_t)qh4[2] << 16 | (uint32_t)qh4[3] << 24;
    int lo = e < 16 ? qs[e] & 0xf : qs[e - 16] >> 4;
    return lo | (int)((qh >> e) & 1) << 4;
}

static int q5_value(const struct infer_block_q5_0 *b, int e)
{
    return q5_bits(b->qh, b->qs, e);
}

/* The 5-bit value (0..31) of element e of a Q5_K block. */
static int q5k_value(const struct infer_block_q5_k *b, int e)
{
    int j = e / 32, l = e % 32, lo = b->qs[32 * (j / 2) + l];
    return (j % 2 ? lo >> 4 : lo & 0xf) | ((b->qh[l] >> j) & 1) << 4;
}

/* The 6-bit value (0..63) of element e of a Q6_K block. */
static int q6_value(const struct infer_block_q6_k *b, int e)
{
    int h = e / 128, r = e % 128, t = r / 32, l = r % 32;
    const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
    int lo = t & 1 ? ql[l + 32] : ql[l];
    lo = t >= 2 ? lo >> 4 : lo & 0xf;
    int hi = (qh[l] >> (2 * t)) & 3;
    return lo | (hi << 4);
}

void infer_dequantize_row(uint32_t type, const void *src, float *dst, int64_t k)
{
    switch (type) {
    case INFER_TYPE_F32:
        memcpy(dst, src, (size_t)k * 4);
        break;
    case INFER_TYPE_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < k; i++)
            dst[i] = infer_fp16_to_f32(s[i]);
        break;
    }
    case INFER_TYPE_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < k; i++)
            dst[i] = infer_bf16_to_f32(s[i]);
        break;
    }
    case INFER_TYPE_Q8_0: {
        const struct infer_block_q8_0 *b = src;
        for (int64_t i = 0; i < k / INFER_QK; i++) {
            float d = infer_fp16_to_f32(b[i].d);
            for (int j = 0; j < INFER_QK; j++)
                dst[i * INFER_QK + j] = d * b[i].qs[j];
        }
        break;
    }
    case INFER_TYPE_Q4_0: {
        const struct infer_block_q4_0 *b = src;
        for (int64_t i = 0; i < k / INFER_QK; i++) {
            float d = infer_fp16_to_f32(b[i].d);
            for (int j = 0; j < 16; j++) {
                dst[i * INFER_QK + j] = d * ((b[i].qs[j] & 0xf) - 8);
                dst[i * INFER_QK + j + 16] = d * ((b[i].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    case INFER_TYPE_Q5_0: {
        const struct infer_block_q5_0 *b = src;
        for (int64_t i = 0; i < k / INFER_QK; i++) {
            float d = infer_fp16_to_f32(b[i].d);
            for (int j = 0; j < INFER_QK; j++)
                dst[i * INFER_QK + j] = d * (q5_value(&b[i], j) - 16);
        }
        break;
    }
    case INFER_TYPE_Q5_1: {
        const struct infer_block_q5_1 *b = src;
        for (int64_t i = 0; i < k / INFER_QK; i++) {
            float d = infer_fp16_to_f32(b[i].d), m = infer_fp16_to_f32(b[i].m);
            for (int j = 0; j < INFER_QK; j++)
                dst[i * INFER_QK + j] = d * q5_bits(b[i].qh, b[i].qs, j) + m;
        }
        break;
    }
    case INFER_TYPE_Q4_K: {
        const struct infer_block_q4_k *b = src;
        for (int64_t i = 0; i < k / INFER_QK_K; i++) {
            float d = infer_fp16_to_f32(b[i].d);
            float dmin = infer_fp16_to_f32(b[i].dmin);
            float *y = dst + i * INFER_QK_K;
            for (int c = 0; c < 4; c++) {
                int sc0, m0, sc1, m1;
                k4_scale_min(2 * c, b[i].scales, &sc0, &m0);
                k4_scale_min(2 * c + 1, b[i].scales, &sc1, &m1);
                const uint8_t *q = b[i].qs + 32 * c;
                for (int l = 0; l < 32; l++) {
                    y[64 * c + l] = d * sc0 * (q[l] & 0xf) - dmin * m0;
                    y[64 * c + 32 + l] = d * sc1 * (q[l] >> 4) - dmin * m1;
                }
            }
        }
        break;
    }
    case INFER_TYPE_Q5_K: {
        const struct infer_block_q5_k *b = src;
        for (int64_t i = 0; i < k / INFER_QK_K; i++) {
            float d = infer_fp16_to_f32(b[i].d);
            float dmin = infer_fp16_to_f32(b[i].dmin);
            for (int j = 0; j < 8; j++) {
                int sc, m;
                k4_scale_min(j, b[i].scales, &sc, &m);
                for (int l = 0; l < 32; l++)
                    dst[i * INFER_QK_K + 32 * j + l] =
                        d * sc * q5k_value(&b[i], 32 * j + l) - dmin * m;
            }
        }
        break;
    }
    case INFER_TYPE_Q6_K: {
        const struct infer_block_q6_k *b = src;
        for (int64_t i = 0; i < k / INFER_QK_K; i++) {
            float d = infer_fp16_to_f32(b[i].d);
            for (int e = 0; e < INFER_QK_K; e++)
                dst[i * INFER_QK_K + e] =
                    d * b[i].scales[e / 16] * (q6_value(&b[i], e) - 32);
        }
        break;
    }
    default:
        memset(dst, 0, (size_t)k * sizeof(float));
        break;
    }
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The fp16 scales, the packed 6-bit scales and mins and the quants (0 to
 * nmax) of a Q4_K (nmax 15) or Q5_K (31) super-block of x. */
static void quantize_kx(const float *x, int nmax, uint16_t *dd, uint16_t *dm,
                        uint8_t *scales, uint8_t *q)
{
    float scale[8], mins[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float lo = 0, hi = 0; /* the range always includes 0 */
        for (int l = 0; l < 32; l++) {
            lo = fminf(lo, x[32 * j + l]);
            hi = fmaxf(hi, x[32 * j + l]);
        }
        scale[j] = (hi - lo) / nmax;
        mins[j] = -lo;
        max_scale = fmaxf(max_scale, scale[j]);
        max_min = fmaxf(max_min, mins[j]);
    }
    *dd = infer_f32_to_fp16(max_scale / 63);
    *dm = infer_f32_to_fp16(max_min / 63);
    float d = infer_fp16_to_f32(*dd), dmin = infer_fp16_to_f32(*dm);
    int sc[8], m[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = d > 0 ? clampi((int)lrintf(scale[j] / d), 0, 63) : 0;
        m[j] = dmin > 0 ? clampi((int)lrintf(mins[j] / dmin), 0, 63) : 0;
    }
    memset(scales, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            scales[j] |= (uint8_t)sc[j];
            scales[j + 4] |= (uint8_t)m[j];
        } else {
            scales[j + 4] = (uint8_t)((sc[j] & 0xf) | ((m[j] & 0xf) << 4));
            scales[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            scales[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
    for (int j = 0; j < 8; j++) {
        float d1 = d * sc[j], m1 = dmin * m[j];
        for (int l = 0; l < 32; l++) {
            float v = d1 > 0 ? (x[32 * j + l] + m1) / d1 : 0;
            q[32 * j + l] = (uint8_t)clampi((int)lrintf(v), 0, nmax);
        }
    }
}

static void quantize_q4_k_block(const float *x, struct infer_block_q4_k *b)
{
    uint8_t q[256];
    quantize_kx(x, 15, &b->d, &b->dmin, b->scales, q);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b->qs[32 * c + l] =
                (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
}

static void quantize_q5_k_block(const float *x, struct infer_block_q5_k *b)
{
    uint8_t q[256];
    quantize_kx(x, 31, &b->d, &b->dmin, b->scales, q);
    memset(b->qh, 0, sizeof(b->qh));
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int q0 = q[64 * c + l], q1 = q[64 * c + 32 + l];
            b->qs[32 * c + l] = (uint8_t)((q0 & 0xf) | (q1 & 0xf) << 4);
            b->qh[l] |=
                (uint8_t)((q0 >> 4) << (2 * c) | (q1 >> 4) << (2 * c + 1));
        }
}

static void quantize_q6_k_block(const float *x, struct infer_block_q6_k *b)
{
    float s[16], max_s = 0;
    for (int g = 0; g < 16; g++) {
        float amax = 0;
        for (int l = 0; l < 16; l++)
            amax = fmaxf(amax, fabsf(x[16 * g + l]));
        s[g] = amax / 31;
        max_s = fmaxf(max_s, s[g]);
    }
    b->d = infer_f32_to_fp16(max_s / 127);
    float d = infer_fp16_to_f32(b->d);
    uint8_t L[256];
    for (int g = 0; g < 16; g++) {
        int sc = d > 0 ? clampi((int)lrintf(s[g] / d), -128, 127) : 0;
        b->scales[g] = (int8_t)sc;
        float step = d * sc;
        for (int l = 0; l < 16; l++) {
            int q = step != 0 ? (int)lrintf(x[16 * g + l] / step) : 0;
            L[16 * g + l] = (uint8_t)(clampi(q, -32, 31) + 32);
        }
    }
    for (int h = 0; h < 2; h++) {
        uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const uint8_t *Lh = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((Lh[l] & 0xf) | ((Lh[l + 64] & 0xf) << 4));
            ql[l + 32] =
                (uint8_t)((Lh[l + 32] & 0xf) | ((Lh[l + 96] & 0xf) << 4));
            qh[l] =
                (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                          ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
        }
    }
}

/* The element of a 32-block with the largest magnitude, sign kept (the
 * first of equals): Q4_0 and Q5_0 map it to their most negative quant. */
static float signed_max(const float *x)
{
    float amax = 0, max = 0;
    for (int j = 0; j < INFER_QK; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

void infer_quantize_row(uint32_t type, const float *src, void *dst, int64_t k)
{
    switch (type) {
    case INFER_TYPE_F32:
        memcpy(dst, src, (size_t)k * 4);
        break;
    case INFER_TYPE_F16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < k; i++)
            d[i] = infer_f32_to_fp16(src[i]);
        break;
    }
    case INFER_TYPE_BF16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < k; i++)
            d[i] = infer_f32_to_bf16(src[i]);
        break;
    }
    case INFER_TYPE_Q8_0: {
        struct infer_block_q8_0 *b = dst;
        for (int64_t i = 0; i < k / INFER_QK; i++) {
            const float *x = src + i * INFER_QK;
            float amax = 0;
            for (int j = 0; j < INFER_QK; j++)
                amax = fmaxf(amax, fabsf(x[j]));
            float d = amax / 127, id = d > 0 ? 1 / d : 0;
            b[i].d = infer_f32_to_fp16(d);
            for (int j = 0; j < INFER_QK; j++)
                b[i].qs[j] = (int8_t)lrintf(x[j] * id);
        }
        break;
    }
    case INFER_TYPE_Q4_0: {
        struct infer_block_q4_0 *b = dst;
        for (int64_t i = 0; i < k / INFER_QK; i++) {
            const float *x = src + i * INFER_QK;
            float d = signed_max(x) / -8, id = d != 0 ? 1 / d : 0;
            b[i].d = infer_f32_to_fp16(d);
            for (int j = 0; j < 16; j++) {
                int q0 = clampi((int)lrintf(x[j] * id) + 8, 0, 15);
                int q1 = clampi((int)lrintf(x[j + 16] * id) + 8, 0, 15);
                b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
        break;
    }
    case INFER_TYPE_Q5_0: { /* as ggml: the signed extreme maps to -16 */
        struct infer_block_q5_0 *b = dst;
        for (int64_t i = 0; i < k / INFER_QK; i++) {
            const float *x = src + i * INFER_QK;
            float d = signed_max(x) / -16, id = d != 0 ? 1 / d : 0;
            b[i].d = infer_f32_to_fp16(d);
            uint32_t qh = 0;
            for (int j = 0; j < 16; j++) {
                int q0 = clampi((int)lrintf(x[j] * id) + 16, 0, 31);
                int q1 = clampi((int)lrintf(x[j + 16] * id) + 16, 0, 31);
                b[i].qs[j] = (uint8_t)((q0 & 0xf) | (q1 & 0xf) << 4);
                qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4)
                                                     << (j + 16);
            }
            for (int t = 0; t < 4; t++)
                b[i].qh[t] = (uint8_t)(qh >> (8 * t));
        }
        break;
    }
    case INFER_TYPE_Q5_1: { /* as ggml: the range [min, max] in 31 steps */
        struct infer_block_q5_1 *b = dst;
        for (int64_t i = 0; i < k / INFER_QK; i++) {
            const float *x = src + i * INFER_QK;
            float lo = x[0], hi = x[0];
            for (int j = 1; j < INFER_QK; j++) {
                lo = fminf(lo, x[j]);
                hi = fmaxf(hi, x[j]);
            }
            float d = (hi - lo) / 31, id = d != 0 ? 1 / d : 0;
            b[i].d = infer_f32_to_fp16(d);
            b[i].m = infer_f32_to_fp16(lo);
            uint32_t qh = 0;
            for (int j = 0; j < 16; j++) {
                int q0 = clampi((int)lrintf((x[j] - lo) * id), 0, 31);
                int q1 = clampi((int)lrintf((x[j + 16] - lo) * id), 0, 31);
                b[i].qs[j] = (uint8_t)((q0 & 0xf) | (q1 & 0xf) << 4);
                qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4)
                                                     << (j + 16);
            }
            for (int t = 0; t < 4; t++)
                b[i].qh[t] = (uint8_t)(qh >> (8 * t));
        }
        break;
    }
    case INFER_TYPE_Q4_K: {
        struct infer_block_q4_k *b = dst;
        for (int64_t i = 0; i < k / INFER_QK_K; i++)
            quantize_q4_k_block(src + i * INFER_QK_K, &b[i]);
        break;
    }
    case INFER_TYPE_Q5_K: {
        struct infer_block_q5_k *b = dst;
        for (int64_t i = 0; i < k / INFER_QK_K; i++)
            quantize_q5_k_block(src + i * INFER_QK_K, &b[i]);
        break;
    }
    case INFER_TYPE_Q6_K: {
        struct infer_block_q6_k *b = dst;
        for (int64_t i = 0; i < k / INFER_QK_K; i++)
            quantize_q6_k_block(src + i * INFER_QK_K, &b[i]);
        break;
    }
    default:
        break;
    }
}

/* ---- activations ------------------------------------------------------------
 */

enum infer_act_kind infer_act_kind_of(uint32_t wtype)
{
    switch (wtype) {
    case INFER_TYPE_Q8_0:
    case INFER_TYPE_Q4_0:
    case INFER_TYPE_Q5_0:
    case INFER_TYPE_Q5_1:
        return INFER_ACT_Q8A;
    case INFER_TYPE_Q4_K:
    case INFER_TYPE_Q5_K:
    case INFER_TYPE_Q6_K:
        return INFER_ACT_Q8K;
    default:
        return INFER_ACT_F32;
    }
}

size_t infer_act_row_bytes(enum infer_act_kind kind, int64_t k)
{
    switch (kind) {
    case INFER_ACT_Q8A:
        return (size_t)(k / INFER_QK) * sizeof(struct infer_q8a);
    case INFER_ACT_Q8K:
        return (size_t)(k / INFER_QK_K) * sizeof(struct infer_q8k);
    default:
        return (size_t)k * sizeof(float);
    }
}

/* Round to nearest, ties to even, as lrintf() does in the default mode,
 * for |v| < 2^22; plain arithmetic, so the loops below vectorise. */
static inline float round_ne(float v)
{
    return (v + 12582912.0f) - 12582912.0f; /* 1.5 * 2^23 */
}

/* max |x[j]|; NaNs are skipped as fmaxf() skips them. */
static inline float abs_max(const float *x, int n)
{
    float m[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j = 0; j < n; j += 8)
        for (int l = 0; l < 8; l++) {
            float a = fabsf(x[j + l]);
            m[l] = a > m[l] ? a : m[l];
        }
    float r = 0;
    for (int l = 0; l < 8; l++)
        r = m[l] > r ? m[l] : r;
    return r;
}

void infer_quantize_q8a(const float *x, struct infer_q8a *y, int64_t k)
{
    for (int64_t i = 0; i < k / INFER_QK; i++, x += INFER_QK) {
        float d = abs_max(x, INFER_QK) / 127, id = d > 0 ? 1 / d : 0;
        int sum = 0;
        for (int j = 0; j < INFER_QK; j++) {
            /* A NaN or infinite activation (a broken model file) must not
             * reach the float-to-int conversion, which is undefined then:
             * it becomes 0 here, and the block's scale shows the damage. */
            float v = x[j] * id;
            int q = v >= -127.5f && v <= 127.5f ? (int)round_ne(v) : 0;
            y[i].qs[j] = (int8_t)q;
            sum += q;
        }
        y[i].d = d;
        y[i].nsum128 = -128 * sum;
    }
}

void infer_quantize_q8k(const float *x, struct infer_q8k *y, int64_t k)
{
    for (int64_t i = 0; i < k / INFER_QK_K; i++, x += INFER_QK_K) {
        float d = abs_max(x, INFER_QK_K) / 127, id = d > 0 ? 1 / d : 0;
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) {
                float v = x[16 * g + l] * id; /* NaN, inf: 0, as above */
                int q = v >= -127.5f && v <= 127.5f ? (int)round_ne(v) : 0;
                y[i].qs[16 * g + l] = (int8_t)q;
                sum += q;
            }
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = d;
    }
}

/* ---- scalar matmul kernels --------------------------------------------------
 */

static float dot_f32(const float *w, const float *x, int64_t k)
{
    float s = 0;
    for (int64_t i = 0; i < k; i++)
        s += w[i] * x[i];
    return s;
}

static float dot_f16(const uint16_t *w, const float *x, int64_t k)
{
    float s = 0;
    for (int64_t i = 0; i < k; i++)
        s += infer_fp16_to_f32(w[i]) * x[i];
    return s;
}

static float dot_bf16(const uint16_t *w, const float *x, int64_t k)
{
    float s = 0;
    for (int64_t i = 0; i < k; i++)
        s += infer_bf16_to_f32(w[i]) * x[i];
    return s;
}

static float dot_q8_0(const struct infer_block_q8_0 *w,
                      const struct infer_q8a *x, int64_t nb)
{
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sum = 0;
        for (int j = 0; j < INFER_QK; j++)
            sum += w[i].qs[j] * x[i].qs[j];
        s += infer_fp16_to_f32(w[i].d) * x[i].d * (float)sum;
    }
    return s;
}

static float dot_q4_0(const struct infer_block_q4_0 *w,
                      const struct infer_q8a *x, int64_t nb)
{
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sum = 0;
        for (int j = 0; j < 16; j++)
            sum += (w[i].qs[j] & 0xf) * x[i].qs[j] +
                   (w[i].qs[j] >> 4) * x[i].qs[j + 16];
        sum += x[i].nsum128 / 16; /* -8 * (sum of x) */
        s += infer_fp16_to_f32(w[i].d) * x[i].d * (float)sum;
    }
    return s;
}

static float dot_q5_0(const struct infer_block_q5_0 *w,
                      const struct infer_q8a *x, int64_t nb)
{
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *h = w[i].qh; /* a little-endian word */
        uint32_t qh = (uint32_t)h[0] | (uint32_t)h[1] << 8 |
                      (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
        int sum = 0;
        for (int j = 0; j < 16; j++)
            sum +=
                ((w[i].qs[j] & 0xf) | (int)((qh >> j) & 1) << 4) * x[i].qs[j] +
                ((w[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) *
                    x[i].qs[j + 16];
        sum += x[i].nsum128 / 8; /* -16 * (sum of x) */
        s += infer_fp16_to_f32(w[i].d) * x[i].d * (float)sum;
    }
    return s;
}

/* In Q51R's order (infer_kernels.h), so the packed kernels' bits. */
static float dot_q5_1(const struct infer_block_q5_1 *w,
                      const struct infer_q8a *x, int64_t nb)
{
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sum = 0;
        for (int j = 0; j < INFER_QK; j++)
            sum += q5_bits(w[i].qh, w[i].qs, j) * x[i].qs[j];
        s = fmaf((float)sum, infer_fp16_to_f32(w[i].d) * x[i].d, s);
        s = fmaf(infer_fp16_to_f32(w[i].m),
                 x[i].d * (float)(-x[i].nsum128 / 128), s);
    }
    return s;
}

static float dot_q4_k(const struct infer_block_q4_k *w,
                      const struct infer_q8k *x, int64_t nb)
{
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k4_scale_min(j, w[i].scales, &sc, &m);
            const uint8_t *q = w[i].qs + 32 * (j / 2);
            const int8_t *y = x[i].qs + 32 * j;
            int isum = 0;
            for (int l = 0; l < 32; l++)
                isum += (j & 1 ? q[l] >> 4 : q[l] & 0xf) * y[l];
            sumi += sc * isum;
            summ += m * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        }
        s += x[i].d * (infer_fp16_to_f32(w[i].d) * (float)sumi -
                       infer_fp16_to_f32(w[i].dmin) * (float)summ);
    }
    return s;
}

static float dot_q5_k(const struct infer_block_q5_k *w,
                      const struct infer_q8k *x, int64_t nb)
{
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k4_scale_min(j, w[i].scales, &sc, &m);
            const int8_t *y = x[i].qs + 32 * j;
            int isum = 0;
            for (int l = 0; l < 32; l++)
                isum += q5k_value(&w[i], 32 * j + l) * y[l];
            sumi += sc * isum;
            summ += m * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        }
        s += x[i].d * (infer_fp16_to_f32(w[i].d) * (float)sumi -
                       infer_fp16_to_f32(w[i].dmin) * (float)summ);
    }
    return s;
}

static float dot_q6_k(const struct infer_block_q6_k *w,
                      const struct infer_q8k *x, int64_t nb)
{
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int g = 0; g < 16; g++) {
            int isum = 0;
            for (int l = 0; l < 16; l++)
                isum += q6_value(&w[i], 16 * g + l) * x[i].qs[16 * g + l];
            sumi += w[i].scales[g] * (isum - 32 * x[i].bsums[g]);
        }
        s += x[i].d * infer_fp16_to_f32(w[i].d) * (float)sumi;
    }
    return s;
}

#define SCALAR_MM(fname, dot, wty, xty, nblocks)                               \
    static void fname(const void *w, size_t w_stride, int64_t k, int64_t r0,   \
                      int64_t r1, const void *xa, size_t xa_stride, int nb,    \
                      float *y, int64_t ldy)                                   \
    {                                                                          \
        for (int64_t r = r0; r < r1; r++) {                                    \
            const wty *wr = (const wty *)((const char *)w + r * w_stride);     \
            for (int b = 0; b < nb; b++) {                                     \
                const xty *xr =                                                \
                    (const xty *)((const char *)xa + (size_t)b * xa_stride);   \
                y[b * ldy + r] = dot(wr, xr, nblocks);                         \
            }                                                                  \
        }                                                                      \
    }

SCALAR_MM(mm_f32, dot_f32, float, float, k)
SCALAR_MM(mm_f16, dot_f16, uint16_t, float, k)
SCALAR_MM(mm_bf16, dot_bf16, uint16_t, float, k)
SCALAR_MM(mm_q8_0, dot_q8_0, struct infer_block_q8_0, struct infer_q8a,
          k / INFER_QK)
SCALAR_MM(mm_q4_0, dot_q4_0, struct infer_block_q4_0, struct infer_q8a,
          k / INFER_QK)
SCALAR_MM(mm_q5_0, dot_q5_0, struct infer_block_q5_0, struct infer_q8a,
          k / INFER_QK)
void infer__mm_q5_0_scalar(const void *w, size_t w_stride, int64_t k,
                           int64_t r0, int64_t r1, const void *xa,
                           size_t xa_stride, int nb, float *y, int64_t ldy)
{
    mm_q5_0(w, w_stride, k, r0, r1, xa, xa_stride, nb, y, ldy);
}
SCALAR_MM(mm_q5_1, dot_q5_1, struct infer_block_q5_1, struct infer_q8a,
          k / INFER_QK)
SCALAR_MM(mm_q4_k, dot_q4_k, struct infer_block_q4_k, struct infer_q8k,
          k / INFER_QK_K)
SCALAR_MM(mm_q5_k, dot_q5_k, struct infer_block_q5_k, struct infer_q8k,
          k / INFER_QK_K)
void infer__mm_q5_1_scalar(const void *w, size_t w_stride, int64_t k,
                           int64_t r0, int64_t r1, const void *xa,
                           size_t xa_stride, int nb, float *y, int64_t ldy)
{
    mm_q5_1(w, w_stride, k, r0, r1, xa, xa_stride, nb, y, ldy);
}
void infer__mm_q5_k_scalar(const void *w, size_t w_stride, int64_t k,
                           int64_t r0, int64_t r1, const void *xa,
                           size_t xa_stride, int nb, float *y, int64_t ldy)
{
    mm_q5_k(w, w_stride, k, r0, r1, xa, xa_stride, nb, y, ldy);
}
SCALAR_MM(mm_q6_k, dot_q6_k, struct infer_block_q6_k, struct infer_q8k,
          k / INFER_QK_K)

/* ---- Q8R: Q8_0 with 16 rows interleaved (layout in infer_kernels.h) ---- */

#define Q8R_PAIR  1088 /* 64 bytes of scales + 2 x 512 of quants */
#define Q8R_BLOCK 512  /* quants of one block of 16 rows */

void infer_quantize_act(enum infer_act_kind kind, const float *x, void *y,
                        int64_t k)
{
    if (kind == INFER_ACT_Q8A)
        infer_quantize_q8a(x, y, k);
    else if (kind == INFER_ACT_Q8K)
        infer_quantize_q8k(x, y, k);
    else
        memcpy(y, x, (size_t)k * sizeof(float));
}

/* 4 bytes as one word and back (the packers move quads). */
static inline uint32_t get_quad(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline void put_quad(void *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

size_t infer_q8r_group_bytes(int64_t k)
{
    int64_t nblk = k / INFER_QK;
    return (size_t)(nblk / 2) * Q8R_PAIR + (nblk % 2 ? 64 + Q8R_BLOCK : 0);
}

/* Blocks [b0, b0 + nb) of a group of 16 Q8_0 rows (row r's block b0 at
 * src + r * src_stride) into their places in the group at gp. */
static void pack_q8r_blocks(const void *src, size_t src_stride, int64_t b0,
                            int64_t nb, uint8_t *gp)
{
    for (int64_t i = 0; i < nb; i++) {
        int64_t b = b0 + i;
        uint8_t *pair = gp + (size_t)(b / 2) * Q8R_PAIR;
        uint16_t *d = (uint16_t *)pair + (b % 2) * INFER_Q8R_ROWS;
        uint8_t *q = pair + 64 + (b % 2) * Q8R_BLOCK;
        for (int r = 0; r < INFER_Q8R_ROWS; r++) {
            const struct infer_block_q8_0 *wb =
                (const struct infer_block_q8_0 *)((const char *)src +
                                                  (size_t)r * src_stride) +
                i;
            d[r] = wb->d;
            for (int j = 0; j < INFER_QK / 4; j++) /* a quad at a time */
                put_quad(q + j * 64 + r * 4,
                         get_quad(wb->qs + 4 * j) ^ 0x80808080u);
        }
    }
}

void infer_pack_q8r(const void *src, size_t src_stride, int64_t rows, int64_t k,
                    void *dst)
{
    const size_t gb = infer_q8r_group_bytes(k);
    for (int64_t g = 0; g < rows / INFER_Q8R_ROWS; g++) {
        uint8_t *gp = (uint8_t *)dst + (size_t)g * gb;
        memset(gp, 0, gb);
        pack_q8r_blocks((const char *)src +
                            (size_t)(g * INFER_Q8R_ROWS) * src_stride,
                        src_stride, 0, k / INFER_QK, gp);
    }
}

/* Q4KR and Q6KR (layouts in infer_kernels.h). */
size_t infer_packed_group_bytes(uint32_t type, int64_t k)
{
    if ((type == INFER_TYPE_Q8_0 || type == INFER_TYPE_Q5_0) && k > 0 &&
        k % INFER_QK == 0)
        return infer_q8r_group_bytes(k);
    if (type == INFER_TYPE_Q4_0 && k > 0 && k % INFER_QK == 0)
        return (size_t)((k / INFER_QK + 1) / 2) * INFER_Q4R_PAIR;
    if (type == INFER_TYPE_Q5_1 && k > 0 && k % INFER_QK == 0)
        return (size_t)((k / INFER_QK + 1) / 2) * INFER_Q51R_PAIR;
    if (k <= 0 || k % INFER_QK_K != 0)
        return 0;
    if (type == INFER_TYPE_Q4_K)
        return (size_t)(k / INFER_QK_K) * INFER_Q4KR_SB;
    if (type == INFER_TYPE_Q5_K)
        return (size_t)(k / INFER_QK_K) * INFER_Q5KR_SB;
    if (type == INFER_TYPE_Q6_K)
        return (size_t)(k / INFER_QK_K) * INFER_Q6KR_SB;
    return 0;
}

/* Row r's fp16 scales and 6-bit scales and mins (Q4_K's and Q5_K's
 * packing) into super-block sb of Q4KR or Q5KR. */
static void pack_k4_scales(uint16_t d, uint16_t dmin, const uint8_t *scales,
                           int r, uint8_t *sb)
{
    uint16_t *dd = (uint16_t *)sb;
    uint8_t *sc = sb + 64, *mn = sb + 192;
    dd[r] = d;
    dd[16 + r] = dmin;
    for (int j = 0; j < 8; j++) {
        int scj, mj;
        k4_scale_min(j, scales, &scj, &mj);
        sc[16 * j + r] = (uint8_t)scj;
        mn[32 * (j / 2) + 2 * r + j % 2] = (uint8_t)mj;
    }
}

static void pack_q4kr(const struct infer_block_q4_k *const *src, uint8_t *sb)
{
    uint8_t *q = sb + 320;
    for (int r = 0; r < INFER_Q8R_ROWS; r++) {
        const struct infer_block_q4_k *b = src[r];
        pack_k4_scales(b->d, b->dmin, b->scales, r, sb);
        /* The file's bytes already pair sub-blocks 2c and 2c + 1. */
        for (int c = 0; c < 4; c++)
            for (int t = 0; t < 8; t++)
                put_quad(q + 512 * c + 64 * t + 4 * r,
                         get_quad(b->qs + 32 * c + 4 * t));
    }
}

static void pack_q5kr(const struct infer_block_q5_k *const *src, uint8_t *sb)
{
    uint8_t *q = sb + 320;
    for (int r = 0; r < INFER_Q8R_ROWS; r++) {
        const struct infer_block_q5_k *b = src[r];
        pack_k4_scales(b->d, b->dmin, b->scales, r, sb);
        for (int e = 0; e < INFER_QK_K; e++)
            q[512 * (e / 32) + 64 * (e % 32 / 4) + 4 * r + e % 4] =
                (uint8_t)q5k_value(b, e);
    }
}

static void pack_q6kr(const struct infer_block_q6_k *const *src, uint8_t *sb)
{
    uint16_t *d = (uint16_t *)sb;
    int8_t *sc = (int8_t *)sb + 64, *sc2 = (int8_t *)sb + 320;
    uint8_t *q = sb + 576;
    for (int r = 0; r < INFER_Q8R_ROWS; r++) {
        const struct infer_block_q6_k *b = src[r];
        d[r] = b->d;
        for (int g = 0; g < 16; g++) {
            sc[16 * g + r] = b->scales[g];
            sc2[32 * (g / 2) + 2 * r + g % 2] = b->scales[g];
            for (int e = 0; e < 16; e++)
                q[256 * g + 64 * (e / 4) + 4 * r + e % 4] =
                    (uint8_t)q6_value(b, 16 * g + e);
        }
    }
}

static void pack_q4r(const void *src, size_t src_stride, int64_t rows,
                     int64_t k, void *dst)
{
    const int64_t nblk = k / INFER_QK;
    const size_t gb = infer_packed_group_bytes(INFER_TYPE_Q4_0, k);
    for (int64_t g = 0; g < rows / INFER_Q8R_ROWS; g++) {
        uint8_t *gp = (uint8_t *)dst + (size_t)g * gb;
        memset(gp, 0, gb);
        for (int64_t i = 0; i < nblk; i++) {
            uint8_t *pair = gp + (size_t)(i / 2) * INFER_Q4R_PAIR;
            uint16_t *d = (uint16_t *)pair + (i % 2) * INFER_Q8R_ROWS;
            uint8_t *q = pair + 64;
            for (int r = 0; r < INFER_Q8R_ROWS; r++) {
                const struct infer_block_q4_0 *b =
                    (const struct infer_block_q4_0
                         *)((const char *)src +
                            (size_t)(g * INFER_Q8R_ROWS + r) * src_stride) +
                    i;
                d[r] = b->d;
                /* Quad j: elements 4j.. (low nibbles of qs[4j..] for j < 4,
                 * high nibbles of qs[4j - 16..] after), into this block's
                 * nibble of each byte. */
                for (int j = 0; j < 8; j++) {
                    uint32_t v = get_quad(b->qs + 4 * (j % 4));
                    v = (j < 4 ? v : v >> 4) & 0x0f0f0f0fu;
                    uint8_t *o = q + j * 64 + r * 4;
                    put_quad(o, get_quad(o) | (i % 2 ? v << 4 : v));
                }
            }
        }
    }
}

static void pack_q51r(const void *src, size_t src_stride, int64_t rows,
                      int64_t k, void *dst)
{
    const int64_t nblk = k / INFER_QK;
    const size_t gb = infer_packed_group_bytes(INFER_TYPE_Q5_1, k);
    for (int64_t g = 0; g < rows / INFER_Q8R_ROWS; g++) {
        uint8_t *gp = (uint8_t *)dst + (size_t)g * gb;
        memset(gp, 0, gb);
        for (int64_t i = 0; i < nblk; i++) {
            uint8_t *pair = gp + (size_t)(i / 2) * INFER_Q51R_PAIR;
            uint16_t *d = (uint16_t *)pair + (i % 2) * INFER_Q8R_ROWS;
            uint16_t *m = (uint16_t *)(pair + 64) + (i % 2) * INFER_Q8R_ROWS;
            uint8_t *q = pair + 128 + (i % 2) * 512;
            for (int r = 0; r < INFER_Q8R_ROWS; r++) {
                const struct infer_block_q5_1 *b =
                    (const struct infer_block_q5_1
                         *)((const char *)src +
                            (size_t)(g * INFER_Q8R_ROWS + r) * src_stride) +
                    i;
                d[r] = b->d;
                m[r] = b->m;
                for (int e = 0; e < INFER_QK; e++)
                    q[(e / 4) * 64 + r * 4 + e % 4] =
                        (uint8_t)q5_bits(b->qh, b->qs, e);
            }
        }
    }
}

/* Q5_0 into Q8R: a group at a time as Q8_0 blocks (d, q - 16). */
static void pack_q5_0(const void *src, size_t src_stride, int64_t rows,
                      int64_t k, void *dst)
{
    const int64_t nblk = k / INFER_QK;
    const size_t gb = infer_q8r_group_bytes(k);
    struct infer_block_q8_0 tmp[INFER_Q8R_ROWS * 4];
    for (int64_t g = 0; g < rows / INFER_Q8R_ROWS; g++) {
        uint8_t *gp = (uint8_t *)dst + (size_t)g * gb;
        memset(gp, 0, gb);
        for (int64_t b0 = 0; b0 < nblk; b0 += 4) {
            /* The 16 rows' blocks [b0, b0 + 4) as Q8_0, then packed. */
            int64_t nb = nblk - b0 < 4 ? nblk - b0 : 4;
            for (int r = 0; r < INFER_Q8R_ROWS; r++) {
                const struct infer_block_q5_0 *a =
                    (const struct infer_block_q5_0
                         *)((const char *)src +
                            (size_t)(g * INFER_Q8R_ROWS + r) * src_stride) +
                    b0;
                for (int64_t i = 0; i < nb; i++) {
                    struct infer_block_q8_0 *o = &tmp[r * 4 + i];
                    o->d = a[i].d;
                    for (int j = 0; j < INFER_QK; j++)
                        o->qs[j] = (int8_t)(q5_value(&a[i], j) - 16);
                }
            }
            pack_q8r_blocks(tmp, 4 * sizeof(*tmp), b0, nb, gp);
        }
    }
}

void infer_pack(uint32_t type, const void *src, size_t src_stride, int64_t rows,
                int64_t k, void *dst)
{
    if (type == INFER_TYPE_Q8_0) {
        infer_pack_q8r(src, src_stride, rows, k, dst);
        return;
    }
    if (type == INFER_TYPE_Q4_0) {
        pack_q4r(src, src_stride, rows, k, dst);
        return;
    }
    if (type == INFER_TYPE_Q5_0) {
        pack_q5_0(src, src_stride, rows, k, dst);
        return;
    }
    if (type == INFER_TYPE_Q5_1) {
        pack_q51r(src, src_stride, rows, k, dst);
        return;
    }
    const size_t gb = infer_packed_group_bytes(type, k);
    const size_t sbb = infer_packed_group_bytes(type, INFER_QK_K);
    const size_t bsz = infer_type_size(type);
    for (int64_t g = 0; g < rows / INFER_Q8R_ROWS; g++) {
        uint8_t *gp = (uint8_t *)dst + (size_t)g * gb;
        memset(gp, 0, gb);
        for (int64_t i = 0; i < k / INFER_QK_K; i++) {
            const void *blk[INFER_Q8R_ROWS];
            for (int r = 0; r < INFER_Q8R_ROWS; r++)
                blk[r] = (const char *)src +
                         (size_t)(g * INFER_Q8R_ROWS + r) * src_stride +
                         (size_t)i * bsz;
            if (type == INFER_TYPE_Q4_K)
                pack_q4kr((const struct infer_block_q4_k *const *)blk,
                          gp + (size_t)i * sbb);
            else if (type == INFER_TYPE_Q5_K)
                pack_q5kr((const struct infer_block_q5_k *const *)blk,
                          gp + (size_t)i * sbb);
            else
                pack_q6kr((const struct infer_block_q6_k *const *)blk,
                          gp + (size_t)i * sbb);
        }
    }
}

/* The reference: each element as infer_kernels.h defines it. */
static void mm_q8r(const void *wp, int64_t k, int64_t r0, int64_t r1,
                   int64_t pf_end, bool cold, const void *xa, size_t xa_stride,
                   int nb, float *y, int64_t ldy)
{
    (void)pf_end; /* nothing to prefetch for */
    (void)cold;
    const int64_t nblk = k / INFER_QK;
    const size_t gb = infer_q8r_group_bytes(k);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *gp =
            (const uint8_t *)wp + (size_t)(r / INFER_Q8R_ROWS) * gb;
        int lane = (int)(r % INFER_Q8R_ROWS);
        for (int b = 0; b < nb; b++) {
            const struct infer_q8a *x =
                (const struct infer_q8a *)((const char *)xa +
                                           (size_t)b * xa_stride);
            float acc = 0;
            for (int64_t i = 0; i < nblk; i++) {
                const uint8_t *pair = gp + (size_t)(i / 2) * Q8R_PAIR;
                const uint16_t *d = (const uint16_t *)pair + (i % 2) * 16;
                const uint8_t *q = pair + 64 + (i % 2) * Q8R_BLOCK;
                int32_t isum = 0;
                for (int e = 0; e < INFER_QK; e++)
                    isum += ((int)q[(e / 4) * 64 + lane * 4 + e % 4] - 128) *
                            x[i].qs[e];
                float dd = infer_fp16_to_f32(d[lane]) * x[i].d;
                acc = fmaf((float)isum, dd, acc);
            }
            y[b * ldy + r] = acc;
        }
    }
}

static void attn_qk(const float *q, int nh, const uint16_t *kt, int bs, int cnt,
                    int hd, float *s, int64_t lds)
{
    for (int h = 0; h < nh; h++)
        for (int p = 0; p < cnt; p++) {
            float acc = 0;
            for (int j = 0; j < hd; j++)
                acc +=
                    q[h * hd + j] * infer_fp16_to_f32(kt[(size_t)j * bs + p]);
            s[h * lds + p] = acc;
        }
}

void infer__rmsnorm_scalar(float *o, const float *x, const float *w, int n,
                           float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++)
        o[i] = x[i] * r * w[i];
}

void infer__softmax_scalar(float *s, int n, float scale, float *stat)
{
    float mx = -INFINITY, t = 0;
    for (int p = 0; p < n; p++) {
        s[p] *= scale;
        mx = s[p] > mx ? s[p] : mx;
    }
    for (int p = 0; p < n; p++) {
        s[p] = expf(s[p] - mx);
        t += s[p];
    }
    for (int p = 0; p < n; p++)
        s[p] /= t;
    if (stat != NULL) {
        stat[0] = mx;
        stat[1] = t;
    }
}

static void attn_v(const float *a, int64_t lda, int nh, const uint16_t *v,
                   int cnt, int hd, float *o)
{
    for (int h = 0; h < nh; h++)
        for (int p = 0; p < cnt; p++)
            for (int j = 0; j < hd; j++)
                o[h * hd + j] +=
                    a[h * lda + p] * infer_fp16_to_f32(v[(size_t)p * hd + j]);
}

void infer__silu_mul_scalar(float *g, const float *u, int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        g[j] = g[j] / (1.0f + expf(-g[j])) * u[j];
}

void infer__to_half_scalar(const float *x, uint16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = infer_f32_to_fp16(x[i]);
}

const struct infer_kernels infer_kernels_scalar = {
    .name = "scalar",
    .attn_qk = attn_qk,
    .attn_v = attn_v,
    .softmax = infer__softmax_scalar,
    .rmsnorm = infer__rmsnorm_scalar,
    .quant_q8a = infer_quantize_q8a,
    .quant_q8k = infer_quantize_q8k,
    .silu_mul = infer__silu_mul_scalar,
    .to_half = infer__to_half_scalar,
    .mm_q8r = mm_q8r,
    .mm =
        {
            [INFER_TYPE_F32] = mm_f32,
            [INFER_TYPE_F16] = mm_f16,
            [INFER_TYPE_BF16] = mm_bf16,
            [INFER_TYPE_Q8_0] = mm_q8_0,
            [INFER_TYPE_Q4_0] = mm_q4_0,
            [INFER_TYPE_Q5_0] = mm_q5_0,
            [INFER_TYPE_Q5_1] = mm_q5_1,
            [INFER_TYPE_Q5_K] = mm_q5_k,
            [INFER_TYPE_Q4_K] = mm_q4_k,
            [INFER_TYPE_Q6_K] = mm_q6_k,
        },
};

/* ---- choosing a set
 * ----------------------------------------------------------- */

const char *const infer_kernel_names[] = {"scalar", "avx2", "avxvnni", "avx512",
                                          NULL};

/* clang 14's __builtin_cpu_supports does not know "f16c"; CPUID does. */
static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}

/* AVX-VNNI (the VEX VPDPBUSD): CPUID leaf 7, subleaf 1, EAX bit 4. */
static bool cpu_has_avxvnni(void)
{
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4)) != 0;
}

/* The AVX2 set with the AVX-VNNI Q8R kernel, made once. */
static struct infer_kernels avxvnni_set;
static pthread_once_t avxvnni_once = PTHREAD_ONCE_INIT;
static void avxvnni_make(void)
{
    avxvnni_set = infer_kernels_avx2;
    avxvnni_set.name = "avxvnni";
    avxvnni_set.mm_q8r = infer__mm_q8r_avxvnni;
}

const struct infer_kernels *infer_kernels_get(const char *name)
{
    if (name == NULL)
        return NULL;
    __builtin_cpu_init();
    if (strcmp(name, "scalar") == 0)
        return &infer_kernels_scalar;
    bool avx2 = __builtin_cpu_supports("avx2") &&
                __builtin_cpu_supports("fma") && cpu_has_f16c();
    if (strcmp(name, "avx2") == 0)
        return avx2 ? &infer_kernels_avx2 : NULL;
    if (strcmp(name, "avxvnni") == 0) {
        if (!avx2 || !cpu_has_avxvnni())
            return NULL;
        pthread_once(&avxvnni_once, avxvnni_make);
        return &avxvnni_set;
    }
    if (strcmp(name, "avx512") == 0)
        return avx2 && __builtin_cpu_supports("avx512f") &&
                       __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl") &&
                       __builtin_cpu_supports("avx512vnni")
                   ? &infer_kernels_avx512
                   : NULL;
    return NULL;
}

const struct infer_kernels *infer_kernels_best(void)
{
    const char *env = getenv("ARENA_KERNELS");
    const struct infer_kernels *k = infer_kernels_get(env);
    if (k != NULL)
        return k;
    k = infer_kernels_get("avx512");
    if (k == NULL)
        k = infer_kernels_get("avxvnni");
    if (k == NULL)
        k = infer_kernels_get("avx2");
    return k != NULL ? k : &infer_kernels_scalar;
}
