/* test_pipeline_edit.c: editing (docs/design.md §9) in the sampler driver and
 * the pipeline.
 *
 * - SDEdit at strength 1 is the plain draw, byte for byte, for every sampler
 *   (a real UNet through the pipeline); below 1 the start is
 *   sqrt(ab) x_init + sqrt(1 - ab) eps with eps the image's x_T draw.
 * - Inpainting: kept pixels come out equal to the input, u8 for u8, for every
 *   sampler, with and without resampling; the u8 -> float -> u8 round trip.
 * - Per-image determinism of every edit (SDEdit, RePaint with jumps, given
 *   latents) on the batch-invariant analytic model: batches and offsets do
 *   not change an image.
 * - DDIM inversion then DDIM decoding on the analytic Gaussian model: the
 *   library follows the exact affine map of both chains (written here), and
 *   that map is the identity within the stated tolerance.
 * - slerp's end points and norm; interpolation frames from seeds start at the
 *   seeds' own x_T. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/image.h"
#include "ddpm/pipeline.h"
#include "ddpm/sampler.h"
#include "gradcheck.h"

#define MU 0.1
#define SD 0.2
enum { DG = 32 }; /* elements per image of the analytic model */

/* The optimal eps for x0 ~ N(MU, SD^2 I) (as tests/test_sampler.c). */
static ddpm_status gauss_eps(void *p, float *eps, const float *x, const int *t, const int *labels, int N) {
    (void)labels;
    const ddpm_schedule *s = p;
    double ab = s->alpha_bar[t[0]], V = ab * SD * SD + 1.0 - ab;
    for (int j = 0; j < N * DG; j++) eps[j] = (float)(sqrt(1.0 - ab) * (x[j] - sqrt(ab) * MU) / V);
    return DDPM_OK;
}

static ddpm_pipeline *tiny_pipeline(int num_classes, int max_batch) {
    ddpm_unet_config c;
    memset(&c, 0, sizeof c);
    c.in_ch = 1, c.res = 8, c.ch = 8, c.ch_mult[0] = 1, c.ch_mult[1] = 2, c.num_levels = 2;
    c.num_res_blocks = 1, c.groups = 4, c.num_classes = num_classes;
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, 1, false), DDPM_OK);
    ddpm_unet_init_params(m, 5);
    ddpm_rng r; /* every parameter random, the output layer too */
    ddpm_rng_seed(&r, 6);
    float *w = ddpm_unet_params(m);
    for (size_t j = 0; j < ddpm_unet_num_params(m); j++) w[j] += 0.05f * ddpm_rng_normal(&r);
    ddpm_pipeline_model pm = {c, w, DDPM_SCHED_LINEAR, 50, DDPM_OBJ_EPS};
    ddpm_pipeline_opts po = {.max_batch = max_batch};
    ddpm_pipeline *p;
    assert_int_equal(ddpm_pipeline_create(&p, &pm, &po), DDPM_OK);
    ddpm_unet_free(m);
    return p;
}

static void random_u8(uint8_t *u, size_t n, uint64_t seed) {
    ddpm_rng r;
    ddpm_rng_seed(&r, seed);
    for (size_t j = 0; j < n; j++) u[j] = (uint8_t)ddpm_rng_below(&r, 256);
}

static const ddpm_sampler_kind KINDS[6] = {DDPM_SAMPLER_DDPM, DDPM_SAMPLER_DDIM, DDPM_SAMPLER_DPMPP_2M,
                                           DDPM_SAMPLER_EULER, DDPM_SAMPLER_HEUN, DDPM_SAMPLER_EULER_A};

/* ---- SDEdit ------------------------------------------------------------------------------ */

static void test_strength_one_is_plain(void **state) {
    (void)state;
    enum { N = 3, D = 64 };
    ddpm_pipeline *p = tiny_pipeline(0, 4);
    uint8_t init[2 * D], a[N * D], b[N * D];
    random_u8(init, sizeof init, 1);
    for (int k = 0; k < 6; k++) {
        ddpm_draw_opts o;
        ddpm_draw_opts_default(&o);
        o.sampler.kind = KINDS[k], o.sampler.steps = 6, o.seed = 11;
        o.sampler.churn = KINDS[k] == DDPM_SAMPLER_HEUN ? 1.0f : 0.0f;
        assert_int_equal(ddpm_pipeline_draw_u8(p, &o, 0, N, a), DDPM_OK);
        ddpm_edit_opts e = {.init = init, .n_init = 2, .per_image = 2, .strength = 1.0f};
        o.edit = &e;
        assert_int_equal(ddpm_pipeline_draw_u8(p, &o, 0, N, b), DDPM_OK);
        assert_memory_equal(a, b, sizeof a);
        e.strength = 0.5f; /* not the plain draw any more */
        assert_int_equal(ddpm_pipeline_draw_u8(p, &o, 0, N, b), DDPM_OK);
        assert_memory_not_equal(a, b, sizeof a);
        int K;
        assert_int_equal(ddpm_pipeline_check(p, &o, &K), DDPM_OK);
        assert_true(K < 6 && K >= 1);
        e.strength = 0.0f;
        assert_int_equal(ddpm_pipeline_check(p, &o, &K), DDPM_ERR_ARG);
        e.strength = 1.5f;
        assert_int_equal(ddpm_pipeline_check(p, &o, &K), DDPM_ERR_ARG);
    }
    ddpm_pipeline_free(p);
}

typedef struct {
    float x[2 * DG];
} start_grab;

static void grab_start(void *ud, int first, int N, int step, int K, const float *x) {
    (void)K;
    if (step == 0) memcpy(((start_grab *)ud)->x + (size_t)first * DG, x, (size_t)N * DG * sizeof(float));
}

/* The SDEdit start: sqrt(ab) x_init + sqrt(1 - ab) eps at the visited t <= ceil(S T) - 1. */
static void test_sdedit_start(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    float init[2 * DG], eps[2 * DG], out[2 * DG];
    for (int j = 0; j < 2 * DG; j++) init[j] = 0.03f * (float)(j % 17) - 0.2f;
    for (int i = 0; i < 2; i++) {
        ddpm_rng r;
        ddpm_rng_seed(&r, ddpm_sampler_image_seed(5, i));
        ddpm_rng_fill_normal(&r, eps + i * DG, DG);
    }
    ddpm_sampler_opts o = {DDPM_SAMPLER_DDIM, 50, 0.0f, 0, 0, 0.0f, 0};
    ddpm_sampler sm;
    assert_int_equal(ddpm_sampler_create(&sm, &s, &o, DG, 2), DDPM_OK);
    ddpm_sampler_edit e = {.x_init = init, .strength = 0.3f};
    int steps;
    assert_int_equal(ddpm_sampler_edit_steps(&sm, &e, &steps), DDPM_OK);
    int t = sm.tau[steps - 1]; /* the largest visited t at or below ceil(0.3 * 1000) - 1 = 299 */
    assert_true(t <= 299 && (steps == sm.K || sm.tau[steps] > 299));
    start_grab g;
    assert_int_equal(ddpm_sampler_run_edit(&sm, out, 0, 2, 5, NULL, gauss_eps, &s, grab_start, &g, &e), DDPM_OK);
    for (int j = 0; j < 2 * DG; j++)
        assert_true(g.x[j] == (float)(sqrt(s.alpha_bar[t]) * init[j] + sqrt(1.0 - s.alpha_bar[t]) * eps[j]));
    ddpm_sampler_destroy(&sm);
    ddpm_schedule_free(&s);
}

/* ---- inpainting ---------------------------------------------------------------------------- */

static void test_inpaint_keeps_pixels(void **state) {
    (void)state;
    for (int u = 0; u < 256; u++) { /* the pipeline's scaling and ddpm_image_to_u8 round-trip */
        float x = (float)u / 127.5f - 1.0f;
        uint8_t back;
        ddpm_image_to_u8(&back, &x, 1);
        assert_int_equal(back, u);
    }
    enum { D = 64, N = 4 };
    ddpm_pipeline *p = tiny_pipeline(3, 4);
    uint8_t init[2 * D], mask[D], out[N * D];
    random_u8(init, sizeof init, 2);
    for (int j = 0; j < D; j++) mask[j] = j / 8 >= 4; /* regenerate the lower half */
    for (int k = 0; k < 6; k++)
        for (int R = 0; R <= 2; R += 2) {
            if (R && KINDS[k] == DDPM_SAMPLER_DPMPP_2M) continue;
            ddpm_draw_opts o;
            ddpm_draw_opts_default(&o);
            o.sampler.kind = KINDS[k], o.sampler.steps = 5, o.seed = 3, o.guided = k == 1, o.guidance = 2.0f;
            ddpm_edit_opts e = {.init = init, .n_init = 2, .per_image = 2, .strength = 1.0f, .mask = mask, .resample = R};
            o.edit = &e;
            assert_int_equal(ddpm_pipeline_draw_u8(p, &o, 0, N, out), DDPM_OK);
            int changed = 0;
            for (int i = 0; i < N; i++)
                for (int j = 0; j < D; j++) {
                    if (!mask[j]) assert_int_equal(out[i * D + j], init[(i / 2) * D + j]);
                    else changed += out[i * D + j] != init[(i / 2) * D + j];
                }
            assert_true(changed > N * D / 4); /* the white half is regenerated */
        }
    ddpm_draw_opts o; /* resampling: not dpm++2m, not without a mask */
    ddpm_draw_opts_default(&o);
    ddpm_edit_opts e = {.init = init, .n_init = 2, .per_image = 1, .strength = 1.0f, .mask = mask, .resample = 1};
    o.edit = &e;
    o.sampler.kind = DDPM_SAMPLER_DPMPP_2M;
    assert_int_equal(ddpm_pipeline_check(p, &o, NULL), DDPM_ERR_ARG);
    o.sampler.kind = DDPM_SAMPLER_DDPM;
    e.mask = NULL;
    assert_int_equal(ddpm_pipeline_check(p, &o, NULL), DDPM_ERR_ARG);
    e.resample = 0, e.per_image = 0;
    assert_int_equal(ddpm_pipeline_check(p, &o, NULL), DDPM_ERR_ARG);
    ddpm_pipeline_free(p);
}

/* ---- per-image determinism ------------------------------------------------------------------- */

static void test_edit_streams(void **state) {
    (void)state;
    enum { N = 5 };
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 100), DDPM_OK);
    float init[N * DG], lat[N * DG], xa[N * DG], xb[N * DG], xc[2 * DG];
    uint8_t keep[DG];
    for (int j = 0; j < N * DG; j++) init[j] = 0.5f * sinf(0.37f * (float)j), lat[j] = cosf(0.11f * (float)j);
    for (int j = 0; j < DG; j++) keep[j] = j % 3 == 0;
    const ddpm_sampler_edit edits[4] = {{.x_init = init, .strength = 0.6f},
                                        {.x_init = init, .strength = 1.0f, .keep = keep, .resample = 2},
                                        {.x_init = init, .strength = 0.7f, .keep = keep},
                                        {.x_T = lat}};
    for (int k = 0; k < 6; k++)
        for (int m = 0; m < 4; m++) {
            if (m == 1 && KINDS[k] == DDPM_SAMPLER_DPMPP_2M) continue;
            ddpm_sampler_opts o = {KINDS[k], 8, 0.5f * (k == 1), DDPM_VAR_SMALL, 0, 1.5f * (k == 4), 0};
            ddpm_sampler a, b;
            assert_int_equal(ddpm_sampler_create(&a, &s, &o, DG, N), DDPM_OK);
            assert_int_equal(ddpm_sampler_create(&b, &s, &o, DG, 2), DDPM_OK);
            ddpm_sampler_edit e3 = edits[m]; /* images 3 and 4 alone: their own rows */
            if (e3.x_init) e3.x_init += 3 * DG;
            if (e3.x_T) e3.x_T += 3 * DG;
            assert_int_equal(ddpm_sampler_run_edit(&a, xa, 0, N, 42, NULL, gauss_eps, &s, NULL, NULL, &edits[m]), 0);
            assert_int_equal(ddpm_sampler_run_edit(&b, xb, 0, N, 42, NULL, gauss_eps, &s, NULL, NULL, &edits[m]), 0);
            assert_memory_equal(xa, xb, sizeof xa);
            assert_int_equal(ddpm_sampler_run_edit(&b, xc, 3, 2, 42, NULL, gauss_eps, &s, NULL, NULL, &e3), 0);
            assert_memory_equal(xa + 3 * DG, xc, sizeof xc);
            for (int j = 0; edits[m].keep && j < N * DG; j++)
                if (keep[j % DG]) assert_true(xa[j] == init[j]);
            ddpm_sampler_destroy(&a);
            ddpm_sampler_destroy(&b);
        }
    ddpm_schedule_free(&s);
}

/* ---- DDIM inversion ------------------------------------------------------------------------- */

/* eps of the analytic model at entry t as c1 x + c0. */
static void eps_coef(const ddpm_schedule *s, int t, double *c1, double *c0) {
    double ab = s->alpha_bar[t], V = ab * SD * SD + 1.0 - ab;
    *c1 = sqrt(1.0 - ab) / V, *c0 = -sqrt(1.0 - ab) * sqrt(ab) * MU / V;
}

/* The exact affine map x0 -> x0' of inversion then DDIM decoding (eta 0)
 * over tau[0..K): x = g x0 + k through both chains. */
static void roundtrip_map(const ddpm_schedule *s, const int *tau, int K, double *g, double *k) {
    double G = 1.0, B = 0.0, c1, c0;
    for (int i = 0; i < K; i++) { /* up: from t = -1 (x0) to tau[0], then tau[i] -> tau[i+1] */
        int from = i == 0 ? -1 : tau[i - 1], to = tau[i];
        eps_coef(s, i == 0 ? tau[0] : from, &c1, &c0);
        double sa = from >= 0 ? sqrt(s->alpha_bar[from]) : 1.0, sb = from >= 0 ? sqrt(1.0 - s->alpha_bar[from]) : 0.0;
        double na = sqrt(s->alpha_bar[to]), nb = sqrt(1.0 - s->alpha_bar[to]);
        double A = na / sa + (nb - na * sb / sa) * c1, C = (nb - na * sb / sa) * c0; /* x' = A x + C */
        G = A * G, B = A * B + C;
    }
    for (int i = K - 1; i >= 0; i--) { /* down: tau[i] -> tau[i-1] (-1 at the end) */
        int t = tau[i];
        double ab = s->alpha_bar[t], abp = i > 0 ? s->alpha_bar[tau[i - 1]] : 1.0;
        eps_coef(s, t, &c1, &c0);
        double sa = sqrt(ab), sb = sqrt(1.0 - ab), pa = sqrt(abp), pb = sqrt(1.0 - abp);
        double A = pa / sa + (pb - pa * sb / sa) * c1, C = (pb - pa * sb / sa) * c0;
        G = A * G, B = A * B + C;
    }
    *g = G, *k = B;
}

static void test_inversion(void **state) {
    (void)state;
    enum { N = 4 };
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    float x0[N * DG], x[N * DG];
    for (int j = 0; j < N * DG; j++) x0[j] = (float)(MU + SD * sin(0.7 * j));
    const int Ks[2] = {1000, 50};
    /* How far the round trip itself is from the identity is a property of
     * the discretisation, not of the code (inversion takes eps at the lower
     * end of each step, decoding at the upper end; this model's eps changes
     * fast at small t): the exact map above gives x0' = 0.98751 x0 + 0.00125
     * for K = 1000 and 0.7747 x0 + 0.0225 for K = 50. The bounds are those
     * maps' largest deviation over |x0| <= 0.3, rounded up. */
    const double ident_tol[2] = {3e-3, 5e-2};
    for (int r = 0; r < 2; r++) {
        ddpm_sampler_opts o = {DDPM_SAMPLER_DDIM, Ks[r], 0.0f, 0, 0, 0.0f, 0};
        ddpm_sampler sm;
        assert_int_equal(ddpm_sampler_create(&sm, &s, &o, DG, 3), DDPM_OK);
        memcpy(x, x0, sizeof x);
        assert_int_equal(ddpm_sampler_invert(&sm, x, N, NULL, gauss_eps, &s), DDPM_OK);
        ddpm_sampler_edit e = {.x_T = x};
        float y[N * DG];
        assert_int_equal(ddpm_sampler_run_edit(&sm, y, 0, N, 0, NULL, gauss_eps, &s, NULL, NULL, &e), DDPM_OK);
        double g, k, worst = 0.0, dev = 0.0;
        roundtrip_map(&s, sm.tau, sm.K, &g, &k);
        /* float rounding: 2 K steps, each a few roundings of values below
         * |x_T| ~ 4, shrunk by this contracting model: 8 K 2^-24 * 4 */
        double tol = 32.0 * sm.K * 0x1p-24;
        for (int j = 0; j < N * DG; j++) {
            worst = fmax(worst, fabs(y[j] - (g * x0[j] + k)));
            dev = fmax(dev, fabs(y[j] - x0[j]));
        }
        printf("  K=%4d: x0' = %.6f x0 %+.6f; max |x0' - x0| %.2e (stated %.0e); library vs map %.2e (tol %.1e)\n",
               sm.K, g, k, dev, ident_tol[r], worst, tol);
        assert_true(worst <= tol);
        assert_true(dev <= ident_tol[r]);
        ddpm_sampler_destroy(&sm);
    }
    ddpm_sampler_opts o = {DDPM_SAMPLER_DDPM, 10, 0.0f, 0, 0, 0.0f, 0};
    ddpm_sampler sm;
    assert_int_equal(ddpm_sampler_create(&sm, &s, &o, DG, 3), DDPM_OK);
    assert_int_equal(ddpm_sampler_invert(&sm, x, N, NULL, gauss_eps, &s), DDPM_ERR_ARG); /* ddim only */
    ddpm_sampler_destroy(&sm);
    ddpm_schedule_free(&s);
}

/* ---- slerp and interpolation ----------------------------------------------------------------- */

static void test_slerp_interp(void **state) {
    (void)state;
    float a[4] = {1, 0, 0, 0}, b[4] = {0, 1, 0, 0}, out[4];
    ddpm_slerp(out, a, b, 4, 0.0);
    assert_memory_equal(out, a, sizeof a);
    ddpm_slerp(out, a, b, 4, 1.0);
    assert_true(fabsf(out[1] - 1.0f) < 1e-6f && fabsf(out[0]) < 1e-6f);
    ddpm_slerp(out, a, b, 4, 0.5); /* on the circle, not the chord */
    assert_true(fabs(hypot(out[0], out[1]) - 1.0) < 1e-6 && fabsf(out[0] - out[1]) < 1e-6f);
    ddpm_slerp(out, a, a, 4, 0.3); /* theta = 0: linear, a itself */
    assert_memory_equal(out, a, sizeof a);
    enum { D = 64, F = 4 };
    ddpm_pipeline *p = tiny_pipeline(0, 8);
    ddpm_draw_opts o;
    ddpm_draw_opts_default(&o);
    o.sampler.kind = DDPM_SAMPLER_DDIM, o.sampler.steps = 5, o.seed = 9;
    float x[F * D], ref[D];
    ddpm_interp_opts io = {.seed_a = 9, .seed_b = 10, .frames = F};
    assert_int_equal(ddpm_pipeline_interp(p, &o, &io, x), DDPM_OK);
    assert_int_equal(ddpm_pipeline_draw(p, &o, 0, 1, ref), DDPM_OK); /* seed 9's image 0 */
    for (int j = 0; j < D; j++) assert_true(fabsf(x[j] - ref[j]) < 1e-4f); /* batched UNet: rounding only */
    o.seed = 10;
    assert_int_equal(ddpm_pipeline_draw(p, &o, 0, 1, ref), DDPM_OK);
    for (int j = 0; j < D; j++) assert_true(fabsf(x[(F - 1) * D + j] - ref[j]) < 1e-4f);
    uint8_t ia[D], ib[D];
    random_u8(ia, D, 4);
    random_u8(ib, D, 5);
    io = (ddpm_interp_opts){.a = ia, .b = ib, .frames = F};
    assert_int_equal(ddpm_pipeline_interp(p, &o, &io, x), DDPM_OK);
    io.frames = 1;
    assert_int_equal(ddpm_pipeline_interp(p, &o, &io, x), DDPM_ERR_ARG);
    o.sampler.kind = DDPM_SAMPLER_DDPM, io.frames = F;
    assert_int_equal(ddpm_pipeline_interp(p, &o, &io, x), DDPM_ERR_ARG);
    ddpm_pipeline_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strength_one_is_plain),
        cmocka_unit_test(test_sdedit_start),
        cmocka_unit_test(test_inpaint_keeps_pixels),
        cmocka_unit_test(test_edit_streams),
        cmocka_unit_test(test_inversion),
        cmocka_unit_test(test_slerp_interp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
