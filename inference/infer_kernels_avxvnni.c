/*
 * infer_kernels_avxvnni.c: the Q8R matmul for CPUs with AVX-VNNI (the VEX,
 * 256-bit VPDPBUSD) but not AVX-512 VNNI: Intel's Alder Lake and later
 * client cores and its E-core servers (Sierra Forest). This file alone is
 * compiled with -mavx2 -mfma -mf16c -mavxvnni; the "avxvnni" set is the
 * AVX2 set with this kernel (infer_kernels_get builds it after CPUID).
 *
 * The layout and driver are the AVX-512 kernel's and the tile is the
 * AVX2 one's (infer_kernels_x86.h), which, built with -mavxvnni, spends one
 * VPDPBUSD per half-quad and activation row where AVX2 spends four
 * operations. All Q8R kernels give the same bits.
 */
#include <immintrin.h>

#include "infer_kernels.h"
#include "infer_kernels_x86.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

#define Q8R_S     3    /* activation rows per pass: 2 x 3 int and float sums */
#define Q8R_AHEAD 8192 /* prefetch distance, bytes, when passes are short */

ALWAYS_INLINE void q8r_tiles(const uint8_t *gp, int64_t nblk, const char *xb,
                             size_t xa_stride, int ns, float *yb, int64_t ldy,
                             const char *pf, size_t pf_lines)
{
    switch (ns) {
    case 1:
        infer__q8r256_tile(gp, nblk, xb, xa_stride, 1, yb, ldy, pf, pf_lines);
        break;
    case 2:
        infer__q8r256_tile(gp, nblk, xb, xa_stride, 2, yb, ldy, pf, pf_lines);
        break;
    default:
        infer__q8r256_tile(gp, nblk, xb, xa_stride, 3, yb, ldy, pf, pf_lines);
        break;
    }
}

Q8R_DRIVER(mm_q8r, q8r_tiles, Q8R_S, Q8R_AHEAD)

const infer_mm_packed_fn infer__mm_q8r_avxvnni = mm_q8r;
