/* test_gemm_tile.c: the tile GEMMs (src/nn/gemm_tile.c), every code path this
 * machine runs, against a double-precision reference on awkward shapes (M, N
 * and K not multiples of any register block, edge blocks, K = 0 and 1, N = 1),
 * NN, TN (ddpm_tile_gemm) and NT (ddpm_tile_gemm_nt), overwrite and accumulate, with padded leading dimensions: C's
 * padding must stay untouched (masked stores), and a product split into row
 * or column ranges must give the same bits as the whole (the determinism
 * winograd.c and conv.c rely on). */
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
#include "gradcheck.h"
#include "nn/gemm_tile.h"

#define PAD 5 /* extra floats at the end of every row */

typedef struct {
    int M, N, K;
} shape;

static const shape SHAPES[] = {
    {1, 1, 1},    {1, 1, 0},    {7, 3, 1},     {5, 17, 2},   {13, 64, 32}, {6, 64, 64},
    {37, 33, 5},  {100, 96, 64}, {126, 32, 32}, {63, 65, 127}, {25, 48, 9}, {12, 31, 40},
    {200, 1, 32}, {3, 200, 7},  {64, 128, 96}, {49, 15, 300}, {9, 80, 1},  {31, 7, 16},
};

/* C (M, N) (+)= op(A) B in double; the bound of its float rounding in bnd. */
static void reference(double *ref, double *bnd, bool ta, bool tb, const shape *s, const float *A,
                      int lda, const float *B, int ldb, const float *C0, int ldc, bool acc) {
    for (int i = 0; i < s->M; i++)
        for (int j = 0; j < s->N; j++) {
            double sum = 0, mag = 0;
            for (int k = 0; k < s->K; k++) {
                double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double p = a * (tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
                sum += p;
                mag += fabs(p);
            }
            double c0 = acc ? C0[(size_t)i * ldc + j] : 0.0;
            ref[(size_t)i * s->N + j] = sum + c0;
            /* K roundings of partial sums, one of the final add (gamma_{K+1}) */
            bnd[(size_t)i * s->N + j] = (s->K + 2) * 0x1p-24 * (mag + fabs(c0)) + 1e-30;
        }
}

/* op: 0 NN, 1 TN (ddpm_tile_gemm with ta), 2 NT (ddpm_tile_gemm_nt) */
static void gemm(ddpm_isa isa, int op, int M, int N, int K, const float *A, int lda,
                 const float *B, int ldb, float *C, int ldc, bool acc) {
    if (op == 2) ddpm_tile_gemm_nt(isa, M, N, K, A, lda, B, ldb, C, ldc, acc);
    else ddpm_tile_gemm(isa, op == 1, M, N, K, A, lda, B, ldb, C, ldc, acc);
}

static void check_shape(ddpm_isa isa, const shape *s, int op, bool acc, ddpm_rng *rng) {
    const int M = s->M, N = s->N, K = s->K;
    const bool ta = op == 1, tb = op == 2;
    const int lda = (ta ? M : K) + PAD, ldb = (tb ? K : N) + PAD, ldc = N + PAD;
    const size_t na = (size_t)(ta ? K : M) * lda + 1, nb = (size_t)(tb ? N : K) * ldb + 1;
    const size_t nc = (size_t)M * ldc;
    float *A = gc_alloc(na), *B = gc_alloc(nb), *C = gc_alloc(nc), *C0 = gc_alloc(nc);
    float *P = gc_alloc(nc);
    double *ref = (double *)gc_alloc(2 * (size_t)M * N), *bnd = (double *)gc_alloc(2 * (size_t)M * N);
    gc_fill_uniform(rng, A, na, -1, 1);
    gc_fill_uniform(rng, B, nb, -1, 1);
    gc_fill_uniform(rng, C0, nc, -1, 1);
    memcpy(C, C0, nc * sizeof *C);
    reference(ref, bnd, ta, tb, s, A, lda, B, ldb, C0, ldc, acc);
    gemm(isa, op, M, N, K, A, lda, B, ldb, C, ldc, acc);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double got = C[(size_t)i * ldc + j], want = ref[(size_t)i * N + j];
            if (!(fabs(got - want) <= bnd[(size_t)i * N + j]))
                fail_msg("%s op=%d acc=%d M=%d N=%d K=%d: C[%d][%d] = %.9g, want %.9g (bound %g)",
                         ddpm_isa_name(isa), op, acc, M, N, K, i, j, got, want,
                         bnd[(size_t)i * N + j]);
        }
        for (int j = N; j < ldc; j++)
            if (C[(size_t)i * ldc + j] != C0[(size_t)i * ldc + j])
                fail_msg("%s M=%d N=%d K=%d: padding C[%d][%d] written", ddpm_isa_name(isa), M,
                         N, K, i, j);
    }
    /* rows [0, h) and [h, M) in two calls, then columns [0, w) and [w, N):
     * the same bits (our paths; OpenBLAS makes no such promise) */
    const int h = M / 3, w = N / 2;
    const float *A2 = ta ? A + h : A + (size_t)h * lda, *B2 = tb ? B + (size_t)w * ldb : B + w;
    for (int split = 0; split < 2 && isa != DDPM_ISA_BLAS; split++) {
        memcpy(P, C0, nc * sizeof *P);
        if (split == 0) {
            gemm(isa, op, h, N, K, A, lda, B, ldb, P, ldc, acc);
            gemm(isa, op, M - h, N, K, A2, lda, B, ldb, P + (size_t)h * ldc, ldc, acc);
        } else {
            gemm(isa, op, M, w, K, A, lda, B, ldb, P, ldc, acc);
            gemm(isa, op, M, N - w, K, A, lda, B2, ldb, P + w, ldc, acc);
        }
        if (memcmp(P, C, nc * sizeof *P) != 0)
            fail_msg("%s op=%d M=%d N=%d K=%d: %s split at %d differ", ddpm_isa_name(isa), op, M,
                     N, K, split ? "columns" : "rows", split ? w : h);
    }
    ddpm_free(A);
    ddpm_free(B);
    ddpm_free(C);
    ddpm_free(C0);
    ddpm_free(P);
    ddpm_free(ref);
    ddpm_free(bnd);
}

static void test_paths_against_reference(void **state) {
    (void)state;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 15);
    int paths = 0;
    for (int isa = 0; isa < DDPM_ISA_COUNT; isa++) {
        if (!ddpm_isa_supported((ddpm_isa)isa)) {
            print_message("gemm_tile: path %s not supported here\n", ddpm_isa_name((ddpm_isa)isa));
            continue;
        }
        paths++;
        for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++)
            for (int op = 0; op < 3; op++)
                for (int acc = 0; acc < 2; acc++)
                    check_shape((ddpm_isa)isa, &SHAPES[s], op, acc, &rng);
    }
    assert_true(paths >= 2); /* generic and blas at least */
}

/* M or N <= 0: nothing written; K = 0 without acc: zeros. */
static void test_degenerate(void **state) {
    (void)state;
    for (int isa = 0; isa < DDPM_ISA_COUNT; isa++) {
        if (!ddpm_isa_supported((ddpm_isa)isa)) continue;
        float C[4] = {1, 2, 3, 4}, A[1] = {5}, B[1] = {6};
        ddpm_tile_gemm((ddpm_isa)isa, false, 0, 2, 1, A, 1, B, 2, C, 2, false);
        ddpm_tile_gemm((ddpm_isa)isa, false, 2, 0, 1, A, 1, B, 2, C, 2, false);
        assert_true(C[0] == 1 && C[1] == 2 && C[2] == 3 && C[3] == 4);
        ddpm_tile_gemm((ddpm_isa)isa, true, 2, 2, 0, A, 2, B, 2, C, 2, false);
        for (int i = 0; i < 4; i++) assert_true(C[i] == 0.0f);
        C[0] = 7;
        ddpm_tile_gemm_nt((ddpm_isa)isa, 0, 2, 1, A, 1, B, 1, C, 2, false);
        ddpm_tile_gemm_nt((ddpm_isa)isa, 2, 0, 1, A, 1, B, 1, C, 2, false);
        assert_true(C[0] == 7);
        ddpm_tile_gemm_nt((ddpm_isa)isa, 2, 2, 0, A, 1, B, 1, C, 2, false);
        for (int i = 0; i < 4; i++) assert_true(C[i] == 0.0f);
    }
}

static void test_selection(void **state) {
    (void)state;
    assert_true(ddpm_isa_supported(DDPM_ISA_GENERIC));
    ddpm_isa sel = ddpm_isa_selected();
    assert_true(ddpm_isa_supported(sel));
    assert_int_equal(sel, ddpm_isa_selected()); /* cached */
    assert_string_equal(ddpm_isa_name(DDPM_ISA_AVX512), "avx512");
    assert_string_equal(ddpm_isa_name(DDPM_ISA_AVX2), "avx2");
    assert_string_equal(ddpm_isa_name(DDPM_ISA_GENERIC), "generic");
    assert_string_equal(ddpm_isa_name(DDPM_ISA_BLAS), "blas");
    assert_true(ddpm_isa_supported(DDPM_ISA_BLAS));
    assert_true(sel != DDPM_ISA_GENERIC || getenv("DDPM_KERNEL")); /* generic only when asked */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_against_reference),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_selection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
