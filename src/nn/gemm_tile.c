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
 * NT products (both operands along k: the weight gradient of a 1x1 or im2col
 * conv, K = pixels) with K >= NT_DOT_MIN_K keep blocks of 4 x 4 (AVX-512) or
 * 2 x 4 (AVX2) vectors of partial sums over k, reduced across lanes at the
 * end; shorter ones transpose B in slices and take the NN kernels.
 */
#include "nn/gemm_tile.h"

#include <omp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm/tensor.h"

#include "nn/simd.h"

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

/* C (M, N) (+)= A (M, K) @ B^T, B (N, K): one sum in order per element. */
static void gemm_nt_generic(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                            float *C, int ldc, bool acc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            const float *a = A + (size_t)i * lda, *b = B + (size_t)j * ldb;
            float sum = 0.0f;
            for (int k = 0; k < K; k++) sum += a[k] * b[k];
            float *c = C + (size_t)i * ldc + j;
            *c = acc ? *c + sum : sum;
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

/* NT: C (mr, nr) (+)= A (mr, K) B^T (nr, K), both along k: mr x nr vectors
 * of partial sums over k mod 16 (the last 16 under a mask), then each
 * reduced across its lanes (a fixed tree). */
I512 void blknt512(const int mr, const int nr, int K, const float *A, size_t lda,
                   const float *B, size_t ldb, float *C, size_t ldc, bool acc) {
    __m512 c[4][4];
    UNROLL for (int i = 0; i < mr; i++) UNROLL for (int j = 0; j < nr; j++) c[i][j] =
        _mm512_setzero_ps();
    for (int k = 0; k < K; k += 16) {
        const __mmask16 m = (__mmask16)(K - k >= 16 ? 0xFFFFu : (1u << (K - k)) - 1);
        __m512 a[4];
        UNROLL for (int i = 0; i < mr; i++) a[i] = _mm512_maskz_loadu_ps(m, A + i * lda + k);
        UNROLL for (int j = 0; j < nr; j++) {
            const __m512 b = _mm512_maskz_loadu_ps(m, B + j * ldb + k);
            UNROLL for (int i = 0; i < mr; i++) c[i][j] = _mm512_fmadd_ps(a[i], b, c[i][j]);
        }
    }
    UNROLL for (int i = 0; i < mr; i++) UNROLL for (int j = 0; j < nr; j++) {
        const float sum = _mm512_reduce_add_ps(c[i][j]);
        float *p = C + i * ldc + j;
        *p = acc ? *p + sum : sum;
    }
}

#define NT512(r, c)                                                                    \
    case (r) * 8 + (c):                                                                \
        blknt512(r, c, K, a, (size_t)lda, b, (size_t)ldb, p, (size_t)ldc, acc);        \
        break;
T512 static void gemm_nt_avx512(int M, int N, int K, const float *A, int lda, const float *B,
                                int ldb, float *C, int ldc, bool acc) {
    for (int i = 0; i < M; i += 4)
        for (int j = 0; j < N; j += 4) {
            const int r = M - i < 4 ? M - i : 4, q = N - j < 4 ? N - j : 4;
            const float *a = A + (size_t)i * lda, *b = B + (size_t)j * ldb;
            float *p = C + (size_t)i * ldc + j;
            switch (r * 8 + q) {
                NT512(1, 1) NT512(1, 2) NT512(1, 3) NT512(1, 4) NT512(2, 1) NT512(2, 2)
                NT512(2, 3) NT512(2, 4) NT512(3, 1) NT512(3, 2) NT512(3, 3) NT512(3, 4)
                NT512(4, 1) NT512(4, 2) NT512(4, 3) NT512(4, 4)
            }
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
/* NT as blknt512, 8 lanes, blocks of up to 2 x 4. */
I256 float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

I256 void blknt256(const int mr, const int nr, int K, const float *A, size_t lda,
                   const float *B, size_t ldb, float *C, size_t ldc, bool acc) {
    __m256 c[2][4];
    UNROLL for (int i = 0; i < mr; i++) UNROLL for (int j = 0; j < nr; j++) c[i][j] =
        _mm256_setzero_ps();
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int k = 0; k < K; k += 8) {
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(K - k), lane);
        __m256 a[2];
        UNROLL for (int i = 0; i < mr; i++) a[i] = _mm256_maskload_ps(A + i * lda + k, m);
        UNROLL for (int j = 0; j < nr; j++) {
            const __m256 b = _mm256_maskload_ps(B + j * ldb + k, m);
            UNROLL for (int i = 0; i < mr; i++) c[i][j] = _mm256_fmadd_ps(a[i], b, c[i][j]);
        }
    }
    UNROLL for (int i = 0; i < mr; i++) UNROLL for (int j = 0; j < nr; j++) {
        const float sum = hsum256(c[i][j]);
        float *p = C + i * ldc + j;
        *p = acc ? *p + sum : sum;
    }
}

#define NT256(r, c)                                                                    \
    case (r) * 8 + (c):                                                                \
        blknt256(r, c, K, a, (size_t)lda, b, (size_t)ldb, p, (size_t)ldc, acc);        \
        break;
T256 static void gemm_nt_avx2(int M, int N, int K, const float *A, int lda, const float *B,
                              int ldb, float *C, int ldc, bool acc) {
    for (int i = 0; i < M; i += 2)
        for (int j = 0; j < N; j += 4) {
            const int r = M - i < 2 ? M - i : 2, q = N - j < 4 ? N - j : 4;
            const float *a = A + (size_t)i * lda, *b = B + (size_t)j * ldb;
            float *p = C + (size_t)i * ldc + j;
            switch (r * 8 + q) {
                NT256(1, 1) NT256(1, 2) NT256(1, 3) NT256(1, 4)
                NT256(2, 1) NT256(2, 2) NT256(2, 3) NT256(2, 4)
            }
        }
}
#endif /* DDPM_X86 */

/* ---- selection -------------------------------------------------------------------------- */

bool ddpm_isa_supported(ddpm_isa isa) {
    switch (isa) {
    case DDPM_ISA_GENERIC: return true;
    case DDPM_ISA_BLAS: return true;
#ifdef DDPM_X86
    case DDPM_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case DDPM_ISA_AVX512: __builtin_cpu_init(); return __builtin_cpu_supports("avx512f");
#endif
    default: return false;
    }
}

static const char *const ISA_NAMES[DDPM_ISA_COUNT] = {"generic", "avx2", "avx512", "blas"};

const char *ddpm_isa_name(ddpm_isa isa) {
    return isa >= 0 && isa < DDPM_ISA_COUNT ? ISA_NAMES[isa] : "?";
}

static ddpm_isa choose_isa(void) {
    int want = -1;
    const char *env = getenv("DDPM_KERNEL");
    for (int i = 0; env && i < DDPM_ISA_COUNT; i++)
        if (strcmp(env, ISA_NAMES[i]) == 0) want = i;
    if (want == DDPM_ISA_BLAS || want == DDPM_ISA_GENERIC) return (ddpm_isa)want;
    if (want < 0) want = DDPM_ISA_AVX512;
    while (want > DDPM_ISA_GENERIC && !ddpm_isa_supported((ddpm_isa)want)) want--;
    return want > DDPM_ISA_GENERIC ? (ddpm_isa)want : DDPM_ISA_BLAS;
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
    if (isa == DDPM_ISA_BLAS) {
        ddpm_gemm(ta, false, M, N, K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, ldc);
        return;
    }
    gemm_generic(ta, M, N, K, A, lda, B, ldb, C, ldc, acc);
}

#ifdef DDPM_X86
/* NT through the NN kernels: B^T in slices of NT_KC rows of k by NT_NB
 * columns, transposed into a buffer on the stack, each slice's product added
 * onto C (the first overwriting unless acc). The slicing depends on K only,
 * so an output's bits do not depend on M or N. */
#define NT_KC 64
#define NT_NB 128
/* The lane-sum kernels from this K on, the sliced NN route below it (its
 * reductions cost too much when K is short). Measured, AVX-512, M x N x K:
 * 64 x 128 x 49 sliced 126 vs 57 GFLOP/s; 64 x 64 x 196 118 vs 122;
 * 32 x 288 x 784 51 vs 108 (OpenBLAS SkylakeX 140, 146, 99). */
#define NT_DOT_MIN_K 256
static void gemm_nt_sliced(ddpm_isa isa, int M, int N, int K, const float *A, int lda,
                           const float *B, int ldb, float *C, int ldc, bool acc) {
    float bt[NT_KC * NT_NB];
    for (int j0 = 0; j0 < N; j0 += NT_NB) {
        const int nb = N - j0 < NT_NB ? N - j0 : NT_NB;
        if (K == 0) ddpm_tile_gemm(isa, false, M, nb, 0, A, lda, bt, nb, C + j0, ldc, acc);
        for (int k0 = 0; k0 < K; k0 += NT_KC) {
            const int kc = K - k0 < NT_KC ? K - k0 : NT_KC;
            for (int j = 0; j < nb; j++) {
                const float *b = B + (size_t)(j0 + j) * ldb + k0;
                for (int k = 0; k < kc; k++) bt[k * nb + j] = b[k];
            }
            ddpm_tile_gemm(isa, false, M, nb, kc, A + k0, lda, bt, nb, C + j0, ldc, acc || k0 > 0);
        }
    }
}
#endif

void ddpm_tile_gemm_nt(ddpm_isa isa, int M, int N, int K, const float *A, int lda,
                       const float *B, int ldb, float *C, int ldc, bool acc) {
    if (M <= 0 || N <= 0) return;
    if (K < 0) K = 0;
    switch (isa) {
#ifdef DDPM_X86
    case DDPM_ISA_AVX512:
    case DDPM_ISA_AVX2:
        if (K < NT_DOT_MIN_K) gemm_nt_sliced(isa, M, N, K, A, lda, B, ldb, C, ldc, acc);
        else if (isa == DDPM_ISA_AVX512) gemm_nt_avx512(M, N, K, A, lda, B, ldb, C, ldc, acc);
        else gemm_nt_avx2(M, N, K, A, lda, B, ldb, C, ldc, acc);
        return;
#endif
    case DDPM_ISA_BLAS:
        ddpm_gemm(false, true, M, N, K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, ldc);
        return;
    default: gemm_nt_generic(M, N, K, A, lda, B, ldb, C, ldc, acc);
    }
}

void ddpm_image_gemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                        float *C, int ldc, bool acc) {
    if (omp_in_parallel() || omp_get_max_threads() == 1)
        ddpm_tile_gemm_nt(ddpm_isa_selected(), M, N, K, A, lda, B, ldb, C, ldc, acc);
    else
        ddpm_gemm(false, true, M, N, K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, ldc);
}

void ddpm_image_gemm(bool ta, int M, int N, int K, const float *A, int lda, const float *B,
                     int ldb, float *C, int ldc, bool acc) {
    if (omp_in_parallel() || omp_get_max_threads() == 1)
        ddpm_tile_gemm(ddpm_isa_selected(), ta, M, N, K, A, lda, B, ldb, C, ldc, acc);
    else
        ddpm_gemm(ta, false, M, N, K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, ldc);
}
