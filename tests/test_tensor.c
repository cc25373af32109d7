/* test_tensor.c: arena alignment and overflow, GEMM against the naive loop. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "reference.h"
#include "ddpm/rng.h"
#include "ddpm/tensor.h"
#include "gradcheck.h"

static void test_arena_alignment(void **state) {
    (void)state;
    ddpm_arena a;
    assert_int_equal(ddpm_arena_init(&a, 4096), DDPM_OK);
    size_t sizes[] = {1, 3, 17, 64, 5};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        float *p = ddpm_arena_alloc(&a, sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % DDPM_ALIGN, 0);
        for (size_t j = 0; j < sizes[i]; j++) p[j] = 1.0f; /* writable (ASan checks) */
    }
    ddpm_arena_free(&a);
}

static void test_arena_overflow_reports(void **state) {
    (void)state;
    ddpm_arena a;
    assert_int_equal(ddpm_arena_init(&a, 1024), DDPM_OK);
    assert_non_null(ddpm_arena_alloc(&a, 128)); /* 512 bytes */
    ddpm_clear_error();
    assert_null(ddpm_arena_alloc(&a, 200)); /* 800 bytes > 512 left */
    assert_non_null(strstr(ddpm_last_error(), "arena full"));
    assert_null(ddpm_arena_alloc(&a, SIZE_MAX / 2)); /* overflowing request */
    assert_non_null(ddpm_arena_alloc(&a, 128));      /* the remaining 512 still usable */
    assert_null(ddpm_arena_alloc(&a, 1));
    ddpm_arena_free(&a);
}

static void test_arena_mark_reset_and_measure(void **state) {
    (void)state;
    ddpm_arena a;
    assert_int_equal(ddpm_arena_init(&a, 4096), DDPM_OK);
    float *p = ddpm_arena_alloc(&a, 10);
    size_t mark = ddpm_arena_mark(&a);
    float *q = ddpm_arena_alloc(&a, 100);
    ddpm_arena_reset(&a, mark);
    float *r = ddpm_arena_alloc(&a, 100);
    assert_ptr_equal(q, r);
    assert_true(p != q);
    size_t peak = a.peak;
    ddpm_arena_free(&a);

    ddpm_arena m;
    ddpm_arena_init_measuring(&m);
    assert_null(ddpm_arena_alloc(&m, 10));
    mark = ddpm_arena_mark(&m);
    ddpm_arena_alloc(&m, 100);
    ddpm_arena_reset(&m, mark);
    ddpm_arena_alloc(&m, 100);
    assert_int_equal(m.peak, peak); /* a measuring run predicts the real peak */
}

static void check_gemm(bool ta, bool tb, int M, int N, int K, float alpha, float beta) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, (uint64_t)(M * 131 + N * 17 + K + ta * 2 + tb));
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = gc_alloc(na), *B = gc_alloc(nb), *C1 = gc_alloc(nc), *C2 = gc_alloc(nc);
    gc_fill_uniform(&rng, A, na, -1, 1);
    gc_fill_uniform(&rng, B, nb, -1, 1);
    gc_fill_uniform(&rng, C1, nc, -1, 1);
    memcpy(C2, C1, nc * sizeof(float));
    ddpm_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc);
    ddpm_gemm_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C2, ldc);
    double err = gc_max_abs_diff(C1, C2, nc);
    /* float32 accumulation over K terms of size <= 1 */
    if (err > 1e-5 * K) fail_msg("gemm ta=%d tb=%d %dx%dx%d: max abs err %g", ta, tb, M, N, K, err);
    ddpm_free(A);
    ddpm_free(B);
    ddpm_free(C1);
    ddpm_free(C2);
}

static void test_shape_numel(void **state) {
    (void)state;
    assert_int_equal(ddpm_shape_numel((ddpm_shape){64, 32, 28, 28}), (size_t)64 * 32 * 28 * 28);
    /* no int overflow: 2^33 elements */
    assert_true(ddpm_shape_numel((ddpm_shape){1 << 11, 1 << 11, 1 << 11, 1}) == (size_t)1 << 33);
}

static void test_gemm_matches_naive(void **state) {
    (void)state;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_gemm(ta, tb, 1, 1, 1, 1.0f, 0.0f);
            check_gemm(ta, tb, 7, 5, 3, 1.0f, 0.0f);
            check_gemm(ta, tb, 33, 17, 65, 0.5f, 1.0f);
            check_gemm(ta, tb, 64, 96, 128, 1.0f, 1.0f);
            check_gemm(ta, tb, 13, 200, 9, -2.0f, 0.25f);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_alignment),
        cmocka_unit_test(test_arena_overflow_reports),
        cmocka_unit_test(test_arena_mark_reset_and_measure),
        cmocka_unit_test(test_shape_numel),
        cmocka_unit_test(test_gemm_matches_naive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
