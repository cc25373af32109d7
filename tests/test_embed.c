/* test_embed.c: embedding lookup and its accumulating backward (repeated
 * indices), gradient check of the table, sinusoidal timestep embedding
 * against independently computed values. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/embed.h"
#include "ddpm/common.h"
#include "ddpm/rng.h"
#include "gradcheck.h"

static void test_embedding_forward_backward(void **state) {
    (void)state;
    enum { V = 4, D = 3, N = 5 };
    float table[V * D];
    for (int k = 0; k < V * D; k++) table[k] = (float)(k + 1); /* row r = 3r+1, 3r+2, 3r+3 */
    int idx[N] = {2, 0, 2, 3, 2};
    float out[N * D];
    ddpm_embedding_forward(out, idx, table, N, D);
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) assert_float_equal(out[n * D + d], (float)(3 * idx[n] + d + 1), 0);

    float dout[N * D];
    for (int k = 0; k < N * D; k++) dout[k] = (float)(k + 1) * 0.5f;
    float dtable[V * D];
    for (int k = 0; k < V * D; k++) dtable[k] = 1.0f; /* backward must accumulate onto this */
    ddpm_embedding_backward(dtable, dout, idx, N, D);
    for (int r = 0; r < V; r++)
        for (int d = 0; d < D; d++) {
            float want = 1.0f;
            for (int n = 0; n < N; n++)
                if (idx[n] == r) want += dout[n * D + d];
            assert_float_equal(dtable[r * D + d], want, 0);
        }
    /* forward_add: out += the same rows, onto whatever out held */
    float acc[N * D];
    for (int k = 0; k < N * D; k++) acc[k] = (float)k * 0.25f - 1.0f;
    ddpm_embedding_forward_add(acc, idx, table, N, D);
    for (int k = 0; k < N * D; k++) assert_float_equal(acc[k], ((float)k * 0.25f - 1.0f) + out[k], 0);

    /* row 2 got three rows of dout, row 1 none */
    assert_float_equal(dtable[2 * D + 0], 1.0f + 0.5f + 3.5f + 6.5f, 0);
    assert_float_equal(dtable[1 * D + 1], 1.0f, 0);
}

typedef struct {
    float *out, *table; /* out (N, D), table (V, D) */
    const int *idx;
    int N, D;
} embed_ctx;

static void embed_fwd(void *p) {
    embed_ctx *c = p;
    ddpm_embedding_forward(c->out, c->idx, c->table, c->N, c->D);
}

static void test_embedding_gradcheck(void **state) {
    (void)state;
    enum { V = 5, D = 7, N = 9 };
    int idx[N] = {4, 1, 1, 0, 4, 3, 1, 0, 4}; /* row 2 unused, repeats elsewhere */
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 11);
    embed_ctx c = {gc_alloc(N * D), gc_alloc(V * D), idx, N, D};
    float *proj = gc_alloc(N * D), *dtable = gc_alloc(V * D);
    gc_fill_normal(&rng, c.table, V * D);
    gc_fill_normal(&rng, proj, N * D);
    embed_fwd(&c);
    ddpm_embedding_backward(dtable, proj, idx, N, D);
    gc_tensor t[] = {{"table", c.table, dtable, V * D}};
    gc_check("embedding V=5 D=7 N=9", embed_fwd, &c, c.out, N * D, proj, t, 1, GC_EPS, GC_TOL,
             GC_MAX_ELEMS);
    for (int d = 0; d < D; d++) assert_float_equal(dtable[2 * D + d], 0.0f, 0);
    ddpm_free(c.out);
    ddpm_free(c.table);
    ddpm_free(proj);
    ddpm_free(dtable);
}

static void test_timestep_embedding_t0(void **state) {
    (void)state;
    enum { D = 32 };
    int t[2] = {0, 0};
    float out[2 * D];
    ddpm_timestep_embedding(out, t, 2, D);
    for (int n = 0; n < 2; n++)
        for (int i = 0; i < D / 2; i++) {
            assert_float_equal(out[n * D + i], 0.0f, 0);          /* sin 0 */
            assert_float_equal(out[n * D + D / 2 + i], 1.0f, 0);  /* cos 0 */
        }
}

static void test_timestep_embedding_t17_d8(void **state) {
    (void)state;
    /* D = 8: f_i = 10000^(-i/4) = 1, 0.1, 0.01, 0.001; arguments 17, 1.7, 0.17, 0.017. */
    const double want[8] = {
        -0.9613974918795568, 0.9916648104524686, 0.16918234906699603, 0.01699918117849873,
        -0.27516333805159693, -0.12884449429552464, 0.9855847669095608, 0.9998555034800082,
    };
    int t[3] = {0, 17, 0};
    float out[3 * 8];
    ddpm_timestep_embedding(out, t, 3, 8);
    for (int k = 0; k < 8; k++) assert_float_equal(out[8 + k], (float)want[k], 1e-6f);
    assert_float_equal(out[0], 0.0f, 0);
    assert_float_equal(out[4], 1.0f, 0);
    assert_float_equal(out[16 + 4], 1.0f, 0);
}

static void test_timestep_embedding_large(void **state) {
    (void)state;
    /* The default model's width (ch = 32 -> D = 32) and a wider one, at large t;
     * reference frequencies from pow() instead of exp(log()). */
    int Ds[2] = {32, 128};
    int t[4] = {999, 1, 500, 123};
    for (int k = 0; k < 2; k++) {
        int D = Ds[k], half = D / 2;
        float *out = gc_alloc((size_t)4 * D);
        ddpm_timestep_embedding(out, t, 4, D);
        for (int n = 0; n < 4; n++)
            for (int i = 0; i < half; i++) {
                double arg = t[n] * pow(10000.0, -(double)i / half);
                assert_float_equal(out[n * D + i], (float)sin(arg), 1e-6f);
                assert_float_equal(out[n * D + half + i], (float)cos(arg), 1e-6f);
            }
        ddpm_free(out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedding_forward_backward),
        cmocka_unit_test(test_embedding_gradcheck),
        cmocka_unit_test(test_timestep_embedding_t0),
        cmocka_unit_test(test_timestep_embedding_t17_d8),
        cmocka_unit_test(test_timestep_embedding_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
