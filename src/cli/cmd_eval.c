/* cmd_eval.c: `ddpm eval`: sample quality against a dataset's test split or an
 * image folder, in the evaluation network's features (FID, KID, precision and
 * recall, confidence, class entropy, label accuracy; eval.h), or with --bpd the
 * variational bound in bits/dim. The protocol (the network file and its SHA-256
 * prefix, the reference, N) is printed with the numbers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ddpm/classifier.h"
#include "ddpm/data.h"
#include "ddpm/eval.h"
#include "ddpm/kv.h"

#define CMD "eval"

typedef struct {
    ddpm_sampler_flags s;
    const char *file, *ckpt, *data, *data_dir, *net, *labels, *terms, *precision, *alpha;
    int n, threads, batch;
    bool json, bpd, no_ema, n_seen;
} eval_flags;

/* ---- the evaluation network ------------------------------------------------------------- */

typedef struct {
    ddpm_progress p;
    const char *dir, *path;
} clf_view;

static int clf_on_step(void *ud, int step, int steps, double loss) {
    (void)loss;
    clf_view *c = ud;
    if (step == 1) {
        fprintf(stderr, "ddpm %s: no evaluation network for '%s' yet: training one on its training split "
                        "(one thread), to be cached as '%s'\n", CMD, c->dir, c->path);
        ddpm_progress_start(&c->p, stderr, "training the evaluation network", steps, "steps");
    }
    ddpm_progress_tick(&c->p, step);
    if (step == steps) ddpm_progress_done(&c->p);
    return 0;
}

/* ---- a checkpoint's samples, or its bound ------------------------------------------------- */

static void put_model(const ddpm_pipeline *p) {
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    if (in->schedule_assumed || in->T_assumed)
        fprintf(stderr, "ddpm %s: note: '%s' does not record its noise schedule; assuming %s, T=%d\n", CMD, in->path,
                ddpm_schedule_name(in->schedule), in->T);
    fprintf(stderr, "ddpm %s: '%s': %s weights, %s-prediction, %s schedule T=%d\n", CMD, in->path,
            in->ema ? "EMA" : "raw", ddpm_objective_name(in->objective), ddpm_schedule_name(in->schedule), in->T);
}

static int eval_samples(ddpm_eval_metrics *m, ddpm_kv *r, const eval_flags *f, ddpm_pipeline *p, const ddpm_draw_opts *od,
                        int K, const ddpm_eval_ref *ref) {
    ddpm_draw_opts o = *od;
    ddpm_draw_progress v;
    ddpm_draw_progress_start(&v, stderr, f->n, f->batch, K);
    o.on_step = ddpm_draw_progress_step, o.ud = &v;
    if (ddpm_eval_pipeline(m, ref, p, &o, f->n)) return ddpm_cli_error(CMD);
    ddpm_progress_done(&v.p);
    ddpm_kv_put(r, "sampler", true, "%s", ddpm_sampler_name(o.sampler.kind));
    ddpm_kv_put(r, "sample_steps", false, "%d", K);
    if (o.sampler.kind == DDPM_SAMPLER_DDIM) ddpm_kv_put(r, "eta", false, "%g", (double)o.sampler.eta);
    if (o.sampler.kind == DDPM_SAMPLER_DDPM) ddpm_kv_put(r, "variance", true, "%s", ddpm_var_name(o.sampler.var));
    if (o.guided) ddpm_kv_put(r, "guidance", false, "%g", (double)o.guidance);
    ddpm_kv_put(r, "seed", false, "%llu", (unsigned long long)o.seed);
    return 0;
}

/* ---- the command ------------------------------------------------------------------------------- */

static void put_metrics(ddpm_kv *r, const ddpm_eval_metrics *m, bool folder) {
    ddpm_kv_put(r, "n", false, "%d", m->n);
    ddpm_kv_put(r, "pr_reference", true, "first %d %s images, k=%d", m->n_pr, folder ? "reference" : "test", DDPM_EVAL_K);
    ddpm_kv_put(r, "kid_subsets", true, "%d of %d", DDPM_KID_SUBSETS, m->n_kid);
    const char *k[] = {"fid", "kid", "kid_std", "precision", "recall", "confidence", "class_entropy", "label_accuracy"};
    const double v[] = {m->fid, m->kid, m->kid_std, m->precision, m->recall, m->confidence, m->class_entropy, m->label_accuracy};
    for (int i = 0; i < 8; i++) /* label_accuracy < 0: not a class-conditional draw */
        if (i < 7 || v[i] >= 0) ddpm_kv_put(r, k[i], false, i == 1 || i == 2 ? "%.6f" : "%.4f", v[i]);
}

static int run(const eval_flags *f, ddpm_pipeline *p, const ddpm_draw_opts *o, int K, const char *dir) {
    ddpm_eval_session es;
    ddpm_eval_metrics m = {0};
    uint8_t *u8 = NULL;
    int *labels = NULL, n = f->n_seen ? f->n : 0, rc = 0;
    ddpm_kv r = {0};
    clf_view cv = {.dir = dir, .path = es.net_path};
    ddpm_eval_folder_opts fo = ddpm_eval_folder_opts_for(p, f->file, f->alpha);
    if (ddpm_eval_session_open_ex(&es, dir, &fo, f->net, f->threads, clf_on_step, &cv)) return ddpm_cli_error(CMD);
    if (es.trained) fprintf(stderr, "ddpm %s: evaluation network: test accuracy %.2f%%\n", CMD, 100 * es.trained_acc);
    ddpm_kv_put(&r, f->file ? "images" : "checkpoint", true, "%s", f->file ? f->file : f->ckpt);
    ddpm_kv_put(&r, "net", true, "%s", es.net_path);
    ddpm_kv_put(&r, "net_sha256", true, "%s", es.net_hash);
    if (es.net_acc[0]) ddpm_kv_put(&r, "net_test_accuracy", false, "%s", es.net_acc);
    ddpm_kv_put(&r, "reference", true, "%s", dir);
    ddpm_kv_put(&r, "split", true, es.folder ? "all" : "test");
    if (es.folder) ddpm_kv_put(&r, "reference_images", true, "%s", es.folder_desc);
    ddpm_kv_put(&r, "n_reference", false, "%d", es.test.n);
    if (f->file) {
        ddpm_status st = ddpm_eval_session_load(&u8, &labels, &n, &es, f->file, f->labels, &fo);
        if (st || ddpm_eval_images(&m, &es.ref, u8, n, labels)) rc = ddpm_cli_error(CMD) + (st == DDPM_ERR_ARG);
    } else {
        put_model(p);
        rc = eval_samples(&m, &r, f, p, o, K, &es.ref);
    }
    if (!rc) {
        fprintf(stderr, "ddpm %s: %d images against the %d%s images of '%s'\n", CMD, m.n, es.test.n, es.folder ? "" : " test", dir);
        put_metrics(&r, &m, es.folder);
        ddpm_kv_print(&r, stdout, f->json);
    }
    ddpm_eval_session_close(&es);
    free(u8);
    free(labels);
    return rc;
}

/* --bpd on the first n images of the test split of dir. */
static int run_bpd(const eval_flags *f, ddpm_pipeline *p, ddpm_var_kind var, const char *dir) {
    ddpm_dataset test;
    ddpm_kv r = {0};
    ddpm_bpd_result b = {0};
    if (ddpm_dataset_load(&test, dir, false)) return ddpm_cli_error(CMD);
    int T = ddpm_pipeline_info_get(p)->T, B = f->batch < f->n ? f->batch : f->n, rc = 0;
    ddpm_progress prog;
    char what[64];
    snprintf(what, sizeof what, "bits/dim of %d test images", f->n);
    if (f->n > test.n)
        rc = ddpm_cli_fail(CMD, 2, "-n %d exceeds the %d test images of '%s'", f->n, test.n, dir);
    else {
        put_model(p);
        ddpm_progress_start(&prog, stderr, what, (long)((f->n + B - 1) / B) * T, "model calls");
        if (ddpm_eval_bpd(&b, p, &test, f->n, f->batch, f->s.seed, var, ddpm_progress_on, &prog) ||
            (f->terms && ddpm_bpd_write_terms(f->terms, &b)))
            rc = ddpm_cli_error(CMD);
    }
    if (!rc) {
        ddpm_progress_done(&prog);
        const char *k[] = {"checkpoint", "reference", "split", "variance", "terms"};
        const char *v[] = {f->ckpt, dir, "test", ddpm_var_name(var), f->terms};
        for (int i = 0; i < 5; i++)
            if (v[i]) ddpm_kv_put(&r, k[i], true, "%s", v[i]);
        ddpm_kv_put(&r, "n", false, "%d", f->n);
        ddpm_kv_put(&r, "timesteps", false, "%d", T);
        const char *bk[] = {"bpd", "bpd_stderr", "bpd_prior", "bpd_decoder", "bpd_kl"};
        double bv[] = {b.bpd, b.bpd_stderr, b.prior, b.decoder, b.kl};
        for (int i = 0; i < 5; i++) ddpm_kv_put(&r, bk[i], false, "%.6f", bv[i]);
        ddpm_kv_print(&r, stdout, f->json);
    }
    ddpm_bpd_result_free(&b);
    ddpm_dataset_free(&test);
    return rc;
}

static const char *SYNOPSIS =
    "usage: ddpm eval FILE.idx|PNG_DIR [options]\n"
    "       ddpm eval -c CKPT [-n N] [sampler options] [options]\n"
    "       ddpm eval --bpd -c CKPT [-n N] [--terms FILE.csv]\n\n"
    "Measure sample quality against a dataset's test split or an image folder, or the variational bound.";

static const char *EPILOG =
    "Prints key=value lines (--json: one JSON object): the protocol (network and its SHA-256\n"
    "prefix, reference and split, N) and the metrics (docs/usage.md#evaluation): fid, kid, kid_std,\n"
    "precision and recall (k-NN, k = 3) in the evaluation network's features against the reference;\n"
    "confidence, class_entropy; label_accuracy (class-conditional draws: the label drawn with).\n"
    "The networks of MNIST, Fashion-MNIST and the emoji folder ship; others train on first use (a\n"
    "folder's on its class subfolders, else on rotations, 10 % held out by image hash) and are cached\n"
    "in " DDPM_EVAL_CACHE_DIR " ($DDPM_EVAL_CACHE). The reference defaults to the checkpoint's data.\n"
    "--bpd: the variational bound (Ho et al. eq. 5) in bits/dim on the first N test images,\n"
    "T model calls each, with the reverse variance --var; --terms: per-timestep terms as CSV.\n\n"
    "examples:\n"
    "  ddpm sample -n 1000 --sampler ddim --idx s.idx -o s.png && ddpm eval s.idx\n"
    "  ddpm eval --bpd -c runs/mnist/ckpt.safetensors -n 100 --terms terms.csv";

/* Usage errors that need no file: NULL or the message. */
static const char *usage_error(const eval_flags *f, bool sampler_flags) {
    if (!f->file && !f->ckpt) return "name an IDX file or folder of images or a checkpoint (-c CKPT)";
    if (f->file && f->ckpt) return "give images or -c CKPT, not both";
    if (f->bpd && !f->ckpt) return "--bpd needs a checkpoint (-c CKPT)";
    if (f->terms && !f->bpd) return "--terms applies to --bpd only";
    if (!f->bpd && f->n_seen && f->n < DDPM_EVAL_K + 1) return "-n: the metrics need at least 4 images (k = 3)";
    if (f->labels && !f->file) return "--labels applies to an IDX file input";
    if (f->file && sampler_flags) return "sampler options apply to -c CKPT only";
    return NULL;
}

static int cmd_eval(int argc, char **argv) {
    eval_flags f = {.n = 1000, .batch = 64};
    if (argc > 1 && argv[1][0] != '-') { /* ddpm eval FILE.idx ... */
        f.file = argv[1];
        argv[1] = argv[0], argv++, argc--;
    }
    ddpm_opt own[] = {
        {"--ckpt", "-c", OPT_STRING, &f.ckpt, 0, 0, "FILE", "checkpoint to sample from (or to bound with --bpd)"},
        {"--num", "-n", OPT_INT, &f.n, 1, 1000000, "N", "images (default: 1000 samples; all of FILE; 100 for --bpd)"},
        {"--data", NULL, OPT_STRING, &f.data, 0, 0, "NAME", "reference: mnist, fashion, or a directory of IDX files"},
        {"--data-dir", NULL, OPT_STRING, &f.data_dir, 0, 0, "DIR", "where to look for --data mnist first"},
        {"--net", NULL, OPT_STRING, &f.net, 0, 0, "FILE", "evaluation network (default: the shipped one for MNIST, Fashion-MNIST and emoji, else trained on first use and cached)"},
        {"--labels", NULL, OPT_STRING, &f.labels, 0, 0, "FILE", "IDX labels of FILE.idx (for label_accuracy)"},
        {"--alpha", NULL, OPT_STRING, &f.alpha, 0, 0, "BG", "image folders: transparency as white or black (default: the checkpoint's, else white)"},
        {"--json", NULL, OPT_FLAG, &f.json, 0, 0, NULL, "print one JSON object instead of key=value lines"},
        {"--bpd", NULL, OPT_FLAG, &f.bpd, 0, 0, NULL, "the variational bound in bits/dim instead"},
        {"--terms", NULL, OPT_STRING, &f.terms, 0, 0, "FILE", "--bpd: write the per-timestep terms as CSV"},
        {"--no-ema", NULL, OPT_FLAG, &f.no_ema, 0, 0, NULL, "use the raw weights, not the EMA weights"},
        {"--batch", NULL, OPT_INT, &f.batch, 1, DDPM_BPD_MAX_BATCH, "B", "images per model call (default 64)"},
        {"--threads", NULL, OPT_INT, &f.threads, 0, 4096, "N", "threads (default 0: all cores)"},
        {"--precision", NULL, OPT_STRING, &f.precision, 0, 0, "P", "the UNet's products: fp32 or bf16 (default: the checkpoint's)"},
    };
    ddpm_opt opts[DDPM_COUNT(own) + DDPM_SAMPLER_OPTS];
    memcpy(opts, own, sizeof own);
    ddpm_sampler_flags_opts(opts + DDPM_COUNT(own), &f.s);
    int nopts = DDPM_COUNT(opts), rc = ddpm_opts_parse(CMD, argc, argv, opts, nopts, SYNOPSIS, EPILOG);
    if (rc) return rc == 1 ? 0 : rc;
    f.n_seen = ddpm_opts_seen(opts, nopts, "--num");
    if (f.bpd && !f.n_seen) f.n = 100;
    ddpm_draw_opts o; /* a value that names nothing is the first thing to say */
    if ((rc = ddpm_cli_draw_opts(CMD, &o, &f.s, opts, nopts)) >= 0 ||
        (f.precision && (rc = ddpm_cli_check_name(CMD, "--precision", ddpm_precision_parse(f.precision)))) ||
        (f.alpha && (rc = ddpm_cli_check_name(CMD, "--alpha", ddpm_alpha_parse(f.alpha)))))
        return rc;
    const char *why = usage_error(&f, o.guided || f.s.spacing || ddpm_opts_seen(opts, nopts, "--sampler") ||
                                          ddpm_opts_seen(opts, nopts, "--sample-steps") || ddpm_opts_seen(opts, nopts, "--eta"));
    if (why) return ddpm_cli_fail(CMD, 2, "%s", why);
    ddpm_set_threads(f.threads);
    ddpm_pipeline *p = NULL;
    int K = 0;
    if (!f.file) {
        if ((rc = ddpm_cli_open_pipeline(CMD, &p, &f.ckpt, f.no_ema, f.batch, f.precision))) return rc;
        ddpm_cli_model_sampler(p, &o, &f.s);
        if ((rc = ddpm_cli_check_draw(CMD, p, &o, &K)) >= 0) {
            ddpm_pipeline_free(p);
            return rc;
        }
    }
    const char *data = f.data ? f.data : p ? ddpm_pipeline_meta(p, DDPM_META_DATA) : NULL;
    char dir[1024];
    if (p && !data && !f.data_dir)
        rc = ddpm_cli_fail(CMD, 1, "'%s': metadata lacks 'data' (the training set); name the reference with --data", f.ckpt);
    else if (ddpm_cli_data_dir(dir, sizeof dir, data ? data : "mnist", f.data_dir))
        rc = ddpm_cli_error(CMD);
    else
        rc = f.bpd ? run_bpd(&f, p, o.sampler.var, dir) : run(&f, p, &o, K, dir);
    ddpm_pipeline_free(p);
    return rc;
}

const ddpm_cli_command ddpm_cmd_eval = {"eval", cmd_eval, "sample quality (FID, precision/recall) and bits/dim"};
