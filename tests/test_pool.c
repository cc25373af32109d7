/* test_pool.c: 2x2 max pooling: forward against a naive loop and a hand
 * example (ties go to the first maximum), gradient check, backward
 * accumulates and routes to the winner only. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/common.h"
#include "ddpm/pool.h"
#include "ddpm/rng.h"
#include "gradcheck.h"

static void test_hand_example(void **state) {
    (void)state;
    /* one 4x4 plane: windows {1,2,5,6} {3,3,7,7}(tie) {-1,-2,-3,-4} {0,9,9,0} */
    const float in[16] = {1, 2, 3, 3, 5, 6, 7, 7, -1, -2, 0, 9, -3, -4, 9, 0};
    float out[4];
    uint8_t am[4];
    ddpm_maxpool2_forward(out, am, in, 1, 1, 4, 4);
    const float want[4] = {6, 7, -1, 9};
    const uint8_t want_am[4] = {3, 2, 0, 1};
    for (int i = 0; i < 4; i++) {
        assert_true(out[i] == want[i]);
        assert_int_equal(am[i], want_am[i]);
    }
    float din[16], dout[4] = {1, 2, 3, 4};
    for (int i = 0; i < 16; i++) din[i] = 0.5f;
    ddpm_maxpool2_backward(din, dout, am, 1, 1, 4, 4);
    for (int i = 0; i < 16; i++) {
        float w = 0.5f + (i == 5 ? 1 : i == 6 ? 2 : i == 8 ? 3 : i == 11 ? 4 : 0);
        assert_true(din[i] == w);
    }
    float out2[4];
    ddpm_maxpool2_forward(out2, NULL, in, 1, 1, 4, 4); /* argmax optional */
    assert_memory_equal(out, out2, sizeof out);
}

static void test_forward_naive(void **state) {
    (void)state;
    int N = 3, C = 5, H = 8, W = 6;
    size_t n = (size_t)N * C * H * W, no = n / 4;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 7);
    float *in = gc_alloc(n), *out = gc_alloc(no);
    uint8_t am[3 * 5 * 4 * 3];
    gc_fill_normal(&rng, in, n);
    ddpm_maxpool2_forward(out, am, in, N, C, H, W);
    for (int p = 0; p < N * C; p++)
        for (int i = 0; i < H / 2; i++)
            for (int j = 0; j < W / 2; j++) {
                float m = -INFINITY;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) m = fmaxf(m, in[((size_t)p * H + 2 * i + a) * W + 2 * j + b]);
                assert_true(out[((size_t)p * (H / 2) + i) * (W / 2) + j] == m);
            }
    ddpm_free(in);
    ddpm_free(out);
}

typedef struct {
    float *out, *in;
    int N, C, H, W;
} pool_ctx;

static void pool_fwd(void *p) {
    pool_ctx *c = p;
    ddpm_maxpool2_forward(c->out, NULL, c->in, c->N, c->C, c->H, c->W);
}

static void test_gradcheck(void **state) {
    (void)state;
    int N = 2, C = 3, H = 6, W = 4;
    size_t n = (size_t)N * C * H * W, no = n / 4;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 11);
    pool_ctx c = {gc_alloc(no), gc_alloc(n), N, C, H, W};
    /* distinct values at least 0.01 apart so +-eps never changes a winner */
    for (size_t i = 0; i < n; i++) c.in[i] = 0.01f * (float)((i * 37) % n) - 0.5f;
    float *proj = gc_alloc(no), *din = gc_alloc(n);
    uint8_t *am = ddpm_malloc(no);
    gc_fill_normal(&rng, proj, no);
    ddpm_maxpool2_forward(c.out, am, c.in, N, C, H, W);
    ddpm_maxpool2_backward(din, proj, am, N, C, H, W);
    gc_tensor t[] = {{"input", c.in, din, n}};
    gc_check("maxpool2", pool_fwd, &c, c.out, no, proj, t, 1, GC_EPS, GC_TOL, GC_MAX_ELEMS);
    ddpm_free(c.out);
    ddpm_free(c.in);
    ddpm_free(proj);
    ddpm_free(din);
    ddpm_free(am);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_example),
        cmocka_unit_test(test_forward_naive),
        cmocka_unit_test(test_gradcheck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
