/* pipeline.c: a trained model ready to draw images (pipeline.h). */
#include "ddpm/pipeline.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
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
    ddpm_status st = alloc_pipeline(out, &m->cfg, o);
    if (st) return st;
    ddpm_pipeline *p = *out;
    p->info.schedule = m->schedule;
    p->info.T = m->T;
    p->info.objective = m->objective;
    memcpy(p->params, m->params, p->nparams * sizeof(float));
    if ((st = finish(p))) {
        ddpm_pipeline_free(p);
        *out = NULL;
    }
    return st;
}

/* A copy of the metadata in one block: entries, then the strings. */
static ddpm_status copy_meta(ddpm_pipeline *p, const ddpm_st_file *f) {
    size_t bytes = (size_t)f->nmeta * sizeof(ddpm_st_meta);
    for (int i = 0; i < f->nmeta; i++) bytes += strlen(f->meta[i].key) + strlen(f->meta[i].value) + 2;
    if (!(p->meta = malloc(bytes ? bytes : 1))) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for metadata");
    char *s = (char *)(p->meta + f->nmeta);
    for (int i = 0; i < f->nmeta; i++) {
        size_t a = strlen(f->meta[i].key) + 1, b = strlen(f->meta[i].value) + 1;
        p->meta[i].key = memcpy(s, f->meta[i].key, a);
        p->meta[i].value = memcpy(s + a, f->meta[i].value, b);
        s += a + b;
    }
    p->nmeta = f->nmeta;
    return DDPM_OK;
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
    if (n != p->info.cfg.num_classes)
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
    if (!st) st = copy_meta(p, &ck.file);
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
    for (int i = 0; i < p->nmeta; i++)
        if (!strcmp(p->meta[i].key, key)) return p->meta[i].value;
    return NULL;
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
    return DDPM_OK;
}

void ddpm_pipeline_labels(const ddpm_pipeline *p, const ddpm_draw_opts *o, int first, int n, int *labels) {
    int C = p->info.cfg.num_classes;
    for (int i = 0; i < n; i++)
        labels[i] = C == 0 ? -1 : o->labels ? o->labels[i] : o->label >= 0 ? o->label : (first + i) % C;
}

ddpm_status ddpm_pipeline_draw(ddpm_pipeline *p, const ddpm_draw_opts *o, int first, int n, float *x) {
    ddpm_status st = ddpm_pipeline_check(p, o, NULL);
    if (st) return st;
    if (n < 1 || first < 0) return ddpm_error(DDPM_ERR_ARG, "cannot draw %d images from index %d", n, first);
    int B = n < p->max_batch ? n : p->max_batch, C = p->info.cfg.num_classes;
    size_t D = p->info.D;
    ddpm_sampler sm = {0};
    ddpm_guidance g = {0};
    int *labels = NULL;
    if (C > 0 && !(labels = malloc((size_t)n * sizeof(int))))
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d labels", n);
    if (labels) ddpm_pipeline_labels(p, o, first, n, labels);
    st = make_unet(p, o->guided ? 2 * B : B);
    if (!st) st = ddpm_sampler_create(&sm, &p->s, &o->sampler, D, B);
    if (!st && o->guided) st = ddpm_guidance_init(&g, ddpm_objective_eps, &p->om, o->guidance, C, D, B);
    if (!st)
        st = ddpm_sampler_run(&sm, x, first, n, o->seed, labels, o->guided ? ddpm_guidance_eps : ddpm_objective_eps,
                              o->guided ? (void *)&g : (void *)&p->om, o->on_step, o->ud);
    ddpm_guidance_free(&g);
    ddpm_sampler_destroy(&sm);
    free(labels);
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
