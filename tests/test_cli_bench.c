/* test_cli_bench.c: `ddpm bench` end to end on a tiny model: every key is
 * printed, once, with a sane value (numbers positive and finite, derived
 * numbers consistent with the ones they come from), --only runs one part,
 * usage errors exit 2. No speed assertions: speed belongs in the benchmark's
 * output, not in tests. */
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
#include "ddpm/unet.h"

/* tiny and fast: 16x16 images, two levels, one ResBlock each, attention at 8 */
#define TINY                                                                                       \
    "--seconds 0.2 --warmup 1 --batch 2 --ch 8 --groups 4 --size 16 --ch-mult 1,2 --res-blocks 1 " \
    "--attn 8 --sgemm-size 64 --threads 1"
#define TINY_NAME "ch8-mult1,2-rb1-attn8-g4"

static cli_result g_r;

static void expect(int status, const char *in_err) { cli_expect(&g_r, status, in_err); }

/* ---- key=value output ---------------------------------------------------------------- */

#define MAXKV 96
typedef struct {
    char key[64], val[192];
} kv;
static kv g_kv[MAXKV];
static int g_nkv;

/* Splits stdout into key=value lines; every line must be one, keys unique. */
static void parse_out(void) {
    g_nkv = 0;
    const char *p = g_r.out;
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (!nl) fail_msg("stdout does not end with a newline:\n%s", g_r.out);
        const char *eq = memchr(p, '=', (size_t)(nl - p));
        if (!eq || eq == p) fail_msg("stdout line is not key=value: '%.*s'", (int)(nl - p), p);
        if (g_nkv == MAXKV) fail_msg("too many output lines");
        kv *e = &g_kv[g_nkv];
        snprintf(e->key, sizeof e->key, "%.*s", (int)(eq - p), p);
        snprintf(e->val, sizeof e->val, "%.*s", (int)(nl - eq - 1), eq + 1);
        for (int i = 0; i < g_nkv; i++)
            if (!strcmp(g_kv[i].key, e->key)) fail_msg("key '%s' printed twice", e->key);
        g_nkv++;
        p = nl + 1;
    }
}

static const char *get(const char *key) {
    for (int i = 0; i < g_nkv; i++)
        if (!strcmp(g_kv[i].key, key)) return g_kv[i].val;
    return NULL;
}

/* A key that must be there with a positive, finite number. */
static double num(const char *key) {
    const char *v = get(key);
    if (!v) fail_msg("key '%s' missing; stdout:\n%s", key, g_r.out);
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite(x) || !(x > 0)) fail_msg("%s=%s is not a positive finite number", key, v);
    return x;
}

static void near(double got, double want, const char *what) {
    if (!(fabs(got - want) <= 1e-4 * fabs(want))) fail_msg("%s: %.9g, expected %.9g", what, got, want);
}

static const char *const WORKLOAD_NUM[] = {"timesteps", "batch", "threads", "params", "mflops_per_image",
                                            "base_rss_mb", "peak_rss_mb"};
static const char *const TRAIN[] = {"train_iters", "train_ms_per_iter", "train_ms_p10", "train_ms_p90",
                                    "train_img_per_s", "train_gflops"};
static const char *const SAMPLE[] = {"sample_iters", "sample_ms_per_step", "sample_ms_p10", "sample_ms_p90",
                                     "sample_img_steps_per_s"};
static const char *const SGEMM[] = {"sgemm_n", "sgemm_iters", "sgemm_ms", "sgemm_gflops"};
#define COUNT(a) (int)(sizeof a / sizeof *a)

static void check_workload(void) {
    assert_non_null(get("model"));
    assert_string_equal(get("model"), TINY_NAME);
    assert_non_null(get("image"));
    assert_string_equal(get("image"), "1x16x16");
    const char *core = get("blas_core");
    if (!core || !*core) fail_msg("blas_core missing or empty");
    const char *tk = get("tile_kernel");
    if (!tk || (strcmp(tk, "avx512") && strcmp(tk, "avx2") && strcmp(tk, "generic")))
        fail_msg("tile_kernel missing or not avx512, avx2 or generic: '%s'", tk ? tk : "(none)");
    const char *bk = get("bf16_kernel");
    if (!bk || (strcmp(bk, "avx512bf16") && strcmp(bk, "portable")))
        fail_msg("bf16_kernel missing or not avx512bf16 or portable: '%s'", bk ? bk : "(none)");
    /* the processor: keys present; on x86 a vendor id of 12 characters and a
     * family (the features may be empty on a CPU without any of them) */
    const char *vendor = get("cpu_vendor");
    if (!vendor || !*vendor) fail_msg("cpu_vendor missing or empty");
    if (!get("cpu_name") || !get("cpu_features") || !get("cpu_family") || !get("cpu_model"))
        fail_msg("cpu_name, cpu_features, cpu_family or cpu_model missing:\n%s", g_r.out);
#if defined(__x86_64__)
    assert_int_equal((int)strlen(vendor), 12);
    num("cpu_family");
#endif
    for (int i = 0; i < COUNT(WORKLOAD_NUM); i++) num(WORKLOAD_NUM[i]);
    assert_int_equal((int)num("batch"), 2);
    assert_int_equal((int)num("threads"), 1);
    assert_int_equal((int)num("timesteps"), 1000);
    assert_true(num("base_rss_mb") <= num("peak_rss_mb"));
    /* the model is the one `ddpm info` describes */
    ddpm_unet_config c;
    ddpm_unet_config_default(&c);
    c.res = 16;
    c.ch = 8;
    c.groups = 4;
    c.num_levels = 2;
    c.ch_mult[0] = 1;
    c.ch_mult[1] = 2;
    c.num_res_blocks = 1;
    c.num_attn = 1;
    c.attn_res[0] = 8;
    size_t np;
    double flops;
    assert_int_equal(ddpm_unet_describe(&c, &np, &flops), DDPM_OK);
    assert_true(num("params") == (double)np);
    near(num("mflops_per_image"), flops / 1e6, "mflops_per_image");
}

/* keys[n]: the keys of one part; present: whether that part ran */
static void check_part(const char *const *keys, int n, bool present) {
    for (int i = 0; i < n; i++) {
        if (present) num(keys[i]);
        else if (get(keys[i])) fail_msg("key '%s' printed although its part did not run", keys[i]);
    }
}

static void check_train(void) {
    double ms = num("train_ms_per_iter"), B = num("batch");
    assert_true(num("train_iters") >= 3);
    assert_true(num("train_ms_p10") <= ms && ms <= num("train_ms_p90"));
    near(num("train_img_per_s"), B * 1e3 / ms, "train_img_per_s");
    near(num("train_gflops"), 3 * num("mflops_per_image") * 1e6 * B / (ms / 1e3) / 1e9, "train_gflops (3x forward)");
}

static void check_sample(void) {
    double ms = num("sample_ms_per_step");
    assert_true(num("sample_iters") >= 3);
    assert_true(num("sample_ms_p10") <= ms && ms <= num("sample_ms_p90"));
    near(num("sample_img_steps_per_s"), num("batch") * 1e3 / ms, "sample_img_steps_per_s");
}

static void check_sgemm(void) {
    double n = num("sgemm_n");
    assert_int_equal((int)n, 64);
    assert_true(num("sgemm_iters") >= 3);
    near(num("sgemm_gflops"), 2 * n * n * n / (num("sgemm_ms") / 1e3) / 1e9, "sgemm_gflops");
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_help(void **state) {
    (void)state;
    const char *const flags[] = {"--threads", "--seconds", "--batch", "--warmup", "--only", "--sgemm-size", "--precision",
                                 "--ch", "--ch-mult", "--attn", "train_gflops", "3 x"};
    cli_check_help("bench", flags, (int)(sizeof flags / sizeof *flags));
}

static void test_all_parts(void **state) {
    (void)state;
    cli_run(&g_r, "bench " TINY);
    expect(0, NULL);
    parse_out();
    check_workload();
    check_part(TRAIN, COUNT(TRAIN), true);
    check_part(SAMPLE, COUNT(SAMPLE), true);
    check_part(SGEMM, COUNT(SGEMM), true);
    check_train();
    check_sample();
    check_sgemm();
    near(num("gflops_ratio"), num("train_gflops") / num("sgemm_gflops"), "gflops_ratio");
    /* progress and notes go to stderr */
    if (!strstr(g_r.err, "ddpm bench: train:")) fail_msg("no progress on stderr:\n%s", g_r.err);
}

static void test_only(void **state) {
    (void)state;
    cli_run(&g_r, "bench " TINY " --only train");
    expect(0, NULL);
    parse_out();
    check_workload();
    check_part(TRAIN, COUNT(TRAIN), true);
    check_part(SAMPLE, COUNT(SAMPLE), false);
    check_part(SGEMM, COUNT(SGEMM), false);
    check_train();
    assert_null(get("gflops_ratio"));

    cli_run(&g_r, "bench " TINY " --only=sample");
    expect(0, NULL);
    parse_out();
    check_workload();
    check_part(TRAIN, COUNT(TRAIN), false);
    check_part(SAMPLE, COUNT(SAMPLE), true);
    check_part(SGEMM, COUNT(SGEMM), false);
    check_sample();
    assert_null(get("gflops_ratio"));

    cli_run(&g_r, "bench " TINY " --only sgemm");
    expect(0, NULL);
    parse_out();
    check_workload();
    check_part(TRAIN, COUNT(TRAIN), false);
    check_part(SAMPLE, COUNT(SAMPLE), false);
    check_part(SGEMM, COUNT(SGEMM), true);
    check_sgemm();
}

/* The class-conditional model with dropout runs too (labels and dropout masks
 * on the training side, labels on the sampling side). */
/* --profile: per layer kind and pass a non-negative time; the kinds the tiny
 * model runs are timed (> 0), and together with "other" they make up the
 * mean step (other >= 0: every timer sits inside the timed step). */
static const char *const PROF_KINDS[] = {"conv3x3", "conv1x1", "groupnorm", "silu", "attention",
                                         "elementwise", "temb", "loss", "optim"};

static double nonneg(const char *key) {
    const char *v = get(key);
    if (!v) fail_msg("key '%s' missing; stdout:\n%s", key, g_r.out);
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite(x) || x < 0) fail_msg("%s=%s is not a finite number >= 0", key, v);
    return x;
}

static void test_profile(void **state) {
    (void)state;
    cli_run(&g_r, "bench " TINY " --profile");
    expect(0, NULL);
    parse_out();
    check_train();
    check_sample();
    char key[96];
    double train_sum = 0;
    for (int k = 0; k < COUNT(PROF_KINDS); k++) {
        for (int p = 0; p < 2; p++) {
            snprintf(key, sizeof key, "train_prof_%s_%s_ms", PROF_KINDS[k], p ? "bwd" : "fwd");
            train_sum += nonneg(key);
        }
        snprintf(key, sizeof key, "sample_prof_%s_bwd_ms", PROF_KINDS[k]);
        if (get(key)) fail_msg("the sampler has no backward, yet %s is printed", key);
    }
    /* what the tiny model runs in each pass */
    const char *timed[] = {"train_prof_conv3x3_fwd_ms", "train_prof_conv3x3_bwd_ms", "train_prof_conv1x1_bwd_ms",
                           "train_prof_groupnorm_fwd_ms", "train_prof_groupnorm_bwd_ms", "train_prof_attention_fwd_ms",
                           "train_prof_attention_bwd_ms", "train_prof_optim_bwd_ms", "sample_prof_conv3x3_fwd_ms",
                           "sample_prof_silu_fwd_ms"};
    for (int i = 0; i < COUNT(timed); i++) num(timed[i]);
    double other = nonneg("train_prof_other_ms");
    nonneg("sample_prof_other_ms");
    /* the layer timers cover the step: what they miss is a small part of it
     * (0.1 of ~400 ms on the default model) */
    if (!(other <= 0.5 * (train_sum + other)))
        fail_msg("untimed %.3f ms of a %.3f ms step: layer calls escape the timers", other, train_sum + other);
    if (!strstr(g_r.err, "train profile") || !strstr(g_r.err, "conv3x3"))
        fail_msg("no profile table on stderr:\n%s", g_r.err);

    /* without --profile, no profile keys */
    cli_run(&g_r, "bench " TINY " --only train");
    expect(0, NULL);
    parse_out();
    assert_null(get("train_prof_conv3x3_fwd_ms"));
    assert_null(get("train_prof_other_ms"));
}

static void test_conditional(void **state) {
    (void)state;
    cli_run(&g_r, "bench --seconds 0 --warmup 0 --batch 3 --ch 8 --groups 2 --size 8 --ch-mult 1,2 --res-blocks 1 "
                  "--attn none --classes 5 --dropout 0.1 --threads 1 --only train");
    expect(0, NULL);
    parse_out();
    assert_string_equal(get("model"), "ch8-mult1,2-rb1-attnnone-g2-cls5-drop0.1");
    assert_int_equal((int)num("train_iters"), 3); /* --seconds 0: the minimum */
    num("train_img_per_s");
}

/* --precision: the default is fp32, bf16 runs both model parts in bf16; the
 * bf16 kernel is reported as avx512bf16 only when the CPU lists avx512_bf16. */
static void test_precision(void **state) {
    (void)state;
    cli_run(&g_r, "bench " TINY " --only sample");
    expect(0, NULL);
    parse_out();
    assert_string_equal(get("precision"), "fp32");
    cli_run(&g_r, "bench " TINY " --precision bf16");
    expect(0, NULL);
    parse_out();
    check_workload();
    assert_string_equal(get("precision"), "bf16");
    check_train();
    check_sample();
    check_sgemm();
    if (!strcmp(get("bf16_kernel"), "avx512bf16") && !strstr(get("cpu_features"), "avx512_bf16"))
        fail_msg("bf16_kernel avx512bf16 on a CPU without avx512_bf16: %s", get("cpu_features"));
}

static void test_usage_errors(void **state) {
    (void)state;
    static const struct {
        const char *args, *msg;
    } bad[] = {
        {"--bogus", "--bogus"},
        {"--only foo", "--only"},
        {"--only", "--only"},
        {"--precision fp16", "--precision"},
        {"--precision", "--precision"},
        {"--batch 0", "--batch"},
        {"--batch 2x", "--batch"},
        {"--seconds -1", "--seconds"},
        {"--seconds abc", "--seconds"},
        {"--seconds nan", "--seconds"},
        {"--threads -1", "--threads"},
        {"--warmup -1", "--warmup"},
        {"--sgemm-size 8", "--sgemm-size"},
        {"--ch 6 --groups 4", "group"},
        {"--ch-mult 1,x", "--ch-mult"},
        {"--seconds 1 --seconds 2", "twice"},
        {"stray", "stray"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cli_run(&g_r, "bench %s", bad[i].args);
        if (g_r.status != 2 || !strstr(g_r.err, bad[i].msg) || g_r.out[0])
            fail_msg("'ddpm bench %s': expected exit 2, empty stdout and stderr mentioning '%s'; got exit %d, "
                     "stdout '%s', stderr '%s'",
                     bad[i].args, bad[i].msg, g_r.status, g_r.out, g_r.err);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_all_parts),
        cmocka_unit_test(test_only),
        cmocka_unit_test(test_profile),
        cmocka_unit_test(test_conditional),
        cmocka_unit_test(test_precision),
        cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
