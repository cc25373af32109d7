/* args.c: see args.h. */
#define _POSIX_C_SOURCE 200809L
#include "args.h"
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "core/util.h"
#include "ddpm/common.h"
#include "ddpm/datasource.h"
#include "ddpm/tensor.h"

#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

/* opt is what the user typed: quoted through ddpm_show (printable, cut), so
 * the message stays one short line whatever the value holds. */
static int usage_error(const char *cmd, const char *msg, const char *opt) {
    fprintf(stderr, "ddpm %s: %s '%s' (see 'ddpm %s --help')\n", cmd, msg, ddpm_show(opt).s, cmd);
    return 2;
}

static void print_help(const ddpm_opt *opts, int nopts, const char *synopsis, const char *epilog) {
    printf("%s\n\noptions:\n", synopsis);
    for (int i = 0; i < nopts; i++) {
        const ddpm_opt *o = &opts[i];
        char left[64];
        snprintf(left, sizeof left, "%s%s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "",
                 o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        printf("  %-26s %s\n", left, o->help);
    }
    printf("  %-26s %s\n", "-h, --help", "show this help");
    if (epilog) printf("\n%s\n", epilog);
}

static int set_value(const char *cmd, ddpm_opt *o, const char *val) {
    char msg[160];
    char *end;
    switch (o->type) {
    case OPT_INT: {
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end) {
            snprintf(msg, sizeof msg, "%s expects an integer, got", o->name);
            return usage_error(cmd, msg, val);
        }
        if (v < (long long)o->min || v > (long long)o->max) {
            snprintf(msg, sizeof msg, "%s must be in [%.0f, %.0f], got", o->name, o->min, o->max);
            return usage_error(cmd, msg, val);
        }
        *(int *)o->dst = (int)v;
        return 0;
    }
    case OPT_U64: {
        errno = 0;
        if (val[0] == '-') {
            snprintf(msg, sizeof msg, "%s expects a non-negative integer, got", o->name);
            return usage_error(cmd, msg, val);
        }
        unsigned long long v = strtoull(val, &end, 10);
        if (errno || end == val || *end) {
            snprintf(msg, sizeof msg, "%s expects a non-negative 64-bit integer, got", o->name);
            return usage_error(cmd, msg, val);
        }
        *(uint64_t *)o->dst = (uint64_t)v;
        return 0;
    }
    case OPT_FLOAT: {
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v)) {
            snprintf(msg, sizeof msg, "%s expects a number, got", o->name);
            return usage_error(cmd, msg, val);
        }
        if (v < o->min || v > o->max) {
            snprintf(msg, sizeof msg, "%s must be in [%g, %g], got", o->name, o->min, o->max);
            return usage_error(cmd, msg, val);
        }
        *(float *)o->dst = (float)v;
        return 0;
    }
    case OPT_STRING:
        if (!*val) {
            snprintf(msg, sizeof msg, "%s expects a non-empty value, got", o->name);
            return usage_error(cmd, msg, val);
        }
        if (strlen(val) >= DDPM_CLI_MAX_VALUE) { /* no path or name is this long (PATH_MAX is 4096) */
            snprintf(msg, sizeof msg, "%s: value longer than %d bytes:", o->name, DDPM_CLI_MAX_VALUE - 1);
            return usage_error(cmd, msg, val);
        }
        *(const char **)o->dst = val;
        return 0;
    case OPT_INTLIST: {
        ddpm_opt_list *l = o->dst;
        int n = !strcmp(val, "none") ? 0 : ddpm_parse_int_list(val, l->v, DDPM_MAX_LEVELS);
        if (n < 0) {
            snprintf(msg, sizeof msg, "%s expects a comma-separated list of up to %d integers, got",
                     o->name, DDPM_MAX_LEVELS);
            return usage_error(cmd, msg, val);
        }
        l->n = n;
        return 0;
    }
    case OPT_FLAG: *(bool *)o->dst = true; return 0;
    }
    return 2;
}

int ddpm_opts_parse(const char *cmd, int argc, char **argv, ddpm_opt *opts, int nopts,
                    const char *synopsis, const char *epilog) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            print_help(opts, nopts, synopsis, epilog);
            return 1;
        }
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        ddpm_opt *o = NULL;
        for (int k = 0; k < nopts && !o; k++) {
            if ((strlen(opts[k].name) == len && !strncmp(opts[k].name, a, len)) ||
                (!eq && opts[k].alias && !strcmp(opts[k].alias, a)))
                o = &opts[k];
        }
        if (!o) return usage_error(cmd, a[0] == '-' ? "unknown option" : "unexpected argument", a);
        if (o->seen) return usage_error(cmd, "option given twice:", o->name);
        o->seen = true;
        if (o->type == OPT_FLAG) {
            if (eq) return usage_error(cmd, "option takes no value:", a);
            *(bool *)o->dst = true;
            continue;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc) return usage_error(cmd, "missing value for", a);
            val = argv[++i];
        }
        int rc = set_value(cmd, o, val);
        if (rc) return rc;
    }
    return 0;
}

const ddpm_opt *ddpm_opts_find(const ddpm_opt *opts, int nopts, const char *name) {
    for (int i = 0; i < nopts; i++)
        if (!strcmp(opts[i].name, name)) return &opts[i];
    return NULL;
}

bool ddpm_opts_seen(const ddpm_opt *opts, int nopts, const char *name) {
    const ddpm_opt *o = ddpm_opts_find(opts, nopts, name);
    return o && o->seen;
}

void ddpm_model_flags_init(ddpm_model_flags *f, const ddpm_unet_config *d) {
    memset(f, 0, sizeof *f);
    f->in_ch = d->in_ch;
    f->res = d->res;
    f->ch = d->ch;
    f->num_res_blocks = d->num_res_blocks;
    f->groups = d->groups;
    f->num_classes = d->num_classes;
    f->dropout = d->dropout;
    f->ch_mult.n = d->num_levels;
    memcpy(f->ch_mult.v, d->ch_mult, sizeof d->ch_mult);
    f->attn.n = d->num_attn;
    memcpy(f->attn.v, d->attn_res, sizeof d->attn_res);
}

void ddpm_model_opts(ddpm_opt *o, ddpm_model_flags *f) {
    const ddpm_opt t[] = {
        {"--channels", NULL, OPT_INT, &f->in_ch, 1, 64, "C", "image channels (default: the dataset's, 1 for MNIST)"},
        {"--size", NULL, OPT_INT, &f->res, 4, 1024, "PX", "image height = width (default: the dataset's, 28)"},
        {"--ch", NULL, OPT_INT, &f->ch, 2, 4096, "N", "base channel width (default 32)"},
        {"--ch-mult", NULL, OPT_INTLIST, &f->ch_mult, 0, 0, "LIST", "width multiplier per level (default 1,2,2)"},
        {"--res-blocks", NULL, OPT_INT, &f->num_res_blocks, 1, 16, "N", "ResBlocks per level (default 2)"},
        {"--attn", NULL, OPT_INTLIST, &f->attn, 0, 0, "LIST", "resolutions with self-attention, or none (default 7)"},
        {"--groups", NULL, OPT_INT, &f->groups, 1, 1024, "N", "GroupNorm groups (default 8)"},
        {"--classes", NULL, OPT_INT, &f->num_classes, 0, 100000, "K", "class-conditional with K classes (default 0: unconditional)"},
        {"--dropout", NULL, OPT_FLOAT, &f->dropout, 0.0, 0.99, "P", "dropout in ResBlocks (default 0)"},
    };
    _Static_assert(DDPM_COUNT(t) == DDPM_MODEL_OPTS, "DDPM_MODEL_OPTS must count the model flags");
    memcpy(o, t, sizeof t);
}

void ddpm_model_flags_apply(const ddpm_model_flags *f, ddpm_unet_config *c) {
    c->in_ch = f->in_ch;
    c->res = f->res;
    c->ch = f->ch;
    c->num_res_blocks = f->num_res_blocks;
    c->groups = f->groups;
    c->num_classes = f->num_classes;
    c->dropout = f->dropout;
    c->num_levels = f->ch_mult.n;
    memcpy(c->ch_mult, f->ch_mult.v, sizeof c->ch_mult);
    c->num_attn = f->attn.n;
    memcpy(c->attn_res, f->attn.v, sizeof c->attn_res);
}

void ddpm_model_flags_preset(ddpm_model_flags *f, const ddpm_opt *opts, int nopts, bool size_known) {
    ddpm_unet_config p;
    if (!(size_known || ddpm_opts_seen(opts, nopts, "--size")) || !ddpm_unet_preset(&p, f->in_ch, f->res)) return;
    if (!ddpm_opts_seen(opts, nopts, "--ch")) f->ch = p.ch;
    if (!ddpm_opts_seen(opts, nopts, "--res-blocks")) f->num_res_blocks = p.num_res_blocks;
    if (!ddpm_opts_seen(opts, nopts, "--groups")) f->groups = p.groups;
    if (!ddpm_opts_seen(opts, nopts, "--ch-mult")) {
        f->ch_mult.n = p.num_levels;
        memcpy(f->ch_mult.v, p.ch_mult, sizeof p.ch_mult);
    }
    if (!ddpm_opts_seen(opts, nopts, "--attn")) {
        f->attn.n = p.num_attn;
        memcpy(f->attn.v, p.attn_res, sizeof p.attn_res);
    }
}

int ddpm_cli_check_writable(const char *cmd, const char *path) {
    if (!ddpm_check_writable(path)) return 0;
    ddpm_cli_error(cmd);
    return 1;
}

void ddpm_cli_error(const char *cmd) { fprintf(stderr, "ddpm %s: %s\n", cmd, ddpm_last_error()); }


void ddpm_cli_command_line(char *buf, size_t cap, int argc, char **argv) {
    size_t n = (size_t)snprintf(buf, cap, "ddpm");
    for (int i = 0; i < argc && n < cap; i++) {
        bool plain = *argv[i] && strspn(argv[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                                 "-_.,/:=+@%") == strlen(argv[i]);
        n += (size_t)snprintf(buf + n, cap - n, plain ? " %s" : " '%s'", argv[i]);
    }
}

/* ---- where --data NAME lives (cmd_eval, cmd_noise), class names (cmd_info) ---- */

ddpm_status ddpm_cli_data_dir(char *out_dir, size_t cap, const char *data, const char *data_dir) {
    ddpm_data_opts o;
    ddpm_data_opts_default(&o);
    o.data = data, o.data_dir = data_dir, o.env_dir = getenv("DDPM_DATA_DIR");
    return ddpm_data_find(out_dir, cap, &o);
}

void ddpm_cli_print_classes(const ddpm_checkpoint *ck) {
    const char *json = ddpm_checkpoint_meta(ck, DDPM_META_CLASSES);
    char **names;
    int n;
    if (!json || ddpm_folder_classes_parse(json, &names, &n)) return;
    printf("classes (folder name -> label):\n");
    for (int i = 0; i < n; i++) printf("  %5d  %s\n", i, names[i]);
    printf("\n");
    ddpm_folder_classes_free(names, n);
}

/* ---- the sampling flags of `sample` and `eval` ----------------------------------- */

int ddpm_cli_draw_opts(const char *cmd, ddpm_draw_opts *o, const char *sampler, int steps, const char *spacing,
                       float eta, bool eta_seen, const char *var, bool var_seen) {
    ddpm_draw_opts_default(o);
    int kind = ddpm_sampler_parse(sampler), v = ddpm_var_parse(var), sp = spacing ? ddpm_spacing_parse(spacing) : 0;
    const char *why = NULL, *arg = NULL;
    if (kind < 0) why = "unknown --sampler '%s' (expected ddpm, ddim, dpm++2m, euler, heun or euler_a)", arg = sampler;
    else if (v < 0) why = "unknown --var '%s' (expected small or large)", arg = var;
    else if (sp < 0) why = "unknown --spacing '%s' (expected uniform, quadratic or logsnr)", arg = spacing;
    else if (kind != DDPM_SAMPLER_DDIM && eta_seen) why = "--eta applies to --sampler ddim only";
    else if (kind != DDPM_SAMPLER_DDPM && var_seen) why = "--var applies to --sampler ddpm only";
    else if ((kind == DDPM_SAMPLER_DDPM || ddpm_sampler_is_karras((ddpm_sampler_kind)kind)) && spacing)
        why = "--spacing applies to --sampler ddim and dpm++2m";
    if (why) {
        fprintf(stderr, "ddpm %s: ", cmd);
        fprintf(stderr, why, arg ? ddpm_show(arg).s : "");
        fputc('\n', stderr);
        return 2;
    }
    o->sampler = (ddpm_sampler_opts){(ddpm_sampler_kind)kind, steps, eta, (ddpm_var_kind)v, (ddpm_spacing)sp};
    return -1;
}

void ddpm_cli_sampler_detail(char *buf, size_t cap, const ddpm_sampler_opts *o) {
    if (o->kind == DDPM_SAMPLER_DDPM) snprintf(buf, cap, "var %s", ddpm_var_name(o->var));
    else if (o->kind == DDPM_SAMPLER_DDIM) snprintf(buf, cap, "eta %g", (double)o->eta);
    else if (ddpm_sampler_is_karras(o->kind)) {
        snprintf(buf, cap, "%s, %s sigmas", o->kind == DDPM_SAMPLER_EULER_A ? "ancestral" : o->churn > 0.0f ? "churn" : "deterministic",
                 ddpm_sigmas_name(o->sigmas));
        if (o->churn > 0.0f) snprintf(buf + strlen(buf), cap - strlen(buf), ", S_churn %g", (double)o->churn);
        return;
    } else snprintf(buf, cap, "deterministic");
    ddpm_spacing sp = o->spacing ? o->spacing : ddpm_sampler_default_spacing(o->kind);
    size_t n = strlen(buf);
    if (o->kind != DDPM_SAMPLER_DDPM && n < cap) snprintf(buf + n, cap - n, ", %s spacing", ddpm_spacing_name(sp));
}

int ddpm_cli_open_pipeline(const char *cmd, ddpm_pipeline **p, const char **ckpt, bool raw_weights, int max_batch,
                           const char *precision) {
    struct stat st;
    int prec = precision ? ddpm_precision_parse(precision) : 0;
    if (prec < 0) {
        fprintf(stderr, "ddpm %s: unknown --precision '%s' (expected fp32 or bf16)\n", cmd, ddpm_show(precision).s);
        return 2;
    }
    if (!*ckpt) {
        *ckpt = DDPM_DEFAULT_RUN_DIR "/" DDPM_CKPT_FILE;
        if (stat(*ckpt, &st) != 0 && errno == ENOENT) {
            fprintf(stderr, "ddpm %s: no checkpoint at '%s': run 'ddpm train' first, or name one with -c FILE\n", cmd,
                    *ckpt);
            return 1;
        }
    }
    ddpm_pipeline_opts po = {.raw_weights = raw_weights, .max_batch = max_batch};
    if (!ddpm_pipeline_open(p, *ckpt, &po)) {
        if (precision) ddpm_pipeline_set_precision(*p, (ddpm_precision)prec);
        return 0;
    }
    ddpm_cli_error(cmd);
    return 1;
}

bool ddpm_ends_with_png(const char *path) {
    size_t n = strlen(path);
    return n >= 4 && (!strcmp(path + n - 4, ".png") || !strcmp(path + n - 4, ".PNG"));
}

void ddpm_cli_error_flag(const char *cmd, const char *flag) {
    fprintf(stderr, "ddpm %s: %s: %s\n", cmd, flag, ddpm_last_error());
}

int ddpm_cli_check_draw(const char *cmd, const ddpm_pipeline *p, const ddpm_draw_opts *o, int *K) {
    if (!ddpm_pipeline_check(p, o, K)) return -1;
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    bool steps = o->sampler.steps > ddpm_sampler_max_steps(o->sampler.kind, in->T);
    ddpm_cli_error_flag(cmd, steps ? "--sample-steps" : o->guided ? "--guidance" : "--label");
    return 2;
}

void ddpm_cli_draw_view_start(ddpm_cli_draw_view *v, int n, int batch, int K) {
    char what[64];
    v->n = n, v->B = batch < n ? batch : n, v->nchunks = (n + v->B - 1) / v->B;
    snprintf(what, sizeof what, "sampling %d images", n);
    ddpm_progress_start(&v->p, stderr, what, (long)v->nchunks * K, "model calls");
}

void ddpm_cli_draw_on_step(void *ud, int first, int N, int step, int K, const float *x) {
    (void)N, (void)x;
    ddpm_cli_draw_view *v = ud;
    if (step == 1 && v->nchunks > 1)
        snprintf(v->p.what, sizeof v->p.what, "sampling %d images, batch %d/%d", v->n, first / v->B + 1, v->nchunks);
    if (step > 0) ddpm_progress_tick(&v->p, (long)(first / v->B) * K + step);
}
