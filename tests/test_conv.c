/* test_conv.c: conv2d forward against the direct loop, gradient checks of
 * input, weight and bias on every code path, accumulation, NULL gradients,
 * determinism, independence of the thread count, workspace reuse and the
 * output-size arithmetic. The Winograd paths (3x3 stride-1 pad-1, winograd.c:
 * F(2x2) forward and backward, F(4x4) forward) get the same checks with the
 * algorithm forced, plus agreement with the naive and im2col paths on
 * UNet-sized shapes (for F(4x4) also with UNet-like data) and a check of the
 * automatic choice. Every shape here is also checked against PyTorch's
 * float64 conv (tests/data/conv_shapes.fix, scripts/torch_reference.py
 * --conv), and so is the naive reference of tests/reference.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "fixture.h"
#include "reference.h"
#include "ddpm/common.h"
#include "ddpm/conv.h"
#include "ddpm/rng.h"
#include "nn/winograd.h"
#include "gradcheck.h"

typedef struct {
    const char *name;
    ddpm_conv2d_desc d;
} conv_cfg;

/* Small odd and non-square shapes, one or more per code path of conv.c:
 *   direct 1x1 (K1 S1 P0): GEMMs straight on NCHW;
 *   "same" convs (S1, HO = H, WO = W): shifted-copy im2col; din by the
 *     transposed conv when F <= C, else by GEMM + shifted-add col2im;
 *   stride 2 with HO = ceil(H/2) (k3s2p1, k1s2p0, k2s2p0): phase-split im2col
 *     and col2im;
 *   anything else (k3s1p0, k3s2p0, k3s3p1, k1s1p1): the general row loops
 *     (k3s1p0 with F <= C: transposed conv with a general im2col of dout). */
static const conv_cfg CFGS[] = {
    {"k1s1p0 5x7 n3", {.N = 3, .C = 4, .H = 5, .W = 7, .F = 6, .K = 1, .S = 1, .P = 0}},
    {"k1s1p0 16x17 n1", {.N = 1, .C = 3, .H = 16, .W = 17, .F = 5, .K = 1, .S = 1, .P = 0}},
    {"k1s2p0 7x6 n2", {.N = 2, .C = 3, .H = 7, .W = 6, .F = 4, .K = 1, .S = 2, .P = 0}},
    {"k3s1p1 6x5 n3", {.N = 3, .C = 3, .H = 6, .W = 5, .F = 4, .K = 3, .S = 1, .P = 1}},
    {"k3s1p1 5x5 n1", {.N = 1, .C = 2, .H = 5, .W = 5, .F = 3, .K = 3, .S = 1, .P = 1}},
    {"k3s2p1 7x7 n1", {.N = 1, .C = 2, .H = 7, .W = 7, .F = 3, .K = 3, .S = 2, .P = 1}},
    {"k3s2p1 8x6 n3", {.N = 3, .C = 3, .H = 8, .W = 6, .F = 5, .K = 3, .S = 2, .P = 1}},
    {"k3s1p0 5x8 n1", {.N = 1, .C = 2, .H = 5, .W = 8, .F = 3, .K = 3, .S = 1, .P = 0}},
    {"k3s1p0 6x7 n3", {.N = 3, .C = 3, .H = 6, .W = 7, .F = 2, .K = 3, .S = 1, .P = 0}},
    {"k3s1p1 7x6 n2 F<C", {.N = 2, .C = 5, .H = 7, .W = 6, .F = 3, .K = 3, .S = 1, .P = 1}},
    {"k3s1p1 4x4 n5 F=C", {.N = 5, .C = 3, .H = 4, .W = 4, .F = 3, .K = 3, .S = 1, .P = 1}},
    {"k5s1p2 6x7 n2 F<C", {.N = 2, .C = 3, .H = 6, .W = 7, .F = 2, .K = 5, .S = 1, .P = 2}},
    {"k5s1p2 5x4 n2 F>C", {.N = 2, .C = 2, .H = 5, .W = 4, .F = 3, .K = 5, .S = 1, .P = 2}},
    {"k3s2p1 5x8 n2", {.N = 2, .C = 3, .H = 5, .W = 8, .F = 4, .K = 3, .S = 2, .P = 1}},
    {"k2s2p0 6x8 n2", {.N = 2, .C = 3, .H = 6, .W = 8, .F = 2, .K = 2, .S = 2, .P = 0}},
    {"k3s2p0 9x8 n2", {.N = 2, .C = 3, .H = 9, .W = 8, .F = 4, .K = 3, .S = 2, .P = 0}},
    {"k3s3p1 10x8 n2", {.N = 2, .C = 2, .H = 10, .W = 8, .F = 3, .K = 3, .S = 3, .P = 1}},
    {"k1s1p1 4x5 n2", {.N = 2, .C = 3, .H = 4, .W = 5, .F = 2, .K = 1, .S = 1, .P = 1}},
    {"k3s1p1 2x1 n2 F<C", {.N = 2, .C = 3, .H = 2, .W = 1, .F = 2, .K = 3, .S = 1, .P = 1}},
    {"k3s2p1 1x2 n2", {.N = 2, .C = 2, .H = 1, .W = 2, .F = 3, .K = 3, .S = 2, .P = 1}},
};
#define NCFG ((int)(sizeof CFGS / sizeof *CFGS))

/* All the buffers of one configuration. */
typedef struct {
    ddpm_conv2d_desc d;
    size_t nin, nw, nout, nwork;
    float *in;     /* (N, C, H, W) */
    float *weight; /* (F, C, K, K) */
    float *bias;   /* (F) */
    float *out;    /* (N, F, HO, WO) */
    float *work;   /* ddpm_conv2d_workspace floats, exactly (ASan catches overruns) */
    float *proj;   /* (N, F, HO, WO) random projection = dout */
    float *din, *dweight, *dbias;
    const float *fwd_bias; /* bias or NULL, what the forward uses */
} conv_case;

static void case_init(conv_case *t, const ddpm_conv2d_desc *d, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->d = *d;
    int HO = ddpm_conv2d_out(d->H, d->K, d->S, d->P), WO = ddpm_conv2d_out(d->W, d->K, d->S, d->P);
    t->nin = (size_t)d->N * d->C * d->H * d->W;
    t->nw = (size_t)d->F * d->C * d->K * d->K;
    t->nout = (size_t)d->N * d->F * HO * WO;
    t->nwork = ddpm_conv2d_workspace(d);
    t->in = gc_alloc(t->nin);
    t->weight = gc_alloc(t->nw);
    t->bias = gc_alloc((size_t)d->F);
    t->out = gc_alloc(t->nout);
    t->work = t->nwork ? gc_alloc(t->nwork) : NULL;
    t->proj = gc_alloc(t->nout);
    t->din = gc_alloc(t->nin);
    t->dweight = gc_alloc(t->nw);
    t->dbias = gc_alloc((size_t)d->F);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    gc_fill_normal(&rng, t->in, t->nin);
    gc_fill_uniform(&rng, t->weight, t->nw, -0.5f, 0.5f);
    gc_fill_uniform(&rng, t->bias, (size_t)d->F, -1.0f, 1.0f);
    gc_fill_uniform(&rng, t->proj, t->nout, -1.0f, 1.0f);
    /* scratch and outputs start as garbage: nothing may rely on them */
    for (size_t i = 0; i < t->nwork; i++) t->work[i] = NAN;
    for (size_t i = 0; i < t->nout; i++) t->out[i] = NAN;
    t->fwd_bias = t->bias;
}

static void case_free(conv_case *t) {
    ddpm_free(t->in);
    ddpm_free(t->weight);
    ddpm_free(t->bias);
    ddpm_free(t->out);
    ddpm_free(t->work);
    ddpm_free(t->proj);
    ddpm_free(t->din);
    ddpm_free(t->dweight);
    ddpm_free(t->dbias);
}

static void case_forward(void *ctx) {
    conv_case *t = ctx;
    ddpm_conv2d_forward(t->out, t->in, t->weight, t->fwd_bias, &t->d, t->work);
}

static void case_backward(conv_case *t, float *din, float *dweight, float *dbias) {
    ddpm_conv2d_backward(din, dweight, dbias, t->proj, t->in, t->weight, &t->d, t->work);
}

static void test_out_arithmetic(void **state) {
    (void)state;
    assert_int_equal(ddpm_conv2d_out(28, 3, 1, 1), 28);
    assert_int_equal(ddpm_conv2d_out(28, 3, 2, 1), 14);
    assert_int_equal(ddpm_conv2d_out(14, 3, 2, 1), 7);
    assert_int_equal(ddpm_conv2d_out(7, 3, 2, 1), 4);
    assert_int_equal(ddpm_conv2d_out(8, 3, 2, 1), 4);
    assert_int_equal(ddpm_conv2d_out(6, 3, 2, 1), 3);
    assert_int_equal(ddpm_conv2d_out(5, 3, 1, 0), 3);
    assert_int_equal(ddpm_conv2d_out(3, 3, 1, 0), 1);
    assert_int_equal(ddpm_conv2d_out(9, 1, 1, 0), 9);
    assert_int_equal(ddpm_conv2d_out(1, 1, 1, 0), 1);
    assert_int_equal(ddpm_conv2d_out(1, 3, 2, 1), 1);
    assert_int_equal(ddpm_conv2d_out(10, 5, 3, 2), 4);
    /* the workspace holds at least the (C*K*K, N*HO*WO) col matrix */
    ddpm_conv2d_desc d = {.N = 2, .C = 3, .H = 8, .W = 6, .F = 5, .K = 3, .S = 2, .P = 1};
    assert_true(ddpm_conv2d_workspace(&d) >= (size_t)(3 * 9) * (2 * 4 * 3));
}

/* max |fast - naive| / max |naive| */
static double forward_rel_err(conv_case *t) {
    float *ref = gc_alloc(t->nout);
    ddpm_conv2d_forward_naive(ref, t->in, t->weight, t->fwd_bias, &t->d);
    case_forward(t);
    double scale = gc_max_abs(ref, t->nout);
    assert_true(scale > 0.0);
    double err = gc_max_abs_diff(t->out, ref, t->nout) / scale;
    ddpm_free(ref);
    return err;
}

/* Every shape of tab[n] with `algo` forced (AUTO: as dispatched), with and
 * without a bias: the forward against the naive reference, max-norm relative
 * error <= 1e-5. */
static void check_forward_vs_naive(const conv_cfg *tab, int n, ddpm_conv2d_algo algo, uint64_t seed) {
    for (int i = 0; i < n; i++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            conv_case t;
            ddpm_conv2d_desc d = tab[i].d;
            d.algo = algo;
            case_init(&t, &d, seed + (uint64_t)i);
            t.fwd_bias = with_bias ? t.bias : NULL;
            double err = forward_rel_err(&t);
            if (!(err <= 1e-5)) fail_msg("%s bias=%d: rel err %g", tab[i].name, with_bias, err);
            case_free(&t);
        }
}

/* Finite-difference check (step eps) of the input, weight and bias gradients
 * of every shape of tab[n] with `algo` forced. With both_bias also without a
 * bias in the forward: L then does not depend on the bias, so only the input
 * and weight gradients are checked. */
static void check_gradients(const conv_cfg *tab, int n, ddpm_conv2d_algo algo, uint64_t seed,
                            double eps, bool both_bias) {
    for (int i = 0; i < n; i++)
        for (int with_bias = both_bias ? 0 : 1; with_bias < 2; with_bias++) {
            conv_case t;
            ddpm_conv2d_desc d = tab[i].d;
            d.algo = algo;
            case_init(&t, &d, seed + (uint64_t)i);
            t.fwd_bias = with_bias ? t.bias : NULL;
            case_forward(&t);
            case_backward(&t, t.din, t.dweight, t.dbias);
            gc_tensor ts[] = {
                {"input", t.in, t.din, t.nin},
                {"weight", t.weight, t.dweight, t.nw},
                {"bias", t.bias, t.dbias, (size_t)t.d.F},
            };
            char layer[64];
            if (both_bias) snprintf(layer, sizeof layer, "conv2d %s bias=%d", tab[i].name, with_bias);
            else snprintf(layer, sizeof layer, "conv2d %s", tab[i].name);
            gc_check(layer, case_forward, &t, t.out, t.nout, t.proj, ts, with_bias ? 3 : 2, eps, GC_TOL,
                     GC_MAX_ELEMS);
            case_free(&t);
        }
}

static void test_forward_matches_naive(void **state) {
    (void)state;
    check_forward_vs_naive(CFGS, NCFG, DDPM_CONV_AUTO, 100);
}

/* Wider shapes closer to the UNet's. */
static void test_forward_matches_naive_larger(void **state) {
    (void)state;
    const ddpm_conv2d_desc ds[] = {
        {.N = 2, .C = 16, .H = 14, .W = 13, .F = 24, .K = 3, .S = 1, .P = 1},
        {.N = 2, .C = 16, .H = 14, .W = 14, .F = 16, .K = 3, .S = 2, .P = 1},
        {.N = 3, .C = 24, .H = 7, .W = 7, .F = 16, .K = 1, .S = 1, .P = 0},
        {.N = 2, .C = 24, .H = 20, .W = 20, .F = 16, .K = 1, .S = 1, .P = 0},
    };
    for (int i = 0; i < (int)(sizeof ds / sizeof *ds); i++) {
        conv_case t;
        case_init(&t, &ds[i], 200 + (uint64_t)i);
        double err = forward_rel_err(&t);
        if (!(err <= 1e-5)) fail_msg("larger case %d: rel err %g", i, err);
        case_free(&t);
    }
}

/* The finite-difference step of the conv checks. A conv is linear in its
 * input and weight (affine in the bias), so a central difference has no
 * truncation error at any step, only the forward's rounding noise over
 * 2 eps: 10 * GC_EPS keeps that noise under gradcheck's elementwise atol
 * (measured at GC_EPS: worst elementwise ratio 1.13 on "k3s1p0 5x8 n1" and
 * 2.28 on "wino 7x7 n2 F>C", i.e. noise ~2e-4 of max|g|). */
#define CONV_GC_EPS (10 * GC_EPS)

static void test_gradcheck(void **state) {
    (void)state;
    check_gradients(CFGS, NCFG, DDPM_CONV_AUTO, 300, CONV_GC_EPS, false);
}

/* |b - 2a| <= 1e-5 * max|2a| elementwise-max (BLAS may add K-blocks into C in
 * a different order when C starts non-zero, so allow rounding). */
static void assert_doubled(const char *cfg, const char *what, const float *a, const float *b,
                           size_t n) {
    double scale = 2.0 * gc_max_abs(a, n), err = 0.0;
    assert_true(scale > 0.0);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)b[i] - 2.0 * (double)a[i]);
        if (!(d <= err)) err = isnan(d) ? INFINITY : d;
    }
    if (!(err <= 1e-5 * scale))
        fail_msg("%s %s: second backward did not accumulate (err %g, scale %g)", cfg, what, err,
                 scale);
}

static void test_backward_accumulates(void **state) {
    (void)state;
    for (int i = 0; i < NCFG; i++) {
        conv_case t;
        case_init(&t, &CFGS[i].d, 400 + (uint64_t)i);
        float *din1 = gc_alloc(t.nin), *dw1 = gc_alloc(t.nw), *db1 = gc_alloc((size_t)t.d.F);
        case_backward(&t, din1, dw1, db1);
        memcpy(t.din, din1, t.nin * sizeof(float));
        memcpy(t.dweight, dw1, t.nw * sizeof(float));
        memcpy(t.dbias, db1, (size_t)t.d.F * sizeof(float));
        case_backward(&t, t.din, t.dweight, t.dbias);
        assert_doubled(CFGS[i].name, "din", din1, t.din, t.nin);
        assert_doubled(CFGS[i].name, "dweight", dw1, t.dweight, t.nw);
        assert_doubled(CFGS[i].name, "dbias", db1, t.dbias, (size_t)t.d.F);
        ddpm_free(din1);
        ddpm_free(dw1);
        ddpm_free(db1);
        case_free(&t);
    }
}

/* din and dbias may be NULL; dweight is then the same, and the same inputs
 * always give bit-identical gradients. */
static void test_null_grads_and_determinism(void **state) {
    (void)state;
    for (int i = 0; i < NCFG; i++) {
        conv_case t;
        case_init(&t, &CFGS[i].d, 500 + (uint64_t)i);
        case_backward(&t, t.din, t.dweight, t.dbias);
        float *din2 = gc_alloc(t.nin), *dw2 = gc_alloc(t.nw), *db2 = gc_alloc((size_t)t.d.F);
        case_backward(&t, din2, dw2, db2);
        assert_memory_equal(t.din, din2, t.nin * sizeof(float));
        assert_memory_equal(t.dweight, dw2, t.nw * sizeof(float));
        assert_memory_equal(t.dbias, db2, (size_t)t.d.F * sizeof(float));
        float *dw3 = gc_alloc(t.nw);
        case_backward(&t, NULL, dw3, NULL);
        assert_memory_equal(t.dweight, dw3, t.nw * sizeof(float));
        ddpm_free(din2);
        ddpm_free(dw2);
        ddpm_free(db2);
        ddpm_free(dw3);
        case_free(&t);
    }
}

/* Wider shapes on every path, with enough images and work (over conv.c's
 * 4 MFLOP threshold) to be split over threads. */
static const ddpm_conv2d_desc WIDE[] = {
    {.N = 6, .C = 16, .H = 15, .W = 14, .F = 12, .K = 3, .S = 1, .P = 1}, /* same, transposed */
    {.N = 6, .C = 12, .H = 15, .W = 14, .F = 16, .K = 3, .S = 1, .P = 1}, /* same, col2im */
    {.N = 6, .C = 16, .H = 27, .W = 26, .F = 16, .K = 3, .S = 2, .P = 1}, /* phased stride 2 */
    {.N = 6, .C = 16, .H = 27, .W = 26, .F = 16, .K = 3, .S = 2, .P = 0}, /* general */
    {.N = 6, .C = 48, .H = 20, .W = 21, .F = 40, .K = 1, .S = 1, .P = 0}, /* direct 1x1 */
};
#define NWIDE ((int)(sizeof WIDE / sizeof *WIDE))

/* Fresh gradients of one backward (din, dweight, dbias start at zero). */
static void fresh_backward(conv_case *t, float *work) {
    memset(t->din, 0, t->nin * sizeof(float));
    memset(t->dweight, 0, t->nw * sizeof(float));
    memset(t->dbias, 0, (size_t)t->d.F * sizeof(float));
    ddpm_conv2d_backward(t->din, t->dweight, t->dbias, t->proj, t->in, t->weight, &t->d, work);
}

static double max_rel_diff(const float *a, const float *ref, size_t n) {
    double scale = gc_max_abs(ref, n);
    return scale > 0.0 ? gc_max_abs_diff(a, ref, n) / scale : gc_max_abs_diff(a, ref, n);
}

/* The images are split over threads. For each thread count, two runs must
 * agree bit for bit; across thread counts out, din and dweight may differ only
 * by rounding (OpenBLAS's own threading of a GEMM, per-thread partial sums of
 * dweight), and dbias not at all. Also checks the wide shapes against the
 * naive forward. */
static void test_thread_counts(void **state) {
    (void)state;
    const int saved = omp_get_max_threads();
    for (int i = 0; i < NWIDE; i++) {
        conv_case t;
        case_init(&t, &WIDE[i], 600 + (uint64_t)i);
        double err = forward_rel_err(&t);
        if (!(err <= 1e-5)) fail_msg("wide case %d: forward rel err %g", i, err);
        float *out1 = gc_alloc(t.nout), *din1 = gc_alloc(t.nin), *dw1 = gc_alloc(t.nw),
              *db1 = gc_alloc((size_t)t.d.F);
        omp_set_num_threads(1);
        case_forward(&t);
        fresh_backward(&t, t.work);
        memcpy(out1, t.out, t.nout * sizeof(float));
        memcpy(din1, t.din, t.nin * sizeof(float));
        memcpy(dw1, t.dweight, t.nw * sizeof(float));
        memcpy(db1, t.dbias, (size_t)t.d.F * sizeof(float));
        for (int nt = 2; nt <= 3; nt++) {
            omp_set_num_threads(nt);
            float *out2 = gc_alloc(t.nout), *din2 = gc_alloc(t.nin), *dw2 = gc_alloc(t.nw);
            for (int rep = 0; rep < 2; rep++) {
                for (size_t j = 0; j < t.nout; j++) t.out[j] = NAN;
                case_forward(&t);
                fresh_backward(&t, t.work);
                assert_memory_equal(t.dbias, db1, (size_t)t.d.F * sizeof(float));
                if (rep == 0) {
                    memcpy(out2, t.out, t.nout * sizeof(float));
                    memcpy(din2, t.din, t.nin * sizeof(float));
                    memcpy(dw2, t.dweight, t.nw * sizeof(float));
                } else {
                    assert_memory_equal(t.out, out2, t.nout * sizeof(float));
                    assert_memory_equal(t.din, din2, t.nin * sizeof(float));
                    assert_memory_equal(t.dweight, dw2, t.nw * sizeof(float));
                }
            }
            double e[3] = {max_rel_diff(t.out, out1, t.nout), max_rel_diff(t.din, din1, t.nin),
                           max_rel_diff(t.dweight, dw1, t.nw)};
            for (int k = 0; k < 3; k++)
                if (!(e[k] <= 1e-5))
                    fail_msg("wide case %d: %s with %d threads differs by %g", i,
                             k == 0 ? "out" : k == 1 ? "din" : "dweight", nt, e[k]);
            ddpm_free(out2);
            ddpm_free(din2);
            ddpm_free(dw2);
        }
        omp_set_num_threads(saved);
        ddpm_free(out1);
        ddpm_free(din1);
        ddpm_free(dw1);
        ddpm_free(db1);
        case_free(&t);
    }
    omp_set_num_threads(saved);
}

/* How src/unet.c uses the workspace: one buffer sized for the largest batch
 * serves smaller batches (the workspace never shrinks as N grows). And a
 * direct 1x1 conv also runs with work == NULL (backward then goes image by
 * image with BLAS-threaded GEMMs), giving the same results up to rounding. */
static void test_workspace_reuse(void **state) {
    (void)state;
    for (int i = 0; i < NWIDE; i++) {
        ddpm_conv2d_desc big = WIDE[i], small = WIDE[i];
        big.N = 9;
        small.N = 3;
        size_t prev = 0;
        for (int n = 1; n <= 9; n++) {
            ddpm_conv2d_desc dn = WIDE[i];
            dn.N = n;
            size_t ws = ddpm_conv2d_workspace(&dn);
            assert_true(ws >= prev);
            prev = ws;
        }
        size_t nbig = ddpm_conv2d_workspace(&big);
        conv_case t;
        case_init(&t, &small, 700 + (uint64_t)i);
        float *work = gc_alloc(nbig ? nbig : 1);
        for (size_t j = 0; j < nbig; j++) work[j] = NAN;
        ddpm_conv2d_forward(t.out, t.in, t.weight, t.bias, &t.d, work);
        float *ref = gc_alloc(t.nout);
        ddpm_conv2d_forward_naive(ref, t.in, t.weight, t.bias, &t.d);
        double err = max_rel_diff(t.out, ref, t.nout);
        if (!(err <= 1e-5)) fail_msg("wide case %d in a bigger work: rel err %g", i, err);
        fresh_backward(&t, work);
        if (WIDE[i].K == 1 && WIDE[i].S == 1 && WIDE[i].P == 0) {
            float *din1 = gc_alloc(t.nin), *dw1 = gc_alloc(t.nw), *db1 = gc_alloc((size_t)t.d.F);
            memcpy(din1, t.din, t.nin * sizeof(float));
            memcpy(dw1, t.dweight, t.nw * sizeof(float));
            memcpy(db1, t.dbias, (size_t)t.d.F * sizeof(float));
            for (size_t j = 0; j < t.nout; j++) t.out[j] = NAN;
            ddpm_conv2d_forward(t.out, t.in, t.weight, t.bias, &t.d, NULL);
            assert_true(max_rel_diff(t.out, ref, t.nout) <= 1e-5);
            fresh_backward(&t, NULL);
            assert_true(max_rel_diff(t.din, din1, t.nin) <= 1e-5);
            assert_memory_equal(t.dbias, db1, (size_t)t.d.F * sizeof(float));
            assert_true(max_rel_diff(t.dweight, dw1, t.nw) <= 1e-5);
            ddpm_free(din1);
            ddpm_free(dw1);
            ddpm_free(db1);
        }
        ddpm_free(ref);
        ddpm_free(work);
        case_free(&t);
    }
}

/* ---- Winograd F(2x2, 3x3) ---------------------------------------------------- */

static ddpm_conv2d_desc with_algo(ddpm_conv2d_desc d, ddpm_conv2d_algo algo) {
    d.algo = algo;
    return d;
}

/* Small shapes, forced onto the Winograd path: odd and even sizes, 1x1, 2x1,
 * 1x2, 7x7, C != F both ways, one channel in or out. */
static const conv_cfg WINO[] = {
    {"wino 1x1 n2", {.N = 2, .C = 3, .H = 1, .W = 1, .F = 4, .K = 3, .S = 1, .P = 1}},
    {"wino 2x1 n2", {.N = 2, .C = 4, .H = 2, .W = 1, .F = 3, .K = 3, .S = 1, .P = 1}},
    {"wino 1x2 n3", {.N = 3, .C = 2, .H = 1, .W = 2, .F = 3, .K = 3, .S = 1, .P = 1}},
    {"wino 7x7 n2 F>C", {.N = 2, .C = 5, .H = 7, .W = 7, .F = 6, .K = 3, .S = 1, .P = 1}},
    {"wino 5x6 n3 F<C", {.N = 3, .C = 6, .H = 5, .W = 6, .F = 4, .K = 3, .S = 1, .P = 1}},
    {"wino 6x5 n1", {.N = 1, .C = 3, .H = 6, .W = 5, .F = 5, .K = 3, .S = 1, .P = 1}},
    {"wino 4x4 n2 F=C", {.N = 2, .C = 2, .H = 4, .W = 4, .F = 2, .K = 3, .S = 1, .P = 1}},
    {"wino 3x8 n2", {.N = 2, .C = 3, .H = 3, .W = 8, .F = 2, .K = 3, .S = 1, .P = 1}},
    {"wino 9x7 n1 C=1", {.N = 1, .C = 1, .H = 9, .W = 7, .F = 3, .K = 3, .S = 1, .P = 1}},
    {"wino 8x9 n2 F=1", {.N = 2, .C = 4, .H = 8, .W = 9, .F = 1, .K = 3, .S = 1, .P = 1}},
};
#define NWINO ((int)(sizeof WINO / sizeof *WINO))

static void test_winograd_forward_matches_naive(void **state) {
    (void)state;
    check_forward_vs_naive(WINO, NWINO, DDPM_CONV_WINOGRAD, 1100);
}

/* Input, weight and bias gradients by finite differences, with and without a
 * bias in the forward. */
static void test_winograd_gradcheck(void **state) {
    (void)state;
    check_gradients(WINO, NWINO, DDPM_CONV_WINOGRAD, 1200, CONV_GC_EPS, true);
}

/* Accumulation (+=), NULL din / dbias, and bit-identical repeats. */
static void test_winograd_accumulate_null_determinism(void **state) {
    (void)state;
    for (int i = 0; i < NWINO; i++) {
        conv_case t;
        ddpm_conv2d_desc d = with_algo(WINO[i].d, DDPM_CONV_WINOGRAD);
        case_init(&t, &d, 1300 + (uint64_t)i);
        float *din1 = gc_alloc(t.nin), *dw1 = gc_alloc(t.nw), *db1 = gc_alloc((size_t)t.d.F);
        case_backward(&t, din1, dw1, db1);
        case_backward(&t, t.din, t.dweight, t.dbias);
        assert_memory_equal(t.din, din1, t.nin * sizeof(float));
        assert_memory_equal(t.dweight, dw1, t.nw * sizeof(float));
        assert_memory_equal(t.dbias, db1, (size_t)t.d.F * sizeof(float));
        float *dw3 = gc_alloc(t.nw);
        case_backward(&t, NULL, dw3, NULL);
        assert_memory_equal(dw3, dw1, t.nw * sizeof(float));
        case_backward(&t, t.din, t.dweight, t.dbias);
        assert_doubled(WINO[i].name, "din", din1, t.din, t.nin);
        assert_doubled(WINO[i].name, "dweight", dw1, t.dweight, t.nw);
        assert_doubled(WINO[i].name, "dbias", db1, t.dbias, (size_t)t.d.F);
        ddpm_free(din1);
        ddpm_free(dw1);
        ddpm_free(db1);
        ddpm_free(dw3);
        case_free(&t);
    }
}

/* UNet-sized shapes, big enough for several threads and, with winograd.c's
 * chunk size (128K floats of tiles), for chunks that split an image and
 * chunks that span two or three (28x28 at 64 + 64 channels: 4 tile rows of
 * 14 per chunk; 7x7 at 128 + 64: 10 tile rows of 4), with odd sizes. */
static const ddpm_conv2d_desc WINO_WIDE[] = {
    {.N = 3, .C = 64, .H = 28, .W = 28, .F = 64, .K = 3, .S = 1, .P = 1},
    {.N = 3, .C = 96, .H = 27, .W = 25, .F = 32, .K = 3, .S = 1, .P = 1},
    {.N = 5, .C = 32, .H = 14, .W = 13, .F = 64, .K = 3, .S = 1, .P = 1},
    {.N = 9, .C = 128, .H = 7, .W = 7, .F = 64, .K = 3, .S = 1, .P = 1},
    {.N = 4, .C = 24, .H = 9, .W = 30, .F = 40, .K = 3, .S = 1, .P = 1},
};
#define NWINO_WIDE ((int)(sizeof WINO_WIDE / sizeof *WINO_WIDE))

/* Forward and the three gradients of a case with fresh (zero) gradients. */
typedef struct {
    float *out, *din, *dweight, *dbias;
} conv_result;

static conv_result run_case(conv_case *t) {
    conv_result r = {gc_alloc(t->nout), gc_alloc(t->nin), gc_alloc(t->nw),
                     gc_alloc((size_t)t->d.F)};
    for (size_t j = 0; j < t->nout; j++) t->out[j] = NAN;
    case_forward(t);
    memcpy(r.out, t->out, t->nout * sizeof(float));
    ddpm_conv2d_backward(r.din, r.dweight, r.dbias, t->proj, t->in, t->weight, &t->d, t->work);
    return r;
}

static void result_free(conv_result *r) {
    ddpm_free(r->out);
    ddpm_free(r->din);
    ddpm_free(r->dweight);
    ddpm_free(r->dbias);
}

static void assert_results_close(const char *what, int i, const conv_case *t,
                                 const conv_result *a, const conv_result *b, double tol) {
    double e[4] = {max_rel_diff(a->out, b->out, t->nout), max_rel_diff(a->din, b->din, t->nin),
                   max_rel_diff(a->dweight, b->dweight, t->nw),
                   max_rel_diff(a->dbias, b->dbias, (size_t)t->d.F)};
    const char *names[4] = {"out", "din", "dweight", "dbias"};
    for (int k = 0; k < 4; k++)
        if (!(e[k] <= tol)) fail_msg("%s, wide case %d: %s differs by %g", what, i, names[k], e[k]);
}

static void assert_results_equal(const conv_case *t, const conv_result *a, const conv_result *b) {
    assert_memory_equal(a->out, b->out, t->nout * sizeof(float));
    assert_memory_equal(a->din, b->din, t->nin * sizeof(float));
    assert_memory_equal(a->dweight, b->dweight, t->nw * sizeof(float));
    assert_memory_equal(a->dbias, b->dbias, (size_t)t->d.F * sizeof(float));
}

/* Winograd against im2col (out, din, dweight, dbias within 1e-5 relative) and
 * the naive forward; for 1, 2 and 3 threads, two runs bit-identical and the
 * thread counts within rounding of each other. */
static void test_winograd_matches_im2col(void **state) {
    (void)state;
    const int saved = omp_get_max_threads();
    for (int i = 0; i < NWINO_WIDE; i++) {
        conv_case w, c;
        ddpm_conv2d_desc dw = with_algo(WINO_WIDE[i], DDPM_CONV_WINOGRAD);
        ddpm_conv2d_desc dc = with_algo(WINO_WIDE[i], DDPM_CONV_IM2COL);
        case_init(&w, &dw, 1400 + (uint64_t)i);
        case_init(&c, &dc, 1400 + (uint64_t)i); /* the same data */
        double err = forward_rel_err(&w);
        if (!(err <= 1e-5)) fail_msg("wide case %d: forward rel err %g", i, err);
        conv_result ref = run_case(&c), first = {0};
        for (int nt = 1; nt <= 3; nt++) {
            omp_set_num_threads(nt);
            conv_result a = run_case(&w), b = run_case(&w);
            assert_results_equal(&w, &a, &b);
            assert_results_close("winograd vs im2col", i, &w, &a, &ref, 1e-5);
            if (nt == 1)
                first = a;
            else {
                assert_results_close("winograd across thread counts", i, &w, &a, &first, 1e-5);
                result_free(&a);
            }
            result_free(&b);
        }
        omp_set_num_threads(saved);
        result_free(&first);
        result_free(&ref);
        case_free(&w);
        case_free(&c);
    }
    omp_set_num_threads(saved);
}

/* Descriptors da and db on the same data (seed): forward and backward give
 * the same bits (so they ran the same algorithm). */
static void assert_same_bits(const ddpm_conv2d_desc *da, const ddpm_conv2d_desc *db, uint64_t seed) {
    conv_case a, b;
    case_init(&a, da, seed);
    case_init(&b, db, seed);
    double err = forward_rel_err(&a); /* and both against the reference */
    if (!(err <= 1e-5)) fail_msg("same-bits case: forward rel err %g vs the naive conv", err);
    conv_result ra = run_case(&a), rb = run_case(&b);
    assert_results_equal(&a, &ra, &rb);
    result_free(&ra);
    result_free(&rb);
    case_free(&a);
    case_free(&b);
}

/* The workspace contract of conv.h for `base` (its N ignored): the size never
 * decreases with N (1..12), and a NaN-filled buffer sized for N = 12 serves
 * N = 2 with the same results as an exactly sized one. */
static void check_workspace_contract(ddpm_conv2d_desc base, uint64_t seed) {
    size_t prev = 0;
    for (int n = 1; n <= 12; n++) {
        ddpm_conv2d_desc dn = base;
        dn.N = n;
        size_t ws = ddpm_conv2d_workspace(&dn);
        assert_true(ws >= prev);
        prev = ws;
    }
    ddpm_conv2d_desc big = base, small = base;
    big.N = 12;
    small.N = 2;
    size_t nbig = ddpm_conv2d_workspace(&big);
    conv_case t;
    case_init(&t, &small, seed);
    double err = forward_rel_err(&t);
    if (!(err <= 1e-5)) fail_msg("workspace case: forward rel err %g vs the naive conv", err);
    conv_result own = run_case(&t);
    float *work = gc_alloc(nbig);
    for (size_t j = 0; j < nbig; j++) work[j] = NAN;
    ddpm_free(t.work);
    t.work = work; /* freed by case_free */
    conv_result shared = run_case(&t);
    assert_results_equal(&t, &own, &shared);
    result_free(&own);
    result_free(&shared);
    case_free(&t);
}

/* AUTO takes Winograd for 3x3 stride-1 pad-1 convs with C >= 32, or C, F >= 8
 * and C*F > 128, and im2col otherwise (bit-identical results tell which ran);
 * WINOGRAD forced on a conv it does not apply to means im2col. The workspace
 * never decreases with N, and one sized for a larger N serves a smaller one. */
static void test_winograd_dispatch_and_workspace(void **state) {
    (void)state;
    struct {
        ddpm_conv2d_desc d;
        ddpm_conv2d_algo expect; /* what AUTO must run */
    } cs[] = {
        {{.N = 2, .C = 16, .H = 9, .W = 8, .F = 12, .K = 3, .S = 1, .P = 1}, DDPM_CONV_WINOGRAD},
        {{.N = 2, .C = 32, .H = 9, .W = 8, .F = 1, .K = 3, .S = 1, .P = 1}, DDPM_CONV_WINOGRAD},
        {{.N = 2, .C = 1, .H = 9, .W = 8, .F = 32, .K = 3, .S = 1, .P = 1}, DDPM_CONV_IM2COL},
        {{.N = 2, .C = 8, .H = 9, .W = 8, .F = 16, .K = 3, .S = 1, .P = 1}, DDPM_CONV_IM2COL},
        {{.N = 2, .C = 24, .H = 9, .W = 8, .F = 3, .K = 3, .S = 1, .P = 1}, DDPM_CONV_IM2COL},
        {{.N = 2, .C = 16, .H = 9, .W = 8, .F = 16, .K = 3, .S = 2, .P = 1}, DDPM_CONV_IM2COL},
        {{.N = 2, .C = 16, .H = 9, .W = 8, .F = 16, .K = 3, .S = 1, .P = 0}, DDPM_CONV_IM2COL},
    };
    for (int i = 0; i < (int)(sizeof cs / sizeof *cs); i++) {
        ddpm_conv2d_desc de = with_algo(cs[i].d, cs[i].expect);
        assert_same_bits(&cs[i].d, &de, 1500 + (uint64_t)i);
        if (cs[i].expect == DDPM_CONV_IM2COL && !ddpm_winograd_applies(&cs[i].d)) {
            /* forced Winograd where it does not apply: im2col, same bits */
            ddpm_conv2d_desc df = with_algo(cs[i].d, DDPM_CONV_WINOGRAD);
            assert_int_equal(ddpm_conv2d_workspace(&df), ddpm_conv2d_workspace(&de));
            assert_same_bits(&df, &de, 1550 + (uint64_t)i);
        }
    }
    for (int i = 0; i < NWINO_WIDE; i++) check_workspace_contract(WINO_WIDE[i], 1600 + (uint64_t)i);
}

/* ---- Winograd F(4x4, 3x3) forward ---------------------------------------------- */

/* Small shapes forced onto F(4x4): square 1x1 .. 9x9 (one tile, a partial
 * tile, several), non-square, C != F both ways, channel counts that are not
 * multiples of 8 (the transforms' partial blocks), one channel in or out. */
static const conv_cfg WINO4[] = {
    {"wino4 1x1 n2", {.N = 2, .C = 3, .H = 1, .W = 1, .F = 4, .K = 3, .S = 1, .P = 1}},
    {"wino4 2x1 n2", {.N = 2, .C = 4, .H = 2, .W = 1, .F = 3, .K = 3, .S = 1, .P = 1}},
    {"wino4 1x2 n3", {.N = 3, .C = 2, .H = 1, .W = 2, .F = 3, .K = 3, .S = 1, .P = 1}},
    {"wino4 3x3 n2 F<C", {.N = 2, .C = 9, .H = 3, .W = 3, .F = 5, .K = 3, .S = 1, .P = 1}},
    {"wino4 5x5 n2 F>C", {.N = 2, .C = 5, .H = 5, .W = 5, .F = 11, .K = 3, .S = 1, .P = 1}},
    {"wino4 7x7 n2 F>C", {.N = 2, .C = 5, .H = 7, .W = 7, .F = 6, .K = 3, .S = 1, .P = 1}},
    {"wino4 9x9 n1 C=F=16", {.N = 1, .C = 16, .H = 9, .W = 9, .F = 16, .K = 3, .S = 1, .P = 1}},
    {"wino4 5x6 n3 F<C", {.N = 3, .C = 6, .H = 5, .W = 6, .F = 4, .K = 3, .S = 1, .P = 1}},
    {"wino4 8x8 n2 F=C", {.N = 2, .C = 2, .H = 8, .W = 8, .F = 2, .K = 3, .S = 1, .P = 1}},
    {"wino4 3x10 n2", {.N = 2, .C = 3, .H = 3, .W = 10, .F = 2, .K = 3, .S = 1, .P = 1}},
    {"wino4 9x7 n1 C=1", {.N = 1, .C = 1, .H = 9, .W = 7, .F = 3, .K = 3, .S = 1, .P = 1}},
    {"wino4 8x9 n2 F=1", {.N = 2, .C = 4, .H = 8, .W = 9, .F = 1, .K = 3, .S = 1, .P = 1}},
    {"wino4 6x13 n2 C=17 F=9", {.N = 2, .C = 17, .H = 6, .W = 13, .F = 9, .K = 3, .S = 1, .P = 1}},
};
#define NWINO4 ((int)(sizeof WINO4 / sizeof *WINO4))

static void test_winograd4_forward_matches_naive(void **state) {
    (void)state;
    check_forward_vs_naive(WINO4, NWINO4, DDPM_CONV_WINOGRAD4, 2100);
}

/* The forward is F(4x4), the backward F(2x2) (the exact adjoint of the F(2x2)
 * forward, so of this forward up to rounding): finite differences of the
 * F(4x4) forward must still match the gradients. The step is 10 * CONV_GC_EPS
 * (no truncation error, see CONV_GC_EPS): F(4x4) rounds ~5x more than F(2x2)
 * (its transforms scale by up to 8; measured max-norm error 1.4e-3 at GC_EPS
 * on "3x3 F<C", at most 3.7e-4 at 10 * GC_EPS, where the elementwise ratio
 * reached 1.0). */
static void test_winograd4_gradcheck(void **state) {
    (void)state;
    check_gradients(WINO4, NWINO4, DDPM_CONV_WINOGRAD4, 2200, 10 * CONV_GC_EPS, false);
}

/* The UNet's 3x3 shapes (channels and sizes; up-path convs take concatenated
 * inputs, C up to 128 at 14x14 and 96 at 28x28) and a wider one (C = 192 at
 * 28x28, the worst case for F(4x4)'s rounding, which grows with C), at small N. */
static const ddpm_conv2d_desc WINO4_UNET[] = {
    {.N = 2, .C = 32, .H = 28, .W = 28, .F = 32, .K = 3, .S = 1, .P = 1},
    {.N = 2, .C = 96, .H = 28, .W = 28, .F = 32, .K = 3, .S = 1, .P = 1},
    {.N = 2, .C = 64, .H = 28, .W = 28, .F = 64, .K = 3, .S = 1, .P = 1},
    {.N = 3, .C = 32, .H = 14, .W = 14, .F = 64, .K = 3, .S = 1, .P = 1},
    {.N = 3, .C = 128, .H = 14, .W = 14, .F = 64, .K = 3, .S = 1, .P = 1},
    {.N = 5, .C = 128, .H = 7, .W = 7, .F = 64, .K = 3, .S = 1, .P = 1},
    {.N = 2, .C = 192, .H = 28, .W = 28, .F = 64, .K = 3, .S = 1, .P = 1},
};
#define NWINO4_UNET ((int)(sizeof WINO4_UNET / sizeof *WINO4_UNET))

/* Data like the UNet's: inputs SiLU(N(0, 1)) (mostly >= -0.28, mean ~0.2, not
 * zero-mean), weights and bias U(-1/sqrt(9C), 1/sqrt(9C)) (PyTorch's init). */
static void realistic_data(conv_case *t, uint64_t seed) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    gc_fill_normal(&rng, t->in, t->nin);
    for (size_t j = 0; j < t->nin; j++) t->in[j] = t->in[j] / (1.0f + expf(-t->in[j]));
    float b = 1.0f / sqrtf(9.0f * (float)t->d.C);
    gc_fill_uniform(&rng, t->weight, t->nw, -b, b);
    gc_fill_uniform(&rng, t->bias, (size_t)t->d.F, -b, b);
}

/* F(4x4) forward on the UNet's shapes, with the tests' data and with realistic
 * data: within 1e-5 relative of the naive forward and of im2col; two runs
 * bit-identical for 1, 2 and 3 threads, the thread counts within rounding;
 * the backward is F(2x2)'s, bit for bit. */
static void test_winograd4_unet_shapes(void **state) {
    (void)state;
    const int saved = omp_get_max_threads();
    for (int i = 0; i < NWINO4_UNET; i++)
        for (int real = 0; real < 2; real++) {
            conv_case w, c, w2;
            ddpm_conv2d_desc d4 = with_algo(WINO4_UNET[i], DDPM_CONV_WINOGRAD4);
            ddpm_conv2d_desc dc = with_algo(WINO4_UNET[i], DDPM_CONV_IM2COL);
            ddpm_conv2d_desc d2 = with_algo(WINO4_UNET[i], DDPM_CONV_WINOGRAD);
            case_init(&w, &d4, 2300 + (uint64_t)i);
            case_init(&c, &dc, 2300 + (uint64_t)i);
            case_init(&w2, &d2, 2300 + (uint64_t)i);
            if (real) {
                realistic_data(&w, 2350 + (uint64_t)i);
                realistic_data(&c, 2350 + (uint64_t)i);
                realistic_data(&w2, 2350 + (uint64_t)i);
            }
            double err = forward_rel_err(&w);
            printf("winograd4 %dx%d C=%d F=%d %s data: forward max_rel_err=%.3g\n", w.d.H, w.d.W,
                   w.d.C, w.d.F, real ? "realistic" : "test", err);
            if (!(err <= 1e-5)) fail_msg("unet case %d real=%d: forward rel err %g", i, real, err);
            conv_result ref = run_case(&c), first = {0};
            for (int nt = 1; nt <= 3; nt++) {
                omp_set_num_threads(nt);
                conv_result a = run_case(&w), b = run_case(&w), f2 = run_case(&w2);
                assert_results_equal(&w, &a, &b);
                /* same backward as F(2x2): only the forward differs */
                assert_memory_equal(a.din, f2.din, w.nin * sizeof(float));
                assert_memory_equal(a.dweight, f2.dweight, w.nw * sizeof(float));
                assert_memory_equal(a.dbias, f2.dbias, (size_t)w.d.F * sizeof(float));
                result_free(&f2);
                if (!(max_rel_diff(a.out, ref.out, w.nout) <= 1e-5))
                    fail_msg("unet case %d: F(4x4) vs im2col differs by %g", i,
                             max_rel_diff(a.out, ref.out, w.nout));
                if (nt == 1) {
                    first = a;
                } else {
                    assert_results_close("winograd4 across thread counts", i, &w, &a, &first,
                                         1e-5);
                    result_free(&a);
                }
                result_free(&b);
            }
            omp_set_num_threads(saved);
            result_free(&first);
            result_free(&ref);
            case_free(&w);
            case_free(&c);
            case_free(&w2);
        }
    omp_set_num_threads(saved);
}

/* AUTO takes F(4x4) for the forward of Winograd convs with C, F >= 32 and
 * F(2x2) otherwise (bit-identical results tell which ran); WINOGRAD4 forced
 * where Winograd does not apply means im2col. The workspace for WINOGRAD4
 * never decreases with N, and one sized for a larger N serves a smaller one. */
static void test_winograd4_dispatch_and_workspace(void **state) {
    (void)state;
    struct {
        ddpm_conv2d_desc d;
        ddpm_conv2d_algo expect; /* what AUTO must run */
    } cs[] = {
        {{.N = 2, .C = 32, .H = 9, .W = 8, .F = 32, .K = 3, .S = 1, .P = 1}, DDPM_CONV_WINOGRAD4},
        {{.N = 2, .C = 64, .H = 7, .W = 7, .F = 40, .K = 3, .S = 1, .P = 1}, DDPM_CONV_WINOGRAD4},
        {{.N = 2, .C = 32, .H = 9, .W = 8, .F = 1, .K = 3, .S = 1, .P = 1}, DDPM_CONV_WINOGRAD},
        {{.N = 2, .C = 16, .H = 9, .W = 8, .F = 48, .K = 3, .S = 1, .P = 1}, DDPM_CONV_WINOGRAD},
        {{.N = 2, .C = 48, .H = 9, .W = 8, .F = 16, .K = 3, .S = 1, .P = 1}, DDPM_CONV_WINOGRAD},
    };
    for (int i = 0; i < (int)(sizeof cs / sizeof *cs); i++) {
        ddpm_conv2d_desc da = cs[i].d, de = with_algo(cs[i].d, cs[i].expect);
        ddpm_conv2d_desc dother = with_algo(
            cs[i].d, cs[i].expect == DDPM_CONV_WINOGRAD4 ? DDPM_CONV_WINOGRAD : DDPM_CONV_WINOGRAD4);
        conv_case a, e, o;
        case_init(&a, &da, 2500 + (uint64_t)i);
        case_init(&e, &de, 2500 + (uint64_t)i);
        case_init(&o, &dother, 2500 + (uint64_t)i);
        conv_result ra = run_case(&a), re = run_case(&e), ro = run_case(&o);
        assert_results_equal(&a, &ra, &re);
        /* and the other tile size gives other bits (the test can tell) */
        assert_true(memcmp(ra.out, ro.out, a.nout * sizeof(float)) != 0);
        result_free(&ra);
        result_free(&re);
        result_free(&ro);
        case_free(&a);
        case_free(&e);
        case_free(&o);
    }
    /* forced F(4x4) where Winograd does not apply: im2col, same bits */
    const ddpm_conv2d_desc na[] = {
        {.N = 2, .C = 32, .H = 9, .W = 8, .F = 32, .K = 3, .S = 2, .P = 1},
        {.N = 2, .C = 32, .H = 9, .W = 8, .F = 32, .K = 3, .S = 1, .P = 0},
        {.N = 2, .C = 32, .H = 9, .W = 8, .F = 32, .K = 1, .S = 1, .P = 0},
    };
    for (int i = 0; i < (int)(sizeof na / sizeof *na); i++) {
        ddpm_conv2d_desc df = with_algo(na[i], DDPM_CONV_WINOGRAD4);
        ddpm_conv2d_desc dg = with_algo(na[i], DDPM_CONV_IM2COL);
        assert_int_equal(ddpm_conv2d_workspace(&df), ddpm_conv2d_workspace(&dg));
        assert_same_bits(&df, &dg, 2550 + (uint64_t)i);
    }
    for (int i = 0; i < NWINO_WIDE; i++) {
        for (int forced = 0; forced < 2; forced++) {
            ddpm_conv2d_desc base =
                forced ? with_algo(WINO_WIDE[i], DDPM_CONV_WINOGRAD4) : WINO_WIDE[i];
            check_workspace_contract(base, 2600 + (uint64_t)i);
            /* F(4x4)'s workspace also serves F(2x2) forward and backward */
            for (int n = 1; n <= 12; n++) {
                ddpm_conv2d_desc dn = base, d2 = with_algo(base, DDPM_CONV_WINOGRAD);
                dn.N = d2.N = n;
                assert_true(ddpm_conv2d_workspace(&dn) >= ddpm_conv2d_workspace(&d2));
            }
        }
    }
}

/* ---- against PyTorch (tests/data/conv_shapes.fix) ------------------------------ */

/* The inputs of scripts/torch_reference.py's conv fixture (conv_gen there):
 * k/1024 for k in [-512, 512] from an integer hash of (seed, i), exact in
 * float. */
static void conv_gen(float *x, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        uint32_t h = (uint32_t)i * 2654435761u + seed * 97531u;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        x[i] = (float)((int)((h >> 8) % 1025u) - 512) / 1024.0f;
    }
}

static void desc_key(char *key, size_t cap, const ddpm_conv2d_desc *d) {
    snprintf(key, cap, "conv.%d,%d,%d,%d,%d,%d,%d,%d", d->N, d->C, d->H, d->W, d->F, d->K, d->S, d->P);
}

/* max |out[k*stride] - ref[k]| / max |ref| over the fixture's samples */
static double sampled_err(const float *out, size_t nout, const fx_entry *e) {
    size_t stride = (nout + 255) / 256, m = (nout + stride - 1) / stride;
    assert_int_equal(e->numel, m);
    const float *ref = e->data;
    double scale = gc_max_abs(ref, m), err = 0.0;
    for (size_t k = 0; k < m; k++) {
        double d = fabs((double)out[k * stride] - (double)ref[k]);
        if (!(d <= err)) err = isnan(d) ? INFINITY : d;
    }
    return scale > 0.0 ? err / scale : INFINITY;
}

/* One fixture shape: the naive reference (reference.c) within 1e-6 of
 * PyTorch's float64 conv, and every algorithm (AUTO, im2col, and the
 * Winograd paths where they apply) within 1e-5. */
static void check_torch_shape(const fx_entry *e, double *worst) {
    ddpm_conv2d_desc d = {0};
    if (sscanf(e->name, "conv.%d,%d,%d,%d,%d,%d,%d,%d", &d.N, &d.C, &d.H, &d.W, &d.F, &d.K, &d.S, &d.P) != 8)
        fail_msg("bad fixture entry %s", e->name);
    const ddpm_conv2d_algo algos[] = {DDPM_CONV_AUTO, DDPM_CONV_IM2COL, DDPM_CONV_WINOGRAD, DDPM_CONV_WINOGRAD4};
    for (int a = 0; a < 4; a++) {
        d.algo = algos[a];
        if (a >= 2 && !ddpm_winograd_applies(&d)) continue;
        conv_case t;
        case_init(&t, &d, 1);
        conv_gen(t.in, t.nin, 1);
        conv_gen(t.weight, t.nw, 2);
        conv_gen(t.bias, (size_t)d.F, 3);
        if (a == 0) {
            ddpm_conv2d_forward_naive(t.out, t.in, t.weight, t.bias, &t.d);
            double err = sampled_err(t.out, t.nout, e);
            if (!(err <= 1e-6)) fail_msg("%s: naive reference vs torch: rel err %g", e->name, err);
        }
        case_forward(&t);
        double err = sampled_err(t.out, t.nout, e);
        if (!(err <= 1e-5)) fail_msg("%s algo %d: rel err %g vs torch", e->name, a, err);
        if (err > *worst) *worst = err;
        case_free(&t);
    }
}

static void test_forward_matches_torch(void **state) {
    (void)state;
    char path[1024], err[256];
    assert_int_equal(fx_data_path(path, sizeof path, "conv_shapes.fix"), 0);
    fx_file f;
    if (fx_load(&f, path, err, sizeof err)) fail_msg("%s", err);
    /* every shape of the tables above is in the fixture */
    const struct {
        const conv_cfg *tab;
        int n;
    } tabs[] = {{CFGS, NCFG}, {WINO, NWINO}, {WINO4, NWINO4}};
    char key[128];
    for (size_t k = 0; k < sizeof tabs / sizeof *tabs; k++)
        for (int i = 0; i < tabs[k].n; i++) {
            desc_key(key, sizeof key, &tabs[k].tab[i].d);
            if (!fx_get(&f, key, FX_F32)) fail_msg("conv_shapes.fix lacks %s (rerun scripts/torch_reference.py --conv)", key);
        }
    const ddpm_conv2d_desc *wide[] = {WIDE, WINO_WIDE, WINO4_UNET};
    const int nwide[] = {NWIDE, NWINO_WIDE, NWINO4_UNET};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < nwide[k]; i++) {
            desc_key(key, sizeof key, &wide[k][i]);
            if (!fx_get(&f, key, FX_F32)) fail_msg("conv_shapes.fix lacks %s (rerun scripts/torch_reference.py --conv)", key);
        }
    double worst = 0.0;
    int shapes = 0;
    for (int i = 0; i < f.n; i++)
        if (!strncmp(f.e[i].name, "conv.", 5)) {
            check_torch_shape(&f.e[i], &worst);
            shapes++;
        }
    printf("conv vs torch: %d shapes, worst rel err %.3g\n", shapes, worst);
    assert_true(shapes >= NCFG + NWINO + NWINO4);
    fx_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_arithmetic),
        cmocka_unit_test(test_forward_matches_naive),
        cmocka_unit_test(test_forward_matches_naive_larger),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_null_grads_and_determinism),
        cmocka_unit_test(test_thread_counts),
        cmocka_unit_test(test_workspace_reuse),
        cmocka_unit_test(test_winograd_forward_matches_naive),
        cmocka_unit_test(test_winograd_gradcheck),
        cmocka_unit_test(test_winograd_accumulate_null_determinism),
        cmocka_unit_test(test_winograd_matches_im2col),
        cmocka_unit_test(test_winograd_dispatch_and_workspace),
        cmocka_unit_test(test_winograd4_forward_matches_naive),
        cmocka_unit_test(test_winograd4_gradcheck),
        cmocka_unit_test(test_winograd4_unet_shapes),
        cmocka_unit_test(test_winograd4_dispatch_and_workspace),
        cmocka_unit_test(test_forward_matches_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
