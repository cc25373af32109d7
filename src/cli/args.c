/* args.c: the option parser and the flag groups and messages the commands share; see cli.h. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ddpm/datasource.h"

/* "ddpm CMD: <the printf message> 'OPT' (see 'ddpm CMD --help')": 2. opt is
 * what the user typed: quoted through ddpm_show (printable, cut), so the
 * message stays one short line whatever the value holds. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int usage_error(const char *cmd, const char *opt, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ddpm %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " '%s' (see 'ddpm %s --help')\n", ddpm_show(opt).s, cmd);
    va_end(ap);
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
    char *end;
    errno = 0;
    switch (o->type) {
    case OPT_INT: {
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end) return usage_error(cmd, val, "%s expects an integer, got", o->name);
        if (v < (long long)o->min || v > (long long)o->max)
            return usage_error(cmd, val, "%s must be in [%.0f, %.0f], got", o->name, o->min, o->max);
        *(int *)o->dst = (int)v;
        return 0;
    }
    case OPT_U64: {
        if (val[0] == '-') return usage_error(cmd, val, "%s expects a non-negative integer, got", o->name);
        unsigned long long v = strtoull(val, &end, 10);
        if (errno || end == val || *end) return usage_error(cmd, val, "%s expects a non-negative 64-bit integer, got", o->name);
        *(uint64_t *)o->dst = (uint64_t)v;
        return 0;
    }
    case OPT_FLOAT: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v)) return usage_error(cmd, val, "%s expects a number, got", o->name);
        if (v < o->min || v > o->max) return usage_error(cmd, val, "%s must be in [%g, %g], got", o->name, o->min, o->max);
        *(float *)o->dst = (float)v;
        return 0;
    }
    case OPT_STRING:
        if (!*val) return usage_error(cmd, val, "%s expects a non-empty value, got", o->name);
        if (strlen(val) >= DDPM_CLI_MAX_VALUE) /* no path or name is this long (PATH_MAX is 4096) */
            return usage_error(cmd, val, "%s: value longer than %d bytes:", o->name, DDPM_CLI_MAX_VALUE - 1);
        *(const char **)o->dst = val;
        return 0;
    case OPT_INTLIST: {
        int n = !strcmp(val, "none") ? 0 : ddpm_parse_int_list(val, o->dst, DDPM_MAX_LEVELS);
        if (n < 0)
            return usage_error(cmd, val, "%s expects a comma-separated list of up to %d integers, got", o->name,
                               DDPM_MAX_LEVELS);
        *o->count = n;
        return 0;
    }
    case OPT_FLAG: *(bool *)o->dst = true; return 0;
    }
    return 2;
}

int ddpm_opts_parse(const char *cmd, int argc, char **argv, ddpm_opt *opts, int nopts,
                    const char *synopsis, const char *epilog) {
    return ddpm_opts_parse_args(cmd, argc, argv, opts, nopts, synopsis, epilog, NULL, 0, NULL, NULL);
}

int ddpm_opts_parse_args(const char *cmd, int argc, char **argv, ddpm_opt *opts, int nopts, const char *synopsis,
                         const char *epilog, const char **args, int max, int *nargs, const char *what) {
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
        if (!o && a[0] != '-' && args && *nargs < max) {
            args[(*nargs)++] = a;
            continue;
        }
        if (!o && a[0] != '-' && args) return ddpm_cli_fail(cmd, 2, "at most %d %s", max, what);
        if (!o) return usage_error(cmd, a, "%s", a[0] == '-' ? "unknown option" : "unexpected argument");
        if (o->seen) return usage_error(cmd, o->name, "option given twice:");
        o->seen = true;
        if (o->type == OPT_FLAG) {
            if (eq) return usage_error(cmd, a, "option takes no value:");
            *(bool *)o->dst = true;
            continue;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc) return usage_error(cmd, a, "missing value for");
            val = argv[++i];
        }
        int rc = set_value(cmd, o, val);
        if (rc) return rc;
    }
    return 0;
}

bool ddpm_opts_seen(const ddpm_opt *opts, int nopts, const char *name) {
    for (int i = 0; i < nopts; i++)
        if (!strcmp(opts[i].name, name)) return opts[i].seen;
    return false;
}

int ddpm_opts_refuse(const char *cmd, const ddpm_opt *opts, int nopts, const char *const *names, int n, const char *why) {
    for (int i = 0; i < nopts; i++) {
        bool listed = !names;
        for (int k = 0; k < n; k++) listed |= !strcmp(opts[i].name, names[k]);
        if (opts[i].seen && listed) return ddpm_cli_fail(cmd, 2, "%s %s", opts[i].name, why);
    }
    return 0;
}

void ddpm_model_opts(ddpm_opt *o, ddpm_unet_config *c) {
    const ddpm_opt t[] = {
        {"--channels", NULL, OPT_INT, &c->in_ch, 1, 64, "C", "image channels (default: the dataset's, 1 for MNIST)"},
        {"--size", NULL, OPT_INT, &c->res, 4, 1024, "PX", "image height = width (default: the dataset's, 28)"},
        {"--ch", NULL, OPT_INT, &c->ch, 2, 4096, "N", "base channel width (default 16; 32 in bench, the reference model)"},
        {"--ch-mult", NULL, OPT_INTLIST, c->ch_mult, 0, 0, "LIST", "width multiplier per level (default 1,2,2)", .count = &c->num_levels},
        {"--res-blocks", NULL, OPT_INT, &c->num_res_blocks, 1, 16, "N", "ResBlocks per level (default 2)"},
        {"--attn", NULL, OPT_INTLIST, c->attn_res, 0, 0, "LIST", "resolutions with self-attention, or none (default 7)", .count = &c->num_attn},
        {"--groups", NULL, OPT_INT, &c->groups, 1, 1024, "N", "GroupNorm groups (default 8)"},
        {"--classes", NULL, OPT_INT, &c->num_classes, 0, 100000, "K", "class-conditional with K classes (default 0: unconditional)"},
        {"--dropout", NULL, OPT_FLOAT, &c->dropout, 0.0, 0.99, "P", "dropout in ResBlocks (default 0)"},
    };
    _Static_assert(DDPM_COUNT(t) == DDPM_MODEL_OPTS, "DDPM_MODEL_OPTS must count the model flags");
    memcpy(o, t, sizeof t);
}

void ddpm_model_flags_preset(ddpm_unet_config *c, const ddpm_opt *opts, int nopts, bool size_known) {
    ddpm_unet_config p;
    if (!(size_known || ddpm_opts_seen(opts, nopts, "--size")) || !ddpm_unet_preset(&p, c->in_ch, c->res)) return;
    if (!ddpm_opts_seen(opts, nopts, "--ch")) c->ch = p.ch;
    if (!ddpm_opts_seen(opts, nopts, "--res-blocks")) c->num_res_blocks = p.num_res_blocks;
    if (!ddpm_opts_seen(opts, nopts, "--groups")) c->groups = p.groups;
    if (!ddpm_opts_seen(opts, nopts, "--ch-mult")) {
        c->num_levels = p.num_levels;
        memcpy(c->ch_mult, p.ch_mult, sizeof p.ch_mult);
    }
    if (!ddpm_opts_seen(opts, nopts, "--attn")) {
        c->num_attn = p.num_attn;
        memcpy(c->attn_res, p.attn_res, sizeof p.attn_res);
    }
}

int ddpm_model_flags_check(const char *cmd, ddpm_unet_config *c, const ddpm_opt *opts, int nopts) {
    ddpm_model_flags_preset(c, opts, nopts, false);
    return ddpm_unet_config_validate(c) ? ddpm_cli_fail(cmd, 2, "%s", ddpm_last_error()) : 0;
}

int ddpm_cli_check_writable(const char *cmd, const char *path) { return ddpm_check_writable(path) ? ddpm_cli_error(cmd) : 0; }

int ddpm_cli_error(const char *cmd) { return ddpm_cli_fail(cmd, 1, "%s", ddpm_last_error()); }

int ddpm_cli_fail(const char *cmd, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ddpm %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

void ddpm_cli_command_line(char *buf, size_t cap, int argc, char **argv) {
    size_t n = (size_t)snprintf(buf, cap, "ddpm");
    for (int i = 0; i < argc && n < cap; i++) {
        bool plain = *argv[i] && strspn(argv[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                                 "-_.,/:=+@%") == strlen(argv[i]);
        n += (size_t)snprintf(buf + n, cap - n, plain ? " %s" : " '%s'", argv[i]);
    }
}

/* ---- where --data NAME lives (cmd_eval, cmd_noise) ---- */

ddpm_status ddpm_cli_data_dir(char *out_dir, size_t cap, const char *data, const char *data_dir) {
    ddpm_data_opts o;
    ddpm_data_opts_default(&o);
    o.data = data, o.data_dir = data_dir, o.env_dir = getenv("DDPM_DATA_DIR");
    return ddpm_data_find(out_dir, cap, &o);
}

/* ---- the sampling flags of `sample` and `eval` ----------------------------------- */

void ddpm_sampler_flags_opts(ddpm_opt *o, ddpm_sampler_flags *f) {
    *f = (ddpm_sampler_flags){.sampler = "ddpm", .var = "small", .guidance = 1.0f};
    const ddpm_opt t[] = {
        {"--sampler", NULL, OPT_STRING, &f->sampler, 0, 0, "NAME", "ddpm, ddim, dpm++2m, euler, heun or euler_a (default: the checkpoint's, else ddpm)"},
        {"--sample-steps", NULL, OPT_INT, &f->steps, 1, DDPM_SCHEDULE_MAX_T, "K", "sampling steps (default: the checkpoint's, else min(100, T) for ddpm, min(50, T) for ddim, euler, euler_a, min(20, T-1) for dpm++2m, min(10, T) for heun)"},
        {"--spacing", NULL, OPT_STRING, &f->spacing, 0, 0, "KIND", "ddim/dpm++2m timesteps: uniform, quadratic or logsnr"},
        {"--eta", NULL, OPT_FLOAT, &f->eta, 0.0, 1.0, "E", "ddim noise in [0, 1] (default 0: deterministic)"},
        {"--var", NULL, OPT_STRING, &f->var, 0, 0, "KIND", "ddpm reverse step variance: small or large (default small)"},
        {"--guidance", NULL, OPT_FLOAT, &f->guidance, 0.0, 100.0, "W", "classifier-free guidance weight >= 0 (class-conditional models)"},
        {"--seed", NULL, OPT_U64, &f->seed, 0, 0, "S", "random seed (default 0)"},
    };
    _Static_assert(DDPM_COUNT(t) == DDPM_SAMPLER_OPTS, "DDPM_SAMPLER_OPTS must count the sampler flags");
    memcpy(o, t, sizeof t);
}

int ddpm_cli_draw_opts(const char *cmd, ddpm_draw_opts *o, ddpm_sampler_flags *f, const ddpm_opt *opts, int nopts) {
    static const char *one[] = {"--sampler", "--var", "--eta", "--spacing", "--sigmas", "--churn"};
    f->model_sampler = true;
    for (size_t i = 0; i < DDPM_COUNT(one); i++) f->model_sampler &= !ddpm_opts_seen(opts, nopts, one[i]);
    f->steps_seen = ddpm_opts_seen(opts, nopts, "--sample-steps");
    ddpm_draw_opts_default(o);
    int kind = ddpm_sampler_parse(f->sampler), v = kind < 0 ? 0 : ddpm_var_parse(f->var);
    int sp = kind < 0 || v < 0 || !f->spacing ? 0 : ddpm_spacing_parse(f->spacing);
    if (ddpm_cli_check_name(cmd, "--sampler", kind) || ddpm_cli_check_name(cmd, "--var", v) ||
        ddpm_cli_check_name(cmd, "--spacing", sp))
        return 2;
    const char *why = NULL;
    if (kind != DDPM_SAMPLER_DDIM && ddpm_opts_seen(opts, nopts, "--eta")) why = "--eta applies to --sampler ddim only";
    else if (kind != DDPM_SAMPLER_DDPM && ddpm_opts_seen(opts, nopts, "--var")) why = "--var applies to --sampler ddpm only";
    else if ((kind == DDPM_SAMPLER_DDPM || ddpm_sampler_is_karras((ddpm_sampler_kind)kind)) && f->spacing)
        why = "--spacing applies to --sampler ddim and dpm++2m";
    if (why) return ddpm_cli_fail(cmd, 2, "%s", why);
    o->sampler = (ddpm_sampler_opts){(ddpm_sampler_kind)kind, f->steps, f->eta, (ddpm_var_kind)v, (ddpm_spacing)sp};
    o->seed = f->seed, o->guidance = f->guidance;
    o->guided = ddpm_opts_seen(opts, nopts, "--guidance");
    return -1;
}

void ddpm_cli_model_sampler(const ddpm_pipeline *p, ddpm_draw_opts *o, const ddpm_sampler_flags *f) {
    if (!f->model_sampler) return;
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    o->sampler.kind = in->sampler;
    if (!f->steps_seen) o->sampler.steps = in->sample_steps;
}

int ddpm_cli_open_pipeline(const char *cmd, ddpm_pipeline **p, const char **ckpt, bool raw_weights, int max_batch,
                           const char *precision) {
    struct stat st;
    int prec = precision ? ddpm_precision_parse(precision) : 0;
    if (ddpm_cli_check_name(cmd, "--precision", prec)) return 2;
    if (!*ckpt) {
        *ckpt = DDPM_DEFAULT_RUN_DIR "/" DDPM_CKPT_FILE;
        if (stat(*ckpt, &st) != 0 && errno == ENOENT)
            return ddpm_cli_fail(cmd, 1, "no checkpoint at '%s': run 'ddpm train' first, or name one with -c FILE", *ckpt);
    }
    ddpm_pipeline_opts po = {.raw_weights = raw_weights, .max_batch = max_batch};
    if (!ddpm_pipeline_open(p, *ckpt, &po)) {
        if (precision) ddpm_pipeline_set_precision(*p, (ddpm_precision)prec);
        return 0;
    }
    return ddpm_cli_error(cmd);
}

int ddpm_cli_error_flag(const char *cmd, const char *flag, int code) {
    return ddpm_cli_fail(cmd, code, "%s: %s", flag, ddpm_last_error());
}

int ddpm_cli_check_name(const char *cmd, const char *flag, int v) { return v >= 0 ? 0 : ddpm_cli_error_flag(cmd, flag, 2); }

int ddpm_cli_check_draw(const char *cmd, const ddpm_pipeline *p, const ddpm_draw_opts *o, int *K) {
    if (!ddpm_pipeline_check(p, o, K)) return -1;
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    bool steps = o->sampler.steps > ddpm_sampler_max_steps(o->sampler.kind, in->T);
    return ddpm_cli_error_flag(cmd, steps ? "--sample-steps" : o->guided ? "--guidance" : "--label", 2);
}
