/* test_gradcheck.c: the finite-difference checker itself must fail on the
 * bugs it exists to catch: a NaN gradient element, wrong
 * elements among the checked subset, wrong small entries, a dead backward,
 * and it must pass a correct gradient. The layer is y = W x (W 1 x n), whose
 * exact gradient dL/dx = proj * W is known. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/common.h"
#include "gradcheck.h"

/* L = proj * sum_i w[i] x[i]; out has one element. */
typedef struct {
    float *x, *w, out;
    size_t n;
} dot_ctx;

static void dot_forward(void *p) {
    dot_ctx *c = p;
    double s = 0.0;
    for (size_t i = 0; i < c->n; i++) s += (double)c->w[i] * (double)c->x[i];
    c->out = (float)s;
}

typedef struct {
    dot_ctx c;
    float *grad; /* the "analytic" gradient under test, = w (proj = 1) */
    float proj;
} dot_case;

static dot_case dot_make(size_t n, uint64_t seed) {
    dot_case d = {{gc_alloc(n), gc_alloc(n), 0.0f, n}, gc_alloc(n), 1.0f};
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    gc_fill_uniform(&rng, d.c.x, n, -1.0f, 1.0f);
    gc_fill_uniform(&rng, d.c.w, n, 0.5f, 1.0f); /* |dL/dx_i| in [0.5, 1] */
    memcpy(d.grad, d.c.w, n * sizeof(float));
    return d;
}

static void dot_free(dot_case *d) {
    ddpm_free(d->c.x);
    ddpm_free(d->c.w);
    ddpm_free(d->grad);
}

/* 0 if gradcheck passes the (possibly planted-wrong) gradient of d. */
static int run(dot_case *d, const char *name, size_t max_elems, gc_result *r) {
    gc_tensor t = {name, d->c.x, d->grad, d->c.n};
    gc_opts o = {.eps = 1e-2, .tol = GC_TOL, .atol = GC_ATOL, .max_elems = max_elems, .order = 2};
    int rc = gc_check_tensor("dot", &t, dot_forward, &d->c, &d->c.out, 1, &d->proj, &o, r);
    printf("%s: rc %d err %.3g elem %.3g checked %zu from %zu: %s\n", name, rc, r->err, r->elem,
           r->checked, r->first, r->msg);
    return rc;
}

static void test_correct_gradient_passes(void **state) {
    (void)state;
    gc_result r;
    dot_case d = dot_make(8, 1);
    assert_int_equal(run(&d, "exact", 400, &r), 0);
    assert_true(r.err < 1e-5);
    dot_free(&d);
    d = dot_make(801, 2); /* a strided subset */
    assert_int_equal(run(&d, "exact strided", 400, &r), 0);
    assert_int_equal(r.checked, 267); /* stride 3 from 0, 1 or 2 */
    dot_free(&d);
}

/* One NaN among 8 elements (the old checker reported max_rel_err 1.6e-5). */
static void test_nan_fails(void **state) {
    (void)state;
    gc_result r;
    dot_case d = dot_make(8, 3);
    d.grad[5] = NAN;
    assert_int_equal(run(&d, "nan", 400, &r), -1);
    assert_non_null(strstr(r.msg, "element 5 is nan"));
    d.grad[5] = d.c.w[5];
    d.grad[2] = INFINITY;
    assert_int_equal(run(&d, "inf", 400, &r), -1);
    dot_free(&d);
    /* a NaN outside the checked subset fails too */
    d = dot_make(801, 4);
    assert_int_equal(run(&d, "probe", 400, &r), 0);
    size_t unchecked = (r.first + 1) % 3;
    d.grad[unchecked] = NAN;
    assert_int_equal(run(&d, "nan unchecked", 400, &r), -1);
    dot_free(&d);
    /* and a non-finite numeric derivative (the forward produces a NaN) */
    double num[2] = {1.0, NAN};
    size_t idx[2] = {0, 1};
    float g[2] = {1.0f, 1.0f};
    assert_int_equal(gc_compare(g, 2, idx, num, 2, GC_TOL, GC_ATOL, &r), -1);
    assert_non_null(strstr(r.msg, "numeric gradient element 1"));
}

/* 801 elements, every third one wrong (x100, which would also inflate a
 * denominator taken over all elements): whichever residue the checker visits,
 * when it is the wrong one it fails; and the residue it visits depends on the
 * names (a varied start offset), so other tensors visit other residues. */
static void test_strided_subset(void **state) {
    (void)state;
    gc_result r;
    int failed = 0;
    for (size_t res = 0; res < 3; res++) {
        dot_case d = dot_make(801, 5);
        for (size_t i = res; i < 801; i += 3) d.grad[i] *= 100.0f;
        int rc = run(&d, "every third", 400, &r);
        if (r.first == res) assert_int_equal(rc, -1);
        else assert_int_equal(rc, 0); /* unchecked elements cannot be seen... */
        failed += rc != 0;
        dot_free(&d);
    }
    assert_int_equal(failed, 1);
    /* ...but different tensor names start at different offsets */
    const char *names[] = {"input", "weight", "bias", "gamma", "beta", "qkv", "x", "w"};
    int seen[3] = {0};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        dot_case d = dot_make(801, 6);
        assert_int_equal(run(&d, names[k], 400, &r), 0);
        assert_true(r.first < 3);
        seen[r.first] = 1;
        dot_free(&d);
    }
    assert_true(seen[0] + seen[1] + seen[2] >= 2);
}

/* Small entries: half of 8 entries at 5e-4 of the largest set to zero pass
 * the max-norm test (error 5e-4 < tol) but not the elementwise one. */
static void test_small_entries(void **state) {
    (void)state;
    gc_result r;
    dot_case d = dot_make(8, 7);
    for (size_t i = 0; i < 8; i++)
        if (i % 2) d.c.w[i] = d.grad[i] = 5e-4f * (i == 1 ? -1.0f : 1.0f);
    d.c.w[0] = d.grad[0] = 1.0f;
    assert_int_equal(run(&d, "small exact", 400, &r), 0);
    for (size_t i = 1; i < 8; i += 2) d.grad[i] = 0.0f;
    assert_int_equal(run(&d, "small zeroed", 400, &r), -1);
    assert_true(r.err <= GC_TOL); /* the max-norm test alone would pass */
    assert_non_null(strstr(r.msg, "element"));
    /* a 1% error on one mid-sized entry (0.1 of the max) also fails */
    for (size_t i = 1; i < 8; i += 2) d.grad[i] = d.c.w[i];
    d.c.w[2] = 0.1f;
    d.grad[2] = 0.101f;
    assert_int_equal(run(&d, "one percent", 400, &r), -1);
    dot_free(&d);
}

/* A dead backward (all-zero analytic gradient) and a tensor the forward does
 * not read (all-zero numeric gradient) fail. */
static void test_all_zero(void **state) {
    (void)state;
    gc_result r;
    dot_case d = dot_make(8, 8);
    memset(d.grad, 0, 8 * sizeof(float));
    assert_int_equal(run(&d, "dead backward", 400, &r), -1);
    assert_non_null(strstr(r.msg, "analytic gradient is all zero"));
    memcpy(d.grad, d.c.x, 8 * sizeof(float));
    memset(d.c.w, 0, 8 * sizeof(float));
    assert_int_equal(run(&d, "unread", 400, &r), -1);
    assert_non_null(strstr(r.msg, "numeric gradient is all zero"));
    dot_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_correct_gradient_passes),
        cmocka_unit_test(test_nan_fails),
        cmocka_unit_test(test_strided_subset),
        cmocka_unit_test(test_small_entries),
        cmocka_unit_test(test_all_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
