/*
 * infer_kernels.h: block layouts, (de)quantisation and the matrix kernels
 * of the forward pass, plus the thread pool that runs them. Internal to
 * inference/ and its tests.
 *
 * Weights stay in their file type (ggml block layouts; Q8_0, Q4_0, Q5_1,
 * Q4_K, Q5_K and Q6_K may also be reordered, with the same integers and
 * scales, into the packed layouts below: Q8R, Q4R, Q51R, Q4KR, Q5KR, Q6KR;
 * Q5_0 goes into Q8R as the Q8_0 blocks of the same values). A matmul
 * multiplies nb activation rows by a range of weight rows: each weight row is
 * read from memory once and applied to all nb rows while it sits in L1, which
 * is what makes batched decoding cheaper per token. Quantised weights take
 * activations quantised to 8 bits (struct infer_q8a for 32-blocks, struct
 * infer_q8k for 256-blocks) and use integer dot products; float weights
 * take float activations.
 *
 * Kernel sets: "scalar" (the portable reference), "avx2" (AVX2+FMA+F16C),
 * "avx512" (AVX-512 F/BW/VL + VNNI). infer_kernels_best() picks the best the
 * CPU has (CPUID), or the one named by $ARENA_KERNELS. All are pure
 * functions of their inputs and safe from any thread.
 */
#ifndef INFER_KERNELS_H
#define INFER_KERNELS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infer_internal.h"

/* ---- block layouts (identical to ggml's) -------------------------------- */

#define INFER_QK   32  /* elements per Q4_0 / Q8_0 block */
#define INFER_QK_K 256 /* elements per K-quant super-block */

struct infer_block_q8_0 {
    uint16_t d; /* fp16 scale */
    int8_t qs[32];
};
struct infer_block_q4_0 {
    uint16_t d;     /* fp16 scale; x = d * (q - 8) */
    uint8_t qs[16]; /* element j in low nibble of qs[j], j+16 in high */
};
struct infer_block_q5_0 {
    uint16_t d;     /* fp16 scale; x = d * (q - 16), q of 5 bits */
    uint8_t qh[4];  /* bit j of the little-endian word: q_j's fifth bit */
    uint8_t qs[16]; /* low 4 bits: element j in qs[j] low, j+16 high */
};
struct infer_block_q5_1 {
    uint16_t d, m;  /* fp16; x = d * q + m, q of 5 bits */
    uint8_t qh[4];  /* as Q5_0 */
    uint8_t qs[16]; /* as Q5_0 */
};
struct infer_block_q4_k {
    uint16_t d;         /* fp16 scale of the 6-bit scales */
    uint16_t dmin;      /* fp16 scale of the 6-bit mins */
    uint8_t scales[12]; /* 8 (scale, min) pairs, 6 bits each */
    uint8_t qs[128];    /* 4-bit quants */
};
struct infer_block_q5_k {
    uint16_t d;         /* fp16 scale of the 6-bit scales */
    uint16_t dmin;      /* fp16 scale of the 6-bit mins */
    uint8_t scales[12]; /* 8 (scale, min) pairs, 6 bits each, as Q4_K */
    uint8_t qh[32];     /* bit j of qh[l]: fifth bit of sub-block j's l */
    uint8_t qs[128];    /* low 4 bits, as Q4_K's quants */
};
struct infer_block_q6_k {
    uint8_t ql[128];   /* low 4 bits */
    uint8_t qh[64];    /* high 2 bits */
    int8_t scales[16]; /* one per 16 elements */
    uint16_t d;        /* fp16 super-block scale */
};

/* Activations for 32-blocks: x ~= d * q; nsum128 = -128 * (sum of q), the
 * start of a VPDPBUSD dot with weights + 128 (Q8R), read from memory
 * there, as a broadcast load costs no arithmetic. */
struct infer_q8a {
    float d;
    int32_t nsum128;
    int8_t qs[32];
};
/* Activations for 256-blocks; bsums[i] = sum of qs[16i .. 16i+15]. */
struct infer_q8k {
    float d;
    int16_t bsums[16];
    int8_t qs[256];
};

/* ---- scalar conversions ------------------------------------------------- */
float infer_fp16_to_f32(uint16_t h);
uint16_t infer_f32_to_fp16(float f); /* round to nearest even */
float infer_bf16_to_f32(uint16_t h);
uint16_t infer_f32_to_bf16(float f); /* round to nearest even */

/* Dequantises k elements (k a multiple of the type's block) of type at src
 * into dst. Supported: F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K,
 * Q6_K. */
void infer_dequantize_row(uint32_t type, const void *src, float *dst,
                          int64_t k);
/* Quantises k floats into type (reference quantisers, for mkmodel and
 * tests). Same types. */
void infer_quantize_row(uint32_t type, const float *src, void *dst, int64_t k);
/* Bytes of one row of k elements of type; 0 if k is not a block multiple. */
size_t infer_row_bytes(uint32_t type, int64_t k);
/* True for the weight types the kernels multiply. */
int infer_type_supported(uint32_t type);

/* ---- activation formats -------------------------------------------------- */

enum infer_act_kind {
    INFER_ACT_F32 = 0, /* float rows */
    INFER_ACT_Q8A,     /* struct infer_q8a blocks */
    INFER_ACT_Q8K,     /* struct infer_q8k blocks */
};
/* The activation format a weight type wants. */
enum infer_act_kind infer_act_kind_of(uint32_t wtype);
/* Bytes of one activation row of k elements in that format. */
size_t infer_act_row_bytes(enum infer_act_kind kind, int64_t k);
/* Reference activation quantisers (k a block multiple). */
void infer_quantize_q8a(const float *x, struct infer_q8a *y, int64_t k);
void infer_quantize_q8k(const float *x, struct infer_q8k *y, int64_t k);
/* One activation row of k floats in the format kind (a copy for F32). */
void infer_quantize_act(enum infer_act_kind kind, const float *x, void *y,
                        int64_t k);

/* ---- matmul kernels ------------------------------------------------------ */

/* y[b * ldy + r] = dot(weight row r, activation row b) for r in [r0, r1)
 * and b in [0, nb). Weight row r starts at w + r * w_stride; activation row
 * b at xa + b * xa_stride in the format infer_act_kind_of(type) gives; k is
 * the row length in elements. */
typedef void (*infer_mm_fn)(const void *w, size_t w_stride, int64_t k,
                            int64_t r0, int64_t r1, const void *xa,
                            size_t xa_stride, int nb, float *y, int64_t ldy);

/* Attention's weighted sum of V rows (half precision, as the KV cache
 * keeps them): for h < nh and j < hd, o[h * hd + j] += sum over p < cnt of
 * a[h * lda + p] * v[p * hd + j], added in order of p (so a sequence's
 * result never depends on others). */
typedef void (*infer_attn_v_fn)(const float *a, int64_t lda, int nh,
                                const uint16_t *v, int cnt, int hd, float *o);

/* Attention scores against one KV block whose K (half precision) is stored
 * by dimension (kt[j * bs + p] is element j of position p): s[h * lds + p]
 * = dot(q[h * hd ..], K of position p) for h < nh, p < cnt <= bs (each
 * value depends on its own q row and position only). */
typedef void (*infer_attn_qk_fn)(const float *q, int nh, const uint16_t *kt,
                                 int bs, int cnt, int hd, float *s,
                                 int64_t lds);

/* ---- Q8_0 repacked for the batch ("Q8R", 16 rows interleaved) -----------
 *
 * The same quants and scales as Q8_0, reordered at load time so that one
 * 64-byte load holds 4 consecutive quants of 16 rows: VPDPBUSD then
 * multiplies it by 4 activation bytes broadcast to every lane and each
 * int32 lane accumulates its own row. A block costs 8 such instructions and
 * one float scaling per activation row for 16 weight rows, where the
 * row-major layout needs a float scaling per 2 blocks of every row, and
 * the 16 results land in one register (no horizontal sums).
 *
 * A group of 16 rows of k columns is np = ceil(nblk / 2) pairs of blocks
 * (nblk = k / 32), stored one after another:
 *   uint16_t d[2][16]   fp16 scales of blocks 2p, 2p + 1 of rows 0-15
 *   uint8_t q[2][8][16][4]   block h, quad j, row r, byte t: quant
 *                            32 (2p + h) + 4 j + t of row r, plus 128
 * so a pair is 17 cache lines (1088 bytes; a last lone block 576, with
 * zero scales for the absent one). Groups follow each other; a tensor of
 * rows (a multiple of 16) takes rows / 16 * infer_q8r_group_bytes(k). */
#define INFER_Q8R_ROWS 16
size_t infer_q8r_group_bytes(int64_t k);
/* Packs rows (a multiple of 16) Q8_0 rows of k columns, row r at src +
 * r * src_stride, into dst (rows / 16 groups). */
void infer_pack_q8r(const void *src, size_t src_stride, int64_t rows, int64_t k,
                    void *dst);

/* y[b * ldy + r] = dot(row r, activation row b) for r in [r0, r1) (both
 * multiples of 16) of the packed matrix wp, activations struct infer_q8a.
 * The kernel prefetches weights ahead up to row pf_end (the caller's next
 * rows, if it goes on with them), and first asks for the start of
 * [r0, r1) at once if cold (nothing prefetched it).
 * Every element is sum over blocks, in order, of
 * fmaf((float)idot, d_w * d_x, acc): the same bits in every kernel set
 * and whatever the batch. */
typedef void (*infer_mm_packed_fn)(const void *wp, int64_t k, int64_t r0,
                                   int64_t r1, int64_t pf_end, bool cold,
                                   const void *xa, size_t xa_stride, int nb,
                                   float *y, int64_t ldy);

/* ---- Q4_0, Q4_K and Q6_K repacked the same way ("Q4R", "Q4KR", "Q6KR") --
 *
 * The same integers and scales as the file's, 16 rows interleaved so that
 * one 64-byte load holds a quad of 16 rows, as in Q8R. 4-bit quants stay
 * nibbles, two blocks (Q4_0) or two sub-blocks (Q4_K) sharing each byte:
 * the low nibble is the first one's quant, the high nibble the second's,
 * which VPDPBUSD takes as it is once masked (v & 0xf0 is 16 x the quant:
 * that sum is 16 x the true one, shifted back exactly). Q6_K quants are
 * widened to one a byte. Q4R's sums are Q8R's (the Q8_0 blocks of the same
 * scale and quants - 8), in the same float steps: Q8R's bits. Q4KR and
 * Q6KR keep the sub-block scales as integers and the super-block scales
 * in fp16, so their kernels compute exactly what the scalar set's
 * row-major ones do (integer sums in any order are the same integer; the
 * float steps per super-block are the scalar dot's): the same bits.
 * A group of 16 rows of k columns is:
 *   Q4R: ceil(k / 64) pairs of blocks (576 bytes each; a last lone block
 *   has zero high nibbles and scales):
 *     uint16_t d[2][16]            fp16 scales of blocks 2p, 2p + 1
 *     uint8_t q[8][16][4]          quad j, row r, byte t: quant 4 j + t of
 *                                  block 2p (low nibble), 2p + 1 (high)
 *   Q51R (Q5_1): ceil(k / 64) pairs of blocks (1152 bytes each):
 *     uint16_t d[2][16], m[2][16]  fp16 scales and minimums, rows 0-15
 *     uint8_t q[2][8][16][4]       block h, quad j, row r, byte t: the
 *                                  5-bit quant 4 j + t (0-31)
 *   k / 256 super-blocks of
 *   Q4KR (2368 bytes):
 *     uint16_t d[16], dmin[16]     rows' fp16 scales
 *     uint8_t sc[8][16]            sub-block j's 6-bit scale, row r
 *     uint8_t m[4][16][2]          mins of sub-blocks 2c, 2c + 1, row r
 *     uint8_t q[4][8][16][4]       pair c, quad t, row r, byte: quant
 *                                  4 t + byte of sub-block 2c (low
 *                                  nibble) and 2c + 1 (high)
 *   Q5KR (4416 bytes): Q4KR's scales and mins, then the 5-bit quants a
 *   byte each (0-31): uint8_t q[8][8][16][4], sub-block j, quad t, row r
 *   Q6KR (4672 bytes):
 *     uint16_t d[16], pad[16]
 *     int8_t sc[16][16]            16-element sub-block g's scale, row r
 *     int8_t sc2[8][16][2]         scales of sub-blocks 2t, 2t + 1, row r
 *     uint8_t q[16][4][16][4]      sub-block g, quad t, row r, byte: the
 *                                  6-bit quant 16 g + 4 t + byte (0-63)
 * Q51R per row and block, in order: acc = fmaf(dot(q, x), d * x.d, acc),
 * then acc = fmaf(m, x.d * sum(x), acc) (sum(x) = -nsum128 / 128).
 * Q4KR and Q5KR per row and super-block: sumi = sum_j sc_j * dot(q_j, x_j),
 * summ = sum_j m_j * (x's sum over sub-block j), acc += x.d * (d * sumi - dmin
 * * summ); Q6KR: sumi = sum_g sc_g * (dot(q_g, x_g) - 32 * (x's sum over g)),
 * acc += x.d * d * sumi (activations struct infer_q8k). */
#define INFER_Q4R_PAIR  576
#define INFER_Q51R_PAIR 1152
#define INFER_Q4KR_SB   2368
#define INFER_Q5KR_SB   4416
#define INFER_Q6KR_SB   4672

/* Bytes of a packed group of 16 rows of k columns of type (Q8_0 and Q5_0:
 * Q8R, Q4_0: Q4R, Q5_1: Q51R, Q4_K, Q5_K, Q6_K), 0 for other types or a k that
 * is not a block multiple. Q5_0 packs as the Q8_0 blocks of the same scale and
 * quants - 16 (exact). */
size_t infer_packed_group_bytes(uint32_t type, int64_t k);
/* Packs rows (a multiple of 16) rows of type (as above), row r at src +
 * r * src_stride, into dst (rows / 16 groups). */
void infer_pack(uint32_t type, const void *src, size_t src_stride, int64_t rows,
                int64_t k, void *dst);

struct infer_kernels {
    const char *name;
    infer_mm_fn mm[INFER_TYPE_COUNT]; /* NULL for unsupported types */
    infer_mm_packed_fn mm_q8r;        /* NULL: the set uses row-major Q8_0 */
    infer_mm_packed_fn mm_q4r;        /* NULL: row-major Q4_0 */
    infer_mm_packed_fn mm_q51r;       /* NULL: row-major Q5_1 */
    infer_mm_packed_fn mm_q4kr;       /* NULL: row-major Q4_K */
    infer_mm_packed_fn mm_q5kr;       /* NULL: row-major Q5_K */
    infer_mm_packed_fn mm_q6kr;       /* NULL: row-major Q6_K */
    infer_attn_qk_fn attn_qk;
    infer_attn_v_fn attn_v;
    /* infer_quantize_q8a() and infer_quantize_q8k() (same bits, faster). */
    void (*quant_q8a)(const float *x, struct infer_q8a *y, int64_t k);
    void (*quant_q8k)(const float *x, struct infer_q8k *y, int64_t k);
    /* o[i] = x[i] * r * w[i] for i < n, r = 1 / sqrt(mean(x^2) + eps)
     * with the squares summed in double (RMSNorm). */
    void (*rmsnorm)(float *o, const float *x, const float *w, int n, float eps);
    /* s[p] = exp(scale s[p] - m) / sum for p < n, m the largest scale s[p]
     * and sum the sum of the exps (attention weights); exp as below. If
     * stat is not NULL, stat[0] = m and stat[1] = sum (to merge the
     * softmaxes of parts of a row). */
    void (*softmax)(float *s, int n, float scale, float *stat);
    /* g[j] = g[j] / (1 + exp(-g[j])) * u[j] for j < n (SwiGLU); exp to
     * within a few ulp of expf(). */
    void (*silu_mul)(float *g, const float *u, int64_t n);
    /* y[i] = infer_f32_to_fp16(x[i]) for i < n, finite x (the KV cache's
     * writes): the same bits in every set. */
    void (*to_half)(const float *x, uint16_t *y, int64_t n);
};

/* The set's kernel for a packed weight of type, or NULL. */
static inline infer_mm_packed_fn infer_packed_fn(const struct infer_kernels *ks,
                                                 uint32_t type)
{
    switch (type) {
    case INFER_TYPE_Q8_0:
    case INFER_TYPE_Q5_0:
        return ks->mm_q8r;
    case INFER_TYPE_Q4_0:
        return ks->mm_q4r;
    case INFER_TYPE_Q5_1:
        return ks->mm_q51r;
    case INFER_TYPE_Q4_K:
        return ks->mm_q4kr;
    case INFER_TYPE_Q5_K:
        return ks->mm_q5kr;
    case INFER_TYPE_Q6_K:
        return ks->mm_q6kr;
    default:
        return NULL;
    }
}

/* The best set this CPU runs (or $ARENA_KERNELS if set and runnable).
 * Cannot fail: the scalar set always runs. */
const struct infer_kernels *infer_kernels_best(void);
/* A set by name, or NULL if unknown or the CPU lacks its instructions. */
const struct infer_kernels *infer_kernels_get(const char *name);
/* Names of all sets in order scalar, avx2, avx512 (NULL-terminated). */
extern const char *const infer_kernel_names[];

/* Per-file SIMD sets (defined in infer_kernels_<isa>.c). */
extern const struct infer_kernels infer_kernels_scalar;
extern const struct infer_kernels infer_kernels_avx2;
/* "avxvnni" is the AVX2 set with this Q8R kernel (infer_kernels_get). */
extern const infer_mm_packed_fn infer__mm_q8r_avxvnni;
extern const struct infer_kernels infer_kernels_avx512;

/* ---- benchmark loops (infer_kernels_<isa>.c) ---------------------------- */

/* Reads bytes (a multiple of 256, 64-byte aligned) with wide loads and
 * returns a value depending on all of them (so the loads stay). */
uint64_t infer__bw_read_avx2(const void *p, size_t bytes);
/* iters rounds of 12 independent FMA chains; returns the flops done. */
double infer__fma_loop_avx2(long iters);
double infer__fma_loop_avx512(long iters);

/* ---- thread pool ----------------------------------------------------------
 */

/* A fixed set of worker threads that run one function on all threads at
 * once (ith = 0..nth-1, the caller being ith 0), in the manner of ggml.
 * One infer_pool_run() at a time per pool. Waits spin for some tens of
 * microseconds and then sleep on a futex (never spin long: the machines
 * are shared and often oversubscribed). */
struct infer_pool;
typedef void (*infer_pool_fn)(void *arg, int ith, int nth);
/* n_threads <= 0: number of online CPUs. NULL on failure. */
struct infer_pool *infer_pool_new(int n_threads);
void infer_pool_free(struct infer_pool *p); /* NULL is a no-op */
int infer_pool_size(const struct infer_pool *p);
/* Runs fn on every thread and returns when all have returned. */
void infer_pool_run(struct infer_pool *p, infer_pool_fn fn, void *arg);
/* Inside fn: waits until all nth threads reached it. */
void infer_pool_barrier(struct infer_pool *p);
/* Waits until *a >= target (spin briefly, then sleep). Whoever raises *a
 * calls infer_pool_wake(a, sleepers) afterwards; sleepers counts the
 * threads asleep on a (zero-initialised, shared by waiters and wakers). */
void infer_pool_wait_ge(atomic_int *a, int target, atomic_int *sleepers);
void infer_pool_wake(atomic_int *a, atomic_int *sleepers);

#endif
