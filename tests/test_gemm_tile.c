/* test_gemm_tile.c: the tile GEMMs (src/nn/gemm_tile.c), every code path this
 * machine runs, against a double-precision reference on awkward shapes (M, N
 * and K not multiples of any register block, edge blocks, K = 0 and 1, N = 1),
 * both op(A), overwrite and accumulate, with padded leading dimensions: C's
 * padding must stay untouched (masked stores), and a product split into row
 * ranges must give the same bits as the whole (the determinism winograd.c
 * relies on). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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
static void reference(double *ref, double *bnd, bool ta, const shape *s, const float *A,
                      int lda, const float *B, int ldb, const float *C0, int ldc, bool acc) {
    for (int i = 0; i < s->M; i++)
        for (int j = 0; j < s->N; j++) {
            double sum = 0, mag = 0;
            for (int k = 0; k < s->K; k++) {
                double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double p = a * B[(size_t)k * ldb + j];
                sum += p;
                mag += fabs(p);
            }
            double c0 = acc ? C0[(size_t)i * ldc + j] : 0.0;
            ref[(size_t)i * s->N + j] = sum + c0;
            /* K roundings of partial sums, one of the final add (gamma_{K+1}) */
            bnd[(size_t)i * s->N + j] = (s->K + 2) * 0x1p-24 * (mag + fabs(c0)) + 1e-30;
        }
}

static void check_shape(ddpm_isa isa, const shape *s, bool ta, bool acc, ddpm_rng *rng) {
    const int M = s->M, N = s->N, K = s->K;
    const int lda = (ta ? M : K) + PAD, ldb = N + PAD, ldc = N + PAD;
    const size_t na = (size_t)(ta ? K : M) * lda + 1, nb = (size_t)K * ldb + 1;
    const size_t nc = (size_t)M * ldc;
    float *A = gc_alloc(na), *B = gc_alloc(nb), *C = gc_alloc(nc), *C0 = gc_alloc(nc);
    float *P = gc_alloc(nc);
    double *ref = (double *)gc_alloc(2 * (size_t)M * N), *bnd = (double *)gc_alloc(2 * (size_t)M * N);
    gc_fill_uniform(rng, A, na, -1, 1);
    gc_fill_uniform(rng, B, nb, -1, 1);
    gc_fill_uniform(rng, C0, nc, -1, 1);
    memcpy(C, C0, nc * sizeof *C);
    reference(ref, bnd, ta, s, A, lda, B, ldb, C0, ldc, acc);
    ddpm_tile_gemm(isa, ta, M, N, K, A, lda, B, ldb, C, ldc, acc);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double got = C[(size_t)i * ldc + j], want = ref[(size_t)i * N + j];
            if (!(fabs(got - want) <= bnd[(size_t)i * N + j]))
                fail_msg("%s ta=%d acc=%d M=%d N=%d K=%d: C[%d][%d] = %.9g, want %.9g (bound %g)",
                         ddpm_isa_name(isa), ta, acc, M, N, K, i, j, got, want,
                         bnd[(size_t)i * N + j]);
        }
        for (int j = N; j < ldc; j++)
            if (C[(size_t)i * ldc + j] != C0[(size_t)i * ldc + j])
                fail_msg("%s M=%d N=%d K=%d: padding C[%d][%d] written", ddpm_isa_name(isa), M,
                         N, K, i, j);
    }
    /* rows [0, h) and [h, M) in two calls: the same bits */
    const int h = M / 3;
    memcpy(P, C0, nc * sizeof *P);
    ddpm_tile_gemm(isa, ta, h, N, K, A, lda, B, ldb, P, ldc, acc);
    const float *A2 = ta ? A + h : A + (size_t)h * lda;
    ddpm_tile_gemm(isa, ta, M - h, N, K, A2, lda, B, ldb, P + (size_t)h * ldc, ldc, acc);
    if (memcmp(P, C, nc * sizeof *P) != 0)
        fail_msg("%s ta=%d M=%d N=%d K=%d: rows split at %d differ", ddpm_isa_name(isa), ta, M,
                 N, K, h);
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
            for (int ta = 0; ta < 2; ta++)
                for (int acc = 0; acc < 2; acc++)
                    check_shape((ddpm_isa)isa, &SHAPES[s], ta, acc, &rng);
    }
    assert_true(paths >= 1);
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
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_against_reference),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_selection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
