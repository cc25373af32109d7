/* test_resample.c: nearest x2 upsample, channel concat, per-(n, c) bias add:
 * exact forward values, gradient checks of every input, and the large
 * (OpenMP) paths against plain loops. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/resample.h"
#include "ddpm/common.h"
#include "ddpm/rng.h"
#include "gradcheck.h"

/* ---- upsample ------------------------------------------------------------- */

static void test_upsample_values(void **state) {
    (void)state;
    /* in (1, 2, 2, 3) = 1..12 */
    float in[12], out[48];
    for (int k = 0; k < 12; k++) in[k] = (float)(k + 1);
    ddpm_upsample2x_forward(out, in, 1, 2, 2, 3);
    const float want0[24] = {
        1, 1, 2, 2, 3, 3,
        1, 1, 2, 2, 3, 3,
        4, 4, 5, 5, 6, 6,
        4, 4, 5, 5, 6, 6,
    };
    for (int k = 0; k < 24; k++) {
        assert_float_equal(out[k], want0[k], 0);
        assert_float_equal(out[24 + k], want0[k] + 6, 0); /* second channel */
    }
    /* backward: each input pixel gets the sum of its 2x2 block, added to din */
    float dout[48], din[12];
    for (int k = 0; k < 48; k++) dout[k] = (float)k;
    for (int k = 0; k < 12; k++) din[k] = 100.0f;
    ddpm_upsample2x_backward(din, dout, 1, 2, 2, 3);
    /* pixel (c=0, h=0, w=0): dout[0] + dout[1] + dout[6] + dout[7] */
    assert_float_equal(din[0], 100 + 0 + 1 + 6 + 7, 0);
    /* pixel (c=1, h=1, w=2): out rows 2,3 cols 4,5 of plane 1 (offset 24) */
    assert_float_equal(din[11], 100 + (24 + 16) + (24 + 17) + (24 + 22) + (24 + 23), 0);
}

typedef struct {
    float *out, *in;
    int N, C, H, W;
} up_ctx;

static void up_fwd(void *p) {
    up_ctx *c = p;
    ddpm_upsample2x_forward(c->out, c->in, c->N, c->C, c->H, c->W);
}

static void test_upsample_gradcheck(void **state) {
    (void)state;
    int N = 2, C = 3, H = 3, W = 5;
    size_t nin = (size_t)N * C * H * W, nout = 4 * nin;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 5);
    up_ctx c = {gc_alloc(nout), gc_alloc(nin), N, C, H, W};
    float *proj = gc_alloc(nout), *din = gc_alloc(nin);
    gc_fill_normal(&rng, c.in, nin);
    gc_fill_normal(&rng, proj, nout);
    up_fwd(&c);
    ddpm_upsample2x_backward(din, proj, N, C, H, W);
    gc_tensor t[] = {{"input", c.in, din, nin}};
    gc_check("upsample2x N=2 C=3 H=3 W=5", up_fwd, &c, c.out, nout, proj, t, 1, GC_EPS, GC_TOL,
             GC_MAX_ELEMS);
    ddpm_free(c.out);
    ddpm_free(c.in);
    ddpm_free(proj);
    ddpm_free(din);
}

/* ---- concat ---------------------------------------------------------------- */

typedef struct {
    float *out, *a, *b;
    int N, CA, CB, HW;
} cat_ctx;

static void cat_fwd(void *p) {
    cat_ctx *c = p;
    ddpm_concat_forward(c->out, c->a, c->b, c->N, c->CA, c->CB, c->HW);
}

static void test_concat(void **state) {
    (void)state;
    int N = 3, CA = 2, CB = 5, HW = 7;
    size_t na = (size_t)N * CA * HW, nb = (size_t)N * CB * HW, nout = na + nb;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 6);
    cat_ctx c = {gc_alloc(nout), gc_alloc(na), gc_alloc(nb), N, CA, CB, HW};
    float *proj = gc_alloc(nout), *da = gc_alloc(na), *db = gc_alloc(nb);
    gc_fill_normal(&rng, c.a, na);
    gc_fill_normal(&rng, c.b, nb);
    gc_fill_normal(&rng, proj, nout);
    cat_fwd(&c);
    /* exact layout: out[n, c] = a[n, c] for c < CA, else b[n, c - CA] */
    for (int n = 0; n < N; n++)
        for (int ch = 0; ch < CA + CB; ch++)
            for (int i = 0; i < HW; i++) {
                float want = ch < CA ? c.a[(n * CA + ch) * HW + i] : c.b[(n * CB + ch - CA) * HW + i];
                assert_float_equal(c.out[(n * (CA + CB) + ch) * HW + i], want, 0);
            }
    ddpm_concat_backward(da, db, proj, N, CA, CB, HW);
    gc_tensor t[] = {{"a", c.a, da, na}, {"b", c.b, db, nb}};
    gc_check("concat N=3 CA=2 CB=5 HW=7", cat_fwd, &c, c.out, nout, proj, t, 2, GC_EPS, GC_TOL,
             GC_MAX_ELEMS);

    /* NULL halves are skipped; the other half still accumulates */
    float *db2 = gc_alloc(nb);
    for (size_t k = 0; k < nb; k++) db2[k] = 1.0f;
    ddpm_concat_backward(NULL, db2, proj, N, CA, CB, HW);
    for (size_t k = 0; k < nb; k++) assert_float_equal(db2[k], 1.0f + db[k], 1e-6f);
    float *da2 = gc_alloc(na);
    ddpm_concat_backward(da2, NULL, proj, N, CA, CB, HW);
    assert_memory_equal(da2, da, na * sizeof(float));

    /* concat_split overwrites (garbage before) with exactly the halves
     * concat_backward adds onto zeros; a NULL half is left untouched */
    float *da3 = gc_alloc(na), *db3 = gc_alloc(nb);
    for (size_t k = 0; k < na; k++) da3[k] = NAN;
    for (size_t k = 0; k < nb; k++) db3[k] = 7.0f;
    ddpm_concat_split(da3, NULL, proj, N, CA, CB, HW);
    assert_memory_equal(da3, da, na * sizeof(float));
    for (size_t k = 0; k < nb; k++) assert_float_equal(db3[k], 7.0f, 0);
    ddpm_concat_split(NULL, db3, proj, N, CA, CB, HW);
    assert_memory_equal(db3, db, nb * sizeof(float));
    float *all = gc_alloc(nout);
    for (size_t k = 0; k < nout; k++) all[k] = -1.0f;
    ddpm_concat_split(all, NULL, proj, N, CA + CB, 0, HW); /* CB = 0: a plain copy */
    assert_memory_equal(all, proj, nout * sizeof(float));

    float *bufs[] = {c.out, c.a, c.b, proj, da, db, db2, da2, da3, db3, all};
    for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++) ddpm_free(bufs[k]);
}

/* ---- bias add --------------------------------------------------------------- */

typedef struct {
    float *out, *in, *bias;
    int N, C, HW;
} bias_ctx;

static void bias_fwd(void *p) {
    bias_ctx *c = p;
    ddpm_add_bias_nc_forward(c->out, c->in, c->bias, c->N, c->C, c->HW);
}

static void test_bias_add(void **state) {
    (void)state;
    int N = 3, C = 5, HW = 9;
    size_t n = (size_t)N * C * HW;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 7);
    bias_ctx c = {gc_alloc(n), gc_alloc(n), gc_alloc((size_t)N * C), N, C, HW};
    float *proj = gc_alloc(n), *din = gc_alloc(n), *dbias = gc_alloc((size_t)N * C);
    gc_fill_normal(&rng, c.in, n);
    gc_fill_normal(&rng, c.bias, (size_t)N * C);
    gc_fill_normal(&rng, proj, n);
    bias_fwd(&c);
    for (int p = 0; p < N * C; p++)
        for (int i = 0; i < HW; i++)
            assert_float_equal(c.out[p * HW + i], c.in[p * HW + i] + c.bias[p], 0);
    ddpm_add_bias_nc_backward(din, dbias, proj, N, C, HW);
    gc_tensor t[] = {{"input", c.in, din, n}, {"bias", c.bias, dbias, (size_t)N * C}};
    gc_check("add_bias_nc N=3 C=5 HW=9", bias_fwd, &c, c.out, n, proj, t, 2, GC_EPS, GC_TOL,
             GC_MAX_ELEMS);

    /* in place (out == in) gives the same values */
    float *inplace = gc_alloc(n);
    memcpy(inplace, c.in, n * sizeof(float));
    ddpm_add_bias_nc_forward(inplace, inplace, c.bias, N, C, HW);
    assert_memory_equal(inplace, c.out, n * sizeof(float));

    /* NULL din: dbias still accumulates */
    float *dbias2 = gc_alloc((size_t)N * C);
    ddpm_add_bias_nc_backward(NULL, dbias2, proj, N, C, HW);
    assert_memory_equal(dbias2, dbias, (size_t)N * C * sizeof(float));

    /* both gradients accumulate onto what is there */
    float *din3 = gc_alloc(n), *dbias3 = gc_alloc((size_t)N * C);
    for (size_t k = 0; k < n; k++) din3[k] = 1.0f;
    for (int k = 0; k < N * C; k++) dbias3[k] = 1.0f;
    ddpm_add_bias_nc_backward(din3, dbias3, proj, N, C, HW);
    for (size_t k = 0; k < n; k++) assert_float_equal(din3[k], 1.0f + din[k], 1e-6f);
    for (int k = 0; k < N * C; k++) assert_float_equal(dbias3[k], 1.0f + dbias[k], 1e-5f);

    float *bufs[] = {c.out, c.in, c.bias, proj, din, dbias, inplace, dbias2, din3, dbias3};
    for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++) ddpm_free(bufs[k]);
}

/* ---- large sizes (the OpenMP paths) against plain loops ----------------------- */

static void test_large_against_loops(void **state) {
    (void)state;
    int N = 2, C = 64, H = 17, W = 19, HW = H * W, CB = 32;
    size_t nin = (size_t)N * C * HW, nup = 4 * nin, nb = (size_t)N * CB * HW;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 8);
    float *in = gc_alloc(nin), *up = gc_alloc(nup), *dup = gc_alloc(nup), *din = gc_alloc(nin);
    float *b = gc_alloc(nb), *cat = gc_alloc(nin + nb), *dcat = gc_alloc(nin + nb);
    float *da = gc_alloc(nin), *db = gc_alloc(nb);
    float *bias = gc_alloc((size_t)N * C), *dbias = gc_alloc((size_t)N * C), *sum = gc_alloc(nin);
    gc_fill_normal(&rng, in, nin);
    gc_fill_normal(&rng, dup, nup);
    gc_fill_normal(&rng, b, nb);
    gc_fill_normal(&rng, dcat, nin + nb);
    gc_fill_normal(&rng, bias, (size_t)N * C);

    ddpm_upsample2x_forward(up, in, N, C, H, W);
    ddpm_upsample2x_backward(din, dup, N, C, H, W);
    for (int p = 0; p < N * C; p++)
        for (int y = 0; y < 2 * H; y++)
            for (int x = 0; x < 2 * W; x++)
                assert_float_equal(up[((size_t)p * 2 * H + y) * 2 * W + x],
                                   in[((size_t)p * H + y / 2) * W + x / 2], 0);
    for (int p = 0; p < N * C; p++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                const float *d = dup + (size_t)p * 4 * HW;
                double want = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) want += d[(2 * y + dy) * 2 * W + 2 * x + dx];
                assert_float_equal(din[(size_t)p * HW + y * W + x], (float)want, 1e-5f);
            }

    ddpm_concat_forward(cat, in, b, N, C, CB, HW);
    ddpm_concat_backward(da, db, dcat, N, C, CB, HW);
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * (C + CB) * HW;
        assert_memory_equal(cat + o, in + (size_t)n * C * HW, (size_t)C * HW * sizeof(float));
        assert_memory_equal(cat + o + (size_t)C * HW, b + (size_t)n * CB * HW,
                            (size_t)CB * HW * sizeof(float));
        assert_memory_equal(da + (size_t)n * C * HW, dcat + o, (size_t)C * HW * sizeof(float));
        assert_memory_equal(db + (size_t)n * CB * HW, dcat + o + (size_t)C * HW,
                            (size_t)CB * HW * sizeof(float));
    }

    ddpm_add_bias_nc_forward(sum, in, bias, N, C, HW);
    ddpm_add_bias_nc_backward(NULL, dbias, in, N, C, HW);
    for (int p = 0; p < N * C; p++) {
        double want = 0;
        for (int i = 0; i < HW; i++) {
            assert_float_equal(sum[(size_t)p * HW + i], in[(size_t)p * HW + i] + bias[p], 0);
            want += in[(size_t)p * HW + i];
        }
        assert_float_equal(dbias[p], (float)want, 1e-4f);
    }

    float *bufs[] = {in, up, dup, din, b, cat, dcat, da, db, bias, dbias, sum};
    for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++) ddpm_free(bufs[k]);
}

/* Concat on the OpenMP path (>= 32768 elements) for shapes whose planes do
 * not split evenly between threads, one sample included: exact copies and
 * exact accumulation (+=) against plain loops. */
static void test_concat_large_shapes(void **state) {
    (void)state;
    const int shapes[][4] = {{1, 37, 90, 289}, {3, 7, 45, 227}, {5, 64, 1, 131}, {2, 1, 63, 400}};
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 21);
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        int N = shapes[k][0], CA = shapes[k][1], CB = shapes[k][2], HW = shapes[k][3];
        size_t na = (size_t)N * CA * HW, nb = (size_t)N * CB * HW, no = na + nb;
        assert_true(no >= 32768);
        float *a = gc_alloc(na), *b = gc_alloc(nb), *out = gc_alloc(no), *dout = gc_alloc(no);
        float *da = gc_alloc(na), *db = gc_alloc(nb);
        gc_fill_normal(&rng, a, na);
        gc_fill_normal(&rng, b, nb);
        gc_fill_normal(&rng, dout, no);
        for (size_t i = 0; i < na; i++) da[i] = 0.5f;
        for (size_t i = 0; i < nb; i++) db[i] = -0.25f;
        for (size_t i = 0; i < no; i++) out[i] = NAN; /* every element must be written */
        ddpm_concat_forward(out, a, b, N, CA, CB, HW);
        ddpm_concat_backward(da, db, dout, N, CA, CB, HW);
        for (int n = 0; n < N; n++)
            for (int c = 0; c < CA + CB; c++)
                for (int i = 0; i < HW; i++) {
                    size_t o = ((size_t)n * (CA + CB) + c) * HW + i;
                    if (c < CA) {
                        size_t j = ((size_t)n * CA + c) * HW + i;
                        assert_true(out[o] == a[j] && da[j] == 0.5f + dout[o]);
                    } else {
                        size_t j = ((size_t)n * CB + (c - CA)) * HW + i;
                        assert_true(out[o] == b[j] && db[j] == -0.25f + dout[o]);
                    }
                }
        float *bufs[] = {a, b, out, dout, da, db};
        for (size_t j = 0; j < sizeof bufs / sizeof *bufs; j++) ddpm_free(bufs[j]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upsample_values),
        cmocka_unit_test(test_upsample_gradcheck),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_bias_add),
        cmocka_unit_test(test_large_against_loops),
        cmocka_unit_test(test_concat_large_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
