/* pipeline.c: a trained model ready to draw images (pipeline.h). */
#include "ddpm/pipeline.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"
#include "ddpm/data.h"
#include "ddpm/checkpoint.h"
#include "ddpm/image.h"
#include "ddpm/imagefolder.h"
#include "ddpm/meta.h"

#define DEFAULT_MAX_BATCH 64
#define LEGACY_T 1000 /* what `ddpm train` used before checkpoints recorded T */

struct ddpm_pipeline {
    ddpm_pipeline_info info;
    ddpm_unet *unet;         /* created for max_batch images, or 2 max_batch once guidance asks */
    int unet_batch;          /* the batch the unet was created for */
    int max_batch;
    float *params;           /* the weights in use (kept to re-create the unet) */
    size_t nparams;
    ddpm_schedule s;
    ddpm_objective_model om; /* the UNet's output as eps_hat */
    ddpm_st_meta *meta;      /* a copy of the checkpoint's metadata */
    int nmeta;
    char **class_names;
    char path[1024];
};

/* ---- building ------------------------------------------------------------------ */

static ddpm_status make_unet(ddpm_pipeline *p, int batch) {
    if (p->unet && p->unet_batch >= batch) return DDPM_OK;
    ddpm_unet *m;
    ddpm_status st = ddpm_unet_create(&m, &p->info.cfg, batch, false);
    if (st) return st;
    memcpy(ddpm_unet_params(m), p->params, p->nparams * sizeof(float));
    ddpm_unet_set_precision(m, p->info.precision);
    ddpm_unet_free(p->unet);
    p->unet = m;
    p->unet_batch = batch;
    return ddpm_objective_model_init(&p->om, ddpm_unet_eps, p->unet, p->info.objective, &p->s, p->info.D);
}

static ddpm_status alloc_pipeline(ddpm_pipeline **out, const ddpm_unet_config *cfg, const ddpm_pipeline_opts *o) {
    *out = NULL;
    ddpm_pipeline *p = calloc(1, sizeof *p);
    if (!p) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for a pipeline");
    p->info.cfg = *cfg;
    p->info.D = (size_t)cfg->in_ch * cfg->res * cfg->res;
    p->info.path = p->path;
    p->max_batch = o && o->max_batch > 0 ? o->max_batch : DEFAULT_MAX_BATCH;
    ddpm_status st = ddpm_unet_describe(cfg, &p->nparams, NULL);
    if (!st && !(p->params = ddpm_malloc(p->nparams * sizeof(float))))
        st = ddpm_error(DDPM_ERR_NOMEM, "out of memory for %zu parameters", p->nparams);
    if (st) {
        ddpm_pipeline_free(p);
        return st;
    }
    *out = p;
    return DDPM_OK;
}

/* The schedule, objective and unet once info's fields are set. */
static ddpm_status finish(ddpm_pipeline *p) {
    ddpm_status st = ddpm_schedule_init(&p->s, p->info.schedule, p->info.T);
    if (!st) st = make_unet(p, p->max_batch);
    return st;
}

ddpm_status ddpm_pipeline_create(ddpm_pipeline **out, const ddpm_pipeline_model *m, const ddpm_pipeline_opts *o) {
    *out = NULL;
    if (m->precision != DDPM_PREC_FP32 && m->precision != DDPM_PREC_BF16)
        return ddpm_error(DDPM_ERR_ARG, "invalid precision %d", (int)m->precision);
    ddpm_status st = alloc_pipeline(out, &m->cfg, o);
    if (st) return st;
    ddpm_pipeline *p = *out;
    p->info.schedule = m->schedule;
    p->info.T = m->T;
    p->info.objective = m->objective;
    p->info.precision = m->precision; /* make_unet (finish) applies it */
    p->info.sampler = m->sampler;
    p->info.sample_steps = m->sample_steps;
    memcpy(p->params, m->params, p->nparams * sizeof(float));
    if ((st = finish(p))) {
        ddpm_pipeline_free(p);
        *out = NULL;
    }
    return st;
}

/* Schedule, T and objective under the policy for old files (pipeline.h). */
static ddpm_status read_recipe(ddpm_pipeline *p, const ddpm_st_file *f) {
    ddpm_pipeline_info *in = &p->info;
    int kind = DDPM_SCHED_LINEAR, obj = DDPM_OBJ_EPS;
    int64_t T = LEGACY_T;
    ddpm_status st = DDPM_OK;
    in->schedule_assumed = !ddpm_st_meta_get(f, DDPM_META_SCHEDULE);
    in->T_assumed = !ddpm_st_meta_get(f, DDPM_META_TIMESTEPS);
    in->objective_assumed = !ddpm_st_meta_get(f, DDPM_META_OBJECTIVE);
    if (!in->schedule_assumed) st = ddpm_meta_enum(f, p->path, DDPM_META_SCHEDULE, ddpm_schedule_parse, "linear, cosine, quadratic or sigmoid", &kind);
    if (!st && !in->T_assumed) st = ddpm_meta_i64(f, p->path, DDPM_META_TIMESTEPS, 2, DDPM_SCHEDULE_MAX_T, &T);
    if (!st && !in->objective_assumed) st = ddpm_meta_enum(f, p->path, DDPM_META_OBJECTIVE, ddpm_objective_parse, "eps, v or x0", &obj);
    in->schedule = (ddpm_schedule_kind)kind;
    in->T = (int)T;
    in->objective = (ddpm_objective)obj;
    int prec = DDPM_PREC_FP32; /* absent: fp32, as every checkpoint before bf16 */
    if (!st && ddpm_st_meta_get(f, DDPM_META_PRECISION))
        st = ddpm_meta_enum(f, p->path, DDPM_META_PRECISION, ddpm_precision_parse, "fp32 or bf16", &prec);
    in->precision = (ddpm_precision)prec;
    if (!st) st = ddpm_meta_sampler(f, p->path, in->T, &in->sampler, &in->sample_steps);
    return st;
}

ddpm_status ddpm_meta_sampler(const ddpm_st_file *f, const char *path, int T, ddpm_sampler_kind *kind, int *steps) {
    int k = DDPM_SAMPLER_DDPM;
    int64_t K = 0;
    ddpm_status st = DDPM_OK;
    if (ddpm_st_meta_get(f, DDPM_META_SAMPLER))
        st = ddpm_meta_enum(f, path, DDPM_META_SAMPLER, ddpm_sampler_parse, "ddpm, ddim, dpm++2m, euler, heun or euler_a", &k);
    if (!st && ddpm_st_meta_get(f, DDPM_META_SAMPLE_STEPS))
        st = ddpm_meta_i64(f, path, DDPM_META_SAMPLE_STEPS, 0, ddpm_sampler_max_steps((ddpm_sampler_kind)k, T), &K);
    *kind = (ddpm_sampler_kind)k;
    *steps = (int)K;
    return st;
}

static ddpm_status read_classes(ddpm_pipeline *p) {
    const char *json = ddpm_pipeline_meta(p, DDPM_META_CLASSES);
    if (!json) return DDPM_OK;
    int n;
    if (ddpm_folder_classes_parse(json, &p->class_names, &n)) {
        char why[256];
        snprintf(why, sizeof why, "%s", ddpm_last_error());
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s': %s", p->path, DDPM_META_CLASSES, why);
    }
    p->info.num_class_names = n;
    if (p->info.cfg.num_classes > 0 && n != p->info.cfg.num_classes)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s' names %d classes; the model has %d", p->path,
                          DDPM_META_CLASSES, n, p->info.cfg.num_classes);
    return DDPM_OK;
}

ddpm_status ddpm_pipeline_open(ddpm_pipeline **out, const char *path, const ddpm_pipeline_opts *o) {
    *out = NULL;
    ddpm_checkpoint ck;
    ddpm_status st = ddpm_checkpoint_open(&ck, path);
    if (st) return st;
    st = alloc_pipeline(out, &ck.cfg, o);
    ddpm_pipeline *p = *out;
    if (!st) {
        snprintf(p->path, sizeof p->path, "%s", path);
        p->info.has_ema = ck.has_ema;
        p->info.ema = ck.has_ema && !(o && o->raw_weights);
        st = read_recipe(p, &ck.file);
    }
    if (!st && !(p->meta = ddpm_st_meta_copy(&ck.file, &p->nmeta)) && p->nmeta < 0) st = DDPM_ERR_NOMEM;
    if (!st) st = ddpm_checkpoint_read(&ck, p->info.ema ? "ema." : "", p->params);
    ddpm_checkpoint_close(&ck);
    if (!st) st = read_classes(p);
    if (!st) st = finish(p);
    if (st && p) {
        ddpm_pipeline_free(p);
        *out = NULL;
    }
    return st;
}

void ddpm_pipeline_set_weights(ddpm_pipeline *p, const float *params) {
    memcpy(p->params, params, p->nparams * sizeof(float));
    memcpy(ddpm_unet_params(p->unet), params, p->nparams * sizeof(float));
}

void ddpm_pipeline_free(ddpm_pipeline *p) {
    if (!p) return;
    ddpm_unet_free(p->unet);
    ddpm_schedule_free(&p->s);
    ddpm_free(p->params);
    if (p->class_names) ddpm_folder_classes_free(p->class_names, p->info.num_class_names);
    free(p->meta);
    free(p);
}

/* ---- what it holds ----------------------------------------------------------------- */

const ddpm_pipeline_info *ddpm_pipeline_info_get(const ddpm_pipeline *p) { return &p->info; }
const ddpm_schedule *ddpm_pipeline_schedule(const ddpm_pipeline *p) { return &p->s; }
int ddpm_pipeline_max_batch(const ddpm_pipeline *p) { return p->max_batch; }

const char *ddpm_pipeline_meta(const ddpm_pipeline *p, const char *key) {
    return ddpm_st_meta_find(p->meta, p->nmeta, key);
}

const char *ddpm_pipeline_class_name(const ddpm_pipeline *p, int k) {
    return k >= 0 && k < p->info.num_class_names ? p->class_names[k] : NULL;
}

ddpm_status ddpm_pipeline_label(const ddpm_pipeline *p, const char *arg, int *label) {
    int C = p->info.cfg.num_classes;
    *label = -1;
    if (C == 0) return ddpm_error(DDPM_ERR_ARG, "the model in '%s' is unconditional (trained without --classes)", p->path);
    if (arg[0] >= '0' && arg[0] <= '9' && strspn(arg, "0123456789") == strlen(arg)) {
        errno = 0;
        long v = strtol(arg, NULL, 10);
        if (errno || v >= C)
            return ddpm_error(DDPM_ERR_ARG, "%s out of range: the model has %d classes (0..%d)", ddpm_show(arg).s, C,
                              C - 1);
        *label = (int)v;
        return DDPM_OK;
    }
    if (!p->info.num_class_names)
        return ddpm_error(DDPM_ERR_ARG, "'%s': '%s' has no class names (it was not trained on an image folder); "
                                        "give the class index", ddpm_show(arg).s, p->path);
    for (int k = 0; k < p->info.num_class_names; k++)
        if (!strcmp(p->class_names[k], arg)) return *label = k, DDPM_OK;
    char list[200] = "";
    for (int k = 0; k < p->info.num_class_names && strlen(list) < 150; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), " %s", ddpm_show(p->class_names[k]).s);
    return ddpm_error(DDPM_ERR_ARG, "'%s': no such class in '%s' (classes:%s%s)", ddpm_show(arg).s, p->path, list,
                      strlen(list) >= 150 ? " ..." : "");
}

/* ---- drawing ------------------------------------------------------------------------- */

void ddpm_draw_opts_default(ddpm_draw_opts *o) {
    *o = (ddpm_draw_opts){.sampler = {.kind = DDPM_SAMPLER_DDPM, .var = DDPM_VAR_SMALL}, .label = -1, .guidance = 1.0f};
}

void ddpm_pipeline_draw_opts_default(const ddpm_pipeline *p, ddpm_draw_opts *o) {
    ddpm_draw_opts_default(o);
    o->sampler.kind = p->info.sampler;
    o->sampler.steps = p->info.sample_steps;
}

int ddpm_pipeline_edit_count(const ddpm_draw_opts *o) { return o->edit ? o->edit->n_init * o->edit->per_image : 0; }

/* The sampler-side edit of images first..first+n-1: x_init [n, D] and keep [D]
 * (either may be NULL: then only checked). */
static ddpm_status make_edit(const ddpm_pipeline *p, const ddpm_edit_opts *e, int first, int n, float *x_init,
                             uint8_t *keep, ddpm_sampler_edit *se) {
    size_t D = p->info.D, HW = (size_t)p->info.cfg.res * p->info.cfg.res;
    if (!e->init || e->n_init < 1 || e->per_image < 1 || (int64_t)e->n_init * e->per_image > INT32_MAX)
        return ddpm_error(DDPM_ERR_ARG, "an edit needs at least one image and per-image >= 1 (got %d images, %d per image)",
                          e->n_init, e->per_image);
    if (!(e->strength > 0.0f && e->strength <= 1.0f))
        return ddpm_error(DDPM_ERR_ARG, "strength %g is outside (0, 1]", (double)e->strength);
    if (e->resample < 0 || (e->resample > 0 && !e->mask))
        return ddpm_error(DDPM_ERR_ARG, "resampling (%d) applies to inpainting (a mask) only", e->resample);
    if (first < 0 || n < 0 || first + n > e->n_init * e->per_image)
        return ddpm_error(DDPM_ERR_ARG, "images %d..%d of an edit that makes %d", first, first + n - 1,
                          e->n_init * e->per_image);
    for (int i = 0; x_init && i < n; i++) { /* as the training batches scale pixels */
        const uint8_t *u = e->init + (size_t)((first + i) / e->per_image) * D;
        for (size_t d = 0; d < D; d++) x_init[(size_t)i * D + d] = (float)u[d] / 127.5f - 1.0f;
    }
    for (size_t d = 0; keep && e->mask && d < D; d++) keep[d] = !e->mask[d % HW];
    *se = (ddpm_sampler_edit){.x_init = x_init, .strength = e->strength, .keep = e->mask ? keep : NULL,
                              .resample = e->resample};
    return DDPM_OK;
}

/* The edit of o against the sampler; *K (may be NULL) the steps it runs. */
static ddpm_status check_edit(const ddpm_pipeline *p, const ddpm_draw_opts *o, int *K) {
    static const float present = 0.0f; /* stands for the images: only whether they exist is checked */
    static const uint8_t yes = 1;
    ddpm_sampler_edit se;
    ddpm_status st = make_edit(p, o->edit, 0, 0, NULL, NULL, &se);
    if (st) return st;
    se.x_init = &present, se.keep = o->edit->mask ? &yes : NULL;
    ddpm_sampler sm;
    if (!(st = ddpm_sampler_create(&sm, &p->s, &o->sampler, 1, 1))) {
        int steps = 0;
        st = ddpm_sampler_edit_steps(&sm, &se, &steps);
        if (!st && K) *K = steps;
    }
    ddpm_sampler_destroy(&sm);
    return st;
}

ddpm_status ddpm_pipeline_check(const ddpm_pipeline *p, const ddpm_draw_opts *o, int *K) {
    int T = p->info.T, C = p->info.cfg.num_classes;
    ddpm_sampler_kind kind = o->sampler.kind;
    if ((unsigned)kind > DDPM_SAMPLER_EULER_A) return ddpm_error(DDPM_ERR_ARG, "unknown sampler %d", (int)kind);
    int kmax = ddpm_sampler_max_steps(kind, T);
    if (o->sampler.steps > kmax && kind == DDPM_SAMPLER_DPMPP_2M)
        return ddpm_error(DDPM_ERR_ARG, "%d sampling steps: dpm++2m takes at most T-1 = %d steps for the model's T = %d "
                                        "(it never calls the model at t = 0)", o->sampler.steps, kmax, T);
    if (o->sampler.steps > kmax)
        return ddpm_error(DDPM_ERR_ARG, "%d sampling steps: %s takes at most %d steps for the model's T = %d",
                          o->sampler.steps, ddpm_sampler_name(kind), kmax, T);
    if (o->sampler.steps < 0) return ddpm_error(DDPM_ERR_ARG, "%d sampling steps", o->sampler.steps);
    if ((o->label >= 0 || o->guided || o->labels) && C == 0)
        return ddpm_error(DDPM_ERR_ARG, "%s: the model%s%s%s is unconditional (trained without --classes)",
                          o->guided ? "guidance" : "a label", *p->path ? " in '" : "", p->path, *p->path ? "'" : "");
    if (o->label >= C && C > 0)
        return ddpm_error(DDPM_ERR_ARG, "label %d out of range: the model has %d classes (0..%d)", o->label, C, C - 1);
    if (o->guided && !(o->guidance >= 0.0f && o->guidance <= 1e6f))
        return ddpm_error(DDPM_ERR_ARG, "guidance weight %g is not a finite number >= 0", (double)o->guidance);
    if (K) *K = o->sampler.steps ? o->sampler.steps : ddpm_sampler_default_steps(kind, T);
    return o->edit ? check_edit(p, o, K) : DDPM_OK;
}

void ddpm_pipeline_labels(const ddpm_pipeline *p, const ddpm_draw_opts *o, int first, int n, int *labels) {
    int C = p->info.cfg.num_classes;
    for (int i = 0; i < n; i++)
        labels[i] = C == 0 ? -1 : o->labels ? o->labels[i] : o->label >= 0 ? o->label : o->edit ? C : (first + i) % C;
}

/* The model the sampler calls (guided or not), set up for batches of B. */
static ddpm_status model_for(ddpm_pipeline *p, const ddpm_draw_opts *o, int B, ddpm_guidance *g, ddpm_model_fn *fn,
                             void **ctx) {
    ddpm_status st = make_unet(p, o->guided ? 2 * B : B);
    if (!st && o->guided) st = ddpm_guidance_init(g, ddpm_objective_eps, &p->om, o->guidance, p->info.cfg.num_classes,
                                                  p->info.D, B);
    *fn = o->guided ? ddpm_guidance_eps : ddpm_objective_eps;
    *ctx = o->guided ? (void *)g : (void *)&p->om;
    return st;
}

ddpm_status ddpm_pipeline_draw(ddpm_pipeline *p, const ddpm_draw_opts *o, int first, int n, float *x) {
    ddpm_status st = ddpm_pipeline_check(p, o, NULL);
    if (st) return st;
    if (n < 1 || first < 0) return ddpm_error(DDPM_ERR_ARG, "cannot draw %d images from index %d", n, first);
    int B = n < p->max_batch ? n : p->max_batch, C = p->info.cfg.num_classes;
    size_t D = p->info.D;
    ddpm_sampler sm = {0};
    ddpm_guidance g = {0};
    ddpm_sampler_edit se;
    ddpm_model_fn fn;
    void *ctx;
    int *labels = C > 0 ? malloc((size_t)n * sizeof(int)) : NULL;
    float *x_init = o->edit ? ddpm_malloc((size_t)n * D * sizeof(float)) : NULL; /* [n, D] */
    uint8_t *keep = o->edit ? malloc(D) : NULL;                                  /* [D] */
    if ((C > 0 && !labels) || (o->edit && (!x_init || !keep)))
        st = ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d images", n);
    if (!st && labels) ddpm_pipeline_labels(p, o, first, n, labels);
    if (!st && o->edit) st = make_edit(p, o->edit, first, n, x_init, keep, &se);
    if (!st) st = model_for(p, o, B, &g, &fn, &ctx);
    if (!st) st = ddpm_sampler_create(&sm, &p->s, &o->sampler, D, B);
    if (!st) st = ddpm_sampler_run_edit(&sm, x, first, n, o->seed, labels, fn, ctx, o->on_step, o->ud, o->edit ? &se : NULL);
    ddpm_guidance_free(&g);
    ddpm_sampler_destroy(&sm);
    free(labels);
    ddpm_free(x_init);
    free(keep);
    return st;
}

ddpm_status ddpm_pipeline_draw_u8(ddpm_pipeline *p, const ddpm_draw_opts *o, int first, int n, uint8_t *u8) {
    size_t D = p->info.D;
    float *x = ddpm_malloc((size_t)n * D * sizeof(float));
    if (!x) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d images", n);
    ddpm_status st = ddpm_pipeline_draw(p, o, first, n, x);
    if (!st) ddpm_image_to_u8(u8, x, (size_t)n * D);
    ddpm_free(x);
    return st;
}

ddpm_status ddpm_pipeline_eps(void *ctx, float *eps_hat, const float *x, const int *t, const int *labels, int N) {
    ddpm_pipeline *p = ctx;
    if (N > p->max_batch)
        return ddpm_error(DDPM_ERR_ARG, "%d images in one model call; the pipeline takes at most %d", N, p->max_batch);
    return ddpm_objective_eps(&p->om, eps_hat, x, t, labels, N);
}

void ddpm_pipeline_set_precision(ddpm_pipeline *p, ddpm_precision prec) {
    p->info.precision = prec;
    ddpm_unet_set_precision(p->unet, prec);
}

/* ---- editing inputs, inversion, interpolation ------------------------------------------------ */

/* True when path starts like an IDX file (raw magic 0x0000080x, or gzip). */
static bool looks_like_idx(const char *path) {
    unsigned char b[4] = {0};
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(b, 1, 4, f) : 0;
    if (f) fclose(f);
    return (got >= 2 && b[0] == 0x1f && b[1] == 0x8b) || (got == 4 && !b[0] && !b[1] && b[2] == 0x08);
}

static void folder_opts(const ddpm_pipeline *p, ddpm_folder_options *fo, int channels) {
    ddpm_folder_options_default(fo);
    fo->size = p->info.cfg.res;
    fo->channels = channels;
    fo->strict = true; /* an input that is not an image is an error, not a skip */
}

ddpm_status ddpm_pipeline_load_images(const ddpm_pipeline *p, const char *path, uint8_t **u8, int *n) {
    const ddpm_unet_config *c = &p->info.cfg;
    ddpm_folder_options fo;
    folder_opts(p, &fo, c->in_ch);
    *u8 = NULL, *n = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) return ddpm_error(DDPM_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        ddpm_image_folder f;
        ddpm_dataset ds;
        ddpm_status st = ddpm_folder_load(&f, path, &fo, NULL);
        if (st) return st;
        st = ddpm_folder_to_dataset(&ds, &f);
        ddpm_folder_free(&f);
        if (st) return st;
        *u8 = ds.pixels, *n = ds.n;
        ds.pixels = NULL;
        ddpm_dataset_free(&ds);
        return DDPM_OK;
    }
    if (!looks_like_idx(path)) {
        ddpm_status st = ddpm_image_file_load(u8, path, &fo);
        if (!st) *n = 1;
        return st;
    }
    ddpm_idx im;
    ddpm_status st = ddpm_idx_read(&im, path, DDPM_IDX_IMAGES);
    if (st) return st;
    int ch = im.ndim == 4 ? im.dims[1] : 1, h = im.dims[im.ndim - 2], w = im.dims[im.ndim - 1];
    if (ch != c->in_ch || h != c->res || w != c->res) {
        ddpm_idx_free(&im);
        return ddpm_error(DDPM_ERR_FORMAT, "'%s' holds %d x %d x %d images; the model takes %d x %d x %d", path, ch, h, w,
                          c->in_ch, c->res, c->res);
    }
    *u8 = im.data, *n = im.dims[0];
    return DDPM_OK;
}

ddpm_status ddpm_pipeline_load_mask(const ddpm_pipeline *p, const char *path, uint8_t **mask) {
    ddpm_folder_options fo;
    folder_opts(p, &fo, 1);
    ddpm_status st = ddpm_image_file_load(mask, path, &fo);
    for (int i = 0; !st && i < p->info.cfg.res * p->info.cfg.res; i++) (*mask)[i] = (*mask)[i] >= 128;
    return st;
}

ddpm_status ddpm_pipeline_invert(ddpm_pipeline *p, const ddpm_draw_opts *o, int first, int n, const float *x0,
                                 float *xT) {
    ddpm_status st = ddpm_pipeline_check(p, o, NULL);
    if (st) return st;
    if (o->sampler.kind != DDPM_SAMPLER_DDIM) return ddpm_error(DDPM_ERR_ARG, "inversion runs the ddim sampler");
    int B = n < p->max_batch ? n : p->max_batch, C = p->info.cfg.num_classes;
    ddpm_sampler sm = {0};
    ddpm_guidance g = {0};
    ddpm_model_fn fn;
    void *ctx;
    int *labels = C > 0 ? malloc((size_t)n * sizeof(int)) : NULL;
    if (C > 0 && !labels) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d labels", n);
    if (labels) ddpm_pipeline_labels(p, o, first, n, labels);
    memcpy(xT, x0, (size_t)n * p->info.D * sizeof(float));
    st = model_for(p, o, B, &g, &fn, &ctx);
    if (!st) st = ddpm_sampler_create(&sm, &p->s, &o->sampler, p->info.D, B);
    if (!st) st = ddpm_sampler_invert(&sm, xT, n, labels, fn, ctx);
    ddpm_guidance_free(&g);
    ddpm_sampler_destroy(&sm);
    free(labels);
    return st;
}

/* The latent of image a (inverted) or of seed's image 0 (its x_T draw) into z [D]. */
static ddpm_status interp_end(ddpm_pipeline *p, const ddpm_draw_opts *o, const uint8_t *a, uint64_t seed, float *z,
                              float *tmp) {
    size_t D = p->info.D;
    if (!a) {
        ddpm_rng r;
        ddpm_rng_seed(&r, ddpm_sampler_image_seed(seed, 0));
        ddpm_rng_fill_normal(&r, z, D);
        return DDPM_OK;
    }
    for (size_t d = 0; d < D; d++) tmp[d] = (float)a[d] / 127.5f - 1.0f;
    return ddpm_pipeline_invert(p, o, 0, 1, tmp, z);
}

ddpm_status ddpm_pipeline_interp(ddpm_pipeline *p, const ddpm_draw_opts *o, const ddpm_interp_opts *io, float *x) {
    if (io->frames < 2) return ddpm_error(DDPM_ERR_ARG, "an interpolation needs at least 2 frames, got %d", io->frames);
    if (o->sampler.kind != DDPM_SAMPLER_DDIM || o->sampler.eta != 0.0f)
        return ddpm_error(DDPM_ERR_ARG, "interpolation decodes with the ddim sampler, eta 0");
    size_t D = p->info.D;
    int F = io->frames, C = p->info.cfg.num_classes;
    ddpm_draw_opts od = *o;
    od.edit = NULL;
    if (C > 0 && od.label < 0 && !od.labels) od.label = 0; /* one class along the strip */
    float *buf = ddpm_malloc((size_t)(F + 3) * D * sizeof(float)); /* [F, D] latents, a, b, scratch */
    if (!buf) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d frames", F);
    float *za = buf + (size_t)F * D, *zb = za + D, *tmp = zb + D;
    bool use_images = io->a && io->b;
    ddpm_status st = interp_end(p, &od, use_images ? io->a : NULL, io->seed_a, za, tmp);
    if (!st) st = interp_end(p, &od, use_images ? io->b : NULL, io->seed_b, zb, tmp);
    for (int k = 0; !st && k < F; k++) ddpm_slerp(buf + (size_t)k * D, za, zb, D, (double)k / (F - 1));
    int B = F < p->max_batch ? F : p->max_batch;
    ddpm_sampler sm = {0};
    ddpm_guidance g = {0};
    ddpm_model_fn fn;
    void *ctx;
    int *labels = C > 0 ? malloc((size_t)F * sizeof(int)) : NULL;
    if (!st && C > 0 && !labels) st = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    if (!st && labels) ddpm_pipeline_labels(p, &od, 0, F, labels);
    ddpm_sampler_edit se = {.x_T = buf};
    if (!st) st = model_for(p, &od, B, &g, &fn, &ctx);
    if (!st) st = ddpm_sampler_create(&sm, &p->s, &od.sampler, D, B);
    if (!st) st = ddpm_sampler_run_edit(&sm, x, 0, F, od.seed, labels, fn, ctx, od.on_step, od.ud, &se);
    ddpm_guidance_free(&g);
    ddpm_sampler_destroy(&sm);
    free(labels);
    ddpm_free(buf);
    return st;
}

/* ---- the progress line of a draw --------------------------------------------- */

void ddpm_draw_progress_start(ddpm_draw_progress *v, FILE *out, int n, int batch, int K) {
    char what[64];
    v->n = n, v->B = batch < n ? batch : n, v->nchunks = (n + v->B - 1) / v->B;
    snprintf(what, sizeof what, "sampling %d images", n);
    ddpm_progress_start(&v->p, out, what, (long)v->nchunks * K, "steps");
}

void ddpm_draw_progress_step(void *ud, int first, int N, int step, int K, const float *x) {
    (void)N, (void)x;
    ddpm_draw_progress *v = ud;
    if (step == 1 && v->nchunks > 1)
        snprintf(v->p.what, sizeof v->p.what, "sampling %d images, batch %d/%d", v->n, first / v->B + 1, v->nchunks);
    if (step > 0) ddpm_progress_tick(&v->p, (long)(first / v->B) * K + step);
}

/* ---- a draw's trajectory ------------------------------------------------------ */

ddpm_status ddpm_trajectory_init(ddpm_trajectory *t, int n, int K, size_t D) {
    *t = (ddpm_trajectory){.K = K, .D = D, .rows = n < DDPM_TRAJ_ROWS ? n : DDPM_TRAJ_ROWS};
    t->cols = K + 1 < DDPM_TRAJ_COLS ? K + 1 : DDPM_TRAJ_COLS;
    for (int j = 0; j < t->cols; j++) t->step[j] = t->cols > 1 ? (j * K + (t->cols - 1) / 2) / (t->cols - 1) : K;
    t->x = calloc((size_t)t->rows * t->cols * D, sizeof(float));
    return t->x ? DDPM_OK : ddpm_error(DDPM_ERR_NOMEM, "out of memory for a trajectory of %d images", t->rows);
}

void ddpm_trajectory_step(void *ud, int first, int N, int step, int K, const float *x) {
    ddpm_trajectory *t = ud;
    for (int j = 0; j < t->cols; j++)
        for (int i = 0; t->step[j] == step && i < N && first + i < t->rows; i++)
            memcpy(t->x + ((size_t)(first + i) * t->cols + j) * t->D, x + i * t->D, t->D * sizeof(float));
    if (t->next) t->next(t->next_ud, first, N, step, K, x);
}

void ddpm_trajectory_free(ddpm_trajectory *t) {
    free(t->x);
    t->x = NULL;
}
