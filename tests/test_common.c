/* test_common.c: the shared helpers of src/core/common.c: the first
 * non-finite element of a buffer (small and parallel-sized buffers, every
 * kind of non-finite, several at once) and the enum name tables. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/common.h"
#include "ddpm/progress.h"
#include "core/util.h"

static void test_first_nonfinite(void **state) {
    (void)state;
    const size_t sizes[] = {0, 1, 7, 40000, 200003}; /* the last two run on the team */
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (size_t s = 0; s < DDPM_COUNT(sizes); s++) {
        size_t n = sizes[s];
        float *x = ddpm_calloc(n ? n : 1, sizeof *x);
        assert_non_null(x);
        for (size_t i = 0; i < n; i++) x[i] = i % 3 ? (float)i * 1e30f : -3.0e38f; /* large but finite */
        assert_int_equal(ddpm_first_nonfinite(x, n), n);
        if (n) {
            size_t at[] = {n - 1, n / 2, 0};
            for (size_t k = 0; k < DDPM_COUNT(at); k++) { /* each earlier one becomes the first */
                x[at[k]] = bad[k % DDPM_COUNT(bad)];
                assert_int_equal(ddpm_first_nonfinite(x, n), at[k]);
                assert_int_equal(ddpm_first_nonfinite(x, at[k]), at[k]); /* stops before it */
            }
            x[0] = -INFINITY;
            assert_int_equal(ddpm_first_nonfinite(x, n), 0);
        }
        ddpm_free(x);
    }
}

static void test_enum_tables(void **state) {
    (void)state;
    static const char *const names[] = {"linear", "cosine", "quadratic"};
    int n = (int)DDPM_COUNT(names);
    for (int k = 0; k < n; k++) {
        assert_int_equal(ddpm_enum_parse(names, n, names[k]), k);
        assert_string_equal(ddpm_enum_name(names, n, k), names[k]);
    }
    assert_int_equal(ddpm_enum_parse(names, n, "Linear"), -1);
    assert_int_equal(ddpm_enum_parse(names, n, "cosine "), -1);
    assert_int_equal(ddpm_enum_parse(names, n, ""), -1);
    assert_int_equal(ddpm_enum_parse(names, n, NULL), -1);
    assert_int_equal(ddpm_enum_parse(names, 1, "cosine"), -1); /* only the first n count */
    assert_string_equal(ddpm_enum_name(names, n, -1), "?");
    assert_string_equal(ddpm_enum_name(names, n, n), "?");
}

/* The message lists names[first..n) from the table, "a, b or c", and quotes
 * what was given through ddpm_show (one printable line). */
static void test_enum_lookup(void **state) {
    (void)state;
    static const char *const names[] = {"default", "linear", "cosine", "quadratic"};
    int n = (int)DDPM_COUNT(names);
    ddpm_error(DDPM_OK, "before");
    assert_int_equal(ddpm_enum_lookup("schedule", names, 1, n, "cosine"), 2);
    assert_string_equal(ddpm_last_error(), "before"); /* a known name leaves the error alone */
    assert_int_equal(ddpm_enum_lookup("schedule", names, 1, n, "default"), -1); /* before first: not a name */
    assert_string_equal(ddpm_last_error(), "unknown schedule 'default' (expected linear, cosine or quadratic)");
    assert_int_equal(ddpm_enum_lookup("kind", names, 0, 2, "a\nb"), -1);
    assert_string_equal(ddpm_last_error(), "unknown kind 'a?b' (expected default or linear)");
    assert_int_equal(ddpm_enum_lookup("kind", names, 3, n, NULL), -1);
    assert_string_equal(ddpm_last_error(), "unknown kind '' (expected quadratic)");
    /* the library's parse functions say the same through their own tables */
    assert_int_equal(ddpm_precision_parse("fp16"), -1);
    assert_string_equal(ddpm_last_error(), "unknown precision 'fp16' (expected fp32 or bf16)");
}

/* Thousands separators, and a buffer too small cuts but terminates. */
static void test_fmt_count(void **state) {
    (void)state;
    char buf[32];
    const struct { size_t n; const char *s; } k[] = {{0, "0"}, {999, "999"}, {1000, "1,000"}, {1623169, "1,623,169"},
                                                     {123456789012, "123,456,789,012"}};
    for (size_t i = 0; i < DDPM_COUNT(k); i++) {
        ddpm_fmt_count(buf, sizeof buf, k[i].n);
        assert_string_equal(buf, k[i].s);
    }
    ddpm_fmt_count(buf, 4, 1623169);
    assert_string_equal(buf, "1,6");
}

/* The progress line as a (done, total) callback ticks it and says go on. */
static void test_progress_on(void **state) {
    (void)state;
    ddpm_progress p;
    ddpm_progress_start(&p, NULL, "x", 10, "steps");
    assert_int_equal(ddpm_progress_on(&p, 4, 10), 0);
    assert_int_equal(p.done, 4);
    assert_int_equal(ddpm_progress_on(&p, 9, 10), 0);
    assert_int_equal(p.done, 9);
}

static void test_round16(void **state) {
    (void)state;
    assert_int_equal(ddpm_round16(0), 0);
    assert_int_equal(ddpm_round16(1), 16);
    assert_int_equal(ddpm_round16(16), 16);
    assert_int_equal(ddpm_round16(17), 32);
    assert_int_equal(ddpm_round16(1000), 1008);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_nonfinite),
        cmocka_unit_test(test_enum_tables),
        cmocka_unit_test(test_enum_lookup),
        cmocka_unit_test(test_fmt_count),
        cmocka_unit_test(test_progress_on),
        cmocka_unit_test(test_round16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
