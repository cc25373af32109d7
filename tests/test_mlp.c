/* test_mlp.c: the toy MLP: parameter table (the seed's PyTorch names and
 * count), forward against a double-precision loop written here, finite-
 * difference gradients of every parameter and of the input through the whole
 * network, backward accumulating. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/mlp.h"
#include "gradcheck.h"

static void test_param_table(void **state) {
    (void)state;
    ddpm_mlp m;
    ddpm_mlp_config c = {2, 128, 100};
    assert_int_equal(ddpm_mlp_create(&m, &c, 4), DDPM_OK);
    /* torch: Linear(2,128) 384 + 2 x Linear(128,128) 16512 + Linear(128,2) 258
     * + 3 x Embedding(100,128) 12800 = 72066 */
    assert_int_equal(m.nparams, 72066);
    assert_string_equal(m.table[0].name, "linears.0.weight");
    assert_int_equal(m.table[0].shape[0], 128);
    assert_int_equal(m.table[0].shape[1], 2);
    assert_string_equal(m.table[6].name, "linears.6.weight");
    assert_int_equal(m.table[6].shape[0], 2);
    assert_string_equal(m.table[10].name, "step_embeddings.2.weight");
    assert_int_equal(m.table[10].shape[0], 100);
    size_t off = 0;
    for (int k = 0; k < DDPM_MLP_NPARAM; k++) {
        assert_int_equal(m.table[k].offset, off);
        off += m.table[k].numel;
    }
    ddpm_mlp_free(&m);
    ddpm_mlp_config bad = {2, 0, 100};
    assert_int_equal(ddpm_mlp_create(&m, &bad, 4), DDPM_ERR_ARG);
    ddpm_mlp_free(&m); /* safe on a failed create */
}

/* The MLP of mlp.h in double, straight from its definition. */
static void mlp_naive(const ddpm_mlp *m, double *out, const float *x, const int *t, int N) {
    int D = m->cfg.dim, H = m->cfg.hidden;
    const float *P = m->params;
    double a[2][64];
    for (int n = 0; n < N; n++) {
        for (int l = 0; l < 4; l++) {
            int I = l ? H : D, O = l < 3 ? H : D;
            const float *W = P + m->w[l], *b = P + m->b[l];
            for (int o = 0; o < O; o++) {
                double s = b[o];
                for (int i = 0; i < I; i++)
                    s += (double)W[o * I + i] * (l ? a[(l - 1) % 2][i] : (double)x[n * D + i]);
                if (l == 3) {
                    out[n * D + o] = s;
                    continue;
                }
                s += P[m->emb[l] + (size_t)t[n] * H + o];
                a[l % 2][o] = s > 0 ? s : 0;
            }
        }
    }
}

static void test_forward_matches_naive(void **state) {
    (void)state;
    enum { N = 9, H = 24, T = 7 };
    ddpm_mlp m;
    ddpm_mlp_config c = {2, H, T};
    assert_int_equal(ddpm_mlp_create(&m, &c, N), DDPM_OK);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 11);
    ddpm_mlp_init_params(&m, &rng);
    float x[N * 2], out[N * 2];
    double ref[N * 2];
    int t[N];
    gc_fill_normal(&rng, x, N * 2);
    for (int i = 0; i < N; i++) t[i] = (i * 5) % T;
    ddpm_mlp_forward(&m, out, x, t, N);
    mlp_naive(&m, ref, x, t, N);
    for (int i = 0; i < N * 2; i++) assert_true(fabs(out[i] - ref[i]) < 1e-5 * (1 + fabs(ref[i])));
    /* the init is torch's: weights within 1/sqrt(fan_in) */
    for (size_t i = 0; i < m.table[2].numel; i++) assert_true(fabsf(m.params[m.w[1] + i]) <= 1.0f / sqrtf(H));
    ddpm_mlp_free(&m);
}

typedef struct {
    ddpm_mlp *m;
    float *out, *x;
    const int *t;
    int N;
} fd_ctx;

static void fd_forward(void *p) {
    fd_ctx *c = p;
    ddpm_mlp_forward(c->m, c->out, c->x, c->t, c->N);
}

/* Smallest |pre-activation| of the last forward: finite differences of size
 * eps must not cross a ReLU kink. */
static double min_preact(const ddpm_mlp *m, int N) {
    double lo = INFINITY;
    for (int l = 0; l < 3; l++)
        for (size_t i = 0; i < (size_t)N * m->cfg.hidden; i++) lo = fmin(lo, fabs(m->h[l][i]));
    return lo;
}

static void test_gradcheck_whole_network(void **state) {
    (void)state;
    enum { N = 6, H = 8, T = 5 };
    ddpm_mlp m;
    ddpm_mlp_config c = {2, H, T};
    assert_int_equal(ddpm_mlp_create(&m, &c, N), DDPM_OK);
    float x[N * 2], out[N * 2], proj[N * 2], dx[N * 2] = {0};
    int t[N] = {0, 4, 2, 2, 1, 3}; /* a repeated t: its embedding rows accumulate */
    fd_ctx ctx = {&m, out, x, t, N};
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 1);
    for (int tries = 0;; tries++) { /* the first draw whose kinks are all > 0.05 away */
        ddpm_mlp_init_params(&m, &rng);
        gc_fill_normal(&rng, x, N * 2);
        fd_forward(&ctx);
        if (min_preact(&m, N) > 0.05) break;
        assert_true(tries < 1000);
    }
    gc_fill_normal(&rng, proj, N * 2);
    memset(m.grads, 0, m.nparams * sizeof(float));
    ddpm_mlp_backward(&m, dx, proj);
    gc_tensor ts[DDPM_MLP_NPARAM + 1];
    for (int k = 0; k < DDPM_MLP_NPARAM; k++)
        ts[k] = (gc_tensor){m.table[k].name, m.params + m.table[k].offset, m.grads + m.table[k].offset,
                            m.table[k].numel};
    ts[DDPM_MLP_NPARAM] = (gc_tensor){"input", x, dx, N * 2};
    /* Through four float32 layers the rounding noise of L (~1e-7 |L| / h)
     * is about 3e-5 absolute at any step that keeps its perturbations (2h
     * times an input of order 1) short of the kinks, which are at least
     * 0.05 away: 1.2-1.4x the default elementwise bound on one element at
     * h = 1e-3 and 4e-3 alike. As for the UNet (test_unet.c), atol is
     * raised to 0.5 tol max|g|; the max-norm test is unchanged. */
    gc_opts o = {.eps = 4e-3, .tol = GC_TOL, .atol = 0.5, .max_elems = GC_MAX_ELEMS, .order = 4};
    gc_check_opts("mlp", fd_forward, &ctx, out, N * 2, proj, ts, DDPM_MLP_NPARAM + 1, &o);

    /* backward accumulates: a second pass doubles every gradient */
    float *g1 = gc_alloc(m.nparams);
    memcpy(g1, m.grads, m.nparams * sizeof(float));
    fd_forward(&ctx);
    ddpm_mlp_backward(&m, NULL, proj);
    for (size_t i = 0; i < m.nparams; i++) assert_true(fabsf(m.grads[i] - 2 * g1[i]) <= 1e-6f * (1 + fabsf(g1[i])));
    ddpm_free(g1);
    ddpm_mlp_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_table),
        cmocka_unit_test(test_forward_matches_naive),
        cmocka_unit_test(test_gradcheck_whole_network),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
