/* test_train.c: what a training step computes, checked against closed forms
 * and an independent reference, and resume across an epoch
 * boundary.
 *
 * The reference of step k (0-based) redraws the step's timesteps, noise and
 * label drops from a replica of the trainer's generator (the second split of
 * the seed's generator, train.c), runs a second UNet holding the trainer's
 * parameters for the gradient, and then, in double precision from the
 * trainer's state before the step (read back from a checkpoint):
 *   clip      g <- g * c/(|g| + 1e-6) when that factor is < 1 (torch's clip_grad_norm_)
 *   lr_k      lr (k+1)/warmup for k < warmup, then lo + (lr - lo)(1 + cos(pi p))/2,
 *             p = (k - warmup)/(iters - 1 - warmup), lo = lr * min_lr_ratio
 *   AdamW     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *             p = p (1 - lr_k wd) - lr_k/(1-b1^(k+1)) * m / (sqrt(v)/sqrt(1-b2^(k+1)) + 1e-8)
 *   EMA       d_k = min(ema_decay, (1+k)/(10+k));  e = d_k e + (1-d_k) p
 * and compares the trainer's stats (loss, gradient norm, lr), gradients,
 * moments, parameters and EMA with it. The label-drop frequency comes from
 * the same replica: the trainer's loss equals the reference loss only with
 * exactly the replica's drops (and differs without them).
 *
 * The same reference with the v / x0 targets and min-SNR-gamma weights from
 * their closed forms checks the objectives (test_steps_objectives); with
 * eps unweighted the loss must equal the plain L_simple step's to the bit.
 *
 * The trainer API (the loop on attached data, exact resume through
 * save/resume, checkpoint metadata checked value by value: a bad value names
 * the file and the key) is checked by test_resume_exact, test_bad_metadata
 * and test_data_mismatch.
 *
 * The epoch-boundary resume test runs `ddpm train` straight for N iterations and as
 * --stop-after k then --resume, on a dataset of 12 images with batch 4 (3
 * iterations per epoch), stopping inside epoch 2 and exactly at an epoch
 * end: the checkpoints must be the same bytes, and the stopped one must
 * carry data_epoch > 0.
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

#include "cliutil.h"
#include "ddpm/checkpoint.h"
#include "ddpm/data.h"
#include "ddpm/diffusion.h"
#include "ddpm/loss.h"
#include "ddpm/train.h"
#include "gradcheck.h"

enum { DS_N = 24, DS_S = 8 };
static char g_dir[256], g_ck[400];
static uint8_t g_px[DS_N * DS_S * DS_S];
static int g_lab[DS_N];
static ddpm_dataset g_ds = {.n = DS_N, .c = 1, .h = DS_S, .w = DS_S, .pixels = g_px, .labels = g_lab, .num_classes = 3};

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    for (int i = 0; i < DS_N * DS_S * DS_S; i++) g_px[i] = (uint8_t)(i * 29 % 251);
    for (int i = 0; i < DS_N; i++) g_lab[i] = i % 3;
    snprintf(g_ck, sizeof g_ck, "%s/half.safetensors", g_dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

/* A tiny class-conditional UNet (8x8, ch 8, two levels, attention at 4x4,
 * dropout 0.1) and a short run. */
static void tiny_api(ddpm_train_config *c) {
    ddpm_train_config_default(c);
    c->model = (ddpm_unet_config){.in_ch = 1, .res = DS_S, .ch = 8, .ch_mult = {1, 2}, .num_levels = 2,
                                  .num_res_blocks = 1, .attn_res = {4}, .num_attn = 1, .groups = 4,
                                  .num_classes = 3, .dropout = 0.1f};
    c->T = 20, c->batch = 5, c->iters = 6, c->warmup = 1, c->seed = 11;
    c->objective = DDPM_OBJ_EPS, c->snr_gamma = 0.0f; /* L_simple; test_steps_objectives: the others */
    c->precision = DDPM_PREC_FP32; /* the references are float32 (the default is bf16 on some CPUs) */
}

/* The same model for the reference-step tests: num_classes as given, no
 * dropout (the reference does not replay dropout masks). */
static void tiny_config(ddpm_train_config *c, int num_classes, int batch) {
    tiny_api(c);
    c->model.num_classes = num_classes;
    c->model.dropout = 0.0f;
    c->batch = batch;
    c->seed = 12345;
}

/* ---- the trainer's state, through a checkpoint ------------------------------------ */

typedef struct {
    size_t n;
    float *p, *m, *v, *ema;
} train_state;

static void state_alloc(train_state *s, size_t n) {
    s->n = n;
    s->p = gc_alloc(n);
    s->m = gc_alloc(n);
    s->v = gc_alloc(n);
    s->ema = gc_alloc(n);
}

static void state_free(train_state *s) {
    ddpm_free(s->p);
    ddpm_free(s->m);
    ddpm_free(s->v);
    ddpm_free(s->ema);
}

/* The one call whose signature the trainer API may change. */
static void save_ckpt(const ddpm_trainer *tr, const char *path) {
    if (ddpm_trainer_save(tr, path)) fail_msg("save: %s", ddpm_last_error());
}

static void snapshot(const ddpm_trainer *tr, train_state *s) {
    char path[400];
    snprintf(path, sizeof path, "%s/snap.safetensors", g_dir);
    save_ckpt(tr, path);
    ddpm_checkpoint ck;
    if (ddpm_checkpoint_open(&ck, path)) fail_msg("open: %s", ddpm_last_error());
    assert_int_equal(ck.total, s->n);
    assert_true(ck.has_adam);
    assert_int_equal(ddpm_checkpoint_read(&ck, "", s->p), DDPM_OK);
    assert_int_equal(ddpm_checkpoint_read(&ck, "adam_m.", s->m), DDPM_OK);
    assert_int_equal(ddpm_checkpoint_read(&ck, "adam_v.", s->v), DDPM_OK);
    if (ck.has_ema) assert_int_equal(ddpm_checkpoint_read(&ck, "ema.", s->ema), DDPM_OK);
    else memcpy(s->ema, s->p, s->n * sizeof(float));
    ddpm_checkpoint_close(&ck);
}

/* ---- closed forms ----------------------------------------------------------------- */

static double ref_lr(const ddpm_train_config *c, int64_t k) {
    if (k < c->warmup) return (double)c->lr * (double)(k + 1) / (double)c->warmup;
    if (c->decay == DDPM_LR_CONSTANT) return c->lr;
    double p = (double)(k - c->warmup) / (double)(c->iters - 1 - c->warmup);
    if (p > 1.0) p = 1.0;
    double lo = (double)c->lr * (double)c->min_lr_ratio;
    return lo + ((double)c->lr - lo) * 0.5 * (1.0 + cos(3.14159265358979323846 * p));
}

static double ref_ema_decay(const ddpm_train_config *c, int64_t k) {
    if (c->ema_gamma > 0.0f) return k == 0 ? 0.0 : pow(1.0 - 1.0 / (double)(k + 1), (double)c->ema_gamma + 1.0);
    double d = (1.0 + (double)k) / (10.0 + (double)k);
    return d < (double)c->ema_decay ? d : (double)c->ema_decay;
}

/* max_i |a[i] - ref[i]| / max_i |ref[i]|, NaN-safe (NaN gives INFINITY). */
static double rel_err_d(const float *a, const double *ref, size_t n) {
    double scale = 0.0, err = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= err)) err = isnan(d) ? INFINITY : d;
    }
    return scale > 0.0 ? err / scale : err;
}

/* ---- the reference step ---------------------------------------------------------- */

typedef struct {
    const ddpm_train_config *c;
    ddpm_unet *model; /* same config, holds the trainer's parameters before the step */
    ddpm_rng rng;     /* replica of the trainer's step generator */
    size_t D, n;      /* pixels per image, parameters */
    float *xt, *eps, *pred, *dpred;
    int *t, *labels;
    int drops;        /* labels dropped so far */
} ref_ctx;

static void ref_init(ref_ctx *r, const ddpm_train_config *c) {
    memset(r, 0, sizeof *r);
    r->c = c;
    assert_int_equal(ddpm_unet_create(&r->model, &c->model, c->batch, true), DDPM_OK);
    r->n = ddpm_unet_num_params(r->model);
    ddpm_rng root;
    ddpm_rng_seed(&root, c->seed);
    (void)ddpm_rng_split(&root); /* parameter init */
    r->rng = ddpm_rng_split(&root);
    r->D = (size_t)c->model.in_ch * c->model.res * c->model.res;
    size_t nb = (size_t)c->batch * r->D;
    r->xt = gc_alloc(nb);
    r->eps = gc_alloc(nb);
    r->pred = gc_alloc(nb);
    r->dpred = gc_alloc(nb);
    r->t = calloc((size_t)c->batch, sizeof(int));
    r->labels = calloc((size_t)c->batch, sizeof(int));
}

static void ref_free(ref_ctx *r) {
    ddpm_unet_free(r->model);
    ddpm_free(r->xt);
    ddpm_free(r->eps);
    ddpm_free(r->pred);
    ddpm_free(r->dpred);
    free(r->t);
    free(r->labels);
}

/* The v / x0 target and the min-SNR-gamma weights from their closed forms
 * (a = sqrt(ab), b = sqrt(1 - ab), SNR = ab / (1 - ab)):
 *   v = a eps - b x0;  w = min(SNR, g)/SNR (eps), min(SNR, g)/(SNR + 1) (v), min(SNR, g) (x0)
 * and the weighted l2 loss sum_n w_n sum_j (p - y)^2 / (B D) with its gradient
 * in r->dpred (l1 and huber only unweighted, through ddpm_loss). */
static double ref_objective_loss(ref_ctx *r, const float *x0, const ddpm_schedule *sched) {
    const ddpm_train_config *c = r->c;
    size_t D = r->D, nb = (size_t)c->batch * D;
    float *y = gc_alloc(nb);
    double g = (double)c->snr_gamma, sum = 0.0, inv = 1.0 / (double)nb;
    for (int n = 0; n < c->batch; n++) {
        double ab = sched->alpha_bar[r->t[n]], a = sqrt(ab), b = sqrt(1.0 - ab), snr = ab / (1.0 - ab);
        for (size_t j = n * D; j < (n + 1) * D; j++)
            y[j] = c->objective == DDPM_OBJ_V ? (float)(a * r->eps[j] - b * x0[j])
                   : c->objective == DDPM_OBJ_X0 ? x0[j] : r->eps[j];
        if (g == 0.0) continue;
        double m = fmin(snr, g), w = c->objective == DDPM_OBJ_V ? m / (snr + 1.0) : c->objective == DDPM_OBJ_X0 ? m : m / snr;
        assert_int_equal(c->loss, DDPM_LOSS_L2);
        double row = 0.0;
        for (size_t j = n * D; j < (n + 1) * D; j++) {
            double d = (double)(r->pred[j] - y[j]);
            row += d * d;
            r->dpred[j] = (float)(w * 2.0 * d * inv);
        }
        sum += w * row;
    }
    double loss = g == 0.0 ? ddpm_loss(r->dpred, r->pred, y, nb, c->loss) : sum * inv;
    ddpm_free(y);
    return loss;
}

/* The loss and (unclipped) gradient of the step on x0 from the parameters
 * p; drop = false keeps every label (the control). Leaves the gradient in
 * ddpm_unet_grads(r->model). */
static double ref_grad(ref_ctx *r, const float *p, const float *x0, const int *labels, bool drop,
                       const ddpm_schedule *sched) {
    const ddpm_train_config *c = r->c;
    memcpy(ddpm_unet_params(r->model), p, r->n * sizeof(float));
    ddpm_sample_timesteps(r->t, c->batch, c->T, &r->rng);
    ddpm_rng_fill_normal(&r->rng, r->eps, (size_t)c->batch * r->D);
    ddpm_q_sample(r->xt, x0, r->eps, r->t, sched, c->batch, r->D);
    const int *lab = NULL;
    if (c->model.num_classes > 0 && labels) {
        for (int i = 0; i < c->batch; i++) {
            bool d = ddpm_rng_uniform(&r->rng) < c->cond_drop;
            r->labels[i] = d && drop ? c->model.num_classes : labels[i];
            r->drops += d;
        }
        lab = r->labels;
    }
    assert_int_equal(ddpm_unet_forward(r->model, r->pred, r->xt, r->t, lab, c->batch), DDPM_OK);
    double loss = c->objective == DDPM_OBJ_EPS && c->snr_gamma == 0.0f
                      ? ddpm_loss(r->dpred, r->pred, r->eps, (size_t)c->batch * r->D, c->loss)
                      : ref_objective_loss(r, x0, sched);
    ddpm_unet_zero_grad(r->model);
    assert_int_equal(ddpm_unet_backward(r->model, r->dpred), DDPM_OK);
    return loss;
}

/* Clip (torch's rule) and AdamW + EMA in double from the state s0 at step k;
 * results in g (clipped), m, v, p, e (all n). Returns the norm. */
static double ref_update(const ddpm_train_config *c, int64_t k, const float *grad, const train_state *s0,
                         double *g, double *m, double *v, double *p, double *e) {
    size_t n = s0->n;
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)grad[i] * (double)grad[i];
    double norm = sqrt(ss), coef = (double)c->clip / (norm + 1e-6);
    if (!(c->clip > 0.0f) || coef >= 1.0) coef = 1.0;
    /* the trainer's AdamW constants are floats (optim.h): use their values */
    double lr = ref_lr(c, k), b1 = (double)0.9f, b2 = (double)0.999f, t = (double)(k + 1);
    double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t), d = ref_ema_decay(c, k);
    for (size_t i = 0; i < n; i++) {
        g[i] = (double)grad[i] * coef;
        m[i] = b1 * (double)s0->m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * (double)s0->v[i] + (1.0 - b2) * g[i] * g[i];
        p[i] = (double)s0->p[i] * (1.0 - lr * (double)c->weight_decay) -
               lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + (double)1e-8f);
        e[i] = c->ema_decay > 0.0f ? d * (double)s0->ema[i] + (1.0 - d) * p[i] : p[i];
    }
    return norm;
}

/* ---- the step test ----------------------------------------------------------------- */

typedef struct {
    double *g, *m, *v, *p, *e, *dp;
} ref_vecs;

static ref_vecs vecs_alloc(size_t n) {
    ref_vecs r = {calloc(n, 8), calloc(n, 8), calloc(n, 8), calloc(n, 8), calloc(n, 8), calloc(n, 8)};
    assert_true(r.g && r.m && r.v && r.p && r.e && r.dp);
    return r;
}

static void vecs_free(ref_vecs *r) {
    free(r->g);
    free(r->m);
    free(r->v);
    free(r->p);
    free(r->e);
    free(r->dp);
}

static void fill_batch(float *x0, int *labels, const ddpm_train_config *c, size_t D, uint64_t seed) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    ddpm_rng_fill_uniform(&rng, x0, (size_t)c->batch * D, -1.0f, 1.0f);
    for (int i = 0; i < c->batch; i++)
        labels[i] = c->model.num_classes > 0 ? (int)ddpm_rng_below(&rng, (uint32_t)c->model.num_classes) : 0;
}

/* Compares the trainer after step k (state s1, stats st, its gradient buffer)
 * with the reference vectors. */
static void compare_step(const char *what, int64_t k, const train_state *s0, const train_state *s1,
                         const ref_vecs *r, const float *tgrad, const ddpm_train_stats *st, double norm,
                         double loss) {
    size_t n = s1->n;
    if (!(fabs(st->loss - loss) <= 1e-12 * fabs(loss)))
        fail_msg("%s step %lld: loss %.17g, reference %.17g", what, (long long)k, st->loss, loss);
    if (!(fabs(st->grad_norm - norm) <= 1e-9 * norm))
        fail_msg("%s step %lld: grad norm %.17g, reference %.17g", what, (long long)k, st->grad_norm, norm);
    double eg = rel_err_d(tgrad, r->g, n), em = rel_err_d(s1->m, r->m, n), ev = rel_err_d(s1->v, r->v, n);
    for (size_t i = 0; i < n; i++) r->dp[i] = r->p[i] - (double)s0->p[i];
    /* p1 and EMA against the reference, less the float rounding of the stored
     * value (2^-23 of it), relative to the largest update (the values
     * themselves would hide an error far below their own size) */
    double scale = 0.0, ep = 0.0, ee = 0.0, escale = 0.0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(r->dp[i]));
        double d = fabs((double)s1->p[i] - r->p[i]) - 0x1p-23 * fabs(r->p[i]);
        ep = d > ep || isnan(d) ? (isnan(d) ? INFINITY : d) : ep;
        escale = fmax(escale, fabs(r->e[i] - (double)s0->ema[i]));
        d = fabs((double)s1->ema[i] - r->e[i]) - 0x1p-23 * fabs(r->e[i]);
        ee = d > ee || isnan(d) ? (isnan(d) ? INFINITY : d) : ee;
    }
    ep /= scale;
    ee /= escale;
    printf("%s step %lld: lr %.6g loss %.6f |g| %.4g  rel err: grad %.2g m %.2g v %.2g dp %.2g dema %.2g\n", what,
           (long long)k, (double)st->lr, loss, norm, eg, em, ev, ep, ee);
    if (!(eg <= 1e-6)) fail_msg("%s step %lld: clipped gradient rel err %.3g", what, (long long)k, eg);
    if (!(em <= 1e-5)) fail_msg("%s step %lld: Adam m rel err %.3g", what, (long long)k, em);
    if (!(ev <= 1e-5)) fail_msg("%s step %lld: Adam v rel err %.3g", what, (long long)k, ev);
    if (!(ep <= 1e-4)) fail_msg("%s step %lld: parameter update rel err %.3g", what, (long long)k, ep);
    if (!(ee <= 1e-4)) fail_msg("%s step %lld: EMA update rel err %.3g", what, (long long)k, ee);
}

/* Runs `steps` trainer steps on cfg, each against the reference. */
static void check_steps(const char *what, const ddpm_train_config *cfg, int steps, int *drops_out) {
    ddpm_trainer *tr;
    if (ddpm_trainer_create(&tr, cfg)) fail_msg("create: %s", ddpm_last_error());
    ref_ctx r;
    ref_init(&r, cfg);
    size_t n = r.n;
    train_state s0, s1;
    state_alloc(&s0, n);
    state_alloc(&s1, n);
    ref_vecs v = vecs_alloc(n);
    float *x0 = gc_alloc((size_t)cfg->batch * r.D);
    int *labels = calloc((size_t)cfg->batch, sizeof(int));
    snapshot(tr, &s0);
    /* a fresh trainer: zero moments, EMA = parameters */
    assert_true(gc_max_abs(s0.m, n) == 0.0 && gc_max_abs(s0.v, n) == 0.0);
    assert_memory_equal(s0.ema, s0.p, n * sizeof(float));
    for (int k = 0; k < steps; k++) {
        fill_batch(x0, labels, cfg, r.D, 1000 + (uint64_t)k);
        ddpm_rng before = r.rng;
        double loss = ref_grad(&r, s0.p, x0, labels, true, ddpm_trainer_schedule(tr));
        ddpm_train_stats st;
        assert_int_equal(ddpm_trainer_step(tr, x0, cfg->model.num_classes ? labels : NULL, &st), DDPM_OK);
        assert_int_equal(ddpm_trainer_step_count(tr), k + 1);
        double ref_lr_k = ref_lr(cfg, k);
        if (!(fabs((double)st.lr - ref_lr_k) <= 1e-6 * ref_lr_k))
            fail_msg("%s step %d: lr %.9g, closed form %.9g", what, k, (double)st.lr, ref_lr_k);
        double norm = ref_update(cfg, k, ddpm_unet_grads(r.model), &s0, v.g, v.m, v.v, v.p, v.e);
        snapshot(tr, &s1);
        /* eps unweighted: the plain L_simple step, to the bit */
        if (cfg->objective == DDPM_OBJ_EPS && cfg->snr_gamma == 0.0f && st.loss != loss)
            fail_msg("%s step %d: loss %.17g, the plain L_simple step's %.17g", what, k, st.loss, loss);
        compare_step(what, k, &s0, &s1, &v, ddpm_unet_grads(ddpm_trainer_model(tr)), &st, norm, loss);
        assert_memory_equal(ddpm_trainer_ema(tr), s1.ema, n * sizeof(float));
        if (cfg->model.num_classes > 0 && cfg->cond_drop > 0.0f && cfg->cond_drop < 1.0f) {
            /* the control: without the drops the loss differs, so the match above means
             * the trainer dropped exactly these labels */
            ddpm_rng again = r.rng;
            r.rng = before;
            int d = r.drops;
            double keep = ref_grad(&r, s0.p, x0, labels, false, ddpm_trainer_schedule(tr));
            r.rng = again;
            if (r.drops - d > 0 && keep == loss) fail_msg("%s step %d: dropping labels does not change the loss", what, k);
            r.drops = d;
        }
        train_state tmp = s0;
        s0 = s1;
        s1 = tmp;
    }
    if (drops_out) *drops_out = r.drops;
    free(labels);
    ddpm_free(x0);
    vecs_free(&v);
    state_free(&s0);
    state_free(&s1);
    ref_free(&r);
    ddpm_trainer_free(tr);
}

/* Warmup then cosine decay, weight decay, clipping on (clip below the
 * gradient norm) and an EMA whose warmup (0.1, 0.18, 0.25) reaches its cap
 * 0.3 at step 3. */
static void test_steps_against_reference(void **state) {
    (void)state;
    ddpm_train_config c;
    tiny_config(&c, 0, 3);
    c.iters = 7;
    c.warmup = 2;
    c.lr = 2e-3f;
    c.min_lr_ratio = 0.1f;
    c.weight_decay = 0.05f;
    c.clip = 0.05f;
    c.ema_decay = 0.3f;
    check_steps("clip+cosine", &c, 7, NULL);
    /* the closed forms reach both branches */
    assert_true(ref_ema_decay(&c, 2) < c.ema_decay && ref_ema_decay(&c, 3) == (double)c.ema_decay);
    assert_true(fabs(ref_lr(&c, 6) - (double)c.lr * (double)c.min_lr_ratio) < 1e-15);
}

/* No clipping (a clip far above the norm), constant LR, no warmup, L1 loss,
 * no EMA. */
static void test_steps_no_clip_constant(void **state) {
    (void)state;
    ddpm_train_config c;
    tiny_config(&c, 0, 2);
    c.iters = 4;
    c.warmup = 0;
    c.decay = DDPM_LR_CONSTANT;
    c.lr = 1e-3f;
    c.clip = 1e6f;
    c.ema_decay = 0.0f;
    c.loss = DDPM_LOSS_L1;
    check_steps("noclip+constant", &c, 4, NULL);
}

/* The power-function EMA profile (--ema-gamma) against its closed form. */
static void test_steps_power_ema(void **state) {
    (void)state;
    ddpm_train_config c;
    tiny_config(&c, 0, 3);
    c.iters = 5;
    c.warmup = 1;
    c.ema_gamma = 3.0f;
    check_steps("power-ema", &c, 5, NULL);
    assert_true(fabs(ref_ema_decay(&c, 1) - 1.0 / 16.0) < 1e-15); /* (1 - 1/2)^4 */
}

/* The v and x0 objectives and min-SNR-gamma weighting (gamma 2 sits inside
 * the SNR range of T = 20, so some weights are clipped and some are not). */
static void test_steps_objectives(void **state) {
    (void)state;
    const struct {
        ddpm_objective obj;
        float gamma;
        ddpm_loss_kind loss;
    } runs[] = {{DDPM_OBJ_V, 0.0f, DDPM_LOSS_L2}, {DDPM_OBJ_X0, 0.0f, DDPM_LOSS_L1}, {DDPM_OBJ_EPS, 2.0f, DDPM_LOSS_L2},
                {DDPM_OBJ_V, 2.0f, DDPM_LOSS_L2}, {DDPM_OBJ_X0, 2.0f, DDPM_LOSS_L2}};
    for (size_t k = 0; k < sizeof runs / sizeof *runs; k++) {
        ddpm_train_config c;
        tiny_config(&c, 0, 4);
        c.iters = 3;
        c.objective = runs[k].obj;
        c.snr_gamma = runs[k].gamma;
        c.loss = runs[k].loss;
        char what[64];
        snprintf(what, sizeof what, "%s gamma=%g %s", ddpm_objective_name(c.objective), (double)c.snr_gamma,
                 ddpm_loss_name(c.loss));
        check_steps(what, &c, 3, NULL);
    }
    /* the range checks */
    ddpm_train_config c;
    tiny_config(&c, 0, 4);
    ddpm_trainer *tr = NULL;
    const float bad[] = {-1.0f, NAN, INFINITY};
    for (int k = 0; k < 3; k++) {
        c.snr_gamma = bad[k];
        assert_int_equal(ddpm_trainer_create(&tr, &c), DDPM_ERR_ARG);
        assert_null(tr);
    }
    c.snr_gamma = 0.0f;
    c.objective = (ddpm_objective)3;
    assert_int_equal(ddpm_trainer_create(&tr, &c), DDPM_ERR_ARG);
}

/* Class-conditional with cond_drop 0.25: 16 steps of batch 8 = 128 labels;
 * the drops (the trainer's, as the loss shows) are Binomial(128, 0.25):
 * mean 32, sd 4.9; accept [12, 52] (4 sd). cond_drop 0 never drops, 1 always. */
static void test_label_drop(void **state) {
    (void)state;
    ddpm_train_config c;
    tiny_config(&c, 3, 8);
    c.iters = 16;
    c.warmup = 4;
    c.cond_drop = 0.25f;
    c.ema_decay = 0.999f;
    int drops;
    check_steps("cond_drop=0.25", &c, 16, &drops);
    printf("label drops: %d of 128 (expected 32)\n", drops);
    assert_in_range(drops, 12, 52);
    c.iters = 2;
    c.cond_drop = 0.0f;
    check_steps("cond_drop=0", &c, 2, &drops);
    assert_int_equal(drops, 0);
    c.cond_drop = 1.0f;
    check_steps("cond_drop=1", &c, 2, &drops);
    assert_int_equal(drops, 16);
}

/* ---- resume across an epoch boundary (CLI) ------------------------------------------ */

static void write_dataset(const char *dir, int N) {
    char path[600];
    snprintf(path, sizeof path, "mkdir -p '%s'", dir);
    assert_int_equal(system(path), 0);
    uint8_t *px = malloc((size_t)N * 64), *lab = malloc((size_t)N);
    for (int i = 0; i < N; i++) {
        lab[i] = (uint8_t)(i % 3);
        for (int p = 0; p < 64; p++) px[i * 64 + p] = (uint8_t)((i * 53 + p * 7 + (p % 8 == i % 8) * 150) % 256);
    }
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
    assert_int_equal(ddpm_idx_write_images(path, px, N, 1, 8, 8), DDPM_OK);
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", dir);
    int dims[1] = {N};
    assert_int_equal(ddpm_idx_write(path, lab, 1, dims), DDPM_OK);
    free(px);
    free(lab);
}


static void spit(const char *path, const char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static long meta_long(const char *ckpt, const char *key) {
    ddpm_checkpoint ck;
    if (ddpm_checkpoint_open(&ck, ckpt)) fail_msg("%s", ddpm_last_error());
    const char *v = ddpm_checkpoint_meta(&ck, key);
    if (!v) fail_msg("%s lacks metadata '%s'", ckpt, key);
    long r = strtol(v, NULL, 10);
    ddpm_checkpoint_close(&ck);
    return r;
}

#define EPOCH_FLAGS "--ch 8 --ch-mult 1,2 --res-blocks 1 --attn 4 --groups 4 --batch 4 --steps 20 " \
                    "--classes 3 --dropout 0.1 --threads 2 --iters 10 --warmup 2 --seed 5"

static void test_resume_across_epoch(void **state) {
    (void)state;
    char data[300], A[300], B[300], pa[400], pb[400];
    snprintf(data, sizeof data, "%s/epochs", g_dir);
    write_dataset(data, 12); /* batch 4: an epoch is 3 iterations */
    snprintf(A, sizeof A, "%s/straight", g_dir);
    cli_result *r = malloc(sizeof *r);
    if (cli_run(r, "train --data %s " EPOCH_FLAGS " --out %s", data, A)) fail_msg("straight: %s", r->err);
    snprintf(pa, sizeof pa, "%s/ckpt.safetensors", A);
    assert_int_equal(meta_long(pa, "step"), 10);
    assert_int_equal(meta_long(pa, "data_epoch"), 3);
    const int stops[] = {7, 6}; /* inside epoch 2; exactly at the end of epoch 1 */
    for (int s = 0; s < 2; s++) {
        snprintf(B, sizeof B, "%s/stop%d", g_dir, stops[s]);
        snprintf(pb, sizeof pb, "%s/ckpt.safetensors", B);
        if (cli_run(r, "train --data %s " EPOCH_FLAGS " --out %s --stop-after %d", data, B, stops[s]))
            fail_msg("stop: %s", r->err);
        assert_int_equal(meta_long(pb, "step"), stops[s]);
        long epoch = meta_long(pb, "data_epoch"), pos = meta_long(pb, "data_pos");
        printf("stopped after %d: data_epoch %ld data_pos %ld\n", stops[s], epoch, pos);
        assert_true(epoch > 0);
        assert_int_equal(epoch * 12 + pos, stops[s] * 4);
        if (cli_run(r, "train --resume --out %s --threads 2", B)) fail_msg("resume: %s", r->err);
        size_t na, nb;
        char *ba = cli_slurp(pa, &na), *bb = cli_slurp(pb, &nb);
        assert_int_equal(na, nb);
        if (memcmp(ba, bb, na)) fail_msg("resume after %d iterations: checkpoint differs from the straight run", stops[s]);
        free(ba);
        free(bb);
    }
    free(r);
}

/* ---- the trainer API ------------------------------------------------------------------ */


/* 6 iterations straight == 3, save, resume, 3 (the data order crosses an
 * epoch: 6 * 5 > 24), with a stop requested by the callback in between. */
static ddpm_status stop_at_3(void *ctx, ddpm_trainer *tr, const ddpm_train_stats *st, bool *stop) {
    *stop = st->iter == 3;
    (*(int *)ctx)++;
    return DDPM_OK;
}

/* Runs c straight into <g_dir>/<tag>-full.safetensors and as 3 iterations,
 * save to ck, resume, the rest; both checkpoints must be the same bytes.
 * Returns the bytes (n of them). */
static char *resume_exact(const ddpm_train_config *c, const char *tag, const char *ck, size_t *n) {
    char full[400];
    snprintf(full, sizeof full, "%s/%s-full.safetensors", g_dir, tag);
    ddpm_trainer *a, *b;
    assert_int_equal(ddpm_trainer_create(&a, c), DDPM_OK);
    assert_int_equal(ddpm_trainer_next(a, NULL), DDPM_ERR_ARG); /* no data yet */
    assert_int_equal(ddpm_trainer_set_data(a, &g_ds, "synthetic"), DDPM_OK);
    assert_int_equal(ddpm_trainer_run(a, c->iters, NULL, NULL), DDPM_OK);
    assert_int_equal(ddpm_trainer_save(a, full), DDPM_OK);
    ddpm_trainer_free(a);

    int calls = 0;
    assert_int_equal(ddpm_trainer_create(&a, c), DDPM_OK);
    assert_int_equal(ddpm_trainer_set_data(a, &g_ds, "synthetic"), DDPM_OK);
    assert_int_equal(ddpm_trainer_run(a, c->iters, stop_at_3, &calls), DDPM_OK);
    assert_int_equal(calls, 3);
    assert_int_equal(ddpm_trainer_step_count(a), 3);
    assert_int_equal(ddpm_trainer_save(a, ck), DDPM_OK);
    ddpm_trainer_free(a);
    assert_int_equal(ddpm_trainer_resume(&b, ck, 0), DDPM_OK);
    assert_string_equal(ddpm_trainer_data_name(b), "synthetic");
    assert_int_equal(ddpm_trainer_config(b)->precision, c->precision);
    assert_int_equal(ddpm_unet_precision(ddpm_trainer_model(b)), c->precision);
    assert_int_equal(ddpm_trainer_set_data(b, &g_ds, "synthetic"), DDPM_OK);
    assert_int_equal(ddpm_trainer_run(b, c->iters, NULL, NULL), DDPM_OK);
    char rest[400];
    snprintf(rest, sizeof rest, "%s/%s-rest.safetensors", g_dir, tag);
    assert_int_equal(ddpm_trainer_save(b, rest), DDPM_OK);
    ddpm_trainer_free(b);
    size_t n1, n2;
    char *x = cli_slurp(full, &n1), *y = cli_slurp(rest, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(x, y, n1);
    free(y);
    *n = n1;
    return x;
}

static void test_resume_exact(void **state) {
    (void)state;
    ddpm_train_config c;
    tiny_api(&c);
    size_t n;
    free(resume_exact(&c, "fp32", g_ck, &n));
    c.ema_gamma = 6.94f; /* the power profile's state is the step: resumed exactly too */
    free(resume_exact(&c, "power", g_ck, &n));
}

/* Replace `"key":"old"` by a value of the same length in the checkpoint's
 * JSON header and expect resume (or set_data) to name the file and key. */
static void expect_bad_in(const char *src, const char *key, const char *bad, const char *why) {
    size_t n;
    char *b = cli_slurp(src, &n), pat[200];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    char *v = strstr(b + 8, pat);
    if (!v) fail_msg("no %s in the checkpoint", key);
    v += strlen(pat);
    char *end = strchr(v, '"');
    if ((size_t)(end - v) != strlen(bad)) fail_msg("%s: '%.*s' and '%s' differ in length", key, (int)(end - v), v, bad);
    memcpy(v, bad, strlen(bad));
    char path[450];
    snprintf(path, sizeof path, "%s/bad.safetensors", g_dir);
    spit(path, b, n);
    free(b);
    ddpm_trainer *tr = NULL;
    ddpm_clear_error();
    ddpm_status s = ddpm_trainer_resume(&tr, path, 0);
    if (!s) {
        s = ddpm_trainer_set_data(tr, &g_ds, "synthetic");
        ddpm_trainer_free(tr);
    } else {
        assert_null(tr);
    }
    assert_int_equal(s, DDPM_ERR_FORMAT);
    const char *msg = ddpm_last_error();
    char want[600];
    snprintf(want, sizeof want, "'%s': metadata '%s' is %s", path, key, why);
    if (!strstr(msg, want)) fail_msg("%s='%s': got \"%s\", want \"%s\"", key, bad, msg, want);
}

static void expect_bad(const char *key, const char *bad, const char *why) { expect_bad_in(g_ck, key, bad, why); }

static void test_bad_metadata(void **state) {
    (void)state; /* g_ck is the 3-iteration checkpoint of test_resume_exact: step 3, pos 15 */
    expect_bad(DDPM_META_STEP, "x", "not an integer");
    expect_bad(DDPM_META_STEP, "-", "not an integer");
    expect_bad(DDPM_META_BATCH, "0", "out of range");
    expect_bad(DDPM_META_TIMESTEPS, "1x", "not an integer");
    expect_bad(DDPM_META_SEED, "-1", "not an unsigned integer");
    expect_bad(DDPM_META_DATA_POS, "-5", "not an integer");
    expect_bad(DDPM_META_DATA_POS, "99", "99, beyond the 24 images");
    expect_bad(DDPM_META_DATA_EPOCH, "x", "not an integer");
    expect_bad(DDPM_META_SCHEDULE, "cubic_", "an unknown value");
    expect_bad(DDPM_META_OBJECTIVE, "epz", "an unknown value");
    expect_bad(DDPM_META_RNG, "g000000000000000000000000000000000000000000000000000000000000000",
               "not a generator state");
    expect_bad(DDPM_META_RNG, "0000000000000000000000000000000000000000000000000000000000000000",
               "the all-zero generator state");
    /* numbers past 2^64 - 1 (the data seed is a random u64: 20 digits or fewer) */
    size_t n;
    char *b = cli_slurp(g_ck, &n);
    const char *v = strstr(b + 8, "\"data_seed\":\"") + strlen("\"data_seed\":\"");
    char nines[32];
    int len = (int)(strchr(v, '"') - v);
    free(b);
    if (len == 20) {
        memset(nines, '9', 20);
        nines[20] = '\0';
        expect_bad(DDPM_META_DATA_SEED, nines, "not an unsigned integer");
    }
}

/* Renames `"key":` to `"keyX":` (same length: the last letter replaced). */
static void hide_key(char *b, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    char *v = strstr(b + 8, pat);
    if (!v) fail_msg("no %s in the checkpoint", key);
    v[strlen(key)] = 'X';
}

/* The objective and gamma are saved and resumed; bad values name the file and
 * the key; a checkpoint without them (from before the options) is eps, 0. */
static void test_objective_metadata(void **state) {
    (void)state;
    ddpm_train_config c;
    tiny_api(&c);
    c.objective = DDPM_OBJ_V;
    c.snr_gamma = 2.5f;
    char path[400], old[400];
    snprintf(path, sizeof path, "%s/v.safetensors", g_dir);
    snprintf(old, sizeof old, "%s/old.safetensors", g_dir);
    ddpm_trainer *tr;
    assert_int_equal(ddpm_trainer_create(&tr, &c), DDPM_OK);
    assert_int_equal(ddpm_trainer_set_data(tr, &g_ds, "synthetic"), DDPM_OK);
    assert_int_equal(ddpm_trainer_run(tr, 2, NULL, NULL), DDPM_OK);
    assert_int_equal(ddpm_trainer_save(tr, path), DDPM_OK);
    ddpm_trainer_free(tr);
    assert_int_equal(ddpm_trainer_resume(&tr, path, 0), DDPM_OK);
    assert_int_equal(ddpm_trainer_config(tr)->objective, DDPM_OBJ_V);
    assert_true(ddpm_trainer_config(tr)->snr_gamma == 2.5f);
    ddpm_trainer_free(tr);
    ddpm_checkpoint ck;
    ddpm_objective obj;
    bool rec;
    assert_int_equal(ddpm_checkpoint_open(&ck, path), DDPM_OK);
    assert_int_equal(ddpm_train_read_objective(&ck, &obj, &rec), DDPM_OK);
    assert_true(obj == DDPM_OBJ_V && rec);
    ddpm_checkpoint_close(&ck);
    expect_bad_in(path, DDPM_META_OBJECTIVE, "u", "an unknown value");
    expect_bad_in(path, DDPM_META_SNR_GAMMA, "-25", "out of range");
    expect_bad_in(path, DDPM_META_SNR_GAMMA, "nan", "not a number");
    expect_bad_in(path, DDPM_META_SNR_GAMMA, "2.x", "not a number");
    /* without the keys */
    size_t n;
    char *b = cli_slurp(path, &n);
    hide_key(b, DDPM_META_OBJECTIVE);
    hide_key(b, DDPM_META_SNR_GAMMA);
    spit(old, b, n);
    free(b);
    assert_int_equal(ddpm_trainer_resume(&tr, old, 0), DDPM_OK);
    assert_int_equal(ddpm_trainer_config(tr)->objective, DDPM_OBJ_EPS);
    assert_true(ddpm_trainer_config(tr)->snr_gamma == 0.0f);
    ddpm_trainer_free(tr);
    assert_int_equal(ddpm_checkpoint_open(&ck, old), DDPM_OK);
    assert_int_equal(ddpm_train_read_objective(&ck, &obj, &rec), DDPM_OK);
    assert_true(obj == DDPM_OBJ_EPS && !rec);
    ddpm_checkpoint_close(&ck);
}

/* A BF16 run resumes byte for byte too, records its precision ("absent" is
 * fp32, a bad value names the file and key) and trains other weights than
 * the FP32 run. */
static void test_precision(void **state) {
    (void)state;
    ddpm_train_config c;
    tiny_api(&c);
    char ck[400], old[400];
    snprintf(ck, sizeof ck, "%s/bf16-3.safetensors", g_dir);
    snprintf(old, sizeof old, "%s/bf16-old.safetensors", g_dir);
    size_t n32, n16;
    char *a = resume_exact(&c, "p32", ck, &n32);
    c.precision = DDPM_PREC_BF16;
    char *b = resume_exact(&c, "p16", ck, &n16);
    assert_true(n32 != n16 || memcmp(a, b, n16) != 0);
    free(a), free(b);
    expect_bad_in(ck, DDPM_META_PRECISION, "bf15", "an unknown value (expected fp32 or bf16)");
    size_t n;
    char *buf = cli_slurp(ck, &n);
    hide_key(buf, DDPM_META_PRECISION);
    spit(old, buf, n);
    free(buf);
    ddpm_trainer *tr;
    assert_int_equal(ddpm_trainer_resume(&tr, old, 0), DDPM_OK);
    assert_int_equal(ddpm_trainer_config(tr)->precision, DDPM_PREC_FP32);
    ddpm_trainer_free(tr);
    c.precision = (ddpm_precision)7;
    assert_int_equal(ddpm_trainer_create(&tr, &c), DDPM_ERR_ARG);
}

/* A model that does not fit the data, with the library's own words. */
/* A folder's recipe fills what the caller left alone: at 32 px the
 * preset's batch and iterations, the warmup that goes with them and
 * dpm++2m at 20 steps, at 64 px its own batch and iterations; a fixed
 * field stays; the sampler not with eps, its steps not beyond a small T. */
static void test_take_recipe(void **state) {
    (void)state;
    ddpm_train_config c;
    ddpm_train_config_default(&c);
    ddpm_train_fixed none = {0};
    ddpm_train_take_recipe(&c, 3, 32, &none);
    assert_int_equal(c.batch, 32);
    assert_int_equal(c.iters, 9000);
    assert_int_equal(c.warmup, 810);
    assert_int_equal(c.sampler, DDPM_SAMPLER_DPMPP_2M);
    assert_int_equal(c.sample_steps, 20);
    ddpm_train_config_default(&c);
    ddpm_train_take_recipe(&c, 3, 64, &none); /* 64 px: not searched, the older recipe */
    assert_int_equal(c.batch, 64);
    assert_int_equal(c.iters, 2200);
    assert_int_equal(c.sampler, DDPM_SAMPLER_DPMPP_2M);
    ddpm_train_config_default(&c);
    c.batch = 8, c.objective = DDPM_OBJ_EPS;
    ddpm_train_take_recipe(&c, 3, 32, &(ddpm_train_fixed){.batch = true, .objective = true});
    assert_int_equal(c.batch, 8);
    assert_int_equal(c.iters, 9000);
    assert_int_equal(c.sampler, DDPM_SAMPLER_DDPM);
    assert_int_equal(c.sample_steps, 0);
    ddpm_train_config_default(&c);
    c.T = 10;
    ddpm_train_take_recipe(&c, 3, 32, &(ddpm_train_fixed){.T = true});
    assert_int_equal(c.sampler, DDPM_SAMPLER_DPMPP_2M);
    assert_int_equal(c.sample_steps, 0); /* 20 > T - 1: the sampler's own default */
    ddpm_train_config_default(&c); /* the warmup follows the iterations taken, unless fixed */
    c.iters = 1000;
    ddpm_train_take_recipe(&c, 3, 32, &(ddpm_train_fixed){.iters = true});
    assert_int_equal(c.warmup, 90);
    c.warmup = 7;
    ddpm_train_take_recipe(&c, 3, 32, &(ddpm_train_fixed){.warmup = true});
    assert_int_equal(c.iters, 9000);
    assert_int_equal(c.warmup, 7);
    ddpm_train_config_default(&c);
    c.sampler = DDPM_SAMPLER_DDIM;
    ddpm_train_take_recipe(&c, 1, 28, &(ddpm_train_fixed){.sampler = true}); /* no preset: the defaults */
    assert_int_equal(c.sampler, DDPM_SAMPLER_DDIM);
    assert_int_equal(c.batch, 32);
}

static void test_data_mismatch(void **state) {
    (void)state;
    ddpm_train_config c;
    tiny_api(&c);
    c.model.num_classes = 2;
    ddpm_trainer *tr;
    assert_int_equal(ddpm_trainer_create(&tr, &c), DDPM_OK);
    assert_int_equal(ddpm_trainer_set_data(tr, &g_ds, "three"), DDPM_ERR_ARG);
    assert_string_equal(ddpm_last_error(), "the model has 2 classes, but the labels in 'three' go up to 2");
    ddpm_dataset big = g_ds;
    big.h = big.w = 16;
    assert_int_equal(ddpm_trainer_set_data(tr, &big, "big"), DDPM_ERR_ARG);
    assert_string_equal(ddpm_last_error(), "the model takes 1x8x8 images, the data in 'big' is 1x16x16");
    ddpm_trainer_free(tr);
}

int main(void) {
    setenv("OMP_WAIT_POLICY", "passive", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_exact),
        cmocka_unit_test(test_precision),
        cmocka_unit_test(test_bad_metadata), /* after test_resume_exact: uses its g_ck */
        cmocka_unit_test(test_data_mismatch),
        cmocka_unit_test(test_take_recipe),
        cmocka_unit_test(test_objective_metadata),
        cmocka_unit_test(test_steps_objectives),
        cmocka_unit_test(test_steps_against_reference),
        cmocka_unit_test(test_steps_no_clip_constant),
        cmocka_unit_test(test_steps_power_ema),
        cmocka_unit_test(test_label_drop),
        cmocka_unit_test(test_resume_across_epoch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
