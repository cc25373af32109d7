/* test_eval_e2e.c: whole evaluation runs against independent computations.
 *
 * - test_protocol_numpy: ddpm_eval_ref_init on a test split and
 *   ddpm_eval_images on generated u8 images, with a classifier whose weights,
 *   and the images, come from tests/data/eval_e2e.fix; scripts/eval_reference.py
 *   computed every metric from the same network and images in float64 numpy
 *   (FID of the generated set against the whole test split, precision/recall
 *   k = 3 against the first min(n, test) test images). Tolerances are the
 *   script's, from the float32 error of the forward pass (see its docstring);
 *   the fixture's precision and recall are far apart, so swapping the real
 *   and generated sets fails, and using the whole test split for
 *   precision/recall or part of it for FID is told apart too (the script
 *   checks both). The same through ddpm_eval_load_images from IDX files;
 *   and the C code's features themselves within the script's error bound.
 * - test_bpd_stats: ddpm_eval_bpd's mean, standard error (sd over images /
 *   sqrt(n)) and per-term means against a two-pass recomputation from
 *   ddpm_bpd_loop's per-image terms over the same noise; the batch size
 *   does not change the result (beyond the UNet's rounding). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cliutil.h"
#include "ddpm/data.h"
#include "ddpm/eval.h"
#include "ddpm/pipeline.h"
#include "ddpm/rng.h"
#include "ddpm/unet.h"
#include "eval/clf_internal.h"
#include "fixture.h"

static fx_file load(void) {
    char path[1024], err[256];
    assert_int_equal(fx_data_path(path, sizeof path, "eval_e2e.fix"), 0);
    fx_file f;
    if (fx_load(&f, path, err, sizeof err)) fail_msg("%s", err);
    return f;
}

static double cfg_d(const fx_file *f, const char *key) {
    double v;
    if (fx_config_double(f, key, &v)) fail_msg("eval_e2e.fix: no '%s'", key);
    return v;
}

/* u8 images (n, 1, res, res) and labels from the fixture's float entries. */
static void images(const fx_file *f, const char *name, uint8_t **u8, int **labels, int *n, int res) {
    char key[64];
    snprintf(key, sizeof key, "%s.images", name);
    const fx_entry *im = fx_get(f, key, FX_F32);
    snprintf(key, sizeof key, "%s.labels", name);
    const fx_entry *lb = fx_get(f, key, FX_F32);
    assert_non_null(im);
    assert_non_null(lb);
    *n = im->dims[0];
    assert_int_equal(im->numel, (size_t)*n * res * res);
    assert_int_equal(lb->numel, (size_t)*n);
    *u8 = malloc(im->numel);
    *labels = malloc((size_t)*n * sizeof(int));
    for (size_t i = 0; i < im->numel; i++) (*u8)[i] = (uint8_t)((const float *)im->data)[i];
    for (int i = 0; i < *n; i++) (*labels)[i] = (int)((const float *)lb->data)[i];
}

/* A classifier holding the fixture's weights (by PyTorch name). */
static ddpm_classifier *classifier(const fx_file *f, int res, int K, int max_batch) {
    ddpm_clf_config c = {.in_ch = 1, .res = res, .num_classes = K};
    ddpm_classifier *m;
    assert_int_equal(ddpm_clf_create(&m, &c, max_batch, false), DDPM_OK);
    for (int i = 0; i < CLF_NPARAMS; i++) {
        char key[64];
        snprintf(key, sizeof key, "clf.%s", m->table[i].name);
        const float *w = fx_f32(f, key, m->table[i].numel);
        if (!w) fail_msg("eval_e2e.fix: no '%s' with %zu floats", key, m->table[i].numel);
        memcpy(ddpm_clf_params(m) + m->table[i].offset, w, m->table[i].numel * sizeof(float));
    }
    return m;
}

static void check_metrics(const ddpm_eval_metrics *m, const fx_file *f) {
    double fid = cfg_d(f, "fid"), p = cfg_d(f, "precision"), r = cfg_d(f, "recall");
    double ptol = cfg_d(f, "precision_tol"), rtol = cfg_d(f, "recall_tol");
    printf("fid %.9g (numpy %.9g +- %.3g) precision %g (%g +- %g) recall %g (%g +- %g) confidence %.9g (%.9g)\n",
           m->fid, fid, cfg_d(f, "fid_tol"), m->precision, p, ptol, m->recall, r, rtol, m->confidence,
           cfg_d(f, "confidence"));
    assert_int_equal(m->n_pr, (int)cfg_d(f, "n_pr"));
    assert_true(fabs(m->fid - fid) <= cfg_d(f, "fid_tol"));
    /* precision/recall are fractions of counts: equal up to the queries the
     * script found within the float32 error of their threshold */
    assert_true(fabs(m->precision - p) <= ptol + 1e-12);
    assert_true(fabs(m->recall - r) <= rtol + 1e-12);
    assert_true(fabs(p - r) > 2 * (ptol + rtol)); /* a swap of the two sets cannot pass */
    assert_true(fabs(m->confidence - cfg_d(f, "confidence")) <= cfg_d(f, "confidence_tol"));
    /* argmax margins exceed the float32 error (the script checks): exact */
    assert_true(fabs(m->class_entropy - cfg_d(f, "class_entropy")) < 1e-12);
    assert_true(fabs(m->label_accuracy - cfg_d(f, "label_accuracy")) < 1e-12);
}

static void test_protocol_numpy(void **state) {
    (void)state;
    fx_file f = load();
    int res = (int)cfg_d(&f, "res"), K = (int)cfg_d(&f, "num_classes"), nt, ng;
    uint8_t *tu8, *gu8;
    int *tl, *gl;
    images(&f, "test", &tu8, &tl, &nt, res);
    images(&f, "gen", &gu8, &gl, &ng, res);
    assert_true(ng < nt); /* precision/recall use a part of the test split */
    ddpm_dataset test = {.n = nt, .c = 1, .h = res, .w = res, .pixels = tu8, .labels = tl, .num_classes = K};
    const int batches[2] = {64, 7}; /* the embedding's batch must not matter beyond rounding */
    for (int b = 0; b < 2; b++) {
        ddpm_classifier *net = classifier(&f, res, K, batches[b]);
        /* the script's error bound holds for the C code's features (float32,
         * Winograd conv2) of the first 8 generated images */
        const float *want = fx_f32(&f, "gen.feats", 8 * DDPM_CLF_FEATURES);
        assert_non_null(want);
        float feats[8 * DDPM_CLF_FEATURES];
        assert_int_equal(ddpm_clf_embed(net, feats, NULL, gu8, 8), DDPM_OK);
        double worst = 0.0;
        for (int i = 0; i < 8; i++) {
            double e2 = 0.0;
            for (int j = 0; j < DDPM_CLF_FEATURES; j++) {
                double d = (double)feats[i * DDPM_CLF_FEATURES + j] - want[i * DDPM_CLF_FEATURES + j];
                e2 += d * d;
            }
            worst = fmax(worst, sqrt(e2));
        }
        printf("feature error %.3g (bound %.3g)\n", worst, cfg_d(&f, "feat_err"));
        assert_true(worst <= cfg_d(&f, "feat_err"));
        ddpm_eval_ref ref;
        assert_int_equal(ddpm_eval_ref_init(&ref, net, &test), DDPM_OK);
        ddpm_eval_metrics m;
        assert_int_equal(ddpm_eval_images(&m, &ref, gu8, ng, gl), DDPM_OK);
        assert_int_equal(m.n, ng);
        check_metrics(&m, &f);
        /* without labels: no label accuracy, the rest unchanged */
        ddpm_eval_metrics m2;
        assert_int_equal(ddpm_eval_images(&m2, &ref, gu8, ng, NULL), DDPM_OK);
        assert_true(m2.label_accuracy == -1.0 && m2.fid == m.fid && m2.precision == m.precision);
        /* the same images through IDX files */
        if (b == 0) {
            char dir[400], ip[500], lp[500];
            cli_tmpdir(dir, sizeof dir);
            snprintf(ip, sizeof ip, "%s/g.idx", dir);
            snprintf(lp, sizeof lp, "%s/g-labels.idx", dir);
            uint8_t *lab8 = malloc((size_t)ng);
            for (int i = 0; i < ng; i++) lab8[i] = (uint8_t)gl[i];
            assert_int_equal(ddpm_idx_write_images(ip, gu8, ng, 1, res, res), DDPM_OK);
            assert_int_equal(ddpm_idx_write(lp, lab8, 1, &ng), DDPM_OK);
            uint8_t *u8 = NULL;
            int *labels = NULL, n = 0;
            if (ddpm_eval_load_images(&u8, &labels, &n, ip, lp, &test)) fail_msg("%s", ddpm_last_error());
            assert_int_equal(n, ng);
            assert_memory_equal(u8, gu8, (size_t)ng * res * res);
            assert_memory_equal(labels, gl, (size_t)ng * sizeof(int));
            ddpm_eval_metrics m3;
            assert_int_equal(ddpm_eval_images(&m3, &ref, u8, n, labels), DDPM_OK);
            assert_true(m3.fid == m.fid && m3.precision == m.precision && m3.recall == m.recall &&
                        m3.label_accuracy == m.label_accuracy);
            /* -n takes the first n */
            free(u8), free(labels);
            n = 10;
            assert_int_equal(ddpm_eval_load_images(&u8, &labels, &n, ip, NULL, &test), DDPM_OK);
            assert_int_equal(n, 10);
            assert_null(labels);
            assert_memory_equal(u8, gu8, (size_t)10 * res * res);
            free(u8);
            free(lab8);
            cli_rmtree(dir);
        }
        ddpm_eval_ref_free(&ref);
        ddpm_clf_free(net);
    }
    free(tu8), free(tl), free(gu8), free(gl);
    fx_free(&f);
}

/* ---- bits/dim ------------------------------------------------------------------------ */

#define RES 8
#define NT 10

static ddpm_pipeline *tiny_pipeline(int max_batch) {
    ddpm_unet_config c = {.in_ch = 1, .res = RES, .ch = 8, .ch_mult = {1, 2}, .num_levels = 2, .num_res_blocks = 1,
                          .num_attn = 0, .groups = 4, .dropout = 0.0f, .num_classes = 0};
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, 1, false), DDPM_OK);
    ddpm_unet_init_params(m, 3);
    float *w = ddpm_unet_params(m);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 4);
    for (size_t i = 0; i < ddpm_unet_num_params(m); i++) w[i] += 0.05f * ddpm_rng_normal(&rng);
    ddpm_pipeline_model pm = {.cfg = c, .params = w, .schedule = DDPM_SCHED_LINEAR, .T = NT, .objective = DDPM_OBJ_EPS};
    ddpm_pipeline_opts o = {.max_batch = max_batch};
    ddpm_pipeline *p;
    assert_int_equal(ddpm_pipeline_create(&p, &pm, &o), DDPM_OK);
    ddpm_unet_free(m);
    return p;
}

static void test_bpd_stats(void **state) {
    (void)state;
    fx_file f = load();
    uint8_t *u8;
    int *lab, n;
    images(&f, "test", &u8, &lab, &n, RES);
    enum { N = 6 };
    const uint64_t seed = 3;
    ddpm_dataset ds = {.n = n, .c = 1, .h = RES, .w = RES, .pixels = u8, .labels = lab, .num_classes = 4};
    ddpm_pipeline *p = tiny_pipeline(64);
    const ddpm_schedule *s = ddpm_pipeline_schedule(p);
    for (int var = 0; var < 2; var++) {
        ddpm_bpd_result r, r2;
        assert_int_equal(ddpm_eval_bpd(&r, p, &ds, N, N, seed, (ddpm_var_kind)var, NULL, NULL), DDPM_OK);
        /* the per-image terms over the same noise (image i's stream, bpd.c) in one batch */
        double terms[N * (NT + 1)];
        float x0[N * RES * RES], *work = malloc(ddpm_bpd_workspace(N, RES * RES) * sizeof(float));
        ddpm_rng rngs[N];
        int idx[N];
        for (int i = 0; i < N; i++) {
            idx[i] = i;
            ddpm_rng_seed(&rngs[i], seed ^ (0xd1b54a32d192ed03ULL * ((uint64_t)i + 1)));
        }
        ddpm_dataset_to_float(x0, &ds, idx, N);
        assert_int_equal(ddpm_bpd_loop(terms, x0, N, RES * RES, s, (ddpm_var_kind)var, ddpm_pipeline_eps, p, rngs,
                                       work, NULL, NULL),
                         DDPM_OK);
        free(work);
        /* two passes: the mean of the totals, then their sample sd */
        double tot[N], mean = 0.0, ss = 0.0, col[NT + 1] = {0};
        for (int i = 0; i < N; i++) {
            tot[i] = 0.0;
            for (int t = 0; t <= NT; t++) tot[i] += terms[i * (NT + 1) + t], col[t] += terms[i * (NT + 1) + t] / N;
            mean += tot[i] / N;
        }
        for (int i = 0; i < N; i++) ss += (tot[i] - mean) * (tot[i] - mean);
        double se = sqrt(ss / (N - 1)) / sqrt((double)N);
        printf("var %d: bpd %.12g (recomputed %.12g) stderr %.6g (%.6g)\n", var, r.bpd, mean, r.bpd_stderr, se);
        assert_int_equal(r.n, N);
        assert_int_equal(r.T, NT);
        assert_true(se > 1e-3 * mean); /* images differ: a standard error that can be wrong */
        /* the one-pass variance loses about mean^2 / var * 1e-16 relative */
        assert_true(fabs(r.bpd - mean) <= 1e-12 * mean);
        assert_true(fabs(r.bpd_stderr - se) <= 1e-9 * se + 1e-12 * mean);
        double kl = 0.0;
        for (int t = 0; t <= NT; t++) assert_true(fabs(r.terms[t] - col[t]) <= 1e-12 * fabs(col[t]) + 1e-15);
        for (int t = 1; t < NT; t++) kl += col[t];
        assert_true(fabs(r.prior - col[NT]) <= 1e-12 * col[NT]);
        assert_true(fabs(r.decoder - col[0]) <= 1e-12 * col[0]);
        assert_true(fabs(r.kl - kl) <= 1e-12 * kl);
        assert_true(fabs(r.prior + r.decoder + r.kl - r.bpd) <= 1e-12 * r.bpd);
        /* batches of 4 (6 = 4 + 2): the same images and noise; the UNet's batch
         * rounding (see test_pipeline.c) moves eps by ~1e-7 relative */
        assert_int_equal(ddpm_eval_bpd(&r2, p, &ds, N, 4, seed, (ddpm_var_kind)var, NULL, NULL), DDPM_OK);
        assert_true(fabs(r2.bpd - r.bpd) <= 1e-5 * r.bpd);
        assert_true(fabs(r2.bpd_stderr - r.bpd_stderr) <= 1e-3 * r.bpd_stderr);
        ddpm_bpd_result_free(&r2);
        /* another seed, other noise: another value */
        assert_int_equal(ddpm_eval_bpd(&r2, p, &ds, N, N, seed + 1, (ddpm_var_kind)var, NULL, NULL), DDPM_OK);
        assert_true(fabs(r2.bpd - r.bpd) > 1e-4 * r.bpd);
        ddpm_bpd_result_free(&r2);
        ddpm_bpd_result_free(&r);
    }
    ddpm_pipeline_free(p);
    free(u8), free(lab);
    fx_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protocol_numpy),
        cmocka_unit_test(test_bpd_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
