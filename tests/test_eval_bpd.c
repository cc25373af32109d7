/* test_eval_bpd.c: the variational bound in bits/dim against the numpy
 * implementation of scripts/bpd_reference.py (tests/data/bpd_ref.fix), on
 * the tiny fixture UNet (tests/data/unet_tiny.fix) with T = 50, both
 * variances, to 1e-4 relative per term; closed-form checks of the prior
 * term and of a perfect predictor at small t; the decoder's outer bins.
 *
 * Regenerating the fixture (the eps predictions come from C, so numpy needs
 * no UNet):
 *   DDPM_BPD_DUMP=tests/data/bpd_in.fix build/test_eval_bpd
 *   /usr/bin/python3 scripts/bpd_reference.py   # reads bpd_in.fix, writes bpd_ref.fix
 */
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

#include "ddpm/common.h"
#include "ddpm/eval.h"
#include "ddpm/unet.h"
#include "fixture.h"

#define BT 50 /* timesteps */
#define BN 2  /* images */

static void load_fixture(fx_file *f, const char *name) {
    char path[1024], err[512];
    assert_int_equal(fx_data_path(path, sizeof path, name), 0);
    if (fx_load(f, path, err, sizeof err)) fail_msg("%s", err);
}

/* The tiny UNet of unet_tiny.fix with its parameters. */
static ddpm_unet *tiny_unet(int N) {
    fx_file f;
    load_fixture(&f, "unet_tiny.fix");
    ddpm_unet_config c = {0};
    double dropout = 0;
    assert_int_equal(fx_config_int(&f, "in_ch", &c.in_ch), 0);
    assert_int_equal(fx_config_int(&f, "res", &c.res), 0);
    assert_int_equal(fx_config_int(&f, "ch", &c.ch), 0);
    c.num_levels = fx_config_ints(&f, "ch_mult", c.ch_mult, DDPM_MAX_LEVELS);
    assert_int_equal(fx_config_int(&f, "num_res_blocks", &c.num_res_blocks), 0);
    c.num_attn = fx_config_ints(&f, "attn_res", c.attn_res, DDPM_MAX_LEVELS);
    assert_int_equal(fx_config_int(&f, "groups", &c.groups), 0);
    assert_int_equal(fx_config_double(&f, "dropout", &dropout), 0);
    assert_int_equal(fx_config_int(&f, "num_classes", &c.num_classes), 0);
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, N, false), DDPM_OK);
    int np;
    const ddpm_param_info *pt = ddpm_unet_param_table(m, &np);
    for (int i = 0; i < np; i++) {
        char key[96];
        snprintf(key, sizeof key, "param.%s", pt[i].name);
        const float *p = fx_f32(&f, key, pt[i].numel);
        if (!p) fail_msg("unet_tiny.fix lacks %s", key);
        memcpy(ddpm_unet_params(m) + pt[i].offset, p, pt[i].numel * sizeof(float));
    }
    fx_free(&f);
    return m;
}

/* The model call, recording every (noise, eps_hat) when rec is set. */
typedef struct {
    ddpm_unet *m;
    const ddpm_schedule *s;
    const float *x0;
    float *xt, *eps; /* (T, N, D) or NULL */
    size_t D;
} rec_ctx;

static ddpm_status rec_eps(void *p, float *eps, const float *x, const int *t, const int *labels, int N) {
    (void)labels;
    rec_ctx *c = p;
    ddpm_status st = ddpm_unet_forward(c->m, eps, x, t, NULL, N);
    if (st || !c->xt) return st;
    size_t off = (size_t)t[0] * N * c->D;
    memcpy(c->xt + off, x, (size_t)N * c->D * sizeof(float));
    memcpy(c->eps + off, eps, (size_t)N * c->D * sizeof(float));
    return DDPM_OK;
}

/* x0 (N, D): u8 levels scaled to [-1, 1], with 0 and 255 present (outer bins). */
static void make_x0(float *x0, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int u = (int)((i * 37 + (i / 7) * 11) % 256);
        if (i % 5 == 0) u = 0;
        if (i % 7 == 0) u = 255;
        x0[i] = (float)u / 127.5f - 1.0f;
    }
}

static void seed_rngs(ddpm_rng *r, int N) {
    for (int n = 0; n < N; n++) ddpm_rng_seed(&r[n], 1000 + (uint64_t)n);
}

/* ---- the fixture dump ------------------------------------------------------ */

static void put_entry(FILE *fp, const char *name, int dtype, int ndim, const int *dims, const void *data, size_t bytes) {
    uint16_t nl = (uint16_t)strlen(name);
    uint8_t dt = (uint8_t)dtype, nd = (uint8_t)ndim;
    fwrite(&nl, 2, 1, fp);
    fwrite(name, 1, nl, fp);
    fwrite(&dt, 1, 1, fp);
    fwrite(&nd, 1, 1, fp);
    for (int i = 0; i < ndim; i++) {
        uint32_t d = (uint32_t)dims[i];
        fwrite(&d, 4, 1, fp);
    }
    fwrite(data, 1, bytes, fp);
}

static void dump(const char *path) {
    ddpm_unet *m = tiny_unet(BN);
    size_t D = (size_t)ddpm_unet_cfg(m)->in_ch * ddpm_unet_cfg(m)->res * ddpm_unet_cfg(m)->res;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, BT), DDPM_OK);
    float *x0 = malloc(BN * D * sizeof(float)), *noise = malloc(BT * BN * D * sizeof(float));
    float *eps = malloc(BT * BN * D * sizeof(float)), *work = malloc(ddpm_bpd_workspace(BN, D) * sizeof(float));
    float *xt = malloc(BT * BN * D * sizeof(float));
    double terms[BN * (BT + 1)];
    make_x0(x0, BN * D);
    ddpm_rng rngs[BN];
    seed_rngs(rngs, BN);
    rec_ctx c = {m, &s, x0, xt, eps, D};
    assert_int_equal(ddpm_bpd_loop(terms, x0, BN, D, &s, DDPM_VAR_SMALL, rec_eps, &c, rngs, work, NULL, NULL), DDPM_OK);
    /* the noise as ddpm_bpd_loop draws it: t = T-1 first, image by image */
    seed_rngs(rngs, BN);
    for (int t = BT - 1; t >= 0; t--)
        for (int n = 0; n < BN; n++) ddpm_rng_fill_normal(&rngs[n], noise + ((size_t)t * BN + n) * D, D);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    char cfg[128];
    int len = snprintf(cfg, sizeof cfg, "T=%d\nN=%d\nD=%zu\nschedule=linear\n", BT, BN, D);
    uint32_t hdr[2] = {1, 5};
    fwrite("DDPMFIX", 1, 8, fp);
    fwrite(hdr, 4, 2, fp);
    put_entry(fp, "config", FX_TEXT, 1, &len, cfg, (size_t)len);
    int d2[2] = {BN, (int)D}, d3[3] = {BT, BN, (int)D};
    put_entry(fp, "x0", FX_F32, 2, d2, x0, BN * D * 4);
    put_entry(fp, "noise", FX_F32, 3, d3, noise, BT * BN * D * 4);
    put_entry(fp, "xt", FX_F32, 3, d3, xt, BT * BN * D * 4);
    put_entry(fp, "eps", FX_F32, 3, d3, eps, BT * BN * D * 4);
    fclose(fp);
    printf("wrote %s\n", path);
    free(x0), free(noise), free(eps), free(work), free(xt);
    ddpm_schedule_free(&s);
    ddpm_unet_free(m);
}

/* ---- tests ---------------------------------------------------------------- */

static void check_against_numpy(ddpm_var_kind var, const char *key) {
    fx_file f;
    load_fixture(&f, "bpd_ref.fix");
    ddpm_unet *m = tiny_unet(BN);
    size_t D = (size_t)ddpm_unet_cfg(m)->in_ch * ddpm_unet_cfg(m)->res * ddpm_unet_cfg(m)->res;
    const float *x0 = fx_f32(&f, "x0", BN * D), *eps_ref = fx_f32(&f, "eps", BT * BN * D);
    const float *want = fx_f32(&f, key, BN * (BT + 1));
    assert_non_null(x0);
    assert_non_null(eps_ref);
    assert_non_null(want);
    float mine[BN * 256];
    make_x0(mine, BN * D);
    assert_memory_equal(mine, x0, BN * D * sizeof(float)); /* same inputs as the dump */
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, BT), DDPM_OK);
    float *xt = malloc(BT * BN * D * sizeof(float)), *eps = malloc(BT * BN * D * sizeof(float));
    float *work = malloc(ddpm_bpd_workspace(BN, D) * sizeof(float));
    double terms[BN * (BT + 1)];
    ddpm_rng rngs[BN];
    seed_rngs(rngs, BN);
    rec_ctx c = {m, &s, x0, xt, eps, D};
    assert_int_equal(ddpm_bpd_loop(terms, x0, BN, D, &s, var, rec_eps, &c, rngs, work, NULL, NULL), DDPM_OK);
    double worst = 0;
    for (size_t i = 0; i < BT * BN * D; i++) worst = fmax(worst, fabs(eps[i] - eps_ref[i]));
    printf("%s: eps_hat max |C - dump| = %.3g\n", key, worst);
    assert_true(worst < 1e-4);
    double wt = 0, tot[BN] = {0}, want_tot[BN] = {0};
    for (int n = 0; n < BN; n++)
        for (int t = 0; t <= BT; t++) {
            double a = terms[n * (BT + 1) + t], b = want[n * (BT + 1) + t];
            tot[n] += a, want_tot[n] += b;
            double r = fabs(a - b) / fmax(fabs(b), 1e-12);
            if (r > wt) wt = r;
            if (!(r <= 1e-4)) fail_msg("%s image %d term %d: C %.9g numpy %.9g (rel %.3g)", key, n, t, a, b, r);
        }
    printf("%s: total bpd C %.6f %.6f numpy %.6f %.6f; worst term rel err %.3g\n", key, tot[0], tot[1], want_tot[0],
           want_tot[1], wt);
    free(xt), free(eps), free(work);
    ddpm_schedule_free(&s);
    ddpm_unet_free(m);
    fx_free(&f);
}

static void test_numpy_small(void **state) {
    (void)state;
    check_against_numpy(DDPM_VAR_SMALL, "terms.small");
}

static void test_numpy_large(void **state) {
    (void)state;
    check_against_numpy(DDPM_VAR_LARGE, "terms.large");
}

/* L_T in closed form for x0 = 0: KL(N(0, 1 - ab) || N(0, 1)) =
 * 0.5 (-1 - log(1 - ab) + 1 - ab) per element. */
static void test_prior_closed_form(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 10), DDPM_OK);
    float x0[8] = {0};
    double b[2];
    ddpm_prior_bpd(b, x0, &s, 2, 4);
    double ab = s.alpha_bar[9], want = 0.5 * (-log(1 - ab) - ab) / log(2.0);
    assert_true(fabs(b[0] - want) < 1e-15 && b[1] == b[0]);
    ddpm_schedule_free(&s);
}

/* With the true noise, the model's posterior mean is the true one (x0 in
 * [-1, 1] is not clipped), so every KL term is 0 (small variance), and
 * log(beta/post_var)-shaped for large; the decoder of a bin centre is close
 * to -log2 of the bin mass. */
static void test_perfect_predictor(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 100), DDPM_OK);
    const size_t D = 4;
    float x0[4] = {-1.0f, 1.0f, 0.2f, -0.6f}, eps[4] = {0.3f, -1.2f, 0.5f, 2.0f}, xt[4];
    for (int t = 1; t < 100; t += 7) {
        for (size_t i = 0; i < D; i++)
            xt[i] = (float)(s.sqrt_alpha_bar[t] * x0[i] + s.sqrt_one_minus_alpha_bar[t] * eps[i]);
        double b, bl;
        ddpm_vb_term_bpd(&b, x0, xt, eps, t, &s, DDPM_VAR_SMALL, 1, D);
        ddpm_vb_term_bpd(&bl, x0, xt, eps, t, &s, DDPM_VAR_LARGE, 1, D);
        assert_true(fabs(b) < 1e-6);
        double r = s.posterior_var[t] / s.beta[t];
        double want = 0.5 * (-1 - log(r) + r) / log(2.0); /* KL of variances only, lv2 - lv1 = -log r */
        if (!(fabs(bl - want) < 1e-6 * fmax(1, want))) fail_msg("t=%d large: %g want %g", t, bl, want);
    }
    ddpm_schedule_free(&s);
}

int main(void) {
    const char *dumpto = getenv("DDPM_BPD_DUMP");
    if (dumpto && *dumpto) {
        dump(dumpto);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prior_closed_form),
        cmocka_unit_test(test_perfect_predictor),
        cmocka_unit_test(test_numpy_small),
        cmocka_unit_test(test_numpy_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
