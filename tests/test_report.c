/* test_report.c: `ddpm report` (report.h) on run directories built here: a
 * tiny checkpoint, a log.csv, PNG grids and run.txt; damaged and missing
 * parts; comparisons and their refusal; escaping of every string from a
 * file; base64. The pages are opened in a real browser by
 * tests/browser_report.sh. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "cliutil.h"
#include "ddpm/checkpoint.h"
#include "ddpm/image.h"
#include "ddpm/report.h"
#include "report/report_internal.h"

#define XSS "<img src=x onerror=alert(1)>"
#define XSS_ESCAPED "&lt;img src=x onerror=alert(1)&gt;"

static char g_tmp[512];

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_tmp, sizeof g_tmp);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_tmp);
    return 0;
}

static void path_of(char *out, size_t cap, const char *dir, const char *name) {
    snprintf(out, cap, "%s/%s", dir, name);
}

/* A fresh directory g_tmp/name. */
static void make_dir(char *out, size_t cap, const char *name) {
    path_of(out, cap, g_tmp, name);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mkdir(out, 0755), 0);
}

/* A tiny checkpoint (zero weights: only the metadata matters here) with the
 * extra metadata pairs kv[0..n). */
static void write_ckpt(const char *dir, int res, const ddpm_st_meta *kv, int n) {
    ddpm_unet_config c;
    ddpm_unet_config_default(&c);
    c.in_ch = 1;
    c.res = res;
    c.ch = 8;
    c.num_levels = 2;
    c.ch_mult[0] = 1;
    c.ch_mult[1] = 2;
    c.num_res_blocks = 1;
    c.num_attn = 0;
    c.groups = 4;
    c.num_classes = 2;
    size_t np;
    double flops;
    assert_int_equal(ddpm_unet_describe(&c, &np, &flops), DDPM_OK);
    float *p = calloc(np, sizeof *p);
    assert_non_null(p);
    char path[1100];
    path_of(path, sizeof path, dir, "ckpt.safetensors");
    ddpm_checkpoint_extras ex = {.extra = kv, .nextra = n};
    if (ddpm_checkpoint_save(path, &c, p, &ex)) fail_msg("%s", ddpm_last_error());
    free(p);
}

static void write_grid(const char *dir, const char *name, float level) {
    float x[4 * 8 * 8];
    for (int i = 0; i < 4 * 64; i++) x[i] = level * (float)((i * 7) % 13) / 13.0f;
    char path[1100];
    path_of(path, sizeof path, dir, name);
    if (ddpm_image_write_grid(path, x, 4, 1, 8, 8, 2, 0.0f, 1.0f)) fail_msg("%s", ddpm_last_error());
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[1100];
    path_of(path, sizeof path, dir, name);
    cli_write_text(path, text);
}

static const char LOG[] = "iter,loss,lr,grad_norm,time_s,fid,precision,recall,label_accuracy\n"
                          "1,0.9,0.001,2.0,0.5,,,,\n"
                          "2,0.5,0.001,1.5,1.0,,,,\n"
                          "3,0.3,0.001,1.0,1.5,80.5,0.1,0.2,0.3\n"
                          "4,0.2,0.0005,0.8,2.0,,,,\n"
                          "5,0.15,0.0001,0.7,2.5,40.25,0.4,0.5,0.6\n";

/* A complete train run: checkpoint (hostile metadata value and class name),
 * log, two grids and the final one, run.txt. */
static void make_run(char *dir, size_t cap, const char *name, const char *lr, int res) {
    make_dir(dir, cap, name);
    ddpm_st_meta kv[] = {{"data", "mnist"},
                         {"lr", lr},
                         {"rng", name}, /* differs between runs but is state, not recipe */
                         {"note", XSS},
                         {"classes", "[\"" XSS "\",\"b&b\"]"}};
    write_ckpt(dir, res, kv, 5);
    write_file(dir, "log.csv", LOG);
    write_grid(dir, "samples_000002.png", 0.5f);
    write_grid(dir, "samples_000004.png", 0.8f);
    write_grid(dir, "samples.png", 1.0f);
    write_file(dir, "run.txt", "command=ddpm train --title '" XSS "'\ncpu=Test CPU\nthreads=2\nstatus=finished\nwall_s=3.5\n");
}

static char *report(const char *const *dirs, int n, const char *out) {
    if (ddpm_report_write(dirs, n, out, NULL)) fail_msg("%s", ddpm_last_error());
    size_t len;
    return cli_slurp(out, &len);
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

static void test_base64(void **state) {
    (void)state;
    /* RFC 4648 section 10 */
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[16];
        size_t n = strlen(in[i]);
        assert_int_equal(ddpm_base64_len(n), strlen(want[i]));
        assert_int_equal(ddpm_base64_encode(out, (const unsigned char *)in[i], n), strlen(want[i]));
        assert_string_equal(out, want[i]);
    }
    const unsigned char hi[3] = {0xff, 0xfe, 0xfd};
    char out[8];
    ddpm_base64_encode(out, hi, 3);
    assert_string_equal(out, "//79");
}

static void test_escape(void **state) {
    (void)state;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    assert_non_null(f);
    ddpm_html_text(f, "<a href=\"x\">&'\x01\xff caf\xc3\xa9");
    ddpm_html_text(f, NULL);
    fclose(f);
    assert_string_equal(buf, "&lt;a href=&quot;x&quot;&gt;&amp;&#39;?? caf\xc3\xa9");
    free(buf);
}

static void test_single_run(void **state) {
    (void)state;
    char dir[600], out[700];
    make_run(dir, sizeof dir, "one", "0.001", 8);
    path_of(out, sizeof out, dir, "report.html");
    const char *dirs[] = {dir};
    char *html = report(dirs, 1, out);
    /* the hostile strings only escaped: a metadata value, a class name, run.txt's command */
    assert_null(strstr(html, XSS));
    assert_true(count(html, XSS_ESCAPED) >= 3);
    assert_non_null(strstr(html, "b&amp;b"));
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "http-equiv=\"refresh\"")); /* finished */
    /* the recipe from both sources, the plots, the grids in order, the final grid as it is */
    assert_non_null(strstr(html, "Test CPU"));
    assert_non_null(strstr(html, ">mnist<"));
    assert_true(count(html, "<svg") >= 7); /* loss, lr, grad_norm, 4 metrics, 4 vs wall time */
    assert_non_null(strstr(html, "FID (lower is better) vs wall time"));
    assert_int_equal(count(html, "data:image/png;base64,"), 3);
    char *a = strstr(html, "iteration 2<"), *b = strstr(html, "iteration 4<");
    assert_true(a && b && a < b);
    size_t len;
    char png[700];
    path_of(png, sizeof png, dir, "samples.png");
    char *bytes = cli_slurp(png, &len), *b64 = malloc(ddpm_base64_len(len) + 1);
    ddpm_base64_encode(b64, (const unsigned char *)bytes, len);
    assert_non_null(strstr(html, b64));
    assert_null(strstr(html, "Missing or damaged"));
    free(b64);
    free(bytes);
    free(html);
}

static void test_running_reloads(void **state) {
    (void)state;
    char dir[600], out[700];
    make_dir(dir, sizeof dir, "live");
    write_file(dir, "run.txt", "status=running\nthreads=1\n");
    write_file(dir, "log.csv", "iter,loss,fid\n1,0.5,\n2,0.4,\n3,0."); /* the trainer is mid-line */
    path_of(out, sizeof out, dir, "r.html");
    const char *dirs[] = {dir};
    char *html = report(dirs, 1, out);
    assert_non_null(strstr(html, "<meta http-equiv=\"refresh\" content=\"30\">"));
    assert_non_null(strstr(html, "is training"));
    assert_null(strstr(html, "cut"));  /* a line being written is not damage */
    assert_null(strstr(html, "FID")); /* no evaluation yet: no empty plot */
    assert_non_null(strstr(html, "Training loss"));
    /* no checkpoint yet, no final grid: said, not fatal */
    assert_non_null(strstr(html, "ckpt.safetensors: not written yet"));
    assert_non_null(strstr(html, "samples.png: missing (written when training ends)"));
    free(html);
    /* the training loop's call: RUN_DIR/report.html */
    assert_int_equal(ddpm_report_write_run(dir), DDPM_OK);
    path_of(out, sizeof out, dir, "report.html");
    assert_true(cli_exists(out));
}

static void test_damaged_log(void **state) {
    (void)state;
    char dir[600], out[700];
    make_dir(dir, sizeof dir, "damaged");
    write_file(dir, "log.csv",
               "iter,loss,lr\n"
               "1,0.9,0.1\n"
               "2,0.8,0.1,7\n" /* too many fields */
               "3,abc,0.1\n"   /* not a number */
               "4,0.6\n"       /* too few */
               "5,0.5,0.1\n"
               "6,0.4"); /* cut */
    write_grid(dir, "samples_000010.png", 1.0f);
    write_file(dir, "samples.png", "\x89PNG\r\n\x1a\n garbage"); /* a cut PNG */
    path_of(out, sizeof out, dir, "r.html");
    const char *dirs[] = {dir};
    char *html = report(dirs, 1, out);
    assert_non_null(strstr(html, "log.csv: the last line is cut (2 of 3 fields)"));
    assert_non_null(strstr(html, "log.csv: 2 lines with a number of fields other than the header&#39;s 3 (first: line 3)"));
    assert_non_null(strstr(html, "log.csv: 1 cell that are not numbers (first: line 4)"));
    assert_non_null(strstr(html, "samples.png: not a complete PNG file"));
    assert_true(count(html, "<svg") >= 2); /* loss and lr from the rows that parse */
    assert_int_equal(count(html, "data:image/png;base64,"), 1);
    /* the parsed rows: iterations 1, 3 (loss blank) and 5 */
    ddpm_rdir r;
    assert_int_equal(ddpm_rdir_load(&r, dir), DDPM_OK);
    assert_int_equal(r.nrows, 3);
    assert_true(isnan(r.val[1 * 3 + 1]));
    assert_true(r.val[2 * 3 + 0] == 5.0 && r.val[2 * 3 + 1] == 0.5);
    ddpm_rdir_free(&r);
    free(html);
}

static void test_bad_headers(void **state) {
    (void)state;
    char dir[600], out[700];
    make_dir(dir, sizeof dir, "headers");
    write_file(dir, "log.csv", "1,0.5\n2,0.4\n"); /* no header */
    write_file(dir, "run.txt", "Bad Key=1\nstatus=finished\nnoequals\n");
    path_of(out, sizeof out, dir, "r.html");
    const char *dirs[] = {dir};
    char *html = report(dirs, 1, out);
    assert_non_null(strstr(html, "log.csv: the first line is not a header"));
    assert_non_null(strstr(html, "run.txt line 1: not a new key=value line"));
    assert_non_null(strstr(html, "run.txt line 3: not a new key=value line"));
    free(html);
    /* a hostile column name is escaped, more than the cap of columns is refused */
    write_file(dir, "log.csv", "iter," XSS "\n1,2\n2,3\n");
    html = report(dirs, 1, out);
    assert_null(strstr(html, XSS));
    assert_non_null(strstr(html, XSS_ESCAPED));
    free(html);
    char big[8 * (DDPM_REPORT_MAX_COLS + 2)] = "iter";
    for (int i = 0; i <= DDPM_REPORT_MAX_COLS; i++) snprintf(big + strlen(big), sizeof big - strlen(big), ",c%d", i);
    strcat(big, "\n");
    write_file(dir, "log.csv", big);
    html = report(dirs, 1, out);
    assert_non_null(strstr(html, "log.csv: more than 64 columns, not read"));
    free(html);
}

/* Values at the ends of the double range and spans below their precision
 * still give finite coordinates (Chromium logs an error for "nan" in an SVG
 * attribute) and terminate. */
static void test_extreme_values(void **state) {
    (void)state;
    char dir[600], out[700];
    make_dir(dir, sizeof dir, "extreme");
    write_file(dir, "log.csv",
               "iter,loss,lr,grad_norm,fid\n"
               "1,1e308,1e-300,1e17,nan\n"
               "2,-1e308,1e300,1.0000000000000002e17,inf\n"
               "3,0,1e-320,1e17,-inf\n"
               "100000000000000000000,5,0,1e17,1e-310\n");
    path_of(out, sizeof out, dir, "r.html");
    const char *dirs[] = {dir};
    char *html = report(dirs, 1, out);
    int plots = 0;
    for (char *p = strstr(html, "<svg"); p; p = strstr(p + 1, "<svg"), plots++) {
        char *end = strstr(p, "</svg>");
        assert_non_null(end);
        *end = '\0';
        if (strstr(p, "nan") || strstr(p, "inf")) fail_msg("a non-finite coordinate: %.300s", p);
        *end = '<';
    }
    assert_int_equal(plots, 3); /* loss, lr, grad_norm; fid has no finite value */
    free(html);
}

static void test_not_a_run(void **state) {
    (void)state;
    char dir[600], out[700];
    make_dir(dir, sizeof dir, "empty");
    write_grid(dir, "samples.png", 1.0f); /* a grid alone is not a run */
    path_of(out, sizeof out, dir, "r.html");
    const char *dirs[] = {dir};
    assert_int_equal(ddpm_report_write(dirs, 1, out, NULL), DDPM_ERR_ARG);
    assert_non_null(strstr(ddpm_last_error(), "is not a run directory"));
    assert_false(cli_exists(out));
    char missing[700];
    path_of(missing, sizeof missing, g_tmp, "nope");
    dirs[0] = missing;
    assert_int_equal(ddpm_report_write(dirs, 1, out, NULL), DDPM_ERR_ARG);
    assert_non_null(strstr(ddpm_last_error(), "nope"));
}

static void test_compare(void **state) {
    (void)state;
    char a[600], b[600], c[600], out[700];
    make_run(a, sizeof a, "cmp_a", "0.001", 8);
    make_run(b, sizeof b, "cmp_b", "0.0003", 8);
    path_of(out, sizeof out, g_tmp, "compare.html");
    const char *dirs[] = {a, b};
    char *html = report(dirs, 2, out);
    assert_non_null(strstr(html, "lr=0.001"));
    assert_non_null(strstr(html, "lr=0.0003"));
    assert_null(strstr(html, "rng=cmp_a")); /* state, not recipe */
    assert_null(strstr(html, XSS));
    assert_int_equal(count(html, "data:image/png;base64,"), 2); /* the final grids */
    assert_non_null(strstr(html, "Final metrics"));
    assert_non_null(strstr(html, ">40.25<")); /* the last FID of each run */
    assert_true(count(html, "<svg") >= 7);
    free(html);
    /* a run without a checkpoint yet: its recipe values are unknown, not different */
    char d[600];
    make_dir(d, sizeof d, "cmp_d");
    write_file(d, "run.txt", "command=x\ncpu=Test CPU\nthreads=1\nstatus=running\n");
    write_file(d, "log.csv", "iter,loss\n1,0.5\n");
    const char *partial[] = {a, d};
    html = report(partial, 2, out);
    assert_non_null(strstr(html, "threads=2"));
    assert_non_null(strstr(html, "threads=1"));
    assert_null(strstr(html, "lr=0.001"));
    assert_null(strstr(html, "unknown"));
    free(html);
    /* another image size is refused, naming both runs and the difference */
    make_run(c, sizeof c, "cmp_c", "0.001", 16);
    remove(out);
    const char *bad[] = {a, c};
    assert_int_equal(ddpm_report_write(bad, 2, out, NULL), DDPM_ERR_ARG);
    assert_non_null(strstr(ddpm_last_error(), "cmp_a"));
    assert_non_null(strstr(ddpm_last_error(), "cmp_c"));
    assert_non_null(strstr(ddpm_last_error(), "res differs (8 vs 16)"));
    assert_false(cli_exists(out));
}

/* The default page: inside the run for one, compare.html for several. */
static void test_default_path(void **state) {
    (void)state;
    char buf[64];
    const char *dirs[] = {"runs/a", "runs/b"};
    assert_true(ddpm_report_default_path(buf, sizeof buf, dirs, 1));
    assert_string_equal(buf, "runs/a/report.html");
    assert_true(ddpm_report_default_path(buf, sizeof buf, dirs, 2));
    assert_string_equal(buf, "compare.html");
    assert_false(ddpm_report_default_path(buf, 10, dirs, 1)); /* cut: refused */
}

static void test_cli(void **state) {
    (void)state;
    char dir[600], e[600];
    make_run(dir, sizeof dir, "cli", "0.001", 8);
    make_dir(e, sizeof e, "cli_empty");
    cli_result r;
    cli_run(&r, "report '%s'", dir);
    cli_expect(&r, 0, NULL);
    char out[700];
    path_of(out, sizeof out, dir, "report.html");
    assert_true(cli_exists(out));
    cli_run(&r, "report '%s'", e);
    cli_expect(&r, 1, "is not a run directory");
    assert_int_equal(cli_lines(r.err), 1);
    cli_run(&r, "report");
    cli_expect(&r, 2, "name a run directory");
    cli_run(&r, "report '%s' -o '%s/no/such/dir/x.html'", dir, g_tmp);
    cli_expect(&r, 1, "x.html");
    const char *words[] = {"RUN_DIR", "--out", "compare.html", "report.html", "--refresh"};
    cli_check_help("report", words, 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),         cmocka_unit_test(test_escape),
        cmocka_unit_test(test_single_run),     cmocka_unit_test(test_running_reloads),
        cmocka_unit_test(test_damaged_log),    cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_extreme_values), cmocka_unit_test(test_not_a_run),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_default_path),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
