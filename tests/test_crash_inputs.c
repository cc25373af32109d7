/* test_crash_inputs.c: inputs the fuzz targets (tests/fuzz) found, kept as
 * regression tests. Each names the target and what went wrong; the ASan CI
 * build (.ci/run) turns an out-of-bounds read back into a failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/imagefolder.h"

static void expect_bad_class_list(const char *json) {
    char **names = (char **)1;
    int n = -1;
    if (ddpm_folder_classes_parse(json, &names, &n) == DDPM_OK)
        fail_msg("class list '%s' accepted (%d names)", json, n);
    assert_null(names);
    assert_int_equal(n, 0);
    const char *msg = ddpm_last_error();
    assert_non_null(strstr(msg, "malformed class list"));
    assert_null(strchr(msg, '\n'));
}

/* fuzz_folder: a \u escape with fewer than 4 hex digits at the end of the
 * text: sscanf("%4x") took the 1 digit, then the parser skipped 4 bytes,
 * past the NUL, and read beyond the buffer (ASan heap-buffer-overflow). A sign
 * or a space after \u was taken as part of the number. */
static void test_class_list_short_unicode_escape(void **state) {
    (void)state;
    expect_bad_class_list("[\"\\u1");
    expect_bad_class_list("[\"\\u7");
    expect_bad_class_list("[\"\\u004");
    expect_bad_class_list("[\"\\u+7fx\"]"); /* was accepted as "\x7f" */
    expect_bad_class_list("[\"\\u 41x\"]"); /* was accepted as "A" */
    expect_bad_class_list("[\"\\u-041\"]");
    /* still fine: exactly four digits */
    char **names;
    int n;
    assert_int_equal(ddpm_folder_classes_parse("[\"a\\u0041\",\"\\u007e\"]", &names, &n), DDPM_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "aA");
    assert_string_equal(names[1], "~");
    ddpm_folder_classes_free(names, n);
}

/* fuzz_folder: the error message quoted the raw text, so a class list
 * holding newlines (here the start of a PNG file) gave a multi-line error. */
static void test_class_list_error_is_one_line(void **state) {
    (void)state;
    static const char png[] = "\x89PNG\r\n\x1a\n\x00";
    expect_bad_class_list(png);
    expect_bad_class_list("[\"a\",\n\"b\"\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_list_short_unicode_escape),
        cmocka_unit_test(test_class_list_error_is_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
