/* test_eval_clf.c: the evaluation classifier: gradient check of the whole
 * network (every parameter tensor and through conv, ReLU, max-pool and
 * linear), training (deterministic, and it learns a synthetic 4-class
 * task), the file round trip and its validation, the cache name, SHA-256
 * test vectors. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <omp.h>

#include "ddpm/classifier.h"
#include "ddpm/common.h"
#include "ddpm/rng.h"
#include "eval/sha256.h"
#include "eval/clf_internal.h"
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


/* L = sum logits * proj in double, at the current parameters. */
static double clf_loss(clf_ctx *c, const float *proj) {
    clf_fwd(c);
    double L = 0.0;
    for (int i = 0; i < c->N * 5; i++) L += (double)c->logits[i] * proj[i];
    return L;
}

/* The kink pattern of the last forward: which ReLU outputs are 0 and which
 * element each max-pool window took. */
typedef struct {
    size_t n1, n2, nh, p1, p2;
    uint8_t *z;
} kinks;

static void kinks_take(const ddpm_classifier *m, kinks *k, uint8_t *z) {
    size_t o = 0;
    for (size_t i = 0; i < k->n1; i++) z[o++] = m->a1[i] == 0.0f;
    for (size_t i = 0; i < k->n2; i++) z[o++] = m->a2[i] == 0.0f;
    for (size_t i = 0; i < k->nh; i++) z[o++] = m->h[i] == 0.0f;
    memcpy(z + o, m->am1, k->p1 + k->p2); /* am2 follows am1 */
}

/* The whole network through conv, ReLU, max-pool and linear, per parameter
 * tensor, by central differences (h = 1e-2). A ReLU or max-pool kink inside
 * the stencil makes a finite difference meaningless, and in float32 through
 * four layers a small step drowns in rounding noise; a conv1 weight moves
 * every pre-activation of its channel and all after it, so such crossings
 * are common (1-2% errors on conv1 when they are counted). So every difference
 * is taken only where the kink pattern (every ReLU's zero set and every
 * max-pool's choice) is the same at +h and -h as at the point itself: there
 * the network is linear in any one parameter (the logits are, and the loss
 * is their projection), so the difference is exact but for rounding, which
 * through four float32 layers is ~1e-4 absolute: as for the UNet and the toy
 * MLP, the elementwise atol is 0.5 tol max|g| (the max-norm test as ever).
 * Those elements must pass gc_compare (max-norm and elementwise), and at
 * least a quarter of each tensor's checked elements must be kink-free. */
static void test_gradcheck(void **state) {
    (void)state;
    enum { N = 1, R = 8, K = 5 };
    ddpm_clf_config cfg = {2, R, K};
    ddpm_classifier *m;
    assert_int_equal(ddpm_clf_create(&m, &cfg, N, true), DDPM_OK);
    ddpm_clf_init_params(m, 3);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 4);
    float *p = ddpm_clf_params(m);
    for (int k = 0; k < CLF_NPARAMS; k++) /* small random biases: some units on, some off */
        if (!m->table[k].fan_in) gc_fill_uniform(&rng, p + m->table[k].offset, m->table[k].numel, -0.1f, 0.1f);
    clf_ctx c = {m, gc_alloc((size_t)N * 2 * R * R), gc_alloc((size_t)N * K), N};
    gc_fill_uniform(&rng, c.x, (size_t)N * 2 * R * R, -1, 1);
    float *proj = gc_alloc((size_t)N * K);
    gc_fill_normal(&rng, proj, (size_t)N * K);
    kinks kp = {(size_t)N * CLF_C1 * R * R, (size_t)N * CLF_C2 * R * R / 4, (size_t)N * DDPM_CLF_FEATURES,
                (size_t)N * CLF_C1 * R * R / 4, (size_t)N * CLF_C2 * R * R / 16, NULL};
    size_t nz = kp.n1 + kp.n2 + kp.nh + kp.p1 + kp.p2;
    uint8_t *z0 = malloc(nz), *z1 = malloc(nz);
    clf_fwd(&c);
    kinks_take(m, &kp, z0);
    ddpm_clf_zero_grad(m);
    assert_int_equal(ddpm_clf_backward(m, proj), DDPM_OK);
    const float *g = ddpm_clf_grads(m);
    for (int k = 0; k < CLF_NPARAMS; k++) {
        const clf_param *t = &m->table[k];
        float *x = p + t->offset;
        size_t stride = (t->numel + 299) / 300, all = 0, ok = 0, *idx = calloc(t->numel, sizeof *idx);
        double *num = calloc(t->numel, sizeof *num);
        for (size_t e = (size_t)k % stride; e < t->numel; e += stride, all++) {
            float x0 = x[e];
            x[e] = (float)(x0 + 1e-2);
            double lp = clf_loss(&c, proj);
            kinks_take(m, &kp, z1);
            bool smooth = !memcmp(z0, z1, nz);
            x[e] = (float)(x0 - 1e-2);
            double lm = clf_loss(&c, proj);
            kinks_take(m, &kp, z1);
            smooth = smooth && !memcmp(z0, z1, nz);
            x[e] = x0;
            if (smooth) idx[ok] = e, num[ok++] = (lp - lm) / ((double)(float)(x0 + 1e-2) - (double)(float)(x0 - 1e-2));
        }
        gc_result r;
        int bad = gc_compare(g + t->offset, t->numel, idx, num, ok, GC_TOL, 0.5, &r);
        print_message("gradcheck classifier %s: max_rel_err=%.3g elem=%.3g (%zu of %zu checked kink-free)\n",
                      t->name, r.err, r.elem, ok, all);
        if (bad) fail_msg("classifier %s: %s", t->name, r.msg);
        assert_true(4 * ok >= all);
        free(idx);
        free(num);
    }
    free(z0);
    free(z1);
    ddpm_free(c.x);
    ddpm_free(c.logits);
    ddpm_free(proj);
    ddpm_clf_free(m);
}

static void test_sha256(void **state) {
    (void)state;
    const char *msg[3] = {"", "abc", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"};
    const char *want[3] = {"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                           "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                           "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"};
    for (int i = 0; i < 3; i++) {
        ddpm_sha256 c;
        uint8_t d[32];
        char hex[65];
        ddpm_sha256_init(&c);
        /* in two pieces, to cross the buffering */
        size_t n = strlen(msg[i]);
        ddpm_sha256_update(&c, msg[i], n / 3);
        ddpm_sha256_update(&c, msg[i] + n / 3, n - n / 3);
        ddpm_sha256_final(&c, d);
        ddpm_sha256_hex(hex, d, 32);
        assert_string_equal(hex, want[i]);
    }
}

/* 4 classes of 8x8 images: a bright 2x2 block in one quadrant over noise. */
static void synth(ddpm_dataset *ds, int n, uint64_t seed) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    *ds = (ddpm_dataset){.n = n, .c = 1, .h = 8, .w = 8, .num_classes = 4};
    ds->pixels = malloc((size_t)n * 64);
    ds->labels = malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        int k = (int)ddpm_rng_below(&rng, 4), y = 1 + 4 * (k / 2) + (int)ddpm_rng_below(&rng, 2);
        int x = 1 + 4 * (k % 2) + (int)ddpm_rng_below(&rng, 2);
        ds->labels[i] = k;
        for (int p = 0; p < 64; p++) ds->pixels[(size_t)i * 64 + p] = (uint8_t)ddpm_rng_below(&rng, 80);
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) ds->pixels[(size_t)i * 64 + (y + a) * 8 + x + b] = 220;
    }
}

static void test_train_learns_and_is_deterministic(void **state) {
    (void)state;
    ddpm_dataset tr, te;
    synth(&tr, 1024, 1);
    synth(&te, 256, 2);
    ddpm_clf_config cfg = {1, 8, 4};
    ddpm_clf_train_opts o;
    ddpm_clf_train_default(&o);
    o.epochs = 8; /* 128 steps: past the 100 warmup steps */
    o.seed = 9;
    ddpm_classifier *a, *b;
    assert_int_equal(ddpm_clf_create(&a, &cfg, 64, true), DDPM_OK);
    assert_int_equal(ddpm_clf_create(&b, &cfg, 64, true), DDPM_OK);
    double acc0;
    ddpm_clf_init_params(a, 9);
    assert_int_equal(ddpm_clf_accuracy(a, &te, &acc0), DDPM_OK);
    assert_int_equal(ddpm_clf_train(a, &tr, &o, NULL, NULL), DDPM_OK);
    assert_int_equal(ddpm_clf_train(b, &tr, &o, NULL, NULL), DDPM_OK);
    assert_memory_equal(ddpm_clf_params(a), ddpm_clf_params(b), ddpm_clf_num_params(a) * sizeof(float));
    double acc;
    assert_int_equal(ddpm_clf_accuracy(a, &te, &acc), DDPM_OK);
    printf("accuracy before training %.3f, after 8 epochs %.3f\n", acc0, acc);
    assert_true(acc > 0.95 && acc0 < 0.6);
    /* a different seed gives different weights */
    o.seed = 10;
    assert_int_equal(ddpm_clf_train(b, &tr, &o, NULL, NULL), DDPM_OK);
    assert_memory_not_equal(ddpm_clf_params(a), ddpm_clf_params(b), ddpm_clf_num_params(a) * sizeof(float));

    /* file round trip: same logits */
    char path[] = "/tmp/ddpm-clf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    const ddpm_st_meta meta[1] = {{"test_accuracy", "0.99"}};
    assert_int_equal(ddpm_clf_save(a, path, meta, 1), DDPM_OK);
    ddpm_classifier *c;
    char v[32];
    assert_int_equal(ddpm_clf_load(&c, path, 16, "test_accuracy", v, sizeof v), DDPM_OK);
    assert_string_equal(v, "0.99");
    float pa[4 * 16], pc[4 * 16];
    assert_int_equal(ddpm_clf_embed(a, NULL, pa, te.pixels, 16), DDPM_OK);
    assert_int_equal(ddpm_clf_embed(c, NULL, pc, te.pixels, 16), DDPM_OK);
    assert_memory_equal(pa, pc, sizeof pa);
    ddpm_clf_free(c);
    /* the cache name changes with the data */
    char n1[256], n2[256];
    assert_int_equal(ddpm_clf_cache_path(n1, sizeof n1, "cache", "/x/synth/", &tr, &o), DDPM_OK);
    assert_true(strncmp(n1, "cache/synth-", 12) == 0 && strlen(n1) == 12 + 16 + 12);
    tr.pixels[5] ^= 1;
    assert_int_equal(ddpm_clf_cache_path(n2, sizeof n2, "cache", "/x/synth/", &tr, &o), DDPM_OK);
    assert_string_not_equal(n1, n2);
    /* a file that is not a network */
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, 8, SEEK_SET);
    fputc('[', fp); /* corrupt the JSON header */
    fclose(fp);
    assert_int_not_equal(ddpm_clf_load(&c, path, 16, NULL, NULL, 0), DDPM_OK);
    assert_null(c);
    unlink(path);
    /* wrong shape for training */
    ddpm_dataset bad = te;
    bad.h = bad.w = 4;
    assert_int_equal(ddpm_clf_train(a, &bad, &o, NULL, NULL), DDPM_ERR_ARG);
    ddpm_clf_free(a);
    ddpm_clf_free(b);
    ddpm_dataset_free(&tr);
    ddpm_dataset_free(&te);
}

int main(void) {
    omp_set_num_threads(1); /* tiny layers: threads only add barriers (and a loaded machine makes them slow) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_train_learns_and_is_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
