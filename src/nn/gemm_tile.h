/* gemm_tile.h: small single-threaded float GEMMs with our own register-blocked
 * microkernels, for the Winograd tile products (winograd.c): M up to a few
 * thousand, N and K tens to a few hundred, called from inside the conv's
 * threads. OpenBLAS (ddpm_gemm) stays for everything else.
 *
 * Code paths, picked at run time from the CPU's features, so the speed does
 * not depend on the -march of the build nor on OPENBLAS_CORETYPE:
 *   avx512   AVX-512F, 16-float vectors, blocks up to 6 x 64 (x86 only)
 *   avx2     AVX2 + FMA, 8-float vectors, blocks up to 6 x 16 (x86 only)
 *   generic  portable C (any compiler, any CPU)
 *   blas     OpenBLAS (ddpm_gemm, single-threaded inside a parallel region):
 *            the default where neither SIMD path runs (e.g. aarch64, whose
 *            OpenBLAS kernels beat plain C), so such machines lose nothing
 * NN and TN products sum each output over k = 0 .. K-1 in order (the SIMD
 * paths with fused multiply-adds); NT products (ddpm_tile_gemm_nt) sum along
 * k in vector lanes, then across the lanes in a fixed order, or (K < 256)
 * by slices of 64 k added onto C in order. Either way an
 * output's bits depend only on its row of op(A) and column of op(B): a path
 * gives the same bits whatever the call's M, N and the caller's threads. The
 * paths differ from each other in the last bits only.
 */
#ifndef DDPM_NN_GEMM_TILE_H
#define DDPM_NN_GEMM_TILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddpm/common.h"
#include "ddpm/tensor.h"

typedef enum {
    DDPM_ISA_GENERIC,
    DDPM_ISA_AVX2,
    DDPM_ISA_AVX512,
    DDPM_ISA_BLAS,
    DDPM_ISA_COUNT
} ddpm_isa;

/* True when this build and this CPU can run the path (generic, blas: always). */
bool ddpm_isa_supported(ddpm_isa isa);
/* "generic", "avx2", "avx512", "blas". */
const char *ddpm_isa_name(ddpm_isa isa);
/* The path ddpm uses: avx512, else avx2, else blas, whichever the CPU runs
 * first; or the one the environment variable DDPM_KERNEL names (generic,
 * avx2, avx512, blas; for tests and measurements), a SIMD one lowered to the
 * best supported one below it when the CPU lacks it; an unknown name counts
 * as unset. Read once, then cached. */
ddpm_isa ddpm_isa_selected(void);

/* C (M, N) = op(A) @ B, or C += op(A) @ B when acc, row-major with leading
 * dimensions lda, ldb, ldc, using path isa (which must be supported).
 * op(A) = A (M, K) when !ta, A^T of A (K, M) when ta. B is (K, N).
 * C must not overlap A or B. M, N <= 0: nothing; K <= 0: C = 0 (or kept). */
void ddpm_tile_gemm(ddpm_isa isa, bool ta, int M, int N, int K, const float *A, int lda,
                    const float *B, int ldb, float *C, int ldc, bool acc);

/* C (M, N) = A (M, K) @ B^T, or += when acc, with B (N, K): as
 * ddpm_tile_gemm for an NT product. */
void ddpm_tile_gemm_nt(ddpm_isa isa, int M, int N, int K, const float *A, int lda,
                       const float *B, int ldb, float *C, int ldc, bool acc);

/* One product of a pass over images (conv.c, the UNet's 1x1 shortcut):
 * ddpm_tile_gemm with ddpm_isa_selected() when the caller is one thread of an
 * active parallel region or OpenMP has a single thread; otherwise (a lone
 * call with threads to spare: one image, or a conv too small for a team)
 * OpenBLAS's ddpm_gemm, which may thread the product itself. */
void ddpm_image_gemm(bool ta, int M, int N, int K, const float *A, int lda, const float *B,
                     int ldb, float *C, int ldc, bool acc);
/* The same for ddpm_tile_gemm_nt. */
void ddpm_image_gemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                        float *C, int ldc, bool acc);



/* ---- bf16 products (gemm_bf16.c) -----------------------------------------------
 * op(A) @ op(B) with both operands rounded to bf16 (nn/bf16.h, nearest even)
 * and the products summed in float: each product of two bf16 values is exact
 * in float (8 x 8 significant bits), so the two paths below differ only in the
 * order of the float sums, never in the operands' rounding.
 *   avx512bf16  AVX512_BF16 (vdpbf16ps: two bf16 products added into each
 *               float lane per instruction); operands converted by
 *               vcvtne2ps2bf16 and packed into pairs along k; subnormal
 *               operands count as zero (the instructions' DAZ), so an
 *               operand in [2^-126 (1 - 2^-8), 2^-126), which rounds up to
 *               the smallest normal bf16, counts here and not there
 *   portable    the operands rounded into float copies, then the float
 *               path ddpm_isa_selected() (plain C with DDPM_KERNEL=generic)
 * Selected at run time: avx512bf16 when the CPU has AVX512_BF16 (cpuid leaf 7
 * subleaf 1, EAX bit 5) and the float path is avx512; portable otherwise, or
 * when DDPM_BF16=portable or DDPM_KERNEL names a path other than avx512. */
typedef enum { DDPM_BF16_PORTABLE, DDPM_BF16_AVX512, DDPM_BF16_ISA_COUNT } ddpm_bf16_isa;

bool ddpm_bf16_isa_supported(ddpm_bf16_isa isa);
const char *ddpm_bf16_isa_name(ddpm_bf16_isa isa); /* "portable", "avx512bf16" */
ddpm_bf16_isa ddpm_bf16_isa_selected(void);        /* read once, then cached */

/* C (M, N) = op(A) @ op(B), or += when acc, operands rounded to bf16, with
 * path isa (which must be supported). op(A) is A (M, K) or, when ta, A^T of
 * A (K, M); op(B) is B (K, N) or, when tb, B^T of B (N, K). C must not
 * overlap A or B. M, N <= 0: nothing; K <= 0: C = 0 (or kept). Bits of an
 * output depend only on its row of op(A) and column of op(B) (not on M, N or
 * the threads). Allocates packed copies of the operands; should that fail,
 * the same result comes from a slower loop without them. */
void ddpm_tile_gemm_bf16(ddpm_bf16_isa isa, bool ta, bool tb, int M, int N, int K,
                         const float *A, int lda, const float *B, int ldb, float *C, int ldc,
                         bool acc);

/* The avx512bf16 product in steps, for a caller that multiplies by one
 * operand many times (winograd.c: a conv's transformed weights, once per
 * chunk of tiles): op(A) and op(B) packed into pairs of bf16 once, then
 * multiplied as often as needed. The bits are those of ddpm_tile_gemm_bf16
 * with DDPM_BF16_AVX512, which must be supported. Sizes in uint32_t. */
size_t ddpm_bf16_packed_a_size(int M, int K);
size_t ddpm_bf16_packed_b_size(int N, int K);
void ddpm_bf16_pack_a(uint32_t *Ap, bool ta, int M, int K, const float *A, int lda);
void ddpm_bf16_pack_b(uint32_t *Bp, bool tb, int N, int K, const float *B, int ldb);
/* C (M, N) = Ap @ Bp, or += when acc; K and ta as given to the packing (a
 * transposed A is packed k-major, so that its packing stores contiguously). */
void ddpm_bf16_gemm_packed(int M, int N, int K, const uint32_t *Ap, bool ta, const uint32_t *Bp,
                           float *C, int ldc, bool acc);

/* The ddpm_gemm contract (C = alpha op(A) op(B) + beta C, any thread context:
 * inside a parallel region or with one thread a single-threaded tile
 * product, else (portable) OpenBLAS, which may thread it) with op(A), op(B) rounded to bf16
 * and float sums; alpha and beta are applied in float to the float product. */
void ddpm_gemm_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);

/* ddpm_gemm (FP32) or ddpm_gemm_bf16 (BF16). */
static inline void ddpm_gemm_prec(ddpm_precision prec, bool ta, bool tb, int M, int N, int K,
                                  float alpha, const float *A, int lda, const float *B, int ldb,
                                  float beta, float *C, int ldc) {
    if (prec == DDPM_PREC_BF16) ddpm_gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else ddpm_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#endif
