/* test_energy.c: the energy distance against closed forms (single points,
 * shifted copies in 1-D) and against an independent O(n log n) formula for
 * 1-D sets (sorted prefix sums), plus symmetry, non-negativity and rotation
 * invariance in 2-D. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/energy.h"
#include "ddpm/rng.h"

static void test_single_points(void **state) {
    (void)state;
    float a[2] = {0, 0}, b[2] = {3, 4};
    assert_true(ddpm_energy_distance(a, 1, b, 1, 2) == 10.0); /* 2 |a - b| */
    assert_true(ddpm_energy_distance(b, 1, b, 1, 2) == 0.0);
    assert_true(isnan(ddpm_energy_distance(a, 0, b, 1, 2)));
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* sum_{i,j} |z_i - z_j| = 2 sum_k (2k - n + 1) z_(k) over the sorted z. */
static double pair_sum_sorted(const float *z, int n) {
    double *s = malloc((size_t)n * sizeof *s);
    for (int i = 0; i < n; i++) s[i] = z[i];
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double t = 0.0;
    for (int k = 0; k < n; k++) t += (2.0 * k - n + 1) * s[k];
    free(s);
    return 2.0 * t;
}

/* Energy distance of 1-D sets from pair sums: the cross sum is
 * (S(a u b) - S(a) - S(b)) / 2. */
static double energy_1d_reference(const float *a, int n, const float *b, int m) {
    float *pool = malloc((size_t)(n + m) * sizeof *pool);
    memcpy(pool, a, (size_t)n * sizeof *a);
    memcpy(pool + n, b, (size_t)m * sizeof *b);
    double sa = pair_sum_sorted(a, n), sb = pair_sum_sorted(b, m);
    double cross = (pair_sum_sorted(pool, n + m) - sa - sb) / 2.0;
    free(pool);
    return 2.0 * cross / ((double)n * m) - sa / ((double)n * n) - sb / ((double)m * m);
}

static void test_1d_against_sorted_formula(void **state) {
    (void)state;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 5);
    enum { N = 700, M = 333 };
    float a[N], b[M];
    ddpm_rng_fill_normal(&rng, a, N);
    ddpm_rng_fill_uniform(&rng, b, M, -1.0f, 2.0f);
    double e = ddpm_energy_distance(a, N, b, M, 1), ref = energy_1d_reference(a, N, b, M);
    printf("energy 1-D: %.12f, sorted formula %.12f\n", e, ref);
    assert_true(fabs(e - ref) < 1e-10 * fmax(1.0, fabs(ref)));
    /* a set against itself shifted by c: for any set the V-statistic gives
     * 2 mean|a_i - a_j - c| - 2 mean|a_i - a_j|; a single pair {0, 1} shifted
     * by 3: 2 (2 + 3 + 3 + 4)/4 - 2 (0 + 1 + 1 + 0)/4 = 6 - 1 = 5 */
    float p[2] = {0, 1}, q[2] = {3, 4};
    assert_true(fabs(ddpm_energy_distance(p, 2, q, 2, 1) - 5.0) < 1e-12);
}

static void test_2d_properties(void **state) {
    (void)state;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 9);
    enum { N = 300, M = 500 };
    float a[2 * N], b[2 * M], ra[2 * N], rb[2 * M];
    ddpm_rng_fill_normal(&rng, a, 2 * N);
    ddpm_rng_fill_normal(&rng, b, 2 * M);
    for (int i = 0; i < M; i++) b[2 * i] = 0.5f * b[2 * i] + 0.3f;
    double e = ddpm_energy_distance(a, N, b, M, 2);
    assert_true(e > 0.0);
    assert_true(fabs(e - ddpm_energy_distance(b, M, a, N, 2)) < 1e-12);
    /* rotation by 90 degrees (exact in float) leaves it unchanged */
    for (int i = 0; i < N; i++) ra[2 * i] = -a[2 * i + 1], ra[2 * i + 1] = a[2 * i];
    for (int i = 0; i < M; i++) rb[2 * i] = -b[2 * i + 1], rb[2 * i + 1] = b[2 * i];
    assert_true(fabs(e - ddpm_energy_distance(ra, N, rb, M, 2)) < 1e-12);
}

/* The floor in closed form: for two independent samples of one distribution
 * the V-statistic's mean is (1/n + 1/m) E|X - X'| (the cross term and the
 * off-diagonal within terms cancel in expectation; the zero diagonal is
 * what is left), = (1/n + 1/m) / 3 for U(0, 1). Averaged over 2000 pairs. */
static void test_floor_closed_form(void **state) {
    (void)state;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 13);
    enum { N = 60, M = 90, REPS = 2000 };
    float a[N], b[M];
    double sum = 0.0;
    for (int r = 0; r < REPS; r++) {
        ddpm_rng_fill_uniform(&rng, a, N, 0.0f, 1.0f);
        ddpm_rng_fill_uniform(&rng, b, M, 0.0f, 1.0f);
        double e = ddpm_energy_distance(a, N, b, M, 1);
        assert_true(e >= 0.0);
        sum += e;
    }
    double mean = sum / REPS, want = (1.0 / N + 1.0 / M) / 3.0;
    printf("energy floor: mean %.6f over %d pairs, closed form %.6f\n", mean, REPS, want);
    assert_true(fabs(mean - want) < 0.05 * want);
}

/* Points at 0, 1, ..., 9 on a line against the reference {0, 5}: within
 * r = 1.5 are 0, 1, 4, 5, 6 (5 of 10); r = 0 keeps exact hits (0 and 5). */
static void test_near_fraction(void **state) {
    (void)state;
    float a[20], ref[4] = {0, 0, 5, 0};
    for (int i = 0; i < 10; i++) a[2 * i] = (float)i, a[2 * i + 1] = 0;
    assert_true(ddpm_near_fraction(a, 10, ref, 2, 2, 1.5) == 0.5);
    assert_true(ddpm_near_fraction(a, 10, ref, 2, 2, 0.0) == 0.2);
    assert_true(ddpm_near_fraction(a, 10, ref, 2, 2, 100.0) == 1.0);
    assert_true(isnan(ddpm_near_fraction(a, 0, ref, 2, 2, 1.0)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_points),
        cmocka_unit_test(test_1d_against_sorted_formula),
        cmocka_unit_test(test_2d_properties),
        cmocka_unit_test(test_floor_closed_form),
        cmocka_unit_test(test_near_fraction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
