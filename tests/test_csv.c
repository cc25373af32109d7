/* test_csv.c: the "x,y" points reader: headers, blank lines, CRLF, extra
 * columns, and one-line errors naming the line for a missing or empty file,
 * non-numeric, non-finite and too few columns. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cliutil.h"
#include "ddpm/csv.h"

static char g_dir[256];

static const char *write_file(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    cli_write_text(path, text);
    return path;
}

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

static void test_reads_points(void **state) {
    (void)state;
    float *xy;
    int n;
    const char *p = write_file("a.csv", "x,y\n1,2\n\n  -3.5 , 4e-1 ,extra,cols\r\n5,6");
    assert_int_equal(ddpm_csv_read_points(p, &xy, &n), DDPM_OK);
    assert_int_equal(n, 3);
    float want[6] = {1, 2, -3.5f, 0.4f, 5, 6};
    for (int i = 0; i < 6; i++) assert_true(xy[i] == want[i]);
    ddpm_free(xy);
    /* no header: the first line is a point */
    p = write_file("b.csv", "0.5,0.25\n");
    assert_int_equal(ddpm_csv_read_points(p, &xy, &n), DDPM_OK);
    assert_int_equal(n, 1);
    assert_true(xy[0] == 0.5f && xy[1] == 0.25f);
    ddpm_free(xy);
}

/* The read fails with `status` and a message containing `want`. */
static void expect_error(const char *name, const char *text, ddpm_status status, const char *want) {
    float *xy = (float *)1;
    int n = 7;
    const char *p = text ? write_file(name, text) : name;
    assert_int_equal(ddpm_csv_read_points(p, &xy, &n), status);
    assert_null(xy);
    assert_int_equal(n, 0);
    const char *msg = ddpm_last_error();
    if (!strstr(msg, want)) fail_msg("message '%s' lacks '%s'", msg, want);
    assert_null(strchr(msg, '\n'));
}

static void test_errors_name_the_line(void **state) {
    (void)state;
    expect_error("/nonexistent/pts.csv", NULL, DDPM_ERR_IO,
                 "cannot open '/nonexistent/pts.csv': No such file or directory");
    expect_error("empty.csv", "", DDPM_ERR_FORMAT, "empty.csv': empty file (no points)");
    expect_error("hdr.csv", "x,y\n\n", DDPM_ERR_FORMAT, "no points (only a header or blank lines)");
    expect_error("nan.csv", "x,y\n1,2\n3,nan\n", DDPM_ERR_FORMAT, "nan.csv' line 3: non-finite value 'nan'");
    expect_error("inf.csv", "1,2\ninf,2\n", DDPM_ERR_FORMAT, "line 2: non-finite value 'inf'");
    expect_error("big.csv", "1,1e39\n", DDPM_ERR_FORMAT, "line 1: non-finite value '1e39'");
    expect_error("abc.csv", "x,y\n1,2\n\n1,abc\n", DDPM_ERR_FORMAT, "abc.csv' line 4: 'abc' is not a number");
    expect_error("junk.csv", "1,2\n1.5x,2\n", DDPM_ERR_FORMAT, "line 2: '1.5x' is not a number");
    expect_error("one.csv", "x,y\n1,2\n3\n", DDPM_ERR_FORMAT, "one.csv' line 3: 1 column, need at least 2 (x,y)");
    expect_error("emptycol.csv", "1,2\n3,\n", DDPM_ERR_FORMAT, "line 2: column 2 is empty");
    /* a header is only allowed on the first line */
    expect_error("hdr2.csv", "1,2\nx,y\n", DDPM_ERR_FORMAT, "line 2: 'x' is not a number");
    char dir[300];
    snprintf(dir, sizeof dir, "%s", g_dir);
    expect_error(dir, NULL, DDPM_ERR_IO, "not a regular file");
}

/* Too many lines is refused before the points are allocated. */
static void test_line_cap(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/lines.csv", g_dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    static char nl[1 << 16];
    memset(nl, '\n', sizeof nl);
    for (int i = 0; i < DDPM_CSV_MAX_LINES / (int)sizeof nl; i++) assert_int_equal(fwrite(nl, 1, sizeof nl, f), sizeof nl);
    fclose(f);
    expect_error(path, NULL, DDPM_ERR_FORMAT, "more than 16777216 lines");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_points),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_line_cap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
