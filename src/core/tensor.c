/* tensor.c: arena and GEMM. See tensor.h. */
#include "ddpm/tensor.h"

#include <omp.h>

#include <cblas.h>
#include <stdint.h>
#include <string.h>

/* ---- arena ----------------------------------------------------------------- */

ddpm_status ddpm_arena_init(ddpm_arena *a, size_t bytes) {
    memset(a, 0, sizeof *a);
    a->base = ddpm_malloc(bytes);
    if (!a->base) return DDPM_ERR_NOMEM;
    a->capacity = bytes;
    return DDPM_OK;
}

void ddpm_arena_init_measuring(ddpm_arena *a) {
    memset(a, 0, sizeof *a);
    a->measuring = true;
}

void ddpm_arena_free(ddpm_arena *a) {
    ddpm_free(a->base);
    memset(a, 0, sizeof *a);
}

float *ddpm_arena_alloc(ddpm_arena *a, size_t count) {
    if (count > (SIZE_MAX - DDPM_ALIGN) / sizeof(float)) {
        ddpm_error(DDPM_ERR_NOMEM, "arena request of %zu floats overflows", count);
        return NULL;
    }
    size_t bytes = (count * sizeof(float) + DDPM_ALIGN - 1) / DDPM_ALIGN * DDPM_ALIGN;
    if (a->measuring) {
        a->used += bytes;
        if (a->used > a->peak) a->peak = a->used;
        return NULL;
    }
    if (bytes > a->capacity - a->used) {
        ddpm_error(DDPM_ERR_NOMEM, "arena full: %zu bytes requested, %zu of %zu free",
                   bytes, a->capacity - a->used, a->capacity);
        return NULL;
    }
    float *p = (float *)(a->base + a->used);
    a->used += bytes;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

float *ddpm_arena_calloc(ddpm_arena *a, size_t count) {
    float *p = ddpm_arena_alloc(a, count);
    if (p) memset(p, 0, count * sizeof(float));
    return p;
}

void ddpm_arena_reset(ddpm_arena *a, size_t mark) {
    if (mark <= a->used) a->used = mark;
}

/* ---- GEMM ------------------------------------------------------------------ */

void ddpm_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta,
               float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb,
                beta, C, ldc);
}


/* OpenBLAS extensions (declared in its cblas.h, but not in every cblas.h). */
extern void openblas_set_num_threads(int);
extern char *openblas_get_corename(void);

void ddpm_blas_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

int ddpm_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    ddpm_blas_set_threads(n);
    return n;
}

const char *ddpm_blas_core(void) { return openblas_get_corename(); }
