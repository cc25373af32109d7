/* testenv.c: see testenv.h. */
#include "testenv.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static int g_skipped;

void test_skip(const char *why) {
    g_skipped = 1;
    print_message("skipped: %s\n", why);
    skip();
}

int test_exit(int failures) { return failures ? failures : g_skipped ? TEST_SKIP_CODE : 0; }

const char *test_mnist_dir(void) {
    const char *dir = getenv("DDPM_SHARED_MNIST");
    char probe[4096], why[4400];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", dir ? dir : "");
    if (dir && *dir && access(probe, R_OK) == 0) return dir;
    snprintf(why, sizeof why,
             "MNIST not found (%s unreadable; DDPM_SHARED_MNIST=%s): run scripts/fetch_mnist.sh, "
             "or set DDPM_ALLOW_SKIP=1 to skip the tests that need it",
             probe, dir ? dir : "(unset)");
    const char *allow = getenv("DDPM_ALLOW_SKIP");
    if (allow && !strcmp(allow, "1")) test_skip(why);
    fail_msg("%s", why);
    return NULL;
}
