/* session.c: the evaluation protocol over a reference test split (see
 * eval.h): the metrics of a set of images, and of samples of a model. */
#include "ddpm/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ddpm_status ddpm_eval_ref_init(ddpm_eval_ref *r, ddpm_classifier *net, const ddpm_dataset *test) {
    memset(r, 0, sizeof *r);
    const ddpm_clf_config *c = ddpm_clf_cfg(net);
    if (c->in_ch != test->c || c->res != test->h || c->res != test->w || c->num_classes < test->num_classes)
        return ddpm_error(DDPM_ERR_ARG, "the evaluation network takes %d x %d x %d images of %d classes, the "
                          "reference has %d x %d x %d of %d", c->in_ch, c->res, c->res, c->num_classes, test->c,
                          test->h, test->w, test->num_classes);
    if (test->n < DDPM_EVAL_K + 1) return ddpm_error(DDPM_ERR_ARG, "the reference has only %d images", test->n);
    r->net = net;
    r->test = test;
    r->feats = ddpm_malloc((size_t)test->n * DDPM_CLF_FEATURES * sizeof(float));
    if (!r->feats) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for the reference features");
    ddpm_status s = ddpm_clf_embed(net, r->feats, NULL, test->pixels, test->n);
    if (!s) s = ddpm_gauss_stats_compute(&r->stats, r->feats, test->n, DDPM_CLF_FEATURES);
    if (s) ddpm_eval_ref_free(r);
    return s;
}

void ddpm_eval_ref_free(ddpm_eval_ref *r) {
    ddpm_free(r->feats);
    ddpm_gauss_stats_free(&r->stats);
    memset(r, 0, sizeof *r);
}

ddpm_status ddpm_eval_images(ddpm_eval_metrics *m, const ddpm_eval_ref *r, const uint8_t *u8, int n,
                             const int *labels) {
    int K = ddpm_clf_cfg(r->net)->num_classes, F = DDPM_CLF_FEATURES, nr = n < r->test->n ? n : r->test->n;
    if (n < DDPM_EVAL_K + 1) return ddpm_error(DDPM_ERR_ARG, "the metrics need at least %d images (got %d)", DDPM_EVAL_K + 1, n);
    memset(m, 0, sizeof *m);
    float *ff = ddpm_malloc((size_t)n * F * sizeof(float)), *probs = ddpm_malloc((size_t)n * K * sizeof(float));
    ddpm_gauss_stats a = {0};
    ddpm_class_metrics cm;
    ddpm_status s = !ff || !probs ? ddpm_error(DDPM_ERR_NOMEM, "out of memory for the features of %d images", n) : DDPM_OK;
    if (!s) s = ddpm_clf_embed(r->net, ff, probs, u8, n);
    if (!s) s = ddpm_gauss_stats_compute(&a, ff, n, F);
    if (!s) s = ddpm_frechet_distance(&m->fid, a.mu, a.cov, r->stats.mu, r->stats.cov, F);
    if (!s) s = ddpm_precision_recall(&m->precision, &m->recall, r->feats, nr, ff, n, F, DDPM_EVAL_K);
    if (!s) s = ddpm_class_metrics_compute(&cm, probs, labels, n, K);
    if (!s) {
        m->n = n;
        m->n_pr = nr;
        m->confidence = cm.confidence;
        m->class_entropy = cm.class_entropy;
        m->label_accuracy = cm.label_accuracy;
    }
    ddpm_gauss_stats_free(&a);
    ddpm_free(ff);
    ddpm_free(probs);
    return s;
}

static void to_u8(uint8_t *out, const float *x, size_t n) {
    for (size_t j = 0; j < n; j++) {
        float v = (x[j] + 1.0f) * 127.5f;
        v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f;
        out[j] = (uint8_t)floorf(v + 0.5f);
    }
}

ddpm_status ddpm_eval_model(ddpm_eval_metrics *m, const ddpm_eval_ref *r, ddpm_model_fn model, void *ctx,
                            const ddpm_schedule *s, const ddpm_sampler_opts *o, int num_classes, int n,
                            int batch, uint64_t seed, ddpm_step_fn on_step, void *ud) {
    size_t D = (size_t)r->test->c * r->test->h * r->test->w;
    int B = batch < n ? batch : n;
    ddpm_sampler sm = {0};
    float *x = ddpm_malloc((size_t)n * D * sizeof(float));
    uint8_t *u8 = malloc((size_t)n * D);
    int *labels = num_classes > 0 ? malloc((size_t)n * sizeof(int)) : NULL;
    ddpm_status st = !x || !u8 || (num_classes > 0 && !labels) ? ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d samples", n)
                                                             : ddpm_sampler_create(&sm, s, o, D, B);
    if (!st && labels) ddpm_sampler_labels(labels, n, num_classes, -1);
    if (!st) st = ddpm_sampler_run(&sm, x, 0, n, seed, labels, model, ctx, on_step, ud);
    if (!st) to_u8(u8, x, (size_t)n * D);
    if (!st) st = ddpm_eval_images(m, r, u8, n, labels);
    ddpm_sampler_destroy(&sm);
    ddpm_free(x);
    free(u8);
    free(labels);
    return st;
}
