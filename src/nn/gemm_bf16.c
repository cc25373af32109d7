/* gemm_bf16.c: the bf16 products of gemm_tile.h: operands rounded to bf16
 * (nn/bf16.h), products summed in float.
 *
 * Portable path: op(A) and op(B) rounded into row-major float copies, then
 * one float tile product (ddpm_tile_gemm with the selected float path): a
 * product of two bf16 values is exact in float, so this is the bf16
 * arithmetic of the hardware up to the order of the float sums.
 *
 * AVX512_BF16 path: op(A) packed as Ap[i][p] and op(B) as Bp[p][j], each a
 * 32-bit pair of bf16 (element 2p in the low half, 2p+1 in the high half; an
 * odd K padded with a zero), B's columns padded to a multiple of 16 with
 * zeros. Then blocks of MR rows x NV vectors of 16 columns as in gemm_tile.c,
 * one vdpbf16ps per (row, vector) per pair of k: 32 multiply-adds per
 * instruction against 16 for a float FMA. The packing rounds with vector
 * integer code that gives the bits of ddpm_bf16_from_f32.
 */
#include <omp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm/tensor.h"
#include "nn/bf16.h"
#include "nn/gemm_tile.h"

#include "nn/simd.h"

/* Element (x, y) of a strided matrix: S[x*sx + y*sy]. */
static inline float at(const float *S, size_t sx, size_t sy, int x, int y) {
    return S[(size_t)x * sx + (size_t)y * sy];
}

/* dst (R, Q) row-major = bf16(element (r, q) of S with strides sr, sq). */
static void round_copy(float *restrict dst, const float *restrict S, size_t sr, size_t sq, int R,
                       int Q) {
    for (int r = 0; r < R; r++) {
        float *d = dst + (size_t)r * Q;
        if (sq == 1) {
            const float *s = S + (size_t)r * sr;
            for (int q = 0; q < Q; q++) d[q] = ddpm_bf16_round(s[q]);
        } else {
            for (int q = 0; q < Q; q++) d[q] = ddpm_bf16_round(at(S, sr, sq, r, q));
        }
    }
}

/* Without any buffer (allocation failed): one sum in order per element. */
static void gemm_bf16_noalloc(int M, int N, int K, const float *A, size_t ai, size_t ak,
                              const float *B, size_t bk, size_t bj, float *C, int ldc, bool acc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float sum = 0.0f;
            for (int k = 0; k < K; k++)
                sum += ddpm_bf16_round(at(A, ai, ak, i, k)) * ddpm_bf16_round(at(B, bk, bj, k, j));
            float *c = C + (size_t)i * ldc + j;
            *c = acc ? *c + sum : sum;
        }
}

static void gemm_bf16_portable(int M, int N, int K, const float *A, size_t ai, size_t ak,
                               const float *B, size_t bk, size_t bj, float *C, int ldc, bool acc) {
    float *ar = malloc(((size_t)M * K + (size_t)K * N + 1) * sizeof(float));
    if (!ar) {
        gemm_bf16_noalloc(M, N, K, A, ai, ak, B, bk, bj, C, ldc, acc);
        return;
    }
    float *br = ar + (size_t)M * K;
    round_copy(ar, A, ai, ak, M, K);
    round_copy(br, B, bk, bj, K, N);
    ddpm_tile_gemm(ddpm_isa_selected(), false, M, N, K, ar, K, br, N, C, ldc, acc);
    free(ar);
}

#ifdef DDPM_X86
/* ---- AVX512_BF16 ----------------------------------------------------------------- */
#define TBF __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl")))
#define IBF static inline __attribute__((always_inline, target("avx512bf16,avx512f,avx512bw,avx512vl")))

/* Float to bf16 here is the AVX512_BF16 conversion (vcvtne2ps2bf16): nearest
 * even and NaNs made quiet as ddpm_bf16_from_f32, but float subnormals become
 * zero (checked against ddpm_bf16_from_f32 on 6.4e8 random floats on a Zen 4:
 * they differ on subnormal inputs only). The product treats bf16 subnormals
 * as zero anyway; the one difference left is an operand in [2^-126 (1 -
 * 2^-8), 2^-126), which rounds up to the smallest normal bf16 and counts in
 * the portable path, as zero here. */

/* The first n (n <= 16, the rest 0) of the 16 floats at s. */
IBF __m512 load16(const float *s, int n) {
    return _mm512_maskz_loadu_ps((__mmask16)(n >= 16 ? 0xFFFFu : n <= 0 ? 0u : (1u << n) - 1), s);
}

/* r[i][j] = r[j][i], 16 x 16 32-bit elements. */
IBF void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) {
            t[8 * i + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
            t[8 * i + 4 + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
        }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0xdd);
    }
}

/* Pairs of element (x, k) of S (strides sx, sk), x < X, k < K (k = K, when K is
 * odd, is 0) into P[x*px + p*pp] for pair p = k/2. */
TBF static void pack_pairs(uint32_t *P, size_t px, size_t pp, const float *S, size_t sx, size_t sk,
                           int X, int K) {
    const int np = (K + 1) / 2;
    uint32_t t[16];
    if (sk == 1 && px == 1 && pp != 1) { /* along k, stored along x: 16 x at a time, transposed */
        for (int x0 = 0; x0 < X; x0 += 16) {
            const int nx = X - x0 < 16 ? X - x0 : 16;
            const __mmask16 mx = (__mmask16)(nx >= 16 ? 0xFFFFu : (1u << nx) - 1);
            for (int p0 = 0; p0 < np; p0 += 16) {
                const int n = K - 2 * p0, q = np - p0 < 16 ? np - p0 : 16;
                __m512i r[16];
                for (int i = 0; i < 16; i++) {
                    const float *s = S + (size_t)(x0 + i) * sx + 2 * p0;
                    r[i] = i < nx ? (__m512i)_mm512_cvtne2ps_pbh(load16(s + 16, n - 16), load16(s, n))
                                  : _mm512_setzero_si512();
                }
                transpose16(r);
                for (int i = 0; i < q; i++) _mm512_mask_storeu_epi32(P + x0 + (size_t)(p0 + i) * pp, mx, r[i]);
            }
        }
    } else if (sk == 1) { /* along k: 32 consecutive floats are 16 pairs, in order */
        for (int x = 0; x < X; x++)
            for (int p0 = 0; p0 < np; p0 += 16) {
                const float *s = S + (size_t)x * sx + 2 * p0;
                const int n = K - 2 * p0;
                const __m512i v = (__m512i)_mm512_cvtne2ps_pbh(load16(s + 16, n - 16), load16(s, n));
                const int q = np - p0 < 16 ? np - p0 : 16;
                if (pp == 1) { /* the pairs are contiguous in P too */
                    _mm512_mask_storeu_epi32(P + (size_t)x * px + p0, (__mmask16)((1u << q) - 1), v);
                    continue;
                }
                _mm512_storeu_si512(t, v);
                for (int i = 0; i < q; i++) P[(size_t)x * px + (size_t)(p0 + i) * pp] = t[i];
            }
    } else if (sx == 1) { /* along x: rows 2p and 2p + 1 make 16 pairs of 16 x */
        /* the conversion gives row 2p's 16 values, then row 2p+1's: interleave */
        const __m512i mix = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                             24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                             16, 0);
        for (int p = 0; p < np; p++)
            for (int x0 = 0; x0 < X; x0 += 16) {
                const int n = X - x0 < 16 ? X - x0 : 16;
                const __m512 lo = load16(S + (size_t)(2 * p) * sk + x0, n);
                const __m512 hi = 2 * p + 1 < K ? load16(S + (size_t)(2 * p + 1) * sk + x0, n)
                                                : _mm512_setzero_ps();
                const __m512i v = _mm512_permutexvar_epi16(mix, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                if (px == 1) { /* the x are contiguous in P too */
                    _mm512_mask_storeu_epi32(P + x0 + (size_t)p * pp, (__mmask16)((1u << n) - 1), v);
                    continue;
                }
                _mm512_storeu_si512(t, v);
                for (int i = 0; i < n; i++) P[(size_t)(x0 + i) * px + (size_t)p * pp] = t[i];
            }
    } else {
        for (int x = 0; x < X; x++)
            for (int p = 0; p < np; p++) {
                const uint32_t lo = ddpm_bf16_from_f32(at(S, sx, sk, x, 2 * p));
                const uint32_t hi = 2 * p + 1 < K ? ddpm_bf16_from_f32(at(S, sx, sk, x, 2 * p + 1)) : 0;
                P[(size_t)x * px + (size_t)p * pp] = lo | hi << 16;
            }
    }
}

/* One block: rows [0, mr) x vectors [0, nv) of C over np pairs; pair p of
 * row i at Ap[i*si + p*sp] (row-major: si = np, sp = 1; k-major: si = 1,
 * sp = M), Bp rows of ldb pairs; the last vector stored under mask m. */
IBF void blkbf(const int mr, const int nv, int np, const uint32_t *Ap, size_t si, size_t sp,
               const uint32_t *Bp, size_t ldb, float *C, size_t ldc, bool acc, __mmask16 m) {
    __m512 c[6][4];
    UNROLL for (int i = 0; i < mr; i++) UNROLL for (int v = 0; v < nv; v++) c[i][v] =
        _mm512_setzero_ps();
    for (int p = 0; p < np; p++) {
        __m512i bv[4];
        UNROLL for (int v = 0; v < nv; v++) bv[v] = _mm512_loadu_si512(Bp + (size_t)p * ldb + 16 * v);
        UNROLL for (int i = 0; i < mr; i++) {
            const __m512i x = _mm512_set1_epi32((int)Ap[(size_t)i * si + (size_t)p * sp]);
            UNROLL for (int v = 0; v < nv; v++) c[i][v] =
                _mm512_dpbf16_ps(c[i][v], (__m512bh)x, (__m512bh)bv[v]);
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

#define RBF(nv, r)                                                                     \
    case r:                                                                            \
        blkbf(r, nv, np, Ap + i * si, si, sp, Bp, ldb, C + i * ldc, ldc, acc, m);      \
        break;
#define COLSBF(nv)                                                                     \
    IBF void colbf_##nv(int M, int np, const uint32_t *Ap, size_t si, size_t sp,       \
                        const uint32_t *Bp, size_t ldb, float *C, size_t ldc, bool acc,  \
                        __mmask16 m) {                                                   \
        for (size_t i = 0; i < (size_t)M; i += 6) {                                    \
            switch ((size_t)M - i < 6 ? (size_t)M - i : 6) {                           \
                RBF(nv, 1) RBF(nv, 2) RBF(nv, 3) RBF(nv, 4) RBF(nv, 5) RBF(nv, 6)      \
            }                                                                          \
        }                                                                              \
    }
COLSBF(4)
COLSBF(3)
COLSBF(2)
COLSBF(1)

/* C (M, N) (+)= Ap (M rows of np pairs, strides si, sp as blkbf's) @ Bp
 * (np rows of ldb pairs, ldb a multiple of 16 >= N, zero past N). */
TBF static void gemm_packed(int M, int N, int np, const uint32_t *Ap, size_t si, size_t sp,
                            const uint32_t *Bp, size_t ldb, float *C, int ldc, bool acc) {
    for (int j = 0; j < N;) {
        const int rest = N - j, nv = rest >= 64 ? 4 : (rest + 15) / 16;
        const int w = rest < 16 * nv ? rest : 16 * nv;
        const __mmask16 m = (__mmask16)(w % 16 ? (1u << (w % 16)) - 1 : 0xFFFFu);
        const uint32_t *b = Bp + j;
        float *c = C + j;
        if (nv == 4) colbf_4(M, np, Ap, si, sp, b, ldb, c, (size_t)ldc, acc, m);
        else if (nv == 3) colbf_3(M, np, Ap, si, sp, b, ldb, c, (size_t)ldc, acc, m);
        else if (nv == 2) colbf_2(M, np, Ap, si, sp, b, ldb, c, (size_t)ldc, acc, m);
        else colbf_1(M, np, Ap, si, sp, b, ldb, c, (size_t)ldc, acc, m);
        j += w;
    }
}

/* Bp as gemm_packed reads it from B (element (k, j) at B[k*bk + j*bj]). */
TBF static void pack_b(uint32_t *Bp, int N, int K, const float *B, size_t bk, size_t bj) {
    const int np = (K + 1) / 2;
    const size_t ldb = ((size_t)N + 15) & ~(size_t)15;
    pack_pairs(Bp, 1, ldb, B, bj, bk, N, K);
    for (int p = 0; p < np; p++) memset(Bp + (size_t)p * ldb + N, 0, (ldb - N) * sizeof(uint32_t));
}

/* Ap from A (element (i, k) at A[i*ai + k*ak]): k-major when ai == 1 (A
 * given transposed, whose rows 2p and 2p+1 then make M contiguous pairs),
 * row-major otherwise. */
TBF static void pack_a(uint32_t *Ap, int M, int K, const float *A, size_t ai, size_t ak) {
    if (ai == 1) pack_pairs(Ap, 1, (size_t)M, A, ai, ak, M, K);
    else pack_pairs(Ap, (size_t)((K + 1) / 2), 1, A, ai, ak, M, K);
}

/* false when the packed buffers cannot be allocated (nothing written). */
TBF static bool gemm_bf16_avx512(int M, int N, int K, const float *A, size_t ai, size_t ak,
                                 const float *B, size_t bk, size_t bj, float *C, int ldc,
                                 bool acc) {
    /* B packed NB columns at a time: a 1x1 conv's B is a whole image
     * (C x H*W; 64 px, 128 channels: 1 MB of pairs), whose packed copy cost
     * peak memory and page faults; a block stays in cache. Each output's sum
     * runs over all of k in one accumulator either way: the same bits. */
    enum { NB = 256 };
    const int np = (K + 1) / 2;
    const int nb = N < NB ? N : NB;
    const size_t ldb = ((size_t)nb + 15) & ~(size_t)15;
    uint32_t *Ap = malloc(((size_t)M * np + (size_t)np * ldb + 1) * sizeof(uint32_t));
    if (!Ap) return false;
    uint32_t *Bp = Ap + (size_t)M * np;
    pack_a(Ap, M, K, A, ai, ak);
    for (int j0 = 0; j0 < N; j0 += nb) {
        const int w = N - j0 < nb ? N - j0 : nb;
        pack_b(Bp, w, K, B + (size_t)j0 * bj, bk, bj);
        gemm_packed(M, w, np, Ap, ai == 1 ? 1 : (size_t)np, ai == 1 ? (size_t)M : 1, Bp,
                    ((size_t)w + 15) & ~(size_t)15, C + j0, ldc, acc);
    }
    free(Ap);
    return true;
}
#endif /* DDPM_X86 */

/* ---- selection -------------------------------------------------------------------- */

bool ddpm_bf16_isa_supported(ddpm_bf16_isa isa) {
    if (isa == DDPM_BF16_PORTABLE) return true;
#ifdef DDPM_X86
    if (isa == DDPM_BF16_AVX512) {
        unsigned a, b, c, d;
        if (!ddpm_isa_supported(DDPM_ISA_AVX512) || !__get_cpuid_count(7, 1, &a, &b, &c, &d))
            return false;
        __builtin_cpu_init();
        return (a >> 5 & 1u) && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
    }
#endif
    return false;
}

static const char *const BF16_NAMES[DDPM_BF16_ISA_COUNT] = {"portable", "avx512bf16"};

const char *ddpm_bf16_isa_name(ddpm_bf16_isa isa) {
    return isa >= 0 && isa < DDPM_BF16_ISA_COUNT ? BF16_NAMES[isa] : "?";
}

static ddpm_bf16_isa choose_bf16(void) {
    const char *env = getenv("DDPM_BF16");
    if (env && strcmp(env, "portable") == 0) return DDPM_BF16_PORTABLE;
    if (ddpm_isa_selected() != DDPM_ISA_AVX512) return DDPM_BF16_PORTABLE;
    return ddpm_bf16_isa_supported(DDPM_BF16_AVX512) ? DDPM_BF16_AVX512 : DDPM_BF16_PORTABLE;
}

ddpm_bf16_isa ddpm_bf16_isa_selected(void) {
    static atomic_int cached = -1; /* racing first calls compute the same value */
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        v = (int)choose_bf16();
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return (ddpm_bf16_isa)v;
}

void ddpm_tile_gemm_bf16(ddpm_bf16_isa isa, bool ta, bool tb, int M, int N, int K,
                         const float *A, int lda, const float *B, int ldb, float *C, int ldc,
                         bool acc) {
    if (M <= 0 || N <= 0) return;
    if (K < 0) K = 0;
    const size_t ai = ta ? 1 : (size_t)lda, ak = ta ? (size_t)lda : 1;
    const size_t bk = tb ? 1 : (size_t)ldb, bj = tb ? (size_t)ldb : 1;
#ifdef DDPM_X86
    if (isa == DDPM_BF16_AVX512 && K > 0 &&
        gemm_bf16_avx512(M, N, K, A, ai, ak, B, bk, bj, C, ldc, acc))
        return;
#endif
    gemm_bf16_portable(M, N, K, A, ai, ak, B, bk, bj, C, ldc, acc);
}

size_t ddpm_bf16_packed_a_size(int M, int K) { return (size_t)(M > 0 ? M : 0) * (size_t)((K + 1) / 2); }

size_t ddpm_bf16_packed_b_size(int N, int K) {
    return (size_t)((K + 1) / 2) * (((size_t)(N > 0 ? N : 0) + 15) & ~(size_t)15);
}

void ddpm_bf16_pack_a(uint32_t *Ap, bool ta, int M, int K, const float *A, int lda) {
#ifdef DDPM_X86
    if (M > 0 && K > 0) pack_a(Ap, M, K, A, ta ? 1 : (size_t)lda, ta ? (size_t)lda : 1);
#else
    (void)Ap, (void)ta, (void)M, (void)K, (void)A, (void)lda;
#endif
}

void ddpm_bf16_pack_b(uint32_t *Bp, bool tb, int N, int K, const float *B, int ldb) {
#ifdef DDPM_X86
    if (N > 0 && K > 0) pack_b(Bp, N, K, B, tb ? 1 : (size_t)ldb, tb ? (size_t)ldb : 1);
#else
    (void)Bp, (void)tb, (void)N, (void)K, (void)B, (void)ldb;
#endif
}

void ddpm_bf16_gemm_packed(int M, int N, int K, const uint32_t *Ap, bool ta, const uint32_t *Bp,
                           float *C, int ldc, bool acc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!acc)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
#ifdef DDPM_X86
    const size_t np = (size_t)((K + 1) / 2);
    gemm_packed(M, N, (int)np, Ap, ta ? 1 : np, ta ? (size_t)M : 1, Bp, ((size_t)N + 15) & ~(size_t)15,
                C, ldc, acc);
#else
    (void)Ap, (void)ta, (void)Bp, (void)C, (void)ldc, (void)acc;
#endif
}

void ddpm_gemm_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K < 0) K = 0;
    const ddpm_bf16_isa isa = ddpm_bf16_isa_selected();
    if (isa == DDPM_BF16_PORTABLE) { /* rounded copies, then as ddpm_image_gemm */
        float *ar = malloc(((size_t)M * K + (size_t)K * N + 1) * sizeof(float));
        if (ar) {
            float *br = ar + (size_t)M * K;
            round_copy(ar, A, ta ? 1 : (size_t)lda, ta ? (size_t)lda : 1, M, K);
            round_copy(br, B, tb ? 1 : (size_t)ldb, tb ? (size_t)ldb : 1, K, N);
            const bool tile = alpha == 1.0f && (beta == 0.0f || beta == 1.0f) &&
                              (omp_in_parallel() || omp_get_max_threads() == 1);
            if (K > 0 && tile)
                ddpm_tile_gemm(ddpm_isa_selected(), false, M, N, K, ar, K, br, N, C, ldc, beta == 1.0f);
            else if (K > 0)
                ddpm_gemm(false, false, M, N, K, alpha, ar, K, br, N, beta, C, ldc);
            free(ar);
            if (K > 0) return;
        }
    }
    if (alpha == 1.0f && (beta == 0.0f || beta == 1.0f)) {
        ddpm_tile_gemm_bf16(isa, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, beta == 1.0f);
        return;
    }
    /* C = alpha P + beta C through a float copy of P (beta == 0: C is not read) */
    float *P = malloc((size_t)M * N * sizeof(float));
    if (P) ddpm_tile_gemm_bf16(isa, ta, tb, M, N, K, A, lda, B, ldb, P, N, false);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float p = 0.0f;
            if (P) p = P[(size_t)i * N + j];
            else
                for (int k = 0; k < K; k++)
                    p += ddpm_bf16_round(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                         ddpm_bf16_round(tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
            float *c = C + (size_t)i * ldc + j;
            *c = beta == 0.0f ? alpha * p : alpha * p + beta * *c;
        }
    free(P);
}
