/* session.c: the evaluation protocol over a reference test split (see
 * eval.h): the metrics of a set of images, and of samples of a model. */
#include "ddpm/eval.h"
#include "ddpm/data.h"
#include "ddpm/tensor.h"
#include "eval/clf_internal.h"

#include <math.h>
#include <stdio.h>
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

void ddpm_eval_downsample(uint8_t *out, const uint8_t *px, int n, int c, int h, int w, int f) {
    int oh = h / f, ow = w / f, half = f * f / 2;
    for (size_t p = 0; p < (size_t)n * c; p++) {
        const uint8_t *src = px + p * h * w;
        uint8_t *dst = out + p * oh * ow;
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                int sum = half;
                for (int i = 0; i < f; i++)
                    for (int j = 0; j < f; j++) sum += src[(y * f + i) * w + x * f + j];
                dst[y * ow + x] = (uint8_t)(sum / (f * f));
            }
    }
}

static ddpm_status eval_net_images(ddpm_eval_metrics *m, const ddpm_eval_ref *r, const uint8_t *u8, int n,
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
    if (!s) s = ddpm_kid(&m->kid, &m->kid_std, r->feats, r->test->n, ff, n, F, DDPM_EVAL_KID_SEED);
    if (!s) s = ddpm_class_metrics_compute(&cm, probs, labels, n, K);
    if (!s) {
        m->n = n;
        m->n_pr = nr;
        m->confidence = cm.confidence;
        m->class_entropy = cm.class_entropy;
        m->label_accuracy = cm.label_accuracy;
        m->n_kid = ddpm_kid_subset_size(r->test->n, n);
    }
    ddpm_gauss_stats_free(&a);
    ddpm_free(ff);
    ddpm_free(probs);
    return s;
}

ddpm_status ddpm_eval_images(ddpm_eval_metrics *m, const ddpm_eval_ref *r, const uint8_t *u8, int n,
                             const int *labels) {
    if (r->down <= 1) return eval_net_images(m, r, u8, n, labels);
    const ddpm_dataset *t = r->test;
    uint8_t *small = malloc((size_t)n * t->c * t->h * t->w + 1);
    if (!small) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d images", n);
    ddpm_eval_downsample(small, u8, n, t->c, t->h * r->down, t->w * r->down, r->down);
    ddpm_status s = eval_net_images(m, r, small, n, labels);
    free(small);
    return s;
}

ddpm_status ddpm_eval_pipeline(ddpm_eval_metrics *m, const ddpm_eval_ref *r, ddpm_pipeline *p,
                               const ddpm_draw_opts *o, int n) {
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    const ddpm_dataset *t = r->test;
    int f = r->down > 1 ? r->down : 1;
    if (in->cfg.in_ch != t->c || in->cfg.res != t->h * f || in->cfg.res != t->w * f)
        return ddpm_error(DDPM_ERR_ARG, "the model makes %d x %d x %d images; the reference has %d x %d x %d",
                          in->cfg.in_ch, in->cfg.res, in->cfg.res, t->c, t->h * f, t->w * f);
    size_t D = in->D;
    uint8_t *u8 = malloc((size_t)n * D);
    int *labels = in->cfg.num_classes > 0 ? malloc((size_t)n * sizeof(int)) : NULL;
    ddpm_status st = !u8 || (in->cfg.num_classes > 0 && !labels)
                         ? ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d samples", n)
                         : ddpm_pipeline_draw_u8(p, o, 0, n, u8);
    if (!st && labels) ddpm_pipeline_labels(p, o, 0, n, labels);
    if (!st) st = ddpm_eval_images(m, r, u8, n, labels);
    free(u8);
    free(labels);
    return st;
}

ddpm_status eval_load_labels(int **labels, const char *labels_path, int n, int num_classes) {
    ddpm_idx lb = {0};
    ddpm_status st = ddpm_idx_read(&lb, labels_path, DDPM_IDX_LABELS);
    if (st) return st;
    if (lb.dims[0] < n) st = ddpm_error(DDPM_ERR_FORMAT, "'%s' holds %d labels for %d images", labels_path, lb.dims[0], n);
    else if (!(*labels = malloc((size_t)n * sizeof(int)))) st = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    for (int i = 0; !st && i < n; i++) {
        (*labels)[i] = lb.data[i];
        if (lb.data[i] >= num_classes && num_classes > 0)
            st = ddpm_error(DDPM_ERR_FORMAT, "'%s': label %d of image %d is outside the reference's %d classes",
                            labels_path, lb.data[i], i, num_classes);
    }
    ddpm_idx_free(&lb);
    return st;
}

ddpm_status ddpm_eval_load_images(uint8_t **u8, int **labels, int *n, const char *path, const char *labels_path,
                                  const ddpm_dataset *like) {
    ddpm_idx im = {0};
    *u8 = NULL, *labels = NULL;
    ddpm_status st = ddpm_idx_read(&im, path, DDPM_IDX_IMAGES);
    if (st) return st;
    int c = im.ndim == 4 ? im.dims[1] : 1, h = im.dims[im.ndim - 2], w = im.dims[im.ndim - 1], count = im.dims[0];
    if (c != like->c || h != like->h || w != like->w)
        st = ddpm_error(DDPM_ERR_FORMAT, "'%s' holds %d x %d x %d images; the evaluation network for the reference takes "
                                      "%d x %d x %d", path, c, h, w, like->c, like->h, like->w);
    else if (*n > count)
        st = ddpm_error(DDPM_ERR_ARG, "-n %d exceeds the %d images in '%s'", *n, count, path);
    else if ((*n > 0 ? *n : count) < DDPM_EVAL_K + 1)
        st = ddpm_error(DDPM_ERR_FORMAT, "'%s' holds %d images; the metrics need at least %d", path, count, DDPM_EVAL_K + 1);
    if (!st && *n <= 0) *n = count;
    if (!st && labels_path) st = eval_load_labels(labels, labels_path, *n, like->num_classes);
    if (!st) {
        *u8 = im.data; /* keep the pixels, drop the rest */
        im.data = NULL;
    } else {
        free(*labels);
        *labels = NULL;
    }
    ddpm_idx_free(&im);
    return st;
}

#define SESSION_CLF_BATCH 256

static ddpm_status session_net(ddpm_eval_session *s, const char *dir, const char *net, int threads,
                               ddpm_clf_progress_fn on_train, void *ud) {
    snprintf(s->net_path, sizeof s->net_path, "%s", net ? net : "");
    if (!net) {
        const char *env = getenv("DDPM_EVAL_CACHE");
        ddpm_set_threads(1); /* conv weight gradients are summed per thread */
        ddpm_status st = ddpm_clf_obtain(s->net_path, sizeof s->net_path, &s->trained, &s->trained_acc,
                                         env && *env ? env : DDPM_EVAL_CACHE_DIR, dir, &s->test, on_train, ud);
        ddpm_set_threads(threads);
        if (st) return st;
    }
    return eval_session_load_net(s, dir);
}

ddpm_status eval_session_load_net(ddpm_eval_session *s, const char *dir) {
    ddpm_status st = ddpm_clf_load(&s->net, s->net_path, SESSION_CLF_BATCH, "test_accuracy", s->net_acc, sizeof s->net_acc);
    if (!st) st = ddpm_file_hash16(s->net_hash, s->net_path);
    if (st) return st;
    const ddpm_clf_config *c = ddpm_clf_cfg(s->net);
    const ddpm_dataset *t = &s->test;
    if (c->in_ch != t->c || c->res != t->h || c->res != t->w || c->num_classes < t->num_classes)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s' takes %d x %d x %d images of %d classes; the reference '%s' has %d x %d x %d "
                                           "images of %d classes", s->net_path, c->in_ch, c->res, c->res, c->num_classes,
                          dir, t->c, t->h, t->w, t->num_classes);
    return DDPM_OK;
}

ddpm_status ddpm_eval_session_open(ddpm_eval_session *s, const char *dir, const char *net, int threads,
                                   ddpm_clf_progress_fn on_train, void *ud) {
    memset(s, 0, sizeof *s);
    ddpm_status st = ddpm_dataset_load(&s->test, dir, false);
    if (!st) st = session_net(s, dir, net, threads, on_train, ud);
    s->size = s->test.h, s->channels = s->test.c;
    if (!st) st = ddpm_eval_ref_init(&s->ref, s->net, &s->test);
    if (st) ddpm_eval_session_close(s);
    return st;
}

void ddpm_eval_session_close(ddpm_eval_session *s) {
    ddpm_eval_ref_free(&s->ref);
    ddpm_clf_free(s->net);
    ddpm_dataset_free(&s->test);
    memset(s, 0, sizeof *s);
}
