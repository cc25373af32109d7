/* test_conv.c: conv2d forward against the direct loop, gradient checks of
 * input, weight and bias on every code path, accumulation, NULL gradients,
 * determinism, independence of the thread count, workspace reuse and the
 * output-size arithmetic. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "ddpm/common.h"
#include "ddpm/conv.h"
#include "ddpm/rng.h"
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

static void test_forward_matches_naive(void **state) {
    (void)state;
    for (int i = 0; i < NCFG; i++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            conv_case t;
            case_init(&t, &CFGS[i].d, 100 + (uint64_t)i);
            t.fwd_bias = with_bias ? t.bias : NULL;
            double err = forward_rel_err(&t);
            if (!(err <= 1e-5)) fail_msg("%s bias=%d: rel err %g", CFGS[i].name, with_bias, err);
            case_free(&t);
        }
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

static void test_gradcheck(void **state) {
    (void)state;
    for (int i = 0; i < NCFG; i++) {
        conv_case t;
        case_init(&t, &CFGS[i].d, 300 + (uint64_t)i);
        case_forward(&t);
        case_backward(&t, t.din, t.dweight, t.dbias);
        gc_tensor ts[] = {
            {"input", t.in, t.din, t.nin},
            {"weight", t.weight, t.dweight, t.nw},
            {"bias", t.bias, t.dbias, (size_t)t.d.F},
        };
        char layer[64];
        snprintf(layer, sizeof layer, "conv2d %s", CFGS[i].name);
        gc_check(layer, case_forward, &t, t.out, t.nout, t.proj, ts, 3, GC_EPS, GC_TOL,
                 GC_MAX_ELEMS);
        case_free(&t);
    }
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
