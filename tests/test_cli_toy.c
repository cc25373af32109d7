/* test_cli_toy.c: `ddpm toy` from the outside: --help, usage errors, bad CSV
 * files (one-line errors naming the line, no outputs), a short run writing
 * every output, exact resume (N steps vs N/2 + --resume to N: the same
 * checkpoint and samples), sampling from a finished checkpoint with DDIM,
 * and a user's CSV. A few hundred iterations of a small MLP. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stb_image.h>

#include "cliutil.h"

static char g_dir[256];
static cli_result g_r;

/* Small and fast: a few hundred steps of a width-32 MLP on 500 points. */
#define SMALL "--hidden 32 --points 500 --batch 32 -n 300 --threads 2"

static const char *P(const char *name) {
    static char buf[16][512];
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void expect(int status, const char *in_err) { cli_expect(&g_r, status, in_err); }

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

static void test_help(void **state) {
    (void)state;
    const char *const words[] = {"--preset", "--data", "--steps", "--schedule", "--iters", "--batch",
                                 "--hidden", "--lr", "--seed", "--sampler", "-o", "--resume",
                                 "scurve", "swissroll", "moons", "8gaussians", "checkerboard",
                                 "FILE.csv", "seed-sigmoid", "alpha_bar_T = 0.78", "forward.png",
                                 "reverse.png", "samples.csv", "loss.png", "log.csv", "energy distance"};
    cli_check_help("toy", words, (int)(sizeof words / sizeof *words));
}

static void test_usage_errors(void **state) {
    (void)state;
    cli_run(&g_r, "toy --preset fast -o '%s'", P("u"));
    expect(2, "--preset: unknown preset 'fast'");
    cli_run(&g_r, "toy --schedule zigzag -o '%s'", P("u"));
    expect(2, "unknown --schedule 'zigzag'");
    cli_run(&g_r, "toy --sampler plms -o '%s'", P("u"));
    expect(2, "--sampler: unknown sampler 'plms'");
    cli_run(&g_r, "toy --scale big -o '%s'", P("u"));
    expect(2, "--scale: unknown scale 'big'");
    cli_run(&g_r, "toy --iters 0");
    expect(2, "--iters must be in");
    cli_run(&g_r, "toy --hidden 12x");
    expect(2, "--hidden expects an integer");
    cli_run(&g_r, "toy --frobnicate");
    expect(2, "frobnicate");
    cli_run(&g_r, "toy --resume x.safetensors --hidden 64");
    expect(2, "--hidden cannot be combined with --resume");
    cli_run(&g_r, "toy --iters 10 --sample-steps 500 -o '%s'", P("u"));
    expect(2, "--sample-steps 500 exceeds 100, the most ddpm takes with T = 100");
    cli_run(&g_r, "toy --iters 10 --sampler dpm++2m --sample-steps 100 -o '%s'", P("u"));
    expect(2, "exceeds 99");
    cli_run(&g_r, "toy --spacing cubic -o '%s'", P("u"));
    expect(2, "--spacing: unknown spacing 'cubic'");
    assert_false(cli_exists(P("u/toy.safetensors")));
}

/* Each bad file: exit 1, a one-line message naming the file and line, no outputs. */
static void test_bad_csv(void **state) {
    (void)state;
    static const struct {
        const char *name, *text, *want;
    } cases[] = {
        {"empty.csv", "", "empty.csv': empty file (no points)"},
        {"text.csv", "x,y\n1,2\n3,four\n", "text.csv' line 3: 'four' is not a number"},
        {"nan.csv", "1,2\nnan,2\n", "nan.csv' line 2: non-finite value 'nan'"},
        {"one.csv", "x,y\n1,2\n5\n", "one.csv' line 3: 1 column, need at least 2 (x,y)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cli_write_text(P(cases[i].name), cases[i].text);
        cli_run(&g_r, "toy --data '%s' --iters 5 -o '%s'", P(cases[i].name), P("bad"));
        expect(1, cases[i].want);
        assert_int_equal(cli_lines(g_r.err), 1);
        assert_false(cli_exists(P("bad"))); /* not even the directory */
    }
    cli_run(&g_r, "toy --data '%s' --iters 5 -o '%s'", P("missing.csv"), P("bad"));
    expect(1, "cannot open");
    assert_non_null(strstr(g_r.err, "missing.csv': No such file or directory"));
}

static void check_png(const char *path, int min_w, int min_h) {
    int w, h, comp;
    unsigned char *img = stbi_load(path, &w, &h, &comp, 3);
    if (!img) fail_msg("'%s' is not a readable PNG", path);
    assert_true(w >= min_w && h >= min_h);
    stbi_image_free(img);
}

static void test_run_writes_everything(void **state) {
    (void)state;
    cli_run(&g_r, "toy " SMALL " --iters 300 -o '%s'", P("run"));
    expect(0, "trained 300 steps");
    check_png(P("run/forward.png"), 5 * 120, 2 * 100); /* 10 panels, 5 per row */
    check_png(P("run/reverse.png"), 5 * 120, 2 * 100);
    check_png(P("run/loss.png"), 160, 100);
    check_png(P("run/samples.png"), 2 * 120, 100); /* data and samples */
    size_t csv_len;
    char *csv = cli_slurp(P("run/samples.csv"), &csv_len);
    assert_int_equal(cli_lines(csv), 301); /* header + -n 300 */
    assert_memory_equal(csv, "x,y\n", 4);
    free(csv);
    char *log = cli_slurp(P("run/log.csv"), &csv_len);
    assert_int_equal(cli_lines(log), 301);
    assert_memory_equal(log, "step,loss,grad_norm\n1,", 22);
    free(log);
    /* the distance and its floor are printed, and the samples are not absurd */
    const char *d = strstr(g_r.out, "energy distance");
    assert_non_null(d);
    double e, fl;
    const char *p = strstr(d, ": ");
    assert_non_null(p);
    assert_int_equal(sscanf(p + 2, "%lf", &e), 1);
    p = strstr(d, "fresh samples: ");
    assert_non_null(p);
    assert_int_equal(sscanf(p + 15, "%lf", &fl), 1);
    assert_true(fl > 0 && e > 0 && e < 100 * fl);
}

/* 300 steps in one go, or 150 + --resume to 300: the same bytes. */
static void test_resume_is_exact(void **state) {
    (void)state;
    cli_run(&g_r, "toy " SMALL " --iters 300 --data moons -o '%s'", P("full"));
    expect(0, NULL);
    cli_run(&g_r, "toy " SMALL " --iters 150 --data moons -o '%s'", P("half"));
    expect(0, NULL);
    cli_run(&g_r, "toy --resume '%s' --iters 300 -n 300 --threads 2 -o '%s'", P("half/toy.safetensors"), P("half"));
    expect(0, "resuming at step 150 of 300");
    assert_true(cli_same_file(P("full/toy.safetensors"), P("half/toy.safetensors")));
    assert_true(cli_same_file(P("full/samples.csv"), P("half/samples.csv")));
    assert_true(cli_same_file(P("full/log.csv"), P("half/log.csv")));
    /* a finished checkpoint only samples; DDIM in 10 steps */
    cli_run(&g_r, "toy --resume '%s' --sampler ddim --sample-steps 10 -n 300 -o '%s'",
            P("full/toy.safetensors"), P("ddim"));
    expect(0, "sampled 300 points with ddim");
    assert_null(strstr(g_r.err, "trained"));
    assert_true(cli_exists(P("ddim/reverse.png")));
    assert_false(cli_same_file(P("full/samples.csv"), P("ddim/samples.csv")));
    cli_run(&g_r, "toy --resume '%s' --sampler dpm++2m -n 300 -o '%s'", P("full/toy.safetensors"), P("dpm"));
    expect(0, "sampled 300 points with dpm++2m");
}

/* A user's own points: header optional, the distance uses subsets of the file. */
static void test_user_csv(void **state) {
    (void)state;
    FILE *f = fopen(P("ring.csv"), "w");
    assert_non_null(f);
    fprintf(f, "x,y\n");
    for (int i = 0; i < 400; i++) fprintf(f, "%d,%d\n", i % 20, (i * 7) % 13);
    fclose(f);
    cli_run(&g_r, "toy --data '%s' --hidden 32 --batch 32 -n 100 --iters 100 --threads 2 -o '%s'",
            P("ring.csv"), P("user"));
    expect(0, "400 points");
    assert_non_null(strstr(g_r.out, "training points"));
    assert_non_null(strstr(g_r.out, "disjoint subsets"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_bad_csv),
        cmocka_unit_test(test_run_writes_everything),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_user_csv),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
