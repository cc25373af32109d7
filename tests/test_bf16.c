/* test_bf16.c: the float -> bf16 rounding (src/nn/bf16.h) against an
 * independent nearest-even rounding computed in double, and the bf16 products
 * (gemm_bf16.c), every path this machine runs, against double references.
 *
 * Tolerances, derived. Write u = 2^-24 (float) and v = 2^-8 (bf16's half
 * ulp, relative). Rounding gives a' = a(1 + d1), b' = b(1 + d2), |d| <= v, so
 * a'b' = ab(1 + d1 + d2 + d1 d2): |a'b' - ab| <= (2v + v^2)|ab| = (2^-7 +
 * 2^-16)|ab|, and a'b' is exact in float (8 x 8 significant bits <= 24). The
 * K exact products (plus C0 when accumulating) are summed in float in some
 * order: at most K + 1 roundings of partial sums, so that error is <=
 * gamma_{K+1} (sum |a'b'| + |c0|), where gamma_n = nu / (1 - nu) <= (n + 1)u
 * as long as (n + 1) n u <= 1 (K up to ~4000; ours <= 300), and
 * sum |a'b'| <= (1 + v)^2 sum |ab|. Hence, elementwise, with mag = sum_k |a_ik
 * b_kj| in double:
 *   against the exact product of the float operands (the "loose" bound):
 *     |C - C_ref| <= (2^-7 + 2^-16) mag + (K + 2) u ((1 + v)^2 mag + |c0|)
 *   against the exact product of the bf16-rounded operands (the "tight"
 *     bound, which an unrounded float product fails by ~2^-8 mag):
 *     |C - C'_ref| <= (K + 2) u (mag' + |c0|), mag' = sum |a'b'|.
 * ddpm_gemm_bf16's alpha and beta add one rounding each of alpha P and the
 * final sum: (K + 4) u there.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/common.h"
#include "ddpm/rng.h"
#include "nn/bf16.h"
#include "nn/gemm_tile.h"

static const double U = 0x1p-24, V = 0x1p-8;

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}
static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* Nearest-even bf16 of a finite x, by comparing distances in double to the
 * two bf16 neighbours (the truncation and the next one away from zero). */
static uint16_t ref_round(float x) {
    const uint32_t u = bits(x);
    if (isinf(x)) return (uint16_t)(u >> 16);
    const uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    const double dlo = fabs((double)x - (double)from_bits((uint32_t)lo << 16));
    /* past the largest bf16, hi is the infinity: IEEE rounding measures it as
     * 2^128, the next value were the exponent unbounded */
    const double vhi = (hi & 0x7F80) == 0x7F80 ? copysign(0x1p128, x)
                                                : (double)from_bits((uint32_t)hi << 16);
    const double dhi = fabs((double)x - vhi);
    if (dlo < dhi) return lo;
    if (dhi < dlo) return hi;
    return (lo & 1) ? hi : lo;
}

static void test_rounding(void **state) {
    (void)state;
    /* fixed cases: exact, ties to even both ways, overflow, infinities, NaN */
    assert_int_equal(ddpm_bf16_from_f32(1.0f), 0x3F80);
    assert_int_equal(ddpm_bf16_from_f32(from_bits(0x3F808000)), 0x3F80); /* tie, even below */
    assert_int_equal(ddpm_bf16_from_f32(from_bits(0x3F818000)), 0x3F82); /* tie, even above */
    assert_int_equal(ddpm_bf16_from_f32(from_bits(0x3F808001)), 0x3F81);
    assert_int_equal(ddpm_bf16_from_f32(from_bits(0xBF807FFF)), 0xBF80);
    assert_int_equal(ddpm_bf16_from_f32(from_bits(0x7F7FFFFF)), 0x7F80); /* to +inf */
    assert_int_equal(ddpm_bf16_from_f32(INFINITY), 0x7F80);
    assert_int_equal(ddpm_bf16_from_f32(-INFINITY), 0xFF80);
    assert_int_equal(ddpm_bf16_from_f32(-0.0f), 0x8000);
    const uint32_t nans[] = {0x7FC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0x7F80FFFF};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++)
        assert_true(isnan(ddpm_bf16_round(from_bits(nans[i]))));
    /* every exponent, random fractions, and the tie and near-tie patterns */
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 7);
    for (int n = 0; n < 200000; n++) {
        uint32_t u = (uint32_t)ddpm_rng_u64(&rng);
        if (n % 4 == 1) u = (u & 0xFFFF0000u) | 0x8000u;
        if (n % 4 == 2) u = (u & 0xFFFF0000u) | (0x7FFFu + (u & 2u));
        const float x = from_bits(u);
        if (isnan(x)) {
            assert_true(isnan(ddpm_bf16_round(x)));
            continue;
        }
        const uint16_t got = ddpm_bf16_from_f32(x), want = ref_round(x);
        if (got != want) fail_msg("bf16(%08x) = %04x, want %04x", u, got, want);
        const double ax = fabs((double)x);
        if (ax >= 0x1p-126 && ax < 0x1p127)
            assert_true(fabs((double)ddpm_bf16_round(x) - x) <= V * ax);
    }
}

typedef struct {
    int M, N, K;
} shape;

static const shape SHAPES[] = {
    {1, 1, 1},  {1, 1, 0},   {7, 3, 1},    {5, 17, 2},   {13, 64, 33}, {6, 64, 64},
    {37, 33, 5}, {100, 96, 64}, {63, 65, 127}, {25, 48, 9}, {200, 1, 32}, {3, 200, 7},
    {49, 15, 300}, {9, 80, 1},  {31, 7, 16},   {12, 130, 31}, {5, 300, 9}, {3, 529, 4},
};

#define PAD 3

/* element (i, k) of op(A) and (k, j) of op(B), stored with leading dims */
static float opa(const float *A, int lda, bool ta, int i, int k) {
    return ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
}
static float opb(const float *B, int ldb, bool tb, int k, int j) {
    return tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
}

static void check(ddpm_bf16_isa isa, const shape *s, bool ta, bool tb, bool acc, ddpm_rng *rng) {
    const int M = s->M, N = s->N, K = s->K;
    const int lda = (ta ? M : K) + PAD, ldb = (tb ? K : N) + PAD, ldc = N + PAD;
    const size_t na = (size_t)(ta ? K : M) * lda + 1, nb = (size_t)(tb ? N : K) * ldb + 1;
    float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc((size_t)M * ldc * 4);
    float *C0 = malloc((size_t)M * ldc * 4), *R = malloc((size_t)M * ldc * 4);
    ddpm_rng_fill_normal(rng, A, na);
    ddpm_rng_fill_normal(rng, B, nb);
    ddpm_rng_fill_normal(rng, C0, (size_t)M * ldc);
    memcpy(C, C0, (size_t)M * ldc * 4);
    ddpm_tile_gemm_bf16(isa, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc);
    /* the rounded operands for the portable path's bit-exact check */
    float *Ar = malloc(((size_t)M * K + 1) * 4), *Br = malloc(((size_t)K * N + 1) * 4);
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) Ar[(size_t)i * K + k] = ddpm_bf16_round(opa(A, lda, ta, i, k));
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++) Br[(size_t)k * N + j] = ddpm_bf16_round(opb(B, ldb, tb, k, j));
    memcpy(R, C0, (size_t)M * ldc * 4);
    ddpm_tile_gemm(ddpm_isa_selected(), false, M, N, K, Ar, K, Br, N, R, ldc, acc);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double ex = 0, mag = 0, exr = 0, magr = 0;
            for (int k = 0; k < K; k++) {
                const double p = (double)opa(A, lda, ta, i, k) * opb(B, ldb, tb, k, j);
                const double pr = (double)Ar[(size_t)i * K + k] * Br[(size_t)k * N + j];
                ex += p, mag += fabs(p), exr += pr, magr += fabs(pr);
            }
            const double c0 = acc ? C0[(size_t)i * ldc + j] : 0.0;
            const double got = C[(size_t)i * ldc + j];
            const double loose = (0x1p-7 + 0x1p-16) * mag + (K + 2) * U * ((1 + V) * (1 + V) * mag + fabs(c0));
            const double tight = (K + 2) * U * (magr + fabs(c0));
            if (!(fabs(got - (ex + c0)) <= loose + 1e-37) || !(fabs(got - (exr + c0)) <= tight + 1e-37))
                fail_msg("%s ta=%d tb=%d acc=%d M=%d N=%d K=%d C[%d][%d]=%.9g: exact %.9g "
                         "(bound %.3g), rounded operands %.9g (bound %.3g)",
                         ddpm_bf16_isa_name(isa), ta, tb, acc, M, N, K, i, j, got, ex + c0, loose,
                         exr + c0, tight);
            if (isa == DDPM_BF16_PORTABLE && bits(C[(size_t)i * ldc + j]) != bits(R[(size_t)i * ldc + j]))
                fail_msg("portable M=%d N=%d K=%d C[%d][%d]: %.9g, the float path on rounded "
                         "operands %.9g", M, N, K, i, j, C[(size_t)i * ldc + j], R[(size_t)i * ldc + j]);
        }
        for (int j = N; j < ldc; j++) /* padding untouched */
            assert_true(bits(C[(size_t)i * ldc + j]) == bits(C0[(size_t)i * ldc + j]));
    }
    /* rows split in two give the same bits as the whole */
    if (M > 1) {
        const int h = M / 2;
        memcpy(R, C0, (size_t)M * ldc * 4);
        ddpm_tile_gemm_bf16(isa, ta, tb, h, N, K, A, lda, B, ldb, R, ldc, acc);
        ddpm_tile_gemm_bf16(isa, ta, tb, M - h, N, K, ta ? A + h : A + (size_t)h * lda, lda, B,
                            ldb, R + (size_t)h * ldc, ldc, acc);
        assert_memory_equal(R, C, (size_t)M * ldc * 4);
    }
    /* the packed entry points (winograd.c's) give the same bits */
    if (isa == DDPM_BF16_AVX512 && K > 0) {
        uint32_t *Ap = malloc(ddpm_bf16_packed_a_size(M, K) * 4 + 4);
        uint32_t *Bp = malloc(ddpm_bf16_packed_b_size(N, K) * 4 + 4);
        assert_true(Ap && Bp);
        ddpm_bf16_pack_a(Ap, ta, M, K, A, lda);
        ddpm_bf16_pack_b(Bp, tb, N, K, B, ldb);
        memcpy(R, C0, (size_t)M * ldc * 4);
        ddpm_bf16_gemm_packed(M, N, K, Ap, ta, Bp, R, ldc, acc);
        assert_memory_equal(R, C, (size_t)M * ldc * 4);
        free(Ap), free(Bp);
    }
    free(A), free(B), free(C), free(C0), free(R), free(Ar), free(Br);
}

static void test_paths(void **state) {
    (void)state;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 11);
    int paths = 0;
    for (int isa = 0; isa < DDPM_BF16_ISA_COUNT; isa++) {
        if (!ddpm_bf16_isa_supported((ddpm_bf16_isa)isa)) {
            print_message("bf16: path %s not supported here\n", ddpm_bf16_isa_name((ddpm_bf16_isa)isa));
            continue;
        }
        paths++;
        for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++)
            for (int op = 0; op < 4; op++)
                for (int acc = 0; acc < 2; acc++)
                    check((ddpm_bf16_isa)isa, &SHAPES[s], op & 1, op & 2, acc, &rng);
    }
    assert_true(paths >= 1);
    assert_true(ddpm_bf16_isa_supported(ddpm_bf16_isa_selected()));
    print_message("bf16: selected path %s\n", ddpm_bf16_isa_name(ddpm_bf16_isa_selected()));
}

/* ddpm_gemm_bf16: alpha, beta (0, 1, other), against the tight bound plus the
 * two roundings of alpha P and of the sum with beta C. */
static void test_gemm_alpha_beta(void **state) {
    (void)state;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 12);
    const int M = 23, N = 37, K = 45;
    const float alphas[] = {1.0f, 0.125f, -0.3f}, betas[] = {0.0f, 1.0f, 0.7f};
    float A[K * M], B[N * K], C[M * N], C0[M * N];
    ddpm_rng_fill_normal(&rng, A, sizeof A / 4);
    ddpm_rng_fill_normal(&rng, B, sizeof B / 4);
    ddpm_rng_fill_normal(&rng, C0, sizeof C0 / 4);
    for (int ai = 0; ai < 3; ai++)
        for (int bi = 0; bi < 3; bi++)
            for (int op = 0; op < 4; op++) {
                const bool ta = op & 1, tb = op & 2;
                const int lda = ta ? M : K, ldb = tb ? K : N;
                const float al = alphas[ai], be = betas[bi];
                memcpy(C, C0, sizeof C);
                ddpm_gemm_bf16(ta, tb, M, N, K, al, A, lda, B, ldb, be, C, N);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double exr = 0, magr = 0;
                        for (int k = 0; k < K; k++) {
                            const double p = (double)ddpm_bf16_round(opa(A, lda, ta, i, k)) *
                                             ddpm_bf16_round(opb(B, ldb, tb, k, j));
                            exr += p, magr += fabs(p);
                        }
                        const double c0 = be * (double)C0[i * N + j];
                        const double want = al * exr + c0;
                        const double bound = (K + 4) * U * (fabs(al) * magr + fabs(c0)) + 1e-37;
                        if (!(fabs(C[i * N + j] - want) <= bound))
                            fail_msg("alpha %g beta %g op %d C[%d][%d] = %.9g, want %.9g (bound %.3g)",
                                     al, be, op, i, j, C[i * N + j], want, bound);
                    }
            }
}

/* M or N <= 0: nothing written; K = 0 without acc: zeros. */
static void test_degenerate(void **state) {
    (void)state;
    for (int isa = 0; isa < DDPM_BF16_ISA_COUNT; isa++) {
        if (!ddpm_bf16_isa_supported((ddpm_bf16_isa)isa)) continue;
        float C[4] = {1, 2, 3, 4}, A[1] = {5}, B[1] = {6};
        ddpm_tile_gemm_bf16((ddpm_bf16_isa)isa, false, false, 0, 2, 1, A, 1, B, 2, C, 2, false);
        ddpm_tile_gemm_bf16((ddpm_bf16_isa)isa, false, true, 2, 0, 1, A, 1, B, 2, C, 2, false);
        assert_true(C[0] == 1 && C[1] == 2 && C[2] == 3 && C[3] == 4);
        ddpm_tile_gemm_bf16((ddpm_bf16_isa)isa, true, false, 2, 2, 0, A, 2, B, 2, C, 2, true);
        assert_true(C[0] == 1 && C[3] == 4);
        ddpm_tile_gemm_bf16((ddpm_bf16_isa)isa, true, false, 2, 2, 0, A, 2, B, 2, C, 2, false);
        for (int i = 0; i < 4; i++) assert_true(C[i] == 0.0f);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_gemm_alpha_beta),
        cmocka_unit_test(test_degenerate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
