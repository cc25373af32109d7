/* gemm_tile.c: the tile GEMMs of gemm_tile.h, a portable C path and, on x86,
 * AVX2+FMA and AVX-512 microkernels compiled with function-level target
 * attributes (the rest of the build keeps its -march), chosen at run time.
 *
 * The microkernels. C is cut into blocks of MR rows by NV vectors of
 * columns; a block's MR x NV accumulators live in registers for the whole k
 * loop, which per k loads NV vectors of B's row k and broadcasts MR elements
 * of op(A)'s column k: MR*NV fused multiply-adds for NV + MR loads. A and B
 * are read in place (no packing: at these sizes, N and K <= a few hundred,
 * a B panel of K x 16*NV floats stays in L1 while the row blocks pass).
 * The last column block of a row takes masked loads and stores (N not a
 * multiple of the vector), the last row block fewer rows (a switch over the
 * row count, one inlined copy each).
 *   AVX-512 (32 zmm): NV = 4 x MR = 6 (24 accumulators), 3 x 8, 2 x 12, 1 x 12
 *   AVX2 (16 ymm):    NV = 2 x MR = 6 (12 accumulators), 1 x 8
 */
#include "nn/gemm_tile.h"

#include <omp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm/tensor.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define DDPM_X86 1
#include <immintrin.h>
#endif

#if defined(__clang__)
#define UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define UNROLL _Pragma("GCC unroll 16")
#else
#define UNROLL
#endif

/* ---- portable path --------------------------------------------------------------- */

static void gemm_generic(bool ta, int M, int N, int K, const float *A, int lda, const float *B,
                         int ldb, float *C, int ldc, bool acc) {
    const size_t ai = ta ? 1 : (size_t)lda, ak = ta ? (size_t)lda : 1;
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        float row[256];
        for (int j0 = 0; j0 < N; j0 += 256) { /* a row of sums in a local buffer */
            const int nj = N - j0 < 256 ? N - j0 : 256;
            for (int j = 0; j < nj; j++) row[j] = 0.0f;
            for (int k = 0; k < K; k++) {
                const float a = A[i * ai + k * ak];
                const float *b = B + (size_t)k * ldb + j0;
                for (int j = 0; j < nj; j++) row[j] += a * b[j];
            }
            for (int j = 0; j < nj; j++) c[j0 + j] = acc ? c[j0 + j] + row[j] : row[j];
        }
    }
}

#ifdef DDPM_X86
/* ---- AVX-512 ------------------------------------------------------------------------ */
#define T512 __attribute__((target("avx512f")))
#define I512 static inline __attribute__((always_inline, target("avx512f")))

/* One block: rows [0, mr) x vectors [0, nv) of C; the last vector under mask m.
 * Element (i, k) of op(A) is A[i*ai + k*ak]. */
I512 void blk512(const int mr, const int nv, int K, const float *A, size_t ai, size_t ak,
                 const float *B, size_t ldb, float *C, size_t ldc, bool acc, __mmask16 m) {
    __m512 c[12][4];
    UNROLL for (int i = 0; i < mr; i++) UNROLL for (int v = 0; v < nv; v++) c[i][v] =
        _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb, *a = A + (size_t)k * ak;
        __m512 bv[4];
        UNROLL for (int v = 0; v < nv; v++) bv[v] =
            v == nv - 1 ? _mm512_maskz_loadu_ps(m, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
        UNROLL for (int i = 0; i < mr; i++) {
            const __m512 x = _mm512_set1_ps(a[i * ai]);
            UNROLL for (int v = 0; v < nv; v++) c[i][v] = _mm512_fmadd_ps(x, bv[v], c[i][v]);
        }
    }
    UNROLL for (int i = 0; i < mr; i++) UNROLL for (int v = 0; v < nv; v++) {
        float *p = C + i * ldc + 16 * v;
        const __mmask16 mv = v == nv - 1 ? m : (__mmask16)0xFFFF;
        __m512 r = c[i][v];
        if (acc) r = _mm512_add_ps(_mm512_maskz_loadu_ps(mv, p), r);
        _mm512_mask_storeu_ps(p, mv, r);
    }
}

/* Rows [0, M) of one column block of nv vectors, MR rows at a time. */
#define R512(nv, r)                                                                    \
    case r:                                                                            \
        blk512(r, nv, K, A + i * ai, ai, ak, B, ldb, C + i * ldc, ldc, acc, m);         \
        break;
#define COLS512(nv, MR, ...)                                                           \
    I512 void col512_##nv(int M, int K, const float *A, size_t ai, size_t ak,          \
                          const float *B, size_t ldb, float *C, size_t ldc, bool acc,  \
                          __mmask16 m) {                                               \
        for (size_t i = 0; i < (size_t)M; i += MR) {                                   \
            const size_t r = (size_t)M - i < MR ? (size_t)M - i : MR;                  \
            switch (r) { __VA_ARGS__ }                                                 \
        }                                                                              \
    }
COLS512(4, 6, R512(4, 1) R512(4, 2) R512(4, 3) R512(4, 4) R512(4, 5) R512(4, 6))
COLS512(3, 8, R512(3, 1) R512(3, 2) R512(3, 3) R512(3, 4) R512(3, 5) R512(3, 6) R512(3, 7)
                  R512(3, 8))
COLS512(2, 12, R512(2, 1) R512(2, 2) R512(2, 3) R512(2, 4) R512(2, 5) R512(2, 6) R512(2, 7)
                   R512(2, 8) R512(2, 9) R512(2, 10) R512(2, 11) R512(2, 12))
COLS512(1, 12, R512(1, 1) R512(1, 2) R512(1, 3) R512(1, 4) R512(1, 5) R512(1, 6) R512(1, 7)
                   R512(1, 8) R512(1, 9) R512(1, 10) R512(1, 11) R512(1, 12))

T512 static void gemm_avx512(bool ta, int M, int N, int K, const float *A, int lda,
                             const float *B, int ldb, float *C, int ldc, bool acc) {
    const size_t ai = ta ? 1 : (size_t)lda, ak = ta ? (size_t)lda : 1;
    for (int j = 0; j < N;) {
        const int rest = N - j, nv = rest >= 64 ? 4 : (rest + 15) / 16;
        const int w = rest < 16 * nv ? rest : 16 * nv;
        const __mmask16 m = (__mmask16)(w % 16 ? (1u << (w % 16)) - 1 : 0xFFFFu);
        const float *b = B + j;
        float *c = C + j;
        if (nv == 4) col512_4(M, K, A, ai, ak, b, (size_t)ldb, c, (size_t)ldc, acc, m);
        else if (nv == 3) col512_3(M, K, A, ai, ak, b, (size_t)ldb, c, (size_t)ldc, acc, m);
        else if (nv == 2) col512_2(M, K, A, ai, ak, b, (size_t)ldb, c, (size_t)ldc, acc, m);
        else col512_1(M, K, A, ai, ak, b, (size_t)ldb, c, (size_t)ldc, acc, m);
        j += w;
    }
}

/* ---- AVX2 + FMA ----------------------------------------------------------------------- */
#define T256 __attribute__((target("avx2,fma")))
#define I256 static inline __attribute__((always_inline, target("avx2,fma")))

I256 void blk256(const int mr, const int nv, int K, const float *A, size_t ai, size_t ak,
                 const float *B, size_t ldb, float *C, size_t ldc, bool acc, __m256i m) {
    __m256 c[8][2];
    UNROLL for (int i = 0; i < mr; i++) UNROLL for (int v = 0; v < nv; v++) c[i][v] =
        _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb, *a = A + (size_t)k * ak;
        __m256 bv[2];
        UNROLL for (int v = 0; v < nv; v++) bv[v] =
            v == nv - 1 ? _mm256_maskload_ps(b + 8 * v, m) : _mm256_loadu_ps(b + 8 * v);
        UNROLL for (int i = 0; i < mr; i++) {
            const __m256 x = _mm256_broadcast_ss(a + i * ai);
            UNROLL for (int v = 0; v < nv; v++) c[i][v] = _mm256_fmadd_ps(x, bv[v], c[i][v]);
        }
    }
    UNROLL for (int i = 0; i < mr; i++) UNROLL for (int v = 0; v < nv; v++) {
        float *p = C + i * ldc + 8 * v;
        const __m256i mv = v == nv - 1 ? m : _mm256_set1_epi32(-1);
        __m256 r = c[i][v];
        if (acc) r = _mm256_add_ps(_mm256_maskload_ps(p, mv), r);
        _mm256_maskstore_ps(p, mv, r);
    }
}

#define R256(nv, r)                                                                    \
    case r:                                                                            \
        blk256(r, nv, K, A + i * ai, ai, ak, B, ldb, C + i * ldc, ldc, acc, m);         \
        break;
#define COLS256(nv, MR, ...)                                                           \
    I256 void col256_##nv(int M, int K, const float *A, size_t ai, size_t ak,          \
                          const float *B, size_t ldb, float *C, size_t ldc, bool acc,  \
                          __m256i m) {                                                 \
        for (size_t i = 0; i < (size_t)M; i += MR) {                                   \
            const size_t r = (size_t)M - i < MR ? (size_t)M - i : MR;                  \
            switch (r) { __VA_ARGS__ }                                                 \
        }                                                                              \
    }
COLS256(2, 6, R256(2, 1) R256(2, 2) R256(2, 3) R256(2, 4) R256(2, 5) R256(2, 6))
COLS256(1, 8, R256(1, 1) R256(1, 2) R256(1, 3) R256(1, 4) R256(1, 5) R256(1, 6) R256(1, 7)
                  R256(1, 8))

T256 static void gemm_avx2(bool ta, int M, int N, int K, const float *A, int lda,
                           const float *B, int ldb, float *C, int ldc, bool acc) {
    const size_t ai = ta ? 1 : (size_t)lda, ak = ta ? (size_t)lda : 1;
    for (int j = 0; j < N;) {
        const int rest = N - j, nv = rest >= 16 ? 2 : (rest + 7) / 8;
        const int w = rest < 8 * nv ? rest : 8 * nv, t = w % 8 ? w % 8 : 8;
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(t),
                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const float *b = B + j;
        float *c = C + j;
        if (nv == 2) col256_2(M, K, A, ai, ak, b, (size_t)ldb, c, (size_t)ldc, acc, m);
        else col256_1(M, K, A, ai, ak, b, (size_t)ldb, c, (size_t)ldc, acc, m);
        j += w;
    }
}
#endif /* DDPM_X86 */

/* ---- selection -------------------------------------------------------------------------- */

bool ddpm_isa_supported(ddpm_isa isa) {
    switch (isa) {
    case DDPM_ISA_GENERIC: return true;
#ifdef DDPM_X86
    case DDPM_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case DDPM_ISA_AVX512: __builtin_cpu_init(); return __builtin_cpu_supports("avx512f");
#endif
    default: return false;
    }
}

static const char *const ISA_NAMES[DDPM_ISA_COUNT] = {"generic", "avx2", "avx512"};

const char *ddpm_isa_name(ddpm_isa isa) {
    return isa >= 0 && isa < DDPM_ISA_COUNT ? ISA_NAMES[isa] : "?";
}

static ddpm_isa choose_isa(void) {
    int want = DDPM_ISA_AVX512;
    const char *env = getenv("DDPM_KERNEL");
    for (int i = 0; env && i < DDPM_ISA_COUNT; i++)
        if (strcmp(env, ISA_NAMES[i]) == 0) want = i;
    while (want > 0 && !ddpm_isa_supported((ddpm_isa)want)) want--;
    return (ddpm_isa)want;
}

ddpm_isa ddpm_isa_selected(void) {
    static atomic_int cached = -1; /* racing first calls compute the same value */
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        v = (int)choose_isa();
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return (ddpm_isa)v;
}

void ddpm_tile_gemm(ddpm_isa isa, bool ta, int M, int N, int K, const float *A, int lda,
                    const float *B, int ldb, float *C, int ldc, bool acc) {
    if (M <= 0 || N <= 0) return;
    if (K < 0) K = 0;
#ifdef DDPM_X86
    if (isa == DDPM_ISA_AVX512) {
        gemm_avx512(ta, M, N, K, A, lda, B, ldb, C, ldc, acc);
        return;
    }
    if (isa == DDPM_ISA_AVX2) {
        gemm_avx2(ta, M, N, K, A, lda, B, ldb, C, ldc, acc);
        return;
    }
#endif
    gemm_generic(ta, M, N, K, A, lda, B, ldb, C, ldc, acc);
}

void ddpm_image_gemm(bool ta, int M, int N, int K, const float *A, int lda, const float *B,
                     int ldb, float *C, int ldc, bool acc) {
    if (omp_in_parallel() || omp_get_max_threads() == 1)
        ddpm_tile_gemm(ddpm_isa_selected(), ta, M, N, K, A, lda, B, ldb, C, ldc, acc);
    else
        ddpm_gemm(ta, false, M, N, K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, ldc);
}
