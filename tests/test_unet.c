/* test_unet.c: the whole UNet against PyTorch (tests/data fixtures written by
 * scripts/torch_reference.py: two tiny ones and one of the default model's
 * structure at a narrower width), the default model's size, a finite-difference
 * check through the whole network, and inference == training forward. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/loss.h"
#include "ddpm/unet.h"
#include "fixture.h"
#include "gradcheck.h"

/* ---- helpers ------------------------------------------------------------------- */

static void load_fixture(fx_file *f, const char *name) {
    char path[1024], err[512];
    assert_int_equal(fx_data_path(path, sizeof path, name), 0);
    if (fx_load(f, path, err, sizeof err)) fail_msg("%s", err);
}

static void config_from_fixture(const fx_file *f, ddpm_unet_config *c) {
    memset(c, 0, sizeof *c);
    double dropout = 0;
    assert_int_equal(fx_config_int(f, "in_ch", &c->in_ch), 0);
    assert_int_equal(fx_config_int(f, "res", &c->res), 0);
    assert_int_equal(fx_config_int(f, "ch", &c->ch), 0);
    c->num_levels = fx_config_ints(f, "ch_mult", c->ch_mult, DDPM_MAX_LEVELS);
    assert_true(c->num_levels > 0);
    assert_int_equal(fx_config_int(f, "num_res_blocks", &c->num_res_blocks), 0);
    c->num_attn = fx_config_ints(f, "attn_res", c->attn_res, DDPM_MAX_LEVELS);
    assert_true(c->num_attn >= 0);
    assert_int_equal(fx_config_int(f, "groups", &c->groups), 0);
    assert_int_equal(fx_config_double(f, "dropout", &dropout), 0);
    c->dropout = (float)dropout;
    assert_int_equal(fx_config_int(f, "num_classes", &c->num_classes), 0);
}

/* Copies every "param.K" into the model; the two name sets must be equal. */
static void load_params(ddpm_unet *m, const fx_file *f) {
    int np;
    const ddpm_param_info *pt = ddpm_unet_param_table(m, &np);
    float *params = ddpm_unet_params(m);
    int nfix = 0;
    for (int i = 0; i < f->n; i++) nfix += strncmp(f->e[i].name, "param.", 6) == 0;
    if (nfix != np) fail_msg("fixture has %d parameter tensors, the C model %d", nfix, np);
    for (int i = 0; i < np; i++) {
        char key[96];
        snprintf(key, sizeof key, "param.%s", pt[i].name);
        const fx_entry *e = fx_get(f, key, FX_F32);
        if (!e) fail_msg("fixture lacks %s", key);
        if (e->ndim != pt[i].ndim) fail_msg("%s: ndim %d vs %d", pt[i].name, e->ndim, pt[i].ndim);
        for (int d = 0; d < e->ndim; d++)
            if (e->dims[d] != pt[i].shape[d])
                fail_msg("%s: dim %d is %d in the fixture, %d in C", pt[i].name, d, e->dims[d], pt[i].shape[d]);
        memcpy(params + pt[i].offset, e->data, pt[i].numel * sizeof(float));
    }
}

/* max-norm relative error, as in gradcheck.h */
static double rel_err(const float *a, const float *ref, size_t n) {
    double scale = gc_max_abs(ref, n);
    return gc_max_abs_diff(a, ref, n) / (scale > 0 ? scale : 1.0);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_default_model_size(void **state) {
    (void)state;
    ddpm_unet_config c;
    ddpm_unet_config_default(&c);
    size_t np = 0;
    double flops = 0;
    assert_int_equal(ddpm_unet_describe(&c, &np, &flops), DDPM_OK);
    assert_int_equal(np, 1623169);
    assert_true(flops > 1e8 && flops < 1e10);

    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, 2, true), DDPM_OK);
    assert_int_equal(ddpm_unet_num_params(m), 1623169);
    int n;
    const ddpm_param_info *pt = ddpm_unet_param_table(m, &n);
    size_t off = 0;
    for (int i = 0; i < n; i++) { /* contiguous, unique names */
        assert_int_equal(pt[i].offset, off);
        off += pt[i].numel;
        for (int j = 0; j < i; j++) assert_string_not_equal(pt[i].name, pt[j].name);
    }
    assert_int_equal(n, 244); /* PyTorch's state_dict has 244 tensors */
    assert_non_null(ddpm_unet_find_param(m, "up.2.attn.2.qkv.weight"));
    assert_non_null(ddpm_unet_find_param(m, "down.1.block.0.nin_shortcut.bias"));
    assert_null(ddpm_unet_find_param(m, "down.0.block.0.nin_shortcut.weight"));
    ddpm_unet_free(m);
}

/* The shape's short name: every field it names, the optional ones only when set. */
static void test_config_name(void **state) {
    (void)state;
    ddpm_unet_config c;
    ddpm_unet_config_default(&c);
    char buf[128];
    ddpm_unet_config_name(buf, sizeof buf, &c);
    assert_string_equal(buf, "ch32-mult1,2,2-rb2-attn7-g8");
    c.num_attn = 0, c.num_classes = 10, c.dropout = 0.1f, c.ch = 64, c.groups = 32;
    ddpm_unet_config_name(buf, sizeof buf, &c);
    assert_string_equal(buf, "ch64-mult1,2,2-rb2-attnnone-g32-cls10-drop0.1");
    ddpm_unet_config_name(buf, 10, &c); /* cut, still terminated */
    assert_string_equal(buf, "ch64-mult");
    ddpm_unet_config_describe(buf, sizeof buf, &c);
    assert_string_equal(buf, "in_ch=1 res=28 ch=64 ch_mult=1,2,2 num_res_blocks=2 attn_res=none groups=32 dropout=0.1 "
                             "num_classes=10");
    ddpm_unet_config_default(&c);
    ddpm_unet_config_describe(buf, sizeof buf, &c);
    assert_string_equal(buf, "in_ch=1 res=28 ch=32 ch_mult=1,2,2 num_res_blocks=2 attn_res=7 groups=8 dropout=0 num_classes=0");
}

static void test_config_validation(void **state) {
    (void)state;
    ddpm_unet_config c;
    ddpm_unet_config_default(&c);
    c.res = 30; /* not divisible by 4 */
    assert_int_equal(ddpm_unet_config_validate(&c), DDPM_ERR_ARG);
    ddpm_unet_config_default(&c);
    c.groups = 5;
    assert_int_equal(ddpm_unet_config_validate(&c), DDPM_ERR_ARG);
    ddpm_unet_config_default(&c);
    c.ch = 31;
    assert_int_equal(ddpm_unet_config_validate(&c), DDPM_ERR_ARG);
    ddpm_unet_config_default(&c);
    c.dropout = 1.0f;
    assert_int_equal(ddpm_unet_config_validate(&c), DDPM_ERR_ARG);
    int v[8];
    assert_int_equal(ddpm_parse_int_list("1,2,2", v, 8), 3);
    assert_int_equal(v[2], 2);
    assert_int_equal(ddpm_parse_int_list("1,,2", v, 8), -1);
    assert_int_equal(ddpm_parse_int_list("", v, 8), -1);
    assert_int_equal(ddpm_parse_int_list("1,2,x", v, 8), -1);
    assert_int_equal(ddpm_parse_int_list("1,2,3", v, 2), -1);
}

/* The deepest config validation accepts (8 levels of 16 ResBlocks: a skip
 * stack of 1 + 8 * 17 - 1 = 136 streams) builds, and one more block is refused. */
static void test_largest_graph(void **state) {
    (void)state;
    ddpm_unet_config c;
    ddpm_unet_config_default(&c);
    c.ch = 8;
    c.groups = 4;
    c.res = 128;
    c.num_levels = DDPM_MAX_LEVELS;
    for (int i = 0; i < DDPM_MAX_LEVELS; i++) c.ch_mult[i] = 1;
    c.num_res_blocks = 16;
    c.num_attn = 0;
    size_t np = 0;
    double flops = 0;
    assert_int_equal(ddpm_unet_describe(&c, &np, &flops), DDPM_OK);
    int nblocks = 0;
    ddpm_unet *m = NULL;
    assert_int_equal(ddpm_unet_create(&m, &c, 1, false), DDPM_OK);
    ddpm_unet_blocks(m, &nblocks);
    /* temb, conv_in, 8 x 16 down + 7 downsamples, 3 mid, 8 x 17 up + 7 upsamples, out */
    assert_int_equal(nblocks, 1 + 1 + 8 * 16 + 7 + 3 + 8 * 17 + 7 + 1);
    assert_int_equal(ddpm_unet_num_params(m), np);
    ddpm_unet_free(m);
    c.num_res_blocks = 17;
    assert_int_equal(ddpm_unet_describe(&c, &np, &flops), DDPM_ERR_ARG);
}

/* Forward output, loss, every parameter gradient and the input gradient
 * against PyTorch (float64 reference). */
static void check_against_torch(const char *fixture) {
    fx_file f;
    load_fixture(&f, fixture);
    ddpm_unet_config c;
    config_from_fixture(&f, &c);
    const fx_entry *xe = fx_get(&f, "x", FX_F32);
    assert_non_null(xe);
    int N = xe->dims[0];
    size_t n = xe->numel;
    const float *x = xe->data, *noise = fx_f32(&f, "noise", n), *ref_out = fx_f32(&f, "out", n);
    const fx_entry *te = fx_get(&f, "t", FX_I32), *le = fx_get(&f, "labels", FX_I32);
    assert_non_null(noise);
    assert_non_null(ref_out);
    assert_non_null(te);
    if (c.num_classes > 0) assert_non_null(le);

    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, N, true), DDPM_OK);
    load_params(m, &f);
    float *out = gc_alloc(n), *dout = gc_alloc(n);
    assert_int_equal(ddpm_unet_forward(m, out, x, te->data, le ? le->data : NULL, N), DDPM_OK);
    double out_err = gc_max_abs_diff(out, ref_out, n) / gc_max_abs(ref_out, n);
    printf("unet %s out: max_abs_err/max|out| = %.3g\n", fixture, out_err);
    if (!(out_err <= 1e-4)) fail_msg("%s: output error %.3g > 1e-4", fixture, out_err);

    double loss = ddpm_loss(dout, out, noise, n, DDPM_LOSS_L2);
    double ref_loss = *fx_f32(&f, "loss", 1);
    printf("unet %s loss: C %.8f torch %.8f\n", fixture, loss, ref_loss);
    assert_true(fabs(loss - ref_loss) <= 1e-5 * fabs(ref_loss));

    ddpm_unet_zero_grad(m);
    assert_int_equal(ddpm_unet_backward(m, dout), DDPM_OK);
    int np;
    const ddpm_param_info *pt = ddpm_unet_param_table(m, &np);
    const float *grads = ddpm_unet_grads(m);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < np; i++) {
        char key[96];
        snprintf(key, sizeof key, "grad.%s", pt[i].name);
        const float *ref = fx_f32(&f, key, pt[i].numel);
        if (!ref) fail_msg("fixture lacks %s", key);
        const float *g = grads + pt[i].offset;
        double err = gc_max_abs(ref, pt[i].numel) > 0 ? rel_err(g, ref, pt[i].numel)
                                                       : gc_max_abs(g, pt[i].numel);
        if (!(err <= 1e-3)) fail_msg("%s: gradient %s relative error %.3g > 1e-3", fixture, pt[i].name, err);
        if (err > worst) {
            worst = err;
            worst_name = pt[i].name;
        }
    }
    const float *ref_dx = fx_f32(&f, "grad_input.x", n);
    assert_non_null(ref_dx);
    double dx_err = rel_err(ddpm_unet_input_grad(m), ref_dx, n);
    printf("unet %s: %d parameter gradients, max relative error %.3g (%s); input gradient %.3g\n",
           fixture, np, worst, worst_name, dx_err);
    if (!(dx_err <= 1e-3)) fail_msg("%s: input gradient error %.3g", fixture, dx_err);

    /* the inference path gives the same output */
    ddpm_unet *mi;
    assert_int_equal(ddpm_unet_create(&mi, &c, N, false), DDPM_OK);
    memcpy(ddpm_unet_params(mi), ddpm_unet_params(m), ddpm_unet_num_params(m) * sizeof(float));
    float *out2 = gc_alloc(n);
    assert_int_equal(ddpm_unet_forward(mi, out2, x, te->data, le ? le->data : NULL, N), DDPM_OK);
    assert_memory_equal(out, out2, n * sizeof(float));
    assert_null(ddpm_unet_grads(mi));
    assert_int_equal(ddpm_unet_backward(mi, dout), DDPM_ERR_ARG);
    assert_true(ddpm_unet_arena_bytes(mi) < ddpm_unet_arena_bytes(m));

    ddpm_unet_free(mi);
    ddpm_unet_free(m);
    ddpm_free(out);
    ddpm_free(out2);
    ddpm_free(dout);
    fx_free(&f);
}

static void test_matches_torch(void **state) {
    (void)state;
    check_against_torch("unet_tiny.fix");
}

static void test_matches_torch_conditional(void **state) {
    (void)state;
    check_against_torch("unet_tiny_cond.fix");
}

/* BF16 products through the whole UNet against the same model in FP32 and
 * against PyTorch (float64), forward output, every parameter gradient and
 * the input gradient, all as max-norm relative errors.
 *
 * Tolerance. Each product layer rounds its operands: its output is off by at
 * most R2 = 2^-7 + 2^-16 times its sum of |a||b| (test_bf16_layers.c); for
 * the sums of many terms of either sign in these layers (random weights,
 * normalised activations) we take the error relative to the layer's largest
 * output as at most R2 (operand rounding errors have random signs and
 * partly cancel; the per-layer bounds of test_bf16_layers.c measured 0.03 ..
 * 0.56 of their worst case). GroupNorm rescales every ResBlock's input, so a
 * relative error passes through a layer without growing, and the errors of
 * the D products on a path add: output error <= D R2, D = the number of
 * product layers on the longest path, counted here as every weight matrix
 * (convs, linears; an upper bound on a path's) plus the two products of each
 * attention block. A gradient passes the forward path's error on and adds its
 * own backward products (again at most D): 2 D R2. The fp32 model's own
 * error against PyTorch (<= 1e-4 output, 1e-3 gradients, test_matches_torch)
 * is added for the comparison with the fixture. A model that ignored the
 * precision would show an error of 0: the test requires more than 2^-12. */
static void check_bf16(const char *fixture) {
    fx_file f;
    load_fixture(&f, fixture);
    ddpm_unet_config c;
    config_from_fixture(&f, &c);
    const fx_entry *xe = fx_get(&f, "x", FX_F32), *te = fx_get(&f, "t", FX_I32);
    const fx_entry *le = fx_get(&f, "labels", FX_I32);
    assert_non_null(xe);
    assert_non_null(te);
    const int N = xe->dims[0];
    const size_t n = xe->numel;
    const float *ref_out = fx_f32(&f, "out", n), *noise = fx_f32(&f, "noise", n);
    const float *ref_dx = fx_f32(&f, "grad_input.x", n);
    assert_non_null(ref_out);
    assert_non_null(noise);
    assert_non_null(ref_dx);
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, N, true), DDPM_OK);
    load_params(m, &f);
    assert_int_equal(ddpm_unet_precision(m), DDPM_PREC_FP32);
    int np, D = 0;
    const ddpm_param_info *pt = ddpm_unet_param_table(m, &np);
    for (int i = 0; i < np; i++) {
        D += pt[i].ndim >= 2;
        D += 2 * (strstr(pt[i].name, ".qkv.weight") != NULL);
    }
    const size_t P = ddpm_unet_num_params(m);
    float *out[2], *g[2], *dx[2], *dout = gc_alloc(n);
    const ddpm_rng rng0 = *ddpm_unet_rng(m);
    for (int p = 0; p < 2; p++) {
        ddpm_unet_set_precision(m, p ? DDPM_PREC_BF16 : DDPM_PREC_FP32);
        *ddpm_unet_rng(m) = rng0; /* the same dropout masks */
        out[p] = gc_alloc(n), g[p] = gc_alloc(P), dx[p] = gc_alloc(n);
        assert_int_equal(ddpm_unet_forward(m, out[p], xe->data, te->data, le ? le->data : NULL, N), DDPM_OK);
        ddpm_loss(dout, out[p], noise, n, DDPM_LOSS_L2);
        ddpm_unet_zero_grad(m);
        assert_int_equal(ddpm_unet_backward(m, dout), DDPM_OK);
        memcpy(g[p], ddpm_unet_grads(m), P * sizeof(float));
        memcpy(dx[p], ddpm_unet_input_grad(m), n * sizeof(float));
    }
    const double R2 = 0x1p-7 + 0x1p-16, tol_out = D * R2, tol_grad = 2 * D * R2;
    const double e_out = rel_err(out[1], out[0], n), e_torch = rel_err(out[1], ref_out, n);
    double e_grad = 0, e_grad_torch = 0;
    const char *worst = "";
    for (int i = 0; i < np; i++) {
        const float *a = g[1] + pt[i].offset, *b = g[0] + pt[i].offset;
        char key[96];
        snprintf(key, sizeof key, "grad.%s", pt[i].name);
        const float *ref = fx_f32(&f, key, pt[i].numel);
        assert_non_null(ref);
        if (gc_max_abs(b, pt[i].numel) == 0) continue; /* (none in these fixtures) */
        const double e = rel_err(a, b, pt[i].numel), et = rel_err(a, ref, pt[i].numel);
        if (e > e_grad) e_grad = e, worst = pt[i].name;
        if (et > e_grad_torch) e_grad_torch = et;
    }
    const double e_dx = rel_err(dx[1], dx[0], n), e_dx_torch = rel_err(dx[1], ref_dx, n);
    printf("unet %s bf16 (D = %d products deep): output vs fp32 %.3g, vs torch %.3g (tolerance "
           "%.3g); gradients vs fp32 max %.3g (%s), vs torch %.3g; input gradient vs fp32 %.3g, "
           "vs torch %.3g (tolerance %.3g)\n",
           fixture, D, e_out, e_torch, tol_out, e_grad, worst, e_grad_torch, e_dx, e_dx_torch,
           tol_grad);
    assert_true(e_out <= tol_out && e_torch <= tol_out + 1e-4);
    assert_true(e_grad <= tol_grad && e_grad_torch <= tol_grad + 1e-3);
    assert_true(e_dx <= tol_grad && e_dx_torch <= tol_grad + 1e-3);
    assert_true(e_out > 0x1p-12 && e_grad > 0x1p-12); /* the products were rounded */
    for (int p = 0; p < 2; p++) ddpm_free(out[p]), ddpm_free(g[p]), ddpm_free(dx[p]);
    ddpm_free(dout);
    ddpm_unet_free(m);
    fx_free(&f);
}

static void test_bf16(void **state) {
    (void)state;
    check_bf16("unet_tiny.fix");
    check_bf16("unet_tiny_cond.fix");
}

/* The default model's structure (3 levels, 2 ResBlocks per level, attention
 * at 7x7 of the 28x28 input) at width ch 8, groups 4: the tiny fixtures have
 * 2 levels of 1 block, so they never run a level between the first and the
 * last, a second block of a level, or a third up block. The fixture's config
 * must match the default's in everything but width, so a regenerated
 * fixture cannot quietly lose that coverage. */
static void test_matches_torch_default_shape(void **state) {
    (void)state;
    fx_file f;
    load_fixture(&f, "unet_default_shape.fix");
    ddpm_unet_config c, d;
    config_from_fixture(&f, &c);
    fx_free(&f);
    ddpm_unet_config_default(&d);
    assert_int_equal(c.in_ch, d.in_ch);
    assert_int_equal(c.res, d.res);
    assert_int_equal(c.num_levels, d.num_levels);
    assert_memory_equal(c.ch_mult, d.ch_mult, (size_t)d.num_levels * sizeof *d.ch_mult);
    assert_int_equal(c.num_res_blocks, d.num_res_blocks);
    assert_int_equal(c.num_attn, d.num_attn);
    assert_memory_equal(c.attn_res, d.attn_res, (size_t)d.num_attn * sizeof *d.attn_res);
    assert_int_equal(c.num_classes, d.num_classes);
    assert_true(c.ch < d.ch); /* only narrower */
    check_against_torch("unet_default_shape.fix");
}

/* Finite differences through the whole network, on a few parameter tensors. */
typedef struct {
    ddpm_unet *m;
    float *x, *out;
    int *t, *labels, N;
    ddpm_rng rng0; /* dropout generator state before every forward: same masks */
} fd_ctx;

static void fd_forward(void *p) {
    fd_ctx *c = p;
    *ddpm_unet_rng(c->m) = c->rng0;
    assert_int_equal(ddpm_unet_forward(c->m, c->out, c->x, c->t, c->labels, c->N), DDPM_OK);
}

/* five-point stencil, h = 4e-2, 24 elements per tensor, atol 0.5 (see below) */
static const gc_opts UNET_GC = {.eps = 4e-2, .tol = GC_TOL, .atol = 0.5, .max_elems = 24, .order = 4};

static void test_finite_differences(void **state) {
    (void)state;
    fx_file f;
    load_fixture(&f, "unet_tiny_cond.fix");
    ddpm_unet_config c;
    config_from_fixture(&f, &c);
    const fx_entry *xe = fx_get(&f, "x", FX_F32);
    int N = xe->dims[0];
    size_t n = xe->numel;
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, N, true), DDPM_OK);
    load_params(m, &f);
    fd_ctx ctx = {.m = m, .x = gc_alloc(n), .out = gc_alloc(n), .N = N,
                  .t = fx_get(&f, "t", FX_I32)->data, .labels = fx_get(&f, "labels", FX_I32)->data};
    memcpy(ctx.x, xe->data, n * sizeof(float));
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 99);
    float *proj = gc_alloc(n);
    gc_fill_normal(&rng, proj, n);
    fd_forward(&ctx);
    ddpm_unet_zero_grad(m);
    assert_int_equal(ddpm_unet_backward(m, proj), DDPM_OK);
    const char *names[] = {"temb.dense.0.weight", "label_emb.weight", "conv_in.weight",
                           "down.0.block.0.norm1.weight", "down.1.attn.0.qkv.weight",
                           "mid.attn_1.norm.bias", "up.0.block.1.nin_shortcut.weight",
                           "conv_out.bias"};
    gc_tensor ts[9];
    int nt = 0;
    float *params = ddpm_unet_params(m);
    const float *grads = ddpm_unet_grads(m);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const ddpm_param_info *p = ddpm_unet_find_param(m, names[i]);
        if (!p) fail_msg("no parameter %s", names[i]);
        ts[nt++] = (gc_tensor){names[i], params + p->offset, grads + p->offset, p->numel};
    }
    float *dx_copy = gc_alloc(n);
    memcpy(dx_copy, ddpm_unet_input_grad(m), n * sizeof(float));
    ts[nt++] = (gc_tensor){"input x", ctx.x, dx_copy, n};
    /* Through a whole float32 network rounding noise dominates small steps
     * (3-point stencil: max error 2e-3 at h=3e-3, 7e-4 at h=2e-2), so use the
     * five-point stencil, truncation O(h^4). Measured worst error over these
     * tensors: 1.3e-3 at h=2e-2 (rounding), 5.5e-4 at h=4e-2, 3.8e-4 at
     * h=8e-2 (truncation starts to show). The analytic gradients themselves
     * agree with PyTorch's float64 ones to ~2e-6 (test_matches_torch).
     * 24 elements per tensor keep this to about two thousand forwards.
     * The elementwise test needs atol = 0.5 (UNET_GC) here: the rounding noise
     * of L over the step is ~1e-4 absolute on temb.dense.0.weight (max|g|
     * 0.48), which every output depends on; with gradcheck's default 0.1 the
     * worst element (136) reaches 1.61 at h = 4e-2, 1.9 at 1e-2 and 1.09 at
     * 8e-2 (truncation grows past that), i.e. noise, not error: the same
     * gradients match PyTorch's float64 ones to 2.3e-6 of their max. */
    double worst = gc_check_opts("unet tiny", fd_forward, &ctx, ctx.out, n, proj, ts, nt, &UNET_GC);
    printf("unet finite differences: max relative error %.3g\n", worst);
    ddpm_free(ctx.x);
    ddpm_free(ctx.out);
    ddpm_free(proj);
    ddpm_free(dx_copy);
    ddpm_unet_free(m);
    fx_free(&f);
}

/* With dropout the backward recomputes dropout(SiLU(n2)) from the saved mask:
 * check it through the whole network with the masks held fixed. */
static void test_dropout_gradients(void **state) {
    (void)state;
    ddpm_unet_config c;
    ddpm_unet_config_default(&c);
    c.res = 8;
    c.ch = 8;
    c.num_levels = 2;
    c.ch_mult[0] = 1;
    c.ch_mult[1] = 2;
    c.num_res_blocks = 1;
    c.attn_res[0] = 4;
    c.groups = 4;
    c.dropout = 0.3f;
    int N = 2;
    size_t n = (size_t)N * 64;
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, N, true), DDPM_OK);
    ddpm_unet_init_params(m, 3);
    int t[2] = {5, 600};
    fd_ctx ctx = {.m = m, .x = gc_alloc(n), .out = gc_alloc(n), .N = N, .t = t};
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 11);
    gc_fill_normal(&rng, ctx.x, n);
    ctx.rng0 = *ddpm_unet_rng(m);
    float *proj = gc_alloc(n), *out2 = gc_alloc(n);
    gc_fill_normal(&rng, proj, n);
    fd_forward(&ctx);
    /* the masks really change the output: a second draw differs */
    assert_int_equal(ddpm_unet_forward(m, out2, ctx.x, t, NULL, N), DDPM_OK);
    assert_true(gc_max_abs_diff(out2, ctx.out, n) > 1e-3);
    fd_forward(&ctx);
    ddpm_unet_zero_grad(m);
    assert_int_equal(ddpm_unet_backward(m, proj), DDPM_OK);
    const char *names[] = {"down.0.block.0.conv1.weight", "down.0.block.0.conv2.weight",
                           "mid.block_2.norm2.weight", "up.0.block.1.temb_proj.weight"};
    gc_tensor ts[4];
    for (int i = 0; i < 4; i++) {
        const ddpm_param_info *p = ddpm_unet_find_param(m, names[i]);
        assert_non_null(p);
        ts[i] = (gc_tensor){names[i], ddpm_unet_params(m) + p->offset, ddpm_unet_grads(m) + p->offset, p->numel};
    }
    gc_check_opts("unet dropout=0.3", fd_forward, &ctx, ctx.out, n, proj, ts, 4, &UNET_GC);
    ddpm_free(ctx.x);
    ddpm_free(ctx.out);
    ddpm_free(proj);
    ddpm_free(out2);
    ddpm_unet_free(m);
}

static void test_bad_calls(void **state) {
    (void)state;
    ddpm_unet_config c;
    ddpm_unet_config_default(&c);
    c.num_classes = 10;
    c.ch = 8;
    c.groups = 4;
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, 0, true), DDPM_ERR_ARG);
    assert_null(m);
    assert_int_equal(ddpm_unet_create(&m, &c, 2, true), DDPM_OK);
    ddpm_unet_init_params(m, 1);
    float x[2 * 28 * 28] = {0}, out[2 * 28 * 28];
    int t[2] = {0, 5}, bad_labels[2] = {3, 11}, labels[2] = {3, 10};
    assert_int_equal(ddpm_unet_backward(m, out), DDPM_ERR_ARG); /* no forward yet */
    assert_int_equal(ddpm_unet_forward(m, out, x, t, labels, 3), DDPM_ERR_ARG);
    assert_int_equal(ddpm_unet_forward(m, out, x, t, bad_labels, 2), DDPM_ERR_ARG);
    assert_non_null(strstr(ddpm_last_error(), "label 11"));
    assert_int_equal(ddpm_unet_forward(m, x, x, t, labels, 2), DDPM_ERR_ARG); /* out overlaps x */
    assert_int_equal(ddpm_unet_forward(m, out, x, t, labels, 2), DDPM_OK);
    for (int i = 0; i < 2 * 28 * 28; i++) assert_true(isfinite(out[i]));
    ddpm_unet_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_model_size),
        cmocka_unit_test(test_config_name),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_largest_graph),
        cmocka_unit_test(test_matches_torch),
        cmocka_unit_test(test_matches_torch_conditional),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_matches_torch_default_shape),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_dropout_gradients),
        cmocka_unit_test(test_bad_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
