/* tensor.h: shapes, the activation arena and the GEMM wrapper.
 *
 * Tensors are plain float arrays in NCHW order (batch, channels, height,
 * width), batch first. This module does not own tensors; it gives their
 * shape arithmetic, a bump arena to carve them from, and matrix products.
 */
#ifndef DDPM_TENSOR_H
#define DDPM_TENSOR_H

#include <stdbool.h>
#include <stddef.h>

#include "ddpm/common.h"

/* ---- shapes ----------------------------------------------------------------- */

typedef struct {
    int n, c, h, w;
} ddpm_shape;

static inline size_t ddpm_shape_numel(ddpm_shape s) {
    return (size_t)s.n * (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

/* ---- arena -------------------------------------------------------------------
 * One block allocated up front; ddpm_arena_alloc hands out 64-byte aligned
 * slices and never calls malloc. ddpm_arena_mark/ddpm_arena_reset free
 * everything allocated after a mark, so a training step can reuse the same
 * memory every iteration. An arena with capacity 0 is a "measuring" arena:
 * ddpm_arena_alloc returns NULL but still counts `used`/`peak`, which lets a
 * model size its real arena with a dry run of its allocation sequence.
 */
typedef struct {
    char *base;
    size_t capacity; /* bytes */
    size_t used;     /* bytes, including alignment padding */
    size_t peak;     /* high-water mark of `used` */
    bool measuring;
} ddpm_arena;

ddpm_status ddpm_arena_init(ddpm_arena *a, size_t bytes);
void ddpm_arena_init_measuring(ddpm_arena *a);
void ddpm_arena_free(ddpm_arena *a);
/* count floats, 64-byte aligned; NULL (with an error message) when full. */
float *ddpm_arena_alloc(ddpm_arena *a, size_t count);
/* Same, zero-filled. */
float *ddpm_arena_calloc(ddpm_arena *a, size_t count);
static inline size_t ddpm_arena_mark(const ddpm_arena *a) { return a->used; }
void ddpm_arena_reset(ddpm_arena *a, size_t mark);

/* ---- GEMM --------------------------------------------------------------------
 * Row-major C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, where op(X)
 * is X or X^T. lda/ldb/ldc are the row strides of A, B, C as stored. Backed by
 * cblas_sgemm.
 */
void ddpm_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta,
               float *C, int ldc);

/* Number of threads OpenBLAS uses (set with ddpm_blas_set_threads) and the
 * name of the kernel set it picked ("Haswell", "SkylakeX", ...). */
void ddpm_blas_set_threads(int n);
const char *ddpm_blas_core(void);

/* Uses n threads for the library's OpenMP loops and OpenBLAS (n <= 0: all
 * cores); returns n. Results never depend on it. */
int ddpm_set_threads(int n);

#endif
