/* testenv.h: skipping a test so that ctest sees it, and the data a test needs.
 *
 * cmocka's skip() alone exits 0, so ctest would report a skipped test as
 * Passed. Tests skip through test_skip() instead, and return
 * test_exit(cmocka_run_group_tests(...)) from main: an executable with no
 * failure and at least one skip exits TEST_SKIP_CODE, which CMakeLists.txt
 * sets as every test's SKIP_RETURN_CODE, so ctest reports "Skipped"
 * (configuring fails if a test_*.c calls skip() directly).
 *
 * Data a test should have is not a reason to skip: test_mnist_dir() FAILS
 * the test when MNIST is missing, unless the environment says
 * DDPM_ALLOW_SKIP=1 (then it skips). See tests/README.md.
 */
#ifndef DDPM_TEST_TESTENV_H
#define DDPM_TEST_TESTENV_H

#define TEST_SKIP_CODE 77

/* Prints why, marks the executable as having skipped, and skips the running
 * cmocka test (does not return). */
void test_skip(const char *why);

/* What main returns: failures if any, else TEST_SKIP_CODE if a test skipped,
 * else 0. */
int test_exit(int failures);

/* $DDPM_SHARED_MNIST (CMake sets it: ../shared/mnist beside the source tree
 * if present, else the repository's data/mnist) when it holds
 * train-images-idx3-ubyte.gz; otherwise fails the running test, or skips it
 * when DDPM_ALLOW_SKIP=1. */
const char *test_mnist_dir(void);

#endif
