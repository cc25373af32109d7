/* test_bf16_layers.c: conv (im2col, 1x1, stride 2, Winograd F(2x2) and
 * F(4x4)), linear and attention with DDPM_PREC_BF16 against the same layer
 * in FP32, forward and every gradient, with bounds derived per element.
 *
 * One product. Operands rounded to bf16 each carry a relative error <= v =
 * 2^-8, so a product of two carries <= 2v + v^2 = 2^-7 + 2^-16 (=: R2) and is
 * exact in float (test_bf16.c). A float sum of n terms, in either path, adds
 * at most gamma_n <= (n + 1)u (u = 2^-24) times the sum of the terms'
 * magnitudes, and the bf16 path's terms are at most (1 + v)^2 times the float
 * ones. So a sum over R products differs between the paths by at most
 *     (R2 + 2 (R + 4) u (1 + v)^2) * sum |a||b|          (perr below)
 * (the + 4 covers the alpha scaling, the beta add and the bias add).
 *
 * Convolutions. Im2col and 1x1 are plain sums over R = C*K*K (forward), F*K*K
 * (input gradient), N*HO*WO (weight gradient) products of a weight by an
 * input (or output gradient) value. Winograd rounds the transformed operands
 * instead: with y = A^T [sum_c (G g G^T) (.) (B^T d B)] A, the rounding error
 * of the (e)-th transformed product is <= R2 |U_e| |V_e|, and |U_e| <=
 * sum_t |G_et| |g_t|, |V_e| <= sum_p |B^T_ep| |d_p|, so an output o of a tile
 * is off by at most R2 sum_{t, p} w(o, t, p) |g_t| |d_p| with (per dimension,
 * the 2-D weight the product of the row and column ones)
 *     w(o, t, p) = sum_e |A^T_oe| |G_et| |B^T_ep|.
 * The backward products (dYhat = A dy A^T, dV = dYhat U^T, din = B dV B^T,
 * dU = V^T dYhat, dweight = G^T dU G) are the adjoints and give the same w
 * with the roles of o, t, p as output gradient, tap, input pixel. The direct
 * products are the special case w(o, t, p) = [p = o S + t] (one output per
 * "tile"). The float paths' own roundings (transforms included) stay below
 * (R + 64) u times the same weighted sums: R = the number of summed terms,
 * 64 the transforms' additions.
 *
 * Attention (per image, s = 1/sqrt(C)): S = s q^T k is off by e_ij =
 * s perr(sum_c |q_ci||k_cj|, C); a softmax row perturbed by at most E_i =
 * max_j e_ij changes each weight by at most att_ij (exp(2 E_i) - 1) (each
 * ratio exp(delta_j) / sum_k att_k exp(delta_k) lies in [e^-2E, e^2E]), plus
 * both paths' float softmax rounding, 2 (T + 10) u att_ij; out = v att^T then
 * adds its own product error and sum_j |v_cj| |d att_ij| (1 + v)^2. Backward
 * (given the same att): datt = dout^T v off by perr(., C); dS = att (.)
 * (datt - <datt, att>) off by att_ij (d datt_ij + sum_j' att_ij' d datt_ij')
 * (+ float rounding); dq = s k dS^T and dk = s q dS off by their product
 * error over dS's magnitude plus sum |k| |d dS| (1 + v)^2.
 *
 * The test can fail both ways: every output must be within its bound, and
 * the largest error over a layer must be above 2^-20 of its bound's scale
 * (else the bf16 path did not round).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/attn.h"
#include "ddpm/conv.h"
#include "ddpm/linear.h"
#include "ddpm/rng.h"

static const double U = 0x1p-24, V = 0x1p-8, R2 = 0x1p-7 + 0x1p-16;

/* Largest product error between the paths for a sum of R products of total
 * magnitude mag. */
static double perr(double mag, int R) { return (R2 + 2.0 * (R + 4) * U * (1 + V) * (1 + V)) * mag; }

static float *randn(ddpm_rng *rng, size_t n) {
    float *x = malloc((n + 1) * sizeof(float));
    ddpm_rng_fill_normal(rng, x, n);
    return x;
}
static double *zeros(size_t n) { return calloc(n + 1, sizeof(double)); }

/* Every |got - want| <= tol(bound); returns max |got - want| / scale where
 * scale = the bound's factor (the largest relative use of R2). */
static double check(const char *what, const float *got, const float *want, const double *bound,
                    size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - want[i]);
        if (!(d <= bound[i] + 1e-30))
            fail_msg("%s[%zu]: bf16 %.9g, fp32 %.9g, |diff| %.3g > bound %.3g", what, i, got[i],
                     want[i], d, bound[i]);
        if (bound[i] > 0 && d / bound[i] > worst) worst = d / bound[i];
    }
    print_message("  %-28s max |bf16 - fp32| / bound = %.3f\n", what, worst);
    assert_true(worst > 0x1p-20); /* the products were rounded */
    return worst;
}

/* ---- conv -------------------------------------------------------------------------- */

/* Per-dimension weights w[o][t][p] of one tile: m outputs, K taps, win inputs. */
typedef struct {
    int m, win;
    double w[4][3][6];
} wtab;

static wtab direct_tab(int K, int S) {
    wtab t = {1, K, {{{0}}}};
    (void)S;
    for (int k = 0; k < K; k++) t.w[0][k][k] = 1.0;
    return t;
}

static wtab winograd_tab(int m) {
    static const double AT2[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
    static const double G2[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}};
    static const double BT2[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
    static const double AT4[4][6] = {{1, 1, 1, 1, 1, 0},
                                     {0, 1, -1, .5, -2, 0},
                                     {0, 1, 1, .25, 4, 0},
                                     {0, 1, -1, .125, -8, 1}};
    static const double G4[6][3] = {{1, 0, 0},
                                    {1. / 3, 1. / 3, 1. / 3},
                                    {-1. / 3, 1. / 3, -1. / 3},
                                    {-16. / 15, -8. / 15, -4. / 15},
                                    {1. / 15, -2. / 15, 4. / 15},
                                    {0, 0, 1}};
    static const double BT4[6][6] = {{1, -1.5, -2, 1.5, 1, 0},  {0, -1, .5, 2.5, 1, 0},
                                     {0, 1, -2.5, .5, 1, 0},    {0, -2, -1, 2, 1, 0},
                                     {0, .5, -1, -.5, 1, 0},    {0, 1, -1.5, -2, 1.5, 1}};
    wtab t = {m, m + 2, {{{0}}}};
    const int ne = m + 2;
    for (int o = 0; o < m; o++)
        for (int k = 0; k < 3; k++)
            for (int p = 0; p < ne; p++)
                for (int e = 0; e < ne; e++)
                    t.w[o][k][p] += m == 2 ? fabs(AT2[o][e] * G2[e][k] * BT2[e][p])
                                           : fabs(AT4[o][e] * G4[e][k] * BT4[e][p]);
    return t;
}

/* The weighted magnitude sums of forward (bo), input gradient (bi) and
 * weight gradient (bw) for conv d with tile weights tf (forward) and tb
 * (backward); x (N,C,H,W), g (F,C,K,K), dy (N,F,HO,WO). */
static void conv_sums(const ddpm_conv2d_desc *d, const wtab *tab, int pass, const float *x,
                      const float *g, const float *dy, double *bo, double *bi, double *bw) {
    const int N = d->N, C = d->C, H = d->H, W = d->W, F = d->F, K = d->K, S = d->S, P = d->P;
    const int HO = ddpm_conv2d_out(H, K, S, P), WO = ddpm_conv2d_out(W, K, S, P), m = tab->m;
    for (int n = 0; n < N; n++)
        for (int ty = 0; ty * m < HO; ty++)
            for (int tx = 0; tx * m < WO; tx++)
                for (int c = 0; c < C; c++)
                    for (int f = 0; f < F; f++)
                        for (int o1 = 0; o1 < m; o1++)
                            for (int o2 = 0; o2 < m; o2++) {
                                const int oy = ty * m + o1, ox = tx * m + o2;
                                if (oy >= HO || ox >= WO) continue;
                                const size_t io = (((size_t)n * F + f) * HO + oy) * WO + ox;
                                for (int t1 = 0; t1 < K; t1++)
                                    for (int t2 = 0; t2 < K; t2++)
                                        for (int p1 = 0; p1 < tab->win; p1++)
                                            for (int p2 = 0; p2 < tab->win; p2++) {
                                                const double w = tab->w[o1][t1][p1] * tab->w[o2][t2][p2];
                                                const int iy = ty * m * S - P + p1, ix = tx * m * S - P + p2;
                                                if (w == 0 || iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                                const size_t ii = (((size_t)n * C + c) * H + iy) * W + ix;
                                                const size_t ig = (((size_t)f * C + c) * K + t1) * K + t2;
                                                const double ag = fabs(g[ig]), ax = fabs(x[ii]), ad = fabs(dy[io]);
                                                if (pass == 0) bo[io] += w * ag * ax;
                                                else bi[ii] += w * ag * ad, bw[ig] += w * ax * ad;
                                            }
                            }
}

static void scale_bound(double *b, size_t n, int R) {
    for (size_t i = 0; i < n; i++) b[i] = (R2 + 2.0 * (R + 64) * U * (1 + V) * (1 + V)) * b[i];
}

static void conv_case(int N, int C, int H, int F, int K, int S, int P, ddpm_conv2d_algo algo,
                      int mfwd, ddpm_rng *rng) {
    ddpm_conv2d_desc d = {N, C, H, H, F, K, S, P, algo, DDPM_PREC_FP32};
    const int HO = ddpm_conv2d_out(H, K, S, P);
    const size_t nx = (size_t)N * C * H * H, ng = (size_t)F * C * K * K, ny = (size_t)N * F * HO * HO;
    float *x = randn(rng, nx), *g = randn(rng, ng), *b = randn(rng, F), *dy = randn(rng, ny);
    ddpm_conv2d_desc dbf = d;
    dbf.prec = DDPM_PREC_BF16;
    const size_t ws = ddpm_conv2d_workspace(&d) > ddpm_conv2d_workspace(&dbf) ? ddpm_conv2d_workspace(&d)
                                                                            : ddpm_conv2d_workspace(&dbf);
    float *work = malloc((ws + 1) * sizeof(float));
    float *y32 = calloc(ny, 4), *y16 = calloc(ny, 4), *dx32 = calloc(nx, 4), *dx16 = calloc(nx, 4);
    float *dw32 = calloc(ng, 4), *dw16 = calloc(ng, 4), *db32 = calloc(F, 4), *db16 = calloc(F, 4);
    ddpm_conv2d_forward(y32, x, g, b, &d, work);
    ddpm_conv2d_forward(y16, x, g, b, &dbf, work);
    ddpm_conv2d_backward(dx32, dw32, db32, dy, x, g, &d, work);
    ddpm_conv2d_backward(dx16, dw16, db16, dy, x, g, &dbf, work);
    double *bo = zeros(ny), *bi = zeros(nx), *bw = zeros(ng);
    const wtab tf = mfwd ? winograd_tab(mfwd) : direct_tab(K, S);
    const wtab tb = mfwd ? winograd_tab(2) : direct_tab(K, S);
    conv_sums(&d, &tf, 0, x, g, dy, bo, bi, bw);
    conv_sums(&d, &tb, 1, x, g, dy, bo, bi, bw);
    scale_bound(bo, ny, C * K * K);
    scale_bound(bi, nx, F * K * K);
    scale_bound(bw, ng, N * HO * HO);
    print_message("conv N%d C%d %dx%d F%d K%d S%d P%d: %s\n", N, C, H, H, F, K, S, P,
                  mfwd == 4 ? "Winograd F(4x4) forward, F(2x2) backward"
                  : mfwd == 2 ? "Winograd F(2x2)" : "direct products");
    check("forward", y16, y32, bo, ny);
    check("input gradient", dx16, dx32, bi, nx);
    check("weight gradient", dw16, dw32, bw, ng);
    assert_memory_equal(db16, db32, F * sizeof(float)); /* the bias gradient stays float */
    free(x), free(g), free(b), free(dy), free(work), free(y32), free(y16), free(dx32), free(dx16);
    free(dw32), free(dw16), free(db32), free(db16), free(bo), free(bi), free(bw);
}

static void test_conv(void **state) {
    (void)state;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 21);
    conv_case(2, 5, 7, 6, 3, 1, 1, DDPM_CONV_IM2COL, 0, &rng);
    conv_case(2, 9, 8, 4, 3, 1, 1, DDPM_CONV_IM2COL, 0, &rng); /* F <= C: transposed din */
    conv_case(2, 6, 9, 5, 3, 2, 1, DDPM_CONV_AUTO, 0, &rng);   /* stride 2 */
    conv_case(3, 7, 6, 10, 1, 1, 0, DDPM_CONV_AUTO, 0, &rng);  /* direct 1x1 */
    conv_case(2, 12, 7, 9, 3, 1, 1, DDPM_CONV_WINOGRAD, 2, &rng);
    conv_case(2, 12, 9, 10, 3, 1, 1, DDPM_CONV_WINOGRAD4, 4, &rng);
}

/* ---- linear ------------------------------------------------------------------------- */

static void test_linear(void **state) {
    (void)state;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 22);
    enum { N = 7, I = 33, O = 19 };
    float *x = randn(&rng, (size_t)N * I), *w = randn(&rng, (size_t)O * I), *b = randn(&rng, O);
    float *dy = randn(&rng, (size_t)N * O);
    float y32[N * O], y16[N * O], dx32[N * I] = {0}, dx16[N * I] = {0};
    float dw32[O * I] = {0}, dw16[O * I] = {0}, db32[O] = {0}, db16[O] = {0};
    ddpm_linear_forward(y32, x, w, b, N, I, O);
    ddpm_linear_forward_prec(DDPM_PREC_BF16, y16, x, w, b, N, I, O);
    ddpm_linear_backward(dx32, dw32, db32, dy, x, w, N, I, O);
    ddpm_linear_backward_prec(DDPM_PREC_BF16, dx16, dw16, db16, dy, x, w, N, I, O);
    double by[N * O], bx[N * I], bw[O * I];
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double s = 0;
            for (int i = 0; i < I; i++) s += fabs(x[n * I + i] * (double)w[o * I + i]);
            by[n * O + o] = perr(s, I) + 2 * 4 * U * fabs(b[o]);
        }
    for (int n = 0; n < N; n++)
        for (int i = 0; i < I; i++) {
            double s = 0;
            for (int o = 0; o < O; o++) s += fabs(dy[n * O + o] * (double)w[o * I + i]);
            bx[n * I + i] = perr(s, O);
        }
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += fabs(dy[n * O + o] * (double)x[n * I + i]);
            bw[o * I + i] = perr(s, N);
        }
    print_message("linear N%d I%d O%d\n", N, I, O);
    check("forward", y16, y32, by, (size_t)N * O);
    check("input gradient", dx16, dx32, bx, (size_t)N * I);
    check("weight gradient", dw16, dw32, bw, (size_t)O * I);
    assert_memory_equal(db16, db32, sizeof db32);
    free(x), free(w), free(b), free(dy);
}

/* ---- attention ---------------------------------------------------------------------- */

static void test_attention(void **state) {
    (void)state;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 23);
    enum { N = 2, C = 16, T = 20 };
    const double s = 1.0 / sqrt((double)C);
    float *qkv = randn(&rng, (size_t)N * 3 * C * T), *dy = randn(&rng, (size_t)N * C * T);
    static float o32[N * C * T], o16[N * C * T], a32[N * T * T], a16[N * T * T];
    static float g32[N * 3 * C * T], g16[N * 3 * C * T], work[N * T * T];
    static double bo[N * C * T], bg[N * 3 * C * T], batt[N * T * T];
    ddpm_attention_forward(o32, a32, qkv, N, C, T);
    ddpm_attention_forward_prec(DDPM_PREC_BF16, o16, a16, qkv, N, C, T);
    /* backward of both from the same (float) att */
    ddpm_attention_backward(g32, dy, qkv, a32, N, C, T, work);
    ddpm_attention_backward_prec(DDPM_PREC_BF16, g16, dy, qkv, a32, N, C, T, work);
    static double ddatt[T][T], dsmag[T][T], dds[T][T];
    for (int n = 0; n < N; n++) {
        const float *q = qkv + (size_t)n * 3 * C * T, *k = q + C * T, *v = k + C * T;
        const float *a = a32 + (size_t)n * T * T, *g = dy + (size_t)n * C * T;
        double *bq = bg + (size_t)n * 3 * C * T, *bk = bq + C * T, *bv = bk + C * T;
        for (int i = 0; i < T; i++) { /* forward: S, softmax, out */
            double E = 0;
            for (int j = 0; j < T; j++) {
                double m = 0;
                for (int c = 0; c < C; c++) m += fabs(q[c * T + i] * (double)k[c * T + j]);
                E = fmax(E, s * perr(m, C));
            }
            for (int j = 0; j < T; j++)
                batt[(size_t)n * T * T + i * T + j] = a[i * T + j] * (expm1(2 * E) + 2 * (T + 10) * U);
        }
        for (int c = 0; c < C; c++)
            for (int i = 0; i < T; i++) {
                double m = 0, d = 0;
                for (int j = 0; j < T; j++) {
                    m += fabs(v[c * T + j]) * a[i * T + j];
                    d += fabs(v[c * T + j]) * batt[(size_t)n * T * T + i * T + j];
                }
                bo[(size_t)n * C * T + c * T + i] = perr(m + d, T) + d * (1 + V) * (1 + V);
            }
        for (int i = 0; i < T; i++) { /* backward: datt, dS */
            double datt[T], e1[T], sum_e = 0, sum_d = 0;
            for (int j = 0; j < T; j++) {
                double m = 0, x = 0;
                for (int c = 0; c < C; c++) {
                    m += fabs(g[c * T + i] * (double)v[c * T + j]);
                    x += g[c * T + i] * (double)v[c * T + j];
                }
                datt[j] = fabs(x), e1[j] = perr(m, C);
                sum_e += a[i * T + j] * e1[j], sum_d += a[i * T + j] * (datt[j] + e1[j]);
            }
            for (int j = 0; j < T; j++) {
                ddatt[i][j] = e1[j];
                dsmag[i][j] = a[i * T + j] * (datt[j] + e1[j] + sum_d);
                dds[i][j] = a[i * T + j] * (e1[j] + sum_e) + 2 * (T + 10) * U * dsmag[i][j];
            }
        }
        (void)ddatt;
        for (int c = 0; c < C; c++) {
            for (int j = 0; j < T; j++) { /* dv[c, j] = sum_i dout[c, i] att[i, j] */
                double m = 0;
                for (int i = 0; i < T; i++) m += fabs(g[c * T + i]) * a[i * T + j];
                bv[c * T + j] = perr(m, T);
            }
            for (int i = 0; i < T; i++) { /* dq[c, i] = s sum_j k[c, j] dS[i, j] */
                double m = 0, d = 0;
                for (int j = 0; j < T; j++) m += fabs(k[c * T + j]) * dsmag[i][j], d += fabs(k[c * T + j]) * dds[i][j];
                bq[c * T + i] = s * (perr(m, T) + d * (1 + V) * (1 + V));
            }
            for (int j = 0; j < T; j++) { /* dk[c, j] = s sum_i q[c, i] dS[i, j] */
                double m = 0, d = 0;
                for (int i = 0; i < T; i++) m += fabs(q[c * T + i]) * dsmag[i][j], d += fabs(q[c * T + i]) * dds[i][j];
                bk[c * T + j] = s * (perr(m, T) + d * (1 + V) * (1 + V));
            }
        }
    }
    print_message("attention N%d C%d T%d\n", N, C, T);
    check("softmax weights", a16, a32, batt, (size_t)N * T * T);
    check("forward", o16, o32, bo, (size_t)N * C * T);
    check("qkv gradient", g16, g32, bg, (size_t)N * 3 * C * T);
    free(qkv), free(dy);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_attention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
